/* Tests of the engine's generator: xoshiro256** + splitmix64 + FNV-1a substreams. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rng.h"

/* The expected values below were computed once by an independent Python implementation
 * (integers masked to 64 bits, written from the published algorithms: FNV-1a 64,
 * splitmix64, xoshiro256**) run with /usr/bin/python3 and pasted here. That
 * implementation also reproduces the reference xoshiro256** vector for state {1,2,3,4}
 * (0x2d00, 0, 0x5a007080), which test_rng_xoshiro_reference_vector checks too. */

static void
test_rng_fnv1a_known_values(void **state)
{
    (void)state;
    assert_true(rng_fnv1a("", 0) == UINT64_C(0xcbf29ce484222325));
    assert_true(rng_fnv1a("a", 1) == UINT64_C(0xaf63dc4c8601ec8c));
    assert_true(rng_fnv1a("foobar", 6) == UINT64_C(0x85944171f73967e8));
}

static void
test_rng_xoshiro_reference_vector(void **state)
{
    (void)state;
    struct rng r = {{1, 2, 3, 4}};
    assert_true(rng_next(&r) == UINT64_C(0x2d00));
    assert_true(rng_next(&r) == UINT64_C(0));
    assert_true(rng_next(&r) == UINT64_C(0x5a007080));
}

static void
check_stream(uint64_t seed, const char *name, const uint64_t want_state[4],
             const uint64_t want_next[5])
{
    struct rng r;
    rng_seed(&r, seed, name);
    for (int i = 0; i < 4; i++)
        assert_true(r.s[i] == want_state[i]);
    for (int i = 0; i < 5; i++)
        assert_true(rng_next(&r) == want_next[i]);
}

static void
test_rng_seed_known_answers(void **state)
{
    (void)state;
    static const uint64_t s0[4] = {0xc3817c016ba4ff30u, 0x100cdaacc0bc9316u, 0x54c3a569ecf61b1bu,
                                   0x2c65920724651c72u};
    static const uint64_t n0[5] = {0x21382ef092ed7068u, 0x5b54c052757adf62u, 0xa64cb2cf68795072u,
                                   0xd35c15d5962035afu, 0xeffd4881bf12f828u};
    check_stream(0, "", s0, n0);
    static const uint64_t s1[4] = {0x60e5b7537068604cu, 0x1e07f7723c5b3b3fu, 0xed86cfb7df676dc7u,
                                   0x3c23a21aa9f0e2c9u};
    static const uint64_t n1[5] = {0xb33f8a4e04b50c23u, 0x569ebbf2e6ced5f0u, 0x06aaf8f5c278b2a5u,
                                   0x7512e5ad9608d4e9u, 0x9bdbb0fe948e9d06u};
    check_stream(7, "w_rec", s1, n1);
    static const uint64_t s2[4] = {0x00c7623962cb41d3u, 0x257e282a82cfa274u, 0x7021b0d942164b4eu,
                                   0xbf420df05f27edcbu};
    static const uint64_t n2[5] = {0x9687bc7f3fc73545u, 0xf20acf3ea3d87d7du, 0xd15899a2e9201f0fu,
                                   0x87a35fd7888ade80u, 0x39ea13dc3f67585eu};
    check_stream(0xdeadbeef, "policy.action", s2, n2);
}

/* NULL names the same stream as "". */
static void
test_rng_seed_null_name_is_empty(void **state)
{
    (void)state;
    struct rng a, b;
    rng_seed(&a, 3, NULL);
    rng_seed(&b, 3, "");
    assert_memory_equal(a.s, b.s, sizeof a.s);
}

static void
test_rng_uniform_known_answers(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 7, "w_rec");
    /* Exact: (next >> 11) * 2^-53 is representable. */
    assert_true(rng_uniform(&r) == 0.7001882973169878);
    assert_true(rng_uniform(&r) == 0.3383595912953823);
    assert_true(rng_uniform(&r) == 0.026046333312907732);
    assert_true(rng_uniform(&r) == 0.45731959808293543);
}

static void
test_rng_normal_known_answers(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 7, "w_rec");
    /* libm's log/cos may differ from CPython's by an ulp or so: 1e-14 relative. */
    static const double want[3] = {-0.8181374485943328, -0.2215340738049563, -0.9818410020045727};
    for (int i = 0; i < 3; i++) {
        double x = rng_normal(&r);
        assert_true(fabs(x - want[i]) <= 1e-14 * fabs(want[i]));
    }
}

/* Every draw is in [0, 1); two normals consume exactly four uniforms. */
static void
test_rng_normal_consumes_two_draws(void **state)
{
    (void)state;
    struct rng a, b;
    rng_seed(&a, 11, "x");
    rng_seed(&b, 11, "x");
    for (int i = 0; i < 1000; i++)
        (void)rng_normal(&a);
    for (int i = 0; i < 2000; i++) {
        double u = rng_uniform(&b);
        assert_true(u >= 0.0 && u < 1.0);
    }
    assert_memory_equal(a.s, b.s, sizeof a.s);
}

