/* A recording as data (see recording.h). Every event comes from offline_replay's hooks:
 * this file never parses a recording itself. */
#include "recording.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine.h"
#include "etrace.pb-c.h"
#include "mcap.h"
#include "npy.h"
#include "offline.h"

/* The serialized FileDescriptorSet of proto/etrace.proto (generated at build time). */
extern const unsigned char etrace_desc_set[];
extern const size_t etrace_desc_set_len;

const char recording_help[] =
    "usage: etraced recording info FILE\n"
    "       etraced recording export FILE --out DIR [--format npy|mcap]\n"
    "  info: the model, ticks, duration (ticks x the model's dt) and events by kind.\n"
    "  export npy (default): DIR/inputs/NAME.npy ([n, size] float32; spikes inputs: the\n"
    "    spike indices, int32 [n]), DIR/targets/READOUT.npy ([n, size] float32; class\n"
    "    targets int32 [n]), DIR/rewards.npy (float32 [n]), each with a .ticks.npy (int64\n"
    "    [n]) beside it: the tick each row was applied before.\n"
    "  export mcap: DIR/recording.mcap, protobuf messages with their schemas embedded:\n"
    "    /input/NAME (etrace.Frame), /target/READOUT and /reward (etrace.Signal), and\n"
    "    /output/READOUT (etrace.Output, computed by replaying); log time = tick x dt.\n"
    "exit codes: 0 ok, 1 failure, 64 usage\n";

enum stream_kind { ST_ANALOG, ST_SPIKES, ST_TARGET, ST_CLASS, ST_REWARD, ST_OUTPUT };
enum { MAX_STREAMS = 256, N_EVENT_KINDS = 16 };

/* One exported stream: rows of `width` values with the tick of each. */
struct stream {
    char name[128];
    enum stream_kind kind;
    int width;        /* values per row (1 for spikes, class, reward) */
    int64_t n, cap;   /* rows */
    int64_t *ticks;   /* [cap] */
    float *f32;       /* [cap * width] analog, target, reward */
    int32_t *i32;     /* [cap] spikes index, class */
    uint16_t channel; /* mcap channel, 0 until announced */
    uint32_t seq;     /* mcap messages written */
};

struct rec {
    enum { MODE_INFO, MODE_NPY, MODE_MCAP } mode;
    const char *file;
    char model_name[256];
    uint64_t model_hash;
    uint64_t first_tick, last_tick;
    int64_t dt_ns;
    int has_end;
    int64_t n_events;
    int64_t by_kind[N_EVENT_KINDS];
    struct stream streams[MAX_STREAMS];
    int n_streams;
    struct mcap mc;
    uint16_t next_channel;
    float *scratch; /* an output's values as float */
    size_t scratch_n;
};

static const char *const kind_names[N_EVENT_KINDS] = {
    [ETRACE__RECORD_EVENT__KIND_SNAPSHOT] = "snapshot",
    [ETRACE__RECORD_EVENT__KIND_INPUT] = "input",
    [ETRACE__RECORD_EVENT__KIND_LR] = "lr",
    [ETRACE__RECORD_EVENT__KIND_LEARN] = "learn",
    [ETRACE__RECORD_EVENT__KIND_RESET] = "reset",
    [ETRACE__RECORD_EVENT__KIND_SWAP] = "swap",
    [ETRACE__RECORD_EVENT__KIND_RESTORE] = "restore",
    [ETRACE__RECORD_EVENT__KIND_STALE_ZERO] = "stale_zero",
    [ETRACE__RECORD_EVENT__KIND_DEFER_STEPS] = "defer_steps",
    [ETRACE__RECORD_EVENT__KIND_END] = "end",
};

static const char *const topic_prefix[] = {"/input/",  "/input/", "/target/",
                                           "/target/", "/reward", "/output/"};

/* The stream (name, kind), made on first use. NULL when there are too many or out of
 * memory (reported). */
