/* Integration tests of output publishing (outputs.publish_every_us, DESIGN §5.2): the real
 * etraced on private ipc paths, a subscriber on its output socket. At 10 kHz outputs go out
 * in batches, every tick's exactly once and in order (a pause flushes the last batch); at
 * 1 kHz, and at 10 kHz with publish_every_us 0, the loop is woken for every tick as before;
 * lockstep publishes each step's outputs before its reply; a bad value is refused with a
 * message naming the key and line, at start and on SIGHUP. Times are printed, never
 * asserted: waits are bounded, counts are exact.
 * Environment: ETRACED overrides the binary (default: BUILD/etraced). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon_run.h"
#include "etrace_client.h"

static const char model_text[] = DAEMON_RUN_ITEST_MODEL;

/* PUB drops silently at a subscriber's high-water mark: a queue of 100 s at 10 kHz, so that
 * a test process held up on a busy machine still receives everything. */
#define STREAM_CFG "stats_period_ms: 200\nlimits: {subscriber_queue: 1000000}\n"

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* What a subscriber saw of the outputs. */
struct seen {
    uint64_t first, last, n; /* ticks of the first and last Output, and how many */
    uint64_t out_of_order;   /* Outputs whose tick was not the previous one's + 1 */
    double *lat_us;          /* [cap] finish_ns to receive, microseconds */
    size_t n_lat, cap;
};

/* Receives every Output queued on `sub` (waiting up to wait_ms for the first). */
static void
take(etrace_sub_t *sub, int wait_ms, struct seen *s)
{
    Etrace__Output *o;
    for (; etrace_sub_recv_output(sub, wait_ms, &o) == ETRACE_OK; wait_ms = 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t at_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        if (s->n && o->tick != s->last + 1)
            s->out_of_order++;
        if (!s->n)
            s->first = o->tick;
        s->last = o->tick;
        s->n++;
        if (s->n_lat < s->cap)
            s->lat_us[s->n_lat++] = (double)(at_ns - o->finish_ns) / 1e3;
        etrace__output__free_unpacked(o, NULL);
    }
}

static double
quantile(struct seen *s, double q)
{
    if (!s->n_lat)
        return 0.0;
    qsort(s->lat_us, s->n_lat, sizeof(double), cmp_double);
    return s->lat_us[(size_t)(q * (double)(s->n_lat - 1))];
}

/* Runs the daemon (its extra config lines) for about run_ms with a subscriber, then
 * pauses it: every Output from the first received to the last tick before the pause must
 * arrive exactly once, in order. Returns the Output wake-ups and ticks over a stretch
 * measured between two Stats (*wakes, *ticks, *periods), and the latencies seen. */
