/* The tick thread (see ticker.h). Nothing here allocates, logs or locks once the thread
 * runs, except the start-up warnings about realtime settings, before the first tick. */
#include "ticker.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "snapshot.h"

int64_t
ticker_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int
tick_tables_init(struct tick_tables *tt, const struct layout *lay)
{
    int max_in = 1;
    memset(tt, 0, sizeof(*tt));
    for (int i = 0; i < lay->n_inputs; i++)
        if (lay->inputs[i].size > max_in)
            max_in = lay->inputs[i].size;
    tt->in_c = calloc((size_t)lay->n_inputs + 1, sizeof(*tt->in_c));
    tt->ro_c = calloc((size_t)lay->n_readouts + 1, sizeof(*tt->ro_c));
    tt->in_cfg = calloc((size_t)lay->n_inputs + 1, sizeof(*tt->in_cfg));
    tt->last_frame_ns = calloc((size_t)lay->n_inputs + 1, sizeof(*tt->last_frame_ns));
    tt->frame_drain = calloc((size_t)lay->n_inputs + 1, sizeof(*tt->frame_drain));
    tt->zeroed = calloc((size_t)lay->n_inputs + 1, sizeof(*tt->zeroed));
    tt->zeros = calloc((size_t)max_in, sizeof(real));
    tt->norms = calloc((size_t)lay->n_projs + 1, sizeof(*tt->norms));
    tt->norms_done = calloc((size_t)lay->n_projs + 1, sizeof(*tt->norms_done));
    if (!tt->in_c || !tt->ro_c || !tt->in_cfg || !tt->last_frame_ns || !tt->frame_drain ||
        !tt->zeroed || !tt->zeros || !tt->norms || !tt->norms_done) {
        tick_tables_fini(tt);
        return -1;
    }
    return 0;
}

void
tick_tables_fini(struct tick_tables *tt)
{
    free(tt->in_c);
    free(tt->ro_c);
    free(tt->in_cfg);
    free(tt->last_frame_ns);
    free(tt->frame_drain);
    free(tt->zeroed);
    free(tt->zeros);
    free(tt->norms);
    free(tt->norms_done);
    memset(tt, 0, sizeof(*tt));
}

/* Output records the ring holds: 256, or a second of ticks (at most 16 MiB of them) when
 * more, so that a loop thread held up that long loses nothing; plus two batches of
 * publish_every_ns, the most a loop that keeps up ever finds queued. */
static size_t
out_records(const struct ticker_opts *o, size_t rec_bytes)
{
    size_t n = 256;
    if (o->lockstep || o->period_ns <= 0)
        return n;
    size_t span = (size_t)(1000000000LL / o->period_ns), most = ((size_t)16 << 20) / rec_bytes;
    if (span > most)
        span = most;
    if (span > n)
        n = span;
    return n + 2 * ((size_t)(o->publish_every_ns / o->period_ns) + 1);
}

int
ticker_init(struct ticker *t, struct engine *eng, const struct layout *lay,
            const struct ticker_opts *o)
{
    memset(t, 0, sizeof(*t));
    t->eng = eng;
    t->lay = lay;
    t->opts = *o;
    t->efd = -1;
    /* A result carries at most one output record; 64 commands may be in flight. */
    size_t res_bytes = 64 * (sizeof(struct tick_result) + lay->output_bytes + 16);
    size_t out_bytes = out_records(o, lay->output_bytes + 16) * (lay->output_bytes + 16);
    if (out_bytes < (1u << 20))
        out_bytes = 1u << 20;
    /* Recording events: a few seconds of inputs at full rate before the loop drains. */
    size_t rec_bytes = 2 * o->in_q_bytes + (16u << 20);
    if (spsc_init(&t->cmd_q, o->in_q_bytes) || spsc_init(&t->in_q, o->in_q_bytes) ||
        spsc_init(&t->out_q, out_bytes) || spsc_init(&t->res_q, 2 * res_bytes + (1u << 20)) ||
        spsc_init(&t->rec_q, rec_bytes) || latest_init(&t->status, sizeof(struct tick_status)))
        goto fail;
    if (tick_tables_init(&t->tt, lay))
        goto fail;
    t->efd = eventfd(0, EFD_CLOEXEC);
    if (t->efd < 0)
        goto fail;
    if (o->threads > 1 && !(t->pool = pool_new(o->threads, POOL_MIN_WORK)))
        goto fail;
    hist_reset(&t->tick_time);
    hist_reset(&t->lateness);
    return 0;
fail:
    ticker_fini(t);
    return -1;
}

