/* Actor-critic and episodes (DESIGN §4.3 "reward with a critic", the terminal flag of
 * §5.3) against a separate transcription of the text, as signal_test.c checks REINFORCE:
 *  - gaussian policy on a linear readout `act` and a critic on a leaky_readout `v` (so the
 *    critic's D-RTRL trace has D != 0), both behind one rnn_tanh layer whose projection
 *    receives the policy's G^t and the critic's H^t through two within-tick backward
 *    passes; explicit critic weight, tau_gamma, tau_lambda (and tau_e, ignored); terminal
 *    flags (one on an episode's first tick), a learning-off stretch and a `reset states`;
 *  - softmax policy (action_hold 3, update_every 2, `learn: instant` on the hidden layer)
 *    with DESIGN's default weight, tau_gamma and tau_lambda, terminals that end episodes
 *    off the hold grid (action_hold counts from the episode's first tick) and a `reset all`.
 * Per tick: o, a, V, delta^t (engine_last_td_error), e_pi and e_V of every parameter (state
 * sections elig_* and elig_v_*), the gradient handed to the optimizer (float64 gradient
 * sums), and the weights after the sgd step. Then the same two runs under REINFORCE
 * (no critic) with terminals: e and xi zeroed after a terminal tick's gradient, b kept,
 * and action_hold from the episode's first tick.
 * The transcription (ref_*) is plain double loops from DESIGN §2.1, §3, §4.1-4.4; it shares
 * no code with the engine and reads only the initial weights, the inputs, the rewards and
 * the terminal flags the engine was given. Tolerances as signal_test.c: DESIGN's relative
 * error per tick per quantity (the gradient over the whole run), 1e-12 double, 1e-4 float;
 * softmax actions equal. Perturbed transcriptions (delta with e^t instead of e^{t-1}, V^t
 * kept at a terminal, delta not zeroed at an episode's first tick, e kept across a
 * terminal, action_hold counted from tick 0, critic weight ignored) must miss by more than
 * ten tolerances. A last test carries the new state through a snapshot of every section
 * into a freshly compiled engine mid-episode and checks the continuation bit for bit. */
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
static const double power_factor = 10.0;

static int
setup(void **state)
{
    (void)state;
    engine_set_fp_env();
    return 0;
}

/* ---- the model, the engine run and the transcription ---------------------------------- */

enum {
    NX = 3,
    NH = 4,
    OMAX = 3,
    T_AC = 300,
    N_TERM = 4,
    P_MAX = NX * NH + NH + NH * OMAX + OMAX + NH + 1
};

/* x -> w_in -> hidden (rnn_tanh) -> w_out -> out (linear, the policy `act`)
 *                                 -> w_v   -> val (leaky_readout or linear, the critic `v`) */
struct ac_spec {
    const char *label;
    int critic; /* 0: REINFORCE with the same model (v is an ordinary readout) */
    int softmax, O;
    double dt, tau_v; /* tau_v 0: val is linear */
    double sigma, tau_explore, weight, tau_gamma, tau_lambda, tau_e, tau_baseline, lr;
    int hold, K, write_defaults;
    const char *in_learn;
    uint64_t seed;
    int terminal[N_TERM]; /* ticks whose reward carries the terminal flag */
    int off0, off1;       /* learning off for ticks [off0, off1) */
    int reset_at, reset_traces;
};

/* Parameters: w_in [NX][NH], b_in [NH], w_out [NH][O], b_out [O], w_v [NH], b_v [1]. */
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
off_bout(const struct ac_spec *s)
{
    return off_wout() + NH * s->O;
}
static int
off_wv(const struct ac_spec *s)
{
    return off_bout(s) + s->O;
}
static int
off_bv(const struct ac_spec *s)
{
    return off_wv(s) + NH;
}
static int
n_params(const struct ac_spec *s)
{
    return off_bv(s) + 1;
}

static int
is_terminal(const struct ac_spec *s, int t)
{
    for (int k = 0; k < N_TERM; k++)
        if (s->terminal[k] == t)
            return 1;
    return 0;
}

struct ac_rec {
    double o[T_AC][OMAX], act[T_AC][OMAX], v[T_AC], delta[T_AC];
    double r[T_AC]; /* the rewards given for tick t */
    double epi[T_AC][P_MAX], ev[T_AC][P_MAX], g[T_AC][P_MAX], th[T_AC][P_MAX];
};

