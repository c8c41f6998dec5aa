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

#endif
