/*
 * http_util: see http_util.h. The JSON writer, the error bodies and the stream of http_api.c,
 * moved here unchanged so that http_api.c holds the routes only.
 */
#include "server/http_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"

/* ---- JSON output ---- */

void http_json_raw(http_json *j, const void *p, size_t n)
{
    if (!j->oom && n > 0 && buf_append(j->b, p, n, NULL) != SHALE_OK) {
        j->oom = true;
    }
}

void http_json_lit(http_json *j, const char *s)
{
    http_json_raw(j, s, strlen(s));
}

void http_json_fmt(http_json *j, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        j->oom = true; /* only numbers are formatted: cannot happen */
        return;
    }
    http_json_raw(j, tmp, (size_t)n);
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates, at most
 * U+10FFFF), 0 if it is not one. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF) {
            return 0;
        }
    }
    return len;
}

void http_json_str(http_json *j, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    http_json_raw(j, "\"", 1);
    size_t run = 0; /* start of the bytes not yet written */
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        const char *esc = NULL;
        char u[8];
        size_t step = 1;
        if (c == '"') {
            esc = "\\\"";
        } else if (c == '\\') {
            esc = "\\\\";
        } else if (c == '\n') {
            esc = "\\n";
        } else if (c == '\t') {
            esc = "\\t";
        } else if (c == '\r') {
            esc = "\\r";
        } else if (c < 0x20 || c == 0x7F) {
            snprintf(u, sizeof u, "\\u%04x", c);
            esc = u;
        } else if (c >= 0x80) {
            step = utf8_len(p + i, n - i);
            if (step == 0) {
                esc = "\\ufffd";
                step = 1;
            }
        }
        if (esc != NULL) {
            http_json_raw(j, p + run, i - run);
            http_json_lit(j, esc);
            run = i + step;
        }
        i += step;
    }
    http_json_raw(j, p + run, n - run);
    http_json_raw(j, "\"", 1);
}

void http_json_cstr(http_json *j, const char *s)
{
    http_json_str(j, s, strlen(s));
}

/* ---- responses ---- */

static const char *status_kind(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthorized";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 409:
        return "conflict";
    case 413:
        return "too_large";
    case 503:
        return "unavailable";
    default:
        return "internal";
    }
}

void http_finish(http_response *r, int status, const char *type, const http_json *j)
{
    r->content_type = type;
    r->status = status;
    if (j != NULL && j->oom) {
        r->status = 500;
        r->content_type = HTTP_JSON_TYPE;
        shale_buf_free(&r->body);
    }
}

void http_fail_extra(http_response *r, int status, const char *msg, const char *extra)
{
    r->body.len = 0;
    http_json j = {&r->body, false};
    http_json_lit(&j, "{\"error\":\"");
    http_json_lit(&j, status_kind(status));
    http_json_lit(&j, "\",\"message\":");
    http_json_cstr(&j, msg);
    http_json_fmt(&j, ",\"code\":%d", status);
    if (extra != NULL) {
        http_json_lit(&j, extra);
    }
    http_json_lit(&j, "}");
    http_finish(r, status, HTTP_JSON_TYPE, &j);
}

void http_fail(http_response *r, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    http_fail_extra(r, status, msg, NULL);
}

int http_status_of(shale_code rc, bool full_is_413)
{
    switch (rc) {
    case SHALE_INVALID:
        return 400;
    case SHALE_NOT_FOUND:
        return 404;
    case SHALE_CONFLICT:
        return 409;
    case SHALE_FULL:
        return full_is_413 ? 413 : 400;
    case SHALE_CLOSED:
    case SHALE_BUSY:
        return 503;
    default:
        return 500;
    }
}

void http_fail_rc(http_response *r, shale_code rc, const shale_error *e, bool full_is_413,
                  const char *fallback)
{
    const char *msg = e->msg[0] != '\0' ? e->msg : fallback;
    if (msg == NULL || msg[0] == '\0') {
        msg = shale_strerror(rc);
    }
    http_fail_extra(r, http_status_of(rc, full_is_413), msg, NULL);
}

void http_nomem(http_response *r)
{
    http_fail(r, 500, "out of memory");
}

/* ---- the find_with_stream body ---- */

struct http_stream {
    shale_doc_cursor *cur;
    bool ndjson;
    bool started;
    bool done;
    shale_buf doc; /* one document at a time: the stream's memory is constant */
};

http_stream *http_stream_new(shale_doc_cursor *cur, bool ndjson)
{
    http_stream *st = calloc(1, sizeof *st);
    if (st != NULL) {
        st->cur = cur;
        st->ndjson = ndjson;
    }
    return st;
}

shale_code http_stream_next(http_stream *st, shale_buf *out, bool *done, shale_error *err)
{
    if (st == NULL || out == NULL || done == NULL) {
        return err_set(err, SHALE_INVALID, 0, "http_stream_next: NULL argument");
    }
    if (st->done) {
        *done = true;
        return SHALE_OK;
    }
    *done = false;
    shale_code rc = shale_doc_cursor_next(st->cur, &st->doc, err);
    if (rc == SHALE_NOT_FOUND) {
        st->done = true;
        *done = true;
        err_clear(err);
        if (st->ndjson) {
            return SHALE_OK;
        }
        return buf_append(out, st->started ? "]" : "[]", st->started ? 1 : 2, err);
    }
    if (rc != SHALE_OK) {
        st->done = true; /* the stream ends early: the server truncates the body */
        return rc;
    }
    if (!st->ndjson) {
        rc = buf_append(out, st->started ? "," : "[", 1, err);
    }
    st->started = true;
    if (rc == SHALE_OK) {
        rc = buf_append(out, st->doc.data, st->doc.len, err);
    }
    if (rc == SHALE_OK && st->ndjson) {
        rc = buf_append(out, "\n", 1, err);
    }
    return rc;
}

void http_stream_free(http_stream *st)
{
    if (st == NULL) {
        return;
    }
    shale_doc_cursor_close(st->cur);
    shale_buf_free(&st->doc);
    free(st);
}
