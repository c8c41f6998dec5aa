/* Exact BPTT over a recorded run. With a_o = dL/d out and a_h = dL/d h (totals), going
 * back over ticks t and, within a tick, over cells in reverse order:
 *   a_o^t[c] = dL^t/d out^t[c] + W^T a_y^t (projections that read c in tick t)
 *                               + W^T a_y^{t+1} (projections that read c's previous output)
 *   a_h^t[c] = dout^t * a_o^t[c] + D^{t+1}[c]^T a_h^{t+1}[c]
 *   a_y^t[p] = (sum_k a_h^t[k] d h^t[k] / d slot) on p's columns
 *   grad W[p] += x^t[p] (x) a_y^t[p],  grad b[p] += a_y^t[p]
 * Unlike the online rules this follows every path through projections across time. */
#include "bptt.h"

#include <string.h>

/* The recorded pieces of one tick, in the order bptt_record writes them. */
enum { BPTT_MAX = 64 };

struct tick_view {
    const real *jac[BPTT_MAX], *dslot[BPTT_MAX], *dout[BPTT_MAX], *dl[BPTT_MAX];
    const real *x[BPTT_MAX];
};

struct bptt {
    int64_t T, n_rec;          /* capacity and ticks recorded */
    size_t tick_reals;         /* reals recorded per tick */
    real *tape;                /* [T][tick_reals] */
    double **gw, **gb;         /* per projection gradients */
    double **ay, **ay_next;    /* per projection dL/dy at t and t+1 */
    double **ah, **ah_next;    /* per cell dL/dh at t and t+1: [K][n] */
    double *ao;                /* [largest cell] dL/d out */
    double *aslot;             /* [largest S * n] */
    struct tick_view views[2]; /* tick t and t + 1 */
};

static size_t
tick_reals(const struct engine *e)
{
    size_t n = 0;
    for (int c = 0; c < e->n_cells; c++) {
        const struct ecell *cl = &e->cells[c];
        n += (size_t)cl->n * (size_t)(cl->K * cl->K + cl->K * cl->S + cl->K + 1);
    }
    for (int p = 0; p < e->n_projs; p++)
        n += (size_t)e->projs[p].I;
    return n;
}

static double *
dalloc(const struct mem *m, int64_t n)
{
    return mem_calloc(m, (size_t)(n > 0 ? n : 1), sizeof(double));
}

int
bptt_new(struct engine *e, int64_t T, struct err *err)
{
    const struct mem *m = e->mem;
    if (e->n_cells > BPTT_MAX || e->n_projs > BPTT_MAX)
        return err_setf(err, ERR_UNSUPPORTED, "--align: more than %d cells or projections",
                        BPTT_MAX),
               -1;
    struct bptt *b = mem_calloc(m, 1, sizeof *b);
    if (!b)
        goto nomem;
    e->tape = b;
    b->T = T;
    b->tick_reals = tick_reals(e);
    if (T > 0 && b->tick_reals > (size_t)(((size_t)1 << 40) / sizeof(real)) / (size_t)T)
        return err_setf(err, ERR_USAGE, "--align: the recording of %lld ticks is too large",
                        (long long)T),
               bptt_free(e), -1;
    b->tape = mem_alloc(m, (size_t)(T > 0 ? T : 1) * b->tick_reals * sizeof(real));
    b->gw = mem_calloc(m, (size_t)e->n_projs + 1, sizeof *b->gw);
    b->gb = mem_calloc(m, (size_t)e->n_projs + 1, sizeof *b->gb);
    b->ay = mem_calloc(m, (size_t)e->n_projs + 1, sizeof *b->ay);
    b->ay_next = mem_calloc(m, (size_t)e->n_projs + 1, sizeof *b->ay_next);
    b->ah = mem_calloc(m, (size_t)e->n_cells + 1, sizeof *b->ah);
    b->ah_next = mem_calloc(m, (size_t)e->n_cells + 1, sizeof *b->ah_next);
    if (!b->tape || !b->gw || !b->gb || !b->ay || !b->ay_next || !b->ah || !b->ah_next)
        goto nomem;
    int64_t largest = 1;
    for (int p = 0; p < e->n_projs; p++) {
        const struct eproj *pj = &e->projs[p];
        b->gw[p] = dalloc(m, pj->count);
        b->gb[p] = dalloc(m, pj->O);
        b->ay[p] = dalloc(m, pj->O);
        b->ay_next[p] = dalloc(m, pj->O);
        if (!b->gw[p] || !b->gb[p] || !b->ay[p] || !b->ay_next[p])
            goto nomem;
    }
    for (int c = 0; c < e->n_cells; c++) {
        const struct ecell *cl = &e->cells[c];
        b->ah[c] = dalloc(m, (int64_t)cl->K * cl->n);
        b->ah_next[c] = dalloc(m, (int64_t)cl->K * cl->n);
        if (!b->ah[c] || !b->ah_next[c])
            goto nomem;
        if ((int64_t)cl->S * cl->n > largest)
            largest = (int64_t)cl->S * cl->n;
    }
    b->ao = dalloc(m, largest);
    b->aslot = dalloc(m, largest);
    if (!b->ao || !b->aslot)
        goto nomem;
    return 0;
nomem:
    bptt_free(e);
    return err_setf(err, ERR_NOMEM, "--align: out of memory for %lld recorded ticks", (long long)T),
           -1;
}

