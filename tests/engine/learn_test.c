/* Learning tasks of issue 4, run online through the engine API (engine_set_input,
 * engine_add_spikes, engine_set_target*, engine_add_reward, engine_tick,
 * engine_readout_action), seeds fixed, learning curves printed:
 *  (a) a recurrent ALIF network with a leaky readout learns evidence accumulation with
 *      es_d_rtrl: two spike channels with Poisson-like rates during a cue period, then a
 *      decision window with a cross_entropy target; >= 90% correct on held-out trials;
 *  (b) a 2-layer GRU learns a leaky integrator of a noise stream (d_rtrl, mse): the loss
 *      with learning off falls >= 10x from the untrained network's;
 *  (c) the reward signal alone (softmax policy, dense shaped reward) teaches a spiking
 *      (LIF) network a two-choice task from chance to >= 85% correct.
 * Meant for the float -O2 build; each task takes a few seconds (limit: 60 s each).
 * The task streams come from the tests' own RNG (seed printed; ETRACE_SEED=N replays). */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkdtemp, strdup, clock_gettime */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "real.h"
#include "../support/testmodel.h"

static uint64_t g_seed;

static int
setup(void **state)
{
    (void)state;
    engine_set_fp_env();
    g_seed = testmodel_seed("learn_test", 2026);
    return 0;
}

/* Wall-clock seconds (the test's own timing; the engine reads no clock). */
static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- (a) evidence accumulation ------------------------------------------------------ */

enum {
    EA_PER_CH = 10,    /* input neurons per channel */
    EA_CUE = 50,       /* ticks of evidence */
    EA_DECIDE = 10,    /* ticks of the decision window (targets) */
    EA_TRAIN = 2000,   /* training trials */
    EA_TEST = 400,     /* held-out trials, learning off */
    EA_LR_EVERY = 700, /* lr *= 0.3 every this many trials (engine_set_lr) */
    EA_REPORT = 100    /* curve period in trials */
};

/* Spike probabilities per tick of the two channels' neurons: the evidence. Over the cue
 * the expected counts are 25 vs 12.5 (std ~ 6 of the difference): an ideal observer of
 * the counts is right ~98% of the time. */
static const double EA_HI = 0.05, EA_LO = 0.025;

static const char EA_MODEL[] =
    "name: evidence\n"
    "dt: 1.0e-3\n"
    "seed: 21\n"
    "inputs:\n"
    "  - {name: cue, size: 20, kind: spikes}\n"
    "cells:\n"
    "  - name: hidden\n"
    "    model: alif\n"
    "    size: 64\n"
    "    params: {tau: 20.0e-3, tau_b: 200.0e-3, beta: 0.2, v_th: 1.0, reset: soft}\n"
    "    surrogate: {kind: relu, alpha: 0.3, width: 1.0}\n"
    "  - name: out\n"
    "    model: leaky_readout\n"
    "    size: 2\n"
    "    params: {tau: 50.0e-3}\n"
    "projections:\n"
    "  - name: w_in\n"
    "    from: [cue, hidden]\n"
    "    to: hidden.delta\n"
    "    weight: {init: kaiming_normal, scale: 1.0}\n"
    "    bias: {init: constant, value: 0.02}\n"
    "  - name: w_out\n"
    "    from: hidden\n"
    "    to: out\n"
    "    weight: {init: kaiming_normal, scale: 0.1}\n"
    "    bias: {init: zeros}\n"
    "readouts:\n"
    "  - {name: decision, cell: out}\n"
    "learning:\n"
    "  algorithm: es_d_rtrl\n"
    "  decay_or_rank: 0.98\n"
    "  signal: target\n"
    "  loss: cross_entropy\n"
    "  optimizer: {kind: adam, lr: 3.0e-3}\n"
    "  update_every: 60\n";

/* One trial: channel `cls` fires at rate hi, the other at lo, for EA_CUE ticks, then
 * EA_DECIDE silent ticks with the class as target (when learning). Returns 1 when the
 * readout's argmax at the last tick is the class; adds the mean loss to *loss.
 * A trial is update_every = 60 ticks and trials start at tick 0, so the optimizer steps
 * once per trial, after its last tick: the decision read here is made before the step
 * that learns from it (with a step every tick, the target of the first decision ticks
 * would already move the readout of the last one, flattering the online accuracy). */
