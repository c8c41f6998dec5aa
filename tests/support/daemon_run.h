/* Test support for the integration suites: the real etraced started in a private temporary
 * directory on ipc paths (or given endpoints), driven through libetrace-client, stopped and
 * cleaned up. Test layer (cmocka assertions, libetrace-client, libzmq; no main()).
 * Single-threaded: one test program's main thread. */
#ifndef ETRACE_DAEMON_RUN_H
#define ETRACE_DAEMON_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "etrace_client.h"

/* The model the daemon and ops suites share: inputs sensors[4] and ev[6] (spikes), a
 * 32-cell lif layer, readout action[2], es_d_rtrl with sgd lr 1.0e-3, seed 3. A string
 * literal, so a test can keep it in an array and size buffers with sizeof. */
#define DAEMON_RUN_ITEST_MODEL                                                                     \
    "name: itest\n"                                                                                \
    "dt: 1.0e-3\n"                                                                                 \
    "seed: 3\n"                                                                                    \
    "inputs:\n"                                                                                    \
    "  - {name: sensors, size: 4}\n"                                                               \
    "  - {name: ev, size: 6, kind: spikes}\n"                                                      \
    "cells:\n"                                                                                     \
    "  - {name: hidden, model: lif, size: 32, params: {tau: 10.0e-3}}\n"                           \
    "  - {name: out, model: leaky_readout, size: 2}\n"                                             \
    "projections:\n"                                                                               \
    "  - {name: w_in, from: [sensors, ev, hidden], to: hidden.delta,\n"                            \
    "     weight: {init: kaiming_normal}, bias: {init: constant, value: 0.05}}\n"                  \
    "  - {name: w_out, from: hidden, to: out, weight: {init: kaiming_normal, scale: 0.5}}\n"       \
    "readouts:\n"                                                                                  \
    "  - {name: action, cell: out}\n"                                                              \
    "learning:\n"                                                                                  \
    "  algorithm: es_d_rtrl\n"                                                                     \
    "  decay_or_rank: 0.9\n"                                                                       \
    "  optimizer: {kind: sgd, lr: 1.0e-3}\n"

/* One daemon under test. The caller owns the storage (usually on the test's stack);
 * daemon_run_prepare or daemon_run_start fills it. */
struct daemon_run {
    char dir[256];      /* the temp dir: model, config, ipc sockets, log */
    char ep[4][512];    /* endpoints: input, output, control, stats */
    char cfg[512];      /* the config file, dir/etraced.yaml */
    const char *model;  /* the model text written to dir/model.yaml (not owned) */
    pid_t pid;          /* the daemon's pid; 0 when none runs */
    etrace_client_t *c; /* a client on ep[2] and ep[0] with a 5 s timeout (owned) */
};

/* Sets the binaries' paths: $ETRACED and $ETRACECTL, else etraced and etracectl in BUILD
 * when argv0 is BUILD/tests/integration/NAME (else in "."). Call once from main(). */
void daemon_run_find_binaries(const char *argv0);

/* 1 when $ETRACE_SANITIZED is set: the daemon under test runs under ASan, whose quarantine
 * makes resident memory meaningless (leaks show as a non-zero exit status instead). */
int daemon_run_sanitized(void);

/* The path of the etraced binary daemon_run_find_binaries chose (static storage). */
const char *daemon_run_etraced(void);

/* The path of the etracectl binary daemon_run_find_binaries chose (static storage). */
const char *daemon_run_etracectl(void);

/* Sets the soft RLIMIT_NOFILE the daemons started from now on get (0: this process's own,
 * the default); this process's own limit is lowered only around the spawn. */
void daemon_run_set_child_nofile(long soft);

/* Clears r and makes its temporary directory /tmp/etraced-itest-XXXXXX; `model` (kept by
 * pointer, must outlive r) is what daemon_run_launch writes as the model file. */
void daemon_run_prepare(struct daemon_run *r, const char *model);

/* Writes r->model and a config (endpoints eps, NULL: ipc paths in r->dir, then the `extra`
 * config lines) into r->dir, starts etraced with its log in dir/daemon.log, and waits up to
 * 10 s until `status` answers, over CURVE when keys (server public, client public, client
 * secret; Z85) are given. On success r->c is a client with a 5 s timeout (over CURVE with
 * keys) and the daemon is one daemon_run_teardown stops. Returns 0, or -1 when etraced exited
 * at start-up (a port in use, say; its log is printed on stderr). Fails the test when
 * etraced does not answer in time. */
int daemon_run_launch(struct daemon_run *r, const char *const eps[4], const char *extra,
                      const char *const keys[3]);

