/*
 * find_with_stream over a large collection: a chunked JSON array and NDJSON, every document
 * once and in _id order, while the server's memory stays bounded.
 *
 * The memory check is a memory check, not a timing one: the server's VmRSS is sampled while the
 * client reads (slowly, so a server that ignores backpressure piles the stream up in its output
 * buffers), and its growth over the RSS before the stream must stay under STREAM_RSS_BOUND,
 * which is smaller than the stream itself: a server that builds the whole answer in memory
 * cannot pass. The server runs with --max-memory 32 (its block cache may legitimately grow by
 * up to ~24 MiB while the stream reads tables) and, when it is an ASan build, with a small
 * allocator quarantine (ASan otherwise keeps up to 256 MiB of freed memory resident, which
 * would measure ASan, not the server).
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net_util.h"
#include "testutil.h"

TestSuite(stream, .init = nu_setup, .fini = nu_teardown);

#define NDOCS            20000
#define PAD              3400
#define STREAM_RSS_BOUND (64ull << 20)

static nu_server srv;

typedef struct sink {
    char *p;
    size_t len, cap;
    size_t since_sample;
    pid_t pid;
    uint64_t max_rss_kib;
} sink;

static void sample(sink *s)
{
    uint64_t r = nu_rss_kib(s->pid);
    if (r > s->max_rss_kib) {
        s->max_rss_kib = r;
    }
}

static size_t on_data(char *data, size_t size, size_t nmemb, void *ud)
{
    sink *s = ud;
    size_t n = size * nmemb;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : (1u << 20);
        while (cap < s->len + n + 1) {
            cap *= 2;
        }
        char *p = realloc(s->p, cap);
        if (p == NULL) {
            return 0;
        }
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->len, data, n);
    s->len += n;
    s->p[s->len] = '\0';
    s->since_sample += n;
    if (s->since_sample >= (1u << 20)) {
        s->since_sample = 0;
        sample(s);
        /* A slow reader: the server must wait for us rather than buffer ahead. */
        tu_sleep_us(15000);
    }
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    return fwrite(data, size, nmemb, ud) * size;
}

/* GET path into s (status and headers checked by the caller). */
static long get_stream(const char *path, const char *accept, sink *s, char *ctype, size_t ctcap,
                       char *te, size_t tecap)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", srv.url, path);
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    struct curl_slist *h = NULL;
    char hdr[128];
    if (accept != NULL) {
        snprintf(hdr, sizeof hdr, "Accept: %s", accept);
        h = curl_slist_append(h, hdr);
    }
    nu_resp hr = {0};
    /* headers collected through nu_resp's parser: reuse its raw-block format */
    char *hbuf = NULL;
    size_t hlen = 0;
    FILE *hf = open_memstream(&hbuf, &hlen);
    cr_assert_not_null(hf);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, hf);
    CURLcode cc = curl_easy_perform(c);
    cr_assert_eq(cc, CURLE_OK, "%s: curl %d (%s) after %zu bytes", path, (int)cc,
                 curl_easy_strerror(cc), s->len);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    fclose(hf);
    hr.headers = hbuf;
    ctype[0] = te[0] = '\0';
    nu_header(&hr, "Content-Type", ctype, ctcap);
    nu_header(&hr, "Transfer-Encoding", te, tecap);
    free(hbuf);
    sample(s);
    return status;
}

static void check_doc(json_t *d, size_t i, const char *ctx)
{
    char want[16];
    snprintf(want, sizeof want, "s%05zu", i);
    json_t *id = json_object_get(d, "_id");
    cr_assert(json_is_string(id), "%s: document %zu has no string _id", ctx, i);
    cr_assert_str_eq(json_string_value(id), want, "%s: document %zu out of order or missing", ctx,
                     i);
    cr_assert_eq(json_integer_value(json_object_get(d, "i")), (json_int_t)i, "%s: doc %zu", ctx, i);
    cr_assert_eq(json_string_length(json_object_get(d, "pad")), PAD, "%s: doc %zu pad", ctx, i);
}

