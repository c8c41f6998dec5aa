/* Weights and biases materialised from their specs (DESIGN §2.3): .npy files, CSR / COO /
 * random sparse structure and the initialisers, drawn from the projection's substream.
 * Every value is computed in double and rounded to `real` once. */
#include "param.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"
#include "rng.h"

static const int64_t max_count = INT32_MAX;               /* 2^31 - 1 elements */
static const int64_t max_random_pairs = INT64_C(1) << 33; /* one keep draw per pair */

/* What is being loaded, for messages: "PATH:LINE:COL: projections.NAME.FIELD: ...". */
struct ctx {
    const struct model_desc *d;
    const struct model_proj *p;
    const struct model_fs *fs;
    const struct mem *m;
    struct err *e;
    const struct model_tensor *t;
    const char *field; /* "weight" or "bias" */
};

__attribute__((format(printf, 3, 4))) static int
fail(struct ctx *c, enum err_code code, const char *fmt, ...)
{
    char msg[sizeof c->e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_setf(c->e, code, "%s:%d:%d: projections.%s.%s: %s", c->d->path ? c->d->path : "(model)",
             c->t->pos.line, c->t->pos.col, c->p->name, c->field, msg);
    return -1;
}

/* Re-raises an error already in c->e (from the fs or the .npy parser) with the prefix. */
static int
wrap(struct ctx *c)
{
    char inner[sizeof c->e->msg];
    memcpy(inner, c->e->msg, sizeof inner);
    inner[sizeof inner - 1] = '\0';
    enum err_code code = c->e->code == ERR_OK ? ERR_IO : c->e->code;
    return fail(c, code, "%s", inner);
}

static void
format_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t n = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, i ? ", %" PRId64 : "%" PRId64, shape[i]);
    if (n < len)
        snprintf(buf + n, len - n, ndim == 1 ? ",)" : ")");
}

static const char *
dtype_name(enum npy_dtype t)
{
    switch (t) {
    case NPY_F32:
        return "float32";
    case NPY_F64:
        return "float64";
    case NPY_I32:
        return "int32";
    case NPY_I64:
        return "int64";
    }
    return "?";
}

/* Reads rel through the model's fs and parses it. */
static int
load_npy(struct ctx *c, const char *rel, struct npy *a)
{
    void *buf = NULL;
    size_t len = 0;
    if (!rel)
        return fail(c, ERR_MODEL, "a file name is missing");
    err_clear(c->e);
    if (c->fs->read(c->fs->ctx, rel, c->m, &buf, &len, c->e) != 0)
        return wrap(c);
    int rc = npy_parse(buf, len, rel, c->m, a, c->e);
    mem_free(c->m, &buf);
    return rc == 0 ? 0 : wrap(c);
}

/* Checks dtype class and exact shape. */
static int
check_array(struct ctx *c, const char *rel, const struct npy *a, int is_float, int ndim,
            const int64_t *shape)
{
    int dtype_ok = is_float ? (a->dtype == NPY_F32 || a->dtype == NPY_F64)
                            : (a->dtype == NPY_I32 || a->dtype == NPY_I64);
    if (!dtype_ok)
        return fail(c, ERR_MODEL, "%s: dtype %s, expected %s", rel, dtype_name(a->dtype),
                    is_float ? "float32 or float64" : "int32 or int64");
    int same = a->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = a->shape[i] == shape[i];
    if (!same) {
        char got[128], want[128];
        format_shape(got, sizeof got, a->ndim, a->shape);
        format_shape(want, sizeof want, ndim, shape);
        return fail(c, ERR_MODEL, "%s: shape %s, expected %s", rel, got, want);
    }
    return 0;
}

/* A 1-D array of any length (the length is checked against others by the caller). */
static int
check_vector(struct ctx *c, const char *rel, const struct npy *a, int is_float)
{
    if (a->ndim != 1) {
        char got[128];
        format_shape(got, sizeof got, a->ndim, a->shape);
        return fail(c, ERR_MODEL, "%s: shape %s, expected a 1-D array", rel, got);
    }
    int64_t n = a->shape[0];
    return check_array(c, rel, a, is_float, 1, &n);
}

static double
fget(const struct npy *a, int64_t k)
{
    return a->dtype == NPY_F32 ? (double)((const float *)a->data)[k] : ((const double *)a->data)[k];
}

static int64_t
iget(const struct npy *a, int64_t k)
{
    return a->dtype == NPY_I32 ? (int64_t)((const int32_t *)a->data)[k]
                               : ((const int64_t *)a->data)[k];
}

