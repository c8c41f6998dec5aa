/* The mapping file of etrace-ros2 (see r2map.h and README "ROS 2"). */
#include "r2map.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct rd {
    yaml_document_t doc;
    const char *path;
    char *err;
    size_t err_len;
};

static int fail(struct rd *r, const yaml_node_t *n, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail(struct rd *r, const yaml_node_t *n, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(r->err, r->err_len, "%s:%zu:%zu: %s: %s", r->path, n ? n->start_mark.line + 1 : 1,
             n ? n->start_mark.column + 1 : 1, field, msg);
    return -1;
}

static const char *
scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static char *
dupstr(const char *s)
{
    size_t len = strlen(s) + 1;
    char *d = malloc(len);
    if (d)
        memcpy(d, s, len);
    return d;
}

/* A scalar string field into *out (owned). */
static int
get_str(struct rd *r, const yaml_node_t *n, const char *field, char **out)
{
    const char *s = scalar(n);
    if (!s || !*s)
        return fail(r, n, field, "expected a non-empty string");
    free(*out);
    *out = dupstr(s);
    return *out ? 0 : fail(r, n, field, "out of memory");
}

static int
get_bool(struct rd *r, const yaml_node_t *n, const char *field, int *out)
{
    const char *s = scalar(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")))
        *out = 1;
    else if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")))
        *out = 0;
    else
        return fail(r, n, field, "expected true or false");
    return 0;
}

static int
get_long(struct rd *r, const yaml_node_t *n, const char *field, long lo, long hi, long *out)
{
    const char *s = scalar(n);
    char *end;
    long v;
    if (!s)
        return fail(r, n, field, "expected an integer");
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return fail(r, n, field, "expected an integer in [%ld, %ld]", lo, hi);
    *out = v;
    return 0;
}

static int
get_double(struct rd *r, const yaml_node_t *n, const char *field, double lo, double hi, double *out)
{
    const char *s = scalar(n);
    char *end;
    double v;
    if (!s)
        return fail(r, n, field, "expected a number");
    v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi))
        return fail(r, n, field, "expected a number in [%g, %g]", lo, hi);
    *out = v;
    return 0;
}

static const struct {
    const char *name;
    enum r2map_type type;
} types[] = {
    {"sensor_msgs/msg/JointState", R2MAP_JOINT_STATE},
    {"std_msgs/msg/Float32MultiArray", R2MAP_F32_ARRAY},
    {"std_msgs/msg/Float32", R2MAP_F32},
    {"std_msgs/msg/Float64", R2MAP_F64},
    {"geometry_msgs/msg/Twist", R2MAP_TWIST},
};

const char *
r2map_type_name(enum r2map_type t)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (types[i].type == t)
            return types[i].name;
    return "?";
}

const char *
r2map_reason_name(enum r2map_reason r)
{
    static const char *const names[R2MAP_NREASONS] = {"missing_joint", "wrong_length", "non_finite",
                                                      "daemon"};
    return r < R2MAP_NREASONS ? names[r] : "?";
}

static const char *const joint_fields[] = {"position", "velocity", "effort"};
static const char *const twist_fields[] = {"linear.x",  "linear.y",  "linear.z",
                                           "angular.x", "angular.y", "angular.z"};

/* A ROS name: [/]segment(/segment)*, segments of [A-Za-z0-9_] not starting with a digit. */
static int
ros_name_ok(const char *s)
{
    const char *p = s + (*s == '/');
    int start = 1;
    if (!*p)
        return 0;
    for (; *p; p++) {
        if (*p == '/') {
            if (start)
                return 0;
            start = 1;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                   (*p >= '0' && *p <= '9' && !start)) {
            start = 0;
        } else {
            return 0;
        }
    }
    return !start;
}

