/* Learning-tick benchmarks: the machine (CPU, caches, RAM triad at 1 and 2 threads); a
 * dense recurrent LIF network learning every tick with SGD, next to the naive bound (12
 * bytes per weight over the triad measured at W's size), the algorithmic minimum bytes, a
 * naive C tick and PyTorch eager (in-place addr_, 1 and 2 threads) measured in the same
 * run; the fly-scale sparse row (140k neurons, 15M synapses); and silence after activity
 * (no subnormal slowdown). Every ratio compares figures of this one run.
 * Usage: learn_bench [results.jsonl] [--quick] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"
#include "benchutil.h"
#include "engine.h"
#include "npy.h"
#include "rng.h"

static struct engine *
compile_text_opts(const char *text, const char *path, const struct engine_opts *opts)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return NULL;
    fputs(text, f);
    fclose(f);
    struct model_desc *d;
    struct err e;
    err_clear(&e);
    if (model_load_file(path, mem_default(), &d, &e)) {
        fprintf(stderr, "bench: %s\n", e.msg);
        return NULL;
    }
    struct engine *eng;
    if (engine_compile(d, opts, &eng, &e)) {
        fprintf(stderr, "bench: %s\n", e.msg);
        model_free(&d, mem_default());
        return NULL;
    }
    return eng;
}

static struct engine *
compile_text(const char *text, const char *path)
{
    return compile_text_opts(text, path, NULL);
}

struct tick_stats {
    double p50_us, p99_us, mean_us;
};

/* Runs n ticks with input (each element `in_scale` with probability in_rate, else 0; a
 * rate >= 1 draws uniform analog values) and a target every tick. With window r > 1 (a
 * deferred step flushes every r ticks) the figure is the amortised tick: for each phase
 * j of the r-tick cycle the median over cycles of tick j's time, averaged over the phases.
 * That counts the flush once per r ticks and, like a plain median, is robust to the
 * preemptions of a shared machine (a mean over windows is not). */
static struct tick_stats
run_ticks_w(struct engine *eng, int n_in, int n_ticks, double in_scale, double in_rate, int window,
            struct rng *r)
{
    real *x = malloc(sizeof(real) * (size_t)n_in);
    real tgt[2];
    int n_win = n_ticks / window > 0 ? n_ticks / window : 1;
    double *t = calloc((size_t)n_win * (size_t)window, sizeof(double));
    double *ph = calloc((size_t)n_win, sizeof(double));
    double sum = 0.0;
    for (int k = 0; k < n_win * window; k++) {
        for (int i = 0; i < n_in; i++)
            x[i] = in_rate >= 1.0 ? (real)(in_scale * rng_uniform(r))
                                  : (real)(rng_uniform(r) < in_rate ? in_scale : 0.0);
        tgt[0] = (real)rng_uniform(r);
        tgt[1] = (real)rng_uniform(r);
        engine_set_input(eng, 0, x);
        engine_set_target(eng, 0, tgt);
        double t0 = bench_now();
        engine_tick(eng);
        t[k] = 1e6 * (bench_now() - t0);
        sum += t[k];
    }
    double amort = 0.0;
    for (int j = 0; j < window; j++) {
        for (int w = 0; w < n_win; w++)
            ph[w] = t[w * window + j];
        amort += bench_quantile(ph, (size_t)n_win, 0.5) / window;
    }
    struct tick_stats s = {amort, bench_quantile(t, (size_t)(n_win * window), 0.99),
                           sum / (n_win * window)};
    free(x);
    free(t);
    free(ph);
    return s;
}

static struct tick_stats
run_ticks(struct engine *eng, int n_in, int n_ticks, double in_scale, double in_rate, struct rng *r)
{
    return run_ticks_w(eng, n_in, n_ticks, in_scale, in_rate, 1, r);
}

/* The same tick in PyTorch eager (tests/bench/torch_tick.py), when python3-torch is
 * installed (make bench-deps); its median in microseconds, or -1. blas gets the BLAS
 * torch loaded. */
static double
torch_tick_us(int N, int threads, double rate, int quick, char *blas, size_t blas_cap)
{
    char cmd[512];
    int ticks = N >= 4096 ? 40 : (quick ? 60 : 300);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import torch' 2>/dev/null && OMP_NUM_THREADS=%d "
             "OPENBLAS_NUM_THREADS=%d /usr/bin/python3 tests/bench/torch_tick.py %d %d %d %g "
             "2>/dev/null",
             threads, threads, N, ticks, threads, rate);
    snprintf(blas, blas_cap, "none");
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1.0;
    char line[512] = {0};
    double us = -1.0;
    if (fgets(line, sizeof line, p)) {
        const char *k = strstr(line, "\"torch_us_p50\": ");
        if (k)
            us = strtod(k + strlen("\"torch_us_p50\": "), NULL);
        const char *b = strstr(line, "\"blas\": \"");
        if (b) {
            b += strlen("\"blas\": \"");
            snprintf(blas, blas_cap, "%.*s", (int)strcspn(b, "\""), b);
        }
    }
    pclose(p);
    return us;
}