/* dst[k] = (real)src[perm[k]] (perm NULL: identity), rejecting values that are not
 * finite once rounded to real. */
static int
copy_values(struct ctx *c, const char *rel, const struct npy *src, const int64_t *perm, int64_t n,
            real *dst)
{
    for (int64_t k = 0; k < n; k++) {
        int64_t j = perm ? perm[k] : k;
        real v = (real)fget(src, j);
        if (!isfinite(v))
            return fail(c, ERR_MODEL, "%s: element %" PRId64 " (%g) is not a finite %s", rel, j,
                        fget(src, j), REAL_NAME);
        dst[k] = v;
    }
    return 0;
}

static void *
alloc_array(struct ctx *c, int64_t n, size_t elem)
{
    void *p = mem_alloc(c->m, (size_t)n * elem);
    if (!p)
        fail(c, ERR_NOMEM, "out of memory for %" PRId64 " elements", n);
    return p;
}

/* ---- initialisers ---------------------------------------------------------------------- */

static const char *
init_name(enum model_init i)
{
    switch (i) {
    case MODEL_INIT_ZEROS:
        return "zeros";
    case MODEL_INIT_ONES:
        return "ones";
    case MODEL_INIT_CONSTANT:
        return "constant";
    case MODEL_INIT_NORMAL:
        return "normal";
    case MODEL_INIT_UNIFORM:
        return "uniform";
    case MODEL_INIT_KAIMING_NORMAL:
        return "kaiming_normal";
    case MODEL_INIT_XAVIER_UNIFORM:
        return "xavier_uniform";
    }
    return "?";
}

/* One initial value; consumes 0 (zeros, ones, constant), 1 (uniform, xavier) or 2
 * (normal, kaiming: Box-Muller) draws of r. */
static double
init_draw(const struct model_tensor *t, struct rng *r, double fan_in, double fan_out)
{
    switch (t->init) {
    case MODEL_INIT_ZEROS:
        return 0.0;
    case MODEL_INIT_ONES:
        return 1.0;
    case MODEL_INIT_CONSTANT:
        return t->value;
    case MODEL_INIT_NORMAL:
        return t->mean + t->std * rng_normal(r);
    case MODEL_INIT_UNIFORM:
        return t->low + (t->high - t->low) * rng_uniform(r);
    case MODEL_INIT_KAIMING_NORMAL:
        return t->scale * sqrt(2.0 / fan_in) * rng_normal(r);
    case MODEL_INIT_XAVIER_UNIFORM: {
        double b = t->scale * sqrt(6.0 / (fan_in + fan_out));
        return -b + 2.0 * b * rng_uniform(r);
    }
    }
    return 0.0;
}

/* dst[k] for k < n in storage order. col_fan_in (sparse) gives each column's fan_in,
 * indexed through cols; otherwise fan_in applies to all. */
static int
fill_init(struct ctx *c, struct rng *r, int64_t n, real *dst, double fan_in, double fan_out,
          const int32_t *cols, const int64_t *col_fan_in)
{
    for (int64_t k = 0; k < n; k++) {
        double fi = fan_in;
        if (cols) {
            int64_t f = col_fan_in[cols[k]];
            fi = (double)(f > 0 ? f : 1);
        }
        real v = (real)init_draw(c->t, r, fi, fan_out);
        if (!isfinite(v))
            return fail(c, ERR_MODEL, "init %s gives a value that is not a finite %s",
                        init_name(c->t->init), REAL_NAME);
        dst[k] = v;
    }
    return 0;
}

/* ---- dense and elemwise ---------------------------------------------------------------- */

