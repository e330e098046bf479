/*
 * resp: the RESP2/RESP3 request parser and reply writers (contract in resp.h).
 *
 * Replies. Every writer computes its whole reply's size first and reserves it with one
 * buf_reserve, so a failed growth leaves `out` exactly as it was (the appends after a successful
 * reserve cannot fail). Error replies are one line: any '\r' or '\n' in the text becomes a space,
 * since a client would otherwise read the rest of the text as the next reply.
 */
#include "server/resp.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/error.h"

/* ---- replies ---- */

/* Longest header: a type byte, "-" and 20 digits of an int64/size_t, "\r\n", NUL. */
#define HDR_MAX 32

/* By hand, not snprintf: every bulk reply has a header, and the format parser was 1% of a
 * pipelined GET's time. */
static size_t fmt_hdr(char *hdr, char type, unsigned long long n)
{
    char digits[20]; /* 2^64 - 1 has 20 */
    size_t nd = 0, len = 0;
    do {
        digits[nd++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    hdr[len++] = type;
    while (nd > 0) {
        hdr[len++] = digits[--nd];
    }
    hdr[len++] = '\r';
    hdr[len++] = '\n';
    return len;
}

/* Appends head, body and tail as one reply: all of it or (on NOMEM) nothing. */
static shale_code put3(shale_buf *out, const void *head, size_t hlen, const void *body, size_t blen,
                       const char *tail, size_t tlen, shale_error *err)
{
    if (blen > SIZE_MAX - hlen - tlen) {
        return err_set(err, SHALE_NOMEM, 0, "reply size overflow: %zu bytes", blen);
    }
    shale_code rc = buf_reserve(out, hlen + blen + tlen, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    /* Cannot fail now: the room is reserved. */
    char *p = (char *)out->data + out->len;
    memcpy(p, head, hlen);
    if (blen > 0) {
        memcpy(p + hlen, body, blen);
    }
    memcpy(p + hlen + blen, tail, tlen);
    out->len += hlen + blen + tlen;
    return SHALE_OK;
}

static shale_code put_str(shale_buf *out, const char *s, shale_error *err)
{
    return put3(out, s, strlen(s), NULL, 0, "", 0, err);
}

static shale_code put_hdr(shale_buf *out, char type, unsigned long long n, shale_error *err)
{
    char hdr[HDR_MAX];
    size_t hlen = fmt_hdr(hdr, type, n);
    return put3(out, hdr, hlen, NULL, 0, "", 0, err);
}

/* Replaces CR and LF by spaces in p[0 .. n): a simple string or error is one line. */
static void one_line(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' || p[i] == '\n') {
            p[i] = ' ';
        }
    }
}

/* "+<s>\r\n" or "-<s>\r\n" with s made one line. */
static shale_code put_line(shale_buf *out, char type, const char *s, shale_error *err)
{
    size_t n = strlen(s);
    size_t start = out->len;
    shale_code rc = put3(out, &type, 1, s, n, "\r\n", 2, err);
    if (rc == SHALE_OK) {
        one_line((char *)out->data + start + 1, n);
    }
    return rc;
}

shale_code resp_w_simple(shale_buf *out, const char *s, shale_error *err)
{
    return put_line(out, '+', s, err);
}

shale_code resp_w_error(shale_buf *out, const char *s, shale_error *err)
{
    /* An error reply's first word is its code ("ERR", "WRONGTYPE"); never send one without. */
    if (s[0] == '\0') {
        s = "ERR";
    }
    return put_line(out, '-', s, err);
}

shale_code resp_w_errorf(shale_buf *out, shale_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return resp_w_error(out, "ERR (unformattable error message)", err);
    }
    if (n == 0) {
        return resp_w_error(out, "", err);
    }
    /* Format straight into the reserved room: "-" + text + NUL (the NUL is overwritten by CR). */
    shale_code rc = buf_reserve(out, (size_t)n + 3, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    char *p = (char *)out->data + out->len;
    p[0] = '-';
    va_start(ap, fmt);
    vsnprintf(p + 1, (size_t)n + 1, fmt, ap);
    va_end(ap);
    one_line(p + 1, (size_t)n);
    p[n + 1] = '\r';
    p[n + 2] = '\n';
    out->len += (size_t)n + 3;
    return SHALE_OK;
}

shale_code resp_w_int(shale_buf *out, int64_t v, shale_error *err)
{
    char hdr[HDR_MAX];
    int n = snprintf(hdr, sizeof(hdr), ":%lld\r\n", (long long)v);
    return put3(out, hdr, (size_t)n, NULL, 0, "", 0, err);
}

shale_code resp_w_bulk(shale_buf *out, shale_slice s, shale_error *err)
{
    char hdr[HDR_MAX];
    size_t hlen = fmt_hdr(hdr, '$', s.len);
    return put3(out, hdr, hlen, s.data, s.len, "\r\n", 2, err);
}

shale_code resp_w_null(shale_buf *out, int proto, shale_error *err)
{
    return put_str(out, proto >= 3 ? "_\r\n" : "$-1\r\n", err);
}

shale_code resp_w_null_array(shale_buf *out, int proto, shale_error *err)
{
    return put_str(out, proto >= 3 ? "_\r\n" : "*-1\r\n", err);
}

shale_code resp_w_array(shale_buf *out, size_t n, shale_error *err)
{
    return put_hdr(out, '*', n, err);
}

shale_code resp_w_map(shale_buf *out, int proto, size_t npairs, shale_error *err)
{
    if (proto >= 3) {
        return put_hdr(out, '%', npairs, err);
    }
    if (npairs > SIZE_MAX / 2) {
        return err_set(err, SHALE_INVALID, 0, "map of %zu pairs is too large", npairs);
    }
    return put_hdr(out, '*', (unsigned long long)npairs * 2, err);
}

shale_code resp_w_set(shale_buf *out, int proto, size_t n, shale_error *err)
{
    return put_hdr(out, proto >= 3 ? '~' : '*', n, err);
}

/* The shortest "%.<p>g" text (p = 15, 16 or 17) that reads back as exactly d, so 0.1 is "0.1"
 * and not "0.10000000000000001". Any decimal of at most 15 significant digits survives a double
 * round trip and %g drops trailing zeros, so "%.15g", when it round-trips, is already the
 * shortest; otherwise 16 or 17 digits (17 always round-trips). Infinities and NaN are spelled
 * "inf", "-inf" and "nan", as Redis does. */
static size_t fmt_double(char *s, size_t cap, double d)
{
    if (isnan(d)) {
        return (size_t)snprintf(s, cap, "nan");
    }
    if (isinf(d)) {
        return (size_t)snprintf(s, cap, d > 0 ? "inf" : "-inf");
    }
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(s, cap, "%.*g", prec, d);
        if (strtod(s, NULL) == d) {
            break;
        }
    }
    return (size_t)n;
}

