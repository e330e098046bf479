/* Write batches: building, atomic commit, ordering inside a batch, limits, reuse. */
#include "api.h"

TestSuite(batch);

Test(batch, new_free_clear_count)
{
    shale_batch *b = shale_batch_new();

    shale_batch_free(NULL);
    cr_assert_not_null(b);
    cr_assert_eq(shale_batch_count(b), 0);
    ASSERT_OK(shale_batch_put(b, SL("a"), SL("1"), &ERR));
    ASSERT_OK(shale_batch_delete(b, SL("b"), &ERR));
    ASSERT_OK(shale_batch_put_ttl(b, SL("c"), SL("3"), 12345, &ERR));
    ASSERT_OK(shale_batch_put(b, SL("a"), SL(""), &ERR));
    cr_assert_eq(shale_batch_count(b), 4);
    shale_batch_clear(b);
    cr_assert_eq(shale_batch_count(b), 0);
    ASSERT_OK(shale_batch_put(b, SL("x"), SL("y"), &ERR));
    cr_assert_eq(shale_batch_count(b), 1);
    shale_batch_free(b);
}

Test(batch, bad_adds_are_invalid_and_add_nothing)
{
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    ASSERT_OK(shale_batch_put(b, SL("a"), SL("1"), &ERR));
    ASSERT_CODE(SHALE_INVALID, shale_batch_put(b, SL(""), SL("1"), &ERR));
    ASSERT_CODE(SHALE_INVALID, shale_batch_put_ttl(b, SL(""), SL("1"), 5, &ERR));
    ASSERT_CODE(SHALE_INVALID, shale_batch_delete(b, SL(""), &ERR));
    ASSERT_CODE(SHALE_INVALID, shale_batch_put(b, (shale_slice){NULL, 0}, SL("1"), &ERR));
    ASSERT_CODE(SHALE_INVALID, shale_batch_put(b, (shale_slice){NULL, 2}, SL("1"), &ERR));
    ASSERT_CODE(SHALE_INVALID, shale_batch_delete(b, (shale_slice){NULL, 2}, &ERR));
    ASSERT_CODE(SHALE_INVALID, shale_batch_put(b, SL("k"), (shale_slice){NULL, 2}, &ERR));
    ASSERT_CODE(SHALE_INVALID, shale_batch_put(NULL, SL("k"), SL("v"), &ERR));
    ASSERT_CODE(SHALE_INVALID, shale_batch_put_ttl(NULL, SL("k"), SL("v"), 1, &ERR));
    ASSERT_CODE(SHALE_INVALID, shale_batch_delete(NULL, SL("k"), &ERR));
    cr_assert_eq(shale_batch_count(b), 1);
    /* An empty value is fine. */
    ASSERT_OK(shale_batch_put(b, SL("k"), (shale_slice){NULL, 0}, &ERR));
    cr_assert_eq(shale_batch_count(b), 2);
    shale_batch_free(b);
}

Test(batch, commits_many_keys_atomically)
{
    enum { N = 1000 };
    api_fx fx = {0};
    shale_batch *b = shale_batch_new();
    char kb[17], vb[256];

    cr_assert_not_null(b);
    api_begin(&fx, "api-batch", NULL);
    for (uint64_t i = 0; i < N; i += 2) {
        api_putn(fx.db, tu_key(kb, i), SL("old"));
    }
    shale_stats before = api_stats(fx.db);
    /* Put every odd key, delete every even key divisible by 4. */
    for (uint64_t i = 0; i < N; i++) {
        if (i % 2 == 1) {
            ASSERT_OK(shale_batch_put(b, tu_key(kb, i), api_value(vb, i), &ERR));
        } else if (i % 4 == 0) {
            ASSERT_OK(shale_batch_delete(b, tu_key(kb, i), &ERR));
        }
    }
    size_t ops = shale_batch_count(b);
    cr_assert_eq(ops, N / 2 + N / 4);
    ASSERT_OK(shale_write(fx.db, NULL, b, &ERR));
    cr_assert_eq(shale_batch_count(b), ops, "shale_write changed the batch");

    shale_stats after = api_stats(fx.db);
    cr_assert_eq(after.batches, before.batches + 1);
    cr_assert_eq(after.writes, before.writes + ops);
    cr_assert_eq(after.last_sequence, before.last_sequence + ops, "one seq per op");
    cr_assert_eq(after.live_keys, N / 2 + N / 4);
    for (int round = 0; round < 2; round++) {
        for (uint64_t i = 0; i < N; i++) {
            shale_slice v = i % 2 ? api_value(vb, i) : SL("old");
            api_expectn(fx.db, tu_key(kb, i), i % 4 == 0 ? NULL : &v);
        }
        api_reopen(&fx, NULL); /* the batch survives a reopen */
    }
    cr_assert_eq(api_stats(fx.db).live_keys, N / 2 + N / 4);
    shale_batch_free(b);
    api_end(&fx);
}

