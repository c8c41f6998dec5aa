/* Learning-tick benchmarks (issue 4): a dense recurrent LIF network learning every tick
 * with SGD, next to the bound set by the bytes the rule must move over the triad bandwidth
 * measured at that working-set size; a sparse ES network at 10^5 neurons and 10^7
 * synapses; and silence after activity (no subnormal slowdown).
 * Usage: learn_bench [results.jsonl] [--quick] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"
#include "engine.h"
#include "npy.h"
#include "rng.h"

static struct engine *
compile_text(const char *text, const char *path)
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
    if (engine_compile(d, NULL, &eng, &e)) {
        fprintf(stderr, "bench: %s\n", e.msg);
        model_free(&d, mem_default());
        return NULL;
    }
    return eng;
}

struct tick_stats {
    double p50_us, p99_us, mean_us;
};

/* Runs n ticks with random analog input (scale in_scale) and a target every tick. */
static struct tick_stats
run_ticks(struct engine *eng, int n_in, int n_ticks, double in_scale, struct rng *r)
{
    real *x = malloc(sizeof(real) * (size_t)n_in);
    real tgt[2];
    double *t = malloc(sizeof(double) * (size_t)n_ticks);
    double sum = 0.0;
    for (int k = 0; k < n_ticks; k++) {
        for (int i = 0; i < n_in; i++)
            x[i] = (real)(in_scale * rng_uniform(r));
        tgt[0] = (real)rng_uniform(r);
        tgt[1] = (real)rng_uniform(r);
        engine_set_input(eng, 0, x);
        engine_set_target(eng, 0, tgt);
        double t0 = bench_now();
        engine_tick(eng);
        t[k] = 1e6 * (bench_now() - t0);
        sum += t[k];
    }
    struct tick_stats s = {bench_quantile(t, (size_t)n_ticks, 0.5),
                           bench_quantile(t, (size_t)n_ticks, 0.99), sum / n_ticks};
    free(x);
    free(t);
    return s;
}

/* The same tick in PyTorch eager (tests/bench/torch_tick.py), when python3-torch is
 * installed (make bench-deps); its median in microseconds, or -1. */
static double
torch_tick_us(int N, int quick)
{
    char cmd[512];
    int ticks = N >= 4096 ? 40 : (quick ? 60 : 300);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import torch' 2>/dev/null && "
             "/usr/bin/python3 tests/bench/torch_tick.py %d %d 2>/dev/null",
             N, ticks);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1.0;
    char line[512] = {0};
    double us = -1.0;
    if (fgets(line, sizeof line, p)) {
        const char *k = strstr(line, "\"torch_us_p50\": ");
        if (k)
            us = strtod(k + strlen("\"torch_us_p50\": "), NULL);
    }
    pclose(p);
    return us;
}

static void
dense_bench(FILE *out, const char *dir, int N, int d_rtrl, int quick)
{
    char text[4096], path[4200];
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
             "scale: 1.0}, bias: {init: constant, value: 0.9}}\n"
             "  - {name: w_out, from: hidden, to: out, weight: {init: kaiming_normal}}\n"
             "readouts:\n  - {name: y, cell: out}\n"
             "learning:\n  algorithm: %s\n  decay_or_rank: 0.9\n  signal: target\n"
             "  optimizer: {kind: sgd, lr: 1.0e-5}\n",
             N, N, d_rtrl ? "d_rtrl" : "es_d_rtrl");
    snprintf(path, sizeof path, "%s/dense_%d_%d.yaml", dir, N, d_rtrl);
    struct engine *eng = compile_text(text, path);
    if (!eng)
        return;
    struct engine_param_view v;
    engine_param(eng, 0, &v);
    double P = (double)v.count; /* I * O of the recurrent weight */
    double K = 1.0;
    /* Bytes the rule must touch per tick: W read (forward) and read + written (update):
     * 12 per weight; D-RTRL also reads and writes its K traces per weight; ES reads and
     * writes its I + K*O trace values. */
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
    run_ticks(eng, N, n_ticks / 5 + 10, 1.0, &r); /* warm-up */
    struct tick_stats s = run_ticks(eng, N, n_ticks, 1.0, &r);
    double rate = engine_cell_rate(eng, 0);
    const char *name = d_rtrl ? "tick_dense_d_rtrl" : "tick_dense_es";
    double torch_us = d_rtrl ? -1.0 : torch_tick_us(N, quick);
    char torch_txt[64] = "";
    if (torch_us > 0)
        snprintf(torch_txt, sizeof torch_txt, "  torch %9.2f us  x%.1f", torch_us,
                 torch_us / s.p50_us);
    printf("%-18s N=%-5d p50 %9.2f us  p99 %9.2f us  bound %9.2f us  ratio %5.2f  "
           "triad %6.1f GB/s  rate %.3f%s\n",
           name, N, s.p50_us, s.p99_us, bound_us, s.p50_us / bound_us, bw / 1e9, rate, torch_txt);
    if (out) {
        fprintf(out,
                "{\"bench\": \"%s\", \"n\": %d, \"real\": \"%s\", \"tick_us_p50\": %.3f, "
                "\"tick_us_p99\": %.3f, \"bytes_per_tick\": %.0f, \"triad_gbs\": %.2f, "
                "\"bound_us\": %.3f, \"ratio_to_bound\": %.3f, \"firing_rate\": %.4f",
                name, N, REAL_NAME, s.p50_us, s.p99_us, bytes, bw / 1e9, bound_us,
                s.p50_us / bound_us, rate);
        if (torch_us > 0)
            fprintf(out, ", \"torch_us_p50\": %.3f, \"speedup_vs_torch\": %.2f", torch_us,
                    torch_us / s.p50_us);
        fprintf(out, "}\n");
    }
    engine_free(&eng);
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
    struct tick_stats active = run_ticks(eng, N, n, 1.0, &r);
    struct tick_stats silent = run_ticks(eng, N, n, 0.0, &r);
    printf("%-18s N=%-5d active p99 %.2f us, silent p99 %.2f us, ratio %.3f\n", "silence", N,
           active.p99_us, silent.p99_us, silent.p99_us / active.p99_us);
    if (out)
        fprintf(out,
                "{\"bench\": \"silence\", \"n\": %d, \"ticks\": %d, \"active_us_p99\": %.3f, "
                "\"silent_us_p99\": %.3f, \"ratio\": %.3f}\n",
                N, n, active.p99_us, silent.p99_us, silent.p99_us / active.p99_us);
    engine_free(&eng);
}

