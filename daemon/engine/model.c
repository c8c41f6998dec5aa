/* The model file (DESIGN §2): YAML text -> struct model_desc, validated against static
 * schema tables so that every error names its file, line, column and field.
 *
 * libyaml's document API gives a node graph with marks; each mapping kind has a table of
 * its keys (type, required, where the value goes, or a handler; mschema.h applies them).
 * Applying a table is two passes: the keys are checked first (unknown, duplicate,
 * missing), then the values are read in table order, which is also the dependency order
 * (dt before cells, cells before projections, readouts before the learning policy). The
 * first error stops the parse; whatever was built so far is freed by model_free, which
 * accepts a half-built description because every array is zero-filled when it is
 * allocated.
 *
 * This file holds the top-level keys, `inputs:`, `readouts:` and `stats:`; the big
 * sections have their own files: mcell.c (`cells:`), mproj.c (`projections:`) and
 * mlearn.c (`learning:`). */
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <yaml.h>

#include "cell.h"
#include "mcell.h"
#include "mlearn.h"
#include "mproj.h"
#include "mschema.h"
#include "rng.h"

enum { MAX_DEPTH = 64 };

/* ---- inputs ------------------------------------------------------------------------- */

static const struct mschema_enum input_kinds[] = {
    {"analog", MODEL_INPUT_ANALOG, 0},
    {"spikes", MODEL_INPUT_SPIKES, 0},
    {"token", 0, 1},
    {NULL, 0, 0},
};

/* A number, or a list of `size` numbers, into v[size] (allocated). */
static int
read_vector(struct mschema *x, const yaml_node_t *n, const char *field, int size, double **out)
{
    char sub[MSCHEMA_FIELD_LEN];
    int is_list = n->type == YAML_SEQUENCE_NODE;
    if (is_list && mschema_n_items(n) != size)
        return mschema_fail(x, n, ERR_MODEL, field, "%d values for an input of size %d",
                            mschema_n_items(n), size);
    if (!(*out = mem_calloc(x->m, (size_t)size, sizeof **out)))
        return mschema_nomem(x);
    for (int i = 0; i < size; i++) {
        const yaml_node_t *it = is_list ? mschema_seq_item(x, n, i) : n;
        if (is_list)
            mschema_fieldf(sub, "%s[%d]", field, i);
        else
            mschema_fieldf(sub, "%s", field);
        if (mschema_read_number(x, it, sub, &(*out)[i]) < 0)
            return -1;
    }
    return 0;
}

static int
read_input_offset(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_input *in = target;
    return read_vector(x, n, field, in->size, &in->offset);
}

static int
read_input_scale(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_input *in = target;
    return read_vector(x, n, field, in->size, &in->scale);
}

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct mschema_field normalize_fields[] = {
    {.key = "tau", .type = MSCHEMA_TYPE_NUM, .required = 1, .check = MSCHEMA_CHECK_POS,
     .offset = MSCHEMA_AT(model_input, norm_tau)},
    {.key = "eps", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_POS,
     .offset = MSCHEMA_AT(model_input, norm_eps)},
};
/* clang-format on */

static int
read_input_normalize(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct mschema_seen s;
    return mschema_apply(x, n, normalize_fields, 2, target, field, &s);
}

enum { IF_NAME, IF_SIZE, IF_KIND, IF_OFFSET, IF_SCALE, IF_NORMALIZE, IF_N };

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct mschema_field input_fields[IF_N] = {
    [IF_NAME] = {.key = "name", .type = MSCHEMA_TYPE_NAME, .required = 1,
                 .offset = MSCHEMA_AT(model_input, name)},
    [IF_SIZE] = {.key = "size", .type = MSCHEMA_TYPE_INT, .required = 1,
                 .check = MSCHEMA_CHECK_SIZE,
                 .offset = MSCHEMA_AT(model_input, size)},
    [IF_KIND] = {.key = "kind", .type = MSCHEMA_TYPE_ENUM, .names = input_kinds,
                 .offset = MSCHEMA_AT(model_input, kind)},
    [IF_OFFSET] = {.key = "offset", .type = MSCHEMA_TYPE_FUNC, .fn = read_input_offset},
    [IF_SCALE] = {.key = "scale", .type = MSCHEMA_TYPE_FUNC, .fn = read_input_scale},
    [IF_NORMALIZE] = {.key = "normalize", .type = MSCHEMA_TYPE_FUNC, .fn = read_input_normalize},
};
/* clang-format on */

