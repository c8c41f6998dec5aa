/* A projection's weight and bias materialised from their spec (DESIGN §2.3): .npy files,
 * CSR/COO/random sparse structure, initialisers from the projection's RNG substream.
 * Engine layer; runs at compile time only. */
#ifndef ETRACE_PARAM_H
#define ETRACE_PARAM_H

#include <stdint.h>

#include "err.h"
#include "mem.h"
#include "model.h"
#include "real.h"

struct param {
    int64_t count;    /* values: I*O dense, nnz sparse, O elemwise */
    real *values;     /* [count]; dense row-major [I][O]; sparse in CSR order */
    int64_t *indptr;  /* sparse only: [I + 1]; else NULL */
    int32_t *indices; /* sparse only: [nnz] post-synaptic o, strictly increasing per row */
    real *bias;       /* [O], or NULL without a bias */
};

/* Materialises projection p of model d. Files are read through fs (relative to the
 * model's directory). The RNG substream is rng_seed(d->seed, p->name): weights drawn in
 * storage order, then the bias; a random sparse structure uses its own
 * rng_seed(spec seed, p->name) for the keep draws, row-major, then values from the
 * projection's substream. Checks dtype, shape, indices in range and sorted, no
 * duplicate COO entries, and rejects sizes over 2^31 - 1 before allocating.
 * Initialisers: normal = mean + std * rng_normal, uniform = low + (high - low) *
 * rng_uniform, each value computed in double and rounded to real once; zeros, ones and
 * constant draw nothing. fan_in: I dense, 1 elemwise, sparse weights the number of
 * weights stored into column o (0 -> 1); fan_out: O (1 elemwise). A bias has its
 * projection's fans, with the dense fan_in I for a sparse projection (a bias feeds every
 * neuron whatever the structure). Values that are not finite once rounded to real (in a
 * file or from an initialiser) are errors. A random structure draws one uniform per
 * (i, o), so more than 2^33 pairs is rejected as absurd.
 * Returns 0 (out filled, arrays allocated with m) or -1 with out untouched and e =
 * "PATH:LINE:COL: projections.NAME.weight: message" (or .bias; LINE:COL of the weight's
 * or bias's mapping); the code is ERR_MODEL for shape, dtype, index and value errors,
 * and the fs's or the .npy parser's code (ERR_IO, ERR_NPY, ERR_NOMEM) otherwise. */
int param_load(const struct model_desc *d, const struct model_proj *p, const struct model_fs *fs,
               const struct mem *m, struct param *out, struct err *e);

/* Builds a param from arrays given in memory (a checkpoint's or a live model's), checking
 * that they fit projection p: count (I*O dense, O elemwise, nnz sparse), the CSR
 * structure (sparse only, NULL otherwise), the bias (present exactly when the model has
 * one), finite values. Copies everything. Returns 0, or -1 with ERR_STATE or ERR_NOMEM. */
int param_from_arrays(const struct model_desc *d, const struct model_proj *p, const struct mem *m,
                      int64_t count, const real *values, const int64_t *indptr,
                      const int32_t *indices, const real *bias, struct param *out, struct err *e);

/* Frees the arrays of a param (accepts a zeroed one). */
void param_fini(struct param *a, const struct mem *m);

/* The fan_in a dense-shaped tensor of p uses (DESIGN §2.3): I for dense, and for a
 * sparse projection's bias; 1 for elemwise. (Sparse weights use per-column counts.) */
double param_fan_in_dense(const struct model_proj *p);

#endif
