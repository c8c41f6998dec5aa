/* The daemon's root (DESIGN §5): every piece of daemon state is reachable from struct
 * daemon, which the loop thread owns (the engine is the tick thread's while it runs).
 * Modules start in dependency order — config, model, layout, ticker, loop, sockets,
 * tick thread — and stop in exact reverse. Daemon layer. */
#ifndef ETRACE_DAEMON_H
#define ETRACE_DAEMON_H

#include <limits.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "endpoint.h"
#include "pidlock.h"
#include "engine.h"
#include "ticker.h"
#include "wire.h"

enum { DAEMON_MAX_PENDING = 64, DAEMON_MAX_ENVELOPE = ENDPOINT_MAX_PARTS - 1 };

/* A request (or internal command) waiting for the tick thread's result. */
struct daemon_pending {
    int in_use;
    uint64_t serial;                    /* matches tick_result.serial */
    uint64_t req_id;                    /* the Request's id */
    int command;                        /* Etrace__Request__CommandCase, 0: internal */
    int n_env;                          /* envelope parts, 0: no reply to send */
    zmq_msg_t env[DAEMON_MAX_ENVELOPE]; /* the ROUTER envelope, owned */
    void *buf;                          /* export buffer or input cfg, owned */
};

struct daemon {
    struct config cfg;        /* the settings in force */
    char run_dir[PATH_MAX];   /* RUN (ipc endpoints) */
    char state_dir[PATH_MAX]; /* the state directory */
    struct engine *eng;       /* the live model (the tick thread's once started) */
    struct layout lay;        /* names and sizes, read before the tick thread starts */
    int64_t period_ns;        /* the timer period */
    int64_t dt_ns;            /* the model's dt */
    int64_t start_ns;         /* CLOCK_MONOTONIC at start, for uptime */
    struct ticker tick;
    uv_loop_t loop;
    uv_async_t wake; /* the tick thread's outputs and results */
    uv_signal_t sig_int, sig_term, sig_hup, sig_pipe;
    uv_timer_t housekeeping; /* stats, watchdog (one timer, named sub-periods) */
    void *zctx;              /* the ZeroMQ context */
    struct endpoint ep[CONFIG_N_EP];
    struct daemon_pending pending[DAEMON_MAX_PENDING];
    uint64_t next_serial;
    /* stats */
    struct tick_stats *stats_pend; /* being filled by the tick thread */
    struct tick_stats *stats_last; /* the last complete snapshot, or NULL */
    struct tick_stats stats_buf[2];
    int stats_in_flight;   /* a TICK_CMD_STATS is queued */
    int64_t stats_next_ns; /* when the next Stats is due */
    int64_t stats_prev_ns; /* time of the previous snapshot */
    uint64_t stats_seq;
    uint64_t status_prev_ticks; /* ticks_total at the previous STATUS= */
    char status_line[256];      /* the last STATUS= sent */
    int n_stats_waiting;        /* `stats` requests waiting for the first snapshot, or (lockstep)
                                 * for one taken after they arrived */
    int n_stats_ready;          /* the first n_stats_waiting that the queued TICK_CMD_STATS answers
                                 * (parked before it was sent) */
    struct daemon_pending stats_waiting[DAEMON_MAX_PENDING];
    /* watchdog */
    int64_t watchdog_ns, watchdog_next_ns;
    uint64_t watchdog_tick;
    /* scratch for publishing outputs */
    float *out_floats; /* largest readout size + action */
    uint8_t *out_buf;  /* a packed Output */
    size_t out_buf_len;
    struct ops *ops;                    /* hot swap, checkpoints, recordings (ops.h) */
    uint64_t curve_denials;             /* ZAP requests refused (curve.allow) */
    uint64_t curve_denied[CONFIG_N_EP]; /* ... per socket (the ZAP domain names it) */
    uint8_t curve_secret_key[32];       /* the server's CURVE secret key */
    int has_curve;                      /* curve.server_secret_file is set */
    void *zap;                          /* the ZAP handler's REP socket (CURVE), or NULL */
    uv_poll_t zap_poll;
    int n_control_jobs;   /* big requests being unpacked on a worker (control.c) */
    size_t n_fds;         /* the soft RLIMIT_NOFILE, raised to the hard one at start */
    size_t fd_base;       /* descriptors open once the sockets were bound */
    struct pidlock locks; /* one daemon per ipc endpoint, held until exit */
    int stopping;         /* shutdown under way */
    int exit_code;
};

/* Runs the daemon: `etraced [--config FILE] [--model FILE]`. Returns the exit code (0; 1
 * invalid model or config; 64 usage). Called by main() for every invocation that is not
 * an offline subcommand. */
int daemon_main(int argc, char **argv);

/* Loop thread: begins an orderly shutdown (tick thread, sockets, loop). */
void daemon_stop(struct daemon *d);

/* Loop thread: a free pending slot with a fresh serial, or NULL when all are in use. */
struct daemon_pending *daemon_pending_new(struct daemon *d);

/* Loop thread: releases a slot (closes its envelope, frees its buffer). */
void daemon_pending_free(struct daemon_pending *p);

/* Loop thread: publishes every output record in the ring (a hot swap drains the old
 * model's before its layout goes). */
void daemon_drain_outputs(struct daemon *d);

/* Loop thread: asks the tick thread for a stats snapshot unless one is in flight. */
void daemon_request_stats(struct daemon *d);

#endif
