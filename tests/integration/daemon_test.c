/* Integration tests of the daemon (issue 5): the real build/etraced on private ipc paths in
 * a temporary directory, driven through libetrace-client and build/etracectl, each with a
 * time bound, every daemon stopped and its directory removed.
 * Environment: ETRACED and ETRACECTL override the binaries (default: next to this test,
 * BUILD/etraced and BUILD/etracectl). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
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
    /* Until every count has arrived (the loop reads the input socket at its own pace: a
     * loaded machine takes longer), bounded; then each is checked exactly. */
    const Etrace__SocketStats *in = NULL;
    for (int64_t end = daemon_run_now_ms() + 20000;; daemon_run_sleep_ms(100)) {
        st = daemon_run_stats(&r);
        in = daemon_run_sock(st, "input");
        int settled = in->peer_dropped > dropped0 && in->accepted == 20 && st->tick > t0 + 100;
        for (int k = 0; k < R_N; k++)
            settled &= rejected(in, k) == expect[k];
        if (settled || daemon_run_now_ms() > end)
            break;
        etrace__stats__free_unpacked(st, NULL);
    }
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
    uint64_t t_before_flood = st->tick;
    etrace__stats__free_unpacked(st, NULL);
    daemon_run_sleep_ms(100);
    assert_true(daemon_run_status_tick(&r) > t_before_flood + 50); /* ticks went on */
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
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("'%s' failed", cmd);
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

/* ---- helpers of the tests below ------------------------------------------------------ */

/* Runs the shell command line cmd, its stdout captured into out[len] (the rest discarded).
 * Returns its exit status, or -1 when it did not exit. */
static int
run_capture(const char *cmd, char *out, size_t len)
{
    char sink[4096];
    size_t n = 0, k;
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    while (n + 1 < len && (k = fread(out + n, 1, len - 1 - n, f)) > 0)
        n += k;
    out[n] = '\0';
    while (fread(sink, 1, sizeof(sink), f) > 0)
        ;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* etracectl on r's endpoints (--config) with args: stdout into out[len], stderr too when
 * with_stderr. Returns its exit status. */
static int
ctl_capture(const struct daemon_run *r, const char *args, int with_stderr, char *out, size_t len)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "%s --config %s --timeout 5000 %s %s", daemon_run_etracectl(),
             r->cfg, args, with_stderr ? "2>&1" : "2>/dev/null");
    return run_capture(cmd, out, len);
}

/* Whether s[n] is one JSON object: it opens with '{' and its matching '}' is the last byte,
 * braces and brackets balance outside strings, strings are closed, escapes whole and no raw
 * control characters. A structural check; python3's json module checks the same text. */
static int
json_object_ok(const char *s, size_t n)
{
    char open[64];
    int depth = 0, in_str = 0;
    if (n < 2 || s[0] != '{' || s[n - 1] != '}')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\' && ++i >= n)
                return 0;
            else if (ch == '"')
                in_str = 0;
            else if ((unsigned char)ch < 0x20)
                return 0;
            continue;
        }
        if (ch == '"') {
            in_str = 1;
        } else if (ch == '{' || ch == '[') {
            if (depth == (int)sizeof(open))
                return 0;
            open[depth++] = ch;
        } else if (ch == '}' || ch == ']') {
            if (!depth || open[--depth] != (ch == '}' ? '{' : '['))
                return 0;
            if (!depth && i != n - 1)
                return 0; /* a second value after the object */
        }
    }
    return !depth && !in_str;
}

/* Fails the test unless every non-empty line of text is one JSON object (json_object_ok,
 * and json.loads when /usr/bin/python3 is there) and each of keys (NULL-terminated) occurs
 * in text. Returns the number of lines. */
static int
check_json_lines(const struct daemon_run *r, const char *what, const char *text,
                 const char *const *keys)
{
    int lines = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n && !json_object_ok(p, n))
            fail_msg("%s: not one JSON object: %.*s", what, (int)n, p);
        lines += n > 0;
        p += n + (nl != NULL);
    }
    for (; keys && *keys; keys++)
        if (!strstr(text, *keys))
            fail_msg("%s: no %s in %s", what, *keys, text);
    if (access("/usr/bin/python3", X_OK) == 0) {
        char path[600], cmd[1400];
        snprintf(path, sizeof(path), "%s/json-lines.txt", r->dir);
        daemon_run_write_file(path, text);
        snprintf(cmd, sizeof(cmd),
                 "/usr/bin/python3 -c 'import json,sys; "
                 "assert all(isinstance(json.loads(l), dict) for l in open(sys.argv[1]) "
                 "if l.strip())' %s",
                 path);
        daemon_run_cmd(cmd, 0);
    }
    return lines;
}

/* The line of text that starts with `key` (up to its newline, in a static buffer), or "". */
static const char *
text_line(const char *text, const char *key)
{
    static char line[512];
    size_t kl = strlen(key);
    line[0] = '\0';
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncmp(p, key, kl)) {
            size_t n = strcspn(p, "\n");
            snprintf(line, sizeof(line), "%.*s", (int)n, p);
            break;
        }
    }
    return line;
}

