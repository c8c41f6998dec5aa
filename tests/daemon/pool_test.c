/* Tick workers (daemon/pool.c, DESIGN §5.2): a tick whose parts run on 2 threads gives the
 * same bits as the 1-thread tick, for dense, sparse and elemwise projections under D-RTRL
 * and ES-D-RTRL, deferred steps on and off: every readout value of every tick and, at the
 * end, every byte of the engine state. The engines are compiled with tiny parts (4
 * elements) so that these small models have several parts per phase, and the pool's
 * threshold is 0 so that every phase is handed to the workers; the test counts the parts
 * that ran on a worker (so it cannot pass vacuously). Inside a tick neither the tick
 * thread nor a worker allocates (the engine's counting allocator) or makes a system call
 * (seccomp strict mode entered by both, in a child process). */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/seccomp.h>

#include "pool.h"
#include "engine.h"
#include "mem.h"
#include "model.h"
#include "rng.h"
#include "../support/testmodel.h"

#define TICKS 200

#define MODEL_FMT                                                                                  \
    "name: workers\n"                                                                              \
    "dt: 1.0e-3\n"                                                                                 \
    "seed: 4\n"                                                                                    \
    "inputs:\n  - {name: x, size: 6}\n"                                                            \
    "cells:\n"                                                                                     \
    "  - {name: h1, model: lif, size: 12, params: {tau: 1.0e-2}}\n"                                \
    "  - {name: h2, model: lif, size: 10, params: {tau: 1.0e-2}}\n"                                \
    "  - {name: g, model: linear, size: 10}\n"                                                     \
    "  - {name: out, model: linear, size: 3}\n"                                                    \
    "projections:\n"                                                                               \
    "  - {name: p_in, from: x, to: h1.i, weight: {init: normal, std: 0.8}, bias: {init: "          \
    "constant, value: 0.3}}\n"                                                                     \
    "  - {name: p_rec, from: h1, to: h1.i, op: sparse, weight: {prob: 0.3, seed: 2, init: "        \
    "normal, std: 0.5}, bias: {init: zeros}}\n"                                                    \
    "  - {name: p_12, from: h1, to: h2.i, op: sparse, weight: {prob: 0.5, seed: 3, init: normal, " \
    "std: 1.5}}\n"                                                                                 \
    "  - {name: p_g, from: h2, to: g, op: elemwise, weight: {init: normal, std: 0.5}}\n"           \
    "  - {name: p_out, from: [x, h1, g], to: out, weight: {init: normal, std: 0.3}, bias: "        \
    "{init: zeros}}\n"                                                                             \
    "readouts:\n  - {name: y, cell: out}\n"                                                        \
    "learning:\n  algorithm: %s\n  decay_or_rank: 0.8\n  optimizer: {kind: sgd, lr: 2.0e-2}\n"     \
    "  defer: %d\n"

static struct engine *
compile(const char *algo, int defer, int64_t part_work, const struct mem *m)
{
    char text[4096];
    snprintf(text, sizeof text, MODEL_FMT, algo, defer);
    struct engine_opts o = {.mem = m, .part_work = part_work, .defer_small = 1};
    struct engine *eng = testmodel_compile_opts(text, &o);
    assert_non_null(eng);
    return eng;
}

/* One tick's inputs: analog x, a target every other tick. */
static void
drive(struct engine *eng, struct rng *r, int k)
{
    real x[6], t[3];
    for (int i = 0; i < 6; i++)
        x[i] = (real)(1.5 * rng_uniform(r));
    engine_set_input(eng, 0, x);
    if (k % 2 == 0) {
        for (int i = 0; i < 3; i++)
            t[i] = (real)rng_normal(r);
        engine_set_target(eng, 0, t);
    }
}

/* A runner that counts the parts run off the tick thread, around pool_run. */
struct counting {
    pool_t *pool;
    pthread_t tick_thread;
    engine_part_fn *fn;
    void *arg;
    _Atomic long on_workers;
    _Atomic long parts;
    _Atomic long phase_on_workers; /* parts of the current phase run off the tick thread */
    long phases;
    int seccomp; /* each thread enters seccomp strict mode before its first part */
    long force;  /* in the first `force` phases the tick thread waits in its part until the
                  * worker took one (the others run as the threads come) */
};

static _Thread_local int t_strict;

