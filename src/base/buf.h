/*
 * buf: growable owned byte buffer (the public shale_buf), used for encoding and for results.
 *
 * A zeroed shale_buf is empty and valid. buf_reserve grows capacity geometrically; appends
 * return SHALE_NOMEM (via err) when growth fails and leave the buffer unchanged. Not thread-safe.
 * Owner frees with shale_buf_free (public) / buf_free.
 */
#ifndef SHALE_BASE_BUF_H
#define SHALE_BASE_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "shale.h"

/* Ensures room for `extra` more bytes after len. */
shale_code buf_reserve(shale_buf *b, size_t extra, shale_error *err) SHALE_MUST_USE;
shale_code buf_append(shale_buf *b, const void *data, size_t len, shale_error *err) SHALE_MUST_USE;
/* Replaces the contents with a copy of data. */
shale_code buf_set(shale_buf *b, const void *data, size_t len, shale_error *err) SHALE_MUST_USE;
void buf_free(shale_buf *b);

static inline void buf_reset(shale_buf *b)
{
    b->len = 0;
}

#endif