/* Sparse ES-D-RTRL: 10^5 neurons, 10^7 synapses (CSR files written here), spikes input
 * firing at 5%. */
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

static void
sparse_bench(FILE *out, const char *dir, int quick)
{
    const int64_t N = quick ? 20000 : 100000, per_row = 100;
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
            values[i * per_row + k] = (float)(0.3 * rng_normal(&r) / sqrt((double)per_row));
        }
    }
    char p_w[4200], p_i[4200], p_p[4200], path[4200], text[4096];
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
    snprintf(text, sizeof text,
             "name: bench_sparse\ndt: 1.0e-3\ninputs:\n  - {name: s, size: %lld, kind: spikes}\n"
             "cells:\n  - {name: hidden, model: lif, size: %lld}\n  - {name: out, model: linear, "
             "size: 2}\n"
             "projections:\n  - {name: w_in, from: s, to: hidden.i, op: sparse, weight: {file: "
             "sp_w.npy, indices: sp_w.indices.npy, indptr: sp_w.indptr.npy}}\n"
             "  - {name: w_out, from: hidden, to: out, weight: {init: kaiming_normal}}\n"
             "readouts:\n  - {name: y, cell: out}\nlearning:\n  algorithm: es_d_rtrl\n  "
             "decay_or_rank: 0.9\n  optimizer: {kind: sgd, lr: 1.0e-5}\n",
             (long long)N, (long long)N);
    snprintf(path, sizeof path, "%s/sparse.yaml", dir);
    double rss0 = rss_bytes();
    struct engine *eng = compile_text(text, path);
    if (!eng)
        goto done;
    int n_ticks = quick ? 20 : 100;
    int32_t *ev = malloc(sizeof(int32_t) * (size_t)N);
    double *t = malloc(sizeof(double) * (size_t)n_ticks);
    real tgt[2] = {R(0.5), R(0.5)};
    for (int k = 0; k < n_ticks; k++) {
        int n_ev = 0;
        for (int64_t i = 0; i < N; i++)
            if (rng_uniform(&r) < 0.05)
                ev[n_ev++] = (int32_t)i;
        engine_add_spikes(eng, 0, ev, n_ev);
        engine_set_target(eng, 0, tgt);
        double t0 = bench_now();
        engine_tick(eng);
        t[k] = bench_now() - t0;
    }
    double p50 = bench_quantile(t, (size_t)n_ticks, 0.5);
    /* bytes per tick: the rows of the 5% that fired (values + indices) for the forward
     * pass, and every nonzero read and written by the ES update (values), + its indices */
    double bytes = 0.05 * (double)nnz * (sizeof(real) + 4) + (double)nnz * (2 * sizeof(real) + 4);
    size_t res = engine_resident_bytes(eng);
    double rss = rss_bytes() - rss0; /* what compiling and ticking added to this process */
    printf("%-18s N=%lld nnz=%lld: %.1f ticks/s (p50 %.2f ms), ~%.0f MB/tick, resident %.1f MiB "
           "(engine's count; measured RSS growth %.1f MiB)\n",
           "sparse_es", (long long)N, (long long)nnz, 1.0 / p50, 1e3 * p50, bytes / 1e6,
           (double)res / 1048576.0, rss / 1048576.0);
    if (out)
        fprintf(out,
                "{\"bench\": \"sparse_es\", \"neurons\": %lld, \"synapses\": %lld, "
                "\"firing\": 0.05, \"ticks_per_s\": %.2f, \"tick_ms_p50\": %.3f, "
                "\"bytes_per_tick\": %.0f, \"resident_bytes\": %zu, \"rss_growth_bytes\": "
                "%.0f}\n",
                (long long)N, (long long)nnz, 1.0 / p50, 1e3 * p50, bytes, res, rss);
    free(ev);
    free(t);
    engine_free(&eng);
done:
    free(indptr);
    free(indices);
    free(values);
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
    static const int sizes[] = {64, 256, 1024, 4096};
    for (int k = 0; k < 4; k++) {
        dense_bench(out, dir, sizes[k], 0, quick);
        if (sizes[k] <= 1024)
            dense_bench(out, dir, sizes[k], 1, quick);
    }
    silence_bench(out, dir, quick);
    sparse_bench(out, dir, quick);
    if (out)
        fclose(out);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
