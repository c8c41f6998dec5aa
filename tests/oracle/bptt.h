/* An independent reference for the online learning rules (DESIGN §4): a small network
 * (one hidden cell, a `linear` readout, mse on the readout) run forward in double with
 * its own hand-written cell equations, an exact backpropagation through time, and
 * direct transcriptions of DESIGN §4.2's D-RTRL, ES-D-RTRL and instant rules.
 *
 * Nothing here is shared with the engine: every cell's forward pass and its derivatives
 * (a reverse-mode vector-Jacobian product per cell, written by hand from DESIGN §3 and
 * the custom cells' equations) are written out below in plain double loops; the engine's
 * compiled forward-mode derivatives (expr.c) and trace kernels (trace.c) are what is
 * tested. Test support only: compiled into tests/engine/oracle_test.c by #include, so
 * every external name carries the prefix `oracle_` (the engine has a bptt module of its
 * own, for `etraced run --align`). */
#ifndef ORACLE_BPTT_H
#define ORACLE_BPTT_H

#include <stdint.h>

enum { ORACLE_MAX_K = 4, ORACLE_MAX_S = 4 };

enum oracle_kind {
    ORACLE_LIF,        /* K 1 (v);       slots i, delta */
    ORACLE_ALIF,       /* K 2 (v, b);    slots i, delta */
    ORACLE_LIF_EXPON,  /* K 2 (v, g);    slot delta */
    ORACLE_IZHIKEVICH, /* K 2 (v, u);    slot i */
    ORACLE_GRU,        /* K 1 (h);       slots z, r, nx, nh */
    ORACLE_LSTM,       /* K 2 (c, h);    slots i, f, g, o */
    ORACLE_ADAPT,      /* custom, DESIGN §2.2's example: K 2 (v, a); slot i */
    ORACLE_TRI,        /* custom, oracle_tri_yaml: K 3 (v, w, q); slots i, j */
    ORACLE_LINEAR      /* K 1 (o);       slot y */
};

enum oracle_surr { ORACLE_SURR_RELU, ORACLE_SURR_SIGMOID, ORACLE_SURR_GAUSSIAN, ORACLE_SURR_EXP };

/* One cell's constants. Every kind reads the fields it uses (oracle_cell_defaults fills
 * DESIGN §3's defaults); dt in seconds. */
struct oracle_cell {
    enum oracle_kind kind;
    int hard; /* reset: hard (lif, alif, lif_expon) */
    double dt;
    double tau, tau_b, tau_syn, beta, v_th, v_reset, v_rest, r; /* lif family, adapt */
    double a, b, c, d;                                          /* izhikevich (with v_th) */
    double tau_v, tau_a;                                        /* adapt (with beta, v_th) */
    double tau_w, k, th;                                        /* tri (with tau) */
    enum oracle_surr surr;
    double alpha, width, sigma;
};

/* The text of the custom cell ORACLE_TRI (K = 3, two slots; exp, tanh, sigmoid, **,
 * relu, min, max, abs, clip, sqrt, log, spike and stop_gradient), as the lines that
 * follow `model: custom` in a model file, indented by 4. */
extern const char oracle_tri_yaml[];
/* DESIGN §2.2's adaptive cell, the same way. */
extern const char oracle_adapt_yaml[];

void oracle_cell_defaults(enum oracle_kind kind, double dt, struct oracle_cell *c);
int oracle_cell_K(enum oracle_kind kind);
int oracle_cell_S(enum oracle_kind kind);
int oracle_cell_spiking(enum oracle_kind kind);
void oracle_cell_init(const struct oracle_cell *c, double *h); /* [K] initial states */

/* One neuron's tick: h_new[K] and the output from h_old[K] and slot[S]. *margin is
 * lowered to the smallest |argument| of every spike() evaluated (may be NULL). */
void oracle_cell_forward(const struct oracle_cell *c, const double *h_old, const double *slot,
                         double *h_new, double *out, double *margin);

/* Reverse mode through one neuron's tick: given adj_new[K] = dL/dh_new, writes
 * adj_old[K] = adj_new^T d h_new/d h_old and adj_slot[S] = adj_new^T d h_new/d slot. */
void oracle_cell_vjp(const struct oracle_cell *c, const double *h_old, const double *slot,
                     const double *adj_new, double *adj_old, double *adj_slot);

