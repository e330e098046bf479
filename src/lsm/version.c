/*
 * version: versions, version edits, the manifest and CURRENT, compaction picking (contract in
 * version.h). After LevelDB's db/version_set.cc and version_edit.cc and RocksDB's leveled picker.
 *
 * ---- Edit encoding (the payload of a WAL_REC_EDIT record, after its kind byte) ----
 *
 *   edit    := field* trailer
 *   field   := tag varint32, payload
 *   trailer := nfields fixed32 | magic fixed32 (0x54444553, "SEDT" in file order)
 *
 *   tag  name            payload
 *   1    LOG_NUMBER      varint64
 *   2    FLUSHED_SEQ     varint64
 *   3    NEXT_FILE       varint64
 *   4    LAST_SEQ        varint64
 *   5    POINTER         level varint32, key (varint32 length + bytes)
 *   6    DELETED         level varint32, number varint64
 *   7    ADDED           level varint32, number varint64, size varint64,
 *                        smallest key (varint32 length + bytes), smallest_seq varint64,
 *                        largest key (varint32 length + bytes), largest_seq varint64,
 *                        min_seq varint64, max_seq varint64, entries varint64,
 *                        deletions varint64
 *   8    FORMAT          varint32 (= VERSION_EDIT_FORMAT, 1): only in the snapshot edit that
 *                        opens every manifest; a reader refuses another value
 *
 * Why tags: a field that is absent costs nothing, and a new field gets a new tag (an old reader
 * refuses it rather than misreading it). Why a trailer: the CRC lives in the WAL framing, but an
 * edit decoded on its own (salvage, fuzzing, a future use) must still show that it is whole; the
 * field count and the magic make a truncated or spliced edit fail instead of decoding as a
 * shorter valid one. Decoding refuses, as SHALE_CORRUPTION naming `where` and the byte offset:
 * an unknown tag, a truncated or overlong varint, a length past the end, a level >= VERSION_LEVELS,
 * a table whose smallest key sorts after its largest or whose min_seq > max_seq, a scalar or
 * pointer given twice, a field running into the trailer, and a count or magic that does not
 * match.
 *
 * ---- Manifest ----
 *
 * MANIFEST-NNNNNN = WAL_REC_HEADER (file number NNNNNN), then WAL_REC_EDIT records: the first is a
 * snapshot (FORMAT, LOG_NUMBER, FLUSHED_SEQ, NEXT_FILE, LAST_SEQ, every POINTER, an ADDED per
 * table), each later one an applied edit. State fields combine by maximum (a log number, a seq or
 * a file number never goes back), pointers by last write, tables by deletion then addition within
 * an edit (so an edit may move table N from level L to L + 1).
 *
 * ---- Choices the header leaves open (as a LevelDB/RocksDB engineer would read them) ----
 *
 *   - L0 order: newest first by max_seq (RocksDB's largest_seqno), then number. The header says
 *     "largest_seq", but file_meta.largest_seq is the seq of the table's last key, not its newest
 *     entry; flushed tables have disjoint seq ranges, so max_seq orders them by age.
 *   - One L0 -> L1 compaction at a time (RocksDB): while any L0 table is being compacted, L0 is
 *     not picked. A newer L0 table may fall into a gap of the running compaction's key hull
 *     without overlapping any of its tables, and an output of the running compaction may span
 *     that gap; two L1 outputs would then overlap.
 *   - Inputs use key hulls as LevelDB does: the L+1 inputs are every table overlapping the hull
 *     of the L inputs; L0 inputs grow until no other L0 table overlaps their hull; the free
 *     growth of the level-n inputs stops at 25 * table_bytes of inputs (LevelDB's limit).
 *   - compaction_add_input_deletions also records the round-robin pointer (the largest key of
 *     inputs[0]) in the edit, so it is applied with the compaction's edit (LevelDB's
 *     SetCompactPointer in SetupOtherInputs).
 *   - A manifest write that fails before CURRENT names the new file (creating or syncing it, or
 *     a CURRENT write that failed before its rename, checked by reading CURRENT back) leaves the
 *     set usable and removes the new file. A failed append or sync of the live manifest, or a
 *     CURRENT switch left in doubt, breaks the set.
 *   - version_set_free with versions still referenced (an iterator kept past shale_close) keeps
 *     the set's memory until the last of them is unreferenced.
 *
 * ---- The last edit ----
 *
 * Recovery cannot tell a damaged final manifest record from a torn one (the WAL reader's rule:
 * damage with nothing valid after it is a torn tail), so it ignores it, and the state it recovers
 * is the one before that edit. The set makes that harmless by keeping, until the NEXT edit is
 * durable, every file the state before the last edit needs: version_set_kept_log_number is the
 * log_number in force before the last edit (logs below it may go), and version_set_live_files
 * also reports the tables the last edit removed. If the last edit is lost, the previous state
 * finds its logs and tables on disk (a lost flush's table is unlisted and deleted at open, its
 * data replayed from the kept logs). At open the last edit is the last valid record; a manifest
 * holding only its snapshot keeps nothing beyond the snapshot's own state: a roll writes the
 * snapshot and the edit that caused it with one sync before CURRENT names the file, so the
 * snapshot alone means that edit was lost (and the snapshot is the state before it), and a
 * damaged snapshot is corruption ("no snapshot edit"), never an empty database. Across a roll in
 * a session the lag is simply kept in memory: the new manifest's snapshot is the state before
 * its edit, which is exactly what the lag protects.
 */
#include "lsm/version.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/coding.h"
#include "base/error.h"
#include "base/slice.h"
#include "wal/wal_format.h"
#include "wal/wal_reader.h"
#include "wal/wal_writer.h"

enum edit_tag {
    TAG_LOG_NUMBER = 1,
    TAG_FLUSHED_SEQ = 2,
    TAG_NEXT_FILE = 3,
    TAG_LAST_SEQ = 4,
    TAG_POINTER = 5,
    TAG_DELETED = 6,
    TAG_ADDED = 7,
    TAG_FORMAT = 8,
};

#define VERSION_EDIT_FORMAT 1u
#define EDIT_MAGIC          0x54444553u /* "SEDT" as little-endian bytes */
#define EDIT_TRAILER_BYTES  8u

/* CURRENT holds one short line; anything longer is not ours. */

/* LevelDB's limits, in table_bytes units: stop an output once it overlaps this many grandparent
 * bytes (so a later compaction of it reads a bounded amount), and do not grow the level-n inputs
 * beyond this many bytes in total when expanding for free. */
#define GRANDPARENT_OVERLAP_TABLES 10u
#define EXPANDED_LIMIT_TABLES      25u

#define DEFAULT(v, d) ((v) != 0 ? (v) : (d))

struct version_set {
    const shale_env *env;
    char *dir;
    version_options opts;

    /* mu guards current, the live list and the scalars read by the getters. Leaf lock: nothing
     * else is taken under it. */
    pthread_mutex_t mu;
    version *current;
    version live; /* sentinel of the list of live versions (only prev/next used) */
    uint64_t log_number, flushed_seq, last_seq;
    uint64_t manifest_number, manifest_bytes;
    _Atomic uint64_t next_file;
    /* The one-edit lag (see "The last edit" above): the log_number in force before the last
     * durable edit, and the tables that edit removed. Under mu. */
    uint64_t kept_log_number;
    uint64_t *kept_tables;
    size_t nkept_tables;

    /* Under the caller's version mutex. */
    bool closing; /* under mu: version_set_free ran; the last version frees the set */
    bool loaded;  /* created or recovered */
    wal_writer *manifest;
    bool broken;
    shale_error sticky;
    bool has_pointer[VERSION_LEVELS];
    shale_buf pointer[VERSION_LEVELS];
};

/* ---- small helpers ---- */

