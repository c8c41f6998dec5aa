/* The schema machinery of the model reader: node access, scalar readers, value checks,
 * table application and positions inside scalars, each error with its file, line,
 * column and field. */
#include "mschema.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- messages ----------------------------------------------------------------------- */

static int fail_v(struct mschema *x, int line, int col, enum err_code code, const char *field,
                  const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

static int
fail_v(struct mschema *x, int line, int col, enum err_code code, const char *field, const char *fmt,
       va_list ap)
{
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    err_setf(x->e, code, "%s:%d:%d: %s: %s", x->file, line, col, field, msg);
    return -1;
}

int
mschema_fail_at(struct mschema *x, int line, int col, enum err_code code, const char *field,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(x, line, col, code, field, fmt, ap);
    va_end(ap);
    return -1;
}

int
mschema_fail(struct mschema *x, const yaml_node_t *n, enum err_code code, const char *field,
             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(x, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1, code, field, fmt, ap);
    va_end(ap);
    return -1;
}

int
mschema_nomem(struct mschema *x)
{
    err_setf(x->e, ERR_NOMEM, "%s: out of memory", x->file);
    return -1;
}

struct model_pos
mschema_pos(const yaml_node_t *n)
{
    struct model_pos p = {(int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
    return p;
}

void
mschema_fieldf(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, MSCHEMA_FIELD_LEN, fmt, ap);
    va_end(ap);
}

/* ---- nodes and scalars -------------------------------------------------------------- */

static const yaml_node_t *
node_at(const struct mschema *x, int id)
{
    return yaml_document_get_node(x->doc, id);
}

const char *
mschema_sval(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

int
mschema_is_scalar(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE;
}

int
mschema_is_plain(const yaml_node_t *n)
{
    return mschema_is_scalar(n) && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* An empty plain scalar, `~` or `null`: YAML's null. */
int
mschema_is_null(const yaml_node_t *n)
{
    if (!mschema_is_plain(n))
        return 0;
    const char *s = mschema_sval(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

int
mschema_n_items(const yaml_node_t *n)
{
    if (n->type == YAML_SEQUENCE_NODE)
        return (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (n->type == YAML_MAPPING_NODE)
        return (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    return 0;
}

const yaml_node_t *
mschema_seq_item(const struct mschema *x, const yaml_node_t *n, int i)
{
    return node_at(x, n->data.sequence.items.start[i]);
}

const yaml_node_t *
mschema_pair_key(const struct mschema *x, const yaml_node_t *n, int i)
{
    return node_at(x, n->data.mapping.pairs.start[i].key);
}

const yaml_node_t *
mschema_pair_val(const struct mschema *x, const yaml_node_t *n, int i)
{
    return node_at(x, n->data.mapping.pairs.start[i].value);
}

/* The value of scalar key `key` in mapping n, or NULL. */
const yaml_node_t *
mschema_map_find(const struct mschema *x, const yaml_node_t *n, const char *key)
{
    if (n->type != YAML_MAPPING_NODE)
        return NULL;
    for (int i = 0; i < mschema_n_items(n); i++) {
        const yaml_node_t *k = mschema_pair_key(x, n, i);
        if (mschema_is_scalar(k) && strcmp(mschema_sval(k), key) == 0)
            return mschema_pair_val(x, n, i);
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
    else if (mschema_is_null(n))
        snprintf(buf, len, "nothing");
    else if (n->data.scalar.length > 40)
        snprintf(buf, len, "'%.40s...'", mschema_sval(n));
    else
        snprintf(buf, len, "'%s'", mschema_sval(n));
}

int
mschema_fail_type(struct mschema *x, const yaml_node_t *n, const char *field, const char *expected)
{
    char got[64];
    describe(n, got, sizeof got);
    return mschema_fail(x, n, ERR_MODEL, field, "expected %s, got %s", expected, got);
}

int
mschema_is_name(const char *s)
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
void
mschema_join(char *out, const char *path, const char *key)
{
    if (mschema_is_name(key)) {
        if (path[0])
            mschema_fieldf(out, "%s.%s", path, key);
        else
            mschema_fieldf(out, "%s", key);
        return;
    }
    char safe[40];
    size_t n = 0;
    for (; key[n] && n < 32; n++)
        safe[n] = ((unsigned char)key[n] < 0x20 || key[n] == 0x7f || key[n] == '\'') ? '?' : key[n];
    while (key[n] && n > 0 && ((unsigned char)key[n] & 0xc0) == 0x80)
        n--; /* cut on a character boundary */
    safe[n] = '\0';
    mschema_fieldf(out, "%s['%s%s']", path, safe, key[n] ? "..." : "");
}

/* ^[+-]?[0-9]+$ */
int
mschema_is_int_text(const char *s)
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
int
mschema_scalar_number(const yaml_node_t *n, double *v)
{
    if (!mschema_is_plain(n))
        return -1;
    const char *s = mschema_sval(n);
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

int
mschema_read_number(struct mschema *x, const yaml_node_t *n, const char *field, double *out)
{
    int rc = mschema_scalar_number(n, out);
    if (rc < 0)
        return mschema_fail_type(x, n, field, "a number");
    if (rc > 0)
        return mschema_fail(x, n, ERR_MODEL, field, "NaN or Inf is not allowed, got '%s'",
                            mschema_sval(n));
    return 0;
}

int
mschema_read_int64(struct mschema *x, const yaml_node_t *n, const char *field, long long *out)
{
    if (!mschema_is_plain(n) || !mschema_is_int_text(mschema_sval(n)))
        return mschema_fail_type(x, n, field, "an integer");
    errno = 0;
    long long v = strtoll(mschema_sval(n), NULL, 10);
    if (errno == ERANGE)
        return mschema_fail(x, n, ERR_MODEL, field, "integer out of range: '%s'", mschema_sval(n));
    *out = v;
    return 0;
}

static int
read_u64(struct mschema *x, const yaml_node_t *n, const char *field, uint64_t *out)
{
    if (!mschema_is_plain(n) || !mschema_is_int_text(mschema_sval(n)))
        return mschema_fail_type(x, n, field, "a non-negative integer");
    if (mschema_sval(n)[0] == '-' &&
        strspn(mschema_sval(n) + 1, "0") != strlen(mschema_sval(n) + 1))
        return mschema_fail(x, n, ERR_MODEL, field, "must be a non-negative integer, got %s",
                            mschema_sval(n));
    errno = 0;
    unsigned long long v = strtoull(mschema_sval(n)[0] == '-' ? "0" : mschema_sval(n), NULL, 10);
    if (errno == ERANGE)
        return mschema_fail(x, n, ERR_MODEL, field, "integer out of range: '%s'", mschema_sval(n));
    *out = (uint64_t)v;
    return 0;
}

static int
read_bool(struct mschema *x, const yaml_node_t *n, const char *field, int *out)
{
    static const char *const t[] = {"true", "True", "TRUE"};
    static const char *const f[] = {"false", "False", "FALSE"};
    if (mschema_is_plain(n))
        for (int i = 0; i < 3; i++) {
            if (strcmp(mschema_sval(n), t[i]) == 0)
                return *out = 1, 0;
            if (strcmp(mschema_sval(n), f[i]) == 0)
                return *out = 0, 0;
        }
    return mschema_fail_type(x, n, field, "true or false");
}

/* A string value: any non-null scalar, allocated. */
static int
read_string(struct mschema *x, const yaml_node_t *n, const char *field, char **out)
{
    if (!mschema_is_scalar(n) || mschema_is_null(n))
        return mschema_fail_type(x, n, field, "a string");
    if (!(*out = mem_strdup(x->m, mschema_sval(n))))
        return mschema_nomem(x);
    return 0;
}

static int
read_name(struct mschema *x, const yaml_node_t *n, const char *field, char **out)
{
    if (!mschema_is_scalar(n) || mschema_is_null(n))
        return mschema_fail_type(x, n, field, "a name");
    if (!mschema_is_name(mschema_sval(n)))
        return mschema_fail(x, n, ERR_MODEL, field,
                            "invalid name '%s': names match [A-Za-z_][A-Za-z0-9_]*",
                            mschema_sval(n));
    return read_string(x, n, field, out);
}

/* ---- value checks ------------------------------------------------------------------- */

int
mschema_check_number(struct mschema *x, const yaml_node_t *n, const char *field,
                     enum mschema_check c, double v)
{
    switch (c) {
    case MSCHEMA_CHECK_POS:
        if (!(v > 0))
            return mschema_fail(x, n, ERR_MODEL, field, "must be > 0, got %g", v);
        break;
    case MSCHEMA_CHECK_NONNEG:
        if (!(v >= 0))
            return mschema_fail(x, n, ERR_MODEL, field, "must be >= 0, got %g", v);
        break;
    case MSCHEMA_CHECK_UNIT:
        if (!(v >= 0 && v <= 1))
            return mschema_fail(x, n, ERR_MODEL, field, "must be in [0, 1], got %g", v);
        break;
    case MSCHEMA_CHECK_DECAY:
        if (!(v >= 0 && v < 1))
            return mschema_fail(x, n, ERR_MODEL, field, "must be in [0, 1), got %g", v);
        break;
    case MSCHEMA_CHECK_ANY:
    case MSCHEMA_CHECK_GE1:
    case MSCHEMA_CHECK_SIZE:
        break;
    }
    return 0;
}

static int
check_int(struct mschema *x, const yaml_node_t *n, const char *field, enum mschema_check c,
          long long v)
{
    if (c == MSCHEMA_CHECK_SIZE && v > MODEL_MAX_ELEMS)
        return mschema_fail(x, n, ERR_MODEL, field, "absurd size %lld: over 2^31-1 elements", v);
    if ((c == MSCHEMA_CHECK_SIZE || c == MSCHEMA_CHECK_GE1) && v < 1)
        return mschema_fail(x, n, ERR_MODEL, field, "must be >= 1, got %lld", v);
    if (v > INT_MAX || v < INT_MIN)
        return mschema_fail(x, n, ERR_MODEL, field, "integer out of range: %lld", v);
    return 0;
}

/* ---- schema tables ------------------------------------------------------------------ */

static void
list_names(const struct mschema_enum *names, char *buf, size_t len)
{
    buf[0] = '\0';
    for (const struct mschema_enum *e = names; e->name; e++) {
        if (e->is_reserved)
            continue;
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", used ? ", " : "", e->name);
    }
}

static int
read_enum(struct mschema *x, const yaml_node_t *n, const char *field,
          const struct mschema_enum *names, int *out)
{
    char list[256];
    list_names(names, list, sizeof list);
    if (!mschema_is_scalar(n) || mschema_is_null(n)) {
        char what[300];
        snprintf(what, sizeof what, "one of %s", list);
        return mschema_fail_type(x, n, field, what);
    }
    for (const struct mschema_enum *e = names; e->name; e++) {
        if (strcmp(e->name, mschema_sval(n)) != 0)
            continue;
        if (e->is_reserved)
            return mschema_fail(x, n, ERR_UNSUPPORTED, field, "'%s' is not supported yet", e->name);
        *out = e->value;
        return 0;
    }
    return mschema_fail(x, n, ERR_MODEL, field, "unknown value '%s' (expected one of: %s)",
                        mschema_sval(n), list);
}

static int
read_field(struct mschema *x, const struct mschema_field *f, const yaml_node_t *n, void *target,
           const char *field)
{
    char *p = (char *)target + f->offset;
    double v = 0;
    long long i = 0;
    switch (f->type) {
    case MSCHEMA_TYPE_STR:
        return read_string(x, n, field, (char **)(void *)p);
    case MSCHEMA_TYPE_NAME:
        return read_name(x, n, field, (char **)(void *)p);
    case MSCHEMA_TYPE_NUM:
        if (mschema_read_number(x, n, field, &v) < 0 ||
            mschema_check_number(x, n, field, f->check, v) < 0)
            return -1;
        *(double *)(void *)p = v;
        return 0;
    case MSCHEMA_TYPE_NUM_OR_NULL:
        if (mschema_is_null(n))
            v = 0;
        else if (mschema_read_number(x, n, field, &v) < 0 ||
                 mschema_check_number(x, n, field, f->check, v) < 0)
            return -1;
        *(double *)(void *)p = v;
        return 0;
    case MSCHEMA_TYPE_INT:
        if (mschema_read_int64(x, n, field, &i) < 0 || check_int(x, n, field, f->check, i) < 0)
            return -1;
        *(int *)(void *)p = (int)i;
        return 0;
    case MSCHEMA_TYPE_U64:
        return read_u64(x, n, field, (uint64_t *)(void *)p);
    case MSCHEMA_TYPE_BOOL:
        return read_bool(x, n, field, (int *)(void *)p);
    case MSCHEMA_TYPE_ENUM:
        return read_enum(x, n, field, f->names, (int *)(void *)p);
    case MSCHEMA_TYPE_FUNC:
        return f->fn(x, n, target, field);
    case MSCHEMA_TYPE_NODE:
        return 0;
    }
    return 0;
}

/* Applies table f[0..n_f) to mapping `map`: rejects unknown and duplicate keys, reports
 * the first missing required key, then reads every present value in table order into
 * `target`. s receives the key and value nodes of each field. */
int
mschema_apply(struct mschema *x, const yaml_node_t *map, const struct mschema_field *f, int n_f,
              void *target, const char *path, struct mschema_seen *s)
{
    char field[MSCHEMA_FIELD_LEN];
    memset(s, 0, sizeof *s);
    if (map->type != YAML_MAPPING_NODE)
        return mschema_fail_type(x, map, path[0] ? path : "(file)", "a mapping");
    for (int p = 0; p < mschema_n_items(map); p++) {
        const yaml_node_t *k = mschema_pair_key(x, map, p);
        if (!mschema_is_scalar(k))
            return mschema_fail(x, k, ERR_MODEL, path[0] ? path : "(file)",
                                "keys must be plain names");
        mschema_join(field, path, mschema_sval(k));
        int i = 0;
        while (i < n_f && strcmp(f[i].key, mschema_sval(k)) != 0)
            i++;
        if (i == n_f) {
            char keys[400] = "";
            for (int j = 0; j < n_f; j++) {
                size_t used = strlen(keys);
                snprintf(keys + used, sizeof keys - used, "%s%s", j ? ", " : "", f[j].key);
            }
            return mschema_fail(x, k, ERR_MODEL, field, "unknown key (expected one of: %s)", keys);
        }
        if (s->key[i])
            return mschema_fail(x, k, ERR_MODEL, field, "duplicate key (first at line %d)",
                                (int)s->key[i]->start_mark.line + 1);
        s->key[i] = k;
        s->val[i] = mschema_pair_val(x, map, p);
    }
    for (int i = 0; i < n_f; i++)
        if (f[i].required && !s->val[i]) {
            mschema_join(field, path, f[i].key);
            return mschema_fail(x, map, ERR_MODEL, field, "missing required field");
        }
    for (int i = 0; i < n_f; i++) {
        if (!s->val[i])
            continue;
        mschema_join(field, path, f[i].key);
        if (read_field(x, &f[i], s->val[i], target, field) < 0)
            return -1;
    }
    return 0;
}

/* Checks that n is a mapping with scalar keys and no key twice (free-form maps such as
 * params, states, define, update). */
int
mschema_map_check(struct mschema *x, const yaml_node_t *n, const char *field)
{
    char sub[MSCHEMA_FIELD_LEN];
    if (n->type != YAML_MAPPING_NODE)
        return mschema_fail_type(x, n, field, "a mapping");
    for (int i = 0; i < mschema_n_items(n); i++) {
        const yaml_node_t *k = mschema_pair_key(x, n, i);
        if (!mschema_is_scalar(k))
            return mschema_fail(x, k, ERR_MODEL, field, "keys must be plain names");
        for (int j = 0; j < i; j++)
            if (strcmp(mschema_sval(mschema_pair_key(x, n, j)), mschema_sval(k)) == 0) {
                mschema_join(sub, field, mschema_sval(k));
                return mschema_fail(x, k, ERR_MODEL, sub, "duplicate key (first at line %d)",
                                    (int)mschema_pair_key(x, n, j)->start_mark.line + 1);
            }
    }
    return 0;
}

/* "seq.NAME" when item n has a valid name, else "seq[i]". */
void
mschema_item_path(const struct mschema *x, const yaml_node_t *n, const char *seq, int i, char *out)
{
    const yaml_node_t *name = mschema_map_find(x, n, "name");
    if (name && mschema_is_scalar(name) && mschema_is_name(mschema_sval(name)))
        mschema_fieldf(out, "%s.%s", seq, mschema_sval(name));
    else
        mschema_fieldf(out, "%s[%d]", seq, i);
}

int
mschema_check_seq(struct mschema *x, const yaml_node_t *n, const char *field)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return mschema_fail_type(x, n, field, "a sequence");
    return 0;
}

/* ---- positions inside scalars ------------------------------------------------------- */

/* The byte index of a libyaml mark (0-based line and column in characters). */
static size_t
mark_byte(const struct mschema *x, size_t line, size_t col)
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
struct model_pos
mschema_scalar_locate(const struct mschema *x, const yaml_node_t *n, size_t offset)
{
    const char *v = mschema_sval(n);
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

int
mschema_find_str(char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0)
            return i;
    return -1;
}