/* A naive C tick of the same network, written the straightforward way: one pass per
 * quantity (the forward over every row, the outer product into a gradient buffer, then the
 * step over it and clearing it), float32, no event-driven reads, no fusion. The reference
 * point for what the engine's own kernels buy; it does the same math as tick_dense_es. */
struct naive {
    int n;
    float *w, *acc;             /* [2n][n] */
    float *b, *w_out, *acc_out; /* [n], [n][2], [n][2] */
    float *pre, *v, *i, *d, *g; /* [2n] and [n] */
    float *ex, *ef, *q, *ex_o;  /* [2n], [n], [n], [n] */
    double tick;
};

static void
naive_init(struct naive *nv, int n, struct rng *r)
{
    memset(nv, 0, sizeof *nv);
    nv->n = n;
    size_t P = 2 * (size_t)n * (size_t)n;
    nv->w = calloc(P, sizeof(float));
    nv->acc = calloc(P, sizeof(float));
    nv->b = calloc((size_t)n, sizeof(float));
    nv->w_out = calloc(2 * (size_t)n, sizeof(float));
    nv->acc_out = calloc(2 * (size_t)n, sizeof(float));
    nv->pre = calloc(2 * (size_t)n, sizeof(float));
    nv->ex = calloc(2 * (size_t)n, sizeof(float));
    nv->v = calloc((size_t)n, sizeof(float));
    nv->i = calloc((size_t)n, sizeof(float));
    nv->d = calloc((size_t)n, sizeof(float));
    nv->g = calloc((size_t)n, sizeof(float));
    nv->ef = calloc((size_t)n, sizeof(float));
    nv->q = calloc((size_t)n, sizeof(float));
    nv->ex_o = calloc((size_t)n, sizeof(float));
    for (size_t k = 0; k < P; k++)
        nv->w[k] = (float)(rng_normal(r) * sqrt(2.0 / (2.0 * n)));
    for (int o = 0; o < n; o++)
        nv->b[o] = 0.9f;
    for (size_t k = 0; k < 2 * (size_t)n; k++)
        nv->w_out[k] = (float)(rng_normal(r) * sqrt(2.0 / n));
}

static void
naive_free(struct naive *nv)
{
    float **all[] = {&nv->w, &nv->acc, &nv->b, &nv->w_out, &nv->acc_out, &nv->pre, &nv->ex,
                     &nv->v, &nv->i,   &nv->d, &nv->g,     &nv->ef,      &nv->q,   &nv->ex_o};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        free(*all[k]);
        *all[k] = NULL;
    }
}

static void
naive_tick(struct naive *nv, const float *x, const float *tgt)
{
    const int n = nv->n;
    const float alpha = (float)exp(-1e-3 / 2e-2), lam = 0.9f, lr = 1e-5f;
    memcpy(nv->pre, x, (size_t)n * sizeof(float));
    /* forward: every row of W */
    for (int o = 0; o < n; o++)
        nv->i[o] = nv->b[o];
    for (int k = 0; k < 2 * n; k++) {
        const float *row = nv->w + (size_t)k * n;
        float xk = nv->pre[k];
        for (int o = 0; o < n; o++)
            nv->i[o] += xk * row[o];
    }
    /* LIF (soft reset, relu surrogate 0.3 (1 - |u|)) */
    float out[2] = {0.0f, 0.0f};
    for (int o = 0; o < n; o++) {
        float u_old = nv->v[o] - 1.0f, s_old = u_old > 0.0f ? 1.0f : 0.0f;
        float so = 1.0f - fabsf(u_old);
        nv->d[o] = alpha * (1.0f - 0.3f * (so > 0.0f ? so : 0.0f));
        nv->v[o] = nv->i[o] + (nv->v[o] - s_old - nv->i[o]) * alpha;
        float u = nv->v[o] - 1.0f, sn = 1.0f - fabsf(u);
        nv->g[o] = 0.3f * (sn > 0.0f ? sn : 0.0f); /* surrogate, times dL/ds below */
        nv->pre[n + o] = u > 0.0f ? 1.0f : 0.0f;
    }
    for (int o = 0; o < n; o++)
        for (int c = 0; c < 2; c++)
            out[c] += nv->pre[n + o] * nv->w_out[2 * o + c];
    float dl[2] = {out[0] - tgt[0], out[1] - tgt[1]};
    double cc = nv->tick < 1000 ? 1.0 - pow(0.9, nv->tick + 1) : 1.0;
    for (int o = 0; o < n; o++) {
        nv->g[o] *= nv->w_out[2 * o] * dl[0] + nv->w_out[2 * o + 1] * dl[1];
        nv->ef[o] = lam * nv->d[o] * nv->ef[o] + (1.0f - lam) * (1.0f - alpha);
        nv->q[o] = nv->g[o] * nv->ef[o] / (float)cc;
    }
    for (int k = 0; k < 2 * n; k++)
        nv->ex[k] = lam * nv->ex[k] + nv->pre[k];
    /* the gradient: one pass over the accumulator */
    for (int k = 0; k < 2 * n; k++) {
        float *arow = nv->acc + (size_t)k * n, ek = nv->ex[k];
        for (int o = 0; o < n; o++)
            arow[o] += ek * nv->q[o];
    }
    for (int o = 0; o < n; o++) {
        nv->ex_o[o] = lam * nv->ex_o[o] + nv->pre[n + o];
        for (int c = 0; c < 2; c++)
            nv->acc_out[2 * o + c] += nv->ex_o[o] * dl[c] * (1.0f - lam) / (float)cc;
    }
    /* the step: one more pass over W and the accumulator, which it clears */
    size_t P = 2 * (size_t)n * (size_t)n;
    for (size_t k = 0; k < P; k++) {
        nv->w[k] -= lr * nv->acc[k];
        nv->acc[k] = 0.0f;
    }
    for (int o = 0; o < n; o++)
        nv->b[o] -= lr * nv->q[o];
    for (size_t k = 0; k < 2 * (size_t)n; k++) {
        nv->w_out[k] -= lr * nv->acc_out[k];
        nv->acc_out[k] = 0.0f;
    }
    nv->tick += 1.0;
}

