/*
 * memtable: the sorted in-memory buffer that takes every write (a skiplist in an arena).
 *
 * Order: user key ascending (bytewise), then sequence number descending, so a reader meets the
 * newest version of a key first. Each entry is (key, seq, type, expire_at_ms, value); a DEL entry
 * has an empty value, a PUT with expire_at_ms 0 never expires.
 *
 * Point reads go through a hash index from each key to its newest version (memtable.c explains
 * it), not through the skiplist: a get costs a hash and about two cache misses.
 *
 * Threads: one writer at a time (db.c's commit leader); any number of readers concurrently with
 * it, without locks: a node is fully built before it is published with a release store, and
 * readers follow links with acquire loads. Readers must hold a reference (memtable_ref) for as
 * long as they read; the last memtable_unref frees it.
 * Visibility rule for memtable_get: it is guaranteed to find every add that completed before the
 * reader obtained its snapshot seq through an acquire load of something the writer published
 * with a release store after memtable_add returned (db.c's visible_seq). Iterators see every
 * add whose node was linked before they reached its position, as before.
 *
 * Memory: entries live in the memtable's arena and die with its last unref. Every slice returned
 * by memtable_get or an iterator borrows from that arena.
 */
#ifndef SHALE_MEM_MEMTABLE_H
#define SHALE_MEM_MEMTABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#include "base/ikey.h"

/* The memtable's entries are the engine's internal entries (base/ikey.h). */
enum memtable_type {
    MEMTABLE_DEL = IKEY_DEL,
    MEMTABLE_PUT = IKEY_PUT,
};
#define MEMTABLE_MAX_SEQ IKEY_MAX_SEQ
typedef ikey_entry memtable_entry;

typedef struct memtable memtable;

/* Returns a memtable with one reference, or NULL when out of memory. */
memtable *memtable_new(void);
/* As memtable_new, with arena blocks of about arena_block_bytes (see arena_init_sized): small
 * memtable budgets use small blocks. */
memtable *memtable_new_sized(size_t arena_block_bytes);
/* ---- Recycling ----
 * A database makes one memtable after another, each about as big as the last. A recycler keeps
 * the memory of a dead memtable (its arena blocks and its index table) for the next one, which
 * then skips malloc, the kernel's page faults and zeroing, and the index's growth by rehashing.
 *
 * A memtable made by memtable_new_recycled takes everything the recycler holds; at its last
 * unref it gives its memory back if the recycler is accepting and empty, else frees it. So the
 * recycler holds at most one memtable's memory, and only while accepting: the database accepts
 * only while no immutable memtable is pending, so that memory held never exceeds the active
 * memtable plus one more (the budget's two write buffers).
 * Accounting: a recycled block counts in memtable_memory_bytes once the arena uses it (as a
 * fresh one would, so memtables fill as before); until then it is memtable_spare_bytes. A
 * recycled index table counts at once (it is in use from the start). memtable_recycler_bytes is
 * what the recycler holds. All three may be read from any thread.
 * Threads: any; the recycler has its own (leaf) lock. It lives until the last of its creator's
 * reference and its memtables' is gone. */
typedef struct memtable_recycler memtable_recycler;

/* An accepting recycler with one reference; NULL when out of memory. */
memtable_recycler *memtable_recycler_new(void);
/* Accepts NULL. */
void memtable_recycler_unref(memtable_recycler *r);
/* Turning it off also frees what it holds. */
void memtable_recycler_set_accepting(memtable_recycler *r, bool on);
size_t memtable_recycler_bytes(const memtable_recycler *r);
/* If r is accepting and empty, fills it with about `bytes` of new arena blocks for memtables of
 * arena_block_bytes, faulted in by the calling thread: the first memtables of a database then
 * start on memory as warm as a recycled one's. Meant for a background thread; best effort (no
 * memory, or r filled meanwhile: nothing happens). */
