/* coding: fixed-width byte order, varint round trips at every length boundary, and rejection of
 * truncated, overlong and overflowing input. */
#include <criterion/criterion.h>

#include "base/coding.h"
#include "testutil.h"

Test(coding, fixed_little_endian)
{
    uint8_t b[8];
    coding_put_fixed16(b, 0x0102);
    cr_assert_eq(b[0], 0x02);
    cr_assert_eq(b[1], 0x01);
    cr_assert_eq(coding_get_fixed16(b), 0x0102);
    coding_put_fixed32(b, 0x01020304u);
    cr_assert_eq(b[0], 0x04);
    cr_assert_eq(b[3], 0x01);
    cr_assert_eq(coding_get_fixed32(b), 0x01020304u);
    coding_put_fixed64(b, 0x0102030405060708ull);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(b[i], 8 - i);
    }
    cr_assert_eq(coding_get_fixed64(b), 0x0102030405060708ull);
    coding_put_fixed64(b, UINT64_MAX);
    cr_assert_eq(coding_get_fixed64(b), UINT64_MAX);
    coding_put_fixed32(b, UINT32_MAX);
    cr_assert_eq(coding_get_fixed32(b), UINT32_MAX);
    coding_put_fixed16(b, 0xffff);
    cr_assert_eq(coding_get_fixed16(b), 0xffff);
}

static const uint64_t boundaries64[] = {
    0,
    1,
    127,
    128,
    (1ull << 14) - 1,
    1ull << 14,
    (1ull << 21) - 1,
    1ull << 21,
    (1ull << 28) - 1,
    1ull << 28,
    (1ull << 32) - 1,
    1ull << 32,
    (1ull << 35) - 1,
    1ull << 35,
    (1ull << 42),
    (1ull << 49),
    (1ull << 56) - 1,
    (1ull << 56),
    (1ull << 63) - 1,
    1ull << 63,
    UINT64_MAX,
};

static int expected_len(uint64_t v)
{
    int n = 1;
    while (v >= 128) {
        v >>= 7;
        n++;
    }
    return n;
}

Test(coding, varint64_round_trip_at_boundaries)
{
    for (size_t i = 0; i < sizeof boundaries64 / sizeof boundaries64[0]; i++) {
        uint64_t v = boundaries64[i];
        uint8_t b[CODING_MAX_VARINT64 + 1];
        uint8_t *end = coding_put_varint64(b, v);
        int len = (int)(end - b);
        cr_assert_eq(len, expected_len(v), "len of %llu", (unsigned long long)v);
        cr_assert_eq(coding_varint_length(v), len);
        cr_assert_leq(len, CODING_MAX_VARINT64);
        uint64_t got = 0;
        cr_assert_eq(coding_get_varint64(b, end, &got), end, "decode %llu", (unsigned long long)v);
        cr_assert_eq(got, v);
        /* Every strict prefix is truncated input. */
        for (int cut = 0; cut < len; cut++) {
            cr_assert_null(coding_get_varint64(b, b + cut, &got), "%llu cut at %d",
                           (unsigned long long)v, cut);
        }
    }
    uint8_t b[CODING_MAX_VARINT64];
    cr_assert_eq(coding_put_varint64(b, UINT64_MAX) - b, 10);
    cr_assert_eq(coding_put_varint64(b, 1ull << 63) - b, 10);
    cr_assert_eq(b[9], 0x01);
}

Test(coding, varint32_round_trip_at_boundaries)
{
    for (size_t i = 0; i < sizeof boundaries64 / sizeof boundaries64[0]; i++) {
        if (boundaries64[i] > UINT32_MAX) {
            continue;
        }
        uint32_t v = (uint32_t)boundaries64[i];
        uint8_t b[CODING_MAX_VARINT32 + 1];
        uint8_t *end = coding_put_varint32(b, v);
        int len = (int)(end - b);
        cr_assert_eq(len, expected_len(v));
        cr_assert_eq(coding_varint_length(v), len);
        uint32_t got = 0;
        cr_assert_eq(coding_get_varint32(b, end, &got), end, "decode %u", v);
        cr_assert_eq(got, v);
        /* A 32-bit encoding is also a valid 64-bit one, and the reverse for small values. */
        uint64_t got64 = 0;
        cr_assert_eq(coding_get_varint64(b, end, &got64), end);
        cr_assert_eq(got64, v);
        uint8_t b64[CODING_MAX_VARINT64];
        cr_assert_eq(coding_put_varint64(b64, v) - b64, len);
        cr_assert_eq(memcmp(b, b64, (size_t)len), 0);
        for (int cut = 0; cut < len; cut++) {
            cr_assert_null(coding_get_varint32(b, b + cut, &got), "%u cut at %d", v, cut);
        }
    }
    uint8_t b[CODING_MAX_VARINT32];
    cr_assert_eq(coding_put_varint32(b, UINT32_MAX) - b, 5);
    cr_assert_eq(b[4], 0x0f);
}

Test(coding, varint_random_round_trip_and_stream)
{
    tu_rng r;
    tu_rng_seed(&r, 42);
    enum { N = 5000 };
    static uint64_t vals[N];
    static uint8_t stream[N * CODING_MAX_VARINT64];
    uint8_t *p = stream;
    for (int i = 0; i < N; i++) {
        /* Spread over all bit widths, not just huge values. */
        vals[i] = tu_rng_next(&r) >> tu_rng_below(&r, 64);
        p = (i % 2) ? coding_put_varint64(p, vals[i]) : coding_put_varint32(p, (uint32_t)vals[i]);
    }
    const uint8_t *q = stream;
    for (int i = 0; i < N; i++) {
        if (i % 2) {
            uint64_t v;
            q = coding_get_varint64(q, p, &v);
            cr_assert_not_null(q);
            cr_assert_eq(v, vals[i]);
        } else {
            uint32_t v;
            q = coding_get_varint32(q, p, &v);
            cr_assert_not_null(q);
            cr_assert_eq(v, (uint32_t)vals[i]);
        }
    }
    cr_assert_eq(q, p);
}