void
bptt_free(struct engine *e)
{
    struct bptt *b = e->tape;
    if (!b)
        return;
    const struct mem *m = e->mem;
    for (int p = 0; p < e->n_projs; p++) {
        if (b->gw)
            mem_free(m, &b->gw[p]);
        if (b->gb)
            mem_free(m, &b->gb[p]);
        if (b->ay)
            mem_free(m, &b->ay[p]);
        if (b->ay_next)
            mem_free(m, &b->ay_next[p]);
    }
    for (int c = 0; c < e->n_cells; c++) {
        if (b->ah)
            mem_free(m, &b->ah[c]);
        if (b->ah_next)
            mem_free(m, &b->ah_next[c]);
    }
    mem_free(m, &b->gw);
    mem_free(m, &b->gb);
    mem_free(m, &b->ay);
    mem_free(m, &b->ay_next);
    mem_free(m, &b->ah);
    mem_free(m, &b->ah_next);
    mem_free(m, &b->ao);
    mem_free(m, &b->aslot);
    mem_free(m, &b->tape);
    mem_free(m, &e->tape);
}

static real *
copy_in(real *dst, const real *src, size_t n)
{
    memcpy(dst, src, n * sizeof(real));
    return dst + n;
}

void
bptt_record(struct engine *e)
{
    struct bptt *b = e->tape;
    if (b->n_rec >= b->T)
        return;
    real *w = b->tape + (size_t)b->n_rec * b->tick_reals;
    for (int c = 0; c < e->n_cells; c++) {
        const struct ecell *cl = &e->cells[c];
        size_t n = (size_t)cl->n, K = (size_t)cl->K, S = (size_t)cl->S;
        w = copy_in(w, cl->jac, K * K * n);
        w = copy_in(w, cl->dslot, K * S * n);
        w = copy_in(w, cl->dout, K * n);
        w = copy_in(w, cl->dl, n);
    }
    for (int p = 0; p < e->n_projs; p++)
        w = copy_in(w, e->projs[p].x, (size_t)e->projs[p].I);
    b->n_rec++;
}

/* Pointers into tick t's record. */
static void
view_tick(const struct engine *e, const struct bptt *b, int64_t t, struct tick_view *v)
{
    const real *r = b->tape + (size_t)t * b->tick_reals;
    for (int c = 0; c < e->n_cells; c++) {
        const struct ecell *cl = &e->cells[c];
        size_t n = (size_t)cl->n, K = (size_t)cl->K, S = (size_t)cl->S;
        v->jac[c] = r;
        r += K * K * n;
        v->dslot[c] = r;
        r += K * S * n;
        v->dout[c] = r;
        r += K * n;
        v->dl[c] = r;
        r += n;
    }
    for (int p = 0; p < e->n_projs; p++) {
        v->x[p] = r;
        r += e->projs[p].I;
    }
}

/* ao[i] += sum_o W[offset + i, o] ay[o] for the rows of one source. */
static void
add_wt(const struct eproj *p, const struct model_source *src, double *ao, const double *ay)
{
    switch (p->d->op) {
    case MODEL_OP_DENSE:
        for (int64_t i = 0; i < src->size; i++) {
            const real *row = p->w.values + (int64_t)(src->offset + i) * p->O;
            double s = 0.0;
            for (int64_t o = 0; o < p->O; o++)
                s += (double)row[o] * ay[o];
            ao[i] += s;
        }
        break;
    case MODEL_OP_SPARSE:
        for (int64_t i = 0; i < src->size; i++) {
            int64_t row = src->offset + i;
            double s = 0.0;
            for (int64_t k = p->w.indptr[row]; k < p->w.indptr[row + 1]; k++)
                s += (double)p->w.values[k] * ay[p->w.indices[k]];
            ao[i] += s;
        }
        break;
    case MODEL_OP_ELEMWISE:
        for (int64_t i = 0; i < src->size; i++)
            ao[i] += (double)p->w.values[src->offset + i] * ay[src->offset + i];
        break;
    }
}

