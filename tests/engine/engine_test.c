/* Tests of daemon/engine/engine.c (engine.h): compile and tick as a whole.
 *  - every shipped model (every models/NAME.yaml) compiles and runs 1,000 learning ticks with
 * finite outputs; spiking cells spike (rates printed); zero allocations after compile;
 *  - zero allocations over 1,000 ticks for every rule (d_rtrl, es_d_rtrl, hybrid,
 *    instant), signal (mse and cross_entropy targets, softmax and gaussian rewards),
 *    optimizer (sgd, momentum, adam) and update_every (1, 3), on a model with every op;
 *  - a non-finite update is refused and counted, and changes nothing: a twin engine that
 *    skipped the update stays bitwise equal (weights, optimizer state, step count);
 *  - a cell driven to Inf is reset and counted, its tick is invalid;
 *  - time within a tick (DESIGN §2.1), shown as exact delays through linear cells;
 *  - learning off, learning-rate changes between ticks, reset of states and traces;
 *  - policy actions (argmax / o when frozen, sampled when learning); twin engines fed the
 *    same stream stay bitwise equal (determinism).
 * Files are found under $ETRACE_SRC (default "."). Randomized inputs use a fixed seed,
 * printed; ETRACE_SEED=N replays. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkdtemp, strdup, clock_gettime */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "engine.h"
#include "mem.h"
#include "real.h"
#include "../support/testmodel.h"

#if defined(REAL_DOUBLE)
#define HUGE_TARGET 1e200
#define HUGE_WEIGHT 1e300
#define HUGE_INPUT 1e300
#else
#define HUGE_TARGET 1e30
#define HUGE_WEIGHT 1e38
#define HUGE_INPUT 1e10
#endif

static uint64_t g_seed;

static int
setup(void **state)
{
    (void)state;
    engine_set_fp_env();
    g_seed = testmodel_seed("engine_test", 1234);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------- */

/* Every weight and bias of an engine, concatenated (malloc'd; caller frees). */
static real *
params_copy(const struct engine *eng, size_t *n_out)
{
    size_t n = 0;
    for (int p = 0; p < engine_n_projs(eng); p++) {
        struct engine_param_view v;
        engine_param(eng, p, &v);
        n += (size_t)v.count + (v.bias ? (size_t)v.out_size : 0);
    }
    real *buf = malloc((n + 1) * sizeof *buf);
    assert_non_null(buf);
    size_t k = 0;
    for (int p = 0; p < engine_n_projs(eng); p++) {
        struct engine_param_view v;
        engine_param(eng, p, &v);
        memcpy(buf + k, v.weight, (size_t)v.count * sizeof *buf);
        k += (size_t)v.count;
        if (v.bias) {
            memcpy(buf + k, v.bias, (size_t)v.out_size * sizeof *buf);
            k += (size_t)v.out_size;
        }
    }
    *n_out = n;
    return buf;
}

/* 1 when the two engines' parameters are bitwise equal. */
static int
params_equal(const struct engine *a, const struct engine *b)
{
    size_t na, nb;
    real *pa = params_copy(a, &na), *pb = params_copy(b, &nb);
    int eq = na == nb && memcmp(pa, pb, na * sizeof *pa) == 0;
    free(pa);
    free(pb);
    return eq;
}

/* 1 when the engine's parameters equal a copy taken earlier, bitwise. */
static int
params_unchanged(const struct engine *eng, const real *before, size_t n)
{
    size_t m;
    real *now = params_copy(eng, &m);
    int eq = m == n && memcmp(now, before, n * sizeof *now) == 0;
    free(now);
    return eq;
}

static int
readouts_equal(const struct engine *a, const struct engine *b)
{
    for (int r = 0; r < engine_n_readouts(a); r++)
        if (memcmp(engine_readout_values(a, r), engine_readout_values(b, r),
                   (size_t)engine_readout_size(a, r) * sizeof(real)) != 0)
            return 0;
    return 1;
}

static int
readouts_finite(const struct engine *eng)
{
    for (int r = 0; r < engine_n_readouts(eng); r++)
        if (!testmodel_all_finite(engine_readout_values(eng, r), engine_readout_size(eng, r)))
            return 0;
    return 1;
}

/* One tick's stimulus for any model: analog inputs uniform in [lo, hi) (or `level` when
 * lo == hi), spike inputs firing with probability 0.1, a target for every readout
 * (mse: a slow sine; cross_entropy: class t/50 % size) when `targets`, and a reward
 * shaped by the policy's action (1 for action 0, else 0; gaussian: -|a|) under reward. */
struct stim {
    struct testmodel_rng rng;
    double lo, hi;
    int targets;
    real buf[4096];
};

static void
stim_apply(struct stim *s, struct engine *eng, uint64_t t)
{
    const struct model_desc *d = engine_model(eng);
    for (int i = 0; i < engine_n_inputs(eng); i++) {
        int n = engine_input_size(eng, i);
        assert_true(n <= 4096);
        if (d->inputs[i].kind == MODEL_INPUT_SPIKES) {
            int32_t idx[4096];
            int k = 0;
            for (int j = 0; j < n; j++)
                if (testmodel_rng_uniform(&s->rng) < 0.1)
                    idx[k++] = j;
            engine_add_spikes(eng, i, idx, k);
            continue;
        }
        for (int j = 0; j < n; j++)
            s->buf[j] = (real)(s->lo + (s->hi - s->lo) * testmodel_rng_uniform(&s->rng));
        engine_set_input(eng, i, s->buf);
    }
    if (!s->targets || !d->learning.present)
        return;
    if (d->learning.signal == MODEL_SIGNAL_REWARD) {
        return; /* rewards follow the action: stim_reward after the tick */
    }
    for (int r = 0; r < engine_n_readouts(eng); r++) {
        int n = engine_readout_size(eng, r);
        if (d->learning.loss == MODEL_LOSS_CROSS_ENTROPY) {
            engine_set_target_class(eng, r, (int)((t / 50) % (uint64_t)n));
        } else {
            for (int j = 0; j < n; j++)
                s->buf[j] = (real)(0.5 * sin(0.01 * (double)t + j));
            engine_set_target(eng, r, s->buf);
        }
    }
}

/* A dense shaped reward for the action just taken (applied to the next tick). */
static void
stim_reward(struct engine *eng)
{
    const struct model_desc *d = engine_model(eng);
    if (!d->learning.present || d->learning.signal != MODEL_SIGNAL_REWARD)
        return;
    int r = d->learning.policy_readout;
    const real *a = engine_readout_action(eng, r);
    assert_non_null(a);
    if (d->learning.policy_kind == MODEL_POLICY_SOFTMAX) {
        engine_add_reward(eng, a[0] == R(0.0) ? 1.0 : 0.0);
    } else {
        double s = 0.0;
        for (int j = 0; j < engine_readout_size(eng, r); j++)
            s += fabs((double)a[j] - 0.3);
        engine_add_reward(eng, -s);
    }
}

/* Runs n ticks of the stimulus, checking finite outputs each tick. */
static void
run_ticks(struct engine *eng, struct stim *s, int n, const char *what)
{
    for (int k = 0; k < n; k++) {
        stim_apply(s, eng, engine_tick_count(eng));
        engine_tick(eng);
        if (!readouts_finite(eng))
            fail_msg("%s: non-finite readout at tick %llu", what,
                     (unsigned long long)engine_tick_count(eng) - 1);
        stim_reward(eng);
    }
}

/* ---- shipped models ------------------------------------------------------------------ */

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* mem_alloc: small blocks 64-byte aligned, blocks of 2 MiB and more on a 2 MiB boundary
 * (advised as huge pages), all whole, counted and freed through the wrapped allocator. */
static void
test_engine_mem_alignment(void **state)
{
    (void)state;
    struct mem_counter mc;
    mem_counter_init(&mc, NULL);
    static const size_t sizes[] = {1, 4096, (2u << 20) - 1, 2u << 20, (5u << 20) + 3};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        unsigned char *p = mem_alloc(&mc.mem, sizes[k]);
        assert_non_null(p);
        uintptr_t align = sizes[k] >= (2u << 20) ? (2u << 20) : 64;
        assert_int_equal((uintptr_t)p % align, 0);
        memset(p, 0xa5, sizes[k]); /* every byte is ours (ASan checks the bounds) */
        assert_int_equal(p[sizes[k] - 1], 0xa5);
        mem_free(&mc.mem, &p);
        assert_null(p);
    }
    assert_int_equal(mc.n_allocs, mc.n_frees);
    assert_int_equal(mc.live_bytes, 0);
}

