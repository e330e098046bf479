/*
 * resp: the Redis serialization protocol (RESP2 and RESP3), pure: no I/O, no allocation by the
 * parser. The connection code (server.c) feeds it the bytes it has; the command code
 * (resp_cmd.c) writes replies with the resp_w_* calls into a shale_buf that the connection sends.
 *
 * Requests. A client sends either
 *   - a multibulk: "*<n>\r\n" then n bulk strings "$<len>\r\n<len bytes>\r\n" (what every client
 *     library and redis-cli send), or
 *   - an inline command: one line of space-separated words ending in "\n" (an optional "\r"
 *     before it), as typed in telnet; words may be quoted "..." (with \n \r \t \" \\ \xHH
 *     escapes) or '...' (only \' escaped), as Redis's sdssplitargs does.
 * An empty inline line (just "\r\n") is skipped, as Redis does.
 *
 * resp_parse looks at buf[0 .. len) and returns
 *   RESP_PARSE_OK     one whole command: req->argc arguments whose slices point INTO buf (valid
 *                     until the caller moves or frees buf), *used = bytes it took;
 *   RESP_PARSE_MORE   the bytes end inside a command: call again when more arrived. The parser
 *                     keeps no state: it re-reads the command from its start, which costs
 *                     O(arguments received), not O(bytes) (bulk payloads are skipped by their
 *                     length). *used = 0, or the bytes of skipped empty commands before it;
 *   RESP_PARSE_ERROR  a protocol error: *msg (a static string) is the text for the
 *                     "-ERR Protocol error: <msg>" reply Redis sends before closing the
 *                     connection. The server sends it and closes.
 * Quoted inline words are unescaped in place (they only get shorter), so buf is writable.
 * Limits (resp_limits, defaults in RESP_LIMITS_DEFAULT): at most max_args arguments, bulk strings
 * of at most max_bulk bytes, inline lines of at most max_inline bytes; a length outside them, a
 * negative one (but "*-1"/"*0", an empty command, which is skipped), a non-digit, a missing CRLF
 * after a bulk ("expected CRLF after bulk string": Redis does not check), or a byte other than
 * '$' where a bulk should start is an error; so is an inline line with more than max_args words.
 * argv_needed is reported only once the whole command has arrived, so a bare "*1000000\r\n"
 * header never makes the server allocate. With those
 * limits, how many bytes a connection may buffer for one unfinished command is bounded
 * (max_args * (max_bulk + 16)); the server further caps it with its own query buffer limit.
 *
 * Replies. resp_w_* append one reply (or an aggregate's header) to out for a client speaking
 * protocol `proto` (2 or 3: HELLO switches it); they differ only where RESP3 has its own type:
 * null ("$-1" vs "_"), null array ("*-1" vs "_"), map ("*2n" flat vs "%n"), set ("*n" vs "~n"),
 * double (bulk string vs ","), boolean (integer 0/1 vs "#t"/"#f"). Each returns SHALE_NOMEM on
 * allocation failure (out is then unchanged).
 *
 * Thread-safety: none needed; every call works only on its arguments.
 */
#ifndef SHALE_SERVER_RESP_H
#define SHALE_SERVER_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

typedef struct resp_limits {
    size_t max_args;   /* arguments of one command */
    size_t max_bulk;   /* bytes of one argument */
    size_t max_inline; /* bytes of one inline command line */
} resp_limits;

/* Redis's own defaults are 1M args and 512 MiB bulks; ours are smaller because a value cannot
 * exceed the database's max_value_bytes anyway (the server passes max_value_bytes + slack). */
#define RESP_LIMITS_DEFAULT                                                                        \
    {                                                                                              \
        .max_args = 1024 * 1024, .max_bulk = 64u << 20, .max_inline = 64u << 10                    \
    }

/* Arguments are kept in a caller-provided array, grown by the caller when resp_parse says so. */
typedef struct resp_request {
    shale_slice *argv; /* argv_cap slots, owned by the caller */
    size_t argv_cap;
    size_t argc;
    /* Set when the return is RESP_PARSE_MORE because argv_cap < the command's argument count:
     * the caller grows argv to at least this many slots and calls again. */
    size_t argv_needed;
} resp_request;

typedef enum resp_parse_result {
    RESP_PARSE_OK = 0,
    RESP_PARSE_MORE = 1,
    RESP_PARSE_ERROR = 2,
} resp_parse_result;

resp_parse_result resp_parse(uint8_t *buf, size_t len, const resp_limits *lim, resp_request *req,
                             size_t *used, const char **msg);

/* ---- replies ---- */
shale_code resp_w_simple(shale_buf *out, const char *s, shale_error *err); /* +OK */
shale_code resp_w_error(shale_buf *out, const char *s, shale_error *err);  /* -ERR ... (s has
                                                                              the prefix) */
shale_code resp_w_errorf(shale_buf *out, shale_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
shale_code resp_w_int(shale_buf *out, int64_t v, shale_error *err);
shale_code resp_w_bulk(shale_buf *out, shale_slice s, shale_error *err);
shale_code resp_w_null(shale_buf *out, int proto, shale_error *err);       /* $-1 or _ */
shale_code resp_w_null_array(shale_buf *out, int proto, shale_error *err); /* *-1 or _ */
shale_code resp_w_array(shale_buf *out, size_t n, shale_error *err);
shale_code resp_w_map(shale_buf *out, int proto, size_t npairs, shale_error *err);
shale_code resp_w_set(shale_buf *out, int proto, size_t n, shale_error *err);
shale_code resp_w_double(shale_buf *out, int proto, double d, shale_error *err);
shale_code resp_w_bool(shale_buf *out, int proto, bool b, shale_error *err);
/* A verbatim string (RESP3 "=<len>\r\ntxt:<s>", RESP2 a bulk): INFO's reply. */
shale_code resp_w_verbatim(shale_buf *out, int proto, shale_slice s, shale_error *err);

#endif
