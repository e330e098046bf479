/*
 * wal tests: the writer and reader against real files in temporary directories (env_posix), and
 * with env_fault for failed appends, failed syncs and power loss.
 *
 * The tests carry their own model of the framing (layout()) and their own fragment encoder
 * (put_frag()), written from wal_format.h, so the writer's bytes are checked against the format
 * rather than against the reader alone.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shale.h"

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "env/env.h"
#include "env/env_fault.h"
#include "testutil.h"
#include "wal/wal_format.h"
#include "wal/wal_reader.h"
#include "wal/wal_writer.h"

#define BLOCK   WAL_BLOCK_SIZE
#define HDR     WAL_HEADER_SIZE
#define SEG_HDR (WAL_HEADER_SIZE + WAL_SEGMENT_HEADER_LEN) /* framed segment header: 28 */
#define FNUM    7u
#define NAME    "000007.log"

/* ---- helpers ---------------------------------------------------------------------------- */

/* Record i of length n: kind byte, then bytes derived from (i, position). */
static void gen_rec(uint64_t i, size_t n, uint8_t *out)
{
    tu_rng rng;
    tu_rng_seed(&rng, i * 0x9e3779b97f4a7c15ull + 1);
    for (size_t k = 0; k < n; k++) {
        out[k] = (uint8_t)tu_rng_next(&rng);
    }
    if (n > 0) {
        out[0] = WAL_REC_BATCH;
    }
}

/* The framing model: fragment offsets and payload lengths of an n-byte record whose first byte
 * would go at segment offset `start`. Returns the number of fragments; *end is where the next
 * record starts. */
static size_t layout(uint64_t start, size_t n, uint64_t *offs, size_t *lens, size_t max,
                     uint64_t *end)
{
    uint64_t pos = start;
    size_t left = n;
    size_t k = 0;
    do {
        uint64_t room = BLOCK - pos % BLOCK;
        if (room < HDR) {
            pos += room;
            room = BLOCK;
        }
        size_t frag = left < room - HDR ? left : (size_t)(room - HDR);
        if (k < max) {
            offs[k] = pos;
            lens[k] = frag;
        }
        k++;
        pos += HDR + frag;
        left -= frag;
    } while (left > 0);
    *end = pos;
    return k;
}

/* Encodes one fragment at dst; returns its size. */
static size_t put_frag(uint8_t *dst, uint8_t type, const void *payload, size_t n)
{
    uint32_t crc = crc32c_extend(crc32c_value(&type, 1), payload, n);
    coding_put_fixed32(dst, crc32c_mask(crc));
    coding_put_fixed16(dst + 4, (uint16_t)n);
    dst[6] = type;
    if (n > 0) {
        memcpy(dst + HDR, payload, n);
    }
    return HDR + n;
}

static size_t put_seg_header(uint8_t *dst, const char *magic, uint32_t version, uint64_t fnum)
{
    uint8_t h[WAL_SEGMENT_HEADER_LEN];
    h[0] = WAL_REC_HEADER;
    memcpy(h + 1, magic, WAL_MAGIC_LEN);
    coding_put_fixed32(h + 1 + WAL_MAGIC_LEN, version);
    coding_put_fixed64(h + 1 + WAL_MAGIC_LEN + 4, fnum);
    return put_frag(dst, WAL_FRAG_FULL, h, sizeof h);
}

static void write_raw(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    if (n > 0) {
        cr_assert_eq(fwrite(data, 1, n, f), n);
    }
    cr_assert_eq(fclose(f), 0);
}

