/* Tests of daemon/engine/op_dense.c, op_sparse.c, op_elem.c (op.h): the projection kernels.
 *  - sparse forward equals dense forward on the same weights (relative error of DESIGN's
 *    conventions <= 1e-6 in float, 1e-12 in double; the sums run in the same row order,
 *    so in practice they agree bitwise, which is printed);
 *  - the event-driven forward (rows with x == 0 skipped) equals the plain one BITWISE
 *    (memcmp) on spike inputs and on analog inputs with zeros;
 *  - backward kernels against naive loops in double (relative error <= 64 n eps).
 * Randomized: every case prints its seed; ETRACE_SEED=N replays a run. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op.h"
#include "real.h"
#include "../support/testmodel.h"

#if defined(REAL_DOUBLE)
#define SPARSE_DENSE_TOL 1e-12
#else
#define SPARSE_DENSE_TOL 1e-6
#endif

enum { N_TRIALS = 200 };

static uint64_t g_seed;

/* A random CSR pattern over [n_in][n_out] with keep probability p, its values, and the
 * same weights as a dense matrix (zeros elsewhere). */
struct csr {
    int64_t n_in, n_out, nnz;
    int64_t *indptr;  /* [n_in + 1] */
    int32_t *indices; /* [nnz] */
    real *v;          /* [nnz] */
    real *dense;      /* [n_in][n_out] */
};

static void
csr_random(struct csr *c, struct testmodel_rng *r, int64_t n_in, int64_t n_out, double p)
{
    c->n_in = n_in;
    c->n_out = n_out;
    c->indptr = calloc((size_t)n_in + 1, sizeof *c->indptr);
    c->indices = calloc((size_t)(n_in * n_out) + 1, sizeof *c->indices);
    c->v = calloc((size_t)(n_in * n_out) + 1, sizeof *c->v);
    c->dense = calloc((size_t)(n_in * n_out) + 1, sizeof *c->dense);
    assert_non_null(c->indptr);
    assert_non_null(c->indices);
    assert_non_null(c->v);
    assert_non_null(c->dense);
    int64_t k = 0;
    for (int64_t i = 0; i < n_in; i++) {
        c->indptr[i] = k;
        for (int64_t o = 0; o < n_out; o++) {
            if (testmodel_rng_uniform(r) >= p)
                continue;
            real w = (real)testmodel_rng_normal(r);
            c->indices[k] = (int32_t)o;
            c->v[k] = w;
            c->dense[i * n_out + o] = w;
            k++;
        }
    }
    c->indptr[n_in] = k;
    c->nnz = k;
}

static void
csr_free(struct csr *c)
{
    free(c->indptr);
    free(c->indices);
    free(c->v);
    free(c->dense);
}

/* x: spikes with probability rate (kind 0), or analog N(0,1) with zeros at rate
 * 1 - rate (kind 1). */
static void
random_x(struct testmodel_rng *r, int64_t n, real *x, double rate, int analog)
{
    for (int64_t i = 0; i < n; i++) {
        int on = testmodel_rng_uniform(r) < rate;
        x[i] = on ? (analog ? (real)testmodel_rng_normal(r) : R(1.0)) : R(0.0);
    }
}

static int
setup(void **state)
{
    (void)state;
    g_seed = testmodel_seed("op_test", 20240917);
    return 0;
}

