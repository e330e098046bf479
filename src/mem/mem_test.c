/* Tests for the memtable and its skiplist: order, versions, iterators, limits, concurrency. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "shale.h"

#include "base/arena.h"
#include "base/slice.h"
#include "mem/memtable.h"
#include "mem/skiplist.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

static memtable *new_mt(void)
{
    memtable *m = memtable_new();
    cr_assert_not_null(m);
    return m;
}

static void add(memtable *m, uint64_t seq, uint8_t type, shale_slice key, shale_slice value,
                uint64_t expire_at_ms)
{
    shale_error err = {0};
    shale_code rc = memtable_add(m, seq, type, key, value, expire_at_ms, NULL, NULL, &err);
    cr_assert_eq(rc, SHALE_OK, "add seq %llu: %s", (unsigned long long)seq, err.msg);
}

static void put(memtable *m, uint64_t seq, const char *key, const char *value)
{
    add(m, seq, MEMTABLE_PUT, slice_cstr(key), slice_cstr(value), 0);
}

static bool slice_is(shale_slice s, const char *text)
{
    return slice_eq(s, slice_cstr(text));
}

/* The internal order: key ascending, then seq descending. */
static int entry_cmp(const memtable_entry *a, const memtable_entry *b)
{
    int c = slice_cmp(a->key, b->key);
    if (c != 0) {
        return c;
    }
    return a->seq > b->seq ? -1 : (a->seq < b->seq ? 1 : 0);
}