static uint8_t *read_raw(const char *path, size_t *n)
{
    int64_t sz = tu_file_size(path);
    cr_assert(sz >= 0);
    uint8_t *p = malloc((size_t)sz + 1);
    cr_assert_not_null(p);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    cr_assert_eq(fread(p, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return p;
}

static void append_zeros(const char *path, size_t n)
{
    uint8_t *z = calloc(1, n);
    cr_assert_not_null(z);
    FILE *f = fopen(path, "ab");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(z, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
    free(z);
}

/* A log written by the writer: record i has length lens[i] and content gen_rec(i, ...). */
typedef struct wlog {
    char *dir;
    char *path;
    size_t n;
    size_t *lens;
    uint64_t *begin; /* wal_writer_size() before the add */
    uint64_t *start; /* where the record's bytes begin: after the sync marker put before it */
    uint64_t *off;   /* offset of its first fragment (what the reader reports) */
    uint64_t size;   /* file size when written */
    /* The writer's sync-marker state as the model sees it (wal_format.h): the offset of the
     * last sync (wlog_sync) and the one the last marker announced. */
    uint64_t synced, marked;
} wlog;

static uint64_t first_frag_offset(uint64_t start)
{
    return BLOCK - start % BLOCK < HDR ? start + (BLOCK - start % BLOCK) : start;
}

static void wlog_init(wlog *lg, const char *tag, size_t n)
{
    lg->dir = tu_tmpdir(tag);
    lg->path = tu_path(lg->dir, NAME);
    lg->n = n;
    lg->lens = calloc(n + 1, sizeof *lg->lens);
    lg->begin = calloc(n + 1, sizeof *lg->begin);
    lg->start = calloc(n + 1, sizeof *lg->start);
    lg->off = calloc(n + 1, sizeof *lg->off);
    cr_assert(lg->lens && lg->begin && lg->start && lg->off);
    lg->size = 0;
}

static void wlog_free(wlog *lg)
{
    tu_rm_rf(lg->dir);
    free(lg->dir);
    free(lg->path);
    free(lg->lens);
    free(lg->begin);
    free(lg->start);
    free(lg->off);
}

/* Adds record i to w, filling lg's bookkeeping and checking the writer's accounting. */
static void add_rec(wal_writer *w, wlog *lg, size_t i, size_t len)
{
    shale_error err;
    uint64_t end;
    uint64_t offs[1];
    size_t flens[1];
    uint8_t *buf = malloc(len ? len : 1);
    cr_assert_not_null(buf);
    gen_rec(i, len, buf);
    lg->lens[i] = len;
    lg->begin[i] = lg->start[i] = wal_writer_size(w);
    if (lg->start[i] == SEG_HDR) {
        lg->synced = lg->marked = SEG_HDR; /* a fresh segment: its header needs no marker */
    }
    if (lg->synced > lg->marked) {
        /* A sync since the last marker: the writer frames one in front of the record. */
        layout(lg->start[i], WAL_SYNC_MARK_LEN, offs, flens, 1, &lg->start[i]);
        lg->marked = lg->synced;
    }
    lg->off[i] = first_frag_offset(lg->start[i]);
    cr_assert_eq(wal_writer_add(w, buf, len, &err), SHALE_OK, "%s", err.msg);
    layout(lg->start[i], len, offs, flens, 1, &end);
    cr_assert_eq(wal_writer_size(w), end, "record %zu: size %" PRIu64 " != model %" PRIu64, i,
                 wal_writer_size(w), end);
    free(buf);
}

static void wlog_sync(wal_writer *w, wlog *lg)
{
    shale_error err;
    cr_assert_eq(wal_writer_sync(w, &err), SHALE_OK, "%s", err.msg);
    lg->synced = wal_writer_size(w);
}

/* Writes a whole log with env_posix: records of lens[], flushing every `flush_every` records
 * (0: only at close). */
/* write_log's flush_every that syncs after every record instead (so sync markers follow). */
#define SYNC_EACH SIZE_MAX

static void write_log(wlog *lg, const size_t *lens, size_t flush_every)
{
    shale_error err;
    wal_writer *w = NULL;
    cr_assert_eq(wal_writer_create(env_posix(), lg->dir, NAME, FNUM, &w, &err), SHALE_OK, "%s",
                 err.msg);
    cr_assert_eq(wal_writer_size(w), SEG_HDR);
    cr_assert_eq(wal_writer_flushed_size(w), SEG_HDR);
    for (size_t i = 0; i < lg->n; i++) {
        add_rec(w, lg, i, lens[i]);
        if (flush_every == SYNC_EACH) {
            wlog_sync(w, lg);
        } else if (flush_every && (i + 1) % flush_every == 0) {
            cr_assert_eq(wal_writer_flush(w, &err), SHALE_OK, "%s", err.msg);
            cr_assert_eq(wal_writer_buffered_bytes(w), 0);
        }
    }
    lg->size = wal_writer_size(w);
    cr_assert_eq(wal_writer_close(w, true, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq((uint64_t)tu_file_size(lg->path), lg->size);
}

/* What a reader returned. */
typedef struct got {
    shale_code open_rc;
    shale_code rc; /* the code that ended reading */
    shale_error err;
    size_t n;
    uint8_t **data;
    size_t *len;
    uint64_t *off;
    wal_reader_stats st;
} got;

static void got_free(got *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->data[i]);
    }
    free(g->data);
    free(g->len);
    free(g->off);
    memset(g, 0, sizeof *g);
}

static void read_all(const shale_env *env, const char *path, uint64_t fnum, bool salvage, got *g)
{
    wal_reader *r = NULL;
    size_t cap = 0;
    shale_slice rec;
    uint64_t off;

    memset(g, 0, sizeof *g);
    g->open_rc = wal_reader_open(env, path, fnum, salvage, &r, &g->err);
    if (g->open_rc != SHALE_OK) {
        g->rc = g->open_rc;
        cr_assert_null(r);
        return;
    }
    for (;;) {
        g->rc = wal_reader_next(r, &rec, &off, &g->err);
        if (g->rc != SHALE_OK) {
            break;
        }
        if (g->n == cap) {
            cap = cap ? cap * 2 : 64;
            g->data = realloc(g->data, cap * sizeof *g->data);
            g->len = realloc(g->len, cap * sizeof *g->len);
            g->off = realloc(g->off, cap * sizeof *g->off);
            cr_assert(g->data && g->len && g->off);
        }
        g->data[g->n] = malloc(rec.len ? rec.len : 1);
        cr_assert_not_null(g->data[g->n]);
        if (rec.len) {
            memcpy(g->data[g->n], rec.data, rec.len);
        }
        g->len[g->n] = rec.len;
        g->off[g->n] = off;
        g->n++;
    }
    /* The end is sticky. */
    shale_error e2;
    cr_assert_eq(wal_reader_next(r, &rec, &off, &e2), g->rc);
    wal_reader_get_stats(r, &g->st);
    wal_reader_close(r);
}

/* g holds exactly records `ids[0..k)` of lg, in order, with their offsets. */
static void expect_records(const got *g, const wlog *lg, const size_t *ids, size_t k)
{
    cr_assert_eq(g->n, k, "got %zu records, expected %zu (rc %d: %s)", g->n, k, g->rc, g->err.msg);
    for (size_t j = 0; j < k; j++) {
        size_t i = ids[j];
        cr_assert_eq(g->len[j], lg->lens[i], "record %zu: length %zu != %zu", i, g->len[j],
                     lg->lens[i]);
        cr_assert_eq(g->off[j], lg->off[i], "record %zu: offset %" PRIu64 " != %" PRIu64, i,
                     g->off[j], lg->off[i]);
        uint8_t *want = malloc(lg->lens[i] ? lg->lens[i] : 1);
        gen_rec(i, lg->lens[i], want);
        cr_assert(lg->lens[i] == 0 || memcmp(g->data[j], want, lg->lens[i]) == 0,
                  "record %zu: content differs", i);
        free(want);
    }
}

static void expect_prefix(const got *g, const wlog *lg, size_t k)
{
    size_t *ids = malloc((k + 1) * sizeof *ids);
    for (size_t i = 0; i < k; i++) {
        ids[i] = i;
    }
    expect_records(g, lg, ids, k);
    free(ids);
}

static void expect_all_but(const got *g, const wlog *lg, size_t skip)
{
    size_t *ids = malloc((lg->n + 1) * sizeof *ids);
    size_t k = 0;
    for (size_t i = 0; i < lg->n; i++) {
        if (i != skip) {
            ids[k++] = i;
        }
    }
    expect_records(g, lg, ids, k);
    free(ids);
}

static void expect_clean(const got *g, const wlog *lg)
{
    cr_assert_eq(g->open_rc, SHALE_OK, "%s", g->err.msg);
    cr_assert_eq(g->rc, SHALE_NOT_FOUND, "rc %d: %s", g->rc, g->err.msg);
    expect_prefix(g, lg, lg->n);
    cr_assert_not(g->st.torn_tail);
    cr_assert_eq(g->st.valid_end, lg->size);
    cr_assert_eq(g->st.file_size, lg->size);
    cr_assert_eq(g->st.records, lg->n + 1);
    cr_assert_eq(g->st.salvaged_records, 0);
}

static void check_roundtrip(const char *tag, const size_t *lens, size_t n, size_t flush_every)
{
    wlog lg;
    got g;
    wlog_init(&lg, tag, n);
    write_log(&lg, lens, flush_every);
    read_all(env_posix(), lg.path, FNUM, false, &g);
    expect_clean(&g, &lg);
    got_free(&g);
    read_all(env_posix(), lg.path, FNUM, true, &g);
    expect_clean(&g, &lg);
    got_free(&g);
    wlog_free(&lg);
}

/* ---- round trips ------------------------------------------------------------------------ */

Test(wal, header_bytes_match_the_format)
{
    char *dir = tu_tmpdir("wal");
    char *path = tu_path(dir, NAME);
    wal_writer *w = NULL;
    shale_error err;
    uint8_t want[SEG_HDR];
    size_t n;

    cr_assert_eq(wal_writer_create(env_posix(), dir, NAME, FNUM, &w, &err), SHALE_OK, "%s",
                 err.msg);
    cr_assert_eq(wal_writer_file_number(w), FNUM);
    cr_assert_not(wal_writer_broken(w, NULL));
    cr_assert_eq(wal_writer_close(w, false, &err), SHALE_OK);
    uint8_t *have = read_raw(path, &n);
    cr_assert_eq(n, SEG_HDR);
    cr_assert_eq(put_seg_header(want, WAL_MAGIC, WAL_FORMAT_VERSION, FNUM), SEG_HDR);
    cr_assert_arr_eq(have, want, SEG_HDR);
    free(have);

    /* The segment must not exist already. */
    cr_assert_neq(wal_writer_create(env_posix(), dir, NAME, FNUM, &w, &err), SHALE_OK);
    cr_assert_null(w);
    cr_assert_eq(wal_writer_close(NULL, true, &err), SHALE_OK);
    tu_rm_rf(dir);
    free(dir);
    free(path);
}

Test(wal, empty_segment_reads_clean)
{
    check_roundtrip("wal", NULL, 0, 0);
}

Test(wal, small_and_empty_records)
{
    size_t lens[] = {1, 0, 2, 10, 100, 0, 1000, 7, 6};
    check_roundtrip("wal", lens, sizeof lens / sizeof lens[0], 1);
    check_roundtrip("wal", lens, sizeof lens / sizeof lens[0], 0);
}

Test(wal, records_fill_blocks_exactly)
{
    /* The first record ends exactly at the end of block 0, the next fills block 1 whole. */
    size_t lens[] = {BLOCK - SEG_HDR - HDR, BLOCK - HDR, 5, BLOCK - HDR - 5 - HDR, 3};
    wlog lg;
    got g;
    wlog_init(&lg, "wal", 5);
    write_log(&lg, lens, 2);
    cr_assert_eq(lg.off[1], BLOCK);
    cr_assert_eq(lg.off[2], 2 * BLOCK);
    cr_assert_eq(lg.off[4], 3 * BLOCK);
    read_all(env_posix(), lg.path, FNUM, false, &g);
    expect_clean(&g, &lg);
    got_free(&g);
    wlog_free(&lg);
}

Test(wal, records_straddling_blocks_and_multi_block)
{
    size_t lens[] = {30000, 5000, 100 << 10, 1, 1 << 20, BLOCK, BLOCK - 1, BLOCK + 1, 3 * BLOCK, 0};
    check_roundtrip("wal", lens, sizeof lens / sizeof lens[0], 1);
    check_roundtrip("wal", lens, sizeof lens / sizeof lens[0], 3);
}

/* For every k in 0..7, a record leaves exactly k bytes at the end of block 0; then two more
 * records follow. Checks the padding bytes are zeros and where the next fragment starts. */
Test(wal, padding_at_block_end)
{
    for (size_t k = 0; k <= 8; k++) {
        size_t lens[] = {BLOCK - SEG_HDR - HDR - k, 50, 40000};
        wlog lg;
        got g;
        size_t n;
        wlog_init(&lg, "wal", 3);
        write_log(&lg, lens, 1);
        cr_assert_eq(lg.start[1], BLOCK - k);
        uint64_t want_off = k < HDR ? BLOCK : BLOCK - k;
        cr_assert_eq(lg.off[1], want_off, "k=%zu", k);
        uint8_t *raw = read_raw(lg.path, &n);
        if (k < HDR) {
            for (size_t i = BLOCK - k; i < BLOCK; i++) {
                cr_assert_eq(raw[i], 0, "k=%zu: padding byte @%zu is %u", k, i, raw[i]);
            }
        } else {
            /* Room for a header: a FIRST starts there (zero-length for k=7). */
            cr_assert_eq(raw[BLOCK - k + 6], WAL_FRAG_FIRST, "k=%zu", k);
            cr_assert_eq(coding_get_fixed16(raw + BLOCK - k + 4), k - HDR, "k=%zu", k);
        }
        free(raw);
        read_all(env_posix(), lg.path, FNUM, false, &g);
        expect_clean(&g, &lg);
        got_free(&g);
        wlog_free(&lg);
    }
}

Test(wal, many_records_many_flushes)
{
    enum { N = 4000 };
    tu_rng rng;
    wlog lg;
    got g;
    shale_error err;
    wal_writer *w = NULL;

    tu_rng_seed(&rng, 42);
    wlog_init(&lg, "wal", N);
    cr_assert_eq(wal_writer_create(env_posix(), lg.dir, NAME, FNUM, &w, &err), SHALE_OK);
    uint64_t flushed = SEG_HDR;
    for (size_t i = 0; i < N; i++) {
        size_t len = tu_rng_below(&rng, 8) == 0 ? (size_t)tu_rng_below(&rng, 70000)
                                                : (size_t)tu_rng_below(&rng, 300);
        add_rec(w, &lg, i, len);
        cr_assert_eq(wal_writer_flushed_size(w), flushed);
        cr_assert_eq(wal_writer_buffered_bytes(w), wal_writer_size(w) - flushed);
        uint64_t r = tu_rng_below(&rng, 10);
        if (r < 3) {
            cr_assert_eq(wal_writer_flush(w, &err), SHALE_OK, "%s", err.msg);
            flushed = wal_writer_size(w);
            cr_assert_eq((uint64_t)tu_file_size(lg.path), flushed);
        } else if (r == 3) {
            wlog_sync(w, &lg);
            flushed = wal_writer_size(w);
            cr_assert_eq(wal_writer_buffered_bytes(w), 0);
        }
    }
    lg.size = wal_writer_size(w);
    cr_assert_eq(wal_writer_close(w, false, &err), SHALE_OK, "%s", err.msg);
    read_all(env_posix(), lg.path, FNUM, false, &g);
    expect_clean(&g, &lg);
    got_free(&g);
    wlog_free(&lg);
}

Test(wal, oversized_record_is_refused)
{
    char *dir = tu_tmpdir("wal");
    wal_writer *w = NULL;
    shale_error err;
    static const uint8_t byte = 1;
    cr_assert_eq(wal_writer_create(env_posix(), dir, NAME, FNUM, &w, &err), SHALE_OK);
    /* The length is checked before the bytes are touched. */
    cr_assert_eq(wal_writer_add(w, &byte, (size_t)WAL_MAX_RECORD_BYTES + 1, &err), SHALE_INVALID);
    cr_assert_eq(wal_writer_size(w), SEG_HDR);
    cr_assert_not(wal_writer_broken(w, NULL));
    cr_assert_eq(wal_writer_close(w, true, &err), SHALE_OK);
    tu_rm_rf(dir);
    free(dir);
}

/* ---- the segment header ----------------------------------------------------------------- */

static void expect_open_corrupt(const char *path, uint64_t fnum, bool salvage, const char *what)
{
    got g;
    read_all(env_posix(), path, fnum, salvage, &g);
    cr_assert_eq(g.open_rc, SHALE_CORRUPTION, "%s: rc %d (%s)", what, g.open_rc, g.err.msg);
    cr_assert_not_null(strstr(g.err.msg, path), "%s: message lacks the path: %s", what, g.err.msg);
    cr_assert_not_null(strstr(g.err.msg, "@0"), "%s: message lacks the offset: %s", what,
                       g.err.msg);
    got_free(&g);
}

Test(wal, bad_segment_headers_are_corruption)
{
    char *dir = tu_tmpdir("wal");
    char *path = tu_path(dir, NAME);
    uint8_t raw[256];
    size_t n;
    uint8_t rec[] = {WAL_REC_BATCH, 1, 2, 3};

    n = put_seg_header(raw, "SHALEWAX", WAL_FORMAT_VERSION, FNUM);
    n += put_frag(raw + n, WAL_FRAG_FULL, rec, sizeof rec);
    write_raw(path, raw, n);
    expect_open_corrupt(path, FNUM, false, "magic");
    expect_open_corrupt(path, FNUM, true, "magic (salvage)");

    n = put_seg_header(raw, WAL_MAGIC, WAL_FORMAT_VERSION + 1, FNUM);
    write_raw(path, raw, n);
    expect_open_corrupt(path, FNUM, false, "version");

    n = put_seg_header(raw, WAL_MAGIC, WAL_FORMAT_VERSION, FNUM + 1);
    write_raw(path, raw, n);
    expect_open_corrupt(path, FNUM, false, "file number");
    expect_open_corrupt(path, FNUM, true, "file number (salvage)");

    /* A valid record that is not a header. */
    n = put_frag(raw, WAL_FRAG_FULL, rec, sizeof rec);
    write_raw(path, raw, n);
    expect_open_corrupt(path, FNUM, false, "not a header");

    /* The right header is accepted. */
    got g;
    n = put_seg_header(raw, WAL_MAGIC, WAL_FORMAT_VERSION, FNUM);
    n += put_frag(raw + n, WAL_FRAG_FULL, rec, sizeof rec);
    write_raw(path, raw, n);
    read_all(env_posix(), path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.off[0], SEG_HDR);
    cr_assert_eq(g.len[0], sizeof rec);
    cr_assert_not(g.st.torn_tail);
    cr_assert_eq(g.st.valid_end, n);
    got_free(&g);

    tu_rm_rf(dir);
    free(dir);
    free(path);
}

Test(wal, missing_file_fails)
{
    char *dir = tu_tmpdir("wal");
    char *path = tu_path(dir, NAME);
    got g;
    read_all(env_posix(), path, FNUM, false, &g);
    cr_assert_neq(g.open_rc, SHALE_OK);
    tu_rm_rf(dir);
    free(dir);
    free(path);
}

/* An empty file, and a header cut at every length, is an empty torn segment. */
Test(wal, torn_header_is_an_empty_torn_segment)
{
    char *dir = tu_tmpdir("wal");
    char *path = tu_path(dir, NAME);
    uint8_t raw[SEG_HDR];
    put_seg_header(raw, WAL_MAGIC, WAL_FORMAT_VERSION, FNUM);
    for (size_t cut = 0; cut < SEG_HDR; cut++) {
        got g;
        write_raw(path, raw, cut);
        read_all(env_posix(), path, FNUM, false, &g);
        cr_assert_eq(g.open_rc, SHALE_OK, "cut %zu: %s", cut, g.err.msg);
        cr_assert_eq(g.rc, SHALE_NOT_FOUND, "cut %zu: %d %s", cut, g.rc, g.err.msg);
        cr_assert_eq(g.n, 0);
        cr_assert(g.st.torn_tail, "cut %zu", cut);
        cr_assert_eq(g.st.valid_end, 0);
        cr_assert_eq(g.st.file_size, cut);
        cr_assert_eq(g.st.records, 0);
        got_free(&g);
    }
    /* A whole block of zeros (a file the filesystem extended) is no different. */
    write_raw(path, NULL, 0);
    append_zeros(path, BLOCK + 100);
    got g;
    read_all(env_posix(), path, FNUM, false, &g);
    cr_assert_eq(g.open_rc, SHALE_OK, "%s", g.err.msg);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND);
    cr_assert(g.st.torn_tail);
    cr_assert_eq(g.st.valid_end, 0);
    got_free(&g);
    tu_rm_rf(dir);
    free(dir);
    free(path);
}

/* A damaged header followed by valid records: corruption, or with salvage the records. */
Test(wal, damaged_header_with_records_after)
{
    size_t lens[] = {100, 200, 300};
    wlog lg;
    got g;
    wlog_init(&lg, "wal", 3);
    write_log(&lg, lens, 1);
    cr_assert_eq(tu_flip_bit(lg.path, 10, 3), 0);
    read_all(env_posix(), lg.path, FNUM, false, &g);
    cr_assert_eq(g.open_rc, SHALE_CORRUPTION, "%d %s", g.open_rc, g.err.msg);
    cr_assert_not_null(strstr(g.err.msg, "@0: bad checksum"), "%s", g.err.msg);
    got_free(&g);
    read_all(env_posix(), lg.path, FNUM, true, &g);
    cr_assert_eq(g.open_rc, SHALE_OK, "%s", g.err.msg);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND);
    expect_prefix(&g, &lg, 3);
    cr_assert_gt(g.st.salvaged_records, 0);
    cr_assert_eq(g.st.salvaged_bytes, SEG_HDR);
    got_free(&g);
    wlog_free(&lg);
}

/* ---- torn tails ------------------------------------------------------------------------- */

/* Cuts the log at each offset in cuts[] (descending, so the file only shrinks) and checks the
 * reader returns records 0..n-2, the end, torn_tail and valid_end = start of the last record. */
static void check_torn_cuts(wlog *lg, const uint64_t *cuts, size_t ncuts)
{
    size_t last = lg->n - 1;
    for (size_t c = 0; c < ncuts; c++) {
        got g;
        uint64_t cut = cuts[c];
        cr_assert(cut > lg->start[last] && cut < lg->size);
        cr_assert_eq(tu_truncate(lg->path, cut), 0);
        read_all(env_posix(), lg->path, FNUM, false, &g);
        cr_assert_eq(g.open_rc, SHALE_OK, "cut %" PRIu64 ": %s", cut, g.err.msg);
        cr_assert_eq(g.rc, SHALE_NOT_FOUND, "cut %" PRIu64 ": rc %d %s", cut, g.rc, g.err.msg);
        expect_prefix(&g, lg, last);
        cr_assert(g.st.torn_tail, "cut %" PRIu64, cut);
        cr_assert_eq(g.st.valid_end, lg->start[last], "cut %" PRIu64 ": valid_end %" PRIu64, cut,
                     g.st.valid_end);
        cr_assert_eq(g.st.file_size, cut);
        got_free(&g);
        /* Salvage changes nothing about a torn tail. */
        read_all(env_posix(), lg->path, FNUM, true, &g);
        cr_assert_eq(g.rc, SHALE_NOT_FOUND);
        cr_assert_eq(g.n, last);
        cr_assert_eq(g.st.salvaged_records, 0);
        got_free(&g);
    }
    /* Cut exactly at the start of the last record: a clean end. */
    got g;
    cr_assert_eq(tu_truncate(lg->path, lg->start[last]), 0);
    read_all(env_posix(), lg->path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND);
    expect_prefix(&g, lg, last);
    cr_assert_not(g.st.torn_tail);
    cr_assert_eq(g.st.valid_end, lg->start[last]);
    got_free(&g);
}

Test(wal, torn_tail_at_every_byte_of_the_last_record)
{
    size_t lens[] = {50, 200, 17, 0, 1, 300};
    size_t n = sizeof lens / sizeof lens[0];
    wlog lg;
    wlog_init(&lg, "wal", n);
    write_log(&lg, lens, 2);
    uint64_t ncuts = lg.size - lg.start[n - 1] - 1;
    uint64_t *cuts = malloc(ncuts * sizeof *cuts);
    for (uint64_t i = 0; i < ncuts; i++) {
        cuts[i] = lg.size - 1 - i;
    }
    check_torn_cuts(&lg, cuts, ncuts);
    free(cuts);
    wlog_free(&lg);
}

/* The last record starts after padding: cuts inside the padding are torn too. */
Test(wal, torn_tail_after_padding)
{
    size_t lens[] = {BLOCK - SEG_HDR - HDR - 3, 100};
    wlog lg;
    wlog_init(&lg, "wal", 2);
    write_log(&lg, lens, 1);
    cr_assert_eq(lg.start[1], BLOCK - 3);
    cr_assert_eq(lg.off[1], BLOCK);
    uint64_t ncuts = lg.size - lg.start[1] - 1;
    uint64_t *cuts = malloc(ncuts * sizeof *cuts);
    for (uint64_t i = 0; i < ncuts; i++) {
        cuts[i] = lg.size - 1 - i;
    }
    check_torn_cuts(&lg, cuts, ncuts);
    free(cuts);
    wlog_free(&lg);
}

/* A multi-block last record: every byte near each fragment boundary, and a stride elsewhere. */
Test(wal, torn_tail_in_a_multi_block_record)
{
    size_t lens[] = {1000, 20000, 90000};
    wlog lg;
    uint64_t offs[8];
    size_t flens[8];
    uint64_t end;
    wlog_init(&lg, "wal", 3);
    write_log(&lg, lens, 1);
    size_t nf = layout(lg.start[2], lens[2], offs, flens, 8, &end);
    cr_assert_eq(nf, 4);
    cr_assert_eq(end, lg.size);
    uint64_t *cuts = malloc((size_t)(lg.size - lg.start[2]) * sizeof *cuts);
    size_t ncuts = 0;
    for (uint64_t cut = lg.size - 1; cut > lg.start[2]; cut--) {
        bool near = (cut - lg.start[2]) % 97 == 0;
        for (size_t f = 0; f < nf; f++) {
            uint64_t fe = offs[f] + HDR + flens[f];
            if ((cut + 12 >= offs[f] && cut <= offs[f] + 12) ||
                (cut + 12 >= fe && cut <= fe + 12)) {
                near = true;
            }
        }
        if (near) {
            cuts[ncuts++] = cut;
        }
    }
    check_torn_cuts(&lg, cuts, ncuts);
    free(cuts);
    wlog_free(&lg);
}

Test(wal, appended_zeros_are_a_torn_tail)
{
    size_t zeros[] = {1, 6, 7, 100, 0 /* to the block end */, BLOCK + 500};
    for (size_t z = 0; z < sizeof zeros / sizeof zeros[0]; z++) {
        size_t lens[] = {100, 40000, 300};
        wlog lg;
        got g;
        wlog_init(&lg, "wal", 3);
        write_log(&lg, lens, 1);
        size_t nz = zeros[z] ? zeros[z] : BLOCK - lg.size % BLOCK;
        append_zeros(lg.path, nz);
        read_all(env_posix(), lg.path, FNUM, false, &g);
        cr_assert_eq(g.open_rc, SHALE_OK, "%s", g.err.msg);
        cr_assert_eq(g.rc, SHALE_NOT_FOUND, "zeros %zu: %d %s", nz, g.rc, g.err.msg);
        expect_prefix(&g, &lg, 3);
        cr_assert(g.st.torn_tail);
        cr_assert_eq(g.st.valid_end, lg.size);
        cr_assert_eq(g.st.file_size, lg.size + nz);
        got_free(&g);
        wlog_free(&lg);
    }
}

/* Damage to the last record with nothing valid after it cannot be told from a torn write: it is
 * reported as a torn tail (the rule of wal_reader.h). */
Test(wal, damaged_last_record_is_a_torn_tail)
{
    size_t lens[] = {100, 200, 300};
    wlog lg;
    got g;
    wlog_init(&lg, "wal", 3);
    write_log(&lg, lens, 1);
    cr_assert_eq(tu_flip_bit(lg.path, lg.off[2] + HDR + 150, 0), 0);
    read_all(env_posix(), lg.path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND);
    expect_prefix(&g, &lg, 2);
    cr_assert(g.st.torn_tail);
    cr_assert_eq(g.st.valid_end, lg.start[2]);
    got_free(&g);
    wlog_free(&lg);
}

/* ---- corruption ------------------------------------------------------------------------- */

typedef struct damage {
    const char *what;
    uint64_t at; /* offset within the fragment */
    int bit;
    const char *msg; /* expected in the message after "@X: " (NULL: any) */
} damage;

/* Flips one bit of fragment `frag` of record `rec` of a log synced after every record and checks
 * corruption at that fragment's offset (the next record's sync marker proves the damaged bytes
 * were synced), then, with salvage, every other record. */
static void check_damage(const size_t *lens, size_t n, size_t rec, size_t frag, const damage *d)
{
    wlog lg;
    got g;
    uint64_t offs[64];
    size_t flens[64];
    uint64_t end;
    char want[96];

    wlog_init(&lg, "wal", n);
    write_log(&lg, lens, SYNC_EACH);
    size_t nf = layout(lg.start[rec], lens[rec], offs, flens, 64, &end);
    cr_assert(frag < nf);
    uint64_t x = offs[frag];
    uint64_t at = x + d->at;
    if (d->at >= HDR) {
        cr_assert(flens[frag] > 0);
        at = x + HDR + (d->at - HDR) % flens[frag];
    }
    cr_assert_eq(tu_flip_bit(lg.path, at, d->bit), 0);

    read_all(env_posix(), lg.path, FNUM, false, &g);
    cr_assert_eq(g.open_rc, SHALE_OK, "%s", g.err.msg);
    cr_assert_eq(g.rc, SHALE_CORRUPTION, "%s rec %zu frag %zu: rc %d %s", d->what, rec, frag, g.rc,
                 g.err.msg);
    expect_prefix(&g, &lg, rec);
    snprintf(want, sizeof want, "%s @%" PRIu64 ": %s", lg.path, x, d->msg ? d->msg : "");
    cr_assert_not_null(strstr(g.err.msg, want), "%s: message \"%s\" lacks \"%s\"", d->what,
                       g.err.msg, want);
    got_free(&g);

    read_all(env_posix(), lg.path, FNUM, true, &g);
    cr_assert_eq(g.open_rc, SHALE_OK, "%s", g.err.msg);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND, "%s salvage: rc %d %s", d->what, g.rc, g.err.msg);
    expect_all_but(&g, &lg, rec);
    cr_assert_gt(g.st.salvaged_records, 0);
    cr_assert_gt(g.st.salvaged_bytes, 0);
    cr_assert_not(g.st.torn_tail);
    cr_assert_eq(g.st.valid_end, lg.size);
    got_free(&g);
    wlog_free(&lg);
}

