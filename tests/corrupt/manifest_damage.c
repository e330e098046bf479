/*
 * manifest_damage: a damaged (not torn) final record of the manifest.
 *
 * Recovery cannot tell damage in the manifest's final record from a torn write (nothing valid
 * follows either), so it ignores that record and recovers the state before it. The engine makes
 * that harmless by keeping every file the state before the last edit needs until a later edit is
 * durable (src/lsm/version.h). These tests damage exactly the final record, found by walking the
 * manifest's WAL framing (src/wal/wal_format.h), in its payload and in its fragment header (the
 * CRC, the type), when that record is:
 *   - a flush's edit (copied while open, as a crash right after the flush leaves it): the flush
 *     already deleted nothing the state before it needs, so its data comes back from the kept
 *     logs, and its unlisted table is deleted as a leftover;
 *   - a compaction's edit: the inputs it removed are still on disk, so the state before it opens;
 *   - the empty edit a clean close appends to release the kept files.
 * Each time: the database opens, every acknowledged key reads back with its last value, `shale
 * check` calls the copy clean beforehand, and after a further write, flush and reopen the
 * directory holds exactly the live files again (tu_assert_db_files).
 * A manifest that is a single snapshot (a checkpoint's) has no earlier state: damage to that
 * record is SHALE_CORRUPTION at open, never an empty database.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale.h"

#include "testutil.h"
#include "wal/wal_format.h"

#define PER_BATCH 150u

/* The value of key k written in round r: long enough that a batch makes a table of its own. */
static shale_slice value_of(char *buf, size_t cap, uint32_t k, uint32_t r)
{
    int n = snprintf(buf, cap, "r%u-k%u-", r, k);
    size_t len = (size_t)n;
    while (len < 200 && len < cap) {
        buf[len] = (char)('a' + (k + len) % 26);
        len++;
    }
    return (shale_slice){buf, len};
}

typedef struct fixture {
    char *root, *dir;
    shale_options o;
    uint32_t nkeys;
    uint32_t *round; /* last round written per key (0: never) */
} fixture;

static void fx_init(fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    fx->root = tu_tmpdir("manifest-damage");
    fx->dir = tu_path(fx->root, "db");
    fx->o = tu_small_lsm_options(8); /* no compaction starts on its own */
    fx->o.create_if_missing = true;
    fx->o.durability = SHALE_DURABILITY_FULL;
    fx->o.ttl_sweep_interval_ms = 3600000;
    fx->o.flush_idle_ms = 3600000;
    fx->nkeys = 4 * PER_BATCH;
    fx->round = calloc(fx->nkeys, sizeof *fx->round);
    cr_assert_not_null(fx->round);
}

static void fx_free(fixture *fx)
{
    tu_rm_rf(fx->root);
    free(fx->round);
    free(fx->dir);
    free(fx->root);
}

static shale_db *fx_open(fixture *fx)
{
    shale_db *db = NULL;
    shale_error err = {0};
    shale_code rc = shale_open(fx->dir, &fx->o, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "open: %s (%s)", shale_strerror(rc), err.msg);
    return db;
}

static void fx_close(shale_db *db)
{
    shale_error err = {0};
    cr_assert_eq(shale_close(db, &err), SHALE_OK, "close: %s", err.msg);
}

/* Writes keys [first, first + n) for round r. */
static void fx_write(fixture *fx, shale_db *db, uint32_t first, uint32_t n, uint32_t r)
{
    char kb[17], vb[256];
    shale_error err = {0};
    for (uint32_t k = first; k < first + n; k++) {
        cr_assert_eq(shale_put(db, NULL, tu_key(kb, k), value_of(vb, sizeof vb, k, r), &err),
                     SHALE_OK, "put %u: %s", k, err.msg);
        fx->round[k] = r;
    }
}

static void fx_flush(shale_db *db)
{
    shale_error err = {0};
    cr_assert_eq(shale_flush(db, &err), SHALE_OK, "flush: %s", err.msg);
}

