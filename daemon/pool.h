/* Tick workers (DESIGN §5.2 "Tick workers"): the threads that run a tick's parts
 * (engine.h "tick parts") beside the tick thread. Daemon layer; the engine never sees a
 * thread, only the runner pool_run.
 *
 * Workers block on a futex between ticks and spin only inside one: pool_tick wakes them
 * (one futex wake, before the engine's tick starts) when the model's largest phase reaches
 * the pool's threshold, runs the tick, and lets them sleep again. Inside the tick a phase
 * is handed over with atomics alone: the tick thread and the workers claim parts one by
 * one and the tick thread runs parts itself until all are done, so no system call and no
 * allocation happen between the engine's first and last instruction of a tick. */
#ifndef ETRACE_POOL_H
#define ETRACE_POOL_H

#include <stdint.h>

#include "engine.h"

/* Below this many elements in the largest phase a tick stays on the tick thread. A part
 * of 2^18 elements costs ~0.3 ms on one thread (tests/bench/learn_bench, 20k-neuron
 * sparse model: 2.37 ms a tick for 2.14M synapses, 2-vCPU EPYC); a worker woken from its
 * futex joins within tens of microseconds on an idle core, but on an oversubscribed VM a
 * wake-up measured p50 1.9 ms (load ~5), so below 2 parts (2^19 elements) two threads
 * gain nothing, and a 10 kHz model must not spend its period waking threads. */
#define POOL_MIN_WORK ((int64_t)2 * ENGINE_TICK_PART_WORK)

typedef struct pool pool_t;

/* Starts n_threads - 1 workers (the tick thread is the n-th); n_threads in [1, 64]. Each
 * worker sets FTZ/DAZ (engine_set_fp_env). min_work: POOL_MIN_WORK, or smaller in tests.
 * Returns the pool (the caller owns it), or NULL when a thread cannot be started. */
pool_t *pool_new(int n_threads, int64_t min_work);

/* Stops and joins the workers and frees the pool; accepts NULL; sets *pool to NULL. */
void pool_free(pool_t **pool);

/* Threads of the pool (the tick thread included). NULL: 1. */
int pool_n_threads(const pool_t *pool);

/* Runs one engine tick with the pool's workers (pool NULL or 1 thread: engine_tick alone).
 * From the tick thread only; the results are bit-identical to engine_tick's. */
void pool_tick(pool_t *pool, struct engine *eng);

/* engine_runner_fn: runs parts 0 .. n_parts - 1 of fn on the tick thread and the awake
 * workers; inline when they sleep. ctx: the pool. Exposed for tests that drive the
 * engine's parts through pool_begin / pool_end themselves. */
void pool_run(void *ctx, int n_parts, int64_t work, engine_part_fn *fn, void *arg);

/* Wakes the workers to spin for parts (one futex wake) / lets them sleep again. pool_tick
 * brackets a tick with them; tests use them to hold the workers awake over many ticks. */
void pool_begin(pool_t *pool);
void pool_end(pool_t *pool);

#endif
