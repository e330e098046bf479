/*
 * cache: see cache.h. LevelDB's ShardedLRUCache (util/cache.cc), in our own C.
 *
 * An entry (struct cache_handle, handed out as the handle itself) is in one of three states:
 *   - in the cache, unpinned: in the hash table and on the shard's LRU list; refs == 1 (the
 *     cache's own reference);
 *   - in the cache, pinned: in the hash table, on the LRU list or the in-use list; refs == 1 +
 *     handles;
 *   - detached: erased, replaced, or never kept (capacity 0, oversize); on no list and not in
 *     the table; refs == handles. The deleter runs when refs reaches 0.
 *
 * A hit writes nothing but the entry itself (refs, and a `visited` bit): it does not move the
 * entry to the young end of the LRU list, as LevelDB does. Moving it wrote the two neighbours'
 * list links, two cache lines nobody else needed, and the unlock that followed waited for those
 * stores: a third of a random get's time went to the block cache before this. Instead eviction
 * gives the oldest entry a second chance (CLOCK on a list): a visited entry has its bit cleared
 * and goes to the young end, a pinned one moves to the in-use list (released, it comes back at
 * the young end), and the first entry that is neither is evicted. Each step evicts, clears a
 * bit or takes a pinned entry off the list, so eviction ends, and a pinned entry is never
 * evicted. Every list and counter of a shard is guarded by that shard's mutex; the counters are
 * plain integers summed by cache_get_stats, so a lookup touches no shared cache line beyond its
 * own shard (shards are cache-line aligned so neighbours do not false-share).
 *
 * Readings of the header this file chose (what LevelDB/RocksDB do, or the safer of two):
 *   - Capacity splits exactly: shard i gets capacity / n, plus one byte for the first
 *     capacity % n shards, so the shard capacities sum to the capacity and total usage of unpinned
 *     entries never passes it.
 *   - An entry is kept iff its shard's capacity is > 0 and its charge <= that capacity. A kept
 *     insert then evicts LRU entries until usage fits (or only pinned ones remain). An insert that
 *     is not kept still replaces: any entry already under the key is removed, so a lookup never
 *     returns a value older than the last one inserted.
 *   - Releasing the last handle on a kept entry puts it at the young end of the LRU and then
 *     evicts while usage > capacity, so usage pushed over the bound by pins drops back as soon
 *     as the pins go (LevelDB waits for the next insert).
 *   - Counters: `inserts` counts every cache_insert that returned a handle, kept or not;
 *     `evictions` counts only entries pushed out by the bound (not erase, replace, prune or free);
 *     `pinned_bytes` counts pinned entries that are still in the cache (detached ones are in
 *     neither usage nor pinned).
 *   - shard_bits outside 0..8 makes cache_new return NULL, its only way to say no.
 */
#include "base/cache.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/hash.h"

#define CACHE_MAX_SHARD_BITS 8
/* A fresh table starts with this many buckets (a power of two) and doubles whenever it holds more
 * than half as many entries as buckets: a hit then walks past another entry (a cache miss on its
 * handle) a quarter of the time or less, where a load of one made that up to half. Buckets cost 8
 * bytes; the entries are table blocks of kilobytes. */
#define CACHE_MIN_BUCKETS    16
/* Any fixed odd constant: the hash only has to spread keys, and nothing stores it. */
#define CACHE_HASH_SEED      0x9e3779b97f4a7c15ull
/* Shards sit on separate cache lines so lookups on different shards do not contend. */
#define CACHE_LINE           64
_Static_assert(CACHE_LINE == CACHE_EMBED_ALIGN, "embedded handles are line-aligned");

typedef struct lnode {
    struct lnode *prev, *next;
} lnode;

struct cache_handle {
    /* What a hit reads and writes, first, so that it is one cache line (a hit's misses are the
     * bucket, this line, and the value). */
    uint64_t hash;
    uint64_t id, off;
    struct cache_handle *next_hash; /* bucket chain; reused to chain entries being freed */
    void *value;
    uint32_t refs; /* handles, plus one while in the cache */
    bool visited;  /* looked up since eviction last passed it */
    bool in_cache;
    bool on_lru;   /* on the LRU list (else on the in-use list, or on none when detached) */
    bool embedded; /* in the caller's allocation (cache_insert_embedded): the deleter frees it */
    /* What only inserts, releases and eviction touch. */
    lnode lru; /* on the shard's LRU or in-use list */
    cache_deleter deleter;
    void *arg;
    size_t charge;
};

