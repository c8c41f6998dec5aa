/* Tests of the expression compiler (daemon/engine/expr.c).
 *
 * Method. The compiled derivatives are checked three independent ways:
 * 1. Against a reference written here: a direct recursive-descent interpreter of the same
 *    expression text over dual numbers in double precision (no AST, no DAG, no folding, no
 *    code shared with expr.c), with the surrogate formulas of DESIGN §2.2 written again.
 *    Every cell (the 9 built-ins, lif/alif/lif_expon soft and hard, built-ins with
 *    non-default params, and 4 custom cells), every spiking cell under all 4 surrogates;
 *    h_new, out, jac, dslot, dout. Tolerance (relative error of DESIGN's conventions):
 *    TOL_REF = 1e-12 in the double build; in the float build the same test compares the
 *    float program with this double reference, TOL_REF = 1e-5.
 * 2. Against central finite differences of the compiled forward values (double build
 *    only): h = 1e-5 * max(1, |x|), TOL_FD = 1e-7. FD cannot see a surrogate (spike's forward
 *    is a step) nor stop_gradient, so this test compiles each cell with the relu surrogate
 *    at alpha 0 and stop_gradient(...) rewritten to (...): it checks every chain rule around
 *    them, and test 1 checks the surrogate and stop_gradient terms themselves.
 *    d out / d h_new is differenced through a companion cell with identity updates.
 * 3. Against hand-written kernels with hand-derived derivatives (tests/support/handcell.c)
 *    for lif, alif (soft) and gru: h_new and out exactly equal, derivatives within
 *    TOL_HAND (1e-6 float, 1e-12 double).
 * Points are drawn uniformly in per-cell boxes that straddle every spike threshold (each
 * spike call site is asserted to have been seen on both sides) and redrawn when any spike
 * or branch argument (relu, abs, min, max, clip) is within KINK_MARGIN of its kink. The
 * seed is printed; EXPR_TEST_SEED=<n> replays a run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cell.h"
#include "expr.h"
#include "handcell.h"
#include "mem.h"
#include "model.h"
#include "real.h"

#if defined(REAL_DOUBLE)
#define TOL_REF 1e-12
#define TOL_HAND 1e-12
#else
#define TOL_REF 1e-5
#define TOL_HAND 1e-6
#endif
#define TOL_FD 1e-7
#define FD_STEP 1e-5
#define KINK_MARGIN 1e-3
#define N_POINTS 300
#define DT 1.0e-3

enum { MAXV = MODEL_MAX_K + MODEL_MAX_SLOTS, MAX_SITES = 64 };

/* ---- random numbers (xorshift64*), seed printed --------------------------------------- */

static uint64_t rng_state;

static uint64_t
test_seed(void)
{
    const char *s = getenv("EXPR_TEST_SEED");
    return s ? strtoull(s, NULL, 10) : 20240917u;
}

static void
rng_seed(const char *what)
{
    uint64_t seed = test_seed();
    rng_state = seed * 2685821657736338717ull + 1;
    printf("  [%s] seed %llu (EXPR_TEST_SEED=%llu replays)\n", what, (unsigned long long)seed,
           (unsigned long long)seed);
}

static double
urand(double lo, double hi)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t x = rng_state * 2685821657736338717ull;
    return lo + (hi - lo) * ((double)(x >> 11) * (1.0 / 9007199254740992.0));
}

/* ---- cells under test ------------------------------------------------------------------ */

struct spec {
    const char *label;
    const char *builtin; /* NULL: custom */
    int hard;
    struct {
        const char *name;
        double value;
    } ovr[6];       /* built-in param overrides */
    int K, S, P, D; /* custom */
    const char *states[4];
    const char *slots[4];
    const char *pnames[8];
    double pvals[8];
    const char *dnames[4];
    const char *dtext[4];
    const char *upd[4];
    const char *output;
    double lo[8], hi[8]; /* sampling box: states, then slots */
};

#define LIF_P_OVR                                                                                  \
    {                                                                                              \
        {"tau", 10.0e-3}, {"v_th", 1.2}, {"v_reset", -0.3}, {"v_rest", 0.1},                       \
        {                                                                                          \
            "r", 2.0                                                                               \
        }                                                                                          \
    }

static const struct spec specs[] = {
    {.label = "lif", .builtin = "lif", .lo = {-1, -2, -0.5}, .hi = {3, 2, 0.5}},
    {.label = "lif/hard", .builtin = "lif", .hard = 1, .lo = {-1, -2, -0.5}, .hi = {3, 2, 0.5}},
    {.label = "lif/params",
     .builtin = "lif",
     .ovr = LIF_P_OVR,
     .lo = {-2, -2, -0.5},
     .hi = {4, 2, 0.5}},
    {.label = "lif/params/hard",
     .builtin = "lif",
     .hard = 1,
     .ovr = LIF_P_OVR,
     .lo = {-2, -2, -0.5},
     .hi = {4, 2, 0.5}},
    {.label = "alif", .builtin = "alif", .lo = {-1, 0, -2, -0.5}, .hi = {4, 1, 2, 0.5}},
    {.label = "alif/hard",
     .builtin = "alif",
     .hard = 1,
     .lo = {-1, 0, -2, -0.5},
     .hi = {4, 1, 2, 0.5}},
    {.label = "alif/params",
     .builtin = "alif",
     .ovr = {{"beta", 0.7},
             {"v_th", 0.8},
             {"v_reset", -0.2},
             {"v_rest", -0.1},
             {"r", 0.5},
             {"tau_b", 50.0e-3}},
     .lo = {-1, 0, -2, -0.5},
     .hi = {3, 1.5, 2, 0.5}},
    /* g up to 8: with hard reset v' = 0.95 v_r + 0.05 g needs g > 1 to cross v_th. */
    {.label = "lif_expon", .builtin = "lif_expon", .lo = {-1, -1, -0.5}, .hi = {3, 8, 0.5}},
    {.label = "lif_expon/hard",
     .builtin = "lif_expon",
     .hard = 1,
     .lo = {-1, -1, -0.5},
     .hi = {3, 8, 0.5}},
    {.label = "izhikevich", .builtin = "izhikevich", .lo = {-80, -20, -10}, .hi = {60, 10, 20}},
    {.label = "rnn_tanh", .builtin = "rnn_tanh", .lo = {-2, -3}, .hi = {2, 3}},
    {.label = "gru", .builtin = "gru", .lo = {-1, -3, -3, -3, -3}, .hi = {1, 3, 3, 3, 3}},
    {.label = "lstm", .builtin = "lstm", .lo = {-2, -1, -3, -3, -3, -3}, .hi = {2, 1, 3, 3, 3, 3}},
    {.label = "leaky_readout", .builtin = "leaky_readout", .lo = {-2, -2}, .hi = {2, 2}},
    {.label = "linear", .builtin = "linear", .lo = {-2, -2}, .hi = {2, 2}},
    {.label = "every_fn",
     .K = 2,
     .S = 2,
     .P = 3,
     .D = 4,
     .states = {"x", "y"},
     .slots = {"u", "w"},
     .pnames = {"a", "b", "th"},
     .pvals = {0.5, 2.0, 0.2},
     .dnames = {"p", "q", "r", "s"},
     .dtext = {"exp(-dt / 1.0e-2) * x + 1e-3 * u", "log(1 + x * x) + sqrt(1.5 + tanh(y))",
               "abs(x - 0.3) + relu(y - 0.1) - min(x, y) + max(u, w)",
               "clip(x + w, -0.5, 0.5) * sigmoid(a * u)"},
     .upd = {"p + q * b ** 2 / (1 + r ** 2) - spike(x - th) * stop_gradient(x)"
             " + (1.5 + y) ** (0.5 + 0.25 * sigmoid(w))",
             "-y ** 3 / 4 + s * r - 0.5 * spike((y - th) / a) + (2 + u * u) ** -1"},
     .output = "tanh(x) * spike(y - th) + min(x, y) ** 2 + relu(x) / (1 + abs(y))",
     .lo = {-1, -1, -1, -1},
     .hi = {1, 1, 1, 1}},
    {.label = "k3",
     .K = 3,
     .S = 2,
     .P = 3,
     .D = 1,
     .states = {"a", "b", "c"},
     .slots = {"i", "j"},
     .pnames = {"k1", "k2", "th"},
     .pvals = {0.9, 0.3, 0.5},
     .dnames = {"m"},
     .dtext = {"a * b - c"},
     .upd = {"k1 * a + k2 * tanh(b + i) - 0.1 * m",
             "b * exp(-dt / 0.02) + sigmoid(c * j) - spike(a - th)",
             "c + dt * (a - c) * b + m * j"},
     .output = "a + 2 * b - c * spike(c)",
     .lo = {-1, -1, -1, -1, -1},
     .hi = {1.5, 1.5, 1.5, 1.5, 1.5}},
    {.label = "adapt",
     .K = 2,
     .S = 1,
     .P = 4,
     .D = 2,
     .states = {"v", "a"},
     .slots = {"i"},
     .pnames = {"tau_v", "tau_a", "beta", "v_th"},
     .pvals = {20.0e-3, 200.0e-3, 1.8, 1.0},
     .dnames = {"thr", "s"},
     .dtext = {"v_th + beta * a", "spike((v - thr) / v_th)"},
     .upd = {"v + dt / tau_v * (-v + i) - thr * s", "a * exp(-dt / tau_a) + s"},
     .output = "spike((v - v_th - beta * a) / v_th)",
     .lo = {-1, 0, -3},
     .hi = {4, 1, 3}},
    {.label = "pow_var",
     .K = 1,
     .S = 1,
     .P = 1,
     .D = 0,
     .states = {"v"},
     .slots = {"y"},
     .pnames = {"p"},
     .pvals = {1.5},
     .upd = {"v ** p + (1 + v * v) ** (y * 0.5) + 2 ** y - y ** 2 * v ** -2"
             " + sqrt(abs(v)) * log(2 + y)"},
     .output = "v ** 3 + exp(-v * 0.1)",
     .lo = {0.2, -1},
     .hi = {2, 1}},
};

