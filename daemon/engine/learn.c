/* Learning within a tick: the trace kernels of trace.c chosen per projection and rule,
 * this tick's gradient delivered to the partial sums or fused into the weights, and the
 * optimizer step of optim.c over every learning tensor. */
#include "learn.h"

#include <math.h>
#include <string.h>

#include "defer.h"
#include "optim.h"
#include "trace.h"

/* The ES warm-up correction c = 1 - lambda_f^(n+1), 1 once n >= 1000 (braintrace 0.2's
 * cap). */
static double
es_correction(const struct engine *e)
{
    return e->es_n < 1000 ? 1.0 - pow((double)e->lambda_f, (double)(e->es_n + 1)) : 1.0;
}

/* One phase of tick parts over the rows of a projection's weight (engine.h "tick parts"):
 * what the part functions below need. */
struct rows_job {
    const struct engine *e;
    struct eproj *p;
    int n_parts;
    real *dst;                         /* outer: the accumulator; rank one: the weights */
    const real *a;                     /* outer, rank one: the row factor */
    real lr;                           /* rank one, D-RTRL into w: the step size */
    const real *g;                     /* D-RTRL: the learning signal or NULL */
    real *acc, *w;                     /* D-RTRL: where its gradient goes (NULL, or one of them) */
    double max[ENGINE_TICK_PARTS_MAX]; /* D-RTRL: each part's max |E| */
};

/* Runs fn over p's rows in tick parts (one part for a small weight): each row is written
 * whole by one part, so the cut does not change the bits. */
static void
run_rows(struct rows_job *j, engine_part_fn *fn)
{
    j->n_parts = engine_free_parts(j->e, j->p->count);
    engine_run_parts(j->e, j->n_parts, j->p->count, fn, j);
}

/* dst += a q^T over the part's rows (dense or the stored entries of sparse). */
static void
outer_part(void *arg, int part)
{
    struct rows_job *j = arg;
    const struct eproj *p = j->p;
    int64_t lo, hi;
    engine_part_rows(p->I, j->n_parts, part, &lo, &hi);
    if (p->d->op == MODEL_OP_DENSE)
        trace_outer_dense(hi - lo, p->O, j->dst + lo * p->O, j->a + lo, p->q);
    else /* indptr holds absolute entry numbers */
        trace_outer_sparse(hi - lo, j->dst, p->w.indptr + lo, p->w.indices, j->a + lo, p->q);
}

/* dw += a q^T on the projection's layout (dense, the stored entries of sparse, elemwise);
 * db += q when there is a bias. */
static void
add_outer(const struct engine *e, const struct eproj *p, real *dw, real *db, const real *a)
{
    if (p->d->op == MODEL_OP_ELEMWISE) {
        trace_outer_elem(p->O, dw, a, p->q);
    } else {
        struct rows_job j = {.e = e, .p = (struct eproj *)p, .dst = dw, .a = a};
        run_rows(&j, outer_part);
    }
    if (db)
        trace_outer_elem(p->O, db, NULL, p->q);
}

/* The D-RTRL trace pass (and its gradient into acc or w) over the part's rows: every
 * element of E, acc and w belongs to one row. */
static void
drtrl_part(void *arg, int part)
{
    struct rows_job *j = arg;
    struct eproj *p = j->p;
    int64_t lo, hi, O = p->O;
    engine_part_rows(p->I, j->n_parts, part, &lo, &hi);
    real *aw = j->acc, *ww = j->w;
    if (p->d->op == MODEL_OP_DENSE) /* K = 1: one plane of [I][O] */
        j->max[part] = trace_drtrl_dense(hi - lo, O, 1, p->E + lo * O, aw ? aw + lo * O : NULL,
                                         ww ? ww + lo * O : NULL, j->lr, p->scratch, p->Dcol,
                                         p->fcol, j->g, p->x + lo);
    else
        j->max[part] =
            trace_drtrl_sparse(hi - lo, O, p->count, p->K, p->E, aw, ww, j->lr, p->w.indptr + lo,
                               p->w.indices, p->Dcol, p->fcol, j->g, p->x + lo);
}

