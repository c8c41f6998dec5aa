/* Exact backpropagation through time over a recorded run: the reference gradient of
 * sum_t L^t that `etraced run --align` compares the online rules with. Engine layer,
 * offline only: bptt_new allocates a tape for T ticks, engine_tick records into it
 * without allocating, bptt_backward runs the backward pass once at the end. */
#ifndef ETRACE_BPTT_H
#define ETRACE_BPTT_H

#include <stdint.h>

#include "engine_int.h"
#include "err.h"

/* Allocates the tape of T ticks and attaches it to e (e->tape). The run must use
 * ENGINE_LEARN_ACCUMULATE (weights fixed) with signal target. Returns 0, or -1 with e set. */
int bptt_new(struct engine *e, int64_t T, struct err *err);

/* Frees the tape; accepts an engine without one. */
void bptt_free(struct engine *e);

/* Records tick e->tick (derivatives, pre-synaptic vectors, the loss's dL/dout): called by
 * engine_tick after the loss and before the within-tick backward pass. */
void bptt_record(struct engine *e);

/* Runs the backward pass over the recorded ticks; afterwards bptt_grad gives, per
 * projection, the exact gradient of the summed loss. Returns 0, or -1 if nothing was
 * recorded. */
int bptt_backward(struct engine *e);

/* The gradient of projection p: *w [count] and *b [O] (NULL without a bias). */
void bptt_grad(const struct engine *e, int p, const double **w, const double **b);

#endif
