/* Eligibility traces and their gradients (DESIGN §4.2): D-RTRL (parameter-dimension
 * trace), ES-D-RTRL (input and hidden-side traces) and the instant rule. Engine layer.
 *
 * Every kernel works on a projection's columns o in [0, n_out); the caller gathers the
 * per-column views of the target cell (a column of slot s at neuron n uses neuron n's
 * block): D: [K][K][n_out] (d h_new[k] / d h_old[j]); f: [K][n_out] (d h_new[k] / d y);
 * g: [K][n_out] (dL/dh_new[k]), NULL when this tick has no learning signal (then only
 * the traces advance). acc receives this tick's gradient (+=), NULL for none.
 * Trace kernels return non-zero when a trace value came out non-finite (x - x != 0,
 * an integer OR that vectorises), so the finiteness check costs no extra pass. */
#ifndef ETRACE_TRACE_H
#define ETRACE_TRACE_H

#include <stdint.h>

#include "real.h"

/* The D-RTRL kernels put this tick's gradient sum_k g[k,o] E[k,...] into `acc` (+=), or,
 * with acc NULL and w given, apply it as an sgd step w -= lr * gradient (the fused path:
 * bit for bit the accumulator path's step); with g NULL only the traces advance. They
 * return max|E| over the new traces (Inf when one is non-finite).
 *
 * Dense: E [K][n_in][n_out]; E[k,i,o] = sum_j D[k,j,o] E[j,i,o] + f[k,o] x[i].
 * scratch: [2K][n_out]. */
double trace_drtrl_dense(int64_t n_in, int64_t n_out, int K, real *E, real *acc, real *w, real lr,
                         real *scratch, const real *D, const real *f, const real *g, const real *x);

/* Sparse: E [K][nnz] on the pattern's nonzeros (CSR rows = i). */
double trace_drtrl_sparse(int64_t n_in, int64_t n_out, int64_t nnz, int K, real *E, real *acc,
                          real *w, real lr, const int64_t *indptr, const int32_t *indices,
                          const real *D, const real *f, const real *g, const real *x);

/* Elemwise weight or bias: E [K][n]; E[k,o] = sum_j D[k,j,o] E[j,o] + f[k,o] x[o]
 * (x NULL: x = 1, the bias). */
double trace_drtrl_elem(int64_t n, int K, real *E, real *acc, real *w, real lr, const real *D,
                        const real *f, const real *g, const real *x);

/* ES-D-RTRL input side: ex[i] = lambda_x ex[i] + x[i]. */
int trace_es_input(int64_t n_in, real *ex, real lambda_x, const real *x);

/* ES-D-RTRL hidden side: ef[k,o] = lambda_f sum_j D[k,j,o] ef[j,o] + (1 - lambda_f) f[k,o].
 * scratch: [K] per column is kept in registers; K <= 8. */
int trace_es_hidden(int64_t n_out, int K, real *ef, real lambda_f, const real *D, const real *f);

/* q[o] = sum_k g[k,o] h[k,o] * scale: the column factor of a rank-one gradient
 * (ES: h = ef, scale = 1/c; instant: h = f, scale = 1). */
void trace_column_factor(int64_t n_out, int K, real *q, const real *g, const real *h, real inv_c);

/* acc[i,o] += a[i] q[o] (dense [n_in][n_out]); rows with a[i] == 0 skipped. */
void trace_outer_dense(int64_t n_in, int64_t n_out, real *acc, const real *a, const real *q);

/* acc[k] += a[i] q[indices[k]] on a CSR pattern. */
void trace_outer_sparse(int64_t n_in, real *acc, const int64_t *indptr, const int32_t *indices,
                        const real *a, const real *q);

/* acc[o] += a[o] q[o] (elemwise; a NULL: acc[o] += q[o], the bias). */
void trace_outer_elem(int64_t n, real *acc, const real *a, const real *q);

#endif