static void
ac_model_text(char *buf, size_t len, const struct ac_spec *s)
{
    char dt[40], tv[40], sg[40], tex[40], w[40], tg[40], tl[40], te[40], tb[40], lr[40];
    transcribe_fmt_num(dt, sizeof dt, s->dt);
    transcribe_fmt_num(tv, sizeof tv, s->tau_v);
    transcribe_fmt_num(sg, sizeof sg, s->sigma);
    transcribe_fmt_num(tex, sizeof tex, s->tau_explore);
    transcribe_fmt_num(w, sizeof w, s->weight);
    transcribe_fmt_num(tg, sizeof tg, s->tau_gamma);
    transcribe_fmt_num(tl, sizeof tl, s->tau_lambda);
    transcribe_fmt_num(te, sizeof te, s->tau_e);
    transcribe_fmt_num(tb, sizeof tb, s->tau_baseline);
    transcribe_fmt_num(lr, sizeof lr, s->lr);
    char val[160], pol[320], extra[320];
    if (s->tau_v > 0.0)
        snprintf(val, sizeof val,
                 "  - {name: val, model: leaky_readout, size: 1, params: {tau: %s}}\n", tv);
    else
        snprintf(val, sizeof val, "  - {name: val, model: linear, size: 1}\n");
    snprintf(pol, sizeof pol,
             "{readout: act, kind: %s, action_hold: %d, sigma: %s, tau_explore: %s}",
             s->softmax ? "softmax" : "gaussian", s->hold, sg, tex);
    extra[0] = '\0';
    if (s->critic && s->write_defaults)
        snprintf(extra, sizeof extra,
                 "  critic: {readout: v, weight: %s}\n  tau_gamma: %s\n  tau_lambda: %s\n"
                 "  tau_e: %s\n",
                 w, tg, tl, te);
    else if (s->critic)
        snprintf(extra, sizeof extra, "  critic: {readout: v}\n");
    else
        snprintf(extra, sizeof extra, "  tau_e: %s\n  tau_baseline: %s\n", te, tb);
    snprintf(buf, len,
             "name: critic_%s\n"
             "dt: %s\n"
             "seed: %llu\n"
             "inputs:\n"
             "  - {name: x, size: %d}\n"
             "cells:\n"
             "  - {name: hidden, model: rnn_tanh, size: %d}\n"
             "  - {name: out, model: linear, size: %d}\n"
             "%s"
             "projections:\n"
             "  - {name: w_in, from: x, to: hidden, weight: {init: normal, std: 0.6},\n"
             "     bias: {init: constant, value: 0.1}, learn: %s}\n"
             "  - {name: w_out, from: hidden, to: out, weight: {init: normal, std: 0.5},\n"
             "     bias: {init: constant, value: -0.05}}\n"
             "  - {name: w_v, from: hidden, to: val, weight: {init: normal, std: 0.4},\n"
             "     bias: {init: constant, value: 0.2}}\n"
             "readouts:\n"
             "  - {name: act, cell: out}\n"
             "  - {name: v, cell: val}\n"
             "learning:\n"
             "  algorithm: d_rtrl\n"
             "  signal: reward\n"
             "  policy: %s\n"
             "%s"
             "  optimizer: {kind: sgd, lr: %s}\n"
             "  update_every: %d\n",
             s->label, dt, (unsigned long long)s->seed, NX, NH, s->O, val, s->in_learn, pol, extra,
             lr, s->K);
}

static void
ac_input(int t, double *x)
{
    for (int i = 0; i < NX; i++)
        x[i] = transcribe_as_real(0.8 * sin(0.07 * t + 1.3 * i) + 0.2 * (i - 1));
}

/* The reward for tick t + 1 from the action of tick t (closed loop). */
static double
ac_reward(const struct ac_spec *s, int t, const double *act)
{
    if (s->softmax)
        return (int)act[0] == (t / 20) % s->O ? 1.0 : -0.5;
    return exp(-(act[0] - 0.5) * (act[0] - 0.5) - (act[1] + 0.2) * (act[1] + 0.2));
}

static void
read_proj(struct engine *eng, const char *name, int sums, double *v, int count, int O)
{
    struct engine_param_view pv;
    engine_param(eng, testmodel_proj(eng, name), &pv);
    assert_int_equal(pv.count, count);
    assert_non_null(pv.bias);
    for (int i = 0; i < count; i++)
        v[i] = sums ? pv.grad_sum_w[i] : (double)pv.weight[i];
    for (int o = 0; o < O; o++)
        v[count + o] = sums ? pv.grad_sum_b[o] : (double)pv.bias[o];
}

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
ac_read_params(struct engine *eng, const struct ac_spec *s, int sums, double *th)
{
    read_proj(eng, "w_in", sums, th, NX * NH, NH);
    read_proj(eng, "w_out", sums, th + off_wout(), NH * s->O, s->O);
    read_proj(eng, "w_v", sums, th + off_wv(s), NH, 1);
}

