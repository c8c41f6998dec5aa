/* Deferred rank-one steps (DESIGN §4.4 "Deferred rank-one steps") and the float64
 * gradient sums of `etraced run` kept as rank-one pairs. Engine layer, internal to the
 * engine (engine.c and learn.c call it; every function runs on the engine's thread).
 *
 * A projection whose sgd step is rank one keeps it pending instead of writing W; the
 * pending steps are added to W at flushes scheduled by tick number. They are stored as
 * factor pairs (u_s, B_s), s < n_pend (defer_push says how a step becomes one), and every
 * reader of W sees W + sum_s u_s B_s^T: for element (i, o) that is fl(W[i,o] + s) with
 * s = sum over pairs in order of u_s[i] B_s[o] (pairs whose u_s[i] is 0 skipped), the value
 * a flush writes, so export, norms and checkpoints agree with the weights after the flush
 * bit for bit. The dense forward and backward use the low-rank form instead
 * (x W + sum_s (x . u_s) B_s), which is equal to rounding.
 *
 * Layout: pa [I][defer] (the row factors u, row-major by input so that one row's factors
 * are contiguous); pb [defer][O] (the column factors B, one row per pair, dense or sparse).
 * A sparse entry (i, o) reads B_s[o] for the s whose u_s[i] is not 0: under factored pairs
 * and a spiking input mostly s = 0 alone, one value of an [O] row rather than a line of
 * the whole table. The gradient window of the sums: ga [n_grad_max][I],
 * gb [n_grad_max][O] (defer_grad_window). */
#ifndef ETRACE_DEFER_H
#define ETRACE_DEFER_H

#include "engine_int.h"

/* The dense row passes run in LANES-wide vectors; pc and pk hold r rounded up to LANES
 * values per tick part (engine.c's layout). */
enum { DEFER_LANES = 8 };

/* The length of one tick part's scratch in pc and pk: r rounded up to DEFER_LANES. */
static inline int64_t
defer_scratch_len(const struct eproj *p)
{
    return (p->n_pend_max + DEFER_LANES - 1) / DEFER_LANES * DEFER_LANES;
}

/* Ticks of gradients buffered before they are added to the float64 sums. */
enum { DEFER_GRAD_PAIRS = 64, DEFER_GRAD_PAIRS_MAX = 256 };

/* The ticks of one gradient window of p: each window streams the float64 sums (8 bytes a
 * weight) once, so a weight much larger than its window's factors (I + O values a tick)
 * takes longer windows, up to DEFER_GRAD_PAIRS_MAX, with the window's buffers kept at
 * most a quarter of the sums' bytes. */
static inline int64_t
defer_grad_window(const struct eproj *p)
{
    int64_t n = p->count / (2 * (p->I + p->O));
    return n < DEFER_GRAD_PAIRS       ? DEFER_GRAD_PAIRS
           : n > DEFER_GRAD_PAIRS_MAX ? DEFER_GRAD_PAIRS_MAX
                                      : n;
}

/* A pair is refused when max|a| max|b| r reaches this bound, so that a flush of r pairs
 * stays far from overflow (2^100 float, 2^900 double). */
#if defined(REAL_DOUBLE)
#define DEFER_PAIR_LIMIT 0x1p900
#else
#define DEFER_PAIR_LIMIT 0x1p100
#endif

/* The open segment of the pending pairs (engine state, the section "pairs_segment"): the
 * pairs DEFER_SEG_FIRST .. n_pend - 1 follow one recurrence (see defer_push). Doubles, so
 * that the section is one array (a tick is exact below 2^53). */
enum {
    DEFER_SEG_FIRST, /* the segment's first pair, -1 when none is open */
    DEFER_SEG_TICK,  /* the tick of its last pair */
    DEFER_SEG_LR,    /* the lr of its pairs */
    DEFER_SEG_UMAX,  /* max |u| over its row factors */
    DEFER_SEG_BSUM,  /* the sum over its pairs of max |b| */
    DEFER_SEG_N
};
_Static_assert(sizeof((struct eproj *)0)->pseg == DEFER_SEG_N * sizeof(double),
               "eproj.pseg holds the segment");

