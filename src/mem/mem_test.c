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

/* Internal order, for the reference models: key ascending, then seq descending. */
static int cmp_key_seq(const void *ka, size_t la, uint64_t sa, const void *kb, size_t lb,
                       uint64_t sb)
{
    int c = slice_cmp(slice_make(ka, la), slice_make(kb, lb));
    if (c != 0) {
        return c;
    }
    return sa > sb ? -1 : (sa < sb ? 1 : 0);
}

static int ref_cmp(const void *a_, const void *b_)
{
    const ref_entry *a = a_;
    const ref_entry *b = b_;
    return cmp_key_seq(a->key, a->key_len, a->seq, b->key, b->key_len, b->seq);
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

Test(memtable, random_against_sorted_reference)
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
static uint64_t prefix_of(const void *key, size_t len, size_t off)
{
    unsigned char b[16] = {0};
    uint64_t v = 0;
    memcpy(b, key, len < 16 ? len : 16);
    for (size_t i = off; i < off + 8; i++) {
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
        cr_assert_eq(skiplist_insert(&sl, x->seq, MEMTABLE_PUT, x->key, x->key_len, "", 0, 0, NULL,
                                     NULL, NULL),
                     SHALE_OK);
    }
    qsort(ref, n, sizeof *ref, ref_cmp);

    /* Raise every link's prefix to some upper bound of the truth (as 128-bit numbers): exact,
     * the maximum, a larger high word with any low word, or the same high word and a larger low
     * word. */
    for (int level = 0; level < SKIPLIST_MAX_HEIGHT; level++) {
        for (skiplist_node *x = sl.head; x != NULL;) {
            skiplist_node *next = atomic_load(&x->next[level].node);
            if (next != NULL) {
                uint64_t hi = prefix_of(skiplist_node_key(next), next->key_len, 0);
                uint64_t lo = prefix_of(skiplist_node_key(next), next->key_len, 8);
                uint64_t hspan = UINT64_MAX - hi, lspan = UINT64_MAX - lo;
                switch (tu_rng_below(&r, 4)) {
                case 0:
                    break;
                case 1:
                    hi = lo = UINT64_MAX;
                    break;
                case 2:
                    hi += hspan > 0 ? 1 + tu_rng_next(&r) % hspan : 0;
                    lo = hspan > 0 ? tu_rng_next(&r) : lo;
                    break;
                default:
                    lo += lspan > 0 ? tu_rng_next(&r) % lspan : 0;
                    break;
                }
                atomic_store(&x->next[level].key_hi, hi);
                atomic_store(&x->next[level].key_lo, lo);
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
            /* Keys never written are never found, while the index grows under the reader. */
            conc_key(kb, c->n + tu_rng_below(&r, c->n));
            if (memtable_get(c->m, slice_make(kb, 16), MEMTABLE_MAX_SEQ, &e)) {
                snprintf(why, why_len, "found a key never written");
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

Test(memtable_concurrency, one_writer_many_readers)
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

/* ---- Bulk load (memtable_loader) ---- */

/* One op of a load: what memtable_add and memtable_loader_add both get. */
typedef struct load_op {
    char key[48];
    size_t key_len;
    uint64_t seq;
    uint8_t type;
    uint64_t expire_at_ms;
    size_t val_len; /* the value is val_len bytes of "val" repeated, from the seq */
} load_op;

static void op_value(const load_op *o, char *buf)
{
    for (size_t i = 0; i < o->val_len; i++) {
        buf[i] = (char)('a' + (o->seq + i) % 26);
    }
}

static memtable *build_by_adds(const load_op *ops, size_t n)
{
    memtable *m = new_mt();
    char val[300];
    for (size_t i = 0; i < n; i++) {
        op_value(&ops[i], val);
        add(m, ops[i].seq, ops[i].type, slice_make(ops[i].key, ops[i].key_len),
            slice_make(val, ops[i].val_len), ops[i].expire_at_ms);
    }
    return m;
}

static memtable *build_by_loader(const load_op *ops, size_t n, memtable_load_stats *st)
{
    memtable *m = new_mt();
    shale_error err = {0};
    char val[300];
    memtable_loader *l = NULL;
    cr_assert_eq(memtable_loader_new(m, &l, &err), SHALE_OK, "%s", err.msg);
    cr_assert_not_null(l, "%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        op_value(&ops[i], val);
        cr_assert_eq(
            memtable_loader_add(l, ops[i].seq, ops[i].type, slice_make(ops[i].key, ops[i].key_len),
                                slice_make(val, ops[i].val_len), ops[i].expire_at_ms, &err),
            SHALE_OK, "op %zu: %s", i, err.msg);
    }
    cr_assert_eq(memtable_loader_finish(l, st, &err), SHALE_OK, "%s", err.msg);
    return m;
}

static bool same_node(const skiplist_node *a, const skiplist_node *b)
{
    return a->tag == b->tag && a->key_len == b->key_len && a->val_len == b->val_len &&
           memcmp(skiplist_node_key(a), skiplist_node_key(b), a->key_len) == 0 &&
           memcmp(skiplist_node_value(a), skiplist_node_value(b), a->val_len) == 0 &&
           skiplist_node_expire_at_ms(a) == skiplist_node_expire_at_ms(b);
}

/* The two lists are the same structure: same height, and at every level the same nodes (by
 * content) in the same order with the same key prefixes in the links. */
static void assert_same_lists(memtable *x, memtable *y)
{
    const skiplist *a = memtable_skiplist(x);
    const skiplist *b = memtable_skiplist(y);
    cr_assert_eq(atomic_load(&a->height), atomic_load(&b->height));
    cr_assert_eq(memtable_entry_count(x), memtable_entry_count(y));
    for (int level = 0; level < SKIPLIST_MAX_HEIGHT; level++) {
        const skiplist_node *p = a->head, *q = b->head;
        size_t pos = 0;
        for (;;) {
            skiplist_link *lp = &((skiplist_node *)p)->next[level];
            skiplist_link *lq = &((skiplist_node *)q)->next[level];
            cr_assert_eq(atomic_load(&lp->key_hi), atomic_load(&lq->key_hi),
                         "level %d position %zu: prefixes differ", level, pos);
            cr_assert_eq(atomic_load(&lp->key_lo), atomic_load(&lq->key_lo),
                         "level %d position %zu: prefixes differ", level, pos);
            p = atomic_load(&lp->node);
            q = atomic_load(&lq->node);
            if (p == NULL || q == NULL) {
                cr_assert(p == NULL && q == NULL, "level %d: lengths differ at %zu", level, pos);
                cr_assert_eq(atomic_load(&lp->key_hi), UINT64_MAX);
                cr_assert_eq(atomic_load(&lp->key_lo), UINT64_MAX);
                break;
            }
            /* The prefix is exactly the successor's first 16 bytes, zero-padded. */
            cr_assert_eq(atomic_load(&lp->key_hi), prefix_of(skiplist_node_key(p), p->key_len, 0));
            cr_assert_eq(atomic_load(&lp->key_lo), prefix_of(skiplist_node_key(p), p->key_len, 8));
            cr_assert(same_node(p, q), "level %d position %zu: nodes differ", level, pos);
            pos++;
        }
        if (level == 0) {
            cr_assert_eq(pos, memtable_entry_count(x));
        }
    }
}

/* Gets at every op's own seq and one below it, and at the newest, agree between the two. */
static void assert_same_gets(memtable *x, memtable *y, const load_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        shale_slice k = slice_make(ops[i].key, ops[i].key_len);
        uint64_t snaps[3] = {ops[i].seq, ops[i].seq - 1, MEMTABLE_MAX_SEQ};
        for (int s = 0; s < 3; s++) {
            memtable_entry e, f;
            bool fx = memtable_get(x, k, snaps[s], &e);
            bool fy = memtable_get(y, k, snaps[s], &f);
            cr_assert_eq(fx, fy, "op %zu snapshot %d", i, s);
            if (fx) {
                cr_assert_eq(e.seq, f.seq);
                cr_assert_eq(e.type, f.type);
                cr_assert_eq(e.expire_at_ms, f.expire_at_ms);
                cr_assert(slice_eq(e.value, f.value));
                cr_assert(slice_eq(e.key, k));
            }
        }
    }
}

static int load_op_cmp(const void *a_, const void *b_)
{
    const load_op *a = a_;
    const load_op *b = b_;
    return cmp_key_seq(a->key, a->key_len, a->seq, b->key, b->key_len, b->seq);
}

/* What the stats of a load must say, from the ops alone. */
static void expected_stats(const load_op *ops, size_t n, memtable_load_stats *out)
{
    load_op *sorted = malloc((n ? n : 1) * sizeof *sorted);
    cr_assert_not_null(sorted);
    memcpy(sorted, ops, n * sizeof *ops);
    /* Sort by key, then seq descending: the first of each key is its newest. */
    qsort(sorted, n, sizeof *sorted, load_op_cmp);
    memset(out, 0, sizeof *out);
    out->entries = n;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && slice_eq(slice_make(sorted[i].key, sorted[i].key_len),
                              slice_make(sorted[i - 1].key, sorted[i - 1].key_len))) {
            continue;
        }
        out->keys++;
        if (sorted[i].type == MEMTABLE_PUT) {
            out->live_keys++;
            out->ttl_puts += sorted[i].expire_at_ms != 0;
        }
    }
    free(sorted);
}

static void check_load(const load_op *ops, size_t n)
{
    memtable_load_stats st, want;
    memtable *x = build_by_adds(ops, n);
    memtable *y = build_by_loader(ops, n, &st);

    assert_same_lists(x, y);
    assert_same_gets(x, y, ops, n);
    expected_stats(ops, n, &want);
    cr_assert_eq(st.entries, want.entries);
    cr_assert_eq(st.keys, want.keys);
    cr_assert_eq(st.live_keys, want.live_keys);
    cr_assert_eq(st.ttl_puts, want.ttl_puts);
    memtable_unref(x);
    memtable_unref(y);
}

/* Random ops: keys from random_key (shared prefixes, lengths around 8 and 16, bytes >= 0x80,
 * NULs), often long enough to tie on 16 and 32 bytes; many versions per key; deletes; TTLs. */
static size_t random_ops(load_op *ops, size_t n, uint64_t seed)
{
    tu_rng r;
    uint64_t seq = 0;
    tu_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        load_op *o = &ops[i];
        memset(o, 0, sizeof *o);
        if (i > 0 && tu_rng_below(&r, 2) == 0) {
            const load_op *old = &ops[tu_rng_below(&r, i)];
            memcpy(o->key, old->key, old->key_len);
            o->key_len = old->key_len;
        } else {
            o->key_len = random_key(&r, o->key);
            if (tu_rng_below(&r, 4) == 0) {
                /* Longer keys that tie on their first 32 bytes, some only by zero padding. */
                size_t extra = tu_rng_below(&r, 16);
                memset(o->key + o->key_len, tu_rng_below(&r, 2) ? 0 : 'z', extra);
                o->key_len += extra;
            }
        }
        seq += 1 + tu_rng_below(&r, 3); /* gaps, as batches and salvage leave */
        o->seq = seq;
        o->type = tu_rng_below(&r, 4) == 0 ? MEMTABLE_DEL : MEMTABLE_PUT;
        o->expire_at_ms = tu_rng_below(&r, 3) == 0 ? 1 + tu_rng_below(&r, 1000) : 0;
        o->val_len = tu_rng_below(&r, 40);
    }
    return n;
}

Test(memtable_loader, equals_one_by_one_inserts)
{
    const size_t n = 40000;
    load_op *ops = calloc(n, sizeof *ops);
    cr_assert_not_null(ops);
    for (uint64_t seed = 1; seed <= 3; seed++) {
        random_ops(ops, n, seed);
        check_load(ops, n);
    }
    /* Small loads exercise the insertion-sort paths alone. */
    for (size_t k = 1; k <= 40; k += 3) {
        random_ops(ops, k, 100 + k);
        check_load(ops, k);
    }
    free(ops);
}

/* Keys that tie on every padded byte and differ only in length, or that share long prefixes,
 * in every arrival order; many versions of each. */
Test(memtable_loader, ties_on_padding_and_long_prefixes)
{
    static const struct {
        const char *k;
        size_t len;
    } keys[] = {
        {"", 0},
        {"\0", 1},
        {"\0\0", 2},
        {"a", 1},
        {"a\0", 2},
        {"a\0\0\0\0\0\0\0", 8},
        {"a\0\0\0\0\0\0\0\0", 9},
        {"aaaaaaaaaaaaaaaa", 16},
        {"aaaaaaaaaaaaaaaa\0", 17},
        {"aaaaaaaaaaaaaaaa\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32},
        {"aaaaaaaaaaaaaaaa\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 33},
        {"aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbc", 33},
        {"aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb", 32},
        {"aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbc\xff", 34},
        {"aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb\x80", 33},
        {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 17},
        {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 16},
    };
    const size_t nk = sizeof keys / sizeof keys[0];
    const size_t n = nk * 60;
    load_op *ops = calloc(n, sizeof *ops);
    tu_rng r;

    cr_assert_not_null(ops);
    tu_rng_seed(&r, 7);
    for (size_t i = 0; i < n; i++) {
        size_t k = tu_rng_below(&r, nk);
        memcpy(ops[i].key, keys[k].k, keys[k].len);
        ops[i].key_len = keys[k].len;
        ops[i].seq = i + 1;
        ops[i].type = i % 5 == 0 ? MEMTABLE_DEL : MEMTABLE_PUT;
        ops[i].expire_at_ms = i % 3 == 0 ? i : 0;
        ops[i].val_len = i % 11;
    }
    check_load(ops, n);
    /* Runs of equal keys longer than the insertion-sort cut-off, in one big tie. */
    for (size_t i = 0; i < n; i++) {
        size_t k = i % 2 ? 9 : 10; /* equal to 32 bytes, lengths 32 and 33 */
        memcpy(ops[i].key, keys[k].k, keys[k].len);
        ops[i].key_len = keys[k].len;
    }
    check_load(ops, n);
    free(ops);
}

Test(memtable_loader, empty_load_and_misuse)
{
    memtable *m = new_mt();
    shale_error err = {0};
    memtable_load_stats st;
    memtable_entry e;
    memtable_iter it;

    memtable_loader *l = NULL;
    cr_assert_eq(memtable_loader_new(m, &l, &err), SHALE_OK, "%s", err.msg);
    cr_assert_not_null(l);
    memset(&st, 0xff, sizeof st);
    cr_assert_eq(memtable_loader_finish(l, &st, &err), SHALE_OK);
    cr_assert_eq(st.entries, 0);
    cr_assert_eq(st.keys, 0);
    cr_assert_eq(st.live_keys, 0);
    cr_assert_eq(st.ttl_puts, 0);
    cr_assert_eq(memtable_entry_count(m), 0);
    memtable_iter_init(&it, m);
    memtable_iter_seek_first(&it);
    cr_assert_not(memtable_iter_valid(&it));
    memtable_iter_destroy(&it);
    /* A NULL stats pointer is fine. */
    cr_assert_eq(memtable_loader_new(m, &l, &err), SHALE_OK, "%s", err.msg);
    cr_assert_not_null(l);
    cr_assert_eq(memtable_loader_finish(l, NULL, &err), SHALE_OK);

    /* The memtable works normally after an empty load; a non-empty one refuses a loader. */
    put(m, 5, "k", "v");
    l = (memtable_loader *)&e; /* must be reset */
    cr_assert_eq(memtable_loader_new(m, &l, &err), SHALE_INVALID);
    cr_assert_null(l);
    cr_assert_eq(err.code, SHALE_INVALID);
    cr_assert(strstr(err.msg, "not empty") != NULL, "%s", err.msg);
    cr_assert(memtable_get(m, SLICE_LIT("k"), MEMTABLE_MAX_SEQ, &e));
    memtable_unref(m);

    /* A memtable written behind the loader's back: finish refuses and publishes nothing. */
    m = new_mt();
    cr_assert_eq(memtable_loader_new(m, &l, &err), SHALE_OK, "%s", err.msg);
    cr_assert_not_null(l);
    cr_assert_eq(memtable_loader_add(l, 1, MEMTABLE_PUT, SLICE_LIT("a"), SLICE_LIT("1"), 0, &err),
                 SHALE_OK);
    put(m, 9, "b", "9");
    cr_assert_eq(memtable_loader_finish(l, &st, &err), SHALE_INVALID);
    cr_assert_eq(st.entries, 0);
    cr_assert_not(memtable_get(m, SLICE_LIT("a"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(memtable_entry_count(m), 1);
    memtable_unref(m);
    memtable_loader_free(NULL);
}

Test(memtable_loader, rejects_bad_entries_and_stays_usable)
{
    memtable *m = new_mt();
    shale_error err = {0};
    memtable_load_stats st;
    memtable_entry e;
    memtable_loader *l = NULL;
    cr_assert_eq(memtable_loader_new(m, &l, &err), SHALE_OK, "%s", err.msg);

    cr_assert_not_null(l);
    cr_assert_eq(
        memtable_loader_add(l, 10, MEMTABLE_PUT, SLICE_LIT("k"), SLICE_LIT("v10"), 0, &err),
        SHALE_OK);
    /* Not after the previous seq: same, older, and on another key. */
    cr_assert_eq(memtable_loader_add(l, 10, MEMTABLE_PUT, SLICE_LIT("k"), SLICE_LIT("x"), 0, &err),
                 SHALE_INVALID);
    cr_assert(strstr(err.msg, "not after") != NULL, "%s", err.msg);
    cr_assert_eq(memtable_loader_add(l, 9, MEMTABLE_PUT, SLICE_LIT("j"), SLICE_LIT("x"), 0, &err),
                 SHALE_INVALID);
    cr_assert_eq(memtable_loader_add(l, MEMTABLE_MAX_SEQ + 1, MEMTABLE_PUT, SLICE_LIT("k"),
                                     SLICE_LIT("x"), 0, &err),
                 SHALE_INVALID);
    cr_assert_eq(memtable_loader_add(l, 11, 0x80, SLICE_LIT("k"), SLICE_LIT("x"), 0, &err),
                 SHALE_INVALID);
    cr_assert_eq(memtable_loader_add(l, 11, MEMTABLE_PUT, SLICE_LIT("k"),
                                     slice_make("x", (size_t)UINT32_MAX + 1), 0, NULL),
                 SHALE_FULL);
    cr_assert_eq(
        memtable_loader_add(l, 11, MEMTABLE_PUT, SLICE_LIT("k"), SLICE_LIT("v11"), 0, &err),
        SHALE_OK);
    cr_assert_eq(memtable_loader_add(l, 12, MEMTABLE_DEL, SLICE_LIT("j"), SLICE_LIT(""), 0, &err),
                 SHALE_OK);
    cr_assert_eq(memtable_loader_finish(l, &st, &err), SHALE_OK);
    cr_assert_eq(st.entries, 3);
    cr_assert_eq(st.keys, 2);
    cr_assert_eq(st.live_keys, 1);
    cr_assert(memtable_get(m, SLICE_LIT("k"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(e.seq, 11);
    cr_assert(memtable_get(m, SLICE_LIT("k"), 10, &e));
    cr_assert(slice_is(e.value, "v10"));
    cr_assert(memtable_get(m, SLICE_LIT("j"), 12, &e));
    cr_assert_eq(e.type, MEMTABLE_DEL);
    /* memtable_add continues the history. */
    cr_assert_eq(
        memtable_add(m, 11, MEMTABLE_PUT, SLICE_LIT("k"), SLICE_LIT("x"), 0, NULL, NULL, &err),
        SHALE_INVALID);
    put(m, 13, "k", "v13");
    cr_assert(memtable_get(m, SLICE_LIT("k"), MEMTABLE_MAX_SEQ, &e));
    cr_assert(slice_is(e.value, "v13"));
    cr_assert_eq(memtable_entry_count(m), 4);
    memtable_unref(m);
}

/* Large values are built in place in the memtable's arena rather than staged and copied; mixed
 * with small ones they must still come out in order, and a later add must still work. */
Test(memtable_loader, large_values_in_place)
{
    const size_t big = (size_t)2 << 20;
    char *v = malloc(big);
    memtable *m = new_mt();
    shale_error err = {0};
    memtable_load_stats st;
    memtable_entry e;
    memtable_loader *l = NULL;
    cr_assert_eq(memtable_loader_new(m, &l, &err), SHALE_OK, "%s", err.msg);

    cr_assert(v != NULL && l != NULL);
    memset(v, 'B', big);
    cr_assert_eq(
        memtable_loader_add(l, 1, MEMTABLE_PUT, SLICE_LIT("m"), slice_make(v, big), 7, &err),
        SHALE_OK);
    cr_assert_eq(
        memtable_loader_add(l, 2, MEMTABLE_PUT, SLICE_LIT("a"), SLICE_LIT("small"), 0, &err),
        SHALE_OK);
    cr_assert_eq(
        memtable_loader_add(l, 3, MEMTABLE_PUT, SLICE_LIT("m"), slice_make(v, big / 2), 0, &err),
        SHALE_OK);
    cr_assert_eq(
        memtable_loader_add(l, 4, MEMTABLE_PUT, SLICE_LIT("z"), SLICE_LIT("small"), 0, &err),
        SHALE_OK);
    cr_assert_eq(memtable_loader_finish(l, &st, &err), SHALE_OK);
    cr_assert_eq(st.keys, 3);
    cr_assert(memtable_get(m, SLICE_LIT("m"), 2, &e));
    cr_assert_eq(e.value.len, big);
    cr_assert_eq(e.expire_at_ms, 7);
    cr_assert_eq(((const char *)e.value.data)[big - 1], 'B');
    cr_assert(memtable_get(m, SLICE_LIT("m"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(e.value.len, big / 2);
    memtable_iter it;
    const char *order[] = {"a", "m", "m", "z"};
    size_t i = 0;
    memtable_iter_init(&it, m);
    for (memtable_iter_seek_first(&it); memtable_iter_valid(&it); memtable_iter_next(&it), i++) {
        memtable_iter_entry(&it, &e);
        cr_assert(slice_is(e.key, order[i]));
    }
    cr_assert_eq(i, 4);
    memtable_iter_destroy(&it);
    memtable_unref(m);
    free(v);
}

/* Abandoning a load frees everything it staged (checked under ASan) and leaves the memtable
 * empty and usable. */
Test(memtable_loader, abandon_frees_everything)
{
    const size_t n = 20000;
    load_op *ops = calloc(n, sizeof *ops);
    memtable *m = new_mt();
    shale_error err = {0};
    char val[300];
    memtable_entry e;

    cr_assert_not_null(ops);
    random_ops(ops, n, 42);
    memtable_loader *l = NULL;
    cr_assert_eq(memtable_loader_new(m, &l, &err), SHALE_OK, "%s", err.msg);
    cr_assert_not_null(l);
    for (size_t i = 0; i < n; i++) {
        op_value(&ops[i], val);
        cr_assert_eq(
            memtable_loader_add(l, ops[i].seq, ops[i].type, slice_make(ops[i].key, ops[i].key_len),
                                slice_make(val, ops[i].val_len), ops[i].expire_at_ms, &err),
            SHALE_OK);
    }
    memtable_loader_free(l);
    cr_assert_eq(memtable_entry_count(m), 0);
    cr_assert_not(memtable_get(m, slice_make(ops[0].key, ops[0].key_len), MEMTABLE_MAX_SEQ, &e));
    put(m, 1, "after", "abandon");
    cr_assert(memtable_get(m, SLICE_LIT("after"), 1, &e));
    memtable_unref(m);
    free(ops);
    tu_assert_no_leaks();
}

/* Out of memory, for real, under an address-space limit: a failed add stages nothing and the
 * loader goes on; a failed finish leaves the memtable empty and usable. */
Test(memtable_loader, nomem)
{
    if (UNDER_SANITIZER) {
        cr_skip_test("address-space limits do not mix with sanitizers");
    }
    const size_t huge = (size_t)1 << 30;
    void *src = mmap(NULL, huge, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    cr_assert_neq(src, MAP_FAILED);
    memtable *m = new_mt();
    shale_error err = {0};
    memtable_load_stats st;
    memtable_entry e;
    struct rlimit old, lim;
    unsigned long pages = 0;
    char val[1000];

    memset(val, 'x', sizeof val);
    memtable_loader *l = NULL;
    cr_assert_eq(memtable_loader_new(m, &l, &err), SHALE_OK, "%s", err.msg);
    cr_assert_not_null(l);
    /* ~200 MB staged in small entries: finish must copy them all into the memtable's arena. */
    const uint64_t n = 200000;
    char kb[17];
    for (uint64_t i = 0; i < n; i++) {
        cr_assert_eq(memtable_loader_add(l, i + 1, MEMTABLE_PUT, tu_key(kb, i * 7919 % n),
                                         slice_make(val, sizeof val), 0, &err),
                     SHALE_OK);
    }

    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    cr_assert_eq(getrlimit(RLIMIT_AS, &old), 0);
    lim = old;
    lim.rlim_cur = pages * 4096ul + ((rlim_t)64 << 20);
    cr_assert_eq(setrlimit(RLIMIT_AS, &lim), 0);
    /* A 1 GiB value cannot be staged; the loader is unchanged. */
    shale_code rc = memtable_loader_add(l, n + 1, MEMTABLE_PUT, SLICE_LIT("huge"),
                                        slice_make(src, huge), 0, &err);
    cr_assert_eq(rc, SHALE_NOMEM, "%s", err.msg);
    cr_assert_eq(
        memtable_loader_add(l, n + 2, MEMTABLE_PUT, SLICE_LIT("last"), SLICE_LIT("v"), 0, &err),
        SHALE_OK, "%s", err.msg);
    rc = memtable_loader_finish(l, &st, &err);
    cr_assert_eq(setrlimit(RLIMIT_AS, &old), 0);
    cr_assert_eq(rc, SHALE_NOMEM, "%s", err.msg);
    cr_assert_eq(st.entries, 0);
    cr_assert_eq(memtable_entry_count(m), 0);
    cr_assert_not(memtable_get(m, SLICE_LIT("last"), MEMTABLE_MAX_SEQ, &e));
    memtable_iter it;
    memtable_iter_init(&it, m);
    memtable_iter_seek_first(&it);
    cr_assert_not(memtable_iter_valid(&it));
    memtable_iter_destroy(&it);
    put(m, 1, "a", "1");
    cr_assert(memtable_get(m, SLICE_LIT("a"), 1, &e));

    /* With room again, a second load on a fresh memtable takes the same entries. */
    memtable *m2 = new_mt();
    cr_assert_eq(memtable_loader_new(m2, &l, &err), SHALE_OK, "%s", err.msg);
    cr_assert_not_null(l);
    for (uint64_t i = 0; i < 1000; i++) {
        cr_assert_eq(memtable_loader_add(l, i + 1, MEMTABLE_PUT, tu_key(kb, i),
                                         slice_make(val, sizeof val), 0, &err),
                     SHALE_OK);
    }
    cr_assert_eq(memtable_loader_finish(l, &st, &err), SHALE_OK);
    cr_assert_eq(st.live_keys, 1000);
    memtable_unref(m2);
    memtable_unref(m);
    munmap(src, huge);
}

/* ---- Point-read index ---- */

/* The answer the skiplist gives: the first entry >= (key, snapshot), if it has that key. */
static bool list_get(memtable *m, shale_slice key, uint64_t snapshot, memtable_entry *out)
{
    memtable_iter it;
    bool found = false;
    memtable_iter_init(&it, m);
    memtable_iter_seek(&it, key, snapshot);
    if (memtable_iter_valid(&it)) {
        memtable_iter_entry(&it, out);
        found = slice_eq(out->key, key);
    }
    memtable_iter_destroy(&it);
    return found;
}

static void assert_index_matches_list(memtable *m, const load_op *ops, size_t n, uint64_t seed)
{
    tu_rng r;
    tu_rng_seed(&r, seed);
    uint64_t max_seq = n ? ops[n - 1].seq : 0;
    for (size_t i = 0; i < n; i++) {
        shale_slice k = slice_make(ops[i].key, ops[i].key_len);
        uint64_t snaps[5] = {ops[i].seq, ops[i].seq - 1, tu_rng_below(&r, max_seq + 2), 0,
                             MEMTABLE_MAX_SEQ};
        for (int s = 0; s < 5; s++) {
            memtable_entry e, f;
            bool by_index = memtable_get(m, k, snaps[s], &e);
            bool by_list = list_get(m, k, snaps[s], &f);
            cr_assert_eq(by_index, by_list, "op %zu snapshot %llu", i,
                         (unsigned long long)snaps[s]);
            if (by_index) {
                cr_assert_eq(e.seq, f.seq, "op %zu snapshot %llu", i, (unsigned long long)snaps[s]);
                cr_assert_eq(e.value.data, f.value.data, "the same node");
                cr_assert_eq(e.type, f.type);
                cr_assert_eq(e.expire_at_ms, f.expire_at_ms);
                cr_assert_leq(e.seq, snaps[s]);
            }
        }
        /* Absent keys next to present ones: one byte more, one byte less, last byte changed. */
        char probe[64];
        memcpy(probe, ops[i].key, ops[i].key_len);
        probe[ops[i].key_len] = (char)tu_rng_next(&r);
        shale_slice variants[3] = {slice_make(probe, ops[i].key_len + 1),
                                   slice_make(probe, ops[i].key_len ? ops[i].key_len - 1 : 0),
                                   slice_make(probe, ops[i].key_len)};
        if (ops[i].key_len > 0) {
            probe[ops[i].key_len - 1] ^= 0x40;
        }
        for (int v = 0; v < 3; v++) {
            memtable_entry e, f;
            bool by_index = memtable_get(m, variants[v], MEMTABLE_MAX_SEQ, &e);
            bool by_list = list_get(m, variants[v], MEMTABLE_MAX_SEQ, &f);
            cr_assert_eq(by_index, by_list, "op %zu variant %d", i, v);
            if (by_index) {
                cr_assert_eq(e.seq, f.seq);
            }
        }
    }
}

Test(memtable_index, gets_equal_list_searches)
{
    const size_t n = 30000;
    load_op *ops = calloc(n, sizeof *ops);
    memtable_load_stats st;

    cr_assert_not_null(ops);
    random_ops(ops, n, 77);
    /* Built by inserts: the index grew from its smallest size many times on the way. */
    memtable *x = build_by_adds(ops, n);
    assert_index_matches_list(x, ops, n, 1);
    /* Built by the loader, then written to: the loaded index grows and takes updates. */
    memtable *y = build_by_loader(ops, n / 2, &st);
    char val[300];
    for (size_t i = n / 2; i < n; i++) {
        op_value(&ops[i], val);
        add(y, ops[i].seq, ops[i].type, slice_make(ops[i].key, ops[i].key_len),
            slice_make(val, ops[i].val_len), ops[i].expire_at_ms);
    }
    assert_index_matches_list(y, ops, n, 2);
    assert_same_gets(x, y, ops, n);
    /* Scans agree too: x's nodes lie at random in memory (read-ahead lanes run), y's mostly in
     * key order (they do not); forward from the start and from seeks. */
    memtable_iter a, b;
    memtable_iter_init(&a, x);
    memtable_iter_init(&b, y);
    for (int round = 0; round < 4; round++) {
        if (round == 0) {
            memtable_iter_seek_first(&a);
            memtable_iter_seek_first(&b);
        } else {
            const load_op *o = &ops[round * 977 % n];
            memtable_iter_seek(&a, slice_make(o->key, o->key_len), o->seq);
            memtable_iter_seek(&b, slice_make(o->key, o->key_len), o->seq);
        }
        size_t steps = 0;
        bool lanes_ran = false;
        while (memtable_iter_valid(&a)) {
            lanes_ran |= a.lanes != 0;
            memtable_entry e, f;
            cr_assert(memtable_iter_valid(&b), "round %d step %zu", round, steps);
            memtable_iter_entry(&a, &e);
            memtable_iter_entry(&b, &f);
            cr_assert(slice_eq(e.key, f.key) && e.seq == f.seq, "round %d step %zu", round, steps);
            memtable_iter_next(&a);
            memtable_iter_next(&b);
            steps++;
        }
        cr_assert_not(memtable_iter_valid(&b));
        cr_assert_gt(steps, 0);
        /* x's layout is random: long scans over it run read-ahead (a performance feature, but
         * one that would otherwise fail silently). */
        cr_assert(steps < 1000 || lanes_ran, "round %d: read-ahead never started", round);
    }
    memtable_iter_destroy(&a);
    memtable_iter_destroy(&b);
    memtable_unref(x);
    memtable_unref(y);
    free(ops);
}

/* Many versions of few keys: gets at old snapshots walk from the newest version down. */
Test(memtable_index, deep_version_chains)
{
    memtable *m = new_mt();
    memtable_entry e;
    char val[16];

    for (uint64_t s = 1; s <= 3000; s++) {
        snprintf(val, sizeof val, "%llu", (unsigned long long)s);
        add(m, s, s % 7 == 0 ? MEMTABLE_DEL : MEMTABLE_PUT,
            s % 3 == 0 ? SLICE_LIT("b") : SLICE_LIT("a"), slice_cstr(val), 0);
    }
    for (uint64_t snap = 0; snap <= 3001; snap++) {
        memtable_entry f;
        for (int k = 0; k < 2; k++) {
            shale_slice key = k ? SLICE_LIT("b") : SLICE_LIT("a");
            bool by_index = memtable_get(m, key, snap, &e);
            cr_assert_eq(by_index, list_get(m, key, snap, &f), "snapshot %llu",
                         (unsigned long long)snap);
            if (by_index) {
                cr_assert_eq(e.seq, f.seq);
            }
        }
    }
    cr_assert(memtable_get(m, SLICE_LIT("a"), 2, &e));
    cr_assert_eq(e.seq, 2);
    cr_assert_not(memtable_get(m, SLICE_LIT("b"), 2, &e));
    cr_assert_not(memtable_get(m, SLICE_LIT("c"), MEMTABLE_MAX_SEQ, &e));
    memtable_unref(m);
}

/* memtable_memory_bytes counts the index (all its tables), and the index costs what memtable.c
 * says: 8-byte slots, at most 3/4 full, old tables together no bigger than the current one. */
Test(memtable_index, memory_accounting)
{
    memtable *m = new_mt();
    char kb[17];
    const uint64_t keys = 50000;

    cr_assert_eq(memtable_index_bytes(m), 0, "no index before the first add");
    for (uint64_t i = 0; i < 2 * keys; i++) {
        add(m, i + 1, MEMTABLE_PUT, tu_key(kb, i % keys), SLICE_LIT("v"), 0);
    }
    size_t idx = memtable_index_bytes(m);
    cr_assert_geq(idx, keys * 8 * 4 / 3, "at most 3/4 full");
    cr_assert_leq(idx, keys * 8 * 4 / 3 * 2 * 2 + 4096, "current <= 2x minimum, old <= current");
    cr_assert_geq(memtable_memory_bytes(m), idx + 2 * keys * 32);

    /* A loaded memtable's index is sized for its keys, with no old tables. */
    memtable *l = new_mt();
    memtable_loader *ld = NULL;
    memtable_load_stats st;
    shale_error err = {0};
    cr_assert_eq(memtable_loader_new(l, &ld, &err), SHALE_OK);
    for (uint64_t i = 0; i < 2 * keys; i++) {
        cr_assert_eq(memtable_loader_add(ld, i + 1, MEMTABLE_PUT, tu_key(kb, i % keys),
                                         SLICE_LIT("v"), 0, &err),
                     SHALE_OK);
    }
    cr_assert_eq(memtable_loader_finish(ld, &st, &err), SHALE_OK);
    size_t lidx = memtable_index_bytes(l);
    cr_assert_geq(lidx, keys * 8 * 4 / 3);
    cr_assert_leq(lidx, keys * 8 * 4 / 3 * 2 + 4096);
    cr_assert_leq(lidx, idx);
    memtable_unref(l);
    memtable_unref(m);
}

/* skiplist_seek_level (where read-ahead starts) finds the first node >= the target among those
 * on the given level, as a walk of that level finds it. */
Test(skiplist, seek_level_matches_a_walk)
{
    const size_t n = 5000;
    arena a;
    skiplist sl;
    tu_rng r;
    char key[40];

    arena_init(&a);
    cr_assert_eq(skiplist_init(&sl, &a, NULL), SHALE_OK);
    tu_rng_seed(&r, 31);
    for (size_t i = 0; i < n; i++) {
        size_t len = random_key(&r, key);
        shale_code rc =
            skiplist_insert(&sl, i + 1, MEMTABLE_PUT, key, len, "", 0, 0, NULL, NULL, NULL);
        cr_assert(rc == SHALE_OK || rc == SHALE_INVALID); /* a repeated key at an older seq */
    }
    int height = atomic_load(&sl.height);
    for (int probe = 0; probe < 300; probe++) {
        size_t len = random_key(&r, key);
        uint64_t seq = tu_rng_below(&r, n + 2);
        for (int level = 0; level < SKIPLIST_MAX_HEIGHT; level++) {
            const skiplist_node *got = skiplist_seek_level(&sl, key, len, seq, level);
            const skiplist_node *want = NULL;
            if (level < height) {
                for (const skiplist_node *x = skiplist_next_at(sl.head, level); x != NULL;
                     x = skiplist_next_at(x, level)) {
                    int c = slice_cmp(slice_make(skiplist_node_key(x), x->key_len),
                                      slice_make(key, len));
                    if (c > 0 || (c == 0 && skiplist_node_seq(x) <= seq)) {
                        want = x;
                        break;
                    }
                }
            }
            cr_assert_eq(got, want, "probe %d level %d", probe, level);
        }
    }
    arena_destroy(&a);
}

/* ---- The tail fast path (skiplist.last) ---- */

/* Mostly ascending loads (each new key above every key so far takes the fast path), mixed with
 * newer versions of the last key, keys below the tail, and an empty key first: the list is the
 * very one the loader builds, and every get agrees. */
Test(skiplist, ascending_appends_build_the_searched_list)
{
    enum { N = 6000 };
    load_op *ops = calloc(N, sizeof *ops);
    tu_rng r;
    uint64_t seq = 0, next_key = 1000;
    cr_assert_not_null(ops);
    tu_rng_seed(&r, 77);
    for (size_t i = 0; i < N; i++) {
        load_op *o = &ops[i];
        unsigned pick = (unsigned)tu_rng_below(&r, 10);
        if (i == 0) {
            o->key_len = 0; /* the empty key: below everything that follows */
        } else if (pick == 0 && i > 1) {
            *o = ops[i - 1]; /* a newer version of the tail's key: not the fast path */
        } else if (pick == 1) {
            /* Below the tail: a search. */
            o->key_len = (size_t)snprintf(o->key, sizeof o->key, "%016llu",
                                          (unsigned long long)tu_rng_below(&r, next_key));
        } else {
            next_key += 1 + tu_rng_below(&r, 3);
            o->key_len =
                (size_t)snprintf(o->key, sizeof o->key, "%016llu", (unsigned long long)next_key);
            if (pick == 2) {
                /* Longer than the prefix, and a proper extension of the previous tail. */
                memset(o->key + o->key_len, 'x', 20);
                o->key_len += 20;
            }
        }
        seq += 1 + tu_rng_below(&r, 2);
        o->seq = seq;
        o->type = tu_rng_below(&r, 5) == 0 ? MEMTABLE_DEL : MEMTABLE_PUT;
        o->expire_at_ms = 0;
        o->val_len = tu_rng_below(&r, 30);
    }
    check_load(ops, N);
    memtable *m = build_by_adds(ops, N);
    assert_index_matches_list(m, ops, N, 5);
    memtable_unref(m);
    free(ops);
}

/* The fast path still reports the previous version and refuses a seq that is not newer, for the
 * tail's own key. */
Test(skiplist, tail_key_versions_and_bad_seq)
{
    memtable *m = new_mt();
    shale_error err = {0};
    bool found = true;
    memtable_entry prev;

    cr_assert_eq(
        memtable_add(m, 5, MEMTABLE_PUT, SLICE_LIT("a"), SLICE_LIT("1"), 0, &found, &prev, &err),
        SHALE_OK);
    cr_assert(!found);
    cr_assert_eq(
        memtable_add(m, 6, MEMTABLE_PUT, SLICE_LIT("b"), SLICE_LIT("2"), 0, &found, &prev, &err),
        SHALE_OK);
    cr_assert(!found, "a key above the tail has no older version");
    cr_assert_eq(
        memtable_add(m, 7, MEMTABLE_PUT, SLICE_LIT("b"), SLICE_LIT("3"), 0, &found, &prev, &err),
        SHALE_OK);
    cr_assert(found);
    cr_assert_eq(prev.seq, 6);
    cr_assert(slice_is(prev.value, "2"));
    /* Same seq, and an older seq, for the tail's key: refused, nothing added. */
    cr_assert_eq(
        memtable_add(m, 7, MEMTABLE_PUT, SLICE_LIT("b"), SLICE_LIT("x"), 0, NULL, NULL, &err),
        SHALE_INVALID);
    cr_assert_eq(
        memtable_add(m, 4, MEMTABLE_PUT, SLICE_LIT("b"), SLICE_LIT("x"), 0, NULL, NULL, &err),
        SHALE_INVALID);
    cr_assert_eq(memtable_entry_count(m), 3);
    /* Appends after the refusals land at the end, in order. */
    put(m, 8, "c", "4");
    memtable_entry e;
    cr_assert(memtable_get(m, SLICE_LIT("c"), MEMTABLE_MAX_SEQ, &e));
    cr_assert_eq(skiplist_last(memtable_skiplist(m)),
                 skiplist_next(skiplist_next(skiplist_next(skiplist_first(memtable_skiplist(m))))));
    memtable_unref(m);
}

/* memtable_prefetch is only a hint: a hint for another key, a stale hint, or a long key change
 * nothing about what adds do. */
Test(memtable, prefetch_hints_change_nothing)
{
    memtable *m = new_mt();
    char kb[17], vb[17], long_key[100];
    memset(long_key, 'q', sizeof long_key);
    for (uint64_t i = 0; i < 3000; i++) {
        memtable_prefetch(m, tu_key(kb, (i * 7) % 1000));
        if (i % 3 == 0) {
            memtable_prefetch(m, tu_key(kb, i + 100000)); /* never added */
        }
        if (i % 5 == 0) {
            memtable_prefetch(m, slice_make(long_key, sizeof long_key));
        }
        add(m, i + 1, MEMTABLE_PUT, tu_key(kb, (i * 7) % 1000), tu_key(vb, i), 0);
    }
    for (uint64_t k = 0; k < 1000; k++) {
        memtable_entry e;
        cr_assert(memtable_get(m, tu_key(kb, k), MEMTABLE_MAX_SEQ, &e), "key %llu",
                  (unsigned long long)k);
        /* The newest i with i * 7 % 1000 == k, i < 3000. */
        uint64_t newest = 0;
        for (uint64_t i = 0; i < 3000; i++) {
            if ((i * 7) % 1000 == k) {
                newest = i;
            }
        }
        cr_assert_eq(e.seq, newest + 1);
    }
    memtable_unref(m);
}

/* memtable_warm is only a hint too: batches warmed before their adds (on an empty list, keys
 * past the tail, long keys that share their first 16 bytes, repeats within a batch, keys never
 * added) build exactly the list that the same adds build unwarmed. */
Test(memtable, warm_changes_nothing)
{
    memtable *warm = new_mt(), *plain = new_mt();
    tu_rng rng;
    tu_rng_seed(&rng, 99);
    char keys[40][48];
    uint64_t seq = 1;
    for (int batch = 0; batch < 400; batch++) {
        size_t n = 1 + tu_rng_below(&rng, 40);
        shale_slice ks[40];
        for (size_t i = 0; i < n; i++) {
            uint64_t k = tu_rng_below(&rng, 3000);
            switch (tu_rng_below(&rng, 4)) {
            case 0: /* past every key so far */
                snprintf(keys[i], sizeof keys[i], "z%06d%06zu", batch, i);
                break;
            case 1: /* a 16-byte shared prefix */
                snprintf(keys[i], sizeof keys[i], "shared-prefix-16%llu", (unsigned long long)k);
                break;
            case 2: /* a repeat of the batch's first key */
                snprintf(keys[i], sizeof keys[i], "%s", keys[0]);
                break;
            default:
                snprintf(keys[i], sizeof keys[i], "k%llu", (unsigned long long)k);
            }
            ks[i] = tu_str(keys[i]);
        }
        memtable_warm(warm, ks, n);
        shale_slice absent = tu_str("never-added");
        memtable_warm(warm, &absent, 1);
        for (size_t i = 0; i < n; i++, seq++) {
            add(warm, seq, MEMTABLE_PUT, ks[i], ks[i], 0);
            add(plain, seq, MEMTABLE_PUT, ks[i], ks[i], 0);
        }
    }
    cr_assert_eq(memtable_entry_count(warm), memtable_entry_count(plain));
    const skiplist_node *a = skiplist_first(memtable_skiplist(warm));
    const skiplist_node *b = skiplist_first(memtable_skiplist(plain));
    size_t n = 0;
    for (; a != NULL && b != NULL; a = skiplist_next(a), b = skiplist_next(b), n++) {
        cr_assert_eq(a->key_len, b->key_len);
        cr_assert(memcmp(skiplist_node_key(a), skiplist_node_key(b), a->key_len) == 0);
        cr_assert_eq(skiplist_node_seq(a), skiplist_node_seq(b));
    }
    cr_assert(a == NULL && b == NULL, "the lists differ in length");
    cr_assert_eq(n, memtable_entry_count(plain));
    memtable_unref(warm);
    memtable_unref(plain);
}

/* ---- Recycling ---- */

static void recycled_round(memtable_recycler *r, size_t block, unsigned round, size_t keys)
{
    memtable *m = memtable_new_recycled(block, r);
    char kb[17], vb[64];
    cr_assert_not_null(m);
    cr_assert_eq(memtable_recycler_bytes(r), 0, "a new memtable takes everything");
    tu_rng rng;
    tu_rng_seed(&rng, round);
    /* Half ascending, half random keys, values naming the round: stale bytes from an earlier
     * round's memtable must never show through. */
    for (size_t i = 0; i < keys; i++) {
        uint64_t k = i % 2 ? i : tu_rng_below(&rng, keys);
        int n = snprintf(vb, sizeof vb, "round %u key %llu seq %zu", round, (unsigned long long)k,
                         i + 1);
        add(m, i + 1, MEMTABLE_PUT, tu_key(kb, k), slice_make(vb, (size_t)n), 0);
    }
    size_t found = 0;
    memtable_iter it;
    memtable_iter_init(&it, m);
    uint64_t last_seq = 0;
    char last_key[17] = {0};
    for (memtable_iter_seek_first(&it); memtable_iter_valid(&it); memtable_iter_next(&it)) {
        memtable_entry e;
        memtable_iter_entry(&it, &e);
        char want[64];
        int n = snprintf(want, sizeof want, "round %u key %.*s", round, 0, "");
        cr_assert(e.value.len > (size_t)n && memcmp(e.value.data, want, (size_t)n) == 0,
                  "round %u: a value from elsewhere", round);
        cr_assert(found == 0 || memcmp(last_key, e.key.data, 16) < 0 ||
                      (memcmp(last_key, e.key.data, 16) == 0 && e.seq < last_seq),
                  "order");
        memcpy(last_key, e.key.data, 16);
        last_seq = e.seq;
        memtable_entry g;
        cr_assert(memtable_get(m, e.key, e.seq, &g));
        cr_assert_eq(g.seq, e.seq);
        found++;
    }
    memtable_iter_destroy(&it);
    cr_assert_eq(found, keys);
    memtable_unref(m);
}

/* Many memtables in a row from one recycler: each correct, and from the second on built from
 * the first's memory (no more than it held, and the recycler never holds more than one). */
Test(memtable_recycler, many_switches_stay_correct)
{
    memtable_recycler *r = memtable_recycler_new();
    const size_t block = 64 << 10, keys = 4000;
    cr_assert_not_null(r);
    cr_assert_eq(memtable_recycler_bytes(r), 0);
    recycled_round(r, block, 0, keys);
    size_t held = memtable_recycler_bytes(r);
    cr_assert_gt(held, keys * 40, "the dead memtable's blocks and index are kept");
    for (unsigned round = 1; round < 12; round++) {
        recycled_round(r, block, round, keys);
        cr_assert_gt(memtable_recycler_bytes(r), 0);
        cr_assert_leq(memtable_recycler_bytes(r), held + 2 * block,
                      "round %u: the recycler keeps one memtable's memory", round);
    }
    memtable_recycler_unref(r);
}

/* Accounting: recycled blocks count as used only when used, so a recycled memtable reports the
 * same arena memory as a fresh one with the same contents; what is not used yet is spare. */
Test(memtable_recycler, accounting_matches_a_fresh_memtable)
{
    memtable_recycler *r = memtable_recycler_new();
    const size_t block = 64 << 10;
    char kb[17];
    cr_assert_not_null(r);

    memtable *first = memtable_new_recycled(block, r);
    cr_assert_not_null(first);
    for (uint64_t i = 0; i < 5000; i++) {
        add(first, i + 1, MEMTABLE_PUT, tu_key(kb, i), SLICE_LIT("0123456789abcdef"), 0);
    }
    size_t first_arena = memtable_memory_bytes(first) - memtable_index_bytes(first);
    size_t first_index = memtable_index_bytes(first);
    memtable_unref(first);
    size_t held = memtable_recycler_bytes(r);
    cr_assert_geq(held, first_arena, "every standard block kept");

    memtable *fresh = memtable_new_sized(block);
    memtable *reused = memtable_new_recycled(block, r);
    cr_assert_not_null(fresh);
    cr_assert_not_null(reused);
    cr_assert_eq(memtable_spare_bytes(fresh), 0);
    size_t spare0 = memtable_spare_bytes(reused);
    cr_assert_gt(spare0, 0);
    cr_assert_eq(memtable_index_bytes(reused), held - spare0 - block,
                 "the recycled index counts at once (the list head took one block)");
    cr_assert_leq(memtable_index_bytes(reused), first_index, "only the newest table is kept");
    for (uint64_t i = 0; i < 1000; i++) {
        add(fresh, i + 1, MEMTABLE_PUT, tu_key(kb, i), SLICE_LIT("0123456789abcdef"), 0);
        add(reused, i + 1, MEMTABLE_PUT, tu_key(kb, i), SLICE_LIT("0123456789abcdef"), 0);
        cr_assert_eq(memtable_memory_bytes(fresh) - memtable_index_bytes(fresh),
                     memtable_memory_bytes(reused) - memtable_index_bytes(reused),
                     "arena bytes after %llu adds", (unsigned long long)i);
        cr_assert_eq(memtable_memory_bytes(reused) - memtable_index_bytes(reused) +
                         memtable_spare_bytes(reused),
                     spare0 + block, "held = used + spare, constant while spares last");
    }
    cr_assert_lt(memtable_spare_bytes(reused), spare0);
    memtable_unref(fresh);
    memtable_unref(reused);
    memtable_recycler_unref(r);
}

/* Not accepting: the recycler frees what it held and keeps nothing, and memtables made then are
 * ordinary. Accepting again: it keeps the next dead memtable. Also: memtables outliving the
 * recycler's owner (iterators past close) free everything themselves (ASan checks leaks). */
Test(memtable_recycler, accepting_and_lifetimes)
{
    memtable_recycler *r = memtable_recycler_new();
    char kb[17];
    cr_assert_not_null(r);
    recycled_round(r, 32 << 10, 1, 1000);
    cr_assert_gt(memtable_recycler_bytes(r), 0);
    memtable_recycler_set_accepting(r, false);
    cr_assert_eq(memtable_recycler_bytes(r), 0, "turned off: holds nothing");
    recycled_round(r, 32 << 10, 2, 1000);
    cr_assert_eq(memtable_recycler_bytes(r), 0, "not accepting: the dead memtable is freed");

    memtable_recycler_set_accepting(r, true);
    memtable *a = memtable_new_recycled(32 << 10, r);
    memtable *b = memtable_new_recycled(32 << 10, r);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    for (uint64_t i = 0; i < 500; i++) {
        add(a, i + 1, MEMTABLE_PUT, tu_key(kb, i), SLICE_LIT("a"), 0);
        add(b, i + 1, MEMTABLE_PUT, tu_key(kb, i), SLICE_LIT("bb"), 0);
    }
    memtable_unref(a);
    size_t held = memtable_recycler_bytes(r);
    cr_assert_gt(held, 0);
    memtable_ref(b);
    memtable_unref(b);
    cr_assert_eq(memtable_recycler_bytes(r), held, "b still referenced");
    /* The owner lets go while b lives: b keeps the recycler alive and frees into it... */
    memtable_recycler_unref(r);
    memtable_entry e;
    cr_assert(memtable_get(b, tu_key(kb, 7), MEMTABLE_MAX_SEQ, &e));
    cr_assert(slice_is(e.value, "bb"));
    memtable_unref(b); /* ...which is full, so b is freed; then the recycler goes too */
}

/* Through a database: many memtable switches with recycling, with reads racing none of it. The
 * memory the memtables hold (stats.memory_bytes, which counts recycled memory not yet used)
 * stays within the two write buffers the budget allows (plus a block of rounding each), and
 * every write reads back, before and after reopening. */
Test(memtable_recycler, database_stays_in_budget)
{
    char *dir = tu_tmpdir("recycle");
    char *path = tu_path(dir, "db");
    const uint64_t wb = 128 << 10, keys = 12000;
    shale_options o = {.create_if_missing = true, .max_memory_mb = 4, .write_buffer_bytes = wb};
    shale_db *db = NULL;
    shale_error err = {0};
    char kb[17], vb[100];
    cr_assert_eq(shale_open(path, &o, &db, &err), SHALE_OK, "%s", err.msg);
    uint64_t most = 0;
    for (uint64_t i = 0; i < keys; i++) {
        memset(vb, 'a' + (int)(i % 26), sizeof vb);
        cr_assert_eq(shale_put(db, NULL, tu_key(kb, i), slice_make(vb, sizeof vb), &err), SHALE_OK,
                     "%s", err.msg);
        if (i % 100 == 0) {
            shale_stats st;
            cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK);
            most = st.memory_bytes > most ? st.memory_bytes : most;
            cr_assert_leq(st.memory_bytes, 2 * (wb + wb / 16) + 16384, "at %llu: %llu bytes",
                          (unsigned long long)i, (unsigned long long)st.memory_bytes);
        }
    }
    shale_stats st;
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK);
    cr_assert_geq(st.flushes, 5, "many switches");
    cr_assert_gt(most, wb, "the recycled memory is counted");
    for (int pass = 0; pass < 2; pass++) {
        shale_buf v = {0};
        for (uint64_t i = 0; i < keys; i++) {
            cr_assert_eq(shale_get(db, NULL, tu_key(kb, i), &v, &err), SHALE_OK, "key %llu: %s",
                         (unsigned long long)i, err.msg);
            cr_assert_eq(v.len, sizeof vb);
            cr_assert_eq(((char *)v.data)[0], 'a' + (int)(i % 26));
            cr_assert_eq(((char *)v.data)[sizeof vb - 1], 'a' + (int)(i % 26));
        }
        shale_buf_free(&v);
        cr_assert_eq(shale_close(db, &err), SHALE_OK, "%s", err.msg);
        db = NULL;
        if (pass == 0) {
            cr_assert_eq(shale_open(path, &o, &db, &err), SHALE_OK, "%s", err.msg);
        }
    }
    tu_rm_rf(dir);
    free(path);
    free(dir);
}

/* Prefill: only into an accepting, empty recycler, never more than asked (in whole blocks), and
 * the next memtable runs on those blocks. */
Test(memtable_recycler, prefill)
{
    memtable_recycler *r = memtable_recycler_new();
    const size_t block = 64 << 10;
    char kb[17];
    cr_assert_not_null(r);
    memtable_recycler_prefill(r, block, 10 * block + block / 2);
    cr_assert_eq(memtable_recycler_bytes(r), 10 * block, "whole blocks, never above the ask");
    memtable_recycler_prefill(r, block, 10 * block);
    cr_assert_eq(memtable_recycler_bytes(r), 10 * block, "not empty: nothing added");

    memtable *m = memtable_new_recycled(block, r);
    cr_assert_not_null(m);
    cr_assert_eq(memtable_recycler_bytes(r), 0);
    cr_assert_eq(memtable_spare_bytes(m), 9 * block, "the list head took one");
    for (uint64_t i = 0; i < 3000; i++) {
        add(m, i + 1, MEMTABLE_PUT, tu_key(kb, i), SLICE_LIT("prefilled"), 0);
    }
    cr_assert_lt(memtable_spare_bytes(m), 9 * block);
    memtable_entry e;
    cr_assert(memtable_get(m, tu_key(kb, 2999), MEMTABLE_MAX_SEQ, &e));
    cr_assert(slice_is(e.value, "prefilled"));

    memtable_recycler_set_accepting(r, false);
    memtable_recycler_prefill(r, block, 4 * block);
    cr_assert_eq(memtable_recycler_bytes(r), 0, "not accepting: nothing added");
    /* A block size below the arena minimum is rounded up as the arena does, and still never
     * exceeds the ask. */
    memtable_recycler_set_accepting(r, true);
    memtable_recycler_prefill(r, 1024, 3 * ARENA_MIN_BLOCK_BYTES - 1);
    cr_assert_eq(memtable_recycler_bytes(r), 2 * ARENA_MIN_BLOCK_BYTES);
    memtable_unref(m); /* the recycler is not empty: m's memory is freed */
    cr_assert_eq(memtable_recycler_bytes(r), 2 * ARENA_MIN_BLOCK_BYTES);
    memtable_recycler_unref(r); /* frees the prefilled blocks */
}
