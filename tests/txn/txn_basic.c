/*
 * Transactions and conditional writes, one thread: what include/shale.h promises in its
 * "Conditional writes" and "Transactions" sections.
 *
 *   txn_api   read-your-own-writes (point reads and iterators), visibility at commit, rollback,
 *             the lifetime rules (calls after the end, free, close), limits and bad arguments,
 *             the txn_* stats, durability of a commit.
 *   txn_iso   first committer wins (against transactions and every kind of plain write, also
 *             after the conflicting version went through flush and compaction), write skew and
 *             phantoms (allowed by SNAPSHOT, refused by SERIALIZABLE), versions and commit_seq.
 *   txn_view  a long-lived transaction keeps its view while flushes and compactions rewrite
 *             everything under it.
 *   txn_cond  shale_put_if_version / shale_delete_if_version.
 *   txn_ttl   shale_txn_put_ttl.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "txn_util.h"

TestSuite(txn_api);
TestSuite(txn_iso);
TestSuite(txn_view);
TestSuite(txn_cond);
TestSuite(txn_ttl);

static const uint64_t far_future_ms = 4102444800000ull; /* 2100-01-01 */

/* ------------------------------------------------------------------------------------------ */
/* txn_api                                                                                    */
/* ------------------------------------------------------------------------------------------ */

Test(txn_api, read_your_own_writes_point_reads)
{
    tu_fx fx = {0};

    tu_fx_begin(&fx, "txn-ryow", NULL);
    tu_put(fx.db, "keep", "db-keep");
    tu_put(fx.db, "over", "db-over");
    tu_put(fx.db, "gone", "db-gone");
    tu_put(fx.db, "dead", "db-dead");
    tu_del(fx.db, "dead");

    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    tx_texpect(t, "keep", "db-keep");
    tx_texpect(t, "over", "db-over");
    tx_texpect(t, "dead", NULL);
    tx_texpect(t, "new", NULL);

    tx_tput(t, "over", "t-over-1");
    tx_texpect(t, "over", "t-over-1");
    tx_tput(t, "over", "t-over-2"); /* overwrite within the transaction */
    tx_texpect(t, "over", "t-over-2");
    tx_tdel(t, "gone"); /* a delete in the transaction hides the database's value */
    tx_texpect(t, "gone", NULL);
    tx_tput(t, "new", "t-new"); /* a put adds a key */
    tx_texpect(t, "new", "t-new");
    tx_tput(t, "dead", "t-dead"); /* resurrects a key deleted in the database */
    tx_texpect(t, "dead", "t-dead");
    tx_tput(t, "tmp", "t-tmp"); /* put then delete: absent */
    tx_tdel(t, "tmp");
    tx_texpect(t, "tmp", NULL);
    tx_tdel(t, "never"); /* deleting a missing key succeeds */
    tx_texpect(t, "never", NULL);
    TU_OK(
        shale_txn_put(t, TU_SL("empty"), (shale_slice){"", 0}, &ERR)); /* empty values are values */
    tx_texpect(t, "empty", "");
    tx_tdel(t, "over"); /* a delete after two puts */
    tx_texpect(t, "over", NULL);
    tx_tput(t, "over", "t-over-3"); /* and a put after that delete */
    tx_texpect(t, "over", "t-over-3");
    tx_texpect(t, "keep", "db-keep");

    /* Keys with NUL bytes are distinct keys. */
    TU_OK(shale_txn_put(t, TU_SL("n\0a"), TU_SL("nul-a"), &ERR));
    TU_OK(shale_txn_put(t, TU_SL("n\0b"), TU_SL("nul-b"), &ERR));
    shale_buf buf = {0};
    TU_OK(shale_txn_get(t, TU_SL("n\0a"), &buf, &ERR));
    cr_assert(buf.len == 5 && memcmp(buf.data, "nul-a", 5) == 0);
    TU_CODE(SHALE_NOT_FOUND, shale_txn_get(t, TU_SL("n"), &buf, &ERR));

    TU_OK(shale_txn_commit(t, &ERR));
    shale_txn_free(t);

    tu_expect(fx.db, "keep", "db-keep");
    tu_expect(fx.db, "over", "t-over-3");
    tu_expect(fx.db, "gone", NULL);
    tu_expect(fx.db, "new", "t-new");
    tu_expect(fx.db, "dead", "t-dead");
    tu_expect(fx.db, "tmp", NULL);
    tu_expect(fx.db, "never", NULL);
    tu_expect(fx.db, "empty", "");
    TU_OK(shale_get(fx.db, NULL, TU_SL("n\0b"), &buf, &ERR));
    cr_assert(buf.len == 5 && memcmp(buf.data, "nul-b", 5) == 0);
    /* The same after a restart. */
    tu_fx_reopen(&fx, NULL);
    tu_expect(fx.db, "over", "t-over-3");
    tu_expect(fx.db, "gone", NULL);
    tu_expect(fx.db, "new", "t-new");
    tu_expect(fx.db, "dead", "t-dead");
    tu_expect(fx.db, "tmp", NULL);
    tu_expect(fx.db, "empty", "");
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

Test(txn_api, writes_invisible_until_commit)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;
    shale_buf vals[2] = {{0}, {0}};
    shale_code codes[2];
    shale_slice keys[2] = {TU_SL("k"), TU_SL("d")};

    tu_fx_begin(&fx, "txn-vis", NULL);
    tu_put(fx.db, "d", "db-d");
    uint64_t seq0 = tu_stats(fx.db).last_sequence;

    shale_txn *t1 = tx_begin(fx.db, SHALE_ISOLATION_SNAPSHOT);
    tx_tput(t1, "k", "t1-k");
    tx_tdel(t1, "d");
    shale_txn *t2 = tx_begin(fx.db, SHALE_ISOLATION_SNAPSHOT); /* begun after t1's writes */
    shale_txn *t2s = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);

    /* Nobody else sees t1's writes: plain reads, iterators, multi_get, other transactions. */
    tu_expect(fx.db, "k", NULL);
    tu_expect(fx.db, "d", "db-d");
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    cr_assert_str_eq(tu_scan(it, false), "d=db-d");
    shale_iter_free(it);
    TU_OK(shale_multi_get(fx.db, NULL, 2, keys, vals, codes, &ERR));
    cr_assert_eq(codes[0], SHALE_NOT_FOUND);
    cr_assert_eq(codes[1], SHALE_OK);
    tx_texpect(t2, "k", NULL);
    tx_texpect(t2, "d", "db-d");
    tx_texpect(t2s, "k", NULL);
    cr_assert_eq(tu_stats(fx.db).last_sequence, seq0, "an open transaction wrote to the db");

    TU_OK(shale_txn_commit(t1, &ERR));
    tu_expect(fx.db, "k", "t1-k");
    tu_expect(fx.db, "d", NULL);
    TU_OK(shale_multi_get(fx.db, NULL, 2, keys, vals, codes, &ERR));
    cr_assert_eq(codes[0], SHALE_OK);
    cr_assert_eq(codes[1], SHALE_NOT_FOUND);
    /* Transactions begun earlier keep their snapshot. */
    tx_texpect(t2, "k", NULL);
    tx_texpect(t2, "d", "db-d");
    tx_texpect(t2s, "d", "db-d");
    /* A transaction begun now sees the commit. */
    shale_txn *t3 = tx_begin(fx.db, SHALE_ISOLATION_SNAPSHOT);
    tx_texpect(t3, "k", "t1-k");
    tx_texpect(t3, "d", NULL);
    TU_OK(shale_txn_iter_new(t3, NULL, &it, &ERR));
    cr_assert_str_eq(tu_scan(it, false), "k=t1-k");
    shale_iter_free(it);

    TU_OK(shale_txn_commit(t2, &ERR)); /* read-only: commits */
    TU_OK(shale_txn_rollback(t2s, &ERR));
    TU_OK(shale_txn_rollback(t3, &ERR));
    shale_txn_free(t1);
    shale_txn_free(t2);
    shale_txn_free(t2s);
    shale_txn_free(t3);
    shale_buf_free(&vals[0]);
    shale_buf_free(&vals[1]);
    tu_fx_end(&fx);
}

/* Database keys a1 a3 a5 a7 b1 b2 (a2 deleted); the transaction deletes a3, adds a2 a4 a9 b3,
 * overwrites a5, adds-then-deletes a6 and deletes the missing a8. */
static shale_txn *iter_fixture(tu_fx *fx)
{
    static const char *const db_keys[][2] = {{"a1", "v1"}, {"a2", "v2"}, {"a3", "v3"}, {"a5", "v5"},
                                             {"a7", "v7"}, {"b1", "w1"}, {"b2", "w2"}};
    tu_fx_begin(fx, "txn-iter", NULL);
    for (size_t i = 0; i < sizeof db_keys / sizeof db_keys[0]; i++) {
        tu_put(fx->db, db_keys[i][0], db_keys[i][1]);
    }
    tu_del(fx->db, "a2");
    shale_txn *t = tx_begin(fx->db, SHALE_ISOLATION_DEFAULT);
    tx_tdel(t, "a3");
    tx_tput(t, "a4", "t4");
    tx_tput(t, "a5", "x5");
    tx_tput(t, "a5", "t5");
    tx_tput(t, "a6", "t6");
    tx_tdel(t, "a6");
    tx_tdel(t, "a8");
    tx_tput(t, "a9", "t9");
    tx_tput(t, "a2", "t2");
    tx_tput(t, "b3", "t3");
    return t;
}

#define ITER_ALL     "a1=v1,a2=t2,a4=t4,a5=t5,a7=v7,a9=t9,b1=w1,b2=w2,b3=t3"
#define ITER_ALL_REV "b3=t3,b2=w2,b1=w1,a9=t9,a7=v7,a5=t5,a4=t4,a2=t2,a1=v1"

static void expect_at(shale_iter *it, const char *key, const char *ctx)
{
    if (key == NULL) {
        cr_assert_not(shale_iter_valid(it), "%s: want the end, at %s", ctx, tu_iter_at(it));
        shale_error err = {0};
        cr_assert_eq(shale_iter_status(it, &err), SHALE_OK, "%s: status %s", ctx, err.msg);
        return;
    }
    cr_assert_str_eq(tu_iter_at(it), key, "%s: at %s, want %s", ctx, tu_iter_at(it), key);
}

Test(txn_api, iterator_merges_own_writes)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;
    shale_txn *t = iter_fixture(&fx);

    TU_OK(shale_txn_iter_new(t, NULL, &it, &ERR));
    cr_assert_str_eq(tu_scan(it, false), ITER_ALL);
    cr_assert_str_eq(tu_scan(it, true), ITER_ALL_REV);

    shale_iter_seek(it, TU_SL("a3"));
    expect_at(it, "a4", "seek a3");
    shale_iter_seek(it, TU_SL("a5"));
    expect_at(it, "a5", "seek a5");
    shale_iter_seek(it, TU_SL("a6"));
    expect_at(it, "a7", "seek a6");
    shale_iter_seek(it, TU_SL("a8"));
    expect_at(it, "a9", "seek a8");
    shale_iter_seek(it, TU_SL("b4"));
    expect_at(it, NULL, "seek b4");
    shale_iter_seek(it, TU_SL("0"));
    expect_at(it, "a1", "seek 0");

    shale_iter_seek_for_prev(it, TU_SL("a3"));
    expect_at(it, "a2", "seek_for_prev a3");
    shale_iter_seek_for_prev(it, TU_SL("a6"));
    expect_at(it, "a5", "seek_for_prev a6");
    shale_iter_seek_for_prev(it, TU_SL("a8"));
    expect_at(it, "a7", "seek_for_prev a8");
    shale_iter_seek_for_prev(it, TU_SL("a9"));
    expect_at(it, "a9", "seek_for_prev a9");
    shale_iter_seek_for_prev(it, TU_SL("zz"));
    expect_at(it, "b3", "seek_for_prev zz");
    shale_iter_seek_for_prev(it, TU_SL("a0"));
    expect_at(it, NULL, "seek_for_prev a0");

    /* Direction changes across own writes, deleted keys and database keys. */
    shale_iter_seek(it, TU_SL("a4"));
    shale_iter_next(it);
    expect_at(it, "a5", "a4 next");
    shale_iter_prev(it);
    expect_at(it, "a4", "a4 next prev");
    shale_iter_prev(it);
    expect_at(it, "a2", "a4 next prev prev");
    shale_iter_next(it);
    expect_at(it, "a4", "... next");
    shale_iter_next(it);
    shale_iter_next(it);
    expect_at(it, "a7", "... next next");
    shale_iter_prev(it);
    expect_at(it, "a5", "... prev");
    shale_iter_seek_for_prev(it, TU_SL("a8"));
    shale_iter_next(it);
    expect_at(it, "a9", "seek_for_prev a8, next");
    shale_iter_prev(it);
    expect_at(it, "a7", "seek_for_prev a8, next, prev");
    shale_iter_seek_last(it);
    shale_iter_prev(it);
    shale_iter_next(it);
    expect_at(it, "b3", "last prev next");
    cr_assert_str_eq(tu_scan_on(it, true), ITER_ALL_REV);

    /* Versions: 0 for the transaction's own writes, the stored seq for the database's. */
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        char key[8];
        snprintf(key, sizeof key, "%s", tu_iter_at(it));
        shale_entry_info info = shale_iter_info(it);
        shale_slice v = shale_iter_value(it);
        bool own = v.len > 0 && ((const char *)v.data)[0] == 't';
        cr_assert_eq(info.seq, own ? 0 : tu_seq(fx.db, key), "key %s: version %" PRIu64, key,
                     info.seq);
        cr_assert_eq(info.expire_at_ms, 0);
    }
    shale_iter_free(it);
    TU_OK(shale_txn_rollback(t, &ERR));
    shale_txn_free(t);
    tu_fx_end(&fx);
}

