/* Integration tests of learning through the daemon (issue 5's checks that need learning):
 * the loss falls in Stats while a lockstep client streams inputs and targets, and a
 * non-finite update is refused and counted in Stats while ticks go on. The real
 * build/etraced on private ipc paths in a temp dir, through libetrace-client, bounded time.
 * Environment: ETRACED overrides the binary (default: BUILD/etraced next to this test). */
#include <signal.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "etrace_client.h"

extern char **environ;

static char bin_etraced[1024];

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

struct run {
    char dir[64];
    char ep[4][160];
    pid_t pid;
    etrace_client_t *c;
};

static void
start(struct run *r)
{
    static const char *const names[4] = {"input", "output", "control", "stats"};
    char path[256], cfg[2048], log[256];
    snprintf(r->dir, sizeof r->dir, "/tmp/etraced-ltest-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    snprintf(path, sizeof path, "%s/model.yaml", r->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(model_text, f);
    fclose(f);
    int n = snprintf(cfg, sizeof cfg,
                     "model: model.yaml\nclock: lockstep\nstats_period_ms: 10\nendpoints:\n");
    for (int i = 0; i < 4; i++) {
        snprintf(r->ep[i], sizeof r->ep[i], "ipc://%s/%s", r->dir, names[i]);
        n += snprintf(cfg + n, sizeof cfg - (size_t)n, "  %s: %s\n", names[i], r->ep[i]);
    }
    snprintf(path, sizeof path, "%s/etraced.yaml", r->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(cfg, f);
    fclose(f);
    snprintf(log, sizeof log, "%s/daemon.log", r->dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    setenv("XDG_RUNTIME_DIR", r->dir, 1);
    setenv("XDG_STATE_HOME", r->dir, 1);
    char *argv[] = {bin_etraced, "--config", path, NULL};
    assert_int_equal(posix_spawn(&r->pid, bin_etraced, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    r->c = etrace_client_new(r->ep[2], r->ep[0], 300);
    assert_non_null(r->c);
    for (int tries = 0;; tries++) { /* at most 10 s until `status` answers */
        Etrace__Reply *rep = NULL;
        int rc = etrace_status(r->c, &rep);
        etrace_reply_free(rep);
        if (rc == ETRACE_OK)
            break;
        if (tries > 33 || waitpid(r->pid, NULL, WNOHANG) == r->pid)
            fail_msg("etraced did not start (see %s)", log);
    }
    etrace_client_free(&r->c); /* a patient client for the test itself */
    r->c = etrace_client_new(r->ep[2], r->ep[0], 5000);
    assert_non_null(r->c);
}

static void
stop(struct run *r)
{
    Etrace__Reply *rep = NULL;
    etrace_shutdown(r->c, &rep);
    etrace_reply_free(rep);
    for (int i = 0; i < 500 && waitpid(r->pid, NULL, WNOHANG) == 0; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    if (waitpid(r->pid, NULL, WNOHANG) == 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
    }
    etrace_client_free(&r->c);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", r->dir);
    (void)!system(cmd);
}

/* One lockstep tick with input x and target y = A x. */
static void
step(struct run *r, unsigned *seed)
{
    static const float A[2][4] = {{0.5f, -0.3f, 0.2f, 0.8f}, {-0.6f, 0.1f, 0.7f, -0.2f}};
    float x[4], y[2];
    for (int i = 0; i < 4; i++)
        x[i] = (float)rand_r(seed) / (float)RAND_MAX;
    for (int o = 0; o < 2; o++)
        y[o] = A[o][0] * x[0] + A[o][1] * x[1] + A[o][2] * x[2] + A[o][3] * x[3];
    Etrace__Input in = ETRACE__INPUT__INIT;
    Etrace__Frame f = ETRACE__FRAME__INIT, *fp = &f;
    Etrace__Signal s = ETRACE__SIGNAL__INIT, *sp = &s;
    Etrace__Signal__Target t = ETRACE__SIGNAL__TARGET__INIT;
    f.name = "x";
    f.values = x;
    f.n_values = 4;
    t.values = y;
    t.n_values = 2;
    s.readout = "y";
    s.kind_case = ETRACE__SIGNAL__KIND_TARGET;
    s.target = &t;
    in.frames = &fp;
    in.n_frames = 1;
    in.signals = &sp;
    in.n_signals = 1;
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_step(r->c, &in, 0, &rep), ETRACE_OK);
    etrace_reply_free(rep);
}

/* Steps until `steps` have run, collecting the loss average of every Stats period that
 * saw ticks (a lockstep period without steps reports no loss). Returns how many it got. */
static int
collect_loss(struct run *r, unsigned *seed, int steps, double *loss, int max)
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
    struct run r;
    start(&r);
    unsigned seed = 1;
    double loss[4096];
    int n = collect_loss(&r, &seed, 3000, loss, 4096);
    printf("  %d stats periods with ticks; loss_avg first %.3g, last %.3g\n", n,
           n ? loss[0] : 0.0, n ? loss[n - 1] : 0.0);
    assert_true(n >= 4);
    assert_true(loss[n - 1] < loss[0] / 10.0); /* the loss the daemon reports fell tenfold */
    stop(&r);
}

static void
test_learning_refused_update_counted(void **state)
{
    (void)state;
    struct run r;
    start(&r);
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
    stop(&r);
}

int
main(int argc, char **argv)
{
    (void)argc;
    const char *e = getenv("ETRACED");
    if (e) {
        snprintf(bin_etraced, sizeof bin_etraced, "%s", e);
    } else {
        snprintf(bin_etraced, sizeof bin_etraced, "%s", argv[0]);
        for (int i = 0; i < 2; i++) /* BUILD/tests/integration/x -> BUILD */
            *strrchr(bin_etraced, '/') = '\0';
        *strrchr(bin_etraced, '/') = '\0';
        strcat(bin_etraced, "/etraced");
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learning_loss_falls_in_stats),
        cmocka_unit_test(test_learning_refused_update_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
