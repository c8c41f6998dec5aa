/* Tests of the .npy reader and writer: round trips, numpy's own files, and hostile
 * headers and data (each must give a message naming the file, never a crash). */
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
#include "rng.h"

/* ---- helpers -------------------------------------------------------------------------- */

/* Test data lives under $ETRACE_SRC (default "."), the repository root. */
static void
data_path(char *buf, size_t len, const char *file)
{
    const char *src = getenv("ETRACE_SRC");
    snprintf(buf, len, "%s/tests/engine/npy_files/%s", src && *src ? src : ".", file);
}

static char tmp_dir[256];

static int
setup_tmp(void **state)
{
    (void)state;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/npy_test.XXXXXX");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int
teardown_tmp(void **state)
{
    (void)state;
    static const char *const files[] = {"rt.npy", "mine.npy", "empty.npy", "neg.npy"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tmp_dir, files[i]);
        unlink(path);
    }
    return rmdir(tmp_dir);
}

/* An image: magic, version major.minor, header length (hlen_override >= 0 replaces the
 * real one), header text, data bytes. Returns the length. */
static size_t
build(unsigned char *buf, int major, int minor, const char *header, long hlen_override,
      const void *data, size_t data_len)
{
    size_t n = 0;
    memcpy(buf, "\x93NUMPY", 6);
    n = 6;
    buf[n++] = (unsigned char)major;
    buf[n++] = (unsigned char)minor;
    size_t h = strlen(header);
    unsigned long hl = hlen_override >= 0 ? (unsigned long)hlen_override : h;
    buf[n++] = (unsigned char)(hl & 0xff);
    buf[n++] = (unsigned char)((hl >> 8) & 0xff);
    if (major >= 2) {
        buf[n++] = (unsigned char)((hl >> 16) & 0xff);
        buf[n++] = (unsigned char)((hl >> 24) & 0xff);
    }
    memcpy(buf + n, header, h);
    n += h;
    if (data_len)
        memcpy(buf + n, data, data_len);
    return n + data_len;
}

/* Parses buf and expects failure with code and a message that starts with "t.npy: " and
 * contains `needle`; checks that nothing is left allocated. */
static void
expect_fail_code(const void *buf, size_t len, enum err_code code, const char *needle)
{
    struct mem_counter mc;
    mem_counter_init(&mc, NULL);
    struct npy a;
    struct err e;
    err_clear(&e);
    int rc = npy_parse(buf, len, "t.npy", &mc.mem, &a, &e);
    if (rc == 0 || e.code != code || strncmp(e.msg, "t.npy: ", 7) != 0 || !strstr(e.msg, needle))
        print_error("rc %d code %d msg '%s' (want '%s')\n", rc, e.code, e.msg, needle);
    assert_int_equal(rc, -1);
    assert_int_equal(e.code, code);
    assert_true(strncmp(e.msg, "t.npy: ", 7) == 0);
    assert_non_null(strstr(e.msg, needle));
    assert_int_equal(mc.live_bytes, 0);
}

static void
expect_fail(const void *buf, size_t len, const char *needle)
{
    expect_fail_code(buf, len, ERR_NPY, needle);
}

static void
expect_header_fail(const char *header, const char *needle)
{
    unsigned char buf[512];
    size_t n = build(buf, 1, 0, header, -1, NULL, 0);
    expect_fail(buf, n, needle);
}

static void
expect_file_fail(const char *file, const char *needle)
{
    char path[512];
    data_path(path, sizeof path, file);
    struct npy a;
    struct err e;
    err_clear(&e);
    int rc = npy_load_file(path, mem_default(), &a, &e);
    if (rc == 0 || !strstr(e.msg, needle) || !strstr(e.msg, file))
        print_error("%s: rc %d msg '%s' (want '%s')\n", file, rc, e.msg, needle);
    assert_int_equal(rc, -1);
    assert_int_equal(e.code, ERR_NPY);
    assert_non_null(strstr(e.msg, path)); /* names the file */
    assert_non_null(strstr(e.msg, needle));
}

/* ---- round trips ---------------------------------------------------------------------- */

