/* The soak (make soak, part of make test-long): the real etraced at 1 kHz (clock: timer)
 * for SOAK_SECONDS (default 1800) with
 *   - a paced valid stream: a frame every period, a target every other one, spikes now
 *     and then;
 *   - a trickle of every kind of hostile message, one every 20 ms in turn from its own
 *     thread and clients: undecodable, wrong size, unknown name, non-finite, oversized
 *     Inputs, Inputs of thousands of reward signals, huge Step requests (over
 *     limits.control_bytes, and under it: refused in timer mode), undecodable and unknown
 *     control requests, connection churn (clients that connect, ask and go; sockets that
 *     connect and vanish) and vanishing subscribers;
 *   - a hot swap (keeping the weights) and a checkpoint every minute, from their own
 *     thread and client;
 *   - a bare clock_nanosleep loop at the same period on the daemon's CPU set, counting
 *     its skipped periods as the tick thread counts them, over the same time window.
 * The window starts after a warm-up (20 swaps and checkpoints back to back, 300 of each
 * kind of big message) in which the allocators (glibc's per-thread arenas and adaptive
 * mmap threshold, libzmq's buffers) come to hold what they keep: growth after it is what a
 * leak would show. Prints ticks, skipped periods (daemon vs bare loop), lateness, RSS at
 * the window's start and end, rejections by reason, the operations done, and crashes.
 * Asserts: RSS at the end within 5% of the start, no crash (the daemon alive throughout
 * and exiting 0), every operation answered OK, every kind of hostile message counted.
 * Skipped periods are reported, not asserted (the machine may be shared). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>

#include "daemon_run.h"
#include "etrace_client.h"

#define PERIOD_NS 1000000LL
#define INPUT_LIMIT 65536
#define CONTROL_LIMIT 1048576
#define WARMUP_BIG 300 /* big hostile messages of each kind sent before the window */
#define WARMUP_OPS 20  /* swap and checkpoint pairs, back to back, before the window */

