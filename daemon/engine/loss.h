/* Losses at the readouts (DESIGN §4.3) and their derivatives, and the
 * softmax policy's pieces. Engine layer. Pure kernels. */
#ifndef ETRACE_LOSS_H
#define ETRACE_LOSS_H

#include <stdint.h>

#include "real.h"

/* mse: returns L = mean_o (y[o] - t[o])^2 (in double) and sets dl[o] = 2 (y - t) / n
 * (dl may be NULL: the loss only; so for cross_entropy). */
double loss_mse(int64_t n, real *dl, const real *y, const real *t);

/* cross_entropy: returns L = -log softmax(y)[cls] and sets dl = softmax(y) - onehot(cls). */
double loss_cross_entropy(int64_t n, real *dl, const real *y, int cls);

/* p = softmax(y) (max-subtracted, in double), written as real. */
void loss_softmax(int64_t n, real *p, const real *y);

/* The index of the largest y, lowest index on ties. */
int64_t loss_argmax(int64_t n, const real *y);

#endif
