/*
 * engine_rocksdb.c: the bench_driver adapter for RocksDB, through its C API (rocksdb/c.h).
 *
 * Options: RocksDB's defaults (level compaction, 4 KiB blocks, 64 MiB tables, two write buffers,
 * two background jobs, index and filter blocks outside the block cache) except, to make the
 * comparison fair:
 *   write_buffer_size  the driver's write buffer (a budget of M MiB: M/8), instead of 64 MiB;
 *   block_cache        an LRU cache of the driver's cache size (3M/4), instead of the built-in
 *                      one (8 MiB, says rocksdb/table.h);
 *   filter_policy      a full bloom filter of 10 bits per key, as Shale's tables carry
 *                      (RocksDB's default has none);
 *   compression        LZ4, Shale's default (RocksDB's default is Snappy; Debian's librocksdb
 *                      is built with LZ4);
 *   create_if_missing.
 *
 * Durability mapping:
 *   full    WriteOptions.sync=true: the WAL is synced before the write returns (RocksDB groups
 *           concurrent writers into one WAL write and one sync, as Shale does).
 *   os      sync=false: the write's WAL record reaches the OS (write()) before it returns.
 *   memory  sync=false with DBOptions.manual_wal_flush=true: WAL records stay in RocksDB's
 *           in-process buffer until it fills (RocksDB has no timed flusher, so this buffers
 *           longer than Shale's 5 ms; it is its nearest mode).
 *   none    WriteOptions.disableWAL=true: no log, as Shale's none.
 *
 * Reads use rocksdb_get, which returns a malloc'd copy that is freed at once: the C API's cost
 * of a read (Shale's shale_get copies into a reused buffer instead).
 */
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_driver.h"

typedef struct rdb {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo[4]; /* by bench_durability */
    rocksdb_cache_t *cache;
    rocksdb_block_based_table_options_t *table;
} rdb;

typedef struct rdb_thread {
    rdb *l;
    rocksdb_writebatch_t *batch; /* made on first use */
} rdb_thread;

static int take_error(bench_err *err, char *msg)
{
    snprintf(err->msg, sizeof(err->msg), "%s", msg ? msg : "unknown rocksdb error");
    rocksdb_free(msg);
    return BENCH_ERROR;
}

#ifndef ROCKSDB_VERSION_STRING
#define ROCKSDB_VERSION_STRING "(version unknown)"
#endif

static rocksdb_writeoptions_t *wopts(const rdb *l, bench_durability level)
{
    return l->wo[level];
}

static void describe(const bench_open_opts *opts, char *out, size_t len)
{
    snprintf(out, len,
             "rocksdb %s (defaults; set: LZ4, write_buffer_size %llu MiB, LRU block cache %llu "
             "MiB, full bloom filter 10 bits/key)",
             ROCKSDB_VERSION_STRING, (unsigned long long)(opts->write_buffer_bytes >> 20),
             (unsigned long long)(opts->cache_bytes >> 20));
}

static const char *durability_desc(bench_durability d)
{
    switch (d) {
    case BENCH_DUR_NONE:
        return "rocksdb disableWAL=true: no log";
    case BENCH_DUR_MEMORY:
        return "rocksdb manual_wal_flush=true, sync=false: WAL buffered in the process until "
               "its buffer fills";
    case BENCH_DUR_OS:
        return "rocksdb sync=false: each write's log record is write()n, no fsync";
    case BENCH_DUR_FULL:
        return "rocksdb sync=true: fsync per write; concurrent writers share one";
    }
    return "?";
}

static void free_rdb(rdb *l)
{
    if (l == NULL) {
        return;
    }
    if (l->db) {
        rocksdb_close(l->db);
    }
    for (int i = 0; i < 4; i++) {
        if (l->wo[i]) {
            rocksdb_writeoptions_destroy(l->wo[i]);
        }
    }
    if (l->ro) {
        rocksdb_readoptions_destroy(l->ro);
    }
    if (l->opts) {
        rocksdb_options_destroy(l->opts);
    }
    if (l->table) {
        rocksdb_block_based_options_destroy(l->table); /* it owns the filter policy */
    }
    if (l->cache) {
        rocksdb_cache_destroy(l->cache);
    }
    free(l);
}

static int open_db(const char *dir, const bench_open_opts *opts, void **db, bench_err *err)
{
    rdb *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return BENCH_ERROR;
    }
    l->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(l->opts, opts->create);
    rocksdb_options_set_compression(l->opts, rocksdb_lz4_compression);
    rocksdb_options_set_write_buffer_size(l->opts, (size_t)opts->write_buffer_bytes);
    l->cache = rocksdb_cache_create_lru((size_t)opts->cache_bytes);
    l->table = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(l->table, l->cache);
    rocksdb_block_based_options_set_filter_policy(l->table,
                                                  rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_options_set_block_based_table_factory(l->opts, l->table);
    rocksdb_options_set_manual_wal_flush(l->opts, opts->durability == BENCH_DUR_MEMORY);
    l->ro = rocksdb_readoptions_create();
    for (int i = 0; i < 4; i++) {
        l->wo[i] = rocksdb_writeoptions_create();
        rocksdb_writeoptions_set_sync(l->wo[i], i == BENCH_DUR_FULL);
        rocksdb_writeoptions_disable_WAL(l->wo[i], i == BENCH_DUR_NONE);
    }
    char *msg = NULL;
    l->db = rocksdb_open(l->opts, dir, &msg);
    if (msg != NULL || l->db == NULL) {
        free_rdb(l);
        return take_error(err, msg);
    }
    *db = l;
    return BENCH_OK;
}

