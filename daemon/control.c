/* Control requests (see control.h). */
#include "control.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decode.h"
#include "log.h"
#include "ops.h"
#include "pending.h"
#include "stats.h"

/* Everything a Reply may point into, freed after packing. */
struct reply_buf {
    Etrace__Reply reply;
    Etrace__Error error;
    Etrace__Status status;
    struct stats_msg stats;
    Etrace__StepResult step;
    Etrace__Output *outs; /* [n_readouts] */
    Etrace__Output **outs_p;
    float *floats; /* readout values and actions */
    Etrace__ExportResult exp;
    Etrace__Tensor *tensors; /* [4 * n_projs] */
    Etrace__Tensor **tensors_p;
    int64_t *shapes;              /* [2 * 4 * n_projs] */
    Etrace__ModelInput *m_inputs; /* status: [n_inputs] */
    Etrace__ModelInput **m_inputs_p;
    Etrace__ModelReadout *m_readouts; /* status: [n_readouts] */
    Etrace__ModelReadout **m_readouts_p;
    char msg[256];
};

enum start_rc {
    START_DONE, /* the reply is built */
    START_TICK, /* a tick command was queued; the reply comes with its result */
    START_WAIT  /* parked elsewhere (stats before the first snapshot) */
};

/* One call in progress: the request and where its reply goes. */
struct call {
    struct daemon *d;
    const Etrace__Request *req;
    struct reply_buf *rb;
    zmq_msg_t *env; /* the envelope parts */
    int n_env;
    int stop_after; /* shutdown: the daemon stops once the reply is sent */
};

typedef enum start_rc (*start_fn)(struct call *c);

struct handler {
    Etrace__Request__CommandCase command;
    const char *name;
    start_fn start;
};

/* ---- replies ---------------------------------------------------------------------------- */

static void reply_error(struct reply_buf *rb, Etrace__Error__Code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
reply_error(struct reply_buf *rb, Etrace__Error__Code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rb->msg, sizeof(rb->msg), fmt, ap);
    va_end(ap);
    etrace__error__init(&rb->error);
    rb->error.code = code;
    rb->error.message = rb->msg;
    rb->reply.error = &rb->error;
    rb->reply.result_case = ETRACE__REPLY__RESULT__NOT_SET;
}

/* The model's inputs and readouts in rb->status, so that a client can check a frame's size
 * before sending it. Left empty when out of memory (the rest of the status still goes). */
static void
status_layout(const struct layout *l, struct reply_buf *rb)
{
    Etrace__Status *s = &rb->status;
    rb->m_inputs = calloc((size_t)l->n_inputs + 1, sizeof(*rb->m_inputs));
    rb->m_inputs_p = calloc((size_t)l->n_inputs + 1, sizeof(*rb->m_inputs_p));
    rb->m_readouts = calloc((size_t)l->n_readouts + 1, sizeof(*rb->m_readouts));
    rb->m_readouts_p = calloc((size_t)l->n_readouts + 1, sizeof(*rb->m_readouts_p));
    if (!rb->m_inputs || !rb->m_inputs_p || !rb->m_readouts || !rb->m_readouts_p)
        return;
    for (int i = 0; i < l->n_inputs; i++) {
        Etrace__ModelInput *m = &rb->m_inputs[i];
        etrace__model_input__init(m);
        m->name = l->inputs[i].name;
        m->size = (uint32_t)l->inputs[i].size;
        m->spikes = l->inputs[i].is_spikes != 0;
        rb->m_inputs_p[i] = m;
    }
    s->n_inputs = (size_t)l->n_inputs;
    s->inputs = rb->m_inputs_p;
    for (int r = 0; r < l->n_readouts; r++) {
        Etrace__ModelReadout *m = &rb->m_readouts[r];
        etrace__model_readout__init(m);
        m->name = l->readouts[r].name;
        m->size = (uint32_t)l->readouts[r].size;
        m->kind = (char *)(l->readouts[r].action_size ? "reward"
                           : l->readouts[r].is_class  ? "class"
                                                      : "values");
        m->action_size = (uint32_t)l->readouts[r].action_size;
        rb->m_readouts_p[r] = m;
    }
    s->n_readouts = (size_t)l->n_readouts;
    s->readouts = rb->m_readouts_p;
}

static void
reply_status(struct daemon *d, struct reply_buf *rb, const struct tick_status *ts)
{
    Etrace__Status *s = &rb->status;
    etrace__status__init(s);
    s->model_name = d->lay.model_name;
    s->model_hash = d->lay.model_hash;
    s->clock = d->cfg.clock == CONFIG_CLOCK_LOCKSTEP ? ETRACE__STATUS__CLOCK__LOCKSTEP
                                                     : ETRACE__STATUS__CLOCK__TIMER;
    s->period_ns = d->period_ns;
    s->dt_ns = d->dt_ns;
    s->tick = ts->tick;
    s->period_index = ts->period_index;
    s->learning = ts->learn == ENGINE_LEARN_ON;
    s->lr = ts->lr;
    s->uptime_ns = ticker_now_ns() - d->start_ns;
    s->paused = ts->paused != 0;
    s->has_learning = d->lay.has_learning != 0;
    s->pid = (uint32_t)getpid();
    s->version = (char *)ETRACE_VERSION;
    status_layout(&d->lay, rb);
    rb->reply.result_case = ETRACE__REPLY__RESULT_STATUS;
    rb->reply.status = s;
}

static void
reply_buf_fini(struct reply_buf *rb)
{
    stats_msg_fini(&rb->stats);
    free(rb->outs);
    free(rb->outs_p);
    free(rb->floats);
    free(rb->tensors);
    free(rb->tensors_p);
    free(rb->shapes);
    free(rb->m_inputs);
    free(rb->m_inputs_p);
    free(rb->m_readouts);
    free(rb->m_readouts_p);
}

