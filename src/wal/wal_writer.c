/*
 * wal_writer: framing into an in-process buffer, one append per flush (contract in wal_writer.h,
 * format in wal_format.h).
 *
 * State: `flushed` bytes of the segment have been handed to the OS; `buf[0, len)` holds the
 * framed bytes that follow them. The block offset where the next fragment goes is therefore
 * (flushed + len) % WAL_BLOCK_SIZE: no separate framing state exists that could drift from the
 * bytes, and discarding the buffer rewinds the framing to the flushed offset for free.
 */
#include "wal/wal_writer.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "wal/wal_format.h"

/* First allocation: room for a typical group commit without a regrow. */
#define WAL_BUF_INITIAL ((size_t)64 << 10)
/* After a successful flush a buffer grown beyond this (by one big batch) is shrunk back to
 * WAL_BUF_INITIAL, so a rare huge batch does not pin its memory for the life of the segment,
 * while the common case (commits far below it) reuses one allocation forever. */
#define WAL_BUF_KEEP    ((size_t)4 << 20)

struct wal_writer {
    const shale_env *env;
    env_file *file;
    uint64_t file_number;
    uint64_t flushed; /* bytes handed to the OS */
    uint64_t synced;  /* bytes known durable (last successful sync) */
    /* The synced offset the last framed sync marker announced, and the same as of the last
     * successful flush (discarding the buffer rewinds to it). */
    uint64_t marked;
    uint64_t marked_flushed;
    /* Where the last marker wal_writer_mark wrote ends: a later sync covering only that marker
     * needs no marker of its own. */
    uint64_t marker_end;
    uint8_t *buf; /* framed bytes after `flushed` */
    size_t len;
    size_t cap;
    /* crc32c of the one type byte, per type: the fragment CRC extends it over the payload. */
    uint32_t type_crc[WAL_FRAG_MAX_TYPE + 1];
    bool broken;
    shale_error sticky;
};

/* Upper bound of the framed size of an n-byte record: every fragment costs a header and may be
 * preceded by up to WAL_HEADER_SIZE - 1 bytes of padding; a record has at most
 * n / (block payload) + 2 fragments (a partial first block, full blocks, a partial last). */
static uint64_t framed_bound(uint64_t n)
{
    uint64_t frags = n / (WAL_BLOCK_SIZE - WAL_HEADER_SIZE) + 2;
    return n + frags * (2 * WAL_HEADER_SIZE - 1);
}

static shale_code reserve(wal_writer *w, uint64_t extra, shale_error *err)
{
    if (extra <= w->cap - w->len) {
        return SHALE_OK;
    }
    if (extra > SIZE_MAX / 2 - w->len) {
        return err_nomem(err);
    }
    size_t want = w->len + (size_t)extra;
    size_t cap = w->cap ? w->cap : WAL_BUF_INITIAL;
    while (cap < want) {
        cap *= 2;
    }
    uint8_t *p = realloc(w->buf, cap);
    if (p == NULL) {
        return err_nomem(err);
    }
    w->buf = p;
    w->cap = cap;
    return SHALE_OK;
}

static void shrink_if_huge(wal_writer *w)
{
    if (w->len == 0 && w->cap > WAL_BUF_KEEP) {
        free(w->buf);
        w->buf = NULL;
        w->cap = 0;
    }
}

/* A sync advanced past what the last marker announced, by more than a marker of its own. */
static bool need_mark(const wal_writer *w)
{
    return w->synced > w->marked && w->synced != w->marker_end;
}

/* Frames one record into the buffer, which has room (reserve). */
static void frame(wal_writer *w, const void *rec, size_t n)
{
    const uint8_t *src = rec;
    uint8_t *p = w->buf + w->len;
    size_t left = n;
    uint32_t boff = (uint32_t)((w->flushed + w->len) % WAL_BLOCK_SIZE);
    bool begin = true;
    do {
        uint32_t room = WAL_BLOCK_SIZE - boff;
        if (room < WAL_HEADER_SIZE) {
            memset(p, 0, room);
            p += room;
            boff = 0;
            room = WAL_BLOCK_SIZE;
        }
        size_t avail = room - WAL_HEADER_SIZE;
        size_t frag = left < avail ? left : avail;
        bool end = frag == left;
        uint8_t type = begin ? (end ? WAL_FRAG_FULL : WAL_FRAG_FIRST)
                             : (end ? WAL_FRAG_LAST : WAL_FRAG_MIDDLE);
        uint32_t crc = w->type_crc[type];
        if (frag > 0) {
            crc = crc32c_extend(crc, src, frag);
            memcpy(p + WAL_HEADER_SIZE, src, frag);
            src += frag;
        }
        coding_put_fixed32(p, crc32c_mask(crc));
        coding_put_fixed16(p + 4, (uint16_t)frag);
        p[6] = type;
        p += WAL_HEADER_SIZE + frag;
        left -= frag;
        boff += (uint32_t)(WAL_HEADER_SIZE + frag);
        if (boff == WAL_BLOCK_SIZE) {
            boff = 0;
        }
        begin = false;
    } while (left > 0);
    w->len = (size_t)(p - w->buf);
}

