/* The linear operators of projections (DESIGN §2.3): dense, sparse (CSR over
 * pre-synaptic rows) and elemwise; forward (y = x W + b) and the within-tick backward
 * (dx += W dy). Engine layer. Kernels are pure: length first, then outputs, then inputs.
 * Forward kernels sum rows in increasing i; the event-driven variants skip rows whose
 * x[i] is 0 and so give the same bits as the plain ones (adding 0 * w changes nothing). */
#ifndef ETRACE_OP_H
#define ETRACE_OP_H

#include <stdint.h>
#include <string.h>

#include "real.h"

/* y[o] = b[o] + 0 (0 without b): where every forward sum starts; adding +0 turns a -0
 * bias into +0, so skipping silent rows never changes the bits. */
void op_dense_init(int64_t n_out, real *y, const real *b);

/* y[o] = b[o] (0 without b) + sum_i x[i] w[i][o], rows with x[i] == 0 skipped.
 * w: [n_in][n_out] row-major; x: [n_in]; b: [n_out] or NULL; y: [n_out]. */
void op_dense_forward(int64_t n_in, int64_t n_out, real *y, const real *w, const real *x,
                      const real *b);

/* The same for the columns [o0, o1) of y only: each y[o] is the same sum in the same order,
 * so column ranges can be computed apart (tick parts). */
void op_dense_forward_cols(int64_t n_in, int64_t n_out, int64_t o0, int64_t o1, real *y,
                           const real *w, const real *x, const real *b);

/* The same sum over every row (the reference the event-driven path is tested against). */
void op_dense_forward_plain(int64_t n_in, int64_t n_out, real *y, const real *w, const real *x,
                            const real *b);

/* dx[i] += sum_o w[i][o] dy[o] for rows i in [0, n_rows) of w ([n_rows][n_out] view). */
void op_dense_backward(int64_t n_rows, int64_t n_out, real *dx, const real *w, const real *dy);

/* Sparse CSR: indptr [n_in+1], indices [nnz] (post-synaptic o), v [nnz].
 * y[o] = b[o] + sum over rows i with x[i] != 0 of x[i] v[k], k in row i, in CSR order. */
void op_sparse_forward(int64_t n_in, int64_t n_out, real *y, const int64_t *indptr,
                       const int32_t *indices, const real *v, const real *x, const real *b);

/* The first row i >= from with x[i] != 0, or n_in (also when from > n_in). Blocks of 8
 * values whose magnitude bits are all 0 are skipped at once (a spiking input is mostly 0,
 * and a compare per value mispredicted at every event); a block with any other bits set
 * (an event, a subnormal that DAZ reads as 0, a NaN) is looked at value by value. */
static inline int64_t
op_next_event(const real *x, int64_t from, int64_t n_in)
{
    /* a block of 8 values as 64-bit words (4 floats or 8 doubles), every sign bit masked */
    enum { OP_WORDS = 8 * sizeof(real) / sizeof(uint64_t) };
    const uint64_t mag = sizeof(real) == 4 ? UINT64_C(0x7fffffff7fffffff) : ~(UINT64_C(1) << 63);
    while (from < n_in) {
        for (; from + 8 <= n_in; from += 8) {
            uint64_t any = 0;
            for (int k = 0; k < OP_WORDS; k++) {
                uint64_t w;
                memcpy(&w, (const char *)(x + from) + k * sizeof w, sizeof w);
                any |= w;
            }
            if (any & mag)
                break;
        }
        int64_t end = from + 8 < n_in ? from + 8 : n_in;
        for (; from < end; from++)
            if (x[from] != R(0.0))
                return from;
    }
    return n_in;
}

/* For an event-driven pass over a CSR weight about to sum row i, whose next events are nx
 * then the one this returns: fetches ahead the lines of row nx's indices and values (up to
 * 32 of each) and the indptr entry of the event after. The rows of such a pass are random
 * rows of a weight larger than the caches: each began with DRAM misses (its indptr, then
 * its lines) that the hardware prefetcher saw only once they had happened. Always inlined:
 * GCC deletes calls to a function that only prefetches. */
static inline __attribute__((always_inline)) int64_t
op_sparse_ahead(const int64_t *indptr, const int32_t *indices, const real *v, const real *x,
                int64_t n_in, int64_t nx)
{
    int64_t nx2 = op_next_event(x, nx + 1, n_in);
    if (nx2 < n_in)
        __builtin_prefetch(indptr + nx2 + 1);
    if (nx < n_in) {
        int64_t e = indptr[nx], n = indptr[nx + 1] - e;
        n = n < 32 * 16 ? n : 32 * 16;
        for (int64_t k = 0; k < n; k += 64 / (int64_t)sizeof(int32_t))
            __builtin_prefetch(indices + e + k);
        for (int64_t k = 0; k < n; k += 64 / (int64_t)sizeof(real))
            __builtin_prefetch(v + e + k);
    }
    return nx2;
}

/* The first entry e in [lo, hi) of a row (indices strictly increasing) with
 * indices[e] >= o, or hi. */
static inline int64_t
op_sparse_lower(const int32_t *indices, int64_t lo, int64_t hi, int64_t o)
{
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (indices[mid] < o)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Row i's entries whose index is in [o0, o1) (of n_out outputs): [*lo, *hi). */
static inline void
op_sparse_row_cols(const int64_t *indptr, const int32_t *indices, int64_t i, int64_t o0, int64_t o1,
                   int64_t n_out, int64_t *lo, int64_t *hi)
{
    int64_t e = indptr[i], end = indptr[i + 1];
    if (o0 > 0)
        e = op_sparse_lower(indices, e, end, o0);
    if (o1 < n_out)
        end = op_sparse_lower(indices, e, end, o1);
    *lo = e;
    *hi = end;
}

/* op_sparse_forward for the outputs [o0, o1) alone (the tick parts of a large weight):
 * each output's sum has the same terms in the same order. */
void op_sparse_forward_cols(int64_t n_in, int64_t n_out, int64_t o0, int64_t o1, real *y,
                            const int64_t *indptr, const int32_t *indices, const real *v,
                            const real *x, const real *b);

/* The same over every row. */
void op_sparse_forward_plain(int64_t n_in, int64_t n_out, real *y, const int64_t *indptr,
                             const int32_t *indices, const real *v, const real *x, const real *b);

/* dx[i] += sum_k v[k] dy[indices[k]] for rows [row0, row0 + n_rows). */
void op_sparse_backward(int64_t row0, int64_t n_rows, real *dx, const int64_t *indptr,
                        const int32_t *indices, const real *v, const real *dy);

/* Elemwise: y[o] = x[o] w[o] + b[o]. */
void op_elem_forward(int64_t n, real *y, const real *w, const real *x, const real *b);

/* dx[o] += w[o] dy[o]. */
void op_elem_backward(int64_t n, real *dx, const real *w, const real *dy);

#endif