enum { N_SPECS = (int)(sizeof specs / sizeof specs[0]) };

static const struct model_surrogate surrogates[] = {
    {MODEL_SURR_RELU, 0.5, 0.8, 0.0},
    {MODEL_SURR_SIGMOID, 3.0, 0.0, 0.0},
    {MODEL_SURR_GAUSSIAN, 0.0, 0.0, 0.6},
    {MODEL_SURR_EXPONENTIAL, 4.0, 0.0, 0.0},
};
static const char *const surrogate_names[] = {"relu", "sigmoid", "gaussian", "exponential"};

static char *
dup(const char *s)
{
    char *d = mem_strdup(mem_default(), s);
    assert_non_null(d);
    return d;
}

static void
set_expr(struct model_expr *x, const char *name, const char *text)
{
    x->name = dup(name);
    x->text = dup(text);
}

/* Builds spec sp into c (freed with cell_fini(c, mem_default())). */
static void
build_cell(const struct spec *sp, struct model_cell *c)
{
    const struct mem *m = mem_default();
    memset(c, 0, sizeof *c);
    c->name = dup(sp->label);
    c->size = N_POINTS;
    if (sp->builtin) {
        const struct cell_builtin *b = cell_builtin_find(sp->builtin);
        assert_non_null(b);
        assert_int_equal(cell_expand(b, sp->hard, m, c), 0);
        for (int o = 0; o < 6 && sp->ovr[o].name; o++) {
            int found = 0;
            for (int i = 0; i < c->n_params; i++) {
                if (strcmp(c->param_names[i], sp->ovr[o].name) == 0) {
                    c->param_values[i] = sp->ovr[o].value;
                    found = 1;
                }
            }
            assert_true(found);
        }
        return;
    }
    c->model = dup("custom");
    c->n_states = sp->K;
    for (int k = 0; k < sp->K; k++)
        c->state_names[k] = dup(sp->states[k]);
    c->n_slots = sp->S;
    for (int s = 0; s < sp->S; s++)
        c->slot_names[s] = dup(sp->slots[s]);
    c->n_params = sp->P;
    if (sp->P) {
        c->param_names = mem_calloc(m, (size_t)sp->P, sizeof *c->param_names);
        c->param_values = mem_calloc(m, (size_t)sp->P, sizeof *c->param_values);
        assert_non_null(c->param_names);
        assert_non_null(c->param_values);
        for (int i = 0; i < sp->P; i++) {
            c->param_names[i] = dup(sp->pnames[i]);
            c->param_values[i] = sp->pvals[i];
        }
    }
    c->n_defines = sp->D;
    if (sp->D) {
        c->defines = mem_calloc(m, (size_t)sp->D, sizeof *c->defines);
        assert_non_null(c->defines);
        for (int i = 0; i < sp->D; i++)
            set_expr(&c->defines[i], sp->dnames[i], sp->dtext[i]);
    }
    for (int k = 0; k < sp->K; k++)
        set_expr(&c->updates[k], sp->states[k], sp->upd[k]);
    set_expr(&c->output, "output", sp->output);
    c->surrogate = (struct model_surrogate){MODEL_SURR_RELU, 0.3, 1.0, 0.5};
    c->is_spiking = strstr(sp->output, "spike(") != NULL;
}

static int
cell_has_spike(const struct model_cell *c)
{
    for (int i = 0; i < c->n_defines; i++)
        if (strstr(c->defines[i].text, "spike("))
            return 1;
    for (int k = 0; k < c->n_states; k++)
        if (strstr(c->updates[k].text, "spike("))
            return 1;
    return strstr(c->output.text, "spike(") != NULL;
}

#if defined(REAL_DOUBLE)
/* Rewrites every "stop_gradient(" of text into "(" (for finite differences). */
static void
strip_sg(char **text)
{
    const char *key = "stop_gradient(";
    char *p;
    while ((p = strstr(*text, key)) != NULL)
        memmove(p, p + strlen(key) - 1, strlen(p + strlen(key) - 1) + 1);
}
#endif

/* ---- the reference: a dual-number interpreter of the expression text -------------------- */

struct rd {
    double v;
    double d[MAXV];
};

struct ref {
    const struct model_cell *c;
    double dt;
    const double *x; /* the variables: old states then slots; or the new states */
    int is_output;
    int n_defs; /* visible defines */
    struct rd *defs;
    int M;
    const char *s;
    int pos;
    double kink;        /* the smallest distance of a spike/branch argument to its kink */
    int site;           /* spike calls so far in this neuron */
    unsigned char *cov; /* per spike site: 1 seen > 0, 2 seen <= 0 */
};

static void ref_sum(struct ref *q, struct rd *o);

static void
ref_ws(struct ref *q)
{
    while (q->s[q->pos] == ' ' || q->s[q->pos] == '\t' || q->s[q->pos] == '\n')
        q->pos++;
}

static void
rd_const(const struct ref *q, struct rd *o, double v)
{
    o->v = v;
    for (int j = 0; j < q->M; j++)
        o->d[j] = 0.0;
}

/* o = f(a) with f'(a) = df */
static void
rd_chain(const struct ref *q, struct rd *o, const struct rd *a, double f, double df)
{
    for (int j = 0; j < q->M; j++)
        o->d[j] = df * a->d[j];
    o->v = f;
}

static double
ref_surrogate(const struct model_surrogate *s, double x)
{
    switch (s->kind) {
    case MODEL_SURR_RELU: {
        double t = s->width - fabs(x);
        return s->alpha * (t > 0.0 ? t : 0.0);
    }
    case MODEL_SURR_SIGMOID: {
        double e = 1.0 / (1.0 + exp(-s->alpha * x));
        return s->alpha * e * (1.0 - e);
    }
    case MODEL_SURR_GAUSSIAN:
        return exp(-x * x / (2.0 * s->sigma * s->sigma)) /
               (sqrt(2.0 * 3.14159265358979323846) * s->sigma);
    default:
        return s->alpha / 2.0 * exp(-s->alpha * fabs(x));
    }
}

static void
kink(struct ref *q, double dist)
{
    if (fabs(dist) < q->kink)
        q->kink = fabs(dist);
}

static int
name_eq(const char *name, const char *s, int len)
{
    return (int)strlen(name) == len && memcmp(name, s, (size_t)len) == 0;
}

static void
ref_name(struct ref *q, const char *s, int len, struct rd *o)
{
    const struct model_cell *c = q->c;
    for (int k = 0; k < c->n_states; k++) {
        if (name_eq(c->state_names[k], s, len)) {
            rd_const(q, o, q->x[k]);
            o->d[k] = 1.0;
            return;
        }
    }
    if (!q->is_output) {
        for (int i = 0; i < c->n_slots; i++) {
            if (name_eq(c->slot_names[i], s, len)) {
                rd_const(q, o, q->x[c->n_states + i]);
                o->d[c->n_states + i] = 1.0;
                return;
            }
        }
        for (int i = 0; i < q->n_defs; i++) {
            if (name_eq(c->defines[i].name, s, len)) {
                *o = q->defs[i];
                return;
            }
        }
    }
    for (int i = 0; i < c->n_params; i++) {
        if (name_eq(c->param_names[i], s, len)) {
            rd_const(q, o, c->param_values[i]);
            return;
        }
    }
    if (name_eq("dt", s, len)) {
        rd_const(q, o, q->dt);
        return;
    }
    fail_msg("reference: unknown name '%.*s'", len, s);
}