static int close_db(void *db, bench_err *err)
{
    (void)err;
    free_rdb(db);
    return BENCH_OK;
}

static void stats(void *db, char *out, size_t len)
{
    rdb *l = db;
    char *v = rocksdb_property_value(l->db, "rocksdb.levelstats");
    snprintf(out, len, "rocksdb.levelstats:\n%s", v ? v : "(none)");
    rocksdb_free(v);
}

static int thread_new(void *db, void **thread, bench_err *err)
{
    rdb_thread *t = calloc(1, sizeof(*t));
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
    rdb_thread *t = thread;
    if (t != NULL) {
        if (t->batch) {
            rocksdb_writebatch_destroy(t->batch);
        }
        free(t);
    }
}

static int put(void *thread, bench_slice key, bench_slice value, bench_durability level,
               bench_err *err)
{
    rdb_thread *t = thread;
    char *msg = NULL;
    rocksdb_put(t->l->db, wopts(t->l, level), key.data, key.len, value.data, value.len, &msg);
    return msg ? take_error(err, msg) : BENCH_OK;
}

static int get(void *thread, bench_slice key, size_t *value_len, bench_err *err)
{
    rdb_thread *t = thread;
    char *msg = NULL;
    size_t len = 0;
    char *v = rocksdb_get(t->l->db, t->l->ro, key.data, key.len, &len, &msg);
    if (msg != NULL) {
        rocksdb_free(v);
        return take_error(err, msg);
    }
    if (v == NULL) {
        return BENCH_NOT_FOUND;
    }
    rocksdb_free(v);
    *value_len = len;
    return BENCH_OK;
}

static int del(void *thread, bench_slice key, bench_durability level, bench_err *err)
{
    rdb_thread *t = thread;
    char *msg = NULL;
    rocksdb_delete(t->l->db, wopts(t->l, level), key.data, key.len, &msg);
    return msg ? take_error(err, msg) : BENCH_OK;
}

static int write_batch(void *thread, const bench_slice *keys, const bench_slice *values, size_t n,
                       bench_durability level, bench_err *err)
{
    rdb_thread *t = thread;
    if (t->batch == NULL) {
        t->batch = rocksdb_writebatch_create();
    }
    rocksdb_writebatch_clear(t->batch);
    for (size_t i = 0; i < n; i++) {
        rocksdb_writebatch_put(t->batch, keys[i].data, keys[i].len, values[i].data, values[i].len);
    }
    char *msg = NULL;
    rocksdb_write(t->l->db, wopts(t->l, level), t->batch, &msg);
    return msg ? take_error(err, msg) : BENCH_OK;
}

static int iter_new(void *thread, void **iter, bench_err *err)
{
    rdb_thread *t = thread;
    rocksdb_iterator_t *it = rocksdb_create_iterator(t->l->db, t->l->ro);
    if (it == NULL) {
        snprintf(err->msg, sizeof(err->msg), "rocksdb_create_iterator failed");
        return BENCH_ERROR;
    }
    *iter = it;
    return BENCH_OK;
}

static void iter_free(void *iter)
{
    rocksdb_iter_destroy(iter);
}

static void iter_seek_first(void *iter)
{
    rocksdb_iter_seek_to_first(iter);
}

static void iter_seek_last(void *iter)
{
    rocksdb_iter_seek_to_last(iter);
}

static bool iter_valid(void *iter)
{
    return rocksdb_iter_valid(iter) != 0;
}

static void iter_next(void *iter)
{
    rocksdb_iter_next(iter);
}

static void iter_prev(void *iter)
{
    rocksdb_iter_prev(iter);
}

static bench_slice iter_key(void *iter)
{
    size_t len = 0;
    const char *k = rocksdb_iter_key(iter, &len);
    return (bench_slice){k, len};
}

static bench_slice iter_value(void *iter)
{
    size_t len = 0;
    const char *v = rocksdb_iter_value(iter, &len);
    return (bench_slice){v, len};
}

static int iter_status(void *iter, bench_err *err)
{
    char *msg = NULL;
    rocksdb_iter_get_error(iter, &msg);
    return msg ? take_error(err, msg) : BENCH_OK;
}

const bench_engine bench_engine_rocksdb = {
    .name = "rocksdb",
    .marker_file = "CURRENT",
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
