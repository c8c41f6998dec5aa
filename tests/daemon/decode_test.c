/* Tests of daemon/decode.c: the top-level field scan (counts, payload bytes, malformed
 * messages) and the byte-budget allocator (an unpack over budget fails, one within it
 * decodes as without a budget). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "decode.h"
#include "etrace.pb-c.h"

/* An Input of n reward signals, packed into a new buffer (*len bytes). */
static uint8_t *
rewards(size_t n, size_t *len)
{
    Etrace__Input in = ETRACE__INPUT__INIT;
    Etrace__Signal *s = calloc(n, sizeof(*s)), **sp = calloc(n, sizeof(*sp));
    assert_non_null(s);
    assert_non_null(sp);
    for (size_t i = 0; i < n; i++) {
        etrace__signal__init(&s[i]);
        s[i].kind_case = ETRACE__SIGNAL__KIND_REWARD;
        s[i].reward = 0.25f;
        sp[i] = &s[i];
    }
    in.signals = sp;
    in.n_signals = n;
    *len = etrace__input__get_packed_size(&in);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    etrace__input__pack(&in, buf);
    free(s);
    free(sp);
    return buf;
}

static void
test_decode_scan_counts_fields(void **state)
{
    struct decode_field f[4];
    size_t len;
    (void)state;
    uint8_t *buf = rewards(1000, &len);
    assert_int_equal(decode_scan(buf, len, f, 4), 0);
    assert_int_equal(f[1].count, 0);    /* frames */
    assert_int_equal(f[2].count, 1000); /* signals */
    assert_int_equal(f[2].bytes, 1000 * 5);
    assert_int_equal(f[2].last_len, 5);
    assert_int_equal(f[2].last_off, len - 5);
    free(buf);
    /* Varint, 64-bit and 32-bit fields, and one numbered past the table (skipped). */
    const uint8_t mixed[] = {0x08, 0x96, 0x01,                      /* 1: varint 150 */
                             0x11, 1,    2,    3,   4,  5, 6, 7, 8, /* 2: fixed64 */
                             0x1d, 1,    2,    3,   4,              /* 3: fixed32 */
                             0xa2, 0x06, 0x02, 'h', 'i'};           /* 100: "hi" */
    assert_int_equal(decode_scan(mixed, sizeof(mixed), f, 4), 0);
    assert_int_equal(f[1].count, 1);
    assert_int_equal(f[2].count, 1);
    assert_int_equal(f[3].count, 1);
    assert_int_equal(f[2].bytes, 0); /* only length-delimited payloads count bytes */
    assert_int_equal(decode_scan(NULL, 0, f, 4), 0);
    assert_int_equal(f[1].count + f[2].count + f[3].count, 0);
}

static void
test_decode_scan_refuses_malformed(void **state)
{
    struct decode_field f[4];
    (void)state;
    const uint8_t past_end[] = {0x12, 0x05, 0x25, 0x00}; /* length 5, 2 bytes follow */
    const uint8_t open_varint[] = {0x08, 0x80};          /* varint never ends */
    const uint8_t group[] = {0x0b};                      /* wire type 3 */
    const uint8_t field_zero[] = {0x02, 0x00};           /* field number 0 */
    const uint8_t short_fixed[] = {0x0d, 0x01, 0x02};    /* fixed32 cut short */
    const uint8_t long_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0x01}; /* 11 bytes */
    assert_int_equal(decode_scan(past_end, sizeof(past_end), f, 4), -1);
    assert_int_equal(decode_scan(open_varint, sizeof(open_varint), f, 4), -1);
    assert_int_equal(decode_scan(group, sizeof(group), f, 4), -1);
    assert_int_equal(decode_scan(field_zero, sizeof(field_zero), f, 4), -1);
    assert_int_equal(decode_scan(short_fixed, sizeof(short_fixed), f, 4), -1);
    assert_int_equal(decode_scan(long_varint, sizeof(long_varint), f, 4), -1);
}

static void
test_decode_budget_bounds_unpack(void **state)
{
    struct decode_budget b;
    size_t len;
    (void)state;
    uint8_t *buf = rewards(10000, &len); /* 70 KB that decode to ~700 KB */
    decode_budget_init(&b, 100000);
    assert_null(etrace__input__unpack(&b.a, len, buf));
    assert_true(b.exceeded);
    assert_true(b.used_bytes <= b.limit_bytes);
    decode_budget_init(&b, 4u << 20);
    Etrace__Input *in = etrace__input__unpack(&b.a, len, buf);
    assert_non_null(in);
    assert_false(b.exceeded);
    assert_int_equal(in->n_signals, 10000);
    assert_true(in->signals[9999]->reward == 0.25f);
    assert_true(b.used_bytes > 10000 * sizeof(Etrace__Signal)); /* what it really costs */
    etrace__input__free_unpacked(in, &b.a);
    free(buf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_scan_counts_fields),
        cmocka_unit_test(test_decode_scan_refuses_malformed),
        cmocka_unit_test(test_decode_budget_bounds_unpack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
