/*
 * cache: a sharded cache bounded in bytes, keyed by (id, offset) pairs of u64. The block
 * cache holds table blocks (data, index, filter) under (table's cache id, block offset); the
 * table cache holds open table readers under (file number, 0) with a charge of 1 each.
 *
 * Bound: every entry has a charge (its bytes); once the total charge passes the capacity, the
 * oldest entries that nobody holds are evicted, where an entry hit since eviction last passed it
 * gets one more round (LRU with a second chance, CLOCK's approximation of LRU). Entries held by a
 * handle cannot be evicted, so usage may pass the capacity while callers pin more than it (the
 * engine pins a block while an iterator sits on it or a get reads it, and a table reader holds its
 * index and filter for its life, but only within cache_hold_try's half of the capacity). An insert
 * whose charge alone exceeds the capacity of its shard is still returned to the caller but not
 * kept.
 *
 * Sharding: 2^shard_bits shards, each with its own mutex, LRU list and hash table; a key's shard
 * is picked by its hash. Capacity is split evenly between shards.
 *
 * Ownership: cache_insert takes ownership of `value`: the cache calls deleter(value, arg) once
 * the entry is both evicted (or erased, or replaced, or the cache freed) and released by every
 * handle. A handle from lookup or insert pins the entry until cache_release.
 *
 * Threads: every call is thread-safe. The deleter runs without any cache lock held.
 */
#ifndef SHALE_BASE_CACHE_H
#define SHALE_BASE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

typedef struct cache cache;
typedef struct cache_handle cache_handle;
typedef void (*cache_deleter)(void *value, void *arg);

typedef struct cache_stats {
    uint64_t hits, misses; /* lookups that found / did not find their key */
    uint64_t inserts;      /* entries inserted */
    uint64_t evictions;    /* entries pushed out by the capacity bound */
    uint64_t usage_bytes;  /* total charge of the entries held now (pinned ones included) */
    uint64_t pinned_bytes; /* of that, the charge of entries some handle holds */
    uint64_t capacity_bytes;
    uint64_t entries;
} cache_stats;

/* A cache of `capacity` bytes in 2^shard_bits shards (shard_bits 0 .. 8; a capacity of 0 keeps
 * nothing but still hands back inserted values). NULL when out of memory or shard_bits is out of
 * range. */
cache *cache_new(size_t capacity, int shard_bits);
/* Frees every entry (running deleters). REQUIRES: no handle is outstanding. Accepts NULL. */
void cache_free(cache *c);

/* A fresh id for a new user of the cache (a table reader), so two users never share keys. */
uint64_t cache_new_id(cache *c);

/* Long-term pins, kept within half the capacity so that they never crowd out the entries that
 * come and go: cache_hold_try counts `bytes` as held if they fit (true) or refuses (false);
 * cache_hold_done gives them back. The caller keeps its handles itself; this is only the count.
 * Lock-free. */
bool cache_hold_try(cache *c, size_t bytes);
void cache_hold_done(cache *c, size_t bytes);

/* The entry for (id, off), pinned, or NULL on a miss. */
cache_handle *cache_lookup(cache *c, uint64_t id, uint64_t off);
/* Inserts (replacing any entry with the same key) and returns a pinned handle. Returns NULL only
 * when out of memory, in which case the deleter has already been called on value. */
cache_handle *cache_insert(cache *c, uint64_t id, uint64_t off, void *value, size_t charge,
                           cache_deleter deleter, void *arg);
/* As cache_insert, but the handle lives in the first cache_embedded_size() bytes of `mem`, a
 * CACHE_EMBED_ALIGN-aligned allocation of the caller's that also holds the value: no allocation
 * of the cache's own, and a hit reads the handle and the start of the value from neighbouring
 * lines (the block cache: one cache miss less per hit). The deleter must free mem (with the
 * value in it); the cache never touches mem after calling it. Never fails. */
#define CACHE_EMBED_ALIGN 64
size_t cache_embedded_size(void);
cache_handle *cache_insert_embedded(cache *c, void *mem, uint64_t id, uint64_t off, void *value,
                                    size_t charge, cache_deleter deleter, void *arg);
void *cache_value(const cache_handle *h);
/* Unpins. Accepts NULL handle. */
void cache_release(cache *c, cache_handle *h);
/* Removes the entry for (id, off) if present; its deleter runs once the last handle goes. */
void cache_erase(cache *c, uint64_t id, uint64_t off);
/* Evicts every entry nobody holds. */
void cache_prune(cache *c);

void cache_get_stats(cache *c, cache_stats *out);

#endif
