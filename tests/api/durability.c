/* Durability levels: per database and per write, what survives a clean close and reopen. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api.h"

TestSuite(durability);

static const shale_durability all_levels[] = {
    SHALE_DURABILITY_DEFAULT, SHALE_DURABILITY_NONE, SHALE_DURABILITY_MEMORY,
    SHALE_DURABILITY_OS,      SHALE_DURABILITY_FULL,
};

/* Writes key "<tag>-<i>" = "<i>" with every per-write level through put, put_ttl(0), a batch, and
 * a put + delete pair. */
static void write_each_level(shale_db *db, const char *tag)
{
    for (size_t i = 0; i < sizeof all_levels / sizeof all_levels[0]; i++) {
        shale_write_opts wo = {.durability = all_levels[i]};
        char k[32], v[8];
        snprintf(v, sizeof v, "%zu", i);
        snprintf(k, sizeof k, "%s-put-%zu", tag, i);
        TU_OK(shale_put(db, &wo, tu_str(k), tu_str(v), &ERR));
        snprintf(k, sizeof k, "%s-ttl-%zu", tag, i);
        TU_OK(shale_put_ttl(db, &wo, tu_str(k), tu_str(v), 0, &ERR));
        snprintf(k, sizeof k, "%s-batch-%zu", tag, i);
        shale_batch *b = shale_batch_new();
        cr_assert_not_null(b);
        TU_OK(shale_batch_put(b, tu_str(k), tu_str(v), &ERR));
        TU_OK(shale_write(db, &wo, b, &ERR));
        shale_batch_free(b);
        snprintf(k, sizeof k, "%s-del-%zu", tag, i);
        TU_OK(shale_put(db, &wo, tu_str(k), tu_str(v), &ERR));
        TU_OK(shale_delete(db, &wo, tu_str(k), &ERR));
    }
}

static void expect_each_level(shale_db *db, const char *tag, bool present)
{
    static const char *const kinds[] = {"put", "ttl", "batch"};
    for (size_t i = 0; i < sizeof all_levels / sizeof all_levels[0]; i++) {
        char k[32], v[8];
        snprintf(v, sizeof v, "%zu", i);
        for (size_t j = 0; j < 3; j++) {
            snprintf(k, sizeof k, "%s-%s-%zu", tag, kinds[j], i);
            tu_expect(db, k, present ? v : NULL);
        }
        snprintf(k, sizeof k, "%s-del-%zu", tag, i);
        tu_expect(db, k, NULL);
    }
}

Test(durability, every_database_level_survives_clean_reopen)
{
    static const shale_durability logged[] = {
        SHALE_DURABILITY_DEFAULT,
        SHALE_DURABILITY_MEMORY,
        SHALE_DURABILITY_OS,
        SHALE_DURABILITY_FULL,
    };
    for (size_t i = 0; i < sizeof logged / sizeof logged[0]; i++) {
        shale_options o = {.durability = logged[i]};
        tu_fx fx = {0};
        tu_fx_begin(&fx, "api-dur", &o);
        write_each_level(fx.db, "w");
        expect_each_level(fx.db, "w", true);
        cr_assert_geq(tu_stats(fx.db).log_segments, 1, "level %d", logged[i]);
        tu_fx_close(&fx);
        /* A clean close flushes the memtable to a table: the log is no longer needed. */
        cr_assert_eq(api_count_logs(fx.path), 0, "level %d: log left after a clean close",
                     logged[i]);
        /* Reopen at another level: the data does not depend on it. */
        fx.db = tu_open(fx.path, NULL);
        expect_each_level(fx.db, "w", true);
        tu_fx_end(&fx);
    }
}

