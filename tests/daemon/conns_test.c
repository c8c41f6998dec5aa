/* Tests of daemon/conns.c: connections counted up to the limit, those over it refused and
 * told apart when they end, descriptors it never saw ignored, and the descriptor limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

#include <cmocka.h>

#include "conns.h"

static void
test_conns_limit_and_refusals(void **state)
{
    struct conns c;
    (void)state;
    assert_int_equal(conns_init(&c, 64), 0);
    c.limit = 2;
    assert_int_equal(conns_on_accepted(&c, 10), 0);
    assert_int_equal(conns_on_accepted(&c, 11), 0);
    assert_int_equal(conns_on_accepted(&c, 12), 1); /* over the limit */
    assert_true(conns_is_refused(&c, 12));
    assert_false(conns_is_refused(&c, 11));
    assert_int_equal(c.n_open, 2);
    assert_int_equal(c.refused, 1);
    assert_int_equal(conns_on_disconnected(&c, 12), CONNS_REFUSED);
    assert_int_equal(c.n_open, 2); /* a refused one never counted */
    assert_false(conns_is_refused(&c, 12));
    assert_int_equal(conns_on_disconnected(&c, 10), CONNS_OPEN);
    assert_int_equal(c.n_open, 1);
    assert_int_equal(conns_on_disconnected(&c, 10), 0); /* already gone */
    assert_int_equal(conns_on_disconnected(&c, 40), 0); /* never seen */
    assert_int_equal(conns_on_disconnected(&c, -1), 0);
    assert_int_equal(conns_on_disconnected(&c, 1000), 0); /* past the table */
    assert_int_equal(c.n_open, 1);
    assert_int_equal(conns_on_accepted(&c, 12), 0); /* a reused descriptor: room again */
    assert_int_equal(c.n_open, 2);
    c.limit = 0; /* no limit */
    for (int fd = 20; fd < 60; fd++)
        assert_int_equal(conns_on_accepted(&c, fd), 0);
    assert_int_equal(c.n_open, 42);
    conns_fini(&c);
    conns_fini(&c); /* accepts a finished struct */
}

static void
test_conns_raise_nofile_to_hard(void **state)
{
    struct rlimit rl;
    (void)state;
    size_t n = conns_raise_nofile();
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    assert_true(n >= 64);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max <= ((rlim_t)1 << 20))
        assert_true(rl.rlim_cur == rl.rlim_max && n == (size_t)rl.rlim_max);
    size_t open_now = conns_count_open_fds();
    assert_true(open_now >= 3 && open_now < n); /* stdin, stdout, stderr at least */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conns_limit_and_refusals),
        cmocka_unit_test(test_conns_raise_nofile_to_hard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