static shale_slice key_of(const shale_buf *b)
{
    return slice_make(b->data, b->len);
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static void meta_ref(file_meta *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

static void meta_unref(file_meta *f)
{
    if (f != NULL && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1) {
        if (f->unpin != NULL) {
            f->unpin(f);
        }
        buf_free(&f->smallest);
        buf_free(&f->largest);
        free(f);
    }
}

void version_table_name(char *out, size_t cap, const char *dir, uint64_t number)
{
    snprintf(out, cap, "%s/%06" PRIu64 ".sst", dir, number);
}

void version_manifest_name(char *out, size_t cap, const char *dir, uint64_t number)
{
    snprintf(out, cap, "%s/MANIFEST-%06" PRIu64, dir, number);
}

/* Parses the whole of [p, end) as six or more decimal digits. */
static bool parse_digits(const char *p, const char *end, uint64_t *out)
{
    uint64_t v = 0;

    if (end - p < 6) {
        return false;
    }
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10) {
            return false;
        }
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return true;
}

version_file_kind version_parse_file_name(const char *name, uint64_t *number)
{
    static const char manifest[] = "MANIFEST-";
    const size_t mlen = sizeof manifest - 1;
    size_t n = strlen(name);

    if (n > mlen && memcmp(name, manifest, mlen) == 0) {
        return parse_digits(name + mlen, name + n, number) ? VERSION_FILE_MANIFEST
                                                           : VERSION_FILE_OTHER;
    }
    if (n > 4 && strcmp(name + n - 4, ".sst") == 0) {
        return parse_digits(name, name + n - 4, number) ? VERSION_FILE_TABLE : VERSION_FILE_OTHER;
    }
    if (n > 4 && strcmp(name + n - 4, ".log") == 0) {
        return parse_digits(name, name + n - 4, number) ? VERSION_FILE_LOG : VERSION_FILE_OTHER;
    }
    return VERSION_FILE_OTHER;
}

bool version_parse_current(const void *data, size_t len, uint64_t *number)
{
    char text[VERSION_CURRENT_MAX_BYTES];

    /* Exactly "MANIFEST-NNNNNN\n": no NUL, no second line, no spaces. */
    if (len < 2 || len > sizeof text || ((const char *)data)[len - 1] != '\n') {
        return false;
    }
    memcpy(text, data, len - 1);
    text[len - 1] = '\0';
    return strlen(text) == len - 1 &&
           version_parse_file_name(text, number) == VERSION_FILE_MANIFEST && *number > 0;
}

int version_cmp_u64(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return a < b ? -1 : (a > b ? 1 : 0);
}

/* ---- edits ---- */

void version_edit_init(version_edit *e)
{
    memset(e, 0, sizeof *e);
}

void version_edit_free(version_edit *e)
{
    for (size_t i = 0; i < e->nadded; i++) {
        meta_unref(e->added[i].meta);
    }
    free(e->added);
    free(e->deleted);
    for (int l = 0; l < VERSION_LEVELS; l++) {
        buf_free(&e->pointer[l]);
    }
    version_edit_init(e);
}

static shale_code grow(version_edit_file **arr, size_t n, size_t *cap, shale_error *err)
{
    if (n < *cap) {
        return SHALE_OK;
    }
    size_t ncap = *cap ? *cap * 2 : 8;
    version_edit_file *p = realloc(*arr, ncap * sizeof *p);
    if (p == NULL) {
        return err_nomem(err);
    }
    *arr = p;
    *cap = ncap;
    return SHALE_OK;
}

shale_code version_edit_add_file(version_edit *e, int level, uint64_t number, uint64_t size,
                                 shale_slice smallest, uint64_t smallest_seq, shale_slice largest,
                                 uint64_t largest_seq, uint64_t min_seq, uint64_t max_seq,
                                 uint64_t entries, uint64_t deletions, shale_error *err)
{
    file_meta *f;
    shale_code rc;

    if (level < 0 || level >= VERSION_LEVELS) {
        return err_set(err, SHALE_INVALID, 0, "table %06" PRIu64 ": level %d out of range", number,
                       level);
    }
    if (slice_cmp(smallest, largest) > 0) {
        return err_set(err, SHALE_INVALID, 0,
                       "table %06" PRIu64 ": smallest key sorts after largest key", number);
    }
    if (min_seq > max_seq) {
        return err_set(err, SHALE_INVALID, 0,
                       "table %06" PRIu64 ": min_seq %" PRIu64 " > max_seq %" PRIu64, number,
                       min_seq, max_seq);
    }
    rc = grow(&e->added, e->nadded, &e->added_cap, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    f = calloc(1, sizeof *f);
    if (f == NULL) {
        return err_nomem(err);
    }
    if ((rc = buf_set(&f->smallest, smallest.data, smallest.len, err)) != SHALE_OK ||
        (rc = buf_set(&f->largest, largest.data, largest.len, err)) != SHALE_OK) {
        buf_free(&f->smallest);
        free(f);
        return rc;
    }
    f->number = number;
    f->size = size;
    f->smallest_seq = smallest_seq;
    f->largest_seq = largest_seq;
    f->min_seq = min_seq;
    f->max_seq = max_seq;
    f->entries = entries;
    f->deletions = deletions;
    atomic_init(&f->refs, 1);
    atomic_init(&f->reader, NULL);
    atomic_init(&f->reader_pin, NULL);
    e->added[e->nadded++] = (version_edit_file){.level = level, .meta = f, .number = number};
    return SHALE_OK;
}

shale_code version_edit_delete_file(version_edit *e, int level, uint64_t number, shale_error *err)
{
    shale_code rc;

    if (level < 0 || level >= VERSION_LEVELS) {
        return err_set(err, SHALE_INVALID, 0, "table %06" PRIu64 ": level %d out of range", number,
                       level);
    }
    rc = grow(&e->deleted, e->ndeleted, &e->deleted_cap, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    e->deleted[e->ndeleted++] = (version_edit_file){.level = level, .number = number};
    return SHALE_OK;
}

/* Drops the edit's references to its added metas (apply's "left empty of added metas"). */
static void drop_added(version_edit *e)
{
    for (size_t i = 0; i < e->nadded; i++) {
        meta_unref(e->added[i].meta);
    }
    e->nadded = 0;
}

/* ---- encoding ---- */

/* Accumulates the first failure, so encoding reads as a list of puts. */
typedef struct enc {
    shale_buf *b;
    shale_code rc;
    shale_error *err;
    uint32_t nfields;
} enc;

static void put_bytes(enc *e, const void *p, size_t n)
{
    if (e->rc == SHALE_OK) {
        e->rc = buf_append(e->b, p, n, e->err);
    }
}

static void put_varint(enc *e, uint64_t v)
{
    uint8_t tmp[CODING_MAX_VARINT64];
    put_bytes(e, tmp, (size_t)(coding_put_varint64(tmp, v) - tmp));
}

static void put_tag(enc *e, enum edit_tag tag)
{
    put_varint(e, (uint64_t)tag);
    e->nfields++;
}

static void put_key(enc *e, shale_slice k)
{
    if (e->rc == SHALE_OK && k.len > UINT32_MAX) {
        e->rc = err_set(e->err, SHALE_INVALID, 0, "key of %zu bytes too long for an edit", k.len);
        return;
    }
    put_varint(e, k.len);
    put_bytes(e, k.data, k.len);
}

static void put_scalar(enc *e, bool has, enum edit_tag tag, uint64_t v)
{
    if (has) {
        put_tag(e, tag);
        put_varint(e, v);
    }
}

static void put_added(enc *e, int level, const file_meta *f)
{
    put_tag(e, TAG_ADDED);
    put_varint(e, (uint64_t)level);
    put_varint(e, f->number);
    put_varint(e, f->size);
    put_key(e, key_of(&f->smallest));
    put_varint(e, f->smallest_seq);
    put_key(e, key_of(&f->largest));
    put_varint(e, f->largest_seq);
    put_varint(e, f->min_seq);
    put_varint(e, f->max_seq);
    put_varint(e, f->entries);
    put_varint(e, f->deletions);
}

static void put_trailer(enc *e)
{
    uint8_t t[EDIT_TRAILER_BYTES];
    coding_put_fixed32(t, e->nfields);
    coding_put_fixed32(t + 4, EDIT_MAGIC);
    put_bytes(e, t, sizeof t);
}

/* Appends the fields of `ed` (no format field, no trailer). */
static void put_edit_fields(enc *e, const version_edit *ed)
{
    put_scalar(e, ed->has_log_number, TAG_LOG_NUMBER, ed->log_number);
    put_scalar(e, ed->has_flushed_seq, TAG_FLUSHED_SEQ, ed->flushed_seq);
    put_scalar(e, ed->has_next_file, TAG_NEXT_FILE, ed->next_file_number);
    put_scalar(e, ed->has_last_seq, TAG_LAST_SEQ, ed->last_seq);
    for (int l = 0; l < VERSION_LEVELS; l++) {
        if (ed->has_pointer[l]) {
            put_tag(e, TAG_POINTER);
            put_varint(e, (uint64_t)l);
            put_key(e, key_of(&ed->pointer[l]));
        }
    }
    for (size_t i = 0; i < ed->ndeleted; i++) {
        put_tag(e, TAG_DELETED);
        put_varint(e, (uint64_t)ed->deleted[i].level);
        put_varint(e, ed->deleted[i].number);
    }
    for (size_t i = 0; i < ed->nadded; i++) {
        if (ed->added[i].meta != NULL) {
            put_added(e, ed->added[i].level, ed->added[i].meta);
        }
    }
}

shale_code version_edit_encode(const version_edit *ed, shale_buf *out, shale_error *err)
{
    enc e = {.b = out, .err = err};
    size_t start = out->len;

    put_edit_fields(&e, ed);
    put_trailer(&e);
    if (e.rc != SHALE_OK) {
        out->len = start;
    }
    return e.rc;
}

/* ---- decoding ---- */

typedef struct dec {
    const uint8_t *start, *p, *limit;
    const char *where;
    shale_error *err;
} dec;

static shale_code bad(dec *d, const char *what)
{
    return err_set(d->err, SHALE_CORRUPTION, 0, "%s: bad version edit at byte %zu: %s",
                   d->where != NULL ? d->where : "edit", (size_t)(d->p - d->start), what);
}

static shale_code get_varint(dec *d, uint64_t *v, const char *what)
{
    const uint8_t *q = coding_get_varint64(d->p, d->limit, v);
    if (q == NULL) {
        return bad(d, what);
    }
    d->p = q;
    return SHALE_OK;
}

static shale_code get_level(dec *d, int *level)
{
    uint32_t v;
    const uint8_t *q = coding_get_varint32(d->p, d->limit, &v);
    if (q == NULL) {
        return bad(d, "truncated level");
    }
    if (v >= VERSION_LEVELS) {
        return bad(d, "level out of range");
    }
    d->p = q;
    *level = (int)v;
    return SHALE_OK;
}

static shale_code get_key(dec *d, shale_slice *k, const char *what)
{
    const uint8_t *data;
    uint32_t len;
    const uint8_t *q = coding_get_length_prefixed(d->p, d->limit, &data, &len);
    if (q == NULL) {
        return bad(d, what);
    }
    d->p = q;
    *k = slice_make(data, len);
    return SHALE_OK;
}

static shale_code get_scalar(dec *d, bool *has, uint64_t *v, const char *name)
{
    if (*has) {
        return bad(d, name);
    }
    *has = true;
    return get_varint(d, v, name);
}

static shale_code get_added(dec *d, version_edit *out)
{
    shale_slice smallest, largest;
    uint64_t number, size, sseq, lseq, min_seq, max_seq, entries, deletions;
    int level = 0;
    shale_code rc;

    if ((rc = get_level(d, &level)) != SHALE_OK ||
        (rc = get_varint(d, &number, "truncated table number")) != SHALE_OK ||
        (rc = get_varint(d, &size, "truncated table size")) != SHALE_OK ||
        (rc = get_key(d, &smallest, "truncated smallest key")) != SHALE_OK ||
        (rc = get_varint(d, &sseq, "truncated smallest seq")) != SHALE_OK ||
        (rc = get_key(d, &largest, "truncated largest key")) != SHALE_OK ||
        (rc = get_varint(d, &lseq, "truncated largest seq")) != SHALE_OK ||
        (rc = get_varint(d, &min_seq, "truncated min seq")) != SHALE_OK ||
        (rc = get_varint(d, &max_seq, "truncated max seq")) != SHALE_OK ||
        (rc = get_varint(d, &entries, "truncated entry count")) != SHALE_OK ||
        (rc = get_varint(d, &deletions, "truncated deletion count")) != SHALE_OK) {
        return rc;
    }
    if (slice_cmp(smallest, largest) > 0) {
        return bad(d, "table's smallest key sorts after its largest");
    }
    if (min_seq > max_seq) {
        return bad(d, "table's min_seq above its max_seq");
    }
    return version_edit_add_file(out, level, number, size, smallest, sseq, largest, lseq, min_seq,
                                 max_seq, entries, deletions, d->err);
}

static shale_code get_field(dec *d, uint32_t tag, version_edit *out, bool *has_format)
{
    shale_slice key = {NULL, 0};
    uint64_t v = 0;
    int level = 0;
    shale_code rc;

    switch (tag) {
    case TAG_LOG_NUMBER:
        return get_scalar(d, &out->has_log_number, &out->log_number, "log number given twice");
    case TAG_FLUSHED_SEQ:
        return get_scalar(d, &out->has_flushed_seq, &out->flushed_seq, "flushed seq given twice");
    case TAG_NEXT_FILE:
        return get_scalar(d, &out->has_next_file, &out->next_file_number,
                          "next file number given twice");
    case TAG_LAST_SEQ:
        return get_scalar(d, &out->has_last_seq, &out->last_seq, "last seq given twice");
    case TAG_POINTER:
        if ((rc = get_level(d, &level)) != SHALE_OK ||
            (rc = get_key(d, &key, "truncated pointer key")) != SHALE_OK) {
            return rc;
        }
        if (out->has_pointer[level]) {
            return bad(d, "compaction pointer given twice for one level");
        }
        out->has_pointer[level] = true;
        return buf_set(&out->pointer[level], key.data, key.len, d->err);
    case TAG_DELETED:
        if ((rc = get_level(d, &level)) != SHALE_OK ||
            (rc = get_varint(d, &v, "truncated deleted table number")) != SHALE_OK) {
            return rc;
        }
        return version_edit_delete_file(out, level, v, d->err);
    case TAG_ADDED:
        return get_added(d, out);
    case TAG_FORMAT:
        if (*has_format) {
            return bad(d, "format given twice");
        }
        *has_format = true;
        if ((rc = get_varint(d, &v, "truncated format")) != SHALE_OK) {
            return rc;
        }
        if (v != VERSION_EDIT_FORMAT) {
            return err_set(d->err, SHALE_CORRUPTION, 0,
                           "%s: manifest format version %" PRIu64 ", this build reads %u",
                           d->where != NULL ? d->where : "edit", v, VERSION_EDIT_FORMAT);
        }
        return SHALE_OK;
    default:
        return bad(d, "unknown field tag");
    }
}

/* Decodes an edit; *has_format says whether it carried the FORMAT field (a snapshot). */
static shale_code decode(const void *data, size_t n, const char *where, version_edit *out,
                         bool *has_format, shale_error *err)
{
    dec d = {.start = data, .p = data, .limit = data, .where = where, .err = err};
    uint32_t nfields = 0;
    shale_code rc = SHALE_OK;

    version_edit_init(out);
    *has_format = false;
    if (n < EDIT_TRAILER_BYTES) {
        return bad(&d, "shorter than the trailer");
    }
    d.limit = d.start + n - EDIT_TRAILER_BYTES;
    if (coding_get_fixed32(d.limit + 4) != EDIT_MAGIC) {
        d.p = d.limit;
        return bad(&d, "bad trailer magic");
    }
    while (d.p < d.limit) {
        uint32_t tag;
        const uint8_t *q = coding_get_varint32(d.p, d.limit, &tag);
        if (q == NULL) {
            rc = bad(&d, "truncated field tag");
            break;
        }
        d.p = q;
        rc = get_field(&d, tag, out, has_format);
        if (rc != SHALE_OK) {
            break;
        }
        nfields++;
    }
    if (rc == SHALE_OK && nfields != coding_get_fixed32(d.limit)) {
        rc = bad(&d, "field count does not match the trailer");
    }
    if (rc != SHALE_OK) {
        if (NEVER(rc == SHALE_INVALID)) { /* get_added checks what add_file would refuse */
            rc = bad(&d, "invalid table");
        }
        version_edit_free(out);
    }
    return rc;
}

shale_code version_edit_decode(const void *data, size_t n, const char *where, version_edit *out,
                               shale_error *err)
{
    bool has_format;
    return decode(data, n, where, out, &has_format, err);
}

/* ---- versions ---- */

static version *version_alloc(version_set *vs)
{
    version *v = calloc(1, sizeof *v);
    if (v != NULL) {
        v->vs = vs;
        atomic_init(&v->refs, 0);
    }
    return v;
}

/* Frees v and drops its table references. REQUIRES: unlinked (or never linked). */
static void version_destroy(version *v)
{
    for (int l = 0; l < VERSION_LEVELS; l++) {
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            meta_unref(v->files[l][i]);
        }
        free(v->files[l]);
    }
    free(v);
}

static void link_live(version_set *vs, version *v)
{
    v->prev = vs->live.prev;
    v->next = &vs->live;
    vs->live.prev->next = v;
    vs->live.prev = v;
}

static void set_destroy(version_set *vs)
{
    pthread_mutex_destroy(&vs->mu);
    free(vs->kept_tables);
    free(vs->dir);
    free(vs);
}

void version_ref(version *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void version_unref(version *v)
{
    if (v == NULL || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    version_set *vs = v->vs;
    pthread_mutex_lock(&vs->mu);
    v->prev->next = v->next;
    v->next->prev = v->prev;
    bool last = vs->closing && vs->live.next == &vs->live;
    pthread_mutex_unlock(&vs->mu);
    version_destroy(v);
    if (last) {
        set_destroy(vs);
    }
}

version *version_set_current(version_set *vs)
{
    pthread_mutex_lock(&vs->mu);
    version *v = vs->current;
    version_ref(v);
    pthread_mutex_unlock(&vs->mu);
    return v;
}

/* Makes v (no references yet) the current version; the set holds one reference. */
static void install(version_set *vs, version *v)
{
    atomic_store(&v->refs, 1);
    pthread_mutex_lock(&vs->mu);
    link_live(vs, v);
    version *old = vs->current;
    vs->current = v;
    pthread_mutex_unlock(&vs->mu);
    version_unref(old);
}

/* ---- builder: a table set keyed by number, for applying edits ---- */

typedef struct slot {
    file_meta *meta; /* NULL = empty */
    int level;
} slot;

typedef struct builder {
    slot *s;
    size_t cap, n; /* cap is 0 or a power of two */
} builder;

static size_t hash_number(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull; /* murmur3's finaliser: file numbers are sequential */
    x ^= x >> 33;
    return (size_t)x;
}

static size_t b_find(const builder *b, uint64_t number)
{
    if (b->cap == 0) {
        return SIZE_MAX;
    }
    for (size_t i = hash_number(number) & (b->cap - 1);; i = (i + 1) & (b->cap - 1)) {
        if (b->s[i].meta == NULL) {
            return SIZE_MAX;
        }
        if (b->s[i].meta->number == number) {
            return i;
        }
    }
}

static void b_place(slot *s, size_t cap, file_meta *f, int level)
{
    size_t i = hash_number(f->number) & (cap - 1);
    while (s[i].meta != NULL) {
        i = (i + 1) & (cap - 1);
    }
    s[i] = (slot){f, level};
}

/* Inserts f (taking a new reference). REQUIRES: its number is not present. */
static shale_code b_insert(builder *b, file_meta *f, int level, shale_error *err)
{
    if ((b->n + 1) * 2 > b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 64;
        slot *ns = calloc(ncap, sizeof *ns);
        if (ns == NULL) {
            return err_nomem(err);
        }
        for (size_t i = 0; i < b->cap; i++) {
            if (b->s[i].meta != NULL) {
                b_place(ns, ncap, b->s[i].meta, b->s[i].level);
            }
        }
        free(b->s);
        b->s = ns;
        b->cap = ncap;
    }
    meta_ref(f);
    b_place(b->s, b->cap, f, level);
    b->n++;
    return SHALE_OK;
}

/* Removes slot i (dropping its reference), shifting later entries of the probe run back. */
static void b_remove(builder *b, size_t i)
{
    size_t mask = b->cap - 1;
    meta_unref(b->s[i].meta);
    b->s[i].meta = NULL;
    b->n--;
    for (size_t j = (i + 1) & mask; b->s[j].meta != NULL; j = (j + 1) & mask) {
        size_t home = hash_number(b->s[j].meta->number) & mask;
        /* Move j into the hole at i when its home is not cyclically within (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            b->s[i] = b->s[j];
            b->s[j].meta = NULL;
            i = j;
        }
    }
}

static void b_free(builder *b)
{
    for (size_t i = 0; i < b->cap; i++) {
        meta_unref(b->s[i].meta);
    }
    free(b->s);
    b->s = NULL;
    b->cap = b->n = 0;
}

static shale_code b_add_version(builder *b, const version *v, shale_error *err)
{
    for (int l = 0; l < VERSION_LEVELS; l++) {
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            shale_code rc = b_insert(b, v->files[l][i], l, err);
            if (rc != SHALE_OK) {
                return rc;
            }
        }
    }
    return SHALE_OK;
}

/* Applies the table changes of `e`: deletions first, then additions. `code` is what a bad edit
 * is (SHALE_INVALID from a caller, SHALE_CORRUPTION from a manifest). */
static shale_code b_apply(builder *b, const version_edit *e, shale_code code, const char *where,
                          shale_error *err)
{
    for (size_t i = 0; i < e->ndeleted; i++) {
        const version_edit_file *d = &e->deleted[i];
        size_t at = b_find(b, d->number);
        if (at == SIZE_MAX || b->s[at].level != d->level) {
            return err_set(err, code, 0, "%s: deletes table %06" PRIu64 " from level %d, %s", where,
                           d->number, d->level,
                           at == SIZE_MAX ? "which is not in the version"
                                          : "but it is on another level");
        }
        b_remove(b, at);
    }
    for (size_t i = 0; i < e->nadded; i++) {
        const version_edit_file *a = &e->added[i];
        if (a->meta == NULL) {
            continue;
        }
        if (a->level < 0 || a->level >= VERSION_LEVELS) {
            return err_set(err, code, 0, "%s: table %06" PRIu64 ": level %d out of range", where,
                           a->meta->number, a->level);
        }
        if (b_find(b, a->meta->number) != SIZE_MAX) {
            return err_set(err, code, 0, "%s: table %06" PRIu64 " listed twice", where,
                           a->meta->number);
        }
        shale_code rc = b_insert(b, a->meta, a->level, err);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    return SHALE_OK;
}

static int cmp_l0(const void *pa, const void *pb)
{
    const file_meta *a = *(file_meta *const *)pa, *b = *(file_meta *const *)pb;
    if (a->max_seq != b->max_seq) {
        return a->max_seq > b->max_seq ? -1 : 1;
    }
    return a->number > b->number ? -1 : (a->number < b->number ? 1 : 0);
}

static int cmp_by_key(const void *pa, const void *pb)
{
    const file_meta *a = *(file_meta *const *)pa, *b = *(file_meta *const *)pb;
    int c = slice_cmp(key_of(&a->smallest), key_of(&b->smallest));
    if (c != 0) {
        return c;
    }
    return a->number < b->number ? -1 : (a->number > b->number ? 1 : 0);
}

/* The first pair of overlapping tables in sorted level `l` of v, as an index, or SIZE_MAX. */
static size_t first_overlap(const version *v, int l)
{
    for (size_t i = 1; i < v->nfiles[l]; i++) {
        if (slice_cmp(key_of(&v->files[l][i - 1]->largest), key_of(&v->files[l][i]->smallest)) >=
            0) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* Turns the builder into a version (the version takes the builder's references; the builder is
 * left empty). With `strict`, levels >= 1 must be disjoint, else `code`. */
static shale_code b_finish(builder *b, version_set *vs, bool strict, shale_code code,
                           const char *where, version **out, shale_error *err)
{
    version *v = version_alloc(vs);
    size_t fill[VERSION_LEVELS] = {0};
    shale_code rc = SHALE_OK;

    if (v == NULL) {
        return err_nomem(err);
    }
    for (size_t i = 0; i < b->cap; i++) {
        if (b->s[i].meta != NULL) {
            v->nfiles[b->s[i].level]++;
        }
    }
    for (int l = 0; l < VERSION_LEVELS; l++) {
        if (v->nfiles[l] > 0 &&
            (v->files[l] = malloc(v->nfiles[l] * sizeof(file_meta *))) == NULL) {
            for (int k = 0; k < VERSION_LEVELS; k++) {
                free(v->files[k]);
            }
            free(v);
            return err_nomem(err);
        }
    }
    for (size_t i = 0; i < b->cap; i++) {
        if (b->s[i].meta != NULL) {
            int l = b->s[i].level;
            v->files[l][fill[l]++] = b->s[i].meta;
            v->level_bytes[l] = sat_add(v->level_bytes[l], b->s[i].meta->size);
            b->s[i].meta = NULL; /* the reference moves to v */
        }
    }
    b->n = 0;
    for (int l = 0; l < VERSION_LEVELS; l++) {
        if (v->nfiles[l] > 1) {
            qsort(v->files[l], v->nfiles[l], sizeof(file_meta *), l == 0 ? cmp_l0 : cmp_by_key);
        }
        size_t at = l > 0 && strict ? first_overlap(v, l) : SIZE_MAX;
        if (at != SIZE_MAX && rc == SHALE_OK) {
            rc = err_set(err, code, 0,
                         "%s: level %d: tables %06" PRIu64 " and %06" PRIu64 " overlap", where, l,
                         v->files[l][at - 1]->number, v->files[l][at]->number);
        }
    }
    if (rc != SHALE_OK) {
        version_destroy(v);
        return rc;
    }
    *out = v;
    return SHALE_OK;
}

/* ---- the set ---- */

version_set *version_set_new(const shale_env *env, const char *dir, const version_options *opts)
{
    version_set *vs = calloc(1, sizeof *vs);
    version_options o = opts != NULL ? *opts : (version_options){0};

    if (vs == NULL) {
        return NULL;
    }
    vs->env = env;
    vs->dir = strdup(dir);
    vs->current = version_alloc(vs);
    if (vs->dir == NULL || vs->current == NULL || pthread_mutex_init(&vs->mu, NULL) != 0) {
        free(vs->dir);
        free(vs->current);
        free(vs);
        return NULL;
    }
    vs->opts.l0_compaction_trigger = DEFAULT(o.l0_compaction_trigger, 4u);
    vs->opts.base_level_bytes = DEFAULT(o.base_level_bytes, (uint64_t)64 << 20);
    vs->opts.level_ratio = DEFAULT(o.level_ratio, 10u);
    vs->opts.table_bytes = DEFAULT(o.table_bytes, (uint64_t)16 << 20);
    vs->opts.manifest_roll_bytes = DEFAULT(o.manifest_roll_bytes, (uint64_t)64 << 20);
    vs->live.prev = vs->live.next = &vs->live;
    atomic_init(&vs->next_file, 1);
    atomic_store(&vs->current->refs, 1);
    link_live(vs, vs->current);
    return vs;
}

/* A version may outlive the set (an iterator kept past shale_close reads its view): then the set
 * stays allocated, as a shell, until the last version is unreferenced. */
void version_set_free(version_set *vs)
{
    if (vs == NULL) {
        return;
    }
    (void)wal_writer_close(vs->manifest, false, NULL);
    vs->manifest = NULL;
    for (int l = 0; l < VERSION_LEVELS; l++) {
        buf_free(&vs->pointer[l]);
    }
    pthread_mutex_lock(&vs->mu);
    version *cur = vs->current;
    vs->current = NULL;
    vs->closing = true;
    pthread_mutex_unlock(&vs->mu);
    version_unref(cur); /* frees the set too, unless another version is still held */
}

uint64_t version_set_new_file_number(version_set *vs)
{
    return atomic_fetch_add(&vs->next_file, 1);
}

void version_set_mark_file_number_used(version_set *vs, uint64_t n)
{
    uint64_t cur = atomic_load(&vs->next_file);
    while (cur < n && !atomic_compare_exchange_weak(&vs->next_file, &cur, n)) {
    }
}

uint64_t version_set_next_file_number(version_set *vs)
{
    return atomic_load(&vs->next_file);
}

static uint64_t locked_get(version_set *vs, const uint64_t *field)
{
    pthread_mutex_lock(&vs->mu);
    uint64_t v = *field;
    pthread_mutex_unlock(&vs->mu);
    return v;
}

uint64_t version_set_log_number(version_set *vs)
{
    return locked_get(vs, &vs->log_number);
}

uint64_t version_set_flushed_seq(version_set *vs)
{
    return locked_get(vs, &vs->flushed_seq);
}

uint64_t version_set_last_seq(version_set *vs)
{
    return locked_get(vs, &vs->last_seq);
}

void version_numbers_add(uint64_t number, void *arg)
{
    version_numbers *s = arg;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint64_t *p = realloc(s->v, cap * sizeof *p);
        if (p == NULL) {
            s->nomem = true;
            return;
        }
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = number;
}

uint64_t version_set_kept_log_number(version_set *vs)
{
    return locked_get(vs, &vs->kept_log_number);
}

uint64_t version_set_manifest_number(version_set *vs)
{
    return locked_get(vs, &vs->manifest_number);
}

uint64_t version_set_manifest_bytes(version_set *vs)
{
    return locked_get(vs, &vs->manifest_bytes);
}

/* Collects the numbers under the lock and calls fn outside it (deduplicated), so fn may take
 * other locks or call back into the set. Out of memory, it falls back to calling fn under the
 * lock, once per (version, table). */
void version_set_live_files(version_set *vs, void (*fn)(uint64_t number, void *arg), void *arg)
{
    uint64_t *nums = NULL;
    size_t n = 0, cap = 0;

    pthread_mutex_lock(&vs->mu);
    for (version *v = vs->live.next; v != &vs->live; v = v->next) {
        for (int l = 0; l < VERSION_LEVELS; l++) {
            cap += v->nfiles[l];
        }
    }
    cap += vs->nkept_tables;
    nums = malloc((cap ? cap : 1) * sizeof *nums);
    for (size_t i = 0; i < vs->nkept_tables; i++) {
        if (nums != NULL) {
            nums[n++] = vs->kept_tables[i];
        } else {
            fn(vs->kept_tables[i], arg);
        }
    }
    for (version *v = vs->live.next; v != &vs->live; v = v->next) {
        for (int l = 0; l < VERSION_LEVELS; l++) {
            for (size_t i = 0; i < v->nfiles[l]; i++) {
                if (nums != NULL) {
                    nums[n++] = v->files[l][i]->number;
                } else {
                    fn(v->files[l][i]->number, arg);
                }
            }
        }
    }
    pthread_mutex_unlock(&vs->mu);
    if (nums == NULL) {
        return;
    }
    qsort(nums, n, sizeof *nums, version_cmp_u64);
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || nums[i] != nums[i - 1]) {
            fn(nums[i], arg);
        }
    }
    free(nums);
}

/* ---- manifest writing ---- */

/* The state fields of an edit, combined by maximum (they never go back). */
typedef struct vstate {
    uint64_t log_number, flushed_seq, next_file, last_seq;
} vstate;

static void state_merge(vstate *s, const version_edit *e)
{
    if (e->has_log_number) {
        s->log_number = max_u64(s->log_number, e->log_number);
    }
    if (e->has_flushed_seq) {
        s->flushed_seq = max_u64(s->flushed_seq, e->flushed_seq);
    }
    if (e->has_next_file) {
        s->next_file = max_u64(s->next_file, e->next_file_number);
    }
    if (e->has_last_seq) {
        s->last_seq = max_u64(s->last_seq, e->last_seq);
    }
}

/* The kind byte, then the edit (a snapshot of the set when snap is true). */
static shale_code encode_record(const version_set *vs, const version *v, const version_edit *ed,
                                bool snap, shale_buf *out, shale_error *err)
{
    enc e = {.b = out, .err = err};
    uint8_t kind = WAL_REC_EDIT;

    put_bytes(&e, &kind, 1);
    if (snap) {
        put_tag(&e, TAG_FORMAT);
        put_varint(&e, VERSION_EDIT_FORMAT);
        put_scalar(&e, true, TAG_LOG_NUMBER, vs->log_number);
        put_scalar(&e, true, TAG_FLUSHED_SEQ, vs->flushed_seq);
        put_scalar(&e, true, TAG_NEXT_FILE, atomic_load(&vs->next_file));
        put_scalar(&e, true, TAG_LAST_SEQ, vs->last_seq);
        for (int l = 0; l < VERSION_LEVELS; l++) {
            if (vs->has_pointer[l]) {
                put_tag(&e, TAG_POINTER);
                put_varint(&e, (uint64_t)l);
                put_key(&e, key_of(&vs->pointer[l]));
            }
        }
        for (int l = 0; l < VERSION_LEVELS; l++) {
            for (size_t i = 0; i < v->nfiles[l]; i++) {
                put_added(&e, l, v->files[l][i]);
            }
        }
    } else {
        put_edit_fields(&e, ed);
    }
    put_trailer(&e);
    return e.rc;
}

static void set_broken(version_set *vs, const shale_error *cause)
{
    vs->broken = true;
    err_copy(&vs->sticky, cause);
}

static shale_code read_current(const version_set *vs, uint64_t *number, shale_error *err);

/* Whether CURRENT still names manifest `number` (0: CURRENT is missing), read back after a
 * failed switch. Any doubt (a read error) is false. */
static bool current_names(const version_set *vs, uint64_t number)
{
    uint64_t got = 0;
    shale_code rc = read_current(vs, &got, NULL);
    return number == 0 ? rc == SHALE_NOT_FOUND : rc == SHALE_OK && got == number;
}

/* Writes MANIFEST-<number>: a snapshot of the current state, then `rec` (if any); syncs it and
 * the directory, then points CURRENT at it and removes the previous manifest. */
static shale_code write_new_manifest(version_set *vs, uint64_t number, const shale_buf *rec,
                                     shale_error *err)
{
    char name[64], path[4096], line[64];
    shale_buf snap = {0};
    wal_writer *w = NULL;
    shale_error e;
    shale_code rc;

    snprintf(name, sizeof name, "MANIFEST-%06" PRIu64, number);
    version_manifest_name(path, sizeof path, vs->dir, number);
    /* A leftover of an attempt that crashed before CURRENT named it: nothing refers to it (its
     * number was never recorded as used), and creating it again needs the name. */
    (void)vs->env->remove_file(vs->env, path, NULL);
    rc = wal_writer_create(vs->env, vs->dir, name, number, &w, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = encode_record(vs, vs->current, NULL, true, &snap, err);
    if (rc == SHALE_OK) {
        rc = wal_writer_add(w, snap.data, snap.len, err);
    }
    if (rc == SHALE_OK && rec != NULL) {
        rc = wal_writer_add(w, rec->data, rec->len, err);
    }
    if (rc == SHALE_OK) {
        rc = wal_writer_sync(w, err);
    }
    if (rc == SHALE_OK) {
        rc = vs->env->sync_dir(vs->env, vs->dir, err);
    }
    buf_free(&snap);
    if (rc != SHALE_OK) {
        /* Nothing names the new file yet: drop it; the previous manifest is untouched. */
        (void)wal_writer_close(w, false, NULL);
        (void)vs->env->remove_file(vs->env, path, NULL);
        return rc;
    }
    uint64_t old = vs->manifest_number;
    int n = snprintf(line, sizeof line, "%s\n", name);
    rc = env_write_file_atomic(vs->env, vs->dir, "CURRENT", line, (size_t)n, &e);
    if (rc != SHALE_OK) {
        (void)wal_writer_close(w, false, NULL);
        if (current_names(vs, old)) {
            /* The rename never happened: the old state stands, the new file is garbage. */
            (void)vs->env->remove_file(vs->env, path, NULL);
        } else {
            /* CURRENT may name either manifest (a rename whose directory sync failed): neither
             * may be written to or removed. */
            set_broken(vs, &e);
        }
        return err_copy(err, &e);
    }
    (void)wal_writer_close(vs->manifest, false, NULL);
    vs->manifest = w;
    pthread_mutex_lock(&vs->mu);
    vs->manifest_number = number;
    vs->manifest_bytes = wal_writer_size(w);
    pthread_mutex_unlock(&vs->mu);
    if (old != 0 && old != number) {
        version_manifest_name(path, sizeof path, vs->dir, old);
        (void)vs->env->remove_file(vs->env, path, NULL); /* best effort: obsolete either way */
    }
    return SHALE_OK;
}

shale_code version_set_create(version_set *vs, shale_error *err)
{
    char path[4096];
    shale_code rc;

    if (vs->loaded) {
        return err_set(err, SHALE_INVALID, 0, "%s: version set already loaded", vs->dir);
    }
    snprintf(path, sizeof path, "%s/CURRENT", vs->dir);
    rc = vs->env->stat_path(vs->env, path, NULL, NULL, err);
    if (rc == SHALE_OK) {
        return err_set(err, SHALE_INVALID, 0, "%s: exists; not creating a new database", path);
    }
    if (rc != SHALE_NOT_FOUND) {
        return rc;
    }
    atomic_store(&vs->next_file, 1);
    rc = write_new_manifest(vs, version_set_new_file_number(vs), NULL, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    /* The first apply starts a fresh manifest (version.h), as after a recovery. */
    rc = wal_writer_close(vs->manifest, false, err);
    vs->manifest = NULL;
    vs->loaded = rc == SHALE_OK;
    return rc;
}

/* The numbers of the tables e deletes, in a fresh array (NULL when none): what the one-edit lag
 * keeps (see "The last edit" above). */
static shale_code deleted_numbers(const version_edit *e, uint64_t **out, shale_error *err)
{
    *out = NULL;
    if (e->ndeleted == 0) {
        return SHALE_OK;
    }
    uint64_t *v = malloc(e->ndeleted * sizeof *v);
    if (v == NULL) {
        return err_nomem(err);
    }
    for (size_t i = 0; i < e->ndeleted; i++) {
        v[i] = e->deleted[i].number;
    }
    *out = v;
    return SHALE_OK;
}
/* Fills in the edit's unset fields and the state it leads to. */
static void fill_edit(version_set *vs, version_edit *e, vstate *next)
{
    uint64_t counter = atomic_load(&vs->next_file);

    e->next_file_number = e->has_next_file ? max_u64(e->next_file_number, counter) : counter;
    e->has_next_file = true;
    if (!e->has_last_seq) {
        e->has_last_seq = true;
        e->last_seq = vs->last_seq;
    }
    *next = (vstate){vs->log_number, vs->flushed_seq, counter, vs->last_seq};
    state_merge(next, e);
}

shale_code version_set_apply(version_set *vs, version_edit *edit, shale_error *err)
{
    builder b = {0};
    version *nv = NULL;
    shale_buf rec = {0};
    uint64_t number = 0, *kept = NULL;
    size_t nkept = edit->ndeleted;
    vstate st;
    shale_code rc;

    if (vs->broken) {
        rc = err_copy(err, &vs->sticky);
        goto out;
    }
    if (!vs->loaded) {
        rc = err_set(err, SHALE_INVALID, 0, "%s: version set neither created nor recovered",
                     vs->dir);
        goto out;
    }
    bool roll =
        vs->manifest == NULL || wal_writer_size(vs->manifest) >= vs->opts.manifest_roll_bytes;
    if (roll) {
        number = version_set_new_file_number(vs);
    }
    fill_edit(vs, edit, &st);
    if ((rc = b_add_version(&b, vs->current, err)) != SHALE_OK ||
        (rc = b_apply(&b, edit, SHALE_INVALID, "version edit", err)) != SHALE_OK ||
        (rc = b_finish(&b, vs, true, SHALE_INVALID, "version edit", &nv, err)) != SHALE_OK ||
        (rc = encode_record(vs, NULL, edit, false, &rec, err)) != SHALE_OK) {
        goto out;
    }
    /* Allocated before the edit is written: once it is durable, nothing may fail. */
    if ((rc = deleted_numbers(edit, &kept, err)) != SHALE_OK) {
        goto out;
    }
    if (roll) {
        rc = write_new_manifest(vs, number, &rec, err);
    } else {
        rc = wal_writer_add(vs->manifest, rec.data, rec.len, err);
        if (rc == SHALE_OK) {
            shale_error e;
            rc = wal_writer_sync(vs->manifest, &e);
            if (rc != SHALE_OK) {
                /* Whether the edit reached the disk is unknown: final. */
                wal_writer_discard_unflushed(vs->manifest);
                set_broken(vs, &e);
                err_copy(err, &e);
            }
        }
    }
    if (rc != SHALE_OK) {
        goto out;
    }
    version_set_mark_file_number_used(vs, st.next_file);
    pthread_mutex_lock(&vs->mu);
    /* The state before this edit must stay recoverable until the next edit is durable. */
    vs->kept_log_number = vs->log_number;
    uint64_t *old_kept = vs->kept_tables;
    vs->kept_tables = kept;
    vs->nkept_tables = nkept;
    kept = old_kept;
    vs->log_number = st.log_number;
    vs->flushed_seq = st.flushed_seq;
    vs->last_seq = st.last_seq;
    vs->manifest_bytes = wal_writer_size(vs->manifest);
    pthread_mutex_unlock(&vs->mu);
    for (int l = 0; l < VERSION_LEVELS; l++) {
        if (edit->has_pointer[l]) {
            /* Cannot fail for lack of memory in a way that matters: a stale pointer only
             * changes which table is compacted next. */
            if (buf_set(&vs->pointer[l], edit->pointer[l].data, edit->pointer[l].len, NULL) ==
                SHALE_OK) {
                vs->has_pointer[l] = true;
            }
        }
    }
    install(vs, nv);
    nv = NULL;

out:
    if (nv != NULL) {
        version_destroy(nv);
    }
    b_free(&b);
    buf_free(&rec);
    free(kept);
    drop_added(edit);
    return rc;
}

shale_code version_set_settle(version_set *vs, shale_error *err)
{
    version_edit e;

    if (vs->broken) {
        return err_copy(err, &vs->sticky);
    }
    pthread_mutex_lock(&vs->mu);
    bool lag = vs->kept_log_number < vs->log_number || vs->nkept_tables > 0;
    pthread_mutex_unlock(&vs->mu);
    if (!lag || !vs->loaded) {
        return SHALE_OK;
    }
    version_edit_init(&e);
    shale_code rc = version_set_apply(vs, &e, err);
    version_edit_free(&e);
    return rc;
}

shale_code version_set_snapshot_record(version_set *vs, shale_buf *out, shale_error *err)
{
    return encode_record(vs, vs->current, NULL, true, out, err);
}

/* ---- recovery ---- */

/* Parses CURRENT ("MANIFEST-000005\n") into the manifest number. */
static shale_code read_current(const version_set *vs, uint64_t *number, shale_error *err)
{
    char path[4096];
    void *data = NULL;
    size_t len = 0;
    uint64_t n = 0;
    shale_code rc;

    snprintf(path, sizeof path, "%s/CURRENT", vs->dir);
    rc = env_read_file(vs->env, path, VERSION_CURRENT_MAX_BYTES, &data, &len, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    bool ok = version_parse_current(data, len, &n);
    free(data);
    if (!ok || n == 0) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: not a manifest name (%zu bytes)", path, len);
    }
    *number = n;
    return SHALE_OK;
}

/* What replaying a manifest yields. */
typedef struct replayed {
    builder b;
    vstate st;
    bool has_pointer[VERSION_LEVELS];
    shale_buf pointer[VERSION_LEVELS];
    uint64_t number, valid_end;
    char name[64];
    /* The one-edit lag as of the last valid edit (version_set_kept_log_number). */
    uint64_t kept_log_number;
    uint64_t *kept_tables;
    size_t nkept_tables;
} replayed;

static void replayed_free(replayed *r)
{
    b_free(&r->b);
    free(r->kept_tables);
    r->kept_tables = NULL;
    for (int l = 0; l < VERSION_LEVELS; l++) {
        buf_free(&r->pointer[l]);
    }
}

/* Records the lag of edit e, which may be the last: the log_number in force before it and the
 * tables it removes. A snapshot opens the manifest: no state before it is recorded there (CURRENT
 * names a manifest only once its snapshot is synced, so a damaged snapshot is corruption, never
 * taken for a torn tail), so it keeps nothing beyond itself. Called before e is merged. */
static shale_code note_last_edit(replayed *r, const version_edit *e, bool snap, shale_error *err)
{
    uint64_t *kept = NULL;
    shale_code rc = deleted_numbers(e, &kept, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    free(r->kept_tables);
    r->kept_tables = kept;
    r->nkept_tables = e->ndeleted;
    r->kept_log_number = r->st.log_number;
    if (snap) {
        r->kept_log_number = e->has_log_number ? e->log_number : 0;
    }
    return SHALE_OK;
}

/* Reads CURRENT and every edit of the manifest it names into *r (tables not yet sorted). */
static shale_code replay(const version_set *vs, replayed *r, shale_error *err)
{
    char path[4096], where[96];
    wal_reader *rd = NULL;
    wal_reader_stats stats;
    uint64_t edits = 0;
    shale_code rc;

    memset(r, 0, sizeof *r);
    rc = read_current(vs, &r->number, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    snprintf(r->name, sizeof r->name, "MANIFEST-%06" PRIu64, r->number);
    version_manifest_name(path, sizeof path, vs->dir, r->number);
    rc = wal_reader_open(vs->env, path, r->number, false, &rd, err);
    if (rc == SHALE_NOT_FOUND) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: named by CURRENT but missing", path);
    }
    while (rc == SHALE_OK) {
        shale_slice rec;
        uint64_t off;
        version_edit e;
        bool snap;

        rc = wal_reader_next(rd, &rec, &off, err);
        if (rc != SHALE_OK) {
            break;
        }
        snprintf(where, sizeof where, "%s @%" PRIu64, r->name, off);
        if (rec.len == 0 || ((const uint8_t *)rec.data)[0] != WAL_REC_EDIT) {
            rc = err_set(err, SHALE_CORRUPTION, 0, "%s: record kind %u in a manifest", where,
                         rec.len ? (unsigned)((const uint8_t *)rec.data)[0] : 0u);
            break;
        }
        rc = decode((const uint8_t *)rec.data + 1, rec.len - 1, where, &e, &snap, err);
        if (rc != SHALE_OK) {
            break;
        }
        if (edits == 0 && !snap) {
            rc = err_set(err, SHALE_CORRUPTION, 0, "%s: first edit is not a snapshot", where);
        } else if (edits > 0 && snap) {
            rc = err_set(err, SHALE_CORRUPTION, 0, "%s: a second snapshot", where);
        } else {
            rc = b_apply(&r->b, &e, SHALE_CORRUPTION, where, err);
        }
        if (rc == SHALE_OK) {
            rc = note_last_edit(r, &e, snap, err);
        }
        if (rc == SHALE_OK) {
            state_merge(&r->st, &e);
            for (int l = 0; l < VERSION_LEVELS && rc == SHALE_OK; l++) {
                if (e.has_pointer[l]) {
                    rc = buf_set(&r->pointer[l], e.pointer[l].data, e.pointer[l].len, err);
                    r->has_pointer[l] = true;
                }
            }
        }
        version_edit_free(&e);
        edits++;
    }
    if (rc == SHALE_NOT_FOUND) {
        rc = SHALE_OK;
        if (edits == 0) {
            /* CURRENT names a manifest only after its snapshot was synced. */
            rc = err_set(err, SHALE_CORRUPTION, 0, "%s: no snapshot edit", path);
        }
    }
    if (rd != NULL) {
        wal_reader_get_stats(rd, &stats);
        r->valid_end = stats.valid_end;
    }
    wal_reader_close(rd);
    if (rc != SHALE_OK) {
        replayed_free(r);
    }
    return rc;
}

shale_code version_set_recover(version_set *vs, shale_error *err)
{
    replayed r;
    version *v = NULL;
    shale_code rc;

    if (vs->loaded) {
        return err_set(err, SHALE_INVALID, 0, "%s: version set already loaded", vs->dir);
    }
    rc = replay(vs, &r, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = b_finish(&r.b, vs, true, SHALE_CORRUPTION, r.name, &v, err);
    if (rc != SHALE_OK) {
        replayed_free(&r);
        return rc;
    }
    /* Never hand out a number the directory may already use. */
    version_set_mark_file_number_used(vs, r.st.next_file);
    version_set_mark_file_number_used(vs, r.number + 1);
    for (int l = 0; l < VERSION_LEVELS; l++) {
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            version_set_mark_file_number_used(vs, sat_add(v->files[l][i]->number, 1));
        }
        vs->has_pointer[l] = r.has_pointer[l];
        buf_free(&vs->pointer[l]);
        vs->pointer[l] = r.pointer[l];
        r.pointer[l] = (shale_buf){0};
    }
    pthread_mutex_lock(&vs->mu);
    vs->log_number = r.st.log_number;
    vs->flushed_seq = r.st.flushed_seq;
    vs->last_seq = r.st.last_seq;
    vs->manifest_number = r.number;
    vs->manifest_bytes = r.valid_end;
    vs->kept_log_number = r.kept_log_number;
    free(vs->kept_tables);
    vs->kept_tables = r.kept_tables;
    vs->nkept_tables = r.nkept_tables;
    r.kept_tables = NULL;
    pthread_mutex_unlock(&vs->mu);
    install(vs, v);
    vs->loaded = true;
    replayed_free(&r);
    return SHALE_OK;
}

/* ---- check ---- */

static void report_line(shale_buf *report, unsigned *problems, const char *fmt, ...)
    SHALE_PRINTF(3, 4);

static void report_line(shale_buf *report, unsigned *problems, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    }
    if ((size_t)n > sizeof line - 2) {
        n = (int)sizeof line - 2;
    }
    line[n++] = '\n';
    (*problems)++;
    shale_code rc = buf_append(report, line, (size_t)n, NULL); /* a short report under OOM */
    (void)rc;
}

shale_code version_set_check(version_set *vs, shale_buf *report, shale_error *err)
{
    replayed r;
    version *v = NULL;
    unsigned problems = 0;
    shale_error e;
    shale_code rc;

    rc = replay(vs, &r, &e);
    if (rc == SHALE_CORRUPTION) {
        report_line(report, &problems, "%s", e.msg);
        return err_copy(err, &e);
    }
    if (rc != SHALE_OK) {
        return err_copy(err, &e);
    }
    rc = b_finish(&r.b, vs, false, SHALE_CORRUPTION, r.name, &v, err);
    if (rc != SHALE_OK) {
        replayed_free(&r);
        return rc;
    }
    if (r.number >= r.st.next_file) {
        report_line(report, &problems, "%s: its number is not below next_file_number %" PRIu64,
                    r.name, r.st.next_file);
    }
    for (int l = 0; l < VERSION_LEVELS; l++) {
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            const file_meta *f = v->files[l][i];
            char path[4096];
            uint64_t size = 0;
            bool is_dir = false;

            if (f->number >= r.st.next_file) {
                report_line(report, &problems,
                            "level %d: table %06" PRIu64
                            ": number not below next_file_number %" PRIu64,
                            l, f->number, r.st.next_file);
            }
            if (l > 0 && i > 0 &&
                slice_cmp(key_of(&v->files[l][i - 1]->largest), key_of(&f->smallest)) >= 0) {
                report_line(report, &problems,
                            "level %d: tables %06" PRIu64 " and %06" PRIu64
                            " overlap or are out of order",
                            l, v->files[l][i - 1]->number, f->number);
            }
            version_table_name(path, sizeof path, vs->dir, f->number);
            rc = vs->env->stat_path(vs->env, path, &is_dir, &size, &e);
            if (rc == SHALE_NOT_FOUND) {
                report_line(report, &problems, "level %d: %s: missing", l, path);
            } else if (rc != SHALE_OK) {
                report_line(report, &problems, "level %d: %s", l, e.msg);
            } else if (is_dir || size != f->size) {
                report_line(report, &problems,
                            "level %d: %s: %" PRIu64 " bytes, the manifest says %" PRIu64, l, path,
                            size, f->size);
            }
        }
    }
    version_destroy(v);
    replayed_free(&r);
    if (problems > 0) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: %u problem%s found", r.name, problems,
                       problems == 1 ? "" : "s");
    }
    return SHALE_OK;
}

/* ---- compaction picking ---- */

static uint64_t target_bytes(const version_set *vs, int level)
{
    uint64_t t = vs->opts.base_level_bytes;
    for (int l = 2; l <= level; l++) {
        t = sat_mul(t, vs->opts.level_ratio);
    }
    return t;
}

uint64_t version_set_static_target(const version_set *vs, int level)
{
    return level < 1 ? 0 : target_bytes(vs, level);
}

/*
 * The size each level L1+ should have; a level's score is its size over its target. Dynamic
 * targets, in the spirit of RocksDB's level_compaction_dynamic_level_bytes, sized from the bottom:
 * with Lmax the deepest non-empty level, Lmax keeps its static target (it is compacted into an
 * empty level below only when it outgrows that), and going up each level's target is a ratio-th of
 * the one below it (for the level just above Lmax, of Lmax's actual size), never below
 * base_level_bytes and never above the static target base * ratio^(level - 1).
 *
 * Why: the static targets fill the tree from the top. With a small base (a small memory budget)
 * the data settles with, say, L2 and L3 about equal and L2 under its static target, so L2 is never
 * compacted into L3 and the versions and tombstones in L3 shadowed by L2 stay on disk forever.
 * Sized from the bottom, L2's target is a tenth of L3 and the shadowed bytes are bounded by about
 * 1/ratio of the data.
 *
 * No compaction loop: a compaction of level l (1 <= l < Lmax) moves bytes out of l, and l's
 * target depends only on Lmax's size (through the chain) and never falls below base_level_bytes,
 * so repeated compactions of l bring its score below 1. When l + 1 == Lmax the target even grows
 * as l's bytes arrive there. Lmax itself is scored on its static target, as before. L1's target is
 * always base_level_bytes (the static L1 target is the floor), so the L0 -> L1 path is unchanged.
 *
 * Growth: when Lmax passes its static target it pushes tables into the empty level below, which
 * becomes Lmax. The old Lmax's target then drops to about a tenth of the new one's size, so it
 * keeps draining into it until the new bottom holds about ratio times its size: while the new
 * bottom is sparse these are mostly trivial moves (no overlap), so the move is cheap.
 */
static void level_targets(const version_set *vs, const version *v, uint64_t target[VERSION_LEVELS])
{
    int lmax = 0;

    target[0] = 0; /* L0 is scored by table count */
    for (int l = 1; l < VERSION_LEVELS; l++) {
        target[l] = target_bytes(vs, l);
        if (v->nfiles[l] > 0) {
            lmax = l;
        }
    }
    uint64_t below = lmax > 0 ? v->level_bytes[lmax] : 0;
    for (int l = lmax - 1; l >= 1; l--) {
        uint64_t t = below / vs->opts.level_ratio;
        if (t < vs->opts.base_level_bytes) {
            t = vs->opts.base_level_bytes;
        }
        if (t < target[l]) {
            target[l] = t;
        }
        below = target[l];
    }
}

/*
 * A level's bytes for scoring, with RocksDB's compensation for deletions: a tombstone is a few
 * bytes but shadows a whole entry somewhere below, which stays on disk until the tombstone is
 * compacted down to it. A table at least half tombstones counts (2 * deletions - entries) more
 * entries of the version's average size per live entry, twice (RocksDB's
 * kDeletionWeightOnCompaction), so a burst of deletes is pushed to the bottom, where it drops what
 * it shadows. Only scores use it: targets and the pending bytes are actual sizes. The deepest
 * non-empty level is not compensated: its tombstones (kept for a snapshot, or moved there whole)
 * shadow nothing below, and pushing them into an empty level would drop nothing but would make
 * that level the deepest, shrinking every target above it. Compensation cannot make compaction
 * loop: every compaction moves its level's inputs down a level.
 */
static void compensated_bytes(const version *v, double out[VERSION_LEVELS])
{
    uint64_t bytes = 0, live = 0;
    int lmax = 0;

    for (int l = 0; l < VERSION_LEVELS; l++) {
        bytes = sat_add(bytes, v->level_bytes[l]);
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            const file_meta *f = v->files[l][i];
            live = sat_add(live, f->entries > f->deletions ? f->entries - f->deletions : 0);
            lmax = l;
        }
    }
    double avg = live > 0 ? (double)bytes / (double)live : 0.0;
    for (int l = 0; l < VERSION_LEVELS; l++) {
        out[l] = (double)v->level_bytes[l];
        for (size_t i = 0; l < lmax && i < v->nfiles[l]; i++) {
            const file_meta *f = v->files[l][i];
            double extra = 2.0 * (double)f->deletions - (double)f->entries;
            if (f->deletions <= f->entries && extra > 0.0) {
                out[l] += extra * avg * 2.0;
            }
        }
    }
}

static double level_score(const version_set *vs, const version *v, const double *compensated,
                          const uint64_t *target, int level)
{
    if (level == 0) {
        return (double)v->nfiles[0] / (double)vs->opts.l0_compaction_trigger;
    }
    return compensated[level] / (double)target[level];
}

/* A growable list of tables. */
typedef struct flist {
    file_meta **v;
    size_t n, cap;
    bool nomem;
} flist;

static void fl_push(flist *l, file_meta *f)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        file_meta **p = realloc(l->v, ncap * sizeof *p);
        if (p == NULL) {
            l->nomem = true;
            return;
        }
        l->v = p;
        l->cap = ncap;
    }
    l->v[l->n++] = f;
}

/* A key range; an unbounded side has has_* false. */
typedef struct krange {
    shale_slice lo, hi;
    bool has_lo, has_hi;
} krange;

static bool in_range_file(const file_meta *f, const krange *r)
{
    if (r->has_hi && slice_cmp(key_of(&f->smallest), r->hi) > 0) {
        return false;
    }
    if (r->has_lo && slice_cmp(key_of(&f->largest), r->lo) < 0) {
        return false;
    }
    return true;
}

/* The hull of the given tables. REQUIRES: n > 0. */
static krange hull(file_meta *const *a, size_t na, file_meta *const *b, size_t nb)
{
    krange r = {.has_lo = true, .has_hi = true};
    bool first = true;
    for (size_t k = 0; k < na + nb; k++) {
        const file_meta *f = k < na ? a[k] : b[k - na];
        shale_slice s = key_of(&f->smallest), l = key_of(&f->largest);
        if (first || slice_cmp(s, r.lo) < 0) {
            r.lo = s;
        }
        if (first || slice_cmp(l, r.hi) > 0) {
            r.hi = l;
        }
        first = false;
    }
    return r;
}

/* Tables of `level` overlapping r. In level 0, the range grows to the hull of what it picked
 * until no other table overlaps it (LevelDB's GetOverlappingInputs). */
static void overlapping(const version *v, int level, krange r, flist *out)
{
    out->n = 0;
    for (size_t i = 0; i < v->nfiles[level]; i++) {
        file_meta *f = v->files[level][i];
        if (!in_range_file(f, &r)) {
            continue;
        }
        fl_push(out, f);
        if (level == 0) {
            bool grew = false;
            if (r.has_lo && slice_cmp(key_of(&f->smallest), r.lo) < 0) {
                r.lo = key_of(&f->smallest);
                grew = true;
            }
            if (r.has_hi && slice_cmp(key_of(&f->largest), r.hi) > 0) {
                r.hi = key_of(&f->largest);
                grew = true;
            }
            if (grew) {
                out->n = 0;
                i = (size_t)-1; /* restart with the wider range */
            }
        }
    }
}

static bool any_busy(const flist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i]->being_compacted) {
            return true;
        }
    }
    return false;
}

