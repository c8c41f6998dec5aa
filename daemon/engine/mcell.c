/* The `cells:` section of the model file (DESIGN §2.1, §2.2): each cell's keys, a
 * built-in expanded into its equations (cell.c) or a custom cell's states, slots, params,
 * defines, updates and output, its surrogate, and its expressions compiled once (expr.c)
 * so that their errors carry their column. Engine layer, part of the model reader. */
#include "mcell.h"

#include <stdio.h>
#include <string.h>

#include "cell.h"
#include "expr.h"

/* Rejects `name` when an input or cell before it already has it (one namespace). */
int
mcell_check_unit_name(struct mschema *x, const yaml_node_t *n, const char *field, const char *name,
                      int n_inputs, int n_cells)
{
    const struct model_desc *d = x->d;
    for (int i = 0; i < n_inputs; i++)
        if (strcmp(d->inputs[i].name, name) == 0)
            return mschema_fail(x, n, ERR_MODEL, field, "duplicate name '%s' (input at line %d)",
                                name, d->inputs[i].pos.line);
    for (int i = 0; i < n_cells; i++)
        if (strcmp(d->cells[i].name, name) == 0)
            return mschema_fail(x, n, ERR_MODEL, field, "duplicate name '%s' (cell at line %d)",
                                name, d->cells[i].pos.line);
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
static const struct mschema_field cell_fields[CF_N] = {
    [CF_NAME] = {.key = "name", .type = MSCHEMA_TYPE_NAME, .required = 1,
                 .offset = MSCHEMA_AT(model_cell, name)},
    [CF_MODEL] = {.key = "model", .type = MSCHEMA_TYPE_NODE, .required = 1},
    [CF_SIZE] = {.key = "size", .type = MSCHEMA_TYPE_INT, .required = 1,
                 .check = MSCHEMA_CHECK_SIZE,
                 .offset = MSCHEMA_AT(model_cell, size)},
    [CF_PARAMS] = {.key = "params", .type = MSCHEMA_TYPE_NODE},
    [CF_STATES] = {.key = "states", .type = MSCHEMA_TYPE_NODE},
    [CF_SLOTS] = {.key = "slots", .type = MSCHEMA_TYPE_NODE},
    [CF_DEFINE] = {.key = "define", .type = MSCHEMA_TYPE_NODE},
    [CF_UPDATE] = {.key = "update", .type = MSCHEMA_TYPE_NODE},
    [CF_OUTPUT] = {.key = "output", .type = MSCHEMA_TYPE_NODE},
    [CF_SURROGATE] = {.key = "surrogate", .type = MSCHEMA_TYPE_NODE},
};
/* clang-format on */

static const struct mschema_enum surrogate_kinds[] = {
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
static const struct mschema_field surrogate_fields[SF_N] = {
    [SF_KIND] = {.key = "kind", .type = MSCHEMA_TYPE_ENUM, .names = surrogate_kinds,
                 .offset = MSCHEMA_AT(model_surrogate, kind)},
    [SF_ALPHA] = {.key = "alpha", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_POS,
                  .offset = MSCHEMA_AT(model_surrogate, alpha)},
    [SF_WIDTH] = {.key = "width", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_POS,
                  .offset = MSCHEMA_AT(model_surrogate, width)},
    [SF_SIGMA] = {.key = "sigma", .type = MSCHEMA_TYPE_NUM, .check = MSCHEMA_CHECK_POS,
                  .offset = MSCHEMA_AT(model_surrogate, sigma)},
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
read_surrogate(struct mschema *x, const yaml_node_t *n, struct model_surrogate *out,
               const char *field)
{
    struct model_surrogate sg = {MODEL_SURR_RELU, 0, 0, 0};
    struct mschema_seen s;
    char sub[MSCHEMA_FIELD_LEN];
    if (mschema_apply(x, n, surrogate_fields, SF_N, &sg, field, &s) < 0)
        return -1;
    for (int i = 0; i < SF_N; i++)
        if (s.key[i] && !surrogate_rules[sg.kind].uses[i]) {
            mschema_join(sub, field, surrogate_fields[i].key);
            return mschema_fail(x, s.key[i], ERR_MODEL, sub, "does not apply to surrogate kind %s",
                                mschema_sval(s.val[SF_KIND]));
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

/* A new custom-cell name at key node k: valid, not reserved, not already a state, slot or
 * param of c (what = "a state", ...). */
static int
check_cell_symbol(struct mschema *x, const struct model_cell *c, const yaml_node_t *k,
                  const char *field, const char *what)
{
    const char *s = mschema_sval(k);
    if (!mschema_is_name(s))
        return mschema_fail(x, k, ERR_MODEL, field,
                            "invalid name '%s': names match [A-Za-z_][A-Za-z0-9_]*", s);
    if (is_reserved_name(s))
        return mschema_fail(x, k, ERR_EXPR, field, "'%s' is reserved (dt or a function name)", s);
    const char *other = NULL;
    if (mschema_find_str((char *const *)c->state_names, c->n_states, s) >= 0)
        other = "a state";
    else if (mschema_find_str((char *const *)c->slot_names, c->n_slots, s) >= 0)
        other = "a slot";
    else if (c->param_names && mschema_find_str(c->param_names, c->n_params, s) >= 0)
        other = "a param";
    if (!other)
        return 0;
    if (strcmp(what, "a define") == 0)
        return mschema_fail(x, k, ERR_EXPR, field, "define '%s' shadows %s", s, other);
    return mschema_fail(x, k, ERR_EXPR, field, "'%s' is both %s and %s", s, what, other);
}

/* An expression: a non-empty scalar; sets e's name, text and position. */
static int
read_expr(struct mschema *x, const yaml_node_t *n, const char *name, const char *field,
          struct model_expr *e)
{
    if (!mschema_is_scalar(n) || mschema_is_null(n))
        return mschema_fail_type(x, n, field, "an expression");
    if (!(e->name = mem_strdup(x->m, name)) || !(e->text = mem_strdup(x->m, mschema_sval(n))))
        return mschema_nomem(x);
    e->pos = mschema_scalar_locate(x, n, 0);
    return 0;
}

static int
build_custom(struct mschema *x, struct model_cell *c, const struct mschema_seen *s,
             const char *path)
{
    char field[MSCHEMA_FIELD_LEN], sub[MSCHEMA_FIELD_LEN];
    static const int required[] = {CF_STATES, CF_SLOTS, CF_UPDATE, CF_OUTPUT};
    for (int i = 0; i < 4; i++)
        if (!s->val[required[i]]) {
            mschema_join(field, path, cell_fields[required[i]].key);
            return mschema_fail_at(x, c->pos.line, c->pos.col, ERR_MODEL, field,
                                   "missing required field (a custom cell needs states, slots, "
                                   "update and output)");
        }
    if (!(c->model = mem_strdup(x->m, "custom")))
        return mschema_nomem(x);

    const yaml_node_t *n = s->val[CF_STATES];
    mschema_join(field, path, "states");
    if (mschema_map_check(x, n, field) < 0)
        return -1;
    if (mschema_n_items(n) < 1 || mschema_n_items(n) > MODEL_MAX_K)
        return mschema_fail(x, n, ERR_MODEL, field, "a custom cell has 1 to %d states, got %d",
                            MODEL_MAX_K, mschema_n_items(n));
    for (int i = 0; i < mschema_n_items(n); i++) {
        const yaml_node_t *k = mschema_pair_key(x, n, i);
        mschema_join(sub, field, mschema_sval(k));
        if (check_cell_symbol(x, c, k, sub, "a state") < 0 ||
            mschema_read_number(x, mschema_pair_val(x, n, i), sub, &c->state_init[i]) < 0)
            return -1;
        if (!(c->state_names[i] = mem_strdup(x->m, mschema_sval(k))))
            return mschema_nomem(x);
        c->n_states = i + 1;
    }

    n = s->val[CF_SLOTS];
    mschema_join(field, path, "slots");
    if (mschema_check_seq(x, n, field) < 0)
        return -1;
    if (mschema_n_items(n) < 1 || mschema_n_items(n) > MODEL_MAX_SLOTS)
        return mschema_fail(x, n, ERR_MODEL, field, "a custom cell has 1 to %d slots, got %d",
                            MODEL_MAX_SLOTS, mschema_n_items(n));
    for (int i = 0; i < mschema_n_items(n); i++) {
        const yaml_node_t *it = mschema_seq_item(x, n, i);
        mschema_fieldf(sub, "%s[%d]", field, i);
        if (!mschema_is_scalar(it) || mschema_is_null(it))
            return mschema_fail_type(x, it, sub, "a slot name");
        if (mschema_find_str((char *const *)c->slot_names, c->n_slots, mschema_sval(it)) >= 0)
            return mschema_fail(x, it, ERR_MODEL, sub, "duplicate slot '%s'", mschema_sval(it));
        if (check_cell_symbol(x, c, it, sub, "a slot") < 0)
            return -1;
        if (!(c->slot_names[i] = mem_strdup(x->m, mschema_sval(it))))
            return mschema_nomem(x);
        c->n_slots = i + 1;
    }

    if ((n = s->val[CF_PARAMS])) {
        mschema_join(field, path, "params");
        if (mschema_map_check(x, n, field) < 0)
            return -1;
        int count = mschema_n_items(n);
        if (count > 0) {
            c->param_names = mem_calloc(x->m, (size_t)count, sizeof *c->param_names);
            c->param_values = mem_calloc(x->m, (size_t)count, sizeof *c->param_values);
            if (!c->param_names || !c->param_values)
                return mschema_nomem(x);
        }
        for (int i = 0; i < count; i++) {
            const yaml_node_t *k = mschema_pair_key(x, n, i);
            mschema_join(sub, field, mschema_sval(k));
            if (check_cell_symbol(x, c, k, sub, "a param") < 0 ||
                mschema_read_number(x, mschema_pair_val(x, n, i), sub, &c->param_values[i]) < 0)
                return -1;
            if (!(c->param_names[i] = mem_strdup(x->m, mschema_sval(k))))
                return mschema_nomem(x);
            c->n_params = i + 1;
        }
    }

    if ((n = s->val[CF_DEFINE])) {
        mschema_join(field, path, "define");
        if (mschema_map_check(x, n, field) < 0)
            return -1;
        int count = mschema_n_items(n);
        if (count > 0 && !(c->defines = mem_calloc(x->m, (size_t)count, sizeof *c->defines)))
            return mschema_nomem(x);
        for (int i = 0; i < count; i++) {
            const yaml_node_t *k = mschema_pair_key(x, n, i);
            mschema_join(sub, field, mschema_sval(k));
            if (check_cell_symbol(x, c, k, sub, "a define") < 0)
                return -1;
            c->n_defines = i + 1;
            if (read_expr(x, mschema_pair_val(x, n, i), mschema_sval(k), sub, &c->defines[i]) < 0)
                return -1;
        }
    }

    n = s->val[CF_UPDATE];
    mschema_join(field, path, "update");
    if (n->type != YAML_MAPPING_NODE)
        return mschema_fail_type(x, n, field, "a mapping of state: expression");
    for (int i = 0; i < mschema_n_items(n); i++) {
        const yaml_node_t *k = mschema_pair_key(x, n, i);
        if (!mschema_is_scalar(k))
            return mschema_fail(x, k, ERR_MODEL, field, "keys must be plain names");
        mschema_join(sub, field, mschema_sval(k));
        int st = mschema_find_str((char *const *)c->state_names, c->n_states, mschema_sval(k));
        if (st < 0)
            return mschema_fail(x, k, ERR_EXPR, sub, "'%s' is not a state of this cell",
                                mschema_sval(k));
        if (c->updates[st].text)
            return mschema_fail(x, k, ERR_EXPR, sub, "state '%s' has more than one update",
                                mschema_sval(k));
        if (read_expr(x, mschema_pair_val(x, n, i), mschema_sval(k), sub, &c->updates[st]) < 0)
            return -1;
    }
    for (int k = 0; k < c->n_states; k++)
        if (!c->updates[k].text) {
            mschema_join(sub, field, c->state_names[k]);
            return mschema_fail(x, n, ERR_EXPR, sub, "state '%s' has no update", c->state_names[k]);
        }

    mschema_join(field, path, "output");
    return read_expr(x, s->val[CF_OUTPUT], "output", field, &c->output);
}

static int
build_builtin(struct mschema *x, struct model_cell *c, const struct cell_builtin *b,
              const struct mschema_seen *s, const char *path)
{
    char field[MSCHEMA_FIELD_LEN], sub[MSCHEMA_FIELD_LEN], list[256];
    static const int custom_only[] = {CF_SLOTS, CF_DEFINE, CF_UPDATE, CF_OUTPUT};
    for (int i = 0; i < 4; i++)
        if (s->key[custom_only[i]]) {
            mschema_join(field, path, cell_fields[custom_only[i]].key);
            return mschema_fail(x, s->key[custom_only[i]], ERR_MODEL, field,
                                "only custom cells have '%s' (%s is a built-in)",
                                cell_fields[custom_only[i]].key, b->model);
        }
    const yaml_node_t *pn = s->val[CF_PARAMS];
    int reset_hard = 0;
    mschema_join(field, path, "params");
    if (pn) {
        if (mschema_map_check(x, pn, field) < 0)
            return -1;
        const yaml_node_t *rv = mschema_map_find(x, pn, "reset");
        if (rv && b->has_reset) {
            mschema_join(sub, field, "reset");
            if (mschema_is_scalar(rv) && strcmp(mschema_sval(rv), "hard") == 0)
                reset_hard = 1;
            else if (!mschema_is_scalar(rv) || strcmp(mschema_sval(rv), "soft") != 0)
                return mschema_fail_type(x, rv, sub, "soft or hard");
        }
    }
    if (cell_expand(b, reset_hard, x->m, c) < 0)
        return mschema_nomem(x);
    for (int i = 0; pn && i < mschema_n_items(pn); i++) {
        const yaml_node_t *k = mschema_pair_key(x, pn, i);
        mschema_join(sub, field, mschema_sval(k));
        if (b->has_reset && strcmp(mschema_sval(k), "reset") == 0)
            continue;
        int j = mschema_find_str(c->param_names, c->n_params, mschema_sval(k));
        if (j < 0) {
            list[0] = '\0';
            for (int p = 0; p < b->n_params; p++) {
                size_t used = strlen(list);
                snprintf(list + used, sizeof list - used, "%s%s", p ? ", " : "", b->param_names[p]);
            }
            if (b->has_reset)
                snprintf(list + strlen(list), sizeof list - strlen(list), ", reset");
            return mschema_fail(x, k, ERR_MODEL, sub, "unknown key (%s params: %s)", b->model,
                                b->n_params || b->has_reset ? list : "none");
        }
        if (mschema_read_number(x, mschema_pair_val(x, pn, i), sub, &c->param_values[j]) < 0)
            return -1;
    }
    const yaml_node_t *sn = s->val[CF_STATES];
    mschema_join(field, path, "states");
    if (sn && mschema_map_check(x, sn, field) < 0)
        return -1;
    for (int i = 0; sn && i < mschema_n_items(sn); i++) {
        const yaml_node_t *k = mschema_pair_key(x, sn, i);
        mschema_join(sub, field, mschema_sval(k));
        int j = mschema_find_str((char *const *)c->state_names, c->n_states, mschema_sval(k));
        if (j < 0)
            return mschema_fail(x, k, ERR_MODEL, sub, "unknown key (%s has no state '%s')",
                                b->model, mschema_sval(k));
        if (mschema_read_number(x, mschema_pair_val(x, sn, i), sub, &c->state_init[j]) < 0)
            return -1;
    }
    return 0;
}

/* Parameter ranges any cell must respect: time constants (params named tau*) > 0, and
 * v_th != v_reset (the reset scale divides by their difference). */
static int
check_cell_params(struct mschema *x, const struct model_cell *c, const yaml_node_t *cell_node,
                  const yaml_node_t *params, const char *path)
{
    char field[MSCHEMA_FIELD_LEN];
    int i_th = -1, i_reset = -1;
    for (int i = 0; i < c->n_params; i++) {
        const char *p = c->param_names[i];
        const yaml_node_t *n = params ? mschema_map_find(x, params, p) : NULL;
        mschema_fieldf(field, "%s.params.%s", path, p);
        if (strncmp(p, "tau", 3) == 0 && !(c->param_values[i] > 0))
            return mschema_fail(x, n ? n : cell_node, ERR_MODEL, field,
                                "time constant must be > 0, got %g", c->param_values[i]);
        if (strcmp(p, "v_th") == 0)
            i_th = i;
        if (strcmp(p, "v_reset") == 0)
            i_reset = i;
    }
    if (i_th >= 0 && i_reset >= 0 && c->param_values[i_th] == c->param_values[i_reset]) {
        const yaml_node_t *n = params ? mschema_map_find(x, params, "v_th") : NULL;
        if (!n && params)
            n = mschema_map_find(x, params, "v_reset");
        mschema_fieldf(field, "%s.params.v_th", path);
        return mschema_fail(x, n ? n : cell_node, ERR_MODEL, field,
                            "v_th must differ from v_reset (both %g): the reset divides by v_th - "
                            "v_reset",
                            c->param_values[i_th]);
    }
    return 0;
}

/* Compiles the cell's expressions to validate them, and maps an error to its column. */
static int
compile_cell(struct mschema *x, const struct model_cell *c, const struct mschema_seen *s,
             int is_custom, const char *path)
{
    struct expr_prog *prog = NULL;
    struct expr_error xe;
    char field[MSCHEMA_FIELD_LEN];
    memset(&xe, 0, sizeof xe);
    xe.field = -1;
    if (expr_prog_compile(c, x->d->dt, x->m, &prog, &xe) == 0) {
        expr_prog_free(&prog, x->m);
        return 0;
    }
    expr_prog_free(&prog, x->m);
    if (strcmp(xe.msg, "out of memory") == 0)
        return mschema_nomem(x);
    int nd = c->n_defines, k = c->n_states;
    if (!is_custom || xe.field < 0 || xe.field > nd + k) {
        if (!is_custom)
            return mschema_fail_at(x, c->pos.line, c->pos.col, ERR_EXPR, path, "built-in %s: %s",
                                   c->model, xe.msg);
        return mschema_fail_at(x, c->pos.line, c->pos.col, ERR_EXPR, path, "%s", xe.msg);
    }
    const yaml_node_t *n;
    if (xe.field < nd) {
        n = mschema_pair_val(x, s->val[CF_DEFINE], xe.field);
        mschema_fieldf(field, "%s.define.%s", path, c->defines[xe.field].name);
    } else if (xe.field < nd + k) {
        const char *st = c->state_names[xe.field - nd];
        n = mschema_map_find(x, s->val[CF_UPDATE], st);
        mschema_fieldf(field, "%s.update.%s", path, st);
    } else {
        n = s->val[CF_OUTPUT];
        mschema_fieldf(field, "%s.output", path);
    }
    struct model_pos p = mschema_scalar_locate(x, n, xe.offset > 0 ? (size_t)xe.offset : 0);
    return mschema_fail_at(x, p.line, p.col, ERR_EXPR, field, "%s", xe.msg);
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
read_cell(struct mschema *x, const yaml_node_t *n, int idx, const char *path)
{
    struct model_cell *c = &x->d->cells[idx];
    struct mschema_seen s;
    char field[MSCHEMA_FIELD_LEN];
    c->pos = mschema_pos(n);
    if (mschema_apply(x, n, cell_fields, CF_N, c, path, &s) < 0)
        return -1;
    mschema_join(field, path, "name");
    if (mcell_check_unit_name(x, s.val[CF_NAME], field, c->name, x->d->n_inputs, idx) < 0)
        return -1;
    const yaml_node_t *mn = s.val[CF_MODEL];
    mschema_join(field, path, "model");
    if (!mschema_is_scalar(mn) || mschema_is_null(mn))
        return mschema_fail_type(x, mn, field, "a cell model name");
    int is_custom = strcmp(mschema_sval(mn), "custom") == 0;
    if (is_custom) {
        if (build_custom(x, c, &s, path) < 0)
            return -1;
    } else {
        const struct cell_builtin *b = cell_builtin_find(mschema_sval(mn));
        if (!b) {
            char list[256] = "";
            for (int i = 0; i < cell_builtin_count(); i++) {
                size_t used = strlen(list);
                snprintf(list + used, sizeof list - used, "%s, ", cell_builtin_at(i)->model);
            }
            return mschema_fail(x, mn, ERR_MODEL, field,
                                "unknown cell model '%s' (built-ins: %scustom)", mschema_sval(mn),
                                list);
        }
        /* cell_expand wants a zeroed cell with name, size and pos; on failure it frees
         * the name too, which model_free then finds NULL. */
        if (build_builtin(x, c, b, &s, path) < 0)
            return -1;
    }
    if (s.val[CF_SURROGATE]) {
        mschema_join(field, path, "surrogate");
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

int
mcell_read(struct mschema *x, const yaml_node_t *n, void *target, const char *field)
{
    struct model_desc *d = target;
    char path[MSCHEMA_FIELD_LEN];
    if (mschema_check_seq(x, n, field) < 0)
        return -1;
    int count = mschema_n_items(n);
    if (count == 0)
        return mschema_fail(x, n, ERR_MODEL, field, "a model needs at least one cell");
    if (!(d->cells = mem_calloc(x->m, (size_t)count, sizeof *d->cells)))
        return mschema_nomem(x);
    d->n_cells = count;
    for (int i = 0; i < count; i++) {
        const yaml_node_t *it = mschema_seq_item(x, n, i);
        mschema_item_path(x, it, field, i, path);
        if (read_cell(x, it, i, path) < 0)
            return -1;
    }
    return 0;
}
