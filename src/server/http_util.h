/*
 * http_util: the response side of http_api (http_api.c holds the routes): a JSON writer over a
 * response body, the error bodies and how a library code becomes a status, and the body of GET
 * find_with_stream (an http_stream over a document cursor). Nothing here knows the routes.
 *
 * Names: http_json_* for the writer (as resp.h's resp_w_*), http_* for responses; http_stream_next
 * and http_stream_free are declared in http_api.h (the server calls them).
 *
 * Errors: the writer never fails to its caller: it remembers an allocation failure (oom) and
 * http_finish then turns the response into an empty 500, so builders need no error path.
 *
 * Thread-safety: none needed; every function works on the caller's memory only.
 */
#ifndef SHALE_SERVER_HTTP_UTIL_H
#define SHALE_SERVER_HTTP_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "shale.h"

#include "base/error.h"
#include "server/http_api.h"

#define HTTP_JSON_TYPE   "application/json"
#define HTTP_NDJSON_TYPE "application/x-ndjson"

/* An append-only writer over b (a response body, or any buffer). */
typedef struct http_json {
    shale_buf *b;
    bool oom; /* an append failed: everything after it was dropped */
} http_json;

void http_json_raw(http_json *j, const void *p, size_t n);
void http_json_lit(http_json *j, const char *s);
/* At most 255 bytes of output (numbers, short names); longer sets oom. */
void http_json_fmt(http_json *j, const char *fmt, ...) SHALE_PRINTF(2, 3);
/* A JSON string of s[0, n): escapes quotes, backslashes and control characters, and writes
 * U+FFFD for bytes that are not UTF-8 (messages may quote a client's bytes), so the output is
 * always valid JSON. */
void http_json_str(http_json *j, const char *s, size_t n);
void http_json_cstr(http_json *j, const char *s);

/* The end of every builder: sets status and type (a static string); when j (may be NULL) saw an
 * allocation failure, the response becomes an empty 500 instead. */
void http_finish(http_response *r, int status, const char *type, const http_json *j);
/* Replaces the body with {"error":kind,"message":msg,"code":status + extra}, extra being a raw
 * ",\"k\":v" fragment or NULL; kind is "bad_request", "unauthorized", "not_found",
 * "method_not_allowed", "conflict", "too_large", "unavailable" or "internal". */
void http_fail_extra(http_response *r, int status, const char *msg, const char *extra);
/* The same with a formatted message (cut at 511 bytes). */
void http_fail(http_response *r, int status, const char *fmt, ...) SHALE_PRINTF(3, 4);
/* A library failure's status: SHALE_INVALID 400, SHALE_NOT_FOUND 404, SHALE_CONFLICT 409,
 * SHALE_FULL 413 when full_is_413 (the routes that write documents: the request is too large)
 * else 400, SHALE_CLOSED and SHALE_BUSY 503, anything else (SHALE_IO, SHALE_CORRUPTION,
 * SHALE_NOMEM, ...) 500. */
int http_status_of(shale_code rc, bool full_is_413);
/* A library failure answered with its message, or fallback (may be NULL) when it has none
 * (NOT_FOUND may carry none), or the code's name. */
void http_fail_rc(http_response *r, shale_code rc, const shale_error *e, bool full_is_413,
                  const char *fallback);
void http_nomem(http_response *r); /* 500 "out of memory" */

/* A stream of every document of cur: a JSON array, one document per chunk, or NDJSON (one per
 * line). Takes cur (http_stream_free closes it); NULL when out of memory, cur then still the
 * caller's. */
http_stream *http_stream_new(shale_doc_cursor *cur, bool ndjson);

#endif