/* Packs and sends rb's reply with envelope env (moved). */
static void
send_reply(struct daemon *d, zmq_msg_t *env, int n_env, struct reply_buf *rb)
{
    size_t len = etrace__reply__get_packed_size(&rb->reply);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        log_warning("control: out of memory for a reply of %zu bytes", len);
        for (int i = 0; i < n_env; i++)
            zmq_msg_close(&env[i]);
        return;
    }
    etrace__reply__pack(&rb->reply, buf);
    endpoint_send_reply(&d->ep[CONFIG_EP_CONTROL], env, n_env, buf, len);
    free(buf);
}

/* ---- handlers --------------------------------------------------------------------------- */

static enum start_rc
start_status(struct call *c)
{
    struct tick_status ts = ticker_status(&c->d->tick);
    reply_status(c->d, c->rb, &ts);
    return START_DONE;
}

static int
fill_stats(struct daemon *d, struct reply_buf *rb)
{
    const struct tick_stats *s = d->stats_last;
    if (stats_build(&rb->stats, d, s, 0, d->stats_seq ? d->stats_seq - 1 : 0))
        return -1;
    rb->reply.result_case = ETRACE__REPLY__RESULT_STATS;
    rb->reply.stats = &rb->stats.msg;
    return 0;
}

static enum start_rc
start_stats(struct call *c)
{
    struct daemon *d = c->d;
    /* Lockstep: the counters as of the last completed tick, so a snapshot taken now (the
     * tick thread is between steps); timer: the last periodic one. */
    if (d->stats_last && d->cfg.clock != CONFIG_CLOCK_LOCKSTEP) {
        if (fill_stats(d, c->rb))
            reply_error(c->rb, ETRACE__ERROR__CODE__INTERNAL, "out of memory");
        return START_DONE;
    }
    /* No snapshot yet (or lockstep): park the request until the next one arrives. */
    if (d->n_stats_waiting >= PENDING_MAX) {
        reply_error(c->rb, ETRACE__ERROR__CODE__BUSY, "too many requests in flight");
        return START_DONE;
    }
    struct pending *p = &d->stats_waiting[d->n_stats_waiting++];
    memset(p, 0, sizeof(*p));
    p->in_use = 1;
    pending_park(p, c->req->id, c->req->command_case, c->env, c->n_env);
    control_request_stats(d);
    return START_WAIT;
}

/* Queues a simple tick command for this call. */
static enum start_rc
queue(struct call *c, struct tick_cmd *cmd, void *buf)
{
    struct pending *p = pending_new(&c->d->pending);
    if (!p) {
        free(buf);
        reply_error(c->rb, ETRACE__ERROR__CODE__BUSY, "too many requests in flight");
        return START_DONE;
    }
    cmd->serial = p->serial;
    if (ticker_send(&c->d->tick, cmd, NULL, 0)) {
        free(buf);
        pending_free(p);
        reply_error(c->rb, ETRACE__ERROR__CODE__BUSY, "command queue full");
        return START_DONE;
    }
    pending_park(p, c->req->id, c->req->command_case, c->env, c->n_env);
    p->buf = buf;
    return START_TICK;
}

static enum start_rc
start_pause(struct call *c)
{
    struct tick_cmd cmd = {.type = TICK_CMD_PAUSE};
    return queue(c, &cmd, NULL);
}

static enum start_rc
start_resume(struct call *c)
{
    struct tick_cmd cmd = {.type = TICK_CMD_RESUME};
    return queue(c, &cmd, NULL);
}

static enum start_rc
start_learn(struct call *c)
{
    struct tick_cmd cmd = {.type = TICK_CMD_LEARN};
    cmd.arg.on = c->req->learn->on;
    if (cmd.arg.on && !c->d->lay.has_learning) {
        c->d->ep[CONFIG_EP_CONTROL].c.rejected[WIRE_REJECT_BAD_ARGUMENT]++;
        reply_error(c->rb, ETRACE__ERROR__CODE__BAD_ARGUMENT,
                    "learn on: model '%s' has no learning section", c->d->lay.model_name);
        return START_DONE;
    }
    return queue(c, &cmd, NULL);
}

static enum start_rc
start_lr(struct call *c)
{
    struct tick_cmd cmd = {.type = TICK_CMD_LR};
    cmd.arg.lr = c->req->lr->lr;
    if (!isfinite(cmd.arg.lr) || cmd.arg.lr < 0.0) {
        c->d->ep[CONFIG_EP_CONTROL]
            .c.rejected[isfinite(cmd.arg.lr) ? WIRE_REJECT_BAD_ARGUMENT : WIRE_REJECT_NON_FINITE]++;
        reply_error(c->rb,
                    isfinite(cmd.arg.lr) ? ETRACE__ERROR__CODE__BAD_ARGUMENT
                                         : ETRACE__ERROR__CODE__NON_FINITE,
                    "lr %g: must be finite and >= 0", cmd.arg.lr);
        return START_DONE;
    }
    return queue(c, &cmd, NULL);
}

static enum start_rc
start_reset(struct call *c)
{
    struct tick_cmd cmd = {.type = TICK_CMD_RESET};
    switch (c->req->reset->what) {
    case ETRACE__RESET__WHAT__STATES:
        cmd.arg.reset.states = 1;
        break;
    case ETRACE__RESET__WHAT__TRACES:
        cmd.arg.reset.traces = 1;
        break;
    case ETRACE__RESET__WHAT__ALL:
        cmd.arg.reset.states = cmd.arg.reset.traces = 1;
        break;
    default:
        c->d->ep[CONFIG_EP_CONTROL].c.rejected[WIRE_REJECT_BAD_ARGUMENT]++;
        reply_error(c->rb, ETRACE__ERROR__CODE__BAD_ARGUMENT,
                    "reset: unknown part %d (all, states or traces)", (int)c->req->reset->what);
        return START_DONE;
    }
    return queue(c, &cmd, NULL);
}