static int
read_fields(struct rd *r, const yaml_node_t *n, struct r2map_topic *t)
{
    const char *const *names = t->type == R2MAP_TWIST ? twist_fields : joint_fields;
    int nnames = t->type == R2MAP_TWIST ? 6 : 3;
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(r, n, "fields", "expected a list");
    t->n_fields = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *f = yaml_document_get_node(&r->doc, *it);
        const char *s = scalar(f);
        int k = -1;
        for (int i = 0; s && i < nnames; i++)
            if (!strcmp(s, names[i]))
                k = i;
        if (k < 0)
            return fail(r, f, "fields", "unknown field '%s' for %s", s ? s : "",
                        r2map_type_name(t->type));
        for (size_t j = 0; j < t->n_fields; j++)
            if (t->fields[j] == k)
                return fail(r, f, "fields", "'%s' named twice", s);
        if (t->n_fields == R2MAP_MAX_FIELDS)
            return fail(r, f, "fields", "at most %d fields", R2MAP_MAX_FIELDS);
        t->fields[t->n_fields++] = k;
    }
    if (t->n_fields == 0)
        return fail(r, n, "fields", "empty list");
    return 0;
}

static int
read_joints(struct rd *r, const yaml_node_t *n, struct r2map_topic *t)
{
    size_t count;
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(r, n, "joints", "expected a list of joint names");
    count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0 || count > 4096)
        return fail(r, n, "joints", "expected 1 to 4096 names");
    t->joints = calloc(count, sizeof(*t->joints));
    if (!t->joints)
        return fail(r, n, "joints", "out of memory");
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *j = yaml_document_get_node(&r->doc, n->data.sequence.items.start[i]);
        if (get_str(r, j, "joints", &t->joints[i]))
            return -1;
        t->n_joints = i + 1;
        for (size_t k = 0; k < i; k++)
            if (!strcmp(t->joints[k], t->joints[i]))
                return fail(r, j, "joints", "'%s' named twice", t->joints[i]);
    }
    return 0;
}

