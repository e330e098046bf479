/*
 * corruption_test: damaged files on disk, against the public API.
 *
 * A torn tail (the log ends inside its last record, at ANY byte) is not corruption: the database
 * opens, the record is gone, stats.truncated_bytes says how much was cut, and the next open is
 * clean. Damage before the tail (a flipped bit in an earlier record, a damaged header of a segment
 * that is not the last, a torn non-last segment) is SHALE_CORRUPTION naming the file and offset,
 * unless opts.salvage skips it. A damaged SHALE identity file is SHALE_CORRUPTION; a directory
 * without one (with other files in it) is SHALE_INVALID and is left untouched.
 *
 * Every case works on a fresh copy of a database built once per test; log record boundaries are
 * measured by stat'ing the newest segment around each put (OS durability: the bytes are in the
 * file when the put returns). A clean shale_close flushes the memtable into a table and deletes
 * the log it covered, so the pristine copy is the directory as a crash leaves it: copied while
 * the database is still open (tu_close_as_crash), with every record still in its log segment.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shale.h"

#include "testutil.h"
#include "wal/wal_format.h"

#define BLOCK 32768u

/* ---- helpers -------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The NNNNNN.log names in dir, sorted (zero-padded: name order is number order). */
static size_t list_logs(const char *dir, char names[][32], size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char *tmp[256];
    size_t n = 0;

    cr_assert_not_null(d);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len == 10 && strcmp(e->d_name + 6, ".log") == 0 && n < 256) {
            tmp[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(tmp, n, sizeof tmp[0], cmp_str);
    cr_assert_leq(n, cap);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], 32, "%s", tmp[i]);
        free(tmp[i]);
    }
    return n;
}

/* The newest segment's base name (malloc'ed), or NULL if there is none yet. */
static char *newest_log(const char *dir)
{
    char names[64][32];
    size_t n = list_logs(dir, names, 64);
    return n > 0 ? strdup(names[n - 1]) : NULL;
}

static size_t value_for(char *buf, size_t cap, uint64_t i, size_t len)
{
    int n = snprintf(buf, cap, "v%" PRIu64 ":", i);
    if (len < (size_t)n) {
        len = (size_t)n;
    }
    for (size_t j = (size_t)n; j < len; j++) {
        buf[j] = (char)('a' + (i + j) % 26);
    }
    return len;
}

/* The durability of the writes that build a database (0: the default, OS). Damage before the
 * log's tail is corruption only where a later sync marker proves the damaged bytes had been
 * synced (wal_format.h, version 2): tests of that write at FULL, so every record but the first
 * of a segment is preceded by a marker covering the one before. */
static shale_durability g_durability;

static shale_code open_db(const char *dir, bool salvage, bool create, shale_db **db,
                          shale_error *err)
{
    shale_options o = {.salvage = salvage, .create_if_missing = create, .durability = g_durability};
    *db = NULL;
    return shale_open(dir, &o, db, err);
}

static void close_ok(shale_db *db)
{
    shale_error err = {0};
    cr_assert_eq(shale_close(db, &err), SHALE_OK, "close: %s", err.msg);
}

static shale_stats stats_of(shale_db *db)
{
    shale_stats st;
    shale_error err = {0};
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
    return st;
}

/* A database built by put()s, with each record's [start, end) in the segment it went to. */
typedef struct built {
    char *root;
    char *src; /* the pristine database */
    char *work;
    char *log_name;     /* base name of the segment the puts went to */
    bool multi_segment; /* puts may go to several segments */
    size_t n;
    uint64_t start[128];
    uint64_t end[128];
    size_t vlen[128];
} built;

/* A record written after a sync is preceded by a sync marker (one FULL fragment of kind
 * WAL_REC_SYNCED): moves *start past it, so that [start, end) is the put's own record. */
