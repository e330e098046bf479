/*
 * resp: every reply writer in RESP2 and RESP3 (exact bytes); the request parser on single and
 * pipelined commands, every split point, binary payloads, inline quoting, every protocol error,
 * limits, empty commands and argv growth; resumption (state kept across calls while the buffer
 * moves: big commands streamed in random chunks parse as when whole, and the bytes examined
 * stay linear in the command's size where a stateless re-parse is quadratic); and randomized
 * runs (random bytes, mutated valid pipelines, generated pipelines fed in random chunks) that
 * check the parser's invariants and that a resumed parse agrees with a fresh one.
 *
 * Every parse runs on a private malloc'd copy of exactly the bytes given, so an ASan build
 * catches any read past len; a buffer the parser saw before is poisoned and freed when it
 * moves, so a pointer kept into it is caught too.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "server/resp.h"
#include "testutil.h"

/* ---- helpers ---- */

#define S(lit) ((shale_slice){.data = (lit), .len = sizeof(lit) - 1})
#define ARGS(...)                                                                                  \
    (const shale_slice[]){__VA_ARGS__},                                                            \
        sizeof((const shale_slice[]){__VA_ARGS__}) / sizeof(shale_slice)

static bool slice_eq(shale_slice a, shale_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static void app(shale_buf *b, const void *data, size_t len)
{
    cr_assert_eq(buf_append(b, data, len, NULL), SHALE_OK);
}

static void apps(shale_buf *b, const char *s)
{
    app(b, s, strlen(s));
}

/* Asserts that out holds exactly want[0 .. wlen) and empties it. */
static void expect_bytes(shale_buf *out, const char *want, size_t wlen, const char *what)
{
    char got[256];
    cr_assert(out->len == wlen && memcmp(out->data, want, wlen) == 0, "%s: got %zu bytes \"%s\"",
              what, out->len, tu_head(got, sizeof(got), out->data, out->len));
    buf_reset(out);
}

#define EXPECT(out, lit, what) expect_bytes((out), (lit), sizeof(lit) - 1, (what))
#define W(call)                cr_assert_eq((call), SHALE_OK, "%s", #call)

/* One parse of a private, exact-size copy of the bytes. */
#define PCAP 64
typedef struct pctx {
    uint8_t *copy;
    size_t len;
    shale_slice argv[PCAP];
    resp_request req;
    resp_parse_result r;
    size_t used;
    const char *msg;
} pctx;

static void p_run(pctx *p, const void *data, size_t len, size_t cap, const resp_limits *lim)
{
    cr_assert_leq(cap, (size_t)PCAP);
    p->copy = malloc(len > 0 ? len : 1);
    cr_assert_not_null(p->copy);
    if (len > 0) {
        memcpy(p->copy, data, len);
    }
    p->len = len;
    p->req = (resp_request){.argv = p->argv, .argv_cap = cap};
    p->used = 12345;
    p->msg = "unset";
    p->r = resp_parse(p->copy, len, lim, &p->req, &p->used, &p->msg);
}

static void p_free(pctx *p)
{
    free(p->copy);
    p->copy = NULL;
}

static void expect_args(const pctx *p, const shale_slice *want, size_t n, const char *what)
{
    cr_assert_eq(p->req.argc, n, "%s: argc %zu, want %zu", what, p->req.argc, n);
    for (size_t i = 0; i < n; i++) {
        char got[128];
        cr_assert(slice_eq(p->argv[i], want[i]), "%s: arg %zu is \"%s\"", what, i,
                  tu_head(got, sizeof(got), p->argv[i].data, p->argv[i].len));
    }
}

/* Parses `lit` (a literal, so embedded NULs count) expecting OK with `used` and the args. */
static void ok_case(const void *data, size_t len, size_t used, const shale_slice *want, size_t n)
{
    pctx p;
    p_run(&p, data, len, PCAP, NULL);
    char what[128];
    tu_head(what, sizeof(what), data, len);
    cr_assert_eq(p.r, RESP_PARSE_OK, "\"%s\": result %d (%s)", what, p.r, p.msg ? p.msg : "-");
    cr_assert_eq(p.used, used, "\"%s\": used %zu, want %zu", what, p.used, used);
    cr_assert_null(p.msg);
    expect_args(&p, want, n, what);
    p_free(&p);
}

/* OK_CASE: the command is all of lit; OK_PART: its first `used` bytes. */
#define OK_CASE(lit, ...)       ok_case((lit), sizeof(lit) - 1, sizeof(lit) - 1, ARGS(__VA_ARGS__))
#define OK_PART(lit, used, ...) ok_case((lit), sizeof(lit) - 1, (used), ARGS(__VA_ARGS__))

static void err_case(const void *data, size_t len, const resp_limits *lim, const char *msg)
{
    pctx p;
    p_run(&p, data, len, PCAP, lim);
    char what[128];
    tu_head(what, sizeof(what), data, len);
    cr_assert_eq(p.r, RESP_PARSE_ERROR, "\"%s\": result %d, want ERROR", what, p.r);
    cr_assert_not_null(p.msg);
    cr_assert_str_eq(p.msg, msg, "\"%s\"", what);
    cr_assert_eq(p.req.argc, 0u);
    p_free(&p);
}

#define ERR_CASE(lit, msg)          err_case((lit), sizeof(lit) - 1, NULL, (msg))
#define ERR_CASE_LIM(lit, lim, msg) err_case((lit), sizeof(lit) - 1, (lim), (msg))

static void more_case(const void *data, size_t len, const resp_limits *lim, size_t used)
{
    pctx p;
    p_run(&p, data, len, PCAP, lim);
    char what[128];
    tu_head(what, sizeof(what), data, len);
    cr_assert_eq(p.r, RESP_PARSE_MORE, "\"%s\": result %d (%s), want MORE", what, p.r,
                 p.msg ? p.msg : "-");
    cr_assert_eq(p.used, used, "\"%s\": used %zu, want %zu", what, p.used, used);
    cr_assert_eq(p.req.argv_needed, 0u);
    cr_assert_eq(p.req.argc, 0u);
    p_free(&p);
}

#define MORE_CASE(lit, used) more_case((lit), sizeof(lit) - 1, NULL, (used))

/* A connection's buffer for one request: every call sees a fresh exact-size copy of the bytes
 * so far (the buffer moves); the previous copy is poisoned and freed. */
typedef struct moving {
    uint8_t *buf;
    size_t len;
} moving;

static uint8_t *mv_set(moving *m, const void *data, size_t len)
{
    uint8_t *fresh = malloc(len > 0 ? len : 1);
    cr_assert_not_null(fresh);
    if (len > 0) {
        memcpy(fresh, data, len);
    }
    if (m->buf != NULL) {
        memset(m->buf, 0xa5, m->len);
        free(m->buf);
    }
    m->buf = fresh;
    m->len = len;
    return fresh;
}

static void mv_free(moving *m)
{
    free(m->buf);
    m->buf = NULL;
    m->len = 0;
}

static bool state_clear(const resp_request *req)
{
    return req->resume_off == 0 && req->resume_argc == 0 && req->resume_nargs == 0;
}

/* Feeds data[0 .. len) to one request at the lengths cuts[0 .. ncuts) and then len, the buffer
 * moving every time: each cut is MORE with nothing used nor asked, the whole is OK with want. */
static void resumed_case(const void *data, size_t len, const size_t *cuts, size_t ncuts,
                         const shale_slice *want, size_t n)
{
    shale_slice argv[PCAP];
    resp_request req = {.argv = argv, .argv_cap = PCAP};
    moving m = {0};
    size_t used = 0;
    const char *msg = NULL;
    char what[128];
    tu_head(what, sizeof(what), data, len);
    for (size_t c = 0; c < ncuts; c++) {
        uint8_t *b = mv_set(&m, data, cuts[c]);
        resp_parse_result r = resp_parse(b, cuts[c], NULL, &req, &used, &msg);
        cr_assert_eq(r, RESP_PARSE_MORE, "\"%s\" cut at %zu: result %d (%s)", what, cuts[c], r,
                     msg ? msg : "-");
        cr_assert_eq(used, 0u);
        cr_assert_eq(req.argc, 0u);
        cr_assert_eq(req.argv_needed, 0u);
    }
    uint8_t *b = mv_set(&m, data, len);
    cr_assert_eq(resp_parse(b, len, NULL, &req, &used, &msg), RESP_PARSE_OK, "\"%s\"", what);
    cr_assert_eq(used, len);
    cr_assert(state_clear(&req), "OK clears the state");
    cr_assert_eq(req.argc, n, "\"%s\"", what);
    for (size_t i = 0; i < n; i++) {
        cr_assert(slice_eq(argv[i], want[i]), "\"%s\" arg %zu", what, i);
        cr_assert((const uint8_t *)argv[i].data >= b &&
                      (const uint8_t *)argv[i].data + argv[i].len <= b + len,
                  "arg %zu points into the latest buffer", i);
    }
    mv_free(&m);
}

/* Every proper prefix is MORE (with nothing used), the whole is OK with the given args; also
 * when resumed: split in two at every point, and fed one byte at a time. */
static void split_case(const void *data, size_t len, const shale_slice *want, size_t n)
{
    for (size_t k = 0; k < len; k++) {
        more_case(data, k, NULL, 0);
    }
    ok_case(data, len, len, want, n);
    size_t *cuts = malloc(len * sizeof(*cuts) + 1);
    cr_assert_not_null(cuts);
    for (size_t k = 1; k < len; k++) {
        resumed_case(data, len, &k, 1, want, n);
        cuts[k - 1] = k;
    }
    resumed_case(data, len, cuts, len > 0 ? len - 1 : 0, want, n);
    free(cuts);
}

#define SPLIT_CASE(lit, ...) split_case((lit), sizeof(lit) - 1, ARGS(__VA_ARGS__))

/* ---- reply writers ---- */

Test(resp_write, simple_and_error)
{
    shale_buf out = {0};
    W(resp_w_simple(&out, "OK", NULL));
    EXPECT(&out, "+OK\r\n", "simple");
    W(resp_w_simple(&out, "", NULL));
    EXPECT(&out, "+\r\n", "empty simple");
    W(resp_w_simple(&out, "a\r\nb\nc\r", NULL));
    EXPECT(&out, "+a  b c \r\n", "simple is one line");
    W(resp_w_error(&out, "ERR unknown command 'FOO'", NULL));
    EXPECT(&out, "-ERR unknown command 'FOO'\r\n", "error");
    W(resp_w_error(&out, "WRONGTYPE Operation against a key", NULL));
    EXPECT(&out, "-WRONGTYPE Operation against a key\r\n", "error code");
    W(resp_w_error(&out, "ERR bad\r\nthing\n", NULL));
    EXPECT(&out, "-ERR bad  thing \r\n", "error is one line");
    W(resp_w_error(&out, "", NULL));
    EXPECT(&out, "-ERR\r\n", "an error always has a code");
    shale_buf_free(&out);
}

Test(resp_write, errorf)
{
    shale_buf out = {0};
    W(resp_w_errorf(&out, NULL, "ERR wrong number of arguments for '%s' command", "get"));
    EXPECT(&out, "-ERR wrong number of arguments for 'get' command\r\n", "errorf");
    W(resp_w_errorf(&out, NULL, "ERR %d\r\n%s", 42, "x\ny"));
    EXPECT(&out, "-ERR 42  x y\r\n", "errorf is one line");
    W(resp_w_errorf(&out, NULL, "%s", ""));
    EXPECT(&out, "-ERR\r\n", "empty errorf");
    /* Longer than any stack buffer a writer might use. */
    char big[5000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    W(resp_w_errorf(&out, NULL, "ERR %s", big));
    cr_assert_eq(out.len, 1 + 4 + 4999 + 2u);
    cr_assert(memcmp(out.data, "-ERR zzz", 8) == 0);
    cr_assert(memcmp((char *)out.data + out.len - 3, "z\r\n", 3) == 0);
    shale_buf_free(&out);
}

Test(resp_write, integers)
{
    shale_buf out = {0};
    W(resp_w_int(&out, 0, NULL));
    EXPECT(&out, ":0\r\n", "0");
    W(resp_w_int(&out, -1, NULL));
    EXPECT(&out, ":-1\r\n", "-1");
    W(resp_w_int(&out, INT64_MAX, NULL));
    EXPECT(&out, ":9223372036854775807\r\n", "max");
    W(resp_w_int(&out, INT64_MIN, NULL));
    EXPECT(&out, ":-9223372036854775808\r\n", "min");
    shale_buf_free(&out);
}

Test(resp_write, bulk_strings)
{
    shale_buf out = {0};
    W(resp_w_bulk(&out, S("hello"), NULL));
    EXPECT(&out, "$5\r\nhello\r\n", "bulk");
    W(resp_w_bulk(&out, (shale_slice){0}, NULL));
    EXPECT(&out, "$0\r\n\r\n", "empty bulk");
    W(resp_w_bulk(&out, S("a\0b\r\nc"), NULL));
    EXPECT(&out, "$6\r\na\0b\r\nc\r\n", "binary bulk");
    /* A large one. */
    size_t n = 100000;
    char *big = malloc(n);
    cr_assert_not_null(big);
    memset(big, 'q', n);
    W(resp_w_bulk(&out, (shale_slice){.data = big, .len = n}, NULL));
    cr_assert_eq(out.len, 9 + n + 2);
    cr_assert(memcmp(out.data, "$100000\r\nqq", 11) == 0);
    free(big);
    shale_buf_free(&out);
}

Test(resp_write, nulls_and_aggregates)
{
    shale_buf out = {0};
    W(resp_w_null(&out, 2, NULL));
    EXPECT(&out, "$-1\r\n", "null 2");
    W(resp_w_null(&out, 3, NULL));
    EXPECT(&out, "_\r\n", "null 3");
    W(resp_w_null_array(&out, 2, NULL));
    EXPECT(&out, "*-1\r\n", "null array 2");
    W(resp_w_null_array(&out, 3, NULL));
    EXPECT(&out, "_\r\n", "null array 3");
    W(resp_w_array(&out, 0, NULL));
    EXPECT(&out, "*0\r\n", "empty array");
    W(resp_w_array(&out, 12345, NULL));
    EXPECT(&out, "*12345\r\n", "array");
    W(resp_w_map(&out, 2, 3, NULL));
    EXPECT(&out, "*6\r\n", "map 2 is a flat array");
    W(resp_w_map(&out, 3, 3, NULL));
    EXPECT(&out, "%3\r\n", "map 3");
    W(resp_w_map(&out, 2, 0, NULL));
    EXPECT(&out, "*0\r\n", "empty map 2");
    W(resp_w_set(&out, 2, 4, NULL));
    EXPECT(&out, "*4\r\n", "set 2");
    W(resp_w_set(&out, 3, 4, NULL));
    EXPECT(&out, "~4\r\n", "set 3");
    W(resp_w_bool(&out, 2, true, NULL));
    EXPECT(&out, ":1\r\n", "true 2");
    W(resp_w_bool(&out, 2, false, NULL));
    EXPECT(&out, ":0\r\n", "false 2");
    W(resp_w_bool(&out, 3, true, NULL));
    EXPECT(&out, "#t\r\n", "true 3");
    W(resp_w_bool(&out, 3, false, NULL));
    EXPECT(&out, "#f\r\n", "false 3");
    shale_buf_free(&out);
}

Test(resp_write, doubles)
{
    shale_buf out = {0};
    W(resp_w_double(&out, 3, 0.1, NULL));
    EXPECT(&out, ",0.1\r\n", "shortest repr, not 0.10000000000000001");
    W(resp_w_double(&out, 2, 0.1, NULL));
    EXPECT(&out, "$3\r\n0.1\r\n", "RESP2 double is a bulk");
    W(resp_w_double(&out, 3, 3.0, NULL));
    EXPECT(&out, ",3\r\n", "integral");
    W(resp_w_double(&out, 3, -2.5, NULL));
    EXPECT(&out, ",-2.5\r\n", "negative");
    W(resp_w_double(&out, 3, 0.1 + 0.2, NULL));
    EXPECT(&out, ",0.30000000000000004\r\n", "17 digits when needed");
    W(resp_w_double(&out, 3, 1.0 / 3.0, NULL));
    EXPECT(&out, ",0.3333333333333333\r\n", "16 digits");
    W(resp_w_double(&out, 3, 1e300, NULL));
    EXPECT(&out, ",1e+300\r\n", "exponent");
    W(resp_w_double(&out, 3, -0.0, NULL));
    EXPECT(&out, ",-0\r\n", "negative zero");
    W(resp_w_double(&out, 3, INFINITY, NULL));
    EXPECT(&out, ",inf\r\n", "inf 3");
    W(resp_w_double(&out, 3, -INFINITY, NULL));
    EXPECT(&out, ",-inf\r\n", "-inf 3");
    W(resp_w_double(&out, 3, NAN, NULL));
    EXPECT(&out, ",nan\r\n", "nan 3");
    W(resp_w_double(&out, 2, INFINITY, NULL));
    EXPECT(&out, "$3\r\ninf\r\n", "inf 2");
    W(resp_w_double(&out, 2, -INFINITY, NULL));
    EXPECT(&out, "$4\r\n-inf\r\n", "-inf 2");
    W(resp_w_double(&out, 2, NAN, NULL));
    EXPECT(&out, "$3\r\nnan\r\n", "nan 2");
    /* Every finite double round-trips through its text. */
    tu_rng rng;
    tu_rng_seed(&rng, 7);
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = tu_rng_next(&rng);
        double d;
        memcpy(&d, &bits, sizeof(d));
        if (!isfinite(d)) {
            continue;
        }
        W(resp_w_double(&out, 3, d, NULL));
        cr_assert_gt(out.len, 3u);
        char text[64];
        cr_assert_lt(out.len, sizeof(text));
        cr_assert_eq(((char *)out.data)[0], ',');
        memcpy(text, (char *)out.data + 1, out.len - 3);
        text[out.len - 3] = '\0';
        cr_assert(strtod(text, NULL) == d, "%s", text);
        buf_reset(&out);
    }
    shale_buf_free(&out);
}

Test(resp_write, verbatim)
{
    shale_buf out = {0};
    W(resp_w_verbatim(&out, 3, S("a:1\r\nb:2"), NULL));
    EXPECT(&out, "=12\r\ntxt:a:1\r\nb:2\r\n", "verbatim 3");
    W(resp_w_verbatim(&out, 2, S("a:1\r\nb:2"), NULL));
    EXPECT(&out, "$8\r\na:1\r\nb:2\r\n", "verbatim 2 is a bulk");
    W(resp_w_verbatim(&out, 3, (shale_slice){0}, NULL));
    EXPECT(&out, "=4\r\ntxt:\r\n", "empty verbatim");
    shale_buf_free(&out);
}

Test(resp_write, replies_append_in_order)
{
    shale_buf out = {0};
    W(resp_w_array(&out, 3, NULL));
    W(resp_w_bulk(&out, S("k"), NULL));
    W(resp_w_null(&out, 2, NULL));
    W(resp_w_int(&out, 7, NULL));
    EXPECT(&out, "*3\r\n$1\r\nk\r\n$-1\r\n:7\r\n", "a whole array reply");
    shale_buf_free(&out);
}

/* ---- parser: good requests ---- */

Test(resp_parse, multibulk)
{
    OK_CASE("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n", S("SET"), S("k"), S("value"));
    OK_CASE("*1\r\n$4\r\nPING\r\n", S("PING"));
    OK_CASE("*2\r\n$3\r\nGET\r\n$0\r\n\r\n", S("GET"), S(""));
    /* Binary-safe payloads: NUL, CRLF, '*' and '$' inside. */
    OK_CASE("*2\r\n$3\r\nSET\r\n$8\r\na\0b\r\n*$c\r\n", S("SET"), S("a\0b\r\n*$c"));
    /* Whatever follows the command is left for the next call. */
    OK_PART("*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI", 14, S("PING"));
    OK_PART("*1\r\n$4\r\nPING\r\ngarbage", 14, S("PING"));
}

Test(resp_parse, argument_slices_point_into_the_buffer)
{
    uint8_t buf[] = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    shale_slice argv[4];
    resp_request req = {.argv = argv, .argv_cap = 4};
    size_t used = 0;
    const char *msg = NULL;
    resp_limits lim = RESP_LIMITS_DEFAULT;
    cr_assert_eq(resp_parse(buf, sizeof(buf) - 1, &lim, &req, &used, &msg), RESP_PARSE_OK);
    cr_assert_eq(req.argc, 2u);
    cr_assert_eq(argv[0].data, buf + 8);
    cr_assert_eq(argv[1].data, buf + 17);
    cr_assert_eq(used, sizeof(buf) - 1);
}

Test(resp_parse, pipelined)
{
    const char in[] = "*1\r\n$4\r\nPING\r\n"
                      "ECHO hi\r\n"
                      "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
                      "*0\r\n"
                      "\r\n"
                      "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n";
    size_t len = sizeof(in) - 1;
    const shale_slice want[][3] = {{S("PING")}, {S("ECHO"), S("hi")}, {S("GET"), S("k")}};
    const size_t wantc[] = {1, 2, 2};
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        pctx p;
        p_run(&p, in + off, len - off, PCAP, NULL);
        cr_assert_eq(p.r, RESP_PARSE_OK, "command %d", i);
        expect_args(&p, want[i], wantc[i], "pipelined");
        off += p.used;
        p_free(&p);
    }
    /* "*0\r\n" and the blank line are skipped and counted; the partial SET is not. */
    pctx p;
    p_run(&p, in + off, len - off, PCAP, NULL);
    cr_assert_eq(p.r, RESP_PARSE_MORE);
    cr_assert_eq(p.used, 6u);
    p_free(&p);
}

