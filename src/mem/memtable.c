/*
 * memtable: a refcounted skiplist in an arena, plus a hash index for point reads; see memtable.h
 * for the contract.
 *
 * Point-read index. A get on the skiplist is a chain of dependent cache misses (~20 node visits
 * for a million entries); the index maps each user key to the node of its NEWEST version, so a
 * get is a hash, one or two slot probes and the node: older versions follow the newest one on
 * level 0, so a snapshot older than the newest version walks level-0 links from there.
 *
 * Layout: open addressing with linear probing over 8-byte slots, at most 3/4 full. A slot is 0
 * (empty) or tag << INDEX_PTR_BITS | node >> 3: the node pointer (8-byte aligned, below 2^56 -
 * every user-space address on Linux) and the top INDEX_TAG_BITS bits of the key's hash, so a
 * probe dereferences a node only when its tag matches (a false match costs one key compare,
 * 1 in 2048). Keys are never removed (deletes are versions), so probing needs no tombstones.
 *
 * Threads: the single writer (memtable_add, the loader) stores slots with release stores: a slot
 * goes from 0 to a node, or from a node to a newer version of the same key (same hash, same
 * slot). Readers load slots with acquire, so the node's bytes are visible. The table grows by
 * building a complete new one (twice the slots, every key rehashed) and publishing its pointer
 * with a release store; old tables stay allocated until the memtable dies, so a reader still on
 * one reads valid memory. Why a reader on an old table still finds every key it must: the db
 * publishes visible_seq (release) only after memtable_add returns, and a reader loads visible_seq
 * (acquire) before it calls memtable_get. If an insert completed before the reader's snapshot,
 * its slot store - and the publication of any table created before it, which the insert wrote
 * into - happened before the reader loaded the table pointer; so the reader sees that table or a
 * newer one, and the slot or a newer version of it (coherence). An insert that completed after
 * the snapshot is not in the reader's view anyway. (Tests follow the same protocol: the writer
 * publishes a count with release after each add, readers acquire it before reading.)
 *
 * index == NULL means "search the skiplist": before the first add, and for good if a node
 * address ever does not fit a slot (index_off; not seen on Linux, kept as a safe fallback).
 * Memory: 8 bytes per slot, 1/0.75..1/0.375 slots per key, plus the old tables (together about
 * as large as the current one): 11-43 bytes per key, about 25 on average when built by inserts;
 * a table built by the loader is sized for its keys and has no predecessors.
 */
#include "mem/memtable.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/coding.h"
#include "base/error.h"
#include "base/hash.h"
#include "base/slice.h"
#include "mem/skiplist.h"

#define INDEX_PTR_BITS  53
#define INDEX_TAG_BITS  (64 - INDEX_PTR_BITS)
#define INDEX_PTR_MASK  ((UINT64_C(1) << INDEX_PTR_BITS) - 1)
#define INDEX_MIN_SLOTS ((size_t)256)
/* Tables from this size up are 2 MiB-aligned and asked for huge pages: every probe is a random
 * access, and with 4 KiB pages it would usually miss the TLB too (see arena.c). */
/* Keys hashed with a fixed seed: the index is in memory only, and a seed from the clock would
 * make runs irreproducible for no real defence (the keys come from the database's own users). */
#define INDEX_SEED      UINT64_C(0x5368616c65494458)

typedef struct mem_index {
    struct mem_index *older; /* the previous table, kept for readers still on it */
    size_t bytes;            /* of this allocation */
    uint64_t mask;           /* slots - 1; slots is a power of two */
    _Atomic uint64_t slots[];
} mem_index;

struct memtable {
    _Atomic uint32_t refs;
    _Atomic uint64_t entry_count; /* written by the single writer, read by anyone */
    arena arena;
    skiplist list;
    _Atomic(mem_index *) index;  /* current table; NULL = search the list (see above) */
    mem_index *tables;           /* every table, newest first, freed with the memtable; writer */
    size_t index_keys;           /* keys in the current table; writer */
    bool index_off;              /* the index was given up; writer */
    _Atomic size_t index_bytes;  /* all tables; read by anyone (relaxed) */
    memtable_recycler *recycler; /* where the memory goes at the last unref; may be NULL */
};

/* Recycling (memtable.h). The last unref of a memtable happens on any thread, hence the mutex (a
 * leaf lock: nothing is called under it but list operations). */
struct memtable_recycler {
    _Atomic uint32_t refs; /* the creator's + one per memtable made from it */
    pthread_mutex_t mu;
    bool accepting;
    arena_block *blocks;  /* spare arena blocks */
    size_t block_bytes;   /* their total */
    mem_index *index;     /* a zeroed, unpublished index table, or NULL */
    _Atomic size_t bytes; /* block_bytes + the index table's; read by anyone */
};

static inline uint64_t key_hash(const void *key, size_t len)
{
    return hash_bytes(key, len, INDEX_SEED);
}

static inline bool node_fits(const skiplist_node *n)
{
    return ((uint64_t)(uintptr_t)n >> 3) <= INDEX_PTR_MASK;
}

static inline uint64_t slot_make(uint64_t hash, const skiplist_node *n)
{
    return (hash >> INDEX_PTR_BITS) << INDEX_PTR_BITS | (uint64_t)(uintptr_t)n >> 3;
}

static inline const skiplist_node *slot_node(uint64_t v)
{
    return (const skiplist_node *)(uintptr_t)((v & INDEX_PTR_MASK) << 3);
}

static inline size_t index_limit(const mem_index *t)
{
    return (size_t)(t->mask + 1) / 4 * 3;
}

