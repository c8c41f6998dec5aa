/* The transcription tests' shared helpers (transcribe.h), in plain double. */
#include "transcribe.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void
transcribe_fmt_num(char *buf, size_t len, double v)
{
    snprintf(buf, len, "%.17g", v);
    if (!strpbrk(buf, ".eE"))
        strncat(buf, ".0", len - strlen(buf) - 1);
}

double
transcribe_rel_err(int n, const double *a, const double *b)
{
    double num = 0.0, den = 0.0;
    for (int i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d > num || d != d)
            num = d;
        if (fabs(b[i]) > den)
            den = fabs(b[i]);
    }
    return num / (den > 1e-12 ? den : 1e-12);
}

void
transcribe_qerr_add(struct transcribe_qerr *q, double err, int tick)
{
    if (err > q->err || err != err) {
        q->err = err;
        q->tick = tick;
    }
}

double
transcribe_qerr_max(const struct transcribe_qerr *q, int n)
{
    double m = 0.0;
    for (int i = 0; i < n; i++)
        m = q[i].err > m || q[i].err != q[i].err ? q[i].err : m;
    return m;
}

/* ---- the documented generator, transcribed from the README ---------------------------- */

static uint64_t
fnv1a64(const char *str)
{
    uint64_t h = 14695981039346656037u;
    for (const unsigned char *c = (const unsigned char *)str; *c; c++) {
        h ^= *c;
        h *= 1099511628211u;
    }
    return h;
}

static uint64_t
splitmix64(uint64_t *x)
{
    *x += 0x9e3779b97f4a7c15u;
    uint64_t z = *x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void
transcribe_rng_seed(struct transcribe_rng *g, uint64_t seed, const char *name)
{
    uint64_t x = seed ^ fnv1a64(name);
    for (int i = 0; i < 4; i++)
        g->s[i] = splitmix64(&x);
}

static uint64_t
rotl(uint64_t v, int k)
{
    return (v << k) | (v >> (64 - k));
}

uint64_t
transcribe_rng_next(struct transcribe_rng *g)
{
    uint64_t *s = g->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double
transcribe_uniform(struct transcribe_rng *g)
{
    return (double)(transcribe_rng_next(g) >> 11) / 9007199254740992.0;
}

double
transcribe_normal(struct transcribe_rng *g)
{
    double u1 = transcribe_uniform(g), u2 = transcribe_uniform(g);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}

int
transcribe_categorical(struct transcribe_rng *g, int n, const double *p)
{
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += p[i];
    double u = transcribe_uniform(g) * total, cdf = 0.0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] <= 0.0)
            continue;
        cdf += p[i];
        last = i;
        if (u < cdf)
            return i;
    }
    return last;
}

void
transcribe_softmax(int n, double *p, const double *o)
{
    double mx = o[0], s = 0.0;
    for (int i = 1; i < n; i++)
        mx = o[i] > mx ? o[i] : mx;
    for (int i = 0; i < n; i++)
        s += exp(o[i] - mx);
    for (int i = 0; i < n; i++)
        p[i] = exp(o[i] - mx) / s;
}
