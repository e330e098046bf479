/* dval: the encoding against its header. Exact bytes of the documented format; JSON round trips
 * of hand-written and random documents (cross-checked against jansson's own reading); every
 * rejection of dval_from_json with its message; the documented order over a table of values,
 * every pair; index keys (memcmp order = value order, never a prefix of another);
 * field and path lookups; set/merge/project; dval_check on hand-built damage; and fuzzing of
 * dval_check with random bytes and every truncation and bit flip of valid encodings, each value
 * that passes then read by every function (ASan: nothing may read out of bounds). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/slice.h"
#include "doc/dval.h"
#include "testutil.h"

/* ---- helpers: a pool of buffers freed after each test ---- */

#define POOL_MAX 4096
static shale_buf *pool[POOL_MAX];
static int npool;

static shale_buf *newbuf(void)
{
    cr_assert_lt(npool, POOL_MAX);
    shale_buf *b = calloc(1, sizeof *b);
    cr_assert_not_null(b);
    pool[npool++] = b;
    return b;
}

static void pool_free(void)
{
    for (int i = 0; i < npool; i++) {
        buf_free(pool[i]);
        free(pool[i]);
    }
    npool = 0;
}

TestSuite(dval, .fini = pool_free);
TestSuite(dval_fuzz, .fini = pool_free);

static dval DV(const shale_buf *b)
{
    return (dval){b->data, b->len};
}

/* Parses JSON text (any top level), asserting success and a value that passes dval_check. */
static dval Jn(const char *text, size_t len)
{
    shale_buf *b = newbuf();
    shale_error err;
    shale_code rc = dval_from_json(text, len, false, b, &err);
    cr_assert_eq(rc, SHALE_OK, "parse %s: %s", text, err.msg);
    rc = dval_check(b->data, b->len, &err);
    cr_assert_eq(rc, SHALE_OK, "check of %s: %s", text, err.msg);
    return DV(b);
}

static dval J(const char *text)
{
    return Jn(text, strlen(text));
}

