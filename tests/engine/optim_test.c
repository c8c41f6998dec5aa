/* Tests of daemon/engine/optim.c (optim.h): sgd, momentum, adam with weight_decay and a
 * global clip_norm, against a direct double transcription of DESIGN §4.4 (PyTorch
 * semantics) over several steps and two tensors at once; the refusal of a non-finite
 * step leaves every w, m and v bitwise unchanged and discards the gradient.
 * Tolerance: relative error (DESIGN conventions) of w, m, v <= 2e-5 in float, 1e-12 in
 * double, after every step (float: adam's v carries the rounding of 1 - (float)0.999,
 * 1.3e-5 relative, which sets the float bound). Randomized: the seed is printed;
 * ETRACE_SEED=N replays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "real.h"
#include "../support/testmodel.h"

#if defined(REAL_DOUBLE)
#define OPT_TOL 1e-12
#else
#define OPT_TOL 2e-5
#endif

enum { N_T = 2, N_STEPS = 12 };
static const int64_t SIZES[N_T] = {23, 7};

static uint64_t g_seed;

/* The engine-side tensors and their double references. */
struct fixture {
    struct optim_param ps[N_T];
    real *w[N_T], *acc[N_T], *m[N_T], *v[N_T];
    double *rw[N_T], *rm[N_T], *rv[N_T];
};

static void
fixture_init(struct fixture *f, struct testmodel_rng *r, enum model_optim kind)
{
    memset(f, 0, sizeof *f);
    for (int k = 0; k < N_T; k++) {
        int64_t n = SIZES[k];
        f->w[k] = calloc((size_t)n, sizeof(real));
        f->acc[k] = calloc((size_t)n, sizeof(real));
        f->m[k] = calloc((size_t)n, sizeof(real));
        f->v[k] = calloc((size_t)n, sizeof(real));
        f->rw[k] = calloc((size_t)n, sizeof(double));
        f->rm[k] = calloc((size_t)n, sizeof(double));
        f->rv[k] = calloc((size_t)n, sizeof(double));
        assert_true(f->w[k] && f->acc[k] && f->m[k] && f->v[k] && f->rw[k] && f->rm[k] && f->rv[k]);
        for (int64_t j = 0; j < n; j++) {
            f->w[k][j] = (real)testmodel_rng_normal(r);
            f->rw[k][j] = (double)f->w[k][j];
        }
        f->ps[k] = (struct optim_param){
            .n = n,
            .w = f->w[k],
            .acc = f->acc[k],
            .m = kind == MODEL_OPTIM_SGD ? NULL : f->m[k],
            .v = kind == MODEL_OPTIM_ADAM ? f->v[k] : NULL,
        };
    }
}

static void
fixture_fini(struct fixture *f)
{
    for (int k = 0; k < N_T; k++) {
        free(f->w[k]);
        free(f->acc[k]);
        free(f->m[k]);
        free(f->v[k]);
        free(f->rw[k]);
        free(f->rm[k]);
        free(f->rv[k]);
    }
}

/* DESIGN §4.4 in double, exactly as written: clip (global), L2, then the rule. */
static void
reference_step(const struct optim_cfg *c, double lr, uint64_t step, struct fixture *f,
               double *const *g)
{
    double norm_sq = 0.0;
    for (int k = 0; k < N_T; k++)
        for (int64_t j = 0; j < SIZES[k]; j++)
            norm_sq += g[k][j] * g[k][j];
    double scale = 1.0;
    if (c->clip_norm > 0.0) {
        double s = c->clip_norm / (sqrt(norm_sq) + 1e-6);
        scale = s < 1.0 ? s : 1.0;
    }
    for (int k = 0; k < N_T; k++)
        for (int64_t j = 0; j < SIZES[k]; j++) {
            double gj = g[k][j] * scale + c->weight_decay * f->rw[k][j];
            switch (c->kind) {
            case MODEL_OPTIM_SGD:
                f->rw[k][j] -= lr * gj;
                break;
            case MODEL_OPTIM_MOMENTUM:
                f->rm[k][j] = step == 1 ? gj : c->momentum * f->rm[k][j] + gj;
                f->rw[k][j] -= lr * f->rm[k][j];
                break;
            case MODEL_OPTIM_ADAM: {
                f->rm[k][j] = c->beta1 * f->rm[k][j] + (1.0 - c->beta1) * gj;
                f->rv[k][j] = c->beta2 * f->rv[k][j] + (1.0 - c->beta2) * gj * gj;
                double bc1 = 1.0 - pow(c->beta1, (double)step);
                double bc2 = 1.0 - pow(c->beta2, (double)step);
                f->rw[k][j] -= lr / bc1 * f->rm[k][j] / (sqrt(f->rv[k][j]) / sqrt(bc2) + c->eps);
                break;
            }
            }
        }
}

