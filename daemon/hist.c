/* Log-linear histogram (see hist.h). */
#include "hist.h"

#include <stdint.h>
#include <string.h>

int64_t
hist_add_sat(int64_t a, int64_t b)
{
    return b > INT64_MAX - a ? INT64_MAX : a + b;
}

static int
bin_of(uint64_t v)
{
    if (v < HIST_SUB)
        return (int)v;
    int e = 63 - __builtin_clzll(v); /* v in [2^e, 2^(e+1)), e >= 4 */
    int sub = (int)((v >> (e - 4)) & (HIST_SUB - 1));
    int b = HIST_SUB + (e - 4) * HIST_SUB + sub;
    return b < HIST_N_BINS ? b : HIST_N_BINS - 1;
}

/* The largest value that falls in bin b. */
static uint64_t
bin_upper(int b)
{
    if (b < HIST_SUB)
        return (uint64_t)b;
    int e = (b - HIST_SUB) / HIST_SUB + 4;
    uint64_t sub = (uint64_t)((b - HIST_SUB) % HIST_SUB);
    return ((HIST_SUB + sub + 1) << (e - 4)) - 1;
}

void
hist_reset(struct hist *h)
{
    memset(h, 0, sizeof(*h));
}

void
hist_add(struct hist *h, int64_t v)
{
    if (v < 0)
        v = 0;
    h->bins[bin_of((uint64_t)v)]++;
    h->count++;
    h->sum = hist_add_sat(h->sum, v);
    if (v > h->max)
        h->max = v;
}

int64_t
hist_quantile(const struct hist *h, double q)
{
    if (!h->count)
        return 0;
    /* The rank of the quantile, 1-based: the smallest value with at least q of the
     * values at or below it. */
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (int b = 0; b < HIST_N_BINS; b++) {
        seen += h->bins[b];
        if (seen >= rank) {
            uint64_t up = bin_upper(b);
            return (int64_t)up < h->max ? (int64_t)up : h->max;
        }
    }
    return h->max;
}

void
hist_merge(struct hist *dst, const struct hist *src)
{
    for (int b = 0; b < HIST_N_BINS; b++)
        dst->bins[b] += src->bins[b];
    dst->count += src->count;
    dst->sum = hist_add_sat(dst->sum, src->sum);
    if (src->max > dst->max)
        dst->max = src->max;
}