static uint64_t total_bytes(const flist *l)
{
    uint64_t t = 0;
    for (size_t i = 0; i < l->n; i++) {
        t = sat_add(t, l->v[i]->size);
    }
    return t;
}

static void fl_swap(flist *a, flist *b)
{
    flist t = *a;
    *a = *b;
    *b = t;
}

/* Builds the compaction of `in0` (tables of `level` in v, none busy): adds the overlapping
 * tables of level + 1, grows the level inputs when that does not add level + 1 tables
 * (SetupOtherInputs), and collects the grandparents. NULL when a needed table is busy or out of
 * memory. Takes over in0's array. */
static compaction *setup(version_set *vs, version *v, int level, flist *in0)
{
    flist in1 = {0}, exp0 = {0}, exp1 = {0}, gp = {0};
    compaction *c = NULL;
    krange all;

    overlapping(v, level + 1, hull(in0->v, in0->n, NULL, 0), &in1);
    if (in1.nomem || any_busy(&in1)) {
        goto out;
    }
    all = hull(in0->v, in0->n, in1.v, in1.n);
    if (in1.n > 0) {
        overlapping(v, level, all, &exp0);
        if (!exp0.nomem && exp0.n > in0->n && !any_busy(&exp0) &&
            sat_add(total_bytes(&in1), total_bytes(&exp0)) <
                sat_mul(vs->opts.table_bytes, EXPANDED_LIMIT_TABLES)) {
            overlapping(v, level + 1, hull(exp0.v, exp0.n, NULL, 0), &exp1);
            if (!exp1.nomem && exp1.n == in1.n && !any_busy(&exp1)) {
                fl_swap(in0, &exp0);
                fl_swap(&in1, &exp1);
                all = hull(in0->v, in0->n, in1.v, in1.n);
            }
        }
    }
    if (level + 2 < VERSION_LEVELS) {
        overlapping(v, level + 2, all, &gp);
        if (gp.nomem) {
            goto out;
        }
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        goto out;
    }
    c->level = level;
    c->output_level = level + 1;
    c->inputs[0] = in0->v;
    c->ninputs[0] = in0->n;
    c->inputs[1] = in1.v;
    c->ninputs[1] = in1.n;
    c->grandparents = gp.v;
    c->ngrandparents = gp.n;
    c->max_output_bytes = vs->opts.table_bytes;
    version_ref(v);
    c->input_version = v;
    *in0 = (flist){0};
    in1 = gp = (flist){0};
    for (int w = 0; w < 2; w++) {
        for (size_t i = 0; i < c->ninputs[w]; i++) {
            c->inputs[w][i]->being_compacted = true;
        }
    }
out:
    free(in1.v);
    free(exp0.v);
    free(exp1.v);
    free(gp.v);
    return c;
}

