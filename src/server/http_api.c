/*
 * http_api: the routes of http_api.h over the document layer (shale_coll_*, shale_doc_*,
 * shale_index_*), transport-free. The JSON writer, the error bodies and the stream body are in
 * http_util.c.
 *
 * Choices the header leaves open, made here:
 * - Paths are split on '/', then each segment is percent-decoded ('+' stays a plus; in the query
 *   string '+' is a space, as Go's url.ParseQuery). A bad escape ("%zz", "%4") is 400; an empty
 *   segment ("//", a trailing '/') or a segment too many is 404. The literal segments
 *   ("collections", "documents", ...) are compared after decoding.
 * - Route, then auth, then the body limit: an unknown route with a bad token is 401 (routes are
 *   not revealed to a client without the token), except /health which never needs one. HEAD is
 *   served as GET (the server drops the body). A 405 names the allowed methods in its message
 *   (the response has no Allow header). Metrics labels (http_response.route) are the patterns of
 *   the route table at the bottom, "(unmatched)" for a 404 route, "(method not allowed)".
 * - A read route (find, find_with_stream, query, GET indexes) on a missing collection is 404, as
 *   go-db's; an existing empty collection gives an empty result.
 * - Library codes to statuses: http_status_of (http_util.h). SHALE_FULL is 413 on the routes
 *   that write documents (a document over max_value_bytes, a batch over the transaction limit:
 *   the request is too large) and 400 elsewhere (index creation: a collection at its most
 *   indexes is a limit the caller must fix, not a size).
 * - find's limit: 0 (or empty, or absent) is the default 50, 1 .. 1000 as given, above 1000 or
 *   not a decimal integer 400. The GET parameters limit, offset, after and before (first
 *   occurrence wins, as go-db's values[0]) are paging; every other parameter is an equality.
 * - Batch bodies and the query and transaction bodies are parsed with jansson (duplicate names
 *   rejected, \u0000 allowed as the library allows it) and each document is re-serialized for
 *   the library; a single document (insert, PATCH, PUT) goes to the library as sent, so its
 *   error messages point into the client's own text. An integer beyond int64 in a batch is 400
 *   (jansson refuses it) where a single insert would store it as a double.
 * - max_body 0 means 16 MiB (server.h's default).
 * - /transaction: every operation is checked here for its shape (op, collection, id unless an
 *   insert, document unless a delete; an insert's "id" and a delete's "document" are ignored),
 *   then all go to one shale_doc_apply: any mix on any collections, all or nothing, each seeing
 *   the earlier ones. A failure names the operation ("operation 2: ...") and maps as above.
 *
 * Thread-safety: the api is immutable after http_api_new; every request works on its own memory.
 */
#include "server/http_api.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/error.h"
#include "server/http_util.h"

#define METRICS_TYPE    "text/plain; version=0.0.4"
#define DEFAULT_BODY    ((size_t)16 << 20)
#define MAX_BATCH       1000
#define MAX_LIMIT       1000
#define MAX_SEGMENTS    4
#define MAX_EQ_PARAMS   64
#define JANSSON_FLAGS   (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)
#define ROUTE_UNMATCHED "(unmatched)"
#define ROUTE_NOT_ALLOW "(method not allowed)"

struct http_api {
    shale_db *db;
    char *token; /* NULL: none */
    size_t token_len;
    size_t max_body;
    void (*health_facts)(void *ctx, shale_buf *out);
    void (*metrics_text)(void *ctx, shale_buf *out);
    void *ctx;
    char *backup_dir; /* NULL: backups over HTTP are off */
};

/* ---- percent-decoding ---- */

/* Decodes s[0, n) into a new NUL-terminated string (*len without the NUL; the text may hold NUL
 * bytes). 0 on success, -1 for a bad escape, -2 out of memory. */
static int pct_decode(const char *s, size_t n, bool plus_is_space, char **out, size_t *len)
{
    char *d = malloc(n + 1);
    if (d == NULL) {
        return -2;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? coding_hex_digit(s[i + 1]) : -1;
            int lo = i + 2 < n ? coding_hex_digit(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(d);
                return -1;
            }
            d[k++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (s[i] == '+' && plus_is_space) {
            d[k++] = ' ';
        } else {
            d[k++] = s[i];
        }
    }
    d[k] = '\0';
    *out = d;
    *len = k;
    return 0;
}

/* ---- the request's parts ---- */

typedef struct segment {
    char *s; /* decoded, NUL-terminated */
    size_t len;
} segment;

typedef struct qparam {
    char *name, *value;
    size_t name_len, value_len;
} qparam;

typedef struct params {
    segment seg[MAX_SEGMENTS];
    int nseg;
    /* Decoded path parts, pointing into seg. */
    const char *coll;
    shale_slice id;
    const char *field;
    qparam *q;
    size_t nq;
} params;

static void params_free(params *p)
{
    for (int i = 0; i < p->nseg; i++) {
        free(p->seg[i].s);
    }
    for (size_t i = 0; i < p->nq; i++) {
        free(p->q[i].name);
        free(p->q[i].value);
    }
    free(p->q);
}

/* Splits and decodes the path: 0 ok, 404 (not a route's shape), 400 (bad escape), 500. */
static int split_path(const char *path, params *p)
{
    if (path == NULL || path[0] != '/') {
        return 404;
    }
    const char *s = path + 1;
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t n = slash != NULL ? (size_t)(slash - s) : strlen(s);
        if (n == 0 || p->nseg == MAX_SEGMENTS) {
            return 404;
        }
        segment *g = &p->seg[p->nseg];
        int rc = pct_decode(s, n, false, &g->s, &g->len);
        if (rc != 0) {
            return rc == -1 ? 400 : 500;
        }
        p->nseg++;
        if (g->len == 0) {
            return 404;
        }
        if (slash == NULL) {
            return 0;
        }
        s = slash + 1;
    }
}

/* Splits and decodes the query string into p->q: 0, 400 or 500. Empty pieces ("a=1&&b=2") are
 * skipped; a piece without '=' has the empty value. */