static double
naive_tick_us(int N, int n_ticks, double in_rate, struct rng *r)
{
    struct naive nv;
    naive_init(&nv, N, r);
    float *x = malloc(sizeof(float) * (size_t)N);
    double *t = malloc(sizeof(double) * (size_t)n_ticks);
    float tgt[2];
    for (int k = 0; k < n_ticks + n_ticks / 5; k++) {
        for (int i = 0; i < N; i++)
            x[i] = rng_uniform(r) < in_rate ? 1.0f : 0.0f;
        tgt[0] = (float)rng_uniform(r);
        tgt[1] = (float)rng_uniform(r);
        double t0 = bench_now();
        naive_tick(&nv, x, tgt);
        if (k >= n_ticks / 5)
            t[k - n_ticks / 5] = 1e6 * (bench_now() - t0);
    }
    double p50 = bench_quantile(t, (size_t)n_ticks, 0.5);
    free(x);
    free(t);
    naive_free(&nv);
    return p50;
}

/* The figures of the summary table, from this one run (0: not measured). */
struct summary {
    double dense4096_bound_x[2]; /* N = 4096: naive bound / tick, defer 1 and 16 */
    double dense256_us[2];       /* N = 256: tick, defer 1 and 16 */
    double torch256_us;          /* N = 256: torch eager, 1 thread */
    double fly_tps[2][2];        /* fly-scale ticks/s [1, 2 threads][immediate, deferred] */
    double fly_bps[2];           /* fly-scale bytes per synapse: immediate, deferred */
    double run_x[2];             /* etraced run over fused, defer 1 and 16 */
};

/* The input neurons' firing probability in the dense rows (the hidden fires at its own
 * rate, about the same with these weights). */
#define DENSE_IN_RATE 0.07

