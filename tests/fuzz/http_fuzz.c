/*
 * libFuzzer target for the HTTP/JSON API (src/server/http_api.c, routes in http_api.h), driven
 * through http_api_handle without sockets, against a real database. Built and replayed like
 * every target in tests/fuzz (README.md there).
 *
 * Input: a flag byte, then "path \n query \n body" (the body is everything after the second
 * newline and may hold any bytes; without a second newline there is no query; without a first
 * one the rest is the path). Flag bits 0-2 pick the method (GET POST PUT PATCH DELETE HEAD
 * OTHER GET), bit 3 sends "Accept: application/x-ndjson", bit 4 an Authorization header. The
 * path and query are C strings (cut at a NUL), as the server hands them over.
 *
 * The database lives in a private temporary directory (fuzz_util.h fz_tmpdir) with no log, and
 * starts with fz_people (collection "people", indexed on "age") and fz_items; it is closed,
 * removed and made again every RESET_EVERY requests so it stays small whatever the inputs
 * write. So a replay of one input alone starts from that state, and a run over many inputs
 * sees the effects of earlier ones (as a server would).
 *
 * The target traps unless every response is well-formed: a status in 100..599, a content type
 * and a route label; a streamed body drains to the end; a 204 has no body; a JSON body (or
 * every NDJSON line) is JSON that jansson reads; an error status (>= 400) with a body carries
 * {"error": string, "message": string, "code": the status}, and only a 500 may have no body.
 * A 500 is not a trap (the API promises it only for genuine internal failures, so a 500 from
 * bad input is a finding to report): it is printed to stderr with the input, the first
 * FUZZ_500_LOG times per process.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "server/http_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RESET_EVERY  1000
#define MAX_BODY     65536
#define FUZZ_500_LOG 20
#define MAX_CHUNKS   200000

static shale_db *db;
static http_api *api;
static char db_path[600];
static unsigned calls;

static void db_close(void)
{
    http_api_free(api);
    api = NULL;
    if (db != NULL) {
        shale_error err;
        (void)shale_close(db, &err);
        db = NULL;
    }
}

static void db_open(void)
{
    snprintf(db_path, sizeof db_path, "%s/db", fz_tmpdir());
    (void)fz_rm_rf(db_path);
    db = fz_open_db(db_path);
    fz_seed_docs(db);
    http_api_opts o = {.db = db, .max_body = MAX_BODY};
    shale_error err;
    FZ_CHECK(http_api_new(&o, &api, &err) == SHALE_OK);
}

static void at_exit(void)
{
    db_close();
    fz_tmpdir_cleanup();
}

/* A NUL-terminated copy of s[0, n), cut at its first NUL. */
static char *cstr(const uint8_t *s, size_t n)
{
    const uint8_t *z = memchr(s, 0, n);
    if (z != NULL) {
        n = (size_t)(z - s);
    }
    char *c = malloc(n + 1);
    FZ_CHECK(c != NULL);
    memcpy(c, s, n);
    c[n] = '\0';
    return c;
}

static void log_500(const uint8_t *data, size_t size, const shale_buf *body)
{
    static unsigned logged;
    if (logged++ >= FUZZ_500_LOG) {
        return;
    }
    fprintf(stderr, "http_fuzz: 500 for input \"");
    for (size_t i = 0; i < size && i < 600; i++) {
        if (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '"' && data[i] != '\\') {
            fputc(data[i], stderr);
        } else {
            fprintf(stderr, "\\x%02x", data[i]);
        }
    }
    fprintf(stderr, "\": %.*s\n", (int)(body->len < 400 ? body->len : 400),
            body->data != NULL ? (const char *)body->data : "");
}

