/* The model file's schema machinery: libyaml nodes read against static key tables, every
 * error as "PATH:LINE:COLUMN: FIELD: message". Engine layer, used by the model reader
 * only (model.c and its sections mcell.c, mproj.c, mlearn.c); it knows no model key.
 *
 * A mapping kind is a table of struct mschema_field, one row per key (type, required,
 * check, where the value goes, or a handler). mschema_apply checks the keys first
 * (unknown, duplicate, missing), then reads the values in table order. Every function
 * that can fail returns 0 or -1 with the error in x->e; the first error stops the parse. */
#ifndef ETRACE_MSCHEMA_H
#define ETRACE_MSCHEMA_H

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "err.h"
#include "mem.h"
#include "model.h"

enum { MSCHEMA_FIELD_LEN = 256, MSCHEMA_MAX_FIELDS = 16 };

/* The parse in progress. */
struct mschema {
    const char *file;     /* the model path, for messages */
    const char *text;     /* the file text, NUL-terminated (d->text) */
    yaml_document_t *doc; /* the loaded document; its nodes live until the parse ends */
    const struct mem *m;  /* allocates everything the description owns */
    struct err *e;        /* receives the first error */
    struct model_desc *d; /* the description being filled (owned by model_parse) */
};

/* What a number must satisfy beyond being finite. */
enum mschema_check {
    MSCHEMA_CHECK_ANY,    /* any finite value */
    MSCHEMA_CHECK_POS,    /* > 0 */
    MSCHEMA_CHECK_NONNEG, /* >= 0 */
    MSCHEMA_CHECK_UNIT,   /* in [0, 1] */
    MSCHEMA_CHECK_DECAY,  /* in [0, 1) */
    MSCHEMA_CHECK_GE1,    /* integer >= 1 */
    MSCHEMA_CHECK_SIZE    /* integer in [1, 2^31 - 1] */
};

/* How a key's value is read. */
enum mschema_type {
    MSCHEMA_TYPE_STR,         /* char *, any non-null scalar */
    MSCHEMA_TYPE_NAME,        /* char *, [A-Za-z_][A-Za-z0-9_]* */
    MSCHEMA_TYPE_NUM,         /* double, finite, then `check` */
    MSCHEMA_TYPE_NUM_OR_NULL, /* double; null -> 0 (meaning none) */
    MSCHEMA_TYPE_INT,         /* int, then `check` */
    MSCHEMA_TYPE_U64,         /* uint64_t, non-negative */
    MSCHEMA_TYPE_BOOL,        /* int, true or false */
    MSCHEMA_TYPE_ENUM,        /* int, one of `names` */
    MSCHEMA_TYPE_NODE,        /* recorded only: the caller reads it */
    MSCHEMA_TYPE_FUNC         /* handled by `fn` */
};

/* One allowed value of an enumerated key. */
struct mschema_enum {
    const char *name;
    int value;
    int is_reserved; /* part of the format, answered "not supported yet" */
};

/* One key of a mapping kind. */
struct mschema_field {
    const char *key;
    enum mschema_type type;
    int required;
    enum mschema_check check;
    size_t offset;                    /* where the value goes in the target struct */
    const struct mschema_enum *names; /* MSCHEMA_TYPE_ENUM: terminated by a NULL name */
    /* MSCHEMA_TYPE_FUNC: reads node n into target; field names it in messages */
    int (*fn)(struct mschema *x, const yaml_node_t *n, void *target, const char *field);
};

/* Where field f of struct s goes: the tables read better with a short name. */
#define MSCHEMA_AT(s, f) offsetof(struct s, f)

/* The key and value nodes found for each field of a table (NULL when absent). */
struct mschema_seen {
    const yaml_node_t *key[MSCHEMA_MAX_FIELDS];
    const yaml_node_t *val[MSCHEMA_MAX_FIELDS];
};

/* ---- messages: each returns -1 --------------------------------------------------------- */