/* The eligibility sections with suffix `w`/`b` (elig_ or elig_v_) into v. Under
 * REINFORCE w_v learns nothing (no loss reaches val) and keeps an eligibility of zeros. */
static void
ac_read_elig(struct engine *eng, const struct ac_spec *s, const char *kind, double *v)
{
    char nw[64], nb[64];
    const char *proj[3] = {"w_in", "w_out", "w_v"};
    int off[3] = {0, off_wout(), off_wv(s)}, cnt[3] = {NX * NH, NH * s->O, NH},
        O[3] = {NH, s->O, 1};
    for (int k = 0; k < 3; k++) {
        snprintf(nw, sizeof nw, "proj.%s.%sw", proj[k], kind);
        snprintf(nb, sizeof nb, "proj.%s.%sb", proj[k], kind);
        read_section(eng, nw, v + off[k], cnt[k]);
        read_section(eng, nb, v + off[k] + cnt[k], O[k]);
    }
}

static void
ac_engine_run(struct engine *eng, const struct ac_spec *s, double *th0, struct ac_rec *rec)
{
    int P = n_params(s), O = s->O, ro = testmodel_readout(eng, "act"),
        rv = testmodel_readout(eng, "v");
    ac_read_params(eng, s, 0, th0);
    double prev_sum[P_MAX] = {0}, sum[P_MAX];
    double pending = 0.1;
    engine_add_reward(eng, 0.1);
    for (int t = 0; t < T_AC; t++) {
        if (t == s->off0)
            engine_set_learn(eng, ENGINE_LEARN_OFF);
        if (t == s->off1)
            engine_set_learn(eng, ENGINE_LEARN_ON);
        if (t == s->reset_at)
            engine_reset(eng, 1, s->reset_traces);
        if (is_terminal(s, t))
            engine_set_terminal(eng);
        double x[NX];
        real xr[NX];
        ac_input(t, x);
        for (int i = 0; i < NX; i++)
            xr[i] = (real)x[i];
        engine_set_input(eng, 0, xr);
        rec->r[t] = pending;
        engine_tick(eng);
        const real *o = engine_readout_values(eng, ro), *a = engine_readout_action(eng, ro);
        for (int k = 0; k < O; k++)
            rec->o[t][k] = (double)o[k];
        for (int k = 0; k < (s->softmax ? 1 : O); k++)
            rec->act[t][k] = (double)a[k];
        rec->v[t] = (double)engine_readout_values(eng, rv)[0];
        rec->delta[t] = engine_last_td_error(eng);
        ac_read_elig(eng, s, "elig_", rec->epi[t]);
        if (s->critic)
            ac_read_elig(eng, s, "elig_v_", rec->ev[t]);
        ac_read_params(eng, s, 0, rec->th[t]);
        ac_read_params(eng, s, 1, sum);
        for (int i = 0; i < P; i++) {
            rec->g[t][i] = sum[i] - prev_sum[i];
            prev_sum[i] = sum[i];
        }
        pending = ac_reward(s, t, rec->act[t]);
        engine_add_reward(eng, pending);
    }
}

enum ac_pert {
    AC_EXACT,
    AC_E_NEW,       /* critic: -delta (e^t) instead of e^{t-1} */
    AC_TERMINAL_V,  /* critic: V^t kept at a terminal tick */
    AC_FIRST_DELTA, /* critic: delta not zeroed at an episode's first tick */
    AC_KEEP_E,      /* e (and xi) kept across a terminal */
    AC_HOLD_FROM_0, /* action_hold counted from tick 0 */
    AC_WEIGHT,      /* critic: weight taken as 1 */
    AC_N_PERT
};

static const char *const ac_pert_names[AC_N_PERT] = {
    "exact transcription",
    "delta times e^t instead of e^{t-1}",
    "V^t kept at a terminal tick",
    "delta not zeroed at an episode's first tick",
    "e and xi kept across a terminal",
    "action_hold counted from tick 0",
    "critic weight ignored",
};

/* Which perturbations a spec can see. */
static int
pert_applies(const struct ac_spec *s, enum ac_pert p)
{
    switch (p) {
    case AC_E_NEW:
    case AC_TERMINAL_V:
    case AC_FIRST_DELTA:
        return s->critic;
    case AC_HOLD_FROM_0:
        return s->softmax && s->hold > 1;
    case AC_WEIGHT:
        return s->critic && s->weight != 1.0 && s->write_defaults;
    default:
        return 1;
    }
}

