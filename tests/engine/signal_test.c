/* The learning signals of DESIGN §4.3 against a separate transcription of its text:
 *  - reward (three-factor REINFORCE with eligibility), both policy kinds: a gaussian policy
 *    (OU exploration, explicit sigma, tau_explore, tau_e, tau_baseline) on a leaky readout
 *    and a softmax policy (action_hold 3, explore_when_frozen, DESIGN's default tau_e and
 *    tau_baseline, update_every 2) on a linear readout, each behind an rnn_tanh layer so
 *    that G^t also crosses a projection within the tick. 300 ticks with a fixed input
 *    pattern, a closed-loop reward sequence (some ticks none, some with two rewards), a
 *    learning-off stretch and a reset of states and traces. Per tick: the readout o^t, the
 *    action a^t (the samples are reproduced from the documented substream
 *    (seed, "policy." + readout): xoshiro256** seeded by splitmix64, Box-Muller normals,
 *    inverse-CDF categorical, README "Random numbers"), the exploration xi^t, r^t (the
 *    loss the engine reports), the baseline b^t, the eligibility e^t, the gradient handed
 *    to the optimizer -(r^t - b^{t-1}) e^t (from the float64 gradient sums), the partial
 *    sum of the update_every ticks (state section acc_*: with update_every 2 it holds,
 *    after the first tick of each pair, exactly that tick's gradient) and the weights
 *    after the sgd step;
 *  - target with loss cross_entropy and class-index targets: the loss -log softmax(o)[c],
 *    the weight gradient outer(x, softmax(o) - onehot(c)) of an `instant` and a `d_rtrl`
 *    projection into a `linear` readout, the weights after each sgd step, and ticks without
 *    a target (class -1 in the test's sequence: no engine_set_target_class call, as
 *    `etraced run` does for a negative class), which must give loss 0 and no gradient.
 * The transcription (ref_* below) is plain double loops written from DESIGN §2.1, §3, §4.1,
 * §4.2, §4.3, §4.4 and the README; it shares no code with the engine. It reads only the
 * engine's initial weights, the inputs and the rewards the engine was given.
 *
 * Tolerances (DESIGN's relative error, max|a-b| / max(max|b|, 1e-12), per tick over the
 * vector of each quantity; the per-tick gradients of the reward runs over the whole
 * [ticks x parameters] array, because r - b crosses zero): double build 1e-12; float
 * build 1e-4 (the engine rounds every state, trace and weight to float while the
 * transcription stays in double; measured up to 2.1e-5, the gaussian readout). Softmax
 * actions must be equal on every tick in both builds.
 * Every comparison is also run against perturbed transcriptions (wrong baseline rate,
 * wrong sign, baseline after its update, no eligibility decay, wrong d log pi, wrong
 * exploration; cross_entropy: wrong sign, no softmax, a gradient on no-target ticks, a
 * loss without log-sum-exp), which must miss by more than 10 times the tolerance: the
 * test can fail (the smallest miss, 4.5e-3, is the softmax run's baseline-after-update:
 * with the default tau_baseline, b moves by only 0.2% of r - b per tick). Everything is
 * deterministic; the whole program runs in well under 1 s. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "real.h"
#include "../support/testmodel.h"
#include "../support/transcribe.h"

#if defined(REAL_DOUBLE)
static const double tol = 1e-12;
#else
static const double tol = 1e-4;
#endif
/* A perturbed transcription must miss by more than this many tolerances. */
static const double power_factor = 10.0;

static int
setup(void **state)
{
    (void)state;
    engine_set_fp_env();
    return 0;
}

/* ---- reward: the model, the engine run and the transcription -------------------------- */

enum {
    NX = 3,   /* input x */
    NH = 4,   /* hidden rnn_tanh */
    OMAX = 3, /* policy readout size (2 gaussian, 3 softmax) */
    T_RW = 300,
    P_MAX = NX * NH + NH + NH * OMAX + OMAX
};

/* One reward model: x -> w_in -> hidden (rnn_tanh) -> w_out -> out (leaky_readout when
 * tau_out > 0, else linear), the policy on readout `act`. */
struct rw_spec {
    const char *label;
    int softmax; /* policy kind: 1 softmax, 0 gaussian */
    int O;       /* size of out */
    double dt, tau_out;
    double sigma, tau_explore, tau_e, tau_baseline, lr;
    int hold, explore_frozen, K;
    int write_defaults;   /* 0: sigma, tau_explore, tau_e, tau_baseline left to DESIGN's defaults */
    const char *in_learn; /* w_in's `learn:` (trace: d_rtrl here, or instant) */
    uint64_t seed;
    int off0, off1; /* learning off for ticks [off0, off1) */
    int reset_at;   /* engine_reset(states, traces) before this tick */
};

/* Parameter vector layout: w_in [NX][NH], b_in [NH], w_out [NH][O], b_out [O]. */
static int
off_bin(void)
{
    return NX * NH;
}

static int
off_wout(void)
{
    return NX * NH + NH;
}

static int
off_bout(const struct rw_spec *s)
{
    return NX * NH + NH + NH * s->O;
}

static int
n_params(const struct rw_spec *s)
{
    return NX * NH + NH + NH * s->O + s->O;
}

