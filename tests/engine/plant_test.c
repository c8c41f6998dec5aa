/* The plant interface of DESIGN §2 against a separate transcription of its text: an analog
 * input with `offset` (one per element) and `scale` (one number), an analog input with
 * `normalize: {tau, eps}` (m and s2 updated every tick on the held frame, learning on or
 * off, untouched by `reset`), and a readout with `clip` and `scale`, which apply to what is
 * published only while the loss and the gradient use the unclipped output. A `linear`
 * readout reads both inputs through an `instant` projection learning from mse targets; 200
 * ticks with frames on some ticks only (zero-order hold), a learning-off stretch and a
 * `reset all`. Per tick: the published values, the loss, the weights after the sgd step and
 * the normalisation state (section input.b.norm). Then a gaussian policy with clip and
 * scale: its published action is clamp(a, lo, hi) * k of the unclipped action in the
 * state; and the normalisation state survives a snapshot into a fresh engine bit for bit.
 * Tolerances as signal_test.c (1e-12 double, 1e-4 float, relative per tick); perturbed
 * transcriptions (m after its update in s2, clip applied to the loss, the statistics reset
 * with `reset`) must miss by more than ten tolerances. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "real.h"
#include "../support/testmodel.h"
#include "../support/transcribe.h"

#if defined(REAL_DOUBLE)
static const double tol = 1e-12;
#else
static const double tol = 1e-4;
#endif

static int
setup(void **state)
{
    (void)state;
    engine_set_fp_env();
    return 0;
}

static const double power_factor = 10.0;

enum { NA = 3, NB = 2, NO = 3, T_PL = 200, NI = NA + NB };

static const double off_a[NA] = {0.5, -1.0, 2.0};
static const double scale_a = 0.25;
static const double tau_n = 0.05, eps_n = 1.0e-6, dt = 0.01;
static const double clip_lo = -0.5, clip_hi = 0.7, pub_k = 2.0, lr = 0.05;

static const char plant_model[] =
    "name: plant\n"
    "dt: 0.01\n"
    "seed: 3\n"
    "inputs:\n"
    "  - {name: a, size: 3, offset: [0.5, -1.0, 2.0], scale: 0.25}\n"
    "  - {name: b, size: 2, normalize: {tau: 0.05, eps: 1.0e-6}}\n"
    "cells:\n"
    "  - {name: out, model: linear, size: 3}\n"
    "projections:\n"
    "  - {name: w, from: [a, b], to: out, weight: {init: normal, std: 0.7},\n"
    "     bias: {init: constant, value: 0.1}, learn: instant}\n"
    "readouts:\n"
    "  - {name: y, cell: out, clip: [-0.5, 0.7], scale: 2.0}\n"
    "learning:\n"
    "  algorithm: d_rtrl\n"
    "  optimizer: {kind: sgd, lr: 0.05}\n";

/* Frames given before tick t: a on even ticks, b on ticks t % 3 == 0 (else held). */
static int
frame_a(int t, double *raw)
{
    for (int k = 0; k < NA; k++)
        raw[k] = transcribe_as_real(3.0 * sin(0.05 * t + k) + 1.0 - off_a[k] * 0.2);
    return t % 2 == 0;
}

static int
frame_b(int t, double *raw)
{
    for (int k = 0; k < NB; k++)
        raw[k] = transcribe_as_real(10.0 + 4.0 * cos(0.11 * t + 2 * k) + (t > 100 ? 5.0 : 0.0));
    return t % 3 == 0;
}

static void
target(int t, double *y)
{
    for (int k = 0; k < NO; k++)
        y[k] = transcribe_as_real(0.9 * sin(0.03 * t + k));
}

struct pl_rec {
    double pub[T_PL][NO], loss[T_PL], th[T_PL][NI * NO + NO], norm[T_PL][2 * NB];
};

enum pl_pert { PL_EXACT, PL_M_NEW, PL_CLIP_LOSS, PL_RESET_STATS, PL_N };
static const char *const pl_pert_names[PL_N] = {
    "exact transcription", "s2 from raw - m^t (after its update)", "loss on the clipped output",
    "statistics reset by `reset`"};

static const int off0 = 120, off1 = 140, reset_at = 160;

