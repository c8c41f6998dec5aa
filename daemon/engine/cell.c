/* The built-in cells, transcribed from DESIGN §3. The equations are the definition; the
 * engine compiles them with expr.c like any custom cell. */
#include "cell.h"

#include <string.h>

#include "mem.h"
#include "model.h"

#define LIF_S_OLD "spike((v - v_th) / (v_th - v_reset))"
#define LIF_UPDATE_V "v_rest + r * i + (v_r - v_rest - r * i) * exp(-dt / tau) + delta"

/* The table keeps DESIGN §3's grouping of fields, which clang-format would split. */
/* clang-format off */
static const struct cell_builtin builtins[] = {
    {
        .model = "lif",
        .n_states = 1, .state_names = {"v"}, .state_init = {0.0},
        .n_slots = 2, .slot_names = {"i", "delta"},
        .n_params = 5,
        .param_names = {"tau", "v_th", "v_reset", "v_rest", "r"},
        .param_defaults = {20.0e-3, 1.0, 0.0, 0.0, 1.0},
        .has_reset = 1,
        .n_defines = 2,
        .define_names = {"s_old", "v_r"},
        .define_soft = {LIF_S_OLD, "v - (v_th - v_reset) * s_old"},
        .define_hard = {LIF_S_OLD, "v - stop_gradient(v - v_reset) * s_old"},
        .update = {LIF_UPDATE_V},
        .output = "spike((v - v_th) / (v_th - v_reset))",
    },
    {
        .model = "alif",
        .n_states = 2, .state_names = {"v", "b"}, .state_init = {0.0, 0.0},
        .n_slots = 2, .slot_names = {"i", "delta"},
        .n_params = 7,
        .param_names = {"tau", "tau_b", "beta", "v_th", "v_reset", "v_rest", "r"},
        .param_defaults = {20.0e-3, 200.0e-3, 1.8, 1.0, 0.0, 0.0, 1.0},
        .has_reset = 1,
        .n_defines = 3,
        .define_names = {"thr", "s_old", "v_r"},
        .define_soft = {"v_th + beta * b", "spike((v - thr) / (v_th - v_reset))",
                        "v - (thr - v_reset) * s_old"},
        .define_hard = {"v_th + beta * b", "spike((v - thr) / (v_th - v_reset))",
                        "v - stop_gradient(v - v_reset) * s_old"},
        .update = {LIF_UPDATE_V, "b * exp(-dt / tau_b) + s_old"},
        .output = "spike((v - v_th - beta * b) / (v_th - v_reset))",
    },
    {
        .model = "lif_expon",
        .n_states = 2, .state_names = {"v", "g"}, .state_init = {0.0, 0.0},
        .n_slots = 1, .slot_names = {"delta"},
        .n_params = 6,
        .param_names = {"tau", "tau_syn", "v_th", "v_reset", "v_rest", "r"},
        .param_defaults = {20.0e-3, 5.0e-3, 1.0, 0.0, 0.0, 1.0},
        .has_reset = 1,
        .n_defines = 2,
        .define_names = {"s_old", "v_r"},
        .define_soft = {LIF_S_OLD, "v - (v_th - v_reset) * s_old"},
        .define_hard = {LIF_S_OLD, "v - stop_gradient(v - v_reset) * s_old"},
        .update = {"v_rest + r * g + (v_r - v_rest - r * g) * exp(-dt / tau)",
                   "g * exp(-dt / tau_syn) + delta"},
        .output = "spike((v - v_th) / (v_th - v_reset))",
    },
    {
        .model = "izhikevich",
        .n_states = 2, .state_names = {"v", "u"}, .state_init = {-65.0, -13.0},
        .n_slots = 1, .slot_names = {"i"},
        .n_params = 5,
        .param_names = {"a", "b", "c", "d", "v_th"},
        .param_defaults = {0.02, 0.2, -65.0, 8.0, 30.0},
        .n_defines = 3,
        .define_names = {"s_old", "v_r", "u_r"},
        .define_soft = {"spike((v - v_th) / v_th)", "v - stop_gradient(v - c) * s_old",
                        "u + d * s_old"},
        .update = {"v_r + dt * 1000 * (0.04 * v_r * v_r + 5 * v_r + 140 - u_r + i)",
                   "u_r + dt * 1000 * a * (b * v_r - u_r)"},
        .output = "spike((v - v_th) / v_th)",
    },
    {
        .model = "rnn_tanh",
        .n_states = 1, .state_names = {"h"}, .state_init = {0.0},
        .n_slots = 1, .slot_names = {"y"},
        .update = {"tanh(y)"},
        .output = "h",
    },
    {
        .model = "gru",
        .n_states = 1, .state_names = {"h"}, .state_init = {0.0},
        .n_slots = 4, .slot_names = {"z", "r", "nx", "nh"},
        .update = {"(1 - sigmoid(z)) * tanh(nx + sigmoid(r) * nh) + sigmoid(z) * h"},
        .output = "h",
    },
    {
        .model = "lstm",
        .n_states = 2, .state_names = {"c", "h"}, .state_init = {0.0, 0.0},
        .n_slots = 4, .slot_names = {"i", "f", "g", "o"},
        .n_defines = 1,
        .define_names = {"c_new"},
        .define_soft = {"sigmoid(f) * c + sigmoid(i) * tanh(g)"},
        .update = {"c_new", "sigmoid(o) * tanh(c_new)"},
        .output = "h",
    },
    {
        .model = "leaky_readout",
        .n_states = 1, .state_names = {"o"}, .state_init = {0.0},
        .n_slots = 1, .slot_names = {"y"},
        .n_params = 1, .param_names = {"tau"}, .param_defaults = {10.0e-3},
        .update = {"o * exp(-dt / tau) + y"},
        .output = "o",
    },
    {
        .model = "linear",
        .n_states = 1, .state_names = {"o"}, .state_init = {0.0},
        .n_slots = 1, .slot_names = {"y"},
        .update = {"y"},
        .output = "o",
    },
};
/* clang-format on */