Test(durability, none_database_refuses_logged_writes)
{
    shale_options o = {.durability = SHALE_DURABILITY_NONE};
    static const shale_durability higher[] = {SHALE_DURABILITY_MEMORY, SHALE_DURABILITY_OS,
                                              SHALE_DURABILITY_FULL};
    tu_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    TU_OK(shale_batch_put(b, TU_SL("bk"), TU_SL("bv"), &ERR));
    tu_fx_begin(&fx, "api-dur", &o);
    for (size_t i = 0; i < 3; i++) {
        shale_write_opts wo = {.durability = higher[i]};
        TU_CODE(SHALE_INVALID, shale_put(fx.db, &wo, TU_SL("k"), TU_SL("v"), &ERR));
        TU_CODE(SHALE_INVALID, shale_put_ttl(fx.db, &wo, TU_SL("k"), TU_SL("v"), 0, &ERR));
        TU_CODE(SHALE_INVALID, shale_delete(fx.db, &wo, TU_SL("k"), &ERR));
        TU_CODE(SHALE_INVALID, shale_write(fx.db, &wo, b, &ERR));
    }
    tu_expect(fx.db, "k", NULL);
    tu_expect(fx.db, "bk", NULL);
    cr_assert_eq(tu_stats(fx.db).writes, 0);
    /* NONE and the database's own level work. */
    shale_write_opts none = {.durability = SHALE_DURABILITY_NONE};
    shale_write_opts dflt = {.durability = SHALE_DURABILITY_DEFAULT};
    TU_OK(shale_put(fx.db, &none, TU_SL("k1"), TU_SL("v1"), &ERR));
    TU_OK(shale_put(fx.db, &dflt, TU_SL("k2"), TU_SL("v2"), &ERR));
    TU_OK(shale_put(fx.db, NULL, TU_SL("k3"), TU_SL("v3"), &ERR));
    TU_OK(shale_write(fx.db, &none, b, &ERR));
    tu_expect(fx.db, "k1", "v1");
    tu_expect(fx.db, "k2", "v2");
    tu_expect(fx.db, "k3", "v3");
    tu_expect(fx.db, "bk", "bv");
    shale_batch_free(b);
    tu_fx_end(&fx);
}

/* NONE writes no log: what a clean close flushed to tables survives, and nothing else is kept
 * (a crash would lose the memtable; tests/crash covers it). */
Test(durability, none_database_keeps_what_close_flushed)
{
    shale_options o = {.durability = SHALE_DURABILITY_NONE};
    tu_fx fx = {0};
    char kb[17], vb[256];

    tu_fx_begin(&fx, "api-dur", &o);
    for (uint64_t i = 0; i < 100; i++) {
        tu_putn(fx.db, tu_key(kb, i), api_value(vb, i));
    }
    tu_del(fx.db, "x");
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.live_keys, 100);
    cr_assert_eq(st.log_segments, 0);
    cr_assert_eq(api_count_logs(fx.path), 0, "a NONE database wrote a log");
    tu_fx_reopen(&fx, &o);
    cr_assert_eq(api_count_logs(fx.path), 0);
    for (uint64_t i = 0; i < 100; i += 99) {
        shale_slice v = api_value(vb, i);
        tu_expectn(fx.db, tu_key(kb, i), &v);
    }
    cr_assert_eq(tu_stats(fx.db).live_keys, 100);
    /* The same when reopened at a logged level. */
    tu_fx_reopen(&fx, NULL);
    shale_slice v5 = api_value(vb, 5);
    tu_expectn(fx.db, tu_key(kb, 5), &v5);
    cr_assert_eq(tu_stats(fx.db).live_keys, 100);
    tu_fx_end(&fx);
}

/* shale_close writes out MEMORY-level records still buffered in the process. */
Test(durability, close_writes_out_buffered_memory_records)
{
    shale_options o = {.durability = SHALE_DURABILITY_MEMORY, .wal_flush_interval_ms = 10000};
    tu_fx fx = {0};
    char kb[17], vb[256];

    tu_fx_begin(&fx, "api-dur", &o);
    for (uint64_t i = 0; i < 200; i++) {
        tu_putn(fx.db, tu_key(kb, i), api_value(vb, i));
    }
    /* A logged database's per-write NONE is MEMORY. */
    shale_write_opts none = {.durability = SHALE_DURABILITY_NONE};
    TU_OK(shale_put(fx.db, &none, TU_SL("none-write"), TU_SL("kept"), &ERR));
    cr_assert_gt(tu_stats(fx.db).log_bytes, 0, "log_bytes counts buffered bytes");
    tu_fx_reopen(&fx, NULL);
    for (uint64_t i = 0; i < 200; i++) {
        shale_slice v = api_value(vb, i);
        tu_expectn(fx.db, tu_key(kb, i), &v);
    }
    tu_expect(fx.db, "none-write", "kept");
    tu_fx_end(&fx);
}

Test(durability, full_writes_sync)
{
    tu_fx fx = {0};
    shale_write_opts full = {.durability = SHALE_DURABILITY_FULL};
    shale_options o = {.durability = SHALE_DURABILITY_FULL};

    /* Per write on an OS database. */
    tu_fx_begin(&fx, "api-dur", NULL);
    uint64_t syncs = tu_stats(fx.db).syncs;
    for (int i = 0; i < 5; i++) {
        TU_OK(shale_put(fx.db, &full, TU_SL("k"), TU_SL("v"), &ERR));
    }
    cr_assert_geq(tu_stats(fx.db).syncs, syncs + 5, "one writer: a sync per FULL commit");
    tu_fx_end(&fx);

    /* As the database's level. */
    tu_fx_begin(&fx, "api-dur", &o);
    syncs = tu_stats(fx.db).syncs;
    for (int i = 0; i < 5; i++) {
        tu_put(fx.db, "k", "v");
    }
    shale_stats st = tu_stats(fx.db);
    cr_assert_geq(st.syncs, syncs + 5);
    cr_assert_eq(st.batches, 5);
    tu_fx_end(&fx);
}

