/*
 * Transactions and conditional writes under concurrency: bank transfers with a checking reader
 * (the invariant "the balances sum to the total" holds in every view, during the run, after it
 * and after a restart, while small memtables flush and compact underneath), lost updates (one
 * counter incremented by many transactions), compare-and-set increments and insert-if-absent
 * claims with conditional writes, and transactions mixed with conditional writes on one key.
 * Workers start together (a barrier) and yield between their read and their write, so they
 * interleave. Worker threads never call cr_assert: they record the first failure, which the
 * main thread reports after joining. No timing assertions: only counts and values.
 */
#include <criterion/logging.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "txn_util.h"

TestSuite(txn_conc);

/* ------------------------------------------------------------------------------------------ */
/* Bank transfers                                                                             */
/* ------------------------------------------------------------------------------------------ */

enum {
    ACCOUNTS = 100,
    BANKERS = 8,
    TRANSFERS = 300,  /* per banker */
    INITIAL = 1000,   /* per account */
    BALANCE_PAD = 120 /* value bytes after the balance, so the memtable fills and flushes */
};
#define TOTAL ((uint64_t)ACCOUNTS * INITIAL)

typedef struct bank {
    shale_db *db;
    tu_failure fail;
    atomic_int bankers_left;
    _Atomic int64_t delta[ACCOUNTS]; /* committed balance changes */
    atomic_uint_fast64_t transfers, conflicts;
    atomic_uint_fast64_t reader_rounds;
} bank;

typedef struct banker {
    bank *bk;
    int id;
} banker;

static shale_slice acct_key(char *buf, int a)
{
    int n = snprintf(buf, 16, "acct/%03d", a);
    return (shale_slice){buf, (size_t)n};
}

/* 4 MiB of memory, 64 KiB memtables and tables: the run flushes and compacts many times. */
static shale_options bank_options(void)
{
    return tu_small_lsm_options(4);
}

/* Reads account a's balance in txn into *bal; false (after recording why) on failure. */
static bool read_balance(bank *bk, shale_txn *txn, int a, shale_buf *buf, uint64_t *bal)
{
    char kb[16];
    shale_error err = {0};
    shale_code rc = shale_txn_get(txn, acct_key(kb, a), buf, &err);
    if (rc != SHALE_OK) {
        tu_fail(&bk->fail, "txn_get %s: %s (%s)", kb, shale_strerror(rc), err.msg);
        return false;
    }
    if (!tx_parse_u64(buf->data, buf->len, BALANCE_PAD, bal)) {
        tu_fail(&bk->fail, "%s: malformed balance (%zu bytes)", kb, buf->len);
        return false;
    }
    return true;
}

static void *banker_main(void *arg)
{
    banker *me = arg;
    bank *bk = me->bk;
    shale_txn_opts topts = {.isolation = SHALE_ISOLATION_SNAPSHOT};
    shale_buf buf = {0};
    tu_rng rng;
    char ka[16], kb[16], va[32 + BALANCE_PAD], vb[32 + BALANCE_PAD];

    tu_rng_seed(&rng, 0x5eed0000u + (uint64_t)me->id);
    for (int done = 0; done < TRANSFERS && !tu_failed(&bk->fail);) {
        int from = (int)tu_rng_below(&rng, ACCOUNTS);
        int to = (int)tu_rng_below(&rng, ACCOUNTS - 1);
        to += to >= from; /* another account */
        uint64_t want = 1 + tu_rng_below(&rng, 200);
        /* Retry this transfer until it commits. */
        for (;;) {
            shale_txn *txn = NULL;
            shale_error err = {0};
            uint64_t bf, bt;
            shale_code rc = shale_txn_begin(bk->db, &topts, &txn, &err);
            if (rc != SHALE_OK) {
                tu_fail(&bk->fail, "txn_begin: %s (%s)", shale_strerror(rc), err.msg);
                break;
            }
            if (!read_balance(bk, txn, from, &buf, &bf) || !read_balance(bk, txn, to, &buf, &bt)) {
                shale_txn_free(txn);
                break;
            }
            uint64_t amount = want < bf ? want : bf;
            rc = shale_txn_put(txn, acct_key(ka, from), tx_u64_value(va, bf - amount, BALANCE_PAD),
                               &err);
            if (rc == SHALE_OK) {
                rc = shale_txn_put(txn, acct_key(kb, to),
                                   tx_u64_value(vb, bt + amount, BALANCE_PAD), &err);
            }
            if (rc != SHALE_OK) {
                tu_fail(&bk->fail, "txn_put: %s (%s)", shale_strerror(rc), err.msg);
                shale_txn_free(txn);
                break;
            }
            rc = shale_txn_commit(txn, &err);
            if (rc == SHALE_OK) {
                uint64_t cs = shale_txn_commit_seq(txn);
                if (cs <= shale_txn_snapshot_seq(txn)) {
                    tu_fail(&bk->fail, "commit_seq %" PRIu64 " <= snapshot_seq %" PRIu64, cs,
                            shale_txn_snapshot_seq(txn));
                }
                atomic_fetch_sub(&bk->delta[from], (int64_t)amount);
                atomic_fetch_add(&bk->delta[to], (int64_t)amount);
                atomic_fetch_add(&bk->transfers, 1);
                shale_txn_free(txn);
                done++;
                break;
            }
            shale_txn_free(txn);
            if (rc != SHALE_CONFLICT) {
                tu_fail(&bk->fail, "commit: %s (%s)", shale_strerror(rc), err.msg);
                break;
            }
            if (strstr(err.msg, ka) == NULL && strstr(err.msg, kb) == NULL) {
                tu_fail(&bk->fail, "conflict message names neither %s nor %s: %s", ka, kb, err.msg);
                break;
            }
            atomic_fetch_add(&bk->conflicts, 1);
        }
    }
    shale_buf_free(&buf);
    atomic_fetch_sub(&bk->bankers_left, 1);
    return NULL;
}