/* ---- skipped periods (DESIGN §5.3) ----------------------------------------------------- */

static void
test_daemon_timer_skips_without_burst(void **state)
{
    struct daemon_run r;
    (void)state;
    daemon_run_start(&r, model_text, "stats_period_ms: 20\n");
    daemon_run_sleep_ms(200);
    Etrace__Stats *st0 = daemon_run_stats(&r);
    int64_t t0_ms = daemon_run_now_ms();
    uint64_t t0 = daemon_run_status_tick(&r);
    int64_t stop_ms = daemon_run_now_ms();
    assert_int_equal(kill(r.pid, SIGSTOP), 0);
    daemon_run_sleep_ms(300);
    assert_int_equal(kill(r.pid, SIGCONT), 0);
    int64_t cont_ms = daemon_run_now_ms();
    daemon_run_sleep_ms(50);
    uint64_t t1 = daemon_run_status_tick(&r);
    /* The time the daemon could tick between the two readings: before SIGSTOP and after
     * SIGCONT. At 1 kHz that many ticks, give or take; a burst would add ~300. */
    int64_t run_ms = (stop_ms - t0_ms) + (daemon_run_now_ms() - cont_ms);
    Etrace__Stats *st1 = daemon_run_stats(&r);
    uint64_t skipped = st1->skipped - st0->skipped;
    int64_t gap0 = (int64_t)(st0->period_index - st0->tick);
    int64_t gap1 = (int64_t)(st1->period_index - st1->tick);
    print_message("SIGSTOP for %lld ms: skipped +%llu (total %llu), period_index - tick %lld -> "
                  "%lld; %llu ticks in %lld ms of running around it (%lld ms after SIGCONT); "
                  "overruns %llu -> %llu\n",
                  (long long)(cont_ms - stop_ms), (unsigned long long)skipped,
                  (unsigned long long)st1->skipped, (long long)gap0, (long long)gap1,
                  (unsigned long long)(t1 - t0), (long long)run_ms,
                  (long long)(run_ms - (stop_ms - t0_ms)), (unsigned long long)st0->overruns,
                  (unsigned long long)st1->overruns);
    assert_true(skipped >= 200);
    assert_true((int64_t)skipped <= cont_ms - stop_ms + 100);
    /* period_index counts periods, tick counts ticks run: they differ by the skips. */
    assert_int_equal(gap1 - gap0, (int64_t)skipped);
    assert_int_equal(gap1, (int64_t)st1->skipped); /* from start: no pause, no resume */
    /* No burst: about one tick per millisecond of running, not hundreds at SIGCONT. */
    assert_true(t1 > t0);
    assert_true((int64_t)(t1 - t0) <= run_ms + 30);
    assert_true(t1 - t0 < 80 + (uint64_t)(stop_ms - t0_ms));
    etrace__stats__free_unpacked(st0, NULL);
    etrace__stats__free_unpacked(st1, NULL);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* ---- period_us other than the model's dt (DESIGN §5.3, §7 status) ------------------- */

static void
test_daemon_period_differs_from_dt(void **state)
{
    struct daemon_run r;
    Etrace__Reply *rep = NULL;
    char out[8192];
    (void)state;
    daemon_run_start(&r, model_text, "period_us: 2000\nstats_period_ms: 100\n");
    const char *lg = daemon_run_log_text(&r);
    const char *warn = strstr(lg, "warning: period_us 2000");
    if (!warn)
        fail_msg("no warning about period_us 2000 in the log:\n%s", lg);
    print_message("log: %.*s\n", (int)strcspn(warn, "\n"), warn);
    assert_int_equal(etrace_status(r.c, &rep), ETRACE_OK);
    assert_int_equal(rep->status->period_ns, 2000000);
    assert_int_equal(rep->status->dt_ns, 1000000);
    etrace_reply_free(rep);
    /* etracectl status prints both. */
    assert_int_equal(ctl_capture(&r, "status", 0, out, sizeof(out)), 0);
    const char *line = text_line(out, "period ");
    double period_us = 0.0, dt_us = 0.0;
    print_message("etracectl status: %s\n", line);
    assert_int_equal(sscanf(line, "period %lf us (dt %lf us)", &period_us, &dt_us), 2);
    assert_true(period_us == 2000.0 && dt_us == 1000.0);
    assert_int_equal(ctl_capture(&r, "--json status", 0, out, sizeof(out)), 0);
    static const char *const keys[] = {"\"periodNs\":\"2000000\"", "\"dtNs\":\"1000000\"", NULL};
    check_json_lines(&r, "--json status", out, keys);
    /* Ticks at 1 / period: ~500 per second, timed by the daemon's own clock (uptime_ns in
     * the same Status as the counters), so that how long a reply took to reach us under
     * load does not count. Ticks may be skipped under load (a sanitizer build on a busy
     * machine), never run faster than the periods. */
    assert_int_equal(etrace_status(r.c, &rep), ETRACE_OK);
    uint64_t tick0 = rep->status->tick, pi0 = rep->status->period_index;
    int64_t up0 = rep->status->uptime_ns;
    etrace_reply_free(rep);
    daemon_run_sleep_ms(1000);
    assert_int_equal(etrace_status(r.c, &rep), ETRACE_OK);
    double s = (double)(rep->status->uptime_ns - up0) / 1e9;
    double tick_rate = (double)(rep->status->tick - tick0) / s;
    double period_rate = (double)(rep->status->period_index - pi0) / s;
    etrace_reply_free(rep);
    Etrace__Stats *st = daemon_run_stats(&r);
    print_message("period 2000 us: %.0f ticks/s, %.0f periods/s over %.3f s of the daemon's "
                  "clock; Stats period %lld ns, skipped %llu\n",
                  tick_rate, period_rate, s, (long long)st->period_ns,
                  (unsigned long long)st->skipped);
    assert_int_equal(st->period_ns, 2000000);
    etrace__stats__free_unpacked(st, NULL);
    assert_true(s > 0.5);
    assert_true(period_rate > 450.0 && period_rate < 550.0);
    assert_true(tick_rate > 0.0 && tick_rate <= period_rate + 1.0 / s);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* ---- etraced --model: default endpoints, RUN, SIGTERM and SIGINT (DESIGN §5.6) ------- */

static void
test_daemon_defaults_and_signals(void **state)
{
    static const char *const names[4] = {"input", "output", "control", "stats"};
    /* SIGTERM and SIGINT with RUN = $XDG_RUNTIME_DIR/etraced (the second one found with
     * mode 0755: made 0700), then RUN = $RUNTIME_DIRECTORY (systemd), which wins. */
    static const struct {
        int sig;
        const char *sig_name;
        int precreate, runtime_directory;
    } rounds[] = {{SIGTERM, "SIGTERM", 0, 0}, {SIGINT, "SIGINT", 1, 0}, {SIGTERM, "SIGTERM", 0, 1}};
    char saved_rd[512] = "";
    int had_rd = getenv("RUNTIME_DIRECTORY") != NULL;
    (void)state;
    if (had_rd)
        snprintf(saved_rd, sizeof(saved_rd), "%s", getenv("RUNTIME_DIRECTORY"));
    for (size_t k = 0; k < sizeof(rounds) / sizeof(rounds[0]); k++) {
        struct daemon_run r;
        char run[600], path[700], eps_buf[4][700], out[8192], cmd[2000];
        const char *eps[4];
        struct stat st;
        daemon_run_prepare(&r, model_text);
        setenv("XDG_RUNTIME_DIR", r.dir, 1);
        snprintf(path, sizeof(path), "%s/state", r.dir);
        setenv("XDG_STATE_HOME", path, 1);
        if (rounds[k].runtime_directory) {
            snprintf(run, sizeof(run), "%s/rt", r.dir);
            setenv("RUNTIME_DIRECTORY", run, 1);
        } else {
            snprintf(run, sizeof(run), "%s/etraced", r.dir);
            unsetenv("RUNTIME_DIRECTORY");
        }
        if (rounds[k].precreate) {
            assert_int_equal(mkdir(run, 0755), 0);
            assert_int_equal(chmod(run, 0755), 0);
        }
        for (int i = 0; i < 4; i++) {
            snprintf(eps_buf[i], sizeof(eps_buf[i]), "ipc://%s/%s", run, names[i]);
            eps[i] = eps_buf[i];
        }
        if (daemon_run_launch_model(&r, eps)) {
            daemon_run_rm_tree(r.dir);
            fail_msg("etraced --model exited at start-up");
        }
        assert_int_equal(stat(run, &st), 0);
        if (!S_ISDIR(st.st_mode) || (st.st_mode & 0777) != 0700)
            fail_msg("RUN %s: mode %o, expected a directory with mode 0700", run,
                     (unsigned)(st.st_mode & 07777));
        for (int i = 0; i < 4; i++) {
            snprintf(path, sizeof(path), "%s/%s", run, names[i]);
            if (stat(path, &st) || !S_ISSOCK(st.st_mode))
                fail_msg("no ipc socket %s", path);
        }
        /* etracectl with no endpoint flag and the same environment finds this daemon. */
        snprintf(cmd, sizeof(cmd), "%s --timeout 2000 status 2>&1", daemon_run_etracectl());
        int rc = run_capture(cmd, out, sizeof(out));
        if (rc != 0)
            fail_msg("etracectl status on the default endpoints: exit %d: %s", rc, out);
        unsigned pid = 0;
        assert_int_equal(sscanf(text_line(out, "pid "), "pid %u", &pid), 1);
        assert_int_equal(pid, (unsigned)r.pid);
        assert_non_null(strstr(text_line(out, "model "), "itest"));
        if (k == 0) { /* and the default stats socket */
            snprintf(cmd, sizeof(cmd), "%s --json stats --watch --count 1 2>&1",
                     daemon_run_etracectl());
            assert_int_equal(run_capture(cmd, out, sizeof(out)), 0);
            static const char *const skeys[] = {"\"tick\"", "\"projections\"", NULL};
            check_json_lines(&r, "default stats socket", out, skeys);
        }
        assert_int_equal(kill(r.pid, rounds[k].sig), 0);
        int status = -1;
        int64_t deadline = daemon_run_now_ms() + 10000;
        while (waitpid(r.pid, &status, WNOHANG) == 0) {
            if (daemon_run_now_ms() > deadline)
                fail_msg("etraced did not exit within 10 s of %s", rounds[k].sig_name);
            daemon_run_sleep_ms(5);
        }
        r.pid = 0;
        const char *lg = daemon_run_log_text(&r);
        print_message("%s, RUN %s%s: mode 0700, etracectl found pid %u; exit status %d; log: "
                      "%.*s\n",
                      rounds[k].sig_name,
                      rounds[k].runtime_directory ? "$RUNTIME_DIRECTORY"
                                                  : "$XDG_RUNTIME_DIR/etraced",
                      rounds[k].precreate ? " (was 0755)" : "", pid,
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                      (int)strcspn(strstr(lg, "SIG") ? strstr(lg, "SIG") : "", "\n"),
                      strstr(lg, "SIG") ? strstr(lg, "SIG") : "");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("%s: wait status %#x, expected exit 0", rounds[k].sig_name, status);
        for (int i = 0; i < 4; i++) {
            snprintf(path, sizeof(path), "%s/%s", run, names[i]);
            if (lstat(path, &st) == 0)
                fail_msg("%s: the ipc file %s is still there", rounds[k].sig_name, path);
        }
        daemon_run_stop(&r);
    }
    if (had_rd)
        setenv("RUNTIME_DIRECTORY", saved_rd, 1);
    else
        unsetenv("RUNTIME_DIRECTORY");
}

/* ---- etracectl in lockstep: success and error paths (DESIGN §7) ----------------------- */

/* Whether the three parameter files under a/params and b/params are equal byte for byte. */
static int
params_same(const char *a, const char *b)
{
    static const char *const files[] = {"w_in.weight", "w_in.bias", "w_out.weight"};
    int same = 1;
    for (int i = 0; i < 3; i++) {
        char fa[800], fb[800];
        snprintf(fa, sizeof(fa), "%s/params/%s.npy", a, files[i]);
        snprintf(fb, sizeof(fb), "%s/params/%s.npy", b, files[i]);
        same &= daemon_run_same_file(fa, fb);
    }
    return same;
}

/* `etracectl export DIR`; fails the test unless it exits 0. */
static void
ctl_export(const struct daemon_run *r, const char *dir)
{
    char args[800], out[4096];
    snprintf(args, sizeof(args), "export %s", dir);
    if (ctl_capture(r, args, 1, out, sizeof(out)))
        fail_msg("etracectl %s: %s", args, out);
}

/* Runs etracectl args and fails the test unless it exits `want` and its output (stdout and
 * stderr) contains `has` (NULL: anything). Returns the output (static, overwritten). */
static const char *
ctl_expect(const struct daemon_run *r, const char *args, int want, const char *has)
{
    static char out[65536];
    int rc = ctl_capture(r, args, 1, out, sizeof(out));
    if (rc != want || (has && !strstr(out, has)))
        fail_msg("etracectl %s: exit %d (expected %d), output without '%s':\n%s", args, rc, want,
                 has ? has : "", out);
    return out;
}

static void
test_daemon_etracectl_lockstep(void **state)
{
    struct daemon_run r;
    char args[2000], path[800], init[700], a[700], b[700], c[700];
    static char out[65536];
    (void)state;
    /* The JSON check fails on what is not one object. */
    static const char *const not_json[] = {"{\"a\":[1}", "{\"a\":1}{", "{\"a\":\"x}", "[1]",
                                           "{\"a\":\"\x01\"}"};
    for (int i = 0; i < 5; i++)
        assert_false(json_object_ok(not_json[i], strlen(not_json[i])));
    static const char good_json[] = "{\"a\":[1,{\"b\":\"}\\\"\"}]}";
    assert_true(json_object_ok(good_json, strlen(good_json)));

    daemon_run_start(&r, model_text, "clock: lockstep\nstats_period_ms: 50\n");
    snprintf(init, sizeof(init), "%s/init", r.dir);
    snprintf(a, sizeof(a), "%s/a", r.dir);
    snprintf(b, sizeof(b), "%s/b", r.dir);
    snprintf(c, sizeof(c), "%s/c", r.dir);
    ctl_export(&r, init);

    /* step prints each readout's Output: its name, tick, values and loss, the mean squared
     * error of those values against the target. */
    double max_err = 0.0;
    for (int t = 0; t < 20; t++) {
        snprintf(args, sizeof(args),
                 "step --input sensors=%.3f,0.8,1.1,0.9 --spikes ev=%d --target action=0.3,-0.2",
                 1.0 + 0.02 * t, t % 6);
        const char *o = ctl_expect(&r, args, 0, "action tick ");
        unsigned long long tick = 0;
        float v0, v1;
        double loss;
        if (sscanf(o, "action tick %llu: %f %f  loss %lf", &tick, &v0, &v1, &loss) != 4)
            fail_msg("etracectl step printed: %s", o);
        assert_int_equal(tick, (unsigned long long)t);
        double want = 0.5 * (((double)v0 - 0.3) * ((double)v0 - 0.3) +
                             ((double)v1 + 0.2) * ((double)v1 + 0.2));
        assert_true(isfinite(v0) && isfinite(v1) && loss > 0.0);
        if (fabs(loss - want) > max_err)
            max_err = fabs(loss - want);
        if (t == 19)
            print_message("etracectl step: %.*s\n", (int)strcspn(o, "\n"), o);
    }
    print_message("20 steps: the printed loss is the mse of the printed values within %.2g\n",
                  max_err);
    assert_true(max_err < 1e-5);
    assert_int_equal(
        ctl_capture(&r, "--json step --input sensors=1,0.8,1.1,0.9 --target action=0.3,-0.2", 0,
                    out, sizeof(out)),
        0);
    static const char *const step_keys[] = {
        "\"step\"", "\"outputs\"", "\"readout\":\"action\"", "\"tick\":\"20\"", "\"loss\"", NULL};
    assert_int_equal(check_json_lines(&r, "--json step", out, step_keys), 1);

    /* load --keep-weights keeps the learned weights; load without it starts from the init. */
    ctl_export(&r, a);
    assert_false(params_same(init, a)); /* 21 steps with targets moved them */
    snprintf(path, sizeof(path), "%s/model.yaml", r.dir);
    snprintf(args, sizeof(args), "load %s --keep-weights", path);
    ctl_expect(&r, args, 0, "itest");
    ctl_export(&r, b);
    assert_true(params_same(a, b));
    snprintf(args, sizeof(args), "--json load %s", path);
    assert_int_equal(ctl_capture(&r, args, 0, out, sizeof(out)), 0);
    static const char *const load_keys[] = {"\"op\"", "\"modelName\":\"itest\"", NULL};
    check_json_lines(&r, "--json load", out, load_keys);
    ctl_export(&r, c);
    assert_true(params_same(init, c));

    /* checkpoint NAME writes NAME.ckpt in the state directory; restore takes that name. */
    for (int t = 0; t < 3; t++)
        ctl_expect(&r, "step --input sensors=1,0.8,1.1,0.9 --target action=0.3,-0.2", 0, NULL);
    const char *o = ctl_expect(&r, "checkpoint c1", 0, NULL);
    char name[300] = "";
    unsigned long long ck_tick = 0;
    assert_int_equal(sscanf(text_line(o, "name "), "name %299s", name), 1);
    assert_int_equal(sscanf(text_line(o, "tick "), "tick %llu", &ck_tick), 1);
    print_message("etracectl checkpoint c1: name %s, tick %llu\n", name, ck_tick);
    assert_int_equal(ck_tick, 24);
    snprintf(path, sizeof(path), "%s/etraced/%s", r.dir, name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    ctl_expect(&r, "step --input sensors=1,0.8,1.1,0.9", 0, "action tick 24");
    int bare = ctl_capture(&r, "restore c1", 1, out, sizeof(out));
    print_message("etracectl restore c1 (no suffix): exit %d: %.*s\n", bare,
                  (int)strcspn(out, "\n"), out);
    snprintf(args, sizeof(args), "restore %s", name);
    ctl_expect(&r, args, 0, name);
    assert_int_equal(ctl_capture(&r, "--json status", 0, out, sizeof(out)), 0);
    static const char *const status_keys[] = {
        "\"status\"",      "\"modelName\":\"itest\"", "\"clock\":\"LOCKSTEP\"",
        "\"tick\":\"24\"", "\"periodIndex\":\"24\"",  NULL};
    assert_int_equal(check_json_lines(&r, "--json status", out, status_keys), 1);
    snprintf(args, sizeof(args), "--json restore %s", name);
    assert_int_equal(ctl_capture(&r, args, 0, out, sizeof(out)), 0);
    static const char *const restore_keys[] = {"\"op\"", "\"name\":\"c1.ckpt\"", NULL};
    check_json_lines(&r, "--json restore", out, restore_keys);

    /* record start NAME / record stop: the file is there with the bytes the reply names. */
    ctl_expect(&r, "record start rec1", 0, "rec1");
    for (int t = 0; t < 2; t++)
        ctl_expect(&r, "step --input sensors=1,0.8,1.1,0.9 --target action=0.3,-0.2", 0, NULL);
    o = ctl_expect(&r, "record stop", 0, NULL);
    unsigned long long events = 0, bytes = 0;
    assert_int_equal(sscanf(text_line(o, "events "), "events %llu", &events), 1);
    assert_int_equal(sscanf(text_line(o, "bytes "), "bytes %llu", &bytes), 1);
    snprintf(path, sizeof(path), "%s/etraced/rec1", r.dir);
    assert_int_equal(stat(path, &st), 0);
    print_message("etracectl record stop: %llu events, %llu bytes; the file has %lld\n", events,
                  bytes, (long long)st.st_size);
    assert_true(events >= 3); /* the snapshot and two inputs */
    assert_int_equal((unsigned long long)st.st_size, bytes);

    /* stats as text: the daemon's own line (uptime, resources, output wake-ups). */
    o = ctl_expect(&r, "stats", 0, "output_wakes");
    unsigned long long ticks_total = 0;
    assert_int_equal(
        sscanf(strstr(text_line(o, "daemon "), "ticks_total "), "ticks_total %llu", &ticks_total),
        1);
    assert_true(ticks_total >= 26); /* 24 before the restore, 2 after */

    /* --json status and stats: one object per line. */
    assert_int_equal(ctl_capture(&r, "--json stats", 0, out, sizeof(out)), 0);
    static const char *const stats_keys[] = {"\"stats\"", "\"tick\"",  "\"projections\"",
                                             "\"wNorm\"", "\"cells\"", NULL};
    assert_int_equal(check_json_lines(&r, "--json stats", out, stats_keys), 1);

    /* Error paths: exit 1 and a message naming the problem. */
    snprintf(args, sizeof(args), "load %s/missing.yaml", r.dir);
    print_message("load missing: %s", ctl_expect(&r, args, 1, "missing.yaml"));
    print_message("restore ../x: %s", ctl_expect(&r, "restore ../x", 1, "../x"));
    ctl_expect(&r, "checkpoint a/b", 1, "a/b");
    ctl_expect(&r, "record start ../x", 1, "../x");
    print_message("record stop: %s", ctl_expect(&r, "record stop", 1, "not recording"));
    print_message("step: %s", ctl_expect(&r, "step --input sensors=1,2,3", 1, "sensors"));
    assert_int_equal(ctl_capture(&r, "--json step --input sensors=1,2,3", 0, out, sizeof(out)), 1);
    static const char *const err_keys[] = {"\"error\"", "\"WRONG_SIZE\"", "sensors", NULL};
    check_json_lines(&r, "--json step (error)", out, err_keys);
    assert_int_equal(ctl_capture(&r, "--json restore ../x", 0, out, sizeof(out)), 1);
    static const char *const err2_keys[] = {"\"error\"", "\"BAD_ARGUMENT\"", NULL};
    check_json_lines(&r, "--json restore (error)", out, err2_keys);
    assert_int_equal(daemon_run_status_tick(&r),
                     26); /* restored to 24, 2 steps; no error moved it */
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* ---- Stats values (DESIGN §5.5) --------------------------------------------------------- */

enum { MAX_PARAMS = 2048 };

/* Projection `proj`'s parameters (weight, then bias) from an export, into v[MAX_PARAMS].
 * Returns the count. */
static size_t
export_proj(const Etrace__ExportResult *ex, const char *proj, double *v)
{
    size_t n = 0, pl = strlen(proj);
    static const char *const parts[2] = {".weight", ".bias"};
    for (int part = 0; part < 2; part++) {
        for (size_t i = 0; i < ex->n_tensors; i++) {
            const Etrace__Tensor *t = ex->tensors[i];
            if (strncmp(t->name, proj, pl) || strcmp(t->name + pl, parts[part]))
                continue;
            for (size_t k = 0; k < t->n_values && n < MAX_PARAMS; k++)
                v[n++] = (double)t->values[k];
            for (size_t k = 0; k < t->n_values64 && n < MAX_PARAMS; k++)
                v[n++] = t->values64[k];
        }
    }
    return n;
}

/* The parameters of w_in and w_out as r holds them now. */
static void
export_params(struct daemon_run *r, double v[2][MAX_PARAMS], size_t n[2])
{
    static const char *const projs[2] = {"w_in", "w_out"};
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_export(r->c, &rep), ETRACE_OK);
    for (int p = 0; p < 2; p++)
        n[p] = export_proj(rep->export, projs[p], v[p]);
    etrace_reply_free(rep);
}

/* ||a - b|| (b NULL: ||a||) over n values. */
static double
norm_diff(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - (b ? b[i] : 0.0);
        s += d * d;
    }
    return sqrt(s);
}

/* Whether x is y within relative tolerance rel. */
static int
close_to(double x, double y, double rel)
{
    return fabs(x - y) <= rel * fmax(fabs(x), fabs(y)) + 1e-12;
}

/* One lockstep step: an analog frame, a spike and a target. Returns the tick's loss. */
static double
step_spiking(struct daemon_run *r, int t)
{
    float x[4] = {1.0f + 0.5f * sinf(0.1f * (float)t), 0.8f, 1.1f + 0.3f * cosf(0.07f * (float)t),
                  0.9f};
    float y[2] = {0.3f, -0.2f};
    int32_t ev = t % 6;
    Etrace__Input in = ETRACE__INPUT__INIT;
    Etrace__Frame fx = ETRACE__FRAME__INIT, fe = ETRACE__FRAME__INIT, *fp[2] = {&fx, &fe};
    Etrace__Signal s = ETRACE__SIGNAL__INIT, *sp = &s;
    Etrace__Signal__Target tg = ETRACE__SIGNAL__TARGET__INIT;
    Etrace__Reply *rep = NULL;
    fx.name = "sensors";
    fx.values = x;
    fx.n_values = 4;
    fe.name = "ev";
    fe.spikes = &ev;
    fe.n_spikes = 1;
    tg.values = y;
    tg.n_values = 2;
    s.readout = "action";
    s.kind_case = ETRACE__SIGNAL__KIND_TARGET;
    s.target = &tg;
    in.frames = fp;
    in.n_frames = 2;
    in.signals = &sp;
    in.n_signals = 1;
    assert_int_equal(etrace_step(r->c, &in, 0, &rep), ETRACE_OK);
    double loss = rep->step->outputs[0]->loss;
    etrace_reply_free(rep);
    return loss;
}

enum { N_STATS_STEPS = 200 };

static void
test_daemon_stats_values(void **state)
{
    struct daemon_run r;
    static double init[2][MAX_PARAMS], before[2][MAX_PARAMS], after[2][MAX_PARAMS];
    size_t n[2];
    (void)state;
    /* A stats period long enough for 200 lockstep round trips even under a sanitizer
     * (a ThreadSanitizer etraced takes ~1 ms each on a busy machine). */
    daemon_run_start(&r, model_text, "clock: lockstep\nstats_period_ms: 1000\n");
    export_params(&r, init, n);
    assert_int_equal(n[0], 42 * 32 + 32);
    assert_int_equal(n[1], 32 * 2);
    etrace_sub_t *sub = etrace_sub_new(r.ep[3], "stats");
    assert_non_null(sub);
    /* 200 steps between two Stats, so that the second covers every one of them (lockstep:
     * nothing ticks but the steps); again if a Stats fell among them. */
    Etrace__Stats *s0 = NULL, *s1 = NULL;
    double loss_sum = 0.0;
    int covered = 0, attempts = 0;
    while (!covered && attempts++ < 4) {
        if (s0)
            etrace__stats__free_unpacked(s0, NULL);
        if (s1)
            etrace__stats__free_unpacked(s1, NULL);
        assert_int_equal(etrace_sub_recv_stats(sub, 5000, &s0), ETRACE_OK);
        export_params(&r, before, n);
        loss_sum = 0.0;
        for (int t = 0; t < N_STATS_STEPS; t++)
            loss_sum += step_spiking(&r, t);
        assert_int_equal(etrace_sub_recv_stats(sub, 5000, &s1), ETRACE_OK);
        covered = s1->tick - s0->tick == N_STATS_STEPS;
    }
    assert_true(covered);
    etrace_sub_free(&sub);
    export_params(&r, after, n);
    print_message("Stats #%llu covers ticks %llu..%llu (attempt %d): loss_avg %.6g (the steps' "
                  "mean %.6g), optimizer steps %llu\n",
                  (unsigned long long)s1->seq, (unsigned long long)s0->tick,
                  (unsigned long long)s1->tick, attempts, s1->loss_avg, loss_sum / N_STATS_STEPS,
                  (unsigned long long)s1->optimizer_steps);
    assert_int_equal(s1->n_projections, 2);
    for (int p = 0; p < 2; p++) {
        const Etrace__ProjectionStats *ps = s1->projections[p];
        double w = norm_diff(after[p], NULL, n[p]), drift = norm_diff(after[p], init[p], n[p]);
        double delta = norm_diff(after[p], before[p], n[p]);
        print_message("proj %s: |W| %.6g (export %.6g)  |W-W0| %.6g (%.6g)  |dW| %.6g (%.6g)  "
                      "|grad| %.6g  |trace| %.6g\n",
                      ps->name, ps->w_norm, w, ps->drift_norm, drift, ps->delta_norm, delta,
                      ps->grad_norm, ps->trace_norm);
        assert_string_equal(ps->name, p ? "w_out" : "w_in");
        assert_true(ps->w_norm > 0.0 && ps->drift_norm > 0.0 && ps->delta_norm > 0.0);
        assert_true(ps->grad_norm > 0.0 && ps->trace_norm > 0.0);
        assert_true(isfinite(ps->grad_norm) && isfinite(ps->trace_norm));
        /* The norms are those of the weights a client can export. */
        assert_true(close_to(ps->w_norm, w, 1e-5));
        assert_true(close_to(ps->drift_norm, drift, 1e-4));
        assert_true(close_to(ps->delta_norm, delta, 1e-4));
    }
    assert_int_equal(s1->n_cells, 1);
    print_message("cell %s: rate %.6g\n", s1->cells[0]->name, s1->cells[0]->rate);
    assert_string_equal(s1->cells[0]->name, "hidden");
    assert_true(s1->cells[0]->rate > 0.0 && s1->cells[0]->rate <= 1.0);
    assert_true(isfinite(s1->loss_avg) && s1->loss_avg > 0.0);
    assert_true(close_to(s1->loss_avg, loss_sum / N_STATS_STEPS, 1e-6));
    assert_int_equal(s1->readouts[0]->targets - s0->readouts[0]->targets, N_STATS_STEPS);
    etrace__stats__free_unpacked(s0, NULL);
    etrace__stats__free_unpacked(s1, NULL);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* The first Stats covers the first period from load: in lockstep with no step nothing moved,
 * so ||delta W|| over it is 0, as ||W - W0|| is. */
static void
test_daemon_stats_first_period_delta(void **state)
{
    struct daemon_run r;
    Etrace__Reply *rep = NULL;
    (void)state;
    daemon_run_start(&r, model_text, "clock: lockstep\nstats_period_ms: 1000\n");
    assert_int_equal(etrace_stats(r.c, &rep), ETRACE_OK); /* waits for the first one */
    const Etrace__Stats *s = rep->stats;
    assert_int_equal(s->seq, 0);
    assert_int_equal(s->tick, 0);
    for (size_t p = 0; p < s->n_projections; p++)
        print_message("first Stats, no tick run: proj %s |W| %.6g |W-W0| %.6g |dW| %.6g\n",
                      s->projections[p]->name, s->projections[p]->w_norm,
                      s->projections[p]->drift_norm, s->projections[p]->delta_norm);
    for (size_t p = 0; p < s->n_projections; p++) {
        assert_true(s->projections[p]->w_norm > 0.0);
        assert_true(s->projections[p]->drift_norm == 0.0);
        assert_true(s->projections[p]->delta_norm == 0.0);
    }
    etrace_reply_free(rep);
    assert_int_equal(daemon_run_stop(&r), 0);
}

/* The socket directory RUN must be a real directory of ours (DESIGN §5.6, mode 0700): a
 * symlink there, or (as root) a directory another user made first, is refused with a
 * message and exit 1 instead of being trusted with the sockets. */
static void
test_daemon_run_dir_refused(void **state)
{
    char dir[64] = "/tmp/etraced-rundir-XXXXXX", path[400], other[300], cmd[2000], out[4096];
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model.yaml", dir);
    daemon_run_write_file(path, model_text);
    snprintf(other, sizeof other, "%s/elsewhere", dir);
    assert_int_equal(mkdir(other, 0700), 0);
    snprintf(path, sizeof path, "%s/etraced", dir);
    assert_int_equal(symlink(other, path), 0);
    int cases = geteuid() == 0 ? 2 : 1;
    for (int k = 0; k < cases; k++) {
        if (k == 1) { /* a directory that another user (nobody) made first */
            assert_int_equal(unlink(path), 0);
            assert_int_equal(mkdir(path, 0777), 0);
            assert_int_equal(chown(path, 65534, 65534), 0);
        }
        snprintf(cmd, sizeof cmd,
                 "env -u RUNTIME_DIRECTORY XDG_RUNTIME_DIR=%s XDG_STATE_HOME=%s "
                 "timeout 10 %s --model %s/model.yaml 2>&1; echo \"rc=$?\"",
                 dir, dir, daemon_run_etraced(), dir);
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = '\0';
        pclose(f);
        print_message("RUN %s: %s", k ? "owned by nobody" : "a symlink", out);
        assert_non_null(strstr(out, "socket directory"));
        assert_non_null(strstr(out, "rc=1"));
    }
    struct stat st;
    snprintf(path, sizeof path, "%s/input", other);
    assert_int_equal(stat(path, &st), -1); /* no socket went through the link */
    daemon_run_rm_tree(dir);
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
        cmocka_unit_test_teardown(test_daemon_timer_skips_without_burst, daemon_run_teardown),
        cmocka_unit_test_teardown(test_daemon_period_differs_from_dt, daemon_run_teardown),
        cmocka_unit_test_teardown(test_daemon_defaults_and_signals, daemon_run_teardown),
        cmocka_unit_test_teardown(test_daemon_etracectl_lockstep, daemon_run_teardown),
        cmocka_unit_test_teardown(test_daemon_stats_values, daemon_run_teardown),
        cmocka_unit_test_teardown(test_daemon_stats_first_period_delta, daemon_run_teardown),
        cmocka_unit_test(test_daemon_run_dir_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
