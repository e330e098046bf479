/* Backups (include/shale.h "Backups", src/lsm/backup.c): a round trip with plain, TTL and deleted
 * keys and documents, restored per backup and compared with a model of the state at backup time;
 * incremental reuse of tables; a backup taken while a thread writes holds every acknowledged
 * write; list, verify, delete and purge (ids, retention, unreferenced tables removed from disk);
 * damage in every file kind is SHALE_CORRUPTION naming the file and restore then writes nothing;
 * restore into non-empty directories; another database's destination; leftovers of a backup cut
 * short (by hand and by injected I/O failures); and the CLI end to end. Worker threads never call
 * cr_assert: they record the first failure, which the main thread reports after joining. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "env/env_fault.h"
#include "testutil.h"

TestSuite(backup);

#define NK 400

/* ver[k]: the version key k holds (0 = absent); exp[k]: its deadline (0 = none). */
typedef struct model {
    uint32_t ver[NK];
    uint64_t exp[NK];
} model;

static shale_slice bkey(char *buf, int k)
{
    int n = snprintf(buf, 32, "bk-%05d", k);
    return (shale_slice){buf, (size_t)n};
}

/* 20..219 bytes naming the key and the version. */
static shale_slice bval(char *buf, uint32_t ver, int k)
{
    int n = snprintf(buf, 300, "v%u:k%d:", ver, k);
    size_t len = 20 + (size_t)((ver * 31u + (uint32_t)k) % 200u);
    for (size_t i = (size_t)n; i < len; i++) {
        buf[i] = (char)('a' + (ver + i) % 26);
    }
    return (shale_slice){buf, len};
}

static void mput(shale_db *db, model *m, int k, uint32_t ver, uint64_t exp)
{
    char kb[32], vb[300];
    shale_error err = {0};
    shale_code rc = exp ? shale_put_ttl(db, NULL, bkey(kb, k), bval(vb, ver, k), exp, &err)
                        : shale_put(db, NULL, bkey(kb, k), bval(vb, ver, k), &err);
    cr_assert_eq(rc, SHALE_OK, "put %d: %s", k, err.msg);
    m->ver[k] = ver;
    m->exp[k] = exp;
}

static void mdel(shale_db *db, model *m, int k)
{
    char kb[32];
    TU_OK(shale_delete(db, NULL, bkey(kb, k), &ERR));
    m->ver[k] = 0;
    m->exp[k] = 0;
}

/* A round of writes: puts (a third with a TTL an hour away), overwrites and deletes. */
static void mwrite(shale_db *db, model *m, tu_rng *r, uint32_t ver, int n)
{
    uint64_t later = (uint64_t)time(NULL) * 1000 + 3600 * 1000;
    for (int i = 0; i < n; i++) {
        int k = (int)tu_rng_below(r, NK);
        if (tu_rng_below(r, 5) == 0) {
            mdel(db, m, k);
        } else {
            mput(db, m, k, ver, tu_rng_below(r, 3) == 0 ? later + (uint64_t)k : 0);
        }
    }
}

/* Asserts that db holds exactly the model: every key, value and deadline, nothing more. */
static void mcheck(shale_db *db, const model *m, const char *ctx)
{
    shale_iter *it = NULL;
    shale_read_opts ro = {.prefix = TU_SL("bk-")};
    size_t seen = 0, want = 0;
    char vb[300];

    for (int k = 0; k < NK; k++) {
        want += m->ver[k] != 0;
    }
    TU_OK(shale_iter_new(db, &ro, &it, &ERR));
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice key = shale_iter_key(it), val = shale_iter_value(it);
        char kb[32];
        cr_assert(key.len < sizeof kb);
        memcpy(kb, key.data, key.len);
        kb[key.len] = '\0';
        int k = atoi(kb + 3);
        cr_assert(k >= 0 && k < NK, "%s: stray key %s", ctx, kb);
        cr_assert_neq(m->ver[k], 0u, "%s: key %d present, the model has it absent", ctx, k);
        shale_slice exp = bval(vb, m->ver[k], k);
        cr_assert(val.len == exp.len && memcmp(val.data, exp.data, exp.len) == 0,
                  "%s: key %d holds another value (want version %u)", ctx, k, m->ver[k]);
        cr_assert_eq(shale_iter_info(it).expire_at_ms, m->exp[k], "%s: key %d deadline", ctx, k);
        seen++;
    }
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_free(it);
    cr_assert_eq(seen, want, "%s: %zu keys, the model has %zu", ctx, seen, want);
}