/* Sums the balances an iterator yields; checks it sees exactly the ACCOUNTS keys, in order, with
 * versions <= max_seq (when not 0). Returns false after recording a failure. */
static bool sum_iter(bank *bk, shale_iter *it, uint64_t max_seq, uint64_t *sum, const char *ctx)
{
    char kb[16];
    int a = 0;
    *sum = 0;
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it), a++) {
        shale_slice k = shale_iter_key(it), v = shale_iter_value(it);
        shale_slice want = acct_key(kb, a);
        uint64_t bal;
        if (a >= ACCOUNTS || k.len != want.len || memcmp(k.data, want.data, k.len) != 0) {
            tu_fail(&bk->fail, "%s: unexpected key %.*s at position %d", ctx, (int)k.len,
                    (const char *)k.data, a);
            return false;
        }
        if (!tx_parse_u64(v.data, v.len, BALANCE_PAD, &bal)) {
            tu_fail(&bk->fail, "%s: %s: malformed balance", ctx, kb);
            return false;
        }
        if (max_seq != 0 && shale_iter_info(it).seq > max_seq) {
            tu_fail(&bk->fail, "%s: %s: version %" PRIu64 " newer than the view %" PRIu64, ctx, kb,
                    shale_iter_info(it).seq, max_seq);
            return false;
        }
        *sum += bal;
    }
    shale_error err = {0};
    if (shale_iter_status(it, &err) != SHALE_OK) {
        tu_fail(&bk->fail, "%s: iterator: %s", ctx, err.msg);
        return false;
    }
    if (a != ACCOUNTS) {
        tu_fail(&bk->fail, "%s: iterator saw %d accounts", ctx, a);
        return false;
    }
    return true;
}

