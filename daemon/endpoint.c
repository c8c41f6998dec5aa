/* A ZeroMQ socket watched by libuv (see endpoint.h). */
#include "endpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

static void drain(struct endpoint *ep);

static void
on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    drain(h->data);
}

static void
on_idle(uv_idle_t *h)
{
    drain(h->data);
}

static int
has_pollin(void *sock)
{
    int ev = 0;
    size_t sz = sizeof(ev);
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &sz))
        return 0;
    return (ev & ZMQ_POLLIN) != 0;
}

/* Receives one whole message; returns the number of parts kept, 0 when it had too many,
 * -1 when nothing was there. */
static int
recv_message(void *sock, zmq_msg_t *parts)
{
    int n = 0, more = 1, too_many = 0;
    while (more) {
        zmq_msg_t *m = n < ENDPOINT_MAX_PARTS ? &parts[n] : &parts[ENDPOINT_MAX_PARTS];
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(m);
            for (int k = 0; k < n && k < ENDPOINT_MAX_PARTS; k++)
                zmq_msg_close(&parts[k]);
            return n ? 0 : -1;
        }
        more = zmq_msg_more(m);
        if (n < ENDPOINT_MAX_PARTS)
            n++;
        else {
            too_many = 1;
            zmq_msg_close(m);
        }
    }
    if (too_many) {
        for (int k = 0; k < n; k++)
            zmq_msg_close(&parts[k]);
        return 0;
    }
    return n;
}

/* CPU time rather than wall time: a preemption by another process is not the handler's. */
int64_t
endpoint_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void
endpoint_note_hold(struct endpoint *ep, int64_t ns)
{
    if (ns > ep->c.handler_max_ns)
        ep->c.handler_max_ns = ns;
}

static void
drain(struct endpoint *ep)
{
    zmq_msg_t parts[ENDPOINT_MAX_PARTS + 1];
    for (int n = 0;; n++) {
        if (!ep->sock || !has_pollin(ep->sock)) {
            uv_idle_stop(&ep->idle);
            return;
        }
        if (n >= ep->budget) {
            uv_idle_start(&ep->idle, on_idle); /* the rest on the next iteration */
            return;
        }
        int got = recv_message(ep->sock, parts);
        if (got < 0)
            continue;
        if (ep->on_recv) {
            int64_t t0 = endpoint_thread_cpu_ns();
            ep->on_recv(ep, parts, got);
            endpoint_note_hold(ep, endpoint_thread_cpu_ns() - t0);
        }
        for (int k = 0; k < got; k++)
            zmq_msg_close(&parts[k]);
    }
}

/* Whether descriptor fd is a connection accepted by ep's listener: its local address is
 * the one ep bound (a descriptor number the monitor reported may have been closed and
 * reused by another socket since). */
static int
is_ours(const struct endpoint *ep, int fd)
{
    struct sockaddr_storage ss;
    socklen_t n = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &n))
        return 0;
    if (ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *u = (const struct sockaddr_un *)(const void *)&ss;
        const char *want = ep->bound + 6;
        size_t path_len = n > offsetof(struct sockaddr_un, sun_path)
                              ? n - offsetof(struct sockaddr_un, sun_path)
                              : 0;
        if (strncmp(ep->bound, "ipc://", 6) || !path_len)
            return 0;
        if (u->sun_path[0] == '\0') /* abstract: ipc://@name */
            return want[0] == '@' && strlen(want + 1) == path_len - 1 &&
                   !memcmp(u->sun_path + 1, want + 1, path_len - 1);
        return !strncmp(u->sun_path, want, path_len) && strlen(want) <= path_len;
    }
    const char *colon = strrchr(ep->bound, ':');
    if (!colon || strncmp(ep->bound, "tcp://", 6))
        return 0;
    int port = atoi(colon + 1);
    if (ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)&ss)->sin_port) == port;
    if (ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)&ss)->sin6_port) == port;
    return 0;
}

enum { MAX_REFUSE_BATCH = 256 };

/* The monitor reports every connection accepted and every one that ended: a peer that left
 * or one the transport dropped (a message over max_msg_bytes, a protocol error). The
 * connections over the limit are closed after the whole batch of pending events is read,
 * so that a descriptor that ended (and was reused) meanwhile is not touched. */