static const damage damages[] = {
    {"payload", HDR + 3, 0, "bad checksum"},
    {"payload end", HDR + 100000, 7, "bad checksum"},
    {"crc", 0, 0, "bad checksum"},
    {"crc high", 3, 7, "bad checksum"},
    {"length low", 4, 0, NULL},
    {"length high", 5, 7, "length "},
    {"type bit 0", 6, 0, NULL},
    {"type bit 1", 6, 1, NULL},
    {"type bit 2", 6, 2, "bad "},
    {"type bit 7", 6, 7, "bad fragment type "},
};
#define NDAMAGES (sizeof damages / sizeof damages[0])

Test(wal, corruption_in_one_block)
{
    size_t lens[] = {100, 250, 20, 400, 33, 120};
    size_t n = sizeof lens / sizeof lens[0];
    for (size_t d = 0; d < NDAMAGES; d++) {
        check_damage(lens, n, 0, 0, &damages[d]); /* first */
        check_damage(lens, n, 3, 0, &damages[d]); /* middle */
    }
}

Test(wal, corruption_across_blocks)
{
    size_t lens[] = {5000, 40000, 70000, 3000, 100, 50000, 200};
    size_t n = sizeof lens / sizeof lens[0];
    for (size_t d = 0; d < NDAMAGES; d++) {
        check_damage(lens, n, 1, 0, &damages[d]); /* a FIRST */
        check_damage(lens, n, 1, 1, &damages[d]); /* its LAST */
        check_damage(lens, n, 2, 1, &damages[d]); /* a MIDDLE */
        check_damage(lens, n, 4, 0, &damages[d]); /* a FULL inside a later block */
    }
}

