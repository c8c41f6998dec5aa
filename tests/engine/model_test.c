/* Tests of the model reader (daemon/engine/model.c, mschema.c, mcell.c, mproj.c,
 * mlearn.c): the model-file parser and validator (DESIGN §2).
 * Bad models live in tests/engine/bad_models/, one error each, with their expected message
 * in a first comment line; good ones in tests/engine/good_models/. Files are found under
 * $ETRACE_SRC (default "."), the shared reference cases under $ETRACE_SHARED (default
 * "../shared"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell.h"
#include "err.h"
#include "mem.h"
#include "model.h"
#include "npy.h"

static const char *
src_dir(void)
{
    const char *s = getenv("ETRACE_SRC");
    return s && s[0] ? s : ".";
}

static const char *
shared_dir(void)
{
    const char *s = getenv("ETRACE_SHARED");
    return s && s[0] ? s : "../shared";
}

/* Parses text with a counting allocator; returns the rc. */
static int
parse_text(const char *text, struct mem_counter *mc, struct model_desc **d, struct err *e)
{
    mem_counter_init(mc, NULL);
    err_clear(e);
    return model_parse(text, strlen(text), "t.yaml", &mc->mem, d, e);
}

/* Parses a model that must be good; fails the test with the message otherwise. */
static struct model_desc *
parse_ok(const char *text, struct mem_counter *mc)
{
    struct model_desc *d = NULL;
    struct err e;
    int rc = parse_text(text, mc, &d, &e);
    if (rc != 0)
        fail_msg("unexpected error: %s", e.msg);
    assert_non_null(d);
    return d;
}

static void
free_ok(struct model_desc **d, struct mem_counter *mc)
{
    model_free(d, &mc->mem);
    assert_null(*d);
    assert_int_equal(mc->live_bytes, 0);
}

/* Parses a model that must fail; returns the code and copies the message. */
static enum err_code
parse_bad(const char *text, char *msg, size_t len)
{
    struct mem_counter mc;
    struct model_desc *d = NULL;
    struct err e;
    assert_int_equal(parse_text(text, &mc, &d, &e), -1);
    assert_null(d);
    assert_int_equal(mc.live_bytes, 0);
    snprintf(msg, len, "%s", e.msg);
    return e.code;
}

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int
ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int
yaml_filter(const struct dirent *de)
{
    return ends_with(de->d_name, ".yaml");
}

/* ---- bad models --------------------------------------------------------------------- */

static enum err_code
code_from_name(const char *s)
{
    if (strcmp(s, "EXPR") == 0)
        return ERR_EXPR;
    if (strcmp(s, "UNSUPPORTED") == 0)
        return ERR_UNSUPPORTED;
    if (strcmp(s, "MODEL") == 0)
        return ERR_MODEL;
    fail_msg("unknown code '%s'", s);
    return ERR_OK;
}

/* Each file starts with `# expect: LINE:COL: FIELD: message` (a prefix of the message
 * after `PATH:`) and optionally `# code: EXPR|UNSUPPORTED` (default MODEL). */
static void
test_model_bad_files_fail_with_position(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/engine/bad_models", src_dir());
    struct dirent **list;
    int n = scandir(dir, &list, yaml_filter, alphasort);
    if (n < 0)
        fail_msg("cannot list %s (set ETRACE_SRC to the source tree)", dir);
    assert_true(n >= 30);
    for (int i = 0; i < n; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
        char *text = slurp(path);
        assert_non_null(text);
        char expect[512] = "", code[32] = "MODEL";
        const char *nl = strchr(text, '\n');
        if (strncmp(text, "# expect: ", 10) != 0 || !nl)
            fail_msg("%s: no '# expect: ' first line", path);
        snprintf(expect, sizeof expect, "%.*s", (int)(nl - text - 10), text + 10);
        if (strncmp(nl + 1, "# code: ", 8) == 0)
            sscanf(nl + 9, "%31s", code);
        int line = 0, col = 0;
        if (sscanf(expect, "%d:%d: ", &line, &col) != 2 || line < 1 || col < 1)
            fail_msg("%s: the expectation must start with LINE:COL: ", path);

        struct mem_counter mc;
        mem_counter_init(&mc, NULL);
        struct model_desc *d = NULL;
        struct err e;
        err_clear(&e);
        int rc = model_load_file(path, &mc.mem, &d, &e);
        char want[2048];
        snprintf(want, sizeof want, "%s:%s", path, expect);
        if (rc != -1 || d || strncmp(e.msg, want, strlen(want)) != 0 ||
            e.code != code_from_name(code) || mc.live_bytes != 0)
            fail_msg("%s:\n  rc %d code %s (want %s), live %zu bytes\n  got:  %s\n  want: %s...",
                     list[i]->d_name, rc, err_name(e.code), code, mc.live_bytes, e.msg, want);
        free(text);
        free(list[i]);
    }
    free(list);
}

