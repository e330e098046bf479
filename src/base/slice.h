/*
 * slice: helpers over the public borrowed byte range shale_slice.
 * A slice never owns its bytes; it is valid only as long as what it points into.
 */
#ifndef SHALE_BASE_SLICE_H
#define SHALE_BASE_SLICE_H

#include <stdbool.h>
#include <string.h>

#include "shale.h"

#define SLICE_LIT(s) ((shale_slice){(s), sizeof(s) - 1})

static inline shale_slice slice_make(const void *data, size_t len)
{
    return (shale_slice){data, len};
}

static inline shale_slice slice_cstr(const char *s)
{
    return (shale_slice){s, s ? strlen(s) : 0};
}

/* Bytewise three-way comparison; a proper prefix sorts first. */
static inline int slice_cmp(shale_slice a, shale_slice b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.data, b.data, n) : 0;
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
