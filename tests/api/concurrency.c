/* Threads: FULL-durability writers on disjoint keys while readers get and iterate. Worker threads
 * never call cr_assert (Criterion asserts belong to the test's main thread): they record the
 * first failure, which the main thread reports after joining. */
#include <pthread.h>
#include <stdio.h>

#include "api.h"

TestSuite(concurrency);

enum { WRITERS = 4, READERS = 2, PER_WRITER = 150 };

typedef struct shared {
    shale_db *db;
    atomic_int writers_left;
    tu_failure failure;
} shared;

typedef struct worker {
    shared *sh;
    int id;
    uint64_t scans; /* readers: full iterations done */
} worker;

static shale_slice wkey(char *buf, int writer, int i)
{
    int n = snprintf(buf, 32, "w%d-%06d", writer, i);
    return (shale_slice){buf, (size_t)n};
}

/* The value writer w stores at index i. */
static shale_slice wvalue(char *buf, int writer, int i)
{
    return api_value(buf, (uint64_t)writer * 1000000u + (uint64_t)i);
}

static void *writer_main(void *arg)
{
    worker *w = arg;
    shale_write_opts full = {.durability = SHALE_DURABILITY_FULL};
    char kb[32], vb[256];
    shale_error err = {0};

    for (int i = 0; i < PER_WRITER && !tu_failed(&w->sh->failure); i++) {
        shale_code rc = shale_put(w->sh->db, &full, wkey(kb, w->id, i), wvalue(vb, w->id, i), &err);
        if (rc != SHALE_OK) {
            tu_fail(&w->sh->failure, "put: %s (%d)", err.msg, (int)rc);
        }
    }
    atomic_fetch_sub(&w->sh->writers_left, 1);
    return NULL;
}

/* Checks one entry: the value matches the key. Returns the writer and index through out params. */
static bool check_entry(shared *sh, shale_slice k, shale_slice v, int *writer, int *idx)
{
    char kb[40], vb[256];
    if (k.len >= sizeof kb) {
        tu_fail(&sh->failure, "unexpected key length %zu", k.len);
        return false;
    }
    memcpy(kb, k.data, k.len);
    kb[k.len] = '\0';
    if (sscanf(kb, "w%d-%d", writer, idx) != 2 || *writer < 0 || *writer >= WRITERS) {
        tu_fail(&sh->failure, "unexpected key %s", kb);
        return false;
    }
    shale_slice want = wvalue(vb, *writer, *idx);
    if (v.len != want.len || memcmp(v.data, want.data, v.len) != 0) {
        tu_fail(&sh->failure, "wrong value for %s (len %zu)", kb, v.len);
        return false;
    }
    return true;
}

static void *reader_main(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    tu_rng r;
    shale_buf buf = {0};
    shale_error err = {0};
    char kb[32];

    tu_rng_seed(&r, 77 + (uint64_t)w->id);
    while (atomic_load(&sh->writers_left) > 0 && !tu_failed(&sh->failure)) {
        /* Point reads. */
        for (int j = 0; j < 20; j++) {
            int wr = (int)tu_rng_below(&r, WRITERS), i = (int)tu_rng_below(&r, PER_WRITER);
            shale_slice k = wkey(kb, wr, i);
            shale_code rc = shale_get(sh->db, NULL, k, &buf, &err);
            int a, b;
            if (rc == SHALE_OK) {
                check_entry(sh, k, (shale_slice){buf.data, buf.len}, &a, &b);
            } else if (rc != SHALE_NOT_FOUND) {
                tu_fail(&sh->failure, "get: %s (%d)", err.msg, (int)rc);
            }
        }
        /* A scan: a consistent view shows each writer's keys as a prefix 0, 1, 2, ... since each
         * writer commits its keys in order. */
        shale_iter *it = NULL;
        shale_code rc = shale_iter_new(sh->db, NULL, &it, &err);
        if (rc != SHALE_OK) {
            tu_fail(&sh->failure, "iter_new: %s (%d)", err.msg, (int)rc);
            break;
        }
        int next[WRITERS] = {0};
        for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
            int wr, i;
            if (!check_entry(sh, shale_iter_key(it), shale_iter_value(it), &wr, &i)) {
                break;
            }
            if (i != next[wr]) {
                tu_fail(&sh->failure, "scan: writer %d index %d, expected %d", wr, i, next[wr]);
                break;
            }
            next[wr]++;
        }
        rc = shale_iter_status(it, &err);
        if (rc != SHALE_OK) {
            tu_fail(&sh->failure, "iter status: %s (%d)", err.msg, (int)rc);
        }
        shale_iter_free(it);
        w->scans++;
    }
    shale_buf_free(&buf);
    return NULL;
}