static void
stream_then_pause(const char *label, const char *extra, int run_ms, uint64_t *wakes,
                  uint64_t *ticks, uint64_t *periods, struct seen *s)
{
    struct daemon_run r;
    Etrace__Reply *rep = NULL;
    daemon_run_start(&r, model_text, extra);
    etrace_sub_t *sub = etrace_sub_new(r.ep[1], "action");
    assert_non_null(sub);
    /* The subscription reaches the daemon: wait for the first Output. */
    int64_t t0 = daemon_run_now_ms();
    while (!s->n && daemon_run_now_ms() - t0 < 10000)
        take(sub, 100, s);
    assert_true(s->n > 0);
    s->n_lat = 0; /* latencies from here: the subscriber is connected and draining */
    Etrace__Stats *st0 = daemon_run_stats(&r);
    /* The loop thread stays responsive: a `status` round trip every 20 ms meanwhile. */
    double rtt_ms[256];
    int n_rtt = 0;
    t0 = daemon_run_now_ms();
    while (daemon_run_now_ms() - t0 < run_ms) {
        take(sub, 10, s);
        if (n_rtt < 256 && daemon_run_now_ms() - t0 >= 20 * n_rtt) {
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            assert_int_equal(etrace_status(r.c, &rep), ETRACE_OK);
            clock_gettime(CLOCK_MONOTONIC, &b);
            etrace_reply_free(rep);
            rtt_ms[n_rtt++] =
                (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
        }
    }
    qsort(rtt_ms, (size_t)n_rtt, sizeof(double), cmp_double);
    print_message("%s: %d status round trips while streaming, p50 %.2f ms, max %.2f ms\n", label,
                  n_rtt, n_rtt ? rtt_ms[n_rtt / 2] : 0.0, n_rtt ? rtt_ms[n_rtt - 1] : 0.0);
    Etrace__Stats *st1 = daemon_run_stats(&r);
    *wakes = st1->output_wakes - st0->output_wakes;
    *ticks = st1->ticks_total - st0->ticks_total;
    *periods = st1->period_index - st0->period_index;
    /* Pause: the pause's reply wakes the loop, which publishes the batch in progress. */
    assert_int_equal(etrace_pause(r.c, &rep), ETRACE_OK);
    uint64_t paused_at = rep->status->tick; /* ticks run; the last Output is tick - 1 */
    etrace_reply_free(rep);
    t0 = daemon_run_now_ms();
    while (s->last + 1 < paused_at && daemon_run_now_ms() - t0 < 10000)
        take(sub, 100, s);
    take(sub, 50, s); /* nothing after the pause */
    Etrace__Stats *st2 = daemon_run_stats(&r);
    uint64_t dropped = daemon_run_sock(st2, "output")->dropped;
    print_message("%s: Outputs %llu..%llu (%llu received, %llu out of order), paused at tick "
                  "%llu; %llu Output wake-ups for %llu ticks (%llu periods); dropped %llu; "
                  "skipped %llu\n",
                  label, (unsigned long long)s->first, (unsigned long long)s->last,
                  (unsigned long long)s->n, (unsigned long long)s->out_of_order,
                  (unsigned long long)paused_at, (unsigned long long)*wakes,
                  (unsigned long long)*ticks, (unsigned long long)*periods,
                  (unsigned long long)dropped, (unsigned long long)st2->skipped);
    assert_int_equal(dropped, 0);
    assert_int_equal(s->out_of_order, 0);
    assert_int_equal(s->last + 1, paused_at);
    assert_int_equal(s->n, s->last - s->first + 1);
    assert_true(*ticks > 0);
    etrace__stats__free_unpacked(st0, NULL);
    etrace__stats__free_unpacked(st1, NULL);
    etrace__stats__free_unpacked(st2, NULL);
    etrace_sub_free(&sub);
    assert_int_equal(daemon_run_stop(&r), 0);
}

static void
seen_init(struct seen *s, size_t cap)
{
    memset(s, 0, sizeof(*s));
    s->cap = cap;
    s->lat_us = calloc(cap, sizeof(double));
    assert_non_null(s->lat_us);
}

/* 10 kHz, the default publish_every_us (1000): one wake-up per ten periods at most. */
static void
test_publish_10khz_batches_all_in_order(void **state)
{
    struct seen s;
    uint64_t wakes, ticks, periods;
    (void)state;
    seen_init(&s, 100000);
    stream_then_pause("10 kHz, publish_every_us 1000", "period_us: 100\n" STREAM_CFG, 1500, &wakes,
                      &ticks, &periods, &s);
    print_message("10 kHz, publish_every_us 1000: tick finish to receive p50 %.1f us, p99 %.1f "
                  "us\n",
                  quantile(&s, 0.5), quantile(&s, 0.99));
    /* Two wake-ups for Outputs are at least ten periods apart: the first Output after one
     * waits until the next deadline is 1000 us past its own. */
    assert_true(wakes >= 1);
    assert_true(wakes <= periods / 10 + 1);
    free(s.lat_us);
}

/* 10 kHz with publish_every_us 0: a wake-up for every tick, as without coalescing. */
static void
test_publish_10khz_every_tick_when_zero(void **state)
{
    struct seen s;
    uint64_t wakes, ticks, periods;
    (void)state;
    seen_init(&s, 100000);
    stream_then_pause("10 kHz, publish_every_us 0",
                      "period_us: 100\noutputs: {publish_every_us: 0}\n" STREAM_CFG, 1500, &wakes,
                      &ticks, &periods, &s);
    print_message("10 kHz, publish_every_us 0: tick finish to receive p50 %.1f us, p99 %.1f "
                  "us\n",
                  quantile(&s, 0.5), quantile(&s, 0.99));
    assert_int_equal(wakes, ticks);
    free(s.lat_us);
}

/* 1 kHz (the model's dt) with the default: a period as long as publish_every_us, so every
 * tick wakes the loop, as before coalescing. */
static void
test_publish_1khz_every_tick(void **state)
{
    struct seen s;
    uint64_t wakes, ticks, periods;
    (void)state;
    seen_init(&s, 100000);
    stream_then_pause("1 kHz, publish_every_us 1000", STREAM_CFG, 1500, &wakes, &ticks, &periods,
                      &s);
    print_message("1 kHz, publish_every_us 1000: tick finish to receive p50 %.1f us, p99 %.1f "
                  "us\n",
                  quantile(&s, 0.5), quantile(&s, 0.99));
    assert_int_equal(wakes, ticks);
    free(s.lat_us);
}

/* Lockstep: each step's Output is published before the step's reply is answered, however
 * long publish_every_us is; no Output wake-ups are counted (the replies wake the loop). */
static void
test_publish_lockstep_unaffected(void **state)
{
    struct daemon_run r;
    struct seen s;
    (void)state;
    seen_init(&s, 16);
    daemon_run_start(
        &r, model_text,
        "clock: lockstep\nstats_period_ms: 100\noutputs: {publish_every_us: 100000}\n");
    etrace_sub_t *sub = etrace_sub_new(r.ep[1], "action");
    assert_non_null(sub);
    float x[4] = {0.5f, 0.1f, 0.2f, 0.3f}, y[2] = {0.1f, -0.1f};
    Etrace__Reply *rep = NULL;
    /* Step until the subscription is through (the first steps' Outputs may be missed). */
    int64_t t0 = daemon_run_now_ms();
    while (!s.n && daemon_run_now_ms() - t0 < 10000) {
        assert_int_equal(daemon_run_step_target(&r, "sensors", x, 4, "action", y, 2, &rep),
                         ETRACE_OK);
        etrace_reply_free(rep);
        take(sub, 50, &s);
    }
    assert_true(s.n > 0);
    for (int k = 0; k < 50; k++) {
        assert_int_equal(daemon_run_step_target(&r, "sensors", x, 4, "action", y, 2, &rep),
                         ETRACE_OK);
        assert_int_equal(rep->step->n_outputs, 1);
        uint64_t tick = rep->step->outputs[0]->tick;
        etrace_reply_free(rep);
        uint64_t before = s.n;
        t0 = daemon_run_now_ms();
        while (s.last != tick && daemon_run_now_ms() - t0 < 5000)
            take(sub, 100, &s);
        assert_int_equal(s.last, tick);
        assert_int_equal(s.n, before + 1);
    }
    assert_int_equal(s.out_of_order, 0);
    Etrace__Stats *st = daemon_run_stats(&r);
    assert_int_equal(st->output_wakes, 0);
    etrace__stats__free_unpacked(st, NULL);
    etrace_sub_free(&sub);
    assert_int_equal(daemon_run_stop(&r), 0);
    free(s.lat_us);
}

/* Replaces the first `from` in the file at path by `to`. */
static void
replace_in_file(const char *path, const char *from, const char *to)
{
    char text[4096], out[4096];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    char *at = strstr(text, from);
    assert_non_null(at);
    snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    daemon_run_write_file(path, out);
}

/* Waits up to 5 s for `what` in r's log; fails the test without it. */
static void
expect_log(struct daemon_run *r, const char *what)
{
    int64_t t0 = daemon_run_now_ms();
    while (!strstr(daemon_run_log_text(r), what) && daemon_run_now_ms() - t0 < 5000)
        daemon_run_sleep_ms(20);
    const char *lg = daemon_run_log_text(r);
    if (!strstr(lg, what))
        fail_msg("no '%s' in the log:\n%s", what, lg);
}

/* A bad value: etraced refuses to start, naming the key, the line and the bounds; on
 * SIGHUP a bad value keeps the running settings, and a good new one needs a restart. */
static void
test_publish_bad_values_refused(void **state)
{
    static const struct {
        const char *extra, *expect;
    } bad[] = {
        {"outputs: {publish_every_us: 100001}\n",
         "outputs.publish_every_us: 100001 is out of bounds [0, 100000]"},
        {"outputs:\n  publish_every_us: -5\n",
         ":8: outputs.publish_every_us: -5 is out of bounds [0, 100000]"},
        {"outputs: {publish_every_us: 0.5}\n", "outputs.publish_every_us: expected an integer"},
        {"outputs: {publish_every: 10}\n", "outputs.publish_every: unknown setting"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct daemon_run r;
        daemon_run_prepare(&r, model_text);
        assert_int_equal(daemon_run_launch(&r, NULL, bad[i].extra, NULL), -1);
        const char *lg = daemon_run_log_text(&r);
        if (!strstr(lg, bad[i].expect))
            fail_msg("case %zu: no '%s' in the log:\n%s", i, bad[i].expect, lg);
        daemon_run_rm_tree(r.dir);
    }
    /* SIGHUP: a bad value is refused and the running settings kept; a good one is logged
     * as needing a restart. */
    struct daemon_run r;
    daemon_run_start(&r, model_text, "outputs: {publish_every_us: 500}\n");
    replace_in_file(r.cfg, "publish_every_us: 500", "publish_every_us: 999999");
    assert_int_equal(kill(r.pid, SIGHUP), 0);
    expect_log(&r, "outputs.publish_every_us: 999999 is out of bounds [0, 100000]; the running "
                   "settings are kept");
    replace_in_file(r.cfg, "publish_every_us: 999999", "publish_every_us: 2000");
    assert_int_equal(kill(r.pid, SIGHUP), 0);
    expect_log(&r, "config: outputs.publish_every_us changed: needs a restart");
    daemon_run_status_tick(&r);
    assert_int_equal(daemon_run_stop(&r), 0);
}

int
main(int argc, char **argv)
{
    (void)argc;
    daemon_run_find_binaries(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_publish_10khz_batches_all_in_order, daemon_run_teardown),
        cmocka_unit_test_teardown(test_publish_10khz_every_tick_when_zero, daemon_run_teardown),
        cmocka_unit_test_teardown(test_publish_1khz_every_tick, daemon_run_teardown),
        cmocka_unit_test_teardown(test_publish_lockstep_unaffected, daemon_run_teardown),
        cmocka_unit_test_teardown(test_publish_bad_values_refused, daemon_run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
