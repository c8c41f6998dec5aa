/* Test support for the integration suites: the real etraced in a private temp directory,
 * driven through libetrace-client (see daemon_run.h). */
#include "daemon_run.h"

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

extern char **environ;

/* The binaries, set once by daemon_run_find_binaries. */
static char bin_etraced[1024], bin_ctl[1024];

/* The daemon of the running test, stopped by daemon_run_teardown if an assertion failed. */
/* The daemons started and not yet stopped, by value: a failed assertion leaves the test's
 * frame (and its struct daemon_run) behind, so the teardown must not read it. */
static struct {
    pid_t pid;
    char dir[256];
} lives[8];

static void
live_add(pid_t pid, const char *dir)
{
    for (size_t i = 0; i < sizeof lives / sizeof lives[0]; i++)
        if (lives[i].pid <= 0) {
            lives[i].pid = pid;
            snprintf(lives[i].dir, sizeof lives[i].dir, "%s", dir);
            return;
        }
}

static void
live_remove(pid_t pid)
{
    for (size_t i = 0; i < sizeof lives / sizeof lives[0]; i++)
        if (lives[i].pid == pid)
            lives[i].pid = 0;
}

void
daemon_run_find_binaries(const char *argv0)
{
    const char *e = getenv("ETRACED"), *c = getenv("ETRACECTL");
    char build[900];
    /* argv0 is BUILD/tests/integration/NAME. */
    snprintf(build, sizeof(build), "%s", argv0);
    for (int i = 0; i < 3; i++) {
        char *slash = strrchr(build, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(build, sizeof(build), ".");
    }
    if (e)
        snprintf(bin_etraced, sizeof(bin_etraced), "%s", e);
    else
        snprintf(bin_etraced, sizeof(bin_etraced), "%s/etraced", build);
    if (c)
        snprintf(bin_ctl, sizeof(bin_ctl), "%s", c);
    else
        snprintf(bin_ctl, sizeof(bin_ctl), "%s/etracectl", build);
}

int
daemon_run_sanitized(void)
{
    return getenv("ETRACE_SANITIZED") != NULL;
}

const char *
daemon_run_etraced(void)
{
    return bin_etraced;
}

const char *
daemon_run_etracectl(void)
{
    return bin_ctl;
}

int64_t
daemon_run_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
daemon_run_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void
daemon_run_write_file(const char *path, const char *text)
{
    /* 0600: the daemon refuses key files others can read. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

long
daemon_run_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6))
            kib = atol(line + 6);
    fclose(f);
    return kib;
}

void
daemon_run_prepare(struct daemon_run *r, const char *model)
{
    memset(r, 0, sizeof(*r));
    r->model = model;
    snprintf(r->dir, sizeof(r->dir), "/tmp/etraced-itest-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
}

/* A client on r's control and input endpoints, over CURVE when keys are given. */
static etrace_client_t *
client_new(const struct daemon_run *r, const char *const keys[3], int timeout_ms)
{
    if (keys)
        return etrace_client_new_curve(r->ep[2], r->ep[0], timeout_ms, keys[0], keys[1], keys[2]);
    return etrace_client_new(r->ep[2], r->ep[0], timeout_ms);
}

/* The soft RLIMIT_NOFILE a spawned daemon gets (0: ours). */
static long child_nofile;

void
daemon_run_set_child_nofile(long soft)
{
    child_nofile = soft;
}

/* Spawns etraced with argv (stderr and stdout to dir/daemon.log, appended or truncated)
 * and waits until `status` answers on r's endpoints, over CURVE when keys are given.
 * Returns 0, or -1 when etraced exited first (its log is printed). */
static int
spawn_wait(struct daemon_run *r, char *const argv[], int append, const char *const keys[3])
{
    char log[600];
    snprintf(log, sizeof(log), "%s/daemon.log", r->dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log,
                                     O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    etrace_client_free(&r->c);
    struct rlimit own;
    int lowered = child_nofile > 0 && !getrlimit(RLIMIT_NOFILE, &own);
    if (lowered) {
        struct rlimit lim = {.rlim_cur = (rlim_t)child_nofile, .rlim_max = own.rlim_max};
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
    }
    int spawned = posix_spawn(&r->pid, bin_etraced, &fa, NULL, argv, environ);
    if (lowered)
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &own), 0);
    assert_int_equal(spawned, 0);
    posix_spawn_file_actions_destroy(&fa);
    live_add(r->pid, r->dir);
    /* A sanitized etraced starts an order of magnitude slower (TSan: some 20 s to bind on a
     * machine with a load of 25 on 2 CPUs): it gets a longer bound. */
    const int64_t start_ms = daemon_run_sanitized() ? 60000 : 10000;
    for (int64_t deadline = daemon_run_now_ms() + start_ms;;) {
        /* A new client per attempt: a refused CURVE handshake is not retried. */
        r->c = client_new(r, keys, keys ? 300 : 500);
        assert_non_null(r->c);
        Etrace__Reply *rep = NULL;
        int rc = etrace_status(r->c, &rep);
        etrace_reply_free(rep);
        etrace_client_free(&r->c);
        if (rc == ETRACE_OK)
            break;
        int st;
        if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
            char cmd[700];
            snprintf(cmd, sizeof(cmd), "cat %s >&2", log);
            (void)!system(cmd);
            live_remove(r->pid);
            r->pid = 0;
            return -1;
        }
        if (daemon_run_now_ms() > deadline)
            fail_msg("etraced did not answer on %s within %lld s", r->ep[2],
                     (long long)(start_ms / 1000));
    }
    r->c = client_new(r, keys, 5000);
    assert_non_null(r->c);
    return 0;
}

