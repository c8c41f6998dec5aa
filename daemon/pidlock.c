/* One daemon per endpoint (see pidlock.h). */
#include "pidlock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

void
pidlock_init(struct pidlock *pl)
{
    for (size_t i = 0; i < sizeof(pl->fds) / sizeof(pl->fds[0]); i++) {
        pl->fds[i] = -1;
        pl->paths[i] = NULL;
    }
    pl->n_fds = 0;
}

/* The pid written in a lock file, 0 when there is none. */
static long
read_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

int
pidlock_take(struct pidlock *pl, const char *url, char *err, size_t err_len)
{
    char path[PATH_MAX];
    if (strncmp(url, "ipc://", 6) != 0)
        return 0;
    if ((size_t)pl->n_fds >= sizeof(pl->fds) / sizeof(pl->fds[0])) {
        snprintf(err, err_len, "%s: too many ipc endpoints to lock", url);
        return -1;
    }
    if (snprintf(path, sizeof(path), "%s.lock", url + 6) >= (int)sizeof(path)) {
        snprintf(err, err_len, "%s: the path is too long", url);
        return -1;
    }
    int fd = -1;
    /* A few tries: each retry means a stopping daemon removed the file we had opened. */
    for (int attempt = 0; fd < 0 && attempt < 8; attempt++) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            struct stat st;
            if (errno == EACCES && !lstat(path, &st) && st.st_uid != geteuid())
                snprintf(err, err_len,
                         "%s: cannot open %s: owned by uid %u, not ours: a lock left by "
                         "etraced run as another user (remove it if that daemon is gone)",
                         url, path, (unsigned)st.st_uid);
            else
                snprintf(err, err_len, "%s: cannot open %s: %s", url, path, strerror(errno));
            return -1;
        }
        if (flock(fd, LOCK_EX | LOCK_NB)) {
            int e = errno;
            /* The holder writes its pid right after locking: a reader that comes in
             * between sees an empty file, so wait a moment for it. */
            long pid = read_pid(fd);
            for (int i = 0; !pid && e == EWOULDBLOCK && i < 100; i++) {
                usleep(1000);
                pid = read_pid(fd);
            }
            close(fd);
            if (e == EWOULDBLOCK && pid)
                snprintf(err, err_len, "%s is in use by etraced pid %ld (lock %s)", url, pid, path);
            else if (e == EWOULDBLOCK)
                snprintf(err, err_len, "%s is in use by another etraced (lock %s)", url, path);
            else
                snprintf(err, err_len, "%s: cannot lock %s: %s", url, path, strerror(e));
            return -1;
        }
        struct stat held, named;
        if (fstat(fd, &held) || lstat(path, &named) || held.st_dev != named.st_dev ||
            held.st_ino != named.st_ino) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s keeps being replaced", url, path);
        return -1;
    }
    char *owned = strdup(path);
    if (!owned) {
        snprintf(err, err_len, "%s: out of memory", url);
        close(fd);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) || pwrite(fd, pid, (size_t)n, 0) != n) {
        snprintf(err, err_len, "%s: cannot write %s: %s", url, path, strerror(errno));
        unlink(path);
        close(fd);
        free(owned);
        return -1;
    }
    pl->paths[pl->n_fds] = owned;
    pl->fds[pl->n_fds++] = fd;
    return 0;
}

void
pidlock_release(struct pidlock *pl)
{
    for (int i = 0; i < pl->n_fds; i++) {
        unlink(pl->paths[i]); /* while still holding the lock: see pidlock_take */
        close(pl->fds[i]);
        free(pl->paths[i]);
    }
    pidlock_init(pl);
}
