/* The online rules (DESIGN §4.2) against an independent oracle (tests/oracle/bptt.c):
 *   - D-RTRL equals an exact BPTT for single-cell models with an input-only projection
 *     read through a `linear` readout, for every built-in recurrent cell and two custom
 *     ones, over >= 100 ticks with spiking activity (firing rates and the smallest
 *     distance of a spike argument to its threshold printed);
 *   - ES-D-RTRL (float decay, integer rank, pair; the warm-up correction across
 *     n = 1000), D-RTRL on a recurrent projection, the instant rule and elemwise
 *     projections equal a separate transcription of DESIGN §4.2;
 *   - hybrid picks what DESIGN §4.2 says.
 * The oracle runs in double with its own cell equations and hand-written derivatives; the
 * engine is run through its public API with `learn accumulate` and track_grad_sum, and
 * its per-tick gradient sums are compared. Forward first: the engine's outputs must equal
 * the oracle's (1e-12 on the double build) before any gradient is compared.
 *
 * Tolerances (DESIGN's relative error, max|a-b| / max(max|b|, 1e-12)): on the double
 * build (REAL_DOUBLE) outputs 1e-12 and gradients 1e-9. On the float build the engine
 * rounds every value to float while the oracle stays in double: outputs 1e-4 and
 * gradients 1e-2 (stated loose tolerances: the float trajectory differs from the double
 * one by roundings that the surrogate gradients of a spiking cell amplify; measured up to
 * 1.5e-3, on the custom adaptive cell), and when a float rounding flips a spike (the spike
 * trains differ) the gradient comparison is skipped with a printed note.
 * Seeds are fixed and printed; everything runs in a few seconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "engine.h"
#include "model.h"

/* The oracle is compiled into this test (its header sits beside it); the engine has a
 * bptt.h of its own on the include path. */
#include "../oracle/bptt.c"

#if defined(REAL_DOUBLE)
static const double tol_out = 1e-12, tol_grad = 1e-9;
#else
static const double tol_out = 1e-4, tol_grad = 1e-2;
#endif

/* ---- the model file ------------------------------------------------------------------ */

/* A number as YAML reads it as a float: always with a point or an exponent. */
static void
fmt_num(char *buf, size_t len, double v)
{
    snprintf(buf, len, "%.17g", v);
    if (!strpbrk(buf, ".eEn"))
        strncat(buf, ".0", len - strlen(buf) - 1);
}

static const char *
surr_yaml(const struct oracle_cell *c, char *buf, size_t len)
{
    char a[40], w[40];
    fmt_num(a, sizeof a, c->alpha);
    fmt_num(w, sizeof w, c->width);
    switch (c->surr) {
    case ORACLE_SURR_RELU:
        snprintf(buf, len, "{kind: relu, alpha: %s, width: %s}", a, w);
        break;
    case ORACLE_SURR_SIGMOID:
        snprintf(buf, len, "{kind: sigmoid, alpha: %s}", a);
        break;
    case ORACLE_SURR_GAUSSIAN:
        fmt_num(a, sizeof a, c->sigma);
        snprintf(buf, len, "{kind: gaussian, sigma: %s}", a);
        break;
    case ORACLE_SURR_EXP:
        snprintf(buf, len, "{kind: exponential, alpha: %s}", a);
        break;
    }
    return buf;
}

/* `params:` and `surrogate:` lines of a built-in from the oracle's constants, so both
 * sides always read the same numbers. */
static void
builtin_yaml(const struct oracle_cell *c, char *buf, size_t len)
{
    struct kv {
        const char *name;
        double v;
    } p[8];
    int n = 0;
    switch (c->kind) {
    case ORACLE_LIF:
    case ORACLE_ALIF:
    case ORACLE_LIF_EXPON:
        p[n++] = (struct kv){"tau", c->tau};
        if (c->kind == ORACLE_ALIF) {
            p[n++] = (struct kv){"tau_b", c->tau_b};
            p[n++] = (struct kv){"beta", c->beta};
        }
        if (c->kind == ORACLE_LIF_EXPON)
            p[n++] = (struct kv){"tau_syn", c->tau_syn};
        p[n++] = (struct kv){"v_th", c->v_th};
        p[n++] = (struct kv){"v_reset", c->v_reset};
        p[n++] = (struct kv){"v_rest", c->v_rest};
        p[n++] = (struct kv){"r", c->r};
        break;
    case ORACLE_IZHIKEVICH:
        p[n++] = (struct kv){"a", c->a};
        p[n++] = (struct kv){"b", c->b};
        p[n++] = (struct kv){"c", c->c};
        p[n++] = (struct kv){"d", c->d};
        p[n++] = (struct kv){"v_th", c->v_th};
        break;
    default:
        break;
    }
    size_t off = 0;
    buf[0] = '\0';
    if (n > 0) {
        off += (size_t)snprintf(buf + off, len - off, "    params: {");
        for (int i = 0; i < n; i++) {
            char num[40];
            fmt_num(num, sizeof num, p[i].v);
            off +=
                (size_t)snprintf(buf + off, len - off, "%s%s: %s", i ? ", " : "", p[i].name, num);
        }
        if (c->kind == ORACLE_LIF || c->kind == ORACLE_ALIF || c->kind == ORACLE_LIF_EXPON)
            off += (size_t)snprintf(buf + off, len - off, ", reset: %s", c->hard ? "hard" : "soft");
        off += (size_t)snprintf(buf + off, len - off, "}\n");
    }
    if (oracle_cell_spiking(c->kind)) {
        char s[128];
        snprintf(buf + off, len - off, "    surrogate: %s\n", surr_yaml(c, s, sizeof s));
    }
}

static const char *
model_name(enum oracle_kind k)
{
    switch (k) {
    case ORACLE_LIF:
        return "lif";
    case ORACLE_ALIF:
        return "alif";
    case ORACLE_LIF_EXPON:
        return "lif_expon";
    case ORACLE_IZHIKEVICH:
        return "izhikevich";
    case ORACLE_GRU:
        return "gru";
    case ORACLE_LSTM:
        return "lstm";
    case ORACLE_LINEAR:
        return "linear";
    default:
        return "custom";
    }
}

/* ---- one case: the model, the engine run and the oracle's tape ---------------------- */

