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
defer_close(struct eproj *p)
{
    p->pseg[DEFER_SEG_FIRST] = -1.0;
}

int
defer_seg_ok(const struct eproj *p)
{
    const double *g = p->pseg;
    double f = g[DEFER_SEG_FIRST];
    if (f == -1.0)
        return 1;
    /* an open segment: its first pair pending, and a bound a push would have accepted */
    double bound = g[DEFER_SEG_UMAX] * g[DEFER_SEG_BSUM] * (double)p->n_pend_max;
    return f >= 0.0 && f < (double)p->n_pend && f == floor(f) && g[DEFER_SEG_TICK] >= 0.0 &&
           g[DEFER_SEG_TICK] < 0x1p53 && isfinite(g[DEFER_SEG_LR]) && g[DEFER_SEG_UMAX] >= 0.0 &&
           g[DEFER_SEG_BSUM] >= 0.0 && bound < DEFER_PAIR_LIMIT; /* false for NaN */
}

/* max |c a[i]| over i < n: rounding is monotone, so it is fl(|c| max|a|) unless NaN. */
static double
scaled_max(int64_t n, const real *a, real c)
{
    return (double)(R(fabs)(c) * (real)learn_max_abs(n, a));
}

/* The array work of a push (pair k, segment from `first`): the part's rows of u_k and
 * columns of B; pw runs through the same powers in every part. sparse: slot k of u is all
 * 0 and the row factor is an input (mostly 0), so only its non-zeros are written. A zero
 * factor is stored as +0 either way, so that the state has the same bytes whichever path
 * wrote it. */
struct push_job {
    struct eproj *p;
    const real *row, *q;
    real nlr, lambda;
    int64_t first, k;
    int n_parts, sparse;
};

/* The next row of u_k to write from i on: every row, or (sparse) the next input that fired,
 * found a block of zeros at a time. */
static inline int64_t
push_next(const struct push_job *j, int64_t i, int64_t i1)
{
    return j->sparse ? op_next_event(j->row, i, i1) : i;
}

static void
push_part(void *arg, int part)
{
    const struct push_job *j = arg;
    struct eproj *p = j->p;
    int64_t r = p->n_pend_max, O = p->O, i0, i1, o0, o1;
    engine_part_rows(p->I, j->n_parts, part, &i0, &i1);
    engine_part_rows(O, j->n_parts, part, &o0, &o1);
    for (int64_t i = push_next(j, i0, i1); i < i1; i = push_next(j, i + 1, i1)) {
        real u = j->nlr * j->row[i];
        p->pa[i * r + j->k] = u != R(0.0) ? u : R(0.0);
    }
    /* B_s += lambda^(k - s) q for the segment's earlier pairs (streams over O); B_k = q */
    real pw = R(1.0);
    for (int64_t s = j->k - 1; s >= j->first; s--) {
        real *b = p->pb + s * O;
        pw *= j->lambda;
        for (int64_t o = o0; o < o1; o++)
            b[o] += pw * j->q[o];
    }
    memcpy(p->pb + j->k * O + o0, j->q + o0, (size_t)(o1 - o0) * sizeof(real));
}

void
defer_push(struct engine *e, struct eproj *p, const real *a, const real *x, const real *q, real lr,
           real lambda, uint64_t tick)
{
    int64_t r = p->n_pend_max, k = p->n_pend, I = p->I, O = p->O;
    double *g = p->pseg, bmax = learn_max_abs(O, q), umax = 0.0, bsum = 0.0;
    real nlr = -lr;
    int cont = x && lambda > R(0.0) && g[DEFER_SEG_FIRST] >= 0.0 &&
               (double)tick == g[DEFER_SEG_TICK] + 1.0 && (double)lr == g[DEFER_SEG_LR];
    if (cont) { /* the bound of the segment with this pair in it */
        umax = scaled_max(I, x, nlr);
        umax = umax > g[DEFER_SEG_UMAX] ? umax : g[DEFER_SEG_UMAX];
        bsum = g[DEFER_SEG_BSUM] + bmax;
        cont = umax * bsum * (double)r < DEFER_PAIR_LIMIT; /* false for NaN */
    }
    int64_t first = cont ? (int64_t)g[DEFER_SEG_FIRST] : k;
    int clean = k < 64 && (p->pa_zero >> k & 1);
    struct push_job j = {p, cont ? x : a, q, nlr, lambda, first, k, 1, cont && clean};
    if (k < 64)
        p->pa_zero &= ~((uint64_t)1 << k); /* slot k holds this pair now */
    if (e) {
        int64_t work = (k - first + 1) * O + I; /* B rows written, then u_k */
        j.n_parts = engine_n_parts(e, work);
        engine_run_parts(e, j.n_parts, work, push_part, &j);
    } else {
        push_part(&j, 0);
    }
    if (!cont) {
        umax = scaled_max(I, a, nlr);
        bsum = bmax;
    }
    g[DEFER_SEG_FIRST] = (double)first;
    g[DEFER_SEG_TICK] = (double)tick;
    g[DEFER_SEG_LR] = (double)lr;
    g[DEFER_SEG_UMAX] = umax;
    g[DEFER_SEG_BSUM] = bsum;
    p->n_pend++;
}