/* ---- allocation failures ------------------------------------------------------------ */

static void
test_model_alloc_failure_leaks_nothing(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/engine/good_models/full.yaml", src_dir());
    char *text = slurp(path);
    assert_non_null(text);
    long i;
    for (i = 0;; i++) {
        struct mem_counter mc;
        mem_counter_init(&mc, NULL);
        mc.fail_at = i;
        struct model_desc *d = NULL;
        struct err e;
        err_clear(&e);
        int rc = model_parse(text, strlen(text), path, &mc.mem, &d, &e);
        if (rc == 0) {
            assert_true(mc.n_calls <= i); /* the failure index was never reached */
            model_free(&d, &mc.mem);
            assert_int_equal(mc.live_bytes, 0);
            break;
        }
        if (e.code != ERR_NOMEM || mc.live_bytes != 0 || d)
            fail_msg("failing allocation %ld: code %s, %zu bytes live: %s", i, err_name(e.code),
                     mc.live_bytes, e.msg);
    }
    assert_true(i > 50);
    free(text);
}

/* ---- good models -------------------------------------------------------------------- */

static struct model_desc *
load_good(const char *name, struct mem_counter *mc)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/engine/good_models/%s", src_dir(), name);
    mem_counter_init(mc, NULL);
    struct model_desc *d = NULL;
    struct err e;
    err_clear(&e);
    if (model_load_file(path, &mc->mem, &d, &e) != 0)
        fail_msg("%s", e.msg);
    return d;
}

static int
slot_of(const struct model_cell *c, const char *name)
{
    for (int i = 0; i < c->n_slots; i++)
        if (strcmp(c->slot_names[i], name) == 0)
            return i;
    return -1;
}

static double
param_of(const struct model_cell *c, const char *name)
{
    for (int i = 0; i < c->n_params; i++)
        if (strcmp(c->param_names[i], name) == 0)
            return c->param_values[i];
    fail_msg("no param %s", name);
    return (double)NAN;
}