Test(batch, ops_get_consecutive_sequence_numbers)
{
    api_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    api_begin(&fx, "api-batch", NULL);
    api_put(fx.db, "first", "x");
    uint64_t base = api_stats(fx.db).last_sequence;
    ASSERT_OK(shale_batch_put(b, SL("a"), SL("1"), &ERR));
    ASSERT_OK(shale_batch_put(b, SL("b"), SL("2"), &ERR));
    ASSERT_OK(shale_batch_put(b, SL("c"), SL("3"), &ERR));
    ASSERT_OK(shale_write(fx.db, NULL, b, &ERR));
    cr_assert_eq(api_seq(fx.db, SL("a")), base + 1);
    cr_assert_eq(api_seq(fx.db, SL("b")), base + 2);
    cr_assert_eq(api_seq(fx.db, SL("c")), base + 3);
    cr_assert_eq(api_stats(fx.db).last_sequence, base + 3);
    shale_batch_free(b);
    api_end(&fx);
}

Test(batch, later_op_on_the_same_key_wins)
{
    api_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    api_begin(&fx, "api-batch", NULL);
    api_put(fx.db, "del-then-put", "old");
    api_put(fx.db, "put-then-del", "old");
    ASSERT_OK(shale_batch_put(b, SL("twice"), SL("1"), &ERR));
    ASSERT_OK(shale_batch_put(b, SL("twice"), SL("2"), &ERR));
    ASSERT_OK(shale_batch_delete(b, SL("del-then-put"), &ERR));
    ASSERT_OK(shale_batch_put(b, SL("del-then-put"), SL("new"), &ERR));
    ASSERT_OK(shale_batch_put(b, SL("put-then-del"), SL("new"), &ERR));
    ASSERT_OK(shale_batch_delete(b, SL("put-then-del"), &ERR));
    ASSERT_OK(shale_batch_put(b, SL("fresh-then-del"), SL("x"), &ERR));
    ASSERT_OK(shale_batch_delete(b, SL("fresh-then-del"), &ERR));
    ASSERT_OK(shale_write(fx.db, NULL, b, &ERR));
    for (int round = 0; round < 2; round++) {
        api_expect(fx.db, "twice", "2");
        api_expect(fx.db, "del-then-put", "new");
        api_expect(fx.db, "put-then-del", NULL);
        api_expect(fx.db, "fresh-then-del", NULL);
        cr_assert_eq(api_stats(fx.db).live_keys, 2);
        api_reopen(&fx, NULL);
    }
    shale_batch_free(b);
    api_end(&fx);
}

Test(batch, empty_batch_writes_nothing)
{
    api_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    api_begin(&fx, "api-batch", NULL);
    api_put(fx.db, "k", "v");
    shale_stats before = api_stats(fx.db);
    ASSERT_OK(shale_write(fx.db, NULL, b, &ERR));
    ASSERT_OK(shale_batch_put(b, SL("x"), SL("y"), &ERR));
    shale_batch_clear(b);
    ASSERT_OK(shale_write(fx.db, NULL, b, &ERR));
    shale_stats after = api_stats(fx.db);
    cr_assert_eq(after.last_sequence, before.last_sequence);
    cr_assert_eq(after.writes, before.writes);
    cr_assert_eq(after.live_keys, 1);
    api_expect(fx.db, "x", NULL);
    shale_batch_free(b);
    api_end(&fx);
}