/* The observables of one run, per tick (after the tick). */
struct rw_rec {
    double o[T_RW][OMAX], act[T_RW][OMAX], xi[T_RW][OMAX];
    double r_given[T_RW]; /* the sum of the rewards given for tick t (the test's input) */
    double r[T_RW];       /* r^t: the engine's loss of tick t (reward: r^t) */
    double b[T_RW];       /* b^t */
    double e[T_RW][P_MAX];
    double th[T_RW][P_MAX];  /* parameters after the tick's step */
    double g[T_RW][P_MAX];   /* this tick's gradient handed to the optimizer */
    double acc[T_RW][P_MAX]; /* the partial sum after the tick (0 after a step) */
};

static void
rw_model_text(char *buf, size_t len, const struct rw_spec *s)
{
    char dt[40], tau[40], sg[40], te[40], tex[40], tb[40], lr[40];
    transcribe_fmt_num(dt, sizeof dt, s->dt);
    transcribe_fmt_num(tau, sizeof tau, s->tau_out);
    transcribe_fmt_num(sg, sizeof sg, s->sigma);
    transcribe_fmt_num(tex, sizeof tex, s->tau_explore);
    transcribe_fmt_num(te, sizeof te, s->tau_e);
    transcribe_fmt_num(tb, sizeof tb, s->tau_baseline);
    transcribe_fmt_num(lr, sizeof lr, s->lr);
    char out[160], pol[320], taus[160];
    if (s->tau_out > 0.0)
        snprintf(out, sizeof out,
                 "  - {name: out, model: leaky_readout, size: %d, params: {tau: %s}}\n", s->O, tau);
    else
        snprintf(out, sizeof out, "  - {name: out, model: linear, size: %d}\n", s->O);
    snprintf(pol, sizeof pol, "{readout: act, kind: %s, action_hold: %d, explore_when_frozen: %s",
             s->softmax ? "softmax" : "gaussian", s->hold, s->explore_frozen ? "true" : "false");
    taus[0] = '\0';
    if (s->write_defaults) {
        size_t n = strlen(pol);
        snprintf(pol + n, sizeof pol - n, ", sigma: %s, tau_explore: %s", sg, tex);
        snprintf(taus, sizeof taus, "  tau_e: %s\n  tau_baseline: %s\n", te, tb);
    }
    snprintf(buf, len,
             "name: signal_%s\n"
             "dt: %s\n"
             "seed: %llu\n"
             "inputs:\n"
             "  - {name: x, size: %d}\n"
             "cells:\n"
             "  - {name: hidden, model: rnn_tanh, size: %d}\n"
             "%s"
             "projections:\n"
             "  - name: w_in\n"
             "    from: x\n"
             "    to: hidden\n"
             "    weight: {init: normal, std: 0.6}\n"
             "    bias: {init: constant, value: 0.1}\n"
             "    learn: %s\n"
             "  - name: w_out\n"
             "    from: hidden\n"
             "    to: out\n"
             "    weight: {init: normal, std: 0.5}\n"
             "    bias: {init: constant, value: -0.05}\n"
             "readouts:\n"
             "  - {name: act, cell: out}\n"
             "learning:\n"
             "  algorithm: d_rtrl\n"
             "  signal: reward\n"
             "  policy: %s}\n"
             "%s"
             "  optimizer: {kind: sgd, lr: %s}\n"
             "  update_every: %d\n",
             s->label, dt, (unsigned long long)s->seed, NX, NH, out, s->in_learn, pol, taus, lr,
             s->K);
}

/* The fixed input pattern, rounded to real. */
static void
rw_input(int t, double *x)
{
    for (int i = 0; i < NX; i++)
        x[i] = transcribe_as_real(0.8 * sin(0.07 * t + 1.3 * i) + 0.2 * (i - 1));
}

/* The rewards for tick t + 1, from the action of tick t (closed loop), in the order they
 * are given: none on some ticks, two on others. Returns how many (0..2). */
static int
rw_rewards(const struct rw_spec *s, int t, const double *act, double *rw)
{
    int n = 0;
    if (t % 7 != 3) {
        if (s->softmax)
            rw[n++] = (int)act[0] == (t / 20) % s->O ? 1.0 : -0.5;
        else
            rw[n++] = exp(-(act[0] - 0.5) * (act[0] - 0.5) - (act[1] + 0.2) * (act[1] + 0.2));
    }
    if (t % 5 == 0)
        rw[n++] = 0.25;
    return n;
}

/* Copies projection `name`'s weight and bias (or their gradient sums) into v. */
static void
read_proj(struct engine *eng, const char *name, int sums, double *v, int count, int O)
{
    struct engine_param_view pv;
    engine_param(eng, testmodel_proj(eng, name), &pv);
    assert_int_equal(pv.count, count);
    assert_non_null(pv.bias);
    if (sums) {
        assert_non_null(pv.grad_sum_w);
        for (int i = 0; i < count; i++)
            v[i] = pv.grad_sum_w[i];
        for (int o = 0; o < O; o++)
            v[count + o] = pv.grad_sum_b[o];
    } else {
        for (int i = 0; i < count; i++)
            v[i] = (double)pv.weight[i];
        for (int o = 0; o < O; o++)
            v[count + o] = (double)pv.bias[o];
    }
}

