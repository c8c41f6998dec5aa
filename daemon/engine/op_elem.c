/* Elemwise projection kernels: y[o] = x[o] w[o] + b[o]. */
#include "op.h"

void
op_elem_forward(int64_t n, real *y, const real *w, const real *x, const real *b)
{
    if (b)
        for (int64_t o = 0; o < n; o++)
            y[o] = x[o] * w[o] + b[o];
    else
        for (int64_t o = 0; o < n; o++)
            y[o] = x[o] * w[o];
}

void
op_elem_backward(int64_t n, real *dx, const real *w, const real *dy)
{
    for (int64_t o = 0; o < n; o++)
        dx[o] += w[o] * dy[o];
}