void memtable_recycler_prefill(memtable_recycler *r, size_t arena_block_bytes, size_t bytes);
/* As memtable_new_sized, taking r's memory (r may be NULL: plain memtable_new_sized). */
memtable *memtable_new_recycled(size_t arena_block_bytes, memtable_recycler *r);
/* Recycled arena blocks the memtable holds but has not used yet. */
size_t memtable_spare_bytes(const memtable *m);

void memtable_ref(memtable *m);
/* Accepts NULL. */
void memtable_unref(memtable *m);

/* Adds an entry; key/value are copied into the arena. If `prev` is non-NULL, *prev_found says
 * whether an older version of the key existed and *prev gets the newest such version (its slices
 * borrowed from the memtable) - found during the insert's own search, at no extra cost; db.c uses
 * it to keep the live-key count. REQUIRES: seq larger than every seq already added for this key.
 * SHALE_NOMEM if the arena or the index cannot grow (nothing is added, though the index may have
 * grown). SHALE_INVALID / SHALE_FULL for bad arguments, as skiplist_insert. Single writer. */
shale_code memtable_add(memtable *m, uint64_t seq, uint8_t type, shale_slice key, shale_slice value,
                        uint64_t expire_at_ms, bool *prev_found, memtable_entry *prev,
                        shale_error *err) SHALE_MUST_USE;

/* A hint from the writer that memtable_add(key) comes soon (say, after a log write): starts the
 * cache misses that add would wait on (the key's index slot, the arena's next free bytes). No
 * effect on contents. Single writer, as memtable_add. */
void memtable_prefetch(memtable *m, shale_slice key);
/* Before memtable_get(m, key): starts fetching the key's index slot. A hint; any thread. */
void memtable_prefetch_get(memtable *m, shale_slice key);
/* Before adding a batch of keys: walks their search paths in lock step (skiplist_warm) and
 * starts the fetch of their index slots, so the adds that follow find them in the cache. A hint,
 * for the writer's thread; worth it from two keys on, up to the few dozen whose paths stay in
 * the cache until their adds. */
void memtable_warm(memtable *m, const shale_slice *keys, size_t n);

/* Finds the newest version of `key` with seq <= snapshot_seq. Returns true and fills *out (which
 * may be a DEL or an expired PUT: the caller decides visibility) or false if no such version.
 * See the visibility rule above. */
bool memtable_get(memtable *m, shale_slice key, uint64_t snapshot_seq, memtable_entry *out);

/* Memory held: the arena's blocks plus the point-read index (every table it has had). */
size_t memtable_memory_bytes(const memtable *m);
/* The index's share of memtable_memory_bytes. */
size_t memtable_index_bytes(const memtable *m);
uint64_t memtable_entry_count(const memtable *m);

/* The memtable's skiplist, for tests and diagnostics that check its structure. Read-only. */
struct skiplist;
const struct skiplist *memtable_skiplist(const memtable *m);

/* ---- Bulk load ----
 *
 * Fills an EMPTY memtable with a stream of entries in sequence order (log replay at open) much
 * faster than one memtable_add each: entries are staged, sorted once (radix sort on a 16-byte key
 * prefix) and linked level by level in one pass, in sorted order, so the nodes also end up in
 * the arena in key order (scans walk memory forwards). The result is exactly the list the same
 * memtable_adds would have built: same order, same node heights, same links.
 *
 * Usage: memtable_loader_new, memtable_loader_add for each entry, then memtable_loader_finish
 * (which frees the loader, also on failure) or memtable_loader_free to abandon the load.
 * Threads: the loader is the memtable's writer from new until finish/free: no memtable_add in
 * between. Readers see the memtable empty until finish publishes everything at once, then see it
 * whole (they may run at any time, as with memtable_add, but recovery has none).
 * Memory: staged entries live in a loader-owned arena until finish copies them into the
 * memtable's; at finish both exist for a moment (about twice the data). */
