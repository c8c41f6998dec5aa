/* Deferred rank-one steps (learning.defer, DESIGN §4.4) against immediate steps: the same
 * model with defer: 1 and defer: R, dense and sparse ES and instant projections, some read
 * within the tick (so the backward reads W + pairs). Every reader of W is compared: the
 * forward (each tick's readout), the export (engine_param_weight), the stats norms, a
 * checkpoint round trip (the state sections copied into a fresh engine) and the
 * --keep-weights hand-over. Tolerance: relative 1e-9 in the double build (the results are
 * equal to rounding; spikes make a float comparison meaningless after a flipped spike, so
 * the float build checks 1e-3 on a short run). The float64 gradient sums kept as windows
 * (etraced run on the fused path) are compared with the per-tick path (same tolerance). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "defer.h"
#include "engine.h"
#include "model.h"
#include "op.h"
#include "rng.h"
#include "../support/testmodel.h"

#if defined(REAL_DOUBLE)
#define TOL 1e-9
#define TICKS 300
#else
#define TOL 1e-3
#define TICKS 60
#endif

#define MODEL_FMT                                                                                  \
    "name: deferred\n"                                                                             \
    "dt: 1.0e-3\n"                                                                                 \
    "seed: 4\n"                                                                                    \
    "inputs:\n  - {name: x, size: 6}\n"                                                            \
    "cells:\n"                                                                                     \
    "  - {name: h1, model: lif, size: 12, params: {tau: 1.0e-2}}\n"                                \
    "  - {name: h2, model: lif, size: 10, params: {tau: 1.0e-2}}\n"                                \
    "  - {name: out, model: linear, size: 3}\n"                                                    \
    "projections:\n"                                                                               \
    "  - {name: p_in, from: x, to: h1.i, weight: {init: normal, std: 0.8}, bias: {init: "          \
    "constant, value: 0.3}}\n"                                                                     \
    "  - {name: p_rec, from: h1, to: h1.i, op: sparse, weight: {prob: 0.3, seed: 2, init: "        \
    "normal, std: 0.5}, bias: {init: zeros}}\n"                                                    \
    "  - {name: p_12, from: h1, to: h2.i, op: sparse, weight: {prob: 0.5, seed: 3, init: normal, " \
    "std: 1.5}, learn: instant}\n"                                                                 \
    "  - {name: p_out, from: [x, h1, h2], to: out, weight: {init: normal, std: 0.3}, bias: "       \
    "{init: "                                                                                      \
    "zeros}}\n"                                                                                    \
    "readouts:\n  - {name: y, cell: out}\n"                                                        \
    "learning:\n  algorithm: es_d_rtrl\n  decay_or_rank: 0.8\n  optimizer: {kind: sgd, lr: "       \
    "%s%s}\n"                                                                                      \
    "  defer: %d\n"

static struct engine *
compile_mem(int defer, const char *lr, const char *extra, int track, const struct mem *m)
{
    char text[4096];
    snprintf(text, sizeof text, MODEL_FMT, lr, extra, defer);
    struct engine_opts o = {.track_grad_sum = track, .mem = m, .defer_small = 1};
    struct engine *eng = testmodel_compile_opts(text, &o);
    assert_non_null(eng);
    return eng;
}

static struct engine *
compile_opt(int defer, const char *lr, const char *extra, int track)
{
    return compile_mem(defer, lr, extra, track, NULL);
}

static struct engine *
compile(int defer, const char *lr)
{
    return compile_opt(defer, lr, "", 0);
}

/* One tick of the drive: analog input and (every other tick) a target. */
static void
drive_tick(struct engine *eng, struct rng *r, int k)
{
    real x[6], t[3];
    for (int i = 0; i < 6; i++)
        x[i] = (real)(1.5 * rng_uniform(r));
    engine_set_input(eng, 0, x);
    if (k % 2 == 0) {
        for (int i = 0; i < 3; i++)
            t[i] = (real)rng_normal(r);
        engine_set_target(eng, 0, t);
    }
    engine_tick(eng);
}

static void
assert_close(double a, double b, const char *what, int k)
{
    double scale = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    if (fabs(a - b) > TOL * (scale > 1.0 ? scale : 1.0))
        fail_msg("%s at tick %d: %.17g vs %.17g", what, k, a, b);
}