/* d out / d h_new [K] at the new states. */
void oracle_cell_dout(const struct oracle_cell *c, const double *h_new, double *dout);

/* The K x K block D[k][j] = d h_new[k] / d h_old[j] and F[k][s] = d h_new[k] / d slot[s],
 * row by row from oracle_cell_vjp. */
void oracle_cell_jacobians(const struct oracle_cell *c, const double *h_old, const double *slot,
                           double D[ORACLE_MAX_K][ORACLE_MAX_K],
                           double F[ORACLE_MAX_K][ORACLE_MAX_S]);

/* The network: input x (n_x analog values) -> w_in -> hidden cell (N neurons) -> w_out
 * (dense [N][M], from the hidden output of the same tick) -> a `linear` readout of size M.
 * The loss of a tick with a target is mean_m (o_m - target_m)^2. */
struct oracle_net {
    struct oracle_cell cell;
    int n_x, N, M;
    int recurrent; /* w_in reads [x, hidden's previous output]: I = n_x + N */
    int elemwise;  /* w_in is elemwise: I = O, y[o] = x[o] w[o] */
    int n_to;      /* slots w_in fills, in order: O = n_to * N */
    int to_slots[ORACLE_MAX_S];
    double *w_in;  /* [I][O] dense, [O] elemwise */
    double *b_in;  /* [O] or NULL */
    double *w_out; /* [N][M] */
    double *b_out; /* [M] or NULL */
};

int oracle_net_I(const struct oracle_net *n);
int oracle_net_O(const struct oracle_net *n);

/* Everything the forward pass computed, tick t = 0 .. T-1. */
struct oracle_tape {
    int T, I, K, S, N, M;
    double *x;     /* [T][I] w_in's pre-synaptic vector */
    double *slot;  /* [T][S][N] the hidden cell's slots */
    double *h;     /* [T+1][K][N] h[0] the initial states, h[t+1] after tick t */
    double *out;   /* [T][N] hidden outputs */
    double *o;     /* [T][M] readout outputs */
    double *dlo;   /* [T][M] dL^t/do, 0 on ticks without a target */
    double loss;   /* sum over ticks */
    double margin; /* smallest |spike argument| seen */
    double spikes; /* summed hidden outputs (spiking cells) */
};

/* Runs T ticks: xs [T][n_x], tgt [T][M], has_tgt [T] (NULL: every tick). Returns 0, or
 * -1 when out of memory. */
int oracle_forward(const struct oracle_net *n, int T, const double *xs, const double *tgt,
                   const unsigned char *has_tgt, struct oracle_tape *tp);
void oracle_tape_free(struct oracle_tape *tp);

/* Gradients of the network's four tensors (any may be NULL to skip it). */
struct oracle_grad {
    double *w_in, *b_in, *w_out, *b_out;
};

/* The exact gradient of sum_t L^t over the tape's ticks by backpropagation through time
 * (through the cell's element-wise recurrence and, for a recurrent net, through the
 * projection of the previous output). Zeroes g first. Returns 0 or -1 (no memory). */
int oracle_bptt(const struct oracle_net *n, const struct oracle_tape *tp,
                const struct oracle_grad *g);

enum oracle_rule { ORACLE_RULE_FROZEN, ORACLE_RULE_INSTANT, ORACLE_RULE_D_RTRL, ORACLE_RULE_ES };

/* DESIGN §4.2 transcribed: the sum over ticks 0 .. t_end-1 of each tick's online
 * gradient, rule_in for w_in (and b_in), rule_out for w_out (and b_out); lambda_x and
 * lambda_f for ES; n counts ticks from 0. Zeroes g first. Returns 0 or -1. */
int oracle_online(const struct oracle_net *n, const struct oracle_tape *tp, int t_end,
                  enum oracle_rule rule_in, enum oracle_rule rule_out, double lambda_x,
                  double lambda_f, const struct oracle_grad *g);

/* Test data: splitmix64 and doubles from it (uniform [0, 1), normal by Box-Muller). */
struct oracle_rng {
    uint64_t s;
};
double oracle_uniform(struct oracle_rng *r);
double oracle_normal(struct oracle_rng *r);

/* max|a - b| / max(max|b|, 1e-12) over n values (DESIGN's relative error). */
double oracle_rel_err(int64_t n, const double *a, const double *b);

#endif