typedef struct memtable_loader memtable_loader;

typedef struct memtable_load_stats {
    uint64_t entries;   /* entries loaded (every version) */
    uint64_t keys;      /* distinct keys */
    uint64_t live_keys; /* keys whose newest version is a PUT (expired or not) */
    uint64_t ttl_puts;  /* of those, how many have expire_at_ms != 0 */
} memtable_load_stats;

/* Starts a bulk load into `m`, which must be empty (SHALE_INVALID otherwise), and stores the
 * loader in *out (NULL on failure). SHALE_NOMEM when out of memory. */
shale_code memtable_loader_new(memtable *m, memtable_loader **out, shale_error *err) SHALE_MUST_USE;
/* Stages one entry (copied; the slices may be reused at once). seq must be larger than the seq
 * of every entry staged before (SHALE_INVALID otherwise); the other checks and codes are those of
 * memtable_add. A failed add stages nothing and leaves the loader usable. */
shale_code memtable_loader_add(memtable_loader *l, uint64_t seq, uint8_t type, shale_slice key,
                               shale_slice value, uint64_t expire_at_ms,
                               shale_error *err) SHALE_MUST_USE;
/* Sorts and links every staged entry into the memtable, publishes them, fills *out (may be NULL)
 * and frees the loader, whatever the outcome. On failure (SHALE_NOMEM; SHALE_INVALID if the
 * memtable was written to during the load) the memtable is left empty and *out is zeroed; the
 * arena may keep memory the failed load took until the memtable dies. */
shale_code memtable_loader_finish(memtable_loader *l, memtable_load_stats *out,
                                  shale_error *err) SHALE_MUST_USE;
/* Abandons a load: frees the loader and everything staged; the memtable stays empty. Accepts
 * NULL. */
void memtable_loader_free(memtable_loader *l);

/* An iterator over all entries in internal order (every version, tombstones included). It holds
 * a reference on the memtable from init until destroy. Caller-provided storage (about 450
 * bytes: long forward scans read ahead on several lanes at once, see memtable.c). */
#define MEMTABLE_ITER_LANES 16 /* read-ahead lanes; a power of two */

typedef struct memtable_iter {
    memtable *m;
    const void *node;
    /* Read-ahead state for memtable_iter_next (memtable.c explains it); private. */
    uint32_t steps;         /* nexts in the current window */
    uint32_t near;          /* of those, how many landed just ahead in memory */
    uint32_t lanes;         /* lanes in use (0 = read-ahead off) */
    uint32_t turn;          /* the lane that advances on the next step */
    uint32_t oldest;        /* the lane whose segment the walk enters next */
    uint32_t count;         /* lanes holding segments: oldest, oldest + 1, ... (mod lanes) */
    const void *last_start; /* start of the newest segment handed out; NULL = no more */
    struct {
        const void *start, *cur, *end; /* segment [start, end); cur: last node fetched */
    } lane[MEMTABLE_ITER_LANES];
} memtable_iter;

void memtable_iter_init(memtable_iter *it, memtable *m);
void memtable_iter_destroy(memtable_iter *it);
bool memtable_iter_valid(const memtable_iter *it);
/* Positions at the first entry >= (key, seq) in internal order: the first entry whose key is
 * greater than `key`, or equal to it with a sequence number <= seq. seq = MEMTABLE_MAX_SEQ means
 * "the newest version of key, or the next key". */
void memtable_iter_seek(memtable_iter *it, shale_slice key, uint64_t seq);
void memtable_iter_seek_first(memtable_iter *it);
void memtable_iter_seek_last(memtable_iter *it);
void memtable_iter_next(memtable_iter *it);
/* Moves to the previous entry: O(log n), as the skiplist has no back links. */
void memtable_iter_prev(memtable_iter *it);
/* REQUIRES: valid. */
void memtable_iter_entry(const memtable_iter *it, memtable_entry *out);

#endif