static void
ref_call(struct ref *q, const char *fn, int len, struct rd *o)
{
    struct rd a[3];
    int n = 0;
    ref_ws(q);
    if (q->s[q->pos] != ')') {
        for (;;) {
            assert_true(n < 3);
            ref_sum(q, &a[n++]);
            ref_ws(q);
            if (q->s[q->pos] != ',')
                break;
            q->pos++;
        }
    }
    assert_int_equal(q->s[q->pos], ')');
    q->pos++;
    int M = q->M;
    double x = a[0].v;
    if (name_eq("exp", fn, len)) {
        rd_chain(q, o, &a[0], exp(x), exp(x));
    } else if (name_eq("log", fn, len)) {
        rd_chain(q, o, &a[0], log(x), 1.0 / x);
    } else if (name_eq("sqrt", fn, len)) {
        rd_chain(q, o, &a[0], sqrt(x), 0.5 / sqrt(x));
    } else if (name_eq("abs", fn, len)) {
        kink(q, x);
        rd_chain(q, o, &a[0], fabs(x), x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0));
    } else if (name_eq("tanh", fn, len)) {
        double t = tanh(x);
        rd_chain(q, o, &a[0], t, 1.0 - t * t);
    } else if (name_eq("sigmoid", fn, len)) {
        double e = 1.0 / (1.0 + exp(-x));
        rd_chain(q, o, &a[0], e, e * (1.0 - e));
    } else if (name_eq("relu", fn, len)) {
        kink(q, x);
        rd_chain(q, o, &a[0], x > 0 ? x : 0.0, x > 0 ? 1.0 : 0.0);
    } else if (name_eq("min", fn, len) || name_eq("max", fn, len)) {
        int is_min = name_eq("min", fn, len);
        kink(q, a[0].v - a[1].v);
        int first = is_min ? a[0].v <= a[1].v : a[0].v >= a[1].v;
        *o = a[first ? 0 : 1];
    } else if (name_eq("clip", fn, len)) {
        kink(q, x - a[1].v);
        kink(q, x - a[2].v);
        *o = x < a[1].v ? a[1] : (x > a[2].v ? a[2] : a[0]);
    } else if (name_eq("spike", fn, len)) {
        kink(q, x);
        assert_true(q->site < MAX_SITES);
        q->cov[q->site++] |= x > 0 ? 1 : 2;
        rd_chain(q, o, &a[0], x > 0 ? 1.0 : 0.0, ref_surrogate(&q->c->surrogate, x));
    } else if (name_eq("stop_gradient", fn, len)) {
        rd_const(q, o, x);
    } else {
        fail_msg("reference: unknown function '%.*s'", len, fn);
    }
    (void)M;
}

static void
ref_atom(struct ref *q, struct rd *o)
{
    ref_ws(q);
    const char *s = q->s + q->pos;
    if (*s == '(') {
        q->pos++;
        ref_sum(q, o);
        ref_ws(q);
        assert_int_equal(q->s[q->pos], ')');
        q->pos++;
        return;
    }
    if ((*s >= '0' && *s <= '9') || *s == '.') {
        char *end;
        double v = strtod(s, &end);
        q->pos += (int)(end - s);
        rd_const(q, o, v);
        return;
    }
    int len = 0;
    while ((s[len] >= 'a' && s[len] <= 'z') || (s[len] >= 'A' && s[len] <= 'Z') || s[len] == '_' ||
           (len > 0 && s[len] >= '0' && s[len] <= '9'))
        len++;
    assert_true(len > 0);
    q->pos += len;
    ref_ws(q);
    if (q->s[q->pos] == '(') {
        q->pos++;
        ref_call(q, s, len, o);
    } else {
        ref_name(q, s, len, o);
    }
}

static void ref_unary(struct ref *q, struct rd *o);

/* x ** p: p x^(p-1) dx + log(x) x^p dp (the log term only where dp is non-zero) */
static void
ref_power(struct ref *q, struct rd *o)
{
    struct rd a, b;
    ref_atom(q, &a);
    ref_ws(q);
    if (!(q->s[q->pos] == '*' && q->s[q->pos + 1] == '*')) {
        *o = a;
        return;
    }
    q->pos += 2;
    ref_unary(q, &b);
    double y = pow(a.v, b.v);
    for (int j = 0; j < q->M; j++) {
        double d = 0.0;
        if (a.d[j] != 0.0)
            d += b.v * pow(a.v, b.v - 1.0) * a.d[j];
        if (b.d[j] != 0.0)
            d += log(a.v) * y * b.d[j];
        o->d[j] = d;
    }
    o->v = y;
}

static void
ref_unary(struct ref *q, struct rd *o)
{
    ref_ws(q);
    if (q->s[q->pos] == '-') {
        q->pos++;
        struct rd a;
        ref_unary(q, &a);
        rd_chain(q, o, &a, -a.v, -1.0);
        return;
    }
    ref_power(q, o);
}

static void
ref_prod(struct ref *q, struct rd *o)
{
    ref_unary(q, o);
    for (;;) {
        ref_ws(q);
        char ch = q->s[q->pos];
        if ((ch != '*' && ch != '/') || q->s[q->pos + 1] == '*')
            return;
        q->pos++;
        struct rd b, a = *o;
        ref_unary(q, &b);
        for (int j = 0; j < q->M; j++)
            o->d[j] = ch == '*' ? a.d[j] * b.v + a.v * b.d[j]
                                : (a.d[j] * b.v - a.v * b.d[j]) / (b.v * b.v);
        o->v = ch == '*' ? a.v * b.v : a.v / b.v;
    }
}

static void
ref_sum(struct ref *q, struct rd *o)
{
    ref_prod(q, o);
    for (;;) {
        ref_ws(q);
        char ch = q->s[q->pos];
        if (ch != '+' && ch != '-')
            return;
        q->pos++;
        struct rd b;
        ref_prod(q, &b);
        double sg = ch == '+' ? 1.0 : -1.0;
        for (int j = 0; j < q->M; j++)
            o->d[j] += sg * b.d[j];
        o->v += sg * b.v;
    }
}

static void
ref_eval(struct ref *q, const char *text, struct rd *o)
{
    q->s = text;
    q->pos = 0;
    ref_sum(q, o);
    ref_ws(q);
    assert_int_equal(q->s[q->pos], '\0');
}

struct rres {
    double h_new[MODEL_MAX_K], out;
    double jac[MODEL_MAX_K][MODEL_MAX_K], dslot[MODEL_MAX_K][MODEL_MAX_SLOTS], dout[MODEL_MAX_K];
    double kink;
};

/* One neuron: x holds the old states then the slots. */
static void
ref_neuron(const struct model_cell *c, const double *x, struct rres *r, unsigned char *cov)
{
    int K = c->n_states, S = c->n_slots;
    struct rd defs[8], upd[MODEL_MAX_K], out;
    assert_true(c->n_defines <= 8);
    struct ref q = {.c = c, .dt = DT, .x = x, .defs = defs, .M = K + S, .kink = 1e300, .cov = cov};
    for (int i = 0; i < c->n_defines; i++) {
        q.n_defs = i;
        ref_eval(&q, c->defines[i].text, &defs[i]);
    }
    q.n_defs = c->n_defines;
    for (int k = 0; k < K; k++)
        ref_eval(&q, c->updates[k].text, &upd[k]);
    for (int k = 0; k < K; k++) {
        r->h_new[k] = upd[k].v;
        for (int j = 0; j < K; j++)
            r->jac[k][j] = upd[k].d[j];
        for (int s = 0; s < S; s++)
            r->dslot[k][s] = upd[k].d[K + s];
    }
    q.is_output = 1;
    q.x = r->h_new;
    q.M = K;
    q.n_defs = 0;
    ref_eval(&q, c->output.text, &out);
    r->out = out.v;
    for (int k = 0; k < K; k++)
        r->dout[k] = out.d[k];
    r->kink = q.kink;
}

/* ---- running compiled programs ----------------------------------------------------------- */

struct run {
    size_t n;
    int K, S;
    real *h_old, *slot, *h_new, *out, *jac, *dslot, *dout;
    void *scratch;
};

static void *
xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    assert_non_null(p);
    return p;
}

static void
run_init(struct run *r, const struct expr_prog *p, size_t n, int K, int S)
{
    r->n = n;
    r->K = K;
    r->S = S;
    r->h_old = xcalloc(n * (size_t)K, sizeof(real));
    r->slot = xcalloc(n * (size_t)(S ? S : 1), sizeof(real));
    r->h_new = xcalloc(n * (size_t)K, sizeof(real));
    r->out = xcalloc(n, sizeof(real));
    r->jac = xcalloc(n * (size_t)(K * K), sizeof(real));
    r->dslot = xcalloc(n * (size_t)(K * (S ? S : 1)), sizeof(real));
    r->dout = xcalloc(n * (size_t)K, sizeof(real));
    size_t sb = (expr_prog_scratch_bytes(p) + 63) & ~(size_t)63;
    r->scratch = aligned_alloc(64, sb ? sb : 64);
    assert_non_null(r->scratch);
}