static int split_query(const char *query, params *p)
{
    if (query == NULL || query[0] == '\0') {
        return 0;
    }
    size_t cap = 1;
    for (const char *c = query; *c != '\0'; c++) {
        cap += *c == '&';
    }
    p->q = calloc(cap, sizeof *p->q);
    if (p->q == NULL) {
        return 500;
    }
    const char *s = query;
    for (;;) {
        const char *amp = strchr(s, '&');
        size_t n = amp != NULL ? (size_t)(amp - s) : strlen(s);
        if (n > 0) {
            const char *eq = memchr(s, '=', n);
            size_t nn = eq != NULL ? (size_t)(eq - s) : n;
            qparam *q = &p->q[p->nq];
            int rc = pct_decode(s, nn, true, &q->name, &q->name_len);
            if (rc == 0) {
                const char *v = eq != NULL ? eq + 1 : s + n;
                rc = pct_decode(v, (size_t)(s + n - v), true, &q->value, &q->value_len);
                if (rc != 0) {
                    free(q->name);
                }
            }
            if (rc != 0) {
                return rc == -1 ? 400 : 500;
            }
            p->nq++;
        }
        if (amp == NULL) {
            return 0;
        }
        s = amp + 1;
    }
}

static bool seg_is(const segment *g, const char *lit)
{
    return g->len == strlen(lit) && memcmp(g->s, lit, g->len) == 0;
}

/* ---- routes ---- */

typedef enum route_id {
    R_HEALTH,
    R_STATS,
    R_METRICS,
    R_TXN,
    R_COLLS,
    R_COLL,
    R_BATCH,
    R_DOC,
    R_FIND,
    R_STREAM,
    R_INDEXES,
    R_INDEX,
    R_QUERY,
    R_BACKUP,
    R_NONE,
} route_id;

typedef void handler_fn(http_api *api, const http_request *req, params *p, http_response *r);

typedef struct route {
    route_id id;
    http_method method;
    const char *name; /* the metrics label */
    handler_fn *fn;
} route;

/* A fixed path segment and the route it names. */
typedef struct seg_route {
    const char *name;
    route_id id;
} seg_route;

static route_id seg_lookup(const segment *g, const seg_route *tab, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (seg_is(g, tab[i].name)) {
            return tab[i].id;
        }
    }
    return R_NONE;
}

/* Which route a path is, filling the path parameters: /top, /collections/{c}/sub,
 * /collections/{c}/item/{x}. */
static route_id match(params *p)
{
    static const seg_route top[] = {{"health", R_HEALTH},
                                    {"stats", R_STATS},
                                    {"metrics", R_METRICS},
                                    {"transaction", R_TXN},
                                    {"collections", R_COLLS}};
    static const seg_route sub[] = {{"batch", R_BATCH},
                                    {"find", R_FIND},
                                    {"find_with_stream", R_STREAM},
                                    {"indexes", R_INDEXES},
                                    {"query", R_QUERY}};
    static const seg_route item[] = {{"documents", R_DOC}, {"indexes", R_INDEX}};
    segment *g = p->seg;
    if (p->nseg == 1) {
        return seg_lookup(&g[0], top, sizeof top / sizeof top[0]);
    }
    if (p->nseg == 2 && seg_is(&g[0], "admin") && seg_is(&g[1], "backup")) {
        return R_BACKUP;
    }
    if (!seg_is(&g[0], "collections")) {
        return R_NONE;
    }
    p->coll = g[1].s;
    if (p->nseg == 2) {
        return R_COLL;
    }
    if (p->nseg == 3) {
        return seg_lookup(&g[2], sub, sizeof sub / sizeof sub[0]);
    }
    route_id id = seg_lookup(&g[2], item, sizeof item / sizeof item[0]);
    if (id == R_DOC) {
        p->id = (shale_slice){g[3].s, g[3].len};
    } else if (id == R_INDEX) {
        p->field = g[3].s;
    }
    return id;
}

/* A collection name or field from the path must be a C string: a decoded NUL is refused here
 * (the library would see a shorter name). */
static bool check_cstr(http_response *r, const char *what, const char *s, const segment *g)
{
    if (strlen(s) != g->len) {
        http_fail(r, 400, "invalid %s: it contains a NUL byte", what);
        return false;
    }
    return true;
}

/* 404 unless the collection exists (read routes; see the top of the file). */
static bool coll_exists(http_api *api, const char *coll, http_response *r)
{
    shale_buf tmp = {0};
    shale_error e = {0};
    shale_code rc = shale_index_list(api->db, coll, &tmp, &e);
    shale_buf_free(&tmp);
    if (rc != SHALE_OK) {
        char msg[128];
        snprintf(msg, sizeof msg, "collection '%s' not found", coll);
        http_fail_rc(r, rc, &e, false, msg);
        return false;
    }
    return true;
}

/* ---- jansson helpers ---- */

/* Parses a body that must be a JSON object; 400 otherwise. */
static json_t *parse_object(const http_request *req, http_response *r)
{
    json_error_t je;
    if (req->body.len == 0) {
        http_fail(r, 400, "invalid request body: empty (a JSON object is expected)");
        return NULL;
    }
    json_t *v = json_loadb(req->body.data, req->body.len, JANSSON_FLAGS, &je);
    if (v == NULL) {
        http_fail(r, 400, "invalid request body: %s (line %d, column %d)", je.text, je.line,
                  je.column);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        http_fail(r, 400, "invalid request body: a JSON object is expected");
        return NULL;
    }
    return v;
}

/* The compact JSON text of v into a malloc'ed buffer (NULL when out of memory). */
static char *dump(const json_t *v, size_t *len)
{
    size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    char *s = n > 0 ? malloc(n) : NULL;
    if (s == NULL || json_dumpb(v, s, n, JSON_COMPACT | JSON_ENCODE_ANY) != n) {
        free(s);
        return NULL;
    }
    *len = n;
    return s;
}

/* A JSON string that is a valid C string (no NUL): its text, else NULL. */
static const char *cstring(const json_t *v)
{
    if (!json_is_string(v)) {
        return NULL;
    }
    const char *s = json_string_value(v);
    return strlen(s) == json_string_length(v) ? s : NULL;
}

/* ---- /health, /stats, /metrics ---- */

static void h_health(http_api *api, const http_request *req, params *p, http_response *r)
{
    (void)req;
    (void)p;
    http_json j = {&r->body, false};
    http_json_lit(&j, "{\"status\":\"healthy\",\"message\":\"Shale is running\"");
    if (api->health_facts != NULL && !j.oom) {
        api->health_facts(api->ctx, &r->body);
    }
    http_json_lit(&j, ",\"version\":");
    http_json_cstr(&j, shale_version());
    http_json_lit(&j, "}");
    http_finish(r, 200, HTTP_JSON_TYPE, &j);
}

/* The uint64_t fields of shale_stats, in the header's order. */
#define STAT(f)                                                                                    \
    {                                                                                              \
#f, offsetof(shale_stats, f)                                                               \
    }
