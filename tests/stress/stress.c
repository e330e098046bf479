/*
 * stress: a concurrency stress run of the whole engine, without Criterion, so that it can run under
 * ThreadSanitizer (`make tsan`): Criterion's runner cannot start under TSan (Snaipe/Criterion#274).
 * It also runs in every `make test` and `make asan`.
 *
 * Writers at every durability level (single puts, batches, deletes, TTL puts), transactions
 * moving amounts between accounts (snapshot and serializable, retried on conflict) and
 * compare-and-set increments, point readers, iterators, read-only transactions summing the
 * accounts, the TTL sweeper, and flushes and compactions (small write buffer and tables) all run
 * at once for a bounded number of operations; then the state is checked against what the
 * writers know, closed, reopened and checked again. Every check failure prints a message and
 * exits 1.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shale.h"

#define WRITERS    4
#define READERS    2
#define KEYS_PER_W 400
#define ROUNDS     6
#define TXNERS     2
#define ACCOUNTS   10
#define START_BAL  1000
#define TRANSFERS  300
#define CAS_EVERY  20

static shale_db *db;
static atomic_bool writers_done;
static atomic_int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "stress: check failed at %s:%d: ", __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            atomic_fetch_add(&failures, 1);                                                        \
        }                                                                                          \
    } while (0)

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static shale_slice acct_key(char *buf, int a)
{
    int n = snprintf(buf, 32, "acct/%02d", a);
    return (shale_slice){buf, (size_t)n};
}

static long parse_long(const shale_buf *v)
{
    char tmp[32];
    size_t n = v->len < sizeof tmp - 1 ? v->len : sizeof tmp - 1;
    memcpy(tmp, v->data, n);
    tmp[n] = '\0';
    return strtol(tmp, NULL, 10);
}

static shale_slice long_value(char *buf, long x)
{
    return (shale_slice){buf, (size_t)snprintf(buf, 32, "%ld", x)};
}

/* Moves 1 between two accounts per transaction, retrying conflicts, and every CAS_EVERY
 * transfers increments "cas" with a conditional write. */
static void *txner_main(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 7919u;
    shale_buf v = {0};
    char ka[32], kb[32], va[32], vb[32];
    shale_error err;

    for (int done = 0; done < TRANSFERS;) {
        shale_txn_opts to = {.isolation = done % 2 ? SHALE_ISOLATION_SERIALIZABLE
                                                   : SHALE_ISOLATION_SNAPSHOT};
        int a = (int)(rand_r(&seed) % ACCOUNTS), b = (int)(rand_r(&seed) % (ACCOUNTS - 1));
        b += b >= a;
        shale_txn *t = NULL;
        if (shale_txn_begin(db, &to, &t, &err) != SHALE_OK) {
            CHECK(0, "txn_begin: %s", err.msg);
            break;
        }
        shale_code rc = shale_txn_get(t, acct_key(ka, a), &v, &err);
        long x = rc == SHALE_OK ? parse_long(&v) : 0;
        if (rc == SHALE_OK) {
            rc = shale_txn_get(t, acct_key(kb, b), &v, &err);
        }
        long y = rc == SHALE_OK ? parse_long(&v) : 0;
        if (rc == SHALE_OK) {
            rc = shale_txn_put(t, acct_key(ka, a), long_value(va, x - 1), &err);
        }
        if (rc == SHALE_OK) {
            rc = shale_txn_put(t, acct_key(kb, b), long_value(vb, y + 1), &err);
        }
        if (rc == SHALE_OK) {
            rc = shale_txn_commit(t, &err);
        }
        shale_txn_free(t);
        CHECK(rc == SHALE_OK || rc == SHALE_CONFLICT, "transfer: %s", err.msg);
        if (rc != SHALE_OK) {
            continue;
        }
        if (++done % CAS_EVERY == 0) {
            for (;;) {
                shale_entry_info info;
                rc = shale_get_info(db, NULL, (shale_slice){"cas", 3}, &v, &info, &err);
                CHECK(rc == SHALE_OK, "cas get: %s", err.msg);
                if (rc != SHALE_OK) {
                    break;
                }
                rc = shale_put_if_version(db, NULL, (shale_slice){"cas", 3},
                                          long_value(va, parse_long(&v) + 1), info.seq, NULL, &err);
                if (rc != SHALE_CONFLICT) {
                    CHECK(rc == SHALE_OK, "cas put: %s", err.msg);
                    break;
                }
            }
        }
    }
    shale_buf_free(&v);
    return NULL;
}