/* The effective weights of every projection are within TOL; returns them for a. */
static void
assert_weights_close(struct engine *a, struct engine *b, int k)
{
    for (int p = 0; p < engine_n_projs(a); p++) {
        struct engine_param_view va, vb;
        engine_param(a, p, &va);
        engine_param(b, p, &vb);
        real *wa = malloc((size_t)va.count * sizeof(real)),
             *wb = malloc((size_t)vb.count * sizeof(real));
        engine_param_weight(a, p, wa);
        engine_param_weight(b, p, wb);
        for (int64_t i = 0; i < va.count; i++)
            assert_close((double)wa[i], (double)wb[i], va.name, k);
        for (int64_t o = 0; va.bias && o < va.out_size; o++)
            assert_close((double)va.bias[o], (double)vb.bias[o], "bias", k);
        free(wa);
        free(wb);
    }
}

/* Pending pairs exist on some projection of e (the test would be vacuous otherwise). */
static int
has_pairs(struct engine *e)
{
    for (int i = 0; i < engine_state_count(e); i++) {
        struct engine_section s;
        engine_state_section(e, i, &s);
        if (s.part == ENGINE_PART_DEFERRED && strstr(s.name, "pairs_n") &&
            *(const int64_t *)s.data > 0)
            return 1;
    }
    return 0;
}

/* Forward, backward (through p_out and p_12, read within the tick), export and norms of
 * defer: R against defer: 1. */
static void
check_readers(int R)
{
    struct engine *imm = compile(1, "2.0e-2"), *def = compile(R, "2.0e-2");
    struct rng ra, rb;
    rng_seed(&ra, 99, "drive");
    rng_seed(&rb, 99, "drive");
    int saw_pairs = 0;
    for (int k = 0; k < TICKS; k++) {
        drive_tick(imm, &ra, k);
        drive_tick(def, &rb, k);
        const real *ya = engine_readout_values(imm, 0), *yb = engine_readout_values(def, 0);
        for (int i = 0; i < 3; i++)
            assert_close((double)ya[i], (double)yb[i], "readout (forward)", k);
        saw_pairs |= has_pairs(def);
        if (k % 7 == 3) { /* mid-way through the pairs: export and norms see W + pairs */
            assert_weights_close(imm, def, k);
            for (int p = 0; p < engine_n_projs(imm); p++) {
                struct engine_norms na, nb;
                engine_proj_norms(imm, p, &na);
                engine_proj_norms(def, p, &nb);
                assert_close(na.w, nb.w, "||W||", k);
                assert_close(na.drift, nb.drift, "||W - W0||", k);
                assert_close(na.delta, nb.delta, "||delta W||", k);
            }
        }
    }
    assert_true(saw_pairs);
    struct engine_counters ca, cb;
    engine_counters(imm, &ca);
    engine_counters(def, &cb);
    assert_int_equal(ca.steps, cb.steps);
    assert_true(ca.steps > 0);
    printf("  defer %d: %llu steps, rate h1 %.3f h2 %.3f\n", R, (unsigned long long)cb.steps,
           engine_cell_rate(def, 0), engine_cell_rate(def, 1));
    engine_free(&imm);
    engine_free(&def);
}

static void
test_defer_readers_close_to_immediate(void **state)
{
    (void)state;
    check_readers(4);
    check_readers(7);
    check_readers(19); /* a sparse entry's pairs in three chunks of lanes, the last partial */
}

/* Copies every state section and the scalars of src into dst (a checkpoint's round trip
 * without the file). */
static void
copy_state(struct engine *dst, struct engine *src)
{
    assert_int_equal(engine_state_count(dst), engine_state_count(src));
    for (int i = 0; i < engine_state_count(src); i++) {
        struct engine_section s, d;
        engine_state_section(src, i, &s);
        engine_state_section(dst, i, &d);
        assert_string_equal(s.name, d.name);
        assert_int_equal(s.bytes, d.bytes);
        if (s.part != ENGINE_PART_STRUCTURE)
            memcpy(d.data, s.data, s.bytes);
    }
    struct engine_scalars sc;
    engine_state_get_scalars(src, &sc);
    engine_state_set_scalars(dst, &sc);
    struct err e;
    err_clear(&e);
    assert_int_equal(engine_state_check(dst, &e), 0);
}

