/* The engine: compile a model description into buffers and programs, then tick.
 *
 * Compile allocates everything: the parameters (param.c), one arena for every per-tick
 * buffer (states, outputs, derivatives, traces, accumulators, optimizer state), and the
 * cell programs (expr.c). A tick (DESIGN §4.4) then only reads and writes those:
 *   1. inputs and signals for this tick;
 *   2. forward pass in cell order (DESIGN §2.1), each cell's program giving the new
 *      states and the derivative blocks;
 *   3. readouts, the policy's action, the loss and dL/d(readout);
 *   4. the within-tick backward pass giving g = dL/dh for every cell (DESIGN §4.1);
 *   5. traces and this tick's gradient per projection (trace.c), the reward eligibility;
 *   6. the optimizer step every K ticks (optim.c); the finiteness checks. */
#include "engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "bptt.h"
#include "defer.h"
#include "engine_int.h"
#include "engine_state.h"
#include "expr.h"
#include "learn.h"
#include "loss.h"
#include "op.h"
#include "optim.h"
#include "param.h"
#include "rng.h"
#include "trace.h"

/* ---- small helpers ------------------------------------------------------------------ */

void
engine_mark_weights(struct eproj *p)
{
    if (!p->w_mark)
        return; /* stats.drift: off keeps no mark */
    defer_effective(p, 0, p->count, p->w_mark);
    if (p->b_mark)
        memcpy(p->b_mark, p->w.bias, (size_t)p->O * sizeof(real));
}

static void
fill(real *p, int64_t n, real v)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = v;
}

/* The sum of p[0..n) in double, in 8 interleaved partial sums: a fixed order, with 8
 * chains of additions in flight (one chain cost a 140k-neuron cell ~0.2 ms a tick). */
static double
sum_d(const real *p, int64_t n)
{
    double s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += (double)p[i + k];
    for (; i < n; i++)
        s[0] += (double)p[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static int
has_bad(const real *p, int64_t n)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad |= (p[i] - p[i] != R(0.0));
    return bad;
}

void
engine_set_fp_env(void)
{
#if defined(__x86_64__) || defined(__i386__)
    /* FTZ (bit 15) and DAZ (bit 6): subnormals never slow a silent model down. */
    _mm_setcsr(_mm_getcsr() | 0x8040);
#endif
}

/* ---- compile -------------------------------------------------------------------------- */

static enum engine_rule
choose_rule(const struct model_desc *d, const struct model_proj *p, int64_t count)
{
    const struct model_learning *l = &d->learning;
    if (!l->present || l->signal == MODEL_SIGNAL_NONE || p->learn == MODEL_LEARN_FROZEN)
        return ENGINE_RULE_FROZEN;
    if (p->learn == MODEL_LEARN_INSTANT)
        return ENGINE_RULE_INSTANT;
    if (p->op == MODEL_OP_ELEMWISE)
        return ENGINE_RULE_D_RTRL; /* exact, and costs K*O like ES */
    switch (l->algorithm) {
    case MODEL_ALGO_D_RTRL:
        return ENGINE_RULE_D_RTRL;
    case MODEL_ALGO_ES_D_RTRL:
        return ENGINE_RULE_ES;
    case MODEL_ALGO_HYBRID: {
        int64_t K = d->cells[p->to_cell].n_states;
        /* D-RTRL where K*P <= budget * (I + K*O) */
        return K * count <= (int64_t)l->hybrid_budget * (p->in_size + K * p->out_size)
                   ? ENGINE_RULE_D_RTRL
                   : ENGINE_RULE_ES;
    }
    }
    return ENGINE_RULE_FROZEN;
}

/* The arena is laid out twice: once with base NULL to size it, once to carve it. Buffers
 * the size of a weight tensor are allocated one by one instead (carve_big), so that a hot
 * swap can hand them over to the new model by pointer (engine_state_carry). */
struct carver {
    char *base;
    size_t off;
    const struct mem *mem; /* the second pass allocates the big buffers with it */
    size_t big_bytes;
    int failed; /* a big allocation failed */
};

static real *
carve_big(struct carver *c, int64_t n, size_t elem)
{
    size_t bytes = (size_t)(n > 0 ? n : 1) * elem;
    c->big_bytes += bytes;
    if (!c->base)
        return NULL;
    real *p = mem_calloc(c->mem, 1, bytes);
    c->failed |= !p;
    return p;
}

static real *
carve(struct carver *c, int64_t n)
{
    size_t bytes = ((size_t)n * sizeof(real) + 63) & ~(size_t)63;
    real *p = c->base ? (real *)(c->base + c->off) : NULL;
    c->off += bytes;
    return p;
}

static double *
carve_d(struct carver *c, int64_t n)
{
    return (double *)carve(c, n * (int64_t)(sizeof(double) / sizeof(real)));
}

static void
layout(struct engine *e, struct carver *c)
{
    const struct model_learning *l = &e->d->learning;
    for (int i = 0; i < e->n_inputs; i++) {
        struct einput *in = &e->inputs[i];
        const struct model_input *mi = &e->d->inputs[i];
        in->value = carve(c, in->size);
        int transformed = mi->offset || mi->scale || mi->norm_tau > 0.0;
        in->seen = transformed ? carve(c, in->size) : in->value;
        in->off = mi->offset ? carve(c, in->size) : NULL;
        in->scl = mi->scale ? carve(c, in->size) : NULL;
        in->norm = mi->norm_tau > 0.0 ? carve(c, 2 * (int64_t)in->size) : NULL;
    }
    for (int ci = 0; ci < e->n_cells; ci++) {
        struct ecell *cl = &e->cells[ci];
        int64_t n = cl->n, K = cl->K, S = cl->S;
        for (int b = 0; b < 2; b++) {
            cl->h[b] = carve(c, K * n);
            cl->out[b] = carve(c, n);
        }
        cl->init = carve(c, K);
        cl->init_out = carve(c, n);
        cl->slot = carve(c, S * n);
        if (e->need_derivs) {
            cl->jac = carve(c, K * K * n);
            cl->dslot = carve(c, K * S * n);
            cl->dout = carve(c, K * n);
            cl->g = carve(c, K * n);
            cl->dl = carve(c, n);
        }
    }
    for (int pi = 0; pi < e->n_projs; pi++) {
        struct eproj *p = &e->projs[pi];
        int64_t I = p->I, O = p->O, K = p->K;
        int has_b = p->w.bias != NULL;
        int learns = p->rule != ENGINE_RULE_FROZEN;
        p->x = carve(c, I);
        p->y = carve(c, O);
        if (e->drift) { /* stats.drift: off keeps neither (DESIGN §5.5) */
            p->w0 = carve_big(c, p->count, sizeof(real));
            p->b0 = has_b ? carve(c, O) : NULL;
            p->w_mark = carve_big(c, p->count, sizeof(real));
            p->b_mark = has_b ? carve(c, O) : NULL;
        }
        if (e->need_derivs) {
            p->Dcol = carve(c, K * K * O);
            p->fcol = carve(c, K * O);
            p->gcol = carve(c, K * O);
            p->q = carve(c, O);
            p->scratch = carve(c, 2 * K * O);
        }
        p->trace_bytes = 0;
        if (p->rule == ENGINE_RULE_D_RTRL) {
            p->E = carve_big(c, K * p->count, sizeof(real));
            p->Eb = has_b ? carve(c, K * O) : NULL;
            p->trace_bytes = (K * p->count + (has_b ? K * O : 0)) * (int64_t)sizeof(real);
        } else if (p->rule == ENGINE_RULE_ES) {
            p->ex = carve(c, I);
            p->ef = carve(c, K * O);
            p->trace_bytes = (I + K * O) * (int64_t)sizeof(real);
        }
        if (!learns)
            continue;
        if (p->defers) {
            int64_t r = p->n_pend_max, rl = defer_scratch_len(p);
            p->pa = carve(c, I * r);
            p->pb = carve(c, r * O);
            p->pc = carve(c, ENGINE_TICK_PARTS_MAX * rl); /* per part */
            p->pk = (int64_t *)carve_d(c, ENGINE_TICK_PARTS_MAX * rl);
            defer_close(p);
        }
        if (e->track && e->fused && p->d->op != MODEL_OP_ELEMWISE) {
            p->n_grad_max = defer_grad_window(p);
            p->ga = carve(c, I * p->n_grad_max);
            p->gb = carve(c, p->n_grad_max * O);
        }
        p->acc_w = carve_big(c, p->count, sizeof(real));
        p->acc_b = has_b ? carve(c, O) : NULL;
        if (l->optimizer != MODEL_OPTIM_SGD) {
            p->m_w = carve_big(c, p->count, sizeof(real));
            p->m_b = has_b ? carve(c, O) : NULL;
        }
        if (l->optimizer == MODEL_OPTIM_ADAM) {
            p->v_w = carve_big(c, p->count, sizeof(real));
            p->v_b = has_b ? carve(c, O) : NULL;
        }
        if (l->signal == MODEL_SIGNAL_REWARD) {
            p->e_w = carve_big(c, p->count, sizeof(real));
            p->e_b = has_b ? carve(c, O) : NULL;
        }
        if (l->signal == MODEL_SIGNAL_REWARD && l->critic_readout >= 0) {
            p->ev_w = carve_big(c, p->count, sizeof(real));
            p->ev_b = has_b ? carve(c, O) : NULL;
            p->gpi = carve(c, K * O);
        }
        if (e->track) {
            p->gt_w = carve_big(c, p->count, sizeof(real));
            p->gt_b = has_b ? carve(c, O) : NULL;
            p->sum_w = (double *)carve_big(c, p->count, sizeof(double));
            p->sum_b = has_b ? carve_d(c, O) : NULL;
        }
    }
    for (int r = 0; r < e->n_readouts; r++) {
        struct ereadout *ro = &e->readouts[r];
        ro->target = carve(c, ro->size);
        ro->action = carve(c, ro->size);
        const struct model_readout *mr = &e->d->readouts[r];
        int published = mr->has_clip || mr->scale != 1.0;
        ro->pub = published ? carve(c, ro->size) : NULL;
        ro->pub_action = published ? carve(c, ro->size) : NULL;
    }
    int64_t pol = 1;
    if (l->present && l->signal == MODEL_SIGNAL_REWARD)
        pol = e->readouts[l->policy_readout].size;
    e->xi = carve(c, pol);
    e->probs = carve(c, pol);
    e->v_prev = carve(c, 1);
    int64_t largest = 1;
    for (int r = 0; r < e->n_readouts; r++)
        if (e->readouts[r].size > largest)
            largest = e->readouts[r].size;
    e->dl_tmp = carve(c, largest);
}

/* The part of a model an over-memory error points at: the cell or projection whose share
 * of the estimate is largest. */
struct est_part {
    const char *kind; /* "cells" or "projections" */
    const char *name, *field;
    struct model_pos pos;
    double bytes;
};

static void
est_note(struct est_part *top, const char *kind, const char *name, const char *field,
         struct model_pos pos, double bytes)
{
    if (bytes > top->bytes)
        *top = (struct est_part){kind, name, field, pos, bytes};
}

/* Estimates the bytes a model will need before anything large is allocated: parameters,
 * their copies, traces, accumulators and optimizer state. Random sparse weights count as
 * prob * I * O; sparse files are not counted here (their size is bounded by the files,
 * and the exact check before the arena is allocated counts them). *top: the largest part. */
static double
estimate_bytes(const struct model_desc *d, struct est_part *top)
{
    double total = 0.0;
    *top = (struct est_part){"model", "", "", {0, 0}, -1.0};
    for (int i = 0; i < d->n_cells; i++) {
        const struct model_cell *c = &d->cells[i];
        double K = c->n_states, S = c->n_slots;
        double b = (double)c->size * (4 * K + 2 + S + K * K + K * S + 2 * K + 1);
        est_note(top, "cells", c->name, "size", c->pos, b * (double)sizeof(real));
        total += b;
    }
    for (int i = 0; i < d->n_projs; i++) {
        const struct model_proj *p = &d->projs[i];
        double count =
            p->op == MODEL_OP_ELEMWISE ? (double)p->out_size : (double)p->in_size * p->out_size;
        if (p->op == MODEL_OP_SPARSE && p->weight.kind == MODEL_TENSOR_RANDOM)
            count *= p->weight.prob;
        else if (p->op == MODEL_OP_SPARSE)
            count = 0.0;
        double K = d->cells[p->to_cell].n_states;
        double per = 2 + 4; /* values, W0, accumulator, moments, eligibility */
        if (d->learning.present && p->op != MODEL_OP_ELEMWISE &&
            d->learning.algorithm == MODEL_ALGO_D_RTRL && p->learn == MODEL_LEARN_TRACE)
            per += K;
        est_note(top, "projections", p->name, "weight", p->weight.pos,
                 count * per * (double)sizeof(real));
        total += count * per;
    }
    return total * (double)sizeof(real);
}

/* Refuses a model whose resident estimate exceeds physical memory (DESIGN §2.4), naming
 * the largest part's file position. */
static int
check_memory(const struct model_desc *d, double need, const struct est_part *top, struct err *err)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    double have = (pages > 0 && page > 0) ? (double)pages * (double)page : 0.0;
    if (have > 0.0 && need > have)
        return err_setf(err, ERR_MODEL,
                        "%s:%d:%d: %s.%s.%s: the resident estimate (%.3g GiB) exceeds "
                        "physical memory (%.3g GiB); this %s holds %.3g GiB of it",
                        d->path, top->pos.line, top->pos.col, top->kind, top->name, top->field,
                        need / 1073741824.0, have / 1073741824.0,
                        top->kind[0] == 'c' ? "cell" : "projection", top->bytes / 1073741824.0),
               -1;
    return 0;
}