static void
test_engine_shipped_models_run(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models", testmodel_src_dir());
    DIR *dp = opendir(dir);
    if (!dp) {
        printf("[engine_test] no %s: skipped\n", dir);
        skip();
    }
    char *names[256];
    int n_names = 0;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL && n_names < 256) {
        size_t len = strlen(de->d_name);
        if (len > 5 && strcmp(de->d_name + len - 5, ".yaml") == 0)
            names[n_names++] = strdup(de->d_name);
    }
    closedir(dp);
    qsort(names, (size_t)n_names, sizeof *names, cmp_str);
    assert_true(n_names > 0);
    for (int i = 0; i < n_names; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct mem_counter mc;
        mem_counter_init(&mc, NULL);
        struct engine *eng = testmodel_compile_file(NULL, path, &mc.mem, 0);
        if (!eng)
            fail_msg("%s does not compile", path);
        const struct model_desc *d = engine_model(eng);
        long calls = mc.n_calls;
        struct stim s = {.lo = 0.0, .hi = 1.0, .targets = 1};
        testmodel_rng_seed(&s.rng, g_seed + (uint64_t)i);
        for (int c = 0; c < engine_n_cells(eng); c++)
            (void)engine_cell_rate(eng, c); /* start the rate window at tick 0 */
        run_ticks(eng, &s, 1000, names[i]);
        assert_int_equal(mc.n_calls, calls); /* nothing allocated by 1,000 ticks */
        struct engine_counters ct;
        engine_counters(eng, &ct);
        printf("[engine_test] %-24s learn %-3s steps %4llu resets %llu refused %llu |", names[i],
               engine_get_learn(eng) == ENGINE_LEARN_ON ? "on" : "off",
               (unsigned long long)ct.steps, (unsigned long long)ct.state_resets,
               (unsigned long long)ct.updates_refused);
        for (int c = 0; c < engine_n_cells(eng); c++) {
            double rate = engine_cell_rate(eng, c);
            if (rate < 0.0)
                continue;
            printf(" %s %.1f Hz (%.3f/tick)", d->cells[c].name, rate / d->dt, rate);
            if (!(rate > 0.0))
                fail_msg("%s: spiking cell %s never spiked in 1,000 ticks", names[i],
                         d->cells[c].name);
        }
        printf("\n");
        assert_int_equal(ct.state_resets, 0);
        if (d->learning.present && d->learning.signal != MODEL_SIGNAL_NONE)
            assert_true(ct.steps > 0);
        engine_free(&eng);
        assert_int_equal(mc.n_allocs, mc.n_frees);
        assert_int_equal(mc.live_bytes, 0);
        free(names[i]);
    }
}

/* The tick makes no system call (DESIGN §1): a child compiles each shipped model, then
 * enters seccomp's strict mode (only read, write, _exit and sigreturn allowed; any other
 * call kills it with SIGKILL), runs 1,000 learning ticks, writes one byte to a pipe and
 * leaves through the raw exit call. The parent requires the byte and a clean exit. */