/* The engine state section `name` (reals) into v[n]. */
static void
read_section(struct engine *eng, const char *name, double *v, int n)
{
    int i = engine_state_find(eng, name);
    if (i < 0)
        fail_msg("no engine state section %s", name);
    struct engine_section sec;
    engine_state_section(eng, i, &sec);
    assert_int_equal(sec.bytes, (size_t)n * sizeof(real));
    const real *p = sec.data;
    for (int k = 0; k < n; k++)
        v[k] = (double)p[k];
}

static void
rw_read_params(struct engine *eng, const struct rw_spec *s, int sums, double *th)
{
    read_proj(eng, "w_in", sums, th, NX * NH, NH);
    read_proj(eng, "w_out", sums, th + off_wout(), NH * s->O, s->O);
}

/* Runs the engine over T_RW ticks and records what its API shows. th0 gets the initial
 * parameters. */
static void
rw_engine_run(struct engine *eng, const struct rw_spec *s, double *th0, struct rw_rec *rec)
{
    int P = n_params(s), O = s->O, ro = testmodel_readout(eng, "act");
    assert_true(ro >= 0);
    assert_int_equal(engine_readout_size(eng, ro), O);
    rw_read_params(eng, s, 0, th0);
    double prev_sum[P_MAX] = {0}, sum[P_MAX];
    double pending = 0.1; /* the reward for tick 0 */
    engine_add_reward(eng, 0.1);
    for (int t = 0; t < T_RW; t++) {
        if (t == s->off0)
            engine_set_learn(eng, ENGINE_LEARN_OFF);
        if (t == s->off1)
            engine_set_learn(eng, ENGINE_LEARN_ON);
        if (t == s->reset_at)
            engine_reset(eng, 1, 1);
        double x[NX];
        real xr[NX];
        rw_input(t, x);
        for (int i = 0; i < NX; i++)
            xr[i] = (real)x[i];
        engine_set_input(eng, 0, xr);
        rec->r_given[t] = pending;
        engine_tick(eng);
        const real *o = engine_readout_values(eng, ro), *a = engine_readout_action(eng, ro);
        assert_non_null(a);
        for (int k = 0; k < O; k++)
            rec->o[t][k] = (double)o[k];
        for (int k = 0; k < (s->softmax ? 1 : O); k++)
            rec->act[t][k] = (double)a[k];
        if (!s->softmax)
            read_section(eng, "policy.xi", rec->xi[t], O);
        rec->r[t] = engine_last_loss(eng); /* r^t under reward */
        struct engine_scalars sc;
        engine_state_get_scalars(eng, &sc);
        rec->b[t] = sc.reward_baseline;
        read_section(eng, "proj.w_in.elig_w", rec->e[t], NX * NH);
        read_section(eng, "proj.w_in.elig_b", rec->e[t] + off_bin(), NH);
        read_section(eng, "proj.w_out.elig_w", rec->e[t] + off_wout(), NH * O);
        read_section(eng, "proj.w_out.elig_b", rec->e[t] + off_bout(s), O);
        read_section(eng, "proj.w_in.acc_w", rec->acc[t], NX * NH);
        read_section(eng, "proj.w_in.acc_b", rec->acc[t] + off_bin(), NH);
        read_section(eng, "proj.w_out.acc_w", rec->acc[t] + off_wout(), NH * O);
        read_section(eng, "proj.w_out.acc_b", rec->acc[t] + off_bout(s), O);
        rw_read_params(eng, s, 0, rec->th[t]);
        rw_read_params(eng, s, 1, sum);
        for (int i = 0; i < P; i++) {
            rec->g[t][i] = sum[i] - prev_sum[i];
            prev_sum[i] = sum[i];
        }
        double rw[2];
        int n = rw_rewards(s, t, rec->act[t], rw);
        pending = 0.0;
        for (int k = 0; k < n; k++) {
            engine_add_reward(eng, rw[k]);
            pending += rw[k];
        }
    }
}

/* Ways to get DESIGN §4.3 wrong, to show the comparison would catch them. */
enum rw_pert {
    RW_EXACT,
    RW_BASELINE_RATE,  /* beta from 2 * tau_baseline */
    RW_SIGN,           /* +(r - b) e handed to the optimizer */
    RW_BASELINE_AFTER, /* r^t - b^t instead of r^t - b^{t-1} */
    RW_NO_DECAY,       /* e = e + G (gamma = 1) */
    RW_LOGPI,          /* gaussian: (a - o) / sigma; softmax: log pi counted while held */
    RW_EXPLORE,        /* gaussian: xi = rho xi + sigma z; softmax: a draw every tick */
    RW_N_PERT
};

static const char *const rw_pert_names[RW_N_PERT] = {
    "exact transcription",
    "baseline rate from 2 tau_baseline",
    "sign: +(r - b) e",
    "advantage r^t - b^t (after update)",
    "no eligibility decay (gamma = 1)",
    "d log pi: gaussian /sigma, softmax counted while held",
    "exploration: OU without sqrt(1 - rho^2) / softmax drawn every tick",
};

/* The transcription of DESIGN §4.3 (with §2.1, §3, §4.1, §4.2 and §4.4 for the rest of the
 * tick), in double, from the initial parameters th0 and the recorded rewards r[]. */