Test(txn_api, iterator_bounds_and_prefix)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;
    shale_txn *t = iter_fixture(&fx);
    static const struct {
        shale_read_opts ro;
        const char *fwd, *rev;
    } cases[] = {
        {{.lower_bound = TU_SL("a2"), .upper_bound = TU_SL("a9")},
         "a2=t2,a4=t4,a5=t5,a7=v7",
         "a7=v7,a5=t5,a4=t4,a2=t2"},
        {{.lower_bound = TU_SL("a3"), .upper_bound = TU_SL("b2")},
         "a4=t4,a5=t5,a7=v7,a9=t9,b1=w1",
         "b1=w1,a9=t9,a7=v7,a5=t5,a4=t4"},
        {{.prefix = TU_SL("a")},
         "a1=v1,a2=t2,a4=t4,a5=t5,a7=v7,a9=t9",
         "a9=t9,a7=v7,a5=t5,a4=t4,a2=t2,a1=v1"},
        {{.prefix = TU_SL("a"), .upper_bound = TU_SL("a6")},
         "a1=v1,a2=t2,a4=t4,a5=t5",
         "a5=t5,a4=t4,a2=t2,a1=v1"},
        {{.prefix = TU_SL("b")}, "b1=w1,b2=w2,b3=t3", "b3=t3,b2=w2,b1=w1"},
        {{.lower_bound = TU_SL("b25")}, "b3=t3", "b3=t3"},
        {{.upper_bound = TU_SL("a2")}, "a1=v1", "a1=v1"},
        {{.prefix = TU_SL("a3")}, "", ""},
        {{.prefix = TU_SL("c")}, "", ""},
        {{.lower_bound = TU_SL("a6"), .upper_bound = TU_SL("a7")}, "", ""},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TU_OK(shale_txn_iter_new(t, &cases[i].ro, &it, &ERR));
        cr_assert_str_eq(tu_scan(it, false), cases[i].fwd, "case %zu forward", i);
        cr_assert_str_eq(tu_scan(it, true), cases[i].rev, "case %zu backward", i);
        shale_iter_free(it);
    }

    /* Seeks are clamped into the bounds and the prefix. */
    shale_read_opts pb = {.prefix = TU_SL("b")};
    TU_OK(shale_txn_iter_new(t, &pb, &it, &ERR));
    shale_iter_seek(it, TU_SL("0"));
    expect_at(it, "b1", "prefix b: seek 0");
    shale_iter_seek_for_prev(it, TU_SL("z"));
    expect_at(it, "b3", "prefix b: seek_for_prev z");
    shale_iter_next(it);
    expect_at(it, NULL, "prefix b: past b3");
    shale_iter_seek_first(it);
    shale_iter_prev(it);
    expect_at(it, NULL, "prefix b: before b1");
    shale_iter_free(it);
    shale_read_opts lb = {.lower_bound = TU_SL("a3"), .upper_bound = TU_SL("a9")};
    TU_OK(shale_txn_iter_new(t, &lb, &it, &ERR));
    shale_iter_seek(it, TU_SL("a"));
    expect_at(it, "a4", "[a3,a9): seek a");
    shale_iter_seek_for_prev(it, TU_SL("b"));
    expect_at(it, "a7", "[a3,a9): seek_for_prev b");
    shale_iter_seek(it, TU_SL("a9"));
    expect_at(it, NULL, "[a3,a9): seek a9");
    shale_iter_free(it);

    /* The bound bytes are copied by shale_txn_iter_new. */
    char lower[3] = "a4", upper[3] = "a8";
    shale_read_opts copy = {.lower_bound = {lower, 2}, .upper_bound = {upper, 2}};
    TU_OK(shale_txn_iter_new(t, &copy, &it, &ERR));
    memcpy(lower, "\0\0", 2);
    memcpy(upper, "zz", 2);
    cr_assert_str_eq(tu_scan(it, false), "a4=t4,a5=t5,a7=v7");
    shale_iter_free(it);

    TU_OK(shale_txn_commit(t, &ERR));
    shale_txn_free(t);
    tu_fx_end(&fx);
}

/* A transaction iterator is a point-in-time view: later writes of the transaction, commits of
 * others and the end of the transaction itself leave it unchanged. */
Test(txn_api, iterator_is_point_in_time_and_outlives_the_txn)
{
    tu_fx fx = {0};
    shale_iter *before = NULL, *after = NULL;

    tu_fx_begin(&fx, "txn-iterpit", NULL);
    tu_put(fx.db, "a", "1");
    tu_put(fx.db, "c", "3");
    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    tx_tput(t, "b", "2");
    TU_OK(shale_txn_iter_new(t, NULL, &before, &ERR));
    tx_tput(t, "d", "4");
    tx_tdel(t, "a");
    tu_put(fx.db, "e", "5"); /* a plain write after begin: no transaction iterator sees it */
    TU_OK(shale_txn_iter_new(t, NULL, &after, &ERR));
    cr_assert_str_eq(tu_scan(before, false), "a=1,b=2,c=3");
    cr_assert_str_eq(tu_scan(after, false), "b=2,c=3,d=4");
    TU_OK(shale_txn_commit(t, &ERR));
    tu_put(fx.db, "b", "22");
    shale_txn_free(t);
    /* Readable after the transaction ended and was freed. */
    cr_assert_str_eq(tu_scan(before, false), "a=1,b=2,c=3");
    cr_assert_str_eq(tu_scan(after, true), "d=4,c=3,b=2");
    shale_iter_free(before);
    shale_iter_free(after);
    tu_expect(fx.db, "a", NULL);
    tu_expect(fx.db, "b", "22");
    tu_expect(fx.db, "d", "4");
    tu_expect(fx.db, "e", "5");
    tu_fx_end(&fx);
}

Test(txn_api, rollback_discards_everything)
{
    tu_fx fx = {0};

    tu_fx_begin(&fx, "txn-rollback", NULL);
    tu_put(fx.db, "a", "1");
    uint64_t seq0 = tu_stats(fx.db).last_sequence;
    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    tx_tput(t, "a", "2");
    tx_tput(t, "b", "2");
    tx_tdel(t, "a");
    TU_OK(shale_txn_put_ttl(t, TU_SL("c"), TU_SL("3"), far_future_ms, &ERR));
    TU_OK(shale_txn_rollback(t, &ERR));
    cr_assert_eq(shale_txn_commit_seq(t), 0);
    shale_txn_free(t);
    tu_expect(fx.db, "a", "1");
    tu_expect(fx.db, "b", NULL);
    tu_expect(fx.db, "c", NULL);
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.last_sequence, seq0);
    cr_assert_eq(st.txn_rollbacks, 1);
    cr_assert_eq(st.txn_commits, 0);
    cr_assert_eq(st.txns_open, 0);
    tu_fx_reopen(&fx, NULL);
    tu_expect(fx.db, "a", "1");
    tu_expect(fx.db, "b", NULL);
    tu_expect(fx.db, "c", NULL);
    tu_fx_end(&fx);
}