static struct stream *
stream_get(struct rec *r, const char *name, enum stream_kind kind, int width)
{
    int is_signal = kind == ST_TARGET || kind == ST_CLASS;
    for (int i = 0; i < r->n_streams; i++) {
        struct stream *s = &r->streams[i];
        int s_signal = s->kind == ST_TARGET || s->kind == ST_CLASS;
        if (strcmp(s->name, name) || (s->kind == ST_OUTPUT) != (kind == ST_OUTPUT) ||
            s_signal != is_signal)
            continue;
        if (s->kind != kind || s->width != width) {
            fprintf(stderr,
                    "etraced recording: %s: '%s' changes its kind or size (%d to %d values) "
                    "within the recording: not exportable as one array\n",
                    r->file, name, s->width, width);
            return NULL;
        }
        return s;
    }
    if (r->n_streams == MAX_STREAMS) {
        fprintf(stderr, "etraced recording: %s: more than %d streams\n", r->file, MAX_STREAMS);
        return NULL;
    }
    struct stream *s = &r->streams[r->n_streams++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->kind = kind;
    s->width = width;
    return s;
}

/* Appends one row (tick, values f[width] or index i). */
static int
stream_add(struct stream *s, uint64_t tick, const float *f, int32_t i)
{
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 1024;
        int64_t *t = realloc(s->ticks, (size_t)cap * sizeof(*t));
        if (!t)
            return -1;
        s->ticks = t;
        if (s->kind == ST_SPIKES || s->kind == ST_CLASS) {
            int32_t *v = realloc(s->i32, (size_t)cap * sizeof(*v));
            if (!v)
                return -1;
            s->i32 = v;
        } else {
            float *v = realloc(s->f32, (size_t)cap * (size_t)s->width * sizeof(*v));
            if (!v)
                return -1;
            s->f32 = v;
        }
        s->cap = cap;
    }
    s->ticks[s->n] = (int64_t)tick;
    if (s->kind == ST_SPIKES || s->kind == ST_CLASS)
        s->i32[s->n] = i;
    else
        memcpy(s->f32 + s->n * s->width, f, (size_t)s->width * sizeof(float));
    s->n++;
    return 0;
}

/* MCAP: announces the stream's channel on first use and writes one message. */
static void
stream_publish(struct rec *r, struct stream *s, uint64_t tick, const ProtobufCMessage *msg)
{
    if (!s->channel) {
        char topic[160];
        uint16_t schema = s->kind == ST_OUTPUT                           ? 3
                          : s->kind == ST_ANALOG || s->kind == ST_SPIKES ? 1
                                                                         : 2;
        snprintf(topic, sizeof(topic), "%s%s", topic_prefix[s->kind],
                 s->kind == ST_REWARD ? "" : s->name);
        s->channel = ++r->next_channel;
        mcap_channel(&r->mc, s->channel, schema, topic, "protobuf");
    }
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t small[4096], *buf = len <= sizeof(small) ? small : malloc(len);
    if (!buf) {
        r->mc.err = 1;
        return;
    }
    protobuf_c_message_pack(msg, buf);
    uint64_t t_ns = tick * (uint64_t)r->dt_ns;
    mcap_message(&r->mc, s->channel, s->seq++, t_ns, t_ns, buf, len);
    if (buf != small)
        free(buf);
}

static int
on_input(struct rec *r, uint64_t tick, const Etrace__Input *in, const struct engine *eng)
{
    const struct model_desc *d = eng ? engine_model(eng) : NULL;
    for (size_t k = 0; k < in->n_frames; k++) {
        const Etrace__Frame *f = in->frames[k];
        int i = d ? model_find_input(d, f->name) : -1;
        int spikes = i >= 0 ? d->inputs[i].kind == MODEL_INPUT_SPIKES : f->n_spikes > 0;
        struct stream *s =
            stream_get(r, f->name, spikes ? ST_SPIKES : ST_ANALOG, spikes ? 1 : (int)f->n_values);
        if (!s)
            return -1;
        if (r->mode == MODE_MCAP) {
            stream_publish(r, s, tick, &f->base);
            continue;
        }
        if (spikes) {
            for (size_t j = 0; j < f->n_spikes; j++)
                if (stream_add(s, tick, NULL, f->spikes[j]))
                    return -1;
        } else if (stream_add(s, tick, f->values, 0)) {
            return -1;
        }
    }
    for (size_t k = 0; k < in->n_signals; k++) {
        const Etrace__Signal *g = in->signals[k];
        struct stream *s;
        if (g->kind_case == ETRACE__SIGNAL__KIND_REWARD)
            s = stream_get(r, "reward", ST_REWARD, 1);
        else if (g->kind_case == ETRACE__SIGNAL__KIND_CLASS_INDEX)
            s = stream_get(r, g->readout, ST_CLASS, 1);
        else if (g->kind_case == ETRACE__SIGNAL__KIND_TARGET)
            s = stream_get(r, g->readout, ST_TARGET, (int)g->target->n_values);
        else
            continue;
        if (!s)
            return -1;
        if (r->mode == MODE_MCAP) {
            stream_publish(r, s, tick, &g->base);
            continue;
        }
        int rc = 0;
        if (g->kind_case == ETRACE__SIGNAL__KIND_REWARD)
            rc = stream_add(s, tick, &g->reward, 0);
        else if (g->kind_case == ETRACE__SIGNAL__KIND_CLASS_INDEX)
            rc = stream_add(s, tick, NULL, g->class_index);
        else
            rc = stream_add(s, tick, g->target->values, 0);
        if (rc)
            return -1;
    }
    return 0;
}

