/* Connections per endpoint, counted through libzmq's socket monitor, and the descriptor
 * budget they live in (DESIGN §5.6 limits). libzmq has no per-socket connection limit and
 * aborts when accept() fails with EMFILE, so the daemon raises its soft RLIMIT_NOFILE to
 * the hard limit at start, and closes every connection an endpoint accepts beyond its
 * limit: the monitor reports each accepted descriptor, and shutdown(2) on it makes libzmq
 * close it (an accepted peer cannot be zmq_disconnect'ed). Daemon layer; loop thread. */
#ifndef ETRACE_CONNS_H
#define ETRACE_CONNS_H

#include <stddef.h>
#include <stdint.h>

/* Descriptors kept free for checkpoints, recordings, model files and the workers. */
enum { CONNS_RESERVE_FDS = 64 };

/* The connections of one endpoint. */
struct conns {
    uint8_t *fd_state; /* [n_fds]: 0 none, CONNS_OPEN, CONNS_REFUSED (owned) */
    size_t n_fds;      /* descriptors tracked: the soft RLIMIT_NOFILE */
    uint64_t n_open;   /* connections counted now */
    uint64_t limit;    /* most connections kept open (0: no limit) */
    uint64_t refused;  /* connections closed for the limit, since start */
};

enum { CONNS_OPEN = 1, CONNS_REFUSED = 2 };

/* Raises the soft RLIMIT_NOFILE to the hard one (at most 2^20). Returns the soft limit in
 * force afterwards. */
size_t conns_raise_nofile(void);

/* The descriptors open in this process now (/proc/self/fd), or 0 when unknown. */
size_t conns_count_open_fds(void);

/* Allocates the table for descriptors below n_fds. Returns 0 or -1 (no memory). */
int conns_init(struct conns *c, size_t n_fds);

/* Frees the table; accepts a zeroed struct. */
void conns_fini(struct conns *c);

/* A connection on descriptor fd was accepted. Returns 1 when it is over the limit (the
 * caller closes it once the monitor's pending events are read), else 0. */
int conns_on_accepted(struct conns *c, int fd);

/* The connection on fd ended. Returns CONNS_OPEN when it was a counted one, CONNS_REFUSED
 * when it was one closed for the limit, 0 when it was not known. */
int conns_on_disconnected(struct conns *c, int fd);

/* Whether fd is still a refused connection awaiting its close. */
int conns_is_refused(const struct conns *c, int fd);

#endif
