/* The expression compiler of DESIGN §2.2: a cell's equations -> a straight-line program
 * over the population with forward-mode derivatives.
 *
 * How it works:
 * 1. Parse: every expression text is parsed once, by recursive descent with Python's
 *    precedences (`-x**2` is -(x**2), `**` is right-associative), into one AST array.
 * 2. Lower: the ASTs are walked in scoping order (defines, updates, output) into one DAG of
 *    hash-consed nodes (common subexpressions are shared). Each value carries its tangents
 *    (w.r.t. the K old states and S slots for defines and updates, w.r.t. the K new states
 *    for the output) as further DAG nodes: forward mode is expanded at compile time.
 *    Builders fold every uniform (param/dt/number-only) subexpression once, in `real`
 *    arithmetic with the very scalar functions the kernels use, and simplify x+0, x*1,
 *    x*0, 0/x, -(x*k) ..., so structurally-zero tangents vanish.
 * 3. Schedule: the DAG is emitted twice, with all derivatives and with values only, dead
 *    nodes dropped, as element-wise instructions over chunks of neurons. Single-use
 *    ADD/SUB/MUL nodes are fused into their ADD/SUB/MUL user (up to three ops per
 *    instruction, rounding exactly as unfused). Registers (one chunk of reals each, in the
 *    caller's scratch) are assigned by linear scan; a root is computed straight into the
 *    caller's array (h_new, jac, ...).
 * 4. Evaluate: chunk by chunk (CHUNK neurons, or SUB when the arrays exceed L3 and stream
 *    from DRAM); every kernel loop has the fixed trip count SUB, which gcc -O2 vectorises.
 *    The last, partial chunk is staged through scratch (inputs zero-padded). Every
 *    operation is element-wise, so a neuron's result never depends on n or on chunk
 *    boundaries; evaluation allocates nothing and does no I/O.
 * Semantics of the non-smooth functions are listed at lower_call().
 */
#include "expr.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    CHUNK = 256, /* neurons per evaluation step (registers stay in L1)... */
    SUB = 64,    /* ...made of sub-blocks: every kernel loop has this fixed trip count */
    MAX_VARS = MODEL_MAX_K + MODEL_MAX_SLOTS,
    MAX_DEPTH = 200, /* nesting limit of the parser, so hostile text cannot blow the stack */
    MAX_POWI = 64    /* x ** n with |n| <= this integer is expanded into multiplications */
};

/* Above this many bytes of arrays per evaluation (about L3), chunks shrink to one sub-block:
 * streaming from DRAM, touching every row in short bursts keeps more of the bandwidth. */
#define SMALL_CHUNK_MIN_BYTES ((size_t)32 << 20)

/* ---- scalar functions: the kernels and the constant folder share them ----------------- */

static inline real
sigm(real x)
{
    /* exp(-x) overflows to inf for very negative x, and 1 / inf is 0: never NaN. */
    return R(1.0) / (R(1.0) + exp(-x));
}

/* alpha * max(width - |x|, 0) */
static inline real
surr_relu(real x, real alpha, real width)
{
    real t = width - fabs(x);
    return alpha * (t > R(0.0) ? t : R(0.0));
}

/* alpha * s * (1 - s), s = sigmoid(alpha * x) */
static inline real
surr_sigm(real x, real alpha)
{
    real s = sigm(alpha * x);
    return alpha * s * (R(1.0) - s);
}

/* exp(-x^2 / two_var) / norm, two_var = 2 sigma^2, norm = sqrt(2 pi) sigma */
static inline real
surr_gauss(real x, real two_var, real norm)
{
    return exp(-(x * x) / two_var) / norm;
}

/* half_alpha * exp(-alpha |x|) */
static inline real
surr_expo(real x, real alpha, real half_alpha)
{
    return half_alpha * exp(-(alpha * fabs(x)));
}

/* The lanes [0, len) of a chunk, len a multiple of SUB: the inner loop's fixed trip count
 * lets gcc -O2 vectorise it. */
#define LANES(i)                                                                                   \
    for (int j_ = 0; j_ < len; j_ += SUB)                                                          \
        for (int i = j_; i < j_ + SUB; i++)

/* Unary ops: x is the operand, kx and ky per-instruction constants (surrogate params). */
#define UNARY_OPS(X)                                                                               \
    X(NEG, -x)                                                                                     \
    X(EXP, exp(x))                                                                                 \
    X(LOG, log(x))                                                                                 \
    X(SQRT, sqrt(x))                                                                               \
    X(ABS, fabs(x))                                                                                \
    X(TANH, tanh(x))                                                                               \
    X(SIGM, sigm(x))                                                                               \
    X(RELU, x > R(0.0) ? x : R(0.0))                                                               \
    X(SURR_RELU, surr_relu(x, kx, ky))                                                             \
    X(SURR_SIGM, surr_sigm(x, kx))                                                                 \
    X(SURR_GAUSS, surr_gauss(x, kx, ky))                                                           \
    X(SURR_EXPO, surr_expo(x, kx, ky))

/* Binary ops; comparisons give 1 or 0 (masks). min/max keep the first argument at a tie. */
#define BINARY_OPS(X)                                                                              \
    X(ADD, x + y)                                                                                  \
    X(SUB, x - y)                                                                                  \
    X(MUL, x *y)                                                                                   \
    X(DIV, x / y)                                                                                  \
    X(POW, pow(x, y))                                                                              \
    X(MIN, x <= y ? x : y)                                                                         \
    X(MAX, x >= y ? x : y)                                                                         \
    X(GT, x > y ? R(1.0) : R(0.0))                                                                 \
    X(LT, x < y ? R(1.0) : R(0.0))                                                                 \
    X(GE, x >= y ? R(1.0) : R(0.0))                                                                \
    X(LE, x <= y ? R(1.0) : R(0.0))

#define X(n, e)                                                                                    \
    static inline real s_##n(real x, real kx, real ky)                                             \
    {                                                                                              \
        (void)kx;                                                                                  \
        (void)ky;                                                                                  \
        return e;                                                                                  \
    }                                                                                              \
    static void k_##n(int len, real *restrict d, const real *restrict a, real kx, real ky)         \
    {                                                                                              \
        LANES(i)                                                                                   \
        d[i] = s_##n(a[i], kx, ky);                                                                \
    }
UNARY_OPS(X)
#undef X

#define X(n, e)                                                                                    \
    static inline real s_##n(real x, real y)                                                       \
    {                                                                                              \
        return e;                                                                                  \
    }                                                                                              \
    static void k_##n##_vv(int len, real *restrict d, const real *restrict a,                      \
                           const real *restrict b)                                                 \
    {                                                                                              \
        LANES(i)                                                                                   \
        d[i] = s_##n(a[i], b[i]);                                                                  \
    }                                                                                              \
    static void k_##n##_vc(int len, real *restrict d, const real *restrict a, real y)              \
    {                                                                                              \
        LANES(i)                                                                                   \
        d[i] = s_##n(a[i], y);                                                                     \
    }                                                                                              \
    static void k_##n##_cv(int len, real *restrict d, real x, const real *restrict b)              \
    {                                                                                              \
        LANES(i)                                                                                   \
        d[i] = s_##n(x, b[i]);                                                                     \
    }
BINARY_OPS(X)
#undef X

/* d = m != 0 ? x : y, each of x and y a vector or a constant. */
static inline real
s_sel(real m, real x, real y)
{
    return m != R(0.0) ? x : y;
}

static void
k_sel_vv(int len, real *restrict d, const real *restrict m, const real *restrict x,
         const real *restrict y)
{
    LANES(i)
    d[i] = s_sel(m[i], x[i], y[i]);
}

static void
k_sel_vc(int len, real *restrict d, const real *restrict m, const real *restrict x, real y)
{
    LANES(i)
    d[i] = s_sel(m[i], x[i], y);
}

static void
k_sel_cv(int len, real *restrict d, const real *restrict m, real x, const real *restrict y)
{
    LANES(i)
    d[i] = s_sel(m[i], x, y[i]);
}

static void
k_sel_cc(int len, real *restrict d, const real *restrict m, real x, real y)
{
    LANES(i)
    d[i] = s_sel(m[i], x, y);
}

static void
k_fill(int len, real *restrict d, real k)
{
    LANES(i)
    d[i] = k;
}

static void
k_copy(int len, real *restrict d, const real *restrict a)
{
    LANES(i)
    d[i] = a[i];
}

/* Fused arithmetic: d = (A op1 B) op2 C, rounded after each op exactly as two separate
 * instructions would be (-ffp-contract=off: no FMA), but in one pass over the chunk. The
 * scheduler fuses an ADD/SUB/MUL whose only use is an ADD/SUB/MUL. RSUB is C - (A op1 B).
 * Forms give which of A, B, C are vectors (V) or constants (C). */
#define OP1_ADD(x, y) ((x) + (y))
#define OP1_SUB(x, y) ((x) - (y))
#define OP1_MUL(x, y) ((x) * (y))
#define OP2_ADD(t, z) ((t) + (z))
#define OP2_SUB(t, z) ((t) - (z))
#define OP2_RSUB(t, z) ((z) - (t))
#define OP2_MUL(t, z) ((t) * (z))
#define GET_V(p, k, i) (p)[i]
#define GET_C(p, k, i) (k)

#define FUSED_FORMS(X, o1, o2)                                                                     \
    X(o1, o2, VVV, V, V, V)                                                                        \
    X(o1, o2, VVC, V, V, C)                                                                        \
    X(o1, o2, VCV, V, C, V)                                                                        \
    X(o1, o2, CVV, C, V, V)                                                                        \
    X(o1, o2, VCC, V, C, C)                                                                        \
    X(o1, o2, CVC, C, V, C)
#define FUSED_OP1(X, o2) FUSED_FORMS(X, ADD, o2) FUSED_FORMS(X, SUB, o2) FUSED_FORMS(X, MUL, o2)
#define FUSED_OPS(X) FUSED_OP1(X, ADD) FUSED_OP1(X, SUB) FUSED_OP1(X, RSUB) FUSED_OP1(X, MUL)

#define X(o1, o2, f, fa, fb, fc)                                                                   \
    static void kf_##o1##_##o2##_##f(int len, real *restrict d, const real *restrict pa,           \
                                     const real *restrict pb, const real *restrict pc, real ka,    \
                                     real kb, real kc)                                             \
    {                                                                                              \
        (void)pa;                                                                                  \
        (void)pb;                                                                                  \
        (void)pc;                                                                                  \
        (void)ka;                                                                                  \
        (void)kb;                                                                                  \
        (void)kc;                                                                                  \
        LANES(i)                                                                                   \
        {                                                                                          \
            real t = OP1_##o1(GET_##fa(pa, ka, i), GET_##fb(pb, kb, i));                           \
            d[i] = OP2_##o2(t, GET_##fc(pc, kc, i));                                               \
        }                                                                                          \
    }
FUSED_OPS(X)
#undef X

/* Three fused ops over four vector operands (constants come from constant registers):
 *   chain: d = ((A o1 B) o2 C) o3 D      pair: d = (A o1 B) o2 (C o3 D)
 * each op rounded as its own instruction would round it. */