Test(resp_parse, every_split_point)
{
    SPLIT_CASE("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$10\r\n0123456789\r\n", S("SET"), S("key"),
               S("0123456789"));
    SPLIT_CASE("*2\r\n$3\r\nGET\r\n$0\r\n\r\n", S("GET"), S(""));
    SPLIT_CASE("*1\r\n$6\r\n\r\n\r\n\r\n\r\n", S("\r\n\r\n\r\n"));
    SPLIT_CASE(
        "*12\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n$1\r\ne\r\n$1\r\nf\r\n"
        "$1\r\ng\r\n$1\r\nh\r\n$1\r\ni\r\n$1\r\nj\r\n$1\r\nk\r\n$11\r\n*1\r\n$1\r\nx\r\n\r\n",
        S("a"), S("b"), S("c"), S("d"), S("e"), S("f"), S("g"), S("h"), S("i"), S("j"), S("k"),
        S("*1\r\n$1\r\nx\r\n"));
    SPLIT_CASE("SET key value\r\n", S("SET"), S("key"), S("value"));
    SPLIT_CASE("SET key value\n", S("SET"), S("key"), S("value"));
    SPLIT_CASE("set \"a b\\r\\n\\x41\" 'it\\'s'\r\n", S("set"), S("a b\r\nA"), S("it's"));
}