/* reach[c]: a within-tick path from cell c's states to a loss exists (DESIGN §4.1). A loss
 * sits at every readout under `target` and at the policy readout under `reward`; a path
 * leaves c through a projection into a later cell, which reads c in the same tick. */
static void
reach_loss(const struct model_desc *d, int *reach)
{
    const struct model_learning *l = &d->learning;
    for (int r = 0; r < d->n_readouts; r++)
        if (!l->present || l->signal != MODEL_SIGNAL_REWARD || l->policy_readout == r ||
            l->critic_readout == r)
            reach[d->readouts[r].cell] = 1;
    for (int c = d->n_cells - 1; c >= 0; c--)
        for (int p = 0; p < d->n_projs && !reach[c]; p++) {
            const struct model_proj *mp = &d->projs[p];
            if (mp->to_cell <= c || !reach[mp->to_cell])
                continue;
            for (int s = 0; s < mp->n_from; s++)
                if (!mp->from[s].is_input && mp->from[s].index == c)
                    reach[c] = 1;
        }
}

/* The output of a cell's initial states (DESIGN §2.1: what a projection reads as "the
 * previous tick's output" at tick 0). The output expression sees the new states only, so
 * it is evaluated through a companion cell whose updates keep every state as it is. */
static int
initial_output(const struct model_desc *d, const struct model_cell *mc, const struct mem *m,
               struct ecell *cl, struct err *err)
{
    struct model_cell id = *mc;
    id.n_defines = 0;
    id.defines = NULL;
    for (int k = 0; k < mc->n_states; k++)
        id.updates[k].text = mc->state_names[k]; /* h_new = h_old */
    struct expr_prog *prog;
    struct expr_error xe;
    if (expr_prog_compile(&id, d->dt, m, &prog, &xe))
        return err_setf(err, ERR_EXPR, "%s:%d:%d: cells.%s.output: %s", d->path, mc->pos.line,
                        mc->pos.col, mc->name, xe.msg),
               -1;
    /* One neuron is enough: every neuron starts in the same state. */
    void *scratch = mem_alloc(m, expr_prog_scratch_bytes(prog));
    real *buf = mem_calloc(m, (size_t)(2 * MODEL_MAX_K + MODEL_MAX_SLOTS + 1), sizeof(real));
    if (!scratch || !buf) {
        mem_free(m, &scratch);
        mem_free(m, &buf);
        expr_prog_free(&prog, m);
        return err_setf(err, ERR_NOMEM, "%s: out of memory", d->path), -1;
    }
    real *h_old = buf, *h_new = buf + MODEL_MAX_K, *slot = buf + 2 * MODEL_MAX_K;
    real *out = slot + MODEL_MAX_SLOTS;
    for (int k = 0; k < mc->n_states; k++)
        h_old[k] = cl->init[k];
    expr_prog_eval(prog, 1, h_new, out, NULL, NULL, NULL, h_old, slot, 0, scratch);
    fill(cl->init_out, cl->n, out[0]);
    mem_free(m, &scratch);
    mem_free(m, &buf);
    expr_prog_free(&prog, m);
    return 0;
}

