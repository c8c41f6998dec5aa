/* Deferred rank-one steps and buffered gradient sums (see defer.h). */
#include "defer.h"

#include <string.h>

#include "learn.h"
#include "op.h"

int
defer_pair_ok(const struct eproj *p, const real *a, const real *q, double lr)
{
    double bound =
        fabs(lr) * learn_max_abs(p->I, a) * learn_max_abs(p->O, q) * (double)p->n_pend_max;
    return bound < DEFER_PAIR_LIMIT; /* false for NaN */
}

void
defer_push(struct eproj *p, const real *a, const real *q, real lr)
{
    int64_t r = p->n_pend_max, k = p->n_pend;
    real nlr = -lr;
    for (int64_t i = 0; i < p->I; i++)
        p->pa[i * r + k] = nlr * a[i];
    /* b: dense [r][O] (a row of b is contiguous for the row passes); sparse [O][r] (the
     * pairs of one stored entry are contiguous, one vector product per entry) */
    if (p->d->op == MODEL_OP_SPARSE)
        for (int64_t o = 0; o < p->O; o++)
            p->pb[o * r + k] = q[o];
    else
        memcpy(p->pb + k * p->O, q, (size_t)p->O * sizeof(real));
    p->n_pend++;
}

/* Dense: s = sum_k a_k[i] b_k[o] over the pending pairs, in order, skipping a_k[i] = 0
 * (the pairs are finite, so a skipped term would only have added a zero). */
static inline real
pair_sum(const struct eproj *p, const real *ai, int64_t o)
{
    real s = R(0.0);
    for (int64_t k = 0; k < p->n_pend; k++)
        if (ai[k] != R(0.0))
            s += ai[k] * p->pb[k * p->O + o];
    return s;
}

enum { BLOCK = 128 };

/* The sparse pair sums. For the stored entry (i, o) the pending pairs' part is
 *   s = lane_sum(v),  v[j] = 0 + sum over chunks c = 0, 1, ... in order of
 *                             a_{8c+j}[i] b_{8c+j}[o]   (pairs k >= n_pend left out),
 * eight lanes so that one entry's pairs (contiguous in pb's [O][r] layout) are a few
 * vector products and one reduction. Every sparse reader uses this order, vectorised
 * (flush, forward) or not (backward, export), so all see the same bits. A row whose
 * factors are all 0 is skipped: its readers see W itself. */
/* PREFETCH: the entries ahead whose pairs are fetched while this one is summed (the
 * columns are random, so the hardware prefetcher cannot guess them). */
enum { LANES = DEFER_LANES, PREFETCH = 16 };
typedef real vreal __attribute__((vector_size(LANES * sizeof(real))));
typedef real_bits vbits __attribute__((vector_size(LANES * sizeof(real_bits))));