static void
run_fini(struct run *r)
{
    free(r->h_old);
    free(r->slot);
    free(r->h_new);
    free(r->out);
    free(r->jac);
    free(r->dslot);
    free(r->dout);
    free(r->scratch);
}

static void
run_eval(struct run *r, const struct expr_prog *p, int need_derivs)
{
    expr_prog_eval(p, r->n, r->h_new, r->out, need_derivs ? r->jac : NULL,
                   need_derivs ? r->dslot : NULL, need_derivs ? r->dout : NULL, r->h_old, r->slot,
                   need_derivs, r->scratch);
}

static struct expr_prog *
compile_ok(const struct model_cell *c)
{
    struct expr_prog *p = NULL;
    struct expr_error e;
    int rc = expr_prog_compile(c, DT, mem_default(), &p, &e);
    if (rc)
        fail_msg("%s: compile failed: field %d offset %d: %s", c->name, e.field, e.offset, e.msg);
    return p;
}

/* Draws N points in sp's box (rounded to real), away from kinks; fills x[n][K+S] and the
 * compiled program's inputs. */
static void
sample(const struct spec *sp, const struct model_cell *c, size_t n, double *x, struct run *r,
       unsigned char *cov)
{
    int K = c->n_states, S = c->n_slots, M = K + S;
    for (size_t o = 0; o < n; o++) {
        struct rres rr;
        int tries = 0;
        do {
            assert_true(tries++ < 10000);
            for (int j = 0; j < M; j++)
                x[o * (size_t)M + (size_t)j] = (double)(real)urand(sp->lo[j], sp->hi[j]);
            ref_neuron(c, &x[o * (size_t)M], &rr, cov);
        } while (rr.kink < KINK_MARGIN);
        for (int k = 0; k < K; k++)
            r->h_old[(size_t)k * n + o] = (real)x[o * (size_t)M + (size_t)k];
        for (int s = 0; s < S; s++)
            r->slot[(size_t)s * n + o] = (real)x[o * (size_t)M + (size_t)(K + s)];
    }
}

/* Relative error of DESIGN's conventions, accumulated over a whole array. */
struct relerr {
    double max_diff, max_ref;
};

static void
relerr_add(struct relerr *e, double a, double b)
{
    double d = fabs(a - b);
    if (!(d <= e->max_diff))
        e->max_diff = d; /* NaN sticks */
    if (fabs(b) > e->max_ref)
        e->max_ref = fabs(b);
}

static double
relerr_get(const struct relerr *e)
{
    return e->max_diff / (e->max_ref > 1e-12 ? e->max_ref : 1e-12);
}

/* ---- 1. against the reference interpreter ------------------------------------------------ */

static void
test_expr_derivs_match_reference(void **state)
{
    (void)state;
    rng_seed("reference");
    printf("  %-18s %-12s %10s %10s %10s %10s %10s  (tolerance %.0e)\n", "cell", "surrogate",
           "h_new", "out", "jac", "dslot", "dout", TOL_REF);
    double worst_all = 0.0;
    for (int si = 0; si < N_SPECS; si++) {
        const struct spec *sp = &specs[si];
        struct model_cell c;
        build_cell(sp, &c);
        int spiking = cell_has_spike(&c);
        unsigned char cov[MAX_SITES] = {0};
        int n_sites = 0;
        for (int ki = 0; ki < (spiking ? 4 : 1); ki++) {
            if (spiking)
                c.surrogate = surrogates[ki];
            struct expr_prog *p = compile_ok(&c);
            int K = c.n_states, S = c.n_slots;
            size_t n = N_POINTS;
            struct run r;
            run_init(&r, p, n, K, S);
            double *x = xcalloc(n * (size_t)(K + S), sizeof(double));
            sample(sp, &c, n, x, &r, cov);
            run_eval(&r, p, 1);
            struct relerr e[5];
            memset(e, 0, sizeof e);
            for (size_t o = 0; o < n; o++) {
                struct rres rr;
                unsigned char cv[MAX_SITES] = {0};
                ref_neuron(&c, &x[o * (size_t)(K + S)], &rr, cv);
                for (int s = 0; s < MAX_SITES; s++)
                    if (cv[s] && s + 1 > n_sites)
                        n_sites = s + 1;
                relerr_add(&e[1], r.out[o], rr.out);
                for (int k = 0; k < K; k++) {
                    relerr_add(&e[0], r.h_new[(size_t)k * n + o], rr.h_new[k]);
                    relerr_add(&e[4], r.dout[(size_t)k * n + o], rr.dout[k]);
                    for (int j = 0; j < K; j++)
                        relerr_add(&e[2], r.jac[(size_t)(k * K + j) * n + o], rr.jac[k][j]);
                    for (int s = 0; s < S; s++)
                        relerr_add(&e[3], r.dslot[(size_t)(k * S + s) * n + o], rr.dslot[k][s]);
                }
            }
            double worst = 0.0;
            for (int i = 0; i < 5; i++)
                if (!(relerr_get(&e[i]) <= worst))
                    worst = relerr_get(&e[i]);
            printf("  %-18s %-12s %10.2e %10.2e %10.2e %10.2e %10.2e\n", sp->label,
                   spiking ? surrogate_names[ki] : "-", relerr_get(&e[0]), relerr_get(&e[1]),
                   relerr_get(&e[2]), relerr_get(&e[3]), relerr_get(&e[4]));
            if (!(worst <= TOL_REF))
                fail_msg("%s: compiled vs reference relative error %.3e > %.0e", sp->label, worst,
                         TOL_REF);
            if (worst > worst_all)
                worst_all = worst;
            free(x);
            run_fini(&r);
            expr_prog_free(&p, mem_default());
        }
        /* Both sides of every spike threshold were visited. */
        for (int s = 0; s < n_sites; s++)
            if (cov[s] != 3)
                fail_msg("%s: spike site %d seen on one side only", sp->label, s);
        cell_fini(&c, mem_default());
    }
    printf("  worst over all cells: %.2e\n", worst_all);
}

/* ---- 2. against central finite differences ---------------------------------------------- */

#if defined(REAL_DOUBLE)
/* A cell with c's states, params and output, identity updates and no slots or defines:
 * its out(h_old) is c's out(h_new), for differencing d out / d h_new. */
static void
build_output_companion(const struct model_cell *c, struct model_cell *o)
{
    const struct mem *m = mem_default();
    memset(o, 0, sizeof *o);
    o->name = dup("companion");
    o->model = dup("custom");
    o->n_states = c->n_states;
    for (int k = 0; k < c->n_states; k++) {
        o->state_names[k] = dup(c->state_names[k]);
        set_expr(&o->updates[k], c->state_names[k], c->state_names[k]);
    }
    o->n_params = c->n_params;
    if (c->n_params) {
        o->param_names = mem_calloc(m, (size_t)c->n_params, sizeof *o->param_names);
        o->param_values = mem_calloc(m, (size_t)c->n_params, sizeof *o->param_values);
        for (int i = 0; i < c->n_params; i++) {
            o->param_names[i] = dup(c->param_names[i]);
            o->param_values[i] = c->param_values[i];
        }
    }
    set_expr(&o->output, "output", c->output.text);
    o->surrogate = c->surrogate;
}
#endif