/* A plain tensor of ndim 1 or 2 with the given shape: from a file or an initialiser. */
static int
load_plain(struct ctx *c, struct rng *r, int ndim, const int64_t *shape, double fan_in,
           double fan_out, real **out)
{
    const struct model_tensor *t = c->t;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    if (n > max_count)
        return fail(c, ERR_MODEL, "%" PRId64 " elements exceed 2^31 - 1", n);
    if (t->kind == MODEL_TENSOR_COO || t->kind == MODEL_TENSOR_RANDOM ||
        (t->kind == MODEL_TENSOR_FILE && (t->indices || t->indptr)))
        return fail(c, ERR_MODEL, "%s (%s)",
                    strcmp(c->field, "bias") == 0 ? "a bias is a plain [O] tensor, not a sparse "
                                                    "structure"
                                                  : "a sparse structure needs op: sparse",
                    t->kind == MODEL_TENSOR_COO      ? "rows/cols/values"
                    : t->kind == MODEL_TENSOR_RANDOM ? "prob"
                                                     : "indices/indptr");
    if (t->kind != MODEL_TENSOR_FILE && t->kind != MODEL_TENSOR_INIT)
        return fail(c, ERR_MODEL, "no weight given");
    real *v = alloc_array(c, n, sizeof(real));
    if (!v)
        return -1;
    int rc;
    if (t->kind == MODEL_TENSOR_INIT) {
        rc = fill_init(c, r, n, v, fan_in, fan_out, NULL, NULL);
    } else {
        struct npy a;
        rc = load_npy(c, t->file, &a);
        if (rc == 0) {
            rc = check_array(c, t->file, &a, 1, ndim, shape);
            if (rc == 0)
                rc = copy_values(c, t->file, &a, NULL, n, v);
            npy_fini(&a, c->m);
        }
    }
    if (rc != 0) {
        mem_free(c->m, &v);
        return -1;
    }
    *out = v;
    return 0;
}

/* ---- sparse ---------------------------------------------------------------------------- */

/* CSR from {file, indices, indptr}: indptr [I+1] from 0 to nnz, non-decreasing; indices
 * [nnz] in [0, O), strictly increasing within a row. */
static int
load_csr(struct ctx *c, struct param *out)
{
    const struct model_tensor *t = c->t;
    int64_t n_in = c->p->in_size, n_out = c->p->out_size;
    struct npy v = {0}, ix = {0}, ip = {0};
    int rc = -1;
    if (load_npy(c, t->file, &v) != 0 || check_vector(c, t->file, &v, 1) != 0)
        goto done;
    int64_t nnz = v.shape[0];
    int64_t ip_len = n_in + 1;
    if (load_npy(c, t->indices, &ix) != 0 || check_array(c, t->indices, &ix, 0, 1, &nnz) != 0)
        goto done;
    if (load_npy(c, t->indptr, &ip) != 0 || check_array(c, t->indptr, &ip, 0, 1, &ip_len) != 0)
        goto done;
    if (iget(&ip, 0) != 0) {
        fail(c, ERR_MODEL, "%s: indptr[0] = %" PRId64 ", expected 0", t->indptr, iget(&ip, 0));
        goto done;
    }
    for (int64_t i = 0; i < n_in; i++)
        if (iget(&ip, i + 1) < iget(&ip, i)) {
            fail(c, ERR_MODEL,
                 "%s: not monotonic: indptr[%" PRId64 "] = %" PRId64 " < indptr[%" PRId64
                 "] = %" PRId64,
                 t->indptr, i + 1, iget(&ip, i + 1), i, iget(&ip, i));
            goto done;
        }
    if (iget(&ip, n_in) != nnz) {
        fail(c, ERR_MODEL,
             "%s: indptr[%" PRId64 "] = %" PRId64 ", expected nnz = %" PRId64 " (the length of %s)",
             t->indptr, n_in, iget(&ip, n_in), nnz, t->file);
        goto done;
    }
    for (int64_t i = 0; i < n_in; i++)
        for (int64_t k = iget(&ip, i); k < iget(&ip, i + 1); k++) {
            int64_t o = iget(&ix, k);
            if (o < 0 || o >= n_out) {
                fail(c, ERR_MODEL,
                     "%s: index %" PRId64 " at position %" PRId64 " (row %" PRId64
                     ") out of range [0, %" PRId64 ")",
                     t->indices, o, k, i, n_out);
                goto done;
            }
            if (k > iget(&ip, i) && o <= iget(&ix, k - 1)) {
                fail(c, ERR_MODEL,
                     "%s: row %" PRId64 " not strictly increasing: %" PRId64 " after %" PRId64
                     " at position %" PRId64 "%s",
                     t->indices, i, o, iget(&ix, k - 1), k,
                     o == iget(&ix, k - 1) ? " (duplicate)" : "");
                goto done;
            }
        }
    if (!(out->indptr = alloc_array(c, n_in + 1, sizeof(int64_t))) ||
        !(out->indices = alloc_array(c, nnz, sizeof(int32_t))) ||
        !(out->values = alloc_array(c, nnz, sizeof(real))))
        goto done;
    for (int64_t i = 0; i <= n_in; i++)
        out->indptr[i] = iget(&ip, i);
    for (int64_t k = 0; k < nnz; k++)
        out->indices[k] = (int32_t)iget(&ix, k);
    out->count = nnz;
    rc = copy_values(c, t->file, &v, NULL, nnz, out->values);
done:
    npy_fini(&v, c->m);
    npy_fini(&ix, c->m);
    npy_fini(&ip, c->m);
    return rc;
}

