/*
 * http_api tests: every route, status and response shape, driven through http_api_handle on a
 * temporary database (no sockets). Responses are parsed with jansson; streams are drained chunk
 * by chunk.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/http_api.h"
#include "testutil.h"

/* ---- harness ---- */

typedef struct res {
    int status;
    char *body; /* NUL-terminated copy (a stream's chunks concatenated) */
    size_t len;
    json_t *json; /* parsed when the body is JSON and not empty */
    const char *type;
    const char *route;
    char **chunks; /* a stream's non-empty chunks */
    size_t nchunks;
    bool streamed;
} res;

static void res_free(res *r)
{
    free(r->body);
    json_decref(r->json);
    for (size_t i = 0; i < r->nchunks; i++) {
        free(r->chunks[i]);
    }
    free(r->chunks);
    memset(r, 0, sizeof *r);
}

typedef struct call_opts {
    const char *query;
    const char *body;
    size_t body_len; /* 0: strlen(body) */
    const char *auth;
    const char *accept;
} call_opts;

static res call_with(http_api *api, http_method m, const char *path, const call_opts *o)
{
    http_request req = {.method = m, .path = path};
    if (o != NULL) {
        req.query = o->query;
        req.authorization = o->auth;
        req.accept = o->accept;
        if (o->body != NULL) {
            req.body = (shale_slice){o->body, o->body_len ? o->body_len : strlen(o->body)};
        }
    }
    http_response resp;
    memset(&resp, 0, sizeof resp);
    http_api_handle(api, &req, &resp);
    res r = {.status = resp.status, .type = resp.content_type, .route = resp.route};
    cr_assert_not_null(resp.route, "%s: no route label", path);
    cr_assert_not_null(resp.content_type, "%s: no content type", path);
    shale_buf all = {0};
    if (resp.stream != NULL) {
        r.streamed = true;
        size_t cap = 16;
        r.chunks = malloc(cap * sizeof *r.chunks);
        bool done = false;
        shale_buf chunk = {0};
        while (!done) {
            shale_error err = {0};
            chunk.len = 0;
            shale_code rc = http_stream_next(resp.stream, &chunk, &done, &err);
            cr_assert_eq(rc, SHALE_OK, "stream: %s", err.msg);
            if (chunk.len == 0) {
                continue;
            }
            if (r.nchunks == cap) {
                cap *= 2;
                r.chunks = realloc(r.chunks, cap * sizeof *r.chunks);
            }
            r.chunks[r.nchunks] = strndup(chunk.data, chunk.len);
            r.nchunks++;
            size_t old = all.len;
            all.data = realloc(all.data, old + chunk.len);
            memcpy((char *)all.data + old, chunk.data, chunk.len);
            all.len += chunk.len;
        }
        shale_buf_free(&chunk);
    } else {
        all.data = malloc(resp.body.len + 1);
        memcpy(all.data, resp.body.data != NULL ? resp.body.data : "", resp.body.len);
        all.len = resp.body.len;
    }
    r.body = strndup(all.data != NULL ? all.data : "", all.len);
    r.len = all.len;
    free(all.data);
    http_response_free(&resp);
    if (r.len > 0 && strncmp(r.type, "application/json", 16) == 0) {
        json_error_t je;
        r.json = json_loadb(r.body, r.len, JSON_REJECT_DUPLICATES, &je);
        cr_assert_not_null(r.json, "%s: invalid JSON (%s): %.300s", path, je.text, r.body);
    }
    return r;
}

static res call(http_api *api, http_method m, const char *path, const char *body)
{
    call_opts o = {.body = body};
    return call_with(api, m, path, &o);
}

static res get_q(http_api *api, const char *path, const char *query)
{
    call_opts o = {.query = query};
    return call_with(api, HTTP_GET, path, &o);
}

/* Asserts the error shape {"error":kind,"message":non-empty,"code":status} and the status. */
static void expect_error(const res *r, int status, const char *kind, const char *ctx)
{
    cr_assert_eq(r->status, status, "%s: status %d, want %d: %s", ctx, r->status, status, r->body);
    cr_assert_not_null(r->json, "%s: no JSON body", ctx);
    cr_assert_str_eq(json_string_value(json_object_get(r->json, "error")), kind, "%s: %s", ctx,
                     r->body);
    const char *msg = json_string_value(json_object_get(r->json, "message"));
    cr_assert(msg != NULL && msg[0] != '\0', "%s: empty message: %s", ctx, r->body);
    cr_assert_eq(json_integer_value(json_object_get(r->json, "code")), status, "%s: %s", ctx,
                 r->body);
    cr_assert_str_eq(r->type, "application/json");
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static json_int_t jint(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "%s is not an integer", key);
    return json_integer_value(v);
}

static tu_fx fx;
static http_api *api;

static void facts(void *ctx, shale_buf *out)
{
    (void)ctx;
    static const char f[] = ",\"threads\":2,\"durability\":\"os\"";
    size_t n = sizeof f - 1;
    if (out->cap < out->len + n) {
        out->data = realloc(out->data, out->len + n);
        out->cap = out->len + n;
    }
    memcpy((char *)out->data + out->len, f, n);
    out->len += n;
}

static void metrics(void *ctx, shale_buf *out)
{
    (void)ctx;
    static const char m[] = "# TYPE shale_requests_total counter\nshale_requests_total 3\n";
    out->data = realloc(out->data, out->len + sizeof m);
    out->cap = out->len + sizeof m;
    memcpy((char *)out->data + out->len, m, sizeof m - 1);
    out->len += sizeof m - 1;
}

static http_api *make_api(shale_db *db, const char *token, size_t max_body, bool callbacks)
{
    http_api_opts o = {.db = db, .auth_token = token, .max_body = max_body};
    if (callbacks) {
        o.health_facts = facts;
        o.metrics_text = metrics;
    }
    http_api *a = NULL;
    shale_error err = {0};
    cr_assert_eq(http_api_new(&o, &a, &err), SHALE_OK, "%s", err.msg);
    return a;
}

static void setup(void)
{
    tu_fx_begin(&fx, "http", NULL);
    api = make_api(fx.db, NULL, 1 << 20, true);
}

static void teardown(void)
{
    http_api_free(api);
    api = NULL;
    tu_fx_end(&fx);
}

TestSuite(http, .init = setup, .fini = teardown);

/* Inserts docs {"_id":"d0000","n":i,"grp":"g<i%3>","tag":"<i%2?odd:even>"} i in [from, to) by
 * batches of up to 1000. */
static void fill(http_api *a, const char *coll, int from, int to)
{
    char path[128];
    snprintf(path, sizeof path, "/collections/%s/batch", coll);
    for (int start = from; start < to; start += 1000) {
        int end = start + 1000 < to ? start + 1000 : to;
        json_t *docs = json_array();
        for (int i = start; i < end; i++) {
            char id[16];
            snprintf(id, sizeof id, "d%05d", i);
            char grp[8];
            snprintf(grp, sizeof grp, "g%d", i % 3);
            json_array_append_new(docs, json_pack("{s:s,s:i,s:s,s:s}", "_id", id, "n", i, "grp",
                                                  grp, "tag", i % 2 ? "odd" : "even"));
        }
        json_t *body = json_pack("{s:o}", "documents", docs);
        char *text = json_dumps(body, JSON_COMPACT);
        res r = call(a, HTTP_POST, path, text);
        cr_assert_eq(r.status, 201, "fill: %.300s", r.body);
        cr_assert_eq(jint(r.json, "inserted_count"), end - start);
        res_free(&r);
        free(text);
        json_decref(body);
    }
}

/* ---- health, stats, metrics ---- */