Test(resp_parse, empty_commands_are_skipped_and_counted)
{
    MORE_CASE("*0\r\n", 4);
    MORE_CASE("*-1\r\n", 5);
    MORE_CASE("\r\n", 2);
    MORE_CASE("\n", 1);
    MORE_CASE("   \t \r\n", 7);
    MORE_CASE("*0\r\n*-1\r\n\r\n\n", 12);
    MORE_CASE("*0\r\n*1\r\n$3\r\nGE", 4);
    MORE_CASE("*0\r\n*", 4);
    MORE_CASE("", 0);
    OK_CASE("*0\r\n*-1\r\n\r\n  \n*1\r\n$4\r\nPING\r\n", S("PING"));
    OK_CASE("\n\nPING\n", S("PING"));
}

Test(resp_parse, inline_words)
{
    OK_CASE("PING\r\n", S("PING"));
    OK_CASE("PING\n", S("PING"));
    OK_CASE("  SET\t k   v  \r\n", S("SET"), S("k"), S("v"));
    OK_CASE("\v\fGET k\n", S("GET"), S("k"));
    /* Inside a bare word only space, tab, CR and LF separate (sdssplitargs). */
    OK_CASE("a\vb c\n", S("a\vb"), S("c"));
    OK_CASE("a\rb\n", S("a"), S("b"));
    OK_CASE("a\r\r\n", S("a"));
    /* A bare backslash is literal. */
    OK_CASE("a\\nb\n", S("a\\nb"));
    /* A '$' or ':' starts an inline command like any other byte; only '*' means multibulk. */
    OK_CASE("$3\r\n", S("$3"));
}

Test(resp_parse, inline_quotes)
{
    OK_CASE("SET \"hello world\" v\n", S("SET"), S("hello world"), S("v"));
    OK_CASE("\"\\n\\r\\t\\b\\a\\\"\\\\\\q\"\n", S("\n\r\t\b\a\"\\q"));
    OK_CASE("\"\\x41\\x7a\\x00\\xFf\"\n", S("Az\0\xff"));
    /* Not a hex escape: "\x4g" is an escaped 'x' then "4g". */
    OK_CASE("\"\\x4g\"\n", S("x4g"));
    OK_CASE("\"\\x4\"\n", S("x4"));
    OK_CASE("'it\\'s' 'a\\nb' '\"'\n", S("it's"), S("a\\nb"), S("\""));
    OK_CASE("\"\" ''\n", S(""), S(""));
    /* A quote may open in the middle of a word. */
    OK_CASE("foo\"bar baz\"\n", S("foobar baz"));
    OK_CASE("foo'bar'\n", S("foobar"));
    /* A closing quote may be followed by any space, including \v, or the end of the line. */
    OK_CASE("\"a\"\vb\n", S("a"), S("b"));
    OK_CASE("\"a\"\r\n", S("a"));
    OK_CASE("\"a\"\n", S("a"));
    /* A quoted CR, then the line's own CRLF. */
    OK_CASE("\"a\r\"\r\n", S("a\r"));
    /* A NUL ends the line's words, as in Redis, whose split works on a C string. */
    OK_CASE("GET k\0 junk \"\r\n", S("GET"), S("k"));
    OK_CASE("\0\r\nPING\r\n", S("PING"));
}

Test(resp_parse, inline_unescapes_in_place_only_when_returned)
{
    const char line[] = "SET \"a\\x41\" v\n";
    uint8_t buf[sizeof(line)];
    memcpy(buf, line, sizeof(line));
    shale_slice argv[3];
    resp_request req = {.argv = argv, .argv_cap = 1};
    size_t used = 99;
    const char *msg = NULL;
    cr_assert_eq(resp_parse(buf, sizeof(line) - 1, NULL, &req, &used, &msg), RESP_PARSE_MORE);
    cr_assert_eq(req.argv_needed, 3u);
    cr_assert_eq(used, 0u);
    cr_assert(memcmp(buf, line, sizeof(line)) == 0, "a MORE must not touch the bytes");
    req.argv_cap = 3;
    cr_assert_eq(resp_parse(buf, sizeof(line) - 1, NULL, &req, &used, &msg), RESP_PARSE_OK);
    cr_assert_eq(used, sizeof(line) - 1);
    cr_assert_eq(req.argc, 3u);
    cr_assert(slice_eq(argv[1], S("aA")));
    cr_assert_eq(argv[1].data, buf + 4);
}

Test(resp_parse, argv_growth)
{
    const char cmd[] = "*0\r\n*5\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n$1\r\ne\r\n";
    size_t len = sizeof(cmd) - 1;
    pctx p;
    p_run(&p, cmd, len, 2, NULL);
    cr_assert_eq(p.r, RESP_PARSE_MORE);
    cr_assert_eq(p.req.argv_needed, 5u);
    cr_assert_eq(p.req.argc, 0u);
    cr_assert_eq(p.used, 4u, "the skipped empty command is still counted");
    p_free(&p);
    /* Room is asked only for arguments that arrived: here four whole ones, argv holds two. */
    p_run(&p, cmd, len - 1, 2, NULL);
    cr_assert_eq(p.r, RESP_PARSE_MORE);
    cr_assert_eq(p.req.argv_needed, 4u);
    cr_assert_eq(p.used, 4u);
    p_free(&p);
    /* Two whole ones and part of a third fit in two slots: nothing asked. */
    p_run(&p, cmd, 4 + 4 + 7 + 7 + 3, 2, NULL);
    cr_assert_eq(p.r, RESP_PARSE_MORE);
    cr_assert_eq(p.req.argv_needed, 0u);
    p_free(&p);
    /* A header alone never makes the caller allocate. */
    p_run(&p, "*1000000\r\n", 10, 2, NULL);
    cr_assert_eq(p.r, RESP_PARSE_MORE);
    cr_assert_eq(p.req.argv_needed, 0u);
    p_free(&p);
    p_run(&p, cmd, len, 5, NULL);
    cr_assert_eq(p.r, RESP_PARSE_OK);
    expect_args(&p, ARGS(S("a"), S("b"), S("c"), S("d"), S("e")), "grown");
    cr_assert_eq(p.req.argv_needed, 0u);
    p_free(&p);
    /* The same for inline commands, and with no argv at all. */
    uint8_t line[] = "a b c d\n";
    resp_request req = {0};
    size_t used = 0;
    const char *msg = NULL;
    cr_assert_eq(resp_parse(line, sizeof(line) - 1, NULL, &req, &used, &msg), RESP_PARSE_MORE);
    cr_assert_eq(req.argv_needed, 4u);
    /* The caller's loop: grow until OK, across a large command. */
    shale_buf big = {0};
    size_t n = 3000;
    char hdr[32];
    snprintf(hdr, sizeof(hdr), "*%zu\r\n", n);
    apps(&big, hdr);
    for (size_t i = 0; i < n; i++) {
        char arg[48];
        int alen = snprintf(arg, sizeof(arg), "%zu", i);
        snprintf(hdr, sizeof(hdr), "$%d\r\n", alen);
        apps(&big, hdr);
        apps(&big, arg);
        apps(&big, "\r\n");
    }
    resp_request r2 = {0};
    int calls = 0;
    resp_parse_result res;
    while ((res = resp_parse(big.data, big.len, NULL, &r2, &used, &msg)) == RESP_PARSE_MORE) {
        cr_assert_gt(r2.argv_needed, r2.argv_cap);
        free(r2.argv);
        r2.argv = calloc(r2.argv_needed, sizeof(shale_slice));
        cr_assert_not_null(r2.argv);
        r2.argv_cap = r2.argv_needed;
        cr_assert_lt(++calls, 3);
    }
    cr_assert_eq(res, RESP_PARSE_OK);
    cr_assert_eq(r2.argc, n);
    cr_assert_eq(used, big.len);
    cr_assert(slice_eq(r2.argv[2999], S("2999")));
    free(r2.argv);
    shale_buf_free(&big);
}