/* One reader round in `mode`: returns false after recording a failure. */
static bool reader_round(bank *bk, int mode, shale_buf *buf, shale_buf *vals)
{
    char kb[16];
    shale_error err = {0};
    shale_iter *it = NULL;
    uint64_t by_iter = 0, by_get = 0, bal = 0;
    shale_code rc;
    const shale_read_opts prefix = {.prefix = TU_SL("acct/")};

    switch (mode) {
    case 0: { /* a snapshot: iterator and gets */
        shale_snapshot *snap = shale_snapshot_get(bk->db);
        if (snap == NULL) {
            tu_fail(&bk->fail, "snapshot_get returned NULL");
            return false;
        }
        shale_read_opts ro = prefix;
        ro.snapshot = snap;
        bool ok = true;
        rc = shale_iter_new(bk->db, &ro, &it, &err);
        if (rc != SHALE_OK) {
            tu_fail(&bk->fail, "iter_new: %s", err.msg);
            ok = false;
        } else {
            ok = sum_iter(bk, it, shale_snapshot_seq(snap), &by_iter, "snapshot scan");
            shale_iter_free(it);
        }
        for (int a = 0; ok && a < ACCOUNTS; a++) {
            rc = shale_get(bk->db, &ro, acct_key(kb, a), buf, &err);
            if (rc != SHALE_OK || !tx_parse_u64(buf->data, buf->len, BALANCE_PAD, &bal)) {
                tu_fail(&bk->fail, "snapshot get %s: %s (%s)", kb, shale_strerror(rc), err.msg);
                ok = false;
            }
            by_get += bal;
        }
        shale_snapshot_release(bk->db, snap);
        if (!ok) {
            return false;
        }
        break;
    }
    case 1:   /* a read-only transaction: its iterator and its gets */
    case 3: { /* the same, SERIALIZABLE */
        shale_txn_opts topts = {.isolation = mode == 1 ? SHALE_ISOLATION_SNAPSHOT
                                                       : SHALE_ISOLATION_SERIALIZABLE};
        shale_txn *txn = NULL;
        rc = shale_txn_begin(bk->db, &topts, &txn, &err);
        if (rc != SHALE_OK) {
            tu_fail(&bk->fail, "reader txn_begin: %s", err.msg);
            return false;
        }
        bool ok = true;
        rc = shale_txn_iter_new(txn, &prefix, &it, &err);
        if (rc != SHALE_OK) {
            tu_fail(&bk->fail, "txn_iter_new: %s", err.msg);
            ok = false;
        } else {
            ok = sum_iter(bk, it, shale_txn_snapshot_seq(txn), &by_iter, "txn scan");
            shale_iter_free(it);
        }
        for (int a = 0; ok && a < ACCOUNTS; a++) {
            ok = read_balance(bk, txn, a, buf, &bal);
            by_get += bal;
        }
        if (ok) {
            rc = shale_txn_commit(txn, &err);
            if (rc != SHALE_OK || shale_txn_commit_seq(txn) != 0) {
                tu_fail(&bk->fail, "read-only commit: %s (%s), commit_seq %" PRIu64,
                        shale_strerror(rc), err.msg, shale_txn_commit_seq(txn));
                ok = false;
            }
        }
        shale_txn_free(txn);
        if (!ok) {
            return false;
        }
        break;
    }
    case 2: { /* no snapshot: a plain iterator, and a multi_get (each one point in time) */
        shale_slice keys[ACCOUNTS];
        shale_code codes[ACCOUNTS];
        char kbs[ACCOUNTS][16];
        rc = shale_iter_new(bk->db, &prefix, &it, &err);
        if (rc != SHALE_OK) {
            tu_fail(&bk->fail, "iter_new: %s", err.msg);
            return false;
        }
        bool ok = sum_iter(bk, it, 0, &by_iter, "plain scan");
        shale_iter_free(it);
        if (!ok) {
            return false;
        }
        for (int a = 0; a < ACCOUNTS; a++) {
            keys[a] = acct_key(kbs[a], a);
        }
        rc = shale_multi_get(bk->db, NULL, ACCOUNTS, keys, vals, codes, &err);
        if (rc != SHALE_OK) {
            tu_fail(&bk->fail, "multi_get: %s", err.msg);
            return false;
        }
        for (int a = 0; a < ACCOUNTS; a++) {
            if (codes[a] != SHALE_OK ||
                !tx_parse_u64(vals[a].data, vals[a].len, BALANCE_PAD, &bal)) {
                tu_fail(&bk->fail, "multi_get %s: %s", kbs[a], shale_strerror(codes[a]));
                return false;
            }
            by_get += bal;
        }
        break;
    }
    }
    if (by_iter != TOTAL || by_get != TOTAL) {
        tu_fail(&bk->fail,
                "reader mode %d: the balances sum to %" PRIu64 " (scan) and %" PRIu64
                " (gets), want %" PRIu64,
                mode, by_iter, by_get, TOTAL);
        return false;
    }
    return true;
}

static void *reader_main(void *arg)
{
    bank *bk = arg;
    shale_buf buf = {0};
    shale_buf *vals = calloc(ACCOUNTS, sizeof *vals);

    if (vals == NULL) {
        tu_fail(&bk->fail, "calloc");
        return NULL;
    }
    for (uint64_t round = 0; !tu_failed(&bk->fail); round++) {
        /* At least a few rounds of each mode, then until the bankers are done. */
        if (round >= 8 && atomic_load(&bk->bankers_left) == 0) {
            break;
        }
        if (!reader_round(bk, (int)(round % 4), &buf, vals)) {
            break;
        }
        atomic_fetch_add(&bk->reader_rounds, 1);
    }
    for (int a = 0; a < ACCOUNTS; a++) {
        shale_buf_free(&vals[a]);
    }
    free(vals);
    shale_buf_free(&buf);
    return NULL;
}

