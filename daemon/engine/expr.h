/* The expression compiler of DESIGN §2.2: a cell's equations -> a program that computes,
 * for a whole population at once, the new states and the derivatives the learning rules
 * need, by forward-mode automatic differentiation. Engine layer.
 *
 * Arrays are structure-of-arrays with stride n (the population size):
 *   h_old, h_new: [K][n]   slot: [S][n]   out: [n]
 *   jac:   [K][K][n]  jac[(k*K + j)*n + o] = d h_new[k][o] / d h_old[j][o]
 *   dslot: [K][S][n]  dslot[(k*S + s)*n + o] = d h_new[k][o] / d slot[s][o]
 *   dout:  [K][n]     dout[k*n + o] = d out[o] / d h_new[k][o]
 */
#ifndef ETRACE_EXPR_H
#define ETRACE_EXPR_H

#include <stddef.h>

#include "mem.h"
#include "model.h"
#include "real.h"

/* Where an expression error is: which expression of the cell and the 0-based character
 * offset inside its text. */
struct expr_error {
    int field;     /* -1: the cell as a whole; else index into the fields below:
                      0..n_defines-1 defines, n_defines..n_defines+K-1 updates,
                      n_defines+K the output */
    int offset;    /* 0-based column inside the expression text */
    char msg[256]; /* "unknown name 'x'", "expected ')'", ... */
};

struct expr_prog; /* opaque: a compiled cell */

/* Compiles cell c's defines, updates and output (names and scoping as DESIGN §2.2:
 * defines see old states, slots, params, dt and earlier defines; updates see the same;
 * output sees new states, params and dt). dt is the model's dt in seconds.
 * Returns 0 and *out (owned by the caller, freed with expr_prog_free), or -1 with
 * *err filled (ERR_NOMEM is reported as field -1, msg "out of memory"). */
int expr_prog_compile(const struct model_cell *c, double dt, const struct mem *m,
                      struct expr_prog **out, struct expr_error *err);

/* Frees a program; accepts NULL; sets *p to NULL. */
void expr_prog_free(struct expr_prog **p, const struct mem *m);

/* Bytes of scratch memory expr_prog_eval needs, whatever n is (the evaluator works in
 * fixed-size chunks of neurons). */
size_t expr_prog_scratch_bytes(const struct expr_prog *p);

/* Evaluates neurons [0, n). h_new and out are always written. jac, dslot and dout are
 * written when need_derivs is non-zero (and may be NULL otherwise). `scratch` has
 * expr_prog_scratch_bytes(p) bytes, 64-byte aligned. Pure: no allocation, no I/O; the
 * result depends only on the arguments. h_new must not alias h_old. */
void expr_prog_eval(const struct expr_prog *p, size_t n, real *h_new, real *out, real *jac,
                    real *dslot, real *dout, const real *h_old, const real *slot, int need_derivs,
                    void *scratch);

/* The number of spike() calls evaluated in the output expression of one neuron (0 for a
 * non-spiking cell); used to report firing rates. */
int expr_prog_is_spiking(const struct expr_prog *p);

/* Prints the program as text (one instruction per line) into buf, for debugging and
 * `etraced compile --expand --verbose`. Returns the length it needed. */
size_t expr_prog_dump(const struct expr_prog *p, char *buf, size_t buf_len);

#endif
