/* The engine: a compiled model and its tick. The only engine header the daemon includes.
 * Engine layer: no sockets, no clock, no allocation or system call inside engine_tick.
 * Every function is called from the thread that owns the engine (the tick thread in the
 * daemon) unless its comment says otherwise. */
#ifndef ETRACE_ENGINE_H
#define ETRACE_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "mem.h"
#include "model.h"
#include "real.h"

struct engine; /* opaque: one compiled model with all its state */

enum engine_learn {
    ENGINE_LEARN_OFF,       /* traces update; nothing accumulated or applied */
    ENGINE_LEARN_ON,        /* DESIGN §4.4 applied */
    ENGINE_LEARN_ACCUMULATE /* gradients summed, never applied (etraced run --align) */
};

/* The rule a projection uses after `algorithm`, `learn:` and the elemwise override. */
enum engine_rule { ENGINE_RULE_FROZEN, ENGINE_RULE_INSTANT, ENGINE_RULE_D_RTRL, ENGINE_RULE_ES };

/* A projection's parameters as arrays in memory (a checkpoint's, a recording's). */
struct engine_tensors {
    int64_t count;          /* weight values: I*O dense, O elemwise, nnz sparse */
    const real *values;     /* [count] */
    const int64_t *indptr;  /* sparse: [I + 1], else NULL */
    const int32_t *indices; /* sparse: [nnz], else NULL */
    const real *bias;       /* [O], or NULL when the model has no bias */
};

struct engine_opts {
    const struct mem *mem;     /* NULL: mem_default() */
    const struct model_fs *fs; /* NULL: files relative to the model path on disk */
    int track_grad_sum;        /* keep the float64 sum of every tick's gradient (etraced run) */
    int64_t part_work;         /* elements per tick part (0: ENGINE_TICK_PART_WORK; tests: small) */
    int defer_small;           /* tests: defer the steps of weights smaller than their pairs */
    /* When set, every projection's parameters come from here instead of the model's files
     * and initialisers (restoring a checkpoint): fill *t (the arrays stay the caller's and
     * are copied) and return 0, or return -1 with e set. */
    int (*param_source)(void *ctx, const char *proj, struct engine_tensors *t, struct err *e);
    void *param_source_ctx;
};

/* Compiles model d. On success the engine owns d (engine_free frees it); on failure the
 * caller still owns it. Loads weights, sizes every buffer, allocates everything the
 * ticks will ever use.
 * Returns 0 and *out, or -1 with e set (model-file errors as FILE:LINE:COL: FIELD: ...;
 * ERR_NOMEM; a resident estimate over physical memory is rejected before allocating). */
int engine_compile(struct model_desc *d, const struct engine_opts *opts, struct engine **out,
                   struct err *e);

/* Frees an engine and everything it owns; accepts NULL; sets *eng to NULL. */
void engine_free(struct engine **eng);

/* The model description the engine was compiled from (owned by the engine). */
const struct model_desc *engine_model(const struct engine *eng);

/* ---- inputs and signals for the next tick (DESIGN §5.3) ---------------------------- */

/* Holds analog input `input`'s value (values[size]) until replaced (zero-order hold). */
void engine_set_input(struct engine *eng, int input, const real *values);

/* Adds spike events for the next tick on a spikes input (index in [0, size), duplicates
 * are one spike). Returns the number of events that did not fit (at most `size` events
 * per tick); out-of-range indices must be rejected by the caller. */
int engine_add_spikes(struct engine *eng, int input, const int32_t *idx, int n);

/* Sets the target of readout r for the next tick only (mse: values[size]). Returns 1 if it
 * replaced a pending target (superseded), else 0. */
int engine_set_target(struct engine *eng, int readout, const real *values);

/* Sets a class-index target (cross_entropy) for the next tick; same return, or -1 (nothing
 * set) when cls is outside [0, size). */
int engine_set_target_class(struct engine *eng, int readout, int cls);

/* Adds a reward to the next tick's sum. */
void engine_add_reward(struct engine *eng, double reward);

/* Marks the next tick as its episode's last (a terminal flag on a reward, DESIGN §4.3,
 * §5.3): after its gradient the reward eligibilities and the exploration are zeroed and
 * the tick after it starts an episode. */
void engine_set_terminal(struct engine *eng);

/* ---- the tick ------------------------------------------------------------------------ */