void
learn_gather_g(const struct engine *e, struct eproj *p)
{
    const struct ecell *cl = &e->cells[p->cell];
    int64_t n = cl->n, O = p->O;
    for (int b = 0; b < p->d->n_to_slots; b++)
        for (int64_t k = 0; k < cl->K; k++)
            memcpy(p->gcol + k * O + (int64_t)b * n, cl->g + k * n, (size_t)n * sizeof(real));
}

/* How a tick's gradient leaves proj_traces: not at all (traces only), added to dw/db, or
 * as the fused sgd step (D-RTRL straight into the weights; ES and instant left pending as
 * a rank-one a (x) q for the step). */
enum grad_mode { GRAD_NONE, GRAD_ACC, GRAD_FUSED };

/* Advances projection p's traces and delivers this tick's gradient as `mode` says.
 * Returns non-zero when a trace went non-finite. */
static int
proj_traces(struct engine *e, struct eproj *p, enum grad_mode mode, real *dw, real *db)
{
    const real *g = mode != GRAD_NONE ? p->gcol : NULL;
    real *aw = mode == GRAD_ACC ? dw : NULL, *ab = mode == GRAD_ACC ? db : NULL;
    real *ww = mode == GRAD_FUSED ? p->w.values : NULL;
    real *wb = mode == GRAD_FUSED ? p->w.bias : NULL;
    real lr = (real)e->lr;
    int64_t I = p->I, O = p->O;
    int K = p->K, bad = 0;
    enum model_op op = p->d->op;
    switch (p->rule) {
    case ENGINE_RULE_FROZEN:
        break;
    case ENGINE_RULE_D_RTRL: {
        double m = 0.0;
        if (op == MODEL_OP_SPARSE || (op == MODEL_OP_DENSE && K == 1)) {
            struct rows_job j = {.e = e, .p = p, .acc = aw, .w = ww, .lr = lr, .g = g};
            run_rows(&j, drtrl_part);
            for (int k = 0; k < j.n_parts; k++) /* max is exact in any order */
                m = j.max[k] > m ? j.max[k] : m;
        } else if (op == MODEL_OP_DENSE)
            m = trace_drtrl_dense(I, O, K, p->E, aw, ww, lr, p->scratch, p->Dcol, p->fcol, g, p->x);
        else
            m = trace_drtrl_elem(O, K, p->E, aw, ww, lr, p->Dcol, p->fcol, g, p->x);
        if (p->Eb) { /* the bias: E_b = D E_b + f */
            double mb = trace_drtrl_elem(O, K, p->Eb, ab, wb, lr, p->Dcol, p->fcol, g, NULL);
            m = mb > m ? mb : m;
        }
        p->e_max = m;
        bad |= !(m < (double)INFINITY);
        break;
    }
    case ENGINE_RULE_ES: {
        bad |= trace_es_input(I, p->ex, e->lambda_x, p->x);
        bad |= trace_es_hidden(O, K, p->ef, e->lambda_f, p->Dcol, p->fcol);
        if (mode == GRAD_NONE)
            break;
        trace_column_factor(O, K, p->q, g, p->ef, (real)(1.0 / es_correction(e)));
        if (mode == GRAD_FUSED) {
            p->pending = 1;
            p->pend_a = p->ex;
            break;
        }
        add_outer(e, p, dw, db, p->ex);
        break;
    }
    case ENGINE_RULE_INSTANT:
        if (mode == GRAD_NONE)
            break;
        trace_column_factor(O, K, p->q, g, p->fcol, R(1.0));
        if (mode == GRAD_FUSED) {
            p->pending = 1;
            p->pend_a = p->x;
            break;
        }
        add_outer(e, p, dw, db, p->x);
        break;
    }
    return bad;
}

/* acc += a * src; sum += a * src (sum may be NULL). */
static void
add_scaled(int64_t n, real *acc, double *sum, real a, const real *src)
{
    if (!acc)
        return;
    for (int64_t i = 0; i < n; i++) {
        real v = a * src[i];
        acc[i] += v;
        if (sum)
            sum[i] += (double)v;
    }
}

/* Adds to dw, db the gradient of this tick for the signal in p->gcol from p's traces as
 * proj_traces already advanced them in this tick (the critic's H^t beside the policy's
 * G^t: one trace update, two gradients). */
