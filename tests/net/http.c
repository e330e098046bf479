/*
 * The HTTP/JSON API of `shale serve` through a real server and libcurl: every route of
 * src/server/http_api.h with its statuses and go-db's response shapes (keys present, JSON types),
 * pagination with cursors, streaming (chunked JSON array and NDJSON) over a large collection in
 * bounded server memory, auth, body limits, /health /stats /metrics.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net_util.h"
#include "testutil.h"

TestSuite(http, .init = nu_setup, .fini = nu_teardown);

static nu_server srv;

static void start(const char *const *extra)
{
    char *dir = nu_path("db");
    nu_start(&srv, dir, extra);
    free(dir);
}

/* A request expecting `status`; returns the parsed JSON body (NULL for 204 / non-JSON). */
static json_t *req(const char *method, const char *path, const char *body, long status)
{
    char ctx[600];
    snprintf(ctx, sizeof ctx, "%s %s %.200s", method, path, body ? body : "");
    nu_resp r = nu_http(&srv, method, path, body, body ? strlen(body) : 0, NULL);
    nu_expect_status(&r, status, ctx);
    json_t *j = NULL;
    if (status != 204 && r.len > 0) {
        j = nu_json(&r);
    }
    if (status == 204) {
        cr_assert_eq(r.len, 0, "%s: 204 with a body: %.200s", ctx, r.body);
    }
    nu_resp_free(&r);
    return j;
}

static void req0(const char *method, const char *path, const char *body, long status)
{
    json_t *j = req(method, path, body, status);
    json_decref(j);
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(nu_jget(o, key, JSON_STRING, key));
}

static long long jint(json_t *o, const char *key)
{
    json_t *v = nu_jget(o, key, JSON_INTEGER, key);
    cr_assert(json_is_integer(v), "\"%s\" is not an integer", key);
    return json_integer_value(v);
}

/* The array of a list answer: GET /collections is {"collections":[names],"count":N}, GET
 * .../indexes is {"success":true,"collection":c,"indexes":[...]} (go-db's shapes). */
static json_t *list_of(json_t *j, const char *ctx)
{
    json_t *arr;
    if (strcmp(ctx, "collections") == 0) {
        arr = nu_jget(j, "collections", JSON_ARRAY, ctx);
        cr_assert_eq(jint(j, "count"), (long long)json_array_size(arr), "collections count");
    } else {
        arr = nu_jget(j, "indexes", JSON_ARRAY, ctx);
        nu_jget(j, "collection", JSON_STRING, ctx);
    }
    return arr;
}

/* Whether a list (of strings, or of objects with "field"/"name") holds `name`. */
static bool list_has(json_t *arr, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(v);
        if (s == NULL && json_is_object(v)) {
            s = json_string_value(json_object_get(v, "field"));
            if (s == NULL) {
                s = json_string_value(json_object_get(v, "name"));
            }
        }
        if (s != NULL && strcmp(s, name) == 0) {
            return true;
        }
    }
    return false;
}

Test(http, health_and_unknown_routes)
{
    start(NULL);
    json_t *h = req("GET", "/health", NULL, 200);
    cr_assert_str_eq(jstr(h, "status"), "healthy");
    nu_jget(h, "message", JSON_STRING, "health");
    json_decref(h);

    req0("GET", "/nope", NULL, 404);
    req0("GET", "/collections/a/b/c/d", NULL, 404);
    /* Routes that exist, with a method they do not have: 405. */
    req0("DELETE", "/health", NULL, 405);
    req0("PUT", "/collections/users", "{}", 405);
    req0("POST", "/collections/users/find", "{}", 405);
    req0("GET", "/transaction", NULL, 405);
    nu_stop_ok(&srv);
}