shale_code resp_w_double(shale_buf *out, int proto, double d, shale_error *err)
{
    char num[40];
    size_t n = fmt_double(num, sizeof(num), d);
    if (proto >= 3) {
        return put3(out, ",", 1, num, n, "\r\n", 2, err);
    }
    return resp_w_bulk(out, (shale_slice){.data = num, .len = n}, err);
}

shale_code resp_w_bool(shale_buf *out, int proto, bool b, shale_error *err)
{
    if (proto >= 3) {
        return put_str(out, b ? "#t\r\n" : "#f\r\n", err);
    }
    return put_str(out, b ? ":1\r\n" : ":0\r\n", err);
}

shale_code resp_w_verbatim(shale_buf *out, int proto, shale_slice s, shale_error *err)
{
    if (proto < 3) {
        return resp_w_bulk(out, s, err);
    }
    if (s.len > SIZE_MAX - 4) {
        return err_set(err, SHALE_NOMEM, 0, "reply size overflow: %zu bytes", s.len);
    }
    char hdr[HDR_MAX + 4];
    size_t hlen = fmt_hdr(hdr, '=', (unsigned long long)s.len + 4);
    memcpy(hdr + hlen, "txt:", 4);
    return put3(out, hdr, hlen + 4, s.data, s.len, "\r\n", 2, err);
}

/* ---- requests ---- */