/* ---- sync markers (version 2): damage is corruption only where a sync covered it ---------- */

/* Overwrites [off, off + n) of the file with zeros (what a lost, never-written page reads as). */
static void zero_range(const char *path, uint64_t off, size_t n)
{
    size_t size;
    uint8_t *raw = read_raw(path, &size);
    cr_assert(off + n <= size);
    memset(raw + off, 0, n);
    write_raw(path, raw, size);
    free(raw);
}

/* Damage to bytes no sync covered is a torn tail even with valid records after it: a power loss
 * may keep a later unsynced write and lose an earlier one. Salvage still finds the rest. */
Test(wal, unsynced_damage_is_a_torn_tail)
{
    size_t lens[] = {100, 200, 300, 400};
    wlog lg;
    got g;
    wlog_init(&lg, "wal", 4);
    write_log(&lg, lens, 1); /* flushed, never synced */
    cr_assert_eq(tu_flip_bit(lg.path, lg.off[1] + HDR + 50, 3), 0);
    read_all(env_posix(), lg.path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND, "%s", g.err.msg);
    expect_prefix(&g, &lg, 1);
    cr_assert(g.st.torn_tail);
    cr_assert_eq(g.st.valid_end, lg.start[1]);
    got_free(&g);
    read_all(env_posix(), lg.path, FNUM, true, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND);
    expect_all_but(&g, &lg, 1);
    got_free(&g);
    wlog_free(&lg);
}

