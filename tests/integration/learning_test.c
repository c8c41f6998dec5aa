/* Integration tests of learning through the daemon (issue 5's checks that need learning):
 * the loss falls in Stats while a lockstep client streams inputs and targets, and a
 * non-finite update is refused and counted in Stats while ticks go on. The real
 * build/etraced on private ipc paths in a temp dir, through libetrace-client, bounded time.
 * Environment: ETRACED overrides the binary (default: BUILD/etraced next to this test). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "daemon_run.h"
#include "etrace_client.h"

/* A memoryless regression: targets are a fixed linear map of the inputs, which the
 * dense projection into the linear readout can learn exactly. */
static const char model_text[] =
    "name: learn_itest\n"
    "dt: 1.0e-3\n"
    "seed: 5\n"
    "inputs:\n  - {name: x, size: 4}\n"
    "cells:\n  - {name: out, model: linear, size: 2}\n"
    "projections:\n  - {name: w, from: x, to: out, weight: {init: zeros}}\n"
    "readouts:\n  - {name: y, cell: out}\n"
    "learning:\n  algorithm: d_rtrl\n  optimizer: {kind: sgd, lr: 0.2}\n";

/* The config lines: a tick per step request, a Stats snapshot every 10 ms. */
static const char config_extra[] = "clock: lockstep\nstats_period_ms: 10\n";

/* One lockstep tick with input x and target y = A x. */
static void
step(struct daemon_run *r, unsigned *seed)
{
    static const float A[2][4] = {{0.5f, -0.3f, 0.2f, 0.8f}, {-0.6f, 0.1f, 0.7f, -0.2f}};
    float x[4], y[2];
    for (int i = 0; i < 4; i++)
        x[i] = (float)rand_r(seed) / (float)RAND_MAX;
    for (int o = 0; o < 2; o++)
        y[o] = A[o][0] * x[0] + A[o][1] * x[1] + A[o][2] * x[2] + A[o][3] * x[3];
    Etrace__Reply *rep = NULL;
    assert_int_equal(daemon_run_step_target(r, "x", x, 4, "y", y, 2, &rep), ETRACE_OK);
    etrace_reply_free(rep);
}

/* Steps until `steps` have run, collecting the loss average of every Stats period that
 * saw ticks (a lockstep period without steps reports no loss). Returns how many it got. */
static int
collect_loss(struct daemon_run *r, unsigned *seed, int steps, double *loss, int max)
{
    etrace_sub_t *s = etrace_sub_new(r->ep[3], "stats");
    assert_non_null(s);
    int n = 0;
    uint64_t last_tick = 0;
    for (int k = 0; k < steps; k++) {
        step(r, seed);
        Etrace__Stats *st = NULL;
        while (etrace_sub_recv_stats(s, 0, &st) == ETRACE_OK) {
            if (st->tick > last_tick && st->loss_avg > 0.0 && n < max)
                loss[n++] = st->loss_avg;
            last_tick = st->tick;
            etrace__stats__free_unpacked(st, NULL);
        }
    }
    etrace_sub_free(&s);
    return n;
}

static void
test_learning_loss_falls_in_stats(void **state)
{
    (void)state;
    struct daemon_run r;
    daemon_run_start(&r, model_text, config_extra);
    unsigned seed = 1;
    double loss[4096];
    int n = collect_loss(&r, &seed, 3000, loss, 4096);
    printf("  %d stats periods with ticks; loss_avg first %.3g, last %.3g\n", n, n ? loss[0] : 0.0,
           n ? loss[n - 1] : 0.0);
    assert_true(n >= 4);
    assert_true(loss[n - 1] < loss[0] / 10.0); /* the loss the daemon reports fell tenfold */
    daemon_run_stop(&r);
}

static void
test_learning_refused_update_counted(void **state)
{
    (void)state;
    struct daemon_run r;
    daemon_run_start(&r, model_text, config_extra);
    unsigned seed = 2;
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_lr(r.c, 1e38, &rep), ETRACE_OK); /* every step overflows */
    etrace_reply_free(rep);
    etrace_sub_t *sub = etrace_sub_new(r.ep[3], "stats");
    assert_non_null(sub);
    for (int k = 0; k < 20; k++)
        step(&r, &seed);
    Etrace__Stats *st = NULL; /* the first Stats published after the 20th tick */
    for (int tries = 0; tries < 200; tries++) {
        assert_int_equal(etrace_sub_recv_stats(sub, 2000, &st), ETRACE_OK);
        if (st->tick == 20)
            break;
        etrace__stats__free_unpacked(st, NULL);
        st = NULL;
    }
    etrace_sub_free(&sub);
    assert_non_null(st);
    printf("  updates_refused %llu, optimizer steps %llu, tick %llu\n",
           (unsigned long long)st->updates_refused, (unsigned long long)st->optimizer_steps,
           (unsigned long long)st->tick);
    assert_true(st->updates_refused >= 1);
    assert_int_equal(st->tick, 20); /* every step ran */
    etrace__stats__free_unpacked(st, NULL);
    /* the weights stayed finite: export them */
    assert_int_equal(etrace_export(r.c, &rep), ETRACE_OK);
    for (size_t i = 0; i < rep->export->n_tensors; i++)
        for (size_t k = 0; k < rep->export->tensors[i]->n_values; k++)
            assert_true(isfinite(rep->export->tensors[i]->values[k]));
    etrace_reply_free(rep);
    daemon_run_stop(&r);
}

int
main(int argc, char **argv)
{
    (void)argc;
    daemon_run_find_binaries(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_learning_loss_falls_in_stats, daemon_run_teardown),
        cmocka_unit_test_teardown(test_learning_refused_update_counted, daemon_run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
