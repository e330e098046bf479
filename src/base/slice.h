/*
 * slice: helpers over the public borrowed byte range shale_slice.
 * A slice never owns its bytes; it is valid only as long as what it points into.
 */
#ifndef SHALE_BASE_SLICE_H
#define SHALE_BASE_SLICE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "shale.h"

#include "base/coding.h"

#define SLICE_LIT(s) ((shale_slice){(s), sizeof(s) - 1})

static inline shale_slice slice_make(const void *data, size_t len)
{
    return (shale_slice){data, len};
}

static inline shale_slice slice_cstr(const char *s)
{
    return (shale_slice){s, s ? strlen(s) : 0};
}

/* Bytewise three-way comparison; a proper prefix sorts first. Short keys (the common case) are
 * compared 8 bytes at a time as big-endian words, inline: a call to memcmp costs more than the
 * comparison itself, and merging iterators compare on every step. */
static inline int slice_cmp(shale_slice a, shale_slice b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    const uint8_t *p = a.data, *q = b.data;
    size_t i = 0;
    if (n <= 32) {
        for (; i + 8 <= n; i += 8) {
            uint64_t x = coding_get_be64(p + i), y = coding_get_be64(q + i);
            if (x != y) {
                return x < y ? -1 : 1;
            }
        }
    }
    int c = n > i ? memcmp(p + i, q + i, n - i) : 0;
    if (c != 0) {
        return c;
    }
    return a.len < b.len ? -1 : (a.len > b.len ? 1 : 0);
}

/* Same bytes? Inline, words at a time for 4 bytes and more (the last word overlapping the one
 * before): scans compare every entry with the key before it, and most keys are short. */
static inline bool slice_eq(shale_slice a, shale_slice b)
{
    const uint8_t *p = a.data, *q = b.data;
    size_t n = a.len;

    if (n != b.len) {
        return false;
    }
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            if (coding_get_fixed64(p + i) != coding_get_fixed64(q + i)) {
                return false;
            }
        }
        return coding_get_fixed64(p + n - 8) == coding_get_fixed64(q + n - 8);
    }
    if (n >= 4) {
        return coding_get_fixed32(p) == coding_get_fixed32(q) &&
               coding_get_fixed32(p + n - 4) == coding_get_fixed32(q + n - 4);
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] != q[i]) {
            return false;
        }
    }
    return true;
}

/* memcpy for short runs (a key, a key's unshared bytes), inline: overlapping 16- or 8-byte moves
 * that stay inside [d, d + n) and [s, s + n); a libc call per entry costs a scan about 5%. The
 * ranges must not overlap. */
static inline void slice_copy_short(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;

    if (n > 64) {
        memcpy(d, s, n);
    } else if (n >= 16) {
        for (size_t i = 0; i + 16 < n; i += 16) {
            memcpy(d + i, s + i, 16);
        }
        memcpy(d + n - 16, s + n - 16, 16);
    } else if (n >= 8) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else {
        for (size_t i = 0; i < n; i++) {
            d[i] = s[i];
        }
    }
}

static inline bool slice_starts_with(shale_slice s, shale_slice prefix)
{
    return s.len >= prefix.len && (prefix.len == 0 || memcmp(s.data, prefix.data, prefix.len) == 0);
}

#endif