static double
rel_err_d(int64_t n, const real *a, const double *b)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > num || d != d)
            num = d;
        if (fabs(b[i]) > den)
            den = fabs(b[i]);
    }
    return num / (den > 1e-12 ? den : 1e-12);
}

/* Runs N_STEPS steps of configuration c with random gradients and checks w, m, v against
 * the reference after each. grad_scale sets the gradient's size (to make clipping act). */
static void
run_against_reference(const char *what, const struct optim_cfg *c, double lr, double grad_scale,
                      uint64_t seed)
{
    struct testmodel_rng r;
    testmodel_rng_seed(&r, seed);
    struct fixture f;
    fixture_init(&f, &r, c->kind);
    double *g[N_T];
    for (int k = 0; k < N_T; k++) {
        g[k] = calloc((size_t)SIZES[k], sizeof(double));
        assert_non_null(g[k]);
    }
    double worst = 0.0;
    for (uint64_t s = 1; s <= N_STEPS; s++) {
        for (int k = 0; k < N_T; k++)
            for (int64_t j = 0; j < SIZES[k]; j++) {
                f.acc[k][j] = (real)(grad_scale * testmodel_rng_normal(&r));
                g[k][j] = (double)f.acc[k][j];
            }
        int ok = optim_step(c, lr, s, N_T, f.ps);
        assert_int_equal(ok, 1);
        reference_step(c, lr, s, &f, g);
        for (int k = 0; k < N_T; k++) {
            double ew = rel_err_d(SIZES[k], f.w[k], f.rw[k]);
            double em = c->kind == MODEL_OPTIM_SGD ? 0.0 : rel_err_d(SIZES[k], f.m[k], f.rm[k]);
            double ev = c->kind == MODEL_OPTIM_ADAM ? rel_err_d(SIZES[k], f.v[k], f.rv[k]) : 0.0;
            double e = fmax(ew, fmax(em, ev));
            if (e > OPT_TOL)
                fail_msg("%s: step %llu tensor %d: rel err w %.3g m %.3g v %.3g (seed %llu)", what,
                         (unsigned long long)s, k, ew, em, ev, (unsigned long long)seed);
            if (e > worst)
                worst = e;
            for (int64_t j = 0; j < SIZES[k]; j++) /* the gradient is consumed */
                assert_true(f.acc[k][j] == R(0.0));
        }
    }
    printf("[optim_test] %-28s %d steps, worst rel err %.3g\n", what, N_STEPS, worst);
    for (int k = 0; k < N_T; k++)
        free(g[k]);
    fixture_fini(&f);
}

static struct optim_cfg
cfg(enum model_optim kind)
{
    return (struct optim_cfg){.kind = kind,
                              .momentum = 0.9,
                              .beta1 = 0.9,
                              .beta2 = 0.999,
                              .eps = 1e-8,
                              .weight_decay = 0.0,
                              .clip_norm = 0.0};
}

static int
setup(void **state)
{
    (void)state;
    g_seed = testmodel_seed("optim_test", 4242);
    return 0;
}

static void
test_optim_sgd(void **state)
{
    (void)state;
    struct optim_cfg c = cfg(MODEL_OPTIM_SGD);
    run_against_reference("sgd", &c, 0.05, 1.0, g_seed + 1);
}

static void
test_optim_momentum_first_step_is_gradient(void **state)
{
    (void)state;
    struct optim_cfg c = cfg(MODEL_OPTIM_MOMENTUM);
    /* Step 1 alone: buf = g (not (1 - dampening) g or mu * 0 + g by chance). */
    struct testmodel_rng r;
    testmodel_rng_seed(&r, g_seed + 2);
    struct fixture f;
    fixture_init(&f, &r, c.kind);
    for (int k = 0; k < N_T; k++)
        for (int64_t j = 0; j < SIZES[k]; j++) {
            f.m[k][j] = R(123.0); /* garbage in the buffer must be ignored at step 1 */
            f.acc[k][j] = (real)testmodel_rng_normal(&r);
            f.rm[k][j] = (double)f.acc[k][j];
        }
    assert_int_equal(optim_step(&c, 0.1, 1, N_T, f.ps), 1);
    for (int k = 0; k < N_T; k++)
        for (int64_t j = 0; j < SIZES[k]; j++)
            assert_true(f.m[k][j] == (real)f.rm[k][j]);
    fixture_fini(&f);
    run_against_reference("momentum", &c, 0.05, 1.0, g_seed + 3);
}

