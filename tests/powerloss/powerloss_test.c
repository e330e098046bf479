/*
 * powerloss_test: power loss and I/O faults, through env_fault, against the public API.
 *
 * Power loss: the database runs on env_fault_env(f) over env_posix() in a temporary directory.
 * The test writes with a mix of per-write durability levels (FULL, OS, MEMORY), then
 * env_fault_crash(f) freezes the disk, shale_close lets go of the files (its errors are expected),
 * and env_fault_drop_unsynced(f) rolls the directory back to what was fsynced, either dropping
 * every unsynced byte or keeping a random prefix of them (a torn write). The reopened database
 * must open cleanly (a torn tail is cut, never reported as corruption) and equal the model after
 * some point P of the write sequence where P is at or after the last FULL-acked write: the log is
 * a single ordered stream, so a synced commit makes every commit before it durable too, and what
 * survives beyond it is a prefix (no holes). Values carry their write's id and are checked byte
 * for byte.
 *
 * Faults: a failed or short log write fails exactly that commit with SHALE_IO and leaves no trace
 * of it (in memory or on disk) while later commits go on; a failed fdatasync stops all writes
 * (SHALE_CLOSED) while reads go on; a fault at any step of shale_open fails it cleanly and a later
 * open works with no data lost.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shale.h"

#include "env/env.h"
#include "env/env_fault.h"
#include "testutil.h"

#define PL_KEYS   48u
#define MAX_BATCH 6u
#define BIG_VALUE (40u * 1024u)
#define VALUE_CAP (BIG_VALUE + 64u)
#define SMALL_SEG (64u * 1024u)

/* ---- the write model ------------------------------------------------------------------------ */

enum wop_kind { W_PUT, W_DEL, W_BATCH };

typedef struct wop {
    enum wop_kind kind;
    shale_durability level;
    uint32_t nkeys;
    uint32_t keys[MAX_BATCH];
} wop;

typedef struct model {
    uint64_t seed;
    uint64_t next_id;         /* id of the next write (ids start at 1) */
    uint64_t state[PL_KEYS];  /* id of the write whose value the key holds; 0 = absent */
    uint64_t actual[PL_KEYS]; /* read back from the database */
    unsigned value_mode;      /* 0 small, 1 some block-spanning, 2 ~2 KiB (segment rolls) */
    uint64_t seg_bytes;
    char *vbuf;
    shale_buf got;
} model;

static void gen_wop(const model *m, uint64_t id, wop *out)
{
    tu_rng r;
    tu_rng_seed(&r, tu_mix64(m->seed ^ tu_mix64(id)));
    uint64_t kind = tu_rng_below(&r, 20);
    uint64_t level = tu_rng_below(&r, 20);

    out->kind = kind < 12 ? W_PUT : kind < 15 ? W_DEL : W_BATCH;
    out->level = level < 7    ? SHALE_DURABILITY_FULL
                 : level < 14 ? SHALE_DURABILITY_OS
                              : SHALE_DURABILITY_MEMORY;
    out->nkeys = out->kind == W_BATCH ? 2 + (uint32_t)tu_rng_below(&r, MAX_BATCH - 1) : 1;
    for (uint32_t i = 0; i < out->nkeys; i++) {
        bool dup;
        do {
            out->keys[i] = (uint32_t)tu_rng_below(&r, PL_KEYS);
            dup = false;
            for (uint32_t j = 0; j < i; j++) {
                dup = dup || out->keys[j] == out->keys[i];
            }
        } while (dup);
    }
}

static size_t make_value(const model *m, char *buf, uint64_t id, uint32_t k)
{
    uint64_t h = tu_mix64(m->seed ^ tu_mix64(id) ^ 0xabcdef);
    size_t len;

    if (m->value_mode == 1 && h % 16 == 0) {
        len = BIG_VALUE - (size_t)(h >> 20) % 8192; /* spans a 32 KiB block */
    } else if (m->value_mode == 2) {
        len = 1024 + (size_t)(h >> 20) % 2048;
    } else {
        len = (size_t)(h >> 20) % 300;
    }
    int n = snprintf(buf, 64, "I%" PRIu64 " K%u|", id, k);
    if (len < (size_t)n) {
        len = (size_t)n;
    }
    for (size_t i = (size_t)n; i < len; i++) {
        buf[i] = (char)('A' + (id * 7 + k + i) % 53);
    }
    return len;
}

static shale_slice pkey(char *buf, uint32_t k)
{
    return tu_key(buf, 1000 + k);
}

static shale_code apply_wop(model *m, shale_db *db, uint64_t id, const wop *o, shale_error *err)
{
    shale_write_opts w = {.durability = o->level};
    char kb[17];
    shale_code rc = SHALE_OK;

    if (o->kind == W_PUT) {
        size_t n = make_value(m, m->vbuf, id, o->keys[0]);
        return shale_put(db, &w, pkey(kb, o->keys[0]), (shale_slice){m->vbuf, n}, err);
    }
    if (o->kind == W_DEL) {
        return shale_delete(db, &w, pkey(kb, o->keys[0]), err);
    }
    shale_batch *b = shale_batch_new();
    cr_assert_not_null(b);
    for (uint32_t i = 0; i < o->nkeys && rc == SHALE_OK; i++) {
        size_t n = make_value(m, m->vbuf, id, o->keys[i]);
        rc = shale_batch_put(b, pkey(kb, o->keys[i]), (shale_slice){m->vbuf, n}, err);
    }
    if (rc == SHALE_OK) {
        rc = shale_write(db, &w, b, err);
    }
    shale_batch_free(b);
    return rc;
}

static void model_init(model *m, uint64_t seed, unsigned value_mode, uint64_t seg_bytes)
{
    memset(m, 0, sizeof *m);
    m->seed = seed;
    m->next_id = 1;
    m->value_mode = value_mode;
    m->seg_bytes = seg_bytes;
    m->vbuf = malloc(VALUE_CAP);
    cr_assert_not_null(m->vbuf);
}

static void model_free(model *m)
{
    free(m->vbuf);
    shale_buf_free(&m->got);
}

/* Whether any data of `st` lives outside the (mutable) memtable: then live_keys is an estimate
 * (include/shale.h: a put over a key in a table counts as new, a tombstone is taken to hide one
 * put) and cannot be compared exactly with the readable count. */