static bool l0_busy(const version *v)
{
    for (size_t i = 0; i < v->nfiles[0]; i++) {
        if (v->files[0][i]->being_compacted) {
            return true;
        }
    }
    return false;
}

/* L0: the oldest table and every table overlapping it, transitively. */
static compaction *pick_l0(version_set *vs, version *v)
{
    flist in0 = {0};
    compaction *c = NULL;

    if (v->nfiles[0] == 0 || l0_busy(v)) {
        return NULL;
    }
    file_meta *oldest = v->files[0][v->nfiles[0] - 1];
    overlapping(v, 0, hull(&oldest, 1, NULL, 0), &in0);
    if (!in0.nomem) {
        c = setup(vs, v, 0, &in0);
    }
    free(in0.v);
    return c;
}

/* Ln (n >= 1): the first table after the level's compaction pointer (wrapping around) that is
 * free and whose level n + 1 overlap is free. */
static compaction *pick_level(version_set *vs, version *v, int level)
{
    size_t n = v->nfiles[level], start = 0;

    if (n == 0) {
        return NULL;
    }
    if (vs->has_pointer[level]) {
        shale_slice ptr = key_of(&vs->pointer[level]);
        while (start < n && slice_cmp(key_of(&v->files[level][start]->largest), ptr) <= 0) {
            start++;
        }
        if (start == n) {
            start = 0;
        }
    }
    for (size_t k = 0; k < n; k++) {
        file_meta *f = v->files[level][(start + k) % n];
        flist in0 = {0};
        compaction *c;

        if (f->being_compacted) {
            continue;
        }
        fl_push(&in0, f);
        if (in0.nomem) {
            return NULL;
        }
        c = setup(vs, v, level, &in0);
        free(in0.v);
        if (c != NULL) {
            return c;
        }
    }
    return NULL;
}

