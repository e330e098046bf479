/* Write batches: building, atomic commit, ordering inside a batch, limits, reuse. */
#include "api.h"

TestSuite(batch);

Test(batch, new_free_clear_count)
{
    shale_batch *b = shale_batch_new();

    shale_batch_free(NULL);
    cr_assert_not_null(b);
    cr_assert_eq(shale_batch_count(b), 0);
    TU_OK(shale_batch_put(b, TU_SL("a"), TU_SL("1"), &ERR));
    TU_OK(shale_batch_delete(b, TU_SL("b"), &ERR));
    TU_OK(shale_batch_put_ttl(b, TU_SL("c"), TU_SL("3"), 12345, &ERR));
    TU_OK(shale_batch_put(b, TU_SL("a"), TU_SL(""), &ERR));
    cr_assert_eq(shale_batch_count(b), 4);
    shale_batch_clear(b);
    cr_assert_eq(shale_batch_count(b), 0);
    TU_OK(shale_batch_put(b, TU_SL("x"), TU_SL("y"), &ERR));
    cr_assert_eq(shale_batch_count(b), 1);
    shale_batch_free(b);
}

Test(batch, bad_adds_are_invalid_and_add_nothing)
{
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    TU_OK(shale_batch_put(b, TU_SL("a"), TU_SL("1"), &ERR));
    TU_CODE(SHALE_INVALID, shale_batch_put(b, TU_SL(""), TU_SL("1"), &ERR));
    TU_CODE(SHALE_INVALID, shale_batch_put_ttl(b, TU_SL(""), TU_SL("1"), 5, &ERR));
    TU_CODE(SHALE_INVALID, shale_batch_delete(b, TU_SL(""), &ERR));
    TU_CODE(SHALE_INVALID, shale_batch_put(b, (shale_slice){NULL, 0}, TU_SL("1"), &ERR));
    TU_CODE(SHALE_INVALID, shale_batch_put(b, (shale_slice){NULL, 2}, TU_SL("1"), &ERR));
    TU_CODE(SHALE_INVALID, shale_batch_delete(b, (shale_slice){NULL, 2}, &ERR));
    TU_CODE(SHALE_INVALID, shale_batch_put(b, TU_SL("k"), (shale_slice){NULL, 2}, &ERR));
    TU_CODE(SHALE_INVALID, shale_batch_put(NULL, TU_SL("k"), TU_SL("v"), &ERR));
    TU_CODE(SHALE_INVALID, shale_batch_put_ttl(NULL, TU_SL("k"), TU_SL("v"), 1, &ERR));
    TU_CODE(SHALE_INVALID, shale_batch_delete(NULL, TU_SL("k"), &ERR));
    cr_assert_eq(shale_batch_count(b), 1);
    /* An empty value is fine. */
    TU_OK(shale_batch_put(b, TU_SL("k"), (shale_slice){NULL, 0}, &ERR));
    cr_assert_eq(shale_batch_count(b), 2);
    shale_batch_free(b);
}

Test(batch, commits_many_keys_atomically)
{
    enum { N = 1000 };
    tu_fx fx = {0};
    shale_batch *b = shale_batch_new();
    char kb[17], vb[256];

    cr_assert_not_null(b);
    tu_fx_begin(&fx, "api-batch", NULL);
    for (uint64_t i = 0; i < N; i += 2) {
        tu_putn(fx.db, tu_key(kb, i), TU_SL("old"));
    }
    shale_stats before = tu_stats(fx.db);
    /* Put every odd key, delete every even key divisible by 4. */
    for (uint64_t i = 0; i < N; i++) {
        if (i % 2 == 1) {
            TU_OK(shale_batch_put(b, tu_key(kb, i), api_value(vb, i), &ERR));
        } else if (i % 4 == 0) {
            TU_OK(shale_batch_delete(b, tu_key(kb, i), &ERR));
        }
    }
    size_t ops = shale_batch_count(b);
    cr_assert_eq(ops, N / 2 + N / 4);
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    cr_assert_eq(shale_batch_count(b), ops, "shale_write changed the batch");

    shale_stats after = tu_stats(fx.db);
    cr_assert_eq(after.batches, before.batches + 1);
    cr_assert_eq(after.writes, before.writes + ops);
    cr_assert_eq(after.last_sequence, before.last_sequence + ops, "one seq per op");
    cr_assert_eq(after.live_keys, N / 2 + N / 4);
    for (int round = 0; round < 2; round++) {
        for (uint64_t i = 0; i < N; i++) {
            shale_slice v = i % 2 ? api_value(vb, i) : TU_SL("old");
            tu_expectn(fx.db, tu_key(kb, i), i % 4 == 0 ? NULL : &v);
        }
        tu_fx_reopen(&fx, NULL); /* the batch survives a reopen */
    }
    cr_assert_eq(tu_stats(fx.db).live_keys, N / 2 + N / 4);
    shale_batch_free(b);
    tu_fx_end(&fx);
}

