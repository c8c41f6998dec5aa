/* Writes the seed corpora of the daemon's fuzz targets from the real encoders: Inputs and
 * Requests packed by protobuf-c, checkpoint images by snap_pack, recordings framed as the
 * daemon's recorder frames them (a varint length before each RecordEvent), config files
 * and CURVE key files as etraced and `etracectl keygen` read and write them.
 * Usage: fuzz_seeds DIR (writes DIR/<target>/seed-*; make fuzz-seeds). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "fuzz_daemon.h"
#include "snapshot.h"

static const char *root;
static int n_written;

static void
put(const char *target, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/seed-%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f)) {
        fprintf(stderr, "fuzz_seeds: cannot write %s\n", path);
        exit(1);
    }
    n_written++;
}

static void
put_text(const char *target, const char *name, const char *text)
{
    put(target, name, text, strlen(text));
}

/* Packs any protobuf-c message. */
static void
put_msg(const char *target, const char *name, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        exit(1);
    protobuf_c_message_pack(m, buf);
    put(target, name, buf, len);
    free(buf);
}

/* ---- Inputs --------------------------------------------------------------------------- */

static float vals[8] = {0.5f, -0.25f, 1.0f, 0.0f, 0.125f, -1.0f, 2.0f, 0.75f};
static int32_t spikes[3] = {0, 3, 5};

static Etrace__Frame
frame(const char *name, size_t n_values, size_t n_spikes, uint64_t seq)
{
    Etrace__Frame f = ETRACE__FRAME__INIT;
    f.name = (char *)(uintptr_t)name;
    f.values = vals;
    f.n_values = n_values;
    f.spikes = spikes;
    f.n_spikes = n_spikes;
    f.seq = seq;
    f.sender_time_ns = 1000000 * (int64_t)seq;
    return f;
}

/* The Inputs of the seeds: one per kind of item, a mixed one, and the rejected kinds. */
static int
make_inputs(Etrace__Input *in, Etrace__Frame *fr, Etrace__Frame **frp, Etrace__Signal *sg,
            Etrace__Signal **sgp, Etrace__Signal__Target *tg, const char **names)
{
    int n = 0;
#define INPUT(nm, nf, ns)                                                                          \
    do {                                                                                           \
        etrace__input__init(&in[n]);                                                               \
        in[n].frames = frp;                                                                        \
        in[n].n_frames = (nf);                                                                     \
        in[n].signals = sgp;                                                                       \
        in[n].n_signals = (ns);                                                                    \
        names[n++] = (nm);                                                                         \
    } while (0)
    for (int i = 0; i < 4; i++)
        frp[i] = &fr[i];
    for (int i = 0; i < 4; i++)
        sgp[i] = &sg[i];
    fr[0] = frame("sensors", 4, 0, 1);
    fr[1] = frame("ev", 0, 3, 2);
    fr[2] = frame("x", 3, 0, 3);
    fr[3] = frame("context", 4, 0, 4);
    for (int i = 0; i < 4; i++)
        etrace__signal__init(&sg[i]);
    etrace__signal__target__init(tg);
    tg->values = vals;
    tg->n_values = 2;
    sg[0].readout = "action";
    sg[0].kind_case = ETRACE__SIGNAL__KIND_TARGET;
    sg[0].target = tg;
    sg[1].readout = "cls";
    sg[1].kind_case = ETRACE__SIGNAL__KIND_CLASS_INDEX;
    sg[1].class_index = 2;
    sg[2].kind_case = ETRACE__SIGNAL__KIND_REWARD;
    sg[2].reward = 0.5f;
    sg[3].readout = "arm";
    sg[3].kind_case = ETRACE__SIGNAL__KIND_REWARD;
    sg[3].reward = -1.0f;
    INPUT("all", 4, 4);
    return n;
#undef INPUT
}

