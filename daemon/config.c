/* The settings table and its YAML loader (see config.h). libcyaml loads the values into
 * a struct of pointers (NULL: not given, so the row's default applies); a libyaml pass
 * over the same text checks every key and scalar type first, so that each error names
 * its line (libcyaml reads "1.5" as the int 1, and names a mapping's start rather than
 * an unknown key's line). */
#include "config.h"

#include <cyaml/cyaml.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "security.h"

/* ---- the file as libcyaml loads it: a pointer per setting --------------------------- */

struct file_endpoints {
    char *input, *output, *control, *stats;
};
struct file_limits {
    int64_t *input_bytes, *control_bytes;
    int64_t *connections, *subscribers, *subscriber_queue;
};
struct file_checkpoint {
    char *dir;
    int64_t *every_s, *keep;
    bool *resume;
};
struct file_realtime {
    int64_t *priority, *cpu;
    bool *mlockall;
};
struct file_curve {
    char *server_secret_file;
    char **allow;
    unsigned allow_count;
};
struct file_security {
    bool *allow_plaintext_tcp;
    char *socket_group;
};
struct file_outputs {
    int64_t *publish_every_us;
};
struct file_engine {
    int64_t *threads;
};
struct file_cfg {
    char *model;
    char *clock;
    int64_t *period_us;
    int64_t *stats_period_ms;
    struct file_endpoints endpoints;
    int64_t *max_msg_bytes;
    struct file_limits limits;
    struct file_checkpoint checkpoint;
    int64_t *snapshot_slice_bytes;
    struct file_realtime realtime;
    struct file_curve curve;
    struct file_security security;
    struct file_outputs outputs;
    struct file_engine engine;
};

#define OPT CYAML_FLAG_OPTIONAL
#define OPTP (CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER)

static const cyaml_schema_value_t str_ptr = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED)};