/* Vectors of LANES reals for the dense row passes; CHUNK: the entries of a sparse row
 * whose pairs are summed together (chunk_sums). */
enum { LANES = DEFER_LANES, CHUNK = 64 };
typedef real vreal __attribute__((vector_size(LANES * sizeof(real))));

/* Row i's non-zero row factors, in pair order: c[m] = u_s[i], at[m] = s; returns m. The
 * readers that own scratch (c, at: [r]) gather them first so that their passes run over
 * those only, without a branch per pair that the random pattern of the factors (mostly 0
 * under factored pairs) would mispredict. */
static int64_t
row_factors(const struct eproj *p, int64_t i, real *c, int64_t *at)
{
    int64_t n = p->n_pend, m = 0;
    const real *ai = p->pa + i * p->n_pend_max;
    for (int64_t k = 0; k < n; k++) {
        c[m] = ai[k];
        at[m] = k;
        m += ai[k] != R(0.0);
    }
    return m;
}

/* Zeroes row i's factors of the pairs just flushed (a row without a non-zero one is all
 * 0 already), so that a push into a zeroed slot writes only its non-zeros (push_part). */
static inline void
clear_row(struct eproj *p, int64_t i)
{
    memset(p->pa + i * p->n_pend_max, 0, (size_t)p->n_pend * sizeof(real));
}

/* After a flush of every row: the flushed pairs' slots of u are all 0; no pair pends. */
static void
mark_flushed(struct eproj *p)
{
    p->pa_zero |= p->n_pend >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << p->n_pend) - 1;
    p->n_pend = 0;
    defer_close(p);
}

enum { GROUP = 4 };

/* s[g] (g < GROUP) = 0 + sum over j < m with a[j] != 0, in order, of a[j] b[k O + o + g
 * LANES ...], k = at[j] (at NULL: k = j): GROUP chunks of LANES columns at once, so that
 * their independent sums hide the latency of each one's chain over j (four named
 * variables: an array would live in memory, not in registers). */
static inline void
group_sums(const real *b, int64_t O, const real *a, const int64_t *at, int64_t m, int64_t o,
           vreal *s)
{
    vreal s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, v0, v1, v2, v3;
    for (int64_t j = 0; j < m; j++) {
        if (a[j] == R(0.0))
            continue;
        const real *bk = b + (at ? at[j] : j) * O + o;
        memcpy(&v0, bk, sizeof v0);
        memcpy(&v1, bk + LANES, sizeof v1);
        memcpy(&v2, bk + 2 * LANES, sizeof v2);
        memcpy(&v3, bk + 3 * LANES, sizeof v3);
        s0 += a[j] * v0;
        s1 += a[j] * v1;
        s2 += a[j] * v2;
        s3 += a[j] * v3;
    }
    s[0] = s0;
    s[1] = s1;
    s[2] = s2;
    s[3] = s3;
}

/* The same sums for 2 GROUP chunks: eight chains of LANES floats hide an add's latency
 * where four could not (a flush of a weight that stays in cache waits on those adds), and
 * still fit AVX2's sixteen registers. Float only: double keeps four. Each element is the
 * same chain in the same order as group_sums, so the bits do not depend on the grouping. */
#ifndef REAL_DOUBLE
enum { GROUP2 = 2 * GROUP };
static inline void
group_sums2(const real *b, int64_t O, const real *a, const int64_t *at, int64_t m, int64_t o,
            vreal *s)
{
    vreal s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0}, s7 = {0}, v;
    for (int64_t j = 0; j < m; j++) {
        if (a[j] == R(0.0))
            continue;
        const real *bk = b + at[j] * O + o;
        real aj = a[j];
        memcpy(&v, bk, sizeof v);
        s0 += aj * v;
        memcpy(&v, bk + LANES, sizeof v);
        s1 += aj * v;
        memcpy(&v, bk + 2 * LANES, sizeof v);
        s2 += aj * v;
        memcpy(&v, bk + 3 * LANES, sizeof v);
        s3 += aj * v;
        memcpy(&v, bk + 4 * LANES, sizeof v);
        s4 += aj * v;
        memcpy(&v, bk + 5 * LANES, sizeof v);
        s5 += aj * v;
        memcpy(&v, bk + 6 * LANES, sizeof v);
        s6 += aj * v;
        memcpy(&v, bk + 7 * LANES, sizeof v);
        s7 += aj * v;
    }
    s[0] = s0;
    s[1] = s1;
    s[2] = s2;
    s[3] = s3;
    s[4] = s4;
    s[5] = s5;
    s[6] = s6;
    s[7] = s7;
}
#endif