static void
test_engine_tick_makes_no_system_call(void **state)
{
    (void)state;
#if defined(__SANITIZE_THREAD__)
    /* ThreadSanitizer's runtime keeps a thread of its own and makes calls of its own. */
    printf("[engine_test] seccomp check skipped under ThreadSanitizer\n");
    skip();
#endif
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models", testmodel_src_dir());
    DIR *dp = opendir(dir);
    if (!dp)
        skip();
    struct dirent *de;
    int n = 0;
    while ((de = readdir(dp)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len <= 5 || strcmp(de->d_name + len - 5, ".yaml") != 0)
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(stdout);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            struct engine *eng = testmodel_compile_file(NULL, path, NULL, 0);
            struct stim st = {.lo = 0.0, .hi = 1.0, .targets = 1};
            testmodel_rng_seed(&st.rng, g_seed + 77);
            if (!eng)
                _exit(3);
            engine_set_fp_env();
            if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0)
                _exit(4);
            for (int t = 0; t < 1000; t++) {
                stim_apply(&st, eng, engine_tick_count(eng));
                engine_tick(eng);
                stim_reward(eng);
            }
            char ok = 'k';
            if (write(fds[1], &ok, 1) != 1)
                syscall(SYS_exit, 5);
            syscall(SYS_exit, 0); /* not exit_group: strict mode allows only exit */
        }
        close(fds[1]);
        char got = 0;
        ssize_t r = read(fds[0], &got, 1);
        close(fds[0]);
        int status = 0;
        for (int w = 0; waitpid(pid, &status, WNOHANG) != pid; w++) {
            if (w == 30000) /* 30 s: a child stuck in its runtime */
                kill(pid, SIGKILL);
            usleep(1000);
        }
        if (r != 1 || got != 'k' || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("%s: the child %s (a system call in the tick?)", de->d_name,
                     WIFSIGNALED(status) ? "was killed" : "failed");
        n++;
    }
    closedir(dp);
    printf("[engine_test] %d shipped models: 1,000 ticks each under seccomp strict mode\n", n);
    assert_true(n > 0);
}

/* FTZ and DAZ (DESIGN Conventions): engine_set_fp_env sets both bits, and then a
 * subnormal input reads as zero and a subnormal result is flushed. */
static void
test_engine_fp_env_flushes_subnormals(void **state)
{
    (void)state;
#if defined(__x86_64__) || defined(__i386__)
    unsigned saved = _mm_getcsr();
    _mm_setcsr(saved & ~0x8040u);
    volatile float tiny = 1.0e-39f, one = 1.0f, small = 1.0e-30f;
    assert_true(tiny * one != 0.0f); /* subnormals are live before */
    engine_set_fp_env();
    assert_int_equal(_mm_getcsr() & 0x8040u, 0x8040u);
    assert_true(tiny * one == 0.0f);       /* DAZ: the subnormal input reads as 0 */
    assert_true(small * 1.0e-10f == 0.0f); /* FTZ: a subnormal result is 0 */
    _mm_setcsr(saved);
#else
    skip();
#endif
}

/* ---- zero allocations for every rule ------------------------------------------------ */

static const char RULES_MODEL[] =
    "name: rules\n"
    "dt: 1.0e-3\n"
    "seed: 3\n"
    "inputs:\n"
    "  - {name: x, size: 6}\n"
    "  - {name: s, size: 5, kind: spikes}\n"
    "cells:\n"
    "  - name: h\n"
    "    model: alif\n"
    "    size: 12\n"
    "    params: {beta: 0.3}\n"
    "  - name: g\n"
    "    model: gru\n"
    "    size: 5\n"
    "  - name: out\n"
    "    model: leaky_readout\n"
    "    size: 3\n"
    "projections:\n"
    "  - name: w_in\n"
    "    from: [x, s]\n"
    "    to: h.i\n"
    "    weight: {init: kaiming_normal, scale: 2.0}\n"
    "    bias: {init: constant, value: 1.0}\n"
    "    learn: %s\n"
    "  - name: w_rec\n"
    "    from: h\n"
    "    to: h.delta\n"
    "    op: sparse\n"
    "    weight: {prob: 0.3, seed: 5, init: normal, std: 0.1}\n"
    "    learn: %s\n"
    "  - name: w_g\n"
    "    from: [x, h]\n"
    "    to: g[z,r,nx]\n"
    "    weight: {init: xavier_uniform}\n"
    "    bias: {init: zeros}\n"
    "  - name: w_gh\n"
    "    from: g\n"
    "    to: g.nh\n"
    "    op: elemwise\n"
    "    weight: {init: ones}\n"
    "  - name: w_out\n"
    "    from: [h, g]\n"
    "    to: out\n"
    "    weight: {init: kaiming_normal, scale: 0.3}\n"
    "    bias: {init: zeros}\n"
    "    learn: %s\n"
    "readouts:\n"
    "  - {name: y, cell: out}\n"
    "learning:\n"
    "  algorithm: %s\n"
    "  decay_or_rank: 0.9\n"
    "  signal: %s\n"
    "%s"
    "  optimizer: {kind: %s, lr: 1.0e-3, weight_decay: 1.0e-4, clip_norm: 1.0}\n"
    "  update_every: %d\n";

