/* Operations on the live model (see ops.h). */
#include "ops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "etrace_recording.h"
#include "log.h"
#include "pending.h"
#include "snapshot.h"
#include "stats.h"

enum { REC_FLUSH_BYTES = 256 * 1024, STOP_WAIT_MS = 5000 };

enum snap_purpose { PURPOSE_CHECKPOINT, PURPOSE_RECORD };

/* A load or restore: compiled on a worker, swapped in by the tick thread. */
struct swap_job {
    uv_work_t work;
    struct daemon *d;
    struct pending *p;
    uint64_t serial;
    int restore;
    uint8_t *load_bytes; /* the packed Load (load), or Checkpoint (replay restore) */
    size_t load_len;
    char name[256]; /* the checkpoint (restore) */
    char dir[4096];
    Etrace__Checkpoint *ck; /* restore: kept for the recording */
    struct engine *eng;     /* the new engine */
    struct layout *lay;     /* its layout (heap: the tick thread points at it) */
    struct snap_plan plan;
    int *in_map, *ro_map;
    struct tick_swap sw;
    int code; /* Etrace__Error__Code of a failure */
    char err[1024];
};

/* A snapshot for a checkpoint or a recording's start. */
struct snap_job {
    uv_work_t work;
    struct daemon *d;
    struct pending *p;
    enum snap_purpose purpose;
    struct tick_snap_req req;
    char name[256];
    char dir[4096];
    int keep; /* prune generated checkpoints to this many (0: no) */
    size_t bytes;
    int rc;
    char err[512];
    int writing;        /* its write is queued on a worker (loop thread) */
    atomic_int written; /* the worker wrote and pruned (set last, by the worker) */
};

/* One piece of a recording, written in order. */
struct chunk {
    struct chunk *next;
    uint8_t *buf; /* owned, or NULL for the snapshot */
    size_t len;
    struct snap *snap; /* the opening snapshot (packed by the writer) */
    int sync;          /* fsync after writing it (the last chunk of a stopping recording) */
};

struct recorder {
    struct daemon *d;
    int fd;
    char name[256];
    struct chunk *head, *tail; /* waiting to be written */
    struct chunk *cur;         /* being written */
    uv_work_t work;
    int writing;
    int write_rc;
    int snap_ready; /* the first chunk holds its snapshot */
    uint8_t *buf;   /* events not yet in a chunk */
    size_t len, cap;
    uint64_t events, bytes;
    int stopping; /* stop requested: finish after the last write */
    struct pending *stop_p;
    uint64_t stop_serial;
    uint64_t stop_tick;
    int failed;
};

struct ops {
    struct snap_plan plan;    /* of the live engine */
    uint32_t gen;             /* input generation of d->lay */
    struct swap_job *swap;    /* in flight */
    int marker_seen;          /* the swap's output marker was drained */
    int rec_swap_seen;        /* the swap's recording event was drained */
    struct layout *lay_shell; /* the struct the tick thread reads after a swap */
    struct snap_job *snap;    /* in flight (one at a time) */
    struct recorder *rec;
    int64_t next_ckpt_ns;
    char ckpt_dir[4096];
    struct ops_result *done, *done_tail; /* outcomes not yet taken, oldest first */
};

static const char *
ckpt_dir(const struct daemon *d)
{
    return d->cfg.checkpoint_dir ? d->cfg.checkpoint_dir : d->state_dir;
}

int
ops_swap_in_flight(const struct daemon *d)
{
    return d->ops && d->ops->swap;
}

uint32_t
ops_input_gen(const struct daemon *d)
{
    return d->ops ? d->ops->gen : 0;
}

/* Queues the outcome for p (an Error when code != 0, else op or an empty result) for the
 * caller to answer, and wakes the loop for it. Without memory for it, p is released
 * unanswered, as a reply that cannot be packed is. */
static void
finish(struct daemon *d, struct pending *p, int code, const char *msg, const Etrace__OpResult *op)
{
    if (!p)
        return;
    size_t model_len = !code && op && op->model_name ? strlen(op->model_name) + 1 : 0;
    struct ops_result *r = calloc(1, sizeof(*r) + model_len);
    if (!r) {
        log_warning("ops: out of memory for a reply");
        pending_free(p);
        return;
    }
    r->p = p;
    r->code = code;
    if (code) {
        snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : "failed");
    } else if (op) {
        r->has_op = 1;
        r->op = *op;
        if (op->name) {
            snprintf(r->name, sizeof r->name, "%s", op->name);
            r->op.name = r->name;
        }
        if (model_len) {
            r->op.model_name = (char *)(r + 1);
            memcpy(r->op.model_name, op->model_name, model_len);
        }
    }
    struct ops *o = d->ops;
    if (o->done_tail)
        o->done_tail->next = r;
    else
        o->done = r;
    o->done_tail = r;
    if (!d->stopping)
        uv_async_send(&d->wake);
}

static void
fail_p(struct daemon *d, struct pending *p, Etrace__Error__Code code, const char *msg)
{
    finish(d, p, code, msg, NULL);
}

struct ops_result *
ops_take_result(struct daemon *d)
{
    struct ops *o = d->ops;
    struct ops_result *r = o ? o->done : NULL;
    if (!r)
        return NULL;
    o->done = r->next;
    if (!o->done)
        o->done_tail = NULL;
    r->next = NULL;
    return r;
}

void
ops_result_free(struct ops_result **r)
{
    free(*r);
    *r = NULL;
}

/* ---- resume ---------------------------------------------------------------------------- */