/* The same sum for one column, in the same order. */
static inline real
column_sum(const real *b, int64_t O, const real *a, const int64_t *at, int64_t m, int64_t o)
{
    real s = R(0.0);
    for (int64_t j = 0; j < m; j++)
        if (a[j] != R(0.0))
            s += a[j] * b[(at ? at[j] : j) * O + o];
    return s;
}

/* row [O] += the row's pairs (c, at: its m non-zero factors, row_factors), each element
 * summed as column_sum does, in vector registers. */
static void
flush_row_dense(const struct eproj *p, real *row, const real *c, const int64_t *at, int64_t m)
{
    int64_t O = p->O, o = 0;
#ifndef REAL_DOUBLE
    for (; o + GROUP2 * LANES <= O; o += GROUP2 * LANES) {
        vreal s[GROUP2], w;
        group_sums2(p->pb, O, c, at, m, o, s);
        for (int g = 0; g < GROUP2; g++) {
            memcpy(&w, row + o + g * LANES, sizeof w);
            w += s[g];
            memcpy(row + o + g * LANES, &w, sizeof w);
        }
    }
#endif
    for (; o + GROUP * LANES <= O; o += GROUP * LANES) {
        vreal s[GROUP], w;
        group_sums(p->pb, O, c, at, m, o, s);
        for (int g = 0; g < GROUP; g++) {
            memcpy(&w, row + o + g * LANES, sizeof w);
            w += s[g];
            memcpy(row + o + g * LANES, &w, sizeof w);
        }
    }
    for (; o < O; o++)
        row[o] += column_sum(p->pb, O, c, at, m, o);
}

/* t[k] (k < n) = column_sum over the factors (c, at: m of them, all non-zero, as
 * row_factors gives) at column idx[k]: the same terms in the same order, but pair by pair
 * over a chunk of a sparse row's entries, so that the chunk's gathers from one B row are
 * independent loads in flight together. (Entry after entry, each random column's miss
 * was waited on before the next was issued.) 0 + the first term, as column_sum, keeps the
 * sign of a zero. */
static inline void
chunk_sums(const real *pb, int64_t O, const real *c, const int64_t *at, int64_t m,
           const int32_t *idx, int64_t n, real *t)
{
    const real *b = pb + at[0] * O;
    real c0 = c[0];
    for (int64_t k = 0; k < n; k++)
        t[k] = R(0.0) + c0 * b[idx[k]];
    for (int64_t j = 1; j < m; j++) {
        const real *bj = pb + at[j] * O;
        real cj = c[j];
        for (int64_t k = 0; k < n; k++)
            t[k] += cj * bj[idx[k]];
    }
}

/* Adds the pending pairs to rows [lo, hi) of W; c, at: [r] scratch. A sparse entry (i, o)
 * gets column_sum over its row's factors at column o: for most rows of a spiking input
 * that is the one factor of the window's first pair, so the entry reads one value of the
 * [O] row B_0 rather than a line of the whole table. */
static void
flush_rows(struct eproj *p, int64_t lo, int64_t hi, real *c, int64_t *at)
{
    if (p->d->op == MODEL_OP_DENSE) {
        for (int64_t i = lo; i < hi; i++) {
            int64_t m = row_factors(p, i, c, at);
            if (m) {
                flush_row_dense(p, p->w.values + i * p->O, c, at, m);
                clear_row(p, i);
            }
        }
        return;
    }
    const int32_t *idx = p->w.indices;
    real *w = p->w.values;
    for (int64_t i = lo; i < hi; i++) {
        int64_t m = row_factors(p, i, c, at), end = p->w.indptr[i + 1];
        if (!m)
            continue;
        for (int64_t e = p->w.indptr[i]; e < end; e += CHUNK) {
            int64_t n = end - e < CHUNK ? end - e : CHUNK;
            real t[CHUNK];
            chunk_sums(p->pb, p->O, c, at, m, idx + e, n, t);
            for (int64_t k = 0; k < n; k++)
                w[e + k] += t[k];
        }
        clear_row(p, i);
    }
}