typedef struct shard {
    _Alignas(CACHE_LINE) pthread_mutex_t mu;
    size_t capacity;
    size_t usage;  /* charge of entries in the cache */
    size_t pinned; /* charge of entries in the cache that a handle holds */
    lnode lru;     /* unpinned entries and entries pinned by lookups, oldest first */
    lnode in_use;  /* pinned entries that eviction (or an insert) took off the LRU, no order */
    cache_handle **buckets;
    size_t nbuckets; /* a power of two */
    size_t elems;    /* entries in the table */
    uint64_t hits, misses, inserts, evictions;
} shard;

struct cache {
    shard *shards;
    int shard_bits;
    size_t capacity;
    _Atomic uint64_t last_id;
    _Atomic size_t held; /* long-term pins (cache_hold_try) */
};

/* ---- lists ---- */

static void list_init(lnode *head)
{
    head->prev = head;
    head->next = head;
}

static bool list_empty(const lnode *head)
{
    return head->next == head;
}

static void list_remove(lnode *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e;
    e->next = e;
}

/* Appends at the tail: the young end of the LRU. */
static void list_append(lnode *head, lnode *e)
{
    e->next = head;
    e->prev = head->prev;
    e->prev->next = e;
    e->next->prev = e;
}

static cache_handle *entry_of(lnode *l)
{
    return (cache_handle *)((char *)l - offsetof(cache_handle, lru));
}

/* ---- keys ---- */

/* Hashes the two words in native byte order: the hash never leaves memory, and coding.h's
 * byte-at-a-time stores followed by hash_bytes' word loads would defeat store forwarding (a
 * quarter of a lookup's time, measured). */
static uint64_t key_hash(uint64_t id, uint64_t off)
{
    const uint64_t key[2] = {id, off};
    return hash_bytes(key, sizeof key, CACHE_HASH_SEED);
}

/* The top bits pick the shard, the bottom bits the bucket, so the two choices are independent. */
static shard *shard_of(cache *c, uint64_t hash)
{
    if (c->shard_bits == 0) {
        return &c->shards[0];
    }
    return &c->shards[hash >> (64 - c->shard_bits)];
}

/* ---- hash table (shard->mu held) ---- */

static cache_handle **find_slot(shard *s, uint64_t id, uint64_t off, uint64_t hash)
{
    cache_handle **slot = &s->buckets[hash & (s->nbuckets - 1)];
    while (*slot != NULL && ((*slot)->hash != hash || (*slot)->id != id || (*slot)->off != off)) {
        slot = &(*slot)->next_hash;
    }
    return slot;
}

/* Doubles the table. On allocation failure the table stays as it is: still correct, with longer
 * chains, and the next insert tries again. */