static void
ref_reward_run(const struct rw_spec *s, enum rw_pert pert, const double *th0, const double *r,
               struct rw_rec *out)
{
    const int O = s->O, P = n_params(s);
    const int bi = off_bin(), wo = off_wout(), bo = off_bout(s);
    /* leaky_readout: o = o exp(-dt/tau) + y, so D = exp(-dt/tau), f = 1; linear: D = 0 */
    const double leak = s->tau_out > 0.0 ? exp(-s->dt / s->tau_out) : 0.0;
    const double rho = exp(-s->dt / s->tau_explore);
    const double gamma = pert == RW_NO_DECAY ? 1.0 : exp(-s->dt / s->tau_e);
    const double tau_b = pert == RW_BASELINE_RATE ? 2.0 * s->tau_baseline : s->tau_baseline;
    const double beta = exp(-s->dt / tau_b);
    const double ou = pert == RW_EXPLORE ? s->sigma : s->sigma * sqrt(1.0 - rho * rho);
    const int hold = s->softmax && pert == RW_EXPLORE ? 1 : s->hold;

    struct transcribe_rng rng; /* the substream (seed, "policy." + readout) */
    transcribe_rng_seed(&rng, s->seed, "policy.act");

    double th[P_MAX], e[P_MAX] = {0}, acc[P_MAX] = {0};
    double o_prev[OMAX] = {0}, xi[OMAX] = {0}, E_out[NH * OMAX] = {0}, Eb_out[OMAX] = {0};
    double b = 0.0;
    int held = 0;
    memcpy(th, th0, (size_t)P * sizeof(double));
    memset(out, 0, sizeof *out);

    for (int t = 0; t < T_RW; t++) {
        int learning = !(t >= s->off0 && t < s->off1);
        if (t == s->reset_at) { /* reset states (outputs, xi) and traces (E, e) */
            memset(o_prev, 0, sizeof o_prev);
            memset(xi, 0, sizeof xi);
            memset(E_out, 0, sizeof E_out);
            memset(Eb_out, 0, sizeof Eb_out);
            memset(e, 0, sizeof e);
        }
        double x[NX], h[NH], fh[NH], o[OMAX], act[OMAX] = {0}, dlp[OMAX] = {0};
        rw_input(t, x);
        /* forward (§2.1): hidden reads x now, out reads hidden as computed this tick */
        for (int j = 0; j < NH; j++) {
            double y = 0.0;
            for (int i = 0; i < NX; i++)
                y += x[i] * th[i * NH + j];
            h[j] = tanh(y + th[bi + j]);
            fh[j] = 1.0 - h[j] * h[j]; /* f = dh/dy of rnn_tanh; its D is 0 */
        }
        for (int k = 0; k < O; k++) {
            double y = 0.0;
            for (int j = 0; j < NH; j++)
                y += h[j] * th[wo + j * O + k];
            o[k] = leak * o_prev[k] + (y + th[bo + k]);
        }
        /* D-RTRL traces of w_out (§4.2): E = D E + f x, E_b = D E_b + f; w_in's are
         * E = f x (D = 0), the same as the instant rule */
        for (int j = 0; j < NH; j++)
            for (int k = 0; k < O; k++)
                E_out[j * O + k] = leak * E_out[j * O + k] + h[j];
        for (int k = 0; k < O; k++)
            Eb_out[k] = leak * Eb_out[k] + 1.0;

        /* the policy (§4.3) */
        int sample = learning || s->explore_frozen, has_signal = 0;
        if (!s->softmax) {
            for (int k = 0; k < O; k++) {
                if (sample)
                    xi[k] = rho * xi[k] + ou * transcribe_normal(&rng);
                act[k] = sample ? o[k] + xi[k] : o[k];
            }
            if (learning) {
                double var = pert == RW_LOGPI ? s->sigma : s->sigma * s->sigma;
                for (int k = 0; k < O; k++)
                    dlp[k] = (act[k] - o[k]) / var;
                has_signal = 1;
            }
        } else {
            double p[OMAX];
            transcribe_softmax(O, p, o);
            if (!sample) {
                int best = 0;
                for (int k = 1; k < O; k++)
                    if (o[k] > o[best])
                        best = k;
                act[0] = best;
            } else {
                int draw = t % hold == 0;
                if (draw)
                    held = transcribe_categorical(&rng, O, p);
                act[0] = held;
                if (learning && (draw || pert == RW_LOGPI)) {
                    for (int k = 0; k < O; k++)
                        dlp[k] = (k == held ? 1.0 : 0.0) - p[k];
                    has_signal = 1;
                }
            }
        }

        /* G^t: the rule's gradient with dL/do replaced by d log pi / do (§4.1: out's g is
         * dlp, carried back through w_out^T to hidden within the tick) */
        double G[P_MAX] = {0}, g[P_MAX] = {0};
        if (learning && has_signal) {
            for (int j = 0; j < NH; j++) {
                double dh = 0.0;
                for (int k = 0; k < O; k++)
                    dh += th[wo + j * O + k] * dlp[k];
                for (int i = 0; i < NX; i++)
                    G[i * NH + j] = dh * fh[j] * x[i];
                G[bi + j] = dh * fh[j];
            }
            for (int j = 0; j < NH; j++)
                for (int k = 0; k < O; k++)
                    G[wo + j * O + k] = dlp[k] * E_out[j * O + k];
            for (int k = 0; k < O; k++)
                G[bo + k] = dlp[k] * Eb_out[k];
        }
        if (learning) {
            /* e^t = gamma e^{t-1} + G^t; gradient -(r^t - b^{t-1}) e^t;
             * b^t = beta b^{t-1} + (1 - beta) r^t */
            double b_new = beta * b + (1.0 - beta) * r[t];
            double adv = r[t] - (pert == RW_BASELINE_AFTER ? b_new : b);
            for (int i = 0; i < P; i++) {
                e[i] = gamma * e[i] + G[i];
                g[i] = (pert == RW_SIGN ? adv : -adv) * e[i];
                acc[i] += g[i];
            }
            b = b_new;
            if ((t + 1) % s->K == 0) { /* sgd on the sum of the last K ticks (§4.4) */
                for (int i = 0; i < P; i++) {
                    th[i] -= s->lr * acc[i];
                    acc[i] = 0.0;
                }
            }
        }
        for (int k = 0; k < O; k++) {
            out->o[t][k] = o[k];
            out->act[t][k] = act[k];
            out->xi[t][k] = xi[k];
            o_prev[k] = o[k];
        }
        out->r_given[t] = r[t];
        out->r[t] = r[t];
        out->b[t] = b;
        memcpy(out->e[t], e, (size_t)P * sizeof(double));
        memcpy(out->th[t], th, (size_t)P * sizeof(double));
        memcpy(out->g[t], g, (size_t)P * sizeof(double));
        memcpy(out->acc[t], acc, (size_t)P * sizeof(double));
    }
}