static int
ea_trial(struct engine *eng, struct testmodel_rng *r, int cls, double *loss)
{
    engine_reset(eng, 1, 1);
    for (int t = 0; t < EA_CUE; t++) {
        int32_t idx[2 * EA_PER_CH];
        int n = 0;
        for (int ch = 0; ch < 2; ch++)
            for (int j = 0; j < EA_PER_CH; j++)
                if (testmodel_rng_uniform(r) < (ch == cls ? EA_HI : EA_LO))
                    idx[n++] = ch * EA_PER_CH + j;
        engine_add_spikes(eng, 0, idx, n);
        engine_tick(eng);
    }
    double l = 0.0;
    for (int t = 0; t < EA_DECIDE; t++) {
        engine_set_target_class(eng, 0, cls);
        engine_tick(eng);
        l += engine_last_loss(eng);
    }
    *loss += l / EA_DECIDE;
    const real *o = engine_readout_values(eng, 0);
    return (o[1] > o[0]) == (cls == 1);
}

static void
test_learn_evidence_accumulation_alif_es(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *eng = testmodel_compile_text(&tm, NULL, EA_MODEL, NULL, 0);
    assert_non_null(eng);
    struct testmodel_rng r;
    testmodel_rng_seed(&r, g_seed + 1);
    double t0 = now_s();
    int correct = 0;
    double loss = 0.0, first_loss = -1.0;
    int hidden = testmodel_cell(eng, "hidden");
    printf("[learn_test] (a) evidence accumulation, ALIF 64 + leaky readout, es_d_rtrl, "
           "adam (lr 3e-3, x0.3 every %d trials), one step per trial (update_every 60); "
           "%d-tick trials, rates %.3f vs %.3f\n",
           EA_LR_EVERY, EA_CUE + EA_DECIDE, EA_HI, EA_LO);
    for (int k = 1; k <= EA_TRAIN; k++) {
        int cls = testmodel_rng_uniform(&r) < 0.5;
        correct += ea_trial(eng, &r, cls, &loss);
        if (k % EA_LR_EVERY == 0) /* a step schedule, set between ticks as the daemon would */
            engine_set_lr(eng, engine_get_lr(eng) * 0.3);
        if (k % EA_REPORT == 0) {
            double rate = engine_cell_rate(eng, hidden);
            printf("[learn_test] (a) trials %5d  acc %5.1f%%  loss %.4f  rate %.3f/tick\n", k,
                   100.0 * correct / EA_REPORT, loss / EA_REPORT, rate);
            if (first_loss < 0.0)
                first_loss = loss / EA_REPORT;
            correct = 0;
            loss = 0.0;
        }
    }
    engine_set_learn(eng, ENGINE_LEARN_OFF);
    correct = 0;
    loss = 0.0;
    for (int k = 0; k < EA_TEST; k++) {
        int cls = testmodel_rng_uniform(&r) < 0.5;
        correct += ea_trial(eng, &r, cls, &loss);
    }
    double acc = (double)correct / EA_TEST;
    struct engine_counters c;
    engine_counters(eng, &c);
    printf("[learn_test] (a) held-out: acc %.1f%% loss %.4f (first %.4f) after %d trials "
           "(%d ticks, %llu steps, %llu refused, %llu resets) in %.1f s\n",
           100.0 * acc, loss / EA_TEST, first_loss, EA_TRAIN, EA_TRAIN * (EA_CUE + EA_DECIDE),
           (unsigned long long)c.steps, (unsigned long long)c.updates_refused,
           (unsigned long long)c.state_resets, now_s() - t0);
    assert_true(acc >= 0.90);
    engine_free(&eng);
    testmodel_fini(&tm);
}

/* ---- (b) a 2-layer GRU learns a leaky integrator ------------------------------------- */

enum { GI_TICKS = 100000, GI_REPORT = 5000, GI_EVAL = 5000 };

static const char GRU_MODEL[] = "name: gru2\n"
                                "dt: 1.0e-3\n"
                                "seed: 5\n"
                                "inputs:\n"
                                "  - {name: x, size: 1}\n"
                                "cells:\n"
                                "  - {name: g1, model: gru, size: 16}\n"
                                "  - {name: g2, model: gru, size: 16}\n"
                                "  - {name: out, model: linear, size: 1}\n"
                                "projections:\n"
                                "  - name: w_x1\n"
                                "    from: x\n"
                                "    to: g1[z,r,nx]\n"
                                "    weight: {init: xavier_uniform}\n"
                                "    bias: {init: zeros}\n"
                                "  - name: w_h1\n"
                                "    from: g1\n"
                                "    to: g1[z,r,nh]\n"
                                "    weight: {init: uniform, low: -0.2, high: 0.2}\n"
                                "    bias: {init: zeros}\n"
                                "  - name: w_x2\n"
                                "    from: g1\n"
                                "    to: g2[z,r,nx]\n"
                                "    weight: {init: xavier_uniform}\n"
                                "    bias: {init: zeros}\n"
                                "  - name: w_h2\n"
                                "    from: g2\n"
                                "    to: g2[z,r,nh]\n"
                                "    weight: {init: uniform, low: -0.2, high: 0.2}\n"
                                "    bias: {init: zeros}\n"
                                "  - name: w_out\n"
                                "    from: g2\n"
                                "    to: out\n"
                                "    weight: {init: xavier_uniform}\n"
                                "    bias: {init: zeros}\n"
                                "readouts:\n"
                                "  - {name: y, cell: out}\n"
                                "learning:\n"
                                "  algorithm: d_rtrl\n"
                                "  signal: target\n"
                                "  loss: mse\n"
                                "  optimizer: {kind: adam, lr: 3.0e-4}\n"
                                "  update_every: 1\n";

