/* Benchmark helpers: clock, quantiles, triad bandwidth. */
#include "benchutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

double
bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double
bench_quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

double
bench_triad_bw(size_t ws_bytes)
{
    if (ws_bytes < 48 * 1024)
        ws_bytes = 48 * 1024;
    size_t n = ws_bytes / (3 * sizeof(float));
    float *a = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    float *b = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    float *c = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return 0.0;
    }
    for (size_t i = 0; i < n; i++) {
        a[i] = 0.0f;
        b[i] = (float)i * 1e-6f;
        c[i] = 1.0f;
    }
    double best = 1e30, t_start = bench_now();
    int reps = 0;
    size_t inner = 1 + (size_t)(4e6 / (double)n); /* ~4M elements per timing */
    while (bench_now() - t_start < 0.1 || reps < 5) {
        double t0 = bench_now();
        for (size_t r = 0; r < inner; r++) {
            float s = 1.0f + (float)r * 1e-9f;
            for (size_t i = 0; i < n; i++)
                a[i] = b[i] + s * c[i];
            __asm__ volatile("" : : "r"(a) : "memory");
        }
        double dt = (bench_now() - t0) / (double)inner;
        if (dt < best)
            best = dt;
        reps++;
    }
    free(a);
    free(b);
    free(c);
    return (double)(3 * n * sizeof(float)) / best;
}

FILE *
bench_open_results(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "build/bench/results.jsonl";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        mkdir(dir, 0777);
    }
    FILE *f = fopen(path, "a");
    if (!f)
        fprintf(stderr, "bench: cannot append to %s\n", path);
    return f;
}
