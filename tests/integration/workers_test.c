/* Tick workers through the daemon (engine.threads, DESIGN §5.2): a lockstep daemon with
 * engine.threads: 2 on a model whose learning weight is above the workers' threshold (a
 * sparse recurrent weight of ~630k synapses, a dense and an elemwise one beside it) is
 * recorded; `etraced run --replay --threads 1` reproduces its outputs and final weights bit
 * for bit, and `--threads 2` writes the same files byte for byte. ES-D-RTRL immediate and
 * deferred, and D-RTRL. Then the loop thread stays responsive while that model ticks on 2
 * threads in timer mode (overrunning every period): `status` round trips are timed and
 * printed, bounded generously (the machine is shared). The real build/etraced on private
 * ipc paths in a temporary directory, each step bounded in time. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon_run.h"
#include "etrace_client.h"

#define MODEL_FMT                                                                                  \
    "name: workers\n"                                                                              \
    "dt: 1.0e-3\n"                                                                                 \
    "seed: 3\n"                                                                                    \
    "inputs:\n  - {name: sensors, size: 16}\n"                                                     \
    "cells:\n"                                                                                     \
    "  - {name: h, model: lif, size: 1024, params: {tau: 2.0e-2}}\n"                               \
    "  - {name: g, model: linear, size: 1024}\n"                                                   \
    "  - {name: out, model: linear, size: 2}\n"                                                    \
    "projections:\n"                                                                               \
    "  - {name: w_in, from: sensors, to: h.i, weight: {init: normal, std: 1.0}, bias: {init: "     \
    "constant, value: 0.6}}\n"                                                                     \
    "  - {name: w_rec, from: h, to: h.i, op: sparse, weight: {prob: 0.6, seed: 2, init: normal, "  \
    "std: 0.05}}\n"                                                                                \
    "  - {name: w_g, from: h, to: g, op: elemwise, weight: {init: normal, std: 0.5}}\n"            \
    "  - {name: w_out, from: [h, g], to: out, weight: {init: normal, std: 0.05}, bias: {init: "    \
    "zeros}}\n"                                                                                    \
    "readouts:\n  - {name: action, cell: out}\n"                                                   \
    "learning:\n  algorithm: %s\n  decay_or_rank: 0.9\n  signal: target\n"                         \
    "  optimizer: {kind: sgd, lr: 1.0e-3}\n  defer: %d\n"

enum { STEPS = 60 };

static const char *const params[] = {"w_in.weight", "w_in.bias",    "w_rec.weight",
                                     "w_g.weight",  "w_out.weight", "w_out.bias"};

/* Runs `etraced run --replay rec --threads n --out dir`. */
static void
replay(const char *rec, int n, const char *dir)
{
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "%s run --replay %s --threads %d --out %s >/dev/null",
             daemon_run_etraced(), rec, n, dir);
    daemon_run_cmd(cmd, 0);
}

