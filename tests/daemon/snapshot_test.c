/* Checkpoints of deferred steps (daemon/snapshot.c): an engine defers a weight's steps only
 * when its r pairs are fewer values than the weight (a readout of 2 outputs does not); a
 * checkpoint written by an engine that deferred such a small weight (before that rule)
 * still restores its pending pairs exactly, and the restored engine continues bit for bit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"
#include "rng.h"
#include "snapshot.h"
#include "../support/testmodel.h"

/* h 32 -> out 2 with defer 5: w_in [10, 32] (5 * 42 = 210 < 320 values: deferred), w_out
 * [32, 2] (5 * 34 = 170 >= 64: not, unless defer_small). */
#define MODEL                                                                                      \
    "name: snapdefer\n"                                                                            \
    "dt: 1.0e-3\n"                                                                                 \
    "seed: 3\n"                                                                                    \
    "inputs:\n  - {name: x, size: 10}\n"                                                           \
    "cells:\n"                                                                                     \
    "  - {name: h, model: lif, size: 32, params: {tau: 1.0e-2}}\n"                                 \
    "  - {name: out, model: linear, size: 2}\n"                                                    \
    "projections:\n"                                                                               \
    "  - {name: w_in, from: x, to: h.i, weight: {init: normal, std: 1.0}, bias: {init: "           \
    "constant, value: 0.3}}\n"                                                                     \
    "  - {name: w_out, from: h, to: out, weight: {init: normal, std: 0.3}}\n"                      \
    "readouts:\n  - {name: y, cell: out}\n"                                                        \
    "learning:\n  algorithm: es_d_rtrl\n  decay_or_rank: 0.8\n  signal: target\n"                  \
    "  optimizer: {kind: sgd, lr: 5.0e-2}\n  defer: 5\n"

static struct engine *
compile(int defer_small)
{
    struct engine_opts o = {.defer_small = defer_small};
    struct engine *eng = testmodel_compile_opts(MODEL, &o);
    assert_non_null(eng);
    return eng;
}

static void
drive(struct engine *eng, struct rng *r)
{
    real x[10], t[2];
    for (int i = 0; i < 10; i++)
        x[i] = (real)(1.5 * rng_uniform(r));
    for (int i = 0; i < 2; i++)
        t[i] = (real)rng_normal(r);
    engine_set_input(eng, 0, x);
    engine_set_target(eng, 0, t);
    engine_tick(eng);
}

/* A whole snapshot of eng, packed and decoded as a checkpoint file would be. */
static Etrace__Checkpoint *
checkpoint(struct engine *eng)
{
    struct snap_plan plan;
    memset(&plan, 0, sizeof plan);
    assert_int_equal(snap_plan_init(&plan, eng), 0);
    struct snap *s = snap_new(&plan);
    assert_non_null(s);
    snap_copy_small(s, eng);
    assert_int_equal(snap_copy_slice(s, eng, 0), 1);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(snap_pack(s, &buf, &len), 0);
    char err[256];
    Etrace__Checkpoint *ck = snap_unpack(buf, len, err, sizeof err);
    if (!ck)
        fail_msg("unpack: %s", err);
    free(buf);
    snap_free(&s);
    snap_plan_fini(&plan);
    return ck;
}

static void
test_snapshot_small_weight_does_not_defer(void **state)
{
    (void)state;
    struct engine *eng = compile(0);
    struct engine_param_view v;
    engine_param(eng, 0, &v);
    assert_true(v.defers); /* w_in */
    engine_param(eng, 1, &v);
    assert_false(v.defers); /* w_out: its pairs would outweigh it */
    assert_true(engine_state_find(eng, "proj.w_in.pairs_n") >= 0);
    assert_true(engine_state_find(eng, "proj.w_out.pairs_n") < 0);
    engine_free(&eng);
    eng = compile(1);
    engine_param(eng, 1, &v);
    assert_true(v.defers);
    engine_free(&eng);
}

/* The old engine (defer_small) with pairs pending on both weights at the checkpoint: the
 * restore keeps w_out's pairs (it defers them too) and continues with the same bits. */
static void
test_snapshot_restores_small_weight_pairs(void **state)
{
    (void)state;
    struct engine *old = compile(1);
    struct rng r;
    rng_seed(&r, 8, "snapdefer");
    for (int k = 0; k < 13; k++) /* 13 % 5 = 3 pairs pending */
        drive(old, &r);
    Etrace__Checkpoint *ck = checkpoint(old);
    struct engine *back = NULL;
    char err[256];
    if (snap_restore(ck, "ck", &back, err, sizeof err))
        fail_msg("restore: %s", err);
    etrace__checkpoint__free_unpacked(ck, NULL);
    int sec = engine_state_find(back, "proj.w_out.pairs_n");
    assert_true(sec >= 0);
    struct engine_section s;
    engine_state_section(back, sec, &s);
    assert_int_equal(*(const int64_t *)s.data, 3);
    real wa[64], wb[64];
    engine_param_weight(old, 1, wa);
    engine_param_weight(back, 1, wb);
    assert_memory_equal(wa, wb, sizeof wa);
    struct rng r2 = r;
    for (int k = 0; k < 20; k++) {
        drive(old, &r);
        drive(back, &r2);
        assert_memory_equal(engine_readout_values(old, 0), engine_readout_values(back, 0),
                            2 * sizeof(real));
    }
    engine_param_weight(old, 1, wa);
    engine_param_weight(back, 1, wb);
    assert_memory_equal(wa, wb, sizeof wa);
    engine_free(&back);
    engine_free(&old);
}

/* A checkpoint of today's engine restores as it was: no pairs for w_out. */
static void
test_snapshot_restores_without_small_pairs(void **state)
{
    (void)state;
    struct engine *a = compile(0);
    struct rng r;
    rng_seed(&r, 9, "snapdefer");
    for (int k = 0; k < 7; k++)
        drive(a, &r);
    Etrace__Checkpoint *ck = checkpoint(a);
    struct engine *b = NULL;
    char err[256];
    if (snap_restore(ck, "ck", &b, err, sizeof err))
        fail_msg("restore: %s", err);
    etrace__checkpoint__free_unpacked(ck, NULL);
    assert_true(engine_state_find(b, "proj.w_out.pairs_n") < 0);
    struct rng r2 = r;
    for (int k = 0; k < 12; k++) {
        drive(a, &r);
        drive(b, &r2);
        assert_memory_equal(engine_readout_values(a, 0), engine_readout_values(b, 0),
                            2 * sizeof(real));
    }
    engine_free(&b);
    engine_free(&a);
}

int
main(void)
{
    engine_set_fp_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_small_weight_does_not_defer),
        cmocka_unit_test(test_snapshot_restores_small_weight_pairs),
        cmocka_unit_test(test_snapshot_restores_without_small_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