struct coo_entry {
    int64_t key; /* row * n_out + col */
    int64_t pos; /* index into the files */
};

static int
coo_cmp(const void *a, const void *b)
{
    int64_t x = ((const struct coo_entry *)a)->key, y = ((const struct coo_entry *)b)->key;
    return (x > y) - (x < y);
}

/* COO {rows, cols, values}: checked, sorted row-major into CSR; a repeated (i, o) is an
 * error. */
static int
load_coo(struct ctx *c, struct param *out)
{
    const struct model_tensor *t = c->t;
    int64_t n_in = c->p->in_size, n_out = c->p->out_size;
    struct npy rows = {0}, cols = {0}, v = {0};
    struct coo_entry *ent = NULL;
    int64_t *perm = NULL;
    int rc = -1;
    if (load_npy(c, t->values, &v) != 0 || check_vector(c, t->values, &v, 1) != 0)
        goto done;
    int64_t nnz = v.shape[0];
    if (load_npy(c, t->rows, &rows) != 0 || check_array(c, t->rows, &rows, 0, 1, &nnz) != 0)
        goto done;
    if (load_npy(c, t->cols, &cols) != 0 || check_array(c, t->cols, &cols, 0, 1, &nnz) != 0)
        goto done;
    if (!(ent = alloc_array(c, nnz, sizeof *ent)))
        goto done;
    for (int64_t k = 0; k < nnz; k++) {
        int64_t i = iget(&rows, k), o = iget(&cols, k);
        if (i < 0 || i >= n_in) {
            fail(c, ERR_MODEL,
                 "%s: row %" PRId64 " at position %" PRId64 " out of range [0, %" PRId64 ")",
                 t->rows, i, k, n_in);
            goto done;
        }
        if (o < 0 || o >= n_out) {
            fail(c, ERR_MODEL,
                 "%s: column %" PRId64 " at position %" PRId64 " out of range [0, %" PRId64 ")",
                 t->cols, o, k, n_out);
            goto done;
        }
        ent[k].key = i * n_out + o;
        ent[k].pos = k;
    }
    if (nnz > 1)
        qsort(ent, (size_t)nnz, sizeof *ent, coo_cmp);
    for (int64_t k = 1; k < nnz; k++)
        if (ent[k].key == ent[k - 1].key) {
            int64_t a = ent[k - 1].pos < ent[k].pos ? ent[k - 1].pos : ent[k].pos;
            int64_t b = ent[k - 1].pos < ent[k].pos ? ent[k].pos : ent[k - 1].pos;
            fail(c, ERR_MODEL,
                 "%s/%s: duplicate entry (%" PRId64 ", %" PRId64 ") at positions %" PRId64
                 " and %" PRId64,
                 t->rows, t->cols, ent[k].key / n_out, ent[k].key % n_out, a, b);
            goto done;
        }
    if (!(out->indptr = mem_calloc(c->m, (size_t)n_in + 1, sizeof(int64_t)))) {
        fail(c, ERR_NOMEM, "out of memory for %" PRId64 " elements", n_in + 1);
        goto done;
    }
    if (!(out->indices = alloc_array(c, nnz, sizeof(int32_t))) ||
        !(out->values = alloc_array(c, nnz, sizeof(real))) ||
        !(perm = alloc_array(c, nnz, sizeof(int64_t))))
        goto done;
    for (int64_t k = 0; k < nnz; k++) {
        out->indptr[ent[k].key / n_out + 1]++;
        out->indices[k] = (int32_t)(ent[k].key % n_out);
        perm[k] = ent[k].pos;
    }
    for (int64_t i = 0; i < n_in; i++)
        out->indptr[i + 1] += out->indptr[i];
    out->count = nnz;
    rc = copy_values(c, t->values, &v, perm, nnz, out->values);
done:
    mem_free(c->m, &ent);
    mem_free(c->m, &perm);
    npy_fini(&rows, c->m);
    npy_fini(&cols, c->m);
    npy_fini(&v, c->m);
    return rc;
}

/* Random structure: pair (i, o) kept when u < prob, one uniform per pair, row-major, from
 * rng_seed(spec seed, projection name). Two passes over the same stream (count, then
 * fill) so nothing is allocated beyond the result. */