compaction *version_set_pick_compaction(version_set *vs)
{
    version *v = version_set_current(vs);
    double score[VERSION_LEVELS - 1];
    uint64_t target[VERSION_LEVELS];
    double comp[VERSION_LEVELS];
    bool tried[VERSION_LEVELS - 1] = {false};
    compaction *c = NULL;

    level_targets(vs, v, target);
    compensated_bytes(v, comp);
    for (int l = 0; l < VERSION_LEVELS - 1; l++) {
        score[l] = level_score(vs, v, comp, target, l);
    }
    /* Highest score first; a level whose candidates are all busy gives way to the next. */
    for (int round = 0; round < VERSION_LEVELS - 1 && c == NULL; round++) {
        int best = -1;
        for (int l = 0; l < VERSION_LEVELS - 1; l++) {
            if (!tried[l] && score[l] >= 1.0 && (best < 0 || score[l] > score[best])) {
                best = l;
            }
        }
        if (best < 0) {
            break;
        }
        tried[best] = true;
        c = best == 0 ? pick_l0(vs, v) : pick_level(vs, v, best);
    }
    version_unref(v);
    return c;
}

compaction *version_set_compact_range(version_set *vs, int level, shale_slice begin,
                                      shale_slice end)
{
    krange r = {.lo = begin, .hi = end, .has_lo = begin.len > 0, .has_hi = end.len > 0};
    flist in0 = {0};
    compaction *c = NULL;
    version *v;

    if (level < 0 || level >= VERSION_LEVELS - 1) {
        return NULL; /* the last level never compacts down */
    }
    v = version_set_current(vs);
    if (level == 0 && l0_busy(v)) {
        goto out;
    }
    overlapping(v, level, r, &in0);
    if (in0.nomem || in0.n == 0 || any_busy(&in0)) {
        goto out;
    }
    c = setup(vs, v, level, &in0);
    if (c != NULL) {
        c->manual = true;
    }
out:
    free(in0.v);
    version_unref(v);
    return c;
}

