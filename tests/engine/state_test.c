/* The engine state as sections (engine_state.c): a snapshot restored into a freshly
 * compiled engine continues bit for bit (what checkpoints and replay rely on), for the
 * accumulator, fused and reward paths; hot-swap carrying moves weights and, with
 * keep_state, states and traces. */
#include <math.h>
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
#include "testmodel.h"

#define MODEL_HEAD                                                                                 \
    "name: st\n"                                                                                   \
    "dt: 1.0e-3\n"                                                                                 \
    "seed: %d\n"                                                                                   \
    "inputs:\n  - {name: x, size: 5}\n  - {name: s, size: 6, kind: spikes}\n"                      \
    "cells:\n"                                                                                     \
    "  - {name: h, model: alif, size: 9, params: {tau: 1.0e-2}}\n"                                 \
    "  - {name: out, model: leaky_readout, size: 3}\n"                                             \
    "projections:\n"                                                                               \
    "  - {name: w_in, from: [x, s, h], to: h.i, weight: {init: normal, std: 1.0}, bias: "          \
    "{init: constant, value: 0.4}}\n"                                                              \
    "  - {name: w_sp, from: h, to: h.delta, op: sparse, weight: {prob: 0.4, seed: 3, init: "       \
    "normal, std: 0.3}}\n"                                                                         \
    "  - {name: w_out, from: h, to: out, weight: {init: normal, std: 0.5}, bias: {init: zeros}}\n" \
    "readouts:\n  - {name: y, cell: out}\n"

static const char *const learnings[] = {
    /* the accumulator path with Adam, K = 3 */
    "learning:\n  algorithm: d_rtrl\n  optimizer: {kind: adam, lr: 1.0e-2}\n  update_every: 3\n",
    /* the fused sgd path */
    "learning:\n  algorithm: es_d_rtrl\n  decay_or_rank: 0.9\n  optimizer: {kind: sgd, lr: "
    "5.0e-2}\n",
    /* reward, gaussian exploration (uses the policy's generator) */
    "learning:\n  algorithm: hybrid\n  decay_or_rank: 4\n  signal: reward\n  policy: {readout: y, "
    "kind: gaussian, sigma: 0.2}\n  optimizer: {kind: momentum, lr: 1.0e-2}\n",
};

static struct engine *
compile(struct testmodel *tm, int seed, int learning, struct engine_opts *o)
{
    char text[4096];
    snprintf(text, sizeof text, MODEL_HEAD "%s", seed, learnings[learning]);
    assert_int_equal(testmodel_write(tm, "m.yaml", text), 0);
    char path[1100];
    snprintf(path, sizeof path, "%s/m.yaml", tm->dir);
    struct model_desc *d;
    struct err e;
    err_clear(&e);
    if (model_load_file(path, mem_default(), &d, &e))
        fail_msg("%s", e.msg);
    struct engine *eng;
    struct engine_opts plain = {0};
    if (engine_compile(d, o ? o : &plain, &eng, &e))
        fail_msg("%s", e.msg);
    return eng;
}

/* Ticks with inputs, targets and rewards drawn from r. */
static void
drive(struct engine *eng, struct rng *r, int ticks)
{
    real x[5], t[3];
    int32_t spk[6];
    for (int k = 0; k < ticks; k++) {
        for (int i = 0; i < 5; i++)
            x[i] = (real)(1.5 * rng_uniform(r));
        engine_set_input(eng, 0, x);
        int n = 0;
        for (int i = 0; i < 6; i++)
            if (rng_uniform(r) < 0.2)
                spk[n++] = i;
        engine_add_spikes(eng, 1, spk, n);
        for (int i = 0; i < 3; i++)
            t[i] = (real)rng_normal(r);
        if (k % 3 != 1)
            engine_set_target(eng, 0, t);
        engine_add_reward(eng, rng_uniform(r) - 0.5);
        engine_tick(eng);
    }
}

/* A snapshot: every section's bytes, by name, and the scalars. */
struct snap {
    int n;
    char names[256][160];
    void *data[256];
    size_t bytes[256];
    struct engine_scalars sc;
};