/* shale_sync makes MEMORY-level writes survive a process kill: a child writes one key at MEMORY
 * level and syncs it at OS level, then writes a second without syncing, tells the parent, and is
 * SIGKILLed. The first must survive; the second was still in the process's log buffer (the
 * background flusher waits 10 s), which shows the test can tell the difference. */
Test(durability, sync_makes_memory_writes_survive_a_kill)
{
    char *root = tu_tmpdir("api-sync");
    char *dir = tu_path(root, "db");
    shale_options o = {.create_if_missing = true,
                       .durability = SHALE_DURABILITY_OS,
                       .wal_flush_interval_ms = 10000};
    int ack[2];
    cr_assert_eq(pipe(ack), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shale_db *db;
        shale_error e;
        shale_write_opts mem = {.durability = SHALE_DURABILITY_MEMORY};
        if (shale_open(dir, &o, &db, &e) != SHALE_OK ||
            shale_put(db, &mem, TU_SL("synced"), TU_SL("1"), &e) != SHALE_OK ||
            shale_sync(db, SHALE_DURABILITY_OS, &e) != SHALE_OK ||
            shale_put(db, &mem, TU_SL("buffered"), TU_SL("2"), &e) != SHALE_OK) {
            _exit(3);
        }
        if (write(ack[1], "a", 1) != 1) {
            _exit(4);
        }
        for (;;) {
            pause();
        }
    }
    close(ack[1]);
    char c;
    cr_assert_eq(read(ack[0], &c, 1), 1, "the child failed before its acknowledgement");
    close(ack[0]);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFSIGNALED(st));
    shale_db *db;
    TU_OK(shale_open(dir, &o, &db, &ERR));
    tu_expect(db, "synced", "1");
    tu_expect(db, "buffered", NULL);
    TU_OK(shale_close(db, &ERR));
    tu_rm_rf(root);
    free(dir);
    free(root);
}

/* FULL syncs once per call with new writes, not again without; OS and FULL also write out what
 * MEMORY commits buffered; NONE, MEMORY and DEFAULT-on-an-OS-database never sync; bad levels and
 * closed handles are refused. */
Test(durability, sync_levels_and_bad_input)
{
    tu_fx fx = {0};
    shale_options o = {.wal_flush_interval_ms = 10000};
    tu_fx_begin(&fx, "api-sync", &o);
    shale_write_opts mem = {.durability = SHALE_DURABILITY_MEMORY};
    TU_OK(shale_sync(fx.db, SHALE_DURABILITY_FULL, &ERR)); /* nothing logged yet */
    uint64_t syncs = tu_stats(fx.db).syncs;
    TU_OK(shale_put(fx.db, &mem, TU_SL("a"), TU_SL("1"), &ERR));
    TU_OK(shale_sync(fx.db, SHALE_DURABILITY_NONE, &ERR));
    TU_OK(shale_sync(fx.db, SHALE_DURABILITY_MEMORY, &ERR));
    TU_OK(shale_sync(fx.db, SHALE_DURABILITY_DEFAULT, &ERR)); /* OS: writes, no sync */
    cr_assert_eq(tu_stats(fx.db).syncs, syncs);
    TU_OK(shale_sync(fx.db, SHALE_DURABILITY_FULL, &ERR));
    cr_assert_eq(tu_stats(fx.db).syncs, syncs + 1);
    TU_OK(shale_sync(fx.db, SHALE_DURABILITY_FULL, &ERR)); /* nothing new */
    cr_assert_eq(tu_stats(fx.db).syncs, syncs + 1);
    TU_OK(shale_put(fx.db, &mem, TU_SL("b"), TU_SL("2"), &ERR));
    TU_OK(shale_sync(fx.db, SHALE_DURABILITY_FULL, &ERR));
    cr_assert_eq(tu_stats(fx.db).syncs, syncs + 2);
    TU_CODE(SHALE_INVALID, shale_sync(fx.db, (shale_durability)9, &ERR));
    TU_CODE(SHALE_INVALID, shale_sync(NULL, SHALE_DURABILITY_OS, &ERR));
    shale_db *db = fx.db;
    TU_OK(shale_close(db, &ERR));
    TU_CODE(SHALE_CLOSED, shale_sync(db, SHALE_DURABILITY_OS, &ERR));
    fx.db = NULL;
    tu_fx_end(&fx);
}