static void
proj_grad_again(const struct engine *e, struct eproj *p, real *dw, real *db)
{
    const real *g = p->gcol;
    int64_t O = p->O, K = p->K, n = p->count;
    enum model_op op = p->d->op;
    switch (p->rule) {
    case ENGINE_RULE_FROZEN:
        break;
    case ENGINE_RULE_D_RTRL:
        /* grad W[idx] += sum_k g[k, column of idx] E[k, idx] */
        for (int64_t idx = 0; idx < n; idx++) {
            int64_t o = op == MODEL_OP_DENSE    ? idx % O
                        : op == MODEL_OP_SPARSE ? (int64_t)p->w.indices[idx]
                                                : idx;
            real gs = g[o] * p->E[idx];
            for (int64_t k = 1; k < K; k++)
                gs += g[k * O + o] * p->E[k * n + idx];
            dw[idx] += gs;
        }
        for (int64_t o = 0; db && p->Eb && o < O; o++) {
            real gs = g[o] * p->Eb[o];
            for (int64_t k = 1; k < K; k++)
                gs += g[k * O + o] * p->Eb[k * O + o];
            db[o] += gs;
        }
        break;
    case ENGINE_RULE_ES: {
        trace_column_factor(O, (int)K, p->q, g, p->ef, (real)(1.0 / es_correction(e)));
        add_outer(e, p, dw, db, p->ex);
        break;
    }
    case ENGINE_RULE_INSTANT:
        trace_column_factor(O, (int)K, p->q, g, p->fcol, R(1.0));
        add_outer(e, p, dw, db, p->x);
        break;
    }
}

/* acc += a * (epi + wgt * ev), the TD step's one sum per parameter; sum likewise (or NULL). */
static void
add_td(int64_t n, real *acc, double *sum, real a, const real *epi, real wgt, const real *ev)
{
    if (!acc)
        return;
    for (int64_t i = 0; i < n; i++) {
        real v = a * (epi[i] + wgt * ev[i]);
        acc[i] += v;
        if (sum)
            sum[i] += (double)v;
    }
}

/* a *= k; k = 0 writes zeros (a non-finite value does not survive an episode's end). */
static void
scale(int64_t n, real *a, real k)
{
    if (a && k == R(0.0))
        memset(a, 0, (size_t)n * sizeof(real));
    for (int64_t i = 0; a && k != R(0.0) && i < n; i++)
        a[i] *= k;
}

/* Actor-critic with eligibility traces (DESIGN §4.3 "reward with a critic"): hands over
 * -delta^t (e_pi^{t-1} + weight e_V^{t-1}), then e = gamma lambda e + G (policy) and H
 * (critic); at an episode's first tick e starts from 0. The policy's g is in p->gpi
 * (critic_backward), the critic's in the cells' g. */
static void
critic_tick(struct engine *e)
{
    const struct model_learning *l = &e->d->learning;
    int learning = engine_learning_active(e), first = e->episode_ticks == 0;
    real gl = (real)(exp(-e->d->dt / l->tau_gamma) * exp(-e->d->dt / l->tau_lambda));
    real adv = (real)(-e->last_delta), wgt = (real)l->critic_weight;
    for (int pi = 0; pi < e->n_projs; pi++) {
        struct eproj *p = &e->projs[pi];
        if (p->rule == ENGINE_RULE_FROZEN)
            continue;
        if (learning) {
            add_td(p->count, p->acc_w, p->sum_w, adv, p->e_w, wgt, p->ev_w);
            if (p->e_b)
                add_td(p->O, p->acc_b, p->sum_b, adv, p->e_b, wgt, p->ev_b);
        }
        if (first || learning) { /* learning off holds e (DESIGN §4.4) */
            real k = first ? R(0.0) : gl;
            scale(p->count, p->e_w, k);
            scale(p->O, p->e_b, k);
            scale(p->count, p->ev_w, k);
            scale(p->O, p->ev_b, k);
        }
        int has_gpi = learning && p->has_gpi, has_gv = learning && e->cells[p->cell].has_dl;
        if (has_gpi)
            memcpy(p->gcol, p->gpi, (size_t)p->K * (size_t)p->O * sizeof(real));
        if (proj_traces(e, p, has_gpi ? GRAD_ACC : GRAD_NONE, p->e_w, p->e_b))
            e->cells[p->cell].bad = 1;
        if (has_gv) {
            learn_gather_g(e, p);
            proj_grad_again(e, p, p->ev_w, p->ev_b);
        }
    }
}

