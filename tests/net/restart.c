/*
 * Restarts of `shale serve`: every acknowledged write (the client got the reply) through either
 * protocol survives a SIGKILL of a server running with --durability full; and a graceful stop
 * (SIGTERM, exit 0) keeps everything written before it at every durability level.
 *
 * What the library promises (include/shale.h, "How far a commit travels"): NONE keeps no log
 * and MEMORY buffers it for a few milliseconds, so a crash may lose their recent writes; OS
 * survives a process crash; FULL survives power loss. shale_close flushes the memtable into a
 * table at every level, so a graceful stop loses nothing at any level: that is what the graceful
 * tests check for all four; only FULL (and OS) are crash-tested here.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net_util.h"
#include "testutil.h"

TestSuite(restart, .init = nu_setup, .fini = nu_teardown);

static nu_server srv;

/* ---- writers for the crash test (worker threads: no cr_assert here) ---- */

typedef struct writer {
    uint16_t port;
    atomic_int acked; /* writes 0 .. acked-1 got their reply */
    atomic_bool stop;
} writer;

static void *resp_writer(void *arg)
{
    writer *w = arg;
    struct timeval tv = {.tv_sec = 60};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", w->port, tv);
    if (c == NULL || c->err) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    for (int i = 0; !atomic_load(&w->stop); i++) {
        redisReply *r;
        if (i % 10 == 9) {
            /* A transaction too: both keys or neither. */
            r = redisCommand(c, "MSET rk%d rv%d rm%d rv%d", i, i, i, i);
        } else {
            r = redisCommand(c, "SET rk%d rv%d", i, i);
        }
        if (r == NULL) {
            break; /* the server died: this write is not acknowledged */
        }
        bool ok = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
        freeReplyObject(r);
        if (!ok) {
            break;
        }
        atomic_store(&w->acked, i + 1);
    }
    redisFree(c);
    return NULL;
}