/* Checks the final balances (each account's initial balance plus its committed deltas) with gets
 * and an iterator on the live database. */
static void check_balances(bank *bk, shale_db *db, const char *ctx)
{
    shale_buf buf = {0};
    char kb[16];
    uint64_t sum = 0;

    for (int a = 0; a < ACCOUNTS; a++) {
        uint64_t bal;
        shale_error err = {0};
        shale_code rc = shale_get(db, NULL, acct_key(kb, a), &buf, &err);
        cr_assert_eq(rc, SHALE_OK, "%s: get %s: %s (%s)", ctx, kb, shale_strerror(rc), err.msg);
        cr_assert(tx_parse_u64(buf.data, buf.len, BALANCE_PAD, &bal), "%s: %s malformed", ctx, kb);
        int64_t want = (int64_t)INITIAL + atomic_load(&bk->delta[a]);
        cr_assert_eq((int64_t)bal, want, "%s: %s holds %" PRIu64 ", want %" PRId64, ctx, kb, bal,
                     want);
        sum += bal;
    }
    cr_assert_eq(sum, TOTAL, "%s: gets sum to %" PRIu64, ctx, sum);
    shale_iter *it = NULL;
    shale_error err = {0};
    shale_read_opts prefix = {.prefix = TU_SL("acct/")};
    cr_assert_eq(shale_iter_new(db, &prefix, &it, &err), SHALE_OK, "%s", err.msg);
    cr_assert(sum_iter(bk, it, 0, &sum, ctx), "%s: %s", ctx, bk->fail.why);
    cr_assert_eq(sum, TOTAL, "%s: the scan sums to %" PRIu64, ctx, sum);
    shale_iter_free(it);
    shale_buf_free(&buf);
}

Test(txn_conc, bank_transfers_keep_the_total)
{
    shale_options o = bank_options();
    tu_fx fx = {0};
    bank *bk = calloc(1, sizeof *bk);
    banker bankers[BANKERS];
    pthread_t threads[BANKERS + 1];
    char kb[16], vb[32 + BALANCE_PAD];

    cr_assert_not_null(bk);
    tu_fx_begin(&fx, "txn-bank", &o);
    for (int a = 0; a < ACCOUNTS; a++) {
        TU_OK(
            shale_put(fx.db, NULL, acct_key(kb, a), tx_u64_value(vb, INITIAL, BALANCE_PAD), &ERR));
    }
    /* Neighbours on both sides of the accounts' range, which readers must not see. */
    tu_put(fx.db, "acct.", "x");
    tu_put(fx.db, "acct0", "x");
    tu_put(fx.db, "acc", "x");
    bk->db = fx.db;
    tu_failure_init(&bk->fail);
    atomic_init(&bk->bankers_left, BANKERS);
    uint64_t flushes0 = tu_stats(fx.db).flushes;

    cr_assert_eq(pthread_create(&threads[BANKERS], NULL, reader_main, bk), 0);
    for (int i = 0; i < BANKERS; i++) {
        bankers[i] = (banker){.bk = bk, .id = i};
        cr_assert_eq(pthread_create(&threads[i], NULL, banker_main, &bankers[i]), 0);
    }
    for (int i = 0; i <= BANKERS; i++) {
        pthread_join(threads[i], NULL);
    }
    tu_failure_check(&bk->fail, "bank");
    tu_failure_init(&bk->fail); /* for check_balances */

    uint64_t transfers = atomic_load(&bk->transfers), conflicts = atomic_load(&bk->conflicts);
    cr_assert_eq(transfers, (uint64_t)BANKERS * TRANSFERS);
    cr_assert_geq(atomic_load(&bk->reader_rounds), 8);
    shale_stats st = tu_stats(fx.db);
    cr_assert_geq(st.txn_commits, transfers, "txn_commits %" PRIu64 " < %" PRIu64 " transfers",
                  st.txn_commits, transfers);
    cr_assert_geq(st.txn_conflicts, conflicts, "txn_conflicts %" PRIu64 " < %" PRIu64 " seen",
                  st.txn_conflicts, conflicts);
    /* Nobody else conflicts here: the readers' commits are read-only. */
    cr_assert_eq(st.txn_conflicts, conflicts);
    cr_assert_eq(st.txns_open, 0);
    cr_assert_eq(st.snapshots, 0);
    cr_assert_gt(st.flushes, flushes0, "the run should have flushed memtables");
    cr_log_info("bank: %" PRIu64 " transfers, %" PRIu64 " conflicts, %" PRIu64
                " reader rounds, %" PRIu64 " flushes, %" PRIu64 " compactions",
                transfers, conflicts, (uint64_t)atomic_load(&bk->reader_rounds),
                st.flushes - flushes0, st.compactions);
    check_balances(bk, fx.db, "after the run");
    tu_expect(fx.db, "acct.", "x");
    tu_expect(fx.db, "acct0", "x");

    tu_fx_reopen(&fx, &o);
    check_balances(bk, fx.db, "after reopen");
    TU_OK(shale_compact(fx.db, &ERR));
    check_balances(bk, fx.db, "after compaction");
    tu_failure_check(&bk->fail, "bank checks");
    free(bk);
    tu_fx_end(&fx);
}

