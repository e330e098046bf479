/*
 * engine_shale.c: the bench_driver adapter for Shale, through include/shale.h only.
 *
 * The database is opened with default options (LZ4 block compression, bloom filters of 10 bits
 * per key, write buffer max_memory / 8, block cache the rest less two write buffers) except
 * create_if_missing, the durability level and max_memory_mb, set to the driver's budget
 * (--max-memory, default 256 = Shale's default). Each write passes its level in
 * shale_write_opts, so fillsync's per-write FULL is Shale's own group-committed fdatasync. A
 * thread keeps one shale_buf for its reads (the API's no-malloc-per-get pattern).
 *
 * Transactions (txndisjoint, txnhot) are shale_txn at the default isolation (SNAPSHOT: a commit
 * conflicts when a key it writes was written by someone else since its begin; the workloads
 * write every key they read, so SERIALIZABLE would refuse the same commits), with the commit's
 * durability in shale_txn_opts. One shale_txn is begun and freed per transaction: the API has no
 * way to reuse one.
 */
#include <stdio.h>
#include <stdlib.h>

#include "shale.h"

#include "bench_driver.h"

typedef struct shale_thread {
    shale_db *db;
    shale_buf buf;
    shale_batch *batch; /* made on first use, cleared and reused by fillbatch */
    shale_txn *txn;     /* the thread's open transaction, or NULL */
} shale_thread;

static shale_durability level_of(bench_durability d)
{
    switch (d) {
    case BENCH_DUR_NONE:
        return SHALE_DURABILITY_NONE;
    case BENCH_DUR_MEMORY:
        return SHALE_DURABILITY_MEMORY;
    case BENCH_DUR_OS:
        return SHALE_DURABILITY_OS;
    case BENCH_DUR_FULL:
        return SHALE_DURABILITY_FULL;
    }
    return SHALE_DURABILITY_DEFAULT;
}

static int fail(bench_err *err, shale_code code, const shale_error *e)
{
    snprintf(err->msg, sizeof(err->msg), "%s", e->msg[0] ? e->msg : shale_strerror(code));
    return BENCH_ERROR;
}

static shale_slice sl(bench_slice s)
{
    return (shale_slice){s.data, s.len};
}

static void describe(const bench_open_opts *opts, char *out, size_t len)
{
    snprintf(out, len,
             "shale %s (default options: LZ4, bloom 10 bits/key; max_memory_mb=%llu, so write "
             "buffer %llu MiB, block cache %llu MiB)",
             shale_version(), (unsigned long long)(opts->max_memory_bytes >> 20),
             (unsigned long long)(opts->write_buffer_bytes >> 20),
             (unsigned long long)(opts->cache_bytes >> 20));
}

static const char *durability_desc(bench_durability d)
{
    switch (d) {
    case BENCH_DUR_NONE:
        return "shale NONE: no log; the data lives only in memory";
    case BENCH_DUR_MEMORY:
        return "shale MEMORY: log buffered in the process, written every 5 ms by a thread";
    case BENCH_DUR_OS:
        return "shale OS: each commit's log record is write()n before returning, no fsync";
    case BENCH_DUR_FULL:
        return "shale FULL: write + fdatasync per commit; concurrent commits share one "
               "(group commit)";
    }
    return "?";
}

static int open_db(const char *dir, const bench_open_opts *opts, void **db, bench_err *err)
{
    shale_options o = {
        .create_if_missing = opts->create,
        .durability = level_of(opts->durability),
        .max_memory_mb = (uint32_t)(opts->max_memory_bytes >> 20),
    };
    shale_error e;
    shale_db *h = NULL;
    shale_code rc = shale_open(dir, &o, &h, &e);
    if (rc != SHALE_OK) {
        return fail(err, rc, &e);
    }
    *db = h;
    return BENCH_OK;
}

