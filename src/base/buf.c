/*
 * buf: the growable owned byte buffer behind shale_buf. Growth doubles capacity (with a small
 * floor) so n appends cost O(n) copying in total; every size computation is checked for size_t
 * overflow, and a failed growth leaves the buffer exactly as it was.
 */
#include "base/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* Small enough not to waste memory on tiny keys, large enough to skip the first few reallocs. */
#define BUF_MIN_CAP 64

/* True when p points into b's current allocation (appending or setting from itself). */
static int points_into(const shale_buf *b, const void *p)
{
    uintptr_t lo = (uintptr_t)b->data;
    uintptr_t x = (uintptr_t)p;
    return b->data != NULL && p != NULL && x >= lo && x < lo + b->cap;
}

shale_code buf_reserve(shale_buf *b, size_t extra, shale_error *err)
{
    if (extra > SIZE_MAX - b->len) {
        return err_set(err, SHALE_NOMEM, 0, "buffer size overflow: %zu + %zu bytes", b->len, extra);
    }
    size_t need = b->len + extra;
    if (need <= b->cap && b->data != NULL) {
        return SHALE_OK;
    }
    size_t cap = b->cap < BUF_MIN_CAP ? BUF_MIN_CAP : b->cap;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    void *p = realloc(b->data, cap);
    if (p == NULL) {
        return err_set(err, SHALE_NOMEM, 0, "out of memory growing a buffer to %zu bytes", cap);
    }
    b->data = p;
    b->cap = cap;
    return SHALE_OK;
}

shale_code buf_append(shale_buf *b, const void *data, size_t len, shale_error *err)
{
    if (len == 0) {
        return SHALE_OK;
    }
    /* Appending part of the buffer to itself: remember the offset, since realloc may move it. */
    int self = points_into(b, data);
    size_t off = self ? (size_t)((const char *)data - (const char *)b->data) : 0;
    shale_code rc = buf_reserve(b, len, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    const void *src = self ? (const char *)b->data + off : data;
    memmove((char *)b->data + b->len, src, len);
    b->len += len;
    return SHALE_OK;
}

shale_code buf_set(shale_buf *b, const void *data, size_t len, shale_error *err)
{
    if (points_into(b, data)) {
        /* A range inside the buffer always fits in its capacity: no growth, just a move. */
        memmove(b->data, data, len);
        b->len = len;
        return SHALE_OK;
    }
    if (len > b->cap || b->data == NULL) {
        size_t old_len = b->len;
        b->len = 0;
        shale_code rc = buf_reserve(b, len, err);
        if (rc != SHALE_OK) {
            b->len = old_len;
            return rc;
        }
    }
    if (len > 0) {
        memcpy(b->data, data, len);
    }
    b->len = len;
    return SHALE_OK;
}

void buf_free(shale_buf *b)
{
    if (b == NULL) {
        return;
    }
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void shale_buf_free(shale_buf *buf)
{
    buf_free(buf);
}