/* The transcription of DESIGN §4.3 in double from th0 and the rewards r[]. */
static void
ref_ac_run(const struct ac_spec *s, enum ac_pert pert, const double *th0, const double *r,
           struct ac_rec *out)
{
    const int O = s->O, P = n_params(s);
    const int bi = off_bin(), wo = off_wout(), bo = off_bout(s), wv = off_wv(s), bv = off_bv(s);
    const double leak = s->tau_v > 0.0 ? exp(-s->dt / s->tau_v) : 0.0;
    const double rho = exp(-s->dt / s->tau_explore);
    const double ou = s->sigma * sqrt(1.0 - rho * rho);
    /* DESIGN's defaults when the model does not write them */
    const double weight = s->write_defaults && pert != AC_WEIGHT ? s->weight : 1.0;
    const double tau_g = s->write_defaults ? s->tau_gamma : 1.0;
    const double tau_l = s->write_defaults ? s->tau_lambda : 0.5;
    const double gamma = exp(-s->dt / tau_g), lambda = exp(-s->dt / tau_l);
    const double gamma_e = exp(-s->dt / s->tau_e), beta = exp(-s->dt / s->tau_baseline);
    struct transcribe_rng rng;
    transcribe_rng_seed(&rng, s->seed, "policy.act");

    double th[P_MAX], epi[P_MAX] = {0}, ev[P_MAX] = {0}, acc[P_MAX] = {0};
    double xi[OMAX] = {0}, v_old = 0.0, v_prev = 0.0, Ev[NH] = {0}, Ebv = 0.0, b = 0.0;
    int held = 0, ep = 0; /* ep: ticks run in this episode */
    memcpy(th, th0, (size_t)P * sizeof(double));
    memset(out, 0, sizeof *out);

    for (int t = 0; t < T_AC; t++) {
        int learning = !(t >= s->off0 && t < s->off1);
        int term = is_terminal(s, t);
        if (t == s->reset_at) { /* any reset starts an episode */
            v_old = 0.0;
            memset(xi, 0, sizeof xi);
            if (s->reset_traces) {
                memset(Ev, 0, sizeof Ev);
                Ebv = 0.0;
                memset(epi, 0, sizeof epi);
                memset(ev, 0, sizeof ev);
            }
            ep = 0;
        }
        double x[NX], h[NH], fh[NH], o[OMAX], act[OMAX] = {0}, dlp[OMAX] = {0};
        ac_input(t, x);
        for (int j = 0; j < NH; j++) {
            double y = th[bi + j];
            for (int i = 0; i < NX; i++)
                y += x[i] * th[i * NH + j];
            h[j] = tanh(y);
            fh[j] = 1.0 - h[j] * h[j];
        }
        for (int k = 0; k < O; k++) {
            double y = th[bo + k];
            for (int j = 0; j < NH; j++)
                y += h[j] * th[wo + j * O + k];
            o[k] = y;
        }
        double yv = th[bv];
        for (int j = 0; j < NH; j++)
            yv += h[j] * th[wv + j];
        double v = leak * v_old + yv;
        /* D-RTRL traces of w_v: E = D E + f h, E_b = D E_b + f (D = leak, f = 1) */
        for (int j = 0; j < NH; j++)
            Ev[j] = leak * Ev[j] + h[j];
        Ebv = leak * Ebv + 1.0;

        int has_signal = 0;
        if (!s->softmax) {
            for (int k = 0; k < O; k++) {
                if (learning)
                    xi[k] = rho * xi[k] + ou * transcribe_normal(&rng);
                act[k] = learning ? o[k] + xi[k] : o[k];
                if (learning)
                    dlp[k] = (act[k] - o[k]) / (s->sigma * s->sigma);
            }
            has_signal = learning;
        } else {
            double p[OMAX];
            transcribe_softmax(O, p, o);
            if (!learning) {
                int best = 0;
                for (int k = 1; k < O; k++)
                    if (o[k] > o[best])
                        best = k;
                act[0] = best;
            } else {
                int phase = pert == AC_HOLD_FROM_0 ? t : ep;
                if (phase % s->hold == 0) {
                    held = transcribe_categorical(&rng, O, p);
                    for (int k = 0; k < O; k++)
                        dlp[k] = (k == held ? 1.0 : 0.0) - p[k];
                    has_signal = 1;
                }
                act[0] = held;
            }
        }
        /* G^t (dL/dV = 0) and H^t (dL/dV = 1, dL/do = 0) */
        double G[P_MAX] = {0}, H[P_MAX] = {0}, g[P_MAX] = {0};
        if (learning && has_signal) {
            for (int j = 0; j < NH; j++) {
                double dh = 0.0;
                for (int k = 0; k < O; k++)
                    dh += th[wo + j * O + k] * dlp[k];
                for (int i = 0; i < NX; i++)
                    G[i * NH + j] = dh * fh[j] * x[i];
                G[bi + j] = dh * fh[j];
                for (int k = 0; k < O; k++)
                    G[wo + j * O + k] = dlp[k] * h[j];
            }
            for (int k = 0; k < O; k++)
                G[bo + k] = dlp[k];
        }
        if (learning && s->critic) {
            for (int j = 0; j < NH; j++) {
                for (int i = 0; i < NX; i++)
                    H[i * NH + j] = th[wv + j] * fh[j] * x[i];
                H[bi + j] = th[wv + j] * fh[j];
                H[wv + j] = Ev[j];
            }
            H[bv] = Ebv;
        }
        double delta = 0.0;
        if (s->critic) {
            double vt = term && pert != AC_TERMINAL_V ? 0.0 : v;
            delta = ep == 0 && pert != AC_FIRST_DELTA ? 0.0 : r[t] + gamma * vt - v_prev;
            double gl = gamma * lambda;
            for (int i = 0; i < P; i++) {
                double ep_old = epi[i], ev_old = ev[i];
                if (ep == 0)
                    epi[i] = ev[i] = 0.0;
                else if (learning)
                    epi[i] *= gl, ev[i] *= gl;
                if (learning) {
                    epi[i] += G[i];
                    ev[i] += H[i];
                    if (pert == AC_E_NEW)
                        g[i] = -delta * (epi[i] + weight * ev[i]);
                    else
                        g[i] = -delta * (ep_old + weight * ev_old);
                    acc[i] += g[i];
                }
            }
        } else if (learning) {
            double b_new = beta * b + (1.0 - beta) * r[t];
            for (int i = 0; i < P; i++) {
                epi[i] = gamma_e * epi[i] + G[i];
                g[i] = -(r[t] - b) * epi[i];
                acc[i] += g[i];
            }
            b = b_new;
        }
        if (learning && (t + 1) % s->K == 0)
            for (int i = 0; i < P; i++) {
                th[i] -= s->lr * acc[i];
                acc[i] = 0.0;
            }
        for (int k = 0; k < O; k++) {
            out->o[t][k] = o[k];
            out->act[t][k] = act[k];
        }
        out->v[t] = v;
        out->delta[t] = delta;
        out->r[t] = r[t];
        memcpy(out->th[t], th, (size_t)P * sizeof(double));
        memcpy(out->g[t], g, (size_t)P * sizeof(double));
        if (term && pert != AC_KEEP_E) { /* after the terminal tick's gradient */
            memset(epi, 0, sizeof epi);
            memset(ev, 0, sizeof ev);
            memset(xi, 0, sizeof xi);
        }
        memcpy(out->epi[t], epi, (size_t)P * sizeof(double));
        memcpy(out->ev[t], ev, (size_t)P * sizeof(double));
        ep = term ? 0 : ep + 1;
        v_old = v;
        v_prev = v;
    }
}

