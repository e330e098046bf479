/*
 * repair_test: `shale check DIR --repair NEWDIR` (repair_salvage, src/lsm/repair.h).
 *
 * One template database, built by every test the same way, with each key's history known:
 *   table A (flushed):  keys 0..299 put once, never touched again
 *   table B (flushed):  keys 300..549 put, 550..599 put with a TTL an hour ahead
 *   table C (flushed):  keys 300..349 overwritten, 350..399 deleted
 *   the live log:       keys 600..799 put one record each, 400..409 overwritten, 410..419
 *                       deleted, 420..429 put with a TTL; left as a crash leaves it
 *                       (tu_close_as_crash), so these records exist only in the log.
 * The model (want()) says what every key reads. Each case damages one thing, repairs into a new
 * directory, and checks, key by key, that exactly the keys the damage can explain are missing,
 * that everything else reads as the model says (value and TTL deadline), that the report names
 * the damage, that the new database opens and `shale check` calls it clean, and that every file
 * of the source is byte-for-byte unchanged.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "shale.h"

#include "corrupt_util.h"
#include "env/env.h"
#include "lsm/repair.h"
#include "testutil.h"

#define NKEYS 800

static uint64_t g_deadline; /* the TTL deadline used by the template */

static shale_options tmpl_opts(bool create)
{
    return (shale_options){
        .create_if_missing = create,
        .max_memory_mb = 8,
        .write_buffer_bytes = 1024 * 1024, /* no automatic flush: the three tables are ours */
        .l0_compaction_trigger = 8,        /* and no compaction */
    };
}

static shale_slice val(char *buf, int k, int gen)
{
    /* Hex of a hash: LZ4 barely shrinks it, so blocks keep their size on disk. */
    int n = snprintf(buf, 32, "v%d-%d|", gen, k);
    uint64_t h = tu_mix64((uint64_t)k * 31 + (uint64_t)gen);
    for (int i = 0; i < 96; i++) {
        buf[n + i] = "0123456789abcdef"[(h >> ((i % 16) * 4)) & 15];
        if (i % 16 == 15) {
            h = tu_mix64(h);
        }
    }
    return (shale_slice){buf, (size_t)n + 96};
}

/* What key k reads in the template: *present, generation of its value, its deadline. */
static void want(int k, bool *present, int *gen, uint64_t *expire)
{
    *present = true;
    *expire = 0;
    *gen = k < 300 ? 1 : 2;
    if (k >= 550 && k < 600) {
        *expire = g_deadline;
    }
    if (k >= 300 && k < 350) {
        *gen = 3;
    }
    if (k >= 350 && k < 400) {
        *present = false;
    }
    if (k >= 400 && k < 410) {
        *gen = 4;
    }
    if (k >= 410 && k < 420) {
        *present = false;
    }
    if (k >= 420 && k < 430) {
        *gen = 4;
        *expire = g_deadline;
    }
    if (k >= 600) {
        *gen = 4;
    }
}

static void put(shale_db *db, int k, int gen, uint64_t expire)
{
    char kb[32], vb[160];
    shale_error err;
    shale_code rc =
        expire ? shale_put_ttl(db, NULL, tu_key(kb, (uint64_t)k), val(vb, k, gen), expire, &err)
               : shale_put(db, NULL, tu_key(kb, (uint64_t)k), val(vb, k, gen), &err);
    cr_assert_eq(rc, SHALE_OK, "put %d: %s", k, err.msg);
}

static void del(shale_db *db, int k)
{
    char kb[32];
    shale_error err;
    cr_assert_eq(shale_delete(db, NULL, tu_key(kb, (uint64_t)k), &err), SHALE_OK, "%s", err.msg);
}

static void flush(shale_db *db)
{
    shale_error err;
    cr_assert_eq(shale_flush(db, &err), SHALE_OK, "%s", err.msg);
}

