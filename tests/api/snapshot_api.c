/* Snapshots: point-in-time gets and scans while writes, flushes and compactions go on (also from a
 * background writer thread), versions a snapshot needs survive shale_compact, released snapshots
 * let compaction drop them, and bad input. Small budgets (64 KiB write buffer and tables, level-0
 * trigger 2) make the engine flush and compact with little data. Worker threads never call
 * cr_assert: they record the first failure, which the main thread reports after joining. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "api.h"

TestSuite(snapshot);

#define NK 400

static shale_options small_opts(void)
{
    return tu_small_lsm_options(2);
}

static shale_slice skey(char *buf, int k)
{
    int n = snprintf(buf, 32, "snap-%05d", k);
    return (shale_slice){buf, (size_t)n};
}

/* The value of key k in generation g: "g<g>:k<k>:" padded to 60..260 bytes. */
static shale_slice sval(char *buf, int g, int k)
{
    return tu_gen_value(buf, g, k, 60);
}

/* gen[k]: the generation key k holds, 0 = absent. */
typedef struct sstate {
    int gen[NK];
} sstate;

static void put_gen(shale_db *db, sstate *st, int g, int k)
{
    char kb[32], vb[300];
    tu_putn(db, skey(kb, k), sval(vb, g, k));
    st->gen[k] = g;
}

static void del_key(shale_db *db, sstate *st, int k)
{
    char kb[32];
    shale_error err = {0};
    cr_assert_eq(shale_delete(db, NULL, skey(kb, k), &err), SHALE_OK, "%s", err.msg);
    st->gen[k] = 0;
}

/* Gets, multi_gets and a full scan (forward, and backward when `both`) at `snap` equal `want`. */
static void expect_state(shale_db *db, const shale_snapshot *snap, const sstate *want,
                         const char *ctx)
{
    shale_read_opts ro = {.snapshot = snap};
    shale_buf buf = {0};
    char kb[32], vb[300];

    for (int k = 0; k < NK; k++) {
        shale_code rc = shale_get(db, &ro, skey(kb, k), &buf, NULL);
        if (want->gen[k] == 0) {
            cr_assert_eq(rc, SHALE_NOT_FOUND, "%s: key %d should be absent (got %s)", ctx, k,
                         shale_strerror(rc));
        } else {
            shale_slice v = sval(vb, want->gen[k], k);
            cr_assert_eq(rc, SHALE_OK, "%s: key %d (gen %d): %s", ctx, k, want->gen[k],
                         shale_strerror(rc));
            cr_assert(buf.len == v.len && memcmp(buf.data, v.data, v.len) == 0,
                      "%s: key %d: want gen %d, got '%.12s'", ctx, k, want->gen[k],
                      (const char *)buf.data);
        }
    }
    /* One multi_get over a stride of keys. */
    shale_slice keys[8];
    shale_buf vals[8];
    shale_code codes[8];
    char kbs[8][32];
    memset(vals, 0, sizeof vals);
    for (int i = 0; i < 8; i++) {
        keys[i] = skey(kbs[i], i * 47 % NK);
    }
    TU_OK(shale_multi_get(db, &ro, 8, keys, vals, codes, &ERR));
    for (int i = 0; i < 8; i++) {
        int k = i * 47 % NK;
        cr_assert_eq(codes[i], want->gen[k] ? SHALE_OK : SHALE_NOT_FOUND, "%s: multi_get key %d",
                     ctx, k);
        shale_buf_free(&vals[i]);
    }
    /* Scans both ways. */
    for (int dir = 0; dir < 2; dir++) {
        shale_iter *it = NULL;
        TU_OK(shale_iter_new(db, &ro, &it, &ERR));
        int k = dir == 0 ? 0 : NK - 1;
        if (dir == 0) {
            shale_iter_seek_first(it);
        } else {
            shale_iter_seek_last(it);
        }
        for (; shale_iter_valid(it); dir == 0 ? shale_iter_next(it) : shale_iter_prev(it)) {
            while (k >= 0 && k < NK && want->gen[k] == 0) {
                k += dir == 0 ? 1 : -1;
            }
            cr_assert(k >= 0 && k < NK, "%s: the scan found an extra key", ctx);
            shale_slice want_k = skey(kb, k);
            shale_slice got_k = shale_iter_key(it);
            cr_assert(got_k.len == want_k.len && memcmp(got_k.data, want_k.data, got_k.len) == 0,
                      "%s: scan %s at '%.*s', want key %d", ctx, dir ? "backward" : "forward",
                      (int)got_k.len, (const char *)got_k.data, k);
            shale_slice v = sval(vb, want->gen[k], k);
            shale_slice got_v = shale_iter_value(it);
            cr_assert(got_v.len == v.len && memcmp(got_v.data, v.data, v.len) == 0,
                      "%s: scan: key %d has the wrong generation", ctx, k);
            if (snap != NULL) {
                cr_assert_leq(shale_iter_info(it).seq, shale_snapshot_seq(snap),
                              "%s: the scan returned a version newer than the snapshot", ctx);
            }
            k += dir == 0 ? 1 : -1;
        }
        TU_OK(shale_iter_status(it, &ERR));
        while (k >= 0 && k < NK && want->gen[k] == 0) {
            k += dir == 0 ? 1 : -1;
        }
        cr_assert(k < 0 || k >= NK, "%s: the scan stopped early, before key %d", ctx, k);
        shale_iter_free(it);
    }
    shale_buf_free(&buf);
}