static void
test_model_full_model_values(void **state)
{
    (void)state;
    struct mem_counter mc;
    struct model_desc *d = load_good("full.yaml", &mc);
    assert_string_equal(d->name, "full-model");
    assert_true(d->dt == 1.0e-3);
    assert_true(d->seed == 42);
    assert_true(strstr(d->path, "full.yaml") != NULL);

    assert_int_equal(d->n_inputs, 2);
    assert_string_equal(d->inputs[0].name, "sensors");
    assert_int_equal(d->inputs[0].size, 10);
    assert_int_equal(d->inputs[0].kind, MODEL_INPUT_ANALOG);
    assert_int_equal(d->inputs[1].kind, MODEL_INPUT_SPIKES);

    assert_int_equal(d->n_cells, 4);
    const struct model_cell *h = &d->cells[0];
    assert_string_equal(h->model, "lif");
    assert_true(param_of(h, "tau") == 5.0e-3);
    assert_true(param_of(h, "v_th") == 1.5);
    assert_true(param_of(h, "v_reset") == 0.5);
    assert_true(param_of(h, "r") == 1.0); /* default kept */
    assert_true(h->state_init[0] == 0.25);
    assert_int_equal(h->surrogate.kind, MODEL_SURR_RELU);
    assert_true(h->surrogate.alpha == 0.5);
    assert_true(h->surrogate.width == 1.0);
    assert_true(h->is_spiking);
    /* reset: hard selects the hard define text. */
    assert_non_null(strstr(h->defines[1].text, "stop_gradient"));

    const struct model_cell *a = &d->cells[1];
    assert_string_equal(a->model, "custom");
    assert_int_equal(a->n_states, 2);
    assert_string_equal(a->state_names[0], "v");
    assert_string_equal(a->state_names[1], "a");
    assert_true(a->state_init[1] == 0.1);
    assert_int_equal(a->n_slots, 2);
    assert_int_equal(a->n_params, 4);
    assert_true(param_of(a, "beta") == 1.8);
    assert_int_equal(a->n_defines, 2);
    assert_string_equal(a->defines[0].name, "thr");
    assert_string_equal(a->defines[1].text, "spike((v - thr) / v_th)");
    /* updates come in state order, whatever the file order */
    assert_string_equal(a->updates[0].name, "v");
    assert_string_equal(a->updates[1].name, "a");
    assert_string_equal(a->updates[1].text, "a * exp(-dt / tau_a) + s");
    assert_string_equal(a->output.name, "output");
    assert_true(a->is_spiking);
    assert_int_equal(a->surrogate.kind, MODEL_SURR_SIGMOID);
    assert_true(a->surrogate.alpha == 4.0);
    /* positions of expression text: `      thr: v_th + beta * a` on line 25 */
    assert_int_equal(a->defines[0].pos.line, 25);
    assert_int_equal(a->defines[0].pos.col, 12);
    assert_int_equal(a->pos.line, 17);
    assert_int_equal(a->pos.col, 5);

    const struct model_cell *g = &d->cells[2];
    assert_string_equal(g->model, "gru");
    assert_int_equal(g->n_slots, 4);
    assert_false(g->is_spiking);

    assert_int_equal(d->n_projs, 8);
    const struct model_proj *p = &d->projs[model_find_proj(d, "w_rec")];
    assert_int_equal(p->n_from, 2);
    assert_int_equal(p->in_size, 30);
    assert_int_equal(p->from[1].is_input, 0);
    assert_int_equal(p->from[1].offset, 10);
    assert_int_equal(p->out_size, 20);
    assert_int_equal(p->op, MODEL_OP_DENSE);
    assert_int_equal(p->learn, MODEL_LEARN_TRACE);
    assert_int_equal(p->weight.kind, MODEL_TENSOR_INIT);
    assert_int_equal(p->weight.init, MODEL_INIT_KAIMING_NORMAL);
    assert_true(p->weight.scale == 0.5);
    assert_int_equal(p->bias.kind, MODEL_TENSOR_INIT);
    assert_int_equal(p->bias.init, MODEL_INIT_ZEROS);

    p = &d->projs[model_find_proj(d, "w_sp")];
    assert_int_equal(p->op, MODEL_OP_SPARSE);
    assert_int_equal(p->weight.kind, MODEL_TENSOR_RANDOM);
    assert_true(p->weight.prob == 0.25);
    assert_true(p->weight.seed == 3);
    assert_int_equal(p->weight.init, MODEL_INIT_NORMAL);
    assert_true(p->weight.std == 0.1);
    assert_true(p->weight.mean == 0);
    assert_int_equal(p->learn, MODEL_LEARN_INSTANT);
    assert_int_equal(p->bias.kind, MODEL_TENSOR_NONE);
    assert_int_equal(p->to_slots[0], slot_of(h, "delta"));

    p = &d->projs[model_find_proj(d, "w_csr")];
    assert_int_equal(p->weight.kind, MODEL_TENSOR_FILE);
    assert_string_equal(p->weight.file, "w.npy");
    assert_string_equal(p->weight.indices, "w.indices.npy");
    assert_string_equal(p->weight.indptr, "w.indptr.npy");
    assert_int_equal(p->bias.kind, MODEL_TENSOR_FILE);
    assert_string_equal(p->bias.file, "b.npy");

    p = &d->projs[model_find_proj(d, "w_coo")];
    assert_int_equal(p->weight.kind, MODEL_TENSOR_COO);
    assert_string_equal(p->weight.rows, "r.npy");
    assert_string_equal(p->weight.cols, "c.npy");
    assert_string_equal(p->weight.values, "v.npy");
    assert_int_equal(p->learn, MODEL_LEARN_FROZEN);
    /* a random sparse weight without seed takes the model's */
    p = &d->projs[model_find_proj(d, "w_sp2")];
    assert_true(p->weight.seed == 42);

    p = &d->projs[model_find_proj(d, "w_gru")];
    assert_int_equal(p->n_to_slots, 4);
    assert_int_equal(p->out_size, 4 * 6);
    assert_int_equal(p->in_size, 8 + 6);
    for (int i = 0; i < 4; i++)
        assert_int_equal(p->to_slots[i], i);
    assert_int_equal(p->weight.init, MODEL_INIT_XAVIER_UNIFORM);
    assert_true(p->weight.scale == 1.0);

    p = &d->projs[model_find_proj(d, "w_el")];
    assert_int_equal(p->op, MODEL_OP_ELEMWISE);
    assert_int_equal(p->in_size, 12);
    assert_int_equal(p->out_size, 12);
    assert_int_equal(p->to_slots[0], 1); /* r */
    assert_int_equal(p->to_slots[1], 0); /* z */
    assert_int_equal(p->weight.init, MODEL_INIT_ONES);
    assert_int_equal(p->bias.init, MODEL_INIT_CONSTANT);
    assert_true(p->bias.value == 0.1);

    p = &d->projs[model_find_proj(d, "w_out")];
    assert_int_equal(p->weight.init, MODEL_INIT_UNIFORM);
    assert_true(p->weight.low == -0.5 && p->weight.high == 0.5);
    assert_int_equal(p->to_cell, 3);
    assert_int_equal(p->to_slots[0], 0);

    assert_int_equal(d->n_readouts, 2);
    assert_int_equal(d->readouts[0].cell, 3);
    assert_int_equal(d->readouts[1].cell, 0);

    const struct model_learning *l = &d->learning;
    assert_true(l->present);
    assert_int_equal(l->algorithm, MODEL_ALGO_HYBRID);
    assert_true(l->has_decay);
    assert_true(l->lambda_x == 0.9);
    assert_true(l->lambda_f == 0.5); /* rank 3 */
    assert_int_equal(l->hybrid_budget, 8);
    assert_int_equal(l->signal, MODEL_SIGNAL_REWARD);
    assert_int_equal(l->loss, MODEL_LOSS_CROSS_ENTROPY);
    assert_int_equal(l->optimizer, MODEL_OPTIM_ADAM);
    assert_true(l->lr == 2.0e-3);
    assert_true(l->beta1 == 0.8 && l->beta2 == 0.99);
    assert_true(l->eps == 1.0e-6);
    assert_true(l->weight_decay == 0.01);
    assert_true(l->clip_norm == 1.0);
    assert_int_equal(l->update_every, 2);
    assert_int_equal(l->policy_readout, 0);
    assert_int_equal(l->policy_kind, MODEL_POLICY_SOFTMAX);
    assert_true(l->sigma == 0.2);
    assert_true(l->tau_explore == 0.1);
    assert_int_equal(l->action_hold, 3);
    assert_true(l->explore_when_frozen);
    assert_true(l->tau_e == 0.25);
    assert_true(l->tau_baseline == 2.5);
    free_ok(&d, &mc);
}

