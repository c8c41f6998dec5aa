/* One daemon per endpoint: an flock(2)ed file next to each ipc socket, holding the pid of
 * the daemon that binds it. Daemon layer; start-up and stop (main thread) only. */
#ifndef ETRACE_PIDLOCK_H
#define ETRACE_PIDLOCK_H

#include <stddef.h>

/* The locks of one daemon, at most one per endpoint. */
struct pidlock {
    int fds[8];     /* open lock files (-1: unused) */
    char *paths[8]; /* their paths (owned), removed at release */
    int n_fds;      /* fds[0..n_fds-1] in use */
};

/* Sets every slot unused. */
void pidlock_init(struct pidlock *pl);

/* For an "ipc://PATH" url, opens PATH.lock (creating it, mode 0600), takes an exclusive
 * non-blocking flock and writes our pid. The lock counts only if PATH.lock still names the
 * file locked (a daemon that stops removes its file while holding the lock: whoever opened
 * the old file first tries again with a new one). Other transports need no lock (a second
 * bind of a tcp port fails by itself): returns 0. When another process holds the lock,
 * writes "URL is in use by etraced pid N" to err and returns -1 (also on any other error,
 * with its reason; a lock file we may not open names its owner). */
int pidlock_take(struct pidlock *pl, const char *url, char *err, size_t err_len);

/* Removes the lock files, then closes them (which releases the locks), so that a daemon
 * run later as another user (by hand as root, then as the service) finds none of ours. */
void pidlock_release(struct pidlock *pl);

#endif
