/* The engine state (DESIGN §4.5) as a table of named sections, so that checkpoints,
 * recordings and hot swaps can copy it piece by piece (a slice per tick if need be) without
 * knowing the engine's layout. A section names what it is; its pointer is resolved when
 * asked, because states and outputs are double-buffered. */
#include "engine_state.h"

#include <stdio.h>
#include <string.h>

#include "defer.h"

enum what {
    W_INPUT_VALUE,
    W_INPUT_EVENTS,
    W_CELL_H,
    W_CELL_OUT,
    W_PROJ_W,
    W_PROJ_B,
    W_PROJ_INDPTR,
    W_PROJ_INDICES,
    W_PROJ_W0,
    W_PROJ_B0,
    W_PROJ_MW,
    W_PROJ_VW,
    W_PROJ_MB,
    W_PROJ_VB,
    W_PROJ_ACCW,
    W_PROJ_ACCB,
    W_PROJ_E,
    W_PROJ_EB,
    W_PROJ_EX,
    W_PROJ_EF,
    W_PROJ_ELW,
    W_PROJ_ELB,
    W_PROJ_PA,
    W_PROJ_PB,
    W_PROJ_PN,
    W_PROJ_PSEG,
    W_RO_TARGET,
    W_RO_KIND,
    W_RO_CLS,
    W_RO_ACTION,
    W_XI,
    /* episodes and the critic (DESIGN §4.3) */
    W_CRIT_EVW,
    W_CRIT_EVB,
    W_EPISODE_TICKS,
    W_EPISODE_TERMINAL,
    W_CRIT_VPREV,
    /* the plant interface (DESIGN §2) */
    W_INPUT_NORM
};

struct esection {
    char name[160];
    enum engine_part part;
    enum what what;
    int idx; /* input, cell, projection or readout index */
    size_t bytes, elem_bytes;
};

static void *
resolve(struct engine *e, const struct esection *s)
{
    struct eproj *p = s->what >= W_PROJ_W && s->what <= W_PROJ_PSEG ? &e->projs[s->idx] : NULL;
    struct ecell *c = s->what == W_CELL_H || s->what == W_CELL_OUT ? &e->cells[s->idx] : NULL;
    struct ereadout *r =
        s->what >= W_RO_TARGET && s->what <= W_RO_ACTION ? &e->readouts[s->idx] : NULL;
    switch (s->what) {
    case W_INPUT_VALUE:
        return e->inputs[s->idx].value;
    case W_INPUT_EVENTS:
        return &e->inputs[s->idx].n_events;
    case W_CELL_H:
        return c->h[e->cur];
    case W_CELL_OUT:
        return c->out[e->cur];
    case W_PROJ_W:
        return p->w.values;
    case W_PROJ_B:
        return p->w.bias;
    case W_PROJ_INDPTR:
        return p->w.indptr;
    case W_PROJ_INDICES:
        return p->w.indices;
    case W_PROJ_W0:
        return p->w0;
    case W_PROJ_B0:
        return p->b0;
    case W_PROJ_MW:
        return p->m_w;
    case W_PROJ_VW:
        return p->v_w;
    case W_PROJ_MB:
        return p->m_b;
    case W_PROJ_VB:
        return p->v_b;
    case W_PROJ_ACCW:
        return p->acc_w;
    case W_PROJ_ACCB:
        return p->acc_b;
    case W_PROJ_E:
        return p->E;
    case W_PROJ_EB:
        return p->Eb;
    case W_PROJ_EX:
        return p->ex;
    case W_PROJ_EF:
        return p->ef;
    case W_PROJ_ELW:
        return p->e_w;
    case W_PROJ_ELB:
        return p->e_b;
    case W_PROJ_PA:
        return p->pa;
    case W_PROJ_PB:
        return p->pb;
    case W_PROJ_PN:
        return p->defers ? &p->n_pend : NULL;
    case W_PROJ_PSEG:
        return p->defers ? p->pseg : NULL;
    case W_RO_TARGET:
        return r->target;
    case W_RO_KIND:
        return &r->target_kind;
    case W_RO_CLS:
        return &r->cls;
    case W_RO_ACTION:
        return r->action;
    case W_XI:
        return e->xi;
    case W_CRIT_EVW:
        return e->projs[s->idx].ev_w;
    case W_CRIT_EVB:
        return e->projs[s->idx].ev_b;
    case W_EPISODE_TICKS:
        return &e->episode_ticks;
    case W_EPISODE_TERMINAL:
        return &e->terminal;
    case W_CRIT_VPREV:
        return e->v_prev;
    case W_INPUT_NORM:
        return e->inputs[s->idx].norm;
    }
    return NULL;
}

