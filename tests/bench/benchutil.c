/* Benchmark helpers: clock, quantiles, triad bandwidth, the machine. */
#include "benchutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

/* One thread's share of a multi-threaded triad: its own arrays, first touched by itself. */
struct triad_job {
    size_t n;
    pthread_barrier_t *go;
    double seconds; /* the best repetition's time */
};

static void *
triad_thread(void *arg)
{
    struct triad_job *j = arg;
    size_t bytes = (j->n * sizeof(float) + 63) / 64 * 64;
    float *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes),
          *c = aligned_alloc(64, bytes);
    j->seconds = 1e30;
    if (a && b && c)
        for (size_t i = 0; i < j->n; i++) {
            a[i] = 0.0f;
            b[i] = (float)i * 1e-6f;
            c[i] = 1.0f;
        }
    for (int r = 0; r < 8; r++) {
        pthread_barrier_wait(j->go); /* every thread streams at the same time */
        double t0 = bench_now();
        if (a && b && c) {
            float s = 1.0f + (float)r * 1e-9f;
            for (size_t i = 0; i < j->n; i++)
                a[i] = b[i] + s * c[i];
            __asm__ volatile("" : : "r"(a) : "memory");
        }
        double dt = bench_now() - t0;
        if (dt < j->seconds)
            j->seconds = dt;
    }
    free(a);
    free(b);
    free(c);
    return NULL;
}

double
bench_triad_bw_threads(size_t ws_bytes, int n_threads)
{
    enum { MAX_THREADS = 64 };
    if (n_threads < 1 || n_threads > MAX_THREADS)
        return 0.0;
    pthread_t th[MAX_THREADS];
    struct triad_job jobs[MAX_THREADS];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)n_threads);
    size_t n = ws_bytes / (3 * sizeof(float) * (size_t)n_threads);
    int started = 0;
    for (int t = 0; t < n_threads; t++) {
        jobs[t] = (struct triad_job){.n = n, .go = &go};
        if (pthread_create(&th[t], NULL, triad_thread, &jobs[t]))
            break;
        started++;
    }
    if (started < n_threads) { /* cannot happen on a sane system; never hang on it */
        fprintf(stderr, "bench: cannot start %d triad threads\n", n_threads);
        exit(1);
    }
    double slowest = 0.0;
    for (int t = 0; t < n_threads; t++) {
        pthread_join(th[t], NULL);
        slowest = jobs[t].seconds > slowest ? jobs[t].seconds : slowest;
    }
    pthread_barrier_destroy(&go);
    return (double)(3 * n * sizeof(float)) * n_threads / slowest;
}

/* The first value of "key" in /proc/cpuinfo, into buf. */
static void
cpuinfo(const char *key, char *buf, size_t cap)
{
    char line[512];
    snprintf(buf, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, key, strlen(key)) || !colon)
            continue;
        colon += 1 + (colon[1] == ' ');
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(buf, cap, "%s", colon);
        break;
    }
    fclose(f);
}

/* The first line of a sysfs file into buf ("" when absent). */
static void
sysfs_line(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (fgets(buf, (int)cap, f))
        buf[strcspn(buf, "\n")] = '\0';
    fclose(f);
}

void
bench_machine(FILE *out, struct bench_machine *m)
{
    memset(m, 0, sizeof *m);
    cpuinfo("model name", m->cpu, sizeof m->cpu);
    m->cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    char caches[512] = "";
    size_t used = 0;
    for (int i = 0; i < 8; i++) {
        char p[128], level[32], type[32], size[32];
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        sysfs_line(p, level, sizeof level);
        if (!level[0])
            break;
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        sysfs_line(p, type, sizeof type);
        snprintf(p, sizeof p, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        sysfs_line(p, size, sizeof size);
        if (!strcmp(type, "Instruction"))
            continue;
        long kib = atol(size) * (strchr(size, 'M') ? 1024 : 1);
        int lv = atoi(level);
        if (lv >= 1 && lv <= 3)
            m->cache_bytes[lv - 1] = (double)kib * 1024.0;
        used += (size_t)snprintf(caches + used, sizeof caches - used, "%sL%s %s", used ? ", " : "",
                                 level, size);
        if (used >= sizeof caches)
            break;
    }
    /* RAM: the arrays far larger than the last cache level */
    size_t ram_ws = m->cache_bytes[2] > 0 ? (size_t)(8 * m->cache_bytes[2]) : (size_t)256 << 20;
    if (ram_ws < ((size_t)64 << 20))
        ram_ws = (size_t)64 << 20;
    m->triad1_gbs = bench_triad_bw_threads(ram_ws, 1) / 1e9;
    m->triad2_gbs = bench_triad_bw_threads(ram_ws, 2) / 1e9;
    printf("machine: %s, %d CPUs, caches per core (cpu0) %s; RAM triad %.1f GB/s 1 thread, "
           "%.1f GB/s 2 threads (%zu MiB arrays)\n",
           m->cpu, m->cpus, caches, m->triad1_gbs, m->triad2_gbs, ram_ws >> 20);
    printf("(a shared machine: absolute times are noisy; compare the ratios measured in this "
           "run)\n");
    if (out)
        fprintf(out,
                "{\"bench\": \"machine\", \"cpu\": \"%s\", \"cpus\": %d, \"caches\": \"%s\", "
                "\"l1d_bytes\": %.0f, \"l2_bytes\": %.0f, \"l3_bytes\": %.0f, "
                "\"triad_gbs_1t\": %.2f, \"triad_gbs_2t\": %.2f}\n",
                m->cpu, m->cpus, caches, m->cache_bytes[0], m->cache_bytes[1], m->cache_bytes[2],
                m->triad1_gbs, m->triad2_gbs);
}

const char *
bench_memory_level(const struct bench_machine *m, double bytes)
{
    if (m->cache_bytes[1] > 0 && bytes <= 0.75 * m->cache_bytes[1])
        return "L2";
    if (m->cache_bytes[2] > 0 && bytes <= 0.75 * m->cache_bytes[2])
        return "L3";
    return "RAM";
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