static enum start_rc
start_step(struct call *c)
{
    struct daemon *d = c->d;
    static const Etrace__Input empty = ETRACE__INPUT__INIT;
    const Etrace__Input *in = c->req->step->input ? c->req->step->input : &empty;
    char err[200];
    size_t bytes = 0;

    if (d->cfg.clock != CONFIG_CLOCK_LOCKSTEP) {
        reply_error(c->rb, ETRACE__ERROR__CODE__WRONG_MODE,
                    "step needs clock: lockstep (this daemon runs clock: timer)");
        return START_DONE;
    }
    enum wire_reject why = wire_input_check(&d->lay, in, &bytes, err, sizeof(err));
    if (why != WIRE_OK) {
        d->ep[CONFIG_EP_CONTROL].c.rejected[why]++;
        reply_error(c->rb, wire_reject_code(why), "step: %s", err);
        return START_DONE;
    }
    struct pending *p = pending_new(&d->pending);
    if (!p) {
        reply_error(c->rb, ETRACE__ERROR__CODE__BUSY, "too many requests in flight");
        return START_DONE;
    }
    struct tick_cmd *cmd = ticker_send_reserve(&d->tick, bytes);
    if (!cmd) {
        pending_free(p);
        reply_error(c->rb, ETRACE__ERROR__CODE__BUSY, "command queue full");
        return START_DONE;
    }
    memset(cmd, 0, sizeof(*cmd));
    cmd->type = TICK_CMD_STEP;
    cmd->serial = p->serial;
    cmd->arg.reset_before = c->req->step->reset_before;
    wire_input_write(&d->lay, in, ticker_now_ns(), cmd + 1);
    ((struct wire_input *)(void *)(cmd + 1))->gen = ops_input_gen(d);
    ticker_send_commit(&d->tick, bytes);
    pending_park(p, c->req->id, c->req->command_case, c->env, c->n_env);
    return START_TICK;
}

/* Counts a rejected argument and answers with it. */
static enum start_rc
refuse(struct call *c, enum wire_reject why, Etrace__Error__Code code, const char *what)
{
    c->d->ep[CONFIG_EP_CONTROL].c.rejected[why]++;
    reply_error(c->rb, code, "replay: %s", what);
    return START_DONE;
}

/* Moves the call's envelope into a pending slot that an operation answers later. */
static struct pending *park(struct call *c);

/* Lockstep replay (DESIGN §5.4): one recorded event, applied without running a tick. */
static enum start_rc
start_replay(struct call *c)
{
    struct daemon *d = c->d;
    const Etrace__RecordEvent *ev = c->req->replay;
    struct tick_cmd cmd = {.type = TICK_CMD_REPLAY};
    struct pending *p;
    char err[200];
    size_t bytes = 0;

    if (d->cfg.clock != CONFIG_CLOCK_LOCKSTEP) {
        reply_error(c->rb, ETRACE__ERROR__CODE__WRONG_MODE,
                    "replay needs clock: lockstep (this daemon runs clock: timer)");
        return START_DONE;
    }
    switch (ev->kind_case) {
    case ETRACE__RECORD_EVENT__KIND_INPUT: {
        enum wire_reject why = wire_input_check(&d->lay, ev->input, &bytes, err, sizeof(err));
        if (why != WIRE_OK) {
            d->ep[CONFIG_EP_CONTROL].c.rejected[why]++;
            reply_error(c->rb, wire_reject_code(why), "replay: input: %s", err);
            return START_DONE;
        }
        if (!(p = pending_new(&d->pending))) {
            reply_error(c->rb, ETRACE__ERROR__CODE__BUSY, "too many requests in flight");
            return START_DONE;
        }
        struct tick_cmd *q = ticker_send_reserve(&d->tick, bytes);
        if (!q) {
            pending_free(p);
            reply_error(c->rb, ETRACE__ERROR__CODE__BUSY, "command queue full");
            return START_DONE;
        }
        memset(q, 0, sizeof(*q));
        q->type = TICK_CMD_REPLAY;
        q->serial = p->serial;
        q->arg.replay.kind = TICK_REC_INPUT;
        wire_input_write(&d->lay, ev->input, ticker_now_ns(), q + 1);
        ((struct wire_input *)(void *)(q + 1))->gen = ops_input_gen(d);
        ticker_send_commit(&d->tick, bytes);
        pending_park(p, c->req->id, c->req->command_case, c->env, c->n_env);
        return START_TICK;
    }
    case ETRACE__RECORD_EVENT__KIND_LR:
        if (!isfinite(ev->lr) || ev->lr < 0.0)
            return refuse(c, WIRE_REJECT_BAD_ARGUMENT, ETRACE__ERROR__CODE__BAD_ARGUMENT,
                          "lr must be finite and >= 0");
        cmd.arg.replay.kind = TICK_REC_LR;
        cmd.arg.replay.v = ev->lr;
        return queue(c, &cmd, NULL);
    case ETRACE__RECORD_EVENT__KIND_LEARN:
        if (ev->learn != ENGINE_LEARN_OFF && ev->learn != ENGINE_LEARN_ON &&
            ev->learn != ENGINE_LEARN_ACCUMULATE)
            return refuse(c, WIRE_REJECT_BAD_ARGUMENT, ETRACE__ERROR__CODE__BAD_ARGUMENT,
                          "learn: unknown mode");
        if (ev->learn != ENGINE_LEARN_OFF && !d->lay.has_learning)
            return refuse(c, WIRE_REJECT_BAD_ARGUMENT, ETRACE__ERROR__CODE__BAD_ARGUMENT,
                          "learn: the model has no learning section");
        cmd.arg.replay.kind = TICK_REC_LEARN;
        cmd.arg.replay.a = ev->learn;
        return queue(c, &cmd, NULL);
    case ETRACE__RECORD_EVENT__KIND_RESET:
        cmd.arg.replay.kind = TICK_REC_RESET;
        cmd.arg.replay.a = ev->reset->what == ETRACE__RESET__WHAT__STATES   ? 1
                           : ev->reset->what == ETRACE__RESET__WHAT__TRACES ? 2
                                                                            : 3;
        return queue(c, &cmd, NULL);
    case ETRACE__RECORD_EVENT__KIND_STALE_ZERO: {
        int i = layout_find_input(&d->lay, ev->stale_zero);
        if (i < 0 || d->lay.inputs[i].is_spikes)
            return refuse(c, WIRE_REJECT_UNKNOWN_NAME, ETRACE__ERROR__CODE__UNKNOWN_NAME,
                          "stale_zero: no such analog input");
        cmd.arg.replay.kind = TICK_REC_STALE_ZERO;
        cmd.arg.replay.a = i;
        return queue(c, &cmd, NULL);
    }
    case ETRACE__RECORD_EVENT__KIND_DEFER_STEPS:
        cmd.arg.replay.kind = TICK_REC_DEFER;
        cmd.arg.replay.a = ev->defer_steps != 0;
        return queue(c, &cmd, NULL);
    case ETRACE__RECORD_EVENT__KIND_SWAP:
        if (!ev->swap->model.len)
            return refuse(c, WIRE_REJECT_BAD_ARGUMENT, ETRACE__ERROR__CODE__BAD_ARGUMENT,
                          "swap: no model text");
        if (!(p = park(c)))
            return START_DONE;
        ops_load(d, p, ev->swap);
        return START_WAIT;
    case ETRACE__RECORD_EVENT__KIND_SNAPSHOT:
    case ETRACE__RECORD_EVENT__KIND_RESTORE:
        if (!(p = park(c)))
            return START_DONE;
        ops_restore_checkpoint(
            d, p, ev->kind_case == ETRACE__RECORD_EVENT__KIND_SNAPSHOT ? ev->snapshot : ev->restore,
            ev->kind_case == ETRACE__RECORD_EVENT__KIND_SNAPSHOT ? "replay snapshot"
                                                                 : "replay restore");
        return START_WAIT;
    case ETRACE__RECORD_EVENT__KIND_END:
        return start_status(c);
    default:
        return refuse(c, WIRE_REJECT_BAD_ARGUMENT, ETRACE__ERROR__CODE__BAD_ARGUMENT, "no event");
    }
}