static void
seeds_input(void)
{
    Etrace__Input in[1];
    Etrace__Frame fr[4], *frp[4];
    Etrace__Signal sg[4], *sgp[4];
    Etrace__Signal__Target tg;
    const char *names[1];
    make_inputs(in, fr, frp, sg, sgp, &tg, names);
    put_msg("input", "all", &in[0].base);
    /* One of each item alone. */
    const char *fnames[4] = {"analog", "spikes", "analog-x", "analog-context"};
    for (int i = 0; i < 4; i++) {
        Etrace__Input one = ETRACE__INPUT__INIT;
        Etrace__Frame *p = &fr[i];
        one.frames = &p;
        one.n_frames = 1;
        put_msg("input", fnames[i], &one.base);
    }
    const char *snames[4] = {"target", "class", "reward", "reward-named"};
    for (int i = 0; i < 4; i++) {
        Etrace__Input one = ETRACE__INPUT__INIT;
        Etrace__Signal *p = &sg[i];
        one.signals = &p;
        one.n_signals = 1;
        put_msg("input", snames[i], &one.base);
    }
    Etrace__Input empty = ETRACE__INPUT__INIT;
    put_msg("input", "empty", &empty.base);
    /* Rejected ones: wrong size, unknown name, non-finite, spike out of range, class out of
     * range. */
    Etrace__Frame bad = frame("sensors", 3, 0, 9);
    Etrace__Frame *bp = &bad;
    Etrace__Input one = ETRACE__INPUT__INIT;
    one.frames = &bp;
    one.n_frames = 1;
    put_msg("input", "wrong-size", &one.base);
    bad = frame("nope", 4, 0, 9);
    put_msg("input", "unknown-name", &one.base);
    float nan_vals[4] = {0.0f, (float)NAN, 1.0f, (float)INFINITY};
    bad = frame("sensors", 4, 0, 9);
    bad.values = nan_vals;
    put_msg("input", "non-finite", &one.base);
    int32_t far[2] = {1, 6};
    bad = frame("ev", 0, 2, 9);
    bad.spikes = far;
    put_msg("input", "spike-range", &one.base);
    Etrace__Signal s = sg[1];
    Etrace__Signal *sp = &s;
    s.class_index = 3;
    Etrace__Input sig = ETRACE__INPUT__INIT;
    sig.signals = &sp;
    sig.n_signals = 1;
    put_msg("input", "class-range", &sig.base);
}

/* ---- checkpoints and recordings -------------------------------------------------------- */

static uint8_t *ckpt[FUZZ_N_MODELS];
static size_t ckpt_len[FUZZ_N_MODELS];

static void
seeds_checkpoint(void)
{
    char name[64];
    for (int k = 0; k < FUZZ_N_MODELS; k++) {
        ckpt[k] = fuzz_checkpoint_image(k, 20, &ckpt_len[k]);
        if (!ckpt[k]) {
            fprintf(stderr, "fuzz_seeds: no checkpoint of model %d\n", k);
            exit(1);
        }
        snprintf(name, sizeof name, "model%d", k);
        put("checkpoint", name, ckpt[k], ckpt_len[k]);
    }
    /* A fresh one (tick 0) of the first model. */
    size_t len;
    uint8_t *fresh = fuzz_checkpoint_image(0, 0, &len);
    if (!fresh)
        exit(1);
    put("checkpoint", "model0-fresh", fresh, len);
    free(fresh);
}

struct rec {
    uint8_t *buf;
    size_t len, cap;
};

