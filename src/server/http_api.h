/*
 * http_api: the HTTP/JSON API of `shale serve` (docs/SERVER.md), transport-free: the server
 * (server.c, on libevent's evhttp) turns a request into an http_request, calls http_api_handle,
 * and sends the http_response (streaming its body chunk by chunk when it has a stream). Tests
 * drive it directly, without sockets.
 *
 * Routes (go-db's, so its clients work unchanged, then ours). {c} is a collection name, {id} a
 * document id, {field} a field path, all percent-decoded from the path:
 *   GET    /health                          200 {"status":"healthy","message":..., + facts}
 *   POST   /collections/{c}                 insert one document, 201 the stored document
 *   POST   /collections/{c}/batch           {"documents":[...]} -> 201 {"success":true,
 *                                           "message","inserted_count","collection","documents"}
 *   PATCH  /collections/{c}/batch           {"operations":[{"id","updates"}]} -> 200 {"success",
 *                                           "message","updated_count","failed_count",
 *                                           "collection","documents"}
 *   GET    /collections/{c}/documents/{id}  200 the document; 404
 *   PATCH  /collections/{c}/documents/{id}  shallow merge, 200 the document; 404
 *   PUT    /collections/{c}/documents/{id}  replace, 200 the document; 404
 *   DELETE /collections/{c}/documents/{id}  204; 404
 *   GET    /collections/{c}/find?f=v&limit=&offset=&after=&before=
 *                                           equality on every other query parameter (go-db's
 *                                           model: a value that parses as a number matches
 *                                           numbers), 200 {"documents","has_next","has_prev",
 *                                           "next_cursor","prev_cursor","total"}
 *   GET    /collections/{c}/find_with_stream?f=v
 *                                           every match, streamed: a JSON array, one document
 *                                           per chunk; NDJSON (one per line) when the request's
 *                                           Accept is application/x-ndjson
 *   GET    /collections/{c}/indexes         200 the list of indexed fields
 *   POST   /collections/{c}/indexes/{field} 201; 400 for _id; 409 when it exists
 *   POST   /collections/{c}/query           body {"filter","sort","fields","limit","offset",
 *                                           "after","before"} -> the find page
 *   GET    /collections                     200 the list of collections
 *   DELETE /collections/{c}                 204; 404
 *   DELETE /collections/{c}/indexes/{field} 204; 404
 *   POST   /transaction                     {"operations":[{"op":"insert"|"update"|"replace"|
 *                                           "delete","collection","id","document"}]}: 1 ..
 *                                           1000 operations on any collections, applied
 *                                           atomically (each sees the earlier ones, as
 *                                           shale_doc_apply): 200 {"success":true,"results":
 *                                           [per operation the stored document, or {"_id":..,
 *                                           "deleted":true}]}; an error names the failing
 *                                           operation ("operation 2: ...")
 *   GET    /stats                           200 the engine's shale_stats as JSON
 *   GET    /metrics                         200 Prometheus text (the server's, via opts)
 * Errors: JSON {"error":<short kind>,"message":<text>,"code":<status>} with 400 (bad input:
 * invalid JSON, limit over 1000, bad cursor, bad name), 401 (a token is set and the request has no
 * "Authorization: Bearer <token>"; /health needs none), 404 (no such route, collection or
 * document), 405 (a route without that method), 409 (conflicts), 413 (body over max_body), 500
 * (only genuine internal failures: SHALE_IO, SHALE_CORRUPTION, ...).
 *
 * Thread-safety: http_api_handle may run on several threads at once (one api, many requests).
 */
#ifndef SHALE_SERVER_HTTP_API_H
#define SHALE_SERVER_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

typedef struct http_api http_api;

typedef struct http_api_opts {
    shale_db *db;
    const char *auth_token; /* NULL or "": no token needed */
    size_t max_body;        /* request bodies above this are 413 (the server also enforces it) */
    /* Facts for /health (appends ,"key":value pairs to an open JSON object; may be NULL) and
     * the Prometheus text for /metrics (may be NULL: 404). */
    void (*health_facts)(void *ctx, shale_buf *out);
    void (*metrics_text)(void *ctx, shale_buf *out);
    void *ctx;
    /* POST /admin/backup writes backups here (shale_backup); NULL or "": the route answers 404.
     * Never taken from the request: a client cannot make the server write anywhere else. */
    const char *backup_dir;
} http_api_opts;

shale_code http_api_new(const http_api_opts *opts, http_api **out, shale_error *err) SHALE_MUST_USE;
void http_api_free(http_api *api);

typedef enum http_method {
    HTTP_GET,
    HTTP_POST,
    HTTP_PUT,
    HTTP_PATCH,
    HTTP_DELETE,
    HTTP_HEAD,
    HTTP_OTHER,
} http_method;

typedef struct http_request {
    http_method method;
    const char *path;          /* raw, still percent-encoded, without the query: "/a/b%20c" */
    const char *query;         /* raw query string after '?', or NULL */
    const char *authorization; /* the header, or NULL */
    const char *accept;        /* the header, or NULL */
    shale_slice body;
} http_request;

/* A streamed body: the server calls next until *done, sending each chunk (chunked encoding). */
typedef struct http_stream http_stream;
/* Appends the next chunk to out (may append nothing and not be done: call again). An error after
 * the head was sent can only end the stream early: the server then closes the connection without
 * the final chunk, so the client sees a truncated body, never a short but valid one. */
shale_code http_stream_next(http_stream *st, shale_buf *out, bool *done,
                            shale_error *err) SHALE_MUST_USE;
void http_stream_free(http_stream *st);

typedef struct http_response {
    int status;
    const char *content_type; /* static string */
    shale_buf body;           /* the whole body, when stream is NULL */
    http_stream *stream;      /* else: the body, chunk by chunk */
    const char *route;        /* static: the route pattern for metrics, "GET /collections/{c}" */
} http_response;

/* Fills resp (zero it first; free with http_response_free). Never fails: every failure is a
 * response (500 when even that cannot be built: body empty). */
void http_api_handle(http_api *api, const http_request *req, http_response *resp);
void http_response_free(http_response *resp);

#endif