static const struct {
    const char *name;
    size_t off;
} stat_u64[] = {
    STAT(live_keys),
    STAT(memory_bytes),
    STAT(log_bytes),
    STAT(log_segments),
    STAT(last_sequence),
    STAT(writes),
    STAT(reads),
    STAT(batches),
    STAT(group_commits),
    STAT(syncs),
    STAT(expired_removed),
    STAT(recovered_records),
    STAT(salvaged_records),
    STAT(salvaged_bytes),
    STAT(truncated_bytes),
    STAT(immutable_memtables),
    STAT(flushes),
    STAT(compactions),
    STAT(flush_bytes),
    STAT(compaction_bytes_read),
    STAT(compaction_bytes_written),
    STAT(user_bytes_written),
    STAT(pending_compaction_bytes),
    STAT(stall_us),
    STAT(slowdown_us),
    STAT(stalls),
    STAT(estimated_live_keys),
    STAT(open_tables),
    STAT(block_cache_bytes),
    STAT(block_cache_capacity),
    STAT(block_cache_hits),
    STAT(block_cache_misses),
    STAT(memtable_budget_bytes),
    STAT(table_bytes_on_disk),
    STAT(snapshots),
    STAT(txns_open),
    STAT(txn_commits),
    STAT(txn_conflicts),
    STAT(txn_rollbacks),
    STAT(flush_failures),
    STAT(compaction_failures),
};
#undef STAT

static void put_levels(http_json *j, const char *name, const uint64_t *v, size_t n)
{
    http_json_fmt(j, ",\"%s\":[", name);
    for (size_t i = 0; i < n; i++) {
        http_json_fmt(j, "%s%" PRIu64, i > 0 ? "," : "", v[i]);
    }
    http_json_lit(j, "]");
}

/* Every field of shale_stats; a double that is not finite (cannot be JSON) as 0. */
static void h_stats(http_api *api, const http_request *req, params *p, http_response *r)
{
    (void)req;
    (void)p;
    shale_stats s;
    shale_error e = {0};
    shale_code rc = shale_stats_get(api->db, &s, &e);
    if (rc != SHALE_OK) {
        http_fail_rc(r, rc, &e, false, NULL);
        return;
    }
    http_json j = {&r->body, false};
    http_json_fmt(&j, "{\"levels\":%" PRIu32, s.levels);
    for (size_t i = 0; i < sizeof stat_u64 / sizeof stat_u64[0]; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&s + stat_u64[i].off, sizeof v);
        http_json_fmt(&j, ",\"%s\":%" PRIu64, stat_u64[i].name, v);
    }
    put_levels(&j, "level_tables", s.level_tables,
               sizeof s.level_tables / sizeof s.level_tables[0]);
    put_levels(&j, "level_bytes", s.level_bytes, sizeof s.level_bytes / sizeof s.level_bytes[0]);
    double wa = isfinite(s.write_amplification) ? s.write_amplification : 0.0;
    double hr = isfinite(s.block_cache_hit_rate) ? s.block_cache_hit_rate : 0.0;
    http_json_fmt(&j, ",\"write_amplification\":%.17g,\"block_cache_hit_rate\":%.17g", wa, hr);
    http_json_lit(&j, s.writes_stopped ? ",\"writes_stopped\":true" : ",\"writes_stopped\":false");
    http_json_lit(&j, ",\"stop_reason\":");
    http_json_str(&j, s.stop_reason, strnlen(s.stop_reason, sizeof s.stop_reason));
    http_json_lit(&j, s.background_error ? ",\"background_error\":true"
                                         : ",\"background_error\":false");
    http_json_lit(&j, s.compactions_halted ? ",\"compactions_halted\":true"
                                           : ",\"compactions_halted\":false");
    http_json_lit(&j, ",\"background_error_msg\":");
    http_json_str(&j, s.background_error_msg,
                  strnlen(s.background_error_msg, sizeof s.background_error_msg));
    http_json_lit(&j, "}");
    http_finish(r, 200, HTTP_JSON_TYPE, &j);
}

static void h_metrics(http_api *api, const http_request *req, params *p, http_response *r)
{
    (void)req;
    (void)p;
    if (api->metrics_text == NULL) {
        http_fail(r, 404, "metrics are not enabled on this server");
        return;
    }
    api->metrics_text(api->ctx, &r->body);
    http_finish(r, 200, METRICS_TYPE, NULL);
}

/* ---- collections ---- */

static void h_colls(http_api *api, const http_request *req, params *p, http_response *r)
{
    (void)req;
    (void)p;
    shale_buf list = {0};
    shale_error e = {0};
    shale_code rc = shale_coll_list(api->db, &list, &e);
    if (rc != SHALE_OK) {
        shale_buf_free(&list);
        http_fail_rc(r, rc, &e, false, NULL);
        return;
    }
    json_t *arr = json_loadb(list.data, list.len, 0, NULL);
    if (!json_is_array(arr)) {
        json_decref(arr);
        shale_buf_free(&list);
        http_fail(r, 500, "the collection list is not a JSON array");
        return;
    }
    http_json j = {&r->body, false};
    http_json_lit(&j, "{\"collections\":");
    http_json_raw(&j, list.data, list.len);
    http_json_fmt(&j, ",\"count\":%zu}", json_array_size(arr));
    json_decref(arr);
    shale_buf_free(&list);
    http_finish(r, 200, HTTP_JSON_TYPE, &j);
}

static void h_insert(http_api *api, const http_request *req, params *p, http_response *r)
{
    shale_error e = {0};
    shale_code rc = shale_doc_insert(api->db, p->coll, req->body, &r->body, &e);
    if (rc != SHALE_OK) {
        http_fail_rc(r, rc, &e, true, NULL);
        return;
    }
    http_finish(r, 201, HTTP_JSON_TYPE, NULL);
}

static void h_coll_drop(http_api *api, const http_request *req, params *p, http_response *r)
{
    (void)req;
    shale_error e = {0};
    shale_code rc = shale_coll_drop(api->db, p->coll, &e);
    if (rc != SHALE_OK) {
        char msg[128];
        snprintf(msg, sizeof msg, "collection '%s' not found", p->coll);
        http_fail_rc(r, rc, &e, false, msg);
        return;
    }
    http_finish(r, 204, HTTP_JSON_TYPE, NULL);
}

/* Slices over re-serialized documents, freed together. */
typedef struct texts {
    shale_slice *s;
    size_t n;
} texts;

static void texts_free(texts *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free((void *)t->s[i].data);
    }
    free(t->s);
    t->s = NULL;
    t->n = 0;
}

static bool texts_add(texts *t, const json_t *v)
{
    size_t len;
    char *s = dump(v, &len);
    if (s == NULL) {
        return false;
    }
    t->s[t->n++] = (shale_slice){s, len};
    return true;
}