struct ecase {
    const char *label;
    struct oracle_net net; /* cell, sizes, slots; run() fills the weights */
    const char *to;        /* w_in's `to:` */
    const char *algorithm; /* d_rtrl | es_d_rtrl | hybrid */
    const char *decay;     /* decay_or_rank text, or NULL */
    const char *learn_in, *learn_out;
    int sparse;    /* w_in is `op: sparse` on a random pattern (prob 0.5) */
    int off_until; /* ticks t < off_until run with learning off */
    int T;
    int n_check, check[2]; /* ticks after which the gradient sums are taken */
    uint64_t seed;
    double w_mean, w_std, b_mean, b_std; /* w_in and b_in ~ N(mean, std^2) */
    double x_lo, x_hi;                   /* inputs ~ U[x_lo, x_hi) */
    double wo_std;                       /* w_out ~ N(0, wo_std^2), b_out ~ N(0, 0.1^2) */
    /* results */
    unsigned char *mask; /* sparse: [I][O] 1 on the pattern; the net's w_in is 0 off it */
    struct oracle_tape tape;
    struct oracle_grad eng[2]; /* the engine's grad_sum at check[0], check[1] */
    enum engine_rule rule_in, rule_out;
    double out_err;     /* relative error of the readout over every tick */
    long spike_diff;    /* ticks x neurons whose hidden outputs differ */
    double engine_rate; /* the engine's own firing rate of the hidden cell */
    double secs;
};

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t
n_w_in(const struct oracle_net *n)
{
    return n->elemwise ? oracle_net_O(n) : (int64_t)oracle_net_I(n) * oracle_net_O(n);
}

static void
grad_alloc(const struct oracle_net *n, struct oracle_grad *g)
{
    g->w_in = calloc((size_t)n_w_in(n), sizeof(double));
    g->b_in = calloc((size_t)oracle_net_O(n), sizeof(double));
    g->w_out = calloc((size_t)n->N * n->M, sizeof(double));
    g->b_out = calloc((size_t)n->M, sizeof(double));
    assert_non_null(g->w_in);
    assert_non_null(g->b_in);
    assert_non_null(g->w_out);
    assert_non_null(g->b_out);
}

static void
grad_free(struct oracle_grad *g)
{
    free(g->w_in);
    free(g->b_in);
    free(g->w_out);
    free(g->b_out);
    memset(g, 0, sizeof *g);
}

static void
case_free(struct ecase *c)
{
    oracle_tape_free(&c->tape);
    for (int k = 0; k < 2; k++)
        grad_free(&c->eng[k]);
    free(c->net.w_in);
    free(c->net.b_in);
    free(c->net.w_out);
    free(c->net.b_out);
    free(c->mask);
    c->mask = NULL;
    c->net.w_in = c->net.b_in = c->net.w_out = c->net.b_out = NULL;
}

static struct engine *
compile_text(const char *text)
{
    struct model_desc *d = NULL;
    struct err e;
    err_clear(&e);
    if (model_parse(text, strlen(text), "oracle.yaml", mem_default(), &d, &e)) {
        print_error("model_parse: %s\n--- model:\n%s", e.msg, text);
        fail();
    }
    struct engine_opts opts = {.track_grad_sum = 1};
    struct engine *eng = NULL;
    if (engine_compile(d, &opts, &eng, &e)) {
        model_free(&d, mem_default());
        print_error("engine_compile: %s\n--- model:\n%s", e.msg, text);
        fail();
    }
    return eng;
}

static void
write_model(const struct ecase *c, char *buf, size_t len)
{
    const struct oracle_net *n = &c->net;
    char cell[1024], dt[40];
    enum oracle_kind k = n->cell.kind;
    if (k == ORACLE_ADAPT)
        snprintf(cell, sizeof cell, "%s", oracle_adapt_yaml);
    else if (k == ORACLE_TRI)
        snprintf(cell, sizeof cell, "%s", oracle_tri_yaml);
    else
        builtin_yaml(&n->cell, cell, sizeof cell);
    fmt_num(dt, sizeof dt, n->cell.dt);
    char decay[64] = "";
    if (c->decay)
        snprintf(decay, sizeof decay, "  decay_or_rank: %s\n", c->decay);
    snprintf(buf, len,
             "name: oracle\n"
             "dt: %s\n"
             "seed: 1\n"
             "inputs:\n"
             "  - {name: x, size: %d, kind: analog}\n"
             "cells:\n"
             "  - name: hidden\n"
             "    model: %s\n"
             "    size: %d\n"
             "%s"
             "  - name: out\n"
             "    model: linear\n"
             "    size: %d\n"
             "projections:\n"
             "  - name: w_in\n"
             "    from: %s\n"
             "    to: %s\n"
             "    op: %s\n"
             "    weight: %s\n"
             "    bias: {init: zeros}\n"
             "    learn: %s\n"
             "  - name: w_out\n"
             "    from: hidden\n"
             "    to: out\n"
             "    weight: {init: zeros}\n"
             "    bias: {init: zeros}\n"
             "    learn: %s\n"
             "readouts:\n"
             "  - {name: y, cell: out}\n"
             "  - {name: spikes, cell: hidden}\n"
             "learning:\n"
             "  algorithm: %s\n"
             "%s"
             "  optimizer: {kind: sgd, lr: 1.0e-3}\n",
             dt, n->elemwise ? oracle_net_O(n) : n->n_x, model_name(k), n->N, cell, n->M,
             n->recurrent ? "[x, hidden]" : "x", c->to,
             n->elemwise ? "elemwise"
             : c->sparse ? "sparse"
                         : "dense",
             c->sparse ? "{prob: 0.5, seed: 9, init: zeros}" : "{init: zeros}",
             c->learn_in ? c->learn_in : "trace", c->learn_out ? c->learn_out : "trace",
             c->algorithm, decay);
}

/* x through real and back: both sides see exactly the engine's numbers. */
static double
as_real(double x)
{
    return (double)(real)x;
}

/* Builds the model, draws weights, inputs and targets from c->seed, runs the engine and
 * the oracle's forward pass, compares their outputs, and keeps the engine's gradient
 * sums at the check ticks. */