static void
test_optim_adam(void **state)
{
    (void)state;
    struct optim_cfg c = cfg(MODEL_OPTIM_ADAM);
    run_against_reference("adam", &c, 1e-2, 1.0, g_seed + 4);
    c.beta1 = 0.8;
    c.beta2 = 0.99;
    c.eps = 1e-3; /* eps large enough to matter */
    run_against_reference("adam betas/eps", &c, 1e-2, 0.01, g_seed + 5);
}

static void
test_optim_weight_decay(void **state)
{
    (void)state;
    for (int kind = MODEL_OPTIM_SGD; kind <= MODEL_OPTIM_ADAM; kind++) {
        struct optim_cfg c = cfg((enum model_optim)kind);
        c.weight_decay = 0.1;
        char what[64];
        snprintf(what, sizeof what, "weight_decay kind %d", kind);
        run_against_reference(what, &c, 0.05, 1.0, g_seed + 10 + (uint64_t)kind);
    }
}

static void
test_optim_clip_norm_global(void **state)
{
    (void)state;
    for (int kind = MODEL_OPTIM_SGD; kind <= MODEL_OPTIM_ADAM; kind++) {
        struct optim_cfg c = cfg((enum model_optim)kind);
        c.clip_norm = 0.5; /* the norm over both tensors is ~ 5 * sqrt(30): clipped */
        c.weight_decay = 0.01;
        char what[64];
        snprintf(what, sizeof what, "clip_norm+wd kind %d", kind);
        run_against_reference(what, &c, 0.05, 5.0, g_seed + 20 + (uint64_t)kind);
        c.clip_norm = 1e6; /* never active */
        snprintf(what, sizeof what, "clip_norm inactive kind %d", kind);
        run_against_reference(what, &c, 0.05, 1.0, g_seed + 30 + (uint64_t)kind);
    }
}

/* Clipping scales every tensor by the same factor: the clipped sgd step of each tensor is
 * exactly lr * clip / norm times its gradient, with the norm over all tensors. */
static void
test_optim_clip_norm_scales_all_tensors_together(void **state)
{
    (void)state;
    struct optim_cfg c = cfg(MODEL_OPTIM_SGD);
    c.clip_norm = 1.0;
    real w0[2] = {R(0.0), R(0.0)}, a0[1] = {R(3.0)}, a1[1] = {R(4.0)};
    struct optim_param ps[2] = {{.n = 1, .w = &w0[0], .acc = a0}, {.n = 1, .w = &w0[1], .acc = a1}};
    assert_int_equal(optim_step(&c, 1.0, 1, 2, ps), 1);
    /* norm 5: scale 1 / (5 + 1e-6) */
    assert_true(fabs((double)w0[0] + 3.0 / (5.0 + 1e-6)) < 1e-6);
    assert_true(fabs((double)w0[1] + 4.0 / (5.0 + 1e-6)) < 1e-6);
}

/* Snapshot of every w, m, v. */
struct snap {
    real *w[N_T], *m[N_T], *v[N_T];
};

static void
snap_take(struct snap *s, const struct fixture *f)
{
    for (int k = 0; k < N_T; k++) {
        size_t b = (size_t)SIZES[k] * sizeof(real);
        s->w[k] = malloc(b);
        s->m[k] = malloc(b);
        s->v[k] = malloc(b);
        assert_true(s->w[k] && s->m[k] && s->v[k]);
        memcpy(s->w[k], f->w[k], b);
        memcpy(s->m[k], f->m[k], b);
        memcpy(s->v[k], f->v[k], b);
    }
}

static void
snap_check_free(struct snap *s, const struct fixture *f, const char *what)
{
    for (int k = 0; k < N_T; k++) {
        size_t b = (size_t)SIZES[k] * sizeof(real);
        if (memcmp(s->w[k], f->w[k], b) || memcmp(s->m[k], f->m[k], b) ||
            memcmp(s->v[k], f->v[k], b))
            fail_msg("%s: tensor %d changed by a refused step", what, k);
        for (int64_t j = 0; j < SIZES[k]; j++)
            assert_true(f->acc[k][j] == R(0.0)); /* the gradient is discarded */
        free(s->w[k]);
        free(s->m[k]);
        free(s->v[k]);
    }
}

/* Refused steps: NaN or Inf in the gradient (the last element of the last tensor, so
 * the first tensor's candidate is finite and must still not be written), a NaN lr, and
 * an overflow that appears only in the candidate (adam's g^2, sgd's lr * g). */
