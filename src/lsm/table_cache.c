/*
 * table_cache: open table readers in a base/cache.h cache (contract in table_cache.h).
 *
 * Each reader is one cache entry under (file number, 0) with a charge of 1, so the cache's
 * capacity is the number of readers kept open; the entry's deleter closes the reader, which the
 * cache runs only once the entry is both out of the cache and unpinned. A table_handle is the
 * cache's handle under another name.
 *
 * Two threads missing on the same table may both open it; the second insert replaces the first
 * entry, whose reader closes when its opener releases it. That costs an extra open in a rare race
 * and keeps every open outside any lock.
 *
 * open_count counts readers open now, also those already erased from the cache but still pinned
 * (a deleted table an iterator still walks): what the process holds, not what the cache lists.
 */
#include "lsm/table_cache.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "lsm/version.h"

#define TABLE_CACHE_DEFAULT_OPEN   1000
/* Shards cut lock contention, but the capacity is split evenly between them: keep at least this
 * many readers per shard so a small max_open is not wasted on a hash imbalance. */
#define TABLE_CACHE_MIN_PER_SHARD  32
#define TABLE_CACHE_MAX_SHARD_BITS 4

struct table_cache {
    const shale_env *env;
    char *dir;
    cache *readers;
    cache *block_cache;
    _Atomic uint64_t open;
};

static cache_handle *as_cache(table_handle *h)
{
    return (cache_handle *)h;
}

static void close_reader(void *value, void *arg)
{
    table_cache *tc = arg;

    sst_reader_close(value);
    atomic_fetch_sub_explicit(&tc->open, 1, memory_order_relaxed);
}

table_cache *table_cache_new(const shale_env *env, const char *dir, uint32_t max_open,
                             cache *block_cache)
{
    table_cache *tc;
    int bits = 0;

    if (max_open == 0) {
        max_open = TABLE_CACHE_DEFAULT_OPEN;
    }
    while (bits < TABLE_CACHE_MAX_SHARD_BITS &&
           (max_open >> (bits + 1)) >= TABLE_CACHE_MIN_PER_SHARD) {
        bits++;
    }
    tc = calloc(1, sizeof *tc);
    if (tc == NULL) {
        return NULL;
    }
    tc->dir = strdup(dir);
    tc->readers = cache_new(max_open, bits);
    if (tc->dir == NULL || tc->readers == NULL) {
        cache_free(tc->readers);
        free(tc->dir);
        free(tc);
        return NULL;
    }
    tc->env = env;
    tc->block_cache = block_cache;
    atomic_init(&tc->open, 0);
    return tc;
}

void table_cache_free(table_cache *tc)
{
    if (tc == NULL) {
        return;
    }
    cache_free(tc->readers); /* closes every reader (the deleters still need tc) */
    free(tc->dir);
    free(tc);
}

static shale_code open_reader(table_cache *tc, uint64_t number, uint64_t file_size,
                              sst_reader **out, shale_error *err)
{
    size_t cap = strlen(tc->dir) + 32; /* "/" + at least 6 digits (up to 20) + ".sst" */
    char *path = malloc(cap);
    shale_code rc;

    if (path == NULL) {
        return err_nomem(err);
    }
    version_table_name(path, cap, tc->dir, number);
    rc = sst_reader_open(tc->env, path, number, file_size, tc->block_cache, out, err);
    free(path);
    if (rc == SHALE_NOT_FOUND) {
        /* The manifest lists the table, so its absence is damage, not a miss. */
        return err_set(err, SHALE_CORRUPTION, ENOENT,
                       "%06" PRIu64 ".sst: missing (listed in the manifest)", number);
    }
    return rc;
}