Test(batch, ops_get_consecutive_sequence_numbers)
{
    tu_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    tu_fx_begin(&fx, "api-batch", NULL);
    tu_put(fx.db, "first", "x");
    uint64_t base = tu_stats(fx.db).last_sequence;
    TU_OK(shale_batch_put(b, TU_SL("a"), TU_SL("1"), &ERR));
    TU_OK(shale_batch_put(b, TU_SL("b"), TU_SL("2"), &ERR));
    TU_OK(shale_batch_put(b, TU_SL("c"), TU_SL("3"), &ERR));
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    cr_assert_eq(tu_seqn(fx.db, TU_SL("a")), base + 1);
    cr_assert_eq(tu_seqn(fx.db, TU_SL("b")), base + 2);
    cr_assert_eq(tu_seqn(fx.db, TU_SL("c")), base + 3);
    cr_assert_eq(tu_stats(fx.db).last_sequence, base + 3);
    shale_batch_free(b);
    tu_fx_end(&fx);
}

Test(batch, later_op_on_the_same_key_wins)
{
    tu_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    tu_fx_begin(&fx, "api-batch", NULL);
    tu_put(fx.db, "del-then-put", "old");
    tu_put(fx.db, "put-then-del", "old");
    TU_OK(shale_batch_put(b, TU_SL("twice"), TU_SL("1"), &ERR));
    TU_OK(shale_batch_put(b, TU_SL("twice"), TU_SL("2"), &ERR));
    TU_OK(shale_batch_delete(b, TU_SL("del-then-put"), &ERR));
    TU_OK(shale_batch_put(b, TU_SL("del-then-put"), TU_SL("new"), &ERR));
    TU_OK(shale_batch_put(b, TU_SL("put-then-del"), TU_SL("new"), &ERR));
    TU_OK(shale_batch_delete(b, TU_SL("put-then-del"), &ERR));
    TU_OK(shale_batch_put(b, TU_SL("fresh-then-del"), TU_SL("x"), &ERR));
    TU_OK(shale_batch_delete(b, TU_SL("fresh-then-del"), &ERR));
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    for (int round = 0; round < 2; round++) {
        tu_expect(fx.db, "twice", "2");
        tu_expect(fx.db, "del-then-put", "new");
        tu_expect(fx.db, "put-then-del", NULL);
        tu_expect(fx.db, "fresh-then-del", NULL);
        cr_assert_eq(tu_stats(fx.db).live_keys, 2);
        tu_fx_reopen(&fx, NULL);
    }
    shale_batch_free(b);
    tu_fx_end(&fx);
}

Test(batch, empty_batch_writes_nothing)
{
    tu_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    tu_fx_begin(&fx, "api-batch", NULL);
    tu_put(fx.db, "k", "v");
    shale_stats before = tu_stats(fx.db);
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    TU_OK(shale_batch_put(b, TU_SL("x"), TU_SL("y"), &ERR));
    shale_batch_clear(b);
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    shale_stats after = tu_stats(fx.db);
    cr_assert_eq(after.last_sequence, before.last_sequence);
    cr_assert_eq(after.writes, before.writes);
    cr_assert_eq(after.live_keys, 1);
    tu_expect(fx.db, "x", NULL);
    shale_batch_free(b);
    tu_fx_end(&fx);
}

