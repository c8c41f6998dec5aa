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
    real *w;         /* [n] the values */
    real *acc;       /* [n] the accumulated gradient; zeroed by optim_step */
    real *m;         /* [n] momentum buffer or adam first moment (NULL for sgd) */
    real *v;         /* [n] adam second moment (NULL otherwise) */
    double delta_sq; /* += sum of (w_new - w_old)^2 of applied steps (stats) */
    double grad_sq;  /* sum of acc^2 at the last step (stats) */
};

/* Applies one step with learning rate lr; `step` is the 1-based index of this step.
 * Returns 1 when applied, 0 when refused (every w, m, v unchanged); acc is zeroed
 * either way (a refused gradient is discarded). */
int optim_step(const struct optim_cfg *c, double lr, uint64_t step, int n_params,
               struct optim_param *ps);

#endif