enum { Q_O, Q_ACT, Q_XI, Q_R, Q_B, Q_E, Q_G, Q_ACC, Q_W, Q_N };
static const char *const q_names[Q_N] = {"readout o",     "action a",    "explore xi",
                                         "reward r=loss", "baseline b",  "eligibility e",
                                         "gradient",      "partial sum", "weights"};

/* Compares an engine run with a transcription, quantity by quantity. */
static void
rw_compare(const struct rw_spec *s, const struct rw_rec *eng, const struct rw_rec *ref,
           struct transcribe_qerr *q)
{
    int O = s->O, P = n_params(s);
    memset(q, 0, Q_N * sizeof *q);
    double gnum = 0.0, gden = 0.0;
    int gtick = 0;
    for (int t = 0; t < T_RW; t++) {
        transcribe_qerr_add(&q[Q_O], transcribe_rel_err(O, eng->o[t], ref->o[t]), t);
        if (s->softmax) /* an index: equal or not */
            transcribe_qerr_add(&q[Q_ACT], eng->act[t][0] == ref->act[t][0] ? 0.0 : 1.0, t);
        else
            transcribe_qerr_add(&q[Q_ACT], transcribe_rel_err(O, eng->act[t], ref->act[t]), t);
        if (!s->softmax)
            transcribe_qerr_add(&q[Q_XI], transcribe_rel_err(O, eng->xi[t], ref->xi[t]), t);
        transcribe_qerr_add(&q[Q_R], transcribe_rel_err(1, &eng->r[t], &ref->r[t]), t);
        transcribe_qerr_add(&q[Q_B], transcribe_rel_err(1, &eng->b[t], &ref->b[t]), t);
        transcribe_qerr_add(&q[Q_E], transcribe_rel_err(P, eng->e[t], ref->e[t]), t);
        transcribe_qerr_add(&q[Q_ACC], transcribe_rel_err(P, eng->acc[t], ref->acc[t]), t);
        transcribe_qerr_add(&q[Q_W], transcribe_rel_err(P, eng->th[t], ref->th[t]), t);
        for (int i = 0; i < P; i++) {
            double d = fabs(eng->g[t][i] - ref->g[t][i]);
            if (d > gnum || d != d) {
                gnum = d;
                gtick = t;
            }
            gden = fabs(ref->g[t][i]) > gden ? fabs(ref->g[t][i]) : gden;
        }
    }
    q[Q_G].err = gnum / (gden > 1e-12 ? gden : 1e-12);
    q[Q_G].tick = gtick;
}

/* The whole reward check for one spec: engine run, exact transcription, table, then the
 * perturbed transcriptions. */