static const cyaml_schema_field_t endpoints_fields[] = {
    CYAML_FIELD_STRING_PTR("input", OPTP, struct file_endpoints, input, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("output", OPTP, struct file_endpoints, output, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("control", OPTP, struct file_endpoints, control, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("stats", OPTP, struct file_endpoints, stats, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};
static const cyaml_schema_field_t limits_fields[] = {
    CYAML_FIELD_INT_PTR("input_bytes", OPTP, struct file_limits, input_bytes),
    CYAML_FIELD_INT_PTR("control_bytes", OPTP, struct file_limits, control_bytes),
    CYAML_FIELD_INT_PTR("connections", OPTP, struct file_limits, connections),
    CYAML_FIELD_INT_PTR("subscribers", OPTP, struct file_limits, subscribers),
    CYAML_FIELD_INT_PTR("subscriber_queue", OPTP, struct file_limits, subscriber_queue),
    CYAML_FIELD_END,
};
static const cyaml_schema_field_t checkpoint_fields[] = {
    CYAML_FIELD_STRING_PTR("dir", OPTP, struct file_checkpoint, dir, 0, CYAML_UNLIMITED),
    CYAML_FIELD_INT_PTR("every_s", OPTP, struct file_checkpoint, every_s),
    CYAML_FIELD_INT_PTR("keep", OPTP, struct file_checkpoint, keep),
    CYAML_FIELD_BOOL_PTR("resume", OPTP, struct file_checkpoint, resume),
    CYAML_FIELD_END,
};
static const cyaml_schema_field_t realtime_fields[] = {
    CYAML_FIELD_INT_PTR("priority", OPTP, struct file_realtime, priority),
    CYAML_FIELD_INT_PTR("cpu", OPTP, struct file_realtime, cpu),
    CYAML_FIELD_BOOL_PTR("mlockall", OPTP, struct file_realtime, mlockall),
    CYAML_FIELD_END,
};
static const cyaml_schema_field_t curve_fields[] = {
    CYAML_FIELD_STRING_PTR("server_secret_file", OPTP, struct file_curve, server_secret_file, 0,
                           CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("allow", OPTP, struct file_curve, allow, &str_ptr, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};
static const cyaml_schema_field_t security_fields[] = {
    CYAML_FIELD_BOOL_PTR("allow_plaintext_tcp", OPTP, struct file_security, allow_plaintext_tcp),
    CYAML_FIELD_STRING_PTR("socket_group", OPTP, struct file_security, socket_group, 0,
                           CYAML_UNLIMITED),
    CYAML_FIELD_END,
};
static const cyaml_schema_field_t outputs_fields[] = {
    CYAML_FIELD_INT_PTR("publish_every_us", OPTP, struct file_outputs, publish_every_us),
    CYAML_FIELD_END,
};
static const cyaml_schema_field_t engine_fields[] = {
    CYAML_FIELD_INT_PTR("threads", OPTP, struct file_engine, threads),
    CYAML_FIELD_END,
};
static const cyaml_schema_field_t top_fields[] = {
    CYAML_FIELD_STRING_PTR("model", OPTP, struct file_cfg, model, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("clock", OPTP, struct file_cfg, clock, 0, CYAML_UNLIMITED),
    CYAML_FIELD_INT_PTR("period_us", OPTP, struct file_cfg, period_us),
    CYAML_FIELD_INT_PTR("stats_period_ms", OPTP, struct file_cfg, stats_period_ms),
    CYAML_FIELD_MAPPING("endpoints", OPT, struct file_cfg, endpoints, endpoints_fields),
    CYAML_FIELD_INT_PTR("max_msg_bytes", OPTP, struct file_cfg, max_msg_bytes),
    CYAML_FIELD_MAPPING("limits", OPT, struct file_cfg, limits, limits_fields),
    CYAML_FIELD_MAPPING("checkpoint", OPT, struct file_cfg, checkpoint, checkpoint_fields),
    CYAML_FIELD_INT_PTR("snapshot_slice_bytes", OPTP, struct file_cfg, snapshot_slice_bytes),
    CYAML_FIELD_MAPPING("realtime", OPT, struct file_cfg, realtime, realtime_fields),
    CYAML_FIELD_MAPPING("curve", OPT, struct file_cfg, curve, curve_fields),
    CYAML_FIELD_MAPPING("security", OPT, struct file_cfg, security, security_fields),
    CYAML_FIELD_MAPPING("outputs", OPT, struct file_cfg, outputs, outputs_fields),
    CYAML_FIELD_MAPPING("engine", OPT, struct file_cfg, engine, engine_fields),
    CYAML_FIELD_IGNORE("inputs", OPT), /* a map keyed by input name: read below */
    CYAML_FIELD_END,
};
static const cyaml_schema_value_t top_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct file_cfg, top_fields)};

/* ---- the table ------------------------------------------------------------------------ */

static const char *const clock_names[] = {"timer", "lockstep", NULL};

#define KIB 1024LL
#define MIB (1024LL * 1024LL)
#define GIB (1024LL * 1024LL * 1024LL)
static const struct config_row rows[] = {
#define R_(name, type, def, lo, hi, reload, field, ffield, names, doc)                             \
    {                                                                                              \
        name, type, def, lo, hi, reload, offsetof(struct config, field),                           \
            offsetof(struct file_cfg, ffield), names, doc                                          \
    }
    R_("model", CONFIG_STR, 0, 0, 0, 0, model, model, NULL,
       "model file, relative to this file's directory (default: --model)"),
    R_("clock", CONFIG_ENUM, CONFIG_CLOCK_TIMER, 0, 0, 0, clock, clock, clock_names,
       "timer: tick every period; lockstep: one tick per Step request"),
    R_("period_us", CONFIG_INT, 0, 10, 10000000, 0, period_us, period_us, NULL,
       "tick period in microseconds (default: the model's dt)"),
    R_("stats_period_ms", CONFIG_INT, 1000, 10, 3600000, 1, stats_period_ms, stats_period_ms, NULL,
       "Stats published every ... milliseconds"),
    R_("endpoints.input", CONFIG_STR, 0, 0, 0, 0, endpoints[CONFIG_EP_INPUT], endpoints.input, NULL,
       "PULL socket for Input (default ipc://RUN/input)"),
    R_("endpoints.output", CONFIG_STR, 0, 0, 0, 0, endpoints[CONFIG_EP_OUTPUT], endpoints.output,
       NULL, "PUB socket for [readout][Output] (default ipc://RUN/output)"),
    R_("endpoints.control", CONFIG_STR, 0, 0, 0, 0, endpoints[CONFIG_EP_CONTROL], endpoints.control,
       NULL, "ROUTER socket for Request/Reply (default ipc://RUN/control)"),
    R_("endpoints.stats", CONFIG_STR, 0, 0, 0, 0, endpoints[CONFIG_EP_STATS], endpoints.stats, NULL,
       "PUB socket for [\"stats\"][Stats] (default ipc://RUN/stats)"),
    R_("max_msg_bytes", CONFIG_INT, 512 * MIB, 4096, INT64_MAX, 0, max_msg_bytes, max_msg_bytes,
       NULL, "ZMQ_MAXMSGSIZE: a bigger message drops the connection"),
    R_("limits.input_bytes", CONFIG_INT, MIB, 64, INT64_MAX, 1, limit_input_bytes,
       limits.input_bytes, NULL, "largest Input accepted; bigger ones count `oversized`"),
    R_("limits.control_bytes", CONFIG_INT, 256 * MIB, 64, INT64_MAX, 1, limit_control_bytes,
       limits.control_bytes, NULL, "largest Request accepted (a load carries weights)"),
    R_("limits.connections", CONFIG_INT, 256, 1, 1000000, 1, limit_connections, limits.connections,
       NULL, "connections kept per input/control endpoint; more are closed and counted"),
    R_("limits.subscribers", CONFIG_INT, 64, 1, 1000000, 1, limit_subscribers, limits.subscribers,
       NULL, "subscribers kept per output/stats endpoint; more are closed and counted"),
    R_("limits.subscriber_queue", CONFIG_INT, 1000, 1, 1000000, 0, limit_subscriber_queue,
       limits.subscriber_queue, NULL, "messages queued per subscriber before PUB drops them"),
    R_("checkpoint.dir", CONFIG_STR, 0, 0, 0, 0, checkpoint_dir, checkpoint.dir, NULL,
       "checkpoint directory (default: the state directory)"),
    R_("checkpoint.every_s", CONFIG_INT, 0, 0, 86400, 1, checkpoint_every_s, checkpoint.every_s,
       NULL, "periodic checkpoints every ... seconds (0: off)"),
    R_("checkpoint.keep", CONFIG_INT, 3, 1, 1000, 1, checkpoint_keep, checkpoint.keep, NULL,
       "the newest ... checkpoints are kept"),
    R_("checkpoint.resume", CONFIG_BOOL, 0, 0, 1, 0, checkpoint_resume, checkpoint.resume, NULL,
       "start from the newest whole checkpoint"),
    R_("snapshot_slice_bytes", CONFIG_INT, MIB, 4 * KIB, GIB, 1, snapshot_slice_bytes,
       snapshot_slice_bytes, NULL,
       "bytes of weights copied per tick for a snapshot, and read for the stats norms"),
    R_("realtime.priority", CONFIG_INT, 0, 0, 99, 0, rt_priority, realtime.priority, NULL,
       "SCHED_FIFO priority of the tick thread (0: off)"),
    R_("realtime.cpu", CONFIG_INT, -1, -1, 4095, 0, rt_cpu, realtime.cpu, NULL,
       "CPU of the tick thread (-1: the last CPU if priority > 0)"),
    R_("realtime.mlockall", CONFIG_BOOL, 0, 0, 1, 0, rt_mlockall, realtime.mlockall, NULL,
       "lock all memory if RLIMIT_MEMLOCK >= 2x the resident estimate"),
    R_("curve.server_secret_file", CONFIG_STR, 0, 0, 0, 0, curve_server_secret_file,
       curve.server_secret_file, NULL, "CURVE server secret key file (default: no CURVE)"),
    R_("curve.allow", CONFIG_STRLIST, 0, 0, 0, 1, curve_allow, curve.allow, NULL,
       "Z85 public keys of the clients allowed"),
    R_("security.allow_plaintext_tcp", CONFIG_BOOL, 0, 0, 1, 0, security_allow_plaintext_tcp,
       security.allow_plaintext_tcp, NULL,
       "allow tcp endpoints without CURVE (anyone who reaches the port has full control)"),
    R_("security.socket_group", CONFIG_STR, 0, 0, 0, 0, security_socket_group,
       security.socket_group, NULL,
       "group whose members may use the ipc sockets (sockets 0660, directory 0750)"),
    R_("outputs.publish_every_us", CONFIG_INT, 1000, 0, 100000, 0, publish_every_us,
       outputs.publish_every_us, NULL,
       "timer: outputs wait at most this long to be published in a batch (0: every tick)"),
    R_("engine.threads", CONFIG_INT, 1, 1, 64, 0, engine_threads, engine.threads, NULL,
       "tick threads: the tick thread and threads - 1 workers for big models' passes"),
#undef R_
};

enum { N_ROWS = sizeof(rows) / sizeof(rows[0]) };

const struct config_row *
config_rows(int *n_rows)
{
    *n_rows = N_ROWS;
    return rows;
}

/* ---- helpers --------------------------------------------------------------------------- */

static void
errf(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    if (!err || !len)
        return;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static char *
dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

#define AT(c, off, T) ((T *)(void *)((char *)(c) + (off)))
#define AT_C(c, off, T) ((const T *)(const void *)((const char *)(c) + (off)))

int
config_init_defaults(struct config *c, const char *model_path)
{
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < N_ROWS; i++) {
        const struct config_row *r = &rows[i];
        switch (r->type) {
        case CONFIG_INT:
            *AT(c, r->off, int64_t) = r->def;
            break;
        case CONFIG_BOOL:
        case CONFIG_ENUM:
            *AT(c, r->off, int) = (int)r->def;
            break;
        case CONFIG_STR:
        case CONFIG_STRLIST:
            break;
        }
    }
    if (model_path && !(c->model = strdup(model_path)))
        return -1;
    return 0;
}

void
config_fini(struct config *c)
{
    free(c->path);
    free(c->model);
    for (int i = 0; i < CONFIG_N_EP; i++)
        free(c->endpoints[i]);
    free(c->checkpoint_dir);
    free(c->curve_server_secret_file);
    free(c->security_socket_group);
    for (int i = 0; i < c->n_curve_allow; i++)
        free(c->curve_allow[i]);
    free(c->curve_allow);
    for (int i = 0; i < c->n_inputs; i++)
        free(c->inputs[i].name);
    free(c->inputs);
    memset(c, 0, sizeof(*c));
}

/* ---- the libyaml pass: keys, scalar types and lines ------------------------------------ */

static const char *
scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int
is_int_text(const char *s)
{
    if (!s)
        return 0;
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static int
is_bool_text(const char *s)
{
    static const char *const names[] = {"true", "false", "yes", "no", "on", "off",
                                        "True", "False", "Yes", "No", "On", "Off",
                                        "TRUE", "FALSE", "YES", "NO", "ON", "OFF"};
    if (!s)
        return 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(s, names[i]))
            return 1;
    return 0;
}

static const struct config_row *
row_by_name(const char *name)
{
    for (int i = 0; i < N_ROWS; i++)
        if (!strcmp(rows[i].name, name))
            return &rows[i];
    return NULL;
}

static int
is_row_prefix(const char *prefix)
{
    size_t n = strlen(prefix);
    for (int i = 0; i < N_ROWS; i++)
        if (!strncmp(rows[i].name, prefix, n) && rows[i].name[n] == '.')
            return 1;
    return 0;
}

static int
check_value(const char *path, const struct config_row *r, yaml_document_t *doc, yaml_node_t *v,
            char *err, size_t len)
{
    int line = (int)v->start_mark.line + 1;
    const char *s = scalar(v);
    switch (r->type) {
    case CONFIG_INT:
        if (!is_int_text(s)) {
            errf(err, len, "%s:%d: %s: expected an integer, got %s%s%s", path, line, r->name,
                 s ? "'" : "a ", s ? s : (v->type == YAML_MAPPING_NODE ? "mapping" : "sequence"),
                 s ? "'" : "");
            return -1;
        }
        errno = 0;
        long long x = strtoll(s, NULL, 10);
        if (errno || x < r->min || x > r->max) {
            errf(err, len, "%s:%d: %s: %s is out of bounds [%lld, %lld]", path, line, r->name, s,
                 (long long)r->min, (long long)r->max);
            return -1;
        }
        return 0;
    case CONFIG_BOOL:
        if (!is_bool_text(s)) {
            errf(err, len, "%s:%d: %s: expected true or false", path, line, r->name);
            return -1;
        }
        return 0;
    case CONFIG_STR:
        if (!s || !*s) {
            errf(err, len, "%s:%d: %s: expected a non-empty string", path, line, r->name);
            return -1;
        }
        return 0;
    case CONFIG_ENUM:
        for (int i = 0; s && r->names[i]; i++)
            if (!strcmp(s, r->names[i]))
                return 0;
        errf(err, len, "%s:%d: %s: expected one of %s%s%s", path, line, r->name, r->names[0],
             r->names[1] ? " | " : "", r->names[1] ? r->names[1] : "");
        return -1;
    case CONFIG_STRLIST:
        if (v->type != YAML_SEQUENCE_NODE) {
            errf(err, len, "%s:%d: %s: expected a list of strings", path, line, r->name);
            return -1;
        }
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
             it++) {
            yaml_node_t *item = yaml_document_get_node(doc, *it);
            if (!scalar(item)) {
                errf(err, len, "%s:%d: %s: expected a string", path, (int)item->start_mark.line + 1,
                     r->name);
                return -1;
            }
        }
        return 0;
    }
    return 0;
}

static int
check_mapping(const char *path, yaml_document_t *doc, yaml_node_t *map, const char *prefix,
              char *err, size_t len)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        const char *ks = scalar(k);
        char name[256];
        int line = (int)k->start_mark.line + 1;
        if (!ks) {
            errf(err, len, "%s:%d: keys must be strings", path, line);
            return -1;
        }
        snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "", ks);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            const char *qs = scalar(yaml_document_get_node(doc, q->key));
            if (qs && !strcmp(qs, ks)) {
                errf(err, len, "%s:%d: %s: given twice", path, line, name);
                return -1;
            }
        }
        if (!*prefix && !strcmp(ks, "inputs"))
            continue; /* checked by read_inputs */
        const struct config_row *r = row_by_name(name);
        if (r) {
            if (check_value(path, r, doc, v, err, len))
                return -1;
        } else if (is_row_prefix(name)) {
            if (v->type != YAML_MAPPING_NODE) {
                errf(err, len, "%s:%d: %s: expected a mapping", path, line, name);
                return -1;
            }
            if (check_mapping(path, doc, v, name, err, len))
                return -1;
        } else {
            errf(err, len, "%s:%d: %s: unknown setting", path, line, name);
            return -1;
        }
    }
    return 0;
}