static char *sub(const char *root, const char *name)
{
    char *p = tu_path(root, name);
    cr_assert_not_null(p);
    return p;
}

static shale_options opts(void)
{
    shale_options o = tu_small_lsm_options(4);
    o.create_if_missing = true;
    return o;
}

/* No background compaction: the tables a backup lists stay in use for the next one. */
static shale_options quiet_opts(void)
{
    shale_options o = opts();
    o.l0_compaction_trigger = 64;
    return o;
}

static void restore_and_check(const char *dest, uint64_t id, const char *dir, const model *m,
                              const char *ctx)
{
    TU_OK(shale_restore(dest, id, dir, false, &ERR));
    shale_options o = tu_small_lsm_options(4);
    shale_db *db = tu_open(dir, &o);
    mcheck(db, m, ctx);
    TU_OK(shale_close(db, &ERR));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static size_t count_entries(const char *dir)
{
    size_t n = 0;
    char **names = tu_list_dir(dir, &n);
    tu_free_names(names, n);
    return n;
}

Test(backup, roundtrip_incremental)
{
    char *root = tu_tmpdir("bk-rt");
    char *dbdir = sub(root, "db"), *dest = sub(root, "dest");
    char *r1 = sub(root, "r1"), *r2 = sub(root, "r2"), *tables = sub(dest, "tables");
    shale_options o = quiet_opts();
    shale_db *db = tu_open(dbdir, &o);
    static model m1, m2;
    tu_rng r;
    shale_backup_info i1, i2;
    shale_buf out = {0};

    tu_rng_seed(&r, 7);
    mwrite(db, &m1, &r, 1, 1500);
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"d1\",\"n\":1}"), NULL, &ERR));
    mwrite(db, &m1, &r, 2, 300); /* some in the memtable only */
    shale_stats st;
    TU_OK(shale_stats_get(db, &st, &ERR));
    TU_OK(shale_backup(db, dest, &i1, &ERR));
    cr_assert_eq(i1.id, 1u);
    cr_assert_geq(i1.seq, st.last_sequence, "seq %" PRIu64 " < acknowledged %" PRIu64, i1.seq,
                  st.last_sequence);
    cr_assert_eq(i1.new_files, i1.files, "a first backup writes every file");
    cr_assert_eq(i1.new_bytes, i1.bytes);
    cr_assert_gt(i1.files, 4u, "tables expected beside SHALE, CURRENT and the manifest");

    m2 = m1;
    mwrite(db, &m2, &r, 3, 200);
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"d2\",\"n\":2}"), NULL, &ERR));
    size_t tables_before = count_entries(tables);
    TU_OK(shale_backup(db, dest, &i2, &ERR));
    cr_assert_eq(i2.id, 2u);
    cr_assert_gt(i2.seq, i1.seq);
    cr_assert_lt(i2.new_files, i2.files, "incremental: %" PRIu64 " new of %" PRIu64, i2.new_files,
                 i2.files);
    cr_assert_lt(i2.new_bytes, i2.bytes);
    /* Tables shared: only the new ones were added to tables/ (3 small files per backup). */
    cr_assert_eq(count_entries(tables), tables_before + (size_t)(i2.new_files - 3));
    mwrite(db, &m2, &r, 4, 0);
    char kb[32], vb[300];
    TU_OK(shale_put(db, NULL, bkey(kb, 1), bval(vb, 99, 1), &ERR)); /* after backup 2 */
    TU_OK(shale_close(db, &ERR));

    restore_and_check(dest, 1, r1, &m1, "restore 1");
    restore_and_check(dest, 0, r2, &m2, "restore newest");
    shale_db *a = tu_open(r1, NULL);
    TU_OK(shale_doc_get(a, "c", TU_SL("d1"), &out, &ERR));
    cr_assert(strstr(out.data, "\"n\":1") != NULL || strstr(out.data, "\"n\": 1") != NULL);
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(a, "c", TU_SL("d2"), &out, &ERR));
    TU_OK(shale_close(a, &ERR));
    a = tu_open(r2, NULL);
    TU_OK(shale_doc_get(a, "c", TU_SL("d2"), &out, &ERR));
    /* The restored database takes writes and keeps them. */
    TU_OK(shale_put(a, NULL, TU_SL("after"), TU_SL("restore"), &ERR));
    TU_OK(shale_close(a, &ERR));
    a = tu_open(r2, NULL);
    tu_expect(a, "after", "restore");
    TU_OK(shale_close(a, &ERR));
    /* Restored files are copies, not links to the backup. */
    size_t n = 0;
    char **names = tu_list_dir(r1, &n);
    for (size_t i = 0; i < n; i++) {
        if (tu_is_numbered(names[i], "sst")) {
            char *p = sub(r1, names[i]);
            struct stat s;
            cr_assert_eq(stat(p, &s), 0);
            cr_assert_eq(s.st_nlink, 1u, "%s is linked", p);
            cr_assert_eq(s.st_mode & 0777, 0600u);
            free(p);
        }
    }
    tu_free_names(names, n);

    shale_buf_free(&out);
    free(dbdir), free(dest), free(r1), free(r2), free(tables);
    tu_rm_rf(root);
    free(root);
    tu_assert_no_leaks();
}