Test(http, documents_crud_and_errors)
{
    start(NULL);
    json_t *d =
        req("POST", "/collections/users", "{\"_id\":\"u1\",\"name\":\"Ann\",\"age\":30}", 201);
    cr_assert_str_eq(jstr(d, "_id"), "u1");
    cr_assert_str_eq(jstr(d, "name"), "Ann");
    cr_assert_eq(jint(d, "age"), 30);
    json_decref(d);

    /* Without _id: a generated 24-hex-digit one. */
    d = req("POST", "/collections/users", "{\"name\":\"Gen\"}", 201);
    const char *gid = jstr(d, "_id");
    cr_assert_eq(strlen(gid), 24, "generated id %s", gid);
    cr_assert_eq(strspn(gid, "0123456789abcdef"), 24, "generated id %s", gid);
    char path[256];
    snprintf(path, sizeof path, "/collections/users/documents/%s", gid);
    json_decref(d);
    d = req("GET", path, NULL, 200);
    cr_assert_str_eq(jstr(d, "name"), "Gen");
    json_decref(d);

    d = req("GET", "/collections/users/documents/u1", NULL, 200);
    cr_assert_str_eq(jstr(d, "_id"), "u1");
    cr_assert_str_eq(jstr(d, "name"), "Ann");
    json_decref(d);

    /* PATCH: shallow merge. */
    d = req("PATCH", "/collections/users/documents/u1", "{\"age\":31,\"city\":\"Oslo\"}", 200);
    cr_assert_str_eq(jstr(d, "name"), "Ann");
    cr_assert_eq(jint(d, "age"), 31);
    cr_assert_str_eq(jstr(d, "city"), "Oslo");
    json_decref(d);
    /* PUT: replace. */
    d = req("PUT", "/collections/users/documents/u1", "{\"name\":\"Bea\"}", 200);
    cr_assert_str_eq(jstr(d, "_id"), "u1");
    cr_assert_str_eq(jstr(d, "name"), "Bea");
    cr_assert_null(json_object_get(d, "age"), "PUT kept a field");
    json_decref(d);
    d = req("GET", "/collections/users/documents/u1", NULL, 200);
    cr_assert_null(json_object_get(d, "city"));
    json_decref(d);

    /* Percent-encoded ids. */
    d = req("POST", "/collections/users", "{\"_id\":\"a b/c\",\"v\":1}", 201);
    json_decref(d);
    d = req("GET", "/collections/users/documents/a%20b%2Fc", NULL, 200);
    cr_assert_str_eq(jstr(d, "_id"), "a b/c");
    json_decref(d);

    /* Errors. */
    req0("POST", "/collections/users", "{\"_id\":\"u1\"}", 409); /* duplicate _id */
    req0("POST", "/collections/users", "{\"name\":", 400);       /* invalid JSON */
    req0("POST", "/collections/users", "[1,2]", 400);            /* not an object */
    req0("POST", "/collections/users", "{\"_id\":5}", 400);      /* non-string _id */
    req0("POST", "/collections/bad$name", "{\"a\":1}", 400);     /* bad collection name */
    req0("POST", "/collections/bad%20name", "{\"a\":1}", 400);
    req0("GET", "/collections/users/documents/nope", NULL, 404);
    req0("GET", "/collections/nocoll/documents/u1", NULL, 404);
    req0("GET", "/collections/nocoll/find", NULL, 404);
    req0("GET", "/collections/nocoll/find_with_stream", NULL, 404);
    req0("GET", "/collections/nocoll/indexes", NULL, 404);
    req0("POST", "/collections/nocoll/query", "{}", 404);
    req0("PATCH", "/collections/users/documents/nope", "{\"a\":1}", 404);
    req0("PUT", "/collections/users/documents/nope", "{\"a\":1}", 404);
    req0("PATCH", "/collections/users/documents/u1", "{bad", 400);
    req0("DELETE", "/collections/users/documents/nope", NULL, 404);

    req0("DELETE", "/collections/users/documents/u1", NULL, 204);
    req0("GET", "/collections/users/documents/u1", NULL, 404);
    req0("DELETE", "/collections/users/documents/u1", NULL, 404);
    nu_stop_ok(&srv);
}

