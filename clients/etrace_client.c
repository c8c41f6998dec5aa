/* libetrace-client (see etrace_client.h). */
#include "etrace_client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "etrace_recording.h"

struct etrace_client {
    void *zctx; /* owned */
    int curve;  /* the keys below are set */
    char server_key[41], public_key[41], secret_key[41];
    void *ctl;      /* DEALER, owned */
    void *in;       /* PUSH, owned, NULL until the first send */
    char *input_ep; /* owned */
    int timeout_ms;
    uint64_t next_id;
    char err[512];
    Etrace__Reply *layout; /* a status Reply: the model's inputs and readouts, owned */
    int layout_tried;      /* a status was asked for (NULL layout: no answer, no checks) */
};

struct etrace_sub {
    void *zctx; /* owned */
    void *sock; /* SUB, owned */
};

static void seterr(etrace_client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
seterr(etrace_client_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
}

int
etrace_default_endpoint(const char *name, char *buf, size_t len)
{
    const char *rd = getenv("RUNTIME_DIRECTORY"), *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (rd && *rd)
        n = snprintf(buf, len, "ipc://%s/%s", rd, name);
    else if (xdg && *xdg)
        n = snprintf(buf, len, "ipc://%s/etraced/%s", xdg, name);
    else if (geteuid() == 0)
        n = snprintf(buf, len, "ipc:///run/etraced/%s", name);
    else
        n = snprintf(buf, len, "ipc:///tmp/etraced-%u/%s", (unsigned)geteuid(), name);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Makes sock a CURVE client when the client has keys. */
static int
curve_keys(etrace_client_t *c, void *sock)
{
    if (!c->curve)
        return 0;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, c->server_key, 40) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, c->public_key, 40) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, c->secret_key, 40))
        return -1;
    return 0;
}

static etrace_client_t *client_new(const char *control_ep, const char *input_ep, int timeout_ms,
                                   const char *const keys[3]);

etrace_client_t *
etrace_client_new(const char *control_ep, const char *input_ep, int timeout_ms)
{
    return client_new(control_ep, input_ep, timeout_ms, NULL);
}

etrace_client_t *
etrace_client_new_curve(const char *control_ep, const char *input_ep, int timeout_ms,
                        const char *server_key, const char *public_key, const char *secret_key)
{
    const char *const keys[3] = {server_key, public_key, secret_key};
    for (int i = 0; i < 3; i++)
        if (!keys[i] || strlen(keys[i]) != 40)
            return NULL;
    return client_new(control_ep, input_ep, timeout_ms, keys);
}

int
etrace_curve_keypair(char *public_key, char *secret_key)
{
    return zmq_curve_keypair(public_key, secret_key) ? -1 : 0;
}

static etrace_client_t *
client_new(const char *control_ep, const char *input_ep, int timeout_ms, const char *const keys[3])
{
    char def[4200];
    int zero = 0;
    etrace_client_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    if (keys) {
        c->curve = 1;
        snprintf(c->server_key, sizeof c->server_key, "%s", keys[0]);
        snprintf(c->public_key, sizeof c->public_key, "%s", keys[1]);
        snprintf(c->secret_key, sizeof c->secret_key, "%s", keys[2]);
    }
    c->next_id = ((uint64_t)getpid() << 32) | ((uint64_t)time(NULL) & 0xffff) << 16;
    c->zctx = zmq_ctx_new();
    if (!c->zctx)
        goto fail;
    if (!input_ep && etrace_default_endpoint("input", def, sizeof(def)) == 0)
        input_ep = def;
    if (!(c->input_ep = strdup(input_ep ? input_ep : "")))
        goto fail;
    if (!control_ep && etrace_default_endpoint("control", def, sizeof(def)) == 0)
        control_ep = def;
    c->ctl = zmq_socket(c->zctx, ZMQ_DEALER);
    if (!c->ctl)
        goto fail;
    if (curve_keys(c, c->ctl))
        goto fail;
    zmq_setsockopt(c->ctl, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(c->ctl, ZMQ_SNDTIMEO, &c->timeout_ms, sizeof(c->timeout_ms));
    if (zmq_connect(c->ctl, control_ep)) {
        seterr(c, "control endpoint %s: %s", control_ep, zmq_strerror(zmq_errno()));
        /* Kept: every request then fails with this message. */
        zmq_close(c->ctl);
        c->ctl = NULL;
    }
    return c;
fail:
    etrace_client_free(&c);
    return NULL;
}

void
etrace_client_free(etrace_client_t **cp)
{
    etrace_client_t *c = cp ? *cp : NULL;
    if (!c)
        return;
    if (c->ctl)
        zmq_close(c->ctl);
    if (c->in)
        zmq_close(c->in);
    if (c->zctx)
        zmq_ctx_term(c->zctx);
    free(c->input_ep);
    etrace_reply_free(c->layout);
    free(c);
    *cp = NULL;
}

const char *
etrace_client_error(const etrace_client_t *c)
{
    return c->err;
}

void
etrace_reply_free(Etrace__Reply *reply)
{
    if (reply)
        etrace__reply__free_unpacked(reply, NULL);
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for the Reply with id `id` (any id when match is 0). */
static int
wait_reply(etrace_client_t *c, uint64_t id, int match, Etrace__Reply **reply)
{
    int64_t deadline = now_ms() + c->timeout_ms;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left < 0)
            left = 0;
        zmq_pollitem_t it = {c->ctl, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&it, 1, (long)left);
        if (rc < 0 && zmq_errno() == EINTR)
            continue;
        if (rc <= 0) {
            seterr(c, "no answer from the daemon within %d ms", c->timeout_ms);
            return ETRACE_ETIMEOUT;
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->ctl, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        /* A REQ-style empty delimiter may precede the body; the body is the last part. */
        while (zmq_msg_more(&m)) {
            zmq_msg_close(&m);
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, c->ctl, 0) < 0)
                break;
        }
        Etrace__Reply *r = etrace__reply__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
        zmq_msg_close(&m);
        if (!r) {
            seterr(c, "the daemon's answer is not a Reply");
            return ETRACE_ESYS;
        }
        if (match && r->id != id) {
            etrace__reply__free_unpacked(r, NULL); /* an answer to a request we gave up on */
            continue;
        }
        *reply = r;
        if (r->error && r->error->code != ETRACE__ERROR__CODE__NONE) {
            const char *code = "error";
            const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
                &etrace__error__code__descriptor, (int)r->error->code);
            if (ev)
                code = ev->name;
            seterr(c, "%s: %s", code, r->error->message ? r->error->message : "");
            return ETRACE_EREPLY;
        }
        return ETRACE_OK;
    }
}