/* inputs: {NAME: {max_age_ms: INT, on_stale: hold|zero}, ...} */
static int
read_inputs(struct config *c, const char *path, yaml_document_t *doc, yaml_node_t *root, char *err,
            size_t len)
{
    yaml_node_t *map = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const char *ks = scalar(yaml_document_get_node(doc, p->key));
        if (ks && !strcmp(ks, "inputs"))
            map = yaml_document_get_node(doc, p->value);
    }
    if (!map || (map->type == YAML_SCALAR_NODE && !*scalar(map)))
        return 0;
    if (map->type != YAML_MAPPING_NODE) {
        errf(err, len, "%s:%d: inputs: expected a mapping of input names", path,
             (int)map->start_mark.line + 1);
        return -1;
    }
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    c->inputs = calloc(n ? n : 1, sizeof(*c->inputs));
    if (!c->inputs) {
        errf(err, len, "%s: out of memory", path);
        return -1;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        const char *name = scalar(k);
        int line = (int)k->start_mark.line + 1;
        if (!name || !*name) {
            errf(err, len, "%s:%d: inputs: expected an input name", path, line);
            return -1;
        }
        if (config_find_input(c, name)) {
            errf(err, len, "%s:%d: inputs.%s: given twice", path, line, name);
            return -1;
        }
        struct config_input *in = &c->inputs[c->n_inputs];
        in->line = line;
        if (!(in->name = strdup(name))) {
            errf(err, len, "%s: out of memory", path);
            return -1;
        }
        c->n_inputs++;
        if (v->type != YAML_MAPPING_NODE) {
            errf(err, len, "%s:%d: inputs.%s: expected a mapping", path, line, name);
            return -1;
        }
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
             q++) {
            yaml_node_t *qk = yaml_document_get_node(doc, q->key);
            yaml_node_t *qv = yaml_document_get_node(doc, q->value);
            const char *key = scalar(qk), *val = scalar(qv);
            int qline = (int)qk->start_mark.line + 1;
            if (key && !strcmp(key, "max_age_ms")) {
                if (!is_int_text(val) || strtoll(val, NULL, 10) < 0) {
                    errf(err, len, "%s:%d: inputs.%s.max_age_ms: expected an integer >= 0", path,
                         qline, name);
                    return -1;
                }
                in->max_age_ms = strtoll(val, NULL, 10);
            } else if (key && !strcmp(key, "on_stale")) {
                if (val && !strcmp(val, "hold")) {
                    in->on_stale = CONFIG_ON_STALE_HOLD;
                } else if (val && !strcmp(val, "zero")) {
                    in->on_stale = CONFIG_ON_STALE_ZERO;
                } else {
                    errf(err, len, "%s:%d: inputs.%s.on_stale: expected hold | zero", path, qline,
                         name);
                    return -1;
                }
            } else {
                errf(err, len, "%s:%d: inputs.%s.%s: unknown setting", path, qline, name,
                     key ? key : "?");
                return -1;
            }
        }
    }
    return 0;
}

