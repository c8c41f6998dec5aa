/* The optimizer step. A first pass reads every gradient and weight, computes each
 * candidate value and only checks it (and sums the gradient's square for stats); the
 * second pass recomputes the same candidates and writes them. Both passes run the same
 * arithmetic, so what is checked is what is written. Each optimizer has its own loops, so
 * they vectorise (no switch inside a loop). */
#include "optim.h"

#include <math.h>
#include <string.h>

/* Non-zero when x is Inf or NaN: x - x is 0 for every finite x. */
#define NONFINITE(x) ((x) - (x) != R(0.0))

double
optim_sum_sq(int64_t n, const real *a)
{
    double s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += (double)a[i + k] * (double)a[i + k];
    for (; i < n; i++)
        s[0] += (double)a[i] * (double)a[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* g = acc * scale + wd * w (the clipped gradient with L2 decay) */
static inline real
grad_of(const struct optim_plan *k, real acc, real w)
{
    real g = acc * k->scale;
    return k->wd != R(0.0) ? g + k->wd * w : g;
}

static int
check_param(enum model_optim kind, const struct optim_plan *k, const struct optim_param *p)
{
    const real *restrict w = p->w, *restrict acc = p->acc;
    int bad = 0;
    switch (kind) {
    case MODEL_OPTIM_SGD:
        for (int64_t j = 0; j < p->n; j++) {
            real c = w[j] - k->lr * grad_of(k, acc[j], w[j]);
            bad |= NONFINITE(c);
        }
        break;
    case MODEL_OPTIM_MOMENTUM:
        for (int64_t j = 0; j < p->n; j++) {
            real g = grad_of(k, acc[j], w[j]);
            real b = k->first ? g : k->mu * p->m[j] + g;
            real c = w[j] - k->lr * b;
            bad |= NONFINITE(b) | NONFINITE(c);
        }
        break;
    case MODEL_OPTIM_ADAM:
        for (int64_t j = 0; j < p->n; j++) {
            real g = grad_of(k, acc[j], w[j]);
            real m = k->b1 * p->m[j] + k->one_b1 * g;
            real v = k->b2 * p->v[j] + k->one_b2 * g * g;
            real c = w[j] - k->step_size * m / (sqrt(v) / k->bc2_sqrt + k->eps);
            bad |= NONFINITE(m) | NONFINITE(v) | NONFINITE(c);
        }
        break;
    }
    return bad;
}

/* Writes the step and zeroes the accumulator. */
static void
apply_param(enum model_optim kind, const struct optim_plan *k, struct optim_param *p)
{
    real *restrict w = p->w, *restrict acc = p->acc;
    switch (kind) {
    case MODEL_OPTIM_SGD:
        /* w -= lr g */
        for (int64_t j = 0; j < p->n; j++) {
            real d = k->lr * grad_of(k, acc[j], w[j]);
            w[j] -= d;
            acc[j] = R(0.0);
        }
        break;
    case MODEL_OPTIM_MOMENTUM:
        /* buf = mu buf + g (buf = g at the first step); w -= lr buf */
        for (int64_t j = 0; j < p->n; j++) {
            real g = grad_of(k, acc[j], w[j]);
            real b = k->first ? g : k->mu * p->m[j] + g;
            p->m[j] = b;
            w[j] -= k->lr * b;
            acc[j] = R(0.0);
        }
        break;
    case MODEL_OPTIM_ADAM:
        /* m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
         * w -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)   (PyTorch's form) */
        for (int64_t j = 0; j < p->n; j++) {
            real g = grad_of(k, acc[j], w[j]);
            real m = k->b1 * p->m[j] + k->one_b1 * g;
            real v = k->b2 * p->v[j] + k->one_b2 * g * g;
            p->m[j] = m;
            p->v[j] = v;
            w[j] -= k->step_size * m / (sqrt(v) / k->bc2_sqrt + k->eps);
            acc[j] = R(0.0);
        }
        break;
    }
}

int
optim_check(const struct optim_cfg *c, double lr, uint64_t step, int n_params,
            struct optim_param *ps, struct optim_plan *plan)
{
    double norm_sq = 0.0;
    for (int i = 0; i < n_params; i++) {
        ps[i].grad_sq = optim_sum_sq(ps[i].n, ps[i].acc);
        norm_sq += ps[i].grad_sq;
    }
    *plan = (struct optim_plan){
        .lr = (real)lr,
        .scale = R(1.0),
        .wd = (real)c->weight_decay,
        .mu = (real)c->momentum,
        .b1 = (real)c->beta1,
        .b2 = (real)c->beta2,
        .one_b1 = (real)(1.0 - c->beta1), /* as PyTorch: 1 - beta in double, then rounded */
        .one_b2 = (real)(1.0 - c->beta2),
        .eps = (real)c->eps,
        .step_size = (real)(lr / (1.0 - pow(c->beta1, (double)step))),
        .bc2_sqrt = (real)sqrt(1.0 - pow(c->beta2, (double)step)),
        .first = step == 1,
    };
    if (c->clip_norm > 0.0) {
        double norm = sqrt(norm_sq);
        if (norm > c->clip_norm) /* min(1, clip / (norm + 1e-6)) */
            plan->scale = (real)(c->clip_norm / (norm + 1e-6));
    }
    int ok = isfinite(norm_sq) && isfinite(lr);
    for (int i = 0; ok && i < n_params; i++)
        ok = !check_param(c->kind, plan, &ps[i]);
    return ok;
}

void
optim_apply(const struct optim_cfg *c, const struct optim_plan *plan, int n_params,
            struct optim_param *ps)
{
    for (int i = 0; i < n_params; i++)
        apply_param(c->kind, plan, &ps[i]);
}

void
optim_discard(int n_params, struct optim_param *ps)
{
    for (int i = 0; i < n_params; i++)
        memset(ps[i].acc, 0, (size_t)ps[i].n * sizeof *ps[i].acc);
}

int
optim_step(const struct optim_cfg *c, double lr, uint64_t step, int n_params,
           struct optim_param *ps)
{
    struct optim_plan plan;
    int ok = optim_check(c, lr, step, n_params, ps, &plan);
    if (ok)
        optim_apply(c, &plan, n_params, ps);
    else
        optim_discard(n_params, ps);
    return ok;
}

/* The fused rank-one sgd steps below compute exactly what the accumulator path computes
 * for one tick (acc = a[i] q[o], rows with a[i] == 0 left at 0), without the accumulator. */

/* keep (all ones or zero) ? a : b, bit for bit, as a select the vectoriser takes (a ternary
 * on floats is control flow to gcc 12 at -O2). */
static inline real
pick(real_bits keep, real a, real b)
{
    real_bits ba, bb;
    memcpy(&ba, &a, sizeof ba);
    memcpy(&bb, &b, sizeof bb);
    ba = (ba & keep) | (bb & ~keep);
    memcpy(&a, &ba, sizeof a);
    return a;
}

void
optim_sgd_rank1_dense(int64_t n_in, int64_t n_out, real *restrict w, const real *restrict a,
                      const real *restrict q, real lr, real wd)
{
    if (n_out == 2 && wd == R(0.0)) { /* a small readout: vectorised over rows */
        real q0 = q[0], q1 = q[1];
        for (int64_t i = 0; i < n_in; i++) {
            real ai = a[i];
            real_bits keep = (real_bits)0 - (real_bits)(ai == R(0.0)); /* the row as it was */
            w[2 * i] = pick(keep, w[2 * i], w[2 * i] - lr * (ai * q0));
            w[2 * i + 1] = pick(keep, w[2 * i + 1], w[2 * i + 1] - lr * (ai * q1));
        }
        return;
    }
    for (int64_t i = 0; i < n_in; i++) {
        real ai = a[i];
        real *restrict row = w + i * n_out;
        if (ai == R(0.0)) {
            if (wd != R(0.0))
                for (int64_t o = 0; o < n_out; o++)
                    row[o] -= lr * (R(0.0) + wd * row[o]);
            continue;
        }
        if (wd == R(0.0))
            for (int64_t o = 0; o < n_out; o++)
                row[o] -= lr * (ai * q[o]);
        else
            for (int64_t o = 0; o < n_out; o++)
                row[o] -= lr * (ai * q[o] + wd * row[o]);
    }
}

void
optim_sgd_rank1_sparse(int64_t n_in, real *restrict w, const int64_t *indptr,
                       const int32_t *indices, const real *restrict a, const real *restrict q,
                       real lr, real wd)
{
    for (int64_t i = 0; i < n_in; i++) {
        real ai = a[i];
        if (ai == R(0.0)) {
            if (wd != R(0.0))
                for (int64_t k = indptr[i]; k < indptr[i + 1]; k++)
                    w[k] -= lr * (R(0.0) + wd * w[k]);
            continue;
        }
        if (wd == R(0.0))
            for (int64_t k = indptr[i]; k < indptr[i + 1]; k++)
                w[k] -= lr * (ai * q[indices[k]]);
        else
            for (int64_t k = indptr[i]; k < indptr[i + 1]; k++)
                w[k] -= lr * (ai * q[indices[k]] + wd * w[k]);
    }
}

void
optim_sgd_rank1_elem(int64_t n, real *restrict w, const real *restrict a, const real *restrict q,
                     real lr, real wd)
{
    /* the accumulator path adds a[o] q[o] (q[o] alone for a bias) to a zero accumulator;
     * one loop per case so that each vectorises */
    if (wd != R(0.0)) {
        for (int64_t o = 0; o < n; o++)
            w[o] -= lr * ((a ? a[o] * q[o] : q[o]) + wd * w[o]);
    } else if (a) {
        for (int64_t o = 0; o < n; o++)
            w[o] -= lr * (a[o] * q[o]);
    } else {
        for (int64_t o = 0; o < n; o++)
            w[o] -= lr * q[o];
    }
}