static int
on_event(void *ctx, const struct Etrace__RecordEvent *ev, struct engine *eng)
{
    struct rec *r = ctx;
    if ((unsigned)ev->kind_case < N_EVENT_KINDS)
        r->by_kind[ev->kind_case]++;
    r->n_events++;
    if (!eng && ev->kind_case == ETRACE__RECORD_EVENT__KIND_SNAPSHOT) {
        snprintf(r->model_name, sizeof(r->model_name), "%s",
                 ev->snapshot->model_name ? ev->snapshot->model_name : "");
        r->model_hash = ev->snapshot->model_hash;
        r->first_tick = r->last_tick = ev->tick;
        return 0;
    }
    if (eng && !r->dt_ns)
        r->dt_ns = (int64_t)llround(engine_model(eng)->dt * 1e9);
    if (ev->tick > r->last_tick)
        r->last_tick = ev->tick;
    if (ev->kind_case == ETRACE__RECORD_EVENT__KIND_END)
        r->has_end = 1;
    if (ev->kind_case == ETRACE__RECORD_EVENT__KIND_INPUT && r->mode != MODE_INFO)
        return on_input(r, ev->tick, ev->input, eng);
    return 0;
}

/* MCAP: each readout's Output of the tick just replayed. */
static int
on_tick(void *ctx, struct engine *eng)
{
    struct rec *r = ctx;
    const struct model_desc *d = engine_model(eng);
    uint64_t tick = engine_tick_count(eng) - 1; /* the tick that produced the outputs */
    if (!r->dt_ns)
        r->dt_ns = (int64_t)llround(d->dt * 1e9);
    for (int k = 0; k < engine_n_readouts(eng); k++) {
        size_t n = (size_t)engine_readout_size(eng, k);
        if (n > r->scratch_n) {
            float *nb = realloc(r->scratch, n * sizeof(float));
            if (!nb)
                return -1;
            r->scratch = nb;
            r->scratch_n = n;
        }
        const real *v = engine_readout_values(eng, k);
        for (size_t j = 0; j < n; j++)
            r->scratch[j] = (float)v[j];
        struct stream *s = stream_get(r, d->readouts[k].name, ST_OUTPUT, (int)n);
        if (!s)
            return -1;
        Etrace__Output o = ETRACE__OUTPUT__INIT;
        o.tick = tick;
        o.period_index = tick;
        o.readout = d->readouts[k].name;
        o.values = r->scratch;
        o.n_values = n;
        o.valid = 1;
        o.loss = engine_last_loss(eng);
        stream_publish(r, s, tick, &o.base);
    }
    return r->mc.err ? -1 : 0;
}