/* The accounts' sum, read in one read-only transaction through its iterator. */
static long sum_accounts(void)
{
    shale_txn *t = NULL;
    shale_iter *it = NULL;
    shale_error err;
    long sum = 0;
    shale_read_opts ro = {.prefix = {"acct/", 5}};

    if (shale_txn_begin(db, NULL, &t, &err) != SHALE_OK ||
        shale_txn_iter_new(t, &ro, &it, &err) != SHALE_OK) {
        CHECK(0, "sum: %s", err.msg);
        shale_txn_free(t);
        return -1;
    }
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice val = shale_iter_value(it);
        shale_buf b = {(void *)val.data, val.len, val.len};
        sum += parse_long(&b);
    }
    CHECK(shale_iter_status(it, &err) == SHALE_OK, "sum iter: %s", err.msg);
    shale_iter_free(it);
    CHECK(shale_txn_commit(t, &err) == SHALE_OK, "read-only commit: %s", err.msg);
    shale_txn_free(t);
    return sum;
}

static shale_slice key_of(char *buf, int writer, int i)
{
    int n = snprintf(buf, 32, "w%d/k%05d", writer, i);
    return (shale_slice){buf, (size_t)n};
}

/* Writer w owns keys w/k*. After ROUNDS rounds, key i holds "r<last round>" unless its last op was
 * a delete (i % 7 == 0 in the final round) or a TTL put already expired (i % 11 == 0: 1 ms TTL). */
static void *writer_main(void *arg)
{
    int w = (int)(intptr_t)arg;
    static const shale_durability levels[] = {SHALE_DURABILITY_MEMORY, SHALE_DURABILITY_OS,
                                              SHALE_DURABILITY_FULL, SHALE_DURABILITY_DEFAULT};
    shale_write_opts wo = {.durability = levels[w % 4]};
    shale_batch *b = shale_batch_new();
    char kb[32], vb[32];
    shale_error err;

    CHECK(b != NULL, "batch_new");
    for (int r = 0; r < ROUNDS && b != NULL; r++) {
        for (int i = 0; i < KEYS_PER_W; i++) {
            shale_slice k = key_of(kb, w, i);
            shale_slice v = {vb, (size_t)snprintf(vb, sizeof vb, "r%d", r)};
            shale_code rc;
            if (i % 11 == 0) {
                rc = shale_put_ttl(db, &wo, k, v, now_ms() + 1, &err);
            } else if (i % 3 == 0) {
                /* Two ops on the same key in one batch: the later wins. */
                shale_batch_clear(b);
                rc = shale_batch_put(b, k, (shale_slice){"junk", 4}, &err);
                if (rc == SHALE_OK) {
                    rc = shale_batch_put(b, k, v, &err);
                }
                if (rc == SHALE_OK) {
                    rc = shale_write(db, &wo, b, &err);
                }
            } else {
                rc = shale_put(db, &wo, k, v, &err);
            }
            CHECK(rc == SHALE_OK, "writer %d put: %s", w, err.msg);
            if (r == ROUNDS - 1 && i % 7 == 0) {
                rc = shale_delete(db, &wo, k, &err);
                CHECK(rc == SHALE_OK, "writer %d delete: %s", w, err.msg);
            }
        }
    }
    shale_batch_free(b);
    return NULL;
}

/* Readers check invariants that hold at every instant: a value is always "r<digit>", never the
 * batch's overwritten "junk", and an iterator sees keys in strictly increasing order. */
static void *reader_main(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    shale_buf v = {0};
    char kb[32];
    shale_error err;

    while (!atomic_load(&writers_done)) {
        int w = (int)(rand_r(&seed) % WRITERS), i = (int)(rand_r(&seed) % KEYS_PER_W);
        shale_code rc = shale_get(db, NULL, key_of(kb, w, i), &v, &err);
        CHECK(rc == SHALE_OK || rc == SHALE_NOT_FOUND, "get: %s", err.msg);
        if (rc == SHALE_OK) {
            CHECK(v.len == 2 && ((char *)v.data)[0] == 'r', "bad value of length %zu", v.len);
        }
        shale_iter *it = NULL;
        shale_read_opts ro = {.prefix = {"w1/", 3}};
        if (shale_iter_new(db, &ro, &it, &err) != SHALE_OK) {
            CHECK(0, "iter_new: %s", err.msg);
            continue;
        }
        char last[32] = "";
        size_t last_len = 0;
        int n = 0;
        for (shale_iter_seek_first(it); shale_iter_valid(it) && n < 200; shale_iter_next(it), n++) {
            shale_slice k = shale_iter_key(it);
            size_t m = k.len < last_len ? k.len : last_len;
            int c = memcmp(k.data, last, m);
            CHECK(n == 0 || c > 0 || (c == 0 && k.len > last_len), "iterator out of order");
            CHECK(k.len < sizeof last, "key too long");
            memcpy(last, k.data, k.len);
            last_len = k.len;
        }
        shale_iter_free(it);
        shale_stats st;
        CHECK(shale_stats_get(db, &st, &err) == SHALE_OK, "stats: %s", err.msg);
        long sum = sum_accounts();
        CHECK(sum == (long)ACCOUNTS * START_BAL, "accounts sum to %ld", sum);
    }
    shale_buf_free(&v);
    return NULL;
}

