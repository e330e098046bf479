/* hash: pinned values (the output must never change), reads stay within the input at every length
 * and alignment, every input bit and the length and the seed matter, avalanche, bucket spread and
 * no collisions over a million similar keys. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "testutil.h"

static const struct {
    size_t len;
    uint64_t seed0;
    uint64_t seed1; /* with seed 0x1234567890abcdef */
} pinned[] = {
    {0, 0x0409638ee2bde459ull, 0x38c1220e5cce93b8ull},
    {1, 0xd5b26ee485f2a92dull, 0xfed4fbe9865f9d03ull},
    {3, 0xaf4b147f7f316c0aull, 0x7e9676d9c450638eull},
    {4, 0x0bdee9a96d7d3cb2ull, 0xf23776e7e1edced9ull},
    {7, 0xca605ac870602dc2ull, 0xae39c72c85ea7f39ull},
    {8, 0x9ac626ab88911893ull, 0x1ce8ce14cbd43174ull},
    {9, 0x7a01b5e11af224a4ull, 0x7630339276f3472full},
    {15, 0xc5f8e161920ca139ull, 0xca9e48ac05a5a08full},
    {16, 0x37f612201427870eull, 0xcba7a1fa6a79e8beull},
    {17, 0x560763d84ffab150ull, 0xdd50db34ac57518aull},
    {31, 0xe66881ccb7a298e2ull, 0xaa1db2d88c16757eull},
    {32, 0x9beafbe0061be3f1ull, 0xab4df79350890c40ull},
    {33, 0xe78b892bd993f48dull, 0xcd5109609dbc2c24ull},
    {47, 0x9e22fca490126c0bull, 0x129e838dfa9ee45full},
    {48, 0x45b77dc5e6296f55ull, 0x44618048b3063637ull},
    {49, 0x249c35ef0af8c974ull, 0x9c98ed294bf25f3cull},
    {64, 0x4f14537d0c48dacdull, 0x19218a60f18261afull},
    {96, 0x215db7a60d3ebd58ull, 0x84719c918e76dd5dull},
    {97, 0x12e932f682754589ull, 0x0b082c7c9ef1d8f4ull},
    {200, 0x1852ea06dbaac616ull, 0x6df5950450046b93ull},
};

Test(hash, pinned_values)
{
    unsigned char buf[200];
    for (int i = 0; i < 200; i++) {
        buf[i] = (unsigned char)(i * 7 + 1);
    }
    for (size_t k = 0; k < sizeof pinned / sizeof pinned[0]; k++) {
        cr_assert_eq(hash_bytes(buf, pinned[k].len, 0), pinned[k].seed0, "length %zu",
                     pinned[k].len);
        cr_assert_eq(hash_bytes(buf, pinned[k].len, 0x1234567890abcdefull), pinned[k].seed1,
                     "length %zu, seeded", pinned[k].len);
    }
    cr_assert_eq(hash_bytes("abc", 3, 0), 0x02a4f1d7cb516c72ull);
    /* NULL is fine for an empty input. */
    cr_assert_eq(hash_bytes(NULL, 0, 0), pinned[0].seed0);
}

/* Each length in an exact-size heap block (ASan flags any read past it), at every alignment. */
Test(hash, reads_stay_in_bounds_and_ignore_alignment)
{
    unsigned char src[300];
    tu_rng r;
    tu_rng_seed(&r, 5);
    for (size_t i = 0; i < sizeof src; i++) {
        src[i] = (unsigned char)tu_rng_next(&r);
    }
    for (size_t len = 0; len <= sizeof src; len++) {
        unsigned char *exact = malloc(len ? len : 1);
        cr_assert_not_null(exact);
        memcpy(exact, src, len);
        uint64_t want = hash_bytes(exact, len, 9);
        free(exact);
        for (size_t off = 1; off < 8; off++) {
            unsigned char *shifted = malloc(len + off);
            cr_assert_not_null(shifted);
            memcpy(shifted + off, src, len);
            cr_assert_eq(hash_bytes(shifted + off, len, 9), want, "length %zu offset %zu", len,
                         off);
            free(shifted);
        }
    }
}