static void
test_op_sparse_forward_equals_dense(void **state)
{
    (void)state;
    struct testmodel_rng r;
    double worst = 0.0;
    int n_bitwise = 0;
    for (int t = 0; t < N_TRIALS; t++) {
        testmodel_rng_seed(&r, g_seed + (uint64_t)t);
        int64_t n_in = 1 + (int64_t)(testmodel_rng_uniform(&r) * 80);
        int64_t n_out = 1 + (int64_t)(testmodel_rng_uniform(&r) * 80);
        double p = testmodel_rng_uniform(&r);
        struct csr c;
        csr_random(&c, &r, n_in, n_out, p);
        real *x = calloc((size_t)n_in, sizeof *x);
        real *b = calloc((size_t)n_out, sizeof *b);
        real *yd = calloc((size_t)n_out, sizeof *yd);
        real *ys = calloc((size_t)n_out, sizeof *ys);
        real *yse = calloc((size_t)n_out, sizeof *yse);
        assert_true(x && b && yd && ys && yse);
        int analog = t % 2;
        random_x(&r, n_in, x, analog ? 0.7 : 0.2, analog);
        int with_bias = t % 3 == 0;
        for (int64_t o = 0; o < n_out; o++)
            b[o] = (real)testmodel_rng_normal(&r);
        const real *bias = with_bias ? b : NULL;
        op_dense_forward_plain(n_in, n_out, yd, c.dense, x, bias);
        op_sparse_forward_plain(n_in, n_out, ys, c.indptr, c.indices, c.v, x, bias);
        op_sparse_forward(n_in, n_out, yse, c.indptr, c.indices, c.v, x, bias);
        double err = testmodel_rel_err(n_out, ys, yd);
        double err_e = testmodel_rel_err(n_out, yse, yd);
        if (err > SPARSE_DENSE_TOL || err_e > SPARSE_DENSE_TOL)
            fail_msg("trial %d (seed %llu): sparse vs dense rel err %.3g / %.3g (I=%lld O=%lld "
                     "p=%.2f)",
                     t, (unsigned long long)(g_seed + (uint64_t)t), err, err_e, (long long)n_in,
                     (long long)n_out, p);
        if (err > worst)
            worst = err;
        n_bitwise += memcmp(ys, yd, (size_t)n_out * sizeof *ys) == 0;
        free(x);
        free(b);
        free(yd);
        free(ys);
        free(yse);
        csr_free(&c);
    }
    printf("[op_test] sparse vs dense: worst rel err %.3g over %d trials, %d bitwise equal\n",
           worst, N_TRIALS, n_bitwise);
}

static void
test_op_event_driven_bitwise(void **state)
{
    (void)state;
    struct testmodel_rng r;
    for (int t = 0; t < N_TRIALS; t++) {
        uint64_t seed = g_seed + 1000 + (uint64_t)t;
        testmodel_rng_seed(&r, seed);
        int64_t n_in = 1 + (int64_t)(testmodel_rng_uniform(&r) * 200);
        int64_t n_out = 1 + (int64_t)(testmodel_rng_uniform(&r) * 100);
        struct csr c;
        csr_random(&c, &r, n_in, n_out, 0.05 + 0.95 * testmodel_rng_uniform(&r));
        /* A fully dense matrix too, so every silent row of the dense path has weights. */
        real *wd = calloc((size_t)(n_in * n_out), sizeof *wd);
        real *x = calloc((size_t)n_in, sizeof *x);
        real *b = calloc((size_t)n_out, sizeof *b);
        real *y1 = calloc((size_t)n_out, sizeof *y1);
        real *y2 = calloc((size_t)n_out, sizeof *y2);
        assert_true(wd && x && b && y1 && y2);
        for (int64_t k = 0; k < n_in * n_out; k++)
            wd[k] = (real)testmodel_rng_normal(&r);
        for (int64_t o = 0; o < n_out; o++)
            b[o] = (real)testmodel_rng_normal(&r);
        int analog = t % 4 == 3;
        double rate = analog ? 0.5 : 0.01 + 0.3 * testmodel_rng_uniform(&r);
        random_x(&r, n_in, x, rate, analog);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            const real *bias = with_bias ? b : NULL;
            op_dense_forward(n_in, n_out, y1, wd, x, bias);
            op_dense_forward_plain(n_in, n_out, y2, wd, x, bias);
            if (memcmp(y1, y2, (size_t)n_out * sizeof *y1) != 0)
                fail_msg("dense event-driven != plain, trial %d seed %llu", t,
                         (unsigned long long)seed);
            op_sparse_forward(n_in, n_out, y1, c.indptr, c.indices, c.v, x, bias);
            op_sparse_forward_plain(n_in, n_out, y2, c.indptr, c.indices, c.v, x, bias);
            if (memcmp(y1, y2, (size_t)n_out * sizeof *y1) != 0)
                fail_msg("sparse event-driven != plain, trial %d seed %llu", t,
                         (unsigned long long)seed);
        }
        free(wd);
        free(x);
        free(b);
        free(y1);
        free(y2);
        csr_free(&c);
    }
}

