/*
 * skiplist: the memtable's ordered index, a skiplist specialised for memtable entries (LevelDB's
 * design, with the comparison built in rather than behind a function pointer, and a key prefix
 * beside every link so most search steps never touch the node they skip).
 *
 * Order: key ascending bytewise (a proper prefix first), then sequence number descending. Two
 * nodes never share (key, seq): skiplist_insert refuses a seq that is not newer than every version
 * of its key already present.
 *
 * Node layout, one arena allocation per node; the header, the low links and the key sit next to
 * each other, so a step touches one or two cache lines of the node it lands on:
 *
 *   [pad 0..7][value bytes][key bytes][expire_at_ms, only if tag & SKIPLIST_HAS_EXPIRE]
 *   [tag u64][key_len u32][val_len u32][next[0] .. next[height-1]: {node, key_hi, key_lo}]
 *   ^ the node pointer points here (8-byte aligned)
 *
 * The key ends right before the header (before expire_at_ms when present), so it is found from
 * the header alone without knowing the node's height. tag = seq << 8 | type | flags, where type
 * takes the low 7 bits and bit 7 (SKIPLIST_HAS_EXPIRE) says expire_at_ms is stored; a PUT that
 * never expires (most entries) spends no bytes on it.
 *
 * Threads: one writer (skiplist_insert, serialised by the caller); any number of readers at the
 * same time, lock-free. A node is fully written, its own links included, before a release store
 * publishes it at each level, bottom level first; readers follow links with acquire loads, so a
 * reader that reaches a node sees all its bytes. The list height is a relaxed atomic: a reader
 * that sees the new height before the head's links at that level sees NULL there and simply
 * moves down (LevelDB's argument). Nodes are never removed; they live until the arena dies.
 */
#ifndef SHALE_MEM_SKIPLIST_H
#define SHALE_MEM_SKIPLIST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shale.h"

#include "base/arena.h"

/* Branching factor 2, not LevelDB's 4. With the key prefix in every link (below), a search
 * touches a new node only when it steps forward, and the steps that miss the cache are those on
 * the lowest levels: (1-p)/p per level over ln(n/cached)/ln(1/p) levels, a factor of 1.44 for
 * p = 1/2 against 2.16 for p = 1/4. Measured with 1M random 16-byte keys and 100-byte values:
 * gets ~20% and inserts ~15% faster, for ~8% more memory (on average two links per node instead
 * of 1.33). The cap, log2(16M), keeps the top level thin up to ~16 million entries. (Point gets
 * now go through the memtable's hash index; the list serves inserts, seeks and scans.) */
#define SKIPLIST_MAX_HEIGHT 24
#define SKIPLIST_BRANCHING  2

#define SKIPLIST_TYPE_MASK  0x7fu
#define SKIPLIST_HAS_EXPIRE 0x80u

typedef struct skiplist_node skiplist_node;

/* A link carries, beside the successor, the first 16 bytes of the successor's key (zero-padded,
 * as two big-endian words): a search decides most steps from the node it stands on, without
 * touching the successor, which in a big list is a cache miss. 16 bytes rather than 8 because
 * real keys share long prefixes - "%016llu" keys of a million numbers agree on their first 10
 * bytes, so an 8-byte prefix never decided anything and every step touched the successor.
 * Measured, memtable alone, 1M such keys with 100-byte values: an insert 2.1 -> 1.45 us; the
 * cost is 8 more bytes per link, about 16 per node (+7% memory in that test).
 *
 * The prefix is a bound, never below the true prefix of the node the reader then sees: "prefix <
 * target" is always a safe reason to step forward. A slot only ever changes to a smaller
 * successor (prefixes non-increasing over time); the writer stores node, then key_lo, then
 * key_hi, each with release; readers load key_hi, then key_lo, then node, each with acquire. So
 * a reader that sees (hi of update a, lo of update b, node of update c) has a <= b <= c, and
 * hi_a > hi_c, or hi_a == hi_b == hi_c and lo_b >= lo_c: (hi_a, lo_b) >= prefix(c) either way.
 * UINT64_MAX in both words when node is NULL. */
