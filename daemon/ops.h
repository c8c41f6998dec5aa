/* Operations on the live model (DESIGN §5.4): hot swap (`load`), checkpoints (periodic,
 * on request, at shutdown; resume at start; `restore`), and recordings. Compiling,
 * encoding and file writing run on libuv workers; the tick thread only swaps pointers and
 * copies snapshots (ticker.c). Ops never answers a client: each operation's outcome (an
 * error, or an OpResult) is queued for its caller, who takes it with ops_take_result and
 * answers it (control.c). Daemon layer; loop thread only, except ops_resume (start-up,
 * before the tick thread). */
#ifndef ETRACE_OPS_H
#define ETRACE_OPS_H

#include "etrace.pb-c.h"
#include "pending.h"
#include "root.h"

struct ops; /* opaque: the state of the operations in progress */

/* The outcome of one operation for the request in slot p: an Error (code != 0, msg) or,
 * on success, an OpResult (has_op) or an empty Reply. */
struct ops_result {
    struct ops_result *next; /* ops' queue of outcomes not yet taken */
    struct pending *p;       /* the request: its taker answers it and frees the slot */
    int code;                /* 0, or an Etrace__Error__Code */
    char msg[1024];          /* code != 0: what went wrong */
    int has_op;              /* code == 0: op is the result */
    Etrace__OpResult op;     /* its strings point into name and past the struct (owned) */
    char name[256];
};

/* Start-up, after the engine is compiled: with checkpoint.resume, replaces d->eng by the
 * newest whole checkpoint in the checkpoint directory (skipping, with a log line naming
 * each, the truncated and corrupt ones). Returns 0, or -1 (out of memory). */
int ops_resume(struct daemon *d);

/* Start-up, after the layout: allocates the state, creates the directories. 0 or -1. */
int ops_init(struct daemon *d);

/* Frees everything (after the tick thread stopped). Accepts d->ops NULL. */
void ops_fini(struct daemon *d);

/* Control requests. Each takes a parked pending slot p (its envelope moved in), which ops
 * holds until the operation ends: then its outcome, for p, is queued (at once when it is
 * refused). */
void ops_load(struct daemon *d, struct pending *p, const Etrace__Load *l);
void ops_checkpoint(struct daemon *d, struct pending *p, const char *name);
void ops_restore(struct daemon *d, struct pending *p, const char *name);
void ops_record(struct daemon *d, struct pending *p, const Etrace__Record *r);
/* Lockstep replay: restores the checkpoint carried in a request (a recording's snapshot or
 * restore event) as `restore` does a file's; `label` names it in the reply and the log. */
void ops_restore_checkpoint(struct daemon *d, struct pending *p, const Etrace__Checkpoint *ck,
                            const char *label);

/* A tick result of an operation command (SWAP, SNAPSHOT, RECORD_STOP) for slot p. For a
 * swap, the caller has published the old model's outputs first. May queue an outcome. */
void ops_on_result(struct daemon *d, struct pending *p, const struct tick_result *r);

/* Housekeeping: periodic checkpoints, recording flushes. May queue an outcome. */
void ops_housekeeping(struct daemon *d, int64_t now_ns);

/* The oldest outcome not yet taken (the caller owns it: ops_result_free), or NULL. When a
 * worker ends an operation, ops wakes the loop (d->wake) for its outcome to be taken. */
struct ops_result *ops_take_result(struct daemon *d);

/* Frees an outcome (not its slot). Accepts *r NULL; sets it NULL. */
void ops_result_free(struct ops_result **r);

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
