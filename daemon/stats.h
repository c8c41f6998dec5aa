/* Stats (DESIGN §5.5): turns a tick thread snapshot and the sockets' counters into a
 * Stats message. Daemon layer; loop thread only. The tick thread's side (histograms,
 * counters, the round-robin norms) is in ticker.c. */
#ifndef ETRACE_STATS_H
#define ETRACE_STATS_H

#include "root.h"
#include "etrace.pb-c.h"

/* A Stats message and the storage its fields point into. */
struct stats_msg {
    Etrace__Stats msg;
    Etrace__Percentiles tick_time, lateness;
    Etrace__SocketStats sockets[CONFIG_N_EP];
    Etrace__SocketStats *sockets_p[CONFIG_N_EP];
    Etrace__InputStats *inputs, **inputs_p;       /* [n_inputs] */
    Etrace__ReadoutStats *readouts, **readouts_p; /* [n_readouts] */
    Etrace__ProjectionStats *projs, **projs_p;    /* [n_projs] */
    Etrace__CellStats *cells, **cells_p;          /* [spiking cells] */
};

/* Allocates a snapshot's arrays for layout l. Returns 0 or -1. */
int stats_snapshot_init(struct tick_stats *s, const struct layout *l);

/* Frees them; accepts a zeroed struct. */
void stats_snapshot_fini(struct tick_stats *s);

/* Builds m from snapshot s (taken interval_ns after the previous one) and d's socket
 * counters. The message points into s, d's layout and m. Returns 0 or -1 (no memory). */
int stats_build(struct stats_msg *m, const struct daemon *d, const struct tick_stats *s,
                int64_t interval_ns, uint64_t seq);

/* Frees what stats_build allocated; accepts a zeroed struct. */
void stats_msg_fini(struct stats_msg *m);

#endif