/* ---- libcyaml -------------------------------------------------------------------------- */

struct cy_log {
    char first[256]; /* the first error line */
    int line;        /* the first backtrace line number, 0 if none */
};

static void
cy_log_fn(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    struct cy_log *l = ctx;
    char msg[256];
    (void)level;
    vsnprintf(msg, sizeof(msg), fmt, args);
    msg[strcspn(msg, "\n")] = '\0';
    const char *at = strstr(msg, "(line: ");
    if (at && !l->line)
        l->line = atoi(at + 7);
    else if (!l->first[0] && strncmp(msg, "Load: Backtrace", 15))
        snprintf(l->first, sizeof(l->first), "%s", msg);
}

static int
resolve(struct config *c, const struct file_cfg *f, const char *path, char *err, size_t len)
{
    for (int i = 0; i < N_ROWS; i++) {
        const struct config_row *r = &rows[i];
        size_t fo = r->file_off;
        switch (r->type) {
        case CONFIG_INT: {
            const int64_t *p = *AT_C(f, fo, int64_t *);
            if (p)
                *AT(c, r->off, int64_t) = *p;
            break;
        }
        case CONFIG_BOOL: {
            const bool *p = *AT_C(f, fo, bool *);
            if (p)
                *AT(c, r->off, int) = *p;
            break;
        }
        case CONFIG_ENUM: {
            const char *s = *AT_C(f, fo, char *);
            for (int k = 0; s && r->names[k]; k++)
                if (!strcmp(s, r->names[k]))
                    *AT(c, r->off, int) = k;
            break;
        }
        case CONFIG_STR: {
            const char *s = *AT_C(f, fo, char *);
            if (s) {
                char **dst = AT(c, r->off, char *);
                free(*dst);
                if (!(*dst = strdup(s)))
                    goto nomem;
            }
            break;
        }
        case CONFIG_STRLIST:
            if (f->curve.allow_count) {
                c->curve_allow = calloc(f->curve.allow_count, sizeof(char *));
                if (!c->curve_allow)
                    goto nomem;
                for (unsigned k = 0; k < f->curve.allow_count; k++) {
                    if (!(c->curve_allow[k] = dupstr(f->curve.allow[k])))
                        goto nomem;
                    c->n_curve_allow++;
                }
            }
            break;
        }
    }
    if (c->max_msg_bytes < c->limit_input_bytes || c->max_msg_bytes < c->limit_control_bytes) {
        errf(err, len,
             "%s: max_msg_bytes: %lld is below limits.input_bytes or "
             "limits.control_bytes",
             path, (long long)c->max_msg_bytes);
        return -1;
    }
    return 0;
nomem:
    errf(err, len, "%s: out of memory", path);
    return -1;
}