static size_t discard(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

static void *http_writer(void *arg)
{
    writer *w = arg;
    char url[128], body[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/collections/w", w->port);
    CURL *c = curl_easy_init();
    if (c == NULL) {
        return NULL;
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    for (int i = 0; !atomic_load(&w->stop); i++) {
        snprintf(body, sizeof body, "{\"_id\":\"d%06d\",\"n\":%d}", i, i);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (curl_easy_perform(c) != CURLE_OK) {
            break;
        }
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status != 201) {
            break;
        }
        atomic_store(&w->acked, i + 1);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

/* Asserts that documents d000000 .. d<n-1> of collection w are all there (pages of 1000). */
static void expect_docs(int n, const char *ctx)
{
    char *have = calloc((size_t)n + 1, 1);
    char cursor[512] = "";
    int pages = 0;
    for (;;) {
        char path[1024];
        if (cursor[0] == '\0') {
            snprintf(path, sizeof path, "/collections/w/find?limit=1000");
        } else {
            char *e = nu_escape(cursor);
            snprintf(path, sizeof path, "/collections/w/find?limit=1000&after=%s", e);
            free(e);
        }
        nu_resp r = NU_GET(&srv, path);
        nu_expect_status(&r, 200, ctx);
        json_t *j = nu_json(&r);
        nu_resp_free(&r);
        json_t *docs = nu_jget(j, "documents", JSON_ARRAY, ctx);
        size_t i;
        json_t *d;
        json_array_foreach(docs, i, d)
        {
            int k;
            const char *id = json_string_value(json_object_get(d, "_id"));
            cr_assert(id != NULL && sscanf(id, "d%d", &k) == 1, "%s: odd document", ctx);
            if (k < n) {
                have[k] = 1;
            }
        }
        bool more = json_is_true(json_object_get(j, "has_next"));
        if (more) {
            snprintf(cursor, sizeof cursor, "%s",
                     json_string_value(json_object_get(j, "next_cursor")));
        }
        json_decref(j);
        if (!more) {
            break;
        }
        cr_assert_lt(++pages, 10000);
    }
    for (int k = 0; k < n; k++) {
        cr_assert(have[k], "%s: acknowledged document d%06d is missing (of %d)", ctx, k, n);
    }
    free(have);
}

/* Asserts keys rk0 .. rk<n-1> (and rm<i> for the MSETs) hold their values, pipelined. */
static void expect_keys(redisContext *c, int n, const char *ctx)
{
    for (int base = 0; base < n; base += 500) {
        int end = base + 500 < n ? base + 500 : n;
        for (int i = base; i < end; i++) {
            redisAppendCommand(c, "MGET rk%d rm%d", i, i);
        }
        for (int i = base; i < end; i++) {
            redisReply *r = NULL;
            cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK, "%s: %s", ctx, c->errstr);
            char want[32];
            snprintf(want, sizeof want, "rv%d", i);
            cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 2, "%s: MGET shape", ctx);
            cr_assert(r->element[0]->type == REDIS_REPLY_STRING &&
                          strcmp(r->element[0]->str, want) == 0,
                      "%s: acknowledged key rk%d lost (of %d)", ctx, i, n);
            if (i % 10 == 9) {
                cr_assert(r->element[1]->type == REDIS_REPLY_STRING &&
                              strcmp(r->element[1]->str, want) == 0,
                          "%s: half an MSET: rm%d lost", ctx, i);
            }
            freeReplyObject(r);
        }
    }
}

static void wait_acked(writer *a, writer *b)
{
    uint64_t end = nu_now_ms() + NU_DEADLINE_MS;
    while (atomic_load(&a->acked) < 20 || atomic_load(&b->acked) < 20) {
        cr_assert_lt(nu_now_ms(), end, "writers made no progress (%d, %d)", atomic_load(&a->acked),
                     atomic_load(&b->acked));
        tu_sleep_us(5000);
    }
}

static void kill_round(const char *level, uint64_t seed, bool graceful)
{
    char *dir = nu_path("db");
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    int total_r = 0, total_h = 0;
    for (int round = 0; round < 2; round++) {
        nu_start(&srv, dir, (const char *const[]){"--durability", level, "--threads", "2", NULL});
        if (round > 0) {
            /* The previous round's writes are still there; start over on fresh names. */
            redisContext *c = nu_redis(&srv);
            expect_keys(c, total_r, "before round 2");
            redisFree(c);
            nu_ok(NU_CMD((c = nu_redis(&srv)), "FLUSHALL"), "OK", "FLUSHALL");
            redisFree(c);
            nu_resp r = NU_DELETE(&srv, "/collections/w");
            nu_expect_status(&r, 204, "drop w");
            nu_resp_free(&r);
        }
        writer wr = {.port = srv.resp_port}, wh = {.port = srv.http_port};
        pthread_t tr, th;
        cr_assert_eq(pthread_create(&tr, NULL, resp_writer, &wr), 0);
        cr_assert_eq(pthread_create(&th, NULL, http_writer, &wh), 0);
        wait_acked(&wr, &wh);
        /* A random short while more, then SIGKILL (or SIGTERM) with writes in flight. */
        tu_sleep_us(100000 + tu_rng_below(&rng, 700000));
        if (graceful) {
            nu_stop_ok(&srv);
        } else {
            nu_kill9(&srv);
        }
        pthread_join(tr, NULL);
        pthread_join(th, NULL);
        total_r = atomic_load(&wr.acked);
        total_h = atomic_load(&wh.acked);

        nu_start(&srv, dir, (const char *const[]){"--durability", level, NULL});
        redisContext *c = nu_redis(&srv);
        char ctx[128];
        snprintf(ctx, sizeof ctx, "round %d after %s (%s)", round, graceful ? "SIGTERM" : "kill -9",
                 level);
        expect_keys(c, total_r, ctx);
        redisFree(c);
        expect_docs(total_h, ctx);
        nu_stop_ok(&srv);
    }
    free(dir);
}

Test(restart, kill9_full_keeps_every_acknowledged_write)
{
    kill_round("full", (uint64_t)time(NULL) ^ (uint64_t)getpid(), false);
}

Test(restart, kill9_os_keeps_every_acknowledged_write)
{
    /* OS durability survives a process crash (not a power loss), and kill -9 is the former. */
    kill_round("os", (uint64_t)time(NULL) * 31 ^ (uint64_t)getpid(), false);
}

Test(restart, sigterm_under_load_keeps_every_acknowledged_write)
{
    /* A graceful stop with writes in flight: the server finishes what it acknowledged and the
     * close flushes, so even durability none (no log at all) keeps every acknowledged write. */
    kill_round("none", (uint64_t)time(NULL) * 17 ^ (uint64_t)getpid(), true);
}

/* ---- graceful restarts at each level ---- */

static void write_all(void)
{
    redisContext *c = nu_redis(&srv);
    char k[32], v[32];
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "g%03d", i);
        snprintf(v, sizeof v, "val%d", i);
        redisAppendCommand(c, "SET %s %s", k, v);
    }
    for (int i = 0; i < 300; i++) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
        nu_ok(r, "OK", "pipelined SET");
    }
    for (int i = 0; i < 25; i++) {
        nu_int(NU_CMD(c, "INCR", "ctr"), i + 1, "INCR");
    }
    nu_ok(NU_CMD(c, "SET", "ttl", "t", "EX", "100000"), "OK", "SET EX");
    nu_int(NU_CMD(c, "DEL", "g007"), 1, "DEL");
    nu_ok(NU_CMD(c, "MULTI"), "OK", "MULTI");
    nu_ok(NU_CMD(c, "SET", "tx1", "a"), "QUEUED", "queue");
    nu_ok(NU_CMD(c, "SET", "tx2", "b"), "QUEUED", "queue");
    redisReply *r = NU_CMD(c, "EXEC");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);
    redisFree(c);

    char body[16384];
    size_t n = (size_t)snprintf(body, sizeof body, "{\"documents\":[");
    for (int i = 0; i < 100; i++) {
        n += (size_t)snprintf(body + n, sizeof body - n, "%s{\"_id\":\"d%06d\",\"n\":%d,\"g\":%d}",
                              i ? "," : "", i, i, i % 3);
    }
    snprintf(body + n, sizeof body - n, "]}");
    nu_resp h = NU_SEND(&srv, "POST", "/collections/w/batch", body);
    nu_expect_status(&h, 201, "batch");
    nu_resp_free(&h);
    h = NU_SEND(&srv, "POST", "/collections/w/indexes/g", "");
    nu_expect_status(&h, 201, "index");
    nu_resp_free(&h);
    h = NU_SEND(&srv, "PATCH", "/collections/w/documents/d000005", "{\"patched\":true}");
    nu_expect_status(&h, 200, "patch");
    nu_resp_free(&h);
    h = NU_DELETE(&srv, "/collections/w/documents/d000006");
    nu_expect_status(&h, 204, "delete");
    nu_resp_free(&h);
}