/* Every call on an ended transaction fails with SHALE_INVALID and says how it ended. */
static void expect_ended(shale_txn *t, const char *how)
{
    shale_buf buf = {0};
    shale_entry_info info;
    bool yes = true;
    shale_iter *it = NULL;

#define ENDED(...)                                                                                 \
    do {                                                                                           \
        TU_CODE(SHALE_INVALID, __VA_ARGS__);                                                       \
        cr_assert_not_null(strstr(tu_last_msg, how), "%s: message '%s' does not say '%s'",         \
                           #__VA_ARGS__, tu_last_msg, how);                                        \
    } while (0)
    ENDED(shale_txn_get(t, TU_SL("a"), &buf, &ERR));
    ENDED(shale_txn_get_info(t, TU_SL("a"), &buf, &info, &ERR));
    ENDED(shale_txn_get_info(t, TU_SL("a"), NULL, &info, &ERR));
    ENDED(shale_txn_exists(t, TU_SL("a"), &yes, &ERR));
    ENDED(shale_txn_put(t, TU_SL("a"), TU_SL("x"), &ERR));
    ENDED(shale_txn_put_ttl(t, TU_SL("a"), TU_SL("x"), far_future_ms, &ERR));
    ENDED(shale_txn_delete(t, TU_SL("a"), &ERR));
    ENDED(shale_txn_iter_new(t, NULL, &it, &ERR));
    ENDED(shale_txn_commit(t, &ERR));
    ENDED(shale_txn_rollback(t, &ERR));
    /* Still ended the same way after those calls. */
    ENDED(shale_txn_commit(t, &ERR));
#undef ENDED
    cr_assert_null(it);
    shale_buf_free(&buf);
}

Test(txn_api, calls_after_commit_or_rollback_are_invalid)
{
    tu_fx fx = {0};

    tu_fx_begin(&fx, "txn-ended", NULL);
    tu_put(fx.db, "a", "db");

    shale_txn *c = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    tx_tput(c, "a", "committed");
    TU_OK(shale_txn_commit(c, &ERR));
    uint64_t cs = shale_txn_commit_seq(c);
    expect_ended(c, "committed");
    cr_assert_eq(shale_txn_commit_seq(c), cs, "calls after the end changed commit_seq");
    shale_txn_free(c);
    tu_expect(fx.db, "a", "committed");

    shale_txn *r = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    tx_tput(r, "a", "rolled");
    TU_OK(shale_txn_rollback(r, &ERR));
    expect_ended(r, "rolled back");
    shale_txn_free(r);

    /* A read-only transaction and an empty one end the same way. */
    shale_txn *ro = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    tx_texpect(ro, "a", "committed");
    TU_OK(shale_txn_commit(ro, &ERR));
    expect_ended(ro, "committed");
    shale_txn_free(ro);
    shale_txn *e = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    TU_OK(shale_txn_rollback(e, &ERR));
    expect_ended(e, "rolled back");
    shale_txn_free(e);

    /* A failed commit ends the transaction too (it does not say which word; just INVALID). */
    shale_txn *f = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    tx_tput(f, "a", "loser");
    tu_put(fx.db, "a", "winner");
    TU_CODE(SHALE_CONFLICT, shale_txn_commit(f, &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_put(f, TU_SL("b"), TU_SL("x"), &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_commit(f, &ERR));
    shale_txn_free(f);

    tu_expect(fx.db, "a", "winner");
    tu_expect(fx.db, "b", NULL);
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.txns_open, 0);
    cr_assert_eq(st.snapshots, 0, "ended transactions still hold %" PRIu64 " snapshots",
                 st.snapshots);
    tu_fx_end(&fx);
}

Test(txn_api, free_rolls_back_an_open_txn)
{
    tu_fx fx = {0};

    tu_fx_begin(&fx, "txn-free", NULL);
    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    tx_tput(t, "a", "1");
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.txns_open, 1);
    cr_assert_eq(st.snapshots, 1, "an open transaction holds one snapshot");
    shale_txn_free(t);
    st = tu_stats(fx.db);
    cr_assert_eq(st.txns_open, 0);
    cr_assert_eq(st.snapshots, 0);
    cr_assert_eq(st.txn_rollbacks, 1);
    cr_assert_eq(st.txn_commits, 0);
    tu_expect(fx.db, "a", NULL);
    /* Freeing an ended transaction is not another rollback. */
    shale_txn *c = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    TU_OK(shale_txn_commit(c, &ERR));
    shale_txn_free(c);
    shale_txn *r = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    TU_OK(shale_txn_rollback(r, &ERR));
    shale_txn_free(r);
    st = tu_stats(fx.db);
    cr_assert_eq(st.txn_rollbacks, 2);
    cr_assert_eq(st.txn_commits, 1);
    shale_txn_free(NULL);
    tu_fx_end(&fx);
}

/* shale_close rolls back the open transactions; their calls then return SHALE_CLOSED, free still
 * works, and nothing they wrote is in the database. */
Test(txn_api, close_rolls_back_open_txns)
{
    tu_fx fx = {0};
    shale_buf buf = {0};
    shale_entry_info info;
    bool yes;
    shale_iter *it = NULL;

    tu_fx_begin(&fx, "txn-close", NULL);
    tu_put(fx.db, "a", "db-a");
    shale_txn *t1 = tx_begin(fx.db, SHALE_ISOLATION_SNAPSHOT);
    shale_txn *t2 = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    tx_tput(t1, "a", "t1-a");
    tx_tput(t1, "b", "t1-b");
    tx_texpect(t2, "a", "db-a");
    tx_tput(t2, "c", "t2-c");
    cr_assert_eq(tu_stats(fx.db).txns_open, 2);
    shale_db *db = fx.db;
    tu_fx_close(&fx);

    shale_txn *ts[2] = {t1, t2};
    for (int i = 0; i < 2; i++) {
        shale_txn *t = ts[i];
        TU_CODE(SHALE_CLOSED, shale_txn_get(t, TU_SL("a"), &buf, &ERR));
        TU_CODE(SHALE_CLOSED, shale_txn_get_info(t, TU_SL("a"), &buf, &info, &ERR));
        TU_CODE(SHALE_CLOSED, shale_txn_exists(t, TU_SL("a"), &yes, &ERR));
        TU_CODE(SHALE_CLOSED, shale_txn_put(t, TU_SL("a"), TU_SL("x"), &ERR));
        TU_CODE(SHALE_CLOSED, shale_txn_put_ttl(t, TU_SL("a"), TU_SL("x"), far_future_ms, &ERR));
        TU_CODE(SHALE_CLOSED, shale_txn_delete(t, TU_SL("a"), &ERR));
        TU_CODE(SHALE_CLOSED, shale_txn_iter_new(t, NULL, &it, &ERR));
        cr_assert_null(it);
        TU_CODE(SHALE_CLOSED, shale_txn_commit(t, &ERR));
        TU_CODE(SHALE_CLOSED, shale_txn_rollback(t, &ERR));
        cr_assert_eq(shale_txn_commit_seq(t), 0);
        (void)shale_txn_snapshot_seq(t);
    }
    /* The closed handle refuses new transactions and conditional writes. */
    shale_txn *t3 = NULL;
    TU_CODE(SHALE_CLOSED, shale_txn_begin(db, NULL, &t3, &ERR));
    cr_assert_null(t3);
    TU_CODE(SHALE_CLOSED, shale_put_if_version(db, NULL, TU_SL("a"), TU_SL("x"), 0, NULL, &ERR));
    TU_CODE(SHALE_CLOSED, shale_delete_if_version(db, NULL, TU_SL("a"), 1, &ERR));
    shale_txn_free(t1);
    shale_txn_free(t2);

    tu_fx_reopen(&fx, NULL);
    tu_expect(fx.db, "a", "db-a");
    tu_expect(fx.db, "b", NULL);
    tu_expect(fx.db, "c", NULL);
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.txns_open, 0);
    cr_assert_eq(st.snapshots, 0);
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

/* A transaction iterator made before shale_close keeps reading its view (as every iterator). */
Test(txn_api, txn_iterator_readable_after_close)
{
    for (int iso = SHALE_ISOLATION_SNAPSHOT; iso <= SHALE_ISOLATION_SERIALIZABLE; iso++) {
        tu_fx fx = {0};
        shale_iter *it = NULL;

        tu_fx_begin(&fx, "txn-iterclose", NULL);
        tu_put(fx.db, "a", "1");
        tu_put(fx.db, "c", "3");
        shale_txn *t = tx_begin(fx.db, (shale_isolation)iso);
        tx_tput(t, "b", "2");
        tx_tdel(t, "c");
        TU_OK(shale_txn_iter_new(t, NULL, &it, &ERR));
        tu_fx_close(&fx);
        cr_assert_str_eq(tu_scan(it, false), "a=1,b=2");
        cr_assert_str_eq(tu_scan(it, true), "b=2,a=1");
        shale_txn_free(t);
        cr_assert_str_eq(tu_scan(it, false), "a=1,b=2");
        shale_iter_free(it);
        tu_fx_end(&fx);
    }
}

Test(txn_api, max_bytes_full_keeps_the_txn_usable)
{
    tu_fx fx = {0};
    shale_txn_opts o = {.max_bytes = 64 * 1024};
    shale_txn *t = NULL;
    char *big = malloc(100 * 1024);
    char key[32];
    shale_buf buf = {0};

    cr_assert_not_null(big);
    memset(big, 'v', 100 * 1024);
    tu_fx_begin(&fx, "txn-full", NULL);
    tu_put(fx.db, "pre", "db");
    TU_OK(shale_txn_begin(fx.db, &o, &t, &ERR));
    /* One write bigger than the whole budget: refused, not applied, the txn goes on. */
    TU_CODE(SHALE_FULL, shale_txn_put(t, TU_SL("big"), (shale_slice){big, 100 * 1024}, &ERR));
    TU_CODE(SHALE_FULL, shale_txn_put_ttl(t, TU_SL("big"), (shale_slice){big, 100 * 1024},
                                          far_future_ms, &ERR));
    tx_texpect(t, "big", NULL);
    tx_tput(t, "small", "s");
    tx_texpect(t, "small", "s");
    /* Then 4 KiB writes until the budget is used up. */
    int n = 0;
    for (;; n++) {
        cr_assert_lt(n, 64, "64 writes of 4 KiB fit in a 64 KiB transaction");
        snprintf(key, sizeof key, "k%03d", n);
        shale_error err = {0};
        shale_code rc = shale_txn_put(t, tu_str(key), (shale_slice){big, 4096}, &err);
        if (rc == SHALE_FULL) {
            cr_assert_eq(err.code, SHALE_FULL);
            break;
        }
        cr_assert_eq(rc, SHALE_OK, "put %s: %s", key, err.msg);
    }
    cr_assert_geq(n, 8, "only %d writes of 4 KiB fit in 64 KiB", n);
    cr_assert_leq(n, 16, "%d writes of 4 KiB fit in 64 KiB", n);
    snprintf(key, sizeof key, "k%03d", n);
    tx_texpect(t, key, NULL); /* the refused write is not applied */
    /* Reads, an iterator and the earlier writes still work. */
    TU_OK(shale_txn_get(t, TU_SL("k000"), &buf, &ERR));
    cr_assert_eq(buf.len, 4096);
    tx_texpect(t, "pre", "db");
    shale_iter *it = NULL;
    TU_OK(shale_txn_iter_new(t, &(shale_read_opts){.prefix = TU_SL("k")}, &it, &ERR));
    int seen = 0;
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        seen++;
    }
    shale_iter_free(it);
    cr_assert_eq(seen, n);
    TU_OK(shale_txn_commit(t, &ERR));
    shale_txn_free(t);

    /* The commit wrote what fit, and only that. */
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        TU_OK(shale_get(fx.db, NULL, tu_str(key), &buf, &ERR));
        cr_assert_eq(buf.len, 4096, "%s", key);
    }
    snprintf(key, sizeof key, "k%03d", n);
    tu_expect(fx.db, key, NULL);
    tu_expect(fx.db, "big", NULL);
    tu_expect(fx.db, "small", "s");
    shale_buf_free(&buf);
    free(big);
    tu_fx_end(&fx);
}

