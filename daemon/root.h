/* The daemon's root state (DESIGN §5): every piece of daemon state is reachable from
 * struct daemon, which the loop thread owns (the engine is the tick thread's while it runs).
 * Types only: daemon.c starts, runs and stops it, and hands it to the modules below it
 * (control.c, ops.c, stats.c, curve.c, security.c). Daemon layer. */
#ifndef ETRACE_ROOT_H
#define ETRACE_ROOT_H

#include <limits.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "endpoint.h"
#include "pidlock.h"
#include "pending.h"
#include "engine.h"
#include "ticker.h"
#include "wire.h"

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
    struct pending_table pending; /* requests waiting for the tick thread or an operation */
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
    struct pending stats_waiting[PENDING_MAX];
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
    int stop_requested;   /* a `shutdown` request was answered: stop now (daemon.c) */
    int stopping;         /* shutdown under way */
    int exit_code;
};

#endif
