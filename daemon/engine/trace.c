/* Eligibility-trace kernels. Each states its equation; the engine gathers the column
 * views (D, f, g) and chooses the rule per projection. */
#include "trace.h"

#include <string.h>

int
trace_drtrl_dense(int64_t n_in, int64_t n_out, int K, real *E, real *acc, real *scratch,
                  const real *D, const real *f, const real *g, const real *x)
{
    int bad = 0;
    const int64_t plane = n_in * n_out; /* E[k] is one [n_in][n_out] plane */
    if (K == 1) {
        for (int64_t i = 0; i < n_in; i++) {
            real *e = E + i * n_out;
            real xi = x[i];
            /* E = D E + f x;  acc += g E */
            for (int64_t o = 0; o < n_out; o++) {
                e[o] = D[o] * e[o] + f[o] * xi;
                bad |= (e[o] - e[o] != R(0.0));
            }
            if (acc) {
                real *a = acc + i * n_out;
                for (int64_t o = 0; o < n_out; o++)
                    a[o] += g[o] * e[o];
            }
        }
        return bad;
    }
    for (int64_t i = 0; i < n_in; i++) {
        real xi = x[i];
        for (int j = 0; j < K; j++)
            memcpy(scratch + j * n_out, E + j * plane + i * n_out,
                   (size_t)n_out * sizeof *scratch);
        for (int k = 0; k < K; k++) {
            real *e = E + k * plane + i * n_out;
            const real *dk = D + (int64_t)k * K * n_out;
            /* E[k] = sum_j D[k,j] E_old[j] + f[k] x */
            for (int64_t o = 0; o < n_out; o++)
                e[o] = dk[o] * scratch[o];
            for (int j = 1; j < K; j++)
                for (int64_t o = 0; o < n_out; o++)
                    e[o] += dk[j * n_out + o] * scratch[j * n_out + o];
            for (int64_t o = 0; o < n_out; o++) {
                e[o] += f[k * n_out + o] * xi;
                bad |= (e[o] - e[o] != R(0.0));
            }
        }
        if (acc) {
            real *a = acc + i * n_out;
            for (int k = 0; k < K; k++) {
                const real *e = E + k * plane + i * n_out;
                const real *gk = g + k * n_out;
                for (int64_t o = 0; o < n_out; o++)
                    a[o] += gk[o] * e[o];
            }
        }
    }
    return bad;
}

int
trace_drtrl_sparse(int64_t n_in, int64_t n_out, int64_t nnz, int K, real *E, real *acc,
                   const int64_t *indptr, const int32_t *indices, const real *D, const real *f,
                   const real *g, const real *x)
{
    int bad = 0;
    if (K == 1) {
        for (int64_t i = 0; i < n_in; i++) {
            real xi = x[i];
            /* E = D E + f x;  acc += g E, on the row's nonzeros */
            for (int64_t p = indptr[i]; p < indptr[i + 1]; p++) {
                int32_t o = indices[p];
                E[p] = D[o] * E[p] + f[o] * xi;
                bad |= (E[p] - E[p] != R(0.0));
                if (acc)
                    acc[p] += g[o] * E[p];
            }
        }
        return bad;
    }
    real old[8];
    for (int64_t i = 0; i < n_in; i++) {
        real xi = x[i];
        for (int64_t p = indptr[i]; p < indptr[i + 1]; p++) {
            int32_t o = indices[p];
            for (int j = 0; j < K; j++)
                old[j] = E[j * nnz + p];
            real gsum = R(0.0);
            for (int k = 0; k < K; k++) {
                const real *dk = D + (int64_t)k * K * n_out;
                real e = dk[o] * old[0];
                for (int j = 1; j < K; j++)
                    e += dk[j * n_out + o] * old[j];
                e += f[k * n_out + o] * xi;
                E[k * nnz + p] = e;
                bad |= (e - e != R(0.0));
                if (acc)
                    gsum += g[k * n_out + o] * e;
            }
            if (acc)
                acc[p] += gsum;
        }
    }
    return bad;
}

int
trace_drtrl_elem(int64_t n, int K, real *E, real *acc, const real *D, const real *f,
                 const real *g, const real *x)
{
    int bad = 0;
    if (K == 1) {
        /* E = D E + f x;  acc += g E */
        for (int64_t o = 0; o < n; o++) {
            E[o] = D[o] * E[o] + (x ? f[o] * x[o] : f[o]);
            bad |= (E[o] - E[o] != R(0.0));
        }
        if (acc)
            for (int64_t o = 0; o < n; o++)
                acc[o] += g[o] * E[o];
        return bad;
    }
    real old[8];
    for (int64_t o = 0; o < n; o++) {
        for (int j = 0; j < K; j++)
            old[j] = E[j * n + o];
        real gsum = R(0.0);
        for (int k = 0; k < K; k++) {
            const real *dk = D + (int64_t)k * K * n;
            real e = dk[o] * old[0];
            for (int j = 1; j < K; j++)
                e += dk[j * n + o] * old[j];
            e += x ? f[k * n + o] * x[o] : f[k * n + o];
            E[k * n + o] = e;
            bad |= (e - e != R(0.0));
            if (acc)
                gsum += g[k * n + o] * e;
        }
        if (acc)
            acc[o] += gsum;
    }
    return bad;
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