Test(txn_api, begin_validates_options)
{
    tu_fx fx = {0};
    shale_txn *t = NULL;
    static const shale_txn_opts bad[] = {
        {.isolation = (shale_isolation)3},    {.isolation = (shale_isolation)-1},
        {.durability = (shale_durability)42}, {.max_bytes = 1000},
        {.max_bytes = 64 * 1024 - 1},         {.max_bytes = (1ull << 30) + 1},
    };

    tu_fx_begin(&fx, "txn-opts", NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        TU_CODE(SHALE_INVALID, shale_txn_begin(fx.db, &bad[i], &t, &ERR));
        cr_assert_null(t, "case %zu", i);
    }
    TU_CODE(SHALE_INVALID, shale_txn_begin(NULL, NULL, &t, &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_begin(fx.db, NULL, NULL, &ERR));
    cr_assert_eq(tu_stats(fx.db).txns_open, 0);

    static const shale_txn_opts good[] = {
        {0},
        {.isolation = SHALE_ISOLATION_SNAPSHOT},
        {.isolation = SHALE_ISOLATION_SERIALIZABLE},
        {.durability = SHALE_DURABILITY_NONE}, /* treated as MEMORY on a logged database */
        {.durability = SHALE_DURABILITY_MEMORY},
        {.durability = SHALE_DURABILITY_FULL},
        {.max_bytes = 64 * 1024},
        {.max_bytes = 1ull << 30},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char key[16];
        snprintf(key, sizeof key, "g%zu", i);
        TU_OK(shale_txn_begin(fx.db, &good[i], &t, &ERR));
        tx_tput(t, key, "v");
        TU_OK(shale_txn_commit(t, &ERR));
        shale_txn_free(t);
        t = NULL;
        tu_expect(fx.db, key, "v");
    }
    tu_fx_end(&fx);
}

Test(txn_api, bad_arguments)
{
    tu_fx fx = {0};
    shale_buf buf = {0};
    shale_entry_info info;
    bool yes;
    shale_iter *it = NULL;
    const shale_slice empty = {"", 0}, null_empty = {NULL, 0}, nullkey = {NULL, 3};

    tu_fx_begin(&fx, "txn-args", NULL);
    tu_put(fx.db, "a", "1");
    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);

    /* A NULL transaction. */
    TU_CODE(SHALE_INVALID, shale_txn_get(NULL, TU_SL("a"), &buf, &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_get_info(NULL, TU_SL("a"), &buf, &info, &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_exists(NULL, TU_SL("a"), &yes, &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_put(NULL, TU_SL("a"), TU_SL("x"), &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_put_ttl(NULL, TU_SL("a"), TU_SL("x"), 1, &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_delete(NULL, TU_SL("a"), &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_iter_new(NULL, NULL, &it, &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_commit(NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_rollback(NULL, &ERR));
    cr_assert_eq(shale_txn_commit_seq(NULL), 0);
    (void)shale_txn_snapshot_seq(NULL);
    shale_txn_free(NULL);
    cr_assert_eq(shale_txn_commit(NULL, NULL), SHALE_INVALID); /* err may be NULL */

    /* Empty and NULL keys. */
    const shale_slice bad_keys[] = {empty, null_empty, nullkey};
    for (int i = 0; i < 3; i++) {
        shale_slice k = bad_keys[i];
        TU_CODE(SHALE_INVALID, shale_txn_get(t, k, &buf, &ERR));
        TU_CODE(SHALE_INVALID, shale_txn_get_info(t, k, &buf, &info, &ERR));
        TU_CODE(SHALE_INVALID, shale_txn_exists(t, k, &yes, &ERR));
        TU_CODE(SHALE_INVALID, shale_txn_put(t, k, TU_SL("x"), &ERR));
        TU_CODE(SHALE_INVALID, shale_txn_put_ttl(t, k, TU_SL("x"), 1, &ERR));
        TU_CODE(SHALE_INVALID, shale_txn_delete(t, k, &ERR));
    }
    /* NULL value bytes and NULL outputs. */
    TU_CODE(SHALE_INVALID, shale_txn_put(t, TU_SL("b"), (shale_slice){NULL, 5}, &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_put_ttl(t, TU_SL("b"), (shale_slice){NULL, 5}, 1, &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_get(t, TU_SL("a"), NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_exists(t, TU_SL("a"), NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_txn_iter_new(t, NULL, NULL, &ERR));
    /* Iterator options: a snapshot is not allowed; bounds and prefix need their bytes. */
    shale_snapshot *snap = shale_snapshot_get(fx.db);
    cr_assert_not_null(snap);
    shale_read_opts ro = {.snapshot = snap};
    TU_CODE(SHALE_INVALID, shale_txn_iter_new(t, &ro, &it, &ERR));
    cr_assert_null(it);
    shale_snapshot_release(fx.db, snap);
    ro = (shale_read_opts){.prefix = {NULL, 3}};
    TU_CODE(SHALE_INVALID, shale_txn_iter_new(t, &ro, &it, &ERR));
    ro = (shale_read_opts){.lower_bound = {NULL, 1}};
    TU_CODE(SHALE_INVALID, shale_txn_iter_new(t, &ro, &it, &ERR));
    ro = (shale_read_opts){.upper_bound = {NULL, 1}};
    TU_CODE(SHALE_INVALID, shale_txn_iter_new(t, &ro, &it, &ERR));
    cr_assert_null(it);

    /* None of that ended the transaction or wrote anything: it still works. */
    tx_texpect(t, "a", "1");
    tx_texpect(t, "b", NULL);
    tx_tput(t, "c", "3");
    TU_OK(shale_txn_commit(t, &ERR));
    shale_txn_free(t);
    tu_expect(fx.db, "b", NULL);
    tu_expect(fx.db, "c", "3");
    cr_assert_eq(tu_stats(fx.db).writes, 2);
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

Test(txn_api, keys_and_values_obey_the_db_limits)
{
    shale_options o = {.max_key_bytes = 16, .max_value_bytes = 32};
    tu_fx fx = {0};
    char big[64];
    shale_buf buf = {0};

    memset(big, 'k', sizeof big);
    tu_fx_begin(&fx, "txn-limits", &o);
    shale_slice k16 = {big, 16}, k17 = {big, 17}, v32 = {big, 32}, v33 = {big, 33};
    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    TU_OK(shale_txn_put(t, k16, v32, &ERR));
    TU_CODE(SHALE_FULL, shale_txn_put(t, k17, TU_SL("x"), &ERR));
    TU_CODE(SHALE_FULL, shale_txn_put(t, TU_SL("v"), v33, &ERR));
    TU_CODE(SHALE_FULL, shale_txn_put_ttl(t, k17, TU_SL("x"), far_future_ms, &ERR));
    TU_CODE(SHALE_FULL, shale_txn_put_ttl(t, TU_SL("v"), v33, far_future_ms, &ERR));
    /* As with shale_delete, a long key's delete is FULL or INVALID; a read of one never finds. */
    shale_code drc = shale_txn_delete(t, k17, NULL);
    cr_assert(drc == SHALE_FULL || drc == SHALE_INVALID, "txn_delete of a long key: %d", drc);
    cr_assert_neq(shale_txn_get(t, k17, &buf, NULL), SHALE_OK);
    TU_OK(shale_txn_get(t, k16, &buf, &ERR));
    cr_assert_eq(buf.len, 32);
    TU_CODE(SHALE_NOT_FOUND, shale_txn_get(t, TU_SL("v"), &buf, &ERR));
    TU_OK(shale_txn_commit(t, &ERR));
    shale_txn_free(t);
    TU_OK(shale_get(fx.db, NULL, k16, &buf, &ERR));
    cr_assert_eq(buf.len, 32);
    tu_expect(fx.db, "v", NULL);
    cr_assert_eq(tu_stats(fx.db).writes, 1);
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

Test(txn_api, stats_count_transactions)
{
    tu_fx fx = {0};

    tu_fx_begin(&fx, "txn-stats", NULL);
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.txns_open, 0);
    cr_assert_eq(st.txn_commits, 0);
    cr_assert_eq(st.txn_conflicts, 0);
    cr_assert_eq(st.txn_rollbacks, 0);

    shale_txn *t1 = tx_begin(fx.db, SHALE_ISOLATION_SNAPSHOT);
    shale_txn *t2 = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    shale_snapshot *snap = shale_snapshot_get(fx.db);
    st = tu_stats(fx.db);
    cr_assert_eq(st.txns_open, 2);
    cr_assert_eq(st.snapshots, 3, "2 transactions + 1 snapshot: %" PRIu64, st.snapshots);
    uint64_t seq0 = st.last_sequence;

    /* An empty commit: counted, writes nothing. */
    TU_OK(shale_txn_commit(t1, &ERR));
    cr_assert_eq(shale_txn_commit_seq(t1), 0);
    st = tu_stats(fx.db);
    cr_assert_eq(st.txn_commits, 1);
    cr_assert_eq(st.txns_open, 1);
    cr_assert_eq(st.last_sequence, seq0);
    cr_assert_eq(st.writes, 0);

    TU_OK(shale_txn_rollback(t2, &ERR));
    st = tu_stats(fx.db);
    cr_assert_eq(st.txn_rollbacks, 1);
    cr_assert_eq(st.txns_open, 0);
    cr_assert_eq(st.snapshots, 1);
    shale_snapshot_release(fx.db, snap);
    shale_txn_free(t1);
    shale_txn_free(t2);

    /* A write commit and a conflict. */
    shale_txn *w = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    shale_txn *l = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    tx_tput(w, "k", "w");
    tx_tput(l, "k", "l");
    TU_OK(shale_txn_commit(w, &ERR));
    TU_CODE(SHALE_CONFLICT, shale_txn_commit(l, &ERR));
    shale_txn_free(w);
    shale_txn_free(l);
    st = tu_stats(fx.db);
    cr_assert_eq(st.txn_commits, 2);
    cr_assert_eq(st.txn_conflicts, 1);
    cr_assert_eq(st.txns_open, 0);
    cr_assert_eq(st.snapshots, 0);
    cr_assert_eq(st.writes, 1);
    cr_assert_eq(st.batches, 1, "a commit is one batch");

    /* Counters run since open. */
    tu_fx_reopen(&fx, NULL);
    st = tu_stats(fx.db);
    cr_assert_eq(st.txn_commits, 0);
    cr_assert_eq(st.txn_conflicts, 0);
    cr_assert_eq(st.txn_rollbacks, 0);
    tu_fx_end(&fx);
}

/* A FULL commit is in the log when it returns: a crash right after keeps all of it. */
Test(txn_api, commit_survives_a_crash)
{
    tu_fx fx = {0};
    shale_txn_opts o = {.durability = SHALE_DURABILITY_FULL};
    shale_txn *t = NULL;
    char key[32], val[32];

    tu_fx_begin(&fx, "txn-crash", NULL);
    tu_put(fx.db, "gone", "x");
    TU_OK(shale_txn_begin(fx.db, &o, &t, &ERR));
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "key%02d", i);
        snprintf(val, sizeof val, "val%02d", i);
        tx_tput(t, key, val);
    }
    tx_tdel(t, "gone");
    TU_OK(shale_txn_commit(t, &ERR));
    shale_txn_free(t);
    /* An open transaction's writes are not in the log. */
    shale_txn *open = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    tx_tput(open, "uncommitted", "x");
    shale_db *db = fx.db;
    fx.db = NULL;
    tu_close_as_crash(db, fx.path);
    shale_txn_free(open);

    tu_fx_reopen(&fx, NULL);
    cr_assert_eq(tu_stats(fx.db).recovered_records, 2, "the put and the commit's one record");
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "key%02d", i);
        snprintf(val, sizeof val, "val%02d", i);
        tu_expect(fx.db, key, val);
    }
    tu_expect(fx.db, "gone", NULL);
    tu_expect(fx.db, "uncommitted", NULL);
    tu_fx_end(&fx);
}

/* On a database without a log, a commit asking for more than NONE is refused (at begin or at
 * commit), and nothing is written. */
Test(txn_api, durability_beyond_none_on_a_none_db)
{
    shale_options o = {.durability = SHALE_DURABILITY_NONE};
    shale_txn_opts full = {.durability = SHALE_DURABILITY_FULL};
    tu_fx fx = {0};
    shale_txn *t = NULL;
    shale_error err = {0};

    tu_fx_begin(&fx, "txn-none", &o);
    shale_code rc = shale_txn_begin(fx.db, &full, &t, &err);
    if (rc == SHALE_OK) {
        tx_tput(t, "a", "1");
        TU_CODE(SHALE_INVALID, shale_txn_commit(t, &ERR));
        shale_txn_free(t);
    } else {
        cr_assert_eq(rc, SHALE_INVALID, "begin: %s (%s)", shale_strerror(rc), err.msg);
    }
    tu_expect(fx.db, "a", NULL);
    /* The database's own level works. */
    t = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    tx_tput(t, "b", "2");
    TU_OK(shale_txn_commit(t, &ERR));
    shale_txn_free(t);
    tu_expect(fx.db, "b", "2");
    tu_fx_end(&fx);
}

/* ------------------------------------------------------------------------------------------ */
/* txn_iso                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* unchecked_writes: the written keys are not checked (the last committer wins), but a read for
 * update still is. */
Test(txn_iso, unchecked_writes_skip_only_the_write_check)
{
    tu_fx fx = {0};
    shale_txn_opts uo = {.unchecked_writes = true};
    shale_txn *a, *b;

    tu_fx_begin(&fx, "txn-unchecked", NULL);
    tu_put(fx.db, "k", "0");
    TU_OK(shale_txn_begin(fx.db, &uo, &a, &ERR));
    TU_OK(shale_txn_begin(fx.db, &uo, &b, &ERR));
    tx_tput(a, "k", "a");
    tx_tput(b, "k", "b");
    TU_OK(shale_txn_commit(b, &ERR));
    TU_OK(shale_txn_commit(a, &ERR)); /* no conflict: a's write lands last */
    tu_expect(fx.db, "k", "a");
    shale_txn_free(a);
    shale_txn_free(b);

    TU_OK(shale_txn_begin(fx.db, &uo, &a, &ERR));
    shale_buf v = {0};
    TU_OK(shale_txn_get_for_update(a, TU_SL("k"), &v, &ERR));
    tx_tput(a, "other", "x");
    tu_put(fx.db, "k", "changed");
    TU_CODE(SHALE_CONFLICT, shale_txn_commit(a, &ERR)); /* the read for update is checked */
    tu_expect(fx.db, "other", NULL);
    shale_txn_free(a);
    shale_buf_free(&v);
    tu_fx_end(&fx);
}

Test(txn_iso, first_committer_wins_between_txns)
{
    tu_fx fx = {0};

    tu_fx_begin(&fx, "txn-fcw", NULL);
    tu_put(fx.db, "acct/the-contested-key", "0");
    for (int iso = SHALE_ISOLATION_SNAPSHOT; iso <= SHALE_ISOLATION_SERIALIZABLE; iso++) {
        shale_txn *a = tx_begin(fx.db, (shale_isolation)iso);
        shale_txn *b = tx_begin(fx.db, (shale_isolation)iso);
        tx_tput(a, "acct/the-contested-key", "a");
        tx_tput(b, "acct/the-contested-key", "b");
        tx_tput(b, "b-side", "b");
        tx_tput(a, "a-side", "a"); /* must not survive a's failed commit */
        /* b commits first: it wins, whatever the order of the writes. */
        TU_OK(shale_txn_commit(b, &ERR));
        uint64_t seq = tu_stats(fx.db).last_sequence;
        TU_CODE(SHALE_CONFLICT, shale_txn_commit(a, &ERR));
        cr_assert_not_null(strstr(tu_last_msg, "acct/the-contested-key"),
                           "the conflict message does not name the key: '%s'", tu_last_msg);
        cr_assert_eq(shale_txn_commit_seq(a), 0);
        /* The failed commit wrote nothing at all. */
        cr_assert_eq(tu_stats(fx.db).last_sequence, seq);
        tu_expect(fx.db, "acct/the-contested-key", "b");
        tu_expect(fx.db, "b-side", "b");
        tu_expect(fx.db, "a-side", NULL);
        tu_del(fx.db, "b-side");
        shale_txn_free(a);
        shale_txn_free(b);
    }
    /* A delete loses the same way. */
    shale_txn *d = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    shale_txn *p = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    tx_tdel(d, "acct/the-contested-key");
    tx_tput(p, "acct/the-contested-key", "p");
    TU_OK(shale_txn_commit(p, &ERR));
    TU_CODE(SHALE_CONFLICT, shale_txn_commit(d, &ERR));
    tu_expect(fx.db, "acct/the-contested-key", "p");
    shale_txn_free(d);
    shale_txn_free(p);
    /* A retry with a new transaction succeeds. */
    shale_txn *r = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    tx_tdel(r, "acct/the-contested-key");
    TU_OK(shale_txn_commit(r, &ERR));
    shale_txn_free(r);
    tu_expect(fx.db, "acct/the-contested-key", NULL);
    cr_assert_eq(tu_stats(fx.db).txn_conflicts, 3);
    tu_fx_end(&fx);
}

/* Plain writes (put, put_ttl, delete, a batch, conditional writes) made after begin make the
 * commit of the same key conflict: first committer wins against non-transactional writers too.
 * Whether the transaction wrote the key before or after the plain write does not matter. */
Test(txn_iso, plain_writes_after_begin_conflict)
{
    tu_fx fx = {0};
    char key[32], side[32];
    shale_batch *b = shale_batch_new();
    enum { PUT, PUT_TTL, DEL, BATCH_PUT, BATCH_DEL, PUT_IF, DEL_IF, NKINDS };

    cr_assert_not_null(b);
    tu_fx_begin(&fx, "txn-plain", NULL);
    uint64_t conflicts = 0;
    for (int kind = 0; kind < NKINDS; kind++) {
        for (int order = 0; order < 2; order++) {
            for (int tdel = 0; tdel < 2; tdel++) {
                snprintf(key, sizeof key, "key-%d-%d-%d", kind, order, tdel);
                snprintf(side, sizeof side, "side-%d-%d-%d", kind, order, tdel);
                tu_put(fx.db, key, "base");
                uint64_t base_seq = tu_seq(fx.db, key);
                shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_SNAPSHOT);
                tx_tput(t, side, "t");
                if (order == 0) {
                    tdel ? tx_tdel(t, key) : tx_tput(t, key, "t");
                }
                switch (kind) {
                case PUT:
                    tu_put(fx.db, key, "plain");
                    break;
                case PUT_TTL:
                    TU_OK(shale_put_ttl(fx.db, NULL, tu_str(key), TU_SL("plain"), far_future_ms,
                                        &ERR));
                    break;
                case DEL:
                    tu_del(fx.db, key);
                    break;
                case BATCH_PUT:
                case BATCH_DEL:
                    shale_batch_clear(b);
                    TU_OK(shale_batch_put(b, TU_SL("other"), TU_SL("x"), &ERR));
                    if (kind == BATCH_PUT) {
                        TU_OK(shale_batch_put(b, tu_str(key), TU_SL("plain"), &ERR));
                    } else {
                        TU_OK(shale_batch_delete(b, tu_str(key), &ERR));
                    }
                    TU_OK(shale_write(fx.db, NULL, b, &ERR));
                    break;
                case PUT_IF:
                    TU_OK(shale_put_if_version(fx.db, NULL, tu_str(key), TU_SL("plain"), base_seq,
                                               NULL, &ERR));
                    break;
                case DEL_IF:
                    TU_OK(shale_delete_if_version(fx.db, NULL, tu_str(key), base_seq, &ERR));
                    break;
                }
                if (order == 1) {
                    tdel ? tx_tdel(t, key) : tx_tput(t, key, "t");
                }
                TU_CODE(SHALE_CONFLICT, shale_txn_commit(t, &ERR));
                cr_assert_not_null(strstr(tu_last_msg, key), "kind %d: message '%s' lacks %s", kind,
                                   tu_last_msg, key);
                conflicts++;
                shale_txn_free(t);
                bool gone = kind == DEL || kind == BATCH_DEL || kind == DEL_IF;
                tu_expect(fx.db, key, gone ? NULL : "plain");
                tu_expect(fx.db, side, NULL);
            }
        }
    }
    cr_assert_eq(tu_stats(fx.db).txn_conflicts, conflicts);
    shale_batch_free(b);
    tu_fx_end(&fx);
}

/* Writes before begin, and writes after begin to other keys, do not conflict (SNAPSHOT checks
 * only the keys written, not the keys read). */
Test(txn_iso, unrelated_writes_do_not_conflict)
{
    tu_fx fx = {0};

    tu_fx_begin(&fx, "txn-noconf", NULL);
    tu_put(fx.db, "k", "before");
    tu_put(fx.db, "r", "before");
    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_SNAPSHOT);
    tx_texpect(t, "r", "before");
    tx_texpect(t, "absent", NULL);
    tu_put(fx.db, "other", "x");
    tu_put(fx.db, "r", "after");    /* read by t, not written: fine under SNAPSHOT */
    tu_put(fx.db, "absent", "now"); /* read as absent by t: fine too */
    tu_put(fx.db, "k0", "x");       /* neighbours of the written key */
    tu_put(fx.db, "kk", "x");
    tx_tput(t, "k", "txn");
    tx_tput(t, "new", "txn");
    TU_OK(shale_txn_commit(t, &ERR));
    shale_txn_free(t);
    tu_expect(fx.db, "k", "txn");
    tu_expect(fx.db, "new", "txn");
    tu_expect(fx.db, "r", "after");
    /* Two transactions writing disjoint keys both commit, in either order. */
    shale_txn *a = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    shale_txn *b = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    tx_tput(a, "a", "1");
    tx_tput(b, "b", "2");
    TU_OK(shale_txn_commit(b, &ERR));
    TU_OK(shale_txn_commit(a, &ERR));
    shale_txn_free(a);
    shale_txn_free(b);
    tu_expect(fx.db, "a", "1");
    tu_expect(fx.db, "b", "2");
    cr_assert_eq(tu_stats(fx.db).txn_conflicts, 0);
    tu_fx_end(&fx);
}

/* Fills the memtable with `n` filler keys (to push earlier writes into tables). */
static void filler(shale_db *db, int gen, int n)
{
    char key[32], val[160];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "filler/%05d", i);
        snprintf(val, sizeof val, "%d-%0140d", gen, i);
        tu_put(db, key, val);
    }
}

/* The conflicting version was flushed into a table and compacted before the commit: commit
 * validation still finds it (it does not rely on the memtable holding the history). */
Test(txn_iso, conflicts_found_after_flush_and_compaction)
{
    shale_options o = tu_small_lsm_options(2);
    tu_fx fx = {0};

    tu_fx_begin(&fx, "txn-flushconf", &o);
    tu_put(fx.db, "k1", "base");
    tu_put(fx.db, "k2", "base");
    filler(fx.db, 0, 600);
    TU_OK(shale_flush(fx.db, &ERR));

    shale_txn *t1 = tx_begin(fx.db, SHALE_ISOLATION_SNAPSHOT);
    shale_txn *t2 = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    tx_texpect(t2, "k2", "base");
    tu_put(fx.db, "k1", "plain");
    tu_put(fx.db, "k2", "plain");
    TU_OK(shale_flush(fx.db, &ERR));
    filler(fx.db, 1, 600);
    TU_OK(shale_compact(fx.db, &ERR));
    filler(fx.db, 2, 300); /* the memtable now holds none of the keys */
    shale_stats st = tu_stats(fx.db);
    cr_assert_gt(st.compactions, 0);

    tx_tput(t1, "k1", "t1");
    tx_tput(t2, "other", "t2"); /* t2 only read k2 */
    TU_CODE(SHALE_CONFLICT, shale_txn_commit(t1, &ERR));
    cr_assert_not_null(strstr(tu_last_msg, "k1"), "message: %s", tu_last_msg);
    TU_CODE(SHALE_CONFLICT, shale_txn_commit(t2, &ERR));
    cr_assert_not_null(strstr(tu_last_msg, "k2"), "message: %s", tu_last_msg);
    shale_txn_free(t1);
    shale_txn_free(t2);
    tu_expect(fx.db, "k1", "plain");
    tu_expect(fx.db, "other", NULL);

    /* Without a write after begin, a commit over keys now only in tables goes through. */
    shale_txn *t4 = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    tx_texpect(t4, "k2", "plain");
    tx_tput(t4, "k1", "t4");
    TU_OK(shale_txn_commit(t4, &ERR));
    shale_txn_free(t4);
    tu_expect(fx.db, "k1", "t4");
    tu_fx_end(&fx);
}

/* A key put and deleted after begin was written after begin, even once compaction dropped both
 * versions (the put is shadowed, and the tombstone has nothing left to hide at the bottom). A
 * transaction that writes the key must still conflict; the same for a SERIALIZABLE read of it. */
Test(txn_iso, conflict_survives_a_put_and_delete_compacted_away)
{
    shale_options o = tu_small_lsm_options(2);
    tu_fx fx = {0};

    tu_fx_begin(&fx, "txn-ghost", &o);
    filler(fx.db, 0, 300);
    shale_txn *w = tx_begin(fx.db, SHALE_ISOLATION_SNAPSHOT);
    shale_txn *r = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    tx_texpect(r, "ghost-r", NULL);
    tu_put(fx.db, "ghost-w", "short-lived");
    tu_del(fx.db, "ghost-w");
    tu_put(fx.db, "ghost-r", "short-lived");
    tu_del(fx.db, "ghost-r");
    TU_OK(shale_flush(fx.db, &ERR));
    filler(fx.db, 1, 600);
    TU_OK(shale_compact(fx.db, &ERR));
    filler(fx.db, 2, 300);
    tu_expect(fx.db, "ghost-w", NULL);
    tx_tput(w, "ghost-w", "w");
    tx_tput(r, "other", "r");
    TU_CODE(SHALE_CONFLICT, shale_txn_commit(w, &ERR));
    cr_assert_not_null(strstr(tu_last_msg, "ghost-w"), "message: %s", tu_last_msg);
    TU_CODE(SHALE_CONFLICT, shale_txn_commit(r, &ERR));
    cr_assert_not_null(strstr(tu_last_msg, "ghost-r"), "message: %s", tu_last_msg);
    shale_txn_free(w);
    shale_txn_free(r);
    tu_expect(fx.db, "ghost-w", NULL);
    tu_expect(fx.db, "other", NULL);
    tu_fx_end(&fx);
}

/* A transaction that wrote nothing commits with SHALE_OK, even when what it read changed
 * (SERIALIZABLE too: it is serialized at its snapshot). */
Test(txn_iso, read_only_txns_commit)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;

    tu_fx_begin(&fx, "txn-ro", NULL);
    tu_put(fx.db, "a", "1");
    for (int iso = SHALE_ISOLATION_DEFAULT; iso <= SHALE_ISOLATION_SERIALIZABLE; iso++) {
        shale_txn *t = tx_begin(fx.db, (shale_isolation)iso);
        tx_texpect(t, "a", "1");
        tx_texpect(t, "b", NULL);
        TU_OK(shale_txn_iter_new(t, NULL, &it, &ERR));
        cr_assert_str_eq(tu_scan(it, false), "a=1");
        shale_iter_free(it);
        tu_put(fx.db, "a", "2");
        tu_put(fx.db, "b", "2");
        tu_put(fx.db, "a0", "2");
        uint64_t last = tu_stats(fx.db).last_sequence;
        TU_OK(shale_txn_commit(t, &ERR));
        cr_assert_eq(shale_txn_commit_seq(t), 0);
        cr_assert_eq(tu_stats(fx.db).last_sequence, last);
        shale_txn_free(t);
        tu_put(fx.db, "a", "1");
        tu_del(fx.db, "b");
        tu_del(fx.db, "a0");
    }
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.txn_commits, 3);
    cr_assert_eq(st.txn_conflicts, 0);
    tu_fx_end(&fx);
}

/* Two doctors on call; each transaction reads both, sees two on call and takes its own doctor
 * off. SNAPSHOT lets both commit (write skew: nobody on call); SERIALIZABLE refuses the second. */
static void write_skew(shale_isolation iso, bool second_conflicts)
{
    tu_fx fx = {0};
    shale_buf buf = {0};

    tu_fx_begin(&fx, "txn-skew", NULL);
    tu_put(fx.db, "doc/alice", "on");
    tu_put(fx.db, "doc/bob", "on");
    shale_txn *t1 = tx_begin(fx.db, iso);
    shale_txn *t2 = tx_begin(fx.db, iso);
    shale_txn *ts[2] = {t1, t2};
    for (int i = 0; i < 2; i++) {
        int on = 0;
        TU_OK(shale_txn_get(ts[i], TU_SL("doc/alice"), &buf, &ERR));
        on += buf.len == 2 && memcmp(buf.data, "on", 2) == 0;
        TU_OK(shale_txn_get(ts[i], TU_SL("doc/bob"), &buf, &ERR));
        on += buf.len == 2 && memcmp(buf.data, "on", 2) == 0;
        cr_assert_eq(on, 2);
    }
    tx_tput(t1, "doc/alice", "off");
    tx_tput(t2, "doc/bob", "off");
    TU_OK(shale_txn_commit(t1, &ERR));
    if (second_conflicts) {
        TU_CODE(SHALE_CONFLICT, shale_txn_commit(t2, &ERR));
        cr_assert_not_null(strstr(tu_last_msg, "doc/alice"),
                           "the conflict names the key read: '%s'", tu_last_msg);
        tu_expect(fx.db, "doc/alice", "off");
        tu_expect(fx.db, "doc/bob", "on");
        cr_assert_eq(tu_stats(fx.db).txn_conflicts, 1);
    } else {
        TU_OK(shale_txn_commit(t2, &ERR));
        tu_expect(fx.db, "doc/alice", "off");
        tu_expect(fx.db, "doc/bob", "off");
        cr_assert_eq(tu_stats(fx.db).txn_conflicts, 0);
    }
    shale_txn_free(t1);
    shale_txn_free(t2);
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

Test(txn_iso, write_skew_allowed_under_snapshot)
{
    write_skew(SHALE_ISOLATION_SNAPSHOT, false);
}

Test(txn_iso, write_skew_allowed_under_default)
{
    write_skew(SHALE_ISOLATION_DEFAULT, false);
}

Test(txn_iso, write_skew_refused_under_serializable)
{
    write_skew(SHALE_ISOLATION_SERIALIZABLE, true);
}

/* T1 counts the keys under a prefix with an iterator and writes the count; T2 inserts `insert`
 * and commits first. Returns T1's commit code. */
static shale_code phantom_round(shale_db *db, shale_isolation iso, const char *insert,
                                bool with_prefix, char *msg, size_t cap)
{
    shale_iter *it = NULL;
    shale_read_opts ro = {0};
    shale_error err = {0};

    if (with_prefix) {
        ro.prefix = TU_SL("room/");
    } else {
        ro.lower_bound = TU_SL("room/");
        ro.upper_bound = TU_SL("room0"); /* '0' follows '/' */
    }
    shale_txn *t1 = tx_begin(db, iso);
    TU_OK(shale_txn_iter_new(t1, &ro, &it, &ERR));
    int n = 0;
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        n++;
    }
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_free(it);
    cr_assert_eq(n, 2, "room/a and room/b");
    shale_txn *t2 = tx_begin(db, SHALE_ISOLATION_SERIALIZABLE);
    tx_tput(t2, insert, "booked");
    TU_OK(shale_txn_commit(t2, &ERR));
    shale_txn_free(t2);
    tx_tput(t1, "room-count", "2");
    shale_code rc = shale_txn_commit(t1, &err);
    snprintf(msg, cap, "%s", rc == SHALE_OK ? "" : err.msg);
    shale_txn_free(t1);
    /* Undo the insert for the next round (a plain delete). */
    tu_del(db, insert);
    return rc;
}

Test(txn_iso, phantoms_refused_under_serializable)
{
    tu_fx fx = {0};
    char msg[256];
    /* Inside the range: before the first key, between, after the last key. */
    static const char *const inside[] = {"room/", "room/0", "room/aa", "room/c", "room/\xff"};
    /* Outside it. */
    static const char *const outside[] = {"room", "roo", "room0", "zoo", "a"};

    tu_fx_begin(&fx, "txn-phantom", NULL);
    tu_put(fx.db, "room/a", "booked");
    tu_put(fx.db, "room/b", "booked");
    for (int p = 0; p < 2; p++) {
        for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++) {
            shale_code rc =
                phantom_round(fx.db, SHALE_ISOLATION_SERIALIZABLE, inside[i], p, msg, sizeof msg);
            cr_assert_eq(rc, SHALE_CONFLICT,
                         "SERIALIZABLE, %s: insert of '%s' into the range iterated: %s",
                         p ? "prefix" : "bounds", inside[i], shale_strerror(rc));
            cr_assert(msg[0] != '\0');
            shale_code rs =
                phantom_round(fx.db, SHALE_ISOLATION_SNAPSHOT, inside[i], p, msg, sizeof msg);
            cr_assert_eq(rs, SHALE_OK, "SNAPSHOT, insert of '%s': %s (%s)", inside[i],
                         shale_strerror(rs), msg);
        }
        for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
            shale_code rc =
                phantom_round(fx.db, SHALE_ISOLATION_SERIALIZABLE, outside[i], p, msg, sizeof msg);
            cr_assert_eq(rc, SHALE_OK,
                         "SERIALIZABLE, %s: insert of '%s' outside the range: %s (%s)",
                         p ? "prefix" : "bounds", outside[i], shale_strerror(rc), msg);
        }
    }
    /* A delete of a key in the range is a change to it too. */
    shale_txn *t1 = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    shale_iter *it = NULL;
    TU_OK(shale_txn_iter_new(t1, &(shale_read_opts){.prefix = TU_SL("room/")}, &it, &ERR));
    cr_assert_str_eq(tu_scan(it, true), "room/b=booked,room/a=booked");
    shale_iter_free(it);
    tu_del(fx.db, "room/a");
    tx_tput(t1, "room-count", "2");
    TU_CODE(SHALE_CONFLICT, shale_txn_commit(t1, &ERR));
    shale_txn_free(t1);
    tu_fx_end(&fx);
}

/* What an iterator observed is exactly what a SERIALIZABLE commit checks, including the gaps it
 * saw: an empty range, the gap between a seek target and the key found, the end of a range. */
Test(txn_iso, serializable_iterator_gaps)
{
    tu_fx fx = {0};
    shale_iter *it = NULL;
    static const struct {
        const char *how;   /* s = seek target, p = seek_for_prev target, e = empty prefix */
        const char *at;    /* the target */
        const char *lands; /* where the iterator lands (NULL: nowhere) */
        const char *insert;
    } cases[] = {
        {"s", "room/a5", "room/b", "room/a7"}, /* between the target and the key found */
        {"s", "room/a5", "room/b", "room/a5"}, /* at the target itself */
        {"s", "room/c", NULL, "room/d"},       /* past the last key: to the end of the range */
        {"p", "room/b5", "room/b", "room/b3"}, /* between the key found and the target */
        {"p", "room/b5", "room/b", "room/b5"}, /* at the target */
        {"p", "room/0", NULL, "room/"},        /* before the first key */
        {"e", "empty/", NULL, "empty/x"},      /* an empty prefix */
        {"e", "empty/", NULL, "empty/"},
    };

    tu_fx_begin(&fx, "txn-gaps", NULL);
    tu_put(fx.db, "room/a", "1");
    tu_put(fx.db, "room/b", "2");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool empty = cases[i].how[0] == 'e';
        shale_read_opts ro = {.prefix = empty ? tu_str(cases[i].at) : TU_SL("room/")};
        shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
        TU_OK(shale_txn_iter_new(t, &ro, &it, &ERR));
        switch (cases[i].how[0]) {
        case 's':
            shale_iter_seek(it, tu_str(cases[i].at));
            break;
        case 'p':
            shale_iter_seek_for_prev(it, tu_str(cases[i].at));
            break;
        default:
            shale_iter_seek_first(it);
            break;
        }
        if (cases[i].lands == NULL) {
            cr_assert_not(shale_iter_valid(it), "case %zu", i);
        } else {
            cr_assert_str_eq(tu_iter_at(it), cases[i].lands, "case %zu", i);
        }
        shale_iter_free(it); /* freed before the commit: what it read still counts */
        tu_put(fx.db, cases[i].insert, "phantom");
        tx_tput(t, "count", "x");
        TU_CODE(SHALE_CONFLICT, shale_txn_commit(t, &ERR));
        cr_assert_not_null(strstr(tu_last_msg, cases[i].insert), "case %zu: message '%s'", i,
                           tu_last_msg);
        shale_txn_free(t);
        tu_del(fx.db, cases[i].insert);
    }
    /* An iterator made but never positioned read nothing. */
    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    TU_OK(shale_txn_iter_new(t, NULL, &it, &ERR));
    tu_put(fx.db, "room/c", "3");
    tx_tput(t, "count", "x");
    TU_OK(shale_txn_commit(t, &ERR));
    /* A SERIALIZABLE transaction's iterator outlives it, too. */
    cr_assert_str_eq(tu_scan(it, false), "room/a=1,room/b=2");
    shale_txn_free(t);
    cr_assert_str_eq(tu_scan(it, true), "room/b=2,room/a=1");
    shale_iter_free(it);
    tu_fx_end(&fx);
}