/* The "documents" / "operations" array of a batch body: 1 .. 1000 elements, else 400. */
static json_t *batch_array(json_t *body, const char *key, const char *what, http_response *r)
{
    json_t *arr = json_object_get(body, key);
    if (!json_is_array(arr)) {
        http_fail(r, 400, "invalid request body: \"%s\" must be an array", key);
        return NULL;
    }
    if (json_array_size(arr) == 0) {
        http_fail(r, 400, "No %s provided", what);
        return NULL;
    }
    if (json_array_size(arr) > MAX_BATCH) {
        http_fail(r, 400, "Maximum %d %s allowed per batch (got %zu)", MAX_BATCH, what,
                  json_array_size(arr));
        return NULL;
    }
    return arr;
}

static void h_batch_insert(http_api *api, const http_request *req, params *p, http_response *r)
{
    json_t *body = parse_object(req, r);
    json_t *arr = body != NULL ? batch_array(body, "documents", "documents", r) : NULL;
    if (arr == NULL) {
        json_decref(body);
        return;
    }
    size_t n = json_array_size(arr);
    texts t = {calloc(n, sizeof *t.s), 0};
    bool ok = t.s != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        ok = texts_add(&t, json_array_get(arr, i));
    }
    json_decref(body);
    if (!ok) {
        texts_free(&t);
        http_nomem(r);
        return;
    }
    shale_buf docs = {0};
    shale_error e = {0};
    shale_code rc = shale_doc_insert_many(api->db, p->coll, t.s, n, &docs, &e);
    texts_free(&t);
    if (rc != SHALE_OK) {
        shale_buf_free(&docs);
        http_fail_rc(r, rc, &e, true, NULL);
        return;
    }
    http_json j = {&r->body, false};
    http_json_fmt(&j,
                  "{\"success\":true,\"message\":\"Successfully inserted %zu documents\","
                  "\"inserted_count\":%zu,\"collection\":",
                  n, n);
    http_json_cstr(&j, p->coll);
    http_json_lit(&j, ",\"documents\":");
    http_json_raw(&j, docs.data, docs.len);
    http_json_lit(&j, "}");
    shale_buf_free(&docs);
    http_finish(r, 201, HTTP_JSON_TYPE, &j);
}

/* Batch update failure: the error body, plus go-db's counters (all or nothing: nothing was
 * updated, so every operation counts as failed). */
static void batch_update_failed(http_response *r, const char *coll, size_t n, int status,
                                const char *why)
{
    char msg[512];
    snprintf(msg, sizeof msg,
             "batch update is all or nothing: none of the %zu documents was updated "
             "(failed_count %zu): %s",
             n, n, why);
    shale_buf extra = {0};
    http_json j = {&extra, false};
    http_json_fmt(&j,
                  ",\"success\":false,\"updated_count\":0,\"failed_count\":%zu,\"collection\":", n);
    http_json_cstr(&j, coll);
    http_json_raw(&j, "", 1); /* the NUL */
    http_fail_extra(r, status, msg, j.oom ? NULL : extra.data);
    shale_buf_free(&extra);
}

static void h_batch_update(http_api *api, const http_request *req, params *p, http_response *r)
{
    json_t *body = parse_object(req, r);
    json_t *arr = body != NULL ? batch_array(body, "operations", "operations", r) : NULL;
    if (arr == NULL) {
        json_decref(body);
        return;
    }
    size_t n = json_array_size(arr);
    texts patches = {calloc(n, sizeof *patches.s), 0};
    shale_slice *ids = calloc(n, sizeof *ids);
    bool ok = patches.s != NULL && ids != NULL;
    int bad = 0;
    for (size_t i = 0; ok && bad == 0 && i < n; i++) {
        json_t *op = json_array_get(arr, i);
        json_t *id = json_object_get(op, "id");
        json_t *upd = json_object_get(op, "updates");
        if (!json_is_object(op) || !json_is_string(id) || !json_is_object(upd)) {
            char why[160];
            snprintf(why, sizeof why,
                     "operation %zu: an object with \"id\" (a string) and \"updates\" (an "
                     "object) is expected",
                     i);
            batch_update_failed(r, p->coll, n, 400, why);
            bad = 1;
            break;
        }
        ids[i] = (shale_slice){json_string_value(id), json_string_length(id)};
        ok = texts_add(&patches, upd);
    }
    shale_buf docs = {0};
    shale_error e = {0};
    shale_code rc = SHALE_OK;
    if (ok && bad == 0) {
        rc = shale_doc_update_many(api->db, p->coll, ids, patches.s, n, &docs, &e);
    }
    json_decref(body); /* after the call: ids point into it */
    texts_free(&patches);
    free(ids);
    if (bad != 0) {
        shale_buf_free(&docs);
        return;
    }
    if (!ok) {
        shale_buf_free(&docs);
        http_nomem(r);
        return;
    }
    if (rc != SHALE_OK) {
        shale_buf_free(&docs);
        batch_update_failed(r, p->coll, n, http_status_of(rc, true),
                            e.msg[0] != '\0' ? e.msg : shale_strerror(rc));
        return;
    }
    http_json j = {&r->body, false};
    http_json_fmt(&j,
                  "{\"success\":true,\"message\":\"Successfully updated %zu documents\","
                  "\"updated_count\":%zu,\"failed_count\":0,\"collection\":",
                  n, n);
    http_json_cstr(&j, p->coll);
    http_json_lit(&j, ",\"documents\":");
    http_json_raw(&j, docs.data, docs.len);
    http_json_lit(&j, "}");
    shale_buf_free(&docs);
    http_finish(r, 200, HTTP_JSON_TYPE, &j);
}

/* ---- documents by id ---- */

static void doc_not_found_msg(char *msg, size_t cap, const params *p)
{
    snprintf(msg, cap, "document '%.*s' not found in collection '%s'",
             p->id.len > 200 ? 200 : (int)p->id.len, (const char *)p->id.data, p->coll);
}

static void h_doc(http_api *api, const http_request *req, params *p, http_response *r)
{
    shale_error e = {0};
    shale_code rc;
    int status = 200;
    switch (req->method) {
    case HTTP_PATCH:
        rc = shale_doc_update(api->db, p->coll, p->id, req->body, &r->body, &e);
        break;
    case HTTP_PUT:
        rc = shale_doc_replace(api->db, p->coll, p->id, req->body, &r->body, &e);
        break;
    case HTTP_DELETE:
        rc = shale_doc_delete(api->db, p->coll, p->id, &e);
        status = 204;
        break;
    default:
        rc = shale_doc_get(api->db, p->coll, p->id, &r->body, &e);
        break;
    }
    if (rc != SHALE_OK) {
        char msg[320];
        doc_not_found_msg(msg, sizeof msg, p);
        http_fail_rc(r, rc, &e, true, msg);
        return;
    }
    if (status == 204) {
        r->body.len = 0;
    }
    http_finish(r, status, HTTP_JSON_TYPE, NULL);
}

