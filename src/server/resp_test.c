/*
 * resp: every reply writer in RESP2 and RESP3 (exact bytes); the request parser on single and
 * pipelined commands, every split point, binary payloads, inline quoting, every protocol error,
 * limits, empty commands and argv growth; and randomized runs (random bytes, mutated valid
 * pipelines, generated pipelines fed in random chunks) that check the parser's invariants.
 *
 * Every parse runs on a private malloc'd copy of exactly the bytes given, so an ASan build
 * catches any read past len.
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

/* Every proper prefix is MORE (with nothing used), the whole is OK with the given args. */
static void split_case(const void *data, size_t len, const shale_slice *want, size_t n)
{
    for (size_t k = 0; k < len; k++) {
        more_case(data, k, NULL, 0);
    }
    ok_case(data, len, len, want, n);
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
    /* Only a whole command asks for room: a header alone never makes the caller allocate. */
    p_run(&p, cmd, len - 1, 2, NULL);
    cr_assert_eq(p.r, RESP_PARSE_MORE);
    cr_assert_eq(p.req.argv_needed, 0u);
    p_free(&p);
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

/* Parses data as a connection would: command after command, growing argv on request, until
 * MORE or ERROR; checks the invariants of every result. */
static void parse_all(const uint8_t *data, size_t len, const resp_limits *lim, tu_rng *rng)
{
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

/* Generated pipelines parse to exactly the generated commands, also when the bytes arrive in
 * random chunks and the caller keeps the unparsed rest, as a connection does. */
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
                memcpy(conn + have, (uint8_t *)wire.data + sent, chunk);
                have += chunk;
                sent += chunk;
                continue;
            }
            memmove(conn, conn + used, have - used);
            have -= used;
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
