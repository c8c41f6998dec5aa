/* Tests of param_load: every weight spec kind of DESIGN §2.3 and its errors. The model
 * description is built by hand (no parser needed); .npy inputs are written to a temp
 * directory with npy_write_file, plus the committed tests/engine/npy_files/. */
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

#include "npy.h"
#include "param.h"
#include "rng.h"

/* ---- fixtures ------------------------------------------------------------------------- */

static char tmp_dir[256];
static char files_dir[512];

/* A model_fs over the disk: "@name" is read from the committed npy_files directory,
 * anything else from the test's temp directory. */
static int
fs_read(void *ctx, const char *rel, const struct mem *m, void **data, size_t *len, struct err *e)
{
    (void)ctx;
    char path[1024];
    if (rel[0] == '@')
        snprintf(path, sizeof path, "%s/%s", files_dir, rel + 1);
    else
        snprintf(path, sizeof path, "%s/%s", tmp_dir, rel);
    return npy_read_file(path, m, data, len, e);
}

static const struct model_fs fs = {fs_read, NULL};

static int
setup(void **state)
{
    (void)state;
    const char *src = getenv("ETRACE_SRC");
    snprintf(files_dir, sizeof files_dir, "%s/tests/engine/npy_files", src && *src ? src : ".");
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/param_test.XXXXXX");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static const char *const written[] = {"w.npy",  "w64.npy", "wi.npy", "wbad.npy", "v.npy",
                                      "ix.npy", "ip.npy",  "r.npy",  "c.npy",    "b.npy"};

static int
teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof written / sizeof written[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tmp_dir, written[i]);
        unlink(path);
    }
    return rmdir(tmp_dir);
}

static void
write_npy(const char *name, enum npy_dtype t, int ndim, const int64_t *shape, const void *data)
{
    char path[512];
    struct err e;
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    if (npy_write_file(path, t, ndim, shape, data, &e) != 0)
        fail_msg("%s", e.msg);
}

static void
write_vec_i64(const char *name, int64_t n, const int64_t *v)
{
    write_npy(name, NPY_I64, 1, &n, v);
}

static void
write_vec_i32(const char *name, int64_t n, const int32_t *v)
{
    write_npy(name, NPY_I32, 1, &n, v);
}

static void
write_vec_f32(const char *name, int64_t n, const float *v)
{
    write_npy(name, NPY_F32, 1, &n, v);
}

static struct model_tensor
tensor_init(enum model_init init)
{
    struct model_tensor t;
    memset(&t, 0, sizeof t);
    t.kind = MODEL_TENSOR_INIT;
    t.init = init;
    t.mean = 0.0;
    t.std = 1.0;
    t.low = -1.0;
    t.high = 1.0;
    t.scale = 1.0;
    t.pos.line = 12;
    t.pos.col = 5;
    return t;
}

static struct model_tensor
tensor_file(const char *file)
{
    struct model_tensor t = tensor_init(MODEL_INIT_ZEROS);
    t.kind = MODEL_TENSOR_FILE;
    t.file = (char *)file;
    return t;
}

static struct model_desc desc;

static struct model_proj
proj(const char *name, enum model_op op, int n_in, int n_out)
{
    memset(&desc, 0, sizeof desc);
    desc.path = "m.yaml";
    desc.seed = 7;
    struct model_proj p;
    memset(&p, 0, sizeof p);
    p.name = (char *)name;
    p.op = op;
    p.in_size = n_in;
    p.out_size = n_out;
    p.weight = tensor_init(MODEL_INIT_KAIMING_NORMAL);
    p.bias.kind = MODEL_TENSOR_NONE;
    return p;
}

/* Loads p and expects success; checks nothing leaks after param_fini. */
static struct param
load_ok(const struct model_proj *p, struct mem_counter *mc)
{
    struct param out;
    memset(&out, 0, sizeof out);
    struct err e;
    err_clear(&e);
    mem_counter_init(mc, NULL);
    if (param_load(&desc, p, &fs, &mc->mem, &out, &e) != 0)
        fail_msg("param_load: %s", e.msg);
    return out;
}