static int
read_topic(struct rd *r, const yaml_node_t *n, struct r2map_topic *t)
{
    const yaml_node_t *type_n = NULL, *fields_n = NULL, *joints_n = NULL, *size_n = NULL;
    const yaml_node_t *role_n = NULL, *source_n = NULL;
    long depth = 10;
    int nroles = 0;
    if (n->type != YAML_MAPPING_NODE)
        return fail(r, n, "topics", "expected a mapping");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&r->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&r->doc, p->value);
        const char *key = scalar(k);
        if (!key)
            return fail(r, k, "topics", "expected a key");
        if (!strcmp(key, "topic")) {
            if (get_str(r, v, "topic", &t->topic))
                return -1;
            if (!ros_name_ok(t->topic))
                return fail(r, v, "topic", "'%s' is not a ROS topic name", t->topic);
        } else if (!strcmp(key, "type")) {
            type_n = v;
        } else if (!strcmp(key, "input") || !strcmp(key, "target") || !strcmp(key, "publish")) {
            t->role = !strcmp(key, "input")    ? R2MAP_INPUT
                      : !strcmp(key, "target") ? R2MAP_TARGET
                                               : R2MAP_PUBLISH;
            if (get_str(r, v, key, &t->name))
                return -1;
            role_n = v;
            nroles++;
        } else if (!strcmp(key, "reward")) {
            int on;
            if (get_bool(r, v, "reward", &on))
                return -1;
            if (!on)
                return fail(r, v, "reward", "only 'reward: true' is meaningful");
            t->role = R2MAP_REWARD;
            role_n = v;
            nroles++;
        } else if (!strcmp(key, "fields")) {
            fields_n = v;
        } else if (!strcmp(key, "joints")) {
            joints_n = v;
        } else if (!strcmp(key, "size")) {
            size_n = v;
        } else if (!strcmp(key, "source")) {
            source_n = v;
        } else if (!strcmp(key, "depth")) {
            if (get_long(r, v, "depth", 1, 100000, &depth))
                return -1;
        } else {
            return fail(r, k, key, "unknown key");
        }
    }
    t->depth = (int)depth;
    if (!t->topic)
        return fail(r, n, "topic", "required");
    if (!type_n)
        return fail(r, n, "type", "required");
    {
        const char *s = scalar(type_n);
        size_t i;
        for (i = 0; s && i < sizeof(types) / sizeof(types[0]); i++)
            if (!strcmp(s, types[i].name))
                break;
        if (!s || i == sizeof(types) / sizeof(types[0]))
            return fail(r, type_n, "type",
                        "unsupported type '%s' (JointState, Float32MultiArray, Float32, "
                        "Float64, Twist)",
                        s ? s : "");
        t->type = types[i].type;
    }
    if (nroles != 1)
        return fail(r, n, "topics", "exactly one of input, target, reward, publish is required");
    t->dds_name = malloc(strlen(t->topic) + 4);
    if (!t->dds_name)
        return fail(r, n, "topic", "out of memory");
    sprintf(t->dds_name, "rt/%s", t->topic + (t->topic[0] == '/'));

    /* What each type can carry. */
    if (t->role == R2MAP_REWARD && t->type != R2MAP_F32 && t->type != R2MAP_F64)
        return fail(r, role_n, "reward", "a reward topic is std_msgs/msg/Float32 or Float64");
    if (t->type == R2MAP_TWIST && t->role != R2MAP_PUBLISH)
        return fail(r, role_n, "type", "geometry_msgs/msg/Twist is only published");
    if (joints_n && t->type != R2MAP_JOINT_STATE)
        return fail(r, joints_n, "joints", "only for sensor_msgs/msg/JointState");
    if (fields_n && t->type != R2MAP_JOINT_STATE && t->type != R2MAP_TWIST)
        return fail(r, fields_n, "fields", "only for JointState and Twist");
    if (source_n) {
        const char *s = scalar(source_n);
        if (t->role != R2MAP_PUBLISH)
            return fail(r, source_n, "source", "only for published topics");
        if (s && !strcmp(s, "values"))
            t->use_action = 0;
        else if (s && !strcmp(s, "action"))
            t->use_action = 1;
        else
            return fail(r, source_n, "source", "expected values or action");
    }
    switch (t->type) {
    case R2MAP_JOINT_STATE:
        if (!joints_n)
            return fail(r, n, "joints", "required for sensor_msgs/msg/JointState");
        if (read_joints(r, joints_n, t))
            return -1;
        if (fields_n) {
            if (read_fields(r, fields_n, t))
                return -1;
        } else {
            t->fields[0] = R2MAP_POSITION;
            t->n_fields = 1;
        }
        t->size = t->n_joints * t->n_fields;
        break;
    case R2MAP_TWIST:
        if (!fields_n)
            return fail(r, n, "fields", "required for geometry_msgs/msg/Twist");
        if (read_fields(r, fields_n, t))
            return -1;
        t->size = t->n_fields;
        break;
    case R2MAP_F32:
    case R2MAP_F64:
        t->size = 1;
        break;
    case R2MAP_F32_ARRAY:
        t->size = 0; /* published: whatever the readout has */
        break;
    }
    if (size_n) {
        long v;
        if (get_long(r, size_n, "size", 1, 1 << 24, &v))
            return -1;
        if (t->size && (size_t)v != t->size)
            return fail(r, size_n, "size", "the mapping gives %zu values", t->size);
        t->size = (size_t)v;
    }
    if (t->type == R2MAP_F32_ARRAY && t->role != R2MAP_PUBLISH && !t->size)
        return fail(r, n, "size", "required for a Float32MultiArray input or target");
    return 0;
}