static void
run(struct ecase *c)
{
    double t0 = now_s();
    struct oracle_net *n = &c->net;
    if (n->elemwise)
        n->n_x = oracle_net_O(n);
    int I = oracle_net_I(n), O = oracle_net_O(n), N = n->N, M = n->M, T = c->T;
    char text[8192];
    write_model(c, text, sizeof text);
    struct engine *eng = compile_text(text);
    engine_set_fp_env();
    engine_set_learn(eng, ENGINE_LEARN_ACCUMULATE);
    assert_int_equal(engine_n_projs(eng), 2);
    struct engine_param_view v;
    engine_param(eng, 0, &v);
    assert_string_equal(v.name, "w_in");
    assert_int_equal(v.in_size, I);
    assert_int_equal(v.out_size, O);
    if (c->sparse) {
        /* the pattern, as the engine drew it; the oracle's dense w_in is 0 off it */
        assert_non_null(v.indptr);
        assert_non_null(v.indices);
        c->mask = calloc((size_t)I * O, 1);
        assert_non_null(c->mask);
        for (int i = 0; i < I; i++)
            for (int64_t p = v.indptr[i]; p < v.indptr[i + 1]; p++)
                c->mask[(size_t)i * O + v.indices[p]] = 1;
        assert_int_equal(v.indptr[I], v.count);
        assert_true(v.count > 0 && v.count < (int64_t)I * O);
    } else {
        assert_int_equal(v.count, n_w_in(n));
    }
    c->rule_in = v.rule;
    engine_param(eng, 1, &v);
    assert_string_equal(v.name, "w_out");
    c->rule_out = v.rule;

    /* weights: drawn in double, rounded to real, and the rounded values are the net's */
    struct oracle_rng rng = {c->seed};
    n->w_in = calloc((size_t)n_w_in(n), sizeof(double));
    n->b_in = calloc((size_t)O, sizeof(double));
    n->w_out = calloc((size_t)N * M, sizeof(double));
    n->b_out = calloc((size_t)M, sizeof(double));
    assert_true(n->w_in && n->b_in && n->w_out && n->b_out);
    real *w = engine_weight_mut(eng, 0), *b = engine_bias_mut(eng, 0);
    assert_non_null(b);
    for (int64_t i = 0, p = 0; i < n_w_in(n); i++) {
        real x = (real)(c->w_mean + c->w_std * oracle_normal(&rng));
        if (c->sparse && !c->mask[i])
            continue; /* drawn anyway: the same stream as the dense case */
        w[p++] = x;   /* dense: p == i; sparse: CSR order is row-major order */
        n->w_in[i] = (double)x;
    }
    for (int o = 0; o < O; o++) {
        b[o] = (real)(c->b_mean + c->b_std * oracle_normal(&rng));
        n->b_in[o] = (double)b[o];
    }
    w = engine_weight_mut(eng, 1);
    b = engine_bias_mut(eng, 1);
    assert_non_null(b);
    for (int64_t i = 0; i < (int64_t)N * M; i++) {
        w[i] = (real)(c->wo_std * oracle_normal(&rng));
        n->w_out[i] = (double)w[i];
    }
    for (int m = 0; m < M; m++) {
        b[m] = (real)(0.1 * oracle_normal(&rng));
        n->b_out[m] = (double)b[m];
    }

    /* inputs and targets; every 7th tick (t % 7 == 3) has no target */
    double *xs = calloc((size_t)T * n->n_x, sizeof(double));
    double *tg = calloc((size_t)T * M, sizeof(double));
    unsigned char *has = calloc((size_t)T, 1);
    real *xr = calloc((size_t)n->n_x, sizeof(real)), *tr = calloc((size_t)M, sizeof(real));
    assert_true(xs && tg && has && xr && tr);
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < n->n_x; i++)
            xs[(size_t)t * n->n_x + i] =
                as_real(c->x_lo + (c->x_hi - c->x_lo) * oracle_uniform(&rng));
        for (int m = 0; m < M; m++)
            tg[(size_t)t * M + m] = as_real(2.0 * oracle_uniform(&rng) - 1.0);
        has[t] = t % 7 != 3;
    }
    assert_int_equal(oracle_forward(n, T, xs, tg, has, &c->tape), 0);

    /* the engine, tick by tick, outputs compared as they come */
    for (int k = 0; k < 2; k++)
        grad_alloc(n, &c->eng[k]);
    double max_do = 0.0, max_o = 0.0;
    c->spike_diff = 0;
    int ci = 0;
    for (int t = 0; t < T; t++) {
        engine_set_learn(eng, t < c->off_until ? ENGINE_LEARN_OFF : ENGINE_LEARN_ACCUMULATE);
        for (int i = 0; i < n->n_x; i++)
            xr[i] = (real)xs[(size_t)t * n->n_x + i];
        engine_set_input(eng, 0, xr);
        if (has[t]) {
            for (int m = 0; m < M; m++)
                tr[m] = (real)tg[(size_t)t * M + m];
            engine_set_target(eng, 0, tr);
        }
        engine_tick(eng);
        const real *ro = engine_readout_values(eng, 0), *rh = engine_readout_values(eng, 1);
        for (int m = 0; m < M; m++) {
            double ref = c->tape.o[(size_t)t * M + m];
            double d = fabs((double)ro[m] - ref);
            max_do = d > max_do || d != d ? d : max_do;
            max_o = fabs(ref) > max_o ? fabs(ref) : max_o;
        }
        for (int nn = 0; nn < N; nn++) {
            double ref = c->tape.out[(size_t)t * N + nn];
            double d = fabs((double)rh[nn] - ref);
            if (oracle_cell_spiking(n->cell.kind) ? d != 0.0 : !(d <= tol_out))
                c->spike_diff++;
        }
        if (ci < c->n_check && t + 1 == c->check[ci]) {
            for (int p = 0; p < 2; p++) {
                engine_param(eng, p, &v);
                double *gw = p ? c->eng[ci].w_out : c->eng[ci].w_in;
                double *gb = p ? c->eng[ci].b_out : c->eng[ci].b_in;
                int64_t nb = p ? M : O;
                if (v.grad_sum_w && p == 0 && c->sparse) {
                    for (int i = 0; i < I; i++)
                        for (int64_t q = v.indptr[i]; q < v.indptr[i + 1]; q++)
                            gw[(size_t)i * O + v.indices[q]] = v.grad_sum_w[q];
                } else if (v.grad_sum_w) {
                    memcpy(gw, v.grad_sum_w, (size_t)v.count * sizeof(double));
                }
                if (v.grad_sum_b)
                    memcpy(gb, v.grad_sum_b, (size_t)nb * sizeof(double));
            }
            ci++;
        }
    }
    c->out_err = max_do / (max_o > 1e-12 ? max_o : 1e-12);
    c->engine_rate = engine_cell_rate(eng, 0);
    engine_free(&eng);
    free(xs);
    free(tg);
    free(has);
    free(xr);
    free(tr);
    c->secs = now_s() - t0;
}

static double
rate(const struct ecase *c)
{
    return c->tape.spikes / ((double)c->T * c->net.N);
}

static const char *
rule_name(enum engine_rule r)
{
    switch (r) {
    case ENGINE_RULE_FROZEN:
        return "frozen";
    case ENGINE_RULE_INSTANT:
        return "instant";
    case ENGINE_RULE_D_RTRL:
        return "d_rtrl";
    case ENGINE_RULE_ES:
        return "es_d_rtrl";
    }
    return "?";
}

/* The forward pass must agree before any gradient means anything. Returns 1 when the
 * gradients may be compared, 0 on the float build when a rounding flipped a spike. */