/* argv_needed = min(count, max(2 * argv_cap, arguments wholly received)), for every cap and
 * every prefix of a 10-argument command: ending right after an argument or inside one. */
Test(resp_parse, argv_growth_policy)
{
    const size_t n = 10;
    char cmd[128];
    size_t len = (size_t)snprintf(cmd, sizeof(cmd), "*%zu\r\n", n);
    const size_t header = len;
    size_t ends[10];
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, "$1\r\n%c\r\n", (char)('a' + i));
        ends[i] = len;
    }
    for (size_t cap = 0; cap <= n + 2; cap++) {
        for (size_t k = 0; k <= n; k++) {
            for (int partial = 0; partial < 2; partial++) {
                if (partial && k == n) {
                    continue;
                }
                size_t plen = (k > 0 ? ends[k - 1] : header) + (size_t)partial * 3;
                size_t want = 0;
                if (k > cap) {
                    want = 2 * cap > k ? 2 * cap : k;
                    want = want < n ? want : n;
                }
                pctx p;
                p_run(&p, cmd, plen, cap, NULL);
                if (k == n && cap >= n) {
                    cr_assert_eq(p.r, RESP_PARSE_OK);
                    expect_args(&p,
                                ARGS(S("a"), S("b"), S("c"), S("d"), S("e"), S("f"), S("g"), S("h"),
                                     S("i"), S("j")),
                                "whole");
                } else {
                    cr_assert_eq(p.r, RESP_PARSE_MORE);
                    cr_assert_eq(p.req.argv_needed, want, "cap %zu, %zu args%s: asked %zu", cap, k,
                                 partial ? " and a part" : "", p.req.argv_needed);
                    cr_assert(want > 0 || p.req.resume_argc == k, "%zu args kept", k);
                    cr_assert(want == 0 || state_clear(&p.req), "a growth starts over");
                }
                p_free(&p);
            }
        }
    }
}

/* The server's loop on a command that streams in: argv grows (realloc) only with arguments
 * that arrived, at least doubling, at most twice what arrived, and a few times in all. */
Test(resp_parse, argv_grows_while_streaming)
{
    shale_buf big = {0};
    size_t n = 3000;
    char hdr[32];
    snprintf(hdr, sizeof(hdr), "*%zu\r\n", n);
    apps(&big, hdr);
    size_t *ends = malloc(n * sizeof(*ends));
    cr_assert_not_null(ends);
    for (size_t i = 0; i < n; i++) {
        char arg[48];
        int alen = snprintf(arg, sizeof(arg), "%zu", i);
        snprintf(hdr, sizeof(hdr), "$%d\r\n", alen);
        apps(&big, hdr);
        apps(&big, arg);
        apps(&big, "\r\n");
        ends[i] = big.len;
    }
    resp_request req = {0};
    moving m = {0};
    size_t have = 0;
    size_t received = 0; /* whole arguments in the first `have` bytes */
    int growths = 0;
    for (;;) {
        size_t used = 0;
        const char *msg = NULL;
        uint8_t *b = mv_set(&m, big.data, have);
        resp_parse_result r = resp_parse(b, have, NULL, &req, &used, &msg);
        if (r == RESP_PARSE_OK) {
            break;
        }
        cr_assert_eq(r, RESP_PARSE_MORE);
        cr_assert_eq(used, 0u);
        if (req.argv_needed > 0) {
            cr_assert_gt(req.argv_needed, req.argv_cap);
            cr_assert_leq(req.argv_needed, n);
            cr_assert_gt(received, req.argv_cap, "asked only when an argument did not fit");
            cr_assert_leq(req.argv_needed, 2 * received);
            cr_assert_geq(req.argv_needed, received);
            cr_assert(req.argv_needed >= 2 * req.argv_cap || req.argv_needed == n);
            shale_slice *g = realloc(req.argv, req.argv_needed * sizeof(*g));
            cr_assert_not_null(g);
            req.argv = g;
            req.argv_cap = req.argv_needed;
            growths++;
            continue;
        }
        cr_assert_lt(have, big.len);
        have = have + 100 < big.len ? have + 100 : big.len;
        while (received < n && ends[received] <= have) {
            received++;
        }
    }
    cr_assert_eq(req.argc, n);
    for (size_t i = 0; i < n; i++) {
        char arg[48];
        int alen = snprintf(arg, sizeof(arg), "%zu", i);
        cr_assert(slice_eq(req.argv[i], (shale_slice){.data = arg, .len = (size_t)alen}));
    }
    cr_assert_leq(growths, 14);
    mv_free(&m);
    free(req.argv);
    free(ends);
    shale_buf_free(&big);
}

Test(resp_parse, limits)
{
    resp_limits lim = {.max_args = 3, .max_bulk = 5, .max_inline = 8};
    pctx p;
    /* At each limit: fine. */
    const char *mb = "*3\r\n$5\r\nabcde\r\n$0\r\n\r\n$1\r\nx\r\n";
    p_run(&p, mb, strlen(mb), PCAP, &lim);
    cr_assert_eq(p.r, RESP_PARSE_OK);
    cr_assert_eq(p.req.argc, 3u);
    cr_assert_eq(p.used, strlen(mb));
    p_free(&p);
    p_run(&p, "a b cde\r\n", 9, PCAP, &lim);
    cr_assert_eq(p.r, RESP_PARSE_OK);
    cr_assert_eq(p.req.argc, 3u);
    p_free(&p);
    /* One over: errors, decided as soon as the length digits show it. */
    ERR_CASE_LIM("*4\r\n", &lim, "invalid multibulk length");
    ERR_CASE_LIM("*4", &lim, "invalid multibulk length");
    ERR_CASE_LIM("*1\r\n$6\r\nabcdef\r\n", &lim, "invalid bulk length");
    ERR_CASE_LIM("*1\r\n$6", &lim, "invalid bulk length");
    ERR_CASE_LIM("*1\r\n$10", &lim, "invalid bulk length");
    lim.max_args = 2;
    ERR_CASE_LIM("a b c\n", &lim, "too many arguments in inline request");
    lim.max_args = 3;
    /* Inline: 8 bytes of line plus CRLF is fine; a 9-byte line or 10 bytes without LF is not. */
    p_run(&p, "12345678\r\n", 10, PCAP, &lim);
    cr_assert_eq(p.r, RESP_PARSE_OK);
    p_free(&p);
    p_run(&p, "12345678\n", 9, PCAP, &lim);
    cr_assert_eq(p.r, RESP_PARSE_OK);
    p_free(&p);
    more_case("123456789", 9, &lim, 0);
    ERR_CASE_LIM("123456789\n", &lim, "too big inline request");
    ERR_CASE_LIM("123456789\r\n", &lim, "too big inline request");
    ERR_CASE_LIM("1234567890", &lim, "too big inline request");
    /* The defaults: 1M args, 64 MiB bulks, 64 KiB inline lines. */
    ERR_CASE("*1048577\r\n", "invalid multibulk length");
    more_case("*1048576\r\n", 10, NULL, 0);
    ERR_CASE("*1\r\n$67108865\r\n", "invalid bulk length");
    more_case("*1\r\n$67108864\r\n", 15, NULL, 0);
    size_t n = (64u << 10) + 2;
    char *line = malloc(n);
    cr_assert_not_null(line);
    memset(line, 'a', n);
    more_case(line, n - 1, NULL, 0);
    err_case(line, n, NULL, "too big inline request");
    line[n - 2] = '\r';
    line[n - 1] = '\n';
    p_run(&p, line, n, PCAP, NULL);
    cr_assert_eq(p.r, RESP_PARSE_OK);
    cr_assert_eq(p.argv[0].len, n - 2);
    p_free(&p);
    free(line);
    /* Huge limits do not overflow. */
    lim = (resp_limits){.max_args = SIZE_MAX, .max_bulk = SIZE_MAX, .max_inline = SIZE_MAX};
    more_case("*18446744073709551615\r\n", 23, &lim, 0);
    ERR_CASE_LIM("*18446744073709551616", &lim, "invalid multibulk length");
    ERR_CASE_LIM("*99999999999999999999", &lim, "invalid multibulk length");
    more_case("*1\r\n$18446744073709551615\r\nabc", 30, &lim, 0);
    more_case("PING", 4, &lim, 0);
}

/* ---- parser: resumption ---- */

/* A big multibulk: n arguments of 0..12 random bytes (CR, LF, '$' and '*' included); where each
 * argument's payload starts (off) and how long it is (len). */
typedef struct big_cmd {
    shale_buf wire;
    size_t n;
    size_t *off;
    size_t *len;
} big_cmd;

static void big_build(big_cmd *c, size_t n, tu_rng *rng)
{
    *c = (big_cmd){.n = n};
    c->off = malloc(n * sizeof(size_t));
    c->len = malloc(n * sizeof(size_t));
    cr_assert(c->off != NULL && c->len != NULL);
    char hdr[32];
    snprintf(hdr, sizeof(hdr), "*%zu\r\n", n);
    apps(&c->wire, hdr);
    for (size_t i = 0; i < n; i++) {
        uint8_t arg[12];
        size_t alen = tu_rng_below(rng, sizeof(arg) + 1);
        for (size_t j = 0; j < alen; j++) {
            arg[j] = (uint8_t)tu_rng_below(rng, 256);
        }
        snprintf(hdr, sizeof(hdr), "$%zu\r\n", alen);
        apps(&c->wire, hdr);
        c->off[i] = c->wire.len;
        c->len[i] = alen;
        app(&c->wire, arg, alen);
        apps(&c->wire, "\r\n");
    }
}

static void big_free(big_cmd *c)
{
    free(c->off);
    free(c->len);
    shale_buf_free(&c->wire);
}

