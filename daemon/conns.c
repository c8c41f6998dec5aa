/* Connections per endpoint and the descriptor budget (see conns.h). */
#include "conns.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

size_t
conns_raise_nofile(void)
{
    struct rlimit rl;
    const rlim_t most = (rlim_t)1 << 20;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return 1024;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > most ? most : rl.rlim_max;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur < want) {
        struct rlimit nl = {.rlim_cur = want, .rlim_max = rl.rlim_max};
        if (!setrlimit(RLIMIT_NOFILE, &nl))
            rl.rlim_cur = want;
    }
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > most ? (size_t)most : (size_t)rl.rlim_cur;
}

size_t
conns_count_open_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    size_t n = 0;
    if (!dir)
        return 0;
    for (struct dirent *e; (e = readdir(dir));)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n ? n - 1 : 0; /* not the directory's own descriptor */
}

int
conns_init(struct conns *c, size_t n_fds)
{
    memset(c, 0, sizeof(*c));
    c->fd_state = calloc(n_fds ? n_fds : 1, 1);
    if (!c->fd_state)
        return -1;
    c->n_fds = n_fds;
    return 0;
}

void
conns_fini(struct conns *c)
{
    free(c->fd_state);
    memset(c, 0, sizeof(*c));
}

int
conns_on_accepted(struct conns *c, int fd)
{
    int over = c->limit && c->n_open >= c->limit;
    if (over)
        c->refused++;
    else
        c->n_open++;
    if (fd >= 0 && (size_t)fd < c->n_fds)
        c->fd_state[fd] = over ? CONNS_REFUSED : CONNS_OPEN;
    return over;
}

int
conns_on_disconnected(struct conns *c, int fd)
{
    if (fd < 0 || (size_t)fd >= c->n_fds || !c->fd_state[fd])
        return 0;
    int was = c->fd_state[fd];
    c->fd_state[fd] = 0;
    if (was == CONNS_OPEN && c->n_open)
        c->n_open--;
    return was;
}

int
conns_is_refused(const struct conns *c, int fd)
{
    return fd >= 0 && (size_t)fd < c->n_fds && c->fd_state[fd] == CONNS_REFUSED;
}