/* Runs one tick (DESIGN §4.4): forward pass, readouts, loss, traces, learning, the
 * finiteness checks. No allocation, no system call. The calling thread must have FTZ/DAZ
 * set (engine_set_fp_env). */
void engine_tick(struct engine *eng);

/* Sets FTZ and DAZ on the calling thread (x86 MXCSR; a no-op elsewhere). */
void engine_set_fp_env(void);

/* ---- tick parts (DESIGN §5.2 "Tick workers") ------------------------------------------
 * The big per-element phases of a tick (rank-one sgd steps, deferred flushes, D-RTRL
 * traces, outer products: rows of W; the dense and sparse forward: columns of y; a
 * deferred pair's push: rows of u and columns of B) are cut into parts over a fixed
 * partition: the number of parts depends on the phase's work and part_work only, never on
 * who runs them, and each part writes its own rows (columns), each element summed as in
 * one pass. So a tick gives the same bits whether its parts run inline, in any order, or
 * on several threads. (A sparse forward part walks every event row for the entries in its
 * columns, found by binary search: the rows' indices increase. As a forward's bits do not
 * depend on its cut at all, it takes no more parts than the runner has threads. The other
 * phases whose bits do not depend on their cut, each element computed whole by one part —
 * the rows of a rank-one step, a D-RTRL trace pass or an outer product, the dense
 * backward, a bias's step — take one part per runner thread from part_work / 8 elements a
 * part.) The cells stay whole. */

/* Runs part `part` of a phase (any thread; parts of one phase may run concurrently). */
typedef void engine_part_fn(void *arg, int part);

/* Runs parts 0 .. n_parts - 1 of fn, in any order and on any threads, and returns when all
 * are done. work: the phase's elements (a runner may run small phases inline). */
typedef void engine_runner_fn(void *ctx, int n_parts, int64_t work, engine_part_fn *fn, void *arg);

enum {
    ENGINE_TICK_PARTS_MAX = 8,      /* parts of one phase at most */
    ENGINE_TICK_PART_WORK = 1 << 18 /* default elements per part (a phase of less is one part) */
};

/* Sets the runner of the tick's parts (NULL: parts run inline on the tick thread) and the
 * threads behind it (the phases whose bits do not depend on their cut, the forward passes,
 * take no more parts than that). Call between ticks from the tick thread; the runner's
 * threads must have FTZ/DAZ set. */
void engine_set_runner(struct engine *eng, engine_runner_fn *run, void *ctx, int n_threads);

/* The elements of the tick's largest parallel phase (the weights of the largest learning
 * or dense projection): what a runner compares with its threshold to decide whether to
 * wake its workers for a tick. */
int64_t engine_tick_work(const struct engine *eng);

/* ---- results of the last tick -------------------------------------------------------- */

uint64_t engine_tick_count(const struct engine *eng); /* ticks executed so far */
const real *engine_readout_values(const struct engine *eng, int readout); /* [size] */
/* The action of a reward policy readout: [size] (gaussian) or [1] the index (softmax);
 * NULL for other readouts. */
const real *engine_readout_action(const struct engine *eng, int readout);
int engine_last_valid(const struct engine *eng);       /* 0 when a cell was reset */
double engine_last_loss(const struct engine *eng);     /* summed loss (reward: r^t) */
double engine_last_td_error(const struct engine *eng); /* critic: delta^t, else 0 */

/* ---- control, between ticks ----------------------------------------------------------- */

void engine_set_learn(struct engine *eng, enum engine_learn mode);
enum engine_learn engine_get_learn(const struct engine *eng);
void engine_set_lr(struct engine *eng, double lr);
double engine_get_lr(const struct engine *eng);
/* reset states (hidden states, previous outputs, exploration) and/or traces (traces,
 * reward eligibility, n = 0), DESIGN §4.5. */
void engine_reset(struct engine *eng, int states, int traces);

/* ---- introspection ----------------------------------------------------------------- */

int engine_n_inputs(const struct engine *eng);
int engine_n_readouts(const struct engine *eng);
int engine_n_projs(const struct engine *eng);
int engine_n_cells(const struct engine *eng);
int engine_readout_size(const struct engine *eng, int readout);
int engine_input_size(const struct engine *eng, int input);

/* Whether a projection's sgd steps are deferred (learning.defer > 1), and why not. */
enum engine_defer_why {
    ENGINE_DEFER_NOT_ASKED, /* defer <= 1, or the projection does not learn */
    ENGINE_DEFER_YES,       /* deferred */
    ENGINE_DEFER_NOT_RANK1, /* not a rank-one sgd step (D-RTRL, an elemwise weight, another
                             * optimizer or signal) */
    ENGINE_DEFER_TOO_SMALL  /* its r (I + O) pair values would not be fewer than its weights */
};