/*
 * Parsing notes.
 *   - A command starting with '*' is a multibulk, anything else an inline line, as in Redis.
 *   - Lengths are strict: "0" or [1-9][0-9]* (and "-1" for the null multibulk), then CRLF, as
 *     Redis's string2ll reads them: no sign, no leading zeros, no spaces. A length line is judged
 *     byte by byte as it arrives, so a length over its limit fails before its CRLF is in and a
 *     client cannot make us scan an endless digit string.
 *   - Resumption (resp.h, "Resuming"). A multibulk is parsed argument by argument; each whole
 *     argument that fits in argv is stored at once and req->resume_off moves past it, so the
 *     next call starts at the first argument not yet stored: a header or length line is read
 *     again only while it is the unfinished tail (at most ~24 bytes per call), a payload never
 *     (it is skipped by its length). While a command is unfinished argv holds offsets from the
 *     command's start, not pointers: the caller's buffer may move between calls (realloc,
 *     evbuffer_pullup), so nothing that points into it may survive a MORE. They become slices
 *     on OK, in one pass over argc. An inline line is looked for with memchr from where the last
 *     call stopped, over at most max_inline + 2 bytes in all.
 *   - When argv is full the rest of what arrived is still parsed (so an error in it is found
 *     now, as if argv had been big enough) but not stored; if whole arguments past argv_cap
 *     arrived, the MORE asks for min(count, max(2 * argv_cap, arguments received)) slots and
 *     drops the resume state, since the caller need not keep argv's contents when it grows it.
 *     The next call starts the command over: as argv at least doubles each time, those
 *     re-parses add up to O(arguments). Until an argument past argv_cap has wholly arrived
 *     nothing is asked, so a "*1000000\r\n" header alone costs nothing.
 *   - Inline words follow Redis's sdssplitargs exactly, including that it works on a C string:
 *     a NUL byte ends the line (in a quoted word it is an unbalanced quote).
 *   - Inline unescaping writes over the line only when the command is returned (OK), never on a
 *     MORE, so a re-parse of the same bytes sees the original text.
 */