/* SERIALIZABLE tracks point reads too: a key read as absent (get or exists) that someone then
 * writes, or a key read that someone overwrites, fails the commit; keys not read do not. */
Test(txn_iso, serializable_point_reads)
{
    tu_fx fx = {0};
    shale_buf buf = {0};
    bool yes;

    tu_fx_begin(&fx, "txn-serread", NULL);
    tu_put(fx.db, "present", "1");
    for (int how = 0; how < 4; how++) {
        char key[32];
        snprintf(key, sizeof key, "absent-%d", how);
        shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
        switch (how) {
        case 0:
            TU_CODE(SHALE_NOT_FOUND, shale_txn_get(t, tu_str(key), &buf, &ERR));
            break;
        case 1:
            TU_OK(shale_txn_exists(t, tu_str(key), &yes, &ERR));
            cr_assert_not(yes);
            break;
        case 2:
            TU_CODE(SHALE_NOT_FOUND,
                    shale_txn_get_info(t, tu_str(key), NULL, &(shale_entry_info){0}, &ERR));
            break;
        case 3: /* a read of "present", overwritten by a plain put */
            TU_OK(shale_txn_get(t, TU_SL("present"), &buf, &ERR));
            snprintf(key, sizeof key, "present");
            break;
        }
        tu_put(fx.db, key, "now");
        tu_put(fx.db, "unread", "x");
        tx_tput(t, "out", "x");
        TU_CODE(SHALE_CONFLICT, shale_txn_commit(t, &ERR));
        cr_assert_not_null(strstr(tu_last_msg, key), "how %d: message '%s' lacks %s", how,
                           tu_last_msg, key);
        shale_txn_free(t);
    }
    tu_expect(fx.db, "out", NULL);
    /* The same reads under SNAPSHOT commit. */
    shale_txn *s = tx_begin(fx.db, SHALE_ISOLATION_SNAPSHOT);
    TU_CODE(SHALE_NOT_FOUND, shale_txn_get(s, TU_SL("absent-9"), &buf, &ERR));
    TU_OK(shale_txn_get(s, TU_SL("present"), &buf, &ERR));
    tu_put(fx.db, "absent-9", "now");
    tu_put(fx.db, "present", "again");
    tx_tput(s, "out", "x");
    TU_OK(shale_txn_commit(s, &ERR));
    shale_txn_free(s);
    /* A key the transaction wrote and then read is its own: not a read of the database. */
    shale_txn *w = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    tx_tput(w, "mine", "1");
    tx_texpect(w, "mine", "1");
    tu_put(fx.db, "unread", "y");
    TU_OK(shale_txn_commit(w, &ERR));
    shale_txn_free(w);
    tu_expect(fx.db, "mine", "1");
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

/* Versions: get_info reports the stored seq for database values and 0 for own writes; after the
 * commit every written key carries a version in (snapshot_seq, commit_seq], the newest ==
 * commit_seq. */
Test(txn_iso, versions_and_commit_seq)
{
    tu_fx fx = {0};
    shale_entry_info info;
    shale_buf buf = {0};
    static const char *const written[] = {"c", "a", "b", "e"};

    tu_fx_begin(&fx, "txn-versions", NULL);
    tu_put(fx.db, "a", "db-a");
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("d"), TU_SL("db-d"), far_future_ms, &ERR));
    uint64_t seq_a = tu_seq(fx.db, "a"), seq_d = tu_seq(fx.db, "d");
    uint64_t last = tu_stats(fx.db).last_sequence;

    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    uint64_t snap = shale_txn_snapshot_seq(t);
    cr_assert_eq(snap, last, "snapshot_seq %" PRIu64 ", last_sequence %" PRIu64, snap, last);
    cr_assert_eq(shale_txn_commit_seq(t), 0, "commit_seq before the commit");
    TU_OK(shale_txn_get_info(t, TU_SL("a"), &buf, &info, &ERR));
    cr_assert_eq(info.seq, seq_a);
    cr_assert_eq(info.expire_at_ms, 0);
    TU_OK(shale_txn_get_info(t, TU_SL("d"), NULL, &info, &ERR));
    cr_assert_eq(info.seq, seq_d);
    cr_assert_eq(info.expire_at_ms, far_future_ms);
    TU_CODE(SHALE_NOT_FOUND, shale_txn_get_info(t, TU_SL("b"), NULL, &info, &ERR));

    tx_tput(t, "c", "t-c");
    tx_tput(t, "a", "t-a");
    tx_tput(t, "b", "t-b1");
    tx_tput(t, "e", "t-e");
    tx_tput(t, "b", "t-b2");
    tx_tdel(t, "d");
    TU_OK(shale_txn_get_info(t, TU_SL("a"), &buf, &info, &ERR));
    cr_assert_eq(info.seq, 0, "own write of a: version %" PRIu64, info.seq);
    cr_assert(buf.len == 3 && memcmp(buf.data, "t-a", 3) == 0);
    TU_OK(shale_txn_get_info(t, TU_SL("b"), NULL, &info, &ERR));
    cr_assert_eq(info.seq, 0);
    TU_OK(shale_txn_put_ttl(t, TU_SL("f"), TU_SL("t-f"), far_future_ms, &ERR));
    TU_OK(shale_txn_get_info(t, TU_SL("f"), NULL, &info, &ERR));
    cr_assert_eq(info.seq, 0);
    cr_assert_eq(info.expire_at_ms, far_future_ms);
    TU_CODE(SHALE_NOT_FOUND, shale_txn_get_info(t, TU_SL("d"), NULL, &info, &ERR));
    cr_assert_eq(shale_txn_snapshot_seq(t), snap, "snapshot_seq moved");

    TU_OK(shale_txn_commit(t, &ERR));
    uint64_t cs = shale_txn_commit_seq(t);
    cr_assert_gt(cs, snap);
    cr_assert_eq(tu_stats(fx.db).last_sequence, cs, "commit_seq is the newest sequence");
    uint64_t newest = tu_seq(fx.db, "f");
    for (size_t i = 0; i < sizeof written / sizeof written[0]; i++) {
        uint64_t v = tu_seq(fx.db, written[i]);
        cr_assert(v > snap && v <= cs,
                  "key %s: version %" PRIu64 " outside (%" PRIu64 ", %" PRIu64 "]", written[i], v,
                  snap, cs);
        newest = v > newest ? v : newest;
    }
    cr_assert(tu_seq(fx.db, "f") > snap && tu_seq(fx.db, "f") <= cs);
    cr_assert_eq(newest, cs, "no written key carries commit_seq %" PRIu64, cs);
    tu_expect(fx.db, "b", "t-b2");
    tu_expect(fx.db, "d", NULL);
    /* Iterator versions agree with get_info. */
    shale_iter *it = NULL;
    TU_OK(shale_iter_new(fx.db, NULL, &it, &ERR));
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        char key[8];
        snprintf(key, sizeof key, "%s", tu_iter_at(it));
        cr_assert_eq(shale_iter_info(it).seq, tu_seq(fx.db, key), "key %s", key);
    }
    shale_iter_free(it);
    /* A version from a transaction works for a conditional write. */
    shale_txn *t2 = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    TU_OK(shale_txn_get_info(t2, TU_SL("b"), NULL, &info, &ERR));
    TU_OK(shale_put_if_version(fx.db, NULL, TU_SL("b"), TU_SL("cas"), info.seq, NULL, &ERR));
    TU_OK(shale_txn_commit(t2, &ERR));
    cr_assert_eq(shale_txn_commit_seq(t2), 0, "read-only commit");
    shale_txn_free(t2);
    shale_txn_free(t);
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