static void
snap_take(struct engine *eng, struct snap *s)
{
    s->n = engine_state_count(eng);
    assert_true(s->n <= 256);
    for (int i = 0; i < s->n; i++) {
        struct engine_section sec;
        engine_state_section(eng, i, &sec);
        snprintf(s->names[i], sizeof s->names[i], "%s", sec.name);
        s->data[i] = malloc(sec.bytes);
        memcpy(s->data[i], sec.data, sec.bytes);
        s->bytes[i] = sec.bytes;
    }
    engine_state_get_scalars(eng, &s->sc);
}

static const void *
snap_find(const struct snap *s, const char *name, size_t *bytes)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) {
            if (bytes)
                *bytes = s->bytes[i];
            return s->data[i];
        }
    return NULL;
}

static int
snap_params(void *ctx, const char *proj, struct engine_tensors *t, struct err *e)
{
    const struct snap *s = ctx;
    char name[200];
    size_t bytes = 0;
    snprintf(name, sizeof name, "proj.%s.weight", proj);
    t->values = snap_find(s, name, &bytes);
    t->count = (int64_t)(bytes / sizeof(real));
    snprintf(name, sizeof name, "proj.%s.bias", proj);
    t->bias = snap_find(s, name, NULL);
    snprintf(name, sizeof name, "proj.%s.indptr", proj);
    t->indptr = snap_find(s, name, NULL);
    snprintf(name, sizeof name, "proj.%s.indices", proj);
    t->indices = snap_find(s, name, NULL);
    if (!t->values)
        return err_setf(e, ERR_STATE, "no weights for %s", proj), -1;
    return 0;
}

static void
snap_restore(struct engine *eng, const struct snap *s)
{
    for (int i = 0; i < engine_state_count(eng); i++) {
        struct engine_section sec;
        engine_state_section(eng, i, &sec);
        if (sec.part == ENGINE_PART_STRUCTURE)
            continue;
        size_t bytes = 0;
        const void *src = snap_find(s, sec.name, &bytes);
        if (!src || bytes != sec.bytes)
            fail_msg("section %s missing or of another size", sec.name);
        memcpy(sec.data, src, bytes);
    }
    engine_state_set_scalars(eng, &s->sc);
}

static void
snap_free(struct snap *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->data[i]);
}

static void
assert_equal_engines(struct engine *a, struct engine *b)
{
    for (int i = 0; i < engine_state_count(a); i++) {
        struct engine_section sa, sb;
        engine_state_section(a, i, &sa);
        engine_state_section(b, i, &sb);
        assert_string_equal(sa.name, sb.name);
        if (sa.bytes != sb.bytes || memcmp(sa.data, sb.data, sa.bytes) != 0)
            fail_msg("section %s differs", sa.name);
    }
    struct engine_scalars ca, cb;
    engine_state_get_scalars(a, &ca);
    engine_state_get_scalars(b, &cb);
    assert_memory_equal(&ca, &cb, sizeof ca);
}

static void
check_restore(int learning)
{
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *a = compile(&tm, 7, learning, NULL);
    struct rng ra, rb;
    rng_seed(&ra, 5, "drive");
    drive(a, &ra, 137);
    struct snap s;
    snap_take(a, &s);
    /* restored into a model compiled with another seed: every weight comes from the snapshot */
    struct engine_opts o = {.param_source = snap_params, .param_source_ctx = &s};
    struct engine *b = compile(&tm, 99, learning, &o);
    snap_restore(b, &s);
    assert_equal_engines(a, b);
    rb = ra;
    drive(a, &ra, 200);
    drive(b, &rb, 200);
    assert_equal_engines(a, b);
    struct engine_counters c;
    engine_counters(a, &c);
    printf("  learning %d: %d sections, %llu steps after 337 ticks, bitwise equal\n", learning,
           engine_state_count(a), (unsigned long long)c.steps);
    snap_free(&s);
    engine_free(&a);
    engine_free(&b);
    testmodel_fini(&tm);
}

static void
test_state_restore_continues_bitwise_accumulator(void **state)
{
    (void)state;
    check_restore(0);
}