static void
test_engine_no_alloc_every_rule(void **state)
{
    (void)state;
    static const char *const algos[] = {"d_rtrl", "es_d_rtrl", "hybrid", "instant"};
    static const char *const signals[] = {"mse", "cross_entropy", "softmax", "gaussian"};
    static const char *const optims[] = {"sgd", "momentum", "adam"};
    static const int ks[] = {1, 3};
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    int n_runs = 0;
    for (int a = 0; a < 4; a++)
        for (int sg = 0; sg < 4; sg++)
            for (int o = 0; o < 3; o++)
                for (int k = 0; k < 2; k++) {
                    char text[8192], extra[256];
                    int instant = a == 3;
                    const char *learn = instant ? "instant" : "trace";
                    if (sg < 2)
                        snprintf(extra, sizeof extra, "  loss: %s\n", signals[sg]);
                    else
                        snprintf(extra, sizeof extra,
                                 "  policy: {readout: y, kind: %s, sigma: 0.2}\n"
                                 "  tau_e: 0.05\n  tau_baseline: 0.5\n",
                                 signals[sg]);
                    snprintf(text, sizeof text, RULES_MODEL, learn, learn, learn,
                             instant ? "es_d_rtrl" : algos[a], sg < 2 ? "target" : "reward", extra,
                             optims[o], ks[k]);
                    char what[128];
                    snprintf(what, sizeof what, "%s/%s/%s/K=%d", algos[a], signals[sg], optims[o],
                             ks[k]);
                    struct mem_counter mc;
                    mem_counter_init(&mc, NULL);
                    struct engine *eng = testmodel_compile_text(&tm, NULL, text, &mc.mem, 0);
                    if (!eng)
                        fail_msg("%s: %s", what, tm.err);
                    long calls = mc.n_calls;
                    struct stim s = {.lo = 0.0, .hi = 1.0, .targets = 1};
                    testmodel_rng_seed(&s.rng, g_seed + 77);
                    run_ticks(eng, &s, 1000, what);
                    if (mc.n_calls != calls)
                        fail_msg("%s: %ld allocations in 1,000 ticks", what, mc.n_calls - calls);
                    struct engine_counters ct;
                    engine_counters(eng, &ct);
                    if (ct.steps + ct.updates_refused != (uint64_t)(1000 / ks[k]))
                        fail_msg("%s: %llu steps + %llu refused, expected %d", what,
                                 (unsigned long long)ct.steps,
                                 (unsigned long long)ct.updates_refused, 1000 / ks[k]);
                    if (ct.steps == 0 || ct.state_resets != 0)
                        fail_msg("%s: steps %llu resets %llu", what, (unsigned long long)ct.steps,
                                 (unsigned long long)ct.state_resets);
                    /* Weights moved (every rule reaches w_out). */
                    int p_out = testmodel_proj(eng, "w_out");
                    struct engine_norms nm;
                    engine_proj_norms(eng, p_out, &nm);
                    if (!(nm.drift > 0.0))
                        fail_msg("%s: w_out did not learn", what);
                    engine_free(&eng);
                    assert_int_equal(mc.live_bytes, 0);
                    n_runs++;
                }
    printf("[engine_test] zero allocations over 1,000 ticks in %d rule/signal/optimizer/K "
           "combinations\n",
           n_runs);
    testmodel_fini(&tm);
}

/* ---- refused updates ---------------------------------------------------------------- */

static const char LINEAR_MODEL[] = "name: lin\n"
                                   "dt: 1.0e-3\n"
                                   "seed: 11\n"
                                   "inputs:\n"
                                   "  - {name: x, size: 4}\n"
                                   "cells:\n"
                                   "  - name: h\n"
                                   "    model: leaky_readout\n"
                                   "    size: 6\n"
                                   "    params: {tau: 5.0e-3}\n"
                                   "  - name: out\n"
                                   "    model: linear\n"
                                   "    size: 2\n"
                                   "projections:\n"
                                   "  - name: w_in\n"
                                   "    from: x\n"
                                   "    to: h\n"
                                   "    weight: {init: normal, std: 0.3}\n"
                                   "    bias: {init: zeros}\n"
                                   "  - name: w_hh\n"
                                   "    from: h\n"
                                   "    to: h\n"
                                   "    weight: {init: normal, std: 0.02}\n"
                                   "  - name: w_out\n"
                                   "    from: h\n"
                                   "    to: out\n"
                                   "    weight: {init: normal, std: 0.3}\n"
                                   "readouts:\n"
                                   "  - {name: y, cell: out}\n"
                                   "learning:\n"
                                   "  algorithm: %s\n"
                                   "  decay_or_rank: 0.9\n"
                                   "  optimizer: {kind: %s, lr: 2.0e-3}\n"
                                   "  update_every: %d\n";

/* Twins: two engines compiled from LINEAR_MODEL with the same rule, optimizer and K, which
 * stay bitwise equal as long as they are driven alike. */
static void
linear_twins(struct testmodel *tm, const char *algo, const char *optim, int K, struct engine **a,
             struct engine **b)
{
    char text[4096];
    snprintf(text, sizeof text, LINEAR_MODEL, algo, optim, K);
    *a = testmodel_compile_text(tm, NULL, text, NULL, 0);
    *b = testmodel_compile_text(tm, NULL, text, NULL, 0);
    assert_non_null(*a);
    assert_non_null(*b);
}

enum refuse_how { REFUSE_LR_NAN, REFUSE_HUGE_TARGET };

/* Engine A has a step refused at the step ending at tick T; twin B has learning off over
 * that step's K ticks instead (so it accumulates nothing, as A's discarded sum). Before
 * and after, both run the same inputs and targets with learning on: they must stay
 * bitwise equal, which holds only if the refusal left weights, m, v and the step count
 * untouched. */
static void
refuse_case(struct testmodel *tm, const char *algo, const char *optim, int K, enum refuse_how how)
{
    struct engine *a, *b;
    linear_twins(tm, algo, optim, K, &a, &b);
    struct stim sa = {.lo = 0.0, .hi = 1.0, .targets = 1};
    struct stim sb = sa;
    testmodel_rng_seed(&sa.rng, g_seed + 5);
    sb.rng = sa.rng;
    const int T = 10 * K - 1; /* a step ends here: (T + 1) % K == 0 */
    double lr = engine_get_lr(a);
    size_t n_before = 0;
    real *before = NULL;
    struct engine_counters ca0;
    for (int t = 0; t < T + 40; t++) {
        int in_window = t > T - K && t <= T;
        if (t == T - K + 1) {
            free(before);
            before = params_copy(a, &n_before);
            engine_counters(a, &ca0);
            engine_set_learn(b, ENGINE_LEARN_OFF);
            if (how == REFUSE_LR_NAN)
                engine_set_lr(a, NAN);
        }
        stim_apply(&sa, a, (uint64_t)t);
        stim_apply(&sb, b, (uint64_t)t);
        if (how == REFUSE_HUGE_TARGET && t == T) {
            real big[2] = {(real)HUGE_TARGET, (real)-HUGE_TARGET};
            engine_set_target(a, 0, big);
        }
        engine_tick(a);
        engine_tick(b);
        if (t == T) {
            struct engine_counters ca;
            engine_counters(a, &ca);
            assert_int_equal(ca.updates_refused, ca0.updates_refused + 1);
            assert_int_equal(ca.steps, ca0.steps);
            if (!params_unchanged(a, before, n_before))
                fail_msg("%s/%s/K=%d/%d: a refused step changed the weights", algo, optim, K, how);
            engine_set_lr(a, lr);
            engine_set_learn(b, ENGINE_LEARN_ON);
        }
        if (!in_window && t != T && !readouts_equal(a, b))
            fail_msg("%s/%s/K=%d/%d: outputs differ at tick %d", algo, optim, K, how, t);
        if (!params_equal(a, b))
            fail_msg("%s/%s/K=%d/%d: weights differ after tick %d (optimizer state or step "
                     "count changed by the refused step)",
                     algo, optim, K, how, t);
    }
    struct engine_counters ca, cb;
    engine_counters(a, &ca);
    engine_counters(b, &cb);
    if (ca.steps != cb.steps || ca.updates_refused != 1 || cb.updates_refused != 0 ||
        ca.state_resets != 0 || cb.state_resets != 0)
        fail_msg("%s/%s/K=%d/%d: steps %llu/%llu refused %llu/%llu resets %llu/%llu", algo, optim,
                 K, how, (unsigned long long)ca.steps, (unsigned long long)cb.steps,
                 (unsigned long long)ca.updates_refused, (unsigned long long)cb.updates_refused,
                 (unsigned long long)ca.state_resets, (unsigned long long)cb.state_resets);
    free(before);
    engine_free(&a);
    engine_free(&b);
}