Test(hash, every_bit_length_and_seed_matter)
{
    unsigned char buf[130];
    tu_rng r;
    tu_rng_seed(&r, 11);
    for (size_t len = 0; len <= sizeof buf; len++) {
        for (size_t i = 0; i < len; i++) {
            buf[i] = (unsigned char)tu_rng_next(&r);
        }
        uint64_t h = hash_bytes(buf, len, 0);
        for (size_t bit = 0; bit < len * 8; bit++) {
            buf[bit / 8] ^= (unsigned char)(1u << bit % 8);
            cr_assert_neq(hash_bytes(buf, len, 0), h, "length %zu bit %zu", len, bit);
            buf[bit / 8] ^= (unsigned char)(1u << bit % 8);
        }
        cr_assert_neq(hash_bytes(buf, len, 1), h, "length %zu: seed ignored", len);
    }
    /* Trailing zero bytes change the length, hence the hash. */
    memset(buf, 0, sizeof buf);
    for (size_t len = 0; len < sizeof buf; len++) {
        cr_assert_neq(hash_bytes(buf, len, 0), hash_bytes(buf, len + 1, 0), "length %zu", len);
    }
}

/* Square root by Newton's method (the test binaries do not link libm). */
static double root(double x)
{
    double g = x > 1 ? x / 2 : 1;
    for (int i = 0; i < 60; i++) {
        g = (g + x / g) / 2;
    }
    return g;
}

/* Flipping one input bit flips each output bit with probability close to 1/2. */
Test(hash, avalanche)
{
    static const size_t lens[] = {1, 3, 4, 8, 12, 16, 17, 24, 40, 49, 64, 100};
    unsigned char buf[100];
    tu_rng r;
    tu_rng_seed(&r, 21);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t len = lens[li];
        uint64_t flips[64] = {0};
        uint64_t trials = 0;
        /* One byte has only 256 values: take each once (more draws would repeat them). */
        int reps = len == 1 ? 256 : len <= 4 ? 2000 : 200;
        for (int rep = 0; rep < reps; rep++) {
            for (size_t i = 0; i < len; i++) {
                buf[i] = (unsigned char)(len == 1 ? rep : (int)tu_rng_next(&r));
            }
            uint64_t h = hash_bytes(buf, len, 0);
            for (size_t bit = 0; bit < len * 8; bit++) {
                buf[bit / 8] ^= (unsigned char)(1u << bit % 8);
                uint64_t d = hash_bytes(buf, len, 0) ^ h;
                buf[bit / 8] ^= (unsigned char)(1u << bit % 8);
                for (int o = 0; o < 64; o++) {
                    flips[o] += d >> o & 1;
                }
                trials++;
            }
        }
        /* Five standard deviations of a fair coin over this many trials, plus a 1% bias. */
        double bound = 0.01 + 5 * 0.5 / root((double)trials);
        for (int o = 0; o < 64; o++) {
            double p = (double)flips[o] / (double)trials;
            cr_assert(p > 0.5 - bound && p < 0.5 + bound,
                      "length %zu: output bit %d flips with p=%.3f", len, o, p);
        }
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Similar keys (the tu_key pattern, and decimal-only keys) spread evenly over buckets taken from
 * the low bits and from the high bits, and a million of them never collide in 64 bits. */
Test(hash, spread_and_no_collisions)
{
    const size_t n = 1000000;
    const size_t buckets = 1024;
    uint64_t *h = malloc(n * sizeof *h);
    uint32_t *lo = calloc(buckets, sizeof *lo);
    uint32_t *hi = calloc(buckets, sizeof *hi);
    char kb[32];

    cr_assert(h != NULL && lo != NULL && hi != NULL);
    for (int pattern = 0; pattern < 2; pattern++) {
        memset(lo, 0, buckets * sizeof *lo);
        memset(hi, 0, buckets * sizeof *hi);
        for (size_t i = 0; i < n; i++) {
            shale_slice k = pattern == 0 ? tu_key(kb, i) : (shale_slice){kb, 0};
            if (pattern == 1) {
                k.len = (size_t)snprintf(kb, sizeof kb, "%016zu", i);
            }
            h[i] = hash_bytes(k.data, k.len, 0);
            lo[h[i] & (buckets - 1)]++;
            hi[h[i] >> 54]++;
        }
        /* Chi-square with 1023 degrees of freedom: mean 1023, sd ~45; 1400 is > 8 sd out. */
        double expect = (double)n / (double)buckets, chi_lo = 0, chi_hi = 0;
        for (size_t b = 0; b < buckets; b++) {
            chi_lo += (lo[b] - expect) * (lo[b] - expect) / expect;
            chi_hi += (hi[b] - expect) * (hi[b] - expect) / expect;
        }
        cr_assert_lt(chi_lo, 1400.0, "pattern %d: low bits chi-square %.0f", pattern, chi_lo);
        cr_assert_lt(chi_hi, 1400.0, "pattern %d: high bits chi-square %.0f", pattern, chi_hi);
        qsort(h, n, sizeof *h, cmp_u64);
        for (size_t i = 1; i < n; i++) {
            cr_assert_neq(h[i], h[i - 1], "pattern %d: a 64-bit collision", pattern);
        }
    }
    free(h);
    free(lo);
    free(hi);
}
