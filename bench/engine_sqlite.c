/*
 * engine_sqlite.c: the bench_driver adapter for SQLite (sqlite3.h), the embedded SQL engine, used
 * as a key-value store: one table `kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID` (a B-tree keyed
 * by k, values stored in the tree) in the file kv.sqlite of the database directory.
 *
 * Options: SQLite's defaults (4 KiB pages, automatic checkpoint every 1000 WAL pages, no mmap)
 * except:
 *   journal_mode=WAL   the write-ahead log, so a commit appends to one file, as the LSM engines'
 *                      logs do (the default rollback journal writes every page twice);
 *   synchronous        by durability, below;
 *   cache_size         the memory budget (--max-memory) in KiB, split evenly between the
 *                      connections (one per thread), as the other engines' block caches get it;
 *   busy_timeout       60 s, so that concurrent writers wait for the write lock instead of
 *                      failing with SQLITE_BUSY.
 * Statements are prepared once per connection (SQLITE_PREPARE_PERSISTENT) and reused.
 *
 * Transactions: the driver writes one key per put/del, so each put/del is its own autocommit
 * transaction (one INSERT OR REPLACE or DELETE statement); fillbatch's batches are one
 * BEGIN IMMEDIATE .. COMMIT each, as the other engines apply a batch atomically.
 *
 * Connections: one per driver thread, taken from a pool at thread_new and given back at
 * thread_free, so that a connection's page cache stays warm from one workload to the next (the
 * LSM engines' block caches live as long as the database); the pool is closed at close, which
 * checkpoints the WAL into kv.sqlite and deletes it. Connections are opened with
 * SQLITE_OPEN_NOMUTEX: each is used by one thread at a time.
 *
 * Durability mapping (PRAGMA synchronous in WAL mode):
 *   full    FULL: the WAL is fsynced at every commit; commits are not grouped (SQLite has one
 *           writer at a time and no group commit).
 *   os      NORMAL: a commit write()s its WAL frames, no fsync; the WAL is synced only when a
 *           checkpoint copies it into the database file (as the LSM engines sync a table when
 *           they write one).
 *   memory  OFF: no sync at all, not even at checkpoints (SQLite has no in-process log buffer;
 *           committed writes still survive a process crash).
 *   none    OFF as well: SQLite cannot skip its journal safely; the nearest is memory.
 * A write at a level other than the connection's current one changes the connection's
 * synchronous setting first (only fillsync does so, and it opens its database at full).
 *
 * Iterators: a forward scan is `SELECT k, v FROM kv ORDER BY k`, a backward one the same with
 * DESC; an iterator moves only in the direction it was positioned (seek_first then next,
 * seek_last then prev), which is all the driver does.
 */
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_driver.h"

#define DB_FILE         "kv.sqlite"
#define BUSY_TIMEOUT_MS 60000

enum { ST_PUT, ST_GET, ST_DEL, ST_BEGIN, ST_COMMIT, ST_FWD, ST_REV, ST_COUNT };

static const char *const SQL[ST_COUNT] = {
    [ST_PUT] = "INSERT OR REPLACE INTO kv(k, v) VALUES(?1, ?2)",
    [ST_GET] = "SELECT v FROM kv WHERE k = ?1",
    [ST_DEL] = "DELETE FROM kv WHERE k = ?1",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_FWD] = "SELECT k, v FROM kv ORDER BY k",
    [ST_REV] = "SELECT k, v FROM kv ORDER BY k DESC",
};

typedef struct sql_db sql_db;

typedef struct sql_conn {
    sql_db *d;
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    bench_durability level; /* of its synchronous setting */
    bool in_use;
} sql_conn;

struct sql_db {
    char path[PATH_MAX];
    bench_durability level; /* the open's level */
    long long cache_kib;    /* per connection */
    pthread_mutex_t mu;     /* guards the pool */
    sql_conn **pool;
    size_t pool_len;
    size_t pool_cap;
};

typedef struct sql_iter {
    sql_conn *c;
    sqlite3_stmt *st; /* ST_FWD or ST_REV of c, or NULL before a seek */
    int rc;           /* of the last step: SQLITE_ROW while valid, SQLITE_DONE at the end */
} sql_iter;