static int close_db(void *db, bench_err *err)
{
    shale_error e;
    shale_code rc = shale_close(db, &e);
    return rc == SHALE_OK ? BENCH_OK : fail(err, rc, &e);
}

static int64_t recovered_records(void *db)
{
    shale_stats st;
    if (shale_stats_get(db, &st, NULL) != SHALE_OK) {
        return -1;
    }
    return (int64_t)st.recovered_records;
}

static void stats(void *db, char *out, size_t len)
{
    shale_stats st;
    shale_error e;
    shale_code rc = shale_stats_get(db, &st, &e);
    if (rc != SHALE_OK) {
        snprintf(out, len, "shale_stats_get: %s", e.msg);
        return;
    }
    snprintf(out, len,
             "live_keys=%llu memory_bytes=%llu log_bytes=%llu log_segments=%llu writes=%llu "
             "reads=%llu batches=%llu group_commits=%llu syncs=%llu recovered_records=%llu "
             "txn_commits=%llu txn_conflicts=%llu txn_rollbacks=%llu",
             (unsigned long long)st.live_keys, (unsigned long long)st.memory_bytes,
             (unsigned long long)st.log_bytes, (unsigned long long)st.log_segments,
             (unsigned long long)st.writes, (unsigned long long)st.reads,
             (unsigned long long)st.batches, (unsigned long long)st.group_commits,
             (unsigned long long)st.syncs, (unsigned long long)st.recovered_records,
             (unsigned long long)st.txn_commits, (unsigned long long)st.txn_conflicts,
             (unsigned long long)st.txn_rollbacks);
}

static int thread_new(void *db, void **thread, bench_err *err)
{
    shale_thread *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return BENCH_ERROR;
    }
    t->db = db;
    *thread = t;
    return BENCH_OK;
}

static void thread_free(void *thread)
{
    shale_thread *t = thread;
    if (t != NULL) {
        shale_txn_free(t->txn);
        shale_buf_free(&t->buf);
        shale_batch_free(t->batch);
        free(t);
    }
}

static int put(void *thread, bench_slice key, bench_slice value, bench_durability level,
               bench_err *err)
{
    shale_thread *t = thread;
    shale_write_opts w = {.durability = level_of(level)};
    shale_error e;
    shale_code rc = shale_put(t->db, &w, sl(key), sl(value), &e);
    return rc == SHALE_OK ? BENCH_OK : fail(err, rc, &e);
}

static int get(void *thread, bench_slice key, size_t *value_len, bench_err *err)
{
    shale_thread *t = thread;
    shale_error e;
    shale_code rc = shale_get(t->db, NULL, sl(key), &t->buf, &e);
    if (rc == SHALE_OK) {
        *value_len = t->buf.len;
        return BENCH_OK;
    }
    return rc == SHALE_NOT_FOUND ? BENCH_NOT_FOUND : fail(err, rc, &e);
}

static int del(void *thread, bench_slice key, bench_durability level, bench_err *err)
{
    shale_thread *t = thread;
    shale_write_opts w = {.durability = level_of(level)};
    shale_error e;
    shale_code rc = shale_delete(t->db, &w, sl(key), &e);
    return rc == SHALE_OK ? BENCH_OK : fail(err, rc, &e);
}

static int write_batch(void *thread, const bench_slice *keys, const bench_slice *values, size_t n,
                       bench_durability level, bench_err *err)
{
    shale_thread *t = thread;
    shale_write_opts w = {.durability = level_of(level)};
    shale_error e;
    shale_code rc;
    if (t->batch == NULL && (t->batch = shale_batch_new()) == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return BENCH_ERROR;
    }
    shale_batch_clear(t->batch);
    for (size_t i = 0; i < n; i++) {
        rc = shale_batch_put(t->batch, sl(keys[i]), sl(values[i]), &e);
        if (rc != SHALE_OK) {
            return fail(err, rc, &e);
        }
    }
    rc = shale_write(t->db, &w, t->batch, &e);
    return rc == SHALE_OK ? BENCH_OK : fail(err, rc, &e);
}