/* ---- find ---- */

/* A decimal integer (digits only, no sign); false if not one or over max. */
static bool parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* The query of GET find / find_with_stream from the query string: 0 ok, else the response is
 * filled. The slices point into p. */
typedef struct get_query {
    shale_doc_query q;
    shale_slice names[MAX_EQ_PARAMS], values[MAX_EQ_PARAMS];
} get_query;

static bool limit_ok(uint64_t v, http_response *r)
{
    if (v > MAX_LIMIT) {
        http_fail(r, 400, "limit %" PRIu64 " is out of range: 1 .. %d (0 or none means 50)", v,
                  MAX_LIMIT);
        return false;
    }
    return true;
}

static bool build_get_query(params *p, bool paged, get_query *g, http_response *r)
{
    bool seen[4] = {false, false, false, false};
    static const char *const paging[4] = {"limit", "offset", "after", "before"};
    memset(&g->q, 0, sizeof g->q);
    for (size_t i = 0; i < p->nq; i++) {
        qparam *q = &p->q[i];
        int k = 0;
        while (k < 4 && !(q->name_len == strlen(paging[k]) && strcmp(q->name, paging[k]) == 0)) {
            k++;
        }
        if (k < 4) {
            if (seen[k] || !paged) {
                continue; /* go-db: the first value; the stream ignores paging */
            }
            seen[k] = true;
            uint64_t v;
            shale_slice val = {q->value, q->value_len};
            if (k == 0 && q->value_len > 0) {
                if (!parse_uint(q->value, q->value_len, UINT64_MAX, &v)) {
                    http_fail(r, 400, "limit must be a whole number from 1 to %d (0 means 50)",
                              MAX_LIMIT);
                    return false;
                }
                if (!limit_ok(v, r)) {
                    return false;
                }
                g->q.limit = (uint32_t)v;
            } else if (k == 1 && q->value_len > 0) {
                if (!parse_uint(q->value, q->value_len, UINT64_MAX, &v)) {
                    http_fail(r, 400, "offset must be a whole number");
                    return false;
                }
                g->q.offset = v;
            } else if (k == 2) {
                g->q.after = val;
            } else if (k == 3) {
                g->q.before = val;
            }
            continue;
        }
        if (q->name_len == 0) {
            http_fail(r, 400, "a query parameter has an empty name");
            return false;
        }
        bool dup = false;
        for (size_t m = 0; m < g->q.neq && !dup; m++) {
            dup = g->names[m].len == q->name_len &&
                  memcmp(g->names[m].data, q->name, q->name_len) == 0;
        }
        if (dup) {
            continue; /* go-db takes the first value */
        }
        if (g->q.neq == MAX_EQ_PARAMS) {
            http_fail(r, 400, "too many query parameters (at most %d filters)", MAX_EQ_PARAMS);
            return false;
        }
        g->names[g->q.neq] = (shale_slice){q->name, q->name_len};
        g->values[g->q.neq] = (shale_slice){q->value, q->value_len};
        g->q.neq++;
    }
    g->q.eq_names = g->names;
    g->q.eq_values = g->values;
    return true;
}

/* Runs a page query and answers with the library's page. */
static void run_find(http_api *api, const char *coll, const shale_doc_query *q, bool explain,
                     http_response *r)
{
    if (!coll_exists(api, coll, r)) {
        return;
    }
    shale_error e = {0};
    shale_code rc = explain ? shale_doc_explain(api->db, coll, q, &r->body, &e)
                            : shale_doc_find(api->db, coll, q, &r->body, &e);
    if (rc != SHALE_OK) {
        http_fail_rc(r, rc, &e, false, NULL);
        return;
    }
    http_finish(r, 200, HTTP_JSON_TYPE, NULL);
}

static void h_find(http_api *api, const http_request *req, params *p, http_response *r)
{
    (void)req;
    get_query *g = malloc(sizeof *g);
    if (g == NULL) {
        http_nomem(r);
        return;
    }
    if (build_get_query(p, true, g, r)) {
        run_find(api, p->coll, &g->q, false, r);
    }
    free(g);
}

/* ---- find_with_stream ---- */

static bool wants_ndjson(const char *accept)
{
    return accept != NULL && strcasestr(accept, HTTP_NDJSON_TYPE) != NULL;
}

static void h_stream(http_api *api, const http_request *req, params *p, http_response *r)
{
    get_query *g = malloc(sizeof *g);
    if (g == NULL) {
        http_nomem(r);
        return;
    }
    shale_doc_cursor *cur = NULL;
    shale_error e = {0};
    shale_code rc = SHALE_OK;
    bool ok = build_get_query(p, false, g, r) && coll_exists(api, p->coll, r);
    if (ok) {
        rc = shale_doc_cursor_open(api->db, p->coll, &g->q, &cur, &e);
    }
    free(g); /* the cursor copied the filter */
    if (!ok) {
        return;
    }
    if (rc != SHALE_OK) {
        http_fail_rc(r, rc, &e, false, NULL);
        return;
    }
    bool ndjson = wants_ndjson(req->accept);
    if (req->method == HTTP_HEAD) {
        shale_doc_cursor_close(cur); /* no body: nothing to stream */
    } else if ((r->stream = http_stream_new(cur, ndjson)) == NULL) {
        shale_doc_cursor_close(cur);
        http_nomem(r);
        return;
    }
    http_finish(r, 200, ndjson ? HTTP_NDJSON_TYPE : HTTP_JSON_TYPE, NULL);
}

/* ---- indexes ---- */

