/*
 * model: a model-based randomized test of the whole engine, through the public API only (plus
 * env/env.h for a fake wall clock).
 *
 * Each run draws a fixed key space of binary keys (random lengths, a small alphabet that includes
 * 0x00 and 0xff, so keys share prefixes and some are prefixes of others), then performs thousands
 * of random steps chosen by a seeded PRNG: puts, deletes, TTL puts, batches (with repeated keys:
 * the later operation wins), gets, exists, get_info, multi_gets, iterations (forward, reverse and
 * a random walk of seeks and direction changes, with random lower/upper bounds and prefixes),
 * snapshots (taken at random; a copy of the model is kept with each, and reads through it are
 * checked against that copy later, after more writes, flushes, compactions), clock moves (TTL
 * deadlines pass), shale_flush, shale_compact and reopens. Small budgets (64 KiB write buffer and
 * tables, level-0 trigger 2) make the engine flush and compact on its own as well.
 *
 * The model is an array indexed by key rank (the key space is sorted once), holding for each key
 * the id of the write whose value it holds (0 = absent) and its deadline. Values are a function of
 * (seed, write id, key), so they are regenerated to check a read byte for byte. Every step is
 * checked at once; the whole database (every key, and a full scan both ways) is compared after
 * every flush, compaction and reopen and every few hundred steps.
 *
 * Reproduce a failure with the seed printed in its message: SHALE_MODEL_SEED=<seed> runs every
 * variant with that seed, SHALE_MODEL_STEPS=<n> changes the number of steps.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale.h"

#include "env/env.h"
#include "testutil.h"

#define NKEYS      1200u
#define KEY_MAX    12u
#define MAX_SNAPS  4u
#define VALUE_CAP  8192u
#define MAX_BATCH  8u
#define FULL_CHECK 400u /* steps between two whole-database comparisons */
#define T0         1700000000000ull

/* The fake wall clock (each Criterion test runs in its own process). */
static _Atomic uint64_t g_now = T0;

static uint64_t fake_now_ms(const shale_env *env)
{
    (void)env;
    return atomic_load(&g_now);
}

typedef struct mkey {
    unsigned char b[KEY_MAX];
    uint8_t len;
} mkey;

/* One key's model state: the id of the write whose value it holds (0 = absent, deleted) and
 * its deadline (0 = never). */
typedef struct kstate {
    uint64_t id;
    uint64_t expire_at;
} kstate;

typedef struct msnap {
    shale_snapshot *snap;
    kstate *state; /* the model when the snapshot was taken */
    uint64_t seq;
    uint64_t step;
} msnap;

typedef struct variant {
    const char *name;
    uint64_t seed;
    uint64_t steps;
    shale_durability durability;
    shale_compression compression;
    uint32_t ttl_sweep_ms;
    uint32_t l0_trigger;
    uint32_t compaction_threads;
    unsigned big_values; /* percent of values of 2..6 KiB */
} variant;

typedef struct mt {
    variant v;
    uint64_t step;
    const char *opname;
    tu_rng rng;
    mkey keys[NKEYS];
    kstate state[NKEYS];
    uint64_t next_id;
    msnap snaps[MAX_SNAPS];
    size_t nsnaps;
    uint64_t last_snap_seq;
    char *root;
    char *path;
    shale_env env;
    shale_options opts;
    shale_db *db;
    unsigned char *vbuf;
    shale_buf got;
    /* what the run exercised */
    uint64_t n_put, n_del, n_ttl, n_batch, n_get, n_multi, n_iter, n_snapread, n_flush, n_compact,
        n_reopen, n_expired_reads;
    uint64_t max_tables, max_deep_tables;
    /* stats.flushes / compactions summed over the sessions, and those shale_flush and
     * shale_compact did (the rest ran on their own) */
    uint64_t flushes_total, compactions_total, flushes_manual, compactions_manual;
} mt;

/* ---- deterministic data -------------------------------------------------------------------- */