static void skip_sync_marker(const char *path, uint64_t *start)
{
    uint8_t h[WAL_HEADER_SIZE + 1];
    FILE *f = fopen(path, "rb");

    cr_assert_not_null(f);
    if (fseek(f, (long)*start, SEEK_SET) == 0 && fread(h, 1, sizeof h, f) == sizeof h &&
        h[4] == WAL_SYNC_MARK_LEN && h[5] == 0 && h[6] == WAL_FRAG_FULL && h[7] == WAL_REC_SYNCED) {
        *start += WAL_HEADER_SIZE + WAL_SYNC_MARK_LEN;
    }
    fclose(f);
}

/* Puts key i with a value of vlen bytes and records where its log record lies. Segments are
 * created when needed (possibly by this put); a record in a new segment starts right after the
 * segment header record. All puts of one database must land in one segment. */
static void put_measured(built *b, shale_db *db, uint64_t i, size_t vlen)
{
    char kb[17];
    char *vb = malloc(vlen + 32);
    shale_error err = {0};
    char *before = newest_log(b->src);
    char *path = NULL;

    cr_assert_not_null(vb);
    if (before != NULL) {
        path = tu_path(b->src, before);
        b->start[i] = (uint64_t)tu_file_size(path);
        free(path);
    }
    size_t n = value_for(vb, vlen + 32, i, vlen);
    cr_assert_eq(shale_put(db, NULL, tu_key(kb, i), (shale_slice){vb, n}, &err), SHALE_OK, "%s",
                 err.msg);
    char *after = newest_log(b->src);
    cr_assert_not_null(after, "put %" PRIu64 " wrote no log segment", i);
    if (before == NULL || strcmp(before, after) != 0) {
        b->start[i] = WAL_HEADER_SIZE + WAL_SEGMENT_HEADER_LEN;
    }
    path = tu_path(b->src, after);
    b->end[i] = (uint64_t)tu_file_size(path);
    skip_sync_marker(path, &b->start[i]);
    b->vlen[i] = n;
    cr_assert_gt(b->end[i], b->start[i], "put %" PRIu64 " did not reach the log file", i);
    if (b->log_name == NULL) {
        b->log_name = strdup(after);
    } else if (!b->multi_segment) {
        cr_assert_str_eq(after, b->log_name, "setup: put %" PRIu64 " went to a new segment", i);
    }
    free(path);
    free(before);
    free(after);
    free(vb);
}

static void built_init(built *b)
{
    memset(b, 0, sizeof *b);
    b->root = tu_tmpdir("corrupt");
    b->src = tu_path(b->root, "src");
    b->work = tu_path(b->root, "work");
}

/* Ends a building session: b->src becomes the directory as a crash right after the last put
 * leaves it (the log holds every record; no table), not as a clean close leaves it (a table, no
 * log). Checks that the log is there to be damaged. */
static void end_session(built *b, shale_db *db)
{
    tu_close_as_crash(db, b->src);
    char *log = tu_path(b->src, b->log_name);
    cr_assert_gt(tu_file_size(log), 0, "setup: %s is missing from the crash image", b->log_name);
    cr_assert_eq(tu_count_suffix(b->src, ".sst"), 0, "setup: the crash image holds tables");
    free(log);
}

/* Builds a database of n puts with the given value lengths (OS durability, the default). */
static void build(built *b, size_t n, const size_t *vlens)
{
    shale_db *db;
    shale_error err = {0};

    built_init(b);
    cr_assert_eq(open_db(b->src, false, true, &db, &err), SHALE_OK, "%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        put_measured(b, db, i, vlens[i]);
    }
    b->n = n;
    end_session(b, db);
}

static void built_free(built *b)
{
    tu_rm_rf(b->root);
    free(b->root);
    free(b->src);
    free(b->work);
    free(b->log_name);
}

/* A fresh copy of the pristine database in b->work; returns the path of its log (free it). */
static char *fresh_copy(const built *b)
{
    tu_rm_rf(b->work);
    tu_copy_dir(b->src, b->work);
    return tu_path(b->work, b->log_name);
}

