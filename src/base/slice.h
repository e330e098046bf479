/*
 * slice: helpers over the public borrowed byte range shale_slice.
 * A slice never owns its bytes; it is valid only as long as what it points into.
 */
#ifndef SHALE_BASE_SLICE_H
#define SHALE_BASE_SLICE_H

#include <stdbool.h>
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

static inline bool slice_eq(shale_slice a, shale_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static inline bool slice_starts_with(shale_slice s, shale_slice prefix)
{
    return s.len >= prefix.len && (prefix.len == 0 || memcmp(s.data, prefix.data, prefix.len) == 0);
}

#endif
