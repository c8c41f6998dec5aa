/* A ZeroMQ socket watched by libuv (STYLE §8): ZMQ_FD in a uv_poll_t. The fd is
 * edge-triggered, so after every wake-up and every send we read ZMQ_EVENTS and drain
 * while ZMQ_POLLIN is set — at most `budget` messages per loop iteration, then a uv_idle
 * handle re-arms the drain on the next iteration so other sockets and timers get their
 * turn. A socket monitor counts connections: those the transport dropped, those open, and
 * those closed at once for being over the endpoint's limit (conns.h). Daemon layer; every
 * function runs on the loop thread. */
#ifndef ETRACE_ENDPOINT_H
#define ETRACE_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <zmq.h>

#include "conns.h"
#include "wire.h"

enum { ENDPOINT_MAX_PARTS = 8 };

struct endpoint;

/* Called with each whole message received: parts[0..n_parts-1] (the caller of the
 * callback closes them afterwards). n_parts is 0 when a message had more than
 * ENDPOINT_MAX_PARTS parts (it was dropped; count it undecodable). */
typedef void (*endpoint_recv_fn)(struct endpoint *ep, zmq_msg_t *parts, int n_parts);

/* Counters of one socket, since start (shown in Stats). */
struct endpoint_counters {
    uint64_t accepted;                /* messages accepted (or sent, for PUB) */
    uint64_t rejected[WIRE_N_REJECT]; /* per reason */
    uint64_t peer_dropped;            /* connections that ended (monitor) */
    uint64_t dropped;                 /* messages the daemon could not take or send */
    uint64_t curve_refused;           /* CURVE endpoint: handshakes that failed short of
                                       * ZAP (no CURVE, a wrong server key; monitor) */
    int64_t handler_max_ns;           /* the most loop-thread CPU time one message took */
};

struct endpoint {
    const char *name;         /* "input", "output", "control", "stats" */
    char *url;                /* as bound, owned */
    void *sock;               /* the ZeroMQ socket, owned */
    void *mon;                /* PAIR socket reading the monitor, owned (NULL: none) */
    uv_poll_t poll;           /* on ZMQ_FD of sock */
    uv_poll_t mon_poll;       /* on ZMQ_FD of mon */
    uv_idle_t idle;           /* re-arms a drain cut short by the budget */
    int budget;               /* messages per drain */
    int n_open_handles;       /* handles not yet closed */
    int is_curve;             /* a CURVE server (tcp:// with curve_secret) */
    int handshake_failed;     /* the monitor's last event was a failed handshake: the
                               * DISCONNECTED that follows is that connection's */
    endpoint_recv_fn on_recv; /* NULL for send-only sockets */
    void *data;               /* the owner's */
    struct endpoint_counters c;
    struct conns conns; /* connections open and refused (monitor) */
    char bound[300];    /* ZMQ_LAST_ENDPOINT: tells our accepted descriptors apart */
    void (*on_closed)(struct endpoint *ep); /* after endpoint_close finished, or NULL */
};

/* Creates a socket of zmq type `type` in zctx, binds url (an ipc:// path's file mode is
 * the directory's), sets ZMQ_MAXMSGSIZE (max_msg_bytes > 0), linger 0 and the HWMs, and
 * watches it. curve_secret (32 bytes, or NULL): a tcp:// socket becomes a CURVE server
 * with that secret key (the ZAP handler of curve.h decides who may connect).
 * Returns 0, or -1 with a message in err. */
int endpoint_open(struct endpoint *ep, uv_loop_t *loop, void *zctx, int type, const char *name,
                  const char *url, int64_t max_msg_bytes, int hwm, endpoint_recv_fn on_recv,
                  void *data, const uint8_t *curve_secret, char *err, size_t err_len);

/* Sends a multi-part message (n parts of data[i], len[i]) without blocking, then re-checks
 * ZMQ_EVENTS. Returns 0, or -1 (EAGAIN: full; counted in c.dropped). */
int endpoint_send(struct endpoint *ep, int n, const void *const *data, const size_t *len);

/* Sends parts, where envelope parts are zmq_msg_t (moved) and the last is bytes. */
int endpoint_send_reply(struct endpoint *ep, zmq_msg_t *envelope, int n_env, const void *data,
                        size_t len);

/* As endpoint_send_reply, but the last part's bytes are handed to libzmq without a copy:
 * data (from malloc) is owned by the callee from the call on, freed once sent or dropped. */
int endpoint_send_reply_owned(struct endpoint *ep, zmq_msg_t *envelope, int n_env, void *data,
                              size_t len);

/* Counts the connections of ep in a table of n_fds descriptors (the soft RLIMIT_NOFILE)
 * and keeps at most `limit` of them open (0: no limit); call after endpoint_open. Returns 0,
 * or -1 when out of memory. */
int endpoint_track_conns(struct endpoint *ep, size_t n_fds, uint64_t limit);

/* The calling thread's CPU time in nanoseconds (CLOCK_THREAD_CPUTIME_ID). */
int64_t endpoint_thread_cpu_ns(void);

/* Notes that handling one message held the loop thread for ns of its CPU time (kept: the
 * maximum). */
void endpoint_note_hold(struct endpoint *ep, int64_t ns);

/* Reads the monitor's pending events (counting peer_dropped, connections open, and closing
 * those over the limit once every pending event is read). The monitor's fd does not
 * always signal an event that arrives while the socket is idle, so the daemon's
 * housekeeping timer also calls this. */
void endpoint_check_monitor(struct endpoint *ep);

/* Stops watching, closes the handles, then the sockets (in the close callbacks), and
 * unlinks the ipc file. on_closed runs when done. */
void endpoint_close(struct endpoint *ep);

#endif