static int
check_forward(const struct ecase *c)
{
    int spiking = oracle_cell_spiking(c->net.cell.kind);
    printf("[%s] seed %llu, %d ticks, N %d, I %d, O %d: rules w_in %s, w_out %s\n", c->label,
           (unsigned long long)c->seed, c->T, c->net.N, oracle_net_I(&c->net),
           oracle_net_O(&c->net), rule_name(c->rule_in), rule_name(c->rule_out));
    if (spiking)
        printf("[%s] firing rate %.4f (engine %.4f), smallest |spike argument| %.3g\n", c->label,
               rate(c), c->engine_rate, c->tape.margin);
    printf("[%s] forward: readout rel err %.3g, differing hidden outputs %ld\n", c->label,
           c->out_err, c->spike_diff);
#if !defined(REAL_DOUBLE)
    if (c->spike_diff > 0) {
        printf("[%s] NOTE: float build: a float rounding changed the hidden outputs; "
               "gradient comparison skipped (it runs on the double build)\n",
               c->label);
        return 0;
    }
#endif
    assert_int_equal(c->spike_diff, 0);
    assert_true(c->out_err <= tol_out);
    if (spiking) {
        /* activity: neither silent nor saturated, and no spike decided by rounding */
        assert_true(rate(c) > 0.02 && rate(c) < 0.6);
        assert_true(c->tape.margin > 1e-6);
    }
    return 1;
}

/* Compares the four tensors, prints their errors, returns the largest. */
static double
compare(const char *label, const char *what, const struct oracle_net *n,
        const struct oracle_grad *a, const struct oracle_grad *ref)
{
    double e[4] = {oracle_rel_err(n_w_in(n), a->w_in, ref->w_in),
                   oracle_rel_err(oracle_net_O(n), a->b_in, ref->b_in),
                   oracle_rel_err((int64_t)n->N * n->M, a->w_out, ref->w_out),
                   oracle_rel_err(n->M, a->b_out, ref->b_out)};
    double mx = 0.0;
    for (int i = 0; i < 4; i++)
        mx = e[i] > mx || e[i] != e[i] ? e[i] : mx;
    printf("[%s] %s: rel err w_in %.3g, b_in %.3g, w_out %.3g, b_out %.3g\n", label, what, e[0],
           e[1], e[2], e[3]);
    return mx;
}