/* Appends a section when its buffer exists (count > 0 and the pointer is set). With
 * table NULL only counts. */
static void
add(struct engine *e, struct esection *table, int *n, enum engine_part part, enum what what,
    int idx, size_t count, size_t elem, const char *kind, const char *item, const char *field)
{
    struct esection s = {
        .part = part, .what = what, .idx = idx, .bytes = count * elem, .elem_bytes = elem};
    if (count == 0 || !resolve(e, &s))
        return;
    if (table) {
        if (item)
            snprintf(s.name, sizeof s.name, "%s.%s.%s", kind, item, field);
        else
            snprintf(s.name, sizeof s.name, "%s.%s", kind, field);
        table[*n] = s;
    }
    (*n)++;
}

/* The state of episodes and of the critic (DESIGN §4.3), reward models only: the ticks of
 * the current episode (a trace: a swap keeps it with the traces), a pending terminal flag,
 * and under a critic V^{t-1} and each projection's critic eligibility e_V (the policy's
 * e_pi is elig_w/elig_b). */
static void
fill_episode_table(struct engine *e, struct esection *t, int *n)
{
    const struct model_desc *d = e->d;
    if (!d->learning.present || d->learning.signal != MODEL_SIGNAL_REWARD)
        return;
    const size_t R = sizeof(real), I8 = sizeof(int64_t);
    add(e, t, n, ENGINE_PART_TRACE, W_EPISODE_TICKS, 0, 1, I8, "episode", NULL, "ticks");
    add(e, t, n, ENGINE_PART_PENDING, W_EPISODE_TERMINAL, 0, 1, I8, "episode", NULL, "terminal");
    if (e->critic_cell < 0)
        return;
    add(e, t, n, ENGINE_PART_TRACE, W_CRIT_VPREV, 0, 1, R, "critic", NULL, "v_prev");
    for (int pi = 0; pi < e->n_projs; pi++) {
        const struct eproj *p = &e->projs[pi];
        const char *nm = d->projs[pi].name;
        add(e, t, n, ENGINE_PART_TRACE, W_CRIT_EVW, pi, (size_t)p->count, R, "proj", nm,
            "elig_v_w");
        add(e, t, n, ENGINE_PART_TRACE, W_CRIT_EVB, pi, (size_t)p->O, R, "proj", nm, "elig_v_b");
    }
}

/* The plant interface's state (DESIGN §2): each normalised input's m and s2, [2][size]; a
 * state part, so `--keep-state` carries it (no reset touches it). */
static void
fill_plant_table(struct engine *e, struct esection *t, int *n)
{
    for (int i = 0; i < e->n_inputs; i++)
        add(e, t, n, ENGINE_PART_STATE, W_INPUT_NORM, i, 2 * (size_t)e->inputs[i].size,
            sizeof(real), "input", e->d->inputs[i].name, "norm");
}

int
engine_state_optional(struct engine *e, int i)
{
    switch (e->sections[i].what) {
    case W_EPISODE_TICKS: /* count from tick 0, as action_hold did before episodes */
        e->episode_ticks = -1;
        return 1;
    case W_EPISODE_TERMINAL:
        e->terminal = 0;
        return 1;
    case W_PROJ_PSEG: /* a checkpoint before factored pairs (restored after its pairs) */
        defer_restore_legacy(&e->projs[e->sections[i].idx]);
        return 1;
    default:
        return 0;
    }
}