static enum start_rc
start_export(struct call *c)
{
    struct tick_cmd cmd = {.type = TICK_CMD_EXPORT};
    void *buf = malloc(c->d->lay.export_bytes ? c->d->lay.export_bytes : 8);
    if (!buf) {
        reply_error(c->rb, ETRACE__ERROR__CODE__INTERNAL, "out of memory for %zu bytes",
                    c->d->lay.export_bytes);
        return START_DONE;
    }
    cmd.arg.buf = buf;
    return queue(c, &cmd, buf);
}

static struct pending *
park(struct call *c)
{
    struct pending *p = pending_new(&c->d->pending);
    if (!p) {
        reply_error(c->rb, ETRACE__ERROR__CODE__BUSY, "too many requests in flight");
        return NULL;
    }
    pending_park(p, c->req->id, c->req->command_case, c->env, c->n_env);
    return p;
}

static enum start_rc
start_load(struct call *c)
{
    const Etrace__Load *l = c->req->load;
    if (!l->model.len) {
        c->d->ep[CONFIG_EP_CONTROL].c.rejected[WIRE_REJECT_BAD_ARGUMENT]++;
        reply_error(c->rb, ETRACE__ERROR__CODE__BAD_ARGUMENT, "load: no model text");
        return START_DONE;
    }
    struct pending *p = park(c);
    if (!p)
        return START_DONE;
    ops_load(c->d, p, l);
    return START_WAIT;
}

static enum start_rc
start_checkpoint(struct call *c)
{
    struct pending *p = park(c);
    if (!p)
        return START_DONE;
    ops_checkpoint(c->d, p, c->req->checkpoint->name);
    return START_WAIT;
}

static enum start_rc
start_restore(struct call *c)
{
    struct pending *p = park(c);
    if (!p)
        return START_DONE;
    ops_restore(c->d, p, c->req->restore->name);
    return START_WAIT;
}

static enum start_rc
start_record(struct call *c)
{
    struct pending *p = park(c);
    if (!p)
        return START_DONE;
    ops_record(c->d, p, c->req->record);
    return START_WAIT;
}

static enum start_rc
start_shutdown(struct call *c)
{
    struct tick_status ts = ticker_status(&c->d->tick);
    reply_status(c->d, c->rb, &ts);
    c->stop_after = 1;
    return START_DONE;
}

static const struct handler handlers[] = {
    {ETRACE__REQUEST__COMMAND_STATUS, "status", start_status},
    {ETRACE__REQUEST__COMMAND_STATS, "stats", start_stats},
    {ETRACE__REQUEST__COMMAND_PAUSE, "pause", start_pause},
    {ETRACE__REQUEST__COMMAND_RESUME, "resume", start_resume},
    {ETRACE__REQUEST__COMMAND_LEARN, "learn", start_learn},
    {ETRACE__REQUEST__COMMAND_LR, "lr", start_lr},
    {ETRACE__REQUEST__COMMAND_RESET, "reset", start_reset},
    {ETRACE__REQUEST__COMMAND_STEP, "step", start_step},
    {ETRACE__REQUEST__COMMAND_EXPORT, "export", start_export},
    {ETRACE__REQUEST__COMMAND_SHUTDOWN, "shutdown", start_shutdown},
    {ETRACE__REQUEST__COMMAND_LOAD, "load", start_load},
    {ETRACE__REQUEST__COMMAND_CHECKPOINT, "checkpoint", start_checkpoint},
    {ETRACE__REQUEST__COMMAND_RESTORE, "restore", start_restore},
    {ETRACE__REQUEST__COMMAND_RECORD, "record", start_record},
    {ETRACE__REQUEST__COMMAND_REPLAY, "replay", start_replay},
};

const char *
control_command_name(int command)
{
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if ((int)handlers[i].command == command)
            return handlers[i].name;
    return "unknown";
}

/* ---- dispatch ----------------------------------------------------------------------------- */

/* Requests bigger than this are unpacked on a libuv worker (a load carries weights): the
 * loop thread only looks at their top-level fields. Smaller ones unpack in microseconds. */