static int fail(bench_err *err, sqlite3 *db, const char *what, int rc)
{
    snprintf(err->msg, sizeof(err->msg), "%s: %s", what,
             db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    return BENCH_ERROR;
}

static const char *sync_pragma(bench_durability level)
{
    switch (level) {
    case BENCH_DUR_FULL:
        return "PRAGMA synchronous=FULL";
    case BENCH_DUR_OS:
        return "PRAGMA synchronous=NORMAL";
    case BENCH_DUR_MEMORY:
    case BENCH_DUR_NONE:
        return "PRAGMA synchronous=OFF";
    }
    return "PRAGMA synchronous=NORMAL";
}

/* The page cache of each connection: the whole budget (SQLite has no memtable; its page cache
 * holds dirty pages too) shared by the threads' connections. */
static long long cache_kib_for(const bench_open_opts *opts)
{
    int threads = opts->threads > 0 ? opts->threads : 1;
    long long kib = (long long)(opts->max_memory_bytes / 1024 / (uint64_t)threads);
    return kib < 64 ? 64 : kib;
}

static void describe(const bench_open_opts *opts, char *out, size_t len)
{
    snprintf(out, len,
             "sqlite %s (table kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID; set: "
             "journal_mode=WAL, cache_size=-%lld (KiB) per connection, one connection per thread, "
             "busy_timeout; each put/delete its own transaction)",
             sqlite3_libversion(), cache_kib_for(opts));
}

static const char *durability_desc(bench_durability d)
{
    switch (d) {
    case BENCH_DUR_NONE:
        return "sqlite synchronous=OFF (it cannot skip its journal; nearest to none)";
    case BENCH_DUR_MEMORY:
        return "sqlite synchronous=OFF: commits write()n to the WAL, never synced";
    case BENCH_DUR_OS:
        return "sqlite WAL, synchronous=NORMAL: each commit write()s the WAL, synced only at "
               "checkpoints";
    case BENCH_DUR_FULL:
        return "sqlite WAL, synchronous=FULL: fsync per commit; no group commit";
    }
    return "?";
}

static int exec(sqlite3 *db, const char *sql, bench_err *err)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? BENCH_OK : fail(err, db, sql, rc);
}

static void conn_close(sql_conn *c)
{
    if (c == NULL) {
        return;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(c->st[i]);
    }
    sqlite3_close(c->db);
    free(c);
}

/* Opens one connection with the database's settings and its statements prepared. `first`
 * creates the file (when allowed), switches it to WAL and creates the table. */
static int conn_open(sql_db *d, bool first, bool create, sql_conn **out, bench_err *err)
{
    sql_conn *c = calloc(1, sizeof(*c));
    char sql[96];
    int rc;
    if (c == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return BENCH_ERROR;
    }
    c->d = d;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    rc = sqlite3_open_v2(d->path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err->msg, sizeof(err->msg), "sqlite3_open_v2 %.160s: %s", d->path,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    snprintf(sql, sizeof(sql), "PRAGMA cache_size=-%lld", d->cache_kib);
    if (exec(c->db, sql, err) != BENCH_OK || exec(c->db, sync_pragma(d->level), err) != BENCH_OK) {
        goto fail;
    }
    c->level = d->level;
    if (first &&
        (exec(c->db, "PRAGMA journal_mode=WAL", err) != BENCH_OK ||
         exec(c->db, "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID",
              err) != BENCH_OK)) {
        goto fail;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(c->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i], NULL);
        if (rc != SQLITE_OK) {
            fail(err, c->db, SQL[i], rc);
            goto fail;
        }
    }
    *out = c;
    return BENCH_OK;
fail:
    conn_close(c);
    return BENCH_ERROR;
}