static void
done(struct param *a, struct mem_counter *mc)
{
    param_fini(a, &mc->mem);
    assert_int_equal(mc->live_bytes, 0);
    assert_null(a->values);
}

/* Expects failure with a message containing needle and the prefix of p's field; nothing
 * allocated remains. */
static void
load_fails(const struct model_proj *p, const char *field, const char *needle)
{
    struct mem_counter mc;
    mem_counter_init(&mc, NULL);
    struct param out;
    memset(&out, 0, sizeof out);
    struct err e;
    err_clear(&e);
    int rc = param_load(&desc, p, &fs, &mc.mem, &out, &e);
    char prefix[256];
    const struct model_tensor *t = strcmp(field, "bias") == 0 ? &p->bias : &p->weight;
    snprintf(prefix, sizeof prefix, "m.yaml:%d:%d: projections.%s.%s: ", t->pos.line, t->pos.col,
             p->name, field);
    if (rc == 0 || strncmp(e.msg, prefix, strlen(prefix)) != 0 || !strstr(e.msg, needle))
        print_error("rc %d msg '%s'\n  want prefix '%s' and '%s'\n", rc, e.msg, prefix, needle);
    assert_int_equal(rc, -1);
    assert_true(e.code != ERR_OK);
    assert_true(strncmp(e.msg, prefix, strlen(prefix)) == 0);
    assert_non_null(strstr(e.msg, needle));
    assert_int_equal(mc.live_bytes, 0);
    assert_null(out.values);
}

/* ---- initialisers --------------------------------------------------------------------- */

/* Kaiming over a dense [I, O]: std = scale * sqrt(2 / I), drawn row-major from
 * rng_seed(model seed, name); the bias continues the same stream. */
static void
test_param_dense_kaiming_and_bias_order(void **state)
{
    (void)state;
    struct model_proj p = proj("w_rec", MODEL_OP_DENSE, 8, 3);
    p.weight.scale = 2.0;
    p.bias = tensor_init(MODEL_INIT_UNIFORM);
    p.bias.low = -0.5;
    p.bias.high = 0.25;
    struct mem_counter mc;
    struct param a = load_ok(&p, &mc);
    assert_int_equal(a.count, 24);
    assert_null(a.indptr);
    assert_null(a.indices);
    assert_non_null(a.bias);
    struct rng r;
    rng_seed(&r, 7, "w_rec");
    for (int k = 0; k < 24; k++) {
        real want = (real)(2.0 * sqrt(2.0 / 8.0) * rng_normal(&r));
        assert_true(a.values[k] == want);
    }
    for (int o = 0; o < 3; o++) {
        real want = (real)(-0.5 + (0.25 - -0.5) * rng_uniform(&r));
        assert_true(a.bias[o] == want);
        assert_true(a.bias[o] >= R(-0.5) && a.bias[o] < R(0.25));
    }
    done(&a, &mc);
}

