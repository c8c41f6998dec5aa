/* Dense projection kernels: y = x W + b, row by row so the inner loop vectorises over o. */
#include "op.h"

#include <string.h>

/* Asks for the first 1 KiB of a row of n values ahead of its use. */
static inline __attribute__((always_inline)) void
fetch_row(const real *row, int64_t n)
{
    int64_t bytes = n * (int64_t)sizeof(real);
    for (int64_t k = 0; k < bytes && k < 1024; k += 64)
        __builtin_prefetch((const char *)row + k);
}

void
op_dense_init(int64_t n_out, real *y, const real *b)
{
    if (b)
        for (int64_t o = 0; o < n_out; o++)
            y[o] = b[o] + R(0.0); /* -0 + 0 = +0: the same bits whichever rows are skipped */
    else
        memset(y, 0, (size_t)n_out * sizeof *y);
}

void
op_dense_forward(int64_t n_in, int64_t n_out, real *y, const real *w, const real *x, const real *b)
{
    op_dense_forward_cols(n_in, n_out, 0, n_out, y, w, x, b);
}

void
op_dense_forward_cols(int64_t n_in, int64_t n_out, int64_t o0, int64_t o1, real *y, const real *w,
                      const real *x, const real *b)
{
    op_dense_init(o1 - o0, y + o0, b ? b + o0 : NULL);
    /* spiking inputs: only the rows of neurons that fired are read, the next one fetched
     * while this one is added */
    for (int64_t i = op_next_event(x, 0, n_in), nx; i < n_in; i = nx) {
        nx = op_next_event(x, i + 1, n_in);
        if (nx < n_in)
            fetch_row(w + nx * n_out + o0, o1 - o0);
        real xi = x[i];
        const real *row = w + i * n_out;
        for (int64_t o = o0; o < o1; o++)
            y[o] += xi * row[o];
    }
}

void
op_dense_forward_plain(int64_t n_in, int64_t n_out, real *y, const real *w, const real *x,
                       const real *b)
{
    op_dense_init(n_out, y, b);
    for (int64_t i = 0; i < n_in; i++) {
        real xi = x[i];
        const real *row = w + i * n_out;
        for (int64_t o = 0; o < n_out; o++)
            y[o] += xi * row[o];
    }
}

void
op_dense_backward(int64_t n_rows, int64_t n_out, real *dx, const real *w, const real *dy)
{
    if (n_out == 2) { /* a small readout: the same sums, vectorised over rows */
        real dy0 = dy[0], dy1 = dy[1];
        for (int64_t i = 0; i < n_rows; i++) {
            real s = R(0.0);
            s += w[2 * i] * dy0;
            s += w[2 * i + 1] * dy1;
            dx[i] += s;
        }
        return;
    }
    for (int64_t i = 0; i < n_rows; i++) {
        const real *row = w + i * n_out;
        real s = R(0.0);
        for (int64_t o = 0; o < n_out; o++)
            s += row[o] * dy[o];
        dx[i] += s;
    }
}