static void
test_expr_derivs_match_fd(void **state)
{
    (void)state;
#if !defined(REAL_DOUBLE)
    printf("  finite differences run in the REAL=double build only\n");
    skip();
#else
    rng_seed("fd");
    printf("  %-18s %10s %10s %10s  (h = %.0e max(1,|x|), tolerance %.0e)\n", "cell", "jac",
           "dslot", "dout", FD_STEP, TOL_FD);
    for (int si = 0; si < N_SPECS; si++) {
        const struct spec *sp = &specs[si];
        struct model_cell c, oc;
        build_cell(sp, &c);
        for (int i = 0; i < c.n_defines; i++)
            strip_sg(&c.defines[i].text);
        for (int k = 0; k < c.n_states; k++)
            strip_sg(&c.updates[k].text);
        c.surrogate = (struct model_surrogate){MODEL_SURR_RELU, 0.0, 1.0, 0.5};
        build_output_companion(&c, &oc);
        struct expr_prog *p = compile_ok(&c), *po = compile_ok(&oc);
        int K = c.n_states, S = c.n_slots, M = K + S;
        size_t n = N_POINTS;
        struct run base, pl, mi, ob, op, om;
        run_init(&base, p, n, K, S);
        run_init(&pl, p, n, K, S);
        run_init(&mi, p, n, K, S);
        run_init(&ob, po, n, K, 0);
        run_init(&op, po, n, K, 0);
        run_init(&om, po, n, K, 0);
        double *x = xcalloc(n * (size_t)M, sizeof(double));
        unsigned char cov[MAX_SITES] = {0};
        sample(sp, &c, n, x, &base, cov);
        run_eval(&base, p, 1);
        struct relerr e[3];
        memset(e, 0, sizeof e);
        for (int j = 0; j < M; j++) {
            memcpy(pl.h_old, base.h_old, n * (size_t)K * sizeof(real));
            memcpy(mi.h_old, base.h_old, n * (size_t)K * sizeof(real));
            memcpy(pl.slot, base.slot, n * (size_t)S * sizeof(real));
            memcpy(mi.slot, base.slot, n * (size_t)S * sizeof(real));
            real *vp = j < K ? pl.h_old + (size_t)j * n : pl.slot + (size_t)(j - K) * n;
            real *vm = j < K ? mi.h_old + (size_t)j * n : mi.slot + (size_t)(j - K) * n;
            double *h = xcalloc(n, sizeof(double));
            for (size_t o = 0; o < n; o++) {
                h[o] = FD_STEP * fmax(1.0, fabs((double)vp[o]));
                vp[o] += h[o];
                vm[o] -= h[o];
            }
            run_eval(&pl, p, 0);
            run_eval(&mi, p, 0);
            for (int k = 0; k < K; k++) {
                for (size_t o = 0; o < n; o++) {
                    size_t i = (size_t)k * n + o;
                    double fd = (pl.h_new[i] - mi.h_new[i]) / (2.0 * h[o]);
                    if (j < K)
                        relerr_add(&e[0], base.jac[(size_t)(k * K + j) * n + o], fd);
                    else
                        relerr_add(&e[1], base.dslot[(size_t)(k * S + j - K) * n + o], fd);
                }
            }
            free(h);
        }
        /* d out / d h_new, differenced at the new states through the companion. */
        for (int k = 0; k < K; k++) {
            memcpy(op.h_old, base.h_new, n * (size_t)K * sizeof(real));
            memcpy(om.h_old, base.h_new, n * (size_t)K * sizeof(real));
            memcpy(ob.h_old, base.h_new, n * (size_t)K * sizeof(real));
            double *h = xcalloc(n, sizeof(double));
            for (size_t o = 0; o < n; o++) {
                size_t i = (size_t)k * n + o;
                h[o] = FD_STEP * fmax(1.0, fabs((double)op.h_old[i]));
                op.h_old[i] += h[o];
                om.h_old[i] -= h[o];
            }
            run_eval(&ob, po, 0);
            run_eval(&op, po, 0);
            run_eval(&om, po, 0);
            for (size_t o = 0; o < n; o++) {
                assert_true(ob.out[o] == base.out[o]);
                relerr_add(&e[2], base.dout[(size_t)k * n + o],
                           (op.out[o] - om.out[o]) / (2.0 * h[o]));
            }
            free(h);
        }
        printf("  %-18s %10.2e %10.2e %10.2e\n", sp->label, relerr_get(&e[0]), relerr_get(&e[1]),
               relerr_get(&e[2]));
        for (int i = 0; i < 3; i++)
            if (!(relerr_get(&e[i]) <= TOL_FD))
                fail_msg("%s: compiled vs FD relative error %.3e > %.0e", sp->label,
                         relerr_get(&e[i]), TOL_FD);
        free(x);
        run_fini(&base);
        run_fini(&pl);
        run_fini(&mi);
        run_fini(&ob);
        run_fini(&op);
        run_fini(&om);
        expr_prog_free(&p, mem_default());
        expr_prog_free(&po, mem_default());
        cell_fini(&c, mem_default());
        cell_fini(&oc, mem_default());
    }
#endif
}

/* ---- 3. against the hand-written kernels -------------------------------------------------- */

typedef void handcell_fn(size_t n, real *restrict h_new, real *restrict out, real *restrict jac,
                         real *restrict dslot, real *restrict dout, const real *restrict h_old,
                         const real *restrict slot, const struct handcell_params *h);

static void
check_hand(const char *label, handcell_fn *fn)
{
    const struct spec *sp = NULL;
    for (int i = 0; i < N_SPECS; i++)
        if (strcmp(specs[i].label, label) == 0)
            sp = &specs[i];
    assert_non_null(sp);
    rng_seed(label);
    struct model_cell c;
    build_cell(sp, &c);
    struct expr_prog *p = compile_ok(&c);
    int K = c.n_states, S = c.n_slots;
    size_t n = 1000;
    struct run r, h;
    run_init(&r, p, n, K, S);
    run_init(&h, p, n, K, S);
    double *x = xcalloc(n * (size_t)(K + S), sizeof(double));
    unsigned char cov[MAX_SITES] = {0};
    sample(sp, &c, n, x, &r, cov);
    memcpy(h.h_old, r.h_old, n * (size_t)K * sizeof(real));
    memcpy(h.slot, r.slot, n * (size_t)S * sizeof(real));
    struct handcell_params hp;
    assert_int_equal(handcell_setup(&hp, &c, DT), 0);
    run_eval(&r, p, 1);
    fn(n, h.h_new, h.out, h.jac, h.dslot, h.dout, h.h_old, h.slot, &hp);
    for (size_t i = 0; i < n * (size_t)K; i++)
        if (!(r.h_new[i] == h.h_new[i]))
            fail_msg("%s: h_new[%zu] compiled %.9g hand %.9g", label, i, (double)r.h_new[i],
                     (double)h.h_new[i]);
    for (size_t i = 0; i < n; i++)
        assert_true(r.out[i] == h.out[i]);
    struct relerr e[3];
    memset(e, 0, sizeof e);
    for (size_t i = 0; i < n * (size_t)(K * K); i++)
        relerr_add(&e[0], r.jac[i], h.jac[i]);
    for (size_t i = 0; i < n * (size_t)(K * S); i++)
        relerr_add(&e[1], r.dslot[i], h.dslot[i]);
    for (size_t i = 0; i < n * (size_t)K; i++)
        relerr_add(&e[2], r.dout[i], h.dout[i]);
    printf("  %s: h_new, out identical; jac %.2e dslot %.2e dout %.2e (tolerance %.0e)\n", label,
           relerr_get(&e[0]), relerr_get(&e[1]), relerr_get(&e[2]), TOL_HAND);
    for (int i = 0; i < 3; i++)
        assert_true(relerr_get(&e[i]) <= TOL_HAND);
    free(x);
    run_fini(&r);
    run_fini(&h);
    expr_prog_free(&p, mem_default());
    cell_fini(&c, mem_default());
}

static void
test_expr_hand_lif_matches(void **state)
{
    (void)state;
    check_hand("lif", handcell_lif);
    check_hand("lif/params", handcell_lif);
}

static void
test_expr_hand_alif_matches(void **state)
{
    (void)state;
    check_hand("alif", handcell_alif);
    check_hand("alif/params", handcell_alif);
}

static void
test_expr_hand_gru_matches(void **state)
{
    (void)state;
    check_hand("gru", handcell_gru);
}

/* ---- evaluation properties -------------------------------------------------------------- */

static const struct spec *
spec_named(const char *label)
{
    for (int i = 0; i < N_SPECS; i++)
        if (strcmp(specs[i].label, label) == 0)
            return &specs[i];
    fail_msg("no spec %s", label);
    return NULL;
}

/* Per-neuron results are bitwise the same whatever n is, wherever chunks begin. */
static void
test_expr_chunk_boundaries_do_not_matter(void **state)
{
    (void)state;
    static const char *const labels[] = {"lif", "alif/hard", "gru", "lstm", "every_fn", "k3"};
    static const size_t sizes[] = {1,   2,   63,  64,  65,  127, 128, 129,
                                   255, 256, 257, 511, 512, 513, 999};
    rng_seed("chunks");
    for (size_t li = 0; li < sizeof labels / sizeof labels[0]; li++) {
        const struct spec *sp = spec_named(labels[li]);
        struct model_cell c;
        build_cell(sp, &c);
        struct expr_prog *p = compile_ok(&c);
        int K = c.n_states, S = c.n_slots;
        size_t N = 1000;
        struct run big;
        run_init(&big, p, N, K, S);
        double *x = xcalloc(N * (size_t)(K + S), sizeof(double));
        unsigned char cov[MAX_SITES] = {0};
        sample(sp, &c, N, x, &big, cov);
        run_eval(&big, p, 1);
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            size_t n = sizes[si];
            /* Take neurons [off, off + n) of the big run, so chunks start elsewhere too. */
            size_t off = N - n;
            struct run r;
            run_init(&r, p, n, K, S);
            for (int k = 0; k < K; k++)
                memcpy(r.h_old + (size_t)k * n, big.h_old + (size_t)k * N + off, n * sizeof(real));
            for (int s = 0; s < S; s++)
                memcpy(r.slot + (size_t)s * n, big.slot + (size_t)s * N + off, n * sizeof(real));
            for (int pass = 0; pass < 2; pass++) {
                run_eval(&r, p, pass == 0);
                for (size_t o = 0; o < n; o++) {
                    assert_memory_equal(&r.out[o], &big.out[off + o], sizeof(real));
                    for (int k = 0; k < K; k++) {
                        assert_memory_equal(&r.h_new[(size_t)k * n + o],
                                            &big.h_new[(size_t)k * N + off + o], sizeof(real));
                        if (pass)
                            continue;
                        assert_memory_equal(&r.dout[(size_t)k * n + o],
                                            &big.dout[(size_t)k * N + off + o], sizeof(real));
                        for (int j = 0; j < K; j++)
                            assert_memory_equal(&r.jac[(size_t)(k * K + j) * n + o],
                                                &big.jac[(size_t)(k * K + j) * N + off + o],
                                                sizeof(real));
                        for (int s = 0; s < S; s++)
                            assert_memory_equal(&r.dslot[(size_t)(k * S + s) * n + o],
                                                &big.dslot[(size_t)(k * S + s) * N + off + o],
                                                sizeof(real));
                    }
                }
            }
            run_fini(&r);
        }
        free(x);
        run_fini(&big);
        expr_prog_free(&p, mem_default());
        cell_fini(&c, mem_default());
    }
}