/* A marker older than the damage proves nothing: records 0 and 1 synced, 2 and 3 only flushed,
 * record 2 lost (zeros) while 3 survived. */
Test(wal, reordered_unsynced_writes_are_a_torn_tail)
{
    size_t lens[] = {100, 200, 300, 400};
    shale_error err;
    wal_writer *w = NULL;
    wlog lg;
    got g;
    wlog_init(&lg, "wal", 4);
    cr_assert_eq(wal_writer_create(env_posix(), lg.dir, NAME, FNUM, &w, &err), SHALE_OK);
    add_rec(w, &lg, 0, lens[0]);
    wlog_sync(w, &lg);
    add_rec(w, &lg, 1, lens[1]); /* carries a marker for record 0 */
    wlog_sync(w, &lg);
    add_rec(w, &lg, 2, lens[2]); /* carries a marker for record 1 */
    cr_assert_eq(wal_writer_flush(w, &err), SHALE_OK);
    add_rec(w, &lg, 3, lens[3]);
    lg.size = wal_writer_size(w);
    cr_assert_eq(wal_writer_close(w, false, &err), SHALE_OK);
    cr_assert_neq(lg.begin[2], lg.start[2], "record 2 has a marker in front");
    zero_range(lg.path, lg.start[2], (size_t)(lg.begin[3] - lg.start[2]));
    read_all(env_posix(), lg.path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND, "%s", g.err.msg);
    expect_prefix(&g, &lg, 2);
    cr_assert(g.st.torn_tail);
    cr_assert_eq(g.st.valid_end, lg.start[2]); /* the marker survived */
    got_free(&g);
    /* The same damage to record 1, which record 2's marker proves synced: corruption. */
    zero_range(lg.path, lg.start[1] + HDR, lens[1]);
    read_all(env_posix(), lg.path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_CORRUPTION);
    expect_prefix(&g, &lg, 1);
    got_free(&g);
    wlog_free(&lg);
}

/* A record spanning blocks whose FIRST fragment was lost while its LAST persisted (at a block
 * start, where a reader resynchronises): unsynced, so a torn tail. */
Test(wal, lost_first_fragment_of_unsynced_record_is_a_torn_tail)
{
    size_t lens[] = {500, 40000};
    uint64_t offs[4];
    size_t flens[4];
    uint64_t end;
    wlog lg;
    got g;
    wlog_init(&lg, "wal", 2);
    write_log(&lg, lens, 1);
    size_t nf = layout(lg.start[1], lens[1], offs, flens, 4, &end);
    cr_assert_eq(nf, 2);
    zero_range(lg.path, offs[0], HDR + flens[0]);
    read_all(env_posix(), lg.path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND, "%s", g.err.msg);
    expect_prefix(&g, &lg, 1);
    cr_assert_eq(g.st.valid_end, lg.start[1]);
    got_free(&g);
    wlog_free(&lg);
}

/* wal_writer_mark: after a sync no record follows, the marker it writes at once is what proves
 * the last record synced; without it, damage there reads as a torn tail. One append, no sync,
 * nothing when no sync advanced, and no marker for a sync that covered only a marker. */
Test(wal, mark_after_a_final_sync_proves_the_last_record)
{
    size_t lens[] = {100, 200, 300};
    for (int marked = 0; marked < 2; marked++) {
        shale_error err;
        wal_writer *w = NULL;
        env_fault *fe = env_fault_new(env_posix());
        wlog lg;
        got g;
        cr_assert_not_null(fe);
        wlog_init(&lg, "wal", 3);
        cr_assert_eq(wal_writer_create(env_fault_env(fe), lg.dir, NAME, FNUM, &w, &err), SHALE_OK);
        cr_assert_eq(wal_writer_mark(w, &err), SHALE_OK);
        cr_assert_eq(wal_writer_size(w), SEG_HDR, "no sync advanced: no marker");
        for (size_t i = 0; i < 3; i++) {
            add_rec(w, &lg, i, lens[i]);
        }
        wlog_sync(w, &lg);
        uint64_t writes = env_fault_count(fe, ENV_OP_WRITE);
        uint64_t syncs = env_fault_count(fe, ENV_OP_SYNC);
        uint64_t end = wal_writer_size(w);
        if (marked) {
            cr_assert_eq(wal_writer_mark(w, &err), SHALE_OK, "%s", err.msg);
            cr_assert_eq(env_fault_count(fe, ENV_OP_WRITE), writes + 1);
            cr_assert_eq(env_fault_count(fe, ENV_OP_SYNC), syncs);
            cr_assert_gt(wal_writer_size(w), end);
            cr_assert_eq(wal_writer_sync(w, &err), SHALE_OK);
            uint64_t size = wal_writer_size(w);
            cr_assert_eq(wal_writer_mark(w, &err), SHALE_OK);
            cr_assert_eq(wal_writer_size(w), size, "a sync of the marker alone needs none");
        }
        cr_assert_eq(wal_writer_close(w, false, &err), SHALE_OK);
        cr_assert_eq(tu_flip_bit(lg.path, lg.off[2] + HDR + 10, 1), 0);
        read_all(env_posix(), lg.path, FNUM, false, &g);
        expect_prefix(&g, &lg, 2);
        if (marked) {
            cr_assert_eq(g.rc, SHALE_CORRUPTION, "marked: %s", g.err.msg);
        } else {
            cr_assert_eq(g.rc, SHALE_NOT_FOUND, "%s", g.err.msg);
            cr_assert(g.st.torn_tail);
        }
        got_free(&g);
        wlog_free(&lg);
        env_fault_free(fe);
    }
}

/* Hand-made version 2 segments: an open record whose end is missing is judged like damage at its
 * start, and a marker must be well formed. */
