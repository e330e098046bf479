/* hash: see hash.h. */
#include "base/hash.h"

#include <string.h>

#include "base/coding.h"

/* wyhash's constants: odd, with balanced bits. */
#define P0 0xa0761d6478bd642full
#define P1 0xe7037ed1a0b428dbull
#define P2 0x8ebc6af09c88c6e3ull
#define P3 0x589965cc75374cc3ull

static inline uint64_t mum(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

uint64_t hash_bytes(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t a, b;

    seed ^= mum(seed ^ P0, P1);
    if (len <= 16) {
        if (len >= 4) {
            /* Two overlapping 4-byte reads from each end cover 4..16 bytes without a branch
             * per length: q is 0 below 8 bytes, 4 from 8. */
            size_t q = (len >> 3) << 2;
            a = (uint64_t)coding_get_fixed32((const uint8_t *)p) << 32 |
                (uint64_t)coding_get_fixed32((const uint8_t *)p + q);
            b = (uint64_t)coding_get_fixed32((const uint8_t *)p + len - 4) << 32 |
                (uint64_t)coding_get_fixed32((const uint8_t *)p + len - 4 - q);
        } else if (len > 0) {
            a = (uint64_t)p[0] << 16 | (uint64_t)p[len >> 1] << 8 | p[len - 1];
            b = 0;
        } else {
            a = 0;
            b = 0;
        }
    } else {
        size_t i = len;
        if (i > 48) {
            uint64_t s1 = seed, s2 = seed;
            do {
                seed = mum(coding_get_fixed64((const uint8_t *)p) ^ P1,
                           coding_get_fixed64((const uint8_t *)p + 8) ^ seed);
                s1 = mum(coding_get_fixed64((const uint8_t *)p + 16) ^ P2,
                         coding_get_fixed64((const uint8_t *)p + 24) ^ s1);
                s2 = mum(coding_get_fixed64((const uint8_t *)p + 32) ^ P3,
                         coding_get_fixed64((const uint8_t *)p + 40) ^ s2);
                p += 48;
                i -= 48;
            } while (i > 48);
            seed ^= s1 ^ s2;
        }
        while (i > 16) {
            seed = mum(coding_get_fixed64((const uint8_t *)p) ^ P1,
                       coding_get_fixed64((const uint8_t *)p + 8) ^ seed);
            p += 16;
            i -= 16;
        }
        /* The last 16 bytes, overlapping what came before when len is not a multiple of 16. */
        a = coding_get_fixed64((const uint8_t *)p + i - 16);
        b = coding_get_fixed64((const uint8_t *)p + i - 8);
    }
    a ^= P1;
    b ^= seed;
    __uint128_t r = (__uint128_t)a * b;
    return mum((uint64_t)r ^ P0 ^ len, (uint64_t)(r >> 64) ^ P1);
}
