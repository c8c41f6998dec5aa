/* Integration tests of the operations (issue 6): hot swap, crash-safe checkpoints,
 * record and replay, daemon-side names: the real build/etraced on private ipc paths in
 * a temporary directory, driven through libetrace-client and build/etracectl, each with a
 * time bound, every daemon stopped and its directory removed.
 * Environment: ETRACED and ETRACECTL override the binaries (default: next to this test,
 * BUILD/etraced and BUILD/etracectl). */
#include <signal.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <setjmp.h>
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
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>

#include "daemon_run.h"
#include "etrace_client.h"
#include "etrace_recording.h"

static const char model_text[] = DAEMON_RUN_ITEST_MODEL;
/* The same model with deferred rank-one steps (learning.defer, DESIGN §4.4). The timer-mode
 * recordings below happened to start right after a flush in every run we looked at, so
 * pending pairs in a snapshot are covered by test_ops_checkpoint_restore_deferred (lockstep,
 * a checkpoint after 13 steps). OPS_FILTER=PATTERN runs the matching tests only. */
static const char model_deferred[] = DAEMON_RUN_ITEST_MODEL "  defer: 5\n";

/* ---- hot swap ----------------------------------------------------------------------- */

static void
test_ops_hot_swap(void **state)
{
    struct daemon_run r;
    char path[600], a[600], b[600], fa[700], fb[700];
    (void)state;
    daemon_run_start(&r, model_text, "stats_period_ms: 100\n");
    /* Another model with the same projections (other seed): --keep-weights carries them. */
    snprintf(path, sizeof path, "%s/other.yaml", r.dir);
    char other[sizeof(model_text) + 8];
    snprintf(other, sizeof other, "%s", model_text);
    char *seed = strstr(other, "seed: 3");
    seed[6] = '9';
    daemon_run_write_file(path, other);
    etrace_sub_t *out = etrace_sub_new(r.ep[1], "action");
    daemon_run_sleep_ms(300);
    Etrace__Reply *rep = NULL;
    /* 1. A swap at 1 kHz: consecutive ticks on the output socket, a gap of one period. */
    assert_int_equal(etrace_load(r.c, path, 0, 0, &rep), ETRACE_OK);
    int64_t gap = rep->op->swap_gap_ns;
    uint64_t swap_tick = rep->op->tick;
    etrace_reply_free(rep);
    print_message("swap at tick %llu: gap %.1f us\n", (unsigned long long)swap_tick,
                  (double)gap / 1e3);
    /* About one period; a sanitized daemon on a loaded machine gets ten times the bound. */
    assert_true(gap > 0 && gap < (daemon_run_sanitized() ? 50000000 : 5000000));
    uint64_t prev = 0;
    int n = 0, seen_swap = 0;
    while (n < 3000) {
        Etrace__Output *o = NULL;
        if (etrace_sub_recv_output(out, 2000, &o) != ETRACE_OK)
            break;
        if (n && o->tick != prev + 1)
            fail_msg("tick %llu follows %llu", (unsigned long long)o->tick,
                     (unsigned long long)prev);
        seen_swap |= o->tick == swap_tick;
        prev = o->tick;
        etrace__output__free_unpacked(o, NULL);
        n++;
        if (seen_swap && o && prev > swap_tick + 100)
            break;
    }
    assert_true(seen_swap);
    etrace_sub_free(&out);
    /* 2. A broken model changes nothing; the reply names the error. */
    snprintf(path, sizeof path, "%s/bad.yaml", r.dir);
    daemon_run_write_file(path,
                          "name: bad\ndt: 1.0e-3\ncells:\n  - {name: h, model: nope, size: 3}\n");
    Etrace__Reply *st0 = NULL;
    assert_int_equal(etrace_status(r.c, &st0), ETRACE_OK);
    assert_int_equal(etrace_load(r.c, path, 1, 0, &rep), ETRACE_EREPLY);
    assert_non_null(strstr(rep->error->message, "bad.yaml"));
    print_message("broken model refused: %s\n", rep->error->message);
    etrace_reply_free(rep);
    daemon_run_sleep_ms(50);
    Etrace__Reply *st1 = NULL;
    assert_int_equal(etrace_status(r.c, &st1), ETRACE_OK);
    assert_string_equal(st1->status->model_name, "itest");
    assert_true(st1->status->tick > st0->status->tick);
    etrace_reply_free(st0);
    etrace_reply_free(st1);
    /* 3. --keep-weights carries every matching weight (paused: nothing moves meanwhile). */
    assert_int_equal(etrace_pause(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    snprintf(a, sizeof a, "%s/before", r.dir);
    snprintf(b, sizeof b, "%s/after", r.dir);
    daemon_run_export_to(&r, a);
    snprintf(path, sizeof path, "%s/model.yaml", r.dir);
    assert_int_equal(etrace_load(r.c, path, 1, 0, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    daemon_run_export_to(&r, b);
    static const char *const files[] = {"w_in.weight", "w_in.bias", "w_out.weight"};
    for (int i = 0; i < 3; i++) {
        snprintf(fa, sizeof fa, "%s/params/%s.npy", a, files[i]);
        snprintf(fb, sizeof fb, "%s/params/%s.npy", b, files[i]);
        if (!daemon_run_same_file(fa, fb))
            fail_msg("--keep-weights: %s differs", files[i]);
    }
    assert_int_equal(etrace_resume(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    /* 4. 100 swaps in a row leak nothing. */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(etrace_load(r.c, path, i & 1, 0, &rep), ETRACE_OK);
        etrace_reply_free(rep);
    }
    long rss0 = daemon_run_rss_kib(r.pid);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(etrace_load(r.c, path, i & 1, i % 3 == 0, &rep), ETRACE_OK);
        etrace_reply_free(rep);
    }
    long rss1 = daemon_run_rss_kib(r.pid);
    print_message("100 swaps: RSS %ld -> %ld KiB\n", rss0, rss1);
    if (!daemon_run_sanitized())
        assert_true(rss1 - rss0 < 2048);
    Etrace__Stats *st = daemon_run_stats(&r);
    assert_true(st->swaps >= 122);
    /* The last swap's gap: at 1 kHz, about one period (a tick is never lost to a swap). */
    print_message("Stats: %llu swaps, last gap %.1f us\n", (unsigned long long)st->swaps,
                  (double)st->last_swap_gap_ns / 1e3);
    assert_true(st->last_swap_gap_ns > 0 && st->last_swap_gap_ns < 50000000);
    assert_true(daemon_run_sock(st, "control")->accepted > 0);
    etrace__stats__free_unpacked(st, NULL);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* ---- crash-safe checkpoints ---------------------------------------------------------- */

/* The checkpoints a kill -9 round saw answered: name and tick. */
struct ckpt_seen {
    char name[300];
    uint64_t tick;
};

static void
test_ops_checkpoint_kill9(void **state)
{
    struct daemon_run r;
    char cmd[4000], ckdir[600], a[700], b[700], init[700];
    (void)state;
    daemon_run_start(&r, model_text, "clock: lockstep\ncheckpoint: {resume: true, keep: 3}\n");
    snprintf(ckdir, sizeof ckdir, "%s/etraced", r.dir);
    snprintf(init, sizeof init, "%s/init", r.dir);
    daemon_run_export_to(&r, init);
    srand(12345);
    static struct ckpt_seen seen[20000];
    int n_seen = 0, resumed = 0, moved = 0, k = 0;
    for (int round = 0; round < 50; round++) {
        /* Learning steps (frames and targets, so the weights move) and checkpoints in a loop
         * until killed at a random moment. */
        pid_t killer = fork();
        if (killer == 0) {
            daemon_run_sleep_ms(20 + rand() % 120);
            kill(r.pid, SIGKILL);
            _exit(0);
        }
        for (;; k++) {
            float x[4] = {sinf((float)k * 0.3f), cosf((float)k * 0.2f), 1.0f, -0.5f};
            float y[2] = {0.8f * sinf((float)k * 0.05f), -0.4f};
            Etrace__Reply *rep = NULL;
            int rc = daemon_run_step_target(&r, "sensors", x, 4, "action", y, 2, &rep);
            etrace_reply_free(rep);
            if (rc != ETRACE_OK)
                break;
            rep = NULL;
            rc = etrace_checkpoint(r.c, NULL, &rep);
            if (rc == ETRACE_OK && n_seen < (int)(sizeof seen / sizeof seen[0])) {
                const char *base = strrchr(rep->op->name, '/');
                snprintf(seen[n_seen].name, sizeof seen[n_seen].name, "%s",
                         base ? base + 1 : rep->op->name);
                seen[n_seen++].tick = rep->op->tick;
            }
            etrace_reply_free(rep);
            if (rc != ETRACE_OK)
                break;
            etrace_client_free(&r.c);
            r.c = etrace_client_new(r.ep[2], r.ep[0], 300);
        }
        waitpid(killer, NULL, 0);
        waitpid(r.pid, NULL, 0);
        size_t log_before = strlen(daemon_run_log_text(&r));
        daemon_run_respawn(&r);
        /* Once a checkpoint was answered, every restart resumes from the newest whole one:
         * its weights are that file's, its tick the one the checkpoint reported. */
        const char *p = strstr(daemon_run_log_text(&r) + log_before, "resumed from ");
        if (!p) {
            if (n_seen)
                fail_msg("round %d: a checkpoint was written but the restart did not resume",
                         round);
            continue; /* killed before the first checkpoint was whole */
        }
        char name[600];
        unsigned long long log_tick = 0;
        assert_int_equal(sscanf(p, "resumed from %599s (model %*s tick %llu)", name, &log_tick), 2);
        const char *base = strrchr(name, '/');
        base = base ? base + 1 : name;
        int found = -1;
        for (int q = n_seen - 1; q >= 0 && found < 0; q--)
            if (!strcmp(seen[q].name, base))
                found = q;
        if (found >= 0 && found < n_seen - 1)
            fail_msg("round %d: resumed from %s, not the newest answered checkpoint %s", round,
                     base, seen[n_seen - 1].name);
        uint64_t tick = daemon_run_status_tick(&r);
        if (tick != log_tick || (found >= 0 && tick != seen[found].tick))
            fail_msg("round %d: resumed at tick %llu, checkpoint %s was taken at %llu", round,
                     (unsigned long long)tick, base, log_tick);
        snprintf(a, sizeof a, "%s/r%d", r.dir, round);
        snprintf(b, sizeof b, "%s/f%d", r.dir, round);
        daemon_run_export_to(&r, a);
        snprintf(cmd, sizeof cmd, "%s export-checkpoint %s %s >/dev/null", daemon_run_etraced(),
                 name, b);
        daemon_run_cmd(cmd, 0);
        static const char *const files[] = {"w_in.weight", "w_in.bias", "w_out.weight"};
        int same_as_init = 1;
        for (int i = 0; i < 3; i++) {
            char fa[800], fb[800];
            snprintf(fa, sizeof fa, "%s/params/%s.npy", a, files[i]);
            snprintf(fb, sizeof fb, "%s/params/%s.npy", b, files[i]);
            if (!daemon_run_same_file(fa, fb))
                fail_msg("round %d: resumed weights %s differ from %s", round, files[i], name);
            snprintf(fb, sizeof fb, "%s/params/%s.npy", init, files[i]);
            same_as_init &= daemon_run_same_file(fa, fb);
        }
        moved += !same_as_init;
        resumed++;
    }
    print_message("kill -9: 50 rounds, %d restarts resumed from a whole checkpoint (%d with "
                  "learned weights), %d checkpoints answered\n",
                  resumed, moved, n_seen);
    assert_true(resumed >= 45);
    assert_true(moved >= resumed - 1);
    /* Corrupt the newest and truncate the next: both are skipped, named in the log. */
    kill(r.pid, SIGKILL);
    waitpid(r.pid, NULL, 0);
    snprintf(cmd, sizeof cmd,
             "cd %s && set -- $(ls -t ckpt-*.ckpt) && "
             "printf 'XXXX' | dd of=$1 bs=1 seek=200 conv=notrunc 2>/dev/null && "
             "truncate -s 1000 $2 && echo $1 $2 > ../victims",
             ckdir);
    daemon_run_cmd(cmd, 0);
    daemon_run_respawn(&r);
    char victims[2][300];
    snprintf(cmd, sizeof cmd, "%s/victims", r.dir);
    FILE *f = fopen(cmd, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%299s %299s", victims[0], victims[1]), 2);
    fclose(f);
    const char *lg = daemon_run_log_text(&r);
    for (int i = 0; i < 2; i++) {
        char want[700];
        snprintf(want, sizeof want, "%s skipped", victims[i]);
        if (!strstr(lg, want))
            fail_msg("no log line '%s'", want);
    }
    assert_non_null(strstr(lg, "checksum mismatch"));
    print_message("corrupt and truncated checkpoints skipped with a log line each\n");
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* ---- names ------------------------------------------------------------------------- */

static void
test_ops_names_refused(void **state)
{
    struct daemon_run r;
    char path[700], target[700];
    (void)state;
    daemon_run_start(&r, model_text, "clock: lockstep\n");
    Etrace__Reply *rep = NULL;
    static const char *const bad[] = {"../x", "a/b", "..", "/tmp/x"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(etrace_checkpoint(r.c, bad[i], &rep), ETRACE_EREPLY);
        etrace_reply_free(rep);
        assert_int_equal(etrace_restore(r.c, bad[i], &rep), ETRACE_EREPLY);
        etrace_reply_free(rep);
        assert_int_equal(etrace_record_start(r.c, bad[i], &rep), ETRACE_EREPLY);
        etrace_reply_free(rep);
    }
    snprintf(path, sizeof path, "%s/etraced/ln.ckpt", r.dir);
    snprintf(target, sizeof target, "%s/elsewhere", r.dir);
    assert_int_equal(symlink(target, path), 0);
    assert_int_equal(etrace_checkpoint(r.c, "ln", &rep), ETRACE_EREPLY);
    print_message("checkpoint ln: %s\n", rep->error->message);
    etrace_reply_free(rep);
    assert_int_equal(etrace_restore(r.c, "ln.ckpt", &rep), ETRACE_EREPLY);
    print_message("restore ln.ckpt: %s\n", rep->error->message);
    etrace_reply_free(rep);
    assert_int_equal(etrace_record_start(r.c, "ln.ckpt", &rep), ETRACE_EREPLY);
    print_message("record start ln.ckpt: %s\n", rep->error->message);
    etrace_reply_free(rep);
    struct stat st;
    assert_int_equal(stat(target, &st), -1); /* nothing was written through the link */
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* `restore f` where f.ckpt is a FIFO: answered at once with an error (the worker never
 * blocks in open), later requests work, and SIGTERM still ends the daemon. */
static void
test_ops_restore_fifo(void **state)
{
    struct daemon_run r;
    char path[700];
    (void)state;
    daemon_run_start(&r, model_text, "clock: lockstep\n");
    snprintf(path, sizeof path, "%s/etraced/f.ckpt", r.dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    Etrace__Reply *rep = NULL;
    int64_t t0 = daemon_run_now_ms();
    assert_int_equal(etrace_restore(r.c, "f", &rep), ETRACE_EREPLY);
    print_message("restore of a FIFO answered in %lld ms: %s\n",
                  (long long)(daemon_run_now_ms() - t0), rep->error->message);
    assert_non_null(strstr(rep->error->message, "not a regular file"));
    etrace_reply_free(rep);
    assert_int_equal(etrace_checkpoint(r.c, "good", &rep), ETRACE_OK);
    etrace_reply_free(rep);
    assert_int_equal(etrace_restore(r.c, "good", &rep), ETRACE_OK);
    etrace_reply_free(rep);
    assert_int_equal(kill(r.pid, SIGTERM), 0);
    int st = 0;
    for (int64_t deadline = daemon_run_now_ms() + 10000; waitpid(r.pid, &st, WNOHANG) == 0;) {
        if (daemon_run_now_ms() > deadline)
            fail_msg("etraced did not exit within 10 s of SIGTERM");
        daemon_run_sleep_ms(10);
    }
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    r.pid = 0;
    daemon_run_stop(&r);
}

/* Creates dir/name (mode 0600) and sets its modification time age_s seconds back. */
static void
touch_aged(const char *dir, const char *name, int age_s)
{
    char path[800];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    daemon_run_write_file(path, "partial");
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= age_s;
    ts[1] = ts[0];
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* Whether dir/name exists. */
static int
exists(const char *dir, const char *name)
{
    char path[800];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return lstat(path, &st) == 0;
}

/* The temporary files a crash leaves during a checkpoint write are removed at start, and
 * those untouched for a minute when pruning; other files stay. */
static void
test_ops_stale_tmp_removed(void **state)
{
    struct daemon_run r;
    char dir[600];
    (void)state;
    daemon_run_prepare(&r, model_text);
    snprintf(dir, sizeof dir, "%s/etraced", r.dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    touch_aged(dir, ".ckpt-1796593634094937992.ckpt.tmp", 0);
    touch_aged(dir, ".mine.ckpt.tmp", 3600);
    touch_aged(dir, ".notes.tmp", 3600);
    if (daemon_run_launch(&r, NULL, "clock: lockstep\n", NULL))
        fail_msg("etraced exited at start-up");
    assert_false(exists(dir, ".ckpt-1796593634094937992.ckpt.tmp"));
    assert_false(exists(dir, ".mine.ckpt.tmp"));
    assert_true(exists(dir, ".notes.tmp"));
    assert_non_null(strstr(daemon_run_log_text(&r), "removed 2 stale temporary checkpoint"));
    /* While running: a generated checkpoint prunes; an old temp file goes, a fresh one (a
     * write that may be in progress) stays. */
    touch_aged(dir, ".ckpt-1.ckpt.tmp", 3600);
    touch_aged(dir, ".ckpt-2.ckpt.tmp", 0);
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_checkpoint(r.c, NULL, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    assert_false(exists(dir, ".ckpt-1.ckpt.tmp"));
    assert_true(exists(dir, ".ckpt-2.ckpt.tmp"));
    assert_true(exists(dir, ".notes.tmp"));
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* A daemon with `extra` config must refuse to start, naming `why` in its log. */
static void
start_refused(const char *extra, const char *why)
{
    struct daemon_run r;
    daemon_run_prepare(&r, model_text);
    if (daemon_run_launch(&r, NULL, extra, NULL) == 0) {
        daemon_run_stop(&r);
        fail_msg("etraced started with '%s'", extra);
    }
    if (!strstr(daemon_run_log_text(&r), why))
        fail_msg("etraced refused '%s' without saying '%s': %s", extra, why,
                 daemon_run_log_text(&r));
    daemon_run_rm_tree(r.dir);
}

/* One rule for the checkpoint directory (owned by etraced's user or root, not group- or
 * world-writable; 0700 and 0750 are fine) and for checkpoints (written by etraced's user,
 * not group- or world-writable): a directory or checkpoint that breaks it is refused with
 * the reason, by start-up, restore and resume alike. */
static void
test_ops_checkpoint_trust(void **state)
{
    struct daemon_run r;
    char dir[600], extra[900], path[800];
    (void)state;
    static const mode_t bad_modes[] = {0777, 0770, 0703};
    for (int i = 0; i < 3; i++) {
        snprintf(dir, sizeof dir, "/tmp/etraced-itest-ckdir-%d-%d", (int)getpid(), i);
        assert_int_equal(mkdir(dir, 0700), 0);
        assert_int_equal(chmod(dir, bad_modes[i]), 0);
        snprintf(extra, sizeof extra, "clock: lockstep\ncheckpoint: {dir: %s}\n", dir);
        start_refused(extra, "group- or world-writable: refused");
        rmdir(dir);
    }
    /* 0750 (a group may read) is fine; a checkpoint others could have written is not. */
    daemon_run_prepare(&r, model_text);
    snprintf(dir, sizeof dir, "%s/ck", r.dir);
    assert_int_equal(mkdir(dir, 0750), 0);
    snprintf(extra, sizeof extra, "clock: lockstep\ncheckpoint: {dir: %s, resume: true}\n", dir);
    if (daemon_run_launch(&r, NULL, extra, NULL))
        fail_msg("etraced refused a 0750 checkpoint.dir");
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_checkpoint(r.c, "mine", &rep), ETRACE_OK);
    etrace_reply_free(rep);
    snprintf(path, sizeof path, "%s/mine.ckpt", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(etrace_restore(r.c, "mine", &rep), ETRACE_OK);
    etrace_reply_free(rep);
    assert_int_equal(chmod(path, 0666), 0);
    assert_int_equal(etrace_restore(r.c, "mine", &rep), ETRACE_EREPLY);
    print_message("restore of a 0666 checkpoint: %s\n", rep->error->message);
    assert_non_null(strstr(rep->error->message, "group- or world-writable"));
    etrace_reply_free(rep);
    if (geteuid() == 0) {
        /* Owned by another user (root can make one): refused, though 0600. */
        assert_int_equal(chmod(path, 0600), 0);
        assert_int_equal(chown(path, 1, 1), 0);
        assert_int_equal(etrace_restore(r.c, "mine", &rep), ETRACE_EREPLY);
        print_message("restore of another user's checkpoint: %s\n", rep->error->message);
        assert_non_null(strstr(rep->error->message, "not by etraced's user"));
        etrace_reply_free(rep);
        assert_int_equal(chown(path, 0, 0), 0);
        assert_int_equal(chmod(path, 0666), 0);
    }
    assert_int_equal(daemon_run_stop_keep(&r), 0);
    /* resume skips it, saying why, and starts from the model. */
    daemon_run_respawn(&r);
    const char *lg = daemon_run_log_text(&r);
    assert_non_null(strstr(lg, "mine.ckpt skipped"));
    assert_non_null(strstr(lg, "group- or world-writable"));
    assert_non_null(strstr(lg, "starting from the model"));
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* Counts the files NAME-PREFIX*SUFFIX in dir. */
static int
count_files(const char *dir, const char *prefix, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), ls = strlen(suffix);
        n += !strncmp(e->d_name, prefix, strlen(prefix)) && l > ls &&
             !strcmp(e->d_name + l - ls, suffix);
    }
    closedir(d);
    return n;
}

/* Counts the occurrences of needle in hay. */
static int
count_text(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* Periodic checkpoints (DESIGN §5.4): every checkpoint.every_s in timer mode while learning,
 * the weights copied a 4 KiB slice per tick; the newest `keep` kept; one more at SIGTERM;
 * a restart with resume: true starts from that one, at its tick, with its weights. */
static void
test_ops_periodic_checkpoints(void **state)
{
    struct daemon_run r;
    char dir[600], a[700], b[700], cmd[2000];
    (void)state;
    daemon_run_start(&r, model_text,
                     "checkpoint: {every_s: 1, keep: 2, resume: true}\n"
                     "snapshot_slice_bytes: 4096\n");
    snprintf(dir, sizeof dir, "%s/etraced", r.dir);
    int64_t t0 = daemon_run_now_ms();
    for (int k = 0; daemon_run_now_ms() - t0 < 4200; k++) {
        float x[4] = {sinf((float)k * 0.01f), cosf((float)k * 0.013f), 0.5f, -0.25f};
        float tg[2] = {0.3f * sinf((float)k * 0.002f), 0.1f};
        etrace_send_frame(r.c, "sensors", x, 4, (uint64_t)k);
        etrace_send_target(r.c, "action", tg, 2);
        daemon_run_sleep_ms(1);
    }
    const char *lg = daemon_run_log_text(&r);
    int periodic = count_text(lg, ".ckpt: tick ");
    int files = count_files(dir, "ckpt-", ".ckpt");
    print_message("periodic: %d checkpoints written in 4.2 s, %d kept (keep: 2)\n", periodic,
                  files);
    assert_true(periodic >= 3);
    assert_int_equal(files, 2);
    /* SIGTERM: one more checkpoint, still two kept, exit 0. */
    assert_int_equal(kill(r.pid, SIGTERM), 0);
    int st = 0;
    int64_t deadline = daemon_run_now_ms() + 10000;
    while (waitpid(r.pid, &st, WNOHANG) == 0) {
        if (daemon_run_now_ms() > deadline)
            fail_msg("etraced did not exit within 10 s of SIGTERM");
        daemon_run_sleep_ms(10);
    }
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    r.pid = 0;
    lg = daemon_run_log_text(&r);
    const char *sd = strstr(lg, " at shutdown: tick ");
    assert_non_null(sd);
    unsigned long long sd_tick = strtoull(sd + strlen(" at shutdown: tick "), NULL, 10);
    const char *line = sd;
    while (line > lg && line[-1] != '\n')
        line--;
    char sd_path[600];
    assert_int_equal(sscanf(strstr(line, "checkpoint "), "checkpoint %599s", sd_path), 1);
    assert_int_equal(count_files(dir, "ckpt-", ".ckpt"), 2);
    size_t before = strlen(lg);
    daemon_run_respawn(&r);
    const char *res = strstr(daemon_run_log_text(&r) + before, "resumed from ");
    assert_non_null(res);
    char res_path[600];
    unsigned long long res_tick = 0;
    assert_int_equal(sscanf(res, "resumed from %599s (model %*s tick %llu)", res_path, &res_tick),
                     2);
    print_message("SIGTERM checkpoint %s at tick %llu; resumed from %s at tick %llu\n", sd_path,
                  sd_tick, res_path, res_tick);
    assert_string_equal(res_path, sd_path);
    assert_int_equal(res_tick, sd_tick);
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_pause(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    snprintf(a, sizeof a, "%s/resumed", r.dir);
    snprintf(b, sizeof b, "%s/file", r.dir);
    daemon_run_export_to(&r, a);
    snprintf(cmd, sizeof cmd, "%s export-checkpoint %s %s >/dev/null", daemon_run_etraced(),
             sd_path, b);
    daemon_run_cmd(cmd, 0);
    static const char *const files_[] = {"w_in.weight", "w_in.bias", "w_out.weight"};
    for (int i = 0; i < 3; i++) {
        char fa[800], fb[800];
        snprintf(fa, sizeof fa, "%s/params/%s.npy", a, files_[i]);
        snprintf(fb, sizeof fb, "%s/params/%s.npy", b, files_[i]);
        if (!daemon_run_same_file(fa, fb))
            fail_msg("resumed %s differs from the SIGTERM checkpoint's", files_[i]);
    }
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* A checkpoint still being sliced when the daemon stops gives way to the shutdown
 * checkpoint: its job is freed (the ASan build's leak check at exit fails the test if not),
 * the daemon exits 0 and the shutdown checkpoint is written. The hidden layer is big enough
 * (~4 MiB of weights at 4 KiB a tick) that the sliced copy takes seconds. */
static void
test_ops_stop_during_checkpoint(void **state)
{
    static const char big[] = "name: big\n"
                              "dt: 1.0e-3\n"
                              "inputs:\n"
                              "  - {name: sensors, size: 4}\n"
                              "cells:\n"
                              "  - {name: hidden, model: lif, size: 1024}\n"
                              "projections:\n"
                              "  - {name: w, from: [sensors, hidden], to: hidden.delta,\n"
                              "     weight: {init: kaiming_normal}}\n";
    struct daemon_run r;
    (void)state;
    daemon_run_start(&r, big,
                     "checkpoint: {every_s: 3600}\n"
                     "snapshot_slice_bytes: 4096\n");
    /* Ask for a checkpoint without waiting for its answer: a second client whose requests
     * time out at once (the reply, if any, goes nowhere). */
    etrace_client_t *quick = etrace_client_new(r.ep[2], r.ep[0], 1);
    assert_non_null(quick);
    Etrace__Reply *rep = NULL;
    etrace_checkpoint(quick, "sliced", &rep);
    etrace_reply_free(rep);
    daemon_run_sleep_ms(200);
    assert_int_equal(kill(r.pid, SIGTERM), 0);
    int st = 0;
    int64_t deadline = daemon_run_now_ms() + (daemon_run_sanitized() ? 60000 : 15000);
    while (waitpid(r.pid, &st, WNOHANG) == 0) {
        if (daemon_run_now_ms() > deadline)
            fail_msg("etraced did not exit after SIGTERM");
        daemon_run_sleep_ms(10);
    }
    etrace_client_free(&quick);
    const char *lg = daemon_run_log_text(&r);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        fail_msg("etraced exited with status %#x; its log:\n%s", st, lg);
    r.pid = 0;
    assert_non_null(strstr(lg, "shutdown checkpoint: replaces the checkpoint in progress"));
    assert_non_null(strstr(lg, " at shutdown: tick "));
    daemon_run_stop(&r);
}

/* ---- record and replay -------------------------------------------------------------- */

static void
test_ops_record_replay(void **state)
{
    struct daemon_run r;
    char cmd[4000], dir[700], rec[700], fa[800], fb[800];
    (void)state;
    daemon_run_start(&r, model_text, "stats_period_ms: 500\n");
    etrace_sub_t *out = etrace_sub_new(r.ep[1], "action");
    daemon_run_sleep_ms(300); /* mid-run */
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_record_start(r.c, "rec1", &rep), ETRACE_OK);
    uint64_t first = rep->op->tick;
    etrace_reply_free(rep);
    /* 10 s at 1 kHz: frames and targets every millisecond, an lr change half-way. */
    int64_t t0 = daemon_run_now_ms();
    int k = 0;
    while (daemon_run_now_ms() - t0 < 10000) {
        float x[4] = {sinf((float)k * 0.01f), cosf((float)k * 0.013f), 0.5f, -0.25f};
        float tg[2] = {0.3f * sinf((float)k * 0.002f), 0.1f};
        etrace_send_frame(r.c, "sensors", x, 4, (uint64_t)k);
        if (k % 2 == 0)
            etrace_send_target(r.c, "action", tg, 2);
        if (k == 5000) {
            assert_int_equal(etrace_lr(r.c, 3.0e-3, &rep), ETRACE_OK);
            etrace_reply_free(rep);
        }
        k++;
        daemon_run_sleep_ms(1);
    }
    assert_int_equal(etrace_pause(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    assert_int_equal(etrace_record_stop(r.c, &rep), ETRACE_OK);
    uint64_t end = rep->op->tick;
    print_message("recorded ticks %llu..%llu: %llu events, %llu bytes\n", (unsigned long long)first,
                  (unsigned long long)end, (unsigned long long)rep->op->events,
                  (unsigned long long)rep->op->bytes);
    etrace_reply_free(rep);
    snprintf(dir, sizeof dir, "%s/live", r.dir);
    daemon_run_export_to(&r, dir);
    /* The daemon's outputs of the recorded ticks. */
    size_t n_ticks = (size_t)(end - first);
    float *lv = calloc(n_ticks * 2, sizeof(float));
    char *have = calloc(n_ticks, 1);
    for (;;) {
        Etrace__Output *o = NULL;
        if (etrace_sub_recv_output(out, 500, &o) != ETRACE_OK)
            break;
        if (o->tick >= first && o->tick < end) {
            memcpy(lv + 2 * (o->tick - first), o->values, 2 * sizeof(float));
            have[o->tick - first] = 1;
        }
        etrace__output__free_unpacked(o, NULL);
    }
    etrace_sub_free(&out);
    snprintf(rec, sizeof rec, "%s/etraced/rec1", r.dir);
    snprintf(dir, sizeof dir, "%s/replay", r.dir);
    snprintf(cmd, sizeof cmd, "%s run --replay %s --out %s", daemon_run_etraced(), rec, dir);
    daemon_run_cmd(cmd, 0);
    float *rep_out = calloc(n_ticks * 2, sizeof(float));
    snprintf(fa, sizeof fa, "%s/outputs/action.npy", dir);
    assert_int_equal(daemon_run_read_npy_f32(fa, rep_out, n_ticks * 2), 0);
    size_t n_cmp = 0, n_diff = 0;
    for (size_t t = 0; t < n_ticks; t++) {
        if (!have[t])
            continue;
        n_cmp++;
        if (memcmp(lv + 2 * t, rep_out + 2 * t, 2 * sizeof(float)) && n_diff++ < 5)
            print_message("tick %zu: live %.9g replay %.9g\n", t + first, (double)lv[2 * t],
                          (double)rep_out[2 * t]);
    }
    print_message("replay: %zu ticks, %zu outputs compared, %zu differ\n", n_ticks, n_cmp, n_diff);
    assert_true(n_cmp > 9 * n_ticks / 10);
    assert_int_equal(n_diff, 0);
    static const char *const files[] = {"w_in.weight", "w_in.bias", "w_out.weight"};
    for (int i = 0; i < 3; i++) {
        snprintf(fa, sizeof fa, "%s/live/params/%s.npy", r.dir, files[i]);
        snprintf(fb, sizeof fb, "%s/replay/params/%s.npy", r.dir, files[i]);
        if (!daemon_run_same_file(fa, fb))
            fail_msg("replay: final %s differs", files[i]);
    }
    free(lv);
    free(have);
    free(rep_out);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* Records about 1.5 s of Inputs of 100 items each (90 sensors frames and 10 targets; the
 * last of each wins) into DIR/etraced/NAME, then exports the final weights to DIR/live. */
static void
record_many_items(struct daemon_run *r, const char *name)
{
    enum { N_FRAMES = 90, N_TARGETS = 10 };
    Etrace__Frame fr[N_FRAMES], *fp[N_FRAMES];
    Etrace__Signal sg[N_TARGETS], *sp[N_TARGETS];
    Etrace__Signal__Target tg[N_TARGETS];
    float xv[N_FRAMES][4], tv[N_TARGETS][2];
    char dir[700];
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_record_start(r->c, name, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    int64_t t0 = daemon_run_now_ms();
    for (int k = 0; daemon_run_now_ms() - t0 < 1500; k++) {
        /* Items before the last carry values far from the last's: a replay that applied
         * only some of them would learn other weights. */
        for (int i = 0; i < N_FRAMES; i++) {
            etrace__frame__init(&fr[i]);
            fr[i].name = (char *)"sensors";
            for (int j = 0; j < 4; j++)
                xv[i][j] = i == N_FRAMES - 1 ? sinf((float)(k + j) * 0.01f) : 3.0f + (float)i;
            fr[i].values = xv[i];
            fr[i].n_values = 4;
            fr[i].seq = (uint64_t)k * N_FRAMES + (uint64_t)i;
            fp[i] = &fr[i];
        }
        for (int i = 0; i < N_TARGETS; i++) {
            etrace__signal__init(&sg[i]);
            etrace__signal__target__init(&tg[i]);
            tv[i][0] = i == N_TARGETS - 1 ? 0.3f * sinf((float)k * 0.002f) : -2.0f;
            tv[i][1] = i == N_TARGETS - 1 ? 0.1f : 2.0f;
            tg[i].values = tv[i];
            tg[i].n_values = 2;
            sg[i].readout = (char *)"action";
            sg[i].kind_case = ETRACE__SIGNAL__KIND_TARGET;
            sg[i].target = &tg[i];
            sp[i] = &sg[i];
        }
        Etrace__Input in = ETRACE__INPUT__INIT;
        in.frames = fp;
        in.n_frames = N_FRAMES;
        in.signals = sp;
        in.n_signals = N_TARGETS;
        assert_int_equal(etrace_send_input(r->c, &in), ETRACE_OK);
        daemon_run_sleep_ms(1);
    }
    assert_int_equal(etrace_pause(r->c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    assert_int_equal(etrace_record_stop(r->c, &rep), ETRACE_OK);
    print_message("recorded %llu events of 100 items, %llu bytes\n",
                  (unsigned long long)rep->op->events, (unsigned long long)rep->op->bytes);
    etrace_reply_free(rep);
    snprintf(dir, sizeof dir, "%s/live", r->dir);
    daemon_run_export_to(r, dir);
}

/* Every item of an Input is recorded (not only the first 64): the replay of Inputs of 100
 * items ends with the live run's weights. */
static void
test_ops_record_every_item(void **state)
{
    struct daemon_run r;
    char cmd[4000], fa[800], fb[800];
    (void)state;
    daemon_run_start(&r, model_text, "");
    record_many_items(&r, "many");
    snprintf(cmd, sizeof cmd, "%s run --replay %s/etraced/many --out %s/replay >/dev/null",
             daemon_run_etraced(), r.dir, r.dir);
    daemon_run_cmd(cmd, 0);
    static const char *const files[] = {"w_in.weight", "w_in.bias", "w_out.weight"};
    for (int i = 0; i < 3; i++) {
        snprintf(fa, sizeof fa, "%s/live/params/%s.npy", r.dir, files[i]);
        snprintf(fb, sizeof fb, "%s/replay/params/%s.npy", r.dir, files[i]);
        if (!daemon_run_same_file(fa, fb))
            fail_msg("replay of 100-item Inputs: final %s differs from the live run's", files[i]);
    }
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* Reads path's records (format 2) into evs (at most max); their offsets into offs. */
static size_t
read_records(const char *path, Etrace__RecordEvent **evs, uint64_t *offs, size_t max)
{
    struct etrace_recording_reader rd;
    char err[1200];
    size_t n = 0;
    assert_int_equal(etrace_recording_open(&rd, path, err, sizeof err), 0);
    assert_int_equal(rd.format, 2);
    while (n < max && etrace_recording_next(&rd, &evs[n], err, sizeof err) == ETRACE_RECORDING_OK)
        offs[n++] = rd.record_offset;
    etrace_recording_close(&rd);
    return n;
}

/* Writes evs[0..n) except evs[skip] as a recording in `format` (2: checksummed, 1: varint
 * framing, as before checksums). */
static void
write_records(const char *path, Etrace__RecordEvent **evs, size_t n, size_t skip, int format)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (format == 2)
        fwrite(ETRACE_RECORDING_MAGIC, 1, ETRACE_RECORDING_MAGIC_BYTES, f);
    for (size_t i = 0; i < n; i++) {
        if (i == skip)
            continue;
        size_t len = etrace_recording_record_bytes(evs[i]);
        uint8_t *b = malloc(len);
        assert_non_null(b);
        if (format == 2) {
            assert_int_equal(etrace_recording_pack(evs[i], b), len);
            fwrite(b, 1, len, f);
        } else {
            uint8_t v[10];
            size_t nv = 0, pl = etrace__record_event__pack(evs[i], b);
            for (size_t x = pl;; x >>= 7) {
                v[nv++] = (uint8_t)(x >= 0x80 ? (x & 0x7f) | 0x80 : x);
                if (x < 0x80)
                    break;
            }
            fwrite(v, 1, nv, f);
            fwrite(b, 1, pl, f);
        }
        free(b);
    }
    fclose(f);
}

/* Flips one bit of the file at offset off. */
static void
flip_bit(const char *path, uint64_t off)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, (long)off, SEEK_SET), 0);
    int c = fgetc(f);
    assert_true(c != EOF);
    assert_int_equal(fseek(f, (long)off, SEEK_SET), 0);
    fputc(c ^ 0x10, f);
    fclose(f);
}

/* Runs `etraced run --replay path` and, with a lockstep daemon, `etracectl replay path`;
 * both must exit `want`, and when `msg` is given both say it on stderr. */
static void
replay_expect(struct daemon_run *ls, const char *path, int want, const char *msg)
{
    char cmd[8000], out[800];
    snprintf(out, sizeof out, "%s.err", path);
    snprintf(cmd, sizeof cmd, "%s run --replay %s --out %s.out >/dev/null 2>%s",
             daemon_run_etraced(), path, path, out);
    daemon_run_cmd(cmd, want);
    snprintf(cmd, sizeof cmd, "grep -qF '%s' %s", msg ? msg : "", out);
    if (msg && system(cmd) != 0) {
        snprintf(cmd, sizeof cmd, "cat %s >&2", out);
        (void)!system(cmd);
        fail_msg("etraced run --replay %s: no '%s' on stderr", path, msg);
    }
    snprintf(cmd, sizeof cmd, "%s --control %s replay %s --out %s.ls >/dev/null 2>%s",
             daemon_run_etracectl(), ls->ep[2], path, path, out);
    daemon_run_cmd(cmd, want);
    snprintf(cmd, sizeof cmd, "grep -qF '%s' %s", msg ? msg : "", out);
    if (msg && system(cmd) != 0) {
        snprintf(cmd, sizeof cmd, "cat %s >&2", out);
        (void)!system(cmd);
        fail_msg("etracectl replay %s: no '%s' on stderr", path, msg);
    }
}

/* Every record carries checksums: a flipped bit anywhere is refused with the record's offset
 * and exit 1, by `etraced run --replay` and `etracectl replay` alike; a file cut short
 * replays what is whole; a recording missing an event, or whose end record says events were
 * lost, is refused as not reproducible; a recording of format 1 (no checksums) still
 * replays. */
static void
test_ops_recording_checksums(void **state)
{
    struct daemon_run r, ls;
    char rec[700], bad[800], msg[2400];
    enum { MAX_EV = 4096 };
    (void)state;
    daemon_run_start(&r, model_text, "");
    record_many_items(&r, "sums");
    assert_int_equal(daemon_run_stop_keep(&r), 0);
    daemon_run_start(&ls, model_text, "clock: lockstep\n");
    snprintf(rec, sizeof rec, "%s/etraced/sums", r.dir);
    Etrace__RecordEvent **evs = calloc(MAX_EV, sizeof(*evs));
    uint64_t *offs = calloc(MAX_EV, sizeof(*offs));
    size_t n = read_records(rec, evs, offs, MAX_EV);
    assert_true(n > 10 && n < MAX_EV);
    assert_int_equal(evs[n - 1]->kind_case, ETRACE__RECORD_EVENT__KIND_END);
    replay_expect(&ls, rec, 0, NULL);

    /* A bit flipped in a record's payload, in the snapshot, in a header's length. */
    const uint64_t flips[][2] = {{offs[n / 2], 20}, {offs[0], 100}, {offs[n / 3], 1}};
    for (int i = 0; i < 3; i++) {
        snprintf(bad, sizeof bad, "%s/flip%d", r.dir, i);
        snprintf(msg, sizeof msg, "cp %s %s", rec, bad);
        daemon_run_cmd(msg, 0);
        flip_bit(bad, flips[i][0] + flips[i][1]);
        snprintf(msg, sizeof msg, "%s: offset %llu: ", bad, (unsigned long long)flips[i][0]);
        replay_expect(&ls, bad, 1, msg);
    }
    /* Cut short inside the last record: what is whole replays, with a message. */
    snprintf(bad, sizeof bad, "%s/cut", r.dir);
    snprintf(msg, sizeof msg, "head -c %llu %s > %s", (unsigned long long)offs[n - 1] + 5, rec,
             bad);
    daemon_run_cmd(msg, 0);
    snprintf(msg, sizeof msg, "%s: offset %llu: the file ends inside a record", bad,
             (unsigned long long)offs[n - 1]);
    {
        char cmd[8000];
        snprintf(cmd, sizeof cmd, "%s run --replay %s --out %s.out 2>&1 | grep -qF '%s'",
                 daemon_run_etraced(), bad, bad, msg);
        daemon_run_cmd(cmd, 0);
    }
    /* An event missing (rewritten with valid checksums): the end record's count disagrees. */
    snprintf(bad, sizeof bad, "%s/missing", r.dir);
    write_records(bad, evs, n, n / 2, 2);
    replay_expect(&ls, bad, 1, "this replay cannot reproduce the live run");
    /* The daemon said it lost events. */
    evs[n - 1]->incomplete = 1;
    snprintf(bad, sizeof bad, "%s/incomplete", r.dir);
    write_records(bad, evs, n, (size_t)-1, 2);
    replay_expect(&ls, bad, 1, "the daemon lost events while recording");
    evs[n - 1]->incomplete = 0;
    /* Format 1 (before checksums) is still read, with a warning. */
    snprintf(bad, sizeof bad, "%s/format1", r.dir);
    write_records(bad, evs, n, (size_t)-1, 1);
    replay_expect(&ls, bad, 0, NULL);
    {
        char cmd[8000];
        snprintf(cmd, sizeof cmd, "%s run --replay %s --out %s.out 2>&1 | grep -qF '%s'",
                 daemon_run_etraced(), bad, bad, "damage cannot be detected");
        daemon_run_cmd(cmd, 0);
    }
    for (size_t i = 0; i < n; i++)
        etrace__record_event__free_unpacked(evs[i], NULL);
    free(evs);
    free(offs);
    assert_int_equal(daemon_run_stop(&ls), 0);
    daemon_run_rm_tree(r.dir);
}

/* DIR/lockstep (etracectl replay) against DIR/offline (etraced run --replay): outputs, loss
 * and final weights byte for byte; the weights also against DIR/live (the live run's
 * export). */
static void
compare_replays(const char *dir, const char *what)
{
    static const char *const files[] = {"outputs/action.npy", "loss.npy", "params/w_in.weight.npy",
                                        "params/w_in.bias.npy", "params/w_out.weight.npy"};
    char fa[900], fb[900];
    for (int i = 0; i < 5; i++) {
        snprintf(fa, sizeof fa, "%s/offline/%s", dir, files[i]);
        snprintf(fb, sizeof fb, "%s/lockstep/%s", dir, files[i]);
        if (!daemon_run_same_file(fa, fb))
            fail_msg("%s: lockstep replay's %s differs from etraced run --replay", what, files[i]);
        if (i >= 2) {
            snprintf(fa, sizeof fa, "%s/live/%s", dir, files[i]);
            if (!daemon_run_same_file(fa, fb))
                fail_msg("%s: replayed %s differs from the live run's", what, files[i]);
        }
    }
}

/* Lockstep replay through the daemon (`etracectl replay`) against `etraced run --replay`:
 * a 2 s timer-mode recording with frames, targets and an lr change; outputs, loss and
 * final weights byte for byte. */
static void
lockstep_replay(const char *mt)
{
    struct daemon_run r, ls;
    char cmd[4000], rec[700], fa[900];
    daemon_run_start(&r, mt, "stats_period_ms: 500\n");
    daemon_run_sleep_ms(200); /* mid-run */
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_record_start(r.c, "rec2", &rep), ETRACE_OK);
    uint64_t first = rep->op->tick;
    etrace_reply_free(rep);
    int64_t t0 = daemon_run_now_ms();
    int k = 0;
    while (daemon_run_now_ms() - t0 < 2000) {
        float x[4] = {sinf((float)k * 0.01f), cosf((float)k * 0.013f), 0.5f, -0.25f};
        float tg[2] = {0.3f * sinf((float)k * 0.002f), 0.1f};
        int32_t sp[2] = {k % 6, (k * 5) % 6};
        etrace_send_frame(r.c, "sensors", x, 4, (uint64_t)k);
        if (k % 3 == 0)
            etrace_send_spikes(r.c, "ev", sp, 2, (uint64_t)k);
        if (k % 2 == 0)
            etrace_send_target(r.c, "action", tg, 2);
        if (k == 1000) {
            assert_int_equal(etrace_lr(r.c, 3.0e-3, &rep), ETRACE_OK);
            etrace_reply_free(rep);
        }
        k++;
        daemon_run_sleep_ms(1);
    }
    assert_int_equal(etrace_pause(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    assert_int_equal(etrace_record_stop(r.c, &rep), ETRACE_OK);
    uint64_t end = rep->op->tick;
    print_message("recorded ticks %llu..%llu: %llu events\n", (unsigned long long)first,
                  (unsigned long long)end, (unsigned long long)rep->op->events);
    etrace_reply_free(rep);
    snprintf(fa, sizeof fa, "%s/live", r.dir);
    daemon_run_export_to(&r, fa);
    /* A replay event on a timer daemon is refused. */
    Etrace__RecordEvent ev = ETRACE__RECORD_EVENT__INIT;
    ev.kind_case = ETRACE__RECORD_EVENT__KIND_LR;
    ev.lr = 1.0e-3;
    assert_int_equal(etrace_replay_event(r.c, &ev, &rep), ETRACE_EREPLY);
    assert_int_equal(rep->error->code, ETRACE__ERROR__CODE__WRONG_MODE);
    etrace_reply_free(rep);
    assert_int_equal(daemon_run_stop_keep(&r), 0);

    snprintf(rec, sizeof rec, "%s/etraced/rec2", r.dir);
    snprintf(cmd, sizeof cmd, "%s run --replay %s --out %s/offline >/dev/null",
             daemon_run_etraced(), rec, r.dir);
    daemon_run_cmd(cmd, 0);
    daemon_run_start(&ls, mt, "clock: lockstep\n");
    int64_t t1 = daemon_run_now_ms();
    snprintf(cmd, sizeof cmd, "%s --control %s replay %s --out %s/lockstep", daemon_run_etracectl(),
             ls.ep[2], rec, r.dir);
    daemon_run_cmd(cmd, 0);
    print_message("lockstep replay of %llu ticks took %lld ms\n", (unsigned long long)(end - first),
                  (long long)(daemon_run_now_ms() - t1));
    compare_replays(r.dir, "lockstep replay");
    /* The outputs cover exactly the recorded ticks. */
    float *v = calloc((end - first) * 2, sizeof(float));
    snprintf(fa, sizeof fa, "%s/lockstep/outputs/action.npy", r.dir);
    assert_int_equal(daemon_run_read_npy_f32(fa, v, (end - first) * 2), 0);
    free(v);
    Etrace__Reply *st = NULL;
    assert_int_equal(etrace_status(ls.c, &st), ETRACE_OK);
    assert_int_equal(st->status->tick, end);
    etrace_reply_free(st);
    assert_int_equal(daemon_run_stop(&ls), 0);
    daemon_run_rm_tree(r.dir);
}

/* An actor-critic model (DESIGN §4.3) for the episode tests. */
static const char ac_model_text[] =
    "name: ac\n"
    "dt: 1.0e-3\n"
    "seed: 5\n"
    "inputs:\n"
    "  - {name: sensors, size: 4}\n"
    "cells:\n"
    "  - {name: hidden, model: rnn_tanh, size: 16}\n"
    "  - {name: out, model: linear, size: 2}\n"
    "  - {name: val, model: leaky_readout, size: 1, params: {tau: 5.0e-3}}\n"
    "projections:\n"
    "  - {name: w_in, from: [sensors, hidden], to: hidden, weight: {init: kaiming_normal},\n"
    "     bias: {init: constant, value: 0.05}}\n"
    "  - {name: w_out, from: hidden, to: out, weight: {init: kaiming_normal, scale: 0.5}}\n"
    "  - {name: w_v, from: hidden, to: val, weight: {init: kaiming_normal, scale: 0.5}}\n"
    "readouts:\n"
    "  - {name: action, cell: out}\n"
    "  - {name: value, cell: val}\n"
    "learning:\n"
    "  algorithm: es_d_rtrl\n"
    "  decay_or_rank: 0.9\n"
    "  signal: reward\n"
    "  policy: {readout: action, kind: gaussian, sigma: 0.2, action_hold: 3}\n"
    "  critic: {readout: value, weight: 0.5}\n"
    "  tau_gamma: 0.05\n"
    "  tau_lambda: 0.02\n"
    "  optimizer: {kind: adam, lr: 1.0e-3}\n"
    "  update_every: 2\n";

/* The Signals of a recording's Inputs that carry the terminal flag, through the one
 * recording reader. */
static unsigned
count_terminals(const char *path)
{
    struct etrace_recording_reader rd;
    Etrace__RecordEvent *ev;
    char err[1200];
    unsigned n_term = 0;
    int st;
    assert_int_equal(etrace_recording_open(&rd, path, err, sizeof err), 0);
    while ((st = etrace_recording_next(&rd, &ev, err, sizeof err)) == ETRACE_RECORDING_OK) {
        if (ev->kind_case == ETRACE__RECORD_EVENT__KIND_INPUT)
            for (size_t k = 0; k < ev->input->n_signals; k++)
                n_term += ev->input->signals[k]->terminal;
        etrace__record_event__free_unpacked(ev, NULL);
    }
    if (st != ETRACE_RECORDING_END)
        fail_msg("%s", err);
    etrace_recording_close(&rd);
    return n_term;
}

/* Episodes under an actor-critic through the daemon: rewards with the terminal flag, a
 * checkpoint taken mid-episode and restored later, recorded; the recording keeps every
 * terminal flag, and both `etraced run --replay` and the lockstep replay reproduce the live
 * outputs (action and critic value), the loss and the final weights bit for bit, so the
 * episode and critic state travel in checkpoints and replays. */
static void
test_ops_critic_terminal_replay(void **state)
{
    struct daemon_run r, ls;
    char cmd[4000], rec[700], fa[900], fb[900];
    (void)state;
    daemon_run_start(&r, ac_model_text, "stats_period_ms: 500\n");
    daemon_run_sleep_ms(100);
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_record_start(r.c, "rec_ac", &rep), ETRACE_OK);
    etrace_reply_free(rep);
    /* a count, not a time, bounds the loop: a loaded machine sends as many terminals */
    unsigned sent_terminal = 0;
    for (int k = 0; k < 1300; k++) {
        float x[4] = {sinf((float)k * 0.03f), cosf((float)k * 0.021f), 0.5f, -0.25f};
        etrace_send_frame(r.c, "sensors", x, 4, (uint64_t)k);
        if (k % 37 == 36) {
            etrace_send_reward_terminal(r.c, -1.0f);
            sent_terminal++;
        } else if (k % 2 == 0) {
            etrace_send_reward(r.c, 0.1f * x[0]);
        }
        if (k == 200) {
            assert_int_equal(etrace_checkpoint(r.c, "mid_ac", &rep), ETRACE_OK);
            etrace_reply_free(rep);
        }
        if (k == 700) {
            assert_int_equal(etrace_restore(r.c, "mid_ac", &rep), ETRACE_OK);
            etrace_reply_free(rep);
        }
        daemon_run_sleep_ms(1);
    }
    assert_int_equal(etrace_pause(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    assert_int_equal(etrace_record_stop(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    snprintf(fa, sizeof fa, "%s/live", r.dir);
    daemon_run_export_to(&r, fa);
    assert_int_equal(daemon_run_stop_keep(&r), 0);

    snprintf(rec, sizeof rec, "%s/etraced/rec_ac", r.dir);
    unsigned recorded = count_terminals(rec);
    print_message("terminal rewards sent %u, recorded %u\n", sent_terminal, recorded);
    assert_true(recorded > 10 && recorded <= sent_terminal);
    snprintf(cmd, sizeof cmd, "%s run --replay %s --out %s/offline >/dev/null",
             daemon_run_etraced(), rec, r.dir);
    daemon_run_cmd(cmd, 0);
    daemon_run_start(&ls, ac_model_text, "clock: lockstep\n");
    snprintf(cmd, sizeof cmd, "%s --control %s replay %s --out %s/lockstep", daemon_run_etracectl(),
             ls.ep[2], rec, r.dir);
    daemon_run_cmd(cmd, 0);
    static const char *const files[] = {
        "outputs/action.npy",     "outputs/value.npy",    "loss.npy",
        "params/w_in.weight.npy", "params/w_in.bias.npy", "params/w_out.weight.npy",
        "params/w_v.weight.npy"};
    for (int i = 0; i < 7; i++) {
        snprintf(fa, sizeof fa, "%s/offline/%s", r.dir, files[i]);
        snprintf(fb, sizeof fb, "%s/lockstep/%s", r.dir, files[i]);
        if (!daemon_run_same_file(fa, fb))
            fail_msg("actor-critic: lockstep replay's %s differs from etraced run --replay",
                     files[i]);
        if (i >= 3) {
            snprintf(fa, sizeof fa, "%s/live/%s", r.dir, files[i]);
            if (!daemon_run_same_file(fa, fb))
                fail_msg("actor-critic: replayed %s differs from the live run's", files[i]);
        }
    }
    assert_int_equal(daemon_run_stop(&ls), 0);
    daemon_run_rm_tree(r.dir);
}

/* Counts a recording's records per kind, through the one recording reader. */
static void
test_ops_lockstep_replay(void **state)
{
    (void)state;
    lockstep_replay(model_text);
}

/* The same with pending rank-one pairs: live, offline and lockstep replays bit for bit. */
static void
test_ops_lockstep_replay_deferred(void **state)
{
    (void)state;
    lockstep_replay(model_deferred);
}

/* A checkpoint taken with rank-one pairs pending (lockstep, 13 steps with defer 5) and
 * restored: the steps after it give the same outputs bit for bit, and the exported
 * weights (W plus the pairs) are the same files. */
static void
test_ops_checkpoint_restore_deferred(void **state)
{
    struct daemon_run r;
    char a[700], b[700];
    (void)state;
    daemon_run_start(&r, model_deferred, "clock: lockstep\n");
    enum { PRE = 13, POST = 20 };
    float out[2][POST][2];
    for (int pass = 0; pass < 3; pass++) {
        Etrace__Reply *rep = NULL;
        if (pass == 1) {
            assert_int_equal(etrace_checkpoint(r.c, "pend", &rep), ETRACE_OK);
            etrace_reply_free(rep);
        } else if (pass == 2) {
            assert_int_equal(etrace_restore(r.c, "pend", &rep), ETRACE_OK);
            etrace_reply_free(rep);
        }
        int n = pass == 0 ? PRE : POST;
        for (int k = 0; k < n; k++) {
            int kk = pass == 0 ? k : PRE + k;
            float x[4] = {sinf((float)kk * 0.3f), cosf((float)kk * 0.2f), 1.0f, -0.5f};
            float y[2] = {0.8f * sinf((float)kk * 0.05f), -0.4f};
            rep = NULL;
            assert_int_equal(daemon_run_step_target(&r, "sensors", x, 4, "action", y, 2, &rep),
                             ETRACE_OK);
            assert_int_equal(rep->step->n_outputs, 1);
            if (pass > 0)
                memcpy(out[pass - 1][k], rep->step->outputs[0]->values, 2 * sizeof(float));
            etrace_reply_free(rep);
        }
        if (pass > 0) {
            snprintf(a, sizeof a, "%s/export%d", r.dir, pass);
            daemon_run_export_to(&r, a);
        }
    }
    assert_memory_equal(out[0], out[1], sizeof out[0]);
    static const char *const files[] = {"w_in.weight", "w_in.bias", "w_out.weight"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "%s/export1/params/%s.npy", r.dir, files[i]);
        snprintf(b, sizeof b, "%s/export2/params/%s.npy", r.dir, files[i]);
        if (!daemon_run_same_file(a, b))
            fail_msg("restored run: final %s differs", files[i]);
    }
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* Counts a recording's records per kind (length-delimited RecordEvents). */
static void
count_kinds(const char *path, unsigned counts[64])
{
    struct etrace_recording_reader rd;
    Etrace__RecordEvent *ev;
    char err[1200];
    int st;
    assert_int_equal(etrace_recording_open(&rd, path, err, sizeof err), 0);
    assert_int_equal(rd.format, 2);
    memset(counts, 0, 64 * sizeof(*counts));
    while ((st = etrace_recording_next(&rd, &ev, err, sizeof err)) == ETRACE_RECORDING_OK) {
        counts[(unsigned)ev->kind_case & 63]++;
        etrace__record_event__free_unpacked(ev, NULL);
    }
    if (st != ETRACE_RECORDING_END)
        fail_msg("%s", err);
    etrace_recording_close(&rd);
}

/* Every kind of numerics event in one recording (DESIGN §5.4): learn off and on, reset
 * states and traces, an input going stale under `on_stale: zero`, an lr change, a hot swap
 * with --keep-weights --keep-state, and a restore of a checkpoint taken before the
 * recording. `etraced run --replay` reproduces the live outputs (in the order they were
 * published: a restore rewinds `tick`) and final weights bit for bit, and the lockstep
 * replay through the daemon writes the same files. */
static void
replay_every_event(const char *mt)
{
    struct daemon_run r, ls;
    char cmd[4000], rec[700], fa[900];
    daemon_run_start(&r, mt,
                     "stats_period_ms: 500\n"
                     "snapshot_slice_bytes: 4096\n" /* the snapshot spans ticks: steps defer */
                     "inputs:\n"
                     "  sensors: {max_age_ms: 5, on_stale: zero}\n");
    /* The swapped-in model: the same shapes, another learning rate and seed. */
    char model2[800];
    snprintf(model2, sizeof model2, "%s/model2.yaml", r.dir);
    const char *lr_line = strstr(mt, "lr: 1.0e-3");
    assert_non_null(lr_line);
    char text2[sizeof model_deferred + 16];
    snprintf(text2, sizeof text2, "%.*slr: 4.0e-3}\n", (int)(lr_line - mt), mt);
    daemon_run_write_file(model2, text2);
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_checkpoint(r.c, "before", &rep), ETRACE_OK);
    etrace_reply_free(rep);
    etrace_sub_t *out = etrace_sub_new(r.ep[1], "action");
    daemon_run_sleep_ms(200);
    assert_int_equal(etrace_record_start(r.c, "rec3", &rep), ETRACE_OK);
    uint64_t first = rep->op->tick;
    etrace_reply_free(rep);
    int64_t t0 = daemon_run_now_ms();
    int k = 0, done[8] = {0};
    while (daemon_run_now_ms() - t0 < 2500) {
        int64_t ms = daemon_run_now_ms() - t0;
        float x[4] = {sinf((float)k * 0.01f), cosf((float)k * 0.013f), 0.5f, -0.25f};
        float tg[2] = {0.3f * sinf((float)k * 0.002f), 0.1f};
        if (ms < 800 || ms > 840) /* a 40 ms gap: stale after 5 ms, zeros recorded */
            etrace_send_frame(r.c, "sensors", x, 4, (uint64_t)k);
        if (k % 2 == 0)
            etrace_send_target(r.c, "action", tg, 2);
        static const int at[8] = {300, 450, 600, 700, 1000, 1200, 1700, 1 << 30};
        for (int e = 0; e < 7; e++) {
            if (done[e] || ms < at[e])
                continue;
            done[e] = 1;
            int rc = 0;
            switch (e) {
            case 0:
                rc = etrace_learn(r.c, 0, &rep);
                break;
            case 1:
                rc = etrace_learn(r.c, 1, &rep);
                break;
            case 2:
                rc = etrace_reset(r.c, ETRACE__RESET__WHAT__STATES, &rep);
                break;
            case 3:
                rc = etrace_reset(r.c, ETRACE__RESET__WHAT__TRACES, &rep);
                break;
            case 4:
                rc = etrace_lr(r.c, 2.0e-3, &rep);
                break;
            case 5:
                rc = etrace_load(r.c, model2, 1, 1, &rep);
                break;
            case 6:
                rc = etrace_restore(r.c, "before", &rep);
                break;
            }
            if (rc != ETRACE_OK)
                fail_msg("event %d: %s", e, rep && rep->error ? rep->error->message : "no reply");
            etrace_reply_free(rep);
            rep = NULL;
        }
        k++;
        daemon_run_sleep_ms(1);
    }
    assert_int_equal(etrace_pause(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    assert_int_equal(etrace_record_stop(r.c, &rep), ETRACE_OK);
    uint64_t end = rep->op->tick, n_events = rep->op->events;
    etrace_reply_free(rep);
    snprintf(fa, sizeof fa, "%s/live", r.dir);
    daemon_run_export_to(&r, fa);
    /* The live outputs from the recording's first tick on, in publication order. */
    size_t cap = 8192, n_live = 0, n_rewind = 0;
    float *lv = calloc(cap * 2, sizeof(float));
    uint64_t prev = 0;
    int started = 0, gaps = 0;
    for (;;) {
        Etrace__Output *o = NULL;
        if (etrace_sub_recv_output(out, 500, &o) != ETRACE_OK)
            break;
        if (!started && o->tick == first)
            started = 1;
        if (started && n_live < cap) {
            if (n_live && o->tick != prev + 1) {
                if (o->tick < prev)
                    n_rewind++;
                else
                    gaps++;
            }
            prev = o->tick;
            memcpy(lv + 2 * n_live++, o->values, 2 * sizeof(float));
        }
        etrace__output__free_unpacked(o, NULL);
    }
    etrace_sub_free(&out);
    print_message("recorded from tick %llu to %llu: %llu records, %zu outputs, %zu rewind\n",
                  (unsigned long long)first, (unsigned long long)end, (unsigned long long)n_events,
                  n_live, n_rewind);
    assert_int_equal(n_rewind, 1); /* the restore */
    assert_int_equal(gaps, 0);
    assert_int_equal(daemon_run_stop_keep(&r), 0);

    snprintf(rec, sizeof rec, "%s/etraced/rec3", r.dir);
    unsigned kinds[64];
    count_kinds(rec, kinds);
    print_message(
        "records: input %u, learn %u, reset %u, stale_zero %u, lr %u, swap %u, "
        "restore %u, defer_steps %u\n",
        kinds[ETRACE__RECORD_EVENT__KIND_INPUT], kinds[ETRACE__RECORD_EVENT__KIND_LEARN],
        kinds[ETRACE__RECORD_EVENT__KIND_RESET], kinds[ETRACE__RECORD_EVENT__KIND_STALE_ZERO],
        kinds[ETRACE__RECORD_EVENT__KIND_LR], kinds[ETRACE__RECORD_EVENT__KIND_SWAP],
        kinds[ETRACE__RECORD_EVENT__KIND_RESTORE], kinds[ETRACE__RECORD_EVENT__KIND_DEFER_STEPS]);
    assert_true(kinds[ETRACE__RECORD_EVENT__KIND_INPUT] > 1000);
    assert_int_equal(kinds[ETRACE__RECORD_EVENT__KIND_LEARN], 2);
    assert_int_equal(kinds[ETRACE__RECORD_EVENT__KIND_RESET], 2);
    assert_true(kinds[ETRACE__RECORD_EVENT__KIND_STALE_ZERO] >= 1);
    assert_int_equal(kinds[ETRACE__RECORD_EVENT__KIND_LR], 1);
    assert_int_equal(kinds[ETRACE__RECORD_EVENT__KIND_SWAP], 1);
    assert_int_equal(kinds[ETRACE__RECORD_EVENT__KIND_RESTORE], 1);
    assert_true(kinds[ETRACE__RECORD_EVENT__KIND_DEFER_STEPS] >= 2); /* deferred, then run */
    snprintf(cmd, sizeof cmd, "%s run --replay %s --out %s/offline >/dev/null",
             daemon_run_etraced(), rec, r.dir);
    daemon_run_cmd(cmd, 0);
    float *rv = calloc(cap * 2, sizeof(float));
    snprintf(fa, sizeof fa, "%s/offline/outputs/action.npy", r.dir);
    assert_int_equal(daemon_run_read_npy_f32(fa, rv, n_live * 2), 0);
    size_t n_diff = 0;
    for (size_t t = 0; t < n_live; t++)
        if (memcmp(lv + 2 * t, rv + 2 * t, 2 * sizeof(float)) && n_diff++ < 5)
            print_message("output %zu: live %.9g replay %.9g\n", t, (double)lv[2 * t],
                          (double)rv[2 * t]);
    print_message("replay of every event: %zu outputs, %zu differ\n", n_live, n_diff);
    assert_int_equal(n_diff, 0);
    free(lv);
    free(rv);

    daemon_run_start(&ls, mt, "clock: lockstep\n");
    snprintf(cmd, sizeof cmd, "%s --control %s replay %s --out %s/lockstep >/dev/null",
             daemon_run_etracectl(), ls.ep[2], rec, r.dir);
    daemon_run_cmd(cmd, 0);
    compare_replays(r.dir, "every event");
    assert_int_equal(daemon_run_stop(&ls), 0);
    daemon_run_rm_tree(r.dir);
}

static void
test_ops_replay_every_event(void **state)
{
    (void)state;
    replay_every_event(model_text);
}

/* The same with deferred steps: snapshots spanning ticks hold the scheduled flushes back,
 * the swap to a model without deferral flushes the pairs into the carried weights. */
static void
test_ops_replay_every_event_deferred(void **state)
{
    (void)state;
    replay_every_event(model_deferred);
}

/* ---- CURVE (DESIGN §5.7) ------------------------------------------------------------ */

struct keypair {
    char pub[41], sec[41];
    char text[200]; /* what `etracectl keygen` printed */
};

/* Runs `etracectl keygen` and checks that it printed a usable pair: Z85 keys whose public
 * half is the secret half's public key. */
static void
keygen(struct keypair *k)
{
    char cmd[1200], line[200];
    uint8_t sec[32], pub[32], derived[32];
    memset(k, 0, sizeof(*k));
    snprintf(cmd, sizeof cmd, "%s keygen", daemon_run_etracectl());
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        size_t used = strlen(k->text);
        snprintf(k->text + used, sizeof k->text - used, "%s", line);
        if (!strncmp(line, "public: ", 8))
            sscanf(line + 8, "%40s", k->pub);
        else if (!strncmp(line, "secret: ", 8))
            sscanf(line + 8, "%40s", k->sec);
    }
    assert_int_equal(pclose(f), 0);
    assert_int_equal(strlen(k->pub), 40);
    assert_int_equal(strlen(k->sec), 40);
    assert_non_null(zmq_z85_decode(pub, k->pub));
    assert_non_null(zmq_z85_decode(sec, k->sec));
    char derived_z85[41];
    assert_int_equal(zmq_curve_public(derived_z85, k->sec), 0);
    assert_non_null(zmq_z85_decode(derived, derived_z85));
    assert_memory_equal(pub, derived, 32);
}

/* status over CURVE with a client's key pair: ETRACE_OK or ETRACE_ETIMEOUT (refused). */
static int
curve_status(const struct daemon_run *r, const struct keypair *server, const struct keypair *k,
             int timeout_ms)
{
    etrace_client_t *c =
        k ? etrace_client_new_curve(r->ep[2], r->ep[0], timeout_ms, server->pub, k->pub, k->sec)
          : etrace_client_new(r->ep[2], r->ep[0], timeout_ms);
    Etrace__Reply *rep = NULL;
    assert_non_null(c);
    int rc = etrace_status(c, &rep);
    etrace_reply_free(rep);
    etrace_client_free(&c);
    return rc;
}

/* The first Output over CURVE within timeout_ms: 1, or 0 when none came. */
static int
curve_output(const struct daemon_run *r, const struct keypair *server, const struct keypair *k,
             int timeout_ms)
{
    etrace_sub_t *s = etrace_sub_new_curve(r->ep[1], "", server->pub, k->pub, k->sec);
    Etrace__Output *o = NULL;
    assert_non_null(s);
    int got = etrace_sub_recv_output(s, timeout_ms, &o) == ETRACE_OK;
    if (o)
        etrace__output__free_unpacked(o, NULL);
    etrace_sub_free(&s);
    return got;
}

/* A socket of `type` that connects to url once and never again (RECONNECT_IVL -1): over
 * CURVE with the daemon's key `server` and the pair k, or without CURVE (k NULL). A client
 * library reconnects when the daemon noticed a refusal first, and every try counts again;
 * this peer is refused exactly once. */
static void *
refused_peer(void *zctx, const char *url, int type, const struct keypair *server,
             const struct keypair *k)
{
    void *s = zmq_socket(zctx, type);
    int zero = 0, never = -1;
    assert_non_null(s);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &never, sizeof never);
    if (k) {
        assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server->pub, 41), 0);
        assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, k->pub, 41), 0);
        assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, k->sec, 41), 0);
    }
    assert_int_equal(zmq_connect(s, url), 0);
    return s;
}

/* The curve_denied of each socket (input, output, control, stats) and curve_denials. */
static uint64_t
curve_counts(struct daemon_run *r, uint64_t denied[4])
{
    Etrace__Reply *rep = NULL;
    static const char *const names[4] = {"input", "output", "control", "stats"};
    assert_int_equal(etrace_stats(r->c, &rep), ETRACE_OK);
    for (int k = 0; k < 4; k++) {
        denied[k] = UINT64_MAX;
        for (size_t i = 0; i < rep->stats->n_sockets; i++)
            if (!strcmp(rep->stats->sockets[i]->name, names[k]))
                denied[k] = rep->stats->sockets[i]->curve_denied;
    }
    uint64_t total = rep->stats->curve_denials;
    etrace_reply_free(rep);
    return total;
}

static void
test_ops_curve(void **state)
{
    struct daemon_run r;
    struct keypair server, allowed, other;
    char path[700], extra[1024], eps_buf[4][64], cmd[4000];
    const char *eps[4];
    (void)state;
    keygen(&server);
    keygen(&allowed);
    keygen(&other);
    assert_string_not_equal(allowed.pub, other.pub);
    daemon_run_prepare(&r, model_text);
    snprintf(path, sizeof path, "%s/server.key", r.dir);
    daemon_run_write_file(path, server.text);
    snprintf(path, sizeof path, "%s/allowed.key", r.dir);
    daemon_run_write_file(path, allowed.text);
    snprintf(path, sizeof path, "%s/other.key", r.dir);
    daemon_run_write_file(path, other.text);
    snprintf(path, sizeof path, "%s/server.key", r.dir);
    /* Random high ports on 127.0.0.1; another try when one is taken. */
    srand((unsigned)getpid() ^ (unsigned)daemon_run_now_ms());
    const char *const keys[3] = {server.pub, allowed.pub, allowed.sec};
    int started = 0;
    for (int attempt = 0; attempt < 8 && !started; attempt++) {
        int base = 20000 + rand() % 40000;
        for (int i = 0; i < 4; i++) {
            snprintf(eps_buf[i], sizeof eps_buf[i], "tcp://127.0.0.1:%d", base + i);
            eps[i] = eps_buf[i];
        }
        snprintf(extra, sizeof extra,
                 "stats_period_ms: 100\ncurve:\n  server_secret_file: %s\n  allow: [\"%s\"]\n",
                 path, allowed.pub);
        started = daemon_run_launch(&r, eps, extra, keys) == 0;
    }
    assert_true(started);

    /* The allowed key: replies and outputs. */
    assert_int_equal(curve_status(&r, &server, &allowed, 2000), ETRACE_OK);
    assert_true(curve_output(&r, &server, &allowed, 2000));
    /* One refused connection each: another key (ZAP) and no CURVE (the handshake) on
     * control, no CURVE on output. Each counted once, and nothing else. The counts start
     * from those once they settle: a start-up probe of the harness that gave up during its
     * handshake (a slow sanitized daemon) counts as refused, as a client without CURVE
     * that hung up first does. */
    uint64_t base[4], denied[4], total = 0, base_total = curve_counts(&r, base);
    for (int64_t deadline = daemon_run_now_ms() + 5000; daemon_run_now_ms() < deadline;) {
        daemon_run_sleep_ms(300); /* three Stats periods */
        uint64_t again[4], t = curve_counts(&r, again);
        if (t == base_total)
            break;
        base_total = t;
        memcpy(base, again, sizeof base);
    }
    void *zctx = zmq_ctx_new();
    void *peers[3] = {refused_peer(zctx, r.ep[2], ZMQ_DEALER, &server, &other),
                      refused_peer(zctx, r.ep[2], ZMQ_DEALER, &server, NULL),
                      refused_peer(zctx, r.ep[1], ZMQ_SUB, &server, NULL)};
    for (int64_t deadline = daemon_run_now_ms() + 5000; daemon_run_now_ms() < deadline;) {
        total = curve_counts(&r, denied) - base_total;
        if (total >= 3)
            break;
        daemon_run_sleep_ms(50);
    }
    daemon_run_sleep_ms(300); /* three Stats periods: a second count would show */
    total = curve_counts(&r, denied) - base_total;
    for (int k = 0; k < 4; k++)
        denied[k] -= base[k];
    print_message("curve, one connection each: denied input +%llu output +%llu control +%llu "
                  "stats +%llu, curve_denials +%llu (from %llu)\n",
                  (unsigned long long)denied[0], (unsigned long long)denied[1],
                  (unsigned long long)denied[2], (unsigned long long)denied[3],
                  (unsigned long long)total, (unsigned long long)base_total);
    assert_true(denied[0] == 0 && denied[1] == 1 && denied[2] == 2 && denied[3] == 0);
    assert_int_equal(total, 3);
    for (int i = 0; i < 3; i++)
        zmq_close(peers[i]);
    zmq_ctx_term(zctx);
    /* Another key, or no CURVE at all: nothing. */
    assert_int_equal(curve_status(&r, &server, &other, 500), ETRACE_ETIMEOUT);
    assert_int_equal(curve_status(&r, &server, NULL, 500), ETRACE_ETIMEOUT);
    assert_false(curve_output(&r, &server, &other, 500));
    /* Counted: the other key on control and on output (ZAP). */
    uint64_t denials = 0, control_denied = 0, output_denied = 0;
    for (int64_t deadline = daemon_run_now_ms() + 3000; daemon_run_now_ms() < deadline;) {
        Etrace__Reply *rep = NULL;
        assert_int_equal(etrace_stats(r.c, &rep), ETRACE_OK);
        denials = rep->stats->curve_denials;
        for (size_t i = 0; i < rep->stats->n_sockets; i++) {
            if (!strcmp(rep->stats->sockets[i]->name, "control"))
                control_denied = rep->stats->sockets[i]->curve_denied;
            if (!strcmp(rep->stats->sockets[i]->name, "output"))
                output_denied = rep->stats->sockets[i]->curve_denied;
        }
        etrace_reply_free(rep);
        if (control_denied >= 1 && output_denied >= 1)
            break;
        daemon_run_sleep_ms(50);
    }
    print_message("curve: denials %llu (control %llu, output %llu)\n", (unsigned long long)denials,
                  (unsigned long long)control_denied, (unsigned long long)output_denied);
    assert_true(control_denied >= 1);
    assert_true(output_denied >= 1);
    assert_true(denials >= control_denied + output_denied);

    /* etracectl with --curve-server and --curve-keys (the files keygen printed). */
    snprintf(cmd, sizeof cmd,
             "%s --control %s --curve-server '%s' --curve-keys %s/allowed.key --timeout 2000 "
             "status >/dev/null",
             daemon_run_etracectl(), r.ep[2], server.pub, r.dir);
    daemon_run_cmd(cmd, 0);
    snprintf(cmd, sizeof cmd,
             "%s --control %s --curve-server '%s' --curve-keys %s/other.key --timeout 500 "
             "status 2>/dev/null",
             daemon_run_etracectl(), r.ep[2], server.pub, r.dir);
    daemon_run_cmd(cmd, 2);
    snprintf(cmd, sizeof cmd,
             "%s --control %s --stats %s --curve-server '%s' --curve-keys %s/allowed.key "
             "--timeout 2000 stats --watch --count 1 | grep -q '^swaps .* curve_denials'",
             daemon_run_etracectl(), r.ep[2], r.ep[3], server.pub, r.dir);
    daemon_run_cmd(cmd, 0);

    /* SIGHUP with another allow-list: the other key in, the first one out (new
     * connections; an established one stays). */
    char text[4096];
    FILE *f = fopen(r.cfg, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *at = strstr(text, allowed.pub);
    assert_non_null(at);
    memcpy(at, other.pub, 40);
    daemon_run_write_file(r.cfg, text);
    assert_int_equal(kill(r.pid, SIGHUP), 0);
    int rc = ETRACE_ETIMEOUT;
    for (int64_t deadline = daemon_run_now_ms() + 3000;
         rc != ETRACE_OK && daemon_run_now_ms() < deadline;)
        rc = curve_status(&r, &server, &other, 300);
    assert_int_equal(rc, ETRACE_OK);
    assert_int_equal(curve_status(&r, &server, &allowed, 500), ETRACE_ETIMEOUT);
    assert_true(curve_output(&r, &server, &other, 2000));
    assert_non_null(strstr(daemon_run_log_text(&r), "curve.allow changed: applied"));
    etrace_client_free(&r.c);
    r.c = etrace_client_new_curve(r.ep[2], r.ep[0], 5000, server.pub, other.pub, other.sec);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* ---- systemd notification (DESIGN §5.7) ---------------------------------------------- */

struct notify_counts {
    int ready, watchdog, stopping;
};

/* Starts a daemon on tcp 127.0.0.1 (random ports, another try when one is taken) with
 * `extra` config. Returns 0 when it answers, -1 when it exited at start-up. */
static int
launch_tcp(struct daemon_run *r, const char *extra)
{
    char eps_buf[4][64];
    const char *eps[4];
    int rc = -1;
    for (int attempt = 0; attempt < 8 && rc; attempt++) {
        int base = 20000 + rand() % 40000;
        for (int i = 0; i < 4; i++) {
            snprintf(eps_buf[i], sizeof eps_buf[i], "tcp://127.0.0.1:%d", base + i);
            eps[i] = eps_buf[i];
        }
        rc = daemon_run_launch(r, eps, extra, NULL);
        if (rc && !strstr(daemon_run_log_text(r), "in use"))
            break; /* refused for its security, not for a port in use */
    }
    return rc;
}

/* The ipc socket files of r (mode and group) are `mode` and `gid`. */
static void
check_sockets(const struct daemon_run *r, mode_t mode, gid_t gid)
{
    for (int i = 0; i < 4; i++) {
        struct stat st;
        assert_int_equal(stat(r->ep[i] + strlen("ipc://"), &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        if ((st.st_mode & 0777) != mode || st.st_gid != gid)
            fail_msg("%s: mode %04o group %u, wanted %04o group %u", r->ep[i],
                     (unsigned)(st.st_mode & 0777), (unsigned)st.st_gid, (unsigned)mode,
                     (unsigned)gid);
    }
}

/* Start-up security (DESIGN §5.7): a tcp endpoint without CURVE is refused unless
 * security.allow_plaintext_tcp (then a warning at every start); ipc sockets are 0600 whatever
 * the umask, or 0660 and security.socket_group's; a CURVE secret key file others may read
 * is refused. */
static void
test_ops_security_start(void **state)
{
    struct daemon_run r;
    char path[700], extra[1024];
    struct keypair server;
    (void)state;
    srand((unsigned)getpid() ^ (unsigned)daemon_run_now_ms());
    daemon_run_prepare(&r, model_text);
    assert_int_equal(launch_tcp(&r, "clock: lockstep\n"), -1);
    assert_non_null(strstr(daemon_run_log_text(&r), "without CURVE gives anyone"));
    assert_int_equal(launch_tcp(&r, "clock: lockstep\nsecurity: {allow_plaintext_tcp: true}\n"), 0);
    assert_non_null(strstr(daemon_run_log_text(&r), "has no CURVE"));
    assert_int_equal(daemon_run_stop(&r), 0);

    /* Under umask 002 (group-writable by default), the sockets still come out 0600. */
    mode_t old = umask(002);
    daemon_run_start(&r, model_text, "clock: lockstep\n");
    umask(old);
    check_sockets(&r, 0600, getegid());
    assert_int_equal(daemon_run_stop(&r), 0);
    /* security.socket_group: 0660 and that group (by name or number). */
    struct group *gr = getgrgid(getegid());
    snprintf(extra, sizeof extra, "clock: lockstep\nsecurity: {socket_group: \"%s\"}\n",
             gr ? gr->gr_name : "0");
    daemon_run_start(&r, model_text, extra);
    check_sockets(&r, 0660, getegid());
    assert_int_equal(daemon_run_stop(&r), 0);
    daemon_run_prepare(&r, model_text);
    assert_int_equal(daemon_run_launch(&r, NULL,
                                       "clock: lockstep\nsecurity: {socket_group: no-such-grp}\n",
                                       NULL),
                     -1);
    assert_non_null(strstr(daemon_run_log_text(&r), "no group 'no-such-grp'"));
    daemon_run_rm_tree(r.dir);

    /* A secret key file others may read. */
    keygen(&server);
    daemon_run_prepare(&r, model_text);
    snprintf(path, sizeof path, "%s/server.key", r.dir);
    daemon_run_write_file(path, server.text);
    assert_int_equal(chmod(path, 0644), 0);
    snprintf(extra, sizeof extra, "clock: lockstep\ncurve: {server_secret_file: %s}\n", path);
    assert_int_equal(launch_tcp(&r, extra), -1);
    assert_non_null(strstr(daemon_run_log_text(&r), "lets others read the secret key"));
    daemon_run_rm_tree(r.dir); /* test_ops_curve starts one with a 0600 key file */
}

/* Reads the notification socket for ms milliseconds, counting the assignments. */
static void
notify_read(int fd, int ms, struct notify_counts *n)
{
    for (int64_t deadline = daemon_run_now_ms() + ms;;) {
        int64_t left = deadline - daemon_run_now_ms();
        if (left <= 0)
            return;
        struct timeval tv = {left / 1000, (long)(left % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[4096];
        ssize_t got = recv(fd, buf, sizeof buf - 1, 0);
        if (got < 0)
            continue;
        buf[got] = '\0';
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
            n->ready += !strcmp(line, "READY=1");
            n->watchdog += !strcmp(line, "WATCHDOG=1");
            n->stopping += !strcmp(line, "STOPPING=1");
        }
    }
}

static void
test_ops_sdnotify(void **state)
{
    struct daemon_run r;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct notify_counts n = {0, 0, 0};
    char path[700];
    (void)state;
    daemon_run_prepare(&r, model_text);
    assert_true(strlen(r.dir) + sizeof "/notify" <= sizeof sa.sun_path);
    memcpy(sa.sun_path, r.dir, strlen(r.dir));
    memcpy(sa.sun_path + strlen(r.dir), "/notify", sizeof "/notify");
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    setenv("NOTIFY_SOCKET", sa.sun_path, 1);
    setenv("WATCHDOG_USEC", "200000", 1);
    int launched = daemon_run_launch(&r, NULL, "", NULL);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    assert_int_equal(launched, 0);

    /* READY=1 came after the sockets were bound: status answered, every ipc file there. */
    notify_read(fd, 300, &n);
    assert_int_equal(n.ready, 1);
    static const char *const names[4] = {"input", "output", "control", "stats"};
    for (int i = 0; i < 4; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", r.dir, names[i]);
        assert_int_equal(stat(path, &st), 0);
    }
    /* Timer mode, ticking: WATCHDOG=1 about every WATCHDOG_USEC / 2. */
    uint64_t t0 = daemon_run_status_tick(&r);
    n.watchdog = 0;
    notify_read(fd, 1000, &n);
    uint64_t t1 = daemon_run_status_tick(&r);
    print_message("sdnotify: %d WATCHDOG=1 in 1 s while ticking (%llu ticks)\n", n.watchdog,
                  (unsigned long long)(t1 - t0));
    assert_true(t1 > t0);
    assert_true(n.watchdog >= 4);
    /* Paused: ticks stop, and so does the watchdog. */
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_pause(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    notify_read(fd, 300, &n); /* the last feeds for ticks run before the pause */
    n.watchdog = 0;
    t0 = daemon_run_status_tick(&r);
    notify_read(fd, 1000, &n);
    t1 = daemon_run_status_tick(&r);
    print_message("sdnotify: %d WATCHDOG=1 in 1 s while paused (%llu ticks)\n", n.watchdog,
                  (unsigned long long)(t1 - t0));
    assert_int_equal(t1, t0);
    assert_int_equal(n.watchdog, 0);
    /* Resumed: fed again. */
    assert_int_equal(etrace_resume(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    notify_read(fd, 1000, &n);
    assert_true(n.watchdog >= 2);
    /* Shutdown: STOPPING=1. */
    n.stopping = 0;
    assert_int_equal(daemon_run_stop_keep(&r), 0);
    notify_read(fd, 200, &n);
    assert_int_equal(n.stopping, 1);
    close(fd);
    daemon_run_rm_tree(r.dir);
}

int
main(int argc, char **argv)
{
    (void)argc;
    daemon_run_find_binaries(argv[0]);
    if (getenv("OPS_FILTER"))
        cmocka_set_test_filter(getenv("OPS_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ops_hot_swap, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_names_refused, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_restore_fifo, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_stale_tmp_removed, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_checkpoint_trust, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_record_replay, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_record_every_item, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_recording_checksums, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_lockstep_replay, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_replay_every_event, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_critic_terminal_replay, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_lockstep_replay_deferred, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_replay_every_event_deferred, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_checkpoint_restore_deferred, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_checkpoint_kill9, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_periodic_checkpoints, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_stop_during_checkpoint, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_curve, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_security_start, daemon_run_teardown),
        cmocka_unit_test_teardown(test_ops_sdnotify, daemon_run_teardown),
    };
    /* ETRACE_TEST_FILTER=test_ops_lockstep_replay runs one test (a glob), say in a loop. */
    const char *filter = getenv("ETRACE_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