/* ---- the plant interface (DESIGN §2) -------------------------------------------------- */

/* An input's constants and its normalisation statistics at load: m = 0, s2 = 1. */
static void
plant_init_input(struct engine *e, int i)
{
    struct einput *in = &e->inputs[i];
    const struct model_input *mi = &e->d->inputs[i];
    for (int k = 0; k < in->size; k++) {
        if (in->off)
            in->off[k] = (real)mi->offset[k];
        if (in->scl)
            in->scl[k] = (real)mi->scale[k];
    }
    if (in->norm) {
        fill(in->norm, in->size, R(0.0));
        fill(in->norm + in->size, in->size, R(1.0));
        in->alpha = 1.0 - exp(-e->d->dt / mi->norm_tau);
    }
}

/* What the model sees of input i this tick, from the held frame: (raw - offset) * scale, or
 * normalised with m^t = m + alpha (raw - m), s2^t = (1 - alpha) (s2 + alpha (raw - m)^2)
 * (m of the previous tick in both) and (raw - m^t) / sqrt(s2^t + eps). */
static void
plant_input(struct engine *e, int i)
{
    struct einput *in = &e->inputs[i];
    if (in->seen == in->value)
        return;
    const real *raw = in->value;
    if (in->norm) {
        real *m = in->norm, *s2 = in->norm + in->size;
        double a = in->alpha, eps = e->d->inputs[i].norm_eps;
        for (int k = 0; k < in->size; k++) {
            double d = (double)raw[k] - (double)m[k];
            double mk = (double)m[k] + a * d, sk = (1.0 - a) * ((double)s2[k] + a * d * d);
            m[k] = (real)mk;
            s2[k] = (real)sk;
            in->seen[k] = (real)(((double)raw[k] - mk) / sqrt(sk + eps));
        }
        return;
    }
    for (int k = 0; k < in->size; k++) {
        real v = in->off ? raw[k] - in->off[k] : raw[k];
        in->seen[k] = in->scl ? v * in->scl[k] : v;
    }
}

/* What a readout publishes: clamp(o, lo, hi) * scale, for its values and its action. */
static void
plant_readout(struct engine *e, int r)
{
    struct ereadout *ro = &e->readouts[r];
    if (!ro->pub)
        return;
    const struct model_readout *mr = &e->d->readouts[r];
    const real *o = e->cells[ro->cell].out[e->cur];
    real lo = (real)mr->clip_lo, hi = (real)mr->clip_hi, k = (real)mr->scale;
    const struct model_learning *l = &e->d->learning;
    int has_action = l->present && l->signal == MODEL_SIGNAL_REWARD && l->policy_readout == r;
    /* a softmax action is an index: it is published as is */
    int gauss = has_action && l->policy_kind == MODEL_POLICY_GAUSSIAN;
    for (int64_t i = 0; i < ro->size; i++) {
        real v = o[i], a = ro->action[i];
        if (mr->has_clip) {
            v = v < lo ? lo : (v > hi ? hi : v);
            a = a < lo ? lo : (a > hi ? hi : a);
        }
        ro->pub[i] = v * k;
        ro->pub_action[i] = gauss ? a * k : ro->action[i];
    }
}

static void
reset_cell_states(struct engine *e, struct ecell *cl)
{
    for (int b = 0; b < 2; b++) {
        for (int k = 0; k < cl->K; k++)
            fill(cl->h[b] + (int64_t)k * cl->n, cl->n, cl->init[k]);
        memcpy(cl->out[b], cl->init_out, (size_t)cl->n * sizeof(real));
    }
    (void)e;
}

static void
reset_proj_traces(struct eproj *p)
{
    int64_t K = p->K;
    defer_grad_flush(p); /* the window of the sums follows the traces' recurrence */
    if (p->defers)
        defer_close(p); /* and so does the segment of the pending pairs */
    if (p->E)
        fill(p->E, K * p->count, R(0.0));
    if (p->Eb)
        fill(p->Eb, K * p->O, R(0.0));
    if (p->ex)
        fill(p->ex, p->I, R(0.0));
    if (p->ef)
        fill(p->ef, K * p->O, R(0.0));
    p->e_max = 0.0;
    if (p->e_w)
        fill(p->e_w, p->count, R(0.0));
    if (p->e_b)
        fill(p->e_b, p->O, R(0.0));
    if (p->ev_w)
        fill(p->ev_w, p->count, R(0.0));
    if (p->ev_b)
        fill(p->ev_b, p->O, R(0.0));
}