static void
test_defer_checkpoint_round_trip_is_bit_exact(void **state)
{
    (void)state;
    struct engine *a = compile(5, "2.0e-2"), *b = compile(5, "2.0e-2");
    struct rng r;
    rng_seed(&r, 7, "drive");
    for (int k = 0; k < 23; k++) /* 23: three pairs pending (flushes after ticks 4, 9, ...) */
        drive_tick(a, &r, k);
    assert_true(has_pairs(a));
    copy_state(b, a);
    struct rng r2 = r;
    for (int k = 23; k < 80; k++) {
        drive_tick(a, &r, k);
        drive_tick(b, &r2, k);
        const real *ya = engine_readout_values(a, 0), *yb = engine_readout_values(b, 0);
        assert_memory_equal(ya, yb, 3 * sizeof(real));
    }
    for (int p = 0; p < engine_n_projs(a); p++) {
        struct engine_param_view va, vb;
        engine_param(a, p, &va);
        engine_param(b, p, &vb);
        assert_memory_equal(va.weight, vb.weight, (size_t)va.count * sizeof(real));
    }
    /* a count outside 0..r is refused, not trusted */
    int i = engine_state_find(b, "proj.p_in.pairs_n");
    assert_true(i >= 0);
    struct engine_section s;
    engine_state_section(b, i, &s);
    *(int64_t *)s.data = 6;
    struct err e;
    err_clear(&e);
    assert_int_equal(engine_state_check(b, &e), -1);
    assert_non_null(strstr(e.msg, "p_in"));
    *(int64_t *)s.data = 0;
    engine_free(&a);
    engine_free(&b);
}

static void
test_defer_keep_weights_carries_w_plus_pairs(void **state)
{
    (void)state;
    struct engine *a = compile(5, "2.0e-2"), *b = compile(3, "2.0e-2");
    struct rng r;
    rng_seed(&r, 8, "drive");
    for (int k = 0; k < 13; k++)
        drive_tick(a, &r, k);
    assert_true(has_pairs(a));
    int n = engine_n_projs(a);
    real *want[8];
    for (int p = 0; p < n; p++) {
        struct engine_param_view v;
        engine_param(a, p, &v);
        want[p] = malloc((size_t)v.count * sizeof(real));
        engine_param_weight(a, p, want[p]);
    }
    assert_true(engine_state_carry(b, a, 0) > 0);
    for (int p = 0; p < n; p++) {
        struct engine_param_view v;
        engine_param(b, p, &v);
        assert_memory_equal(v.weight, want[p], (size_t)v.count * sizeof(real));
        free(want[p]);
    }
    engine_free(&a);
    engine_free(&b);
}

static void
test_defer_same_bits_in_every_run(void **state)
{
    (void)state;
    /* the schedule depends on tick numbers only: two runs give the same bits, and the
     * flush leaves the effective weights as they were read before it */
    struct engine *a = compile(4, "2.0e-2"), *b = compile(4, "2.0e-2");
    struct rng ra, rb;
    rng_seed(&ra, 5, "drive");
    rng_seed(&rb, 5, "drive");
    for (int k = 0; k < 50; k++) {
        drive_tick(a, &ra, k);
        drive_tick(b, &rb, k);
    }
    for (int p = 0; p < engine_n_projs(a); p++) {
        struct engine_param_view va, vb;
        engine_param(a, p, &va);
        engine_param(b, p, &vb);
        assert_memory_equal(va.weight, vb.weight, (size_t)va.count * sizeof(real));
    }
    engine_free(&a);
    engine_free(&b);
}