static void
round_trip(enum npy_dtype t, int ndim, const int64_t *shape, const void *data)
{
    char path[512];
    snprintf(path, sizeof path, "%s/rt.npy", tmp_dir);
    struct err e;
    err_clear(&e);
    assert_int_equal(npy_write_file(path, t, ndim, shape, data, &e), 0);

    struct mem_counter mc;
    mem_counter_init(&mc, NULL);
    void *buf;
    size_t len;
    assert_int_equal(npy_read_file(path, &mc.mem, &buf, &len, &e), 0);
    /* Format 1.0, data at a multiple of 64, header ends with '\n'. */
    const unsigned char *b = buf;
    assert_memory_equal(b, "\x93NUMPY\x01\x00", 8);
    size_t data_off = 10 + (size_t)(b[8] | b[9] << 8);
    assert_int_equal(data_off % 64, 0);
    assert_int_equal(b[data_off - 1], '\n');
    mem_free(&mc.mem, &buf);

    struct npy a;
    assert_int_equal(npy_load_file(path, &mc.mem, &a, &e), 0);
    assert_int_equal(a.dtype, t);
    assert_int_equal(a.ndim, ndim);
    int64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        assert_int_equal(a.shape[i], shape[i]);
        count *= shape[i];
    }
    assert_int_equal(a.count, count);
    if (count)
        assert_memory_equal(a.data, data, (size_t)count * npy_dtype_size(t));
    npy_fini(&a, &mc.mem);
    npy_fini(&a, &mc.mem); /* twice is fine */
    assert_null(a.data);
    assert_int_equal(mc.live_bytes, 0);
}

static void
test_npy_round_trip_all_dtypes(void **state)
{
    (void)state;
    const float f[6] = {0.0f, -1.5f, 3.25f, 1e-30f, -1e30f, 7.0f};
    const double d[6] = {0.0, -1.5, 3.25, 1e-300, -1e300, 7.0};
    const int32_t i4[6] = {0, -1, INT32_MAX, INT32_MIN, 5, 6};
    const int64_t i8[6] = {0, -1, INT64_MAX, INT64_MIN, INT64_C(1) << 40, 6};
    const int64_t s23[2] = {2, 3}, s6[1] = {6}, s1111[4] = {1, 1, 1, 6};
    round_trip(NPY_F32, 2, s23, f);
    round_trip(NPY_F64, 2, s23, d);
    round_trip(NPY_I32, 1, s6, i4);
    round_trip(NPY_I64, 4, s1111, i8);
    round_trip(NPY_F64, 0, NULL, d); /* a scalar */
    const int64_t s0[2] = {0, 5};
    round_trip(NPY_F32, 2, s0, f); /* empty */
    assert_int_equal(npy_dtype_size(NPY_F32), 4);
    assert_int_equal(npy_dtype_size(NPY_I64), 8);
}

/* Our writer produces byte-for-byte what numpy 1.24's np.save wrote. */
static void
test_npy_write_matches_numpy(void **state)
{
    (void)state;
    char ref[512], path[512];
    data_path(ref, sizeof ref, "ok_f32.npy");
    snprintf(path, sizeof path, "%s/mine.npy", tmp_dir);
    const float a[6] = {0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f};
    const int64_t shape[2] = {2, 3};
    struct err e;
    assert_int_equal(npy_write_file(path, NPY_F32, 2, shape, a, &e), 0);
    void *x, *y;
    size_t nx, ny;
    assert_int_equal(npy_read_file(ref, mem_default(), &x, &nx, &e), 0);
    assert_int_equal(npy_read_file(path, mem_default(), &y, &ny, &e), 0);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    mem_free(mem_default(), &x);
    mem_free(mem_default(), &y);
}

