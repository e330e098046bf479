/*
 * wal_reader: fragments to logical records, torn tail versus corruption (contract in
 * wal_reader.h, format in wal_format.h).
 *
 * The file is read through a window of whole blocks (WAL_READ_CHUNK bytes, or the whole file
 * when smaller), always starting at a block boundary. Because a fragment never crosses a block,
 * any fragment lies entirely inside the window once its block is loaded, so a FULL record is
 * returned as a slice into the window without a copy; only FIRST..LAST records are assembled, in
 * a reusable buffer.
 *
 * The decision after an invalid fragment at X (see find_valid and proven_synced): in a version 1
 * segment a valid fragment after X proves X was damaged in place (a torn write was taken to keep
 * a prefix of what was appended). A power loss may keep any subset of the unsynced bytes,
 * though, so in a version 2 segment only a sync marker after X announcing synced_to > X proves
 * damage: without one, X lies in bytes no sync covered, and the segment ends before X (a torn
 * tail, whatever valid fragments follow).
 */
#include "wal/wal_reader.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "base/slice.h"
#include "wal/wal_format.h"

/* 8 blocks per read: large sequential reads, small enough to stay in cache while parsed. */
#define WAL_READ_CHUNK ((size_t)8 * WAL_BLOCK_SIZE)

enum rstate {
    RS_READING = 0,
    RS_END,    /* NOT_FOUND from now on */
    RS_FAILED, /* `failure` from now on */
};

struct wal_reader {
    env_file *file;
    const char *path; /* the file's copy */
    bool salvage;
    uint64_t file_size;

    /* window: file bytes [win_off, win_off + win_len) */
    uint8_t *win;
    size_t win_cap;
    uint64_t win_off;
    size_t win_len;

    uint64_t pos; /* next fragment header to examine */

    /* logical record being assembled from FIRST..LAST */
    bool in_rec;
    uint64_t rec_start;
    uint8_t *rec;
    size_t rec_len;
    size_t rec_cap;

    bool resyncing; /* salvage: drop orphan MIDDLE/LAST fragments after a skip */
    bool have_header;
    uint32_t version; /* the segment header's, once read (0 before) */
    bool want_prev;   /* reading the record after the header, where WAL_REC_PREV may stand */

    /* a data record met while looking for the header (salvage with a lost header) */
    bool pending;
    shale_slice pending_rec;
    uint64_t pending_off;

    uint32_t type_crc[WAL_FRAG_MAX_TYPE + 1]; /* crc32c of each type byte */

    enum rstate state;
    shale_error failure;
    wal_reader_stats stats;
};

/* A parsed fragment header. */
typedef struct frag {
    uint8_t type;
    uint32_t len;
    const uint8_t *payload;
} frag;

/* What check_frag found at a position. */
enum fcheck {
    FC_VALID = 0,
    FC_TRUNC_HEADER, /* fewer than WAL_HEADER_SIZE bytes left in the file */
    FC_BAD_TYPE,
    FC_LEN_BLOCK, /* the length runs past the block */
    FC_LEN_FILE,  /* the length runs past the end of the file */
    FC_BAD_CRC,
};

/* Makes file bytes [off, off + n) available (they must lie in one block) and returns a pointer
 * to them, or NULL when the file ends first. Moves the window (block-aligned) when needed. */