Test(concurrency, writers_and_readers)
{
    tu_fx fx = {0};
    shared sh = {0};
    worker ws[WRITERS + READERS];
    pthread_t th[WRITERS + READERS];
    char kb[32], vb[256];

    tu_fx_begin(&fx, "api-conc", NULL);
    sh.db = fx.db;
    tu_failure_init(&sh.failure);
    atomic_store(&sh.writers_left, WRITERS);
    for (int i = 0; i < WRITERS + READERS; i++) {
        ws[i] = (worker){.sh = &sh, .id = i < WRITERS ? i : i - WRITERS};
        int rc = pthread_create(&th[i], NULL, i < WRITERS ? writer_main : reader_main, &ws[i]);
        cr_assert_eq(rc, 0);
    }
    for (int i = 0; i < WRITERS + READERS; i++) {
        pthread_join(th[i], NULL);
    }
    tu_failure_check(&sh.failure, "workers");

    const uint64_t total = (uint64_t)WRITERS * PER_WRITER;
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.live_keys, total);
    cr_assert_eq(st.writes, total);
    cr_assert_eq(st.batches, total);
    cr_assert_eq(st.last_sequence, total);
    cr_assert_leq(st.group_commits, st.batches);
    cr_assert_geq(st.group_commits, 1);
    cr_assert_leq(st.syncs, st.batches, "syncs %llu > batches %llu", (unsigned long long)st.syncs,
                  (unsigned long long)st.batches);
    cr_assert_geq(st.syncs, 1);
    for (int round = 0; round < 2; round++) {
        for (int w = 0; w < WRITERS; w++) {
            for (int i = 0; i < PER_WRITER; i++) {
                shale_slice v = wvalue(vb, w, i);
                tu_expectn(fx.db, wkey(kb, w, i), &v);
            }
        }
        tu_fx_reopen(&fx, NULL);
    }
    cr_assert_eq(tu_stats(fx.db).live_keys, total);
    tu_fx_end(&fx);
}

/* Concurrent batches on overlapping keys: each batch is atomic, so a scan never sees a mix. */
static void *batch_writer_main(void *arg)
{
    worker *w = arg;
    shale_batch *b = shale_batch_new();
    shale_error err = {0};
    char val[16];

    if (b == NULL) {
        tu_fail(&w->sh->failure, "batch_new failed");
        return NULL;
    }
    for (int round = 0; round < 100 && !tu_failed(&w->sh->failure); round++) {
        shale_batch_clear(b);
        int n = snprintf(val, sizeof val, "%d-%d", w->id, round);
        for (int k = 0; k < 8; k++) {
            char key[8];
            snprintf(key, sizeof key, "k%d", k);
            if (shale_batch_put(b, tu_str(key), (shale_slice){val, (size_t)n}, &err) != SHALE_OK) {
                tu_fail(&w->sh->failure, "batch_put: %s", err.msg);
            }
        }
        shale_code rc = shale_write(w->sh->db, NULL, b, &err);
        if (rc != SHALE_OK) {
            tu_fail(&w->sh->failure, "write: %s (%d)", err.msg, (int)rc);
        }
    }
    shale_batch_free(b);
    atomic_fetch_sub(&w->sh->writers_left, 1);
    return NULL;
}

static void *batch_reader_main(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    shale_error err = {0};

    while (atomic_load(&sh->writers_left) > 0 && !tu_failed(&sh->failure)) {
        shale_iter *it = NULL;
        if (shale_iter_new(sh->db, NULL, &it, &err) != SHALE_OK) {
            tu_fail(&sh->failure, "iter_new: %s", err.msg);
            break;
        }
        char first[16] = "";
        size_t first_len = 0, n = 0;
        for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it), n++) {
            shale_slice v = shale_iter_value(it);
            if (n == 0) {
                first_len = v.len < sizeof first ? v.len : sizeof first - 1;
                memcpy(first, v.data, first_len);
            } else if (v.len != first_len || memcmp(v.data, first, v.len) != 0) {
                tu_fail(&sh->failure, "scan saw a partial batch (first value %s, entry %zu)", first,
                        n);
                break;
            }
        }
        if (n != 0 && n != 8) {
            tu_fail(&sh->failure, "scan saw %zu of 8 keys", n);
        }
        shale_iter_free(it);
        w->scans++;
    }
    return NULL;
}

Test(concurrency, batches_are_atomic_to_readers)
{
    tu_fx fx = {0};
    shared sh = {0};
    worker ws[4];
    pthread_t th[4];

    tu_fx_begin(&fx, "api-conc", NULL);
    sh.db = fx.db;
    tu_failure_init(&sh.failure);
    atomic_store(&sh.writers_left, 2);
    for (int i = 0; i < 4; i++) {
        ws[i] = (worker){.sh = &sh, .id = i};
        cr_assert_eq(
            pthread_create(&th[i], NULL, i < 2 ? batch_writer_main : batch_reader_main, &ws[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    tu_failure_check(&sh.failure, "workers");
    shale_stats st = tu_stats(fx.db);
    cr_assert_eq(st.batches, 200);
    cr_assert_eq(st.writes, 1600);
    cr_assert_eq(st.live_keys, 8);
    tu_fx_end(&fx);
}