/* ------------------------------------------------------------------------------------------ */
/* Lost updates                                                                               */
/* ------------------------------------------------------------------------------------------ */

enum { INCREMENTERS = 8, INCREMENTS = 150, CAS_THREADS = 4, CAS_INCREMENTS = 600 };

typedef struct counter {
    shale_db *db;
    tu_failure fail;
    pthread_barrier_t start; /* the workers start together, so they overlap */
    atomic_uint_fast64_t commits, conflicts;
    atomic_uint_fast64_t claim_conflicts;
    atomic_uint_fast64_t group_conflicts; /* refused by a member before it in its group */
    shale_durability level;               /* the transactions' commit durability */
} counter;

typedef struct incrementer {
    counter *ct;
    int id;
} incrementer;

static void *incrementer_main(void *arg)
{
    incrementer *me = arg;
    counter *ct = me->ct;
    shale_txn_opts topts = {.isolation = me->id % 2 ? SHALE_ISOLATION_SERIALIZABLE
                                                    : SHALE_ISOLATION_SNAPSHOT,
                            .durability = ct->level};
    shale_buf buf = {0};
    char vb[64];

    pthread_barrier_wait(&ct->start);
    for (int done = 0; done < INCREMENTS && !tu_failed(&ct->fail);) {
        shale_txn *txn = NULL;
        shale_error err = {0};
        uint64_t v;
        shale_code rc = shale_txn_begin(ct->db, &topts, &txn, &err);
        if (rc != SHALE_OK) {
            tu_fail(&ct->fail, "txn_begin: %s", err.msg);
            break;
        }
        rc = shale_txn_get(txn, TU_SL("counter"), &buf, &err);
        if (rc != SHALE_OK || !tx_parse_u64(buf.data, buf.len, 8, &v)) {
            tu_fail(&ct->fail, "txn_get: %s (%s)", shale_strerror(rc), err.msg);
            shale_txn_free(txn);
            break;
        }
        sched_yield(); /* invite another incrementer between the read and the commit */
        rc = shale_txn_put(txn, TU_SL("counter"), tx_u64_value(vb, v + 1, 8), &err);
        if (rc == SHALE_OK) {
            rc = shale_txn_commit(txn, &err);
        }
        shale_txn_free(txn);
        if (rc == SHALE_OK) {
            atomic_fetch_add(&ct->commits, 1);
            done++;
        } else if (rc == SHALE_CONFLICT) {
            atomic_fetch_add(&ct->conflicts, 1);
            if (strstr(err.msg, "counter") == NULL) {
                tu_fail(&ct->fail, "conflict message lacks the key: %s", err.msg);
            }
            if (strstr(err.msg, "just before this one") != NULL) {
                atomic_fetch_add(&ct->group_conflicts, 1);
            }
        } else {
            tu_fail(&ct->fail, "txn: %s (%s)", shale_strerror(rc), err.msg);
        }
    }
    shale_buf_free(&buf);
    return NULL;
}

static uint64_t read_counter(shale_db *db)
{
    shale_buf buf = {0};
    shale_error err = {0};
    uint64_t v = 0;
    shale_code rc = shale_get(db, NULL, TU_SL("counter"), &buf, &err);
    cr_assert_eq(rc, SHALE_OK, "get counter: %s", err.msg);
    cr_assert(tx_parse_u64(buf.data, buf.len, 8, &v), "counter malformed");
    shale_buf_free(&buf);
    return v;
}