/* y^t = a y^{t-1} + sqrt(1 - a^2) x^t, x ~ N(0, 1): a leaky integrator over
 * 1 / (1 - a) = 20 ticks whose output has unit variance. */
struct integrator {
    double a, gain, y;
};

/* Runs n ticks of the stream; returns the mean loss. */
static double
gi_run(struct engine *eng, struct testmodel_rng *r, struct integrator *g, int n)
{
    double loss = 0.0;
    for (int t = 0; t < n; t++) {
        double xv = testmodel_rng_normal(r);
        g->y = g->a * g->y + g->gain * xv;
        real xr = (real)xv, yr = (real)g->y;
        engine_set_input(eng, 0, &xr);
        engine_set_target(eng, 0, &yr);
        engine_tick(eng);
        loss += engine_last_loss(eng);
    }
    return loss / n;
}

static void
test_learn_gru_two_layer_integrator(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *eng = testmodel_compile_text(&tm, NULL, GRU_MODEL, NULL, 0);
    assert_non_null(eng);
    struct testmodel_rng r;
    testmodel_rng_seed(&r, g_seed + 2);
    struct integrator g = {.a = 0.95, .gain = sqrt(1.0 - 0.95 * 0.95), .y = 0.0};
    double t0 = now_s();
    printf("[learn_test] (b) 2-layer GRU 16+16, d_rtrl, adam 3e-4: y = %.2f y + %.3f x\n", g.a,
           g.gain);
    /* The untrained network's loss, learning off, as the baseline. */
    engine_set_learn(eng, ENGINE_LEARN_OFF);
    double before = gi_run(eng, &r, &g, GI_EVAL);
    engine_set_learn(eng, ENGINE_LEARN_ON);
    double first = -1.0, last = -1.0;
    for (int t = GI_REPORT; t <= GI_TICKS; t += GI_REPORT) {
        last = gi_run(eng, &r, &g, GI_REPORT);
        if (first < 0.0)
            first = last;
        printf("[learn_test] (b) ticks %6d  mse %.4f\n", t, last);
    }
    engine_set_learn(eng, ENGINE_LEARN_OFF);
    double after = gi_run(eng, &r, &g, GI_EVAL);
    struct engine_counters c;
    engine_counters(eng, &c);
    printf("[learn_test] (b) learning off: mse %.4f untrained -> %.4f trained (%.1fx); while "
           "learning: first %d ticks %.4f -> last %.4f (%.1fx); %d ticks (%llu refused, %llu "
           "resets) in %.1f s\n",
           before, after, before / after, GI_REPORT, first, last, first / last, GI_TICKS,
           (unsigned long long)c.updates_refused, (unsigned long long)c.state_resets, now_s() - t0);
    assert_true(after * 10.0 <= before); /* the task's criterion: loss down >= 10x */
    assert_true(last * 5.0 <= first);    /* and it kept improving while learning */
    engine_free(&eng);
    testmodel_fini(&tm);
}

/* ---- (c) reward-only two-choice task ---------------------------------------------- */

enum { RC_TICKS = 40, RC_CHANCE = 100, RC_TRIALS = 1500, RC_REPORT = 100 };

static const char RC_MODEL[] = "name: choice\n"
                               "dt: 1.0e-3\n"
                               "seed: 9\n"
                               "inputs:\n"
                               "  - {name: cue, size: 2}\n"
                               "cells:\n"
                               "  - name: hidden\n"
                               "    model: lif\n"
                               "    size: 32\n"
                               "    params: {tau: 10.0e-3, v_th: 1.0, reset: soft}\n"
                               "  - name: out\n"
                               "    model: leaky_readout\n"
                               "    size: 2\n"
                               "    params: {tau: 10.0e-3}\n"
                               "projections:\n"
                               "  - name: w_in\n"
                               "    from: cue\n"
                               "    to: hidden.i\n"
                               "    weight: {init: kaiming_normal, scale: 2.0}\n"
                               "    bias: {init: constant, value: 0.9}\n"
                               "  - name: w_out\n"
                               "    from: hidden\n"
                               "    to: out\n"
                               "    weight: {init: normal, std: 0.01}\n"
                               "readouts:\n"
                               "  - {name: action, cell: out}\n"
                               "learning:\n"
                               "  algorithm: d_rtrl\n"
                               "  signal: reward\n"
                               "  policy: {readout: action, kind: softmax}\n"
                               "  tau_e: 0.02\n"
                               "  tau_baseline: 0.2\n"
                               "  optimizer: {kind: adam, lr: 1.0e-4}\n"
                               "  update_every: 1\n";

