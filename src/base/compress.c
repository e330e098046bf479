/*
 * compress: see compress.h.
 *
 * zstd contexts are kept one per thread (a pthread key frees them when the thread ends): a
 * context costs hundreds of KiB and several allocations to set up, more than compressing or
 * expanding one 4 KiB block, and blocks come one at a time. LZ4's one-shot calls need no state.
 *
 * Decompression never trusts the input: LZ4_decompress_safe and ZSTD_decompressDCtx are both
 * documented to stay inside the given source and destination on malformed data, and the result
 * must be exactly raw_len bytes (a zstd frame also states its size, which is checked first).
 */
#include "base/compress.h"

#include <limits.h>
#include <lz4.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "base/error.h"

typedef struct zstd_ctx {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
} zstd_ctx;

static pthread_key_t zstd_key;
static pthread_once_t zstd_once = PTHREAD_ONCE_INIT;
static int zstd_key_ok;
/* Also held in a thread-local so leak checkers that scan TLS see the context as reachable. */
static _Thread_local zstd_ctx *zstd_tls;

static void zstd_ctx_free(void *p)
{
    zstd_ctx *z = p;
    if (z != NULL) {
        ZSTD_freeCCtx(z->cctx);
        ZSTD_freeDCtx(z->dctx);
        free(z);
    }
}

static void zstd_key_init(void)
{
    zstd_key_ok = pthread_key_create(&zstd_key, zstd_ctx_free) == 0;
}

/* This thread's contexts, created on first use; NULL when out of memory. */
static zstd_ctx *zstd_thread_ctx(void)
{
    if (zstd_tls != NULL) {
        return zstd_tls;
    }
    pthread_once(&zstd_once, zstd_key_init);
    if (!zstd_key_ok) {
        return NULL;
    }
    zstd_ctx *z = calloc(1, sizeof *z);
    if (z == NULL) {
        return NULL;
    }
    if (pthread_setspecific(zstd_key, z) != 0) {
        free(z);
        return NULL;
    }
    zstd_tls = z;
    return z;
}

const char *compress_name(int type)
{
    switch (type) {
    case COMPRESS_NONE:
        return "none";
    case COMPRESS_LZ4:
        return "lz4";
    case COMPRESS_ZSTD:
        return "zstd";
    default:
        return "unknown";
    }
}