void
endpoint_check_monitor(struct endpoint *ep)
{
    int refuse[MAX_REFUSE_BATCH], n_refuse = 0;
    while (ep->mon && has_pollin(ep->mon)) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, ep->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            break;
        }
        if (zmq_msg_size(&ev) >= 6) {
            uint16_t id;
            uint32_t value;
            memcpy(&id, zmq_msg_data(&ev), sizeof(id));
            memcpy(&value, (const char *)zmq_msg_data(&ev) + 2, sizeof(value));
            int was = 0;
            if (id == ZMQ_EVENT_ACCEPTED) {
                if (conns_on_accepted(&ep->conns, (int)value) && n_refuse < MAX_REFUSE_BATCH)
                    refuse[n_refuse++] = (int)value;
            } else if (id == ZMQ_EVENT_DISCONNECTED) {
                was = conns_on_disconnected(&ep->conns, (int)value);
            }
            /* A CURVE endpoint refuses a client without CURVE (or with another server key)
             * at the handshake, before ZAP, which counts the keys it refuses (curve.c).
             * libzmq 4.3 reports that refusal as HANDSHAKE_FAILED_PROTOCOL (a mechanism
             * mismatch, when the client's greeting arrived whole) or, when the client read
             * ours first and hung up before sending its mechanism, as
             * HANDSHAKE_FAILED_NO_DETAIL; either is followed at once by the DISCONNECTED of
             * that connection, where it is counted once, unless we closed it for the limit
             * (counted there). Any peer that hangs up during its handshake looks the same,
             * and counts too: it did not get in. A connection we closed for the limit is not
             * a dropped one. */
            if (ep->is_curve && (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                                 id == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)) {
                ep->handshake_failed = 1;
            } else if (id == ZMQ_EVENT_DISCONNECTED || id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
                if (ep->handshake_failed && was != CONNS_REFUSED)
                    ep->c.curve_refused++;
                ep->handshake_failed = 0;
                if (ep->on_recv && was != CONNS_REFUSED)
                    ep->c.peer_dropped++;
            }
        }
        int more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        while (more) {
            zmq_msg_init(&addr);
            if (zmq_msg_recv(&addr, ep->mon, ZMQ_DONTWAIT) < 0)
                more = 0;
            else
                more = zmq_msg_more(&addr);
            zmq_msg_close(&addr);
        }
        if (n_refuse == MAX_REFUSE_BATCH)
            break; /* close these first; the rest on the next call */
    }
    /* shutdown(2), not close(2): the descriptor stays libzmq's, whose engine sees the end
     * of the stream, closes it and reports DISCONNECTED. */
    for (int i = 0; i < n_refuse; i++)
        if (conns_is_refused(&ep->conns, refuse[i]) && is_ours(ep, refuse[i]))
            shutdown(refuse[i], SHUT_RDWR);
}

int
endpoint_track_conns(struct endpoint *ep, size_t n_fds, uint64_t limit)
{
    if (!ep->conns.fd_state && conns_init(&ep->conns, n_fds))
        return -1;
    ep->conns.limit = limit;
    return 0;
}

static void
on_mon(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    endpoint_check_monitor(h->data);
}

