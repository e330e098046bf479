/* cache: insert/lookup/release/erase, replacement, the byte bound and LRU order, pins that hold
 * entries past the bound, capacity 0 and oversize inserts, one deleter call per value (on free,
 * prune, erase, replace, eviction), exact counters, and a 4-thread stress run that checks no value
 * is deleted while pinned and every deleter runs exactly once. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/cache.h"
#include "testutil.h"

/* ---- single-threaded values: an int slot per value counts its deleter calls ---- */

#define MAXV 4096

typedef struct counts {
    int deleted[MAXV]; /* deleter calls per value id */
    int total;
} counts;

/* Values are small integers cast to pointers (never dereferenced); arg is the counts. */
static void count_deleter(void *value, void *arg)
{
    counts *k = arg;
    uintptr_t v = (uintptr_t)value;
    cr_assert_lt(v, MAXV);
    k->deleted[v]++;
    k->total++;
}

static void *V(uintptr_t v)
{
    return (void *)v;
}

static cache_handle *ins(cache *c, uint64_t key, uintptr_t v, size_t charge, counts *k)
{
    cache_handle *h = cache_insert(c, 7, key, V(v), charge, count_deleter, k);
    cr_assert_not_null(h);
    cr_assert_eq(cache_value(h), V(v));
    return h;
}

static void ins_rel(cache *c, uint64_t key, uintptr_t v, size_t charge, counts *k)
{
    cache_release(c, ins(c, key, v, charge, k));
}

/* The value under key, or 0 on a miss (value ids start at 1 in these tests). */
static uintptr_t look(cache *c, uint64_t key)
{
    cache_handle *h = cache_lookup(c, 7, key);
    if (h == NULL) {
        return 0;
    }
    uintptr_t v = (uintptr_t)cache_value(h);
    cache_release(c, h);
    return v;
}

static cache_stats stats(cache *c)
{
    cache_stats st;
    cache_get_stats(c, &st);
    return st;
}

/* Asserts the cache's resident bytes, pinned bytes and entry count. */
static void expect_usage(cache *c, uint64_t usage, uint64_t pinned, uint64_t entries)
{
    cache_stats st = stats(c);
    cr_assert_eq(st.usage_bytes, usage, "usage_bytes %llu, want %llu",
                 (unsigned long long)st.usage_bytes, (unsigned long long)usage);
    cr_assert_eq(st.pinned_bytes, pinned, "pinned_bytes %llu, want %llu",
                 (unsigned long long)st.pinned_bytes, (unsigned long long)pinned);
    cr_assert_eq(st.entries, entries, "entries %llu, want %llu", (unsigned long long)st.entries,
                 (unsigned long long)entries);
}

/* Frees the cache; then the deleter must have run `total` times in all and, with `each_once`,
 * exactly once for each of the values 1..total. */
static void free_expect(cache *c, const counts *k, int total, bool each_once)
{
    cache_free(c);
    cr_assert_eq(k->total, total, "%d deleter calls, want %d", k->total, total);
    for (int v = 1; each_once && v <= total; v++) {
        cr_assert_eq(k->deleted[v], 1, "value %d deleted %d times", v, k->deleted[v]);
    }
}

Test(cache, new_rejects_bad_shard_bits_and_free_accepts_null)
{
    cr_assert_null(cache_new(100, -1));
    cr_assert_null(cache_new(100, 9));
    cache *c = cache_new(100, 8);
    cr_assert_not_null(c);
    cr_assert_eq(stats(c).capacity_bytes, 100);
    cache_free(c);
    cache_free(NULL);
    tu_assert_no_leaks();
}