/* With FULL durability a commit waits for its fdatasync, so the others queue behind it and
 * commit as one group: each is then validated against the members before it in the group, not
 * only against the database. */
static void lost_updates(shale_durability level)
{
    tu_fx fx = {0};
    counter ct = {.level = level};
    incrementer incs[INCREMENTERS];
    pthread_t threads[INCREMENTERS];
    char vb[64];

    tu_fx_begin(&fx, "txn-lost", NULL);
    TU_OK(shale_put(fx.db, NULL, TU_SL("counter"), tx_u64_value(vb, 0, 8), &ERR));
    ct.db = fx.db;
    tu_failure_init(&ct.fail);
    pthread_barrier_init(&ct.start, NULL, INCREMENTERS);
    for (int i = 0; i < INCREMENTERS; i++) {
        incs[i] = (incrementer){.ct = &ct, .id = i};
        cr_assert_eq(pthread_create(&threads[i], NULL, incrementer_main, &incs[i]), 0);
    }
    for (int i = 0; i < INCREMENTERS; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_barrier_destroy(&ct.start);
    tu_failure_check(&ct.fail, "incrementers");
    const uint64_t want = (uint64_t)INCREMENTERS * INCREMENTS;
    cr_assert_eq(atomic_load(&ct.commits), want);
    cr_assert_eq(read_counter(fx.db), want, "lost updates: counter %" PRIu64 ", want %" PRIu64,
                 read_counter(fx.db), want);
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.txn_commits, want);
    cr_assert_eq(st.txn_conflicts, atomic_load(&ct.conflicts),
                 "txn_conflicts %" PRIu64 ", conflicts seen %" PRIu64, st.txn_conflicts,
                 (uint64_t)atomic_load(&ct.conflicts));
    cr_assert_eq(st.txns_open, 0);
    cr_log_info("lost updates (%s): %" PRIu64 " commits, %" PRIu64 " conflicts (%" PRIu64
                " within a commit group)",
                shale_durability_name(level), want, (uint64_t)atomic_load(&ct.conflicts),
                (uint64_t)atomic_load(&ct.group_conflicts));
    /* The count survives a restart. */
    tu_fx_reopen(&fx, NULL);
    cr_assert_eq(read_counter(fx.db), want);
    tu_fx_end(&fx);
}

Test(txn_conc, no_lost_updates)
{
    lost_updates(SHALE_DURABILITY_DEFAULT);
}

Test(txn_conc, no_lost_updates_in_synced_commit_groups)
{
    lost_updates(SHALE_DURABILITY_FULL);
}

/* ------------------------------------------------------------------------------------------ */
/* Compare-and-set increments with conditional writes                                         */
/* ------------------------------------------------------------------------------------------ */

static void *cas_main(void *arg)
{
    incrementer *me = arg;
    counter *ct = me->ct;
    shale_buf buf = {0};
    char vb[64];

    pthread_barrier_wait(&ct->start);
    for (int done = 0; done < CAS_INCREMENTS && !tu_failed(&ct->fail);) {
        shale_error err = {0};
        shale_entry_info info = {0};
        uint64_t v, nv = 0;
        shale_code rc = shale_get_info(ct->db, NULL, TU_SL("cas"), &buf, &info, &err);
        if (rc != SHALE_OK || !tx_parse_u64(buf.data, buf.len, 8, &v)) {
            tu_fail(&ct->fail, "get_info: %s (%s)", shale_strerror(rc), err.msg);
            break;
        }
        sched_yield();
        rc = shale_put_if_version(ct->db, NULL, TU_SL("cas"), tx_u64_value(vb, v + 1, 8), info.seq,
                                  &nv, &err);
        if (rc == SHALE_OK) {
            if (nv <= info.seq) {
                tu_fail(&ct->fail, "new_version %" PRIu64 " <= old %" PRIu64, nv, info.seq);
            }
            atomic_fetch_add(&ct->commits, 1);
            done++;
        } else if (rc == SHALE_CONFLICT) {
            atomic_fetch_add(&ct->conflicts, 1);
        } else {
            tu_fail(&ct->fail, "put_if_version: %s (%s)", shale_strerror(rc), err.msg);
        }
    }
    shale_buf_free(&buf);
    return NULL;
}

