/* The fused sgd path (engine.c fused_learn_tick) against the accumulator path: the same
 * model, inputs and targets give bitwise equal weights and counters, for every rule and
 * op, and a step whose bound fails falls back to the exact check. The accumulator path is
 * forced by tracking gradient sums (engine_opts.track_grad_sum). */
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

#include "engine.h"
#include "rng.h"
#include "../support/testmodel.h"

#define MODEL_FMT                                                                                  \
    "name: fused\n"                                                                                \
    "dt: 1.0e-3\n"                                                                                 \
    "seed: 4\n"                                                                                    \
    "inputs:\n  - {name: x, size: 6}\n"                                                            \
    "cells:\n"                                                                                     \
    "  - {name: h1, model: lif, size: 12, params: {tau: 1.0e-2}}\n"                                \
    "  - {name: h2, model: alif, size: 10, params: {tau: 1.0e-2, beta: 0.5}}\n"                    \
    "  - {name: out, model: linear, size: 3}\n"                                                    \
    "projections:\n"                                                                               \
    "  - {name: p_in, from: x, to: h1.i, weight: {init: normal, std: 0.8}, bias: {init: "          \
    "constant, value: 0.3}}\n"                                                                     \
    "  - {name: p_rec, from: h1, to: h1.i, op: sparse, weight: {prob: 0.3, seed: 2, init: "        \
    "normal, std: 0.5}, bias: {init: zeros}}\n"                                                    \
    "  - {name: p_12, from: h1, to: h2.i, weight: {init: normal, std: 3.0}, learn: instant}\n"     \
    "  - {name: p_el, from: h2, to: h2.delta, op: elemwise, weight: {init: normal, std: 0.2}}\n"   \
    "  - {name: p_out, from: [h1, h2], to: out, weight: {init: normal, std: 0.3}, bias: {init: "   \
    "zeros}}\n"                                                                                    \
    "readouts:\n  - {name: y, cell: out}\n"                                                        \
    "learning:\n  algorithm: %s\n  decay_or_rank: 0.8\n  optimizer: {kind: sgd, lr: %s}\n"

static struct engine *
compile(const char *algo, const char *lr, int track)
{
    char text[4096];
    snprintf(text, sizeof text, MODEL_FMT, algo, lr);
    struct engine_opts o = {.track_grad_sum = track};
    struct engine *eng = testmodel_compile_opts(text, &o);
    assert_non_null(eng);
    return eng;
}

static void
drive(struct engine *eng, int ticks)
{
    struct rng r;
    rng_seed(&r, 99, "drive");
    real x[6], t[3];
    for (int k = 0; k < ticks; k++) {
        for (int i = 0; i < 6; i++)
            x[i] = (real)(2.0 * rng_uniform(&r));
        engine_set_input(eng, 0, x);
        if (k % 2 == 0) {
            for (int i = 0; i < 3; i++)
                t[i] = (real)rng_normal(&r);
            engine_set_target(eng, 0, t);
        }
        engine_tick(eng);
    }
}

static void
assert_same(struct engine *a, struct engine *b)
{
    for (int p = 0; p < engine_n_projs(a); p++) {
        struct engine_param_view va, vb;
        engine_param(a, p, &va);
        engine_param(b, p, &vb);
        assert_int_equal(va.count, vb.count);
        if (memcmp(va.weight, vb.weight, (size_t)va.count * sizeof(real)) != 0)
            fail_msg("projection %s: weights differ", va.name);
        if (va.bias && memcmp(va.bias, vb.bias, (size_t)va.out_size * sizeof(real)) != 0)
            fail_msg("projection %s: biases differ", va.name);
    }
    struct engine_counters ca, cb;
    engine_counters(a, &ca);
    engine_counters(b, &cb);
    assert_int_equal(ca.steps, cb.steps);
    assert_int_equal(ca.updates_refused, cb.updates_refused);
    assert_int_equal(ca.state_resets, cb.state_resets);
}

static void
check_algo(const char *algo, const char *lr, int ticks)
{
    struct engine *fused = compile(algo, lr, 0), *plain = compile(algo, lr, 1);
    drive(fused, ticks);
    drive(plain, ticks);
    assert_same(fused, plain);
    struct engine_counters c;
    engine_counters(fused, &c);
    printf("  %s lr %s: %llu steps, %llu refused, %llu resets, rate h1 %.3f h2 %.3f\n", algo, lr,
           (unsigned long long)c.steps, (unsigned long long)c.updates_refused,
           (unsigned long long)c.state_resets, engine_cell_rate(fused, 0),
           engine_cell_rate(fused, 1));
    engine_free(&fused);
    engine_free(&plain);
}

static void
test_fused_d_rtrl_equals_accumulator(void **state)
{
    (void)state;
    check_algo("d_rtrl", "5.0e-2", 400);
}

static void
test_fused_es_equals_accumulator(void **state)
{
    (void)state;
    check_algo("es_d_rtrl", "5.0e-2", 400);
}

static void
test_fused_hybrid_equals_accumulator(void **state)
{
    (void)state;
    check_algo("hybrid", "5.0e-2", 400);
}

static void
test_fused_huge_lr_falls_back_to_exact_check(void **state)
{
    (void)state;
    /* Steps this large exceed the bound: the tick takes the accumulator path, which applies
     * finite steps and refuses non-finite ones exactly as without fusing. */
    check_algo("es_d_rtrl", "1.0e+30", 200);
    check_algo("d_rtrl", "1.0e+36", 200);
}

int
main(void)
{
    engine_set_fp_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_d_rtrl_equals_accumulator),
        cmocka_unit_test(test_fused_es_equals_accumulator),
        cmocka_unit_test(test_fused_hybrid_equals_accumulator),
        cmocka_unit_test(test_fused_huge_lr_falls_back_to_exact_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