Test(cache, insert_lookup_release_erase)
{
    counts k = {0};
    cache *c = cache_new(1000, 0);
    cr_assert_not_null(c);

    cr_assert_null(cache_lookup(c, 7, 1));
    ins_rel(c, 1, 1, 10, &k);
    ins_rel(c, 2, 2, 10, &k);
    cr_assert_eq(look(c, 1), 1);
    cr_assert_eq(look(c, 2), 2);
    cr_assert_null(cache_lookup(c, 8, 1), "another id shares no keys");
    cr_assert_null(cache_lookup(c, 7, 3));

    /* Two handles on one entry, the value stays put until both go. */
    cache_handle *h1 = cache_lookup(c, 7, 1);
    cache_handle *h2 = cache_lookup(c, 7, 1);
    cr_assert_eq(h1, h2);
    cache_release(c, h1);
    cache_release(c, h2);
    cache_release(c, NULL);

    /* Erase of an unpinned entry deletes at once; erase of a missing key does nothing. */
    cache_erase(c, 7, 2);
    cr_assert_eq(k.deleted[2], 1);
    cr_assert_eq(look(c, 2), 0);
    cache_erase(c, 7, 2);
    cache_erase(c, 7, 99);
    cr_assert_eq(k.total, 1);

    /* Erase of a pinned entry: gone from lookups, alive for the holder, deleted on release. */
    cache_handle *h = cache_lookup(c, 7, 1);
    cr_assert_not_null(h);
    cache_erase(c, 7, 1);
    cr_assert_eq(look(c, 1), 0);
    cr_assert_eq(k.deleted[1], 0);
    cr_assert_eq(cache_value(h), V(1));
    expect_usage(c, 0, 0, 0); /* an erased entry leaves usage even while held */
    cache_release(c, h);
    cr_assert_eq(k.deleted[1], 1);

    free_expect(c, &k, 2, false);
    tu_assert_no_leaks();
}

Test(cache, replace_runs_old_deleter_once)
{
    counts k = {0};
    cache *c = cache_new(1000, 0);

    /* Unpinned old entry: deleted by the replacing insert itself. */
    ins_rel(c, 1, 1, 10, &k);
    cache_handle *h = ins(c, 1, 2, 20, &k);
    cr_assert_eq(k.deleted[1], 1);
    cr_assert_eq(k.total, 1);
    expect_usage(c, 20, 20, 1);
    cache_release(c, h);
    cr_assert_eq(look(c, 1), 2);

    /* Pinned old entry: its holder keeps it; deleted on that release, not before, and once. */
    cache_handle *old = cache_lookup(c, 7, 1);
    cr_assert_eq(cache_value(old), V(2));
    ins_rel(c, 1, 3, 30, &k);
    cr_assert_eq(k.deleted[2], 0);
    cr_assert_eq(look(c, 1), 3);
    expect_usage(c, 30, 0, 1);
    cache_release(c, old);
    cr_assert_eq(k.deleted[2], 1);
    cr_assert_eq(k.deleted[3], 0);

    /* Replacing with an insert too big to keep still removes the old value. */
    cache_handle *big = ins(c, 1, 4, 5000, &k);
    cr_assert_eq(k.deleted[3], 1);
    cr_assert_eq(look(c, 1), 0);
    cache_release(c, big);
    cr_assert_eq(k.deleted[4], 1);

    free_expect(c, &k, 4, true);
    tu_assert_no_leaks();
}

Test(cache, byte_bound_holds_across_random_charges)
{
    static const int bits[] = {0, 2, 4};
    for (size_t b = 0; b < sizeof bits / sizeof bits[0]; b++) {
        counts k = {0};
        tu_rng rng;
        tu_rng_seed(&rng, 42 + b);
        const size_t cap = 5000;
        cache *c = cache_new(cap, bits[b]);
        cr_assert_not_null(c);
        uint64_t evictions = 0;
        for (uintptr_t v = 1; v < MAXV; v++) {
            size_t charge = 1 + tu_rng_below(&rng, 300);
            uint64_t key = tu_rng_below(&rng, 500);
            cache_handle *h = ins(c, key, v, charge, &k);
            cache_stats st = stats(c);
            /* While the new entry is pinned the bound may be passed only by pinned bytes. */
            cr_assert(st.usage_bytes <= cap || st.usage_bytes == st.pinned_bytes);
            cache_release(c, h);
            st = stats(c);
            cr_assert_leq(st.usage_bytes, cap, "bits %d insert %zu: usage %llu > %zu", bits[b],
                          (size_t)v, (unsigned long long)st.usage_bytes, cap);
            cr_assert_eq(st.pinned_bytes, 0);
            cr_assert_geq(st.evictions, evictions);
            evictions = st.evictions;
        }
        cache_stats st = stats(c);
        cr_assert_gt(st.evictions, 0, "the run must have exercised eviction");
        cr_assert_eq(st.inserts, MAXV - 1);
        /* Every value not resident has been deleted exactly once; resident ones not at all. */
        cr_assert_eq((uint64_t)k.total + st.entries, MAXV - 1);
        free_expect(c, &k, MAXV - 1, true);
    }
    tu_assert_no_leaks();
}