void
learn_end_episode(struct engine *e)
{
    for (int pi = 0; pi < e->n_projs; pi++) {
        struct eproj *p = &e->projs[pi];
        scale(p->count, p->e_w, R(0.0));
        scale(p->O, p->e_b, R(0.0));
        scale(p->count, p->ev_w, R(0.0));
        scale(p->O, p->ev_b, R(0.0));
    }
    const struct model_learning *l = &e->d->learning;
    scale(e->readouts[l->policy_readout].size, e->xi, R(0.0));
}

void
learn_accumulate_tick(struct engine *e, double reward)
{
    if (e->critic_cell >= 0) {
        critic_tick(e);
        return;
    }
    int learning = engine_learning_active(e);
    int is_reward = e->d->learning.signal == MODEL_SIGNAL_REWARD;
    real gamma = R(0.0), adv = R(0.0);
    if (e->track) /* the sums of earlier ticks first: each sum adds in tick order */
        for (int pi = 0; pi < e->n_projs; pi++)
            defer_grad_flush(&e->projs[pi]);
    if (learning && is_reward) {
        gamma = (real)exp(-e->d->dt / e->d->learning.tau_e);
        adv = (real)(-(reward - e->reward_baseline)); /* handed over: -(r - b) e */
    }
    for (int pi = 0; pi < e->n_projs; pi++) {
        struct eproj *p = &e->projs[pi];
        if (p->rule == ENGINE_RULE_FROZEN)
            continue;
        int has_g = learning && e->cells[p->cell].has_dl;
        real *dw = NULL, *db = NULL;
        if (learning && is_reward) {
            /* e = gamma e + G: decay first, the kernels add G */
            for (int64_t i = 0; i < p->count; i++)
                p->e_w[i] *= gamma;
            for (int64_t i = 0; p->e_b && i < p->O; i++)
                p->e_b[i] *= gamma;
            if (has_g) {
                dw = p->e_w;
                db = p->e_b;
            }
        } else if (has_g && e->track) {
            dw = p->gt_w;
            db = p->gt_b;
            memset(dw, 0, (size_t)p->count * sizeof(real));
            if (db)
                memset(db, 0, (size_t)p->O * sizeof(real));
        } else if (has_g) {
            dw = p->acc_w;
            db = p->acc_b;
        }
        if (has_g)
            learn_gather_g(e, p);
        if (proj_traces(e, p, dw ? GRAD_ACC : GRAD_NONE, dw, db))
            e->cells[p->cell].bad = 1;
        if (learning && is_reward) {
            add_scaled(p->count, p->acc_w, p->sum_w, adv, p->e_w);
            add_scaled(p->O, p->acc_b, p->sum_b, adv, p->e_b);
        } else if (has_g && e->track) {
            add_scaled(p->count, p->acc_w, p->sum_w, R(1.0), p->gt_w);
            add_scaled(p->O, db ? p->acc_b : NULL, p->sum_b, R(1.0), p->gt_b);
        }
    }
    if (learning && is_reward) {
        double beta = exp(-e->d->dt / e->d->learning.tau_baseline);
        e->reward_baseline = beta * e->reward_baseline + (1.0 - beta) * reward;
    }
}

double
learn_max_abs(int64_t n, const real *a)
{
    real_bits m[8] = {0}; /* 8 chains of compares in flight; a max is the same in any order */
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            real_bits b = real_abs_bits(a[i + k]);
            m[k] = b > m[k] ? b : m[k];
        }
    for (; i < n; i++) {
        real_bits b = real_abs_bits(a[i]);
        m[0] = b > m[0] ? b : m[0];
    }
    for (int k = 1; k < 8; k++)
        m[0] = m[k] > m[0] ? m[k] : m[0];
    return real_from_abs_bits(m[0]);
}