/* The "expected '$', got 'x'" messages, one static string per byte (non-printable as \xHH). */
#define E(c) "expected '$', got '" c "'"
static const char *const got_msg[256] = {
    E("\\x00"), E("\\x01"), E("\\x02"), E("\\x03"), E("\\x04"), E("\\x05"), E("\\x06"), E("\\x07"),
    E("\\x08"), E("\\x09"), E("\\x0a"), E("\\x0b"), E("\\x0c"), E("\\x0d"), E("\\x0e"), E("\\x0f"),
    E("\\x10"), E("\\x11"), E("\\x12"), E("\\x13"), E("\\x14"), E("\\x15"), E("\\x16"), E("\\x17"),
    E("\\x18"), E("\\x19"), E("\\x1a"), E("\\x1b"), E("\\x1c"), E("\\x1d"), E("\\x1e"), E("\\x1f"),
    E(" "),     E("!"),     E("\""),    E("#"),     E("$"),     E("%"),     E("&"),     E("'"),
    E("("),     E(")"),     E("*"),     E("+"),     E(","),     E("-"),     E("."),     E("/"),
    E("0"),     E("1"),     E("2"),     E("3"),     E("4"),     E("5"),     E("6"),     E("7"),
    E("8"),     E("9"),     E(":"),     E(";"),     E("<"),     E("="),     E(">"),     E("?"),
    E("@"),     E("A"),     E("B"),     E("C"),     E("D"),     E("E"),     E("F"),     E("G"),
    E("H"),     E("I"),     E("J"),     E("K"),     E("L"),     E("M"),     E("N"),     E("O"),
    E("P"),     E("Q"),     E("R"),     E("S"),     E("T"),     E("U"),     E("V"),     E("W"),
    E("X"),     E("Y"),     E("Z"),     E("["),     E("\\"),    E("]"),     E("^"),     E("_"),
    E("`"),     E("a"),     E("b"),     E("c"),     E("d"),     E("e"),     E("f"),     E("g"),
    E("h"),     E("i"),     E("j"),     E("k"),     E("l"),     E("m"),     E("n"),     E("o"),
    E("p"),     E("q"),     E("r"),     E("s"),     E("t"),     E("u"),     E("v"),     E("w"),
    E("x"),     E("y"),     E("z"),     E("{"),     E("|"),     E("}"),     E("~"),     E("\\x7f"),
    E("\\x80"), E("\\x81"), E("\\x82"), E("\\x83"), E("\\x84"), E("\\x85"), E("\\x86"), E("\\x87"),
    E("\\x88"), E("\\x89"), E("\\x8a"), E("\\x8b"), E("\\x8c"), E("\\x8d"), E("\\x8e"), E("\\x8f"),
    E("\\x90"), E("\\x91"), E("\\x92"), E("\\x93"), E("\\x94"), E("\\x95"), E("\\x96"), E("\\x97"),
    E("\\x98"), E("\\x99"), E("\\x9a"), E("\\x9b"), E("\\x9c"), E("\\x9d"), E("\\x9e"), E("\\x9f"),
    E("\\xa0"), E("\\xa1"), E("\\xa2"), E("\\xa3"), E("\\xa4"), E("\\xa5"), E("\\xa6"), E("\\xa7"),
    E("\\xa8"), E("\\xa9"), E("\\xaa"), E("\\xab"), E("\\xac"), E("\\xad"), E("\\xae"), E("\\xaf"),
    E("\\xb0"), E("\\xb1"), E("\\xb2"), E("\\xb3"), E("\\xb4"), E("\\xb5"), E("\\xb6"), E("\\xb7"),
    E("\\xb8"), E("\\xb9"), E("\\xba"), E("\\xbb"), E("\\xbc"), E("\\xbd"), E("\\xbe"), E("\\xbf"),
    E("\\xc0"), E("\\xc1"), E("\\xc2"), E("\\xc3"), E("\\xc4"), E("\\xc5"), E("\\xc6"), E("\\xc7"),
    E("\\xc8"), E("\\xc9"), E("\\xca"), E("\\xcb"), E("\\xcc"), E("\\xcd"), E("\\xce"), E("\\xcf"),
    E("\\xd0"), E("\\xd1"), E("\\xd2"), E("\\xd3"), E("\\xd4"), E("\\xd5"), E("\\xd6"), E("\\xd7"),
    E("\\xd8"), E("\\xd9"), E("\\xda"), E("\\xdb"), E("\\xdc"), E("\\xdd"), E("\\xde"), E("\\xdf"),
    E("\\xe0"), E("\\xe1"), E("\\xe2"), E("\\xe3"), E("\\xe4"), E("\\xe5"), E("\\xe6"), E("\\xe7"),
    E("\\xe8"), E("\\xe9"), E("\\xea"), E("\\xeb"), E("\\xec"), E("\\xed"), E("\\xee"), E("\\xef"),
    E("\\xf0"), E("\\xf1"), E("\\xf2"), E("\\xf3"), E("\\xf4"), E("\\xf5"), E("\\xf6"), E("\\xf7"),
    E("\\xf8"), E("\\xf9"), E("\\xfa"), E("\\xfb"), E("\\xfc"), E("\\xfd"), E("\\xfe"), E("\\xff"),
};
#undef E

/* Reads a length line's "<digits>\r\n" starting at buf[*pos]: the value (at most max) and
 * whether it was "-1" (accepted only when null_ok). On OK *pos is past the CRLF. */