void
ticker_fini(struct ticker *t)
{
    spsc_fini(&t->cmd_q);
    spsc_fini(&t->in_q);
    spsc_fini(&t->out_q);
    spsc_fini(&t->res_q);
    spsc_fini(&t->rec_q);
    latest_fini(&t->status);
    tick_tables_fini(&t->tt);
    pool_free(&t->pool);
    if (t->efd >= 0)
        close(t->efd);
    memset(t, 0, sizeof(*t));
    t->efd = -1;
}

/* ---- loop side ------------------------------------------------------------------------ */

static void
wake_tick(struct ticker *t)
{
    uint64_t one = 1;
    ssize_t n = write(t->efd, &one, sizeof(one));
    (void)n; /* the counter cannot overflow in practice; a lost wake-up is impossible */
}

struct tick_cmd *
ticker_send_reserve(struct ticker *t, size_t extra_len)
{
    return spsc_reserve(&t->cmd_q, sizeof(struct tick_cmd) + extra_len);
}

void
ticker_send_commit(struct ticker *t, size_t extra_len)
{
    spsc_commit(&t->cmd_q, sizeof(struct tick_cmd) + extra_len);
    wake_tick(t);
}

int
ticker_send(struct ticker *t, const struct tick_cmd *cmd, const void *extra, size_t extra_len)
{
    struct tick_cmd *c = ticker_send_reserve(t, extra_len);
    if (!c)
        return -1;
    *c = *cmd;
    if (extra_len)
        memcpy(c + 1, extra, extra_len);
    ticker_send_commit(t, extra_len);
    return 0;
}

struct tick_status
ticker_status(struct ticker *t)
{
    struct tick_status s;
    memcpy(&s, latest_read(&t->status, NULL), sizeof(s));
    return s;
}

/* ---- tick side ------------------------------------------------------------------------- */

static void
publish_status(struct ticker *t)
{
    struct tick_status *s = latest_back(&t->status);
    s->tick = engine_tick_count(t->eng);
    s->period_index = t->opts.lockstep ? s->tick : t->period_index;
    s->paused = t->paused;
    s->learn = (int32_t)engine_get_learn(t->eng);
    s->lr = engine_get_lr(t->eng);
    latest_publish(&t->status);
}

/* Wakes the loop, which then publishes every queued result and output. uv_async_send
 * makes a system call only when the previous wake-up has been consumed. */
static void
notify_loop(struct ticker *t)
{
    t->pub_oldest_ns = 0;
    if (t->opts.wake)
        uv_async_send(t->opts.wake);
}

/* Timer mode, after a tick whose deadline was deadline_ns (next_ns already advanced):
 * wakes the loop for the outputs queued since the last wake-up once the oldest would
 * otherwise wait publish_every_ns or more (by the next deadline). At high rates each
 * wake-up costs this thread a system call, and the loop thread and libzmq's I/O thread a
 * context switch each, which on two CPUs delay this thread's own wake-ups: batches cost
 * fewer. The ring holds two batches and more (out_records); a loop that falls further
 * behind has a wake-up pending already, and what overflows is counted as dropped. */
static void
publish_outputs(struct ticker *t, int64_t deadline_ns)
{
    if (!t->pub_oldest_ns)
        t->pub_oldest_ns = deadline_ns;
    if (t->next_ns - t->pub_oldest_ns < t->opts.publish_every_ns)
        return;
    t->output_wakes++;
    notify_loop(t);
}

/* Logs a recording event (no-op unless recording). A full ring ends the recording: the
 * tick never waits for the writer. */
static void
rec_push(struct ticker *t, enum tick_rec_kind kind, int32_t a, double v, const void *payload,
         size_t len)
{
    if (!t->recording)
        return;
    struct tick_rec *r = spsc_reserve(&t->rec_q, sizeof(*r) + len);
    if (!r) {
        t->recording = 0;
        atomic_store(&t->rec_overflow, 1);
        notify_loop(t);
        return;
    }
    r->tick = engine_tick_count(t->eng);
    r->kind = (uint32_t)kind;
    r->a = a;
    r->v = v;
    if (len)
        memcpy(r + 1, payload, len);
    spsc_commit(&t->rec_q, sizeof(*r) + len);
}