static void
test_param_initialisers(void **state)
{
    (void)state;
    struct mem_counter mc;
    struct model_proj p = proj("w", MODEL_OP_DENSE, 4, 5);
    struct param a;

    p.weight = tensor_init(MODEL_INIT_ZEROS);
    a = load_ok(&p, &mc);
    for (int k = 0; k < 20; k++)
        assert_true(a.values[k] == R(0.0));
    done(&a, &mc);

    p.weight = tensor_init(MODEL_INIT_ONES);
    a = load_ok(&p, &mc);
    for (int k = 0; k < 20; k++)
        assert_true(a.values[k] == R(1.0));
    done(&a, &mc);

    p.weight = tensor_init(MODEL_INIT_CONSTANT);
    p.weight.value = 0.1;
    a = load_ok(&p, &mc);
    for (int k = 0; k < 20; k++)
        assert_true(a.values[k] == (real)0.1);
    done(&a, &mc);

    /* zeros consumes no draws: the bias sees the stream's first values. */
    p.weight = tensor_init(MODEL_INIT_ZEROS);
    p.bias = tensor_init(MODEL_INIT_NORMAL);
    p.bias.mean = 3.0;
    p.bias.std = 0.5;
    a = load_ok(&p, &mc);
    struct rng r;
    rng_seed(&r, 7, "w");
    for (int o = 0; o < 5; o++)
        assert_true(a.bias[o] == (real)(3.0 + 0.5 * rng_normal(&r)));
    done(&a, &mc);
    p.bias.kind = MODEL_TENSOR_NONE;

    p.weight = tensor_init(MODEL_INIT_XAVIER_UNIFORM);
    p.weight.scale = 0.5;
    a = load_ok(&p, &mc);
    rng_seed(&r, 7, "w");
    double b = 0.5 * sqrt(6.0 / (4.0 + 5.0));
    for (int k = 0; k < 20; k++) {
        assert_true(a.values[k] == (real)(-b + 2.0 * b * rng_uniform(&r)));
        assert_true(fabs((double)a.values[k]) <= b);
    }
    done(&a, &mc);

    p.weight = tensor_init(MODEL_INIT_UNIFORM);
    a = load_ok(&p, &mc);
    rng_seed(&r, 7, "w");
    for (int k = 0; k < 20; k++)
        assert_true(a.values[k] == (real)(-1.0 + 2.0 * rng_uniform(&r)));
    done(&a, &mc);

    p.weight = tensor_init(MODEL_INIT_NORMAL);
    desc.seed = 99; /* the model seed picks the stream */
    a = load_ok(&p, &mc);
    rng_seed(&r, 99, "w");
    for (int k = 0; k < 20; k++)
        assert_true(a.values[k] == (real)(0.0 + 1.0 * rng_normal(&r)));
    done(&a, &mc);
}

/* Known answers from an independent Python implementation of the generator and the
 * initialisers (run once with /usr/bin/python3, values pasted): a dense [2, 3] kaiming
 * weight (fan_in 2, so std 1) then an xavier bias (b = sqrt(6 / 5)) of projection
 * "w_rec" under model seed 7, and a random 3 x 4 structure with prob 0.5, seed 42,
 * projection "sp". Tolerance 1e-14 relative before rounding to real (libm's log and cos
 * may differ from CPython's by an ulp). */
static void
test_param_known_answers(void **state)
{
    (void)state;
    static const double w[6] = {-0.8181374485943328, -0.2215340738049563, -0.9818410020045727,
                                -1.2262250536247168, 1.1455296566393083,  -0.2754048308522271};
    static const double b[3] = {0.09197297241848057, 0.9498073044076047, 0.22543657261706018};
    struct model_proj p = proj("w_rec", MODEL_OP_DENSE, 2, 3);
    p.bias = tensor_init(MODEL_INIT_XAVIER_UNIFORM);
    struct mem_counter mc;
    struct param a = load_ok(&p, &mc);
    for (int k = 0; k < 6; k++)
        assert_true(fabs((double)a.values[k] - w[k]) <= 1e-14 + 2 * (double)REAL_EPS * fabs(w[k]));
    for (int k = 0; k < 3; k++)
        assert_true(fabs((double)a.bias[k] - b[k]) <= 1e-14 + 2 * (double)REAL_EPS * fabs(b[k]));
    done(&a, &mc);

    static const int keep[12] = {1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0};
    p = proj("sp", MODEL_OP_SPARSE, 3, 4);
    p.weight.kind = MODEL_TENSOR_RANDOM;
    p.weight.prob = 0.5;
    p.weight.seed = 42;
    p.weight.init = MODEL_INIT_ONES;
    a = load_ok(&p, &mc);
    int64_t k = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a.indptr[i], k);
        for (int o = 0; o < 4; o++)
            if (keep[i * 4 + o])
                assert_int_equal(a.indices[k++], o);
    }
    assert_int_equal(a.count, 5);
    assert_int_equal(a.indptr[3], 5);
    done(&a, &mc);
}

/* Kaiming's std over 200 x 500 draws is within 2% of scale * sqrt(2 / I) (the
 * standard error of a sample std over 10^5 draws is 0.22%). */
static void
test_param_kaiming_statistics(void **state)
{
    (void)state;
    struct model_proj p = proj("big", MODEL_OP_DENSE, 200, 500);
    struct mem_counter mc;
    struct param a = load_ok(&p, &mc);
    double s1 = 0, s2 = 0;
    for (int64_t k = 0; k < a.count; k++) {
        s1 += (double)a.values[k];
        s2 += (double)a.values[k] * (double)a.values[k];
    }
    double mean = s1 / (double)a.count;
    double sd = sqrt(s2 / (double)a.count - mean * mean);
    double want = sqrt(2.0 / 200.0);
    assert_true(fabs(mean) < 0.02 * want);
    assert_true(fabs(sd / want - 1.0) < 0.02);
    done(&a, &mc);
}