static void expect_key(shale_db *db, const built *b, uint64_t i, bool present, const char *ctx)
{
    char kb[17];
    shale_buf got = {0};
    shale_error err = {0};
    shale_code rc = shale_get(db, NULL, tu_key(kb, i), &got, &err);

    if (present) {
        cr_assert_eq(rc, SHALE_OK, "%s: key %" PRIu64 " missing: %s (%s)", ctx, i,
                     shale_strerror(rc), err.msg);
        char *want = malloc(b->vlen[i] + 32);
        cr_assert_not_null(want);
        size_t n = value_for(want, b->vlen[i] + 32, i, b->vlen[i]);
        cr_assert(got.len == n && memcmp(got.data, want, n) == 0, "%s: key %" PRIu64 " damaged",
                  ctx, i);
        free(want);
    } else {
        cr_assert_eq(rc, SHALE_NOT_FOUND, "%s: key %" PRIu64 " should be absent, got %s", ctx, i,
                     shale_strerror(rc));
    }
    shale_buf_free(&got);
}

/* ---- torn tails ----------------------------------------------------------------------------- */

/* Truncates the log at every offset of the last record (start .. end inclusive). */
static void truncate_every_offset(const built *b)
{
    size_t last = b->n - 1;
    uint64_t start = b->start[last], end = b->end[last];

    for (uint64_t off = start; off <= end; off++) {
        char ctx[96];
        shale_error err = {0};
        shale_db *db;
        char *log = fresh_copy(b);

        snprintf(ctx, sizeof ctx, "%s cut at %" PRIu64 " (record %" PRIu64 "..%" PRIu64 ")",
                 b->log_name, off, start, end);
        cr_assert_eq(tu_truncate(log, off), 0);
        shale_code rc = open_db(b->work, false, false, &db, &err);
        cr_assert_eq(rc, SHALE_OK, "%s: open: %s (%s)", ctx, shale_strerror(rc), err.msg);
        shale_stats st = stats_of(db);
        uint64_t want_cut = off == end ? 0 : off - start;
        cr_assert_eq(st.truncated_bytes, want_cut, "%s: truncated_bytes %" PRIu64 ", want %" PRIu64,
                     ctx, st.truncated_bytes, want_cut);
        cr_assert_eq(st.salvaged_records, 0, "%s", ctx);
        /* Exact: the image holds no table, every key is in the memtable replayed from the log. */
        cr_assert_eq(st.live_keys, off == end ? b->n : b->n - 1, "%s: live_keys %" PRIu64, ctx,
                     st.live_keys);
        cr_assert_eq(st.recovered_records, off == end ? b->n : b->n - 1,
                     "%s: recovered_records %" PRIu64, ctx, st.recovered_records);
        for (uint64_t i = 0; i < b->n; i++) {
            expect_key(db, b, i, i < last || off == end, ctx);
        }
        /* The file was cut back to the record boundary by the open (checked while the database
         * is open: a clean close would flush it into a table and delete it). */
        cr_assert_eq(tu_file_size(log), (int64_t)(off == end ? end : start),
                     "%s: the log is %" PRId64 " bytes after recovery", ctx, tu_file_size(log));
        /* The cut log is clean for the next recovery: reopen the directory as a crash right
         * after this open leaves it, so the next open replays the same (cut) log again. */
        tu_close_as_crash(db, b->work);

        rc = open_db(b->work, false, false, &db, &err);
        cr_assert_eq(rc, SHALE_OK, "%s: second open: %s (%s)", ctx, shale_strerror(rc), err.msg);
        st = stats_of(db);
        cr_assert_eq(st.truncated_bytes, 0, "%s: second open truncated %" PRIu64, ctx,
                     st.truncated_bytes);
        cr_assert_eq(st.recovered_records, off == end ? b->n : b->n - 1,
                     "%s: second open replayed %" PRIu64 " records", ctx, st.recovered_records);
        expect_key(db, b, last, off == end, ctx);
        expect_key(db, b, 0, true, ctx);
        close_ok(db);
        free(log);
    }
}

