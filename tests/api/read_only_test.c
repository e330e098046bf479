/* shale_options.read_only: the open recovers what a normal open would, answers every read the
 * same, refuses every write with SHALE_INVALID, and leaves every file of the directory
 * byte-identical, a torn log tail included. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

TestSuite(read_only);

/* ---- the directory's contents, to compare before and after ---- */

typedef struct file_print {
    char name[64];
    uint64_t size;
    uint64_t hash; /* FNV-1a 64 of the contents */
} file_print;

typedef struct dir_print {
    file_print f[256];
    size_t n;
} dir_print;

static void print_dir(const char *dir, dir_print *out)
{
    size_t count = 0;
    char **names = tu_list_dir(dir, &count);
    cr_assert(count <= 256, "%zu files", count);
    out->n = 0;
    for (size_t i = 0; i < count; i++) {
        file_print *p = &out->f[out->n++];
        snprintf(p->name, sizeof p->name, "%s", names[i]);
        char *path = tu_path(dir, names[i]);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f, "open %s", path);
        uint64_t h = 1469598103934665603ull, size = 0;
        int c;
        while ((c = fgetc(f)) != EOF) {
            h = (h ^ (uint8_t)c) * 1099511628211ull;
            size++;
        }
        fclose(f);
        p->size = size;
        p->hash = h;
        free(path);
    }
    tu_free_names(names, count);
}

static void assert_same_dir(const dir_print *a, const dir_print *b, const char *ctx)
{
    for (size_t i = 0; i < a->n && i < b->n; i++) {
        cr_assert_str_eq(a->f[i].name, b->f[i].name, "%s: file %zu", ctx, i);
        cr_assert_eq(a->f[i].size, b->f[i].size, "%s: %s changed size (%llu -> %llu)", ctx,
                     a->f[i].name, (unsigned long long)a->f[i].size,
                     (unsigned long long)b->f[i].size);
        cr_assert_eq(a->f[i].hash, b->f[i].hash, "%s: %s changed contents", ctx, a->f[i].name);
    }
    cr_assert_eq(a->n, b->n, "%s: %zu files before, %zu after", ctx, a->n, b->n);
}

/* The largest-numbered *.log in dir (malloc'ed path), or NULL. */
static char *last_log(const char *dir)
{
    size_t count = 0;
    char **names = tu_list_dir(dir, &count);
    char *best = NULL;
    for (size_t i = 0; i < count; i++) {
        if (tu_is_numbered(names[i], "log")) {
            free(best);
            best = tu_path(dir, names[i]); /* sorted: the last one wins */
        }
    }
    tu_free_names(names, count);
    return best;
}

#define NKEYS 3000

static shale_slice value_of(char *buf, uint64_t i)
{
    return api_value(buf, i);
}

/* A database at root/db with keys in tables (flushed and compacted) and in two log segments,
 * the last with a torn tail, as a crash leaves it. */
static char *make_crashed_db(const char *root)
{
    char *path = tu_path(root, "db");
    shale_options o = tu_small_lsm_options(4);
    o.create_if_missing = true;
    shale_db *db = tu_open(path, &o);
    char kb[32], vb[256];
    for (uint64_t i = 0; i < NKEYS; i++) {
        tu_putn(db, tu_key(kb, i), value_of(vb, i));
    }
    TU_OK(shale_flush(db, &ERR));
    for (uint64_t i = 0; i < NKEYS; i += 7) {
        TU_OK(shale_delete(db, NULL, tu_key(kb, i), &ERR));
    }
    for (uint64_t i = NKEYS; i < NKEYS + 200; i++) {
        tu_putn(db, tu_key(kb, i), value_of(vb, i * 3));
    }
    tu_close_as_crash(db, path);
    char *log = last_log(path);
    cr_assert_not_null(log, "the crash left no log");
    int64_t size = tu_file_size(log);
    cr_assert_gt(size, 16);
    cr_assert_eq(tu_truncate(log, (uint64_t)size - 5), 0);
    free(log);
    return path;
}

