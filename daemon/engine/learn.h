/* Learning within a tick (DESIGN §4.2-4.4): traces and this tick's gradient per
 * projection, the reward eligibility, the optimizer step, and the fused sgd path. Engine
 * layer, internal to the engine (engine.c calls it from engine_tick). */
#ifndef ETRACE_LEARN_H
#define ETRACE_LEARN_H

#include "engine_int.h"

/* Gathers the target cell's g = dL/dh as projection p's column view (p->gcol). */
void learn_gather_g(const struct engine *e, struct eproj *p);

/* The general path: advances every projection's traces and adds this tick's gradient to
 * the partial sums (under reward: the eligibility e, then -(r - b) e); reward is r^t. */
void learn_accumulate_tick(struct engine *e, double reward);

/* Ends an episode after a terminal tick's gradient (DESIGN §4.3): zeroes the reward
 * eligibilities (e, or e_pi and e_V under a critic) and the exploration xi. */
void learn_end_episode(struct engine *e);

/* The optimizer step on the partial sums, all or nothing (DESIGN §4.4). */
void learn_optimizer_step(struct engine *e);

/* The fused path (engine.fused): traces and the step in one pass when a bound proves the
 * step finite, else this tick through the general path and its exact check. */
void learn_fused_tick(struct engine *e);

/* max |a[i]| over n values, exact (compares the bits of |a[i]|: no rounding, NaN largest). */
double learn_max_abs(int64_t n, const real *a);

#endif