Test(corruption, torn_tail_at_every_offset)
{
    size_t vlens[12];
    built b;

    for (size_t i = 0; i < 12; i++) {
        vlens[i] = 20 + i * 7;
    }
    build(&b, 12, vlens);
    truncate_every_offset(&b);
    built_free(&b);
    tu_assert_no_leaks();
}

/* The last record starts near the end of a 32 KiB block, so it is split into a FIRST and a LAST
 * fragment: a cut anywhere in either (also exactly at the block boundary, where the FIRST
 * fragment is whole) is a torn tail. */
Test(corruption, torn_tail_across_a_block_boundary)
{
    built b;
    shale_db *db;
    shale_error err = {0};
    size_t i = 0;

    built_init(&b);
    cr_assert_eq(open_db(b.src, false, true, &db, &err), SHALE_OK, "%s", err.msg);
    put_measured(&b, db, i++, 1000);
    char *log = tu_path(b.src, b.log_name);
    /* Fill block 0 up to ~100 bytes before its end (records of a 16-byte key and a value of v
     * bytes take v + ~40). */
    while (BLOCK - (uint64_t)tu_file_size(log) > 1200) {
        cr_assert_lt(i, 120);
        put_measured(&b, db, i, 1000);
        i++;
    }
    uint64_t room = BLOCK - (uint64_t)tu_file_size(log);
    put_measured(&b, db, i, (size_t)(room - 140));
    i++;
    put_measured(&b, db, i, 250);
    b.n = i + 1;
    end_session(&b, db);
    free(log);
    cr_assert(b.start[i] + 7 < BLOCK && b.end[i] > BLOCK + 7,
              "setup: the last record %" PRIu64 "..%" PRIu64 " does not span the block boundary",
              b.start[i], b.end[i]);
    truncate_every_offset(&b);
    built_free(&b);
    tu_assert_no_leaks();
}

/* ---- flipped bits --------------------------------------------------------------------------- */

typedef struct flip {
    const char *what;
    uint64_t at; /* offset from the record start; UINT64_MAX = the last byte, UINT64_MAX-1 the
                    middle of the payload */
    int bit;
} flip;

static const flip flips[] = {
    {"crc", 1, 3},
    {"length low byte", 4, 0},
    {"length high byte", 5, 6},
    {"length top bit", 5, 7},
    {"fragment type", 6, 1},
    {"record kind", 7, 0},
    {"payload middle", UINT64_MAX - 1, 5},
    {"payload last byte", UINT64_MAX, 2},
};

static uint64_t flip_offset(const built *b, size_t r, const flip *fl)
{
    if (fl->at == UINT64_MAX) {
        return b->end[r] - 1;
    }
    if (fl->at == UINT64_MAX - 1) {
        return b->start[r] + 7 + (b->end[r] - b->start[r] - 7) / 2;
    }
    return b->start[r] + fl->at;
}

/* Checks that msg names `file` and an offset "@N" with lo <= N < hi. */
static void check_names_offset(const char *msg, const char *file, uint64_t lo, uint64_t hi,
                               const char *ctx)
{
    cr_assert(strstr(msg, file) != NULL, "%s: the message does not name %s: '%s'", ctx, file, msg);
    const char *at = strchr(msg, '@');
    cr_assert(at != NULL && at[1] >= '0' && at[1] <= '9', "%s: the message names no offset: '%s'",
              ctx, msg);
    uint64_t off = strtoull(at + 1, NULL, 10);
    cr_assert(off >= lo && off < hi,
              "%s: the message names offset %" PRIu64 ", outside the damaged record %" PRIu64
              "..%" PRIu64 ": '%s'",
              ctx, off, lo, hi, msg);
}

