/* Shared pieces of the benchmarks: a monotonic clock, percentiles, the triad bandwidth
 * at a given working-set size, and appending JSON lines. Benchmarks only (they read the
 * clock; the engine never does). */
#ifndef ETRACE_BENCHUTIL_H
#define ETRACE_BENCHUTIL_H

#include <stddef.h>
#include <stdio.h>

/* Monotonic seconds. */
double bench_now(void);

/* The q-quantile (0..1) of n samples (sorts them in place). */
double bench_quantile(double *v, size_t n, double q);

/* Triad bandwidth a = b + s*c in bytes/s over three float arrays totalling about
 * ws_bytes (at least 48 KiB), best of several repetitions lasting >= 0.1 s overall.
 * Counts 3 * 4 bytes per element (two reads, one write). */
double bench_triad_bw(size_t ws_bytes);

/* The same over n_threads threads streaming at once, each over its own ws_bytes / n_threads
 * (RAM bandwidth of the whole machine when ws_bytes is far above the last cache level). */
double bench_triad_bw_threads(size_t ws_bytes, int n_threads);

/* The machine a benchmark ran on, measured in the run. */
struct bench_machine {
    char cpu[160];         /* /proc/cpuinfo model name */
    int cpus;              /* online CPUs */
    double cache_bytes[3]; /* L1d, L2, L3 of cpu0 (0 when unknown) */
    double triad1_gbs;     /* RAM triad, 1 thread */
    double triad2_gbs;     /* RAM triad, 2 threads */
};

/* Measures and prints the machine (stdout, and one JSON line to out when non-NULL). */
void bench_machine(FILE *out, struct bench_machine *m);

/* The memory level that holds `bytes` of hot data: "L2", "L3" or "RAM". */
const char *bench_memory_level(const struct bench_machine *m, double bytes);

/* Opens the JSON lines file for appending (path from argv[1] or build/bench/results.jsonl). */
FILE *bench_open_results(int argc, char **argv);

#endif