void
defer_flush(struct eproj *p)
{
    if (p->n_pend == 0)
        return;
    flush_rows(p, 0, p->I, p->pc, p->pk);
    mark_flushed(p);
}

struct flush_job {
    struct eproj *p;
    int n_parts;
};

static void
flush_part(void *arg, int part)
{
    struct flush_job *j = arg;
    int64_t lo, hi, rl = defer_scratch_len(j->p);
    engine_part_rows(j->p->I, j->n_parts, part, &lo, &hi);
    flush_rows(j->p, lo, hi, j->p->pc + part * rl, j->p->pk + part * rl);
}

void
defer_flush_parts(struct engine *e, struct eproj *p)
{
    if (p->n_pend == 0)
        return;
    int64_t work = p->count * p->n_pend;
    struct flush_job j = {p, engine_n_parts(e, work)};
    engine_run_parts(e, j.n_parts, work, flush_part, &j);
    mark_flushed(p);
}

void
defer_restore_legacy(struct eproj *p)
{
    defer_close(p);
    int64_t r = p->n_pend_max, n = p->n_pend;
    if (p->d->op != MODEL_OP_SPARSE || n <= 0 || n > r)
        return; /* a count outside 0..r is refused by engine_state_check */
    for (int64_t i = 0; i < p->I; i++) {
        const real *ai = p->pa + i * r;
        int any = 0;
        for (int64_t k = 0; k < n; k++)
            any |= ai[k] != R(0.0);
        if (!any)
            continue;
        for (int64_t e = p->w.indptr[i]; e < p->w.indptr[i + 1]; e++) {
            const real *b = p->pb + p->w.indices[e] * r; /* [O][r] */
            real v[8] = {0};
            for (int64_t k = 0; k < n; k++)
                v[k % 8] += ai[k] * b[k];
            p->w.values[e] += ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
        }
    }
    p->n_pend = 0;
}

void
defer_forward_cols(struct eproj *p, real *y, const real *x, int64_t o0, int64_t o1, real *c,
                   int64_t *at)
{
    int64_t r = p->n_pend_max, I = p->I, O = p->O;
    const int64_t *ptr = p->w.indptr;
    const int32_t *idx = p->w.indices;
    const real *w = p->w.values;
    if (p->n_pend == 0) {
        op_sparse_forward_cols(I, O, o0, o1, y, ptr, idx, w, x, p->w.bias);
        return;
    }
    op_dense_init(o1 - o0, y + o0, p->w.bias ? p->w.bias + o0 : NULL);
    /* event-driven, as op_sparse_forward: the next events' rows fetched ahead */
    int64_t i = op_next_event(x, 0, I), nx = op_next_event(x, i + 1, I);
    for (int64_t nx2; i < I; i = nx, nx = nx2) {
        nx2 = op_sparse_ahead(ptr, idx, w, x, I, nx);
        __builtin_prefetch(p->pa + nx * r); /* nx <= I: inside pa's carved block */
        real xi = x[i];
        int64_t e, end, m = row_factors(p, i, c, at);
        op_sparse_row_cols(ptr, idx, i, o0, o1, O, &e, &end);
        if (!m) {
            for (; e < end; e++)
                y[idx[e]] += xi * w[e];
            continue;
        }
        for (; e < end; e += CHUNK) {
            int64_t n = end - e < CHUNK ? end - e : CHUNK;
            real t[CHUNK];
            chunk_sums(p->pb, O, c, at, m, idx + e, n, t);
            for (int64_t k = 0; k < n; k++)
                y[idx[e + k]] += xi * (w[e + k] + t[k]);
        }
    }
}