static void flip_record(const built *b, size_t r)
{
    for (size_t k = 0; k < sizeof flips / sizeof flips[0]; k++) {
        const flip *fl = &flips[k];
        char ctx[128];
        shale_error err = {0};
        shale_db *db;
        char *log = fresh_copy(b);
        uint64_t off = flip_offset(b, r, fl);

        snprintf(ctx, sizeof ctx, "%s: record %zu (%" PRIu64 "..%" PRIu64 "), %s bit %d @%" PRIu64,
                 b->log_name, r, b->start[r], b->end[r], fl->what, fl->bit, off);
        cr_assert_eq(tu_flip_bit(log, off, fl->bit), 0);

        shale_code rc = open_db(b->work, false, false, &db, &err);
        cr_assert_eq(rc, SHALE_CORRUPTION, "%s: open returned %s (%s)", ctx, shale_strerror(rc),
                     err.msg);
        cr_assert_eq(err.code, SHALE_CORRUPTION, "%s", ctx);
        check_names_offset(err.msg, b->log_name, b->start[r], b->end[r], ctx);
        /* Refusing to open must not have changed anything: it still refuses. */
        rc = open_db(b->work, false, false, &db, &err);
        cr_assert_eq(rc, SHALE_CORRUPTION, "%s: second open returned %s", ctx, shale_strerror(rc));

        rc = open_db(b->work, true, false, &db, &err);
        cr_assert_eq(rc, SHALE_OK, "%s: salvage open: %s (%s)", ctx, shale_strerror(rc), err.msg);
        shale_stats st = stats_of(db);
        cr_assert_gt(st.salvaged_records, 0, "%s: salvaged_records 0", ctx);
        cr_assert_gt(st.salvaged_bytes, 0, "%s: salvaged_bytes 0", ctx);
        for (uint64_t i = 0; i < b->n; i++) {
            expect_key(db, b, i, i != r, ctx);
        }
        cr_assert_eq(st.live_keys, b->n - 1, "%s: live_keys %" PRIu64, ctx, st.live_keys);
        close_ok(db);
        free(log);
    }
}

Test(corruption, bitflip_in_earlier_record_is_corruption)
{
    size_t vlens[20];
    built b;

    g_durability = SHALE_DURABILITY_FULL;
    for (size_t i = 0; i < 20; i++) {
        vlens[i] = 30 + i * 5;
    }
    build(&b, 20, vlens);
    flip_record(&b, 0);  /* first record after the segment header */
    flip_record(&b, 10); /* a middle one */
    flip_record(&b, 18); /* the one before the last */
    built_free(&b);
    tu_assert_no_leaks();
}

/* Damage in the LAST record with nothing valid after it looks exactly like a torn write: cut. */
Test(corruption, bitflip_in_last_record_is_a_torn_tail)
{
    size_t vlens[8] = {40, 40, 40, 40, 40, 40, 40, 90};
    built b;

    build(&b, 8, vlens);
    for (size_t k = 0; k < sizeof flips / sizeof flips[0]; k++) {
        char ctx[96];
        shale_error err = {0};
        shale_db *db;
        char *log = fresh_copy(&b);

        snprintf(ctx, sizeof ctx, "last record, %s", flips[k].what);
        cr_assert_eq(tu_flip_bit(log, flip_offset(&b, 7, &flips[k]), flips[k].bit), 0);
        shale_code rc = open_db(b.work, false, false, &db, &err);
        cr_assert_eq(rc, SHALE_OK, "%s: open: %s (%s)", ctx, shale_strerror(rc), err.msg);
        shale_stats st = stats_of(db);
        cr_assert_eq(st.truncated_bytes, b.end[7] - b.start[7], "%s: truncated_bytes %" PRIu64, ctx,
                     st.truncated_bytes);
        for (uint64_t i = 0; i < 8; i++) {
            expect_key(db, &b, i, i < 7, ctx);
        }
        close_ok(db);
        free(log);
    }
    built_free(&b);
    tu_assert_no_leaks();
}

/* ---- segments that are not the last --------------------------------------------------------- */

/* Three sessions: segments with records, and the last session's. Each session ends as a crash
 * (nothing flushed into a table), so the next one recovers from the log and every segment stays
 * live: recovery must read all of them. */
