/* Sparse projection kernels: CSR over pre-synaptic rows. */
#include "op.h"

#include <string.h>

static void
init_y(int64_t n_out, real *y, const real *b)
{
    if (b)
        for (int64_t o = 0; o < n_out; o++)
            y[o] = b[o] + R(0.0); /* -0 + 0 = +0: the same bits whichever rows are skipped */
    else
        memset(y, 0, (size_t)n_out * sizeof *y);
}

void
op_sparse_forward(int64_t n_in, int64_t n_out, real *y, const int64_t *indptr,
                  const int32_t *indices, const real *v, const real *x, const real *b)
{
    init_y(n_out, y, b);
    for (int64_t i = 0; i < n_in; i++) {
        real xi = x[i];
        if (xi == R(0.0))
            continue; /* event-driven: silent rows cost one compare */
        for (int64_t k = indptr[i]; k < indptr[i + 1]; k++)
            y[indices[k]] += xi * v[k];
    }
}

void
op_sparse_forward_plain(int64_t n_in, int64_t n_out, real *y, const int64_t *indptr,
                        const int32_t *indices, const real *v, const real *x, const real *b)
{
    init_y(n_out, y, b);
    for (int64_t i = 0; i < n_in; i++) {
        real xi = x[i];
        for (int64_t k = indptr[i]; k < indptr[i + 1]; k++)
            y[indices[k]] += xi * v[k];
    }
}

void
op_sparse_backward(int64_t row0, int64_t n_rows, real *dx, const int64_t *indptr,
                   const int32_t *indices, const real *v, const real *dy)
{
    for (int64_t i = 0; i < n_rows; i++) {
        real s = R(0.0);
        for (int64_t k = indptr[row0 + i]; k < indptr[row0 + i + 1]; k++)
            s += v[k] * dy[indices[k]];
        dx[i] += s;
    }
}
