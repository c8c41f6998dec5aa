/* The built-in cells, transcribed from DESIGN §3. The equations are the definition; the
 * engine compiles them with expr.c like any custom cell. */
#include "cell.h"

#include <string.h>

#define LIF_S_OLD "spike((v - v_th) / (v_th - v_reset))"
#define LIF_UPDATE_V "v_rest + r * i + (v_r - v_rest - r * i) * exp(-dt / tau) + delta"

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