static void
rw_check(const struct rw_spec *s)
{
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    char text[4096];
    rw_model_text(text, sizeof text, s);
    struct engine *eng = testmodel_compile_text(&tm, NULL, text, NULL, 1);
    if (!eng)
        fail_msg("%s: compile failed: %s", s->label, tm.err);
    struct rw_rec *er = calloc(1, sizeof *er), *rr = calloc(1, sizeof *rr);
    assert_non_null(er);
    assert_non_null(rr);
    double th0[P_MAX];
    rw_engine_run(eng, s, th0, er);

    /* sanity: the run moved the weights, visited both signs of r - b, and drew actions */
    double moved = transcribe_rel_err(n_params(s), er->th[T_RW - 1], th0);
    int n_pos = 0, n_neg = 0;
    for (int t = 1; t < T_RW; t++) {
        n_pos += er->r_given[t] > er->b[t - 1];
        n_neg += er->r_given[t] < er->b[t - 1];
    }
    printf("[signal_test] %s: %d ticks, weights moved %.3g (relative), r - b > 0 on %d ticks, "
           "< 0 on %d\n",
           s->label, T_RW, moved, n_pos, n_neg);
    assert_true(moved > 1e-3);
    assert_true(n_pos > 20 && n_neg > 20);

    ref_reward_run(s, RW_EXACT, th0, er->r_given, rr);
    struct transcribe_qerr q[Q_N];
    rw_compare(s, er, rr, q);
    printf("[signal_test] %s vs DESIGN §4.3 transcription (%s build, tol %.0e):\n", s->label,
           REAL_NAME, tol);
    for (int k = 0; k < Q_N; k++) {
        if (k == Q_XI && s->softmax)
            continue;
        printf("[signal_test]   %-14s %-9s max rel err %.3e at tick %d\n", q_names[k],
               q[k].err <= tol ? "ok" : "DEVIATES", q[k].err, q[k].tick);
    }
    for (int k = 0; k < Q_N; k++)
        if (!(q[k].err <= tol))
            fail_msg("%s: %s deviates from DESIGN §4.3: relative error %.3e > %.0e at tick %d",
                     s->label, q_names[k], q[k].err, tol, q[k].tick);

    for (int pz = RW_EXACT + 1; pz < RW_N_PERT; pz++) {
        struct transcribe_qerr qp[Q_N];
        ref_reward_run(s, (enum rw_pert)pz, th0, er->r_given, rr);
        rw_compare(s, er, rr, qp);
        double m = transcribe_qerr_max(qp, Q_N);
        int worst = 0;
        for (int k = 1; k < Q_N; k++)
            if (qp[k].err > qp[worst].err)
                worst = k;
        printf("[signal_test]   perturbed (%s): max rel err %.3e (%s) -> %s\n", rw_pert_names[pz],
               m, q_names[worst], m > power_factor * tol ? "would not match" : "UNDETECTED");
        if (!(m > power_factor * tol))
            fail_msg("%s: the perturbed transcription '%s' matches the engine (%.3e): the test "
                     "has no power",
                     s->label, rw_pert_names[pz], m);
    }
    free(er);
    free(rr);
    engine_free(&eng);
    testmodel_fini(&tm);
}

/* Gaussian policy: explicit sigma, tau_explore, tau_e, tau_baseline; leaky readout; sgd
 * every tick; explore_when_frozen false (no samples while learning is off). */
static void
test_signal_reward_gaussian(void **state)
{
    (void)state;
    const struct rw_spec s = {.label = "gaussian",
                              .softmax = 0,
                              .O = 2,
                              .dt = 0.01,
                              .tau_out = 0.03,
                              .sigma = 0.3,
                              .tau_explore = 0.02,
                              .tau_e = 0.05,
                              .tau_baseline = 0.1,
                              .lr = 1e-3,
                              .hold = 1,
                              .explore_frozen = 0,
                              .K = 1,
                              .write_defaults = 1,
                              .in_learn = "trace",
                              .seed = 11,
                              .off0 = 120,
                              .off1 = 150,
                              .reset_at = 210};
    rw_check(&s);
}

/* Softmax policy: action_hold 3, explore_when_frozen true, DESIGN's defaults for tau_e
 * (0.5 s) and tau_baseline (5.0 s); linear readout; instant rule on w_in; sgd every 2
 * ticks. */
static void
test_signal_reward_softmax(void **state)
{
    (void)state;
    const struct rw_spec s = {.label = "softmax",
                              .softmax = 1,
                              .O = 3,
                              .dt = 0.01,
                              .tau_out = 0.0,
                              .sigma = 0.1,
                              .tau_explore = 0.05,
                              .tau_e = 0.5,
                              .tau_baseline = 5.0,
                              .lr = 0.005,
                              .hold = 3,
                              .explore_frozen = 1,
                              .K = 2,
                              .write_defaults = 0,
                              .in_learn = "instant",
                              .seed = 23,
                              .off0 = 120,
                              .off1 = 150,
                              .reset_at = 210};
    rw_check(&s);
}

/* ---- target: cross_entropy ------------------------------------------------------------- */

enum {
    CE_NA = 3, /* input xa -> wa (instant, with bias) */
    CE_NB = 2, /* input xb -> wb (d_rtrl through `learn: trace`, no bias) */
    CE_O = 4,  /* linear readout */
    CE_P = CE_NA * CE_O + CE_O + CE_NB * CE_O,
    T_CE = 200
};

static const double ce_lr = 0.2;

static const char CE_MODEL[] = "name: signal_ce\n"
                               "dt: 1.0e-3\n"
                               "seed: 5\n"
                               "inputs:\n"
                               "  - {name: xa, size: 3}\n"
                               "  - {name: xb, size: 2}\n"
                               "cells:\n"
                               "  - {name: out, model: linear, size: 4}\n"
                               "projections:\n"
                               "  - name: wa\n"
                               "    from: xa\n"
                               "    to: out\n"
                               "    weight: {init: normal, std: 0.5}\n"
                               "    bias: {init: constant, value: 0.05}\n"
                               "    learn: instant\n"
                               "  - name: wb\n"
                               "    from: xb\n"
                               "    to: out\n"
                               "    weight: {init: normal, std: 0.5}\n"
                               "readouts:\n"
                               "  - {name: cls, cell: out}\n"
                               "learning:\n"
                               "  algorithm: d_rtrl\n"
                               "  signal: target\n"
                               "  loss: cross_entropy\n"
                               "  optimizer: {kind: sgd, lr: 0.2}\n"
                               "  update_every: 1\n";