/* ------------------------------------------------------------------------------------------ */
/* txn_view                                                                                   */
/* ------------------------------------------------------------------------------------------ */

enum { VIEW_KEYS = 300, VIEW_ROUNDS = 6 };

static shale_slice view_key(char *buf, int k)
{
    int n = snprintf(buf, 32, "view/%05d", k);
    return (shale_slice){buf, (size_t)n};
}

/* The value of key k in generation g: "g<g>:k<k>:" padded to 100..299 bytes. */
static shale_slice view_value(char *buf, int g, int k)
{
    return tu_gen_value(buf, g, k, 100);
}

static bool slice_eq(shale_slice a, shale_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* Walks `it` (both ways) and checks it yields exactly keys 0..VIEW_KEYS-1 in generation 1 with
 * versions `seqs` (when check_seq). */
static void expect_view_scan(shale_iter *it, const uint64_t *seqs, bool check_seq, const char *ctx)
{
    char kb[32], vb[320];
    for (int dir = 0; dir < 2; dir++) {
        int k = dir ? VIEW_KEYS - 1 : 0;
        int seen = 0;
        if (dir) {
            shale_iter_seek_last(it);
        } else {
            shale_iter_seek_first(it);
        }
        for (; shale_iter_valid(it); dir ? shale_iter_prev(it) : shale_iter_next(it)) {
            cr_assert(k >= 0 && k < VIEW_KEYS, "%s: extra key %s", ctx, tu_iter_at(it));
            cr_assert(slice_eq(shale_iter_key(it), view_key(kb, k)), "%s: at %s, want key %d", ctx,
                      tu_iter_at(it), k);
            cr_assert(slice_eq(shale_iter_value(it), view_value(vb, 1, k)),
                      "%s: key %d has a newer value", ctx, k);
            if (check_seq) {
                cr_assert_eq(shale_iter_info(it).seq, seqs[k], "%s: key %d version", ctx, k);
            }
            k += dir ? -1 : 1;
            seen++;
        }
        shale_error err = {0};
        cr_assert_eq(shale_iter_status(it, &err), SHALE_OK, "%s: %s", ctx, err.msg);
        cr_assert_eq(seen, VIEW_KEYS, "%s: %s scan saw %d keys", ctx, dir ? "backward" : "forward",
                     seen);
    }
}

Test(txn_view, long_reader_keeps_its_view_through_flushes_and_compactions)
{
    shale_options o = tu_small_lsm_options(2);
    tu_fx fx = {0};
    char kb[32], vb[320];
    uint64_t seqs[VIEW_KEYS];
    shale_buf buf = {0};
    shale_entry_info info;

    tu_fx_begin(&fx, "txn-view", &o);
    for (int k = 0; k < VIEW_KEYS; k++) {
        TU_OK(shale_put(fx.db, NULL, view_key(kb, k), view_value(vb, 1, k), &ERR));
    }
    TU_OK(shale_flush(fx.db, &ERR));
    for (int k = 0; k < VIEW_KEYS; k += 3) { /* some of the view in the memtable */
        TU_OK(shale_put(fx.db, NULL, view_key(kb, k), view_value(vb, 1, k), &ERR));
    }

    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_SNAPSHOT);
    shale_txn *loser = tx_begin(fx.db, SHALE_ISOLATION_SNAPSHOT);
    shale_snapshot *snap = shale_snapshot_get(fx.db);
    cr_assert_not_null(snap);
    cr_assert_eq(shale_snapshot_seq(snap), shale_txn_snapshot_seq(t));
    shale_iter *held = NULL;
    TU_OK(shale_txn_iter_new(t, NULL, &held, &ERR));
    /* Record the view through the iterator. */
    int k = 0;
    for (shale_iter_seek_first(held); shale_iter_valid(held); shale_iter_next(held), k++) {
        cr_assert_lt(k, VIEW_KEYS);
        cr_assert(slice_eq(shale_iter_key(held), view_key(kb, k)));
        cr_assert(slice_eq(shale_iter_value(held), view_value(vb, 1, k)));
        seqs[k] = shale_iter_info(held).seq;
        cr_assert_gt(seqs[k], 0);
        cr_assert_leq(seqs[k], shale_txn_snapshot_seq(t));
    }
    cr_assert_eq(k, VIEW_KEYS);

    uint64_t flushes0 = tu_stats(fx.db).flushes;
    int extra = 0;
    for (int r = 2; r < 2 + VIEW_ROUNDS; r++) {
        /* Overwrite or delete every key of the view, and add new keys in its range. */
        for (k = 0; k < VIEW_KEYS; k++) {
            if ((k + r) % 5 == 0) {
                TU_OK(shale_delete(fx.db, NULL, view_key(kb, k), &ERR));
            } else {
                TU_OK(shale_put(fx.db, NULL, view_key(kb, k), view_value(vb, r, k), &ERR));
            }
        }
        for (int j = 0; j < 20; j++, extra++) {
            TU_OK(shale_put(fx.db, NULL, view_key(kb, VIEW_KEYS + extra), view_value(vb, r, j),
                            &ERR));
        }
        TU_OK(shale_flush(fx.db, &ERR));
        if (r % 2 == 1) {
            TU_OK(shale_compact(fx.db, &ERR));
        }

        char ctx[64];
        snprintf(ctx, sizeof ctx, "round %d", r);
        for (k = 0; k < VIEW_KEYS; k++) {
            TU_OK(shale_txn_get_info(t, view_key(kb, k), &buf, &info, &ERR));
            cr_assert(slice_eq((shale_slice){buf.data, buf.len}, view_value(vb, 1, k)),
                      "%s: txn_get of key %d sees a newer value", ctx, k);
            cr_assert_eq(info.seq, seqs[k], "%s: key %d version", ctx, k);
            TU_OK(shale_get(fx.db, &(shale_read_opts){.snapshot = snap}, view_key(kb, k), &buf,
                            &ERR));
            cr_assert(slice_eq((shale_slice){buf.data, buf.len}, view_value(vb, 1, k)),
                      "%s: snapshot get of key %d", ctx, k);
        }
        for (int j = 0; j < extra; j += 7) {
            TU_CODE(SHALE_NOT_FOUND, shale_txn_get(t, view_key(kb, VIEW_KEYS + j), &buf, &ERR));
        }
        shale_iter *fresh = NULL;
        TU_OK(shale_txn_iter_new(t, NULL, &fresh, &ERR));
        expect_view_scan(fresh, seqs, true, ctx);
        shale_iter_free(fresh);
        expect_view_scan(held, seqs, true, ctx);
        TU_OK(shale_iter_new(fx.db, &(shale_read_opts){.snapshot = snap}, &fresh, &ERR));
        expect_view_scan(fresh, seqs, true, ctx);
        shale_iter_free(fresh);
    }
    shale_stats st = tu_stats(fx.db);
    cr_assert_geq(st.flushes - flushes0, VIEW_ROUNDS);
    cr_assert_gt(st.compactions, 0);

    /* The live view moved on: the last round (r = VIEW_ROUNDS + 1) put or deleted each key. */
    for (k = 0; k < 10; k++) {
        int r = VIEW_ROUNDS + 1;
        shale_code rc = shale_get(fx.db, NULL, view_key(kb, k), &buf, NULL);
        if ((k + r) % 5 == 0) {
            cr_assert_eq(rc, SHALE_NOT_FOUND, "live view: key %d", k);
        } else {
            cr_assert_eq(rc, SHALE_OK, "live view: key %d", k);
            cr_assert(slice_eq((shale_slice){buf.data, buf.len}, view_value(vb, r, k)));
        }
    }
    shale_snapshot_release(fx.db, snap);
    shale_iter_free(held);
    /* Writing a key nobody else wrote commits; writing an overwritten one conflicts. */
    tx_tput(t, "view/zzzzz", "t");
    TU_OK(shale_txn_commit(t, &ERR));
    tx_tput(loser, "view/00001", "loser");
    TU_CODE(SHALE_CONFLICT, shale_txn_commit(loser, &ERR));
    cr_assert_not_null(strstr(tu_last_msg, "view/00001"), "%s", tu_last_msg);
    shale_txn_free(t);
    shale_txn_free(loser);
    tu_expect(fx.db, "view/zzzzz", "t");
    cr_assert_eq(tu_stats(fx.db).snapshots, 0);
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

/* ------------------------------------------------------------------------------------------ */
/* txn_cond                                                                                   */
/* ------------------------------------------------------------------------------------------ */

Test(txn_cond, version_0_inserts_only_when_absent)
{
    tu_fx fx = {0};
    uint64_t nv = 0, nv2 = 0;

    tu_fx_begin(&fx, "txn-cond0", NULL);
    TU_OK(shale_put_if_version(fx.db, NULL, TU_SL("c"), TU_SL("1"), 0, &nv, &ERR));
    cr_assert_gt(nv, 0);
    cr_assert_eq(nv, tu_seq(fx.db, "c"));
    cr_assert_eq(nv, tu_stats(fx.db).last_sequence);
    tu_expect(fx.db, "c", "1");
    uint64_t last = tu_stats(fx.db).last_sequence;
    TU_CODE(SHALE_CONFLICT,
            shale_put_if_version(fx.db, NULL, TU_SL("c"), TU_SL("2"), 0, &nv2, &ERR));
    tu_expect(fx.db, "c", "1");
    cr_assert_eq(tu_stats(fx.db).last_sequence, last, "a refused conditional write wrote");
    cr_assert_eq(tu_stats(fx.db).txn_conflicts, 1);
    /* Deleted: absent again. */
    tu_del(fx.db, "c");
    TU_OK(shale_put_if_version(fx.db, NULL, TU_SL("c"), TU_SL("3"), 0, NULL, &ERR));
    tu_expect(fx.db, "c", "3");
    /* An empty value is a live value. */
    TU_OK(shale_put_if_version(fx.db, NULL, TU_SL("e"), (shale_slice){"", 0}, 0, NULL, &ERR));
    TU_CODE(SHALE_CONFLICT,
            shale_put_if_version(fx.db, NULL, TU_SL("e"), TU_SL("x"), 0, NULL, &ERR));
    tu_expect(fx.db, "e", "");
    /* Survives a restart. */
    tu_fx_reopen(&fx, NULL);
    TU_CODE(SHALE_CONFLICT,
            shale_put_if_version(fx.db, NULL, TU_SL("c"), TU_SL("4"), 0, NULL, &ERR));
    tu_expect(fx.db, "c", "3");
    tu_fx_end(&fx);
}

Test(txn_cond, put_with_the_current_version)
{
    tu_fx fx = {0};
    uint64_t nv = 0;

    tu_fx_begin(&fx, "txn-condv", NULL);
    tu_put(fx.db, "k", "v1");
    tu_put(fx.db, "other", "o");
    uint64_t v1 = tu_seq(fx.db, "k");
    TU_OK(shale_put_if_version(fx.db, NULL, TU_SL("k"), TU_SL("v2"), v1, &nv, &ERR));
    cr_assert_gt(nv, v1);
    cr_assert_eq(nv, tu_seq(fx.db, "k"), "new_version %" PRIu64 " != get_info seq %" PRIu64, nv,
                 tu_seq(fx.db, "k"));
    tu_expect(fx.db, "k", "v2");
    /* The old version is stale now. */
    TU_CODE(SHALE_CONFLICT,
            shale_put_if_version(fx.db, NULL, TU_SL("k"), TU_SL("v3"), v1, NULL, &ERR));
    tu_expect(fx.db, "k", "v2");
    /* Version 0 means absent: conflicts on a live key. */
    TU_CODE(SHALE_CONFLICT,
            shale_put_if_version(fx.db, NULL, TU_SL("k"), TU_SL("v3"), 0, NULL, &ERR));
    /* Another key's version, a future version, a version on a missing key: all conflict. */
    uint64_t vo = tu_seq(fx.db, "other");
    TU_CODE(SHALE_CONFLICT,
            shale_put_if_version(fx.db, NULL, TU_SL("k"), TU_SL("v3"), vo, NULL, &ERR));
    TU_CODE(SHALE_CONFLICT,
            shale_put_if_version(fx.db, NULL, TU_SL("k"), TU_SL("v3"), nv + 1000, NULL, &ERR));
    TU_CODE(SHALE_CONFLICT,
            shale_put_if_version(fx.db, NULL, TU_SL("missing"), TU_SL("v"), vo, NULL, &ERR));
    tu_expect(fx.db, "missing", NULL);
    tu_expect(fx.db, "k", "v2");
    cr_assert_eq(tu_stats(fx.db).txn_conflicts, 5);
    /* A chain of conditional writes, each with the version the last one returned. */
    for (int i = 0; i < 20; i++) {
        uint64_t next = 0;
        TU_OK(shale_put_if_version(fx.db, NULL, TU_SL("k"), TU_SL("chain"), nv, &next, &ERR));
        cr_assert_gt(next, nv);
        nv = next;
    }
    cr_assert_eq(tu_seq(fx.db, "k"), nv);
    /* With a durability option. */
    shale_write_opts full = {.durability = SHALE_DURABILITY_FULL};
    TU_OK(shale_put_if_version(fx.db, &full, TU_SL("k"), TU_SL("full"), nv, &nv, &ERR));
    tu_fx_reopen(&fx, NULL);
    tu_expect(fx.db, "k", "full");
    cr_assert_eq(tu_seq(fx.db, "k"), nv, "the version survives a restart");
    TU_OK(shale_put_if_version(fx.db, NULL, TU_SL("k"), TU_SL("after"), nv, NULL, &ERR));
    tu_expect(fx.db, "k", "after");
    tu_fx_end(&fx);
}

Test(txn_cond, delete_if_version)
{
    tu_fx fx = {0};

    tu_fx_begin(&fx, "txn-conddel", NULL);
    TU_CODE(SHALE_NOT_FOUND, shale_delete_if_version(fx.db, NULL, TU_SL("k"), 5, &ERR));
    tu_put(fx.db, "first", "f"); /* so that k's version minus one is a real, other version */
    tu_put(fx.db, "k", "v");
    uint64_t v = tu_seq(fx.db, "k");
    uint64_t last = tu_stats(fx.db).last_sequence;
    TU_CODE(SHALE_CONFLICT, shale_delete_if_version(fx.db, NULL, TU_SL("k"), v + 1, &ERR));
    TU_CODE(SHALE_CONFLICT, shale_delete_if_version(fx.db, NULL, TU_SL("k"), v - 1, &ERR));
    TU_CODE(SHALE_INVALID, shale_delete_if_version(fx.db, NULL, TU_SL("k"), 0, &ERR));
    cr_assert_eq(tu_stats(fx.db).last_sequence, last, "a refused conditional delete wrote");
    tu_expect(fx.db, "k", "v");
    cr_assert_eq(tu_stats(fx.db).txn_conflicts, 2);
    TU_OK(shale_delete_if_version(fx.db, NULL, TU_SL("k"), v, &ERR));
    tu_expect(fx.db, "k", NULL);
    /* Gone now: the same version finds nothing. NOT_FOUND is not a conflict. */
    TU_CODE(SHALE_NOT_FOUND, shale_delete_if_version(fx.db, NULL, TU_SL("k"), v, &ERR));
    cr_assert_eq(tu_stats(fx.db).txn_conflicts, 2);
    /* An expired key has no live value. */
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("x"), TU_SL("v"), 1, &ERR));
    uint64_t vx = tu_stats(fx.db).last_sequence;
    TU_CODE(SHALE_NOT_FOUND, shale_delete_if_version(fx.db, NULL, TU_SL("x"), vx, &ERR));
    tu_fx_reopen(&fx, NULL);
    tu_expect(fx.db, "k", NULL);
    tu_fx_end(&fx);
}