/* Arrays beyond L3 size switch the evaluator to short chunks (DRAM streaming); results are
 * still bitwise those of small evaluations. alif at 600001 neurons: 17 rows of 2.4 MB
 * (float) or 4.8 MB (double), above the 32 MiB switch. */
static void
test_expr_large_n_same_results(void **state)
{
    (void)state;
    rng_seed("large-n");
    const struct spec *sp = spec_named("alif/hard");
    struct model_cell c;
    build_cell(sp, &c);
    struct expr_prog *p = compile_ok(&c);
    int K = c.n_states, S = c.n_slots;
    size_t N = 600001, n = 1000;
    struct run big, r;
    run_init(&big, p, N, K, S);
    run_init(&r, p, n, K, S);
    for (int k = 0; k < K; k++)
        for (size_t o = 0; o < N; o++)
            big.h_old[(size_t)k * N + o] = (real)urand(sp->lo[k], sp->hi[k]);
    for (int s = 0; s < S; s++)
        for (size_t o = 0; o < N; o++)
            big.slot[(size_t)s * N + o] = (real)urand(sp->lo[K + s], sp->hi[K + s]);
    run_eval(&big, p, 1);
    for (size_t off = 0; off + n <= N; off += 37 * n) {
        for (int k = 0; k < K; k++)
            memcpy(r.h_old + (size_t)k * n, big.h_old + (size_t)k * N + off, n * sizeof(real));
        for (int s = 0; s < S; s++)
            memcpy(r.slot + (size_t)s * n, big.slot + (size_t)s * N + off, n * sizeof(real));
        run_eval(&r, p, 1);
        for (size_t o = 0; o < n; o++) {
            assert_memory_equal(&r.out[o], &big.out[off + o], sizeof(real));
            for (int k = 0; k < K; k++) {
                assert_memory_equal(&r.h_new[(size_t)k * n + o],
                                    &big.h_new[(size_t)k * N + off + o], sizeof(real));
                assert_memory_equal(&r.dout[(size_t)k * n + o], &big.dout[(size_t)k * N + off + o],
                                    sizeof(real));
                for (int j = 0; j < K; j++)
                    assert_memory_equal(&r.jac[(size_t)(k * K + j) * n + o],
                                        &big.jac[(size_t)(k * K + j) * N + off + o], sizeof(real));
                for (int s = 0; s < S; s++)
                    assert_memory_equal(&r.dslot[(size_t)(k * S + s) * n + o],
                                        &big.dslot[(size_t)(k * S + s) * N + off + o],
                                        sizeof(real));
            }
        }
    }
    run_fini(&big);
    run_fini(&r);
    expr_prog_free(&p, mem_default());
    cell_fini(&c, mem_default());
}

static void
test_expr_eval_allocates_nothing(void **state)
{
    (void)state;
    struct mem_counter mc;
    mem_counter_init(&mc, NULL);
    for (int si = 0; si < N_SPECS; si++) {
        struct model_cell c;
        build_cell(&specs[si], &c);
        struct expr_prog *p = NULL;
        struct expr_error e;
        assert_int_equal(expr_prog_compile(&c, DT, &mc.mem, &p, &e), 0);
        struct run r;
        run_init(&r, p, 300, c.n_states, c.n_slots);
        long calls = mc.n_calls, frees = mc.n_frees;
        for (int t = 0; t < 1000; t++)
            run_eval(&r, p, t & 1);
        assert_int_equal(mc.n_calls, calls);
        assert_int_equal(mc.n_frees, frees);
        run_fini(&r);
        expr_prog_free(&p, &mc.mem);
        assert_null(p);
        assert_int_equal(mc.live_bytes, 0);
        cell_fini(&c, mem_default());
    }
}

/* Every allocation of a compile fails once: -1, "out of memory", nothing leaked. */
static void
test_expr_compile_out_of_memory(void **state)
{
    (void)state;
    static const char *const labels[] = {"alif/hard", "every_fn", "k3"};
    for (size_t li = 0; li < sizeof labels / sizeof labels[0]; li++) {
        struct model_cell c;
        build_cell(spec_named(labels[li]), &c);
        long n_ok = -1;
        for (long fail_at = 0; fail_at < 10000; fail_at++) {
            struct mem_counter mc;
            mem_counter_init(&mc, NULL);
            mc.fail_at = fail_at;
            struct expr_prog *p = NULL;
            struct expr_error e;
            int rc = expr_prog_compile(&c, DT, &mc.mem, &p, &e);
            if (rc == 0) {
                expr_prog_free(&p, &mc.mem);
                assert_int_equal(mc.live_bytes, 0);
                n_ok = fail_at;
                break;
            }
            assert_int_equal(e.field, -1);
            assert_string_equal(e.msg, "out of memory");
            assert_null(p);
            assert_int_equal(mc.live_bytes, 0);
        }
        assert_true(n_ok > 0);
        cell_fini(&c, mem_default());
    }
}

/* need_derivs = 0 computes the same h_new and out, and touches no derivative array. */
static void
test_expr_values_only_same_values(void **state)
{
    (void)state;
    rng_seed("values-only");
    for (int si = 0; si < N_SPECS; si++) {
        struct model_cell c;
        build_cell(&specs[si], &c);
        struct expr_prog *p = compile_ok(&c);
        int K = c.n_states, S = c.n_slots;
        size_t n = 300;
        struct run a, b;
        run_init(&a, p, n, K, S);
        run_init(&b, p, n, K, S);
        double *x = xcalloc(n * (size_t)(K + S), sizeof(double));
        unsigned char cov[MAX_SITES] = {0};
        sample(&specs[si], &c, n, x, &a, cov);
        memcpy(b.h_old, a.h_old, n * (size_t)K * sizeof(real));
        memcpy(b.slot, a.slot, n * (size_t)S * sizeof(real));
        run_eval(&a, p, 1);
        run_eval(&b, p, 0);
        assert_memory_equal(a.h_new, b.h_new, n * (size_t)K * sizeof(real));
        assert_memory_equal(a.out, b.out, n * sizeof(real));
        free(x);
        run_fini(&a);
        run_fini(&b);
        expr_prog_free(&p, mem_default());
        cell_fini(&c, mem_default());
    }
}

/* ---- small custom cells: one state v, slots a and b, param k = 3 ---------------------- */

static void
small_cell(struct model_cell *c, const char *update, const char *output)
{
    struct spec sp = {.label = "small",
                      .K = 1,
                      .S = 2,
                      .P = 1,
                      .states = {"v"},
                      .slots = {"a", "b"},
                      .pnames = {"k"},
                      .pvals = {3.0},
                      .upd = {update},
                      .output = output};
    build_cell(&sp, c);
}

struct one {
    real h_new, out, jac, dslot[2], dout;
};

/* Compiles a small cell and evaluates one neuron. */
static struct one
eval_small(const char *update, const char *output, real v, real a, real b)
{
    struct model_cell c;
    small_cell(&c, update, output);
    struct expr_prog *p = compile_ok(&c);
    struct run r;
    run_init(&r, p, 1, 1, 2);
    r.h_old[0] = v;
    r.slot[0] = a;
    r.slot[1] = b;
    run_eval(&r, p, 1);
    struct one o = {r.h_new[0], r.out[0], r.jac[0], {r.dslot[0], r.dslot[1]}, r.dout[0]};
    run_fini(&r);
    expr_prog_free(&p, mem_default());
    cell_fini(&c, mem_default());
    return o;
}