Test(http, batch_insert_and_update)
{
    start(NULL);
    json_t *b = req("POST", "/collections/items/batch",
                    "{\"documents\":[{\"_id\":\"i1\",\"n\":1},{\"_id\":\"i2\",\"n\":2},"
                    "{\"_id\":\"i3\",\"n\":3}]}",
                    201);
    cr_assert(json_is_true(nu_jget(b, "success", JSON_TRUE, "batch")));
    nu_jget(b, "message", JSON_STRING, "batch");
    cr_assert_eq(jint(b, "inserted_count"), 3);
    cr_assert_str_eq(jstr(b, "collection"), "items");
    json_t *docs = nu_jget(b, "documents", JSON_ARRAY, "batch");
    cr_assert_eq(json_array_size(docs), 3);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(docs, 1), "_id")), "i2");
    json_decref(b);

    /* All or nothing: a duplicate anywhere inserts none. */
    nu_resp r = NU_SEND(&srv, "POST", "/collections/items/batch",
                        "{\"documents\":[{\"_id\":\"i9\"},{\"_id\":\"i1\"}]}");
    cr_assert(r.status == 409 || r.status == 400, "duplicate in batch: %ld %s", r.status, r.body);
    nu_expect_status(&r, r.status, "duplicate in batch");
    nu_resp_free(&r);
    req0("GET", "/collections/items/documents/i9", NULL, 404);
    req0("POST", "/collections/items/batch", "{\"documents\":", 400);
    req0("POST", "/collections/items/batch", "{\"nodocs\":[]}", 400);

    b = req("PATCH", "/collections/items/batch",
            "{\"operations\":[{\"id\":\"i1\",\"updates\":{\"n\":10}},"
            "{\"id\":\"i3\",\"updates\":{\"tag\":\"x\"}}]}",
            200);
    cr_assert(json_is_true(nu_jget(b, "success", JSON_TRUE, "patch batch")));
    nu_jget(b, "message", JSON_STRING, "patch batch");
    cr_assert_eq(jint(b, "updated_count"), 2);
    cr_assert_eq(jint(b, "failed_count"), 0);
    cr_assert_str_eq(jstr(b, "collection"), "items");
    docs = nu_jget(b, "documents", JSON_ARRAY, "patch batch");
    cr_assert_eq(json_array_size(docs), 2);
    json_decref(b);
    json_t *d = req("GET", "/collections/items/documents/i1", NULL, 200);
    cr_assert_eq(jint(d, "n"), 10);
    json_decref(d);
    d = req("GET", "/collections/items/documents/i3", NULL, 200);
    cr_assert_str_eq(jstr(d, "tag"), "x");
    cr_assert_eq(jint(d, "n"), 3);
    json_decref(d);
    req0("PATCH", "/collections/items/batch", "not json", 400);
    nu_stop_ok(&srv);
}

/* Checks one find page's shape; returns the number of documents. */
static size_t page_shape(json_t *p)
{
    json_t *docs = nu_jget(p, "documents", JSON_ARRAY, "page");
    nu_jget(p, "has_next", JSON_TRUE, "page");
    nu_jget(p, "has_prev", JSON_TRUE, "page");
    json_t *nc = json_object_get(p, "next_cursor");
    json_t *pc = json_object_get(p, "prev_cursor");
    cr_assert(nc != NULL && (json_is_string(nc) || json_is_null(nc)), "next_cursor");
    cr_assert(pc != NULL && (json_is_string(pc) || json_is_null(pc)), "prev_cursor");
    cr_assert(json_is_string(nc) == json_is_true(json_object_get(p, "has_next")),
              "next_cursor present iff has_next");
    nu_jget(p, "total", JSON_INTEGER, "page");
    return json_array_size(docs);
}

static const char *doc_id(json_t *page, size_t i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(page, "documents"), i), "_id"));
}