static double
weight_bound(struct eproj *p)
{
    if (p->w_bound < 0.0) {
        p->w_bound = learn_max_abs(p->count, p->w.values);
        if (p->w.bias) {
            double b = learn_max_abs(p->O, p->w.bias);
            p->w_bound = b > p->w_bound ? b : p->w_bound;
        }
    }
    return p->w_bound;
}

/* An upper bound of |lr * gradient| for any weight or bias of p in this tick's fused step:
 * D-RTRL: |E_new| <= K max|D| max|E_old| + max|f| max|x| (x = 1 for a bias), and the
 * gradient sums K products with g; rank one: max|a| max|q| (max|q| for a bias). */
static double
fused_step_bound(const struct engine *e, const struct eproj *p)
{
    int64_t O = p->O, K = p->K;
    if (p->rule == ENGINE_RULE_D_RTRL) {
        double xmax = learn_max_abs(p->I, p->x);
        if (p->w.bias && xmax < 1.0)
            xmax = 1.0;
        double enew = (double)K * learn_max_abs(K * K * O, p->Dcol) * p->e_max +
                      learn_max_abs(K * O, p->fcol) * xmax;
        return e->lr * (double)K * learn_max_abs(K * O, p->gcol) * enew * 1.001;
    }
    double amax = learn_max_abs(p->I, p->pend_a), qmax = learn_max_abs(O, p->q);
    if (p->w.bias && amax < 1.0)
        amax = 1.0;
    return e->lr * amax * qmax * 1.001;
}

/* w -= lr a q^T over the part's rows. */
static void
rank1_part(void *arg, int part)
{
    struct rows_job *j = arg;
    const struct eproj *p = j->p;
    int64_t lo, hi;
    engine_part_rows(p->I, j->n_parts, part, &lo, &hi);
    if (p->d->op == MODEL_OP_DENSE)
        optim_sgd_rank1_dense(hi - lo, p->O, j->dst + lo * p->O, j->a + lo, p->q, j->lr, R(0.0));
    else /* indptr holds absolute entry numbers */
        optim_sgd_rank1_sparse(hi - lo, j->dst, p->w.indptr + lo, p->w.indices, j->a + lo, p->q,
                               j->lr, R(0.0));
}

/* The decay of the row factor a of p's rank-one gradient: a = lambda a_prev + x. */
static real
grad_lambda(const struct engine *e, const struct eproj *p)
{
    return p->rule == ENGINE_RULE_ES ? e->lambda_x : R(0.0);
}

struct elem_job {
    int64_t n;
    real *w;
    const real *a, *q;
    real lr;
    int n_parts;
};

static void
elem_part(void *arg, int part)
{
    struct elem_job *j = arg;
    int64_t lo, hi;
    engine_part_rows(j->n, j->n_parts, part, &lo, &hi);
    optim_sgd_rank1_elem(hi - lo, j->w + lo, j->a ? j->a + lo : NULL, j->q + lo, j->lr, R(0.0));
}

/* w -= lr a q (a NULL: 1) element-wise, in parts (each element is its own). */
static void
rank1_elem(const struct engine *e, int64_t n, real *w, const real *a, const real *q, real lr)
{
    struct elem_job j = {n, w, a, q, lr, engine_free_parts(e, n)};
    engine_run_parts(e, j.n_parts, n, elem_part, &j);
}

static void
rank1_apply(struct engine *e, struct eproj *p, real lr)
{
    if (p->defers) {
        if (p->n_pend == p->n_pend_max)
            defer_flush_parts(e, p); /* only after a snapshot held a scheduled flush back */
        defer_push(e, p, p->pend_a, p->rule == ENGINE_RULE_ES ? p->x : NULL, p->q, lr,
                   grad_lambda(e, p), e->tick);
    } else if (p->d->op != MODEL_OP_ELEMWISE) {
        struct rows_job j = {.e = e, .p = p, .dst = p->w.values, .a = p->pend_a, .lr = lr};
        run_rows(&j, rank1_part);
    } else /* the instant rule on an elemwise weight */
        rank1_elem(e, p->O, p->w.values, p->pend_a, p->q, lr);
    if (p->w.bias)
        rank1_elem(e, p->O, p->w.bias, NULL, p->q, lr);
    /* ||a (x) q||^2 = ||a||^2 ||q||^2; the bias adds ||q||^2 */
    double a2 = optim_sum_sq(p->I, p->pend_a), q2 = optim_sum_sq(p->O, p->q);
    struct optim_param *ow = &e->oparams[p->opw];
    ow->grad_sq = a2 * q2;
    if (p->opb >= 0)
        e->oparams[p->opb].grad_sq = q2;
}