struct engine_param_view {
    const char *name; /* projection name */
    enum model_op op;
    enum engine_rule rule;
    int64_t in_size, out_size; /* I, O */
    int64_t count;             /* weight values: I*O, nnz or O */
    const real *weight;        /* [count], dense row-major [I][O], sparse CSR order; W alone:
                                  engine_param_weight adds the pending pairs */
    const real *bias;          /* [O] or NULL */
    const int64_t *indptr;     /* sparse: [I+1] */
    const int32_t *indices;    /* sparse: [nnz] */
    const double *grad_sum_w;  /* track_grad_sum: [count] sum of per-tick gradients, else NULL */
    const double *grad_sum_b;  /* [O] or NULL */
    int64_t trace_bytes;       /* memory of this projection's traces */
    int reaches_loss;          /* a within-tick path from its target cell to a loss exists */
    int defers;                /* its sgd steps are kept as pending pairs (DESIGN §4.4) */
    enum engine_defer_why defer_why; /* why they are, or are not */
};

/* A read-only view of projection p's parameters (valid until the next tick or free). */
void engine_param(const struct engine *eng, int p, struct engine_param_view *v);

/* The weights of projection p as every reader sees them: W plus the pending rank-one
 * pairs of deferred steps (DESIGN §4.4), the bits a flush will write. out: [count] in
 * storage order (the view's `weight` is W alone, without the pairs). */
void engine_param_weight(const struct engine *eng, int p, real *out);

/* Adds the gradients still buffered as rank-one pairs to the float64 sums of
 * track_grad_sum (the view's grad_sum_w): call before reading them. */
void engine_sync_grad_sums(struct engine *eng);

/* Checks the engine state after sections were written from outside (a checkpoint): every
 * integer a tick indexes with is in range (pending pairs within learning.defer, a pending
 * target's kind and class, queued spike events, the episode's counters). Returns 0, or -1
 * with e set. */
int engine_state_check(const struct engine *eng, struct err *e);

/* Writable weights of projection p (for tests and hot swap): [count] and [O] or NULL. */
real *engine_weight_mut(struct engine *eng, int p);
real *engine_bias_mut(struct engine *eng, int p);

struct engine_counters {
    uint64_t updates_refused; /* optimizer steps refused as non-finite */
    uint64_t state_resets;    /* cells reset after a non-finite state */
    uint64_t steps;           /* optimizer steps applied */
    uint64_t es_n;            /* ticks since the traces were last reset */
};
void engine_counters(const struct engine *eng, struct engine_counters *c);

/* Per-projection norms for stats (weight and bias together): ||W||, ||W - W0|| (drift since
 * load), ||delta W|| of the weights' change since the previous reading (reading moves the
 * mark), ||gradient|| of the last step, ||traces||. O(parameters): between ticks only. */
struct engine_norms {
    double w, drift, delta, grad, trace;
    int64_t has_drift; /* 0 under stats.drift: off: drift and delta are not measured (0) */
};
void engine_proj_norms(struct engine *eng, int p, struct engine_norms *n);

/* The same norms for every projection, computed a bounded slice at a time so that a
 * model-wide figure never stalls a tick (DESIGN §5.2). Every element is summed in the same
 * order whatever the slicing, so a sliced sweep over unchanged weights gives the bits of
 * engine_proj_norms. The sweep belongs to one engine; restart it after a swap. */
struct engine_norm_sweep {
    int proj;                      /* the projection in progress; n_projs: complete */
    int part;                      /* which of its arrays */
    int64_t off;                   /* elements of that array done */
    double w, drift, delta, trace; /* sums of squares so far for proj */
};
void engine_norms_restart(struct engine_norm_sweep *s);
/* Advances the sweep by about `budget` elements read (each weight counts 3: W, W0 and the
 * mark; <= 0: no limit), storing each finished projection's norms in out[p]. Returns 1 once
 * the sweep is complete (and at once on a complete sweep). */
int engine_norms_advance(struct engine *eng, struct engine_norm_sweep *s, int64_t budget,
                         struct engine_norms *out);

/* Firing rate of cell c over the ticks since the last call (spiking cells; else -1). */
double engine_cell_rate(struct engine *eng, int c);