Test(stream, large_collection_array_and_ndjson)
{
    char *dir = nu_path("db");
    const char *asan = getenv("ASAN_OPTIONS");
    char env0[1024];
    snprintf(env0, sizeof env0, "ASAN_OPTIONS=%s%squarantine_size_mb=4", asan ? asan : "",
             asan && asan[0] ? ":" : "");
    nu_start_env(&srv, dir, (const char *const[]){"--max-memory", "32", NULL},
                 (const char *const[]){env0, NULL});
    free(dir);

    /* 20 batches of 1000, ids scattered over the batches (7919 is prime to 20000) so that the
     * stream's _id order is not just insertion order. */
    uint64_t t0 = nu_now_ms();
    char *pad = malloc(PAD + 1);
    memset(pad, 'p', PAD);
    pad[PAD] = '\0';
    size_t cap = 1000 * (PAD + 64) + 64;
    char *body = malloc(cap);
    cr_assert(pad != NULL && body != NULL);
    for (int b = 0; b < NDOCS / 1000; b++) {
        size_t n = (size_t)snprintf(body, cap, "{\"documents\":[");
        for (int k = 0; k < 1000; k++) {
            size_t i = ((size_t)(b * 1000 + k) * 7919u) % NDOCS;
            n += (size_t)snprintf(body + n, cap - n,
                                  "%s{\"_id\":\"s%05zu\",\"i\":%zu,\"pad\":\"%s\"}", k ? "," : "",
                                  i, i, pad);
        }
        n += (size_t)snprintf(body + n, cap - n, "]}");
        nu_resp r = nu_http(&srv, "POST", "/collections/big/batch", body, n, NULL);
        nu_expect_status(&r, 201, "batch insert");
        nu_resp_free(&r);
    }
    free(body);
    free(pad);
    cr_log_info("inserted %d documents in %llu ms", NDOCS, (unsigned long long)(nu_now_ms() - t0));
    nu_resp r = NU_SEND(&srv, "POST", "/collections/small", "{\"_id\":\"only\"}");
    nu_expect_status(&r, 201, "small insert");
    nu_resp_free(&r);

    /* Small streams first: exact bodies of a filter, an empty result, another collection. */
    sink s = {.pid = srv.pid};
    char ct[128], te[128];
    long st =
        get_stream("/collections/big/find_with_stream?i=5", NULL, &s, ct, sizeof ct, te, sizeof te);
    cr_assert_eq(st, 200);
    json_t *j = json_loadb(s.p, s.len, 0, NULL);
    cr_assert(json_is_array(j) && json_array_size(j) == 1, "filtered stream: %.200s", s.p);
    check_doc(json_array_get(j, 0), 5, "filtered stream");
    json_decref(j);
    s.len = 0;
    st = get_stream("/collections/big/find_with_stream?i=-1", NULL, &s, ct, sizeof ct, te,
                    sizeof te);
    cr_assert_eq(st, 200);
    j = json_loadb(s.p, s.len, 0, NULL);
    cr_assert(json_is_array(j) && json_array_size(j) == 0, "empty stream: \"%s\"", s.p);
    json_decref(j);
    s.len = 0;
    st = get_stream("/collections/small/find_with_stream", "application/x-ndjson", &s, ct,
                    sizeof ct, te, sizeof te);
    cr_assert_eq(st, 200);
    cr_assert(strncmp(s.p, "{", 1) == 0 && strstr(s.p, "\"only\"") != NULL &&
                  strchr(s.p, '\n') == s.p + s.len - 1,
              "one-line NDJSON: \"%s\"", s.p);
    free(s.p);

    /* The big JSON array. */
    uint64_t before = nu_rss_kib(srv.pid);
    cr_assert_gt(before, 0);
    s = (sink){.pid = srv.pid};
    st = get_stream("/collections/big/find_with_stream", NULL, &s, ct, sizeof ct, te, sizeof te);
    cr_assert_eq(st, 200, "array stream status %ld", st);
    cr_assert(strncmp(ct, "application/json", 16) == 0, "array stream content type \"%s\"", ct);
    cr_assert(strcasecmp(te, "chunked") == 0, "array stream not chunked: \"%s\"", te);
    cr_assert_gt(s.len, (size_t)NDOCS * PAD, "stream shorter than its documents");
    uint64_t grew = s.max_rss_kib > before ? (s.max_rss_kib - before) << 10 : 0;
    cr_assert_lt(grew, STREAM_RSS_BOUND,
                 "server RSS grew by %llu MiB (from %llu MiB) while streaming %zu MiB",
                 (unsigned long long)(grew >> 20), (unsigned long long)(before >> 10), s.len >> 20);
    cr_log_info("array stream: %zu MiB; server RSS %llu MiB before, %llu MiB at most", s.len >> 20,
                (unsigned long long)(before >> 10), (unsigned long long)(s.max_rss_kib >> 10));
    json_error_t je;
    j = json_loadb(s.p, s.len, 0, &je);
    cr_assert(json_is_array(j), "array stream is not a JSON array: %s at %d", je.text, je.position);
    cr_assert_eq(json_array_size(j), NDOCS);
    for (size_t i = 0; i < NDOCS; i++) {
        check_doc(json_array_get(j, i), i, "array stream");
    }
    json_decref(j);
    free(s.p);

    /* NDJSON. */
    before = nu_rss_kib(srv.pid);
    s = (sink){.pid = srv.pid};
    st = get_stream("/collections/big/find_with_stream", "application/x-ndjson", &s, ct, sizeof ct,
                    te, sizeof te);
    cr_assert_eq(st, 200);
    cr_assert(strncmp(ct, "application/x-ndjson", 20) == 0, "NDJSON content type \"%s\"", ct);
    cr_assert(strcasecmp(te, "chunked") == 0, "NDJSON stream not chunked: \"%s\"", te);
    grew = s.max_rss_kib > before ? (s.max_rss_kib - before) << 10 : 0;
    cr_assert_lt(grew, STREAM_RSS_BOUND,
                 "server RSS grew by %llu MiB while streaming NDJSON (%zu MiB)",
                 (unsigned long long)(grew >> 20), s.len >> 20);
    cr_log_info("NDJSON stream: %zu MiB; server RSS %llu MiB before, %llu MiB at most", s.len >> 20,
                (unsigned long long)(before >> 10), (unsigned long long)(s.max_rss_kib >> 10));
    size_t i = 0;
    char *p = s.p, *end = s.p + s.len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        cr_assert_not_null(nl, "NDJSON line %zu has no newline", i);
        cr_assert_lt(i, NDOCS, "more NDJSON lines than documents");
        j = json_loadb(p, (size_t)(nl - p), 0, &je);
        cr_assert(json_is_object(j), "NDJSON line %zu is not an object: %s", i, je.text);
        check_doc(j, i, "NDJSON");
        json_decref(j);
        i++;
        p = nl + 1;
    }
    cr_assert_eq(i, NDOCS, "NDJSON lines");
    cr_log_info("streamed and checked in %llu ms", (unsigned long long)(nu_now_ms() - t0));
    free(s.p);
    nu_stop_ok(&srv);
}