static const char minimal[] = "name: m\n"
                              "dt: 0.001\n"
                              "cells:\n"
                              "  - {name: c, model: linear, size: 3}\n";

static void
test_model_defaults(void **state)
{
    (void)state;
    struct mem_counter mc;
    struct model_desc *d = parse_ok(minimal, &mc);
    assert_true(d->seed == 0);
    assert_int_equal(d->n_inputs, 0);
    assert_int_equal(d->n_projs, 0);
    assert_int_equal(d->n_readouts, 0);
    const struct model_learning *l = &d->learning;
    assert_false(l->present);
    assert_int_equal(l->hybrid_budget, 4);
    assert_int_equal(l->signal, MODEL_SIGNAL_TARGET);
    assert_int_equal(l->loss, MODEL_LOSS_MSE);
    assert_int_equal(l->optimizer, MODEL_OPTIM_SGD);
    assert_true(l->lr == 1e-3);
    assert_true(l->momentum == 0.9);
    assert_true(l->beta1 == 0.9 && l->beta2 == 0.999);
    assert_true(l->eps == 1e-8);
    assert_true(l->weight_decay == 0);
    assert_true(l->clip_norm <= 0);
    assert_int_equal(l->update_every, 1);
    assert_int_equal(l->policy_readout, -1);
    assert_true(l->sigma == 0.1 && l->tau_explore == 0.05);
    assert_int_equal(l->action_hold, 1);
    assert_false(l->explore_when_frozen);
    assert_true(l->tau_e == 0.5 && l->tau_baseline == 5.0);
    const struct model_cell *c = &d->cells[0];
    assert_int_equal(c->surrogate.kind, MODEL_SURR_RELU);
    assert_true(c->surrogate.alpha == 0.3 && c->surrogate.width == 1.0);
    assert_false(c->is_spiking);
    free_ok(&d, &mc);

    /* A learning section with only its algorithm keeps every default, clip_norm null. */
    d = parse_ok("name: m\ndt: 0.001\ncells: [{name: c, model: linear, size: 3}]\n"
                 "learning: {algorithm: d_rtrl, optimizer: {kind: momentum, clip_norm: null}}\n",
                 &mc);
    assert_true(d->learning.present);
    assert_int_equal(d->learning.optimizer, MODEL_OPTIM_MOMENTUM);
    assert_true(d->learning.clip_norm <= 0);
    assert_false(d->learning.has_decay);
    free_ok(&d, &mc);
}

