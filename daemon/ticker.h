/* The tick thread (DESIGN §5.2, §5.3): owns the engine, sleeps to absolute deadlines on
 * CLOCK_MONOTONIC (timer) or blocks on an eventfd (lockstep, paused), applies commands
 * between two ticks, and exchanges records with the loop thread only through SPSC rings
 * and a latest-value buffer. Daemon layer.
 * Threads: ticker_init/start/join/fini on the main thread; ticker_send, ticker_input_*,
 * ticker_status and the consumer side of out_q and res_q on the loop thread; everything
 * else is the tick thread's. */
#ifndef ETRACE_TICKER_H
#define ETRACE_TICKER_H

#include <pthread.h>
#include <stdint.h>
#include <uv.h>

#include "engine.h"
#include "hist.h"
#include "spsc.h"
#include "wire.h"

/* Published after every tick and command: what `status` shows. */
struct tick_status {
    uint64_t tick;          /* ticks executed */
    uint64_t period_index;  /* periods elapsed */
    int32_t paused;         /* 1 while paused */
    int32_t learn;          /* enum engine_learn */
    double lr;              /* the learning rate */
};

struct tick_input_counters {
    uint64_t frames;           /* frames applied */
    uint64_t superseded;       /* frames overwritten before a tick read them */
    uint64_t dropped_overflow; /* spike events over size in one tick */
    uint64_t stale_ticks;      /* ticks at which the input was stale */
};

struct tick_readout_counters {
    uint64_t targets;    /* targets applied */
    uint64_t superseded; /* targets replaced before a tick consumed them */
};

/* A stats snapshot. The loop owns the struct and its arrays (sized by the layout); the
 * tick thread fills it in answer to TICK_CMD_STATS and resets its period figures. */
struct tick_stats {
    int64_t time_ns;          /* when it was taken */
    uint64_t tick, period_index, overruns, skipped;
    uint64_t outputs_dropped; /* ticks whose output record found the ring full */
    uint64_t invalid_ticks;   /* ticks with valid = 0 */
    struct hist tick_time;    /* over the period */
    struct hist lateness;     /* over the period (timer mode) */
    double loss_sum;          /* over the period's ticks with a target */
    uint64_t loss_n;
    double reward_sum;        /* over the period */
    uint64_t n_ticks;         /* ticks in the period */
    struct engine_counters eng;
    int32_t learn, paused;
    double lr;
    struct tick_input_counters *inputs;     /* [n_inputs] */
    struct tick_readout_counters *readouts; /* [n_readouts] */
    struct engine_norms *norms;             /* [n_projs], the last complete sweep */
    double *rates;                          /* [n_cells], -1 for non-spiking cells */
};

/* Per input staleness (inputs.<name> of the config). */
struct tick_input_cfg {
    int64_t max_age_ns; /* 0: never stale */
    int zero;           /* on_stale: zero */
};

enum tick_cmd_type {
    TICK_CMD_PAUSE,
    TICK_CMD_RESUME,
    TICK_CMD_LEARN,     /* arg.on */
    TICK_CMD_LR,        /* arg.lr */
    TICK_CMD_RESET,     /* arg.reset */
    TICK_CMD_STEP,      /* arg.reset_before; a struct wire_input follows the command */
    TICK_CMD_EXPORT,    /* arg.buf: layout.export_bytes, filled */
    TICK_CMD_STATS,     /* arg.stats: filled */
    TICK_CMD_INPUT_CFG, /* arg.input_cfg: [n_inputs], copied */
    TICK_CMD_QUIT
};

struct tick_cmd {
    uint32_t type;   /* enum tick_cmd_type */
    uint32_t pad;
    uint64_t serial; /* echoed in the result */
    union {
        int on;
        double lr;
        struct {
            int states, traces;
        } reset;
        int reset_before;
        void *buf;
        struct tick_stats *stats;
        const struct tick_input_cfg *input_cfg;
    } arg;
};