static void h_indexes(http_api *api, const http_request *req, params *p, http_response *r)
{
    (void)req;
    shale_buf list = {0};
    shale_error e = {0};
    shale_code rc = shale_index_list(api->db, p->coll, &list, &e);
    if (rc != SHALE_OK) {
        shale_buf_free(&list);
        char msg[128];
        snprintf(msg, sizeof msg, "collection '%s' not found", p->coll);
        http_fail_rc(r, rc, &e, false, msg);
        return;
    }
    json_t *arr = json_loadb(list.data, list.len, JSON_ALLOW_NUL, NULL);
    if (!json_is_array(arr)) {
        json_decref(arr);
        shale_buf_free(&list);
        http_fail(r, 500, "the index list is not a JSON array");
        return;
    }
    http_json j = {&r->body, false};
    http_json_lit(&j, "{\"success\":true,\"collection\":");
    http_json_cstr(&j, p->coll);
    http_json_lit(&j, ",\"indexes\":[");
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        json_t *f = json_object_get(json_array_get(arr, i), "field");
        if (i > 0) {
            http_json_lit(&j, ",");
        }
        http_json_str(&j, json_string_value(f) != NULL ? json_string_value(f) : "",
                      json_string_value(f) != NULL ? json_string_length(f) : 0);
    }
    http_json_fmt(&j, "],\"index_count\":%zu,\"details\":", n);
    http_json_raw(&j, list.data, list.len);
    http_json_lit(&j, "}");
    json_decref(arr);
    shale_buf_free(&list);
    http_finish(r, 200, HTTP_JSON_TYPE, &j);
}

static void h_index(http_api *api, const http_request *req, params *p, http_response *r)
{
    if (!check_cstr(r, "field", p->field, &p->seg[3])) {
        return;
    }
    shale_error e = {0};
    if (req->method == HTTP_DELETE) {
        shale_code rc = shale_index_drop(api->db, p->coll, p->field, &e);
        if (rc != SHALE_OK) {
            char msg[400];
            snprintf(msg, sizeof msg, "index '%.256s' not found in collection '%s'", p->field,
                     p->coll);
            http_fail_rc(r, rc, &e, false, msg);
            return;
        }
        http_finish(r, 204, HTTP_JSON_TYPE, NULL);
        return;
    }
    shale_code rc = shale_index_create(api->db, p->coll, p->field, &e);
    if (rc != SHALE_OK) {
        http_fail_rc(r, rc, &e, false, NULL);
        return;
    }
    http_json j = {&r->body, false};
    http_json_lit(&j,
                  "{\"success\":true,\"message\":\"Index created successfully\",\"collection\":");
    http_json_cstr(&j, p->coll);
    http_json_lit(&j, ",\"field\":");
    http_json_cstr(&j, p->field);
    http_json_lit(&j, "}");
    http_finish(r, 201, HTTP_JSON_TYPE, &j);
}

/* ---- POST query ---- */

/* "sort" / "fields": a string "a,-b" or an array of strings, joined with ','. Appends to out
 * (NUL-terminated); false (response filled) when it is neither. */
static bool list_param(const json_t *v, const char *key, shale_buf *out, http_response *r)
{
    http_json j = {out, false};
    if (json_is_string(v)) {
        http_json_raw(&j, json_string_value(v), json_string_length(v));
    } else if (json_is_array(v)) {
        size_t i;
        json_t *el;
        json_array_foreach(v, i, el)
        {
            if (!json_is_string(el) || json_string_length(el) == 0) {
                http_fail(r, 400, "\"%s\": element %zu must be a non-empty string", key, i);
                return false;
            }
            if (i > 0) {
                http_json_raw(&j, ",", 1);
            }
            http_json_raw(&j, json_string_value(el), json_string_length(el));
        }
    } else if (!json_is_null(v)) {
        http_fail(r, 400, "\"%s\" must be a string (\"a,-b\") or an array of strings", key);
        return false;
    }
    if (j.oom) {
        http_nomem(r);
        return false;
    }
    return true;
}