/* Every key reads back with the value of its last round, or is absent if never written. */
static void fx_verify(const fixture *fx, shale_db *db, const char *ctx)
{
    char kb[17], vb[256];
    shale_buf got = {0};
    shale_error err = {0};
    for (uint32_t k = 0; k < fx->nkeys; k++) {
        shale_code rc = shale_get(db, NULL, tu_key(kb, k), &got, &err);
        if (fx->round[k] == 0) {
            cr_assert_eq(rc, SHALE_NOT_FOUND, "%s: key %u: %s", ctx, k, shale_strerror(rc));
            continue;
        }
        cr_assert_eq(rc, SHALE_OK, "%s: key %u (round %u) lost: %s (%s)", ctx, k, fx->round[k],
                     shale_strerror(rc), err.msg);
        shale_slice want = value_of(vb, sizeof vb, k, fx->round[k]);
        cr_assert(got.len == want.len && memcmp(got.data, want.data, want.len) == 0,
                  "%s: key %u: wrong value (want round %u)", ctx, k, fx->round[k]);
    }
    shale_buf_free(&got);
}

/* The path of the manifest CURRENT names (malloc'ed). */
static char *manifest_path(const char *dir)
{
    char *cur = tu_path(dir, "CURRENT");
    FILE *f = fopen(cur, "r");
    char line[64] = {0};
    cr_assert_not_null(f, "%s", cur);
    cr_assert_not_null(fgets(line, sizeof line, f));
    fclose(f);
    free(cur);
    line[strcspn(line, "\n")] = '\0';
    cr_assert(strncmp(line, "MANIFEST-", 9) == 0, "CURRENT: %s", line);
    return tu_path(dir, line);
}

/* Where the manifest's final logical record starts, and its payload length; the test needs it
 * to be one FULL fragment (small edits always are). *records counts the logical records, the
 * segment header included. */
static void last_record(const char *path, uint64_t *off, uint32_t *len, unsigned *records)
{
    int64_t size = tu_file_size(path);
    cr_assert_gt(size, 0, "%s", path);
    unsigned char *data = malloc((size_t)size);
    FILE *f = fopen(path, "rb");
    cr_assert(data != NULL && f != NULL);
    cr_assert_eq(fread(data, 1, (size_t)size, f), (size_t)size);
    fclose(f);

    uint64_t pos = 0, start = 0;
    uint32_t plen = 0;
    int type = 0;
    *records = 0;
    while (pos + WAL_HEADER_SIZE <= (uint64_t)size) {
        uint64_t in_block = WAL_BLOCK_SIZE - pos % WAL_BLOCK_SIZE;
        if (in_block < WAL_HEADER_SIZE) {
            pos += in_block; /* block padding */
            continue;
        }
        uint32_t n = (uint32_t)data[pos + 4] | (uint32_t)data[pos + 5] << 8;
        int t = data[pos + 6];
        cr_assert(
            t >= WAL_FRAG_FULL && t <= WAL_FRAG_LAST && pos + WAL_HEADER_SIZE + n <= (uint64_t)size,
            "%s @%" PRIu64 ": not a fragment (the manifest should be intact here)", path, pos);
        if (t == WAL_FRAG_FULL || t == WAL_FRAG_FIRST) {
            start = pos;
            plen = n;
            type = t;
            (*records)++;
        }
        pos += WAL_HEADER_SIZE + n;
    }
    cr_assert_eq(pos, (uint64_t)size, "%s: trailing bytes", path);
    cr_assert_eq(type, WAL_FRAG_FULL, "%s: the last record spans blocks", path);
    free(data);
    *off = start;
    *len = plen;
}

typedef enum where {
    IN_PAYLOAD, /* a bit in the middle of the edit */
    IN_CRC,     /* a bit of the fragment's checksum */
    IN_TYPE,    /* the fragment type byte (FULL becomes something else) */
} where;

static const char *where_name(where w)
{
    return w == IN_PAYLOAD ? "payload" : w == IN_CRC ? "crc" : "type";
}

/* Flips one bit of the final record of dir's manifest (which must hold at least min_records
 * records, its segment header included); returns how many records it holds. */
static unsigned damage_last_record(const char *dir, where w, unsigned min_records)
{
    char *path = manifest_path(dir);
    uint64_t off;
    uint32_t len;
    unsigned records;
    last_record(path, &off, &len, &records);
    cr_assert_geq(records, min_records, "%s: %u records", path, records);
    uint64_t at = w == IN_PAYLOAD ? off + WAL_HEADER_SIZE + len / 2
                  : w == IN_CRC   ? off + 1
                                  : off + 6;
    cr_assert_eq(tu_flip_bit(path, at, w == IN_TYPE ? 2 : 3), 0, "flip %s @%" PRIu64, path, at);
    free(path);
    return records;
}