/* argv holds exactly c's arguments, as slices into b (which holds c's bytes). */
static void big_expect(const big_cmd *c, const resp_request *req, const uint8_t *b)
{
    cr_assert_eq(req->argc, c->n);
    for (size_t i = 0; i < c->n; i++) {
        if ((const uint8_t *)req->argv[i].data != b + c->off[i] || req->argv[i].len != c->len[i]) {
            cr_assert_fail("arg %zu: offset %td, len %zu; want %zu, %zu", i,
                           (const uint8_t *)req->argv[i].data - b, req->argv[i].len, c->off[i],
                           c->len[i]);
        }
    }
}

/* Feeding a command in chunks of random sizes (log-uniform in 1 .. max_chunk), the server's way:
 * one request kept across calls, argv grown on argv_needed (realloc, or a new array that does
 * not keep the old contents), and, when `move`, the buffer copied to a fresh allocation before
 * every call (the old one poisoned and freed). When `stateless`, resp_request_reset before
 * every call makes each one re-parse from the command's start, as the parser did before it
 * could resume. Returns the calls made; req->examined counts the work. */
static size_t feed_chunks(const big_cmd *c, resp_request *req, size_t max_chunk, bool move,
                          bool stateless, tu_rng *rng)
{
    const uint8_t *wire = c->wire.data;
    size_t total = c->wire.len;
    moving m = {0};
    uint8_t *b = NULL;
    if (!move) {
        b = malloc(total);
        cr_assert_not_null(b);
    }
    size_t have = 0;
    size_t calls = 0;
    int bits = 0;
    while ((size_t)1 << bits < max_chunk) {
        bits++;
    }
    for (;;) {
        size_t chunk = (size_t)1 << tu_rng_below(rng, (uint64_t)bits + 1);
        chunk = 1 + tu_rng_below(rng, chunk < max_chunk ? chunk : max_chunk);
        chunk = chunk < total - have ? chunk : total - have;
        if (move) {
            b = mv_set(&m, wire, have + chunk);
        } else {
            memcpy(b + have, wire + have, chunk);
        }
        have += chunk;
        resp_parse_result r;
        size_t used = 0;
        const char *msg = NULL;
        for (;;) {
            if (stateless) {
                resp_request_reset(req);
            }
            calls++;
            r = resp_parse(b, have, NULL, req, &used, &msg);
            if (r != RESP_PARSE_MORE || req->argv_needed == 0) {
                break;
            }
            cr_assert_gt(req->argv_needed, req->argv_cap);
            cr_assert_leq(req->argv_needed, c->n);
            shale_slice *g;
            if (tu_rng_below(rng, 2)) {
                g = realloc(req->argv, req->argv_needed * sizeof(*g));
            } else {
                g = malloc(req->argv_needed * sizeof(*g));
                cr_assert_not_null(g);
                memset(g, 0xa5, req->argv_needed * sizeof(*g));
                free(req->argv);
            }
            cr_assert_not_null(g);
            req->argv = g;
            req->argv_cap = req->argv_needed;
        }
        cr_assert_neq(r, RESP_PARSE_ERROR, "%s", msg);
        if (r == RESP_PARSE_OK) {
            cr_assert_eq(have, total, "OK before the whole command was in");
            cr_assert_eq(used, total);
            cr_assert(state_clear(req));
            big_expect(c, req, b);
            break;
        }
        cr_assert_eq(used, 0u);
        cr_assert_lt(have, total, "MORE on a whole command");
    }
    if (move) {
        mv_free(&m);
    } else {
        free(b);
    }
    return calls;
}

/* What one call may re-read besides new bytes: an unfinished length line ("$" and the digits of
 * max_bulk, CRLF) and the CRLF after a payload. */
#define TAIL_REREAD 16

Test(resp_resume, big_command_in_random_chunks_parses_as_whole)
{
    tu_rng rng;
    tu_rng_seed(&rng, 11);
    big_cmd c;
    big_build(&c, 200000, &rng);
    /* Whole. */
    resp_request whole = {0};
    whole.argv = malloc(c.n * sizeof(shale_slice));
    whole.argv_cap = c.n;
    cr_assert_not_null(whole.argv);
    uint8_t *b = malloc(c.wire.len);
    cr_assert_not_null(b);
    memcpy(b, c.wire.data, c.wire.len);
    size_t used = 0;
    const char *msg = NULL;
    cr_assert_eq(resp_parse(b, c.wire.len, NULL, &whole, &used, &msg), RESP_PARSE_OK);
    cr_assert_eq(used, c.wire.len);
    big_expect(&c, &whole, b);
    free(b);
    free(whole.argv);
    /* Streamed, the buffer moving before every call. */
    for (int round = 0; round < 2; round++) {
        resp_request req = {0};
        size_t calls = feed_chunks(&c, &req, 64u << 10, true, false, &rng);
        cr_assert_gt(calls, 50u);
        cr_assert_leq(req.examined, 4 * c.wire.len + TAIL_REREAD * calls,
                      "examined %zu bytes of a %zu-byte command in %zu calls", req.examined,
                      c.wire.len, calls);
        free(req.argv);
    }
    big_free(&c);
}

/* The bytes examined stay within a constant of the command's size plus a constant per call,
 * for tiny and large chunks, and a stateless re-parse breaks that bound by far (so the count
 * does measure the quadratic behaviour this guards against). */
Test(resp_resume, work_is_linear)
{
    tu_rng rng;
    tu_rng_seed(&rng, 12);
    big_cmd c;
    big_build(&c, 20000, &rng);
    /* Big chunks first: a quadratic parser fails those quickly, and would crawl through 1s. */
    static const size_t chunks[] = {64u << 10, 4096, 16, 1};
    for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
        resp_request req = {0};
        size_t calls = feed_chunks(&c, &req, chunks[k], chunks[k] >= 4096, false, &rng);
        cr_assert_leq(req.examined, 4 * c.wire.len + TAIL_REREAD * calls,
                      "chunks up to %zu: examined %zu bytes of %zu in %zu calls", chunks[k],
                      req.examined, c.wire.len, calls);
        /* No call re-reads more than the unfinished tail. */
        cr_assert_leq(req.examined, 28 * c.wire.len);
        free(req.argv);
    }
    resp_request req = {0};
    size_t calls = feed_chunks(&c, &req, 4096, false, true, &rng);
    cr_assert_gt(req.examined, 10 * (4 * c.wire.len + TAIL_REREAD * calls),
                 "stateless: examined %zu bytes of %zu in %zu calls", req.examined, c.wire.len,
                 calls);
    free(req.argv);
    big_free(&c);
}

/* A big payload is skipped by its length, never examined, however it arrives. */
Test(resp_resume, big_bulk_is_not_examined)
{
    size_t blen = 8u << 20;
    shale_buf w = {0};
    char hdr[64];
    snprintf(hdr, sizeof(hdr), "*2\r\n$3\r\nSET\r\n$%zu\r\n", blen);
    apps(&w, hdr);
    size_t at = w.len;
    cr_assert_eq(buf_reserve(&w, blen + 2, NULL), SHALE_OK);
    memset((uint8_t *)w.data + w.len, '\n', blen);
    w.len += blen;
    apps(&w, "\r\n");
    resp_request req = {0};
    shale_slice argv[2];
    req.argv = argv;
    req.argv_cap = 2;
    size_t calls = 0;
    resp_parse_result r = RESP_PARSE_MORE;
    size_t used = 0;
    const char *msg = NULL;
    for (size_t have = 1; r == RESP_PARSE_MORE; have += have < at ? 1 : 4096) {
        cr_assert_lt(have, w.len + 4096, "MORE on the whole command");
        have = have < w.len ? have : w.len;
        r = resp_parse(w.data, have, NULL, &req, &used, &msg);
        cr_assert_eq(req.argv_needed, 0u);
        calls++;
    }
    cr_assert_eq(r, RESP_PARSE_OK);
    cr_assert_eq(used, w.len);
    cr_assert_eq(req.argc, 2u);
    cr_assert(slice_eq(argv[0], S("SET")));
    cr_assert_eq(argv[1].data, (uint8_t *)w.data + at);
    cr_assert_eq(argv[1].len, blen);
    cr_assert_leq(req.examined, 4 * at + TAIL_REREAD * calls, "examined %zu in %zu calls",
                  req.examined, calls);
    shale_buf_free(&w);
}

/* An inline line's search for its '\n' resumes too. */
Test(resp_resume, inline_line_in_pieces)
{
    size_t n = 64u << 10; /* the default max_inline */
    uint8_t *line = malloc(n + 2);
    cr_assert_not_null(line);
    for (size_t i = 0; i < n; i++) {
        line[i] = i % 7 == 6 ? ' ' : (uint8_t)('a' + i % 7);
    }
    memcpy(line + n, "\r\n", 2);
    size_t words = (n + 6) / 7;
    for (int stateless = 0; stateless < 2; stateless++) {
        resp_request req = {0};
        moving m = {0};
        size_t calls = 0;
        size_t have = 0;
        resp_parse_result r = RESP_PARSE_MORE;
        size_t used = 0;
        const char *msg = NULL;
        while (r == RESP_PARSE_MORE) {
            if (req.argv_needed == 0) {
                cr_assert_lt(have, n + 2);
                have += 1 + (size_t)calls % 64;
                have = have < n + 2 ? have : n + 2;
            } else {
                cr_assert_eq(req.argv_needed, words);
                cr_assert_eq(have, n + 2, "asked only once the line is in");
                req.argv = malloc(words * sizeof(shale_slice));
                cr_assert_not_null(req.argv);
                req.argv_cap = words;
            }
            if (stateless) {
                resp_request_reset(&req);
            }
            uint8_t *b = mv_set(&m, line, have);
            r = resp_parse(b, have, NULL, &req, &used, &msg);
            calls++;
        }
        cr_assert_eq(r, RESP_PARSE_OK);
        cr_assert_eq(used, n + 2);
        cr_assert_eq(req.argc, words);
        cr_assert(slice_eq(req.argv[0], S("abcdef")));
        cr_assert(state_clear(&req));
        if (stateless) {
            cr_assert_gt(req.examined, 100 * (n + 2));
        } else {
            /* Searched once, split to count, searched and split twice after argv grew. */
            cr_assert_leq(req.examined, 5 * (n + 2), "examined %zu", req.examined);
        }
        free(req.argv);
        mv_free(&m);
    }
    free(line);
}