static bool uint_param(const json_t *v, const char *key, uint64_t max, uint64_t *out,
                       http_response *r)
{
    if (json_is_null(v)) {
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max) {
        if (strcmp(key, "limit") == 0 && json_is_integer(v) && json_integer_value(v) > 0) {
            return limit_ok((uint64_t)json_integer_value(v), r);
        }
        http_fail(r, 400, "\"%s\" must be a whole number from 0 to %" PRIu64, key, max);
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static bool cursor_param(const json_t *v, const char *key, shale_slice *out, http_response *r)
{
    if (json_is_null(v)) {
        return true;
    }
    if (!json_is_string(v)) {
        http_fail(r, 400, "\"%s\" must be a cursor string", key);
        return false;
    }
    *out = (shale_slice){json_string_value(v), json_string_length(v)};
    return true;
}

static void h_query(http_api *api, const http_request *req, params *p, http_response *r)
{
    json_t *body = parse_object(req, r);
    if (body == NULL) {
        return;
    }
    shale_doc_query q = {0};
    shale_buf sort = {0}, fields = {0};
    char *filter = NULL;
    bool explain = false;
    bool ok = true;
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        uint64_t n = 0;
        if (strcmp(key, "filter") == 0) {
            if (json_is_null(v)) {
                continue;
            }
            if (!json_is_object(v)) {
                http_fail(r, 400, "\"filter\" must be a JSON object");
                ok = false;
            } else if ((filter = dump(v, &q.filter.len)) == NULL) {
                http_nomem(r);
                ok = false;
            }
            q.filter.data = filter;
        } else if (strcmp(key, "sort") == 0) {
            ok = list_param(v, key, &sort, r);
        } else if (strcmp(key, "fields") == 0) {
            ok = list_param(v, key, &fields, r);
        } else if (strcmp(key, "limit") == 0) {
            ok = uint_param(v, key, MAX_LIMIT, &n, r);
            q.limit = (uint32_t)n;
        } else if (strcmp(key, "offset") == 0) {
            ok = uint_param(v, key, UINT64_MAX >> 1, &q.offset, r);
        } else if (strcmp(key, "after") == 0) {
            ok = cursor_param(v, key, &q.after, r);
        } else if (strcmp(key, "before") == 0) {
            ok = cursor_param(v, key, &q.before, r);
        } else if (strcmp(key, "explain") == 0) {
            if (!json_is_boolean(v)) {
                http_fail(r, 400, "\"explain\" must be true or false");
                ok = false;
            }
            explain = json_is_true(v);
        } else {
            http_fail(r, 400,
                      "unknown field \"%.100s\" in the query (filter, sort, fields, limit, offset, "
                      "after, before, explain)",
                      key);
            ok = false;
        }
        if (!ok) {
            break;
        }
    }
    if (ok) {
        q.sort = (shale_slice){sort.data, sort.len};
        q.fields = (shale_slice){fields.data, fields.len};
        run_find(api, p->coll, &q, explain, r);
    }
    json_decref(body);
    free(filter);
    shale_buf_free(&sort);
    shale_buf_free(&fields);
}

/* ---- POST /transaction ---- */

static const struct {
    const char *name;
    shale_doc_op_kind kind;
} op_kinds[] = {{"insert", SHALE_DOC_INSERT},
                {"update", SHALE_DOC_UPDATE},
                {"replace", SHALE_DOC_REPLACE},
                {"delete", SHALE_DOC_DELETE}};

/* Reads and checks operation i into out (the slices point into op; the document is re-serialized
 * into docs); false (response filled) when it is malformed. The library checks the rest (the
 * collection name, the _id, the document) and names the operation in its message. */
static bool parse_op(json_t *op, size_t i, shale_doc_op *out, texts *docs, http_response *r)
{
    if (!json_is_object(op)) {
        http_fail(r, 400, "operation %zu: a JSON object is expected", i);
        return false;
    }
    const char *kind = cstring(json_object_get(op, "op"));
    size_t k = 0;
    while (kind != NULL && k < 4 && strcmp(kind, op_kinds[k].name) != 0) {
        k++;
    }
    if (kind == NULL || k == 4) {
        http_fail(r, 400,
                  "operation %zu: \"op\" must be \"insert\", \"update\", \"replace\" or "
                  "\"delete\"",
                  i);
        return false;
    }
    out->kind = op_kinds[k].kind;
    out->coll = cstring(json_object_get(op, "collection"));
    if (out->coll == NULL) {
        http_fail(r, 400, "operation %zu: \"collection\" must be a collection name", i);
        return false;
    }
    if (out->kind != SHALE_DOC_INSERT) {
        json_t *id = json_object_get(op, "id");
        if (!json_is_string(id)) {
            http_fail(r, 400, "operation %zu: \"id\" must be a string (%s)", i, kind);
            return false;
        }
        out->id = (shale_slice){json_string_value(id), json_string_length(id)};
    }
    if (out->kind != SHALE_DOC_DELETE) {
        json_t *doc = json_object_get(op, "document");
        if (!json_is_object(doc)) {
            http_fail(r, 400, "operation %zu: \"document\" must be a JSON object (%s)", i, kind);
            return false;
        }
        if (!texts_add(docs, doc)) {
            http_nomem(r);
            return false;
        }
        out->json = docs->s[docs->n - 1];
    }
    return true;
}

static void h_txn(http_api *api, const http_request *req, params *p, http_response *r)
{
    (void)p;
    json_t *body = parse_object(req, r);
    if (body == NULL) {
        return;
    }
    json_t *arr = json_object_get(body, "operations");
    size_t n = json_array_size(arr);
    shale_doc_op *ops = NULL;
    texts docs = {NULL, 0};
    shale_buf out = {0};
    if (!json_is_array(arr) || n == 0) {
        http_fail(r, 400, "\"operations\" must be a non-empty array");
        goto done;
    }
    if (n > MAX_BATCH) {
        http_fail(r, 400, "a transaction has at most %d operations (got %zu)", MAX_BATCH, n);
        goto done;
    }
    ops = calloc(n, sizeof *ops);
    docs.s = calloc(n, sizeof *docs.s);
    if (ops == NULL || docs.s == NULL) {
        http_nomem(r);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (!parse_op(json_array_get(arr, i), i, &ops[i], &docs, r)) {
            goto done;
        }
    }
    shale_error e = {0};
    shale_code rc = shale_doc_apply(api->db, ops, n, &out, &e);
    if (rc != SHALE_OK) {
        http_fail_rc(r, rc, &e, true, NULL); /* the message names the operation */
        goto done;
    }
    http_json j = {&r->body, false};
    http_json_lit(&j, "{\"success\":true,\"results\":");
    http_json_raw(&j, out.data, out.len);
    http_json_lit(&j, "}");
    http_finish(r, 200, HTTP_JSON_TYPE, &j);
done:
    shale_buf_free(&out);
    texts_free(&docs);
    free(ops);
    json_decref(body); /* after the call: the operations point into it */
}

/* POST /admin/backup [{"keep": N}]: a backup into the server's --backup-dir (shale_backup),
 * then, with keep, every backup but the newest N deleted (shale_backup_purge). Served on the
 * worker that read it: that worker's other requests wait while new tables are copied. */
static void h_backup(http_api *api, const http_request *req, params *p, http_response *r)
{
    (void)p;
    if (api->backup_dir == NULL) {
        http_fail(r, 404, "backups over HTTP are off: start the server with --backup-dir DIR");
        return;
    }
    json_int_t keep = 0;
    if (req->body.len > 0) {
        json_t *body = parse_object(req, r);
        if (body == NULL) {
            return;
        }
        json_t *k = json_object_get(body, "keep");
        bool bad = k != NULL && (!json_is_integer(k) || json_integer_value(k) < 1 ||
                                 json_integer_value(k) > UINT32_MAX);
        keep = bad || k == NULL ? 0 : json_integer_value(k);
        json_decref(body);
        if (bad) {
            http_fail(r, 400, "\"keep\" must be an integer from 1 to %u", UINT32_MAX);
            return;
        }
    }
    shale_backup_info info;
    shale_error e = {0};
    shale_code rc = shale_backup(api->db, api->backup_dir, &info, &e);
    if (rc == SHALE_OK && keep > 0) {
        rc = shale_backup_purge(api->backup_dir, (uint32_t)keep, &e);
    }
    if (rc != SHALE_OK) {
        http_fail_rc(r, rc, &e, false, NULL);
        return;
    }
    http_json j = {&r->body, false};
    http_json_fmt(&j,
                  "{\"success\":true,\"id\":%" PRIu64 ",\"seq\":%" PRIu64
                  ",\"created_at_ms\":%" PRIu64 ",\"files\":%" PRIu64 ",\"bytes\":%" PRIu64
                  ",\"new_files\":%" PRIu64 ",\"new_bytes\":%" PRIu64 "}",
                  info.id, info.seq, info.created_at_ms, info.files, info.bytes, info.new_files,
                  info.new_bytes);
    http_finish(r, 201, HTTP_JSON_TYPE, &j);
}

/* ---- dispatch ---- */

static const route routes[] = {
    {R_HEALTH, HTTP_GET, "GET /health", h_health},
    {R_STATS, HTTP_GET, "GET /stats", h_stats},
    {R_METRICS, HTTP_GET, "GET /metrics", h_metrics},
    {R_TXN, HTTP_POST, "POST /transaction", h_txn},
    {R_COLLS, HTTP_GET, "GET /collections", h_colls},
    {R_COLL, HTTP_POST, "POST /collections/{c}", h_insert},
    {R_COLL, HTTP_DELETE, "DELETE /collections/{c}", h_coll_drop},
    {R_BATCH, HTTP_POST, "POST /collections/{c}/batch", h_batch_insert},
    {R_BATCH, HTTP_PATCH, "PATCH /collections/{c}/batch", h_batch_update},
    {R_DOC, HTTP_GET, "GET /collections/{c}/documents/{id}", h_doc},
    {R_DOC, HTTP_PATCH, "PATCH /collections/{c}/documents/{id}", h_doc},
    {R_DOC, HTTP_PUT, "PUT /collections/{c}/documents/{id}", h_doc},
    {R_DOC, HTTP_DELETE, "DELETE /collections/{c}/documents/{id}", h_doc},
    {R_FIND, HTTP_GET, "GET /collections/{c}/find", h_find},
    {R_STREAM, HTTP_GET, "GET /collections/{c}/find_with_stream", h_stream},
    {R_INDEXES, HTTP_GET, "GET /collections/{c}/indexes", h_indexes},
    {R_INDEX, HTTP_POST, "POST /collections/{c}/indexes/{field}", h_index},
    {R_INDEX, HTTP_DELETE, "DELETE /collections/{c}/indexes/{field}", h_index},
    {R_QUERY, HTTP_POST, "POST /collections/{c}/query", h_query},
    {R_BACKUP, HTTP_POST, "POST /admin/backup", h_backup},
};

static const char *const method_names[] = {"GET",    "POST", "PUT",  "PATCH",
                                           "DELETE", "HEAD", "OTHER"};

/* 405 naming the methods the route has (the transport has no Allow header to set). */
static void not_allowed(http_response *r, route_id id, const char *path)
{
    char allowed[64] = "";
    size_t n = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (routes[i].id == id) {
            n += (size_t)snprintf(allowed + n, sizeof allowed - n, "%s%s", n > 0 ? ", " : "",
                                  method_names[routes[i].method]);
        }
    }
    http_fail(r, 405, "method not allowed on %.400s (allowed: %s)", path, allowed);
}