static double
cosine(int64_t n, const double *a, const double *b)
{
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (int64_t i = 0; i < n; i++) {
        ab += a[i] * b[i];
        aa += a[i] * a[i];
        bb += b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

/* Sparse: the rules keep the gradient on the pattern's nonzeros only (DESIGN §4.2), so
 * the dense reference is compared there and the engine's dense image is 0 elsewhere. */
static void
mask_ref(const struct ecase *c, struct oracle_grad *ref)
{
    if (!c->mask)
        return;
    for (int64_t i = 0; i < n_w_in(&c->net); i++)
        if (!c->mask[i])
            ref->w_in[i] = 0.0;
}

/* ---- 1. D-RTRL equals BPTT ---------------------------------------------------------- */

static void
drtrl_vs_bptt(struct ecase *c)
{
    c->algorithm = "d_rtrl";
    c->n_check = 1;
    c->check[0] = c->T;
    run(c);
    if (check_forward(c)) {
        assert_int_equal(c->rule_in, ENGINE_RULE_D_RTRL);
        assert_int_equal(c->rule_out, ENGINE_RULE_D_RTRL);
        struct oracle_grad bp, tr;
        grad_alloc(&c->net, &bp);
        grad_alloc(&c->net, &tr);
        assert_int_equal(oracle_bptt(&c->net, &c->tape, &bp), 0);
        mask_ref(c, &bp);
        /* the oracle's own consistency: its D-RTRL transcription equals its BPTT */
        assert_int_equal(oracle_online(&c->net, &c->tape, c->T, ORACLE_RULE_D_RTRL,
                                       ORACLE_RULE_D_RTRL, 0.0, 0.0, &tr),
                         0);
        mask_ref(c, &tr);
        double self =
            compare(c->label, "oracle D-RTRL transcription vs oracle BPTT", &c->net, &tr, &bp);
        assert_true(self <= 1e-9);
        double err = compare(c->label, "engine D-RTRL vs BPTT", &c->net, &c->eng[0], &bp);
        printf("[%s] D-RTRL vs BPTT: max rel err %.3g (tolerance %.0e), %.3f s\n", c->label, err,
               tol_grad, c->secs);
        assert_true(err <= tol_grad);
        grad_free(&bp);
        grad_free(&tr);
    }
    case_free(c);
}

static void
lif_net(struct ecase *c, const char *label, int hard)
{
    *c = (struct ecase){.label = label,
                        .to = "hidden.i",
                        .T = 200,
                        .seed = 11,
                        .w_mean = 0.0,
                        .w_std = 0.6,
                        .b_mean = 0.6,
                        .b_std = 0.3,
                        .x_lo = 0.0,
                        .x_hi = 1.0,
                        .wo_std = 0.5};
    oracle_cell_defaults(ORACLE_LIF, 1.0e-3, &c->net.cell);
    c->net.cell.hard = hard;
    c->net.n_x = 5;
    c->net.N = 12;
    c->net.M = 3;
    c->net.n_to = 1;
    c->net.to_slots[0] = 0;
}

static void
test_oracle_drtrl_lif_soft(void **state)
{
    (void)state;
    struct ecase c;
    lif_net(&c, "lif soft", 0);
    c.net.cell.tau = 10.0e-3;
    c.b_mean = 1.3;
    drtrl_vs_bptt(&c);
}

static void
test_oracle_drtrl_lif_hard(void **state)
{
    (void)state;
    struct ecase c;
    lif_net(&c, "lif hard", 1);
    /* into both slots, with v_reset and v_rest off zero and the slayer surrogate */
    c.to = "hidden[i,delta]";
    c.net.n_to = 2;
    c.net.to_slots[1] = 1;
    c.net.cell.v_reset = -0.2;
    c.net.cell.v_rest = 0.1;
    c.net.cell.r = 1.5;
    c.net.cell.surr = ORACLE_SURR_EXP;
    c.net.cell.alpha = 5.0;
    c.w_std = 0.3;
    c.b_mean = 0.2;
    c.seed = 12;
    drtrl_vs_bptt(&c);
}

static void
test_oracle_drtrl_alif(void **state)
{
    (void)state;
    struct ecase c;
    lif_net(&c, "alif", 0);
    oracle_cell_defaults(ORACLE_ALIF, 1.0e-3, &c.net.cell);
    c.net.cell.tau_b = 50.0e-3;
    c.net.cell.beta = 0.5;
    c.net.cell.surr = ORACLE_SURR_GAUSSIAN;
    c.net.cell.sigma = 0.4;
    c.b_mean = 2.0;
    c.seed = 13;
    drtrl_vs_bptt(&c);
}

static void
test_oracle_drtrl_lif_expon(void **state)
{
    (void)state;
    struct ecase c;
    lif_net(&c, "lif_expon", 0);
    oracle_cell_defaults(ORACLE_LIF_EXPON, 1.0e-3, &c.net.cell);
    c.net.cell.surr = ORACLE_SURR_SIGMOID;
    c.net.cell.alpha = 4.0;
    c.to = "hidden";
    c.w_std = 0.15;
    c.b_mean = 0.25;
    c.b_std = 0.1;
    c.seed = 14;
    drtrl_vs_bptt(&c);
}

static void
test_oracle_drtrl_izhikevich(void **state)
{
    (void)state;
    struct ecase c;
    lif_net(&c, "izhikevich", 0);
    oracle_cell_defaults(ORACLE_IZHIKEVICH, 0.5e-3, &c.net.cell);
    c.net.cell.surr = ORACLE_SURR_EXP;
    c.net.cell.alpha = 5.0;
    c.to = "hidden";
    c.T = 300;
    c.w_std = 8.0;
    c.b_mean = 30.0;
    c.b_std = 6.0;
    c.wo_std = 0.3;
    c.seed = 15;
    drtrl_vs_bptt(&c);
}

static void
test_oracle_drtrl_gru(void **state)
{
    (void)state;
    struct ecase c;
    lif_net(&c, "gru", 0);
    oracle_cell_defaults(ORACLE_GRU, 1.0e-3, &c.net.cell);
    c.to = "hidden[z,r,nx,nh]";
    c.net.n_to = 4;
    for (int s = 0; s < 4; s++)
        c.net.to_slots[s] = s;
    c.net.N = 8;
    c.w_std = 0.8;
    c.b_mean = 0.0;
    c.b_std = 0.5;
    c.x_lo = -1.0;
    c.seed = 16;
    c.T = 150;
    drtrl_vs_bptt(&c);
}

static void
test_oracle_drtrl_lstm(void **state)
{
    (void)state;
    struct ecase c;
    lif_net(&c, "lstm", 0);
    oracle_cell_defaults(ORACLE_LSTM, 1.0e-3, &c.net.cell);
    c.to = "hidden[i,f,g,o]";
    c.net.n_to = 4;
    for (int s = 0; s < 4; s++)
        c.net.to_slots[s] = s;
    c.net.N = 8;
    c.w_std = 0.8;
    c.b_mean = 0.5; /* forget gates mostly open: a long memory */
    c.b_std = 0.5;
    c.x_lo = -1.0;
    c.seed = 17;
    c.T = 150;
    drtrl_vs_bptt(&c);
}

static void
test_oracle_drtrl_custom_adapt(void **state)
{
    (void)state;
    struct ecase c;
    lif_net(&c, "custom adapt (DESIGN 2.2)", 0);
    oracle_cell_defaults(ORACLE_ADAPT, 1.0e-3, &c.net.cell);
    c.to = "hidden";
    c.w_std = 2.0;
    c.b_mean = 12.0;
    c.b_std = 2.0;
    c.seed = 18;
    drtrl_vs_bptt(&c);
}

static void
test_oracle_drtrl_custom_tri(void **state)
{
    (void)state;
    struct ecase c;
    lif_net(&c, "custom tri (K=3)", 0);
    oracle_cell_defaults(ORACLE_TRI, 1.0e-3, &c.net.cell);
    c.to = "hidden[i,j]";
    c.net.n_to = 2;
    c.net.to_slots[1] = 1;
    c.w_std = 0.8;
    c.b_mean = 1.5;
    c.b_std = 0.8;
    c.x_lo = -1.0;
    c.seed = 19;
    drtrl_vs_bptt(&c);
}

/* ---- 2. ES-D-RTRL and recurrent projections against the transcription ---------------- */

static void
online_vs_transcription(struct ecase *c, enum oracle_rule rin, enum oracle_rule rout, double lx,
                        double lf, int with_bptt)
{
    run(c);
    if (!check_forward(c)) {
        case_free(c);
        return;
    }
    struct oracle_grad tr, bp;
    grad_alloc(&c->net, &tr);
    grad_alloc(&c->net, &bp);
    for (int k = 0; k < c->n_check; k++) {
        assert_int_equal(oracle_online(&c->net, &c->tape, c->check[k], rin, rout, lx, lf, &tr), 0);
        mask_ref(c, &tr);
        char what[128];
        snprintf(what, sizeof what, "engine vs DESIGN 4.2 transcription, ticks 0..%d",
                 c->check[k] - 1);
        double err = compare(c->label, what, &c->net, &c->eng[k], &tr);
        assert_true(err <= tol_grad);
        if (with_bptt && k == c->n_check - 1) {
            assert_int_equal(oracle_bptt(&c->net, &c->tape, &bp), 0);
            printf("[%s] online vs exact BPTT (information only): cosine w_in %.4f, "
                   "w_out %.4f\n",
                   c->label, cosine(n_w_in(&c->net), c->eng[k].w_in, bp.w_in),
                   cosine((int64_t)c->net.N * c->net.M, c->eng[k].w_out, bp.w_out));
        }
    }
    if (c->n_check == 2) {
        /* the ticks after the first check alone: n >= 1000 there, so c = 1 */
        struct oracle_grad b;
        grad_alloc(&c->net, &b);
        assert_int_equal(oracle_online(&c->net, &c->tape, c->check[0], rin, rout, lx, lf, &b), 0);
        mask_ref(c, &b);
        double *pe1[4] = {c->eng[1].w_in, c->eng[1].b_in, c->eng[1].w_out, c->eng[1].b_out};
        double *pe0[4] = {c->eng[0].w_in, c->eng[0].b_in, c->eng[0].w_out, c->eng[0].b_out};
        double *pt1[4] = {tr.w_in, tr.b_in, tr.w_out, tr.b_out};
        double *pt0[4] = {b.w_in, b.b_in, b.w_out, b.b_out};
        int64_t sz[4] = {n_w_in(&c->net), oracle_net_O(&c->net), (int64_t)c->net.N * c->net.M,
                         c->net.M};
        double mx = 0.0;
        for (int q = 0; q < 4; q++) {
            double *de = calloc((size_t)sz[q], sizeof(double));
            double *dt = calloc((size_t)sz[q], sizeof(double));
            assert_true(de && dt);
            for (int64_t i = 0; i < sz[q]; i++) {
                de[i] = pe1[q][i] - pe0[q][i];
                dt[i] = pt1[q][i] - pt0[q][i];
            }
            double e = oracle_rel_err(sz[q], de, dt);
            mx = e > mx || e != e ? e : mx;
            free(de);
            free(dt);
        }
        printf("[%s] ticks %d..%d alone (n >= 1000, c = 1): rel err %.3g\n", c->label, c->check[0],
               c->check[1] - 1, mx);
        assert_true(mx <= tol_grad * 10);
        grad_free(&b);
    }
    printf("[%s] %.3f s\n", c->label, c->secs);
    grad_free(&tr);
    grad_free(&bp);
    case_free(c);
}

static void
es_case(struct ecase *c, const char *label, enum oracle_kind kind, const char *decay)
{
    lif_net(c, label, 0);
    oracle_cell_defaults(kind, 1.0e-3, &c->net.cell);
    c->algorithm = "es_d_rtrl";
    c->decay = decay;
    c->T = 1100;
    c->n_check = 2;
    c->check[0] = 1000;
    c->check[1] = 1100;
    c->net.N = 8;
}

static void
test_oracle_es_float_decay_alif(void **state)
{
    (void)state;
    struct ecase c;
    es_case(&c, "es decay 0.998, alif", ORACLE_ALIF, "0.998");
    c.net.cell.tau_b = 50.0e-3;
    c.net.cell.beta = 0.5;
    c.b_mean = 2.0;
    c.seed = 21;
    online_vs_transcription(&c, ORACLE_RULE_ES, ORACLE_RULE_ES, 0.998, 0.998, 0);
}

static void
test_oracle_es_rank_lif(void **state)
{
    (void)state;
    struct ecase c;
    /* rank 1999: lambda = 1998 / 2000 = 0.999, so 1 - lambda^(n+1) is far from 1 at
     * n = 999 and the cap at n = 1000 is a visible step */
    es_case(&c, "es rank 1999, lif", ORACLE_LIF, "1999");
    c.net.cell.tau = 10.0e-3;
    c.seed = 22;
    online_vs_transcription(&c, ORACLE_RULE_ES, ORACLE_RULE_ES, 1998.0 / 2000.0, 1998.0 / 2000.0,
                            0);
}

static void
test_oracle_es_pair_tri(void **state)
{
    (void)state;
    struct ecase c;
    es_case(&c, "es pair [0.9, 0.999], custom tri (K=3)", ORACLE_TRI, "[0.9, 0.999]");
    c.to = "hidden[i,j]";
    c.net.n_to = 2;
    c.net.to_slots[1] = 1;
    c.w_std = 0.8;
    c.b_mean = 1.5;
    c.b_std = 0.8;
    c.x_lo = -1.0;
    c.seed = 23;
    online_vs_transcription(&c, ORACLE_RULE_ES, ORACLE_RULE_ES, 0.9, 0.999, 0);
}

static void
test_oracle_es_pair_rank_lstm(void **state)
{
    (void)state;
    struct ecase c;
    /* a pair of a rank and a decay: [3, 0.95] -> lambda_x 0.5, lambda_f 0.95 */
    es_case(&c, "es pair [3, 0.95], lstm", ORACLE_LSTM, "[3, 0.95]");
    c.to = "hidden[i,f,g,o]";
    c.net.n_to = 4;
    for (int s = 0; s < 4; s++)
        c.net.to_slots[s] = s;
    c.w_std = 0.8;
    c.b_mean = 0.5;
    c.b_std = 0.5;
    c.x_lo = -1.0;
    c.seed = 24;
    online_vs_transcription(&c, ORACLE_RULE_ES, ORACLE_RULE_ES, 0.5, 0.95, 0);
}

static void
recurrent_case(struct ecase *c, const char *label)
{
    lif_net(c, label, 0);
    oracle_cell_defaults(ORACLE_ALIF, 1.0e-3, &c->net.cell);
    c->net.cell.tau_b = 50.0e-3;
    c->net.cell.beta = 0.5;
    c->net.recurrent = 1;
    c->net.N = 10;
    c->w_std = 0.5;
    c->b_mean = 2.0;
    c->T = 400;
    c->n_check = 1;
    c->check[0] = c->T;
}

static void
test_oracle_recurrent_drtrl(void **state)
{
    (void)state;
    struct ecase c;
    recurrent_case(&c, "recurrent alif [x, hidden], d_rtrl");
    c.algorithm = "d_rtrl";
    c.seed = 31;
    online_vs_transcription(&c, ORACLE_RULE_D_RTRL, ORACLE_RULE_D_RTRL, 0.0, 0.0, 1);
}

static void
test_oracle_recurrent_es(void **state)
{
    (void)state;
    struct ecase c;
    recurrent_case(&c, "recurrent alif [x, hidden], es 0.95");
    c.algorithm = "es_d_rtrl";
    c.decay = "0.95";
    c.seed = 32;
    online_vs_transcription(&c, ORACLE_RULE_ES, ORACLE_RULE_ES, 0.95, 0.95, 1);
}

/* Sparse projections (beyond the brief, cheap with the masked dense oracle): D-RTRL on
 * the nonzeros equals BPTT restricted to them; ES on the nonzeros equals the
 * transcription there. */
static void
test_oracle_sparse(void **state)
{
    (void)state;
    struct ecase c;
    lif_net(&c, "sparse alif, d_rtrl", 0);
    oracle_cell_defaults(ORACLE_ALIF, 1.0e-3, &c.net.cell);
    c.net.cell.tau_b = 50.0e-3;
    c.net.cell.beta = 0.5;
    c.net.n_x = 8;
    c.sparse = 1;
    c.w_std = 0.8;
    c.b_mean = 2.0;
    c.seed = 61;
    drtrl_vs_bptt(&c);
    lif_net(&c, "sparse lif, es 0.99", 0);
    c.net.n_x = 8;
    c.sparse = 1;
    c.algorithm = "es_d_rtrl";
    c.decay = "0.99";
    c.w_std = 0.8;
    c.b_mean = 1.2;
    c.T = 300;
    c.n_check = 1;
    c.check[0] = c.T;
    c.seed = 62;
    online_vs_transcription(&c, ORACLE_RULE_ES, ORACLE_RULE_ES, 0.99, 0.99, 0);
}

/* a -= b over the four tensors */
static void
grad_sub(const struct oracle_net *n, struct oracle_grad *a, const struct oracle_grad *b)
{
    for (int64_t i = 0; i < n_w_in(n); i++)
        a->w_in[i] -= b->w_in[i];
    for (int o = 0; o < oracle_net_O(n); o++)
        a->b_in[o] -= b->b_in[o];
    for (int64_t i = 0; i < (int64_t)n->N * n->M; i++)
        a->w_out[i] -= b->w_out[i];
    for (int m = 0; m < n->M; m++)
        a->b_out[m] -= b->b_out[m];
}

/* DESIGN §4.4: with learning off the traces and the ES counter n keep advancing and
 * nothing is accumulated. Learning off for ticks [0, off), accumulate for [off, T): the
 * engine's sums equal the transcription's sum over [off, T) alone, with traces (and the
 * warm-up correction, through n) carried through the off period. */
static void
learn_off_case(struct ecase *c, enum oracle_rule rule, double lx, double lf)
{
    c->n_check = 1;
    c->check[0] = c->T;
    run(c);
    if (check_forward(c)) {
        struct oracle_grad all, head;
        grad_alloc(&c->net, &all);
        grad_alloc(&c->net, &head);
        assert_int_equal(oracle_online(&c->net, &c->tape, c->T, rule, rule, lx, lf, &all), 0);
        assert_int_equal(oracle_online(&c->net, &c->tape, c->off_until, rule, rule, lx, lf, &head),
                         0);
        grad_sub(&c->net, &all, &head);
        char what[128];
        snprintf(what, sizeof what, "learning off for ticks 0..%d, then on: vs ticks %d..%d",
                 c->off_until - 1, c->off_until, c->T - 1);
        assert_true(compare(c->label, what, &c->net, &c->eng[0], &all) <= tol_grad);
        grad_free(&all);
        grad_free(&head);
    }
    case_free(c);
}

static void
test_oracle_learning_off_keeps_traces(void **state)
{
    (void)state;
    struct ecase c;
    es_case(&c, "es rank 1999, lif, learning off then on", ORACLE_LIF, "1999");
    c.net.cell.tau = 10.0e-3;
    c.off_until = 600;
    c.seed = 22;
    learn_off_case(&c, ORACLE_RULE_ES, 0.999, 0.999);
    lif_net(&c, "alif d_rtrl, learning off then on", 0);
    oracle_cell_defaults(ORACLE_ALIF, 1.0e-3, &c.net.cell);
    c.net.cell.tau_b = 50.0e-3;
    c.net.cell.beta = 0.5;
    c.b_mean = 2.0;
    c.algorithm = "d_rtrl";
    c.off_until = 100;
    c.seed = 13;
    learn_off_case(&c, ORACLE_RULE_D_RTRL, 0.0, 0.0);
}

/* ---- 3. hybrid --------------------------------------------------------------------- */

struct hshape {
    const char *model; /* built-in */
    int K, n_x, N, budget;
    const char *op; /* dense | sparse | elemwise */
};

static void
test_oracle_hybrid_choice(void **state)
{
    (void)state;
    static const struct hshape shapes[] = {
        {"lif", 1, 4, 8, 4, "dense"},       /* 32 <= 4 * 12 = 48: d_rtrl */
        {"lif", 1, 20, 20, 4, "dense"},     /* 400 > 160: es */
        {"lif", 1, 8, 8, 4, "dense"},       /* 64 <= 64, the boundary: d_rtrl */
        {"lif", 1, 9, 9, 4, "dense"},       /* 81 > 72: es */
        {"alif", 2, 3, 10, 4, "dense"},     /* 2*30 = 60 <= 4 * 23 = 92: d_rtrl */
        {"alif", 2, 3, 10, 1, "dense"},     /* 60 > 23: es */
        {"alif", 2, 7, 7, 3, "dense"},      /* 98 > 63: es */
        {"alif", 2, 7, 7, 7, "dense"},      /* 98 <= 147: d_rtrl */
        {"lstm", 2, 6, 5, 4, "dense"},      /* O = 20: 2*120 = 240 > 4*46 = 184: es */
        {"lstm", 2, 6, 5, 6, "dense"},      /* 240 <= 276: d_rtrl */
        {"lif", 1, 64, 64, 4, "sparse"},    /* P = nnz */
        {"lif", 1, 64, 64, 8, "sparse"},    /* P about 600 <= 8 * 128: d_rtrl */
        {"lif", 1, 40, 40, 1, "elemwise"},  /* 40 <= 80 anyway; elemwise is d_rtrl always */
        {"alif", 2, 50, 50, 1, "elemwise"}, /* 200 > 150, still d_rtrl: elemwise */
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const struct hshape *h = &shapes[s];
        int multi = strcmp(h->model, "lstm") == 0;
        int O = multi ? 4 * h->N : h->N;
        char weight[128], text[2048];
        if (strcmp(h->op, "sparse") == 0)
            snprintf(weight, sizeof weight, "{prob: 0.15, seed: 5, init: normal, std: 0.1}");
        else
            snprintf(weight, sizeof weight, "{init: normal, std: 0.1}");
        snprintf(text, sizeof text,
                 "name: hybrid\n"
                 "dt: 1.0e-3\n"
                 "inputs:\n"
                 "  - {name: x, size: %d}\n"
                 "cells:\n"
                 "  - {name: hidden, model: %s, size: %d}\n"
                 "  - {name: out, model: linear, size: 2}\n"
                 "projections:\n"
                 "  - {name: w_in, from: x, to: %s, op: %s, weight: %s}\n"
                 "  - {name: w_out, from: hidden, to: out, weight: {init: zeros}}\n"
                 "readouts:\n"
                 "  - {name: y, cell: out}\n"
                 "learning:\n"
                 "  algorithm: hybrid\n"
                 "  decay_or_rank: 0.9\n"
                 "  hybrid_budget: %d\n",
                 strcmp(h->op, "elemwise") == 0 ? O : h->n_x, h->model, h->N,
                 multi ? "'hidden[i,f,g,o]'" : "hidden.i", h->op, weight, h->budget);
        struct engine *eng = compile_text(text);
        struct engine_param_view v;
        engine_param(eng, 0, &v);
        int64_t P = v.count, I = v.in_size, Ov = v.out_size;
        assert_int_equal(Ov, O);
        enum engine_rule want;
        if (strcmp(h->op, "elemwise") == 0)
            want = ENGINE_RULE_D_RTRL;
        else
            want = h->K * P <= (int64_t)h->budget * (I + h->K * Ov) ? ENGINE_RULE_D_RTRL
                                                                    : ENGINE_RULE_ES;
        printf("[hybrid] %s %s I %lld O %lld P %lld K %d budget %d: K*P %lld vs budget*(I+K*O) "
               "%lld -> engine %s, expected %s\n",
               h->model, h->op, (long long)I, (long long)Ov, (long long)P, h->K, h->budget,
               (long long)(h->K * P), (long long)(h->budget * (I + h->K * Ov)), rule_name(v.rule),
               rule_name(want));
        assert_int_equal(v.rule, want);
        /* the readout: K = 1, P = 2 N <= budget (N + 2) whenever budget >= 2 */
        engine_param(eng, 1, &v);
        want = 1 * v.count <= (int64_t)h->budget * (v.in_size + v.out_size) ? ENGINE_RULE_D_RTRL
                                                                            : ENGINE_RULE_ES;
        assert_int_equal(v.rule, want);
        engine_free(&eng);
    }
}

/* ---- 4. instant and elemwise ------------------------------------------------------- */

static void
test_oracle_instant(void **state)
{
    (void)state;
    struct ecase c;
    lif_net(&c, "instant, alif", 0);
    oracle_cell_defaults(ORACLE_ALIF, 1.0e-3, &c.net.cell);
    c.net.cell.tau_b = 50.0e-3;
    c.net.cell.beta = 0.5;
    c.b_mean = 2.0;
    c.algorithm = "d_rtrl";
    c.learn_in = "instant";
    c.learn_out = "instant";
    c.T = 200;
    c.n_check = 1;
    c.check[0] = c.T;
    c.seed = 41;
    run(&c);
    if (check_forward(&c)) {
        assert_int_equal(c.rule_in, ENGINE_RULE_INSTANT);
        assert_int_equal(c.rule_out, ENGINE_RULE_INSTANT);
        struct oracle_grad tr;
        grad_alloc(&c.net, &tr);
        assert_int_equal(oracle_online(&c.net, &c.tape, c.T, ORACLE_RULE_INSTANT,
                                       ORACLE_RULE_INSTANT, 0.0, 0.0, &tr),
                         0);
        assert_true(compare(c.label, "engine instant vs transcription", &c.net, &c.eng[0], &tr) <=
                    tol_grad);
        grad_free(&tr);
    }
    case_free(&c);
}

static void
test_oracle_frozen_readout(void **state)
{
    (void)state;
    struct ecase c;
    lif_net(&c, "lif soft, readout frozen", 0);
    c.net.cell.tau = 10.0e-3;
    c.b_mean = 1.3;
    c.algorithm = "d_rtrl";
    c.learn_out = "frozen";
    c.n_check = 1;
    c.check[0] = c.T;
    c.seed = 11;
    run(&c);
    if (check_forward(&c)) {
        assert_int_equal(c.rule_in, ENGINE_RULE_D_RTRL);
        assert_int_equal(c.rule_out, ENGINE_RULE_FROZEN);
        struct oracle_grad bp;
        grad_alloc(&c.net, &bp);
        assert_int_equal(oracle_bptt(&c.net, &c.tape, &bp), 0);
        double e = oracle_rel_err(n_w_in(&c.net), c.eng[0].w_in, bp.w_in);
        double eb = oracle_rel_err(oracle_net_O(&c.net), c.eng[0].b_in, bp.b_in);
        printf("[%s] w_in %.3g, b_in %.3g\n", c.label, e, eb);
        assert_true(e <= tol_grad && eb <= tol_grad);
        grad_free(&bp);
    }
    case_free(&c);
}

/* An elemwise w_in under es_d_rtrl uses D-RTRL (exact: compared with BPTT), while the
 * dense w_out keeps ES (compared with the transcription). */
static void
elemwise_case(enum oracle_kind kind, const char *label, const char *algorithm, uint64_t seed)
{
    struct ecase c;
    lif_net(&c, label, 0);
    oracle_cell_defaults(kind, 1.0e-3, &c.net.cell);
    if (kind == ORACLE_ALIF) {
        c.net.cell.tau_b = 50.0e-3;
        c.net.cell.beta = 0.5;
    }
    c.net.elemwise = 1;
    c.net.N = 10;
    c.w_mean = 1.0;
    c.w_std = 0.5;
    c.b_mean = kind == ORACLE_ALIF ? 1.8 : 0.8;
    c.algorithm = algorithm;
    c.decay = "0.9";
    c.T = 300;
    c.n_check = 1;
    c.check[0] = c.T;
    c.seed = seed;
    run(&c);
    if (check_forward(&c)) {
        assert_int_equal(c.rule_in, ENGINE_RULE_D_RTRL);
        struct oracle_grad bp, tr;
        grad_alloc(&c.net, &bp);
        grad_alloc(&c.net, &tr);
        assert_int_equal(oracle_bptt(&c.net, &c.tape, &bp), 0);
        enum oracle_rule rout = c.rule_out == ENGINE_RULE_ES ? ORACLE_RULE_ES : ORACLE_RULE_D_RTRL;
        assert_int_equal(
            oracle_online(&c.net, &c.tape, c.T, ORACLE_RULE_D_RTRL, rout, 0.9, 0.9, &tr), 0);
        double e = oracle_rel_err(n_w_in(&c.net), c.eng[0].w_in, bp.w_in);
        double eb = oracle_rel_err(oracle_net_O(&c.net), c.eng[0].b_in, bp.b_in);
        double eo = oracle_rel_err((int64_t)c.net.N * c.net.M, c.eng[0].w_out, tr.w_out);
        double ebo = oracle_rel_err(c.net.M, c.eng[0].b_out, tr.b_out);
        printf("[%s] elemwise w_in (d_rtrl) vs BPTT: w %.3g, b %.3g; w_out (%s) vs "
               "transcription: w %.3g, b %.3g\n",
               c.label, e, eb, rule_name(c.rule_out), eo, ebo);
        assert_true(e <= tol_grad && eb <= tol_grad && eo <= tol_grad && ebo <= tol_grad);
        grad_free(&bp);
        grad_free(&tr);
    }
    case_free(&c);
}

static void
test_oracle_elemwise_always_drtrl(void **state)
{
    (void)state;
    elemwise_case(ORACLE_LIF, "elemwise lif, es_d_rtrl", "es_d_rtrl", 51);
    elemwise_case(ORACLE_ALIF, "elemwise alif, es_d_rtrl", "es_d_rtrl", 52);
    elemwise_case(ORACLE_ALIF, "elemwise alif, hybrid", "hybrid", 53);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle_drtrl_lif_soft),
        cmocka_unit_test(test_oracle_drtrl_lif_hard),
        cmocka_unit_test(test_oracle_drtrl_alif),
        cmocka_unit_test(test_oracle_drtrl_lif_expon),
        cmocka_unit_test(test_oracle_drtrl_izhikevich),
        cmocka_unit_test(test_oracle_drtrl_gru),
        cmocka_unit_test(test_oracle_drtrl_lstm),
        cmocka_unit_test(test_oracle_drtrl_custom_adapt),
        cmocka_unit_test(test_oracle_drtrl_custom_tri),
        cmocka_unit_test(test_oracle_frozen_readout),
        cmocka_unit_test(test_oracle_es_float_decay_alif),
        cmocka_unit_test(test_oracle_es_rank_lif),
        cmocka_unit_test(test_oracle_es_pair_tri),
        cmocka_unit_test(test_oracle_es_pair_rank_lstm),
        cmocka_unit_test(test_oracle_recurrent_drtrl),
        cmocka_unit_test(test_oracle_recurrent_es),
        cmocka_unit_test(test_oracle_learning_off_keeps_traces),
        cmocka_unit_test(test_oracle_sparse),
        cmocka_unit_test(test_oracle_hybrid_choice),
        cmocka_unit_test(test_oracle_instant),
        cmocka_unit_test(test_oracle_elemwise_always_drtrl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