/* The state is cleared after OK and after ERROR, and by resp_request_reset; the next command
 * on the same request parses from scratch. */
Test(resp_resume, state_lifecycle)
{
    shale_slice argv[4];
    resp_request req = {.argv = argv, .argv_cap = 4};
    moving m = {0};
    size_t used = 0;
    const char *msg = NULL;
    const char part[] = "*0\r\n*2\r\n$3\r\nGET\r\n$3\r\nke";
    uint8_t *b = mv_set(&m, part, sizeof(part) - 1);
    cr_assert_eq(resp_parse(b, sizeof(part) - 1, NULL, &req, &used, &msg), RESP_PARSE_MORE);
    cr_assert_eq(used, 4u, "the empty command before it");
    cr_assert_eq(req.resume_off, 13u, "the end of the whole GET, from the command's start");
    cr_assert_eq(req.resume_argc, 1u);
    cr_assert_eq(req.resume_nargs, 2u);
    /* The caller drops the used bytes; the rest arrives with a bad command behind it. */
    const char rest[] = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\n$1\r\nx\r";
    b = mv_set(&m, rest, sizeof(rest) - 1);
    cr_assert_eq(resp_parse(b, sizeof(rest) - 1, NULL, &req, &used, &msg), RESP_PARSE_OK);
    cr_assert_eq(used, 22u);
    cr_assert(slice_eq(argv[0], S("GET")) && slice_eq(argv[1], S("key")));
    cr_assert(state_clear(&req));
    cr_assert_eq(resp_parse(b + 22, sizeof(rest) - 1 - 22, NULL, &req, &used, &msg),
                 RESP_PARSE_MORE);
    cr_assert_eq(req.resume_off, 4u, "the header");
    const char bad[] = "*1\r\n$1\r\nxy";
    b = mv_set(&m, bad, sizeof(bad) - 1);
    cr_assert_eq(resp_parse(b, sizeof(bad) - 1, NULL, &req, &used, &msg), RESP_PARSE_ERROR);
    cr_assert_str_eq(msg, "expected CRLF after bulk string");
    cr_assert(state_clear(&req), "ERROR clears the state");
    /* resp_request_reset drops an unfinished command. */
    b = mv_set(&m, rest, 13);
    cr_assert_eq(resp_parse(b, 13, NULL, &req, &used, &msg), RESP_PARSE_MORE);
    cr_assert_eq(req.resume_argc, 1u);
    size_t examined = req.examined;
    resp_request_reset(&req);
    cr_assert(state_clear(&req));
    cr_assert_eq(req.examined, examined, "the statistic survives");
    cr_assert_eq(req.argv, argv);
    cr_assert_eq(req.argv_cap, 4u);
    b = mv_set(&m, "PING\r\n", 6);
    cr_assert_eq(resp_parse(b, 6, NULL, &req, &used, &msg), RESP_PARSE_OK);
    cr_assert(slice_eq(argv[0], S("PING")));
    /* An inline line's state is how far it was searched. */
    b = mv_set(&m, "ECHO hel", 8);
    cr_assert_eq(resp_parse(b, 8, NULL, &req, &used, &msg), RESP_PARSE_MORE);
    cr_assert_eq(req.resume_off, 8u);
    cr_assert_eq(req.resume_nargs, 0u);
    b = mv_set(&m, "ECHO hello\n", 11);
    cr_assert_eq(resp_parse(b, 11, NULL, &req, &used, &msg), RESP_PARSE_OK);
    cr_assert_eq(req.argc, 2u);
    cr_assert(slice_eq(argv[1], S("hello")));
    cr_assert(state_clear(&req));
    mv_free(&m);
}

/* ---- parser: protocol errors ---- */

Test(resp_parse, bad_multibulk_lengths)
{
    ERR_CASE("*-2\r\n", "invalid multibulk length");
    ERR_CASE("*-10\r\n", "invalid multibulk length");
    ERR_CASE("*-1x", "invalid multibulk length");
    ERR_CASE("*-0\r\n", "invalid multibulk length");
    ERR_CASE("*--1\r\n", "invalid multibulk length");
    ERR_CASE("*+1\r\n", "invalid multibulk length");
    ERR_CASE("*abc\r\n", "invalid multibulk length");
    ERR_CASE("*1x\r\n", "invalid multibulk length");
    ERR_CASE("*1 \r\n", "invalid multibulk length");
    ERR_CASE("* 1\r\n", "invalid multibulk length");
    ERR_CASE("*01\r\n", "invalid multibulk length");
    ERR_CASE("*00\r\n", "invalid multibulk length");
    ERR_CASE("*\r\n", "invalid multibulk length");
    ERR_CASE("*1\n", "invalid multibulk length");
    ERR_CASE("*1\rX", "invalid multibulk length");
    ERR_CASE("*1\r\r", "invalid multibulk length");
    MORE_CASE("*", 0);
    MORE_CASE("*-", 0);
    MORE_CASE("*-1", 0);
    MORE_CASE("*1", 0);
    MORE_CASE("*12\r", 0);
}

Test(resp_parse, bad_bulk_lengths)
{
    ERR_CASE("*1\r\n$-1\r\n", "invalid bulk length");
    ERR_CASE("*1\r\n$-", "invalid bulk length");
    ERR_CASE("*1\r\n$abc\r\n", "invalid bulk length");
    ERR_CASE("*1\r\n$01\r\nx\r\n", "invalid bulk length");
    ERR_CASE("*1\r\n$\r\n", "invalid bulk length");
    ERR_CASE("*1\r\n$1x\r\n", "invalid bulk length");
    ERR_CASE("*1\r\n$1\n", "invalid bulk length");
    ERR_CASE("*1\r\n$1\rx", "invalid bulk length");
    ERR_CASE("*1\r\n$99999999999999999999999\r\n", "invalid bulk length");
    ERR_CASE("*2\r\n$1\r\na\r\n$+1\r\n", "invalid bulk length");
}

Test(resp_parse, bad_type_bytes)
{
    ERR_CASE("*1\r\nX", "expected '$', got 'X'");
    ERR_CASE("*1\r\n:1\r\n", "expected '$', got ':'");
    ERR_CASE("*2\r\n$1\r\na\r\n*1\r\n", "expected '$', got '*'");
    ERR_CASE("*1\r\n\r\n", "expected '$', got '\\x0d'");
    ERR_CASE("*1\r\n\0", "expected '$', got '\\x00'");
    ERR_CASE("*1\r\n\xff", "expected '$', got '\\xff'");
    ERR_CASE("*1\r\n\"", "expected '$', got '\"'");
    ERR_CASE("*1\r\n\\", "expected '$', got '\\'");
    /* Every message is one line (it becomes the text of an error reply). */
    for (int c = 0; c < 256; c++) {
        if (c == '$') {
            continue;
        }
        uint8_t in[5] = {'*', '1', '\r', '\n', (uint8_t)c};
        pctx p;
        p_run(&p, in, 5, PCAP, NULL);
        cr_assert_eq(p.r, RESP_PARSE_ERROR);
        cr_assert(strncmp(p.msg, "expected '$', got '", 19) == 0);
        cr_assert_null(strpbrk(p.msg, "\r\n"), "byte %d", c);
        p_free(&p);
    }
}

Test(resp_parse, missing_crlf_after_bulk)
{
    ERR_CASE("*1\r\n$1\r\nabc", "expected CRLF after bulk string");
    ERR_CASE("*1\r\n$1\r\na\n", "expected CRLF after bulk string");
    ERR_CASE("*1\r\n$1\r\na\rX", "expected CRLF after bulk string");
    ERR_CASE("*1\r\n$0\r\n\n\r", "expected CRLF after bulk string");
    MORE_CASE("*1\r\n$1\r\na\r", 0);
    MORE_CASE("*1\r\n$1\r\na", 0);
}

Test(resp_parse, unbalanced_quotes)
{
    ERR_CASE("SET \"abc\n", "unbalanced quotes in request");
    ERR_CASE("SET 'abc\n", "unbalanced quotes in request");
    ERR_CASE("SET \"a\"b\n", "unbalanced quotes in request");
    ERR_CASE("SET 'a'b\n", "unbalanced quotes in request");
    ERR_CASE("SET \"a\"\"b\"\n", "unbalanced quotes in request");
    ERR_CASE("SET \"abc\\\"\n", "unbalanced quotes in request");
    ERR_CASE("SET 'abc\\'\n", "unbalanced quotes in request");
    ERR_CASE("\"\r\n", "unbalanced quotes in request");
    ERR_CASE("\"a\0\"\n", "unbalanced quotes in request");
    ERR_CASE("\"\\\0\"\n", "unbalanced quotes in request");
    /* The whole line must be in before quotes are judged. */
    MORE_CASE("SET \"abc", 0);
}

/* ---- randomized ---- */

static const resp_limits small_limits = {.max_args = 6, .max_bulk = 12, .max_inline = 40};

/* Appends the RESP multibulk encoding of argv. */
static void encode_multibulk(shale_buf *b, const shale_slice *argv, size_t argc)
{
    char hdr[32];
    snprintf(hdr, sizeof(hdr), "*%zu\r\n", argc);
    apps(b, hdr);
    for (size_t i = 0; i < argc; i++) {
        snprintf(hdr, sizeof(hdr), "$%zu\r\n", argv[i].len);
        apps(b, hdr);
        app(b, argv[i].data, argv[i].len);
        apps(b, "\r\n");
    }
}