static uint64_t tables_below_l0(shale_db *db)
{
    shale_stats st = tu_stats(db);
    uint64_t n = 0;
    for (int l = 1; l < 8; l++) {
        n += st.level_tables[l];
    }
    return n;
}

/* Both snapshots (and, when `now` is given, the live view) at `when`. */
static void expect_views(shale_db *db, const shale_snapshot *s1, const sstate *at1,
                         const shale_snapshot *s2, const sstate *at2, const sstate *now,
                         const char *when)
{
    char ctx[96];

    snprintf(ctx, sizeof ctx, "s1 %s", when);
    expect_state(db, s1, at1, ctx);
    snprintf(ctx, sizeof ctx, "s2 %s", when);
    expect_state(db, s2, at2, ctx);
    if (now != NULL) {
        snprintf(ctx, sizeof ctx, "now %s", when);
        expect_state(db, NULL, now, ctx);
    }
}

Test(snapshot, point_in_time_across_flush_and_compaction)
{
    tu_fx fx = {0};
    shale_options o = small_opts();
    static sstate now, at1, at2;

    tu_fx_begin(&fx, "api-snap", &o);
    memset(&now, 0, sizeof now);
    for (int k = 0; k < NK; k++) {
        put_gen(fx.db, &now, 1, k);
    }
    shale_snapshot *s1 = shale_snapshot_get(fx.db);
    cr_assert_not_null(s1);
    at1 = now;
    /* Generation 2 over every other key, deletes of every fifth. */
    for (int k = 0; k < NK; k += 2) {
        put_gen(fx.db, &now, 2, k);
    }
    for (int k = 0; k < NK; k += 5) {
        del_key(fx.db, &now, k);
    }
    shale_snapshot *s2 = shale_snapshot_get(fx.db);
    cr_assert_not_null(s2);
    at2 = now;
    cr_assert_gt(shale_snapshot_seq(s2), shale_snapshot_seq(s1));
    cr_assert_leq(shale_snapshot_seq(s2), tu_stats(fx.db).last_sequence);
    cr_assert_eq(tu_stats(fx.db).snapshots, 2);
    /* Generation 3 over everything, deletes of every seventh, re-puts of some deleted ones. */
    for (int k = 0; k < NK; k++) {
        put_gen(fx.db, &now, 3, k);
    }
    for (int k = 0; k < NK; k += 7) {
        del_key(fx.db, &now, k);
    }

    expect_views(fx.db, s1, &at1, s2, &at2, &now, "in memory");
    TU_OK(shale_flush(fx.db, &ERR));
    expect_views(fx.db, s1, &at1, s2, &at2, &now, "after flush");
    TU_OK(shale_compact(fx.db, &ERR));
    cr_assert_gt(tables_below_l0(fx.db), 0, "shale_compact left nothing below level 0");
    expect_views(fx.db, s1, &at1, s2, &at2, &now, "after compact");

    /* More generations, flushed and compacted on their own (tiny budgets) and by hand. */
    for (int g = 4; g < 8; g++) {
        for (int k = g % 3; k < NK; k += 3) {
            put_gen(fx.db, &now, g, k);
        }
        if (g == 5) {
            TU_OK(shale_flush(fx.db, &ERR));
        }
    }
    expect_views(fx.db, s1, &at1, s2, &at2, NULL, "after more writes");
    TU_OK(shale_compact(fx.db, &ERR));
    expect_views(fx.db, s1, &at1, s2, &at2, &now, "after a second compact");

    shale_snapshot_release(fx.db, s1);
    cr_assert_eq(tu_stats(fx.db).snapshots, 1);
    TU_OK(shale_compact(fx.db, &ERR));
    expect_state(fx.db, s2, &at2, "s2 after s1 was released and a compact");
    shale_snapshot_release(fx.db, s2);
    cr_assert_eq(tu_stats(fx.db).snapshots, 0);
    expect_state(fx.db, NULL, &now, "now at the end");
    tu_fx_reopen(&fx, &o);
    expect_state(fx.db, NULL, &now, "now after reopen");
    tu_fx_end(&fx);
}

