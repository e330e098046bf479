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
 *   RESP_PARSE_MORE   the bytes end inside a command: call again when more arrived. *used = 0,
 *                     or the bytes of skipped empty commands before it;
 *   RESP_PARSE_ERROR  a protocol error: *msg (a static string) is the text for the
 *                     "-ERR Protocol error: <msg>" reply Redis sends before closing the
 *                     connection. The server sends it and closes.
 * Quoted inline words are unescaped in place (they only get shorter), so buf is writable.
 *
 * Resuming. A MORE leaves in *req how far the unfinished command was parsed (the resume_*
 * fields: offsets from the command's first byte, never pointers), so the next call continues
 * where this one stopped instead of re-reading the command: over a command's whole life each
 * of its bytes is examined O(1) times, however it is split (bulk payloads are skipped by their
 * length and never examined). The caller's side of it:
 *   - zero the request once per connection (or call resp_request_reset) before the first call;
 *   - after a MORE, call again with buf starting at the unfinished command, i.e. at
 *     old buf + *used, holding the same bytes plus whatever arrived since at the end. buf may
 *     have MOVED (a realloc, evbuffer_pullup): nothing in req points into the old one;
 *   - between calls leave argv alone (during a MORE it holds offsets, not slices), except to
 *     replace it when argv_needed asks (below);
 *   - after OK or ERROR the state is cleared for the next command; resp_request_reset drops an
 *     unfinished command (e.g. when the caller discards its input).
 * argc is 0 and argv's contents unspecified on MORE and ERROR.
 *
 * Growing argv. A MORE with argv_needed > 0 (always > argv_cap) means argv is too small for
 * the whole arguments of the command that have arrived: the caller makes argv hold at least
 * argv_needed slots (realloc or a new array: the old contents need not be kept) and calls again
 * with the same bytes. argv_needed = min(declared count, max(2 * argv_cap, arguments wholly
 * received)), so once the whole command is in it is exactly its argument count, and while it
 * streams in argv is grown only for arguments that actually arrived, at least doubling each
 * time: a bare "*1000000\r\n" header never makes the caller allocate, argv_needed is never
 * more than twice the arguments received (an argument is at least 6 bytes on the wire), and the
 * re-parse after each growth, which starts the command over, adds up to O(arguments) in all.
 * An inline command asks for exactly its word count once its line is in.
 *
 * Limits (resp_limits, defaults in RESP_LIMITS_DEFAULT): at most max_args arguments, bulk strings
 * of at most max_bulk bytes, inline lines of at most max_inline bytes; a length outside them, a
 * negative one (but "*-1"/"*0", an empty command, which is skipped), a non-digit, a missing CRLF
 * after a bulk ("expected CRLF after bulk string": Redis does not check), or a byte other than
 * '$' where a bulk should start is an error; so is an inline line with more than max_args words.
 * With those limits, how many bytes a connection may buffer for one unfinished command is
 * bounded (max_args * (max_bulk + 16)); the server further caps it with its own query buffer
 * limit.
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
    /* Set when the return is RESP_PARSE_MORE because argv is too small for the arguments that
     * arrived: the caller grows argv to at least this many slots and calls again. */
    size_t argv_needed;
    /* Bytes resp_parse has examined for this request, cumulative (length lines, CRLFs, inline
     * lines; not payloads it skips by length). A statistic, never reset by resp_parse or
     * resp_request_reset: tests use it to check that parsing is linear. */
    size_t examined;
    /* Resume state of the unfinished command, private to resp_parse (see "Resuming"); all 0
     * between commands. For a multibulk: resume_off is the end of its header or of its last
     * argument stored in argv, resume_argc how many arguments argv[0 .. resume_argc) holds (as
     * offsets from the command's start), resume_nargs the count its header declared. For an
     * inline command: resume_off bytes of the line are known to hold no '\n'. */
    size_t resume_off;
    size_t resume_argc;
    size_t resume_nargs;
} resp_request;

typedef enum resp_parse_result {
    RESP_PARSE_OK = 0,
    RESP_PARSE_MORE = 1,
    RESP_PARSE_ERROR = 2,
} resp_parse_result;

resp_parse_result resp_parse(uint8_t *buf, size_t len, const resp_limits *lim, resp_request *req,
                             size_t *used, const char **msg);

/* Forgets the unfinished command (resume state, argc, argv_needed); keeps argv, argv_cap and
 * examined. */
void resp_request_reset(resp_request *req);

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