static void
test_npy_reads_numpy_files(void **state)
{
    (void)state;
    char path[512];
    struct npy a;
    struct err e;
    double d[6];
    int64_t q[4];
    const char *floats[] = {"ok_f32.npy", "ok_f64.npy", "ok_v2.npy"};
    for (int f = 0; f < 3; f++) {
        data_path(path, sizeof path, floats[f]);
        assert_int_equal(npy_load_file(path, mem_default(), &a, &e), 0);
        assert_int_equal(a.ndim, 2);
        assert_int_equal(a.shape[0], 2);
        assert_int_equal(a.shape[1], 3);
        assert_int_equal(npy_to_double(&a, d), 0);
        assert_int_equal(npy_to_int64(&a, q), -1);
        for (int i = 0; i < 6; i++)
            assert_true(d[i] == i * 0.25);
        npy_fini(&a, mem_default());
    }
    data_path(path, sizeof path, "ok_i32.npy");
    assert_int_equal(npy_load_file(path, mem_default(), &a, &e), 0);
    assert_int_equal(a.dtype, NPY_I32);
    assert_int_equal(npy_to_int64(&a, q), 0);
    assert_int_equal(npy_to_double(&a, d), -1);
    assert_true(q[0] == 3 && q[1] == -1 && q[2] == INT32_MAX);
    npy_fini(&a, mem_default());
    data_path(path, sizeof path, "ok_i64.npy");
    assert_int_equal(npy_load_file(path, mem_default(), &a, &e), 0);
    assert_int_equal(a.dtype, NPY_I64);
    assert_int_equal(npy_to_int64(&a, q), 0);
    assert_true(q[0] == 1 && q[1] == -2 && q[2] == INT64_C(1) << 40 && q[3] == 0);
    npy_fini(&a, mem_default());
}

/* Hand-written headers numpy would also accept: other spacing, key order, '=' byte
 * order, no trailing comma, 3.0 format, a scalar. */
static void
test_npy_accepts_header_variants(void **state)
{
    (void)state;
    const float f[2] = {1.0f, 2.0f};
    const char *headers[] = {
        "{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}\n",
        "{\"descr\":\"=f4\",\"fortran_order\":False,\"shape\":(2,)}",
        "{ 'descr' : '<f4' , 'fortran_order' : False , 'shape' : ( 2 , ) , }   \n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2)}\n",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        unsigned char buf[256];
        for (int major = 1; major <= 3; major++) {
            size_t n = build(buf, major, 0, headers[i], -1, f, sizeof f);
            struct npy a;
            struct err e;
            err_clear(&e);
            if (npy_parse(buf, n, "t.npy", mem_default(), &a, &e) != 0)
                print_error("header %zu v%d: %s\n", i, major, e.msg);
            assert_int_equal(e.code, ERR_OK);
            assert_int_equal(a.count, 2);
            assert_memory_equal(a.data, f, sizeof f);
            npy_fini(&a, mem_default());
        }
    }
    unsigned char buf[256];
    const double one = 4.5;
    size_t n = build(buf, 1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': ()}", -1, &one,
                     sizeof one);
    struct npy a;
    struct err e;
    assert_int_equal(npy_parse(buf, n, "t.npy", mem_default(), &a, &e), 0);
    assert_int_equal(a.ndim, 0);
    assert_int_equal(a.count, 1);
    assert_true(*(double *)a.data == 4.5);
    npy_fini(&a, mem_default());
}

/* ---- hostile input -------------------------------------------------------------------- */

static void
test_npy_rejects_bad_magic(void **state)
{
    (void)state;
    expect_fail("", 0, "bad magic");
    expect_fail("\x93NUM", 4, "bad magic");
    expect_fail("\x93NUMPZ\x01\x00\x00\x00", 10, "bad magic");
    expect_fail("PK\x03\x04 a zip file", 17, "bad magic");
}

static void
test_npy_rejects_bad_version(void **state)
{
    (void)state;
    const char *h = "{'descr': '<f4', 'fortran_order': False, 'shape': (0,)}";
    unsigned char buf[256];
    size_t n = build(buf, 0, 0, h, -1, NULL, 0);
    expect_fail(buf, n, "unsupported format version 0.0");
    n = build(buf, 4, 0, h, -1, NULL, 0);
    expect_fail(buf, n, "unsupported format version 4.0");
    n = build(buf, 1, 1, h, -1, NULL, 0);
    expect_fail(buf, n, "unsupported format version 1.1");
    expect_fail("\x93NUMPY\x01", 7, "truncated");
    expect_fail("\x93NUMPY\x01\x00\x10", 9, "truncated");
    expect_fail("\x93NUMPY\x02\x00\x10\x00\x00", 11, "truncated");
}

