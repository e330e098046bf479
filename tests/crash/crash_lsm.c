/*
 * crash_lsm: process crashes (SIGKILL) while flushes and compactions run, against the public API.
 *
 * As in crash_test.c (the harness is crash_common.h), a forked child writes deterministic
 * operations (puts, deletes, multi-key batches; lanes = writer threads, each owning a disjoint
 * slice of the key space) and reports each one over a pipe only after it returned SHALE_OK; the
 * parent SIGKILLs it at a random moment, reopens the database and compares every key with its
 * model. Here the child runs with FULL durability and tiny budgets (64 KiB write buffer and
 * tables, level-0 trigger 2) and values of 0.1..2 KiB, so a memtable fills every few dozen
 * commits: flushes and compactions run nearly all the time (once its planned work is done the
 * child keeps compacting), and most kills land while a table, a manifest edit or an obsolete-file
 * deletion is in progress.
 *
 * Checks after every kill:
 *   - the database opens (a killed flush or compaction is never corruption);
 *   - per lane, it equals the model after the last acknowledged operation or after the one in
 *     doubt (the call the kill interrupted): every acknowledged write survives, no batch is
 *     half-applied, no value is damaged or foreign (a prefix-consistent state, per key);
 *   - a full scan sees exactly the keys the gets see;
 *   - no file is leaked: the partial tables and manifests of the killed work are gone
 *     (tu_assert_db_files), no *.tmp;
 *   - `shale check` ($SHALE_BIN), run before the reopen, calls the directory clean (exit 0).
 * The same directory goes through every cycle. Over the run the database must have had tables
 * below level 0 (compactions did happen). SHALE_CRASH_SEED=<n> replaces the operation seed.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "shale.h"

#include "crash_common.h"
#include "testutil.h"

/* The most tables seen over a run. */
typedef struct table_peaks {
    uint64_t l0, deep, all;
} table_peaks;

static shale_options lsm_opts(const crash_variant *v, crash_open why)
{
    shale_options o = tu_small_lsm_options(2);

    o.durability = v->durability;
    if (why == CRASH_VERIFY) {
        /* Defaults but for the level-0 trigger: no compaction starts while the files are
         * listed. */
        return (shale_options){.durability = v->durability, .l0_compaction_trigger = 64};
    }
    o.create_if_missing = why == CRASH_CREATE;
    o.wal_segment_bytes = 64 * 1024;
    return o;
}

/* Out of planned work: keep flushing and compacting until killed. */
static void keep_compacting(shale_db *db)
{
    if (shale_compact(db, NULL) != SHALE_OK) {
        usleep(10000);
    }
    usleep(1000);
}

static void check(crash_run *r, shale_db *db, unsigned cycle)
{
    const crash_variant *v = &r->v;
    table_peaks *peaks = r->user;
    shale_stats st;
    uint64_t present = crash_read_actual(r, db, cycle, &st);

    /* The scan agrees with the gets. */
    shale_iter *it = NULL;
    shale_error err = {0};
    cr_assert_eq(shale_iter_new(db, NULL, &it, &err), SHALE_OK, "%s", err.msg);
    crash_check_scan(it, present, NULL, NULL, "the scan", v->name, cycle);

    uint64_t deep = 0, all = 0;
    for (int lv = 0; lv < 8; lv++) {
        all += st.level_tables[lv];
        deep += lv > 0 ? st.level_tables[lv] : 0;
    }
    peaks->l0 = st.level_tables[0] > peaks->l0 ? st.level_tables[0] : peaks->l0;
    peaks->deep = deep > peaks->deep ? deep : peaks->deep;
    peaks->all = all > peaks->all ? all : peaks->all;

    char ctx[128];
    snprintf(ctx, sizeof ctx, "%s seed %" PRIu64 " cycle %u: after the kill", v->name, v->seed,
             cycle);
    tu_assert_db_files(db, r->dir, ctx);
}

static void finish(crash_run *r)
{
    const table_peaks *peaks = r->user;

    cr_log_info("%s: up to %" PRIu64 " tables (%" PRIu64 " in level 0, %" PRIu64 " below)",
                r->v.name, peaks->all, peaks->l0, peaks->deep);
    cr_assert_gt(peaks->deep, 0, "%s: no table ever reached level 1: no compaction ran", r->v.name);
}

static const crash_config cfg = {
    .name = "crash_lsm",
    .lane_keys = 300,
    .key_base = 700000,
    .salt = 0x7f4a7c15ull,
    /* 55% puts, 15% deletes, 30% batches */
    .kind_range = 20,
    .put_below = 11,
    .del_below = 14,
    .value_min = 100,
    .value_spread = 2000,
    /* The delays are long enough for several flushes and compactions. */
    .mixed_delay_div = 1,
    /* Writes may stall behind compaction under a slow sanitizer build: past 2 s without the
     * planned acks the kill comes anyway. */
    .ack_wait_ms = 2000,
    .offline_check = true,
    .options = lsm_opts,
    .idle = keep_compacting,
    .check = check,
    .finish = finish,
};

static void run(const crash_variant *v)
{
    table_peaks peaks = {0};
    crash_run_variant(&cfg, v, &peaks);
}

/* Variants: name, lanes, durability, cycles, ops per lane per cycle, max acks before the kill,
 * max delay before the kill (us), seed. */

Test(crash_lsm, full_single_writer_flush_compact)
{
    run(&(crash_variant){"lsm/1", 1, SHALE_DURABILITY_FULL, 16, 6000, 1500, 300000, 0x15a10001});
}

Test(crash_lsm, full_four_writers_flush_compact)
{
    run(&(crash_variant){"lsm/4", 4, SHALE_DURABILITY_FULL, 12, 3000, 3000, 300000, 0x15a10004});
}
