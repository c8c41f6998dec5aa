/* Losses and policy helpers. Reductions run in double, in index order. */
#include "loss.h"

#include <math.h>

double
loss_mse(int64_t n, real *dl, const real *y, const real *t)
{
    double s = 0.0;
    real k = R(2.0) / (real)n;
    for (int64_t o = 0; o < n; o++) {
        real d = y[o] - t[o];
        s += (double)d * (double)d;
        if (dl)
            dl[o] = k * d; /* d/dy mean (y - t)^2 */
    }
    return s / (double)n;
}

static double
log_sum_exp(int64_t n, const real *y, double *max_out)
{
    double mx = -(double)INFINITY;
    for (int64_t o = 0; o < n; o++)
        if ((double)y[o] > mx)
            mx = (double)y[o];
    double s = 0.0;
    for (int64_t o = 0; o < n; o++)
        s += exp((double)y[o] - mx);
    *max_out = mx;
    return log(s);
}

double
loss_cross_entropy(int64_t n, real *dl, const real *y, int cls)
{
    double mx;
    double lse = log_sum_exp(n, y, &mx);
    for (int64_t o = 0; dl && o < n; o++)
        dl[o] = (real)exp((double)y[o] - mx - lse) - (o == cls ? R(1.0) : R(0.0));
    return -((double)y[cls] - mx - lse);
}

void
loss_softmax(int64_t n, real *p, const real *y)
{
    double mx;
    double lse = log_sum_exp(n, y, &mx);
    for (int64_t o = 0; o < n; o++)
        p[o] = (real)exp((double)y[o] - mx - lse);
}

int64_t
loss_argmax(int64_t n, const real *y)
{
    int64_t best = 0;
    for (int64_t o = 1; o < n; o++)
        if (y[o] > y[best])
            best = o;
    return best;
}
