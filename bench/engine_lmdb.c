/*
 * engine_lmdb.c: the bench_driver adapter for LMDB (lmdb.h).
 *
 * LMDB is a copy-on-write B+tree in one memory map: there is no log and no compression, so only
 * the map size and the sync flags are set (default page size, one unnamed database, default
 * flags otherwise). LMDB has no cache of its own and so no memory budget: it reads and writes
 * through the map, and the pages it has touched count in the process's RSS as mapped file pages
 * (page cache), up to the whole database. The driver's --max-memory does not apply to it; its map
 * size is four times the data the run may write (at least 1 GiB), so the map never fills. Every put
 * or delete is its own write transaction, as every Shale write is its own commit; LMDB serialises
 * writers, so it has no group commit. A thread reads through one read-only transaction that it
 * resets after each get and renews for the next (LMDB's cheap read pattern; the value is not
 * copied, as LMDB returns a pointer into the map).
 *
 * Durability mapping (environment flags):
 *   full    default flags: each commit fdatasyncs the data pages, then writes and syncs the
 *           meta page (two syncs per commit).
 *   os      MDB_NOSYNC: each commit writes its pages to the OS (pwrite), no sync.
 *   memory  MDB_NOSYNC | MDB_WRITEMAP: commits write straight into the shared map; the kernel
 *           writes it back. LMDB has no weaker mode (this still survives a process crash).
 *   none    the same as memory: LMDB cannot skip persistence.
 * A write whose level differs from the open level toggles MDB_NOSYNC inside its write
 * transaction (LMDB allows that flag to change at run time; the writer lock keeps writers from
 * racing on it). The driver only does that after fillsync, which opens with full.
 */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_driver.h"

#define MAP_MIN_BYTES (1ull << 30)

typedef struct lmdb {
    MDB_env *env;
    MDB_dbi dbi;
    size_t map_bytes;
    bool writemap;
} lmdb;

typedef struct lmdb_thread {
    lmdb *l;
    MDB_txn *rtxn; /* reset between reads; begun on first use, in the thread that uses it */
    bool rtxn_active;
} lmdb_thread;

typedef struct lmdb_iter {
    lmdb_thread *t;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc; /* of the last move: 0 valid, MDB_NOTFOUND at the end, else an error */
} lmdb_iter;

static int fail(bench_err *err, const char *what, int rc)
{
    snprintf(err->msg, sizeof(err->msg), "%s: %s", what, mdb_strerror(rc));
    return BENCH_ERROR;
}

/* Room for the data four times over (B-tree slack and copy-on-write pages); the map is virtual,
 * so a generous size costs nothing. */
static size_t map_bytes_for(const bench_open_opts *opts)
{
    unsigned long long map = opts->expected_bytes * 4 + (256ull << 20);
    return (size_t)(map < MAP_MIN_BYTES ? MAP_MIN_BYTES : map);
}

static void describe(const bench_open_opts *opts, char *out, size_t len)
{
    snprintf(out, len,
             "lmdb %s (map size %zu MiB; no memory budget: its RSS is the page cache it maps; "
             "one write transaction per write)",
             mdb_version(NULL, NULL, NULL), map_bytes_for(opts) >> 20);
}

static const char *durability_desc(bench_durability d)
{
    switch (d) {
    case BENCH_DUR_NONE:
        return "lmdb MDB_NOSYNC|MDB_WRITEMAP (it cannot skip persistence; nearest to none)";
    case BENCH_DUR_MEMORY:
        return "lmdb MDB_NOSYNC|MDB_WRITEMAP: commits write into the shared map, no sync";
    case BENCH_DUR_OS:
        return "lmdb MDB_NOSYNC: each commit pwrite()s its pages, no sync";
    case BENCH_DUR_FULL:
        return "lmdb default: each commit syncs data then meta; writers are serialised";
    }
    return "?";
}