Test(http, health)
{
    res r = call(api, HTTP_GET, "/health", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.type, "application/json");
    cr_assert_str_eq(r.route, "GET /health");
    cr_assert_str_eq(jstr(r.json, "status"), "healthy");
    cr_assert_str_eq(jstr(r.json, "message"), "Shale is running");
    cr_assert_eq(jint(r.json, "threads"), 2);
    cr_assert_str_eq(jstr(r.json, "durability"), "os");
    cr_assert_str_eq(jstr(r.json, "version"), shale_version());
    res_free(&r);

    /* Without a facts callback, and HEAD served as GET. */
    http_api *plain = make_api(fx.db, NULL, 0, false);
    r = call(plain, HTTP_HEAD, "/health", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(json_object_size(r.json), 3, "%s", r.body);
    res_free(&r);
    http_api_free(plain);
}

Test(http, stats)
{
    fill(api, "s", 0, 10);
    res r = call(api, HTTP_GET, "/stats", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.route, "GET /stats");
    static const char *const fields[] = {"live_keys",
                                         "memory_bytes",
                                         "log_bytes",
                                         "log_segments",
                                         "last_sequence",
                                         "writes",
                                         "reads",
                                         "batches",
                                         "group_commits",
                                         "syncs",
                                         "expired_removed",
                                         "recovered_records",
                                         "salvaged_records",
                                         "salvaged_bytes",
                                         "truncated_bytes",
                                         "levels",
                                         "immutable_memtables",
                                         "flushes",
                                         "compactions",
                                         "flush_bytes",
                                         "compaction_bytes_read",
                                         "compaction_bytes_written",
                                         "user_bytes_written",
                                         "pending_compaction_bytes",
                                         "stall_us",
                                         "slowdown_us",
                                         "stalls",
                                         "estimated_live_keys",
                                         "open_tables",
                                         "block_cache_bytes",
                                         "block_cache_capacity",
                                         "block_cache_hits",
                                         "block_cache_misses",
                                         "memtable_budget_bytes",
                                         "table_bytes_on_disk",
                                         "snapshots",
                                         "txns_open",
                                         "txn_commits",
                                         "txn_conflicts",
                                         "txn_rollbacks",
                                         "flush_failures",
                                         "compaction_failures"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        cr_assert(json_is_integer(json_object_get(r.json, fields[i])), "%s missing", fields[i]);
    }
    cr_assert(json_is_number(json_object_get(r.json, "write_amplification")));
    cr_assert(json_is_number(json_object_get(r.json, "block_cache_hit_rate")));
    cr_assert_eq(json_array_size(json_object_get(r.json, "level_tables")), 8);
    cr_assert_eq(json_array_size(json_object_get(r.json, "level_bytes")), 8);
    cr_assert(json_is_false(json_object_get(r.json, "writes_stopped")));
    cr_assert_str_eq(jstr(r.json, "stop_reason"), "");
    cr_assert(json_is_false(json_object_get(r.json, "background_error")));
    cr_assert(json_is_false(json_object_get(r.json, "compactions_halted")));
    cr_assert_str_eq(jstr(r.json, "background_error_msg"), "");
    cr_assert_gt(jint(r.json, "last_sequence"), 0);
    cr_assert_gt(jint(r.json, "writes"), 0);
    cr_assert_eq(json_object_size(r.json), sizeof fields / sizeof fields[0] + 9);
    res_free(&r);
}

Test(http, metrics)
{
    res r = call(api, HTTP_GET, "/metrics", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.type, "text/plain; version=0.0.4");
    cr_assert_str_eq(r.route, "GET /metrics");
    cr_assert(strstr(r.body, "shale_requests_total 3\n") != NULL);
    res_free(&r);

    http_api *plain = make_api(fx.db, NULL, 0, false);
    r = call(plain, HTTP_GET, "/metrics", NULL);
    expect_error(&r, 404, "not_found", "metrics off");
    res_free(&r);
    http_api_free(plain);
}

/* ---- single documents ---- */

Test(http, insert_get)
{
    res r = call(api, HTTP_POST, "/collections/users", "{\"name\":\"Ann\",\"age\":30}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(r.route, "POST /collections/{c}");
    const char *id = jstr(r.json, "_id");
    cr_assert(id != NULL && strlen(id) == 24, "%s", r.body);
    cr_assert_str_eq(jstr(r.json, "name"), "Ann");
    cr_assert_eq(jint(r.json, "age"), 30);
    char path[128];
    snprintf(path, sizeof path, "/collections/users/documents/%s", id);
    json_t *stored = json_incref(r.json);
    res_free(&r);

    r = call(api, HTTP_GET, path, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.route, "GET /collections/{c}/documents/{id}");
    cr_assert(json_equal(r.json, stored), "%s", r.body);
    res_free(&r);
    json_decref(stored);

    /* An explicit _id, then the same again: 409. */
    r = call(api, HTTP_POST, "/collections/users", "{\"_id\":\"bob\",\"age\":41}");
    cr_assert_eq(r.status, 201);
    cr_assert_str_eq(jstr(r.json, "_id"), "bob");
    res_free(&r);
    r = call(api, HTTP_POST, "/collections/users", "{\"_id\":\"bob\",\"age\":42}");
    expect_error(&r, 409, "conflict", "duplicate insert");
    res_free(&r);

    /* Invalid JSON, a non-object, a non-string _id, an empty body: 400. */
    static const char *const bad[] = {"{\"a\":", "[1,2]", "{\"_id\":5}", "", "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        call_opts o = {.body = bad[i], .body_len = strlen(bad[i])};
        r = call_with(api, HTTP_POST, "/collections/users", &o);
        expect_error(&r, 400, "bad_request", bad[i]);
        res_free(&r);
    }

    /* Bad collection names: 400. */
    static const char *const names[] = {
        "/collections/bad%20name", "/collections/a.b", "/collections/a%00b",
        ("/collections/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaa")};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        r = call(api, HTTP_POST, names[i], "{\"a\":1}");
        expect_error(&r, 400, "bad_request", names[i]);
        res_free(&r);
    }
    r = call(api, HTTP_GET, "/collections/bad%21/documents/x", NULL);
    expect_error(&r, 400, "bad_request", "get with a bad name");
    res_free(&r);

    /* Missing document, missing collection: 404. */
    r = call(api, HTTP_GET, "/collections/users/documents/nobody", NULL);
    expect_error(&r, 404, "not_found", "missing document");
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/nothere/documents/bob", NULL);
    expect_error(&r, 404, "not_found", "missing collection");
    res_free(&r);
}

Test(http, update_replace_delete)
{
    res r = call(api, HTTP_POST, "/collections/c", "{\"_id\":\"x\",\"a\":1,\"b\":2}");
    cr_assert_eq(r.status, 201);
    res_free(&r);

    r = call(api, HTTP_PATCH, "/collections/c/documents/x", "{\"b\":3,\"c\":4}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.route, "PATCH /collections/{c}/documents/{id}");
    json_t *want = json_pack("{s:s,s:i,s:i,s:i}", "_id", "x", "a", 1, "b", 3, "c", 4);
    cr_assert(json_equal(r.json, want), "%s", r.body);
    json_decref(want);
    res_free(&r);

    r = call(api, HTTP_PATCH, "/collections/c/documents/x", "{\"_id\":\"y\"}");
    expect_error(&r, 400, "bad_request", "patch changing _id");
    res_free(&r);
    r = call(api, HTTP_PATCH, "/collections/c/documents/x", "not json");
    expect_error(&r, 400, "bad_request", "patch invalid JSON");
    res_free(&r);

    r = call(api, HTTP_PUT, "/collections/c/documents/x", "{\"z\":true}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.route, "PUT /collections/{c}/documents/{id}");
    want = json_pack("{s:s,s:b}", "_id", "x", "z", 1);
    cr_assert(json_equal(r.json, want), "%s", r.body);
    json_decref(want);
    res_free(&r);

    r = call(api, HTTP_DELETE, "/collections/c/documents/x", NULL);
    cr_assert_eq(r.status, 204);
    cr_assert_eq(r.len, 0);
    cr_assert_str_eq(r.route, "DELETE /collections/{c}/documents/{id}");
    res_free(&r);

    r = call(api, HTTP_HEAD, "/collections/c/documents/x", NULL);
    expect_error(&r, 404, "not_found", "head deleted");
    cr_assert_str_eq(r.route, "GET /collections/{c}/documents/{id}");
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/c/documents/x", NULL);
    expect_error(&r, 404, "not_found", "get deleted");
    res_free(&r);
    r = call(api, HTTP_DELETE, "/collections/c/documents/x", NULL);
    expect_error(&r, 404, "not_found", "delete again");
    res_free(&r);
    r = call(api, HTTP_PATCH, "/collections/c/documents/x", "{\"a\":1}");
    expect_error(&r, 404, "not_found", "patch missing");
    res_free(&r);
    r = call(api, HTTP_PUT, "/collections/c/documents/x", "{\"a\":1}");
    expect_error(&r, 404, "not_found", "put missing");
    res_free(&r);
}

Test(http, encoded_ids)
{
    /* Ids with spaces, slashes, percent signs, '+' and UTF-8, addressed percent-encoded. */
    static const struct {
        const char *json_id, *path_id;
    } cases[] = {
        {"a b/c", "a%20b%2Fc"},
        {"50%+x", "50%25+x"},
        {"caf\\u00e9?#", "caf%C3%A9%3F%23"},
        {"/", "%2f"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[128], path[128];
        snprintf(body, sizeof body, "{\"_id\":\"%s\",\"i\":%zu}", cases[i].json_id, i);
        res r = call(api, HTTP_POST, "/collections/ids", body);
        cr_assert_eq(r.status, 201, "%s", r.body);
        json_t *stored = json_incref(r.json);
        res_free(&r);
        snprintf(path, sizeof path, "/collections/ids/documents/%s", cases[i].path_id);
        r = call(api, HTTP_GET, path, NULL);
        cr_assert_eq(r.status, 200, "%s: %s", path, r.body);
        cr_assert(json_equal(r.json, stored), "%s: %s", path, r.body);
        cr_assert_eq(jint(r.json, "i"), (json_int_t)i);
        res_free(&r);
        json_decref(stored);
    }
    res r = call(api, HTTP_DELETE, "/collections/ids/documents/a%20b%2Fc", NULL);
    cr_assert_eq(r.status, 204);
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/ids/documents/a%20b%2Fc", NULL);
    cr_assert_eq(r.status, 404);
    res_free(&r);
    /* A literal '+' in a path is a plus, and a bad escape is 400. */
    r = call(api, HTTP_GET, "/collections/ids/documents/50%25%2Bx", NULL);
    cr_assert_eq(r.status, 200);
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/ids/documents/50%zz", NULL);
    expect_error(&r, 400, "bad_request", "bad escape");
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/ids/documents/50%2", NULL);
    expect_error(&r, 400, "bad_request", "short escape");
    res_free(&r);
    /* The collection's name may be encoded too. */
    r = call(api, HTTP_GET, "/collections/%69ds/documents/%2F", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    res_free(&r);
}

/* ---- batches ---- */

Test(http, batch_insert)
{
    res r = call(api, HTTP_POST, "/collections/b/batch",
                 "{\"documents\":[{\"_id\":\"1\",\"v\":1},{\"v\":2},{\"_id\":\"3\"}]}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(r.route, "POST /collections/{c}/batch");
    cr_assert(json_is_true(json_object_get(r.json, "success")));
    cr_assert_str_eq(jstr(r.json, "message"), "Successfully inserted 3 documents");
    cr_assert_eq(jint(r.json, "inserted_count"), 3);
    cr_assert_str_eq(jstr(r.json, "collection"), "b");
    json_t *docs = json_object_get(r.json, "documents");
    cr_assert_eq(json_array_size(docs), 3);
    cr_assert_str_eq(jstr(json_array_get(docs, 0), "_id"), "1");
    cr_assert_eq(strlen(jstr(json_array_get(docs, 1), "_id")), 24);
    cr_assert_eq(jint(json_array_get(docs, 1), "v"), 2);
    cr_assert_eq(json_object_size(r.json), 5);
    res_free(&r);

    /* All or nothing: a duplicate of an existing id fails the whole batch. */
    r = call(api, HTTP_POST, "/collections/b/batch",
             "{\"documents\":[{\"_id\":\"new\"},{\"_id\":\"1\"}]}");
    expect_error(&r, 409, "conflict", "batch duplicate");
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/b/documents/new", NULL);
    cr_assert_eq(r.status, 404);
    res_free(&r);

    /* A bad element: 400 naming it. */
    r = call(api, HTTP_POST, "/collections/b/batch", "{\"documents\":[{\"a\":1},7]}");
    expect_error(&r, 400, "bad_request", "batch element not an object");
    cr_assert(strstr(jstr(r.json, "message"), "1") != NULL, "%s", r.body);
    res_free(&r);

    static const char *const bad[] = {"{\"documents\":[]}", "{\"docs\":[{}]}", "[]", "{",
                                      "{\"documents\":{}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = call(api, HTTP_POST, "/collections/b/batch", bad[i]);
        expect_error(&r, 400, "bad_request", bad[i]);
        res_free(&r);
    }

    /* 1001 documents: 400. */
    shale_buf big = {0};
    json_t *arr = json_array();
    for (int i = 0; i < 1001; i++) {
        json_array_append_new(arr, json_object());
    }
    json_t *body = json_pack("{s:o}", "documents", arr);
    char *text = json_dumps(body, JSON_COMPACT);
    r = call(api, HTTP_POST, "/collections/b/batch", text);
    expect_error(&r, 400, "bad_request", "1001 documents");
    res_free(&r);
    free(text);
    json_decref(body);
    shale_buf_free(&big);
}

Test(http, batch_update)
{
    fill(api, "u", 0, 5);
    res r = call(api, HTTP_PATCH, "/collections/u/batch",
                 "{\"operations\":[{\"id\":\"d00001\",\"updates\":{\"n\":100,\"x\":true}},"
                 "{\"id\":\"d00003\",\"updates\":{\"tag\":\"changed\"}}]}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.route, "PATCH /collections/{c}/batch");
    cr_assert(json_is_true(json_object_get(r.json, "success")));
    cr_assert_str_eq(jstr(r.json, "message"), "Successfully updated 2 documents");
    cr_assert_eq(jint(r.json, "updated_count"), 2);
    cr_assert_eq(jint(r.json, "failed_count"), 0);
    cr_assert_str_eq(jstr(r.json, "collection"), "u");
    json_t *docs = json_object_get(r.json, "documents");
    cr_assert_eq(json_array_size(docs), 2);
    cr_assert_eq(jint(json_array_get(docs, 0), "n"), 100);
    cr_assert_str_eq(jstr(json_array_get(docs, 1), "tag"), "changed");
    cr_assert_str_eq(jstr(json_array_get(docs, 1), "grp"), "g0");
    res_free(&r);

    /* One missing id: 404, nothing updated, counters say so. */
    r = call(api, HTTP_PATCH, "/collections/u/batch",
             "{\"operations\":[{\"id\":\"d00002\",\"updates\":{\"n\":-1}},"
             "{\"id\":\"nope\",\"updates\":{\"n\":-1}}]}");
    expect_error(&r, 404, "not_found", "batch update missing id");
    cr_assert(json_is_false(json_object_get(r.json, "success")));
    cr_assert_eq(jint(r.json, "updated_count"), 0);
    cr_assert_eq(jint(r.json, "failed_count"), 2);
    cr_assert_str_eq(jstr(r.json, "collection"), "u");
    cr_assert(strstr(jstr(r.json, "message"), "all or nothing") != NULL, "%s", r.body);
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/u/documents/d00002", NULL);
    cr_assert_eq(jint(r.json, "n"), 2);
    res_free(&r);

    static const char *const bad[] = {
        "{\"operations\":[]}",
        "{\"operations\":[{\"id\":5,\"updates\":{}}]}",
        "{\"operations\":[{\"id\":\"d00001\"}]}",
        "{\"operations\":[{\"id\":\"d00001\",\"updates\":3}]}",
        "{\"operations\":[{\"id\":\"d00001\",\"updates\":{\"_id\":\"zz\"}}]}",
        "nope"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = call(api, HTTP_PATCH, "/collections/u/batch", bad[i]);
        expect_error(&r, 400, "bad_request", bad[i]);
        res_free(&r);
    }
}

/* ---- find ---- */

Test(http, find_filters)
{
    fill(api, "f", 0, 30);
    res r =
        call(api, HTTP_POST, "/collections/f", "{\"_id\":\"s\",\"n\":\"7\",\"name\":\"a b+c\"}");
    cr_assert_eq(r.status, 201);
    res_free(&r);

    /* No filter: everything (31), default page. */
    r = get_q(api, "/collections/f/find", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.route, "GET /collections/{c}/find");
    cr_assert_eq(json_array_size(json_object_get(r.json, "documents")), 31);
    cr_assert_eq(jint(r.json, "total"), 31);
    cr_assert(json_is_false(json_object_get(r.json, "has_next")));
    cr_assert(json_is_false(json_object_get(r.json, "has_prev")));
    cr_assert(json_object_get(r.json, "next_cursor") != NULL);
    cr_assert(json_object_get(r.json, "prev_cursor") != NULL);
    res_free(&r);

    /* go-db's model: "7" matches the number 7 and the string "7". */
    r = get_q(api, "/collections/f/find", "n=7");
    cr_assert_eq(jint(r.json, "total"), 2, "%s", r.body);
    res_free(&r);
    /* Two equalities AND; repeated parameters: the first wins. */
    r = get_q(api, "/collections/f/find", "grp=g1&tag=odd&grp=g0");
    json_t *docs = json_object_get(r.json, "documents");
    cr_assert_eq(jint(r.json, "total"), 5, "%s", r.body); /* 1 7 13 19 25 */
    for (size_t i = 0; i < json_array_size(docs); i++) {
        cr_assert_eq(jint(json_array_get(docs, i), "n") % 6, 1);
    }
    res_free(&r);
    /* '+' and %20 are spaces in a query, %2B a plus. */
    r = get_q(api, "/collections/f/find", "name=a+b%2Bc");
    cr_assert_eq(jint(r.json, "total"), 1, "%s", r.body);
    res_free(&r);
    r = get_q(api, "/collections/f/find", "name=a%20b%2Bc&limit=&offset=");
    cr_assert_eq(jint(r.json, "total"), 1, "%s", r.body);
    res_free(&r);
    r = get_q(api, "/collections/f/find", "name=a+b+c");
    cr_assert_eq(jint(r.json, "total"), 0, "%s", r.body);
    res_free(&r);

    /* limit 0 is the default 50; 1000 is fine; 1001, negative, text: 400. */
    r = get_q(api, "/collections/f/find", "limit=0");
    cr_assert_eq(r.status, 200);
    res_free(&r);
    r = get_q(api, "/collections/f/find", "limit=1000&offset=5");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(json_array_size(json_object_get(r.json, "documents")), 26);
    res_free(&r);
    static const char *const bad[] = {
        "limit=1001", "limit=-1",      "limit=abc",  "limit=99999999999999999999",
        "offset=x",   "offset=100001", "after=zzzz", "before=00",
        "=5",         "a%zz=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = get_q(api, "/collections/f/find", bad[i]);
        expect_error(&r, 400, "bad_request", bad[i]);
        res_free(&r);
    }

    /* A missing collection is 404; an empty existing one an empty page. */
    r = get_q(api, "/collections/nothere/find", NULL);
    expect_error(&r, 404, "not_found", "find on a missing collection");
    res_free(&r);
    r = call(api, HTTP_POST, "/collections/empty/indexes/x", NULL);
    cr_assert_eq(r.status, 201);
    res_free(&r);
    r = get_q(api, "/collections/empty/find", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(jint(r.json, "total"), 0);
    res_free(&r);
    r = get_q(api, "/collections/bad.name/find", NULL);
    expect_error(&r, 400, "bad_request", "find with a bad name");
    res_free(&r);
}

Test(http, find_pagination)
{
    fill(api, "p", 0, 120);
    char query[600];
    int seen = 0;
    char *cursor = NULL;
    int sizes[] = {50, 50, 20};
    char *prev_of_last = NULL;
    for (int page = 0; page < 3; page++) {
        if (cursor != NULL) {
            snprintf(query, sizeof query, "limit=50&after=%s", cursor);
        } else {
            snprintf(query, sizeof query, "limit=50");
        }
        res r = get_q(api, "/collections/p/find", query);
        cr_assert_eq(r.status, 200, "%s", r.body);
        json_t *docs = json_object_get(r.json, "documents");
        cr_assert_eq(json_array_size(docs), (size_t)sizes[page]);
        cr_assert_eq(jint(r.json, "total"), 120);
        for (size_t i = 0; i < json_array_size(docs); i++) {
            char want[16];
            snprintf(want, sizeof want, "d%05d", seen++);
            cr_assert_str_eq(jstr(json_array_get(docs, i), "_id"), want);
        }
        cr_assert_eq(json_is_true(json_object_get(r.json, "has_next")), page < 2);
        cr_assert_eq(json_is_true(json_object_get(r.json, "has_prev")), page > 0);
        free(cursor);
        cursor = NULL;
        if (page < 2) {
            cursor = strdup(jstr(r.json, "next_cursor"));
        } else {
            cr_assert(json_is_null(json_object_get(r.json, "next_cursor")));
            prev_of_last = strdup(jstr(r.json, "prev_cursor"));
        }
        res_free(&r);
    }
    cr_assert_eq(seen, 120);
    /* Back from the last page: the 50 before it. */
    snprintf(query, sizeof query, "limit=50&before=%s", prev_of_last);
    res r = get_q(api, "/collections/p/find", query);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *docs = json_object_get(r.json, "documents");
    cr_assert_eq(json_array_size(docs), 50);
    cr_assert_str_eq(jstr(json_array_get(docs, 0), "_id"), "d00050");
    cr_assert_str_eq(jstr(json_array_get(docs, 49), "_id"), "d00099");
    res_free(&r);
    free(prev_of_last);
    /* The default limit is 50, with offset. */
    r = get_q(api, "/collections/p/find", "offset=100");
    cr_assert_eq(json_array_size(json_object_get(r.json, "documents")), 20);
    res_free(&r);
    r = get_q(api, "/collections/p/find", "tag=even");
    cr_assert_eq(json_array_size(json_object_get(r.json, "documents")), 50);
    cr_assert_eq(jint(r.json, "total"), 60);
    res_free(&r);
}

/* ---- find_with_stream ---- */

/* Drains a stream over `coll` and checks every document from..to (step) is there in _id order,
 * one per chunk. */
static void check_stream(const res *r, bool ndjson, int n, int step)
{
    cr_assert_eq(r->status, 200);
    cr_assert(r->streamed);
    cr_assert_str_eq(r->route, "GET /collections/{c}/find_with_stream");
    cr_assert_str_eq(r->type, ndjson ? "application/x-ndjson" : "application/json");
    json_t *all;
    if (ndjson) {
        all = json_array();
        char *save = NULL;
        char *copy = strdup(r->body);
        int lines = 0;
        for (char *line = strtok_r(copy, "\n", &save); line != NULL;
             line = strtok_r(NULL, "\n", &save)) {
            json_t *d = json_loads(line, 0, NULL);
            cr_assert_not_null(d, "bad line %d: %.100s", lines, line);
            json_array_append_new(all, d);
            lines++;
        }
        free(copy);
        cr_assert(r->len == 0 || r->body[r->len - 1] == '\n');
        cr_assert_eq(r->nchunks, (size_t)n);
        for (size_t i = 0; i < r->nchunks; i++) {
            size_t len = strlen(r->chunks[i]);
            cr_assert(len > 2 && r->chunks[i][len - 1] == '\n' &&
                          strchr(r->chunks[i], '\n') == r->chunks[i] + len - 1,
                      "chunk %zu is not one line", i);
        }
    } else {
        all = json_incref(r->json);
        cr_assert(json_is_array(all), "%.200s", r->body);
        /* One document per chunk, then "]" (or "[]" alone when empty). */
        if (n == 0) {
            cr_assert_eq(r->nchunks, 1);
            cr_assert_str_eq(r->chunks[0], "[]");
        } else {
            cr_assert_eq(r->nchunks, (size_t)n + 1);
            cr_assert_str_eq(r->chunks[n], "]");
            for (int i = 0; i < n; i++) {
                const char *c = r->chunks[i];
                cr_assert_eq(c[0], i == 0 ? '[' : ',', "chunk %d: %.40s", i, c);
                json_t *d = json_loads(c + 1, 0, NULL);
                cr_assert(json_is_object(d), "chunk %d is not one document: %.60s", i, c);
                json_decref(d);
            }
        }
    }
    cr_assert_eq(json_array_size(all), (size_t)n);
    for (int i = 0; i < n; i++) {
        char want[16];
        snprintf(want, sizeof want, "d%05d", i * step);
        cr_assert_str_eq(jstr(json_array_get(all, (size_t)i), "_id"), want);
        cr_assert_eq(jint(json_array_get(all, (size_t)i), "n"), i * step);
    }
    json_decref(all);
}

Test(http, stream_json)
{
    fill(api, "st", 0, 2000);
    call_opts o = {.accept = "application/json"};
    res r = call_with(api, HTTP_GET, "/collections/st/find_with_stream", &o);
    check_stream(&r, false, 2000, 1);
    res_free(&r);
    /* Filters apply; paging parameters are ignored. */
    o.query = "tag=even&limit=3&offset=7";
    r = call_with(api, HTTP_GET, "/collections/st/find_with_stream", &o);
    check_stream(&r, false, 1000, 2);
    res_free(&r);
    /* Nothing matches: "[]". */
    o.query = "tag=none";
    r = call_with(api, HTTP_GET, "/collections/st/find_with_stream", &o);
    check_stream(&r, false, 0, 1);
    res_free(&r);
}

Test(http, stream_ndjson)
{
    fill(api, "st", 0, 2000);
    call_opts o = {.accept = "text/plain, application/x-ndjson;q=0.9"};
    res r = call_with(api, HTTP_GET, "/collections/st/find_with_stream", &o);
    check_stream(&r, true, 2000, 1);
    res_free(&r);
    o.query = "grp=g0";
    r = call_with(api, HTTP_GET, "/collections/st/find_with_stream", &o);
    check_stream(&r, true, 667, 3);
    res_free(&r);
    o.query = "grp=none";
    r = call_with(api, HTTP_GET, "/collections/st/find_with_stream", &o);
    check_stream(&r, true, 0, 1);
    cr_assert_eq(r.len, 0);
    res_free(&r);
}

Test(http, stream_errors)
{
    res r = get_q(api, "/collections/nothere/find_with_stream", NULL);
    expect_error(&r, 404, "not_found", "stream on a missing collection");
    cr_assert(!r.streamed);
    res_free(&r);
    r = get_q(api, "/collections/bad.name/find_with_stream", NULL);
    expect_error(&r, 400, "bad_request", "stream with a bad name");
    res_free(&r);
    fill(api, "st", 0, 3);
    r = get_q(api, "/collections/st/find_with_stream", "%24bad=1");
    expect_error(&r, 400, "bad_request", "stream with an operator as a field");
    res_free(&r);
    /* HEAD: the head only, no stream left open. */
    r = call(api, HTTP_HEAD, "/collections/st/find_with_stream", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(!r.streamed);
    res_free(&r);
    /* A stream freed before its end releases its cursor. */
    http_request req = {.method = HTTP_GET, .path = "/collections/st/find_with_stream"};
    http_response resp;
    memset(&resp, 0, sizeof resp);
    http_api_handle(api, &req, &resp);
    cr_assert_not_null(resp.stream);
    shale_buf chunk = {0};
    bool done = false;
    cr_assert_eq(http_stream_next(resp.stream, &chunk, &done, NULL), SHALE_OK);
    cr_assert(!done);
    cr_assert_eq(http_stream_next(NULL, &chunk, &done, NULL), SHALE_INVALID);
    shale_buf_free(&chunk);
    http_response_free(&resp);
}

/* ---- indexes ---- */

Test(http, indexes)
{
    fill(api, "ix", 0, 20);
    res r = call(api, HTTP_GET, "/collections/ix/indexes", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.route, "GET /collections/{c}/indexes");
    cr_assert(json_is_true(json_object_get(r.json, "success")));
    cr_assert_str_eq(jstr(r.json, "collection"), "ix");
    cr_assert_eq(jint(r.json, "index_count"), 1);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(r.json, "indexes"), 0)),
                     "_id");
    cr_assert(json_is_array(json_object_get(r.json, "details")));
    res_free(&r);

    r = call(api, HTTP_POST, "/collections/ix/indexes/grp", NULL);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(r.route, "POST /collections/{c}/indexes/{field}");
    cr_assert(json_is_true(json_object_get(r.json, "success")));
    cr_assert_str_eq(jstr(r.json, "message"), "Index created successfully");
    cr_assert_str_eq(jstr(r.json, "collection"), "ix");
    cr_assert_str_eq(jstr(r.json, "field"), "grp");
    res_free(&r);
    r = call(api, HTTP_POST, "/collections/ix/indexes/a.b%20c", NULL); /* dotted, decoded */
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(jstr(r.json, "field"), "a.b c");
    res_free(&r);

    r = call(api, HTTP_POST, "/collections/ix/indexes/grp", NULL);
    expect_error(&r, 409, "conflict", "existing index");
    res_free(&r);
    r = call(api, HTTP_POST, "/collections/ix/indexes/_id", NULL);
    expect_error(&r, 400, "bad_request", "index on _id");
    res_free(&r);
    r = call(api, HTTP_POST, "/collections/ix/indexes/a%00b", NULL);
    expect_error(&r, 400, "bad_request", "field with a NUL");
    res_free(&r);

    r = call(api, HTTP_GET, "/collections/ix/indexes", NULL);
    cr_assert_eq(jint(r.json, "index_count"), 3, "%s", r.body);
    json_t *names = json_object_get(r.json, "indexes");
    bool has_grp = false;
    for (size_t i = 0; i < json_array_size(names); i++) {
        has_grp |= strcmp(json_string_value(json_array_get(names, i)), "grp") == 0;
    }
    cr_assert(has_grp, "%s", r.body);
    res_free(&r);

    /* The index serves finds (same answers). */
    r = get_q(api, "/collections/ix/find", "grp=g2");
    cr_assert_eq(jint(r.json, "total"), 6, "%s", r.body);
    res_free(&r);

    r = call(api, HTTP_DELETE, "/collections/ix/indexes/grp", NULL);
    cr_assert_eq(r.status, 204, "%s", r.body);
    cr_assert_str_eq(r.route, "DELETE /collections/{c}/indexes/{field}");
    res_free(&r);
    r = call(api, HTTP_DELETE, "/collections/ix/indexes/grp", NULL);
    expect_error(&r, 404, "not_found", "drop a missing index");
    res_free(&r);
    r = call(api, HTTP_DELETE, "/collections/nothere/indexes/grp", NULL);
    expect_error(&r, 404, "not_found", "drop on a missing collection");
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/nothere/indexes", NULL);
    expect_error(&r, 404, "not_found", "list on a missing collection");
    res_free(&r);
}

/* ---- POST query ---- */

Test(http, query)
{
    fill(api, "q", 0, 40);
    res r = call(api, HTTP_POST, "/collections/q/query",
                 "{\"filter\":{\"n\":{\"$gte\":10},\"tag\":\"odd\"},\"sort\":\"-n\","
                 "\"fields\":[\"n\"],\"limit\":3}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.route, "POST /collections/{c}/query");
    json_t *docs = json_object_get(r.json, "documents");
    cr_assert_eq(json_array_size(docs), 3);
    cr_assert_eq(jint(r.json, "total"), 15);
    cr_assert_eq(jint(json_array_get(docs, 0), "n"), 39);
    cr_assert_eq(jint(json_array_get(docs, 2), "n"), 35);
    cr_assert_eq(json_object_size(json_array_get(docs, 0)), 2, "projection: %s", r.body);
    /* The next page by cursor, the same sort given as an array. */
    char body[512];
    snprintf(body, sizeof body,
             "{\"filter\":{\"n\":{\"$gte\":10},\"tag\":\"odd\"},\"sort\":[\"-n\"],\"limit\":3,"
             "\"after\":\"%s\"}",
             jstr(r.json, "next_cursor"));
    res_free(&r);
    r = call(api, HTTP_POST, "/collections/q/query", body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(jint(json_array_get(json_object_get(r.json, "documents"), 0), "n"), 33);
    res_free(&r);

    /* An empty body object: everything, by _id; nulls are absent fields. */
    r = call(api, HTTP_POST, "/collections/q/query",
             "{\"filter\":null,\"sort\":null,\"after\":null,\"offset\":38}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "documents")), 2);
    res_free(&r);

    r = call(api, HTTP_POST, "/collections/q/query",
             "{\"filter\":{\"grp\":\"g1\"},\"explain\":true}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(jstr(r.json, "plan"), "scan");
    cr_assert_eq(jint(r.json, "matched"), 13);
    res_free(&r);

    static const char *const bad[] = {
        "{\"filter\":{\"n\":{\"$bogus\":1}}}",
        "{\"filter\":[1]}",
        "{\"sort\":5}",
        "{\"sort\":[\"a\",3]}",
        "{\"fields\":{}}",
        "{\"limit\":1001}",
        "{\"limit\":-1}",
        "{\"limit\":\"5\"}",
        "{\"offset\":1.5}",
        "{\"after\":\"zz\"}",
        "{\"after\":7}",
        "{\"explain\":1}",
        "{\"filtre\":{}}",
        "{\"filter\":{}",
        "",
        "[]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = call(api, HTTP_POST, "/collections/q/query", bad[i]);
        expect_error(&r, 400, "bad_request", bad[i]);
        res_free(&r);
    }
    r = call(api, HTTP_POST, "/collections/nothere/query", "{}");
    expect_error(&r, 404, "not_found", "query on a missing collection");
    res_free(&r);
}

/* ---- collections ---- */

Test(http, collections)
{
    res r = call(api, HTTP_GET, "/collections", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.route, "GET /collections");
    cr_assert_eq(json_array_size(json_object_get(r.json, "collections")), 0);
    cr_assert_eq(jint(r.json, "count"), 0);
    res_free(&r);
    fill(api, "zeta", 0, 2);
    fill(api, "alpha", 0, 2);
    r = call(api, HTTP_GET, "/collections", NULL);
    json_t *want = json_pack("[s,s]", "alpha", "zeta");
    cr_assert(json_equal(json_object_get(r.json, "collections"), want), "%s", r.body);
    cr_assert_eq(jint(r.json, "count"), 2);
    json_decref(want);
    res_free(&r);

    r = call(api, HTTP_DELETE, "/collections/zeta", NULL);
    cr_assert_eq(r.status, 204, "%s", r.body);
    cr_assert_str_eq(r.route, "DELETE /collections/{c}");
    cr_assert_eq(r.len, 0);
    res_free(&r);
    r = call(api, HTTP_DELETE, "/collections/zeta", NULL);
    expect_error(&r, 404, "not_found", "drop a missing collection");
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/zeta/documents/d00000", NULL);
    cr_assert_eq(r.status, 404);
    res_free(&r);
    r = call(api, HTTP_GET, "/collections", NULL);
    cr_assert_eq(jint(r.json, "count"), 1);
    res_free(&r);
}

/* ---- transactions ---- */

Test(http, transaction)
{
    fill(api, "t", 0, 3);
    res r = call(api, HTTP_POST, "/transaction",
                 "{\"operations\":[{\"op\":\"insert\",\"collection\":\"t\",\"document\":"
                 "{\"_id\":\"n1\",\"v\":1}},{\"op\":\"insert\",\"collection\":\"t\",\"document\":"
                 "{\"v\":2}}]}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.route, "POST /transaction");
    cr_assert_str_eq(r.type, "application/json");
    cr_assert(json_is_true(json_object_get(r.json, "success")));
    cr_assert_eq(json_object_size(r.json), 2, "%s", r.body);
    json_t *results = json_object_get(r.json, "results");
    cr_assert_eq(json_array_size(results), 2);
    cr_assert_str_eq(jstr(json_array_get(results, 0), "_id"), "n1");
    cr_assert_eq(jint(json_array_get(results, 1), "v"), 2);
    cr_assert_not_null(jstr(json_array_get(results, 1), "_id"), "a generated _id: %s", r.body);
    res_free(&r);

    r = call(api, HTTP_POST, "/transaction",
             "{\"operations\":[{\"op\":\"update\",\"collection\":\"t\",\"id\":\"d00000\","
             "\"document\":{\"n\":10}},{\"op\":\"update\",\"collection\":\"t\",\"id\":\"n1\","
             "\"document\":{\"v\":11}}]}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    results = json_object_get(r.json, "results");
    cr_assert_eq(jint(json_array_get(results, 0), "n"), 10);
    cr_assert_str_eq(jstr(json_array_get(results, 0), "grp"), "g0", "a merge keeps the rest");
    cr_assert_eq(jint(json_array_get(results, 1), "v"), 11);
    res_free(&r);

    /* Single replace and delete. */
    r = call(api, HTTP_POST, "/transaction",
             "{\"operations\":[{\"op\":\"replace\",\"collection\":\"t\",\"id\":\"d00001\","
             "\"document\":{\"r\":true}}]}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    results = json_object_get(r.json, "results");
    cr_assert(json_is_true(json_object_get(json_array_get(results, 0), "r")));
    cr_assert_str_eq(jstr(json_array_get(results, 0), "_id"), "d00001");
    cr_assert_null(json_object_get(json_array_get(results, 0), "n"));
    res_free(&r);
    r = call(api, HTTP_POST, "/transaction",
             "{\"operations\":[{\"op\":\"delete\",\"collection\":\"t\",\"id\":\"d00002\"}]}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    results = json_object_get(r.json, "results");
    cr_assert_eq(json_array_size(results), 1);
    cr_assert_str_eq(jstr(json_array_get(results, 0), "_id"), "d00002");
    cr_assert(json_is_true(json_object_get(json_array_get(results, 0), "deleted")));
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/t/documents/d00002", NULL);
    cr_assert_eq(r.status, 404);
    res_free(&r);

    /* A single failing operation is named too. */
    r = call(api, HTTP_POST, "/transaction",
             "{\"operations\":[{\"op\":\"delete\",\"collection\":\"t\",\"id\":\"ghost\"}]}");
    expect_error(&r, 404, "not_found", "delete missing");
    cr_assert(strstr(jstr(r.json, "message"), "operation 0: ") == jstr(r.json, "message"), "%s",
              r.body);
    cr_assert(strstr(jstr(r.json, "message"), "ghost") != NULL, "%s", r.body);
    res_free(&r);
}

/* Every document of coll by _id (GET find), or NULL when the collection is missing. */
static json_t *all_docs(const char *coll)
{
    char path[128];
    snprintf(path, sizeof path, "/collections/%s/find", coll);
    res r = get_q(api, path, "limit=1000");
    json_t *docs = NULL;
    if (r.status == 404) {
        res_free(&r);
        return NULL;
    }
    cr_assert_eq(r.status, 200, "%s: %s", path, r.body);
    cr_assert_lt(jint(r.json, "total"), 1000);
    docs = json_incref(json_object_get(r.json, "documents"));
    res_free(&r);
    return docs;
}

/* The state of the collections as text, to compare before and after a failed transaction. */
static char *state_of(const char *const *colls, size_t n)
{
    json_t *all = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *docs = all_docs(colls[i]);
        json_object_set_new(all, colls[i], docs != NULL ? docs : json_null());
    }
    char *s = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(all);
    return s;
}

/* The index on coll.field answers finds exactly as a scan of every document does, for each of
 * the values, and the planner uses it. */
static void check_index(const char *coll, const char *field, const char *const *values, size_t n)
{
    char path[128];
    json_t *docs = all_docs(coll);
    cr_assert_not_null(docs, "%s is missing", coll);
    for (size_t v = 0; v < n; v++) {
        json_t *want = json_array();
        size_t i;
        json_t *d;
        json_array_foreach(docs, i, d)
        {
            const char *got = jstr(d, field);
            if (got != NULL && strcmp(got, values[v]) == 0) {
                json_array_append(want, json_object_get(d, "_id"));
            }
        }
        char query[128];
        snprintf(query, sizeof query, "%s=%s&limit=1000", field, values[v]);
        snprintf(path, sizeof path, "/collections/%s/find", coll);
        res r = get_q(api, path, query);
        cr_assert_eq(r.status, 200, "%s?%s: %s", path, query, r.body);
        json_t *found = json_object_get(r.json, "documents");
        cr_assert_eq(json_array_size(found), json_array_size(want), "%s?%s: %s", path, query,
                     r.body);
        cr_assert_eq(jint(r.json, "total"), (json_int_t)json_array_size(want));
        json_array_foreach(found, i, d)
        {
            cr_assert(json_equal(json_object_get(d, "_id"), json_array_get(want, i)), "%s?%s: %s",
                      path, query, r.body);
            cr_assert_str_eq(jstr(d, field), values[v]);
        }
        res_free(&r);
        json_decref(want);

        char body[160];
        snprintf(body, sizeof body, "{\"filter\":{\"%s\":\"%s\"},\"explain\":true}", field,
                 values[v]);
        snprintf(path, sizeof path, "/collections/%s/query", coll);
        r = call(api, HTTP_POST, path, body);
        cr_assert_eq(r.status, 200, "%s", r.body);
        cr_assert_str_eq(jstr(r.json, "plan"), "index", "%s", r.body);
        cr_assert_str_eq(jstr(r.json, "index"), field, "%s", r.body);
        res_free(&r);
    }
    json_decref(docs);
}

static void make_index(const char *coll, const char *field)
{
    char path[128];
    snprintf(path, sizeof path, "/collections/%s/indexes/%s", coll, field);
    res r = call(api, HTTP_POST, path, NULL);
    cr_assert_eq(r.status, 201, "%s", r.body);
    res_free(&r);
}

static const char *const grps[] = {"g0", "g1", "g2", "g9"};

/* Any mix of kinds over two collections (one with a secondary index), applied as one. */
Test(http, transaction_mixed)
{
    fill(api, "a", 0, 6);
    fill(api, "b", 0, 6);
    make_index("b", "grp");
    res r = call(api, HTTP_POST, "/transaction",
                 "{\"operations\":["
                 "{\"op\":\"insert\",\"collection\":\"a\",\"document\":{\"_id\":\"new\","
                 "\"grp\":\"g9\"}},"
                 "{\"op\":\"update\",\"collection\":\"a\",\"id\":\"d00000\",\"document\":"
                 "{\"x\":1}},"
                 "{\"op\":\"replace\",\"collection\":\"b\",\"id\":\"d00001\",\"document\":"
                 "{\"grp\":\"g9\",\"r\":1}},"
                 "{\"op\":\"delete\",\"collection\":\"b\",\"id\":\"d00002\"},"
                 "{\"op\":\"insert\",\"collection\":\"b\",\"document\":{\"_id\":\"nb\","
                 "\"grp\":\"g9\"}},"
                 "{\"op\":\"update\",\"collection\":\"b\",\"id\":\"d00000\",\"document\":"
                 "{\"grp\":\"g9\"}},"
                 "{\"op\":\"delete\",\"collection\":\"a\",\"id\":\"d00005\"}]}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(json_is_true(json_object_get(r.json, "success")));
    json_t *results = json_object_get(r.json, "results");
    cr_assert_eq(json_array_size(results), 7, "%s", r.body);
    cr_assert_str_eq(jstr(json_array_get(results, 0), "_id"), "new");
    cr_assert_eq(jint(json_array_get(results, 1), "x"), 1);
    cr_assert_eq(jint(json_array_get(results, 1), "n"), 0);
    cr_assert_eq(jint(json_array_get(results, 2), "r"), 1);
    cr_assert_null(json_object_get(json_array_get(results, 2), "n"), "replaced: %s", r.body);
    json_t *del = json_array_get(results, 3);
    cr_assert_eq(json_object_size(del), 2, "%s", r.body);
    cr_assert_str_eq(jstr(del, "_id"), "d00002");
    cr_assert(json_is_true(json_object_get(del, "deleted")));
    cr_assert_str_eq(jstr(json_array_get(results, 4), "_id"), "nb");
    cr_assert_str_eq(jstr(json_array_get(results, 5), "grp"), "g9");
    cr_assert_eq(jint(json_array_get(results, 5), "n"), 0);
    cr_assert_str_eq(jstr(json_array_get(results, 6), "_id"), "d00005");
    res_free(&r);

    /* Every operation landed. */
    r = call(api, HTTP_GET, "/collections/a/documents/new", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/a/documents/d00000", NULL);
    cr_assert_eq(jint(r.json, "x"), 1, "%s", r.body);
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/a/documents/d00005", NULL);
    cr_assert_eq(r.status, 404, "%s", r.body);
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/b/documents/d00001", NULL);
    cr_assert_eq(jint(r.json, "r"), 1, "%s", r.body);
    cr_assert_null(json_object_get(r.json, "tag"), "%s", r.body);
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/b/documents/d00002", NULL);
    cr_assert_eq(r.status, 404, "%s", r.body);
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/b/documents/nb", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    res_free(&r);

    /* The index follows: g9 = d00000, d00001, nb; g0 lost d00000, g1 d00001, g2 d00002. */
    check_index("b", "grp", grps, 4);
    r = get_q(api, "/collections/b/find", "grp=g9");
    cr_assert_eq(jint(r.json, "total"), 3, "%s", r.body);
    res_free(&r);
    r = get_q(api, "/collections/b/find", "grp=g2");
    cr_assert_eq(jint(r.json, "total"), 1, "%s", r.body);
    res_free(&r);
}

/* A failing operation anywhere: its status, a message naming it, and nothing applied. */
Test(http, transaction_all_or_nothing)
{
    fill(api, "a", 0, 6);
    fill(api, "b", 0, 6);
    make_index("b", "grp");
    static const char *const colls[] = {"a", "b", "fresh"};
    char *before = state_of(colls, 3);
    static const struct {
        const char *body;
        int status;
        const char *kind;
        const char *op; /* the operation the message names */
        const char *also;
    } cases[] = {
        /* An update of a missing id, after writes to both collections and a new one. */
        {"{\"operations\":["
         "{\"op\":\"insert\",\"collection\":\"a\",\"document\":{\"_id\":\"x1\"}},"
         "{\"op\":\"update\",\"collection\":\"b\",\"id\":\"d00001\",\"document\":"
         "{\"grp\":\"g9\"}},"
         "{\"op\":\"insert\",\"collection\":\"fresh\",\"document\":{\"_id\":\"f\"}},"
         "{\"op\":\"update\",\"collection\":\"a\",\"id\":\"ghost\",\"document\":{\"v\":1}},"
         "{\"op\":\"delete\",\"collection\":\"b\",\"id\":\"d00000\"}]}",
         404, "not_found", "operation 3: ", "ghost"},
        /* An insert of an existing _id. */
        {"{\"operations\":["
         "{\"op\":\"delete\",\"collection\":\"b\",\"id\":\"d00003\"},"
         "{\"op\":\"replace\",\"collection\":\"b\",\"id\":\"d00004\",\"document\":"
         "{\"grp\":\"g9\"}},"
         "{\"op\":\"insert\",\"collection\":\"b\",\"document\":{\"_id\":\"d00005\","
         "\"grp\":\"g9\"}},"
         "{\"op\":\"insert\",\"collection\":\"a\",\"document\":{\"_id\":\"x2\"}}]}",
         409, "conflict", "operation 2: ", "d00005"},
        /* The same new _id inserted twice: the second sees the first. */
        {"{\"operations\":["
         "{\"op\":\"insert\",\"collection\":\"b\",\"document\":{\"_id\":\"dup\","
         "\"grp\":\"g9\"}},"
         "{\"op\":\"insert\",\"collection\":\"b\",\"document\":{\"_id\":\"dup\"}}]}",
         409, "conflict", "operation 1: ", "dup"},
        /* An update after a delete of the same document sees it gone. */
        {"{\"operations\":["
         "{\"op\":\"delete\",\"collection\":\"b\",\"id\":\"d00001\"},"
         "{\"op\":\"update\",\"collection\":\"b\",\"id\":\"d00001\",\"document\":{}}]}",
         404, "not_found", "operation 1: ", "d00001"},
        /* Bad input the library finds: a patch changing _id, a bad collection name. */
        {"{\"operations\":["
         "{\"op\":\"insert\",\"collection\":\"a\",\"document\":{\"_id\":\"x3\"}},"
         "{\"op\":\"update\",\"collection\":\"b\",\"id\":\"d00001\",\"document\":"
         "{\"_id\":\"other\"}}]}",
         400, "bad_request", "operation 1: ", "_id"},
        {"{\"operations\":["
         "{\"op\":\"insert\",\"collection\":\"a\",\"document\":{\"_id\":\"x4\"}},"
         "{\"op\":\"insert\",\"collection\":\"bad name\",\"document\":{}}]}",
         400, "bad_request", "operation 1: ", NULL},
        {"{\"operations\":["
         "{\"op\":\"insert\",\"collection\":\"a\",\"document\":{\"_id\":\"x5\"}},"
         "{\"op\":\"replace\",\"collection\":\"a\",\"id\":\"\",\"document\":{}}]}",
         400, "bad_request", "operation 1: ", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        res r = call(api, HTTP_POST, "/transaction", cases[i].body);
        expect_error(&r, cases[i].status, cases[i].kind, cases[i].body);
        const char *msg = jstr(r.json, "message");
        cr_assert(strstr(msg, cases[i].op) == msg, "case %zu: %s", i, r.body);
        cr_assert(cases[i].also == NULL || strstr(msg, cases[i].also) != NULL, "case %zu: %s", i,
                  r.body);
        res_free(&r);
        char *after = state_of(colls, 3);
        cr_assert_str_eq(after, before, "case %zu changed the data", i);
        free(after);
        check_index("b", "grp", grps, 4);
    }
    cr_assert(strstr(before, "\"fresh\":null") != NULL, "%s", before);
    free(before);
    res r = call(api, HTTP_GET, "/collections/fresh/indexes", NULL);
    expect_error(&r, 404, "not_found", "a failed transaction created a collection");
    res_free(&r);
}

/* Operations see the earlier ones of the same transaction. */
Test(http, transaction_sees_earlier)
{
    make_index("c", "grp"); /* creates c, empty, with the index */
    res r = call(api, HTTP_POST, "/transaction",
                 "{\"operations\":["
                 "{\"op\":\"insert\",\"collection\":\"c\",\"document\":{\"_id\":\"k\",\"v\":1,"
                 "\"grp\":\"g0\"}},"
                 "{\"op\":\"update\",\"collection\":\"c\",\"id\":\"k\",\"document\":{\"w\":2,"
                 "\"grp\":\"g1\"}},"
                 "{\"op\":\"insert\",\"collection\":\"c\",\"document\":{\"_id\":\"gone\","
                 "\"grp\":\"g2\"}},"
                 "{\"op\":\"delete\",\"collection\":\"c\",\"id\":\"gone\"},"
                 "{\"op\":\"insert\",\"collection\":\"d\",\"document\":{\"_id\":\"k\"}},"
                 "{\"op\":\"replace\",\"collection\":\"d\",\"id\":\"k\",\"document\":"
                 "{\"z\":3}}]}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *results = json_object_get(r.json, "results");
    cr_assert_eq(json_array_size(results), 6, "%s", r.body);
    json_t *upd = json_array_get(results, 1);
    cr_assert_eq(jint(upd, "v"), 1, "%s", r.body);
    cr_assert_eq(jint(upd, "w"), 2, "%s", r.body);
    cr_assert(json_is_true(json_object_get(json_array_get(results, 3), "deleted")));
    cr_assert_eq(jint(json_array_get(results, 5), "z"), 3, "%s", r.body);
    res_free(&r);

    r = call(api, HTTP_GET, "/collections/c/documents/k", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(jint(r.json, "v"), 1);
    cr_assert_eq(jint(r.json, "w"), 2);
    cr_assert_str_eq(jstr(r.json, "grp"), "g1");
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/c/documents/gone", NULL);
    cr_assert_eq(r.status, 404, "%s", r.body);
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/d/documents/k", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(jint(r.json, "z"), 3);
    res_free(&r);
    /* The index holds the final values only: k under g1, nothing under g0 or g2. */
    check_index("c", "grp", grps, 4);
    r = get_q(api, "/collections/c/find", "grp=g1");
    cr_assert_eq(jint(r.json, "total"), 1, "%s", r.body);
    res_free(&r);

    /* A delete then an insert of the same _id: the document is new. */
    r = call(api, HTTP_POST, "/transaction",
             "{\"operations\":["
             "{\"op\":\"delete\",\"collection\":\"c\",\"id\":\"k\"},"
             "{\"op\":\"insert\",\"collection\":\"c\",\"document\":{\"_id\":\"k\","
             "\"grp\":\"g2\"}}]}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    res_free(&r);
    r = call(api, HTTP_GET, "/collections/c/documents/k", NULL);
    cr_assert_null(json_object_get(r.json, "v"), "%s", r.body);
    cr_assert_str_eq(jstr(r.json, "grp"), "g2");
    res_free(&r);
    check_index("c", "grp", grps, 4);
}

/* 1 .. 1000 operations. */
Test(http, transaction_sizes)
{
    for (int n = 999; n <= 1001; n++) {
        json_t *ops = json_array();
        for (int i = 0; i < n; i++) {
            char id[16];
            snprintf(id, sizeof id, "k%04d", i);
            json_array_append_new(ops,
                                  json_pack("{s:s,s:s,s:{s:s,s:i}}", "op", "insert", "collection",
                                            i % 2 ? "odd" : "even", "document", "_id", id, "i", i));
        }
        if (n == 999) { /* and an update of one of them: 1000 */
            json_array_append_new(ops,
                                  json_pack("{s:s,s:s,s:s,s:{s:b}}", "op", "update", "collection",
                                            "even", "id", "k0000", "document", "seen", 1));
        }
        json_t *body = json_pack("{s:o}", "operations", ops);
        char *text = json_dumps(body, JSON_COMPACT);
        res r = call(api, HTTP_POST, "/transaction", text);
        if (n == 1001) {
            expect_error(&r, 400, "bad_request", "1001 operations");
            cr_assert(strstr(jstr(r.json, "message"), "1000") != NULL, "%s", r.body);
        } else {
            cr_assert_eq(r.status, 200, "%d operations: %.300s", n, r.body);
            cr_assert_eq(json_array_size(json_object_get(r.json, "results")), 1000);
        }
        res_free(&r);
        free(text);
        json_decref(body);
        if (n == 999) {
            r = call(api, HTTP_GET, "/collections/even/documents/k0000", NULL);
            cr_assert(json_is_true(json_object_get(r.json, "seen")), "%s", r.body);
            res_free(&r);
        }
        if (n != 1001) {
            r = call(api, HTTP_DELETE, "/collections/even", NULL);
            cr_assert_eq(r.status, 204, "%s", r.body);
            res_free(&r);
            r = call(api, HTTP_DELETE, "/collections/odd", NULL);
            cr_assert_eq(r.status, 204, "%s", r.body);
            res_free(&r);
        }
    }
    /* The refused ones wrote nothing. */
    res r = call(api, HTTP_GET, "/collections", NULL);
    cr_assert_eq(jint(r.json, "count"), 0, "%s", r.body);
    res_free(&r);
}

/* Malformed bodies and operations: 400 before anything runs (the valid first operation of the
 * ones that have one is not applied), naming the operation. */
Test(http, transaction_malformed)
{
    static const char *const bad_body[] = {
        "{\"operations\":[]}",
        "{\"operations\":{}}",
        "{\"operations\":null}",
        "{}",
        "[]",
        "",
        "{\"operations\":[{\"op\":\"insert\",\"collection\":\"t\",\"document\":{}}",
    };
    for (size_t i = 0; i < sizeof bad_body / sizeof bad_body[0]; i++) {
        res r = call(api, HTTP_POST, "/transaction", bad_body[i]);
        expect_error(&r, 400, "bad_request", bad_body[i]);
        res_free(&r);
    }
    static const char *const bad_op[] = {
        "5",
        "[]",
        "{\"op\":\"upsert\",\"collection\":\"t\",\"document\":{}}",
        "{\"op\":\"INSERT\",\"collection\":\"t\",\"document\":{}}",
        "{\"collection\":\"t\",\"document\":{}}",
        "{\"op\":1,\"collection\":\"t\",\"document\":{}}",
        "{\"op\":\"insert\",\"document\":{}}",
        "{\"op\":\"insert\",\"collection\":7,\"document\":{}}",
        "{\"op\":\"insert\",\"collection\":\"t\\u0000x\",\"document\":{}}",
        "{\"op\":\"insert\",\"collection\":\"bad name\",\"document\":{}}",
        "{\"op\":\"insert\",\"collection\":\"\",\"document\":{}}",
        "{\"op\":\"insert\",\"collection\":\"t\"}",
        "{\"op\":\"insert\",\"collection\":\"t\",\"document\":[1]}",
        "{\"op\":\"insert\",\"collection\":\"t\",\"document\":\"{}\"}",
        "{\"op\":\"update\",\"collection\":\"t\",\"document\":{}}",
        "{\"op\":\"update\",\"collection\":\"t\",\"id\":\"t0\"}",
        "{\"op\":\"update\",\"collection\":\"t\",\"id\":\"t0\",\"document\":null}",
        "{\"op\":\"replace\",\"collection\":\"t\",\"document\":{}}",
        "{\"op\":\"replace\",\"collection\":\"t\",\"id\":\"t0\"}",
        "{\"op\":\"delete\",\"collection\":\"t\"}",
        "{\"op\":\"delete\",\"collection\":\"t\",\"id\":3}",
        "{\"op\":\"delete\",\"collection\":\"t\",\"id\":null}",
    };
    res r = call(api, HTTP_POST, "/collections/t", "{\"_id\":\"t0\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    res_free(&r);
    for (size_t i = 0; i < sizeof bad_op / sizeof bad_op[0]; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"operations\":[{\"op\":\"insert\",\"collection\":\"t\",\"document\":"
                 "{\"_id\":\"first\"}},%s]}",
                 bad_op[i]);
        r = call(api, HTTP_POST, "/transaction", body);
        expect_error(&r, 400, "bad_request", body);
        cr_assert(strstr(jstr(r.json, "message"), "operation 1") != NULL, "%s", r.body);
        res_free(&r);
    }
    r = call(api, HTTP_GET, "/collections/t/documents/first", NULL);
    cr_assert_eq(r.status, 404, "%s", r.body);
    res_free(&r);
    r = call(api, HTTP_GET, "/collections", NULL);
    cr_assert_eq(jint(r.json, "count"), 1, "%s", r.body);
    res_free(&r);
}

/* ---- routing, auth, limits ---- */

Test(http, routes)
{
    static const struct {
        http_method m;
        const char *path;
        int status;
    } cases[] = {
        {HTTP_GET, "/", 404},
        {HTTP_GET, "", 404},
        {HTTP_GET, "/nope", 404},
        {HTTP_GET, "/health/", 404},
        {HTTP_GET, "/collections/", 404},
        {HTTP_GET, "/collections//find", 404},
        {HTTP_GET, "/collections/c/find/", 404},
        {HTTP_GET, "/collections/c/nope", 404},
        {HTTP_GET, "/collections/c/documents", 404},
        {HTTP_GET, "/collections/c/documents/", 404},
        {HTTP_GET, "/collections/c/documents/x/y", 404},
        {HTTP_GET, "/collections/c/nope/x", 404},
        {HTTP_GET, "/things/c", 404},
        {HTTP_OTHER, "/nope", 404},
        {HTTP_PUT, "/collections/c", 405},
        {HTTP_GET, "/collections/c", 405},
        {HTTP_GET, "/transaction", 405},
        {HTTP_POST, "/health", 405},
        {HTTP_DELETE, "/stats", 405},
        {HTTP_POST, "/collections", 405},
        {HTTP_GET, "/collections/c/batch", 405},
        {HTTP_POST, "/collections/c/documents/x", 405},
        {HTTP_POST, "/collections/c/find", 405},
        {HTTP_GET, "/collections/c/query", 405},
        {HTTP_DELETE, "/collections/c/indexes", 405},
        {HTTP_GET, "/collections/c/indexes/f", 405},
        {HTTP_OTHER, "/collections/c/documents/x", 405},
        {HTTP_GET, "/collections/%zz", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        res r = call(api, cases[i].m, cases[i].path, NULL);
        expect_error(&r, cases[i].status,
                     cases[i].status == 404   ? "not_found"
                     : cases[i].status == 405 ? "method_not_allowed"
                                              : "bad_request",
                     cases[i].path);
        if (cases[i].status == 404) {
            cr_assert_str_eq(r.route, "(unmatched)");
        } else if (cases[i].status == 405) {
            cr_assert_str_eq(r.route, "(method not allowed)");
        }
        res_free(&r);
    }
}

Test(http, auth)
{
    http_api *sec = make_api(fx.db, "s3cret-token", 0, true);
    static const char *const wrong[] = {NULL,
                                        "",
                                        "Bearer",
                                        "Bearer ",
                                        "Bearer s3cret",
                                        "Bearer s3cret-token2",
                                        "Bearer S3CRET-TOKEN",
                                        "Basic s3cret-token",
                                        "s3cret-token"};
    static const struct {
        http_method m;
        const char *path;
    } routes[] = {{HTTP_GET, "/collections"},
                  {HTTP_POST, "/collections/a"},
                  {HTTP_GET, "/collections/a/documents/x"},
                  {HTTP_GET, "/stats"},
                  {HTTP_GET, "/metrics"},
                  {HTTP_POST, "/transaction"},
                  {HTTP_GET, "/nope"},
                  {HTTP_PUT, "/collections/a"}};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        for (size_t k = 0; k < sizeof routes / sizeof routes[0]; k++) {
            call_opts o = {.auth = wrong[i], .body = "{}"};
            res r = call_with(sec, routes[k].m, routes[k].path, &o);
            expect_error(&r, 401, "unauthorized", routes[k].path);
            if (k == 0) {
                cr_assert_str_eq(r.route, "GET /collections");
            }
            res_free(&r);
        }
    }
    /* Nothing was written by the refused insert. */
    call_opts ok = {.auth = "Bearer s3cret-token"};
    res r = call_with(sec, HTTP_GET, "/collections", &ok);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(jint(r.json, "count"), 0);
    res_free(&r);
    /* The right token (scheme case-insensitive) passes; /health never needs one. */
    ok.body = "{\"_id\":\"x\"}";
    r = call_with(sec, HTTP_POST, "/collections/a", &ok);
    cr_assert_eq(r.status, 201, "%s", r.body);
    res_free(&r);
    ok.auth = "bearer s3cret-token";
    ok.body = NULL;
    r = call_with(sec, HTTP_GET, "/collections/a/documents/x", &ok);
    cr_assert_eq(r.status, 200, "%s", r.body);
    res_free(&r);
    r = call_with(sec, HTTP_GET, "/nope", &ok);
    cr_assert_eq(r.status, 404);
    res_free(&r);
    r = call(sec, HTTP_GET, "/health", NULL);
    cr_assert_eq(r.status, 200);
    res_free(&r);
    http_api_free(sec);

    /* An empty token means none. */
    http_api *open = make_api(fx.db, "", 0, false);
    r = call(open, HTTP_GET, "/collections", NULL);
    cr_assert_eq(r.status, 200);
    res_free(&r);
    http_api_free(open);
}

Test(http, too_large)
{
    http_api *small = make_api(fx.db, NULL, 1000, false);
    char body[1400];
    memset(body, 'x', sizeof body);
    memcpy(body, "{\"a\":\"", 6);
    memcpy(body + sizeof body - 3, "\"}", 3);
    res r = call(small, HTTP_POST, "/collections/big", body);
    expect_error(&r, 413, "too_large", "body over max_body");
    cr_assert_str_eq(r.route, "POST /collections/{c}");
    res_free(&r);
    r = call(small, HTTP_GET, "/collections/big/documents/x", NULL);
    cr_assert_eq(r.status, 404); /* nothing inserted */
    res_free(&r);
    http_api_free(small);
}

Test(http_limits, document_too_large)
{
    tu_fx f;
    shale_options o = {.max_value_bytes = 2048};
    tu_fx_begin(&f, "http-limits", &o);
    http_api *a = make_api(f.db, NULL, 0, false);
    size_t n = 6000;
    char *body = malloc(n + 1);
    memset(body, 'x', n);
    memcpy(body, "{\"a\":\"", 6);
    memcpy(body + n - 2, "\"}", 3);
    res r = call(a, HTTP_POST, "/collections/big", body);
    expect_error(&r, 413, "too_large", "document over max_value_bytes");
    res_free(&r);
    /* The same through a batch and an update. */
    char *batch = malloc(n + 64);
    snprintf(batch, n + 64, "{\"documents\":[%s]}", body);
    r = call(a, HTTP_POST, "/collections/big/batch", batch);
    expect_error(&r, 413, "too_large", "batch document over max_value_bytes");
    res_free(&r);
    r = call(a, HTTP_POST, "/collections/big", "{\"_id\":\"k\"}");
    cr_assert_eq(r.status, 201);
    res_free(&r);
    r = call(a, HTTP_PATCH, "/collections/big/documents/k", body);
    expect_error(&r, 413, "too_large", "patch over max_value_bytes");
    res_free(&r);
    free(batch);
    free(body);
    http_api_free(a);
    tu_fx_end(&f);
}

Test(http_limits, api_new)
{
    http_api *a = (http_api *)1;
    shale_error err;
    cr_assert_eq(http_api_new(NULL, &a, &err), SHALE_INVALID);
    http_api_opts o = {0};
    cr_assert_eq(http_api_new(&o, &a, &err), SHALE_INVALID);
    http_api_free(NULL);
    http_response_free(NULL);
    http_stream_free(NULL);
}

/* One api, several threads at once (the server's workers): every request answers right. */
typedef struct worker {
    int t;
    tu_failure *f;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 100 && !tu_failed(w->f); i++) {
        char body[96], path[96];
        /* fields in name order, as stored */
        snprintf(body, sizeof body, "{\"_id\":\"t%d-%d\",\"i\":%d,\"t\":%d}", w->t, i, i, w->t);
        http_request req = {.method = HTTP_POST, .path = "/collections/mt"};
        req.body = (shale_slice){body, strlen(body)};
        http_response resp;
        memset(&resp, 0, sizeof resp);
        http_api_handle(api, &req, &resp);
        if (resp.status != 201) {
            tu_fail(w->f, "insert %d/%d: %d", w->t, i, resp.status);
        }
        http_response_free(&resp);
        snprintf(path, sizeof path, "/collections/mt/documents/t%d-%d", w->t, i);
        req = (http_request){.method = HTTP_GET, .path = path};
        memset(&resp, 0, sizeof resp);
        http_api_handle(api, &req, &resp);
        if (resp.status != 200 || resp.body.len != strlen(body) ||
            memcmp(resp.body.data, body, resp.body.len) != 0) {
            tu_fail(w->f, "get %d/%d: %d %.*s", w->t, i, resp.status, (int)resp.body.len,
                    (const char *)resp.body.data);
        }
        http_response_free(&resp);
    }
    return NULL;
}

Test(http, threads)
{
    tu_failure f;
    tu_failure_init(&f);
    pthread_t th[4];
    worker w[4];
    for (int t = 0; t < 4; t++) {
        w[t] = (worker){t, &f};
        cr_assert_eq(pthread_create(&th[t], NULL, work, &w[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
    }
    tu_failure_check(&f, "threads");
    res r = get_q(api, "/collections/mt/find", "t=2");
    cr_assert_eq(jint(r.json, "total"), 100, "%.200s", r.body);
    res_free(&r);
}

/* POST /admin/backup: off without a backup directory; with one, a backup per call (ids 1, 2, ...)
 * that restores, "keep" purging the older ones, bad "keep" refused before anything is written. */
Test(http, admin_backup)
{
    res r = call(api, HTTP_POST, "/admin/backup", NULL);
    cr_assert_eq(r.status, 404, "%s", r.body);
    cr_assert(strstr(r.body, "--backup-dir") != NULL, "%s", r.body);
    res_free(&r);

    char *dest = tu_path(fx.root, "backups");
    http_api_opts o = {.db = fx.db, .backup_dir = dest};
    http_api *b = NULL;
    shale_error err = {0};
    cr_assert_eq(http_api_new(&o, &b, &err), SHALE_OK, "%s", err.msg);
    r = call(b, HTTP_POST, "/collections/people", "{\"_id\":\"ada\",\"born\":1815}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    res_free(&r);

    r = call(b, HTTP_POST, "/admin/backup", NULL);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "id")), 1);
    cr_assert_gt(json_integer_value(json_object_get(r.json, "files")), 0);
    res_free(&r);
    r = call(b, HTTP_POST, "/admin/backup", "{\"keep\":0}");
    cr_assert_eq(r.status, 400, "%s", r.body);
    res_free(&r);
    r = call(b, HTTP_POST, "/admin/backup", "{\"keep\":\"1\"}");
    cr_assert_eq(r.status, 400, "%s", r.body);
    res_free(&r);
    r = call(b, HTTP_GET, "/admin/backup", NULL);
    cr_assert_eq(r.status, 405, "%s", r.body);
    res_free(&r);
    r = call(b, HTTP_POST, "/admin/backup", "{\"keep\":1}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "id")), 2);
    res_free(&r);

    shale_backup_info *list = NULL;
    size_t n = 0;
    cr_assert_eq(shale_backup_list(dest, &list, &n, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(n, 1, "keep 1 left %zu backups", n);
    cr_assert_eq(list[0].id, 2);
    free(list);
    char *copy = tu_path(fx.root, "restored");
    cr_assert_eq(shale_restore(dest, 0, copy, false, &err), SHALE_OK, "%s", err.msg);
    shale_db *db = NULL;
    cr_assert_eq(shale_open(copy, NULL, &db, &err), SHALE_OK, "%s", err.msg);
    shale_buf doc = {0};
    cr_assert_eq(shale_doc_get(db, "people", (shale_slice){"ada", 3}, &doc, &err), SHALE_OK, "%s",
                 err.msg);
    cr_assert(memmem(doc.data, doc.len, "1815", 4) != NULL);
    shale_buf_free(&doc);
    cr_assert_eq(shale_close(db, &err), SHALE_OK);
    http_api_free(b);
    free(copy);
    free(dest);
}