Test(batch, one_oversized_entry_fails_the_whole_batch)
{
    shale_options o = {.max_key_bytes = 16, .max_value_bytes = 100};
    char big[200];
    tu_fx fx = {0};
    shale_batch *b = shale_batch_new();

    memset(big, 'b', sizeof big);
    cr_assert_not_null(b);
    tu_fx_begin(&fx, "api-batch", &o);
    tu_put(fx.db, "keep", "old");
    shale_stats before = tu_stats(fx.db);

    /* A value one byte too long, in the middle. */
    TU_OK(shale_batch_put(b, TU_SL("a"), TU_SL("1"), &ERR));
    TU_OK(shale_batch_delete(b, TU_SL("keep"), &ERR));
    TU_OK(shale_batch_put(b, TU_SL("toolong"), (shale_slice){big, 101}, &ERR));
    TU_OK(shale_batch_put(b, TU_SL("z"), (shale_slice){big, 100}, &ERR));
    TU_CODE(SHALE_FULL, shale_write(fx.db, NULL, b, &ERR));
    cr_assert_eq(shale_batch_count(b), 4, "a failed write changed the batch");
    tu_expect(fx.db, "a", NULL);
    tu_expect(fx.db, "keep", "old");
    tu_expect(fx.db, "z", NULL);

    /* A key one byte too long, at the end, also in put_ttl and delete form. */
    shale_batch_clear(b);
    TU_OK(shale_batch_put(b, TU_SL("a"), TU_SL("1"), &ERR));
    TU_OK(shale_batch_put(b, (shale_slice){big, 17}, TU_SL("1"), &ERR));
    TU_CODE(SHALE_FULL, shale_write(fx.db, NULL, b, &ERR));
    shale_batch_clear(b);
    TU_OK(shale_batch_put(b, TU_SL("a"), TU_SL("1"), &ERR));
    TU_OK(shale_batch_put_ttl(b, TU_SL("t"), (shale_slice){big, 101}, 0, &ERR));
    TU_CODE(SHALE_FULL, shale_write(fx.db, NULL, b, &ERR));
    shale_batch_clear(b);
    TU_OK(shale_batch_put(b, TU_SL("a"), TU_SL("1"), &ERR));
    TU_OK(shale_batch_delete(b, (shale_slice){big, 17}, &ERR));
    shale_code rc = shale_write(fx.db, NULL, b, NULL);
    cr_assert(rc == SHALE_FULL || rc == SHALE_INVALID, "batch delete of a long key: %d", rc);

    shale_stats after = tu_stats(fx.db);
    cr_assert_eq(after.last_sequence, before.last_sequence);
    cr_assert_eq(after.writes, before.writes);
    cr_assert_eq(after.live_keys, 1);
    tu_fx_reopen(&fx, &o);
    tu_expect(fx.db, "a", NULL);
    tu_expect(fx.db, "keep", "old");
    cr_assert_eq(tu_stats(fx.db).live_keys, 1);

    /* The same batch object, fixed, commits. */
    shale_batch_clear(b);
    TU_OK(shale_batch_put(b, TU_SL("a"), TU_SL("1"), &ERR));
    TU_OK(shale_batch_put(b, (shale_slice){big, 16}, (shale_slice){big, 100}, &ERR));
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    tu_expect(fx.db, "a", "1");
    shale_slice v = {big, 100};
    tu_expectn(fx.db, (shale_slice){big, 16}, &v);
    shale_batch_free(b);
    tu_fx_end(&fx);
}

Test(batch, reused_batch_commits_again)
{
    tu_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    tu_fx_begin(&fx, "api-batch", NULL);
    TU_OK(shale_batch_put(b, TU_SL("a"), TU_SL("1"), &ERR));
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    tu_del(fx.db, "a");
    TU_OK(shale_write(fx.db, NULL, b, &ERR)); /* the same batch, unchanged */
    tu_expect(fx.db, "a", "1");
    shale_batch_clear(b);
    TU_OK(shale_batch_delete(b, TU_SL("a"), &ERR));
    TU_OK(shale_batch_put(b, TU_SL("b"), TU_SL("2"), &ERR));
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    tu_expect(fx.db, "a", NULL);
    tu_expect(fx.db, "b", "2");
    cr_assert_eq(tu_stats(fx.db).batches, 4);
    shale_batch_free(b);
    tu_fx_end(&fx);
}

/* The batch copies keys and values: changing the caller's memory after adding has no effect. */
Test(batch, copies_its_input)
{
    tu_fx fx = {0};
    shale_batch *b = shale_batch_new();
    char key[8] = "key", val[8] = "val";

    cr_assert_not_null(b);
    tu_fx_begin(&fx, "api-batch", NULL);
    TU_OK(shale_batch_put(b, tu_str(key), tu_str(val), &ERR));
    memcpy(key, "XXX", 3);
    memcpy(val, "YYY", 3);
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    tu_expect(fx.db, "key", "val");
    tu_expect(fx.db, "XXX", NULL);
    shale_batch_free(b);
    tu_fx_end(&fx);
}

Test(batch, write_bad_arguments)
{
    tu_fx fx = {0};
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    TU_OK(shale_batch_put(b, TU_SL("a"), TU_SL("1"), &ERR));
    tu_fx_begin(&fx, "api-batch", NULL);
    TU_CODE(SHALE_INVALID, shale_write(NULL, NULL, b, &ERR));
    TU_CODE(SHALE_INVALID, shale_write(fx.db, NULL, NULL, &ERR));
    shale_write_opts bad = {.durability = (shale_durability)42};
    shale_code rc = shale_write(fx.db, &bad, b, NULL);
    cr_assert(rc == SHALE_INVALID, "durability 42 in write opts: %d", rc);
    tu_expect(fx.db, "a", NULL);
    shale_batch_free(b);
    tu_fx_end(&fx);
}