static resp_parse_result read_len(const uint8_t *buf, size_t len, size_t *pos, size_t max,
                                  bool null_ok, size_t *val, bool *null)
{
    size_t p = *pos;
    size_t v = 0;
    size_t digits = 0;
    *null = false;
    if (p < len && buf[p] == '-') {
        /* "-1" is the only negative length a client sends (a null multibulk). */
        if (!null_ok) {
            return RESP_PARSE_ERROR;
        }
        if (p + 1 >= len) {
            return RESP_PARSE_MORE;
        }
        if (buf[p + 1] != '1') {
            return RESP_PARSE_ERROR;
        }
        *null = true;
        p += 2;
        digits = 1;
    } else {
        for (; p < len && buf[p] >= '0' && buf[p] <= '9'; p++) {
            size_t d = (size_t)(buf[p] - '0');
            if (digits == 1 && v == 0) {
                return RESP_PARSE_ERROR; /* a leading zero */
            }
            if (v > max / 10 || d > max - v * 10) {
                return RESP_PARSE_ERROR; /* over the limit */
            }
            v = v * 10 + d;
            digits++;
        }
    }
    if (p >= len) {
        return RESP_PARSE_MORE;
    }
    if (digits == 0 || buf[p] != '\r') {
        return RESP_PARSE_ERROR;
    }
    if (p + 1 >= len) {
        return RESP_PARSE_MORE;
    }
    if (buf[p + 1] != '\n') {
        return RESP_PARSE_ERROR;
    }
    *pos = p + 2;
    *val = v;
    return RESP_PARSE_OK;
}

/* argv slots hold offsets from the command's start while it is unfinished (see the notes).
 * GCC and clang convert between uintptr_t and pointers bit for bit. */
static const void *off_ptr(size_t off)
{
    return (const void *)(uintptr_t)off;
}

static size_t ptr_off(const void *ptr)
{
    return (size_t)(uintptr_t)ptr;
}

static void reset_state(resp_request *req)
{
    req->resume_off = 0;
    req->resume_argc = 0;
    req->resume_nargs = 0;
}

void resp_request_reset(resp_request *req)
{
    reset_state(req);
    req->argc = 0;
    req->argv_needed = 0;
}

/* One multibulk at cmd[0] (a '*'), resumed from req's state if it has one. On OK, req->argc is
 * its argument count (0: an empty command), *end is where it ends and, when they fit in argv,
 * the arguments are slices into cmd; the state is cleared. On MORE the state says how far it
 * got, or argv_needed is set and the state cleared (see the notes). *work counts the bytes read,
 * not the payloads skipped. */
static resp_parse_result parse_multibulk(const uint8_t *cmd, size_t len, const resp_limits *lim,
                                         resp_request *req, size_t *end, const char **msg,
                                         size_t *work)
{
    size_t p = 1;       /* the next byte to read */
    size_t n = 0;       /* the declared argument count */
    size_t i = 0;       /* arguments wholly read */
    size_t from = 0;    /* where this call started reading */
    size_t skipped = 0; /* payload bytes at or past `from` skipped by their length */
    resp_parse_result r = RESP_PARSE_OK;
    bool null = false;
    if (req->resume_off > 0 && !NEVER(req->resume_nargs == 0)) {
        p = from = req->resume_off;
        n = req->resume_nargs;
        i = req->resume_argc;
    } else {
        reset_state(req);
        r = read_len(cmd, len, &p, lim->max_args, true, &n, &null);
        if (r != RESP_PARSE_OK) {
            if (r == RESP_PARSE_ERROR) {
                *msg = "invalid multibulk length";
            }
            goto incomplete;
        }
        if (null) {
            n = 0;
        }
        if (n > 0) {
            req->resume_off = p;
            req->resume_nargs = n;
        }
    }
    for (; i < n; i++) {
        r = RESP_PARSE_MORE;
        if (p >= len) {
            goto incomplete;
        }
        r = RESP_PARSE_ERROR;
        if (cmd[p] != '$') {
            *msg = got_msg[cmd[p]];
            goto incomplete;
        }
        p++;
        size_t blen = 0;
        r = read_len(cmd, len, &p, lim->max_bulk, false, &blen, &null);
        if (r != RESP_PARSE_OK) {
            if (r == RESP_PARSE_ERROR) {
                *msg = "invalid bulk length";
            }
            goto incomplete;
        }
        if (len - p < blen) {
            skipped += len - p;
            r = RESP_PARSE_MORE;
            goto incomplete;
        }
        size_t at = p;
        p += blen;
        skipped += blen;
        r = RESP_PARSE_ERROR;
        if (p < len && cmd[p] != '\r') {
            *msg = "expected CRLF after bulk string";
            goto incomplete;
        }
        if (p + 1 < len && cmd[p + 1] != '\n') {
            *msg = "expected CRLF after bulk string";
            goto incomplete;
        }
        r = RESP_PARSE_MORE;
        if (len - p < 2) {
            goto incomplete;
        }
        p += 2;
        if (i < req->argv_cap) {
            req->argv[i] = (shale_slice){.data = off_ptr(at), .len = blen};
            req->resume_off = p;
            req->resume_argc = i + 1;
        }
    }
    *work += p - from - skipped;
    if (n <= req->argv_cap) {
        for (size_t k = 0; k < n; k++) {
            req->argv[k].data = cmd + ptr_off(req->argv[k].data);
        }
    }
    reset_state(req); /* done; when argv is too small the caller grows it and we start over */
    req->argc = n;
    *end = p;
    return RESP_PARSE_OK;

incomplete:
    *work += len - from - skipped;
    if (r == RESP_PARSE_MORE && i > req->argv_cap) {
        /* min(n, max(2 * cap, i)), as i <= n. */
        size_t cap = req->argv_cap;
        size_t want = cap > n / 2 ? n : 2 * cap;
        req->argv_needed = want > i ? want : i;
        reset_state(req);
    }
    return r;
}