bool compaction_is_bottom_for_key(compaction *c, shale_slice key)
{
    const version *v = c->input_version;
    for (int l = c->output_level + 1; l < VERSION_LEVELS; l++) {
        while (c->level_ptrs[l] < v->nfiles[l]) {
            const file_meta *f = v->files[l][c->level_ptrs[l]];
            if (slice_cmp(key, key_of(&f->largest)) <= 0) {
                if (slice_cmp(key, key_of(&f->smallest)) >= 0) {
                    return false; /* the key falls in this table's range */
                }
                break;
            }
            c->level_ptrs[l]++;
        }
    }
    return true;
}

bool compaction_should_stop_before(compaction *c, shale_slice key)
{
    while (c->gp_index < c->ngrandparents &&
           slice_cmp(key, key_of(&c->grandparents[c->gp_index]->largest)) > 0) {
        if (c->gp_seen_key) {
            c->gp_overlap = sat_add(c->gp_overlap, c->grandparents[c->gp_index]->size);
        }
        c->gp_index++;
    }
    c->gp_seen_key = true;
    if (c->gp_overlap > sat_mul(c->max_output_bytes, GRANDPARENT_OVERLAP_TABLES)) {
        c->gp_overlap = 0;
        return true;
    }
    return false;
}

shale_code compaction_add_input_deletions(const compaction *c, version_edit *edit, shale_error *err)
{
    const file_meta *largest = NULL;

    for (int w = 0; w < 2; w++) {
        int level = w == 0 ? c->level : c->output_level;
        for (size_t i = 0; i < c->ninputs[w]; i++) {
            shale_code rc = version_edit_delete_file(edit, level, c->inputs[w][i]->number, err);
            if (rc != SHALE_OK) {
                return rc;
            }
        }
    }
    for (size_t i = 0; i < c->ninputs[0]; i++) {
        const file_meta *f = c->inputs[0][i];
        if (largest == NULL || slice_cmp(key_of(&f->largest), key_of(&largest->largest)) > 0) {
            largest = f;
        }
    }
    if (largest != NULL) {
        /* The round-robin pointer moves with the compaction's edit (LevelDB). */
        shale_code rc =
            buf_set(&edit->pointer[c->level], largest->largest.data, largest->largest.len, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        edit->has_pointer[c->level] = true;
    }
    return SHALE_OK;
}

void compaction_free(compaction *c)
{
    if (c == NULL) {
        return;
    }
    for (int w = 0; w < 2; w++) {
        for (size_t i = 0; i < c->ninputs[w]; i++) {
            c->inputs[w][i]->being_compacted = false;
        }
        free(c->inputs[w]);
    }
    free(c->grandparents);
    version_unref(c->input_version);
    free(c);
}

/* ---- pressure ---- */

/* RocksDB's EstimateCompactionBytesNeeded: an L0 compaction (once triggered) rewrites L0 and
 * L1; every level above its target pushes the excess down, and moving x bytes into a level of
 * size s rewrites about x * (s / level_size + 1) bytes (the fan-out measured from the sizes). */
void version_set_pressure(version_set *vs, version_pressure *out)
{
    version *v = version_set_current(vs);
    uint64_t pending = 0, to_next = 0, next_size = 0;
    uint64_t targets[VERSION_LEVELS];
    double comp[VERSION_LEVELS];

    memset(out, 0, sizeof *out);
    out->l0_tables = v->nfiles[0];
    level_targets(vs, v, targets);
    compensated_bytes(v, comp);
    for (int l = 0; l < VERSION_LEVELS - 1; l++) {
        double s = level_score(vs, v, comp, targets, l);
        if (s > out->max_score) {
            out->max_score = s;
        }
    }
    bool l0_triggered = v->nfiles[0] >= vs->opts.l0_compaction_trigger ||
                        v->level_bytes[0] >= vs->opts.base_level_bytes;
    if (l0_triggered) {
        pending = v->level_bytes[0];
        to_next = v->level_bytes[0];
    }
    for (int l = 1; l < VERSION_LEVELS - 1; l++) {
        uint64_t size = next_size > 0 ? next_size : v->level_bytes[l];
        next_size = 0;
        if (l == 1 && l0_triggered) {
            pending = sat_add(pending, size);
        }
        size = sat_add(size, to_next);
        to_next = 0;
        uint64_t target = targets[l];
        if (size > target) {
            to_next = size - target;
            next_size = v->level_bytes[l + 1];
            if (next_size > 0) {
                double x = (double)to_next * ((double)next_size / (double)size + 1.0);
                pending = sat_add(pending, x >= 1.8e19 ? UINT64_MAX : (uint64_t)x);
            }
        }
    }
    out->pending_bytes = pending;
    version_unref(v);
}
