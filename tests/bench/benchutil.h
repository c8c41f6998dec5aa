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

/* Opens the JSON lines file for appending (path from argv[1] or build/bench/results.jsonl). */
FILE *bench_open_results(int argc, char **argv);

#endif