/* isspace() in the C locale, without its undefined behaviour for negative chars. */
static bool is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Splits the line [line, end) into words as sdssplitargs does; false on unbalanced quotes.
 * *argc is the word count. When argv is not NULL, unescapes each word in place (a word's text
 * only gets shorter, so the write position never passes the read position) and stores it in
 * argv[0 .. *argc) (the caller checked it has room). Without argv nothing is written. */
static bool split_inline(uint8_t *line, const uint8_t *end, shale_slice *argv, size_t *argc)
{
    uint8_t *p = line;
    size_t n = 0;
/* The byte at p + i, or 0 past the end: sdssplitargs reads a NUL-terminated string. */
#define AT(i) ((size_t)(end - p) > (size_t)(i) ? p[i] : 0)
    for (;;) {
        while (AT(0) != 0 && is_space(AT(0))) {
            p++;
        }
        if (AT(0) == 0) {
            break;
        }
        uint8_t *start = p; /* the unescaped word is written from here */
        uint8_t *w = p;
        bool inq = false;
        bool insq = false;
        bool done = false;
        while (!done) {
            int c = AT(0);
            int c1 = AT(1);
            int out = -1;
            if (inq) {
                if (c == '\\' && c1 == 'x' && coding_hex_digit(AT(2)) >= 0 &&
                    coding_hex_digit(AT(3)) >= 0) {
                    out = coding_hex_digit(AT(2)) * 16 + coding_hex_digit(AT(3));
                    p += 3;
                } else if (c == '\\' && c1 != 0) {
                    p++;
                    switch (c1) {
                    case 'n':
                        out = '\n';
                        break;
                    case 'r':
                        out = '\r';
                        break;
                    case 't':
                        out = '\t';
                        break;
                    case 'b':
                        out = '\b';
                        break;
                    case 'a':
                        out = '\a';
                        break;
                    default:
                        out = c1;
                        break;
                    }
                } else if (c == '"') {
                    /* A closing quote must be followed by a space or nothing at all. */
                    if (c1 != 0 && !is_space(c1)) {
                        return false;
                    }
                    done = true;
                } else if (c == 0) {
                    return false; /* unterminated quotes */
                } else {
                    out = c;
                }
            } else if (insq) {
                if (c == '\\' && c1 == '\'') {
                    p++;
                    out = '\'';
                } else if (c == '\'') {
                    if (c1 != 0 && !is_space(c1)) {
                        return false;
                    }
                    done = true;
                } else if (c == 0) {
                    return false;
                } else {
                    out = c;
                }
            } else {
                switch (c) {
                case ' ':
                case '\n':
                case '\r':
                case '\t':
                case 0:
                    done = true;
                    break;
                case '"':
                    inq = true;
                    break;
                case '\'':
                    insq = true;
                    break;
                default:
                    out = c;
                    break;
                }
            }
            if (out >= 0) {
                if (argv != NULL) {
                    *w = (uint8_t)out;
                }
                w++;
            }
            if (AT(0) != 0) {
                p++;
            }
        }
        if (argv != NULL) {
            argv[n] = (shale_slice){.data = start, .len = (size_t)(w - start)};
        }
        n++;
    }
#undef AT
    *argc = n;
    return true;
}