static void
test_expr_precedence_and_numbers(void **state)
{
    (void)state;
    assert_true(eval_small("-v ** 2", "v", R(3.0), 0, 0).h_new == R(-9.0));
    assert_true(eval_small("2 ** 3 ** 2", "v", 0, 0, 0).h_new == R(512.0));
    assert_true(eval_small("(-v) ** 2", "v", R(3.0), 0, 0).h_new == R(9.0));
    assert_true(eval_small("v ** -1", "v", R(4.0), 0, 0).h_new == R(0.25));
    assert_true(eval_small("v - 1 - 1", "v", R(5.0), 0, 0).h_new == R(3.0));
    assert_true(eval_small("8 / v / 2", "v", R(2.0), 0, 0).h_new == R(2.0));
    assert_true(eval_small("1 + 2 * v ** 2 * 3", "v", R(2.0), 0, 0).h_new == R(25.0));
    assert_true(eval_small("- - v + +a", "v", R(2.0), R(1.0), 0).h_new == R(3.0));
    assert_true(eval_small("1e-3 + 1.0e-3 + 2E+1 + .5 + 2.", "v", 0, 0, 0).h_new ==
                R(1e-3) + R(1.0e-3) + R(20.0) + R(0.5) + R(2.0));
    assert_true(eval_small("k * dt", "v", 0, 0, 0).h_new == R(3.0) * (real)DT);
    assert_true(eval_small("\tv\n*\r2 ", "v", R(1.5), 0, 0).h_new == R(3.0));
    /* The output sees the new state. */
    assert_true(eval_small("v + 1", "v * 10", R(1.0), 0, 0).out == R(20.0));
}

static void
test_expr_integer_powers_are_exact(void **state)
{
    (void)state;
    real v = R(1.2345678);
    struct one o = eval_small("v ** 2 + a ** 3", "v ** 4", v, R(-0.7), 0);
    real a = R(-0.7);
    assert_true(o.h_new == v * v + (a * a) * a);
    assert_true(o.jac == R(2.0) * v);
    assert_true(o.dslot[0] == R(3.0) * (a * a));
    real hn = o.h_new;
    assert_true(o.out == (hn * hn) * (hn * hn));
    /* Negative base, constant exponent: finite derivative (no log term). */
    o = eval_small("v ** 2.5 + a ** 2", "v", R(1.0), R(-2.0), 0);
    assert_true(o.dslot[0] == R(-4.0));
    o = eval_small("a ** k", "v", 0, R(-2.0), 0);
    assert_true(o.h_new == R(-8.0));
    assert_true(o.dslot[0] == R(12.0));
}

/* min/max/relu/abs/clip take the branch taken; ties go to the first argument. */
static void
test_expr_branch_rules(void **state)
{
    (void)state;
    struct one o = eval_small("min(a, b)", "v", 0, R(0.5), R(0.5));
    assert_true(o.dslot[0] == R(1.0) && o.dslot[1] == R(0.0));
    o = eval_small("max(a, b)", "v", 0, R(0.5), R(0.5));
    assert_true(o.dslot[0] == R(1.0) && o.dslot[1] == R(0.0));
    o = eval_small("min(a, b)", "v", 0, R(0.7), R(0.5));
    assert_true(o.h_new == R(0.5) && o.dslot[0] == R(0.0) && o.dslot[1] == R(1.0));
    o = eval_small("max(a, b)", "v", 0, R(0.7), R(0.5));
    assert_true(o.h_new == R(0.7) && o.dslot[0] == R(1.0) && o.dslot[1] == R(0.0));
    o = eval_small("abs(a) + relu(b)", "v", 0, R(0.0), R(0.0));
    assert_true(o.h_new == R(0.0) && o.dslot[0] == R(0.0) && o.dslot[1] == R(0.0));
    o = eval_small("abs(a) + relu(b)", "v", 0, R(-2.0), R(-1.0));
    assert_true(o.h_new == R(2.0) && o.dslot[0] == R(-1.0) && o.dslot[1] == R(0.0));
    o = eval_small("abs(a) + relu(b)", "v", 0, R(2.0), R(1.0));
    assert_true(o.h_new == R(3.0) && o.dslot[0] == R(1.0) && o.dslot[1] == R(1.0));
    /* clip at a bound: the derivative of x */
    o = eval_small("clip(a, -1, 1)", "v", 0, R(1.0), 0);
    assert_true(o.h_new == R(1.0) && o.dslot[0] == R(1.0));
    o = eval_small("clip(a, -1, 1)", "v", 0, R(-1.0), 0);
    assert_true(o.h_new == R(-1.0) && o.dslot[0] == R(1.0));
    o = eval_small("clip(a, -1, 1)", "v", 0, R(1.5), 0);
    assert_true(o.h_new == R(1.0) && o.dslot[0] == R(0.0));
    o = eval_small("clip(a, b, 1)", "v", 0, R(-1.5), R(-1.0));
    assert_true(o.h_new == R(-1.0) && o.dslot[0] == R(0.0) && o.dslot[1] == R(1.0));
    o = eval_small("clip(v, a, b)", "v", R(3.0), R(-1.0), R(2.0));
    assert_true(o.h_new == R(2.0) && o.jac == R(0.0) && o.dslot[1] == R(1.0));
    /* stop_gradient: the value, no derivative; spike at 0 is 0 */
    o = eval_small("stop_gradient(a * a) + spike(b)", "v", 0, R(3.0), R(0.0));
    assert_true(o.h_new == R(9.0) && o.dslot[0] == R(0.0));
    /* The default surrogate at 0: alpha * width = 0.3. */
    assert_true(o.dslot[1] == R(0.3) * R(1.0));
}

static void
test_expr_sigmoid_saturates(void **state)
{
    (void)state;
    struct one o = eval_small("sigmoid(a) + sigmoid(b)", "v", 0, R(1000.0), R(-1000.0));
    assert_true(o.h_new == R(1.0));
    assert_true(o.dslot[0] == R(0.0) && o.dslot[1] == R(0.0));
    o = eval_small("sigmoid(a)", "v", 0, R(-100.0), 0);
    assert_true(o.h_new >= R(0.0) && o.h_new < R(1e-30) && isfinite(o.dslot[0]));
    o = eval_small("tanh(a) + exp(b)", "v", 0, R(500.0), R(-1000.0));
    assert_true(o.h_new == R(1.0) && o.dslot[0] == R(0.0) && o.dslot[1] == R(0.0));
}

/* At singular points the derivative is what the formula gives. */
static void
test_expr_singular_points(void **state)
{
    (void)state;
    struct one o = eval_small("sqrt(a) + log(b)", "v", 0, R(0.0), R(0.0));
    assert_true(isinf(o.dslot[0]) && isinf(o.dslot[1]));
    o = eval_small("a ** 0.5", "v", 0, R(0.0), 0);
    assert_true(o.h_new == R(0.0) && isinf(o.dslot[0]));
}

/* ---- errors ---------------------------------------------------------------------------- */

static struct expr_error
compile_err(struct model_cell *c)
{
    struct expr_prog *p = NULL;
    struct expr_error e;
    memset(&e, 0x55, sizeof e);
    assert_int_equal(expr_prog_compile(c, DT, mem_default(), &p, &e), -1);
    assert_null(p);
    cell_fini(c, mem_default());
    return e;
}

static struct expr_error
small_err(const char *update, const char *output)
{
    struct model_cell c;
    small_cell(&c, update, output);
    return compile_err(&c);
}

#define assert_msg_has(e, text)                                                                    \
    do {                                                                                           \
        if (!strstr((e).msg, (text)))                                                              \
            fail_msg("message '%s' lacks '%s'", (e).msg, (text));                                  \
    } while (0)

static void
test_expr_error_syntax_with_column(void **state)
{
    (void)state;
    /* small cells have no defines: the update is field 0, the output field 1 */
    struct expr_error e = small_err("v + * 2", "v");
    assert_int_equal(e.field, 0);
    assert_int_equal(e.offset, 4);
    assert_msg_has(e, "expected an expression");
    e = small_err("v", "(v + 1");
    assert_int_equal(e.field, 1);
    assert_int_equal(e.offset, 6);
    assert_msg_has(e, "expected ')'");
    e = small_err("v v", "v");
    assert_int_equal(e.offset, 2);
    assert_msg_has(e, "unexpected name");
    e = small_err("1e+ 2", "v");
    assert_int_equal(e.offset, 0);
    assert_msg_has(e, "invalid number");
    e = small_err("", "v");
    assert_int_equal(e.offset, 0);
    e = small_err("v $ 1", "v");
    assert_int_equal(e.offset, 2);
    assert_msg_has(e, "unexpected character '$'");
    e = small_err("v)", "v");
    assert_int_equal(e.offset, 1);
    e = small_err("exp(v,)", "v");
    assert_int_equal(e.offset, 6);
    e = small_err("v ** ", "v");
    assert_int_equal(e.offset, 5);
    e = small_err("1.2.3", "v");
    assert_int_equal(e.offset, 3);
    /* Hostile nesting is an error, not a crash. */
    static char deep[20001];
    memset(deep, '(', 10000);
    memset(deep + 10000, ')', 10000);
    deep[10000] = '1';
    e = small_err(deep, "v");
    assert_msg_has(e, "nested too deeply");
}

