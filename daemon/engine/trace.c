/* Eligibility-trace kernels. Each states its equation; the engine gathers the column
 * views (D, f, g) and chooses the rule per projection. */
#include "trace.h"

#include <string.h>

/* Where a D-RTRL kernel puts sum_k g[k] E[k] of each weight: nowhere (traces only), added
 * to an accumulator, or straight into the weight as an sgd step (the fused path). */
enum sink { SINK_NONE, SINK_ACC, SINK_SGD };

static enum sink
sink_of(const real *g, const real *acc, const real *w)
{
    if (!g)
        return SINK_NONE;
    return acc ? SINK_ACC : (w ? SINK_SGD : SINK_NONE);
}

/* dst[o] += gs[o] (accumulate) or dst[o] -= lr * gs[o] (sgd), as the accumulator path
 * would compute: acc = 0 + gs, w - lr * (acc * 1). */
static inline void
sink_row(enum sink sk, int64_t n, real *restrict dst, const real *restrict gs, real lr)
{
    if (sk == SINK_ACC)
        for (int64_t o = 0; o < n; o++)
            dst[o] += gs[o];
    else if (sk == SINK_SGD)
        for (int64_t o = 0; o < n; o++)
            dst[o] -= lr * gs[o];
}

double
trace_drtrl_dense(int64_t n_in, int64_t n_out, int K, real *E, real *acc, real *w, real lr,
                  real *scratch, const real *D, const real *f, const real *g, const real *x)
{
    real_bits m = 0;
    const int64_t plane = n_in * n_out; /* E[k] is one [n_in][n_out] plane */
    enum sink sk = sink_of(g, acc, w);
    real *dst = sk == SINK_ACC ? acc : w;
    if (K == 1) {
        for (int64_t i = 0; i < n_in; i++) {
            real *restrict e = E + i * n_out;
            real xi = x[i];
            /* E = D E + f x */
            for (int64_t o = 0; o < n_out; o++) {
                e[o] = D[o] * e[o] + f[o] * xi;
                real_bits b = real_abs_bits(e[o]);
                m = b > m ? b : m;
            }
            if (sk == SINK_NONE)
                continue; /* dst may be NULL: no row of it */
            /* acc += g E, or w -= lr g E */
            real *restrict d = dst + i * n_out;
            if (sk == SINK_ACC)
                for (int64_t o = 0; o < n_out; o++)
                    d[o] += g[o] * e[o];
            else if (sk == SINK_SGD)
                for (int64_t o = 0; o < n_out; o++)
                    d[o] -= lr * (g[o] * e[o]);
        }
        return real_from_abs_bits(m);
    }
    real *old = scratch, *gs = scratch + (int64_t)K * n_out;
    for (int64_t i = 0; i < n_in; i++) {
        real xi = x[i];
        for (int j = 0; j < K; j++)
            memcpy(old + j * n_out, E + j * plane + i * n_out, (size_t)n_out * sizeof *old);
        for (int k = 0; k < K; k++) {
            real *restrict e = E + k * plane + i * n_out;
            const real *dk = D + (int64_t)k * K * n_out;
            /* E[k] = sum_j D[k,j] E_old[j] + f[k] x */
            for (int64_t o = 0; o < n_out; o++)
                e[o] = dk[o] * old[o];
            for (int j = 1; j < K; j++)
                for (int64_t o = 0; o < n_out; o++)
                    e[o] += dk[j * n_out + o] * old[j * n_out + o];
            for (int64_t o = 0; o < n_out; o++) {
                e[o] += f[k * n_out + o] * xi;
                real_bits b = real_abs_bits(e[o]);
                m = b > m ? b : m;
            }
        }
        if (sk == SINK_NONE)
            continue;
        /* gs = sum_k g[k] E[k], the first product alone as the accumulator would have it */
        for (int64_t o = 0; o < n_out; o++)
            gs[o] = g[o] * E[i * n_out + o];
        for (int k = 1; k < K; k++)
            for (int64_t o = 0; o < n_out; o++)
                gs[o] += g[k * n_out + o] * E[k * plane + i * n_out + o];
        sink_row(sk, n_out, dst + i * n_out, gs, lr);
    }
    return real_from_abs_bits(m);
}

double
trace_drtrl_sparse(int64_t n_in, int64_t n_out, int64_t nnz, int K, real *E, real *acc, real *w,
                   real lr, const int64_t *indptr, const int32_t *indices, const real *D,
                   const real *f, const real *g, const real *x)
{
    real_bits m = 0;
    enum sink sk = sink_of(g, acc, w);
    real *dst = sk == SINK_ACC ? acc : w;
    real old[8];
    for (int64_t i = 0; i < n_in; i++) {
        real xi = x[i];
        for (int64_t p = indptr[i]; p < indptr[i + 1]; p++) {
            int32_t o = indices[p];
            for (int j = 0; j < K; j++)
                old[j] = E[j * nnz + p];
            real gsum = R(0.0);
            for (int k = 0; k < K; k++) {
                /* E[k] = sum_j D[k,j] E_old[j] + f[k] x, on the row's nonzeros */
                const real *dk = D + (int64_t)k * K * n_out;
                real e = dk[o] * old[0];
                for (int j = 1; j < K; j++)
                    e += dk[j * n_out + o] * old[j];
                e += f[k * n_out + o] * xi;
                E[k * nnz + p] = e;
                real_bits b = real_abs_bits(e);
                m = b > m ? b : m;
                if (sk != SINK_NONE)
                    gsum = k == 0 ? g[o] * e : gsum + g[k * n_out + o] * e;
            }
            if (sk == SINK_ACC)
                dst[p] += gsum;
            else if (sk == SINK_SGD)
                dst[p] -= lr * gsum;
        }
    }
    return real_from_abs_bits(m);
}