/* Elemwise: fan_in = fan_out = 1, shape [O]. */
static void
test_param_elemwise_fans(void **state)
{
    (void)state;
    struct model_proj p = proj("e", MODEL_OP_ELEMWISE, 6, 6);
    struct mem_counter mc;
    struct param a = load_ok(&p, &mc);
    assert_int_equal(a.count, 6);
    struct rng r;
    rng_seed(&r, 7, "e");
    for (int k = 0; k < 6; k++)
        assert_true(a.values[k] == (real)(1.0 * sqrt(2.0 / 1.0) * rng_normal(&r)));
    done(&a, &mc);
    assert_true(param_fan_in_dense(&p) == 1.0);
    p.weight = tensor_init(MODEL_INIT_XAVIER_UNIFORM);
    p.bias = tensor_init(MODEL_INIT_XAVIER_UNIFORM);
    a = load_ok(&p, &mc);
    for (int k = 0; k < 6; k++) {
        assert_true(fabs((double)a.values[k]) <= sqrt(3.0));
        assert_true(fabs((double)a.bias[k]) <= sqrt(3.0));
    }
    done(&a, &mc);
    p.op = MODEL_OP_DENSE;
    assert_true(param_fan_in_dense(&p) == 6.0);
}

/* A projection's values depend on (model seed, its name) only: another projection in
 * the model, loaded before or not at all, changes nothing. */
static void
test_param_substreams_independent(void **state)
{
    (void)state;
    struct mem_counter mc, mc2, mc3;
    struct model_proj p = proj("a", MODEL_OP_DENSE, 5, 5);
    struct param a1 = load_ok(&p, &mc);
    struct model_proj q = p;
    q.name = "b";
    struct param b = load_ok(&q, &mc2);
    struct param a2 = load_ok(&p, &mc3);
    assert_memory_equal(a1.values, a2.values, 25 * sizeof(real));
    assert_memory_not_equal(a1.values, b.values, 25 * sizeof(real));
    done(&a1, &mc);
    done(&b, &mc2);
    done(&a2, &mc3);
}

/* ---- files ---------------------------------------------------------------------------- */

static void
test_param_dense_from_file(void **state)
{
    (void)state;
    float w[6] = {1, 2, 3, 4, 5, 6};
    double w64[6] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
    const int64_t shape[2] = {2, 3};
    write_npy("w.npy", NPY_F32, 2, shape, w);
    write_npy("w64.npy", NPY_F64, 2, shape, w64);
    struct model_proj p = proj("w", MODEL_OP_DENSE, 2, 3);
    p.weight = tensor_file("w.npy");
    struct mem_counter mc;
    struct param a = load_ok(&p, &mc);
    for (int k = 0; k < 6; k++)
        assert_true(a.values[k] == (real)w[k]);
    done(&a, &mc);
    p.weight = tensor_file("w64.npy");
    const float bias[3] = {-1, 0, 1};
    write_vec_f32("b.npy", 3, bias);
    p.bias = tensor_file("b.npy");
    a = load_ok(&p, &mc);
    for (int k = 0; k < 6; k++)
        assert_true(a.values[k] == (real)w64[k]);
    for (int k = 0; k < 3; k++)
        assert_true(a.bias[k] == (real)bias[k]);
    done(&a, &mc);
}