Test(batch, one_oversized_entry_fails_the_whole_batch)
{
    shale_options o = {.max_key_bytes = 16, .max_value_bytes = 100};
    char big[200];
    api_fx fx = {0};
    shale_batch *b = shale_batch_new();

    memset(big, 'b', sizeof big);
    cr_assert_not_null(b);
    api_begin(&fx, "api-batch", &o);
    api_put(fx.db, "keep", "old");
    shale_stats before = api_stats(fx.db);

    /* A value one byte too long, in the middle. */
    ASSERT_OK(shale_batch_put(b, SL("a"), SL("1"), &ERR));
    ASSERT_OK(shale_batch_delete(b, SL("keep"), &ERR));
    ASSERT_OK(shale_batch_put(b, SL("toolong"), (shale_slice){big, 101}, &ERR));
    ASSERT_OK(shale_batch_put(b, SL("z"), (shale_slice){big, 100}, &ERR));
    ASSERT_CODE(SHALE_FULL, shale_write(fx.db, NULL, b, &ERR));
    cr_assert_eq(shale_batch_count(b), 4, "a failed write changed the batch");
    api_expect(fx.db, "a", NULL);
    api_expect(fx.db, "keep", "old");
    api_expect(fx.db, "z", NULL);

    /* A key one byte too long, at the end, also in put_ttl and delete form. */
    shale_batch_clear(b);
    ASSERT_OK(shale_batch_put(b, SL("a"), SL("1"), &ERR));
    ASSERT_OK(shale_batch_put(b, (shale_slice){big, 17}, SL("1"), &ERR));
    ASSERT_CODE(SHALE_FULL, shale_write(fx.db, NULL, b, &ERR));
    shale_batch_clear(b);
    ASSERT_OK(shale_batch_put(b, SL("a"), SL("1"), &ERR));
    ASSERT_OK(shale_batch_put_ttl(b, SL("t"), (shale_slice){big, 101}, 0, &ERR));
    ASSERT_CODE(SHALE_FULL, shale_write(fx.db, NULL, b, &ERR));
    shale_batch_clear(b);
    ASSERT_OK(shale_batch_put(b, SL("a"), SL("1"), &ERR));
    ASSERT_OK(shale_batch_delete(b, (shale_slice){big, 17}, &ERR));
    shale_code rc = shale_write(fx.db, NULL, b, NULL);
    cr_assert(rc == SHALE_FULL || rc == SHALE_INVALID, "batch delete of a long key: %d", rc);

    shale_stats after = api_stats(fx.db);
    cr_assert_eq(after.last_sequence, before.last_sequence);
    cr_assert_eq(after.writes, before.writes);
    cr_assert_eq(after.live_keys, 1);
    api_reopen(&fx, &o);
    api_expect(fx.db, "a", NULL);
    api_expect(fx.db, "keep", "old");
    cr_assert_eq(api_stats(fx.db).live_keys, 1);

    /* The same batch object, fixed, commits. */
    shale_batch_clear(b);
    ASSERT_OK(shale_batch_put(b, SL("a"), SL("1"), &ERR));
    ASSERT_OK(shale_batch_put(b, (shale_slice){big, 16}, (shale_slice){big, 100}, &ERR));
    ASSERT_OK(shale_write(fx.db, NULL, b, &ERR));
    api_expect(fx.db, "a", "1");
    shale_slice v = {big, 100};
    api_expectn(fx.db, (shale_slice){big, 16}, &v);
    shale_batch_free(b);
    api_end(&fx);
}

Test(batch, reused_batch_commits_again)
{
    api_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    api_begin(&fx, "api-batch", NULL);
    ASSERT_OK(shale_batch_put(b, SL("a"), SL("1"), &ERR));
    ASSERT_OK(shale_write(fx.db, NULL, b, &ERR));
    api_del(fx.db, "a");
    ASSERT_OK(shale_write(fx.db, NULL, b, &ERR)); /* the same batch, unchanged */
    api_expect(fx.db, "a", "1");
    shale_batch_clear(b);
    ASSERT_OK(shale_batch_delete(b, SL("a"), &ERR));
    ASSERT_OK(shale_batch_put(b, SL("b"), SL("2"), &ERR));
    ASSERT_OK(shale_write(fx.db, NULL, b, &ERR));
    api_expect(fx.db, "a", NULL);
    api_expect(fx.db, "b", "2");
    cr_assert_eq(api_stats(fx.db).batches, 4);
    shale_batch_free(b);
    api_end(&fx);
}

/* The batch copies keys and values: changing the caller's memory after adding has no effect. */
Test(batch, copies_its_input)
{
    api_fx fx = {0};
    shale_batch *b = shale_batch_new();
    char key[8] = "key", val[8] = "val";

    cr_assert_not_null(b);
    api_begin(&fx, "api-batch", NULL);
    ASSERT_OK(shale_batch_put(b, api_str(key), api_str(val), &ERR));
    memcpy(key, "XXX", 3);
    memcpy(val, "YYY", 3);
    ASSERT_OK(shale_write(fx.db, NULL, b, &ERR));
    api_expect(fx.db, "key", "val");
    api_expect(fx.db, "XXX", NULL);
    shale_batch_free(b);
    api_end(&fx);
}

Test(batch, write_bad_arguments)
{
    api_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    ASSERT_OK(shale_batch_put(b, SL("a"), SL("1"), &ERR));
    api_begin(&fx, "api-batch", NULL);
    ASSERT_CODE(SHALE_INVALID, shale_write(NULL, NULL, b, &ERR));
    ASSERT_CODE(SHALE_INVALID, shale_write(fx.db, NULL, NULL, &ERR));
    shale_write_opts bad = {.durability = (shale_durability)42};
    shale_code rc = shale_write(fx.db, &bad, b, NULL);
    cr_assert(rc == SHALE_INVALID, "durability 42 in write opts: %d", rc);
    api_expect(fx.db, "a", NULL);
    shale_batch_free(b);
    api_end(&fx);
}