int
ops_resume(struct daemon *d)
{
    char **names, err[1024];
    if (!d->cfg.checkpoint_resume)
        return 0;
    const char *dir = ckpt_dir(d);
    int n = checkpoint_list(dir, &names);
    if (n <= 0) {
        log_info("checkpoint.resume: no checkpoint in %s; starting from the model", dir);
        if (n == 0)
            free(names);
        return 0;
    }
    int done = 0;
    for (int i = 0; i < n; i++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        Etrace__Checkpoint *ck = NULL;
        struct engine *eng = NULL;
        if (!done) {
            if (checkpoint_read(dir, names[i], &buf, &len, err, sizeof err) == 0 &&
                (ck = snap_unpack(buf, len, err, sizeof err)) &&
                snap_restore(ck, names[i], &eng, err, sizeof err) == 0) {
                log_info("checkpoint.resume: resumed from %s/%s (model %s, tick %llu)", dir,
                         names[i], ck->model_name, (unsigned long long)engine_tick_count(eng));
                engine_free(&d->eng);
                d->eng = eng;
                done = 1;
            } else {
                log_warning("checkpoint.resume: %s/%s skipped: %s", dir, names[i], err);
            }
        }
        if (ck)
            etrace__checkpoint__free_unpacked(ck, NULL);
        free(buf);
        free(names[i]);
    }
    free(names);
    if (!done)
        log_warning("checkpoint.resume: no whole checkpoint in %s; starting from the model", dir);
    return 0;
}

int
ops_init(struct daemon *d)
{
    struct ops *o = calloc(1, sizeof(*o));
    if (!o)
        return -1;
    if (snap_plan_init(&o->plan, d->eng)) {
        free(o);
        return -1;
    }
    if (checkpoint_mkdirs(d->state_dir))
        log_warning("cannot create the state directory %s: %s", d->state_dir, strerror(errno));
    if (checkpoint_mkdirs(ckpt_dir(d)))
        log_warning("cannot create checkpoint.dir %s: %s", ckpt_dir(d), strerror(errno));
    int n_tmp = checkpoint_remove_tmp(ckpt_dir(d), 0);
    if (n_tmp)
        log_info("removed %d stale temporary checkpoint file(s) from %s", n_tmp, ckpt_dir(d));
    o->next_ckpt_ns = ticker_now_ns() + d->cfg.checkpoint_every_s * 1000000000LL;
    d->ops = o;
    return 0;
}

static void rec_free(struct recorder **rp);

void
ops_fini(struct daemon *d)
{
    struct ops *o = d->ops;
    if (!o)
        return;
    if (o->snap) {
        snap_free(&o->snap->req.snap);
        free(o->snap);
    }
    if (o->rec)
        rec_free(&o->rec);
    /* Outcomes never taken: their slots went with the pending table at shutdown. */
    while (o->done) {
        struct ops_result *r = o->done;
        o->done = r->next;
        free(r);
    }
    snap_plan_fini(&o->plan);
    free(o->lay_shell);
    free(o);
    d->ops = NULL;
}

/* ---- hot swap and restore ---------------------------------------------------------------- */

static void
swap_job_free(struct swap_job *j)
{
    if (!j)
        return;
    engine_free(&j->eng);
    if (j->lay) {
        layout_fini(j->lay);
        free(j->lay);
    }
    snap_plan_fini(&j->plan);
    tick_tables_fini(&j->sw.tables);
    free(j->in_map);
    free(j->ro_map);
    free(j->load_bytes);
    if (j->ck)
        etrace__checkpoint__free_unpacked(j->ck, NULL);
    free(j);
}

/* Worker: compiles the new engine and everything sized by it. */
static void
swap_work(uv_work_t *w)
{
    struct swap_job *j = w->data;
    if (j->restore && j->load_bytes) {
        /* Lockstep replay: the checkpoint came in the request. */
        if (!(j->ck = snap_unpack(j->load_bytes, j->load_len, j->err, sizeof j->err)) ||
            snap_restore(j->ck, j->name, &j->eng, j->err, sizeof j->err)) {
            j->code = ETRACE__ERROR__CODE__BAD_ARGUMENT;
            return;
        }
    } else if (j->restore) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (checkpoint_read(j->dir, j->name, &buf, &len, j->err, sizeof j->err) ||
            !(j->ck = snap_unpack(buf, len, j->err, sizeof j->err)) ||
            snap_restore(j->ck, j->name, &j->eng, j->err, sizeof j->err)) {
            j->code = ETRACE__ERROR__CODE__BAD_ARGUMENT;
            free(buf);
            return;
        }
        free(buf);
    } else {
        Etrace__Load *l = etrace__load__unpack(NULL, j->load_len, j->load_bytes);
        if (!l) {
            snprintf(j->err, sizeof j->err, "load: undecodable");
            j->code = ETRACE__ERROR__CODE__UNDECODABLE;
            return;
        }
        int rc = snap_compile_load(l, &j->eng, j->err, sizeof j->err);
        etrace__load__free_unpacked(l, NULL);
        if (rc) {
            j->code = ETRACE__ERROR__CODE__BAD_ARGUMENT;
            return;
        }
    }
    j->lay = calloc(1, sizeof(*j->lay));
    if (!j->lay || layout_init(j->lay, j->eng) || snap_plan_init(&j->plan, j->eng) ||
        tick_tables_init(&j->sw.tables, j->lay)) {
        free(j->lay);
        j->lay = NULL;
        snprintf(j->err, sizeof j->err, "out of memory");
        j->code = ETRACE__ERROR__CODE__INTERNAL;
    }
}

