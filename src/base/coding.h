/*
 * coding: the only way bytes go to and from disk. Fixed-width integers are little-endian; varints
 * are LEB128 (7 bits a byte, low group first, at most 5 bytes for 32 bits and 10 for 64).
 * Never encode with a struct cast.
 *
 * Decoders take [p, limit) and return the position after the value, or NULL if the input is
 * truncated or the varint is overlong: callers must treat NULL as corruption, never read past.
 * Pure functions; thread-safe.
 */
#ifndef SHALE_BASE_CODING_H
#define SHALE_BASE_CODING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CODING_MAX_VARINT32 5
#define CODING_MAX_VARINT64 10

/* The value of one hexadecimal digit (either case), or -1 when c is not one. */
static inline int coding_hex_digit(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static inline void coding_put_fixed32(uint8_t *dst, uint32_t v)
{
    dst[0] = (uint8_t)v;
    dst[1] = (uint8_t)(v >> 8);
    dst[2] = (uint8_t)(v >> 16);
    dst[3] = (uint8_t)(v >> 24);
}

static inline void coding_put_fixed64(uint8_t *dst, uint64_t v)
{
    coding_put_fixed32(dst, (uint32_t)v);
    coding_put_fixed32(dst + 4, (uint32_t)(v >> 32));
}

static inline uint32_t coding_get_fixed32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t coding_get_fixed64(const uint8_t *p)
{
    return (uint64_t)coding_get_fixed32(p) | ((uint64_t)coding_get_fixed32(p + 4) << 32);
}

static inline void coding_put_fixed16(uint8_t *dst, uint16_t v)
{
    dst[0] = (uint8_t)v;
    dst[1] = (uint8_t)(v >> 8);
}

static inline uint16_t coding_get_fixed16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* The 8 bytes at p as a big-endian number: memcmp order of 8-byte key chunks as one integer
 * compare (skiplist link prefixes, the loader's sort). One load and one byte swap. */
static inline uint64_t coding_get_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* Writes v at dst (room for CODING_MAX_VARINT32/64 bytes) and returns the end. */
uint8_t *coding_put_varint32(uint8_t *dst, uint32_t v);
uint8_t *coding_put_varint64(uint8_t *dst, uint64_t v);
int coding_varint_length(uint64_t v);

const uint8_t *coding_get_varint32(const uint8_t *p, const uint8_t *limit, uint32_t *out);
const uint8_t *coding_get_varint64(const uint8_t *p, const uint8_t *limit, uint64_t *out);

/* Reads a varint32 length followed by that many bytes; *data points into the input. */
const uint8_t *coding_get_length_prefixed(const uint8_t *p, const uint8_t *limit,
                                          const uint8_t **data, uint32_t *len);

#endif