static void
test_engine_refuses_nan_update(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    static const char *const optims[] = {"sgd", "momentum", "adam"};
    for (int o = 0; o < 3; o++)
        for (int K = 1; K <= 3; K += 2) {
            refuse_case(&tm, "d_rtrl", optims[o], K, REFUSE_LR_NAN);
            refuse_case(&tm, "es_d_rtrl", optims[o], K, REFUSE_LR_NAN);
        }
    /* A finite but enormous gradient whose adam second moment overflows. */
    refuse_case(&tm, "d_rtrl", "adam", 1, REFUSE_HUGE_TARGET);
    refuse_case(&tm, "es_d_rtrl", "adam", 3, REFUSE_HUGE_TARGET);
    testmodel_fini(&tm);
}

/* ---- a cell driven to Inf ----------------------------------------------------------- */

static void
test_engine_inf_cell_reset(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    char text[4096];
    snprintf(text, sizeof text, LINEAR_MODEL, "d_rtrl", "sgd", 1);
    struct engine *eng = testmodel_compile_text(&tm, NULL, text, NULL, 0);
    assert_non_null(eng);
    struct stim s = {.lo = 0.0, .hi = 1.0, .targets = 1};
    testmodel_rng_seed(&s.rng, g_seed + 9);
    run_ticks(eng, &s, 20, "inf warm-up");
    assert_int_equal(engine_last_valid(eng), 1);
    int p_in = testmodel_proj(eng, "w_in");
    struct engine_param_view v;
    engine_param(eng, p_in, &v);
    real *w = engine_weight_mut(eng, p_in);
    size_t nb = (size_t)v.count * sizeof(real);
    real *saved = malloc(nb);
    assert_non_null(saved);
    memcpy(saved, w, nb);
    w[0] = (real)HUGE_WEIGHT; /* row 0 = input x[0], column 0 = h[0] */
    real xin[4] = {(real)HUGE_INPUT, R(0.5), R(0.5), R(0.5)};
    engine_set_input(eng, 0, xin);
    real tgt[2] = {R(0.1), R(0.2)};
    engine_set_target(eng, 0, tgt);
    struct engine_counters c0, c1;
    engine_counters(eng, &c0);
    engine_tick(eng);
    engine_counters(eng, &c1);
    assert_int_equal(engine_last_valid(eng), 0);
    assert_true(c1.state_resets >= c0.state_resets + 1);
    /* The reset cell shows its initial output (0); the readout cell, which read the Inf
     * in this same tick, was reset too; nothing non-finite is left behind. */
    assert_true(readouts_finite(eng));
    const real *y = engine_readout_values(eng, 0);
    assert_true(y[0] == R(0.0) && y[1] == R(0.0));
    struct engine_norms nm;
    engine_proj_norms(eng, p_in, &nm);
    assert_true(nm.trace == 0.0); /* traces of projections into the reset cell are zeroed */
    /* The gradient of that tick was non-finite: the step is refused, weights as set. */
    assert_int_equal(c1.updates_refused, c0.updates_refused + 1);
    assert_true(w[0] == (real)HUGE_WEIGHT);
    printf("[engine_test] Inf cell: state_resets %llu -> %llu, valid 0, refused %llu\n",
           (unsigned long long)c0.state_resets, (unsigned long long)c1.state_resets,
           (unsigned long long)c1.updates_refused);
    memcpy(w, saved, nb);
    run_ticks(eng, &s, 20, "inf recovery");
    assert_int_equal(engine_last_valid(eng), 1);
    struct engine_counters c2;
    engine_counters(eng, &c2);
    assert_int_equal(c2.state_resets, c1.state_resets);
    free(saved);
    engine_free(&eng);
    testmodel_fini(&tm);
}

/* ---- time within a tick (DESIGN §2.1) ------------------------------------------------- */

/* Linear cells with identity weights. x^t = t + 1.
 *   now:   reads x                    -> x^t           (an input: this tick)
 *   fwd:   reads now (listed before)  -> x^t           (delay 0)
 *   r3..r1 listed in reverse order, r1 reads x, r2 reads r1, r3 reads r2: each reads a
 *          cell listed after it, so the previous tick: r3^t = x^{t-2}
 *   self:  reads [x, self]            -> x^t + self^{t-1} (running sum)
 * Every value is a small integer: exact in float. */
