/* Integration tests of the daemon's interfaces to its ecosystem: one daemon per endpoint
 * (a lock next to the ipc sockets), daemon-lifetime counters that never go down across a
 * swap and a restore, the model's inputs and readouts in Status, and the systemd reload
 * protocol (RELOADING=1 with MONOTONIC_USEC, then READY=1) and STATUS= lines. The real
 * build/etraced on private ipc paths in a temporary directory, each step bounded in time.
 * Environment: ETRACED and ETRACECTL override the binaries (default: next to this test). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon_run.h"
#include "etrace_client.h"

static const char model_text[] = DAEMON_RUN_ITEST_MODEL;

/* Runs the shell command cmd and puts what it printed (at most len - 1 bytes) in out. */
static void
run_capture(const char *cmd, char *out, size_t len)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    pclose(p);
}

/* A second etraced on the same config: it must exit non-zero at once, naming the pid of
 * the daemon that holds the endpoints, and leave that daemon answering. */
static void
test_iface_one_daemon_per_endpoint(void **state)
{
    struct daemon_run r;
    char cmd[1600], out[4096] = "";
    (void)state;
    daemon_run_start(&r, model_text, "clock: lockstep\n");
    snprintf(cmd, sizeof cmd, "timeout 20 %s --config %s 2>&1; echo \"exit=$?\"",
             daemon_run_etraced(), r.cfg);
    run_capture(cmd, out, sizeof out);
    print_message("second daemon: %s", out);
    char want[64];
    snprintf(want, sizeof want, "in use by etraced pid %ld", (long)r.pid);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "exit=1"));
    assert_null(strstr(out, "ready"));
    /* The first one still owns its sockets. */
    daemon_run_status_tick(&r);
    float x[4] = {0.1f, 0.2f, 0.3f, 0.4f}, y[2] = {1.0f, 0.5f};
    Etrace__Reply *rep = NULL;
    assert_int_equal(daemon_run_step_target(&r, "sensors", x, 4, "action", y, 2, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* A daemon that stops removes its lock files, so that one run by hand as root leaves
 * nothing that keeps the service (another user) from starting; as root, a lock file that
 * another user left (a killed daemon) is refused with a message naming its owner. */
static void
test_iface_locks_removed_at_stop(void **state)
{
    struct daemon_run r;
    static const char *const names[4] = {"input", "output", "control", "stats"};
    char path[700], cmd[1600], out[4096] = "";
    (void)state;
    daemon_run_start(&r, model_text, "clock: lockstep\n");
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s.lock", r.dir, names[i]);
        assert_int_equal(access(path, F_OK), 0);
    }
    assert_int_equal(daemon_run_stop_keep(&r), 0);
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s.lock", r.dir, names[i]);
        if (access(path, F_OK) == 0)
            fail_msg("%s is left after a clean stop", path);
    }
    /* As root only, and only where uid 65534 can run the binary (a checkout under a 0700
     * home cannot) and a sanitizer's options name no file it may not read. */
    snprintf(cmd, sizeof cmd, "setpriv --reuid=65534 --regid=65534 --clear-groups test -x %s",
             daemon_run_etraced());
    if (geteuid() != 0 || daemon_run_sanitized() || system(cmd) != 0)
        print_message("a lock left by another user: not run here (needs root, a plain etraced "
                      "that uid 65534 can run)\n");
    else {
        /* The directory and files become uid 65534's, as a service user's would be, with a
         * lock root left there; etraced run as 65534 must refuse it by name. */
        snprintf(cmd, sizeof cmd, "chown -R 65534:65534 %s", r.dir);
        daemon_run_cmd(cmd, 0);
        snprintf(path, sizeof path, "%s/control.lock", r.dir);
        daemon_run_write_file(path, "1\n");
        assert_int_equal(chmod(path, 0600), 0);
        snprintf(cmd, sizeof cmd,
                 "timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups %s --config %s "
                 "2>&1; echo \"exit=$?\"",
                 daemon_run_etraced(), r.cfg);
        run_capture(cmd, out, sizeof out);
        print_message("a lock left by root: %s", out);
        assert_non_null(strstr(out, "control.lock: owned by uid 0, not ours"));
        assert_non_null(strstr(out, "exit=1"));
        assert_null(strstr(out, "ready"));
    }
    daemon_run_rm_tree(r.dir);
}