enum { CONTROL_INLINE_BYTES = 1 << 20, CONTROL_MAX_JOBS = 2 };

/* The Request field numbers scanned before unpacking (commands are 10..24). */
enum { REQ_N_FIELDS = 30, STEP_FIELD_INPUT = 1, EVENT_FIELD_INPUT = 3 };

/* Checks the Input inside a Step or RecordEvent (field `field` of the message at
 * buf[off, off + len)) against the command ring before anything is unpacked. */
static enum wire_reject
prescan_nested_input(struct daemon *d, const uint8_t *buf, size_t len, uint32_t field, char *err,
                     size_t err_len)
{
    struct decode_field f[EVENT_FIELD_INPUT + 1];
    size_t n_items = 0;
    size_t max_record = d->tick.cmd_q.max_record_bytes - sizeof(struct tick_cmd);
    if (decode_scan(buf, len, f, field + 1))
        return WIRE_REJECT_UNDECODABLE;
    if (!f[field].count)
        return WIRE_OK;
    enum wire_reject why =
        wire_input_prescan(buf + f[field].last_off, f[field].last_len, max_record, &n_items);
    if (why == WIRE_REJECT_OVER_RING)
        snprintf(err, err_len,
                 "input of %zu items: its record is over the command ring (%zu bytes)", n_items,
                 max_record);
    return why;
}

/* Looks at the top-level fields of a Request before it is unpacked, so that no request
 * costs more than its command may: a step (or a replayed input) is capped at
 * limits.input_bytes and at the command ring. Returns WIRE_OK or a reason, with err. */
static enum wire_reject
prescan_request(struct daemon *d, const uint8_t *buf, size_t len, char *err, size_t err_len)
{
    struct decode_field f[REQ_N_FIELDS];
    if (decode_scan(buf, len, f, REQ_N_FIELDS)) {
        snprintf(err, err_len, "not a Request message (%zu bytes)", len);
        return WIRE_REJECT_UNDECODABLE;
    }
    const struct decode_field *step = &f[ETRACE__REQUEST__COMMAND_STEP];
    const struct decode_field *replay = &f[ETRACE__REQUEST__COMMAND_REPLAY];
    if ((int64_t)step->bytes > d->cfg.limit_input_bytes) {
        snprintf(err, err_len, "step of %zu bytes is over limits.input_bytes (%lld)", step->bytes,
                 (long long)d->cfg.limit_input_bytes);
        return WIRE_REJECT_OVERSIZED;
    }
    enum wire_reject why = WIRE_OK;
    if (step->count)
        why = prescan_nested_input(d, buf + step->last_off, step->last_len, STEP_FIELD_INPUT, err,
                                   err_len);
    if (why == WIRE_OK && replay->count)
        why = prescan_nested_input(d, buf + replay->last_off, replay->last_len, EVENT_FIELD_INPUT,
                                   err, err_len);
    if (why == WIRE_REJECT_UNDECODABLE)
        snprintf(err, err_len, "not a Request message (%zu bytes)", len);
    return why;
}

/* The unpack budget of a Request of len bytes: what an Input that fits the command ring
 * decodes to, or the bytes fields of a load copied once. */
static size_t
request_budget(struct daemon *d, size_t len)
{
    return wire_input_budget(len, d->tick.cmd_q.max_record_bytes);
}

/* Answers [envelope][body] of parts with rb's reply (the envelope is moved). */
static void
send_now(struct daemon *d, zmq_msg_t *parts, int n_parts, struct reply_buf *rb)
{
    zmq_msg_t env[PENDING_MAX_ENVELOPE];
    int n_env = n_parts - 1 < PENDING_MAX_ENVELOPE ? n_parts - 1 : PENDING_MAX_ENVELOPE;
    for (int i = 0; i < n_env; i++) {
        zmq_msg_init(&env[i]);
        zmq_msg_move(&env[i], &parts[i]);
    }
    send_reply(d, env, n_env, rb);
}

/* Runs the handler of an unpacked request (req may be NULL: unpacking failed, `budget` says
 * why) and answers it, or leaves the answer to a pending slot. Frees req. */
static void
dispatch(struct daemon *d, zmq_msg_t *parts, int n_parts, Etrace__Request *req,
         struct decode_budget *budget)
{
    struct endpoint *ep = &d->ep[CONFIG_EP_CONTROL];
    struct reply_buf rb;
    size_t len = zmq_msg_size(&parts[n_parts - 1]);

    memset(&rb, 0, sizeof(rb));
    etrace__reply__init(&rb.reply);
    struct call c = {d, NULL, &rb, parts, n_parts - 1, 0};
    if (!req) {
        if (budget->exceeded) {
            ep->c.rejected[WIRE_REJECT_OVERSIZED]++;
            reply_error(&rb, ETRACE__ERROR__CODE__OVERSIZED,
                        "request of %zu bytes decodes to more than %zu bytes", len,
                        budget->limit_bytes);
        } else {
            ep->c.rejected[WIRE_REJECT_UNDECODABLE]++;
            reply_error(&rb, ETRACE__ERROR__CODE__UNDECODABLE, "not a Request message (%zu bytes)",
                        len);
        }
        goto send;
    }
    rb.reply.id = req->id;
    c.req = req;
    const struct handler *h = NULL;
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if (handlers[i].command == req->command_case)
            h = &handlers[i];
    if (!h) {
        ep->c.rejected[WIRE_REJECT_UNKNOWN_COMMAND]++;
        reply_error(&rb, ETRACE__ERROR__CODE__UNKNOWN_COMMAND,
                    req->command_case ? "unknown command %d" : "no command set%.0d",
                    (int)req->command_case);
        goto send;
    }
    if (ops_swap_in_flight(d) && (req->command_case == ETRACE__REQUEST__COMMAND_STEP ||
                                  req->command_case == ETRACE__REQUEST__COMMAND_EXPORT ||
                                  req->command_case == ETRACE__REQUEST__COMMAND_REPLAY)) {
        reply_error(&rb, ETRACE__ERROR__CODE__BUSY, "a load or restore is in progress");
        goto send;
    }
    uint64_t before = 0;
    for (int i = 0; i < WIRE_N_REJECT; i++)
        before += ep->c.rejected[i];
    enum start_rc rc = h->start(&c);
    uint64_t after = 0;
    for (int i = 0; i < WIRE_N_REJECT; i++)
        after += ep->c.rejected[i];
    if (after == before)
        ep->c.accepted++;
    if (rc != START_DONE) {
        etrace__request__free_unpacked(req, &budget->a);
        reply_buf_fini(&rb);
        control_reply_ops(d); /* an operation may have ended at once (refused, failed) */
        return;               /* the envelope moved into a pending slot */
    }
send:
    /* The envelope parts are moved into the reply; the caller's close is then a no-op. */
    send_now(d, parts, n_parts, &rb);
    if (req)
        etrace__request__free_unpacked(req, &budget->a);
    reply_buf_fini(&rb);
    if (c.stop_after)
        d->stop_requested = 1; /* the daemon stops once this returns */
}