int
config_load_text(struct config *c, const char *text, size_t len, const char *path, char *err,
                 size_t err_len)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    struct file_cfg *f = NULL;
    struct cy_log log = {{0}, 0};
    int rc = -1;

    if (config_init_defaults(c, NULL))
        goto nomem_early;
    if (!(c->path = strdup(path)))
        goto nomem_early;

    if (!yaml_parser_initialize(&parser))
        goto nomem_early;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        errf(err, err_len, "%s:%zu: %s %s", path, parser.problem_mark.line + 1,
             parser.problem ? parser.problem : "YAML error", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        goto fail;
    }
    yaml_parser_delete(&parser);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || (root->type == YAML_SCALAR_NODE && !*scalar(root))) {
        /* An empty file: every default. */
        yaml_document_delete(&doc);
        return 0;
    }
    if (root->type != YAML_MAPPING_NODE) {
        errf(err, err_len, "%s:%d: expected a mapping of settings", path,
             (int)root->start_mark.line + 1);
        yaml_document_delete(&doc);
        goto fail;
    }
    if (check_mapping(path, &doc, root, "", err, err_len) ||
        read_inputs(c, path, &doc, root, err, err_len)) {
        yaml_document_delete(&doc);
        goto fail;
    }
    yaml_document_delete(&doc);

    cyaml_config_t cy = {.log_fn = cy_log_fn,
                         .log_ctx = &log,
                         .mem_fn = cyaml_mem,
                         .log_level = CYAML_LOG_ERROR,
                         .flags = CYAML_CFG_DEFAULT};
    cyaml_err_t ce =
        cyaml_load_data((const uint8_t *)text, len, &cy, &top_schema, (cyaml_data_t **)&f, NULL);
    if (ce != CYAML_OK) {
        errf(err, err_len, "%s:%d: %s (%s)", path, log.line, cyaml_strerror(ce),
             log.first[0] ? log.first : "libcyaml");
        goto fail;
    }
    rc = resolve(c, f, path, err, err_len);
    cyaml_free(&cy, &top_schema, f, 0);
    if (rc)
        goto fail;
    return 0;