static void
dense_bench(FILE *out, const struct bench_machine *mc, const char *dir, int N, int d_rtrl,
            int defer, int with_baselines, int quick, struct summary *sum)
{
    char text[4096], path[4200], defer_txt[64] = "";
    if (defer > 1)
        snprintf(defer_txt, sizeof defer_txt, "  defer: %d\n", defer);
    snprintf(text, sizeof text,
             "name: bench_dense\n"
             "dt: 1.0e-3\n"
             "seed: 3\n"
             "inputs:\n  - {name: x, size: %d}\n"
             "cells:\n"
             "  - {name: hidden, model: lif, size: %d, params: {tau: 2.0e-2}}\n"
             "  - {name: out, model: linear, size: 2}\n"
             "projections:\n"
             "  - {name: w_rec, from: [x, hidden], to: hidden.i, weight: {init: kaiming_normal, "
             "scale: 1.0}, bias: {init: constant, value: 1.8}}\n"
             "  - {name: w_out, from: hidden, to: out, weight: {init: kaiming_normal}}\n"
             "readouts:\n  - {name: y, cell: out}\n"
             "learning:\n  algorithm: %s\n  decay_or_rank: 0.9\n  signal: target\n"
             "  optimizer: {kind: sgd, lr: 1.0e-5}\n%s",
             N, N, d_rtrl ? "d_rtrl" : "es_d_rtrl", defer_txt);
    snprintf(path, sizeof path, "%s/dense_%d_%d_%d.yaml", dir, N, d_rtrl, defer);
    struct engine *eng = compile_text(text, path);
    if (!eng)
        return;
    struct engine_param_view v;
    engine_param(eng, 0, &v);
    double P = (double)v.count; /* I * O of the recurrent weight */
    double K = 1.0;
    /* The naive bound: W read (forward) and read + written (update), 12 bytes per weight
     * (float); D-RTRL also reads and writes its K traces per weight; ES reads and writes
     * its I + K*O trace values. */
    double bytes = 12.0 * P * sizeof(real) / 4.0;
    if (d_rtrl)
        bytes += 2.0 * K * P * sizeof(real);
    else
        bytes += 2.0 * ((double)v.in_size + K * (double)v.out_size) * sizeof(real);
    double ws = P * sizeof(real) * (d_rtrl ? 2.0 : 1.0);
    double bw = bench_triad_bw((size_t)ws);
    double bound_us = 1e6 * bytes / bw;
    struct rng r;
    rng_seed(&r, 11, "bench");
    int n_ticks = (int)fmin(3000.0, fmax(200.0, 4e8 / (P * (d_rtrl ? 3.0 : 1.0))));
    if (quick)
        n_ticks = n_ticks / 10 + 20;
    run_ticks(eng, N, n_ticks / 5 + 10, 1.0, DENSE_IN_RATE, &r); /* warm-up */
    engine_cell_rate(eng, 0);
    if (n_ticks < 20 * defer)
        n_ticks = 20 * defer; /* at least 20 windows of r ticks */
    struct tick_stats s = run_ticks_w(eng, N, n_ticks, 1.0, DENSE_IN_RATE, defer, &r);
    double rate = engine_cell_rate(eng, 0);
    /* The algorithmic minimum: the rows of the pre-synaptic neurons that fired (inputs and
     * hidden) read once by the forward, W read and written once per flush of the deferred
     * steps (every tick without deferral), the traces. D-RTRL cannot defer: its traces are
     * per weight. */
    double row_frac = 0.5 * (DENSE_IN_RATE + rate);
    double min_bytes = row_frac * P * sizeof(real);
    if (d_rtrl)
        min_bytes += 2.0 * P * sizeof(real) + 2.0 * K * P * sizeof(real);
    else
        min_bytes += 2.0 * P * sizeof(real) / (defer > 1 ? defer : 1) +
                     2.0 * ((double)v.in_size + K * (double)v.out_size) * sizeof(real);
    double min_us = 1e6 * min_bytes / bw;
    const char *level = bench_memory_level(mc, P * sizeof(real));
    char name[64];
    snprintf(name, sizeof name, "%s%s", d_rtrl ? "tick_dense_d_rtrl" : "tick_dense_es",
             defer > 1 ? "_defer" : "");
    double naive_us = -1.0, torch1 = -1.0, torch2 = -1.0;
    char blas[64] = "none";
    if (with_baselines && !d_rtrl) {
        naive_us = naive_tick_us(N, n_ticks, DENSE_IN_RATE, &r);
        if (N <= 1024 || !quick) {
            torch1 = torch_tick_us(N, 1, DENSE_IN_RATE, quick, blas, sizeof blas);
            torch2 = torch_tick_us(N, 2, DENSE_IN_RATE, quick, blas, sizeof blas);
        }
    }
    printf("%-24s N=%-5d r=%-3d tick %9.2f us (amortised over r) p99 %9.2f us | naive bound (12 "
           "B/w) %9.2f us: "
           "x%.2f faster | minimum %9.2f us (%.2f B/w) | W in %s, triad there %6.1f GB/s, "
           "firing %.3f\n",
           name, N, defer, s.p50_us, s.p99_us, bound_us, bound_us / s.p50_us, min_us, min_bytes / P,
           level, bw / 1e9, rate);
    int slot = defer == 1 ? 0 : defer == 16 ? 1 : -1;
    if (!d_rtrl && slot >= 0 && N == 4096)
        sum->dense4096_bound_x[slot] = bound_us / s.p50_us;
    if (!d_rtrl && slot >= 0 && N == 256)
        sum->dense256_us[slot] = s.p50_us;
    if (!d_rtrl && N == 256 && torch1 > 0)
        sum->torch256_us = torch1;
    if (naive_us > 0)
        printf("%-24s   naive C tick (one pass per quantity) %9.2f us: engine x%.2f faster\n", "",
               naive_us, naive_us / s.p50_us);
    if (torch1 > 0)
        printf("%-24s   torch eager (%s, in-place addr_) 1 thread %9.2f us: engine x%.1f faster; "
               "2 threads %9.2f us: x%.1f\n",
               "", blas, torch1, torch1 / s.p50_us, torch2, torch2 / s.p50_us);
    else if (with_baselines && !d_rtrl)
        printf("%-24s   torch: not installed (make bench-deps)\n", "");
    if (out) {
        fprintf(out,
                "{\"bench\": \"%s\", \"n\": %d, \"defer\": %d, \"real\": \"%s\", "
                "\"tick_us_p50\": %.3f, \"tick_us_p99\": %.3f, \"bytes_per_tick\": %.0f, "
                "\"triad_gbs\": %.2f, \"w_level\": \"%s\", \"bound_us\": %.3f, "
                "\"ratio_to_bound\": %.3f, \"speedup_vs_bound\": %.3f, \"min_bytes\": %.0f, "
                "\"min_us\": %.3f, \"firing_rate\": %.4f",
                name, N, defer, REAL_NAME, s.p50_us, s.p99_us, bytes, bw / 1e9, level, bound_us,
                s.p50_us / bound_us, bound_us / s.p50_us, min_bytes, min_us, rate);
        if (naive_us > 0)
            fprintf(out, ", \"naive_us_p50\": %.3f, \"speedup_vs_naive\": %.3f", naive_us,
                    naive_us / s.p50_us);
        if (torch1 > 0)
            fprintf(out,
                    ", \"torch_blas\": \"%s\", \"torch_us_p50\": %.3f, \"speedup_vs_torch\": "
                    "%.2f, \"torch2_us_p50\": %.3f, \"speedup_vs_torch2\": %.2f",
                    blas, torch1, torch1 / s.p50_us, torch2, torch2 / s.p50_us);
        fprintf(out, "}\n");
    }
    engine_free(&eng);
}