/* Writes r->model to dir/model.yaml and starts `etraced --model dir/model.yaml` with no config
 * (every default, DESIGN §5.6) in this process's environment, which the caller sets
 * (XDG_RUNTIME_DIR, RUNTIME_DIRECTORY, XDG_STATE_HOME: where the defaults put RUN and the
 * state directory); its log in dir/daemon.log. `eps` (input, output, control, stats) are the
 * endpoints the defaults are expected to give: copied to r->ep, and the function waits up to
 * 10 s until `status` answers on eps[2]. On success r->c is a client with a 5 s timeout, r->cfg
 * is "" and the daemon is one daemon_run_teardown stops. Returns 0, or -1 when etraced exited at
 * start-up (its log printed on stderr). Fails the test when etraced does not answer in time. */
int daemon_run_launch_model(struct daemon_run *r, const char *const eps[4]);

/* daemon_run_prepare and daemon_run_launch on ipc paths with `extra` config lines; fails
 * the test (removing the directory) when etraced exits at start-up. */
void daemon_run_start(struct daemon_run *r, const char *model, const char *extra);

/* Starts etraced again on r's config in r's directory (its log appended to dir/daemon.log)
 * after the previous one died; waits up to 10 s until `status` answers, then replaces r->c
 * with a new client with a 5 s timeout. Fails the test when etraced does not answer. */
void daemon_run_respawn(struct daemon_run *r);

/* Stops the daemon (a shutdown request, then SIGTERM after 5 s, then SIGKILL after 7 s),
 * frees r->c and keeps the directory. Returns the wait status, or -1 when no daemon ran. */
int daemon_run_stop_keep(struct daemon_run *r);

/* Stops the daemon as daemon_run_stop_keep and removes its directory. Returns the wait
 * status, or -1 when no daemon ran. */
int daemon_run_stop(struct daemon_run *r);

/* A cmocka teardown: every daemon started and not stopped (an assertion failed) is killed
 * (SIGKILL) and its directory removed. It keeps its own copy of each pid and directory:
 * the test's struct daemon_run is gone by then (its client leaks). Returns 0. */
int daemon_run_teardown(void **state);

/* A fresh Stats: subscribes to r's stats socket and returns the second snapshot received
 * (published after the call: a whole period). The caller frees it with
 * etrace__stats__free_unpacked. Fails the test when none comes within 5 s. */
Etrace__Stats *daemon_run_stats(struct daemon_run *r);

/* The statistics of socket `name` ("input", "output", "control", "stats") in st (owned by
 * st). Fails the test when there is none. */
const Etrace__SocketStats *daemon_run_sock(const Etrace__Stats *st, const char *name);

/* The daemon's tick from a `status` request. Fails the test when it is not answered. */
uint64_t daemon_run_status_tick(struct daemon_run *r);

/* One lockstep step with one frame (x[n_x] on input `input`) and one target (y[n_y] for
 * readout `readout`). Returns etrace_step's code; *rep as etrace_step (the caller frees it
 * with etrace_reply_free). */
int daemon_run_step_target(struct daemon_run *r, const char *input, float *x, size_t n_x,
                           const char *readout, float *y, size_t n_y, Etrace__Reply **rep);

/* Exports r's parameters (an `export` request) as .npy files under dir. Fails the test when
 * the request or the writing fails. */
void daemon_run_export_to(struct daemon_run *r, const char *dir);

/* The text of r's dir/daemon.log (its first MiB; "" when there is none), in a static
 * buffer that the next call overwrites. */
char *daemon_run_log_text(struct daemon_run *r);

/* Milliseconds on the monotonic clock. */
int64_t daemon_run_now_ms(void);

/* Sleeps ms milliseconds. */
void daemon_run_sleep_ms(int ms);

/* Writes `text` to the file at path (created 0600). Fails the test when the file cannot be
 * opened. */
void daemon_run_write_file(const char *path, const char *text);

/* Removes dir and everything under it (symbolic links are removed, not followed). */
void daemon_run_rm_tree(const char *dir);

/* The resident set size of process pid in KiB (/proc/PID/status), or -1. */
long daemon_run_rss_kib(pid_t pid);

/* Reads the data of a float32 .npy (after its header) into v[n]. Returns 0, or -1 when the
 * file is missing, is not float32 or holds fewer than n values. */
int daemon_run_read_npy_f32(const char *path, float *v, size_t n);

/* Whether files a and b are equal byte for byte (`cmp -s`): 1 or 0. */
int daemon_run_same_file(const char *a, const char *b);

/* Runs the shell command cmd; fails the test unless it exits with status `want`. */
void daemon_run_cmd(const char *cmd, int want);

#endif