static int open_db(const char *dir, const bench_open_opts *opts, void **db, bench_err *err)
{
    lmdb *l = calloc(1, sizeof(*l));
    MDB_txn *txn = NULL;
    int rc;
    if (l == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return BENCH_ERROR;
    }
    l->map_bytes = map_bytes_for(opts);
    unsigned int flags = 0;
    if (opts->durability != BENCH_DUR_FULL) {
        flags |= MDB_NOSYNC;
    }
    if (opts->durability == BENCH_DUR_MEMORY || opts->durability == BENCH_DUR_NONE) {
        flags |= MDB_WRITEMAP;
        l->writemap = true;
    }
    if ((rc = mdb_env_create(&l->env)) != 0) {
        free(l);
        return fail(err, "mdb_env_create", rc);
    }
    if ((rc = mdb_env_set_mapsize(l->env, l->map_bytes)) != 0) {
        fail(err, "mdb_env_set_mapsize", rc);
        goto fail_env;
    }
    /* One reader slot per driver thread (up to its 1024). */
    if ((rc = mdb_env_set_maxreaders(l->env, 1100)) != 0) {
        fail(err, "mdb_env_set_maxreaders", rc);
        goto fail_env;
    }
    if ((rc = mdb_env_open(l->env, dir, flags, 0600)) != 0) {
        snprintf(err->msg, sizeof(err->msg), "mdb_env_open %s: %s", dir, mdb_strerror(rc));
        goto fail_env;
    }
    if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0) {
        fail(err, "mdb_txn_begin", rc);
        goto fail_env;
    }
    if ((rc = mdb_dbi_open(txn, NULL, 0, &l->dbi)) != 0) {
        mdb_txn_abort(txn);
        fail(err, "mdb_dbi_open", rc);
        goto fail_env;
    }
    if ((rc = mdb_txn_commit(txn)) != 0) {
        fail(err, "mdb_txn_commit", rc);
        goto fail_env;
    }
    *db = l;
    return BENCH_OK;
fail_env:
    mdb_env_close(l->env);
    free(l);
    return BENCH_ERROR;
}

static int close_db(void *db, bench_err *err)
{
    lmdb *l = db;
    (void)err;
    /* Under MDB_NOSYNC the last commits stay unsynced: close does not sync them either, as
     * Shale's close at os does not fsync. */
    mdb_env_close(l->env);
    free(l);
    return BENCH_OK;
}

static void stats(void *db, char *out, size_t len)
{
    lmdb *l = db;
    MDB_stat st;
    MDB_envinfo info;
    if (mdb_env_stat(l->env, &st) != 0 || mdb_env_info(l->env, &info) != 0) {
        snprintf(out, len, "mdb_env_stat failed");
        return;
    }
    snprintf(out, len,
             "entries=%zu depth=%u branch_pages=%zu leaf_pages=%zu overflow_pages=%zu "
             "last_pgno=%zu map_bytes=%zu",
             st.ms_entries, st.ms_depth, st.ms_branch_pages, st.ms_leaf_pages, st.ms_overflow_pages,
             info.me_last_pgno, info.me_mapsize);
}

static int thread_new(void *db, void **thread, bench_err *err)
{
    lmdb_thread *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return BENCH_ERROR;
    }
    t->l = db;
    *thread = t;
    return BENCH_OK;
}

static void thread_free(void *thread)
{
    lmdb_thread *t = thread;
    if (t != NULL) {
        if (t->rtxn) {
            mdb_txn_abort(t->rtxn);
        }
        free(t);
    }
}

/* Starts (or renews) the thread's read transaction. */
static int read_begin(lmdb_thread *t, bench_err *err)
{
    int rc =
        t->rtxn ? mdb_txn_renew(t->rtxn) : mdb_txn_begin(t->l->env, NULL, MDB_RDONLY, &t->rtxn);
    if (rc != 0) {
        return fail(err, "mdb read transaction", rc);
    }
    t->rtxn_active = true;
    return BENCH_OK;
}

static void read_end(lmdb_thread *t)
{
    if (t->rtxn_active) {
        mdb_txn_reset(t->rtxn);
        t->rtxn_active = false;
    }
}

/* One write transaction around put (value != NULL) or delete. */
static int write1(lmdb_thread *t, bench_slice key, const bench_slice *value, bench_durability level,
                  bench_err *err)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(t->l->env, NULL, 0, &txn);
    if (rc != 0) {
        return fail(err, "mdb_txn_begin", rc);
    }
    unsigned int flags = 0;
    (void)mdb_env_get_flags(t->l->env, &flags);
    bool want_nosync = level != BENCH_DUR_FULL;
    if (want_nosync != ((flags & MDB_NOSYNC) != 0)) {
        (void)mdb_env_set_flags(t->l->env, MDB_NOSYNC, want_nosync);
    }
    MDB_val k = {key.len, (void *)key.data};
    if (value != NULL) {
        MDB_val v = {value->len, (void *)value->data};
        rc = mdb_put(txn, t->l->dbi, &k, &v, 0);
    } else {
        rc = mdb_del(txn, t->l->dbi, &k, NULL);
        if (rc == MDB_NOTFOUND) {
            rc = 0; /* deleting a missing key is a success, as in the other engines */
        }
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return fail(err, value ? "mdb_put" : "mdb_del", rc);
    }
    rc = mdb_txn_commit(txn);
    return rc == 0 ? BENCH_OK : fail(err, "mdb_txn_commit", rc);
}

static int put(void *thread, bench_slice key, bench_slice value, bench_durability level,
               bench_err *err)
{
    return write1(thread, key, &value, level, err);
}