/* etraced run --learn on against the engine's own fused path on the same model: run
 * compiles the engine with track_grad_sum (it writes grads/), which keeps the float64
 * gradient sums as rank-one pairs on the fused path. Timed over windows that hold a flush
 * of the steps and of the sums. */
static void
run_path_bench(FILE *out, const char *dir, int N, int defer, int quick, struct summary *sum)
{
    char text[4096], path[4200], defer_txt[64] = "";
    if (defer > 1)
        snprintf(defer_txt, sizeof defer_txt, "  defer: %d\n", defer);
    snprintf(text, sizeof text,
             "name: bench_run\ndt: 1.0e-3\nseed: 3\ninputs:\n  - {name: x, size: %d}\n"
             "cells:\n  - {name: hidden, model: lif, size: %d, params: {tau: 2.0e-2}}\n"
             "  - {name: out, model: linear, size: 2}\n"
             "projections:\n  - {name: w_rec, from: [x, hidden], to: hidden.i, weight: {init: "
             "kaiming_normal, scale: 1.0}, bias: {init: constant, value: 1.8}}\n"
             "  - {name: w_out, from: hidden, to: out, weight: {init: kaiming_normal}}\n"
             "readouts:\n  - {name: y, cell: out}\n"
             "learning:\n  algorithm: es_d_rtrl\n  decay_or_rank: 0.9\n  signal: target\n"
             "  optimizer: {kind: sgd, lr: 1.0e-5}\n%s",
             N, N, defer_txt);
    snprintf(path, sizeof path, "%s/run_%d_%d.yaml", dir, N, defer);
    struct engine_opts o_run = {.track_grad_sum = 1};
    struct engine *fast = compile_text(text, path), *run = compile_text_opts(text, path, &o_run);
    if (!fast || !run) {
        engine_free(&fast);
        engine_free(&run);
        return;
    }
    /* a window holds whole flushes of the pairs (every r ticks) and of the sums (every
     * 64 to DEFER_GRAD_PAIRS_MAX = 256 ticks, daemon/engine/defer.h) */
    int window = defer > 1 ? 32 * defer : 256;
    int n_ticks = quick ? 4 * window : 20 * window;
    struct rng ra, rb;
    rng_seed(&ra, 21, "run");
    rng_seed(&rb, 21, "run");
    run_ticks(fast, N, window, 1.0, DENSE_IN_RATE, &ra); /* warm-up */
    run_ticks(run, N, window, 1.0, DENSE_IN_RATE, &rb);
    /* the two in turn, a window each, so that both see the same load: the ratio is the
     * median of the windows' ratios (each window's mean tick) */
    int n_win = n_ticks / window;
    double *tf = malloc(sizeof(double) * (size_t)n_win),
           *tr = malloc(sizeof(double) * (size_t)n_win);
    double *x = malloc(sizeof(double) * (size_t)n_win);
    for (int w = 0; w < n_win; w++) {
        tf[w] = run_ticks_w(fast, N, window, 1.0, DENSE_IN_RATE, window, &ra).mean_us;
        tr[w] = run_ticks_w(run, N, window, 1.0, DENSE_IN_RATE, window, &rb).mean_us;
        x[w] = tr[w] / tf[w];
    }
    double f50 = bench_quantile(tf, (size_t)n_win, 0.5),
           r50 = bench_quantile(tr, (size_t)n_win, 0.5);
    double x50 = bench_quantile(x, (size_t)n_win, 0.5);
    free(tf);
    free(tr);
    free(x);
    printf("%-24s N=%-5d r=%-3d engine fused %9.2f us, as etraced run (grads/ kept) %9.2f us: "
           "x%.2f (median of %d paired windows)\n",
           "run_learn_on", N, defer, f50, r50, x50, n_win);
    sum->run_x[defer == 1 ? 0 : 1] = x50;
    if (out)
        fprintf(out,
                "{\"bench\": \"run_learn_on\", \"n\": %d, \"defer\": %d, \"fused_us_p50\": %.3f, "
                "\"run_us_p50\": %.3f, \"run_over_fused\": %.3f}\n",
                N, defer, f50, r50, x50);
    engine_free(&fast);
    engine_free(&run);
}