static void
test_defer_huge_pair_is_refused(void **state)
{
    (void)state;
    /* a pair with max|a| max|b| r >= 2^100 (2^900 double) is refused: nothing written */
#if defined(REAL_DOUBLE)
    const char *lr = "1.0e+300";
#else
    const char *lr = "1.0e+34";
#endif
    struct engine *a = compile(4, lr);
    struct rng r;
    rng_seed(&r, 3, "drive");
    int n = engine_n_projs(a);
    real *before[8], *after[8];
    int64_t count[8];
    for (int p = 0; p < n; p++) {
        struct engine_param_view v;
        engine_param(a, p, &v);
        count[p] = v.count;
        before[p] = malloc((size_t)v.count * sizeof(real));
        after[p] = malloc((size_t)v.count * sizeof(real));
    }
    uint64_t refused_ticks = 0;
    for (int k = 0; k < 20; k++) {
        struct engine_counters c0, c1;
        engine_counters(a, &c0);
        for (int p = 0; p < n; p++)
            engine_param_weight(a, p, before[p]);
        drive_tick(a, &r, k);
        engine_counters(a, &c1);
        if (c1.updates_refused == c0.updates_refused)
            continue;
        refused_ticks++;
        assert_int_equal(c1.steps, c0.steps);
        for (int p = 0; p < n; p++) { /* the refused step wrote nothing */
            engine_param_weight(a, p, after[p]);
            assert_memory_equal(before[p], after[p], (size_t)count[p] * sizeof(real));
        }
    }
    assert_true(refused_ticks > 0);
    for (int p = 0; p < n; p++) {
        free(before[p]);
        free(after[p]);
    }
    engine_free(&a);
}

/* etraced run's gradient sums on the fused path (kept as windows) against the per-tick
 * path, to rounding. clip_norm: 1e30 takes the accumulator path with the same math (the
 * clip factor is exactly 1). reset_at >= 0: both reset their traces after that tick, in
 * the middle of a window. 160 ticks hold two full windows (DEFER_GRAD_PAIRS = 64). */
static void
check_grad_sums(int defer, int reset_at)
{
    struct engine *fast = compile_opt(defer, "2.0e-2", "", 1);
    struct engine *plain = compile_opt(1, "2.0e-2", ", clip_norm: 1.0e+30", 1);
    struct rng ra, rb;
    rng_seed(&ra, 6, "drive");
    rng_seed(&rb, 6, "drive");
    for (int k = 0; k < 160; k++) {
        drive_tick(fast, &ra, k);
        drive_tick(plain, &rb, k);
        if (k == reset_at) {
            engine_reset(fast, 0, 1);
            engine_reset(plain, 0, 1);
        }
    }
    engine_sync_grad_sums(fast);
    engine_sync_grad_sums(plain);
    for (int p = 0; p < engine_n_projs(fast); p++) {
        struct engine_param_view va, vb;
        engine_param(fast, p, &va);
        engine_param(plain, p, &vb);
        if (!va.grad_sum_w)
            continue;
        /* defer 1: the same weights, so only the summing differs (a window's sum of
         * decayed column factors in real, added in float64 for the inputs that fired);
         * defer R: also the weights differ to rounding */
        for (int64_t i = 0; i < va.count; i++)
            assert_close(va.grad_sum_w[i], vb.grad_sum_w[i], "grad sum", 100);
        if (va.grad_sum_b) /* the bias sums are added per tick in float64: same bits */
            for (int64_t o = 0; defer == 1 && o < va.out_size; o++)
                assert_true(va.grad_sum_b[o] == vb.grad_sum_b[o]);
    }
    engine_free(&fast);
    engine_free(&plain);
}

static void
test_defer_grad_sums_from_pairs(void **state)
{
    (void)state;
    check_grad_sums(1, -1);
    check_grad_sums(4, -1);
    check_grad_sums(1, 45);
}

/* A deferring projection of count weights w over caller-owned pairs and scratch, as the
 * engine lays one out, for the tests that drive defer.c directly. */
static struct eproj
bare_proj(struct model_proj *d, int64_t I, int64_t O, int64_t count, int64_t r, real *w, real *pa,
          real *pb, real *pc, int64_t *pk)
{
    struct eproj p = {.d = d,
                      .I = I,
                      .O = O,
                      .count = count,
                      .n_pend_max = r,
                      .pa = pa,
                      .pb = pb,
                      .pc = pc,
                      .pk = pk,
                      .defers = 1,
                      .defer_why = ENGINE_DEFER_YES};
    p.w.count = count;
    p.w.values = w;
    return p;
}

/* A dense flush adds to each weight 0 + the terms a_k[i] b_k[o] with a_k[i] != 0, in pair
 * order (DESIGN §4.4), whatever the width of the row pass: O = 200 runs the widest group
 * (64 floats, float build), the 32-wide one and the per-column tail; one factor is 0. The
 * result is compared bit for bit with that sum written out here. */