static int
read_inputs(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_desc *d = target;
    char path[MSCHEMA_FIELD_LEN], sub[MSCHEMA_FIELD_LEN];
    struct mschema_seen s;
    if (mschema_check_seq(x, n, field) < 0)
        return -1;
    int count = mschema_n_items(n);
    if (count == 0)
        return 0;
    if (!(d->inputs = mem_calloc(x->m, (size_t)count, sizeof *d->inputs)))
        return mschema_nomem(x);
    d->n_inputs = count;
    for (int i = 0; i < count; i++) {
        const yaml_node_t *it = mschema_seq_item(x, n, i);
        struct model_input *in = &d->inputs[i];
        mschema_item_path(x, it, field, i, path);
        in->pos = mschema_pos(it);
        in->kind = MODEL_INPUT_ANALOG;
        in->norm_eps = 1e-8;
        if (mschema_apply(x, it, input_fields, IF_N, in, path, &s) < 0)
            return -1;
        mschema_join(sub, path, "name");
        if (mcell_check_unit_name(x, s.val[0], sub, in->name, i, 0) < 0)
            return -1;
        /* the plant interface: an analog input's transform, one kind at a time */
        for (int k = IF_OFFSET; k < IF_N; k++)
            if (s.key[k] && in->kind != MODEL_INPUT_ANALOG) {
                mschema_join(sub, path, input_fields[k].key);
                return mschema_fail(x, s.key[k], ERR_MODEL, sub, "only on an analog input");
            }
        if (s.key[IF_NORMALIZE] && (s.key[IF_OFFSET] || s.key[IF_SCALE])) {
            mschema_join(sub, path, "normalize");
            return mschema_fail(x, s.key[IF_NORMALIZE], ERR_MODEL, sub,
                                "normalize replaces offset and scale: give one or the other");
        }
    }
    return 0;
}

/* ---- readouts ----------------------------------------------------------------------- */

static int
read_readout_cell(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_readout *r = target;
    if (!mschema_is_scalar(n) || mschema_is_null(n))
        return mschema_fail_type(x, n, field, "a cell name");
    if (model_find_input(x->d, mschema_sval(n)) >= 0)
        return mschema_fail(x, n, ERR_MODEL, field,
                            "a readout of input '%s': readouts show a cell's output",
                            mschema_sval(n));
    if ((r->cell = model_find_cell(x->d, mschema_sval(n))) < 0)
        return mschema_fail(x, n, ERR_MODEL, field, "unknown cell '%s'", mschema_sval(n));
    return 0;
}

/* clip: [lo, hi] with lo <= hi. */
static int
read_readout_clip(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_readout *r = target;
    char sub[MSCHEMA_FIELD_LEN];
    if (n->type != YAML_SEQUENCE_NODE || mschema_n_items(n) != 2)
        return mschema_fail_type(x, n, field, "a pair [lo, hi]");
    mschema_fieldf(sub, "%s[0]", field);
    if (mschema_read_number(x, mschema_seq_item(x, n, 0), sub, &r->clip_lo) < 0)
        return -1;
    mschema_fieldf(sub, "%s[1]", field);
    if (mschema_read_number(x, mschema_seq_item(x, n, 1), sub, &r->clip_hi) < 0)
        return -1;
    if (r->clip_lo > r->clip_hi)
        return mschema_fail(x, n, ERR_MODEL, field, "lo %g is above hi %g", r->clip_lo, r->clip_hi);
    r->has_clip = 1;
    return 0;
}

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct mschema_field readout_fields[] = {
    {.key = "name", .type = MSCHEMA_TYPE_NAME, .required = 1,
     .offset = MSCHEMA_AT(model_readout, name)},
    {.key = "cell", .type = MSCHEMA_TYPE_FUNC, .required = 1, .fn = read_readout_cell},
    {.key = "clip", .type = MSCHEMA_TYPE_FUNC, .fn = read_readout_clip},
    {.key = "scale", .type = MSCHEMA_TYPE_NUM, .offset = MSCHEMA_AT(model_readout, scale)},
};
/* clang-format on */

static int
read_readouts(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_desc *d = target;
    char path[MSCHEMA_FIELD_LEN], sub[MSCHEMA_FIELD_LEN];
    struct mschema_seen s;
    if (mschema_check_seq(x, n, field) < 0)
        return -1;
    int count = mschema_n_items(n);
    if (count == 0)
        return 0;
    if (!(d->readouts = mem_calloc(x->m, (size_t)count, sizeof *d->readouts)))
        return mschema_nomem(x);
    d->n_readouts = count;
    for (int i = 0; i < count; i++) {
        const yaml_node_t *it = mschema_seq_item(x, n, i);
        struct model_readout *r = &d->readouts[i];
        mschema_item_path(x, it, field, i, path);
        r->pos = mschema_pos(it);
        r->scale = 1.0;
        if (mschema_apply(x, it, readout_fields, 4, r, path, &s) < 0)
            return -1;
        for (int j = 0; j < i; j++)
            if (strcmp(d->readouts[j].name, r->name) == 0) {
                mschema_join(sub, path, "name");
                return mschema_fail(x, s.val[0], ERR_MODEL, sub,
                                    "duplicate name '%s' (readout at line %d)", r->name,
                                    d->readouts[j].pos.line);
            }
    }
    return 0;
}