/* Inputs of tick t (rounded to real); every 50 ticks a large one (logits ~ 10). */
static void
ce_input(int t, double *xa, double *xb)
{
    double big = t % 50 == 25 ? 12.0 : 1.0;
    for (int i = 0; i < CE_NA; i++)
        xa[i] = transcribe_as_real(big * cos(0.11 * t + 0.9 * i));
    for (int i = 0; i < CE_NB; i++)
        xb[i] = transcribe_as_real(big * (0.5 * sin(0.05 * t - 0.7 * i) + 0.3));
}

/* The class of tick t; -1 = no target. */
static int
ce_class(int t)
{
    return t % 6 == 4 ? -1 : (t * 7 / 5) % CE_O;
}

struct ce_rec {
    double o[T_CE][CE_O], loss[T_CE], th[T_CE][CE_P], g[T_CE][CE_P];
};

static void
ce_read_params(struct engine *eng, int sums, double *th)
{
    double wb[CE_NB * CE_O];
    read_proj(eng, "wa", sums, th, CE_NA * CE_O, CE_O);
    struct engine_param_view pv;
    engine_param(eng, testmodel_proj(eng, "wb"), &pv);
    assert_int_equal(pv.count, CE_NB * CE_O);
    assert_null(pv.bias);
    assert_int_equal(pv.rule, ENGINE_RULE_D_RTRL);
    for (int i = 0; i < CE_NB * CE_O; i++)
        wb[i] = sums ? pv.grad_sum_w[i] : (double)pv.weight[i];
    memcpy(th + CE_NA * CE_O + CE_O, wb, sizeof wb);
}

enum ce_pert { CE_EXACT, CE_SIGN, CE_NO_SOFTMAX, CE_NO_TARGET_AS_0, CE_LOSS_NO_LSE, CE_N_PERT };
static const char *const ce_pert_names[CE_N_PERT] = {
    "exact transcription", "sign: onehot - softmax", "dL/do = o - onehot (no softmax)",
    "no-target ticks as class 0", "loss -o[c] (no log-sum-exp)"};

/* The transcription of DESIGN §4.3 cross_entropy with §4.2's instant and d_rtrl rules
 * into a linear readout (f = 1, D = 0: both give outer(x, dL/do)) and sgd (§4.4). */
static void
ref_ce_run(enum ce_pert pert, const double *th0, struct ce_rec *out)
{
    const int ba = CE_NA * CE_O, wb = ba + CE_O;
    double th[CE_P];
    memcpy(th, th0, sizeof th);
    memset(out, 0, sizeof *out);
    for (int t = 0; t < T_CE; t++) {
        double xa[CE_NA], xb[CE_NB], o[CE_O], p[CE_O], dl[CE_O] = {0}, g[CE_P] = {0};
        ce_input(t, xa, xb);
        for (int k = 0; k < CE_O; k++) { /* the slot sums its projections in file order */
            double ya = 0.0, yb = 0.0;
            for (int i = 0; i < CE_NA; i++)
                ya += xa[i] * th[i * CE_O + k];
            for (int i = 0; i < CE_NB; i++)
                yb += xb[i] * th[wb + i * CE_O + k];
            o[k] = (ya + th[ba + k]) + yb;
        }
        int c = ce_class(t);
        if (c < 0 && pert == CE_NO_TARGET_AS_0)
            c = 0;
        double loss = 0.0;
        if (c >= 0) {
            /* L = -log softmax(o)[c] = logsumexp(o) - o[c]; dL/do = softmax(o) - onehot(c) */
            double mx = o[0], s = 0.0;
            for (int k = 1; k < CE_O; k++)
                mx = o[k] > mx ? o[k] : mx;
            for (int k = 0; k < CE_O; k++)
                s += exp(o[k] - mx);
            loss = pert == CE_LOSS_NO_LSE ? -o[c] : mx + log(s) - o[c];
            transcribe_softmax(CE_O, p, o);
            for (int k = 0; k < CE_O; k++) {
                double oh = k == c ? 1.0 : 0.0;
                dl[k] = pert == CE_SIGN ? oh - p[k] : pert == CE_NO_SOFTMAX ? o[k] - oh : p[k] - oh;
            }
            for (int k = 0; k < CE_O; k++) {
                for (int i = 0; i < CE_NA; i++)
                    g[i * CE_O + k] = xa[i] * dl[k];
                g[ba + k] = dl[k];
                for (int i = 0; i < CE_NB; i++)
                    g[wb + i * CE_O + k] = xb[i] * dl[k];
            }
        }
        for (int i = 0; i < CE_P; i++)
            th[i] -= ce_lr * g[i];
        memcpy(out->o[t], o, sizeof o);
        out->loss[t] = loss;
        memcpy(out->th[t], th, sizeof th);
        memcpy(out->g[t], g, sizeof g);
    }
}

enum { CQ_O, CQ_LOSS, CQ_G, CQ_W, CQ_N };
static const char *const cq_names[CQ_N] = {"readout o", "loss", "gradient", "weights"};

static void
ce_compare(const struct ce_rec *eng, const struct ce_rec *ref, struct transcribe_qerr *q)
{
    memset(q, 0, CQ_N * sizeof *q);
    for (int t = 0; t < T_CE; t++) {
        transcribe_qerr_add(&q[CQ_O], transcribe_rel_err(CE_O, eng->o[t], ref->o[t]), t);
        transcribe_qerr_add(&q[CQ_LOSS], transcribe_rel_err(1, &eng->loss[t], &ref->loss[t]), t);
        transcribe_qerr_add(&q[CQ_G], transcribe_rel_err(CE_P, eng->g[t], ref->g[t]), t);
        transcribe_qerr_add(&q[CQ_W], transcribe_rel_err(CE_P, eng->th[t], ref->th[t]), t);
    }
}