#define CHAIN_O3(X, o1, o2) X(o1, o2, ADD) X(o1, o2, SUB) X(o1, o2, RSUB) X(o1, o2, MUL)
#define CHAIN_O2(X, o1)                                                                            \
    CHAIN_O3(X, o1, ADD) CHAIN_O3(X, o1, SUB) CHAIN_O3(X, o1, RSUB) CHAIN_O3(X, o1, MUL)
#define CHAIN_OPS(X) CHAIN_O2(X, ADD) CHAIN_O2(X, SUB) CHAIN_O2(X, MUL)
#define PAIR_O3(X, o1, o2) X(o1, o2, ADD) X(o1, o2, SUB) X(o1, o2, MUL)
#define PAIR_O2(X, o1) PAIR_O3(X, o1, ADD) PAIR_O3(X, o1, SUB) PAIR_O3(X, o1, MUL)
#define PAIR_OPS(X) PAIR_O2(X, ADD) PAIR_O2(X, SUB) PAIR_O2(X, MUL)

#define X(o1, o2, o3)                                                                              \
    static void kc_##o1##_##o2##_##o3(int len, real *restrict d, const real *restrict pa,          \
                                      const real *restrict pb, const real *restrict pc,            \
                                      const real *restrict pe)                                     \
    {                                                                                              \
        LANES(i)                                                                                   \
        {                                                                                          \
            real t = OP1_##o1(pa[i], pb[i]);                                                       \
            real u = OP2_##o2(t, pc[i]);                                                           \
            d[i] = OP2_##o3(u, pe[i]);                                                             \
        }                                                                                          \
    }
CHAIN_OPS(X)
#undef X

#define X(o1, o2, o3)                                                                              \
    static void kp_##o1##_##o2##_##o3(int len, real *restrict d, const real *restrict pa,          \
                                      const real *restrict pb, const real *restrict pc,            \
                                      const real *restrict pe)                                     \
    {                                                                                              \
        LANES(i)                                                                                   \
        {                                                                                          \
            real t = OP1_##o1(pa[i], pb[i]);                                                       \
            real u = OP1_##o3(pc[i], pe[i]);                                                       \
            d[i] = OP2_##o2(t, u);                                                                 \
        }                                                                                          \
    }
PAIR_OPS(X)
#undef X

/* ---- DAG node ops and instruction opcodes --------------------------------------------- */

enum bop {
    B_CONST, /* k */
    B_LEAF,  /* an input array row: a = its location (see loc_* below) */
    B_SEL,   /* a ? b : c (a is a mask) */
#define X(n, e) B_##n,
    UNARY_OPS(X) BINARY_OPS(X)
#undef X
        B_COUNT
};

static int
bop_is_unary(int op)
{
    return op >= B_NEG && op <= B_SURR_EXPO;
}

static int
bop_is_binary(int op)
{
    return op >= B_ADD && op < B_COUNT;
}

static int
bop_is_mask(int op)
{
    return op == B_GT || op == B_LT || op == B_GE || op == B_LE;
}

enum iop {
    I_FILL,
    I_COPY,
    I_SEL_VV,
    I_SEL_VC,
    I_SEL_CV,
    I_SEL_CC,
#define X(n, e) I_##n,
    UNARY_OPS(X)
#undef X
#define X(n, e) I_##n##_VV, I_##n##_VC, I_##n##_CV,
        BINARY_OPS(X)
#undef X
#define X(o1, o2, f, fa, fb, fc) I_F_##o1##_##o2##_##f,
            FUSED_OPS(X)
#undef X
#define X(o1, o2, o3) I_C_##o1##_##o2##_##o3,
                CHAIN_OPS(X)
#undef X
#define X(o1, o2, o3) I_P_##o1##_##o2##_##o3,
                    PAIR_OPS(X)
#undef X
};

/* chain (o1 0..2: add sub mul; o2, o3 0..3: add sub rsub mul) and pair (each 0..2) */
static int
chain_opcode(int o1, int o2, int o3)
{
    return I_C_ADD_ADD_ADD + (o1 * 4 + o2) * 4 + o3;
}

static int
pair_opcode(int o1, int o2, int o3)
{
    return I_P_ADD_ADD_ADD + (o1 * 3 + o2) * 3 + o3;
}

/* The fused opcode of (o1: 0 add, 1 sub, 2 mul; o2: 0 add, 1 sub, 2 rsub, 3 mul; form 0..5
 * in FUSED_FORMS order). */
static int
fused_opcode(int o1, int o2, int form)
{
    return I_F_ADD_ADD_VVV + (o2 * 3 + o1) * 6 + form;
}

static const char *const bop_names[] = {"const", "leaf", "sel",
#define X(n, e) #n,
                                        UNARY_OPS(X) BINARY_OPS(X)
#undef X
};

/* One instruction over CHUNK lanes: d = op(A, B, C). Each operand is a location a, b, c
 * (an index into the evaluator's pointer table) or, where the opcode's form says so, the
 * constant ka, kb, kc. Unary ops read a; surrogates keep their parameters in ka, kb. A
 * select reads its mask from a and picks B or C; a fill writes ka; a copy reads a. */
struct instr {
    uint16_t op;
    uint16_t dst, a, b, c, e; /* e: the fourth operand of a chain or pair */
    real ka, kb, kc;
};

/* A program: instructions and the number of registers they use. */
struct part {
    struct instr *ins;
    int n_ins;
    int n_regs;
    int n_consts; /* constant registers, after the registers, filled once per evaluation */
    real *consts; /* [n_consts] their values */
};

/* Locations: the first E index rows of the caller's arrays, in this order, then the
 * registers. */
struct expr_prog {
    int K, S;
    int E;        /* number of array-row locations */
    int max_regs; /* registers + constant registers of the larger part */
    size_t scratch_bytes;
    size_t ptr_bytes; /* the pointer table at the head of scratch */
    int n_spikes_out;
    struct part full;  /* values and every derivative */
    struct part plain; /* h_new and out only */
};

static int
loc_h_new(const struct expr_prog *p, int k)
{
    return p->K + p->S + k;
}
static int
loc_out(const struct expr_prog *p)
{
    return 2 * p->K + p->S;
}
static int
loc_jac(const struct expr_prog *p, int k, int j)
{
    return 2 * p->K + p->S + 1 + k * p->K + j;
}
static int
loc_dslot(const struct expr_prog *p, int k, int s)
{
    return 2 * p->K + p->S + 1 + p->K * p->K + k * p->S + s;
}
static int
loc_dout(const struct expr_prog *p, int k)
{
    return 2 * p->K + p->S + 1 + p->K * p->K + p->K * p->S + k;
}

/* ---- growable arrays through struct mem ------------------------------------------------ */

static int
grow(const struct mem *m, void *pp, int *cap, int need, size_t elem)
{
    void **p = pp;
    if (need <= *cap)
        return 0;
    int nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *np = mem_alloc(m, (size_t)nc * elem);
    if (!np)
        return -1;
    if (*p)
        memcpy(np, *p, (size_t)*cap * elem);
    mem_free(m, p);
    *p = np;
    *cap = nc;
    return 0;
}

/* ---- errors ------------------------------------------------------------------------------ */