void
defer_forward(struct eproj *p, real *y, const real *x)
{
    int64_t r = p->n_pend_max, I = p->I, O = p->O;
    if (p->d->op == MODEL_OP_SPARSE) {
        defer_forward_cols(p, y, x, 0, O, p->pc, p->pk);
        return;
    }
    if (p->n_pend == 0)
        return;
    real *restrict c = p->pc; /* scratch apart from the pairs: c stays out of pa's way */
    const real *restrict pa = p->pa;
    for (int64_t k = 0; k < p->n_pend; k++)
        c[k] = R(0.0);
    for (int64_t i = op_next_event(x, 0, I); i < I; i = op_next_event(x, i + 1, I)) {
        real xi = x[i];
        const real *ai = pa + i * r;
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

/* The pairs' part of entry (i, o) for readers without scratch: column_sum over the row's
 * factors with the zeros skipped in place (the same terms in the same order); *skip is set
 * when they are all 0 (the reader sees W itself). */
static real
entry_sum(const struct eproj *p, int64_t i, int64_t o, int *skip)
{
    const real *ai = p->pa + i * p->n_pend_max;
    int any = 0;
    for (int64_t k = 0; k < p->n_pend; k++)
        any |= ai[k] != R(0.0);
    *skip = !any;
    return any ? column_sum(p->pb, p->O, ai, NULL, p->n_pend, o) : R(0.0);
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
                real ps = entry_sum(p, row0 + i, o, &skip);
                s += (skip ? p->w.values[e] : p->w.values[e] + ps) * dy[o];
            }
            dx[i] += s;
        }
        return;
    }
    op_dense_backward(n_rows, O, dx, p->w.values + row0 * O, dy);
    if (p->n_pend == 0)
        return;
    real *bq = p->pc; /* B_s . dy */
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
    if (p->d->op == MODEL_OP_DENSE) {
        for (int64_t e = lo; e < hi; e++) {
            int skip;
            real s = entry_sum(p, e / p->O, e % p->O, &skip);
            if (!skip)
                out[e - lo] += s;
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
        real s = entry_sum(p, i, p->w.indices[e], &skip);
        if (!skip)
            out[e - lo] += s;
    }
}

void
defer_grad_push(struct eproj *p, const real *a, const real *x, const real *q, real lambda,
                uint64_t tick)
{
    int64_t I = p->I, O = p->O;
    if (p->d->op == MODEL_OP_ELEMWISE) {
        for (int64_t o = 0; q && o < O; o++)
            p->sum_w[o] += (double)(a[o] * q[o]);
    } else {
        /* a window holds consecutive ticks of one lambda only */
        if (p->n_grad > 0 &&
            (p->n_grad == p->n_grad_max || tick != p->grad_tick + 1 || lambda != p->grad_lambda))
            defer_grad_flush(p);
        if (p->n_grad == 0 && !q)
            return; /* no window open and nothing to add */
        int64_t k = p->n_grad;
        memcpy(p->ga + k * I, k == 0 ? a : x, (size_t)I * sizeof(real));
        if (q)
            memcpy(p->gb + k * O, q, (size_t)O * sizeof(real));
        else
            memset(p->gb + k * O, 0, (size_t)O * sizeof(real));
        p->grad_lambda = lambda;
        p->grad_tick = tick;
        p->n_grad++;
    }
    if (p->sum_b && q)
        for (int64_t o = 0; o < O; o++)
            p->sum_b[o] += (double)q[o];
}

void
defer_grad_flush(struct eproj *p)
{
    int64_t I = p->I, O = p->O, n = p->n_grad;
    if (n == 0)
        return;
    /* With a_t = lambda a_{t-1} + x_t, sum_t a_t q_t^T over the window t0 .. t0 + n - 1 is
     * a_t0 Q_t0^T + sum_{s > t0} x_s Q_s^T, Q_s = sum_{t >= s} lambda^(t - s) q_t: Q in
     * place of q (backwards), then per row its column c of the window (a_t0[i], then the
     * x_s[i], mostly 0: only the inputs that fired) against Q, summed in real in
     * registers and added once to the float64 row. */
    real lam = p->grad_lambda, c[DEFER_GRAD_PAIRS_MAX];
    int64_t at[DEFER_GRAD_PAIRS_MAX];
    for (int64_t s = n - 2; s >= 0; s--) {
        real *qs = p->gb + s * O;
        for (int64_t o = 0; o < O; o++)
            qs[o] += lam * qs[o + O];
    }
    for (int64_t i = 0; i < I; i++) {
        int64_t m = 0; /* the ticks whose x_s[i] is not 0, in order */
        for (int64_t s = 0; s < n; s++) {
            real v = p->ga[s * I + i];
            c[m] = v;
            at[m] = s;
            m += v != R(0.0);
        }
        if (!m)
            continue;
        if (p->d->op == MODEL_OP_DENSE) {
            double *row = p->sum_w + i * O;
            int64_t o = 0;
            for (; o + GROUP * LANES <= O; o += GROUP * LANES) {
                vreal v[GROUP];
                real l[GROUP * LANES];
                group_sums(p->gb, O, c, at, m, o, v);
                memcpy(l, v, sizeof l);
                for (int j = 0; j < GROUP * LANES; j++)
                    row[o + j] += (double)l[j];
            }
            for (; o < O; o++)
                row[o] += (double)column_sum(p->gb, O, c, at, m, o);
        } else {
            for (int64_t e = p->w.indptr[i]; e < p->w.indptr[i + 1]; e++)
                p->sum_w[e] += (double)column_sum(p->gb, O, c, at, m, p->w.indices[e]);
        }
    }
    p->n_grad = 0;
}