static int key_cmp(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int mkey_cmp(const void *a, const void *b)
{
    const mkey *x = a, *y = b;
    return key_cmp(x->b, x->len, y->b, y->len);
}

static const unsigned char alphabet[] = {0x00, 'a', 'b', 'c', 0x80, 0xff};

static void random_bytes(tu_rng *r, unsigned char *out, uint8_t *len)
{
    /* Lengths 1..12, most 3..8: short keys collide on prefixes often. */
    uint8_t n =
        (uint8_t)(tu_rng_below(r, 4) == 0 ? 1 + tu_rng_below(r, KEY_MAX) : 3 + tu_rng_below(r, 6));
    for (uint8_t i = 0; i < n; i++) {
        out[i] = alphabet[tu_rng_below(r, sizeof alphabet)];
    }
    *len = n;
}

/* NKEYS distinct random keys, sorted: a key's rank is its model index. */
static void make_keys(mt *m)
{
    size_t n = 0;
    while (n < NKEYS) {
        while (n < NKEYS) {
            random_bytes(&m->rng, m->keys[n].b, &m->keys[n].len);
            n++;
        }
        qsort(m->keys, n, sizeof m->keys[0], mkey_cmp);
        size_t w = 1;
        for (size_t i = 1; i < n; i++) {
            if (mkey_cmp(&m->keys[i], &m->keys[w - 1]) != 0) {
                m->keys[w++] = m->keys[i];
            }
        }
        n = w;
    }
}

static shale_slice kslice(const mt *m, size_t k)
{
    return (shale_slice){m->keys[k].b, m->keys[k].len};
}

/* The value write `id` stores under key k. */
static size_t make_value(const mt *m, unsigned char *buf, uint64_t id, size_t k)
{
    uint64_t h = tu_mix64(m->v.seed ^ tu_mix64(id * 0x9e3779b97f4a7c15ull + k));
    uint64_t pick = h % 100;
    size_t len;

    if (pick < 2) {
        return 0; /* empty values are values */
    } else if (pick < 2 + m->v.big_values) {
        len = 2000 + (size_t)(h >> 32) % 4000;
    } else if (pick < 22 + m->v.big_values) {
        len = 200 + (size_t)(h >> 32) % 1000;
    } else {
        len = 1 + (size_t)(h >> 32) % 120;
    }
    int n = snprintf((char *)buf, 32, "%" PRIu64 ":%zu|", id, k);
    if (len < (size_t)n) {
        len = (size_t)n;
    }
    for (size_t i = (size_t)n; i < len; i++) {
        buf[i] = (unsigned char)(h >> ((i % 7) * 8)) ^ (unsigned char)i;
    }
    return len;
}

static bool visible(kstate s)
{
    return s.id != 0 && (s.expire_at == 0 || s.expire_at > atomic_load(&g_now));
}

#define CTX_FMT "%s seed %" PRIu64 " step %" PRIu64 " (%s)"
#define CTX(m)  (m)->v.name, (m)->v.seed, (m)->step, (m)->opname

/* ---- checks --------------------------------------------------------------------------------- */

static void check_value(mt *m, size_t k, kstate want, const void *data, size_t len, const char *how)
{
    size_t wl = make_value(m, m->vbuf, want.id, k);
    cr_assert(wl == len && (len == 0 || memcmp(data, m->vbuf, len) == 0),
              CTX_FMT ": %s of key #%zu: want the value of write %" PRIu64
                      " (%zu bytes), got %zu bytes '%.20s'",
              CTX(m), how, k, want.id, wl, len, len ? (const char *)data : "");
}

/* Point reads of key k through get, get_info, exists (and sometimes multi_get) agree with
 * `want`, read at `snap` (NULL = now). */
static void check_key(mt *m, size_t k, kstate want, const shale_snapshot *snap)
{
    shale_read_opts ro = {.snapshot = snap};
    shale_error err = {0};
    bool vis = visible(want);
    shale_code rc = shale_get(m->db, &ro, kslice(m, k), &m->got, &err);

    if (!vis && want.id != 0) {
        m->n_expired_reads++;
    }
    if (vis) {
        cr_assert_eq(rc, SHALE_OK, CTX_FMT ": get key #%zu (write %" PRIu64 "): %s (%s)", CTX(m), k,
                     want.id, shale_strerror(rc), err.msg);
        check_value(m, k, want, m->got.data, m->got.len, "get");
    } else {
        cr_assert_eq(rc, SHALE_NOT_FOUND,
                     CTX_FMT ": get key #%zu: want NOT_FOUND (%s), got %s (%zu bytes) %s", CTX(m),
                     k, want.id ? "expired" : "absent", shale_strerror(rc), m->got.len, err.msg);
        cr_assert_eq(m->got.len, 0, CTX_FMT ": NOT_FOUND left %zu bytes", CTX(m), m->got.len);
    }
    switch (tu_rng_below(&m->rng, 3)) {
    case 0: {
        bool ex = !vis;
        rc = shale_exists(m->db, &ro, kslice(m, k), &ex, &err);
        cr_assert_eq(rc, SHALE_OK, CTX_FMT ": exists: %s", CTX(m), err.msg);
        cr_assert_eq(ex, vis, CTX_FMT ": exists key #%zu says %d", CTX(m), k, ex);
        break;
    }
    case 1: {
        shale_entry_info info = {0};
        rc = shale_get_info(m->db, &ro, kslice(m, k), NULL, &info, &err);
        cr_assert_eq(rc, vis ? SHALE_OK : SHALE_NOT_FOUND, CTX_FMT ": get_info key #%zu: %s (%s)",
                     CTX(m), k, shale_strerror(rc), err.msg);
        if (vis) {
            cr_assert_eq(info.expire_at_ms, want.expire_at,
                         CTX_FMT ": get_info key #%zu: deadline %" PRIu64 ", want %" PRIu64, CTX(m),
                         k, info.expire_at_ms, want.expire_at);
            cr_assert_gt(info.seq, 0, CTX_FMT ": get_info seq 0", CTX(m));
            if (snap != NULL) {
                cr_assert_leq(info.seq, shale_snapshot_seq(snap),
                              CTX_FMT ": a snapshot read returned seq %" PRIu64 " > %" PRIu64,
                              CTX(m), info.seq, shale_snapshot_seq(snap));
            }
        }
        break;
    }
    default:
        break;
    }
}

static void check_multi(mt *m, const kstate *st, const shale_snapshot *snap)
{
    size_t n = 1 + (size_t)tu_rng_below(&m->rng, 8);
    shale_slice keys[8];
    size_t idx[8];
    shale_buf vals[8];
    shale_code codes[8];
    shale_read_opts ro = {.snapshot = snap};
    shale_error err = {0};

    memset(vals, 0, sizeof vals);
    for (size_t i = 0; i < n; i++) {
        idx[i] = (size_t)tu_rng_below(&m->rng, NKEYS);
        keys[i] = kslice(m, idx[i]);
    }
    shale_code rc = shale_multi_get(m->db, &ro, n, keys, vals, codes, &err);
    cr_assert_eq(rc, SHALE_OK, CTX_FMT ": multi_get: %s (%s)", CTX(m), shale_strerror(rc), err.msg);
    for (size_t i = 0; i < n; i++) {
        bool vis = visible(st[idx[i]]);
        cr_assert_eq(codes[i], vis ? SHALE_OK : SHALE_NOT_FOUND,
                     CTX_FMT ": multi_get key #%zu: %s, want %s", CTX(m), idx[i],
                     shale_strerror(codes[i]), vis ? "a value" : "NOT_FOUND");
        if (vis) {
            check_value(m, idx[i], st[idx[i]], vals[i].data, vals[i].len, "multi_get");
        }
        shale_buf_free(&vals[i]);
    }
    m->n_multi++;
}

/* ---- iteration ------------------------------------------------------------------------------ */

typedef struct range {
    unsigned char lo[KEY_MAX + 1], hi[KEY_MAX + 1], pre[4];
    uint8_t lo_len, hi_len, pre_len; /* 0 = not set */
} range;

/* A random seek target or bound: an existing key, a key with a byte more or less, or random. */
static void random_target(mt *m, unsigned char *out, uint8_t *len)
{
    const mkey *k = &m->keys[tu_rng_below(&m->rng, NKEYS)];
    switch (tu_rng_below(&m->rng, 4)) {
    case 0:
    case 1:
        memcpy(out, k->b, k->len);
        *len = k->len;
        break;
    case 2:
        memcpy(out, k->b, k->len);
        if (k->len > 1 && tu_rng_below(&m->rng, 2)) {
            *len = (uint8_t)(k->len - 1);
        } else {
            out[k->len] = (unsigned char)tu_rng_below(&m->rng, 256);
            *len = (uint8_t)(k->len + 1);
        }
        break;
    default:
        random_bytes(&m->rng, out, len);
        break;
    }
}

static bool in_range(const range *r, const mkey *k)
{
    if (r->lo_len && key_cmp(k->b, k->len, r->lo, r->lo_len) < 0) {
        return false;
    }
    if (r->hi_len && key_cmp(k->b, k->len, r->hi, r->hi_len) >= 0) {
        return false;
    }
    return r->pre_len == 0 || (k->len >= r->pre_len && memcmp(k->b, r->pre, r->pre_len) == 0);
}

static void check_at(mt *m, shale_iter *it, const size_t *exp, size_t n, long pos, const kstate *st,
                     const char *move)
{
    shale_error err = {0};
    if (pos < 0 || (size_t)pos >= n) {
        cr_assert(!shale_iter_valid(it), CTX_FMT ": iterator %s: valid at key '%.*s', want the end",
                  CTX(m), move, (int)shale_iter_key(it).len, (const char *)shale_iter_key(it).data);
        shale_code rc = shale_iter_status(it, &err);
        cr_assert_eq(rc, SHALE_OK, CTX_FMT ": iterator status after %s: %s (%s)", CTX(m), move,
                     shale_strerror(rc), err.msg);
        return;
    }
    size_t k = exp[pos];
    if (!shale_iter_valid(it)) {
        shale_code rc = shale_iter_status(it, &err);
        cr_assert_fail(CTX_FMT ": iterator %s: invalid (status %s: %s), want key #%zu (%ld of %zu)",
                       CTX(m), move, shale_strerror(rc), err.msg, k, pos, n);
    }
    shale_slice key = shale_iter_key(it);
    if (key_cmp(key.data, key.len, m->keys[k].b, m->keys[k].len) != 0) {
        /* Find which model key it is, for the message. */
        long found = -1;
        for (size_t i = 0; i < NKEYS; i++) {
            if (key_cmp(key.data, key.len, m->keys[i].b, m->keys[i].len) == 0) {
                found = (long)i;
            }
        }
        cr_assert_fail(CTX_FMT ": iterator %s: at key #%ld (id %" PRIu64 "), want key #%zu (%ld "
                               "of %zu)",
                       CTX(m), move, found, found >= 0 ? st[found].id : 0, k, pos, n);
    }
    shale_slice val = shale_iter_value(it);
    check_value(m, k, st[k], val.data, val.len, move);
    shale_entry_info info = shale_iter_info(it);
    cr_assert_eq(info.expire_at_ms, st[k].expire_at, CTX_FMT ": iterator info deadline", CTX(m));
}

/* First position >= target (forward) or last <= target (backward) among exp. */
static long find_pos(const mt *m, const size_t *exp, size_t n, const unsigned char *t, size_t tl,
                     bool backward)
{
    if (!backward) {
        for (size_t i = 0; i < n; i++) {
            if (key_cmp(m->keys[exp[i]].b, m->keys[exp[i]].len, t, tl) >= 0) {
                return (long)i;
            }
        }
        return (long)n;
    }
    for (size_t i = n; i-- > 0;) {
        if (key_cmp(m->keys[exp[i]].b, m->keys[exp[i]].len, t, tl) <= 0) {
            return (long)i;
        }
    }
    return -1;
}

/* One iterator over `st` at `snap` with random bounds: a full scan forward or backward, or a
 * random walk of seeks and moves in both directions. */
static void check_iter(mt *m, const kstate *st, const shale_snapshot *snap)
{
    range r;
    size_t exp[NKEYS];
    size_t n = 0;
    shale_iter *it = NULL;
    shale_error err = {0};

    memset(&r, 0, sizeof r);
    if (tu_rng_below(&m->rng, 10) < 4) {
        random_target(m, r.lo, &r.lo_len);
    }
    if (tu_rng_below(&m->rng, 10) < 4) {
        random_target(m, r.hi, &r.hi_len);
    }
    if (tu_rng_below(&m->rng, 10) < 3) {
        const mkey *k = &m->keys[tu_rng_below(&m->rng, NKEYS)];
        r.pre_len = (uint8_t)(1 + tu_rng_below(&m->rng, k->len < 3 ? k->len : 3));
        memcpy(r.pre, k->b, r.pre_len);
    }
    for (size_t k = 0; k < NKEYS; k++) {
        if (visible(st[k]) && in_range(&r, &m->keys[k])) {
            exp[n++] = k;
        }
    }
    shale_read_opts ro = {
        .snapshot = snap,
        .lower_bound = {r.lo, r.lo_len},
        .upper_bound = {r.hi, r.hi_len},
        .prefix = {r.pre, r.pre_len},
    };
    shale_code rc = shale_iter_new(m->db, &ro, &it, &err);
    cr_assert_eq(rc, SHALE_OK, CTX_FMT ": iter_new: %s (%s)", CTX(m), shale_strerror(rc), err.msg);
    /* The bounds were copied: scribbling on ours must not matter. */
    memset(&r.lo, 0xee, sizeof r.lo);
    memset(&r.hi, 0x11, sizeof r.hi);
    memset(&r.pre, 0x77, sizeof r.pre);

    uint64_t mode = tu_rng_below(&m->rng, 4);
    if (mode == 0) {
        shale_iter_seek_first(it);
        for (size_t i = 0; i <= n; i++) {
            check_at(m, it, exp, n, (long)i, st, "forward scan");
            if (i < n) {
                shale_iter_next(it);
            }
        }
    } else if (mode == 1) {
        shale_iter_seek_last(it);
        for (long i = (long)n - 1; i >= -1; i--) {
            check_at(m, it, exp, n, i, st, "reverse scan");
            if (i >= 0) {
                shale_iter_prev(it);
            }
        }
    } else {
        long pos = -1;
        for (int s = 0; s < 40; s++) {
            unsigned char t[KEY_MAX + 1];
            uint8_t tl = 0;
            const char *move;
            bool valid = pos >= 0 && (size_t)pos < n;
            uint64_t pick = tu_rng_below(&m->rng, valid ? 10 : 4);
            switch (pick) {
            case 0:
                shale_iter_seek_first(it);
                pos = n ? 0 : -1;
                move = "seek_first";
                break;
            case 1:
                shale_iter_seek_last(it);
                pos = (long)n - 1;
                move = "seek_last";
                break;
            case 2:
            case 3: {
                bool back = pick == 3;
                random_target(m, t, &tl);
                (back ? shale_iter_seek_for_prev : shale_iter_seek)(it, (shale_slice){t, tl});
                pos = find_pos(m, exp, n, t, tl, back);
                move = back ? "seek_for_prev" : "seek";
                break;
            }
            default: { /* 4..6 next, 7..9 prev */
                bool fwd = pick < 7;
                (fwd ? shale_iter_next : shale_iter_prev)(it);
                pos += fwd ? 1 : -1;
                move = fwd ? "next" : "prev";
                break;
            }
            }
            check_at(m, it, exp, n, pos, st, move);
        }
    }
    rc = shale_iter_status(it, &err);
    cr_assert_eq(rc, SHALE_OK, CTX_FMT ": iter status: %s (%s)", CTX(m), shale_strerror(rc),
                 err.msg);
    shale_iter_free(it);
    m->n_iter++;
}

/* Every key by get, and a full scan forward and backward. */
static void check_all(mt *m, const kstate *st, const shale_snapshot *snap, const char *why)
{
    const char *saved = m->opname;
    m->opname = why;
    for (size_t k = 0; k < NKEYS; k++) {
        check_key(m, k, st[k], snap);
    }
    shale_iter *it = NULL;
    shale_read_opts ro = {.snapshot = snap};
    shale_error err = {0};
    size_t exp[NKEYS];
    size_t n = 0;
    for (size_t k = 0; k < NKEYS; k++) {
        if (visible(st[k])) {
            exp[n++] = k;
        }
    }
    cr_assert_eq(shale_iter_new(m->db, &ro, &it, &err), SHALE_OK, CTX_FMT ": %s", CTX(m), err.msg);
    shale_iter_seek_first(it);
    for (size_t i = 0; i <= n; i++) {
        check_at(m, it, exp, n, (long)i, st, "full forward scan");
        if (i < n) {
            shale_iter_next(it);
        }
    }
    shale_iter_seek_last(it);
    for (long i = (long)n - 1; i >= -1; i--) {
        check_at(m, it, exp, n, i, st, "full reverse scan");
        if (i >= 0) {
            shale_iter_prev(it);
        }
    }
    shale_iter_free(it);
    m->opname = saved;
}

/* ---- engine shape --------------------------------------------------------------------------- */

static shale_stats stats_of(mt *m)
{
    shale_stats st;
    shale_error err = {0};
    cr_assert_eq(shale_stats_get(m->db, &st, &err), SHALE_OK, CTX_FMT ": stats: %s", CTX(m),
                 err.msg);
    uint64_t tables = 0, deep = 0;
    for (int l = 0; l < 8; l++) {
        tables += st.level_tables[l];
        deep += l > 0 ? st.level_tables[l] : 0;
    }
    m->max_tables = tables > m->max_tables ? tables : m->max_tables;
    m->max_deep_tables = deep > m->max_deep_tables ? deep : m->max_deep_tables;
    cr_assert_eq(st.snapshots, m->nsnaps, CTX_FMT ": stats.snapshots %" PRIu64 ", want %zu", CTX(m),
                 st.snapshots, m->nsnaps);
    cr_assert_not(st.writes_stopped, CTX_FMT ": writes stopped: %s", CTX(m), st.stop_reason);
    return st;
}

static void open_db(mt *m)
{
    shale_error err = {0};
    m->db = NULL;
    shale_code rc = shale_open(m->path, &m->opts, &m->db, &err);
    cr_assert_eq(rc, SHALE_OK, CTX_FMT ": open: %s (%s)", CTX(m), shale_strerror(rc), err.msg);
}

static void release_snap(mt *m, size_t i)
{
    shale_snapshot_release(m->db, m->snaps[i].snap);
    free(m->snaps[i].state);
    m->snaps[i] = m->snaps[--m->nsnaps];
}

/* Adds the session's flush and compaction counts to the totals (before a close). */
static void count_session(mt *m)
{
    shale_stats st = stats_of(m);
    m->flushes_total += st.flushes;
    m->compactions_total += st.compactions;
}

static void do_flush(mt *m)
{
    shale_error err = {0};
    uint64_t before = stats_of(m).flushes;
    shale_code rc = shale_flush(m->db, &err);
    cr_assert_eq(rc, SHALE_OK, CTX_FMT ": flush: %s (%s)", CTX(m), shale_strerror(rc), err.msg);
    shale_stats st = stats_of(m);
    m->flushes_manual += st.flushes - before;
    cr_assert_eq(st.immutable_memtables, 0, CTX_FMT ": a memtable still waits after shale_flush",
                 CTX(m));
    m->n_flush++;
    check_all(m, m->state, NULL, "after shale_flush");
}

static void do_compact(mt *m, bool check_files)
{
    shale_error err = {0};
    shale_stats st0 = stats_of(m);
    shale_code rc = shale_compact(m->db, &err);
    cr_assert_eq(rc, SHALE_OK, CTX_FMT ": compact: %s (%s)", CTX(m), shale_strerror(rc), err.msg);
    shale_stats st = stats_of(m);
    m->flushes_manual += st.flushes - st0.flushes;
    m->compactions_manual += st.compactions - st0.compactions;
    /* Everything went down into one level; level 0 is empty. */
    int levels_used = 0;
    for (int l = 0; l < 8; l++) {
        levels_used += st.level_tables[l] > 0;
    }
    cr_assert_eq(st.level_tables[0], 0,
                 CTX_FMT ": %" PRIu64 " level-0 tables left after shale_compact", CTX(m),
                 st.level_tables[0]);
    cr_assert_leq(levels_used, 1, CTX_FMT ": %d levels hold tables after shale_compact", CTX(m),
                  levels_used);
    if (check_files) {
        /* No iterator is open and nothing is being written: the directory holds just the live
         * files (done once, at the end, so that a failure here masks nothing else). */
        char ctx[160];
        snprintf(ctx, sizeof ctx, CTX_FMT ": after shale_compact", CTX(m));
        tu_assert_db_files(m->db, m->path, ctx);
    }
    m->n_compact++;
    check_all(m, m->state, NULL, "after shale_compact");
    for (size_t i = 0; i < m->nsnaps; i++) {
        check_all(m, m->snaps[i].state, m->snaps[i].snap, "snapshot after shale_compact");
    }
}

static void do_reopen(mt *m)
{
    shale_error err = {0};
    while (m->nsnaps > 0) {
        release_snap(m, m->nsnaps - 1);
    }
    count_session(m);
    shale_code rc = shale_close(m->db, &err);
    m->db = NULL;
    cr_assert_eq(rc, SHALE_OK, CTX_FMT ": close: %s (%s)", CTX(m), shale_strerror(rc), err.msg);
    if (tu_rng_below(&m->rng, 2)) {
        atomic_fetch_add(&g_now, tu_rng_below(&m->rng, 3000));
    }
    open_db(m);
    shale_stats st = stats_of(m);
    /* A clean close flushed the memtable: nothing to replay. */
    cr_assert_eq(st.recovered_records, 0,
                 CTX_FMT ": %" PRIu64 " log records replayed after a clean close", CTX(m),
                 st.recovered_records);
    m->n_reopen++;
    check_all(m, m->state, NULL, "after reopen");
}

/* ---- writes --------------------------------------------------------------------------------- */

static uint64_t random_deadline(mt *m)
{
    uint64_t now = atomic_load(&g_now);
    switch (tu_rng_below(&m->rng, 6)) {
    case 0:
        return now - tu_rng_below(&m->rng, 1000); /* already expired */
    case 1:
        return 0; /* never, through the TTL call */
    default:
        return now + 1 + tu_rng_below(&m->rng, 4000);
    }
}

static void do_put(mt *m, bool ttl)
{
    size_t k = (size_t)tu_rng_below(&m->rng, NKEYS);
    uint64_t id = m->next_id++;
    uint64_t deadline = ttl ? random_deadline(m) : 0;
    size_t n = make_value(m, m->vbuf, id, k);
    shale_error err = {0};
    shale_code rc =
        ttl ? shale_put_ttl(m->db, NULL, kslice(m, k), (shale_slice){m->vbuf, n}, deadline, &err)
            : shale_put(m->db, NULL, kslice(m, k), (shale_slice){m->vbuf, n}, &err);
    cr_assert_eq(rc, SHALE_OK, CTX_FMT ": put key #%zu: %s (%s)", CTX(m), k, shale_strerror(rc),
                 err.msg);
    m->state[k] = (kstate){id, deadline};
    if (ttl) {
        m->n_ttl++;
    } else {
        m->n_put++;
    }
    if (tu_rng_below(&m->rng, 4) == 0) {
        check_key(m, k, m->state[k], NULL);
    }
}

static void do_delete(mt *m)
{
    size_t k = (size_t)tu_rng_below(&m->rng, NKEYS);
    shale_error err = {0};
    shale_code rc = shale_delete(m->db, NULL, kslice(m, k), &err);
    cr_assert_eq(rc, SHALE_OK, CTX_FMT ": delete key #%zu: %s (%s)", CTX(m), k, shale_strerror(rc),
                 err.msg);
    m->state[k] = (kstate){0, 0};
    m->n_del++;
    if (tu_rng_below(&m->rng, 4) == 0) {
        check_key(m, k, m->state[k], NULL);
    }
}

static void do_batch(mt *m)
{
    shale_batch *b = shale_batch_new();
    size_t n = tu_rng_below(&m->rng, 20) == 0 ? 0 : 1 + (size_t)tu_rng_below(&m->rng, MAX_BATCH);
    size_t keys[MAX_BATCH];
    kstate after[MAX_BATCH];
    shale_error err = {0};

    cr_assert_not_null(b);
    for (size_t i = 0; i < n; i++) {
        /* A third of the operations reuse a key of this batch: the later one wins. */
        keys[i] = i > 0 && tu_rng_below(&m->rng, 3) == 0 ? keys[tu_rng_below(&m->rng, i)]
                                                         : (size_t)tu_rng_below(&m->rng, NKEYS);
        uint64_t kind = tu_rng_below(&m->rng, 10);
        shale_code rc;
        if (kind < 3) {
            rc = shale_batch_delete(b, kslice(m, keys[i]), &err);
            after[i] = (kstate){0, 0};
        } else {
            uint64_t id = m->next_id++;
            uint64_t deadline = kind < 5 ? random_deadline(m) : 0;
            size_t vl = make_value(m, m->vbuf, id, keys[i]);
            rc = deadline
                     ? shale_batch_put_ttl(b, kslice(m, keys[i]), (shale_slice){m->vbuf, vl},
                                           deadline, &err)
                     : shale_batch_put(b, kslice(m, keys[i]), (shale_slice){m->vbuf, vl}, &err);
            after[i] = (kstate){id, deadline};
        }
        cr_assert_eq(rc, SHALE_OK, CTX_FMT ": batch add: %s", CTX(m), err.msg);
    }
    cr_assert_eq(shale_batch_count(b), n, CTX_FMT ": batch count", CTX(m));
    shale_code rc = shale_write(m->db, NULL, b, &err);
    cr_assert_eq(rc, SHALE_OK, CTX_FMT ": batch of %zu: %s (%s)", CTX(m), n, shale_strerror(rc),
                 err.msg);
    shale_batch_free(b);
    for (size_t i = 0; i < n; i++) {
        m->state[keys[i]] = after[i];
    }
    m->n_batch++;
    if (n > 0 && tu_rng_below(&m->rng, 3) == 0) {
        for (size_t i = 0; i < n; i++) {
            check_key(m, keys[i], m->state[keys[i]], NULL);
        }
    }
}

/* ---- snapshots ------------------------------------------------------------------------------ */

static void take_snapshot(mt *m)
{
    if (m->nsnaps == MAX_SNAPS) {
        release_snap(m, (size_t)tu_rng_below(&m->rng, m->nsnaps));
    }
    msnap *s = &m->snaps[m->nsnaps];
    s->snap = shale_snapshot_get(m->db);
    cr_assert_not_null(s->snap, CTX_FMT ": shale_snapshot_get returned NULL", CTX(m));
    s->seq = shale_snapshot_seq(s->snap);
    cr_assert_geq(s->seq, m->last_snap_seq, CTX_FMT ": snapshot seq went back", CTX(m));
    m->last_snap_seq = s->seq;
    s->state = malloc(sizeof m->state);
    cr_assert_not_null(s->state);
    memcpy(s->state, m->state, sizeof m->state);
    s->step = m->step;
    m->nsnaps++;
}

static void snapshot_read(mt *m)
{
    if (m->nsnaps == 0) {
        take_snapshot(m);
        return;
    }
    msnap *s = &m->snaps[tu_rng_below(&m->rng, m->nsnaps)];
    uint64_t what = tu_rng_below(&m->rng, 10);
    if (what < 5) {
        for (int i = 0; i < 4; i++) {
            size_t k = (size_t)tu_rng_below(&m->rng, NKEYS);
            check_key(m, k, s->state[k], s->snap);
        }
    } else if (what < 6) {
        check_multi(m, s->state, s->snap);
    } else {
        check_iter(m, s->state, s->snap);
    }
    m->n_snapread++;
}

/* ---- the run -------------------------------------------------------------------------------- */

static uint64_t env_u64(const char *name, uint64_t fallback)
{
    const char *s = getenv(name);
    return s != NULL && s[0] != '\0' ? strtoull(s, NULL, 0) : fallback;
}

static void run(const variant *vin)
{
    /* Static: a failed assertion ends the process; nothing here then counts as leaked. */
    static mt model;
    mt *m = &model;

    memset(m, 0, sizeof *m);
    m->v = *vin;
    m->v.seed = env_u64("SHALE_MODEL_SEED", m->v.seed);
    m->v.steps = env_u64("SHALE_MODEL_STEPS", m->v.steps);
    m->opname = "setup";
    m->next_id = 1;
    atomic_store(&g_now, T0);
    tu_rng_seed(&m->rng, tu_mix64(m->v.seed));
    make_keys(m);
    m->vbuf = malloc(VALUE_CAP);
    cr_assert_not_null(m->vbuf);
    m->root = tu_tmpdir("model");
    m->path = tu_path(m->root, "db");
    m->env = *env_posix();
    m->env.name = "model-fake-clock";
    m->env.now_ms = fake_now_ms;
    m->opts = tu_small_lsm_options(m->v.l0_trigger ? m->v.l0_trigger : 2);
    m->opts.create_if_missing = true;
    m->opts.durability = m->v.durability;
    m->opts.env = &m->env;
    m->opts.compression = m->v.compression;
    m->opts.ttl_sweep_interval_ms = m->v.ttl_sweep_ms;
    m->opts.compaction_threads = m->v.compaction_threads;
    m->opts.wal_segment_bytes = 64 * 1024;
    cr_log_info("%s: seed %" PRIu64 " (SHALE_MODEL_SEED=%" PRIu64 " reproduces it)", m->v.name,
                m->v.seed, m->v.seed);
    open_db(m);

    for (m->step = 1; m->step <= m->v.steps; m->step++) {
        uint64_t p = tu_rng_below(&m->rng, 1000);
        if (p < 300) {
            m->opname = "put";
            do_put(m, false);
        } else if (p < 380) {
            m->opname = "put_ttl";
            do_put(m, true);
        } else if (p < 480) {
            m->opname = "delete";
            do_delete(m);
        } else if (p < 580) {
            m->opname = "batch";
            do_batch(m);
        } else if (p < 740) {
            m->opname = "get";
            size_t k = (size_t)tu_rng_below(&m->rng, NKEYS);
            check_key(m, k, m->state[k], NULL);
            m->n_get++;
        } else if (p < 770) {
            m->opname = "multi_get";
            check_multi(m, m->state, NULL);
        } else if (p < 820) {
            m->opname = "iterate";
            check_iter(m, m->state, NULL);
        } else if (p < 832) {
            m->opname = "snapshot";
            take_snapshot(m);
        } else if (p < 840) {
            m->opname = "release snapshot";
            if (m->nsnaps > 0) {
                release_snap(m, (size_t)tu_rng_below(&m->rng, m->nsnaps));
            }
        } else if (p < 940) {
            m->opname = "snapshot read";
            snapshot_read(m);
        } else if (p < 970) {
            m->opname = "clock";
            atomic_fetch_add(&g_now, 1 + tu_rng_below(&m->rng, 400));
        } else if (p < 973) {
            m->opname = "shale_flush";
            do_flush(m);
        } else if (p < 975) {
            m->opname = "shale_compact";
            do_compact(m, false);
        } else if (p < 977) {
            m->opname = "reopen";
            do_reopen(m);
        } else {
            /* More puts: enough data for the engine to flush on its own between the above. */
            m->opname = "put";
            do_put(m, false);
        }
        if (m->step % FULL_CHECK == 0) {
            check_all(m, m->state, NULL, "periodic full check");
            (void)stats_of(m);
        }
    }
    m->opname = "end";
    check_all(m, m->state, NULL, "final check");
    for (size_t i = 0; i < m->nsnaps; i++) {
        check_all(m, m->snaps[i].state, m->snaps[i].snap, "final snapshot check");
    }
    /* Last: everything compacted, every snapshot released, then a reopen. */
    while (m->nsnaps > 0) {
        release_snap(m, m->nsnaps - 1);
    }
    do_compact(m, true);
    do_reopen(m);
    count_session(m);
    uint64_t natural_flushes = m->flushes_total - m->flushes_manual;
    uint64_t natural_compactions = m->compactions_total - m->compactions_manual;

    cr_log_info("%s seed %" PRIu64 ": %" PRIu64 " puts, %" PRIu64 " ttl puts, %" PRIu64
                " deletes, %" PRIu64 " batches, %" PRIu64 " gets, %" PRIu64 " multi_gets, %" PRIu64
                " iterations, %" PRIu64 " snapshot reads, %" PRIu64 " flushes, %" PRIu64
                " compactions, %" PRIu64 " reopens, %" PRIu64 " expired reads, up to %" PRIu64
                " tables (%" PRIu64 " below level 0); the engine flushed %" PRIu64
                " times and compacted %" PRIu64 " times on its own",
                m->v.name, m->v.seed, m->n_put, m->n_ttl, m->n_del, m->n_batch, m->n_get,
                m->n_multi, m->n_iter, m->n_snapread, m->n_flush, m->n_compact, m->n_reopen,
                m->n_expired_reads, m->max_tables, m->max_deep_tables, natural_flushes,
                natural_compactions);
    /* The run exercised what it claims: tables at several levels, natural and manual work. */
    cr_assert_gt(m->max_tables, 1, "%s seed %" PRIu64 ": never more than one table", m->v.name,
                 m->v.seed);
    cr_assert_gt(m->max_deep_tables, 0, "%s seed %" PRIu64 ": no table ever below level 0",
                 m->v.name, m->v.seed);
    cr_assert_gt(m->n_expired_reads, 0, "%s seed %" PRIu64 ": no read of an expired key", m->v.name,
                 m->v.seed);
    cr_assert_gt(natural_flushes, 0, "%s seed %" PRIu64 ": no flush ran on its own", m->v.name,
                 m->v.seed);
    cr_assert_gt(natural_compactions, 0, "%s seed %" PRIu64 ": no compaction ran on its own",
                 m->v.name, m->v.seed);
    cr_assert(m->n_flush > 0 && m->n_compact > 1 && m->n_reopen > 1,
              "%s seed %" PRIu64 ": too few manual flushes, compactions or reopens", m->v.name,
              m->v.seed);

    shale_error err = {0};
    cr_assert_eq(shale_close(m->db, &err), SHALE_OK, "close: %s", err.msg);
    m->db = NULL;
    /* The offline checker finds nothing wrong with what all this left. */
    char *out = NULL;
    int code = tu_run_shale((const char *const[]){"check", m->path, NULL}, &out);
    cr_assert(code == -1 || code == 0, "%s seed %" PRIu64 ": shale check exited %d:\n%s", m->v.name,
              m->v.seed, code, out);
    free(out);
    shale_buf_free(&m->got);
    free(m->vbuf);
    tu_rm_rf(m->root);
    free(m->root);
    free(m->path);
    tu_assert_no_leaks();
}

Test(model, lz4_os)
{
    static const variant v = {
        .name = "lz4/os", .seed = 0x6d0de1001, .steps = 5000, .big_values = 2};
    run(&v);
}

Test(model, none_sweeper_10ms)
{
    static const variant v = {.name = "none/sweep10",
                              .seed = 0x6d0de1002,
                              .steps = 5000,
                              .compression = SHALE_COMPRESSION_NONE,
                              .ttl_sweep_ms = 10,
                              .big_values = 2};
    run(&v);
}

Test(model, zstd_memory_big_values)
{
    static const variant v = {.name = "zstd/memory/big",
                              .seed = 0x6d0de1003,
                              .steps = 4000,
                              .durability = SHALE_DURABILITY_MEMORY,
                              .compression = SHALE_COMPRESSION_ZSTD,
                              .big_values = 8};
    run(&v);
}

Test(model, trigger3_one_compaction_thread)
{
    static const variant v = {.name = "l0x3/1thread",
                              .seed = 0x6d0de1004,
                              .steps = 5000,
                              .l0_trigger = 3,
                              .compaction_threads = 1,
                              .big_values = 3};
    run(&v);
}

Test(model, lz4_os_second_seed)
{
    static const variant v = {
        .name = "lz4/os#2", .seed = 0x6d0de1005, .steps = 5000, .big_values = 4};
    run(&v);
}