Test(wal, sync_marker_rules)
{
    char *dir = tu_tmpdir("wal");
    char *path = tu_path(dir, NAME);
    uint8_t raw[1024];
    uint8_t a[] = {WAL_REC_BATCH, 'a', 'a'};
    uint8_t b[] = {WAL_REC_BATCH, 'b'};
    uint8_t mark[WAL_SYNC_MARK_LEN];
    size_t n;
    uint64_t x;
    got g;

    /* FIRST never ended, then a FULL: unproven, a torn tail at the FIRST. */
    n = put_seg_header(raw, WAL_MAGIC, 2, FNUM);
    x = n;
    n += put_frag(raw + n, WAL_FRAG_FIRST, a, sizeof a);
    n += put_frag(raw + n, WAL_FRAG_FULL, b, sizeof b);
    write_raw(path, raw, n);
    read_all(env_posix(), path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND, "%s", g.err.msg);
    cr_assert_eq(g.n, 0);
    cr_assert_eq(g.st.valid_end, x);
    got_free(&g);

    /* The same with a marker after it announcing the FIRST's bytes synced: corruption. */
    n = put_seg_header(raw, WAL_MAGIC, 2, FNUM);
    n += put_frag(raw + n, WAL_FRAG_FIRST, a, sizeof a);
    mark[0] = WAL_REC_SYNCED;
    coding_put_fixed64(mark + 1, n);
    n += put_frag(raw + n, WAL_FRAG_FULL, mark, sizeof mark);
    n += put_frag(raw + n, WAL_FRAG_FULL, b, sizeof b);
    write_raw(path, raw, n);
    read_all(env_posix(), path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_CORRUPTION);
    cr_assert_not_null(strstr(g.err.msg, "has no end"), "%s", g.err.msg);
    got_free(&g);

    /* Markers are consumed, never returned; one claiming bytes beyond itself is corruption. */
    n = put_seg_header(raw, WAL_MAGIC, 2, FNUM);
    n += put_frag(raw + n, WAL_FRAG_FULL, a, sizeof a);
    coding_put_fixed64(mark + 1, n);
    n += put_frag(raw + n, WAL_FRAG_FULL, mark, sizeof mark);
    n += put_frag(raw + n, WAL_FRAG_FULL, b, sizeof b);
    x = n;
    coding_put_fixed64(mark + 1, n + 1);
    n += put_frag(raw + n, WAL_FRAG_FULL, mark, sizeof mark);
    write_raw(path, raw, n);
    read_all(env_posix(), path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_CORRUPTION);
    cr_assert_eq(g.n, 2);
    cr_assert_eq(g.len[0], sizeof a);
    cr_assert_eq(g.len[1], sizeof b);
    char want[64];
    snprintf(want, sizeof want, "@%" PRIu64 ": bad sync marker", x);
    cr_assert_not_null(strstr(g.err.msg, want), "%s", g.err.msg);
    got_free(&g);
    read_all(env_posix(), path, FNUM, true, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND);
    cr_assert_eq(g.n, 2);
    cr_assert_eq(g.st.salvaged_records, 1);
    got_free(&g);

    tu_rm_rf(dir);
    free(dir);
    free(path);
}

/* Fragments in the wrong order, hand-made in version 1 segments (no sync markers: any valid
 * fragment after damage means corruption): each is an invalid fragment. */
Test(wal, fragment_order)
{
    char *dir = tu_tmpdir("wal");
    char *path = tu_path(dir, NAME);
    uint8_t raw[1024];
    uint8_t a[] = {WAL_REC_BATCH, 'a', 'a'};
    uint8_t b[] = {WAL_REC_BATCH, 'b'};
    size_t n;
    uint64_t x;
    char want[128];
    got g;

    /* FIRST then FULL: the FIRST never ends, a valid fragment follows: corruption. */
    n = put_seg_header(raw, WAL_MAGIC, 1, FNUM);
    n += put_frag(raw + n, WAL_FRAG_FIRST, a, sizeof a);
    x = n;
    n += put_frag(raw + n, WAL_FRAG_FULL, b, sizeof b);
    write_raw(path, raw, n);
    read_all(env_posix(), path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_CORRUPTION);
    snprintf(want, sizeof want, "@%" PRIu64 ":", x);
    cr_assert_not_null(strstr(g.err.msg, want), "%s", g.err.msg);
    got_free(&g);
    read_all(env_posix(), path, FNUM, true, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.len[0], sizeof b);
    cr_assert_eq(g.off[0], x);
    cr_assert_eq(g.st.salvaged_records, 1);
    got_free(&g);

    /* FIRST, then a second FIRST and its LAST: corruption at the second FIRST; salvage keeps
     * the second record. */
    n = put_seg_header(raw, WAL_MAGIC, 1, FNUM);
    n += put_frag(raw + n, WAL_FRAG_FIRST, a, sizeof a);
    x = n;
    n += put_frag(raw + n, WAL_FRAG_FIRST, b, sizeof b);
    n += put_frag(raw + n, WAL_FRAG_LAST, a, sizeof a);
    write_raw(path, raw, n);
    read_all(env_posix(), path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_CORRUPTION);
    snprintf(want, sizeof want, "%s @%" PRIu64 ":", path, x);
    cr_assert_not_null(strstr(g.err.msg, want), "%s", g.err.msg);
    got_free(&g);
    read_all(env_posix(), path, FNUM, true, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.off[0], x);
    cr_assert_eq(g.len[0], sizeof a + sizeof b);
    cr_assert_eq(g.st.salvaged_records, 1);
    cr_assert_eq(g.st.salvaged_bytes, x - SEG_HDR);
    got_free(&g);

    /* FIRST, then a second FIRST the file ends in: nothing valid follows, a torn tail. */
    n = put_seg_header(raw, WAL_MAGIC, 1, FNUM);
    n += put_frag(raw + n, WAL_FRAG_FIRST, a, sizeof a);
    n += put_frag(raw + n, WAL_FRAG_FIRST, b, sizeof b);
    write_raw(path, raw, n);
    read_all(env_posix(), path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND, "%s", g.err.msg);
    cr_assert_eq(g.n, 0);
    cr_assert(g.st.torn_tail);
    cr_assert_eq(g.st.valid_end, SEG_HDR);
    got_free(&g);

    /* An orphan LAST, then a FULL: corruption at the orphan. */
    n = put_seg_header(raw, WAL_MAGIC, 1, FNUM);
    x = n;
    n += put_frag(raw + n, WAL_FRAG_LAST, a, sizeof a);
    n += put_frag(raw + n, WAL_FRAG_FULL, b, sizeof b);
    write_raw(path, raw, n);
    read_all(env_posix(), path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_CORRUPTION);
    snprintf(want, sizeof want, "%s @%" PRIu64 ":", path, x);
    cr_assert_not_null(strstr(g.err.msg, want), "%s", g.err.msg);
    got_free(&g);
    read_all(env_posix(), path, FNUM, true, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.len[0], sizeof b);
    got_free(&g);

    /* A FULL, then an orphan MIDDLE that ends the file: nothing valid after it, torn. */
    n = put_seg_header(raw, WAL_MAGIC, 1, FNUM);
    n += put_frag(raw + n, WAL_FRAG_FULL, b, sizeof b);
    x = n;
    n += put_frag(raw + n, WAL_FRAG_MIDDLE, a, sizeof a);
    write_raw(path, raw, n);
    read_all(env_posix(), path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND, "%s", g.err.msg);
    cr_assert_eq(g.n, 1);
    cr_assert(g.st.torn_tail);
    cr_assert_eq(g.st.valid_end, x);
    got_free(&g);

    /* FIRST + MIDDLE + LAST, then FULL, then a FIRST that the file ends in: torn. */
    n = put_seg_header(raw, WAL_MAGIC, 1, FNUM);
    n += put_frag(raw + n, WAL_FRAG_FIRST, a, sizeof a);
    n += put_frag(raw + n, WAL_FRAG_MIDDLE, b, sizeof b);
    n += put_frag(raw + n, WAL_FRAG_LAST, a, 1);
    n += put_frag(raw + n, WAL_FRAG_FULL, b, sizeof b);
    x = n;
    n += put_frag(raw + n, WAL_FRAG_FIRST, a, sizeof a);
    n += put_frag(raw + n, WAL_FRAG_MIDDLE, a, sizeof a);
    write_raw(path, raw, n);
    read_all(env_posix(), path, FNUM, false, &g);
    cr_assert_eq(g.rc, SHALE_NOT_FOUND, "%s", g.err.msg);
    cr_assert_eq(g.n, 2);
    cr_assert_eq(g.len[0], sizeof a + sizeof b + 1);
    cr_assert(memcmp(g.data[0], "\002aa\002b\002", 6) == 0);
    cr_assert_eq(g.off[0], SEG_HDR);
    cr_assert(g.st.torn_tail);
    cr_assert_eq(g.st.valid_end, x);
    got_free(&g);

    tu_rm_rf(dir);
    free(dir);
    free(path);
}

/* Reads from a file larger than one read window fail with SHALE_IO, never the end. */
Test(wal, read_error_is_io)
{
    size_t lens[] = {300000, 300000, 100};
    wlog lg;
    got g;
    env_fault *fe = env_fault_new(env_posix());
    cr_assert_not_null(fe);
    wlog_init(&lg, "wal", 3);
    write_log(&lg, lens, 1);

    env_fault_fail_nth(fe, ENV_OP_READ, 1, EIO, false);
    read_all(env_fault_env(fe), lg.path, FNUM, false, &g);
    cr_assert_eq(g.open_rc, SHALE_IO, "%d %s", g.open_rc, g.err.msg);
    got_free(&g);

    env_fault_fail_nth(fe, ENV_OP_READ, 2, EIO, false);
    read_all(env_fault_env(fe), lg.path, FNUM, false, &g);
    cr_assert_eq(g.open_rc, SHALE_OK);
    cr_assert_eq(g.rc, SHALE_IO, "%d %s", g.rc, g.err.msg);
    cr_assert_eq(g.err.sys_errno, EIO);
    got_free(&g);

    read_all(env_fault_env(fe), lg.path, FNUM, false, &g);
    expect_clean(&g, &lg);
    got_free(&g);
    wlog_free(&lg);
    env_fault_free(fe);
}

/* ---- writer failures -------------------------------------------------------------------- */

static uint8_t *rec_bytes(size_t i, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    cr_assert_not_null(b);
    gen_rec(i, len, b);
    return b;
}

