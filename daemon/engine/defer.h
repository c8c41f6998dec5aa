/* Deferred rank-one steps (DESIGN §4.4 "Deferred rank-one steps") and the float64
 * gradient sums of `etraced run` kept as rank-one pairs. Engine layer, internal to the
 * engine (engine.c and learn.c call it; every function runs on the engine's thread).
 *
 * A projection whose sgd step is rank one keeps it as a pending pair (a = -lr * row
 * factor, b = column factor) instead of writing W; the pairs are added to W at flushes
 * scheduled by tick number. Every reader of W sees W + sum_k a_k b_k^T: for element (i, o)
 * that is fl(W[i,o] + s) with s = sum over pairs in order of a_k[i] b_k[o] (pairs whose
 * a_k[i] is 0 skipped), the value a flush writes, so export, norms and checkpoints agree
 * with the weights after the flush bit for bit. The dense forward and backward use the
 * low-rank form instead (x W + sum_k (x . a_k) b_k), which is equal to rounding.
 *
 * Layout: pa [I][defer] (the pairs' row factors, row-major by input so that one row's
 * factors are contiguous); pb dense [defer][O], sparse [O][defer] (one stored entry's
 * pairs contiguous). For a sparse weight s is summed in DEFER_LANES interleaved lanes
 * (defer.c) rather than strictly in order, so that one entry's pairs are a few vector
 * products; every sparse reader uses that same order. The gradient window of the sums:
 * ga [DEFER_GRAD_PAIRS][I], gb [DEFER_GRAD_PAIRS][O]. */
#ifndef ETRACE_DEFER_H
#define ETRACE_DEFER_H

#include "engine_int.h"

/* The sparse pair sums run in LANES-wide chunks: pb has LANES spare values at its end and
 * pc holds r rounded up to LANES values per tick part (engine.c's layout). */
enum { DEFER_LANES = 8 };

/* Ticks of gradients buffered before they are added to the float64 sums. */
enum { DEFER_GRAD_PAIRS = 64 };

/* A pair is refused when max|a| max|b| r reaches this bound, so that a flush of r pairs
 * stays far from overflow (2^100 float, 2^900 double). */
#if defined(REAL_DOUBLE)
#define DEFER_PAIR_LIMIT 0x1p900
#else
#define DEFER_PAIR_LIMIT 0x1p100
#endif

/* Keeps the pair (-lr * a, q) pending on p (a: [I], q: [O]). The caller has checked it
 * (defer_pair_ok) and flushed a full list. */
void defer_push(struct eproj *p, const real *a, const real *q, real lr);

/* max|a| max|b| r for the pair (-lr a, q) is below DEFER_PAIR_LIMIT (false for NaN). */
int defer_pair_ok(const struct eproj *p, const real *a, const real *q, double lr);

/* Adds every pending pair to W, in order, and empties the list. */
void defer_flush(struct eproj *p);

/* The same as tick parts over W's rows (engine_run_parts; each row's sums unchanged), on
 * the tick thread. */
void defer_flush_parts(struct engine *e, struct eproj *p);

/* y [O] += the pending pairs' part of x W (dense: sum_k (x . a_k) b_k). For a sparse
 * projection the whole forward is done here (op_sparse_forward over W + pairs, masked to
 * the stored entries): y is initialised from the bias. */
void defer_forward(struct eproj *p, real *y, const real *x);

/* dx [n_rows] += (W + pairs)[row0 .. row0 + n_rows) dy (the within-tick backward). */
void defer_backward(const struct eproj *p, int64_t row0, int64_t n_rows, real *dx, const real *dy);

/* out [hi - lo] = the weights a reader sees, elements [lo, hi) in storage order. */
void defer_effective(const struct eproj *p, int64_t lo, int64_t hi, real *out);

/* Keeps this tick's gradient a (x) q (the rank-one gradient of an ES or instant
 * projection, a = lambda a_prev + x: e_x for ES, x itself for instant with lambda 0) for
 * the float64 sums, q NULL for a tick without gradient (the window still follows a); adds
 * the bias gradient q at once. A window holds up to DEFER_GRAD_PAIRS consecutive ticks:
 * its first tick's a, then only x (the sums of the later ticks run over the rows whose x
 * is not 0). Flushes first when the buffer is full or the ticks are not consecutive. */
void defer_grad_push(struct eproj *p, const real *a, const real *x, const real *q, real lambda,
                     uint64_t tick);

/* Adds the window's gradients to the float64 sums and empties it; call it before
 * anything changes a outside its recurrence (a trace reset or restore). The sums equal
 * the per-tick float64 sums to the rounding of the window's sums in real (a recurrence
 * and a sum of up to DEFER_GRAD_PAIRS terms per weight), far below the references'
 * tolerance. */
void defer_grad_flush(struct eproj *p);

#endif
