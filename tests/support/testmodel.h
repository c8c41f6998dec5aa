/* Test support for the engine suites: model text written to a private temp directory and
 * compiled, shipped-model lookup, a replayable test RNG and small numeric helpers.
 * Test layer (links the engine only; no main()). Single-threaded. */
#ifndef ETRACE_TESTMODEL_H
#define ETRACE_TESTMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "mem.h"
#include "real.h"

enum { TESTMODEL_MAX_FILES = 32 };

/* A private temp directory holding model files and .npy files; everything written into
 * it is removed by testmodel_fini. */
struct testmodel {
    char dir[512];                    /* the directory (mkdtemp) */
    int n_files;                      /* files written so far */
    char *files[TESTMODEL_MAX_FILES]; /* their full paths (malloc'd; freed by fini) */
    char err[1024];                   /* the last compile error's message */
};

/* Creates the temp directory under $TMPDIR (default /tmp). Returns 0, or -1 (errno). */
int testmodel_init(struct testmodel *tm);

/* Removes every file written and the directory. Accepts an initialised or failed tm. */
void testmodel_fini(struct testmodel *tm);

/* Writes `text` to DIR/name. Returns 0, or -1. */
int testmodel_write(struct testmodel *tm, const char *name, const char *text);

/* Writes a float64 .npy of the given shape to DIR/name. Returns 0, or -1. */
int testmodel_write_npy(struct testmodel *tm, const char *name, int ndim, const int64_t *shape,
                        const double *data);

/* Loads the model file at `path` and compiles it with allocator `mem` (NULL: default)
 * and track_grad_sum = track. Returns the engine (caller frees it with engine_free), or
 * NULL with the message in tm->err when tm is not NULL (and on stderr). */
struct engine *testmodel_compile_file(struct testmodel *tm, const char *path, const struct mem *mem,
                                      int track);

/* Writes `text` to a temp directory, compiles it with opts `o` (o->mem NULL: the default
 * allocator) and removes the directory. Returns the engine, or NULL with the message on
 * stderr. */
struct engine *testmodel_compile_opts(const char *text, const struct engine_opts *o);

/* Writes `text` as DIR/model.yaml (or DIR/name when name is not NULL) and compiles it as
 * testmodel_compile_file does. */
struct engine *testmodel_compile_text(struct testmodel *tm, const char *name, const char *text,
                                      const struct mem *mem, int track);

/* The source tree root: $ETRACE_SRC, default ".". Static storage or the environment. */
const char *testmodel_src_dir(void);

/* Indices of named things in a compiled engine (-1 when absent). */
int testmodel_input(const struct engine *eng, const char *name);
int testmodel_readout(const struct engine *eng, const char *name);
int testmodel_proj(const struct engine *eng, const char *name);
int testmodel_cell(const struct engine *eng, const char *name);

/* xoshiro256** seeded by splitmix64: the tests' own generator, separate from the
 * engine's, so a failing randomized case replays from its printed seed. */
struct testmodel_rng {
    uint64_t s[4];
};

void testmodel_rng_seed(struct testmodel_rng *r, uint64_t seed);
uint64_t testmodel_rng_next(struct testmodel_rng *r);
double testmodel_rng_uniform(struct testmodel_rng *r); /* [0, 1) */
double testmodel_rng_normal(struct testmodel_rng *r);  /* N(0, 1) */

/* The seed of a randomized suite: $ETRACE_SEED when set, else `fallback`; printed with
 * the way to replay it, prefixed by `suite`. */
uint64_t testmodel_seed(const char *suite, uint64_t fallback);

/* 1 when every value of p[n] is finite. */
int testmodel_all_finite(const real *p, int64_t n);

/* Relative error of DESIGN's conventions: max|a-b| / max(max|b|, 1e-12), in double. */
double testmodel_rel_err(int64_t n, const real *a, const real *b);

#endif
