/* The model description: a model file (DESIGN §2) parsed and validated, with every
 * name resolved to an index. Engine layer. Built-in cells are expanded here into their
 * equations (cell.h), so everything downstream sees only equations. Weights are not
 * loaded here: param.h materialises each projection's tensors from its spec.
 *
 * Where a key is read (the reader: mschema.c holds the table machinery) and where it
 * takes effect (the builder, engine_compile in engine.c, and the modules it calls):
 *   name dt seed stats, inputs:  model.c   engine.c (layout, plant_input, RNG streams)
 *   cells:                       mcell.c   cell.c (built-ins), expr.c (the program)
 *   projections:                 mproj.c   param.c (weights), op_*.c, engine.c (rule)
 *   readouts:                    model.c   engine.c (plant_readout), loss.c
 *   learning:                    mlearn.c  engine.c, trace.c, learn.c, optim.c, defer.c */
#ifndef ETRACE_MODEL_H
#define ETRACE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mem.h"

enum { MODEL_MAX_K = 8, MODEL_MAX_SLOTS = 8 }; /* states and slots per cell */

#define MODEL_MAX_ELEMS 2147483647LL /* 2^31 - 1: the largest tensor we accept */

/* Where a node starts in the model file, 1-based (libyaml marks + 1). */
struct model_pos {
    int line;
    int col;
};

/* Reads a file that a model names (a .npy), relative to the model file's directory.
 * The daemon's `load` serves these from the request's bytes; the default reads the
 * disk. On success *data is allocated with `m` and owned by the caller. Returns 0, or
 * -1 with a message in e (the file name, what failed). */
struct model_fs {
    int (*read)(void *ctx, const char *rel_path, const struct mem *m, void **data, size_t *len,
                struct err *e);
    void *ctx;
};

enum model_input_kind { MODEL_INPUT_ANALOG, MODEL_INPUT_SPIKES };

struct model_input {
    char *name;
    int size;
    enum model_input_kind kind;
    struct model_pos pos;
    /* the plant interface (DESIGN §2), analog inputs only */
    double *offset, *scale; /* [size] or NULL: the model sees (raw - offset) * scale */
    double norm_tau;        /* > 0: normalize with this time constant (s); 0: none */
    double norm_eps;        /* default 1e-8 */
};

enum model_surrogate_kind {
    MODEL_SURR_RELU,
    MODEL_SURR_SIGMOID,
    MODEL_SURR_GAUSSIAN,
    MODEL_SURR_EXPONENTIAL /* `slayer` or `exponential` */
};

struct model_surrogate {
    enum model_surrogate_kind kind;
    double alpha; /* relu, sigmoid, exponential */
    double width; /* relu */
    double sigma; /* gaussian */
};

/* One named expression of a cell: a define helper, a state's update, or the output. */
struct model_expr {
    char *name;           /* helper or state name; "output" for the output */
    char *text;           /* the expression, as written */
    struct model_pos pos; /* where `text` starts in the file (its first character) */
};

struct model_cell {
    char *name;
    char *model;                    /* the built-in's name, or "custom" */
    int size;                       /* neurons */
    int n_states;                   /* K, 1..MODEL_MAX_K */
    char *state_names[MODEL_MAX_K]; /* in `states:` order (built-ins: table order) */
    double state_init[MODEL_MAX_K]; /* initial value of each state */
    int n_slots;                    /* 1..MODEL_MAX_SLOTS */
    char *slot_names[MODEL_MAX_SLOTS];
    int n_params;
    char **param_names;   /* [n_params] */
    double *param_values; /* [n_params], defaults overridden by the file */
    int n_defines;
    struct model_expr *defines;             /* [n_defines], in file order */
    struct model_expr updates[MODEL_MAX_K]; /* one per state, in state order */
    struct model_expr output;
    struct model_surrogate surrogate;
    int is_spiking; /* the output expression contains spike(): firing rates are shown */
    struct model_pos pos;
};

enum model_op { MODEL_OP_DENSE, MODEL_OP_SPARSE, MODEL_OP_ELEMWISE };
enum model_learn { MODEL_LEARN_TRACE, MODEL_LEARN_INSTANT, MODEL_LEARN_FROZEN };

enum model_init {
    MODEL_INIT_ZEROS,
    MODEL_INIT_ONES,
    MODEL_INIT_CONSTANT,
    MODEL_INIT_NORMAL,
    MODEL_INIT_UNIFORM,
    MODEL_INIT_KAIMING_NORMAL,
    MODEL_INIT_XAVIER_UNIFORM
};

enum model_tensor_kind {
    MODEL_TENSOR_NONE,  /* no bias */
    MODEL_TENSOR_INIT,  /* {init: NAME, ...} */
    MODEL_TENSOR_FILE,  /* {file}; sparse: {file, indices, indptr} (CSR) */
    MODEL_TENSOR_COO,   /* sparse {rows, cols, values} */
    MODEL_TENSOR_RANDOM /* sparse {prob, seed, init, ...} */
};

/* A weight or bias as the file gives it. Paths are as written (relative to the model
 * file); read them through struct model_fs. */
struct model_tensor {
    enum model_tensor_kind kind;
    char *file, *indices, *indptr;             /* FILE (indices/indptr: sparse CSR) */
    char *rows, *cols, *values;                /* COO */
    double prob;                               /* RANDOM: keep probability in [0, 1] */
    uint64_t seed;                             /* RANDOM: structure seed */
    enum model_init init;                      /* INIT, and RANDOM's values */
    double value, mean, std, low, high, scale; /* initialiser keys, defaults applied */
    struct model_pos pos;                      /* the `weight:` or `bias:` mapping */
};

