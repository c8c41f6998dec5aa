/* Tests of daemon/hist.c: bin edges, quantiles within 1/16 relative, the exact max. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "hist.h"

static void
test_hist_empty_is_zero(void **state)
{
    static struct hist h;
    (void)state;
    hist_reset(&h);
    assert_int_equal(hist_quantile(&h, 0.5), 0);
    assert_int_equal(h.max, 0);
}

static void
test_hist_small_values_exact(void **state)
{
    static struct hist h;
    (void)state;
    hist_reset(&h);
    for (int v = 0; v < 16; v++)
        hist_add(&h, v);
    assert_int_equal(hist_quantile(&h, 0.5), 7);
    assert_int_equal(hist_quantile(&h, 1.0), 15);
    hist_add(&h, -5);
    assert_int_equal(h.count, 17);
}

static void
test_hist_quantiles_within_bin_width(void **state)
{
    static struct hist h;
    (void)state;
    hist_reset(&h);
    /* 1..100000 in order: the q-quantile is q * 100000. */
    for (int64_t v = 1; v <= 100000; v++)
        hist_add(&h, v * 1000);
    const double qs[] = {0.5, 0.99, 0.999};
    for (int i = 0; i < 3; i++) {
        double exact = qs[i] * 100000.0 * 1000.0;
        double got = (double)hist_quantile(&h, qs[i]);
        assert_true(got >= exact);
        assert_true(got <= exact * (1.0 + 1.0 / 16.0) + 1.0);
    }
    assert_int_equal(hist_quantile(&h, 1.0), 100000 * 1000);
    assert_int_equal(h.max, 100000 * 1000);
    hist_add(&h, INT64_MAX);
    assert_int_equal(h.max, INT64_MAX);
    assert_int_equal(h.sum, INT64_MAX); /* held there, not wrapped */
    assert_int_equal(hist_quantile(&h, 1.0), INT64_MAX);
}

static void
test_hist_merge_adds(void **state)
{
    static struct hist a, b;
    (void)state;
    hist_reset(&a);
    hist_reset(&b);
    hist_add(&a, 100);
    hist_add(&b, 5000);
    hist_merge(&a, &b);
    assert_int_equal(a.count, 2);
    assert_int_equal(a.max, 5000);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_empty_is_zero),
        cmocka_unit_test(test_hist_small_values_exact),
        cmocka_unit_test(test_hist_quantiles_within_bin_width),
        cmocka_unit_test(test_hist_merge_adds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