static void
test_defer_dense_flush_order(void **state)
{
    (void)state;
    enum { I = 3, O = 200, R = 5 };
    static real w[I * O], ref[I * O], pa[I * R], pb[R * O + 8], pc[64];
    static int64_t pk[64];
    struct rng r;
    rng_seed(&r, 9, "flush");
    for (int k = 0; k < I * O; k++)
        w[k] = (real)rng_normal(&r);
    for (int k = 0; k < I * R; k++)
        pa[k] = (real)(1e-3 * rng_normal(&r));
    pa[1 * R + 2] = R(0.0);
    for (int k = 0; k < R * O; k++)
        pb[k] = (real)rng_normal(&r);
    for (int i = 0; i < I; i++)
        for (int o = 0; o < O; o++) {
            real s = R(0.0);
            for (int k = 0; k < R; k++)
                if (pa[i * R + k] != R(0.0))
                    s += pa[i * R + k] * pb[k * O + o];
            ref[i * O + o] = w[i * O + o] + s;
        }
    struct model_proj d = {.op = MODEL_OP_DENSE};
    struct eproj p = bare_proj(&d, I, O, I * O, R, w, pa, pb, pc, pk);
    p.n_pend = R;
    defer_flush(&p);
    assert_int_equal(p.n_pend, 0);
    assert_memory_equal(w, ref, sizeof w);
}

/* Pairs kept factored (defer_push): a target every tick, so that ES pairs follow their
 * row factors' recurrence and form segments, and inputs that are mostly 0, so that the
 * segments' row factors are too. The drive breaks the recurrence in every way it can be
 * broken: ticks without a target, an lr change, a trace reset, learning off. Every reader
 * stays within TOL of the immediate steps; a checkpoint taken inside a segment continues
 * bit for bit; a checkpoint without the segment (before factored pairs) continues with its
 * pairs standing alone. */
static void
drive_sparse(struct engine *eng, struct rng *r, int k)
{
    real x[6], t[3];
    for (int i = 0; i < 6; i++)
        x[i] = rng_uniform(r) < 0.3 ? (real)(1.5 * rng_uniform(r)) : R(0.0);
    engine_set_input(eng, 0, x);
    if (k == 70)
        engine_set_lr(eng, 1.0e-2);
    if (k == 100)
        engine_reset(eng, 0, 1);
    engine_set_learn(eng, k >= 130 && k < 134 ? ENGINE_LEARN_OFF : ENGINE_LEARN_ON);
    if (k < 40 || k >= 45) {
        for (int i = 0; i < 3; i++)
            t[i] = (real)rng_normal(r);
        engine_set_target(eng, 0, t);
    }
    engine_tick(eng);
}

/* The longest open segment over the projections of e (pairs in it). */
static int64_t
longest_segment(struct engine *e)
{
    int64_t best = 0, n = 0;
    for (int i = 0; i < engine_state_count(e); i++) {
        struct engine_section s;
        engine_state_section(e, i, &s);
        if (strstr(s.name, "pairs_n"))
            n = *(const int64_t *)s.data;
        if (strstr(s.name, "pairs_segment")) { /* after its pairs_n */
            double first = ((const double *)s.data)[DEFER_SEG_FIRST];
            if (first >= 0.0 && n - (int64_t)first > best)
                best = n - (int64_t)first;
        }
    }
    return best;
}

/* Turns e's deferred state into what a checkpoint from before factored pairs restores to:
 * no pairs_segment section (engine_state_optional stands in for it, as a restore does) and
 * a sparse weight's pairs_b laid out [O][r]. */
static void
legacy_restore(struct engine *e, int R)
{
    for (int i = 0; i < engine_state_count(e); i++) {
        struct engine_section s;
        engine_state_section(e, i, &s);
        if (strcmp(s.name, "proj.p_rec.pairs_b") == 0 || /* the sparse ones: [r][O] -> [O][r] */
            strcmp(s.name, "proj.p_12.pairs_b") == 0) {
            size_t n = s.bytes / sizeof(real), O = n / (size_t)R;
            real *b = s.data, *t = malloc(s.bytes);
            for (size_t k = 0; k < (size_t)R; k++)
                for (size_t o = 0; o < O; o++)
                    t[o * (size_t)R + k] = b[k * O + o];
            memcpy(b, t, s.bytes);
            free(t);
        }
        if (strstr(s.name, "pairs_segment"))
            assert_int_equal(engine_state_optional(e, i), 1);
    }
}

