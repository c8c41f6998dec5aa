/* CURVE and its ZAP handler (see curve.h). */
#include "curve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"
#include "security.h"

static const char *const ep_names[CONFIG_N_EP] = {"input", "output", "control", "stats"};

int
curve_parse_secret(const char *text, size_t len, const char *path, uint8_t key[32], char *err,
                   size_t err_len)
{
    char line[512];
    int found = 0;
    size_t pos = 0;
    while (!found && pos < len) {
        /* One line, as much of it as fits (a key line is short). */
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) + 1 : len;
        size_t n = end - pos < sizeof line - 1 ? end - pos : sizeof line - 1;
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos = end;
        char *p = line;
        if (!strncmp(p, "secret:", 7))
            p += 7;
        else if (strchr(p, ':'))
            continue; /* "public: ..." and other labelled lines */
        while (*p == ' ' || *p == '\t')
            p++;
        size_t k = strcspn(p, " \t\r\n");
        if (k == 40) {
            p[40] = '\0';
            found = zmq_z85_decode(key, p) != NULL;
        }
    }
    if (!found) {
        snprintf(err, err_len,
                 "curve.server_secret_file %s: no 40-character Z85 secret key "
                 "(write one with `etracectl keygen`)",
                 path);
        return -1;
    }
    return 0;
}

int
curve_read_secret(const char *path, uint8_t key[32], char *err, size_t err_len)
{
    struct stat st;
    char why[600];
    /* The operator's file (a symlink is fine); a FIFO or device is refused unopened. */
    int fd = security_open_read(path, 0, &st, why, sizeof why);
    if (fd < 0) {
        snprintf(err, err_len, "curve.server_secret_file %s", why);
        return -1;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(err, err_len,
                 "curve.server_secret_file %s: mode %04o lets others read the secret key: "
                 "refused (chmod 600, owned by etraced's user)",
                 path, (unsigned)(st.st_mode & 07777));
        close(fd);
        return -1;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        snprintf(err, err_len, "curve.server_secret_file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    /* A key file is a few lines; what lies past the first 64 KiB is not read. */
    char *text = malloc(CURVE_KEY_FILE_MAX);
    size_t len = text ? fread(text, 1, CURVE_KEY_FILE_MAX, f) : 0;
    fclose(f);
    if (!text) {
        snprintf(err, err_len, "curve.server_secret_file %s: out of memory", path);
        return -1;
    }
    int rc = curve_parse_secret(text, len, path, key, err, err_len);
    free(text);
    return rc;
}

const uint8_t *
curve_secret(const struct daemon *d)
{
    return d->has_curve ? d->curve_secret_key : NULL;
}

static int
allowed(const struct daemon *d, const uint8_t *key)
{
    char z85[41];
    if (!zmq_z85_encode(z85, key, 32))
        return 0;
    for (int i = 0; i < d->cfg.n_curve_allow; i++)
        if (!strcmp(d->cfg.curve_allow[i], z85))
            return 1;
    return 0;
}

/* Answers one ZAP request (RFC 27): version, request id, domain, address, identity,
 * mechanism, credentials. */
static void
zap_handle(struct daemon *d)
{
    zmq_msg_t part[8];
    int n = 0, more = 1;
    while (more && n < 8) {
        zmq_msg_init(&part[n]);
        if (zmq_msg_recv(&part[n], d->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part[n]);
            break;
        }
        more = zmq_msg_more(&part[n]);
        n++;
    }
    while (more) { /* more parts than a ZAP request has: drop them */
        zmq_msg_t x;
        zmq_msg_init(&x);
        if (zmq_msg_recv(&x, d->zap, 0) < 0) {
            zmq_msg_close(&x);
            break;
        }
        more = zmq_msg_more(&x);
        zmq_msg_close(&x);
    }
    if (n < 6) {
        for (int i = 0; i < n; i++)
            zmq_msg_close(&part[i]);
        return;
    }
    const char *mech = zmq_msg_data(&part[5]);
    int ok = n >= 7 && zmq_msg_size(&part[5]) == 5 && !memcmp(mech, "CURVE", 5) &&
             zmq_msg_size(&part[6]) == 32 && allowed(d, zmq_msg_data(&part[6]));
    if (!ok) {
        d->curve_denials++;
        for (int i = 0; i < CONFIG_N_EP; i++)
            if (zmq_msg_size(&part[2]) == strlen(ep_names[i]) &&
                !memcmp(zmq_msg_data(&part[2]), ep_names[i], strlen(ep_names[i])))
                d->curve_denied[i]++;
    }
    const char *code = ok ? "200" : "400";
    const char *text = ok ? "OK" : "not in curve.allow";
    zmq_send(d->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(d->zap, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
    zmq_send(d->zap, code, 3, ZMQ_SNDMORE);
    zmq_send(d->zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(d->zap, "", 0, ZMQ_SNDMORE);
    zmq_send(d->zap, "", 0, 0);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
}

static void
on_zap(uv_poll_t *h, int status, int events)
{
    struct daemon *d = h->data;
    (void)status;
    (void)events;
    /* ZMQ_FD is edge-triggered: drain while ZMQ_EVENTS says POLLIN. */
    for (;;) {
        int ev = 0;
        size_t len = sizeof(ev);
        if (!d->zap || zmq_getsockopt(d->zap, ZMQ_EVENTS, &ev, &len) || !(ev & ZMQ_POLLIN))
            break;
        zap_handle(d);
    }
}

int
curve_start(struct daemon *d, char *err, size_t err_len)
{
    int fd;
    size_t fd_len = sizeof(fd);
    if (!d->cfg.curve_server_secret_file)
        return 0;
    if (!zmq_has("curve")) {
        snprintf(err, err_len, "curve: this libzmq has no CURVE support");
        return -1;
    }
    if (curve_read_secret(d->cfg.curve_server_secret_file, d->curve_secret_key, err, err_len))
        return -1;
    d->zap = zmq_socket(d->zctx, ZMQ_REP);
    int zero = 0;
    if (!d->zap || zmq_setsockopt(d->zap, ZMQ_LINGER, &zero, sizeof(zero)) ||
        zmq_bind(d->zap, "inproc://zeromq.zap.01") ||
        zmq_getsockopt(d->zap, ZMQ_FD, &fd, &fd_len)) {
        snprintf(err, err_len, "curve: cannot start the ZAP handler: %s",
                 zmq_strerror(zmq_errno()));
        if (d->zap)
            zmq_close(d->zap);
        d->zap = NULL;
        return -1;
    }
    uv_poll_init(&d->loop, &d->zap_poll, fd);
    d->zap_poll.data = d;
    uv_poll_start(&d->zap_poll, UV_READABLE, on_zap);
    d->has_curve = 1;
    log_info("curve: tcp endpoints use CURVE; %d client key(s) allowed", d->cfg.n_curve_allow);
    return 0;
}

static void
on_zap_closed(uv_handle_t *h)
{
    struct daemon *d = h->data;
    if (d->zap)
        zmq_close(d->zap);
    d->zap = NULL;
}

void
curve_stop(struct daemon *d)
{
    if (!d->zap || uv_is_closing((uv_handle_t *)&d->zap_poll))
        return;
    uv_poll_stop(&d->zap_poll);
    uv_close((uv_handle_t *)&d->zap_poll, on_zap_closed);
}