/* Silence after activity: the p99 tick time with zero input vs with input. */
static void
silence_bench(FILE *out, const char *dir, int quick)
{
    char text[2048], path[4200];
    int N = 256;
    snprintf(text, sizeof text,
             "name: bench_silence\ndt: 1.0e-3\nseed: 5\ninputs:\n  - {name: x, size: %d}\n"
             "cells:\n  - {name: hidden, model: lif, size: %d}\n  - {name: out, model: "
             "leaky_readout, size: 2}\n"
             "projections:\n  - {name: w_rec, from: [x, hidden], to: hidden.i, weight: {init: "
             "kaiming_normal, scale: 0.5}}\n  - {name: w_out, from: hidden, to: out, weight: "
             "{init: kaiming_normal}}\n"
             "readouts:\n  - {name: y, cell: out}\nlearning:\n  algorithm: es_d_rtrl\n  "
             "decay_or_rank: 0.9\n  optimizer: {kind: adam, lr: 1.0e-4}\n",
             N, N);
    snprintf(path, sizeof path, "%s/silence.yaml", dir);
    struct engine *eng = compile_text(text, path);
    if (!eng)
        return;
    struct rng r;
    rng_seed(&r, 12, "silence");
    int n = quick ? 2000 : 20000; /* 20 s of model time at dt = 1 ms */
    struct tick_stats active = run_ticks(eng, N, n, 1.0, 1.0, &r);
    struct tick_stats silent = run_ticks(eng, N, n, 0.0, 1.0, &r);
    printf("%-18s N=%-5d active p99 %.2f us, silent p99 %.2f us, ratio %.3f\n", "silence", N,
           active.p99_us, silent.p99_us, silent.p99_us / active.p99_us);
    if (out)
        fprintf(out,
                "{\"bench\": \"silence\", \"n\": %d, \"ticks\": %d, \"active_us_p99\": %.3f, "
                "\"silent_us_p99\": %.3f, \"ratio\": %.3f}\n",
                N, n, active.p99_us, silent.p99_us, silent.p99_us / active.p99_us);
    engine_free(&eng);
}

/* This process's resident set, in bytes (VmRSS), or 0 when unreadable. */
static double
rss_bytes(void)
{
    char line[256];
    double kib = 0.0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0.0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kib = atof(line + 6);
    fclose(f);
    return kib * 1024.0;
}

/* The fly-scale row: N LIF neurons fed by N spiking inputs through a sparse weight of
 * in-degree ~per_row (CSR files generated here at run time, never committed), firing at
 * `rate`, a dense linear readout of 2 learning a moving target with ES-D-RTRL and sgd, on
 * `threads` tick threads (daemon/pool.c, as engine.threads). Reports ticks/s and the
 * resident bytes per synapse (engine_resident_bytes / nnz, as etraced compile prints it);
 * returns ticks/s (0 on failure). */