/* Asserts a and b hold the same keys and values, by a full scan and point reads. */
static void assert_same_data(shale_db *a, shale_db *b)
{
    shale_iter *ia = NULL, *ib = NULL;
    TU_OK(shale_iter_new(a, NULL, &ia, &ERR));
    TU_OK(shale_iter_new(b, NULL, &ib, &ERR));
    shale_iter_seek_first(ia);
    shale_iter_seek_first(ib);
    size_t n = 0;
    while (shale_iter_valid(ia) && shale_iter_valid(ib)) {
        shale_slice ka = shale_iter_key(ia), kb = shale_iter_key(ib);
        shale_slice va = shale_iter_value(ia), vb = shale_iter_value(ib);
        cr_assert(ka.len == kb.len && memcmp(ka.data, kb.data, ka.len) == 0, "key %zu differs", n);
        cr_assert(va.len == vb.len && memcmp(va.data, vb.data, va.len) == 0, "value %zu differs",
                  n);
        shale_iter_next(ia);
        shale_iter_next(ib);
        n++;
    }
    cr_assert_not(shale_iter_valid(ia) || shale_iter_valid(ib), "scans end apart at %zu", n);
    TU_OK(shale_iter_status(ia, &ERR));
    TU_OK(shale_iter_status(ib, &ERR));
    shale_iter_free(ia);
    shale_iter_free(ib);
    cr_assert_gt(n, NKEYS / 2, "only %zu keys", n);

    char kbuf[32];
    shale_buf x = {0}, y = {0};
    for (uint64_t i = 0; i < NKEYS + 250; i += 3) {
        shale_error ea, eb;
        shale_code ra = shale_get(a, NULL, tu_key(kbuf, i), &x, &ea);
        shale_code rb = shale_get(b, NULL, tu_key(kbuf, i), &y, &eb);
        cr_assert_eq(ra, rb, "key %llu: %d vs %d", (unsigned long long)i, ra, rb);
        cr_assert(x.len == y.len && (x.len == 0 || memcmp(x.data, y.data, x.len) == 0),
                  "key %llu: values differ", (unsigned long long)i);
    }
    shale_buf_free(&x);
    shale_buf_free(&y);
}

Test(read_only, reads_match_a_normal_open_and_no_file_changes)
{
    char *root = tu_tmpdir("api-ro");
    char *path = make_crashed_db(root);
    char *copy = tu_path(root, "copy");
    tu_copy_dir(path, copy);

    dir_print before, after;
    print_dir(path, &before);
    shale_options ro = {.read_only = true};
    shale_db *rdb = tu_open(path, &ro);
    shale_db *ndb = tu_open(copy, NULL); /* a normal open of the same files: it cuts the tail */
    assert_same_data(rdb, ndb);

    shale_stats rs = tu_stats(rdb), ns = tu_stats(ndb);
    cr_assert_gt(ns.truncated_bytes, 0, "the normal open cut no torn tail");
    cr_assert_eq(rs.truncated_bytes, ns.truncated_bytes, "torn bytes: %llu read-only, %llu normal",
                 (unsigned long long)rs.truncated_bytes, (unsigned long long)ns.truncated_bytes);
    cr_assert_eq(rs.last_sequence, ns.last_sequence);
    cr_assert_eq(rs.recovered_records, ns.recovered_records);
    cr_assert_gt(rs.level_tables[0] + rs.level_tables[1] + rs.level_tables[2], 0,
                 "the data is in tables too");

    /* Snapshots, multi_get and a read-only transaction work. */
    shale_snapshot *snap = shale_snapshot_get(rdb);
    cr_assert_not_null(snap);
    char kb[32], vb[256];
    shale_read_opts sro = {.snapshot = snap};
    shale_buf v = {0};
    TU_OK(shale_get(rdb, &sro, tu_key(kb, 1), &v, &ERR));
    shale_slice want = value_of(vb, 1);
    cr_assert(v.len == want.len && memcmp(v.data, want.data, v.len) == 0);
    shale_snapshot_release(rdb, snap);
    shale_slice keys[2] = {tu_key(kb, 2), tu_key(vb, 7)}; /* key 7 was deleted */
    shale_buf vals[2] = {{0}, {0}};
    shale_code codes[2];
    TU_OK(shale_multi_get(rdb, NULL, 2, keys, vals, codes, &ERR));
    cr_assert_eq(codes[0], SHALE_OK);
    cr_assert_eq(codes[1], SHALE_NOT_FOUND);
    shale_buf_free(&vals[0]);
    shale_buf_free(&vals[1]);
    shale_txn *txn = NULL;
    TU_OK(shale_txn_begin(rdb, NULL, &txn, &ERR));
    TU_OK(shale_txn_get(txn, tu_key(kb, 2), &v, &ERR));
    TU_OK(shale_txn_commit(txn, &ERR)); /* nothing written: fine */
    shale_txn_free(txn);
    shale_buf_free(&v);

    TU_OK(shale_close(rdb, &ERR));
    print_dir(path, &after);
    assert_same_dir(&before, &after, "read-only session");

    /* Again, and a later normal open still recovers everything. */
    rdb = tu_open(path, &ro);
    assert_same_data(rdb, ndb);
    TU_OK(shale_close(rdb, &ERR));
    print_dir(path, &after);
    assert_same_dir(&before, &after, "second read-only session");
    shale_db *wdb = tu_open(path, NULL);
    assert_same_data(wdb, ndb);
    TU_OK(shale_close(wdb, &ERR));
    TU_OK(shale_close(ndb, &ERR));

    tu_rm_rf(root);
    free(copy);
    free(path);
    free(root);
    tu_assert_no_leaks();
}

