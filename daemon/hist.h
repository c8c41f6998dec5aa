/* A fixed-size log-linear histogram of non-negative nanosecond values for the tick-time
 * and lateness percentiles (DESIGN §5.5). Daemon layer. No allocation: the bins live in
 * the struct; adding a value is O(1) with no branch on its size beyond one clz, so the
 * tick thread records into it on every tick. Bins are exact below 16 ns, then 16 per
 * power of two (a quantile is an upper bin edge, within 1/16 relative). */
#ifndef ETRACE_HIST_H
#define ETRACE_HIST_H

#include <stdint.h>

enum { HIST_SUB = 16, HIST_N_BINS = HIST_SUB + 60 * HIST_SUB };

struct hist {
    uint64_t count;             /* values added since the last reset */
    int64_t max;                /* the largest, exact */
    int64_t sum;                /* of the values added (a summary's _sum) */
    uint32_t bins[HIST_N_BINS]; /* counts per bin */
};

/* Empties h. */
/* a + b for a, b >= 0, held at INT64_MAX: a clock that jumped must not overflow a sum. */
int64_t hist_add_sat(int64_t a, int64_t b);

void hist_reset(struct hist *h);

/* Adds v (negative values count as 0). */
void hist_add(struct hist *h, int64_t v);

/* The q-quantile (0 <= q <= 1) as the upper edge of its bin, never above max; 0 when
 * empty. */
int64_t hist_quantile(const struct hist *h, double q);

/* Adds every value of src into dst. */
void hist_merge(struct hist *dst, const struct hist *src);

#endif