/* ---- stats ------------------------------------------------------------------------- */

static const struct mschema_enum on_off_names[] = {{"on", 1, 0}, {"off", 0, 0}, {NULL, 0, 0}};

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct mschema_field stats_fields[] = {
    {.key = "drift", .type = MSCHEMA_TYPE_ENUM, .names = on_off_names,
     .offset = MSCHEMA_AT(model_desc, stats_drift)},
};
/* clang-format on */

static int
read_stats(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct mschema_seen s;
    return mschema_apply(x, n, stats_fields, (int)(sizeof stats_fields / sizeof stats_fields[0]),
                         target, field, &s) < 0
               ? -1
               : 0;
}

/* ---- the file ----------------------------------------------------------------------- */

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct mschema_field top_fields[] = {
    {.key = "name", .type = MSCHEMA_TYPE_STR, .required = 1,
     .offset = MSCHEMA_AT(model_desc, name)},
    {.key = "dt", .type = MSCHEMA_TYPE_NUM, .required = 1, .check = MSCHEMA_CHECK_POS,
     .offset = MSCHEMA_AT(model_desc, dt)},
    {.key = "seed", .type = MSCHEMA_TYPE_U64, .offset = MSCHEMA_AT(model_desc, seed)},
    {.key = "inputs", .type = MSCHEMA_TYPE_FUNC, .fn = read_inputs},
    {.key = "cells", .type = MSCHEMA_TYPE_FUNC, .required = 1, .fn = mcell_read},
    {.key = "projections", .type = MSCHEMA_TYPE_FUNC, .fn = mproj_read},
    {.key = "readouts", .type = MSCHEMA_TYPE_FUNC, .fn = read_readouts},
    {.key = "learning", .type = MSCHEMA_TYPE_FUNC, .fn = mlearn_read},
    {.key = "stats", .type = MSCHEMA_TYPE_FUNC, .fn = read_stats},
};
/* clang-format on */

/* A libyaml error as PATH:LINE:COL: yaml: problem. */
static int
yaml_fail(struct mschema *x, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return mschema_nomem(x);
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
        return mschema_fail_at(x, line, col, ERR_MODEL, "yaml", "%s %s (line %d)", problem,
                               p->context, (int)p->context_mark.line + 1);
    return mschema_fail_at(x, line, col, ERR_MODEL, "yaml", "%s", problem);
}

/* Rejects nesting deeper than MAX_DEPTH with libyaml's event API before the document is
 * built: libyaml's scanner is quadratic in the flow nesting depth, so a few hundred KB
 * of '[' would otherwise keep a worker busy for minutes. The pass stops at the first
 * level too deep; a syntax error is left for the document load to report. */
static int
check_depth(struct mschema *x, size_t len)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    if (!yaml_parser_initialize(&parser))
        return mschema_nomem(x);
    yaml_parser_set_input_string(&parser, (const unsigned char *)x->text, len);
    int depth = 0, rc = 0;
    for (;;) {
        if (!yaml_parser_parse(&parser, &ev)) {
            if (parser.error == YAML_MEMORY_ERROR)
                rc = mschema_nomem(x);
            break;
        }
        yaml_event_type_t type = ev.type;
        if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
            if (++depth > MAX_DEPTH)
                rc =
                    mschema_fail_at(x, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
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
parse_doc(struct mschema *x, yaml_parser_t *parser, size_t len)
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
        mschema_fail_at(x, 1, 1, ERR_MODEL, "(file)", "empty model file");
        goto out;
    }
    if (!yaml_parser_load(parser, &extra)) {
        yaml_fail(x, parser);
        goto out;
    }
    const yaml_node_t *second = yaml_document_get_root_node(&extra);
    if (second) {
        mschema_fail(x, second, ERR_MODEL, "(file)", "a model file holds one YAML document");
        yaml_document_delete(&extra);
        goto out;
    }
    yaml_document_delete(&extra);
    struct mschema_seen s;
    rc = mschema_apply(x, root, top_fields, (int)(sizeof top_fields / sizeof top_fields[0]), x->d,
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
    struct mschema x = {.file = path, .m = m, .e = e};
    struct model_desc *d = mem_calloc(m, 1, sizeof *d);
    if (!d)
        return mschema_nomem(&x);
    x.d = d;
    mlearn_defaults(&d->learning);
    d->stats_drift = 1;
    if (!(d->path = mem_strdup(m, path)) || !(d->text = mem_alloc(m, len + 1))) {
        mschema_nomem(&x);
        goto fail;
    }
    memcpy(d->text, text, len);
    d->text[len] = '\0';
    d->text_len = len;
    d->hash = rng_fnv1a(d->text, len);
    x.text = d->text;

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        mschema_nomem(&x);
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
        mproj_tensor_fini(&p->weight, m);
        mproj_tensor_fini(&p->bias, m);
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