/* Applies one validated input record to the engine (DESIGN §5.3). */
static void
apply_input(struct ticker *t, const struct wire_input *h)
{
    const uint8_t *p = (const uint8_t *)(h + 1);
    if (h->gen != t->gen) {
        t->inputs_dropped_swap++; /* checked against the model swapped out meanwhile */
        return;
    }
    rec_push(t, TICK_REC_INPUT, 0, 0.0, h, h->bytes);
    for (uint32_t k = 0; k < h->n_items; k++) {
        const struct wire_item *it = (const struct wire_item *)(const void *)p;
        switch (it->kind) {
        case WIRE_ANALOG:
            if (t->tt.frame_drain[it->index] == t->drain_id)
                t->tt.in_c[it->index].superseded++;
            t->tt.frame_drain[it->index] = t->drain_id;
            engine_set_input(t->eng, it->index, (const real *)(const void *)(it + 1));
            goto frame;
        case WIRE_SPIKES:
            t->tt.in_c[it->index].dropped_overflow += (uint64_t)engine_add_spikes(
                t->eng, it->index, (const int32_t *)(const void *)(it + 1), it->n);
        frame:
            t->tt.in_c[it->index].frames++;
            t->tt.last_frame_ns[it->index] = it->recv_ns;
            t->tt.zeroed[it->index] = 0;
            t->input_seq = it->seq;
            t->input_sender_time_ns = it->sender_time_ns;
            break;
        case WIRE_TARGET:
            t->tt.ro_c[it->index].targets++;
            t->tt.ro_c[it->index].superseded += (uint64_t)engine_set_target(
                t->eng, it->index, (const real *)(const void *)(it + 1));
            t->had_target = 1;
            break;
        case WIRE_CLASS: {
            /* wire.c checked the class against the readout's size */
            int sup = engine_set_target_class(t->eng, it->index, it->class_index);
            t->tt.ro_c[it->index].targets += sup >= 0;
            t->tt.ro_c[it->index].superseded += sup > 0;
            t->had_target |= sup >= 0;
            break;
        }
        case WIRE_REWARD:
            engine_add_reward(t->eng, it->reward);
            if (it->terminal)
                engine_set_terminal(t->eng);
            t->tick_reward += it->reward;
            break;
        default:
            break;
        }
        p += it->bytes;
    }
}

/* Drains the input ring: at most what was there when the drain began (its capacity). */
static void
drain_inputs(struct ticker *t)
{
    size_t budget = t->in_q.cap_bytes, len;
    void *rec;
    t->drain_id++;
    while (budget && (rec = spsc_peek(&t->in_q, &len))) {
        apply_input(t, rec);
        spsc_pop(&t->in_q);
        budget = budget > len + 8 ? budget - len - 8 : 0;
    }
}

static void
check_stale(struct ticker *t, int64_t now_ns)
{
    for (int i = 0; i < t->lay->n_inputs; i++) {
        const struct tick_input_cfg *c = &t->tt.in_cfg[i];
        if (!c->max_age_ns || !t->tt.last_frame_ns[i] || t->lay->inputs[i].is_spikes)
            continue;
        if (now_ns - t->tt.last_frame_ns[i] <= c->max_age_ns)
            continue;
        t->tt.in_c[i].stale_ticks++;
        if (c->zero && !t->tt.zeroed[i]) {
            rec_push(t, TICK_REC_STALE_ZERO, i, 0.0, NULL, 0);
            engine_set_input(t->eng, i, t->tt.zeros);
            t->tt.zeroed[i] = 1;
        }
    }
}

/* Writes the last tick's outputs as a record at p. */
static void
fill_output(struct ticker *t, struct wire_output *o, int64_t deadline_ns, int64_t finish_ns)
{
    const struct layout *l = t->lay;
    o->tick = engine_tick_count(t->eng) - 1;
    o->period_index = t->opts.lockstep ? o->tick : t->period_index;
    o->deadline_ns = deadline_ns;
    o->finish_ns = finish_ns;
    o->input_seq = t->input_seq;
    o->input_sender_time_ns = t->input_sender_time_ns;
    o->loss = engine_last_loss(t->eng);
    o->valid = engine_last_valid(t->eng);
    o->pad = 0;
    for (int r = 0; r < l->n_readouts; r++) {
        memcpy((void *)wire_output_values(l, o, r), engine_readout_values(t->eng, r),
               (size_t)l->readouts[r].size * sizeof(real));
        const real *a = engine_readout_action(t->eng, r);
        if (l->readouts[r].action_size && a)
            memcpy((void *)wire_output_action(l, o, r), a,
                   (size_t)l->readouts[r].action_size * sizeof(real));
    }
}

/* One tick: inputs, the engine, counters, outputs. Returns the finish time. */
static int64_t
run_tick(struct ticker *t, int64_t deadline_ns, int64_t start_ns, void *step_out)
{
    t->had_target = 0;
    t->tick_reward = 0.0;
    drain_inputs(t);
    check_stale(t, start_ns);
    pool_tick(t->pool, t->eng);
    int64_t end_ns = ticker_now_ns();
    if (!engine_last_valid(t->eng))
        t->invalid_ticks++;
    if (t->had_target) {
        t->loss_sum += engine_last_loss(t->eng);
        t->loss_n++;
    }
    t->reward_sum += t->tick_reward;
    t->n_ticks++;
    struct wire_output *o = spsc_reserve(&t->out_q, t->lay->output_bytes);
    if (o) {
        fill_output(t, o, deadline_ns, end_ns);
        if (step_out)
            memcpy(step_out, o, t->lay->output_bytes);
        spsc_commit(&t->out_q, t->lay->output_bytes);
    } else {
        t->outputs_dropped++;
        if (step_out)
            fill_output(t, step_out, deadline_ns, end_ns);
    }
    hist_add(&t->tick_time, end_ns - start_ns);
    return end_ns;
}