/* `shale check` must call the damaged copy clean: the damage is indistinguishable from a torn
 * write, and the state before it is whole. Skipped when $SHALE_BIN is not set. */
static void check_clean(const char *dir, const char *ctx)
{
    const char *args[] = {"check", dir, NULL};
    char *out = NULL;
    int status = tu_run_shale(args, &out);
    if (status >= 0) {
        cr_assert_eq(status, 0, "%s: shale check exit %d:\n%s", ctx, status, out);
        cr_assert_not_null(strstr(out, "torn final record"), "%s: no note:\n%s", ctx, out);
    }
    free(out);
}

/* After the damaged reopen: a further write, flush and close, and a clean reopen, leave exactly
 * the live files, and the data stays right. */
static void settle_and_recheck(fixture *fx, shale_db *db, const char *ctx)
{
    tu_assert_db_files(db, fx->dir, ctx);
    fx_write(fx, db, 0, 10, 90);
    fx_flush(db);
    tu_assert_db_files(db, fx->dir, ctx);
    fx_verify(fx, db, ctx);
    fx_close(db);
    db = fx_open(fx);
    fx_verify(fx, db, ctx);
    tu_assert_db_files(db, fx->dir, ctx);
    fx_close(db);
}

/* Damages the final record of the closed database (which must hold at least min_records), then
 * checks it, reopens it, compares every acknowledged key and settles it; frees the fixture. */
static void damage_reopen_verify(fixture *fx, where w, unsigned min_records, const char *ctx)
{
    damage_last_record(fx->dir, w, min_records);
    check_clean(fx->dir, ctx);
    shale_db *db = fx_open(fx);
    fx_verify(fx, db, ctx);
    settle_and_recheck(fx, db, ctx);
    fx_free(fx);
}

/* A flush's edit is the manifest's final record: a crash right after the flush, then damage. */
static void flush_edit_damaged(where w)
{
    fixture fx;
    char ctx[64];
    fx_init(&fx);
    snprintf(ctx, sizeof ctx, "flush edit, %s", where_name(w));

    shale_db *db = fx_open(&fx);
    fx_write(&fx, db, 0, PER_BATCH, 1);
    fx_flush(db); /* the first edit of the session: a new manifest (snapshot + edit) */
    fx_write(&fx, db, PER_BATCH, PER_BATCH, 2);
    fx_write(&fx, db, 0, PER_BATCH / 3, 3); /* overwrites of flushed keys */
    fx_flush(db);                           /* the edit to damage: it covers round 2 and 3's logs */
    fx_write(&fx, db, 2 * PER_BATCH, PER_BATCH / 2, 4); /* in the newest log only */
    tu_close_as_crash(db, fx.dir);

    damage_reopen_verify(&fx, w, 3, ctx);
}

Test(manifest_damage, flush_edit_payload)
{
    flush_edit_damaged(IN_PAYLOAD);
}

Test(manifest_damage, flush_edit_crc)
{
    flush_edit_damaged(IN_CRC);
}

Test(manifest_damage, flush_edit_type)
{
    flush_edit_damaged(IN_TYPE);
}

/* A compaction's edit is the final record: its inputs are kept, so the state before it opens. */
static void compaction_edit_damaged(where w)
{
    fixture fx;
    char ctx[64];
    shale_error err = {0};
    fx_init(&fx);
    snprintf(ctx, sizeof ctx, "compaction edit, %s", where_name(w));

    shale_db *db = fx_open(&fx);
    for (uint32_t r = 1; r <= 4; r++) {
        fx_write(&fx, db, (r - 1) * (PER_BATCH / 2), PER_BATCH, r); /* overlapping tables */
        fx_flush(db);
    }
    cr_assert_eq(shale_compact(db, &err), SHALE_OK, "compact: %s", err.msg);
    shale_stats st;
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK);
    cr_assert_eq(st.level_tables[0], 0, "everything compacted out of level 0");
    tu_close_as_crash(db, fx.dir); /* the compaction's edit is the last record */

    damage_reopen_verify(&fx, w, 3, ctx);
}