/* A key deleted or overwritten after the snapshot keeps its old version through shale_compact,
 * also when the delete and the overwrite reach the bottom level in the same compaction. */
Test(snapshot, needed_versions_survive_compact)
{
    tu_fx fx = {0};
    shale_options o = small_opts();
    shale_snapshot *snaps[5];
    static sstate at[5], now;

    tu_fx_begin(&fx, "api-snap", &o);
    memset(&now, 0, sizeof now);
    /* Five rounds, each overwriting a different subset, a snapshot after each, a flush between. */
    for (int r = 0; r < 5; r++) {
        for (int k = r; k < NK; k += r + 1) {
            put_gen(fx.db, &now, 10 + r, k);
        }
        for (int k = 3 * r; k < NK; k += 11) {
            del_key(fx.db, &now, k);
        }
        snaps[r] = shale_snapshot_get(fx.db);
        cr_assert_not_null(snaps[r]);
        at[r] = now;
        if (r % 2 == 0) {
            TU_OK(shale_flush(fx.db, &ERR));
        }
    }
    /* One more generation over everything, no snapshot for it. */
    for (int k = 0; k < NK; k++) {
        put_gen(fx.db, &now, 20, k);
    }
    TU_OK(shale_compact(fx.db, &ERR));
    for (int r = 0; r < 5; r++) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "snapshot %d after compact", r);
        expect_state(fx.db, snaps[r], &at[r], ctx);
    }
    expect_state(fx.db, NULL, &now, "now after compact");
    /* Release the middle ones: the outer ones still see their versions. */
    shale_snapshot_release(fx.db, snaps[1]);
    shale_snapshot_release(fx.db, snaps[3]);
    for (int k = 0; k < NK; k += 2) {
        put_gen(fx.db, &now, 21, k);
    }
    TU_OK(shale_compact(fx.db, &ERR));
    expect_state(fx.db, snaps[0], &at[0], "snapshot 0 after releases and compact");
    expect_state(fx.db, snaps[2], &at[2], "snapshot 2 after releases and compact");
    expect_state(fx.db, snaps[4], &at[4], "snapshot 4 after releases and compact");
    expect_state(fx.db, NULL, &now, "now after releases and compact");
    shale_snapshot_release(fx.db, snaps[0]);
    shale_snapshot_release(fx.db, snaps[2]);
    shale_snapshot_release(fx.db, snaps[4]);
    tu_fx_end(&fx);
}