Test(cache, lru_order_decides_what_goes)
{
    counts k = {0};
    cache *c = cache_new(3, 0);
    ins_rel(c, 1, 1, 1, &k);
    ins_rel(c, 2, 2, 1, &k);
    ins_rel(c, 3, 3, 1, &k);
    cr_assert_eq(look(c, 1), 1); /* a hit: 1 gets a second chance, so 2 goes first */
    ins_rel(c, 4, 4, 1, &k);
    cr_assert_eq(k.total, 1);
    cr_assert_eq(k.deleted[2], 1);
    cr_assert_eq(look(c, 2), 0);
    cr_assert_eq(look(c, 3), 3); /* order (oldest first) is 3 1 4, with 3 and 1 hit */
    cr_assert_eq(look(c, 1), 1);
    /* A charge-2 insert: 3 and 1 lose their bits and go young, then 4 and 3 go. */
    ins_rel(c, 5, 5, 2, &k);
    cr_assert_eq(k.deleted[4], 1);
    cr_assert_eq(k.deleted[3], 1);
    cr_assert_eq(look(c, 1), 1);
    cr_assert_eq(look(c, 5), 5);
    cr_assert_eq(stats(c).evictions, 3);
    cr_assert_eq(stats(c).usage_bytes, 3);
    free_expect(c, &k, 5, false);
    tu_assert_no_leaks();
}

Test(cache, a_hit_buys_one_second_chance)
{
    counts k = {0};
    cache *c = cache_new(3, 0);
    for (uintptr_t v = 1; v <= 3; v++) {
        ins_rel(c, v, v, 1, &k);
    }
    cr_assert_eq(look(c, 1), 1);
    ins_rel(c, 4, 4, 1, &k); /* 1 passed over (bit cleared), 2 evicted */
    ins_rel(c, 5, 5, 1, &k); /* 3 evicted */
    cr_assert_eq(k.deleted[2], 1);
    cr_assert_eq(k.deleted[3], 1);
    cr_assert_eq(k.deleted[1], 0);
    ins_rel(c, 6, 6, 1, &k); /* no hit since: 1 is now the oldest without a bit */
    cr_assert_eq(k.deleted[1], 1);
    cr_assert_eq(look(c, 4), 4);
    cr_assert_eq(look(c, 5), 5);
    cr_assert_eq(look(c, 6), 6);
    expect_usage(c, 3, 0, 3);
    free_expect(c, &k, 6, false);
    tu_assert_no_leaks();
}

Test(cache, pinned_entries_are_not_evicted)
{
    counts k = {0};
    cache *c = cache_new(3, 0);
    cache_handle *h[6];
    for (uintptr_t v = 1; v <= 5; v++) {
        h[v] = ins(c, v, v, 1, &k);
    }
    expect_usage(c, 5, 5, 5); /* pins may carry usage past the capacity */
    cr_assert_eq(k.total, 0);
    for (uintptr_t v = 1; v <= 5; v++) {
        cr_assert_eq(look(c, v), v);
    }
    /* An unpinned insert now goes straight out again at its own release. */
    ins_rel(c, 6, 6, 1, &k);
    cr_assert_eq(k.deleted[6], 1);

    /* Releasing brings usage back within the bound: the first two released go. */
    for (uintptr_t v = 1; v <= 5; v++) {
        cache_release(c, h[v]);
    }
    expect_usage(c, 3, 0, 3);
    cr_assert_eq(k.deleted[1], 1);
    cr_assert_eq(k.deleted[2], 1);
    cr_assert_eq(look(c, 3), 3);
    cr_assert_eq(look(c, 4), 4);
    cr_assert_eq(look(c, 5), 5);

    /* A lookup pin counts as pinned bytes, and an entry pinned by lookup is not evicted. */
    cache_handle *p = cache_lookup(c, 7, 3);
    cr_assert_eq(stats(c).pinned_bytes, 1);
    ins_rel(c, 7, 7, 1, &k);
    ins_rel(c, 8, 8, 1, &k);
    ins_rel(c, 9, 9, 1, &k);
    cr_assert_eq(k.deleted[3], 0);
    cr_assert_eq(cache_value(p), V(3));
    cache_release(c, p);
    cr_assert_leq(stats(c).usage_bytes, 3);
    free_expect(c, &k, 9, false);
    tu_assert_no_leaks();
}

