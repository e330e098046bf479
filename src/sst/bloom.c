/*
 * bloom: see bloom.h for the design and its false-positive bound.
 */
#include "sst/bloom.h"

#include <string.h>

#include "base/coding.h"
#include "base/error.h"
#include "base/hash.h"
#include "sst/sst_format.h"

#define LINE_BITS   512u
/* The top 9 bits of a 32-bit word index a bit of the 512-bit line. */
#define PROBE_SHIFT 23
#define GOLDEN32    0x9e3779b9u
#define MAX_PROBES  30u

/* Fewest probes within 2% of the model's optimum, per bits per key (bloom.h). */
static const uint8_t probes_for_bits[33] = {
    1,                                              /* 0: unused, clamped to 1 */
    1,  1,  2,  3,  3,  4,  5,  5,  6,  6,  7,  7,  /* 1 .. 12 */
    8,  8,  9,  9,  10, 10, 10, 11, 11, 11, 12, 12, /* 13 .. 24 */
    12, 13, 13, 13, 14, 14, 14, 14,                 /* 25 .. 32 */
};

/* FP(b, k) of bloom.h's model for each b and its k from the table above, computed once
 * offline (the library does not link libm):
 *   sum over j of exp(-512/b) (512/b)^j / j! * (1 - (511/512)^(k j))^k */
static const double design_fp[33] = {
    0.6321,    0.6321,    0.3935,    0.2371,    0.1479,    0.09289,   0.05753,
    0.0364,    0.02312,   0.01473,   0.009576,  0.006173,  0.004092,  0.00268,
    0.001807,  0.001206,  0.0008256, 0.0005627, 0.0003907, 0.0002756, 0.0001915,
    0.0001366, 9.882e-05, 7.013e-05, 5.122e-05, 3.782e-05, 2.745e-05, 2.045e-05,
    1.538e-05, 1.142e-05, 8.654e-06, 6.613e-06, 5.093e-06,
};

uint64_t bloom_hash(const void *key, size_t len)
{
    return hash_bytes(key, len, SST_BLOOM_SEED);
}

static uint32_t clamp_bits(uint32_t bits_per_key)
{
    if (bits_per_key < 1) {
        return 1;
    }
    return bits_per_key > 32 ? 32 : bits_per_key;
}

int bloom_num_probes(uint32_t bits_per_key)
{
    return probes_for_bits[clamp_bits(bits_per_key)];
}

double bloom_design_fp(uint32_t bits_per_key)
{
    return design_fp[clamp_bits(bits_per_key)];
}

static uint64_t num_lines_for(uint64_t keys, uint32_t bits_per_key)
{
    return (keys * clamp_bits(bits_per_key) + LINE_BITS - 1) / LINE_BITS;
}

size_t bloom_filter_bytes(uint64_t keys, uint32_t bits_per_key)
{
    return (size_t)(num_lines_for(keys, bits_per_key) * BLOOM_LINE_BYTES + BLOOM_META_BYTES);
}

static inline uint32_t line_of(uint64_t hash, uint32_t num_lines)
{
    return (uint32_t)(((uint64_t)(uint32_t)hash * num_lines) >> 32);
}

shale_code bloom_build(const uint64_t *hashes, size_t n, uint32_t bits_per_key, shale_buf *out,
                       shale_error *err)
{
    uint64_t lines = num_lines_for(n, bits_per_key);
    if (lines > UINT32_MAX / BLOOM_LINE_BYTES) {
        return err_set(err, SHALE_INVALID, 0, "bloom filter for %zu keys is over 4 GiB", n);
    }
    size_t bytes = (size_t)lines * BLOOM_LINE_BYTES;
    shale_code rc = buf_reserve(out, bytes + BLOOM_META_BYTES, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    uint8_t *base = (uint8_t *)out->data + out->len;
    uint32_t probes = (uint32_t)bloom_num_probes(bits_per_key);

    memset(base, 0, bytes + BLOOM_META_BYTES);
    for (size_t i = 0; i < n; i++) {
        uint8_t *line = base + (size_t)line_of(hashes[i], (uint32_t)lines) * BLOOM_LINE_BYTES;
        uint32_t h = (uint32_t)(hashes[i] >> 32);
        for (uint32_t j = 0; j < probes; j++) {
            uint32_t bit = h >> PROBE_SHIFT;
            line[bit >> 3] |= (uint8_t)(1u << (bit & 7));
            h *= GOLDEN32;
        }
    }
    uint8_t *meta = base + bytes;
    coding_put_fixed32(meta, (uint32_t)lines);
    meta[4] = (uint8_t)probes;
    meta[5] = BLOOM_IMPL_LOCAL;
    out->len += bytes + BLOOM_META_BYTES;
    return SHALE_OK;
}

const char *bloom_parse(const uint8_t *data, size_t n, bloom_filter *out)
{
    if (n < BLOOM_META_BYTES) {
        return "shorter than its metadata";
    }
    const uint8_t *meta = data + n - BLOOM_META_BYTES;
    uint32_t lines = coding_get_fixed32(meta);
    if (meta[5] != BLOOM_IMPL_LOCAL) {
        return "unknown filter implementation";
    }
    if (meta[4] < 1 || meta[4] > MAX_PROBES) {
        return "bad probe count";
    }
    if (meta[6] != 0 || meta[7] != 0) {
        return "bad metadata";
    }
    if ((uint64_t)lines * BLOOM_LINE_BYTES != n - BLOOM_META_BYTES) {
        return "line count does not match its size";
    }
    out->lines = data;
    out->num_lines = lines;
    out->num_probes = meta[4];
    return NULL;
}

void bloom_prefetch(const bloom_filter *f, uint64_t hash)
{
    if (f->num_lines > 0) {
        __builtin_prefetch(f->lines + (size_t)line_of(hash, f->num_lines) * BLOOM_LINE_BYTES);
    }
}

bool bloom_may_contain(const bloom_filter *f, uint64_t hash)
{
    if (f->num_lines == 0) {
        return false;
    }
    const uint8_t *line = f->lines + (size_t)line_of(hash, f->num_lines) * BLOOM_LINE_BYTES;
    uint32_t h = (uint32_t)(hash >> 32);
    for (uint32_t j = 0; j < f->num_probes; j++) {
        uint32_t bit = h >> PROBE_SHIFT;
        if ((line[bit >> 3] & (1u << (bit & 7))) == 0) {
            return false;
        }
        h *= GOLDEN32;
    }
    return true;
}
