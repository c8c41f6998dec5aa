/* Optimizers (DESIGN §4.4): sgd, momentum, adam with L2 weight decay and a global
 * clip_norm, PyTorch semantics, applied to the accumulated gradient of K ticks. Engine
 * layer. A step is all-or-nothing: if any candidate value is non-finite nothing is
 * written and the caller counts a refused update. */
#ifndef ETRACE_OPTIM_H
#define ETRACE_OPTIM_H

#include <stdint.h>

#include "model.h"
#include "real.h"

struct optim_cfg {
    enum model_optim kind;
    double momentum;     /* mu */
    double beta1, beta2; /* adam */
    double eps;
    double weight_decay; /* L2: g += wd * w */
    double clip_norm;    /* <= 0: no clipping */
};

/* One parameter tensor (a weight or a bias) and its optimizer state. */
struct optim_param {
    int64_t n;
    real *w;        /* [n] the values */
    real *acc;      /* [n] the accumulated gradient; zeroed by optim_step */
    real *m;        /* [n] momentum buffer or adam first moment (NULL for sgd) */
    real *v;        /* [n] adam second moment (NULL otherwise) */
    double grad_sq; /* sum of acc^2 at the last step (stats) */
};

/* The coefficients of one step, fixed by optim_check. */
struct optim_plan {
    real lr, scale, wd, mu, b1, b2, eps;
    real one_b1, one_b2; /* adam: 1 - b1, 1 - b2 computed in double */
    real step_size;      /* adam: lr / (1 - b1^s) */
    real bc2_sqrt;       /* adam: sqrt(1 - b2^s) */
    int first;           /* s == 1: momentum's buffer starts at g */
};

/* Computes the gradient norms (grad_sq), the clip scale and the plan, and checks every
 * candidate value without writing. Returns 1 when the whole step is finite. */
int optim_check(const struct optim_cfg *c, double lr, uint64_t step, int n_params,
                struct optim_param *ps, struct optim_plan *plan);

/* Writes a checked step and zeroes the accumulators. */
void optim_apply(const struct optim_cfg *c, const struct optim_plan *plan, int n_params,
                 struct optim_param *ps);

/* Zeroes the accumulators of a refused step. */
void optim_discard(int n_params, struct optim_param *ps);

/* Fused sgd steps for a rank-one gradient a (x) q (one tick of ES or the instant rule):
 * w -= lr (a[i] q[o] + wd w), bit for bit what the accumulator path computes.
 * dense w: [n_in][n_out]; sparse: CSR; elem: w[o] -= lr (a[o] q[o] + wd w[o]), a NULL
 * meaning 1 (a bias). The caller has established that every result is finite. */
void optim_sgd_rank1_dense(int64_t n_in, int64_t n_out, real *w, const real *a, const real *q,
                           real lr, real wd);
void optim_sgd_rank1_sparse(int64_t n_in, real *w, const int64_t *indptr, const int32_t *indices,
                            const real *a, const real *q, real lr, real wd);
void optim_sgd_rank1_elem(int64_t n, real *w, const real *a, const real *q, real lr, real wd);

/* The sum of squares of a[0..n) in double, in 8 interleaved partial sums (a fixed order,
 * so the result is reproducible, and 8 chains of additions in flight instead of one). */
double optim_sum_sq(int64_t n, const real *a);

/* Applies one step with learning rate lr; `step` is the 1-based index of this step.
 * Returns 1 when applied, 0 when refused (every w, m, v unchanged); acc is zeroed
 * either way (a refused gradient is discarded). */
int optim_step(const struct optim_cfg *c, double lr, uint64_t step, int n_params,
               struct optim_param *ps);

#endif