/* Inputs and readouts of the same name, size and kind keep their index mapping. */
static int
build_maps(struct daemon *d, struct swap_job *j)
{
    const struct layout *n = j->lay, *o = &d->lay;
    int same = n->n_inputs == o->n_inputs && n->n_readouts == o->n_readouts;
    j->in_map = calloc((size_t)n->n_inputs + 1, sizeof(int));
    j->ro_map = calloc((size_t)n->n_readouts + 1, sizeof(int));
    if (!j->in_map || !j->ro_map)
        return -1;
    for (int i = 0; i < n->n_inputs; i++) {
        int k = layout_find_input(o, n->inputs[i].name);
        if (k >= 0 && (o->inputs[k].size != n->inputs[i].size ||
                       o->inputs[k].is_spikes != n->inputs[i].is_spikes))
            k = -1;
        j->in_map[i] = k;
        same &= k == i;
    }
    for (int r = 0; r < n->n_readouts; r++) {
        int k = layout_find_readout(o, n->readouts[r].name);
        if (k >= 0 && (o->readouts[k].size != n->readouts[r].size ||
                       o->readouts[k].is_class != n->readouts[r].is_class))
            k = -1;
        j->ro_map[r] = k;
        same &= k == r;
    }
    /* Inputs checked against the old layout stay valid when the new one reads them alike. */
    j->sw.gen = same ? d->ops->gen : d->ops->gen + 1;
    for (int i = 0; i < n->n_inputs; i++) {
        const struct config_input *ci = config_find_input(&d->cfg, n->inputs[i].name);
        if (ci) {
            j->sw.tables.in_cfg[i].max_age_ns = ci->max_age_ms * 1000000LL;
            j->sw.tables.in_cfg[i].zero = ci->on_stale == CONFIG_ON_STALE_ZERO;
        }
    }
    return 0;
}

static int
grow_out_floats(struct daemon *d, const struct layout *l)
{
    size_t need = 1;
    for (int r = 0; r < l->n_readouts; r++)
        if ((size_t)(l->readouts[r].size + l->readouts[r].action_size) > need)
            need = (size_t)(l->readouts[r].size + l->readouts[r].action_size);
    for (int r = 0; r < d->lay.n_readouts; r++)
        if ((size_t)(d->lay.readouts[r].size + d->lay.readouts[r].action_size) > need)
            need = (size_t)(d->lay.readouts[r].size + d->lay.readouts[r].action_size);
    float *nf = realloc(d->out_floats, need * sizeof(float));
    if (!nf)
        return -1;
    d->out_floats = nf;
    return 0;
}

static void
swap_after(uv_work_t *w, int status)
{
    struct swap_job *j = w->data;
    struct daemon *d = j->d;
    if (status || d->stopping) {
        swap_job_free(j);
        d->ops->swap = d->ops->swap == j ? NULL : d->ops->swap;
        return;
    }
    if (j->code) {
        log_warning("%s refused: %s", j->restore ? "restore" : "load", j->err);
        d->ops->swap = NULL;
        fail_p(d, j->p, (Etrace__Error__Code)j->code, j->err);
        swap_job_free(j);
        return;
    }
    if (build_maps(d, j) || grow_out_floats(d, j->lay)) {
        d->ops->swap = NULL;
        fail_p(d, j->p, ETRACE__ERROR__CODE__INTERNAL, "out of memory");
        swap_job_free(j);
        return;
    }
    j->sw.eng = j->eng;
    j->sw.lay = j->lay;
    j->sw.in_map = j->in_map;
    j->sw.ro_map = j->ro_map;
    j->sw.carry = j->sw.carry || j->sw.keep_state;
    j->sw.restore = j->restore;
    struct tick_cmd cmd = {.type = TICK_CMD_SWAP, .serial = j->p->serial};
    cmd.arg.swap = &j->sw;
    if (ticker_send(&d->tick, &cmd, NULL, 0)) {
        d->ops->swap = NULL;
        fail_p(d, j->p, ETRACE__ERROR__CODE__BUSY, "command queue full");
        swap_job_free(j);
    }
    /* From here the tick thread owns j->eng and reads j->lay; j stays until the result. */
}

static void
start_swap(struct daemon *d, struct pending *p, struct swap_job *j)
{
    j->d = d;
    j->p = p;
    j->serial = p->serial;
    j->work.data = j;
    d->ops->swap = j;
    int rc = uv_queue_work(&d->loop, &j->work, swap_work, swap_after);
    if (rc) {
        d->ops->swap = NULL;
        fail_p(d, p, ETRACE__ERROR__CODE__INTERNAL, uv_strerror(rc));
        swap_job_free(j);
    }
}

/* A swap job for p with room for `packed` bytes of a request the worker keeps (the request
 * itself is freed when the handler returns); NULL, with p answered, while another load or
 * restore is in flight or when memory is short. */
static struct swap_job *
swap_job_new(struct daemon *d, struct pending *p, size_t packed)
{
    if (d->ops->swap) {
        fail_p(d, p, ETRACE__ERROR__CODE__BUSY, "a load or restore is in progress");
        return NULL;
    }
    struct swap_job *j = calloc(1, sizeof(*j));
    if (j && packed) {
        j->load_len = packed;
        j->load_bytes = malloc(packed);
        if (!j->load_bytes) {
            free(j);
            j = NULL;
        }
    }
    if (!j)
        fail_p(d, p, ETRACE__ERROR__CODE__INTERNAL, "out of memory");
    return j;
}

void
ops_load(struct daemon *d, struct pending *p, const Etrace__Load *l)
{
    size_t n = etrace__load__get_packed_size(l);
    struct swap_job *j = swap_job_new(d, p, n ? n : 1);
    if (!j)
        return;
    etrace__load__pack(l, j->load_bytes);
    j->load_len = n;
    j->sw.carry = l->keep_weights;
    j->sw.keep_state = l->keep_state;
    start_swap(d, p, j);
}

void
ops_restore(struct daemon *d, struct pending *p, const char *name)
{
    char err[512], file[256];
    /* The name `checkpoint NAME` wrote: NAME.ckpt, unless NAME already ends so. */
    if (!name || !*name || checkpoint_file_name(name, file, sizeof file, err, sizeof err)) {
        fail_p(d, p, ETRACE__ERROR__CODE__BAD_ARGUMENT, name && *name ? err : "restore: no name");
        return;
    }
    struct swap_job *j = swap_job_new(d, p, 0);
    if (!j)
        return;
    j->restore = 1;
    snprintf(j->name, sizeof j->name, "%s", file);
    snprintf(j->dir, sizeof j->dir, "%s", ckpt_dir(d));
    start_swap(d, p, j);
}