/* Constant-time in the token's bytes: the time depends on the expected token's length only. */
static bool token_ok(const http_api *api, const char *auth)
{
    static const char scheme[] = "Bearer ";
    if (auth == NULL || strncasecmp(auth, scheme, sizeof scheme - 1) != 0) {
        return false;
    }
    const char *got = auth + sizeof scheme - 1;
    while (*got == ' ') {
        got++;
    }
    size_t glen = strlen(got);
    while (glen > 0 && (got[glen - 1] == ' ' || got[glen - 1] == '\t')) {
        glen--;
    }
    unsigned char diff = glen != api->token_len;
    for (size_t i = 0; i < api->token_len; i++) {
        unsigned char g = i < glen ? (unsigned char)got[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)api->token[i]);
    }
    return diff == 0;
}

void http_api_handle(http_api *api, const http_request *req, http_response *resp)
{
    params p;
    memset(&p, 0, sizeof p);
    resp->route = ROUTE_UNMATCHED;
    resp->content_type = HTTP_JSON_TYPE;
    resp->stream = NULL;
    if (api == NULL || req == NULL) {
        http_fail(resp, 500, "http_api_handle: NULL argument");
        return;
    }
    int st = split_path(req->path, &p);
    route_id id = st == 0 ? match(&p) : R_NONE;
    const route *rt = NULL;
    bool known = false;
    http_method m = req->method == HTTP_HEAD ? HTTP_GET : req->method;
    for (size_t i = 0; id != R_NONE && i < sizeof routes / sizeof routes[0]; i++) {
        if (routes[i].id == id) {
            known = true;
            if (routes[i].method == m) {
                rt = &routes[i];
            }
        }
    }
    if (rt != NULL) {
        resp->route = rt->name;
    } else if (known) {
        resp->route = ROUTE_NOT_ALLOW;
    }
    if (api->token != NULL && id != R_HEALTH && !token_ok(api, req->authorization)) {
        http_fail(resp, 401, "missing or wrong token: send \"Authorization: Bearer <token>\"");
        goto out;
    }
    if (st == 400) {
        http_fail(resp, 400, "invalid percent-encoding in the path");
        goto out;
    }
    if (st == 500) {
        http_nomem(resp);
        goto out;
    }
    if (rt == NULL) {
        if (known) {
            not_allowed(resp, id, req->path);
        } else {
            http_fail(resp, 404, "no such route: %.400s", req->path != NULL ? req->path : "");
        }
        goto out;
    }
    if (req->body.len > api->max_body) {
        http_fail(resp, 413, "request body of %zu bytes is over the limit of %zu bytes",
                  req->body.len, api->max_body);
        goto out;
    }
    if (p.coll != NULL && !check_cstr(resp, "collection name", p.coll, &p.seg[1])) {
        goto out;
    }
    st = split_query(req->query, &p);
    if (st != 0) {
        if (st == 400) {
            http_fail(resp, 400, "invalid percent-encoding in the query string");
        } else {
            http_nomem(resp);
        }
        goto out;
    }
    rt->fn(api, req, &p, resp);
out:
    params_free(&p);
}

void http_response_free(http_response *resp)
{
    if (resp == NULL) {
        return;
    }
    shale_buf_free(&resp->body);
    http_stream_free(resp->stream);
    resp->stream = NULL;
}

shale_code http_api_new(const http_api_opts *opts, http_api **out, shale_error *err)
{
    if (opts == NULL || out == NULL || opts->db == NULL) {
        return err_set(err, SHALE_INVALID, 0, "http_api_new: NULL options, output or database");
    }
    *out = NULL;
    http_api *api = calloc(1, sizeof *api);
    if (api == NULL) {
        return err_nomem(err);
    }
    api->db = opts->db;
    api->max_body = opts->max_body != 0 ? opts->max_body : DEFAULT_BODY;
    api->health_facts = opts->health_facts;
    api->metrics_text = opts->metrics_text;
    api->ctx = opts->ctx;
    if (opts->backup_dir != NULL && opts->backup_dir[0] != '\0') {
        api->backup_dir = strdup(opts->backup_dir);
        if (api->backup_dir == NULL) {
            free(api);
            return err_nomem(err);
        }
    }
    if (opts->auth_token != NULL && opts->auth_token[0] != '\0') {
        api->token = strdup(opts->auth_token);
        if (api->token == NULL) {
            free(api->backup_dir);
            free(api);
            return err_nomem(err);
        }
        api->token_len = strlen(api->token);
    }
    *out = api;
    return SHALE_OK;
}

void http_api_free(http_api *api)
{
    if (api == NULL) {
        return;
    }
    free(api->token);
    free(api->backup_dir);
    free(api);
}
