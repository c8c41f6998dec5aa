/* Benchmark: the compiled cell program (expr.c, all derivatives) against the hand-written
 * kernels (tests/support/handcell.c) for lif, alif and gru at 10^3, 10^5 and 10^6 neurons.
 * Both run in the same process on the same inputs, interleaved sample by sample; each
 * figure is the median over SAMPLES samples of the time per neuron-update. Prints a table
 * and appends one JSON object per line to build/bench/results.jsonl (or argv[1]).
 * Goal: compiled / hand <= 2.0. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cell.h"
#include "expr.h"
#include "handcell.h"
#include "mem.h"
#include "model.h"
#include "real.h"

enum { SAMPLES = 21 };

typedef void handcell_fn(size_t n, real *restrict h_new, real *restrict out, real *restrict jac,
                         real *restrict dslot, real *restrict dout, const real *restrict h_old,
                         const real *restrict slot, const struct handcell_params *h);

struct bench_cell {
    const char *model;
    handcell_fn *hand;
    double lo[6], hi[6]; /* input ranges: states, then slots */
};

static const struct bench_cell cells[] = {
    {"lif", handcell_lif, {-1.0, -1.0, -0.2}, {2.0, 1.0, 0.2}},
    {"alif", handcell_alif, {-1.0, 0.0, -1.0, -0.2}, {3.0, 1.0, 1.0, 0.2}},
    {"gru", handcell_gru, {-1.0, -3.0, -3.0, -3.0, -3.0}, {1.0, 3.0, 3.0, 3.0, 3.0}},
};

static const size_t sizes[] = {1000, 100000, 1000000};

static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static real *
alloc_real(size_t n)
{
    size_t bytes = (n * sizeof(real) + 63) & ~(size_t)63;
    real *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) {
        fprintf(stderr, "cell_bench: out of memory\n");
        exit(1);
    }
    memset(p, 0, bytes);
    return p;
}

static uint64_t rng = 88172645463325252ull;

static double
urand(double lo, double hi)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (hi - lo) * ((double)(rng >> 11) * (1.0 / 9007199254740992.0));
}

/* Ensures the directory of path exists (one level, as build/bench). */
static void
make_parent_dirs(const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) && errno != EEXIST)
            fprintf(stderr, "cell_bench: mkdir %s: %s\n", buf, strerror(errno));
        *p = '/';
    }
}

int
main(int argc, char **argv)
{
    const char *out_path = argc > 1 ? argv[1] : "build/bench/results.jsonl";
    make_parent_dirs(out_path);
    FILE *jf = fopen(out_path, "a");
    if (!jf) {
        fprintf(stderr, "cell_bench: cannot open %s: %s\n", out_path, strerror(errno));
        return 1;
    }
    const struct mem *m = mem_default();
    printf("cell_bench (real = %s): ns per neuron-update with all derivatives, median of %d\n",
           REAL_NAME, SAMPLES);
    printf("%-6s %9s %6s %12s %12s %8s\n", "cell", "n", "instr", "compiled", "hand", "ratio");
    int worst_ok = 1;
    for (size_t ci = 0; ci < sizeof cells / sizeof cells[0]; ci++) {
        const struct bench_cell *bc = &cells[ci];
        struct model_cell c;
        memset(&c, 0, sizeof c);
        c.name = mem_strdup(m, bc->model);
        if (!c.name || cell_expand(cell_builtin_find(bc->model), 0, m, &c)) {
            fprintf(stderr, "cell_bench: cannot expand %s\n", bc->model);
            return 1;
        }
        struct expr_prog *p = NULL;
        struct expr_error e;
        if (expr_prog_compile(&c, 1.0e-3, m, &p, &e)) {
            fprintf(stderr, "cell_bench: %s: %s\n", bc->model, e.msg);
            return 1;
        }
        struct handcell_params hp;
        if (handcell_setup(&hp, &c, 1.0e-3)) {
            fprintf(stderr, "cell_bench: %s: unsupported surrogate\n", bc->model);
            return 1;
        }
        /* The instruction count, from the first line of the dump. */
        char head[128];
        expr_prog_dump(p, head, sizeof head);
        int n_instr = 0;
        sscanf(head, "; values and derivatives: %d", &n_instr);
        int K = c.n_states, S = c.n_slots;
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            size_t n = sizes[si];
            real *h_old = alloc_real(n * (size_t)K), *slot = alloc_real(n * (size_t)S);
            real *h_new = alloc_real(n * (size_t)K), *out = alloc_real(n);
            real *jac = alloc_real(n * (size_t)(K * K)), *dslot = alloc_real(n * (size_t)(K * S));
            real *dout = alloc_real(n * (size_t)K);
            void *scratch = aligned_alloc(64, (expr_prog_scratch_bytes(p) + 63) & ~(size_t)63);
            if (!scratch)
                return 1;
            for (int k = 0; k < K; k++)
                for (size_t o = 0; o < n; o++)
                    h_old[(size_t)k * n + o] = (real)urand(bc->lo[k], bc->hi[k]);
            for (int s = 0; s < S; s++)
                for (size_t o = 0; o < n; o++)
                    slot[(size_t)s * n + o] = (real)urand(bc->lo[K + s], bc->hi[K + s]);
            /* Each sample lasts at least ~0.2 ms so the clock's resolution does not matter. */
            int inner = (int)(200000 / n) + 1;
            double tc[SAMPLES], th[SAMPLES];
            for (int w = 0; w < 2; w++) {
                expr_prog_eval(p, n, h_new, out, jac, dslot, dout, h_old, slot, 1, scratch);
                bc->hand(n, h_new, out, jac, dslot, dout, h_old, slot, &hp);
            }
            for (int smp = 0; smp < SAMPLES; smp++) {
                double t0 = now_ns();
                for (int r = 0; r < inner; r++)
                    expr_prog_eval(p, n, h_new, out, jac, dslot, dout, h_old, slot, 1, scratch);
                double t1 = now_ns();
                for (int r = 0; r < inner; r++)
                    bc->hand(n, h_new, out, jac, dslot, dout, h_old, slot, &hp);
                double t2 = now_ns();
                tc[smp] = (t1 - t0) / ((double)inner * (double)n);
                th[smp] = (t2 - t1) / ((double)inner * (double)n);
            }
            qsort(tc, SAMPLES, sizeof tc[0], cmp_double);
            qsort(th, SAMPLES, sizeof th[0], cmp_double);
            double c_ns = tc[SAMPLES / 2], h_ns = th[SAMPLES / 2], ratio = c_ns / h_ns;
            if (ratio > 2.0)
                worst_ok = 0;
            printf("%-6s %9zu %6d %12.3f %12.3f %8.2f\n", bc->model, n, n_instr, c_ns, h_ns, ratio);
            fprintf(jf,
                    "{\"bench\": \"cell_compiled_vs_hand\", \"cell\": \"%s\", \"n\": %zu, "
                    "\"real\": \"%s\", \"compiled_ns_per_neuron\": %.4f, "
                    "\"hand_ns_per_neuron\": %.4f, \"ratio\": %.3f}\n",
                    bc->model, n, REAL_NAME, c_ns, h_ns, ratio);
            free(h_old);
            free(slot);
            free(h_new);
            free(out);
            free(jac);
            free(dslot);
            free(dout);
            free(scratch);
        }
        expr_prog_free(&p, m);
        cell_fini(&c, m);
    }
    fclose(jf);
    printf("goal ratio <= 2.0: %s\n", worst_ok ? "met" : "missed");
    return 0;
}