/* Appends an inline encoding of argv (random quoting and spacing) that parses back to argv. */
static void encode_inline(shale_buf *b, const shale_slice *argv, size_t argc, tu_rng *rng)
{
    static const char *const spaces[] = {" ", "  ", "\t", " \t "};
    if (tu_rng_below(rng, 4) == 0) {
        apps(b, spaces[tu_rng_below(rng, 4)]);
    }
    for (size_t i = 0; i < argc; i++) {
        const uint8_t *d = argv[i].data;
        size_t n = argv[i].len;
        bool bare_ok = n > 0;
        bool single_ok = true;
        for (size_t j = 0; j < n; j++) {
            uint8_t c = d[j];
            if (c == 0 || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"' ||
                c == '\'' || ((c == '\v' || c == '\f') && j == 0)) {
                bare_ok = false;
            }
            if (c < 0x20 || c >= 0x7f || c == '\\') {
                single_ok = false;
            }
        }
        if (i == 0 && n > 0 && d[0] == '*') {
            bare_ok = false; /* would read as a multibulk */
        }
        uint64_t style = tu_rng_below(rng, 3);
        if (bare_ok && style == 0) {
            app(b, d, n);
        } else if (single_ok && style == 1) {
            apps(b, "'");
            for (size_t j = 0; j < n; j++) {
                apps(b, d[j] == '\'' ? "\\'" : "");
                if (d[j] != '\'') {
                    app(b, &d[j], 1);
                }
            }
            apps(b, "'");
        } else {
            apps(b, "\"");
            for (size_t j = 0; j < n; j++) {
                uint8_t c = d[j];
                char esc[8];
                if (c == '"' || c == '\\') {
                    snprintf(esc, sizeof(esc), "\\%c", c);
                } else if (c == '\n') {
                    snprintf(esc, sizeof(esc), "\\n");
                } else if (c >= 0x20 && c < 0x7f && tu_rng_below(rng, 8) != 0) {
                    snprintf(esc, sizeof(esc), "%c", c);
                } else {
                    snprintf(esc, sizeof(esc), "\\x%02x", c);
                }
                apps(b, esc);
            }
            apps(b, "\"");
        }
        apps(b, i + 1 < argc ? spaces[tu_rng_below(rng, 4)] : "");
    }
    apps(b, tu_rng_below(rng, 2) ? "\r\n" : "\n");
}

/* A random command: 1..5 args of 0..10 bytes from a protocol-hostile alphabet. */
typedef struct gen_cmd {
    size_t argc;
    uint8_t bytes[5][10];
    shale_slice argv[5];
} gen_cmd;

static void gen_command(gen_cmd *c, tu_rng *rng)
{
    static const char alpha[] = "ab*$:+-\r\n\"'\\ \t\0x0123456789";
    c->argc = 1 + tu_rng_below(rng, 5);
    for (size_t i = 0; i < c->argc; i++) {
        size_t n = tu_rng_below(rng, 11);
        for (size_t j = 0; j < n; j++) {
            c->bytes[i][j] = tu_rng_below(rng, 4) == 0
                                 ? (uint8_t)tu_rng_below(rng, 256)
                                 : (uint8_t)alpha[tu_rng_below(rng, sizeof(alpha) - 1)];
        }
        c->argv[i] = (shale_slice){.data = c->bytes[i], .len = n};
    }
}

/* Appends a random pipeline of up to 4 commands (with empty commands between) to b and, when
 * cmds is not NULL, records them. */
static size_t gen_pipeline(shale_buf *b, gen_cmd *cmds, tu_rng *rng)
{
    static const char *const empties[] = {"*0\r\n", "*-1\r\n", "\r\n", "\n", "  \t\r\n"};
    size_t n = 1 + tu_rng_below(rng, 4);
    for (size_t i = 0; i < n; i++) {
        if (tu_rng_below(rng, 5) == 0) {
            apps(b, empties[tu_rng_below(rng, 5)]);
        }
        gen_cmd local;
        gen_cmd *c = cmds != NULL ? &cmds[i] : &local;
        gen_command(c, rng);
        if (tu_rng_below(rng, 2)) {
            encode_multibulk(b, c->argv, c->argc);
        } else {
            encode_inline(b, c->argv, c->argc, rng);
        }
    }
    return n;
}

/* Checks one parse result against the parser's invariants. On OK: a fresh copy of the same
 * bytes, the bytes plus a random tail, and the args re-encoded as a multibulk all parse to the
 * same args; a random proper prefix of the used bytes is MORE. On ERROR: the bytes plus a random
 * tail give the same error. */
static void check_invariants(const pctx *p, const uint8_t *orig, const resp_limits *lim,
                             tu_rng *rng)
{
    cr_assert_leq(p->used, p->len);
    if (p->r == RESP_PARSE_ERROR) {
        cr_assert_not_null(p->msg);
        cr_assert_gt(strlen(p->msg), 0u);
        cr_assert_null(strpbrk(p->msg, "\r\n"));
        cr_assert_eq(p->req.argc, 0u);
        uint8_t tail[8];
        size_t tn = 1 + tu_rng_below(rng, sizeof(tail));
        uint8_t *ext = malloc(p->len + tn);
        cr_assert_not_null(ext);
        memcpy(ext, orig, p->len);
        for (size_t i = 0; i < tn; i++) {
            ext[p->len + i] = (uint8_t)tu_rng_below(rng, 256);
        }
        pctx q;
        p_run(&q, ext, p->len + tn, p->req.argv_cap, lim);
        cr_assert_eq(q.r, RESP_PARSE_ERROR, "more bytes cannot undo an error");
        cr_assert_str_eq(q.msg, p->msg);
        p_free(&q);
        free(ext);
        return;
    }
    cr_assert_null(p->msg);
    if (p->r == RESP_PARSE_MORE) {
        cr_assert_eq(p->req.argc, 0u);
        cr_assert(p->req.argv_needed == 0 || p->req.argv_needed > p->req.argv_cap);
        return;
    }
    cr_assert_eq(p->r, RESP_PARSE_OK);
    cr_assert_gt(p->used, 0u);
    cr_assert_geq(p->req.argc, 1u);
    cr_assert_leq(p->req.argc, p->req.argv_cap);
    cr_assert_leq(p->req.argc, lim->max_args);
    for (size_t i = 0; i < p->req.argc; i++) {
        const uint8_t *d = p->argv[i].data;
        cr_assert(d >= p->copy && d + p->argv[i].len <= p->copy + p->used, "arg %zu out of range",
                  i);
        cr_assert_leq(p->argv[i].len,
                      lim->max_bulk > lim->max_inline ? lim->max_bulk : lim->max_inline);
    }
    /* The same bytes again (fresh copy: inline unescaping rewrote p's). */
    pctx q;
    p_run(&q, orig, p->len, p->req.argv_cap, lim);
    cr_assert_eq(q.r, RESP_PARSE_OK);
    cr_assert_eq(q.used, p->used);
    expect_args(&q, p->argv, p->req.argc, "reparse");
    p_free(&q);
    /* With more bytes after it. */
    uint8_t *ext = malloc(p->len + 5);
    cr_assert_not_null(ext);
    memcpy(ext, orig, p->len);
    memcpy(ext + p->len, "*1\r\n$", 5);
    p_run(&q, ext, p->len + 5, p->req.argv_cap, lim);
    cr_assert_eq(q.r, RESP_PARSE_OK);
    cr_assert_eq(q.used, p->used);
    expect_args(&q, p->argv, p->req.argc, "extended");
    p_free(&q);
    free(ext);
    /* A proper prefix. */
    size_t k = tu_rng_below(rng, p->used);
    p_run(&q, orig, k, p->req.argv_cap, lim);
    cr_assert_eq(q.r, RESP_PARSE_MORE, "prefix %zu of %zu", k, p->used);
    cr_assert_eq(q.req.argv_needed, 0u);
    p_free(&q);
    /* Re-encoded as a multibulk (the limits may not fit an inline word's unescaped bytes). */
    shale_buf enc = {0};
    encode_multibulk(&enc, p->argv, p->req.argc);
    p_run(&q, enc.data, enc.len, p->req.argv_cap, NULL);
    cr_assert_eq(q.r, RESP_PARSE_OK);
    cr_assert_eq(q.used, enc.len);
    expect_args(&q, p->argv, p->req.argc, "re-encoded");
    p_free(&q);
    shale_buf_free(&enc);
}

/* A transcript of what a connection gets from a byte stream: for each command "O", where it
 * ends in the stream and its arguments; then how the stream ends: "E" and the message, or "M"
 * and where its unfinished rest starts. */
static void tr_cmd(shale_buf *t, size_t end, const resp_request *req)
{
    app(t, "O", 1);
    app(t, &end, sizeof(end));
    app(t, &req->argc, sizeof(req->argc));
    for (size_t i = 0; i < req->argc; i++) {
        app(t, &req->argv[i].len, sizeof(req->argv[i].len));
        app(t, req->argv[i].data, req->argv[i].len);
    }
}

static void tr_end(shale_buf *t, resp_parse_result r, const char *msg, size_t at)
{
    cr_assert(r == RESP_PARSE_ERROR || r == RESP_PARSE_MORE);
    if (r == RESP_PARSE_ERROR) {
        apps(t, "E");
        apps(t, msg);
    } else {
        app(t, "M", 1);
        app(t, &at, sizeof(at));
    }
}

/* The transcript of parsing all of data at once, a fresh request for every call (what the
 * parser did before it could resume). */
static void transcript_fresh(const uint8_t *data, size_t len, const resp_limits *lim, shale_buf *t)
{
    size_t off = 0;
    size_t cap = 0;
    shale_slice *argv = NULL;
    for (;;) {
        resp_request req = {.argv = argv, .argv_cap = cap};
        uint8_t *copy = malloc(len - off + 1);
        cr_assert_not_null(copy);
        memcpy(copy, data + off, len - off);
        size_t used = 0;
        const char *msg = NULL;
        resp_parse_result r = resp_parse(copy, len - off, lim, &req, &used, &msg);
        if (r == RESP_PARSE_OK) {
            cr_assert_gt(used, 0u);
            tr_cmd(t, off + used, &req);
            off += used;
        } else if (r == RESP_PARSE_MORE && req.argv_needed > 0) {
            cr_assert_gt(req.argv_needed, cap);
            cr_assert_leq(req.argv_needed, len);
            argv = realloc(argv, req.argv_needed * sizeof(*argv));
            cr_assert_not_null(argv);
            cap = req.argv_needed;
        } else {
            tr_end(t, r, msg, off + used);
            free(copy);
            break;
        }
        free(copy);
    }
    free(argv);
}

/* The transcript of data arriving in random chunks at one request that keeps its state, as a
 * connection gets it: the buffer moves before every call, argv grows by realloc or by a new
 * array that does not keep the old contents, and now and then resp_request_reset before a call
 * makes it start the command over (which must not change anything either). */
