/* The model file (DESIGN §2): YAML text -> struct model_desc, validated against static
 * schema tables so that every error names its file, line, column and field.
 *
 * libyaml's document API gives a node graph with marks; each mapping kind has a table of
 * its keys (type, required, where the value goes, or a handler). Applying a table is two
 * passes: the keys are checked first (unknown, duplicate, missing), then the values are
 * read in table order, which is also the dependency order (dt before cells, cells before
 * projections, readouts before the learning policy). The first error stops the parse;
 * whatever was built so far is freed by model_free, which accepts a half-built
 * description because every array is zero-filled when it is allocated. */
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <yaml.h>

#include "cell.h"
#include "expr.h"
#include "rng.h"

enum { FIELD_LEN = 256, MAX_FIELDS = 16, MAX_DEPTH = 64 };

#define MODEL_MAX_ELEMS 2147483647LL /* 2^31 - 1: the largest tensor we accept */

/* The parse in progress. */
struct ctx {
    const char *file; /* the model path, for messages */
    const char *text; /* the file text, NUL-terminated (d->text) */
    yaml_document_t *doc;
    const struct mem *m;
    struct err *e;
    struct model_desc *d;
};

/* ---- messages ----------------------------------------------------------------------- */

static int fail_v(struct ctx *x, int line, int col, enum err_code code, const char *field,
                  const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

static int
fail_v(struct ctx *x, int line, int col, enum err_code code, const char *field, const char *fmt,
       va_list ap)
{
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    err_setf(x->e, code, "%s:%d:%d: %s: %s", x->file, line, col, field, msg);
    return -1;
}

/* Reports an error at a 1-based line and column; returns -1. */
static int fail_at(struct ctx *x, int line, int col, enum err_code code, const char *field,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int
fail_at(struct ctx *x, int line, int col, enum err_code code, const char *field, const char *fmt,
        ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(x, line, col, code, field, fmt, ap);
    va_end(ap);
    return -1;
}

/* Reports an error at the start of node n; returns -1. */
static int fail(struct ctx *x, const yaml_node_t *n, enum err_code code, const char *field,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int
fail(struct ctx *x, const yaml_node_t *n, enum err_code code, const char *field, const char *fmt,
     ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(x, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1, code, field, fmt, ap);
    va_end(ap);
    return -1;
}

static int
nomem(struct ctx *x)
{
    err_setf(x->e, ERR_NOMEM, "%s: out of memory", x->file);
    return -1;
}

static struct model_pos
pos_of(const yaml_node_t *n)
{
    struct model_pos p = {(int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
    return p;
}

/* Formats a field path into out[FIELD_LEN]; a path too long is cut, which only shortens
 * a message. */
static void fieldf(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
fieldf(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, FIELD_LEN, fmt, ap);
    va_end(ap);
}

/* ---- nodes and scalars -------------------------------------------------------------- */

static const yaml_node_t *
node_at(const struct ctx *x, int id)
{
    return yaml_document_get_node(x->doc, id);
}

static const char *
sval(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static int
is_scalar(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE;
}

static int
is_plain(const yaml_node_t *n)
{
    return is_scalar(n) && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* An empty plain scalar, `~` or `null`: YAML's null. */
static int
is_null(const yaml_node_t *n)
{
    if (!is_plain(n))
        return 0;
    const char *s = sval(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static int
n_items(const yaml_node_t *n)
{
    if (n->type == YAML_SEQUENCE_NODE)
        return (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (n->type == YAML_MAPPING_NODE)
        return (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    return 0;
}

static const yaml_node_t *
seq_item(const struct ctx *x, const yaml_node_t *n, int i)
{
    return node_at(x, n->data.sequence.items.start[i]);
}

static const yaml_node_t *
pair_key(const struct ctx *x, const yaml_node_t *n, int i)
{
    return node_at(x, n->data.mapping.pairs.start[i].key);
}

static const yaml_node_t *
pair_val(const struct ctx *x, const yaml_node_t *n, int i)
{
    return node_at(x, n->data.mapping.pairs.start[i].value);
}

/* The value of scalar key `key` in mapping n, or NULL. */
static const yaml_node_t *
map_find(const struct ctx *x, const yaml_node_t *n, const char *key)
{
    if (n->type != YAML_MAPPING_NODE)
        return NULL;
    for (int i = 0; i < n_items(n); i++) {
        const yaml_node_t *k = pair_key(x, n, i);
        if (is_scalar(k) && strcmp(sval(k), key) == 0)
            return pair_val(x, n, i);
    }
    return NULL;
}

/* What a node is, for "expected X, got Y". */
static void
describe(const yaml_node_t *n, char *buf, size_t len)
{
    if (n->type == YAML_MAPPING_NODE)
        snprintf(buf, len, "a mapping");
    else if (n->type == YAML_SEQUENCE_NODE)
        snprintf(buf, len, "a sequence");
    else if (is_null(n))
        snprintf(buf, len, "nothing");
    else if (n->data.scalar.length > 40)
        snprintf(buf, len, "'%.40s...'", sval(n));
    else
        snprintf(buf, len, "'%s'", sval(n));
}

static int
fail_type(struct ctx *x, const yaml_node_t *n, const char *field, const char *expected)
{
    char got[64];
    describe(n, got, sizeof got);
    return fail(x, n, ERR_MODEL, field, "expected %s, got %s", expected, got);
}

static int
is_name(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

/* field = path.key (key alone at the top); a key that is not a name (a typo, a stray
 * quote) is shown as path['key'], cut to 32 bytes with control characters replaced. */
static void
join(char *out, const char *path, const char *key)
{
    if (is_name(key)) {
        if (path[0])
            fieldf(out, "%s.%s", path, key);
        else
            fieldf(out, "%s", key);
        return;
    }
    char safe[40];
    size_t n = 0;
    for (; key[n] && n < 32; n++)
        safe[n] = ((unsigned char)key[n] < 0x20 || key[n] == 0x7f || key[n] == '\'') ? '?' : key[n];
    while (key[n] && n > 0 && ((unsigned char)key[n] & 0xc0) == 0x80)
        n--; /* cut on a character boundary */
    safe[n] = '\0';
    fieldf(out, "%s['%s%s']", path, safe, key[n] ? "..." : "");
}

/* ^[+-]?[0-9]+$ */
static int
is_int_text(const char *s)
{
    if (*s == '+' || *s == '-')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* A plain scalar as a number: 0 and *v when finite, 1 when NaN or Inf (strtod's nan/inf or
 * YAML's .nan/.inf), -1 when not a number at all. */
static int
scalar_number(const yaml_node_t *n, double *v)
{
    if (!is_plain(n))
        return -1;
    const char *s = sval(n);
    const char *t = (*s == '+' || *s == '-') ? s + 1 : s;
    if (strcmp(t, ".inf") == 0 || strcmp(t, ".Inf") == 0 || strcmp(t, ".INF") == 0 ||
        strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0)
        return 1;
    if (!*s || *s == ' ' || *s == '\t')
        return -1;
    char *end;
    errno = 0;
    double r = strtod(s, &end);
    if (end == s || *end != '\0')
        return -1;
    if (!isfinite(r))
        return 1;
    *v = r;
    return 0;
}

static int
read_number(struct ctx *x, const yaml_node_t *n, const char *field, double *out)
{
    int rc = scalar_number(n, out);
    if (rc < 0)
        return fail_type(x, n, field, "a number");
    if (rc > 0)
        return fail(x, n, ERR_MODEL, field, "NaN or Inf is not allowed, got '%s'", sval(n));
    return 0;
}

static int
read_int64(struct ctx *x, const yaml_node_t *n, const char *field, long long *out)
{
    if (!is_plain(n) || !is_int_text(sval(n)))
        return fail_type(x, n, field, "an integer");
    errno = 0;
    long long v = strtoll(sval(n), NULL, 10);
    if (errno == ERANGE)
        return fail(x, n, ERR_MODEL, field, "integer out of range: '%s'", sval(n));
    *out = v;
    return 0;
}

static int
read_u64(struct ctx *x, const yaml_node_t *n, const char *field, uint64_t *out)
{
    if (!is_plain(n) || !is_int_text(sval(n)))
        return fail_type(x, n, field, "a non-negative integer");
    if (sval(n)[0] == '-' && strspn(sval(n) + 1, "0") != strlen(sval(n) + 1))
        return fail(x, n, ERR_MODEL, field, "must be a non-negative integer, got %s", sval(n));
    errno = 0;
    unsigned long long v = strtoull(sval(n)[0] == '-' ? "0" : sval(n), NULL, 10);
    if (errno == ERANGE)
        return fail(x, n, ERR_MODEL, field, "integer out of range: '%s'", sval(n));
    *out = (uint64_t)v;
    return 0;
}

static int
read_bool(struct ctx *x, const yaml_node_t *n, const char *field, int *out)
{
    static const char *const t[] = {"true", "True", "TRUE"};
    static const char *const f[] = {"false", "False", "FALSE"};
    if (is_plain(n))
        for (int i = 0; i < 3; i++) {
            if (strcmp(sval(n), t[i]) == 0)
                return *out = 1, 0;
            if (strcmp(sval(n), f[i]) == 0)
                return *out = 0, 0;
        }
    return fail_type(x, n, field, "true or false");
}

/* A string value: any non-null scalar, allocated. */
static int
read_string(struct ctx *x, const yaml_node_t *n, const char *field, char **out)
{
    if (!is_scalar(n) || is_null(n))
        return fail_type(x, n, field, "a string");
    if (!(*out = mem_strdup(x->m, sval(n))))
        return nomem(x);
    return 0;
}

static int
read_name(struct ctx *x, const yaml_node_t *n, const char *field, char **out)
{
    if (!is_scalar(n) || is_null(n))
        return fail_type(x, n, field, "a name");
    if (!is_name(sval(n)))
        return fail(x, n, ERR_MODEL, field, "invalid name '%s': names match [A-Za-z_][A-Za-z0-9_]*",
                    sval(n));
    return read_string(x, n, field, out);
}

/* ---- value checks ------------------------------------------------------------------- */

enum check {
    C_ANY,    /* any finite value */
    C_POS,    /* > 0 */
    C_NONNEG, /* >= 0 */
    C_UNIT,   /* in [0, 1] */
    C_DECAY,  /* in [0, 1) */
    C_GE1,    /* integer >= 1 */
    C_SIZE    /* integer in [1, 2^31 - 1] */
};

static int
check_number(struct ctx *x, const yaml_node_t *n, const char *field, enum check c, double v)
{
    switch (c) {
    case C_POS:
        if (!(v > 0))
            return fail(x, n, ERR_MODEL, field, "must be > 0, got %g", v);
        break;
    case C_NONNEG:
        if (!(v >= 0))
            return fail(x, n, ERR_MODEL, field, "must be >= 0, got %g", v);
        break;
    case C_UNIT:
        if (!(v >= 0 && v <= 1))
            return fail(x, n, ERR_MODEL, field, "must be in [0, 1], got %g", v);
        break;
    case C_DECAY:
        if (!(v >= 0 && v < 1))
            return fail(x, n, ERR_MODEL, field, "must be in [0, 1), got %g", v);
        break;
    case C_ANY:
    case C_GE1:
    case C_SIZE:
        break;
    }
    return 0;
}

static int
check_int(struct ctx *x, const yaml_node_t *n, const char *field, enum check c, long long v)
{
    if (c == C_SIZE && v > MODEL_MAX_ELEMS)
        return fail(x, n, ERR_MODEL, field, "absurd size %lld: over 2^31-1 elements", v);
    if ((c == C_SIZE || c == C_GE1) && v < 1)
        return fail(x, n, ERR_MODEL, field, "must be >= 1, got %lld", v);
    if (v > INT_MAX || v < INT_MIN)
        return fail(x, n, ERR_MODEL, field, "integer out of range: %lld", v);
    return 0;
}

/* ---- schema tables ------------------------------------------------------------------ */

enum ftype {
    T_STR,         /* char *, any non-null scalar */
    T_NAME,        /* char *, [A-Za-z_][A-Za-z0-9_]* */
    T_NUM,         /* double, finite, then `check` */
    T_NUM_OR_NULL, /* double; null -> 0 (meaning none) */
    T_INT,         /* int, then `check` */
    T_U64,         /* uint64_t, non-negative */
    T_BOOL,        /* int, true or false */
    T_ENUM,        /* int, one of `names` */
    T_NODE,        /* recorded only: the caller reads it */
    T_FUNC         /* handled by `fn` */
};

/* One allowed value of an enumerated key. */
struct enum_name {
    const char *name;
    int value;
    int is_reserved; /* part of the format, answered "not supported yet" */
};

struct ctx;

/* One key of a mapping kind. */
struct field {
    const char *key;
    enum ftype type;
    int required;
    enum check check;
    size_t offset;                 /* where the value goes in the target struct */
    const struct enum_name *names; /* T_ENUM: terminated by a NULL name */
    int (*fn)(struct ctx *x, const yaml_node_t *n, void *target, const char *field);
};

/* Where field f of struct s goes: the tables below read better with a short name. */
#define AT(s, f) offsetof(struct s, f)

/* The key and value nodes found for each field of a table (NULL when absent). */
struct seen {
    const yaml_node_t *key[MAX_FIELDS];
    const yaml_node_t *val[MAX_FIELDS];
};

static void
list_names(const struct enum_name *names, char *buf, size_t len)
{
    buf[0] = '\0';
    for (const struct enum_name *e = names; e->name; e++) {
        if (e->is_reserved)
            continue;
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", used ? ", " : "", e->name);
    }
}

static int
read_enum(struct ctx *x, const yaml_node_t *n, const char *field, const struct enum_name *names,
          int *out)
{
    char list[256];
    list_names(names, list, sizeof list);
    if (!is_scalar(n) || is_null(n)) {
        char what[300];
        snprintf(what, sizeof what, "one of %s", list);
        return fail_type(x, n, field, what);
    }
    for (const struct enum_name *e = names; e->name; e++) {
        if (strcmp(e->name, sval(n)) != 0)
            continue;
        if (e->is_reserved)
            return fail(x, n, ERR_UNSUPPORTED, field, "'%s' is not supported yet", e->name);
        *out = e->value;
        return 0;
    }
    return fail(x, n, ERR_MODEL, field, "unknown value '%s' (expected one of: %s)", sval(n), list);
}

static int
read_field(struct ctx *x, const struct field *f, const yaml_node_t *n, void *target,
           const char *field)
{
    char *p = (char *)target + f->offset;
    double v = 0;
    long long i = 0;
    switch (f->type) {
    case T_STR:
        return read_string(x, n, field, (char **)(void *)p);
    case T_NAME:
        return read_name(x, n, field, (char **)(void *)p);
    case T_NUM:
        if (read_number(x, n, field, &v) < 0 || check_number(x, n, field, f->check, v) < 0)
            return -1;
        *(double *)(void *)p = v;
        return 0;
    case T_NUM_OR_NULL:
        if (is_null(n))
            v = 0;
        else if (read_number(x, n, field, &v) < 0 || check_number(x, n, field, f->check, v) < 0)
            return -1;
        *(double *)(void *)p = v;
        return 0;
    case T_INT:
        if (read_int64(x, n, field, &i) < 0 || check_int(x, n, field, f->check, i) < 0)
            return -1;
        *(int *)(void *)p = (int)i;
        return 0;
    case T_U64:
        return read_u64(x, n, field, (uint64_t *)(void *)p);
    case T_BOOL:
        return read_bool(x, n, field, (int *)(void *)p);
    case T_ENUM:
        return read_enum(x, n, field, f->names, (int *)(void *)p);
    case T_FUNC:
        return f->fn(x, n, target, field);
    case T_NODE:
        return 0;
    }
    return 0;
}

/* Applies table f[0..n_f) to mapping `map`: rejects unknown and duplicate keys, reports
 * the first missing required key, then reads every present value in table order into
 * `target`. s receives the key and value nodes of each field. */
static int
schema_apply(struct ctx *x, const yaml_node_t *map, const struct field *f, int n_f, void *target,
             const char *path, struct seen *s)
{
    char field[FIELD_LEN];
    memset(s, 0, sizeof *s);
    if (map->type != YAML_MAPPING_NODE)
        return fail_type(x, map, path[0] ? path : "(file)", "a mapping");
    for (int p = 0; p < n_items(map); p++) {
        const yaml_node_t *k = pair_key(x, map, p);
        if (!is_scalar(k))
            return fail(x, k, ERR_MODEL, path[0] ? path : "(file)", "keys must be plain names");
        join(field, path, sval(k));
        int i = 0;
        while (i < n_f && strcmp(f[i].key, sval(k)) != 0)
            i++;
        if (i == n_f) {
            char keys[400] = "";
            for (int j = 0; j < n_f; j++) {
                size_t used = strlen(keys);
                snprintf(keys + used, sizeof keys - used, "%s%s", j ? ", " : "", f[j].key);
            }
            return fail(x, k, ERR_MODEL, field, "unknown key (expected one of: %s)", keys);
        }
        if (s->key[i])
            return fail(x, k, ERR_MODEL, field, "duplicate key (first at line %d)",
                        (int)s->key[i]->start_mark.line + 1);
        s->key[i] = k;
        s->val[i] = pair_val(x, map, p);
    }
    for (int i = 0; i < n_f; i++)
        if (f[i].required && !s->val[i]) {
            join(field, path, f[i].key);
            return fail(x, map, ERR_MODEL, field, "missing required field");
        }
    for (int i = 0; i < n_f; i++) {
        if (!s->val[i])
            continue;
        join(field, path, f[i].key);
        if (read_field(x, &f[i], s->val[i], target, field) < 0)
            return -1;
    }
    return 0;
}

/* Checks that n is a mapping with scalar keys and no key twice (free-form maps such as
 * params, states, define, update). */
static int
map_check(struct ctx *x, const yaml_node_t *n, const char *field)
{
    char sub[FIELD_LEN];
    if (n->type != YAML_MAPPING_NODE)
        return fail_type(x, n, field, "a mapping");
    for (int i = 0; i < n_items(n); i++) {
        const yaml_node_t *k = pair_key(x, n, i);
        if (!is_scalar(k))
            return fail(x, k, ERR_MODEL, field, "keys must be plain names");
        for (int j = 0; j < i; j++)
            if (strcmp(sval(pair_key(x, n, j)), sval(k)) == 0) {
                join(sub, field, sval(k));
                return fail(x, k, ERR_MODEL, sub, "duplicate key (first at line %d)",
                            (int)pair_key(x, n, j)->start_mark.line + 1);
            }
    }
    return 0;
}

/* "seq.NAME" when item n has a valid name, else "seq[i]". */
static void
item_path(const struct ctx *x, const yaml_node_t *n, const char *seq, int i, char *out)
{
    const yaml_node_t *name = map_find(x, n, "name");
    if (name && is_scalar(name) && is_name(sval(name)))
        fieldf(out, "%s.%s", seq, sval(name));
    else
        fieldf(out, "%s[%d]", seq, i);
}

static int
check_seq(struct ctx *x, const yaml_node_t *n, const char *field)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_type(x, n, field, "a sequence");
    return 0;
}

/* ---- positions inside scalars ------------------------------------------------------- */

/* The byte index of a libyaml mark (0-based line and column in characters). */
static size_t
mark_byte(const struct ctx *x, size_t line, size_t col)
{
    size_t i = 0;
    for (size_t l = 0; l < line && x->text[i]; i++)
        if (x->text[i] == '\n')
            l++;
    for (size_t c = 0; c < col && x->text[i] && x->text[i] != '\n'; c++) {
        i++;
        while (((unsigned char)x->text[i] & 0xc0) == 0x80)
            i++;
    }
    return i;
}

/* Where, in the file, character `offset` of scalar n's value is. Exact for a scalar on
 * one line (plain: column = start + offset); for quoted, folded or block scalars the
 * value is walked against the source, skipping what YAML removed. */
static struct model_pos
scalar_locate(const struct ctx *x, const yaml_node_t *n, size_t offset)
{
    const char *v = sval(n);
    size_t vlen = n->data.scalar.length;
    size_t i = mark_byte(x, n->start_mark.line, n->start_mark.column);
    size_t end = mark_byte(x, n->end_mark.line, n->end_mark.column);
    if (offset > vlen)
        offset = vlen;
    for (size_t j = 0; j < offset && i < end;) {
        char sc = x->text[i];
        if (sc == v[j]) {
            i++;
            j++;
        } else if (sc == ' ' || sc == '\t' || sc == '\n' || sc == '\r') {
            i++;
        } else if (v[j] == ' ' || v[j] == '\n') {
            j++;
        } else {
            i++;
        }
    }
    if (offset < vlen)
        while (i < end && x->text[i] != v[offset])
            i++;
    struct model_pos p = {1, 1};
    for (size_t k = 0; k < i; k++) {
        if (x->text[k] == '\n') {
            p.line++;
            p.col = 1;
        } else if (((unsigned char)x->text[k] & 0xc0) != 0x80) {
            p.col++;
        }
    }
    return p;
}

/* ---- inputs ------------------------------------------------------------------------- */

static const struct enum_name input_kinds[] = {
    {"analog", MODEL_INPUT_ANALOG, 0},
    {"spikes", MODEL_INPUT_SPIKES, 0},
    {"token", 0, 1},
    {NULL, 0, 0},
};

/* A number, or a list of `size` numbers, into v[size] (allocated). */
static int
read_vector(struct ctx *x, const yaml_node_t *n, const char *field, int size, double **out)
{
    char sub[FIELD_LEN];
    int is_list = n->type == YAML_SEQUENCE_NODE;
    if (is_list && n_items(n) != size)
        return fail(x, n, ERR_MODEL, field, "%d values for an input of size %d", n_items(n), size);
    if (!(*out = mem_calloc(x->m, (size_t)size, sizeof **out)))
        return nomem(x);
    for (int i = 0; i < size; i++) {
        const yaml_node_t *it = is_list ? seq_item(x, n, i) : n;
        if (is_list)
            fieldf(sub, "%s[%d]", field, i);
        else
            fieldf(sub, "%s", field);
        if (read_number(x, it, sub, &(*out)[i]) < 0)
            return -1;
    }
    return 0;
}

static int
read_input_offset(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_input *in = target;
    return read_vector(x, n, field, in->size, &in->offset);
}

static int
read_input_scale(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_input *in = target;
    return read_vector(x, n, field, in->size, &in->scale);
}

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field normalize_fields[] = {
    {.key = "tau", .type = T_NUM, .required = 1, .check = C_POS,
     .offset = AT(model_input, norm_tau)},
    {.key = "eps", .type = T_NUM, .check = C_POS, .offset = AT(model_input, norm_eps)},
};
/* clang-format on */

static int
read_input_normalize(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct seen s;
    return schema_apply(x, n, normalize_fields, 2, target, field, &s);
}

enum { IF_NAME, IF_SIZE, IF_KIND, IF_OFFSET, IF_SCALE, IF_NORMALIZE, IF_N };

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field input_fields[IF_N] = {
    [IF_NAME] = {.key = "name", .type = T_NAME, .required = 1, .offset = AT(model_input, name)},
    [IF_SIZE] = {.key = "size", .type = T_INT, .required = 1, .check = C_SIZE,
                 .offset = AT(model_input, size)},
    [IF_KIND] = {.key = "kind", .type = T_ENUM, .names = input_kinds,
                 .offset = AT(model_input, kind)},
    [IF_OFFSET] = {.key = "offset", .type = T_FUNC, .fn = read_input_offset},
    [IF_SCALE] = {.key = "scale", .type = T_FUNC, .fn = read_input_scale},
    [IF_NORMALIZE] = {.key = "normalize", .type = T_FUNC, .fn = read_input_normalize},
};
/* clang-format on */

/* Rejects `name` when an input or cell before it already has it (one namespace). */
static int
check_unit_name(struct ctx *x, const yaml_node_t *n, const char *field, const char *name,
                int n_inputs, int n_cells)
{
    const struct model_desc *d = x->d;
    for (int i = 0; i < n_inputs; i++)
        if (strcmp(d->inputs[i].name, name) == 0)
            return fail(x, n, ERR_MODEL, field, "duplicate name '%s' (input at line %d)", name,
                        d->inputs[i].pos.line);
    for (int i = 0; i < n_cells; i++)
        if (strcmp(d->cells[i].name, name) == 0)
            return fail(x, n, ERR_MODEL, field, "duplicate name '%s' (cell at line %d)", name,
                        d->cells[i].pos.line);
    return 0;
}

static int
read_inputs(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_desc *d = target;
    char path[FIELD_LEN], sub[FIELD_LEN];
    struct seen s;
    if (check_seq(x, n, field) < 0)
        return -1;
    int count = n_items(n);
    if (count == 0)
        return 0;
    if (!(d->inputs = mem_calloc(x->m, (size_t)count, sizeof *d->inputs)))
        return nomem(x);
    d->n_inputs = count;
    for (int i = 0; i < count; i++) {
        const yaml_node_t *it = seq_item(x, n, i);
        struct model_input *in = &d->inputs[i];
        item_path(x, it, field, i, path);
        in->pos = pos_of(it);
        in->kind = MODEL_INPUT_ANALOG;
        in->norm_eps = 1e-8;
        if (schema_apply(x, it, input_fields, IF_N, in, path, &s) < 0)
            return -1;
        join(sub, path, "name");
        if (check_unit_name(x, s.val[0], sub, in->name, i, 0) < 0)
            return -1;
        /* the plant interface: an analog input's transform, one kind at a time */
        for (int k = IF_OFFSET; k < IF_N; k++)
            if (s.key[k] && in->kind != MODEL_INPUT_ANALOG) {
                join(sub, path, input_fields[k].key);
                return fail(x, s.key[k], ERR_MODEL, sub, "only on an analog input");
            }
        if (s.key[IF_NORMALIZE] && (s.key[IF_OFFSET] || s.key[IF_SCALE])) {
            join(sub, path, "normalize");
            return fail(x, s.key[IF_NORMALIZE], ERR_MODEL, sub,
                        "normalize replaces offset and scale: give one or the other");
        }
    }
    return 0;
}

/* ---- cells -------------------------------------------------------------------------- */

enum {
    CF_NAME,
    CF_MODEL,
    CF_SIZE,
    CF_PARAMS,
    CF_STATES,
    CF_SLOTS,
    CF_DEFINE,
    CF_UPDATE,
    CF_OUTPUT,
    CF_SURROGATE,
    CF_N
};

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field cell_fields[CF_N] = {
    [CF_NAME] = {.key = "name", .type = T_NAME, .required = 1, .offset = AT(model_cell, name)},
    [CF_MODEL] = {.key = "model", .type = T_NODE, .required = 1},
    [CF_SIZE] = {.key = "size", .type = T_INT, .required = 1, .check = C_SIZE,
                 .offset = AT(model_cell, size)},
    [CF_PARAMS] = {.key = "params", .type = T_NODE},
    [CF_STATES] = {.key = "states", .type = T_NODE},
    [CF_SLOTS] = {.key = "slots", .type = T_NODE},
    [CF_DEFINE] = {.key = "define", .type = T_NODE},
    [CF_UPDATE] = {.key = "update", .type = T_NODE},
    [CF_OUTPUT] = {.key = "output", .type = T_NODE},
    [CF_SURROGATE] = {.key = "surrogate", .type = T_NODE},
};
/* clang-format on */

static const struct enum_name surrogate_kinds[] = {
    {"relu", MODEL_SURR_RELU, 0},
    {"sigmoid", MODEL_SURR_SIGMOID, 0},
    {"gaussian", MODEL_SURR_GAUSSIAN, 0},
    {"slayer", MODEL_SURR_EXPONENTIAL, 0},
    {"exponential", MODEL_SURR_EXPONENTIAL, 0},
    {NULL, 0, 0},
};

enum { SF_KIND, SF_ALPHA, SF_WIDTH, SF_SIGMA, SF_N };

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field surrogate_fields[SF_N] = {
    [SF_KIND] = {.key = "kind", .type = T_ENUM, .names = surrogate_kinds,
                 .offset = AT(model_surrogate, kind)},
    [SF_ALPHA] = {.key = "alpha", .type = T_NUM, .check = C_POS,
                  .offset = AT(model_surrogate, alpha)},
    [SF_WIDTH] = {.key = "width", .type = T_NUM, .check = C_POS,
                  .offset = AT(model_surrogate, width)},
    [SF_SIGMA] = {.key = "sigma", .type = T_NUM, .check = C_POS,
                  .offset = AT(model_surrogate, sigma)},
};
/* clang-format on */

/* Which surrogate keys each kind takes, and their defaults (DESIGN §2.2). */
static const struct {
    int uses[SF_N];
    double alpha, width, sigma;
} surrogate_rules[] = {
    [MODEL_SURR_RELU] = {{1, 1, 1, 0}, 0.3, 1.0, 0},
    [MODEL_SURR_SIGMOID] = {{1, 1, 0, 0}, 4.0, 0, 0},
    [MODEL_SURR_GAUSSIAN] = {{1, 0, 0, 1}, 0, 0, 0.5},
    [MODEL_SURR_EXPONENTIAL] = {{1, 1, 0, 0}, 5.0, 0, 0},
};

static int
read_surrogate(struct ctx *x, const yaml_node_t *n, struct model_surrogate *out, const char *field)
{
    struct model_surrogate sg = {MODEL_SURR_RELU, 0, 0, 0};
    struct seen s;
    char sub[FIELD_LEN];
    if (schema_apply(x, n, surrogate_fields, SF_N, &sg, field, &s) < 0)
        return -1;
    for (int i = 0; i < SF_N; i++)
        if (s.key[i] && !surrogate_rules[sg.kind].uses[i]) {
            join(sub, field, surrogate_fields[i].key);
            return fail(x, s.key[i], ERR_MODEL, sub, "does not apply to surrogate kind %s",
                        sval(s.val[SF_KIND]));
        }
    out->kind = sg.kind;
    out->alpha = s.val[SF_ALPHA] ? sg.alpha : surrogate_rules[sg.kind].alpha;
    out->width = s.val[SF_WIDTH] ? sg.width : surrogate_rules[sg.kind].width;
    out->sigma = s.val[SF_SIGMA] ? sg.sigma : surrogate_rules[sg.kind].sigma;
    return 0;
}

/* Names an expression cannot use for a state, slot, param or helper. */
static int
is_reserved_name(const char *s)
{
    static const char *const reserved[] = {"dt",   "exp",     "log",          "sqrt", "abs",
                                           "tanh", "sigmoid", "relu",         "min",  "max",
                                           "clip", "spike",   "stop_gradient"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcmp(reserved[i], s) == 0)
            return 1;
    return 0;
}

static int
find_str(char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* A new custom-cell name at key node k: valid, not reserved, not already a state, slot or
 * param of c (what = "a state", ...). */
static int
check_cell_symbol(struct ctx *x, const struct model_cell *c, const yaml_node_t *k,
                  const char *field, const char *what)
{
    const char *s = sval(k);
    if (!is_name(s))
        return fail(x, k, ERR_MODEL, field, "invalid name '%s': names match [A-Za-z_][A-Za-z0-9_]*",
                    s);
    if (is_reserved_name(s))
        return fail(x, k, ERR_EXPR, field, "'%s' is reserved (dt or a function name)", s);
    const char *other = NULL;
    if (find_str((char *const *)c->state_names, c->n_states, s) >= 0)
        other = "a state";
    else if (find_str((char *const *)c->slot_names, c->n_slots, s) >= 0)
        other = "a slot";
    else if (c->param_names && find_str(c->param_names, c->n_params, s) >= 0)
        other = "a param";
    if (!other)
        return 0;
    if (strcmp(what, "a define") == 0)
        return fail(x, k, ERR_EXPR, field, "define '%s' shadows %s", s, other);
    return fail(x, k, ERR_EXPR, field, "'%s' is both %s and %s", s, what, other);
}

/* An expression: a non-empty scalar; sets e's name, text and position. */
static int
read_expr(struct ctx *x, const yaml_node_t *n, const char *name, const char *field,
          struct model_expr *e)
{
    if (!is_scalar(n) || is_null(n))
        return fail_type(x, n, field, "an expression");
    if (!(e->name = mem_strdup(x->m, name)) || !(e->text = mem_strdup(x->m, sval(n))))
        return nomem(x);
    e->pos = scalar_locate(x, n, 0);
    return 0;
}

static int
build_custom(struct ctx *x, struct model_cell *c, const struct seen *s, const char *path)
{
    char field[FIELD_LEN], sub[FIELD_LEN];
    static const int required[] = {CF_STATES, CF_SLOTS, CF_UPDATE, CF_OUTPUT};
    for (int i = 0; i < 4; i++)
        if (!s->val[required[i]]) {
            join(field, path, cell_fields[required[i]].key);
            return fail_at(x, c->pos.line, c->pos.col, ERR_MODEL, field,
                           "missing required field (a custom cell needs states, slots, "
                           "update and output)");
        }
    if (!(c->model = mem_strdup(x->m, "custom")))
        return nomem(x);

    const yaml_node_t *n = s->val[CF_STATES];
    join(field, path, "states");
    if (map_check(x, n, field) < 0)
        return -1;
    if (n_items(n) < 1 || n_items(n) > MODEL_MAX_K)
        return fail(x, n, ERR_MODEL, field, "a custom cell has 1 to %d states, got %d", MODEL_MAX_K,
                    n_items(n));
    for (int i = 0; i < n_items(n); i++) {
        const yaml_node_t *k = pair_key(x, n, i);
        join(sub, field, sval(k));
        if (check_cell_symbol(x, c, k, sub, "a state") < 0 ||
            read_number(x, pair_val(x, n, i), sub, &c->state_init[i]) < 0)
            return -1;
        if (!(c->state_names[i] = mem_strdup(x->m, sval(k))))
            return nomem(x);
        c->n_states = i + 1;
    }

    n = s->val[CF_SLOTS];
    join(field, path, "slots");
    if (check_seq(x, n, field) < 0)
        return -1;
    if (n_items(n) < 1 || n_items(n) > MODEL_MAX_SLOTS)
        return fail(x, n, ERR_MODEL, field, "a custom cell has 1 to %d slots, got %d",
                    MODEL_MAX_SLOTS, n_items(n));
    for (int i = 0; i < n_items(n); i++) {
        const yaml_node_t *it = seq_item(x, n, i);
        fieldf(sub, "%s[%d]", field, i);
        if (!is_scalar(it) || is_null(it))
            return fail_type(x, it, sub, "a slot name");
        if (find_str((char *const *)c->slot_names, c->n_slots, sval(it)) >= 0)
            return fail(x, it, ERR_MODEL, sub, "duplicate slot '%s'", sval(it));
        if (check_cell_symbol(x, c, it, sub, "a slot") < 0)
            return -1;
        if (!(c->slot_names[i] = mem_strdup(x->m, sval(it))))
            return nomem(x);
        c->n_slots = i + 1;
    }

    if ((n = s->val[CF_PARAMS])) {
        join(field, path, "params");
        if (map_check(x, n, field) < 0)
            return -1;
        int count = n_items(n);
        if (count > 0) {
            c->param_names = mem_calloc(x->m, (size_t)count, sizeof *c->param_names);
            c->param_values = mem_calloc(x->m, (size_t)count, sizeof *c->param_values);
            if (!c->param_names || !c->param_values)
                return nomem(x);
        }
        for (int i = 0; i < count; i++) {
            const yaml_node_t *k = pair_key(x, n, i);
            join(sub, field, sval(k));
            if (check_cell_symbol(x, c, k, sub, "a param") < 0 ||
                read_number(x, pair_val(x, n, i), sub, &c->param_values[i]) < 0)
                return -1;
            if (!(c->param_names[i] = mem_strdup(x->m, sval(k))))
                return nomem(x);
            c->n_params = i + 1;
        }
    }

    if ((n = s->val[CF_DEFINE])) {
        join(field, path, "define");
        if (map_check(x, n, field) < 0)
            return -1;
        int count = n_items(n);
        if (count > 0 && !(c->defines = mem_calloc(x->m, (size_t)count, sizeof *c->defines)))
            return nomem(x);
        for (int i = 0; i < count; i++) {
            const yaml_node_t *k = pair_key(x, n, i);
            join(sub, field, sval(k));
            if (check_cell_symbol(x, c, k, sub, "a define") < 0)
                return -1;
            c->n_defines = i + 1;
            if (read_expr(x, pair_val(x, n, i), sval(k), sub, &c->defines[i]) < 0)
                return -1;
        }
    }

    n = s->val[CF_UPDATE];
    join(field, path, "update");
    if (n->type != YAML_MAPPING_NODE)
        return fail_type(x, n, field, "a mapping of state: expression");
    for (int i = 0; i < n_items(n); i++) {
        const yaml_node_t *k = pair_key(x, n, i);
        if (!is_scalar(k))
            return fail(x, k, ERR_MODEL, field, "keys must be plain names");
        join(sub, field, sval(k));
        int st = find_str((char *const *)c->state_names, c->n_states, sval(k));
        if (st < 0)
            return fail(x, k, ERR_EXPR, sub, "'%s' is not a state of this cell", sval(k));
        if (c->updates[st].text)
            return fail(x, k, ERR_EXPR, sub, "state '%s' has more than one update", sval(k));
        if (read_expr(x, pair_val(x, n, i), sval(k), sub, &c->updates[st]) < 0)
            return -1;
    }
    for (int k = 0; k < c->n_states; k++)
        if (!c->updates[k].text) {
            join(sub, field, c->state_names[k]);
            return fail(x, n, ERR_EXPR, sub, "state '%s' has no update", c->state_names[k]);
        }

    join(field, path, "output");
    return read_expr(x, s->val[CF_OUTPUT], "output", field, &c->output);
}

static int
build_builtin(struct ctx *x, struct model_cell *c, const struct cell_builtin *b,
              const struct seen *s, const char *path)
{
    char field[FIELD_LEN], sub[FIELD_LEN], list[256];
    static const int custom_only[] = {CF_SLOTS, CF_DEFINE, CF_UPDATE, CF_OUTPUT};
    for (int i = 0; i < 4; i++)
        if (s->key[custom_only[i]]) {
            join(field, path, cell_fields[custom_only[i]].key);
            return fail(x, s->key[custom_only[i]], ERR_MODEL, field,
                        "only custom cells have '%s' (%s is a built-in)",
                        cell_fields[custom_only[i]].key, b->model);
        }
    const yaml_node_t *pn = s->val[CF_PARAMS];
    int reset_hard = 0;
    join(field, path, "params");
    if (pn) {
        if (map_check(x, pn, field) < 0)
            return -1;
        const yaml_node_t *rv = map_find(x, pn, "reset");
        if (rv && b->has_reset) {
            join(sub, field, "reset");
            if (is_scalar(rv) && strcmp(sval(rv), "hard") == 0)
                reset_hard = 1;
            else if (!is_scalar(rv) || strcmp(sval(rv), "soft") != 0)
                return fail_type(x, rv, sub, "soft or hard");
        }
    }
    if (cell_expand(b, reset_hard, x->m, c) < 0)
        return nomem(x);
    for (int i = 0; pn && i < n_items(pn); i++) {
        const yaml_node_t *k = pair_key(x, pn, i);
        join(sub, field, sval(k));
        if (b->has_reset && strcmp(sval(k), "reset") == 0)
            continue;
        int j = find_str(c->param_names, c->n_params, sval(k));
        if (j < 0) {
            list[0] = '\0';
            for (int p = 0; p < b->n_params; p++) {
                size_t used = strlen(list);
                snprintf(list + used, sizeof list - used, "%s%s", p ? ", " : "", b->param_names[p]);
            }
            if (b->has_reset)
                snprintf(list + strlen(list), sizeof list - strlen(list), ", reset");
            return fail(x, k, ERR_MODEL, sub, "unknown key (%s params: %s)", b->model,
                        b->n_params || b->has_reset ? list : "none");
        }
        if (read_number(x, pair_val(x, pn, i), sub, &c->param_values[j]) < 0)
            return -1;
    }
    const yaml_node_t *sn = s->val[CF_STATES];
    join(field, path, "states");
    if (sn && map_check(x, sn, field) < 0)
        return -1;
    for (int i = 0; sn && i < n_items(sn); i++) {
        const yaml_node_t *k = pair_key(x, sn, i);
        join(sub, field, sval(k));
        int j = find_str((char *const *)c->state_names, c->n_states, sval(k));
        if (j < 0)
            return fail(x, k, ERR_MODEL, sub, "unknown key (%s has no state '%s')", b->model,
                        sval(k));
        if (read_number(x, pair_val(x, sn, i), sub, &c->state_init[j]) < 0)
            return -1;
    }
    return 0;
}

/* Parameter ranges any cell must respect: time constants (params named tau*) > 0, and
 * v_th != v_reset (the reset scale divides by their difference). */
static int
check_cell_params(struct ctx *x, const struct model_cell *c, const yaml_node_t *cell_node,
                  const yaml_node_t *params, const char *path)
{
    char field[FIELD_LEN];
    int i_th = -1, i_reset = -1;
    for (int i = 0; i < c->n_params; i++) {
        const char *p = c->param_names[i];
        const yaml_node_t *n = params ? map_find(x, params, p) : NULL;
        fieldf(field, "%s.params.%s", path, p);
        if (strncmp(p, "tau", 3) == 0 && !(c->param_values[i] > 0))
            return fail(x, n ? n : cell_node, ERR_MODEL, field, "time constant must be > 0, got %g",
                        c->param_values[i]);
        if (strcmp(p, "v_th") == 0)
            i_th = i;
        if (strcmp(p, "v_reset") == 0)
            i_reset = i;
    }
    if (i_th >= 0 && i_reset >= 0 && c->param_values[i_th] == c->param_values[i_reset]) {
        const yaml_node_t *n = params ? map_find(x, params, "v_th") : NULL;
        if (!n && params)
            n = map_find(x, params, "v_reset");
        fieldf(field, "%s.params.v_th", path);
        return fail(x, n ? n : cell_node, ERR_MODEL, field,
                    "v_th must differ from v_reset (both %g): the reset divides by v_th - "
                    "v_reset",
                    c->param_values[i_th]);
    }
    return 0;
}

/* Compiles the cell's expressions to validate them, and maps an error to its column. */
static int
compile_cell(struct ctx *x, const struct model_cell *c, const struct seen *s, int is_custom,
             const char *path)
{
    struct expr_prog *prog = NULL;
    struct expr_error xe;
    char field[FIELD_LEN];
    memset(&xe, 0, sizeof xe);
    xe.field = -1;
    if (expr_prog_compile(c, x->d->dt, x->m, &prog, &xe) == 0) {
        expr_prog_free(&prog, x->m);
        return 0;
    }
    expr_prog_free(&prog, x->m);
    if (strcmp(xe.msg, "out of memory") == 0)
        return nomem(x);
    int nd = c->n_defines, k = c->n_states;
    if (!is_custom || xe.field < 0 || xe.field > nd + k) {
        if (!is_custom)
            return fail_at(x, c->pos.line, c->pos.col, ERR_EXPR, path, "built-in %s: %s", c->model,
                           xe.msg);
        return fail_at(x, c->pos.line, c->pos.col, ERR_EXPR, path, "%s", xe.msg);
    }
    const yaml_node_t *n;
    if (xe.field < nd) {
        n = pair_val(x, s->val[CF_DEFINE], xe.field);
        fieldf(field, "%s.define.%s", path, c->defines[xe.field].name);
    } else if (xe.field < nd + k) {
        const char *st = c->state_names[xe.field - nd];
        n = map_find(x, s->val[CF_UPDATE], st);
        fieldf(field, "%s.update.%s", path, st);
    } else {
        n = s->val[CF_OUTPUT];
        fieldf(field, "%s.output", path);
    }
    struct model_pos p = scalar_locate(x, n, xe.offset > 0 ? (size_t)xe.offset : 0);
    return fail_at(x, p.line, p.col, ERR_EXPR, field, "%s", xe.msg);
}

/* `spike` followed by `(` (spaces allowed): the output fires spikes. */
static int
has_spike_call(const char *s)
{
    for (const char *p = strstr(s, "spike"); p; p = strstr(p + 1, "spike")) {
        if (p > s && (p[-1] == '_' || (p[-1] >= '0' && p[-1] <= '9') ||
                      (p[-1] >= 'A' && p[-1] <= 'Z') || (p[-1] >= 'a' && p[-1] <= 'z')))
            continue;
        const char *q = p + 5;
        while (*q == ' ' || *q == '\t' || *q == '\n')
            q++;
        if (*q == '(')
            return 1;
    }
    return 0;
}

static int
read_cell(struct ctx *x, const yaml_node_t *n, int idx, const char *path)
{
    struct model_cell *c = &x->d->cells[idx];
    struct seen s;
    char field[FIELD_LEN];
    c->pos = pos_of(n);
    if (schema_apply(x, n, cell_fields, CF_N, c, path, &s) < 0)
        return -1;
    join(field, path, "name");
    if (check_unit_name(x, s.val[CF_NAME], field, c->name, x->d->n_inputs, idx) < 0)
        return -1;
    const yaml_node_t *mn = s.val[CF_MODEL];
    join(field, path, "model");
    if (!is_scalar(mn) || is_null(mn))
        return fail_type(x, mn, field, "a cell model name");
    int is_custom = strcmp(sval(mn), "custom") == 0;
    if (is_custom) {
        if (build_custom(x, c, &s, path) < 0)
            return -1;
    } else {
        const struct cell_builtin *b = cell_builtin_find(sval(mn));
        if (!b) {
            char list[256] = "";
            for (int i = 0; i < cell_builtin_count(); i++) {
                size_t used = strlen(list);
                snprintf(list + used, sizeof list - used, "%s, ", cell_builtin_at(i)->model);
            }
            return fail(x, mn, ERR_MODEL, field, "unknown cell model '%s' (built-ins: %scustom)",
                        sval(mn), list);
        }
        /* cell_expand wants a zeroed cell with name, size and pos; on failure it frees
         * the name too, which model_free then finds NULL. */
        if (build_builtin(x, c, b, &s, path) < 0)
            return -1;
    }
    if (s.val[CF_SURROGATE]) {
        join(field, path, "surrogate");
        if (read_surrogate(x, s.val[CF_SURROGATE], &c->surrogate, field) < 0)
            return -1;
    } else if (is_custom) {
        c->surrogate.kind = MODEL_SURR_RELU;
        c->surrogate.alpha = surrogate_rules[MODEL_SURR_RELU].alpha;
        c->surrogate.width = surrogate_rules[MODEL_SURR_RELU].width;
        c->surrogate.sigma = 0.5; /* unused by relu; as cell_expand leaves it */
    }
    if (check_cell_params(x, c, n, s.val[CF_PARAMS], path) < 0)
        return -1;
    c->is_spiking = has_spike_call(c->output.text);
    return compile_cell(x, c, &s, is_custom, path);
}

static int
read_cells(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_desc *d = target;
    char path[FIELD_LEN];
    if (check_seq(x, n, field) < 0)
        return -1;
    int count = n_items(n);
    if (count == 0)
        return fail(x, n, ERR_MODEL, field, "a model needs at least one cell");
    if (!(d->cells = mem_calloc(x->m, (size_t)count, sizeof *d->cells)))
        return nomem(x);
    d->n_cells = count;
    for (int i = 0; i < count; i++) {
        const yaml_node_t *it = seq_item(x, n, i);
        item_path(x, it, field, i, path);
        if (read_cell(x, it, i, path) < 0)
            return -1;
    }
    return 0;
}

/* ---- projections -------------------------------------------------------------------- */

static const struct enum_name op_names[] = {
    {"dense", MODEL_OP_DENSE, 0},
    {"sparse", MODEL_OP_SPARSE, 0},
    {"elemwise", MODEL_OP_ELEMWISE, 0},
    {"lora", 0, 1},
    {"conv", 0, 1},
    {"embedding", 0, 1},
    {NULL, 0, 0},
};

static const struct enum_name learn_names[] = {
    {"trace", MODEL_LEARN_TRACE, 0},
    {"instant", MODEL_LEARN_INSTANT, 0},
    {"frozen", MODEL_LEARN_FROZEN, 0},
    {NULL, 0, 0},
};

static const struct enum_name init_names[] = {
    {"zeros", MODEL_INIT_ZEROS, 0},
    {"ones", MODEL_INIT_ONES, 0},
    {"constant", MODEL_INIT_CONSTANT, 0},
    {"normal", MODEL_INIT_NORMAL, 0},
    {"uniform", MODEL_INIT_UNIFORM, 0},
    {"kaiming_normal", MODEL_INIT_KAIMING_NORMAL, 0},
    {"xavier_uniform", MODEL_INIT_XAVIER_UNIFORM, 0},
    {NULL, 0, 0},
};

enum {
    TF_FILE,
    TF_INDICES,
    TF_INDPTR,
    TF_ROWS,
    TF_COLS,
    TF_VALUES,
    TF_PROB,
    TF_SEED,
    TF_INIT,
    TF_VALUE,
    TF_MEAN,
    TF_STD,
    TF_LOW,
    TF_HIGH,
    TF_SCALE,
    TF_N
};

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field tensor_fields[TF_N] = {
    [TF_FILE] = {.key = "file", .type = T_STR, .offset = AT(model_tensor, file)},
    [TF_INDICES] = {.key = "indices", .type = T_STR, .offset = AT(model_tensor, indices)},
    [TF_INDPTR] = {.key = "indptr", .type = T_STR, .offset = AT(model_tensor, indptr)},
    [TF_ROWS] = {.key = "rows", .type = T_STR, .offset = AT(model_tensor, rows)},
    [TF_COLS] = {.key = "cols", .type = T_STR, .offset = AT(model_tensor, cols)},
    [TF_VALUES] = {.key = "values", .type = T_STR, .offset = AT(model_tensor, values)},
    [TF_PROB] = {.key = "prob", .type = T_NUM, .check = C_UNIT, .offset = AT(model_tensor, prob)},
    [TF_SEED] = {.key = "seed", .type = T_U64, .offset = AT(model_tensor, seed)},
    [TF_INIT] = {.key = "init", .type = T_ENUM, .names = init_names,
                 .offset = AT(model_tensor, init)},
    [TF_VALUE] = {.key = "value", .type = T_NUM, .offset = AT(model_tensor, value)},
    [TF_MEAN] = {.key = "mean", .type = T_NUM, .offset = AT(model_tensor, mean)},
    [TF_STD] = {.key = "std", .type = T_NUM, .check = C_NONNEG, .offset = AT(model_tensor, std)},
    [TF_LOW] = {.key = "low", .type = T_NUM, .offset = AT(model_tensor, low)},
    [TF_HIGH] = {.key = "high", .type = T_NUM, .offset = AT(model_tensor, high)},
    [TF_SCALE] = {.key = "scale", .type = T_NUM, .check = C_NONNEG,
                  .offset = AT(model_tensor, scale)},
};
/* clang-format on */

#define BIT(f) (1u << (f))
/* The keys each initialiser takes beside `init` (DESIGN §2.3). */
static const unsigned init_keys[] = {
    [MODEL_INIT_ZEROS] = 0,
    [MODEL_INIT_ONES] = 0,
    [MODEL_INIT_CONSTANT] = BIT(TF_VALUE),
    [MODEL_INIT_NORMAL] = BIT(TF_MEAN) | BIT(TF_STD),
    [MODEL_INIT_UNIFORM] = BIT(TF_LOW) | BIT(TF_HIGH),
    [MODEL_INIT_KAIMING_NORMAL] = BIT(TF_SCALE),
    [MODEL_INIT_XAVIER_UNIFORM] = BIT(TF_SCALE),
};

static const char *const tensor_kind_names[] = {
    [MODEL_TENSOR_NONE] = "none",
    [MODEL_TENSOR_INIT] = "{init}",
    [MODEL_TENSOR_FILE] = "{file}",
    [MODEL_TENSOR_COO] = "COO {rows, cols, values}",
    [MODEL_TENSOR_RANDOM] = "random sparse {prob, init}",
};

static void
tensor_fini(struct model_tensor *t, const struct mem *m)
{
    mem_free(m, &t->file);
    mem_free(m, &t->indices);
    mem_free(m, &t->indptr);
    mem_free(m, &t->rows);
    mem_free(m, &t->cols);
    mem_free(m, &t->values);
}

/* A weight (is_bias 0) or bias spec of projection p; the kind follows from its keys. */
static int
read_tensor(struct ctx *x, const yaml_node_t *n, const struct model_proj *p, int is_bias,
            struct model_tensor *t, const char *field)
{
    struct seen s;
    char sub[FIELD_LEN];
    t->pos = pos_of(n);
    t->init = MODEL_INIT_ZEROS;
    t->mean = 0;
    t->std = 1;
    t->low = -1;
    t->high = 1;
    t->scale = 1;
    t->seed = x->d->seed;
    if (schema_apply(x, n, tensor_fields, TF_N, t, field, &s) < 0)
        return -1;
    unsigned allowed;
    const char *what = is_bias ? "bias" : "weight";
    int is_sparse = p->op == MODEL_OP_SPARSE && !is_bias;
    if (s.val[TF_FILE]) {
        t->kind = MODEL_TENSOR_FILE;
        allowed = BIT(TF_FILE);
        int has_csr = s.val[TF_INDICES] || s.val[TF_INDPTR];
        if (has_csr && !is_sparse) {
            int f = s.val[TF_INDICES] ? TF_INDICES : TF_INDPTR;
            join(sub, field, tensor_fields[f].key);
            return fail(x, s.key[f], ERR_MODEL, sub,
                        "indices and indptr (CSR) are for an op: sparse weight only");
        }
        if (is_sparse) {
            if (!has_csr)
                return fail(x, n, ERR_MODEL, field,
                            "op: sparse with a plain {file} is an error: give {file, "
                            "indices, indptr} (CSR), {rows, cols, values} or {prob, init}");
            for (int f = TF_INDICES; f <= TF_INDPTR; f++)
                if (!s.val[f]) {
                    join(sub, field, tensor_fields[f].key);
                    return fail(x, n, ERR_MODEL, sub,
                                "missing required field (CSR needs file, indices and indptr)");
                }
            allowed |= BIT(TF_INDICES) | BIT(TF_INDPTR);
        }
    } else if (s.val[TF_ROWS] || s.val[TF_COLS] || s.val[TF_VALUES]) {
        t->kind = MODEL_TENSOR_COO;
        allowed = BIT(TF_ROWS) | BIT(TF_COLS) | BIT(TF_VALUES);
        if (!is_sparse)
            return fail(x, n, ERR_MODEL, field,
                        "COO {rows, cols, values} is for an op: sparse weight only");
        for (int f = TF_ROWS; f <= TF_VALUES; f++)
            if (!s.val[f]) {
                join(sub, field, tensor_fields[f].key);
                return fail(x, n, ERR_MODEL, sub,
                            "missing required field (COO needs rows, cols and values)");
            }
    } else if (s.val[TF_PROB]) {
        t->kind = MODEL_TENSOR_RANDOM;
        if (!is_sparse)
            return fail(x, n, ERR_MODEL, field,
                        "random sparse {prob, init} is for an op: sparse weight only");
        if (!s.val[TF_INIT]) {
            join(sub, field, "init");
            return fail(x, n, ERR_MODEL, sub,
                        "missing required field (random sparse needs prob and init)");
        }
        allowed = BIT(TF_PROB) | BIT(TF_SEED) | BIT(TF_INIT) | init_keys[t->init];
    } else if (s.val[TF_INIT]) {
        t->kind = MODEL_TENSOR_INIT;
        if (is_sparse)
            return fail(x, n, ERR_MODEL, field,
                        "an op: sparse weight needs a structure: {file, indices, indptr}, "
                        "{rows, cols, values} or {prob, init}");
        allowed = BIT(TF_INIT) | init_keys[t->init];
    } else {
        return fail(x, n, ERR_MODEL, field, "a %s needs %s", what,
                    is_sparse ? "{file, indices, indptr}, {rows, cols, values} or {prob, init}"
                              : "{file} or {init}");
    }
    for (int f = 0; f < TF_N; f++)
        if (s.key[f] && !(allowed & BIT(f))) {
            join(sub, field, tensor_fields[f].key);
            if (f >= TF_VALUE && s.val[TF_INIT] && t->kind != MODEL_TENSOR_FILE &&
                t->kind != MODEL_TENSOR_COO)
                return fail(x, s.key[f], ERR_MODEL, sub, "does not apply to init %s",
                            sval(s.val[TF_INIT]));
            return fail(x, s.key[f], ERR_MODEL, sub, "does not go with a %s %s",
                        tensor_kind_names[t->kind], what);
        }
    if (t->init == MODEL_INIT_CONSTANT && !s.val[TF_VALUE] &&
        (t->kind == MODEL_TENSOR_INIT || t->kind == MODEL_TENSOR_RANDOM)) {
        join(sub, field, "value");
        return fail(x, n, ERR_MODEL, sub, "missing required field (init constant needs value)");
    }
    if (s.val[TF_LOW] || s.val[TF_HIGH])
        if (!(t->low < t->high)) {
            join(sub, field, s.val[TF_HIGH] ? "high" : "low");
            return fail(x, s.val[TF_HIGH] ? s.val[TF_HIGH] : s.val[TF_LOW], ERR_MODEL, sub,
                        "uniform needs low < high, got low %g, high %g", t->low, t->high);
        }
    return 0;
}

static int
find_unit(const struct model_desc *d, const char *name, int *is_input)
{
    int i = model_find_input(d, name);
    if (i >= 0)
        return *is_input = 1, i;
    *is_input = 0;
    return model_find_cell(d, name);
}

/* from: a name or a list of names; the pre-synaptic vector is their concatenation. */
static int
read_from(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_proj *p = target;
    int is_list = n->type == YAML_SEQUENCE_NODE;
    int count = is_list ? n_items(n) : 1;
    char sub[FIELD_LEN];
    if (!is_list && (!is_scalar(n) || is_null(n)))
        return fail_type(x, n, field, "a name or a list of names");
    if (count == 0)
        return fail(x, n, ERR_MODEL, field, "needs at least one source");
    if (!(p->from = mem_calloc(x->m, (size_t)count, sizeof *p->from)))
        return nomem(x);
    p->n_from = count;
    long long offset = 0;
    for (int i = 0; i < count; i++) {
        const yaml_node_t *it = is_list ? seq_item(x, n, i) : n;
        if (is_list)
            fieldf(sub, "%s[%d]", field, i);
        else
            fieldf(sub, "%s", field);
        if (!is_scalar(it) || is_null(it))
            return fail_type(x, it, sub, "an input or cell name");
        struct model_source *src = &p->from[i];
        src->index = find_unit(x->d, sval(it), &src->is_input);
        if (src->index < 0)
            return fail(x, it, ERR_MODEL, sub, "unknown source '%s' (not an input or a cell)",
                        sval(it));
        src->size = src->is_input ? x->d->inputs[src->index].size : x->d->cells[src->index].size;
        src->offset = (int)offset;
        offset += src->size;
        if (offset > MODEL_MAX_ELEMS)
            return fail(x, n, ERR_MODEL, field,
                        "absurd size: the sources add up to %lld, over 2^31-1", offset);
    }
    p->in_size = (int)offset;
    return 0;
}

static int
skip_spaces(const char *s, int i)
{
    while (s[i] == ' ' || s[i] == '\t')
        i++;
    return i;
}

static int
name_len(const char *s)
{
    int i = 0;
    if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    while ((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
           (s[i] >= '0' && s[i] <= '9') || s[i] == '_')
        i++;
    return i;
}

/* Adds slot s[at..at+len) of cell c to p's targets. */
static int
add_slot(struct ctx *x, const yaml_node_t *n, const char *field, struct model_proj *p,
         const struct model_cell *c, const char *s, int at, int len)
{
    char slot[FIELD_LEN];
    snprintf(slot, sizeof slot, "%.*s", len, s + at);
    struct model_pos pos = scalar_locate(x, n, (size_t)at);
    int k = find_str((char *const *)c->slot_names, c->n_slots, slot);
    if (k < 0) {
        char list[256] = "";
        for (int j = 0; j < c->n_slots; j++) {
            size_t used = strlen(list);
            snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "", c->slot_names[j]);
        }
        return fail_at(x, pos.line, pos.col, ERR_MODEL, field,
                       "unknown slot '%s' of cell '%s' (slots: %s)", slot, c->name, list);
    }
    for (int j = 0; j < p->n_to_slots; j++)
        if (p->to_slots[j] == k)
            return fail_at(x, pos.line, pos.col, ERR_MODEL, field, "slot '%s' listed twice", slot);
    p->to_slots[p->n_to_slots++] = k;
    return 0;
}

/* to: `cell` (a one-slot cell), `cell.slot` or `cell[a, b, ...]`. */
static int
read_to(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_proj *p = target;
    if (!is_scalar(n) || is_null(n))
        return fail_type(x, n, field, "cell, cell.slot or cell[slot, ...]");
    const char *s = sval(n);
    int i = skip_spaces(s, 0);
    int len = name_len(s + i);
    if (len == 0)
        return fail(x, n, ERR_MODEL, field, "expected cell, cell.slot or cell[slot, ...], got '%s'",
                    s);
    char cname[FIELD_LEN];
    snprintf(cname, sizeof cname, "%.*s", len, s + i);
    if (model_find_input(x->d, cname) >= 0)
        return fail(x, n, ERR_MODEL, field, "a projection cannot feed input '%s': to: names a cell",
                    cname);
    int ci = model_find_cell(x->d, cname);
    if (ci < 0)
        return fail(x, n, ERR_MODEL, field, "unknown cell '%s'", cname);
    const struct model_cell *c = &x->d->cells[ci];
    p->to_cell = ci;
    i = skip_spaces(s, i + len);
    if (s[i] == '\0') {
        if (c->n_slots != 1)
            return fail(x, n, ERR_MODEL, field,
                        "cell '%s' has %d slots: name one (%s.%s) or a list (%s[...])", cname,
                        c->n_slots, cname, c->slot_names[0], cname);
        p->n_to_slots = 1;
        p->to_slots[0] = 0;
    } else if (s[i] == '.') {
        i = skip_spaces(s, i + 1);
        len = name_len(s + i);
        if (len == 0 || s[skip_spaces(s, i + len)] != '\0')
            return fail(x, n, ERR_MODEL, field, "expected a slot name after '.' in '%s'", s);
        if (add_slot(x, n, field, p, c, s, i, len) < 0)
            return -1;
    } else if (s[i] == '[') {
        for (;;) {
            i = skip_spaces(s, i + 1);
            len = name_len(s + i);
            if (len == 0)
                return fail(x, n, ERR_MODEL, field, "expected a slot name in '%s'", s);
            if (add_slot(x, n, field, p, c, s, i, len) < 0)
                return -1;
            i = skip_spaces(s, i + len);
            if (s[i] == ']')
                break;
            if (s[i] != ',')
                return fail(x, n, ERR_MODEL, field, "expected ',' or ']' in '%s'", s);
        }
        if (s[skip_spaces(s, i + 1)] != '\0')
            return fail(x, n, ERR_MODEL, field, "unexpected text after ']' in '%s'", s);
    } else {
        return fail(x, n, ERR_MODEL, field, "expected cell, cell.slot or cell[slot, ...], got '%s'",
                    s);
    }
    long long out = (long long)p->n_to_slots * c->size;
    if (out > MODEL_MAX_ELEMS)
        return fail(x, n, ERR_MODEL, field, "absurd size: %d slots of %d neurons is over 2^31-1",
                    p->n_to_slots, c->size);
    p->out_size = (int)out;
    return 0;
}

enum { PF_NAME, PF_OP, PF_FROM, PF_TO, PF_WEIGHT, PF_BIAS, PF_LEARN, PF_N };

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field proj_fields[PF_N] = {
    [PF_NAME] = {.key = "name", .type = T_NAME, .required = 1, .offset = AT(model_proj, name)},
    [PF_OP] = {.key = "op", .type = T_ENUM, .names = op_names, .offset = AT(model_proj, op)},
    [PF_FROM] = {.key = "from", .type = T_FUNC, .required = 1, .fn = read_from},
    [PF_TO] = {.key = "to", .type = T_FUNC, .required = 1, .fn = read_to},
    [PF_WEIGHT] = {.key = "weight", .type = T_NODE, .required = 1},
    [PF_BIAS] = {.key = "bias", .type = T_NODE},
    [PF_LEARN] = {.key = "learn", .type = T_ENUM, .names = learn_names,
                  .offset = AT(model_proj, learn)},
};
/* clang-format on */

static int
read_proj(struct ctx *x, const yaml_node_t *n, int idx, const char *path)
{
    struct model_proj *p = &x->d->projs[idx];
    struct seen s;
    char field[FIELD_LEN];
    p->pos = pos_of(n);
    p->op = MODEL_OP_DENSE;
    p->learn = MODEL_LEARN_TRACE;
    if (schema_apply(x, n, proj_fields, PF_N, p, path, &s) < 0)
        return -1;
    for (int i = 0; i < idx; i++)
        if (strcmp(x->d->projs[i].name, p->name) == 0) {
            join(field, path, "name");
            return fail(x, s.val[PF_NAME], ERR_MODEL, field,
                        "duplicate name '%s' (projection at line %d)", p->name,
                        x->d->projs[i].pos.line);
        }
    if (p->op == MODEL_OP_ELEMWISE && p->in_size != p->out_size) {
        join(field, path, "op");
        return fail(x, s.val[PF_OP], ERR_MODEL, field,
                    "size mismatch: elemwise needs I = O, got I = %d (from) and O = %d (to)",
                    p->in_size, p->out_size);
    }
    join(field, path, "weight");
    if (p->op == MODEL_OP_DENSE && (long long)p->in_size * p->out_size > MODEL_MAX_ELEMS)
        return fail(x, s.val[PF_WEIGHT], ERR_MODEL, field,
                    "absurd size: I*O = %d*%d = %lld elements, over 2^31-1", p->in_size,
                    p->out_size, (long long)p->in_size * p->out_size);
    if (read_tensor(x, s.val[PF_WEIGHT], p, 0, &p->weight, field) < 0)
        return -1;
    if (s.val[PF_BIAS]) {
        join(field, path, "bias");
        if (read_tensor(x, s.val[PF_BIAS], p, 1, &p->bias, field) < 0)
            return -1;
    }
    return 0;
}

static int
read_projs(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_desc *d = target;
    char path[FIELD_LEN];
    if (check_seq(x, n, field) < 0)
        return -1;
    int count = n_items(n);
    if (count == 0)
        return 0;
    if (!(d->projs = mem_calloc(x->m, (size_t)count, sizeof *d->projs)))
        return nomem(x);
    d->n_projs = count;
    for (int i = 0; i < count; i++) {
        const yaml_node_t *it = seq_item(x, n, i);
        item_path(x, it, field, i, path);
        if (read_proj(x, it, i, path) < 0)
            return -1;
    }
    return 0;
}

/* ---- readouts ----------------------------------------------------------------------- */

static int
read_readout_cell(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_readout *r = target;
    if (!is_scalar(n) || is_null(n))
        return fail_type(x, n, field, "a cell name");
    if (model_find_input(x->d, sval(n)) >= 0)
        return fail(x, n, ERR_MODEL, field,
                    "a readout of input '%s': readouts show a cell's output", sval(n));
    if ((r->cell = model_find_cell(x->d, sval(n))) < 0)
        return fail(x, n, ERR_MODEL, field, "unknown cell '%s'", sval(n));
    return 0;
}

/* clip: [lo, hi] with lo <= hi. */
static int
read_readout_clip(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_readout *r = target;
    char sub[FIELD_LEN];
    if (n->type != YAML_SEQUENCE_NODE || n_items(n) != 2)
        return fail_type(x, n, field, "a pair [lo, hi]");
    fieldf(sub, "%s[0]", field);
    if (read_number(x, seq_item(x, n, 0), sub, &r->clip_lo) < 0)
        return -1;
    fieldf(sub, "%s[1]", field);
    if (read_number(x, seq_item(x, n, 1), sub, &r->clip_hi) < 0)
        return -1;
    if (r->clip_lo > r->clip_hi)
        return fail(x, n, ERR_MODEL, field, "lo %g is above hi %g", r->clip_lo, r->clip_hi);
    r->has_clip = 1;
    return 0;
}

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field readout_fields[] = {
    {.key = "name", .type = T_NAME, .required = 1, .offset = AT(model_readout, name)},
    {.key = "cell", .type = T_FUNC, .required = 1, .fn = read_readout_cell},
    {.key = "clip", .type = T_FUNC, .fn = read_readout_clip},
    {.key = "scale", .type = T_NUM, .offset = AT(model_readout, scale)},
};
/* clang-format on */

static int
read_readouts(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_desc *d = target;
    char path[FIELD_LEN], sub[FIELD_LEN];
    struct seen s;
    if (check_seq(x, n, field) < 0)
        return -1;
    int count = n_items(n);
    if (count == 0)
        return 0;
    if (!(d->readouts = mem_calloc(x->m, (size_t)count, sizeof *d->readouts)))
        return nomem(x);
    d->n_readouts = count;
    for (int i = 0; i < count; i++) {
        const yaml_node_t *it = seq_item(x, n, i);
        struct model_readout *r = &d->readouts[i];
        item_path(x, it, field, i, path);
        r->pos = pos_of(it);
        r->scale = 1.0;
        if (schema_apply(x, it, readout_fields, 4, r, path, &s) < 0)
            return -1;
        for (int j = 0; j < i; j++)
            if (strcmp(d->readouts[j].name, r->name) == 0) {
                join(sub, path, "name");
                return fail(x, s.val[0], ERR_MODEL, sub, "duplicate name '%s' (readout at line %d)",
                            r->name, d->readouts[j].pos.line);
            }
    }
    return 0;
}

/* ---- learning ----------------------------------------------------------------------- */

/* One side of decay_or_rank: an integer literal is a rank R >= 1 -> (R-1)/(R+1); a number
 * with a point or an exponent is a decay in [0, 1). */
static int
read_one_decay(struct ctx *x, const yaml_node_t *n, const char *field, double *lambda)
{
    if (is_plain(n) && is_int_text(sval(n))) {
        long long r;
        if (read_int64(x, n, field, &r) < 0)
            return -1;
        if (r < 1)
            return fail(x, n, ERR_MODEL, field, "a rank must be >= 1, got %lld", r);
        *lambda = (double)(r - 1) / (double)(r + 1);
        return 0;
    }
    double v;
    if (scalar_number(n, &v) < 0)
        return fail_type(x, n, field, "a decay, a rank or a pair [x, f]");
    if (read_number(x, n, field, &v) < 0)
        return -1;
    if (!(v >= 0 && v < 1))
        return fail(x, n, ERR_MODEL, field, "a decay must be in [0, 1), got %g", v);
    *lambda = v;
    return 0;
}

static int
read_decay(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_learning *l = target;
    char sub[FIELD_LEN];
    l->has_decay = 1;
    if (n->type != YAML_SEQUENCE_NODE) {
        if (read_one_decay(x, n, field, &l->lambda_x) < 0)
            return -1;
        l->lambda_f = l->lambda_x;
        return 0;
    }
    if (n_items(n) != 2)
        return fail(x, n, ERR_MODEL, field, "a pair [x, f] has 2 elements, got %d", n_items(n));
    fieldf(sub, "%s[0]", field);
    if (read_one_decay(x, seq_item(x, n, 0), sub, &l->lambda_x) < 0)
        return -1;
    fieldf(sub, "%s[1]", field);
    return read_one_decay(x, seq_item(x, n, 1), sub, &l->lambda_f);
}

static int
read_betas(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_learning *l = target;
    char sub[FIELD_LEN];
    double b[2];
    if (n->type != YAML_SEQUENCE_NODE || n_items(n) != 2)
        return fail_type(x, n, field, "a pair [beta1, beta2]");
    for (int i = 0; i < 2; i++) {
        fieldf(sub, "%s[%d]", field, i);
        const yaml_node_t *it = seq_item(x, n, i);
        if (read_number(x, it, sub, &b[i]) < 0 || check_number(x, it, sub, C_DECAY, b[i]) < 0)
            return -1;
    }
    l->beta1 = b[0];
    l->beta2 = b[1];
    return 0;
}

static const struct enum_name optim_names[] = {
    {"sgd", MODEL_OPTIM_SGD, 0},
    {"momentum", MODEL_OPTIM_MOMENTUM, 0},
    {"adam", MODEL_OPTIM_ADAM, 0},
    {NULL, 0, 0},
};

enum { OF_KIND, OF_LR, OF_MOMENTUM, OF_BETAS, OF_EPS, OF_WD, OF_CLIP, OF_N };

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field optim_fields[OF_N] = {
    [OF_KIND] = {.key = "kind", .type = T_ENUM, .names = optim_names,
                 .offset = AT(model_learning, optimizer)},
    [OF_LR] = {.key = "lr", .type = T_NUM, .check = C_POS, .offset = AT(model_learning, lr)},
    [OF_MOMENTUM] = {.key = "momentum", .type = T_NUM, .check = C_DECAY,
                     .offset = AT(model_learning, momentum)},
    [OF_BETAS] = {.key = "betas", .type = T_FUNC, .fn = read_betas},
    [OF_EPS] = {.key = "eps", .type = T_NUM, .check = C_POS, .offset = AT(model_learning, eps)},
    [OF_WD] = {.key = "weight_decay", .type = T_NUM, .check = C_NONNEG,
               .offset = AT(model_learning, weight_decay)},
    [OF_CLIP] = {.key = "clip_norm", .type = T_NUM_OR_NULL, .check = C_POS,
                 .offset = AT(model_learning, clip_norm)},
};
/* clang-format on */

static int
read_optimizer(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_learning *l = target;
    struct seen s;
    char sub[FIELD_LEN];
    if (schema_apply(x, n, optim_fields, OF_N, l, field, &s) < 0)
        return -1;
    /* Keys of another optimizer kind are mistakes, not options to ignore. */
    static const struct {
        int key;
        enum model_optim kind;
    } only[] = {
        {OF_MOMENTUM, MODEL_OPTIM_MOMENTUM},
        {OF_BETAS, MODEL_OPTIM_ADAM},
        {OF_EPS, MODEL_OPTIM_ADAM},
    };
    for (size_t i = 0; i < sizeof only / sizeof only[0]; i++)
        if (s.key[only[i].key] && l->optimizer != only[i].kind) {
            join(sub, field, optim_fields[only[i].key].key);
            return fail(x, s.key[only[i].key], ERR_MODEL, sub, "only with kind %s",
                        optim_names[only[i].kind].name);
        }
    return 0;
}

static int
read_policy_readout(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_learning *l = target;
    if (!is_scalar(n) || is_null(n))
        return fail_type(x, n, field, "a readout name");
    if ((l->policy_readout = model_find_readout(x->d, sval(n))) < 0)
        return fail(x, n, ERR_MODEL, field, "unknown readout '%s'", sval(n));
    return 0;
}

static const struct enum_name policy_names[] = {
    {"softmax", MODEL_POLICY_SOFTMAX, 0},
    {"gaussian", MODEL_POLICY_GAUSSIAN, 0},
    {NULL, 0, 0},
};

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field policy_fields[] = {
    {.key = "readout", .type = T_FUNC, .required = 1, .fn = read_policy_readout},
    {.key = "kind", .type = T_ENUM, .required = 1, .names = policy_names,
     .offset = AT(model_learning, policy_kind)},
    {.key = "sigma", .type = T_NUM, .check = C_POS, .offset = AT(model_learning, sigma)},
    {.key = "tau_explore", .type = T_NUM, .check = C_POS,
     .offset = AT(model_learning, tau_explore)},
    {.key = "action_hold", .type = T_INT, .check = C_GE1,
     .offset = AT(model_learning, action_hold)},
    {.key = "explore_when_frozen", .type = T_BOOL,
     .offset = AT(model_learning, explore_when_frozen)},
};
/* clang-format on */

static int
read_policy(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct seen s;
    return schema_apply(x, n, policy_fields, 6, target, field, &s);
}

static int
read_critic_readout(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_learning *l = target;
    if (!is_scalar(n) || is_null(n))
        return fail_type(x, n, field, "a readout name");
    if ((l->critic_readout = model_find_readout(x->d, sval(n))) < 0)
        return fail(x, n, ERR_MODEL, field, "unknown readout '%s'", sval(n));
    const struct model_readout *r = &x->d->readouts[l->critic_readout];
    if (x->d->cells[r->cell].size != 1)
        return fail(x, n, ERR_MODEL, field, "readout '%s' has size %d; a critic has size 1",
                    sval(n), x->d->cells[r->cell].size);
    return 0;
}

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field critic_fields[] = {
    {.key = "readout", .type = T_FUNC, .required = 1, .fn = read_critic_readout},
    {.key = "weight", .type = T_NUM, .offset = AT(model_learning, critic_weight)},
};
/* clang-format on */

static int
read_critic(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct seen s;
    return schema_apply(x, n, critic_fields, 2, target, field, &s);
}

static const struct enum_name algo_names[] = {
    {"d_rtrl", MODEL_ALGO_D_RTRL, 0},
    {"es_d_rtrl", MODEL_ALGO_ES_D_RTRL, 0},
    {"hybrid", MODEL_ALGO_HYBRID, 0},
    {NULL, 0, 0},
};

static const struct enum_name signal_names[] = {
    {"target", MODEL_SIGNAL_TARGET, 0},
    {"reward", MODEL_SIGNAL_REWARD, 0},
    {"none", MODEL_SIGNAL_NONE, 0},
    {NULL, 0, 0},
};

static const struct enum_name loss_names[] = {
    {"mse", MODEL_LOSS_MSE, 0},
    {"cross_entropy", MODEL_LOSS_CROSS_ENTROPY, 0},
    {NULL, 0, 0},
};

enum {
    LF_ALGORITHM,
    LF_DECAY,
    LF_BUDGET,
    LF_SIGNAL,
    LF_LOSS,
    LF_OPTIMIZER,
    LF_UPDATE_EVERY,
    LF_POLICY,
    LF_TAU_E,
    LF_TAU_BASELINE,
    LF_CRITIC,
    LF_TAU_GAMMA,
    LF_TAU_LAMBDA,
    LF_DEFER,
    LF_N
};

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field learning_fields[LF_N] = {
    [LF_ALGORITHM] = {.key = "algorithm", .type = T_ENUM, .required = 1, .names = algo_names,
                      .offset = AT(model_learning, algorithm)},
    [LF_DECAY] = {.key = "decay_or_rank", .type = T_FUNC, .fn = read_decay},
    [LF_BUDGET] = {.key = "hybrid_budget", .type = T_INT, .check = C_GE1,
                   .offset = AT(model_learning, hybrid_budget)},
    [LF_SIGNAL] = {.key = "signal", .type = T_ENUM, .names = signal_names,
                   .offset = AT(model_learning, signal)},
    [LF_LOSS] = {.key = "loss", .type = T_ENUM, .names = loss_names,
                 .offset = AT(model_learning, loss)},
    [LF_OPTIMIZER] = {.key = "optimizer", .type = T_FUNC, .fn = read_optimizer},
    [LF_UPDATE_EVERY] = {.key = "update_every", .type = T_INT, .check = C_GE1,
                         .offset = AT(model_learning, update_every)},
    [LF_POLICY] = {.key = "policy", .type = T_FUNC, .fn = read_policy},
    [LF_TAU_E] = {.key = "tau_e", .type = T_NUM, .check = C_POS,
                  .offset = AT(model_learning, tau_e)},
    [LF_TAU_BASELINE] = {.key = "tau_baseline", .type = T_NUM, .check = C_POS,
                         .offset = AT(model_learning, tau_baseline)},
    [LF_CRITIC] = {.key = "critic", .type = T_FUNC, .fn = read_critic},
    [LF_TAU_GAMMA] = {.key = "tau_gamma", .type = T_NUM, .check = C_POS,
                      .offset = AT(model_learning, tau_gamma)},
    [LF_TAU_LAMBDA] = {.key = "tau_lambda", .type = T_NUM, .check = C_POS,
                       .offset = AT(model_learning, tau_lambda)},
    [LF_DEFER] = {.key = "defer", .type = T_INT, .check = C_GE1,
                  .offset = AT(model_learning, defer)},
};
/* clang-format on */

static int
read_learning(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_desc *d = target;
    struct model_learning *l = &d->learning;
    struct seen s;
    char sub[FIELD_LEN];
    l->present = 1;
    l->pos = pos_of(n);
    if (schema_apply(x, n, learning_fields, LF_N, l, field, &s) < 0)
        return -1;
    if (l->algorithm != MODEL_ALGO_D_RTRL && !s.val[LF_DECAY]) {
        join(sub, field, "decay_or_rank");
        return fail(x, n, ERR_MODEL, sub, "missing required field (algorithm %s needs it)",
                    sval(s.val[LF_ALGORITHM]));
    }
    /* hybrid_budget, tau_e and tau_baseline are accepted (and unused) with any algorithm
     * and signal, as DESIGN §2's example writes hybrid_budget beside es_d_rtrl; a policy
     * is different: it makes the engine sample actions, so it needs signal: reward. */
    if (s.key[LF_POLICY] && l->signal != MODEL_SIGNAL_REWARD) {
        join(sub, field, "policy");
        return fail(x, s.key[LF_POLICY], ERR_MODEL, sub, "only with signal: reward");
    }
    if (l->signal == MODEL_SIGNAL_REWARD && !s.val[LF_POLICY]) {
        join(sub, field, "policy");
        return fail(x, n, ERR_MODEL, sub, "missing required field (signal: reward needs it)");
    }
    if (s.key[LF_CRITIC] && l->signal != MODEL_SIGNAL_REWARD) {
        join(sub, field, "critic");
        return fail(x, s.key[LF_CRITIC], ERR_MODEL, sub, "only with signal: reward");
    }
    if (l->critic_readout >= 0 &&
        x->d->readouts[l->critic_readout].cell == x->d->readouts[l->policy_readout].cell) {
        char sub2[FIELD_LEN];
        join(sub2, field, "critic");
        join(sub, sub2, "readout");
        return fail(x, s.val[LF_CRITIC], ERR_MODEL, sub,
                    "the critic needs a cell of its own (the policy's cell is '%s')",
                    x->d->cells[x->d->readouts[l->policy_readout].cell].name);
    }
    /* tau_e and tau_baseline belong to REINFORCE: beside a critic they are ignored, and the
     * compile report says so */
    l->critic_ignores = l->critic_readout >= 0 && (s.key[LF_TAU_E] || s.key[LF_TAU_BASELINE]);
    return 0;
}

/* ---- stats ------------------------------------------------------------------------- */

static const struct enum_name on_off_names[] = {{"on", 1, 0}, {"off", 0, 0}, {NULL, 0, 0}};

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field stats_fields[] = {
    {.key = "drift", .type = T_ENUM, .names = on_off_names, .offset = AT(model_desc, stats_drift)},
};
/* clang-format on */

static int
read_stats(struct ctx *x, const yaml_node_t *n, void *target, const char *field)
{
    struct seen s;
    return schema_apply(x, n, stats_fields, (int)(sizeof stats_fields / sizeof stats_fields[0]),
                        target, field, &s) < 0
               ? -1
               : 0;
}

/* ---- the file ----------------------------------------------------------------------- */

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct field top_fields[] = {
    {.key = "name", .type = T_STR, .required = 1, .offset = AT(model_desc, name)},
    {.key = "dt", .type = T_NUM, .required = 1, .check = C_POS, .offset = AT(model_desc, dt)},
    {.key = "seed", .type = T_U64, .offset = AT(model_desc, seed)},
    {.key = "inputs", .type = T_FUNC, .fn = read_inputs},
    {.key = "cells", .type = T_FUNC, .required = 1, .fn = read_cells},
    {.key = "projections", .type = T_FUNC, .fn = read_projs},
    {.key = "readouts", .type = T_FUNC, .fn = read_readouts},
    {.key = "learning", .type = T_FUNC, .fn = read_learning},
    {.key = "stats", .type = T_FUNC, .fn = read_stats},
};
/* clang-format on */

static void
learning_defaults(struct model_learning *l)
{
    l->algorithm = MODEL_ALGO_D_RTRL;
    l->hybrid_budget = 4;
    l->signal = MODEL_SIGNAL_TARGET;
    l->loss = MODEL_LOSS_MSE;
    l->optimizer = MODEL_OPTIM_SGD;
    l->lr = 1e-3;
    l->momentum = 0.9;
    l->beta1 = 0.9;
    l->beta2 = 0.999;
    l->eps = 1e-8;
    l->update_every = 1;
    l->defer = 1;
    l->policy_readout = -1;
    l->sigma = 0.1;
    l->tau_explore = 0.05;
    l->action_hold = 1;
    l->tau_e = 0.5;
    l->tau_baseline = 5.0;
    l->critic_readout = -1;
    l->critic_weight = 1.0;
    l->tau_gamma = 1.0;
    l->tau_lambda = 0.5;
}

/* A libyaml error as PATH:LINE:COL: yaml: problem. */
static int
yaml_fail(struct ctx *x, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return nomem(x);
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->error == YAML_READER_ERROR) {
        line = 1;
        col = 1;
        for (size_t i = 0; i < p->problem_offset && x->text[i]; i++) {
            if (x->text[i] == '\n') {
                line++;
                col = 1;
            } else if (((unsigned char)x->text[i] & 0xc0) != 0x80) {
                col++;
            }
        }
    }
    const char *problem = p->problem ? p->problem : "syntax error";
    if (p->context)
        return fail_at(x, line, col, ERR_MODEL, "yaml", "%s %s (line %d)", problem, p->context,
                       (int)p->context_mark.line + 1);
    return fail_at(x, line, col, ERR_MODEL, "yaml", "%s", problem);
}

/* Rejects nesting deeper than MAX_DEPTH with libyaml's event API before the document is
 * built: libyaml's scanner is quadratic in the flow nesting depth, so a few hundred KB
 * of '[' would otherwise keep a worker busy for minutes. The pass stops at the first
 * level too deep; a syntax error is left for the document load to report. */
static int
check_depth(struct ctx *x, size_t len)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    if (!yaml_parser_initialize(&parser))
        return nomem(x);
    yaml_parser_set_input_string(&parser, (const unsigned char *)x->text, len);
    int depth = 0, rc = 0;
    for (;;) {
        if (!yaml_parser_parse(&parser, &ev)) {
            if (parser.error == YAML_MEMORY_ERROR)
                rc = nomem(x);
            break;
        }
        yaml_event_type_t type = ev.type;
        if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
            if (++depth > MAX_DEPTH)
                rc = fail_at(x, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                             ERR_MODEL, "(file)", "nested deeper than %d levels", MAX_DEPTH);
        } else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
            depth--;
        }
        yaml_event_delete(&ev);
        if (rc < 0 || type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&parser);
    return rc;
}

static int
parse_doc(struct ctx *x, yaml_parser_t *parser, size_t len)
{
    if (check_depth(x, len) < 0)
        return -1;
    yaml_document_t doc, extra;
    if (!yaml_parser_load(parser, &doc))
        return yaml_fail(x, parser);
    x->doc = &doc;
    int rc = -1;
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        fail_at(x, 1, 1, ERR_MODEL, "(file)", "empty model file");
        goto out;
    }
    if (!yaml_parser_load(parser, &extra)) {
        yaml_fail(x, parser);
        goto out;
    }
    const yaml_node_t *second = yaml_document_get_root_node(&extra);
    if (second) {
        fail(x, second, ERR_MODEL, "(file)", "a model file holds one YAML document");
        yaml_document_delete(&extra);
        goto out;
    }
    yaml_document_delete(&extra);
    struct seen s;
    rc = schema_apply(x, root, top_fields, (int)(sizeof top_fields / sizeof top_fields[0]), x->d,
                      "", &s);
out:
    yaml_document_delete(&doc);
    x->doc = NULL;
    return rc;
}

int
model_parse(const char *text, size_t len, const char *path, const struct mem *m,
            struct model_desc **out, struct err *e)
{
    struct ctx x = {.file = path, .m = m, .e = e};
    struct model_desc *d = mem_calloc(m, 1, sizeof *d);
    if (!d)
        return nomem(&x);
    x.d = d;
    learning_defaults(&d->learning);
    d->stats_drift = 1;
    if (!(d->path = mem_strdup(m, path)) || !(d->text = mem_alloc(m, len + 1))) {
        nomem(&x);
        goto fail;
    }
    memcpy(d->text, text, len);
    d->text[len] = '\0';
    d->text_len = len;
    d->hash = rng_fnv1a(d->text, len);
    x.text = d->text;

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        nomem(&x);
        goto fail;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)d->text, len);
    int rc = parse_doc(&x, &parser, len);
    yaml_parser_delete(&parser);
    if (rc < 0)
        goto fail;
    *out = d;
    return 0;
fail:
    model_free(&d, m);
    return -1;
}

void
model_free(struct model_desc **dp, const struct mem *m)
{
    struct model_desc *d = *dp;
    if (!d)
        return;
    mem_free(m, &d->path);
    mem_free(m, &d->text);
    mem_free(m, &d->name);
    for (int i = 0; i < d->n_inputs; i++) {
        mem_free(m, &d->inputs[i].name);
        mem_free(m, &d->inputs[i].offset);
        mem_free(m, &d->inputs[i].scale);
    }
    mem_free(m, &d->inputs);
    for (int i = 0; i < d->n_cells; i++)
        cell_fini(&d->cells[i], m);
    mem_free(m, &d->cells);
    for (int i = 0; i < d->n_projs; i++) {
        struct model_proj *p = &d->projs[i];
        mem_free(m, &p->name);
        mem_free(m, &p->from);
        tensor_fini(&p->weight, m);
        tensor_fini(&p->bias, m);
    }
    mem_free(m, &d->projs);
    for (int i = 0; i < d->n_readouts; i++)
        mem_free(m, &d->readouts[i].name);
    mem_free(m, &d->readouts);
    mem_free(m, dp);
}

/* ---- files -------------------------------------------------------------------------- */

/* Reads a whole regular file into memory allocated with m. O_NONBLOCK: opening a FIFO
 * must not wait for a writer (it is then refused as not regular). */
static int
read_file(const char *path, const struct mem *m, void **data, size_t *len, struct err *e)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        err_setf(e, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        err_setf(e, ERR_IO, "%s: not a regular file", path);
        fclose(f);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    char *buf = mem_alloc(m, size + 1);
    if (!buf) {
        err_setf(e, ERR_NOMEM, "%s: out of memory", path);
        fclose(f);
        return -1;
    }
    size_t got = fread(buf, 1, size, f);
    int bad = ferror(f) || got != size;
    fclose(f);
    if (bad) {
        mem_free(m, &buf);
        err_setf(e, ERR_IO, "%s: cannot read", path);
        return -1;
    }
    buf[size] = '\0';
    *data = buf;
    *len = size;
    return 0;
}

int
model_load_file(const char *path, const struct mem *m, struct model_desc **out, struct err *e)
{
    void *data;
    size_t len;
    if (read_file(path, m, &data, &len, e) < 0)
        return -1;
    int rc = model_parse(data, len, path, m, out, e);
    mem_free(m, &data);
    return rc;
}

static int
disk_read(void *ctx, const char *rel_path, const struct mem *m, void **data, size_t *len,
          struct err *e)
{
    const char *dir = ctx;
    if (rel_path[0] == '/' || !dir || !dir[0])
        return read_file(rel_path, m, data, len, e);
    size_t n = strlen(dir) + strlen(rel_path) + 2;
    char *full = mem_alloc(m, n);
    if (!full) {
        err_setf(e, ERR_NOMEM, "%s: out of memory", rel_path);
        return -1;
    }
    snprintf(full, n, "%s/%s", dir, rel_path);
    int rc = read_file(full, m, data, len, e);
    mem_free(m, &full);
    return rc;
}

struct model_fs
model_fs_disk(const char *model_dir)
{
    struct model_fs fs = {disk_read, (void *)(uintptr_t)model_dir};
    return fs;
}

void
model_dirname(const char *path, char *buf, size_t buf_len)
{
    if (buf_len == 0)
        return;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') /* "a/b/" names b */
        n--;
    while (n > 0 && path[n - 1] != '/')
        n--;
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n == 0)
        snprintf(buf, buf_len, ".");
    else
        snprintf(buf, buf_len, "%.*s", (int)n, path);
}

/* ---- lookups ------------------------------------------------------------------------ */

int
model_find_input(const struct model_desc *d, const char *name)
{
    for (int i = 0; i < d->n_inputs; i++)
        if (d->inputs[i].name && strcmp(d->inputs[i].name, name) == 0)
            return i;
    return -1;
}

int
model_find_cell(const struct model_desc *d, const char *name)
{
    for (int i = 0; i < d->n_cells; i++)
        if (d->cells[i].name && strcmp(d->cells[i].name, name) == 0)
            return i;
    return -1;
}

int
model_find_proj(const struct model_desc *d, const char *name)
{
    for (int i = 0; i < d->n_projs; i++)
        if (d->projs[i].name && strcmp(d->projs[i].name, name) == 0)
            return i;
    return -1;
}

int
model_find_readout(const struct model_desc *d, const char *name)
{
    for (int i = 0; i < d->n_readouts; i++)
        if (d->readouts[i].name && strcmp(d->readouts[i].name, name) == 0)
            return i;
    return -1;
}