/* A failed append (errno, short or not) is SHALE_IO, the file is cut back, the bytes stay
 * buffered, and a later flush writes them after the earlier records with nothing between. */
static void check_failed_append(int sys_errno, bool short_write, bool add_more)
{
    wlog lg;
    got g;
    shale_error err;
    wal_writer *w = NULL;
    env_fault *fe = env_fault_new(env_posix());
    cr_assert_not_null(fe);
    wlog_init(&lg, "wal", 4);

    cr_assert_eq(wal_writer_create(env_fault_env(fe), lg.dir, NAME, FNUM, &w, &err), SHALE_OK, "%s",
                 err.msg);
    add_rec(w, &lg, 0, 100);
    cr_assert_eq(wal_writer_flush(w, &err), SHALE_OK);
    uint64_t flushed = wal_writer_flushed_size(w);

    add_rec(w, &lg, 1, 50000);
    uint64_t buffered = wal_writer_buffered_bytes(w);
    env_fault_fail_nth(fe, ENV_OP_WRITE, 1, sys_errno, short_write);
    cr_assert_eq(wal_writer_flush(w, &err), SHALE_IO);
    cr_assert_eq(err.sys_errno, sys_errno);
    cr_assert_eq(wal_writer_flushed_size(w), flushed);
    cr_assert_eq(wal_writer_buffered_bytes(w), buffered);
    cr_assert_not(wal_writer_broken(w, NULL));
    cr_assert_eq((uint64_t)tu_file_size(lg.path), flushed);

    /* Meanwhile a reader sees only the earlier record, cleanly. */
    lg.n = 1;
    lg.size = flushed;
    read_all(env_posix(), lg.path, FNUM, false, &g);
    expect_clean(&g, &lg);
    got_free(&g);

    size_t total = 2;
    if (add_more) {
        add_rec(w, &lg, 2, 10);
        add_rec(w, &lg, 3, 40000);
        total = 4;
    }
    cr_assert_eq(wal_writer_flush(w, &err), SHALE_OK, "%s", err.msg);
    lg.n = total;
    lg.size = wal_writer_size(w);
    cr_assert_eq(wal_writer_close(w, true, &err), SHALE_OK, "%s", err.msg);
    read_all(env_posix(), lg.path, FNUM, false, &g);
    expect_clean(&g, &lg);
    got_free(&g);
    wlog_free(&lg);
    env_fault_free(fe);
}

Test(wal, failed_append_eio)
{
    check_failed_append(EIO, false, false);
    check_failed_append(EIO, false, true);
}

Test(wal, failed_append_enospc)
{
    check_failed_append(ENOSPC, false, false);
    check_failed_append(ENOSPC, false, true);
}

Test(wal, failed_append_short_write)
{
    check_failed_append(EIO, true, false);
    check_failed_append(ENOSPC, true, true);
}

/* discard_unflushed after a failed flush rewinds the framing: later records land cleanly,
 * including across block boundaries. */
Test(wal, discard_unflushed_then_add)
{
    wlog lg;
    got g;
    shale_error err;
    wal_writer *w = NULL;
    env_fault *fe = env_fault_new(env_posix());
    cr_assert_not_null(fe);
    wlog_init(&lg, "wal", 8);

    cr_assert_eq(wal_writer_create(env_fault_env(fe), lg.dir, NAME, FNUM, &w, &err), SHALE_OK);
    add_rec(w, &lg, 0, 30000);
    cr_assert_eq(wal_writer_flush(w, &err), SHALE_OK);
    uint64_t flushed = wal_writer_flushed_size(w);

    /* Buffered and failed; then discarded. */
    uint8_t *junk = rec_bytes(99, 45000);
    cr_assert_eq(wal_writer_add(w, junk, 45000, &err), SHALE_OK);
    env_fault_fail_nth(fe, ENV_OP_WRITE, 1, EIO, true);
    cr_assert_eq(wal_writer_flush(w, &err), SHALE_IO);
    wal_writer_discard_unflushed(w);
    cr_assert_eq(wal_writer_size(w), flushed);
    cr_assert_eq(wal_writer_buffered_bytes(w), 0);

    /* Buffered, not flushed, discarded: nothing was written. */
    cr_assert_eq(wal_writer_add(w, junk, 2770, &err), SHALE_OK);
    wal_writer_discard_unflushed(w);
    cr_assert_eq(wal_writer_size(w), flushed);
    free(junk);

    /* Then records that reach exactly the old framing positions again. */
    add_rec(w, &lg, 1, 2770 - HDR); /* leaves the block nearly full: padding next */
    add_rec(w, &lg, 2, 45000);
    cr_assert_eq(wal_writer_flush(w, &err), SHALE_OK, "%s", err.msg);
    add_rec(w, &lg, 3, 5);
    wal_writer_discard_unflushed(w);
    lg.n = 3;
    lg.size = wal_writer_size(w);
    cr_assert_eq(wal_writer_close(w, true, &err), SHALE_OK, "%s", err.msg);
    read_all(env_posix(), lg.path, FNUM, false, &g);
    expect_clean(&g, &lg);
    got_free(&g);
    wlog_free(&lg);
    env_fault_free(fe);
}

static void expect_sticky(wal_writer *w, const shale_error *first)
{
    shale_error err;
    uint8_t b = WAL_REC_BATCH;
    cr_assert(wal_writer_broken(w, &err));
    cr_assert_eq(err.code, first->code);
    cr_assert_str_eq(err.msg, first->msg);
    cr_assert_eq(wal_writer_add(w, &b, 1, &err), first->code);
    cr_assert_str_eq(err.msg, first->msg);
    cr_assert_eq(wal_writer_flush(w, &err), first->code);
    cr_assert_str_eq(err.msg, first->msg);
    cr_assert_eq(wal_writer_sync(w, &err), first->code);
    cr_assert_str_eq(err.msg, first->msg);
    cr_assert_eq(err.sys_errno, first->sys_errno);
}

Test(wal, failed_sync_breaks_the_writer)
{
    wlog lg;
    shale_error first;
    shale_error err;
    wal_writer *w = NULL;
    env_fault *fe = env_fault_new(env_posix());
    cr_assert_not_null(fe);
    wlog_init(&lg, "wal", 2);

    cr_assert_eq(wal_writer_create(env_fault_env(fe), lg.dir, NAME, FNUM, &w, &err), SHALE_OK);
    add_rec(w, &lg, 0, 100);
    env_fault_fail_nth(fe, ENV_OP_SYNC, 1, EIO, false);
    cr_assert_eq(wal_writer_sync(w, &first), SHALE_IO);
    cr_assert_eq(first.sys_errno, EIO);
    env_fault_clear(fe);
    expect_sticky(w, &first);
    uint64_t syncs = env_fault_count(fe, ENV_OP_SYNC);
    expect_sticky(w, &first);
    cr_assert_eq(env_fault_count(fe, ENV_OP_SYNC), syncs, "a broken writer must not sync again");
    cr_assert_eq(wal_writer_close(w, true, &err), SHALE_IO);
    wlog_free(&lg);
    env_fault_free(fe);
}

/* A failed append whose truncate also fails leaves the writer broken. */
Test(wal, failed_truncate_breaks_the_writer)
{
    wlog lg;
    shale_error first;
    shale_error err;
    wal_writer *w = NULL;
    env_fault *fe = env_fault_new(env_posix());
    cr_assert_not_null(fe);
    wlog_init(&lg, "wal", 2);

    cr_assert_eq(wal_writer_create(env_fault_env(fe), lg.dir, NAME, FNUM, &w, &err), SHALE_OK);
    add_rec(w, &lg, 0, 100);
    env_fault_fail_nth(fe, ENV_OP_WRITE, 1, ENOSPC, true);
    env_fault_fail_nth(fe, ENV_OP_TRUNCATE, 1, EIO, false);
    cr_assert_eq(wal_writer_flush(w, &first), SHALE_IO);
    cr_assert(wal_writer_broken(w, NULL));
    env_fault_clear(fe);
    expect_sticky(w, &first);
    cr_assert_eq(wal_writer_close(w, false, &err), SHALE_IO);
    wlog_free(&lg);
    env_fault_free(fe);
}

/* Sync skips the fsync when nothing new was flushed; a flush of nothing writes nothing. */
Test(wal, idle_sync_and_flush_do_no_io)
{
    wlog lg;
    shale_error err;
    wal_writer *w = NULL;
    env_fault *fe = env_fault_new(env_posix());
    cr_assert_not_null(fe);
    wlog_init(&lg, "wal", 2);
    cr_assert_eq(wal_writer_create(env_fault_env(fe), lg.dir, NAME, FNUM, &w, &err), SHALE_OK);
    uint64_t writes = env_fault_count(fe, ENV_OP_WRITE);
    uint64_t syncs = env_fault_count(fe, ENV_OP_SYNC);
    cr_assert_eq(syncs, 1);
    cr_assert_eq(env_fault_count(fe, ENV_OP_SYNC_DIR), 1);
    cr_assert_eq(wal_writer_flush(w, &err), SHALE_OK);
    cr_assert_eq(wal_writer_sync(w, &err), SHALE_OK);
    cr_assert_eq(env_fault_count(fe, ENV_OP_WRITE), writes);
    cr_assert_eq(env_fault_count(fe, ENV_OP_SYNC), syncs);
    add_rec(w, &lg, 0, 10);
    add_rec(w, &lg, 1, 70000);
    cr_assert_eq(wal_writer_sync(w, &err), SHALE_OK);
    cr_assert_eq(env_fault_count(fe, ENV_OP_WRITE), writes + 1, "one append per flush");
    cr_assert_eq(env_fault_count(fe, ENV_OP_SYNC), syncs + 1);
    cr_assert_eq(wal_writer_close(w, true, &err), SHALE_OK);
    cr_assert_eq(env_fault_count(fe, ENV_OP_SYNC), syncs + 1);
    wlog_free(&lg);
    env_fault_free(fe);
}