/* 1 KiB incompressible values; table bytes tell how many versions compaction kept. */
static void put_big_gen(shale_db *db, int g, int n)
{
    char kb[32];
    unsigned char vb[1024];
    tu_rng r;
    for (int k = 0; k < n; k++) {
        tu_rng_seed(&r, (uint64_t)g * 1000003u + (uint64_t)k + 1);
        for (size_t i = 0; i < sizeof vb; i += 8) {
            uint64_t x = tu_rng_next(&r);
            memcpy(vb + i, &x, 8);
        }
        vb[0] = (unsigned char)g;
        tu_putn(db, skey(kb, k), (shale_slice){vb, sizeof vb});
    }
}

static int big_gen_of(shale_db *db, const shale_snapshot *snap, int k)
{
    shale_read_opts ro = {.snapshot = snap};
    shale_buf buf = {0};
    char kb[32];
    shale_code rc = shale_get(db, &ro, skey(kb, k), &buf, NULL);
    cr_assert_eq(rc, SHALE_OK, "key %d: %s", k, shale_strerror(rc));
    cr_assert_eq(buf.len, 1024);
    int g = ((unsigned char *)buf.data)[0];
    shale_buf_free(&buf);
    return g;
}

Test(snapshot, release_lets_compaction_drop_old_versions)
{
    tu_fx fx = {0};
    shale_options o = small_opts();
    const int n = 300;

    o.compression = SHALE_COMPRESSION_NONE;
    tu_fx_begin(&fx, "api-snap", &o);
    put_big_gen(fx.db, 1, n);
    TU_OK(shale_compact(fx.db, &ERR));
    uint64_t one = tu_stats(fx.db).table_bytes_on_disk;
    cr_assert_gt(one, (uint64_t)n * 1024, "one version takes %llu bytes", (unsigned long long)one);

    shale_snapshot *s = shale_snapshot_get(fx.db);
    cr_assert_not_null(s);
    put_big_gen(fx.db, 2, n);
    TU_OK(shale_compact(fx.db, &ERR));
    uint64_t two = tu_stats(fx.db).table_bytes_on_disk;
    cr_assert_gt(two * 10, one * 17,
                 "with a snapshot on generation 1, compaction kept %llu bytes (one version: %llu)",
                 (unsigned long long)two, (unsigned long long)one);
    for (int k = 0; k < n; k += 7) {
        cr_assert_eq(big_gen_of(fx.db, s, k), 1, "key %d at the snapshot", k);
        cr_assert_eq(big_gen_of(fx.db, NULL, k), 2, "key %d now", k);
    }

    shale_snapshot_release(fx.db, s);
    cr_assert_eq(tu_stats(fx.db).snapshots, 0);
    put_big_gen(fx.db, 3, n);
    TU_OK(shale_compact(fx.db, &ERR));
    uint64_t three = tu_stats(fx.db).table_bytes_on_disk;
    cr_assert_lt(three * 10, one * 14,
                 "after the release, compaction kept %llu bytes (one version: %llu): the old "
                 "versions were not dropped",
                 (unsigned long long)three, (unsigned long long)one);
    for (int k = 0; k < n; k++) {
        cr_assert_eq(big_gen_of(fx.db, NULL, k), 3, "key %d now", k);
    }
    tu_fx_end(&fx);
}

/* A background writer rewrites every key generation after generation, in key order; flushes and
 * compactions run meanwhile (tiny budgets, plus shale_flush / shale_compact from this thread).
 * Each snapshot must show one consistent point of the writer's sequence: keys 0..p-1 at some
 * generation g and keys p..NK-1 at g-1 (the writer's order), the same through gets and scans,
 * and the same again after more writes, flushes and compactions. */
typedef struct bg_writer {
    shale_db *db;
    atomic_int stop;
    atomic_int failed;
    atomic_int gens_done;
    char why[320];
} bg_writer;