static int
send_bytes(etrace_client_t *c, void *sock, const void *data, size_t len)
{
    if (zmq_send(sock, data, len, 0) < 0) {
        int e = zmq_errno();
        seterr(c, "cannot send: %s", e == EAGAIN ? "no daemon (timed out)" : zmq_strerror(e));
        return e == EAGAIN ? ETRACE_ETIMEOUT : ETRACE_ESYS;
    }
    return ETRACE_OK;
}

int
etrace_request(etrace_client_t *c, Etrace__Request *req, Etrace__Reply **reply)
{
    *reply = NULL;
    if (!c->ctl)
        return ETRACE_ESYS;
    req->id = ++c->next_id;
    size_t len = etrace__request__get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        seterr(c, "out of memory");
        return ETRACE_ESYS;
    }
    etrace__request__pack(req, buf);
    int rc = send_bytes(c, c->ctl, buf, len);
    free(buf);
    if (rc)
        return rc;
    return wait_reply(c, req->id, 1, reply);
}

int
etrace_request_raw(etrace_client_t *c, const void *data, size_t len, Etrace__Reply **reply)
{
    *reply = NULL;
    if (!c->ctl)
        return ETRACE_ESYS;
    int rc = send_bytes(c, c->ctl, data, len);
    if (rc)
        return rc;
    return wait_reply(c, 0, 0, reply);
}

static int
simple(etrace_client_t *c, Etrace__Request__CommandCase cmd, Etrace__Reply **reply)
{
    Etrace__Request req = ETRACE__REQUEST__INIT;
    Etrace__Empty empty = ETRACE__EMPTY__INIT;
    req.command_case = cmd;
    req.status = &empty; /* every Empty command shares the union's storage */
    return etrace_request(c, &req, reply);
}

int
etrace_status(etrace_client_t *c, Etrace__Reply **reply)
{
    return simple(c, ETRACE__REQUEST__COMMAND_STATUS, reply);
}

int
etrace_stats(etrace_client_t *c, Etrace__Reply **reply)
{
    return simple(c, ETRACE__REQUEST__COMMAND_STATS, reply);
}

int
etrace_pause(etrace_client_t *c, Etrace__Reply **reply)
{
    return simple(c, ETRACE__REQUEST__COMMAND_PAUSE, reply);
}

int
etrace_resume(etrace_client_t *c, Etrace__Reply **reply)
{
    return simple(c, ETRACE__REQUEST__COMMAND_RESUME, reply);
}

int
etrace_export(etrace_client_t *c, Etrace__Reply **reply)
{
    return simple(c, ETRACE__REQUEST__COMMAND_EXPORT, reply);
}

int
etrace_shutdown(etrace_client_t *c, Etrace__Reply **reply)
{
    return simple(c, ETRACE__REQUEST__COMMAND_SHUTDOWN, reply);
}

int
etrace_learn(etrace_client_t *c, int on, Etrace__Reply **reply)
{
    Etrace__Request req = ETRACE__REQUEST__INIT;
    Etrace__Learn l = ETRACE__LEARN__INIT;
    l.on = on != 0;
    req.command_case = ETRACE__REQUEST__COMMAND_LEARN;
    req.learn = &l;
    return etrace_request(c, &req, reply);
}

int
etrace_lr(etrace_client_t *c, double lr, Etrace__Reply **reply)
{
    Etrace__Request req = ETRACE__REQUEST__INIT;
    Etrace__Lr l = ETRACE__LR__INIT;
    l.lr = lr;
    req.command_case = ETRACE__REQUEST__COMMAND_LR;
    req.lr = &l;
    return etrace_request(c, &req, reply);
}

int
etrace_reset(etrace_client_t *c, Etrace__Reset__What what, Etrace__Reply **reply)
{
    Etrace__Request req = ETRACE__REQUEST__INIT;
    Etrace__Reset r = ETRACE__RESET__INIT;
    r.what = what;
    req.command_case = ETRACE__REQUEST__COMMAND_RESET;
    req.reset = &r;
    return etrace_request(c, &req, reply);
}

int
etrace_step(etrace_client_t *c, const Etrace__Input *in, int reset_before, Etrace__Reply **reply)
{
    Etrace__Request req = ETRACE__REQUEST__INIT;
    Etrace__Step s = ETRACE__STEP__INIT;
    s.input = (Etrace__Input *)(uintptr_t)in;
    s.reset_before = reset_before != 0;
    req.command_case = ETRACE__REQUEST__COMMAND_STEP;
    req.step = &s;
    return etrace_request(c, &req, reply);
}