/* ---- the engine state as named sections (checkpoints, recordings, hot swap) ---------- */

/* What a section holds; decides what `reset`, `load --keep-weights` and `--keep-state`
 * carry (DESIGN §4.5, §5.4). */
enum engine_part {
    ENGINE_PART_PARAM,     /* weights and biases */
    ENGINE_PART_STRUCTURE, /* a sparse weight's indptr and indices (fixed at compile) */
    ENGINE_PART_W0,        /* the weights at load, for drift */
    ENGINE_PART_OPTIM,     /* optimizer moments */
    ENGINE_PART_ACC,       /* the partial gradient sum of the current K ticks */
    ENGINE_PART_TRACE,     /* eligibility traces and the reward eligibility e */
    ENGINE_PART_STATE,     /* hidden states, outputs, the held action, exploration */
    ENGINE_PART_PENDING,   /* held inputs and signals for the next tick */
    ENGINE_PART_DEFERRED   /* pending rank-one pairs of deferred sgd steps (learning.defer) */
};

struct engine_section {
    const char *name; /* "proj.w_rec.weight", "cell.hidden.h", ... (engine-owned) */
    enum engine_part part;
    void *data; /* the bytes, valid until the next tick */
    size_t bytes;
    size_t elem_bytes; /* sizeof(real), or 8 for int64 (4 for sparse indices) */
};

/* The scalars of the engine state. */
struct engine_scalars {
    uint64_t tick, es_n, steps, updates_refused, state_resets;
    int64_t learn; /* enum engine_learn */
    double lr, reward_pending, reward_baseline;
    int64_t held_action;
    uint64_t rng[4]; /* the policy's generator */
};

/* The number of sections, and section i (0 <= i < count). Between ticks only. */
int engine_state_count(const struct engine *eng);
void engine_state_section(struct engine *eng, int i, struct engine_section *s);

/* Finds a section by name; returns its index or -1. */
int engine_state_find(struct engine *eng, const char *name);

/* Section i may be missing from a checkpoint written before it existed (the episode
 * sections): returns 1 after giving it the value that reproduces that checkpoint's
 * behaviour, so a restore may skip it; 0 when the section is required. */
int engine_state_optional(struct engine *eng, int i);

void engine_state_get_scalars(const struct engine *eng, struct engine_scalars *s);
void engine_state_set_scalars(struct engine *eng, const struct engine_scalars *s);

/* Hot swap (DESIGN §5.4): carries into dst every section of src whose name and size match:
 * weights with W0 (so drift continues), their optimizer state and partial sum (and the
 * step count), always; with keep_state also hidden states, outputs, traces and n.
 * Weight-sized buffers are handed over by pointer (src gets dst's in exchange, to be freed
 * with it), the rest copied. Returns the number of sections carried. */
int engine_state_carry(struct engine *dst, struct engine *src, int keep_state);

/* Snapshots (DESIGN §5.2): a snapshot is taken at the end of a tick at which the partial
 * gradient sum is empty or frozen — engine_at_step_boundary() is 1 — and while its large
 * parts are copied a slice per tick, steps are deferred: gradients keep accumulating and a
 * deferred step (engine_step_owed) runs at the first due tick after engine_defer_steps(0). */
void engine_defer_steps(struct engine *eng, int on);
int engine_at_step_boundary(const struct engine *eng);
int engine_step_owed(const struct engine *eng);

/* ---- offline: exact BPTT for `etraced run --align` ---------------------------------- */

/* Starts recording T ticks for an exact BPTT of sum_t L^t (allocates the tape). Needs
 * ENGINE_LEARN_ACCUMULATE and signal: target. Returns 0, or -1 with e set. */
int engine_align_begin(struct engine *eng, int64_t T, struct err *e);

/* Runs the backward pass over what was recorded. Returns 0, or -1 if nothing was. */
int engine_align_finish(struct engine *eng);

/* The BPTT gradient of projection p: w [count], b [O] or NULL; owned by the engine. */
void engine_align_grad(const struct engine *eng, int p, const double **w, const double **b);

/* Total bytes allocated by the compiled engine (the resident estimate). */
size_t engine_resident_bytes(const struct engine *eng);

/* Writes the compile report of DESIGN §6 (text, or one JSON object with json != 0) to f.
 * expand: also print every cell's equations. */
void engine_report(const struct engine *eng, FILE *f, int json, int expand);

#endif