static void
test_npy_rejects_header_beyond_file(void **state)
{
    (void)state;
    const char *h = "{'descr': '<f4', 'fortran_order': False, 'shape': (0,)}";
    unsigned char buf[256];
    size_t n = build(buf, 1, 0, h, 65535, NULL, 0);
    expect_fail(buf, n, "truncated: header of 65535 bytes");
    n = build(buf, 2, 0, h, 0xffffffffL, NULL, 0);
    expect_fail(buf, n, "truncated: header of 4294967295 bytes");
    n = build(buf, 1, 0, h, (long)strlen(h) + 1, NULL, 0);
    expect_fail(buf, n, "truncated: header");
}

static void
test_npy_rejects_malformed_dict(void **state)
{
    (void)state;
    expect_header_fail("", "not a dict");
    expect_header_fail("['descr', '<f4']", "not a dict");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)",
                       "expected ',' or '}'");
    expect_header_fail("{'descr' '<f4'}", "expected ':'");
    expect_header_fail("{descr: '<f4'}", "expected a quoted key");
    expect_header_fail("{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}",
                       "malformed header");
    expect_header_fail("{'descr': <f4, 'fortran_order': False, 'shape': (2,)}",
                       "'descr' is not a string");
    expect_header_fail("{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}",
                       "not True or False");
    expect_header_fail("{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,)}",
                       "not True or False");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", "not a tuple");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", "not a tuple");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (2,,)}",
                       "bad 'shape' tuple");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}",
                       "bad 'shape' tuple");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (2L,)}",
                       "bad 'shape' tuple");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x",
                       "text after the dict");
    expect_header_fail("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
                       "'shape': (2,)}",
                       "duplicate key 'descr'");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
                       "unexpected key 'x'");
    expect_header_fail("{'de\\x63r': '<f4'}", "expected a quoted key");
    /* A header containing NUL bytes and high bytes. */
    unsigned char buf[128];
    const char h[] = "{'descr': '<f\xff', 'fortran_order': False, 'shape': (2,)}";
    size_t n = build(buf, 1, 0, h, -1, NULL, 0);
    expect_fail(buf, n, "malformed header");
    n = build(buf, 1, 0, "{'descr'", 20, NULL, 0); /* header of 20: 12 NULs follow */
    memset(buf + 10 + 8, 0, 12);
    expect_fail(buf, 30, "malformed header");
}

static void
test_npy_rejects_missing_keys(void **state)
{
    (void)state;
    expect_header_fail("{'fortran_order': False, 'shape': (2,)}", "no 'descr' key");
    expect_header_fail("{'descr': '<f4', 'shape': (2,)}", "no 'fortran_order' key");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False}", "no 'shape' key");
    expect_header_fail("{}", "no 'descr' key");
}

static void
test_npy_rejects_fortran_order(void **state)
{
    (void)state;
    const float f[2] = {1, 2};
    unsigned char buf[256];
    size_t n =
        build(buf, 1, 0, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,)}", -1, f, sizeof f);
    expect_fail(buf, n, "fortran_order True");
    expect_file_fail("fortran.npy", "fortran_order True");
}

static void
test_npy_rejects_unsupported_dtypes(void **state)
{
    (void)state;
    expect_file_fail("bigendian.npy", "wrong dtype '>f4' (big-endian");
    expect_file_fail("int8.npy", "wrong dtype '|i1'");
    expect_file_fail("complex.npy", "wrong dtype '<c8'");
    expect_header_fail("{'descr': '<u4', 'fortran_order': False, 'shape': (0,)}",
                       "wrong dtype '<u4'");
    expect_header_fail("{'descr': '|f4', 'fortran_order': False, 'shape': (0,)}",
                       "wrong dtype '|f4'");
    expect_header_fail("{'descr': '>i8', 'fortran_order': False, 'shape': (0,)}", "big-endian");
    expect_header_fail("{'descr': '<f4 ', 'fortran_order': False, 'shape': (0,)}", "wrong dtype");
    expect_header_fail("{'descr': '', 'fortran_order': False, 'shape': (0,)}", "wrong dtype");
    expect_header_fail("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (0,)}",
                       "structured");
}