/* Advances the stats norms by one slice; a finished sweep is what Stats shows. */
static void
norms_step(struct ticker *t, int64_t budget)
{
    if (t->sweep.proj >= t->lay->n_projs)
        return;
    if (engine_norms_advance(t->eng, &t->sweep, budget, t->tt.norms))
        memcpy(t->tt.norms_done, t->tt.norms, (size_t)t->lay->n_projs * sizeof(*t->tt.norms));
}

static void
take_stats(struct ticker *t, struct tick_stats *s)
{
    const struct layout *l = t->lay;
    /* Between ticks in lockstep or paused nothing runs: sweep every projection now. */
    if (t->opts.lockstep || t->paused) {
        engine_norms_restart(&t->sweep);
        norms_step(t, 0);
    }
    s->time_ns = ticker_now_ns();
    s->tick = engine_tick_count(t->eng);
    s->period_index = t->opts.lockstep ? s->tick : t->period_index;
    s->overruns = t->overruns;
    s->skipped = t->skipped;
    s->outputs_dropped = t->outputs_dropped;
    s->output_wakes = t->output_wakes;
    s->invalid_ticks = t->invalid_ticks;
    s->tick_time = t->tick_time;
    s->lateness = t->lateness;
    t->tick_time_count_total += t->tick_time.count;
    t->tick_time_sum_ns_total = hist_add_sat(t->tick_time_sum_ns_total, t->tick_time.sum);
    t->lateness_count_total += t->lateness.count;
    t->lateness_sum_ns_total = hist_add_sat(t->lateness_sum_ns_total, t->lateness.sum);
    s->tick_time_count_total = t->tick_time_count_total;
    s->tick_time_sum_ns_total = t->tick_time_sum_ns_total;
    s->lateness_count_total = t->lateness_count_total;
    s->lateness_sum_ns_total = t->lateness_sum_ns_total;
    hist_reset(&t->tick_time);
    hist_reset(&t->lateness);
    s->loss_sum = t->loss_sum;
    s->loss_n = t->loss_n;
    s->reward_sum = t->reward_sum;
    s->n_ticks = t->n_ticks;
    t->loss_sum = t->reward_sum = 0.0;
    t->loss_n = t->n_ticks = 0;
    engine_counters(t->eng, &s->eng);
    s->learn = (int32_t)engine_get_learn(t->eng);
    s->lr = engine_get_lr(t->eng);
    s->paused = t->paused;
    memcpy(s->inputs, t->tt.in_c, (size_t)l->n_inputs * sizeof(*t->tt.in_c));
    memcpy(s->readouts, t->tt.ro_c, (size_t)l->n_readouts * sizeof(*t->tt.ro_c));
    memcpy(s->norms, t->tt.norms_done, (size_t)l->n_projs * sizeof(*t->tt.norms));
    s->life_ticks = t->life_ticks_base + s->tick;
    s->life_steps = t->life_steps_base + s->eng.steps;
    s->life_refused = t->life_refused_base + s->eng.updates_refused;
    s->life_resets = t->life_resets_base + s->eng.state_resets;
    s->swaps = t->swaps;
    s->last_swap_gap_ns = t->last_swap_gap_ns;
    s->inputs_dropped_swap = t->inputs_dropped_swap;
    for (int c = 0; c < l->n_cells; c++)
        s->rates[c] = l->cells[c].is_spiking ? engine_cell_rate(t->eng, c) : -1.0;
    /* Start the next sweep once this one is complete: each Stats shows norms at most one
     * period old when a sweep fits in a period, else the newest complete sweep. */
    if (t->sweep.proj >= l->n_projs)
        engine_norms_restart(&t->sweep);
}

static void
take_export(struct ticker *t, uint8_t *buf)
{
    const struct layout *l = t->lay;
    for (int p = 0; p < l->n_projs; p++) {
        const struct layout_proj *pr = &l->projs[p];
        struct engine_param_view v;
        engine_param(t->eng, p, &v);
        /* W plus any pending rank-one pairs: what every reader of W sees */
        engine_param_weight(t->eng, p, (real *)(void *)(buf + pr->exp_weight));
        if (pr->has_bias && v.bias)
            memcpy(buf + pr->exp_bias, v.bias, (size_t)pr->out_size * sizeof(real));
        if (pr->op == MODEL_OP_SPARSE) {
            int64_t *ip = (int64_t *)(void *)(buf + pr->exp_indptr);
            int64_t *ix = (int64_t *)(void *)(buf + pr->exp_indices);
            for (int64_t i = 0; i <= pr->in_size; i++)
                ip[i] = v.indptr ? v.indptr[i] : 0;
            for (int64_t i = 0; i < pr->count; i++)
                ix[i] = v.indices ? v.indices[i] : 0;
        }
    }
}