static int
random_structure(struct ctx *c, struct param *out)
{
    const struct model_tensor *t = c->t;
    int64_t n_in = c->p->in_size, n_out = c->p->out_size;
    if (!(t->prob >= 0.0 && t->prob <= 1.0))
        return fail(c, ERR_MODEL, "prob %g outside [0, 1]", t->prob);
    if (n_in * n_out > max_random_pairs)
        return fail(c, ERR_MODEL,
                    "random structure over %" PRId64 " x %" PRId64
                    " pairs is too large (at most 2^33 pairs are drawn)",
                    n_in, n_out);
    struct rng r;
    rng_seed(&r, t->seed, c->p->name);
    int64_t nnz = 0;
    for (int64_t k = 0; k < n_in * n_out; k++)
        nnz += rng_uniform(&r) < t->prob;
    if (nnz > max_count)
        return fail(c, ERR_MODEL, "%" PRId64 " kept weights exceed 2^31 - 1", nnz);
    if (!(out->indptr = alloc_array(c, n_in + 1, sizeof(int64_t))) ||
        !(out->indices = alloc_array(c, nnz, sizeof(int32_t))) ||
        !(out->values = alloc_array(c, nnz, sizeof(real))))
        return -1;
    rng_seed(&r, t->seed, c->p->name);
    int64_t k = 0;
    out->indptr[0] = 0;
    for (int64_t i = 0; i < n_in; i++) {
        for (int64_t o = 0; o < n_out; o++)
            if (rng_uniform(&r) < t->prob)
                out->indices[k++] = (int32_t)o;
        out->indptr[i + 1] = k;
    }
    out->count = nnz;
    return 0;
}

static int
load_sparse(struct ctx *c, struct rng *r, struct param *out)
{
    const struct model_tensor *t = c->t;
    int rc;
    switch (t->kind) {
    case MODEL_TENSOR_FILE:
        if (!t->indices || !t->indptr)
            return fail(c, ERR_MODEL,
                        "op: sparse needs indices and indptr beside file "
                        "(or rows/cols/values, or prob)");
        return load_csr(c, out);
    case MODEL_TENSOR_COO:
        return load_coo(c, out);
    case MODEL_TENSOR_RANDOM:
        break;
    case MODEL_TENSOR_INIT:
        return fail(c, ERR_MODEL,
                    "op: sparse needs a structure: {file, indices, indptr}, "
                    "{rows, cols, values} or {prob, seed, init}");
    case MODEL_TENSOR_NONE:
        return fail(c, ERR_MODEL, "no weight given");
    }
    if (random_structure(c, out) != 0)
        return -1;
    /* fan_in of column o: the number of weights stored into neuron o. */
    int64_t n_out = c->p->out_size;
    int64_t *fan = mem_calloc(c->m, (size_t)n_out, sizeof(int64_t));
    if (!fan)
        return fail(c, ERR_NOMEM, "out of memory for %" PRId64 " elements", n_out);
    for (int64_t k = 0; k < out->count; k++)
        fan[out->indices[k]]++;
    rc = fill_init(c, r, out->count, out->values, 1.0, (double)n_out, out->indices, fan);
    mem_free(c->m, &fan);
    return rc;
}

/* ---- entry points ---------------------------------------------------------------------- */

double
param_fan_in_dense(const struct model_proj *p)
{
    return p->op == MODEL_OP_ELEMWISE ? 1.0 : (double)p->in_size;
}

static double
fan_out_of(const struct model_proj *p)
{
    return p->op == MODEL_OP_ELEMWISE ? 1.0 : (double)p->out_size;
}

void
param_fini(struct param *a, const struct mem *m)
{
    mem_free(m, &a->values);
    mem_free(m, &a->indptr);
    mem_free(m, &a->indices);
    mem_free(m, &a->bias);
    a->count = 0;
}