/* Shapes that are negative, too deep, or too large are rejected before allocating. */
static void
test_npy_rejects_bad_shapes(void **state)
{
    (void)state;
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
                       "negative dimension");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (3, -2)}",
                       "negative dimension");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (2147483648,)}",
                       "exceeds 2^31 - 1");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, "
                       "'shape': (99999999999999999999999999,)}",
                       "exceeds 2^31 - 1");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 32768)}",
                       "more than 2^31 - 1 elements");
    expect_header_fail("{'descr': '<f8', 'fortran_order': False, "
                       "'shape': (2147483647, 2147483647, 2147483647)}",
                       "more than 2^31 - 1 elements");
    expect_header_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1)}",
                       "more than 4 dimensions");
    /* A zero dimension makes the count 0 whatever the other (legal) dimensions are. */
    unsigned char buf[256];
    size_t n =
        build(buf, 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2147483647, 0)}", -1,
              NULL, 0);
    struct npy a;
    struct err e;
    assert_int_equal(npy_parse(buf, n, "t.npy", mem_default(), &a, &e), 0);
    assert_int_equal(a.count, 0);
    npy_fini(&a, mem_default());
    /* The largest legal count with too little data: a clear truncation error, and no
     * allocation of 8 GiB. */
    struct mem_counter mc;
    mem_counter_init(&mc, NULL);
    n = build(buf, 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2147483647,)}", -1,
              NULL, 0);
    assert_int_equal(npy_parse(buf, n, "t.npy", &mc.mem, &a, &e), -1);
    assert_non_null(strstr(e.msg, "truncated"));
    assert_int_equal(mc.n_calls, 0);
}

static void
test_npy_rejects_truncated_and_oversized_data(void **state)
{
    (void)state;
    const char *h = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2)}";
    const double d[5] = {1, 2, 3, 4, 5};
    unsigned char buf[256];
    size_t n = build(buf, 1, 0, h, -1, d, 3 * sizeof(double));
    expect_fail(buf, n, "truncated: data has 24 bytes, shape (2, 2) of '<f8' needs 32");
    n = build(buf, 1, 0, h, -1, d, 5 * sizeof(double));
    expect_fail(buf, n, "trailing bytes: data has 40 bytes");
    n = build(buf, 1, 0, h, -1, d, 4 * sizeof(double) - 1);
    expect_fail(buf, n, "truncated");
    expect_file_fail("truncated.npy", "truncated: data has 19 bytes");
    expect_file_fail("trailing.npy", "trailing bytes");
    expect_file_fail("header_only.npy", "truncated: header");
}

/* Random corruptions of a valid file (bytes flipped, cut, extended) never crash and
 * either parse or give a message naming the file. Replay with the printed seed. */
static void
test_npy_survives_random_corruption(void **state)
{
    (void)state;
    unsigned char good[256];
    const float f[6] = {1, 2, 3, 4, 5, 6};
    size_t n_good =
        build(good, 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", -1, f,
              sizeof f);
    const uint64_t seed = 20240924;
    print_message("corruption seed %llu\n", (unsigned long long)seed);
    struct rng r;
    rng_seed(&r, seed, "npy_fuzz");
    struct mem_counter mc;
    mem_counter_init(&mc, NULL);
    int n_ok = 0;
    for (int it = 0; it < 20000; it++) {
        unsigned char buf[300];
        memcpy(buf, good, n_good);
        size_t n = n_good;
        int n_mut = 1 + (int)(rng_next(&r) % 4);
        for (int k = 0; k < n_mut; k++) {
            uint64_t x = rng_next(&r);
            size_t pos = (size_t)(x >> 8) % n;
            switch (x % 4) {
            case 0:
                buf[pos] ^= (unsigned char)(1u << ((x >> 40) % 8));
                break;
            case 1:
                buf[pos] = (unsigned char)(x >> 48);
                break;
            case 2:
                n = pos;
                break;
            default:
                if (n < sizeof buf)
                    buf[n++] = (unsigned char)(x >> 48);
                break;
            }
            if (n == 0)
                break;
        }
        struct npy a;
        struct err e;
        err_clear(&e);
        if (npy_parse(buf, n, "t.npy", &mc.mem, &a, &e) == 0) {
            n_ok++;
            assert_true(a.count * (int64_t)npy_dtype_size(a.dtype) <= (int64_t)n);
            npy_fini(&a, &mc.mem);
        } else {
            assert_true(e.code == ERR_NPY);
            assert_true(strncmp(e.msg, "t.npy: ", 7) == 0);
        }
    }
    assert_int_equal(mc.live_bytes, 0);
    print_message("%d of 20000 corrupted images still parsed\n", n_ok);
}