/* ---- operations: load, checkpoint, restore, record ------------------------------------- */

static int
read_whole(const char *path, uint8_t **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 65536, n = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        uint8_t *nb = realloc(b, cap * 2);
        if (!nb) {
            free(b);
            b = NULL;
            break;
        }
        b = nb;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!b || err) {
        free(b);
        return -1;
    }
    *buf = b;
    *len = n;
    return 0;
}

/* Every token of the model text that names a .npy file (weight, bias, indices, indptr,
 * rows, cols, values): the files `load` must carry. */
static int
npy_names(const char *text, size_t len, char ***names, size_t *n)
{
    static const char delim[] = " \t\r\n,{}[]:'\"#";
    size_t cap = 0;
    *names = NULL;
    *n = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && strchr(delim, text[i]) && text[i]) {
            if (text[i] == '#') /* a comment runs to the end of the line */
                while (i < len && text[i] != '\n')
                    i++;
            else
                i++;
        }
        size_t st = i;
        while (i < len && text[i] && !strchr(delim, text[i]))
            i++;
        size_t tl = i - st;
        if (tl > 4 && !memcmp(text + i - 4, ".npy", 4)) {
            int dup = 0;
            for (size_t k = 0; k < *n; k++)
                dup |= strlen((*names)[k]) == tl && !memcmp((*names)[k], text + st, tl);
            if (dup)
                continue;
            if (*n == cap) {
                cap = cap ? 2 * cap : 8;
                char **nn = realloc(*names, cap * sizeof(char *));
                if (!nn)
                    return -1;
                *names = nn;
            }
            (*names)[*n] = strndup(text + st, tl);
            if (!(*names)[*n])
                return -1;
            (*n)++;
        }
        if (i < len && !text[i])
            break;
    }
    return 0;
}