Test(txn_cond, expired_key_is_absent_for_version_0)
{
    shale_options o = {.ttl_sweep_interval_ms = 3600000};
    tu_fx fx = {0};
    uint64_t nv = 0;

    tu_fx_begin(&fx, "txn-condttl", &o);
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("e"), TU_SL("old"), 1, &ERR)); /* written expired */
    uint64_t ve = tu_stats(fx.db).last_sequence;
    tu_expect(fx.db, "e", NULL);
    /* The expired value's version is not a live version. */
    TU_CODE(SHALE_CONFLICT,
            shale_put_if_version(fx.db, NULL, TU_SL("e"), TU_SL("x"), ve, NULL, &ERR));
    TU_OK(shale_put_if_version(fx.db, NULL, TU_SL("e"), TU_SL("new"), 0, &nv, &ERR));
    tu_expect(fx.db, "e", "new");
    cr_assert_eq(tu_seq(fx.db, "e"), nv);
    /* A live key with a future deadline is present. */
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("f"), TU_SL("live"), far_future_ms, &ERR));
    TU_CODE(SHALE_CONFLICT,
            shale_put_if_version(fx.db, NULL, TU_SL("f"), TU_SL("x"), 0, NULL, &ERR));
    TU_OK(
        shale_put_if_version(fx.db, NULL, TU_SL("f"), TU_SL("y"), tu_seq(fx.db, "f"), NULL, &ERR));
    /* A conditional put writes without a deadline. */
    shale_entry_info info;
    TU_OK(shale_get_info(fx.db, NULL, TU_SL("f"), NULL, &info, &ERR));
    cr_assert_eq(info.expire_at_ms, 0);
    tu_fx_end(&fx);
}

