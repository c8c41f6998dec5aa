/* Sparse projection kernels: CSR over pre-synaptic rows. */
#include "op.h"

void
op_sparse_forward(int64_t n_in, int64_t n_out, real *y, const int64_t *indptr,
                  const int32_t *indices, const real *v, const real *x, const real *b)
{
    op_dense_init(n_out, y, b);
    /* event-driven: silent rows cost one compare; the next event's row is fetched ahead */
    for (int64_t i = op_next_event(x, 0, n_in), nx; i < n_in; i = nx) {
        nx = op_next_event(x, i + 1, n_in);
        if (nx < n_in)
            op_sparse_prefetch_row(indptr, indices, v, nx);
        real xi = x[i];
        for (int64_t k = indptr[i]; k < indptr[i + 1]; k++)
            y[indices[k]] += xi * v[k];
    }
}

void
op_sparse_forward_plain(int64_t n_in, int64_t n_out, real *y, const int64_t *indptr,
                        const int32_t *indices, const real *v, const real *x, const real *b)
{
    op_dense_init(n_out, y, b);
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