static void
check_decay(const char *value, double lx, double lf)
{
    char text[512];
    snprintf(text, sizeof text,
             "name: m\ndt: 0.001\ncells: [{name: c, model: linear, size: 3}]\n"
             "learning: {algorithm: es_d_rtrl, decay_or_rank: %s}\n",
             value);
    struct mem_counter mc;
    struct model_desc *d = parse_ok(text, &mc);
    assert_true(d->learning.has_decay);
    if (fabs(d->learning.lambda_x - lx) > 1e-15 || fabs(d->learning.lambda_f - lf) > 1e-15)
        fail_msg("decay_or_rank %s: got [%g, %g], want [%g, %g]", value, d->learning.lambda_x,
                 d->learning.lambda_f, lx, lf);
    free_ok(&d, &mc);
}

static void
test_model_decay_or_rank_forms(void **state)
{
    (void)state;
    check_decay("0.99", 0.99, 0.99);
    check_decay("4", 0.6, 0.6);    /* rank: (4-1)/(4+1) */
    check_decay("1", 0.0, 0.0);    /* rank 1 */
    check_decay("+9", 0.8, 0.8);   /* a sign is still an integer literal */
    check_decay("1e-1", 0.1, 0.1); /* an exponent makes it a decay */
    check_decay("0.0", 0.0, 0.0);
    check_decay("[0.9, 3]", 0.9, 0.5); /* [x, f] */
    check_decay("[2, 0.25]", 1.0 / 3.0, 0.25);
    char msg[1024];
    assert_int_equal(parse_bad("name: m\ndt: 0.001\ncells: [{name: c, model: linear, size: 3}]\n"
                               "learning: {algorithm: es_d_rtrl, decay_or_rank: 1.0}\n",
                               msg, sizeof msg),
                     ERR_MODEL);
    assert_non_null(strstr(msg, "t.yaml:4:49: learning.decay_or_rank: a decay must be in [0, 1)"));
    assert_int_equal(parse_bad("name: m\ndt: 0.001\ncells: [{name: c, model: linear, size: 3}]\n"
                               "learning: {algorithm: es_d_rtrl, decay_or_rank: '0.5'}\n",
                               msg, sizeof msg),
                     ERR_MODEL);
    assert_non_null(strstr(msg, "learning.decay_or_rank: expected a decay, a rank"));
}

static const char two_cells[] =
    "name: m\ndt: 0.001\n"
    "inputs: [{name: x, size: 3}, {name: y, size: 5}]\n"
    "cells:\n"
    "  - {name: g, model: gru, size: 4}\n"
    "  - {name: o, model: linear, size: 2}\n"
    "projections:\n"
    "  - {name: p, from: %s, to: '%s', op: %s, weight: {init: zeros}}\n";

static struct model_desc *
parse_proj(const char *from, const char *to, const char *op, struct mem_counter *mc)
{
    char text[1024];
    snprintf(text, sizeof text, two_cells, from, to, op);
    return parse_ok(text, mc);
}

static void
test_model_to_forms(void **state)
{
    (void)state;
    struct mem_counter mc;
    struct model_desc *d = parse_proj("x", "o", "dense", &mc); /* one-slot cell alone */
    assert_int_equal(d->projs[0].to_cell, 1);
    assert_int_equal(d->projs[0].n_to_slots, 1);
    assert_int_equal(d->projs[0].out_size, 2);
    free_ok(&d, &mc);

    d = parse_proj("x", "g.nh", "dense", &mc);
    assert_int_equal(d->projs[0].to_cell, 0);
    assert_int_equal(d->projs[0].n_to_slots, 1);
    assert_int_equal(d->projs[0].to_slots[0], 3);
    assert_int_equal(d->projs[0].out_size, 4);
    free_ok(&d, &mc);

    d = parse_proj("x", "g[ nx ,z,  r ]", "dense", &mc); /* spaces allowed */
    assert_int_equal(d->projs[0].n_to_slots, 3);
    assert_int_equal(d->projs[0].to_slots[0], 2);
    assert_int_equal(d->projs[0].to_slots[1], 0);
    assert_int_equal(d->projs[0].to_slots[2], 1);
    assert_int_equal(d->projs[0].out_size, 12);
    free_ok(&d, &mc);

    d = parse_proj("o", "o[y]", "dense", &mc);
    assert_int_equal(d->projs[0].out_size, 2);
    free_ok(&d, &mc);

    /* elemwise into two slots: I = O = 2 * 4 */
    d = parse_proj("[g, g]", "g[z, r]", "elemwise", &mc);
    assert_int_equal(d->projs[0].in_size, 8);
    assert_int_equal(d->projs[0].out_size, 8);
    free_ok(&d, &mc);
}