Test(http, find_pagination_query_and_limits)
{
    start(NULL);
    char body[8192];
    size_t n = (size_t)snprintf(body, sizeof body, "{\"documents\":[");
    for (int i = 0; i < 25; i++) {
        n += (size_t)snprintf(body + n, sizeof body - n,
                              "%s{\"_id\":\"d%02d\",\"n\":%d,\"grp\":%d,\"name\":\"x%d\"}",
                              i ? "," : "", i, i, i % 2, i % 5);
    }
    snprintf(body + n, sizeof body - n, "]}");
    req0("POST", "/collections/f/batch", body, 201);

    /* Walk forward by cursors: every document once, in _id order. */
    char path[1024];
    char cursor[512] = "";
    int seen = 0;
    int pages = 0;
    char page2_prev[512] = "";
    for (;;) {
        if (cursor[0] == '\0') {
            snprintf(path, sizeof path, "/collections/f/find?limit=10");
        } else {
            char *esc = nu_escape(cursor);
            snprintf(path, sizeof path, "/collections/f/find?limit=10&after=%s", esc);
            free(esc);
        }
        json_t *p = req("GET", path, NULL, 200);
        size_t k = page_shape(p);
        cr_assert_eq(jint(p, "total"), 25);
        cr_assert_eq(json_is_true(json_object_get(p, "has_prev")), pages > 0, "has_prev page %d",
                     pages);
        for (size_t i = 0; i < k; i++) {
            char want[16];
            snprintf(want, sizeof want, "d%02d", seen);
            cr_assert_str_eq(doc_id(p, i), want, "page %d doc %zu", pages, i);
            seen++;
        }
        if (pages == 1) {
            snprintf(page2_prev, sizeof page2_prev, "%s", jstr(p, "prev_cursor"));
        }
        pages++;
        bool more = json_is_true(json_object_get(p, "has_next"));
        if (more) {
            snprintf(cursor, sizeof cursor, "%s", jstr(p, "next_cursor"));
        }
        json_decref(p);
        if (!more) {
            break;
        }
        cr_assert_lt(pages, 10, "pagination does not end");
    }
    cr_assert_eq(seen, 25);
    cr_assert_eq(pages, 3);

    /* before=prev_cursor of page 2 gives page 1. */
    char *esc = nu_escape(page2_prev);
    snprintf(path, sizeof path, "/collections/f/find?limit=10&before=%s", esc);
    free(esc);
    json_t *p = req("GET", path, NULL, 200);
    cr_assert_eq(page_shape(p), 10);
    cr_assert_str_eq(doc_id(p, 0), "d00");
    cr_assert_str_eq(doc_id(p, 9), "d09");
    json_decref(p);

    /* go-db equality: a number-looking value matches numbers. */
    p = req("GET", "/collections/f/find?grp=1&limit=100", NULL, 200);
    cr_assert_eq(page_shape(p), 12);
    cr_assert_eq(jint(p, "total"), 12);
    cr_assert_str_eq(doc_id(p, 0), "d01");
    json_decref(p);
    p = req("GET", "/collections/f/find?grp=0&name=x0", NULL, 200);
    cr_assert_eq(page_shape(p), 3); /* d00 d10 d20 */
    json_decref(p);
    p = req("GET", "/collections/f/find?offset=20&limit=10", NULL, 200);
    cr_assert_eq(page_shape(p), 5);
    cr_assert_str_eq(doc_id(p, 0), "d20");
    json_decref(p);

    /* Limits and cursors. */
    req0("GET", "/collections/f/find?limit=1001", NULL, 400);
    req0("GET", "/collections/f/find?limit=1000", NULL, 200);
    req0("GET", "/collections/f/find?after=not-a-cursor", NULL, 400);
    req0("GET", "/collections/f/find?before=AAAA", NULL, 400);
    req0("GET", "/collections/bad$c/find", NULL, 400);

    /* POST /query: filter, sort, projection, limit. */
    p = req("POST", "/collections/f/query",
            "{\"filter\":{\"n\":{\"$gte\":20}},\"sort\":\"-n\",\"fields\":\"n\",\"limit\":3}", 200);
    cr_assert_eq(page_shape(p), 3);
    cr_assert_eq(jint(p, "total"), 5);
    cr_assert(json_is_true(json_object_get(p, "has_next")));
    json_t *first = json_array_get(json_object_get(p, "documents"), 0);
    cr_assert_eq(json_integer_value(json_object_get(first, "n")), 24);
    cr_assert_str_eq(json_string_value(json_object_get(first, "_id")), "d24");
    cr_assert_null(json_object_get(first, "grp"), "projection kept grp");
    cr_assert_eq(json_integer_value(
                     json_object_get(json_array_get(json_object_get(p, "documents"), 2), "n")),
                 22);
    json_decref(p);
    req0("POST", "/collections/f/query", "{\"filter\":{\"n\":{\"$bogus\":1}}}", 400);
    req0("POST", "/collections/f/query", "{\"limit\":5000}", 400);
    req0("POST", "/collections/f/query", "{\"filter\":", 400);
    nu_stop_ok(&srv);
}