/* A big request unpacked on a worker thread; the loop thread dispatches it after. */
struct control_job {
    uv_work_t work;
    struct daemon *d;
    zmq_msg_t parts[ENDPOINT_MAX_PARTS]; /* moved from the drain, owned */
    int n_parts;
    struct decode_budget budget;
    Etrace__Request *req; /* the worker's result, or NULL */
};

static void
job_unpack(uv_work_t *w)
{
    struct control_job *j = w->data;
    zmq_msg_t *body = &j->parts[j->n_parts - 1];
    j->req = etrace__request__unpack(&j->budget.a, zmq_msg_size(body), zmq_msg_data(body));
}

static void
job_done(uv_work_t *w, int status)
{
    struct control_job *j = w->data;
    struct daemon *d = j->d;
    (void)status;
    d->n_control_jobs--;
    if (d->stopping) {
        /* The socket may be closed already: nobody to answer. */
        if (j->req)
            etrace__request__free_unpacked(j->req, &j->budget.a);
    } else {
        int64_t t0 = endpoint_thread_cpu_ns();
        dispatch(d, j->parts, j->n_parts, j->req, &j->budget);
        endpoint_note_hold(&d->ep[CONFIG_EP_CONTROL], endpoint_thread_cpu_ns() - t0);
        if (d->stop_requested)
            uv_async_send(&d->wake); /* the loop stops on its next wake-up */
    }
    for (int i = 0; i < j->n_parts; i++)
        zmq_msg_close(&j->parts[i]);
    free(j);
}

/* Hands a big request to a worker. Returns 0, or -1 (no memory or no free job: the caller
 * answers BUSY). On success the parts were moved. */
static int
queue_job(struct daemon *d, zmq_msg_t *parts, int n_parts, size_t len)
{
    if (d->n_control_jobs >= CONTROL_MAX_JOBS)
        return -1;
    struct control_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    j->d = d;
    j->work.data = j;
    j->n_parts = n_parts;
    decode_budget_init(&j->budget, request_budget(d, len));
    for (int i = 0; i < n_parts; i++) {
        zmq_msg_init(&j->parts[i]);
        zmq_msg_move(&j->parts[i], &parts[i]);
    }
    if (uv_queue_work(&d->loop, &j->work, job_unpack, job_done)) {
        for (int i = 0; i < n_parts; i++)
            zmq_msg_move(&parts[i], &j->parts[i]);
        free(j);
        return -1;
    }
    d->n_control_jobs++;
    return 0;
}

void
control_on_message(struct daemon *d, zmq_msg_t *parts, int n_parts)
{
    struct endpoint *ep = &d->ep[CONFIG_EP_CONTROL];
    struct reply_buf rb;
    char err[256];

    if (n_parts < 2) {
        /* No envelope to answer to (too many parts, or not from a ROUTER peer). */
        ep->c.rejected[WIRE_REJECT_UNDECODABLE]++;
        return;
    }
    memset(&rb, 0, sizeof(rb));
    etrace__reply__init(&rb.reply);
    zmq_msg_t *body = &parts[n_parts - 1];
    size_t len = zmq_msg_size(body);
    enum wire_reject why;

    if (d->stopping) {
        reply_error(&rb, ETRACE__ERROR__CODE__WRONG_MODE, "shutting down");
    } else if ((int64_t)len > d->cfg.limit_control_bytes) {
        ep->c.rejected[WIRE_REJECT_OVERSIZED]++;
        reply_error(&rb, ETRACE__ERROR__CODE__OVERSIZED,
                    "request of %zu bytes is over limits.control_bytes (%lld)", len,
                    (long long)d->cfg.limit_control_bytes);
    } else if ((why = prescan_request(d, zmq_msg_data(body), len, err, sizeof(err))) != WIRE_OK) {
        ep->c.rejected[why]++;
        reply_error(&rb, wire_reject_code(why), "%s", err);
    } else if (len > CONTROL_INLINE_BYTES) {
        if (!queue_job(d, parts, n_parts, len))
            return;
        reply_error(&rb, ETRACE__ERROR__CODE__BUSY, "too many large requests in flight");
    } else {
        struct decode_budget budget;
        decode_budget_init(&budget, request_budget(d, len));
        dispatch(d, parts, n_parts, etrace__request__unpack(&budget.a, len, zmq_msg_data(body)),
                 &budget);
        return;
    }
    send_now(d, parts, n_parts, &rb);
    reply_buf_fini(&rb);
}