const struct cell_builtin *
cell_builtin_find(const char *model)
{
    for (int i = 0; i < cell_builtin_count(); i++)
        if (strcmp(builtins[i].model, model) == 0)
            return &builtins[i];
    return NULL;
}

int
cell_builtin_count(void)
{
    return (int)(sizeof builtins / sizeof builtins[0]);
}

const struct cell_builtin *
cell_builtin_at(int i)
{
    return &builtins[i];
}

static int
expr_set(struct model_expr *x, const char *name, const char *text, struct model_pos pos,
         const struct mem *m)
{
    x->name = mem_strdup(m, name);
    x->text = mem_strdup(m, text);
    x->pos = pos;
    return x->name && x->text ? 0 : -1;
}

static void
expr_fini(struct model_expr *x, const struct mem *m)
{
    mem_free(m, &x->name);
    mem_free(m, &x->text);
}

int
cell_expand(const struct cell_builtin *b, int reset_hard, const struct mem *m, struct model_cell *c)
{
    c->model = mem_strdup(m, b->model);
    if (!c->model)
        goto fail;
    c->n_states = b->n_states;
    for (int k = 0; k < b->n_states; k++) {
        c->state_names[k] = mem_strdup(m, b->state_names[k]);
        c->state_init[k] = b->state_init[k];
        if (!c->state_names[k])
            goto fail;
    }
    c->n_slots = b->n_slots;
    for (int s = 0; s < b->n_slots; s++)
        if (!(c->slot_names[s] = mem_strdup(m, b->slot_names[s])))
            goto fail;
    if (b->n_params > 0) {
        c->param_names = mem_calloc(m, (size_t)b->n_params, sizeof *c->param_names);
        c->param_values = mem_calloc(m, (size_t)b->n_params, sizeof *c->param_values);
        if (!c->param_names || !c->param_values)
            goto fail;
        c->n_params = b->n_params;
        for (int i = 0; i < b->n_params; i++) {
            c->param_values[i] = b->param_defaults[i];
            if (!(c->param_names[i] = mem_strdup(m, b->param_names[i])))
                goto fail;
        }
    }
    if (b->n_defines > 0) {
        c->defines = mem_calloc(m, (size_t)b->n_defines, sizeof *c->defines);
        if (!c->defines)
            goto fail;
        c->n_defines = b->n_defines;
        for (int i = 0; i < b->n_defines; i++) {
            const char *text =
                reset_hard && b->define_hard[i] ? b->define_hard[i] : b->define_soft[i];
            if (expr_set(&c->defines[i], b->define_names[i], text, c->pos, m))
                goto fail;
        }
    }
    for (int k = 0; k < b->n_states; k++)
        if (expr_set(&c->updates[k], b->state_names[k], b->update[k], c->pos, m))
            goto fail;
    if (expr_set(&c->output, "output", b->output, c->pos, m))
        goto fail;
    /* DESIGN §3: the default surrogate; sigma is gaussian's default, unused by relu. */
    c->surrogate.kind = MODEL_SURR_RELU;
    c->surrogate.alpha = 0.3;
    c->surrogate.width = 1.0;
    c->surrogate.sigma = 0.5;
    c->is_spiking = strstr(b->output, "spike(") != NULL;
    return 0;
fail:
    cell_fini(c, m);
    return -1;
}

void
cell_fini(struct model_cell *c, const struct mem *m)
{
    mem_free(m, &c->name);
    mem_free(m, &c->model);
    for (int k = 0; k < MODEL_MAX_K; k++) {
        mem_free(m, &c->state_names[k]);
        expr_fini(&c->updates[k], m);
    }
    for (int s = 0; s < MODEL_MAX_SLOTS; s++)
        mem_free(m, &c->slot_names[s]);
    if (c->param_names)
        for (int i = 0; i < c->n_params; i++)
            mem_free(m, &c->param_names[i]);
    mem_free(m, &c->param_names);
    mem_free(m, &c->param_values);
    if (c->defines)
        for (int i = 0; i < c->n_defines; i++)
            expr_fini(&c->defines[i], m);
    mem_free(m, &c->defines);
    expr_fini(&c->output, m);
    memset(c, 0, sizeof *c);
}
