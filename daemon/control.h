/* The control socket's requests (DESIGN §7): a table from Request command to handler
 * (redis command table). A handler decodes its arguments, answers at once or queues a
 * command for the tick thread, and builds the Reply; it never touches a socket — the
 * dispatcher here sends what handlers build. Daemon layer; loop thread only. */
#ifndef ETRACE_CONTROL_H
#define ETRACE_CONTROL_H

#include "daemon.h"

/* The control endpoint's receive callback: [envelope...][Request]. */
void control_on_message(struct endpoint *ep, zmq_msg_t *parts, int n_parts);

/* Answers pending request p with the tick thread's result r (then frees p). */
void control_on_result(struct daemon *d, struct daemon_pending *p, const struct tick_result *r,
                       size_t len);

/* Answers a `stats` request that waited for the first snapshot (then frees p). */
void control_reply_stats(struct daemon *d, struct daemon_pending *p);

/* Answers p with an Error (code != 0, msg) or an OpResult (op, may be NULL), then frees
 * p. A slot without an envelope (an internal command) is only freed. */
void control_reply_op(struct daemon *d, struct daemon_pending *p, int code, const char *msg,
                      const Etrace__OpResult *op);

/* The name of a command ("status"), or "unknown". */
const char *control_command_name(int command);

#endif