nomem_early:
    errf(err, err_len, "%s: out of memory", path);
fail:
    config_fini(c);
    return -1;
}

int
config_load(struct config *c, const char *path, char *err, size_t err_len)
{
    /* The operator's file: a symlink is fine, a FIFO or device is refused unopened. */
    int fd = security_open_read(path, 0, NULL, err, err_len);
    FILE *fp = fd >= 0 ? fdopen(fd, "rb") : NULL;
    char *text = NULL;
    long n = 0;
    int rc;

    memset(c, 0, sizeof(*c));
    if (!fp) {
        if (fd >= 0) {
            errf(err, err_len, "%s: %s", path, strerror(errno));
            close(fd);
        }
        return -1;
    }
    if (fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) || n > 16 * MIB ||
        !(text = malloc((size_t)n + 1)) || fread(text, 1, (size_t)n, fp) != (size_t)n) {
        errf(err, err_len, "%s: cannot read (%s)", path,
             n > 16 * MIB ? "over 16 MiB" : strerror(errno));
        free(text);
        fclose(fp);
        return -1;
    }
    fclose(fp);
    text[n] = '\0';
    rc = config_load_text(c, text, (size_t)n, path, err, err_len);
    free(text);
    return rc;
}

const struct config_input *
config_find_input(const struct config *c, const char *name)
{
    for (int i = 0; i < c->n_inputs; i++)
        if (!strcmp(c->inputs[i].name, name))
            return &c->inputs[i];
    return NULL;
}