int
engine_compile(struct model_desc *d, const struct engine_opts *opts, struct engine **out,
               struct err *err)
{
    const struct mem *m = opts && opts->mem ? opts->mem : mem_default();
    struct model_fs disk_fs;
    char dir[4096];
    const struct model_fs *fs = opts ? opts->fs : NULL;
    if (!fs) {
        model_dirname(d->path, dir, sizeof dir);
        disk_fs = model_fs_disk(dir);
        fs = &disk_fs;
    }
    struct est_part top;
    if (check_memory(d, estimate_bytes(d, &top), &top, err))
        return -1;
    struct engine *e = mem_calloc(m, 1, sizeof *e);
    if (!e)
        goto nomem;
    e->mem = m;
    e->d = d;
    e->track = opts ? opts->track_grad_sum : 0;
    e->part_work = opts && opts->part_work > 0 ? opts->part_work : ENGINE_TICK_PART_WORK;
    e->drift = d->stats_drift;
    e->n_inputs = d->n_inputs;
    e->n_cells = d->n_cells;
    e->n_projs = d->n_projs;
    e->n_readouts = d->n_readouts;
    e->inputs = mem_calloc(m, (size_t)d->n_inputs + 1, sizeof *e->inputs);
    e->cells = mem_calloc(m, (size_t)d->n_cells + 1, sizeof *e->cells);
    e->projs = mem_calloc(m, (size_t)d->n_projs + 1, sizeof *e->projs);
    e->readouts = mem_calloc(m, (size_t)d->n_readouts + 1, sizeof *e->readouts);
    e->oparams = mem_calloc(m, 2 * (size_t)d->n_projs + 1, sizeof *e->oparams);
    if (!e->inputs || !e->cells || !e->projs || !e->readouts || !e->oparams)
        goto nomem;
    const struct model_learning *l = &d->learning;
    e->learn = l->present && l->signal != MODEL_SIGNAL_NONE ? ENGINE_LEARN_ON : ENGINE_LEARN_OFF;
    e->lr = l->present ? l->lr : 0.0;
    e->lambda_x = (real)l->lambda_x;
    e->lambda_f = (real)l->lambda_f;
    e->ocfg = (struct optim_cfg){l->optimizer, l->momentum,     l->beta1,    l->beta2,
                                 l->eps,       l->weight_decay, l->clip_norm};
    for (int i = 0; i < d->n_inputs; i++) {
        e->inputs[i].size = d->inputs[i].size;
        e->inputs[i].kind = d->inputs[i].kind;
    }
    for (int i = 0; i < d->n_readouts; i++) {
        e->readouts[i].cell = d->readouts[i].cell;
        e->readouts[i].size = d->cells[d->readouts[i].cell].size;
    }
    size_t scratch_bytes = 0;
    for (int i = 0; i < d->n_cells; i++) {
        const struct model_cell *mc = &d->cells[i];
        struct ecell *cl = &e->cells[i];
        cl->n = mc->size;
        cl->K = mc->n_states;
        cl->S = mc->n_slots;
        cl->is_spiking = mc->is_spiking;
        struct expr_error xe;
        if (expr_prog_compile(mc, d->dt, m, &cl->prog, &xe)) {
            err_setf(err, ERR_EXPR, "%s:%d:%d: cells.%s: %s", d->path, mc->pos.line, mc->pos.col,
                     mc->name, xe.msg);
            goto fail;
        }
        size_t sb = expr_prog_scratch_bytes(cl->prog);
        if (sb > scratch_bytes)
            scratch_bytes = sb;
    }
    for (int i = 0; i < d->n_projs; i++) {
        const struct model_proj *mp = &d->projs[i];
        struct eproj *p = &e->projs[i];
        p->d = mp;
        if (opts && opts->param_source) {
            struct engine_tensors t = {0};
            if (opts->param_source(opts->param_source_ctx, mp->name, &t, err) ||
                param_from_arrays(d, mp, m, t.count, t.values, t.indptr, t.indices, t.bias, &p->w,
                                  err))
                goto fail;
        } else if (param_load(d, mp, fs, m, &p->w, err)) {
            goto fail;
        }
        p->I = mp->in_size;
        p->O = mp->out_size;
        p->count = p->w.count;
        p->cell = mp->to_cell;
        p->K = d->cells[mp->to_cell].n_states;
        p->n = d->cells[mp->to_cell].size;
        p->rule = choose_rule(d, mp, p->count);
        for (int s = 0; s < mp->n_from; s++)
            if (!mp->from[s].is_input && mp->from[s].index < mp->to_cell)
                p->reads_now = 1;
        if (p->rule != ENGINE_RULE_FROZEN)
            e->need_derivs = 1;
        e->param_bytes += (size_t)p->count * sizeof(real);
        if (p->w.bias)
            e->param_bytes += (size_t)p->O * sizeof(real);
    }
    int *reach = mem_calloc(m, (size_t)d->n_cells + 1, sizeof *reach);
    if (!reach)
        goto nomem;
    reach_loss(d, reach);
    for (int i = 0; i < d->n_projs; i++)
        e->projs[i].reaches_loss = reach[e->projs[i].cell];
    mem_free(m, &reach);
    /* The fused rank-one path computes exactly what the accumulator path does for these
     * settings; it only moves fewer bytes. With gradient sums (etraced run) it needs every
     * learning projection's gradient to be rank one (ES or instant), so that the sums are
     * kept as pairs too. */
    e->fused = l->present && l->signal == MODEL_SIGNAL_TARGET && l->optimizer == MODEL_OPTIM_SGD &&
               l->update_every == 1 && !(l->clip_norm > 0.0) && l->weight_decay == 0.0;
    for (int i = 0; i < d->n_projs && e->track; i++)
        if (e->projs[i].rule == ENGINE_RULE_D_RTRL)
            e->fused = 0;
    /* Deferred rank-one steps (DESIGN §4.4): the fused path's ES and instant steps of a
     * dense or sparse weight whose r pairs (r (I + O) values) are smaller than the weight
     * itself. A readout of a few outputs (I x 2) would keep 8x its weight in pairs and
     * write one value per line of u every tick: its immediate step moves fewer bytes. */
    e->defer_r = l->present ? l->defer : 1;
    for (int i = 0; i < d->n_projs; i++) {
        struct eproj *p = &e->projs[i];
        int rank1 = e->fused && (p->rule == ENGINE_RULE_ES || p->rule == ENGINE_RULE_INSTANT) &&
                    (p->d->op == MODEL_OP_DENSE || p->d->op == MODEL_OP_SPARSE);
        int small = (double)e->defer_r * (double)(p->I + p->O) >= (double)p->count;
        p->defer_why = e->defer_r <= 1 || p->rule == ENGINE_RULE_FROZEN ? ENGINE_DEFER_NOT_ASKED
                       : !rank1                                         ? ENGINE_DEFER_NOT_RANK1
                       : small && !(opts && opts->defer_small)          ? ENGINE_DEFER_TOO_SMALL
                                                                        : ENGINE_DEFER_YES;
        p->defers = p->defer_why == ENGINE_DEFER_YES;
        p->n_pend_max = p->defers ? e->defer_r : 0;
    }
    struct carver c = {.mem = m};
    layout(e, &c);
    e->arena_bytes = c.off;
    e->big_bytes = c.big_bytes;
    if (check_memory(d, (double)c.off + (double)c.big_bytes + (double)e->param_bytes, &top, err))
        goto fail; /* exact now that the sparse structures are known */
    e->arena = mem_alloc(m, c.off);
    e->scratch = mem_alloc(m, scratch_bytes);
    if (!e->arena || !e->scratch)
        goto nomem;
    memset(e->arena, 0, c.off);
    c = (struct carver){.base = e->arena, .mem = m};
    layout(e, &c);
    if (c.failed)
        goto nomem;
    for (int i = 0; i < d->n_cells; i++) {
        struct ecell *cl = &e->cells[i];
        for (int k = 0; k < cl->K; k++)
            cl->init[k] = (real)d->cells[i].state_init[k];
        if (initial_output(d, &d->cells[i], m, cl, err))
            goto fail;
        reset_cell_states(e, cl);
    }
    for (int i = 0; i < d->n_inputs; i++)
        plant_init_input(e, i);
    for (int i = 0; i < d->n_projs; i++) {
        struct eproj *p = &e->projs[i];
        if (p->w0)
            memcpy(p->w0, p->w.values, (size_t)p->count * sizeof(real));
        if (p->b0)
            memcpy(p->b0, p->w.bias, (size_t)p->O * sizeof(real));
        engine_mark_weights(p); /* the first ||delta W|| measures from load, not from 0 */
    }
    for (int i = 0; i < d->n_projs; i++) {
        struct eproj *p = &e->projs[i];
        p->opw = p->opb = -1;
        p->w_bound = -1.0;
        if (p->rule == ENGINE_RULE_FROZEN)
            continue;
        p->opw = e->n_oparams;
        p->opb = p->w.bias ? e->n_oparams + 1 : -1;
        e->oparams[e->n_oparams++] = (struct optim_param){
            .n = p->count, .w = p->w.values, .acc = p->acc_w, .m = p->m_w, .v = p->v_w};
        if (p->w.bias)
            e->oparams[e->n_oparams++] = (struct optim_param){
                .n = p->O, .w = p->w.bias, .acc = p->acc_b, .m = p->m_b, .v = p->v_b};
    }
    e->critic_cell = -1;
    if (l->present && l->signal == MODEL_SIGNAL_REWARD && l->critic_readout >= 0)
        e->critic_cell = d->readouts[l->critic_readout].cell;
    if (l->present && l->signal == MODEL_SIGNAL_REWARD) {
        char name[256];
        snprintf(name, sizeof name, "policy.%s", d->readouts[l->policy_readout].name);
        rng_seed(&e->policy_rng, d->seed, name);
    }
    if (engine_state_build(e))
        goto nomem;
    e->last_valid = 1;
    *out = e;
    return 0;
nomem:
    err_setf(err, ERR_NOMEM, "%s: out of memory compiling the model", d->path);
fail:
    if (e) {
        e->d = NULL; /* the caller keeps the description on failure */
        engine_free(&e);
    }
    return -1;
}

void
engine_free(struct engine **pe)
{
    struct engine *e = *pe;
    if (!e)
        return;
    const struct mem *m = e->mem;
    bptt_free(e);
    engine_state_fini(e);
    for (int i = 0; e->cells && i < e->n_cells; i++)
        expr_prog_free(&e->cells[i].prog, m);
    for (int i = 0; e->projs && i < e->n_projs; i++) {
        struct eproj *p = &e->projs[i];
        param_fini(&p->w, m);
        mem_free(m, &p->w0);
        mem_free(m, &p->w_mark);
        mem_free(m, &p->E);
        mem_free(m, &p->acc_w);
        mem_free(m, &p->m_w);
        mem_free(m, &p->v_w);
        mem_free(m, &p->e_w);
        mem_free(m, &p->ev_w);
        mem_free(m, &p->gt_w);
        mem_free(m, &p->sum_w);
    }
    mem_free(m, &e->inputs);
    mem_free(m, &e->cells);
    mem_free(m, &e->projs);
    mem_free(m, &e->readouts);
    mem_free(m, &e->oparams);
    mem_free(m, &e->arena);
    mem_free(m, &e->scratch);
    model_free(&e->d, m);
    mem_free(m, pe);
}

const struct model_desc *
engine_model(const struct engine *e)
{
    return e->d;
}

/* ---- inputs and signals ------------------------------------------------------------ */

void
engine_set_input(struct engine *e, int input, const real *values)
{
    struct einput *in = &e->inputs[input];
    memcpy(in->value, values, (size_t)in->size * sizeof(real));
}

int
engine_add_spikes(struct engine *e, int input, const int32_t *idx, int n)
{
    struct einput *in = &e->inputs[input];
    int dropped = 0;
    for (int k = 0; k < n; k++) {
        if (in->n_events >= in->size) {
            dropped++;
            continue;
        }
        in->n_events++;
        in->value[idx[k]] = R(1.0);
    }
    return dropped;
}

int
engine_set_target(struct engine *e, int readout, const real *values)
{
    struct ereadout *r = &e->readouts[readout];
    int superseded = r->target_kind != 0;
    memcpy(r->target, values, (size_t)r->size * sizeof(real));
    r->target_kind = 1;
    return superseded;
}