static void transcript_resumed(const uint8_t *data, size_t len, const resp_limits *lim, tu_rng *rng,
                               shale_buf *t)
{
    resp_request req = {.argv_cap = tu_rng_below(rng, 4)};
    if (req.argv_cap > 0) {
        req.argv = malloc(req.argv_cap * sizeof(shale_slice));
        cr_assert_not_null(req.argv);
    }
    moving m = {0};
    uint8_t *b = mv_set(&m, data, 0);
    size_t base = 0; /* b holds data[base .. base + have) */
    size_t have = 0;
    for (int guard = 0;; guard++) {
        cr_assert_lt(guard, 100000);
        resp_parse_result r = RESP_PARSE_MORE;
        size_t used = 0;
        const char *msg = NULL;
        if (have > 0) {
            if (tu_rng_below(rng, 8) == 0) {
                resp_request_reset(&req);
            }
            r = resp_parse(b, have, lim, &req, &used, &msg);
        }
        cr_assert_leq(used, have);
        if (r == RESP_PARSE_ERROR) {
            cr_assert(state_clear(&req));
            tr_end(t, r, msg, 0);
            break;
        }
        if (r == RESP_PARSE_OK) {
            cr_assert(state_clear(&req));
            tr_cmd(t, base + used, &req);
        } else if (req.argv_needed > 0) {
            cr_assert_gt(req.argv_needed, req.argv_cap);
            shale_slice *g;
            if (tu_rng_below(rng, 2)) {
                g = realloc(req.argv, req.argv_needed * sizeof(*g));
            } else {
                g = malloc(req.argv_needed * sizeof(*g));
                cr_assert_not_null(g);
                memset(g, 0xa5, req.argv_needed * sizeof(*g));
                free(req.argv);
            }
            cr_assert_not_null(g);
            req.argv = g;
            req.argv_cap = req.argv_needed;
            continue;
        }
        base += used;
        have -= used;
        if (r == RESP_PARSE_MORE) {
            if (base + have == len) {
                tr_end(t, r, NULL, base);
                break;
            }
            size_t chunk = tu_rng_below(rng, 4) == 0 ? len : 1 + tu_rng_below(rng, 16);
            have += chunk < len - base - have ? chunk : len - base - have;
        }
        b = mv_set(&m, data + base, have);
    }
    mv_free(&m);
    free(req.argv);
}

/* Resumed in random chunks, data parses exactly as when whole. */
static void check_resumed(const uint8_t *data, size_t len, const resp_limits *lim, tu_rng *rng)
{
    shale_buf want = {0};
    shale_buf got = {0};
    transcript_fresh(data, len, lim, &want);
    transcript_resumed(data, len, lim, rng, &got);
    char what[128];
    cr_assert(got.len == want.len && memcmp(got.data, want.data, want.len) == 0,
              "resumed parse of \"%s\" differs", tu_head(what, sizeof(what), data, len));
    shale_buf_free(&want);
    shale_buf_free(&got);
}

/* Parses data as a connection would: command after command, growing argv on request, until
 * MORE or ERROR; checks the invariants of every result, and that a resumed parse of the same
 * bytes arriving in pieces agrees. */
static void parse_all(const uint8_t *data, size_t len, const resp_limits *lim, tu_rng *rng)
{
    check_resumed(data, len, lim, rng);
    size_t off = 0;
    size_t cap = 1 + tu_rng_below(rng, 4);
    for (int guard = 0; guard < 1000; guard++) {
        pctx p;
        p_run(&p, data + off, len - off, cap, lim);
        check_invariants(&p, data + off, lim, rng);
        resp_parse_result r = p.r;
        size_t used = p.used;
        size_t needed = p.req.argv_needed;
        p_free(&p);
        if (r == RESP_PARSE_OK) {
            off += used;
        } else if (r == RESP_PARSE_MORE && needed > 0) {
            cr_assert_leq(needed, (size_t)PCAP);
            cap = needed;
        } else {
            return;
        }
    }
    cr_assert_fail("parse loop did not end");
}

static const resp_limits *pick_limits(tu_rng *rng)
{
    static const resp_limits defaults = RESP_LIMITS_DEFAULT;
    return tu_rng_below(rng, 3) == 0 ? &small_limits : &defaults;
}

static void fuzz_random_bytes(uint64_t seed, int cases)
{
    static const char alpha[] = "*$\r\n0123456789-+ \t\"'\\x";
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    uint8_t data[96];
    for (int i = 0; i < cases; i++) {
        size_t n = tu_rng_below(&rng, sizeof(data) + 1);
        uint64_t mode = tu_rng_below(&rng, 3);
        for (size_t j = 0; j < n; j++) {
            data[j] = mode == 0 || tu_rng_below(&rng, 4) == 0
                          ? (uint8_t)tu_rng_below(&rng, 256)
                          : (uint8_t)alpha[tu_rng_below(&rng, sizeof(alpha) - 1)];
        }
        if (mode == 2 && n > 0) {
            data[0] = '*'; /* mostly multibulks */
        }
        parse_all(data, n, pick_limits(&rng), &rng);
    }
}

static void fuzz_mutations(uint64_t seed, int cases)
{
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    shale_buf b = {0};
    for (int i = 0; i < cases; i++) {
        buf_reset(&b);
        gen_pipeline(&b, NULL, &rng);
        uint64_t muts = 1 + tu_rng_below(&rng, 3);
        for (uint64_t m = 0; m < muts && b.len > 0; m++) {
            uint8_t *d = b.data;
            size_t at = tu_rng_below(&rng, b.len);
            static const char interesting[] = "*$\r\n-0123456789\"' \\";
            uint8_t byte = tu_rng_below(&rng, 2)
                               ? (uint8_t)tu_rng_below(&rng, 256)
                               : (uint8_t)interesting[tu_rng_below(&rng, sizeof(interesting) - 1)];
            switch (tu_rng_below(&rng, 5)) {
            case 0:
                d[at] = byte;
                break;
            case 1:
                d[at] ^= (uint8_t)(1u << tu_rng_below(&rng, 8));
                break;
            case 2: /* insert */
                app(&b, "", 1);
                d = b.data;
                memmove(d + at + 1, d + at, b.len - 1 - at);
                d[at] = byte;
                break;
            case 3: /* delete */
                memmove(d + at, d + at + 1, b.len - at - 1);
                b.len--;
                break;
            default:
                b.len = at;
                break; /* truncate */
            }
        }
        parse_all(b.data, b.len, pick_limits(&rng), &rng);
    }
    shale_buf_free(&b);
}

Test(resp_fuzz, random_bytes_a)
{
    fuzz_random_bytes(1, 50000);
}

Test(resp_fuzz, random_bytes_b)
{
    fuzz_random_bytes(2, 50000);
}

Test(resp_fuzz, mutated_pipelines_a)
{
    fuzz_mutations(3, 50000);
}

Test(resp_fuzz, mutated_pipelines_b)
{
    fuzz_mutations(4, 50000);
}

/* A connection's buffer moves (evbuffer_pullup may reallocate): a fresh allocation of cap
 * bytes holding the first n of old's, which is poisoned and freed. */
static uint8_t *move_buf(uint8_t *old, size_t n, size_t cap)
{
    uint8_t *fresh = malloc(cap > 0 ? cap : 1);
    cr_assert_not_null(fresh);
    if (n > 0) {
        memcpy(fresh, old, n);
    }
    memset(old, 0xa5, cap);
    free(old);
    return fresh;
}

/* Generated pipelines parse to exactly the generated commands, also when the bytes arrive in
 * random chunks and the caller keeps the unparsed rest and the request's state, as a
 * connection does, its buffer moving between calls. */
Test(resp_fuzz, generated_pipelines_in_chunks)
{
    tu_rng rng;
    tu_rng_seed(&rng, 5);
    shale_buf wire = {0};
    for (int i = 0; i < 20000; i++) {
        buf_reset(&wire);
        gen_cmd cmds[4];
        size_t n = gen_pipeline(&wire, cmds, &rng);
        uint8_t *conn = malloc(wire.len); /* the connection's buffer */
        cr_assert_not_null(conn);
        size_t have = 0;
        size_t sent = 0;
        size_t got = 0;
        shale_slice argv[5];
        resp_request req = {.argv = argv, .argv_cap = 1 + tu_rng_below(&rng, 5)};
        while (got < n) {
            resp_parse_result r = RESP_PARSE_MORE;
            size_t used = 0;
            const char *msg = NULL;
            if (have > 0) {
                r = resp_parse(conn, have, NULL, &req, &used, &msg);
            }
            cr_assert_neq(r, RESP_PARSE_ERROR, "case %d: %s", i, msg);
            if (r == RESP_PARSE_OK) {
                cr_assert_lt(got, n);
                gen_cmd *c = &cmds[got++];
                cr_assert_eq(req.argc, c->argc, "case %d command %zu", i, got);
                for (size_t a = 0; a < c->argc; a++) {
                    cr_assert(slice_eq(argv[a], c->argv[a]), "case %d arg %zu", i, a);
                }
            } else if (req.argv_needed > 0) {
                cr_assert_gt(req.argv_needed, req.argv_cap);
                cr_assert_leq(req.argv_needed, 5u);
                req.argv_cap = req.argv_needed;
                continue;
            } else {
                cr_assert_lt(sent, wire.len, "case %d: MORE at the end of a whole pipeline", i);
                size_t chunk = 1 + tu_rng_below(&rng, 16);
                if (chunk > wire.len - sent) {
                    chunk = wire.len - sent;
                }
                /* Keep the unparsed rest, as a connection does, then append what arrived. */
                memmove(conn, conn + used, have - used);
                have -= used;
                conn = move_buf(conn, have, wire.len);
                memcpy(conn + have, (uint8_t *)wire.data + sent, chunk);
                have += chunk;
                sent += chunk;
                continue;
            }
            memmove(conn, conn + used, have - used);
            have -= used;
            conn = move_buf(conn, have, wire.len);
        }
        /* Only empty commands may remain. */
        size_t used = 0;
        const char *msg = NULL;
        while (sent < wire.len) {
            memcpy(conn + have, (uint8_t *)wire.data + sent, wire.len - sent);
            have += wire.len - sent;
            sent = wire.len;
        }
        if (have > 0) {
            cr_assert_eq(resp_parse(conn, have, NULL, &req, &used, &msg), RESP_PARSE_MORE);
            cr_assert_eq(used, have);
        }
        free(conn);
    }
    shale_buf_free(&wire);
}