/* cross_entropy with class targets: loss, gradient, weights against the transcription;
 * ticks without a target give loss 0 and no gradient (the sums do not move, bitwise). */
static void
test_signal_cross_entropy_target(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *eng = testmodel_compile_text(&tm, NULL, CE_MODEL, NULL, 1);
    if (!eng)
        fail_msg("cross_entropy: compile failed: %s", tm.err);
    int ro = testmodel_readout(eng, "cls"), ia = testmodel_input(eng, "xa"),
        ib = testmodel_input(eng, "xb");
    assert_true(ro >= 0 && ia >= 0 && ib >= 0);
    struct engine_param_view pv;
    engine_param(eng, testmodel_proj(eng, "wa"), &pv);
    assert_int_equal(pv.rule, ENGINE_RULE_INSTANT);

    struct ce_rec *er = calloc(1, sizeof *er), *rr = calloc(1, sizeof *rr);
    assert_non_null(er);
    assert_non_null(rr);
    double th0[CE_P], prev[CE_P], sum[CE_P];
    ce_read_params(eng, 0, th0);
    ce_read_params(eng, 1, prev);
    int n_none = 0;
    double max_logit = 0.0;
    for (int t = 0; t < T_CE; t++) {
        double xa[CE_NA], xb[CE_NB];
        real ra[CE_NA], rb[CE_NB];
        ce_input(t, xa, xb);
        for (int i = 0; i < CE_NA; i++)
            ra[i] = (real)xa[i];
        for (int i = 0; i < CE_NB; i++)
            rb[i] = (real)xb[i];
        engine_set_input(eng, ia, ra);
        engine_set_input(eng, ib, rb);
        int c = ce_class(t);
        if (c >= 0) /* a negative class is no target, as `etraced run` reads one */
            engine_set_target_class(eng, ro, c);
        engine_tick(eng);
        const real *o = engine_readout_values(eng, ro);
        for (int k = 0; k < CE_O; k++) {
            er->o[t][k] = (double)o[k];
            max_logit = fabs(er->o[t][k]) > max_logit ? fabs(er->o[t][k]) : max_logit;
        }
        er->loss[t] = engine_last_loss(eng);
        ce_read_params(eng, 0, er->th[t]);
        ce_read_params(eng, 1, sum);
        for (int i = 0; i < CE_P; i++)
            er->g[t][i] = sum[i] - prev[i];
        if (c < 0) {
            n_none++;
            /* no target: loss 0, no gradient, no weight change, exactly */
            if (er->loss[t] != 0.0 || memcmp(sum, prev, sizeof sum) != 0 ||
                memcmp(er->th[t], t ? er->th[t - 1] : th0, sizeof th0) != 0)
                fail_msg("cross_entropy: tick %d has no target but loss %g or a gradient", t,
                         er->loss[t]);
        }
        memcpy(prev, sum, sizeof sum);
    }
    printf("[signal_test] cross_entropy: %d ticks, %d without a target, largest |logit| %.1f\n",
           T_CE, n_none, max_logit);

    ref_ce_run(CE_EXACT, th0, rr);
    struct transcribe_qerr q[CQ_N];
    ce_compare(er, rr, q);
    printf("[signal_test] cross_entropy vs DESIGN §4.3 transcription (%s build, tol %.0e):\n",
           REAL_NAME, tol);
    for (int k = 0; k < CQ_N; k++)
        printf("[signal_test]   %-14s %-9s max rel err %.3e at tick %d\n", cq_names[k],
               q[k].err <= tol ? "ok" : "DEVIATES", q[k].err, q[k].tick);
    for (int k = 0; k < CQ_N; k++)
        if (!(q[k].err <= tol))
            fail_msg("cross_entropy: %s deviates from DESIGN §4.3: relative error %.3e > %.0e "
                     "at tick %d",
                     cq_names[k], q[k].err, tol, q[k].tick);

    for (int pz = CE_EXACT + 1; pz < CE_N_PERT; pz++) {
        struct transcribe_qerr qp[CQ_N];
        ref_ce_run((enum ce_pert)pz, th0, rr);
        ce_compare(er, rr, qp);
        double m = transcribe_qerr_max(qp, CQ_N);
        int worst = 0;
        for (int k = 1; k < CQ_N; k++)
            if (qp[k].err > qp[worst].err)
                worst = k;
        printf("[signal_test]   perturbed (%s): max rel err %.3e (%s) -> %s\n", ce_pert_names[pz],
               m, cq_names[worst], m > power_factor * tol ? "would not match" : "UNDETECTED");
        if (!(m > power_factor * tol))
            fail_msg("cross_entropy: the perturbed transcription '%s' matches the engine (%.3e): "
                     "the test has no power",
                     ce_pert_names[pz], m);
    }
    free(er);
    free(rr);
    engine_free(&eng);
    testmodel_fini(&tm);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_reward_gaussian),
        cmocka_unit_test(test_signal_reward_softmax),
        cmocka_unit_test(test_signal_cross_entropy_target),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
