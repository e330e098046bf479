/*
 * engine_leveldb.c: the bench_driver adapter for LevelDB, through its C API (leveldb/c.h).
 *
 * Options: LevelDB's defaults (Snappy compression, 4 KiB blocks, 2 MiB tables, 1000 open files)
 * except, to make the comparison fair:
 *   write_buffer_size  the driver's write buffer (a budget of M MiB: M/8), instead of 4 MiB;
 *   block_cache        an LRU cache of the driver's cache size (3M/4), instead of 8 MiB;
 *   filter_policy      a bloom filter of 10 bits per key, as Shale's tables carry (LevelDB's
 *                      default has none);
 *   create_if_missing.
 * LevelDB keeps each open table's index and filter blocks in its table cache, outside the block
 * cache, as Shale's table readers do.
 *
 * Durability mapping (LevelDB has one knob, WriteOptions.sync):
 *   full    sync=true: the log is fsynced before the write returns (LevelDB groups concurrent
 *           writers into one log write and one sync, as Shale does).
 *   os      sync=false: the write's log record reaches the OS (write()) before it returns.
 *   memory  sync=false: LevelDB has no in-process log buffering; the nearest is os.
 *   none    sync=false: LevelDB cannot skip its log; the nearest is os.
 *
 * Reads use leveldb_get, which returns a malloc'd copy that is freed at once: the C API's cost
 * of a read (Shale's shale_get copies into a reused buffer instead).
 */
#include <leveldb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_driver.h"

typedef struct ldb {
    leveldb_t *db;
    leveldb_options_t *opts;
    leveldb_readoptions_t *ro;
    leveldb_writeoptions_t *wo_nosync;
    leveldb_writeoptions_t *wo_sync;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *filter;
} ldb;

typedef struct ldb_thread {
    ldb *l;
    leveldb_writebatch_t *batch; /* made on first use */
} ldb_thread;

static int take_error(bench_err *err, char *msg)
{
    snprintf(err->msg, sizeof(err->msg), "%s", msg ? msg : "unknown leveldb error");
    leveldb_free(msg);
    return BENCH_ERROR;
}

static leveldb_writeoptions_t *wopts(const ldb *l, bench_durability level)
{
    return level == BENCH_DUR_FULL ? l->wo_sync : l->wo_nosync;
}

static void describe(const bench_open_opts *opts, char *out, size_t len)
{
    snprintf(out, len,
             "leveldb %d.%d (defaults: Snappy; set: write_buffer_size %llu MiB, LRU block cache "
             "%llu MiB, bloom filter 10 bits/key)",
             leveldb_major_version(), leveldb_minor_version(),
             (unsigned long long)(opts->write_buffer_bytes >> 20),
             (unsigned long long)(opts->cache_bytes >> 20));
}

static const char *durability_desc(bench_durability d)
{
    switch (d) {
    case BENCH_DUR_NONE:
        return "leveldb sync=false (it cannot skip its log; nearest to none is os)";
    case BENCH_DUR_MEMORY:
        return "leveldb sync=false (it has no in-process log buffer; nearest to memory is os)";
    case BENCH_DUR_OS:
        return "leveldb sync=false: each write's log record is write()n, no fsync";
    case BENCH_DUR_FULL:
        return "leveldb sync=true: fsync per write; concurrent writers share one";
    }
    return "?";
}

static void free_ldb(ldb *l)
{
    if (l == NULL) {
        return;
    }
    if (l->db) {
        leveldb_close(l->db);
    }
    if (l->wo_sync) {
        leveldb_writeoptions_destroy(l->wo_sync);
    }
    if (l->wo_nosync) {
        leveldb_writeoptions_destroy(l->wo_nosync);
    }
    if (l->ro) {
        leveldb_readoptions_destroy(l->ro);
    }
    if (l->opts) {
        leveldb_options_destroy(l->opts);
    }
    /* The options only borrow these; they go after the database that used them. */
    if (l->cache) {
        leveldb_cache_destroy(l->cache);
    }
    if (l->filter) {
        leveldb_filterpolicy_destroy(l->filter);
    }
    free(l);
}

static int open_db(const char *dir, const bench_open_opts *opts, void **db, bench_err *err)
{
    ldb *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return BENCH_ERROR;
    }
    l->opts = leveldb_options_create();
    leveldb_options_set_create_if_missing(l->opts, opts->create);
    leveldb_options_set_write_buffer_size(l->opts, (size_t)opts->write_buffer_bytes);
    l->cache = leveldb_cache_create_lru((size_t)opts->cache_bytes);
    leveldb_options_set_cache(l->opts, l->cache);
    l->filter = leveldb_filterpolicy_create_bloom(10);
    leveldb_options_set_filter_policy(l->opts, l->filter);
    l->ro = leveldb_readoptions_create();
    l->wo_nosync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(l->wo_nosync, 0);
    l->wo_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(l->wo_sync, 1);
    char *msg = NULL;
    l->db = leveldb_open(l->opts, dir, &msg);
    if (msg != NULL || l->db == NULL) {
        free_ldb(l);
        return take_error(err, msg);
    }
    *db = l;
    return BENCH_OK;
}