static void
check_segments(int R)
{
    struct engine *imm = compile(1, "2.0e-2"), *def = compile(R, "2.0e-2"),
                  *cp = compile(R, "2.0e-2"), *old = compile(R, "2.0e-2");
    struct rng ra, rb, rc, ro;
    rng_seed(&ra, 31, "drive");
    rng_seed(&rb, 31, "drive");
    int64_t longest = 0;
    for (int k = 0; k < 160; k++) {
        drive_sparse(imm, &ra, k);
        drive_sparse(def, &rb, k);
        const real *ya = engine_readout_values(imm, 0), *yb = engine_readout_values(def, 0);
        for (int i = 0; i < 3; i++)
            assert_close((double)ya[i], (double)yb[i], "readout (forward)", k);
        if (k % 5 == 2)
            assert_weights_close(imm, def, k);
        int64_t l = longest_segment(def);
        longest = l > longest ? l : longest;
        if (k == 100) /* the reset closed the segment: this tick's pair starts one */
            assert_true(longest_segment(def) <= 1);
        if (k == 54) { /* inside a segment: a checkpoint, and one without the segment */
            assert_true(longest_segment(def) >= 2);
            copy_state(cp, def);
            copy_state(old, def);
            rc = rb;
            ro = rb;
            legacy_restore(old, R);
            assert_weights_close(def, old, k);
        }
        if (k > 54) {
            drive_sparse(cp, &rc, k);
            drive_sparse(old, &ro, k);
            assert_memory_equal(engine_readout_values(cp, 0), yb, 3 * sizeof(real));
            const real *yo = engine_readout_values(old, 0);
            for (int i = 0; i < 3; i++)
                assert_close((double)ya[i], (double)yo[i], "readout (old checkpoint)", k);
        }
    }
    assert_true(longest >= (R - 1 < 8 ? R - 1 : 8)); /* the drive did form segments */
    assert_weights_close(imm, def, 160);
    assert_weights_close(imm, old, 160);
    for (int p = 0; p < engine_n_projs(def); p++) {
        struct engine_param_view va, vb;
        engine_param(def, p, &va);
        engine_param(cp, p, &vb);
        assert_memory_equal(va.weight, vb.weight, (size_t)va.count * sizeof(real));
    }
    engine_free(&imm);
    engine_free(&def);
    engine_free(&cp);
    engine_free(&old);
}

static void
test_defer_factored_segments(void **state)
{
    (void)state;
    check_segments(4);
    check_segments(16);
    check_segments(19);
}

/* defer_push directly: a_k = lambda a_{k-1} + x_k with x mostly 0 gives one segment whose
 * later row factors are -lr x (0 where x is); the flush equals the pairs' sum to
 * rounding. A pair whose products with the segment's other factors could overflow starts a
 * segment instead, and a corrupt segment in a checkpoint is refused. */