Test(cache, capacity_zero_keeps_nothing)
{
    counts k = {0};
    cache *c = cache_new(0, 0);
    cache_handle *h = ins(c, 1, 1, 1, &k);
    cr_assert_eq(cache_value(h), V(1));
    cr_assert_eq(look(c, 1), 0);
    expect_usage(c, 0, 0, 0);
    cr_assert_eq(stats(c).inserts, 1);
    cr_assert_eq(k.total, 0, "the holder's value lives until release");
    cache_release(c, h);
    cr_assert_eq(k.deleted[1], 1);
    ins_rel(c, 2, 2, 0, &k); /* even a zero charge is not kept */
    cr_assert_eq(k.deleted[2], 1);
    cr_assert_eq(stats(c).entries, 0);
    free_expect(c, &k, 2, false);

    /* The same with shards. */
    counts k2 = {0};
    c = cache_new(0, 3);
    for (uintptr_t v = 1; v <= 50; v++) {
        ins_rel(c, v, v, 1, &k2);
        cr_assert_eq(k2.deleted[v], 1);
    }
    cr_assert_eq(stats(c).evictions, 0);
    free_expect(c, &k2, 50, true);
    tu_assert_no_leaks();
}

Test(cache, oversize_insert_is_returned_not_kept)
{
    counts k = {0};
    cache *c = cache_new(100, 0);
    ins_rel(c, 1, 1, 60, &k);
    cache_handle *h = ins(c, 2, 2, 101, &k);
    cr_assert_eq(cache_value(h), V(2));
    cr_assert_eq(look(c, 2), 0);
    cr_assert_eq(look(c, 1), 1, "an oversize insert evicts nothing");
    expect_usage(c, 60, 0, 1);
    cr_assert_eq(k.total, 0);
    cache_release(c, h);
    cr_assert_eq(k.deleted[2], 1);
    /* Exactly the capacity fits (and evicts the rest). */
    ins_rel(c, 3, 3, 100, &k);
    cr_assert_eq(look(c, 3), 3);
    cr_assert_eq(k.deleted[1], 1);
    cache_free(c);

    /* With 4 shards of 25 bytes each, 26 is oversize although the cache holds 100. */
    counts k2 = {0};
    c = cache_new(100, 2);
    for (uintptr_t v = 1; v <= 20; v++) {
        ins_rel(c, v, v, 26, &k2);
        cr_assert_eq(k2.deleted[v], 1);
        cr_assert_eq(look(c, v), 0);
    }
    for (uintptr_t v = 21; v <= 40; v++) {
        ins_rel(c, v, v, 25, &k2);
    }
    cr_assert_leq(stats(c).usage_bytes, 100);
    cr_assert_gt(stats(c).entries, 0);
    free_expect(c, &k2, 40, false);
    tu_assert_no_leaks();
}

Test(cache, capacity_split_sums_to_the_capacity)
{
    /* 10 bytes over 8 shards: two shards of 2, six of 1. Charge-1 entries on many keys fill
     * exactly 10 bytes, never more. */
    counts k = {0};
    cache *c = cache_new(10, 3);
    for (uintptr_t v = 1; v <= 2000; v++) {
        ins_rel(c, v, v, 1, &k);
        cr_assert_leq(stats(c).usage_bytes, 10);
    }
    expect_usage(c, 10, 0, 10);
    free_expect(c, &k, 2000, false);
    tu_assert_no_leaks();
}

Test(cache, free_runs_every_deleter_once)
{
    counts k = {0};
    tu_rng rng;
    tu_rng_seed(&rng, 7);
    cache *c = cache_new(1 << 20, 4);
    /* Many entries (the tables grow several times), some replaced, some erased. */
    for (uintptr_t v = 1; v < MAXV; v++) {
        ins_rel(c, tu_rng_below(&rng, 3000), v, 1 + tu_rng_below(&rng, 100), &k);
        if (v % 7 == 0) {
            cache_erase(c, 7, tu_rng_below(&rng, 3000));
        }
    }
    cache_stats st = stats(c);
    cr_assert_eq(st.evictions, 0);
    cr_assert_gt(st.entries, 1000);
    cr_assert_eq((uint64_t)k.total + st.entries, MAXV - 1);
    free_expect(c, &k, MAXV - 1, true);
    tu_assert_no_leaks();
}

