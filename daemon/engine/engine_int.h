/* The engine's internal structures, shared by engine.c and bptt.c only. Engine layer;
 * the daemon never includes this (it sees engine.h). */
#ifndef ETRACE_ENGINE_INT_H
#define ETRACE_ENGINE_INT_H

#include "engine.h"
#include "optim.h"
#include "param.h"
#include "rng.h"

struct bptt;
struct esection;

/* A cell at run time. Double-buffered states and outputs: `cur` indexes this tick's. */
struct ecell {
    int n, K, S;
    struct expr_prog *prog;
    real *h[2];     /* [K][n] hidden states: h[cur] this tick, h[!cur] the previous */
    real *out[2];   /* [n] outputs, same buffering */
    real *init;     /* [K] initial state values */
    real *init_out; /* [n] the output of the initial states (the same for every neuron) */
    real *slot;     /* [S][n] summed projection inputs */
    real *jac;      /* [K][K][n] d h_new / d h_old */
    real *dslot;    /* [K][S][n] d h_new / d slot */
    real *dout;     /* [K][n] d out / d h_new */
    real *g;        /* [K][n] dL/dh this tick */
    real *dl;       /* [n] dL/d out this tick */
    int has_dl;     /* a loss reached this cell in this tick */
    int bad;        /* a state, output or trace went non-finite in this tick */
    int is_spiking;
    double spikes; /* summed outputs since the last rate read */
    uint64_t rate_ticks;
};

/* A projection at run time. */
struct eproj {
    const struct model_proj *d;
    enum engine_rule rule;
    int64_t I, O, count;         /* count: number of weight values */
    int cell, K, n;              /* target cell, its K and size */
    int reads_now;               /* some source is a cell computed earlier in this tick */
    struct param w;              /* values (+ CSR) and bias; owned */
    real *w0, *b0;               /* values at load, for drift */
    real *w_mark, *b_mark;       /* values at the last engine_proj_norms, for ||delta W|| */
    real *x;                     /* [I] pre-synaptic vector of this tick */
    real *y;                     /* [O] */
    real *Dcol;                  /* [K][K][O] column view of the target's jac */
    real *fcol;                  /* [K][O] column view of d h / d slot */
    real *gcol;                  /* [K][O] column view of g */
    real *q;                     /* [O] column factor, and dL/dy in the backward pass */
    real *scratch;               /* [K][O] */
    real *E, *Eb;                /* D-RTRL traces: weight [K][count-shaped], bias [K][O] */
    real *ex, *ef;               /* ES traces: [I], [K][O] */
    real *acc_w, *acc_b;         /* partial gradient sums */
    real *m_w, *v_w, *m_b, *v_b; /* optimizer state */
    real *e_w, *e_b;             /* reward eligibility (e_pi under a critic) */
    real *ev_w, *ev_b;           /* critic eligibility e_V (signal: reward with a critic) */
    real *gpi;                   /* [K][O] the policy's g, kept while the critic's is formed */
    int has_gpi;                 /* the policy's g reached this projection in this tick */
    real *gt_w, *gt_b;           /* this tick's gradient, when its sum is tracked */
    double *sum_w, *sum_b;       /* float64 sums of per-tick gradients (track_grad_sum) */
    int64_t trace_bytes;
    int opw, opb;     /* indices into engine.oparams, or -1 */
    int reaches_loss; /* DESIGN §4.1: a within-tick path from the target cell to a loss */
    /* the fused sgd path (engine.fused) */
    int has_g;          /* this tick has a learning signal for the target cell */
    int pending;        /* ES/instant: this tick's gradient a (x) q awaits the step */
    const real *pend_a; /* the row factor of that gradient (e_x or x); q is the column one */
    double w_bound;     /* an upper bound of |w| and |b|; < 0 when unknown */
    double step_bound;  /* an upper bound of this tick's |lr * gradient| */
    double e_max;       /* D-RTRL: max|E| over the traces after the last tick */
    /* deferred rank-one steps (defer.c, DESIGN §4.4) */
    int defers;         /* this projection's sgd steps of W are kept as pending pairs */
    int defer_why;      /* enum engine_defer_why: why (not), for the compile report */
    int64_t n_pend_max; /* r: at most r pairs, flushed after ticks t with (t + 1) % r == 0 */
    int64_t n_pend;     /* pairs pending (engine state) */
    real *pa, *pb;      /* the pairs (defer.h): u [I][r], B [r][O] */
    double pseg[5];     /* the open segment of the pairs (defer.h DEFER_SEG_*; engine state) */
    uint64_t pa_zero;   /* bit k (k < 64): slot k of pa is all 0 (set by flushes, not state) */
    real *pc;           /* [ENGINE_TICK_PARTS_MAX][r] scratch: x . a_k, b_k . dy; a flush part's */
    int64_t *pk;        /* [ENGINE_TICK_PARTS_MAX][r] scratch: a flush part's pair numbers */
    int64_t n_grad;     /* ticks in the window of the float64 sums (track_grad_sum) */
    int64_t n_grad_max; /* ticks a window holds (defer_grad_window) */
    real *ga, *gb;      /* its a_t0 then x: [n_grad_max][I]; q: [n_grad_max][O] */
    uint64_t grad_tick; /* the window's last tick */
    real grad_lambda;   /* its a's decay */
};