/* Answers a command. The result ring is sized for every command in flight (the loop
 * allows at most 64), so a reservation cannot fail; if it ever did, the loop's request
 * would time out rather than the tick thread wait. */
static void
reply(struct ticker *t, const struct tick_cmd *c, int32_t code, const char *msg, const void *out)
{
    size_t extra = out ? t->lay->output_bytes : 0;
    struct tick_result *r = spsc_reserve(&t->res_q, sizeof(*r) + extra);
    if (!r)
        return;
    memset(r, 0, sizeof(*r));
    r->serial = c->serial;
    r->type = c->type;
    r->code = code;
    if (msg)
        strncpy(r->msg, msg, sizeof(r->msg) - 1);
    r->status.tick = engine_tick_count(t->eng);
    r->status.period_index = t->opts.lockstep ? r->status.tick : t->period_index;
    r->status.paused = t->paused;
    r->status.learn = (int32_t)engine_get_learn(t->eng);
    r->status.lr = engine_get_lr(t->eng);
    if (out)
        memcpy(r + 1, out, extra);
    spsc_commit(&t->res_q, sizeof(*r) + extra);
    notify_loop(t);
}

/* Output record of a lockstep step: the result's own buffer is reserved directly. */
static void
do_step(struct ticker *t, const struct tick_cmd *c)
{
    size_t extra = t->lay->output_bytes;
    if (t->paused) {
        reply(t, c, ETRACE__ERROR__CODE__WRONG_MODE, "paused: resume first", NULL);
        return;
    }
    struct tick_result *r = spsc_reserve(&t->res_q, sizeof(*r) + extra);
    if (!r)
        return;
    if (c->arg.reset_before) {
        rec_push(t, TICK_REC_RESET, 3, 0.0, NULL, 0);
        engine_reset(t->eng, 1, 1);
    }
    /* Frames from the input socket first, then the Step's own input, which wins. */
    int64_t start = ticker_now_ns();
    t->had_target = 0;
    t->tick_reward = 0.0;
    drain_inputs(t);
    apply_input(t, (const struct wire_input *)(const void *)(c + 1));
    check_stale(t, start);
    pool_tick(t->pool, t->eng);
    int64_t end = ticker_now_ns();
    if (!engine_last_valid(t->eng))
        t->invalid_ticks++;
    if (t->had_target) {
        t->loss_sum += engine_last_loss(t->eng);
        t->loss_n++;
    }
    t->reward_sum += t->tick_reward;
    t->n_ticks++;
    hist_add(&t->tick_time, end - start);
    fill_output(t, (struct wire_output *)(void *)(r + 1), start, end);
    struct wire_output *o = spsc_reserve(&t->out_q, extra);
    if (o) {
        memcpy(o, r + 1, extra);
        spsc_commit(&t->out_q, extra);
    } else {
        t->outputs_dropped++;
    }
    memset(r, 0, sizeof(*r));
    r->serial = c->serial;
    r->type = c->type;
    r->status.tick = engine_tick_count(t->eng);
    r->status.period_index = r->status.tick;
    r->status.learn = (int32_t)engine_get_learn(t->eng);
    r->status.lr = engine_get_lr(t->eng);
    spsc_commit(&t->res_q, sizeof(*r) + extra);
    notify_loop(t);
}

/* ---- snapshots (DESIGN §5.2) ---------------------------------------------------------- */

/* Copies what is left of the snapshot in progress, releases deferred steps, answers. */
static void
snap_finish(struct ticker *t)
{
    struct tick_snap_req *q = t->snap_cmd.arg.snap;
    if (t->snap_state == 1) /* never reached a boundary: nothing is deferred */
        snap_copy_small(q->snap, t->eng);
    snap_copy_slice(q->snap, t->eng, 0);
    if (t->snap_state == 2) {
        engine_defer_steps(t->eng, 0);
        rec_push(t, TICK_REC_DEFER, 0, 0.0, NULL, 0);
    }
    t->snap_state = 0;
    reply(t, &t->snap_cmd, 0, NULL, NULL);
}

/* Starts the copy at a step boundary: the small parts now, steps deferred while the
 * weights are copied a slice per tick. */