int
engine_set_target_class(struct engine *e, int readout, int cls)
{
    struct ereadout *r = &e->readouts[readout];
    if (cls < 0 || cls >= r->size)
        return -1; /* no such class: nothing set (callers check the range first) */
    int superseded = r->target_kind != 0;
    r->cls = cls;
    r->target_kind = 2;
    return superseded;
}

void
engine_add_reward(struct engine *e, double reward)
{
    e->reward_pending += reward;
}

void
engine_set_terminal(struct engine *e)
{
    e->terminal = 1;
}

/* ---- the tick --------------------------------------------------------------------------- */

/* The value a projection reads from a source cell: this tick's output for a cell listed
 * before the target, else the previous tick's (DESIGN §2.1). */
static const real *
source_values(const struct engine *e, const struct model_source *s, int target_cell)
{
    if (s->is_input)
        return e->inputs[s->index].seen;
    const struct ecell *cl = &e->cells[s->index];
    return s->index < target_cell ? cl->out[e->cur] : cl->out[!e->cur];
}

/* The parts of a forward phase cut by output columns. Its bits do not depend on the cut
 * (each output's sum is computed whole, in row order), while every part walks every input
 * that fired: so it takes no more parts than there are threads to run them. */
static int
forward_parts(const struct engine *e, int64_t work)
{
    int n = engine_n_parts(e, work), t = e->runner_threads > 1 ? e->runner_threads : 1;
    return n < t ? n : t;
}

struct cols_job {
    struct eproj *p;
    int n_parts;
};

/* The dense forward over the part's output columns. */
static void
forward_cols_part(void *arg, int part)
{
    struct cols_job *j = arg;
    struct eproj *p = j->p;
    int64_t o0, o1;
    engine_part_rows(p->O, j->n_parts, part, &o0, &o1);
    op_dense_forward_cols(p->I, p->O, o0, o1, p->y, p->w.values, p->x, p->w.bias);
}

/* The sparse forward over the part's output columns (over W + the pairs when pending). */
static void
sparse_cols_part(void *arg, int part)
{
    struct cols_job *j = arg;
    struct eproj *p = j->p;
    int64_t o0, o1;
    engine_part_rows(p->O, j->n_parts, part, &o0, &o1);
    if (p->n_pend) {
        int64_t rl = defer_scratch_len(p);
        defer_forward_cols(p, p->y, p->x, o0, o1, p->pc + part * rl, p->pk + part * rl);
    } else {
        op_sparse_forward_cols(p->I, p->O, o0, o1, p->y, p->w.indptr, p->w.indices, p->w.values,
                               p->x, p->w.bias);
    }
}

struct back_job {
    const struct eproj *p;
    int64_t row0, n_rows;
    real *dx;
    int n_parts;
};

static void
back_part(void *arg, int part)
{
    struct back_job *j = arg;
    int64_t lo, hi, O = j->p->O;
    engine_part_rows(j->n_rows, j->n_parts, part, &lo, &hi);
    op_dense_backward(hi - lo, O, j->dx + lo, j->p->w.values + (j->row0 + lo) * O, j->p->q);
}

/* dx += W[row0 .. row0 + n_rows) q, in parts of rows (each dx[i] summed whole). */
static void
dense_backward(const struct engine *e, const struct eproj *p, int64_t row0, int64_t n_rows,
               real *dx)
{
    struct back_job j = {p, row0, n_rows, dx, engine_free_parts(e, n_rows * p->O)};
    engine_run_parts(e, j.n_parts, n_rows * p->O, back_part, &j);
}

static void
proj_forward(struct engine *e, struct eproj *p)
{
    const struct model_proj *d = p->d;
    for (int s = 0; s < d->n_from; s++)
        memcpy(p->x + d->from[s].offset, source_values(e, &d->from[s], p->cell),
               (size_t)d->from[s].size * sizeof(real));
    switch (d->op) {
    case MODEL_OP_DENSE: {
        struct cols_job j = {p, forward_parts(e, p->count)};
        if (j.n_parts > 1) /* output columns apart: each output's sum unchanged */
            engine_run_parts(e, j.n_parts, p->count, forward_cols_part, &j);
        else
            op_dense_forward(p->I, p->O, p->y, p->w.values, p->x, p->w.bias);
        if (p->n_pend)
            defer_forward(p, p->y, p->x); /* + sum_k (x . a_k) b_k */
        break;
    }
    case MODEL_OP_SPARSE: {
        struct cols_job j = {p, forward_parts(e, p->count)};
        if (j.n_parts > 1) /* output columns apart: each output's sum unchanged */
            engine_run_parts(e, j.n_parts, p->count, sparse_cols_part, &j);
        else if (p->n_pend)
            defer_forward(p, p->y, p->x); /* over W + the pairs, masked */
        else
            op_sparse_forward(p->I, p->O, p->y, p->w.indptr, p->w.indices, p->w.values, p->x,
                              p->w.bias);
        break;
    }
    case MODEL_OP_ELEMWISE:
        op_elem_forward(p->O, p->y, p->w.values, p->x, p->w.bias);
        break;
    }
    /* Column block b of y feeds slot to_slots[b] of the target cell. */
    struct ecell *cl = &e->cells[p->cell];
    for (int b = 0; b < d->n_to_slots; b++) {
        real *slot = cl->slot + (int64_t)d->to_slots[b] * cl->n;
        const real *yb = p->y + (int64_t)b * cl->n;
        for (int64_t o = 0; o < cl->n; o++)
            slot[o] += yb[o];
    }
}

/* Gathers the target cell's derivative blocks as per-column views of projection p. */
static void
gather_columns(const struct engine *e, struct eproj *p)
{
    const struct ecell *cl = &e->cells[p->cell];
    const struct model_proj *d = p->d;
    int64_t n = cl->n, K = cl->K, S = cl->S, O = p->O;
    for (int b = 0; b < d->n_to_slots; b++) {
        int64_t s = d->to_slots[b], off = (int64_t)b * n;
        for (int64_t k = 0; k < K; k++) {
            memcpy(p->fcol + k * O + off, cl->dslot + (k * S + s) * n, (size_t)n * sizeof(real));
            for (int64_t j = 0; j < K; j++)
                memcpy(p->Dcol + (k * K + j) * O + off, cl->jac + (k * K + j) * n,
                       (size_t)n * sizeof(real));
        }
    }
}

static void
cell_forward(struct engine *e, int ci)
{
    struct ecell *cl = &e->cells[ci];
    memset(cl->slot, 0, (size_t)cl->S * (size_t)cl->n * sizeof(real));
    for (int pi = 0; pi < e->n_projs; pi++)
        if (e->projs[pi].cell == ci)
            proj_forward(e, &e->projs[pi]);
    expr_prog_eval(cl->prog, (size_t)cl->n, cl->h[e->cur], cl->out[e->cur], cl->jac, cl->dslot,
                   cl->dout, cl->h[!e->cur], cl->slot, e->need_derivs, e->scratch);
    cl->bad = has_bad(cl->h[e->cur], (int64_t)cl->K * cl->n) | has_bad(cl->out[e->cur], cl->n);
    if (cl->is_spiking) {
        cl->spikes += sum_d(cl->out[e->cur], cl->n);
        cl->rate_ticks++;
    }
    if (e->need_derivs) {
        cl->has_dl = 0;
        memset(cl->dl, 0, (size_t)cl->n * sizeof(real));
        for (int pi = 0; pi < e->n_projs; pi++)
            if (e->projs[pi].cell == ci)
                gather_columns(e, &e->projs[pi]);
    }
}

/* The policy's action and, when learning, d log pi / d o into the readout's dL/dout
 * (DESIGN §4.3). Returns 1 when it set a learning signal. */