static void check_json(const shale_buf *b, int status)
{
    json_error_t je;
    json_t *j = json_loadb(b->data, b->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (j == NULL) {
        fprintf(stderr, "http_fuzz: invalid JSON (%s) in a %d response: %.*s\n", je.text, status,
                (int)(b->len < 400 ? b->len : 400), (const char *)b->data);
    }
    FZ_CHECK(j != NULL);
    if (status >= 400) {
        json_t *e = json_object_get(j, "error");
        json_t *m = json_object_get(j, "message");
        json_t *c = json_object_get(j, "code");
        FZ_CHECK(json_is_object(j) && json_is_string(e) && json_is_string(m));
        FZ_CHECK(json_is_integer(c) && json_integer_value(c) == status);
    }
    json_decref(j);
}

static void check_ndjson(const shale_buf *b)
{
    const char *p = b->data, *end = p + b->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        if (e > p) {
            json_error_t je;
            json_t *j = json_loadb(p, (size_t)(e - p), JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            FZ_CHECK(j != NULL);
            json_decref(j);
        }
        p = nl ? nl + 1 : end;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    if (db == NULL) {
        db_open();
        atexit(at_exit);
    } else if (++calls % RESET_EVERY == 0) {
        db_close();
        db_open();
    }
    static const http_method methods[8] = {HTTP_GET,    HTTP_POST, HTTP_PUT,   HTTP_PATCH,
                                           HTTP_DELETE, HTTP_HEAD, HTTP_OTHER, HTTP_GET};
    uint8_t flags = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    const uint8_t *nl1 = memchr(p, '\n', (size_t)(end - p));
    const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    char *path = cstr(p, (size_t)((nl1 ? nl1 : end) - p));
    char *query = nl2 ? cstr(nl1 + 1, (size_t)(nl2 - nl1 - 1)) : NULL;
    const uint8_t *body = nl2 ? nl2 + 1 : end;
    size_t body_len = (size_t)(end - body);
    /* The body in an exact-size buffer of its own: a read past it is caught. */
    uint8_t *body_copy = malloc(body_len > 0 ? body_len : 1);
    FZ_CHECK(body_copy != NULL);
    if (body_len > 0) {
        memcpy(body_copy, body, body_len);
    }

    http_request req = {
        .method = methods[flags & 7],
        .path = path,
        .query = query,
        .authorization = (flags & 0x10) ? "Bearer fuzz" : NULL,
        .accept = (flags & 0x08) ? "application/x-ndjson" : NULL,
        .body = {body_len > 0 ? body_copy : NULL, body_len},
    };
    http_response resp;
    memset(&resp, 0, sizeof resp);
    http_api_handle(api, &req, &resp);

    FZ_CHECK(resp.status >= 100 && resp.status <= 599);
    FZ_CHECK(resp.content_type != NULL && resp.route != NULL);
    shale_buf all = {0};
    if (resp.stream != NULL) {
        FZ_CHECK(resp.body.len == 0);
        bool done = false;
        shale_buf chunk = {0};
        for (int i = 0; !done; i++) {
            FZ_CHECK(i < MAX_CHUNKS);
            shale_error err = {0};
            chunk.len = 0;
            shale_code rc = http_stream_next(resp.stream, &chunk, &done, &err);
            if (rc != SHALE_OK) {
                fprintf(stderr, "http_fuzz: stream failed: %s\n", err.msg);
                FZ_CHECK(!"the stream of a database that works does not fail");
            }
            FZ_CHECK(buf_append(&all, chunk.data, chunk.len, NULL) == SHALE_OK);
        }
        buf_free(&chunk);
    } else {
        FZ_CHECK(buf_append(&all, resp.body.data, resp.body.len, NULL) == SHALE_OK);
    }
    if (resp.status == 500) {
        log_500(data, size, &all);
    }
    if (resp.status == 204) {
        FZ_CHECK(all.len == 0);
    }
    bool json = strncmp(resp.content_type, "application/json", 16) == 0;
    bool ndjson = strncmp(resp.content_type, "application/x-ndjson", 20) == 0;
    if (all.len == 0) {
        FZ_CHECK(resp.status < 400 || resp.status == 500);
    } else if (json) {
        check_json(&all, resp.status);
    } else if (ndjson) {
        check_ndjson(&all);
    }
    buf_free(&all);
    http_response_free(&resp);
    free(body_copy);
    free(path);
    free(query);
    return 0;
}
