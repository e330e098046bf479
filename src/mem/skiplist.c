/* skiplist: see skiplist.h for the node layout and the publication protocol. */
#include "mem/skiplist.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "base/coding.h"
#include "base/error.h"

#define SEQ_LIMIT (((uint64_t)1 << 56) - 1)

/* Any non-zero start works for xorshift; a fixed one keeps runs reproducible (LevelDB too). */
#define RNG_SEED 0x2545f4914f6cdd1dull

static inline skiplist_node *load_next(const skiplist_node *n, int level)
{
    return atomic_load_explicit(&((skiplist_node *)n)->next[level].node, memory_order_acquire);
}

static inline int list_height(const skiplist *sl)
{
    return atomic_load_explicit(&((skiplist *)sl)->height, memory_order_relaxed);
}

/* The first 16 bytes of a key, zero-padded, as two big-endian words. a < b bytewise implies
 * prefix(a) <= prefix(b), so prefix(a) < prefix(b) proves a < b. */
typedef struct prefix16 {
    uint64_t hi, lo;
} prefix16;

static inline prefix16 key_prefix(const void *key, size_t len)
{
    unsigned char b[16] = {0};
    if (len >= 16) {
        return (prefix16){coding_get_be64((const uint8_t *)key),
                          coding_get_be64((const uint8_t *)(const unsigned char *)key + 8)};
    }
    if (len > 0) {
        memcpy(b, key, len);
    }
    return (prefix16){coding_get_be64((const uint8_t *)b), coding_get_be64((const uint8_t *)b + 8)};
}

static inline bool prefix_lt(uint64_t hi, uint64_t lo, prefix16 b)
{
    return hi < b.hi || (hi == b.hi && lo < b.lo);
}

static inline bool prefix_gt(uint64_t hi, uint64_t lo, prefix16 b)
{
    return hi > b.hi || (hi == b.hi && lo > b.lo);
}

/* Stores a link's successor and its prefix in the order skiplist_link requires. */
static inline void link_store(skiplist_link *l, skiplist_node *n, uint64_t hi, uint64_t lo,
                              memory_order mo)
{
    atomic_store_explicit(&l->node, n, mo);
    atomic_store_explicit(&l->key_lo, lo, mo);
    atomic_store_explicit(&l->key_hi, hi, mo);
}

/* Bytewise three-way comparison, a proper prefix first. Keys of a few words (the common case)
 * are compared 8 bytes at a time as big-endian integers, which avoids a call into memcmp on every
 * step of a search; long keys go to memcmp, which is vectorised. */
