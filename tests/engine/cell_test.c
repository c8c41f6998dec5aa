/* Tests of the built-in cell table and its expansion (daemon/engine/cell.c). The
 * equations' numerics are tested in expr_test.c; here: every built-in expands into a
 * model_cell that compiles, the reset line is chosen, allocation failures unwind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cell.h"
#include "expr.h"
#include "mem.h"
#include "model.h"

static int
expand(const struct cell_builtin *b, int hard, const struct mem *m, struct model_cell *c)
{
    memset(c, 0, sizeof *c);
    c->name = mem_strdup(m, "cell");
    if (!c->name)
        return -1;
    c->size = 8;
    c->pos = (struct model_pos){3, 5};
    return cell_expand(b, hard, m, c);
}

static void
test_cell_expand_every_builtin(void **state)
{
    (void)state;
    assert_int_equal(cell_builtin_count(), 9);
    for (int i = 0; i < cell_builtin_count(); i++) {
        const struct cell_builtin *b = cell_builtin_at(i);
        assert_ptr_equal(cell_builtin_find(b->model), b);
        for (int hard = 0; hard <= b->has_reset; hard++) {
            struct mem_counter mc;
            mem_counter_init(&mc, NULL);
            struct model_cell c;
            assert_int_equal(expand(b, hard, &mc.mem, &c), 0);
            assert_string_equal(c.model, b->model);
            assert_int_equal(c.n_states, b->n_states);
            assert_int_equal(c.n_slots, b->n_slots);
            assert_int_equal(c.n_params, b->n_params);
            assert_int_equal(c.n_defines, b->n_defines);
            for (int k = 0; k < b->n_states; k++) {
                assert_string_equal(c.state_names[k], b->state_names[k]);
                assert_true(c.state_init[k] == b->state_init[k]);
                assert_string_equal(c.updates[k].name, b->state_names[k]);
                assert_string_equal(c.updates[k].text, b->update[k]);
                assert_int_equal(c.updates[k].pos.line, 3);
            }
            for (int p = 0; p < b->n_params; p++) {
                assert_string_equal(c.param_names[p], b->param_names[p]);
                assert_true(c.param_values[p] == b->param_defaults[p]);
            }
            for (int d = 0; d < b->n_defines; d++) {
                const char *want =
                    hard && b->define_hard[d] ? b->define_hard[d] : b->define_soft[d];
                assert_string_equal(c.defines[d].text, want);
                assert_int_equal(c.defines[d].pos.col, 5);
            }
            assert_string_equal(c.output.name, "output");
            assert_string_equal(c.output.text, b->output);
            assert_int_equal(c.surrogate.kind, MODEL_SURR_RELU);
            assert_true(c.surrogate.alpha == 0.3 && c.surrogate.width == 1.0);
            assert_int_equal(c.is_spiking, strstr(b->output, "spike(") != NULL);

            struct expr_prog *p = NULL;
            struct expr_error e;
            assert_int_equal(expr_prog_compile(&c, 1.0e-3, &mc.mem, &p, &e), 0);
            assert_int_equal(expr_prog_is_spiking(p), c.is_spiking);
            expr_prog_free(&p, &mc.mem);
            cell_fini(&c, &mc.mem);
            assert_null(c.name);
            assert_null(c.defines);
            assert_int_equal(mc.live_bytes, 0);
        }
    }
    assert_null(cell_builtin_find("lstm2"));
}

static void
test_cell_hard_reset_uses_stop_gradient(void **state)
{
    (void)state;
    static const char *const models[] = {"lif", "alif", "lif_expon"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        struct model_cell soft, hard;
        const struct cell_builtin *b = cell_builtin_find(models[i]);
        assert_int_equal(expand(b, 0, mem_default(), &soft), 0);
        assert_int_equal(expand(b, 1, mem_default(), &hard), 0);
        const char *vs = soft.defines[soft.n_defines - 1].text;
        const char *vh = hard.defines[hard.n_defines - 1].text;
        assert_null(strstr(vs, "stop_gradient"));
        assert_non_null(strstr(vh, "stop_gradient(v - v_reset)"));
        cell_fini(&soft, mem_default());
        cell_fini(&hard, mem_default());
    }
}

/* Each allocation of an expansion fails once: -1, the cell zeroed, nothing leaked. */
static void
test_cell_expand_out_of_memory(void **state)
{
    (void)state;
    const struct cell_builtin *b = cell_builtin_find("alif");
    int ok = 0;
    for (long fail_at = 1; fail_at < 1000 && !ok; fail_at++) {
        struct mem_counter mc;
        mem_counter_init(&mc, NULL);
        mc.fail_at = fail_at; /* 0 would be the caller's name */
        struct model_cell c;
        int rc = expand(b, 1, &mc.mem, &c);
        if (rc == 0) {
            cell_fini(&c, &mc.mem);
            ok = 1;
        } else {
            struct model_cell zero;
            memset(&zero, 0, sizeof zero);
            assert_memory_equal(&c, &zero, sizeof c);
        }
        assert_int_equal(mc.live_bytes, 0);
    }
    assert_true(ok);
}

static void
test_cell_fini_accepts_zeroed(void **state)
{
    (void)state;
    struct model_cell c;
    memset(&c, 0, sizeof c);
    cell_fini(&c, mem_default());
    cell_fini(&c, mem_default());
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cell_expand_every_builtin),
        cmocka_unit_test(test_cell_hard_reset_uses_stop_gradient),
        cmocka_unit_test(test_cell_expand_out_of_memory),
        cmocka_unit_test(test_cell_fini_accepts_zeroed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