static void
fill_table(struct engine *e, struct esection *t, int *n)
{
    const struct model_desc *d = e->d;
    const size_t R = sizeof(real), I8 = sizeof(int64_t);
    for (int i = 0; i < e->n_inputs; i++) {
        const char *nm = d->inputs[i].name;
        add(e, t, n, ENGINE_PART_PENDING, W_INPUT_VALUE, i, (size_t)e->inputs[i].size, R, "input",
            nm, "value");
        add(e, t, n, ENGINE_PART_PENDING, W_INPUT_EVENTS, i, 1, I8, "input", nm, "events");
    }
    for (int c = 0; c < e->n_cells; c++) {
        const struct ecell *cl = &e->cells[c];
        const char *nm = d->cells[c].name;
        add(e, t, n, ENGINE_PART_STATE, W_CELL_H, c, (size_t)cl->K * (size_t)cl->n, R, "cell", nm,
            "h");
        add(e, t, n, ENGINE_PART_STATE, W_CELL_OUT, c, (size_t)cl->n, R, "cell", nm, "out");
    }
    for (int pi = 0; pi < e->n_projs; pi++) {
        const struct eproj *p = &e->projs[pi];
        const char *nm = d->projs[pi].name;
        size_t W = (size_t)p->count, O = (size_t)p->O, K = (size_t)p->K, In = (size_t)p->I;
        static const struct {
            enum engine_part part;
            enum what what;
            const char *suffix;
            int shape; /* 0: W, 1: O, 2: K*W, 3: K*O, 4: I, 5: I + 1 */
            size_t elem;
        } rows[] = {
            {ENGINE_PART_PARAM, W_PROJ_W, "weight", 0, sizeof(real)},
            {ENGINE_PART_PARAM, W_PROJ_B, "bias", 1, sizeof(real)},
            {ENGINE_PART_STRUCTURE, W_PROJ_INDPTR, "indptr", 5, sizeof(int64_t)},
            {ENGINE_PART_STRUCTURE, W_PROJ_INDICES, "indices", 0, sizeof(int32_t)},
            {ENGINE_PART_W0, W_PROJ_W0, "w0", 0, sizeof(real)},
            {ENGINE_PART_W0, W_PROJ_B0, "b0", 1, sizeof(real)},
            {ENGINE_PART_OPTIM, W_PROJ_MW, "m_w", 0, sizeof(real)},
            {ENGINE_PART_OPTIM, W_PROJ_VW, "v_w", 0, sizeof(real)},
            {ENGINE_PART_OPTIM, W_PROJ_MB, "m_b", 1, sizeof(real)},
            {ENGINE_PART_OPTIM, W_PROJ_VB, "v_b", 1, sizeof(real)},
            {ENGINE_PART_ACC, W_PROJ_ACCW, "acc_w", 0, sizeof(real)},
            {ENGINE_PART_ACC, W_PROJ_ACCB, "acc_b", 1, sizeof(real)},
            {ENGINE_PART_TRACE, W_PROJ_E, "E", 2, sizeof(real)},
            {ENGINE_PART_TRACE, W_PROJ_EB, "E_b", 3, sizeof(real)},
            {ENGINE_PART_TRACE, W_PROJ_EX, "e_x", 4, sizeof(real)},
            {ENGINE_PART_TRACE, W_PROJ_EF, "e_f", 3, sizeof(real)},
            {ENGINE_PART_TRACE, W_PROJ_ELW, "elig_w", 0, sizeof(real)},
            {ENGINE_PART_TRACE, W_PROJ_ELB, "elig_b", 1, sizeof(real)},
        };
        for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
            size_t shape[6] = {W, O, K * W, K * O, In, In + 1};
            add(e, t, n, rows[k].part, rows[k].what, pi, shape[rows[k].shape], rows[k].elem, "proj",
                nm, rows[k].suffix);
        }
        /* pending rank-one pairs (DESIGN §4.4): engine state, only with learning.defer > 1 */
        size_t r = (size_t)p->n_pend_max;
        add(e, t, n, ENGINE_PART_DEFERRED, W_PROJ_PA, pi, In * r, sizeof(real), "proj", nm,
            "pairs_a");
        add(e, t, n, ENGINE_PART_DEFERRED, W_PROJ_PB, pi, r * O, sizeof(real), "proj", nm,
            "pairs_b");
        add(e, t, n, ENGINE_PART_DEFERRED, W_PROJ_PN, pi, 1, sizeof(int64_t), "proj", nm,
            "pairs_n");
        add(e, t, n, ENGINE_PART_DEFERRED, W_PROJ_PSEG, pi, DEFER_SEG_N, sizeof(double), "proj", nm,
            "pairs_segment");
    }
    for (int r = 0; r < e->n_readouts; r++) {
        const char *nm = d->readouts[r].name;
        size_t sz = (size_t)e->readouts[r].size;
        add(e, t, n, ENGINE_PART_PENDING, W_RO_TARGET, r, sz, R, "readout", nm, "target");
        add(e, t, n, ENGINE_PART_PENDING, W_RO_KIND, r, 1, I8, "readout", nm, "target_kind");
        add(e, t, n, ENGINE_PART_PENDING, W_RO_CLS, r, 1, I8, "readout", nm, "class");
        add(e, t, n, ENGINE_PART_STATE, W_RO_ACTION, r, sz, R, "readout", nm, "action");
    }
    if (d->learning.present && d->learning.signal == MODEL_SIGNAL_REWARD)
        add(e, t, n, ENGINE_PART_STATE, W_XI, 0,
            (size_t)e->readouts[d->learning.policy_readout].size, R, "policy", NULL, "xi");
    fill_episode_table(e, t, n);
    fill_plant_table(e, t, n);
}

