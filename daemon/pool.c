/* Tick workers: futex sleep between ticks, a spinning hand-over of parts inside one. */
#include "pool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { POOL_MAX_THREADS = 64 };

struct pool {
    /* The phase being handed out: (sequence << 32) | (n_parts << 8) | next part. Claiming
     * a part is a compare-and-swap of `next`, so a worker late for one phase can never
     * claim a part of the next (the sequence differs). */
    _Alignas(64) _Atomic uint64_t job;
    _Alignas(64) _Atomic int done;       /* parts of the phase finished */
    _Alignas(64) _Atomic uint32_t awake; /* futex word: 1 while a tick runs, else 0 */
    _Atomic int stop;                    /* pool_free: workers leave */
    engine_part_fn *fn; /* the phase: written by the tick thread before `job` is published, */
    void *arg;          /* read by a worker only while it holds an unfinished part */
    uint32_t seq;       /* tick thread: the last phase's sequence number */
    int is_awake;       /* tick thread: between pool_begin and pool_end */
    int n_threads;
    int n_started; /* workers running */
    int64_t min_work;
    pthread_t threads[POOL_MAX_THREADS];
};

static void
futex_wait(_Atomic uint32_t *w, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void
futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claims and runs one part of the current phase. Returns 0 when none is left. */
static int
run_one(struct pool *p)
{
    uint64_t v = atomic_load_explicit(&p->job, memory_order_acquire);
    for (;;) {
        uint32_t n = (uint32_t)(v >> 8) & 0xffu, k = (uint32_t)v & 0xffu;
        if (k >= n)
            return 0;
        if (atomic_compare_exchange_weak_explicit(&p->job, &v, v + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            p->fn(p->arg, (int)k); /* the phase cannot end while this part is unfinished */
            atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
            return 1;
        }
    }
}

static void *
worker(void *arg)
{
    struct pool *p = arg;
    engine_set_fp_env();
    for (;;) {
        while (atomic_load_explicit(&p->awake, memory_order_acquire) == 0)
            futex_wait(&p->awake, 0); /* returns at once if awake changed meanwhile */
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            return NULL;
        /* stop too: pool_free may set awake again before this worker saw it clear */
        while (atomic_load_explicit(&p->awake, memory_order_relaxed) &&
               !atomic_load_explicit(&p->stop, memory_order_relaxed))
            if (!run_one(p))
                cpu_relax();
    }
}

pool_t *
pool_new(int n_threads, int64_t min_work)
{
    if (n_threads < 1 || n_threads > POOL_MAX_THREADS)
        return NULL;
    struct pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    p->min_work = min_work;
    for (int i = 0; i < n_threads - 1; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
            pool_free(&p);
            return NULL;
        }
        p->n_started++;
    }
    return p;
}

void
pool_free(pool_t **pp)
{
    struct pool *p = *pp;
    if (!p)
        return;
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    atomic_store_explicit(&p->awake, 1, memory_order_release);
    futex_wake(&p->awake);
    for (int i = 0; i < p->n_started; i++)
        pthread_join(p->threads[i], NULL);
    free(p);
    *pp = NULL;
}

int
pool_n_threads(const pool_t *p)
{
    return p ? p->n_threads : 1;
}

void
pool_begin(pool_t *p)
{
    p->is_awake = 1;
    atomic_store_explicit(&p->awake, 1, memory_order_release);
    futex_wake(&p->awake);
}

void
pool_end(pool_t *p)
{
    p->is_awake = 0;
    atomic_store_explicit(&p->awake, 0, memory_order_relaxed);
}

void
pool_run(void *ctx, int n_parts, int64_t work, engine_part_fn *fn, void *arg)
{
    struct pool *p = ctx;
    (void)work; /* awake, the workers spin: the engine asked for parts worth sharing */
    if (!p->is_awake || n_parts < 2) {
        for (int k = 0; k < n_parts; k++)
            fn(arg, k);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed); /* published with job */
    p->seq++;
    atomic_store_explicit(&p->job, (uint64_t)p->seq << 32 | (uint64_t)n_parts << 8,
                          memory_order_release);
    while (run_one(p))
        ;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n_parts)
        cpu_relax();
}

void
pool_tick(pool_t *p, struct engine *eng)
{
    if (!p || p->n_threads == 1) {
        engine_tick(eng);
        return;
    }
    int wake = engine_tick_work(eng) >= p->min_work;
    engine_set_runner(eng, pool_run, p, p->n_threads);
    if (wake)
        pool_begin(p);
    engine_tick(eng);
    if (wake)
        pool_end(p);
    engine_set_runner(eng, NULL, NULL, 1); /* the engine keeps no pointer to the pool */
}
