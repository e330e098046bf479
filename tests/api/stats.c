/* shale_stats: exact counters and gauges through writes, reads, batches and reopen. */
#include "api.h"

TestSuite(stats);

Test(stats, fresh_database_is_zero)
{
    tu_fx fx = {0};

    tu_fx_begin(&fx, "api-stats", NULL);
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.live_keys, 0);
    cr_assert_eq(st.last_sequence, 0);
    cr_assert_eq(st.writes, 0);
    cr_assert_eq(st.reads, 0);
    cr_assert_eq(st.batches, 0);
    cr_assert_eq(st.expired_removed, 0);
    cr_assert_eq(st.recovered_records, 0);
    cr_assert_eq(st.salvaged_records, 0);
    cr_assert_eq(st.salvaged_bytes, 0);
    cr_assert_eq(st.truncated_bytes, 0);
    cr_assert_not(st.writes_stopped);
    tu_fx_end(&fx);
}

Test(stats, live_keys_is_exact)
{
    tu_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    tu_fx_begin(&fx, "api-stats", NULL);
    tu_put(fx.db, "a", "1");
    tu_put(fx.db, "b", "1");
    tu_put(fx.db, "c", "1");
    cr_assert_eq(tu_stats(fx.db).live_keys, 3);
    tu_put(fx.db, "a", "2"); /* overwrite */
    cr_assert_eq(tu_stats(fx.db).live_keys, 3);
    tu_del(fx.db, "b");
    cr_assert_eq(tu_stats(fx.db).live_keys, 2);
    tu_del(fx.db, "b");  /* already deleted */
    tu_del(fx.db, "zz"); /* never existed */
    cr_assert_eq(tu_stats(fx.db).live_keys, 2);
    tu_put(fx.db, "b", "3");
    cr_assert_eq(tu_stats(fx.db).live_keys, 3);
    /* In a batch: a new key put twice, a key put then deleted, an existing key deleted. */
    TU_OK(shale_batch_put(b, TU_SL("d"), TU_SL("1"), &ERR));
    TU_OK(shale_batch_put(b, TU_SL("d"), TU_SL("2"), &ERR));
    TU_OK(shale_batch_put(b, TU_SL("e"), TU_SL("1"), &ERR));
    TU_OK(shale_batch_delete(b, TU_SL("e"), &ERR));
    TU_OK(shale_batch_delete(b, TU_SL("a"), &ERR));
    TU_OK(shale_batch_delete(b, TU_SL("nope"), &ERR));
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    cr_assert_eq(tu_stats(fx.db).live_keys, 3); /* b c d */
    tu_fx_reopen(&fx, NULL);
    cr_assert_eq(tu_stats(fx.db).live_keys, 3, "live_keys after recovery");
    shale_batch_free(b);
    tu_fx_end(&fx);
}

Test(stats, operation_counters)
{
    tu_fx fx = {0};
    shale_buf buf = {0};
    bool yes;
    shale_batch *b = shale_batch_new();
    shale_slice keys[3] = {TU_SL("a"), TU_SL("b"), TU_SL("x")};
    shale_buf vals[3] = {{0}, {0}, {0}};
    shale_code codes[3];

    cr_assert_not_null(b);
    tu_fx_begin(&fx, "api-stats", NULL);
    tu_put(fx.db, "a", "1");
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("b"), TU_SL("2"), 0, &ERR));
    tu_del(fx.db, "missing");
    TU_OK(shale_batch_put(b, TU_SL("c"), TU_SL("3"), &ERR));
    TU_OK(shale_batch_delete(b, TU_SL("a"), &ERR));
    TU_OK(shale_batch_put_ttl(b, TU_SL("d"), TU_SL("4"), 0, &ERR));
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    /* Failed writes count for nothing. */
    TU_CODE(SHALE_INVALID, shale_put(fx.db, NULL, TU_SL(""), TU_SL("1"), &ERR));

    TU_OK(shale_get(fx.db, NULL, TU_SL("b"), &buf, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_get(fx.db, NULL, TU_SL("a"), &buf, &ERR));
    TU_OK(shale_exists(fx.db, NULL, TU_SL("c"), &yes, &ERR));
    TU_OK(shale_multi_get(fx.db, NULL, 3, keys, vals, codes, &ERR));

    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.writes, 6, "writes %llu", (unsigned long long)st.writes);
    cr_assert_eq(st.batches, 4, "batches %llu", (unsigned long long)st.batches);
    cr_assert_eq(st.last_sequence, 6);
    cr_assert_eq(st.reads, 3 + 3, "reads %llu", (unsigned long long)st.reads);
    cr_assert_eq(st.live_keys, 3);
    cr_assert_leq(st.group_commits, st.batches);
    cr_assert_gt(st.memory_bytes, 0);
    shale_buf_free(&buf);
    for (int i = 0; i < 3; i++) {
        shale_buf_free(&vals[i]);
    }
    shale_batch_free(b);
    tu_fx_end(&fx);
}