int
endpoint_open(struct endpoint *ep, uv_loop_t *loop, void *zctx, int type, const char *name,
              const char *url, int64_t max_msg_bytes, int hwm, endpoint_recv_fn on_recv, void *data,
              const uint8_t *curve_secret, char *err, size_t err_len)
{
    int zero = 0, fd;
    size_t fd_len = sizeof(fd);
    char mon_url[128];

    memset(ep, 0, sizeof(*ep));
    ep->name = name;
    ep->on_recv = on_recv;
    ep->data = data;
    ep->budget = 64;
    if (!(ep->url = strdup(url)))
        goto nomem;
    ep->sock = zmq_socket(zctx, type);
    if (!ep->sock)
        goto zerr;
    zmq_setsockopt(ep->sock, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(ep->sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(ep->sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    if (max_msg_bytes > 0)
        zmq_setsockopt(ep->sock, ZMQ_MAXMSGSIZE, &max_msg_bytes, sizeof(max_msg_bytes));
    ep->is_curve = curve_secret && !strncmp(url, "tcp://", 6);
    snprintf(mon_url, sizeof(mon_url), "inproc://etraced-monitor-%s", name);
    if (zmq_socket_monitor(ep->sock, mon_url,
                           ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL))
        goto zerr;
    /* No high-water mark on the monitor's pipe: a lost ACCEPTED or DISCONNECTED would put
     * the connection counts off for good. */
    ep->mon = zmq_socket(zctx, ZMQ_PAIR);
    if (!ep->mon || zmq_setsockopt(ep->mon, ZMQ_RCVHWM, &zero, sizeof(zero)) ||
        zmq_connect(ep->mon, mon_url))
        goto zerr;
    if (ep->is_curve) {
        int one = 1;
        if (zmq_setsockopt(ep->sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) ||
            zmq_setsockopt(ep->sock, ZMQ_CURVE_SECRETKEY, curve_secret, 32) ||
            zmq_setsockopt(ep->sock, ZMQ_ZAP_DOMAIN, name, strlen(name)))
            goto zerr;
    }
    if (zmq_bind(ep->sock, url)) {
        snprintf(err, err_len, "endpoints.%s: cannot bind %s: %s", name, url,
                 zmq_strerror(zmq_errno()));
        goto fail;
    }
    size_t bound_len = sizeof(ep->bound);
    if (zmq_getsockopt(ep->sock, ZMQ_LAST_ENDPOINT, ep->bound, &bound_len))
        ep->bound[0] = '\0';
    if (zmq_getsockopt(ep->sock, ZMQ_FD, &fd, &fd_len))
        goto zerr;
    uv_poll_init(loop, &ep->poll, fd);
    ep->poll.data = ep;
    uv_poll_start(&ep->poll, UV_READABLE, on_poll);
    uv_idle_init(loop, &ep->idle);
    ep->idle.data = ep;
    ep->n_open_handles = 2;
    if (ep->mon) {
        if (zmq_getsockopt(ep->mon, ZMQ_FD, &fd, &fd_len))
            goto zerr;
        uv_poll_init(loop, &ep->mon_poll, fd);
        ep->mon_poll.data = ep;
        uv_poll_start(&ep->mon_poll, UV_READABLE, on_mon);
        ep->n_open_handles++;
    }
    /* Messages may already be queued: the edge happened before we watched. */
    uv_idle_start(&ep->idle, on_idle);
    return 0;
nomem:
    snprintf(err, err_len, "endpoints.%s: out of memory", name);
    goto fail;
zerr:
    snprintf(err, err_len, "endpoints.%s: %s", name, zmq_strerror(zmq_errno()));
fail:
    if (ep->mon)
        zmq_close(ep->mon);
    if (ep->sock)
        zmq_close(ep->sock);
    free(ep->url);
    memset(ep, 0, sizeof(*ep));
    return -1;
}

/* After a send the fd's edge may have been consumed: look again. */
static void
recheck(struct endpoint *ep)
{
    if (ep->on_recv && has_pollin(ep->sock))
        uv_idle_start(&ep->idle, on_idle);
}

int
endpoint_send(struct endpoint *ep, int n, const void *const *data, const size_t *len)
{
    for (int i = 0; i < n; i++) {
        if (zmq_send(ep->sock, data[i], len[i], ZMQ_DONTWAIT | (i + 1 < n ? ZMQ_SNDMORE : 0)) < 0) {
            ep->c.dropped++;
            recheck(ep);
            return -1;
        }
    }
    ep->c.accepted += ep->on_recv ? 0 : 1;
    recheck(ep);
    return 0;
}

int
endpoint_send_reply(struct endpoint *ep, zmq_msg_t *envelope, int n_env, const void *data,
                    size_t len)
{
    for (int i = 0; i < n_env; i++) {
        if (zmq_msg_send(&envelope[i], ep->sock, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0) {
            /* A ROUTER drops a reply to a peer that left, without error; anything else
             * is counted. */
            ep->c.dropped++;
            for (int k = i; k < n_env; k++)
                zmq_msg_close(&envelope[k]);
            recheck(ep);
            return -1;
        }
    }
    int rc = zmq_send(ep->sock, data, len, ZMQ_DONTWAIT);
    if (rc < 0)
        ep->c.dropped++;
    recheck(ep);
    return rc < 0 ? -1 : 0;
}

static void
free_data(void *data, void *hint)
{
    (void)hint;
    free(data);
}

int
endpoint_send_reply_owned(struct endpoint *ep, zmq_msg_t *envelope, int n_env, void *data,
                          size_t len)
{
    zmq_msg_t body;
    if (zmq_msg_init_data(&body, data, len, free_data, NULL)) {
        free(data);
        for (int k = 0; k < n_env; k++)
            zmq_msg_close(&envelope[k]);
        ep->c.dropped++;
        return -1;
    }
    for (int i = 0; i < n_env; i++) {
        if (zmq_msg_send(&envelope[i], ep->sock, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0) {
            ep->c.dropped++;
            for (int k = i; k < n_env; k++)
                zmq_msg_close(&envelope[k]);
            zmq_msg_close(&body);
            recheck(ep);
            return -1;
        }
    }
    int rc = zmq_msg_send(&body, ep->sock, ZMQ_DONTWAIT);
    if (rc < 0) {
        ep->c.dropped++;
        zmq_msg_close(&body);
    }
    recheck(ep);
    return rc < 0 ? -1 : 0;
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct endpoint *ep = h->data;
    if (--ep->n_open_handles > 0)
        return;
    /* The fds are no longer watched: now the sockets may go. */
    if (ep->mon)
        zmq_close(ep->mon);
    zmq_close(ep->sock);
    ep->mon = ep->sock = NULL;
    if (!strncmp(ep->url, "ipc://", 6) && ep->url[6] != '@')
        unlink(ep->url + 6);
    free(ep->url);
    ep->url = NULL;
    conns_fini(&ep->conns);
    if (ep->on_closed)
        ep->on_closed(ep);
}

void
endpoint_close(struct endpoint *ep)
{
    if (!ep->sock)
        return;
    if (ep->mon)
        zmq_socket_monitor(ep->sock, NULL, 0);
    uv_close((uv_handle_t *)&ep->poll, on_handle_closed);
    uv_close((uv_handle_t *)&ep->idle, on_handle_closed);
    if (ep->mon)
        uv_close((uv_handle_t *)&ep->mon_poll, on_handle_closed);
}