/* Frames the sync marker for the last sync (the buffer has room for it). */
static void frame_mark(wal_writer *w)
{
    uint8_t mark[WAL_SYNC_MARK_LEN];

    mark[0] = WAL_REC_SYNCED;
    coding_put_fixed64(mark + 1, w->synced);
    frame(w, mark, sizeof mark);
    w->marked = w->synced;
}

shale_code wal_writer_add(wal_writer *w, const void *rec, size_t n, shale_error *err)
{
    bool marking = need_mark(w);

    if (w->broken) {
        return err_copy(err, &w->sticky);
    }
    if ((uint64_t)n > WAL_MAX_RECORD_BYTES) {
        return err_set(err, SHALE_INVALID, 0, "%s: record of %zu bytes exceeds the log limit",
                       env_file_name(w->file), n);
    }
    shale_code rc =
        reserve(w, framed_bound(n) + (marking ? framed_bound(WAL_SYNC_MARK_LEN) : 0), err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (marking) {
        /* The proof a reader needs to call damage before `synced` corruption rather than a torn
         * tail (wal_format.h): it rides in the same append as the record, so it costs no I/O. */
        frame_mark(w);
    }
    frame(w, rec, n);
    return SHALE_OK;
}

shale_code wal_writer_flush(wal_writer *w, shale_error *err)
{
    shale_error aerr;
    shale_error terr;

    if (w->broken) {
        return err_copy(err, &w->sticky);
    }
    if (w->len == 0) {
        return SHALE_OK;
    }
    shale_code rc = env_file_append(w->file, w->buf, w->len, &aerr);
    if (rc != SHALE_OK) {
        /* How much reached the file is unknown: cut it back so no half record can stand in
         * front of a later good one. The bytes stay buffered for a retry. */
        if (env_file_truncate(w->file, w->flushed, &terr) != SHALE_OK) {
            w->broken = true;
            err_set(&w->sticky, SHALE_IO, terr.sys_errno ? terr.sys_errno : aerr.sys_errno,
                    "%s @%" PRIu64 ": append failed (%s), truncating back failed (%s)",
                    env_file_name(w->file), w->flushed, aerr.msg, terr.msg);
            return err_copy(err, &w->sticky);
        }
        return err_copy(err, &aerr);
    }
    w->flushed += w->len;
    w->len = 0;
    w->marked_flushed = w->marked;
    shrink_if_huge(w);
    return SHALE_OK;
}

static shale_code sync_file(wal_writer *w, bool data_only, shale_error *err)
{
    shale_code rc = wal_writer_flush(w, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (w->synced == w->flushed) {
        return SHALE_OK;
    }
    if (env_file_sync(w->file, data_only, &w->sticky) != SHALE_OK) {
        /* Final: the kernel may have dropped the dirty pages, a later success proves nothing. */
        w->broken = true;
        return err_copy(err, &w->sticky);
    }
    w->synced = w->flushed;
    return SHALE_OK;
}

shale_code wal_writer_sync(wal_writer *w, shale_error *err)
{
    if (w->broken) {
        return err_copy(err, &w->sticky);
    }
    return sync_file(w, true, err);
}

shale_code wal_writer_mark(wal_writer *w, shale_error *err)
{
    if (w->broken) {
        return err_copy(err, &w->sticky);
    }
    if (!need_mark(w)) {
        return SHALE_OK;
    }
    shale_code rc = reserve(w, framed_bound(WAL_SYNC_MARK_LEN), err);
    if (rc != SHALE_OK) {
        return rc;
    }
    frame_mark(w);
    w->marker_end = w->flushed + w->len;
    return wal_writer_flush(w, err);
}

void wal_writer_discard_unflushed(wal_writer *w)
{
    w->len = 0;
    w->marked = w->marked_flushed;
    shrink_if_huge(w);
}

uint64_t wal_writer_size(const wal_writer *w)
{
    return w->flushed + w->len;
}

uint64_t wal_writer_flushed_size(const wal_writer *w)
{
    return w->flushed;
}

uint64_t wal_writer_buffered_bytes(const wal_writer *w)
{
    return w->len;
}

uint64_t wal_writer_file_number(const wal_writer *w)
{
    return w->file_number;
}

bool wal_writer_broken(const wal_writer *w, shale_error *err)
{
    if (w->broken) {
        err_copy(err, &w->sticky);
    }
    return w->broken;
}

shale_code wal_writer_close(wal_writer *w, bool sync, shale_error *err)
{
    shale_error cerr;
    shale_code rc;

    if (w == NULL) {
        return SHALE_OK;
    }
    if (w->broken) {
        rc = err_copy(err, &w->sticky);
    } else {
        rc = sync ? wal_writer_sync(w, err) : wal_writer_flush(w, err);
    }
    shale_code crc = env_file_close(w->file, &cerr);
    if (rc == SHALE_OK && crc != SHALE_OK) {
        rc = err_copy(err, &cerr);
    }
    free(w->buf);
    free(w);
    return rc;
}

shale_code wal_writer_create(const shale_env *env, const char *dir, const char *name,
                             uint64_t file_number, wal_writer **out, shale_error *err)
{
    return wal_writer_create_next(env, dir, name, file_number, 0, 0, out, err);
}

shale_code wal_writer_create_next(const shale_env *env, const char *dir, const char *name,
                                  uint64_t file_number, uint64_t prev_number, uint64_t prev_size,
                                  wal_writer **out, shale_error *err)
{
    uint8_t prev[WAL_PREV_LEN];
    uint8_t hdr[WAL_SEGMENT_HEADER_LEN];
    shale_code rc;
    wal_writer *w = NULL;
    char *path = NULL;
    size_t dlen = strlen(dir);
    size_t nlen = strlen(name);

    *out = NULL;
    path = malloc(dlen + nlen + 2);
    if (path == NULL) {
        return err_nomem(err);
    }
    memcpy(path, dir, dlen);
    path[dlen] = '/';
    memcpy(path + dlen + 1, name, nlen + 1);

    w = calloc(1, sizeof *w);
    if (w == NULL) {
        rc = err_nomem(err);
        goto out_free_path;
    }
    w->env = env;
    w->file_number = file_number;
    for (uint8_t t = 0; t <= WAL_FRAG_MAX_TYPE; t++) {
        w->type_crc[t] = crc32c_value(&t, 1);
    }
    rc = env->open_file(env, path, ENV_WRITE | ENV_CREATE | ENV_EXCL, &w->file, err);
    if (rc != SHALE_OK) {
        goto out_free_writer;
    }

    hdr[0] = WAL_REC_HEADER;
    memcpy(hdr + 1, WAL_MAGIC, WAL_MAGIC_LEN);
    coding_put_fixed32(hdr + 1 + WAL_MAGIC_LEN, WAL_FORMAT_VERSION);
    coding_put_fixed64(hdr + 1 + WAL_MAGIC_LEN + 4, file_number);
    rc = wal_writer_add(w, hdr, sizeof hdr, err);
    if (rc == SHALE_OK && prev_number != 0) {
        prev[0] = WAL_REC_PREV;
        coding_put_fixed64(prev + 1, prev_number);
        coding_put_fixed64(prev + 9, prev_size);
        rc = wal_writer_add(w, prev, sizeof prev, err);
    }
    if (rc != SHALE_OK) {
        goto out_remove;
    }
    /* A full fsync (not fdatasync) for the new file: its size and inode must be durable too. */
    rc = sync_file(w, false, err);
    if (rc != SHALE_OK) {
        goto out_remove;
    }
    rc = env->sync_dir(env, dir, err);
    if (rc != SHALE_OK) {
        goto out_remove;
    }
    /* The header's own sync needs no marker: a segment's header is durable by construction. */
    w->marked = w->marked_flushed = w->synced;
    free(path);
    *out = w;
    return SHALE_OK;

out_remove:
    /* Best effort: a segment that never became durable is referred to by nothing; a leftover
     * one would read as an empty torn segment anyway. */
    w->broken = true;
    (void)env_file_close(w->file, NULL);
    (void)env->remove_file(env, path, NULL);
    free(w->buf);
out_free_writer:
    free(w);
out_free_path:
    free(path);
    return rc;
}