static void
test_defer_push_segments(void **state)
{
    (void)state;
    enum { I = 5, O = 11, R = 6 };
    static real w[I * O], pa[I * R], pb[R * O + 8], pc[64], a[I], x[I], q[O];
    static int64_t pk[64];
    static double ref[I * O];
    struct model_proj d = {.op = MODEL_OP_DENSE};
    struct eproj p = bare_proj(&d, I, O, I * O, R, w, pa, pb, pc, pk);
    for (int sparse = 0; sparse < 2; sparse++) {
        static int64_t indptr[I + 1];
        static int32_t indices[I * O];
        d.op = sparse ? MODEL_OP_SPARSE : MODEL_OP_DENSE;
        if (sparse) { /* every entry stored: the same weights as the dense case */
            for (int i = 0; i <= I; i++)
                indptr[i] = (int64_t)i * O;
            for (int k = 0; k < I * O; k++)
                indices[k] = k % O;
            p.w.indptr = indptr;
            p.w.indices = indices;
        }
        struct rng r;
        rng_seed(&r, 12, "push");
        memset(w, 0, sizeof w);
        memset(ref, 0, sizeof ref);
        defer_close(&p);
        real lam = R(0.75), lr = R(0.1);
        for (int k = 0; k < R; k++) {
            for (int i = 0; i < I; i++) {
                x[i] = i == k % I ? (real)rng_normal(&r) : R(0.0);
                a[i] = k == 0 ? (real)rng_normal(&r) : lam * a[i] + x[i];
            }
            for (int o = 0; o < O; o++)
                q[o] = (real)rng_normal(&r);
            defer_push(NULL, &p, a, x, q, lr, lam, (uint64_t)(100 + k));
            for (int i = 0; i < I; i++)
                for (int o = 0; o < O; o++)
                    ref[i * O + o] += -(double)lr * (double)a[i] * (double)q[o];
        }
        assert_true(p.pseg[DEFER_SEG_FIRST] == 0.0); /* one segment */
        for (int k = 1; k < R; k++) /* its later row factors: -lr x, one input each */
            for (int i = 0; i < I; i++)
                assert_true((pa[i * R + k] != R(0.0)) == (i == k % I));
        real eff[I * O];
        defer_effective(&p, 0, I * O, eff);
        defer_flush(&p);
        assert_true(p.pseg[DEFER_SEG_FIRST] == -1.0);
        assert_memory_equal(eff, w, sizeof w); /* a reader saw what the flush wrote */
        for (int k = 0; k < I * O; k++)
            assert_close((double)w[k], ref[k], "flushed weight", k);
    }
    /* overflow: a huge row factor, then a huge column factor: one segment would multiply
     * them (u_0 B_0 holds a_0 lambda b_1), so the second pair starts its own */
    d.op = MODEL_OP_DENSE;
    memset(w, 0, sizeof w);
    real big = (real)sqrt(DEFER_PAIR_LIMIT) * R(4.0); /* big^2 r is past the limit */
    for (int i = 0; i < I; i++)
        a[i] = big, x[i] = R(0.0);
    for (int o = 0; o < O; o++)
        q[o] = R(1.0) / big;
    defer_push(NULL, &p, a, x, q, R(1.0), R(0.5), 7);
    for (int i = 0; i < I; i++)
        a[i] = R(1.0) / big, x[i] = R(0.0);
    for (int o = 0; o < O; o++)
        q[o] = big;
    assert_true(defer_pair_ok(&p, a, q, 1.0));
    defer_push(NULL, &p, a, x, q, R(1.0), R(0.5), 8);
    assert_true(p.pseg[DEFER_SEG_FIRST] == 1.0);
    /* a checkpoint's segment must be one a push could have left */
    assert_true(defer_seg_ok(&p));
    p.pseg[DEFER_SEG_FIRST] = 2.0; /* beyond the pending pairs */
    assert_false(defer_seg_ok(&p));
    p.pseg[DEFER_SEG_FIRST] = 0.5;
    assert_false(defer_seg_ok(&p));
    p.pseg[DEFER_SEG_FIRST] = 0.0;
    p.pseg[DEFER_SEG_UMAX] = NAN;
    assert_false(defer_seg_ok(&p));
    p.pseg[DEFER_SEG_UMAX] = (double)big;
    p.pseg[DEFER_SEG_BSUM] = (double)big;
    assert_false(defer_seg_ok(&p));
    defer_flush(&p);
    for (int k = 0; k < I * O; k++)
        assert_true(isfinite((double)w[k]));
}

/* The sparse flush and forward sum a row's pairs over chunks of its entries: on a weight
 * with rows of 0 to 200 entries (within and across chunks) over columns far larger than
 * the caches, the flush writes the very bits a reader computes entry by entry
 * (defer_effective), close to the pairs' sum in double, and the forward sees them. */