static inline real
lane_sum(const real *v)
{
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

/* Row i's factors into av (p->pc, [r rounded up to LANES]) as chunks of LANES, zero
 * beyond n_pend; returns the number of chunks, 0 when every factor is 0. */
static int64_t
row_chunks(const struct eproj *p, int64_t i, real *av)
{
    int64_t n = p->n_pend, nc = (n + LANES - 1) / LANES;
    const real *ai = p->pa + i * p->n_pend_max;
    int any = 0;
    for (int64_t k = 0; k < nc * LANES; k++) {
        av[k] = k < n ? ai[k] : R(0.0);
        any |= av[k] != R(0.0);
    }
    return any ? nc : 0;
}

/* *m: the lanes of the last chunk that hold a pair. */
static void
last_lanes(const struct eproj *p, vbits *m)
{
    int64_t base = (p->n_pend - 1) / LANES * LANES;
    for (int j = 0; j < LANES; j++)
        (*m)[j] = base + j < p->n_pend ? ~(real_bits)0 : 0;
}

/* s for the entry in column o, vectorised: b of lanes beyond n_pend is masked (a slot
 * there may hold anything, even from a restored checkpoint). */
static inline real
entry_sum(const struct eproj *p, const real *av, int64_t nc, const vbits *last, int64_t o)
{
    const real *b = p->pb + o * p->n_pend_max;
    vreal v = {0}, a, bv;
    for (int64_t c = 0; c < nc - 1; c++) {
        memcpy(&a, av + c * LANES, sizeof a);
        memcpy(&bv, b + c * LANES, sizeof bv);
        v += a * bv;
    }
    memcpy(&a, av + (nc - 1) * LANES, sizeof a);
    memcpy(&bv, b + (nc - 1) * LANES, sizeof bv);
    bv = (vreal)((vbits)bv & *last);
    v += a * bv;
    real l[LANES];
    memcpy(l, &v, sizeof l);
    return lane_sum(l);
}

/* The same s without vectors, for readers of single entries; *skip is set when row i's
 * factors are all 0. */
static real
entry_sum_scalar(const struct eproj *p, int64_t i, int64_t o, int *skip)
{
    int64_t n = p->n_pend, r = p->n_pend_max;
    const real *ai = p->pa + i * r, *b = p->pb + o * r;
    real v[LANES] = {0};
    int any = 0;
    for (int64_t k = 0; k < n; k++) {
        v[k % LANES] += ai[k] * b[k];
        any |= ai[k] != R(0.0);
    }
    *skip = !any;
    return lane_sum(v);
}

/* row [O] += sum_k a_k[i] b_k, each element summed as pair_sum does (0 + the terms with
 * a_k[i] != 0, in order), in registers: GROUP chunks of LANES columns at once, so that
 * their independent sums hide the latency of each one's chain over k. A row whose a_k[i]
 * are all 0 is left untouched. */
static void
flush_row_dense(const struct eproj *p, const real *ai, real *row)
{
    enum { GROUP = 4 };
    int64_t O = p->O, n = p->n_pend, o = 0;
    const real *pb = p->pb;
    int any = 0;
    for (int64_t k = 0; k < n; k++)
        any |= ai[k] != R(0.0);
    if (!any)
        return;
    for (; o + GROUP * LANES <= O; o += GROUP * LANES) {
        vreal s[GROUP] = {{0}}, b, w;
        for (int64_t k = 0; k < n; k++) {
            real a = ai[k];
            if (a == R(0.0))
                continue;
            for (int g = 0; g < GROUP; g++) {
                memcpy(&b, pb + k * O + o + g * LANES, sizeof b);
                s[g] += a * b;
            }
        }
        for (int g = 0; g < GROUP; g++) {
            memcpy(&w, row + o + g * LANES, sizeof w);
            w += s[g];
            memcpy(row + o + g * LANES, &w, sizeof w);
        }
    }
    for (; o < O; o++)
        row[o] += pair_sum(p, ai, o);
}

/* Adds the pending pairs to rows [lo, hi) of W; av: [r rounded up to LANES] scratch. */
static void
flush_rows(struct eproj *p, int64_t lo, int64_t hi, real *av)
{
    int64_t r = p->n_pend_max;
    if (p->d->op == MODEL_OP_DENSE) {
        for (int64_t i = lo; i < hi; i++)
            flush_row_dense(p, p->pa + i * r, p->w.values + i * p->O);
    } else {
        vbits last;
        last_lanes(p, &last);
        const int32_t *idx = p->w.indices;
        int64_t ahead = p->w.indptr[hi] - PREFETCH;
        for (int64_t i = lo; i < hi; i++) {
            int64_t nc = row_chunks(p, i, av);
            if (!nc)
                continue;
            for (int64_t e = p->w.indptr[i]; e < p->w.indptr[i + 1]; e++) {
                if (e < ahead) /* the rows run in order: fetch across their ends */
                    __builtin_prefetch(p->pb + idx[e + PREFETCH] * r);
                p->w.values[e] += entry_sum(p, av, nc, &last, idx[e]);
            }
        }
    }
}

void
defer_flush(struct eproj *p)
{
    if (p->n_pend == 0)
        return;
    flush_rows(p, 0, p->I, p->pc);
    p->n_pend = 0;
}

struct flush_job {
    struct eproj *p;
    int n_parts;
};

static void
flush_part(void *arg, int part)
{
    struct flush_job *j = arg;
    int64_t lo, hi, rl = (j->p->n_pend_max + LANES - 1) / LANES * LANES;
    engine_part_rows(j->p->I, j->n_parts, part, &lo, &hi);
    flush_rows(j->p, lo, hi, j->p->pc + part * rl);
}

void
defer_flush_parts(struct engine *e, struct eproj *p)
{
    if (p->n_pend == 0)
        return;
    int64_t work = p->count * p->n_pend;
    struct flush_job j = {p, engine_n_parts(e, work)};
    engine_run_parts(e, j.n_parts, work, flush_part, &j);
    p->n_pend = 0;
}

void
defer_forward(struct eproj *p, real *y, const real *x)
{
    int64_t r = p->n_pend_max, I = p->I, O = p->O;
    if (p->d->op == MODEL_OP_SPARSE) {
        if (p->n_pend == 0) {
            op_sparse_forward(I, O, y, p->w.indptr, p->w.indices, p->w.values, x, p->w.bias);
            return;
        }
        op_dense_init(O, y, p->w.bias);
        vbits last;
        last_lanes(p, &last);
        for (int64_t i = 0; i < I; i++) {
            real xi = x[i];
            if (xi == R(0.0))
                continue; /* event-driven, as op_sparse_forward */
            int64_t nc = row_chunks(p, i, p->pc);
            const int32_t *idx = p->w.indices;
            const real *w = p->w.values;
            if (!nc)
                for (int64_t e = p->w.indptr[i]; e < p->w.indptr[i + 1]; e++)
                    y[idx[e]] += xi * w[e];
            else
                for (int64_t e = p->w.indptr[i], end = p->w.indptr[i + 1]; e < end; e++) {
                    if (e + PREFETCH < end)
                        __builtin_prefetch(p->pb + idx[e + PREFETCH] * r);
                    y[idx[e]] += xi * (w[e] + entry_sum(p, p->pc, nc, &last, idx[e]));
                }
        }
        return;
    }
    if (p->n_pend == 0)
        return;
    real *c = p->pc;
    for (int64_t k = 0; k < p->n_pend; k++)
        c[k] = R(0.0);
    for (int64_t i = 0; i < I; i++) {
        real xi = x[i];
        if (xi == R(0.0))
            continue;
        const real *ai = p->pa + i * r;
        for (int64_t k = 0; k < p->n_pend; k++)
            c[k] += xi * ai[k];
    }
    for (int64_t k = 0; k < p->n_pend; k++) {
        const real *b = p->pb + k * O;
        real ck = c[k];
        for (int64_t o = 0; o < O; o++)
            y[o] += ck * b[o];
    }
}

void
defer_backward(const struct eproj *p, int64_t row0, int64_t n_rows, real *dx, const real *dy)
{
    int64_t r = p->n_pend_max, O = p->O;
    if (p->d->op == MODEL_OP_SPARSE) {
        for (int64_t i = 0; i < n_rows; i++) {
            real s = R(0.0);
            for (int64_t e = p->w.indptr[row0 + i]; e < p->w.indptr[row0 + i + 1]; e++) {
                int32_t o = p->w.indices[e];
                int skip;
                real ps = entry_sum_scalar(p, row0 + i, o, &skip);
                s += (skip ? p->w.values[e] : p->w.values[e] + ps) * dy[o];
            }
            dx[i] += s;
        }
        return;
    }
    op_dense_backward(n_rows, O, dx, p->w.values + row0 * O, dy);
    if (p->n_pend == 0)
        return;
    real *bq = p->pc; /* b_k . dy */
    for (int64_t k = 0; k < p->n_pend; k++) {
        const real *b = p->pb + k * O;
        real s = R(0.0);
        for (int64_t o = 0; o < O; o++)
            s += b[o] * dy[o];
        bq[k] = s;
    }
    for (int64_t i = 0; i < n_rows; i++) {
        const real *ai = p->pa + (row0 + i) * r;
        real s = R(0.0);
        for (int64_t k = 0; k < p->n_pend; k++)
            s += ai[k] * bq[k];
        dx[i] += s;
    }
}

void
defer_effective(const struct eproj *p, int64_t lo, int64_t hi, real *out)
{
    memcpy(out, p->w.values + lo, (size_t)(hi - lo) * sizeof(real));
    if (!p->defers || p->n_pend == 0)
        return;
    int64_t r = p->n_pend_max;
    if (p->d->op == MODEL_OP_DENSE) {
        for (int64_t e = lo; e < hi; e++) {
            int64_t i = e / p->O, o = e % p->O;
            out[e - lo] += pair_sum(p, p->pa + i * r, o);
        }
        return;
    }
    /* the row of element lo: the last i with indptr[i] <= lo (binary search) */
    int64_t a = 0, b = p->I;
    while (b - a > 1) {
        int64_t m = a + (b - a) / 2;
        if (p->w.indptr[m] <= lo)
            a = m;
        else
            b = m;
    }
    for (int64_t e = lo, i = a; e < hi; e++) {
        while (p->w.indptr[i + 1] <= e)
            i++;
        int skip;
        real s = entry_sum_scalar(p, i, p->w.indices[e], &skip);
        if (!skip)
            out[e - lo] += s;
    }
}

void
defer_grad_push(struct eproj *p, const real *a, const real *q)
{
    if (p->n_grad == DEFER_GRAD_PAIRS)
        defer_grad_flush(p);
    int64_t k = p->n_grad, G = DEFER_GRAD_PAIRS;
    if (p->d->op == MODEL_OP_ELEMWISE) {
        for (int64_t o = 0; o < p->O; o++)
            p->sum_w[o] += (double)(a[o] * q[o]);
    } else {
        for (int64_t i = 0; i < p->I; i++)
            p->ga[i * G + k] = a[i];
        memcpy(p->gb + k * p->O, q, (size_t)p->O * sizeof(real));
        p->n_grad++;
    }
    if (p->sum_b)
        for (int64_t o = 0; o < p->O; o++)
            p->sum_b[o] += (double)q[o];
}

void
defer_grad_flush(struct eproj *p)
{
    int64_t G = DEFER_GRAD_PAIRS, O = p->O, n = p->n_grad;
    if (n == 0)
        return;
    /* The buffered gradients are summed in real first (the product A^T B of their
     * factors, which vectorises over o), then added to the float64 sums: one float64 pass
     * per DEFER_GRAD_PAIRS ticks instead of one per tick. */
    real *rowsum = p->scratch; /* [2 K O] >= O; defer_flush is not running */
    for (int64_t i = 0; i < p->I; i++) {
        const real *ai = p->ga + i * G;
        int64_t k = 0;
        while (k < n && ai[k] == R(0.0))
            k++;
        if (k == n)
            continue; /* the per-tick path skips these rows too */
        if (p->d->op == MODEL_OP_DENSE) {
            const real *b = p->gb + k * O;
            for (int64_t o = 0; o < O; o++)
                rowsum[o] = ai[k] * b[o];
            for (k++; k < n; k++) {
                if (ai[k] == R(0.0))
                    continue;
                real a = ai[k];
                b = p->gb + k * O;
                for (int64_t o = 0; o < O; o++)
                    rowsum[o] += a * b[o];
            }
            double *row = p->sum_w + i * O;
            for (int64_t o = 0; o < O; o++)
                row[o] += (double)rowsum[o];
        } else {
            for (int64_t e0 = p->w.indptr[i]; e0 < p->w.indptr[i + 1]; e0 += BLOCK) {
                int64_t m = p->w.indptr[i + 1] - e0 < BLOCK ? p->w.indptr[i + 1] - e0 : BLOCK;
                const int32_t *idx = p->w.indices + e0;
                real sb[BLOCK];
                for (int64_t e = 0; e < m; e++)
                    sb[e] = R(0.0);
                for (int64_t j = k; j < n; j++) {
                    real a = ai[j];
                    if (a == R(0.0))
                        continue;
                    const real *b = p->gb + j * O;
                    for (int64_t e = 0; e < m; e++)
                        sb[e] += a * b[idx[e]];
                }
                for (int64_t e = 0; e < m; e++)
                    p->sum_w[e0 + e] += (double)sb[e];
            }
        }
    }
    p->n_grad = 0;
}
