/* Hand-written kernels for three built-in cells (lif and alif with reset: soft, and gru),
 * values and hand-derived derivatives in the layouts of expr.h. Test support: the baseline
 * of tests/bench/cell_bench.c and an independent check of the expression compiler
 * (tests/engine/expr_test.c). The compiled program stays the reference (DESIGN §2.2). */
#ifndef ETRACE_HANDCELL_H
#define ETRACE_HANDCELL_H

#include <stddef.h>

#include "model.h"
#include "real.h"

/* A cell's parameters, folded once in `real` as the compiler folds them. */
struct handcell_params {
    real v_th, v_reset, v_rest, r, beta;
    real c1;                     /* v_th - v_reset, the spike's scale */
    real inv_c1;                 /* 1 / c1 */
    real decay;                  /* exp(-dt / tau) */
    real decay_b;                /* exp(-dt / tau_b) (alif) */
    real dv_di;                  /* d v_new / d i = r - r * decay */
    real surr_alpha, surr_width; /* the relu surrogate */
};

/* Fills h from c's params (looked up by name; absent ones get DESIGN §3's defaults) and dt
 * (seconds). Returns 0, or -1 when c's surrogate is not relu (the only one written here). */
int handcell_setup(struct handcell_params *h, const struct model_cell *c, double dt);

/* One tick of n neurons, all outputs written (layouts of expr.h, stride n):
 * h_new, h_old: [K][n]; slot: [S][n]; jac: [K][K][n]; dslot: [K][S][n]; dout: [K][n].
 * lif: K = 1 (v), S = 2 (i, delta). alif: K = 2 (v, b), S = 2 (i, delta).
 * gru: K = 1 (h), S = 4 (z, r, nx, nh); h is unused. Pure; any thread. */
void handcell_lif(size_t n, real *restrict h_new, real *restrict out, real *restrict jac,
                  real *restrict dslot, real *restrict dout, const real *restrict h_old,
                  const real *restrict slot, const struct handcell_params *h);
void handcell_alif(size_t n, real *restrict h_new, real *restrict out, real *restrict jac,
                   real *restrict dslot, real *restrict dout, const real *restrict h_old,
                   const real *restrict slot, const struct handcell_params *h);
void handcell_gru(size_t n, real *restrict h_new, real *restrict out, real *restrict jac,
                  real *restrict dslot, real *restrict dout, const real *restrict h_old,
                  const real *restrict slot, const struct handcell_params *h);

#endif