int
engine_state_build(struct engine *e)
{
    int n = 0;
    fill_table(e, NULL, &n);
    e->sections = mem_calloc(e->mem, (size_t)n + 1, sizeof *e->sections);
    if (!e->sections)
        return -1;
    e->n_sections = 0;
    fill_table(e, e->sections, &e->n_sections);
    return 0;
}

void
engine_state_fini(struct engine *e)
{
    mem_free(e->mem, &e->sections);
    e->n_sections = 0;
}

int
engine_state_count(const struct engine *e)
{
    return e->n_sections;
}

void
engine_state_section(struct engine *e, int i, struct engine_section *s)
{
    const struct esection *es = &e->sections[i];
    *s = (struct engine_section){es->name, es->part, resolve(e, es), es->bytes, es->elem_bytes};
}

int
engine_state_find(struct engine *e, const char *name)
{
    for (int i = 0; i < e->n_sections; i++)
        if (strcmp(e->sections[i].name, name) == 0)
            return i;
    return -1;
}

void
engine_state_get_scalars(const struct engine *e, struct engine_scalars *s)
{
    *s = (struct engine_scalars){
        .tick = e->tick,
        .es_n = e->es_n,
        .steps = e->steps,
        .updates_refused = e->updates_refused,
        .state_resets = e->state_resets,
        .learn = e->learn,
        .lr = e->lr,
        .reward_pending = e->reward_pending,
        .reward_baseline = e->reward_baseline,
        .held_action = e->held_action,
    };
    memcpy(s->rng, e->policy_rng.s, sizeof s->rng);
}

void
engine_state_set_scalars(struct engine *e, const struct engine_scalars *s)
{
    e->tick = s->tick;
    e->es_n = s->es_n;
    e->steps = s->steps;
    e->updates_refused = s->updates_refused;
    e->state_resets = s->state_resets;
    e->learn = (enum engine_learn)s->learn;
    e->lr = s->lr;
    e->reward_pending = s->reward_pending;
    e->reward_baseline = s->reward_baseline;
    e->held_action = s->held_action;
    memcpy(e->policy_rng.s, s->rng, sizeof s->rng);
    for (int pi = 0; pi < e->n_projs; pi++) {
        e->projs[pi].w_bound = -1.0; /* weights may have been written */
        engine_mark_weights(&e->projs[pi]);
    }
}

/* The pointer field of a buffer that engine.c allocates on its own (carve_big), which a
 * hot swap hands over instead of copying; NULL for arena buffers. */
