/* shale_stats: exact counters and gauges through writes, reads, batches and reopen. */
#include "api.h"

TestSuite(stats);

Test(stats, fresh_database_is_zero)
{
    api_fx fx = {0};

    api_begin(&fx, "api-stats", NULL);
    shale_stats st = api_stats(fx.db);
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
    api_end(&fx);
}

Test(stats, live_keys_is_exact)
{
    api_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    api_begin(&fx, "api-stats", NULL);
    api_put(fx.db, "a", "1");
    api_put(fx.db, "b", "1");
    api_put(fx.db, "c", "1");
    cr_assert_eq(api_stats(fx.db).live_keys, 3);
    api_put(fx.db, "a", "2"); /* overwrite */
    cr_assert_eq(api_stats(fx.db).live_keys, 3);
    api_del(fx.db, "b");
    cr_assert_eq(api_stats(fx.db).live_keys, 2);
    api_del(fx.db, "b");  /* already deleted */
    api_del(fx.db, "zz"); /* never existed */
    cr_assert_eq(api_stats(fx.db).live_keys, 2);
    api_put(fx.db, "b", "3");
    cr_assert_eq(api_stats(fx.db).live_keys, 3);
    /* In a batch: a new key put twice, a key put then deleted, an existing key deleted. */
    ASSERT_OK(shale_batch_put(b, SL("d"), SL("1"), &ERR));
    ASSERT_OK(shale_batch_put(b, SL("d"), SL("2"), &ERR));
    ASSERT_OK(shale_batch_put(b, SL("e"), SL("1"), &ERR));
    ASSERT_OK(shale_batch_delete(b, SL("e"), &ERR));
    ASSERT_OK(shale_batch_delete(b, SL("a"), &ERR));
    ASSERT_OK(shale_batch_delete(b, SL("nope"), &ERR));
    ASSERT_OK(shale_write(fx.db, NULL, b, &ERR));
    cr_assert_eq(api_stats(fx.db).live_keys, 3); /* b c d */
    api_reopen(&fx, NULL);
    cr_assert_eq(api_stats(fx.db).live_keys, 3, "live_keys after recovery");
    shale_batch_free(b);
    api_end(&fx);
}

Test(stats, operation_counters)
{
    api_fx fx = {0};
    shale_buf buf = {0};
    bool yes;
    shale_batch *b = shale_batch_new();
    shale_slice keys[3] = {SL("a"), SL("b"), SL("x")};
    shale_buf vals[3] = {{0}, {0}, {0}};
    shale_code codes[3];

    cr_assert_not_null(b);
    api_begin(&fx, "api-stats", NULL);
    api_put(fx.db, "a", "1");
    ASSERT_OK(shale_put_ttl(fx.db, NULL, SL("b"), SL("2"), 0, &ERR));
    api_del(fx.db, "missing");
    ASSERT_OK(shale_batch_put(b, SL("c"), SL("3"), &ERR));
    ASSERT_OK(shale_batch_delete(b, SL("a"), &ERR));
    ASSERT_OK(shale_batch_put_ttl(b, SL("d"), SL("4"), 0, &ERR));
    ASSERT_OK(shale_write(fx.db, NULL, b, &ERR));
    /* Failed writes count for nothing. */
    ASSERT_CODE(SHALE_INVALID, shale_put(fx.db, NULL, SL(""), SL("1"), &ERR));

    ASSERT_OK(shale_get(fx.db, NULL, SL("b"), &buf, &ERR));
    ASSERT_CODE(SHALE_NOT_FOUND, shale_get(fx.db, NULL, SL("a"), &buf, &ERR));
    ASSERT_OK(shale_exists(fx.db, NULL, SL("c"), &yes, &ERR));
    ASSERT_OK(shale_multi_get(fx.db, NULL, 3, keys, vals, codes, &ERR));

    shale_stats st = api_stats(fx.db);
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
    api_end(&fx);
}