static void
ref_plant(enum pl_pert pert, const double *th0, struct pl_rec *out)
{
    double th[NI * NO + NO], ra[NA] = {0}, rb[NB] = {0}, m[NB] = {0}, s2[NB] = {1.0, 1.0};
    memcpy(th, th0, sizeof th);
    const double alpha = 1.0 - exp(-dt / tau_n);
    for (int t = 0; t < T_PL; t++) {
        double fa[NA], fb[NB], x[NI], o[NO], y[NO];
        if (frame_a(t, fa))
            memcpy(ra, fa, sizeof ra);
        if (frame_b(t, fb))
            memcpy(rb, fb, sizeof rb);
        if (t == reset_at && pert == PL_RESET_STATS)
            for (int k = 0; k < NB; k++)
                m[k] = 0.0, s2[k] = 1.0;
        int learning = !(t >= off0 && t < off1);
        for (int k = 0; k < NA; k++)
            x[k] = (ra[k] - off_a[k]) * scale_a;
        for (int k = 0; k < NB; k++) {
            double m_new = m[k] + alpha * (rb[k] - m[k]);
            double d = pert == PL_M_NEW ? rb[k] - m_new : rb[k] - m[k];
            s2[k] = (1.0 - alpha) * (s2[k] + alpha * d * d);
            m[k] = m_new;
            x[NA + k] = (rb[k] - m[k]) / sqrt(s2[k] + eps_n);
        }
        target(t, y);
        double loss = 0.0, dl[NO];
        for (int j = 0; j < NO; j++) {
            o[j] = th[NI * NO + j];
            for (int i = 0; i < NI; i++)
                o[j] += x[i] * th[i * NO + j];
            double c = o[j] < clip_lo ? clip_lo : (o[j] > clip_hi ? clip_hi : o[j]);
            out->pub[t][j] = c * pub_k;
            double v = pert == PL_CLIP_LOSS ? c : o[j];
            loss += (v - y[j]) * (v - y[j]) / NO;
            dl[j] = 2.0 * (v - y[j]) / NO;
        }
        if (learning) {
            for (int i = 0; i < NI; i++)
                for (int j = 0; j < NO; j++)
                    th[i * NO + j] -= lr * x[i] * dl[j];
            for (int j = 0; j < NO; j++)
                th[NI * NO + j] -= lr * dl[j];
        }
        out->loss[t] = loss;
        memcpy(out->th[t], th, sizeof th);
        for (int k = 0; k < NB; k++) {
            out->norm[t][k] = m[k];
            out->norm[t][NB + k] = s2[k];
        }
    }
}

static void
read_w(struct engine *eng, double *th)
{
    struct engine_param_view pv;
    engine_param(eng, testmodel_proj(eng, "w"), &pv);
    assert_int_equal(pv.count, NI * NO);
    for (int i = 0; i < NI * NO; i++)
        th[i] = (double)pv.weight[i];
    for (int j = 0; j < NO; j++)
        th[NI * NO + j] = (double)pv.bias[j];
}

static void
read_norm(struct engine *eng, double *v)
{
    int i = engine_state_find(eng, "input.b.norm");
    if (i < 0)
        fail_msg("no section input.b.norm");
    struct engine_section sec;
    engine_state_section(eng, i, &sec);
    assert_int_equal(sec.bytes, 2 * NB * sizeof(real));
    for (int k = 0; k < 2 * NB; k++)
        v[k] = (double)((const real *)sec.data)[k];
}

static void
engine_plant(struct engine *eng, struct pl_rec *rec)
{
    int ia = testmodel_input(eng, "a"), ib = testmodel_input(eng, "b"),
        ry = testmodel_readout(eng, "y");
    assert_true(engine_state_find(eng, "input.a.norm") < 0);
    for (int t = 0; t < T_PL; t++) {
        double fa[NA], fb[NB], y[NO];
        real r[NA];
        if (frame_a(t, fa)) {
            for (int k = 0; k < NA; k++)
                r[k] = (real)fa[k];
            engine_set_input(eng, ia, r);
        }
        if (frame_b(t, fb)) {
            for (int k = 0; k < NB; k++)
                r[k] = (real)fb[k];
            engine_set_input(eng, ib, r);
        }
        if (t == off0)
            engine_set_learn(eng, ENGINE_LEARN_OFF);
        if (t == off1)
            engine_set_learn(eng, ENGINE_LEARN_ON);
        if (t == reset_at)
            engine_reset(eng, 1, 1);
        target(t, y);
        for (int k = 0; k < NO; k++)
            r[k] = (real)y[k];
        engine_set_target(eng, ry, r);
        engine_tick(eng);
        const real *p = engine_readout_values(eng, ry);
        for (int k = 0; k < NO; k++)
            rec->pub[t][k] = (double)p[k];
        rec->loss[t] = engine_last_loss(eng);
        read_w(eng, rec->th[t]);
        read_norm(eng, rec->norm[t]);
    }
}

enum { PQ_PUB, PQ_LOSS, PQ_W, PQ_NORM, PQ_N };
static const char *const pq_names[PQ_N] = {"published y", "loss", "weights", "m and s2"};