enum { Q_O, Q_ACT, Q_V, Q_DELTA, Q_EPI, Q_EV, Q_G, Q_W, Q_N };
static const char *const q_names[Q_N] = {"readout o", "action a", "critic V", "TD error",
                                         "e_pi (e)",  "e_V",      "gradient", "weights"};

static void
ac_compare(const struct ac_spec *s, const struct ac_rec *eng, const struct ac_rec *ref,
           struct transcribe_qerr *q)
{
    int O = s->O, P = n_params(s);
    memset(q, 0, Q_N * sizeof *q);
    double gnum = 0.0, gden = 0.0;
    int gtick = 0;
    for (int t = 0; t < T_AC; t++) {
        transcribe_qerr_add(&q[Q_O], transcribe_rel_err(O, eng->o[t], ref->o[t]), t);
        if (s->softmax)
            transcribe_qerr_add(&q[Q_ACT], eng->act[t][0] == ref->act[t][0] ? 0.0 : 1.0, t);
        else
            transcribe_qerr_add(&q[Q_ACT], transcribe_rel_err(O, eng->act[t], ref->act[t]), t);
        transcribe_qerr_add(&q[Q_EPI], transcribe_rel_err(P, eng->epi[t], ref->epi[t]), t);
        if (s->critic)
            transcribe_qerr_add(&q[Q_EV], transcribe_rel_err(P, eng->ev[t], ref->ev[t]), t);
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
    /* V and delta cross zero: their error is relative to their largest value in the run */
    q[Q_V].err = transcribe_rel_err(T_AC, eng->v, ref->v);
    q[Q_DELTA].err = transcribe_rel_err(T_AC, eng->delta, ref->delta);
    for (int t = 0; t < T_AC; t++) {
        if (fabs(eng->v[t] - ref->v[t]) > fabs(eng->v[q[Q_V].tick] - ref->v[q[Q_V].tick]))
            q[Q_V].tick = t;
        if (fabs(eng->delta[t] - ref->delta[t]) >
            fabs(eng->delta[q[Q_DELTA].tick] - ref->delta[q[Q_DELTA].tick]))
            q[Q_DELTA].tick = t;
    }
}

static void
ac_check(const struct ac_spec *s)
{
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    char text[4096];
    ac_model_text(text, sizeof text, s);
    struct engine *eng = testmodel_compile_text(&tm, NULL, text, NULL, 1);
    if (!eng)
        fail_msg("%s: compile failed: %s", s->label, tm.err);
    struct ac_rec *er = calloc(1, sizeof *er), *rr = calloc(1, sizeof *rr);
    assert_non_null(er);
    assert_non_null(rr);
    double th0[P_MAX];
    ac_engine_run(eng, s, th0, er);
    double moved = transcribe_rel_err(n_params(s), er->th[T_AC - 1], th0);
    printf("[critic_test] %s: %d ticks, weights moved %.3g (relative)\n", s->label, T_AC, moved);
    assert_true(moved > 1e-3);

    ref_ac_run(s, AC_EXACT, th0, er->r, rr);
    struct transcribe_qerr q[Q_N];
    ac_compare(s, er, rr, q);
    printf("[critic_test] %s vs DESIGN §4.3 transcription (%s build, tol %.0e):\n", s->label,
           REAL_NAME, tol);
    for (int k = 0; k < Q_N; k++)
        printf("[critic_test]   %-10s %-9s max rel err %.3e at tick %d\n", q_names[k],
               q[k].err <= tol ? "ok" : "DEVIATES", q[k].err, q[k].tick);
    for (int k = 0; k < Q_N; k++)
        if (!(q[k].err <= tol))
            fail_msg("%s: %s deviates from DESIGN §4.3: relative error %.3e > %.0e at tick %d",
                     s->label, q_names[k], q[k].err, tol, q[k].tick);
    for (int pz = AC_EXACT + 1; pz < AC_N_PERT; pz++) {
        if (!pert_applies(s, (enum ac_pert)pz))
            continue;
        struct transcribe_qerr qp[Q_N];
        ref_ac_run(s, (enum ac_pert)pz, th0, er->r, rr);
        ac_compare(s, er, rr, qp);
        double m = transcribe_qerr_max(qp, Q_N);
        printf("[critic_test]   perturbed (%s): max rel err %.3e -> %s\n", ac_pert_names[pz], m,
               m > power_factor * tol ? "would not match" : "UNDETECTED");
        if (!(m > power_factor * tol))
            fail_msg("%s: the perturbed transcription '%s' matches the engine (%.3e)", s->label,
                     ac_pert_names[pz], m);
    }
    free(er);
    free(rr);
    engine_free(&eng);
    testmodel_fini(&tm);
}

static const struct ac_spec spec_gauss = {.label = "gaussian_leaky_critic",
                                          .critic = 1,
                                          .softmax = 0,
                                          .O = 2,
                                          .dt = 0.01,
                                          .tau_v = 0.05,
                                          .sigma = 0.3,
                                          .tau_explore = 0.03,
                                          .weight = 0.5,
                                          .tau_gamma = 0.2,
                                          .tau_lambda = 0.1,
                                          .tau_e = 0.3,
                                          .tau_baseline = 1.0,
                                          .lr = 0.001,
                                          .hold = 1,
                                          .K = 1,
                                          .write_defaults = 1,
                                          .in_learn = "trace",
                                          .seed = 11,
                                          .terminal = {40, 41, 97, 150},
                                          .off0 = 180,
                                          .off1 = 200,
                                          .reset_at = 230,
                                          .reset_traces = 0};

static const struct ac_spec spec_softmax = {.label = "softmax_hold3_critic",
                                            .critic = 1,
                                            .softmax = 1,
                                            .O = 3,
                                            .dt = 0.01,
                                            .tau_v = 0.0,
                                            .sigma = 0.1,
                                            .tau_explore = 0.05,
                                            .weight = 1.0,
                                            .tau_gamma = 1.0,
                                            .tau_lambda = 0.5,
                                            .tau_e = 0.5,
                                            .tau_baseline = 5.0,
                                            .lr = 0.003,
                                            .hold = 3,
                                            .K = 2,
                                            .write_defaults = 0,
                                            .in_learn = "instant",
                                            .seed = 5,
                                            .terminal = {20, 50, 51, 88},
                                            .off0 = 160,
                                            .off1 = 175,
                                            .reset_at = 120,
                                            .reset_traces = 1};

static void
test_critic_gaussian(void **state)
{
    (void)state;
    ac_check(&spec_gauss);
}

static void
test_critic_softmax(void **state)
{
    (void)state;
    ac_check(&spec_softmax);
}

static void
test_reinforce_terminal_gaussian(void **state)
{
    (void)state;
    struct ac_spec s = spec_gauss;
    s.label = "gaussian_reinforce_terminal";
    s.critic = 0;
    ac_check(&s);
}

static void
test_reinforce_terminal_softmax(void **state)
{
    (void)state;
    struct ac_spec s = spec_softmax;
    s.label = "softmax_reinforce_terminal";
    s.critic = 0;
    ac_check(&s);
}

/* ---- the new state survives a snapshot into a fresh engine ----------------------------- */

struct snap {
    int n;
    char name[64][160];
    void *data[64];
    size_t bytes[64];
    struct engine_scalars sc;
};

static void
snap_take(struct engine *eng, struct snap *s)
{
    s->n = engine_state_count(eng);
    assert_true(s->n <= 64);
    for (int i = 0; i < s->n; i++) {
        struct engine_section sec;
        engine_state_section(eng, i, &sec);
        snprintf(s->name[i], sizeof s->name[i], "%s", sec.name);
        s->data[i] = malloc(sec.bytes);
        assert_non_null(s->data[i]);
        memcpy(s->data[i], sec.data, sec.bytes);
        s->bytes[i] = sec.bytes;
    }
    engine_state_get_scalars(eng, &s->sc);
}

static void
snap_put(struct engine *eng, const struct snap *s)
{
    for (int i = 0; i < engine_state_count(eng); i++) {
        struct engine_section sec;
        engine_state_section(eng, i, &sec);
        if (sec.part == ENGINE_PART_STRUCTURE)
            continue;
        int j = 0;
        while (j < s->n && strcmp(s->name[j], sec.name))
            j++;
        if (j == s->n || s->bytes[j] != sec.bytes)
            fail_msg("section %s missing or of another size", sec.name);
        memcpy(sec.data, s->data[j], sec.bytes);
    }
    engine_state_set_scalars(eng, &s->sc);
}

/* Runs ticks [t0, t1) of spec_softmax's schedule, appending action, V, delta and weights
 * to buf as raw bytes. */
static size_t
run_span(struct engine *eng, const struct ac_spec *s, int t0, int t1, unsigned char *buf)
{
    size_t n = 0;
    int ro = testmodel_readout(eng, "act"), rv = testmodel_readout(eng, "v");
    for (int t = t0; t < t1; t++) {
        if (is_terminal(s, t))
            engine_set_terminal(eng);
        real xr[NX];
        double x[NX];
        ac_input(t, x);
        for (int i = 0; i < NX; i++)
            xr[i] = (real)x[i];
        engine_set_input(eng, 0, xr);
        engine_add_reward(eng, 0.01 * (t % 13) - 0.05);
        engine_tick(eng);
        memcpy(buf + n, engine_readout_action(eng, ro), sizeof(real));
        n += sizeof(real);
        memcpy(buf + n, engine_readout_values(eng, rv), sizeof(real));
        n += sizeof(real);
        double d = engine_last_td_error(eng);
        memcpy(buf + n, &d, sizeof d);
        n += sizeof d;
        struct engine_param_view pv;
        engine_param(eng, testmodel_proj(eng, "w_in"), &pv);
        memcpy(buf + n, pv.weight, (size_t)pv.count * sizeof(real));
        n += (size_t)pv.count * sizeof(real);
    }
    return n;
}

static void
test_critic_state_round_trip(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    char text[4096];
    struct ac_spec s = spec_softmax;
    s.terminal[0] = 20, s.terminal[1] = 49, s.terminal[2] = 72, s.terminal[3] = 95;
    ac_model_text(text, sizeof text, &s);
    struct engine *a = testmodel_compile_text(&tm, NULL, text, NULL, 0);
    struct engine *b = testmodel_compile_text(&tm, NULL, text, NULL, 0);
    assert_non_null(a);
    assert_non_null(b);
    static unsigned char ba[1 << 16], bb[1 << 16];
    run_span(a, &s, 0, 48, ba);
    /* tick 48: mid-episode (ticks since the terminal at 20), off the hold grid, with a
     * terminal pending for tick 49 */
    engine_set_terminal(a);
    assert_true(engine_state_find(a, "episode.ticks") >= 0);
    assert_true(engine_state_find(a, "episode.terminal") >= 0);
    assert_true(engine_state_find(a, "critic.v_prev") >= 0);
    assert_true(engine_state_find(a, "proj.w_in.elig_v_w") >= 0);
    struct snap sn;
    snap_take(a, &sn);
    snap_put(b, &sn);
    size_t na = run_span(a, &s, 48, 120, ba), nb = run_span(b, &s, 48, 120, bb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);
    for (int i = 0; i < sn.n; i++)
        free(sn.data[i]);
    engine_free(&a);
    engine_free(&b);
    testmodel_fini(&tm);
}

/* A hot swap (engine_state_carry): with keep_state the episode, V^{t-1} and e_V travel
 * with the traces and the continuation equals an engine that never swapped, bit for bit;
 * without it the new model starts an episode. */
static void
test_critic_swap_keep_state(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    char text[4096];
    struct ac_spec s = spec_softmax;
    s.terminal[0] = 20, s.terminal[1] = 70, s.terminal[2] = 90, s.terminal[3] = 110;
    ac_model_text(text, sizeof text, &s);
    struct engine *ref = testmodel_compile_text(&tm, NULL, text, NULL, 0);
    struct engine *old = testmodel_compile_text(&tm, NULL, text, NULL, 0);
    struct engine *keep = testmodel_compile_text(&tm, NULL, text, NULL, 0);
    struct engine *fresh = testmodel_compile_text(&tm, NULL, text, NULL, 0);
    assert_non_null(ref);
    assert_non_null(old);
    assert_non_null(keep);
    assert_non_null(fresh);
    static unsigned char br[1 << 16], bk[1 << 16];
    run_span(ref, &s, 0, 47, br);
    run_span(old, &s, 0, 47, bk);
    struct engine_scalars sc;
    engine_state_get_scalars(old, &sc);
    assert_true(engine_state_carry(keep, old, 1) > 0);
    engine_state_set_scalars(keep, &sc); /* the daemon carries tick, rng and the rest */
    int64_t ep;
    struct engine_section sec;
    engine_state_section(keep, engine_state_find(keep, "episode.ticks"), &sec);
    memcpy(&ep, sec.data, sizeof ep);
    assert_int_equal(ep, 47 - 21); /* ticks 21..46 since the terminal at 20 */
    size_t nr = run_span(ref, &s, 47, 120, br), nk = run_span(keep, &s, 47, 120, bk);
    assert_int_equal(nr, nk);
    assert_memory_equal(br, bk, nr);
    assert_true(engine_state_carry(fresh, keep, 0) > 0);
    engine_state_section(fresh, engine_state_find(fresh, "episode.ticks"), &sec);
    memcpy(&ep, sec.data, sizeof ep);
    assert_int_equal(ep, 0);
    engine_free(&ref);
    engine_free(&old);
    engine_free(&keep);
    engine_free(&fresh);
    testmodel_fini(&tm);
}

/* A divergent critic (huge lr and rewards): no NaN or Inf ever reaches the weights; the
 * steps that would write one are refused (updates_refused) or the cells reset. */
static void
test_critic_divergence_refused(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    char text[4096];
    struct ac_spec s = spec_gauss;
    s.lr = 1e15;
    ac_model_text(text, sizeof text, &s);
    struct engine *eng = testmodel_compile_text(&tm, NULL, text, NULL, 0);
    assert_non_null(eng);
    for (int t = 0; t < 300; t++) {
        real x[NX] = {R(1.0), R(-2.0), R(3.0)};
        engine_set_input(eng, 0, x);
        engine_add_reward(eng, t % 2 ? 1e30 : -1e30);
        if (t % 50 == 49)
            engine_set_terminal(eng);
        engine_tick(eng);
        for (int p = 0; p < engine_n_projs(eng); p++) {
            struct engine_param_view pv;
            engine_param(eng, p, &pv);
            assert_true(testmodel_all_finite(pv.weight, pv.count));
            if (pv.bias)
                assert_true(testmodel_all_finite(pv.bias, pv.out_size));
        }
    }
    struct engine_counters c;
    engine_counters(eng, &c);
    printf("[critic_test] divergent critic: %llu steps applied, %llu refused, %llu resets\n",
           (unsigned long long)c.steps, (unsigned long long)c.updates_refused,
           (unsigned long long)c.state_resets);
    assert_true(c.updates_refused > 0);
    engine_free(&eng);
    testmodel_fini(&tm);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_critic_gaussian),
        cmocka_unit_test(test_critic_softmax),
        cmocka_unit_test(test_reinforce_terminal_gaussian),
        cmocka_unit_test(test_reinforce_terminal_softmax),
        cmocka_unit_test(test_critic_state_round_trip),
        cmocka_unit_test(test_critic_swap_keep_state),
        cmocka_unit_test(test_critic_divergence_refused),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