/* ---- online ---- */

typedef struct writer {
    shale_db *db;
    atomic_uint_fast64_t acked; /* writes 0 .. acked-1 returned SHALE_OK */
    atomic_bool stop;
    char failure[320];
} writer;

static shale_slice wkey(char *buf, uint64_t i)
{
    int n = snprintf(buf, 32, "w%08" PRIu64, i);
    return (shale_slice){buf, (size_t)n};
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    char kb[32], vb[64];
    for (uint64_t i = 0; !atomic_load(&w->stop) && i < 400000; i++) {
        shale_error err = {0};
        int n = snprintf(vb, sizeof vb, "value-%" PRIu64 "-xxxxxxxxxxxxxxxx", i);
        if (shale_put(w->db, NULL, wkey(kb, i), (shale_slice){vb, (size_t)n}, &err) != SHALE_OK) {
            snprintf(w->failure, sizeof w->failure, "put %" PRIu64 ": %s", i, err.msg);
            break;
        }
        atomic_store(&w->acked, i + 1);
    }
    return NULL;
}

Test(backup, online_writer)
{
    char *root = tu_tmpdir("bk-online");
    char *dbdir = sub(root, "db"), *dest = sub(root, "dest"), *rdir = sub(root, "r");
    shale_options o = opts();
    writer w = {.db = tu_open(dbdir, &o)};
    pthread_t t;
    shale_backup_info info;

    cr_assert_eq(pthread_create(&t, NULL, writer_main, &w), 0);
    while (atomic_load(&w.acked) < 3000 && w.failure[0] == '\0') {
        tu_sleep_us(1000);
    }
    uint64_t before = atomic_load(&w.acked);
    shale_error err = {0};
    shale_code rc = shale_backup(w.db, dest, &info, &err);
    atomic_store(&w.stop, true);
    pthread_join(t, NULL);
    cr_assert_eq(w.failure[0], '\0', "writer: %s", w.failure);
    cr_assert_eq(rc, SHALE_OK, "backup: %s", err.msg);
    uint64_t total = atomic_load(&w.acked);
    TU_OK(shale_close(w.db, &ERR));

    TU_OK(shale_restore(dest, info.id, rdir, false, &ERR));
    shale_db *db = tu_open(rdir, NULL);
    /* Every write acknowledged before the call, and a prefix of the writer's sequence. */
    uint64_t present = 0;
    shale_iter *it;
    TU_OK(shale_iter_new(db, NULL, &it, &ERR));
    char kb[32];
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it), present++) {
        shale_slice k = shale_iter_key(it), want = wkey(kb, present);
        cr_assert(k.len == want.len && memcmp(k.data, want.data, k.len) == 0,
                  "restored keys are not a prefix: position %" PRIu64, present);
    }
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_free(it);
    cr_assert_geq(present, before, "restored %" PRIu64 " writes, %" PRIu64 " acked before", present,
                  before);
    cr_assert_leq(present, total);
    shale_stats st;
    TU_OK(shale_stats_get(db, &st, &ERR));
    cr_assert_geq(info.seq, before);
    TU_OK(shale_close(db, &ERR));

    free(dbdir), free(dest), free(rdir);
    tu_rm_rf(root);
    free(root);
}

/* ---- list, verify, delete, purge ---- */

/* The tables/ names backup `id` needs, found by restoring it: NNNNNN-SIZE.sst. */
static size_t table_names(const char *dest, uint64_t id, const char *scratch, char names[][64],
                          size_t cap)
{
    size_t n = 0, count = 0;
    tu_rm_rf(scratch);
    TU_OK(shale_restore(dest, id, scratch, false, &ERR));
    char **v = tu_list_dir(scratch, &count);
    for (size_t i = 0; i < count; i++) {
        if (tu_is_numbered(v[i], "sst")) {
            char *p = sub(scratch, v[i]);
            cr_assert_lt(n, cap);
            snprintf(names[n++], 64, "%06lld-%lld.sst", atoll(v[i]), (long long)tu_file_size(p));
            free(p);
        }
    }
    tu_free_names(v, count);
    tu_rm_rf(scratch);
    return n;
}