/* Versions are the write's sequence number for good: flushing and compacting (down to the bottom
 * level) keep them, so a version read before still matches afterwards. */
Test(txn_cond, versions_survive_flush_and_compaction)
{
    shale_options o = tu_small_lsm_options(2);
    tu_fx fx = {0};
    shale_entry_info info;

    tu_fx_begin(&fx, "txn-condcompact", &o);
    tu_put(fx.db, "vk", "v1");
    tu_put(fx.db, "dk", "v1");
    uint64_t v = tu_seq(fx.db, "vk"), vd = tu_seq(fx.db, "dk");
    filler(fx.db, 0, 600);
    TU_OK(shale_compact(fx.db, &ERR));
    filler(fx.db, 1, 600);
    TU_OK(shale_compact(fx.db, &ERR));
    cr_assert_gt(tu_stats(fx.db).compactions, 0);
    cr_assert_eq(tu_seq(fx.db, "vk"), v, "compaction changed the version");
    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    TU_OK(shale_txn_get_info(t, TU_SL("vk"), NULL, &info, &ERR));
    cr_assert_eq(info.seq, v);
    TU_OK(shale_txn_commit(t, &ERR));
    shale_txn_free(t);
    tu_fx_reopen(&fx, &o);
    cr_assert_eq(tu_seq(fx.db, "vk"), v, "reopen changed the version");
    TU_CODE(SHALE_CONFLICT,
            shale_put_if_version(fx.db, NULL, TU_SL("vk"), TU_SL("x"), 0, NULL, &ERR));
    TU_OK(shale_put_if_version(fx.db, NULL, TU_SL("vk"), TU_SL("v2"), v, NULL, &ERR));
    TU_OK(shale_delete_if_version(fx.db, NULL, TU_SL("dk"), vd, &ERR));
    tu_expect(fx.db, "vk", "v2");
    tu_expect(fx.db, "dk", NULL);
    tu_fx_end(&fx);
}

Test(txn_cond, bad_arguments)
{
    shale_options o = {.max_key_bytes = 16, .max_value_bytes = 32};
    tu_fx fx = {0};
    char big[64];
    const shale_slice empty = {"", 0}, nullkey = {NULL, 3};
    shale_write_opts bad = {.durability = (shale_durability)42};

    memset(big, 'k', sizeof big);
    tu_fx_begin(&fx, "txn-condargs", &o);
    tu_put(fx.db, "k", "v");
    uint64_t v = tu_seq(fx.db, "k");
    TU_CODE(SHALE_INVALID, shale_put_if_version(NULL, NULL, TU_SL("k"), TU_SL("x"), v, NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_delete_if_version(NULL, NULL, TU_SL("k"), v, &ERR));
    TU_CODE(SHALE_INVALID, shale_put_if_version(fx.db, NULL, empty, TU_SL("x"), 0, NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_put_if_version(fx.db, NULL, nullkey, TU_SL("x"), 0, NULL, &ERR));
    TU_CODE(SHALE_INVALID,
            shale_put_if_version(fx.db, NULL, TU_SL("k"), (shale_slice){NULL, 4}, v, NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_delete_if_version(fx.db, NULL, empty, v, &ERR));
    TU_CODE(SHALE_INVALID, shale_delete_if_version(fx.db, NULL, nullkey, v, &ERR));
    TU_CODE(SHALE_INVALID,
            shale_put_if_version(fx.db, &bad, TU_SL("k"), TU_SL("x"), v, NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_delete_if_version(fx.db, &bad, TU_SL("k"), v, &ERR));
    TU_CODE(SHALE_FULL,
            shale_put_if_version(fx.db, NULL, (shale_slice){big, 17}, TU_SL("x"), 0, NULL, &ERR));
    TU_CODE(SHALE_FULL,
            shale_put_if_version(fx.db, NULL, TU_SL("k"), (shale_slice){big, 33}, v, NULL, &ERR));
    shale_code drc = shale_delete_if_version(fx.db, NULL, (shale_slice){big, 17}, v, NULL);
    cr_assert(drc == SHALE_FULL || drc == SHALE_INVALID, "long key: %d", drc);
    /* Nothing was written, and the version still works. */
    tu_expect(fx.db, "k", "v");
    cr_assert_eq(tu_stats(fx.db).writes, 1);
    cr_assert_eq(tu_stats(fx.db).txn_conflicts, 0);
    TU_OK(shale_put_if_version(fx.db, NULL, TU_SL("k"), (shale_slice){big, 32}, v, NULL, &ERR));
    tu_fx_end(&fx);
}

/* ------------------------------------------------------------------------------------------ */
/* txn_ttl                                                                                    */
/* ------------------------------------------------------------------------------------------ */

Test(txn_ttl, deadlines_inside_a_txn)
{
    shale_options o = {.ttl_sweep_interval_ms = 3600000};
    tu_fx fx = {0};
    shale_entry_info info;
    shale_iter *it = NULL;
    uint64_t soon = tx_now_ms() + 3600000; /* an hour away: live for the whole test */

    tu_fx_begin(&fx, "txn-ttl", &o);
    tu_put(fx.db, "live", "db");
    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_DEFAULT);
    /* A deadline in the past: accepted, and invisible to the transaction's own reads. */
    TU_OK(shale_txn_put_ttl(t, TU_SL("past"), TU_SL("p"), 1, &ERR));
    tx_texpect(t, "past", NULL);
    TU_OK(shale_txn_put_ttl(t, TU_SL("now"), TU_SL("n"), tx_now_ms(), &ERR));
    tx_texpect(t, "now", NULL);
    /* Over a database key: hides it. */
    TU_OK(shale_txn_put_ttl(t, TU_SL("live"), TU_SL("p"), 1, &ERR));
    tx_texpect(t, "live", NULL);
    /* A future deadline is visible, with its deadline and version 0. */
    TU_OK(shale_txn_put_ttl(t, TU_SL("future"), TU_SL("f"), soon, &ERR));
    tx_texpect(t, "future", "f");
    TU_OK(shale_txn_get_info(t, TU_SL("future"), NULL, &info, &ERR));
    cr_assert_eq(info.seq, 0);
    cr_assert_eq(info.expire_at_ms, soon);
    /* 0 means never. */
    TU_OK(shale_txn_put_ttl(t, TU_SL("never"), TU_SL("v"), 0, &ERR));
    TU_OK(shale_txn_get_info(t, TU_SL("never"), NULL, &info, &ERR));
    cr_assert_eq(info.expire_at_ms, 0);
    /* A past-deadline put then a plain put: live again. */
    TU_OK(shale_txn_put_ttl(t, TU_SL("again"), TU_SL("p"), 1, &ERR));
    tx_tput(t, "again", "a");
    tx_texpect(t, "again", "a");
    TU_OK(shale_txn_iter_new(t, NULL, &it, &ERR));
    cr_assert_str_eq(tu_scan(it, false), "again=a,future=f,never=v");
    cr_assert_str_eq(tu_scan(it, true), "never=v,future=f,again=a");
    shale_iter_seek(it, TU_SL("future"));
    cr_assert_eq(shale_iter_info(it).expire_at_ms, soon);
    shale_iter_free(it);
    TU_OK(shale_txn_commit(t, &ERR));
    shale_txn_free(t);

    tu_expect(fx.db, "past", NULL);
    tu_expect(fx.db, "now", NULL);
    tu_expect(fx.db, "live", NULL);
    tu_expect(fx.db, "future", "f");
    tu_expect(fx.db, "never", "v");
    tu_expect(fx.db, "again", "a");
    TU_OK(shale_get_info(fx.db, NULL, TU_SL("future"), NULL, &info, &ERR));
    cr_assert_eq(info.expire_at_ms, soon);
    TU_OK(shale_get_info(fx.db, NULL, TU_SL("again"), NULL, &info, &ERR));
    cr_assert_eq(info.expire_at_ms, 0);
    tu_fx_reopen(&fx, &o);
    tu_expect(fx.db, "live", NULL);
    tu_expect(fx.db, "future", "f");
    tu_fx_end(&fx);
}

/* A database key that expires is absent in a transaction begun after its deadline. */
Test(txn_ttl, expired_db_keys_are_absent_in_a_txn)
{
    shale_options o = {.ttl_sweep_interval_ms = 3600000};
    tu_fx fx = {0};
    shale_iter *it = NULL;

    tu_fx_begin(&fx, "txn-ttldb", &o);
    TU_OK(shale_put_ttl(fx.db, NULL, TU_SL("e"), TU_SL("x"), 1, &ERR));
    tu_put(fx.db, "l", "y");
    shale_txn *t = tx_begin(fx.db, SHALE_ISOLATION_SERIALIZABLE);
    tx_texpect(t, "e", NULL);
    TU_OK(shale_txn_iter_new(t, NULL, &it, &ERR));
    cr_assert_str_eq(tu_scan(it, false), "l=y");
    shale_iter_free(it);
    tx_tput(t, "e", "z");
    TU_OK(shale_txn_commit(t, &ERR));
    shale_txn_free(t);
    tu_expect(fx.db, "e", "z");
    tu_fx_end(&fx);
}