static void index_free_all(mem_index *t)
{
    while (t != NULL) {
        mem_index *older = t->older;
        free(t);
        t = older;
    }
}

/* A zeroed table of `slots` slots (a power of two), not yet linked or published. */
static mem_index *index_alloc(size_t slots)
{
    size_t bytes;
    mem_index *t = NULL;

    if (slots > (SIZE_MAX - sizeof *t) / sizeof t->slots[0]) {
        return NULL;
    }
    bytes = sizeof *t + slots * sizeof t->slots[0];
    t = arena_huge_malloc(bytes);
    if (t == NULL) {
        return NULL;
    }
    t->older = NULL;
    t->bytes = bytes;
    t->mask = slots - 1;
    for (size_t i = 0; i < slots; i++) {
        atomic_init(&t->slots[i], 0);
    }
    return t;
}

/* Makes t current: readers may use it from the release store on. */
static void index_publish(memtable *m, mem_index *t, size_t keys)
{
    t->older = m->tables;
    m->tables = t;
    m->index_keys = keys;
    atomic_store_explicit(&m->index_bytes,
                          atomic_load_explicit(&m->index_bytes, memory_order_relaxed) + t->bytes,
                          memory_order_relaxed);
    atomic_store_explicit(&m->index, t, memory_order_release);
}

/* Stores a key not yet in t. REQUIRES: t has a free slot. */
static void index_put_new(mem_index *t, uint64_t hash, const skiplist_node *n)
{
    uint64_t i = hash & t->mask;
    while (atomic_load_explicit(&t->slots[i], memory_order_relaxed) != 0) {
        i = (i + 1) & t->mask;
    }
    atomic_store_explicit(&t->slots[i], slot_make(hash, n), memory_order_release);
}

/* Gives up the index for good: gets search the list from now on (correct at any time, since
 * every node is in the list before it is in the index). */
static void index_disable(memtable *m)
{
    m->index_off = true;
    atomic_store_explicit(&m->index, NULL, memory_order_release);
}

/* Makes room for one more key before an insert, so that the insert cannot fail after the node is
 * linked. SHALE_NOMEM if a bigger table cannot be had (nothing changes). */
static shale_code index_reserve(memtable *m, shale_error *err)
{
    mem_index *t = atomic_load_explicit(&m->index, memory_order_relaxed);
    mem_index *nt;

    if (m->index_off || (t != NULL && m->index_keys < index_limit(t))) {
        return SHALE_OK;
    }
    nt = index_alloc(t != NULL ? (size_t)(t->mask + 1) * 2 : INDEX_MIN_SLOTS);
    if (nt == NULL) {
        return err_nomem(err);
    }
    if (t != NULL) {
        /* Rehash from the nodes' keys; the nodes a few slots ahead are fetched meanwhile. */
        const uint64_t slots = t->mask + 1;
        for (uint64_t i = 0; i < slots; i++) {
            if (i + 16 < slots) {
                uint64_t ahead = atomic_load_explicit(&t->slots[i + 16], memory_order_relaxed);
                if (ahead != 0) {
                    __builtin_prefetch((const char *)slot_node(ahead) - 32);
                    __builtin_prefetch(slot_node(ahead));
                }
            }
            uint64_t v = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
            if (v != 0) {
                const skiplist_node *n = slot_node(v);
                index_put_new(nt, key_hash(skiplist_node_key(n), n->key_len), n);
            }
        }
    }
    index_publish(m, nt, m->index_keys);
    return SHALE_OK;
}

/* Points the key's slot at n, its new newest version (older: the previous newest, or NULL for a
 * new key). REQUIRES: index_reserve succeeded since the last key was added. */
static void index_update(memtable *m, uint64_t hash, const skiplist_node *older,
                         const skiplist_node *n)
{
    mem_index *t = atomic_load_explicit(&m->index, memory_order_relaxed);

    if (t == NULL || !node_fits(n)) {
        if (!m->index_off) {
            index_disable(m);
        }
        return;
    }
    if (older == NULL) {
        index_put_new(t, hash, n);
        m->index_keys++;
        return;
    }
    const uint64_t want = slot_make(hash, older);
    for (uint64_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        uint64_t v = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
        if (v == want) {
            atomic_store_explicit(&t->slots[i], slot_make(hash, n), memory_order_release);
            return;
        }
        if (NEVER(v == 0)) {
            index_disable(m); /* the older version was not indexed: a bug; stay correct */
            return;
        }
    }
}

/* The newest version of key in t, or NULL. */
static const skiplist_node *index_find(const mem_index *t, shale_slice key)
{
    uint64_t hash = key_hash(key.data, key.len);
    const uint64_t tag = hash >> INDEX_PTR_BITS;

    for (uint64_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        uint64_t v = atomic_load_explicit(&((mem_index *)t)->slots[i], memory_order_acquire);
        if (v == 0) {
            return NULL;
        }
        if (v >> INDEX_PTR_BITS == tag) {
            const skiplist_node *n = slot_node(v);
            if (n->key_len == key.len &&
                (key.len == 0 || memcmp(skiplist_node_key(n), key.data, key.len) == 0)) {
                return n;
            }
        }
    }
}

memtable *memtable_new(void)
{
    return memtable_new_sized(ARENA_BLOCK_BYTES);
}

memtable *memtable_new_sized(size_t arena_block_bytes)
{
    return memtable_new_recycled(arena_block_bytes, NULL);
}

/* ---- recycling ---- */

