/* The control socket's requests (DESIGN §7): a table from Request command to handler
 * (redis command table). A handler decodes its arguments, answers at once, queues a command
 * for the tick thread or starts an operation (ops.h), and builds the Reply; the dispatcher
 * here sends what handlers build. The only module that answers clients: tick results
 * (control_on_result), stats snapshots (control_on_stats) and the outcomes of operations
 * (control_reply_ops) all come back here. Daemon layer; loop thread only. */
#ifndef ETRACE_CONTROL_H
#define ETRACE_CONTROL_H

#include <stddef.h>
#include <zmq.h>

#include "pending.h"
#include "root.h"

/* The control endpoint's messages: [envelope...][Request]. Sets d->stop_requested once a
 * `shutdown` is answered; the caller then stops the daemon. */
void control_on_message(struct daemon *d, zmq_msg_t *parts, int n_parts);

/* Answers pending request p with the tick thread's result r of len bytes (then frees p). */
void control_on_result(struct daemon *d, struct pending *p, const struct tick_result *r,
                       size_t len);

/* A new stats snapshot is in d->stats_last: answers the `stats` requests that waited for
 * it, and asks for another when some still wait. */
void control_on_stats(struct daemon *d);

/* Asks the tick thread for a stats snapshot into d->stats_pend, unless one is in flight or
 * a swap is (the buffers follow the layout). */
void control_request_stats(struct daemon *d);

/* Answers every operation that has ended (ops_take_result) and frees its slot. Called after
 * each call into ops and when a worker finished one (the loop's wake-up). */
void control_reply_ops(struct daemon *d);

/* The name of a command ("status"), or "unknown". */
const char *control_command_name(int command);

#endif