static void build_segments(built *b, char names[][32], size_t *nseg)
{
    shale_db *db;
    shale_error err = {0};
    size_t vlens[1] = {50};

    built_init(b);
    b->multi_segment = true;
    for (int s = 0; s < 3; s++) {
        cr_assert_eq(open_db(b->src, false, true, &db, &err), SHALE_OK, "%s", err.msg);
        for (size_t i = 0; i < 10; i++) {
            put_measured(b, db, (uint64_t)s * 10 + i, vlens[0]);
        }
        free(b->log_name);
        b->log_name = newest_log(b->src);
        end_session(b, db);
    }
    b->n = 30;
    *nseg = list_logs(b->src, names, 64);
    cr_assert_geq(*nseg, 3, "three sessions made %zu segments", *nseg);
}

Test(corruption, damaged_header_of_non_last_segment)
{
    built b;
    char names[64][32];
    size_t nseg;

    build_segments(&b, names, &nseg);
    /* Undamaged, the image opens and recovery replays every record of every segment. */
    {
        shale_error err = {0};
        shale_db *db;
        tu_rm_rf(b.work);
        tu_copy_dir(b.src, b.work);
        cr_assert_eq(open_db(b.work, false, false, &db, &err), SHALE_OK, "undamaged: %s", err.msg);
        shale_stats st = stats_of(db);
        cr_assert_eq(st.recovered_records, b.n, "undamaged: recovered_records %" PRIu64,
                     st.recovered_records);
        for (uint64_t i = 0; i < b.n; i++) {
            expect_key(db, &b, i, true, "undamaged");
        }
        close_ok(db);
    }
    /* Every segment but the last: flip a bit in its header record (magic), or cut it inside the
     * header, or cut its last record short. */
    for (size_t s = 0; s + 1 < nseg; s++) {
        for (int how = 0; how < 3; how++) {
            char ctx[96];
            shale_error err = {0};
            shale_db *db;

            tu_rm_rf(b.work);
            tu_copy_dir(b.src, b.work);
            char *seg = tu_path(b.work, names[s]);
            int64_t size = tu_file_size(seg);
            if (how == 0) {
                snprintf(ctx, sizeof ctx, "%.32s: header magic bit flipped", names[s]);
                cr_assert_eq(tu_flip_bit(seg, 7 + 2, 4), 0);
            } else if (how == 1) {
                snprintf(ctx, sizeof ctx, "%.32s: cut inside the header", names[s]);
                cr_assert_eq(tu_truncate(seg, 12), 0);
            } else {
                if (size <= 7 + 21) {
                    free(seg);
                    continue; /* a header-only segment has no record to cut */
                }
                snprintf(ctx, sizeof ctx, "%.32s: last record cut short", names[s]);
                cr_assert_eq(tu_truncate(seg, (uint64_t)size - 3), 0);
            }
            shale_code rc = open_db(b.work, false, false, &db, &err);
            cr_assert_eq(rc, SHALE_CORRUPTION, "%s: open returned %s (%s)", ctx, shale_strerror(rc),
                         err.msg);
            cr_assert(strstr(err.msg, names[s]) != NULL, "%s: message '%s'", ctx, err.msg);
            free(seg);
        }
    }
    built_free(&b);
    tu_assert_no_leaks();
}

/* ---- the identity file ---------------------------------------------------------------------- */

static void expect_open_fails(const char *dir, bool create, shale_code want, const char *needle,
                              const char *ctx)
{
    shale_error err = {0};
    shale_db *db;
    shale_code rc = open_db(dir, false, create, &db, &err);

    cr_assert_eq(rc, want, "%s: open returned %s, want %s (%s)", ctx, shale_strerror(rc),
                 shale_strerror(want), err.msg);
    cr_assert_eq(err.code, want, "%s", ctx);
    if (needle != NULL) {
        cr_assert(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", ctx, err.msg,
                  needle);
    }
}