Test(cache, table_growth_keeps_every_entry_findable)
{
    counts k = {0};
    cache *c = cache_new(SIZE_MAX / 2, 0);
    for (uintptr_t v = 1; v < MAXV; v++) {
        ins_rel(c, v * 4096, v, 1, &k);
    }
    for (uintptr_t v = 1; v < MAXV; v++) {
        cr_assert_eq(look(c, v * 4096), v);
    }
    cr_assert_eq(stats(c).entries, MAXV - 1);
    free_expect(c, &k, MAXV - 1, false);
    tu_assert_no_leaks();
}

Test(cache, prune_evicts_only_unpinned)
{
    counts k = {0};
    cache *c = cache_new(1000, 2);
    cache_handle *held[5];
    for (uintptr_t v = 1; v <= 20; v++) {
        cache_handle *h = ins(c, v, v, 10, &k);
        if (v % 4 == 0) {
            held[v / 4 - 1] = h;
        } else {
            cache_release(c, h);
        }
    }
    cache_prune(c);
    cache_stats st = stats(c);
    expect_usage(c, 50, 50, 5);
    cr_assert_eq(st.evictions, 0, "pruning is not eviction by the bound");
    cr_assert_eq(k.total, 15);
    for (uintptr_t v = 1; v <= 20; v++) {
        cr_assert_eq(look(c, v), v % 4 == 0 ? v : 0);
        cr_assert_eq(k.deleted[v], v % 4 == 0 ? 0 : 1);
    }
    for (int i = 0; i < 5; i++) {
        cache_release(c, held[i]);
    }
    cr_assert_eq(stats(c).pinned_bytes, 0);
    cache_prune(c);
    expect_usage(c, 0, 0, 0);
    cr_assert_eq(k.total, 20);
    cache_prune(c); /* on an empty cache */
    free_expect(c, &k, 20, false);
    tu_assert_no_leaks();
}

Test(cache, counters_are_exact)
{
    counts k = {0};
    cache *c = cache_new(4, 2);
    cache_stats st = stats(c);
    cr_assert_eq(st.hits + st.misses + st.inserts + st.evictions + st.entries, 0);

    for (uint64_t key = 0; key < 10; key++) {
        cr_assert_eq(look(c, key), 0);
    }
    /* 4 shards of 1 byte: each charge-1 entry fits in its shard. */
    ins_rel(c, 100, 1, 1, &k);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(look(c, 100), 1);
    }
    cache_handle *h = cache_lookup(c, 7, 100);
    st = stats(c);
    cr_assert_eq(st.misses, 10);
    cr_assert_eq(st.hits, 7);
    cr_assert_eq(st.inserts, 1);
    expect_usage(c, 1, 1, 1);
    cr_assert_eq(st.capacity_bytes, 4);
    cache_release(c, h);

    /* Evictions: fill one shard again and again through a single-shard cache. */
    cache *one = cache_new(2, 0);
    for (uintptr_t v = 1; v <= 10; v++) {
        ins_rel(one, v, v, 1, &k);
    }
    cache_erase(one, 7, 10); /* erase is not an eviction */
    st = stats(one);
    cr_assert_eq(st.inserts, 10);
    cr_assert_eq(st.evictions, 8);
    cr_assert_eq(st.entries, 1);
    cr_assert_eq(st.hits + st.misses, 0);
    cache_free(one);
    free_expect(c, &k, 11, false);
    tu_assert_no_leaks();
}

/* Long-term holds share half the capacity: refused past it, given back by done, and a hold
 * bigger than the half alone is refused even on an empty count. */
Test(cache, holds_stay_within_half_the_capacity)
{
    cache *c = cache_new(1000, 2);
    cr_assert_not_null(c);
    cr_assert(cache_hold_try(c, 400));
    cr_assert(cache_hold_try(c, 100), "exactly half is allowed");
    cr_assert_not(cache_hold_try(c, 1), "past half");
    cache_hold_done(c, 100);
    cr_assert(cache_hold_try(c, 60));
    cr_assert_not(cache_hold_try(c, 41));
    cache_hold_done(c, 460);
    cr_assert_not(cache_hold_try(c, 501), "bigger than the half on its own");
    cr_assert(cache_hold_try(c, 500));
    cache_hold_done(c, 500);
    cache_free(c);

    cache *zero = cache_new(0, 0);
    cr_assert_not(cache_hold_try(zero, 1), "a zero-capacity cache holds nothing");
    cr_assert(cache_hold_try(zero, 0));
    cache_hold_done(zero, 0);
    cache_free(zero);
}