int
etrace_load(etrace_client_t *c, const char *model_path, int keep_weights, int keep_state,
            Etrace__Reply **reply)
{
    Etrace__Request req = ETRACE__REQUEST__INIT;
    Etrace__Load l = ETRACE__LOAD__INIT;
    uint8_t *text = NULL;
    size_t text_len = 0, n_names = 0;
    char **names = NULL, dir[4096], path[8192];
    Etrace__Load__File *files = NULL, **files_p = NULL;
    int rc = ETRACE_EREPLY;
    *reply = NULL;
    if (read_whole(model_path, &text, &text_len)) {
        seterr(c, "%s: %s", model_path, strerror(errno));
        return ETRACE_EREPLY;
    }
    snprintf(dir, sizeof dir, "%s", model_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if (npy_names((const char *)text, text_len, &names, &n_names)) {
        seterr(c, "out of memory");
        rc = ETRACE_ESYS;
        goto done;
    }
    files = calloc(n_names + 1, sizeof(*files));
    files_p = calloc(n_names + 1, sizeof(*files_p));
    if (!files || !files_p) {
        seterr(c, "out of memory");
        rc = ETRACE_ESYS;
        goto done;
    }
    for (size_t i = 0; i < n_names; i++) {
        etrace__load__file__init(&files[i]);
        files[i].path = names[i];
        if (names[i][0] == '/')
            snprintf(path, sizeof path, "%s", names[i]);
        else
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (read_whole(path, &files[i].data.data, &files[i].data.len)) {
            seterr(c, "%s (named by %s): %s", path, model_path, strerror(errno));
            goto done;
        }
        files_p[i] = &files[i];
    }
    l.model.data = text;
    l.model.len = text_len;
    l.model_path = (char *)(uintptr_t)model_path;
    l.files = files_p;
    l.n_files = n_names;
    l.keep_weights = keep_weights || keep_state;
    l.keep_state = keep_state != 0;
    req.command_case = ETRACE__REQUEST__COMMAND_LOAD;
    req.load = &l;
    rc = etrace_request(c, &req, reply);
done:
    for (size_t i = 0; i < n_names; i++) {
        free(names[i]);
        if (files)
            free(files[i].data.data);
    }
    free(names);
    free(files);
    free(files_p);
    free(text);
    return rc;
}

static int
named(etrace_client_t *c, Etrace__Request__CommandCase cmd, const char *name, Etrace__Reply **reply)
{
    Etrace__Request req = ETRACE__REQUEST__INIT;
    Etrace__Name n = ETRACE__NAME__INIT;
    n.name = (char *)(uintptr_t)(name ? name : "");
    req.command_case = cmd;
    req.checkpoint = &n; /* checkpoint and restore share the union's storage */
    return etrace_request(c, &req, reply);
}

int
etrace_checkpoint(etrace_client_t *c, const char *name, Etrace__Reply **reply)
{
    return named(c, ETRACE__REQUEST__COMMAND_CHECKPOINT, name, reply);
}

int
etrace_restore(etrace_client_t *c, const char *name, Etrace__Reply **reply)
{
    return named(c, ETRACE__REQUEST__COMMAND_RESTORE, name, reply);
}

static int
record(etrace_client_t *c, int start, const char *name, Etrace__Reply **reply)
{
    Etrace__Request req = ETRACE__REQUEST__INIT;
    Etrace__Record r = ETRACE__RECORD__INIT;
    r.start = start != 0;
    r.name = (char *)(uintptr_t)(name ? name : "");
    req.command_case = ETRACE__REQUEST__COMMAND_RECORD;
    req.record = &r;
    return etrace_request(c, &req, reply);
}

int
etrace_record_start(etrace_client_t *c, const char *name, Etrace__Reply **reply)
{
    return record(c, 1, name, reply);
}

int
etrace_record_stop(etrace_client_t *c, Etrace__Reply **reply)
{
    return record(c, 0, NULL, reply);
}

/* ---- export files ----------------------------------------------------------------------- */

static int
write_npy(const char *path, const char *descr, const Etrace__Tensor *t, const void *data,
          size_t elem, size_t n, char *err, size_t err_len)
{
    char shape[128] = "", header[256];
    size_t off = 0;
    for (size_t i = 0; i < t->n_shape; i++)
        off += (size_t)snprintf(shape + off, sizeof(shape) - off, "%lld%s", (long long)t->shape[i],
                                t->n_shape == 1 ? "," : (i + 1 < t->n_shape ? ", " : ""));
    int hl = snprintf(header, sizeof(header),
                      "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shape);
    /* magic(6) + version(2) + len(2) + header, padded with spaces to 64, ending '\n'. */
    size_t total = 10 + (size_t)hl + 1;
    size_t pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    uint16_t hlen = (uint16_t)((size_t)hl + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hlen & 0xff, f);
    fputc(hlen >> 8, f);
    fwrite(header, 1, (size_t)hl, f);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    if (n)
        fwrite(data, elem, n, f);
    if (fclose(f)) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int
etrace_export_write(const Etrace__ExportResult *exp, const char *dir, char *err, size_t err_len)
{
    char path[4096];
    if (mkdir(dir, 0777) && errno != EEXIST) {
        snprintf(err, err_len, "%s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/params", dir);
    if (mkdir(path, 0777) && errno != EEXIST) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < exp->n_tensors; i++) {
        const Etrace__Tensor *t = exp->tensors[i];
        if (!t->name || strchr(t->name, '/') || !strcmp(t->name, "..")) {
            snprintf(err, err_len, "tensor %zu: bad name", i);
            return -1;
        }
        snprintf(path, sizeof(path), "%s/params/%s.npy", dir, t->name);
        int rc;
        if (t->n_ints)
            rc = write_npy(path, "<i8", t, t->ints, 8, t->n_ints, err, err_len);
        else if (t->n_values64)
            rc = write_npy(path, "<f8", t, t->values64, 8, t->n_values64, err, err_len);
        else
            rc = write_npy(path, "<f4", t, t->values, 4, t->n_values, err, err_len);
        if (rc)
            return -1;
    }
    return 0;
}

/* ---- lockstep replay ------------------------------------------------------------------- */

int
etrace_replay_event(etrace_client_t *c, const Etrace__RecordEvent *ev, Etrace__Reply **reply)
{
    Etrace__Request req = ETRACE__REQUEST__INIT;
    req.command_case = ETRACE__REQUEST__COMMAND_REPLAY;
    req.replay = (Etrace__RecordEvent *)(uintptr_t)ev;
    return etrace_request(c, &req, reply);
}

/* The outputs of a replay, per readout, grown a tick at a time. */
struct replay_out {
    size_t n_readouts;
    char **names;   /* [n_readouts], owned */
    size_t *sizes;  /* [n_readouts] */
    float **values; /* [n_readouts][T * size] */
    double *loss;   /* [T] */
    uint64_t T, cap;
};

static void
replay_out_fini(struct replay_out *o)
{
    for (size_t k = 0; k < o->n_readouts; k++) {
        free(o->names[k]);
        free(o->values[k]);
    }
    free(o->names);
    free(o->sizes);
    free(o->values);
    free(o->loss);
    memset(o, 0, sizeof(*o));
}

/* Appends one step's Outputs. Returns 0, or -1 with the reason in c. */
static int
replay_out_add(etrace_client_t *c, struct replay_out *o, const Etrace__StepResult *st)
{
    if (!o->names) {
        o->n_readouts = st->n_outputs;
        o->names = calloc(st->n_outputs + 1, sizeof(*o->names));
        o->sizes = calloc(st->n_outputs + 1, sizeof(*o->sizes));
        o->values = calloc(st->n_outputs + 1, sizeof(*o->values));
        if (!o->names || !o->sizes || !o->values)
            return seterr(c, "out of memory"), -1;
        for (size_t k = 0; k < st->n_outputs; k++) {
            const char *nm = st->outputs[k]->readout ? st->outputs[k]->readout : "";
            if (!*nm || strchr(nm, '/') || !strcmp(nm, ".."))
                return seterr(c, "replay: readout %zu has a bad name", k), -1;
            if (!(o->names[k] = strdup(nm)))
                return seterr(c, "out of memory"), -1;
            o->sizes[k] = st->outputs[k]->n_values;
        }
    }
    if (st->n_outputs != o->n_readouts)
        return seterr(c, "replay: the readouts changed (a swap to a model with other "
                         "readouts is not supported by replay)"),
               -1;
    for (size_t k = 0; k < st->n_outputs; k++)
        if (st->outputs[k]->n_values != o->sizes[k] ||
            strcmp(st->outputs[k]->readout ? st->outputs[k]->readout : "", o->names[k]))
            return seterr(c, "replay: the readouts changed (a swap to a model with other "
                             "readouts is not supported by replay)"),
                   -1;
    if (o->T == o->cap) {
        uint64_t cap = o->cap ? 2 * o->cap : 4096;
        for (size_t k = 0; k < o->n_readouts; k++) {
            float *nv = realloc(o->values[k],
                                (size_t)cap * (o->sizes[k] ? o->sizes[k] : 1) * sizeof(float));
            if (!nv)
                return seterr(c, "out of memory"), -1;
            o->values[k] = nv;
        }
        double *nl = realloc(o->loss, (size_t)cap * sizeof(double));
        if (!nl)
            return seterr(c, "out of memory"), -1;
        o->loss = nl;
        o->cap = cap;
    }
    for (size_t k = 0; k < o->n_readouts; k++)
        if (o->sizes[k])
            memcpy(o->values[k] + o->T * o->sizes[k], st->outputs[k]->values,
                   o->sizes[k] * sizeof(float));
    o->loss[o->T] = st->n_outputs ? st->outputs[0]->loss : 0.0;
    o->T++;
    return 0;
}

/* Runs empty lockstep Steps until the daemon's tick is `to`. */
static int
replay_ticks(etrace_client_t *c, struct replay_out *o, uint64_t *tick, uint64_t to)
{
    while (*tick < to) {
        Etrace__Reply *r = NULL;
        int rc = etrace_step(c, NULL, 0, &r);
        if (rc == ETRACE_OK && r->result_case != ETRACE__REPLY__RESULT_STEP) {
            seterr(c, "replay: step: no outputs in the reply");
            rc = ETRACE_EREPLY;
        }
        if (rc == ETRACE_OK && replay_out_add(c, o, r->step))
            rc = ETRACE_ESYS;
        if (rc == ETRACE_OK && r->step->n_outputs)
            *tick = r->step->outputs[0]->tick + 1;
        else if (rc == ETRACE_OK)
            (*tick)++;
        etrace_reply_free(r);
        if (rc != ETRACE_OK)
            return rc;
    }
    return ETRACE_OK;
}

/* The daemon's tick, from status. */
static int
replay_tick_now(etrace_client_t *c, uint64_t *tick)
{
    Etrace__Reply *r = NULL;
    int rc = etrace_status(c, &r);
    if (rc == ETRACE_OK && r->result_case == ETRACE__REPLY__RESULT_STATUS)
        *tick = r->status->tick;
    else if (rc == ETRACE_OK) {
        seterr(c, "replay: status: no status in the reply");
        rc = ETRACE_EREPLY;
    }
    etrace_reply_free(r);
    return rc;
}

static int
mkdir_in(etrace_client_t *c, const char *dir, const char *sub)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s%s%s", dir, sub ? "/" : "", sub ? sub : "");
    if (mkdir(path, 0777) && errno != EEXIST)
        return seterr(c, "%s: %s", path, strerror(errno)), -1;
    return 0;
}

/* outputs/<readout>.npy (float32 [T, size]), loss.npy (float64 [T]) and params/, as
 * `etraced run --replay` writes them. */
static int
replay_write(etrace_client_t *c, const struct replay_out *o, const char *dir)
{
    char path[4096], err[512];
    int64_t shape[2];
    Etrace__Tensor t = ETRACE__TENSOR__INIT;
    t.shape = shape;
    if (mkdir_in(c, dir, NULL) || mkdir_in(c, dir, "outputs"))
        return ETRACE_ESYS;
    for (size_t k = 0; k < o->n_readouts; k++) {
        snprintf(path, sizeof(path), "%s/outputs/%s.npy", dir, o->names[k]);
        shape[0] = (int64_t)o->T;
        shape[1] = (int64_t)o->sizes[k];
        t.n_shape = 2;
        if (write_npy(path, "<f4", &t, o->values[k], 4, (size_t)o->T * o->sizes[k], err,
                      sizeof(err)))
            return seterr(c, "%s", err), ETRACE_ESYS;
    }
    snprintf(path, sizeof(path), "%s/loss.npy", dir);
    shape[0] = (int64_t)o->T;
    t.n_shape = 1;
    if (write_npy(path, "<f8", &t, o->loss, 8, (size_t)o->T, err, sizeof(err)))
        return seterr(c, "%s", err), ETRACE_ESYS;
    Etrace__Reply *r = NULL;
    int rc = etrace_export(c, &r);
    if (rc == ETRACE_OK && r->result_case != ETRACE__REPLY__RESULT_EXPORT) {
        seterr(c, "replay: export: no tensors in the reply");
        rc = ETRACE_EREPLY;
    }
    if (rc == ETRACE_OK && etrace_export_write(r->export, dir, err, sizeof(err))) {
        seterr(c, "%s", err);
        rc = ETRACE_ESYS;
    }
    etrace_reply_free(r);
    return rc;
}

int
etrace_replay(etrace_client_t *c, const char *file, const char *dir,
              struct etrace_replay_summary *sum)
{
    struct etrace_recording_reader rd;
    struct replay_out o;
    struct etrace_replay_summary s;
    uint64_t tick = 0;
    int rc = ETRACE_OK, started = 0;
    char err[1200];

    memset(&o, 0, sizeof(o));
    memset(&s, 0, sizeof(s));
    if (etrace_recording_open(&rd, file, err, sizeof err)) {
        seterr(c, "%s", err);
        return ETRACE_EREPLY;
    }
    while (rc == ETRACE_OK && !s.has_end) {
        Etrace__RecordEvent *ev = NULL;
        int st = etrace_recording_next(&rd, &ev, err, sizeof err);
        if (st == ETRACE_RECORDING_END || st == ETRACE_RECORDING_TRUNCATED)
            break; /* truncated: replay what is whole, as etraced run --replay does */
        if (st != ETRACE_RECORDING_OK) {
            seterr(c, "%s", err);
            rc = ETRACE_EREPLY;
            break;
        }
        s.events++;
        if (!started && ev->kind_case != ETRACE__RECORD_EVENT__KIND_SNAPSHOT) {
            seterr(c, "%s: offset %llu: the first record must be a snapshot", file,
                   (unsigned long long)rd.record_offset);
            rc = ETRACE_EREPLY;
        } else if (ev->kind_case == ETRACE__RECORD_EVENT__KIND_END && ev->incomplete) {
            seterr(c,
                   "%s: offset %llu: the daemon lost events while recording (see its log): "
                   "this replay cannot reproduce the live run",
                   file, (unsigned long long)rd.record_offset);
            rc = ETRACE_EREPLY;
        } else if (ev->kind_case == ETRACE__RECORD_EVENT__KIND_END && ev->end + 2 != s.events) {
            seterr(c,
                   "%s: offset %llu: the end record counts %llu events, the file holds %llu: "
                   "this replay cannot reproduce the live run",
                   file, (unsigned long long)rd.record_offset, (unsigned long long)ev->end,
                   (unsigned long long)(s.events - 2));
            rc = ETRACE_EREPLY;
        } else if (ev->kind_case == ETRACE__RECORD_EVENT__KIND_END) {
            rc = replay_ticks(c, &o, &tick, ev->tick);
            s.has_end = 1;
        } else {
            if (started)
                rc = replay_ticks(c, &o, &tick, ev->tick);
            Etrace__Reply *r = NULL;
            if (rc == ETRACE_OK)
                rc = etrace_replay_event(c, ev, &r);
            etrace_reply_free(r);
            /* A snapshot, restore or swap may set the tick: ask. */
            if (rc == ETRACE_OK && (!started || ev->kind_case == ETRACE__RECORD_EVENT__KIND_SWAP ||
                                    ev->kind_case == ETRACE__RECORD_EVENT__KIND_RESTORE))
                rc = replay_tick_now(c, &tick);
            if (rc == ETRACE_OK && !started)
                s.first_tick = tick;
            started = 1;
        }
        etrace__record_event__free_unpacked(ev, NULL);
    }
    if (rc == ETRACE_OK && !started) {
        seterr(c, "%s: no snapshot", file);
        rc = ETRACE_EREPLY;
    }
    if (rc == ETRACE_OK)
        rc = replay_write(c, &o, dir);
    s.ticks = o.T;
    s.last_tick = tick;
    if (sum)
        *sum = s;
    replay_out_fini(&o);
    etrace_recording_close(&rd);
    return rc;
}

/* ---- input ------------------------------------------------------------------------------- */

static int
input_socket(etrace_client_t *c)
{
    int zero = 0, hwm = 100000;
    if (c->in)
        return 0;
    c->in = zmq_socket(c->zctx, ZMQ_PUSH);
    if (!c->in) {
        seterr(c, "input socket: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    zmq_setsockopt(c->in, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(c->in, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(c->in, ZMQ_SNDTIMEO, &c->timeout_ms, sizeof(c->timeout_ms));
    if (curve_keys(c, c->in) || zmq_connect(c->in, c->input_ep)) {
        seterr(c, "input endpoint %s: %s", c->input_ep, zmq_strerror(zmq_errno()));
        zmq_close(c->in);
        c->in = NULL;
        return -1;
    }
    return 0;
}

int
etrace_send_raw(etrace_client_t *c, const void *data, size_t len)
{
    if (input_socket(c))
        return ETRACE_ESYS;
    return send_bytes(c, c->in, data, len);
}

int
etrace_send_input(etrace_client_t *c, const Etrace__Input *in)
{
    uint8_t stack[4096];
    size_t len = etrace__input__get_packed_size(in);
    uint8_t *buf = len <= sizeof(stack) ? stack : malloc(len);
    if (!buf) {
        seterr(c, "out of memory");
        return ETRACE_ESYS;
    }
    etrace__input__pack(in, buf);
    int rc = etrace_send_raw(c, buf, len);
    if (buf != stack)
        free(buf);
    return rc;
}

/* ---- client-side checks of frames and targets -------------------------------------- */

/* The running model's inputs and readouts, asked for once (a status request) and cached;
 * `refresh` asks again (the daemon may have swapped models meanwhile). NULL when the
 * daemon does not answer or names none (then nothing is checked here). */
static const Etrace__Status *
layout_get(etrace_client_t *c, int refresh)
{
    if (refresh) {
        etrace_reply_free(c->layout);
        c->layout = NULL;
        c->layout_tried = 0;
    }
    if (!c->layout_tried) {
        char err[sizeof(c->err)];
        memcpy(err, c->err, sizeof(err));
        c->layout_tried = 1;
        if (etrace_status(c, &c->layout) != ETRACE_OK ||
            c->layout->result_case != ETRACE__REPLY__RESULT_STATUS) {
            etrace_reply_free(c->layout);
            c->layout = NULL;
        }
        memcpy(c->err, err, sizeof(err));
    }
    if (!c->layout || !c->layout->status->n_inputs)
        return NULL;
    return c->layout->status;
}

/* 0 when item `name` of kind (0: analog input, 1: spikes input, 2: target values, 3: class)
 * with n values (or index n) fits s, else -1 with the reason in c->err. */
static int
layout_fits(etrace_client_t *c, const Etrace__Status *s, int kind, const char *name, size_t n)
{
    if (kind <= 1) {
        for (size_t i = 0; i < s->n_inputs; i++) {
            const Etrace__ModelInput *in = s->inputs[i];
            if (strcmp(in->name, name))
                continue;
            if (in->spikes != (kind == 1)) {
                seterr(c, "input '%s' is %s: send it with %s", name,
                       in->spikes ? "a spikes input" : "an analog input",
                       in->spikes ? "spike indices" : "values");
                return -1;
            }
            if (!in->spikes && n != in->size) {
                seterr(c, "input '%s' takes %u values, not %zu", name, in->size, n);
                return -1;
            }
            return 0;
        }
        seterr(c, "the model '%s' has no input '%s'", s->model_name, name);
        return -1;
    }
    for (size_t r = 0; r < s->n_readouts; r++) {
        const Etrace__ModelReadout *ro = s->readouts[r];
        if (strcmp(ro->name, name))
            continue;
        if (kind == 2 && n != ro->size) {
            seterr(c, "readout '%s' takes targets of %u values, not %zu", name, ro->size, n);
            return -1;
        }
        if (kind == 3 && n >= ro->size) {
            seterr(c, "readout '%s' has %u classes: index %zu is out of range", name, ro->size, n);
            return -1;
        }
        return 0;
    }
    seterr(c, "the model '%s' has no readout '%s'", s->model_name, name);
    return -1;
}

/* Checks one item against the model (asking again once on a mismatch, in case the model
 * was swapped). Returns ETRACE_OK or ETRACE_EREPLY (reason in c->err). */
static int
check_item(etrace_client_t *c, int kind, const char *name, size_t n)
{
    const Etrace__Status *s = layout_get(c, 0);
    if (!s || !layout_fits(c, s, kind, name, n))
        return ETRACE_OK;
    s = layout_get(c, 1);
    if (!s || !layout_fits(c, s, kind, name, n))
        return ETRACE_OK;
    return ETRACE_EREPLY;
}

int
etrace_check_input(etrace_client_t *c, const Etrace__Input *in)
{
    for (size_t k = 0; k < in->n_frames; k++) {
        const Etrace__Frame *f = in->frames[k];
        if (!f->n_values && !f->n_spikes)
            continue; /* nothing to size: the daemon checks the name */
        int rc =
            check_item(c, f->n_spikes > 0 && !f->n_values, f->name ? f->name : "", f->n_values);
        if (rc)
            return rc;
    }
    for (size_t k = 0; k < in->n_signals; k++) {
        const Etrace__Signal *s = in->signals[k];
        int rc = ETRACE_OK;
        if (s->kind_case == ETRACE__SIGNAL__KIND_TARGET)
            rc = check_item(c, 2, s->readout ? s->readout : "", s->target->n_values);
        else if (s->kind_case == ETRACE__SIGNAL__KIND_CLASS_INDEX)
            rc = s->class_index < 0
                     ? (seterr(c, "class index %d is negative", (int)s->class_index), ETRACE_EREPLY)
                     : check_item(c, 3, s->readout ? s->readout : "", (size_t)s->class_index);
        if (rc)
            return rc;
    }
    return ETRACE_OK;
}

int
etrace_send_frame(etrace_client_t *c, const char *name, const float *values, size_t n, uint64_t seq)
{
    Etrace__Input in = ETRACE__INPUT__INIT;
    Etrace__Frame f = ETRACE__FRAME__INIT, *fp = &f;
    f.name = (char *)(uintptr_t)name;
    f.values = (float *)(uintptr_t)values;
    f.n_values = n;
    f.seq = seq;
    in.frames = &fp;
    in.n_frames = 1;
    int rc = etrace_check_input(c, &in);
    return rc ? rc : etrace_send_input(c, &in);
}

int
etrace_send_spikes(etrace_client_t *c, const char *name, const int32_t *idx, size_t n, uint64_t seq)
{
    Etrace__Input in = ETRACE__INPUT__INIT;
    Etrace__Frame f = ETRACE__FRAME__INIT, *fp = &f;
    f.name = (char *)(uintptr_t)name;
    f.spikes = (int32_t *)(uintptr_t)idx;
    f.n_spikes = n;
    f.seq = seq;
    in.frames = &fp;
    in.n_frames = 1;
    int rc = etrace_check_input(c, &in);
    return rc ? rc : etrace_send_input(c, &in);
}

int
etrace_send_target(etrace_client_t *c, const char *readout, const float *values, size_t n)
{
    Etrace__Input in = ETRACE__INPUT__INIT;
    Etrace__Signal s = ETRACE__SIGNAL__INIT, *sp = &s;
    Etrace__Signal__Target t = ETRACE__SIGNAL__TARGET__INIT;
    t.values = (float *)(uintptr_t)values;
    t.n_values = n;
    s.readout = (char *)(uintptr_t)readout;
    s.kind_case = ETRACE__SIGNAL__KIND_TARGET;
    s.target = &t;
    in.signals = &sp;
    in.n_signals = 1;
    int rc = etrace_check_input(c, &in);
    return rc ? rc : etrace_send_input(c, &in);
}

int
etrace_send_class(etrace_client_t *c, const char *readout, int class_index)
{
    Etrace__Input in = ETRACE__INPUT__INIT;
    Etrace__Signal s = ETRACE__SIGNAL__INIT, *sp = &s;
    s.readout = (char *)(uintptr_t)readout;
    s.kind_case = ETRACE__SIGNAL__KIND_CLASS_INDEX;
    s.class_index = class_index;
    in.signals = &sp;
    in.n_signals = 1;
    int rc = etrace_check_input(c, &in);
    return rc ? rc : etrace_send_input(c, &in);
}

static int
send_reward(etrace_client_t *c, float reward, int terminal)
{
    Etrace__Input in = ETRACE__INPUT__INIT;
    Etrace__Signal s = ETRACE__SIGNAL__INIT, *sp = &s;
    s.kind_case = ETRACE__SIGNAL__KIND_REWARD;
    s.reward = reward;
    s.terminal = terminal != 0;
    in.signals = &sp;
    in.n_signals = 1;
    int rc = etrace_check_input(c, &in);
    return rc ? rc : etrace_send_input(c, &in);
}

int
etrace_send_reward(etrace_client_t *c, float reward)
{
    return send_reward(c, reward, 0);
}

int
etrace_send_reward_terminal(etrace_client_t *c, float reward)
{
    return send_reward(c, reward, 1);
}

/* ---- subscribers ------------------------------------------------------------------------- */

static etrace_sub_t *sub_new(const char *endpoint, const char *topic, const char *const keys[3]);

etrace_sub_t *
etrace_sub_new(const char *endpoint, const char *topic)
{
    return sub_new(endpoint, topic, NULL);
}

etrace_sub_t *
etrace_sub_new_curve(const char *endpoint, const char *topic, const char *server_key,
                     const char *public_key, const char *secret_key)
{
    const char *const keys[3] = {server_key, public_key, secret_key};
    for (int i = 0; i < 3; i++)
        if (!keys[i] || strlen(keys[i]) != 40)
            return NULL;
    return sub_new(endpoint, topic, keys);
}

static etrace_sub_t *
sub_new(const char *endpoint, const char *topic, const char *const keys[3])
{
    char def[4200];
    int zero = 0, hwm = 100000;
    etrace_sub_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (!topic)
        topic = "";
    if (!endpoint &&
        etrace_default_endpoint(strcmp(topic, "stats") ? "output" : "stats", def, sizeof(def)) == 0)
        endpoint = def;
    s->zctx = zmq_ctx_new();
    s->sock = s->zctx ? zmq_socket(s->zctx, ZMQ_SUB) : NULL;
    if (!s->sock) {
        etrace_sub_free(&s);
        return NULL;
    }
    zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s->sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, topic, strlen(topic));
    if (keys && (zmq_setsockopt(s->sock, ZMQ_CURVE_SERVERKEY, keys[0], 40) ||
                 zmq_setsockopt(s->sock, ZMQ_CURVE_PUBLICKEY, keys[1], 40) ||
                 zmq_setsockopt(s->sock, ZMQ_CURVE_SECRETKEY, keys[2], 40))) {
        etrace_sub_free(&s);
        return NULL;
    }
    if (zmq_connect(s->sock, endpoint)) {
        etrace_sub_free(&s);
        return NULL;
    }
    return s;
}

void
etrace_sub_free(etrace_sub_t **sp)
{
    etrace_sub_t *s = sp ? *sp : NULL;
    if (!s)
        return;
    if (s->sock)
        zmq_close(s->sock);
    if (s->zctx)
        zmq_ctx_term(s->zctx);
    free(s);
    *sp = NULL;
}

/* Receives [topic][body]; returns the body in m (open), or a code. */
static int
sub_recv(etrace_sub_t *s, int timeout_ms, zmq_msg_t *m)
{
    zmq_pollitem_t it = {s->sock, 0, ZMQ_POLLIN, 0};
    int rc;
    do
        rc = zmq_poll(&it, 1, timeout_ms);
    while (rc < 0 && zmq_errno() == EINTR);
    if (rc <= 0)
        return ETRACE_ETIMEOUT;
    zmq_msg_init(m);
    if (zmq_msg_recv(m, s->sock, 0) < 0) {
        zmq_msg_close(m);
        return ETRACE_ESYS;
    }
    while (zmq_msg_more(m)) {
        zmq_msg_close(m);
        zmq_msg_init(m);
        if (zmq_msg_recv(m, s->sock, 0) < 0) {
            zmq_msg_close(m);
            return ETRACE_ESYS;
        }
    }
    return ETRACE_OK;
}

int
etrace_sub_recv_output(etrace_sub_t *s, int timeout_ms, Etrace__Output **out)
{
    zmq_msg_t m;
    *out = NULL;
    int rc = sub_recv(s, timeout_ms, &m);
    if (rc)
        return rc;
    *out = etrace__output__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
    zmq_msg_close(&m);
    return *out ? ETRACE_OK : ETRACE_EREPLY;
}

int
etrace_sub_recv_latest_output(etrace_sub_t *s, int timeout_ms, Etrace__Output **out)
{
    zmq_msg_t m, newest;
    int have = 0;
    *out = NULL;
    for (;;) {
        /* Drain what is queued, keeping the last; wait only when nothing was. */
        int rc = sub_recv(s, have ? 0 : timeout_ms, &m);
        if (rc == ETRACE_ETIMEOUT && have)
            break;
        if (rc) {
            if (have)
                zmq_msg_close(&newest);
            return rc;
        }
        if (have)
            zmq_msg_close(&newest);
        newest = m;
        have = 1;
    }
    *out = etrace__output__unpack(NULL, zmq_msg_size(&newest), zmq_msg_data(&newest));
    zmq_msg_close(&newest);
    return *out ? ETRACE_OK : ETRACE_EREPLY;
}

int
etrace_sub_recv_stats(etrace_sub_t *s, int timeout_ms, Etrace__Stats **out)
{
    zmq_msg_t m;
    *out = NULL;
    int rc = sub_recv(s, timeout_ms, &m);
    if (rc)
        return rc;
    *out = etrace__stats__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
    zmq_msg_close(&m);
    return *out ? ETRACE_OK : ETRACE_EREPLY;
}