static inline int key_cmp(const void *a_, size_t alen, const void *b_, size_t blen)
{
    const unsigned char *a = a_;
    const unsigned char *b = b_;
    size_t n = alen < blen ? alen : blen;

    if (n > 64) {
        int c = memcmp(a, b, n);
        if (c != 0) {
            return c;
        }
    } else {
        while (n >= 8) {
            uint64_t x = coding_get_be64((const uint8_t *)a);
            uint64_t y = coding_get_be64((const uint8_t *)b);
            if (x != y) {
                return x < y ? -1 : 1;
            }
            a += 8;
            b += 8;
            n -= 8;
        }
        while (n > 0) {
            if (*a != *b) {
                return *a < *b ? -1 : 1;
            }
            a++;
            b++;
            n--;
        }
    }
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

/* True when node n sorts before (key, seq): a smaller key, or the same key with a newer seq. */
static inline bool node_before(const skiplist_node *n, const void *key, size_t key_len,
                               uint64_t seq)
{
    int c = key_cmp(skiplist_node_key(n), n->key_len, key, key_len);
    return c < 0 || (c == 0 && skiplist_node_seq(n) > seq);
}

/* The first node >= (key, seq), or NULL. When prev is non-NULL it receives, at every level below
 * the list height, the last node before (key, seq) (the head if none). *before gets the level-0
 * one, NULL for the head.
 *
 * Each step is decided from the link's key prefix when it can be: below the target's prefix
 * means "step forward"; above it (on an upper level) means "go down", a decision that a reader
 * racing the writer may make too early, which costs time, never correctness. Only equal
 * prefixes, and the last level (whose candidate is the answer, touched by the caller anyway),
 * compare the successor's key. A node whose key comparison found it >= the target is not compared
 * again on the next level down (LevelDB's last_bigger); a node merely skipped on its prefix is
 * not remembered so, since under a race that prefix may belong to an older, larger successor. */
static inline skiplist_node *find_ge_at(const skiplist *sl, const void *key, size_t key_len,
                                        uint64_t seq, skiplist_node **prev,
                                        const skiplist_node **before, int stop)
{
    const prefix16 target = key_prefix(key, key_len);
    skiplist_node *x = sl->head;
    skiplist_node *known_ge = NULL;
    int level = list_height(sl) - 1;

    for (;;) {
        skiplist_link *link = &x->next[level];
        uint64_t hi = atomic_load_explicit(&link->key_hi, memory_order_acquire);
        uint64_t lo = atomic_load_explicit(&link->key_lo, memory_order_acquire);
        skiplist_node *next = atomic_load_explicit(&link->node, memory_order_acquire);
        bool forward;
        if (next == NULL || next == known_ge) {
            forward = false;
        } else if (prefix_lt(hi, lo, target)) {
            forward = true;
        } else if (level > stop && prefix_gt(hi, lo, target)) {
            forward = false;
        } else {
            forward = node_before(next, key, key_len, seq);
            if (!forward) {
                known_ge = next;
            }
        }
        if (forward) {
            x = next;
            continue;
        }
        if (prev != NULL) {
            prev[level] = x;
        }
        if (level <= stop) {
            if (before != NULL) {
                *before = x == sl->head ? NULL : x;
            }
            return next;
        }
        level--;
    }
}

static skiplist_node *find_ge(const skiplist *sl, const void *key, size_t key_len, uint64_t seq,
                              skiplist_node **prev, const skiplist_node **before)
{
    return find_ge_at(sl, key, key_len, seq, prev, before, 0);
}

int skiplist_random_height(skiplist *sl)
{
    uint64_t r = sl->rng;
    int height = 1;

    r ^= r >> 12;
    r ^= r << 25;
    r ^= r >> 27;
    sl->rng = r;
    r *= 0x2545f4914f6cdd1dull;
    /* Up one level with probability 1/SKIPLIST_BRANCHING (a power of two), using log2(it) bits
     * of the draw per level: 64 bits cover SKIPLIST_MAX_HEIGHT levels. */
    _Static_assert((SKIPLIST_BRANCHING & (SKIPLIST_BRANCHING - 1)) == 0, "power of two");
    while (height < SKIPLIST_MAX_HEIGHT && r % SKIPLIST_BRANCHING == 0) {
        height++;
        r /= SKIPLIST_BRANCHING;
    }
    return height;
}

shale_code skiplist_init(skiplist *sl, arena *a, shale_error *err)
{
    size_t bytes = sizeof(skiplist_node) + SKIPLIST_MAX_HEIGHT * sizeof(skiplist_link);
    skiplist_node *head = arena_alloc(a, bytes, _Alignof(skiplist_node));

    if (head == NULL) {
        return err_nomem(err);
    }
    head->tag = 0;
    head->key_len = 0;
    head->val_len = 0;
    for (int i = 0; i < SKIPLIST_MAX_HEIGHT; i++) {
        atomic_init(&head->next[i].node, NULL);
        atomic_init(&head->next[i].key_hi, UINT64_MAX);
        atomic_init(&head->next[i].key_lo, UINT64_MAX);
        sl->last[i] = head;
    }
    sl->arena = a;
    sl->head = head;
    atomic_init(&sl->height, 1);
    sl->rng = RNG_SEED;
    return SHALE_OK;
}

/* Bytes before the node pointer: value, key, expire_at_ms, and padding to align the header. */
static inline size_t bytes_before(uint32_t key_len, uint32_t val_len, size_t exp)
{
    size_t data = (size_t)key_len + val_len;
    return ((8 - (data & 7)) & 7) + data + exp;
}

shale_code skiplist_check_entry(uint64_t seq, uint8_t type, size_t key_len, size_t val_len,
                                shale_error *err)
{
    if (seq > SEQ_LIMIT) {
        return err_set(err, SHALE_INVALID, 0, "memtable: seq %llu beyond 2^56-1",
                       (unsigned long long)seq);
    }
    if (type > SKIPLIST_TYPE_MASK) {
        return err_set(err, SHALE_INVALID, 0, "memtable: entry type %u out of range", type);
    }
    if (key_len > UINT32_MAX || val_len > UINT32_MAX) {
        return err_set(err, SHALE_FULL, 0, "memtable: key of %zu or value of %zu bytes too large",
                       key_len, val_len);
    }
    return SHALE_OK;
}

size_t skiplist_node_bytes(const skiplist_node *n, int height)
{
    size_t exp = (n->tag & SKIPLIST_HAS_EXPIRE) ? sizeof(uint64_t) : 0;
    return bytes_before(n->key_len, n->val_len, exp) + sizeof(skiplist_node) +
           (size_t)height * sizeof(skiplist_link);
}

skiplist_node *skiplist_node_new(arena *a, int height, uint64_t seq, uint8_t type, const void *key,
                                 size_t key_len, const void *value, size_t val_len,
                                 uint64_t expire_at_ms)
{
    size_t exp = expire_at_ms != 0 ? sizeof expire_at_ms : 0;
    size_t data = key_len + val_len;
    if (data > SIZE_MAX / 2) {
        return NULL; /* only reachable where size_t is 32 bits */
    }
    size_t before = bytes_before((uint32_t)key_len, (uint32_t)val_len, exp);
    size_t pad = before - data - exp;
    char *base =
        arena_alloc(a, before + sizeof(skiplist_node) + (size_t)height * sizeof(skiplist_link), 8);
    uint64_t tag = seq << 8 | type;

    if (base == NULL) {
        return NULL;
    }
    char *k = base + pad + val_len;
    skiplist_node *n = (skiplist_node *)(void *)(base + before);
    if (val_len > 0) {
        memcpy(base + pad, value, val_len);
    }
    if (key_len > 0) {
        memcpy(k, key, key_len);
    }
    if (exp != 0) {
        memcpy(k + key_len, &expire_at_ms, sizeof expire_at_ms);
        tag |= SKIPLIST_HAS_EXPIRE;
    }
    n->tag = tag;
    n->key_len = (uint32_t)key_len;
    n->val_len = (uint32_t)val_len;
    return n;
}

skiplist_node *skiplist_node_copy(arena *a, const skiplist_node *n, int height)
{
    size_t exp = (n->tag & SKIPLIST_HAS_EXPIRE) ? sizeof(uint64_t) : 0;
    size_t before = bytes_before(n->key_len, n->val_len, exp);
    char *base =
        arena_alloc(a, before + sizeof(skiplist_node) + (size_t)height * sizeof(skiplist_link), 8);

    if (base == NULL) {
        return NULL;
    }
    /* Everything but the links, which the caller writes (they are not set yet in `n`). */
    memcpy(base, (const char *)n - before, before + sizeof(skiplist_node));
    return (skiplist_node *)(void *)(base + before);
}

shale_code skiplist_insert(skiplist *sl, uint64_t seq, uint8_t type, const void *key,
                           size_t key_len, const void *value, size_t val_len, uint64_t expire_at_ms,
                           const skiplist_node **older, const skiplist_node **inserted,
                           shale_error *err)
{
    skiplist_node *prev[SKIPLIST_MAX_HEIGHT];
    skiplist_node *succ;
    skiplist_node *n;
    int height;
    int cur;

    shale_code rc = skiplist_check_entry(seq, type, key_len, val_len, err);
    if (rc != SHALE_OK) {
        return rc;
    }

    cur = list_height(sl);
    const skiplist_node *tail = sl->last[0];
    if (tail == sl->head || key_cmp(skiplist_node_key(tail), tail->key_len, key, key_len) < 0) {
        /* A key larger than every key in the list: it goes after the last node of each level,
         * with no successor, so no older version and no seq to check. */
        memcpy(prev, sl->last, (size_t)cur * sizeof prev[0]);
        succ = NULL;
    } else {
        succ = find_ge(sl, key, key_len, seq, prev, NULL);
        if ((prev[0] != sl->head &&
             key_cmp(skiplist_node_key(prev[0]), prev[0]->key_len, key, key_len) == 0) ||
            (succ != NULL && skiplist_node_seq(succ) == seq &&
             key_cmp(skiplist_node_key(succ), succ->key_len, key, key_len) == 0)) {
            return err_set(err, SHALE_INVALID, 0,
                           "memtable: seq %llu is not newer than every version of its key",
                           (unsigned long long)seq);
        }
    }

    height = skiplist_random_height(sl);
    n = skiplist_node_new(sl->arena, height, seq, type, key, key_len, value, val_len, expire_at_ms);
    if (n == NULL) {
        return err_nomem(err);
    }

    if (height > cur) {
        for (int i = cur; i < height; i++) {
            prev[i] = sl->head;
        }
        /* Relaxed is enough: a reader seeing the new height before the head's new links finds
         * NULL at those levels and moves down. */
        atomic_store_explicit(&sl->height, height, memory_order_relaxed);
    }
    const prefix16 prefix = key_prefix(key, key_len);
    for (int i = 0; i < height; i++) {
        skiplist_link *from = &prev[i]->next[i];
        /* The node is not reachable yet, so its own links need no ordering; the release stores
         * into the predecessor publish the node, its bytes and these links together. The
         * prefix follows the pointer (see skiplist_link). */
        link_store(&n->next[i], atomic_load_explicit(&from->node, memory_order_relaxed),
                   atomic_load_explicit(&from->key_hi, memory_order_relaxed),
                   atomic_load_explicit(&from->key_lo, memory_order_relaxed), memory_order_relaxed);
        link_store(from, n, prefix.hi, prefix.lo, memory_order_release);
        if (prev[i] == sl->last[i]) {
            sl->last[i] = n;
        }
    }

    if (older != NULL) {
        bool same = succ != NULL && succ->key_len == key_len &&
                    key_cmp(skiplist_node_key(succ), succ->key_len, key, key_len) == 0;
        *older = same ? succ : NULL;
    }
    if (inserted != NULL) {
        *inserted = n;
    }
    return SHALE_OK;
}

/* A link is 24 bytes at any 8-byte offset: a quarter of them straddle two cache lines. */
static inline void prefetch_link(const skiplist_link *l)
{
    __builtin_prefetch(l);
    __builtin_prefetch((const char *)l + sizeof *l - 1);
}

/* One lane of skiplist_warm: a search for one key, advanced a step at a time. */
typedef struct warm_lane {
    const skiplist_node *x;
    prefix16 target;
    int level; /* < 0: done */
} warm_lane;

/* Puts the next key of keys[*next..n) that needs a search into lane l. False when none is left. */
static bool lane_start(const skiplist *sl, warm_lane *l, const shale_slice *keys, size_t n,
                       size_t *next)
{
    const skiplist_node *tail = sl->last[0];
    while (*next < n) {
        const shale_slice *k = &keys[(*next)++];
        /* A key past the tail is appended without a search (skiplist_insert): no path. */
        if (tail != sl->head &&
            key_cmp(skiplist_node_key(tail), tail->key_len, k->data, k->len) >= 0) {
            *l = (warm_lane){sl->head, key_prefix(k->data, k->len), list_height(sl) - 1};
            return true;
        }
    }
    l->level = -1;
    return false;
}

void skiplist_warm(const skiplist *sl, const shale_slice *keys, size_t n)
{
    warm_lane lanes[SKIPLIST_WARM_LANES];
    size_t next = 0, active = 0;
    for (size_t i = 0; i < SKIPLIST_WARM_LANES; i++) {
        active += lane_start(sl, &lanes[i], keys, n, &next);
    }
    /* A lane that finishes takes the next key at once, so the misses in flight stay at about one
     * per lane until the keys run out. */
    while (active > 0) {
        for (size_t i = 0; i < SKIPLIST_WARM_LANES; i++) {
            warm_lane *l = &lanes[i];
            if (l->level < 0) {
                continue;
            }
            skiplist_link *link = &((skiplist_node *)l->x)->next[l->level];
            uint64_t hi = atomic_load_explicit(&link->key_hi, memory_order_acquire);
            uint64_t lo = atomic_load_explicit(&link->key_lo, memory_order_acquire);
            const skiplist_node *succ = atomic_load_explicit(&link->node, memory_order_acquire);
            if (succ != NULL && prefix_lt(hi, lo, l->target)) {
                /* Forward: the lane's next step reads succ's link at this level, a miss to start
                 * now and take while the other lanes step. */
                l->x = succ;
                prefetch_link(&succ->next[l->level]);
            } else if (l->level > 0) {
                l->level--;
                prefetch_link(&l->x->next[l->level]);
            } else {
                /* The insert compares the successor's key, which ends where its header starts. */
                if (succ != NULL) {
                    __builtin_prefetch((const char *)succ - 16);
                    __builtin_prefetch(succ);
                }
                active -= !lane_start(sl, l, keys, n, &next);
            }
        }
    }
}

const skiplist_node *skiplist_seek(const skiplist *sl, const void *key, size_t key_len,
                                   uint64_t seq)
{
    return find_ge(sl, key, key_len, seq, NULL, NULL);
}

const skiplist_node *skiplist_seek_level(const skiplist *sl, const void *key, size_t key_len,
                                         uint64_t seq, int level)
{
    if (level >= list_height(sl)) {
        return NULL;
    }
    return find_ge_at(sl, key, key_len, seq, NULL, NULL, level);
}

const skiplist_node *skiplist_find_less_than(const skiplist *sl, const void *key, size_t key_len,
                                             uint64_t seq)
{
    const skiplist_node *before;
    (void)find_ge(sl, key, key_len, seq, NULL, &before);
    return before;
}

const skiplist_node *skiplist_first(const skiplist *sl)
{
    return load_next(sl->head, 0);
}

const skiplist_node *skiplist_last(const skiplist *sl)
{
    const skiplist_node *x = sl->head;
    int level = list_height(sl) - 1;

    for (;;) {
        const skiplist_node *next = load_next(x, level);
        if (next != NULL) {
            x = next;
            continue;
        }
        if (level == 0) {
            return x == sl->head ? NULL : x;
        }
        level--;
    }
}

void skiplist_bulk_init(skiplist_bulk *b)
{
    memset(b, 0, sizeof *b);
}

void skiplist_bulk_append(skiplist_bulk *b, skiplist_node *n, int height)
{
    const prefix16 prefix = key_prefix(skiplist_node_key(n), n->key_len);

    for (int i = 0; i < height; i++) {
        skiplist_node *last = b->last[i];
        if (last == NULL) {
            b->first[i] = n;
        } else {
            /* Unpublished: nothing can see these nodes before skiplist_bulk_publish. */
            link_store(&last->next[i], n, prefix.hi, prefix.lo, memory_order_relaxed);
        }
        b->last[i] = n;
    }
    if (height > b->height) {
        b->height = height;
    }
}

void skiplist_bulk_publish(skiplist *sl, skiplist_bulk *b)
{
    for (int i = 0; i < b->height; i++) {
        link_store(&b->last[i]->next[i], NULL, UINT64_MAX, UINT64_MAX, memory_order_relaxed);
    }
    if (b->height > list_height(sl)) {
        atomic_store_explicit(&sl->height, b->height, memory_order_relaxed);
    }
    /* As in skiplist_insert: the release store of each head link publishes every node reachable
     * from it (a reader may pair the new node with the old UINT64_MAX prefix, an upper bound,
     * which is safe). */
    for (int i = 0; i < b->height; i++) {
        const skiplist_node *f = b->first[i];
        prefix16 p = key_prefix(skiplist_node_key(f), f->key_len);
        link_store(&sl->head->next[i], b->first[i], p.hi, p.lo, memory_order_release);
        sl->last[i] = b->last[i];
    }
}