Test(cache, new_id_is_fresh)
{
    cache *c = cache_new(10, 0);
    uint64_t a = cache_new_id(c);
    uint64_t b = cache_new_id(c);
    uint64_t d = cache_new_id(c);
    cr_assert_neq(a, 0);
    cr_assert(a < b && b < d);
    cache_free(c);
}

/* ---- concurrent stress ---- */

#define ST_THREADS 4
#define ST_OPS     60000
#define ST_KEYS    64
#define ALIVE      0xa11fe0a11fe0a11full
#define DEAD       0xdeadbeefdeadbeefull

typedef struct sval {
    _Atomic uint64_t canary;
    atomic_int holders; /* threads holding a handle on this value now */
    atomic_int deleted; /* deleter calls */
} sval;

typedef struct stress {
    cache *c;
    sval **all; /* every value ever made, for the final count */
    atomic_size_t nall;
    atomic_int bad_delete; /* deleter saw a holder, a dead canary or a second call */
    atomic_int bad_read;   /* a holder saw a dead canary */
} stress;

static void sdeleter(void *value, void *arg)
{
    stress *s = arg;
    sval *v = value;
    if (atomic_load(&v->holders) != 0 || atomic_load(&v->canary) != ALIVE) {
        atomic_fetch_add(&s->bad_delete, 1);
    }
    if (atomic_fetch_add(&v->deleted, 1) != 0) {
        atomic_fetch_add(&s->bad_delete, 1);
    }
    atomic_store(&v->canary, DEAD); /* memory is kept for the final count, then freed */
}

static void hold(stress *s, cache_handle *h)
{
    sval *v = cache_value(h);
    atomic_fetch_add(&v->holders, 1);
    if (atomic_load(&v->canary) != ALIVE) {
        atomic_fetch_add(&s->bad_read, 1);
    }
}

static void unhold(stress *s, cache_handle *h)
{
    sval *v = cache_value(h);
    if (atomic_load(&v->canary) != ALIVE) {
        atomic_fetch_add(&s->bad_read, 1);
    }
    atomic_fetch_sub(&v->holders, 1);
}

typedef struct worker {
    stress *s;
    uint64_t seed;
} worker;

static void *stress_thread(void *p)
{
    worker *w = p;
    stress *s = w->s;
    tu_rng rng;
    tu_rng_seed(&rng, w->seed);
    cache_handle *held[8] = {0};
    for (int i = 0; i < ST_OPS; i++) {
        uint64_t key = tu_rng_below(&rng, ST_KEYS);
        unsigned slot = (unsigned)tu_rng_below(&rng, 8);
        unsigned op = (unsigned)tu_rng_below(&rng, 10);
        cache_handle *h = NULL;
        if (op < 5) {
            h = cache_lookup(s->c, 1, key);
        } else if (op < 8) {
            sval *v = malloc(sizeof *v);
            if (v == NULL) {
                continue;
            }
            atomic_init(&v->canary, ALIVE);
            atomic_init(&v->holders, 0);
            atomic_init(&v->deleted, 0);
            s->all[atomic_fetch_add(&s->nall, 1)] = v;
            /* Keys share a shard often enough with 2 shard bits and a few bytes of capacity. */
            h = cache_insert(s->c, 1, key, v, 1 + tu_rng_below(&rng, 8), sdeleter, s);
        } else if (op < 9) {
            cache_erase(s->c, 1, key);
        } else {
            cache_prune(s->c);
        }
        if (h != NULL) {
            hold(s, h);
            /* Park the handle in a slot, releasing whatever was parked there. */
            if (held[slot] != NULL) {
                unhold(s, held[slot]);
                cache_release(s->c, held[slot]);
            }
            held[slot] = h;
        }
    }
    for (int i = 0; i < 8; i++) {
        if (held[i] != NULL) {
            unhold(s, held[i]);
            cache_release(s->c, held[i]);
        }
    }
    return NULL;
}

