/*
 * coding: LEB128 varints. Decoders are strict: they never read at or past `limit`, and they reject
 * encodings longer than the type allows or whose last byte carries bits beyond the type's width,
 * so a corrupt length can never wrap into a small plausible value.
 */
#include "base/coding.h"

uint8_t *coding_put_varint32(uint8_t *dst, uint32_t v)
{
    while (v >= 0x80) {
        *dst++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *dst++ = (uint8_t)v;
    return dst;
}

uint8_t *coding_put_varint64(uint8_t *dst, uint64_t v)
{
    while (v >= 0x80) {
        *dst++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *dst++ = (uint8_t)v;
    return dst;
}

int coding_varint_length(uint64_t v)
{
    int len = 1;
    while (v >= 0x80) {
        v >>= 7;
        len++;
    }
    return len;
}

const uint8_t *coding_get_varint32(const uint8_t *p, const uint8_t *limit, uint32_t *out)
{
    /* Fast path: one byte, the common case for lengths and small numbers. */
    if (p != NULL && p < limit && (*p & 0x80) == 0) {
        *out = *p;
        return p + 1;
    }
    uint32_t result = 0;
    for (int shift = 0; shift <= 28; shift += 7) {
        if (p == NULL || p >= limit) {
            return NULL;
        }
        uint32_t byte = *p++;
        if (shift == 28 && byte > 0x0f) {
            /* The 5th byte holds bits 28..31 only; anything more is overflow or overlong. */
            return NULL;
        }
        result |= (byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) {
            *out = result;
            return p;
        }
    }
    return NULL;
}

const uint8_t *coding_get_varint64(const uint8_t *p, const uint8_t *limit, uint64_t *out)
{
    if (p != NULL && p < limit && (*p & 0x80) == 0) {
        *out = *p;
        return p + 1;
    }
    uint64_t result = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
        if (p == NULL || p >= limit) {
            return NULL;
        }
        uint64_t byte = *p++;
        if (shift == 63 && byte > 1) {
            /* The 10th byte holds bit 63 only. */
            return NULL;
        }
        result |= (byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) {
            *out = result;
            return p;
        }
    }
    return NULL;
}

const uint8_t *coding_get_length_prefixed(const uint8_t *p, const uint8_t *limit,
                                          const uint8_t **data, uint32_t *len)
{
    uint32_t n;
    p = coding_get_varint32(p, limit, &n);
    if (p == NULL) {
        return NULL;
    }
    /* Compare as sizes, never form p + n: a huge n must not overflow the pointer. */
    if ((size_t)(limit - p) < n) {
        return NULL;
    }
    *data = p;
    *len = n;
    return p + n;
}
