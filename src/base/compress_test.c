/*
 * compress tests: round trips of every type over empty, tiny, compressible and incompressible
 * inputs, and damaged compressed input (truncated, bit-flipped, wrong raw length), which must
 * give SHALE_CORRUPTION without reading or writing out of bounds (the ASan build checks that:
 * every destination is malloc'ed at exactly raw_len bytes).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "shale.h"

#include "base/buf.h"
#include "base/compress.h"
#include "testutil.h"

static const int types[] = {COMPRESS_NONE, COMPRESS_LZ4, COMPRESS_ZSTD};

/* n bytes: compressible (repeating words) or not (random). */
static uint8_t *gen(size_t n, bool compressible, uint64_t seed)
{
    uint8_t *p = malloc(n ? n : 1);
    tu_rng rng;
    cr_assert_not_null(p);
    tu_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        p[i] = compressible ? (uint8_t)("the quick brown fox "[i % 20] + (i / 997) % 3)
                            : (uint8_t)tu_rng_next(&rng);
    }
    return p;
}

static void round_trip(int type, const uint8_t *src, size_t n)
{
    shale_buf c = {0};
    shale_error err;
    uint8_t pre[3] = {1, 2, 3};

    /* compress_append appends: what is already in the buffer stays. */
    cr_assert_eq(buf_append(&c, pre, sizeof pre, NULL), SHALE_OK);
    cr_assert_eq(compress_append(type, 0, src, n, &c, &err), SHALE_OK, "%s: %s",
                 compress_name(type), err.msg);
    cr_assert(memcmp(c.data, pre, sizeof pre) == 0);
    uint8_t *out = malloc(n ? n : 1);
    cr_assert_not_null(out);
    cr_assert_eq(compress_decompress(type, (uint8_t *)c.data + 3, c.len - 3, out, n, &err),
                 SHALE_OK, "%s n=%zu: %s", compress_name(type), n, err.msg);
    cr_assert(n == 0 || memcmp(out, src, n) == 0, "%s n=%zu differs", compress_name(type), n);
    free(out);
    buf_free(&c);
}

Test(compress, round_trips_all_types_and_sizes)
{
    static const size_t sizes[] = {0, 1, 7, 100, 4096, 65537, 1 << 20};
    for (size_t t = 0; t < 3; t++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            for (int comp = 0; comp < 2; comp++) {
                uint8_t *src = gen(sizes[s], comp, s + 1);
                round_trip(types[t], src, sizes[s]);
                free(src);
            }
        }
    }
    tu_assert_no_leaks();
}

Test(compress, compressible_input_shrinks)
{
    uint8_t *src = gen(65536, true, 1);
    for (size_t t = 1; t < 3; t++) {
        shale_buf c = {0};
        cr_assert_eq(compress_append(types[t], 0, src, 65536, &c, NULL), SHALE_OK);
        cr_assert_lt(c.len, 65536 / 4, "%s: %zu bytes", compress_name(types[t]), c.len);
        buf_free(&c);
    }
    free(src);
}

Test(compress, zstd_levels)
{
    uint8_t *src = gen(10000, true, 2);
    shale_buf c = {0};
    shale_error err;
    cr_assert_eq(compress_append(COMPRESS_ZSTD, 19, src, 10000, &c, &err), SHALE_OK);
    uint8_t *out = malloc(10000);
    cr_assert_eq(compress_decompress(COMPRESS_ZSTD, c.data, c.len, out, 10000, NULL), SHALE_OK);
    cr_assert(memcmp(out, src, 10000) == 0);
    buf_reset(&c);
    cr_assert_eq(compress_append(COMPRESS_ZSTD, 1000, src, 10000, &c, &err), SHALE_INVALID);
    cr_assert(strstr(err.msg, "level") != NULL, "%s", err.msg);
    free(out);
    free(src);
    buf_free(&c);
    tu_assert_no_leaks();
}

Test(compress, unknown_type_is_invalid)
{
    shale_buf c = {0};
    shale_error err;
    uint8_t dst[4];
    cr_assert_eq(compress_append(7, 0, "abcd", 4, &c, &err), SHALE_INVALID);
    cr_assert_eq(c.len, 0);
    cr_assert_eq(compress_decompress(-1, "abcd", 4, dst, 4, &err), SHALE_INVALID);
    cr_assert_str_eq(compress_name(7), "unknown");
    cr_assert_str_eq(compress_name(COMPRESS_LZ4), "lz4");
    cr_assert_str_eq(compress_name(COMPRESS_ZSTD), "zstd");
    cr_assert_str_eq(compress_name(COMPRESS_NONE), "none");
}