static const char TIME_MODEL[] =
    "name: timing\n"
    "dt: 1.0e-3\n"
    "inputs:\n"
    "  - {name: x, size: 1}\n"
    "cells:\n"
    "  - {name: now, model: linear, size: 1}\n"
    "  - {name: fwd, model: linear, size: 1}\n"
    "  - {name: r3, model: linear, size: 1}\n"
    "  - {name: r2, model: linear, size: 1}\n"
    "  - {name: r1, model: linear, size: 1}\n"
    "  - {name: self, model: linear, size: 1}\n"
    "projections:\n"
    "  - {name: p_now, from: x, to: now, weight: {init: ones}}\n"
    "  - {name: p_fwd, from: now, to: fwd, weight: {init: ones}}\n"
    "  - {name: p_r3, from: r2, to: r3, weight: {init: ones}}\n"
    "  - {name: p_r2, from: r1, to: r2, weight: {init: ones}}\n"
    "  - {name: p_r1, from: x, to: r1, weight: {init: ones}}\n"
    "  - {name: p_self, from: [x, self], to: self, weight: {init: ones}}\n"
    "readouts:\n"
    "  - {name: now, cell: now}\n"
    "  - {name: fwd, cell: fwd}\n"
    "  - {name: r3, cell: r3}\n"
    "  - {name: r2, cell: r2}\n"
    "  - {name: r1, cell: r1}\n"
    "  - {name: self, cell: self}\n";

static void
test_engine_time_within_tick(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *eng = testmodel_compile_text(&tm, NULL, TIME_MODEL, NULL, 0);
    assert_non_null(eng);
    double sum = 0.0;
    for (int t = 0; t < 20; t++) {
        real x = (real)(t + 1);
        engine_set_input(eng, 0, &x);
        engine_tick(eng);
        sum += t + 1;
        double want[6] = {t + 1.0, t + 1.0, t >= 2 ? t - 1.0 : 0.0, t >= 1 ? (double)t : 0.0,
                          t + 1.0, sum};
        for (int r = 0; r < 6; r++) {
            double got = (double)engine_readout_values(eng, r)[0];
            if (got != want[r])
                fail_msg("tick %d readout %s: %g, expected %g", t,
                         engine_model(eng)->readouts[r].name, got, want[r]);
        }
    }
    engine_free(&eng);
    testmodel_fini(&tm);
}

/* DESIGN §2.1: at tick 0 "the previous tick's output" is the output of the initial states,
 * here v0 * 10 + 1 = 21, not 0; a state reset restores it. */
static const char INIT_OUT_MODEL[] =
    "name: init_out\n"
    "dt: 1.0e-3\n"
    "inputs:\n  - {name: x, size: 1}\n"
    "cells:\n"
    "  - {name: out, model: linear, size: 3}\n"
    "  - {name: a, model: custom, size: 3, states: {v: 2.0}, slots: [i], update: {v: v + i}, "
    "output: v * 10 + 1}\n"
    "projections:\n"
    "  - {name: p, from: a, to: out, op: elemwise, weight: {init: ones}}\n"
    "  - {name: q, from: x, to: a.i, weight: {init: ones}}\n"
    "readouts:\n  - {name: y, cell: out}\n";

static void
test_engine_initial_output_is_read_at_tick0(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *eng = testmodel_compile_text(&tm, NULL, INIT_OUT_MODEL, NULL, 0);
    assert_non_null(eng);
    real x = R(1.0);
    engine_set_input(eng, 0, &x);
    for (int round = 0; round < 2; round++) {
        engine_tick(eng); /* out reads a's output of the initial state */
        assert_true(engine_readout_values(eng, 0)[0] == R(21.0));
        engine_tick(eng); /* ... then a's output after one tick: v = 3 */
        assert_true(engine_readout_values(eng, 0)[2] == R(31.0));
        engine_reset(eng, 1, 0);
    }
    engine_free(&eng);
    testmodel_fini(&tm);
}

/* ---- learning off, lr, reset ------------------------------------------------------- */

static void
test_engine_learning_off_keeps_weights_traces_move(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    for (int algo = 0; algo < 2; algo++) {
        char text[4096];
        snprintf(text, sizeof text, LINEAR_MODEL, algo ? "es_d_rtrl" : "d_rtrl", "adam", 1);
        struct engine *eng = testmodel_compile_text(&tm, NULL, text, NULL, 0);
        assert_non_null(eng);
        assert_int_equal(engine_get_learn(eng), ENGINE_LEARN_ON);
        engine_set_learn(eng, ENGINE_LEARN_OFF);
        assert_int_equal(engine_get_learn(eng), ENGINE_LEARN_OFF);
        size_t n;
        real *w0 = params_copy(eng, &n);
        struct stim s = {.lo = 0.0, .hi = 1.0, .targets = 1};
        testmodel_rng_seed(&s.rng, g_seed + 21);
        double last_trace = -1.0;
        for (int t = 0; t < 100; t++) {
            run_ticks(eng, &s, 1, "learning off");
            struct engine_norms nm;
            engine_proj_norms(eng, testmodel_proj(eng, "w_in"), &nm);
            assert_true(nm.trace > 0.0);
            assert_true(nm.trace != last_trace); /* the traces advance every tick */
            last_trace = nm.trace;
        }
        assert_true(params_unchanged(eng, w0, n));
        struct engine_counters c;
        engine_counters(eng, &c);
        assert_int_equal(c.steps, 0);
        assert_int_equal(c.es_n, 100); /* the ES counter keeps counting */
        engine_set_learn(eng, ENGINE_LEARN_ON);
        run_ticks(eng, &s, 5, "learning back on");
        assert_false(params_unchanged(eng, w0, n));
        engine_counters(eng, &c);
        assert_int_equal(c.steps, 5);
        free(w0);
        engine_free(&eng);
    }
    testmodel_fini(&tm);
}

/* lr changes take effect at the next step: lr 0 freezes sgd exactly, and doubling lr
 * doubles the sgd step (to rounding) against a twin that kept it. */