/* The optimizer step on the last K ticks' accumulated gradients: all or nothing over
 * every parameter (DESIGN §4.4). */
void
learn_optimizer_step(struct engine *e)
{
    struct optim_plan plan;
    for (int pi = 0; pi < e->n_projs; pi++)
        defer_flush_parts(e, &e->projs[pi]); /* the pairs are older than this step */
    if (optim_check(&e->ocfg, e->lr, e->steps + 1, e->n_oparams, e->oparams, &plan)) {
        optim_apply(&e->ocfg, &plan, e->n_oparams, e->oparams);
        e->steps++;
    } else {
        optim_discard(e->n_oparams, e->oparams);
        e->updates_refused++;
    }
    for (int pi = 0; pi < e->n_projs; pi++)
        e->projs[pi].w_bound = -1.0; /* the weights moved outside the fused path */
}

/* One tick of learning on the fused path (sgd, K = 1, no clip or decay, target signal, no
 * gradient sums). Every projection's step is bounded first from this tick's trace inputs;
 * when every bound keeps every weight far from overflow the steps are written directly,
 * D-RTRL's inside its trace pass and the rank-one ones after, which computes bit for bit
 * what the accumulator path computes while moving a third of the bytes. When a bound
 * fails, this tick takes the accumulator path and its exact all-or-nothing check. */
void
learn_fused_tick(struct engine *e)
{
    int ok = isfinite(e->lr), refuse = 0;
    for (int pi = 0; pi < e->n_projs; pi++) {
        struct eproj *p = &e->projs[pi];
        if (p->rule == ENGINE_RULE_FROZEN)
            continue;
        p->has_g = e->cells[p->cell].has_dl;
        if (!p->has_g) {
            if (proj_traces(e, p, GRAD_NONE, NULL, NULL))
                e->cells[p->cell].bad = 1;
            if (e->track) /* a tick without gradient inside a window of the sums */
                defer_grad_push(p, NULL, p->x, NULL, grad_lambda(e, p), e->tick);
            continue;
        }
        learn_gather_g(e, p);
        if (p->rule != ENGINE_RULE_D_RTRL && proj_traces(e, p, GRAD_FUSED, NULL, NULL))
            e->cells[p->cell].bad = 1;
        p->step_bound = fused_step_bound(e, p);
        ok = ok && weight_bound(p) + p->step_bound < 1e30; /* false for NaN too */
        if (p->defers && p->pending && !defer_pair_ok(p, p->pend_a, p->q, e->lr))
            refuse = 1; /* DESIGN §4.4: a pair is checked when formed */
    }
    ok = ok && !refuse;
    for (int pi = 0; pi < e->n_projs; pi++) {
        struct eproj *p = &e->projs[pi];
        if (p->rule == ENGINE_RULE_FROZEN || !p->has_g)
            continue;
        if (e->track && p->pending) /* the float64 sums, from the same rank-one pair */
            defer_grad_push(p, p->pend_a, p->x, p->q, grad_lambda(e, p), e->tick);
        if (ok) {
            if (p->rule == ENGINE_RULE_D_RTRL && proj_traces(e, p, GRAD_FUSED, NULL, NULL))
                e->cells[p->cell].bad = 1;
            if (p->pending)
                rank1_apply(e, p, (real)e->lr);
            p->w_bound += p->step_bound;
        } else if (p->rule == ENGINE_RULE_D_RTRL) {
            if (proj_traces(e, p, GRAD_ACC, p->acc_w, p->acc_b))
                e->cells[p->cell].bad = 1;
        } else if (p->pending) {
            add_outer(e, p, p->acc_w, p->acc_b, p->pend_a);
        }
        p->pending = 0;
    }
    if (ok) {
        e->steps++;
    } else if (refuse) { /* a pair too large to defer: the step is refused, all of it */
        optim_discard(e->n_oparams, e->oparams);
        e->updates_refused++;
    } else {
        learn_optimizer_step(e);
    }
}