Test(cache, concurrent_stress)
{
    stress s;
    s.c = cache_new(64, 2);
    cr_assert_not_null(s.c);
    s.all = calloc((size_t)ST_THREADS * ST_OPS, sizeof *s.all);
    cr_assert_not_null(s.all);
    atomic_init(&s.nall, 0);
    atomic_init(&s.bad_delete, 0);
    atomic_init(&s.bad_read, 0);

    pthread_t th[ST_THREADS];
    worker w[ST_THREADS];
    for (int i = 0; i < ST_THREADS; i++) {
        w[i] = (worker){.s = &s, .seed = 1000 + (uint64_t)i};
        cr_assert_eq(pthread_create(&th[i], NULL, stress_thread, &w[i]), 0);
    }
    for (int i = 0; i < ST_THREADS; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
    }
    cache_stats st = stats(s.c);
    cr_assert_eq(st.pinned_bytes, 0);
    cr_assert_leq(st.usage_bytes, 64);
    cr_assert_gt(st.hits, 0);
    cr_assert_gt(st.evictions, 0);
    cr_assert_eq(st.inserts, atomic_load(&s.nall));
    cache_free(s.c);

    size_t n = atomic_load(&s.nall);
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++) {
        if (atomic_load(&s.all[i]->deleted) != 1) {
            wrong++;
        }
        free(s.all[i]);
    }
    free(s.all);
    cr_assert_eq(wrong, 0, "%zu of %zu values not deleted exactly once", wrong, n);
    cr_assert_eq(atomic_load(&s.bad_delete), 0, "a value was deleted while held, or twice");
    cr_assert_eq(atomic_load(&s.bad_read), 0, "a holder saw a deleted value");
    tu_assert_no_leaks();
}

/* Embedded handles: the value's allocation holds the handle; the deleter frees it all, once, on
 * replace, erase, eviction and cache_free, and a held handle keeps it alive (ASan sees any use
 * after the deleter or any leak). */
typedef struct emb_value {
    _Alignas(CACHE_EMBED_ALIGN) unsigned char handle[256]; /* >= cache_embedded_size() */
    uint64_t payload;
} emb_value;

static int emb_deleted;

static void emb_deleter(void *value, void *arg)
{
    (void)arg;
    emb_deleted++;
    free(value); /* the value is the allocation: handle first, payload after */
}

static cache_handle *emb_insert(cache *c, uint64_t key, uint64_t payload)
{
    emb_value *v = aligned_alloc(CACHE_EMBED_ALIGN, sizeof *v);
    cr_assert_not_null(v);
    v->payload = payload;
    return cache_insert_embedded(c, v->handle, 7, key, v, 100, emb_deleter, NULL);
}

Test(cache, embedded_handles_live_in_the_value)
{
    cr_assert_leq(cache_embedded_size(), sizeof((emb_value *)0)->handle);
    cr_assert_eq(cache_embedded_size() % CACHE_EMBED_ALIGN, 0);
    emb_deleted = 0;
    cache *c = cache_new(1000, 0); /* room for 10 entries of 100 */
    cr_assert_not_null(c);

    cache_handle *h = emb_insert(c, 1, 111);
    cr_assert_eq(((emb_value *)cache_value(h))->payload, 111);
    cache_release(c, h);
    h = cache_lookup(c, 7, 1);
    cr_assert_not_null(h);
    cr_assert_eq(((emb_value *)cache_value(h))->payload, 111);

    /* Replaced while held: the old value lives until released. */
    cache_release(c, emb_insert(c, 1, 112));
    cr_assert_eq(emb_deleted, 0);
    cr_assert_eq(((emb_value *)cache_value(h))->payload, 111);
    cache_release(c, h);
    cr_assert_eq(emb_deleted, 1);
    h = cache_lookup(c, 7, 1);
    cr_assert_eq(((emb_value *)cache_value(h))->payload, 112);
    cache_release(c, h);

    /* Eviction: 30 more entries through a cache of 10. */
    for (uint64_t k = 2; k < 32; k++) {
        cache_release(c, emb_insert(c, k, k));
    }
    cr_assert_eq(cache_lookup(c, 7, 2), NULL);
    cr_assert_geq(emb_deleted, 21);
    cache_erase(c, 7, 31);
    cr_assert_eq(cache_lookup(c, 7, 31), NULL);
    cache_free(c);
    cr_assert_eq(emb_deleted, 32, "every value deleted once: %d", emb_deleted);
}