Test(stats, log_bytes_grow_with_writes)
{
    tu_fx fx = {0};
    char kb[17], vb[256];

    tu_fx_begin(&fx, "api-stats", NULL);
    uint64_t last = tu_stats(fx.db).log_bytes;
    for (uint64_t i = 0; i < 50; i++) {
        shale_slice v = api_value(vb, i);
        tu_putn(fx.db, tu_key(kb, i), v);
        uint64_t now = tu_stats(fx.db).log_bytes;
        cr_assert_geq(now, last + 16 + v.len, "write %llu: log_bytes %llu -> %llu",
                      (unsigned long long)i, (unsigned long long)last, (unsigned long long)now);
        last = now;
    }
    cr_assert_gt(tu_stats(fx.db).memory_bytes, 0);
    tu_fx_end(&fx);
}

Test(stats, last_sequence_is_monotonic_across_reopen)
{
    tu_fx fx = {0};
    char kb[17];
    uint64_t prev = 0;

    tu_fx_begin(&fx, "api-stats", NULL);
    for (int round = 0; round < 4; round++) {
        for (uint64_t i = 0; i < 10; i++) {
            tu_putn(fx.db, tu_key(kb, i), TU_SL("v"));
        }
        tu_del(fx.db, "gone");
        shale_stats st = tu_stats(fx.db);
        cr_assert_eq(st.last_sequence, prev + 11, "round %d", round);
        uint64_t seq9 = tu_seqn(fx.db, tu_key(kb, 9));
        tu_fx_reopen(&fx, NULL);
        st = tu_stats(fx.db);
        cr_assert_eq(st.last_sequence, prev + 11, "round %d: after reopen", round);
        /* The clean close flushed everything: nothing is left to replay. */
        cr_assert_eq(st.recovered_records, 0, "round %d: recovered %llu records", round,
                     (unsigned long long)st.recovered_records);
        cr_assert_eq(st.writes, 0, "counters restart at open");
        cr_assert_eq(tu_seqn(fx.db, tu_key(kb, 9)), seq9, "seq survives reopen");
        prev = st.last_sequence;
    }
    tu_put(fx.db, "new", "v");
    cr_assert_eq(tu_seqn(fx.db, TU_SL("new")), prev + 1);
    tu_fx_end(&fx);
}

/* A small segment size rolls the log; a clean close flushes every segment's writes into a table
 * and deletes the segments (replay of many segments after a crash: tests/crash). */
Test(stats, log_rolls_into_segments)
{
    shale_options o = {.wal_segment_bytes = 64 * 1024};
    tu_fx fx = {0};
    char kb[17];
    static char big[2000];

    memset(big, 'q', sizeof big);
    tu_fx_begin(&fx, "api-stats", &o);
    for (uint64_t i = 0; i < 200; i++) {
        big[0] = (char)('a' + i % 26);
        tu_putn(fx.db, tu_key(kb, i), (shale_slice){big, sizeof big});
    }
    shale_stats st = tu_stats(fx.db);
    cr_assert_geq(st.log_segments, 3, "segments %llu", (unsigned long long)st.log_segments);
    cr_assert_geq(st.log_bytes, 200 * sizeof big);
    tu_fx_reopen(&fx, &o);
    cr_assert_eq(api_count_logs(fx.path), 0);
    cr_assert_eq(tu_stats(fx.db).live_keys, 200);
    cr_assert_eq(tu_stats(fx.db).recovered_records, 0);
    for (uint64_t i = 0; i < 200; i += 37) {
        big[0] = (char)('a' + i % 26);
        shale_slice v = {big, sizeof big};
        tu_expectn(fx.db, tu_key(kb, i), &v);
    }
    tu_fx_end(&fx);
}

Test(stats, bad_arguments)
{
    tu_fx fx = {0};
    shale_stats st;

    tu_fx_begin(&fx, "api-stats", NULL);
    TU_CODE(SHALE_INVALID, shale_stats_get(NULL, &st, &ERR));
    TU_CODE(SHALE_INVALID, shale_stats_get(fx.db, NULL, &ERR));
    tu_fx_end(&fx);
}