Test(http, indexes_collections_transaction)
{
    start(NULL);
    req0("POST", "/collections/people", "{\"_id\":\"p1\",\"city\":\"Oslo\",\"age\":40}", 201);
    req0("POST", "/collections/people", "{\"_id\":\"p2\",\"city\":\"Rome\",\"age\":20}", 201);

    json_t *l = req("GET", "/collections/people/indexes", NULL, 200);
    json_t *arr = list_of(l, "indexes");
    cr_assert(list_has(arr, "_id"), "_id is always indexed");
    cr_assert(!list_has(arr, "city"));
    json_decref(l);
    req0("POST", "/collections/people/indexes/city", NULL, 201);
    req0("POST", "/collections/people/indexes/city", NULL, 409);
    req0("POST", "/collections/people/indexes/_id", NULL, 400);
    l = req("GET", "/collections/people/indexes", NULL, 200);
    cr_assert(list_has(list_of(l, "indexes"), "city"));
    json_decref(l);
    /* The index serves queries (same answers with or without it). */
    json_t *p = req("GET", "/collections/people/find?city=Rome", NULL, 200);
    cr_assert_eq(page_shape(p), 1);
    cr_assert_str_eq(doc_id(p, 0), "p2");
    json_decref(p);
    req0("DELETE", "/collections/people/indexes/city", NULL, 204);
    req0("DELETE", "/collections/people/indexes/city", NULL, 404);

    req0("POST", "/collections/other", "{\"_id\":\"o\"}", 201);
    l = req("GET", "/collections", NULL, 200);
    arr = list_of(l, "collections");
    cr_assert(list_has(arr, "people") && list_has(arr, "other"));
    json_decref(l);

    req0("DELETE", "/collections/people", NULL, 204);
    req0("DELETE", "/collections/people", NULL, 404);
    req0("GET", "/collections/people/documents/p1", NULL, 404);
    l = req("GET", "/collections", NULL, 200);
    cr_assert(!list_has(list_of(l, "collections"), "people"));
    json_decref(l);
    nu_stop_ok(&srv);
}

Test(http, auth_token)
{
    start((const char *const[]){"--auth-token", "s3cret", NULL});
    nu_resp r = NU_GET(&srv, "/collections");
    nu_expect_status(&r, 401, "no token");
    nu_resp_free(&r);
    r = nu_http(&srv, "GET", "/collections", NULL, 0,
                (const char *const[]){"Authorization: Bearer wrong", NULL});
    nu_expect_status(&r, 401, "wrong token");
    nu_resp_free(&r);
    r = nu_http(&srv, "POST", "/collections/a", "{\"_id\":\"x\"}", 11,
                (const char *const[]){"Authorization: Basic s3cret", NULL});
    nu_expect_status(&r, 401, "not a Bearer token");
    nu_resp_free(&r);
    r = nu_http(&srv, "POST", "/collections/a", "{\"_id\":\"x\"}", 11,
                (const char *const[]){"Authorization: Bearer s3cret", NULL});
    nu_expect_status(&r, 201, "right token");
    nu_resp_free(&r);
    r = nu_http(&srv, "GET", "/collections/a/documents/x", NULL, 0,
                (const char *const[]){"Authorization: Bearer s3cret", NULL});
    nu_expect_status(&r, 200, "right token get");
    nu_resp_free(&r);
    /* /health needs none. */
    r = NU_GET(&srv, "/health");
    nu_expect_status(&r, 200, "health without token");
    nu_resp_free(&r);
    nu_stop_ok(&srv);
}

Test(http, body_limit)
{
    start((const char *const[]){"--max-body", "1024", NULL});
    size_t big = 8192;
    char *body = malloc(big + 1);
    cr_assert_not_null(body);
    memset(body, 'a', big);
    memcpy(body, "{\"_id\":\"big\",\"pad\":\"", 20);
    memcpy(body + big - 2, "\"}", 2);
    body[big] = '\0';
    nu_resp r = nu_http(&srv, "POST", "/collections/c", body, big, NULL);
    cr_assert_eq(r.curl_code, 0, "413 body: curl %d", r.curl_code);
    cr_assert_eq(r.status, 413, "body over --max-body: status %ld %s", r.status, r.body);
    nu_resp_free(&r);
    free(body);
    /* Others (and later requests) are fine; a body under the limit is accepted. */
    json_t *d = req("POST", "/collections/c", "{\"_id\":\"small\"}", 201);
    json_decref(d);
    req0("GET", "/collections/c/documents/big", NULL, 404);
    req0("GET", "/collections/c/documents/small", NULL, 200);
    nu_stop_ok(&srv);
}