/* Reports an error at a 1-based line and column. */
int mschema_fail_at(struct mschema *x, int line, int col, enum err_code code, const char *field,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Reports an error at the start of node n. */
int mschema_fail(struct mschema *x, const yaml_node_t *n, enum err_code code, const char *field,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* "expected EXPECTED, got WHAT-N-IS" at n (ERR_MODEL). */
int mschema_fail_type(struct mschema *x, const yaml_node_t *n, const char *field,
                      const char *expected);

/* "PATH: out of memory" (ERR_NOMEM). */
int mschema_nomem(struct mschema *x);

/* ---- field paths ------------------------------------------------------------------------ */

/* Formats a field path into out[MSCHEMA_FIELD_LEN]; a path too long is cut, which only
 * shortens a message. */
void mschema_fieldf(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* field = path.key (key alone at the top); a key that is not a name (a typo, a stray
 * quote) is shown as path['key'], cut to 32 bytes with control characters replaced.
 * out has MSCHEMA_FIELD_LEN bytes. */
void mschema_join(char *out, const char *path, const char *key);

/* "seq.NAME" when item n has a valid name, else "seq[i]", into out[MSCHEMA_FIELD_LEN]. */
void mschema_item_path(const struct mschema *x, const yaml_node_t *n, const char *seq, int i,
                       char *out);

/* ---- nodes ------------------------------------------------------------------------------ */

/* Where node n starts in the file. */
struct model_pos mschema_pos(const yaml_node_t *n);

/* Where, in the file, character `offset` of scalar n's value is. Exact for a scalar on
 * one line; for quoted, folded or block scalars the value is walked against the source. */
struct model_pos mschema_scalar_locate(const struct mschema *x, const yaml_node_t *n,
                                       size_t offset);

/* A scalar's value (n must be a scalar). */
const char *mschema_sval(const yaml_node_t *n);

int mschema_is_scalar(const yaml_node_t *n);

/* A plain (unquoted) scalar. */
int mschema_is_plain(const yaml_node_t *n);

/* An empty plain scalar, `~` or `null`: YAML's null. */
int mschema_is_null(const yaml_node_t *n);

/* Items of a sequence or pairs of a mapping; 0 for a scalar. */
int mschema_n_items(const yaml_node_t *n);

/* Item i of sequence n; key and value of pair i of mapping n. */
const yaml_node_t *mschema_seq_item(const struct mschema *x, const yaml_node_t *n, int i);
const yaml_node_t *mschema_pair_key(const struct mschema *x, const yaml_node_t *n, int i);
const yaml_node_t *mschema_pair_val(const struct mschema *x, const yaml_node_t *n, int i);

/* The value of scalar key `key` in mapping n, or NULL. */
const yaml_node_t *mschema_map_find(const struct mschema *x, const yaml_node_t *n, const char *key);

/* ---- scalars and checks ----------------------------------------------------------------- */

/* [A-Za-z_][A-Za-z0-9_]* */
int mschema_is_name(const char *s);

/* ^[+-]?[0-9]+$ */
int mschema_is_int_text(const char *s);

/* A plain scalar as a number: 0 and *v when finite, 1 when NaN or Inf (strtod's nan/inf
 * or YAML's .nan/.inf), -1 when not a number at all. Reports nothing. */
int mschema_scalar_number(const yaml_node_t *n, double *v);

/* A finite number into *out. */
int mschema_read_number(struct mschema *x, const yaml_node_t *n, const char *field, double *out);

/* A plain integer into *out (range checked against long long only). */
int mschema_read_int64(struct mschema *x, const yaml_node_t *n, const char *field, long long *out);

/* Checks v against c (MSCHEMA_CHECK_GE1 and _SIZE are integer checks: a no-op here). */
int mschema_check_number(struct mschema *x, const yaml_node_t *n, const char *field,
                         enum mschema_check c, double v);

/* Index of s in names[0..n) (NULL entries skipped), or -1. */
int mschema_find_str(char *const *names, int n, const char *s);

/* ---- mappings and sequences ------------------------------------------------------------- */

/* Applies table f[0..n_f) to mapping `map`: rejects unknown and duplicate keys, reports
 * the first missing required key, then reads every present value in table order into
 * `target`. s receives the key and value nodes of each field. */
int mschema_apply(struct mschema *x, const yaml_node_t *map, const struct mschema_field *f, int n_f,
                  void *target, const char *path, struct mschema_seen *s);

/* Checks that n is a mapping with scalar keys and no key twice (free-form maps such as
 * params, states, define, update). */
int mschema_map_check(struct mschema *x, const yaml_node_t *n, const char *field);

/* Checks that n is a sequence. */
int mschema_check_seq(struct mschema *x, const yaml_node_t *n, const char *field);

#endif
