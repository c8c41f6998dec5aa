/* The `projections:` section of the model file (DESIGN §2.3): each projection's keys,
 * its sources (`from`) and target slots (`to`), and its weight and bias specs checked
 * against their kind and initialiser. The tensors themselves are made by param.c at
 * compile time. Engine layer, part of the model reader. */
#include "mproj.h"

#include <stdio.h>
#include <string.h>

/* ---- projections -------------------------------------------------------------------- */

static const struct mschema_enum op_names[] = {
    {"dense", MODEL_OP_DENSE, 0},
    {"sparse", MODEL_OP_SPARSE, 0},
    {"elemwise", MODEL_OP_ELEMWISE, 0},
    {"lora", 0, 1},
    {"conv", 0, 1},
    {"embedding", 0, 1},
    {NULL, 0, 0},
};

static const struct mschema_enum learn_names[] = {
    {"trace", MODEL_LEARN_TRACE, 0},
    {"instant", MODEL_LEARN_INSTANT, 0},
    {"frozen", MODEL_LEARN_FROZEN, 0},
    {NULL, 0, 0},
};

static const struct mschema_enum init_names[] = {
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
static const struct mschema_field tensor_fields[TF_N] = {
    [TF_FILE] = {.key = "file", .type = MSCHEMA_TYPE_STR, .offset = MSCHEMA_AT(model_tensor, file)},
    [TF_INDICES] = {.key = "indices", .type = MSCHEMA_TYPE_STR,
                    .offset = MSCHEMA_AT(model_tensor, indices)},
    [TF_INDPTR] = {.key = "indptr", .type = MSCHEMA_TYPE_STR,
                   .offset = MSCHEMA_AT(model_tensor, indptr)},
    [TF_ROWS] = {.key = "rows", .type = MSCHEMA_TYPE_STR, .offset = MSCHEMA_AT(model_tensor, rows)},
    [TF_COLS] = {.key = "cols", .type = MSCHEMA_TYPE_STR, .offset = MSCHEMA_AT(model_tensor, cols)},
    [TF_VALUES] = {.key = "values", .type = MSCHEMA_TYPE_STR,
                   .offset = MSCHEMA_AT(model_tensor, values)},
    [TF_PROB] = {.key = "prob", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_UNIT,
                 .offset = MSCHEMA_AT(model_tensor, prob)},
    [TF_SEED] = {.key = "seed", .type = MSCHEMA_TYPE_U64, .offset = MSCHEMA_AT(model_tensor, seed)},
    [TF_INIT] = {.key = "init", .type = MSCHEMA_TYPE_ENUM, .names = init_names,
                 .offset = MSCHEMA_AT(model_tensor, init)},
    [TF_VALUE] = {.key = "value", .type = MSCHEMA_TYPE_NUM,
                  .offset = MSCHEMA_AT(model_tensor, value)},
    [TF_MEAN] = {.key = "mean", .type = MSCHEMA_TYPE_NUM, .offset = MSCHEMA_AT(model_tensor, mean)},
    [TF_STD] = {.key = "std", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_NONNEG,
                .offset = MSCHEMA_AT(model_tensor, std)},
    [TF_LOW] = {.key = "low", .type = MSCHEMA_TYPE_NUM, .offset = MSCHEMA_AT(model_tensor, low)},
    [TF_HIGH] = {.key = "high", .type = MSCHEMA_TYPE_NUM, .offset = MSCHEMA_AT(model_tensor, high)},
    [TF_SCALE] = {.key = "scale", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_NONNEG,
                  .offset = MSCHEMA_AT(model_tensor, scale)},
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

void
mproj_tensor_fini(struct model_tensor *t, const struct mem *m)
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
read_tensor(struct mschema *x, const yaml_node_t *n, const struct model_proj *p, int is_bias,
            struct model_tensor *t, const char *field)
{
    struct mschema_seen s;
    char sub[MSCHEMA_FIELD_LEN];
    t->pos = mschema_pos(n);
    t->init = MODEL_INIT_ZEROS;
    t->mean = 0;
    t->std = 1;
    t->low = -1;
    t->high = 1;
    t->scale = 1;
    t->seed = x->d->seed;
    if (mschema_apply(x, n, tensor_fields, TF_N, t, field, &s) < 0)
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
            mschema_join(sub, field, tensor_fields[f].key);
            return mschema_fail(x, s.key[f], ERR_MODEL, sub,
                                "indices and indptr (CSR) are for an op: sparse weight only");
        }
        if (is_sparse) {
            if (!has_csr)
                return mschema_fail(x, n, ERR_MODEL, field,
                                    "op: sparse with a plain {file} is an error: give {file, "
                                    "indices, indptr} (CSR), {rows, cols, values} or {prob, init}");
            for (int f = TF_INDICES; f <= TF_INDPTR; f++)
                if (!s.val[f]) {
                    mschema_join(sub, field, tensor_fields[f].key);
                    return mschema_fail(
                        x, n, ERR_MODEL, sub,
                        "missing required field (CSR needs file, indices and indptr)");
                }
            allowed |= BIT(TF_INDICES) | BIT(TF_INDPTR);
        }
    } else if (s.val[TF_ROWS] || s.val[TF_COLS] || s.val[TF_VALUES]) {
        t->kind = MODEL_TENSOR_COO;
        allowed = BIT(TF_ROWS) | BIT(TF_COLS) | BIT(TF_VALUES);
        if (!is_sparse)
            return mschema_fail(x, n, ERR_MODEL, field,
                                "COO {rows, cols, values} is for an op: sparse weight only");
        for (int f = TF_ROWS; f <= TF_VALUES; f++)
            if (!s.val[f]) {
                mschema_join(sub, field, tensor_fields[f].key);
                return mschema_fail(x, n, ERR_MODEL, sub,
                                    "missing required field (COO needs rows, cols and values)");
            }
    } else if (s.val[TF_PROB]) {
        t->kind = MODEL_TENSOR_RANDOM;
        if (!is_sparse)
            return mschema_fail(x, n, ERR_MODEL, field,
                                "random sparse {prob, init} is for an op: sparse weight only");
        if (!s.val[TF_INIT]) {
            mschema_join(sub, field, "init");
            return mschema_fail(x, n, ERR_MODEL, sub,
                                "missing required field (random sparse needs prob and init)");
        }
        allowed = BIT(TF_PROB) | BIT(TF_SEED) | BIT(TF_INIT) | init_keys[t->init];
    } else if (s.val[TF_INIT]) {
        t->kind = MODEL_TENSOR_INIT;
        if (is_sparse)
            return mschema_fail(x, n, ERR_MODEL, field,
                                "an op: sparse weight needs a structure: {file, indices, indptr}, "
                                "{rows, cols, values} or {prob, init}");
        allowed = BIT(TF_INIT) | init_keys[t->init];
    } else {
        return mschema_fail(x, n, ERR_MODEL, field, "a %s needs %s", what,
                            is_sparse
                                ? "{file, indices, indptr}, {rows, cols, values} or {prob, init}"
                                : "{file} or {init}");
    }
    for (int f = 0; f < TF_N; f++)
        if (s.key[f] && !(allowed & BIT(f))) {
            mschema_join(sub, field, tensor_fields[f].key);
            if (f >= TF_VALUE && s.val[TF_INIT] && t->kind != MODEL_TENSOR_FILE &&
                t->kind != MODEL_TENSOR_COO)
                return mschema_fail(x, s.key[f], ERR_MODEL, sub, "does not apply to init %s",
                                    mschema_sval(s.val[TF_INIT]));
            return mschema_fail(x, s.key[f], ERR_MODEL, sub, "does not go with a %s %s",
                                tensor_kind_names[t->kind], what);
        }
    if (t->init == MODEL_INIT_CONSTANT && !s.val[TF_VALUE] &&
        (t->kind == MODEL_TENSOR_INIT || t->kind == MODEL_TENSOR_RANDOM)) {
        mschema_join(sub, field, "value");
        return mschema_fail(x, n, ERR_MODEL, sub,
                            "missing required field (init constant needs value)");
    }
    if (s.val[TF_LOW] || s.val[TF_HIGH])
        if (!(t->low < t->high)) {
            mschema_join(sub, field, s.val[TF_HIGH] ? "high" : "low");
            return mschema_fail(x, s.val[TF_HIGH] ? s.val[TF_HIGH] : s.val[TF_LOW], ERR_MODEL, sub,
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
read_from(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_proj *p = target;
    int is_list = n->type == YAML_SEQUENCE_NODE;
    int count = is_list ? mschema_n_items(n) : 1;
    char sub[MSCHEMA_FIELD_LEN];
    if (!is_list && (!mschema_is_scalar(n) || mschema_is_null(n)))
        return mschema_fail_type(x, n, field, "a name or a list of names");
    if (count == 0)
        return mschema_fail(x, n, ERR_MODEL, field, "needs at least one source");
    if (!(p->from = mem_calloc(x->m, (size_t)count, sizeof *p->from)))
        return mschema_nomem(x);
    p->n_from = count;
    long long offset = 0;
    for (int i = 0; i < count; i++) {
        const yaml_node_t *it = is_list ? mschema_seq_item(x, n, i) : n;
        if (is_list)
            mschema_fieldf(sub, "%s[%d]", field, i);
        else
            mschema_fieldf(sub, "%s", field);
        if (!mschema_is_scalar(it) || mschema_is_null(it))
            return mschema_fail_type(x, it, sub, "an input or cell name");
        struct model_source *src = &p->from[i];
        src->index = find_unit(x->d, mschema_sval(it), &src->is_input);
        if (src->index < 0)
            return mschema_fail(x, it, ERR_MODEL, sub,
                                "unknown source '%s' (not an input or a cell)", mschema_sval(it));
        src->size = src->is_input ? x->d->inputs[src->index].size : x->d->cells[src->index].size;
        src->offset = (int)offset;
        offset += src->size;
        if (offset > MODEL_MAX_ELEMS)
            return mschema_fail(x, n, ERR_MODEL, field,
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
add_slot(struct mschema *x, const yaml_node_t *n, const char *field, struct model_proj *p,
         const struct model_cell *c, const char *s, int at, int len)
{
    char slot[MSCHEMA_FIELD_LEN];
    snprintf(slot, sizeof slot, "%.*s", len, s + at);
    struct model_pos pos = mschema_scalar_locate(x, n, (size_t)at);
    int k = mschema_find_str((char *const *)c->slot_names, c->n_slots, slot);
    if (k < 0) {
        char list[256] = "";
        for (int j = 0; j < c->n_slots; j++) {
            size_t used = strlen(list);
            snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "", c->slot_names[j]);
        }
        return mschema_fail_at(x, pos.line, pos.col, ERR_MODEL, field,
                               "unknown slot '%s' of cell '%s' (slots: %s)", slot, c->name, list);
    }
    for (int j = 0; j < p->n_to_slots; j++)
        if (p->to_slots[j] == k)
            return mschema_fail_at(x, pos.line, pos.col, ERR_MODEL, field, "slot '%s' listed twice",
                                   slot);
    p->to_slots[p->n_to_slots++] = k;
    return 0;
}

/* to: `cell` (a one-slot cell), `cell.slot` or `cell[a, b, ...]`. */
static int
read_to(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_proj *p = target;
    if (!mschema_is_scalar(n) || mschema_is_null(n))
        return mschema_fail_type(x, n, field, "cell, cell.slot or cell[slot, ...]");
    const char *s = mschema_sval(n);
    int i = skip_spaces(s, 0);
    int len = name_len(s + i);
    if (len == 0)
        return mschema_fail(x, n, ERR_MODEL, field,
                            "expected cell, cell.slot or cell[slot, ...], got '%s'", s);
    char cname[MSCHEMA_FIELD_LEN];
    snprintf(cname, sizeof cname, "%.*s", len, s + i);
    if (model_find_input(x->d, cname) >= 0)
        return mschema_fail(x, n, ERR_MODEL, field,
                            "a projection cannot feed input '%s': to: names a cell", cname);
    int ci = model_find_cell(x->d, cname);
    if (ci < 0)
        return mschema_fail(x, n, ERR_MODEL, field, "unknown cell '%s'", cname);
    const struct model_cell *c = &x->d->cells[ci];
    p->to_cell = ci;
    i = skip_spaces(s, i + len);
    if (s[i] == '\0') {
        if (c->n_slots != 1)
            return mschema_fail(x, n, ERR_MODEL, field,
                                "cell '%s' has %d slots: name one (%s.%s) or a list (%s[...])",
                                cname, c->n_slots, cname, c->slot_names[0], cname);
        p->n_to_slots = 1;
        p->to_slots[0] = 0;
    } else if (s[i] == '.') {
        i = skip_spaces(s, i + 1);
        len = name_len(s + i);
        if (len == 0 || s[skip_spaces(s, i + len)] != '\0')
            return mschema_fail(x, n, ERR_MODEL, field, "expected a slot name after '.' in '%s'",
                                s);
        if (add_slot(x, n, field, p, c, s, i, len) < 0)
            return -1;
    } else if (s[i] == '[') {
        for (;;) {
            i = skip_spaces(s, i + 1);
            len = name_len(s + i);
            if (len == 0)
                return mschema_fail(x, n, ERR_MODEL, field, "expected a slot name in '%s'", s);
            if (add_slot(x, n, field, p, c, s, i, len) < 0)
                return -1;
            i = skip_spaces(s, i + len);
            if (s[i] == ']')
                break;
            if (s[i] != ',')
                return mschema_fail(x, n, ERR_MODEL, field, "expected ',' or ']' in '%s'", s);
        }
        if (s[skip_spaces(s, i + 1)] != '\0')
            return mschema_fail(x, n, ERR_MODEL, field, "unexpected text after ']' in '%s'", s);
    } else {
        return mschema_fail(x, n, ERR_MODEL, field,
                            "expected cell, cell.slot or cell[slot, ...], got '%s'", s);
    }
    long long out = (long long)p->n_to_slots * c->size;
    if (out > MODEL_MAX_ELEMS)
        return mschema_fail(x, n, ERR_MODEL, field,
                            "absurd size: %d slots of %d neurons is over 2^31-1", p->n_to_slots,
                            c->size);
    p->out_size = (int)out;
    return 0;
}

enum { PF_NAME, PF_OP, PF_FROM, PF_TO, PF_WEIGHT, PF_BIAS, PF_LEARN, PF_N };

/* A schema table: one row per key (clang-format would spread the rows). */
/* clang-format off */
static const struct mschema_field proj_fields[PF_N] = {
    [PF_NAME] = {.key = "name", .type = MSCHEMA_TYPE_NAME, .required = 1,
                 .offset = MSCHEMA_AT(model_proj, name)},
    [PF_OP] = {.key = "op", .type = MSCHEMA_TYPE_ENUM, .names = op_names,
               .offset = MSCHEMA_AT(model_proj, op)},
    [PF_FROM] = {.key = "from", .type = MSCHEMA_TYPE_FUNC, .required = 1, .fn = read_from},
    [PF_TO] = {.key = "to", .type = MSCHEMA_TYPE_FUNC, .required = 1, .fn = read_to},
    [PF_WEIGHT] = {.key = "weight", .type = MSCHEMA_TYPE_NODE, .required = 1},
    [PF_BIAS] = {.key = "bias", .type = MSCHEMA_TYPE_NODE},
    [PF_LEARN] = {.key = "learn", .type = MSCHEMA_TYPE_ENUM, .names = learn_names,
                  .offset = MSCHEMA_AT(model_proj, learn)},
};
/* clang-format on */

static int
read_proj(struct mschema *x, const yaml_node_t *n, int idx, const char *path)
{
    struct model_proj *p = &x->d->projs[idx];
    struct mschema_seen s;
    char field[MSCHEMA_FIELD_LEN];
    p->pos = mschema_pos(n);
    p->op = MODEL_OP_DENSE;
    p->learn = MODEL_LEARN_TRACE;
    if (mschema_apply(x, n, proj_fields, PF_N, p, path, &s) < 0)
        return -1;
    for (int i = 0; i < idx; i++)
        if (strcmp(x->d->projs[i].name, p->name) == 0) {
            mschema_join(field, path, "name");
            return mschema_fail(x, s.val[PF_NAME], ERR_MODEL, field,
                                "duplicate name '%s' (projection at line %d)", p->name,
                                x->d->projs[i].pos.line);
        }
    if (p->op == MODEL_OP_ELEMWISE && p->in_size != p->out_size) {
        mschema_join(field, path, "op");
        return mschema_fail(
            x, s.val[PF_OP], ERR_MODEL, field,
            "size mismatch: elemwise needs I = O, got I = %d (from) and O = %d (to)", p->in_size,
            p->out_size);
    }
    mschema_join(field, path, "weight");
    if (p->op == MODEL_OP_DENSE && (long long)p->in_size * p->out_size > MODEL_MAX_ELEMS)
        return mschema_fail(x, s.val[PF_WEIGHT], ERR_MODEL, field,
                            "absurd size: I*O = %d*%d = %lld elements, over 2^31-1", p->in_size,
                            p->out_size, (long long)p->in_size * p->out_size);
    if (read_tensor(x, s.val[PF_WEIGHT], p, 0, &p->weight, field) < 0)
        return -1;
    if (s.val[PF_BIAS]) {
        mschema_join(field, path, "bias");
        if (read_tensor(x, s.val[PF_BIAS], p, 1, &p->bias, field) < 0)
            return -1;
    }
    return 0;
}

int
mproj_read(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_desc *d = target;
    char path[MSCHEMA_FIELD_LEN];
    if (mschema_check_seq(x, n, field) < 0)
        return -1;
    int count = mschema_n_items(n);
    if (count == 0)
        return 0;
    if (!(d->projs = mem_calloc(x->m, (size_t)count, sizeof *d->projs)))
        return mschema_nomem(x);
    d->n_projs = count;
    for (int i = 0; i < count; i++) {
        const yaml_node_t *it = mschema_seq_item(x, n, i);
        mschema_item_path(x, it, field, i, path);
        if (read_proj(x, it, i, path) < 0)
            return -1;
    }
    return 0;
}