Test(http, stats_and_metrics)
{
    start(NULL);
    req0("POST", "/collections/m", "{\"_id\":\"a\"}", 201);
    req0("GET", "/collections/m/documents/a", NULL, 200);
    req0("GET", "/collections/m/documents/zz", NULL, 404);
    req0("GET", "/collections/m/find", NULL, 200);

    json_t *s = req("GET", "/stats", NULL, 200);
    nu_jget(s, "live_keys", JSON_INTEGER, "stats");
    nu_jget(s, "last_sequence", JSON_INTEGER, "stats");
    nu_jget(s, "writes", JSON_INTEGER, "stats");
    cr_assert_gt(jint(s, "last_sequence"), 0);
    json_decref(s);

    nu_resp r = NU_GET(&srv, "/metrics");
    nu_expect_status(&r, 200, "metrics");
    char ct[128];
    cr_assert_not_null(nu_header(&r, "Content-Type", ct, sizeof ct));
    cr_assert(strncmp(ct, "text/plain", 10) == 0, "metrics content type %s", ct);
    const char *want[] = {
        "shale_http_requests_total{route=\"POST /collections/{c}\"} 1",
        "shale_http_requests_total{route=\"GET /collections/{c}/documents/{id}\"} 2",
        "shale_http_requests_total{route=\"GET /collections/{c}/find\"} 1",
        "shale_http_requests_total{route=\"GET /stats\"} 1",
        "# TYPE shale_http_requests_total counter",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cr_assert_not_null(strstr(r.body, want[i]), "metrics lack \"%s\":\n%.3000s", want[i],
                           r.body);
    }
    nu_resp_free(&r);
    nu_stop_ok(&srv);
}

/* POST /transaction on one collection: one operation of each kind, batches of inserts and of
 * updates; all or nothing. */
Test(http, transaction_single_collection)
{
    start(NULL);
    req0("POST", "/collections/people", "{\"_id\":\"p1\",\"age\":40}", 201);
    req0("POST", "/collections/people", "{\"_id\":\"p2\",\"city\":\"Rome\"}", 201);
    json_t *t = req("POST", "/transaction",
                    "{\"operations\":["
                    "{\"op\":\"insert\",\"collection\":\"people\",\"document\":{\"_id\":\"p3\"}},"
                    "{\"op\":\"insert\",\"collection\":\"people\",\"document\":{\"_id\":\"p4\"}}]}",
                    200);
    cr_assert(json_is_true(nu_jget(t, "success", JSON_TRUE, "transaction")));
    cr_assert_eq(json_array_size(nu_jget(t, "results", JSON_ARRAY, "transaction")), 2);
    json_decref(t);
    req0("GET", "/collections/people/documents/p4", NULL, 200);
    t = req("POST", "/transaction",
            "{\"operations\":["
            "{\"op\":\"update\",\"collection\":\"people\",\"id\":\"p1\",\"document\":{\"age\":41}},"
            "{\"op\":\"update\",\"collection\":\"people\",\"id\":\"p3\",\"document\":{\"x\":1}}]}",
            200);
    cr_assert_eq(json_array_size(nu_jget(t, "results", JSON_ARRAY, "transaction")), 2);
    json_decref(t);
    json_t *d = req("GET", "/collections/people/documents/p1", NULL, 200);
    cr_assert_eq(jint(d, "age"), 41);
    json_decref(d);
    t = req("POST", "/transaction",
            "{\"operations\":[{\"op\":\"replace\",\"collection\":\"people\",\"id\":\"p2\","
            "\"document\":{\"city\":\"Bari\"}}]}",
            200);
    json_decref(t);
    d = req("GET", "/collections/people/documents/p2", NULL, 200);
    cr_assert_str_eq(jstr(d, "city"), "Bari");
    json_decref(d);
    t = req("POST", "/transaction",
            "{\"operations\":[{\"op\":\"delete\",\"collection\":\"people\",\"id\":\"p2\"}]}", 200);
    json_decref(t);
    req0("GET", "/collections/people/documents/p2", NULL, 404);

    /* All or nothing: a duplicate among inserts, a missing document among updates. */
    nu_resp r =
        NU_SEND(&srv, "POST", "/transaction",
                "{\"operations\":["
                "{\"op\":\"insert\",\"collection\":\"people\",\"document\":{\"_id\":\"p5\"}},"
                "{\"op\":\"insert\",\"collection\":\"people\",\"document\":{\"_id\":\"p1\"}}]}");
    nu_expect_status(&r, 409, "transaction with a duplicate insert");
    nu_resp_free(&r);
    req0("GET", "/collections/people/documents/p5", NULL, 404);
    r = NU_SEND(
        &srv, "POST", "/transaction",
        "{\"operations\":["
        "{\"op\":\"update\",\"collection\":\"people\",\"id\":\"p1\",\"document\":{\"age\":99}},"
        "{\"op\":\"update\",\"collection\":\"people\",\"id\":\"missing\",\"document\":{}}]}");
    nu_expect_status(&r, 404, "transaction updating a missing document");
    nu_resp_free(&r);
    d = req("GET", "/collections/people/documents/p1", NULL, 200);
    cr_assert_eq(jint(d, "age"), 41, "a failed transaction changed p1");
    json_decref(d);
    req0("POST", "/transaction", "{\"operations\":[{\"op\":\"frobnicate\"}]}", 400);
    req0("POST", "/transaction", "{", 400);
    req0("POST", "/transaction", "{\"operations\":[]}", 400);
    nu_stop_ok(&srv);
}