static void grow(shard *s)
{
    size_t n = s->nbuckets * 2;
    cache_handle **nb = calloc(n, sizeof *nb);
    if (nb == NULL) {
        return;
    }
    for (size_t i = 0; i < s->nbuckets; i++) {
        cache_handle *e = s->buckets[i];
        while (e != NULL) {
            cache_handle *next = e->next_hash;
            cache_handle **head = &nb[e->hash & (n - 1)];
            e->next_hash = *head;
            *head = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
}

/* Unlinks e from the table and its list and drops the cache's reference. Returns true when
 * that was the last reference, i.e. the caller must free e (after unlocking). */
static bool detach(shard *s, cache_handle *e)
{
    assert(e->in_cache && e->refs >= 1);
    e->in_cache = false;
    s->usage -= e->charge;
    if (e->refs > 1) {
        s->pinned -= e->charge;
    }
    list_remove(&e->lru);
    e->on_lru = false;
    e->refs--;
    return e->refs == 0;
}

/* Removes e from the table by key (it must be there), then detaches it. */
static bool table_remove(shard *s, cache_handle *e)
{
    cache_handle **slot = find_slot(s, e->id, e->off, e->hash);
    assert(*slot == e);
    *slot = e->next_hash;
    e->next_hash = NULL;
    s->elems--;
    return detach(s, e);
}

/* Takes the oldest entry of the LRU list (which must not be empty): a pinned one moves to the
 * in-use list; with second_chance, a visited one loses its bit and moves to the young end;
 * otherwise it is removed and pushed on *dead for the caller to free after unlocking. True when
 * it was removed. */
static bool drop_oldest(shard *s, bool second_chance, cache_handle **dead)
{
    cache_handle *old = entry_of(s->lru.next);
    list_remove(&old->lru);
    if (old->refs > 1) {
        old->on_lru = false;
        list_append(&s->in_use, &old->lru);
        return false;
    }
    if (second_chance && old->visited) {
        old->visited = false;
        list_append(&s->lru, &old->lru);
        return false;
    }
    bool last = table_remove(s, old);
    assert(last);
    (void)last;
    old->next_hash = *dead;
    *dead = old;
    return true;
}

/* Evicts unpinned entries, oldest first with a second chance for visited ones, while usage
 * passes capacity. */
static void evict_to_fit(shard *s, cache_handle **dead)
{
    while (s->usage > s->capacity && !list_empty(&s->lru)) {
        s->evictions += drop_oldest(s, true, dead);
    }
}

/* Runs the deleters of a chain built by evict_to_fit and friends. No lock held. */
static void free_chain(cache_handle *e)
{
    while (e != NULL) {
        cache_handle *next = e->next_hash;
        bool embedded = e->embedded; /* read first: the deleter may free e with the value */
        e->deleter(e->value, e->arg);
        if (!embedded) {
            free(e);
        }
        e = next;
    }
}

/* ---- the API ---- */

cache *cache_new(size_t capacity, int shard_bits)
{
    if (shard_bits < 0 || shard_bits > CACHE_MAX_SHARD_BITS) {
        return NULL;
    }
    size_t n = (size_t)1 << shard_bits;
    cache *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->shard_bits = shard_bits;
    c->capacity = capacity;
    atomic_init(&c->last_id, 0);
    atomic_init(&c->held, 0);
    /* sizeof(shard) is a multiple of its alignment, as aligned_alloc requires of the size. */
    c->shards = aligned_alloc(_Alignof(shard), n * sizeof(shard));
    if (c->shards == NULL) {
        free(c);
        return NULL;
    }
    size_t built = 0;
    for (; built < n; built++) {
        shard *s = &c->shards[built];
        *s = (shard){0};
        s->buckets = calloc(CACHE_MIN_BUCKETS, sizeof *s->buckets);
        if (s->buckets == NULL) {
            break;
        }
        if (pthread_mutex_init(&s->mu, NULL) != 0) {
            free(s->buckets);
            break;
        }
        s->nbuckets = CACHE_MIN_BUCKETS;
        s->capacity = capacity / n + (built < capacity % n ? 1 : 0);
        list_init(&s->lru);
        list_init(&s->in_use);
    }
    if (built < n) {
        for (size_t i = 0; i < built; i++) {
            pthread_mutex_destroy(&c->shards[i].mu);
            free(c->shards[i].buckets);
        }
        free(c->shards);
        free(c);
        return NULL;
    }
    return c;
}

void cache_free(cache *c)
{
    if (c == NULL) {
        return;
    }
    size_t n = (size_t)1 << c->shard_bits;
    for (size_t i = 0; i < n; i++) {
        shard *s = &c->shards[i];
        /* REQUIRES of the header: a handle still out would point into freed memory. */
        assert(list_empty(&s->in_use));
        cache_handle *dead = NULL;
        while (!list_empty(&s->lru)) {
            drop_oldest(s, false, &dead);
        }
        free_chain(dead);
        pthread_mutex_destroy(&s->mu);
        free(s->buckets);
    }
    free(c->shards);
    free(c);
}

uint64_t cache_new_id(cache *c)
{
    return atomic_fetch_add_explicit(&c->last_id, 1, memory_order_relaxed) + 1;
}

bool cache_hold_try(cache *c, size_t bytes)
{
    size_t cur = atomic_load_explicit(&c->held, memory_order_relaxed);
    do {
        if (bytes > c->capacity / 2 || cur > c->capacity / 2 - bytes) {
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(&c->held, &cur, cur + bytes,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

void cache_hold_done(cache *c, size_t bytes)
{
    atomic_fetch_sub_explicit(&c->held, bytes, memory_order_relaxed);
}

cache_handle *cache_lookup(cache *c, uint64_t id, uint64_t off)
{
    uint64_t hash = key_hash(id, off);
    shard *s = shard_of(c, hash);
    pthread_mutex_lock(&s->mu);
    cache_handle *e = *find_slot(s, id, off, hash);
    if (e != NULL) {
        if (e->refs == 1) {
            s->pinned += e->charge;
        }
        e->refs++;
        e->visited = true;
        s->hits++;
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->mu);
    return e;
}

size_t cache_embedded_size(void)
{
    return (sizeof(cache_handle) + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
}

static cache_handle *insert(cache *c, cache_handle *e, bool embedded, uint64_t id, uint64_t off,
                            void *value, size_t charge, cache_deleter deleter, void *arg);

cache_handle *cache_insert(cache *c, uint64_t id, uint64_t off, void *value, size_t charge,
                           cache_deleter deleter, void *arg)
{
    /* Line-aligned, so the hot fields above never straddle two lines. */
    cache_handle *e = aligned_alloc(CACHE_LINE, cache_embedded_size());
    if (e == NULL) {
        deleter(value, arg);
        return NULL;
    }
    return insert(c, e, false, id, off, value, charge, deleter, arg);
}

cache_handle *cache_insert_embedded(cache *c, void *mem, uint64_t id, uint64_t off, void *value,
                                    size_t charge, cache_deleter deleter, void *arg)
{
    return insert(c, mem, true, id, off, value, charge, deleter, arg);
}

static cache_handle *insert(cache *c, cache_handle *e, bool embedded, uint64_t id, uint64_t off,
                            void *value, size_t charge, cache_deleter deleter, void *arg)
{
    uint64_t hash = key_hash(id, off);
    shard *s = shard_of(c, hash);
    cache_handle *dead = NULL;
    e->embedded = embedded;
    e->next_hash = NULL;
    e->value = value;
    e->deleter = deleter;
    e->arg = arg;
    e->id = id;
    e->off = off;
    e->hash = hash;
    e->charge = charge;
    e->refs = 1; /* the caller's handle */
    e->in_cache = false;
    e->on_lru = false;
    e->visited = false;
    list_init(&e->lru);

    pthread_mutex_lock(&s->mu);
    s->inserts++;
    cache_handle **slot = find_slot(s, id, off, hash);
    cache_handle *old = *slot;
    bool keep = s->capacity > 0 && charge <= s->capacity;
    if (old != NULL) {
        *slot = old->next_hash;
        old->next_hash = NULL;
        s->elems--;
        if (detach(s, old)) {
            old->next_hash = dead;
            dead = old;
        }
    }
    if (keep) {
        e->refs++; /* the cache's own */
        e->in_cache = true;
        e->next_hash = *slot;
        *slot = e;
        s->elems++;
        s->usage += charge;
        s->pinned += charge;
        list_append(&s->in_use, &e->lru);
        evict_to_fit(s, &dead);
        if (s->elems > s->nbuckets / 2) {
            grow(s);
        }
    }
    pthread_mutex_unlock(&s->mu);
    free_chain(dead);
    return e;
}

void *cache_value(const cache_handle *h)
{
    return h->value;
}

void cache_release(cache *c, cache_handle *h)
{
    if (h == NULL) {
        return;
    }
    shard *s = shard_of(c, h->hash);
    cache_handle *dead = NULL;
    pthread_mutex_lock(&s->mu);
    assert(h->refs >= 1);
    h->refs--;
    if (h->refs == 0) {
        dead = h; /* detached and now unreferenced */
    } else if (h->in_cache && h->refs == 1) {
        if (!h->on_lru) {
            list_remove(&h->lru);
            list_append(&s->lru, &h->lru);
            h->on_lru = true;
        }
        s->pinned -= h->charge;
        evict_to_fit(s, &dead);
    }
    pthread_mutex_unlock(&s->mu);
    free_chain(dead);
}

void cache_erase(cache *c, uint64_t id, uint64_t off)
{
    uint64_t hash = key_hash(id, off);
    shard *s = shard_of(c, hash);
    cache_handle *dead = NULL;
    pthread_mutex_lock(&s->mu);
    cache_handle *e = *find_slot(s, id, off, hash);
    if (e != NULL && table_remove(s, e)) {
        dead = e;
    }
    pthread_mutex_unlock(&s->mu);
    free_chain(dead);
}

void cache_prune(cache *c)
{
    size_t n = (size_t)1 << c->shard_bits;
    for (size_t i = 0; i < n; i++) {
        shard *s = &c->shards[i];
        cache_handle *dead = NULL;
        pthread_mutex_lock(&s->mu);
        while (!list_empty(&s->lru)) {
            drop_oldest(s, false, &dead);
        }
        pthread_mutex_unlock(&s->mu);
        free_chain(dead);
    }
}

void cache_get_stats(cache *c, cache_stats *out)
{
    size_t n = (size_t)1 << c->shard_bits;
    *out = (cache_stats){.capacity_bytes = c->capacity};
    for (size_t i = 0; i < n; i++) {
        shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        out->hits += s->hits;
        out->misses += s->misses;
        out->inserts += s->inserts;
        out->evictions += s->evictions;
        out->usage_bytes += s->usage;
        out->pinned_bytes += s->pinned;
        out->entries += s->elems;
        pthread_mutex_unlock(&s->mu);
    }
}