static int iter_new(void *thread, void **iter, bench_err *err)
{
    shale_thread *t = thread;
    shale_error e;
    shale_iter *it = NULL;
    shale_code rc = shale_iter_new(t->db, NULL, &it, &e);
    if (rc != SHALE_OK) {
        return fail(err, rc, &e);
    }
    *iter = it;
    return BENCH_OK;
}

static void iter_free(void *iter)
{
    shale_iter_free(iter);
}

static void iter_seek_first(void *iter)
{
    shale_iter_seek_first(iter);
}

static void iter_seek_last(void *iter)
{
    shale_iter_seek_last(iter);
}

static bool iter_valid(void *iter)
{
    return shale_iter_valid(iter);
}

static void iter_next(void *iter)
{
    shale_iter_next(iter);
}

static void iter_prev(void *iter)
{
    shale_iter_prev(iter);
}

static bench_slice iter_key(void *iter)
{
    shale_slice s = shale_iter_key(iter);
    return (bench_slice){s.data, s.len};
}

static bench_slice iter_value(void *iter)
{
    shale_slice s = shale_iter_value(iter);
    return (bench_slice){s.data, s.len};
}

static int iter_status(void *iter, bench_err *err)
{
    shale_error e;
    shale_code rc = shale_iter_status(iter, &e);
    return rc == SHALE_OK ? BENCH_OK : fail(err, rc, &e);
}

static int txn_begin(void *thread, bench_durability level, bench_err *err)
{
    shale_thread *t = thread;
    shale_txn_opts o = {.durability = level_of(level)};
    shale_error e;
    shale_txn_free(t->txn); /* the contract says none is open; never leak one that is */
    t->txn = NULL;
    shale_code rc = shale_txn_begin(t->db, &o, &t->txn, &e);
    if (rc != SHALE_OK) {
        t->txn = NULL;
        return fail(err, rc, &e);
    }
    return BENCH_OK;
}

static int txn_get(void *thread, bench_slice key, size_t *value_len, bench_err *err)
{
    shale_thread *t = thread;
    shale_error e;
    shale_code rc = shale_txn_get(t->txn, sl(key), &t->buf, &e);
    if (rc == SHALE_OK) {
        *value_len = t->buf.len;
        return BENCH_OK;
    }
    return rc == SHALE_NOT_FOUND ? BENCH_NOT_FOUND : fail(err, rc, &e);
}

static int txn_put(void *thread, bench_slice key, bench_slice value, bench_err *err)
{
    shale_thread *t = thread;
    shale_error e;
    shale_code rc = shale_txn_put(t->txn, sl(key), sl(value), &e);
    return rc == SHALE_OK ? BENCH_OK : fail(err, rc, &e);
}

static int txn_commit(void *thread, bench_err *err)
{
    shale_thread *t = thread;
    shale_error e;
    shale_code rc = shale_txn_commit(t->txn, &e);
    shale_txn_free(t->txn); /* over either way: free only releases it */
    t->txn = NULL;
    if (rc == SHALE_OK) {
        return BENCH_OK;
    }
    if (rc == SHALE_CONFLICT) {
        snprintf(err->msg, sizeof(err->msg), "%s", e.msg);
        return BENCH_CONFLICT;
    }
    return fail(err, rc, &e);
}

static void txn_abort(void *thread)
{
    shale_thread *t = thread;
    shale_txn_free(t->txn);
    t->txn = NULL;
}

const bench_engine bench_engine_shale = {
    .name = "shale",
    .marker_file = "SHALE",
    .describe = describe,
    .durability_desc = durability_desc,
    .open = open_db,
    .close = close_db,
    .recovered_records = recovered_records,
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
    .txn_begin = txn_begin,
    .txn_get = txn_get,
    .txn_put = txn_put,
    .txn_commit = txn_commit,
    .txn_abort = txn_abort,
};