Test(stats, log_bytes_grow_with_writes)
{
    api_fx fx = {0};
    char kb[17], vb[256];

    api_begin(&fx, "api-stats", NULL);
    uint64_t last = api_stats(fx.db).log_bytes;
    for (uint64_t i = 0; i < 50; i++) {
        shale_slice v = api_value(vb, i);
        api_putn(fx.db, tu_key(kb, i), v);
        uint64_t now = api_stats(fx.db).log_bytes;
        cr_assert_geq(now, last + 16 + v.len, "write %llu: log_bytes %llu -> %llu",
                      (unsigned long long)i, (unsigned long long)last, (unsigned long long)now);
        last = now;
    }
    cr_assert_gt(api_stats(fx.db).memory_bytes, 0);
    api_end(&fx);
}

Test(stats, last_sequence_is_monotonic_across_reopen)
{
    api_fx fx = {0};
    char kb[17];
    uint64_t prev = 0;

    api_begin(&fx, "api-stats", NULL);
    for (int round = 0; round < 4; round++) {
        for (uint64_t i = 0; i < 10; i++) {
            api_putn(fx.db, tu_key(kb, i), SL("v"));
        }
        api_del(fx.db, "gone");
        shale_stats st = api_stats(fx.db);
        cr_assert_eq(st.last_sequence, prev + 11, "round %d", round);
        uint64_t seq9 = api_seq(fx.db, tu_key(kb, 9));
        api_reopen(&fx, NULL);
        st = api_stats(fx.db);
        cr_assert_eq(st.last_sequence, prev + 11, "round %d: after reopen", round);
        /* The clean close flushed everything: nothing is left to replay. */
        cr_assert_eq(st.recovered_records, 0, "round %d: recovered %llu records", round,
                     (unsigned long long)st.recovered_records);
        cr_assert_eq(st.writes, 0, "counters restart at open");
        cr_assert_eq(api_seq(fx.db, tu_key(kb, 9)), seq9, "seq survives reopen");
        prev = st.last_sequence;
    }
    api_put(fx.db, "new", "v");
    cr_assert_eq(api_seq(fx.db, SL("new")), prev + 1);
    api_end(&fx);
}

/* A small segment size rolls the log; a clean close flushes every segment's writes into a table
 * and deletes the segments (replay of many segments after a crash: tests/crash). */
Test(stats, log_rolls_into_segments)
{
    shale_options o = {.wal_segment_bytes = 64 * 1024};
    api_fx fx = {0};
    char kb[17];
    static char big[2000];

    memset(big, 'q', sizeof big);
    api_begin(&fx, "api-stats", &o);
    for (uint64_t i = 0; i < 200; i++) {
        big[0] = (char)('a' + i % 26);
        api_putn(fx.db, tu_key(kb, i), (shale_slice){big, sizeof big});
    }
    shale_stats st = api_stats(fx.db);
    cr_assert_geq(st.log_segments, 3, "segments %llu", (unsigned long long)st.log_segments);
    cr_assert_geq(st.log_bytes, 200 * sizeof big);
    api_reopen(&fx, &o);
    cr_assert_eq(api_count_logs(fx.path), 0);
    cr_assert_eq(api_stats(fx.db).live_keys, 200);
    cr_assert_eq(api_stats(fx.db).recovered_records, 0);
    for (uint64_t i = 0; i < 200; i += 37) {
        big[0] = (char)('a' + i % 26);
        shale_slice v = {big, sizeof big};
        api_expectn(fx.db, tu_key(kb, i), &v);
    }
    api_end(&fx);
}

Test(stats, bad_arguments)
{
    api_fx fx = {0};
    shale_stats st;

    api_begin(&fx, "api-stats", NULL);
    ASSERT_CODE(SHALE_INVALID, shale_stats_get(NULL, &st, &ERR));
    ASSERT_CODE(SHALE_INVALID, shale_stats_get(fx.db, NULL, &ERR));
    api_end(&fx);
}