static void
test_expr_error_unknown_name(void **state)
{
    (void)state;
    struct expr_error e = small_err("v + qq * 2", "v");
    assert_int_equal(e.field, 0);
    assert_int_equal(e.offset, 4);
    assert_msg_has(e, "unknown name 'qq'");
    /* The output sees no slot. */
    e = small_err("v", "v + a");
    assert_int_equal(e.field, 1);
    assert_int_equal(e.offset, 4);
    assert_msg_has(e, "not visible in output");
}

static void
test_expr_error_unknown_function(void **state)
{
    (void)state;
    struct expr_error e = small_err("v + sin(a)", "v");
    assert_int_equal(e.field, 0);
    assert_int_equal(e.offset, 4);
    assert_msg_has(e, "unknown function 'sin'");
}

static void
test_expr_error_arity(void **state)
{
    (void)state;
    struct expr_error e = small_err("v + clip(a, 1)", "v");
    assert_int_equal(e.offset, 4);
    assert_msg_has(e, "'clip' takes 3 arguments, got 2");
    e = small_err("exp()", "v");
    assert_int_equal(e.offset, 0);
    assert_msg_has(e, "'exp' takes 1 argument, got 0");
    e = small_err("min(a, b, v)", "v");
    assert_msg_has(e, "'min' takes 2 arguments, got 3");
}

static void
test_expr_error_define_scope_and_shadowing(void **state)
{
    (void)state;
    static const struct {
        const char *dnames[2];
        const char *dtext[2];
        int field, offset;
        const char *msg;
    } cases[] = {
        {{"v", NULL}, {"a", NULL}, 0, 0, "define 'v' shadows a state"},
        {{"a", NULL}, {"v", NULL}, 0, 0, "define 'a' shadows a slot"},
        {{"k", NULL}, {"v", NULL}, 0, 0, "define 'k' shadows a param"},
        {{"dt", NULL}, {"v", NULL}, 0, 0, "define 'dt' shadows dt"},
        {{"h", "h"}, {"v", "a"}, 1, 0, "define 'h' shadows an earlier define"},
        {{"h", "g"}, {"g + 1", "v"}, 0, 0, "define 'g' is used before it is defined"},
        {{"h", "g"}, {"v", "h + g"}, 1, 4, "define 'g' is used before it is defined"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct spec sp = {.label = "d",
                          .K = 1,
                          .S = 2,
                          .P = 1,
                          .states = {"v"},
                          .slots = {"a", "b"},
                          .pnames = {"k"},
                          .pvals = {3.0},
                          .D = cases[i].dnames[1] ? 2 : 1,
                          .dnames = {cases[i].dnames[0], cases[i].dnames[1]},
                          .dtext = {cases[i].dtext[0], cases[i].dtext[1]},
                          .upd = {"v"},
                          .output = "v"};
        struct model_cell c;
        build_cell(&sp, &c);
        struct expr_error e = compile_err(&c);
        assert_int_equal(e.field, cases[i].field);
        assert_int_equal(e.offset, cases[i].offset);
        assert_msg_has(e, cases[i].msg);
    }
    /* A define is not visible in the output; updates are field D + k. */
    struct spec sp = {.label = "d",
                      .K = 2,
                      .S = 1,
                      .states = {"v", "w"},
                      .slots = {"a"},
                      .D = 1,
                      .dnames = {"h"},
                      .dtext = {"a"},
                      .upd = {"h", "w + zz"},
                      .output = "h"};
    struct model_cell c;
    build_cell(&sp, &c);
    struct expr_error e = compile_err(&c);
    assert_int_equal(e.field, 2);
    assert_int_equal(e.offset, 4);
    build_cell(&sp, &c);
    mem_free(mem_default(), &c.updates[1].text);
    c.updates[1].text = dup("w");
    e = compile_err(&c);
    assert_int_equal(e.field, 3);
    assert_msg_has(e, "not visible in output");
}

static void
test_expr_error_param_and_state(void **state)
{
    (void)state;
    struct spec sp = {.label = "x",
                      .K = 1,
                      .S = 1,
                      .P = 1,
                      .states = {"v"},
                      .slots = {"a"},
                      .pnames = {"v"},
                      .pvals = {1.0},
                      .upd = {"v"},
                      .output = "v"};
    struct model_cell c;
    build_cell(&sp, &c);
    struct expr_error e = compile_err(&c);
    assert_int_equal(e.field, -1);
    assert_msg_has(e, "'v' is both a param and a state");
    sp.pnames[0] = "a";
    build_cell(&sp, &c);
    e = compile_err(&c);
    assert_int_equal(e.field, -1);
    assert_msg_has(e, "'a' is both a param and a slot");
    sp.pnames[0] = "k";
    sp.slots[0] = "v";
    build_cell(&sp, &c);
    e = compile_err(&c);
    assert_int_equal(e.field, -1);
    assert_msg_has(e, "'v' is both a state and a slot");
    sp.slots[0] = "dt";
    build_cell(&sp, &c);
    e = compile_err(&c);
    assert_int_equal(e.field, -1);
    assert_msg_has(e, "'dt' is reserved");
}

static void
test_expr_is_spiking_counts_output_spikes(void **state)
{
    (void)state;
    for (int si = 0; si < N_SPECS; si++) {
        struct model_cell c;
        build_cell(&specs[si], &c);
        struct expr_prog *p = compile_ok(&c);
        int expect = strstr(c.output.text, "spike(") ? 1 : 0;
        assert_int_equal(expr_prog_is_spiking(p), expect);
        expr_prog_free(&p, mem_default());
        cell_fini(&c, mem_default());
    }
    struct model_cell c;
    small_cell(&c, "v", "spike(v) + spike(-v) * stop_gradient(spike(v))");
    struct expr_prog *p = compile_ok(&c);
    assert_int_equal(expr_prog_is_spiking(p), 3);
    expr_prog_free(&p, mem_default());
    cell_fini(&c, mem_default());
}

static void
test_expr_dump_lists_instructions(void **state)
{
    (void)state;
    struct model_cell c;
    build_cell(spec_named("lif"), &c);
    struct expr_prog *p = compile_ok(&c);
    size_t need = expr_prog_dump(p, NULL, 0);
    assert_true(need > 0);
    char *buf = xcalloc(need + 1, 1);
    assert_int_equal(expr_prog_dump(p, buf, need + 1), need);
    assert_int_equal(strlen(buf), need);
    assert_non_null(strstr(buf, "h_new[0] = "));
    assert_non_null(strstr(buf, "jac[0][0] = "));
    assert_non_null(strstr(buf, "out = "));
    char small[16];
    assert_int_equal(expr_prog_dump(p, small, sizeof small), need);
    assert_int_equal(strlen(small), sizeof small - 1);
    free(buf);
    expr_prog_free(&p, mem_default());
    expr_prog_free(&p, mem_default()); /* NULL accepted */
    cell_fini(&c, mem_default());
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expr_derivs_match_reference),
        cmocka_unit_test(test_expr_derivs_match_fd),
        cmocka_unit_test(test_expr_hand_lif_matches),
        cmocka_unit_test(test_expr_hand_alif_matches),
        cmocka_unit_test(test_expr_hand_gru_matches),
        cmocka_unit_test(test_expr_chunk_boundaries_do_not_matter),
        cmocka_unit_test(test_expr_large_n_same_results),
        cmocka_unit_test(test_expr_values_only_same_values),
        cmocka_unit_test(test_expr_eval_allocates_nothing),
        cmocka_unit_test(test_expr_compile_out_of_memory),
        cmocka_unit_test(test_expr_precedence_and_numbers),
        cmocka_unit_test(test_expr_integer_powers_are_exact),
        cmocka_unit_test(test_expr_branch_rules),
        cmocka_unit_test(test_expr_sigmoid_saturates),
        cmocka_unit_test(test_expr_singular_points),
        cmocka_unit_test(test_expr_error_syntax_with_column),
        cmocka_unit_test(test_expr_error_unknown_name),
        cmocka_unit_test(test_expr_error_unknown_function),
        cmocka_unit_test(test_expr_error_arity),
        cmocka_unit_test(test_expr_error_define_scope_and_shadowing),
        cmocka_unit_test(test_expr_error_param_and_state),
        cmocka_unit_test(test_expr_is_spiking_counts_output_spikes),
        cmocka_unit_test(test_expr_dump_lists_instructions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