/* Builds the template in dir; table_names[0..2] get the names of tables A, B and C. */
static void build(const char *dir, char table_names[3][32])
{
    shale_options o = tmpl_opts(true);
    shale_db *db = NULL;
    shale_error err;

    g_deadline = (uint64_t)time(NULL) * 1000 + 3600 * 1000;
    cr_assert_eq(shale_open(dir, &o, &db, &err), SHALE_OK, "%s", err.msg);
    for (int k = 0; k < 300; k++) {
        put(db, k, 1, 0);
    }
    flush(db);
    for (int k = 300; k < 600; k++) {
        put(db, k, 2, k >= 550 ? g_deadline : 0);
    }
    flush(db);
    for (int k = 300; k < 350; k++) {
        put(db, k, 3, 0);
    }
    for (int k = 350; k < 400; k++) {
        del(db, k);
    }
    flush(db);
    /* The three tables, in creation order (file numbers only grow). */
    size_t n = 0, t = 0;
    char **names = tu_list_dir(dir, &n);
    for (size_t i = 0; i < n; i++) {
        if (tu_is_numbered(names[i], "sst")) {
            cr_assert_lt(t, 3, "more than three tables");
            snprintf(table_names[t++], 32, "%s", names[i]);
        }
    }
    tu_free_names(names, n);
    cr_assert_eq(t, 3, "want three tables, found %zu", t);
    for (int k = 600; k < 800; k++) {
        put(db, k, 4, 0);
    }
    for (int k = 400; k < 410; k++) {
        put(db, k, 4, 0);
    }
    for (int k = 410; k < 420; k++) {
        del(db, k);
    }
    for (int k = 420; k < 430; k++) {
        put(db, k, 4, g_deadline);
    }
    tu_close_as_crash(db, dir);
}

/* ---- file hashes: the source must not change ---- */

typedef struct fhash {
    char name[64];
    uint64_t size, hash;
} fhash;

static size_t hash_dir(const char *dir, fhash *out, size_t cap)
{
    size_t n = 0;
    char **names = tu_list_dir(dir, &n);
    cr_assert_leq(n, cap);
    for (size_t i = 0; i < n; i++) {
        char *p = tu_path(dir, names[i]);
        FILE *f = fopen(p, "rb");
        cr_assert_not_null(f, "%s", p);
        uint64_t h = 1469598103934665603ull, size = 0;
        int c;
        while ((c = fgetc(f)) != EOF) {
            h = (h ^ (uint64_t)c) * 1099511628211ull;
            size++;
        }
        fclose(f);
        snprintf(out[i].name, sizeof out[i].name, "%s", names[i]);
        out[i].size = size;
        out[i].hash = h;
        free(p);
    }
    tu_free_names(names, n);
    return n;
}

static void assert_same_files(const fhash *a, size_t na, const fhash *b, size_t nb)
{
    cr_assert_eq(na, nb, "the source's file count changed: %zu -> %zu", na, nb);
    for (size_t i = 0; i < na; i++) {
        cr_assert_str_eq(a[i].name, b[i].name);
        cr_assert_eq(a[i].size, b[i].size, "%s changed size", a[i].name);
        cr_assert_eq(a[i].hash, b[i].hash, "%s changed", a[i].name);
    }
}

/* ---- reading a database against the model ---- */

/* Opens dir read-only and fills present[k] / matches[k] for every template key: matches means
 * the key reads exactly as the model says (present with the right value and deadline, or
 * absent when the model says deleted). Also checks that a full scan holds no other key. */
static void read_back(const char *dir, bool present[NKEYS], bool matches[NKEYS])
{
    shale_options o = {.read_only = true};
    shale_db *db = NULL;
    shale_error err;
    shale_buf v = {0};

    cr_assert_eq(shale_open(dir, &o, &db, &err), SHALE_OK, "open %s: %s", dir, err.msg);
    for (int k = 0; k < NKEYS; k++) {
        char kb[32], vb[160];
        bool wp;
        int gen;
        uint64_t wexp;
        shale_entry_info info;
        want(k, &wp, &gen, &wexp);
        shale_code rc = shale_get_info(db, NULL, tu_key(kb, (uint64_t)k), &v, &info, &err);
        cr_assert(rc == SHALE_OK || rc == SHALE_NOT_FOUND, "get %d: %s", k, err.msg);
        present[k] = rc == SHALE_OK;
        if (!wp) {
            matches[k] = !present[k];
        } else {
            shale_slice w = val(vb, k, gen);
            matches[k] = present[k] && v.len == w.len && memcmp(v.data, w.data, w.len) == 0 &&
                         info.expire_at_ms == wexp;
        }
    }
    /* A scan sees exactly the present keys. */
    shale_iter *it = NULL;
    cr_assert_eq(shale_iter_new(db, NULL, &it, &err), SHALE_OK, "%s", err.msg);
    size_t seen = 0, want_seen = 0;
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        seen++;
    }
    cr_assert_eq(shale_iter_status(it, &err), SHALE_OK, "%s", err.msg);
    shale_iter_free(it);
    for (int k = 0; k < NKEYS; k++) {
        want_seen += present[k];
    }
    cr_assert_eq(seen, want_seen, "scan saw %zu keys, gets found %zu", seen, want_seen);
    shale_buf_free(&v);
    cr_assert_eq(shale_close(db, &err), SHALE_OK, "%s", err.msg);
}

