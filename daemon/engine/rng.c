/* xoshiro256** (Blackman and Vigna, 2018) seeded by splitmix64, with FNV-1a named
 * substreams. Every draw the engine makes goes through here, so a run is a pure function
 * of the model's seed. */
#include "rng.h"

#include <math.h>
#include <string.h>

static const uint64_t fnv_offset = 0xcbf29ce484222325u;
static const uint64_t fnv_prime = 0x100000001b3u;
static const double two_pi = 6.283185307179586476925286766559;

uint64_t
rng_fnv1a(const void *data, uint64_t len)
{
    const unsigned char *p = data;
    uint64_t h = fnv_offset;
    for (uint64_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= fnv_prime;
    }
    return h;
}

/* splitmix64: x += golden gamma, then two xor-shift-multiply rounds. */
static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void
rng_seed(struct rng *r, uint64_t seed, const char *name)
{
    if (!name)
        name = "";
    uint64_t x = seed ^ rng_fnv1a(name, strlen(name));
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
    /* splitmix64 is a bijection of a counter, so four zero outputs in a row cannot
     * happen; keep the invariant explicit anyway. */
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
        r->s[0] = 1;
}

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t
rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double
rng_uniform(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

double
rng_normal(struct rng *r)
{
    /* Box-Muller. u1 in (0, 1] keeps log finite; the first draw is u1, the second u2. */
    double u1 = 1.0 - rng_uniform(r);
    double u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
}

/* Inverse CDF: the first index whose running sum exceeds u * total. Rounding can leave
 * u * total at or past the last running sum; then the last index with p > 0 is taken.
 * With an all-zero p (no valid distribution) index 0 is returned. Exactly one of pf, pd
 * is given. */
static int
categorical(struct rng *r, int n, const float *pf, const double *pd)
{
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += pf ? (double)pf[i] : pd[i];
    double u = rng_uniform(r) * total;
    double acc = 0.0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        double p = pf ? (double)pf[i] : pd[i];
        if (p > 0) {
            acc += p;
            last = i;
            if (u < acc)
                return i;
        }
    }
    return last;
}

int
rng_categorical_f(struct rng *r, int n, const float *p)
{
    return categorical(r, n, p, NULL);
}

int
rng_categorical_d(struct rng *r, int n, const double *p)
{
    return categorical(r, n, NULL, p);
}
