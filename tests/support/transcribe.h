/* Helpers of the engine tests that check the engine against a separate transcription of
 * DESIGN's text (signal_test.c, critic_test.c, plant_test.c): model numbers written for
 * YAML, DESIGN's relative error, the worst error of a run, and the documented random
 * generator and softmax in plain double. Test layer (links the engine only: `real`);
 * shares no code with the engine. Single-threaded. */
#ifndef ETRACE_TRANSCRIBE_H
#define ETRACE_TRANSCRIBE_H

#include <stddef.h>
#include <stdint.h>

#include "real.h"

/* A number as YAML reads it as a float: always with a point or an exponent, into buf. */
void transcribe_fmt_num(char *buf, size_t len, double v);

/* Rounds a test value to the engine's `real`, so both sides see the same input. Inline,
 * as it was in each test: out of line, gcc -O2 -march=native compiles the tests' input
 * formulas differently and the float build's reported errors change (still passing). */
static inline double
transcribe_as_real(double v)
{
    return (double)(real)v;
}

/* DESIGN's relative error of a[n] against the reference b[n], in double:
 * max|a-b| / max(max|b|, 1e-12); NaN in a gives NaN. */
double transcribe_rel_err(int n, const double *a, const double *b);

/* The worst relative error of one quantity over a run, and where. */
struct transcribe_qerr {
    double err; /* the worst so far (NaN sticks) */
    int tick;   /* where it was */
};

/* Keeps err (at tick) when it is worse than q's, or NaN. */
void transcribe_qerr_add(struct transcribe_qerr *q, double err, int tick);

/* The worst err of q[0..n). */
double transcribe_qerr_max(const struct transcribe_qerr *q, int n);

/* The engine's documented generator (README "Random numbers"): xoshiro256** seeded by
 * splitmix64 from seed ^ fnv1a64(name); uniforms are the top 53 bits times 2^-53; normals
 * sqrt(-2 log(1 - u1)) cos(2 pi u2) on two fresh uniforms; categorical samples invert the
 * CDF with one uniform, summing in index order. */
struct transcribe_rng {
    uint64_t s[4];
};

void transcribe_rng_seed(struct transcribe_rng *g, uint64_t seed, const char *name);
uint64_t transcribe_rng_next(struct transcribe_rng *g);
double transcribe_uniform(struct transcribe_rng *g); /* [0, 1) */
double transcribe_normal(struct transcribe_rng *g);  /* N(0, 1) */

/* An index drawn from the weights p[n] (not necessarily normalised; zeros never drawn). */
int transcribe_categorical(struct transcribe_rng *g, int n, const double *p);

/* p[n] = softmax(o[n]), max-subtracted. */
void transcribe_softmax(int n, double *p, const double *o);

#endif
