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

/* Where b_k[o] is kept: dense [r][O] (a row of b is contiguous for the row passes);
 * sparse [O][r] (the pairs of one stored entry share a cache line). */
static inline int64_t
b_at(const struct eproj *p, int64_t k, int64_t o)
{
    return p->d->op == MODEL_OP_SPARSE ? o * p->n_pend_max + k : k * p->O + o;
}

void
defer_push(struct eproj *p, const real *a, const real *q, real lr)
{
    int64_t r = p->n_pend_max, k = p->n_pend;
    real nlr = -lr;
    for (int64_t i = 0; i < p->I; i++)
        p->pa[i * r + k] = nlr * a[i];
    if (p->d->op == MODEL_OP_SPARSE)
        for (int64_t o = 0; o < p->O; o++)
            p->pb[o * r + k] = q[o];
    else
        memcpy(p->pb + k * p->O, q, (size_t)p->O * sizeof(real));
    p->n_pend++;
}

/* s = sum_k a_k[i] b_k[o] over the pending pairs, in order, skipping a_k[i] = 0 (the
 * pairs are finite, so a skipped term would only have added a zero). */
static inline real
pair_sum(const struct eproj *p, const real *ai, int64_t o)
{
    real s = R(0.0);
    for (int64_t k = 0; k < p->n_pend; k++)
        if (ai[k] != R(0.0))
            s += ai[k] * p->pb[b_at(p, k, o)];
    return s;
}

enum { BLOCK = 128 };

/* s[e] = pair_sum(p, ai, idx[e]) for the n <= BLOCK stored entries of one sparse row,
 * vectorised across entries (each entry still sums its pairs in order). */
static void
pair_sums_sparse(const struct eproj *p, const real *ai, const int32_t *idx, int64_t n, real *s)
{
    int64_t r = p->n_pend_max;
    for (int64_t e = 0; e < n; e++)
        s[e] = R(0.0);
    for (int64_t k = 0; k < p->n_pend; k++) {
        real a = ai[k];
        if (a == R(0.0))
            continue;
        const real *b = p->pb + k;
        for (int64_t e = 0; e < n; e++)
            s[e] += a * b[(int64_t)idx[e] * r];
    }
}

/* rowsum [O] = sum_k a_k[i] b_k, the dense form of pair_sum for one row; returns 0 when
 * every a_k[i] is 0 (rowsum untouched). */
static int
row_sum(const struct eproj *p, const real *ai, real *rowsum)
{
    int64_t O = p->O, k = 0;
    while (k < p->n_pend && ai[k] == R(0.0))
        k++;
    if (k == p->n_pend)
        return 0;
    const real *b = p->pb + k * O;
    for (int64_t o = 0; o < O; o++)
        rowsum[o] = R(0.0) + ai[k] * b[o]; /* 0 + x: the bits pair_sum gives */
    for (k++; k < p->n_pend; k++) {
        if (ai[k] == R(0.0))
            continue;
        b = p->pb + k * O;
        real a = ai[k];
        for (int64_t o = 0; o < O; o++)
            rowsum[o] += a * b[o];
    }
    return 1;
}

void
defer_flush(struct eproj *p)
{
    if (p->n_pend == 0)
        return;
    int64_t r = p->n_pend_max;
    if (p->d->op == MODEL_OP_DENSE) {
        real *rowsum = p->scratch; /* [2 K O] >= O */
        for (int64_t i = 0; i < p->I; i++) {
            if (!row_sum(p, p->pa + i * r, rowsum))
                continue;
            real *row = p->w.values + i * p->O;
            for (int64_t o = 0; o < p->O; o++)
                row[o] += rowsum[o];
        }
    } else {
        real s[BLOCK];
        for (int64_t i = 0; i < p->I; i++) {
            const real *ai = p->pa + i * r;
            for (int64_t e0 = p->w.indptr[i]; e0 < p->w.indptr[i + 1]; e0 += BLOCK) {
                int64_t n = p->w.indptr[i + 1] - e0 < BLOCK ? p->w.indptr[i + 1] - e0 : BLOCK;
                pair_sums_sparse(p, ai, p->w.indices + e0, n, s);
                real *w = p->w.values + e0;
                for (int64_t e = 0; e < n; e++)
                    w[e] += s[e];
            }
        }
    }
    p->n_pend = 0;
}

void
defer_forward(struct eproj *p, real *y, const real *x)
{
    int64_t r = p->n_pend_max, I = p->I, O = p->O;
    if (p->d->op == MODEL_OP_SPARSE) {
        op_dense_init(O, y, p->w.bias);
        for (int64_t i = 0; i < I; i++) {
            real xi = x[i];
            if (xi == R(0.0))
                continue; /* event-driven, as op_sparse_forward */
            const real *ai = p->pa + i * r;
            real s[BLOCK];
            for (int64_t e0 = p->w.indptr[i]; e0 < p->w.indptr[i + 1]; e0 += BLOCK) {
                int64_t n = p->w.indptr[i + 1] - e0 < BLOCK ? p->w.indptr[i + 1] - e0 : BLOCK;
                const int32_t *idx = p->w.indices + e0;
                pair_sums_sparse(p, ai, idx, n, s);
                for (int64_t e = 0; e < n; e++)
                    y[idx[e]] += xi * (p->w.values[e0 + e] + s[e]);
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
            const real *ai = p->pa + (row0 + i) * r;
            real s = R(0.0);
            for (int64_t e = p->w.indptr[row0 + i]; e < p->w.indptr[row0 + i + 1]; e++) {
                int32_t o = p->w.indices[e];
                s += (p->w.values[e] + pair_sum(p, ai, o)) * dy[o];
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
        out[e - lo] += pair_sum(p, p->pa + i * r, p->w.indices[e]);
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