static shale_code load(wal_reader *r, uint64_t off, size_t n, const uint8_t **out, shale_error *err)
{
    if (off >= r->win_off && off + n <= r->win_off + r->win_len) {
        *out = r->win + (off - r->win_off);
        return SHALE_OK;
    }
    *out = NULL;
    if (off + n > r->file_size) {
        return SHALE_OK;
    }
    uint64_t start = off - off % WAL_BLOCK_SIZE;
    uint64_t want = r->file_size - start;
    if (want > r->win_cap) {
        want = r->win_cap;
    }
    size_t got = 0;
    r->win_len = 0;
    shale_code rc = env_file_read_at(r->file, start, r->win, (size_t)want, &got, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    r->win_off = start;
    r->win_len = got;
    if (got < want) {
        /* The file shrank under us: its end is where the read stopped. */
        r->file_size = start + got;
    }
    if (off + n <= start + got) {
        *out = r->win + (off - start);
    }
    return SHALE_OK;
}

/* Checks the fragment at `off` (which leaves room for a header in its block): valid means a type
 * of 1..4, a length that fits in the block and in the file, and a matching checksum. f->len is
 * set whenever the header could be read. */
static shale_code check_frag(wal_reader *r, uint64_t off, frag *f, enum fcheck *res,
                             shale_error *err)
{
    const uint8_t *h;
    uint32_t boff = (uint32_t)(off % WAL_BLOCK_SIZE);

    f->type = WAL_FRAG_ZERO;
    f->len = UINT32_MAX;
    f->payload = NULL;
    shale_code rc = load(r, off, WAL_HEADER_SIZE, &h, err);
    if (rc != SHALE_OK || h == NULL) {
        *res = FC_TRUNC_HEADER;
        return rc;
    }
    uint32_t crc = coding_get_fixed32(h);
    uint32_t len = coding_get_fixed16(h + 4);
    uint8_t type = h[6];
    f->type = type;
    f->len = len;
    if (type == WAL_FRAG_ZERO || type > WAL_FRAG_MAX_TYPE) {
        *res = FC_BAD_TYPE;
        return SHALE_OK;
    }
    if (boff + WAL_HEADER_SIZE + len > WAL_BLOCK_SIZE) {
        *res = FC_LEN_BLOCK;
        return SHALE_OK;
    }
    rc = load(r, off, WAL_HEADER_SIZE + len, &h, err);
    if (rc != SHALE_OK || h == NULL) {
        *res = FC_LEN_FILE;
        return rc;
    }
    if (crc32c_unmask(crc) != crc32c_extend(r->type_crc[type], h + WAL_HEADER_SIZE, len)) {
        *res = FC_BAD_CRC;
        return SHALE_OK;
    }
    f->payload = h + WAL_HEADER_SIZE;
    *res = FC_VALID;
    return SHALE_OK;
}

static void describe(enum fcheck res, const frag *f, char *why, size_t why_len)
{
    switch (res) {
    case FC_TRUNC_HEADER:
        snprintf(why, why_len, "truncated fragment header");
        break;
    case FC_BAD_TYPE:
        snprintf(why, why_len, "bad fragment type %u", (unsigned)f->type);
        break;
    case FC_LEN_BLOCK:
        snprintf(why, why_len, "length %u exceeds block", (unsigned)f->len);
        break;
    case FC_LEN_FILE:
        snprintf(why, why_len, "length %u runs past the end of the file", (unsigned)f->len);
        break;
    case FC_BAD_CRC:
        snprintf(why, why_len, "bad checksum");
        break;
    case FC_VALID:
    default:
        snprintf(why, why_len, "invalid fragment");
        break;
    }
}

static shale_code is_valid_at(wal_reader *r, uint64_t off, bool *valid, shale_error *err)
{
    frag f;
    enum fcheck res;

    *valid = false;
    if (off >= r->file_size || WAL_BLOCK_SIZE - off % WAL_BLOCK_SIZE < WAL_HEADER_SIZE) {
        return SHALE_OK;
    }
    shale_code rc = check_frag(r, off, &f, &res, err);
    *valid = rc == SHALE_OK && res == FC_VALID;
    return rc;
}

/* Looks for a valid fragment after the invalid one at x: at x + header + hint_len (when that
 * length is plausible), at every later offset in x's block, and at every later block start.
 * *found is the earliest one (it is where salvage resumes), or UINT64_MAX if none. */
static shale_code find_valid(wal_reader *r, uint64_t x, uint32_t hint_len, uint64_t *found,
                             shale_error *err)
{
    uint64_t block_end = x - x % WAL_BLOCK_SIZE + WAL_BLOCK_SIZE;
    bool valid;
    shale_code rc;

    *found = UINT64_MAX;
    /* Without salvage only existence matters: the position x's own length implies is the
     * likeliest (a damaged payload), so it is tried first. Salvage wants the earliest. */
    if (!r->salvage && hint_len != UINT32_MAX) {
        uint64_t at = x + WAL_HEADER_SIZE + hint_len;
        rc = is_valid_at(r, at, &valid, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        if (valid) {
            *found = at;
            return SHALE_OK;
        }
    }
    for (uint64_t at = x + 1; at + WAL_HEADER_SIZE <= block_end && at < r->file_size; at++) {
        rc = is_valid_at(r, at, &valid, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        if (valid) {
            *found = at;
            return SHALE_OK;
        }
    }
    for (uint64_t at = block_end; at < r->file_size; at += WAL_BLOCK_SIZE) {
        rc = is_valid_at(r, at, &valid, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        if (valid) {
            *found = at;
            return SHALE_OK;
        }
    }
    return SHALE_OK;
}

/* Where a byte-by-byte search from `pos`, whose header (in the window) is all zeros, can go on:
 * a header starting inside a run of zeros has type 0 unless it starts in the run's last 6
 * bytes. A zero-filled tail (a file extended but never written, after a power loss) is the
 * common case, and is skipped a window at a time instead of byte by byte. */
static uint64_t past_zeros(const wal_reader *r, uint64_t pos)
{
    const uint8_t *p = r->win + (pos - r->win_off);
    const uint8_t *q = p, *end = r->win + r->win_len;
    while (q < end && *q == 0) {
        q++;
    }
    uint64_t run = (uint64_t)(q - p);
    return run > WAL_HEADER_SIZE ? pos + run - (WAL_HEADER_SIZE - 1) : pos + 1;
}

/* Version 2: is there a valid sync marker at or after `from` announcing that bytes past x had
 * been synced? Walks fragment by fragment, and over damage byte by byte (damage may cover a
 * block start, with intact fragments after it in the same block), assembling a marker that was
 * split over a block boundary. Only ever run after damage was found. */
static shale_code proven_synced(wal_reader *r, uint64_t from, uint64_t x, bool *proved,
                                shale_error *err)
{
    uint8_t mark[WAL_SYNC_MARK_LEN];
    size_t mlen = 0;
    bool open = false; /* assembling a record that may be a marker */
    uint64_t pos = from;
    frag f;
    enum fcheck res;

    *proved = false;
    while (pos < r->file_size) {
        uint32_t room = WAL_BLOCK_SIZE - (uint32_t)(pos % WAL_BLOCK_SIZE);
        if (room < WAL_HEADER_SIZE) {
            pos += room;
            continue;
        }
        shale_code rc = check_frag(r, pos, &f, &res, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        if (res != FC_VALID) {
            pos = res == FC_BAD_TYPE && f.type == WAL_FRAG_ZERO && f.len == 0 ? past_zeros(r, pos)
                                                                              : pos + 1;
            open = false;
            continue;
        }
        bool first = f.type == WAL_FRAG_FULL || f.type == WAL_FRAG_FIRST;
        if (first) {
            open = true;
            mlen = 0;
        }
        if (open && mlen + f.len <= sizeof mark) {
            memcpy(mark + mlen, f.payload, f.len);
            mlen += f.len;
        } else {
            open = false;
        }
        bool last = f.type == WAL_FRAG_FULL || f.type == WAL_FRAG_LAST;
        if (open && last && mlen == sizeof mark && mark[0] == WAL_REC_SYNCED) {
            uint64_t synced_to = coding_get_fixed64(mark + 1);
            if (synced_to > x && synced_to <= pos) {
                *proved = true;
                return SHALE_OK;
            }
        }
        if (last) {
            open = false;
        }
        pos += WAL_HEADER_SIZE + f.len;
    }
    return SHALE_OK;
}

static shale_code fail(wal_reader *r, shale_error *err)
{
    r->state = RS_FAILED;
    return err_copy(err, &r->failure);
}

static shale_code reach_end(wal_reader *r)
{
    r->state = RS_END;
    r->in_rec = false;
    if (!r->have_header || r->stats.valid_end < r->file_size) {
        r->stats.torn_tail = true;
    }
    return SHALE_NOT_FOUND;
}

static void drop_partial(wal_reader *r, uint64_t upto)
{
    if (r->in_rec) {
        r->stats.salvaged_bytes += upto - r->rec_start;
        r->in_rec = false;
    }
}

/* The fragment at x is invalid (`why`). Decides torn tail or corruption; with salvage, moves to
 * the next valid fragment. Returns SHALE_OK when reading goes on. */
static shale_code invalid_at(wal_reader *r, uint64_t x, uint32_t hint_len, const char *why,
                             shale_error *err)
{
    uint64_t found;
    uint32_t boff = (uint32_t)(x % WAL_BLOCK_SIZE);

    if (hint_len != UINT32_MAX && boff + WAL_HEADER_SIZE + hint_len > WAL_BLOCK_SIZE) {
        hint_len = UINT32_MAX; /* implausible: the length does not fit in the block */
    }
    if (!r->salvage && r->version >= 2) {
        bool proven;
        if (proven_synced(r, x + 1, x, &proven, &r->failure) != SHALE_OK) {
            return fail(r, err);
        }
        if (!proven) {
            return reach_end(r);
        }
        err_set(&r->failure, SHALE_CORRUPTION, 0, "%s @%" PRIu64 ": %s", r->path, x, why);
        return fail(r, err);
    }
    if (find_valid(r, x, hint_len, &found, &r->failure) != SHALE_OK) {
        return fail(r, err);
    }
    if (found == UINT64_MAX) {
        return reach_end(r);
    }
    if (!r->salvage) {
        err_set(&r->failure, SHALE_CORRUPTION, 0, "%s @%" PRIu64 ": %s", r->path, x, why);
        return fail(r, err);
    }
    drop_partial(r, x);
    r->stats.salvaged_records++;
    r->stats.salvaged_bytes += found - x;
    r->pos = found;
    r->resyncing = true;
    return SHALE_OK;
}

static shale_code rec_append(wal_reader *r, const uint8_t *p, uint32_t n, shale_error *err)
{
    if ((uint64_t)r->rec_len + n > WAL_MAX_RECORD_BYTES) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s @%" PRIu64 ": record exceeds %" PRIu64 " bytes", r->path, r->rec_start,
                       (uint64_t)WAL_MAX_RECORD_BYTES);
    }
    if (r->rec_len + n > r->rec_cap) {
        size_t cap = r->rec_cap ? r->rec_cap : WAL_BLOCK_SIZE;
        while (cap < r->rec_len + n) {
            cap *= 2;
        }
        uint8_t *q = realloc(r->rec, cap);
        if (q == NULL) {
            return err_nomem(err);
        }
        r->rec = q;
        r->rec_cap = cap;
    }
    if (n > 0) {
        memcpy(r->rec + r->rec_len, p, n);
    }
    r->rec_len += n;
    return SHALE_OK;
}

/* A complete logical record at `off`: SHALE_OK to return it, SHALE_NOT_FOUND for a sync marker
 * (consumed here), SHALE_CORRUPTION for a marker that passed its checksum but cannot be right
 * (a writer bug or deliberate damage; salvage skips it). */
static shale_code take_record(wal_reader *r, shale_slice rec, uint64_t off, shale_error *err)
{
    const uint8_t *p = rec.data;

    if (rec.len > 0 && p[0] == WAL_REC_PREV) {
        if (r->want_prev && rec.len == WAL_PREV_LEN) {
            r->stats.has_prev = true;
            r->stats.prev_number = coding_get_fixed64(p + 1);
            r->stats.prev_size = coding_get_fixed64(p + 9);
            r->want_prev = false;
            return SHALE_NOT_FOUND;
        }
        if (r->salvage) {
            r->stats.salvaged_records++;
            r->stats.salvaged_bytes += rec.len;
            return SHALE_NOT_FOUND;
        }
        err_set(&r->failure, SHALE_CORRUPTION, 0,
                "%s @%" PRIu64 ": misplaced previous-segment record (%zu bytes)", r->path, off,
                rec.len);
        return fail(r, err);
    }
    r->want_prev = false;
    if (rec.len == 0 || p[0] != WAL_REC_SYNCED) {
        r->stats.records++;
        return SHALE_OK;
    }
    /* (A version 1 segment has no record of this kind; a salvage that lost the header does not
     * know the version, and takes a well-formed marker for one.) */
    if (rec.len == WAL_SYNC_MARK_LEN && coding_get_fixed64(p + 1) <= off) {
        return SHALE_NOT_FOUND;
    }
    if (r->salvage) {
        r->stats.salvaged_records++;
        r->stats.salvaged_bytes += rec.len;
        return SHALE_NOT_FOUND;
    }
    err_set(&r->failure, SHALE_CORRUPTION, 0, "%s @%" PRIu64 ": bad sync marker (%zu bytes)",
            r->path, off, rec.len);
    return fail(r, err);
}

/* The core: the next complete logical record (header included), SHALE_NOT_FOUND at the end. */
static shale_code read_record(wal_reader *r, shale_slice *out, uint64_t *out_off, shale_error *err)
{
    char why[96];
    frag f;
    enum fcheck res;
    shale_code rc;

    if (r->state == RS_END) {
        return SHALE_NOT_FOUND;
    }
    if (r->state == RS_FAILED) {
        return err_copy(err, &r->failure);
    }
    for (;;) {
        if (r->pos >= r->file_size) {
            /* A record still open here is cut short by the end: a torn tail. */
            return reach_end(r);
        }
        uint32_t room = WAL_BLOCK_SIZE - (uint32_t)(r->pos % WAL_BLOCK_SIZE);
        if (room < WAL_HEADER_SIZE) {
            r->pos += room; /* zero padding */
            continue;
        }
        rc = check_frag(r, r->pos, &f, &res, &r->failure);
        if (rc != SHALE_OK) {
            return fail(r, err);
        }
        uint64_t x = r->pos;
        if (res != FC_VALID) {
            describe(res, &f, why, sizeof why);
            rc = invalid_at(r, x, f.len, why, err);
            if (rc != SHALE_OK) {
                return rc;
            }
            continue;
        }
        uint64_t next = x + WAL_HEADER_SIZE + f.len;
        switch (f.type) {
        case WAL_FRAG_FULL:
        case WAL_FRAG_FIRST:
            r->resyncing = false;
            if (r->in_rec) {
                /* The open record never got its LAST: the fragment at x is out of order. A FULL
                 * is itself a complete record after the damage, so that is corruption. A FIRST
                 * is judged by the rule: torn if nothing valid follows it. */
                if (f.type == WAL_FRAG_FIRST && r->version < 2) {
                    uint64_t found;
                    if (find_valid(r, x, f.len, &found, &r->failure) != SHALE_OK) {
                        return fail(r, err);
                    }
                    if (found == UINT64_MAX) {
                        return reach_end(r);
                    }
                }
                if (!r->salvage && r->version >= 2) {
                    /* The open record's missing end is damage at rec_start; x is valid. */
                    bool proven;
                    if (proven_synced(r, x, r->rec_start, &proven, &r->failure) != SHALE_OK) {
                        return fail(r, err);
                    }
                    if (!proven) {
                        return reach_end(r);
                    }
                }
                if (!r->salvage) {
                    err_set(&r->failure, SHALE_CORRUPTION, 0,
                            "%s @%" PRIu64 ": record started @%" PRIu64 " has no end", r->path, x,
                            r->rec_start);
                    return fail(r, err);
                }
                /* Salvage resumes at x itself: it is valid and starts a record. */
                drop_partial(r, x);
                r->stats.salvaged_records++;
            }
            if (f.type == WAL_FRAG_FULL) {
                r->pos = next;
                r->stats.valid_end = next;
                rc = take_record(r, slice_make(f.payload, f.len), x, err);
                if (rc == SHALE_NOT_FOUND) {
                    continue; /* a sync marker */
                }
                if (rc == SHALE_OK) {
                    *out = slice_make(f.payload, f.len);
                    *out_off = x;
                }
                return rc;
            }
            r->in_rec = true;
            r->rec_start = x;
            r->rec_len = 0;
            break;
        case WAL_FRAG_MIDDLE:
        case WAL_FRAG_LAST:
            if (!r->in_rec) {
                if (r->resyncing) {
                    r->stats.salvaged_bytes += next - x;
                    r->pos = next;
                    continue;
                }
                snprintf(why, sizeof why, "%s fragment outside a record",
                         f.type == WAL_FRAG_MIDDLE ? "middle" : "last");
                rc = invalid_at(r, x, f.len, why, err);
                if (rc != SHALE_OK) {
                    return rc;
                }
                continue;
            }
            break;
        default:
            break;
        }
        rc = rec_append(r, f.payload, f.len, &r->failure);
        if (rc == SHALE_NOMEM) {
            return fail(r, err);
        }
        if (rc != SHALE_OK) {
            /* Over the size limit: no writer makes such a record. */
            if (!r->salvage) {
                return fail(r, err);
            }
            drop_partial(r, next);
            r->stats.salvaged_records++;
            r->resyncing = true;
            r->pos = next;
            continue;
        }
        r->pos = next;
        if (f.type == WAL_FRAG_LAST) {
            r->in_rec = false;
            r->stats.valid_end = next;
            rc = take_record(r, slice_make(r->rec, r->rec_len), r->rec_start, err);
            if (rc == SHALE_NOT_FOUND) {
                continue; /* a sync marker */
            }
            if (rc == SHALE_OK) {
                *out = slice_make(r->rec, r->rec_len);
                *out_off = r->rec_start;
            }
            return rc;
        }
    }
}

static shale_code check_header(wal_reader *r, shale_slice rec, uint64_t off, uint64_t expect,
                               shale_error *err)
{
    const uint8_t *p = rec.data;

    if (rec.len != WAL_SEGMENT_HEADER_LEN || p[0] != WAL_REC_HEADER) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s @%" PRIu64 ": first record is not a segment header (kind %u, %zu bytes)",
                       r->path, off, rec.len ? (unsigned)p[0] : 0u, rec.len);
    }
    if (memcmp(p + 1, WAL_MAGIC, WAL_MAGIC_LEN) != 0) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s @%" PRIu64 ": bad segment magic", r->path,
                       off);
    }
    uint32_t version = coding_get_fixed32(p + 1 + WAL_MAGIC_LEN);
    if (version < WAL_FORMAT_VERSION_MIN || version > WAL_FORMAT_VERSION) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s @%" PRIu64 ": unsupported log format version %" PRIu32, r->path, off,
                       version);
    }
    uint64_t number = coding_get_fixed64(p + 1 + WAL_MAGIC_LEN + 4);
    if (number != expect) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s @%" PRIu64 ": file number %" PRIu64 ", expected %" PRIu64, r->path, off,
                       number, expect);
    }
    r->version = version;
    return SHALE_OK;
}