static int
policy_act(struct engine *e)
{
    const struct model_learning *l = &e->d->learning;
    struct ereadout *r = &e->readouts[l->policy_readout];
    struct ecell *cl = &e->cells[r->cell];
    const real *o = cl->out[e->cur];
    int64_t n = r->size;
    int learning = engine_learning_active(e);
    int sample = learning || l->explore_when_frozen;
    if (l->policy_kind == MODEL_POLICY_GAUSSIAN) {
        if (!sample) {
            memcpy(r->action, o, (size_t)n * sizeof(real));
            return 0;
        }
        double rho = exp(-e->d->dt / l->tau_explore);
        double k = l->sigma * sqrt(1.0 - rho * rho);
        for (int64_t i = 0; i < n; i++) {
            /* xi = rho xi + sigma sqrt(1 - rho^2) z: an OU process of stationary std sigma */
            e->xi[i] = (real)(rho * (double)e->xi[i] + k * rng_normal(&e->policy_rng));
            r->action[i] = o[i] + e->xi[i];
        }
        if (!learning)
            return 0;
        real inv_var = (real)(1.0 / (l->sigma * l->sigma));
        for (int64_t i = 0; i < n; i++)
            cl->dl[i] += (r->action[i] - o[i]) * inv_var;
        cl->has_dl = 1;
        return 1;
    }
    if (!sample) {
        r->action[0] = (real)loss_argmax(n, o);
        return 0;
    }
    if (e->episode_ticks % l->action_hold != 0) { /* counted from the episode's first tick */
        r->action[0] = (real)e->held_action;      /* held: log pi counts once per sample */
        return 0;
    }
    loss_softmax(n, e->probs, o);
#if defined(REAL_DOUBLE)
    e->held_action = (int64_t)rng_categorical_d(&e->policy_rng, (int)n, e->probs);
#else
    e->held_action = (int64_t)rng_categorical_f(&e->policy_rng, (int)n, e->probs);
#endif
    r->action[0] = (real)e->held_action;
    if (!learning)
        return 0;
    for (int64_t i = 0; i < n; i++) /* d log pi(a) / d o = onehot(a) - softmax(o) */
        cl->dl[i] += (i == e->held_action ? R(1.0) : R(0.0)) - e->probs[i];
    cl->has_dl = 1;
    return 1;
}

/* The loss of this tick's targets; dL/dout into the readout cells when learning.
 * Several target readouts: their losses (and derivatives) are summed. */
static double
targets_loss(struct engine *e)
{
    double loss = 0.0;
    int learning = engine_learning_active(e) && e->d->learning.signal == MODEL_SIGNAL_TARGET;
    for (int r = 0; r < e->n_readouts; r++) {
        struct ereadout *ro = &e->readouts[r];
        if (!ro->target_kind)
            continue;
        struct ecell *cl = &e->cells[ro->cell];
        const real *y = cl->out[e->cur];
        real *dl = learning ? e->dl_tmp : NULL;
        if (ro->target_kind == 2)
            loss += loss_cross_entropy(ro->size, dl, y, (int)ro->cls);
        else
            loss += loss_mse(ro->size, dl, y, ro->target);
        if (learning) {
            for (int64_t o = 0; o < ro->size; o++)
                cl->dl[o] += dl[o];
            cl->has_dl = 1;
        }
        ro->target_kind = 0;
    }
    return loss;
}

/* The within-tick backward pass (DESIGN §4.1): in reverse cell order, g = dout * dL/dout,
 * then dL/dy of every projection that read a value computed in this tick, and W^T of it
 * into that source's dL/dout. Previous-tick values are constants. */
static void
backward(struct engine *e)
{
    for (int ci = e->n_cells - 1; ci >= 0; ci--) {
        struct ecell *cl = &e->cells[ci];
        if (!cl->has_dl)
            continue;
        for (int64_t k = 0; k < cl->K; k++)
            for (int64_t o = 0; o < cl->n; o++)
                cl->g[k * cl->n + o] = cl->dout[k * cl->n + o] * cl->dl[o];
        for (int pi = 0; pi < e->n_projs; pi++) {
            struct eproj *p = &e->projs[pi];
            if (p->cell != ci || !p->reads_now)
                continue;
            learn_gather_g(e, p);
            /* dL/dy[o] = sum_k g[k,o] f[k,o] */
            trace_column_factor(p->O, p->K, p->q, p->gcol, p->fcol, R(1.0));
            for (int s = 0; s < p->d->n_from; s++) {
                const struct model_source *src = &p->d->from[s];
                if (src->is_input || src->index >= ci)
                    continue;
                struct ecell *sc = &e->cells[src->index];
                if (p->n_pend) { /* W + the pending pairs */
                    defer_backward(p, src->offset, src->size, sc->dl, p->q);
                    sc->has_dl = 1;
                    continue;
                }
                switch (p->d->op) {
                case MODEL_OP_DENSE:
                    dense_backward(e, p, src->offset, src->size, sc->dl);
                    break;
                case MODEL_OP_SPARSE:
                    op_sparse_backward(src->offset, src->size, sc->dl, p->w.indptr, p->w.indices,
                                       p->w.values, p->q);
                    break;
                case MODEL_OP_ELEMWISE:
                    op_elem_backward(src->size, sc->dl, p->w.values + src->offset,
                                     p->q + src->offset);
                    break;
                }
                sc->has_dl = 1;
            }
        }
    }
}

/* Under a critic, after the policy's backward pass: keeps each projection's policy g
 * (G^t's signal) and runs the within-tick backward pass again with dL/dV = 1 and every
 * other dL/dout = 0, giving the critic's g (H^t's signal). */
static void
critic_backward(struct engine *e)
{
    for (int pi = 0; pi < e->n_projs; pi++) {
        struct eproj *p = &e->projs[pi];
        p->has_gpi = p->rule != ENGINE_RULE_FROZEN && e->cells[p->cell].has_dl;
        if (!p->has_gpi)
            continue;
        learn_gather_g(e, p);
        memcpy(p->gpi, p->gcol, (size_t)p->K * (size_t)p->O * sizeof(real));
    }
    for (int ci = 0; ci < e->n_cells; ci++) {
        struct ecell *cl = &e->cells[ci];
        cl->has_dl = 0;
        memset(cl->dl, 0, (size_t)cl->n * sizeof(real));
    }
    struct ecell *vc = &e->cells[e->critic_cell];
    vc->dl[0] = R(1.0);
    vc->has_dl = 1;
    backward(e);
}

/* The TD error of this tick (DESIGN §4.3): delta^t = r^t + gamma V^t - V^{t-1}, with V^t = 0
 * at a terminal tick and delta = 0 at an episode's first tick. */
static double
critic_delta(const struct engine *e, double reward, int terminal)
{
    if (e->episode_ticks == 0)
        return 0.0;
    double gamma = exp(-e->d->dt / e->d->learning.tau_gamma);
    double v = terminal ? 0.0 : (double)e->cells[e->critic_cell].out[e->cur][0];
    return reward + gamma * v - (double)e->v_prev[0];
}

static void
reset_bad_cells(struct engine *e)
{
    int valid = 1;
    for (int ci = 0; ci < e->n_cells; ci++) {
        struct ecell *cl = &e->cells[ci];
        if (!cl->bad)
            continue;
        reset_cell_states(e, cl);
        for (int pi = 0; pi < e->n_projs; pi++)
            if (e->projs[pi].cell == ci)
                reset_proj_traces(&e->projs[pi]);
        e->state_resets++;
        valid = 0;
    }
    e->last_valid = valid;
}