static void
snap_begin(struct ticker *t)
{
    struct tick_snap_req *q = t->snap_cmd.arg.snap;
    snap_copy_small(q->snap, t->eng);
    q->snap->period_index = t->opts.lockstep ? engine_tick_count(t->eng) : t->period_index;
    if (q->record)
        t->recording = 1;
    engine_defer_steps(t->eng, 1);
    rec_push(t, TICK_REC_DEFER, 1, 0.0, NULL, 0);
    t->snap_state = 2;
}

/* After a tick in timer mode: advances the snapshot in progress. */
static void
snap_progress(struct ticker *t)
{
    if (t->snap_state == 1 && engine_at_step_boundary(t->eng)) {
        snap_begin(t);
        return; /* the small parts were this tick's share */
    }
    if (t->snap_state == 2 &&
        snap_copy_slice(t->snap_cmd.arg.snap->snap, t->eng, t->snap_cmd.arg.snap->slice_bytes))
        snap_finish(t);
}

static void
do_snapshot(struct ticker *t, const struct tick_cmd *c)
{
    struct tick_snap_req *q = c->arg.snap;
    if (t->snap_state) {
        reply(t, c, ETRACE__ERROR__CODE__BUSY, "a snapshot is in progress", NULL);
        return;
    }
    t->snap_cmd = *c;
    if (t->opts.lockstep || t->paused) {
        /* Nothing ticks: copy everything now, nothing is deferred. */
        snap_copy_small(q->snap, t->eng);
        q->snap->period_index = t->opts.lockstep ? engine_tick_count(t->eng) : t->period_index;
        snap_copy_slice(q->snap, t->eng, 0);
        if (q->record)
            t->recording = 1;
        reply(t, c, 0, NULL, NULL);
        return;
    }
    t->snap_state = 1;
    if (engine_at_step_boundary(t->eng))
        snap_begin(t);
}

/* ---- hot swap (DESIGN §5.4) ------------------------------------------------------------ */

static void
do_swap(struct ticker *t, const struct tick_cmd *c)
{
    struct tick_swap *sw = c->arg.swap;
    struct engine *old = t->eng;
    if (t->snap_state)
        snap_finish(t); /* the snapshot is of the old model: complete it first */
    if (!sw->restore) {
        if (sw->carry)
            engine_state_carry(sw->eng, old, sw->keep_state);
        /* `tick` continues across a swap. */
        struct engine_scalars sc;
        engine_state_get_scalars(sw->eng, &sc);
        sc.tick = engine_tick_count(old);
        engine_state_set_scalars(sw->eng, &sc);
    }
    rec_push(t, TICK_REC_SWAP, sw->restore, 0.0, NULL, 0);
    struct engine_counters c_old, c_new;
    engine_counters(old, &c_old);
    engine_counters(sw->eng, &c_new);
    /* Unsigned wrap-around makes base + new == old base + old even when new > old. */
    t->life_ticks_base += engine_tick_count(old) - engine_tick_count(sw->eng);
    t->life_steps_base += c_old.steps - c_new.steps;
    t->life_refused_base += c_old.updates_refused - c_new.updates_refused;
    t->life_resets_base += c_old.state_resets - c_new.state_resets;
    /* Counters of inputs and readouts that the new model also has carry over. */
    for (int i = 0; i < sw->lay->n_inputs; i++)
        if (sw->in_map[i] >= 0) {
            sw->tables.in_c[i] = t->tt.in_c[sw->in_map[i]];
            sw->tables.last_frame_ns[i] = t->tt.last_frame_ns[sw->in_map[i]];
        }
    for (int r = 0; r < sw->lay->n_readouts; r++)
        if (sw->ro_map[r] >= 0)
            sw->tables.ro_c[r] = t->tt.ro_c[sw->ro_map[r]];
    struct tick_tables tmp = t->tt;
    t->tt = sw->tables;
    sw->tables = tmp;
    t->eng = sw->eng;
    sw->eng = old;
    t->lay = sw->lay;
    t->gen = sw->gen;
    engine_norms_restart(&t->sweep);
    t->swaps++;
    /* Outputs after this marker are the new model's (struct wire_output is longer). */
    uint64_t *marker = spsc_reserve(&t->out_q, sizeof(uint64_t));
    if (marker) {
        *marker = 0;
        spsc_commit(&t->out_q, sizeof(uint64_t));
    }
    sw->tick = engine_tick_count(t->eng);
    sw->gap_ns = 0;
    if (t->opts.lockstep || t->paused || !t->last_start_ns) {
        reply(t, c, 0, NULL, NULL);
        return;
    }
    /* Timer mode: answer after the first new tick, with the gap. */
    t->swap_old_start_ns = t->last_start_ns;
    t->swap_cmd = *c;
    t->swap_reply_pending = 1;
}

