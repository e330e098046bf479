/*
 * stress: a concurrency stress run of the whole engine, without Criterion, so that it can run under
 * ThreadSanitizer (`make tsan`): Criterion's runner cannot start under TSan (Snaipe/Criterion#274).
 * It also runs in every `make test` and `make asan`.
 *
 * Writers at every durability level (single puts, batches, deletes, TTL puts), point readers,
 * iterators and the TTL sweeper all run at once for a bounded number of operations; then the state
 * is checked against what the writers know, closed, reopened and checked again. Every check failure
 * prints a message and exits 1.
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
    shale_buf_free(&v);
}

int main(void)
{
    char dir[] = "/tmp/shale-stress-XXXXXX";
    shale_options opts = {.create_if_missing = true,
                          .ttl_sweep_interval_ms = 10,
                          .wal_flush_interval_ms = 1,
                          .wal_segment_bytes = 64u << 10};
    pthread_t wt[WRITERS], rt[READERS];
    shale_error err;

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    if (shale_open(dir, &opts, &db, &err) != SHALE_OK) {
        fprintf(stderr, "stress: open: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < READERS; i++) {
        pthread_create(&rt[i], NULL, reader_main, (void *)(uintptr_t)(i + 1));
    }
    for (int i = 0; i < WRITERS; i++) {
        pthread_create(&wt[i], NULL, writer_main, (void *)(intptr_t)i);
    }
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(wt[i], NULL);
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
    printf("stress: %d writers x %d keys x %d rounds, %d readers: %s\n", WRITERS, KEYS_PER_W,
           ROUNDS, READERS, atomic_load(&failures) ? "FAILED" : "ok");
    return atomic_load(&failures) ? 1 : 0;
}