/* StepResult from the output record after r. */
static int
fill_step(struct daemon *d, struct reply_buf *rb, const struct wire_output *o)
{
    const struct layout *l = &d->lay;
    size_t n_floats = 0;
    for (int k = 0; k < l->n_readouts; k++)
        n_floats += (size_t)(l->readouts[k].size + l->readouts[k].action_size);
    rb->outs = calloc((size_t)l->n_readouts + 1, sizeof(*rb->outs));
    rb->outs_p = calloc((size_t)l->n_readouts + 1, sizeof(*rb->outs_p));
    rb->floats = calloc(n_floats + 1, sizeof(float));
    if (!rb->outs || !rb->outs_p || !rb->floats)
        return -1;
    size_t off = 0;
    for (int k = 0; k < l->n_readouts; k++) {
        wire_output_to_msg(l, o, k, rb->floats + off, &rb->outs[k]);
        off += (size_t)(l->readouts[k].size + l->readouts[k].action_size);
        rb->outs_p[k] = &rb->outs[k];
    }
    etrace__step_result__init(&rb->step);
    rb->step.n_outputs = (size_t)l->n_readouts;
    rb->step.outputs = rb->outs_p;
    rb->reply.result_case = ETRACE__REPLY__RESULT_STEP;
    rb->reply.step = &rb->step;
    return 0;
}

static Etrace__Tensor *
tensor(struct reply_buf *rb, int *n, const char *proj, const char *part, int64_t d0, int64_t d1,
       char *names, size_t name_len)
{
    Etrace__Tensor *t = &rb->tensors[*n];
    etrace__tensor__init(t);
    snprintf(names, name_len, "%s.%s", proj, part);
    t->name = names;
    t->shape = &rb->shapes[2 * *n];
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->n_shape = d1 >= 0 ? 2 : 1;
    rb->tensors_p[*n] = t;
    (*n)++;
    return t;
}

static void
set_values(Etrace__Tensor *t, const void *v, int64_t n)
{
#if defined(REAL_DOUBLE)
    t->values64 = (double *)(uintptr_t)v;
    t->n_values64 = (size_t)n;
#else
    t->values = (float *)(uintptr_t)v;
    t->n_values = (size_t)n;
#endif
}

/* ExportResult pointing into the export buffer. Names live in `names`. */
static int
fill_export(struct daemon *d, struct reply_buf *rb, uint8_t *buf, char *names, size_t stride,
            uint64_t tick)
{
    const struct layout *l = &d->lay;
    int n = 0;
    size_t max = 4 * (size_t)l->n_projs + 1;
    rb->tensors = calloc(max, sizeof(*rb->tensors));
    rb->tensors_p = calloc(max, sizeof(*rb->tensors_p));
    rb->shapes = calloc(2 * max, sizeof(*rb->shapes));
    if (!rb->tensors || !rb->tensors_p || !rb->shapes)
        return -1;
    for (int p = 0; p < l->n_projs; p++) {
        const struct layout_proj *pr = &l->projs[p];
        Etrace__Tensor *t;
        char *nm = names + (size_t)(4 * p) * stride;
        if (pr->op == MODEL_OP_DENSE)
            t = tensor(rb, &n, pr->name, "weight", pr->in_size, pr->out_size, nm, stride);
        else
            t = tensor(rb, &n, pr->name, "weight", pr->count, -1, nm, stride);
        set_values(t, buf + pr->exp_weight, pr->count);
        if (pr->has_bias) {
            t = tensor(rb, &n, pr->name, "bias", pr->out_size, -1, nm + stride, stride);
            set_values(t, buf + pr->exp_bias, pr->out_size);
        }
        if (pr->op == MODEL_OP_SPARSE) {
            t = tensor(rb, &n, pr->name, "indptr", pr->in_size + 1, -1, nm + 2 * stride, stride);
            t->ints = (int64_t *)(void *)(buf + pr->exp_indptr);
            t->n_ints = (size_t)(pr->in_size + 1);
            t = tensor(rb, &n, pr->name, "indices", pr->count, -1, nm + 3 * stride, stride);
            t->ints = (int64_t *)(void *)(buf + pr->exp_indices);
            t->n_ints = (size_t)pr->count;
        }
    }
    etrace__export_result__init(&rb->exp);
    rb->exp.n_tensors = (size_t)n;
    rb->exp.tensors = rb->tensors_p;
    rb->exp.tick = tick;
    rb->reply.result_case = ETRACE__REPLY__RESULT_EXPORT;
    rb->reply.export = &rb->exp;
    return 0;
}

/* An export reply over CONTROL_INLINE_BYTES, packed on a worker: the weights may be hundreds
 * of megabytes, which the loop thread must not copy. Everything the Reply points into is
 * the job's. */
struct export_job {
    uv_work_t work;
    struct daemon *d;
    struct reply_buf rb;
    char *names;                         /* tensor names (fill_export) */
    void *buf;                           /* the export buffer the tick thread filled */
    zmq_msg_t env[PENDING_MAX_ENVELOPE]; /* the ROUTER envelope, moved from the request */
    int n_env;
    uint8_t *out; /* the packed Reply, or NULL (no memory) */
    size_t out_len;
};

static void
export_pack(uv_work_t *w)
{
    struct export_job *j = w->data;
    j->out_len = etrace__reply__get_packed_size(&j->rb.reply);
    j->out = malloc(j->out_len ? j->out_len : 1);
    if (j->out)
        etrace__reply__pack(&j->rb.reply, j->out);
}

static void
export_done(uv_work_t *w, int status)
{
    struct export_job *j = w->data;
    struct daemon *d = j->d;
    (void)status;
    if (d->stopping || !j->n_env) {
        free(j->out); /* the socket may be closed already: nobody to answer */
        for (int i = 0; i < j->n_env; i++)
            zmq_msg_close(&j->env[i]);
    } else if (j->out) {
        endpoint_send_reply_owned(&d->ep[CONFIG_EP_CONTROL], j->env, j->n_env, j->out, j->out_len);
    } else {
        struct reply_buf rb;
        memset(&rb, 0, sizeof(rb));
        etrace__reply__init(&rb.reply);
        rb.reply.id = j->rb.reply.id;
        reply_error(&rb, ETRACE__ERROR__CODE__INTERNAL, "out of memory for a reply of %zu bytes",
                    j->out_len);
        send_reply(d, j->env, j->n_env, &rb);
    }
    reply_buf_fini(&j->rb);
    free(j->names);
    free(j->buf);
    free(j);
}