memtable_recycler *memtable_recycler_new(void)
{
    memtable_recycler *r = calloc(1, sizeof *r);

    if (r == NULL) {
        return NULL;
    }
    atomic_init(&r->refs, 1);
    pthread_mutex_init(&r->mu, NULL);
    r->accepting = true;
    atomic_init(&r->bytes, 0);
    return r;
}

static void recycler_ref(memtable_recycler *r)
{
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

/* Empties r (REQUIRES: r->mu held) into *blocks and *index, for the caller to use or free. */
static void recycler_take_locked(memtable_recycler *r, arena_block **blocks, mem_index **index)
{
    *blocks = r->blocks;
    *index = r->index;
    r->blocks = NULL;
    r->index = NULL;
    r->block_bytes = 0;
    atomic_store_explicit(&r->bytes, 0, memory_order_relaxed);
}

void memtable_recycler_unref(memtable_recycler *r)
{
    if (r == NULL) {
        return;
    }
    uint32_t old = atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel);
    if (NEVER(old == 0) || old != 1) {
        return;
    }
    arena_free_blocks(r->blocks);
    free(r->index);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void memtable_recycler_set_accepting(memtable_recycler *r, bool on)
{
    arena_block *blocks = NULL;
    mem_index *index = NULL;

    pthread_mutex_lock(&r->mu);
    r->accepting = on;
    if (!on) {
        recycler_take_locked(r, &blocks, &index);
    }
    pthread_mutex_unlock(&r->mu);
    arena_free_blocks(blocks);
    free(index);
}

void memtable_recycler_prefill(memtable_recycler *r, size_t arena_block_bytes, size_t bytes)
{
    pthread_mutex_lock(&r->mu);
    bool want = r->accepting && r->blocks == NULL && r->index == NULL;
    pthread_mutex_unlock(&r->mu);
    if (!want) {
        return;
    }
    size_t got = 0;
    arena_block *blocks = arena_blocks_new_faulted(arena_block_bytes, bytes, &got);
    pthread_mutex_lock(&r->mu);
    if (r->accepting && r->blocks == NULL && r->index == NULL) {
        r->blocks = blocks;
        r->block_bytes = got;
        blocks = NULL;
        atomic_store_explicit(&r->bytes, got, memory_order_relaxed); /* no index: it was empty */
    }
    pthread_mutex_unlock(&r->mu);
    arena_free_blocks(blocks);
}

size_t memtable_recycler_bytes(const memtable_recycler *r)
{
    return r == NULL ? 0 : atomic_load_explicit(&r->bytes, memory_order_relaxed);
}

/* The last unref of a memtable made from r: its arena blocks and its newest (largest) index
 * table go to r if r accepts and is empty, everything else is freed. The index is zeroed here,
 * on the releasing thread (usually the flush thread), not on the commit path that reuses it. */
static void recycle(memtable *m)
{
    memtable_recycler *r = m->recycler;
    mem_index *keep = NULL;
    arena_block *blocks = NULL;

    /* All or nothing: the recycler holds one memtable's memory at most, never parts of two. */
    pthread_mutex_lock(&r->mu);
    bool want = r->accepting && r->blocks == NULL && r->index == NULL;
    pthread_mutex_unlock(&r->mu);

    if (want && !m->index_off && m->tables != NULL) {
        keep = m->tables;
        m->tables = keep->older;
        keep->older = NULL;
        memset((void *)keep->slots, 0, (size_t)(keep->mask + 1) * sizeof keep->slots[0]);
    }
    index_free_all(m->tables);
    size_t kept = 0;
    if (want) {
        kept = arena_destroy_keep(&m->arena, &blocks);
    } else {
        arena_destroy(&m->arena);
    }

    pthread_mutex_lock(&r->mu);
    if (r->accepting && r->blocks == NULL && r->index == NULL) {
        r->blocks = blocks;
        r->block_bytes = kept;
        r->index = keep;
        blocks = NULL;
        keep = NULL;
    }
    atomic_store_explicit(&r->bytes, r->block_bytes + (r->index ? r->index->bytes : 0),
                          memory_order_relaxed);
    pthread_mutex_unlock(&r->mu);
    arena_free_blocks(blocks);
    free(keep);
    memtable_recycler_unref(r);
}

memtable *memtable_new_recycled(size_t arena_block_bytes, memtable_recycler *r)
{
    memtable *m = malloc(sizeof *m);
    arena_block *blocks = NULL;
    mem_index *index = NULL;

    if (m == NULL) {
        return NULL;
    }
    atomic_init(&m->refs, 1);
    atomic_init(&m->entry_count, 0);
    arena_init_sized(&m->arena, arena_block_bytes);
    atomic_init(&m->index, NULL);
    m->tables = NULL;
    m->index_keys = 0;
    m->index_off = false;
    atomic_init(&m->index_bytes, 0);
    m->recycler = r;
    if (r != NULL) {
        recycler_ref(r);
        pthread_mutex_lock(&r->mu);
        recycler_take_locked(r, &blocks, &index);
        pthread_mutex_unlock(&r->mu);
        arena_give_spare(&m->arena, blocks); /* before the list's head takes the first block */
    }
    if (skiplist_init(&m->list, &m->arena, NULL) != SHALE_OK) {
        free(index);
        m->recycler = NULL;
        memtable_recycler_unref(r);
        arena_destroy(&m->arena);
        free(m);
        return NULL;
    }
    if (index != NULL) {
        index_publish(m, index, 0); /* zeroed when recycled */
    }
    return m;
}

size_t memtable_spare_bytes(const memtable *m)
{
    return arena_spare_bytes(&m->arena);
}

void memtable_ref(memtable *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void memtable_unref(memtable *m)
{
    if (m == NULL) {
        return;
    }
    /* acq_rel: every reader's last access happens before the free (the shared_ptr pattern). */
    uint32_t old = atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel);
    if (NEVER(old == 0)) {
        return; /* an unref too many: leak rather than free twice */
    }
    if (old == 1) {
        if (m->recycler != NULL) {
            recycle(m);
        } else {
            index_free_all(m->tables);
            arena_destroy(&m->arena);
        }
        free(m);
    }
}

static void fill_entry(const skiplist_node *n, memtable_entry *out)
{
    out->key = slice_make(skiplist_node_key(n), n->key_len);
    out->value = slice_make(skiplist_node_value(n), n->val_len);
    out->seq = skiplist_node_seq(n);
    out->expire_at_ms = skiplist_node_expire_at_ms(n);
    out->type = skiplist_node_type(n);
}

void memtable_prefetch_get(memtable *m, shale_slice key)
{
    mem_index *t = atomic_load_explicit(&m->index, memory_order_acquire);
    if (t != NULL) {
        __builtin_prefetch(&t->slots[key_hash(key.data, key.len) & t->mask]);
    }
}

/* Writer: the next add's node goes at the arena's next free bytes, fresh memory that is not in
 * any cache: writing it would stall on those lines (and the next locked instruction of the commit
 * path would wait for the stores to drain). Starts fetching them for writing. */
static void prefetch_arena(memtable *m)
{
    if (m->arena.ptr != NULL) {
        size_t ahead = m->arena.remaining < 256 ? m->arena.remaining : 256;
        for (size_t off = 0; off < ahead; off += 64) {
            __builtin_prefetch(m->arena.ptr + off, 1);
        }
    }
}

/* Writer: starts fetching, for writing, the index slot an add of the key with this hash
 * updates, a cache miss of its own. */
static void prefetch_slot(memtable *m, uint64_t hash)
{
    mem_index *t = atomic_load_explicit(&m->index, memory_order_relaxed);
    if (t != NULL && !m->index_off) {
        __builtin_prefetch(&t->slots[hash & t->mask], 1);
    }
}

void memtable_prefetch(memtable *m, shale_slice key)
{
    prefetch_arena(m);
    prefetch_slot(m, key_hash(key.data, key.len));
}

void memtable_warm(memtable *m, const shale_slice *keys, size_t n)
{
    /* The slots first, to arrive during the walk. */
    for (size_t i = 0; i < n; i++) {
        prefetch_slot(m, key_hash(keys[i].data, keys[i].len));
    }
    skiplist_warm(&m->list, keys, n);
}

shale_code memtable_add(memtable *m, uint64_t seq, uint8_t type, shale_slice key, shale_slice value,
                        uint64_t expire_at_ms, bool *prev_found, memtable_entry *prev,
                        shale_error *err)
{
    const skiplist_node *older = NULL, *n = NULL;
    shale_code rc = skiplist_check_entry(seq, type, key.len, value.len, err);

    uint64_t hash = 0;

    if (rc == SHALE_OK) {
        rc = index_reserve(m, err); /* before the insert: after it, nothing may fail */
    }
    if (rc == SHALE_OK) {
        /* The node's memory and the key's slot, fetched while the search runs. */
        prefetch_arena(m);
        if (!m->index_off) {
            hash = key_hash(key.data, key.len);
            prefetch_slot(m, hash);
        }
    }
    if (rc == SHALE_OK) {
        rc = skiplist_insert(&m->list, seq, type, key.data, key.len, value.data, value.len,
                             expire_at_ms, &older, &n, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    if (!m->index_off) {
        index_update(m, hash, older, n);
    }
    atomic_store_explicit(&m->entry_count,
                          atomic_load_explicit(&m->entry_count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (prev_found != NULL) {
        *prev_found = older != NULL;
    }
    if (prev != NULL && older != NULL) {
        fill_entry(older, prev);
    }
    return SHALE_OK;
}

static bool same_key_slice(const skiplist_node *n, shale_slice key)
{
    return n->key_len == key.len &&
           (key.len == 0 || memcmp(skiplist_node_key(n), key.data, key.len) == 0);
}

bool memtable_get(memtable *m, shale_slice key, uint64_t snapshot_seq, memtable_entry *out)
{
    const mem_index *t = atomic_load_explicit(&m->index, memory_order_acquire);
    const skiplist_node *n;

    if (t != NULL) {
        n = index_find(t, key);
        /* Newer than the snapshot: the older versions follow on level 0, newest first. */
        while (n != NULL && skiplist_node_seq(n) > snapshot_seq) {
            n = skiplist_next(n);
            if (n != NULL && !same_key_slice(n, key)) {
                n = NULL;
            }
        }
    } else {
        n = skiplist_seek(&m->list, key.data, key.len, snapshot_seq);
        if (n != NULL && !same_key_slice(n, key)) {
            n = NULL;
        }
    }
    if (n == NULL) {
        return false;
    }
    fill_entry(n, out);
    return true;
}

size_t memtable_memory_bytes(const memtable *m)
{
    return arena_memory_bytes(&m->arena) + memtable_index_bytes(m);
}

size_t memtable_index_bytes(const memtable *m)
{
    return atomic_load_explicit(&((memtable *)m)->index_bytes, memory_order_relaxed);
}

const struct skiplist *memtable_skiplist(const memtable *m)
{
    return &m->list;
}

uint64_t memtable_entry_count(const memtable *m)
{
    return atomic_load_explicit(&((memtable *)m)->entry_count, memory_order_relaxed);
}

/* ---- Iterators ----
 *
 * Read-ahead. After a random fill the nodes of a long scan sit at random places in the arena, so
 * each step of a plain level-0 walk is a cache miss (~200 ns on the test VM), one after the
 * other. The links of the upper levels give independent starting points, though: the nodes with
 * more than ITER_LEVEL links cut level 0 into segments of about 2^ITER_LEVEL nodes, and walking
 * several segments at once overlaps their misses. So a scan gets MEMTABLE_ITER_LANES lanes, each
 * walking one of the segments ahead of the iterator (the ring holds the next segments in order);
 * every next() moves ITER_PUMP lanes one node forward each (round robin), prefetching that
 * node's links and, once they are in, its key and value. A lane advances every few steps, by
 * which time its last prefetch has usually arrived; together the lanes run faster than the
 * iterator but no further ahead than the ring's segments. When the iterator reaches the start of
 * the oldest lane's segment, that lane is freed, and each step hands a free lane the segment
 * after the newest one (found on level ITER_LEVEL from the newest start).
 *
 * Nodes laid out in key order (a bulk load) need none of this - the hardware prefetcher streams
 * them, and lanes would only cost time - so every ITER_WINDOW steps the iterator looks at how
 * many steps landed just ahead in memory and runs lanes only where most did not. Short scans
 * (under one window) never start lanes.
 *
 * Measured through the public API (1M random 16-byte keys, 100-byte values, 631k live): readseq
 * after a random fill 4.0M -> 7.2-7.5M entries/s; after a reopen (bulk-loaded) unchanged,
 * 15-16M. Tried: segments of 4, 8, 16, 32 nodes (ITER_LEVEL 2..5), 8..32 lanes, 1..3 lanes a
 * step; 16 nodes, 16 lanes, 2 a step was best or within noise of it.
 *
 * The lanes only ever prefetch: what next() returns comes from the iterator's own level-0 link,
 * so a concurrent insert, or a lane that lost its way, costs time, never correctness. A lane
 * reads the level-ITER_LEVEL link only of nodes it reached on that level. */
#define ITER_LEVEL      4 /* segments of about 16 nodes */
#define ITER_PUMP       2 /* lanes advanced per step */
/* Steps per decision on whether to run lanes, and what counts as "just ahead in memory". */
#define ITER_WINDOW     32
#define ITER_NEAR_BYTES 1024
#define LANE_MASK       (MEMTABLE_ITER_LANES - 1)
_Static_assert((MEMTABLE_ITER_LANES & LANE_MASK) == 0, "a power of two");

static void lanes_off(memtable_iter *it)
{
    it->steps = 0;
    it->near = 0;
    it->lanes = 0;
}

/* Prefetches the bytes before n's header - expiry, key, value - that a scan reads: all of them
 * for small entries, else the 256 bytes before the header and the value's first line. */
static void prefetch_data(const skiplist_node *n)
{
    size_t exp = (n->tag & SKIPLIST_HAS_EXPIRE) ? sizeof(uint64_t) : 0;
    const char *end = (const char *)n;
    const char *from = end - exp - n->key_len - n->val_len;
    const char *p = (size_t)(end - from) > 256 ? end - 256 : from;

    __builtin_prefetch(from);
    for (; p < end; p += 64) {
        __builtin_prefetch(p);
    }
}

/* Hands the next free lane the segment after last_start: lanes oldest .. oldest + count - 1
 * hold consecutive segments, so the new one follows the newest. */
static void lane_add(memtable_iter *it)
{
    const skiplist_node *s = skiplist_next_at(it->last_start, ITER_LEVEL);
    uint32_t i = (it->oldest + it->count) & LANE_MASK;

    it->last_start = s;
    if (s == NULL) {
        return; /* the last segment runs to the end of the list */
    }
    if (it->count > 0) {
        it->lane[(i - 1) & LANE_MASK].end = s; /* the previous one ends here */
    }
    it->lane[i].start = s;
    it->lane[i].cur = s;
    it->lane[i].end = NULL;
    it->count++;
    __builtin_prefetch(s);
}

static void lanes_start(memtable_iter *it)
{
    const skiplist_node *x = it->node;
    const skiplist_node *s = skiplist_seek_level(&it->m->list, skiplist_node_key(x), x->key_len,
                                                 skiplist_node_seq(x), ITER_LEVEL);

    for (uint32_t i = 0; i < MEMTABLE_ITER_LANES; i++) {
        it->lane[i].start = it->lane[i].cur = it->lane[i].end = NULL;
    }
    if (s == NULL) {
        return; /* no segment starts ahead: read-ahead stays off */
    }
    it->lanes = MEMTABLE_ITER_LANES;
    it->turn = 0;
    it->oldest = 0;
    it->count = 1;
    it->lane[0].start = it->lane[0].cur = s;
    it->last_start = s;
    __builtin_prefetch(s);
}

static void lanes_step(memtable_iter *it)
{
    if (it->count > 0 && it->node == it->lane[it->oldest].start) {
        /* The walk entered the oldest lane's segment, which that lane has fetched: free it. */
        it->lane[it->oldest].start = it->lane[it->oldest].cur = NULL;
        it->oldest = (it->oldest + 1) & LANE_MASK;
        it->count--;
    }
    if (it->count < MEMTABLE_ITER_LANES && it->last_start != NULL) {
        lane_add(it); /* at most one a step: finding a start may be a miss */
    }

    /* ITER_PUMP lanes, one node forward each. */
    for (int k = 0; k < ITER_PUMP; k++) {
        uint32_t t = it->turn;
        it->turn = (t + 1) & LANE_MASK;
        const skiplist_node *cur = it->lane[t].cur;
        if (cur != NULL) {
            const skiplist_node *n = skiplist_next(cur);
            prefetch_data(cur);
            if (n == NULL || n == it->lane[t].end) {
                it->lane[t].cur = NULL; /* segment done */
            } else {
                __builtin_prefetch(n);
                it->lane[t].cur = n;
            }
        }
    }
}

void memtable_iter_init(memtable_iter *it, memtable *m)
{
    memtable_ref(m);
    it->m = m;
    it->node = NULL;
    lanes_off(it);
}

void memtable_iter_destroy(memtable_iter *it)
{
    memtable_unref(it->m);
    it->m = NULL;
    it->node = NULL;
    lanes_off(it);
}

bool memtable_iter_valid(const memtable_iter *it)
{
    return it->node != NULL;
}

void memtable_iter_seek(memtable_iter *it, shale_slice key, uint64_t seq)
{
    it->node = skiplist_seek(&it->m->list, key.data, key.len, seq);
    lanes_off(it);
}

void memtable_iter_seek_first(memtable_iter *it)
{
    it->node = skiplist_first(&it->m->list);
    lanes_off(it);
}

void memtable_iter_seek_last(memtable_iter *it)
{
    it->node = skiplist_last(&it->m->list);
    lanes_off(it);
}

/* next and prev leave an invalid iterator invalid rather than trusting the caller. */
void memtable_iter_next(memtable_iter *it)
{
    const skiplist_node *x = it->node;

    if (x == NULL) {
        return;
    }
    it->node = skiplist_next(x);
    if (it->node == NULL) {
        return;
    }
    /* Nodes laid out in key order (a bulk load) are streamed by the hardware prefetcher, and
     * lanes would only cost time: count the steps that land just ahead in memory, and decide
     * per window whether lanes are worth running. */
    it->near += (uintptr_t)it->node - (uintptr_t)x < ITER_NEAR_BYTES;
    if (it->lanes != 0) {
        lanes_step(it);
    }
    if (++it->steps == ITER_WINDOW) {
        bool sequential = it->near >= ITER_WINDOW / 4 * 3;
        it->steps = 0;
        it->near = 0;
        if (sequential) {
            it->lanes = 0;
        } else if (it->lanes == 0) {
            lanes_start(it);
        }
    }
}

void memtable_iter_prev(memtable_iter *it)
{
    const skiplist_node *n = it->node;

    if (n == NULL) {
        return;
    }
    it->node = skiplist_find_less_than(&it->m->list, skiplist_node_key(n), n->key_len,
                                       skiplist_node_seq(n));
    lanes_off(it);
}

void memtable_iter_entry(const memtable_iter *it, memtable_entry *out)
{
    if (NEVER(it->node == NULL)) {
        memset(out, 0, sizeof *out); /* REQUIRES valid; an empty DEL entry, never a crash */
        return;
    }
    fill_entry(it->node, out);
}

/* ---- Bulk load ----
 *
 * Each staged entry is a complete node (height drawn at add time, in arrival order, exactly as
 * memtable_add would draw it), built in the loader's staging arena, plus a sort record. finish
 * sorts the records into internal order, copies each node into the memtable's arena in that
 * order and links it with skiplist_bulk.
 *
 * The sort: records hold the key's first 16 bytes, zero-padded, as two big-endian words. Bytewise
 * order with a proper prefix first is the order of (zero-padded bytes, length), so an MSD radix
 * sort on those 16 bytes does almost all the work without touching a node; records whose 16
 * bytes tie are sorted again on the next 16 bytes of their keys, and keys that tie on every
 * padded byte are ordered by length. Every pass is stable and the records enter in reverse
 * arrival order (newest first), so versions of one key come out newest first: (key asc, seq
 * desc) without ever comparing sequence numbers. */

/* Entries whose node is bigger than this are built in place in the memtable's arena: the arena
 * gives them a block of their own anyway, and copying them would cost more than it could save. */
#define LOADER_IN_PLACE_BYTES (ARENA_BLOCK_BYTES / 4)
/* Below this many records a range is finished by insertion sort. */
#define LOADER_SMALL_SORT     32
/* How far ahead of the copy the next source nodes are prefetched. */
#define LOADER_PREFETCH       8

typedef struct load_rec {
    uint64_t hi, lo;     /* 16 key bytes from the current sort offset, zero-padded, big-endian */
    skiplist_node *node; /* staged (or, if in_place, final) node */
    uint32_t key_len;
    uint8_t height;
    uint8_t in_place;
} load_rec;

struct memtable_loader {
    memtable *m;
    arena staging;
    load_rec *recs;
    size_t count, cap;
    uint64_t last_seq;
};

/* Key bytes [off, off + 16) as two big-endian words, zero beyond the key's end. */
static void load_padded(load_rec *r, const void *key, size_t len, size_t off)
{
    unsigned char b[16] = {0};
    if (len > off) {
        size_t k = len - off < sizeof b ? len - off : sizeof b;
        memcpy(b, (const unsigned char *)key + off, k);
    }
    r->hi = coding_get_be64((const uint8_t *)b);
    r->lo = coding_get_be64((const uint8_t *)b + 8);
}

shale_code memtable_loader_new(memtable *m, memtable_loader **out, shale_error *err)
{
    memtable_loader *l;

    *out = NULL;
    if (memtable_entry_count(m) != 0 || skiplist_first(&m->list) != NULL) {
        return err_set(err, SHALE_INVALID, 0, "memtable loader: the memtable is not empty");
    }
    l = calloc(1, sizeof *l);
    if (l == NULL) {
        return err_nomem(err);
    }
    l->m = m;
    arena_init(&l->staging);
    *out = l;
    return SHALE_OK;
}

void memtable_loader_free(memtable_loader *l)
{
    if (l == NULL) {
        return;
    }
    arena_destroy(&l->staging);
    free(l->recs);
    free(l);
}

shale_code memtable_loader_add(memtable_loader *l, uint64_t seq, uint8_t type, shale_slice key,
                               shale_slice value, uint64_t expire_at_ms, shale_error *err)
{
    shale_code rc = skiplist_check_entry(seq, type, key.len, value.len, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    if (l->count > 0 && seq <= l->last_seq) {
        return err_set(err, SHALE_INVALID, 0, "memtable loader: seq %llu is not after %llu",
                       (unsigned long long)seq, (unsigned long long)l->last_seq);
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        load_rec *recs =
            cap <= SIZE_MAX / sizeof *recs ? realloc(l->recs, cap * sizeof *recs) : NULL;
        if (recs == NULL) {
            return err_nomem(err);
        }
        l->recs = recs;
        l->cap = cap;
    }

    /* Drawn here, in arrival order, so heights match what memtable_add would have drawn. */
    int height = skiplist_random_height(&l->m->list);
    size_t bytes = key.len + value.len + 64 + (size_t)height * sizeof(skiplist_link);
    bool in_place = key.len + value.len > LOADER_IN_PLACE_BYTES || bytes > LOADER_IN_PLACE_BYTES;
    /* A staged node needs no links: finish gives its copy `height` of them. */
    skiplist_node *n = in_place ? skiplist_node_new(&l->m->arena, height, seq, type, key.data,
                                                    key.len, value.data, value.len, expire_at_ms)
                                : skiplist_node_new(&l->staging, 0, seq, type, key.data, key.len,
                                                    value.data, value.len, expire_at_ms);
    if (n == NULL) {
        return err_nomem(err);
    }
    load_rec *r = &l->recs[l->count++];
    load_padded(r, key.data, key.len, 0);
    r->node = n;
    r->key_len = (uint32_t)key.len;
    r->height = (uint8_t)height;
    r->in_place = in_place;
    l->last_seq = seq;
    return SHALE_OK;
}

static inline unsigned rec_byte(const load_rec *r, int d)
{
    uint64_t w = d < 8 ? r->hi : r->lo;
    return (unsigned)(w >> (56 - 8 * (d & 7))) & 0xffu;
}

static inline bool rec_less(const load_rec *a, const load_rec *b)
{
    return a->hi < b->hi || (a->hi == b->hi && a->lo < b->lo);
}

static void insertion_sort(load_rec *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (!rec_less(&a[i], &a[i - 1])) {
            continue;
        }
        load_rec x = a[i];
        size_t j = i;
        do {
            a[j] = a[j - 1];
            j--;
        } while (j > 0 && rec_less(&x, &a[j - 1]));
        a[j] = x;
    }
}

/* Stable MSD radix sort on (hi, lo), from byte `depth` on (the bytes before are equal across the
 * range): sorts the n records in src and leaves them in dst when to_dst, else in src; the other
 * array is scratch. Each pass scatters from one array into the other and the buckets recurse the
 * other way round, so no pass copies back. Recursion depth is at most 16. */
static void radix_sort(load_rec *src, load_rec *dst, size_t n, int depth, bool to_dst)
{
    if (n > 4096) {
        /* Skip the bytes every key shares in one pass rather than one counting pass each. */
        uint64_t dhi = 0, dlo = 0;
        for (size_t i = 1; i < n; i++) {
            dhi |= src[i].hi ^ src[0].hi;
            dlo |= src[i].lo ^ src[0].lo;
        }
        int first = dhi ? __builtin_clzll(dhi) / 8 : dlo ? 8 + __builtin_clzll(dlo) / 8 : 16;
        depth = first > depth ? first : depth;
    }
    for (;;) {
        if (n <= LOADER_SMALL_SORT || depth >= 16) {
            if (to_dst) {
                memcpy(dst, src, n * sizeof *src);
            }
            if (depth < 16) {
                insertion_sort(to_dst ? dst : src, n);
            }
            return;
        }
        size_t count[256] = {0};
        for (size_t i = 0; i < n; i++) {
            count[rec_byte(&src[i], depth)]++;
        }
        if (count[rec_byte(&src[0], depth)] == n) {
            depth++; /* a byte every key shares: no pass needed */
            continue;
        }
        size_t pos[256];
        size_t sum = 0;
        for (int b = 0; b < 256; b++) {
            pos[b] = sum;
            sum += count[b];
        }
        for (size_t i = 0; i < n; i++) {
            dst[pos[rec_byte(&src[i], depth)]++] = src[i];
        }
        size_t start = 0;
        for (int b = 0; b < 256; b++) {
            if (count[b] > 0) {
                radix_sort(dst + start, src + start, count[b], depth + 1, !to_dst);
            }
            start += count[b];
        }
        return;
    }
}

/* Stable merge sort of a[0, n) by key length (keys whose padded bytes all tie). */
static void sort_by_len(load_rec *a, load_rec *tmp, size_t n)
{
    if (n <= LOADER_SMALL_SORT) {
        for (size_t i = 1; i < n; i++) {
            load_rec x = a[i];
            size_t j = i;
            while (j > 0 && x.key_len < a[j - 1].key_len) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = x;
        }
        return;
    }
    size_t mid = n / 2, i = 0, j = mid, k = 0;
    sort_by_len(a, tmp, mid);
    sort_by_len(a + mid, tmp + mid, n - mid);
    while (i < mid && j < n) {
        tmp[k++] = a[j].key_len < a[i].key_len ? a[j++] : a[i++];
    }
    while (i < mid) {
        tmp[k++] = a[i++];
    }
    while (j < n) {
        tmp[k++] = a[j++];
    }
    memcpy(a, tmp, n * sizeof *a);
}

/* Sorts a[0, n) into internal order. The keys share their first `off` bytes (zero-padded) and
 * hi/lo hold bytes [off, off + 16). Recursion goes 16 bytes deeper per level, only for keys that
 * tie on everything so far, so it ends at the longest such key. */
static void sort_recs(load_rec *a, load_rec *tmp, size_t n, size_t off)
{
    radix_sort(a, tmp, n, 0, false);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        uint32_t min_len = a[i].key_len, max_len = a[i].key_len;
        while (j < n && a[j].hi == a[i].hi && a[j].lo == a[i].lo) {
            min_len = a[j].key_len < min_len ? a[j].key_len : min_len;
            max_len = a[j].key_len > max_len ? a[j].key_len : max_len;
            j++;
        }
        if (j - i > 1) {
            if (max_len > off + 16) {
                for (size_t k = i; k < j; k++) {
                    load_padded(&a[k], skiplist_node_key(a[k].node), a[k].key_len, off + 16);
                }
                sort_recs(a + i, tmp + i, j - i, off + 16);
            } else if (min_len != max_len) {
                sort_by_len(a + i, tmp + i, j - i);
            }
            /* else: one key, its versions already newest first */
        }
        i = j;
    }
}

static bool same_key(const skiplist_node *a, const skiplist_node *b)
{
    return a->key_len == b->key_len &&
           (a->key_len == 0 || memcmp(skiplist_node_key(a), skiplist_node_key(b), a->key_len) == 0);
}

static void prefetch_node(const skiplist_node *n)
{
    /* The header and the key before it; the value is further back and streams with the copy. */
    __builtin_prefetch(n);
    __builtin_prefetch((const char *)n - 64);
}

shale_code memtable_loader_finish(memtable_loader *l, memtable_load_stats *out, shale_error *err)
{
    memtable *m = l->m;
    memtable_load_stats st = {0};
    load_rec *tmp = NULL;
    shale_code rc = SHALE_OK;
    const size_t n = l->count;

    if (out != NULL) {
        *out = st;
    }
    if (memtable_entry_count(m) != 0 || skiplist_first(&m->list) != NULL) {
        rc = err_set(err, SHALE_INVALID, 0, "memtable loader: the memtable was written to");
        goto out;
    }
    if (n == 0) {
        goto out;
    }
    tmp = malloc(n * sizeof *tmp);
    if (tmp == NULL) {
        rc = err_nomem(err);
        goto out;
    }
    /* Newest first, so the stable sort leaves the versions of a key newest first. */
    for (size_t i = 0, j = n - 1; i < j; i++, j--) {
        load_rec x = l->recs[i];
        l->recs[i] = l->recs[j];
        l->recs[j] = x;
    }
    sort_recs(l->recs, tmp, n, 0);

    skiplist_bulk bulk;
    const skiplist_node *prev = NULL;
    skiplist_bulk_init(&bulk);
    for (size_t i = 0; i < n; i++) {
        const load_rec *r = &l->recs[i];
        if (i + LOADER_PREFETCH < n) {
            prefetch_node(l->recs[i + LOADER_PREFETCH].node);
        }
        skiplist_node *node =
            r->in_place ? r->node : skiplist_node_copy(&m->arena, r->node, r->height);
        if (node == NULL) {
            rc = err_nomem(err);
            goto out;
        }
        if (prev == NULL || !same_key(prev, node)) {
            bool live = skiplist_node_type(node) == MEMTABLE_PUT;
            /* The newest version of a new key, for the index; tmp's sort records are free. */
            tmp[st.keys].node = node;
            tmp[st.keys].hi = key_hash(skiplist_node_key(node), node->key_len);
            st.keys++;
            st.live_keys += live;
            st.ttl_puts += live && (node->tag & SKIPLIST_HAS_EXPIRE) != 0;
        }
        skiplist_bulk_append(&bulk, node, r->height);
        prev = node;
    }

    /* The index, sized for these keys at most 3/4 full. */
    mem_index *t = NULL;
    if (!m->index_off) {
        size_t slots = INDEX_MIN_SLOTS;
        while (slots / 4 * 3 <= st.keys) {
            slots *= 2;
        }
        t = index_alloc(slots);
        if (t == NULL) {
            rc = err_nomem(err);
            goto out;
        }
        for (size_t k = 0; k < st.keys; k++) {
            if (k + 16 < st.keys) {
                __builtin_prefetch(&t->slots[tmp[k + 16].hi & t->mask]);
            }
            if (!node_fits(tmp[k].node)) {
                free(t);
                t = NULL;
                break;
            }
            index_put_new(t, tmp[k].hi, tmp[k].node);
        }
    }
    if (t != NULL) {
        index_publish(m, t, st.keys);
    } else {
        index_disable(m);
    }
    skiplist_bulk_publish(&m->list, &bulk);
    atomic_store_explicit(&m->entry_count, n, memory_order_relaxed);
    st.entries = n;
    if (out != NULL) {
        *out = st;
    }
out:
    free(tmp);
    memtable_loader_free(l);
    return rc;
}
