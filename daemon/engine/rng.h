/* The engine's random generator: xoshiro256** seeded through splitmix64, with named
 * substreams so adding a projection changes no other projection's draws (DESIGN §2.3).
 * Engine layer. The generator's state is plain data (saved in checkpoints). */
#ifndef ETRACE_RNG_H
#define ETRACE_RNG_H

#include <stdint.h>

struct rng {
    uint64_t s[4]; /* xoshiro256** state; never all zero */
};

/* Seeds the substream (seed, name): the 64-bit FNV-1a hash of name is mixed with seed
 * by splitmix64: x = seed ^ fnv1a(name); s[i] = splitmix64(&x) for i = 0..3. */
void rng_seed(struct rng *r, uint64_t seed, const char *name);

/* The next 64 random bits (xoshiro256**). */
uint64_t rng_next(struct rng *r);

/* A double uniform in [0, 1): the top 53 bits of rng_next times 2^-53. */
double rng_uniform(struct rng *r);

/* A standard normal: Box-Muller on two fresh uniforms u1, u2 (u1 from (0, 1]):
 * sqrt(-2 log u1) * cos(2 pi u2). Consumes exactly two draws; keeps no spare. */
double rng_normal(struct rng *r);

/* An index in [0, n) with probability p[i] / sum(p) (inverse CDF on one uniform, summed
 * in index order in double). p has n >= 1 non-negative entries. */
int rng_categorical_f(struct rng *r, int n, const float *p);
int rng_categorical_d(struct rng *r, int n, const double *p);

/* The 64-bit FNV-1a hash of a byte string (also the model text hash). */
uint64_t rng_fnv1a(const void *data, uint64_t len);

#endif