static void
test_model_from_lists_offsets(void **state)
{
    (void)state;
    struct mem_counter mc;
    struct model_desc *d = parse_proj("[y, g, x, o]", "o", "dense", &mc);
    const struct model_proj *p = &d->projs[0];
    assert_int_equal(p->n_from, 4);
    static const int is_input[] = {1, 0, 1, 0}, index[] = {1, 0, 0, 1};
    static const int offset[] = {0, 5, 9, 12}, size[] = {5, 4, 3, 2};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(p->from[i].is_input, is_input[i]);
        assert_int_equal(p->from[i].index, index[i]);
        assert_int_equal(p->from[i].offset, offset[i]);
        assert_int_equal(p->from[i].size, size[i]);
    }
    assert_int_equal(p->in_size, 14);
    free_ok(&d, &mc);

    d = parse_proj("x", "o", "dense", &mc); /* a single name, not a list */
    assert_int_equal(d->projs[0].n_from, 1);
    assert_int_equal(d->projs[0].in_size, 3);
    free_ok(&d, &mc);
}

static void
test_model_builtin_expansion_and_overrides(void **state)
{
    (void)state;
    struct mem_counter mc;
    struct model_desc *d =
        parse_ok("name: m\ndt: 0.001\ncells:\n"
                 "  - {name: a, model: alif, size: 2, params: {beta: 0.5}, states: {b: 0.125}}\n"
                 "  - {name: z, model: izhikevich, size: 2, params: {a: 0.1}}\n"
                 "  - {name: l, model: lif, size: 2}\n",
                 &mc);
    const struct cell_builtin *b = cell_builtin_find("alif");
    const struct model_cell *c = &d->cells[0];
    assert_int_equal(c->n_states, b->n_states);
    assert_int_equal(c->n_params, b->n_params);
    assert_true(param_of(c, "beta") == 0.5);
    assert_true(param_of(c, "tau_b") == 200.0e-3);
    assert_true(c->state_init[0] == 0.0 && c->state_init[1] == 0.125);
    assert_int_equal(c->n_defines, 3);
    assert_string_equal(c->defines[2].text, b->define_soft[2]); /* reset: soft by default */
    assert_int_equal(c->pos.line, 4);
    c = &d->cells[1];
    assert_true(param_of(c, "a") == 0.1);
    assert_true(c->state_init[0] == -65.0);
    assert_string_equal(d->cells[2].defines[1].text, "v - (v_th - v_reset) * s_old");
    free_ok(&d, &mc);
}

static void
test_model_surrogate_kind_defaults(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        enum model_surrogate_kind kind;
        double alpha, width, sigma;
    } cases[] = {
        {"{kind: relu}", MODEL_SURR_RELU, 0.3, 1.0, 0},
        {"{kind: relu, width: 2.0}", MODEL_SURR_RELU, 0.3, 2.0, 0},
        {"{alpha: 2.0}", MODEL_SURR_RELU, 2.0, 1.0, 0},
        {"{kind: sigmoid}", MODEL_SURR_SIGMOID, 4.0, 0, 0},
        {"{kind: gaussian}", MODEL_SURR_GAUSSIAN, 0, 0, 0.5},
        {"{kind: gaussian, sigma: 0.25}", MODEL_SURR_GAUSSIAN, 0, 0, 0.25},
        {"{kind: slayer}", MODEL_SURR_EXPONENTIAL, 5.0, 0, 0},
        {"{kind: exponential, alpha: 1.0e+1}", MODEL_SURR_EXPONENTIAL, 10.0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "name: m\ndt: 0.001\ncells: [{name: c, model: lif, size: 3, surrogate: %s}]\n",
                 cases[i].spec);
        struct mem_counter mc;
        struct model_desc *d = parse_ok(text, &mc);
        const struct model_surrogate *s = &d->cells[0].surrogate;
        if (s->kind != cases[i].kind || s->alpha != cases[i].alpha || s->width != cases[i].width ||
            s->sigma != cases[i].sigma)
            fail_msg("%s: got kind %d alpha %g width %g sigma %g", cases[i].spec, s->kind, s->alpha,
                     s->width, s->sigma);
        free_ok(&d, &mc);
    }
}