static void check_all(const char *level)
{
    redisContext *c = nu_redis(&srv);
    char k[32], v[32], ctx[64];
    snprintf(ctx, sizeof ctx, "after a graceful restart (%s)", level);
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "g%03d", i);
        redisAppendCommand(c, "GET %s", k);
    }
    for (int i = 0; i < 300; i++) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
        if (i == 7) {
            nu_nil(r, ctx);
        } else {
            snprintf(v, sizeof v, "val%d", i);
            nu_str(r, v, ctx);
        }
    }
    nu_str(NU_CMD(c, "GET", "ctr"), "25", ctx);
    nu_str(NU_CMD(c, "GET", "tx1"), "a", ctx);
    nu_str(NU_CMD(c, "GET", "tx2"), "b", ctx);
    redisReply *r = NU_CMD(c, "TTL", "ttl");
    cr_assert(r->type == REDIS_REPLY_INTEGER && r->integer > 0, "%s: TTL kept: %lld", ctx,
              r->integer);
    freeReplyObject(r);
    redisFree(c);

    nu_resp h = NU_GET(&srv, "/collections/w/find?limit=1000");
    nu_expect_status(&h, 200, ctx);
    json_t *j = nu_json(&h);
    nu_resp_free(&h);
    cr_assert_eq(json_integer_value(json_object_get(j, "total")), 99, "%s: documents", ctx);
    json_decref(j);
    h = NU_GET(&srv, "/collections/w/documents/d000005");
    nu_expect_status(&h, 200, ctx);
    j = nu_json(&h);
    cr_assert(json_is_true(json_object_get(j, "patched")), "%s: the patch was lost", ctx);
    json_decref(j);
    nu_resp_free(&h);
    h = NU_GET(&srv, "/collections/w/documents/d000006");
    nu_expect_status(&h, 404, ctx);
    nu_resp_free(&h);
    h = NU_GET(&srv, "/collections/w/indexes");
    nu_expect_status(&h, 200, ctx);
    cr_assert_not_null(strstr(h.body, "\"g\""), "%s: the index is gone: %s", ctx, h.body);
    nu_resp_free(&h);
    h = NU_GET(&srv, "/collections/w/find?g=2&limit=1000");
    nu_expect_status(&h, 200, ctx);
    j = nu_json(&h);
    cr_assert_eq(json_integer_value(json_object_get(j, "total")), 33, "%s: indexed query", ctx);
    json_decref(j);
    nu_resp_free(&h);
}

static void graceful(const char *level)
{
    char *dir = nu_path("db");
    const char *const args[] = {"--durability", level, NULL};
    nu_start(&srv, dir, args);
    write_all();
    nu_stop_ok(&srv);
    nu_start(&srv, dir, args);
    check_all(level);
    /* And once more, after a restart that wrote nothing. */
    nu_stop_ok(&srv);
    nu_start(&srv, dir, args);
    check_all(level);
    nu_stop_ok(&srv);
    free(dir);
}

Test(restart, graceful_none)
{
    graceful("none");
}

Test(restart, graceful_memory)
{
    graceful("memory");
}

Test(restart, graceful_os)
{
    graceful("os");
}

Test(restart, graceful_full)
{
    graceful("full");
}