void
engine_tick(struct engine *e)
{
    e->cur = !e->cur;
    double reward = e->reward_pending;
    e->reward_pending = 0.0;
    int terminal = e->terminal != 0;
    e->terminal = 0;
    if (e->episode_ticks < 0) /* restored from a checkpoint that predates episodes */
        e->episode_ticks = (int64_t)e->tick;
    for (int i = 0; i < e->n_inputs; i++)
        plant_input(e, i);
    for (int ci = 0; ci < e->n_cells; ci++)
        cell_forward(e, ci);
    const struct model_learning *l = &e->d->learning;
    double loss = 0.0;
    if (l->present && l->signal == MODEL_SIGNAL_REWARD) {
        policy_act(e);
        loss = reward;
    }
    loss += targets_loss(e);
    e->last_loss = loss;
    if (e->tape)
        bptt_record(e);
    e->last_reward = reward;
    if (e->critic_cell >= 0)
        e->last_delta = critic_delta(e, reward, terminal);
    if (e->need_derivs) {
        if (engine_learning_active(e)) {
            backward(e);
            if (e->critic_cell >= 0)
                critic_backward(e);
        }
        if (e->fused && e->learn == ENGINE_LEARN_ON && !e->defer && !e->acc_dirty) {
            learn_fused_tick(e);
            e->at_boundary = 1;
        } else {
            learn_accumulate_tick(e, reward);
            int on = e->learn == ENGINE_LEARN_ON;
            e->acc_dirty |= on;
            e->at_boundary = !on;
            if (on && (e->tick + 1) % (uint64_t)l->update_every == 0) {
                if (e->defer) {
                    e->step_owed = 1; /* runs at the first due tick after the deferral */
                } else {
                    learn_optimizer_step(e);
                    e->acc_dirty = 0;
                    e->step_owed = 0;
                    e->at_boundary = 1;
                }
            }
        }
        e->es_n++;
    }
    if (l->present && l->signal == MODEL_SIGNAL_REWARD) {
        if (terminal) /* after the tick's gradient was handed over */
            learn_end_episode(e);
        e->episode_ticks = terminal ? 0 : e->episode_ticks + 1;
    }
    /* Deferred rank-one steps are written after the ticks t with (t + 1) % r == 0: a
     * schedule of tick numbers only, so every mode gives the same bits. While a snapshot
     * copies the weights nothing writes them; the pairs wait for the next due tick. */
    if (e->defer_r > 1 && !e->defer && (e->tick + 1) % (uint64_t)e->defer_r == 0)
        for (int pi = 0; pi < e->n_projs; pi++)
            defer_flush_parts(e, &e->projs[pi]);
    reset_bad_cells(e);
    if (e->critic_cell >= 0)
        e->v_prev[0] = e->cells[e->critic_cell].out[e->cur][0];
    for (int r = 0; r < e->n_readouts; r++)
        plant_readout(e, r);
    for (int i = 0; i < e->n_inputs; i++) {
        struct einput *in = &e->inputs[i];
        if (in->kind == MODEL_INPUT_SPIKES && in->n_events) {
            memset(in->value, 0, (size_t)in->size * sizeof(real));
            in->n_events = 0;
        }
    }
    e->tick++;
}

/* ---- tick parts ---------------------------------------------------------------------- */

void
engine_set_runner(struct engine *e, engine_runner_fn *run, void *ctx, int n_threads)
{
    e->runner = run;
    e->runner_ctx = ctx;
    e->runner_threads = run && n_threads > 1 ? n_threads : 1;
}

int64_t
engine_tick_work(const struct engine *e)
{
    int64_t w = 0;
    for (int pi = 0; pi < e->n_projs; pi++)
        if ((e->projs[pi].rule != ENGINE_RULE_FROZEN || e->projs[pi].d->op == MODEL_OP_DENSE) &&
            e->projs[pi].count > w)
            w = e->projs[pi].count;
    return w;
}

int
engine_n_parts(const struct engine *e, int64_t work)
{
    int64_t n = work / e->part_work;
    return n < 1 ? 1 : n > ENGINE_TICK_PARTS_MAX ? ENGINE_TICK_PARTS_MAX : (int)n;
}

int
engine_free_parts(const struct engine *e, int64_t work)
{
    int64_t n = work / (e->part_work / 8 > 0 ? e->part_work / 8 : 1);
    int t = e->runner_threads < ENGINE_TICK_PARTS_MAX ? e->runner_threads : ENGINE_TICK_PARTS_MAX;
    return n <= 1 || t <= 1 ? 1 : n > t ? t : (int)n;
}

void
engine_run_parts(const struct engine *e, int n_parts, int64_t work, engine_part_fn *fn, void *arg)
{
    if (n_parts > 1 && e->runner) {
        e->runner(e->runner_ctx, n_parts, work, fn, arg);
        return;
    }
    for (int k = 0; k < n_parts; k++)
        fn(arg, k);
}

/* ---- results, control, introspection ------------------------------------------------ */

uint64_t
engine_tick_count(const struct engine *e)
{
    return e->tick;
}

const real *
engine_readout_values(const struct engine *e, int r)
{
    if (e->readouts[r].pub)
        return e->readouts[r].pub;
    return e->cells[e->readouts[r].cell].out[e->cur];
}

const real *
engine_readout_action(const struct engine *e, int r)
{
    const struct model_learning *l = &e->d->learning;
    if (!l->present || l->signal != MODEL_SIGNAL_REWARD || l->policy_readout != r)
        return NULL;
    return e->readouts[r].pub_action ? e->readouts[r].pub_action : e->readouts[r].action;
}

int
engine_last_valid(const struct engine *e)
{
    return e->last_valid;
}

double
engine_last_loss(const struct engine *e)
{
    return e->last_loss;
}

double
engine_last_td_error(const struct engine *e)
{
    return e->last_delta;
}

void
engine_set_learn(struct engine *e, enum engine_learn mode)
{
    e->learn = mode;
}

enum engine_learn
engine_get_learn(const struct engine *e)
{
    return e->learn;
}

void
engine_set_lr(struct engine *e, double lr)
{
    e->lr = lr;
}

double
engine_get_lr(const struct engine *e)
{
    return e->lr;
}

void
engine_reset(struct engine *e, int states, int traces)
{
    if (states) {
        for (int ci = 0; ci < e->n_cells; ci++)
            reset_cell_states(e, &e->cells[ci]);
        int64_t n = 1;
        if (e->d->learning.present && e->d->learning.signal == MODEL_SIGNAL_REWARD)
            n = e->readouts[e->d->learning.policy_readout].size;
        fill(e->xi, n, R(0.0));
    }
    if (traces) {
        for (int pi = 0; pi < e->n_projs; pi++)
            reset_proj_traces(&e->projs[pi]);
        e->es_n = 0;
    }
    if (states || traces)
        e->episode_ticks = 0; /* any reset starts an episode (DESIGN §4.3) */
}

int
engine_n_inputs(const struct engine *e)
{
    return e->n_inputs;
}

int
engine_n_readouts(const struct engine *e)
{
    return e->n_readouts;
}

int
engine_n_projs(const struct engine *e)
{
    return e->n_projs;
}

int
engine_n_cells(const struct engine *e)
{
    return e->n_cells;
}

int
engine_readout_size(const struct engine *e, int r)
{
    return e->readouts[r].size;
}

int
engine_input_size(const struct engine *e, int i)
{
    return e->inputs[i].size;
}

void
engine_param(const struct engine *e, int pi, struct engine_param_view *v)
{
    const struct eproj *p = &e->projs[pi];
    *v = (struct engine_param_view){
        .name = p->d->name,
        .op = p->d->op,
        .rule = p->rule,
        .in_size = p->I,
        .out_size = p->O,
        .count = p->count,
        .weight = p->w.values,
        .bias = p->w.bias,
        .indptr = p->w.indptr,
        .indices = p->w.indices,
        .grad_sum_w = p->sum_w,
        .grad_sum_b = p->sum_b,
        .trace_bytes = p->trace_bytes,
        .reaches_loss = p->reaches_loss,
        .defers = p->defers,
        .defer_why = (enum engine_defer_why)p->defer_why,
    };
}

void
engine_param_weight(const struct engine *e, int pi, real *out)
{
    const struct eproj *p = &e->projs[pi];
    defer_effective(p, 0, p->count, out);
}

void
engine_sync_grad_sums(struct engine *e)
{
    for (int pi = 0; pi < e->n_projs; pi++)
        defer_grad_flush(&e->projs[pi]);
}

int
engine_state_check(const struct engine *e, struct err *err)
{
    for (int pi = 0; pi < e->n_projs; pi++) {
        const struct eproj *p = &e->projs[pi];
        if (p->n_pend < 0 || p->n_pend > p->n_pend_max)
            return err_setf(err, ERR_STATE,
                            "projection %s: %lld pending rank-one pairs, outside 0..%lld "
                            "(learning.defer)",
                            p->d->name, (long long)p->n_pend, (long long)p->n_pend_max),
                   -1;
        if (p->defers && !defer_seg_ok(p))
            return err_setf(err, ERR_STATE,
                            "projection %s: the segment of its pending pairs (first %g, tick %g, "
                            "lr %g, bounds %g %g) is not one a tick could have left",
                            p->d->name, p->pseg[0], p->pseg[1], p->pseg[2], p->pseg[3], p->pseg[4]),
                   -1;
    }
    /* The integers a tick indexes with: a checkpoint passes its checksum whoever wrote it,
     * so each is checked against the model before the first tick reads it. */
    for (int r = 0; r < e->n_readouts; r++) {
        const struct ereadout *ro = &e->readouts[r];
        if (ro->target_kind < 0 || ro->target_kind > 2 || ro->cls < 0 || ro->cls >= ro->size)
            return err_setf(err, ERR_STATE,
                            "readout %s: pending target kind %lld, class %lld: not a target "
                            "kind (0..2) or not a class of its %lld outputs",
                            e->d->readouts[r].name, (long long)ro->target_kind, (long long)ro->cls,
                            (long long)ro->size),
                   -1;
    }
    for (int i = 0; i < e->n_inputs; i++) {
        const struct einput *in = &e->inputs[i];
        if (in->n_events < 0 || in->n_events > in->size)
            return err_setf(err, ERR_STATE, "input %s: %lld pending events, outside 0..%lld",
                            e->d->inputs[i].name, (long long)in->n_events, (long long)in->size),
                   -1;
    }
    if (e->episode_ticks < 0 || e->terminal < 0 || e->terminal > 1)
        return err_setf(err, ERR_STATE, "episode: %lld ticks, terminal flag %lld: out of range",
                        (long long)e->episode_ticks, (long long)e->terminal),
               -1;
    return 0;
}