static double
pl_compare(const struct pl_rec *a, const struct pl_rec *b, struct transcribe_qerr *q)
{
    memset(q, 0, PQ_N * sizeof *q);
    double m = 0.0;
    for (int t = 0; t < T_PL; t++) {
        transcribe_qerr_add(&q[PQ_PUB], transcribe_rel_err(NO, a->pub[t], b->pub[t]), t);
        transcribe_qerr_add(&q[PQ_LOSS], transcribe_rel_err(1, &a->loss[t], &b->loss[t]), t);
        transcribe_qerr_add(&q[PQ_W], transcribe_rel_err(NI * NO + NO, a->th[t], b->th[t]), t);
        transcribe_qerr_add(&q[PQ_NORM], transcribe_rel_err(2 * NB, a->norm[t], b->norm[t]), t);
    }
    for (int k = 0; k < PQ_N; k++)
        m = q[k].err > m || q[k].err != q[k].err ? q[k].err : m;
    return m;
}

static void
test_plant_transforms_and_clip(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *eng = testmodel_compile_text(&tm, NULL, plant_model, NULL, 0);
    if (!eng)
        fail_msg("compile failed: %s", tm.err);
    struct pl_rec *er = calloc(1, sizeof *er), *rr = calloc(1, sizeof *rr);
    assert_non_null(er);
    assert_non_null(rr);
    double th0[NI * NO + NO];
    read_w(eng, th0);
    engine_plant(eng, er);
    int clipped = 0;
    for (int t = 0; t < T_PL; t++)
        for (int k = 0; k < NO; k++)
            clipped += er->pub[t][k] == clip_lo * pub_k || er->pub[t][k] == clip_hi * pub_k;
    printf("[plant_test] %d of %d published values at a clip bound\n", clipped, T_PL * NO);
    assert_true(clipped > 20 && clipped < T_PL * NO - 20);
    ref_plant(PL_EXACT, th0, rr);
    struct transcribe_qerr q[PQ_N];
    pl_compare(er, rr, q);
    for (int k = 0; k < PQ_N; k++) {
        printf("[plant_test]   %-12s %-9s max rel err %.3e at tick %d\n", pq_names[k],
               q[k].err <= tol ? "ok" : "DEVIATES", q[k].err, q[k].tick);
        if (!(q[k].err <= tol))
            fail_msg("%s deviates from DESIGN §2: %.3e > %.0e at tick %d", pq_names[k], q[k].err,
                     tol, q[k].tick);
    }
    for (int pz = PL_EXACT + 1; pz < PL_N; pz++) {
        ref_plant((enum pl_pert)pz, th0, rr);
        double m = pl_compare(er, rr, q);
        printf("[plant_test]   perturbed (%s): max rel err %.3e -> %s\n", pl_pert_names[pz], m,
               m > power_factor * tol ? "would not match" : "UNDETECTED");
        if (!(m > power_factor * tol))
            fail_msg("the perturbed transcription '%s' matches (%.3e)", pl_pert_names[pz], m);
    }
    free(er);
    free(rr);
    engine_free(&eng);
    testmodel_fini(&tm);
}

/* A hand-checked case: offset/scale and the first normalize step, one tick. */
static void
test_plant_hand_checked(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    static const char text[] =
        "name: hand\n"
        "dt: 0.5\n"
        "inputs:\n"
        "  - {name: a, size: 2, offset: 1.0, scale: [2.0, -1.0]}\n"
        "  - {name: b, size: 1, normalize: {tau: 0.5, eps: 0.25}}\n"
        "cells:\n"
        "  - {name: out, model: linear, size: 3}\n"
        "projections:\n"
        "  - {name: w, from: [a, b], to: out, op: elemwise, weight: {init: constant, value: "
        "1.0}}\n"
        "readouts:\n"
        "  - {name: y, cell: out, clip: [-1.0, 1.0]}\n"
        "  - {name: z, cell: out, scale: 10.0}\n";
    struct engine *eng = testmodel_compile_text(&tm, NULL, text, NULL, 0);
    if (!eng)
        fail_msg("compile failed: %s", tm.err);
    real a[2] = {R(1.5), R(3.0)}, b[1] = {R(2.0)};
    engine_set_input(eng, 0, a);
    engine_set_input(eng, 1, b);
    engine_tick(eng);
    /* a: (1.5 - 1) * 2 = 1, (3 - 1) * -1 = -2. b: alpha = 1 - e^-1; m = alpha * 2;
     * s2 = (1 - alpha) (1 + alpha * 4); x = (2 - m) / sqrt(s2 + 0.25). */
    double al = 1.0 - exp(-1.0), m = al * 2.0, s2 = (1.0 - al) * (1.0 + al * 4.0);
    double xb = (2.0 - m) / sqrt(s2 + 0.25);
    const real *y = engine_readout_values(eng, 0), *z = engine_readout_values(eng, 1);
    double want_y[3] = {1.0, -1.0, xb > 1.0 ? 1.0 : (xb < -1.0 ? -1.0 : xb)};
    double want_z[3] = {10.0, -20.0, 10.0 * xb};
    for (int k = 0; k < 3; k++) {
        assert_true(fabs((double)y[k] - want_y[k]) <= 1e-6 * (1.0 + fabs(want_y[k])));
        assert_true(fabs((double)z[k] - want_z[k]) <= 1e-5 * (1.0 + fabs(want_z[k])));
    }
    engine_free(&eng);
    testmodel_fini(&tm);
}