static void
test_defer_sparse_flush_chunks(void **state)
{
    (void)state;
    enum { I = 3001, O = 70001, R = 5, PER = 200 };
    static real w[I * PER], eff[I * PER], pa[I * R], pb[R * O + 8], pc[64], a[I], x[I], q[O];
    static real y[O], y_ref[O];
    static int64_t pk[64], indptr[I + 1];
    static int32_t indices[I * PER];
    static double ref[I * PER];
    struct rng r;
    rng_seed(&r, 21, "chunks");
    int64_t nnz = 0;
    for (int i = 0; i < I; i++) { /* n sorted distinct columns, one per span */
        indptr[i] = nnz;
        int n = (int)(rng_uniform(&r) * (PER + 1));
        n = n > PER ? PER : n;
        int64_t span = n ? O / n : O;
        for (int k = 0; k < n; k++)
            indices[nnz++] = (int32_t)(k * span + (int64_t)(rng_uniform(&r) * (double)span));
    }
    indptr[I] = nnz;
    struct model_proj d = {.op = MODEL_OP_SPARSE};
    struct eproj p = bare_proj(&d, I, O, nnz, R, w, pa, pb, pc, pk);
    p.w.indptr = indptr;
    p.w.indices = indices;
    for (int64_t e = 0; e < nnz; e++)
        w[e] = (real)rng_normal(&r), ref[e] = (double)w[e];
    defer_close(&p);
    real lam = R(0.5), lr = R(0.25);
    for (int k = 0; k < R; k++) {
        for (int i = 0; i < I; i++) { /* 5% of the inputs fire; some rows have no factor */
            x[i] = rng_uniform(&r) < 0.05 ? R(1.0) : R(0.0);
            a[i] = k == 0 ? (i % 5 ? (real)rng_normal(&r) : R(0.0)) : lam * a[i] + x[i];
        }
        for (int o = 0; o < O; o++)
            q[o] = (real)rng_normal(&r);
        defer_push(NULL, &p, a, x, q, lr, lam, (uint64_t)(40 + k));
        for (int i = 0; i < I; i++)
            for (int64_t e = indptr[i]; e < indptr[i + 1]; e++)
                ref[e] += -(double)lr * (double)a[i] * (double)q[indices[e]];
    }
    assert_true(p.pseg[DEFER_SEG_FIRST] == 0.0);
    defer_effective(&p, 0, nnz, eff);
    for (int i = 0; i < I; i++) /* the forward: W + pairs, as the plain op on eff */
        x[i] = rng_uniform(&r) < 0.3 ? (real)rng_normal(&r) : R(0.0);
    defer_forward(&p, y, x);
    op_sparse_forward(I, O, y_ref, indptr, indices, eff, x, NULL);
    assert_memory_equal(y, y_ref, sizeof y);
    defer_flush(&p);
    assert_int_equal(p.n_pend, 0);
    assert_memory_equal(eff, w, (size_t)nnz * sizeof(real));
    for (int64_t e = 0; e < nnz; e++)
        assert_close((double)w[e], ref[e], "flushed entry", (int)e);
}

/* Deferred steps, flushes and the gradient pairs allocate nothing in a tick. */
static void
test_defer_no_alloc_in_ticks(void **state)
{
    (void)state;
    for (int track = 0; track < 2; track++) {
        struct mem_counter mc;
        mem_counter_init(&mc, NULL);
        struct engine *a = compile_mem(4, "2.0e-2", "", track, &mc.mem);
        long calls = mc.n_calls;
        struct rng r;
        rng_seed(&r, 9, "drive");
        for (int k = 0; k < 1000; k++)
            drive_tick(a, &r, k);
        assert_int_equal(mc.n_calls, calls);
        engine_free(&a);
        assert_int_equal(mc.live_bytes, 0);
    }
}

int
main(void)
{
    engine_set_fp_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defer_readers_close_to_immediate),
        cmocka_unit_test(test_defer_checkpoint_round_trip_is_bit_exact),
        cmocka_unit_test(test_defer_keep_weights_carries_w_plus_pairs),
        cmocka_unit_test(test_defer_same_bits_in_every_run),
        cmocka_unit_test(test_defer_huge_pair_is_refused),
        cmocka_unit_test(test_defer_grad_sums_from_pairs),
        cmocka_unit_test(test_defer_dense_flush_order),
        cmocka_unit_test(test_defer_factored_segments),
        cmocka_unit_test(test_defer_push_segments),
        cmocka_unit_test(test_defer_sparse_flush_chunks),
        cmocka_unit_test(test_defer_no_alloc_in_ticks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
