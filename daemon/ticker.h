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
#include "pool.h"
#include "spsc.h"
#include "wire.h"

struct snap; /* snapshot.h */

/* Published after every tick and command: what `status` shows. */
struct tick_status {
    uint64_t tick;         /* ticks executed */
    uint64_t period_index; /* periods elapsed */
    int32_t paused;        /* 1 while paused */
    int32_t learn;         /* enum engine_learn */
    double lr;             /* the learning rate */
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
    int64_t time_ns; /* when it was taken */
    uint64_t tick, period_index, overruns, skipped;
    uint64_t outputs_dropped; /* ticks whose output record found the ring full */
    uint64_t output_wakes;    /* times the tick thread woke the loop to publish outputs */
    uint64_t invalid_ticks;   /* ticks with valid = 0 */
    struct hist tick_time;    /* over the period */
    struct hist lateness;     /* over the period (timer mode) */
    double loss_sum;          /* over the period's ticks with a target */
    uint64_t loss_n;
    double reward_sum; /* over the period */
    uint64_t n_ticks;  /* ticks in the period */
    struct engine_counters eng;
    int32_t learn, paused;
    double lr;
    struct tick_input_counters *inputs;     /* [n_inputs] */
    struct tick_readout_counters *readouts; /* [n_readouts] */
    struct engine_norms *norms;             /* [n_projs], the last complete sweep */
    double *rates;                          /* [n_cells], -1 for non-spiking cells */
    uint64_t swaps;                         /* hot swaps and restores since start */
    int64_t last_swap_gap_ns;     /* start of the last old tick to the start of the first new */
    uint64_t inputs_dropped_swap; /* inputs checked against a layout swapped out meanwhile */
    /* Since the daemon started, across swaps and restores (which set the engine's own
     * counts, `tick` and `eng`, back): never decrease. */
    uint64_t life_ticks, life_steps, life_refused, life_resets;
    /* tick_time and lateness since the daemon started: values measured and their sum */
    uint64_t tick_time_count_total, lateness_count_total;
    int64_t tick_time_sum_ns_total, lateness_sum_ns_total;
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
    TICK_CMD_QUIT,
    TICK_CMD_SWAP,        /* arg.swap: swapped in; the old engine and tables come back in it */
    TICK_CMD_SNAPSHOT,    /* arg.snap: filled (at once, or a slice per tick); answered when whole */
    TICK_CMD_RECORD_STOP, /* stop logging recording events */
    TICK_CMD_REPLAY       /* arg.replay: one recorded event applied without a tick
                           * (lockstep); TICK_REC_INPUT: a struct wire_input follows */
};

/* The tables of the tick thread that are sized by the model's layout. */
struct tick_tables {
    struct tick_input_counters *in_c;   /* [n_inputs] */
    struct tick_readout_counters *ro_c; /* [n_readouts] */
    struct tick_input_cfg *in_cfg;      /* [n_inputs] */
    int64_t *last_frame_ns;             /* [n_inputs], 0: none yet */
    uint64_t *frame_drain;              /* [n_inputs], drain stamp of the last frame */
    int *zeroed;                        /* [n_inputs], stale input set to zeros */
    real *zeros;                        /* [largest input] */
    struct engine_norms *norms;         /* [n_projs], the sweep in progress */
    struct engine_norms *norms_done;    /* [n_projs], the last complete sweep */
};

/* Allocates tables for layout l. Returns 0 or -1 (out of memory). */
int tick_tables_init(struct tick_tables *tt, const struct layout *l);

/* Frees them; accepts a zeroed struct. */
void tick_tables_fini(struct tick_tables *tt);

/* A hot swap or a restore (DESIGN §5.4), prepared by the loop. The loop owns it; the tick
 * thread exchanges eng, lay and the tables with its own. */
struct tick_swap {
    struct engine *eng;        /* in: the new engine; out: the old one (the loop frees it) */
    const struct layout *lay;  /* in: the new engine's layout */
    struct tick_tables tables; /* in: for the new layout; out: the old ones */
    const int *in_map;         /* [new n_inputs]: the old index of the same input, or -1 */
    const int *ro_map;         /* [new n_readouts]: the same for readouts */
    uint32_t gen;              /* the input generation of the new layout */
    int carry;                 /* engine_state_carry(new, old, keep_state) (--keep-weights) */
    int keep_state;            /* --keep-state */
    int restore;               /* a restore: the tick count comes from the checkpoint */
    uint64_t tick;             /* out: the tick count after the swap */
    int64_t gap_ns;            /* out: start of the last old tick to the first new (0: none) */
};

/* A snapshot request: the tick thread copies the engine into snap. */
struct tick_snap_req {
    struct snap *snap;  /* owned by the loop; filled by the tick thread */
    size_t slice_bytes; /* snapshot_slice_bytes */
    int record;         /* start logging recording events at the snapshot */
};

/* Recording events (DESIGN §5.4), tick -> loop through rec_q: this header, then for
 * TICK_REC_INPUT the struct wire_input record as applied. */
enum tick_rec_kind {
    TICK_REC_INPUT,      /* payload: the wire_input record */
    TICK_REC_LR,         /* v */
    TICK_REC_LEARN,      /* a: enum engine_learn */
    TICK_REC_RESET,      /* a: 1 states | 2 traces */
    TICK_REC_SWAP,       /* a: 1 restore; the loop holds the request */
    TICK_REC_STALE_ZERO, /* a: input index */
    TICK_REC_DEFER       /* a: 1 deferred, 0 released */
};

