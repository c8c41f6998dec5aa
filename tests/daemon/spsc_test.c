/* Tests of daemon/spsc.c: the record ring and the latest-value buffer, single-threaded
 * edge cases and two-thread stress tests (run them under ThreadSanitizer too:
 * make tsan, or SANITIZE=thread). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "spsc.h"

enum { N_RECORDS = 200000, N_VALUES = 200000, VALUE_WORDS = 64 };

static void
test_spsc_empty_and_full(void **state)
{
    struct spsc q;
    size_t len = 0;
    int n = 0;
    (void)state;
    assert_int_equal(spsc_init(&q, 256), 0);
    assert_null(spsc_peek(&q, &len));
    assert_null(spsc_reserve(&q, q.max_record_bytes + 1));
    while (spsc_push(&q, &n, sizeof(n)) == 0)
        n++;
    assert_int_equal(n, 256 / 16); /* 8-byte header + 8-byte padded payload */
    for (int i = 0; i < n; i++) {
        int *p = spsc_peek(&q, &len);
        assert_non_null(p);
        assert_int_equal(len, sizeof(int));
        assert_int_equal(*p, i);
        spsc_pop(&q);
    }
    assert_null(spsc_peek(&q, &len));
    assert_int_equal(spsc_used_bytes(&q), 0);
    spsc_fini(&q);
}

static void
test_spsc_wraps_without_splitting(void **state)
{
    struct spsc q;
    uint8_t rec[100];
    size_t len;
    (void)state;
    assert_int_equal(spsc_init(&q, 256), 0);
    for (int round = 0; round < 1000; round++) {
        size_t want = (size_t)(round * 37 % 100) + 1;
        memset(rec, round & 0xff, want);
        assert_int_equal(spsc_push(&q, rec, want), 0);
        uint8_t *p = spsc_peek(&q, &len);
        assert_non_null(p);
        assert_int_equal(len, want);
        for (size_t i = 0; i < len; i++)
            assert_int_equal(p[i], round & 0xff);
        spsc_pop(&q);
    }
    spsc_fini(&q);
}

static void
test_spsc_commit_shortens(void **state)
{
    struct spsc q;
    size_t len;
    (void)state;
    assert_int_equal(spsc_init(&q, 1024), 0);
    char *p = spsc_reserve(&q, 200);
    assert_non_null(p);
    strcpy(p, "abc");
    spsc_commit(&q, 4);
    p = spsc_peek(&q, &len);
    assert_int_equal(len, 4);
    assert_string_equal(p, "abc");
    spsc_pop(&q);
    spsc_fini(&q);
}

static void *
ring_producer(void *arg)
{
    struct spsc *q = arg;
    uint32_t words[40];
    for (uint32_t seq = 0; seq < N_RECORDS; seq++) {
        uint32_t n = 1 + seq % 40;
        for (uint32_t i = 0; i < n; i++)
            words[i] = seq * 2654435761u + i;
        while (spsc_push(q, words, n * sizeof(uint32_t)) != 0)
            ; /* full: the consumer will make room */
    }
    return NULL;
}

static void
test_spsc_two_threads_in_order(void **state)
{
    struct spsc q;
    pthread_t t;
    size_t len;
    uint32_t seq = 0;
    (void)state;
    assert_int_equal(spsc_init(&q, 4096), 0);
    assert_int_equal(pthread_create(&t, NULL, ring_producer, &q), 0);
    while (seq < N_RECORDS) {
        uint32_t *p = spsc_peek(&q, &len);
        if (!p)
            continue;
        uint32_t n = 1 + seq % 40;
        assert_int_equal(len, n * sizeof(uint32_t));
        for (uint32_t i = 0; i < n; i++)
            if (p[i] != seq * 2654435761u + i)
                fail_msg("record %u word %u: %u", seq, i, p[i]);
        spsc_pop(&q);
        seq++;
    }
    pthread_join(t, NULL);
    assert_null(spsc_peek(&q, &len));
    spsc_fini(&q);
}

struct latest_arg {
    struct latest *l;
    long superseded;
};

static void *
latest_writer(void *arg)
{
    struct latest_arg *a = arg;
    for (uint64_t v = 1; v <= N_VALUES; v++) {
        uint64_t *w = latest_back(a->l);
        for (int i = 0; i < VALUE_WORDS; i++)
            w[i] = v;
        a->superseded += latest_publish(a->l);
    }
    return NULL;
}

static void
test_latest_two_threads_whole_values(void **state)
{
    struct latest l;
    struct latest_arg a = {&l, 0};
    pthread_t t;
    uint64_t last = 0;
    long n_new = 0;
    (void)state;
    assert_int_equal(latest_init(&l, VALUE_WORDS * sizeof(uint64_t)), 0);
    assert_int_equal(pthread_create(&t, NULL, latest_writer, &a), 0);
    while (last < N_VALUES) {
        int is_new;
        const uint64_t *v = latest_read(&l, &is_new);
        for (int i = 1; i < VALUE_WORDS; i++)
            if (v[i] != v[0])
                fail_msg("torn value: %llu vs %llu", (unsigned long long)v[i],
                         (unsigned long long)v[0]);
        assert_true(v[0] >= last);
        if (is_new) {
            assert_true(v[0] > last);
            n_new++;
        }
        last = v[0];
    }
    pthread_join(t, NULL);
    /* Every published value was either read once or superseded. */
    assert_int_equal(n_new + a.superseded, N_VALUES);
    latest_fini(&l);
}

static void
test_latest_zero_before_publish(void **state)
{
    struct latest l;
    int is_new = 1;
    (void)state;
    assert_int_equal(latest_init(&l, 16), 0);
    const uint8_t *v = latest_read(&l, &is_new);
    assert_int_equal(is_new, 0);
    for (int i = 0; i < 16; i++)
        assert_int_equal(v[i], 0);
    memset(latest_back(&l), 7, 16);
    assert_int_equal(latest_publish(&l), 0);
    memset(latest_back(&l), 8, 16);
    assert_int_equal(latest_publish(&l), 1);
    v = latest_read(&l, &is_new);
    assert_int_equal(is_new, 1);
    assert_int_equal(v[0], 8);
    latest_fini(&l);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spsc_empty_and_full),
        cmocka_unit_test(test_spsc_wraps_without_splitting),
        cmocka_unit_test(test_spsc_commit_shortens),
        cmocka_unit_test(test_spsc_two_threads_in_order),
        cmocka_unit_test(test_latest_zero_before_publish),
        cmocka_unit_test(test_latest_two_threads_whole_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