static int
read_daemon(struct rd *r, const yaml_node_t *n, struct r2map *m)
{
    if (n->type != YAML_MAPPING_NODE)
        return fail(r, n, "daemon", "expected a mapping");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&r->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&r->doc, p->value);
        const char *key = scalar(k);
        char **dst = !key                      ? NULL
                     : !strcmp(key, "control") ? &m->control
                     : !strcmp(key, "input")   ? &m->input
                     : !strcmp(key, "output")  ? &m->output
                                               : NULL;
        if (!dst)
            return fail(r, k, key ? key : "daemon", "unknown key (control, input, output)");
        if (get_str(r, v, key, dst))
            return -1;
    }
    return 0;
}

static int
read_root(struct rd *r, struct r2map *m)
{
    yaml_node_t *root = yaml_document_get_root_node(&r->doc), *topics = NULL;
    if (!root || root->type != YAML_MAPPING_NODE)
        return fail(r, root, "mapping", "expected a mapping at the top");
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&r->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&r->doc, p->value);
        const char *key = scalar(k);
        long l;
        if (!key)
            return fail(r, k, "mapping", "expected a key");
        if (!strcmp(key, "daemon")) {
            if (read_daemon(r, v, m))
                return -1;
        } else if (!strcmp(key, "lockstep")) {
            if (get_bool(r, v, key, &m->lockstep))
                return -1;
        } else if (!strcmp(key, "timeout_ms")) {
            if (get_long(r, v, key, 1, 600000, &l))
                return -1;
            m->timeout_ms = (int)l;
        } else if (!strcmp(key, "report_s")) {
            if (get_double(r, v, key, 0, 86400, &m->report_s))
                return -1;
        } else if (!strcmp(key, "topics")) {
            topics = v;
        } else {
            return fail(r, k, key, "unknown key");
        }
    }
    if (!topics)
        return fail(r, root, "topics", "required");
    if (topics->type != YAML_SEQUENCE_NODE ||
        topics->data.sequence.items.top == topics->data.sequence.items.start)
        return fail(r, topics, "topics", "expected a non-empty list");
    m->n_topics = (size_t)(topics->data.sequence.items.top - topics->data.sequence.items.start);
    m->topics = calloc(m->n_topics, sizeof(*m->topics));
    if (!m->topics) {
        m->n_topics = 0;
        return fail(r, topics, "topics", "out of memory");
    }
    for (size_t i = 0; i < m->n_topics; i++) {
        yaml_node_t *t = yaml_document_get_node(&r->doc, topics->data.sequence.items.start[i]);
        if (read_topic(r, t, &m->topics[i]))
            return -1;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(m->topics[j].dds_name, m->topics[i].dds_name))
                return fail(r, t, "topic", "'%s' mapped twice", m->topics[i].topic);
    }
    return 0;
}

int
r2map_load(struct r2map *m, const char *path, char *err, size_t err_len)
{
    struct rd r = {.path = path, .err = err, .err_len = err_len};
    yaml_parser_t parser;
    FILE *f;
    int rc;
    memset(m, 0, sizeof(*m));
    m->timeout_ms = 1000;
    m->report_s = 10;
    f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        snprintf(err, err_len, "%s: out of memory", path);
        return -1;
    }
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &r.doc)) {
        snprintf(err, err_len, "%s:%zu:%zu: mapping: %s", path, parser.problem_mark.line + 1,
                 parser.problem_mark.column + 1, parser.problem ? parser.problem : "bad YAML");
        yaml_parser_delete(&parser);
        fclose(f);
        return -1;
    }
    rc = read_root(&r, m);
    yaml_document_delete(&r.doc);
    yaml_parser_delete(&parser);
    fclose(f);
    if (rc)
        r2map_free(m);
    return rc;
}

void
r2map_free(struct r2map *m)
{
    for (size_t i = 0; i < m->n_topics; i++) {
        struct r2map_topic *t = &m->topics[i];
        for (size_t j = 0; j < t->n_joints; j++)
            free(t->joints[j]);
        free(t->joints);
        free(t->topic);
        free(t->dds_name);
        free(t->name);
    }
    free(m->topics);
    free(m->control);
    free(m->input);
    free(m->output);
    memset(m, 0, sizeof(*m));
}