struct tick_rec {
    uint64_t tick; /* the engine's tick count when applied (before tick `tick` runs) */
    uint32_t kind; /* enum tick_rec_kind */
    int32_t a;
    double v;
};

struct tick_cmd {
    uint32_t type; /* enum tick_cmd_type */
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
        struct tick_swap *swap;
        struct tick_snap_req *snap;
        struct {
            int32_t kind; /* enum tick_rec_kind: INPUT, LR, LEARN, RESET, STALE_ZERO, DEFER */
            int32_t a;    /* as struct tick_rec */
            double v;
        } replay;
    } arg;
};

/* The answer to a command. STEP: an output record follows (layout.output_bytes). */
struct tick_result {
    uint64_t serial;
    uint32_t type; /* enum tick_cmd_type */
    int32_t code;  /* Etrace__Error__Code, 0 ok */
    struct tick_status status;
    char msg[112]; /* the error, when code != 0 */
};

struct ticker_opts {
    int lockstep;      /* clock: lockstep */
    int64_t period_ns; /* timer period */
    int rt_priority;   /* SCHED_FIFO priority, 0 off */
    int rt_cpu;        /* CPU to pin to, -1 none */
    size_t in_q_bytes; /* input ring capacity */
    int threads;       /* engine.threads: tick threads, the tick thread included */
    /* Timer mode: the loop is woken for outputs once the oldest output not yet handed over
     * would otherwise wait this long (0, or a period at least as long: every tick). */
    int64_t publish_every_ns;
    uv_async_t *wake; /* sent after pushing to res_q, and to out_q as publish_every_ns says */
};

struct ticker {
    struct engine *eng;       /* owned by the tick thread while it runs */
    const struct layout *lay; /* the daemon's (the tick thread's after a swap) */
    struct ticker_opts opts;
    struct spsc cmd_q;                /* loop -> tick: struct tick_cmd [+ input] */
    struct spsc in_q;                 /* loop -> tick: struct wire_input */
    struct spsc out_q;                /* tick -> loop: struct wire_output */
    struct spsc res_q;                /* tick -> loop: struct tick_result [+ output] */
    struct latest status;             /* tick -> loop: struct tick_status */
    struct spsc rec_q;                /* tick -> loop: struct tick_rec [+ input] (recording) */
    _Atomic int rec_overflow;         /* tick -> loop: rec_q was full, the recording stopped */
    int efd;                          /* eventfd the tick thread blocks on */
    _Atomic int64_t norm_slice_bytes; /* loop -> tick: snapshot_slice_bytes, read per tick
                                       * for the stats norms (reloadable) */
    pthread_t thread;
    int started;
    pool_t *pool; /* the tick workers (owned; NULL with 1 thread) */
    /* Everything below is the tick thread's. */
    int paused, quit;
    uint64_t period_index;
    int64_t next_ns; /* the next deadline */
    uint64_t overruns, skipped, outputs_dropped, invalid_ticks;
    int64_t pub_oldest_ns; /* deadline of the oldest output the loop was not woken for, 0: none */
    uint64_t output_wakes;
    struct hist tick_time, lateness;
    double loss_sum, reward_sum, tick_reward;
    uint64_t loss_n, n_ticks;
    int had_target;
    uint64_t input_seq;
    int64_t input_sender_time_ns;
    struct tick_tables tt; /* sized by lay */
    uint64_t drain_id;
    struct engine_norm_sweep sweep; /* the stats norms, a slice per tick */
    uint32_t gen;                   /* input generation of lay */
    uint64_t swaps, inputs_dropped_swap;
    /* What the daemon-lifetime counts add to the engine's: at a swap each grows by the old
     * engine's count minus the new one's, so the sum carries on where it was. */
    uint64_t life_ticks_base, life_steps_base, life_refused_base, life_resets_base;
    uint64_t tick_time_count_total, lateness_count_total; /* since start */
    int64_t tick_time_sum_ns_total, lateness_sum_ns_total;
    int64_t last_swap_gap_ns;
    int64_t last_start_ns;     /* start of the latest tick */
    int64_t swap_old_start_ns; /* start of the last old tick, 0: no gap pending */
    struct tick_cmd swap_cmd;  /* a swap answered after the first new tick */
    int swap_reply_pending;
    struct tick_cmd snap_cmd; /* the snapshot in progress */
    int snap_state;           /* 0 none, 1 waiting for a boundary, 2 slicing */
    int recording;            /* log events to rec_q */
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
int ticker_send(struct ticker *t, const struct tick_cmd *cmd, const void *extra, size_t extra_len);

/* Loop thread: space for a command with extra_len bytes after it, to fill in place, then
 * ticker_send_commit. NULL when full. */
struct tick_cmd *ticker_send_reserve(struct ticker *t, size_t extra_len);
void ticker_send_commit(struct ticker *t, size_t extra_len);

/* Loop thread: the newest status. */
struct tick_status ticker_status(struct ticker *t);

/* CLOCK_MONOTONIC in nanoseconds. Any thread. */
int64_t ticker_now_ns(void);

#endif
