/* Dense projection kernels: y = x W + b, row by row so the inner loop vectorises over o. */
#include "op.h"

#include <string.h>

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
    op_dense_init(n_out, y, b);
    for (int64_t i = 0; i < n_in; i++) {
        real xi = x[i];
        if (xi == R(0.0))
            continue; /* spiking inputs: only the rows of neurons that fired are read */
        const real *row = w + i * n_out;
        for (int64_t o = 0; o < n_out; o++)
            y[o] += xi * row[o];
    }
}

void
op_dense_forward_cols(int64_t n_in, int64_t n_out, int64_t o0, int64_t o1, real *y, const real *w,
                      const real *x, const real *b)
{
    for (int64_t o = o0; o < o1; o++)
        y[o] = b ? b[o] + R(0.0) : R(0.0); /* as op_dense_init */
    for (int64_t i = 0; i < n_in; i++) {
        real xi = x[i];
        if (xi == R(0.0))
            continue;
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
    for (int64_t i = 0; i < n_rows; i++) {
        const real *row = w + i * n_out;
        real s = R(0.0);
        for (int64_t o = 0; o < n_out; o++)
            s += row[o] * dy[o];
        dx[i] += s;
    }
}