static void
test_npy_out_of_memory(void **state)
{
    (void)state;
    const float f[2] = {1, 2};
    unsigned char buf[256];
    size_t n = build(buf, 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", -1, f,
                     sizeof f);
    struct mem_counter mc;
    mem_counter_init(&mc, NULL);
    mc.fail_at = 0;
    struct npy a;
    struct err e;
    assert_int_equal(npy_parse(buf, n, "t.npy", &mc.mem, &a, &e), -1);
    assert_int_equal(e.code, ERR_NOMEM);
    assert_non_null(strstr(e.msg, "t.npy"));
    char path[512];
    data_path(path, sizeof path, "ok_f32.npy");
    for (long k = 0; k < 2; k++) {
        mem_counter_init(&mc, NULL);
        mc.fail_at = k;
        assert_int_equal(npy_load_file(path, &mc.mem, &a, &e), -1);
        assert_int_equal(e.code, ERR_NOMEM);
        assert_int_equal(mc.live_bytes, 0);
    }
}

static void
test_npy_file_errors_name_the_path(void **state)
{
    (void)state;
    struct npy a;
    struct err e;
    char path[512];
    snprintf(path, sizeof path, "%s/does-not-exist.npy", tmp_dir);
    assert_int_equal(npy_load_file(path, mem_default(), &a, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_non_null(strstr(e.msg, path));
    assert_int_equal(npy_load_file(tmp_dir, mem_default(), &a, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_non_null(strstr(e.msg, "directory"));
    snprintf(path, sizeof path, "%s/no/such/dir/x.npy", tmp_dir);
    const float f = 1;
    assert_int_equal(npy_write_file(path, NPY_F32, 0, NULL, &f, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_non_null(strstr(e.msg, path));
    const int64_t bad[1] = {-1};
    snprintf(path, sizeof path, "%s/neg.npy", tmp_dir);
    assert_int_equal(npy_write_file(path, NPY_F32, 1, bad, &f, &e), -1);
    assert_int_equal(npy_write_file(path, NPY_F32, 5, bad, &f, &e), -1);
}

/* An empty file and a file of one byte are not .npy files. */
static void
test_npy_rejects_empty_file(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/empty.npy", tmp_dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fclose(f);
    struct npy a;
    struct err e;
    assert_int_equal(npy_load_file(path, mem_default(), &a, &e), -1);
    assert_int_equal(e.code, ERR_NPY);
    assert_non_null(strstr(e.msg, "bad magic"));
    assert_non_null(strstr(e.msg, path));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_round_trip_all_dtypes),
        cmocka_unit_test(test_npy_write_matches_numpy),
        cmocka_unit_test(test_npy_reads_numpy_files),
        cmocka_unit_test(test_npy_accepts_header_variants),
        cmocka_unit_test(test_npy_rejects_bad_magic),
        cmocka_unit_test(test_npy_rejects_bad_version),
        cmocka_unit_test(test_npy_rejects_header_beyond_file),
        cmocka_unit_test(test_npy_rejects_malformed_dict),
        cmocka_unit_test(test_npy_rejects_missing_keys),
        cmocka_unit_test(test_npy_rejects_fortran_order),
        cmocka_unit_test(test_npy_rejects_unsupported_dtypes),
        cmocka_unit_test(test_npy_rejects_bad_shapes),
        cmocka_unit_test(test_npy_rejects_truncated_and_oversized_data),
        cmocka_unit_test(test_npy_survives_random_corruption),
        cmocka_unit_test(test_npy_out_of_memory),
        cmocka_unit_test(test_npy_file_errors_name_the_path),
        cmocka_unit_test(test_npy_rejects_empty_file),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