static void free_db(sql_db *d)
{
    for (size_t i = 0; i < d->pool_len; i++) {
        conn_close(d->pool[i]);
    }
    free(d->pool);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static int pool_add(sql_db *d, sql_conn *c, bench_err *err)
{
    if (d->pool_len == d->pool_cap) {
        size_t cap = d->pool_cap ? d->pool_cap * 2 : 8;
        sql_conn **p = realloc(d->pool, cap * sizeof(*p));
        if (p == NULL) {
            snprintf(err->msg, sizeof(err->msg), "out of memory");
            return BENCH_ERROR;
        }
        d->pool = p;
        d->pool_cap = cap;
    }
    d->pool[d->pool_len++] = c;
    return BENCH_OK;
}

static int open_db(const char *dir, const bench_open_opts *opts, void **db, bench_err *err)
{
    sql_db *d = calloc(1, sizeof(*d));
    sql_conn *c = NULL;
    if (d == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return BENCH_ERROR;
    }
    pthread_mutex_init(&d->mu, NULL);
    int n = snprintf(d->path, sizeof(d->path), "%s/%s", dir, DB_FILE);
    if (n < 0 || (size_t)n >= sizeof(d->path)) {
        snprintf(err->msg, sizeof(err->msg), "path too long: %s", dir);
        free_db(d);
        return BENCH_ERROR;
    }
    d->level = opts->durability;
    d->cache_kib = cache_kib_for(opts);
    /* The first connection stays in the pool until close: it is thread 0's afterwards. */
    if (conn_open(d, true, opts->create, &c, err) != BENCH_OK) {
        free_db(d);
        return BENCH_ERROR;
    }
    if (pool_add(d, c, err) != BENCH_OK) {
        conn_close(c);
        free_db(d);
        return BENCH_ERROR;
    }
    *db = d;
    return BENCH_OK;
}

static int close_db(void *db, bench_err *err)
{
    (void)err;
    free_db(db); /* the last connection's close checkpoints the WAL and deletes it */
    return BENCH_OK;
}

static int thread_new(void *db, void **thread, bench_err *err)
{
    sql_db *d = db;
    sql_conn *c = NULL;
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->pool_len && c == NULL; i++) {
        if (!d->pool[i]->in_use) {
            c = d->pool[i];
        }
    }
    if (c == NULL) {
        if (conn_open(d, false, false, &c, err) != BENCH_OK) {
            pthread_mutex_unlock(&d->mu);
            return BENCH_ERROR;
        }
        if (pool_add(d, c, err) != BENCH_OK) {
            pthread_mutex_unlock(&d->mu);
            conn_close(c);
            return BENCH_ERROR;
        }
    }
    c->in_use = true;
    pthread_mutex_unlock(&d->mu);
    *thread = c;
    return BENCH_OK;
}

static void thread_free(void *thread)
{
    sql_conn *c = thread;
    if (c != NULL) {
        pthread_mutex_lock(&c->d->mu);
        c->in_use = false;
        pthread_mutex_unlock(&c->d->mu);
    }
}

static int set_level(sql_conn *c, bench_durability level, bench_err *err)
{
    if (level == c->level) {
        return BENCH_OK;
    }
    if (exec(c->db, sync_pragma(level), err) != BENCH_OK) {
        return BENCH_ERROR;
    }
    c->level = level;
    return BENCH_OK;
}

/* Steps a statement that returns no row, then resets it (which also clears the error state). */
static int step_done(sql_conn *c, sqlite3_stmt *st, const char *what, bench_err *err)
{
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? BENCH_OK : fail(err, c->db, what, rc);
    sqlite3_reset(st);
    return ret;
}

static int bind_blob(sql_conn *c, sqlite3_stmt *st, int i, bench_slice s, bench_err *err)
{
    /* A zero-length blob with a NULL pointer would bind SQL NULL: pass a real pointer. */
    int rc = sqlite3_bind_blob(st, i, s.len ? s.data : "", (int)s.len, SQLITE_STATIC);
    return rc == SQLITE_OK ? BENCH_OK : fail(err, c->db, "sqlite3_bind_blob", rc);
}

static int put1(sql_conn *c, bench_slice key, bench_slice value, bench_err *err)
{
    sqlite3_stmt *st = c->st[ST_PUT];
    if (bind_blob(c, st, 1, key, err) != BENCH_OK || bind_blob(c, st, 2, value, err) != BENCH_OK) {
        return BENCH_ERROR;
    }
    return step_done(c, st, "insert", err);
}

static int put(void *thread, bench_slice key, bench_slice value, bench_durability level,
               bench_err *err)
{
    sql_conn *c = thread;
    if (set_level(c, level, err) != BENCH_OK) {
        return BENCH_ERROR;
    }
    return put1(c, key, value, err);
}

