/* What the daemon trusts on the file system and the network (DESIGN §5.7): files it reads
 * are opened without blocking and must be regular; the socket, state and checkpoint
 * directories must be owned by the daemon's user or root and not group/world-writable; a
 * checkpoint must be one the daemon's user wrote; tcp endpoints need CURVE unless
 * `security.allow_plaintext_tcp`; ipc sockets are 0600, or 0660 for `security.socket_group`.
 * Daemon layer; plain POSIX. The file functions run on any thread; security_start and
 * security_sockets_bound at start-up. */
#ifndef ETRACE_SECURITY_H
#define ETRACE_SECURITY_H

#include <stddef.h>
#include <sys/stat.h>

struct daemon;

/* Opens path for reading with O_RDONLY | O_NONBLOCK | O_CLOEXEC, and O_NOFOLLOW when
 * nofollow (daemon-side names; files the operator names may be symlinks), so that opening
 * a FIFO does not wait for a writer; then refuses anything but a regular file. *st (may be
 * NULL) gets its fstat. Returns the fd, or -1 with "PATH: reason" in err. */
int security_open_read(const char *path, int nofollow, struct stat *st, char *err, size_t err_len);

/* The directory rule: dir is a directory owned by the daemon's user or root, not group- or
 * world-writable. `what` names it in err ("checkpoint.dir", say). Returns 0, or -1. */
int security_dir_ok(const char *dir, const char *what, char *err, size_t err_len);

/* A file the daemon wrote (a checkpoint): owned by its user, not group- or world-writable.
 * Returns 0, or -1 with "NAME: reason" in err. */
int security_file_ours(const struct stat *st, const char *name, char *err, size_t err_len);

/* Start-up, once the directories are resolved and before anything reads them: umask 077
 * (sockets and files come out private whatever the inherited umask); tcp (any non-ipc)
 * endpoints without CURVE refused unless security.allow_plaintext_tcp (then a warning); the
 * state and checkpoint directories created (0700) and checked; the directories of
 * configured ipc endpoints checked; security.socket_group resolved. Returns 0, or -1 with
 * err. */
int security_start(struct daemon *d, char *err, size_t err_len);

/* After the endpoints are bound, before READY: each ipc socket file 0600, or 0660 and
 * security.socket_group (the default socket directory RUN then 0750 and that group).
 * Returns 0, or -1 with err. */
int security_sockets_bound(struct daemon *d, char *err, size_t err_len);

#endif