Test(manifest_damage, compaction_edit_payload)
{
    compaction_edit_damaged(IN_PAYLOAD);
}

Test(manifest_damage, compaction_edit_crc)
{
    compaction_edit_damaged(IN_CRC);
}

/* A clean close flushes, then appends an empty edit that releases the files kept for the state
 * before the flush. Damage to that empty edit falls back to the state after the flush. */
static void close_edit_damaged(where w)
{
    fixture fx;
    char ctx[64];
    fx_init(&fx);
    snprintf(ctx, sizeof ctx, "close edit, %s", where_name(w));

    shale_db *db = fx_open(&fx);
    fx_write(&fx, db, 0, PER_BATCH, 1);
    fx_flush(db);
    fx_write(&fx, db, PER_BATCH, PER_BATCH, 2);
    fx_close(db); /* flushes round 2, then appends the empty edit */

    damage_reopen_verify(&fx, w, 5, ctx);
}

Test(manifest_damage, close_edit_payload)
{
    close_edit_damaged(IN_PAYLOAD);
}

Test(manifest_damage, close_edit_crc)
{
    close_edit_damaged(IN_CRC);
}

/* Without a crash the flush's edit is followed by the close's: everything is there and no file
 * beyond the live ones is left by a clean close. */
Test(manifest_damage, clean_close_leaves_only_live_files)
{
    fixture fx;
    fx_init(&fx);
    shale_db *db = fx_open(&fx);
    fx_write(&fx, db, 0, PER_BATCH, 1);
    fx_flush(db);
    fx_write(&fx, db, PER_BATCH, PER_BATCH, 2);
    fx_flush(db);
    /* Open: the last flush's logs are kept for the state before it. */
    tu_assert_db_files(db, fx.dir, "open");
    fx_close(db);
    cr_assert_eq(tu_count_suffix(fx.dir, ".log"), 0, "a clean close keeps no log");
    db = fx_open(&fx);
    fx_verify(&fx, db, "reopen");
    tu_assert_db_files(db, fx.dir, "reopen");
    fx_close(db);
    fx_free(&fx);
}

/* A manifest that is one snapshot record (a checkpoint's) has no earlier state: damage to that
 * record is corruption, never an empty database. */
static void snapshot_damaged(where w)
{
    fixture fx;
    shale_error err = {0};
    fx_init(&fx);
    shale_db *db = fx_open(&fx);
    fx_write(&fx, db, 0, PER_BATCH, 1);
    fx_flush(db);
    fx_write(&fx, db, PER_BATCH, PER_BATCH, 2);
    char *cp = tu_path(fx.root, "cp"), *intact = tu_path(fx.root, "intact");
    cr_assert_eq(shale_checkpoint(db, cp, &err), SHALE_OK, "checkpoint: %s", err.msg);
    fx_close(db);
    tu_copy_dir(cp, intact);

    /* Intact, the checkpoint opens with everything, and holds only its live files. */
    char *keep = fx.dir;
    fx.dir = intact;
    fx.o.create_if_missing = false;
    db = fx_open(&fx);
    fx_verify(&fx, db, "checkpoint");
    tu_assert_db_files(db, intact, "checkpoint");
    fx_close(db);

    cr_assert_eq(damage_last_record(cp, w, 2), 2u, "a checkpoint's manifest is one snapshot");
    db = NULL;
    shale_code rc = shale_open(cp, &fx.o, &db, &err);
    cr_assert_eq(rc, SHALE_CORRUPTION, "a damaged snapshot must be corruption, got %s (%s)",
                 shale_strerror(rc), err.msg);
    cr_assert_not_null(strstr(err.msg, "MANIFEST-"), "%s", err.msg);
    cr_assert_null(db);
    fx.dir = keep;
    free(cp);
    free(intact);
    fx_free(&fx);
}

Test(manifest_damage, checkpoint_snapshot_payload_is_corruption)
{
    snapshot_damaged(IN_PAYLOAD);
}

Test(manifest_damage, checkpoint_snapshot_crc_is_corruption)
{
    snapshot_damaged(IN_CRC);
}