int
daemon_run_launch(struct daemon_run *r, const char *const eps[4], const char *extra,
                  const char *const keys[3])
{
    static const char *const names[4] = {"input", "output", "control", "stats"};
    char path[600], cfg[4096];
    snprintf(path, sizeof(path), "%s/model.yaml", r->dir);
    daemon_run_write_file(path, r->model);
    int n = snprintf(cfg, sizeof(cfg), "model: model.yaml\nendpoints:\n");
    for (int i = 0; i < 4; i++) {
        if (eps)
            snprintf(r->ep[i], sizeof(r->ep[i]), "%s", eps[i]);
        else
            snprintf(r->ep[i], sizeof(r->ep[i]), "ipc://%s/%s", r->dir, names[i]);
        n += snprintf(cfg + n, sizeof(cfg) - (size_t)n, "  %s: %s\n", names[i], r->ep[i]);
    }
    snprintf(cfg + n, sizeof(cfg) - (size_t)n, "%s", extra);
    snprintf(r->cfg, sizeof(r->cfg), "%s/etraced.yaml", r->dir);
    daemon_run_write_file(r->cfg, cfg);
    setenv("XDG_RUNTIME_DIR", r->dir, 1);
    setenv("XDG_STATE_HOME", r->dir, 1);
    char *argv[] = {bin_etraced, "--config", r->cfg, NULL};
    return spawn_wait(r, argv, 0, keys);
}

int
daemon_run_launch_model(struct daemon_run *r, const char *const eps[4])
{
    char path[600];
    snprintf(path, sizeof(path), "%s/model.yaml", r->dir);
    daemon_run_write_file(path, r->model);
    for (int i = 0; i < 4; i++)
        snprintf(r->ep[i], sizeof(r->ep[i]), "%s", eps[i]);
    r->cfg[0] = '\0';
    char *argv[] = {bin_etraced, "--model", path, NULL};
    return spawn_wait(r, argv, 0, NULL);
}

void
daemon_run_start(struct daemon_run *r, const char *model, const char *extra)
{
    daemon_run_prepare(r, model);
    if (daemon_run_launch(r, NULL, extra, NULL)) {
        daemon_run_rm_tree(r->dir);
        fail_msg("etraced exited at start-up");
    }
}

void
daemon_run_respawn(struct daemon_run *r)
{
    char *argv[] = {bin_etraced, "--config", r->cfg, NULL};
    if (spawn_wait(r, argv, 1, NULL))
        fail_msg("etraced exited at a restart");
}

void
daemon_run_rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1024];
    if (!d)
        return;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (!lstat(path, &st) && S_ISDIR(st.st_mode))
            daemon_run_rm_tree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Keeps the log of a daemon that ended badly (a sanitizer report, say: TSan exits 66) before
 * its directory is removed: copied to $SUITE_LOG_DIR (run-suites.sh's log directory) as
 * etraced-PID.log, and printed on stderr, which the suite's own log keeps. */
static void
save_log(const char *dir, pid_t pid, int status)
{
    char path[600], cmd[2048];
    const char *log_dir = getenv("SUITE_LOG_DIR");
    struct stat st;
    snprintf(path, sizeof path, "%s/daemon.log", dir);
    if (stat(path, &st))
        return; /* the test removed it: nothing to keep */
    fprintf(stderr, "etraced (pid %d) ended with status 0x%x; its log %s follows\n", (int)pid,
            (unsigned)status, path);
    snprintf(cmd, sizeof cmd, "cat '%s' >&2", path);
    (void)!system(cmd);
    if (log_dir && *log_dir) {
        snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/etraced-%d.log'", log_dir, path,
                 log_dir, (int)pid);
        if (system(cmd) == 0)
            fprintf(stderr, "etraced log kept as %s/etraced-%d.log\n", log_dir, (int)pid);
    }
}