/* One inline line at cmd[0]. Same outputs as parse_multibulk; the state is how much of the line
 * is known to hold no '\n'. */
static resp_parse_result parse_inline(uint8_t *cmd, size_t len, const resp_limits *lim,
                                      resp_request *req, size_t *end, const char **msg,
                                      size_t *work)
{
    /* The line may be max_inline bytes plus its "\r\n". */
    size_t window = lim->max_inline > SIZE_MAX - 2 ? SIZE_MAX : lim->max_inline + 2;
    size_t limit = len < window ? len : window;
    size_t from = req->resume_off;
    if (NEVER(req->resume_nargs != 0 || from > limit)) {
        from = 0;
    }
    reset_state(req);
    const uint8_t *nl = memchr(cmd + from, '\n', limit - from);
    *work += (nl != NULL ? (size_t)(nl - cmd) + 1 : limit) - from;
    if (nl == NULL) {
        if (len >= window) {
            *msg = "too big inline request";
            return RESP_PARSE_ERROR;
        }
        req->resume_off = len;
        return RESP_PARSE_MORE;
    }
    size_t line_end = (size_t)(nl - cmd);
    if (line_end > 0 && cmd[line_end - 1] == '\r') {
        line_end--;
    }
    if (line_end > lim->max_inline) {
        *msg = "too big inline request";
        return RESP_PARSE_ERROR;
    }
    size_t argc = 0;
    *work += line_end;
    if (!split_inline(cmd, cmd + line_end, NULL, &argc)) {
        *msg = "unbalanced quotes in request";
        return RESP_PARSE_ERROR;
    }
    if (argc > lim->max_args) {
        *msg = "too many arguments in inline request";
        return RESP_PARSE_ERROR;
    }
    if (argc > 0 && argc <= req->argv_cap) {
        size_t again = 0;
        *work += line_end;
        bool ok = split_inline(cmd, cmd + line_end, req->argv, &again);
        if (NEVER(!ok || again != argc)) {
            *msg = "unbalanced quotes in request";
            return RESP_PARSE_ERROR;
        }
    }
    req->argc = argc;
    *end = (size_t)(nl - cmd) + 1;
    return RESP_PARSE_OK;
}

resp_parse_result resp_parse(uint8_t *buf, size_t len, const resp_limits *lim, resp_request *req,
                             size_t *used, const char **msg)
{
    static const resp_limits defaults = RESP_LIMITS_DEFAULT;
    if (lim == NULL) {
        lim = &defaults;
    }
    req->argc = 0;
    req->argv_needed = 0;
    *msg = NULL;
    /* A caller that broke the resume contract gets a fresh parse (slower, never out of bounds). */
    if (NEVER(req->resume_off > len || req->resume_argc > req->argv_cap ||
              req->resume_argc > req->resume_nargs)) {
        reset_state(req);
    }
    size_t work = 0;
    size_t pos = 0;
    resp_parse_result r;
    for (;;) {
        *used = pos;
        if (pos >= len) {
            r = RESP_PARSE_MORE;
            break;
        }
        /* Only the first command can be a resumed one: an empty command has no state. */
        uint8_t *cmd = buf + pos;
        size_t end = 0;
        r = cmd[0] == '*' ? parse_multibulk(cmd, len - pos, lim, req, &end, msg, &work)
                          : parse_inline(cmd, len - pos, lim, req, &end, msg, &work);
        if (r != RESP_PARSE_OK) {
            break;
        }
        if (req->argc == 0) {
            pos += end; /* an empty command ("*0", "*-1", a blank line): skipped, as Redis does */
            continue;
        }
        if (req->argc > req->argv_cap) {
            req->argv_needed = req->argc;
            r = RESP_PARSE_MORE;
            break;
        }
        *used = pos + end;
        break;
    }
    if (r != RESP_PARSE_OK) {
        req->argc = 0;
    }
    if (r == RESP_PARSE_ERROR) {
        reset_state(req);
    }
    req->examined += work;
    return r;
}