/* Runs n trials: cue one-hot on channel cls for RC_TICKS ticks, the policy's sampled
 * action rewarded +1 when it is cls, else -1, every tick (dense, shaped). Returns the
 * fraction of correct actions in the second half of each trial. sign -1 inverts the
 * reward (the control: the network must then learn the wrong answer). */
static double
rc_run(struct engine *eng, struct testmodel_rng *r, int n, double sign)
{
    int correct = 0, total = 0;
    for (int k = 0; k < n; k++) {
        int cls = testmodel_rng_uniform(r) < 0.5;
        real cue[2] = {cls == 0 ? R(1.0) : R(0.0), cls == 1 ? R(1.0) : R(0.0)};
        engine_reset(eng, 1, 0);
        for (int t = 0; t < RC_TICKS; t++) {
            engine_set_input(eng, 0, cue);
            engine_tick(eng);
            int act = (int)engine_readout_action(eng, 0)[0];
            engine_add_reward(eng, act == cls ? sign : -sign); /* for this tick's action */
            if (t >= RC_TICKS / 2) {
                correct += act == cls;
                total++;
            }
        }
    }
    return (double)correct / total;
}

static void
test_learn_reward_two_choice_lif(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *eng = testmodel_compile_text(&tm, NULL, RC_MODEL, NULL, 0);
    assert_non_null(eng);
    struct testmodel_rng r;
    testmodel_rng_seed(&r, g_seed + 3);
    int hidden = testmodel_cell(eng, "hidden");
    double t0 = now_s();
    printf("[learn_test] (c) two-choice, LIF 32 + leaky readout, reward only (softmax "
           "policy, +1/-1 per tick), d_rtrl, adam 1e-4\n");
    /* Chance: the same sampled policy with lr 0 (learning on, so actions are drawn). */
    double lr = engine_get_lr(eng);
    engine_set_lr(eng, 0.0);
    double chance = rc_run(eng, &r, RC_CHANCE, 1.0);
    engine_set_lr(eng, lr);
    printf("[learn_test] (c) untrained (lr 0): correct %5.1f%%\n", 100.0 * chance);
    (void)engine_cell_rate(eng, hidden);
    double acc = 0.0;
    for (int k = RC_REPORT; k <= RC_TRIALS; k += RC_REPORT) {
        acc = rc_run(eng, &r, RC_REPORT, 1.0);
        printf("[learn_test] (c) trials %5d  correct %5.1f%%  rate %.3f/tick\n", k, 100.0 * acc,
               engine_cell_rate(eng, hidden));
    }
    struct engine_counters c;
    engine_counters(eng, &c);
    printf("[learn_test] (c) correct %.1f%% untrained -> %.1f%% (last %d trials) after %d "
           "trials, %d ticks (%llu refused, %llu resets) in %.1f s\n",
           100.0 * chance, 100.0 * acc, RC_REPORT, RC_TRIALS, RC_TRIALS * RC_TICKS,
           (unsigned long long)c.updates_refused, (unsigned long long)c.state_resets, now_s() - t0);
    assert_true(chance > 0.35 && chance < 0.65); /* it starts at chance */
    assert_true(acc >= 0.85);
    engine_free(&eng);
    /* Control: the same network and stream with the reward inverted learns the opposite
     * choice, so it is the reward that teaches. */
    eng = testmodel_compile_text(&tm, NULL, RC_MODEL, NULL, 0);
    assert_non_null(eng);
    testmodel_rng_seed(&r, g_seed + 3);
    double inv = 0.0;
    for (int k = RC_REPORT; k <= RC_TRIALS / 2; k += RC_REPORT)
        inv = rc_run(eng, &r, RC_REPORT, -1.0);
    printf("[learn_test] (c) control, reward inverted: correct %.1f%% after %d trials\n",
           100.0 * inv, RC_TRIALS / 2);
    assert_true(inv <= 0.15);
    engine_free(&eng);
    testmodel_fini(&tm);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learn_evidence_accumulation_alif_es),
        cmocka_unit_test(test_learn_gru_two_layer_integrator),
        cmocka_unit_test(test_learn_reward_two_choice_lif),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