static void
add_grad(const struct eproj *p, double *gw, double *gb, const real *x, const double *ay)
{
    switch (p->d->op) {
    case MODEL_OP_DENSE:
        for (int64_t i = 0; i < p->I; i++) {
            double xi = (double)x[i];
            if (xi == 0.0)
                continue;
            for (int64_t o = 0; o < p->O; o++)
                gw[i * p->O + o] += xi * ay[o];
        }
        break;
    case MODEL_OP_SPARSE:
        for (int64_t i = 0; i < p->I; i++)
            for (int64_t k = p->w.indptr[i]; k < p->w.indptr[i + 1]; k++)
                gw[k] += (double)x[i] * ay[p->w.indices[k]];
        break;
    case MODEL_OP_ELEMWISE:
        for (int64_t o = 0; o < p->O; o++)
            gw[o] += (double)x[o] * ay[o];
        break;
    }
    if (p->w.bias)
        for (int64_t o = 0; o < p->O; o++)
            gb[o] += ay[o];
}

static void
backward_cell(const struct engine *e, struct bptt *b, const struct tick_view *v,
              const struct tick_view *next, int c)
{
    const struct ecell *cl = &e->cells[c];
    int64_t n = cl->n, K = cl->K, S = cl->S;
    for (int64_t i = 0; i < n; i++)
        b->ao[i] = (double)v->dl[c][i];
    for (int p = 0; p < e->n_projs; p++) {
        const struct eproj *pj = &e->projs[p];
        for (int s = 0; s < pj->d->n_from; s++) {
            const struct model_source *src = &pj->d->from[s];
            if (src->is_input || src->index != c)
                continue;
            if (pj->cell > c)
                add_wt(pj, src, b->ao, b->ay[p]); /* read in the same tick */
            else if (next)
                add_wt(pj, src, b->ao, b->ay_next[p]); /* read as the previous output */
        }
    }
    double *ah = b->ah[c], *ahn = b->ah_next[c];
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = 0; i < n; i++) {
            double a = (double)v->dout[c][k * n + i] * b->ao[i];
            if (next) /* D^{t+1}^T a_h^{t+1}: jac[j][k] = d h^{t+1}[j] / d h^t[k] */
                for (int64_t j = 0; j < K; j++)
                    a += (double)next->jac[c][(j * K + k) * n + i] * ahn[j * n + i];
            ah[k * n + i] = a;
        }
    for (int64_t s = 0; s < S; s++)
        for (int64_t i = 0; i < n; i++) {
            double a = 0.0;
            for (int64_t k = 0; k < K; k++)
                a += ah[k * n + i] * (double)v->dslot[c][(k * S + s) * n + i];
            b->aslot[s * n + i] = a;
        }
    for (int p = 0; p < e->n_projs; p++) {
        const struct eproj *pj = &e->projs[p];
        if (pj->cell != c)
            continue;
        for (int bl = 0; bl < pj->d->n_to_slots; bl++)
            memcpy(b->ay[p] + (int64_t)bl * n, b->aslot + (int64_t)pj->d->to_slots[bl] * n,
                   (size_t)n * sizeof(double));
        add_grad(pj, b->gw[p], b->gb[p], v->x[p], b->ay[p]);
    }
    memcpy(ahn, ah, (size_t)(K * n) * sizeof(double));
}

int
bptt_backward(struct engine *e)
{
    struct bptt *b = e->tape;
    if (!b || b->n_rec == 0)
        return -1;
    struct tick_view *v = &b->views[0], *next = &b->views[1];
    for (int64_t t = b->n_rec - 1; t >= 0; t--) {
        view_tick(e, b, t, v);
        for (int c = e->n_cells - 1; c >= 0; c--)
            backward_cell(e, b, v, t + 1 < b->n_rec ? next : NULL, c);
        for (int p = 0; p < e->n_projs; p++) {
            double *tmp = b->ay_next[p];
            b->ay_next[p] = b->ay[p];
            b->ay[p] = tmp;
        }
        struct tick_view *tv = v;
        v = next;
        next = tv;
    }
    return 0;
}

void
bptt_grad(const struct engine *e, int p, const double **w, const double **b)
{
    *w = e->tape->gw[p];
    *b = e->projs[p].w.bias ? e->tape->gb[p] : NULL;
}