static int del(void *thread, bench_slice key, bench_durability level, bench_err *err)
{
    return write1(thread, key, NULL, level, err);
}

static int get(void *thread, bench_slice key, size_t *value_len, bench_err *err)
{
    lmdb_thread *t = thread;
    if (read_begin(t, err) != BENCH_OK) {
        return BENCH_ERROR;
    }
    MDB_val k = {key.len, (void *)key.data}, v;
    int rc = mdb_get(t->rtxn, t->l->dbi, &k, &v);
    read_end(t);
    if (rc == 0) {
        *value_len = v.mv_size;
        return BENCH_OK;
    }
    return rc == MDB_NOTFOUND ? BENCH_NOT_FOUND : fail(err, "mdb_get", rc);
}

static int write_batch(void *thread, const bench_slice *keys, const bench_slice *values, size_t n,
                       bench_durability level, bench_err *err)
{
    lmdb_thread *t = thread;
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(t->l->env, NULL, 0, &txn);
    if (rc != 0) {
        return fail(err, "mdb_txn_begin", rc);
    }
    unsigned int flags = 0;
    (void)mdb_env_get_flags(t->l->env, &flags);
    bool want_nosync = level != BENCH_DUR_FULL;
    if (want_nosync != ((flags & MDB_NOSYNC) != 0)) {
        (void)mdb_env_set_flags(t->l->env, MDB_NOSYNC, want_nosync);
    }
    for (size_t i = 0; i < n; i++) {
        MDB_val k = {keys[i].len, (void *)keys[i].data};
        MDB_val v = {values[i].len, (void *)values[i].data};
        rc = mdb_put(txn, t->l->dbi, &k, &v, 0);
        if (rc != 0) {
            mdb_txn_abort(txn);
            return fail(err, "mdb_put", rc);
        }
    }
    rc = mdb_txn_commit(txn);
    return rc == 0 ? BENCH_OK : fail(err, "mdb_txn_commit", rc);
}

static int iter_new(void *thread, void **iter, bench_err *err)
{
    lmdb_thread *t = thread;
    lmdb_iter *it = calloc(1, sizeof(*it));
    if (it == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return BENCH_ERROR;
    }
    if (read_begin(t, err) != BENCH_OK) {
        free(it);
        return BENCH_ERROR;
    }
    int rc = mdb_cursor_open(t->rtxn, t->l->dbi, &it->cur);
    if (rc != 0) {
        read_end(t);
        free(it);
        return fail(err, "mdb_cursor_open", rc);
    }
    it->t = t;
    it->rc = MDB_NOTFOUND;
    *iter = it;
    return BENCH_OK;
}

static void iter_free(void *iter)
{
    lmdb_iter *it = iter;
    if (it != NULL) {
        mdb_cursor_close(it->cur);
        read_end(it->t);
        free(it);
    }
}

static void move(lmdb_iter *it, MDB_cursor_op op)
{
    it->rc = mdb_cursor_get(it->cur, &it->k, &it->v, op);
}

static void iter_seek_first(void *iter)
{
    move(iter, MDB_FIRST);
}

static void iter_seek_last(void *iter)
{
    move(iter, MDB_LAST);
}

static bool iter_valid(void *iter)
{
    return ((lmdb_iter *)iter)->rc == 0;
}

static void iter_next(void *iter)
{
    move(iter, MDB_NEXT);
}

static void iter_prev(void *iter)
{
    move(iter, MDB_PREV);
}

static bench_slice iter_key(void *iter)
{
    lmdb_iter *it = iter;
    return (bench_slice){it->k.mv_data, it->k.mv_size};
}

static bench_slice iter_value(void *iter)
{
    lmdb_iter *it = iter;
    return (bench_slice){it->v.mv_data, it->v.mv_size};
}

static int iter_status(void *iter, bench_err *err)
{
    lmdb_iter *it = iter;
    if (it->rc == 0 || it->rc == MDB_NOTFOUND) {
        return BENCH_OK;
    }
    return fail(err, "mdb_cursor_get", it->rc);
}

const bench_engine bench_engine_lmdb = {
    .name = "lmdb",
    .marker_file = "data.mdb",
    .describe = describe,
    .durability_desc = durability_desc,
    .open = open_db,
    .close = close_db,
    .recovered_records = NULL,
    .stats = stats,
    .thread_new = thread_new,
    .thread_free = thread_free,
    .put = put,
    .get = get,
    .del = del,
    .write_batch = write_batch,
    .iter_new = iter_new,
    .iter_free = iter_free,
    .iter_seek_first = iter_seek_first,
    .iter_seek_last = iter_seek_last,
    .iter_valid = iter_valid,
    .iter_next = iter_next,
    .iter_prev = iter_prev,
    .iter_key = iter_key,
    .iter_value = iter_value,
    .iter_status = iter_status,
};