int
daemon_run_stop_keep(struct daemon_run *r)
{
    int st = -1;
    if (r->pid > 0) {
        Etrace__Reply *rep = NULL;
        etrace_shutdown(r->c, &rep);
        etrace_reply_free(rep);
        /* A sanitized etraced also stops slower (TSan's exit report). */
        int64_t deadline = daemon_run_now_ms() + (daemon_run_sanitized() ? 30000 : 5000);
        while (waitpid(r->pid, &st, WNOHANG) == 0) {
            if (daemon_run_now_ms() > deadline)
                kill(r->pid, daemon_run_now_ms() > deadline + 2000 ? SIGKILL : SIGTERM);
            daemon_run_sleep_ms(10);
        }
    }
    etrace_client_free(&r->c);
    live_remove(r->pid);
    if (r->pid > 0 && st != 0 && st != -1) /* -1: reaped by the test itself */
        save_log(r->dir, r->pid, st);
    r->pid = 0;
    return st;
}

int
daemon_run_stop(struct daemon_run *r)
{
    int st = daemon_run_stop_keep(r);
    daemon_run_rm_tree(r->dir);
    return st;
}

int
daemon_run_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof lives / sizeof lives[0]; i++)
        if (lives[i].pid > 0) {
            kill(lives[i].pid, SIGKILL);
            waitpid(lives[i].pid, NULL, 0);
            save_log(lives[i].dir, lives[i].pid, -1);
            lives[i].pid = 0;
            daemon_run_rm_tree(lives[i].dir);
        }
    return 0;
}

Etrace__Stats *
daemon_run_stats(struct daemon_run *r)
{
    /* A fresh snapshot: wait for one published after now on the stats socket. */
    etrace_sub_t *s = etrace_sub_new(r->ep[3], "stats");
    Etrace__Stats *st = NULL;
    assert_non_null(s);
    assert_int_equal(etrace_sub_recv_stats(s, 5000, &st), ETRACE_OK);
    etrace__stats__free_unpacked(st, NULL);
    assert_int_equal(etrace_sub_recv_stats(s, 5000, &st), ETRACE_OK); /* a whole period */
    etrace_sub_free(&s);
    return st;
}

const Etrace__SocketStats *
daemon_run_sock(const Etrace__Stats *st, const char *name)
{
    for (size_t i = 0; i < st->n_sockets; i++)
        if (!strcmp(st->sockets[i]->name, name))
            return st->sockets[i];
    fail_msg("no socket %s in Stats", name);
    return NULL;
}

uint64_t
daemon_run_status_tick(struct daemon_run *r)
{
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_status(r->c, &rep), ETRACE_OK);
    uint64_t tick = rep->status->tick;
    etrace_reply_free(rep);
    return tick;
}

int
daemon_run_step_target(struct daemon_run *r, const char *input, float *x, size_t n_x,
                       const char *readout, float *y, size_t n_y, Etrace__Reply **rep)
{
    Etrace__Input in = ETRACE__INPUT__INIT;
    Etrace__Frame f = ETRACE__FRAME__INIT, *fp = &f;
    Etrace__Signal s = ETRACE__SIGNAL__INIT, *sp = &s;
    Etrace__Signal__Target t = ETRACE__SIGNAL__TARGET__INIT;
    /* The generated structs take char *; nothing writes through these. */
    f.name = (char *)input;
    f.values = x;
    f.n_values = n_x;
    t.values = y;
    t.n_values = n_y;
    s.readout = (char *)readout;
    s.kind_case = ETRACE__SIGNAL__KIND_TARGET;
    s.target = &t;
    in.frames = &fp;
    in.n_frames = 1;
    in.signals = &sp;
    in.n_signals = 1;
    return etrace_step(r->c, &in, 0, rep);
}

void
daemon_run_export_to(struct daemon_run *r, const char *dir)
{
    Etrace__Reply *rep = NULL;
    char err[256];
    assert_int_equal(etrace_export(r->c, &rep), ETRACE_OK);
    assert_int_equal(etrace_export_write(rep->export, dir, err, sizeof err), 0);
    etrace_reply_free(rep);
}

char *
daemon_run_log_text(struct daemon_run *r)
{
    static char buf[1 << 20];
    char path[600];
    snprintf(path, sizeof path, "%s/daemon.log", r->dir);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return buf;
}

int
daemon_run_read_npy_f32(const char *path, float *v, size_t n)
{
    FILE *f = fopen(path, "rb");
    uint8_t pre[10];
    char header[512];
    size_t hl = 0;
    int ok = f && fread(pre, 1, 10, f) == 10;
    if (ok) {
        hl = (size_t)pre[8] | (size_t)pre[9] << 8;
        ok = hl < sizeof(header) && fread(header, 1, hl, f) == hl;
    }
    if (ok) {
        header[hl] = '\0';
        ok = strstr(header, "<f4") && fread(v, sizeof(float), n, f) == n;
    }
    if (f)
        fclose(f);
    return ok ? 0 : -1;
}

int
daemon_run_same_file(const char *a, const char *b)
{
    char cmd[2100];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    int st = system(cmd);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

void
daemon_run_cmd(const char *cmd, int want)
{
    int st = system(cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != want)
        fail_msg("'%s' exited %d, wanted %d", cmd, WIFEXITED(st) ? WEXITSTATUS(st) : -1, want);
}