Test(read_only, every_write_is_refused)
{
    char *root = tu_tmpdir("api-ro");
    char *path = tu_path(root, "db");
    shale_options c = {.create_if_missing = true};
    shale_db *db = tu_open(path, &c);
    tu_put(db, "a", "1");
    tu_put(db, "b", "2");
    TU_OK(shale_doc_insert(db, "people", tu_str("{\"_id\":\"x\",\"age\":3}"), NULL, &ERR));
    TU_OK(shale_index_create(db, "people", "age", &ERR));
    TU_OK(shale_close(db, &ERR));

    dir_print before, after;
    print_dir(path, &before);
    shale_options ro = {.read_only = true};
    db = tu_open(path, &ro);

    TU_CODE(SHALE_INVALID, shale_put(db, NULL, tu_str("c"), tu_str("3"), &ERR));
    cr_assert(strstr(tu_last_msg, "read-only") != NULL, "%s", tu_last_msg);
    TU_CODE(SHALE_INVALID, shale_put_ttl(db, NULL, tu_str("c"), tu_str("3"), 1, &ERR));
    TU_CODE(SHALE_INVALID, shale_delete(db, NULL, tu_str("a"), &ERR));
    uint64_t nv = 0;
    TU_CODE(SHALE_INVALID,
            shale_put_if_version(db, NULL, tu_str("a"), tu_str("9"), tu_seq(db, "a"), &nv, &ERR));
    TU_CODE(SHALE_INVALID, shale_delete_if_version(db, NULL, tu_str("a"), tu_seq(db, "a"), &ERR));
    shale_batch *b = shale_batch_new();
    TU_OK(shale_batch_put(b, tu_str("c"), tu_str("3"), &ERR));
    TU_CODE(SHALE_INVALID, shale_write(db, NULL, b, &ERR));
    shale_batch_free(b);
    shale_txn *txn = NULL;
    TU_OK(shale_txn_begin(db, NULL, &txn, &ERR));
    TU_OK(shale_txn_put(txn, tu_str("c"), tu_str("3"), &ERR)); /* buffered only */
    TU_CODE(SHALE_INVALID, shale_txn_commit(txn, &ERR));
    shale_txn_free(txn);
    TU_CODE(SHALE_INVALID, shale_flush(db, &ERR));
    TU_CODE(SHALE_INVALID, shale_compact(db, &ERR));
    TU_CODE(SHALE_INVALID, shale_sync(db, SHALE_DURABILITY_FULL, &ERR));
    char *cp = tu_path(root, "cp");
    char *bk = tu_path(root, "bk");
    TU_CODE(SHALE_INVALID, shale_checkpoint(db, cp, &ERR));
    TU_CODE(SHALE_INVALID, shale_backup(db, bk, NULL, &ERR));
    cr_assert_eq(tu_file_size(cp), -1, "a refused checkpoint made its directory");
    cr_assert_eq(tu_file_size(bk), -1, "a refused backup made its directory");
    TU_CODE(SHALE_INVALID,
            shale_doc_insert(db, "people", tu_str("{\"_id\":\"y\",\"age\":4}"), NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_delete(db, "people", tu_str("x"), &ERR));
    TU_CODE(SHALE_INVALID, shale_coll_create(db, "other", &ERR));
    TU_CODE(SHALE_INVALID, shale_index_create(db, "people", "name", &ERR));
    TU_CODE(SHALE_INVALID, shale_coll_drop(db, "people", &ERR));

    /* Reads still work, the document layer's too. */
    tu_expect(db, "a", "1");
    tu_expect(db, "c", NULL);
    shale_buf out = {0};
    TU_OK(shale_doc_get(db, "people", tu_str("x"), &out, &ERR));
    cr_assert(out.len > 0);
    TU_OK(shale_index_list(db, "people", &out, &ERR));
    cr_assert(strstr((const char *)out.data, "age") != NULL);
    shale_buf_free(&out);
    shale_stats st = tu_stats(db);
    cr_assert_eq(st.writes, 0);

    TU_OK(shale_close(db, &ERR));
    print_dir(path, &after);
    assert_same_dir(&before, &after, "refused writes");
    tu_rm_rf(root);
    free(cp);
    free(bk);
    free(path);
    free(root);
    tu_assert_no_leaks();
}

Test(read_only, creates_nothing)
{
    char *root = tu_tmpdir("api-ro");
    char *path = tu_path(root, "db");
    shale_db *db = NULL;

    shale_options both = {.read_only = true, .create_if_missing = true};
    TU_CODE(SHALE_INVALID, shale_open(path, &both, &db, &ERR));
    cr_assert_null(db);
    cr_assert_eq(tu_file_size(path), -1, "a refused open created %s", path);
    shale_options ro = {.read_only = true};
    TU_CODE(SHALE_INVALID, shale_open(path, &ro, &db, &ERR));
    cr_assert_eq(tu_file_size(path), -1, "a refused open created %s", path);
    /* An empty directory is no database either, and is left empty (no LOCK). */
    TU_CODE(SHALE_INVALID, shale_open(root, &ro, &db, &ERR));
    size_t count = 0;
    char **names = tu_list_dir(root, &count);
    cr_assert_eq(count, 0, "a refused open left %s in the directory", count ? names[0] : "");
    tu_free_names(names, count);

    /* A database made with create_if_missing refuses the pair too, and opens read-only. */
    shale_options c = {.create_if_missing = true};
    db = tu_open(path, &c);
    TU_OK(shale_close(db, &ERR));
    TU_CODE(SHALE_INVALID, shale_open(path, &both, &db, &ERR));
    db = tu_open(path, &ro);
    tu_expect(db, "k", NULL);
    TU_OK(shale_close(db, &ERR));
    tu_rm_rf(root);
    free(path);
    free(root);
}

Test(read_only, takes_the_lock)
{
    char *root = tu_tmpdir("api-ro");
    char *path = tu_path(root, "db");
    shale_options c = {.create_if_missing = true};
    shale_db *db = tu_open(path, &c), *other = NULL;
    tu_put(db, "k", "v");
    shale_options ro = {.read_only = true};
    /* A writer holds it: the read-only open is refused... */
    TU_CODE(SHALE_BUSY, shale_open(path, &ro, &other, &ERR));
    TU_OK(shale_close(db, &ERR));
    /* ...and a read-only session keeps out both kinds of open. */
    db = tu_open(path, &ro);
    TU_CODE(SHALE_BUSY, shale_open(path, &ro, &other, &ERR));
    TU_CODE(SHALE_BUSY, shale_open(path, NULL, &other, &ERR));
    tu_expect(db, "k", "v");
    TU_OK(shale_close(db, &ERR));
    TU_CODE(SHALE_CLOSED, shale_put(db, NULL, tu_str("k"), tu_str("w"), &ERR));
    db = tu_open(path, NULL);
    tu_put(db, "k", "w");
    TU_OK(shale_close(db, &ERR));
    tu_rm_rf(root);
    free(path);
    free(root);
}