static void
check_replays(const char *algo, int defer)
{
    static char model[4096];
    snprintf(model, sizeof model, MODEL_FMT, algo, defer);
    struct daemon_run r;
    daemon_run_start(&r, model, "clock: lockstep\nengine: {threads: 2}\n");
    if (!strstr(daemon_run_log_text(&r), "engine.threads 2: ") ||
        !strstr(daemon_run_log_text(&r), ", on)"))
        fail_msg("the daemon does not say that this model runs on 2 threads");
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_record_start(r.c, "rec", &rep), ETRACE_OK);
    etrace_reply_free(rep);
    float live[STEPS][2];
    for (int k = 0; k < STEPS; k++) {
        float x[16], y[2] = {0.4f * sinf((float)k * 0.1f), -0.2f};
        for (int i = 0; i < 16; i++)
            x[i] = 1.5f * sinf((float)(k * 16 + i) * 0.37f) + 0.5f;
        rep = NULL;
        assert_int_equal(daemon_run_step_target(&r, "sensors", x, 16, "action", y, 2, &rep),
                         ETRACE_OK);
        assert_int_equal(rep->step->n_outputs, 1);
        memcpy(live[k], rep->step->outputs[0]->values, sizeof live[k]);
        etrace_reply_free(rep);
    }
    rep = NULL;
    assert_int_equal(etrace_record_stop(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    char dir[700], rec[700], a[800], b[800];
    snprintf(dir, sizeof dir, "%s/live", r.dir);
    daemon_run_export_to(&r, dir);
    snprintf(rec, sizeof rec, "%s/etraced/rec", r.dir);
    snprintf(dir, sizeof dir, "%s/one", r.dir);
    replay(rec, 1, dir);
    snprintf(dir, sizeof dir, "%s/two", r.dir);
    replay(rec, 2, dir);
    float one[STEPS][2];
    snprintf(a, sizeof a, "%s/one/outputs/action.npy", r.dir);
    assert_int_equal(daemon_run_read_npy_f32(a, &one[0][0], 2 * STEPS), 0);
    if (memcmp(live, one, sizeof live))
        fail_msg("%s defer %d: the live outputs (2 threads) differ from the 1-thread replay", algo,
                 defer);
    snprintf(b, sizeof b, "%s/two/outputs/action.npy", r.dir);
    if (!daemon_run_same_file(a, b))
        fail_msg("%s defer %d: replays on 1 and 2 threads differ", algo, defer);
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        char l[800];
        snprintf(l, sizeof l, "%s/live/params/%s.npy", r.dir, params[i]);
        snprintf(a, sizeof a, "%s/one/params/%s.npy", r.dir, params[i]);
        snprintf(b, sizeof b, "%s/two/params/%s.npy", r.dir, params[i]);
        if (!daemon_run_same_file(l, a) || !daemon_run_same_file(a, b))
            fail_msg("%s defer %d: %s differs (live 2 threads, replay 1 and 2 threads)", algo,
                     defer, params[i]);
    }
    print_message("%s defer %d: %d lockstep ticks on 2 threads = replays on 1 and 2 threads, "
                  "outputs and weights bit for bit\n",
                  algo, defer, STEPS);
    assert_int_equal(daemon_run_stop(&r), 0);
}

static void
test_workers_replay_es(void **state)
{
    (void)state;
    check_replays("es_d_rtrl", 1);
}

static void
test_workers_replay_es_deferred(void **state)
{
    (void)state;
    check_replays("es_d_rtrl", 8);
}

static void
test_workers_replay_drtrl(void **state)
{
    (void)state;
    check_replays("d_rtrl", 1);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The loop thread answers `status` while the model ticks back to back on 2 threads. */
static void
test_workers_loop_responsive(void **state)
{
    (void)state;
    static char model[4096];
    snprintf(model, sizeof model, MODEL_FMT, "es_d_rtrl", 1);
    struct daemon_run r;
    daemon_run_start(&r, model, "engine: {threads: 2}\n");
    uint64_t t0 = daemon_run_status_tick(&r);
    enum { N = 50 };
    double ms[N];
    for (int i = 0; i < N; i++) {
        float tg[2] = {0.3f, -0.1f};
        etrace_send_target(r.c, "action", tg, 2);
        int64_t a = daemon_run_now_ms();
        Etrace__Reply *rep = NULL;
        assert_int_equal(etrace_status(r.c, &rep), ETRACE_OK);
        etrace_reply_free(rep);
        ms[i] = (double)(daemon_run_now_ms() - a);
        daemon_run_sleep_ms(20);
    }
    uint64_t t1 = daemon_run_status_tick(&r);
    qsort(ms, N, sizeof ms[0], cmp_double);
    print_message("status round trip while ticking on 2 threads (%llu ticks in the run): p50 "
                  "%.0f ms, p90 %.0f ms, max %.0f ms\n",
                  (unsigned long long)(t1 - t0), ms[N / 2], ms[N * 9 / 10], ms[N - 1]);
    assert_true(t1 > t0);
    assert_true(ms[N / 2] < 1000.0); /* generous: a stalled loop would time out (5 s) */
    assert_int_equal(daemon_run_stop(&r), 0);
}

int
main(int argc, char **argv)
{
    (void)argc;
    daemon_run_find_binaries(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_workers_replay_es, daemon_run_teardown),
        cmocka_unit_test_teardown(test_workers_replay_es_deferred, daemon_run_teardown),
        cmocka_unit_test_teardown(test_workers_replay_drtrl, daemon_run_teardown),
        cmocka_unit_test_teardown(test_workers_loop_responsive, daemon_run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