static const char model_text[] = DAEMON_RUN_ITEST_MODEL;

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
sleep_until(int64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000LL),
                          .tv_nsec = (long)(t % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* ---- the bare loop ------------------------------------------------------------------ */

struct bare {
    pid_t daemon;
    int64_t start_ns, end_ns; /* the window */
    uint64_t wakeups, skipped;
    int64_t late_max;
    int64_t *late; /* [n_late]: lateness of every wake-up (for percentiles) */
    size_t n_late, cap_late;
};

/* The tick thread's timer loop without a tick: sleep to the deadline, count the periods
 * whose deadline passed (ticker.c run_timer). */
static void *
bare_main(void *arg)
{
    struct bare *b = arg;
    cpu_set_t set;
    if (sched_getaffinity(b->daemon, sizeof set, &set) == 0)
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    sleep_until(b->start_ns);
    int64_t next = b->start_ns + PERIOD_NS;
    while (next < b->end_ns) {
        sleep_until(next);
        int64_t late = now_ns() - next;
        b->wakeups++;
        if (late > b->late_max)
            b->late_max = late;
        if (b->n_late < b->cap_late)
            b->late[b->n_late++] = late;
        if (late >= PERIOD_NS) {
            int64_t k = late / PERIOD_NS;
            b->skipped += (uint64_t)k;
            next += k * PERIOD_NS;
        }
        next += PERIOD_NS;
    }
    return NULL;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---- the operations thread ------------------------------------------------------------ */

struct ops {
    const char *control, *input;
    char model_path[600];
    int64_t first_ns; /* the warm-up's swaps and checkpoints, then one of each a minute */
    volatile int stop;
    volatile int warm; /* the warm-up's WARMUP_OPS pairs are done */
    int swaps, checkpoints, failures;
    int64_t swap_gap_max_ns;
};

static void *
ops_main(void *arg)
{
    struct ops *o = arg;
    etrace_client_t *c = etrace_client_new(o->control, o->input, 10000);
    if (!c) {
        o->failures++;
        return NULL;
    }
    int64_t next = o->first_ns;
    while (!o->stop) {
        while (!o->stop && now_ns() < next)
            daemon_run_sleep_ms(50);
        if (o->stop)
            break;
        Etrace__Reply *rep = NULL;
        if (etrace_load(c, o->model_path, 1, 0, &rep) == ETRACE_OK) {
            o->swaps++;
            if (rep->op && rep->op->swap_gap_ns > o->swap_gap_max_ns)
                o->swap_gap_max_ns = rep->op->swap_gap_ns;
        } else {
            fprintf(stderr, "soak: swap failed: %s\n", etrace_client_error(c));
            o->failures++;
        }
        etrace_reply_free(rep);
        rep = NULL;
        if (etrace_checkpoint(c, NULL, &rep) == ETRACE_OK) {
            o->checkpoints++;
        } else {
            fprintf(stderr, "soak: checkpoint failed: %s\n", etrace_client_error(c));
            o->failures++;
        }
        etrace_reply_free(rep);
        if (o->warm) {
            next += 60 * 1000000000LL;
        } else if (o->swaps + o->failures >= WARMUP_OPS) {
            o->warm = 1;
            next = now_ns() + 60 * 1000000000LL;
        }
    }
    etrace_client_free(&c);
    return NULL;
}

/* ---- hostile messages --------------------------------------------------------------- */

enum hostile {
    H_UNDECODABLE,
    H_WRONG_SIZE,
    H_UNKNOWN_NAME,
    H_NON_FINITE,
    H_OVERSIZED,
    H_REWARDS,
    H_STEP_HUGE,
    H_STEP,
    H_CONTROL_GARBAGE,
    H_CONTROL_UNKNOWN,
    H_CHURN_CLIENT,
    H_CHURN_SOCKET,
    H_SUBSCRIBER,
    H_N
};

static const char *const hostile_name[H_N] = {
    "undecodable input",   "wrong size",         "unknown name",          "non-finite",
    "oversized input",     "huge reward Inputs", "huge Step (oversized)", "Step (timer mode)",
    "undecodable request", "unknown command",    "client churn",          "socket churn",
    "vanishing subscriber"};

struct hostile_ctx {
    struct daemon_run *r;
    void *zctx;
    uint8_t *big;          /* INPUT_LIMIT * 2 bytes of junk */
    Etrace__Input rewards; /* thousands of reward signals */
    Etrace__Signal *sig, **sigp;
    float *step_vals; /* a frame of CONTROL_LIMIT / 2 floats */
    uint64_t sent[H_N];
    uint64_t answered_error; /* control requests answered with an error */
    volatile int stop;
    volatile int warm;    /* the warm-up burst is done */
    etrace_client_t *own; /* the hostile thread's client */
    int failures;         /* clients or sockets that could not be made */
    int64_t t0;           /* the start of the soak */
};

static void
hostile_init(struct hostile_ctx *h, struct daemon_run *r)
{
    memset(h, 0, sizeof *h);
    h->r = r;
    h->zctx = zmq_ctx_new();
    h->big = malloc(2 * INPUT_LIMIT);
    assert_non_null(h->zctx);
    assert_non_null(h->big);
    for (size_t i = 0; i < 2 * INPUT_LIMIT; i++)
        h->big[i] = (uint8_t)(i * 131 + 7);
    /* Each reward signal packs to ~7 bytes: the Input stays under limits.input_bytes. */
    size_t n = 6000;
    h->sig = calloc(n, sizeof *h->sig);
    h->sigp = calloc(n, sizeof *h->sigp);
    assert_non_null(h->sig);
    assert_non_null(h->sigp);
    for (size_t i = 0; i < n; i++) {
        etrace__signal__init(&h->sig[i]);
        h->sig[i].kind_case = ETRACE__SIGNAL__KIND_REWARD;
        h->sig[i].reward = (float)(i % 7) * 0.25f;
        h->sigp[i] = &h->sig[i];
    }
    etrace__input__init(&h->rewards);
    h->rewards.signals = h->sigp;
    h->rewards.n_signals = n;
    h->step_vals = calloc(CONTROL_LIMIT / 2, sizeof(float));
    assert_non_null(h->step_vals);
}

static void
hostile_fini(struct hostile_ctx *h)
{
    free(h->big);
    free(h->sig);
    free(h->sigp);
    free(h->step_vals);
    zmq_ctx_term(h->zctx);
}

/* A raw control request on a fresh client (on the hostile thread's own during the warm-up
 * burst, which is then quicker); counts an error answer. */
static void
control_once(struct hostile_ctx *h, const void *raw, size_t raw_len)
{
    etrace_client_t *c = h->warm ? etrace_client_new(h->r->ep[2], h->r->ep[0], 5000) : h->own;
    Etrace__Reply *rep = NULL;
    if (!c) {
        h->failures++;
        return;
    }
    int rc = etrace_request_raw(c, raw, raw_len, &rep);
    if (rc != ETRACE_OK && rep && rep->error)
        h->answered_error++;
    etrace_reply_free(rep);
    if (c != h->own)
        etrace_client_free(&c);
}

static void
hostile_send(struct hostile_ctx *h, etrace_client_t *c, enum hostile k)
{
    float v[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    h->sent[k]++;
    switch (k) {
    case H_UNDECODABLE:
        etrace_send_raw(c, "\xff\xff\xff\xff\x0f not protobuf", 18);
        break;
    case H_WRONG_SIZE:
        etrace_send_frame(c, "sensors", v, 3, 0);
        break;
    case H_UNKNOWN_NAME:
        etrace_send_frame(c, "no_such_input", v, 4, 0);
        break;
    case H_NON_FINITE:
        v[2] = NAN;
        etrace_send_frame(c, "sensors", v, 4, 0);
        break;
    case H_OVERSIZED:
        etrace_send_raw(c, h->big, 2 * INPUT_LIMIT);
        break;
    case H_REWARDS:
        etrace_send_input(c, &h->rewards);
        break;
    case H_STEP_HUGE:
    case H_STEP: {
        Etrace__Frame f = ETRACE__FRAME__INIT, *fp = &f;
        Etrace__Input in = ETRACE__INPUT__INIT;
        Etrace__Step st = ETRACE__STEP__INIT;
        Etrace__Request rq = ETRACE__REQUEST__INIT;
        f.name = "sensors";
        f.values = h->step_vals;
        /* Over limits.control_bytes, or a wrong-size frame under it. */
        f.n_values = k == H_STEP_HUGE ? CONTROL_LIMIT / 2 : 20000;
        in.frames = &fp;
        in.n_frames = 1;
        st.input = &in;
        rq.command_case = ETRACE__REQUEST__COMMAND_STEP;
        rq.step = &st;
        /* Sent raw: the reply to an oversized request cannot echo its id. */
        size_t len = etrace__request__get_packed_size(&rq);
        uint8_t *buf = malloc(len);
        if (!buf) {
            h->failures++;
            break;
        }
        etrace__request__pack(&rq, buf);
        control_once(h, buf, len);
        free(buf);
        break;
    }
    case H_CONTROL_GARBAGE:
        control_once(h, "\x0a\xff\xff\xff\xff\xff\xff", 7);
        break;
    case H_CONTROL_UNKNOWN: {
        /* Field 29 (reserved): a Request with no command this daemon knows. */
        static const uint8_t unknown[] = {0x08, 0x05, 0xea, 0x01, 0x00};
        control_once(h, unknown, sizeof unknown);
        break;
    }
    case H_CHURN_CLIENT: {
        etrace_client_t *cc = etrace_client_new(h->r->ep[2], h->r->ep[0], 5000);
        Etrace__Reply *rep = NULL;
        if (!cc) {
            h->failures++;
            break;
        }
        etrace_status(cc, &rep);
        etrace_reply_free(rep);
        etrace_send_frame(cc, "sensors", v, 4, 0);
        etrace_client_free(&cc);
        break;
    }
    case H_CHURN_SOCKET: {
        /* Connect to every socket and vanish without a word. */
        int types[4] = {ZMQ_PUSH, ZMQ_SUB, ZMQ_DEALER, ZMQ_SUB};
        for (int i = 0; i < 4; i++) {
            void *s = zmq_socket(h->zctx, types[i]);
            int zero = 0;
            if (!s) {
                h->failures++;
                break;
            }
            zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
            zmq_connect(s, h->r->ep[i]);
            zmq_close(s);
        }
        break;
    }
    case H_SUBSCRIBER: {
        /* Subscribes to everything, reads one Output, leaves without unsubscribing. */
        etrace_sub_t *s = etrace_sub_new(h->r->ep[1], "");
        Etrace__Output *o = NULL;
        if (!s) {
            h->failures++;
            break;
        }
        if (etrace_sub_recv_output(s, 200, &o) == ETRACE_OK)
            etrace__output__free_unpacked(o, NULL);
        etrace_sub_free(&s);
        break;
    }
    default:
        break;
    }
}

/* One hostile message every 20 ms in turn, on its own client (the valid stream stays
 * paced), until stop. */
static void *
hostile_main(void *arg)
{
    struct hostile_ctx *h = arg;
    etrace_client_t *c = etrace_client_new(h->r->ep[2], h->r->ep[0], 5000);
    if (!c) {
        h->failures++;
        return NULL;
    }
    h->own = c;
    /* Warm-up: the big messages in bulk, until the allocators (glibc's adaptive mmap
     * threshold, libzmq's buffers) hold what they keep for them; RSS is measured after. */
    for (int i = 0; i < WARMUP_BIG && !h->stop; i++) {
        hostile_send(h, c, H_OVERSIZED);
        hostile_send(h, c, H_STEP_HUGE);
        hostile_send(h, c, H_STEP);
        hostile_send(h, c, H_REWARDS);
    }
    h->warm = 1;
    int64_t next = now_ns();
    printf("soak: warm-up burst done in %.1f s\n", (double)(next - h->t0) / 1e9);
    for (int k = 0; !h->stop; k = (k + 1) % H_N) {
        next += 20 * 1000000LL;
        sleep_until(next);
        hostile_send(h, c, (enum hostile)k);
        int64_t after = now_ns();
        if (after > next)
            next = after;
    }
    etrace_client_free(&c);
    return NULL;
}

/* ---- the soak -------------------------------------------------------------------------- */

static const Etrace__SocketStats *
sock(const Etrace__Stats *st, const char *name)
{
    for (size_t i = 0; i < st->n_sockets; i++)
        if (!strcmp(st->sockets[i]->name, name))
            return st->sockets[i];
    return NULL;
}

static Etrace__Reply *
stats_now(etrace_client_t *c)
{
    Etrace__Reply *rep = NULL;
    assert_int_equal(etrace_stats(c, &rep), ETRACE_OK);
    assert_non_null(rep->stats);
    return rep;
}

static void
assert_alive(struct daemon_run *r)
{
    int status;
    if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
        r->pid = 0;
        fail_msg("soak: etraced died (status %d); log:\n%s", status, daemon_run_log_text(r));
    }
}

static void
print_socket(const char *label, const Etrace__SocketStats *s0, const Etrace__SocketStats *s1)
{
#define D(f) (unsigned long long)(s1->f - s0->f)
    printf("  %-8s accepted %llu, undecodable %llu, wrong size %llu, unknown name %llu, "
           "non-finite %llu, oversized %llu, unknown command %llu, bad argument %llu, "
           "dropped %llu, peer dropped %llu\n",
           label, D(accepted), D(undecodable), D(wrong_size), D(unknown_name), D(non_finite),
           D(oversized), D(unknown_command), D(bad_argument), D(dropped), D(peer_dropped));
#undef D
}

static void
test_soak(void **state)
{
    (void)state;
    const char *env = getenv("SOAK_SECONDS");
    int64_t seconds = env ? atoll(env) : 1800;
    if (seconds < 30)
        seconds = 30;
    struct daemon_run r;
    char extra[512];
    snprintf(extra, sizeof extra,
             "stats_period_ms: 1000\n"
             "limits:\n  input_bytes: %d\n  control_bytes: %d\n"
             "checkpoint:\n  keep: 3\n",
             INPUT_LIMIT, CONTROL_LIMIT);
    daemon_run_start(&r, model_text, extra);

    /* The model swapped in: the same projections, another seed. */
    struct ops o;
    memset(&o, 0, sizeof o);
    o.control = r.ep[2];
    o.input = r.ep[0];
    snprintf(o.model_path, sizeof o.model_path, "%s/other.yaml", r.dir);
    char other[sizeof(model_text) + 8];
    snprintf(other, sizeof other, "%s", model_text);
    strstr(other, "seed: 3")[6] = '9';
    daemon_run_write_file(o.model_path, other);

    /* Warm-up: the first swap and checkpoint at 3 s and the hostile thread's burst; the
     * window (RSS and counters at its start) begins when both are done. */
    int64_t t0 = now_ns();
    o.first_ns = t0 + 3 * 1000000000LL;
    int64_t window_start = 0, window_end = INT64_MAX;
    pthread_t ops_thread, bare_thread;
    assert_int_equal(pthread_create(&ops_thread, NULL, ops_main, &o), 0);

    struct bare b;
    memset(&b, 0, sizeof b);
    b.daemon = r.pid;
    b.cap_late = (size_t)(seconds * 1000 + 1000);
    b.late = malloc(b.cap_late * sizeof(int64_t));
    assert_non_null(b.late);

    struct hostile_ctx h;
    pthread_t hostile_thread;
    hostile_init(&h, &r);
    h.t0 = t0;
    assert_int_equal(pthread_create(&hostile_thread, NULL, hostile_main, &h), 0);
    etrace_client_t *c = r.c; /* the paced stream and the counters */
    Etrace__Reply *st0 = NULL, *st1 = NULL;
    long rss0 = -1, rss1 = -1, rss_max = 0;
    uint64_t frames = 0;
    int k = 0, next_report = 0, swaps0 = 0, checkpoints0 = 0;
    int64_t next = now_ns() + PERIOD_NS;
    int64_t started = now_ns();
    while (next < window_end) {
        sleep_until(next);
        int64_t t = now_ns();
        if (!st0 && h.warm && o.warm) {
            st0 = stats_now(c);
            rss0 = daemon_run_rss_kib(r.pid);
            window_start = now_ns();
            swaps0 = o.swaps;
            checkpoints0 = o.checkpoints;
            window_end = window_start + seconds * 1000000000LL;
            b.start_ns = window_start;
            b.end_ns = window_end;
            assert_int_equal(pthread_create(&bare_thread, NULL, bare_main, &b), 0);
            printf("soak: warm-up done in %.1f s; window of %lld s from tick %llu, RSS %ld KiB\n",
                   (double)(window_start - t0) / 1e9, (long long)seconds,
                   (unsigned long long)st0->stats->tick, rss0);
            fflush(stdout);
        }
        if (!st0 && t - t0 > 300 * 1000000000LL)
            fail_msg("soak: the warm-up took over 300 s");
        float x[4] = {sinf((float)k * 0.01f), cosf((float)k * 0.013f), 0.5f, -0.25f};
        float tg[2] = {0.3f * sinf((float)k * 0.002f), 0.1f};
        etrace_send_frame(c, "sensors", x, 4, (uint64_t)k);
        frames++;
        if (k % 2 == 0)
            etrace_send_target(c, "action", tg, 2);
        if (k % 5 == 0) {
            int32_t sp[2] = {k % 6, (k * 5) % 6};
            etrace_send_spikes(c, "ev", sp, 2, (uint64_t)k);
        }
        if (k % 1000 == 0) {
            assert_alive(&r);
            long rss = daemon_run_rss_kib(r.pid);
            if (st0 && rss > rss_max)
                rss_max = rss;
            if (k / 1000 >= next_report) {
                printf("soak: %3lld s: RSS %ld KiB, swaps %d, checkpoints %d\n",
                       (long long)((t - started) / 1000000000LL), rss, o.swaps, o.checkpoints);
                fflush(stdout);
                next_report += 60;
            }
        }
        k++;
        /* Paced: the next period, never a burst to catch up. */
        next += PERIOD_NS;
        int64_t after = now_ns();
        if (after > next)
            next += ((after - next) / PERIOD_NS + 1) * PERIOD_NS;
    }
    o.stop = 1;
    h.stop = 1;
    pthread_join(ops_thread, NULL);
    pthread_join(hostile_thread, NULL);
    pthread_join(bare_thread, NULL);
    assert_alive(&r);
    assert_non_null(st0);
    st1 = stats_now(c);
    rss1 = daemon_run_rss_kib(r.pid);
    const Etrace__Stats *s0 = st0->stats, *s1 = st1->stats;

    qsort(b.late, b.n_late, sizeof(int64_t), cmp_i64);
    uint64_t ticks = s1->tick - s0->tick;
    uint64_t periods = s1->period_index - s0->period_index;
    printf("soak: %lld s at 1 kHz with %llu valid frames, %d swaps (largest gap %.1f us), %d "
           "checkpoints (after %d and %d in the warm-up)\n",
           (long long)seconds, (unsigned long long)frames, o.swaps - swaps0,
           (double)o.swap_gap_max_ns / 1e3, o.checkpoints - checkpoints0, swaps0, checkpoints0);
    printf("  ticks %llu of %llu periods; skipped periods: daemon %llu, bare loop %llu (of %llu "
           "wake-ups)\n",
           (unsigned long long)ticks, (unsigned long long)periods,
           (unsigned long long)(s1->skipped - s0->skipped), (unsigned long long)b.skipped,
           (unsigned long long)b.wakeups);
    if (b.n_late)
        printf("  bare loop lateness: p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
               (double)b.late[b.n_late / 2] / 1e3, (double)b.late[b.n_late * 99 / 100] / 1e3,
               (double)b.late[b.n_late * 999 / 1000] / 1e3, (double)b.late_max / 1e3);
    if (s1->lateness)
        printf("  daemon lateness (last stats period): p50 %.1f us, p99 %.1f us, p99.9 %.1f us, "
               "max %.1f us; overruns %llu\n",
               (double)s1->lateness->p50_ns / 1e3, (double)s1->lateness->p99_ns / 1e3,
               (double)s1->lateness->p999_ns / 1e3, (double)s1->lateness->max_ns / 1e3,
               (unsigned long long)(s1->overruns - s0->overruns));
    printf("  RSS: start %ld KiB, end %ld KiB (%+.2f%%), largest sampled %ld KiB\n", rss0, rss1,
           100.0 * (double)(rss1 - rss0) / (double)rss0, rss_max);
    printf("  hostile messages sent:");
    for (int i = 0; i < H_N; i++)
        printf("%s %s %llu", i ? "," : "", hostile_name[i], (unsigned long long)h.sent[i]);
    printf("\n  rejections by reason (in the window):\n");
    const Etrace__SocketStats *in0 = sock(s0, "input"), *in1 = sock(s1, "input");
    const Etrace__SocketStats *c0 = sock(s0, "control"), *c1 = sock(s1, "control");
    const Etrace__SocketStats *o0 = sock(s0, "output"), *o1 = sock(s1, "output");
    assert_true(in0 && in1 && c0 && c1 && o0 && o1);
    print_socket("input", in0, in1);
    print_socket("control", c0, c1);
    print_socket("output", o0, o1);
    printf("  invalid ticks %llu, state resets %llu, updates refused %llu\n",
           (unsigned long long)(s1->invalid_ticks - s0->invalid_ticks),
           (unsigned long long)(s1->state_resets - s0->state_resets),
           (unsigned long long)(s1->updates_refused - s0->updates_refused));
    fflush(stdout);

    /* Every kind of hostile input was counted under its reason. */
    assert_true(in1->undecodable > in0->undecodable);
    assert_true(in1->wrong_size > in0->wrong_size);
    assert_true(in1->unknown_name > in0->unknown_name);
    assert_true(in1->non_finite > in0->non_finite);
    assert_true(in1->oversized > in0->oversized);
    assert_true(c1->oversized > c0->oversized);
    assert_true(c1->undecodable > c0->undecodable);
    assert_true(c1->unknown_command > c0->unknown_command);
    assert_true(ticks > 0);
    assert_int_equal(o.failures, 0);
    assert_int_equal(h.failures, 0);
    assert_true(o.swaps > swaps0 && o.checkpoints > checkpoints0);
    etrace_reply_free(st0);
    etrace_reply_free(st1);
    hostile_fini(&h);
    free(b.late);

    /* No crash: alive until now, then a clean exit. */
    int status = daemon_run_stop(&r);
    int crashes = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("  crashes: %d (exit status %d)\n", crashes, status);
    assert_int_equal(crashes, 0);
    /* Flat memory: the end within 5% of the start. */
    assert_true(rss1 <= rss0 + rss0 / 20);
}

int
main(int argc, char **argv)
{
    (void)argc;
    daemon_run_find_binaries(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_soak, daemon_run_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