static double
sparse_bench(FILE *out, const char *dir, int64_t N, int64_t per_row, double rate, int defer,
             int drift, int threads, int quick, struct summary *sum)
{
    double tps = 0.0;
    pool_t *pool = pool_new(threads, POOL_MIN_WORK);
    const int64_t nnz = N * per_row;
    int64_t *indptr = malloc(sizeof(int64_t) * (size_t)(N + 1));
    int32_t *indices = malloc(sizeof(int32_t) * (size_t)nnz);
    float *values = malloc(sizeof(float) * (size_t)nnz);
    if (!indptr || !indices || !values)
        goto done;
    struct rng r;
    rng_seed(&r, 13, "sparse");
    for (int64_t i = 0; i <= N; i++)
        indptr[i] = i * per_row;
    for (int64_t i = 0; i < N; i++) {
        /* per_row distinct sorted columns: one per stride block */
        int64_t stride = N / per_row;
        for (int64_t k = 0; k < per_row; k++) {
            indices[i * per_row + k] =
                (int32_t)(k * stride + (int64_t)(rng_uniform(&r) * (double)stride));
            values[i * per_row + k] = (float)(1.0 * rng_normal(&r) / sqrt((double)per_row));
        }
    }
    char p_w[4200], p_i[4200], p_p[4200], path[4200], text[4096], extra[128] = "";
    snprintf(p_w, sizeof p_w, "%s/sp_w.npy", dir);
    snprintf(p_i, sizeof p_i, "%s/sp_w.indices.npy", dir);
    snprintf(p_p, sizeof p_p, "%s/sp_w.indptr.npy", dir);
    struct err e;
    err_clear(&e);
    int64_t s_nnz[1] = {nnz}, s_ptr[1] = {N + 1};
    if (npy_write_file(p_w, NPY_F32, 1, s_nnz, values, &e) ||
        npy_write_file(p_i, NPY_I32, 1, s_nnz, indices, &e) ||
        npy_write_file(p_p, NPY_I64, 1, s_ptr, indptr, &e)) {
        fprintf(stderr, "bench: %s\n", e.msg);
        goto done;
    }
    free(values);
    free(indices);
    values = NULL;
    indices = NULL;
    if (defer > 1)
        snprintf(extra, sizeof extra, "  defer: %d\n", defer);
    if (!drift)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), "stats: {drift: off}\n");
    snprintf(text, sizeof text,
             "name: bench_sparse\ndt: 1.0e-3\ninputs:\n  - {name: s, size: %lld, kind: spikes}\n"
             "cells:\n  - {name: hidden, model: lif, size: %lld, params: {tau: 2.0e-2}}\n"
             "  - {name: out, model: linear, size: 2}\n"
             "projections:\n  - {name: w_in, from: s, to: hidden.i, op: sparse, weight: {file: "
             "sp_w.npy, indices: sp_w.indices.npy, indptr: sp_w.indptr.npy}, bias: {init: "
             "constant, value: 1.2}}\n"
             "  - {name: w_out, from: hidden, to: out, weight: {init: kaiming_normal}}\n"
             "readouts:\n  - {name: y, cell: out}\nlearning:\n  algorithm: es_d_rtrl\n  "
             "decay_or_rank: 0.9\n  signal: target\n  optimizer: {kind: sgd, lr: 1.0e-5}\n%s",
             (long long)N, (long long)N, extra);
    snprintf(path, sizeof path, "%s/sparse.yaml", dir);
    double rss0 = rss_bytes();
    struct engine *eng = compile_text(text, path);
    if (!eng)
        goto done;
    int n_ticks = quick ? 32 : 256; /* a multiple of the r tested */
    int32_t *ev = malloc(sizeof(int32_t) * (size_t)N);
    double *t = malloc(sizeof(double) * (size_t)n_ticks);
    for (int k = 0; k < n_ticks + 20; k++) {
        int n_ev = 0;
        for (int64_t i = 0; i < N; i++)
            if (rng_uniform(&r) < rate)
                ev[n_ev++] = (int32_t)i;
        real tgt[2] = {(real)(0.5 + 0.5 * sin(k * 0.01)), (real)(0.5 - 0.5 * sin(k * 0.01))};
        engine_add_spikes(eng, 0, ev, n_ev);
        engine_set_target(eng, 0, tgt);
        if (k == 20)
            engine_cell_rate(eng, 0);
        double t0 = bench_now();
        pool_tick(pool, eng);
        if (k >= 20)
            t[k - 20] = bench_now() - t0;
    }
    double hid_rate = engine_cell_rate(eng, 0);
    /* amortised over the r-tick cycle: the median of each phase, averaged (as run_ticks_w) */
    int n_win = n_ticks / defer;
    double *ph = malloc(sizeof(double) * (size_t)n_win), p50 = 0.0;
    for (int j = 0; j < defer; j++) {
        for (int w = 0; w < n_win; w++)
            ph[w] = t[w * defer + j];
        p50 += bench_quantile(ph, (size_t)n_win, 0.5) / defer;
    }
    free(ph);
    /* bytes per tick before this work (the immediate path): the rows that fired (values +
     * indices) for the forward pass, and every stored weight read and written by the ES
     * update (values), + its indices */
    double bytes = rate * (double)nnz * (sizeof(real) + 4) + (double)nnz * (2 * sizeof(real) + 4);
    size_t res = engine_resident_bytes(eng);
    double rss = rss_bytes() - rss0; /* what compiling and ticking added to this process */
    const char *name = N >= 100000 ? "fly_sparse_es" : "sparse_es";
    printf("%-24s N=%lld nnz=%lld firing in %.3f hidden %.3f r=%d drift %s threads %d: %.1f "
           "ticks/s (p50 %.2f ms), %.1f B/synapse resident (engine's count; RSS growth %.1f "
           "MiB)\n",
           name, (long long)N, (long long)nnz, rate, hid_rate, defer, drift ? "on" : "off", threads,
           1.0 / p50, 1e3 * p50, (double)res / (double)nnz, rss / 1048576.0);
    tps = 1.0 / p50;
    sum->fly_tps[threads > 1][defer > 1] = tps;
    sum->fly_bps[defer > 1] = (double)res / (double)nnz;
    if (out)
        fprintf(out,
                "{\"bench\": \"%s\", \"neurons\": %lld, \"synapses\": %lld, "
                "\"firing\": %.4f, \"hidden_firing\": %.4f, \"defer\": %d, \"drift\": %s, "
                "\"threads\": %d, "
                "\"ticks_per_s\": %.2f, \"tick_ms_p50\": %.3f, \"immediate_bytes_per_tick\": "
                "%.0f, \"resident_bytes\": %zu, \"bytes_per_synapse\": %.2f, "
                "\"rss_growth_bytes\": %.0f}\n",
                name, (long long)N, (long long)nnz, rate, hid_rate, defer, drift ? "true" : "false",
                threads, 1.0 / p50, 1e3 * p50, bytes, res, (double)res / (double)nnz, rss);
    free(ev);
    free(t);
    engine_free(&eng);
done:
    pool_free(&pool);
    free(indptr);
    free(indices);
    free(values);
    return tps;
}

/* A fly-scale row on 1 then 2 tick threads, and the speed-up measured in this run. */
static void
sparse_pair(FILE *out, const char *dir, int64_t N, double rate, int defer, int drift, int quick,
            struct summary *sum)
{
    /* BENCH_THREADS=1 or 2: that row alone (while tuning) */
    const char *only = getenv("BENCH_THREADS");
    double one = only && atoi(only) != 1
                     ? 0.0
                     : sparse_bench(out, dir, N, 107, rate, defer, drift, 1, quick, sum);
    double two = only && atoi(only) != 2
                     ? 0.0
                     : sparse_bench(out, dir, N, 107, rate, defer, drift, 2, quick, sum);
    printf("%-24s r=%d: 2 threads / 1 thread = %.2fx\n", "fly_sparse_es threads", defer,
           one > 0.0 ? two / one : 0.0);
    if (out && one > 0.0 && two > 0.0)
        fprintf(out,
                "{\"bench\": \"fly_sparse_es_threads\", \"defer\": %d, \"speedup_2_1\": %.3f}\n",
                defer, two / one);
}