/* The value as JSON text (NUL-terminated, pooled). */
static const char *S(dval v)
{
    shale_buf *b = newbuf();
    shale_error err;
    cr_assert_eq(dval_to_json(v, b, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(buf_append(b, "", 1, &err), SHALE_OK);
    return b->data;
}

static bool same_bytes(dval a, dval b)
{
    return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

/* text -> v -> JSON (== want when given) -> v2: v2 has exactly v's bytes, and prints the same. */
static void roundtrip(const char *text, size_t len, const char *want)
{
    dval v = Jn(text, len);
    const char *s = S(v);
    if (want != NULL) {
        cr_assert_str_eq(s, want, "JSON of %s", text);
    }
    dval v2 = J(s);
    cr_assert(same_bytes(v, v2), "bytes differ after a round trip of %s (printed %s)", text, s);
    cr_assert_str_eq(S(v2), s);
    cr_assert_eq(dval_cmp(v, v2), 0);
}

/* Expects dval_from_json to fail with `code` and a message containing each of the NULL-ended
 * `parts`. */
static void reject(const char *text, size_t len, bool require_object, shale_code code, ...)
{
    shale_buf *b = newbuf();
    shale_error err;
    memset(&err, 0x5a, sizeof err);
    shale_code rc = dval_from_json(text, len, require_object, b, &err);
    cr_assert_eq(rc, code, "parse of %.*s: got %d (%s)", (int)len, text, rc,
                 rc != SHALE_OK ? err.msg : "");
    cr_assert_eq(err.code, code);
    cr_assert_lt(strlen(err.msg), sizeof err.msg);
    va_list ap;
    va_start(ap, code);
    const char *part;
    while ((part = va_arg(ap, const char *)) != NULL) {
        cr_assert(strstr(err.msg, part) != NULL, "message for %.*s is \"%s\", wants \"%s\"",
                  (int)len, text, err.msg, part);
    }
    va_end(ap);
}

#define REJECT(text, ...) reject((text), strlen(text), false, SHALE_INVALID, __VA_ARGS__, NULL)
#define REJECT_BYTES(lit, ...)                                                                     \
    reject((lit), sizeof(lit) - 1, false, SHALE_INVALID, __VA_ARGS__, NULL)

/* Expects dval_check to fail with SHALE_CORRUPTION and a message starting with `prefix`
 * ("dval @N: ") and containing `part`. */
static void check_bad(const uint8_t *p, size_t len, const char *prefix, const char *part)
{
    uint8_t *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    if (len > 0) {
        memcpy(copy, p, len);
    }
    shale_error err;
    shale_code rc = dval_check(copy, len, &err);
    free(copy);
    cr_assert_eq(rc, SHALE_CORRUPTION, "check passed bytes that should fail (%s)", part);
    cr_assert_eq(strncmp(err.msg, prefix, strlen(prefix)), 0, "message \"%s\", wants \"%s\"",
                 err.msg, prefix);
    cr_assert(strstr(err.msg, part) != NULL, "message \"%s\", wants \"%s\"", err.msg, part);
}

#define CHECK_BAD(prefix, part, ...)                                                               \
    do {                                                                                           \
        static const uint8_t bytes_[] = {__VA_ARGS__};                                             \
        check_bad(bytes_, sizeof bytes_, (prefix), (part));                                        \
    } while (0)

static int sign(int x)
{
    return (x > 0) - (x < 0);
}

static shale_slice SL(const char *s)
{
    return (shale_slice){s, strlen(s)};
}

/* ---- the format, exactly ---- */

Test(dval, golden_bytes)
{
    static const uint8_t obj[] = {DV_OBJECT, 12, 1, 1, 'a', DV_INT, 1, 0, 0, 0, 0, 0, 0, 0};
    dval v = J("{\"a\":1}");
    cr_assert(same_bytes(v, (dval){obj, sizeof obj}));

    static const uint8_t arr[] = {DV_ARRAY, 15, 5, DV_NULL, DV_TRUE, DV_FALSE, DV_DOUBLE, 0, 0,
                                  0,        0,  0, 0,       0xf8,    0x3f,     DV_STRING, 0};
    v = J("[null,true,false,1.5,\"\"]");
    cr_assert(same_bytes(v, (dval){arr, sizeof arr}));

    v = J("-2");
    static const uint8_t m2[] = {DV_INT, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    cr_assert(same_bytes(v, (dval){m2, sizeof m2}));

    /* Fields sorted bytewise whatever the text's order; nested lengths. */
    v = J("{\"b\":[],\"a\":{},\"B\":\"xy\"}");
    static const uint8_t sorted[] = {DV_OBJECT, 17, 3, 1, 'B', DV_STRING, 2, 'x', 'y', 1, 'a',
                                     DV_OBJECT, 1,  0, 1, 'b', DV_ARRAY,  1, 0};
    cr_assert(same_bytes(v, (dval){sorted, sizeof sorted}), "got %zu bytes", v.len);

    /* A container of 128+ bytes of body takes a two-byte length. */
    char text[300];
    snprintf(text, sizeof text, "\"%0200d\"", 0);
    v = J(text);
    cr_assert_eq(v.len, 1 + 2 + 200);
    cr_assert_eq(v.p[1], 0x80 | (200 & 0x7f));
    cr_assert_eq(v.p[2], 200 >> 7);
    char arrtext[320];
    snprintf(arrtext, sizeof arrtext, "[%s]", text);
    v = J(arrtext);
    cr_assert_eq(v.len, 1 + 2 + 1 + 203);
    cr_assert_eq(v.p[1], 0x80 | (204 & 0x7f));
    cr_assert_eq(v.p[3], 1); /* count */
    cr_assert_eq(dval_count(v), 1);
}

Test(dval, accessors)
{
    dval v = J("{\"i\":-7,\"d\":2.5,\"s\":\"h\\u0000i\",\"a\":[1,2,3],\"o\":{},\"n\":null,"
               "\"t\":true,\"f\":false,\"big\":9223372036854775807}");
    dval x;
    cr_assert_eq(dval_tag_of(v), DV_OBJECT);
    cr_assert_eq(dval_class_of(v), DVC_OBJECT);
    cr_assert_eq(dval_count(v), 9);
    cr_assert(dval_field(v, SL("i"), &x));
    cr_assert_eq(dval_tag_of(x), DV_INT);
    cr_assert_eq(dval_class_of(x), DVC_NUMBER);
    cr_assert_eq(dval_int(x), -7);
    cr_assert_eq(dval_double(x), -7.0);
    cr_assert_eq(dval_count(x), 0);
    cr_assert(dval_field(v, SL("big"), &x));
    cr_assert_eq(dval_int(x), INT64_MAX);
    cr_assert(dval_field(v, SL("d"), &x));
    cr_assert_eq(dval_tag_of(x), DV_DOUBLE);
    cr_assert_eq(dval_double(x), 2.5);
    cr_assert(dval_field(v, SL("s"), &x));
    cr_assert_eq(dval_class_of(x), DVC_STRING);
    shale_slice s = dval_str(x);
    cr_assert_eq(s.len, 3);
    cr_assert_eq(memcmp(s.data, "h\0i", 3), 0);
    cr_assert(dval_field(v, SL("a"), &x));
    cr_assert_eq(dval_class_of(x), DVC_ARRAY);
    cr_assert_eq(dval_count(x), 3);
    cr_assert(dval_field(v, SL("o"), &x));
    cr_assert_eq(dval_count(x), 0);
    cr_assert(dval_field(v, SL("n"), &x));
    cr_assert_eq(dval_class_of(x), DVC_NULL);
    cr_assert(dval_field(v, SL("t"), &x));
    cr_assert_eq(dval_tag_of(x), DV_TRUE);
    cr_assert_eq(dval_class_of(x), DVC_BOOL);
    cr_assert(dval_field(v, SL("f"), &x));
    cr_assert_eq(dval_tag_of(x), DV_FALSE);
    /* dval_at recovers each value's extent from its first byte. */
    dval_iter it;
    dval_iter_init(&it, v);
    shale_slice name;
    size_t total = 0;
    while (dval_iter_next(&it, &name, &x)) {
        dval at = dval_at(x.p);
        cr_assert_eq(at.len, x.len);
        total++;
    }
    cr_assert_eq(total, 9);
    cr_assert_eq(dval_at(v.p).len, v.len);
}

/* ---- JSON round trips ---- */

Test(dval, roundtrip_handwritten)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"{}", "{}"},
        {"[]", "[]"},
        {" { \"b\" : 1 ,\n\t\"a\" : [ true , false , null ] } ",
         "{\"a\":[true,false,null],\"b\":1}"},
        {"null", "null"},
        {"true", "true"},
        {"\"\"", "\"\""},
        {"0", "0"},
        {"-0", "0"},
        {"-0.0", "-0.0"},
        {"0.0", "0.0"},
        {"1.0", "1.0"},
        {"1.5", "1.5"},
        {"0.1", "0.1"},
        {"-0.1", "-0.1"},
        {"1E2", "100.0"},
        {"1e-7", "1e-7"},
        {"1.5e-7", "1.5e-7"},
        {"1e308", "1e308"},
        {"-1e308", "-1e308"},
        {"1.7976931348623157e308", "1.7976931348623157e308"},
        {"5e-324", "5e-324"},
        {"2.2250738585072014e-308", "2.2250738585072014e-308"},
        {"1e-400", "0.0"}, /* underflows to zero, as strtod */
        {"123456789.125", "123456789.125"},
        {"1e15", "1e15"},
        {"1e16", "1e16"},
        {"123456789012345678", "123456789012345678"},
        {"9007199254740993", "9007199254740993"},
        {"9007199254740993.0", "9007199254740992.0"},
        {"9223372036854775807", "9223372036854775807"},
        {"-9223372036854775808", "-9223372036854775808"},
        /* Beyond int64: a double, not an error. */
        {"9223372036854775808", "9.223372036854776e18"},
        {"-9223372036854775809", "-9.223372036854776e18"},
        {"123456789012345678901234567890", "1.2345678901234568e29"},
        {"[1,99999999999999999999,{\"a\":-99999999999999999999},3]", "[1,1e20,{\"a\":-1e20},3]"},
        {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\\"\\\\/\\b\\f\\n\\r\\t\""},
        {"\"\\u0000\\u0001\\u001f\\u0020\\u007f\"", "\"\\u0000\\u0001\\u001f \x7f\""},
        {"\"\\u00e9\\u4e2d\\ud83d\\ude00\"", "\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\""},
        {"\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"",
         "\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\""},
        {"{\"\xc3\xa9\":1,\"e\":2,\"\\u00e8\":3,\"E\":4}",
         "{\"E\":4,\"e\":2,\"\xc3\xa8\":3,\"\xc3\xa9\":1}"},
        {"{\"a\":{\"b\":{\"c\":[1,[2,[3,{\"d\":\"e\"}]]]}}}",
         "{\"a\":{\"b\":{\"c\":[1,[2,[3,{\"d\":\"e\"}]]]}}}"},
        {"[\"a\\\"b\",{\"k\\n\":\"v\\t\"}]", "[\"a\\\"b\",{\"k\\n\":\"v\\t\"}]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        roundtrip(cases[i].in, strlen(cases[i].in), cases[i].out);
    }
    /* Types as documented: integral text is DV_INT, anything with a fraction or exponent (or
     * beyond int64) DV_DOUBLE. */
    cr_assert_eq(dval_tag_of(J("3")), DV_INT);
    cr_assert_eq(dval_tag_of(J("3.0")), DV_DOUBLE);
    cr_assert_eq(dval_tag_of(J("3e0")), DV_DOUBLE);
    cr_assert_eq(dval_tag_of(J("-0")), DV_INT);
    cr_assert_eq(dval_tag_of(J("9223372036854775808")), DV_DOUBLE);
    cr_assert_eq(dval_double(J("9223372036854775808")), 9223372036854775808.0);
    dval neg0 = J("-0.0");
    cr_assert(signbit(dval_double(neg0)));
    /* Extreme nesting that is allowed: exactly DVAL_MAX_DEPTH levels. */
    char deep[2 * DVAL_MAX_DEPTH + 1];
    for (int i = 0; i < DVAL_MAX_DEPTH; i++) {
        deep[i] = '[';
        deep[DVAL_MAX_DEPTH + i] = ']';
    }
    deep[2 * DVAL_MAX_DEPTH] = '\0';
    roundtrip(deep, strlen(deep), deep);
    /* A string holding NUL, and names up to 4 KiB. */
    roundtrip("\"a\\u0000b\"", 10, "\"a\\u0000b\"");
    char *longname = malloc(5000);
    cr_assert_not_null(longname);
    int n = snprintf(longname, 5000, "{\"%04000d\":\"%0500d\"}", 7, 8);
    roundtrip(longname, (size_t)n, longname);
    free(longname);
}

/* JSON text generator for random documents: whitespace, escapes, unicode, numbers of every kind.
 * Names in an object are unique (an index suffix). */
typedef struct gen {
    tu_rng r;
    shale_buf *t;
    bool big; /* an integer beyond int64 was written */
} gen;

static void emit(gen *g, const char *s)
{
    cr_assert_eq(buf_append(g->t, s, strlen(s), NULL), SHALE_OK);
}

static void emit_ws(gen *g)
{
    static const char *ws[] = {"", "", "", " ", "\n", "\t", "  \r\n "};
    emit(g, ws[tu_rng_below(&g->r, 7)]);
}

static void emit_string_body(gen *g, bool name)
{
    static const char *pieces[] = {
        "a",
        "b",
        "Z",
        "0",
        " ",
        "\\\"",
        "\\\\",
        "\\/",
        "\\b",
        "\\f",
        "\\n",
        "\\r",
        "\\t",
        "\\u0001",
        "\\u001f",
        "\\u00e9",
        "\\u4E2D",
        "\\ud83d\\ude00",
        "\xc3\xa9",
        "\xe4\xb8\xad",
        "\xf0\x9f\x98\x80",
        "\x7f",
        "\xef\xbf\xbf",
        "\\u0000",
    };
    size_t np = sizeof pieces / sizeof pieces[0] - (name ? 1 : 0); /* no NUL in names */
    int n = (int)tu_rng_below(&g->r, 8);
    for (int i = 0; i < n; i++) {
        emit(g, pieces[tu_rng_below(&g->r, np)]);
    }
}

static void emit_number(gen *g)
{
    char b[64];
    switch (tu_rng_below(&g->r, 10)) {
    case 0:
        snprintf(b, sizeof b, "%d", (int)tu_rng_below(&g->r, 2001) - 1000);
        break;
    case 1:
        snprintf(b, sizeof b, "%lld", (long long)tu_rng_next(&g->r));
        break;
    case 2: {
        static const char *edges[] = {"9223372036854775807",
                                      "-9223372036854775808",
                                      "9223372036854775806",
                                      "-9223372036854775807",
                                      "9007199254740993",
                                      "-9007199254740993",
                                      "0",
                                      "-0"};
        snprintf(b, sizeof b, "%s", edges[tu_rng_below(&g->r, 8)]);
        break;
    }
    case 3: {
        static const char *dbl[] = {"1e308",   "-1e308",  "0.1",     "-0.0",
                                    "5e-324",  "1.0",     "0.5",     "2.2250738585072014e-308",
                                    "1E+2",    "1e-2",    "123.456", "1.7976931348623157e308",
                                    "3.14159", "-2.5e-3", "1e21",    "0.30000000000000004"};
        snprintf(b, sizeof b, "%s", dbl[tu_rng_below(&g->r, 16)]);
        break;
    }
    case 4: { /* beyond int64 */
        snprintf(b, sizeof b, "%s%llu%u", tu_rng_below(&g->r, 2) ? "-" : "",
                 (unsigned long long)(tu_rng_next(&g->r) | (1ull << 63)) / 10 +
                     1000000000000000000ull,
                 (unsigned)tu_rng_below(&g->r, 10));
        g->big = true;
        break;
    }
    default: { /* any finite double, by its bits */
        double d;
        do {
            uint64_t u = tu_rng_next(&g->r);
            memcpy(&d, &u, sizeof d);
        } while (!isfinite(d));
        snprintf(b, sizeof b, "%.17g", d);
        if (strpbrk(b, ".e") == NULL) {
            strcat(b, ".0");
        }
        break;
    }
    }
    emit(g, b);
}

static void emit_value(gen *g, int depth)
{
    int kind = (int)tu_rng_below(&g->r, depth >= 5 ? 6 : 9);
    switch (kind) {
    case 0:
        emit(g, "null");
        break;
    case 1:
        emit(g, tu_rng_below(&g->r, 2) ? "true" : "false");
        break;
    case 2:
    case 3:
        emit_number(g);
        break;
    case 4:
    case 5:
        emit(g, "\"");
        emit_string_body(g, false);
        emit(g, "\"");
        break;
    case 6: {
        emit(g, "[");
        int n = (int)tu_rng_below(&g->r, 5);
        for (int i = 0; i < n; i++) {
            emit_ws(g);
            if (i > 0) {
                emit(g, ",");
                emit_ws(g);
            }
            emit_value(g, depth + 1);
        }
        emit_ws(g);
        emit(g, "]");
        break;
    }
    default: {
        emit(g, "{");
        int n = (int)tu_rng_below(&g->r, 6);
        for (int i = 0; i < n; i++) {
            emit_ws(g);
            if (i > 0) {
                emit(g, ",");
                emit_ws(g);
            }
            char suffix[16];
            snprintf(suffix, sizeof suffix, "#%d\"", i);
            emit(g, "\"");
            emit_string_body(g, true);
            emit(g, suffix);
            emit_ws(g);
            emit(g, ":");
            emit_ws(g);
            emit_value(g, depth + 1);
        }
        emit_ws(g);
        emit(g, "}");
        break;
    }
    }
}

Test(dval, roundtrip_random)
{
    gen g;
    tu_rng_seed(&g.r, 0xd0c5);
    shale_buf text = {0}, enc = {0}, out = {0}, enc2 = {0};
    for (int iter = 0; iter < 2500; iter++) {
        buf_reset(&text);
        g.t = &text;
        g.big = false;
        emit_ws(&g);
        emit_value(&g, 0);
        emit_ws(&g);
        shale_error err;
        cr_assert_eq(dval_from_json(text.data, text.len, false, &enc, &err), SHALE_OK, "%.*s: %s",
                     (int)text.len, (char *)text.data, err.msg);
        cr_assert_eq(dval_check(enc.data, enc.len, &err), SHALE_OK, "%s", err.msg);
        buf_reset(&out);
        cr_assert_eq(dval_to_json(DV(&enc), &out, &err), SHALE_OK);
        cr_assert_eq(dval_from_json(out.data, out.len, false, &enc2, &err), SHALE_OK, "%.*s: %s",
                     (int)out.len, (char *)out.data, err.msg);
        cr_assert(same_bytes(DV(&enc), DV(&enc2)), "round trip of %.*s", (int)text.len,
                  (char *)text.data);
        cr_assert_eq(dval_cmp(DV(&enc), DV(&enc2)), 0);
        /* jansson reads the original and our output as the same JSON value. */
        if (!g.big) {
            json_error_t je;
            json_t *a = json_loadb(text.data, text.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            json_t *b = json_loadb(out.data, out.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            cr_assert_not_null(a);
            cr_assert_not_null(b, "jansson rejects our output %.*s: %s", (int)out.len,
                               (char *)out.data, je.text);
            cr_assert(json_equal(a, b), "%.*s printed as %.*s", (int)text.len, (char *)text.data,
                      (int)out.len, (char *)out.data);
            json_decref(a);
            json_decref(b);
        }
    }
    buf_free(&text);
    buf_free(&enc);
    buf_free(&out);
    buf_free(&enc2);
}

/* A random encoded value built by hand (independently of the module's encoder): every int64,
 * every finite double, strings with NUL, sorted names with UTF-8. */
static void tb_bytes(shale_buf *b, const void *p, size_t n)
{
    cr_assert_eq(buf_append(b, p, n, NULL), SHALE_OK);
}

static void tb_varint(shale_buf *b, uint32_t v)
{
    uint8_t tmp[5];
    tb_bytes(b, tmp, (size_t)(coding_put_varint32(tmp, v) - tmp));
}

static const char *const tb_alpha[] = {"a", "b",  "\xc3\xa9", "\x01", "\x7f", "\xf0\x9f\x98\x80",
                                       "~", "\"", "\\",       "\n",   "\0"};

static void tb_random_text(tu_rng *r, char *s, size_t *len, bool allow_nul)
{
    size_t n = 0;
    int k = (int)tu_rng_below(r, 5);
    for (int i = 0; i < k; i++) {
        size_t which = tu_rng_below(r, allow_nul ? 11 : 10);
        const char *p = tb_alpha[which];
        size_t pl = which == 10 ? 1 : strlen(p);
        memcpy(s + n, p, pl);
        n += pl;
    }
    *len = n;
}

typedef struct tb_name {
    char s[32];
    size_t len;
} tb_name;

static int tb_name_cmp(const void *a, const void *b)
{
    const tb_name *x = a, *y = b;
    return slice_cmp((shale_slice){x->s, x->len}, (shale_slice){y->s, y->len});
}

static void tb_value(tu_rng *r, shale_buf *b, int depth)
{
    int kind = (int)tu_rng_below(r, depth >= 4 ? 6 : 8);
    uint8_t tmp[9];
    switch (kind) {
    case 0:
        tmp[0] = (uint8_t)tu_rng_below(r, 3); /* null, false, true */
        tb_bytes(b, tmp, 1);
        break;
    case 1:
    case 2: {
        tmp[0] = DV_INT;
        uint64_t u = tu_rng_next(r);
        if (tu_rng_below(r, 3) == 0) {
            u = (uint64_t)((int64_t)tu_rng_below(r, 200) - 100);
        }
        coding_put_fixed64(tmp + 1, u);
        tb_bytes(b, tmp, 9);
        break;
    }
    case 3:
    case 4: {
        double d;
        do {
            uint64_t u = tu_rng_next(r);
            if (tu_rng_below(r, 4) == 0) {
                d = (double)((int64_t)tu_rng_below(r, 2000) - 1000) / 8;
                memcpy(&u, &d, sizeof u);
            }
            memcpy(&d, &u, sizeof d);
        } while (!isfinite(d));
        tmp[0] = DV_DOUBLE;
        uint64_t u;
        memcpy(&u, &d, sizeof u);
        coding_put_fixed64(tmp + 1, u);
        tb_bytes(b, tmp, 9);
        break;
    }
    case 5: {
        char s[32];
        size_t n;
        tb_random_text(r, s, &n, true);
        tmp[0] = DV_STRING;
        tb_bytes(b, tmp, 1);
        tb_varint(b, (uint32_t)n);
        tb_bytes(b, s, n);
        break;
    }
    case 6: {
        shale_buf body = {0};
        uint32_t n = (uint32_t)tu_rng_below(r, 5);
        tb_varint(&body, n);
        for (uint32_t i = 0; i < n; i++) {
            tb_value(r, &body, depth + 1);
        }
        tmp[0] = DV_ARRAY;
        tb_bytes(b, tmp, 1);
        tb_varint(b, (uint32_t)body.len);
        tb_bytes(b, body.data, body.len);
        buf_free(&body);
        break;
    }
    default: {
        tb_name names[6];
        size_t n = tu_rng_below(r, 6), k = 0;
        for (size_t i = 0; i < n; i++) {
            tb_random_text(r, names[i].s, &names[i].len, false);
        }
        qsort(names, n, sizeof names[0], tb_name_cmp);
        for (size_t i = 0; i < n; i++) { /* unique */
            if (k == 0 || tb_name_cmp(&names[k - 1], &names[i]) != 0) {
                names[k++] = names[i];
            }
        }
        shale_buf body = {0};
        tb_varint(&body, (uint32_t)k);
        for (size_t i = 0; i < k; i++) {
            tb_varint(&body, (uint32_t)names[i].len);
            tb_bytes(&body, names[i].s, names[i].len);
            tb_value(r, &body, depth + 1);
        }
        tmp[0] = DV_OBJECT;
        tb_bytes(b, tmp, 1);
        tb_varint(b, (uint32_t)body.len);
        tb_bytes(b, body.data, body.len);
        buf_free(&body);
        break;
    }
    }
}

Test(dval, roundtrip_random_encodings)
{
    tu_rng r;
    tu_rng_seed(&r, 77);
    shale_buf v = {0}, out = {0}, v2 = {0};
    for (int iter = 0; iter < 4000; iter++) {
        buf_reset(&v);
        tb_value(&r, &v, 0);
        shale_error err;
        cr_assert_eq(dval_check(v.data, v.len, &err), SHALE_OK, "iter %d: %s", iter, err.msg);
        buf_reset(&out);
        cr_assert_eq(dval_to_json(DV(&v), &out, &err), SHALE_OK);
        cr_assert_eq(dval_from_json(out.data, out.len, false, &v2, &err), SHALE_OK, "%.*s: %s",
                     (int)out.len, (char *)out.data, err.msg);
        cr_assert(same_bytes(DV(&v), DV(&v2)), "iter %d: %.*s", iter, (int)out.len,
                  (char *)out.data);
        cr_assert_eq(dval_cmp(DV(&v), DV(&v2)), 0);
    }
    buf_free(&v);
    buf_free(&out);
    buf_free(&v2);
}

/* The reference for a double's text: the shortest of %.15g..%.17g (from %.1g for subnormals)
 * that reads back, exponent without '+' or leading zeros, ".0" when it looks like an int. */
static void ref_double(double d, char *buf)
{
    int prec = fabs(d) < 2.2250738585072014e-308 && d != 0 ? 1 : 15;
    for (; prec <= 17; prec++) {
        snprintf(buf, 40, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) {
            break;
        }
    }
    char *e = strchr(buf, 'e');
    if (e != NULL) {
        char exp[8];
        int x = atoi(e + 1);
        snprintf(exp, sizeof exp, "e%d", x);
        strcpy(e, exp);
    } else if (strchr(buf, '.') == NULL) {
        strcat(buf, ".0");
    }
}

Test(dval, double_text)
{
    /* Short decimals take a path without printf: it must print what printf would. */
    tu_rng r;
    tu_rng_seed(&r, 55);
    shale_buf b = {0}, text = {0};
    for (int iter = 0; iter < 60000; iter++) {
        double d;
        switch (iter % 6) {
        case 0: { /* any bits */
            uint64_t u = tu_rng_next(&r);
            memcpy(&d, &u, sizeof d);
            break;
        }
        case 1: /* few decimals */
            d = (double)((int64_t)tu_rng_below(&r, 2000001) - 1000000) /
                (double)(1ull << tu_rng_below(&r, 12));
            break;
        case 2: { /* decimal fractions of up to 15 digits */
            static const double p10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10};
            d = (double)(int64_t)(tu_rng_next(&r) % 1000000000000000ull) /
                p10[tu_rng_below(&r, 11)];
            break;
        }
        case 3: /* integral, around 1e15 */
            d = (double)(int64_t)(999999999999990ll + (int64_t)tu_rng_below(&r, 20));
            break;
        case 4: { /* around the 1e-4 edge */
            static const double edges[] = {1e-4, 0.0001000000000001,  9.999999999999999e-5, 0.00012,
                                           1e-5, 0.000123456789012345};
            d = edges[tu_rng_below(&r, 6)];
            break;
        }
        default:
            d = (double)(tu_rng_below(&r, 1000)) / 1000.0 * (tu_rng_below(&r, 2) ? 1e15 : 1e-3);
            break;
        }
        if (!isfinite(d)) {
            continue;
        }
        if (tu_rng_below(&r, 2)) {
            d = -d;
        }
        buf_reset(&b);
        cr_assert_eq(dval_put_double(&b, d, NULL), SHALE_OK);
        char want[48];
        ref_double(d, want);
        buf_reset(&text);
        cr_assert_eq(dval_to_json(DV(&b), &text, NULL), SHALE_OK);
        cr_assert_eq(buf_append(&text, "", 1, NULL), SHALE_OK);
        cr_assert_str_eq((char *)text.data, want, "%.17g", d);
    }
    buf_free(&b);
    buf_free(&text);
}

Test(dval, to_json_appends)
{
    shale_buf out = {0};
    cr_assert_eq(buf_append(&out, "x=", 2, NULL), SHALE_OK);
    cr_assert_eq(dval_to_json(J("[1,\"a\"]"), &out, NULL), SHALE_OK);
    cr_assert_eq(out.len, 9);
    cr_assert_eq(memcmp(out.data, "x=[1,\"a\"]", 9), 0);
    buf_free(&out);
    /* from_json replaces. */
    shale_buf b = {0};
    cr_assert_eq(buf_append(&b, "junk", 4, NULL), SHALE_OK);
    cr_assert_eq(dval_from_json("null", 4, false, &b, NULL), SHALE_OK);
    cr_assert_eq(b.len, 1);
    cr_assert_eq(((uint8_t *)b.data)[0], DV_NULL);
    buf_free(&b);
}

Test(dval, to_json_ignores_locale)
{
    /* A locale with a decimal comma, if installed; the output must not change. */
    if (setlocale(LC_NUMERIC, "de_DE.UTF-8") == NULL &&
        setlocale(LC_NUMERIC, "fr_FR.UTF-8") == NULL) {
        cr_log_info("no decimal-comma locale installed; checking the C locale only");
    }
    cr_assert_str_eq(S(J("[0.5,1.0,-2.25e-7]")), "[0.5,1.0,-2.25e-7]");
    setlocale(LC_NUMERIC, "C");
}

/* ---- rejections ---- */

Test(dval, reject_invalid_json)
{
    REJECT("{", "invalid JSON at line 1, column 1", "syntax error");
    REJECT("[1,]", "line 1, column 4");
    REJECT("{'a':1}", "line 1, column 2");
    REJECT("{\"a\" 1}", "line 1, column 6");
    REJECT("nul", "line 1, column 3");
    REJECT("01", "line 1, column 1");
    REJECT("[1,\n 2,\n  x]", "line 3, column 3");
    REJECT("\"a\x01\"", "control character");
    REJECT("\"\\ud800\"", "invalid Unicode");
    REJECT("\"\\x\"", "line 1");
    REJECT("NaN", "line 1");
    REJECT("[Infinity]", "line 1");
    REJECT("", "line 1, column 0");
    REJECT("  \n ", "line 2");
    REJECT("1e400", "number out of range", "real number overflow");
    REJECT("[1, -1e999]", "number out of range");
    /* A NUL in a name cannot be held by jansson. */
    REJECT("{\"a\\u0000b\":1}", "NUL character in a name");
    /* NULL text is empty text. */
    reject(NULL, 0, false, SHALE_INVALID, "invalid JSON", NULL);
}

Test(dval, reject_invalid_utf8)
{
    REJECT_BYTES("\"\xff\"", "invalid UTF-8", "line 1, column 1");
    REJECT_BYTES("\"\xc3\x28\"", "invalid UTF-8");         /* bad continuation */
    REJECT_BYTES("\"\xc0\xaf\"", "invalid UTF-8");         /* overlong '/' */
    REJECT_BYTES("\"\xe0\x80\xaf\"", "invalid UTF-8");     /* overlong, 3 bytes */
    REJECT_BYTES("\"\xed\xa0\x80\"", "invalid UTF-8");     /* a surrogate */
    REJECT_BYTES("\"\xf4\x90\x80\x80\"", "invalid UTF-8"); /* above U+10FFFF */
    REJECT_BYTES("\"\xe2\x82\"", "invalid UTF-8");         /* truncated sequence */
    REJECT_BYTES("\"\x80\"", "invalid UTF-8");             /* lone continuation */
    REJECT_BYTES("{\"ok\":1,\"\xc3\x28\":1}", "invalid UTF-8", "line 1, column 9"); /* a name */
    REJECT_BYTES("[\"a\",\n\"\xf8\x88\x80\x80\x80\"]", "invalid UTF-8", "line 2");
    REJECT_BYTES("\xef\xbb\xbf{}", "line 1"); /* a byte-order mark is not JSON */
}

Test(dval, reject_duplicate_names)
{
    REJECT("{\"a\":1,\"a\":2}", "duplicate name", "line 1, column 10");
    REJECT("{\"a\":1,\"\\u0061\":2}", "duplicate name");
    REJECT("{\"x\":{\"b\":1,\"c\":2,\"b\":3}}", "duplicate name");
    REJECT("[{},{\"k\":[],\n\"k\":{}}]", "duplicate name", "line 2");
    /* Same name in different objects is fine; names differing in case are different. */
    roundtrip("{\"a\":{\"a\":1},\"A\":2}", 19, "{\"A\":2,\"a\":{\"a\":1}}");
}

static char *nest(int levels, bool objects)
{
    char *s = malloc((size_t)levels * 8 + 8);
    cr_assert_not_null(s);
    size_t n = 0;
    for (int i = 0; i < levels; i++) {
        n += (size_t)sprintf(s + n, objects ? "{\"k\":" : "[");
    }
    s[n++] = '1';
    for (int i = 0; i < levels; i++) {
        s[n++] = objects ? '}' : ']';
    }
    s[n] = '\0';
    return s;
}

Test(dval, reject_too_deep)
{
    for (int objects = 0; objects <= 1; objects++) {
        char *ok = nest(DVAL_MAX_DEPTH, objects);
        roundtrip(ok, strlen(ok), ok);
        free(ok);
        char *bad = nest(DVAL_MAX_DEPTH + 1, objects);
        /* The place: the bracket that opens level 33 ("{\"k\":" takes 5 characters). */
        REJECT(bad, "nested deeper than 32 levels",
               objects ? "line 1, column 161" : "line 1, column 33");
        free(bad);
        /* Deeper than jansson's own limit (2048): the same message and place. */
        char *huge = nest(3000, objects);
        REJECT(huge, "nested deeper than 32 levels",
               objects ? "line 1, column 161" : "line 1, column 33");
        free(huge);
    }
    /* Depth counts containers, whatever mixes them. */
    char mixed[200] = "";
    for (int i = 0; i < DVAL_MAX_DEPTH; i++) {
        strcat(mixed, i % 2 ? "{\"a\":" : "[");
    }
    strcat(mixed, "[]");
    for (int i = DVAL_MAX_DEPTH - 1; i >= 0; i--) {
        strcat(mixed, i % 2 ? "}" : "]");
    }
    REJECT(mixed, "nested deeper than 32 levels");
    /* Brackets inside strings (escaped quotes too) do not count; lines and UTF-8 characters
     * count as jansson counts them. */
    char *text = malloc(400);
    cr_assert_not_null(text);
    strcpy(text, "[\"[[\\\"[{\",\n\"\xc3\xa9\",");
    for (int i = 1; i < DVAL_MAX_DEPTH; i++) {
        strcat(text, "[");
    }
    strcat(text, "{}");
    for (int i = 0; i < DVAL_MAX_DEPTH; i++) {
        strcat(text, "]");
    }
    /* Line 2 is "\"é\"," (4 characters) then 31 '[' and the '{' at column 36. */
    REJECT(text, "nested deeper than 32 levels", "line 2, column 36");
    free(text);
}

Test(dval, reject_top_level)
{
    static const struct {
        const char *text, *what;
    } cases[] = {
        {"[1]", "an array"}, {"\"s\"", "a string"}, {"1", "a number"},        {"1.5", "a number"},
        {"null", "null"},    {"true", "a boolean"}, {" false ", "a boolean"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reject(cases[i].text, strlen(cases[i].text), true, SHALE_INVALID, "top level is",
               cases[i].what, "not an object", NULL);
        J(cases[i].text); /* fine when an object is not required */
    }
    shale_buf b = {0};
    cr_assert_eq(dval_from_json(" {\"a\":[]} ", 10, true, &b, NULL), SHALE_OK);
    buf_free(&b);
    /* Invalid JSON is reported as such, not as a wrong top level. */
    reject("[1,", 3, true, SHALE_INVALID, "invalid JSON at line 1", NULL);
}

Test(dval, reject_trailing_garbage)
{
    REJECT("{} x", "trailing garbage", "line 1, column 4");
    REJECT("{}{}", "trailing garbage");
    REJECT("1 2", "trailing garbage");
    REJECT("[1]]", "trailing garbage");
    REJECT("null,", "trailing garbage");
    REJECT_BYTES("{}\0", "trailing garbage");
    REJECT("{\n}\n\n  }", "trailing garbage", "line 4");
    /* Trailing whitespace is not garbage. */
    J("{} \n\t\r ");
}

Test(dval, reject_after_big_int)
{
    /* An error after an integer beyond int64 still points at the right column (the second
     * parse reads the text with ".0" added after that integer). */
    REJECT("[99999999999999999999, x]", "line 1, column 24");
    REJECT("[99999999999999999999, 1, 99999999999999999999, x]", "line 1, column 49");
    REJECT("[99999999999999999999,\n x]", "line 2, column 2");
    REJECT("{\"a\":99999999999999999999,\"a\":1}", "duplicate name", "line 1, column 29");
    /* A big integer inside a string is a string. */
    dval v = J("[\"99999999999999999999\", 99999999999999999999, \"\\\"1\"]");
    cr_assert_str_eq(S(v), "[\"99999999999999999999\",1e20,\"\\\"1\"]");
    /* A big integer that is beyond double too. */
    char big[420] = "[";
    memset(big + 1, '9', 400);
    big[401] = ']';
    big[402] = '\0';
    REJECT(big, "number out of range");
}

/* ---- the order ---- */

Test(dval, order_table)
{
    /* Groups of equal values, in increasing order. */
    static const char *const groups[][5] = {
        {"null"},
        {"false"},
        {"true"},
        {"-1.7976931348623157e308"},
        {"-1e300"},
        {"-9223372036854775808", "-9223372036854775808.0", "-9.223372036854775808e18"},
        {"-9223372036854775807"},
        {"-9007199254740993"},
        {"-9007199254740992", "-9007199254740992.0"},
        {"-1.5"},
        {"-1", "-1.0", "-1e0"},
        {"-5e-324"},
        {"0", "-0", "0.0", "-0.0", "0e10"},
        {"5e-324"},
        {"0.1"},
        {"0.30000000000000004"},
        {"1", "1.0", "100e-2"},
        {"1.0000000000000002"},
        {"1.5"},
        {"2"},
        {"9007199254740992", "9007199254740992.0"},
        {"9007199254740993"},
        {"9007199254740994", "9007199254740994.0"},
        {"9223372036854775806"},
        {"9223372036854775807"},
        {"9223372036854775808", "9223372036854775808.0", "9.223372036854775807e18"},
        {"1e19"},
        {"1.7976931348623157e308"},
        {"\"\""},
        {"\"\\u0000\""},
        {"\"\\u0000\\u0000\""},
        {"\"\\u0001\""},
        {"\"A\""},
        {"\"a\""},
        {"\"a\\u0000\""},
        {"\"ab\""},
        {"\"b\""},
        {"\"\x7f\""},
        {"\"\xc3\xa9\"", "\"\\u00e9\""},
        {"\"\xef\xbf\xbf\""},
        {"\"\xf0\x9f\x98\x80\"", "\"\\ud83d\\ude00\""},
        {"[]"},
        {"[null]"},
        {"[false]"},
        {"[-1]"},
        {"[1]", "[1.0]"},
        {"[1,null]", "[1.0,null]"},
        {"[1,[]]"},
        {"[2]"},
        {"[\"a\"]"},
        {"[[]]"},
        {"[[1]]"},
        {"[{}]"},
        {"{}"},
        {"{\"\":null}"},
        {"{\"a\":null}"},
        {"{\"a\":1}", "{\"a\":1.0}"},
        {"{\"a\":1,\"b\":1}"},
        {"{\"a\":1,\"c\":0}"},
        {"{\"a\":2}"},
        {"{\"a\":\"\"}"},
        {"{\"a\":[]}"},
        {"{\"a\":{}}"},
        {"{\"aa\":0}"},
        {"{\"b\":0}"},
    };
    size_t ngroups = sizeof groups / sizeof groups[0];
    dval vals[400];
    size_t rank[400], n = 0;
    for (size_t gi = 0; gi < ngroups; gi++) {
        for (size_t k = 0; k < 5 && groups[gi][k] != NULL; k++) {
            vals[n] = J(groups[gi][k]);
            rank[n++] = gi;
        }
    }
    enum dval_class last = DVC_NULL;
    for (size_t i = 0; i < n; i++) {
        cr_assert_geq(dval_class_of(vals[i]), last, "classes in sort order");
        last = dval_class_of(vals[i]);
        for (size_t j = 0; j < n; j++) {
            int want = (rank[i] > rank[j]) - (rank[i] < rank[j]);
            int got = sign(dval_cmp(vals[i], vals[j]));
            cr_assert_eq(got, want, "cmp(%s, %s) = %d, want %d", S(vals[i]), S(vals[j]), got, want);
            cr_assert_eq(dval_eq(vals[i], vals[j]), want == 0);
        }
    }
}

Test(dval, order_int_double_exact)
{
    /* Near 2^53 and 2^63 an int and a double compare exactly, not after rounding the int. */
    shale_buf a = {0}, b = {0};
    static const int64_t ints[] = {INT64_MIN,
                                   INT64_MIN + 1,
                                   -(1ll << 53) - 1,
                                   -(1ll << 53),
                                   -1,
                                   0,
                                   1,
                                   (1ll << 53) - 1,
                                   1ll << 53,
                                   (1ll << 53) + 1,
                                   (1ll << 53) + 2,
                                   INT64_MAX - 1,
                                   INT64_MAX,
                                   1ll << 62,
                                   (1ll << 62) + 1};
    static const double dbls[] = {-9223372036854775808.0,
                                  -9007199254740994.0,
                                  -9007199254740992.0,
                                  -1.5,
                                  -1.0,
                                  -0.0,
                                  0.0,
                                  0.5,
                                  1.0,
                                  9007199254740992.0,
                                  9007199254740994.0,
                                  4611686018427387904.0,
                                  9223372036854775808.0,
                                  1e300,
                                  -1e300,
                                  2.5};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        for (size_t j = 0; j < sizeof dbls / sizeof dbls[0]; j++) {
            buf_reset(&a);
            buf_reset(&b);
            cr_assert_eq(dval_put_int(&a, ints[i], NULL), SHALE_OK);
            cr_assert_eq(dval_put_double(&b, dbls[j], NULL), SHALE_OK);
            /* The exact answer, from long double (64-bit mantissa holds any int64). */
            long double x = (long double)ints[i], y = (long double)dbls[j];
            int want = (x > y) - (x < y);
            cr_assert_eq(sign(dval_cmp(DV(&a), DV(&b))), want, "%lld vs %.17g", (long long)ints[i],
                         dbls[j]);
            cr_assert_eq(sign(dval_cmp(DV(&b), DV(&a))), -want);
        }
    }
    buf_free(&a);
    buf_free(&b);
}

/* ---- index keys ---- */

static shale_slice key_of(dval v)
{
    shale_buf *b = newbuf();
    cr_assert_eq(dval_index_key(v, b, NULL), SHALE_OK);
    return (shale_slice){b->data, b->len};
}

/* Whether the key order must equal the value order exactly for a and b: not when an int beyond
 * 2^53 (which may share its double's key) is involved. */
static void check_keys(dval a, dval b)
{
    int c = sign(dval_cmp(a, b));
    int k = sign(slice_cmp(key_of(a), key_of(b)));
    cr_assert_eq(k, c, "key order %d, value order %d for %s vs %s", k, c, S(a), S(b));
}

Test(dval, index_key_table)
{
    static const char *const vals[] = {
        "null",
        "false",
        "true",
        "-1e308",
        "-9007199254740992",
        "-1.5",
        "-1",
        "-1.0",
        "-5e-324",
        "-0.0",
        "0",
        "0.0",
        "5e-324",
        "0.1",
        "1",
        "1.0",
        "2",
        "1e15",
        "9007199254740992",
        "1e308",
        "\"\"",
        "\"\\u0000\"",
        "\"\\u0000\\u0000\"",
        "\"\\u0000\\u0001\"",
        "\"\\u0001\"",
        "\"a\"",
        "\"a\\u0000\"",
        "\"a\\u0000b\"",
        "\"ab\"",
        "\"\xc3\xbf\"",
        "\"\xf4\x8f\xbf\xbf\"",
    };
    size_t n = sizeof vals / sizeof vals[0];
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            check_keys(J(vals[i]), J(vals[j]));
        }
    }
    /* The documented bytes. */
    shale_slice k = key_of(J("null"));
    cr_assert_eq(k.len, 1);
    cr_assert_eq(((const uint8_t *)k.data)[0], 0x01);
    k = key_of(J("\"a\\u0000\""));
    static const uint8_t sk[] = {0x05, 'a', 0x00, 0xff, 0x00, 0x01};
    cr_assert_eq(k.len, sizeof sk);
    cr_assert_eq(memcmp(k.data, sk, sizeof sk), 0);
    k = key_of(J("1"));
    static const uint8_t nk[] = {0x04, 0xbf, 0xf0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(k.len, sizeof nk);
    cr_assert_eq(memcmp(k.data, nk, sizeof nk), 0);
    cr_assert(slice_eq(key_of(J("-0.0")), key_of(J("0"))));
    /* Containers: their class, each element's key, an end mark. */
    k = key_of(J("[]"));
    static const uint8_t ak[] = {0x06, 0x00};
    cr_assert_eq(k.len, sizeof ak);
    cr_assert_eq(memcmp(k.data, ak, sizeof ak), 0);
    k = key_of(J("{\"a\":null}"));
    static const uint8_t ok[] = {0x07, 'a', 0x00, 0x01, 0x01, 0x00, 0x00};
    cr_assert_eq(k.len, sizeof ok);
    cr_assert_eq(memcmp(k.data, ok, sizeof ok), 0);
    /* Ints beyond 2^53 keep their exact order though they share a double. */
    check_keys(J("9007199254740993"), J("9007199254740992"));
    check_keys(J("9007199254740993"), J("9007199254740992.0"));
    check_keys(J("[[1,2],[3]]"), J("[[1,2,0]]"));
    check_keys(J("{\"a\":[1],\"b\":1}"), J("{\"a\":[1]}"));
    check_keys(J("[-1]"), J("[2]"));
    /* Appends. */
    shale_buf b = {0};
    cr_assert_eq(buf_append(&b, "P", 1, NULL), SHALE_OK);
    cr_assert_eq(dval_index_key(J("true"), &b, NULL), SHALE_OK);
    cr_assert_eq(b.len, 2);
    cr_assert_eq(((uint8_t *)b.data)[1], 0x03);
    buf_free(&b);
}

static void random_scalar(tu_rng *r, shale_buf *b)
{
    switch (tu_rng_below(r, 9)) {
    case 0:
        cr_assert_eq(dval_put_null(b, NULL), SHALE_OK);
        break;
    case 1:
        cr_assert_eq(dval_put_bool(b, tu_rng_below(r, 2), NULL), SHALE_OK);
        break;
    case 2:
        cr_assert_eq(dval_put_int(b, (int64_t)tu_rng_below(r, 41) - 20, NULL), SHALE_OK);
        break;
    case 3:
        cr_assert_eq(dval_put_int(b, (int64_t)tu_rng_next(r) >> tu_rng_below(r, 64), NULL),
                     SHALE_OK);
        break;
    case 4:
        cr_assert_eq(dval_put_double(b, (double)((int64_t)tu_rng_below(r, 81) - 40) / 4, NULL),
                     SHALE_OK);
        break;
    case 5: {
        double d;
        do {
            uint64_t u = tu_rng_next(r);
            memcpy(&d, &u, sizeof d);
        } while (!isfinite(d));
        cr_assert_eq(dval_put_double(b, d, NULL), SHALE_OK);
        break;
    }
    default: {
        char s[32];
        size_t n;
        tb_random_text(r, s, &n, true);
        cr_assert_eq(dval_put_string(b, (shale_slice){s, n}, NULL), SHALE_OK);
        break;
    }
    }
}

Test(dval, index_key_random)
{
    tu_rng r;
    tu_rng_seed(&r, 4242);
    shale_buf a = {0}, b = {0}, ka = {0}, kb = {0};
    for (int iter = 0; iter < 30000; iter++) {
        buf_reset(&a);
        buf_reset(&b);
        random_scalar(&r, &a);
        random_scalar(&r, &b);
        buf_reset(&ka);
        buf_reset(&kb);
        cr_assert_eq(dval_index_key(DV(&a), &ka, NULL), SHALE_OK);
        cr_assert_eq(dval_index_key(DV(&b), &kb, NULL), SHALE_OK);
        int c = sign(dval_cmp(DV(&a), DV(&b)));
        int k = sign(slice_cmp((shale_slice){ka.data, ka.len}, (shale_slice){kb.data, kb.len}));
        cr_assert_eq(k, c, "iter %d: key order %d, value order %d", iter, k, c);
        cr_assert_eq(sign(dval_cmp(DV(&b), DV(&a))), -c);
    }
    buf_free(&a);
    buf_free(&b);
    buf_free(&ka);
    buf_free(&kb);
}

static int slice_qcmp(const void *a, const void *b)
{
    return slice_cmp(*(const shale_slice *)a, *(const shale_slice *)b);
}

Test(dval, index_key_prefix_free)
{
    /* Keys of many values (scalars and containers), sorted: if a key were a prefix of another,
     * it would be a prefix of its successor. Equal keys (equal values) are allowed. */
    enum { N = 6000 };
    tu_rng r;
    tu_rng_seed(&r, 99);
    shale_buf *keys = calloc(N, sizeof *keys);
    shale_slice *ks = calloc(N, sizeof *ks);
    cr_assert(keys && ks);
    shale_buf v = {0};
    for (int i = 0; i < N; i++) {
        buf_reset(&v);
        if (i % 3 == 0) {
            tb_value(&r, &v, 2);
        } else {
            random_scalar(&r, &v);
        }
        cr_assert_eq(dval_index_key(DV(&v), &keys[i], NULL), SHALE_OK);
        ks[i] = (shale_slice){keys[i].data, keys[i].len};
    }
    qsort(ks, N, sizeof ks[0], slice_qcmp);
    for (int i = 0; i + 1 < N; i++) {
        if (slice_eq(ks[i], ks[i + 1])) {
            continue;
        }
        cr_assert(!slice_starts_with(ks[i + 1], ks[i]), "key %d is a prefix of key %d", i, i + 1);
    }
    for (int i = 0; i < N; i++) {
        buf_free(&keys[i]);
    }
    free(keys);
    free(ks);
    buf_free(&v);
}

/* ---- lookups ---- */

Test(dval, field_lookup)
{
    dval v = J("{\"b\":2,\"d\":4,\"f\":6,\"\":0,\"bb\":22,\"\xc3\xa9\":9}");
    dval x;
    static const char *present[] = {"b", "d", "f", "", "bb", "\xc3\xa9"};
    for (size_t i = 0; i < 6; i++) {
        cr_assert(dval_field(v, SL(present[i]), &x), "%s", present[i]);
    }
    cr_assert(dval_field(v, SL("bb"), &x));
    cr_assert_eq(dval_int(x), 22);
    cr_assert(dval_field(v, SL(""), &x));
    cr_assert_eq(dval_int(x), 0);
    static const char *absent[] = {"a", "c", "e", "g", "B", "bbb", "\xc3", "\xff"};
    for (size_t i = 0; i < 8; i++) {
        cr_assert(!dval_field(v, SL(absent[i]), &x), "%s", absent[i]);
    }
    cr_assert(!dval_field(v, (shale_slice){"b\0", 2}, &x));
    cr_assert(!dval_field(J("{}"), SL("a"), &x));
    cr_assert(!dval_field(J("[1]"), SL("0"), &x));
    cr_assert(!dval_field(J("\"a\""), SL("a"), &x));
    cr_assert(!dval_field(J("null"), SL(""), &x));
    /* Names with NUL (built, since JSON cannot): exact bytes. */
    shale_buf o = {0};
    cr_assert_eq(dval_set_field(J("{\"a\":1}"), (shale_slice){"a\0", 2}, J("2"), &o, NULL),
                 SHALE_OK);
    cr_assert(dval_field(DV(&o), (shale_slice){"a\0", 2}, &x));
    cr_assert_eq(dval_int(x), 2);
    cr_assert(dval_field(DV(&o), SL("a"), &x));
    cr_assert_eq(dval_int(x), 1);
    buf_free(&o);
}

Test(dval, path_lookup)
{
    dval v = J("{\"a\":{\"b\":{\"c\":3}},\"tags\":[\"x\",\"y\",{\"k\":[10,11]}],\"0\":\"zero\","
               "\"n\":null,\"big\":[0,1,2,3,4,5,6,7,8,9,10,11]}");
    dval x;
    cr_assert(dval_path(v, SL("a.b.c"), &x));
    cr_assert_eq(dval_int(x), 3);
    cr_assert(dval_path(v, SL("a.b"), &x));
    cr_assert_eq(dval_tag_of(x), DV_OBJECT);
    cr_assert(dval_path(v, SL("a"), &x));
    cr_assert(dval_path(v, SL("tags.0"), &x));
    cr_assert_str_eq(S(x), "\"x\"");
    cr_assert(dval_path(v, SL("tags.1"), &x));
    cr_assert_str_eq(S(x), "\"y\"");
    cr_assert(dval_path(v, SL("tags.2.k.1"), &x));
    cr_assert_eq(dval_int(x), 11);
    cr_assert(dval_path(v, SL("big.11"), &x));
    cr_assert_eq(dval_int(x), 11);
    cr_assert(dval_path(v, SL("big.011"), &x)); /* decimal digits */
    cr_assert_eq(dval_int(x), 11);
    cr_assert(dval_path(v, SL("0"), &x)); /* digits on an object: a name */
    cr_assert_str_eq(S(x), "\"zero\"");
    cr_assert(dval_path(v, SL("n"), &x));
    cr_assert_eq(dval_tag_of(x), DV_NULL);
    static const char *missing[] = {
        "",
        ".",
        "a.",
        ".a",
        "a..b",
        "a.b.c.d",
        "a.x",
        "x",
        "tags.3",
        "tags.-1",
        "tags.x",
        "tags.1x",
        "tags.",
        "tags.2.k.2",
        "big.12",
        "big.4294967296",
        "big.99999999999999999999",
        "n.x",
        "a.b.c.0",
        "tags.0.0",
        "tags. 1",
        "tags.+1",
    };
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        cr_assert(!dval_path(v, SL(missing[i]), &x), "path \"%s\" found", missing[i]);
    }
    cr_assert(!dval_path(v, (shale_slice){NULL, 0}, &x));
    /* A scalar or array at the top. */
    cr_assert(dval_path(J("[[1,2],[3]]"), SL("1.0"), &x));
    cr_assert_eq(dval_int(x), 3);
    cr_assert(!dval_path(J("5"), SL("a"), &x));
}

Test(dval, iterate)
{
    dval v = J("{\"z\":1,\"a\":[true,null,\"s\"],\"m\":{}}");
    dval_iter it;
    dval_iter_init(&it, v);
    shale_slice name;
    dval x;
    static const char *names[] = {"a", "m", "z"};
    for (int i = 0; i < 3; i++) {
        cr_assert(dval_iter_next(&it, &name, &x));
        cr_assert(slice_eq(name, SL(names[i])));
    }
    cr_assert(!dval_iter_next(&it, &name, &x));
    cr_assert(!dval_iter_next(&it, &name, &x));
    cr_assert(dval_field(v, SL("a"), &x));
    dval_iter_init(&it, x);
    static const char *elems[] = {"true", "null", "\"s\""};
    for (int i = 0; i < 3; i++) {
        dval e;
        cr_assert(dval_iter_next(&it, &name, &e));
        cr_assert_eq(name.len, 0);
        cr_assert_str_eq(S(e), elems[i]);
    }
    cr_assert(!dval_iter_next(&it, NULL, &x));
    dval_iter_init(&it, J("[]"));
    cr_assert(!dval_iter_next(&it, NULL, &x));
    dval_iter_init(&it, J("{}"));
    cr_assert(!dval_iter_next(&it, &name, &x));
}

/* ---- building ---- */

static const char *set_field(const char *obj, const char *name, const char *value)
{
    shale_buf *b = newbuf();
    shale_error err;
    cr_assert_eq(dval_set_field(J(obj), SL(name), J(value), b, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(dval_check(b->data, b->len, &err), SHALE_OK, "%s", err.msg);
    return S(DV(b));
}

Test(dval, set_field)
{
    cr_assert_str_eq(set_field("{\"b\":1,\"d\":2}", "a", "0"), "{\"a\":0,\"b\":1,\"d\":2}");
    cr_assert_str_eq(set_field("{\"b\":1,\"d\":2}", "c", "0"), "{\"b\":1,\"c\":0,\"d\":2}");
    cr_assert_str_eq(set_field("{\"b\":1,\"d\":2}", "e", "0"), "{\"b\":1,\"d\":2,\"e\":0}");
    cr_assert_str_eq(set_field("{\"b\":1,\"d\":2}", "b", "\"x\""), "{\"b\":\"x\",\"d\":2}");
    cr_assert_str_eq(set_field("{\"b\":1,\"d\":2}", "d", "[]"), "{\"b\":1,\"d\":[]}");
    cr_assert_str_eq(set_field("{}", "a", "{\"x\":[1,2]}"), "{\"a\":{\"x\":[1,2]}}");
    cr_assert_str_eq(set_field("{\"a\":1}", "", "null"), "{\"\":null,\"a\":1}");
    cr_assert_str_eq(set_field("{\"a\":1}", "\xc3\xa9", "true"), "{\"a\":1,\"\xc3\xa9\":true}");
    /* A large object: the header grows past two bytes. */
    char big[2000] = "{";
    for (int i = 0; i < 100; i++) {
        char f[24];
        snprintf(f, sizeof f, "%s\"k%03d\":%d", i ? "," : "", i, i);
        strcat(big, f);
    }
    strcat(big, "}");
    const char *s = set_field(big, "k050", "\"new\"");
    cr_assert(strstr(s, "\"k049\":49,\"k050\":\"new\",\"k051\":51") != NULL);
    /* Rejected: not an object, bad UTF-8 name, too deep a value. */
    shale_buf b = {0};
    shale_error err;
    cr_assert_eq(dval_set_field(J("[]"), SL("a"), J("1"), &b, &err), SHALE_INVALID);
    cr_assert(strstr(err.msg, "not an object") != NULL);
    cr_assert_eq(dval_set_field(J("{}"), SL("\xff"), J("1"), &b, &err), SHALE_INVALID);
    cr_assert(strstr(err.msg, "UTF-8") != NULL);
    char *deep = nest(DVAL_MAX_DEPTH - 1, false);
    cr_assert_eq(dval_set_field(J("{}"), SL("a"), J(deep), &b, &err), SHALE_OK);
    cr_assert_eq(dval_check(b.data, b.len, &err), SHALE_OK);
    free(deep);
    deep = nest(DVAL_MAX_DEPTH, false);
    cr_assert_eq(dval_set_field(J("{}"), SL("a"), J(deep), &b, &err), SHALE_INVALID);
    cr_assert(strstr(err.msg, "too deep") != NULL);
    free(deep);
    buf_free(&b);
}

static const char *merge(const char *base, const char *patch)
{
    shale_buf *b = newbuf();
    shale_error err;
    cr_assert_eq(dval_merge(J(base), J(patch), b, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(dval_check(b->data, b->len, &err), SHALE_OK, "%s", err.msg);
    return S(DV(b));
}

Test(dval, merge)
{
    cr_assert_str_eq(merge("{}", "{}"), "{}");
    cr_assert_str_eq(merge("{\"a\":1}", "{}"), "{\"a\":1}");
    cr_assert_str_eq(merge("{}", "{\"a\":1}"), "{\"a\":1}");
    cr_assert_str_eq(
        merge("{\"a\":1,\"b\":{\"x\":1,\"y\":2},\"c\":3}", "{\"b\":{\"y\":20},\"d\":4,\"0\":0}"),
        "{\"0\":0,\"a\":1,\"b\":{\"y\":20},\"c\":3,\"d\":4}");
    cr_assert_str_eq(merge("{\"a\":1,\"b\":2}", "{\"a\":null,\"b\":[2]}"),
                     "{\"a\":null,\"b\":[2]}");
    cr_assert_str_eq(merge("{\"b\":1,\"d\":1}", "{\"a\":2,\"c\":2,\"e\":2}"),
                     "{\"a\":2,\"b\":1,\"c\":2,\"d\":1,\"e\":2}");
    shale_buf b = {0};
    shale_error err;
    cr_assert_eq(dval_merge(J("{}"), J("[]"), &b, &err), SHALE_INVALID);
    cr_assert_eq(dval_merge(J("1"), J("{}"), &b, &err), SHALE_INVALID);
    buf_free(&b);
}

static const char *project(const char *doc, const char *const *paths, size_t n)
{
    shale_slice ps[16];
    cr_assert_leq(n, 16);
    for (size_t i = 0; i < n; i++) {
        ps[i] = SL(paths[i]);
    }
    shale_buf *b = newbuf();
    shale_error err;
    cr_assert_eq(dval_project(J(doc), ps, n, b, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(dval_check(b->data, b->len, &err), SHALE_OK, "%s", err.msg);
    return S(DV(b));
}

#define PROJ(doc, ...)                                                                             \
    project((doc), (const char *const[]){__VA_ARGS__},                                             \
            sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

Test(dval, project)
{
    const char *doc = "{\"a\":{\"b\":1,\"c\":2},\"d\":[10,{\"e\":1,\"f\":2},30],\"g\":\"s\","
                      "\"h\":{},\"i\":{\"j\":{\"k\":1,\"l\":2},\"m\":3}}";
    cr_assert_str_eq(PROJ(doc, "a.b"), "{\"a\":{\"b\":1}}");
    cr_assert_str_eq(PROJ(doc, "a.b", "a"), "{\"a\":{\"b\":1,\"c\":2}}");
    cr_assert_str_eq(PROJ(doc, "a", "a.b"), "{\"a\":{\"b\":1,\"c\":2}}");
    cr_assert_str_eq(PROJ(doc, "g", "x", "a.z"), "{\"g\":\"s\"}");
    cr_assert_str_eq(PROJ(doc, "g", "g"), "{\"g\":\"s\"}");
    cr_assert_str_eq(PROJ(doc, "i.j.l", "i.m", "a.c"),
                     "{\"a\":{\"c\":2},\"i\":{\"j\":{\"l\":2},\"m\":3}}");
    cr_assert_str_eq(PROJ(doc, "d"), "{\"d\":[10,{\"e\":1,\"f\":2},30]}");
    cr_assert_str_eq(PROJ(doc, "d.1.e", "d.2"), "{\"d\":[{\"e\":1},30]}");
    cr_assert_str_eq(PROJ(doc, "d.5", "d.x"), "{}");
    cr_assert_str_eq(PROJ(doc, "g.x"), "{}"); /* into a scalar: missing */
    cr_assert_str_eq(PROJ(doc, "h"), "{\"h\":{}}");
    cr_assert_str_eq(PROJ(doc, "h.x"), "{}");
    cr_assert_str_eq(PROJ(doc, "", "a..b", ".a", "a.", "."), "{}");
    cr_assert_str_eq(PROJ(doc, "zzz"), "{}");
    cr_assert_str_eq(project(doc, NULL, 0), "{}");
    cr_assert_str_eq(PROJ("[1,2]", "0"), "{}"); /* not an object */
    cr_assert_str_eq(PROJ("{}", "a"), "{}");
}

Test(dval, putters)
{
    shale_buf b = {0};
    shale_error err;
    cr_assert_eq(dval_put_null(&b, &err), SHALE_OK);
    cr_assert_str_eq(S(DV(&b)), "null");
    buf_reset(&b);
    cr_assert_eq(dval_put_bool(&b, true, &err), SHALE_OK);
    cr_assert_str_eq(S(DV(&b)), "true");
    buf_reset(&b);
    cr_assert_eq(dval_put_bool(&b, false, &err), SHALE_OK);
    cr_assert_str_eq(S(DV(&b)), "false");
    buf_reset(&b);
    cr_assert_eq(dval_put_int(&b, INT64_MIN, &err), SHALE_OK);
    cr_assert_str_eq(S(DV(&b)), "-9223372036854775808");
    buf_reset(&b);
    cr_assert_eq(dval_put_double(&b, 3.0, &err), SHALE_OK);
    cr_assert_str_eq(S(DV(&b)), "3.0");
    cr_assert(same_bytes(DV(&b), J("3.0")));
    buf_reset(&b);
    cr_assert_eq(dval_put_string(&b, (shale_slice){"a\0\"", 3}, &err), SHALE_OK);
    cr_assert_str_eq(S(DV(&b)), "\"a\\u0000\\\"\"");
    buf_reset(&b);
    cr_assert_eq(dval_put_string(&b, (shale_slice){NULL, 0}, &err), SHALE_OK);
    cr_assert_str_eq(S(DV(&b)), "\"\"");
    /* Putters append: three values in a row. */
    buf_reset(&b);
    cr_assert_eq(dval_put_int(&b, 1, &err), SHALE_OK);
    cr_assert_eq(dval_put_null(&b, &err), SHALE_OK);
    cr_assert_eq(b.len, 10);
    cr_assert_eq(dval_at(b.data).len, 9);
    /* Refused, and nothing appended. */
    buf_reset(&b);
    cr_assert_eq(dval_put_double(&b, NAN, &err), SHALE_INVALID);
    cr_assert_eq(dval_put_double(&b, INFINITY, &err), SHALE_INVALID);
    cr_assert_eq(dval_put_double(&b, -INFINITY, &err), SHALE_INVALID);
    cr_assert_eq(dval_put_string(&b, SL("\xc3\x28"), &err), SHALE_INVALID);
    cr_assert(strstr(err.msg, "UTF-8") != NULL);
    cr_assert_eq(dval_put_string(&b, SL("\xed\xbf\xbf"), &err), SHALE_INVALID);
    cr_assert_eq(b.len, 0);
    buf_free(&b);
}

Test(dval, utf8_agrees_with_jansson)
{
    /* dval_put_string (and so dval_check) accepts exactly the byte strings jansson does. */
    static const uint8_t bytes[] = {0x00, 'a',  0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
                                    0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xee,
                                    0xef, 0xf0, 0xf3, 0xf4, 0xf5, 0xf8, 0xfe, 0xff};
    tu_rng r;
    tu_rng_seed(&r, 8);
    shale_buf b = {0};
    int valid = 0;
    for (int iter = 0; iter < 100000; iter++) {
        uint8_t s[6] = {0};
        size_t n = tu_rng_below(&r, 7);
        for (size_t i = 0; i < n; i++) {
            s[i] = bytes[tu_rng_below(&r, sizeof bytes)];
        }
        json_t *j = json_stringn((const char *)s, n);
        buf_reset(&b);
        shale_code rc = dval_put_string(&b, (shale_slice){s, n}, NULL);
        cr_assert_eq(rc == SHALE_OK, j != NULL, "iter %d: %zu bytes %02x %02x %02x %02x", iter, n,
                     s[0], s[1], s[2], s[3]);
        if (rc == SHALE_OK) {
            valid++;
            cr_assert_eq(dval_check(b.data, b.len, NULL), SHALE_OK);
        }
        json_decref(j);
    }
    cr_assert_gt(valid, 1000);
    buf_free(&b);
}

/* ---- dval_check on damage ---- */

Test(dval, check_rejects)
{
    check_bad(NULL, 0, "dval @0: ", "empty");
    CHECK_BAD("dval @0: ", "bad tag 0x08", 0x08);
    CHECK_BAD("dval @0: ", "bad tag 0xff", 0xff);
    CHECK_BAD("dval @0: ", "int truncated", DV_INT, 1, 2, 3);
    CHECK_BAD("dval @0: ", "double truncated", DV_DOUBLE, 0, 0, 0, 0, 0, 0, 0);
    CHECK_BAD("dval @0: ", "NaN or infinite", DV_DOUBLE, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f);
    CHECK_BAD("dval @0: ", "NaN or infinite", DV_DOUBLE, 0, 0, 0, 0, 0, 0, 0xf0, 0x7f);
    CHECK_BAD("dval @0: ", "NaN or infinite", DV_DOUBLE, 0, 0, 0, 0, 0, 0, 0xf0, 0xff);
    CHECK_BAD("dval @0: ", "string of 5 bytes runs past the end", DV_STRING, 5, 'a');
    CHECK_BAD("dval @1: ", "bad string length varint", DV_STRING, 0x80, 0x80);
    CHECK_BAD("dval @1: ", "bad string length varint", DV_STRING, 0xff, 0xff, 0xff, 0xff, 0x7f);
    CHECK_BAD("dval @2: ", "invalid UTF-8 in string", DV_STRING, 2, 0xc3, 0x28);
    CHECK_BAD("dval @3: ", "invalid UTF-8 in string", DV_STRING, 4, 'a', 0xed, 0xa0, 0x80);
    CHECK_BAD("dval @1: ", "1 trailing bytes", DV_NULL, DV_NULL);
    CHECK_BAD("dval @0: ", "array of 9 bytes runs past the end", DV_ARRAY, 9, 1, 0);
    CHECK_BAD("dval @2: ", "array count 5 too large", DV_ARRAY, 2, 5, 0);
    CHECK_BAD("dval @2: ", "bad array count varint", DV_ARRAY, 1, 0x80);
    CHECK_BAD("dval @4: ", "1 bytes left in the array after its 1 values", DV_ARRAY, 3, 1, 0, 0);
    CHECK_BAD("dval @5: ", "value expected, none left", DV_OBJECT, 3, 1, 1, 'a');
    CHECK_BAD("dval @3: ", "int truncated", DV_ARRAY, 5, 1, DV_INT, 0, 0, 0, 0, 0, 0, 0, 0);
    /* {"b":null,"a":null} */
    CHECK_BAD("dval @6: ", "out of order name (field 1)", DV_OBJECT, 7, 2, 1, 'b', 0, 1, 'a', 0);
    CHECK_BAD("dval @6: ", "duplicate name (field 1)", DV_OBJECT, 7, 2, 1, 'a', 0, 1, 'a', 0);
    CHECK_BAD("dval @3: ", "name of 9 bytes runs past the object", DV_OBJECT, 4, 1, 9, 'a', 0);
    CHECK_BAD("dval @4: ", "invalid UTF-8 in name", DV_OBJECT, 4, 1, 1, 0x80, 0);
    CHECK_BAD("dval @2: ", "object count 2 too large", DV_OBJECT, 4, 2, 1, 'a', 0);
    /* A field's value runs past its object (but not past the buffer). */
    CHECK_BAD("dval @5: ", "string of 3 bytes runs past the end", DV_OBJECT, 5, 1, 1, 'a',
              DV_STRING, 3, 'x', 'y', 'z');
    /* 33 levels of arrays. Innermost: [] (body 1: count 0); each outer: body = 1 (count) +
     * inner size. */
    uint8_t enc[200];
    size_t n = 0;
    for (int i = 0; i <= DVAL_MAX_DEPTH; i++) {
        enc[n++] = DV_ARRAY;
        enc[n++] = (uint8_t)(1 + 3 * (DVAL_MAX_DEPTH - i)); /* body length */
        enc[n++] = (uint8_t)(i < DVAL_MAX_DEPTH ? 1 : 0);   /* count */
    }
    check_bad(enc, n, "dval @96: ", "nested deeper than 32 levels");
    shale_error err;
    cr_assert_eq(dval_check(enc + 3, n - 3, &err), SHALE_OK, "32 levels are fine: %s", err.msg);
    /* Non-minimal varints are accepted: the framing is still unambiguous. */
    static const uint8_t padded[] = {DV_STRING, 0x81, 0x00, 'a'};
    cr_assert_eq(dval_check(padded, sizeof padded, &err), SHALE_OK, "%s", err.msg);
    cr_assert_str_eq(S((dval){padded, sizeof padded}), "\"a\"");
}

/* Reads a value that passed dval_check every way there is: nothing may crash or read outside
 * it (the caller hands an exact-size heap copy, so ASan sees any overread). */
/* Every reader on a value that passed only dval_check_frame (bad UTF-8, names out of order,
 * NaN allowed): nothing may read outside the bytes (ASan watches); results are not checked. */
static void exercise_frame(const uint8_t *p, size_t len, shale_buf *scratch, shale_buf *scratch2)
{
    if (dval_check_frame(p, len, NULL) != SHALE_OK) {
        return;
    }
    dval v = {p, len}, f, e;
    (void)dval_cmp(v, v);
    buf_reset(scratch);
    shale_code rc = dval_index_key(v, scratch, NULL);
    buf_reset(scratch);
    rc |= dval_to_json(v, scratch, NULL);
    if (dval_tag_of(v) != DV_ARRAY && dval_tag_of(v) != DV_OBJECT) {
        return;
    }
    (void)rc; /* outcomes vary on such values; only staying in bounds matters */
    dval_iter it;
    shale_slice name;
    dval_iter_init(&it, v);
    while (dval_iter_next(&it, &name, &e)) {
        (void)dval_field(v, name, &f);
    }
    static const char *paths[] = {"a", "0", "a.b", "0.0"};
    shale_slice ps[4];
    for (int i = 0; i < 4; i++) {
        ps[i] = SL(paths[i]);
        (void)dval_path(v, ps[i], &f);
    }
    if (dval_tag_of(v) == DV_OBJECT) {
        static const uint8_t one[] = {DV_NULL};
        rc |= dval_project(v, ps, 4, scratch2, NULL);
        rc |= dval_merge(v, v, scratch2, NULL);
        rc |= dval_set_field(v, SL("a"), (dval){one, 1}, scratch2, NULL);
        (void)rc;
    }
}

static void exercise(const uint8_t *p, size_t len, shale_buf *scratch, shale_buf *scratch2)
{
    shale_error err;
    exercise_frame(p, len, scratch, scratch2);
    shale_code rc = dval_check(p, len, &err);
    if (rc != SHALE_OK) {
        cr_assert_eq(rc, SHALE_CORRUPTION);
        cr_assert_eq(strncmp(err.msg, "dval @", 6), 0, "%s", err.msg);
        return;
    }
    dval v = {p, len};
    cr_assert_eq(dval_at(p).len, len);
    cr_assert_eq(dval_cmp(v, v), 0);
    (void)dval_class_of(v);
    (void)dval_count(v);
    buf_reset(scratch);
    cr_assert_eq(dval_index_key(v, scratch, NULL), SHALE_OK);
    buf_reset(scratch);
    cr_assert_eq(dval_to_json(v, scratch, NULL), SHALE_OK);
    /* The text reads back to an equal value (unless a name holds NUL, which JSON input cannot
     * carry). */
    rc = dval_from_json(scratch->data, scratch->len, false, scratch2, &err);
    if (rc == SHALE_OK) {
        cr_assert_eq(dval_cmp(v, DV(scratch2)), 0, "%.*s", (int)scratch->len,
                     (char *)scratch->data);
    } else {
        cr_assert_eq(rc, SHALE_INVALID);
        cr_assert(strstr(err.msg, "NUL character in a name") != NULL, "%s", err.msg);
    }
    if (dval_tag_of(v) == DV_ARRAY || dval_tag_of(v) == DV_OBJECT) {
        dval_iter it;
        dval_iter_init(&it, v);
        shale_slice name;
        dval e, f;
        uint32_t count = 0;
        while (dval_iter_next(&it, &name, &e)) {
            count++;
            cr_assert_eq(dval_cmp(e, e), 0);
            if (dval_tag_of(v) == DV_OBJECT) {
                cr_assert(dval_field(v, name, &f));
                cr_assert_eq(f.p, e.p);
                if (name.len > 0 && memchr(name.data, '.', name.len) == NULL) {
                    cr_assert(dval_path(v, name, &f));
                }
            }
        }
        cr_assert_eq(count, dval_count(v));
        static const char *paths[] = {"a", "0", "a.b", "0.0", "1.a", "b.1"};
        shale_slice ps[6];
        for (int i = 0; i < 6; i++) {
            ps[i] = SL(paths[i]);
            (void)dval_path(v, ps[i], &f);
            (void)dval_field(v, ps[i], &f);
        }
        if (dval_tag_of(v) == DV_OBJECT) {
            cr_assert_eq(dval_project(v, ps, 6, scratch2, NULL), SHALE_OK);
            cr_assert_eq(dval_check(scratch2->data, scratch2->len, NULL), SHALE_OK);
            cr_assert_eq(dval_merge(v, v, scratch2, NULL), SHALE_OK);
            cr_assert_eq(dval_cmp(v, DV(scratch2)), 0);
            static const uint8_t one[] = {DV_NULL};
            cr_assert_eq(dval_set_field(v, SL("a"), (dval){one, 1}, scratch2, NULL), SHALE_OK);
            cr_assert_eq(dval_check(scratch2->data, scratch2->len, NULL), SHALE_OK);
        }
    }
}

/* An exact-size heap copy, so ASan reports a read one byte past the end. */
static void exercise_copy(const uint8_t *p, size_t len, shale_buf *s1, shale_buf *s2)
{
    uint8_t *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    if (len > 0) {
        memcpy(copy, p, len);
    }
    exercise(copy, len, s1, s2);
    free(copy);
}

static const char *const fuzz_docs[] = {
    ("{\"name\":\"Ada\",\"age\":36,\"tags\":[\"x\",\"y\",{\"k\":[1,2.5,null]}],\"ok\":true,"
     "\"addr\":{\"city\":\"Z\\u00fcrich\",\"zip\":8001,\"geo\":[47.37,8.54]},\"n\":null}"),
    "[1,-1,0.1,1e300,\"\",\"\\u0000\",[],{},[[[[1]]]],{\"a\":{\"b\":{\"c\":{}}}}]",
    "{\"\":0,\"\\u00e9\":\"\\ud83d\\ude00\",\"a\":false,\"b\":9223372036854775807}",
    "\"a fairly long string with \\\"quotes\\\" and \\\\ and UTF-8 \\u4e2d\"",
    "-9223372036854775808",
};

Test(dval_fuzz, truncations_and_bit_flips)
{
    shale_buf s1 = {0}, s2 = {0}, dmg = {0};
    size_t passed = 0, total = 0;
    for (size_t d = 0; d < sizeof fuzz_docs / sizeof fuzz_docs[0]; d++) {
        dval v = J(fuzz_docs[d]);
        /* Every proper prefix is damage dval_check must see. */
        for (size_t n = 0; n < v.len; n++) {
            uint8_t *copy = malloc(n ? n : 1);
            cr_assert_not_null(copy);
            memcpy(copy, v.p, n);
            shale_error err;
            cr_assert_eq(dval_check(copy, n, &err), SHALE_CORRUPTION, "doc %zu cut at %zu", d, n);
            cr_assert_eq(strncmp(err.msg, "dval @", 6), 0);
            free(copy);
        }
        /* Every single bit flip, and a byte too many. */
        for (size_t i = 0; i < v.len; i++) {
            for (int bit = 0; bit < 8; bit++) {
                cr_assert_eq(buf_set(&dmg, v.p, v.len, NULL), SHALE_OK);
                ((uint8_t *)dmg.data)[i] ^= (uint8_t)(1u << bit);
                exercise_copy(dmg.data, dmg.len, &s1, &s2);
                passed += dval_check(dmg.data, dmg.len, NULL) == SHALE_OK;
                total++;
            }
        }
        cr_assert_eq(buf_set(&dmg, v.p, v.len, NULL), SHALE_OK);
        cr_assert_eq(buf_append(&dmg, "", 1, NULL), SHALE_OK);
        cr_assert_eq(dval_check(dmg.data, dmg.len, NULL), SHALE_CORRUPTION);
        exercise_copy(v.p, v.len, &s1, &s2);
    }
    cr_log_info("bit flips: %zu of %zu still valid values", passed, total);
    cr_assert_lt(passed, total);
    buf_free(&s1);
    buf_free(&s2);
    buf_free(&dmg);
}

Test(dval_fuzz, random_bytes)
{
    tu_rng r;
    tu_rng_seed(&r, 12345);
    shale_buf s1 = {0}, s2 = {0};
    uint8_t b[48];
    size_t passed = 0;
    for (int iter = 0; iter < 150000; iter++) {
        size_t n = tu_rng_below(&r, sizeof b + 1);
        for (size_t i = 0; i < n; i++) {
            /* Mostly small bytes, so tags and short lengths line up often. */
            uint64_t x = tu_rng_next(&r);
            b[i] = (x & 3) ? (uint8_t)((x >> 8) % 12) : (uint8_t)(x >> 8);
        }
        exercise_copy(b, n, &s1, &s2);
        passed += n > 0 && dval_check(b, n, NULL) == SHALE_OK;
    }
    cr_log_info("random bytes: %zu of 150000 were values", passed);
    cr_assert_gt(passed, 1000, "the generator should hit valid values too");
    buf_free(&s1);
    buf_free(&s2);
}

Test(dval_fuzz, random_values_damaged)
{
    /* Random valid encodings (hand-built), each damaged in a few random ways. */
    tu_rng r;
    tu_rng_seed(&r, 31337);
    shale_buf v = {0}, s1 = {0}, s2 = {0}, dmg = {0};
    for (int iter = 0; iter < 3000; iter++) {
        buf_reset(&v);
        tb_value(&r, &v, 1);
        exercise_copy(v.data, v.len, &s1, &s2);
        for (int k = 0; k < 8; k++) {
            cr_assert_eq(buf_set(&dmg, v.data, v.len, NULL), SHALE_OK);
            size_t at = tu_rng_below(&r, v.len);
            switch (tu_rng_below(&r, 3)) {
            case 0:
                ((uint8_t *)dmg.data)[at] ^= (uint8_t)(1u << tu_rng_below(&r, 8));
                break;
            case 1:
                ((uint8_t *)dmg.data)[at] = (uint8_t)tu_rng_next(&r);
                break;
            default:
                dmg.len = at;
                break;
            }
            exercise_copy(dmg.data, dmg.len, &s1, &s2);
        }
    }
    buf_free(&v);
    buf_free(&s1);
    buf_free(&s2);
    buf_free(&dmg);
}

Test(dval_fuzz, json_text_damage)
{
    /* dval_from_json on damaged text: never a crash; what it accepts passes dval_check. */
    static const char repl[] = "{}[]\":,0-.e\\ u\x01\xc3\xff"
                               "9";
    tu_rng r;
    tu_rng_seed(&r, 2718);
    shale_buf out = {0}, text = {0};
    size_t accepted = 0, total = 0;
    for (size_t d = 0; d < sizeof fuzz_docs / sizeof fuzz_docs[0]; d++) {
        size_t len = strlen(fuzz_docs[d]);
        for (size_t i = 0; i <= len; i++) {
            for (int k = 0; k < 4; k++) {
                cr_assert_eq(buf_set(&text, fuzz_docs[d], len, NULL), SHALE_OK);
                if (k == 0) {
                    text.len = i; /* truncated */
                } else if (i < len) {
                    ((char *)text.data)[i] = repl[tu_rng_below(&r, sizeof repl - 1)];
                }
                char *copy = malloc(text.len ? text.len : 1);
                cr_assert_not_null(copy);
                memcpy(copy, text.data, text.len);
                shale_error err;
                shale_code rc = dval_from_json(copy, text.len, false, &out, &err);
                free(copy);
                total++;
                if (rc == SHALE_OK) {
                    accepted++;
                    cr_assert_eq(dval_check(out.data, out.len, &err), SHALE_OK, "%s", err.msg);
                } else {
                    cr_assert_eq(rc, SHALE_INVALID);
                    cr_assert(strstr(err.msg, "invalid JSON") != NULL, "%s", err.msg);
                }
            }
        }
    }
    cr_log_info("damaged JSON: %zu of %zu accepted", accepted, total);
    buf_free(&out);
    buf_free(&text);
}

/* A stored double that is NaN or infinite (damage past the frame check; dval never writes one)
 * is SHALE_CORRUPTION from dval_to_json, not undefined behaviour (found by dval_fuzz). */
Test(dval, non_finite_double_is_damage_in_to_json)
{
    uint8_t raw[9] = {DV_DOUBLE};
    const double bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t bits;
        memcpy(&bits, &bad[i], sizeof bits);
        coding_put_fixed64(raw + 1, bits);
        shale_buf out = {0};
        shale_error err = {0};
        cr_assert_eq(dval_to_json((dval){raw, sizeof raw}, &out, &err), SHALE_CORRUPTION);
        cr_assert(strstr(err.msg, "non-finite") != NULL, "%s", err.msg);
        shale_buf_free(&out);
    }
}