struct einput {
    int size;
    enum model_input_kind kind;
    real *value;      /* [size] what the next tick reads (held for analog): the raw frame */
    int64_t n_events; /* spikes queued for the next tick */
    /* the plant interface (DESIGN §2): what the model sees, when it differs from value */
    real *seen;      /* [size] the transformed frame, or == value without a transform */
    real *off, *scl; /* [size] offset and scale, or NULL */
    real *norm;      /* [2][size] normalize: m, then s2 (engine state), or NULL */
    double alpha;    /* normalize: 1 - exp(-dt/tau) */
};

struct ereadout {
    int cell, size;
    int64_t target_kind; /* 0 none pending, 1 values, 2 class */
    int64_t cls;
    real *target; /* [size] */
    real *action; /* [size] policy readouts only */
    /* the plant interface (DESIGN §2): clamp(o, lo, hi) * scale as published, or NULL */
    real *pub, *pub_action; /* [size] */
};

struct engine {
    const struct mem *mem;
    struct model_desc *d; /* owned */
    int n_inputs, n_cells, n_projs, n_readouts;
    struct einput *inputs;
    struct ecell *cells;
    struct eproj *projs;
    struct ereadout *readouts;
    void *arena; /* one block for every per-tick buffer */
    size_t arena_bytes;
    size_t big_bytes; /* buffers the size of a weight tensor, allocated one by one */
    size_t param_bytes;
    void *scratch;               /* expr evaluation scratch, shared by the cells */
    int cur;                     /* buffer index of this tick */
    int need_derivs;             /* some projection keeps a trace or learns */
    int track;                   /* track_grad_sum */
    struct optim_param *oparams; /* every learning tensor, for optim_step */
    int n_oparams;
    int fused;       /* sgd, K = 1, no clip, no decay, target, no gradient sums: each
                        tick's step is fused into the trace pass (fused_learn_tick) */
    int defer;       /* optimizer steps deferred (a snapshot is being copied) */
    int defer_r;     /* learning.defer: rank-one steps kept pending up to r ticks */
    int drift;       /* stats.drift on: W0 and the ||delta W|| mark are kept */
    int step_owed;   /* a step fell due while deferred */
    int acc_dirty;   /* the partial sums may hold gradient (the fused path waits) */
    int at_boundary; /* the last tick ended with a step, or learning is not on */
    struct optim_cfg ocfg;
    /* engine state (DESIGN §4.5) */
    uint64_t tick;
    uint64_t es_n;
    uint64_t steps;
    uint64_t updates_refused, state_resets;
    enum engine_learn learn;
    double lr;
    double reward_pending, reward_baseline, last_reward;
    double last_loss;
    int last_valid;
    struct rng policy_rng;
    real *xi;     /* [size] gaussian exploration */
    real *probs;  /* [size] softmax */
    real *dl_tmp; /* [largest readout] one loss's derivative */
    int64_t held_action;
    /* episodes and the critic (DESIGN §4.3): engine state, sections "episode.*", "critic.*" */
    int64_t episode_ticks; /* ticks run in this episode: 0 when the next tick is its first;
                            * -1: count from tick 0 (a checkpoint that predates episodes) */
    int64_t terminal;      /* the next tick is its episode's last (a pending signal) */
    real *v_prev;          /* [1] V^{t-1}, the critic's output at the previous tick */
    int critic_cell;       /* the critic readout's cell, or -1 */
    double last_delta;     /* the TD error delta^t of the last tick (0 without a critic) */
    real lambda_x, lambda_f;
    struct bptt *tape;         /* etraced run --align: the recorded run, else NULL */
    struct esection *sections; /* the state as named buffers (engine_state.c) */
    int n_sections;
    engine_runner_fn *runner; /* runs a phase's parts; NULL: inline */
    void *runner_ctx;
    int runner_threads; /* the threads behind the runner (1 without one) */
    int64_t part_work;  /* elements per part */
};

/* The number of parts of a phase of `work` elements: fixed by work and e->part_work. */
int engine_n_parts(const struct engine *e, int64_t work);

/* The number of parts of a phase whose bits do not depend on its cut at all (each element
 * written whole by one part): one per runner thread, while each gets at least
 * part_work / 8 elements. */
int engine_free_parts(const struct engine *e, int64_t work);

/* Runs parts 0 .. n_parts - 1 of fn through the runner (inline without one) and returns
 * when all are done. */
void engine_run_parts(const struct engine *e, int n_parts, int64_t work, engine_part_fn *fn,
                      void *arg);

/* Rows [*lo, *hi) of n that part `part` of n_parts owns. */
static inline void
engine_part_rows(int64_t n, int n_parts, int part, int64_t *lo, int64_t *hi)
{
    *lo = n * part / n_parts;
    *hi = n * (part + 1) / n_parts;
}

/* Learning happens in this tick: the model learns and learning is on or accumulating. */
static inline int
engine_learning_active(const struct engine *e)
{
    return e->learn != ENGINE_LEARN_OFF && e->need_derivs;
}

/* Sets projection p's ||delta W|| mark to its weights now (after they were replaced). */
void engine_mark_weights(struct eproj *p);

#endif