static int get(void *thread, bench_slice key, size_t *value_len, bench_err *err)
{
    sql_conn *c = thread;
    sqlite3_stmt *st = c->st[ST_GET];
    if (bind_blob(c, st, 1, key, err) != BENCH_OK) {
        return BENCH_ERROR;
    }
    int rc = sqlite3_step(st);
    int ret;
    if (rc == SQLITE_ROW) {
        /* Fetch the value as a caller would (the pointer is SQLite's; no copy is made). */
        (void)sqlite3_column_blob(st, 0);
        *value_len = (size_t)sqlite3_column_bytes(st, 0);
        ret = BENCH_OK;
    } else if (rc == SQLITE_DONE) {
        ret = BENCH_NOT_FOUND;
    } else {
        ret = fail(err, c->db, "select", rc);
    }
    sqlite3_reset(st); /* ends the read transaction */
    return ret;
}

static int del(void *thread, bench_slice key, bench_durability level, bench_err *err)
{
    sql_conn *c = thread;
    sqlite3_stmt *st = c->st[ST_DEL];
    if (set_level(c, level, err) != BENCH_OK || bind_blob(c, st, 1, key, err) != BENCH_OK) {
        return BENCH_ERROR;
    }
    return step_done(c, st, "delete", err);
}

static int write_batch(void *thread, const bench_slice *keys, const bench_slice *values, size_t n,
                       bench_durability level, bench_err *err)
{
    sql_conn *c = thread;
    if (set_level(c, level, err) != BENCH_OK ||
        step_done(c, c->st[ST_BEGIN], "begin", err) != BENCH_OK) {
        return BENCH_ERROR;
    }
    for (size_t i = 0; i < n; i++) {
        if (put1(c, keys[i], values[i], err) != BENCH_OK) {
            (void)sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return BENCH_ERROR;
        }
    }
    if (step_done(c, c->st[ST_COMMIT], "commit", err) != BENCH_OK) {
        (void)sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return BENCH_ERROR;
    }
    return BENCH_OK;
}

static int iter_new(void *thread, void **iter, bench_err *err)
{
    sql_iter *it = calloc(1, sizeof(*it));
    if (it == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return BENCH_ERROR;
    }
    it->c = thread;
    it->rc = SQLITE_DONE;
    *iter = it;
    return BENCH_OK;
}

static void iter_free(void *iter)
{
    sql_iter *it = iter;
    if (it != NULL) {
        if (it->st != NULL) {
            sqlite3_reset(it->st);
        }
        free(it);
    }
}

static void seek(sql_iter *it, int which)
{
    if (it->st != NULL) {
        sqlite3_reset(it->st);
    }
    it->st = it->c->st[which];
    it->rc = sqlite3_step(it->st);
}

static void iter_seek_first(void *iter)
{
    seek(iter, ST_FWD);
}

static void iter_seek_last(void *iter)
{
    seek(iter, ST_REV);
}

static bool iter_valid(void *iter)
{
    return ((sql_iter *)iter)->rc == SQLITE_ROW;
}

/* next after seek_first, prev after seek_last: both step the statement the seek chose. */
static void iter_step(void *iter)
{
    sql_iter *it = iter;
    if (it->rc == SQLITE_ROW) {
        it->rc = sqlite3_step(it->st);
    }
}

static bench_slice column(sql_iter *it, int col)
{
    const void *p = sqlite3_column_blob(it->st, col);
    return (bench_slice){p, (size_t)sqlite3_column_bytes(it->st, col)};
}

static bench_slice iter_key(void *iter)
{
    return column(iter, 0);
}

static bench_slice iter_value(void *iter)
{
    return column(iter, 1);
}

static int iter_status(void *iter, bench_err *err)
{
    sql_iter *it = iter;
    if (it->rc == SQLITE_ROW || it->rc == SQLITE_DONE) {
        return BENCH_OK;
    }
    return fail(err, it->c->db, "scan", it->rc);
}

const bench_engine bench_engine_sqlite = {
    .name = "sqlite",
    .marker_file = DB_FILE,
    .describe = describe,
    .durability_desc = durability_desc,
    .open = open_db,
    .close = close_db,
    .recovered_records = NULL,
    .stats = NULL,
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
    .iter_next = iter_step,
    .iter_prev = iter_step,
    .iter_key = iter_key,
    .iter_value = iter_value,
    .iter_status = iter_status,
};
