/*
 * bloom tests: no false negatives, a measured false-positive rate within the design bound
 * stated in bloom.h (1.25 x the model's rate; 1.2% at 10 bits per key), layout checks of the
 * parser, and the edge of an empty filter.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale.h"

#include "base/buf.h"
#include "base/coding.h"
#include "sst/bloom.h"
#include "testutil.h"

/* Present keys are "key" + 13 digits of i; absent ones use the other prefix, so they never
 * collide with a present key. */
static uint64_t present_hash(uint64_t i)
{
    char k[17];
    tu_key(k, i);
    return bloom_hash(k, 16);
}

static uint64_t absent_hash(uint64_t i)
{
    char k[24];
    int n = snprintf(k, sizeof k, "absent%013llu", (unsigned long long)i);
    return bloom_hash(k, (size_t)n);
}

/* Builds into f a filter of `bits` per key over present keys 0..keys-1; returns their hashes
 * (malloc'ed). */
static uint64_t *build_present(shale_buf *f, uint64_t keys, uint32_t bits)
{
    uint64_t *h = malloc(keys * sizeof *h);
    cr_assert_not_null(h);
    for (uint64_t i = 0; i < keys; i++) {
        h[i] = present_hash(i);
    }
    cr_assert_eq(bloom_build(h, keys, bits, f, NULL), SHALE_OK);
    return h;
}

static double measure(uint32_t bits, uint64_t keys, uint64_t probes)
{
    shale_buf f = {0};
    bloom_filter bf;
    uint64_t *h = build_present(&f, keys, bits);
    cr_assert_eq(f.len, bloom_filter_bytes(keys, bits));
    cr_assert_null(bloom_parse(f.data, f.len, &bf));
    cr_assert_eq(bf.num_probes, (uint32_t)bloom_num_probes(bits));
    for (uint64_t i = 0; i < keys; i++) {
        cr_assert(bloom_may_contain(&bf, h[i]), "false negative for key %llu",
                  (unsigned long long)i);
    }
    uint64_t fp = 0;
    for (uint64_t i = 0; i < probes; i++) {
        fp += bloom_may_contain(&bf, absent_hash(i));
    }
    free(h);
    buf_free(&f);
    return (double)fp / (double)probes;
}

Test(bloom, ten_bits_per_key_within_design_bound)
{
    double rate = measure(10, 100000, 1000000);
    double design = bloom_design_fp(10);
    cr_assert(design > 0.0095 && design < 0.0097, "design %f", design);
    cr_assert_leq(rate, 1.25 * design, "measured %.4f%%, bound %.4f%%", 100 * rate, 125 * design);
    cr_assert_leq(rate, 0.012);
    /* A filter that answers "maybe" to everything would pass the bound check vacuously only if
     * it were also absurdly low; check it is a real filter near its model. */
    cr_assert_geq(rate, 0.5 * design, "measured %.4f%% is implausibly low", 100 * rate);
}

/* Square root by Newton's method (the tests do not link libm). */
static double root(double x)
{
    double r = x > 1 ? x : 1;
    for (int i = 0; i < 60; i++) {
        r = 0.5 * (r + x / r);
    }
    return r;
}

Test(bloom, other_widths_within_design_bound)
{
    static const uint32_t widths[] = {1, 4, 6, 8, 16, 20};
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        double rate = measure(widths[i], 20000, 300000);
        double design = bloom_design_fp(widths[i]);
        /* For tiny rates, allow a few stray hits of sampling noise (3 sigma of Poisson). */
        double slack = (3.0 * root(design * 300000) + 2.0) / 300000;
        cr_assert_leq(rate, 1.25 * design + slack, "bits %u: measured %.5f%%, design %.5f%%",
                      widths[i], 100 * rate, 100 * design);
    }
}

Test(bloom, probe_counts_and_clamping)
{
    cr_assert_eq(bloom_num_probes(10), 6);
    cr_assert_eq(bloom_num_probes(1), 1);
    cr_assert_eq(bloom_num_probes(0), 1);
    cr_assert_eq(bloom_num_probes(32), 14);
    cr_assert_eq(bloom_num_probes(1000), 14);
    for (uint32_t b = 2; b <= 32; b++) {
        cr_assert_geq(bloom_num_probes(b), bloom_num_probes(b - 1));
        cr_assert_lt(bloom_design_fp(b), bloom_design_fp(b - 1));
    }
}

Test(bloom, empty_filter_matches_nothing)
{
    shale_buf f = {0};
    bloom_filter bf;
    cr_assert_eq(bloom_build(NULL, 0, 10, &f, NULL), SHALE_OK);
    cr_assert_eq(f.len, BLOOM_META_BYTES);
    cr_assert_null(bloom_parse(f.data, f.len, &bf));
    cr_assert_eq(bf.num_lines, 0);
    cr_assert_not(bloom_may_contain(&bf, present_hash(1)));
    buf_free(&f);
}

Test(bloom, one_line_per_512_bits)
{
    shale_buf f = {0};
    bloom_filter bf;
    free(build_present(&f, 100, 10));
    cr_assert_null(bloom_parse(f.data, f.len, &bf));
    cr_assert_eq(bf.num_lines, 2); /* ceil(1000 / 512) */
    cr_assert_eq(f.len, 2 * 64 + BLOOM_META_BYTES);
    buf_free(&f);
}

Test(bloom, parse_rejects_bad_layouts)
{
    shale_buf f = {0};
    bloom_filter bf;
    free(build_present(&f, 50, 10));
    uint8_t *d = f.data;
    size_t meta = f.len - BLOOM_META_BYTES;

    cr_assert_not_null(bloom_parse(d, 3, &bf));
    cr_assert_not_null(bloom_parse(d, f.len - 1, &bf));
    d[meta + 5] = 9; /* unknown implementation */
    cr_assert_not_null(bloom_parse(d, f.len, &bf));
    d[meta + 5] = BLOOM_IMPL_LOCAL;
    d[meta + 4] = 0; /* no probes */
    cr_assert_not_null(bloom_parse(d, f.len, &bf));
    d[meta + 4] = 200;
    cr_assert_not_null(bloom_parse(d, f.len, &bf));
    d[meta + 4] = 6;
    coding_put_fixed32(d + meta, 0xffffffffu); /* line count beyond the bytes */
    cr_assert_not_null(bloom_parse(d, f.len, &bf));
    coding_put_fixed32(d + meta, 1);
    cr_assert_null(bloom_parse(d, f.len, &bf));
    d[meta + 7] = 1;
    cr_assert_not_null(bloom_parse(d, f.len, &bf));
    buf_free(&f);
}

Test(bloom, hash_is_stable)
{
    /* Filters on disk store these hashes: a change of hash_bytes or the seed breaks them. */
    cr_assert_eq(bloom_hash("key0000000000001", 16), 0x94136af0063f70e6ull);
    cr_assert_eq(bloom_hash("", 0), 0x8cc94b62da65142aull);
    cr_assert_neq(bloom_hash("key0000000000001", 16), bloom_hash("key0000000000002", 16));
}