real *
engine_weight_mut(struct engine *e, int pi)
{
    e->projs[pi].w_bound = -1.0; /* the caller may write anything */
    return e->projs[pi].w.values;
}

real *
engine_bias_mut(struct engine *e, int pi)
{
    e->projs[pi].w_bound = -1.0;
    return e->projs[pi].w.bias;
}

void
engine_counters(const struct engine *e, struct engine_counters *c)
{
    c->updates_refused = e->updates_refused;
    c->state_resets = e->state_resets;
    c->steps = e->steps;
    c->es_n = e->es_n;
}

/* The arrays of a projection a norm sweep reads, in order. */
enum norm_part { NP_W, NP_B, NP_E, NP_EB, NP_EX, NP_EF, NP_END };

/* Array `part` of p: its length, values, and (weights and bias) W0 and the mark (NULL
 * under stats.drift: off). *is_w: a weight or bias array. */
static int64_t
norm_part(const struct eproj *p, int part, const real **a, const real **a0, real **mark, int *is_w)
{
    *a0 = NULL;
    *mark = NULL;
    *is_w = part == NP_W || part == NP_B;
    switch (part) {
    case NP_W:
        *a = p->w.values, *a0 = p->w0, *mark = p->w_mark;
        return p->count;
    case NP_B:
        *a = p->w.bias, *a0 = p->b0, *mark = p->b_mark;
        return p->w.bias ? p->O : 0;
    case NP_E:
        *a = p->E;
        return p->E ? (int64_t)p->K * p->count : 0;
    case NP_EB:
        *a = p->Eb;
        return p->Eb ? (int64_t)p->K * p->O : 0;
    case NP_EX:
        *a = p->ex;
        return p->ex ? p->I : 0;
    case NP_EF:
        *a = p->ef;
        return p->ef ? (int64_t)p->K * p->O : 0;
    default:
        *a = NULL;
        return 0;
    }
}

/* Sums elements [lo, hi) of one array into the sweep; a weight array also moves its
 * mark, so ||delta W|| measures each weight's change since it was last read. a is at lo. */
static void
norm_slice(struct engine_norm_sweep *s, int64_t lo, int64_t hi, const real *a, const real *a0,
           real *mark, int is_w)
{
    if (!is_w) {
        double t = s->trace;
        for (int64_t i = 0; i < hi - lo; i++)
            t += (double)a[i] * (double)a[i];
        s->trace = t;
        return;
    }
    double w = s->w, dr = s->drift, de = s->delta;
    for (int64_t i = 0; i < hi - lo; i++) {
        double v = (double)a[i];
        w += v * v;
        if (a0) {
            double d0 = v - (double)a0[lo + i], dm = v - (double)mark[lo + i];
            dr += d0 * d0;
            de += dm * dm;
        }
    }
    s->w = w, s->drift = dr, s->delta = de;
    if (mark)
        memcpy(mark + lo, a, (size_t)(hi - lo) * sizeof(real));
}

/* The weights of p with pending rank-one pairs are read as a reader sees them (W plus
 * the pairs), a chunk at a time. */
static void
norm_slice_w(struct engine_norm_sweep *s, const struct eproj *p, int64_t lo, int64_t hi,
             const real *a, const real *a0, real *mark, int is_w, int part)
{
    if (part != NP_W || !p->n_pend) {
        norm_slice(s, lo, hi, a + lo, a0, mark, is_w);
        return;
    }
    real buf[256];
    for (int64_t c = lo; c < hi; c += 256) {
        int64_t e = hi - c < 256 ? hi : c + 256;
        defer_effective(p, c, e, buf);
        norm_slice(s, c, e, buf, a0, mark, is_w);
    }
}

void
engine_norms_restart(struct engine_norm_sweep *s)
{
    *s = (struct engine_norm_sweep){0};
}

/* Advances projection s->proj; returns 1 when it is finished (its norms in *nm). */
static int
norms_proj(struct engine *e, struct engine_norm_sweep *s, int64_t *budget, struct engine_norms *nm)
{
    struct eproj *p = &e->projs[s->proj];
    for (; s->part < NP_END; s->part++, s->off = 0) {
        const real *a, *a0;
        real *mark;
        int is_w;
        int64_t n = norm_part(p, s->part, &a, &a0, &mark, &is_w), cost = a0 ? 3 : 1;
        while (s->off < n) {
            if (*budget == 0)
                return 0;
            int64_t hi = n;
            if (*budget > 0 && (hi - s->off) * cost > *budget)
                hi = s->off + (*budget + cost - 1) / cost;
            norm_slice_w(s, p, s->off, hi, a, a0, mark, is_w, s->part);
            if (*budget > 0)
                *budget = (hi - s->off) * cost >= *budget ? 0 : *budget - (hi - s->off) * cost;
            s->off = hi;
        }
    }
    double grad = 0.0;
    int idx[2] = {p->opw, p->opb};
    for (int k = 0; k < 2; k++)
        if (idx[k] >= 0)
            grad += e->oparams[idx[k]].grad_sq;
    *nm = (struct engine_norms){sqrt(s->w), sqrt(s->drift), sqrt(s->delta),
                                sqrt(grad), sqrt(s->trace), e->drift};
    return 1;
}

int
engine_norms_advance(struct engine *e, struct engine_norm_sweep *s, int64_t budget,
                     struct engine_norms *out)
{
    if (budget <= 0)
        budget = -1; /* no limit */
    while (s->proj < e->n_projs) {
        if (!norms_proj(e, s, &budget, &out[s->proj]))
            return 0;
        *s = (struct engine_norm_sweep){.proj = s->proj + 1};
    }
    return 1;
}

void
engine_proj_norms(struct engine *e, int pi, struct engine_norms *nm)
{
    struct engine_norm_sweep s = {.proj = pi};
    int64_t unlimited = -1;
    norms_proj(e, &s, &unlimited, nm);
}

double
engine_cell_rate(struct engine *e, int ci)
{
    struct ecell *cl = &e->cells[ci];
    if (!cl->is_spiking)
        return -1.0;
    double r = cl->rate_ticks ? cl->spikes / ((double)cl->rate_ticks * cl->n) : 0.0;
    cl->spikes = 0.0;
    cl->rate_ticks = 0;
    return r;
}

size_t
engine_resident_bytes(const struct engine *e)
{
    size_t idx = e->param_bytes; /* values and biases; CSR indices counted below */
    for (int pi = 0; pi < e->n_projs; pi++)
        if (e->projs[pi].w.indptr)
            idx += (size_t)(e->projs[pi].I + 1) * 8 + (size_t)e->projs[pi].count * 4;
    return e->arena_bytes + e->big_bytes + idx;
}

void
engine_defer_steps(struct engine *e, int on)
{
    e->defer = on;
}

int
engine_at_step_boundary(const struct engine *e)
{
    return !e->need_derivs || e->learn != ENGINE_LEARN_ON || (e->at_boundary && !e->step_owed);
}

int
engine_step_owed(const struct engine *e)
{
    return e->step_owed;
}

int
engine_align_begin(struct engine *e, int64_t T, struct err *err)
{
    if (e->learn != ENGINE_LEARN_ACCUMULATE || !e->d->learning.present ||
        e->d->learning.signal != MODEL_SIGNAL_TARGET)
        return err_setf(err, ERR_USAGE, "--align needs --learn accumulate and signal: target"), -1;
    return bptt_new(e, T, err);
}

int
engine_align_finish(struct engine *e)
{
    return bptt_backward(e);
}

void
engine_align_grad(const struct engine *e, int p, const double **w, const double **b)
{
    bptt_grad(e, p, w, b);
}