static int close_db(void *db, bench_err *err)
{
    (void)err;
    free_ldb(db);
    return BENCH_OK;
}

static void stats(void *db, char *out, size_t len)
{
    ldb *l = db;
    char *v = leveldb_property_value(l->db, "leveldb.stats");
    snprintf(out, len, "leveldb.stats:\n%s", v ? v : "(none)");
    leveldb_free(v);
}

static int thread_new(void *db, void **thread, bench_err *err)
{
    ldb_thread *t = calloc(1, sizeof(*t));
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
    ldb_thread *t = thread;
    if (t != NULL) {
        if (t->batch) {
            leveldb_writebatch_destroy(t->batch);
        }
        free(t);
    }
}

static int put(void *thread, bench_slice key, bench_slice value, bench_durability level,
               bench_err *err)
{
    ldb_thread *t = thread;
    char *msg = NULL;
    leveldb_put(t->l->db, wopts(t->l, level), key.data, key.len, value.data, value.len, &msg);
    return msg ? take_error(err, msg) : BENCH_OK;
}

static int get(void *thread, bench_slice key, size_t *value_len, bench_err *err)
{
    ldb_thread *t = thread;
    char *msg = NULL;
    size_t len = 0;
    char *v = leveldb_get(t->l->db, t->l->ro, key.data, key.len, &len, &msg);
    if (msg != NULL) {
        leveldb_free(v);
        return take_error(err, msg);
    }
    if (v == NULL) {
        return BENCH_NOT_FOUND;
    }
    leveldb_free(v);
    *value_len = len;
    return BENCH_OK;
}

static int del(void *thread, bench_slice key, bench_durability level, bench_err *err)
{
    ldb_thread *t = thread;
    char *msg = NULL;
    leveldb_delete(t->l->db, wopts(t->l, level), key.data, key.len, &msg);
    return msg ? take_error(err, msg) : BENCH_OK;
}

static int write_batch(void *thread, const bench_slice *keys, const bench_slice *values, size_t n,
                       bench_durability level, bench_err *err)
{
    ldb_thread *t = thread;
    if (t->batch == NULL) {
        t->batch = leveldb_writebatch_create();
    }
    leveldb_writebatch_clear(t->batch);
    for (size_t i = 0; i < n; i++) {
        leveldb_writebatch_put(t->batch, keys[i].data, keys[i].len, values[i].data, values[i].len);
    }
    char *msg = NULL;
    leveldb_write(t->l->db, wopts(t->l, level), t->batch, &msg);
    return msg ? take_error(err, msg) : BENCH_OK;
}

static int iter_new(void *thread, void **iter, bench_err *err)
{
    ldb_thread *t = thread;
    leveldb_iterator_t *it = leveldb_create_iterator(t->l->db, t->l->ro);
    if (it == NULL) {
        snprintf(err->msg, sizeof(err->msg), "leveldb_create_iterator failed");
        return BENCH_ERROR;
    }
    *iter = it;
    return BENCH_OK;
}

static void iter_free(void *iter)
{
    leveldb_iter_destroy(iter);
}

static void iter_seek_first(void *iter)
{
    leveldb_iter_seek_to_first(iter);
}

static void iter_seek_last(void *iter)
{
    leveldb_iter_seek_to_last(iter);
}

static bool iter_valid(void *iter)
{
    return leveldb_iter_valid(iter) != 0;
}

static void iter_next(void *iter)
{
    leveldb_iter_next(iter);
}

static void iter_prev(void *iter)
{
    leveldb_iter_prev(iter);
}

static bench_slice iter_key(void *iter)
{
    size_t len = 0;
    const char *k = leveldb_iter_key(iter, &len);
    return (bench_slice){k, len};
}

static bench_slice iter_value(void *iter)
{
    size_t len = 0;
    const char *v = leveldb_iter_value(iter, &len);
    return (bench_slice){v, len};
}

static int iter_status(void *iter, bench_err *err)
{
    char *msg = NULL;
    leveldb_iter_get_error(iter, &msg);
    return msg ? take_error(err, msg) : BENCH_OK;
}

const bench_engine bench_engine_leveldb = {
    .name = "leveldb",
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