static void
test_engine_lr_change_takes_effect(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *a, *b;
    linear_twins(&tm, "d_rtrl", "sgd", 1, &a, &b);
    struct stim sa = {.lo = 0.0, .hi = 1.0, .targets = 1}, sb;
    testmodel_rng_seed(&sa.rng, g_seed + 31);
    sb = sa;
    run_ticks(a, &sa, 30, "lr a");
    run_ticks(b, &sb, 30, "lr b");
    assert_true(params_equal(a, b));
    double lr = engine_get_lr(a);
    assert_true(lr == 2e-3);
    engine_set_lr(a, 0.0);
    assert_true(engine_get_lr(a) == 0.0);
    size_t n;
    real *w = params_copy(a, &n);
    run_ticks(a, &sa, 10, "lr 0");
    assert_true(params_unchanged(a, w, n)); /* w - 0 * g == w */
    free(w);
    /* Doubling: one step each from equal weights and equal state. */
    engine_set_lr(a, lr);
    sb = sa;
    engine_free(&b);
    engine_free(&a);
    linear_twins(&tm, "d_rtrl", "sgd", 1, &a, &b);
    testmodel_rng_seed(&sa.rng, g_seed + 32);
    sb = sa;
    run_ticks(a, &sa, 30, "lr a2");
    run_ticks(b, &sb, 30, "lr b2");
    real *w0 = params_copy(a, &n);
    engine_set_lr(a, 2.0 * lr);
    run_ticks(a, &sa, 1, "lr 2x");
    run_ticks(b, &sb, 1, "lr 1x");
    real *wa = params_copy(a, &n), *wb = params_copy(b, &n);
    double worst = 0.0, biggest = 0.0;
    for (size_t i = 0; i < n; i++) {
        double da = (double)wa[i] - (double)w0[i], db = (double)wb[i] - (double)w0[i];
        worst = fmax(worst, fabs(da - 2.0 * db));
        biggest = fmax(biggest, fabs(db));
    }
    assert_true(biggest > 0.0);
    /* float rounding of w - lr g near |w| ~ 1: a few ulps of w */
    assert_true(worst <= 8.0 * (double)REAL_EPS * 2.0 + 1e-3 * biggest);
    free(w0);
    free(wa);
    free(wb);
    engine_free(&a);
    engine_free(&b);
    testmodel_fini(&tm);
}

static void
test_engine_reset_states_and_traces(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *a, *b;
    linear_twins(&tm, "es_d_rtrl", "adam", 1, &a, &b);
    engine_set_learn(a, ENGINE_LEARN_OFF);
    engine_set_learn(b, ENGINE_LEARN_OFF);
    struct stim sa = {.lo = 0.0, .hi = 1.0, .targets = 1}, sb;
    testmodel_rng_seed(&sa.rng, g_seed + 41);
    run_ticks(a, &sa, 50, "reset warm-up");
    int p_in = testmodel_proj(a, "w_in");
    struct engine_norms n0, n1;
    engine_proj_norms(a, p_in, &n0);
    assert_true(n0.trace > 0.0);

    /* reset states: the same inputs now give what a fresh engine gives, bitwise; the
     * traces and n are kept. */
    engine_reset(a, 1, 0);
    for (int r = 0; r < engine_n_readouts(a); r++)
        for (int j = 0; j < engine_readout_size(a, r); j++)
            assert_true(engine_readout_values(a, r)[j] == R(0.0));
    engine_proj_norms(a, p_in, &n1);
    assert_true(n1.trace == n0.trace);
    struct engine_counters c;
    engine_counters(a, &c);
    assert_int_equal(c.es_n, 50);
    testmodel_rng_seed(&sa.rng, g_seed + 42);
    sb = sa;
    for (int t = 0; t < 30; t++) {
        run_ticks(a, &sa, 1, "after reset a");
        run_ticks(b, &sb, 1, "fresh b");
        if (!readouts_equal(a, b))
            fail_msg("after reset states, tick %d differs from a fresh engine", t);
    }

    /* reset traces: n = 0 and the traces zero; states kept (outputs continue exactly as
     * the twin's, which was not reset). */
    engine_reset(a, 0, 1);
    engine_counters(a, &c);
    assert_int_equal(c.es_n, 0);
    engine_proj_norms(a, p_in, &n1);
    assert_true(n1.trace == 0.0);
    for (int t = 0; t < 10; t++) {
        run_ticks(a, &sa, 1, "after reset traces a");
        run_ticks(b, &sb, 1, "twin b");
        assert_true(readouts_equal(a, b));
    }
    engine_counters(a, &c);
    assert_int_equal(c.es_n, 10);

    /* reset all, then both engines from a common reset: identical traces again. */
    engine_reset(a, 1, 1);
    engine_reset(b, 1, 1);
    for (int t = 0; t < 10; t++) {
        run_ticks(a, &sa, 1, "reset all a");
        run_ticks(b, &sb, 1, "reset all b");
        assert_true(readouts_equal(a, b));
    }
    engine_proj_norms(a, p_in, &n0);
    engine_proj_norms(b, p_in, &n1);
    assert_true(n0.trace == n1.trace);
    engine_free(&a);
    engine_free(&b);
    testmodel_fini(&tm);
}

/* The stats norms a slice at a time (DESIGN §5.2): twins that ran the same ticks give, one
 * through engine_proj_norms and one through a sweep advanced 7 elements at a time, the same
 * bits for every projection and figure; the sweep really is sliced; and a second reading
 * finds no change since the first (the marks moved with the slices). */
static void
test_engine_norm_sweep_slices(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    const char *algos[] = {"d_rtrl", "es_d_rtrl"};
    for (int k = 0; k < 2; k++) {
        struct engine *a, *b;
        linear_twins(&tm, algos[k], "sgd", 1, &a, &b);
        struct stim sa = {.lo = 0.0, .hi = 1.0, .targets = 1}, sb;
        testmodel_rng_seed(&sa.rng, g_seed + 43);
        sb = sa;
        run_ticks(a, &sa, 40, "norms a");
        run_ticks(b, &sb, 40, "norms b");
        int np = engine_n_projs(a);
        struct engine_norms ref[8], got[8];
        assert_true(np <= 8);
        for (int p = 0; p < np; p++)
            engine_proj_norms(a, p, &ref[p]);
        struct engine_norm_sweep sw;
        engine_norms_restart(&sw);
        int calls = 1;
        while (!engine_norms_advance(b, &sw, 7, got))
            calls++;
        assert_true(engine_norms_advance(b, &sw, 7, got)); /* complete stays complete */
        assert_true(calls > 10);
        for (int p = 0; p < np; p++) {
            assert_true(ref[p].w > 0.0 && ref[p].drift > 0.0 && ref[p].delta > 0.0);
            assert_true(ref[p].trace > 0.0);
            assert_memory_equal(&ref[p], &got[p], sizeof ref[p]);
        }
        engine_norms_restart(&sw);
        assert_true(engine_norms_advance(b, &sw, 0, got));
        for (int p = 0; p < np; p++) {
            assert_true(got[p].delta == 0.0);
            assert_true(got[p].w == ref[p].w && got[p].drift == ref[p].drift);
        }
        engine_free(&a);
        engine_free(&b);
    }
    testmodel_fini(&tm);
}