void
ops_restore_checkpoint(struct daemon *d, struct pending *p, const Etrace__Checkpoint *ck,
                       const char *label)
{
    size_t n = etrace__checkpoint__get_packed_size(ck);
    struct swap_job *j = swap_job_new(d, p, n ? n : 1);
    if (!j)
        return;
    etrace__checkpoint__pack(ck, j->load_bytes);
    j->load_len = n;
    j->restore = 1;
    snprintf(j->name, sizeof j->name, "%s", label);
    start_swap(d, p, j);
}

static void rec_drain(struct daemon *d);

static void
swap_done(struct daemon *d, struct pending *p, const struct tick_result *r)
{
    struct ops *o = d->ops;
    struct swap_job *j = o->swap;
    if (!j) {
        if (p)
            pending_free(p);
        return;
    }
    /* Old recording events are decoded with the old layout (the caller published the old
     * outputs); then the new one takes over. */
    rec_drain(d);
    struct engine *old = j->sw.eng; /* the tick thread handed the old engine back */
    engine_free(&old);
    j->sw.eng = NULL;
    d->eng = j->eng; /* the tick thread's now; d->eng only frees it at the end */
    j->eng = NULL;
    layout_fini(&d->lay);
    d->lay = *j->lay; /* the strings move to d->lay; j->lay stays as the tick thread's */
    free(o->lay_shell);
    o->lay_shell = j->lay;
    j->lay = NULL;
    snap_plan_fini(&o->plan);
    o->plan = j->plan;
    memset(&j->plan, 0, sizeof j->plan);
    o->gen = j->sw.gen;
    o->marker_seen = o->rec_swap_seen = 0;
    /* Stats buffers are sized by the layout. */
    stats_snapshot_fini(&d->stats_buf[0]);
    stats_snapshot_fini(&d->stats_buf[1]);
    stats_snapshot_init(&d->stats_buf[0], &d->lay);
    stats_snapshot_init(&d->stats_buf[1], &d->lay);
    d->stats_pend = &d->stats_buf[0];
    d->stats_last = NULL;
    log_info("%s: model %s (hash %016llx) swapped in at tick %llu, gap %.1f us",
             j->restore ? "restore" : "load", d->lay.model_name,
             (unsigned long long)d->lay.model_hash, (unsigned long long)j->sw.tick,
             (double)j->sw.gap_ns / 1e3);
    Etrace__OpResult res = ETRACE__OP_RESULT__INIT;
    res.name = j->restore ? j->name : (char *)"";
    res.tick = j->sw.tick;
    res.swap_gap_ns = j->sw.gap_ns;
    res.model_name = d->lay.model_name;
    res.model_hash = d->lay.model_hash;
    o->swap = NULL;
    if (p)
        finish(d, p, r->code, r->msg, r->code ? NULL : &res);
    swap_job_free(j);
}

int
ops_output_marker(struct daemon *d, const void *rec, size_t len, const struct layout **lay)
{
    (void)rec;
    struct ops *o = d->ops;
    if (len == sizeof(uint64_t)) {
        if (o)
            o->marker_seen = 1;
        return 1;
    }
    *lay = o && o->swap && o->marker_seen && o->swap->lay ? o->swap->lay : &d->lay;
    return 0;
}

/* ---- snapshots and checkpoints ------------------------------------------------------------ */

static void
snap_job_free(struct snap_job *j)
{
    if (!j)
        return;
    snap_free(&j->req.snap);
    free(j);
}

static int
send_snapshot(struct daemon *d, struct pending *p, struct snap_job *j, int record)
{
    j->d = d;
    j->p = p;
    j->req.snap = snap_new(&d->ops->plan);
    j->req.slice_bytes = (size_t)d->cfg.snapshot_slice_bytes;
    j->req.record = record;
    if (!j->req.snap) {
        fail_p(d, p, ETRACE__ERROR__CODE__INTERNAL, "out of memory for a snapshot");
        snap_job_free(j);
        return -1;
    }
    struct tick_cmd cmd = {.type = TICK_CMD_SNAPSHOT, .serial = p->serial};
    cmd.arg.snap = &j->req;
    if (ticker_send(&d->tick, &cmd, NULL, 0)) {
        fail_p(d, p, ETRACE__ERROR__CODE__BUSY, "command queue full");
        snap_job_free(j);
        return -1;
    }
    d->ops->snap = j;
    return 0;
}

void
ops_checkpoint(struct daemon *d, struct pending *p, const char *name)
{
    char err[512];
    if (d->ops->snap) {
        fail_p(d, p, ETRACE__ERROR__CODE__BUSY, "a snapshot is in progress");
        return;
    }
    struct snap_job *j = calloc(1, sizeof(*j));
    if (!j) {
        fail_p(d, p, ETRACE__ERROR__CODE__INTERNAL, "out of memory");
        return;
    }
    if (checkpoint_file_name(name, j->name, sizeof j->name, err, sizeof err)) {
        free(j);
        fail_p(d, p, ETRACE__ERROR__CODE__BAD_ARGUMENT, err);
        return;
    }
    j->purpose = PURPOSE_CHECKPOINT;
    snprintf(j->dir, sizeof j->dir, "%s", ckpt_dir(d));
    if (!strncmp(j->name, CHECKPOINT_AUTO_PREFIX, strlen(CHECKPOINT_AUTO_PREFIX)))
        j->keep = (int)d->cfg.checkpoint_keep;
    send_snapshot(d, p, j, 0);
}

/* Worker: pack, write crash-safely, prune. */
static void
ckpt_work(uv_work_t *w)
{
    struct snap_job *j = w->data;
    uint8_t *buf;
    size_t len;
    if (snap_pack(j->req.snap, &buf, &len)) {
        j->rc = -1;
        snprintf(j->err, sizeof j->err, "out of memory");
        return;
    }
    j->rc = checkpoint_write(j->dir, j->name, buf, len, j->err, sizeof j->err);
    j->bytes = len;
    free(buf);
    if (!j->rc && j->keep)
        checkpoint_prune(j->dir, j->keep);
    atomic_store_explicit(&j->written, 1, memory_order_release);
}