struct model_source {
    int is_input; /* 1: inputs[index]; 0: cells[index] */
    int index;
    int offset; /* first row of this source in the pre-synaptic vector */
    int size;
};

struct model_proj {
    char *name;
    int n_from;
    struct model_source *from; /* [n_from], in `from:` order */
    int in_size;               /* I = summed size of from */
    int to_cell;               /* index into cells */
    int n_to_slots;
    int to_slots[MODEL_MAX_SLOTS]; /* slot indices of to_cell, in `to:` order */
    int out_size;                  /* O = n_to_slots * cell size */
    enum model_op op;
    struct model_tensor weight;
    struct model_tensor bias; /* kind NONE when absent */
    enum model_learn learn;
    struct model_pos pos;
};

struct model_readout {
    char *name;
    int cell;
    struct model_pos pos;
    /* the plant interface (DESIGN §2): what is published is clamp(o, lo, hi) * scale */
    int has_clip;
    double clip_lo, clip_hi;
    double scale; /* default 1 */
};

enum model_algorithm { MODEL_ALGO_D_RTRL, MODEL_ALGO_ES_D_RTRL, MODEL_ALGO_HYBRID };
enum model_signal { MODEL_SIGNAL_TARGET, MODEL_SIGNAL_REWARD, MODEL_SIGNAL_NONE };
enum model_loss { MODEL_LOSS_MSE, MODEL_LOSS_CROSS_ENTROPY };
enum model_optim { MODEL_OPTIM_SGD, MODEL_OPTIM_MOMENTUM, MODEL_OPTIM_ADAM };
enum model_policy { MODEL_POLICY_SOFTMAX, MODEL_POLICY_GAUSSIAN };

struct model_learning {
    int present; /* 0: no `learning:` section, nothing learns */
    enum model_algorithm algorithm;
    int has_decay;              /* decay_or_rank given */
    double lambda_x, lambda_f;  /* decays after converting ranks: (R-1)/(R+1) */
    int hybrid_budget;          /* default 4 */
    enum model_signal signal;   /* default target */
    enum model_loss loss;       /* default mse */
    enum model_optim optimizer; /* default sgd */
    double lr;                  /* default 1e-3 */
    double momentum;            /* default 0.9 */
    double beta1, beta2;        /* default 0.9, 0.999 */
    double eps;                 /* default 1e-8 */
    double weight_decay;        /* default 0 */
    double clip_norm;           /* <= 0: none (the default, `null`) */
    int update_every;           /* K >= 1, default 1 */
    int defer;                  /* r >= 1: rank-one steps deferred r ticks (DESIGN §4.4) */
    /* signal: reward */
    int policy_readout; /* index into readouts */
    enum model_policy policy_kind;
    double sigma;            /* default 0.1 */
    double tau_explore;      /* default 0.05 s */
    int action_hold;         /* default 1 */
    int explore_when_frozen; /* default 0 */
    double tau_e;            /* default 0.5 s */
    double tau_baseline;     /* default 5.0 s */
    /* signal: reward with a critic (actor-critic, DESIGN §4.3) */
    int critic_readout;   /* index into readouts; -1: no critic (REINFORCE) */
    double critic_weight; /* default 1.0: the critic's share of the gradient */
    double tau_gamma;     /* default 1.0 s: gamma = exp(-dt/tau_gamma) */
    double tau_lambda;    /* default 0.5 s: lambda = exp(-dt/tau_lambda) */
    int critic_ignores;   /* tau_e or tau_baseline written beside a critic (ignored) */
    struct model_pos pos;
};

struct model_desc {
    char *path; /* the model file as named (for messages) */
    char *text; /* the whole file text, NUL-terminated */
    size_t text_len;
    uint64_t hash; /* FNV-1a 64 of text */
    char *name;
    double dt;     /* seconds, > 0 */
    uint64_t seed; /* default 0 */
    int n_inputs;
    struct model_input *inputs;
    int n_cells;
    struct model_cell *cells;
    int n_projs;
    struct model_proj *projs;
    int n_readouts;
    struct model_readout *readouts;
    struct model_learning learning;
    int stats_drift; /* stats.drift: 1 on (default), 0 off: no W0, no per-weight mark */
};

/* Parses and validates a model from its text. `path` names it in messages and its
 * directory anchors relative paths (fs reads them later; parsing reads no file).
 * On success returns 0 and *out (allocated with m, owned by the caller, freed by
 * model_free). On failure returns -1, *out untouched, and e holds
 * "PATH:LINE:COLUMN: FIELD: message" with code ERR_MODEL, ERR_EXPR, ERR_UNSUPPORTED or
 * ERR_NOMEM. Expressions are parsed here so that their errors carry their column. */
int model_parse(const char *text, size_t len, const char *path, const struct mem *m,
                struct model_desc **out, struct err *e);

/* Reads `path` from disk and parses it (ERR_IO when unreadable). */
int model_load_file(const char *path, const struct mem *m, struct model_desc **out, struct err *e);

/* Frees a description from model_parse; accepts NULL; sets *d to NULL. */
void model_free(struct model_desc **d, const struct mem *m);

/* A model_fs that reads from the disk, relative to the directory of `model_path`.
 * ctx must point at a NUL-terminated directory string that outlives the fs. */
struct model_fs model_fs_disk(const char *model_dir);

/* The directory part of a path ("." when none), into buf. */
void model_dirname(const char *path, char *buf, size_t buf_len);

/* Looks up names; -1 when absent. */
int model_find_input(const struct model_desc *d, const char *name);
int model_find_cell(const struct model_desc *d, const char *name);
int model_find_proj(const struct model_desc *d, const char *name);
int model_find_readout(const struct model_desc *d, const char *name);

#endif