/* The event-driven path is exact also when every input is silent or every one fires. */
static void
test_op_event_driven_all_or_none(void **state)
{
    (void)state;
    enum { NI = 37, NO = 19 };
    static real w[NI * NO], x[NI], b[NO], y1[NO], y2[NO];
    struct testmodel_rng r;
    testmodel_rng_seed(&r, g_seed + 7);
    for (int k = 0; k < NI * NO; k++)
        w[k] = (real)testmodel_rng_normal(&r);
    for (int o = 0; o < NO; o++)
        b[o] = (real)testmodel_rng_normal(&r);
    for (int fill = 0; fill < 2; fill++) {
        for (int i = 0; i < NI; i++)
            x[i] = fill ? R(1.0) : R(0.0);
        op_dense_forward(NI, NO, y1, w, x, b);
        op_dense_forward_plain(NI, NO, y2, w, x, b);
        assert_memory_equal(y1, y2, sizeof y1);
        if (!fill) /* all silent: y is exactly the bias */
            assert_memory_equal(y1, b, sizeof b);
    }
}

/* A bias of -0.0 (reachable from a model file: `bias: {init: constant, value: -0.0}` or a
 * .npy) with every row silent: the event-driven path keeps y = -0.0, the plain path adds
 * 0 * w = +0.0 and gives +0.0, so the two differ in the sign bit. Numerically harmless
 * (-0 == +0 and no cell equation sees the sign of a zero), but it breaks op.h's promise
 * that skipping rows "gives the same bits". Fix in the engine: start the sum from
 * b[o] + 0 (which turns -0 into +0) in init_y of op_dense.c and op_sparse.c. */
static void
test_op_event_driven_negative_zero_bias(void **state)
{
    (void)state;
    real w[2] = {R(1.0), R(-2.0)}, x[2] = {R(0.0), R(0.0)}, b[1] = {-R(0.0)};
    real y1[1], y2[1];
    op_dense_forward(2, 1, y1, w, x, b);
    op_dense_forward_plain(2, 1, y2, w, x, b);
    assert_memory_equal(y1, y2, sizeof y1);
    int64_t indptr[3] = {0, 1, 2};
    int32_t indices[2] = {0, 0};
    op_sparse_forward(2, 1, y1, indptr, indices, w, x, b);
    op_sparse_forward_plain(2, 1, y2, indptr, indices, w, x, b);
    assert_memory_equal(y1, y2, sizeof y1);
}

static void
test_op_dense_backward_matches_naive(void **state)
{
    (void)state;
    struct testmodel_rng r;
    for (int t = 0; t < N_TRIALS; t++) {
        uint64_t seed = g_seed + 2000 + (uint64_t)t;
        testmodel_rng_seed(&r, seed);
        int64_t rows = 1 + (int64_t)(testmodel_rng_uniform(&r) * 60);
        int64_t n_out = 1 + (int64_t)(testmodel_rng_uniform(&r) * 60);
        real *w = malloc((size_t)(rows * n_out) * sizeof *w);
        real *dy = malloc((size_t)n_out * sizeof *dy);
        real *dx = malloc((size_t)rows * sizeof *dx);
        double *ref = malloc((size_t)rows * sizeof *ref);
        assert_true(w && dy && dx && ref);
        for (int64_t k = 0; k < rows * n_out; k++)
            w[k] = (real)testmodel_rng_normal(&r);
        for (int64_t o = 0; o < n_out; o++)
            dy[o] = (real)testmodel_rng_normal(&r);
        double scale = 0.0;
        for (int64_t i = 0; i < rows; i++) {
            dx[i] = (real)testmodel_rng_normal(&r); /* backward adds into dx */
            double s = (double)dx[i], a = fabs((double)dx[i]);
            for (int64_t o = 0; o < n_out; o++) {
                s += (double)w[i * n_out + o] * (double)dy[o];
                a += fabs((double)w[i * n_out + o] * (double)dy[o]);
            }
            ref[i] = s;
            if (a > scale)
                scale = a;
        }
        op_dense_backward(rows, n_out, dx, w, dy);
        for (int64_t i = 0; i < rows; i++) {
            double err = fabs((double)dx[i] - ref[i]);
            double tol = 64.0 * (double)(n_out + 1) * (double)REAL_EPS * scale;
            if (err > tol)
                fail_msg("dense backward row %lld: %.9g vs %.9g (seed %llu)", (long long)i,
                         (double)dx[i], ref[i], (unsigned long long)seed);
        }
        free(w);
        free(dy);
        free(dx);
        free(ref);
    }
}

