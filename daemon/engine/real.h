/* The engine's scalar type `real`: float by default, double with `make REAL=double`.
 * Engine layer. Every engine numeric goes through this header so the double build is
 * really double: literals through R(), math through <tgmath.h>. */
#ifndef ETRACE_REAL_H
#define ETRACE_REAL_H

#include <tgmath.h>

/* <tgmath.h> brings <complex.h>, whose macro I would take the name of every I (the
 * pre-synaptic size) in the engine; C11 7.3.1 allows undefining it. */
#undef I

#if defined(REAL_DOUBLE)
typedef double real;
#define R(x) (x)
#define REAL_NAME "double"
#define REAL_NPY_DESCR "<f8"
#define REAL_EPS 2.220446049250313e-16
#else
typedef float real;
#define R(x) (x##f)
#define REAL_NAME "float"
#define REAL_NPY_DESCR "<f4"
#define REAL_EPS 1.1920929e-07f
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The bits of |x| as an unsigned integer: for non-negative reals the integer order is the
 * numeric order and every Inf or NaN compares at or above REAL_ABS_BITS_INF, so a running
 * max of these bits is a vectorisable max-abs that also detects non-finite values. */
#if defined(REAL_DOUBLE)
typedef uint64_t real_bits;
#define REAL_ABS_BITS_INF UINT64_C(0x7ff0000000000000)
#define REAL_SIGN_MASK UINT64_C(0x7fffffffffffffff)
#else
typedef uint32_t real_bits;
#define REAL_ABS_BITS_INF UINT32_C(0x7f800000)
#define REAL_SIGN_MASK UINT32_C(0x7fffffff)
#endif

static inline real_bits
real_abs_bits(real x)
{
    real_bits b;
    memcpy(&b, &x, sizeof b);
    return b & REAL_SIGN_MASK;
}

/* The magnitude whose bits were accumulated, in double: Inf for any non-finite value. */
static inline double
real_from_abs_bits(real_bits b)
{
    if (b >= REAL_ABS_BITS_INF)
        return (double)INFINITY;
    real x;
    memcpy(&x, &b, sizeof x);
    return (double)x;
}

#endif