Test(coding, empty_input_is_truncated)
{
    uint8_t b[1] = {0};
    uint32_t v32;
    uint64_t v64;
    cr_assert_null(coding_get_varint32(b, b, &v32));
    cr_assert_null(coding_get_varint64(b, b, &v64));
    /* A lone continuation byte. */
    b[0] = 0x80;
    cr_assert_null(coding_get_varint32(b, b + 1, &v32));
    cr_assert_null(coding_get_varint64(b, b + 1, &v64));
}

Test(coding, varint32_overlong_and_overflow)
{
    uint32_t v = 7;
    /* Six bytes: too long for 32 bits even though the value (0) would fit. */
    const uint8_t six[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    cr_assert_null(coding_get_varint32(six, six + sizeof six, &v));
    /* Five bytes whose last carries bits above bit 31. */
    const uint8_t big[] = {0xff, 0xff, 0xff, 0xff, 0x10};
    cr_assert_null(coding_get_varint32(big, big + sizeof big, &v));
    const uint8_t big2[] = {0x80, 0x80, 0x80, 0x80, 0x7f};
    cr_assert_null(coding_get_varint32(big2, big2 + sizeof big2, &v));
    /* Five bytes with a continuation bit on the fifth: overlong, even if a sixth byte follows. */
    const uint8_t cont[] = {0xff, 0xff, 0xff, 0xff, 0x8f, 0x00};
    cr_assert_null(coding_get_varint32(cont, cont + sizeof cont, &v));
    cr_assert_eq(v, 7u, "output must be untouched on failure");
    /* The largest legal five-byte value is accepted. */
    const uint8_t max[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    cr_assert_eq(coding_get_varint32(max, max + sizeof max, &v), max + 5);
    cr_assert_eq(v, UINT32_MAX);
    /* A 64-bit value past 32 bits is not a varint32. */
    uint8_t b[CODING_MAX_VARINT64];
    uint8_t *end = coding_put_varint64(b, 1ull << 32);
    cr_assert_null(coding_get_varint32(b, end, &v));
}

Test(coding, varint64_overlong_and_overflow)
{
    uint64_t v = 7;
    const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    cr_assert_null(coding_get_varint64(eleven, eleven + sizeof eleven, &v));
    /* Tenth byte may only be 0 or 1. */
    const uint8_t ten2[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    cr_assert_null(coding_get_varint64(ten2, ten2 + sizeof ten2, &v));
    const uint8_t ten_cont[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00};
    cr_assert_null(coding_get_varint64(ten_cont, ten_cont + sizeof ten_cont, &v));
    cr_assert_eq(v, 7u);
    const uint8_t ten1[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    cr_assert_eq(coding_get_varint64(ten1, ten1 + sizeof ten1, &v), ten1 + 10);
    cr_assert_eq(v, UINT64_MAX);
    /* Truncated in the middle of a ten-byte varint. */
    cr_assert_null(coding_get_varint64(ten1, ten1 + 9, &v));
}

Test(coding, varint_length_matches_encoder)
{
    cr_assert_eq(coding_varint_length(0), 1);
    cr_assert_eq(coding_varint_length(127), 1);
    cr_assert_eq(coding_varint_length(128), 2);
    cr_assert_eq(coding_varint_length(UINT32_MAX), 5);
    cr_assert_eq(coding_varint_length(UINT64_MAX), 10);
}

Test(coding, length_prefixed)
{
    uint8_t b[64];
    uint8_t *p = coding_put_varint32(b, 5);
    memcpy(p, "hello", 5);
    const uint8_t *end = p + 5;
    const uint8_t *data = NULL;
    uint32_t len = 0;
    cr_assert_eq(coding_get_length_prefixed(b, end, &data, &len), end);
    cr_assert_eq(len, 5u);
    cr_assert_eq(memcmp(data, "hello", 5), 0);
    cr_assert_eq(data, b + 1);
    /* One byte short of the payload. */
    data = NULL;
    cr_assert_null(coding_get_length_prefixed(b, end - 1, &data, &len));
    cr_assert_null(data, "outputs untouched on failure");
    /* No room even for the length. */
    cr_assert_null(coding_get_length_prefixed(b, b, &data, &len));
    /* Zero length at the very end is fine. */
    b[0] = 0;
    cr_assert_eq(coding_get_length_prefixed(b, b + 1, &data, &len), b + 1);
    cr_assert_eq(len, 0u);
    /* A huge length must not wrap the pointer. */
    p = coding_put_varint32(b, UINT32_MAX);
    cr_assert_null(coding_get_length_prefixed(b, p + 10, &data, &len));
    /* A bad length varint. */
    const uint8_t bad[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00};
    cr_assert_null(coding_get_length_prefixed(bad, bad + sizeof bad, &data, &len));
    /* Two records back to back. */
    p = coding_put_varint32(b, 2);
    memcpy(p, "ab", 2);
    p += 2;
    p = coding_put_varint32(p, 3);
    memcpy(p, "cde", 3);
    p += 3;
    const uint8_t *q = coding_get_length_prefixed(b, p, &data, &len);
    cr_assert_not_null(q);
    cr_assert_eq(len, 2u);
    q = coding_get_length_prefixed(q, p, &data, &len);
    cr_assert_eq(q, p);
    cr_assert_eq(len, 3u);
    cr_assert_eq(memcmp(data, "cde", 3), 0);
}