static void
test_model_init_defaults(void **state)
{
    (void)state;
    struct mem_counter mc;
    struct model_desc *d =
        parse_ok("name: m\ndt: 0.001\ninputs: [{name: x, size: 2}]\n"
                 "cells: [{name: c, model: linear, size: 3}]\n"
                 "projections:\n"
                 "  - {name: a, from: x, to: c, weight: {init: normal}, bias: {init: uniform}}\n"
                 "  - {name: b, from: x, to: c, weight: {init: constant, value: -2}}\n",
                 &mc);
    const struct model_tensor *w = &d->projs[0].weight, *bias = &d->projs[0].bias;
    assert_true(w->mean == 0 && w->std == 1);
    assert_true(bias->low == -1 && bias->high == 1);
    assert_true(d->projs[1].weight.value == -2);
    assert_int_equal(d->projs[1].weight.pos.line, 7);
    free_ok(&d, &mc);
}

static void
test_model_text_hash_and_numbers(void **state)
{
    (void)state;
    struct mem_counter mc;
    static const char text[] = "name: m\ndt: 1e-3\nseed: 18446744073709551615\n"
                               "cells: [{name: c, model: leaky_readout, size: 3, "
                               "params: {tau: 2E-2}}]\n";
    struct model_desc *d = parse_ok(text, &mc);
    assert_true(d->dt == 1e-3); /* 1e-3 is a number, not a string */
    assert_true(d->seed == UINT64_MAX);
    assert_true(param_of(&d->cells[0], "tau") == 2e-2);
    assert_int_equal(d->text_len, strlen(text));
    assert_string_equal(d->text, text);
    /* FNV-1a 64 of the text, computed here independently */
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < strlen(text); i++)
        h = (h ^ (unsigned char)text[i]) * 0x100000001b3u;
    assert_true(d->hash == h);
    free_ok(&d, &mc);

    /* A quoted number is a string: YAML says so, and so do we. */
    char msg[1024];
    assert_int_equal(parse_bad("name: m\ndt: '0.001'\ncells: [{name: c, model: linear, size: 3}]\n",
                               msg, sizeof msg),
                     ERR_MODEL);
    assert_string_equal(msg, "t.yaml:2:5: dt: expected a number, got '0.001'");
}

static void
test_model_expression_column_in_quoted_and_folded_text(void **state)
{
    (void)state;
    /* The column of an expression error points into the file, through quotes and line
     * folding. */
    char msg[1024];
    enum err_code code = parse_bad("name: m\ndt: 0.001\ncells:\n"
                                   "  - name: c\n    model: custom\n    size: 2\n"
                                   "    states: {h: 0.0}\n    slots: [y]\n"
                                   "    update: {h: \"y + h * nope\"}\n"
                                   "    output: h\n",
                                   msg, sizeof msg);
    assert_int_equal(code, ERR_EXPR);
    assert_non_null(strstr(msg, "t.yaml:9:26: cells.c.update.h: "));
    code = parse_bad("name: m\ndt: 0.001\ncells:\n"
                     "  - name: c\n    model: custom\n    size: 2\n"
                     "    states: {h: 0.0}\n    slots: [y]\n"
                     "    update:\n      h: y +\n        h * zork\n"
                     "    output: h\n",
                     msg, sizeof msg);
    assert_int_equal(code, ERR_EXPR);
    assert_non_null(strstr(msg, "t.yaml:11:13: cells.c.update.h: "));
}

static void
test_model_reference_cases_parse(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/reference/cases", shared_dir());
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    if (n < 0) {
        print_message("skipped: no %s (set ETRACE_SHARED)\n", dir);
        skip();
    }
    int parsed = 0;
    for (int i = 0; i < n; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s/model.yaml", dir, list[i]->d_name);
        FILE *f = list[i]->d_name[0] != '.' ? fopen(path, "rb") : NULL;
        free(list[i]);
        if (!f)
            continue;
        fclose(f);
        struct mem_counter mc;
        mem_counter_init(&mc, NULL);
        struct model_desc *d = NULL;
        struct err e;
        err_clear(&e);
        if (model_load_file(path, &mc.mem, &d, &e) != 0)
            fail_msg("%s", e.msg);
        assert_true(d->n_cells > 0);
        free_ok(&d, &mc);
        parsed++;
    }
    free(list);
    assert_true(parsed > 0);
}

/* Every shipped model (the .yaml files in models/) parses. */
static void
test_model_shipped_models_parse(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models", src_dir());
    struct dirent **list;
    int n = scandir(dir, &list, yaml_filter, alphasort);
    if (n < 0)
        n = 0;
    for (int i = 0; i < n; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
        free(list[i]);
        struct mem_counter mc;
        mem_counter_init(&mc, NULL);
        struct model_desc *d = NULL;
        struct err e;
        err_clear(&e);
        if (model_load_file(path, &mc.mem, &d, &e) != 0)
            fail_msg("%s", e.msg);
        free_ok(&d, &mc);
    }
    if (n > 0)
        free(list);
}