/* Every failing step of create fails it and leaves no segment behind. */
Test(wal, create_failures)
{
    env_op ops[] = {ENV_OP_OPEN, ENV_OP_WRITE, ENV_OP_SYNC, ENV_OP_SYNC_DIR};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        char *dir = tu_tmpdir("wal");
        char *path = tu_path(dir, NAME);
        shale_error err;
        wal_writer *w = NULL;
        env_fault *fe = env_fault_new(env_posix());
        cr_assert_not_null(fe);
        env_fault_fail_nth(fe, ops[i], 1, EIO, false);
        cr_assert_eq(wal_writer_create(env_fault_env(fe), dir, NAME, FNUM, &w, &err), SHALE_IO,
                     "op %d", (int)ops[i]);
        cr_assert_null(w);
        cr_assert_eq(tu_file_size(path), -1, "op %d left a segment", (int)ops[i]);
        env_fault_free(fe);
        tu_rm_rf(dir);
        free(dir);
        free(path);
    }
}

/* ---- power loss ------------------------------------------------------------------------- */

Test(wal, power_loss_drop_all)
{
    wlog lg;
    got g;
    shale_error err;
    wal_writer *w = NULL;
    env_fault *fe = env_fault_new(env_posix());
    cr_assert_not_null(fe);
    wlog_init(&lg, "wal", 40);

    cr_assert_eq(wal_writer_create(env_fault_env(fe), lg.dir, NAME, FNUM, &w, &err), SHALE_OK);
    for (size_t i = 0; i < 20; i++) {
        add_rec(w, &lg, i, i == 7 ? 50000 : 100 + i);
        if (i % 3 == 0) {
            cr_assert_eq(wal_writer_flush(w, &err), SHALE_OK);
        }
    }
    wlog_sync(w, &lg);
    uint64_t synced = wal_writer_size(w);
    for (size_t i = 20; i < 40; i++) {
        add_rec(w, &lg, i, i == 30 ? 60000 : 200 + i);
        if (i % 4 == 0) {
            cr_assert_eq(wal_writer_flush(w, &err), SHALE_OK);
        }
    }
    env_fault_crash(fe);
    cr_assert_neq(wal_writer_close(w, true, &err), SHALE_OK);
    cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_DROP_ALL, 1, &err), SHALE_OK, "%s", err.msg);

    lg.n = 20;
    lg.size = synced;
    read_all(env_posix(), lg.path, FNUM, false, &g);
    expect_clean(&g, &lg);
    got_free(&g);
    wlog_free(&lg);
    env_fault_free(fe);
}

/* A power loss that keeps a random prefix of the unsynced bytes: never corruption, always a
 * prefix of the written records that contains every synced one. */
Test(wal, power_loss_keep_random_many_seeds)
{
    enum { SEEDS = 120, MAXREC = 60 };
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        wlog lg;
        got g;
        shale_error err;
        wal_writer *w = NULL;
        tu_rng rng;
        env_fault *fe = env_fault_new(env_posix());
        cr_assert_not_null(fe);
        tu_rng_seed(&rng, seed);
        wlog_init(&lg, "wal", MAXREC);

        cr_assert_eq(wal_writer_create(env_fault_env(fe), lg.dir, NAME, FNUM, &w, &err), SHALE_OK);
        size_t n = 1 + (size_t)tu_rng_below(&rng, MAXREC);
        size_t synced_n = 0;
        for (size_t i = 0; i < n; i++) {
            size_t len = tu_rng_below(&rng, 6) == 0 ? (size_t)tu_rng_below(&rng, 80000)
                                                    : (size_t)tu_rng_below(&rng, 500);
            add_rec(w, &lg, i, len);
            uint64_t r = tu_rng_below(&rng, 12);
            if (r == 0) {
                wlog_sync(w, &lg);
                synced_n = i + 1;
            } else if (r < 6) {
                cr_assert_eq(wal_writer_flush(w, &err), SHALE_OK);
            }
        }
        if (tu_rng_below(&rng, 2)) {
            cr_assert_eq(wal_writer_flush(w, &err), SHALE_OK);
        }
        uint64_t written = wal_writer_size(w);
        env_fault_crash(fe);
        (void)wal_writer_close(w, false, &err);
        cr_assert_eq(env_fault_drop_unsynced(fe, ENV_FAULT_KEEP_RANDOM, seed, &err), SHALE_OK, "%s",
                     err.msg);

        read_all(env_posix(), lg.path, FNUM, false, &g);
        cr_assert_eq(g.open_rc, SHALE_OK, "seed %" PRIu64 ": %s", seed, g.err.msg);
        cr_assert_eq(g.rc, SHALE_NOT_FOUND, "seed %" PRIu64 ": rc %d %s", seed, g.rc, g.err.msg);
        cr_assert(g.n >= synced_n && g.n <= n, "seed %" PRIu64 ": %zu records, %zu synced", seed,
                  g.n, synced_n);
        expect_prefix(&g, &lg, g.n);
        /* A torn record's sync marker may have survived it, or not. */
        cr_assert(g.n < n ? g.st.valid_end == lg.start[g.n] || g.st.valid_end == lg.begin[g.n]
                          : g.st.valid_end == written,
                  "seed %" PRIu64, seed);
        cr_assert_eq(g.st.torn_tail, g.st.file_size > g.st.valid_end, "seed %" PRIu64, seed);
        got_free(&g);
        wlog_free(&lg);
        env_fault_free(fe);
    }
}

/* ---- random damage ---------------------------------------------------------------------- */

/* Random bit flips, overwritten runs and cuts: the reader never crashes, ends with the end or
 * corruption, and every record it returns is byte for byte the one written at that offset. */
Test(wal, random_damage_never_yields_a_wrong_record)
{
    size_t lens[] = {10, 3000, 40000, 1, 200, 70000, 0, 500, 33000, 90};
    size_t n = sizeof lens / sizeof lens[0];
    wlog lg;
    tu_rng rng;
    size_t size;
    wlog_init(&lg, "wal", n);
    write_log(&lg, lens, 3);
    uint8_t *orig = read_raw(lg.path, &size);
    tu_rng_seed(&rng, 7);
    for (int iter = 0; iter < 150; iter++) {
        uint8_t *raw = malloc(size);
        cr_assert_not_null(raw);
        memcpy(raw, orig, size);
        size_t len = size;
        int kind = (int)tu_rng_below(&rng, 3);
        for (int k = 0; k < 1 + (int)tu_rng_below(&rng, 3); k++) {
            size_t at = SEG_HDR + (size_t)tu_rng_below(&rng, size - SEG_HDR);
            if (kind == 0) {
                raw[at] ^= (uint8_t)(1u << tu_rng_below(&rng, 8));
            } else {
                size_t run = 1 + (size_t)tu_rng_below(&rng, 64);
                for (size_t j = at; j < at + run && j < size; j++) {
                    raw[j] = kind == 1 ? 0 : (uint8_t)tu_rng_next(&rng);
                }
            }
        }
        if (tu_rng_below(&rng, 3) == 0) {
            len = SEG_HDR + (size_t)tu_rng_below(&rng, size - SEG_HDR);
        }
        write_raw(lg.path, raw, len);
        for (int salvage = 0; salvage < 2; salvage++) {
            got g;
            read_all(env_posix(), lg.path, FNUM, salvage, &g);
            cr_assert_eq(g.open_rc, SHALE_OK, "iter %d: %s", iter, g.err.msg);
            cr_assert(g.rc == SHALE_NOT_FOUND || (!salvage && g.rc == SHALE_CORRUPTION),
                      "iter %d salvage %d: rc %d %s", iter, salvage, g.rc, g.err.msg);
            size_t next = 0;
            for (size_t j = 0; j < g.n; j++) {
                while (next < n && lg.off[next] != g.off[j]) {
                    next++;
                }
                cr_assert(next < n, "iter %d: record @%" PRIu64 " was never written", iter,
                          g.off[j]);
                size_t ids[1] = {next};
                got one = {.n = 1, .data = &g.data[j], .len = &g.len[j], .off = &g.off[j]};
                expect_records(&one, &lg, ids, 1);
                next++;
            }
            cr_assert(g.st.valid_end <= len);
            got_free(&g);
        }
        free(raw);
    }
    free(orig);
    wlog_free(&lg);
}