static void verify(const char *when)
{
    shale_buf v = {0};
    char kb[32];
    shale_error err;

    for (int w = 0; w < WRITERS; w++) {
        for (int i = 0; i < KEYS_PER_W; i++) {
            shale_code rc = shale_get(db, NULL, key_of(kb, w, i), &v, &err);
            if (i % 7 == 0 || i % 11 == 0) {
                CHECK(rc == SHALE_NOT_FOUND, "%s: %s should be gone", when, kb);
            } else {
                char want[8];
                snprintf(want, sizeof want, "r%d", ROUNDS - 1);
                CHECK(rc == SHALE_OK && v.len == strlen(want) && memcmp(v.data, want, v.len) == 0,
                      "%s: %s wrong (rc %d)", when, kb, rc);
            }
        }
    }
    long sum = sum_accounts();
    CHECK(sum == (long)ACCOUNTS * START_BAL, "%s: accounts sum to %ld", when, sum);
    shale_code rc = shale_get(db, NULL, (shale_slice){"cas", 3}, &v, &err);
    CHECK(rc == SHALE_OK && parse_long(&v) == (long)TXNERS * (TRANSFERS / CAS_EVERY),
          "%s: cas counter wrong", when);
    shale_buf_free(&v);
}

int main(void)
{
    char dir[] = "/tmp/shale-stress-XXXXXX";
    shale_options opts = {.create_if_missing = true,
                          .ttl_sweep_interval_ms = 10,
                          .wal_flush_interval_ms = 1,
                          .wal_segment_bytes = 64u << 10,
                          /* Small buffers and tables: flushes and compactions run under the
                           * writers, readers and transactions. */
                          .write_buffer_bytes = 64u << 10,
                          .table_bytes = 64u << 10,
                          .l0_compaction_trigger = 2};
    pthread_t wt[WRITERS], rt[READERS], tt[TXNERS];
    shale_error err;

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    if (shale_open(dir, &opts, &db, &err) != SHALE_OK) {
        fprintf(stderr, "stress: open: %s\n", err.msg);
        return 1;
    }
    char kb[32], vb[32];
    for (int a = 0; a < ACCOUNTS; a++) {
        CHECK(shale_put(db, NULL, acct_key(kb, a), long_value(vb, START_BAL), &err) == SHALE_OK,
              "account: %s", err.msg);
    }
    CHECK(shale_put(db, NULL, (shale_slice){"cas", 3}, long_value(vb, 0), &err) == SHALE_OK,
          "cas: %s", err.msg);
    for (int i = 0; i < READERS; i++) {
        pthread_create(&rt[i], NULL, reader_main, (void *)(uintptr_t)(i + 1));
    }
    for (int i = 0; i < TXNERS; i++) {
        pthread_create(&tt[i], NULL, txner_main, (void *)(uintptr_t)(i + 1));
    }
    for (int i = 0; i < WRITERS; i++) {
        pthread_create(&wt[i], NULL, writer_main, (void *)(intptr_t)i);
    }
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(wt[i], NULL);
    }
    for (int i = 0; i < TXNERS; i++) {
        pthread_join(tt[i], NULL);
    }
    atomic_store(&writers_done, true);
    for (int i = 0; i < READERS; i++) {
        pthread_join(rt[i], NULL);
    }
    usleep(20000); /* let every 1 ms TTL pass */
    verify("before close");
    shale_stats st;
    CHECK(shale_stats_get(db, &st, &err) == SHALE_OK, "stats");
    CHECK(st.group_commits <= st.batches, "group commits %llu > batches %llu",
          (unsigned long long)st.group_commits, (unsigned long long)st.batches);
    CHECK(st.flushes > 0 && st.compactions > 0, "no flush (%llu) or compaction (%llu) ran",
          (unsigned long long)st.flushes, (unsigned long long)st.compactions);
    CHECK(st.txns_open == 0, "%llu transactions left open", (unsigned long long)st.txns_open);
    CHECK(shale_close(db, &err) == SHALE_OK, "close: %s", err.msg);
    if (shale_open(dir, &opts, &db, &err) != SHALE_OK) {
        fprintf(stderr, "stress: reopen: %s\n", err.msg);
        return 1;
    }
    verify("after reopen");
    CHECK(shale_close(db, &err) == SHALE_OK, "close: %s", err.msg);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "stress: could not remove %s\n", dir);
    }
    printf("stress: %d writers x %d keys x %d rounds, %d transaction threads x %d transfers, %d "
           "readers, %llu flushes, %llu compactions, %llu transaction conflicts: %s\n",
           WRITERS, KEYS_PER_W, ROUNDS, TXNERS, TRANSFERS, READERS, (unsigned long long)st.flushes,
           (unsigned long long)st.compactions, (unsigned long long)st.txn_conflicts,
           atomic_load(&failures) ? "FAILED" : "ok");
    return atomic_load(&failures) ? 1 : 0;
}