static void
test_op_sparse_backward_matches_dense(void **state)
{
    (void)state;
    struct testmodel_rng r;
    for (int t = 0; t < N_TRIALS; t++) {
        uint64_t seed = g_seed + 3000 + (uint64_t)t;
        testmodel_rng_seed(&r, seed);
        int64_t n_in = 2 + (int64_t)(testmodel_rng_uniform(&r) * 60);
        int64_t n_out = 1 + (int64_t)(testmodel_rng_uniform(&r) * 60);
        struct csr c;
        csr_random(&c, &r, n_in, n_out, testmodel_rng_uniform(&r));
        /* A sub-range of rows, as a projection from several sources reads one source. */
        int64_t row0 = (int64_t)(testmodel_rng_uniform(&r) * (double)(n_in - 1));
        int64_t rows = 1 + (int64_t)(testmodel_rng_uniform(&r) * (double)(n_in - row0 - 1));
        real *dy = malloc((size_t)n_out * sizeof *dy);
        real *dx = malloc((size_t)rows * sizeof *dx);
        double *ref = malloc((size_t)rows * sizeof *ref);
        assert_true(dy && dx && ref);
        for (int64_t o = 0; o < n_out; o++)
            dy[o] = (real)testmodel_rng_normal(&r);
        double scale = 1e-300;
        for (int64_t i = 0; i < rows; i++) {
            dx[i] = (real)testmodel_rng_normal(&r);
            double s = (double)dx[i], a = fabs(s);
            for (int64_t o = 0; o < n_out; o++) {
                double p = (double)c.dense[(row0 + i) * n_out + o] * (double)dy[o];
                s += p;
                a += fabs(p);
            }
            ref[i] = s;
            if (a > scale)
                scale = a;
        }
        op_sparse_backward(row0, rows, dx, c.indptr, c.indices, c.v, dy);
        for (int64_t i = 0; i < rows; i++) {
            double tol = 64.0 * (double)(n_out + 1) * (double)REAL_EPS * scale;
            if (fabs((double)dx[i] - ref[i]) > tol)
                fail_msg("sparse backward row %lld: %.9g vs %.9g (seed %llu)", (long long)i,
                         (double)dx[i], ref[i], (unsigned long long)seed);
        }
        free(dy);
        free(dx);
        free(ref);
        csr_free(&c);
    }
}

static void
test_op_elem_matches_naive(void **state)
{
    (void)state;
    enum { N = 101 };
    static real w[N], x[N], b[N], y[N], dy[N], dx[N], dx0[N];
    struct testmodel_rng r;
    testmodel_rng_seed(&r, g_seed + 4000);
    for (int o = 0; o < N; o++) {
        w[o] = (real)testmodel_rng_normal(&r);
        x[o] = o % 3 == 0 ? R(0.0) : (real)testmodel_rng_normal(&r);
        b[o] = (real)testmodel_rng_normal(&r);
        dy[o] = (real)testmodel_rng_normal(&r);
        dx[o] = dx0[o] = (real)testmodel_rng_normal(&r);
    }
    op_elem_forward(N, y, w, x, b);
    for (int o = 0; o < N; o++) {
        real want = x[o] * w[o] + b[o]; /* one rounding each: exact equality */
        assert_true(y[o] == want);
    }
    op_elem_forward(N, y, w, x, NULL);
    for (int o = 0; o < N; o++)
        assert_true(y[o] == x[o] * w[o]);
    op_elem_backward(N, dx, w, dy);
    for (int o = 0; o < N; o++)
        assert_true(dx[o] == dx0[o] + w[o] * dy[o]);
}