static void
ckpt_after(uv_work_t *w, int status)
{
    struct snap_job *j = w->data;
    struct daemon *d = j->d;
    if (d->ops->snap == j)
        d->ops->snap = NULL;
    if (status || d->stopping) {
        snap_job_free(j);
        return;
    }
    uint64_t tick = j->req.snap->sc.tick;
    if (j->rc) {
        log_error("checkpoint %s: %s", j->name, j->err);
        fail_p(d, j->p, ETRACE__ERROR__CODE__INTERNAL, j->err);
    } else {
        log_info("checkpoint %s/%s: tick %llu, %zu bytes", j->dir, j->name,
                 (unsigned long long)tick, j->bytes);
        Etrace__OpResult res = ETRACE__OP_RESULT__INIT;
        res.name = j->name;
        res.tick = tick;
        res.bytes = j->bytes;
        res.model_name = j->req.snap->plan.model_name;
        res.model_hash = j->req.snap->plan.model_hash;
        finish(d, j->p, 0, NULL, &res);
    }
    snap_job_free(j);
}

static void rec_kick(struct daemon *d);

static void
snapshot_done(struct daemon *d, struct pending *p, const struct tick_result *r)
{
    struct snap_job *j = d->ops->snap;
    if (!j || j->p != p) {
        finish(d, p, r->code ? r->code : ETRACE__ERROR__CODE__INTERNAL,
               r->code ? r->msg : "no snapshot in progress", NULL);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    j->req.snap->wall_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    if (r->code) {
        d->ops->snap = NULL;
        if (j->purpose == PURPOSE_RECORD && d->ops->rec) {
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", d->state_dir, d->ops->rec->name);
            unlink(path);
            rec_free(&d->ops->rec);
        }
        finish(d, p, r->code, r->msg, NULL);
        snap_job_free(j);
        return;
    }
    if (j->purpose == PURPOSE_RECORD) {
        struct recorder *rec = d->ops->rec;
        d->ops->snap = NULL;
        Etrace__OpResult res = ETRACE__OP_RESULT__INIT;
        res.name = rec->name;
        res.tick = j->req.snap->sc.tick;
        res.model_name = j->req.snap->plan.model_name;
        res.model_hash = j->req.snap->plan.model_hash;
        log_info("record %s/%s: started at tick %llu", d->state_dir, rec->name,
                 (unsigned long long)res.tick);
        rec->head->snap = j->req.snap;
        j->req.snap = NULL;
        rec->snap_ready = 1;
        finish(d, p, 0, NULL, &res);
        snap_job_free(j);
        rec_kick(d);
        return;
    }
    j->work.data = j;
    j->writing = 1;
    if (uv_queue_work(&d->loop, &j->work, ckpt_work, ckpt_after)) {
        d->ops->snap = NULL;
        fail_p(d, p, ETRACE__ERROR__CODE__INTERNAL, "cannot queue the checkpoint write");
        snap_job_free(j);
    }
}

void
ops_stop_checkpoint(struct daemon *d)
{
    char name[256], err[512];
    if (!d->ops || d->cfg.checkpoint_every_s <= 0 || !d->tick.started)
        return;
    struct pending *p = pending_new(&d->pending);
    struct snap *s = snap_new(&d->ops->plan);
    if (!p || !s) {
        log_error("shutdown checkpoint: out of memory");
        snap_free(&s);
        return;
    }
    struct tick_snap_req req = {.snap = s, .slice_bytes = 0, .record = 0};
    struct tick_cmd pause = {.type = TICK_CMD_PAUSE, .serial = 0};
    struct tick_cmd cmd = {.type = TICK_CMD_SNAPSHOT, .serial = p->serial};
    cmd.arg.snap = &req;
    int64_t deadline = ticker_now_ns() + STOP_WAIT_MS * 1000000LL;
    /* A periodic checkpoint that a worker is writing lands first: resume takes the newest
     * file, and the older snapshot must not come out newer than ours. Its after-callback
     * cannot run (and free it) while this loop thread waits. */
    struct snap_job *writing = d->ops->snap && d->ops->snap->writing ? d->ops->snap : NULL;
    while (writing && !atomic_load_explicit(&writing->written, memory_order_acquire) &&
           ticker_now_ns() < deadline)
        usleep(1000);
    while (ticker_send(&d->tick, &pause, NULL, 0) && ticker_now_ns() < deadline)
        usleep(1000);
    while (ticker_send(&d->tick, &cmd, NULL, 0) && ticker_now_ns() < deadline)
        usleep(1000);
    int got = 0;
    while (!got && ticker_now_ns() < deadline) {
        size_t len;
        struct tick_result *r = spsc_peek(&d->tick.res_q, &len);
        if (!r) {
            usleep(500);
            continue;
        }
        if (r->serial == p->serial)
            got = r->code == 0 ? 1 : -1;
        else if (r->type == TICK_CMD_SNAPSHOT && d->ops->snap && !d->ops->snap->writing) {
            /* A snapshot asked for before ours ends here, unwritten: ours replaces it. The tick
             * thread is done with it once it answered, and its requester hears nothing more
             * (the daemon is stopping), so it is freed here. */
            log_info("shutdown checkpoint: replaces the %s in progress",
                     d->ops->snap->purpose == PURPOSE_RECORD ? "recording's snapshot"
                                                             : "checkpoint");
            snap_job_free(d->ops->snap);
            d->ops->snap = NULL;
        }
        spsc_pop(&d->tick.res_q);
    }
    pending_free(p);
    if (got != 1) {
        log_error("shutdown checkpoint: the tick thread did not answer");
        snap_free(&s);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->wall_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    checkpoint_file_name(NULL, name, sizeof name, err, sizeof err);
    uint8_t *buf;
    size_t len;
    if (snap_pack(s, &buf, &len) == 0) {
        if (checkpoint_write(ckpt_dir(d), name, buf, len, err, sizeof err))
            log_error("shutdown checkpoint %s: %s", name, err);
        else {
            checkpoint_prune(ckpt_dir(d), (int)d->cfg.checkpoint_keep);
            log_info("checkpoint %s/%s at shutdown: tick %llu, %zu bytes", ckpt_dir(d), name,
                     (unsigned long long)s->sc.tick, len);
        }
        free(buf);
    }
    snap_free(&s);
}

/* ---- recordings ---------------------------------------------------------------------------- */

static void
rec_free(struct recorder **rp)
{
    struct recorder *r = *rp;
    if (!r)
        return;
    while (r->head) {
        struct chunk *c = r->head;
        r->head = c->next;
        free(c->buf);
        snap_free(&c->snap);
        free(c);
    }
    if (r->cur) {
        free(r->cur->buf);
        snap_free(&r->cur->snap);
        free(r->cur);
    }
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    free(r);
    *rp = NULL;
}

/* Appends one RecordEvent, framed with its checksums, to the recorder's buffer. */
static int
rec_append(struct recorder *r, const Etrace__RecordEvent *ev)
{
    size_t len = etrace_recording_record_bytes(ev);
    if (r->len + len > r->cap) {
        size_t cap = r->cap ? r->cap : 65536;
        while (cap < r->len + len)
            cap *= 2;
        uint8_t *nb = realloc(r->buf, cap);
        if (!nb)
            return -1;
        r->buf = nb;
        r->cap = cap;
    }
    r->len += etrace_recording_pack(ev, r->buf + r->len);
    r->events++;
    return 0;
}

/* Appends the end record: the events written, and whether some were lost. */
static int
rec_append_end(struct recorder *r, uint64_t tick)
{
    Etrace__RecordEvent ev = ETRACE__RECORD_EVENT__INIT;
    ev.tick = tick;
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_END;
    ev.end = r->events;
    ev.incomplete = r->failed != 0;
    return rec_append(r, &ev);
}

/* The Input an input record applied, by name (the recording must outlive the layout): every
 * item, so that a replay applies what the tick applied. */
static int
rec_input(struct recorder *rec, const struct layout *l, uint64_t tick, const struct wire_input *h)
{
    size_t n_f = 0, n_s = 0, n_vals = 0, n_items = (size_t)h->n_items + 1;
    const uint8_t *p = (const uint8_t *)(h + 1);
    for (uint32_t k = 0; k < h->n_items; k++) {
        const struct wire_item *it = (const struct wire_item *)(const void *)p;
        if (it->kind == WIRE_ANALOG || it->kind == WIRE_TARGET)
            n_vals += (size_t)it->n;
        p += it->bytes;
    }
    float *vals = malloc((n_vals + 1) * sizeof(float));
    Etrace__Frame *frames = malloc(n_items * sizeof(*frames));
    Etrace__Frame **fp = malloc(n_items * sizeof(*fp));
    Etrace__Signal *sigs = malloc(n_items * sizeof(*sigs));
    Etrace__Signal **sp = malloc(n_items * sizeof(*sp));
    Etrace__Signal__Target *tg = malloc(n_items * sizeof(*tg));
    int rc = -1;
    if (!vals || !frames || !fp || !sigs || !sp || !tg)
        goto done;
    size_t off = 0;
    p = (const uint8_t *)(h + 1);
    for (uint32_t k = 0; k < h->n_items; k++) {
        const struct wire_item *it = (const struct wire_item *)(const void *)p;
        const real *rv = (const real *)(const void *)(it + 1);
        p += it->bytes;
        if (it->kind == WIRE_ANALOG || it->kind == WIRE_SPIKES) {
            Etrace__Frame *f = &frames[n_f];
            etrace__frame__init(f);
            f->name = l->inputs[it->index].name;
            f->seq = it->seq;
            f->sender_time_ns = it->sender_time_ns;
            if (it->kind == WIRE_ANALOG) {
                for (int32_t i = 0; i < it->n; i++)
                    vals[off + (size_t)i] = (float)rv[i];
                f->values = vals + off;
                f->n_values = (size_t)it->n;
                off += (size_t)it->n;
            } else {
                f->spikes = (int32_t *)(uintptr_t)(const void *)(it + 1);
                f->n_spikes = (size_t)it->n;
            }
            fp[n_f] = f;
            n_f++;
            continue;
        }
        Etrace__Signal *s = &sigs[n_s];
        etrace__signal__init(s);
        if (it->kind == WIRE_TARGET) {
            etrace__signal__target__init(&tg[n_s]);
            for (int32_t i = 0; i < it->n; i++)
                vals[off + (size_t)i] = (float)rv[i];
            tg[n_s].values = vals + off;
            tg[n_s].n_values = (size_t)it->n;
            off += (size_t)it->n;
            s->readout = l->readouts[it->index].name;
            s->kind_case = ETRACE__SIGNAL__KIND_TARGET;
            s->target = &tg[n_s];
        } else if (it->kind == WIRE_CLASS) {
            s->readout = l->readouts[it->index].name;
            s->kind_case = ETRACE__SIGNAL__KIND_CLASS_INDEX;
            s->class_index = it->class_index;
        } else {
            s->kind_case = ETRACE__SIGNAL__KIND_REWARD;
            s->reward = (float)it->reward;
            s->terminal = it->terminal != 0;
        }
        sp[n_s] = s;
        n_s++;
    }
    Etrace__Input in = ETRACE__INPUT__INIT;
    in.frames = fp;
    in.n_frames = n_f;
    in.signals = sp;
    in.n_signals = n_s;
    Etrace__RecordEvent ev = ETRACE__RECORD_EVENT__INIT;
    ev.tick = tick;
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_INPUT;
    ev.input = &in;
    rc = rec_append(rec, &ev);
done:
    free(vals);
    free(frames);
    free(fp);
    free(sigs);
    free(sp);
    free(tg);
    return rc;
}

/* Converts one tick-thread event into a RecordEvent. */
static int
rec_event(struct daemon *d, struct recorder *rec, const struct tick_rec *t, size_t len)
{
    struct ops *o = d->ops;
    const struct layout *l = o->swap && o->rec_swap_seen && o->swap->lay ? o->swap->lay : &d->lay;
    Etrace__RecordEvent ev = ETRACE__RECORD_EVENT__INIT;
    Etrace__Reset reset = ETRACE__RESET__INIT;
    Etrace__Load *load = NULL;
    int rc;
    ev.tick = t->tick;
    switch ((enum tick_rec_kind)t->kind) {
    case TICK_REC_INPUT:
        if (len < sizeof(*t) + sizeof(struct wire_input))
            return 0;
        return rec_input(rec, l, t->tick, (const struct wire_input *)(const void *)(t + 1));
    case TICK_REC_LR:
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_LR;
        ev.lr = t->v;
        break;
    case TICK_REC_LEARN:
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_LEARN;
        ev.learn = t->a;
        break;
    case TICK_REC_RESET:
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_RESET;
        reset.what = t->a == 3   ? ETRACE__RESET__WHAT__ALL
                     : t->a == 1 ? ETRACE__RESET__WHAT__STATES
                                 : ETRACE__RESET__WHAT__TRACES;
        ev.reset = &reset;
        break;
    case TICK_REC_STALE_ZERO:
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_STALE_ZERO;
        ev.stale_zero = t->a >= 0 && t->a < l->n_inputs ? l->inputs[t->a].name : (char *)"";
        break;
    case TICK_REC_DEFER:
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_DEFER_STEPS;
        ev.defer_steps = t->a != 0;
        break;
    case TICK_REC_SWAP:
        o->rec_swap_seen = 1;
        if (!o->swap)
            return 0;
        if (o->swap->restore) {
            ev.kind_case = ETRACE__RECORD_EVENT__KIND_RESTORE;
            ev.restore = o->swap->ck;
        } else {
            load = etrace__load__unpack(NULL, o->swap->load_len, o->swap->load_bytes);
            if (!load)
                return -1;
            ev.kind_case = ETRACE__RECORD_EVENT__KIND_SWAP;
            ev.swap = load;
        }
        break;
    default:
        return 0;
    }
    rc = rec_append(rec, &ev);
    if (load)
        etrace__load__free_unpacked(load, NULL);
    return rc;
}

/* Moves the buffered events into a chunk for the writer. */
static void
rec_flush(struct daemon *d)
{
    struct recorder *r = d->ops->rec;
    if (!r || !r->len)
        return;
    struct chunk *c = calloc(1, sizeof(*c));
    if (!c) {
        r->failed = 1;
        return;
    }
    c->buf = r->buf;
    c->len = r->len;
    r->buf = NULL;
    r->len = r->cap = 0;
    if (r->tail)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    rec_kick(d);
}

static void
rec_drain(struct daemon *d)
{
    size_t len;
    struct tick_rec *t;
    while ((t = spsc_peek(&d->tick.rec_q, &len))) {
        struct recorder *r = d->ops->rec;
        if (r && !r->failed && rec_event(d, r, t, len))
            r->failed = 1;
        if (!r && t->kind == TICK_REC_SWAP)
            d->ops->rec_swap_seen = 1;
        spsc_pop(&d->tick.rec_q);
    }
    if (d->ops->rec && d->ops->rec->len >= REC_FLUSH_BYTES)
        rec_flush(d);
}

static void
rec_write_work(uv_work_t *w)
{
    struct recorder *r = w->data;
    struct chunk *c = r->cur;
    r->write_rc = 0;
    if (c->snap) {
        struct snap_msg m;
        if (snap_msg_init(&m, c->snap)) {
            r->write_rc = -1;
            return;
        }
        Etrace__RecordEvent ev = ETRACE__RECORD_EVENT__INIT;
        ev.tick = c->snap->sc.tick;
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_SNAPSHOT;
        ev.snapshot = &m.ck;
        /* The file's first chunk: the format's magic, then the snapshot. */
        size_t len = etrace_recording_record_bytes(&ev);
        c->buf = malloc(ETRACE_RECORDING_MAGIC_BYTES + len);
        if (c->buf) {
            memcpy(c->buf, ETRACE_RECORDING_MAGIC, ETRACE_RECORDING_MAGIC_BYTES);
            c->len = ETRACE_RECORDING_MAGIC_BYTES +
                     etrace_recording_pack(&ev, c->buf + ETRACE_RECORDING_MAGIC_BYTES);
        }
        snap_msg_fini(&m);
        if (!c->buf) {
            r->write_rc = -1;
            return;
        }
    }
    const uint8_t *p = c->buf;
    size_t left = c->len;
    while (left) {
        ssize_t n = write(r->fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r->write_rc = -1;
            return;
        }
        p += n;
        left -= (size_t)n;
    }
    r->bytes += c->len;
    /* The loop decided this before queueing the write: the worker reads nothing the loop
     * thread may change meanwhile (stopping and head are the loop's). */
    if (c->sync)
        fsync(r->fd);
}

static void rec_write_after(uv_work_t *w, int status);

static void
rec_finish(struct daemon *d)
{
    struct recorder *r = d->ops->rec;
    fsync(r->fd);
    log_info("record %s/%s: stopped at tick %llu, %llu events, %llu bytes%s", d->state_dir, r->name,
             (unsigned long long)r->stop_tick, (unsigned long long)r->events,
             (unsigned long long)r->bytes, r->failed ? " (FAILED: incomplete)" : "");
    if (r->stop_p) {
        Etrace__OpResult res = ETRACE__OP_RESULT__INIT;
        res.name = r->name;
        res.tick = r->stop_tick;
        res.bytes = r->bytes;
        res.events = r->events;
        if (r->failed)
            finish(d, r->stop_p, ETRACE__ERROR__CODE__INTERNAL,
                   "the recording could not be written whole", NULL);
        else
            finish(d, r->stop_p, 0, NULL, &res);
    }
    rec_free(&d->ops->rec);
}

static void
rec_kick(struct daemon *d)
{
    struct recorder *r = d->ops->rec;
    if (!r || r->writing || !r->snap_ready)
        return;
    if (!r->head) {
        if (r->stopping)
            rec_finish(d);
        return;
    }
    r->cur = r->head;
    r->head = r->head->next;
    if (!r->head)
        r->tail = NULL;
    r->cur->sync = r->stopping && !r->head;
    r->writing = 1;
    r->work.data = r;
    if (uv_queue_work(&d->loop, &r->work, rec_write_work, rec_write_after)) {
        r->writing = 0;
        r->failed = 1;
    }
}

static void
rec_write_after(uv_work_t *w, int status)
{
    struct recorder *r = w->data;
    struct daemon *d = NULL;
    (void)status;
    r->writing = 0;
    free(r->cur->buf);
    snap_free(&r->cur->snap);
    free(r->cur);
    r->cur = NULL;
    if (r->write_rc)
        r->failed = 1;
    d = r->d;
    if (d->ops && d->ops->rec == r)
        rec_kick(d);
}

void
ops_record(struct daemon *d, struct pending *p, const Etrace__Record *rq)
{
    struct ops *o = d->ops;
    char err[512];
    if (!rq->start) {
        if (!o->rec || o->rec->stopping) {
            fail_p(d, p, ETRACE__ERROR__CODE__BAD_ARGUMENT, "record stop: not recording");
            return;
        }
        struct tick_cmd cmd = {.type = TICK_CMD_RECORD_STOP, .serial = p->serial};
        if (ticker_send(&d->tick, &cmd, NULL, 0))
            fail_p(d, p, ETRACE__ERROR__CODE__BUSY, "command queue full");
        return;
    }
    if (o->rec) {
        fail_p(d, p, ETRACE__ERROR__CODE__BUSY, "already recording");
        return;
    }
    if (o->snap) {
        fail_p(d, p, ETRACE__ERROR__CODE__BUSY, "a snapshot is in progress");
        return;
    }
    if (checkpoint_name_ok(rq->name, err, sizeof err)) {
        fail_p(d, p, ETRACE__ERROR__CODE__BAD_ARGUMENT, err);
        return;
    }
    struct recorder *r = calloc(1, sizeof(*r));
    struct chunk *first = calloc(1, sizeof(*first));
    struct snap_job *j = calloc(1, sizeof(*j));
    if (!r || !first || !j) {
        free(r);
        free(first);
        free(j);
        fail_p(d, p, ETRACE__ERROR__CODE__INTERNAL, "out of memory");
        return;
    }
    r->fd = checkpoint_create(d->state_dir, rq->name, err, sizeof err);
    if (r->fd < 0) {
        free(r);
        free(first);
        free(j);
        fail_p(d, p, ETRACE__ERROR__CODE__BAD_ARGUMENT, err);
        return;
    }
    snprintf(r->name, sizeof r->name, "%s", rq->name);
    r->d = d;
    r->head = r->tail = first;
    o->rec = r;
    j->purpose = PURPOSE_RECORD;
    snprintf(j->name, sizeof j->name, "%s", rq->name);
    if (send_snapshot(d, p, j, 1)) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", d->state_dir, r->name);
        unlink(path);
        rec_free(&o->rec);
    }
}

static void
record_stopped(struct daemon *d, struct pending *p, const struct tick_result *r)
{
    struct recorder *rec = d->ops->rec;
    if (!rec) {
        finish(d, p, ETRACE__ERROR__CODE__BAD_ARGUMENT, "not recording", NULL);
        return;
    }
    rec_drain(d);
    if (rec_append_end(rec, r->status.tick))
        rec->failed = 1;
    rec->stop_tick = r->status.tick;
    rec->stopping = 1;
    rec->stop_p = p;
    rec_flush(d);
    rec_kick(d);
}

/* ---- results and housekeeping ------------------------------------------------------------- */

void
ops_on_result(struct daemon *d, struct pending *p, const struct tick_result *r)
{
    switch (r->type) {
    case TICK_CMD_SWAP:
        swap_done(d, p, r);
        break;
    case TICK_CMD_SNAPSHOT:
        snapshot_done(d, p, r);
        break;
    case TICK_CMD_RECORD_STOP:
        record_stopped(d, p, r);
        break;
    default:
        pending_free(p);
        break;
    }
}

void
ops_housekeeping(struct daemon *d, int64_t now_ns)
{
    struct ops *o = d->ops;
    if (!o || d->stopping)
        return;
    rec_drain(d);
    if (o->rec && atomic_load(&d->tick.rec_overflow) && !o->rec->stopping) {
        atomic_store(&d->tick.rec_overflow, 0);
        log_error("record %s: the event ring overflowed (the writer fell behind); the "
                  "recording ends here, incomplete",
                  o->rec->name);
        o->rec->failed = 1;
        o->rec->stopping = 1;
        /* The end record says the file is incomplete, so that no replay passes for whole. */
        rec_append_end(o->rec, 0);
    }
    if (o->rec)
        rec_flush(d);
    if (o->rec && o->rec->stopping && !o->rec->stop_p && !o->rec->writing)
        rec_kick(d);
    if (d->cfg.checkpoint_every_s > 0 && now_ns >= o->next_ckpt_ns) {
        o->next_ckpt_ns = now_ns + d->cfg.checkpoint_every_s * 1000000000LL;
        if (!o->snap && !o->swap) {
            struct pending *p = pending_new(&d->pending);
            if (p)
                ops_checkpoint(d, p, NULL);
        }
    }
}