/* ---- the policy readout and determinism -------------------------------------------- */

/* The rules model with a reward signal and the given policy kind, adam, K = 1. */
static struct engine *
compile_policy_model(struct testmodel *tm, const char *kind)
{
    char text[8192], extra[256];
    snprintf(extra, sizeof extra, "  policy: {readout: y, kind: %s, sigma: 0.2}\n  tau_e: 0.05\n",
             kind);
    snprintf(text, sizeof text, RULES_MODEL, "trace", "trace", "trace", "es_d_rtrl", "reward",
             extra, "adam", 1);
    struct engine *eng = testmodel_compile_text(tm, NULL, text, NULL, 0);
    assert_non_null(eng);
    return eng;
}

/* With learning off (and explore_when_frozen false) nothing is sampled: the softmax
 * action is argmax o (lowest index on ties), the gaussian action is o itself. With
 * learning on, softmax actions are drawn: they are not always the argmax. */
static void
test_engine_policy_actions(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    struct engine *eng = compile_policy_model(&tm, "softmax");
    struct stim s = {.lo = 0.0, .hi = 1.0, .targets = 1};
    testmodel_rng_seed(&s.rng, g_seed + 51);
    engine_set_learn(eng, ENGINE_LEARN_OFF);
    for (int t = 0; t < 200; t++) {
        run_ticks(eng, &s, 1, "softmax frozen");
        const real *o = engine_readout_values(eng, 0);
        int best = 0;
        for (int j = 1; j < engine_readout_size(eng, 0); j++)
            if (o[j] > o[best])
                best = j;
        assert_true(engine_readout_action(eng, 0)[0] == (real)best);
    }
    engine_set_learn(eng, ENGINE_LEARN_ON);
    int n_not_argmax = 0;
    for (int t = 0; t < 200; t++) {
        run_ticks(eng, &s, 1, "softmax learning");
        const real *o = engine_readout_values(eng, 0);
        int best = 0;
        for (int j = 1; j < engine_readout_size(eng, 0); j++)
            if (o[j] > o[best])
                best = j;
        n_not_argmax += engine_readout_action(eng, 0)[0] != (real)best;
    }
    assert_true(n_not_argmax > 0);
    engine_free(&eng);

    eng = compile_policy_model(&tm, "gaussian");
    engine_set_learn(eng, ENGINE_LEARN_OFF);
    for (int t = 0; t < 50; t++) {
        run_ticks(eng, &s, 1, "gaussian frozen");
        assert_memory_equal(engine_readout_action(eng, 0), engine_readout_values(eng, 0),
                            (size_t)engine_readout_size(eng, 0) * sizeof(real));
    }
    engine_set_learn(eng, ENGINE_LEARN_ON);
    run_ticks(eng, &s, 5, "gaussian learning");
    assert_memory_not_equal(engine_readout_action(eng, 0), engine_readout_values(eng, 0),
                            (size_t)engine_readout_size(eng, 0) * sizeof(real));
    engine_free(&eng);
    testmodel_fini(&tm);
}

/* Numerics are a pure function of (model, state, inputs): two engines compiled from the
 * same text and fed the same stream stay bitwise equal over 1,000 learning ticks, the
 * sampled policy included. */
static void
test_engine_deterministic_twins(void **state)
{
    (void)state;
    struct testmodel tm;
    assert_int_equal(testmodel_init(&tm), 0);
    static const char *const kinds[] = {"softmax", "gaussian"};
    for (int k = 0; k < 2; k++) {
        struct engine *a = compile_policy_model(&tm, kinds[k]);
        struct engine *b = compile_policy_model(&tm, kinds[k]);
        struct stim sa = {.lo = 0.0, .hi = 1.0, .targets = 1}, sb;
        testmodel_rng_seed(&sa.rng, g_seed + 61);
        sb = sa;
        for (int t = 0; t < 1000; t++) {
            run_ticks(a, &sa, 1, "twin a");
            run_ticks(b, &sb, 1, "twin b");
            if (!readouts_equal(a, b) ||
                memcmp(engine_readout_action(a, 0), engine_readout_action(b, 0),
                       (size_t)engine_readout_size(a, 0) * sizeof(real)) != 0)
                fail_msg("%s: twins differ at tick %d", kinds[k], t);
        }
        assert_true(params_equal(a, b));
        engine_free(&a);
        engine_free(&b);
    }
    testmodel_fini(&tm);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_mem_alignment),
        cmocka_unit_test(test_engine_shipped_models_run),
        cmocka_unit_test(test_engine_tick_makes_no_system_call),
        cmocka_unit_test(test_engine_fp_env_flushes_subnormals),
        cmocka_unit_test(test_engine_no_alloc_every_rule),
        cmocka_unit_test(test_engine_refuses_nan_update),
        cmocka_unit_test(test_engine_inf_cell_reset),
        cmocka_unit_test(test_engine_time_within_tick),
        cmocka_unit_test(test_engine_initial_output_is_read_at_tick0),
        cmocka_unit_test(test_engine_learning_off_keeps_weights_traces_move),
        cmocka_unit_test(test_engine_lr_change_takes_effect),
        cmocka_unit_test(test_engine_reset_states_and_traces),
        cmocka_unit_test(test_engine_norm_sweep_slices),
        cmocka_unit_test(test_engine_policy_actions),
        cmocka_unit_test(test_engine_deterministic_twins),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