static void *bg_writer_main(void *arg)
{
    bg_writer *w = arg;
    char kb[32], vb[300];
    shale_error err = {0};
    for (int g = 1; !atomic_load(&w->stop) && g < 100000; g++) {
        for (int k = 0; k < NK; k++) {
            shale_code rc = shale_put(w->db, NULL, skey(kb, k), sval(vb, g, k), &err);
            if (rc != SHALE_OK) {
                snprintf(w->why, sizeof w->why, "put gen %d key %d: %s", g, k, err.msg);
                atomic_store(&w->failed, 1);
                return NULL;
            }
        }
        atomic_store(&w->gens_done, g);
    }
    return NULL;
}

/* Reads the whole state at `snap` by a scan; checks each value against its key and generation
 * and returns the generations. */
static void scan_gens(shale_db *db, const shale_snapshot *snap, sstate *out, const char *ctx)
{
    shale_read_opts ro = {.snapshot = snap};
    shale_iter *it = NULL;
    char vb[300];
    int k = 0;

    memset(out, 0, sizeof *out);
    TU_OK(shale_iter_new(db, &ro, &it, &ERR));
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it), k++) {
        shale_slice v = shale_iter_value(it);
        int g = 0, vk = -1;
        char head[32];
        tu_head(head, sizeof head, v.data, v.len);
        cr_assert(sscanf(head, "g%d:k%d:", &g, &vk) == 2 && vk == k, "%s: position %d holds '%s'",
                  ctx, k, head);
        shale_slice want = sval(vb, g, k);
        cr_assert(want.len == v.len && memcmp(want.data, v.data, v.len) == 0,
                  "%s: key %d: damaged value", ctx, k);
        out->gen[k] = g;
    }
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_free(it);
    if (k > 0) {
        cr_assert_eq(k, NK, "%s: the scan saw %d keys", ctx, k);
    }
}

static void expect_prefix_point(const sstate *s, const char *ctx)
{
    int g = s->gen[0];
    int k = 0;
    while (k < NK && s->gen[k] == g) {
        k++;
    }
    for (int j = k; j < NK; j++) {
        cr_assert_eq(s->gen[j], g - 1,
                     "%s: not a point of the writer's sequence: keys 0..%d at gen %d, key %d at "
                     "gen %d",
                     ctx, k - 1, g, j, s->gen[j]);
    }
}

Test(snapshot, consistent_while_a_writer_flushes_and_compacts)
{
    tu_fx fx = {0};
    shale_options o = small_opts();
    static bg_writer w;
    pthread_t th;
    enum { ROUNDS = 8, HELD = 3 };
    shale_snapshot *held[HELD] = {NULL};
    static sstate held_state[HELD], again;

    tu_fx_begin(&fx, "api-snap", &o);
    memset(&w, 0, sizeof w);
    w.db = fx.db;
    cr_assert_eq(pthread_create(&th, NULL, bg_writer_main, &w), 0);
    while (atomic_load(&w.gens_done) < 1 && !atomic_load(&w.failed)) {
        tu_sleep_us(1000);
    }
    for (int r = 0; r < ROUNDS && !atomic_load(&w.failed); r++) {
        char ctx[96];
        int slot = r % HELD;
        if (held[slot] != NULL) {
            /* Read it again, after more writes, flushes and compactions: unchanged. */
            snprintf(ctx, sizeof ctx, "round %d: snapshot of round %d re-read", r, r - HELD);
            scan_gens(fx.db, held[slot], &again, ctx);
            cr_assert(memcmp(&again, &held_state[slot], sizeof again) == 0,
                      "%s: the snapshot's view changed", ctx);
            expect_state(fx.db, held[slot], &held_state[slot], ctx);
            shale_snapshot_release(fx.db, held[slot]);
        }
        held[slot] = shale_snapshot_get(fx.db);
        cr_assert_not_null(held[slot]);
        snprintf(ctx, sizeof ctx, "round %d", r);
        scan_gens(fx.db, held[slot], &held_state[slot], ctx);
        expect_prefix_point(&held_state[slot], ctx);
        expect_state(fx.db, held[slot], &held_state[slot], ctx);
        if (r % 3 == 1) {
            TU_OK(shale_flush(fx.db, &ERR));
        } else if (r % 3 == 2) {
            TU_OK(shale_compact(fx.db, &ERR));
        }
        /* The view does not move while the writer goes on. */
        scan_gens(fx.db, held[slot], &again, ctx);
        cr_assert(memcmp(&again, &held_state[slot], sizeof again) == 0,
                  "%s: the snapshot's view changed during the round", ctx);
    }
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    cr_assert(!atomic_load(&w.failed), "writer: %s", w.why);
    shale_stats st = tu_stats(fx.db);
    cr_assert_gt(st.flushes, 0, "no flush ran");
    for (int i = 0; i < HELD; i++) {
        if (held[i] != NULL) {
            char ctx[64];
            snprintf(ctx, sizeof ctx, "held snapshot %d at the end", i);
            expect_state(fx.db, held[i], &held_state[i], ctx);
            shale_snapshot_release(fx.db, held[i]);
        }
    }
    cr_assert_eq(tu_stats(fx.db).snapshots, 0);
    tu_fx_end(&fx);
}