/* Over n = 10^5 draws the sample mean has standard error 1/sqrt(n) = 0.0032 and the
 * sample std about 1/sqrt(2n) = 0.0022; bounds of 0.015 and 0.01 are > 4.5 sigma. The
 * stream is fixed, so the test is deterministic; the bounds only say the values are
 * sane. Skewness and kurtosis are checked loosely (0.05 and 0.1). */
static void
test_rng_normal_moments(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 12345, "moments");
    enum { N = 100000 };
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    for (int i = 0; i < N; i++) {
        double x = rng_normal(&r);
        assert_true(isfinite(x));
        s1 += x;
        s2 += x * x;
        s3 += x * x * x;
        s4 += x * x * x * x;
    }
    double mean = s1 / N;
    double var = s2 / N - mean * mean;
    double sd = sqrt(var);
    print_message("normal: mean %.5f std %.5f skew %.4f kurt %.4f over %d draws (seed 12345)\n",
                  mean, sd, s3 / N, s4 / N, N);
    assert_true(fabs(mean) < 0.015);
    assert_true(fabs(sd - 1.0) < 0.01);
    assert_true(fabs(s3 / N) < 0.05);
    assert_true(fabs(s4 / N - 3.0) < 0.1);
}

/* The uniform's mean is 1/2 with standard error 0.29/sqrt(10^5) = 0.0009. */
static void
test_rng_uniform_mean(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 99, "u");
    double s = 0;
    for (int i = 0; i < 100000; i++)
        s += rng_uniform(&r);
    assert_true(fabs(s / 100000 - 0.5) < 0.005);
}

/* Substreams are a pure function of (seed, name): seeding another name in between, or
 * drawing from it, changes nothing in the first; different names and seeds differ. */
static void
test_rng_substreams_independent(void **state)
{
    (void)state;
    struct rng a1, a2, b;
    rng_seed(&a1, 7, "w_in");
    uint64_t first[16];
    for (int i = 0; i < 16; i++)
        first[i] = rng_next(&a1);

    rng_seed(&b, 7, "w_new");
    for (int i = 0; i < 100; i++)
        (void)rng_next(&b);
    rng_seed(&a2, 7, "w_in");
    for (int i = 0; i < 16; i++)
        assert_true(rng_next(&a2) == first[i]);

    struct rng c, d;
    rng_seed(&c, 7, "w_in");
    rng_seed(&d, 7, "w_im");
    assert_memory_not_equal(c.s, d.s, sizeof c.s);
    rng_seed(&d, 8, "w_in");
    assert_memory_not_equal(c.s, d.s, sizeof c.s);
}

static void
test_rng_categorical_distribution(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 5, "cat");
    const double p[4] = {0.1, 0.0, 0.6, 0.3};
    const float pf[4] = {1.0f, 0.0f, 6.0f, 3.0f}; /* unnormalised */
    int n[4] = {0}, nf[4] = {0};
    enum { N = 100000 };
    for (int i = 0; i < N; i++) {
        n[rng_categorical_d(&r, 4, p)]++;
        nf[rng_categorical_f(&r, 4, pf)]++;
    }
    /* Standard error of a frequency is at most 0.5/sqrt(N) = 0.0016; bound 0.01. */
    for (int k = 0; k < 4; k++) {
        assert_true(fabs((double)n[k] / N - p[k]) < 0.01);
        assert_true(fabs((double)nf[k] / N - p[k]) < 0.01);
    }
    assert_int_equal(n[1], 0);
    assert_int_equal(nf[1], 0);
}

/* One uniform per draw, inverse CDF in index order. */
static void
test_rng_categorical_inverse_cdf(void **state)
{
    (void)state;
    struct rng r, u;
    rng_seed(&r, 1, "inv");
    rng_seed(&u, 1, "inv");
    const double p[3] = {0.25, 0.5, 0.25};
    for (int i = 0; i < 1000; i++) {
        double x = rng_uniform(&u);
        int want = x < 0.25 ? 0 : x < 0.75 ? 1 : 2;
        assert_int_equal(rng_categorical_d(&r, 3, p), want);
    }
    const double one[1] = {2.0};
    assert_int_equal(rng_categorical_d(&r, 1, one), 0);
    const double last[3] = {0.0, 1.0, 0.0};
    for (int i = 0; i < 100; i++)
        assert_int_equal(rng_categorical_d(&r, 3, last), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_fnv1a_known_values),
        cmocka_unit_test(test_rng_xoshiro_reference_vector),
        cmocka_unit_test(test_rng_seed_known_answers),
        cmocka_unit_test(test_rng_seed_null_name_is_empty),
        cmocka_unit_test(test_rng_uniform_known_answers),
        cmocka_unit_test(test_rng_normal_known_answers),
        cmocka_unit_test(test_rng_normal_consumes_two_draws),
        cmocka_unit_test(test_rng_normal_moments),
        cmocka_unit_test(test_rng_uniform_mean),
        cmocka_unit_test(test_rng_substreams_independent),
        cmocka_unit_test(test_rng_categorical_distribution),
        cmocka_unit_test(test_rng_categorical_inverse_cdf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