static void
rec_add(struct rec *r, const Etrace__RecordEvent *ev)
{
    size_t n = etrace__record_event__get_packed_size(ev);
    if (r->len + n + 10 > r->cap) {
        r->cap = 2 * (r->len + n + 10);
        if (!(r->buf = realloc(r->buf, r->cap)))
            exit(1);
    }
    uint64_t v = n;
    while (v >= 0x80) {
        r->buf[r->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    r->buf[r->len++] = (uint8_t)v;
    etrace__record_event__pack(ev, r->buf + r->len);
    r->len += n;
}

/* A recording of model k: its snapshot, inputs at some ticks, every other kind of event,
 * and the end record. */
static void
seed_recording(int k, int with_ops)
{
    Etrace__Checkpoint *ck = etrace__checkpoint__unpack(NULL, ckpt_len[k], ckpt[k]);
    if (!ck)
        exit(1);
    uint64_t t0 = ck->scalars->tick;
    struct rec r = {0};
    Etrace__RecordEvent ev = ETRACE__RECORD_EVENT__INIT;
    ev.tick = t0;
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_SNAPSHOT;
    ev.snapshot = ck;
    rec_add(&r, &ev);
    Etrace__Input in[1];
    Etrace__Frame fr[4], *frp[4];
    Etrace__Signal sg[4], *sgp[4];
    Etrace__Signal__Target tg;
    const char *names[1];
    make_inputs(in, fr, frp, sg, sgp, &tg, names);
    /* Only the items of model k. */
    Etrace__Frame *mf[2];
    Etrace__Signal *ms[1];
    Etrace__Input mine = ETRACE__INPUT__INIT;
    mine.frames = mf;
    mine.signals = ms;
    if (k == 0) {
        mf[0] = &fr[0];
        mf[1] = &fr[1];
        ms[0] = &sg[0];
        mine.n_frames = 2;
    } else {
        mf[0] = &fr[k + 1];
        ms[0] = &sg[k];
        mine.n_frames = 1;
    }
    mine.n_signals = 1;
    for (int i = 0; i < 5; i++) {
        etrace__record_event__init(&ev);
        ev.tick = t0 + 1 + 3 * (uint64_t)i;
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_INPUT;
        ev.input = &mine;
        rec_add(&r, &ev);
    }
    uint64_t t = t0 + 20;
    if (with_ops) {
        Etrace__Reset reset = ETRACE__RESET__INIT;
        Etrace__Load load = ETRACE__LOAD__INIT;
        etrace__record_event__init(&ev);
        ev.tick = t;
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_LR;
        ev.lr = 2.0e-3;
        rec_add(&r, &ev);
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_LEARN;
        ev.learn = 1;
        rec_add(&r, &ev);
        ev.tick = t + 2;
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_RESET;
        reset.what = ETRACE__RESET__WHAT__STATES;
        ev.reset = &reset;
        rec_add(&r, &ev);
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_STALE_ZERO;
        ev.stale_zero = k == 0 ? "sensors" : k == 1 ? "x" : "context";
        rec_add(&r, &ev);
        ev.tick = t + 4;
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_DEFER_STEPS;
        ev.defer_steps = 1;
        rec_add(&r, &ev);
        ev.defer_steps = 0;
        ev.tick = t + 6;
        rec_add(&r, &ev);
        ev.tick = t + 8;
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_SWAP;
        load.model.data = (uint8_t *)(uintptr_t)fuzz_model_text[k];
        load.model.len = strlen(fuzz_model_text[k]);
        load.model_path = "swap.yaml";
        load.keep_weights = 1;
        ev.swap = &load;
        rec_add(&r, &ev);
        ev.tick = t + 10;
        ev.kind_case = ETRACE__RECORD_EVENT__KIND_RESTORE;
        ev.restore = ck;
        rec_add(&r, &ev);
        t += 12;
    }
    etrace__record_event__init(&ev);
    ev.tick = t;
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_END;
    ev.end = 10;
    rec_add(&r, &ev);
    char name[64];
    snprintf(name, sizeof name, "model%d%s", k, with_ops ? "-ops" : "");
    put("recording", name, r.buf, r.len);
    free(r.buf);
    etrace__checkpoint__free_unpacked(ck, NULL);
}

/* ---- Requests ---------------------------------------------------------------------------- */

static void
seeds_request(void)
{
    Etrace__Request rq = ETRACE__REQUEST__INIT;
    Etrace__Empty empty = ETRACE__EMPTY__INIT;
    rq.id = 7;
    static const struct {
        Etrace__Request__CommandCase c;
        const char *name;
    } plain[] = {{ETRACE__REQUEST__COMMAND_STATUS, "status"},
                 {ETRACE__REQUEST__COMMAND_STATS, "stats"},
                 {ETRACE__REQUEST__COMMAND_PAUSE, "pause"},
                 {ETRACE__REQUEST__COMMAND_RESUME, "resume"},
                 {ETRACE__REQUEST__COMMAND_EXPORT, "export"},
                 {ETRACE__REQUEST__COMMAND_SHUTDOWN, "shutdown"}};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        rq.command_case = plain[i].c;
        rq.status = &empty; /* every Empty command shares the union's pointer */
        put_msg("request", plain[i].name, &rq.base);
    }
    Etrace__Learn learn = ETRACE__LEARN__INIT;
    learn.on = 1;
    rq.command_case = ETRACE__REQUEST__COMMAND_LEARN;
    rq.learn = &learn;
    put_msg("request", "learn", &rq.base);
    Etrace__Lr lr = ETRACE__LR__INIT;
    lr.lr = 1.0e-3;
    rq.command_case = ETRACE__REQUEST__COMMAND_LR;
    rq.lr = &lr;
    put_msg("request", "lr", &rq.base);
    Etrace__Reset reset = ETRACE__RESET__INIT;
    reset.what = ETRACE__RESET__WHAT__TRACES;
    rq.command_case = ETRACE__REQUEST__COMMAND_RESET;
    rq.reset = &reset;
    put_msg("request", "reset", &rq.base);

    Etrace__Input in[1];
    Etrace__Frame fr[4], *frp[4];
    Etrace__Signal sg[4], *sgp[4];
    Etrace__Signal__Target tg;
    const char *names[1];
    make_inputs(in, fr, frp, sg, sgp, &tg, names);
    Etrace__Input mine = ETRACE__INPUT__INIT;
    Etrace__Frame *mf[2] = {&fr[0], &fr[1]};
    Etrace__Signal *ms[1] = {&sg[0]};
    mine.frames = mf;
    mine.n_frames = 2;
    mine.signals = ms;
    mine.n_signals = 1;
    Etrace__Step step = ETRACE__STEP__INIT;
    step.input = &mine;
    rq.command_case = ETRACE__REQUEST__COMMAND_STEP;
    rq.step = &step;
    put_msg("request", "step", &rq.base);
    step.input = NULL;
    step.reset_before = 1;
    put_msg("request", "step-empty", &rq.base);

    Etrace__Load load = ETRACE__LOAD__INIT;
    load.model.data = (uint8_t *)(uintptr_t)fuzz_model_text[0];
    load.model.len = strlen(fuzz_model_text[0]);
    load.model_path = "models/fz-reg.yaml";
    load.keep_weights = 1;
    rq.command_case = ETRACE__REQUEST__COMMAND_LOAD;
    rq.load = &load;
    put_msg("request", "load", &rq.base);
    /* A model that reads a .npy file the request carries. */
    static const char npy_model[] = "name: fz-npy\n"
                                    "dt: 1.0e-3\n"
                                    "inputs:\n"
                                    "  - {name: x, size: 2}\n"
                                    "cells:\n"
                                    "  - {name: out, model: linear, size: 2}\n"
                                    "projections:\n"
                                    "  - {name: w, from: x, to: out, weight: {file: w.npy}}\n"
                                    "readouts:\n"
                                    "  - {name: y, cell: out}\n";
    static const uint8_t npy[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': "
                                 "False, 'shape': (2, 2), }                                   "
                                 "                                            \n"
                                 "\x00\x00\x80\x3f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80"
                                 "\x3f";
    Etrace__Load__File file = ETRACE__LOAD__FILE__INIT, *filep = &file;
    file.path = "w.npy";
    file.data.data = (uint8_t *)(uintptr_t)npy;
    file.data.len = sizeof npy - 1;
    load.model.data = (uint8_t *)(uintptr_t)npy_model;
    load.model.len = strlen(npy_model);
    load.files = &filep;
    load.n_files = 1;
    put_msg("request", "load-files", &rq.base);

    Etrace__Name name = ETRACE__NAME__INIT;
    name.name = "before-swap";
    rq.command_case = ETRACE__REQUEST__COMMAND_CHECKPOINT;
    rq.checkpoint = &name;
    put_msg("request", "checkpoint", &rq.base);
    rq.command_case = ETRACE__REQUEST__COMMAND_RESTORE;
    rq.restore = &name;
    put_msg("request", "restore", &rq.base);
    Etrace__Record record = ETRACE__RECORD__INIT;
    record.start = 1;
    record.name = "session.rec";
    rq.command_case = ETRACE__REQUEST__COMMAND_RECORD;
    rq.record = &record;
    put_msg("request", "record", &rq.base);

    /* Replay: each kind of event. */
    Etrace__RecordEvent ev = ETRACE__RECORD_EVENT__INIT;
    rq.command_case = ETRACE__REQUEST__COMMAND_REPLAY;
    rq.replay = &ev;
    ev.tick = 5;
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_INPUT;
    ev.input = &mine;
    put_msg("request", "replay-input", &rq.base);
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_LR;
    ev.lr = 3.0e-3;
    put_msg("request", "replay-lr", &rq.base);
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_LEARN;
    ev.learn = 2;
    put_msg("request", "replay-learn", &rq.base);
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_RESET;
    ev.reset = &reset;
    put_msg("request", "replay-reset", &rq.base);
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_STALE_ZERO;
    ev.stale_zero = "sensors";
    put_msg("request", "replay-stale-zero", &rq.base);
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_DEFER_STEPS;
    ev.defer_steps = 1;
    put_msg("request", "replay-defer", &rq.base);
    load.model.data = (uint8_t *)(uintptr_t)fuzz_model_text[2];
    load.model.len = strlen(fuzz_model_text[2]);
    load.files = NULL;
    load.n_files = 0;
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_SWAP;
    ev.swap = &load;
    put_msg("request", "replay-swap", &rq.base);
    Etrace__Checkpoint *ck = etrace__checkpoint__unpack(NULL, ckpt_len[1], ckpt[1]);
    if (!ck)
        exit(1);
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_SNAPSHOT;
    ev.snapshot = ck;
    put_msg("request", "replay-snapshot", &rq.base);
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_RESTORE;
    ev.restore = ck;
    put_msg("request", "replay-restore", &rq.base);
    etrace__checkpoint__free_unpacked(ck, NULL);
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_END;
    ev.end = 3;
    put_msg("request", "replay-end", &rq.base);
}

/* ---- config and key files ----------------------------------------------------------------- */

static void
seeds_config(void)
{
    put_text("config", "minimal", "model: model.yaml\n");
    put_text("config", "full",
             "model: models/default.yaml\n"
             "clock: lockstep\n"
             "period_us: 1000\n"
             "stats_period_ms: 500\n"
             "endpoints:\n"
             "  input: tcp://127.0.0.1:5555\n"
             "  output: ipc:///run/etraced/output\n"
             "  control: ipc:///run/etraced/control\n"
             "  stats: ipc:///run/etraced/stats\n"
             "max_msg_bytes: 1048576\n"
             "limits:\n"
             "  input_bytes: 65536\n"
             "  control_bytes: 1048576\n"
             "checkpoint:\n"
             "  dir: /var/lib/etraced/ckpt\n"
             "  every_s: 60\n"
             "  keep: 5\n"
             "  resume: true\n"
             "snapshot_slice_bytes: 65536\n"
             "realtime:\n"
             "  priority: 0\n"
             "  cpu: -1\n"
             "  mlockall: false\n"
             "curve:\n"
             "  server_secret_file: server.key\n"
             "  allow:\n"
             "    - \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n"
             "inputs:\n"
             "  sensors: {max_age_ms: 50, on_stale: zero}\n"
             "  ev: {max_age_ms: 0, on_stale: hold}\n");
    put_text("config", "timer", "model: m.yaml\nclock: timer\nperiod_us: 500\n");
    put_text("config", "bad-key", "model: m.yaml\nno_such_key: 1\n");
    put_text("config", "bad-bound", "model: m.yaml\nperiod_us: -5\n");
    put_text("config", "anchors", "a: &x {max_age_ms: 5}\ninputs: {s: *x, t: *x}\n");
}

static void
seeds_keyfile(void)
{
    char pub[41], sec[41], text[256];
    if (zmq_curve_keypair(pub, sec)) {
        fprintf(stderr, "fuzz_seeds: no CURVE in this libzmq\n");
        exit(1);
    }
    /* The layout `etracectl keygen` writes, and a bare key. */
    snprintf(text, sizeof text, "public: %s\nsecret: %s\n", pub, sec);
    put_text("keyfile", "keygen", text);
    snprintf(text, sizeof text, "%s\n", sec);
    put_text("keyfile", "bare", text);
    put_text("keyfile", "short", "secret: abc\n");
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds DIR\n");
        return 64;
    }
    root = argv[1];
    mkdir(root, 0755);
    engine_set_fp_env();
    seeds_input();
    seeds_checkpoint();
    for (int k = 0; k < FUZZ_N_MODELS; k++) {
        seed_recording(k, 0);
        seed_recording(k, 1);
    }
    seeds_request();
    seeds_config();
    seeds_keyfile();
    for (int k = 0; k < FUZZ_N_MODELS; k++)
        free(ckpt[k]);
    printf("fuzz_seeds: %d files in %s\n", n_written, root);
    return 0;
}