Test(backup, list_verify_delete_purge)
{
    char *root = tu_tmpdir("bk-list");
    char *dbdir = sub(root, "db"), *dest = sub(root, "dest"), *tables = sub(dest, "tables");
    char *scratch = sub(root, "scratch");
    shale_options o = opts();
    shale_db *db = tu_open(dbdir, &o);
    static model m;
    tu_rng r;
    shale_backup_info *v = NULL;
    size_t n = 0;

    tu_rng_seed(&r, 3);
    for (uint32_t b = 1; b <= 4; b++) {
        mwrite(db, &m, &r, b, 400);
        if (b == 3) {
            TU_OK(shale_compact(db, &ERR)); /* the tables of 1 and 2 go out of use */
        }
        shale_backup_info info;
        TU_OK(shale_backup(db, dest, &info, &ERR));
        cr_assert_eq(info.id, b);
    }
    TU_OK(shale_backup_list(dest, &v, &n, &ERR));
    cr_assert_eq(n, 4u);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(v[i].id, i + 1);
        if (i > 0) {
            cr_assert_geq(v[i].created_at_ms, v[i - 1].created_at_ms);
            cr_assert_gt(v[i].seq, v[i - 1].seq);
        }
    }
    free(v);
    TU_OK(shale_backup_verify(dest, 0, &ERR));
    TU_OK(shale_backup_verify(dest, 2, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_backup_verify(dest, 9, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_backup_delete(dest, 9, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_restore(dest, 9, scratch, false, &ERR));
    cr_assert(!exists(scratch));
    TU_CODE(SHALE_INVALID, shale_backup_purge(dest, 0, &ERR));

    size_t before = count_entries(tables);
    TU_OK(shale_backup_purge(dest, 2, &ERR));
    TU_OK(shale_backup_list(dest, &v, &n, &ERR));
    cr_assert_eq(n, 2u);
    cr_assert_eq(v[0].id, 3u);
    cr_assert_eq(v[1].id, 4u);
    free(v);
    char *d1 = sub(dest, "000001"), *d2 = sub(dest, "000002");
    cr_assert(!exists(d1) && !exists(d2), "purged directories remain");
    /* tables/ holds exactly the union of what backups 3 and 4 list. */
    static char want[512][64];
    size_t nw = table_names(dest, 3, scratch, want, 512);
    nw += table_names(dest, 4, scratch, want + nw, 512 - nw);
    size_t count = 0;
    char **have = tu_list_dir(tables, &count);
    cr_assert_lt(count, before, "no table removed by the purge");
    for (size_t i = 0; i < count; i++) {
        bool found = false;
        for (size_t j = 0; j < nw && !found; j++) {
            found = strcmp(want[j], have[i]) == 0;
        }
        cr_assert(found, "tables/%s is listed by no remaining backup", have[i]);
    }
    for (size_t j = 0; j < nw; j++) {
        bool found = false;
        for (size_t i = 0; i < count && !found; i++) {
            found = strcmp(want[j], have[i]) == 0;
        }
        cr_assert(found, "tables/%s missing", want[j]);
    }
    tu_free_names(have, count);
    TU_OK(shale_backup_verify(dest, 0, &ERR));

    /* Delete the newest: its id is not reused. */
    TU_OK(shale_backup_delete(dest, 4, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_backup_delete(dest, 4, &ERR));
    shale_backup_info info;
    TU_OK(shale_backup(db, dest, &info, &ERR));
    cr_assert_eq(info.id, 5u);
    TU_OK(shale_backup_list(dest, &v, &n, &ERR));
    cr_assert_eq(n, 2u);
    cr_assert_eq(v[0].id, 3u);
    cr_assert_eq(v[1].id, 5u);
    free(v);
    restore_and_check(dest, 5, scratch, &m, "after delete");
    TU_OK(shale_close(db, &ERR));

    free(d1), free(d2), free(dbdir), free(dest), free(tables), free(scratch);
    tu_rm_rf(root);
    free(root);
}

/* ---- damage ---- */

enum damage {
    D_TABLE_FLIP,
    D_TABLE_TRUNCATE,
    D_TABLE_DELETE,
    D_BACKUP_FLIP,
    D_BACKUP_TRUNCATE,
    D_BACKUPS_FLIP,
    D_MANIFEST_FLIP,
    D_COUNT
};

/* The first table in dest/tables (malloc'ed path). */
static char *some_table(const char *dest)
{
    char *tables = sub(dest, "tables");
    size_t n = 0;
    char **v = tu_list_dir(tables, &n);
    cr_assert_gt(n, 0u);
    char *p = sub(tables, v[n / 2]);
    tu_free_names(v, n);
    free(tables);
    return p;
}

static char *backup_file(const char *dest, const char *prefix)
{
    char *dir = sub(dest, "000001");
    size_t n = 0;
    char **v = tu_list_dir(dir, &n);
    char *p = NULL;
    for (size_t i = 0; i < n && p == NULL; i++) {
        if (strncmp(v[i], prefix, strlen(prefix)) == 0) {
            p = sub(dir, v[i]);
        }
    }
    tu_free_names(v, n);
    free(dir);
    cr_assert_not_null(p, "no %s in the backup", prefix);
    return p;
}

Test(backup, damage_detected)
{
    char *root = tu_tmpdir("bk-damage");
    char *dbdir = sub(root, "db");
    shale_options o = opts();
    shale_db *db = tu_open(dbdir, &o);
    static model m;
    tu_rng r;

    tu_rng_seed(&r, 11);
    mwrite(db, &m, &r, 1, 800);
    for (int d = 0; d < D_COUNT; d++) {
        char name[32];
        snprintf(name, sizeof name, "dest%d", d);
        char *dest = sub(root, name);
        snprintf(name, sizeof name, "r%d", d);
        char *rdir = sub(root, name);
        TU_OK(shale_backup(db, dest, NULL, &ERR));
        TU_OK(shale_backup_verify(dest, 1, &ERR));
        char *victim = NULL;
        switch (d) {
        case D_TABLE_FLIP:
            victim = some_table(dest);
            cr_assert_eq(tu_flip_bit(victim, (uint64_t)tu_file_size(victim) / 2, 3), 0);
            break;
        case D_TABLE_TRUNCATE:
            victim = some_table(dest);
            cr_assert_eq(tu_truncate(victim, (uint64_t)tu_file_size(victim) - 1), 0);
            break;
        case D_TABLE_DELETE:
            victim = some_table(dest);
            cr_assert_eq(unlink(victim), 0);
            break;
        case D_BACKUP_FLIP:
            victim = backup_file(dest, "BACKUP");
            cr_assert_eq(tu_flip_bit(victim, 30, 0), 0);
            break;
        case D_BACKUP_TRUNCATE:
            victim = backup_file(dest, "BACKUP");
            cr_assert_eq(tu_truncate(victim, 100), 0);
            break;
        case D_BACKUPS_FLIP:
            victim = sub(dest, "BACKUPS");
            cr_assert_eq(tu_flip_bit(victim, 20, 5), 0);
            break;
        case D_MANIFEST_FLIP:
            victim = backup_file(dest, "MANIFEST-");
            cr_assert_eq(tu_flip_bit(victim, 40, 1), 0);
            break;
        }
        const char *base = strrchr(victim, '/') + 1;
        TU_CODE(SHALE_CORRUPTION, shale_backup_verify(dest, 1, &ERR));
        cr_assert(strstr(tu_last_msg, base) != NULL, "case %d: message does not name %s: %s", d,
                  base, tu_last_msg);
        TU_CODE(SHALE_CORRUPTION, shale_backup_verify(dest, 0, &ERR));
        TU_CODE(SHALE_CORRUPTION, shale_restore(dest, 1, rdir, false, &ERR));
        cr_assert(strstr(tu_last_msg, base) != NULL, "case %d: restore: %s", d, tu_last_msg);
        cr_assert(!exists(rdir), "case %d: restore wrote into %s", d, rdir);
        if (d == D_BACKUP_FLIP || d == D_BACKUP_TRUNCATE || d == D_BACKUPS_FLIP) {
            /* The manifests themselves: list reports them; a new backup refuses to guess. */
            shale_backup_info *v = NULL;
            size_t n = 0;
            TU_CODE(SHALE_CORRUPTION, shale_backup_list(dest, &v, &n, &ERR));
            cr_assert(strstr(tu_last_msg, base) != NULL, "case %d: list: %s", d, tu_last_msg);
            TU_CODE(SHALE_CORRUPTION, shale_backup(db, dest, NULL, &ERR));
        }
        if (d == D_BACKUP_FLIP) {
            /* A damaged backup can be deleted; then backups work again. */
            TU_OK(shale_backup_delete(dest, 1, &ERR));
            shale_backup_info info;
            TU_OK(shale_backup(db, dest, &info, &ERR));
            cr_assert_eq(info.id, 2u);
            TU_OK(shale_backup_verify(dest, 0, &ERR));
        }
        free(victim), free(dest), free(rdir);
    }
    TU_OK(shale_close(db, &ERR));
    free(dbdir);
    tu_rm_rf(root);
    free(root);
}

/* ---- restore targets ---- */

Test(backup, restore_overwrite)
{
    char *root = tu_tmpdir("bk-over");
    char *dbdir = sub(root, "db"), *dest = sub(root, "dest"), *other = sub(root, "other");
    char *plain = sub(root, "plain"), *junk = sub(plain, "junk");
    shale_options o = opts();
    shale_db *db = tu_open(dbdir, &o);
    static model m;
    tu_rng r;

    tu_rng_seed(&r, 5);
    mwrite(db, &m, &r, 1, 600);
    TU_OK(shale_backup(db, dest, NULL, &ERR));
    TU_OK(shale_close(db, &ERR));

    /* Another database in the target: refused without overwrite, replaced with it. */
    shale_db *x = tu_open(other, &o);
    tu_put(x, "other-key", "x");
    TU_OK(shale_flush(x, &ERR));
    TU_CODE(SHALE_BUSY, shale_restore(dest, 1, other, true, &ERR)); /* open */
    TU_OK(shale_close(x, &ERR));
    TU_CODE(SHALE_INVALID, shale_restore(dest, 1, other, false, &ERR));
    x = tu_open(other, NULL);
    tu_expect(x, "other-key", "x");
    TU_OK(shale_close(x, &ERR));
    TU_OK(shale_restore(dest, 1, other, true, &ERR));
    x = tu_open(other, NULL);
    tu_expect(x, "other-key", NULL);
    mcheck(x, &m, "overwritten");
    TU_OK(shale_close(x, &ERR));

    /* A directory that is not a database is never emptied. */
    cr_assert_eq(mkdir(plain, 0700), 0);
    write_file(junk, "keep me");
    TU_CODE(SHALE_INVALID, shale_restore(dest, 1, plain, false, &ERR));
    TU_CODE(SHALE_INVALID, shale_restore(dest, 1, plain, true, &ERR));
    cr_assert_eq(tu_file_size(junk), 7);
    cr_assert_eq(count_entries(plain), 1u, "restore left files in a foreign directory");

    free(dbdir), free(dest), free(other), free(plain), free(junk);
    tu_rm_rf(root);
    free(root);
}

Test(backup, wrong_destination)
{
    char *root = tu_tmpdir("bk-wrong");
    char *a = sub(root, "a"), *b = sub(root, "b"), *dest = sub(root, "dest");
    char *foreign = sub(root, "foreign"), *ff = sub(foreign, "file");
    shale_options o = opts();
    shale_db *da = tu_open(a, &o);
    tu_sleep_us(5000); /* identities differ by creation time */
    shale_db *db2 = tu_open(b, &o);

    tu_put(da, "k", "a");
    tu_put(db2, "k", "b");
    TU_OK(shale_backup(da, dest, NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_backup(db2, dest, NULL, &ERR));
    cr_assert(strstr(tu_last_msg, "another database") != NULL, "%s", tu_last_msg);
    cr_assert_eq(mkdir(foreign, 0700), 0);
    write_file(ff, "");
    TU_CODE(SHALE_INVALID, shale_backup(da, foreign, NULL, &ERR));
    cr_assert_eq(count_entries(foreign), 1u, "a foreign directory was written into");
    shale_backup_info *v = NULL;
    size_t n = 0;
    TU_CODE(SHALE_INVALID, shale_backup_list(foreign, &v, &n, &ERR));
    TU_CODE(SHALE_INVALID, shale_backup_list(ff, &v, &n, &ERR));
    char *missing = sub(root, "missing");
    TU_CODE(SHALE_NOT_FOUND, shale_backup_list(missing, &v, &n, &ERR));
    TU_OK(shale_backup_list(dest, &v, &n, &ERR));
    cr_assert_eq(n, 1u);
    free(v);
    TU_OK(shale_close(da, &ERR));
    TU_OK(shale_close(db2, &ERR));
    free(a), free(b), free(dest), free(foreign), free(ff), free(missing);
    tu_rm_rf(root);
    free(root);
}

/* ---- leftovers ---- */

Test(backup, leftovers_ignored_and_cleaned)
{
    char *root = tu_tmpdir("bk-left");
    char *dbdir = sub(root, "db"), *dest = sub(root, "dest"), *rdir = sub(root, "r");
    char *cut = sub(dest, "000007"), *cutf = sub(cut, "SHALE");
    char *stray = sub(dest, "tables/999999-5.sst"), *tmp = sub(dest, "tables/000001-9.sst.tmp");
    shale_options o = opts();
    shale_db *db = tu_open(dbdir, &o);
    static model m;
    tu_rng r;
    shale_backup_info *v = NULL, info;
    size_t n = 0;

    tu_rng_seed(&r, 9);
    mwrite(db, &m, &r, 1, 300);
    TU_OK(shale_backup(db, dest, NULL, &ERR));
    cr_assert_eq(mkdir(cut, 0700), 0);
    write_file(cutf, "partial");
    write_file(stray, "stray");
    write_file(tmp, "temporary");
    TU_OK(shale_backup_list(dest, &v, &n, &ERR));
    cr_assert_eq(n, 1u, "a backup without BACKUP is listed");
    free(v);
    TU_CODE(SHALE_NOT_FOUND, shale_backup_verify(dest, 7, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_restore(dest, 7, rdir, false, &ERR));
    TU_OK(shale_backup_verify(dest, 0, &ERR));
    cr_assert(!exists(rdir));

    mwrite(db, &m, &r, 2, 100);
    TU_OK(shale_backup(db, dest, &info, &ERR));
    cr_assert_eq(info.id, 8u, "ids are never reused: past the leftover's");
    cr_assert(!exists(cut), "leftover directory not removed");
    cr_assert(!exists(stray), "unreferenced table not removed");
    cr_assert(!exists(tmp), "temporary not removed");
    TU_OK(shale_backup_list(dest, &v, &n, &ERR));
    cr_assert_eq(n, 2u);
    free(v);
    TU_OK(shale_backup_verify(dest, 0, &ERR));
    TU_OK(shale_close(db, &ERR));
    restore_and_check(dest, 8, rdir, &m, "after leftovers");

    free(dbdir), free(dest), free(rdir), free(cut), free(cutf), free(stray), free(tmp);
    tu_rm_rf(root);
    free(root);
}

/* Injected I/O failures at every sync, directory sync and rename of a backup: each fails with
 * SHALE_IO (or succeeds, for a step that was only tidying), never lists a backup that does not
 * verify, and the next backup cleans up. */
Test(backup, injected_failures)
{
    char *root = tu_tmpdir("bk-fault");
    char *dbdir = sub(root, "db"), *dest = sub(root, "dest"), *rdir = sub(root, "r");
    env_fault *f = env_fault_new(env_posix());
    cr_assert_not_null(f);
    shale_options o = opts();
    o.env = env_fault_env(f);
    shale_db *db = tu_open(dbdir, &o);
    static model m;
    tu_rng r;
    static const env_op ops[] = {ENV_OP_SYNC, ENV_OP_SYNC_DIR, ENV_OP_RENAME, ENV_OP_WRITE};
    size_t failed = 0;

    tu_rng_seed(&r, 13);
    mwrite(db, &m, &r, 1, 600);
    TU_OK(shale_backup(db, dest, NULL, &ERR));
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        mwrite(db, &m, &r, (uint32_t)k + 2, 50);
        TU_OK(shale_flush(db, &ERR)); /* the backup's own flush has nothing to write */
        uint64_t c0 = env_fault_count(f, ops[k]);
        TU_OK(shale_backup(db, dest, NULL, &ERR));
        uint64_t per = env_fault_count(f, ops[k]) - c0;
        cr_assert_gt(per, 0u);
        for (uint64_t nth = 1; nth <= per; nth++) {
            env_fault_fail_nth(f, ops[k], nth, EIO, false);
            shale_error err = {0};
            shale_code rc = shale_backup(db, dest, NULL, &err);
            env_fault_clear(f);
            cr_assert(rc == SHALE_OK || rc == SHALE_IO, "op %d #%" PRIu64 ": %s", (int)ops[k], nth,
                      err.msg);
            failed += rc != SHALE_OK;
            shale_stats st;
            TU_OK(shale_stats_get(db, &st, &ERR));
            cr_assert(!st.writes_stopped, "the database stopped: %s", st.stop_reason);
            /* Whatever is listed verifies. */
            TU_OK(shale_backup_verify(dest, 0, &ERR));
        }
    }
    cr_assert_gt(failed, 5u);
    shale_backup_info info;
    TU_OK(shale_backup(db, dest, &info, &ERR));
    TU_OK(shale_backup_verify(dest, 0, &ERR));
    /* Cleaned: every numbered directory is a complete backup. */
    size_t n = 0, listed = 0;
    char **names = tu_list_dir(dest, &n);
    shale_backup_info *v = NULL;
    TU_OK(shale_backup_list(dest, &v, &listed, &ERR));
    free(v);
    cr_assert_eq(n, listed + 3, "leftovers remain (%zu entries, %zu backups)", n, listed);
    tu_free_names(names, n);
    TU_OK(shale_close(db, &ERR));
    env_fault_free(f);
    restore_and_check(dest, info.id, rdir, &m, "after faults");

    free(dbdir), free(dest), free(rdir);
    tu_rm_rf(root);
    free(root);
}

/* ---- the CLI ---- */

static int run(char **out, const char *a0, const char *a1, const char *a2, const char *a3,
               const char *a4)
{
    const char *args[] = {a0, a1, a2, a3, a4, NULL};
    free(*out);
    *out = NULL;
    int rc = tu_run_shale(args, out);
    cr_assert_neq(rc, -1, "SHALE_BIN is not set");
    return rc;
}

Test(backup, cli)
{
    char *root = tu_tmpdir("bk-cli");
    char *dbdir = sub(root, "db"), *dest = sub(root, "dest"), *r1 = sub(root, "r1");
    char *r2 = sub(root, "r2");
    char *out = NULL;
    shale_options o = opts();
    shale_db *db = tu_open(dbdir, &o);
    static model m;
    tu_rng r;

    tu_rng_seed(&r, 17);
    mwrite(db, &m, &r, 1, 400);
    TU_OK(shale_close(db, &ERR));

    cr_assert_eq(run(&out, "backup", dbdir, dest, NULL, NULL), 0, "%s", out);
    cr_assert(strstr(out, "backup 1:") != NULL, "%s", out);
    cr_assert_eq(run(&out, "backup", dbdir, dest, NULL, NULL), 0, "%s", out);
    cr_assert_eq(run(&out, "backup", "list", dest, NULL, NULL), 0, "%s", out);
    cr_assert(strstr(out, "\n1 ") != NULL && strstr(out, "\n2 ") != NULL, "%s", out);
    cr_assert(strstr(out, "Z ") != NULL, "no ISO-8601 UTC time: %s", out);
    cr_assert_eq(run(&out, "backup", "verify", dest, NULL, NULL), 0, "%s", out);
    cr_assert(strstr(out, "backup 2: OK") != NULL, "%s", out);
    cr_assert_eq(run(&out, "backup", "verify", dest, "1", NULL), 0, "%s", out);
    cr_assert_eq(run(&out, "restore", dest, r1, "--id", "1"), 0, "%s", out);
    cr_assert_eq(run(&out, "restore", dest, r1, NULL, NULL), 2, "non-empty: %s", out);
    cr_assert_eq(run(&out, "restore", dest, r1, "--force", NULL), 0, "%s", out);
    shale_db *x = tu_open(r1, NULL);
    mcheck(x, &m, "cli restore");
    TU_OK(shale_close(x, &ERR));
    cr_assert_eq(run(&out, "backup", "verify", dest, "9", NULL), 1, "%s", out);
    cr_assert_eq(run(&out, "backup", "delete", dest, "9", NULL), 1, "%s", out);
    cr_assert_eq(run(&out, "backup", "purge", dest, NULL, NULL), 2, "no --keep: %s", out);
    cr_assert_eq(run(&out, "backup", "--help", NULL, NULL, NULL), 0, "%s", out);
    cr_assert(strstr(out, "backup purge DEST --keep N") != NULL, "%s", out);

    /* Damage: verify and restore exit 1 naming the file; nothing restored. */
    char *victim = some_table(dest);
    cr_assert_eq(tu_flip_bit(victim, 10, 2), 0);
    cr_assert_eq(run(&out, "backup", "verify", dest, NULL, NULL), 1, "%s", out);
    cr_assert(strstr(out, strrchr(victim, '/') + 1) != NULL, "%s", out);
    cr_assert_eq(run(&out, "restore", dest, r2, NULL, NULL), 1, "%s", out);
    cr_assert(!exists(r2));
    cr_assert_eq(run(&out, "backup", "purge", dest, "--keep", "1"), 0, "%s", out);
    cr_assert(strstr(out, "deleted 1 backup, kept 1") != NULL, "%s", out);
    cr_assert_eq(run(&out, "backup", "list", root, NULL, NULL), 2, "not a destination: %s", out);

    free(out), free(victim), free(dbdir), free(dest), free(r1), free(r2);
    tu_rm_rf(root);
    free(root);
}