Test(memtable, empty)
{
    memtable *m = new_mt();
    memtable_entry e;
    memtable_iter it;

    cr_assert_eq(memtable_entry_count(m), 0);
    cr_assert(memtable_memory_bytes(m) > 0, "the head node lives in the arena");
    cr_assert_not(memtable_get(m, SLICE_LIT("a"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_not(memtable_get(m, SLICE_LIT(""), MEMTABLE_MAX_SEQ, &e));

    memtable_iter_init(&it, m);
    cr_assert_not(memtable_iter_valid(&it), "a fresh iterator is unpositioned");
    memtable_iter_seek_first(&it);
    cr_assert_not(memtable_iter_valid(&it));
    memtable_iter_seek_last(&it);
    cr_assert_not(memtable_iter_valid(&it));
    memtable_iter_seek(&it, SLICE_LIT("a"), MEMTABLE_MAX_SEQ);
    cr_assert_not(memtable_iter_valid(&it));
    /* Moving an invalid iterator leaves it invalid. */
    memtable_iter_next(&it);
    cr_assert_not(memtable_iter_valid(&it));
    memtable_iter_prev(&it);
    cr_assert_not(memtable_iter_valid(&it));
    memtable_iter_destroy(&it);

    memtable_unref(m);
    memtable_unref(NULL);
}

Test(memtable, versions_newest_at_or_below_snapshot)
{
    memtable *m = new_mt();
    memtable_entry e;
    char val[32];

    /* Versions of "k" at seqs 10, 20, ..., 500, interleaved with neighbours that must not be
     * confused with it: a prefix, an extension, and keys just below and above. */
    for (uint64_t s = 10; s <= 500; s += 10) {
        snprintf(val, sizeof val, "v%llu", (unsigned long long)s);
        put(m, s, "k", val);
        put(m, s + 1, "k\x01", "ext");
        put(m, s + 2, "j\xff", "below");
        put(m, s + 3, "l", "above");
    }
    put(m, 1000, "", "prefix-of-everything");
    cr_assert_eq(memtable_entry_count(m), 201);

    for (uint64_t snap = 0; snap <= 520; snap++) {
        bool found = memtable_get(m, SLICE_LIT("k"), snap, &e);
        if (snap < 10) {
            cr_assert_not(found, "snapshot %llu predates every version", (unsigned long long)snap);
            continue;
        }
        uint64_t want = snap > 500 ? 500 : snap / 10 * 10;
        cr_assert(found);
        cr_assert_eq(e.seq, want, "snapshot %llu: seq %llu", (unsigned long long)snap,
                     (unsigned long long)e.seq);
        snprintf(val, sizeof val, "v%llu", (unsigned long long)want);
        cr_assert(slice_is(e.key, "k"));
        cr_assert(slice_is(e.value, val));
        cr_assert_eq(e.type, MEMTABLE_PUT);
        cr_assert_eq(e.expire_at_ms, 0);
    }
    cr_assert(memtable_get(m, SLICE_LIT("k"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(e.seq, 500);
    cr_assert(memtable_get(m, SLICE_LIT("k\x01"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(e.seq, 501);
    cr_assert(slice_is(e.value, "ext"));
    cr_assert(memtable_get(m, SLICE_LIT(""), MEMTABLE_MAX_SEQ, &e));
    cr_assert(slice_is(e.value, "prefix-of-everything"));
    cr_assert_not(memtable_get(m, SLICE_LIT(""), 999, &e));
    /* Absent keys that sort between present ones. */
    cr_assert_not(memtable_get(m, SLICE_LIT("k\x00"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_not(memtable_get(m, SLICE_LIT("j"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_not(memtable_get(m, SLICE_LIT("m"), MEMTABLE_MAX_SEQ, &e));
    /* A snapshot beyond MEMTABLE_MAX_SEQ behaves as "everything". */
    cr_assert(memtable_get(m, SLICE_LIT("l"), UINT64_MAX, &e));
    cr_assert_eq(e.seq, 503);
    memtable_unref(m);
}

Test(memtable, del_entries)
{
    memtable *m = new_mt();
    memtable_entry e;

    put(m, 1, "a", "one");
    add(m, 2, MEMTABLE_DEL, SLICE_LIT("a"), SLICE_LIT(""), 0);
    put(m, 3, "a", "three");
    add(m, 4, MEMTABLE_DEL, SLICE_LIT("never-put"), SLICE_LIT(""), 0);

    cr_assert(memtable_get(m, SLICE_LIT("a"), 1, &e));
    cr_assert_eq(e.type, MEMTABLE_PUT);
    cr_assert(slice_is(e.value, "one"));
    cr_assert(memtable_get(m, SLICE_LIT("a"), 2, &e), "a tombstone is returned, not skipped");
    cr_assert_eq(e.type, MEMTABLE_DEL);
    cr_assert_eq(e.seq, 2);
    cr_assert_eq(e.value.len, 0);
    cr_assert(memtable_get(m, SLICE_LIT("a"), 3, &e));
    cr_assert_eq(e.type, MEMTABLE_PUT);
    cr_assert(slice_is(e.value, "three"));
    cr_assert(memtable_get(m, SLICE_LIT("never-put"), 10, &e));
    cr_assert_eq(e.type, MEMTABLE_DEL);
    cr_assert_not(memtable_get(m, SLICE_LIT("never-put"), 3, &e));
    cr_assert_eq(memtable_entry_count(m), 4, "tombstones count as entries");
    memtable_unref(m);
}

Test(memtable, expire_round_trip)
{
    static const uint64_t expires[] = {0, 1, 1700000000000ull, UINT64_MAX - 1, UINT64_MAX, 0, 42};
    const size_t n = sizeof expires / sizeof expires[0];
    memtable *m = new_mt();
    memtable_entry e;
    memtable_iter it;
    char key[8];

    /* Odd-length keys and values put the stored expire_at_ms at every offset modulo 8. */
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "e%zu", i);
        shale_slice v = slice_make("0123456789", i);
        add(m, i + 1, MEMTABLE_PUT, slice_make(key, 1 + i % 3), v, expires[i]);
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "e%zu", i);
        cr_assert(memtable_get(m, slice_make(key, 1 + i % 3), i + 1, &e));
        cr_assert_eq(e.seq, i + 1);
        cr_assert_eq(e.expire_at_ms, expires[i], "entry %zu", i);
        cr_assert(slice_eq(e.value, slice_make("0123456789", i)));
        cr_assert(slice_eq(e.key, slice_make(key, 1 + i % 3)));
    }
    /* The iterator sees the same values. */
    memtable_iter_init(&it, m);
    size_t seen = 0;
    for (memtable_iter_seek_first(&it); memtable_iter_valid(&it); memtable_iter_next(&it)) {
        memtable_iter_entry(&it, &e);
        cr_assert_eq(e.expire_at_ms, expires[e.seq - 1]);
        seen++;
    }
    cr_assert_eq(seen, n);
    memtable_iter_destroy(&it);
    /* A DEL may carry an expiry too (the memtable stores what it is given). */
    add(m, 100, MEMTABLE_DEL, SLICE_LIT("d"), SLICE_LIT(""), 77);
    cr_assert(memtable_get(m, SLICE_LIT("d"), 100, &e));
    cr_assert_eq(e.expire_at_ms, 77);
    cr_assert_eq(e.type, MEMTABLE_DEL);
    memtable_unref(m);
}

Test(memtable, empty_key_and_empty_values)
{
    memtable *m = new_mt();
    memtable_entry e;
    memtable_iter it;

    /* The memtable takes any key; rejecting an empty one is the caller's job. */
    add(m, 1, MEMTABLE_PUT, SLICE_LIT(""), SLICE_LIT(""), 0);
    add(m, 2, MEMTABLE_PUT, SLICE_LIT("x"), slice_make(NULL, 0), 0);
    add(m, 3, MEMTABLE_PUT, slice_make(NULL, 0), SLICE_LIT("v"), 0);

    cr_assert(memtable_get(m, SLICE_LIT(""), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(e.seq, 3);
    cr_assert_eq(e.key.len, 0);
    cr_assert(slice_is(e.value, "v"));
    cr_assert(memtable_get(m, SLICE_LIT(""), 2, &e));
    cr_assert_eq(e.seq, 1);
    cr_assert_eq(e.value.len, 0);
    cr_assert_not_null(e.value.data);
    cr_assert(memtable_get(m, SLICE_LIT("x"), 2, &e));
    cr_assert_eq(e.value.len, 0);

    memtable_iter_init(&it, m);
    memtable_iter_seek_first(&it);
    memtable_iter_entry(&it, &e);
    cr_assert_eq(e.key.len, 0, "the empty key sorts first");
    cr_assert_eq(e.seq, 3);
    memtable_iter_destroy(&it);
    memtable_unref(m);
}

static void fill(unsigned char *p, size_t n, uint64_t seed)
{
    tu_rng r;
    tu_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        p[i] = (unsigned char)tu_rng_next(&r);
    }
}

Test(memtable, long_keys_and_values)
{
    const size_t big = (size_t)1 << 20;
    unsigned char *k1 = malloc(big);
    unsigned char *k2 = malloc(big);
    unsigned char *v = malloc(big);
    memtable *m = new_mt();
    memtable_entry e;

    cr_assert(k1 != NULL && k2 != NULL && v != NULL);
    fill(k1, big, 1);
    memcpy(k2, k1, big);
    k2[big - 1] ^= 0x80; /* differ only in the last byte */
    fill(v, big, 2);

    add(m, 1, MEMTABLE_PUT, slice_make(k1, big), slice_make(v, big), 5);
    add(m, 2, MEMTABLE_PUT, slice_make(k2, big), slice_make(v, big / 2), 0);
    add(m, 3, MEMTABLE_PUT, slice_make(k1, big - 1), slice_make(v, 1), 0);
    add(m, 4, MEMTABLE_PUT, slice_make(k1, 100), slice_make(v, big), 0);
    cr_assert(memtable_memory_bytes(m) >= 4 * big);

    cr_assert(memtable_get(m, slice_make(k1, big), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(e.seq, 1);
    cr_assert_eq(e.expire_at_ms, 5);
    cr_assert(slice_eq(e.value, slice_make(v, big)));
    cr_assert(slice_eq(e.key, slice_make(k1, big)));
    cr_assert(memtable_get(m, slice_make(k2, big), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(e.seq, 2);
    cr_assert(slice_eq(e.value, slice_make(v, big / 2)));
    cr_assert(memtable_get(m, slice_make(k1, big - 1), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(e.seq, 3);
    cr_assert(memtable_get(m, slice_make(k1, 100), MEMTABLE_MAX_SEQ, &e));
    cr_assert(slice_eq(e.value, slice_make(v, big)));
    cr_assert_not(memtable_get(m, slice_make(k1, big - 2), MEMTABLE_MAX_SEQ, &e));

    /* Internal order matches bytewise order, prefixes first. */
    memtable_iter it;
    memtable_entry prev = {0};
    int count = 0;
    memtable_iter_init(&it, m);
    for (memtable_iter_seek_first(&it); memtable_iter_valid(&it); memtable_iter_next(&it)) {
        memtable_iter_entry(&it, &e);
        if (count > 0) {
            cr_assert_lt(entry_cmp(&prev, &e), 0);
        }
        prev = e;
        count++;
    }
    cr_assert_eq(count, 4);
    memtable_iter_destroy(&it);
    memtable_unref(m);
    free(k1);
    free(k2);
    free(v);
}

Test(memtable, prev_reporting)
{
    memtable *m = new_mt();
    memtable_entry prev;
    bool found = true;
    shale_error err = {0};

    cr_assert_eq(
        memtable_add(m, 5, MEMTABLE_PUT, SLICE_LIT("k"), SLICE_LIT("v5"), 9, &found, &prev, &err),
        SHALE_OK);
    cr_assert_not(found, "first version of k");

    /* Neighbours that share a prefix are not older versions. */
    found = true;
    cr_assert_eq(memtable_add(m, 6, MEMTABLE_PUT, SLICE_LIT("k\x00"), SLICE_LIT("x"), 0, &found,
                              &prev, &err),
                 SHALE_OK);
    cr_assert_not(found);
    found = true;
    cr_assert_eq(
        memtable_add(m, 7, MEMTABLE_PUT, SLICE_LIT(""), SLICE_LIT("x"), 0, &found, &prev, &err),
        SHALE_OK);
    cr_assert_not(found);

    cr_assert_eq(
        memtable_add(m, 8, MEMTABLE_DEL, SLICE_LIT("k"), SLICE_LIT(""), 0, &found, &prev, &err),
        SHALE_OK);
    cr_assert(found);
    cr_assert_eq(prev.seq, 5);
    cr_assert_eq(prev.type, MEMTABLE_PUT);
    cr_assert_eq(prev.expire_at_ms, 9);
    cr_assert(slice_is(prev.key, "k"));
    cr_assert(slice_is(prev.value, "v5"));

    cr_assert_eq(
        memtable_add(m, 12, MEMTABLE_PUT, SLICE_LIT("k"), SLICE_LIT("v12"), 0, &found, &prev, &err),
        SHALE_OK);
    cr_assert(found);
    cr_assert_eq(prev.seq, 8, "the newest older version, not the oldest");
    cr_assert_eq(prev.type, MEMTABLE_DEL);

    /* prev_found alone (prev NULL) is filled too; both NULL is allowed. */
    found = false;
    cr_assert_eq(
        memtable_add(m, 13, MEMTABLE_PUT, SLICE_LIT("k"), SLICE_LIT("v"), 0, &found, NULL, &err),
        SHALE_OK);
    cr_assert(found);
    cr_assert_eq(
        memtable_add(m, 14, MEMTABLE_PUT, SLICE_LIT("k"), SLICE_LIT("v"), 0, NULL, NULL, &err),
        SHALE_OK);
    cr_assert_eq(memtable_entry_count(m), 7);
    memtable_unref(m);
}

Test(memtable, rejects_bad_arguments)
{
    memtable *m = new_mt();
    shale_error err = {0};
    memtable_entry e;
    bool found;

    put(m, 10, "k", "v10");
    size_t before = memtable_memory_bytes(m);

    cr_assert_eq(memtable_add(m, MEMTABLE_MAX_SEQ + 1, MEMTABLE_PUT, SLICE_LIT("a"), SLICE_LIT(""),
                              0, NULL, NULL, &err),
                 SHALE_INVALID);
    cr_assert_eq(err.code, SHALE_INVALID);
    cr_assert(strstr(err.msg, "seq") != NULL, "%s", err.msg);
    cr_assert_eq(memtable_add(m, 11, 0x80, SLICE_LIT("a"), SLICE_LIT(""), 0, NULL, NULL, &err),
                 SHALE_INVALID);
    /* Same seq again, and an older seq than the newest version of the key. */
    cr_assert_eq(
        memtable_add(m, 10, MEMTABLE_PUT, SLICE_LIT("k"), SLICE_LIT("x"), 0, &found, NULL, &err),
        SHALE_INVALID);
    cr_assert_eq(
        memtable_add(m, 9, MEMTABLE_PUT, SLICE_LIT("k"), SLICE_LIT("x"), 0, &found, NULL, &err),
        SHALE_INVALID);
    cr_assert(strstr(err.msg, "not newer") != NULL, "%s", err.msg);
    /* A key or value longer than 32 bits can express (never read: the check comes first). */
    cr_assert_eq(memtable_add(m, 20, MEMTABLE_PUT, SLICE_LIT("a"),
                              slice_make("x", (size_t)UINT32_MAX + 1), 0, NULL, NULL, &err),
                 SHALE_FULL);
    cr_assert_eq(memtable_add(m, 20, MEMTABLE_PUT, slice_make("x", (size_t)UINT32_MAX + 1),
                              SLICE_LIT(""), 0, NULL, NULL, &err),
                 SHALE_FULL);
    /* err may be NULL. */
    cr_assert_eq(
        memtable_add(m, 10, MEMTABLE_PUT, SLICE_LIT("k"), SLICE_LIT("x"), 0, NULL, NULL, NULL),
        SHALE_INVALID);

    cr_assert_eq(memtable_entry_count(m), 1, "nothing was added");
    cr_assert_eq(memtable_memory_bytes(m), before);
    cr_assert_not(memtable_get(m, SLICE_LIT("a"), MEMTABLE_MAX_SEQ, &e));
    cr_assert(memtable_get(m, SLICE_LIT("k"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(e.seq, 10);
    cr_assert(slice_is(e.value, "v10"));
    /* Other keys at that seq are fine: seqs need only be unique per key. */
    put(m, 10, "j", "j10");
    put(m, 11, "k", "v11");
    cr_assert_eq(memtable_entry_count(m), 3);
    memtable_unref(m);
}

static const char *const walk_keys[] = {"a", "b", "b\x00", "bb", "c"};

/* Entries in internal order: a@3 a@1 b@9 b@5 b@2 b\0@4 bb@6 c@8 c@7 */
static void build_walk(memtable *m)
{
    static const struct {
        int key;
        uint64_t seq;
    } adds[] = {{3, 6}, {1, 2}, {0, 1}, {4, 7}, {1, 5}, {2, 4}, {0, 3}, {4, 8}, {1, 9}};
    for (size_t i = 0; i < sizeof adds / sizeof adds[0]; i++) {
        const char *k = walk_keys[adds[i].key];
        size_t len = adds[i].key == 2 ? 2 : strlen(k);
        char val[16];
        snprintf(val, sizeof val, "%s@%llu", k, (unsigned long long)adds[i].seq);
        add(m, adds[i].seq, MEMTABLE_PUT, slice_make(k, len), slice_cstr(val), 0);
    }
}

static const struct {
    int key;
    uint64_t seq;
} walk_order[] = {{0, 3}, {0, 1}, {1, 9}, {1, 5}, {1, 2}, {2, 4}, {3, 6}, {4, 8}, {4, 7}};
#define WALK_N (sizeof walk_order / sizeof walk_order[0])

static void expect_at(memtable_iter *it, size_t pos)
{
    memtable_entry e;
    const char *k = walk_keys[walk_order[pos].key];
    size_t len = walk_order[pos].key == 2 ? 2 : strlen(k);

    cr_assert(memtable_iter_valid(it), "position %zu", pos);
    memtable_iter_entry(it, &e);
    cr_assert(slice_eq(e.key, slice_make(k, len)), "position %zu", pos);
    cr_assert_eq(e.seq, walk_order[pos].seq, "position %zu: seq %llu", pos,
                 (unsigned long long)e.seq);
}

Test(memtable_iter, walk_every_version)
{
    memtable *m = new_mt();
    memtable_iter it;

    build_walk(m);
    memtable_iter_init(&it, m);

    memtable_iter_seek_first(&it);
    for (size_t i = 0; i < WALK_N; i++) {
        expect_at(&it, i);
        memtable_iter_next(&it);
    }
    cr_assert_not(memtable_iter_valid(&it));

    memtable_iter_seek_last(&it);
    for (size_t i = WALK_N; i-- > 0;) {
        expect_at(&it, i);
        memtable_iter_prev(&it);
    }
    cr_assert_not(memtable_iter_valid(&it), "prev from the first entry becomes invalid");

    /* Back and forth in the middle. */
    memtable_iter_seek(&it, SLICE_LIT("b"), 5);
    expect_at(&it, 3);
    memtable_iter_prev(&it);
    expect_at(&it, 2);
    memtable_iter_next(&it);
    expect_at(&it, 3);
    memtable_iter_next(&it);
    expect_at(&it, 4);
    memtable_iter_prev(&it);
    expect_at(&it, 3);
    memtable_iter_destroy(&it);
    memtable_unref(m);
}

Test(memtable_iter, seek_positions)
{
    static const struct {
        const char *key;
        size_t len;
        uint64_t seq;
        int pos; /* index into walk_order, -1 = past the end */
    } cases[] = {
        {"", 0, MEMTABLE_MAX_SEQ, 0},
        {"a", 1, MEMTABLE_MAX_SEQ, 0},
        {"a", 1, 3, 0},
        {"a", 1, 2, 1},
        {"a", 1, 1, 1},
        {"a", 1, 0, 2}, /* older than every version of a: the next key */
        {"a\x00", 2, MEMTABLE_MAX_SEQ, 2},
        {"b", 1, 100, 2},
        {"b", 1, 8, 3},
        {"b", 1, 5, 3},
        {"b", 1, 4, 4},
        {"b", 1, 1, 5},
        {"b\x00", 2, MEMTABLE_MAX_SEQ, 5},
        {"b\x00\x00", 3, MEMTABLE_MAX_SEQ, 6},
        {"ba", 2, 0, 6},
        {"bb", 2, 6, 6},
        {"c", 1, 7, 8},
        {"c", 1, 6, -1},
        {"d", 1, MEMTABLE_MAX_SEQ, -1},
        {"\xff\xff", 2, 0, -1},
    };
    memtable *m = new_mt();
    memtable_iter it;

    build_walk(m);
    memtable_iter_init(&it, m);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memtable_iter_seek(&it, slice_make(cases[i].key, cases[i].len), cases[i].seq);
        if (cases[i].pos < 0) {
            cr_assert_not(memtable_iter_valid(&it), "case %zu", i);
        } else {
            expect_at(&it, (size_t)cases[i].pos);
        }
    }
    memtable_iter_destroy(&it);
    memtable_unref(m);
}

Test(memtable_iter, keeps_memtable_alive)
{
    memtable *m = new_mt();
    memtable_iter it;
    memtable_entry e;

    build_walk(m);
    memtable_iter_init(&it, m);
    memtable_unref(m); /* the owner lets go; the iterator's reference keeps it */
    memtable_iter_seek_first(&it);
    for (size_t i = 0; i < WALK_N; i++) {
        expect_at(&it, i);
        memtable_iter_entry(&it, &e);
        char want[16];
        snprintf(want, sizeof want, "%s@%llu", walk_keys[walk_order[i].key],
                 (unsigned long long)walk_order[i].seq);
        cr_assert(slice_eq(e.value, slice_make(want, strlen(want))));
        memtable_iter_next(&it);
    }
    /* A second holder via memtable_ref. */
    memtable_ref(it.m);
    memtable *held = it.m;
    memtable_iter_destroy(&it);
    cr_assert(memtable_get(held, SLICE_LIT("c"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(e.seq, 8);
    memtable_unref(held); /* the last reference: ASan would flag any later use */
}

/* A random reference entry for the big comparison. */
typedef struct ref_entry {
    char key[40];
    size_t key_len;
    uint64_t seq;
    uint8_t type;
} ref_entry;

static int ref_cmp(const void *a_, const void *b_)
{
    const ref_entry *a = a_;
    const ref_entry *b = b_;
    int c = slice_cmp(slice_make(a->key, a->key_len), slice_make(b->key, b->key_len));
    if (c != 0) {
        return c;
    }
    return a->seq > b->seq ? -1 : (a->seq < b->seq ? 1 : 0);
}

/* Keys drawn so that comparisons hit every path of the fast compare: shared 8-byte words, lengths
 * around multiples of 8, bytes >= 0x80 (must compare unsigned), embedded NULs, prefixes. */
static size_t random_key(tu_rng *r, char *out)
{
    static const unsigned char alphabet[] = {0x00, 0x01, 'a', 'b', 0x7f, 0x80, 0xfe, 0xff};
    size_t len = tu_rng_below(r, 33);
    for (size_t i = 0; i < len; i++) {
        /* Mostly-shared prefixes: early bytes come from a tiny alphabet. */
        size_t span = i < 12 ? 2 : sizeof alphabet;
        out[i] = (char)alphabet[tu_rng_below(r, span) + (i < 12 ? 2 : 0)];
    }
    return len;
}

Test(memtable, random_against_sorted_reference, .timeout = 60)
{
    const size_t n = 100000;
    ref_entry *ref = calloc(n, sizeof *ref);
    memtable *m = new_mt();
    memtable_iter it;
    memtable_entry e;
    tu_rng r;

    cr_assert_not_null(ref);
    tu_rng_seed(&r, 12345);
    /* Increasing seqs, so repeated keys get newer versions as the precondition requires. */
    for (size_t i = 0; i < n; i++) {
        ref_entry *x = &ref[i];
        if (i > 0 && tu_rng_below(&r, 8) == 0) {
            const ref_entry *old = &ref[tu_rng_below(&r, i)];
            memcpy(x->key, old->key, old->key_len);
            x->key_len = old->key_len;
        } else {
            x->key_len = random_key(&r, x->key);
        }
        x->seq = i + 1;
        x->type = tu_rng_below(&r, 5) == 0 ? MEMTABLE_DEL : MEMTABLE_PUT;
        bool found = false;
        memtable_entry prev;
        shale_error err = {0};
        /* The value is the seq, so each entry can be checked against its identity. */
        cr_assert_eq(memtable_add(m, x->seq, x->type, slice_make(x->key, x->key_len),
                                  slice_make(&x->seq, sizeof x->seq), x->seq % 3, &found, &prev,
                                  &err),
                     SHALE_OK, "%s", err.msg);
        /* prev_found: is there an older entry with this key? (checked on a sample: O(n)) */
        if (i % 1000 == 0) {
            uint64_t newest = 0;
            for (size_t j = 0; j < i; j++) {
                if (slice_eq(slice_make(ref[j].key, ref[j].key_len),
                             slice_make(x->key, x->key_len))) {
                    newest = ref[j].seq;
                }
            }
            cr_assert_eq(found, newest != 0, "entry %zu", i);
            if (found) {
                cr_assert_eq(prev.seq, newest);
            }
        }
    }
    cr_assert_eq(memtable_entry_count(m), n);

    /* Gets at the newest seq and at each entry's own seq. */
    for (size_t i = 0; i < n; i++) {
        shale_slice k = slice_make(ref[i].key, ref[i].key_len);
        cr_assert(memtable_get(m, k, ref[i].seq, &e));
        cr_assert_eq(e.seq, ref[i].seq);
        cr_assert_eq(e.type, ref[i].type);
        cr_assert_eq(e.expire_at_ms, ref[i].seq % 3);
        cr_assert(slice_eq(e.value, slice_make(&ref[i].seq, sizeof ref[i].seq)));
        cr_assert(memtable_get(m, k, MEMTABLE_MAX_SEQ, &e));
        cr_assert_geq(e.seq, ref[i].seq);
    }

    qsort(ref, n, sizeof *ref, ref_cmp);

    memtable_iter_init(&it, m);
    size_t i = 0;
    for (memtable_iter_seek_first(&it); memtable_iter_valid(&it); memtable_iter_next(&it), i++) {
        cr_assert_lt(i, n);
        memtable_iter_entry(&it, &e);
        cr_assert(slice_eq(e.key, slice_make(ref[i].key, ref[i].key_len)), "entry %zu", i);
        cr_assert_eq(e.seq, ref[i].seq, "entry %zu", i);
    }
    cr_assert_eq(i, n);
    /* Backwards over every entry (prev is a search each time). */
    i = n;
    for (memtable_iter_seek_last(&it); memtable_iter_valid(&it); memtable_iter_prev(&it)) {
        cr_assert_gt(i, 0);
        i--;
        memtable_iter_entry(&it, &e);
        cr_assert_eq(e.seq, ref[i].seq, "entry %zu", i);
    }
    cr_assert_eq(i, 0);
    /* Seeks to every entry's own (key, seq) land on it. */
    for (size_t j = 0; j < n; j += 7) {
        memtable_iter_seek(&it, slice_make(ref[j].key, ref[j].key_len), ref[j].seq);
        cr_assert(memtable_iter_valid(&it));
        memtable_iter_entry(&it, &e);
        cr_assert_eq(e.seq, ref[j].seq);
    }
    memtable_iter_destroy(&it);
    memtable_unref(m);
    free(ref);
}

Test(memtable, memory_and_count)
{
    memtable *m = new_mt();
    char kb[17];
    size_t start = memtable_memory_bytes(m);

    char val[100];

    memset(val, 'v', sizeof val);
    for (uint64_t i = 0; i < 50000; i++) {
        add(m, i + 1, MEMTABLE_PUT, tu_key(kb, i * 7919 % 50000), slice_make(val, sizeof val), 0);
    }
    cr_assert_eq(memtable_entry_count(m), 50000);
    /* 50,000 entries of >= 116 bytes each: more than one arena block. */
    cr_assert_gt(memtable_memory_bytes(m), start);
    cr_assert_geq(memtable_memory_bytes(m), 50000 * 116);
    memtable_unref(m);
}

/* SHALE_NOMEM leaves the list unchanged. An address-space limit makes malloc fail for real;
 * sanitizers reserve huge shadow mappings that such a limit breaks, so they skip this test. */
Test(memtable, nomem_leaves_list_unchanged)
{
    if (UNDER_SANITIZER) {
        cr_skip_test("address-space limits do not mix with sanitizers");
    }
    const size_t huge = (size_t)1 << 30;
    /* A readable source, in case the allocation unexpectedly succeeds (reserved, not used). */
    void *src = mmap(NULL, huge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    cr_assert_neq(src, MAP_FAILED);
    memtable *m = new_mt();
    memtable_entry e;
    shale_error err = {0};
    bool found = true;
    unsigned long pages = 0;

    put(m, 1, "a", "1");
    put(m, 2, "b", "2");
    size_t before = memtable_memory_bytes(m);

    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    struct rlimit old;
    cr_assert_eq(getrlimit(RLIMIT_AS, &old), 0);
    struct rlimit lim = old;
    lim.rlim_cur = pages * 4096ul + ((rlim_t)256 << 20);
    cr_assert_eq(setrlimit(RLIMIT_AS, &lim), 0);

    shale_code rc = memtable_add(m, 3, MEMTABLE_PUT, SLICE_LIT("a"), slice_make(src, huge), 0,
                                 &found, NULL, &err);
    cr_assert_eq(setrlimit(RLIMIT_AS, &old), 0);
    cr_assert_eq(rc, SHALE_NOMEM, "%s", err.msg);
    cr_assert_eq(err.code, SHALE_NOMEM);

    cr_assert_eq(memtable_entry_count(m), 2);
    cr_assert_eq(memtable_memory_bytes(m), before);
    cr_assert(memtable_get(m, SLICE_LIT("a"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(e.seq, 1, "the failed version is not visible");
    /* The memtable keeps working, and seq 3 is still free for "a". */
    put(m, 3, "a", "3");
    cr_assert(memtable_get(m, SLICE_LIT("a"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(e.seq, 3);
    memtable_iter it;
    int count = 0;
    memtable_iter_init(&it, m);
    for (memtable_iter_seek_first(&it); memtable_iter_valid(&it); memtable_iter_next(&it)) {
        count++;
    }
    memtable_iter_destroy(&it);
    cr_assert_eq(count, 3);
    memtable_unref(m);
    munmap(src, huge);
}

/* A reader racing the writer may see a link whose key prefix is stale: larger than the prefix of
 * the node it now points to (never smaller, see skiplist_link). Searches must stay exact with
 * any such upper bound; here every link gets one on purpose, and every kind of search is checked
 * against the sorted reference. */
static uint64_t prefix_of(const void *key, size_t len)
{
    unsigned char b[8] = {0};
    uint64_t v = 0;
    memcpy(b, key, len < 8 ? len : 8);
    for (int i = 0; i < 8; i++) {
        v = v << 8 | b[i];
    }
    return v;
}

Test(skiplist, stale_prefixes_are_safe)
{
    const size_t n = 3000;
    ref_entry *ref = calloc(n, sizeof *ref);
    arena a;
    skiplist sl;
    tu_rng r;

    cr_assert_not_null(ref);
    arena_init(&a);
    cr_assert_eq(skiplist_init(&sl, &a, NULL), SHALE_OK);
    tu_rng_seed(&r, 99);
    for (size_t i = 0; i < n; i++) {
        ref_entry *x = &ref[i];
        if (i > 0 && tu_rng_below(&r, 6) == 0) {
            *x = ref[tu_rng_below(&r, i)];
        } else {
            x->key_len = random_key(&r, x->key);
        }
        x->seq = i + 1;
        cr_assert_eq(
            skiplist_insert(&sl, x->seq, MEMTABLE_PUT, x->key, x->key_len, "", 0, 0, NULL, NULL),
            SHALE_OK);
    }
    qsort(ref, n, sizeof *ref, ref_cmp);

    /* Raise every link's prefix to some upper bound of the truth: exact, the maximum, or between.
     */
    for (int level = 0; level < SKIPLIST_MAX_HEIGHT; level++) {
        for (skiplist_node *x = sl.head; x != NULL;) {
            skiplist_node *next = atomic_load(&x->next[level].node);
            if (next != NULL) {
                uint64_t truth = prefix_of(skiplist_node_key(next), next->key_len);
                uint64_t pick = tu_rng_below(&r, 3);
                uint64_t span = UINT64_MAX - truth;
                uint64_t bound = pick == 0   ? truth
                                 : pick == 1 ? UINT64_MAX
                                             : truth + (span > 0 ? tu_rng_next(&r) % span : 0);
                atomic_store(&x->next[level].key_prefix, bound);
            }
            x = next;
        }
    }

    for (size_t i = 0; i < n; i++) {
        const skiplist_node *got = skiplist_seek(&sl, ref[i].key, ref[i].key_len, ref[i].seq);
        cr_assert_not_null(got, "entry %zu", i);
        cr_assert_eq(skiplist_node_seq(got), ref[i].seq, "entry %zu", i);
        cr_assert(slice_eq(slice_make(skiplist_node_key(got), got->key_len),
                           slice_make(ref[i].key, ref[i].key_len)));
        const skiplist_node *before =
            skiplist_find_less_than(&sl, ref[i].key, ref[i].key_len, ref[i].seq);
        if (i == 0) {
            cr_assert_null(before);
        } else {
            cr_assert_not_null(before, "entry %zu", i);
            cr_assert_eq(skiplist_node_seq(before), ref[i - 1].seq, "entry %zu", i);
        }
        /* The newest version of a key, and a probe just past it. */
        got = skiplist_seek(&sl, ref[i].key, ref[i].key_len, MEMTABLE_MAX_SEQ);
        cr_assert_not_null(got);
        cr_assert(slice_eq(slice_make(skiplist_node_key(got), got->key_len),
                           slice_make(ref[i].key, ref[i].key_len)));
        cr_assert_geq(skiplist_node_seq(got), ref[i].seq);
    }
    const skiplist_node *last = skiplist_last(&sl);
    cr_assert_not_null(last);
    cr_assert_eq(skiplist_node_seq(last), ref[n - 1].seq);
    arena_destroy(&a);
    free(ref);
}

/* ---- Concurrency: one writer, lock-free readers ---- */

#define CONC_READERS 3

typedef struct conc {
    memtable *m;
    uint64_t n;            /* inserts the writer makes */
    uint64_t *key_of;      /* insert i writes key number key_of[i] at seq i + 1 */
    _Atomic uint64_t done; /* inserts completed (release by the writer) */
    _Atomic int failures;  /* set by a reader that saw something wrong */
    char why[CONC_READERS][160];
} conc;

typedef struct reader_arg {
    conc *c;
    int id;
} reader_arg;

static void conc_key(char *buf, uint64_t k)
{
    snprintf(buf, 17, "c%015llu", (unsigned long long)k);
}

static void *writer_main(void *p)
{
    conc *c = p;
    char kb[17];
    for (uint64_t i = 0; i < c->n; i++) {
        uint64_t seq = i + 1;
        conc_key(kb, c->key_of[i]);
        shale_code rc = memtable_add(c->m, seq, MEMTABLE_PUT, slice_make(kb, 16),
                                     slice_make(&seq, sizeof seq), 0, NULL, NULL, NULL);
        if (rc != SHALE_OK) {
            atomic_store(&c->failures, 1);
            return NULL;
        }
        atomic_store_explicit(&c->done, i + 1, memory_order_release);
    }
    return NULL;
}

/* Walks forward over everything, checking strict internal order and that each value holds its
 * entry's seq. Returns the entry count, or -1 (with the reason in why) on a violation. */
static long long scan_forward(memtable_iter *it, char *why, size_t why_len)
{
    memtable_entry e, prev = {0};
    long long count = 0;
    for (memtable_iter_seek_first(it); memtable_iter_valid(it); memtable_iter_next(it)) {
        memtable_iter_entry(it, &e);
        uint64_t v;
        if (e.value.len != sizeof v || e.key.len != 16) {
            snprintf(why, why_len, "forward: bad lengths at %lld", count);
            return -1;
        }
        memcpy(&v, e.value.data, sizeof v);
        if (v != e.seq || (count > 0 && entry_cmp(&prev, &e) >= 0)) {
            snprintf(why, why_len, "forward: order or value wrong at %lld", count);
            return -1;
        }
        prev = e;
        count++;
    }
    return count;
}

static long long scan_backward(memtable_iter *it, long long limit, char *why, size_t why_len)
{
    memtable_entry e, next = {0};
    long long count = 0;
    for (memtable_iter_seek_last(it); memtable_iter_valid(it) && count < limit;
         memtable_iter_prev(it)) {
        memtable_iter_entry(it, &e);
        if (count > 0 && entry_cmp(&e, &next) >= 0) {
            snprintf(why, why_len, "backward: order wrong at %lld", count);
            return -1;
        }
        next = e;
        count++;
    }
    return count;
}

static void *reader_main(void *p)
{
    reader_arg *a = p;
    conc *c = a->c;
    char *why = c->why[a->id];
    const size_t why_len = sizeof c->why[a->id];
    tu_rng r;
    memtable_iter it;
    char kb[17];
    unsigned rounds = 0;

    tu_rng_seed(&r, 1000 + (uint64_t)a->id);
    memtable_iter_init(&it, c->m);
    /* Start once the writer has: the interesting rounds are the ones that overlap it. */
    while (atomic_load_explicit(&c->done, memory_order_acquire) == 0 &&
           atomic_load(&c->failures) == 0) {
        sched_yield();
    }
    for (bool last = false; !last; rounds++) {
        /* Decide first, so the final round runs after every insert. */
        last = atomic_load_explicit(&c->done, memory_order_acquire) == c->n ||
               atomic_load(&c->failures) != 0;
        uint64_t done = atomic_load_explicit(&c->done, memory_order_acquire);
        /* Every insert completed before the get started is found, at its own seq exactly. */
        for (int j = 0; j < 200 && done > 0; j++) {
            uint64_t i = tu_rng_below(&r, done);
            memtable_entry e;
            conc_key(kb, c->key_of[i]);
            if (!memtable_get(c->m, slice_make(kb, 16), i + 1, &e) || e.seq != i + 1) {
                snprintf(why, why_len, "get of insert %llu (seq %llu) failed",
                         (unsigned long long)i, (unsigned long long)(i + 1));
                goto fail;
            }
            if (!memtable_get(c->m, slice_make(kb, 16), MEMTABLE_MAX_SEQ, &e) || e.seq < i + 1) {
                snprintf(why, why_len, "newest get of insert %llu failed", (unsigned long long)i);
                goto fail;
            }
        }
        if (rounds % 4 == 0 || last) {
            done = atomic_load_explicit(&c->done, memory_order_acquire);
            long long got = scan_forward(&it, why, why_len);
            if (got < 0) {
                goto fail;
            }
            if ((uint64_t)got < done) {
                snprintf(why, why_len, "forward scan saw %lld < %llu entries", got,
                         (unsigned long long)done);
                goto fail;
            }
            /* Backwards is a search per step: bounded while the writer runs. */
            long long limit = last ? (long long)c->n : 3000;
            got = scan_backward(&it, limit, why, why_len);
            if (got < 0) {
                goto fail;
            }
            if (last && (uint64_t)got != c->n) {
                snprintf(why, why_len, "final backward scan saw %lld entries", got);
                goto fail;
            }
        }
    }
    memtable_iter_destroy(&it);
    return NULL;
fail:
    atomic_store(&c->failures, 1);
    memtable_iter_destroy(&it);
    return NULL;
}

Test(memtable_concurrency, one_writer_many_readers, .timeout = 120)
{
    conc c = {0};
    pthread_t w;
    pthread_t rd[CONC_READERS];
    reader_arg args[CONC_READERS];
    tu_rng r;

    c.m = new_mt();
    c.n = 100000;
    c.key_of = malloc(c.n * sizeof *c.key_of);
    cr_assert_not_null(c.key_of);
    tu_rng_seed(&r, 77);
    /* Random key numbers from a space smaller than n, so many keys get several versions. */
    for (uint64_t i = 0; i < c.n; i++) {
        c.key_of[i] = tu_rng_below(&r, c.n / 2);
    }
    atomic_init(&c.done, 0);
    atomic_init(&c.failures, 0);

    for (int i = 0; i < CONC_READERS; i++) {
        args[i] = (reader_arg){&c, i};
        cr_assert_eq(pthread_create(&rd[i], NULL, reader_main, &args[i]), 0);
    }
    cr_assert_eq(pthread_create(&w, NULL, writer_main, &c), 0);
    cr_assert_eq(pthread_join(w, NULL), 0);
    for (int i = 0; i < CONC_READERS; i++) {
        cr_assert_eq(pthread_join(rd[i], NULL), 0);
    }
    for (int i = 0; i < CONC_READERS; i++) {
        cr_assert_eq(c.why[i][0], '\0', "reader %d: %s", i, c.why[i]);
    }
    cr_assert_eq(atomic_load(&c.failures), 0, "writer failed");
    cr_assert_eq(memtable_entry_count(c.m), c.n);
    memtable_unref(c.m);
    free(c.key_of);
}
