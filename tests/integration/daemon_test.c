/* Integration tests of the daemon (issue 5): the real build/etraced on private ipc paths in
 * a temporary directory, driven through libetrace-client and build/etracectl, each with a
 * time bound, every daemon stopped and its directory removed.
 * Environment: ETRACED and ETRACECTL override the binaries (default: next to this test,
 * BUILD/etraced and BUILD/etracectl). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <zmq.h>

#include <cmocka.h>

#include "daemon_run.h"
#include "etrace_client.h"

static const char model_text[] = DAEMON_RUN_ITEST_MODEL;

/* ---- timer mode ----------------------------------------------------------------------- */

static void
test_daemon_timer_streams_without_gaps(void **state)
{
    struct daemon_run r;
    (void)state;
    daemon_run_start(&r, model_text, "stats_period_ms: 200\n");
    etrace_sub_t *out = etrace_sub_new(r.ep[1], "action");
    assert_non_null(out);
    daemon_run_sleep_ms(200); /* the subscription reaches the daemon */
    float v[4] = {0.5f, 0.1f, 0.2f, 0.3f}, tgt[2] = {0.1f, -0.1f};
    uint64_t first = 0, prev = 0, n_out = 0, gaps = 0;
    int64_t t0 = daemon_run_now_ms();
    uint64_t sent = 0;
    while (daemon_run_now_ms() - t0 < 2200) {
        v[0] = (float)sent * 1e-3f;
        assert_int_equal(etrace_send_frame(r.c, "sensors", v, 4, sent), ETRACE_OK);
        assert_int_equal(etrace_send_target(r.c, "action", tgt, 2), ETRACE_OK);
        sent++;
        Etrace__Output *o;
        while (etrace_sub_recv_output(out, 0, &o) == ETRACE_OK) {
            if (!n_out)
                first = o->tick;
            else if (o->tick != prev + 1)
                gaps += o->tick - prev - 1;
            prev = o->tick;
            n_out++;
            etrace__output__free_unpacked(o, NULL);
        }
        daemon_run_sleep_ms(1);
    }
    Etrace__Stats *st = daemon_run_stats(&r);
    print_message("timer: %llu frames sent, %llu outputs from tick %llu, gaps %llu; lateness "
                  "p50 %.1f us p99 %.1f us max %.1f us; skipped %llu overruns %llu\n",
                  (unsigned long long)sent, (unsigned long long)n_out, (unsigned long long)first,
                  (unsigned long long)gaps, (double)st->lateness->p50_ns / 1e3,
                  (double)st->lateness->p99_ns / 1e3, (double)st->lateness->max_ns / 1e3,
                  (unsigned long long)st->skipped, (unsigned long long)st->overruns);
    assert_true(n_out > 1000);
    /* Every gap in tick numbers must be explained by a drop counter. */
    assert_true(gaps <= daemon_run_sock(st, "output")->dropped);
    assert_int_equal(daemon_run_sock(st, "input")->accepted, 2 * sent);
    assert_int_equal(st->inputs[0]->frames, sent);
    assert_true(st->readouts[0]->targets == sent);
    etrace__stats__free_unpacked(st, NULL);
    etrace_sub_free(&out);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* ---- control commands through the library ------------------------------------------- */

static void
test_daemon_control_library(void **state)
{
    struct daemon_run r;
    Etrace__Reply *rep = NULL;
    (void)state;
    daemon_run_start(&r, model_text, "stats_period_ms: 100\n");
    assert_int_equal(etrace_status(r.c, &rep), ETRACE_OK);
    assert_string_equal(rep->status->model_name, "itest");
    assert_int_equal(rep->status->period_ns, 1000000);
    assert_int_equal(rep->status->clock, ETRACE__STATUS__CLOCK__TIMER);
    etrace_reply_free(rep);

    assert_int_equal(etrace_stats(r.c, &rep), ETRACE_OK);
    assert_int_equal(rep->result_case, ETRACE__REPLY__RESULT_STATS);
    assert_int_equal(rep->stats->n_projections, 2);
    etrace_reply_free(rep);

    assert_int_equal(etrace_pause(r.c, &rep), ETRACE_OK);
    assert_true(rep->status->paused);
    etrace_reply_free(rep);
    uint64_t t1 = daemon_run_status_tick(&r);
    daemon_run_sleep_ms(50);
    assert_int_equal(daemon_run_status_tick(&r), t1);
    assert_int_equal(etrace_resume(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    daemon_run_sleep_ms(50);
    assert_true(daemon_run_status_tick(&r) > t1);

    assert_int_equal(etrace_learn(r.c, 0, &rep), ETRACE_OK);
    assert_false(rep->status->learning);
    etrace_reply_free(rep);
    assert_int_equal(etrace_learn(r.c, 1, &rep), ETRACE_OK);
    assert_true(rep->status->learning);
    etrace_reply_free(rep);
    assert_int_equal(etrace_lr(r.c, 0.25, &rep), ETRACE_OK);
    assert_true(rep->status->lr == 0.25);
    etrace_reply_free(rep);
    assert_int_equal(etrace_lr(r.c, -1.0, &rep), ETRACE_EREPLY);
    assert_int_equal(rep->error->code, ETRACE__ERROR__CODE__BAD_ARGUMENT);
    etrace_reply_free(rep);
    assert_int_equal(etrace_lr(r.c, NAN, &rep), ETRACE_EREPLY);
    assert_int_equal(rep->error->code, ETRACE__ERROR__CODE__NON_FINITE);
    etrace_reply_free(rep);
    for (int w = 0; w < 3; w++) {
        assert_int_equal(etrace_reset(r.c, (Etrace__Reset__What)w, &rep), ETRACE_OK);
        etrace_reply_free(rep);
    }
    assert_int_equal(etrace_reset(r.c, (Etrace__Reset__What)9, &rep), ETRACE_EREPLY);
    etrace_reply_free(rep);
    assert_int_equal(etrace_step(r.c, NULL, 0, &rep), ETRACE_EREPLY);
    assert_int_equal(rep->error->code, ETRACE__ERROR__CODE__WRONG_MODE);
    etrace_reply_free(rep);

    assert_int_equal(etrace_export(r.c, &rep), ETRACE_OK);
    assert_int_equal(rep->export->n_tensors, 3); /* w_in weight and bias, w_out weight */
    assert_string_equal(rep->export->tensors[0]->name, "w_in.weight");
    assert_int_equal(rep->export->tensors[0]->n_shape, 2);
    assert_int_equal(rep->export->tensors[0]->shape[0], 4 + 6 + 32);
    assert_int_equal(rep->export->tensors[0]->shape[1], 32);
    assert_int_equal(rep->export->tensors[0]->n_values, 42 * 32);
    char err[256], dir[300], path[400];
    snprintf(dir, sizeof(dir), "%s/export", r.dir);
    assert_int_equal(etrace_export_write(rep->export, dir, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/params/w_out.weight.npy", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 128 + 32 * 2 * 4);
    etrace_reply_free(rep);

    assert_int_equal(etrace_shutdown(r.c, &rep), ETRACE_OK);
    etrace_reply_free(rep);
    int64_t deadline = daemon_run_now_ms() + 5000;
    int status = -1;
    while (waitpid(r.pid, &status, WNOHANG) == 0 && daemon_run_now_ms() < deadline)
        daemon_run_sleep_ms(10);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The ipc files are gone. */
    snprintf(path, sizeof(path), "%s/control", r.dir);
    assert_int_not_equal(stat(path, &st), 0);
    r.pid = 0;
    daemon_run_stop(&r);
}

/* ---- control commands through etracectl ---------------------------------------------- */

static int
ctl(struct daemon_run *r, const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "%s --config %s --timeout 2000 %s >/dev/null 2>&1",
             daemon_run_etracectl(), r->cfg, args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
test_daemon_control_etracectl(void **state)
{
    struct daemon_run r;
    (void)state;
    daemon_run_start(&r, model_text, "stats_period_ms: 100\n");
    static const struct {
        const char *args;
        int code;
    } cases[] = {
        {"status", 0},
        {"--json status", 0},
        {"stats", 0},
        {"--json stats", 0},
        {"stats --watch --count 2", 0},
        {"pause", 0},
        {"resume", 0},
        {"learn off", 0},
        {"learn on", 0},
        {"lr 0.01", 0},
        {"lr -3", 1},
        {"reset", 0},
        {"reset states", 0},
        {"reset traces", 0},
        {"reset all", 0},
        {"reset nonsense", 64},
        {"step", 1},
        {"send --input sensors=1,2,3,4", 0},
        {"send --spikes ev=0,5", 0},
        {"target action=0.5,0.25", 0},
        {"reward 1.5", 0},
        {"export EXPORT_DIR", 0},
        {"frobnicate", 64},
        {"lr", 64},
        {"learn maybe", 64},
        {"", 64},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char args[600];
        const char *at = strstr(cases[i].args, "EXPORT_DIR");
        if (at)
            snprintf(args, sizeof(args), "%.*s%s/ctl-export", (int)(at - cases[i].args),
                     cases[i].args, r.dir);
        else
            snprintf(args, sizeof(args), "%s", cases[i].args);
        int code = ctl(&r, args);
        if (code != cases[i].code)
            fail_msg("etracectl %s: exit %d, expected %d", args, code, cases[i].code);
    }
    assert_int_equal(ctl(&r, "shutdown"), 0);
    int64_t deadline = daemon_run_now_ms() + 5000;
    int status = -1;
    while (waitpid(r.pid, &status, WNOHANG) == 0 && daemon_run_now_ms() < deadline)
        daemon_run_sleep_ms(10);
    r.pid = 0;
    /* No daemon: 2. */
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "%s --control ipc://%s/none --timeout 200 status 2>/dev/null",
             daemon_run_etracectl(), r.dir);
    int st = system(cmd);
    assert_int_equal(WEXITSTATUS(st), 2);
    daemon_run_stop(&r);
}

/* ---- hostile input ---------------------------------------------------------------------- */

static size_t
pack_input(const Etrace__Input *in, uint8_t *buf)
{
    return etrace__input__pack(in, buf);
}

/* Builds one hostile Input of kind k into buf; returns its length and the reason it must
 * be counted under (an index into the names below), or -1 for an accepted message. */
enum { R_UNDECODABLE, R_WRONG_SIZE, R_UNKNOWN_NAME, R_NON_FINITE, R_OVERSIZED, R_N };
static const char *const reason_names[R_N] = {"undecodable", "wrong size", "unknown name",
                                              "non-finite", "oversized"};

static int
hostile_input(int k, uint8_t *buf, size_t *len, unsigned *seed)
{
    Etrace__Input in = ETRACE__INPUT__INIT;
    Etrace__Frame f = ETRACE__FRAME__INIT, *fp = &f;
    Etrace__Signal s = ETRACE__SIGNAL__INIT, *sp = &s;
    Etrace__Signal__Target t = ETRACE__SIGNAL__TARGET__INIT;
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int32_t idx[3] = {0, 1, 99};
    in.frames = &fp;
    in.signals = &sp;
    f.name = "sensors";
    f.values = v;
    f.n_values = 4;
    switch (k) {
    case 0: /* random bytes */
        *len = 1 + (size_t)(rand_r(seed) % 200);
        for (size_t i = 0; i < *len; i++)
            buf[i] = (uint8_t)rand_r(seed);
        buf[0] = 0xff; /* an invalid tag: never decodable */
        return R_UNDECODABLE;
    case 1: /* a truncated valid Input */
        in.n_frames = 1;
        *len = pack_input(&in, buf) - 3;
        return R_UNDECODABLE;
    case 2: /* too few values */
        in.n_frames = 1;
        f.n_values = 3;
        break;
    case 3: /* too many values */
        in.n_frames = 1;
        f.n_values = 8;
        break;
    case 4: /* unknown input */
        in.n_frames = 1;
        f.name = "nope";
        *len = pack_input(&in, buf);
        return R_UNKNOWN_NAME;
    case 5: /* NaN */
        in.n_frames = 1;
        v[2] = NAN;
        *len = pack_input(&in, buf);
        return R_NON_FINITE;
    case 6: /* Inf */
        in.n_frames = 1;
        v[1] = -INFINITY;
        *len = pack_input(&in, buf);
        return R_NON_FINITE;
    case 7: /* spike index out of range */
        in.n_frames = 1;
        f.name = "ev";
        f.n_values = 0;
        f.spikes = idx;
        f.n_spikes = 3;
        break;
    case 8: /* spikes on an analog input */
        in.n_frames = 1;
        f.n_values = 0;
        f.spikes = idx;
        f.n_spikes = 2;
        break;
    case 9: /* values on a spikes input */
        in.n_frames = 1;
        f.name = "ev";
        f.n_values = 6;
        break;
    case 10: /* target of the wrong size */
        in.n_signals = 1;
        s.readout = "action";
        s.kind_case = ETRACE__SIGNAL__KIND_TARGET;
        s.target = &t;
        t.values = v;
        t.n_values = 3;
        break;
    case 11: /* target for an unknown readout */
        in.n_signals = 1;
        s.readout = "nope";
        s.kind_case = ETRACE__SIGNAL__KIND_TARGET;
        s.target = &t;
        t.values = v;
        t.n_values = 2;
        *len = pack_input(&in, buf);
        return R_UNKNOWN_NAME;
    case 12: /* NaN target */
        in.n_signals = 1;
        s.readout = "action";
        s.kind_case = ETRACE__SIGNAL__KIND_TARGET;
        s.target = &t;
        v[0] = NAN;
        t.values = v;
        t.n_values = 2;
        *len = pack_input(&in, buf);
        return R_NON_FINITE;
    case 13: /* Inf reward */
        in.n_signals = 1;
        s.kind_case = ETRACE__SIGNAL__KIND_REWARD;
        s.reward = INFINITY;
        *len = pack_input(&in, buf);
        return R_NON_FINITE;
    case 14: /* a signal with nothing set */
        in.n_signals = 1;
        s.readout = "action";
        *len = pack_input(&in, buf);
        return R_UNDECODABLE;
    case 15: /* a class index for an mse readout */
        in.n_signals = 1;
        s.readout = "action";
        s.kind_case = ETRACE__SIGNAL__KIND_CLASS_INDEX;
        s.class_index = 1;
        break;
    case 16: /* over limits.input_bytes (4096) */
        *len = 5000;
        memset(buf, 0, *len);
        return R_OVERSIZED;
    case 17: /* one good frame and one bad: the whole message is rejected */
    {
        Etrace__Frame g = ETRACE__FRAME__INIT, *two[2] = {&g, &f};
        g.name = "sensors";
        g.values = v;
        g.n_values = 4;
        f.name = "ev";
        f.spikes = idx;
        f.n_spikes = 3;
        f.n_values = 0;
        in.frames = two;
        in.n_frames = 2;
        *len = pack_input(&in, buf);
        return R_WRONG_SIZE;
    }
    case 18: /* a length prefix running past the end */
        buf[0] = 0x0a;
        buf[1] = 0x7f;
        buf[2] = 0x0a;
        *len = 3;
        return R_UNDECODABLE;
    default: /* valid: a frame */
        in.n_frames = 1;
        *len = pack_input(&in, buf);
        return -1;
    }
    *len = pack_input(&in, buf);
    return R_WRONG_SIZE;
}

enum { N_INPUT_KINDS = 19 };

static uint64_t
rejected(const Etrace__SocketStats *s, int reason)
{
    switch (reason) {
    case R_UNDECODABLE:
        return s->undecodable;
    case R_WRONG_SIZE:
        return s->wrong_size;
    case R_UNKNOWN_NAME:
        return s->unknown_name;
    case R_NON_FINITE:
        return s->non_finite;
    default:
        return s->oversized;
    }
}

static void
send_multipart_raw(const char *ep, int type, int n_parts)
{
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, type);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_connect(s, ep);
    for (int i = 0; i < n_parts; i++)
        zmq_send(s, "xx", 2, i + 1 < n_parts ? ZMQ_SNDMORE : 0);
    daemon_run_sleep_ms(100);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

static void
test_daemon_hostile_input_counted(void **state)
{
    struct daemon_run r;
    uint8_t buf[8192];
    uint64_t expect[R_N] = {0};
    unsigned seed = 1234;
    (void)state;
    print_message("seed %u\n", seed);
    daemon_run_start(&r, model_text,
                     "stats_period_ms: 100\nmax_msg_bytes: 65536\n"
                     "limits: {input_bytes: 4096, control_bytes: 8192}\n");
    uint64_t t0 = daemon_run_status_tick(&r);
    for (int round = 0; round < 20; round++) {
        for (int k = 0; k <= N_INPUT_KINDS; k++) { /* the last kind is a valid frame */
            size_t len = 0;
            int why = hostile_input(k, buf, &len, &seed);
            assert_int_equal(etrace_send_raw(r.c, buf, len), ETRACE_OK);
            if (why >= 0)
                expect[why]++;
        }
    }
    /* Two more kinds: a multi-part message, and one over max_msg_bytes (the transport
     * drops that connection: peer_dropped). libzmq's monitor reports a peer's own close
     * the same way, so the oversized message is sent on a connection that stays open:
     * only the drop can move the counter while it is read. */
    send_multipart_raw(r.ep[0], ZMQ_PUSH, 3);
    expect[R_UNDECODABLE]++;
    daemon_run_sleep_ms(300);
    Etrace__Stats *st = daemon_run_stats(&r);
    uint64_t dropped0 = daemon_run_sock(st, "input")->peer_dropped;
    etrace__stats__free_unpacked(st, NULL);
    void *ctx = zmq_ctx_new(), *big_s = zmq_socket(ctx, ZMQ_PUSH);
    static uint8_t big[100000];
    zmq_connect(big_s, r.ep[0]);
    zmq_send(big_s, big, sizeof(big), 0);
    daemon_run_sleep_ms(300);
    st = daemon_run_stats(&r);
    const Etrace__SocketStats *in = daemon_run_sock(st, "input");
    for (int k = 0; k < R_N; k++) {
        print_message("input %s: %llu (expected %llu)\n", reason_names[k],
                      (unsigned long long)rejected(in, k), (unsigned long long)expect[k]);
        assert_int_equal(rejected(in, k), expect[k]);
    }
    print_message("input peer_dropped %llu -> %llu with the oversized sender still open\n",
                  (unsigned long long)dropped0, (unsigned long long)in->peer_dropped);
    assert_true(in->peer_dropped > dropped0);
    int zero = 0;
    zmq_setsockopt(big_s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_close(big_s);
    zmq_ctx_term(ctx);
    assert_int_equal(in->accepted, 20);
    assert_true(st->tick > t0 + 100); /* ticks went on */
    etrace__stats__free_unpacked(st, NULL);

    /* The control socket: each kind answered with an Error naming the problem. */
    Etrace__Reply *rep = NULL;
    const uint8_t junk[] = {0xff, 0xff, 0xff};
    assert_int_equal(etrace_request_raw(r.c, junk, sizeof(junk), &rep), ETRACE_EREPLY);
    assert_int_equal(rep->error->code, ETRACE__ERROR__CODE__UNDECODABLE);
    etrace_reply_free(rep);
    const uint8_t no_cmd[] = {0x08, 0x05}; /* id 5, nothing else */
    assert_int_equal(etrace_request_raw(r.c, no_cmd, sizeof(no_cmd), &rep), ETRACE_EREPLY);
    assert_int_equal(rep->error->code, ETRACE__ERROR__CODE__UNKNOWN_COMMAND);
    etrace_reply_free(rep);
    const uint8_t reserved[] = {0x08, 0x06, 0xca, 0x01, 0x00}; /* field 25: reserved */
    assert_int_equal(etrace_request_raw(r.c, reserved, sizeof(reserved), &rep), ETRACE_EREPLY);
    assert_int_equal(rep->error->code, ETRACE__ERROR__CODE__UNKNOWN_COMMAND);
    etrace_reply_free(rep);
    const uint8_t trunc[] = {0x08, 0x07, 0x52, 0x05, 0x00}; /* status, length past the end */
    assert_int_equal(etrace_request_raw(r.c, trunc, sizeof(trunc), &rep), ETRACE_EREPLY);
    assert_int_equal(rep->error->code, ETRACE__ERROR__CODE__UNDECODABLE);
    etrace_reply_free(rep);
    static uint8_t big_req[9000];
    assert_int_equal(etrace_request_raw(r.c, big_req, sizeof(big_req), &rep), ETRACE_EREPLY);
    assert_int_equal(rep->error->code, ETRACE__ERROR__CODE__OVERSIZED);
    etrace_reply_free(rep);
    assert_int_equal(etrace_lr(r.c, INFINITY, &rep), ETRACE_EREPLY);
    etrace_reply_free(rep);
    assert_int_equal(etrace_reset(r.c, (Etrace__Reset__What)42, &rep), ETRACE_EREPLY);
    etrace_reply_free(rep);
    send_multipart_raw(r.ep[2], ZMQ_DEALER, 12); /* too many parts: dropped, counted */
    /* A flood of random requests: every one answered or counted, ticks go on. */
    for (int i = 0; i < 2000; i++) {
        uint8_t b[64];
        size_t n = 1 + (size_t)(rand_r(&seed) % 64);
        for (size_t j = 0; j < n; j++)
            b[j] = (uint8_t)rand_r(&seed);
        b[0] = 0xff;
        assert_int_equal(etrace_request_raw(r.c, b, n, &rep), ETRACE_EREPLY);
        etrace_reply_free(rep);
    }
    st = daemon_run_stats(&r);
    const Etrace__SocketStats *cs = daemon_run_sock(st, "control");
    print_message("control: undecodable %llu unknown_command %llu oversized %llu bad_argument "
                  "%llu non_finite %llu\n",
                  (unsigned long long)cs->undecodable, (unsigned long long)cs->unknown_command,
                  (unsigned long long)cs->oversized, (unsigned long long)cs->bad_argument,
                  (unsigned long long)cs->non_finite);
    assert_int_equal(cs->undecodable, 2 + 1 + 2000);
    assert_int_equal(cs->unknown_command, 2);
    assert_int_equal(cs->oversized, 1);
    assert_int_equal(cs->bad_argument, 1);
    assert_int_equal(cs->non_finite, 1);
    etrace__stats__free_unpacked(st, NULL);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* ---- memory ---------------------------------------------------------------------------------- */

static void
test_daemon_memory_flat(void **state)
{
    struct daemon_run r;
    uint8_t buf[8192];
    unsigned seed = 99;
    long rss10k = 0;
    (void)state;
    daemon_run_start(&r, model_text, "stats_period_ms: 100\nlimits: {input_bytes: 4096}\n");
    for (int i = 0; i < 100000; i++) {
        size_t len;
        hostile_input(i % (N_INPUT_KINDS + 3), buf, &len, &seed);
        assert_int_equal(etrace_send_raw(r.c, buf, len), ETRACE_OK);
        if (i % 500 == 499) /* a steady stream: queues stay short, so RSS shows leaks only */
            daemon_run_sleep_ms(5);
        if (i == 10000) {
            daemon_run_sleep_ms(300);
            rss10k = daemon_run_rss_kib(r.pid);
        }
    }
    daemon_run_sleep_ms(500);
    long rss100k = daemon_run_rss_kib(r.pid);
    print_message("RSS at 10,000: %ld KiB, at 100,000: %ld KiB\n", rss10k, rss100k);
    if (!daemon_run_sanitized())
        assert_true(rss100k - rss10k < 1024);

    /* Subscribers that connect and vanish. */
    long before = daemon_run_rss_kib(r.pid);
    for (int i = 0; i < 300; i++) {
        etrace_sub_t *s = etrace_sub_new(r.ep[i % 2 ? 1 : 3], i % 2 ? "" : "stats");
        assert_non_null(s);
        daemon_run_sleep_ms(2);
        etrace_sub_free(&s);
    }
    daemon_run_sleep_ms(500);
    long after = daemon_run_rss_kib(r.pid);
    print_message("RSS before 300 vanishing subscribers: %ld KiB, after: %ld KiB\n", before, after);
    if (!daemon_run_sanitized())
        assert_true(after - before < 1024);
    assert_int_equal(daemon_run_stop(&r), 0); /* under ASan: LeakSanitizer found nothing */
}

/* ---- lockstep equals `etraced run` ------------------------------------------------------ */

static void
write_npy_f32(const char *path, const float *v, int rows, int cols)
{
    char header[128];
    int hl = snprintf(header, sizeof(header),
                      "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols);
    int total = 10 + hl + 1, pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint16_t h = (uint16_t)(hl + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fwrite(&h, 2, 1, f);
    fwrite(header, 1, (size_t)hl, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    fwrite(v, sizeof(float), (size_t)rows * (size_t)cols, f);
    fclose(f);
}

enum { N_STEPS = 1000 };

static void
test_daemon_lockstep_equals_run(void **state)
{
    struct daemon_run r;
    static float in[N_STEPS][4], tgt[N_STEPS][2], got[N_STEPS][2], ref[N_STEPS][2];
    (void)state;
    for (int t = 0; t < N_STEPS; t++) {
        for (int k = 0; k < 4; k++)
            in[t][k] = sinf((float)t * 0.01f * (float)(k + 1)) + 0.5f;
        tgt[t][0] = 0.3f;
        tgt[t][1] = -0.2f;
    }
    daemon_run_start(&r, model_text, "clock: lockstep\nstats_period_ms: 100\n");
    int64_t t0 = daemon_run_now_ms();
    for (int t = 0; t < N_STEPS; t++) {
        Etrace__Reply *rep = NULL;
        assert_int_equal(daemon_run_step_target(&r, "sensors", in[t], 4, "action", tgt[t], 2, &rep),
                         ETRACE_OK);
        assert_int_equal(rep->step->n_outputs, 1);
        assert_int_equal(rep->step->outputs[0]->tick, t);
        assert_int_equal(rep->step->outputs[0]->n_values, 2);
        memcpy(got[t], rep->step->outputs[0]->values, sizeof(got[t]));
        etrace_reply_free(rep);
    }
    print_message("lockstep: %d steps in %lld ms\n", N_STEPS,
                  (long long)(daemon_run_now_ms() - t0));
    /* Step errors in lockstep: named problems. */
    {
        Etrace__Input msg = ETRACE__INPUT__INIT;
        Etrace__Frame f = ETRACE__FRAME__INIT, *fp = &f;
        f.name = "sensors";
        f.values = in[0];
        f.n_values = 3;
        msg.frames = &fp;
        msg.n_frames = 1;
        Etrace__Reply *rep = NULL;
        assert_int_equal(etrace_step(r.c, &msg, 0, &rep), ETRACE_EREPLY);
        assert_int_equal(rep->error->code, ETRACE__ERROR__CODE__WRONG_SIZE);
        assert_non_null(strstr(rep->error->message, "sensors"));
        etrace_reply_free(rep);
    }
    char model[400], inp[400], tg[400], out[400], cmd[8192], path[500];
    snprintf(model, sizeof(model), "%s/model.yaml", r.dir);
    snprintf(inp, sizeof(inp), "%s/in.npy", r.dir);
    snprintf(tg, sizeof(tg), "%s/tgt.npy", r.dir);
    snprintf(out, sizeof(out), "%s/run", r.dir);
    write_npy_f32(inp, &in[0][0], N_STEPS, 4);
    write_npy_f32(tg, &tgt[0][0], N_STEPS, 2);
    /* The spikes input gets no events: an all-zero file. */
    static float ev[N_STEPS][6];
    char evp[400];
    snprintf(evp, sizeof(evp), "%s/ev.npy", r.dir);
    write_npy_f32(evp, &ev[0][0], N_STEPS, 6);
    snprintf(cmd, sizeof(cmd),
             "%s run %s --input sensors=%s --input ev=%s --target action=%s --out %s "
             ">/dev/null 2>&1",
             daemon_run_etraced(), model, inp, evp, tg, out);
    int st = system(cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        daemon_run_stop(&r);
        skip(); /* etraced run is not available in this build */
    }
    snprintf(path, sizeof(path), "%s/outputs/action.npy", out);
    assert_int_equal(daemon_run_read_npy_f32(path, &ref[0][0], N_STEPS * 2), 0);
    int n_diff = 0;
    for (int t = 0; t < N_STEPS; t++)
        for (int k = 0; k < 2; k++)
            if (memcmp(&got[t][k], &ref[t][k], sizeof(float)))
                if (n_diff++ < 5)
                    print_message("tick %d [%d]: lockstep %.9g, run %.9g\n", t, k,
                                  (double)got[t][k], (double)ref[t][k]);
    assert_int_equal(n_diff, 0);
    assert_int_equal(daemon_run_stop(&r), 0);
}

int
main(int argc, char **argv)
{
    (void)argc;
    daemon_run_find_binaries(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_daemon_control_library, daemon_run_teardown),
        cmocka_unit_test_teardown(test_daemon_control_etracectl, daemon_run_teardown),
        cmocka_unit_test_teardown(test_daemon_timer_streams_without_gaps, daemon_run_teardown),
        cmocka_unit_test_teardown(test_daemon_hostile_input_counted, daemon_run_teardown),
        cmocka_unit_test_teardown(test_daemon_memory_flat, daemon_run_teardown),
        cmocka_unit_test_teardown(test_daemon_lockstep_equals_run, daemon_run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