shale_code wal_reader_open(const shale_env *env, const char *path, uint64_t expect_file_number,
                           bool salvage, wal_reader **out, shale_error *err)
{
    shale_slice rec;
    uint64_t off;
    shale_code rc;

    *out = NULL;
    wal_reader *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return err_nomem(err);
    }
    r->salvage = salvage;
    for (uint8_t t = 0; t <= WAL_FRAG_MAX_TYPE; t++) {
        r->type_crc[t] = crc32c_value(&t, 1);
    }
    rc = env->open_file(env, path, ENV_READ, &r->file, err);
    if (rc != SHALE_OK) {
        goto out_free;
    }
    r->path = env_file_name(r->file);
    rc = env_file_size(r->file, &r->file_size, err);
    if (rc != SHALE_OK) {
        goto out_free;
    }
    r->stats.file_size = r->file_size;
    uint64_t blocks = r->file_size / WAL_BLOCK_SIZE + (r->file_size % WAL_BLOCK_SIZE != 0);
    r->win_cap =
        blocks * WAL_BLOCK_SIZE < WAL_READ_CHUNK ? (size_t)blocks * WAL_BLOCK_SIZE : WAL_READ_CHUNK;
    if (r->win_cap > 0) {
        r->win = malloc(r->win_cap);
        if (r->win == NULL) {
            rc = err_nomem(err);
            goto out_free;
        }
    }

    rc = read_record(r, &rec, &off, err);
    if (rc == SHALE_NOT_FOUND) {
        /* A torn header with nothing valid after it: an empty torn segment. */
        *out = r;
        return SHALE_OK;
    }
    if (rc != SHALE_OK) {
        goto out_free;
    }
    if (off != 0 && r->stats.salvaged_records > 0 &&
        (rec.len != WAL_SEGMENT_HEADER_LEN || ((const uint8_t *)rec.data)[0] != WAL_REC_HEADER)) {
        /* Salvage skipped a damaged header: keep the data record for the first next(). */
        r->pending = true;
        r->pending_rec = rec;
        r->pending_off = off;
        r->have_header = true;
        *out = r;
        return SHALE_OK;
    }
    rc = check_header(r, rec, off, expect_file_number, err);
    if (rc != SHALE_OK) {
        goto out_free;
    }
    r->have_header = true;
    if (r->version >= 2) {
        /* A WAL_REC_PREV right after the header is consumed (take_record) into the stats; any
         * other record is kept for the first next(), and a failure or the end is met again
         * there, where the caller expects it. */
        r->want_prev = true;
        shale_error perr;
        if (read_record(r, &rec, &off, &perr) == SHALE_OK) {
            r->pending = true;
            r->pending_rec = rec;
            r->pending_off = off;
        }
        r->want_prev = false;
    }
    *out = r;
    return SHALE_OK;

out_free:
    wal_reader_close(r);
    return rc;
}

shale_code wal_reader_next(wal_reader *r, shale_slice *rec, uint64_t *offset, shale_error *err)
{
    if (r->pending) {
        r->pending = false;
        *rec = r->pending_rec;
        *offset = r->pending_off;
        return SHALE_OK;
    }
    return read_record(r, rec, offset, err);
}

void wal_reader_get_stats(const wal_reader *r, wal_reader_stats *out)
{
    *out = r->stats;
}

void wal_reader_close(wal_reader *r)
{
    if (r == NULL) {
        return;
    }
    (void)env_file_close(r->file, NULL);
    free(r->win);
    free(r->rec);
    free(r);
}