/* After a tick: answers a swap with its gap. */
static void
swap_progress(struct ticker *t)
{
    if (!t->swap_reply_pending)
        return;
    t->last_swap_gap_ns = t->last_start_ns - t->swap_old_start_ns;
    t->swap_cmd.arg.swap->gap_ns = t->last_swap_gap_ns;
    t->swap_reply_pending = 0;
    reply(t, &t->swap_cmd, 0, NULL, NULL);
}

/* Lockstep replay: one recorded event, applied as the recorded tick thread applied it
 * (and recorded again if this daemon records), without running a tick. */
static void
do_replay(struct ticker *t, const struct tick_cmd *c)
{
    int32_t a = c->arg.replay.a;
    if (!t->opts.lockstep) {
        reply(t, c, ETRACE__ERROR__CODE__WRONG_MODE, "replay needs clock: lockstep", NULL);
        return;
    }
    switch (c->arg.replay.kind) {
    case TICK_REC_INPUT:
        apply_input(t, (const struct wire_input *)(const void *)(c + 1));
        break;
    case TICK_REC_LR:
        rec_push(t, TICK_REC_LR, 0, c->arg.replay.v, NULL, 0);
        engine_set_lr(t->eng, c->arg.replay.v);
        break;
    case TICK_REC_LEARN:
        rec_push(t, TICK_REC_LEARN, a, 0.0, NULL, 0);
        engine_set_learn(t->eng, (enum engine_learn)a);
        break;
    case TICK_REC_RESET:
        rec_push(t, TICK_REC_RESET, a, 0.0, NULL, 0);
        engine_reset(t->eng, a & 1, (a >> 1) & 1);
        break;
    case TICK_REC_STALE_ZERO:
        if (a < 0 || a >= t->lay->n_inputs || t->lay->inputs[a].is_spikes) {
            reply(t, c, ETRACE__ERROR__CODE__UNKNOWN_NAME, "stale_zero: no such analog input",
                  NULL);
            return;
        }
        rec_push(t, TICK_REC_STALE_ZERO, a, 0.0, NULL, 0);
        engine_set_input(t->eng, a, t->tt.zeros);
        t->tt.zeroed[a] = 1;
        break;
    case TICK_REC_DEFER:
        engine_defer_steps(t->eng, a != 0);
        rec_push(t, TICK_REC_DEFER, a != 0, 0.0, NULL, 0);
        break;
    default:
        reply(t, c, ETRACE__ERROR__CODE__INTERNAL, "unknown replay event", NULL);
        return;
    }
    reply(t, c, 0, NULL, NULL);
}

/* Applies every queued command. Returns 1 if any ran. */
static int
drain_commands(struct ticker *t)
{
    size_t len;
    int any = 0;
    struct tick_cmd *c;
    while ((c = spsc_peek(&t->cmd_q, &len))) {
        any = 1;
        switch (c->type) {
        case TICK_CMD_PAUSE:
            if (t->snap_state)
                snap_finish(t);
            if (t->swap_reply_pending) {
                t->swap_reply_pending = 0;
                reply(t, &t->swap_cmd, 0, NULL, NULL);
            }
            t->paused = 1;
            reply(t, c, 0, NULL, NULL);
            break;
        case TICK_CMD_RESUME:
            if (t->paused && !t->opts.lockstep)
                t->next_ns = ticker_now_ns() + t->opts.period_ns; /* re-anchor */
            t->paused = 0;
            reply(t, c, 0, NULL, NULL);
            break;
        case TICK_CMD_LEARN:
            rec_push(t, TICK_REC_LEARN, c->arg.on ? ENGINE_LEARN_ON : ENGINE_LEARN_OFF, 0.0, NULL,
                     0);
            engine_set_learn(t->eng, c->arg.on ? ENGINE_LEARN_ON : ENGINE_LEARN_OFF);
            reply(t, c, 0, NULL, NULL);
            break;
        case TICK_CMD_LR:
            rec_push(t, TICK_REC_LR, 0, c->arg.lr, NULL, 0);
            engine_set_lr(t->eng, c->arg.lr);
            reply(t, c, 0, NULL, NULL);
            break;
        case TICK_CMD_RESET:
            rec_push(t, TICK_REC_RESET, c->arg.reset.states | c->arg.reset.traces << 1, 0.0, NULL,
                     0);
            engine_reset(t->eng, c->arg.reset.states, c->arg.reset.traces);
            reply(t, c, 0, NULL, NULL);
            break;
        case TICK_CMD_STEP:
            if (!t->opts.lockstep)
                reply(t, c, ETRACE__ERROR__CODE__WRONG_MODE, "step needs clock: lockstep", NULL);
            else
                do_step(t, c);
            break;
        case TICK_CMD_EXPORT:
            take_export(t, c->arg.buf);
            reply(t, c, 0, NULL, NULL);
            break;
        case TICK_CMD_STATS:
            take_stats(t, c->arg.stats);
            reply(t, c, 0, NULL, NULL);
            break;
        case TICK_CMD_INPUT_CFG:
            memcpy(t->tt.in_cfg, c->arg.input_cfg,
                   (size_t)t->lay->n_inputs * sizeof(*t->tt.in_cfg));
            reply(t, c, 0, NULL, NULL);
            break;
        case TICK_CMD_QUIT:
            if (t->snap_state)
                snap_finish(t);
            if (t->swap_reply_pending)
                swap_progress(t);
            t->quit = 1;
            reply(t, c, 0, NULL, NULL);
            break;
        case TICK_CMD_SWAP:
            do_swap(t, c);
            break;
        case TICK_CMD_SNAPSHOT:
            do_snapshot(t, c);
            break;
        case TICK_CMD_RECORD_STOP:
            t->recording = 0;
            reply(t, c, 0, NULL, NULL);
            break;
        case TICK_CMD_REPLAY:
            do_replay(t, c);
            break;
        default:
            reply(t, c, ETRACE__ERROR__CODE__INTERNAL, "unknown tick command", NULL);
            break;
        }
        spsc_pop(&t->cmd_q);
    }
    if (any)
        publish_status(t);
    return any;
}