/* Hands the export result of p to a worker to pack; frees p. Returns 0, or -1 (no memory:
 * p is untouched, the caller answers). */
static int
queue_export(struct daemon *d, struct pending *p, uint64_t tick)
{
    const size_t stride = 160;
    struct export_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    etrace__reply__init(&j->rb.reply);
    j->rb.reply.id = p->req_id;
    j->names = calloc(4 * (size_t)d->lay.n_projs + 1, stride);
    if (!j->names || fill_export(d, &j->rb, p->buf, j->names, stride, tick)) {
        reply_buf_fini(&j->rb);
        free(j->names);
        free(j);
        return -1;
    }
    j->d = d;
    j->work.data = j;
    j->buf = p->buf;
    p->buf = NULL;
    for (int i = 0; i < p->n_env; i++) {
        zmq_msg_init(&j->env[i]);
        zmq_msg_move(&j->env[i], &p->env[i]);
    }
    j->n_env = p->n_env;
    p->n_env = 0;
    pending_free(p);
    if (uv_queue_work(&d->loop, &j->work, export_pack, export_done)) {
        export_pack(&j->work); /* no worker: pack here rather than fail */
        export_done(&j->work, 0);
    }
    return 0;
}

void
control_on_result(struct daemon *d, struct pending *p, const struct tick_result *r, size_t len)
{
    struct reply_buf rb;
    char *names = NULL;
    const size_t stride = 160;

    memset(&rb, 0, sizeof(rb));
    etrace__reply__init(&rb.reply);
    rb.reply.id = p->req_id;
    if (r->code) {
        reply_error(&rb, (Etrace__Error__Code)r->code, "%s", r->msg);
    } else if (r->type == TICK_CMD_STEP && len >= sizeof(*r) + d->lay.output_bytes) {
        if (fill_step(d, &rb, (const struct wire_output *)(const void *)(r + 1)))
            reply_error(&rb, ETRACE__ERROR__CODE__INTERNAL, "out of memory");
    } else if (r->type == TICK_CMD_EXPORT && d->lay.export_bytes > CONTROL_INLINE_BYTES) {
        if (!queue_export(d, p, r->status.tick))
            return;
        reply_error(&rb, ETRACE__ERROR__CODE__INTERNAL, "out of memory");
    } else if (r->type == TICK_CMD_EXPORT) {
        /* Small enough to pack here: a worker may be busy with a checkpoint's fsync. */
        names = calloc(4 * (size_t)d->lay.n_projs + 1, stride);
        if (!names || fill_export(d, &rb, p->buf, names, stride, r->status.tick))
            reply_error(&rb, ETRACE__ERROR__CODE__INTERNAL, "out of memory");
    } else {
        reply_status(d, &rb, &r->status);
    }
    if (p->n_env) {
        send_reply(d, p->env, p->n_env, &rb);
        p->n_env = 0;
    }
    free(names);
    reply_buf_fini(&rb);
    pending_free(p);
}

/* Answers a `stats` request that waited for a snapshot (then frees p). */
static void
reply_stats(struct daemon *d, struct pending *p)
{
    struct reply_buf rb;
    memset(&rb, 0, sizeof(rb));
    etrace__reply__init(&rb.reply);
    rb.reply.id = p->req_id;
    if (fill_stats(d, &rb))
        reply_error(&rb, ETRACE__ERROR__CODE__INTERNAL, "out of memory");
    send_reply(d, p->env, p->n_env, &rb);
    p->n_env = 0;
    reply_buf_fini(&rb);
    pending_free(p);
}

void
control_on_stats(struct daemon *d)
{
    /* Only the requests parked before this snapshot was asked for get it; the others wait
     * for the next one (lockstep: a step may have run in between). */
    int ready = d->n_stats_ready;
    for (int i = 0; i < ready; i++)
        reply_stats(d, &d->stats_waiting[i]);
    for (int i = ready; ready > 0 && i < d->n_stats_waiting; i++)
        pending_move(&d->stats_waiting[i - ready], &d->stats_waiting[i]);
    d->n_stats_waiting -= ready;
    d->n_stats_ready = 0;
    if (d->n_stats_waiting)
        control_request_stats(d);
}

void
control_request_stats(struct daemon *d)
{
    if (d->stats_in_flight || d->stopping || ops_swap_in_flight(d))
        return;
    struct pending *p = pending_new(&d->pending);
    if (!p)
        return;
    struct tick_cmd cmd = {.type = TICK_CMD_STATS, .serial = p->serial};
    cmd.arg.stats = d->stats_pend;
    if (ticker_send(&d->tick, &cmd, NULL, 0)) {
        pending_free(p);
        return;
    }
    d->stats_in_flight = 1;
    d->n_stats_ready = d->n_stats_waiting;
}

/* Answers p with an Error (code != 0, msg) or an OpResult (op, may be NULL), then frees
 * p. A slot without an envelope (an internal command) is only freed. */
static void
reply_op(struct daemon *d, struct pending *p, int code, const char *msg, const Etrace__OpResult *op)
{
    struct reply_buf rb;
    if (!p)
        return;
    memset(&rb, 0, sizeof(rb));
    etrace__reply__init(&rb.reply);
    rb.reply.id = p->req_id;
    if (code) {
        reply_error(&rb, (Etrace__Error__Code)code, "%s", msg ? msg : "failed");
    } else if (op) {
        rb.reply.result_case = ETRACE__REPLY__RESULT_OP;
        rb.reply.op = (Etrace__OpResult *)(uintptr_t)op;
    }
    if (p->n_env && !d->stopping) {
        send_reply(d, p->env, p->n_env, &rb);
        p->n_env = 0;
    }
    reply_buf_fini(&rb);
    pending_free(p);
}

void
control_reply_ops(struct daemon *d)
{
    struct ops_result *res;
    while ((res = ops_take_result(d))) {
        reply_op(d, res->p, res->code, res->msg, res->has_op ? &res->op : NULL);
        ops_result_free(&res);
    }
}