double
trace_drtrl_elem(int64_t n, int K, real *E, real *acc, real *w, real lr, const real *D,
                 const real *f, const real *g, const real *x)
{
    real_bits m = 0;
    enum sink sk = sink_of(g, acc, w);
    real *dst = sk == SINK_ACC ? acc : w;
    real old[8];
    for (int64_t o = 0; o < n; o++) {
        for (int j = 0; j < K; j++)
            old[j] = E[j * n + o];
        real gsum = R(0.0);
        for (int k = 0; k < K; k++) {
            /* E[k] = sum_j D[k,j] E_old[j] + f[k] x (x = 1 for a bias) */
            const real *dk = D + (int64_t)k * K * n;
            real e = dk[o] * old[0];
            for (int j = 1; j < K; j++)
                e += dk[j * n + o] * old[j];
            e += x ? f[k * n + o] * x[o] : f[k * n + o];
            E[k * n + o] = e;
            real_bits b = real_abs_bits(e);
            m = b > m ? b : m;
            if (sk != SINK_NONE)
                gsum = k == 0 ? g[o] * e : gsum + g[k * n + o] * e;
        }
        if (sk == SINK_ACC)
            dst[o] += gsum;
        else if (sk == SINK_SGD)
            dst[o] -= lr * gsum;
    }
    return real_from_abs_bits(m);
}

int
trace_es_input(int64_t n_in, real *ex, real lambda_x, const real *x)
{
    int bad = 0;
    /* e_x = lambda_x e_x + x */
    for (int64_t i = 0; i < n_in; i++) {
        ex[i] = lambda_x * ex[i] + x[i];
        bad |= (ex[i] - ex[i] != R(0.0));
    }
    return bad;
}

int
trace_es_hidden(int64_t n_out, int K, real *ef, real lambda_f, const real *D, const real *f)
{
    int bad = 0;
    real one_minus = R(1.0) - lambda_f;
    if (K == 1) {
        /* e_f = lambda_f D e_f + (1 - lambda_f) f */
        for (int64_t o = 0; o < n_out; o++) {
            ef[o] = lambda_f * (D[o] * ef[o]) + one_minus * f[o];
            bad |= (ef[o] - ef[o] != R(0.0));
        }
        return bad;
    }
    real old[8];
    for (int64_t o = 0; o < n_out; o++) {
        for (int j = 0; j < K; j++)
            old[j] = ef[j * n_out + o];
        for (int k = 0; k < K; k++) {
            const real *dk = D + (int64_t)k * K * n_out;
            real s = dk[o] * old[0];
            for (int j = 1; j < K; j++)
                s += dk[j * n_out + o] * old[j];
            real e = lambda_f * s + one_minus * f[k * n_out + o];
            ef[k * n_out + o] = e;
            bad |= (e - e != R(0.0));
        }
    }
    return bad;
}

void
trace_column_factor(int64_t n_out, int K, real *q, const real *g, const real *h, real inv_c)
{
    /* q = (sum_k g[k] h[k]) * (1 / c) */
    for (int64_t o = 0; o < n_out; o++)
        q[o] = g[o] * h[o];
    for (int k = 1; k < K; k++)
        for (int64_t o = 0; o < n_out; o++)
            q[o] += g[k * n_out + o] * h[k * n_out + o];
    if (inv_c != R(1.0))
        for (int64_t o = 0; o < n_out; o++)
            q[o] *= inv_c;
}

void
trace_outer_dense(int64_t n_in, int64_t n_out, real *acc, const real *a, const real *q)
{
    for (int64_t i = 0; i < n_in; i++) {
        real ai = a[i];
        if (ai == R(0.0))
            continue;
        real *row = acc + i * n_out;
        for (int64_t o = 0; o < n_out; o++)
            row[o] += ai * q[o];
    }
}

void
trace_outer_sparse(int64_t n_in, real *acc, const int64_t *indptr, const int32_t *indices,
                   const real *a, const real *q)
{
    for (int64_t i = 0; i < n_in; i++) {
        real ai = a[i];
        if (ai == R(0.0))
            continue;
        for (int64_t p = indptr[i]; p < indptr[i + 1]; p++)
            acc[p] += ai * q[indices[p]];
    }
}

void
trace_outer_elem(int64_t n, real *acc, const real *a, const real *q)
{
    if (a)
        for (int64_t o = 0; o < n; o++)
            acc[o] += a[o] * q[o];
    else
        for (int64_t o = 0; o < n; o++)
            acc[o] += q[o];
}