/* Expands src into an exact-size heap buffer, so ASan catches any write past raw_len. */
static shale_code expand(int type, const uint8_t *src, size_t n, size_t raw_len, shale_error *err)
{
    uint8_t *dst = malloc(raw_len ? raw_len : 1);
    cr_assert_not_null(dst);
    shale_code rc = compress_decompress(type, src, n, dst, raw_len, err);
    free(dst);
    return rc;
}

Test(compress, wrong_raw_length_is_corruption)
{
    uint8_t *src = gen(5000, true, 3);
    for (size_t t = 0; t < 3; t++) {
        shale_buf c = {0};
        shale_error err;
        cr_assert_eq(compress_append(types[t], 0, src, 5000, &c, NULL), SHALE_OK);
        cr_assert_eq(expand(types[t], c.data, c.len, 4999, &err), SHALE_CORRUPTION, "%s",
                     compress_name(types[t]));
        cr_assert_eq(expand(types[t], c.data, c.len, 5001, &err), SHALE_CORRUPTION);
        cr_assert_eq(expand(types[t], c.data, c.len, 0, &err), SHALE_CORRUPTION);
        cr_assert_eq(expand(types[t], c.data, c.len, 5000, &err), SHALE_OK);
        buf_free(&c);
    }
    free(src);
}

Test(compress, damaged_input_is_corruption_never_a_crash)
{
    tu_rng rng;
    tu_rng_seed(&rng, 99);
    for (size_t t = 1; t < 3; t++) {
        for (int comp = 0; comp < 2; comp++) {
            size_t n = 20000;
            uint8_t *src = gen(n, comp, 4 + t);
            shale_buf c = {0};
            cr_assert_eq(compress_append(types[t], 0, src, n, &c, NULL), SHALE_OK);
            uint8_t *bad = malloc(c.len);
            cr_assert_not_null(bad);

            /* Every truncation of the first 64 bytes and a spread of longer ones. */
            for (size_t cut = 0; cut < c.len; cut += cut < 64 ? 1 : 97) {
                memcpy(bad, c.data, cut);
                shale_error err;
                shale_code rc = expand(types[t], bad, cut, n, &err);
                cr_assert_eq(rc, SHALE_CORRUPTION, "%s cut %zu: %d", compress_name(types[t]), cut,
                             rc);
            }
            /* Random bit flips: either detected or (rarely, flips in literals) a different
             * output of the right size; never out of bounds. */
            int detected = 0;
            for (int i = 0; i < 300; i++) {
                memcpy(bad, c.data, c.len);
                size_t at = tu_rng_below(&rng, c.len);
                bad[at] ^= (uint8_t)(1u << tu_rng_below(&rng, 8));
                shale_code rc = expand(types[t], bad, c.len, n, NULL);
                cr_assert(rc == SHALE_OK || rc == SHALE_CORRUPTION);
                detected += rc == SHALE_CORRUPTION;
            }
            if (comp) {
                /* Incompressible input is stored as literals, where flips go unnoticed (the
                 * block checksum catches them); compressed sequences must often be noticed. */
                cr_assert_gt(detected, 0);
            }
            /* Pure garbage. */
            for (int i = 0; i < 100; i++) {
                for (size_t k = 0; k < c.len; k++) {
                    bad[k] = (uint8_t)tu_rng_next(&rng);
                }
                shale_code rc = expand(types[t], bad, tu_rng_below(&rng, c.len) + 1,
                                       tu_rng_below(&rng, 3 * n), NULL);
                cr_assert(rc == SHALE_OK || rc == SHALE_CORRUPTION);
            }
            free(bad);
            free(src);
            buf_free(&c);
        }
    }
    tu_assert_no_leaks();
}

Test(compress, none_checks_length)
{
    uint8_t dst[8];
    cr_assert_eq(compress_decompress(COMPRESS_NONE, "abc", 3, dst, 4, NULL), SHALE_CORRUPTION);
    cr_assert_eq(compress_decompress(COMPRESS_NONE, "abcd", 4, dst, 4, NULL), SHALE_OK);
    cr_assert(memcmp(dst, "abcd", 4) == 0);
}