/* Claims keys with insert-if-absent: of all threads inserting "claim/N" with version 0, exactly
 * one wins each key. */
typedef struct claimer {
    counter *ct;
    int id;
    int won;
} claimer;

enum { CLAIM_KEYS = 200 };

static void *claim_main(void *arg)
{
    claimer *me = arg;
    char kb[32], vb[32];

    pthread_barrier_wait(&me->ct->start);
    for (int k = 0; k < CLAIM_KEYS && !tu_failed(&me->ct->fail); k++) {
        shale_error err = {0};
        int kn = snprintf(kb, sizeof kb, "claim/%04d", k);
        int vn = snprintf(vb, sizeof vb, "owner-%d", me->id);
        shale_code rc = shale_put_if_version(me->ct->db, NULL, (shale_slice){kb, (size_t)kn},
                                             (shale_slice){vb, (size_t)vn}, 0, NULL, &err);
        if (rc == SHALE_OK) {
            me->won++;
        } else if (rc == SHALE_CONFLICT) {
            atomic_fetch_add(&me->ct->claim_conflicts, 1);
        } else {
            tu_fail(&me->ct->fail, "claim %s: %s (%s)", kb, shale_strerror(rc), err.msg);
        }
    }
    return NULL;
}

Test(txn_conc, cas_increments_are_exact)
{
    tu_fx fx = {0};
    counter ct = {0};
    incrementer incs[CAS_THREADS];
    claimer claims[CAS_THREADS];
    pthread_t threads[2 * CAS_THREADS];
    char vb[64], kb[32];
    shale_buf buf = {0};

    tu_fx_begin(&fx, "txn-cas", NULL);
    uint64_t v0 = 0;
    TU_OK(shale_put_if_version(fx.db, NULL, TU_SL("cas"), tx_u64_value(vb, 0, 8), 0, &v0, &ERR));
    ct.db = fx.db;
    tu_failure_init(&ct.fail);
    pthread_barrier_init(&ct.start, NULL, 2 * CAS_THREADS);
    for (int i = 0; i < CAS_THREADS; i++) {
        incs[i] = (incrementer){.ct = &ct, .id = i};
        claims[i] = (claimer){.ct = &ct, .id = i};
        cr_assert_eq(pthread_create(&threads[i], NULL, cas_main, &incs[i]), 0);
        cr_assert_eq(pthread_create(&threads[CAS_THREADS + i], NULL, claim_main, &claims[i]), 0);
    }
    for (int i = 0; i < 2 * CAS_THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_barrier_destroy(&ct.start);
    tu_failure_check(&ct.fail, "cas");
    const uint64_t want = (uint64_t)CAS_THREADS * CAS_INCREMENTS;
    cr_assert_eq(atomic_load(&ct.commits), want);
    TU_OK(shale_get(fx.db, NULL, TU_SL("cas"), &buf, &ERR));
    uint64_t v = 0;
    cr_assert(tx_parse_u64(buf.data, buf.len, 8, &v));
    cr_assert_eq(v, want, "CAS lost updates: %" PRIu64 ", want %" PRIu64, v, want);
    /* Each claim key has exactly one owner, the one that won it. */
    int won[CAS_THREADS] = {0}, total = 0;
    for (int k = 0; k < CLAIM_KEYS; k++) {
        snprintf(kb, sizeof kb, "claim/%04d", k);
        TU_OK(shale_get(fx.db, NULL, tu_str(kb), &buf, &ERR));
        int owner = -1;
        cr_assert_eq(sscanf(tu_head(vb, sizeof vb, buf.data, buf.len), "owner-%d", &owner), 1);
        cr_assert(owner >= 0 && owner < CAS_THREADS);
        won[owner]++;
    }
    for (int i = 0; i < CAS_THREADS; i++) {
        cr_assert_eq(won[i], claims[i].won, "thread %d won %d claims, owns %d", i, claims[i].won,
                     won[i]);
        total += claims[i].won;
    }
    cr_assert_eq(total, CLAIM_KEYS);
    cr_assert_eq(atomic_load(&ct.claim_conflicts), (uint64_t)CLAIM_KEYS * (CAS_THREADS - 1),
                 "every claim but the winner's conflicts");
    shale_stats st = tu_stats(fx.db);
    uint64_t seen = atomic_load(&ct.conflicts) + atomic_load(&ct.claim_conflicts);
    cr_assert_eq(st.txn_conflicts, seen,
                 "txn_conflicts %" PRIu64 ", conditional conflicts seen %" PRIu64, st.txn_conflicts,
                 seen);
    cr_log_info("cas: %" PRIu64 " increment conflicts, %" PRIu64 " claim conflicts",
                (uint64_t)atomic_load(&ct.conflicts), (uint64_t)atomic_load(&ct.claim_conflicts));
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}

/* Transactions and conditional writes on the same key from different threads: the first
 * committer wins across both kinds, so the count is exact. */
typedef struct mixed {
    counter *ct;
    int id;
} mixed;

static void *mixed_main(void *arg)
{
    mixed *me = arg;
    counter *ct = me->ct;
    shale_buf buf = {0};
    char vb[64];
    tu_rng rng;

    tu_rng_seed(&rng, 77 + (uint64_t)me->id);
    pthread_barrier_wait(&ct->start);
    for (int done = 0; done < 150 && !tu_failed(&ct->fail);) {
        shale_error err = {0};
        uint64_t v;
        shale_code rc;
        if (tu_rng_below(&rng, 2) == 0) {
            shale_entry_info info;
            rc = shale_get_info(ct->db, NULL, TU_SL("mix"), &buf, &info, &err);
            if (rc != SHALE_OK || !tx_parse_u64(buf.data, buf.len, 8, &v)) {
                tu_fail(&ct->fail, "get_info: %s", shale_strerror(rc));
                break;
            }
            sched_yield();
            rc = shale_put_if_version(ct->db, NULL, TU_SL("mix"), tx_u64_value(vb, v + 1, 8),
                                      info.seq, NULL, &err);
        } else {
            shale_txn *txn = NULL;
            rc = shale_txn_begin(ct->db, NULL, &txn, &err);
            if (rc != SHALE_OK) {
                tu_fail(&ct->fail, "txn_begin: %s", err.msg);
                break;
            }
            rc = shale_txn_get(txn, TU_SL("mix"), &buf, &err);
            if (rc != SHALE_OK || !tx_parse_u64(buf.data, buf.len, 8, &v)) {
                tu_fail(&ct->fail, "txn_get: %s", shale_strerror(rc));
                shale_txn_free(txn);
                break;
            }
            sched_yield();
            rc = shale_txn_put(txn, TU_SL("mix"), tx_u64_value(vb, v + 1, 8), &err);
            if (rc == SHALE_OK) {
                rc = shale_txn_commit(txn, &err);
            }
            shale_txn_free(txn);
        }
        if (rc == SHALE_OK) {
            done++;
        } else if (rc == SHALE_CONFLICT) {
            atomic_fetch_add(&ct->conflicts, 1);
        } else {
            tu_fail(&ct->fail, "%s (%s)", shale_strerror(rc), err.msg);
        }
    }
    shale_buf_free(&buf);
    return NULL;
}

Test(txn_conc, txns_and_conditional_writes_mixed)
{
    tu_fx fx = {0};
    counter ct = {0};
    mixed ms[4];
    pthread_t threads[4];
    char vb[64];

    tu_fx_begin(&fx, "txn-mixed", NULL);
    TU_OK(shale_put(fx.db, NULL, TU_SL("mix"), tx_u64_value(vb, 0, 8), &ERR));
    ct.db = fx.db;
    tu_failure_init(&ct.fail);
    pthread_barrier_init(&ct.start, NULL, 4);
    for (int i = 0; i < 4; i++) {
        ms[i] = (mixed){.ct = &ct, .id = i};
        cr_assert_eq(pthread_create(&threads[i], NULL, mixed_main, &ms[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_barrier_destroy(&ct.start);
    tu_failure_check(&ct.fail, "mixed");
    cr_log_info("mixed: %" PRIu64 " conflicts", (uint64_t)atomic_load(&ct.conflicts));
    shale_buf buf = {0};
    uint64_t v = 0;
    TU_OK(shale_get(fx.db, NULL, TU_SL("mix"), &buf, &ERR));
    cr_assert(tx_parse_u64(buf.data, buf.len, 8, &v));
    cr_assert_eq(v, 4 * 150, "lost updates: %" PRIu64, v);
    cr_assert_eq(tu_stats(fx.db).txn_conflicts, atomic_load(&ct.conflicts));
    shale_buf_free(&buf);
    tu_fx_end(&fx);
}