static void
test_state_restore_continues_bitwise_fused(void **state)
{
    (void)state;
    check_restore(1);
}

static void
test_state_restore_continues_bitwise_reward(void **state)
{
    (void)state;
    check_restore(2);
}

static void
test_state_param_source_rejects_misfits(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *a = compile(&tm, 7, 0, NULL);
    struct snap s;
    snap_take(a, &s);
    /* a broken CSR structure must be refused, not trusted */
    for (int i = 0; i < s.n; i++)
        if (strcmp(s.names[i], "proj.w_sp.indices") == 0)
            ((int32_t *)s.data[i])[0] = 1000;
    char text[4096];
    snprintf(text, sizeof text, MODEL_HEAD "%s", 7, learnings[0]);
    assert_int_equal(testmodel_write(&tm, "m.yaml", text), 0);
    char path[1100];
    snprintf(path, sizeof path, "%s/m.yaml", tm.dir);
    struct model_desc *d;
    struct err e;
    err_clear(&e);
    assert_int_equal(model_load_file(path, mem_default(), &d, &e), 0);
    struct engine *b = NULL;
    struct engine_opts o = {.param_source = snap_params, .param_source_ctx = &s};
    assert_int_equal(engine_compile(d, &o, &b, &e), -1);
    assert_int_equal(e.code, ERR_STATE);
    printf("  refused: %s\n", e.msg);
    model_free(&d, mem_default());
    snap_free(&s);
    engine_free(&a);
    testmodel_fini(&tm);
}

static void
test_state_carry_weights_and_state(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    /* a and ref run alike; a is the swapped-out model, ref keeps what a had */
    struct engine *a = compile(&tm, 7, 1, NULL), *ref = compile(&tm, 7, 1, NULL);
    struct rng ra, rr;
    rng_seed(&ra, 6, "drive");
    rng_seed(&rr, 6, "drive");
    drive(a, &ra, 150);
    drive(ref, &rr, 150);
    /* --keep-weights: weights (handed over) and W0 move, states stay at their initial values */
    struct engine *b = compile(&tm, 8, 1, NULL);
    assert_true(engine_state_carry(b, a, 0) > 0);
    struct engine_param_view va, vb;
    struct engine_norms na, nb;
    for (int p = 0; p < engine_n_projs(ref); p++) {
        engine_param(ref, p, &va);
        engine_param(b, p, &vb);
        assert_memory_equal(va.weight, vb.weight, (size_t)va.count * sizeof(real));
        engine_proj_norms(ref, p, &na);
        engine_proj_norms(b, p, &nb);
        assert_true(na.drift == nb.drift); /* drift since the first load continues */
    }
    struct engine_section sb;
    engine_state_section(b, engine_state_find(b, "cell.h.h"), &sb);
    for (size_t k = 0; k < sb.bytes / sizeof(real); k++)
        assert_true(((real *)sb.data)[k] == R(0.0));
    engine_free(&a);
    /* --keep-state: everything that drives the numerics moves; it continues like ref */
    struct engine *a2 = compile(&tm, 7, 1, NULL);
    struct rng r2;
    rng_seed(&r2, 6, "drive");
    drive(a2, &r2, 150);
    struct engine *c = compile(&tm, 9, 1, NULL);
    engine_state_carry(c, a2, 1);
    engine_free(&a2); /* the old model goes; c owns what it was handed */
    drive(ref, &rr, 100);
    drive(c, &r2, 100);
    for (int p = 0; p < engine_n_projs(ref); p++) {
        engine_param(ref, p, &va);
        engine_param(c, p, &vb);
        assert_memory_equal(va.weight, vb.weight, (size_t)va.count * sizeof(real));
    }
    assert_memory_equal(engine_readout_values(ref, 0), engine_readout_values(c, 0),
                        3 * sizeof(real));
    engine_free(&ref);
    engine_free(&b);
    engine_free(&c);
    testmodel_fini(&tm);
}

/* While a snapshot is copied, steps are deferred: weights stay still, gradients pile up,
 * and the owed step runs at the first due tick after the deferral, on the whole sum. */