static real **
own_buffer(struct eproj *p, enum what w)
{
    switch (w) {
    case W_PROJ_W:
        return &p->w.values;
    case W_PROJ_W0:
        return &p->w0;
    case W_PROJ_MW:
        return &p->m_w;
    case W_PROJ_VW:
        return &p->v_w;
    case W_PROJ_ACCW:
        return &p->acc_w;
    case W_PROJ_E:
        return &p->E;
    case W_PROJ_ELW:
        return &p->e_w;
    default:
        return NULL;
    }
}

/* Points the optimizer's table at the engine's current buffers (after a hand-over). */
static void
refresh_oparams(struct engine *e)
{
    for (int pi = 0; pi < e->n_projs; pi++) {
        struct eproj *p = &e->projs[pi];
        if (p->opw >= 0) {
            e->oparams[p->opw].w = p->w.values;
            e->oparams[p->opw].acc = p->acc_w;
            e->oparams[p->opw].m = p->m_w;
            e->oparams[p->opw].v = p->v_w;
        }
    }
}

int
engine_state_carry(struct engine *dst, struct engine *src, int keep_state)
{
    int n = 0, weights = 0;
    /* The old model's pending pairs go into its weights first: what --keep-weights carries
     * is what every reader of W sees (the new model may defer differently or not at all). */
    for (int pi = 0; pi < src->n_projs; pi++)
        defer_flush(&src->projs[pi]);
    int same_mem = dst->mem == src->mem; /* handed-over buffers are freed by the other */
    for (int i = 0; i < dst->n_sections; i++) {
        const struct esection *ds = &dst->sections[i];
        int carry =
            ds->part == ENGINE_PART_PARAM || ds->part == ENGINE_PART_OPTIM ||
            ds->part == ENGINE_PART_ACC || ds->part == ENGINE_PART_W0 ||
            (keep_state && (ds->part == ENGINE_PART_STATE || ds->part == ENGINE_PART_TRACE));
        int j = carry ? engine_state_find(src, ds->name) : -1;
        if (j < 0 || src->sections[j].bytes != ds->bytes)
            continue;
        const struct esection *ss = &src->sections[j];
        struct eproj *dp =
            ds->what >= W_PROJ_W && ds->what <= W_PROJ_PSEG ? &dst->projs[ds->idx] : NULL;
        struct eproj *sp = dp ? &src->projs[ss->idx] : NULL;
        /* a sparse weight moves only onto the same structure */
        if (ds->what == W_PROJ_W && dp->w.indptr &&
            (!sp->w.indptr || dp->I != sp->I ||
             memcmp(dp->w.indptr, sp->w.indptr, (size_t)(dp->I + 1) * sizeof(int64_t)) ||
             memcmp(dp->w.indices, sp->w.indices, (size_t)dp->count * sizeof(int32_t))))
            continue;
        real **df = dp ? own_buffer(dp, ds->what) : NULL;
        if (df && same_mem) {
            /* hand the buffer over: no copy of a weight-sized tensor between two ticks */
            real **sf = own_buffer(sp, ss->what), *t = *df;
            *df = *sf;
            *sf = t;
            if (ds->what == W_PROJ_W && dp->w_mark && sp->w_mark) {
                /* the ||delta W|| mark travels with the weights */
                t = dp->w_mark;
                dp->w_mark = sp->w_mark;
                sp->w_mark = t;
                if (dp->b_mark && sp->b_mark && dp->O == sp->O)
                    memcpy(dp->b_mark, sp->b_mark, (size_t)dp->O * sizeof(real));
            } else if (ds->what == W_PROJ_W) {
                engine_mark_weights(dp); /* one side keeps no mark (stats.drift: off) */
            }
        } else {
            memcpy(resolve(dst, ds), resolve(src, ss), ds->bytes);
        }
        weights |= ds->part == ENGINE_PART_PARAM;
        n++;
    }
    refresh_oparams(dst);
    refresh_oparams(src);
    for (int pi = 0; pi < dst->n_projs; pi++)
        dst->projs[pi].w_bound = -1.0; /* the bound of the fused path is stale */
    for (int pi = 0; pi < src->n_projs; pi++)
        src->projs[pi].w_bound = -1.0;
    if (weights)
        dst->steps = src->steps;
    if (keep_state)
        dst->es_n = src->es_n;
    return n;
}
