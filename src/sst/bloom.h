/*
 * bloom: the table's filter, a cache-local ("blocked") bloom filter after RocksDB's
 * FastLocalBloom. Every probe of one key lands in the same 64-byte cache line, so a query costs
 * one cache miss however many probes it makes.
 *
 * Layout (stored in the filter block, sst_format.h):
 *   lines (num_lines * 64 bytes) | num_lines fixed32 | num_probes u8 | impl u8 (=1) | 0 u16
 * Hashing: one 64-bit hash per key (base/hash.h, seed SST_BLOOM_SEED). Its low 32 bits pick the
 * line (multiply-shift range reduction, no modulo: line = (lo32 * num_lines) >> 32); its high 32
 * bits h drive the probes: probe j sets bit (h_j >> 23) of the 512-bit line, where h_0 = h and
 * h_{j+1} = h_j * 0x9e3779b9 (the golden-ratio multiplier spreads the top 9 bits).
 * num_lines = ceil(keys * bits_per_key / 512).
 *
 * False-positive rate (design bound). In a blocked bloom the keys per line vary: a line receives
 * Poisson(lambda) keys with lambda = 512 / bits_per_key, and a line with j keys answers "maybe"
 * to an absent key with probability (1 - (1 - 1/512)^(k*j))^k. Summing over j:
 *     FP(b, k) = sum_j Poisson(j; 512/b) * (1 - (1 - 1/512)^(k j))^k
 * which for the default b = 10 bits per key and k = 6 probes is 0.958% (a standard, unblocked
 * bloom would reach 0.84%; RocksDB measures 0.955% for the same design). bloom_num_probes
 * picks, per bits_per_key, the fewest probes whose FP is within 2% of the model's optimum:
 *     bits  1   2   3   4   5   6   7   8   9  10  11  12  13  14  15  16 ..  20 ..  32
 *     k     1   1   2   3   3   4   5   5   6   6   7   7   8   8   9   9 ..  11 ..  14
 *     FP% 63.2 39.3 23.7 14.8 9.29 5.75 3.64 2.31 1.47 0.958 0.617 0.409 0.268 0.181 0.121
 *         0.083 .. 0.019 .. 0.0005
 * The design bound is 1.25 x FP (for 10 bits per key: 1.2%), which bloom_test.c checks with 1M
 * absent keys against 100k present ones. The margin is for imperfect hashing, not for sampling
 * noise (1M probes give a standard deviation of 0.01 points at 1%); measured: 0.958%.
 * There are never false negatives.
 *
 * Threads: pure functions over caller memory; thread-safe.
 */
#ifndef SHALE_SST_BLOOM_H
#define SHALE_SST_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

#include "base/buf.h"

#define BLOOM_LINE_BYTES 64u
#define BLOOM_META_BYTES 8u
#define BLOOM_IMPL_LOCAL 1u

/* The hash a filter stores for `key` (hash_bytes with SST_BLOOM_SEED). */
uint64_t bloom_hash(const void *key, size_t len);

/* Probes per key for bits_per_key in 1 .. 32 (clamped). */
int bloom_num_probes(uint32_t bits_per_key);

/* The model's false-positive rate for bits_per_key (see above), as a fraction; for tests and
 * `shale check` reports. */
double bloom_design_fp(uint32_t bits_per_key);

/* Bytes of the filter for `keys` keys (lines and metadata). */
size_t bloom_filter_bytes(uint64_t keys, uint32_t bits_per_key);

/* Appends the filter holding hashes[0, n) to out. SHALE_NOMEM, SHALE_INVALID when the filter
 * would be over 4 GiB of lines. */
shale_code bloom_build(const uint64_t *hashes, size_t n, uint32_t bits_per_key, shale_buf *out,
                       shale_error *err) SHALE_MUST_USE;

/* A parsed filter: borrows the block bytes. */
typedef struct bloom_filter {
    const uint8_t *lines;
    uint32_t num_lines;
    uint32_t num_probes;
} bloom_filter;

/* Checks the layout of data[0, n) and fills *out. Returns NULL, or what is wrong. */
const char *bloom_parse(const uint8_t *data, size_t n, bloom_filter *out);

/* False only if the key with this hash was certainly not added. A filter with no lines (a
 * table of no keys) answers false. */
bool bloom_may_contain(const bloom_filter *f, uint64_t hash);
/* Starts fetching the line bloom_may_contain(f, hash) will read: a hint, for a batch of gets
 * that overlaps its keys' misses. */
void bloom_prefetch(const bloom_filter *f, uint64_t hash);

#endif
