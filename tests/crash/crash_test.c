/*
 * crash_test: process crashes (SIGKILL) against the public API, at every durability level.
 *
 * The harness (crash_common.h) forks a writer child per cycle (puts, deletes and batches over
 * disjoint per-lane key slices, each acked over a pipe once it returned SHALE_OK), SIGKILLs it at
 * a random moment, reopens the database and compares every key with an exact model: with OS and
 * FULL durability the database must equal the model after the last acked operation or after the
 * one in doubt; with MEMORY durability acked writes may be lost, but what survives must be a
 * prefix. Here the key space is small (160 keys per lane, so deletes and overwrites hit live keys
 * often), values are short (header + 0..119 bytes) and log segments minimal (many segment rolls);
 * the child idles once its planned work is done. The same directory accumulates over all cycles,
 * so recovery replays many segments, torn tails and recoveries that were themselves killed (a
 * kill can land inside the child's open).
 *
 * The verifier's clean close flushes the memtable into a table, so from the second cycle on the
 * child recovers tables plus the log it wrote (and kills can land in a flush or compaction). Once
 * tables hold data stats.live_keys is an estimate (include/shale.h), so it is compared exactly
 * with the readable count only while everything is in the memtable, and after a full compaction
 * (shale_compact), which every fifth cycle and the last one run before the verifier closes.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <string.h>

#include "shale.h"

#include "crash_common.h"

#define SEG_BYTES (64u * 1024u) /* the minimum: many segment rolls */

static shale_options crash_opts(const crash_variant *v, crash_open why)
{
    return (shale_options){
        .create_if_missing = why == CRASH_CREATE,
        .durability = v->durability,
        .wal_segment_bytes = why == CRASH_CREATE ? 0 : SEG_BYTES,
    };
}

/* Whether data lives outside the mutable memtable (then live_keys is an estimate). */
static bool tables_hold_data(const shale_stats *st)
{
    for (int l = 0; l < 8; l++) {
        if (st->level_tables[l] != 0) {
            return true;
        }
    }
    return st->immutable_memtables != 0;
}

/* Reads every key (crash_read_actual) and checks the key counters; returns how many keys are
 * present. */
static uint64_t read_and_count(crash_run *r, shale_db *db, unsigned cycle)
{
    const crash_variant *v = &r->v;
    shale_stats st;
    uint64_t present = crash_read_actual(r, db, cycle, &st);

    cr_assert_eq(st.estimated_live_keys, st.live_keys,
                 "%s cycle %u: estimated_live_keys %" PRIu64 " != live_keys %" PRIu64, v->name,
                 cycle, st.estimated_live_keys, st.live_keys);
    /* Exact only while every key is in the memtable (recovered from the log alone); with
     * tables, compact_and_check makes the comparison exact. */
    if (!tables_hold_data(&st)) {
        cr_assert_eq(st.live_keys, present,
                     "%s cycle %u: live_keys %" PRIu64 " but %" PRIu64 " keys readable", v->name,
                     cycle, st.live_keys, present);
    }
    return present;
}

/* Compacts everything, checks that this lost or changed nothing and that live_keys is exact
 * again (one version per key, no tombstones, nothing in the memtable). */
static void compact_and_check(crash_run *r, shale_db *db, unsigned cycle)
{
    static uint64_t before[CRASH_MAX_LANES][CRASH_MAX_LANE_KEYS];
    const crash_variant *v = &r->v;
    shale_error err = {0};
    shale_stats st;

    for (unsigned l = 0; l < v->lanes; l++) {
        memcpy(before[l], r->lanes[l].actual, sizeof before[l]);
    }
    shale_code rc = shale_compact(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s cycle %u: compact: %s (%s)", v->name, cycle, shale_strerror(rc),
                 err.msg);
    uint64_t present = read_and_count(r, db, cycle);
    for (unsigned l = 0; l < v->lanes; l++) {
        cr_assert(memcmp(before[l], r->lanes[l].actual, sizeof before[l]) == 0,
                  "%s cycle %u: lane %u: compaction changed the data", v->name, cycle, l);
    }
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(st.live_keys, present,
                 "%s cycle %u: after a full compaction live_keys %" PRIu64 " but %" PRIu64
                 " keys readable",
                 v->name, cycle, st.live_keys, present);
}

static void check(crash_run *r, shale_db *db, unsigned cycle)
{
    read_and_count(r, db, cycle);
    if (cycle % 5 == 4 || cycle + 1 == r->v.cycles) {
        compact_and_check(r, db, cycle);
    }
}

static const crash_config cfg = {
    .name = "crash",
    .lane_keys = 160,
    .key_base = 0,
    .salt = 0x5bd1e995ull,
    /* 60% puts, 20% deletes, 20% batches */
    .kind_range = 10,
    .put_below = 6,
    .del_below = 8,
    .value_min = 0,
    .value_spread = 120,
    .mixed_delay_div = 8,
    .ack_wait_ms = 0,
    .options = crash_opts,
    .check = check,
};

static void run(const crash_variant *v)
{
    crash_run_variant(&cfg, v, NULL);
}

/* Variants: name, lanes, durability, cycles, ops per lane per cycle, max acks before the kill,
 * max delay before the kill (us), seed. */

Test(crash, full_single_writer)
{
    run(&(crash_variant){"full/1", 1, SHALE_DURABILITY_FULL, 80, 2000, 60, 20000, 0x5a1e0001});
}

Test(crash, full_four_writers_group_commit)
{
    run(&(crash_variant){"full/4", 4, SHALE_DURABILITY_FULL, 40, 1500, 120, 20000, 0x5a1e0004});
}

Test(crash, os_single_writer)
{
    run(&(crash_variant){"os/1", 1, SHALE_DURABILITY_OS, 40, 2000, 600, 20000, 0x5a1e00a5});
}

Test(crash, os_four_writers)
{
    run(&(crash_variant){"os/4", 4, SHALE_DURABILITY_OS, 25, 1500, 600, 20000, 0x5a1e04a5});
}

Test(crash, memory_single_writer_prefix)
{
    run(&(crash_variant){"memory/1", 1, SHALE_DURABILITY_MEMORY, 40, 2000, 600, 20000, 0x5a1e000e});
}
