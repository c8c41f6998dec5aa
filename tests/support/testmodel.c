/* Test support: temp model files, compile helpers, the tests' RNG. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkdtemp, strdup, clock_gettime */
#endif
#include "testmodel.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "model.h"
#include "npy.h"

int
testmodel_init(struct testmodel *tm)
{
    memset(tm, 0, sizeof *tm);
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !tmp[0])
        tmp = "/tmp";
    snprintf(tm->dir, sizeof tm->dir, "%s/etrace-test-XXXXXX", tmp);
    if (!mkdtemp(tm->dir)) {
        tm->dir[0] = '\0';
        return -1;
    }
    return 0;
}

void
testmodel_fini(struct testmodel *tm)
{
    for (int i = 0; i < tm->n_files; i++) {
        unlink(tm->files[i]);
        free(tm->files[i]);
        tm->files[i] = NULL;
    }
    tm->n_files = 0;
    if (tm->dir[0])
        rmdir(tm->dir);
    tm->dir[0] = '\0';
}

/* Records DIR/name as written (once) and returns its path, or NULL. */
static const char *
track_file(struct testmodel *tm, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", tm->dir, name);
    for (int i = 0; i < tm->n_files; i++)
        if (strcmp(tm->files[i], path) == 0)
            return tm->files[i];
    if (tm->n_files >= TESTMODEL_MAX_FILES)
        return NULL;
    char *p = strdup(path);
    if (!p)
        return NULL;
    tm->files[tm->n_files++] = p;
    return p;
}

int
testmodel_write(struct testmodel *tm, const char *name, const char *text)
{
    const char *path = track_file(tm, name);
    if (!path)
        return -1;
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    size_t n = strlen(text);
    int rc = fwrite(text, 1, n, f) == n ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

int
testmodel_write_npy(struct testmodel *tm, const char *name, int ndim, const int64_t *shape,
                    const double *data)
{
    const char *path = track_file(tm, name);
    if (!path)
        return -1;
    struct err e;
    err_clear(&e);
    return npy_write_file(path, NPY_F64, ndim, shape, data, &e);
}

struct engine *
testmodel_compile_file(struct testmodel *tm, const char *path, const struct mem *mem, int track)
{
    const struct mem *m = mem ? mem : mem_default();
    struct model_desc *d = NULL;
    struct engine *eng = NULL;
    struct err e;
    err_clear(&e);
    if (model_load_file(path, m, &d, &e) == 0) {
        struct engine_opts o = {.mem = m, .track_grad_sum = track};
        if (engine_compile(d, &o, &eng, &e) != 0) {
            model_free(&d, m);
            eng = NULL;
        }
    }
    if (!eng) {
        fprintf(stderr, "testmodel: %s\n", e.msg);
        if (tm)
            snprintf(tm->err, sizeof tm->err, "%s", e.msg);
    }
    return eng;
}

struct engine *
testmodel_compile_opts(const char *text, const struct engine_opts *o)
{
    struct testmodel tm;
    if (testmodel_init(&tm) != 0) {
        fprintf(stderr, "testmodel: cannot make a temp dir: %s\n", strerror(errno));
        return NULL;
    }
    struct engine_opts opts = *o;
    if (!opts.mem)
        opts.mem = mem_default();
    struct model_desc *d = NULL;
    struct engine *eng = NULL;
    struct err e;
    err_clear(&e);
    char path[sizeof tm.dir + 16];
    snprintf(path, sizeof path, "%s/model.yaml", tm.dir);
    if (testmodel_write(&tm, "model.yaml", text) != 0)
        snprintf(e.msg, sizeof e.msg, "cannot write %s: %s", path, strerror(errno));
    else if (model_load_file(path, opts.mem, &d, &e) == 0 && engine_compile(d, &opts, &eng, &e))
        model_free(&d, opts.mem);
    testmodel_fini(&tm);
    if (!eng)
        fprintf(stderr, "testmodel: %s\n", e.msg);
    return eng;
}

struct engine *
testmodel_compile_text(struct testmodel *tm, const char *name, const char *text,
                       const struct mem *mem, int track)
{
    if (!name)
        name = "model.yaml";
    if (testmodel_write(tm, name, text) != 0) {
        snprintf(tm->err, sizeof tm->err, "cannot write %s/%s: %s", tm->dir, name, strerror(errno));
        return NULL;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", tm->dir, name);
    return testmodel_compile_file(tm, path, mem, track);
}

const char *
testmodel_src_dir(void)
{
    const char *s = getenv("ETRACE_SRC");
    return s && s[0] ? s : ".";
}

int
testmodel_input(const struct engine *eng, const char *name)
{
    return model_find_input(engine_model(eng), name);
}

int
testmodel_readout(const struct engine *eng, const char *name)
{
    return model_find_readout(engine_model(eng), name);
}

int
testmodel_proj(const struct engine *eng, const char *name)
{
    return model_find_proj(engine_model(eng), name);
}

int
testmodel_cell(const struct engine *eng, const char *name)
{
    return model_find_cell(engine_model(eng), name);
}

/* ---- the tests' RNG --------------------------------------------------------------- */

static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void
testmodel_rng_seed(struct testmodel_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t
testmodel_rng_next(struct testmodel_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double
testmodel_rng_uniform(struct testmodel_rng *r)
{
    return (double)(testmodel_rng_next(r) >> 11) * 0x1.0p-53;
}

double
testmodel_rng_normal(struct testmodel_rng *r)
{
    /* Box-Muller; u1 in (0, 1] so the log is finite. */
    double u1 = 1.0 - testmodel_rng_uniform(r);
    double u2 = testmodel_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t
testmodel_seed(const char *suite, uint64_t fallback)
{
    uint64_t seed = fallback;
    const char *s = getenv("ETRACE_SEED");
    if (s && s[0])
        seed = strtoull(s, NULL, 0);
    printf("[%s] seed %llu (replay: ETRACE_SEED=%llu)\n", suite, (unsigned long long)seed,
           (unsigned long long)seed);
    return seed;
}

int
testmodel_all_finite(const real *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return 0;
    return 1;
}

double
testmodel_rel_err(int64_t n, const real *a, const real *b)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > num || d != d)
            num = d;
        double m = fabs((double)b[i]);
        if (m > den)
            den = m;
    }
    return num / (den > 1e-12 ? den : 1e-12);
}