/* The contract of http_api.h: any mix of operations, over several collections, applied
 * atomically. */
Test(http, transaction_mixed_operations)
{
    start(NULL);
    req0("POST", "/collections/people", "{\"_id\":\"p1\",\"age\":40}", 201);
    req0("POST", "/collections/people", "{\"_id\":\"p2\",\"city\":\"Rome\"}", 201);
    req0("POST", "/collections/other", "{\"_id\":\"o\"}", 201);
    /* Transactions: applied atomically. */
    json_t *t = req("POST", "/transaction",
                    "{\"operations\":["
                    "{\"op\":\"insert\",\"collection\":\"people\",\"document\":{\"_id\":\"p3\","
                    "\"age\":1}},"
                    "{\"op\":\"update\",\"collection\":\"people\",\"id\":\"p1\",\"document\":"
                    "{\"age\":41}},"
                    "{\"op\":\"replace\",\"collection\":\"people\",\"id\":\"p2\",\"document\":"
                    "{\"city\":\"Bari\"}},"
                    "{\"op\":\"delete\",\"collection\":\"other\",\"id\":\"o\"}]}",
                    200);
    cr_assert(json_is_true(nu_jget(t, "success", JSON_TRUE, "transaction")));
    cr_assert_eq(json_array_size(nu_jget(t, "results", JSON_ARRAY, "transaction")), 4);
    json_decref(t);
    json_t *d = req("GET", "/collections/people/documents/p1", NULL, 200);
    cr_assert_eq(jint(d, "age"), 41);
    json_decref(d);
    d = req("GET", "/collections/people/documents/p2", NULL, 200);
    cr_assert_str_eq(jstr(d, "city"), "Bari");
    cr_assert_null(json_object_get(d, "age"));
    json_decref(d);
    req0("GET", "/collections/people/documents/p3", NULL, 200);
    req0("GET", "/collections/other/documents/o", NULL, 404);

    /* All or nothing: the insert is not applied when a later op fails. */
    nu_resp r = NU_SEND(&srv, "POST", "/transaction",
                        "{\"operations\":["
                        "{\"op\":\"insert\",\"collection\":\"people\",\"document\":{\"_id\":"
                        "\"p4\"}},"
                        "{\"op\":\"update\",\"collection\":\"people\",\"id\":\"missing\","
                        "\"document\":{\"a\":1}}]}");
    cr_assert(r.status == 404 || r.status == 409 || r.status == 400,
              "failed transaction: status %ld %s", r.status, r.body);
    nu_expect_status(&r, r.status, "failed transaction");
    nu_resp_free(&r);
    req0("GET", "/collections/people/documents/p4", NULL, 404);
    req0("POST", "/transaction", "{\"operations\":[{\"op\":\"frobnicate\"}]}", 400);
    req0("POST", "/transaction", "{", 400);

    nu_stop_ok(&srv);
}
