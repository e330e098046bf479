/*
 * compress: one wrapper over Debian's liblz4 and libzstd for table blocks.
 * The type byte is stored on disk in every block trailer (src/sst/sst_format.h): never renumber.
 * Threads: every call is thread-safe (zstd contexts are per call or per thread).
 */
#ifndef SHALE_BASE_COMPRESS_H
#define SHALE_BASE_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "shale.h"

#include "base/buf.h"

enum compress_type {
    COMPRESS_NONE = 0,
    COMPRESS_LZ4 = 1,
    COMPRESS_ZSTD = 2,
};

/* Appends the compressed form of src[0..n) to out. SHALE_INVALID for an unknown type, SHALE_NOMEM.
 * The caller keeps the raw bytes instead when compression does not pay (see sst_builder). */
shale_code compress_append(int type, int level, const void *src, size_t n, shale_buf *out,
                           shale_error *err) SHALE_MUST_USE;

/* Decompresses src[0..n) into dst, which must hold exactly raw_len bytes (stored beside the block).
 * SHALE_CORRUPTION if the input is damaged or does not expand to exactly raw_len bytes;
 * SHALE_INVALID for an unknown type. Never reads or writes out of bounds on damaged input. */
shale_code compress_decompress(int type, const void *src, size_t n, void *dst, size_t raw_len,
                               shale_error *err) SHALE_MUST_USE;

const char *compress_name(int type);

#endif