/* A client that drops a stream mid-body must not leave the stream's snapshot (and cursor) behind:
 * after three dropped streams the server's /stats reports no live snapshot, and it still stops
 * at once (no stream keeps the grace period waiting). */
Test(stream, dropped_stream_releases_its_snapshot)
{
    char *dir = nu_path("db");
    nu_start(&srv, dir, NULL);
    free(dir);
    /* Enough documents that the response cannot fit in the socket buffers at once. */
    static char body[1 << 20];
    for (int b = 0; b < 4; b++) {
        size_t n = (size_t)snprintf(body, sizeof body, "{\"documents\":[");
        for (int i = 0; i < 1000; i++) {
            n += (size_t)snprintf(body + n, sizeof body - n,
                                  "%s{\"_id\":\"d%d-%04d\",\"pad\":\"%0200d\"}", i ? "," : "", b, i,
                                  i);
        }
        n += (size_t)snprintf(body + n, sizeof body - n, "]}");
        nu_resp r = nu_http(&srv, "POST", "/collections/s/batch", body, n, NULL);
        nu_expect_status(&r, 201, "batch insert");
        nu_resp_free(&r);
    }
    for (int k = 0; k < 3; k++) {
        int fd = nu_connect(srv.http_port);
        static const char req[] = "GET /collections/s/find_with_stream HTTP/1.1\r\n"
                                  "Host: x\r\n\r\n";
        nu_send(fd, req, sizeof req - 1);
        char buf[4096];
        ssize_t got = read(fd, buf, sizeof buf); /* the head and the first chunks */
        cr_assert_gt(got, 0, "no response to the stream request");
        close(fd); /* the rest is never read */
    }
    /* The server notices each drop when a write fails: poll until every snapshot is released. */
    long snaps = -1;
    for (uint64_t end = nu_now_ms() + NU_DEADLINE_MS; nu_now_ms() < end;) {
        nu_resp r = NU_GET(&srv, "/stats");
        nu_expect_status(&r, 200, "stats");
        json_t *st = nu_json(&r);
        snaps = (long)json_integer_value(json_object_get(st, "snapshots"));
        json_decref(st);
        nu_resp_free(&r);
        if (snaps == 0) {
            break;
        }
        usleep(20000);
    }
    cr_assert_eq(snaps, 0, "dropped streams still hold %ld snapshots", snaps);
    nu_stop_ok(&srv);
}