static void
test_param_file_errors(void **state)
{
    (void)state;
    struct model_proj p = proj("w", MODEL_OP_DENSE, 8, 3);
    p.weight = tensor_file("@wrong_shape.npy");
    /* The exact format of DESIGN §2.4. */
    struct param out;
    struct err e;
    assert_int_equal(param_load(&desc, &p, &fs, mem_default(), &out, &e), -1);
    assert_string_equal(e.msg, "m.yaml:12:5: projections.w.weight: @wrong_shape.npy: shape (4, 3), "
                               "expected (8, 3)");
    assert_int_equal(e.code, ERR_MODEL);

    p.in_size = 4;
    p.out_size = 4;
    load_fails(&p, "weight", "shape (4, 3), expected (4, 4)");
    p.weight = tensor_file("@ok_i32.npy");
    load_fails(&p, "weight", "@ok_i32.npy: dtype int32, expected float32 or float64");
    p.weight = tensor_file("@int8.npy");
    load_fails(&p, "weight", "wrong dtype '|i1'");
    p.weight = tensor_file("@complex.npy");
    load_fails(&p, "weight", "wrong dtype '<c8'");
    p.weight = tensor_file("@bigendian.npy");
    load_fails(&p, "weight", "big-endian");
    p.weight = tensor_file("@fortran.npy");
    load_fails(&p, "weight", "fortran_order True");
    p.weight = tensor_file("@truncated.npy");
    load_fails(&p, "weight", "truncated");
    p.weight = tensor_file("missing.npy");
    load_fails(&p, "weight", "missing.npy");

    /* Elemwise wants [O]; a bias wants [O]. */
    p = proj("e", MODEL_OP_ELEMWISE, 3, 3);
    p.weight = tensor_file("@ok_f32.npy");
    load_fails(&p, "weight", "shape (2, 3), expected (3,)");
    p.weight = tensor_init(MODEL_INIT_ONES);
    p.bias = tensor_file("@ok_f32.npy");
    p.bias.pos.line = 14;
    load_fails(&p, "bias", "shape (2, 3), expected (3,)");
}

/* NaN or Inf in a file, or a float64 that overflows float, is rejected. */
static void
test_param_rejects_non_finite_values(void **state)
{
    (void)state;
    double w[2] = {1.0, (double)NAN};
    const int64_t n = 2;
    write_npy("wbad.npy", NPY_F64, 1, &n, w);
    struct model_proj p = proj("e", MODEL_OP_ELEMWISE, 2, 2);
    p.weight = tensor_file("wbad.npy");
    load_fails(&p, "weight", "element 1 (nan) is not a finite");
    w[1] = (double)INFINITY;
    write_npy("wbad.npy", NPY_F64, 1, &n, w);
    load_fails(&p, "weight", "not a finite");
#if !defined(REAL_DOUBLE)
    w[1] = 1e300;
    write_npy("wbad.npy", NPY_F64, 1, &n, w);
    load_fails(&p, "weight", "element 1 (1e+300) is not a finite float");
    p.weight = tensor_init(MODEL_INIT_CONSTANT);
    p.weight.value = 1e300;
    load_fails(&p, "weight", "init constant gives a value that is not a finite float");
#endif
}

/* Dense tensors over 2^31 - 1 elements are refused before anything is allocated. */
static void
test_param_rejects_absurd_size(void **state)
{
    (void)state;
    struct model_proj p = proj("huge", MODEL_OP_DENSE, 65536, 65536);
    struct mem_counter mc;
    mem_counter_init(&mc, NULL);
    struct param out;
    struct err e;
    assert_int_equal(param_load(&desc, &p, &fs, &mc.mem, &out, &e), -1);
    assert_non_null(strstr(e.msg, "exceed 2^31 - 1"));
    assert_int_equal(mc.n_calls, 0);
    p = proj("huge", MODEL_OP_SPARSE, 1 << 20, 1 << 20);
    p.weight.kind = MODEL_TENSOR_RANDOM;
    p.weight.prob = 0.5;
    assert_int_equal(param_load(&desc, &p, &fs, &mc.mem, &out, &e), -1);
    assert_non_null(strstr(e.msg, "too large"));
    assert_int_equal(mc.n_calls, 0);
}

/* ---- sparse ----------------------------------------------------------------------------- */

/* A 3 x 4 CSR: row 0 {1, 3}, row 1 {}, row 2 {0, 1, 2}. */
static const float csr_v[5] = {10, 11, 20, 21, 22};
static const int32_t csr_ix[5] = {1, 3, 0, 1, 2};
static const int64_t csr_ip[4] = {0, 2, 2, 5};