Test(corruption, damaged_identity_file)
{
    size_t vlens[5] = {10, 10, 10, 10, 10};
    built b;
    static const uint64_t offs[] = {0, 5, 7, 8, 11, 12, 15, 16, 23, 24, 27};
    static const uint64_t cuts[] = {0, 8, 20, 27};

    build(&b, 5, vlens);
    char *src_id = tu_path(b.src, "SHALE");
    cr_assert_eq(tu_file_size(src_id), 28, "the SHALE file is %" PRId64 " bytes",
                 tu_file_size(src_id));
    free(src_id);
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        char ctx[64];
        tu_rm_rf(b.work);
        tu_copy_dir(b.src, b.work);
        char *id = tu_path(b.work, "SHALE");
        snprintf(ctx, sizeof ctx, "SHALE bit flipped @%" PRIu64, offs[i]);
        cr_assert_eq(tu_flip_bit(id, offs[i], (int)(i % 8)), 0);
        expect_open_fails(b.work, false, SHALE_CORRUPTION, "SHALE", ctx);
        expect_open_fails(b.work, true, SHALE_CORRUPTION, "SHALE", ctx);
        free(id);
    }
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char ctx[64];
        tu_rm_rf(b.work);
        tu_copy_dir(b.src, b.work);
        char *id = tu_path(b.work, "SHALE");
        snprintf(ctx, sizeof ctx, "SHALE cut to %" PRIu64 " bytes", cuts[i]);
        cr_assert_eq(tu_truncate(id, cuts[i]), 0);
        expect_open_fails(b.work, false, SHALE_CORRUPTION, "SHALE", ctx);
        expect_open_fails(b.work, true, SHALE_CORRUPTION, "SHALE", ctx);
        free(id);
    }
    built_free(&b);
    tu_assert_no_leaks();
}

/* A database whose SHALE file is gone is not silently re-created over its logs. */
Test(corruption, missing_identity_file_is_invalid)
{
    size_t vlens[5] = {10, 10, 10, 10, 10};
    built b;

    build(&b, 5, vlens);
    char *log = fresh_copy(&b);
    char *id = tu_path(b.work, "SHALE");
    int64_t log_size = tu_file_size(log);
    cr_assert_eq(unlink(id), 0);
    expect_open_fails(b.work, false, SHALE_INVALID, "not a Shale database", "no SHALE");
    expect_open_fails(b.work, true, SHALE_INVALID, "not a Shale database",
                      "no SHALE, create_if_missing");
    cr_assert_eq(tu_file_size(id), -1, "a SHALE file was created over an existing log");
    cr_assert_eq(tu_file_size(log), log_size, "the log was changed");
    free(id);
    free(log);
    built_free(&b);
    tu_assert_no_leaks();
}

Test(corruption, unrelated_directory_is_invalid)
{
    char *root = tu_tmpdir("corrupt");
    char *notes = tu_path(root, "notes.txt");
    char *sub = tu_path(root, "photos");
    char *id = tu_path(root, "SHALE");
    FILE *fp = fopen(notes, "w");

    cr_assert_not_null(fp);
    fputs("not a database\n", fp);
    cr_assert_eq(fclose(fp), 0);
    cr_assert_eq(mkdir(sub, 0700), 0);

    expect_open_fails(root, false, SHALE_INVALID, "not a Shale database", "unrelated files");
    expect_open_fails(root, true, SHALE_INVALID, "not a Shale database",
                      "unrelated files, create_if_missing");
    cr_assert_eq(tu_file_size(notes), 15, "the unrelated file was changed");
    cr_assert_eq(tu_file_size(id), -1, "a SHALE file was created among unrelated files");

    /* A path that is a regular file, and a missing directory without create_if_missing. */
    expect_open_fails(notes, true, SHALE_INVALID, NULL, "regular file");
    char *missing = tu_path(root, "missing");
    expect_open_fails(missing, false, SHALE_INVALID, NULL, "missing directory");
    cr_assert_eq(tu_file_size(missing), -1, "a missing directory was created without create");

    free(missing);
    free(id);
    free(sub);
    free(notes);
    tu_rm_rf(root);
    free(root);
    tu_assert_no_leaks();
}