typedef struct skiplist_link {
    _Atomic(skiplist_node *) node;
    _Atomic uint64_t key_hi; /* key bytes 0..7 */
    _Atomic uint64_t key_lo; /* key bytes 8..15 */
} skiplist_link;

struct skiplist_node {
    uint64_t tag; /* seq << 8 | flags | type */
    uint32_t key_len;
    uint32_t val_len;
    skiplist_link next[]; /* height links; next[0] leads to the level-0 successor */
};

typedef struct skiplist {
    arena *arena;        /* borrowed: the memtable's */
    skiplist_node *head; /* a sentinel with SKIPLIST_MAX_HEIGHT links, no entry */
    _Atomic int height;  /* levels in use, 1..SKIPLIST_MAX_HEIGHT; relaxed */
    uint64_t rng;        /* xorshift state for node heights; writer only */
    /* The last node of each level (the head where a level is empty); writer only. An insert
     * that sorts after last[0] - every insert of an ascending load - takes its predecessors from
     * here instead of searching (RocksDB's splice hint, reduced to the tail). */
    skiplist_node *last[SKIPLIST_MAX_HEIGHT];
} skiplist;

/* Allocates the head node from `a` (which must outlive the list). SHALE_NOMEM on failure. */
shale_code skiplist_init(skiplist *sl, arena *a, shale_error *err) SHALE_MUST_USE;

/* Copies (key, value) into a new node tagged (seq, type), stores expire_at_ms when non-zero, and
 * links it in. If `older` is non-NULL it receives the newest version of the same key already in
 * the list (the new node's level-0 successor when the keys match), or NULL; if `inserted` is
 * non-NULL it receives the new node.
 * Fails, leaving the list unchanged, with SHALE_NOMEM when the arena cannot grow, SHALE_INVALID
 * when seq > 2^56-1, type > SKIPLIST_TYPE_MASK or seq is not newer than every version of the key
 * already present, and SHALE_FULL when key_len or val_len does not fit in 32 bits.
 * Single writer. */
shale_code skiplist_insert(skiplist *sl, uint64_t seq, uint8_t type, const void *key,
                           size_t key_len, const void *value, size_t val_len, uint64_t expire_at_ms,
                           const skiplist_node **older, const skiplist_node **inserted,
                           shale_error *err) SHALE_MUST_USE;

/* ---- Building blocks for a bulk load (memtable_loader) ----
 *
 * A bulk load builds nodes with skiplist_node_new (heights drawn with skiplist_random_height in
 * the order the entries arrive, so the result is the very list one-by-one inserts would give),
 * sorts them, and appends them in internal order to a skiplist_bulk, which links every level in
 * one pass. skiplist_bulk_publish then makes the whole list visible at once. Nothing of it is
 * visible to readers before the publish, which is a release store per level as in
 * skiplist_insert, so readers may run during and after the build. */

/* The argument checks of skiplist_insert (all but the per-key seq order). */
shale_code skiplist_check_entry(uint64_t seq, uint8_t type, size_t key_len, size_t val_len,
                                shale_error *err) SHALE_MUST_USE;
/* Draws the next node height (1..SKIPLIST_MAX_HEIGHT) from the list's generator. Writer only. */
int skiplist_random_height(skiplist *sl);
/* Allocates a node of `height` links from `a` and copies the entry in; its links are left unset.
 * REQUIRES: skiplist_check_entry passed. NULL when the arena cannot grow. */
skiplist_node *skiplist_node_new(arena *a, int height, uint64_t seq, uint8_t type, const void *key,
                                 size_t key_len, const void *value, size_t val_len,
                                 uint64_t expire_at_ms);
/* The bytes of the allocation holding a node of `height` links. */
size_t skiplist_node_bytes(const skiplist_node *n, int height);
/* Copies an unlinked node (everything but its links, which stay unset) into a new allocation from
 * `a`. NULL when the arena cannot grow. */
skiplist_node *skiplist_node_copy(arena *a, const skiplist_node *n, int height);