static void
test_state_deferred_steps(void **state)
{
    (void)state;
    for (int learning = 0; learning < 2; learning++) {
        struct testmodel tm;
        assert_int_equal(testmodel_init(&tm), 0);
        struct engine *a = compile(&tm, 7, learning, NULL);
        struct rng r;
        rng_seed(&r, 8, "drive");
        drive(a, &r, 30);
        while (!engine_at_step_boundary(a))
            drive(a, &r, 1);
        struct engine_param_view v;
        engine_param(a, 0, &v);
        size_t bytes = (size_t)v.count * sizeof(real);
        real *before = malloc(bytes);
        memcpy(before, v.weight, bytes);
        struct engine_counters c0, c1;
        engine_counters(a, &c0);
        engine_defer_steps(a, 1);
        drive(a, &r, 10);
        engine_param(a, 0, &v);
        assert_memory_equal(before, v.weight, bytes); /* nothing written while copying */
        engine_counters(a, &c1);
        assert_int_equal(c0.steps, c1.steps);
        assert_true(engine_step_owed(a));
        engine_defer_steps(a, 0);
        drive(a, &r, 3); /* the next due tick (K = 3 at most) runs the owed step */
        engine_counters(a, &c1);
        assert_true(c1.steps == c0.steps + 1 || c1.steps > c0.steps);
        assert_false(engine_step_owed(a));
        engine_param(a, 0, &v);
        assert_true(memcmp(before, v.weight, bytes) != 0);
        free(before);
        engine_free(&a);
        testmodel_fini(&tm);
    }
}

/* Stats' ||delta W|| is the change of the weights (and bias) since the previous reading,
 * whatever the optimizer; ||W - W0|| the change since load. */
static void
test_state_norms_delta_is_change_since_last_read(void **state)
{
    (void)state;
    for (int learning = 0; learning < 3; learning++) {
        struct testmodel tm;
        assert_int_equal(testmodel_init(&tm), 0);
        struct engine *a = compile(&tm, 7, learning, NULL);
        struct rng r;
        rng_seed(&r, 10, "drive");
        struct engine_norms nm;
        struct engine_param_view v;
        engine_param(a, 2, &v); /* w_out, with a bias */
        size_t nw = (size_t)v.count, nb = (size_t)v.out_size;
        real *w0 = malloc(nw * sizeof(real)), *b0 = malloc(nb * sizeof(real));
        memcpy(w0, v.weight, nw * sizeof(real));
        memcpy(b0, v.bias, nb * sizeof(real));
        engine_proj_norms(a, 2, &nm); /* the first reading sets the mark */
        drive(a, &r, 60);
        engine_param(a, 2, &v);
        double want = 0.0;
        for (size_t k = 0; k < nw; k++)
            want += ((double)v.weight[k] - (double)w0[k]) * ((double)v.weight[k] - (double)w0[k]);
        for (size_t k = 0; k < nb; k++)
            want += ((double)v.bias[k] - (double)b0[k]) * ((double)v.bias[k] - (double)b0[k]);
        engine_proj_norms(a, 2, &nm);
        printf("  learning %d: ||delta W|| %.6g, expected %.6g, drift %.6g\n", learning, nm.delta,
               sqrt(want), nm.drift);
        assert_true(want > 0.0);
        assert_true(fabs(nm.delta - sqrt(want)) <= 1e-12 * sqrt(want));
        assert_true(fabs(nm.drift - sqrt(want)) <= 1e-12 * sqrt(want));
        engine_proj_norms(a, 2, &nm); /* nothing moved since */
        assert_true(nm.delta == 0.0);
        free(w0);
        free(b0);
        engine_free(&a);
        testmodel_fini(&tm);
    }
}

int
main(void)
{
    engine_set_fp_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_restore_continues_bitwise_accumulator),
        cmocka_unit_test(test_state_restore_continues_bitwise_fused),
        cmocka_unit_test(test_state_restore_continues_bitwise_reward),
        cmocka_unit_test(test_state_param_source_rejects_misfits),
        cmocka_unit_test(test_state_carry_weights_and_state),
        cmocka_unit_test(test_state_deferred_steps),
        cmocka_unit_test(test_state_norms_delta_is_change_since_last_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