static bool tables_hold_data(const shale_stats *st)
{
    for (int l = 0; l < 8; l++) {
        if (st->level_tables[l] != 0) {
            return true;
        }
    }
    return st->immutable_memtables != 0;
}

/* Reads every key of the key space into m->actual, checking each value byte for byte. Returns how
 * many are present. live_keys must equal that count while everything is in the memtable (a
 * database only ever recovered from its log); with tables it is an estimate, made exact by
 * compact_and_check. */
static uint64_t read_actual(model *m, shale_db *db, const char *ctx)
{
    char kb[17];
    uint64_t present = 0;

    for (uint32_t k = 0; k < PL_KEYS; k++) {
        shale_error err = {0};
        shale_code rc = shale_get(db, NULL, pkey(kb, k), &m->got, &err);
        cr_assert(rc == SHALE_OK || rc == SHALE_NOT_FOUND, "%s: get: %s (%s)", ctx,
                  shale_strerror(rc), err.msg);
        m->actual[k] = 0;
        if (rc == SHALE_NOT_FOUND) {
            continue;
        }
        present++;
        char head[64];
        tu_head(head, sizeof head, m->got.data, m->got.len);
        uint64_t id = 0;
        unsigned vk = 0;
        cr_assert(sscanf(head, "I%" SCNu64 " K%u|", &id, &vk) == 2 && vk == k && id > 0,
                  "%s: key %u holds a foreign value '%.30s'", ctx, k, head);
        size_t wl = make_value(m, m->vbuf, id, k);
        cr_assert(wl == m->got.len && memcmp(m->vbuf, m->got.data, wl) == 0,
                  "%s: key %u: the value of write %" PRIu64 " is damaged (%zu bytes, want %zu)",
                  ctx, k, id, m->got.len, wl);
        m->actual[k] = id;
    }
    shale_stats st;
    shale_error err = {0};
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(st.estimated_live_keys, st.live_keys,
                 "%s: estimated_live_keys %" PRIu64 " != live_keys %" PRIu64, ctx,
                 st.estimated_live_keys, st.live_keys);
    if (!tables_hold_data(&st)) {
        cr_assert_eq(st.live_keys, present, "%s: live_keys %" PRIu64 ", readable %" PRIu64, ctx,
                     st.live_keys, present);
    }
    return present;
}

/* Compacts everything (flush, then merge every level down: one version per key, no tombstones),
 * checks that this lost or changed nothing, and that live_keys is then exact again. */