/* Keeps the step -lr a q^T pending on p (a: [I], q: [O]) at tick `tick`. The caller has
 * checked the pair (defer_pair_ok) and flushed a full list.
 *
 * The pairs are stored factored: with a_k = -lr (the row factor of pair k), the pending
 * sum sum_k a_k b_k^T is kept as sum_s u_s B_s^T. Pair k continues the open segment when
 * its row factor follows the last one's recurrence, a = lambda a_prev + x (x: [I], this
 * tick's input, given for ES; NULL when the pair has no such recurrence): same lr, the
 * previous tick, lambda > 0 and no trace reset between (defer_close). Then u_k = -lr x,
 * which is 0 wherever the input did not fire, and every B_s of the segment gains
 * lambda^(k - s) q. Otherwise pair k starts a segment with u_k = -lr a, B_k = q. Every
 * reader sums u_s[i] B_s[o] over s as it summed a_k[i] b_k[o] (pairs whose u_s[i] is 0
 * skipped), so a flush costs 1 + (the input's events in the window) products per weight
 * instead of r. The sum equals sum_k a_k b_k^T to rounding. A segment also ends before
 * r max|u| sum max|b| over its pairs would reach DEFER_PAIR_LIMIT, so that a flush stays
 * as far from overflow as the pairs themselves.
 *
 * The work runs as tick parts over u_k's rows and B's columns (engine_run_parts; the same
 * bits), on the tick thread; e NULL: inline. */
void defer_push(struct engine *e, struct eproj *p, const real *a, const real *x, const real *q,
                real lr, real lambda, uint64_t tick);

/* The next pair starts a segment (the row factors' recurrence was broken: a trace reset). */
void defer_close(struct eproj *p);

/* The segment's scalars are those a push could have left (a restored checkpoint). */
int defer_seg_ok(const struct eproj *p);

/* A checkpoint from before factored pairs (no pairs_segment section) was restored into p:
 * its pairs are (a_k, b_k), a sparse weight's b laid out [O][r] and summed in eight
 * interleaved lanes (term k into lane k mod 8, then a fixed tree). A sparse weight's pairs
 * are added to W now, with the bits every reader of that engine saw (its flush would have
 * written the same), and the list emptied; a dense weight's keep their meaning as runs of
 * one pair each. */
void defer_restore_legacy(struct eproj *p);

/* max|a| max|b| r for the pair (-lr a, q) is below DEFER_PAIR_LIMIT (false for NaN). */
int defer_pair_ok(const struct eproj *p, const real *a, const real *q, double lr);

/* Adds every pending pair to W and empties the list. */
void defer_flush(struct eproj *p);

/* The same as tick parts over W's rows (engine_run_parts; each row's sums unchanged), on
 * the tick thread. */
void defer_flush_parts(struct engine *e, struct eproj *p);

/* y [O] += the pending pairs' part of x W (dense: sum_k (x . a_k) b_k). For a sparse
 * projection the whole forward is done here (op_sparse_forward over W + pairs, masked to
 * the stored entries): y is initialised from the bias. */
void defer_forward(struct eproj *p, real *y, const real *x);

/* The sparse forward over W + the pairs for the outputs [o0, o1) alone (tick parts: each
 * output's sum unchanged); c, at: [r] scratch of the part. With no pairs pending it is
 * op_sparse_forward_cols. */
void defer_forward_cols(struct eproj *p, real *y, const real *x, int64_t o0, int64_t o1, real *c,
                        int64_t *at);

/* dx [n_rows] += (W + pairs)[row0 .. row0 + n_rows) dy (the within-tick backward). */
void defer_backward(const struct eproj *p, int64_t row0, int64_t n_rows, real *dx, const real *dy);

/* out [hi - lo] = the weights a reader sees, elements [lo, hi) in storage order. */
void defer_effective(const struct eproj *p, int64_t lo, int64_t hi, real *out);

/* Keeps this tick's gradient a (x) q (the rank-one gradient of an ES or instant
 * projection, a = lambda a_prev + x: e_x for ES, x itself for instant with lambda 0) for
 * the float64 sums, q NULL for a tick without gradient (the window still follows a); adds
 * the bias gradient q at once. A window holds up to n_grad_max consecutive ticks:
 * its first tick's a, then only x (the sums of the later ticks run over the rows whose x
 * is not 0). Flushes first when the buffer is full or the ticks are not consecutive. */
void defer_grad_push(struct eproj *p, const real *a, const real *x, const real *q, real lambda,
                     uint64_t tick);

/* Adds the window's gradients to the float64 sums and empties it; call it before
 * anything changes a outside its recurrence (a trace reset or restore). The sums equal
 * the per-tick float64 sums to the rounding of the window's sums in real (a recurrence
 * and a sum of up to n_grad_max terms per weight), far below the references'
 * tolerance. */
void defer_grad_flush(struct eproj *p);

#endif