static void set_err(struct expr_error *e, int field, int offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
set_err(struct expr_error *e, int field, int offset, const char *fmt, ...)
{
    e->field = field;
    e->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

/* ---- parser ---------------------------------------------------------------------------- */

enum ast_kind { A_NUM, A_NAME, A_NEG, A_ADD, A_SUB, A_MUL, A_DIV, A_POW, A_CALL };

enum fn {
    F_EXP,
    F_LOG,
    F_SQRT,
    F_ABS,
    F_TANH,
    F_SIGMOID,
    F_RELU,
    F_MIN,
    F_MAX,
    F_CLIP,
    F_SPIKE,
    F_STOP_GRADIENT
};

static const struct {
    const char *name;
    int n_args;
} fns[] = {
    [F_EXP] = {"exp", 1},   [F_LOG] = {"log", 1},     [F_SQRT] = {"sqrt", 1},
    [F_ABS] = {"abs", 1},   [F_TANH] = {"tanh", 1},   [F_SIGMOID] = {"sigmoid", 1},
    [F_RELU] = {"relu", 1}, [F_MIN] = {"min", 2},     [F_MAX] = {"max", 2},
    [F_CLIP] = {"clip", 3}, [F_SPIKE] = {"spike", 1}, [F_STOP_GRADIENT] = {"stop_gradient", 1},
};

struct ast {
    int kind;
    int off;    /* where it starts in the text (a name's or operator's offset) */
    int len;    /* A_NAME, A_CALL: the name's length */
    int fn;     /* A_CALL */
    int arg[3]; /* children */
    real num;   /* A_NUM */
};

enum tok { T_END, T_NUM, T_NAME, T_PLUS, T_MINUS, T_STAR, T_SLASH, T_POW, T_LP, T_RP, T_COMMA };

struct parser {
    const char *s;
    int pos;           /* the next unread character */
    int tok, off, len; /* the current token */
    real num;          /* T_NUM's value */
    int depth;
    int failed;
    int field;
    struct expr_error *err;
    const struct mem *m;
    struct ast **ast;
    int *n_ast, *cap_ast;
};

static void perr(struct parser *P, int off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
perr(struct parser *P, int off, const char *fmt, ...)
{
    if (P->failed)
        return;
    P->failed = 1;
    P->err->field = P->field;
    P->err->offset = off;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(P->err->msg, sizeof P->err->msg, fmt, ap);
    va_end(ap);
}

static int
is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int
is_name_start(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int
is_name_char(int c)
{
    return is_name_start(c) || is_digit(c);
}

/* Reads the next token into P->tok/off/len. */
static void
next(struct parser *P)
{
    const char *s = P->s;
    int i = P->pos;
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
        i++;
    P->off = i;
    int c = (unsigned char)s[i];
    if (c == '\0') {
        P->tok = T_END;
        P->len = 0;
        P->pos = i;
        return;
    }
    if (is_digit(c) || (c == '.' && is_digit((unsigned char)s[i + 1]))) {
        int j = i;
        while (is_digit((unsigned char)s[j]))
            j++;
        if (s[j] == '.') {
            j++;
            while (is_digit((unsigned char)s[j]))
                j++;
        }
        if (s[j] == 'e' || s[j] == 'E') {
            int k = j + 1;
            if (s[k] == '+' || s[k] == '-')
                k++;
            if (!is_digit((unsigned char)s[k])) {
                perr(P, i, "invalid number");
                P->tok = T_END;
                return;
            }
            while (is_digit((unsigned char)s[k]))
                k++;
            j = k;
        }
        char buf[64];
        if (j - i >= (int)sizeof buf) {
            perr(P, i, "number too long");
            P->tok = T_END;
            return;
        }
        memcpy(buf, s + i, (size_t)(j - i));
        buf[j - i] = '\0';
#if defined(REAL_DOUBLE)
        P->num = strtod(buf, NULL);
#else
        P->num = strtof(buf, NULL);
#endif
        P->tok = T_NUM;
        P->len = j - i;
        P->pos = j;
        return;
    }
    if (is_name_start(c)) {
        int j = i;
        while (is_name_char((unsigned char)s[j]))
            j++;
        P->tok = T_NAME;
        P->len = j - i;
        P->pos = j;
        return;
    }
    P->len = 1;
    switch (c) {
    case '+':
        P->tok = T_PLUS;
        break;
    case '-':
        P->tok = T_MINUS;
        break;
    case '*':
        if (s[i + 1] == '*') {
            P->tok = T_POW;
            P->len = 2;
        } else {
            P->tok = T_STAR;
        }
        break;
    case '/':
        P->tok = T_SLASH;
        break;
    case '(':
        P->tok = T_LP;
        break;
    case ')':
        P->tok = T_RP;
        break;
    case ',':
        P->tok = T_COMMA;
        break;
    default:
        if (c >= 32 && c < 127)
            perr(P, i, "unexpected character '%c'", c);
        else
            perr(P, i, "unexpected character (byte 0x%02x)", (unsigned)c);
        P->tok = T_END;
        P->len = 0;
        return;
    }
    P->pos = i + P->len;
}

static int
new_ast(struct parser *P, int kind, int off)
{
    if (P->failed)
        return -1;
    if (grow(P->m, P->ast, P->cap_ast, *P->n_ast + 1, sizeof(struct ast))) {
        perr(P, -1, "out of memory");
        P->err->field = -1;
        P->err->offset = 0;
        return -1;
    }
    struct ast *a = &(*P->ast)[*P->n_ast];
    memset(a, 0, sizeof *a);
    a->kind = kind;
    a->off = off;
    a->arg[0] = a->arg[1] = a->arg[2] = -1;
    return (*P->n_ast)++;
}

static const char *
tok_desc(int tok)
{
    switch (tok) {
    case T_END:
        return "end of expression";
    case T_NUM:
        return "number";
    case T_NAME:
        return "name";
    case T_PLUS:
        return "'+'";
    case T_MINUS:
        return "'-'";
    case T_STAR:
        return "'*'";
    case T_SLASH:
        return "'/'";
    case T_POW:
        return "'**'";
    case T_LP:
        return "'('";
    case T_RP:
        return "')'";
    default:
        return "','";
    }
}

static int parse_sum(struct parser *P);
static int parse_unary(struct parser *P);

static int
parse_primary(struct parser *P)
{
    if (P->failed)
        return -1;
    int off = P->off;
    if (P->tok == T_NUM) {
        int a = new_ast(P, A_NUM, off);
        if (a >= 0)
            (*P->ast)[a].num = P->num;
        next(P);
        return a;
    }
    if (P->tok == T_LP) {
        next(P);
        int a = parse_sum(P);
        if (P->failed)
            return -1;
        if (P->tok != T_RP) {
            perr(P, P->off, "expected ')' (to close '(' at %d), got %s", off, tok_desc(P->tok));
            return -1;
        }
        next(P);
        return a;
    }
    if (P->tok == T_NAME) {
        int len = P->len;
        next(P);
        if (P->tok != T_LP) {
            int a = new_ast(P, A_NAME, off);
            if (a >= 0)
                (*P->ast)[a].len = len;
            return a;
        }
        int fn = -1;
        for (int i = 0; i < (int)(sizeof fns / sizeof fns[0]); i++)
            if ((int)strlen(fns[i].name) == len &&
                memcmp(fns[i].name, P->s + off, (size_t)len) == 0)
                fn = i;
        if (fn < 0) {
            perr(P, off, "unknown function '%.*s'", len, P->s + off);
            return -1;
        }
        next(P);
        int args[3] = {-1, -1, -1};
        int n_args = 0;
        if (P->tok != T_RP) {
            for (;;) {
                int a = parse_sum(P);
                if (P->failed)
                    return -1;
                if (n_args < 3)
                    args[n_args] = a;
                n_args++;
                if (P->tok != T_COMMA)
                    break;
                next(P);
            }
        }
        if (P->tok != T_RP) {
            perr(P, P->off, "expected ',' or ')' in the call of '%s', got %s", fns[fn].name,
                 tok_desc(P->tok));
            return -1;
        }
        next(P);
        if (n_args != fns[fn].n_args) {
            perr(P, off, "'%s' takes %d argument%s, got %d", fns[fn].name, fns[fn].n_args,
                 fns[fn].n_args == 1 ? "" : "s", n_args);
            return -1;
        }
        int a = new_ast(P, A_CALL, off);
        if (a >= 0) {
            struct ast *x = &(*P->ast)[a];
            x->fn = fn;
            x->len = len;
            memcpy(x->arg, args, sizeof args);
        }
        return a;
    }
    if (P->tok == T_END)
        perr(P, P->off, "expected an expression, got end of expression");
    else
        perr(P, P->off, "expected an expression, got %s", tok_desc(P->tok));
    return -1;
}

/* power := primary ['**' unary]   (right-associative; the exponent may be negated) */
static int
parse_power(struct parser *P)
{
    int a = parse_primary(P);
    if (P->failed || P->tok != T_POW)
        return a;
    int off = P->off;
    next(P);
    int b = parse_unary(P);
    int r = new_ast(P, A_POW, off);
    if (r >= 0) {
        (*P->ast)[r].arg[0] = a;
        (*P->ast)[r].arg[1] = b;
    }
    return r;
}

/* unary := ('-' | '+') unary | power */
static int
parse_unary(struct parser *P)
{
    if (P->failed)
        return -1;
    if (++P->depth > MAX_DEPTH) {
        perr(P, P->off, "expression nested too deeply");
        return -1;
    }
    int r;
    if (P->tok == T_MINUS || P->tok == T_PLUS) {
        int neg = P->tok == T_MINUS;
        int off = P->off;
        next(P);
        int a = parse_unary(P);
        if (!neg) {
            r = a;
        } else {
            r = new_ast(P, A_NEG, off);
            if (r >= 0)
                (*P->ast)[r].arg[0] = a;
        }
    } else {
        r = parse_power(P);
    }
    P->depth--;
    return r;
}

/* product := unary (('*' | '/') unary)* */
static int
parse_product(struct parser *P)
{
    int a = parse_unary(P);
    while (!P->failed && (P->tok == T_STAR || P->tok == T_SLASH)) {
        int kind = P->tok == T_STAR ? A_MUL : A_DIV;
        int off = P->off;
        next(P);
        int b = parse_unary(P);
        int r = new_ast(P, kind, off);
        if (r >= 0) {
            (*P->ast)[r].arg[0] = a;
            (*P->ast)[r].arg[1] = b;
        }
        a = r;
    }
    return a;
}

/* sum := product (('+' | '-') product)* */
static int
parse_sum(struct parser *P)
{
    if (++P->depth > MAX_DEPTH) {
        perr(P, P->off, "expression nested too deeply");
        return -1;
    }
    int a = parse_product(P);
    while (!P->failed && (P->tok == T_PLUS || P->tok == T_MINUS)) {
        int kind = P->tok == T_PLUS ? A_ADD : A_SUB;
        int off = P->off;
        next(P);
        int b = parse_product(P);
        int r = new_ast(P, kind, off);
        if (r >= 0) {
            (*P->ast)[r].arg[0] = a;
            (*P->ast)[r].arg[1] = b;
        }
        a = r;
    }
    P->depth--;
    return a;
}

/* Parses one whole expression; returns its root or -1 with *err set. */
static int
parse_expr(const char *text, int field, const struct mem *m, struct ast **ast, int *n_ast,
           int *cap_ast, struct expr_error *err)
{
    struct parser P = {.s = text,
                       .field = field,
                       .err = err,
                       .m = m,
                       .ast = ast,
                       .n_ast = n_ast,
                       .cap_ast = cap_ast};
    next(&P);
    int r = parse_sum(&P);
    if (!P.failed && P.tok != T_END)
        perr(&P, P.off, "unexpected %s after the expression", tok_desc(P.tok));
    return P.failed ? -1 : r;
}

/* ---- DAG with hash-consing, folding and simplification ------------------------------------- */

struct node {
    int op;      /* enum bop */
    int a, b, c; /* operand node ids (-1: none); B_LEAF: a = the location */
    real k;      /* B_CONST: the value; surrogates: their first parameter */
    real k2;     /* surrogates: their second parameter */
};

struct dag {
    const struct mem *m;
    struct node *n;
    int len, cap;
    int *tab;    /* open-addressing hash of node ids, -1 empty */
    int tab_cap; /* power of 2 */
    int nomem;
    int zero, one; /* ids of the constants 0 and 1 */
    int surr_op;   /* B_SURR_* of the cell */
    real surr_k, surr_k2;
};

static uint64_t
node_kbits(real x)
{
    uint64_t u = 0;
    memcpy(&u, &x, sizeof x);
    return u;
}

static uint32_t
node_hash(const struct node *x)
{
    uint64_t h = 1469598103934665603ull;
    uint64_t v[6] = {(uint64_t)x->op,          (uint64_t)(uint32_t)x->a, (uint64_t)(uint32_t)x->b,
                     (uint64_t)(uint32_t)x->c, node_kbits(x->k),         node_kbits(x->k2)};
    for (int i = 0; i < 6; i++) {
        h ^= v[i];
        h *= 1099511628211ull;
        h ^= h >> 29;
    }
    return (uint32_t)h;
}

static int
node_eq(const struct node *x, const struct node *y)
{
    return x->op == y->op && x->a == y->a && x->b == y->b && x->c == y->c &&
           node_kbits(x->k) == node_kbits(y->k) && node_kbits(x->k2) == node_kbits(y->k2);
}

static int
dag_rehash(struct dag *g, int cap)
{
    int *t = mem_alloc(g->m, (size_t)cap * sizeof *t);
    if (!t)
        return -1;
    for (int i = 0; i < cap; i++)
        t[i] = -1;
    for (int id = 0; id < g->len; id++) {
        uint32_t h = node_hash(&g->n[id]) & (uint32_t)(cap - 1);
        while (t[h] >= 0)
            h = (h + 1) & (uint32_t)(cap - 1);
        t[h] = id;
    }
    mem_free(g->m, &g->tab);
    g->tab = t;
    g->tab_cap = cap;
    return 0;
}

/* The id of a node equal to *x, added if new. On out-of-memory returns the zero node and
 * sets g->nomem (the caller checks it once at the end). */
static int
dag_intern(struct dag *g, const struct node *x)
{
    if (g->nomem)
        return g->zero;
    if (2 * (g->len + 1) > g->tab_cap && dag_rehash(g, g->tab_cap ? 2 * g->tab_cap : 256)) {
        g->nomem = 1;
        return g->zero;
    }
    uint32_t mask = (uint32_t)(g->tab_cap - 1);
    uint32_t h = node_hash(x) & mask;
    while (g->tab[h] >= 0) {
        if (node_eq(&g->n[g->tab[h]], x))
            return g->tab[h];
        h = (h + 1) & mask;
    }
    if (grow(g->m, &g->n, &g->cap, g->len + 1, sizeof(struct node))) {
        g->nomem = 1;
        return g->zero;
    }
    g->n[g->len] = *x;
    g->tab[h] = g->len;
    return g->len++;
}

static int
is_const(const struct dag *g, int id)
{
    return g->n[id].op == B_CONST;
}

static int
is_cval(const struct dag *g, int id, real v)
{
    return g->n[id].op == B_CONST && g->n[id].k == v;
}

static int
dconst(struct dag *g, real k)
{
    struct node x = {B_CONST, -1, -1, -1, k, R(0.0)};
    return dag_intern(g, &x);
}

static int
dleaf(struct dag *g, int loc)
{
    struct node x = {B_LEAF, loc, -1, -1, R(0.0), R(0.0)};
    return dag_intern(g, &x);
}

static real
fold_unary(int op, real x, real kx, real ky)
{
    switch (op) {
#define X(n, e)                                                                                    \
    case B_##n:                                                                                    \
        return s_##n(x, kx, ky);
        UNARY_OPS(X)
#undef X
    default:
        return x;
    }
}

static real
fold_binary(int op, real x, real y)
{
    switch (op) {
#define X(n, e)                                                                                    \
    case B_##n:                                                                                    \
        return s_##n(x, y);
        BINARY_OPS(X)
#undef X
    default:
        return x;
    }
}

static int dbin(struct dag *g, int op, int a, int b);

static int
dun(struct dag *g, int op, int a)
{
    real kx = R(0.0), ky = R(0.0);
    if (op == B_SURR_RELU || op == B_SURR_SIGM || op == B_SURR_GAUSS || op == B_SURR_EXPO) {
        kx = g->surr_k;
        ky = g->surr_k2;
    }
    if (is_const(g, a))
        return dconst(g, fold_unary(op, g->n[a].k, kx, ky));
    if (op == B_NEG && g->n[a].op == B_NEG)
        return g->n[a].a;
    /* -(x * k) = x * (-k) exactly: one instruction instead of two. */
    if (op == B_NEG && g->n[a].op == B_MUL && is_const(g, g->n[a].b))
        return dbin(g, B_MUL, g->n[a].a, dconst(g, -g->n[g->n[a].b].k));
    if (op == B_NEG && g->n[a].op == B_MUL && is_const(g, g->n[a].a))
        return dbin(g, B_MUL, g->n[a].b, dconst(g, -g->n[g->n[a].a].k));
    struct node x = {op, a, -1, -1, kx, ky};
    return dag_intern(g, &x);
}

/* Folds and simplifies. The identities used (x+0, x-0, x*1, x/1, x*-1 -> -x) are exact up
 * to the sign of a zero; x*0 -> 0 and 0/x -> 0 are forward mode's structural zeros (they
 * drop NaN/inf propagation from a factor whose partner is an exact zero). */
static int
dbin(struct dag *g, int op, int a, int b)
{
    if (is_const(g, a) && is_const(g, b))
        return dconst(g, fold_binary(op, g->n[a].k, g->n[b].k));
    switch (op) {
    case B_ADD:
        if (is_cval(g, a, R(0.0)))
            return b;
        if (is_cval(g, b, R(0.0)))
            return a;
        /* x + -y = x - y and -x + y = y - x, exactly. */
        if (g->n[b].op == B_NEG)
            return dbin(g, B_SUB, a, g->n[b].a);
        if (g->n[a].op == B_NEG)
            return dbin(g, B_SUB, b, g->n[a].a);
        break;
    case B_SUB:
        if (is_cval(g, b, R(0.0)))
            return a;
        if (is_cval(g, a, R(0.0)))
            return dun(g, B_NEG, b);
        if (g->n[b].op == B_NEG)
            return dbin(g, B_ADD, a, g->n[b].a);
        break;
    case B_MUL:
        if (is_cval(g, a, R(0.0)) || is_cval(g, b, R(0.0)))
            return g->zero;
        /* -x * k = x * (-k), exactly. */
        if (g->n[a].op == B_NEG && is_const(g, b))
            return dbin(g, B_MUL, g->n[a].a, dconst(g, -g->n[b].k));
        if (g->n[b].op == B_NEG && is_const(g, a))
            return dbin(g, B_MUL, g->n[b].a, dconst(g, -g->n[a].k));
        if (is_cval(g, a, R(1.0)))
            return b;
        if (is_cval(g, b, R(1.0)))
            return a;
        if (is_cval(g, a, R(-1.0)))
            return dun(g, B_NEG, b);
        if (is_cval(g, b, R(-1.0)))
            return dun(g, B_NEG, a);
        break;
    case B_DIV:
        if (is_cval(g, a, R(0.0)))
            return g->zero;
        if (is_cval(g, b, R(1.0)))
            return a;
        if (is_cval(g, b, R(-1.0)))
            return dun(g, B_NEG, a);
        break;
    default:
        break;
    }
    /* + and * commute exactly in IEEE arithmetic: a canonical order shares more nodes. */
    if ((op == B_ADD || op == B_MUL) && a > b) {
        int t = a;
        a = b;
        b = t;
    }
    struct node x = {op, a, b, -1, R(0.0), R(0.0)};
    return dag_intern(g, &x);
}

static int
dsel(struct dag *g, int m, int x, int y)
{
    if (is_const(g, m))
        return g->n[m].k != R(0.0) ? x : y;
    if (x == y)
        return x;
    if (is_cval(g, x, R(1.0)) && is_cval(g, y, R(0.0)) && bop_is_mask(g->n[m].op))
        return m;
    struct node n = {B_SEL, m, x, y, R(0.0), R(0.0)};
    return dag_intern(g, &n);
}

/* ---- lowering: AST -> DAG with tangents ------------------------------------------------ */

struct dual {
    int v;           /* value node */
    int d[MAX_VARS]; /* tangent nodes w.r.t. each variable of the phase */
};

enum phase { PH_DEFINE, PH_UPDATE, PH_OUTPUT };

struct lower {
    struct dag *g;
    const struct model_cell *c;
    const struct ast *ast;
    const char *text; /* the current expression's text */
    int field;
    enum phase phase;
    int n_defs_visible; /* defines [0, this) may be named */
    struct dual *defs;  /* [n_defines] */
    int M;              /* tangent variables in this phase */
    real dt;
    struct expr_error *err;
    int failed;
};

static int
name_is(const char *name, const char *s, int len)
{
    return name && (int)strlen(name) == len && memcmp(name, s, (size_t)len) == 0;
}

static void
dual_const(struct lower *L, struct dual *r, int v)
{
    r->v = v;
    for (int j = 0; j < L->M; j++)
        r->d[j] = L->g->zero;
}

static void lower_ast(struct lower *L, int id, struct dual *r);

static void
lower_name(struct lower *L, const struct ast *a, struct dual *r)
{
    const struct model_cell *c = L->c;
    const char *s = L->text + a->off;
    struct dag *g = L->g;
    for (int k = 0; k < c->n_states; k++) {
        if (name_is(c->state_names[k], s, a->len)) {
            int loc = L->phase == PH_OUTPUT ? c->n_states + c->n_slots + k : k;
            dual_const(L, r, dleaf(g, loc));
            r->d[k] = g->one;
            return;
        }
    }
    for (int i = 0; i < c->n_slots; i++) {
        if (name_is(c->slot_names[i], s, a->len)) {
            if (L->phase == PH_OUTPUT)
                break;
            dual_const(L, r, dleaf(g, c->n_states + i));
            r->d[c->n_states + i] = g->one;
            return;
        }
    }
    for (int i = 0; i < c->n_params; i++) {
        if (name_is(c->param_names[i], s, a->len)) {
            dual_const(L, r, dconst(g, (real)c->param_values[i]));
            return;
        }
    }
    if (name_is("dt", s, a->len)) {
        dual_const(L, r, dconst(g, L->dt));
        return;
    }
    for (int i = 0; i < c->n_defines; i++) {
        if (!name_is(c->defines[i].name, s, a->len))
            continue;
        if (L->phase == PH_OUTPUT)
            break;
        if (i >= L->n_defs_visible) {
            set_err(L->err, L->field, a->off, "define '%.*s' is used before it is defined", a->len,
                    s);
            L->failed = 1;
            dual_const(L, r, g->zero);
            return;
        }
        *r = L->defs[i];
        return;
    }
    if (L->phase == PH_OUTPUT) {
        for (int i = 0; i < c->n_slots; i++)
            if (name_is(c->slot_names[i], s, a->len))
                goto not_visible;
        for (int i = 0; i < c->n_defines; i++)
            if (name_is(c->defines[i].name, s, a->len))
                goto not_visible;
    }
    set_err(L->err, L->field, a->off, "unknown name '%.*s'", a->len, s);
    L->failed = 1;
    dual_const(L, r, g->zero);
    return;
not_visible:
    set_err(L->err, L->field, a->off,
            "'%.*s' is not visible in output (it sees the new states, params and dt)", a->len, s);
    L->failed = 1;
    dual_const(L, r, g->zero);
}

/* x ** n for an integer n, by binary powering: x**2 is exactly x*x. */
static int
powi(struct dag *g, int x, long n)
{
    if (n == 0)
        return g->one;
    if (n < 0)
        return dbin(g, B_DIV, g->one, powi(g, x, -n));
    int r = -1, b = x;
    for (;;) {
        if (n & 1)
            r = r < 0 ? b : dbin(g, B_MUL, r, b);
        n >>= 1;
        if (!n)
            break;
        b = dbin(g, B_MUL, b, b);
    }
    return r;
}

/* x ** p for a constant p. */
static int
pow_const(struct dag *g, int x, real p)
{
    if (p == floor(p) && fabs(p) <= (real)MAX_POWI)
        return powi(g, x, (long)p);
    return dbin(g, B_POW, x, dconst(g, p));
}

static void
lower_pow(struct lower *L, const struct dual *a, const struct dual *b, struct dual *r)
{
    struct dag *g = L->g;
    int M = L->M;
    if (is_const(g, b->v)) {
        /* y = x**p, dy = p * x**(p-1) * dx; no log term, so x < 0 stays finite. */
        real p = g->n[b->v].k;
        r->v = pow_const(g, a->v, p);
        int t = dbin(g, B_MUL, b->v, pow_const(g, a->v, p - R(1.0)));
        for (int j = 0; j < M; j++)
            r->d[j] = dbin(g, B_MUL, t, a->d[j]);
        return;
    }
    /* dy = p * x**(p-1) * dx + log(x) * x**p * dp */
    r->v = dbin(g, B_POW, a->v, b->v);
    int t = -1, u = -1;
    for (int j = 0; j < M; j++) {
        int d1 = g->zero, d2 = g->zero;
        if (!is_cval(g, a->d[j], R(0.0))) {
            if (t < 0)
                t = dbin(g, B_MUL, b->v, dbin(g, B_POW, a->v, dbin(g, B_SUB, b->v, g->one)));
            d1 = dbin(g, B_MUL, t, a->d[j]);
        }
        if (!is_cval(g, b->d[j], R(0.0))) {
            if (u < 0)
                u = dbin(g, B_MUL, dun(g, B_LOG, a->v), r->v);
            d2 = dbin(g, B_MUL, u, b->d[j]);
        }
        r->d[j] = dbin(g, B_ADD, d1, d2);
    }
}

/* The functions of §2.2, value and derivative:
 *   exp, log, sqrt, tanh, sigmoid: the usual derivatives (sqrt'= 1/(2 sqrt x)).
 *   abs: x>0: dx, x<0: -dx, 0 at 0.        relu(x) = x>0 ? x : 0, derivative 0 at 0.
 *   min(a,b) = a<=b ? a : b, max(a,b) = a>=b ? a : b: the branch's derivative (tie: a).
 *   clip(x,lo,hi) = x<lo ? lo : x>hi ? hi : x, with the chosen branch's derivative.
 *   spike(x) = x>0 ? 1 : 0, derivative surrogate(x) * dx.  stop_gradient(x): x, 0. */
static void
lower_call(struct lower *L, const struct ast *a, struct dual *r)
{
    struct dag *g = L->g;
    int M = L->M;
    struct dual x[3];
    int n_args = fns[a->fn].n_args;
    for (int i = 0; i < n_args; i++)
        lower_ast(L, a->arg[i], &x[i]);
    switch (a->fn) {
    case F_EXP:
        r->v = dun(g, B_EXP, x[0].v);
        for (int j = 0; j < M; j++)
            r->d[j] = dbin(g, B_MUL, r->v, x[0].d[j]);
        break;
    case F_LOG:
        r->v = dun(g, B_LOG, x[0].v);
        for (int j = 0; j < M; j++)
            r->d[j] = dbin(g, B_DIV, x[0].d[j], x[0].v);
        break;
    case F_SQRT: {
        r->v = dun(g, B_SQRT, x[0].v);
        int two_y = dbin(g, B_MUL, dconst(g, R(2.0)), r->v);
        for (int j = 0; j < M; j++)
            r->d[j] = dbin(g, B_DIV, x[0].d[j], two_y);
        break;
    }
    case F_ABS: {
        r->v = dun(g, B_ABS, x[0].v);
        int gt = dbin(g, B_GT, x[0].v, g->zero), lt = dbin(g, B_LT, x[0].v, g->zero);
        for (int j = 0; j < M; j++)
            r->d[j] = dsel(g, gt, x[0].d[j], dsel(g, lt, dun(g, B_NEG, x[0].d[j]), g->zero));
        break;
    }
    case F_TANH: {
        r->v = dun(g, B_TANH, x[0].v);
        int t = dbin(g, B_SUB, g->one, dbin(g, B_MUL, r->v, r->v));
        for (int j = 0; j < M; j++)
            r->d[j] = dbin(g, B_MUL, t, x[0].d[j]);
        break;
    }
    case F_SIGMOID: {
        r->v = dun(g, B_SIGM, x[0].v);
        int t = dbin(g, B_MUL, r->v, dbin(g, B_SUB, g->one, r->v));
        for (int j = 0; j < M; j++)
            r->d[j] = dbin(g, B_MUL, t, x[0].d[j]);
        break;
    }
    case F_RELU: {
        r->v = dun(g, B_RELU, x[0].v);
        int gt = dbin(g, B_GT, x[0].v, g->zero);
        for (int j = 0; j < M; j++)
            r->d[j] = dsel(g, gt, x[0].d[j], g->zero);
        break;
    }
    case F_MIN:
    case F_MAX: {
        int is_min = a->fn == F_MIN;
        r->v = dbin(g, is_min ? B_MIN : B_MAX, x[0].v, x[1].v);
        int m = dbin(g, is_min ? B_LE : B_GE, x[0].v, x[1].v);
        for (int j = 0; j < M; j++)
            r->d[j] = dsel(g, m, x[0].d[j], x[1].d[j]);
        break;
    }
    case F_CLIP: {
        int lt = dbin(g, B_LT, x[0].v, x[1].v), gt = dbin(g, B_GT, x[0].v, x[2].v);
        r->v = dsel(g, lt, x[1].v, dsel(g, gt, x[2].v, x[0].v));
        for (int j = 0; j < M; j++)
            r->d[j] = dsel(g, lt, x[1].d[j], dsel(g, gt, x[2].d[j], x[0].d[j]));
        break;
    }
    case F_SPIKE: {
        r->v = dbin(g, B_GT, x[0].v, g->zero);
        int s = -1;
        for (int j = 0; j < M; j++) {
            if (is_cval(g, x[0].d[j], R(0.0))) {
                r->d[j] = g->zero;
                continue;
            }
            if (s < 0)
                s = dun(g, g->surr_op, x[0].v);
            r->d[j] = dbin(g, B_MUL, s, x[0].d[j]);
        }
        break;
    }
    default: /* F_STOP_GRADIENT */
        dual_const(L, r, x[0].v);
        break;
    }
}

static void
lower_ast(struct lower *L, int id, struct dual *r)
{
    const struct ast *a = &L->ast[id];
    struct dag *g = L->g;
    int M = L->M;
    struct dual x, y;
    switch (a->kind) {
    case A_NUM:
        dual_const(L, r, dconst(g, a->num));
        return;
    case A_NAME:
        lower_name(L, a, r);
        return;
    case A_CALL:
        lower_call(L, a, r);
        return;
    case A_NEG:
        lower_ast(L, a->arg[0], &x);
        r->v = dun(g, B_NEG, x.v);
        for (int j = 0; j < M; j++)
            r->d[j] = dun(g, B_NEG, x.d[j]);
        return;
    default:
        break;
    }
    lower_ast(L, a->arg[0], &x);
    lower_ast(L, a->arg[1], &y);
    switch (a->kind) {
    case A_ADD:
    case A_SUB: {
        int op = a->kind == A_ADD ? B_ADD : B_SUB;
        r->v = dbin(g, op, x.v, y.v);
        for (int j = 0; j < M; j++)
            r->d[j] = dbin(g, op, x.d[j], y.d[j]);
        return;
    }
    case A_MUL:
        r->v = dbin(g, B_MUL, x.v, y.v);
        for (int j = 0; j < M; j++)
            r->d[j] = dbin(g, B_ADD, dbin(g, B_MUL, x.d[j], y.v), dbin(g, B_MUL, x.v, y.d[j]));
        return;
    case A_DIV:
        /* y = a / b, dy = (da - y * db) / b */
        r->v = dbin(g, B_DIV, x.v, y.v);
        for (int j = 0; j < M; j++)
            r->d[j] = dbin(g, B_DIV, dbin(g, B_SUB, x.d[j], dbin(g, B_MUL, r->v, y.d[j])), y.v);
        return;
    default: /* A_POW */
        lower_pow(L, &x, &y, r);
        return;
    }
}

/* ---- scheduling: DAG -> instructions ------------------------------------------------- */

struct root {
    int dest; /* location */
    int node;
};

/* One step of the schedule: compute `node` (dest < 0) or copy/fill `node` into dest. */
struct item {
    int node;
    int dest;
};

static int
n_operands(const struct node *x, int ops[3])
{
    if (x->op == B_SEL) {
        ops[0] = x->a;
        ops[1] = x->b;
        ops[2] = x->c;
        return 3;
    }
    if (bop_is_unary(x->op)) {
        ops[0] = x->a;
        return 1;
    }
    if (bop_is_binary(x->op)) {
        ops[0] = x->a;
        ops[1] = x->b;
        return 2;
    }
    return 0;
}

static int
is_computed(const struct node *x)
{
    return x->op != B_CONST && x->op != B_LEAF;
}

static int
is_arith(int op)
{
    return op == B_ADD || op == B_SUB || op == B_MUL;
}

/* How node id is fused with its operands (fuse[id]):
 *   -1       not fused
 *   0, 1     F2: absorbed operand 0 (a) or 1 (b), itself unfused: (A o1 B) o2 C
 *   2, 3     chain: absorbed operand 0 or 1, itself an F2 node: ((A o1 B) o2 C) o3 D
 *   4        pair: absorbed both operands, unfused: (A o1 B) o2 (C o3 D) */
enum { FUSE_CHAIN = 2, FUSE_PAIR = 4 };

/* The nodes an item reads, leaves of its fused tree first to last (at most 4). */
static int
item_operands(const struct dag *g, const int *fuse, int id, int ops[4])
{
    const struct node *x = &g->n[id];
    int f = fuse[id];
    if (f < 0)
        return n_operands(x, ops);
    if (f == FUSE_PAIR) {
        ops[0] = g->n[x->a].a;
        ops[1] = g->n[x->a].b;
        ops[2] = g->n[x->b].a;
        ops[3] = g->n[x->b].b;
        return 4;
    }
    int k = f & 1, yid = k == 0 ? x->a : x->b;
    const struct node *y = &g->n[yid];
    if (f < FUSE_CHAIN) {
        ops[0] = y->a;
        ops[1] = y->b;
        ops[2] = k == 0 ? x->b : x->a;
        return 3;
    }
    const struct node *z = &g->n[fuse[yid] == 0 ? y->a : y->b];
    ops[0] = z->a;
    ops[1] = z->b;
    ops[2] = fuse[yid] == 0 ? y->b : y->a;
    ops[3] = k == 0 ? x->b : x->a;
    return 4;
}

/* The o2/o3 code (0 add, 1 sub, 2 rsub, 3 mul) of node x whose fused operand is k. */
static int
outer_code(const struct node *x, int k)
{
    return x->op == B_ADD ? 0 : x->op == B_MUL ? 3 : k == 0 ? 1 : 2;
}

static int
inner_code(const struct node *x)
{
    return x->op == B_ADD ? 0 : x->op == B_SUB ? 1 : 2;
}

/* Constant registers of one part being scheduled. */
struct consts {
    real *v;
    int n, cap;
    int nomem;
};

enum { CONST_TAG = 0x8000 }; /* operand slots >= this name constant registers until fixed */

/* Sets a pointer-only operand slot from node id: a location, or a constant register. */
static void
set_vec_operand(const struct dag *g, const int *loc, int id, uint16_t *l, struct consts *k,
                const struct mem *m)
{
    if (!is_const(g, id)) {
        *l = (uint16_t)loc[id];
        return;
    }
    real v = g->n[id].k;
    int i = 0;
    while (i < k->n && node_kbits(k->v[i]) != node_kbits(v))
        i++;
    if (i == k->n) {
        if (grow(m, &k->v, &k->cap, k->n + 1, sizeof(real))) {
            k->nomem = 1;
            i = 0;
        } else {
            k->v[k->n++] = v;
        }
    }
    *l = (uint16_t)(CONST_TAG + i);
}

/* Sets operand slot (location *l or constant *k) from node id. */
static void
set_operand(const struct dag *g, const int *loc, int id, uint16_t *l, real *k)
{
    if (is_const(g, id))
        *k = g->n[id].k;
    else
        *l = (uint16_t)loc[id];
}

/* Fills *in for computing node id (destination already set). */
static void
emit_compute(const struct dag *g, const int *loc, const int *fuse, int id, struct instr *in,
             struct consts *k, const struct mem *m)
{
    const struct node *x = &g->n[id];
    if (fuse[id] >= FUSE_CHAIN) {
        int ops[4];
        item_operands(g, fuse, id, ops);
        if (fuse[id] == FUSE_PAIR) {
            in->op = (uint16_t)pair_opcode(inner_code(&g->n[x->a]), inner_code(x),
                                           inner_code(&g->n[x->b]));
        } else {
            int kx = fuse[id] & 1, yid = kx == 0 ? x->a : x->b;
            const struct node *y = &g->n[yid];
            const struct node *z = &g->n[fuse[yid] == 0 ? y->a : y->b];
            in->op =
                (uint16_t)chain_opcode(inner_code(z), outer_code(y, fuse[yid]), outer_code(x, kx));
        }
        set_vec_operand(g, loc, ops[0], &in->a, k, m);
        set_vec_operand(g, loc, ops[1], &in->b, k, m);
        set_vec_operand(g, loc, ops[2], &in->c, k, m);
        set_vec_operand(g, loc, ops[3], &in->e, k, m);
    } else if (fuse[id] >= 0) {
        const struct node *y = &g->n[fuse[id] == 0 ? x->a : x->b];
        int other = fuse[id] == 0 ? x->b : x->a;
        int o1 = y->op == B_ADD ? 0 : y->op == B_SUB ? 1 : 2;
        int o2 = x->op == B_ADD ? 0 : x->op == B_MUL ? 3 : fuse[id] == 0 ? 1 : 2;
        int ca = is_const(g, y->a), cb = is_const(g, y->b), cc = is_const(g, other);
        int form = !ca && !cb ? (cc ? 1 : 0) : ca ? (cc ? 5 : 3) : (cc ? 4 : 2);
        in->op = (uint16_t)fused_opcode(o1, o2, form);
        set_operand(g, loc, y->a, &in->a, &in->ka);
        set_operand(g, loc, y->b, &in->b, &in->kb);
        set_operand(g, loc, other, &in->c, &in->kc);
    } else if (x->op == B_SEL) {
        int cx = is_const(g, x->b), cy = is_const(g, x->c);
        in->op = (uint16_t)(cx ? (cy ? I_SEL_CC : I_SEL_CV) : (cy ? I_SEL_VC : I_SEL_VV));
        in->a = (uint16_t)loc[x->a];
        set_operand(g, loc, x->b, &in->b, &in->kb);
        set_operand(g, loc, x->c, &in->c, &in->kc);
    } else if (bop_is_unary(x->op)) {
        in->op = (uint16_t)(I_NEG + (x->op - B_NEG));
        in->a = (uint16_t)loc[x->a];
        in->ka = x->k;
        in->kb = x->k2;
    } else {
        int base = I_ADD_VV + 3 * (x->op - B_ADD);
        in->op = (uint16_t)(is_const(g, x->a) ? base + 2 : is_const(g, x->b) ? base + 1 : base);
        set_operand(g, loc, x->a, &in->a, &in->ka);
        set_operand(g, loc, x->b, &in->b, &in->kb);
    }
}

/* Emits the program computing `roots` (the first n_upd read only nodes below `boundary`).
 * Returns 0 or -1 when out of memory. */
static int
schedule(const struct dag *g, int boundary, const struct root *roots, int n_roots, int n_upd, int E,
         struct part *out, const struct mem *m)
{
    int N = g->len;
    int rc = -1;
    char *needed = mem_calloc(m, (size_t)N, 1);
    char *is_copy = mem_calloc(m, (size_t)n_roots + 1, 1);
    int *loc = mem_alloc(m, (size_t)N * sizeof(int));
    int *last = mem_alloc(m, (size_t)N * sizeof(int));
    int *uses = mem_calloc(m, (size_t)N, sizeof(int));
    int *fuse = mem_alloc(m, (size_t)N * sizeof(int));
    struct item *items = mem_alloc(m, (size_t)(N + n_roots) * sizeof(struct item));
    int *free_regs = mem_alloc(m, (size_t)N * sizeof(int) + 1);
    struct instr *ins = NULL;
    if (!needed || !is_copy || !loc || !last || !uses || !fuse || !items || !free_regs)
        goto fail;

    for (int i = 0; i < n_roots; i++) {
        needed[roots[i].node] = 1;
        uses[roots[i].node]++;
    }
    for (int id = N - 1; id >= 0; id--) {
        int ops[3];
        if (!needed[id])
            continue;
        int no = n_operands(&g->n[id], ops);
        for (int o = 0; o < no; o++) {
            needed[ops[o]] = 1;
            uses[ops[o]]++;
        }
    }
    for (int id = 0; id < N; id++) {
        loc[id] = g->n[id].op == B_LEAF ? g->n[id].a : -1;
        last[id] = -1;
        fuse[id] = -1;
    }

    /* A computed root is written straight into its array; any further root of the same
     * node, and constant or leaf roots, become fills and copies. */
    for (int i = 0; i < n_roots; i++) {
        int x = roots[i].node;
        if (is_computed(&g->n[x]) && loc[x] < 0)
            loc[x] = roots[i].dest;
        else
            is_copy[i] = 1;
    }

    /* Fusion: an ADD/SUB/MUL used once, by an ADD/SUB/MUL, and not itself a root, is
     * computed inside its user's loop (needed = 2: no instruction of its own). Bottom-up,
     * each user takes the largest shape it can: a chain, a pair, else F2. */
    for (int id = 0; id < N; id++) {
        const struct node *x = &g->n[id];
        if (needed[id] != 1 || !is_arith(x->op))
            continue;
        int cand[2];
        for (int k = 0; k < 2; k++) {
            int y = k == 0 ? x->a : x->b;
            cand[k] = is_arith(g->n[y].op) && uses[y] == 1 && loc[y] < 0 && needed[y] == 1;
        }
        int k;
        for (k = 0; k < 2; k++)
            if (cand[k] && (fuse[k == 0 ? x->a : x->b] == 0 || fuse[k == 0 ? x->a : x->b] == 1))
                break;
        if (k < 2) {
            fuse[id] = FUSE_CHAIN + k;
            needed[k == 0 ? x->a : x->b] = 2;
        } else if (cand[0] && cand[1] && x->a != x->b && fuse[x->a] < 0 && fuse[x->b] < 0) {
            fuse[id] = FUSE_PAIR;
            needed[x->a] = needed[x->b] = 2;
        } else {
            for (k = 0; k < 2; k++) {
                int y = k == 0 ? x->a : x->b;
                if (cand[k] && fuse[y] < 0) {
                    fuse[id] = k;
                    needed[y] = 2;
                    break;
                }
            }
        }
    }

    int n_items = 0;
    for (int id = 0; id < boundary; id++)
        if (needed[id] == 1 && is_computed(&g->n[id]))
            items[n_items++] = (struct item){id, -1};
    for (int i = 0; i < n_upd; i++)
        if (is_copy[i])
            items[n_items++] = (struct item){roots[i].node, roots[i].dest};
    for (int id = boundary; id < N; id++)
        if (needed[id] == 1 && is_computed(&g->n[id]))
            items[n_items++] = (struct item){id, -1};
    for (int i = n_upd; i < n_roots; i++)
        if (is_copy[i])
            items[n_items++] = (struct item){roots[i].node, roots[i].dest};

    for (int i = 0; i < n_items; i++) {
        int ops[4];
        if (items[i].dest >= 0) {
            last[items[i].node] = i;
            continue;
        }
        int no = item_operands(g, fuse, items[i].node, ops);
        for (int o = 0; o < no; o++)
            last[ops[o]] = i;
    }

    ins = mem_alloc(m, (size_t)(n_items ? n_items : 1) * sizeof *ins);
    if (!ins)
        goto fail;
    struct consts kon = {0};
    int n_free = 0, n_regs = 0;
    for (int i = 0; i < n_items; i++) {
        struct instr *in = &ins[i];
        memset(in, 0, sizeof *in);
        int id = items[i].node;
        int ops[4];
        int no;
        if (items[i].dest >= 0) {
            in->dst = (uint16_t)items[i].dest;
            if (g->n[id].op == B_CONST) {
                in->op = I_FILL;
                in->ka = g->n[id].k;
            } else {
                in->op = I_COPY;
                in->a = (uint16_t)loc[id];
            }
            no = 1;
            ops[0] = id;
        } else {
            /* The destination is chosen before the operands die: never an operand. */
            if (loc[id] < 0)
                loc[id] = E + (n_free ? free_regs[--n_free] : n_regs++);
            in->dst = (uint16_t)loc[id];
            emit_compute(g, loc, fuse, id, in, &kon, m);
            no = item_operands(g, fuse, id, ops);
        }
        for (int o = 0; o < no; o++) {
            int y = ops[o];
            int dup = 0;
            for (int q = 0; q < o; q++)
                dup |= ops[q] == y;
            if (!dup && last[y] == i && loc[y] >= E)
                free_regs[n_free++] = loc[y] - E;
        }
    }
    if (kon.nomem) {
        mem_free(m, &kon.v);
        goto fail;
    }
    if (E + n_regs + kon.n >= CONST_TAG) {
        mem_free(m, &kon.v);
        rc = -2;
        goto fail;
    }
    /* Constant registers live after the registers. */
    for (int i = 0; i < n_items; i++) {
        uint16_t *sl[4] = {&ins[i].a, &ins[i].b, &ins[i].c, &ins[i].e};
        if (ins[i].op < I_C_ADD_ADD_ADD)
            continue;
        for (int q = 0; q < 4; q++)
            if (*sl[q] >= CONST_TAG)
                *sl[q] = (uint16_t)(E + n_regs + (*sl[q] - CONST_TAG));
    }
    out->ins = ins;
    out->n_ins = n_items;
    out->n_regs = n_regs;
    out->n_consts = kon.n;
    out->consts = kon.v;
    ins = NULL;
    rc = 0;
fail:
    mem_free(m, &ins);
    mem_free(m, &needed);
    mem_free(m, &is_copy);
    mem_free(m, &loc);
    mem_free(m, &last);
    mem_free(m, &uses);
    mem_free(m, &fuse);
    mem_free(m, &items);
    mem_free(m, &free_regs);
    return rc;
}

/* ---- compile ---------------------------------------------------------------------------- */

static int
check_names(const struct model_cell *c, struct expr_error *err)
{
    /* Every name of the cell's namespace, with its kind, checked pairwise. */
    const char *names[MODEL_MAX_K + MODEL_MAX_SLOTS + 1];
    const char *kinds[MODEL_MAX_K + MODEL_MAX_SLOTS + 1];
    int n = 0;
    names[n] = "dt";
    kinds[n++] = "dt";
    for (int k = 0; k < c->n_states; k++) {
        names[n] = c->state_names[k];
        kinds[n++] = "a state";
    }
    for (int s = 0; s < c->n_slots; s++) {
        names[n] = c->slot_names[s];
        kinds[n++] = "a slot";
    }
    for (int i = 0; i < n; i++) {
        if (!names[i]) {
            set_err(err, -1, 0, "%s without a name", kinds[i]);
            return -1;
        }
        for (int j = 1; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0) {
                set_err(err, -1, 0, "name '%s' is both %s and %s", names[i], kinds[j], kinds[i]);
                return -1;
            }
        }
        if (i > 0 && strcmp(names[i], "dt") == 0) {
            set_err(err, -1, 0, "'dt' is reserved and cannot name %s", kinds[i]);
            return -1;
        }
    }
    for (int p = 0; p < c->n_params; p++) {
        if (!c->param_names[p]) {
            set_err(err, -1, 0, "a param without a name");
            return -1;
        }
        if (strcmp(c->param_names[p], "dt") == 0) {
            set_err(err, -1, 0, "'dt' is reserved and cannot name a param");
            return -1;
        }
        for (int i = 1; i < n; i++) {
            if (strcmp(c->param_names[p], names[i]) == 0) {
                set_err(err, -1, 0, "name '%s' is both a param and %s", names[i], kinds[i]);
                return -1;
            }
        }
        for (int q = 0; q < p; q++) {
            if (strcmp(c->param_names[p], c->param_names[q]) == 0) {
                set_err(err, -1, 0, "param '%s' is given twice", c->param_names[p]);
                return -1;
            }
        }
    }
    for (int d = 0; d < c->n_defines; d++) {
        const char *dn = c->defines[d].name;
        const char *what = NULL;
        if (!dn) {
            set_err(err, d, 0, "a define without a name");
            return -1;
        }
        for (int i = 0; i < n && !what; i++)
            if (strcmp(dn, names[i]) == 0)
                what = kinds[i];
        for (int p = 0; p < c->n_params && !what; p++)
            if (strcmp(dn, c->param_names[p]) == 0)
                what = "a param";
        for (int q = 0; q < d && !what; q++)
            if (strcmp(dn, c->defines[q].name) == 0)
                what = "an earlier define";
        if (what) {
            set_err(err, d, 0, "define '%s' shadows %s", dn, what);
            return -1;
        }
    }
    return 0;
}

static void
count_spikes(const struct ast *ast, int id, int *n)
{
    const struct ast *a = &ast[id];
    if (a->kind == A_CALL && a->fn == F_SPIKE)
        (*n)++;
    for (int i = 0; i < 3; i++)
        if (a->arg[i] >= 0 && a->kind != A_NUM && a->kind != A_NAME)
            count_spikes(ast, a->arg[i], n);
}

static int
surrogate_setup(struct dag *g, const struct model_surrogate *s, struct expr_error *err)
{
    switch (s->kind) {
    case MODEL_SURR_RELU:
        g->surr_op = B_SURR_RELU;
        g->surr_k = (real)s->alpha;
        g->surr_k2 = (real)s->width;
        return 0;
    case MODEL_SURR_SIGMOID:
        g->surr_op = B_SURR_SIGM;
        g->surr_k = (real)s->alpha;
        return 0;
    case MODEL_SURR_GAUSSIAN:
        g->surr_op = B_SURR_GAUSS;
        g->surr_k = (real)(2.0 * s->sigma * s->sigma);
        g->surr_k2 = (real)(2.5066282746310002 * s->sigma); /* sqrt(2 pi) sigma */
        return 0;
    case MODEL_SURR_EXPONENTIAL:
        g->surr_op = B_SURR_EXPO;
        g->surr_k = (real)s->alpha;
        g->surr_k2 = (real)(s->alpha / 2.0);
        return 0;
    }
    set_err(err, -1, 0, "unknown surrogate kind %d", (int)s->kind);
    return -1;
}

static void
prog_free_parts(struct expr_prog *p, const struct mem *m)
{
    mem_free(m, &p->full.ins);
    mem_free(m, &p->plain.ins);
    mem_free(m, &p->full.consts);
    mem_free(m, &p->plain.consts);
}

int
expr_prog_compile(const struct model_cell *c, double dt, const struct mem *m,
                  struct expr_prog **out, struct expr_error *err)
{
    int K = c->n_states, S = c->n_slots, D = c->n_defines;
    int n_fields = D + K + 1;
    struct ast *ast = NULL;
    int n_ast = 0, cap_ast = 0;
    int *roots_ast = NULL;
    struct dual *defs = NULL;
    struct dual *upd = NULL;
    struct root *roots = NULL;
    struct expr_prog *p = NULL;
    struct dag g = {.m = m};
    int rc = -1;

    memset(err, 0, sizeof *err);
    err->field = -1;
    if (K < 1 || K > MODEL_MAX_K || S < 0 || S > MODEL_MAX_SLOTS || D < 0 ||
        (D > 0 && !c->defines) || c->n_params < 0 ||
        (c->n_params > 0 && (!c->param_names || !c->param_values))) {
        set_err(err, -1, 0, "a cell needs 1..%d states, 0..%d slots", MODEL_MAX_K, MODEL_MAX_SLOTS);
        return -1;
    }
    if (check_names(c, err))
        return -1;

    roots_ast = mem_alloc(m, (size_t)n_fields * sizeof(int));
    if (!roots_ast)
        goto nomem;
    for (int f = 0; f < n_fields; f++) {
        const char *text = f < D       ? c->defines[f].text
                           : f < D + K ? c->updates[f - D].text
                                       : c->output.text;
        if (!text) {
            if (f < D)
                set_err(err, f, 0, "define '%s' has no expression", c->defines[f].name);
            else if (f < D + K)
                set_err(err, f, 0, "state '%s' has no update", c->state_names[f - D]);
            else
                set_err(err, f, 0, "the cell has no output expression");
            goto fail;
        }
        roots_ast[f] = parse_expr(text, f, m, &ast, &n_ast, &cap_ast, err);
        if (roots_ast[f] < 0)
            goto fail;
    }

    p = mem_calloc(m, 1, sizeof *p);
    defs = mem_alloc(m, (size_t)(D ? D : 1) * sizeof *defs);
    upd = mem_alloc(m, (size_t)K * sizeof *upd);
    roots = mem_alloc(m, (size_t)(K + K * K + K * S + 1 + K) * sizeof *roots);
    if (!p || !defs || !upd || !roots)
        goto nomem;
    p->K = K;
    p->S = S;
    p->E = 2 * K + S + 1 + K * K + K * S + K;
    count_spikes(ast, roots_ast[D + K], &p->n_spikes_out);

    if (surrogate_setup(&g, &c->surrogate, err))
        goto fail;
    if (dag_rehash(&g, 256))
        goto nomem;
    g.zero = dconst(&g, R(0.0));
    g.one = dconst(&g, R(1.0));
    if (g.nomem)
        goto nomem;

    struct lower L = {.g = &g, .c = c, .ast = ast, .defs = defs, .dt = (real)dt, .err = err};
    L.M = K + S;
    for (int f = 0; f < D + K; f++) {
        L.field = f;
        L.phase = f < D ? PH_DEFINE : PH_UPDATE;
        L.n_defs_visible = f < D ? f : D;
        L.text = f < D ? c->defines[f].text : c->updates[f - D].text;
        lower_ast(&L, roots_ast[f], f < D ? &defs[f] : &upd[f - D]);
        if (L.failed)
            goto fail;
    }
    int boundary = g.len;
    struct dual od;
    L.field = D + K;
    L.phase = PH_OUTPUT;
    L.n_defs_visible = 0;
    L.text = c->output.text;
    L.M = K;
    lower_ast(&L, roots_ast[D + K], &od);
    if (L.failed)
        goto fail;
    if (g.nomem)
        goto nomem;

    /* Roots: update-phase ones first (h_new before the derivatives), then the output's. */
    int nr = 0;
    for (int k = 0; k < K; k++)
        roots[nr++] = (struct root){loc_h_new(p, k), upd[k].v};
    int n_upd_plain = nr;
    roots[nr++] = (struct root){loc_out(p), od.v};
    int src = schedule(&g, boundary, roots, nr, n_upd_plain, p->E, &p->plain, m);
    if (src == -2)
        goto too_large;
    if (src)
        goto nomem;
    nr = 0;
    for (int k = 0; k < K; k++)
        roots[nr++] = (struct root){loc_h_new(p, k), upd[k].v};
    for (int k = 0; k < K; k++)
        for (int j = 0; j < K; j++)
            roots[nr++] = (struct root){loc_jac(p, k, j), upd[k].d[j]};
    for (int k = 0; k < K; k++)
        for (int s = 0; s < S; s++)
            roots[nr++] = (struct root){loc_dslot(p, k, s), upd[k].d[K + s]};
    int n_upd = nr;
    roots[nr++] = (struct root){loc_out(p), od.v};
    for (int k = 0; k < K; k++)
        roots[nr++] = (struct root){loc_dout(p, k), od.d[k]};
    src = schedule(&g, boundary, roots, nr, n_upd, p->E, &p->full, m);
    if (src == -2)
        goto too_large;
    if (src)
        goto nomem;

    int rf = p->full.n_regs + p->full.n_consts, rp = p->plain.n_regs + p->plain.n_consts;
    p->max_regs = rf > rp ? rf : rp;
    p->ptr_bytes = ((size_t)(p->E + p->max_regs) * sizeof(real *) + 63) & ~(size_t)63;
    p->scratch_bytes =
        p->ptr_bytes + ((size_t)p->max_regs * CHUNK + (size_t)p->E * SUB) * sizeof(real);
    *out = p;
    p = NULL;
    rc = 0;
    goto fail;
too_large:
    set_err(err, -1, 0, "the cell's program is too large");
    goto fail;
nomem:
    set_err(err, -1, 0, "out of memory");
fail:
    if (p) {
        prog_free_parts(p, m);
        mem_free(m, &p);
    }
    mem_free(m, &g.n);
    mem_free(m, &g.tab);
    mem_free(m, &ast);
    mem_free(m, &roots_ast);
    mem_free(m, &defs);
    mem_free(m, &upd);
    mem_free(m, &roots);
    return rc;
}

void
expr_prog_free(struct expr_prog **pp, const struct mem *m)
{
    if (!pp || !*pp)
        return;
    prog_free_parts(*pp, m);
    mem_free(m, pp);
}

size_t
expr_prog_scratch_bytes(const struct expr_prog *p)
{
    return p->scratch_bytes;
}

int
expr_prog_is_spiking(const struct expr_prog *p)
{
    return p->n_spikes_out;
}

/* ---- evaluation ------------------------------------------------------------------------- */

static void
run(const struct part *g, real *const *P, int len)
{
    for (int i = 0; i < g->n_ins; i++) {
        const struct instr *in = &g->ins[i];
        real *d = P[in->dst];
        switch (in->op) {
        case I_FILL:
            k_fill(len, d, in->ka);
            break;
        case I_COPY:
            k_copy(len, d, P[in->a]);
            break;
        case I_SEL_VV:
            k_sel_vv(len, d, P[in->a], P[in->b], P[in->c]);
            break;
        case I_SEL_VC:
            k_sel_vc(len, d, P[in->a], P[in->b], in->kc);
            break;
        case I_SEL_CV:
            k_sel_cv(len, d, P[in->a], in->kb, P[in->c]);
            break;
        case I_SEL_CC:
            k_sel_cc(len, d, P[in->a], in->kb, in->kc);
            break;
#define X(n, e)                                                                                    \
    case I_##n:                                                                                    \
        k_##n(len, d, P[in->a], in->ka, in->kb);                                                   \
        break;
            UNARY_OPS(X)
#undef X
#define X(n, e)                                                                                    \
    case I_##n##_VV:                                                                               \
        k_##n##_vv(len, d, P[in->a], P[in->b]);                                                    \
        break;                                                                                     \
    case I_##n##_VC:                                                                               \
        k_##n##_vc(len, d, P[in->a], in->kb);                                                      \
        break;                                                                                     \
    case I_##n##_CV:                                                                               \
        k_##n##_cv(len, d, in->ka, P[in->b]);                                                      \
        break;
            BINARY_OPS(X)
#undef X
#define X(o1, o2, f, fa, fb, fc)                                                                   \
    case I_F_##o1##_##o2##_##f:                                                                    \
        kf_##o1##_##o2##_##f(len, d, P[in->a], P[in->b], P[in->c], in->ka, in->kb, in->kc);        \
        break;
            FUSED_OPS(X)
#undef X
#define X(o1, o2, o3)                                                                              \
    case I_C_##o1##_##o2##_##o3:                                                                   \
        kc_##o1##_##o2##_##o3(len, d, P[in->a], P[in->b], P[in->c], P[in->e]);                     \
        break;
            CHAIN_OPS(X)
#undef X
#define X(o1, o2, o3)                                                                              \
    case I_P_##o1##_##o2##_##o3:                                                                   \
        kp_##o1##_##o2##_##o3(len, d, P[in->a], P[in->b], P[in->c], P[in->e]);                     \
        break;
            PAIR_OPS(X)
#undef X
        default:
            break;
        }
    }
}

/* The caller's array row behind location e, for neurons [base, base + CHUNK). */
static real *
ext_row(const struct expr_prog *p, int e, size_t n, size_t base, real *h_new, real *out, real *jac,
        real *dslot, real *dout, const real *h_old, const real *slot)
{
    int K = p->K, S = p->S;
    real *a;
    int row;
    if (e < K) {
        a = (real *)(uintptr_t)h_old;
        row = e;
    } else if (e < K + S) {
        a = (real *)(uintptr_t)slot;
        row = e - K;
    } else if (e < 2 * K + S) {
        a = h_new;
        row = e - K - S;
    } else if (e == loc_out(p)) {
        a = out;
        row = 0;
    } else if (e < loc_dslot(p, 0, 0)) {
        a = jac;
        row = e - loc_jac(p, 0, 0);
    } else if (e < loc_dout(p, 0)) {
        a = dslot;
        row = e - loc_dslot(p, 0, 0);
    } else {
        a = dout;
        row = e - loc_dout(p, 0);
    }
    return a ? a + (size_t)row * n + base : NULL;
}

void
expr_prog_eval(const struct expr_prog *p, size_t n, real *h_new, real *out, real *jac, real *dslot,
               real *dout, const real *h_old, const real *slot, int need_derivs, void *scratch)
{
    const struct part *g = need_derivs ? &p->full : &p->plain;
    int E = p->E, n_in = p->K + p->S;
    int n_ext = need_derivs ? E : 2 * p->K + p->S + 1;
    size_t chunk = n * (size_t)n_ext * sizeof(real) > SMALL_CHUNK_MIN_BYTES ? SUB : CHUNK;
    real **P = scratch;
    real *regs = (real *)(void *)((char *)scratch + p->ptr_bytes);
    real *stage = regs + (size_t)p->max_regs * CHUNK;
    for (int r = 0; r < g->n_regs + g->n_consts; r++)
        P[E + r] = regs + (size_t)r * CHUNK;
    for (int i = 0; i < g->n_consts; i++)
        k_fill((int)CHUNK, P[E + g->n_regs + i], g->consts[i]);
    size_t base = 0;
    while (base < n) {
        /* Whole chunks, then whole sub-blocks, run on the caller's arrays. */
        size_t rem = n - base, len = rem >= chunk ? chunk : rem - rem % SUB;
        if (len > 0) {
            for (int e = 0; e < n_ext; e++)
                P[e] = ext_row(p, e, n, base, h_new, out, jac, dslot, dout, h_old, slot);
            run(g, P, (int)len);
            base += len;
            continue;
        }
        /* The last rem < SUB neurons run on zero-padded copies: same kernels, same lanes. */
        for (int e = 0; e < n_ext; e++) {
            P[e] = stage + (size_t)e * SUB;
            if (e < n_in) {
                const real *src = ext_row(p, e, n, base, h_new, out, jac, dslot, dout, h_old, slot);
                memcpy(P[e], src, rem * sizeof(real));
                memset(P[e] + rem, 0, (SUB - rem) * sizeof(real));
            }
        }
        run(g, P, SUB);
        for (int e = n_in; e < n_ext; e++) {
            real *dst = ext_row(p, e, n, base, h_new, out, jac, dslot, dout, h_old, slot);
            if (dst)
                memcpy(dst, P[e], rem * sizeof(real));
        }
        base = n;
    }
}

/* ---- dump ------------------------------------------------------------------------------- */

struct sbuf {
    char *buf;
    size_t cap, len;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->len < b->cap ? b->cap - b->len : 0;
    int n = vsnprintf(room ? b->buf + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len += (size_t)n;
}

static void
sb_loc(struct sbuf *b, const struct expr_prog *p, int e)
{
    int K = p->K, S = p->S;
    if (e >= p->E)
        sb_printf(b, "r%d", e - p->E);
    else if (e < K)
        sb_printf(b, "h_old[%d]", e);
    else if (e < K + S)
        sb_printf(b, "slot[%d]", e - K);
    else if (e < 2 * K + S)
        sb_printf(b, "h_new[%d]", e - K - S);
    else if (e == loc_out(p))
        sb_printf(b, "out");
    else if (e < loc_dslot(p, 0, 0))
        sb_printf(b, "jac[%d][%d]", (e - loc_jac(p, 0, 0)) / K, (e - loc_jac(p, 0, 0)) % K);
    else if (e < loc_dout(p, 0))
        sb_printf(b, "dslot[%d][%d]", (e - loc_dslot(p, 0, 0)) / S, (e - loc_dslot(p, 0, 0)) % S);
    else
        sb_printf(b, "dout[%d]", e - loc_dout(p, 0));
}

/* Prints operand: location l, or constant k when is_const. */
static void
sb_operand(struct sbuf *b, const struct expr_prog *p, int is_const, int l, real k)
{
    if (is_const)
        sb_printf(b, "%.9g", (double)k);
    else
        sb_loc(b, p, l);
}

/* Prints a pointer-only operand: a location or a constant register's value. */
static void
sb_vec(struct sbuf *b, const struct expr_prog *p, const struct part *g, int l)
{
    if (l >= p->E + g->n_regs)
        sb_printf(b, "%.9g", (double)g->consts[l - p->E - g->n_regs]);
    else
        sb_loc(b, p, l);
}

/* Fused ops print as infix: add, sub, rsub (printed swapped), mul. */
static const char *const infix[] = {"+", "-", "-", "*"};

static void
sb_part(struct sbuf *b, const struct expr_prog *p, const struct part *g, const char *what)
{
    sb_printf(b, "; %s: %d instructions, %d registers of %d neurons\n", what, g->n_ins, g->n_regs,
              CHUNK);
    for (int i = 0; i < g->n_ins; i++) {
        const struct instr *in = &g->ins[i];
        int op = in->op;
        sb_loc(b, p, in->dst);
        sb_printf(b, " = ");
        if (op == I_FILL) {
            sb_printf(b, "%.9g", (double)in->ka);
        } else if (op == I_COPY) {
            sb_loc(b, p, in->a);
        } else if (op >= I_SEL_VV && op <= I_SEL_CC) {
            sb_printf(b, "SEL ");
            sb_loc(b, p, in->a);
            sb_printf(b, ", ");
            sb_operand(b, p, op == I_SEL_CV || op == I_SEL_CC, in->b, in->kb);
            sb_printf(b, ", ");
            sb_operand(b, p, op == I_SEL_VC || op == I_SEL_CC, in->c, in->kc);
        } else if (op < I_ADD_VV) {
            int bop = B_NEG + (op - I_NEG);
            sb_printf(b, "%s ", bop_names[bop]);
            sb_loc(b, p, in->a);
            if (bop >= B_SURR_RELU)
                sb_printf(b, " (%.9g, %.9g)", (double)in->ka, (double)in->kb);
        } else if (op < I_F_ADD_ADD_VVV) {
            int bop = B_ADD + (op - I_ADD_VV) / 3, form = (op - I_ADD_VV) % 3;
            sb_printf(b, "%s ", bop_names[bop]);
            sb_operand(b, p, form == 2, in->a, in->ka);
            sb_printf(b, ", ");
            sb_operand(b, p, form == 1, in->b, in->kb);
        } else if (op >= I_C_ADD_ADD_ADD) {
            int is_chain = op < I_P_ADD_ADD_ADD;
            int f = is_chain ? op - I_C_ADD_ADD_ADD : op - I_P_ADD_ADD_ADD;
            const uint16_t sl[4] = {in->a, in->b, in->c, in->e};
            if (is_chain) {
                /* ((A o1 B) o2 C) o3 D, rsub written as a swapped subtraction */
                int o1 = f / 16, o2 = (f / 4) % 4, o3 = f % 4;
                sb_printf(b, "%s", o3 == 2 ? "" : "(");
                if (o3 == 2) {
                    sb_vec(b, p, g, sl[3]);
                    sb_printf(b, " - (");
                }
                sb_printf(b, "%s", o2 == 2 ? "" : "(");
                if (o2 == 2) {
                    sb_vec(b, p, g, sl[2]);
                    sb_printf(b, " - (");
                }
                sb_vec(b, p, g, sl[0]);
                sb_printf(b, " %s ", infix[o1 == 2 ? 3 : o1]);
                sb_vec(b, p, g, sl[1]);
                sb_printf(b, ")");
                if (o2 != 2) {
                    sb_printf(b, " %s ", infix[o2]);
                    sb_vec(b, p, g, sl[2]);
                }
                sb_printf(b, ")");
                if (o3 != 2) {
                    sb_printf(b, " %s ", infix[o3]);
                    sb_vec(b, p, g, sl[3]);
                }
            } else {
                /* (A o1 B) o2 (C o3 D) */
                int o1 = f / 9, o2 = (f / 3) % 3, o3 = f % 3;
                sb_printf(b, "(");
                sb_vec(b, p, g, sl[0]);
                sb_printf(b, " %s ", infix[o1 == 2 ? 3 : o1]);
                sb_vec(b, p, g, sl[1]);
                sb_printf(b, ") %s (", infix[o2 == 2 ? 3 : o2]);
                sb_vec(b, p, g, sl[2]);
                sb_printf(b, " %s ", infix[o3 == 2 ? 3 : o3]);
                sb_vec(b, p, g, sl[3]);
                sb_printf(b, ")");
            }
        } else {
            /* (A o1 B) o2 C */
            int f = op - I_F_ADD_ADD_VVV, form = f % 6, o1 = (f / 6) % 3, o2 = f / 18;
            static const char forms[6][4] = {"VVV", "VVC", "VCV", "CVV", "VCC", "CVC"};
            if (o2 == 2) {
                sb_operand(b, p, forms[form][2] == 'C', in->c, in->kc);
                sb_printf(b, " - ");
            }
            sb_printf(b, "(");
            sb_operand(b, p, forms[form][0] == 'C', in->a, in->ka);
            sb_printf(b, " %s ", infix[o1 == 2 ? 3 : o1]);
            sb_operand(b, p, forms[form][1] == 'C', in->b, in->kb);
            sb_printf(b, ")");
            if (o2 != 2) {
                sb_printf(b, " %s ", infix[o2]);
                sb_operand(b, p, forms[form][2] == 'C', in->c, in->kc);
            }
        }
        sb_printf(b, "\n");
    }
}

size_t
expr_prog_dump(const struct expr_prog *p, char *buf, size_t buf_len)
{
    struct sbuf b = {buf, buf_len, 0};
    if (buf_len)
        buf[0] = '\0';
    sb_part(&b, p, &p->full, "values and derivatives");
    sb_part(&b, p, &p->plain, "values only");
    if (buf_len && b.len >= buf_len)
        buf[buf_len - 1] = '\0';
    return b.len;
}