/* The speed targets' rows side by side, each ratio from this run (-: not measured). */
static void
print_summary(FILE *out, const struct summary *s)
{
    double torch_x[2];
    for (int k = 0; k < 2; k++)
        torch_x[k] =
            s->dense256_us[k] > 0 && s->torch256_us > 0 ? s->torch256_us / s->dense256_us[k] : 0.0;
    printf("summary (defer 1 | defer 16; 0 = not measured in this run):\n"
           "  dense ES N=4096, tick vs naive bound      x%5.2f | x%5.2f   (target >= 3x)\n"
           "  dense ES N=256, vs torch eager 1 thread   x%5.1f | x%5.1f   (target >= 30x)\n"
           "  fly-scale 140k/15M, 1 thread, ticks/s     %6.1f | %6.1f   (target >= 60)\n"
           "  fly-scale 140k/15M, 2 threads, ticks/s    %6.1f | %6.1f   (target >= 100)\n"
           "  fly-scale bytes per synapse               %6.1f | %6.1f   (target <= 10)\n"
           "  etraced run --learn on over fused, N=1024 x%5.2f | x%5.2f   (target <= 1.2x)\n",
           s->dense4096_bound_x[0], s->dense4096_bound_x[1], torch_x[0], torch_x[1],
           s->fly_tps[0][0], s->fly_tps[0][1], s->fly_tps[1][0], s->fly_tps[1][1], s->fly_bps[0],
           s->fly_bps[1], s->run_x[0], s->run_x[1]);
    if (out)
        fprintf(out,
                "{\"bench\": \"summary\", \"dense4096_vs_bound\": [%.3f, %.3f], "
                "\"dense256_vs_torch1\": [%.2f, %.2f], \"fly_ticks_per_s\": [%.2f, %.2f], "
                "\"fly_ticks_per_s_2_threads\": [%.2f, %.2f], "
                "\"fly_bytes_per_synapse\": [%.2f, %.2f], \"run_over_fused\": [%.3f, %.3f]}\n",
                s->dense4096_bound_x[0], s->dense4096_bound_x[1], torch_x[0], torch_x[1],
                s->fly_tps[0][0], s->fly_tps[0][1], s->fly_tps[1][0], s->fly_tps[1][1],
                s->fly_bps[0], s->fly_bps[1], s->run_x[0], s->run_x[1]);
}

int
main(int argc, char **argv)
{
    int quick = 0;
    for (int i = 1; i < argc; i++)
        quick |= strcmp(argv[i], "--quick") == 0;
    FILE *out = bench_open_results(argc > 1 && argv[1][0] != '-' ? argc : 1, argv);
    char dir[] = "/tmp/etraced_bench_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    engine_set_fp_env();
    struct bench_machine mc;
    bench_machine(out, &mc);
    struct summary sum;
    memset(&sum, 0, sizeof sum);
    static const int sizes[] = {64, 256, 1024, 4096};
    /* BENCH_ONLY=dense|run|sparse|sparse_immediate|sparse_defer runs one group (while tuning) */
    const char *only = getenv("BENCH_ONLY");
    const char *only_n = getenv("BENCH_N"); /* BENCH_N=4096: that dense size alone */
    for (int k = 0; k < 4 && (!only || !strcmp(only, "dense")); k++) {
        if (only_n && atoi(only_n) != sizes[k])
            continue;
        const char *only_r = getenv("BENCH_R"); /* BENCH_R=16: the rows of that r alone */
        if (!only_r || atoi(only_r) == 1)
            dense_bench(out, &mc, dir, sizes[k], 0, 1, 1, quick, &sum);
        static const int defers[] = {4, 16, 64};
        for (int j = 0; j < 3 && sizes[k] >= 256; j++)
            if (!only_r || atoi(only_r) == defers[j])
                dense_bench(out, &mc, dir, sizes[k], 0, defers[j], 0, quick, &sum);
        if (sizes[k] <= 1024 && !only_r)
            dense_bench(out, &mc, dir, sizes[k], 1, 1, 0, quick, &sum);
    }
    if (!only || !strcmp(only, "run")) {
        run_path_bench(out, dir, 1024, 1, quick, &sum);
        run_path_bench(out, dir, 1024, 16, quick, &sum);
    }
    if (!only)
        silence_bench(out, dir, quick);
    if (only && strcmp(only, "sparse") && strcmp(only, "sparse_defer") &&
        strcmp(only, "sparse_immediate"))
        goto end;
    /* sparse_immediate, sparse_defer: one of the two rows */
    if (!only || strcmp(only, "sparse_defer"))
        sparse_pair(out, dir, quick ? 20000 : 140000, 0.025, 1, 1, quick, &sum);
    /* BENCH_SPARSE_R: the deferred row's r (default 16, what the summary reports) */
    int sparse_r = getenv("BENCH_SPARSE_R") ? atoi(getenv("BENCH_SPARSE_R")) : 16;
    if (!only || strcmp(only, "sparse_immediate"))
        sparse_pair(out, dir, quick ? 20000 : 140000, 0.025, sparse_r > 1 ? sparse_r : 16, 0, quick,
                    &sum);
end:
    print_summary(out, &sum);
    if (out)
        fclose(out);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