/* Expiry is judged at read time, also through a snapshot: a key whose deadline passes after the
 * snapshot was taken is invisible through it. */
Test(snapshot, ttl_deadline_applies_at_read_time)
{
    tu_fx fx = {0};
    shale_options o = small_opts();
    uint64_t t0 = 1700000000000ull;

    atomic_store(&api_now, t0);
    o.env = api_fake_env();
    o.ttl_sweep_interval_ms = 3600000;
    tu_fx_begin(&fx, "api-snap", &o);
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("t"), TU_SL("v"), t0 + 1000, &ERR));
    tu_put(fx.db, "p", "v");
    shale_snapshot *s = shale_snapshot_get(fx.db);
    cr_assert_not_null(s);
    shale_read_opts ro = {.snapshot = s};
    shale_buf buf = {0};
    TU_OK(shale_get(fx.db, &ro, TU_SL("t"), &buf, &ERR));
    TU_OK(shale_flush(fx.db, &ERR));
    TU_OK(shale_get(fx.db, &ro, TU_SL("t"), &buf, &ERR));
    atomic_store(&api_now, t0 + 1000);
    TU_CODE(SHALE_NOT_FOUND, shale_get(fx.db, &ro, TU_SL("t"), &buf, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_get(fx.db, NULL, TU_SL("t"), &buf, &ERR));
    TU_OK(shale_compact(fx.db, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_get(fx.db, &ro, TU_SL("t"), &buf, &ERR));
    TU_OK(shale_get(fx.db, &ro, TU_SL("p"), &buf, &ERR));
    shale_snapshot_release(fx.db, s);
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

Test(snapshot, bad_input)
{
    tu_fx fx = {0};
    shale_buf buf = {0};

    cr_assert_null(shale_snapshot_get(NULL));
    TU_CODE(SHALE_INVALID, shale_flush(NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_compact(NULL, &ERR));
    cr_assert_eq(shale_flush(NULL, NULL), SHALE_INVALID);

    tu_fx_begin(&fx, "api-snap", NULL);
    shale_snapshot_release(fx.db, NULL); /* accepted, does nothing */
    tu_put(fx.db, "a", "1");
    shale_snapshot *s = shale_snapshot_get(fx.db);
    cr_assert_not_null(s);
    cr_assert_eq(shale_snapshot_seq(s), tu_stats(fx.db).last_sequence);
    tu_put(fx.db, "a", "2");
    shale_snapshot *s2 = shale_snapshot_get(fx.db);
    cr_assert_not_null(s2);
    cr_assert_eq(shale_snapshot_seq(s2), shale_snapshot_seq(s) + 1);
    cr_assert_eq(tu_stats(fx.db).snapshots, 2);
    shale_read_opts ro = {.snapshot = s};
    TU_OK(shale_get(fx.db, &ro, TU_SL("a"), &buf, &ERR));
    cr_assert(buf.len == 1 && memcmp(buf.data, "1", 1) == 0);
    shale_snapshot_release(fx.db, s2);
    /* A snapshot left unreleased is released by close (no leak: tu_fx_end checks). Afterwards the
     * handle is a closed shell: no snapshot, flush or compaction. */
    shale_db *db = fx.db;
    tu_fx_close(&fx);
    cr_assert_null(shale_snapshot_get(db));
    TU_CODE(SHALE_CLOSED, shale_flush(db, &ERR));
    TU_CODE(SHALE_CLOSED, shale_compact(db, &ERR));
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

/* A snapshot of an empty database stays empty; one taken before a flush of an emptied database
 * still sees the old keys. */
Test(snapshot, empty_and_emptied)
{
    tu_fx fx = {0};
    shale_options o = small_opts();
    static sstate none, all;

    memset(&none, 0, sizeof none);
    memset(&all, 0, sizeof all);
    tu_fx_begin(&fx, "api-snap", &o);
    shale_snapshot *empty = shale_snapshot_get(fx.db);
    cr_assert_not_null(empty);
    cr_assert_eq(shale_snapshot_seq(empty), 0);
    for (int k = 0; k < NK; k++) {
        put_gen(fx.db, &all, 1, k);
    }
    TU_OK(shale_flush(fx.db, &ERR));
    shale_snapshot *full = shale_snapshot_get(fx.db);
    cr_assert_not_null(full);
    static sstate gone;
    gone = all;
    for (int k = 0; k < NK; k++) {
        del_key(fx.db, &gone, k);
    }
    TU_OK(shale_compact(fx.db, &ERR));
    expect_state(fx.db, empty, &none, "empty snapshot");
    expect_state(fx.db, full, &all, "full snapshot after everything was deleted and compacted");
    expect_state(fx.db, NULL, &none, "now");
    shale_snapshot_release(fx.db, full);
    shale_snapshot_release(fx.db, empty);
    expect_state(fx.db, NULL, &none, "now, snapshots released");
    tu_fx_end(&fx);
}

/* shale_compact drops "shadowed versions no snapshot needs, tombstones and expired entries"
 * (shale.h): once the snapshot that held them is released, a compaction of a database whose
 * every key is deleted leaves no table at all, even though everything already sat in one level. */
Test(snapshot, compact_after_release_drops_what_the_snapshot_held)
{
    tu_fx fx = {0};
    shale_options o = small_opts();
    static sstate st;

    memset(&st, 0, sizeof st);
    tu_fx_begin(&fx, "api-snap", &o);
    for (int k = 0; k < NK; k++) {
        put_gen(fx.db, &st, 1, k);
    }
    TU_OK(shale_flush(fx.db, &ERR));
    shale_snapshot *s = shale_snapshot_get(fx.db);
    cr_assert_not_null(s);
    for (int k = 0; k < NK; k++) {
        del_key(fx.db, &st, k);
    }
    TU_OK(shale_compact(fx.db, &ERR));
    cr_assert_gt(tu_stats(fx.db).table_bytes_on_disk, 0, "the snapshot's versions were dropped");
    shale_snapshot_release(fx.db, s);
    TU_OK(shale_compact(fx.db, &ERR));
    shale_stats ss = tu_stats(fx.db);
    cr_assert_eq(ss.table_bytes_on_disk, 0,
                 "every key is deleted and no snapshot needs the old versions, yet shale_compact "
                 "left %llu table bytes in %llu tables",
                 (unsigned long long)ss.table_bytes_on_disk,
                 (unsigned long long)(ss.level_tables[0] + ss.level_tables[1] + ss.level_tables[2] +
                                      ss.level_tables[3] + ss.level_tables[4] + ss.level_tables[5] +
                                      ss.level_tables[6]));
    expect_state(fx.db, NULL, &st, "now");
    tu_fx_end(&fx);
}