static void
steps(struct daemon_run *r, int n)
{
    float x[4] = {0.1f, 0.2f, 0.3f, 0.4f}, y[2] = {1.0f, 0.5f};
    for (int k = 0; k < n; k++) {
        Etrace__Reply *rep = NULL;
        assert_int_equal(daemon_run_step_target(r, "sensors", x, 4, "action", y, 2, &rep),
                         ETRACE_OK);
        etrace_reply_free(rep);
    }
}

/* A Stats taken after the steps so far (daemon_run_stats: published after the call). */
static Etrace__Stats *
stats_now(struct daemon_run *r)
{
    return daemon_run_stats(r);
}

/* The *_total counts grow across a load without keep_weights (the model's own optimizer
 * steps start again at 0) and a restore (the model's tick goes back), while the model's
 * own counts do what the model does. */
static void
test_iface_lifetime_counters(void **state)
{
    struct daemon_run r;
    char path[600];
    Etrace__Reply *rep = NULL;
    (void)state;
    daemon_run_start(&r, model_text, "clock: lockstep\nstats_period_ms: 50\n");
    steps(&r, 30);
    assert_int_equal(etrace_checkpoint(r.c, "at30", &rep), ETRACE_OK);
    etrace_reply_free(rep);
    steps(&r, 20);
    Etrace__Stats *a = stats_now(&r);
    assert_int_equal(a->tick, 50);
    assert_int_equal(a->ticks_total, 50);
    assert_int_equal(a->optimizer_steps_total, a->optimizer_steps);
    assert_true(a->optimizer_steps > 0);
    assert_string_equal(a->model_name, "itest");
    assert_true(a->model_hash != 0);
    assert_true(a->uptime_ns > 0);
    assert_true(a->rss_bytes > 0);

    /* A load without keep_weights: the model's steps restart, the daemon's go on. */
    snprintf(path, sizeof path, "%s/model.yaml", r.dir);
    assert_int_equal(etrace_load(r.c, path, 0, 0, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    steps(&r, 5);
    Etrace__Stats *b = stats_now(&r);
    print_message("after load: steps %llu (model %llu), ticks %llu\n",
                  (unsigned long long)b->optimizer_steps_total,
                  (unsigned long long)b->optimizer_steps, (unsigned long long)b->ticks_total);
    assert_true(b->optimizer_steps < a->optimizer_steps);
    assert_int_equal(b->optimizer_steps_total - a->optimizer_steps_total, b->optimizer_steps);
    assert_int_equal(b->ticks_total, 55);
    assert_int_equal(b->inputs[0]->frames, 55);

    /* A restore: the model's tick goes back to 30, the daemon's count goes on. */
    assert_int_equal(etrace_restore(r.c, "at30", &rep), ETRACE_OK);
    etrace_reply_free(rep);
    steps(&r, 5);
    Etrace__Stats *c = stats_now(&r);
    print_message("after restore: tick %llu, ticks_total %llu, steps_total %llu\n",
                  (unsigned long long)c->tick, (unsigned long long)c->ticks_total,
                  (unsigned long long)c->optimizer_steps_total);
    assert_int_equal(c->tick, 35);
    assert_int_equal(c->ticks_total, 60);
    assert_true(c->optimizer_steps_total > b->optimizer_steps_total);
    assert_true(c->updates_refused_total >= b->updates_refused_total);
    assert_true(c->state_resets_total >= b->state_resets_total);
    etrace__stats__free_unpacked(a, NULL);
    etrace__stats__free_unpacked(b, NULL);
    etrace__stats__free_unpacked(c, NULL);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* Status names the model's inputs and readouts with their sizes and kinds, and the
 * version. */
static void
test_iface_status_layout(void **state)
{
    struct daemon_run r;
    Etrace__Reply *rep = NULL;
    (void)state;
    daemon_run_start(&r, model_text, "clock: lockstep\n");
    assert_int_equal(etrace_status(r.c, &rep), ETRACE_OK);
    const Etrace__Status *s = rep->status;
    assert_string_equal(s->version, ETRACE_VERSION);
    assert_int_equal(s->n_inputs, 2);
    assert_string_equal(s->inputs[0]->name, "sensors");
    assert_int_equal(s->inputs[0]->size, 4);
    assert_false(s->inputs[0]->spikes);
    assert_string_equal(s->inputs[1]->name, "ev");
    assert_int_equal(s->inputs[1]->size, 6);
    assert_true(s->inputs[1]->spikes);
    assert_int_equal(s->n_readouts, 1);
    assert_string_equal(s->readouts[0]->name, "action");
    assert_int_equal(s->readouts[0]->size, 2);
    assert_string_equal(s->readouts[0]->kind, "values");
    etrace_reply_free(rep);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* etrace_send_frame and etrace_send_target refuse what does not fit the model, with the
 * size it expects, before sending; what fits goes through. */
static void
test_iface_client_checks_sizes(void **state)
{
    struct daemon_run r;
    float x[5] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
    int32_t sp[1] = {2};
    (void)state;
    daemon_run_start(&r, model_text, "");
    assert_int_equal(etrace_send_frame(r.c, "sensors", x, 4, 1), ETRACE_OK);
    assert_int_equal(etrace_send_frame(r.c, "sensors", x, 3, 2), ETRACE_EREPLY);
    print_message("wrong size: %s\n", etrace_client_error(r.c));
    assert_non_null(strstr(etrace_client_error(r.c), "input 'sensors' takes 4 values, not 3"));
    assert_int_equal(etrace_send_frame(r.c, "nosuch", x, 4, 3), ETRACE_EREPLY);
    assert_non_null(strstr(etrace_client_error(r.c), "no input 'nosuch'"));
    assert_int_equal(etrace_send_spikes(r.c, "ev", sp, 1, 4), ETRACE_OK);
    assert_int_equal(etrace_send_spikes(r.c, "sensors", sp, 1, 5), ETRACE_EREPLY);
    assert_int_equal(etrace_send_target(r.c, "action", x, 2), ETRACE_OK);
    assert_int_equal(etrace_send_target(r.c, "action", x, 5), ETRACE_EREPLY);
    assert_non_null(strstr(etrace_client_error(r.c), "takes targets of 2 values, not 5"));
    /* etracectl send: the same check, exit 1, the expected size on stderr. */
    char cmd[2048], out[1024] = "";
    snprintf(cmd, sizeof cmd, "%s --config %s send --input sensors=1,2 2>&1; echo \"exit=$?\"",
             daemon_run_etracectl(), r.cfg);
    run_capture(cmd, out, sizeof out);
    print_message("etracectl send: %s", out);
    assert_non_null(strstr(out, "input 'sensors' takes 4 values, not 2"));
    assert_non_null(strstr(out, "exit=1"));
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* etrace_sub_recv_latest_output returns the newest Output, where etrace_sub_recv_output
 * returns the oldest queued. */
static void
test_iface_latest_output(void **state)
{
    struct daemon_run r;
    Etrace__Output *o = NULL, *latest = NULL;
    (void)state;
    daemon_run_start(&r, model_text, "");
    etrace_sub_t *q = etrace_sub_new(r.ep[1], "action");
    etrace_sub_t *l = etrace_sub_new(r.ep[1], "action");
    assert_non_null(q);
    assert_non_null(l);
    assert_int_equal(etrace_sub_recv_output(q, 5000, &o), ETRACE_OK);
    uint64_t first = o->tick;
    etrace__output__free_unpacked(o, NULL);
    assert_int_equal(etrace_sub_recv_output(l, 5000, &o), ETRACE_OK);
    etrace__output__free_unpacked(o, NULL);
    /* Wait (bounded) until the daemon has run 300 more ticks, however loaded the machine. */
    for (int64_t deadline = daemon_run_now_ms() + 20000;
         daemon_run_status_tick(&r) < first + 300 && daemon_run_now_ms() < deadline;)
        daemon_run_sleep_ms(20);
    assert_int_equal(etrace_sub_recv_latest_output(l, 5000, &latest), ETRACE_OK);
    assert_int_equal(etrace_sub_recv_output(q, 5000, &o), ETRACE_OK);
    uint64_t now = daemon_run_status_tick(&r);
    print_message("latest %llu, queued next %llu, daemon %llu\n", (unsigned long long)latest->tick,
                  (unsigned long long)o->tick, (unsigned long long)now);
    assert_true(o->tick < first + 50);
    assert_true(latest->tick > o->tick + 100);
    assert_true(latest->tick <= now);
    etrace__output__free_unpacked(o, NULL);
    etrace__output__free_unpacked(latest, NULL);
    etrace_sub_free(&q);
    etrace_sub_free(&l);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* Everything the notification socket received within ms milliseconds, lines joined by
 * '\n' (datagrams too), into buf[len]. */
static void
notify_collect(int fd, int ms, char *buf, size_t len)
{
    size_t used = strlen(buf);
    for (int64_t deadline = daemon_run_now_ms() + ms;;) {
        int64_t left = deadline - daemon_run_now_ms();
        if (left <= 0 || used + 2 >= len)
            return;
        struct timeval tv = {left / 1000, (long)(left % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t got = recv(fd, buf + used, len - used - 2, 0);
        if (got <= 0)
            continue;
        used += (size_t)got;
        buf[used++] = '\n';
        buf[used] = '\0';
    }
}

static void
test_iface_sdnotify_reload_status(void **state)
{
    struct daemon_run r;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    static char buf[65536];
    Etrace__Reply *rep = NULL;
    (void)state;
    daemon_run_prepare(&r, model_text);
    assert_true(strlen(r.dir) + sizeof "/notify" <= sizeof sa.sun_path);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/notify", r.dir);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    setenv("NOTIFY_SOCKET", sa.sun_path, 1);
    int launched = daemon_run_launch(&r, NULL, "stats_period_ms: 100\n", NULL);
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(launched, 0);

    /* Ticking with learning on: a STATUS= line with the model, its rate and learning. */
    buf[0] = '\0';
    notify_collect(fd, 600, buf, sizeof buf);
    assert_non_null(strstr(buf, "READY=1"));
    assert_non_null(strstr(buf, "STATUS=model itest, timer clock, "));
    assert_non_null(strstr(buf, "ticks/s, learning on"));
    /* Learning off shows within a stats period or two. */
    assert_int_equal(etrace_learn(r.c, 0, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    buf[0] = '\0';
    notify_collect(fd, 600, buf, sizeof buf);
    assert_non_null(strstr(buf, "learning off"));

    /* SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1. */
    buf[0] = '\0';
    assert_int_equal(kill(r.pid, SIGHUP), 0);
    notify_collect(fd, 500, buf, sizeof buf);
    print_message("after SIGHUP: %.300s\n", buf);
    char *rl = strstr(buf, "RELOADING=1");
    assert_non_null(rl);
    char *mono = strstr(rl, "MONOTONIC_USEC=");
    assert_non_null(mono);
    assert_true(strtoull(mono + strlen("MONOTONIC_USEC="), NULL, 10) > 0);
    assert_non_null(strstr(rl, "READY=1"));
    close(fd);
    assert_int_equal(daemon_run_stop(&r), 0);
}

int
main(int argc, char **argv)
{
    (void)argc;
    daemon_run_find_binaries(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_iface_one_daemon_per_endpoint, daemon_run_teardown),
        cmocka_unit_test_teardown(test_iface_locks_removed_at_stop, daemon_run_teardown),
        cmocka_unit_test_teardown(test_iface_lifetime_counters, daemon_run_teardown),
        cmocka_unit_test_teardown(test_iface_status_layout, daemon_run_teardown),
        cmocka_unit_test_teardown(test_iface_sdnotify_reload_status, daemon_run_teardown),
        cmocka_unit_test_teardown(test_iface_client_checks_sizes, daemon_run_teardown),
        cmocka_unit_test_teardown(test_iface_latest_output, daemon_run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