static void compact_and_check(model *m, shale_db *db, const char *ctx)
{
    uint64_t before[PL_KEYS];
    shale_error err = {0};
    shale_stats st;

    memcpy(before, m->actual, sizeof before);
    shale_code rc = shale_compact(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: compact: %s (%s)", ctx, shale_strerror(rc), err.msg);
    uint64_t present = read_actual(m, db, ctx);
    cr_assert(memcmp(before, m->actual, sizeof before) == 0, "%s: compaction changed the data",
              ctx);
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(st.immutable_memtables, 0, "%s: a memtable is left after compact", ctx);
    cr_assert_eq(st.live_keys, present,
                 "%s: after a full compaction live_keys %" PRIu64 ", readable %" PRIu64, ctx,
                 st.live_keys, present);
}

/* Finds P in [lo, hi] such that the model after writes first..P equals the database; leaves
 * m->state there. The state on entry is the model after write first-1. */
static uint64_t match(model *m, uint64_t first, uint64_t lo, uint64_t hi, const char *ctx)
{
    uint64_t mismatch = 0;
    uint64_t at = first - 1;
    uint64_t want_lo[PL_KEYS];
    bool found;

    memcpy(want_lo, m->state, sizeof want_lo);
    for (uint32_t k = 0; k < PL_KEYS; k++) {
        mismatch += m->state[k] != m->actual[k];
    }
    found = at >= lo && mismatch == 0;
    while (!found && at < hi) {
        wop o;
        at++;
        gen_wop(m, at, &o);
        for (uint32_t i = 0; i < o.nkeys; i++) {
            uint32_t k = o.keys[i];
            mismatch -= m->state[k] != m->actual[k];
            m->state[k] = o.kind == W_DEL ? 0 : at;
            mismatch += m->state[k] != m->actual[k];
        }
        if (at == lo) {
            memcpy(want_lo, m->state, sizeof want_lo);
        }
        found = at >= lo && mismatch == 0;
    }
    if (!found) {
        char msg[400];
        tu_diff_keys(msg, sizeof msg, want_lo, m->actual, PL_KEYS);
        cr_assert_fail("%s: the database equals the model after no write in %" PRIu64 "..%" PRIu64
                       " (last FULL ack %" PRIu64 "); against the state after the "
                       "last FULL ack:%s",
                       ctx, lo, hi, lo, msg);
    }
    return at;
}

static shale_db *open_db(const char *dir, const shale_env *env, const model *m, shale_stats *st_out,
                         const char *ctx)
{
    shale_options o = {.create_if_missing = true,
                       .durability = SHALE_DURABILITY_FULL,
                       .wal_segment_bytes = m->seg_bytes,
                       .env = env};
    shale_error err = {0};
    shale_db *db = NULL;
    shale_code rc = shale_open(dir, &o, &db, &err);

    cr_assert_eq(rc, SHALE_OK, "%s: open: %s (%s)", ctx, shale_strerror(rc), err.msg);
    if (st_out != NULL) {
        cr_assert_eq(shale_stats_get(db, st_out, &err), SHALE_OK, "%s", err.msg);
        cr_assert_eq(st_out->salvaged_records, 0, "%s: salvaged records without salvage", ctx);
    }
    return db;
}

static void close_ok(shale_db *db, const char *ctx)
{
    shale_error err = {0};
    shale_code rc = shale_close(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: close: %s (%s)", ctx, shale_strerror(rc), err.msg);
}

typedef struct cycle_result {
    uint64_t truncated_bytes; /* torn tail cut by the first reopen */
    uint64_t survivors;       /* unsynced writes that survived */
    uint64_t segments;        /* log segments before the crash */
} cycle_result;

/* One power-loss cycle: open on the fault env, write `nops`, crash, drop, reopen on `reopen_env`,
 * match against the model, reopen once more (must be clean and equal). */
static cycle_result power_cycle(model *m, env_fault *f, const char *dir, unsigned nops,
                                env_fault_drop_mode mode, uint64_t drop_seed,
                                const shale_env *reopen_env, const char *tag)
{
    char ctx[160];
    cycle_result res = {0};
    shale_error err = {0};
    shale_stats st;

    snprintf(ctx, sizeof ctx, "%s seed %" PRIu64 " (write model seed %" PRIu64 ")", tag, drop_seed,
             m->seed);
    shale_db *db = open_db(dir, env_fault_env(f), m, &st, ctx);
    /* What was there before this cycle is still there. */
    read_actual(m, db, ctx);
    cr_assert(memcmp(m->actual, m->state, sizeof m->state) == 0,
              "%s: the database changed between the last reopen and this one", ctx);

    uint64_t first = m->next_id;
    uint64_t last_full = first - 1;
    for (unsigned i = 0; i < nops; i++) {
        uint64_t id = m->next_id++;
        wop o;
        gen_wop(m, id, &o);
        shale_code rc = apply_wop(m, db, id, &o, &err);
        cr_assert_eq(rc, SHALE_OK, "%s: write %" PRIu64 ": %s (%s)", ctx, id, shale_strerror(rc),
                     err.msg);
        if (o.level == SHALE_DURABILITY_FULL) {
            last_full = id;
        }
    }
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
    res.segments = st.log_segments;

    env_fault_crash(f);
    (void)shale_close(db, NULL); /* fails: the disk is gone */
    shale_code rc = env_fault_drop_unsynced(f, mode, drop_seed, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: drop_unsynced: %s", ctx, err.msg);

    db = open_db(dir, reopen_env, m, &st, ctx);
    res.truncated_bytes = st.truncated_bytes;
    read_actual(m, db, ctx);
    close_ok(db, ctx);
    uint64_t at = match(m, first, last_full, m->next_id - 1, ctx);
    res.survivors = at - last_full;

    /* The recovered state is stable: a second reopen cuts nothing and sees the same. (The first
     * reopen's clean close flushed the memtable into a table, so live_keys is checked exactly
     * after a full compaction, which also puts the next cycle's power loss after one.) */
    db = open_db(dir, reopen_env, m, &st, ctx);
    cr_assert_eq(st.truncated_bytes, 0, "%s: second reopen truncated %" PRIu64 " bytes", ctx,
                 st.truncated_bytes);
    read_actual(m, db, ctx);
    cr_assert(memcmp(m->actual, m->state, sizeof m->state) == 0,
              "%s: the second reopen sees a different database", ctx);
    compact_and_check(m, db, ctx);
    close_ok(db, ctx);
    return res;
}

static env_fault *new_fault(void)
{
    env_fault *f = env_fault_new(env_posix());
    cr_assert_not_null(f);
    return f;
}

/* ---- power loss ----------------------------------------------------------------------------- */

Test(powerloss, creation_is_durable)
{
    char *dir = tu_tmpdir("pl-create");
    char *db_dir = tu_path(dir, "db");
    env_fault *f = new_fault();
    shale_options o = {
        .create_if_missing = true, .durability = SHALE_DURABILITY_FULL, .env = env_fault_env(f)};
    shale_error err = {0};
    shale_db *db = NULL;
    char kb[17];
    shale_buf got = {0};

    cr_assert_eq(shale_open(db_dir, &o, &db, &err), SHALE_OK, "%s", err.msg);
    env_fault_crash(f);
    (void)shale_close(db, NULL);
    cr_assert_eq(env_fault_drop_unsynced(f, ENV_FAULT_DROP_ALL, 1, &err), SHALE_OK, "%s", err.msg);

    /* The database existed once shale_open returned: it must open without create_if_missing. */
    o.create_if_missing = false;
    shale_code rc = shale_open(db_dir, &o, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "reopen after a power loss right after creation: %s (%s)",
                 shale_strerror(rc), err.msg);
    cr_assert_eq(shale_put(db, NULL, tu_key(kb, 1), (shale_slice){"one", 3}, &err), SHALE_OK, "%s",
                 err.msg);
    env_fault_crash(f);
    (void)shale_close(db, NULL);
    cr_assert_eq(env_fault_drop_unsynced(f, ENV_FAULT_DROP_ALL, 2, &err), SHALE_OK, "%s", err.msg);

    o.env = NULL;
    rc = shale_open(db_dir, &o, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s (%s)", shale_strerror(rc), err.msg);
    cr_assert_eq(shale_get(db, NULL, tu_key(kb, 1), &got, &err), SHALE_OK,
                 "a FULL put was lost by a power loss: %s", err.msg);
    cr_assert(got.len == 3 && memcmp(got.data, "one", 3) == 0);
    close_ok(db, "final");

    shale_buf_free(&got);
    env_fault_free(f);
    tu_rm_rf(dir);
    free(db_dir);
    free(dir);
    tu_assert_no_leaks();
}

/* FULL writes first, then only unsynced ones, then the power goes: with every unsynced byte
 * dropped, exactly the FULL writes remain (plus any unsynced prefix the engine chose to sync). */
Test(powerloss, drop_all_keeps_every_full_ack)
{
    char *dir = tu_tmpdir("pl-dropall");
    env_fault *f = new_fault();
    model m;
    shale_error err = {0};
    shale_stats st;
    char kb[17];

    model_init(&m, 77, 0, 0);
    shale_db *db = open_db(dir, env_fault_env(f), &m, &st, "dropall");
    /* 200 FULL writes of distinct-per-key ids, then 100 OS and 100 MEMORY. */
    for (uint32_t i = 0; i < 400; i++) {
        uint64_t id = m.next_id++;
        uint32_t k = i % PL_KEYS;
        shale_write_opts w = {.durability = i < 200   ? SHALE_DURABILITY_FULL
                                            : i < 300 ? SHALE_DURABILITY_OS
                                                      : SHALE_DURABILITY_MEMORY};
        size_t n = make_value(&m, m.vbuf, id, k);
        cr_assert_eq(shale_put(db, &w, pkey(kb, k), (shale_slice){m.vbuf, n}, &err), SHALE_OK, "%s",
                     err.msg);
        if (i < 200) {
            m.state[k] = id;
        }
    }
    env_fault_crash(f);
    (void)shale_close(db, NULL);
    cr_assert_eq(env_fault_drop_unsynced(f, ENV_FAULT_DROP_ALL, 5, &err), SHALE_OK, "%s", err.msg);

    db = open_db(dir, env_fault_env(f), &m, &st, "dropall reopen");
    read_actual(&m, db, "dropall reopen");
    close_ok(db, "dropall");
    /* Each key's value is from its last FULL write or from a later (surviving) unsynced one,
     * and the survivors form a prefix of the unsynced writes. */
    uint64_t survivors_end = 200;
    for (uint32_t k = 0; k < PL_KEYS; k++) {
        cr_assert_geq(m.actual[k], m.state[k],
                      "key %u: FULL write %" PRIu64 " lost (has %" PRIu64 ")", k, m.state[k],
                      m.actual[k]);
        if (m.actual[k] > survivors_end) {
            survivors_end = m.actual[k];
        }
    }
    for (uint32_t k = 0; k < PL_KEYS; k++) {
        /* Every write of key k up to survivors_end must have survived: its newest one is the
         * largest id = k+1 (mod 48) at or below survivors_end. */
        uint64_t newest = m.state[k];
        for (uint64_t id = 201; id <= survivors_end; id++) {
            if ((id - 1) % PL_KEYS == k) {
                newest = id;
            }
        }
        cr_assert_eq(m.actual[k], newest,
                     "key %u: a hole in the surviving writes (want write %" PRIu64 ", has %" PRIu64
                     ", writes survive up to %" PRIu64 ")",
                     k, newest, m.actual[k], survivors_end);
    }
    model_free(&m);
    env_fault_free(f);
    tu_rm_rf(dir);
    free(dir);
    tu_assert_no_leaks();
}

/* Many seeds, one fresh database each: mixed levels, block-spanning values, batches, deletes,
 * then a torn write of a random prefix of the unsynced bytes. */
Test(powerloss, keep_random_many_seeds)
{
    env_fault *f = new_fault();
    uint64_t torn = 0, survivors = 0;

    for (uint64_t seed = 1; seed <= 80; seed++) {
        char *dir = tu_tmpdir("pl-random");
        model m;
        model_init(&m, 1000 + seed, 1, 0);
        cycle_result res =
            power_cycle(&m, f, dir, 60, seed % 4 == 0 ? ENV_FAULT_DROP_ALL : ENV_FAULT_KEEP_RANDOM,
                        seed, seed % 2 ? env_posix() : env_fault_env(f), "keep_random");
        torn += res.truncated_bytes > 0;
        survivors += res.survivors;
        model_free(&m);
        tu_rm_rf(dir);
        free(dir);
    }
    cr_log_info("keep_random: %" PRIu64 " torn tails cut, %" PRIu64 " unsynced writes survived",
                torn, survivors);
    /* Otherwise the runs never exercised a torn tail. */
    cr_assert_gt(torn, 0, "no run produced a torn tail");
    env_fault_free(f);
    tu_assert_no_leaks();
}

/* 64 KiB segments and ~2 KiB values: the power goes after several segment rolls. An unsynced
 * tail of a rolled segment followed by a synced record in the next one would be a hole. */
Test(powerloss, across_segment_rolls)
{
    env_fault *f = new_fault();

    for (uint64_t seed = 1; seed <= 16; seed++) {
        char *dir = tu_tmpdir("pl-rolls");
        model m;
        model_init(&m, 2000 + seed, 2, SMALL_SEG);
        cycle_result res = power_cycle(&m, f, dir, 150, ENV_FAULT_KEEP_RANDOM, seed,
                                       seed % 2 ? env_posix() : env_fault_env(f), "rolls");
        cr_assert_geq(res.segments, 3, "only %" PRIu64 " segments: no rolls to test", res.segments);
        model_free(&m);
        tu_rm_rf(dir);
        free(dir);
    }
    env_fault_free(f);
    tu_assert_no_leaks();
}

/* One directory through many power losses: every cycle opens what the last one left. */
Test(powerloss, across_reopen_cycles)
{
    env_fault *f = new_fault();
    char *dir = tu_tmpdir("pl-cycles");
    model m;

    model_init(&m, 3000, 1, SMALL_SEG);
    for (uint64_t c = 1; c <= 30; c++) {
        power_cycle(&m, f, dir, 40, c % 5 == 0 ? ENV_FAULT_DROP_ALL : ENV_FAULT_KEEP_RANDOM, c,
                    c % 3 ? env_fault_env(f) : env_posix(), "cycles");
    }
    model_free(&m);
    env_fault_free(f);
    tu_rm_rf(dir);
    free(dir);
    tu_assert_no_leaks();
}

/* ---- write faults --------------------------------------------------------------------------- */

static void put_ok(shale_db *db, uint64_t i, const char *ctx)
{
    char kb[17];
    char vb[32];
    shale_error err = {0};
    int n = snprintf(vb, sizeof vb, "value-%" PRIu64, i);
    shale_code rc = shale_put(db, NULL, tu_key(kb, i), (shale_slice){vb, (size_t)n}, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: put %" PRIu64 ": %s (%s)", ctx, i, shale_strerror(rc), err.msg);
}

static void expect_key(shale_db *db, uint64_t i, bool present, const char *ctx)
{
    char kb[17];
    char vb[32];
    shale_buf got = {0};
    shale_error err = {0};
    int n = snprintf(vb, sizeof vb, "value-%" PRIu64, i);
    shale_code rc = shale_get(db, NULL, tu_key(kb, i), &got, &err);

    if (present) {
        cr_assert_eq(rc, SHALE_OK, "%s: key %" PRIu64 " missing: %s (%s)", ctx, i,
                     shale_strerror(rc), err.msg);
        cr_assert(got.len == (size_t)n && memcmp(got.data, vb, (size_t)n) == 0,
                  "%s: key %" PRIu64 " has a wrong value", ctx, i);
    } else {
        cr_assert_eq(rc, SHALE_NOT_FOUND, "%s: key %" PRIu64 " should be absent: %s", ctx, i,
                     shale_strerror(rc));
    }
    shale_buf_free(&got);
}

/* The failing commit: a put of key 500 or a batch of keys 500..502. */
static shale_code failing_commit(shale_db *db, bool batch, shale_error *err)
{
    char kb[17];
    char vb[32];

    if (!batch) {
        int n = snprintf(vb, sizeof vb, "value-%d", 500);
        return shale_put(db, NULL, tu_key(kb, 500), (shale_slice){vb, (size_t)n}, err);
    }
    shale_batch *b = shale_batch_new();
    cr_assert_not_null(b);
    for (uint64_t i = 500; i < 503; i++) {
        int n = snprintf(vb, sizeof vb, "value-%" PRIu64, i);
        cr_assert_eq(shale_batch_put(b, tu_key(kb, i), (shale_slice){vb, (size_t)n}, NULL),
                     SHALE_OK);
    }
    shale_code rc = shale_write(db, NULL, b, err);
    shale_batch_free(b);
    return rc;
}

static void write_fault_case(int sys_errno, bool short_write, bool batch, shale_durability level,
                             uint64_t nth)
{
    char ctx[128];
    char *dir = tu_tmpdir("pl-wfault");
    env_fault *f = new_fault();
    shale_options o = {.create_if_missing = true, .durability = level, .env = env_fault_env(f)};
    shale_error err = {0};
    shale_db *db = NULL;
    shale_stats st;

    snprintf(ctx, sizeof ctx, "write fault errno %d%s on the %s %" PRIu64 " (%s)", sys_errno,
             short_write ? " short" : "", batch ? "batch" : "put", nth,
             shale_durability_name(level));
    cr_assert_eq(shale_open(dir, &o, &db, &err), SHALE_OK, "%s: %s", ctx, err.msg);
    for (uint64_t i = 0; i < 10; i++) {
        put_ok(db, i, ctx);
    }
    /* Fail the nth log write from here: nth-1 commits succeed, the nth fails. */
    env_fault_fail_nth(f, ENV_OP_WRITE, nth, sys_errno, short_write);
    for (uint64_t i = 10; i < 10 + nth - 1; i++) {
        put_ok(db, i, ctx);
    }
    shale_code rc = failing_commit(db, batch, &err);
    cr_assert_eq(rc, SHALE_IO, "%s: the failing commit returned %s (%s)", ctx, shale_strerror(rc),
                 err.msg);
    cr_assert_eq(err.code, SHALE_IO, "%s", ctx);
    cr_assert_eq(err.sys_errno, sys_errno, "%s: sys_errno %d", ctx, err.sys_errno);
    cr_assert_neq(err.msg[0], '\0', "%s: no message", ctx);
    /* The failed commit is not applied... */
    for (uint64_t i = 500; i < 503; i++) {
        expect_key(db, i, false, ctx);
    }
    /* ...the database keeps taking writes... */
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK);
    cr_assert(!st.writes_stopped, "%s: a failed write stopped writes: %s", ctx, st.stop_reason);
    for (uint64_t i = 20; i < 30; i++) {
        put_ok(db, i, ctx);
    }
    for (uint64_t i = 0; i < 30; i++) {
        expect_key(db, i, i < 10 + nth - 1 || i >= 20, ctx);
    }
    rc = shale_close(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: close: %s", ctx, err.msg);

    /* ...and after a reopen on the plain OS, every ack is there and the failed commit is not,
     * with no half record left behind (nothing to cut, nothing to salvage). */
    o.env = NULL;
    o.create_if_missing = false;
    rc = shale_open(dir, &o, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: reopen: %s (%s)", ctx, shale_strerror(rc), err.msg);
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK);
    cr_assert_eq(st.truncated_bytes, 0, "%s: %" PRIu64 " torn bytes left in the log", ctx,
                 st.truncated_bytes);
    cr_assert_eq(st.salvaged_records, 0);
    for (uint64_t i = 0; i < 30; i++) {
        expect_key(db, i, i < 10 + nth - 1 || i >= 20, ctx);
    }
    for (uint64_t i = 500; i < 503; i++) {
        expect_key(db, i, false, ctx);
    }
    /* Exact even though the clean close flushed the keys into a table: every write was a put of
     * a distinct key (no overwrite, no delete), so no version shadows another. */
    cr_assert_eq(st.live_keys, 20 + nth - 1, "%s: live_keys %" PRIu64, ctx, st.live_keys);
    close_ok(db, ctx);

    env_fault_free(f);
    tu_rm_rf(dir);
    free(dir);
}

Test(fault, write_eio_fails_one_commit)
{
    write_fault_case(EIO, false, false, SHALE_DURABILITY_OS, 1);
    write_fault_case(EIO, false, true, SHALE_DURABILITY_FULL, 2);
    write_fault_case(EIO, false, false, SHALE_DURABILITY_FULL, 3);
    write_fault_case(EIO, false, true, SHALE_DURABILITY_OS, 1);
    tu_assert_no_leaks();
}

Test(fault, write_enospc_fails_one_commit)
{
    write_fault_case(ENOSPC, false, false, SHALE_DURABILITY_FULL, 1);
    write_fault_case(ENOSPC, false, true, SHALE_DURABILITY_OS, 2);
    write_fault_case(ENOSPC, false, true, SHALE_DURABILITY_FULL, 1);
    write_fault_case(ENOSPC, false, false, SHALE_DURABILITY_OS, 3);
    tu_assert_no_leaks();
}

Test(fault, short_write_leaves_no_half_record)
{
    write_fault_case(EIO, true, false, SHALE_DURABILITY_OS, 1);
    write_fault_case(ENOSPC, true, true, SHALE_DURABILITY_OS, 2);
    write_fault_case(ENOSPC, true, false, SHALE_DURABILITY_FULL, 3);
    write_fault_case(EIO, true, true, SHALE_DURABILITY_FULL, 1);
    tu_assert_no_leaks();
}

/* ---- sync faults ---------------------------------------------------------------------------- */

static void sync_fault_case(shale_durability db_level, bool power_loss)
{
    char ctx[96];
    char *dir = tu_tmpdir("pl-sfault");
    env_fault *f = new_fault();
    shale_options o = {.create_if_missing = true, .durability = db_level, .env = env_fault_env(f)};
    shale_write_opts full = {.durability = SHALE_DURABILITY_FULL};
    shale_write_opts mem = {.durability = SHALE_DURABILITY_MEMORY};
    shale_error err = {0};
    shale_db *db = NULL;
    shale_stats st;
    char kb[17];
    shale_code rc;

    snprintf(ctx, sizeof ctx, "sync fault (%s db%s)", shale_durability_name(db_level),
             power_loss ? ", then power loss" : "");
    cr_assert_eq(shale_open(dir, &o, &db, &err), SHALE_OK, "%s: %s", ctx, err.msg);
    for (uint64_t i = 0; i < 10; i++) {
        char vb[32];
        int n = snprintf(vb, sizeof vb, "value-%" PRIu64, i);
        rc = shale_put(db, &full, tu_key(kb, i), (shale_slice){vb, (size_t)n}, &err);
        cr_assert_eq(rc, SHALE_OK, "%s: %s", ctx, err.msg);
    }
    env_fault_fail_nth(f, ENV_OP_SYNC, 1, EIO, false);
    rc = shale_put(db, &full, tu_key(kb, 500), (shale_slice){"value-500", 9}, &err);
    cr_assert_eq(rc, SHALE_IO, "%s: the commit whose sync failed returned %s", ctx,
                 shale_strerror(rc));
    cr_assert_eq(err.sys_errno, EIO);

    /* A failed sync is final: every later write is refused, whatever its level. */
    rc = shale_put(db, NULL, tu_key(kb, 501), (shale_slice){"value-501", 9}, &err);
    cr_assert_eq(rc, SHALE_CLOSED, "%s: a write after a failed sync returned %s", ctx,
                 shale_strerror(rc));
    cr_assert(strstr(err.msg, "writes stopped") != NULL, "%s: message '%s'", ctx, err.msg);
    rc = shale_put(db, &mem, tu_key(kb, 502), (shale_slice){"value-502", 9}, &err);
    cr_assert_eq(rc, SHALE_CLOSED, "%s: a MEMORY write after a failed sync returned %s", ctx,
                 shale_strerror(rc));
    rc = shale_delete(db, &full, tu_key(kb, 0), &err);
    cr_assert_eq(rc, SHALE_CLOSED, "%s: a delete after a failed sync returned %s", ctx,
                 shale_strerror(rc));
    shale_batch *b = shale_batch_new();
    cr_assert_not_null(b);
    cr_assert_eq(shale_batch_put(b, tu_key(kb, 503), (shale_slice){"value-503", 9}, NULL),
                 SHALE_OK);
    rc = shale_write(db, NULL, b, &err);
    cr_assert_eq(rc, SHALE_CLOSED, "%s: a batch after a failed sync returned %s", ctx,
                 shale_strerror(rc));
    shale_batch_free(b);

    /* Reads go on, and stats say why writes stopped. */
    for (uint64_t i = 0; i < 10; i++) {
        expect_key(db, i, true, ctx);
    }
    for (uint64_t i = 501; i < 504; i++) {
        expect_key(db, i, false, ctx);
    }
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
    cr_assert(st.writes_stopped, "%s: stats.writes_stopped is false", ctx);
    cr_assert_neq(st.stop_reason[0], '\0', "%s: no stop_reason", ctx);

    if (power_loss) {
        env_fault_crash(f);
    }
    (void)shale_close(db, NULL);
    if (power_loss) {
        cr_assert_eq(env_fault_drop_unsynced(f, ENV_FAULT_DROP_ALL, 9, &err), SHALE_OK, "%s",
                     err.msg);
    }

    o.env = NULL;
    o.create_if_missing = false;
    rc = shale_open(dir, &o, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: reopen: %s (%s)", ctx, shale_strerror(rc), err.msg);
    for (uint64_t i = 0; i < 10; i++) {
        expect_key(db, i, true, ctx);
    }
    /* Key 500 may or may not be there (its bytes may have reached the disk); the refused ones
     * may not. */
    for (uint64_t i = 501; i < 504; i++) {
        expect_key(db, i, false, ctx);
    }
    /* A new handle takes writes again. */
    put_ok(db, 600, ctx);
    expect_key(db, 600, true, ctx);
    close_ok(db, ctx);

    env_fault_free(f);
    tu_rm_rf(dir);
    free(dir);
}

Test(fault, sync_failure_stops_writes)
{
    sync_fault_case(SHALE_DURABILITY_FULL, false);
    sync_fault_case(SHALE_DURABILITY_OS, false); /* a FULL write on an OS database */
    tu_assert_no_leaks();
}

Test(fault, sync_failure_then_power_loss_keeps_acks)
{
    sync_fault_case(SHALE_DURABILITY_FULL, true);
    tu_assert_no_leaks();
}

/* ---- faults while opening ------------------------------------------------------------------- */

static const char *op_name(env_op op)
{
    static const char *const names[ENV_OP_COUNT_] = {
        "open",   "read",   "write", "sync", "sync_dir", "truncate",
        "rename", "remove", "mkdir", "lock", "link",
    };
    return names[op];
}

/* What the directory holds before the faulty open. Except for SETUP_TABLES, each session that
 * builds it ends as a crash does (tu_close_as_crash), not with a clean close (which would flush
 * the memtable into a table and delete the log): the open under test recovers from the log. */
typedef enum open_setup {
    SETUP_FRESH,       /* nothing: the open creates the database (and its directory) */
    SETUP_LOGS,        /* keys 0..59 in two log segments, intact, no table */
    SETUP_TORN,        /* the same, the newest segment cut inside key 59's record */
    SETUP_TORN_HEADER, /* keys 0..59, plus a third segment cut inside its header (key 60) */
    SETUP_TABLES,      /* keys 0..59 cleanly closed twice: in tables, no log to replay */
} open_setup;

static const char *const setup_names[] = {"new", "logs", "torn-tail", "torn-header", "tables"};

/* The newest NNNNNN.log in dir (malloc'ed path). */
static char *newest_segment(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char best[64] = "";

    cr_assert_not_null(d);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len == 10 && strcmp(e->d_name + 6, ".log") == 0 && strcmp(e->d_name, best) > 0) {
            snprintf(best, sizeof best, "%.10s", e->d_name);
        }
    }
    closedir(d);
    cr_assert_neq(best[0], '\0', "no log segment in %s", dir);
    return tu_path(dir, best);
}

/* Ends a fill session: cleanly for SETUP_TABLES, else as a crash right after the writes. */
static void end_fill(shale_db *db, const char *dir, open_setup setup)
{
    if (setup == SETUP_TABLES) {
        close_ok(db, "fill");
    } else {
        tu_close_as_crash(db, dir);
    }
}

static void fill_db(const char *dir, open_setup setup)
{
    shale_options o = {.create_if_missing = true};
    shale_error err = {0};
    shale_db *db = NULL;

    cr_assert_eq(shale_open(dir, &o, &db, &err), SHALE_OK, "%s", err.msg);
    for (uint64_t i = 0; i < 50; i++) {
        put_ok(db, i, "fill");
    }
    end_fill(db, dir, setup);
    /* A second segment, so recovery reads more than one file. */
    cr_assert_eq(shale_open(dir, &o, &db, &err), SHALE_OK, "%s", err.msg);
    for (uint64_t i = 50; i < 60; i++) {
        put_ok(db, i, "fill");
    }
    end_fill(db, dir, setup);
    if (setup == SETUP_TABLES) {
        cr_assert_eq(tu_count_suffix(dir, ".log"), 0, "setup: a clean close left a log");
        cr_assert_gt(tu_count_suffix(dir, ".sst"), 0, "setup: a clean close left no table");
        return;
    }
    cr_assert_geq(tu_count_suffix(dir, ".log"), 2, "setup: two sessions left fewer than two logs");
    cr_assert_eq(tu_count_suffix(dir, ".sst"), 0, "setup: the crash images hold a table");
    if (setup == SETUP_TORN) {
        char *seg = newest_segment(dir);
        cr_assert_eq(tu_truncate(seg, (uint64_t)tu_file_size(seg) - 3), 0);
        free(seg);
    } else if (setup == SETUP_TORN_HEADER) {
        cr_assert_eq(shale_open(dir, &o, &db, &err), SHALE_OK, "%s", err.msg);
        put_ok(db, 60, "fill");
        end_fill(db, dir, setup);
        char *seg = newest_segment(dir);
        cr_assert_eq(tu_truncate(seg, 10), 0);
        free(seg);
    }
}

/* Fails the nth operation of `kind` during shale_open, for n = 1, 2, ... until an open no longer
 * reaches it; each round starts from the same directory (see open_setup). Each failed open must
 * report SHALE_IO with the errno, and must leave a directory a plain open accepts, with all the
 * data. `strict`: an open that met the fault must fail (the operation carries durability or data);
 * otherwise it may succeed if the data is intact (say, an info log the engine can do without).
 * One exception to `strict`: an open also removes files as best-effort cleanup (CURRENT.tmp,
 * obsolete logs, tables and manifests; a failure there is logged, not fatal), so an open that met
 * a remove fault may succeed, provided the one removal that matters - the segment torn inside its
 * header (SETUP_TORN_HEADER) - did happen.
 * `must_occur`: the open performs at least one operation of the kind (else the test is empty). */
static void open_fault_kind(env_op kind, open_setup setup, bool strict, bool must_occur)
{
    char *root = tu_tmpdir("pl-ofault");
    char *dir = tu_path(root, "db");
    char *tmpl = tu_path(root, "template");
    env_fault *f = new_fault();
    shale_options o = {.create_if_missing = true, .env = env_fault_env(f)};
    const char *sname = setup_names[setup];
    uint64_t nkeys = setup == SETUP_FRESH ? 0 : setup == SETUP_TORN ? 59 : 60;
    unsigned failures = 0;
    uint64_t n;

    char *torn_seg = NULL; /* base name of the segment the open must remove */
    if (setup != SETUP_FRESH) {
        fill_db(tmpl, setup);
    }
    if (setup == SETUP_TORN_HEADER) {
        char *seg = newest_segment(tmpl);
        torn_seg = strdup(strrchr(seg, '/') + 1);
        cr_assert_not_null(torn_seg);
        free(seg);
    }
    for (n = 1; n <= 64; n++) {
        char ctx[96];
        shale_error err = {0};
        shale_db *db = NULL;

        snprintf(ctx, sizeof ctx, "%s db, EIO on %s #%" PRIu64, sname, op_name(kind), n);
        tu_rm_rf(dir);
        if (setup != SETUP_FRESH) {
            tu_copy_dir(tmpl, dir);
        }
        uint64_t before = env_fault_count(f, kind);
        env_fault_fail_nth(f, kind, n, EIO, false);
        shale_code rc = shale_open(dir, &o, &db, &err);
        bool hit = env_fault_count(f, kind) - before >= n;
        env_fault_clear(f);

        if (!hit) {
            cr_assert_eq(rc, SHALE_OK, "%s: open without a fault failed: %s", ctx, err.msg);
            close_ok(db, ctx);
            break;
        }
        if (rc == SHALE_OK) {
            if (strict && kind == ENV_OP_REMOVE && torn_seg != NULL) {
                /* The fault hit a cleanup remove: the torn segment must be gone all the same. */
                char *p = tu_path(dir, torn_seg);
                cr_assert_lt(tu_file_size(p), 0,
                             "%s: shale_open returned SHALE_OK but left the torn segment %s", ctx,
                             torn_seg);
                free(p);
            } else {
                cr_assert(!strict, "%s: shale_open ignored the failure and returned SHALE_OK", ctx);
            }
            close_ok(db, ctx);
        } else {
            failures++;
            cr_assert_eq(rc, SHALE_IO, "%s: returned %s (%s)", ctx, shale_strerror(rc), err.msg);
            cr_assert_eq(err.code, SHALE_IO, "%s", ctx);
            cr_assert_eq(err.sys_errno, EIO, "%s: sys_errno %d (%s)", ctx, err.sys_errno, err.msg);
            cr_assert_neq(err.msg[0], '\0', "%s: no message", ctx);
        }

        /* Whatever the failed open left behind, a later open works and loses nothing. */
        db = NULL;
        rc = shale_open(dir, &o, &db, &err);
        cr_assert_eq(rc, SHALE_OK, "%s: the open after the failed one: %s (%s)", ctx,
                     shale_strerror(rc), err.msg);
        for (uint64_t i = 0; i < nkeys; i++) {
            expect_key(db, i, true, ctx);
        }
        expect_key(db, nkeys, false, ctx);
        put_ok(db, 1000, ctx);
        expect_key(db, 1000, true, ctx);
        close_ok(db, ctx);
    }
    if (must_occur) {
        cr_assert_gt(n, 1, "%s db: shale_open performs no %s", sname, op_name(kind));
        cr_assert_gt(failures, 0, "%s db: no %s fault made shale_open fail", sname, op_name(kind));
    }
    cr_assert_leq(n, 64, "%s db: shale_open kept meeting %s faults", sname, op_name(kind));

    env_fault_free(f);
    tu_rm_rf(root);
    free(torn_seg);
    free(tmpl);
    free(dir);
    free(root);
}

Test(fault, open_fails_cleanly_on_open_error)
{
    open_fault_kind(ENV_OP_OPEN, SETUP_FRESH, false, true);
    open_fault_kind(ENV_OP_OPEN, SETUP_LOGS, false, true);
    open_fault_kind(ENV_OP_OPEN, SETUP_TORN, false, true);
    open_fault_kind(ENV_OP_OPEN, SETUP_TABLES, false, true);
    tu_assert_no_leaks();
}

Test(fault, open_fails_cleanly_on_sync_dir_error)
{
    open_fault_kind(ENV_OP_SYNC_DIR, SETUP_FRESH, true, true);
    open_fault_kind(ENV_OP_SYNC_DIR, SETUP_LOGS, true, false);
    open_fault_kind(ENV_OP_SYNC_DIR, SETUP_TORN_HEADER, true, true);
    tu_assert_no_leaks();
}

Test(fault, open_fails_cleanly_on_lock_error)
{
    open_fault_kind(ENV_OP_LOCK, SETUP_FRESH, true, true);
    open_fault_kind(ENV_OP_LOCK, SETUP_LOGS, true, true);
    tu_assert_no_leaks();
}

/* EIO while reading the log during recovery is an error, never an early end of the log (which
 * would silently cut acknowledged data). Likewise while reading CURRENT and the manifest. */
Test(fault, open_fails_cleanly_on_read_error)
{
    open_fault_kind(ENV_OP_READ, SETUP_LOGS, true, true);
    open_fault_kind(ENV_OP_READ, SETUP_TORN, true, true);
    open_fault_kind(ENV_OP_READ, SETUP_TABLES, true, true);
    tu_assert_no_leaks();
}

/* Cutting a torn tail is a truncate and a sync (or, for a segment with no complete record, a
 * remove and a directory sync): a failure of either fails the open, and the next open redoes it. */
Test(fault, open_fails_cleanly_on_recovery_cut_error)
{
    open_fault_kind(ENV_OP_TRUNCATE, SETUP_TORN, true, true);
    open_fault_kind(ENV_OP_SYNC, SETUP_TORN, true, true);
    open_fault_kind(ENV_OP_REMOVE, SETUP_TORN_HEADER, true, true);
    tu_assert_no_leaks();
}

Test(fault, open_fails_cleanly_on_create_error)
{
    open_fault_kind(ENV_OP_SYNC, SETUP_FRESH, true, true);
    open_fault_kind(ENV_OP_WRITE, SETUP_FRESH, false, true);
    open_fault_kind(ENV_OP_RENAME, SETUP_FRESH, true, true);
    open_fault_kind(ENV_OP_MKDIR, SETUP_FRESH, true, true);
    tu_assert_no_leaks();
}

/* ---- background (MEMORY-level) log writes ------------------------------------------------- */

/* A failed background write is retried after the log is cut back; while it is failing, MEMORY
 * commits get its error; once it succeeds, nothing acknowledged is missing after a reopen. */
Test(fault, background_write_failure_is_retried_and_loses_nothing)
{
    char *dir = tu_tmpdir("fault-bg");
    env_fault *f = new_fault();
    shale_options o = {.create_if_missing = true,
                       .durability = SHALE_DURABILITY_MEMORY,
                       /* The failure is visible to commits from the failed write to its
                        * retry, one interval later: 20 ms is a window a put every 0.1 ms
                        * cannot miss, even on a loaded machine (1 ms could be). */
                       .wal_flush_interval_ms = 20,
                       .env = env_fault_env(f)};
    shale_db *db = NULL;
    shale_error err;
    uint64_t acked = 0;

    cr_assert_eq(shale_open(dir, &o, &db, &err), SHALE_OK, "%s", err.msg);
    put_ok(db, acked++, "first"); /* creates the segment */
    usleep(60000);                /* its background write is done */
    /* The next background write fails half-way (a short write); its retry succeeds. */
    env_fault_fail_nth(f, ENV_OP_WRITE, 1, EIO, true);
    put_ok(db, acked++, "before the failure");
    bool saw_failure = false;
    for (int i = 0; i < 20000 && (acked < 400 || !saw_failure); i++) {
        /* One put per key, of the value expect_key checks: the failure may land between any
         * two commits, so a second put of the same key could meet it too. */
        char kb[17], vb[32];
        int vn = snprintf(vb, sizeof vb, "value-%" PRIu64, acked);
        shale_code rc = shale_put(db, NULL, tu_key(kb, acked), (shale_slice){vb, (size_t)vn}, &err);
        if (rc == SHALE_IO) {
            saw_failure = true; /* the background error, reported to MEMORY commits */
            usleep(1000);
            continue;
        }
        cr_assert_eq(rc, SHALE_OK, "%s", err.msg);
        acked++;
        if (saw_failure && acked > 50) {
            break;
        }
        usleep(100);
    }
    cr_assert(saw_failure, "a MEMORY commit saw the background write failure");
    shale_stats st;
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK);
    cr_assert_not(st.writes_stopped, "an append failure that was cut back is not final");
    cr_assert_eq(shale_close(db, &err), SHALE_OK, "%s", err.msg);
    o.env = NULL;
    cr_assert_eq(shale_open(dir, &o, &db, &err), SHALE_OK, "%s", err.msg);
    for (uint64_t i = 0; i < acked; i++) {
        expect_key(db, i, true, "after reopen");
    }
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK);
    cr_assert_eq(st.salvaged_records, 0);
    cr_assert_eq(shale_close(db, &err), SHALE_OK);
    env_fault_free(f);
    tu_rm_rf(dir);
    free(dir);
}
