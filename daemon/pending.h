/* Requests waiting for an answer: a control request (or an internal command) parked in a
 * slot while the tick thread or an operation works on it, found again by its serial.
 * Daemon layer; loop thread only. */
#ifndef ETRACE_PENDING_H
#define ETRACE_PENDING_H

#include <stdint.h>
#include <zmq.h>

#include "endpoint.h"

enum { PENDING_MAX = 64, PENDING_MAX_ENVELOPE = ENDPOINT_MAX_PARTS - 1 };

/* A request (or internal command) waiting for its result. */
struct pending {
    int in_use;
    uint64_t serial;                     /* matches tick_result.serial (0: not in a table) */
    uint64_t req_id;                     /* the Request's id */
    int command;                         /* Etrace__Request__CommandCase, 0: internal */
    int n_env;                           /* envelope parts, 0: no reply to send */
    zmq_msg_t env[PENDING_MAX_ENVELOPE]; /* the ROUTER envelope, owned */
    void *buf;                           /* export buffer or input cfg, owned */
};

/* The slots of requests in flight to the tick thread or an operation. The table owns every
 * slot; whoever holds a slot's pointer answers it and gives it back with pending_free. */
struct pending_table {
    struct pending slot[PENDING_MAX];
    uint64_t next_serial; /* the generation of the last slot handed out */
};

/* A free slot with a fresh serial, or NULL when all are in use. */
struct pending *pending_new(struct pending_table *t);

/* The slot in use with this serial, or NULL (answered already, or never ours). */
struct pending *pending_find(struct pending_table *t, uint64_t serial);

/* Fills p for request req_id of `command` and moves the envelope env[0..n_env-1] into it
 * (the caller's messages are left empty). */
void pending_park(struct pending *p, uint64_t req_id, int command, zmq_msg_t *env, int n_env);

/* Moves src (with its envelope and buffer) into dst; src is left empty. */
void pending_move(struct pending *dst, struct pending *src);

/* Releases a slot: closes its envelope, frees its buffer. Accepts an empty slot. */
void pending_free(struct pending *p);

/* Releases every slot in use (shutdown). */
void pending_free_all(struct pending_table *t);

#endif