/* op_next_event skips blocks of zeros at once: from every start, it finds the row the
 * value-by-value scan finds, with events at block edges, -0, subnormals (0 under the
 * DAZ the engine runs with), NaN and a tail shorter than a block. */
static void
test_op_next_event_matches_scan(void **state)
{
    (void)state;
    enum { N = 203 };
    static real x[N];
    struct testmodel_rng r;
    testmodel_rng_seed(&r, g_seed + 5000);
    for (int pass = 0; pass < 40; pass++) {
        for (int i = 0; i < N; i++) {
            double u = testmodel_rng_uniform(&r);
            x[i] = u < 0.9 ? R(0.0) : u < 0.93 ? -R(0.0) : u < 0.96 ? (real)(u - 0.5) : R(1.0);
        }
        if (pass % 4 == 1)
            x[7] = x[8] = x[15] = x[16] = R(1.0); /* block edges */
        if (pass % 4 == 2)
            x[N - 1] = R(1.0), x[N - 2] = R(0.0); /* the tail */
        if (pass % 4 == 3) {
            x[20] = (real)1e-45; /* subnormal in float (0 under DAZ); a value in double */
            x[40] = (real)NAN;
        }
        if (pass == 0)
            memset(x, 0, sizeof x);
        for (int from = 0; from <= N + 1; from++) {
            int64_t want = from;
            while (want < N && x[want] == R(0.0))
                want++;
            if (want > N)
                want = N;
            assert_int_equal(op_next_event(x, from, N), want);
        }
    }
}

/* The two-column backward (a small readout's, vectorised over rows) gives the bits of the
 * per-row sum in column order: every length from 0 to 40, -0 and large values. */
static void
test_op_dense_backward_two_columns_bitwise(void **state)
{
    (void)state;
    struct testmodel_rng r;
    testmodel_rng_seed(&r, g_seed + 3000);
    for (int trial = 0; trial < 200; trial++) {
        int64_t n = trial % 41;
        real w[2 * 40], dy[2], dx[40], ref[40];
        for (int64_t k = 0; k < 2 * n; k++)
            w[k] = k % 9 == 4 ? -R(0.0) : (real)(testmodel_rng_normal(&r) * (k % 5 ? 1.0 : 1e30));
        for (int o = 0; o < 2; o++)
            dy[o] = trial % 5 == 1 ? -R(0.0) : (real)testmodel_rng_normal(&r);
        for (int64_t i = 0; i < n; i++) {
            dx[i] = i % 6 == 2 ? -R(0.0) : (real)testmodel_rng_normal(&r);
            real s = R(0.0);
            for (int o = 0; o < 2; o++)
                s += w[2 * i + o] * dy[o];
            ref[i] = dx[i] + s;
        }
        op_dense_backward(n, 2, dx, w, dy);
        if (memcmp(dx, ref, (size_t)n * sizeof(real)) != 0)
            fail_msg("two-column backward differs from the per-row sum (trial %d)", trial);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_sparse_forward_equals_dense),
        cmocka_unit_test(test_op_event_driven_bitwise),
        cmocka_unit_test(test_op_event_driven_all_or_none),
        cmocka_unit_test(test_op_event_driven_negative_zero_bias),
        cmocka_unit_test(test_op_dense_backward_matches_naive),
        cmocka_unit_test(test_op_sparse_backward_matches_dense),
        cmocka_unit_test(test_op_elem_matches_naive),
        cmocka_unit_test(test_op_next_event_matches_scan),
        cmocka_unit_test(test_op_dense_backward_two_columns_bitwise),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