/* A gaussian policy behind clip and scale: the published action is clamp(a) * k of the
 * unclipped action the rule uses (the state section readout.act.action). */
static void
test_plant_policy_action_clip(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    static const char text[] = "name: pol\n"
                               "dt: 0.01\n"
                               "seed: 9\n"
                               "inputs:\n"
                               "  - {name: x, size: 2, normalize: {tau: 0.1}}\n"
                               "cells:\n"
                               "  - {name: out, model: linear, size: 2}\n"
                               "projections:\n"
                               "  - {name: w, from: x, to: out, weight: {init: normal, std: 0.5}}\n"
                               "readouts:\n"
                               "  - {name: act, cell: out, clip: [-0.1, 0.2], scale: 3.0}\n"
                               "learning:\n"
                               "  algorithm: d_rtrl\n"
                               "  signal: reward\n"
                               "  policy: {readout: act, kind: gaussian, sigma: 0.5}\n";
    struct engine *eng = testmodel_compile_text(&tm, NULL, text, NULL, 0);
    if (!eng)
        fail_msg("compile failed: %s", tm.err);
    int sec = engine_state_find(eng, "readout.act.action"), n_clip = 0;
    assert_true(sec >= 0);
    for (int t = 0; t < 100; t++) {
        real x[2] = {(real)sin(0.1 * t), (real)(5.0 + cos(0.2 * t))};
        engine_set_input(eng, 0, x);
        engine_add_reward(eng, 0.1);
        engine_tick(eng);
        struct engine_section s;
        engine_state_section(eng, sec, &s);
        const real *a = s.data, *pa = engine_readout_action(eng, 0);
        for (int k = 0; k < 2; k++) {
            real c = a[k] < R(-0.1) ? R(-0.1) : (a[k] > R(0.2) ? R(0.2) : a[k]);
            assert_true(pa[k] == c * R(3.0));
            n_clip += a[k] != c;
        }
    }
    assert_true(n_clip > 10);
    engine_free(&eng);
    testmodel_fini(&tm);
}

/* The normalisation state carried by a snapshot into a fresh engine: the continuation is
 * the same bits. */
static void
test_plant_state_round_trip(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *a = testmodel_compile_text(&tm, NULL, plant_model, NULL, 0);
    struct engine *b = testmodel_compile_text(&tm, NULL, plant_model, NULL, 0);
    assert_non_null(a);
    assert_non_null(b);
    struct pl_rec *ra = calloc(1, sizeof *ra), *rb = calloc(1, sizeof *rb);
    assert_non_null(ra);
    assert_non_null(rb);
    engine_plant(a, ra); /* 200 ticks: m and s2 far from their initial values */
    for (int i = 0; i < engine_state_count(a); i++) {
        struct engine_section sa, sb;
        engine_state_section(a, i, &sa);
        int j = engine_state_find(b, sa.name);
        assert_true(j >= 0);
        engine_state_section(b, j, &sb);
        assert_int_equal(sa.bytes, sb.bytes);
        if (sa.part != ENGINE_PART_STRUCTURE)
            memcpy(sb.data, sa.data, sa.bytes);
    }
    struct engine_scalars sc;
    engine_state_get_scalars(a, &sc);
    engine_state_set_scalars(b, &sc);
    engine_plant(a, ra);
    engine_plant(b, rb);
    assert_memory_equal(ra, rb, sizeof *ra);
    free(ra);
    free(rb);
    engine_free(&a);
    engine_free(&b);
    testmodel_fini(&tm);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plant_hand_checked),
        cmocka_unit_test(test_plant_transforms_and_clip),
        cmocka_unit_test(test_plant_policy_action_clip),
        cmocka_unit_test(test_plant_state_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
