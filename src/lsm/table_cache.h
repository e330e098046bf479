/*
 * table_cache: a bounded LRU of open table readers, keyed by file number (a base/cache.h cache
 * with a charge of 1 per table). Opening a database opens no table; the first read that needs a
 * table opens it here, and the least recently used unpinned readers are closed once more than
 * `max_open` are open.
 *
 * Threads: every call is thread-safe. Ownership: table_cache_get pins the reader until
 * table_cache_release; a pinned reader is never closed, so iterators pin their table for their
 * whole life.
 */
#ifndef SHALE_LSM_TABLE_CACHE_H
#define SHALE_LSM_TABLE_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#include "base/cache.h"
#include "base/iter.h"
#include "env/env.h"
#include "lsm/version.h"
#include "sst/sst_reader.h"

typedef struct table_cache table_cache;
typedef struct table_handle table_handle;

/* max_open 0 = 1000. block_cache may be NULL. NULL when out of memory. */
table_cache *table_cache_new(const shale_env *env, const char *dir, uint32_t max_open,
                             cache *block_cache);
/* REQUIRES: no handle outstanding, no file_meta holding a pin (free the version set first).
 * Accepts NULL. */
void table_cache_free(table_cache *tc);

/* The reader of table `number` (file_size from the manifest, checked against the file), pinned.
 * Errors of sst_reader_open (SHALE_NOT_FOUND for a missing file is reported as SHALE_CORRUPTION:
 * the manifest lists it: "000012.sst: missing (listed in the manifest)"). */
shale_code table_cache_get(table_cache *tc, uint64_t number, uint64_t file_size, table_handle **out,
                           shale_error *err) SHALE_MUST_USE;
sst_reader *table_handle_reader(table_handle *h);
void table_cache_release(table_cache *tc, table_handle *h);
/* Forgets table `number` (it was deleted); its reader closes once the last pin goes. */
void table_cache_evict(table_cache *tc, uint64_t number);

/* A point read through the cache: sst_reader_get_hashed on table f (hash =
 * sst_reader_key_hash(key), computed once per get for all the tables it probes). The first read of
 * a table pins its reader in f (file_meta.reader) for as long as f lives, within half of max_open
 * (cache_hold_try), so later reads of it take no cache lock at all: two lock round trips per
 * table probed were a tenth of a random get's time. Past that share, each read pins and releases
 * as table_cache_get does. REQUIRES: the caller holds a version listing f, and f's version set is
 * freed before this cache (the pins go back when the metas are freed). */
shale_code table_cache_lookup(table_cache *tc, file_meta *f, shale_slice key, uint64_t hash,
                              uint64_t snapshot_seq, bool *found, ikey_entry *out,
                              shale_buf *scratch, sst_get_stats *stats,
                              shale_error *err) SHALE_MUST_USE;

/* An iterator over table `number` that pins the table until destroyed. If the table cannot be
 * opened, returns an iterator whose status is the error. NULL only when out of memory. */
iter *table_cache_iter(table_cache *tc, uint64_t number, uint64_t file_size, bool fill_cache);

/* Open readers now, including evicted ones still pinned (what the process really has open). */
uint64_t table_cache_open_count(table_cache *tc);

#endif