int
param_load(const struct model_desc *d, const struct model_proj *p, const struct model_fs *fs,
           const struct mem *m, struct param *out, struct err *e)
{
    struct param r = {0};
    struct ctx c = {d, p, fs, m, e, &p->weight, "weight"};
    int64_t n_in = p->in_size, n_out = p->out_size;
    if (n_in <= 0 || n_out <= 0)
        return fail(&c, ERR_MODEL, "empty projection (I = %" PRId64 ", O = %" PRId64 ")", n_in,
                    n_out);

    /* One substream per projection: weight values in storage order, then the bias. */
    struct rng rng;
    rng_seed(&rng, d->seed, p->name);
    int rc;
    switch (p->op) {
    case MODEL_OP_DENSE: {
        int64_t shape[2] = {n_in, n_out};
        rc = load_plain(&c, &rng, 2, shape, (double)n_in, (double)n_out, &r.values);
        r.count = n_in * n_out;
        break;
    }
    case MODEL_OP_ELEMWISE: {
        int64_t shape[1] = {n_out};
        rc = load_plain(&c, &rng, 1, shape, 1.0, 1.0, &r.values);
        r.count = n_out;
        break;
    }
    case MODEL_OP_SPARSE:
        rc = load_sparse(&c, &rng, &r);
        break;
    default:
        rc = fail(&c, ERR_MODEL, "unknown op");
        break;
    }
    if (rc == 0 && p->bias.kind != MODEL_TENSOR_NONE) {
        /* A bias has the projection's fans; for sparse that is the dense fan_in I, since
         * a bias feeds every neuron whatever the structure. */
        c.t = &p->bias;
        c.field = "bias";
        int64_t shape[1] = {n_out};
        rc = load_plain(&c, &rng, 1, shape, param_fan_in_dense(p), fan_out_of(p), &r.bias);
    }
    if (rc != 0) {
        param_fini(&r, m);
        return -1;
    }
    *out = r;
    return 0;
}

int
param_from_arrays(const struct model_desc *d, const struct model_proj *p, const struct mem *m,
                  int64_t count, const real *values, const int64_t *indptr, const int32_t *indices,
                  const real *bias, struct param *out, struct err *e)
{
    const char *what = "the restored parameters";
    int64_t I = p->in_size, O = p->out_size;
    int has_bias = p->bias.kind != MODEL_TENSOR_NONE;
    int64_t want = p->op == MODEL_OP_DENSE ? I * O : (p->op == MODEL_OP_ELEMWISE ? O : count);
    if (count != want || count < 0 || count > max_count || (p->op == MODEL_OP_SPARSE) != !!indptr ||
        has_bias != !!bias)
        return err_setf(e, ERR_STATE, "%s: projections.%s: %s do not fit the model (%lld values)",
                        d->path, p->name, what, (long long)count),
               -1;
    if (indptr) {
        if (indptr[0] != 0 || indptr[I] != count || !indices)
            return err_setf(e, ERR_STATE, "%s: projections.%s: %s: a bad CSR row pointer", d->path,
                            p->name, what),
                   -1;
        for (int64_t i = 0; i < I; i++) {
            if (indptr[i + 1] < indptr[i])
                return err_setf(e, ERR_STATE, "%s: projections.%s: %s: row pointer decreases",
                                d->path, p->name, what),
                       -1;
            for (int64_t k = indptr[i]; k < indptr[i + 1]; k++)
                if (indices[k] < 0 || indices[k] >= O ||
                    (k > indptr[i] && indices[k] <= indices[k - 1]))
                    return err_setf(e, ERR_STATE,
                                    "%s: projections.%s: %s: row %lld has a bad column index",
                                    d->path, p->name, what, (long long)i),
                           -1;
        }
    }
    for (int64_t k = 0; k < count; k++)
        if (!isfinite(values[k]))
            return err_setf(e, ERR_STATE, "%s: projections.%s: %s: a non-finite weight", d->path,
                            p->name, what),
                   -1;
    struct param a = {.count = count};
    a.values = mem_alloc(m, (size_t)(count ? count : 1) * sizeof(real));
    if (indptr) {
        a.indptr = mem_alloc(m, (size_t)(I + 1) * sizeof(int64_t));
        a.indices = mem_alloc(m, (size_t)(count ? count : 1) * sizeof(int32_t));
    }
    if (has_bias)
        a.bias = mem_alloc(m, (size_t)O * sizeof(real));
    if (!a.values || (indptr && (!a.indptr || !a.indices)) || (has_bias && !a.bias)) {
        param_fini(&a, m);
        return err_setf(e, ERR_NOMEM, "%s: out of memory", d->path), -1;
    }
    memcpy(a.values, values, (size_t)count * sizeof(real));
    if (indptr) {
        memcpy(a.indptr, indptr, (size_t)(I + 1) * sizeof(int64_t));
        memcpy(a.indices, indices, (size_t)count * sizeof(int32_t));
    }
    if (has_bias)
        memcpy(a.bias, bias, (size_t)O * sizeof(real));
    *out = a;
    return 0;
}
