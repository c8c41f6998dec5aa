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
    int64_t count;     /* values: I*O dense, nnz sparse, O elemwise */
    real *values;      /* [count]; dense row-major [I][O]; sparse in CSR order */
    int64_t *indptr;   /* sparse only: [I + 1]; else NULL */
    int32_t *indices;  /* sparse only: [nnz] post-synaptic o, strictly increasing per row */
    real *bias;        /* [O], or NULL without a bias */
};

/* Materialises projection p of model d. Files are read through fs (relative to the
 * model's directory). The RNG substream is rng_seed(d->seed, p->name): weights drawn in
 * storage order, then the bias; a random sparse structure uses its own
 * rng_seed(spec seed, p->name) for the keep draws, row-major, then values from the
 * projection's substream. Checks dtype, shape, indices in range and sorted, no
 * duplicate COO entries, and rejects sizes over 2^31 - 1 before allocating.
 * Returns 0 (out filled, arrays allocated with m) or -1 with e =
 * "PATH:LINE:COL: projections.NAME.weight: message". */
int param_load(const struct model_desc *d, const struct model_proj *p,
               const struct model_fs *fs, const struct mem *m, struct param *out,
               struct err *e);

/* Frees the arrays of a param (accepts a zeroed one). */
void param_fini(struct param *a, const struct mem *m);

/* fan_in and fan_out of DESIGN §2.3 for weight or bias initialisers of projection p;
 * for sparse, fan_in is the number of stored weights into the neuron (pass the CSR). */
double param_fan_in_dense(const struct model_proj *p);

#endif