/* The answer to a command. STEP: an output record follows (layout.output_bytes). */
struct tick_result {
    uint64_t serial;
    uint32_t type;          /* enum tick_cmd_type */
    int32_t code;           /* Etrace__Error__Code, 0 ok */
    struct tick_status status;
    char msg[112];          /* the error, when code != 0 */
};

struct ticker_opts {
    int lockstep;           /* clock: lockstep */
    int64_t period_ns;      /* timer period */
    int rt_priority;        /* SCHED_FIFO priority, 0 off */
    int rt_cpu;             /* CPU to pin to, -1 none */
    size_t in_q_bytes;      /* input ring capacity */
    uv_async_t *wake;       /* sent after pushing to out_q or res_q */
};

struct ticker {
    struct engine *eng;          /* owned by the tick thread while it runs */
    const struct layout *lay;    /* the daemon's */
    struct ticker_opts opts;
    struct spsc cmd_q;           /* loop -> tick: struct tick_cmd [+ input] */
    struct spsc in_q;            /* loop -> tick: struct wire_input */
    struct spsc out_q;           /* tick -> loop: struct wire_output */
    struct spsc res_q;           /* tick -> loop: struct tick_result [+ output] */
    struct latest status;        /* tick -> loop: struct tick_status */
    int efd;                     /* eventfd the tick thread blocks on */
    pthread_t thread;
    int started;
    /* Everything below is the tick thread's. */
    int paused, quit;
    uint64_t period_index;
    int64_t next_ns;             /* the next deadline */
    uint64_t overruns, skipped, outputs_dropped, invalid_ticks;
    struct hist tick_time, lateness;
    double loss_sum, reward_sum, tick_reward;
    uint64_t loss_n, n_ticks;
    int had_target;
    uint64_t input_seq;
    int64_t input_sender_time_ns;
    struct tick_input_counters *in_c;      /* [n_inputs] */
    struct tick_readout_counters *ro_c;    /* [n_readouts] */
    struct tick_input_cfg *in_cfg;         /* [n_inputs] */
    int64_t *last_frame_ns;                /* [n_inputs], 0: none yet */
    uint64_t *frame_drain;                 /* [n_inputs], drain stamp of the last frame */
    int *zeroed;                           /* [n_inputs], stale input set to zeros */
    uint64_t drain_id;
    real *zeros;                           /* [largest input] */
    struct engine_norms *norms;            /* [n_projs], the sweep in progress */
    struct engine_norms *norms_done;       /* [n_projs], the last complete sweep */
    int norm_cursor;
};

/* Allocates the rings and tables for eng (not yet running). Returns 0 or -1. */
int ticker_init(struct ticker *t, struct engine *eng, const struct layout *lay,
                const struct ticker_opts *o);

/* Starts the tick thread. Returns 0, or -1 with errno. */
int ticker_start(struct ticker *t);

/* Waits for the tick thread to end (after TICK_CMD_QUIT). */
void ticker_join(struct ticker *t);

/* Frees what ticker_init allocated (not the engine). Accepts a zeroed struct. */
void ticker_fini(struct ticker *t);

/* Loop thread: queues a command (with `extra` bytes after it) and wakes the tick thread.
 * Returns 0, or -1 when the command ring is full. */
int ticker_send(struct ticker *t, const struct tick_cmd *cmd, const void *extra,
                size_t extra_len);

/* Loop thread: space for a command with extra_len bytes after it, to fill in place, then
 * ticker_send_commit. NULL when full. */
struct tick_cmd *ticker_send_reserve(struct ticker *t, size_t extra_len);
void ticker_send_commit(struct ticker *t, size_t extra_len);

/* Loop thread: the newest status. */
struct tick_status ticker_status(struct ticker *t);

/* CLOCK_MONOTONIC in nanoseconds. Any thread. */
int64_t ticker_now_ns(void);

#endif