/* Full scans of two databases are identical: keys, values, deadlines. */
static void assert_same_scans(const char *a, const char *b)
{
    shale_options o = {.read_only = true};
    shale_db *da = NULL, *db = NULL;
    shale_iter *ia = NULL, *ib = NULL;
    shale_error err;
    size_t n = 0;

    cr_assert_eq(shale_open(a, &o, &da, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(shale_open(b, &o, &db, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(shale_iter_new(da, NULL, &ia, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(shale_iter_new(db, NULL, &ib, &err), SHALE_OK, "%s", err.msg);
    shale_iter_seek_first(ia);
    shale_iter_seek_first(ib);
    for (; shale_iter_valid(ia); shale_iter_next(ia), shale_iter_next(ib), n++) {
        cr_assert(shale_iter_valid(ib), "the repaired database ends after %zu keys", n);
        shale_slice ka = shale_iter_key(ia), kb = shale_iter_key(ib);
        shale_slice va = shale_iter_value(ia), vb = shale_iter_value(ib);
        cr_assert(ka.len == kb.len && memcmp(ka.data, kb.data, ka.len) == 0, "key %zu differs", n);
        cr_assert(va.len == vb.len && memcmp(va.data, vb.data, va.len) == 0, "value %zu differs",
                  n);
        cr_assert_eq(shale_iter_info(ia).expire_at_ms, shale_iter_info(ib).expire_at_ms);
    }
    cr_assert_not(shale_iter_valid(ib), "the repaired database has more keys");
    cr_assert_eq(shale_iter_status(ia, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(shale_iter_status(ib, &err), SHALE_OK, "%s", err.msg);
    cr_assert_gt(n, 600);
    shale_iter_free(ia);
    shale_iter_free(ib);
    cr_assert_eq(shale_close(da, &err), SHALE_OK);
    cr_assert_eq(shale_close(db, &err), SHALE_OK);
}

static void assert_check_clean(const char *dir)
{
    char *outp = NULL;
    const char *args[] = {"check", dir, NULL};
    int st = tu_run_shale(args, &outp);
    cr_assert_eq(st, 0, "shale check %s: exit %d:\n%s", dir, st, outp);
    free(outp);
}

/* Repairs src into a fresh sibling directory (returned, malloc'ed), asserting the source is
 * unchanged. */
static char *repair(const char *src, const repair_options *ro, repair_report *rep)
{
    fhash before[64], after[64];
    size_t nb = hash_dir(src, before, 64);
    shale_error err;
    size_t len = strlen(src) + 8;
    char *dst = malloc(len);
    cr_assert_not_null(dst);
    snprintf(dst, len, "%s.rep", src);
    tu_rm_rf(dst);
    shale_code rc = repair_salvage_opts(env_posix(), src, dst, ro, rep, &err);
    cr_assert_eq(rc, SHALE_OK, "repair: %s", err.msg);
    size_t na = hash_dir(src, after, 64);
    assert_same_files(before, nb, after, na);
    return dst;
}

static bool report_has(const repair_report *rep, const char *needle)
{
    for (size_t i = 0; i < rep->nlosses; i++) {
        if (strstr(rep->losses[i].what, needle) != NULL) {
            return true;
        }
    }
    return false;
}

static void flip_byte(const char *dir, const char *name, uint64_t off)
{
    char *p = tu_path(dir, name);
    cr_assert_eq(tu_flip_bit(p, off, 3), 0, "flip %s @%" PRIu64, p, off);
    free(p);
}

/* A fresh template database in a new temporary directory (returned, malloc'ed). */
static char *new_template(const char *name, char table_names[3][32])
{
    char *dir = tu_tmpdir(name);
    build(dir, table_names);
    return dir;
}

/* Every key from `from` on reads as the model says. */
static void assert_ok_from(const bool ok[NKEYS], int from)
{
    for (int k = from; k < NKEYS; k++) {
        cr_assert(ok[k], "key %d does not read as the model says", k);
    }
}

static void rm_free(char *dir)
{
    tu_rm_rf(dir);
    free(dir);
}

/* The end of a case: `shale check` calls the repaired database clean; both directories go. */
static void finish(char *dst, char *dir)
{
    assert_check_clean(dst);
    rm_free(dst);
    rm_free(dir);
}

/* ---- the cases ---- */

Test(repair, clean_database_reads_the_same)
{
    char t[3][32];
    char *dir = new_template("rep-clean", t);
    repair_report rep;

    char *dst = repair(dir, NULL, &rep);
    cr_assert_not(repair_lost_anything(&rep), "%s", rep.nlosses ? rep.losses[0].what : "");
    cr_assert_eq(rep.tables_read, 3);
    cr_assert_eq(rep.blocks_lost, 0);
    cr_assert_eq(rep.log_records_lost, 0);
    cr_assert_geq(rep.log_records, 230, "log records salvaged: %" PRIu64, rep.log_records);
    cr_assert_eq(rep.tables_written, 1);
    cr_assert(rep.identity_copied);
    cr_assert_gt(rep.entries_written, 700);
    cr_assert_geq(rep.last_seq, rep.manifest_last_seq);
    assert_same_scans(dir, dst);
    bool present[NKEYS], ok[NKEYS];
    read_back(dst, present, ok);
    assert_ok_from(ok, 0);
    assert_check_clean(dst);

    /* The same through spill tables (the log run written out every ~8 KiB) and small output
     * tables: the same data, no temporary left behind (check would list it). */
    repair_options small = {.spill_bytes = 8192, .table_bytes = 16384};
    repair_report rep2;
    rm_free(dst);
    dst = repair(dir, &small, &rep2);
    cr_assert_not(repair_lost_anything(&rep2));
    cr_assert_eq(rep2.entries_written, rep.entries_written);
    cr_assert_gt(rep2.tables_written, 3);
    assert_same_scans(dir, dst);
    assert_check_clean(dst);

    /* The identity is the source's. */
    fhash ha[64], hb[64];
    size_t na = hash_dir(dir, ha, 64), nb2 = hash_dir(dst, hb, 64);
    bool found = false;
    for (size_t i = 0; i < na; i++) {
        for (size_t j = 0; j < nb2; j++) {
            if (strcmp(ha[i].name, "SHALE") == 0 && strcmp(hb[j].name, "SHALE") == 0) {
                cr_assert_eq(ha[i].hash, hb[j].hash);
                found = true;
            }
        }
    }
    cr_assert(found);
    rm_free(dst);
    rm_free(dir);
}

Test(repair, damaged_data_block_loses_exactly_its_keys)
{
    char t[3][32];
    char *dir = new_template("rep-block", t);
    repair_report rep;
    /* Table A's first data block starts at offset 0 and is over 1 KiB on disk. */
    flip_byte(dir, t[0], 600);

    char *dst = repair(dir, NULL, &rep);
    cr_assert(repair_lost_anything(&rep));
    cr_assert_eq(rep.blocks_lost, 1);
    cr_assert_eq(rep.tables_lost, 0);
    cr_assert_gt(rep.blocks_salvaged, 10);
    cr_assert_eq(rep.nlosses, 1, "losses: %zu", rep.nlosses);
    cr_assert_str_eq(rep.losses[0].file, t[0]);
    cr_assert_eq(rep.losses[0].offset, 0);
    bool present[NKEYS], ok[NKEYS];
    read_back(dst, present, ok);
    /* Exactly a prefix of table A's keys is missing (block 0), everything else is intact. */
    int last_lost = -1;
    while (last_lost + 1 < 300 && !present[last_lost + 1]) {
        last_lost++;
    }
    cr_assert_geq(last_lost, 5, "block 0 held more than a few keys");
    cr_assert_lt(last_lost, 299, "block 0 held far fewer than 300 keys");
    assert_ok_from(ok, last_lost + 1);
    /* The report names the lost range: keys up to the block's last key. */
    char kb[32];
    tu_key(kb, (uint64_t)last_lost);
    char needle[64];
    snprintf(needle, sizeof needle, "up to \"%.16s\"", kb);
    cr_assert(report_has(&rep, needle), "want \"%s\" in: %s", needle, rep.losses[0].what);
    finish(dst, dir);
}

Test(repair, damaged_log_record_loses_only_that_record)
{
    char t[3][32];
    char *dir = new_template("rep-log", t);
    repair_report rep;
    char *log = cu_newest_log(dir);
    cr_assert_not_null(log, "no log segment");
    char *lp = tu_path(dir, log);
    int64_t size = tu_file_size(lp);
    free(lp);
    cr_assert_gt(size, 20000, "the log holds %" PRId64 " bytes", size);
    uint64_t at = (uint64_t)size / 2; /* with many records before and after it */
    flip_byte(dir, log, at);

    char *dst = repair(dir, NULL, &rep);
    cr_assert(repair_lost_anything(&rep));
    cr_assert_eq(rep.log_records_lost, 1);
    cr_assert_eq(rep.blocks_lost, 0);
    cr_assert_eq(rep.nlosses, 1);
    cr_assert_str_eq(rep.losses[0].file, log);
    cr_assert_leq(rep.losses[0].offset, at);
    cr_assert_gt(rep.losses[0].offset + rep.losses[0].bytes, at, "%s", rep.losses[0].what);
    bool present[NKEYS], ok[NKEYS];
    read_back(dst, present, ok);
    /* One put of the log is missing (each of keys 600..799 is one record); all else intact. */
    int bad = 0, which = -1;
    for (int k = 0; k < NKEYS; k++) {
        if (!ok[k]) {
            bad++;
            which = k;
        }
    }
    cr_assert_eq(bad, 1, "%d keys differ from the model", bad);
    cr_assert(which >= 600 && which < 800 && !present[which], "lost key %d", which);
    /* Records before and after it were salvaged. */
    cr_assert(ok[600] && ok[which - 1] && ok[which + 1]);
    free(log);
    finish(dst, dir);
}

Test(repair, destroyed_footer_loses_the_table_whole)
{
    char t[3][32];
    char *dir = new_template("rep-footer", t);
    repair_report rep;
    char *p = tu_path(dir, t[1]);
    int64_t size = tu_file_size(p);
    FILE *f = fopen(p, "r+b");
    cr_assert_not_null(f);
    char zeros[72] = {0};
    cr_assert_eq(fseek(f, (long)size - 72, SEEK_SET), 0);
    cr_assert_eq(fwrite(zeros, 1, sizeof zeros, f), sizeof zeros);
    fclose(f);
    free(p);

    char *dst = repair(dir, NULL, &rep);
    cr_assert_eq(rep.tables_lost, 1);
    cr_assert_eq(rep.table_lost_bytes, (uint64_t)size);
    cr_assert_eq(rep.tables_read, 2);
    cr_assert(report_has(&rep, "footer: bad magic"), "%s", rep.losses[0].what);
    cr_assert_str_eq(rep.losses[0].file, t[1]);
    bool present[NKEYS], ok[NKEYS];
    read_back(dst, present, ok);
    /* Table B's keys with no later version (430..599) are gone; the rest is intact. */
    for (int k = 0; k < NKEYS; k++) {
        if (k >= 430 && k < 600) {
            cr_assert_not(present[k], "key %d came back from nowhere", k);
        } else {
            cr_assert(ok[k], "key %d does not read as the model says", k);
        }
    }
    finish(dst, dir);
}

Test(repair, damaged_manifest_still_salvages_everything)
{
    char t[3][32];
    char *dir = new_template("rep-manifest", t);
    repair_report rep;
    size_t n = 0;
    char **names = tu_list_dir(dir, &n);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(names[i], "MANIFEST-", 9) == 0) {
            flip_byte(dir, names[i], 40); /* inside the snapshot record */
        }
    }
    tu_free_names(names, n);
    shale_options o = tmpl_opts(false);
    shale_db *db = NULL;
    shale_error err;
    o.read_only = true;
    cr_assert_eq(shale_open(dir, &o, &db, &err), SHALE_CORRUPTION, "the damaged manifest opened");

    char *dst = repair(dir, NULL, &rep);
    cr_assert_not(repair_lost_anything(&rep), "%s", rep.losses[0].what);
    cr_assert_not(rep.manifest_ok);
    cr_assert(report_has(&rep, "manifest does not recover"));
    cr_assert_eq(rep.tables_read, 3);
    bool present[NKEYS], ok[NKEYS];
    read_back(dst, present, ok);
    assert_ok_from(ok, 0);
    finish(dst, dir);
}

Test(repair, refuses_non_empty_target_and_busy_source)
{
    char t[3][32];
    char *dir = new_template("rep-refuse", t);
    repair_report rep;
    shale_error err;

    char *dst = tu_tmpdir("rep-refuse-dst");
    char *junk = tu_path(dst, "keep-me");
    FILE *f = fopen(junk, "w");
    cr_assert_not_null(f);
    fputs("x", f);
    fclose(f);
    cr_assert_eq(repair_salvage(env_posix(), dir, dst, &rep, &err), SHALE_INVALID);
    cr_assert(strstr(err.msg, "not empty") != NULL, "%s", err.msg);
    size_t n = 0;
    char **names = tu_list_dir(dst, &n);
    cr_assert_eq(n, 1, "repair wrote into a non-empty target");
    tu_free_names(names, n);

    /* A database open in this process holds the LOCK. */
    shale_options o = tmpl_opts(false);
    shale_db *db = NULL;
    cr_assert_eq(shale_open(dir, &o, &db, &err), SHALE_OK, "%s", err.msg);
    char *dst2 = tu_path(dst, "sub");
    cr_assert_eq(repair_salvage(env_posix(), dir, dst2, &rep, &err), SHALE_BUSY, "%s", err.msg);
    struct stat st;
    cr_assert_neq(stat(dst2, &st), 0, "a refused repair created its target");
    cr_assert_eq(shale_close(db, &err), SHALE_OK);

    /* Not a database at all. */
    char *empty = tu_tmpdir("rep-refuse-empty");
    cr_assert_eq(repair_salvage(env_posix(), empty, dst2, &rep, &err), SHALE_INVALID);
    free(junk);
    free(dst2);
    rm_free(empty);
    rm_free(dst);
    rm_free(dir);
}

Test(repair, cli_exit_codes_and_report)
{
    char t[3][32];
    char *dir = new_template("rep-cli", t);
    size_t len = strlen(dir) + 16;
    char *dst = malloc(len), *dst2 = malloc(len);
    snprintf(dst, len, "%s.new", dir);
    snprintf(dst2, len, "%s.new2", dir);
    tu_rm_rf(dst);
    tu_rm_rf(dst2);

    char *outp = NULL;
    const char *clean[] = {"check", dir, "--repair", dst, NULL};
    int st = tu_run_shale(clean, &outp);
    cr_assert_eq(st, 0, "exit %d:\n%s", st, outp);
    cr_assert(strstr(outp, "nothing lost") != NULL, "%s", outp);
    cr_assert(strstr(outp, "tables:  3 read") != NULL, "%s", outp);
    cr_assert(strstr(outp, "identity: copied") != NULL, "%s", outp);
    free(outp);
    assert_check_clean(dst);

    /* NEWDIR now exists and is not empty. */
    st = tu_run_shale(clean, &outp);
    cr_assert_eq(st, 2, "exit %d:\n%s", st, outp);
    cr_assert(strstr(outp, "not empty") != NULL, "%s", outp);
    free(outp);

    flip_byte(dir, t[0], 600);
    const char *damaged[] = {"check", dir, "--repair", dst2, NULL};
    st = tu_run_shale(damaged, &outp);
    cr_assert_eq(st, 1, "exit %d:\n%s", st, outp);
    cr_assert(strstr(outp, "LOST: ") != NULL, "%s", outp);
    cr_assert(strstr(outp, t[0]) != NULL, "%s", outp);
    cr_assert(strstr(outp, "1 lost") != NULL, "%s", outp);
    free(outp);
    assert_check_clean(dst2);

    rm_free(dst);
    rm_free(dst2);
    rm_free(dir);
}
