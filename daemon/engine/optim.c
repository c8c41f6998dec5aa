/* The optimizer step: a first pass computes the gradient norm (for clip_norm and stats)
 * and checks every candidate value; only a finite step is written in the second pass.
 * Both passes run the same arithmetic, so what is checked is what is written. */
#include "optim.h"

#include <math.h>
#include <string.h>

/* The candidate update of element j; writes the new w, m, v through the pointers. */
static inline void
candidate(const struct optim_cfg *c, const struct optim_param *p, int64_t j, real lr,
          real scale, real wd, real bc1, real bc2_sqrt, int first, real *w_new, real *m_new,
          real *v_new)
{
    real w = p->w[j];
    real g = p->acc[j] * scale;
    if (wd != R(0.0))
        g += wd * w; /* L2 weight decay */
    switch (c->kind) {
    case MODEL_OPTIM_SGD:
        *w_new = w - lr * g;
        break;
    case MODEL_OPTIM_MOMENTUM: {
        real mu = (real)c->momentum;
        real b = first ? g : mu * p->m[j] + g; /* buf = mu buf + g; buf = g at step 1 */
        *m_new = b;
        *w_new = w - lr * b;
        break;
    }
    case MODEL_OPTIM_ADAM: {
        real b1 = (real)c->beta1, b2 = (real)c->beta2;
        real m = b1 * p->m[j] + (R(1.0) - b1) * g;
        real v = b2 * p->v[j] + (R(1.0) - b2) * g * g;
        *m_new = m;
        *v_new = v;
        /* PyTorch: w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps) */
        real denom = sqrt(v) / bc2_sqrt + (real)c->eps;
        *w_new = w - (lr / bc1) * m / denom;
        break;
    }
    }
}

int
optim_step(const struct optim_cfg *c, double lr, uint64_t step, int n_params,
           struct optim_param *ps)
{
    double norm_sq = 0.0;
    for (int k = 0; k < n_params; k++) {
        double s = 0.0;
        for (int64_t j = 0; j < ps[k].n; j++)
            s += (double)ps[k].acc[j] * (double)ps[k].acc[j];
        ps[k].grad_sq = s;
        norm_sq += s;
    }
    real scale = R(1.0);
    if (c->clip_norm > 0.0) {
        double norm = sqrt(norm_sq);
        if (norm > c->clip_norm) /* min(1, clip / (norm + 1e-6)) */
            scale = (real)(c->clip_norm / (norm + 1e-6));
    }
    real rlr = (real)lr, wd = (real)c->weight_decay;
    real bc1 = (real)(1.0 - pow(c->beta1, (double)step));
    real bc2_sqrt = (real)sqrt(1.0 - pow(c->beta2, (double)step));
    int first = step == 1;
    int ok = isfinite(norm_sq) && isfinite(lr);
    for (int k = 0; ok && k < n_params; k++) {
        const struct optim_param *p = &ps[k];
        int bad = 0;
        for (int64_t j = 0; j < p->n; j++) {
            real w = R(0.0), m = R(0.0), v = R(0.0);
            candidate(c, p, j, rlr, scale, wd, bc1, bc2_sqrt, first, &w, &m, &v);
            bad |= (w - w != R(0.0)) | (m - m != R(0.0)) | (v - v != R(0.0));
        }
        ok = !bad;
    }
    if (ok) {
        for (int k = 0; k < n_params; k++) {
            struct optim_param *p = &ps[k];
            double dsq = 0.0;
            for (int64_t j = 0; j < p->n; j++) {
                real w = R(0.0), m = R(0.0), v = R(0.0);
                candidate(c, p, j, rlr, scale, wd, bc1, bc2_sqrt, first, &w, &m, &v);
                double d = (double)w - (double)p->w[j];
                dsq += d * d;
                p->w[j] = w;
                if (p->m)
                    p->m[j] = m;
                if (p->v)
                    p->v[j] = v;
            }
            p->delta_sq += dsq;
        }
    }
    for (int k = 0; k < n_params; k++)
        memset(ps[k].acc, 0, (size_t)ps[k].n * sizeof *ps[k].acc);
    return ok;
}