static void
counted_part(void *arg, int part)
{
    struct counting *c = arg;
    if (c->seccomp && !t_strict) {
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0)
            syscall(SYS_exit, 7);
        t_strict = 1;
    }
    if (!pthread_equal(pthread_self(), c->tick_thread)) {
        atomic_fetch_add(&c->on_workers, 1);
        atomic_fetch_add(&c->phase_on_workers, 1);
    } else if (c->phases <= c->force) {
        /* so that phases really are split between two threads, however loaded the
         * machine: the worker spins for parts and must take one (bounded, some 10 s; no
         * clock: this runs under seccomp strict mode too) */
        for (long n = 0; atomic_load(&c->phase_on_workers) == 0; n++) {
            if (n == 1L << 28)
                fail_msg("the worker took no part of a phase");
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
    atomic_fetch_add(&c->parts, 1);
    c->fn(c->arg, part);
}

static void
counting_run(void *ctx, int n_parts, int64_t work, engine_part_fn *fn, void *arg)
{
    struct counting *c = ctx;
    c->fn = fn;
    c->arg = arg;
    atomic_store(&c->phase_on_workers, 0);
    c->phases++;
    pool_run(c->pool, n_parts, work, counted_part, c);
}

/* Every state section of a and b is byte for byte the same. */
static void
assert_same_state(struct engine *a, struct engine *b, const char *what)
{
    assert_int_equal(engine_state_count(a), engine_state_count(b));
    for (int i = 0; i < engine_state_count(a); i++) {
        struct engine_section sa, sb;
        engine_state_section(a, i, &sa);
        engine_state_section(b, i, &sb);
        assert_int_equal(sa.bytes, sb.bytes);
        if (memcmp(sa.data, sb.data, sa.bytes) != 0)
            fail_msg("%s: state section %s differs", what, sa.name);
    }
}

/* The reference (default parts, no runner), the same tiny partition run inline, and the
 * tiny partition on 2 threads: identical readouts every tick and identical states. */
static void
check_same_bits(const char *algo, int defer)
{
    char what[128];
    snprintf(what, sizeof what, "%s defer %d", algo, defer);
    struct engine *ref = compile(algo, defer, 0, NULL), *one = compile(algo, defer, 4, NULL),
                  *two = compile(algo, defer, 4, NULL);
    pool_t *pool = pool_new(2, 0);
    assert_non_null(pool);
    struct counting c = {.pool = pool, .tick_thread = pthread_self(), .force = 20};
    struct rng r0, r1, r2;
    rng_seed(&r0, 5, "pool");
    rng_seed(&r1, 5, "pool");
    rng_seed(&r2, 5, "pool");
    engine_set_fp_env();
    for (int k = 0; k < TICKS; k++) {
        drive(ref, &r0, k);
        drive(one, &r1, k);
        drive(two, &r2, k);
        engine_tick(ref);
        engine_tick(one);
        engine_set_runner(two, counting_run, &c, 2);
        pool_begin(pool);
        engine_tick(two);
        pool_end(pool);
        const real *y0 = engine_readout_values(ref, 0), *y1 = engine_readout_values(one, 0),
                   *y2 = engine_readout_values(two, 0);
        if (memcmp(y0, y1, 3 * sizeof(real)) || memcmp(y0, y2, 3 * sizeof(real)))
            fail_msg("%s: readout differs at tick %d", what, k);
    }
    assert_same_state(ref, one, what);
    assert_same_state(ref, two, what);
    struct engine_counters ct;
    engine_counters(two, &ct);
    printf("[pool_test] %-18s %d ticks: %ld phases, %ld parts, %ld on the worker, steps %llu: "
           "same bits\n",
           what, TICKS, c.phases, (long)c.parts, (long)c.on_workers, (unsigned long long)ct.steps);
    assert_true(ct.steps > 0);
    assert_true(c.phases > 20);
    assert_true(c.on_workers >= 20);
    pool_free(&pool);
    engine_free(&ref);
    engine_free(&one);
    engine_free(&two);
}

static void
test_pool_same_bits_es(void **state)
{
    (void)state;
    check_same_bits("es_d_rtrl", 1);
    check_same_bits("es_d_rtrl", 4);
}

static void
test_pool_same_bits_drtrl(void **state)
{
    (void)state;
    check_same_bits("d_rtrl", 1);
    check_same_bits("d_rtrl", 4);
}

/* pool_tick on a 1-thread pool, a NULL pool and a 2-thread pool whose threshold the model
 * is below: the plain tick, and the engine keeps no runner afterwards. */
static void
test_pool_tick_small_model_stays_inline(void **state)
{
    (void)state;
    struct engine *a = compile("es_d_rtrl", 1, 0, NULL), *b = compile("es_d_rtrl", 1, 0, NULL);
    pool_t *one = pool_new(1, POOL_MIN_WORK), *two = pool_new(2, POOL_MIN_WORK);
    assert_non_null(one);
    assert_non_null(two);
    assert_int_equal(pool_n_threads(two), 2);
    assert_int_equal(pool_n_threads(NULL), 1);
    assert_true(engine_tick_work(a) < POOL_MIN_WORK);
    struct rng ra, rb;
    rng_seed(&ra, 8, "pool");
    rng_seed(&rb, 8, "pool");
    engine_set_fp_env();
    for (int k = 0; k < 50; k++) {
        drive(a, &ra, k);
        drive(b, &rb, k);
        engine_tick(a);
        pool_tick(k % 3 == 0 ? one : k % 3 == 1 ? NULL : two, b);
    }
    assert_same_state(a, b, "pool_tick");
    assert_null(pool_new(0, 0));
    assert_null(pool_new(65, 0));
    pool_free(&one);
    pool_free(&two);
    assert_null(two);
    pool_free(&two); /* accepts NULL */
    engine_free(&a);
    engine_free(&b);
}

/* No allocation by the tick thread or the workers over 200 ticks run on 2 threads. */
static void
test_pool_no_alloc_in_ticks(void **state)
{
    (void)state;
    const char *algos[2] = {"es_d_rtrl", "d_rtrl"};
    for (int a = 0; a < 2; a++) {
        struct mem_counter mc;
        mem_counter_init(&mc, NULL);
        struct engine *eng = compile(algos[a], 4, 4, &mc.mem);
        pool_t *pool = pool_new(2, 0);
        assert_non_null(pool);
        struct counting c = {.pool = pool, .tick_thread = pthread_self()};
        struct rng r;
        rng_seed(&r, 9, "pool");
        engine_set_fp_env();
        long calls = mc.n_calls;
        for (int k = 0; k < TICKS; k++) {
            drive(eng, &r, k);
            engine_set_runner(eng, counting_run, &c, 2);
            pool_begin(pool);
            engine_tick(eng);
            pool_end(pool);
        }
        assert_int_equal(mc.n_calls, calls);
        pool_free(&pool);
        engine_free(&eng);
        assert_int_equal(mc.n_allocs, mc.n_frees);
    }
}

/* No system call inside ticks, on the tick thread or a worker: a child holds the workers
 * awake (pool_begin, one futex wake before the first tick), and every thread enters seccomp
 * strict mode (read, write, exit, sigreturn only; anything else kills the process) before
 * it runs its first part. After 1,000 ticks the tick thread writes the number of parts the
 * worker ran to a pipe; the parent requires it (> 0) and then kills the child, whose
 * worker still spins (strict mode would not let it sleep). */
static void
test_pool_tick_makes_no_system_call(void **state)
{
    (void)state;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    printf("[pool_test] seccomp check skipped under a sanitizer (its runtime makes calls)\n");
    skip();
#endif
    const char *algos[2] = {"es_d_rtrl", "d_rtrl"};
    for (int a = 0; a < 2; a++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(stdout);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            struct engine *eng = compile(algos[a], 4, 4, NULL);
            pool_t *pool = pool_new(2, 0);
            if (!pool)
                _exit(3);
            struct counting c = {
                .pool = pool, .tick_thread = pthread_self(), .seccomp = 1, .force = 20};
            struct rng r;
            rng_seed(&r, 10, "pool");
            engine_set_fp_env();
            engine_set_runner(eng, counting_run, &c, 2);
            pool_begin(pool);
            if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0)
                _exit(4);
            t_strict = 1;
            for (int k = 0; k < 1000; k++) {
                drive(eng, &r, k);
                engine_tick(eng);
            }
            long n = atomic_load(&c.on_workers);
            if (write(fds[1], &n, sizeof n) != (ssize_t)sizeof n)
                syscall(SYS_exit, 5);
            for (;;) /* the parent kills the process */
                ;
        }
        close(fds[1]);
        long got = -1;
        ssize_t r = read(fds[0], &got, sizeof got);
        close(fds[0]);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        if (r != (ssize_t)sizeof got)
            fail_msg("%s: the child died before the end of its ticks (a system call?)", algos[a]);
        printf("[pool_test] %s: 1,000 ticks under seccomp strict mode, %ld parts on the worker\n",
               algos[a], got);
        assert_true(got >= 20);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_same_bits_es),
        cmocka_unit_test(test_pool_same_bits_drtrl),
        cmocka_unit_test(test_pool_tick_small_model_stays_inline),
        cmocka_unit_test(test_pool_no_alloc_in_ticks),
        cmocka_unit_test(test_pool_tick_makes_no_system_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