static int
str_differs(const char *a, const char *b)
{
    if (!a || !b)
        return a != b;
    return strcmp(a, b) != 0;
}

int
config_diff(const struct config *o, const struct config *n,
            void (*changed)(void *ctx, const char *name, int reloadable), void *ctx)
{
    int n_diff = 0;
    for (int i = 0; i < N_ROWS; i++) {
        const struct config_row *r = &rows[i];
        int d = 0;
        switch (r->type) {
        case CONFIG_INT:
            d = *AT_C(o, r->off, int64_t) != *AT_C(n, r->off, int64_t);
            break;
        case CONFIG_BOOL:
        case CONFIG_ENUM:
            d = *AT_C(o, r->off, int) != *AT_C(n, r->off, int);
            break;
        case CONFIG_STR:
            d = str_differs(*AT_C(o, r->off, char *), *AT_C(n, r->off, char *));
            break;
        case CONFIG_STRLIST:
            d = o->n_curve_allow != n->n_curve_allow;
            for (int k = 0; !d && k < o->n_curve_allow; k++)
                d = strcmp(o->curve_allow[k], n->curve_allow[k]) != 0;
            break;
        }
        if (d) {
            n_diff++;
            if (changed)
                changed(ctx, r->name, r->reloadable);
        }
    }
    int d = o->n_inputs != n->n_inputs;
    for (int k = 0; !d && k < o->n_inputs; k++)
        d = strcmp(o->inputs[k].name, n->inputs[k].name) ||
            o->inputs[k].max_age_ms != n->inputs[k].max_age_ms ||
            o->inputs[k].on_stale != n->inputs[k].on_stale;
    if (d) {
        n_diff++;
        if (changed)
            changed(ctx, "inputs", 1);
    }
    return n_diff;
}