static shale_code append_lz4(const void *src, size_t n, shale_buf *out, shale_error *err)
{
    if (n > LZ4_MAX_INPUT_SIZE) {
        return err_set(err, SHALE_INVALID, 0, "lz4: %zu bytes is over the %d byte input limit", n,
                       LZ4_MAX_INPUT_SIZE);
    }
    int bound = LZ4_compressBound((int)n);
    shale_code rc = buf_reserve(out, (size_t)bound, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    int got = LZ4_compress_default(src, (char *)out->data + out->len, (int)n, bound);
    if (got <= 0) {
        /* Cannot happen with a compressBound-sized destination. */
        return err_set(err, SHALE_INVALID, 0, "lz4: compressing %zu bytes failed", n);
    }
    out->len += (size_t)got;
    return SHALE_OK;
}

static shale_code append_zstd(int level, const void *src, size_t n, shale_buf *out,
                              shale_error *err)
{
    if (level != 0 && (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())) {
        return err_set(err, SHALE_INVALID, 0, "zstd: level %d is outside %d .. %d", level,
                       ZSTD_minCLevel(), ZSTD_maxCLevel());
    }
    zstd_ctx *z = zstd_thread_ctx();
    if (z == NULL) {
        return err_nomem(err);
    }
    if (z->cctx == NULL && (z->cctx = ZSTD_createCCtx()) == NULL) {
        return err_nomem(err);
    }
    size_t bound = ZSTD_compressBound(n);
    if (ZSTD_isError(bound)) {
        return err_set(err, SHALE_INVALID, 0, "zstd: %zu bytes is over the input limit", n);
    }
    shale_code rc = buf_reserve(out, bound, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    size_t got = ZSTD_compressCCtx(z->cctx, (char *)out->data + out->len, bound, src, n,
                                   level != 0 ? level : ZSTD_CLEVEL_DEFAULT);
    if (ZSTD_isError(got)) {
        /* The context allocates its tables lazily: an error here is memory, not input. */
        return err_set(err, SHALE_NOMEM, 0, "zstd: compressing %zu bytes failed: %s", n,
                       ZSTD_getErrorName(got));
    }
    out->len += got;
    return SHALE_OK;
}

shale_code compress_append(int type, int level, const void *src, size_t n, shale_buf *out,
                           shale_error *err)
{
    switch (type) {
    case COMPRESS_NONE:
        return buf_append(out, src, n, err);
    case COMPRESS_LZ4:
        return append_lz4(src, n, out, err);
    case COMPRESS_ZSTD:
        return append_zstd(level, src, n, out, err);
    default:
        return err_set(err, SHALE_INVALID, 0, "unknown compression type %d", type);
    }
}

static shale_code expand_lz4(const void *src, size_t n, void *dst, size_t raw_len, shale_error *err)
{
    char one;
    if (n > INT_MAX || raw_len > INT_MAX) {
        return err_set(err, SHALE_CORRUPTION, 0, "lz4: %zu -> %zu bytes is over the size limit", n,
                       raw_len);
    }
    /* LZ4 wants a real pointer even for an empty output. */
    int got = LZ4_decompress_safe(src, raw_len > 0 ? dst : &one, (int)n, (int)raw_len);
    if (got < 0 || (size_t)got != raw_len) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "lz4: damaged input (%zu bytes do not expand to %zu)", n, raw_len);
    }
    return SHALE_OK;
}

static shale_code expand_zstd(const void *src, size_t n, void *dst, size_t raw_len,
                              shale_error *err)
{
    char one;
    unsigned long long stated = ZSTD_getFrameContentSize(src, n);
    if (stated == ZSTD_CONTENTSIZE_ERROR) {
        return err_set(err, SHALE_CORRUPTION, 0, "zstd: damaged input (no frame header)");
    }
    if (stated != ZSTD_CONTENTSIZE_UNKNOWN && stated != (unsigned long long)raw_len) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "zstd: damaged input (frame states %llu bytes, expected %zu)", stated,
                       raw_len);
    }
    zstd_ctx *z = zstd_thread_ctx();
    if (z == NULL) {
        return err_nomem(err);
    }
    if (z->dctx == NULL && (z->dctx = ZSTD_createDCtx()) == NULL) {
        return err_nomem(err);
    }
    size_t got = ZSTD_decompressDCtx(z->dctx, raw_len > 0 ? dst : &one, raw_len, src, n);
    if (ZSTD_isError(got)) {
        return err_set(err, SHALE_CORRUPTION, 0, "zstd: damaged input: %s", ZSTD_getErrorName(got));
    }
    if (got != raw_len) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "zstd: damaged input (%zu bytes expand to %zu, expected %zu)", n, got,
                       raw_len);
    }
    return SHALE_OK;
}

shale_code compress_decompress(int type, const void *src, size_t n, void *dst, size_t raw_len,
                               shale_error *err)
{
    switch (type) {
    case COMPRESS_NONE:
        if (n != raw_len) {
            return err_set(err, SHALE_CORRUPTION, 0, "stored %zu bytes, expected %zu", n, raw_len);
        }
        if (n > 0) {
            memcpy(dst, src, n);
        }
        return SHALE_OK;
    case COMPRESS_LZ4:
        return expand_lz4(src, n, dst, raw_len, err);
    case COMPRESS_ZSTD:
        return expand_zstd(src, n, dst, raw_len, err);
    default:
        return err_set(err, SHALE_INVALID, 0, "unknown compression type %d", type);
    }
}