static int
make_dir(const char *path)
{
    if (mkdir(path, 0755) && errno != EEXIST) {
        fprintf(stderr, "etraced recording: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int
write_array(const char *path, enum npy_dtype t, int ndim, const int64_t *shape, const void *data)
{
    struct err e;
    err_clear(&e);
    if (npy_write_file(path, t, ndim, shape, data ? data : "", &e)) {
        fprintf(stderr, "etraced recording: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int
write_npy_streams(const struct rec *r, const char *dir)
{
    char path[4096];
    if (make_dir(dir))
        return -1;
    for (int i = 0; i < r->n_streams; i++) {
        const struct stream *s = &r->streams[i];
        const char *sub = s->kind == ST_ANALOG || s->kind == ST_SPIKES ? "inputs"
                          : s->kind == ST_REWARD                       ? NULL
                                                                       : "targets";
        char base[3800];
        if (sub) {
            snprintf(path, sizeof(path), "%s/%s", dir, sub);
            if (make_dir(path))
                return -1;
            snprintf(base, sizeof(base), "%s/%s/%s", dir, sub, s->name);
        } else {
            snprintf(base, sizeof(base), "%s/rewards", dir);
        }
        int64_t shape[2] = {s->n, s->width};
        int is_int = s->kind == ST_SPIKES || s->kind == ST_CLASS;
        snprintf(path, sizeof(path), "%s.npy", base);
        if (write_array(path, is_int ? NPY_I32 : NPY_F32, is_int || s->kind == ST_REWARD ? 1 : 2,
                        shape, is_int ? (const void *)s->i32 : (const void *)s->f32))
            return -1;
        snprintf(path, sizeof(path), "%s.ticks.npy", base);
        if (write_array(path, NPY_I64, 1, shape, s->ticks))
            return -1;
        printf("  %s.npy: %lld rows\n", base, (long long)s->n);
    }
    return 0;
}

static void
rec_fini(struct rec *r)
{
    for (int i = 0; i < r->n_streams; i++) {
        free(r->streams[i].ticks);
        free(r->streams[i].f32);
        free(r->streams[i].i32);
    }
    free(r->scratch);
}

static void
print_info(const struct rec *r)
{
    uint64_t ticks = r->last_tick - r->first_tick;
    printf("recording %s\n", r->file);
    printf("  model      %s (hash %016" PRIx64 ")\n", r->model_name, r->model_hash);
    printf("  ticks      %" PRIu64 " to %" PRIu64 " (%" PRIu64 " ticks)%s\n", r->first_tick,
           r->last_tick, ticks, r->has_end ? "" : ", no end record");
    printf("  duration   %.6g s (ticks x dt %.6g s)\n", (double)ticks * (double)r->dt_ns * 1e-9,
           (double)r->dt_ns * 1e-9);
    printf("  events     %lld:", (long long)r->n_events);
    for (int k = 0; k < N_EVENT_KINDS; k++)
        if (r->by_kind[k] && kind_names[k])
            printf(" %s %lld", kind_names[k], (long long)r->by_kind[k]);
    printf("\n");
}

static int
usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "etraced recording: %s%s%s%s (etraced recording --help)\n", what,
            arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
    return 64;
}

/* recording_main on r (zeroed by the caller, which frees what it holds). */
static int
recording_run(struct rec *r, int argc, char **argv)
{
    const char *out = NULL, *format = "npy";
    struct offline_replay_hooks h = {.ctx = r, .on_event = on_event};
    char path[4096];
    int rc = 1;

    if (argc < 2)
        return usage_error("give info or export", NULL);
    if (!strcmp(argv[1], "info")) {
        if (argc != 3 || argv[2][0] == '-')
            return usage_error("info takes one FILE", NULL);
        r->mode = MODE_INFO;
        h.no_ticks = 1;
    } else if (!strcmp(argv[1], "export")) {
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--out") && i + 1 < argc)
                out = argv[++i];
            else if (!strcmp(argv[i], "--format") && i + 1 < argc)
                format = argv[++i];
            else if (argv[i][0] != '-' && !r->file)
                r->file = argv[i];
            else
                return usage_error("unknown or incomplete argument", argv[i]);
        }
        if (!r->file || !out)
            return usage_error("export needs FILE and --out DIR", NULL);
        if (!strcmp(format, "npy")) {
            r->mode = MODE_NPY;
            h.no_ticks = 1;
        } else if (!strcmp(format, "mcap")) {
            r->mode = MODE_MCAP;
            h.on_tick = on_tick;
        } else {
            return usage_error("--format is npy or mcap, not", format);
        }
    } else {
        return usage_error("unknown subcommand", argv[1]);
    }
    if (r->mode == MODE_INFO)
        r->file = argv[2];
    if (r->mode == MODE_MCAP) {
        if (make_dir(out))
            return 1;
        snprintf(path, sizeof(path), "%s/recording.mcap", out);
        if (mcap_open(&r->mc, path, "")) {
            fprintf(stderr, "etraced recording: cannot create %s: %s\n", path, strerror(errno));
            return 1;
        }
        static const char *const types[3] = {"etrace.Frame", "etrace.Signal", "etrace.Output"};
        for (uint16_t k = 0; k < 3; k++)
            mcap_schema(&r->mc, (uint16_t)(k + 1), types[k], "protobuf", etrace_desc_set,
                        etrace_desc_set_len);
    }
    rc = offline_replay(r->file, NULL, &h);
    if (r->mode == MODE_MCAP && mcap_close(&r->mc)) {
        fprintf(stderr, "etraced recording: writing %s: %s\n", path, strerror(errno));
        rc = 1;
    }
    if (rc == 0 && r->mode == MODE_INFO)
        print_info(r);
    if (rc == 0 && r->mode == MODE_NPY) {
        printf("etraced recording: %s -> %s/\n", r->file, out);
        rc = write_npy_streams(r, out) ? 1 : 0;
    }
    if (rc == 0 && r->mode == MODE_MCAP) {
        int64_t n = 0;
        for (int i = 0; i < r->n_streams; i++)
            n += r->streams[i].seq;
        printf("etraced recording: %s -> %s: %d channels, %lld messages\n", r->file, path,
               r->n_streams, (long long)n);
    }
    return rc;
}

int
recording_main(int argc, char **argv)
{
    struct rec *r = calloc(1, sizeof(*r)); /* the stream table is large: off the stack */
    if (!r) {
        fprintf(stderr, "etraced recording: out of memory\n");
        return 1;
    }
    int rc = recording_run(r, argc, argv);
    rec_fini(r);
    free(r);
    return rc;
}