typedef struct skiplist_bulk {
    skiplist_node *first[SKIPLIST_MAX_HEIGHT];
    skiplist_node *last[SKIPLIST_MAX_HEIGHT];
    int height;
} skiplist_bulk;

void skiplist_bulk_init(skiplist_bulk *b);
/* Appends n (of `height` links) after every node appended before. REQUIRES: n sorts after them
 * in internal order. */
void skiplist_bulk_append(skiplist_bulk *b, skiplist_node *n, int height);
/* Terminates every level and publishes the list. REQUIRES: sl is empty; b has been appended to at
 * least once. */
void skiplist_bulk_publish(skiplist *sl, skiplist_bulk *b);

/* Walks the search paths of keys[0..n) in lock step, SKIPLIST_WARM_LANES at a time, touching
 * nothing but starting the cache misses of each path's next step while the other paths step: a
 * search in a big list is a chain of dependent misses, and a batch of inserts that runs them one
 * after the other waits for every miss in turn, where the lanes wait for about one per step.
 * Inserts of the same keys right after find their paths in the cache (L2 holds the paths of
 * dozens of keys). Only a hint: keys that share their first 16 bytes with a node stop at that
 * node's level early, and a key inserted meanwhile changes nothing but what is fetched. A key
 * past the last one is skipped: its insert appends without a search. Writer only (it reads the
 * tail). */
#define SKIPLIST_WARM_LANES 8
void skiplist_warm(const skiplist *sl, const shale_slice *keys, size_t n);

/* The first node >= (key, seq): the first whose key is greater than `key`, or equal to it with
 * a sequence number <= seq. NULL if none. */
const skiplist_node *skiplist_seek(const skiplist *sl, const void *key, size_t key_len,
                                   uint64_t seq);
/* The first node >= (key, seq) among those of more than `level` links (the level-`level` list),
 * NULL if none. Used to find where read-ahead can start; level 0 is skiplist_seek. */
const skiplist_node *skiplist_seek_level(const skiplist *sl, const void *key, size_t key_len,
                                         uint64_t seq, int level);
/* The link of node n at `level`. REQUIRES: n has more than `level` links (it was reached on that
 * level, or is the head). */
static inline const skiplist_node *skiplist_next_at(const skiplist_node *n, int level)
{
    return atomic_load_explicit(&((skiplist_node *)n)->next[level].node, memory_order_acquire);
}
/* The last node < (key, seq), NULL if none. With a node's own (key, seq) this is its
 * predecessor. */
const skiplist_node *skiplist_find_less_than(const skiplist *sl, const void *key, size_t key_len,
                                             uint64_t seq);
/* The smallest and largest nodes, NULL when the list is empty. */
const skiplist_node *skiplist_first(const skiplist *sl);
const skiplist_node *skiplist_last(const skiplist *sl);

static inline const skiplist_node *skiplist_next(const skiplist_node *n)
{
    return atomic_load_explicit(&((skiplist_node *)n)->next[0].node, memory_order_acquire);
}

/* Accessors. The bytes are immutable once the node is published. */
static inline uint64_t skiplist_node_seq(const skiplist_node *n)
{
    return n->tag >> 8;
}

static inline uint8_t skiplist_node_type(const skiplist_node *n)
{
    return (uint8_t)(n->tag & SKIPLIST_TYPE_MASK);
}

static inline uint64_t skiplist_node_expire_at_ms(const skiplist_node *n)
{
    uint64_t v = 0;
    if (n->tag & SKIPLIST_HAS_EXPIRE) {
        memcpy(&v, (const char *)n - sizeof v, sizeof v);
    }
    return v;
}

static inline const void *skiplist_node_key(const skiplist_node *n)
{
    size_t exp = (n->tag & SKIPLIST_HAS_EXPIRE) ? sizeof(uint64_t) : 0;
    return (const char *)n - exp - n->key_len;
}

static inline const void *skiplist_node_value(const skiplist_node *n)
{
    return (const char *)skiplist_node_key(n) - n->val_len;
}

#endif