static void
test_optim_refuses_non_finite(void **state)
{
    (void)state;
    enum { BAD_NAN, BAD_INF, BAD_LR, BAD_OVERFLOW, BAD_N };
    for (int kind = MODEL_OPTIM_SGD; kind <= MODEL_OPTIM_ADAM; kind++)
        for (int bad = 0; bad < BAD_N; bad++) {
            struct optim_cfg c = cfg((enum model_optim)kind);
            c.weight_decay = 0.01;
            struct testmodel_rng r;
            testmodel_rng_seed(&r, g_seed + 100 + (uint64_t)(kind * 10 + bad));
            struct fixture f;
            fixture_init(&f, &r, c.kind);
            /* Two good steps first so m and v hold state worth protecting. */
            for (uint64_t s = 1; s <= 2; s++) {
                for (int k = 0; k < N_T; k++)
                    for (int64_t j = 0; j < SIZES[k]; j++)
                        f.acc[k][j] = (real)testmodel_rng_normal(&r);
                assert_int_equal(optim_step(&c, 0.01, s, N_T, f.ps), 1);
            }
            for (int k = 0; k < N_T; k++)
                for (int64_t j = 0; j < SIZES[k]; j++)
                    f.acc[k][j] = (real)testmodel_rng_normal(&r);
            double lr = 0.01;
            real *last = &f.acc[N_T - 1][SIZES[N_T - 1] - 1];
            switch (bad) {
            case BAD_NAN:
                *last = (real)NAN;
                break;
            case BAD_INF:
                *last = (real)INFINITY;
                break;
            case BAD_LR:
                lr = NAN;
                break;
            case BAD_OVERFLOW:
                /* finite gradient; 1e30^2 overflows float in adam, lr * g in sgd/momentum */
#if defined(REAL_DOUBLE)
                *last = R(1e300);
                lr = 1e300;
#else
                *last = R(1e30);
                lr = 1e10;
#endif
                break;
            }
            struct snap s;
            snap_take(&s, &f);
            int ok = optim_step(&c, lr, 3, N_T, f.ps);
            char what[64];
            snprintf(what, sizeof what, "kind %d bad %d", kind, bad);
            if (ok)
                fail_msg("%s: a non-finite step was applied", what);
            snap_check_free(&s, &f, what);
            fixture_fini(&f);
        }
}

/* The two-column rank-one step (a small readout's, vectorised over rows) gives the bits of
 * the row-by-row loop it replaces: rows with a[i] == 0 (either sign) untouched, -0
 * weights, an infinite q, NaN, subnormals; every length from 0 to 40 (vector tails). */
static void
test_optim_rank1_two_columns_bitwise(void **state)
{
    (void)state;
    struct testmodel_rng r;
    testmodel_rng_seed(&r, g_seed + 77);
    const real special[] = {R(0.0), -R(0.0), R(1.0) / R(0.0), R(0.0) / R(0.0), R(1e-40), R(-3.5)};
    for (int trial = 0; trial < 200; trial++) {
        int64_t n = trial % 41;
        real w[2 * 40], ref[2 * 40], a[40], q[2];
        for (int64_t k = 0; k < 2 * n; k++) {
            double u = testmodel_rng_uniform(&r);
            w[k] = u < 0.2 ? special[(int)(u * 30) % 6] : (real)testmodel_rng_normal(&r);
        }
        for (int64_t i = 0; i < n; i++) {
            double u = testmodel_rng_uniform(&r);
            a[i] = u < 0.4 ? special[(int)(u * 15) % 6] : (real)testmodel_rng_normal(&r);
        }
        for (int o = 0; o < 2; o++)
            q[o] = trial % 7 == 3 ? special[(trial + o) % 6] : (real)testmodel_rng_normal(&r);
        real lr = (real)(0.01 + testmodel_rng_uniform(&r));
        memcpy(ref, w, sizeof w);
        for (int64_t i = 0; i < n; i++) /* the general path, row by row */
            if (a[i] != R(0.0))
                for (int o = 0; o < 2; o++)
                    ref[2 * i + o] -= lr * (a[i] * q[o]);
        optim_sgd_rank1_dense(n, 2, w, a, q, lr, R(0.0));
        if (memcmp(w, ref, (size_t)(2 * n) * sizeof(real)) != 0)
            fail_msg("two-column rank-one step differs from row by row (trial %d)", trial);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_optim_sgd),
        cmocka_unit_test(test_optim_momentum_first_step_is_gradient),
        cmocka_unit_test(test_optim_adam),
        cmocka_unit_test(test_optim_weight_decay),
        cmocka_unit_test(test_optim_clip_norm_global),
        cmocka_unit_test(test_optim_clip_norm_scales_all_tensors_together),
        cmocka_unit_test(test_optim_refuses_non_finite),
        cmocka_unit_test(test_optim_rank1_two_columns_bitwise),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
