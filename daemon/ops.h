/* Operations on the live model (DESIGN §5.4): hot swap (`load`), checkpoints (periodic,
 * on request, at shutdown; resume at start; `restore`), and recordings. Compiling,
 * encoding and file writing run on libuv workers; the tick thread only swaps pointers and
 * copies snapshots (ticker.c). Daemon layer; loop thread only, except ops_resume (start-up,
 * before the tick thread). */
#ifndef ETRACE_OPS_H
#define ETRACE_OPS_H

#include "daemon.h"
#include "etrace.pb-c.h"

struct ops; /* opaque: the state of the operations in progress */

/* Start-up, after the engine is compiled: with checkpoint.resume, replaces d->eng by the
 * newest whole checkpoint in the checkpoint directory (skipping, with a log line naming
 * each, the truncated and corrupt ones). Returns 0, or -1 (out of memory). */
int ops_resume(struct daemon *d);

/* Start-up, after the layout: allocates the state, creates the directories. 0 or -1. */
int ops_init(struct daemon *d);

/* Frees everything (after the tick thread stopped). Accepts d->ops NULL. */
void ops_fini(struct daemon *d);

/* Control requests. Each takes a parked pending slot p (its envelope moved in) and answers
 * it later through control_reply_op, or at once on error. */
void ops_load(struct daemon *d, struct daemon_pending *p, const Etrace__Load *l);
void ops_checkpoint(struct daemon *d, struct daemon_pending *p, const char *name);
void ops_restore(struct daemon *d, struct daemon_pending *p, const char *name);
void ops_record(struct daemon *d, struct daemon_pending *p, const Etrace__Record *r);
/* Lockstep replay: restores the checkpoint carried in a request (a recording's snapshot or
 * restore event) as `restore` does a file's; `label` names it in the reply and the log. */
void ops_restore_checkpoint(struct daemon *d, struct daemon_pending *p,
                            const Etrace__Checkpoint *ck, const char *label);

/* A tick result of an operation command (SWAP, SNAPSHOT, RECORD_STOP) for slot p. */
void ops_on_result(struct daemon *d, struct daemon_pending *p, const struct tick_result *r);

/* Housekeeping: periodic checkpoints, recording flushes. */
void ops_housekeeping(struct daemon *d, int64_t now_ns);

/* Output records: returns 1 if rec is a swap marker (consumed), else 0; *lay gets the
 * layout to decode output records with. */
int ops_output_marker(struct daemon *d, const void *rec, size_t len, const struct layout **lay);

/* 1 while a swap is in flight (layout-dependent requests are refused as BUSY). */
int ops_swap_in_flight(const struct daemon *d);

/* The input generation to stamp on input records. */
uint32_t ops_input_gen(const struct daemon *d);

/* Stopping: when periodic checkpoints are on, takes a last checkpoint synchronously
 * (pausing the tick thread first). */
void ops_stop_checkpoint(struct daemon *d);

#endif