shale_code table_cache_get(table_cache *tc, uint64_t number, uint64_t file_size, table_handle **out,
                           shale_error *err)
{
    cache_handle *h = cache_lookup(tc->readers, number, 0);
    sst_reader *r = NULL;
    shale_code rc;

    if (h != NULL) {
        *out = (table_handle *)h;
        return SHALE_OK;
    }
    rc = open_reader(tc, number, file_size, &r, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    atomic_fetch_add_explicit(&tc->open, 1, memory_order_relaxed);
    h = cache_insert(tc->readers, number, 0, r, 1, close_reader, tc);
    if (h == NULL) {
        return err_nomem(err); /* the deleter has closed r */
    }
    *out = (table_handle *)h;
    return SHALE_OK;
}

sst_reader *table_handle_reader(table_handle *h)
{
    return cache_value(as_cache(h));
}

void table_cache_release(table_cache *tc, table_handle *h)
{
    cache_release(tc->readers, as_cache(h));
}

void table_cache_evict(table_cache *tc, uint64_t number)
{
    cache_erase(tc->readers, number, 0);
}

/* What a file_meta's pin holds: the handle and the cache to give it back to. */
typedef struct meta_pin {
    table_cache *tc;
    table_handle *h;
} meta_pin;

static void unpin_meta(file_meta *f)
{
    meta_pin *p = atomic_load_explicit(&f->reader_pin, memory_order_acquire);
    if (p != NULL) {
        table_cache_release(p->tc, p->h);
        cache_hold_done(p->tc->readers, 1);
        free(p);
    }
}

/* Hands the pin h to f if f has none and the held share has room (true: the caller must not
 * release h). The claim is a compare-and-swap on reader_pin, so of two racing reads one wins;
 * unpin is written before the reader is published, and read only once f's last reference has
 * gone, which orders it after every read of f. */
static bool pin_into(table_cache *tc, file_meta *f, table_handle *h)
{
    if (atomic_load_explicit(&f->reader_pin, memory_order_relaxed) != NULL ||
        !cache_hold_try(tc->readers, 1)) {
        return false;
    }
    meta_pin *p = malloc(sizeof *p);
    void *expected = NULL;
    if (p == NULL) {
        cache_hold_done(tc->readers, 1);
        return false;
    }
    p->tc = tc;
    p->h = h;
    if (!atomic_compare_exchange_strong_explicit(&f->reader_pin, &expected, p, memory_order_acq_rel,
                                                 memory_order_relaxed)) {
        cache_hold_done(tc->readers, 1);
        free(p);
        return false;
    }
    f->unpin = unpin_meta;
    atomic_store_explicit(&f->reader, table_handle_reader(h), memory_order_release);
    return true;
}

shale_code table_cache_lookup(table_cache *tc, file_meta *f, shale_slice key, uint64_t hash,
                              uint64_t snapshot_seq, bool *found, ikey_entry *out,
                              shale_buf *scratch, sst_get_stats *stats, shale_error *err)
{
    sst_reader *r = atomic_load_explicit(&f->reader, memory_order_acquire);
    if (r != NULL) {
        return sst_reader_get_hashed(r, key, hash, snapshot_seq, found, out, scratch, stats, err);
    }
    table_handle *h = NULL;
    shale_code rc = table_cache_get(tc, f->number, f->size, &h, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = sst_reader_get_hashed(table_handle_reader(h), key, hash, snapshot_seq, found, out, scratch,
                               stats, err);
    if (!pin_into(tc, f, h)) {
        table_cache_release(tc, h);
    }
    return rc;
}

uint64_t table_cache_open_count(table_cache *tc)
{
    return atomic_load_explicit(&tc->open, memory_order_relaxed);
}

/* ---- Table iterator: the reader's iterator plus the pin it needs ---- */

typedef struct table_iter {
    iter base;
    iter *in;
    table_cache *tc;
    table_handle *h;
} table_iter;

static bool ti_valid(const iter *it)
{
    return iter_valid(((const table_iter *)it)->in);
}

static void ti_seek(iter *it, shale_slice key, uint64_t seq)
{
    iter_seek(((table_iter *)it)->in, key, seq);
}

static void ti_seek_first(iter *it)
{
    iter_seek_first(((table_iter *)it)->in);
}

static void ti_seek_last(iter *it)
{
    iter_seek_last(((table_iter *)it)->in);
}

static void ti_next(iter *it)
{
    iter_next(((table_iter *)it)->in);
}

static void ti_prev(iter *it)
{
    iter_prev(((table_iter *)it)->in);
}

static void ti_entry(const iter *it, ikey_entry *out)
{
    iter_entry(((const table_iter *)it)->in, out);
}

static shale_code ti_status(const iter *it, shale_error *err)
{
    return iter_status(((const table_iter *)it)->in, err);
}

static void ti_destroy(iter *it)
{
    table_iter *t = (table_iter *)it;

    iter_destroy(t->in); /* before the pin: the reader must outlive its iterator */
    table_cache_release(t->tc, t->h);
    free(t);
}

static const iter_ops table_iter_ops = {
    .valid = ti_valid,
    .seek = ti_seek,
    .seek_first = ti_seek_first,
    .seek_last = ti_seek_last,
    .next = ti_next,
    .prev = ti_prev,
    .entry = ti_entry,
    .status = ti_status,
    .destroy = ti_destroy,
};

iter *table_cache_iter(table_cache *tc, uint64_t number, uint64_t file_size, bool fill_cache)
{
    table_iter *t;
    table_handle *h = NULL;
    shale_error e;
    shale_code rc = table_cache_get(tc, number, file_size, &h, &e);

    if (rc != SHALE_OK) {
        return iter_new_error(rc, &e);
    }
    t = malloc(sizeof *t);
    if (t == NULL) {
        table_cache_release(tc, h);
        return NULL;
    }
    t->in = sst_reader_iter(table_handle_reader(h), fill_cache);
    if (t->in == NULL) {
        free(t);
        table_cache_release(tc, h);
        return NULL;
    }
    t->base.ops = &table_iter_ops;
    t->tc = tc;
    t->h = h;
    return &t->base;
}