static void
test_model_load_file_missing_is_io_error(void **state)
{
    (void)state;
    struct model_desc *d = NULL;
    struct err e;
    err_clear(&e);
    assert_int_equal(model_load_file("/nonexistent/m.yaml", mem_default(), &d, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_null(d);
    assert_non_null(strstr(e.msg, "/nonexistent/m.yaml"));
}

/* A model file or weight file that is a FIFO is refused at once (opened without blocking),
 * not waited on. */
static void
test_model_load_file_fifo_refused(void **state)
{
    (void)state;
    char dir[] = "/tmp/etraced-model-XXXXXX", fifo[64];
    struct model_desc *d = NULL;
    struct err e;
    void *buf = NULL;
    size_t len = 0;
    assert_non_null(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/m.yaml", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    err_clear(&e);
    assert_int_equal(model_load_file(fifo, mem_default(), &d, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_non_null(strstr(e.msg, "not a regular file"));
    err_clear(&e);
    assert_int_equal(npy_read_file(fifo, mem_default(), &buf, &len, &e), -1);
    assert_non_null(strstr(e.msg, "not a regular file"));
    unlink(fifo);
    rmdir(dir);
}

static void
test_model_dirname(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"a/b/c.yaml", "a/b"}, {"c.yaml", "."},   {"/c.yaml", "/"}, {"/x/y", "/x"},
        {"a//c.yaml", "a"},    {"./m.yaml", "."}, {"", "."},        {"a/b/", "a"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        model_dirname(cases[i][0], buf, sizeof buf);
        if (strcmp(buf, cases[i][1]) != 0)
            fail_msg("dirname(%s) = %s, want %s", cases[i][0], buf, cases[i][1]);
    }
}

static void
test_model_fs_disk_reads_relative_to_the_model(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/engine/good_models", src_dir());
    struct model_fs fs = model_fs_disk(dir);
    struct mem_counter mc;
    mem_counter_init(&mc, NULL);
    void *data = NULL;
    size_t len = 0;
    struct err e;
    err_clear(&e);
    assert_int_equal(fs.read(fs.ctx, "full.yaml", &mc.mem, &data, &len, &e), 0);
    assert_true(len > 0);
    assert_memory_equal(data, "name: full-model", 16);
    mem_free(&mc.mem, &data);
    assert_int_equal(mc.live_bytes, 0);
    assert_int_equal(fs.read(fs.ctx, "absent.npy", &mc.mem, &data, &len, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_non_null(strstr(e.msg, "absent.npy"));
    assert_int_equal(mc.live_bytes, 0);
}

static void
test_model_find_names(void **state)
{
    (void)state;
    struct mem_counter mc;
    struct model_desc *d = load_good("full.yaml", &mc);
    assert_int_equal(model_find_input(d, "ev"), 1);
    assert_int_equal(model_find_input(d, "hidden"), -1);
    assert_int_equal(model_find_cell(d, "out"), 3);
    assert_int_equal(model_find_cell(d, "sensors"), -1);
    assert_int_equal(model_find_proj(d, "w_rec"), 0);
    assert_int_equal(model_find_proj(d, "nope"), -1);
    assert_int_equal(model_find_readout(d, "hid"), 1);
    assert_int_equal(model_find_readout(d, "out"), -1);
    free_ok(&d, &mc);
    model_free(&d, mem_default()); /* NULL is accepted */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_bad_files_fail_with_position),
        cmocka_unit_test(test_model_alloc_failure_leaks_nothing),
        cmocka_unit_test(test_model_full_model_values),
        cmocka_unit_test(test_model_defaults),
        cmocka_unit_test(test_model_decay_or_rank_forms),
        cmocka_unit_test(test_model_to_forms),
        cmocka_unit_test(test_model_from_lists_offsets),
        cmocka_unit_test(test_model_builtin_expansion_and_overrides),
        cmocka_unit_test(test_model_surrogate_kind_defaults),
        cmocka_unit_test(test_model_init_defaults),
        cmocka_unit_test(test_model_text_hash_and_numbers),
        cmocka_unit_test(test_model_expression_column_in_quoted_and_folded_text),
        cmocka_unit_test(test_model_reference_cases_parse),
        cmocka_unit_test(test_model_shipped_models_parse),
        cmocka_unit_test(test_model_load_file_missing_is_io_error),
        cmocka_unit_test(test_model_load_file_fifo_refused),
        cmocka_unit_test(test_model_dirname),
        cmocka_unit_test(test_model_fs_disk_reads_relative_to_the_model),
        cmocka_unit_test(test_model_find_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