/* Blocks on the eventfd until the loop queues something (no spinning). */
static void
wait_command(struct ticker *t)
{
    uint64_t v;
    ssize_t n;
    do
        n = read(t->efd, &v, sizeof(v));
    while (n < 0 && errno == EINTR);
}

static void
apply_realtime(struct ticker *t)
{
    /* The default 50 us timer slack would show as lateness on every wake-up. */
    if (prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL))
        log_warning("cannot set the tick thread's timer slack: %s", strerror(errno));
    if (t->opts.rt_cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(t->opts.rt_cpu, &set);
        int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        if (rc)
            log_warning("realtime.cpu %d: %s; the tick thread is not pinned", t->opts.rt_cpu,
                        strerror(rc));
    }
    if (t->opts.rt_priority > 0) {
        struct sched_param sp = {.sched_priority = t->opts.rt_priority};
        int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
        if (rc)
            log_warning("realtime.priority %d: %s; the tick thread runs SCHED_OTHER",
                        t->opts.rt_priority, strerror(rc));
    }
}

static void
run_lockstep(struct ticker *t)
{
    while (!t->quit) {
        if (!drain_commands(t))
            wait_command(t);
    }
}

static void
run_timer(struct ticker *t)
{
    const int64_t period = t->opts.period_ns;
    t->next_ns = ticker_now_ns() + period;
    while (!t->quit) {
        if (t->paused) {
            if (!drain_commands(t))
                wait_command(t);
            continue;
        }
        struct timespec ts = {.tv_sec = (time_t)(t->next_ns / 1000000000LL),
                              .tv_nsec = (long)(t->next_ns % 1000000000LL)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        int64_t start = ticker_now_ns();
        int64_t late = start - t->next_ns;
        hist_add(&t->lateness, late);
        if (late >= period) {
            /* Deadlines passed while we could not run: skip them, never tick in a burst. */
            int64_t k = late / period;
            t->skipped += (uint64_t)k;
            t->period_index += (uint64_t)k;
            t->next_ns += k * period;
        }
        drain_commands(t);
        if (t->paused || t->quit)
            continue;
        t->last_start_ns = start;
        int64_t deadline = t->next_ns;
        int64_t end = run_tick(t, deadline, start, NULL);
        if (end > t->next_ns + period)
            t->overruns++;
        swap_progress(t);
        if (t->snap_state)
            snap_progress(t);
        t->period_index++;
        t->next_ns += period;
        publish_status(t);
        publish_outputs(t, deadline);
        norms_step(t, atomic_load_explicit(&t->norm_slice_bytes, memory_order_relaxed) /
                          (int64_t)sizeof(real));
    }
}

static void *
tick_main(void *arg)
{
    struct ticker *t = arg;
    engine_set_fp_env();
    apply_realtime(t);
    publish_status(t);
    if (t->opts.lockstep)
        run_lockstep(t);
    else
        run_timer(t);
    return NULL;
}

int
ticker_start(struct ticker *t)
{
    /* The first status (a resumed engine's tick, say) is there before the loop can answer
     * `status`, however late the tick thread first runs; pthread_create then hands the
     * producer side over to it. */
    publish_status(t);
    int rc = pthread_create(&t->thread, NULL, tick_main, t);
    if (rc) {
        errno = rc;
        return -1;
    }
    pthread_setname_np(t->thread, "etraced-tick");
    t->started = 1;
    return 0;
}

void
ticker_join(struct ticker *t)
{
    if (t->started)
        pthread_join(t->thread, NULL);
    t->started = 0;
}