static struct model_proj
csr_proj(void)
{
    write_vec_f32("v.npy", 5, csr_v);
    write_vec_i32("ix.npy", 5, csr_ix);
    write_vec_i64("ip.npy", 4, csr_ip);
    struct model_proj p = proj("s", MODEL_OP_SPARSE, 3, 4);
    p.weight = tensor_file("v.npy");
    p.weight.indices = "ix.npy";
    p.weight.indptr = "ip.npy";
    return p;
}

static void
test_param_sparse_csr(void **state)
{
    (void)state;
    struct model_proj p = csr_proj();
    p.bias = tensor_init(MODEL_INIT_KAIMING_NORMAL);
    struct mem_counter mc;
    struct param a = load_ok(&p, &mc);
    assert_int_equal(a.count, 5);
    for (int k = 0; k < 5; k++) {
        assert_true(a.values[k] == (real)csr_v[k]);
        assert_int_equal(a.indices[k], csr_ix[k]);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(a.indptr[i], csr_ip[i]);
    /* A sparse bias uses the dense fan_in I = 3. */
    struct rng r;
    rng_seed(&r, 7, "s");
    for (int o = 0; o < 4; o++)
        assert_true(a.bias[o] == (real)(1.0 * sqrt(2.0 / 3.0) * rng_normal(&r)));
    done(&a, &mc);
}

static void
test_param_sparse_csr_errors(void **state)
{
    (void)state;
    struct model_proj p = csr_proj();
    int32_t ix[5];
    int64_t ip[4];

    memcpy(ix, csr_ix, sizeof ix);
    ix[1] = 4;
    write_vec_i32("ix.npy", 5, ix);
    load_fails(&p, "weight", "ix.npy: index 4 at position 1 (row 0) out of range [0, 4)");
    ix[1] = -1;
    write_vec_i32("ix.npy", 5, ix);
    load_fails(&p, "weight", "out of range");
    memcpy(ix, csr_ix, sizeof ix);
    ix[3] = 0;
    write_vec_i32("ix.npy", 5, ix);
    load_fails(&p, "weight",
               "ix.npy: row 2 not strictly increasing: 0 after 0 at position 3 "
               "(duplicate)");
    ix[3] = 2;
    ix[4] = 1;
    write_vec_i32("ix.npy", 5, ix);
    load_fails(&p, "weight", "row 2 not strictly increasing: 1 after 2");
    write_vec_i32("ix.npy", 4, csr_ix);
    load_fails(&p, "weight", "ix.npy: shape (4,), expected (5,)");
    write_vec_f32("ix.npy", 5, csr_v);
    load_fails(&p, "weight", "ix.npy: dtype float32, expected int32 or int64");
    write_vec_i32("ix.npy", 5, csr_ix);

    memcpy(ip, csr_ip, sizeof ip);
    ip[0] = 1;
    write_vec_i64("ip.npy", 4, ip);
    load_fails(&p, "weight", "ip.npy: indptr[0] = 1, expected 0");
    ip[0] = 0;
    ip[2] = 1;
    write_vec_i64("ip.npy", 4, ip);
    load_fails(&p, "weight", "ip.npy: not monotonic: indptr[2] = 1 < indptr[1] = 2");
    ip[2] = 2;
    ip[3] = 4;
    write_vec_i64("ip.npy", 4, ip);
    load_fails(&p, "weight", "ip.npy: indptr[3] = 4, expected nnz = 5");
    write_vec_i64("ip.npy", 3, csr_ip);
    load_fails(&p, "weight", "ip.npy: shape (3,), expected (4,)");
    write_vec_i64("ip.npy", 4, csr_ip);

    p.weight.indices = NULL;
    load_fails(&p, "weight", "op: sparse needs indices and indptr");
    p.weight = tensor_init(MODEL_INIT_ONES);
    load_fails(&p, "weight", "op: sparse needs a structure");

    /* Sparse structure where it does not belong. */
    p = csr_proj();
    p.op = MODEL_OP_DENSE;
    load_fails(&p, "weight", "a sparse structure needs op: sparse");
    p = csr_proj();
    p.bias = p.weight;
    p.bias.pos.line = 20;
    load_fails(&p, "bias",
               "a bias is a plain [O] tensor, not a sparse structure "
               "(indices/indptr)");
}

/* COO is sorted row-major into CSR, values following their entries. */
static void
test_param_sparse_coo(void **state)
{
    (void)state;
    const int64_t rows[5] = {2, 0, 2, 0, 2};
    const int32_t cols[5] = {2, 3, 0, 1, 1};
    const float vals[5] = {22, 11, 20, 10, 21};
    write_vec_i64("r.npy", 5, rows);
    write_vec_i32("c.npy", 5, cols);
    write_vec_f32("v.npy", 5, vals);
    struct model_proj p = proj("s", MODEL_OP_SPARSE, 3, 4);
    p.weight.kind = MODEL_TENSOR_COO;
    p.weight.rows = "r.npy";
    p.weight.cols = "c.npy";
    p.weight.values = "v.npy";
    struct mem_counter mc;
    struct param a = load_ok(&p, &mc);
    assert_int_equal(a.count, 5);
    for (int k = 0; k < 5; k++) {
        assert_true(a.values[k] == (real)csr_v[k]);
        assert_int_equal(a.indices[k], csr_ix[k]);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(a.indptr[i], csr_ip[i]);
    done(&a, &mc);

    int64_t r2[5];
    memcpy(r2, rows, sizeof r2);
    r2[4] = 0; /* (0, 1) now appears twice: positions 3 and 4 */
    write_vec_i64("r.npy", 5, r2);
    load_fails(&p, "weight", "r.npy/c.npy: duplicate entry (0, 1) at positions 3 and 4");
    r2[4] = 3;
    write_vec_i64("r.npy", 5, r2);
    load_fails(&p, "weight", "r.npy: row 3 at position 4 out of range [0, 3)");
    write_vec_i64("r.npy", 5, rows);
    int32_t c2[5];
    memcpy(c2, cols, sizeof c2);
    c2[0] = -2;
    write_vec_i32("c.npy", 5, c2);
    load_fails(&p, "weight", "c.npy: column -2 at position 0 out of range [0, 4)");
    write_vec_i32("c.npy", 4, cols);
    load_fails(&p, "weight", "c.npy: shape (4,), expected (5,)");
    const int64_t shape2[2] = {5, 1};
    write_npy("c.npy", NPY_I32, 2, shape2, cols);
    load_fails(&p, "weight", "c.npy: shape (5, 1), expected (5,)");
    write_vec_i32("c.npy", 5, cols);
    write_npy("v.npy", NPY_F32, 2, shape2, vals);
    load_fails(&p, "weight", "v.npy: shape (5, 1), expected a 1-D array");
    p.op = MODEL_OP_ELEMWISE;
    load_fails(&p, "weight", "a sparse structure needs op: sparse");
}

/* The random structure: one uniform per (i, o), row-major, from rng_seed(spec seed, name),
 * kept when u < prob; values from the projection's stream, kaiming with the column's
 * stored count as fan_in. */
static void
test_param_sparse_random(void **state)
{
    (void)state;
    enum { NI = 20, NO = 30 };
    struct model_proj p = proj("rs", MODEL_OP_SPARSE, NI, NO);
    p.weight.kind = MODEL_TENSOR_RANDOM;
    p.weight.prob = 0.3;
    p.weight.seed = 42;
    p.weight.init = MODEL_INIT_KAIMING_NORMAL;
    p.weight.scale = 1.5;
    p.bias = tensor_init(MODEL_INIT_NORMAL);
    struct mem_counter mc;
    struct param a = load_ok(&p, &mc);

    struct rng s;
    rng_seed(&s, 42, "rs");
    int64_t k = 0, fan[NO] = {0};
    int keep[NI][NO];
    for (int i = 0; i < NI; i++) {
        assert_int_equal(a.indptr[i], k);
        for (int o = 0; o < NO; o++) {
            keep[i][o] = rng_uniform(&s) < 0.3;
            if (keep[i][o]) {
                assert_int_equal(a.indices[k], o);
                fan[o]++;
                k++;
            }
        }
    }
    assert_int_equal(a.indptr[NI], k);
    assert_int_equal(a.count, k);
    assert_true(k > 0.2 * NI * NO && k < 0.4 * NI * NO);
    struct rng v;
    rng_seed(&v, 7, "rs");
    for (int64_t j = 0; j < k; j++) {
        int64_t f = fan[a.indices[j]];
        assert_true(a.values[j] ==
                    (real)(1.5 * sqrt(2.0 / (double)(f > 0 ? f : 1)) * rng_normal(&v)));
    }
    for (int o = 0; o < NO; o++)
        assert_true(a.bias[o] == (real)(0.0 + 1.0 * rng_normal(&v)));
    int32_t ix0[16];
    memcpy(ix0, a.indices, sizeof ix0);
    done(&a, &mc);

    /* The structure does not depend on the model seed; the values do. */
    desc.seed = 8;
    a = load_ok(&p, &mc);
    assert_memory_equal(a.indices, ix0, sizeof ix0);
    done(&a, &mc);
    desc.seed = 7;

    p.weight.prob = 0.0;
    a = load_ok(&p, &mc);
    assert_int_equal(a.count, 0);
    for (int i = 0; i <= NI; i++)
        assert_int_equal(a.indptr[i], 0);
    done(&a, &mc);
    p.weight.prob = 1.0;
    a = load_ok(&p, &mc);
    assert_int_equal(a.count, NI * NO);
    done(&a, &mc);
    p.weight.prob = 1.5;
    load_fails(&p, "weight", "prob 1.5 outside [0, 1]");
    p.weight.prob = (double)NAN;
    load_fails(&p, "weight", "outside [0, 1]");
}

/* Every allocation of a load may fail: the error is ERR_NOMEM and nothing leaks. */
static void
test_param_out_of_memory_at_every_allocation(void **state)
{
    (void)state;
    struct model_proj specs[3];
    specs[0] = csr_proj();
    specs[0].bias = tensor_init(MODEL_INIT_ONES);
    specs[1] = proj("rs", MODEL_OP_SPARSE, 5, 6);
    specs[1].weight.kind = MODEL_TENSOR_RANDOM;
    specs[1].weight.prob = 0.5;
    const int64_t rows[2] = {1, 0};
    const int32_t cols[2] = {0, 1};
    const float vals[2] = {1, 2};
    write_vec_i64("r.npy", 2, rows);
    write_vec_i32("c.npy", 2, cols);
    write_vec_f32("b.npy", 2, vals);
    specs[2] = proj("coo", MODEL_OP_SPARSE, 2, 2);
    specs[2].weight.kind = MODEL_TENSOR_COO;
    specs[2].weight.rows = "r.npy";
    specs[2].weight.cols = "c.npy";
    specs[2].weight.values = "b.npy";
    for (int s = 0; s < 3; s++) {
        for (long fail_at = 0;; fail_at++) {
            struct mem_counter mc;
            mem_counter_init(&mc, NULL);
            mc.fail_at = fail_at;
            struct param out;
            memset(&out, 0, sizeof out);
            struct err e;
            err_clear(&e);
            int rc = param_load(&desc, &specs[s], &fs, &mc.mem, &out, &e);
            if (rc == 0) {
                assert_true(fail_at > 2);
                param_fini(&out, &mc.mem);
                assert_int_equal(mc.live_bytes, 0);
                break;
            }
            assert_int_equal(e.code, ERR_NOMEM);
            assert_int_equal(mc.live_bytes, 0);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_dense_kaiming_and_bias_order),
        cmocka_unit_test(test_param_initialisers),
        cmocka_unit_test(test_param_known_answers),
        cmocka_unit_test(test_param_kaiming_statistics),
        cmocka_unit_test(test_param_elemwise_fans),
        cmocka_unit_test(test_param_substreams_independent),
        cmocka_unit_test(test_param_dense_from_file),
        cmocka_unit_test(test_param_file_errors),
        cmocka_unit_test(test_param_rejects_non_finite_values),
        cmocka_unit_test(test_param_rejects_absurd_size),
        cmocka_unit_test(test_param_sparse_csr),
        cmocka_unit_test(test_param_sparse_csr_errors),
        cmocka_unit_test(test_param_sparse_coo),
        cmocka_unit_test(test_param_sparse_random),
        cmocka_unit_test(test_param_out_of_memory_at_every_allocation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
