/*
 * dval: the binary encoding of JSON values (format, order and contract in dval.h).
 *
 * Choices the header leaves open, made here:
 *   - Numbers. jansson reads an integer token with strtoll and fails on one beyond int64 ("too
 *     big integer"); JSON_DECODE_INT_AS_REAL would turn every integer into a double, losing
 *     exactness above 2^53 and the int/double distinction for all of them. We keep integers
 *     exact: the text is parsed as is, and only when jansson reports an integer overflow is it
 *     parsed again from a copy in which each integer token beyond int64 is followed by ".0", so
 *     jansson reads that token (and only it) as a correctly rounded double (DV_DOUBLE). Finding
 *     those tokens is a scan that skips strings; jansson still parses and validates everything.
 *     A number beyond the double range (1e400) is rejected (jansson's "real number overflow").
 *     "-0" is the integer 0; "-0.0" stays the double -0.0, which compares equal to 0.
 *   - Names: jansson does not support a NUL byte in an object name ("\u0000" in a key), so
 *     dval_from_json rejects it (SHALE_INVALID); string values may hold NUL. Encoded values
 *     built with dval_set_field may have such names; dval_to_json prints them escaped.
 *   - dval_check also validates UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above
 *     U+10FFFF) in strings and names, so that dval_to_json always prints valid JSON.
 *     Non-minimal varints are accepted (the framing stays unambiguous); this module writes
 *     minimal ones, so its output is canonical: dval_from_json(dval_to_json(v)) has v's bytes.
 *   - dval_to_json prints a double as %.15g, %.16g or %.17g would, the first that reads back
 *     to the same double ("0.1", not "0.10000000000000001"; subnormals from %.1g up), always
 *     with a '.' or an exponent so it reads back as a double ("1.0", "1e300"), the exponent
 *     without '+' or leading zeros ("1e-7"), in the C locale whatever the process locale. Short
 *     decimals (most numbers in documents) take an exact path without printf that prints the
 *     same text. Escapes: \" \\ \b \f \n \r \t, other control characters as \u00XX;
 *     everything else (DEL, all valid UTF-8, '/') verbatim. Depth errors of dval_from_json
 *     name the line and column of the bracket that opens level DVAL_MAX_DEPTH + 1.
 *   - dval_put_string and the names given to dval_set_field must be valid UTF-8 and
 *     dval_put_double finite (SHALE_INVALID otherwise), so every value built here passes
 *     dval_check. dval_set_field refuses a value that would nest deeper than DVAL_MAX_DEPTH, and
 *     any builder refuses a container whose body would exceed 4 GiB (SHALE_INVALID).
 *   - Index keys: the format is in dval.h (dval_index_key). Numbers carry a second word (an
 *     int's distance from its double) so the key order is exact beyond 2^53, and containers
 *     are keyed element by element, so every value's key orders as dval_cmp does.
 *   - dval_project through arrays: a path component applied to an array selects that element
 *     and the projection keeps an array holding the selected elements in their original order
 *     ({"t":[1,2,3]} on "t.2" is {"t":[3]}); a container all of whose requested parts are
 *     missing is left out like any missing path; a non-object doc projects to {}.
 *   - The builders (set_field, merge, project) also check that their object arguments are
 *     objects (SHALE_INVALID) rather than trusting the REQUIRES.
 */
#include "doc/dval.h"

#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/error.h"
#include "base/slice.h"

/* Index key class bytes (see the list above). */
enum {
    KEY_NULL = 0x01,
    KEY_FALSE = 0x02,
    KEY_TRUE = 0x03,
    KEY_NUMBER = 0x04,
    KEY_STRING = 0x05,
    KEY_ARRAY = 0x06,
    KEY_OBJECT = 0x07,
};

/* Largest body a container or string can declare (varint32). */
#define BODY_MAX UINT32_MAX

static const uint8_t tag_class[8] = {
    DVC_NULL, DVC_BOOL, DVC_BOOL, DVC_NUMBER, DVC_NUMBER, DVC_STRING, DVC_ARRAY, DVC_OBJECT,
};

/* ---- reading checked values ---- */

/* A varint of a checked value: it is complete, so the decoder stops inside the value; the limit
 * only bounds the longest legal encoding. One byte inline, the common case. */
static inline const uint8_t *rd32(const uint8_t *p, uint32_t *v)
{
    if (*p < 0x80) {
        *v = *p;
        return p + 1;
    }
    return coding_get_varint32(p, p + CODING_MAX_VARINT32, v);
}

/* Bytes taken by the checked value at p. */
static inline size_t vsize(const uint8_t *p)
{
    uint8_t t = *p;
    if (t <= DV_TRUE) {
        return 1;
    }
    if (t <= DV_DOUBLE) {
        return 9;
    }
    uint32_t n;
    const uint8_t *q = rd32(p + 1, &n);
    return (size_t)(q - p) + n;
}

dval dval_at(const uint8_t *p)
{
    return (dval){p, vsize(p)};
}

enum dval_tag dval_tag_of(dval v)
{
    return (enum dval_tag)v.p[0];
}

enum dval_class dval_class_of(dval v)
{
    return (enum dval_class)tag_class[v.p[0] & 7];
}

int64_t dval_int(dval v)
{
    return (int64_t)coding_get_fixed64(v.p + 1);
}

static inline double get_double(const uint8_t *p)
{
    uint64_t u = coding_get_fixed64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

double dval_double(dval v)
{
    if (v.p[0] == DV_INT) {
        return (double)dval_int(v);
    }
    return get_double(v.p + 1);
}

shale_slice dval_str(dval v)
{
    uint32_t n;
    const uint8_t *q = rd32(v.p + 1, &n);
    return (shale_slice){q, n};
}

uint32_t dval_count(dval v)
{
    if (v.p[0] != DV_ARRAY && v.p[0] != DV_OBJECT) {
        return 0;
    }
    uint32_t body, count;
    rd32(rd32(v.p + 1, &body), &count);
    return count;
}

void dval_iter_init(dval_iter *it, dval container)
{
    uint32_t body, count;
    const uint8_t *p = rd32(container.p + 1, &body);
    it->end = p + body;
    it->p = rd32(p, &count);
    it->object = container.p[0] == DV_OBJECT;
}

bool dval_iter_next(dval_iter *it, shale_slice *name, dval *value)
{
    const uint8_t *p = it->p;
    if (p >= it->end) {
        return false;
    }
    shale_slice nm = {p, 0};
    if (it->object) {
        uint32_t n;
        p = rd32(p, &n);
        nm = (shale_slice){p, n};
        p += n;
    }
    if (name != NULL) {
        *name = nm;
    }
    size_t len = vsize(p);
    *value = (dval){p, len};
    it->p = p + len;
    return true;
}

bool dval_field(dval obj, shale_slice name, dval *out)
{
    if (obj.p[0] != DV_OBJECT) {
        return false;
    }
    uint32_t body, count;
    const uint8_t *p = rd32(obj.p + 1, &body);
    const uint8_t *end = p + body;
    p = rd32(p, &count);
    while (p < end) {
        uint32_t n;
        p = rd32(p, &n);
        int c = slice_cmp((shale_slice){p, n}, name);
        p += n;
        size_t len = vsize(p);
        if (c == 0) {
            *out = (dval){p, len};
            return true;
        }
        if (c > 0) {
            return false; /* names are sorted: `name` would have come before */
        }
        p += len;
    }
    return false;
}

/* A path component of decimal digits as an array index; false if not digits or too large. */
static bool parse_index(const char *s, size_t n, uint32_t *out)
{
    if (n == 0 || n > 10) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

static bool array_at(dval arr, uint32_t idx, dval *out)
{
    uint32_t body, count;
    const uint8_t *p = rd32(arr.p + 1, &body);
    p = rd32(p, &count);
    if (idx >= count) {
        return false;
    }
    for (uint32_t i = 0; i < idx; i++) {
        p += vsize(p);
    }
    *out = (dval){p, vsize(p)};
    return true;
}

bool dval_path(dval v, shale_slice path, dval *out)
{
    const char *s = path.data;
    size_t n = path.len;
    if (n == 0) {
        return false;
    }
    dval cur = v;
    size_t i = 0;
    for (;;) {
        const char *dot = memchr(s + i, '.', n - i);
        size_t j = dot != NULL ? (size_t)(dot - s) : n;
        if (j == i) {
            return false; /* empty component */
        }
        if (cur.p[0] == DV_OBJECT) {
            if (!dval_field(cur, (shale_slice){s + i, j - i}, &cur)) {
                return false;
            }
        } else if (cur.p[0] == DV_ARRAY) {
            uint32_t idx;
            if (!parse_index(s + i, j - i, &idx) || !array_at(cur, idx, &cur)) {
                return false;
            }
        } else {
            return false;
        }
        if (j == n) {
            break;
        }
        i = j + 1;
        if (i == n) {
            return false; /* trailing dot: an empty last component */
        }
    }
    *out = cur;
    return true;
}

/* ---- comparing ---- */

/* An int against a double, exactly (no rounding of the int to double). */
static int cmp_int_double(int64_t i, double d)
{
    if (d >= 9223372036854775808.0) {
        return -1;
    }
    if (d < -9223372036854775808.0) {
        return 1;
    }
    int64_t t = (int64_t)d; /* d truncated toward zero: exact, in range */
    if (i != t) {
        return i < t ? -1 : 1;
    }
    double td = (double)t; /* a truncated double is an integer, so exact */
    return d > td ? -1 : (d < td ? 1 : 0);
}

static int cmp_num(const uint8_t *a, const uint8_t *b)
{
    if (a[0] == DV_INT && b[0] == DV_INT) {
        int64_t x = (int64_t)coding_get_fixed64(a + 1), y = (int64_t)coding_get_fixed64(b + 1);
        return x < y ? -1 : (x > y ? 1 : 0);
    }
    if (a[0] == DV_DOUBLE && b[0] == DV_DOUBLE) {
        double x = get_double(a + 1), y = get_double(b + 1);
        return x < y ? -1 : (x > y ? 1 : 0);
    }
    if (a[0] == DV_INT) {
        return cmp_int_double((int64_t)coding_get_fixed64(a + 1), get_double(b + 1));
    }
    return -cmp_int_double((int64_t)coding_get_fixed64(b + 1), get_double(a + 1));
}

int dval_cmp(dval a, dval b)
{
    uint8_t ta = a.p[0], tb = b.p[0];
    int ca = tag_class[ta & 7], cb = tag_class[tb & 7];
    if (ca != cb) {
        return ca < cb ? -1 : 1;
    }
    switch (ca) {
    case DVC_NULL:
        return 0;
    case DVC_BOOL:
        return (ta > tb) - (ta < tb);
    case DVC_NUMBER:
        return cmp_num(a.p, b.p);
    case DVC_STRING:
        return slice_cmp(dval_str(a), dval_str(b));
    default:
        break;
    }
    dval_iter ia, ib;
    dval_iter_init(&ia, a);
    dval_iter_init(&ib, b);
    for (;;) {
        shale_slice na = {NULL, 0}, nb = {NULL, 0};
        dval va, vb;
        bool ha = dval_iter_next(&ia, &na, &va);
        bool hb = dval_iter_next(&ib, &nb, &vb);
        if (!ha || !hb) {
            return ha == hb ? 0 : (ha ? 1 : -1); /* the shorter first */
        }
        int c = ca == DVC_OBJECT ? slice_cmp(na, nb) : 0;
        if (c == 0) {
            c = dval_cmp(va, vb);
        }
        if (c != 0) {
            return c;
        }
    }
}

static shale_code put_byte(shale_buf *out, uint8_t b, shale_error *err)
{
    if (out->len < out->cap) {
        ((uint8_t *)out->data)[out->len++] = b;
        return SHALE_OK;
    }
    return buf_append(out, &b, 1, err);
}

static shale_code put_varint(shale_buf *out, uint32_t v, shale_error *err)
{
    uint8_t tmp[CODING_MAX_VARINT32];
    return buf_append(out, tmp, (size_t)(coding_put_varint32(tmp, v) - tmp), err);
}

/* A string's key body: the bytes with each 00 written 00 FF, then 00 01 (so a string sorts
 * before its extensions and no body is a prefix of another). */
static shale_code key_string_body(shale_slice s, shale_buf *out, shale_error *err)
{
    const uint8_t *p = s.data, *end = p + s.len;
    size_t zeros = 0;
    for (const uint8_t *z = p; z < end && (z = memchr(z, 0, (size_t)(end - z))) != NULL; z++) {
        zeros++;
    }
    shale_code rc = buf_reserve(out, s.len + zeros + 2, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    uint8_t *w = (uint8_t *)out->data + out->len;
    while (p < end) {
        const uint8_t *z = memchr(p, 0, (size_t)(end - p));
        size_t run = (size_t)((z != NULL ? z : end) - p);
        memcpy(w, p, run);
        w += run;
        p += run;
        if (z != NULL) {
            *w++ = 0x00;
            *w++ = 0xff;
            p++;
        }
    }
    *w++ = 0x00;
    *w++ = 0x01;
    out->len = (size_t)(w - (uint8_t *)out->data);
    return SHALE_OK;
}

/* How far an int lies from the double that keys it: 0 unless |i| >= 2^53, where neighbouring
 * ints share a double. The key's second word, so ints beyond 2^53 keep their exact order. */
static int64_t int_offset(dval v, double d)
{
    if (v.p[0] != DV_INT) {
        return 0;
    }
    return (int64_t)((__int128)dval_int(v) - (__int128)d);
}

shale_code dval_index_key(dval v, shale_buf *out, shale_error *err)
{
    switch (v.p[0]) {
    case DV_NULL:
        return put_byte(out, KEY_NULL, err);
    case DV_FALSE:
        return put_byte(out, KEY_FALSE, err);
    case DV_TRUE:
        return put_byte(out, KEY_TRUE, err);
    case DV_INT:
    case DV_DOUBLE: {
        double d = dval_double(v);
        if (d == 0) {
            d = 0.0; /* -0.0 == 0.0: one key */
        }
        uint64_t u;
        memcpy(&u, &d, sizeof u);
        u = (u >> 63) ? ~u : (u | (1ull << 63));
        uint64_t t = (uint64_t)int_offset(v, d) ^ (1ull << 63);
        uint8_t k[17];
        k[0] = KEY_NUMBER;
        for (int i = 0; i < 8; i++) {
            k[1 + i] = (uint8_t)(u >> (56 - 8 * i));
            k[9 + i] = (uint8_t)(t >> (56 - 8 * i));
        }
        return buf_append(out, k, sizeof k, err);
    }
    case DV_STRING: {
        shale_code rc = put_byte(out, KEY_STRING, err);
        return rc != SHALE_OK ? rc : key_string_body(dval_str(v), out, err);
    }
    default:
        break;
    }
    /* Containers: the class, each element's key (an object's: its name's string body, then its
     * value's key), then an end mark below anything an element can start with (elements start
     * with a class byte 01-07, names with 01-FF, 00 FF or 00 01). */
    bool object = v.p[0] == DV_OBJECT;
    shale_code rc = put_byte(out, object ? KEY_OBJECT : KEY_ARRAY, err);
    dval_iter it;
    shale_slice name;
    dval e;
    dval_iter_init(&it, v);
    while (rc == SHALE_OK && dval_iter_next(&it, &name, &e)) {
        if (object) {
            rc = key_string_body(name, out, err);
        }
        if (rc == SHALE_OK) {
            rc = dval_index_key(e, out, err);
        }
    }
    if (rc == SHALE_OK) {
        rc = put_byte(out, 0x00, err);
    }
    if (rc == SHALE_OK && object) {
        rc = put_byte(out, 0x00, err);
    }
    return rc;
}

/* ---- checking ---- */

/* Index of the first byte of s[0, n) that is not part of valid UTF-8, or n. */
static size_t utf8_bad(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n && (coding_get_fixed64(s + i) & 0x8080808080808080ull) == 0) {
            i += 8;
            continue;
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf; /* range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0) {
                lo = 0xa0; /* overlong */
            } else if (c == 0xed) {
                hi = 0x9f; /* surrogates */
            }
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0) {
                lo = 0x90; /* overlong */
            } else if (c == 0xf4) {
                hi = 0x8f; /* above U+10FFFF */
            }
        } else {
            return i;
        }
        if (n - i <= need || s[i + 1] < lo || s[i + 1] > hi) {
            return i;
        }
        for (size_t k = 2; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return i;
            }
        }
        i += need + 1;
    }
    return n;
}

static bool utf8_valid(const void *s, size_t n)
{
    return utf8_bad(s, n) == n;
}

typedef struct checker {
    const uint8_t *base;
    shale_error *err;
    bool frame_only; /* dval_check_frame: bounds, tags, counts and depth only */
} checker;

#define CORRUPT(c, at, ...) corrupt((c), (size_t)((at) - (c)->base), __VA_ARGS__)

static shale_code corrupt(const checker *c, size_t off, const char *fmt, ...) SHALE_PRINTF(3, 4);

static shale_code corrupt(const checker *c, size_t off, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return err_set(c->err, SHALE_CORRUPTION, 0, "dval @%zu: %s", off, what);
}

/* Checks the value at p within [p, end); *next gets its end. `depth`: containers around it. */
static shale_code check_value(const checker *c, const uint8_t *p, const uint8_t *end, int depth,
                              const uint8_t **next)
{
    if (p >= end) {
        return CORRUPT(c, p, "value expected, none left");
    }
    uint8_t tag = *p;
    switch (tag) {
    case DV_NULL:
    case DV_FALSE:
    case DV_TRUE:
        *next = p + 1;
        return SHALE_OK;
    case DV_INT:
    case DV_DOUBLE:
        if (end - p < 9) {
            return CORRUPT(c, p, "%s truncated (%zu of 9 bytes)", tag == DV_INT ? "int" : "double",
                           (size_t)(end - p));
        }
        if (tag == DV_DOUBLE && !c->frame_only && !isfinite(get_double(p + 1))) {
            return CORRUPT(c, p, "double is NaN or infinite");
        }
        *next = p + 9;
        return SHALE_OK;
    case DV_STRING: {
        uint32_t n;
        const uint8_t *q = coding_get_varint32(p + 1, end, &n);
        if (q == NULL) {
            return CORRUPT(c, p + 1, "bad string length varint");
        }
        if ((size_t)(end - q) < n) {
            return CORRUPT(c, p, "string of %u bytes runs past the end (%zu left)", n,
                           (size_t)(end - q));
        }
        size_t bad = c->frame_only ? n : utf8_bad(q, n);
        if (bad != n) {
            return CORRUPT(c, q + bad, "invalid UTF-8 in string");
        }
        *next = q + n;
        return SHALE_OK;
    }
    case DV_ARRAY:
    case DV_OBJECT:
        break;
    default:
        return CORRUPT(c, p, "bad tag 0x%02x", tag);
    }

    const char *kind = tag == DV_ARRAY ? "array" : "object";
    if (depth + 1 > DVAL_MAX_DEPTH) {
        return CORRUPT(c, p, "nested deeper than %d levels", DVAL_MAX_DEPTH);
    }
    uint32_t body, count;
    const uint8_t *q = coding_get_varint32(p + 1, end, &body);
    if (q == NULL) {
        return CORRUPT(c, p + 1, "bad %s length varint", kind);
    }
    if ((size_t)(end - q) < body) {
        return CORRUPT(c, p, "%s of %u bytes runs past the end (%zu left)", kind, body,
                       (size_t)(end - q));
    }
    const uint8_t *bend = q + body;
    const uint8_t *cpos = q;
    q = coding_get_varint32(q, bend, &count);
    if (q == NULL) {
        return CORRUPT(c, cpos, "bad %s count varint", kind);
    }
    /* A value takes a byte at least, a field two: a bigger count cannot fit. */
    if ((uint64_t)count * (tag == DV_ARRAY ? 1 : 2) > (uint64_t)(bend - q)) {
        return CORRUPT(c, cpos, "%s count %u too large for its %zu bytes", kind, count,
                       (size_t)(bend - q));
    }
    shale_slice prev = {NULL, 0};
    for (uint32_t i = 0; i < count; i++) {
        if (tag == DV_OBJECT) {
            uint32_t n;
            const uint8_t *name_at = q;
            q = coding_get_varint32(q, bend, &n);
            if (q == NULL) {
                return CORRUPT(c, name_at, "bad name length varint (field %u)", i);
            }
            if ((size_t)(bend - q) < n) {
                return CORRUPT(c, name_at, "name of %u bytes runs past the object (field %u)", n,
                               i);
            }
            size_t bad = c->frame_only ? n : utf8_bad(q, n);
            if (bad != n) {
                return CORRUPT(c, q + bad, "invalid UTF-8 in name (field %u)", i);
            }
            shale_slice name = {q, n};
            if (i > 0 && !c->frame_only) {
                int cmp = slice_cmp(prev, name);
                if (cmp >= 0) {
                    return CORRUPT(c, name_at, "%s name (field %u)",
                                   cmp == 0 ? "duplicate" : "out of order", i);
                }
            }
            prev = name;
            q += n;
        }
        shale_code rc = check_value(c, q, bend, depth + 1, &q);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    if (q != bend) {
        return CORRUPT(c, q, "%zu bytes left in the %s after its %u values", (size_t)(bend - q),
                       kind, count);
    }
    *next = bend;
    return SHALE_OK;
}

static shale_code check_all(const uint8_t *p, size_t len, bool frame_only, shale_error *err)
{
    checker c = {p, err, frame_only};
    if (len == 0 || p == NULL) {
        return err_set(err, SHALE_CORRUPTION, 0, "dval @0: empty");
    }
    const uint8_t *next;
    shale_code rc = check_value(&c, p, p + len, 0, &next);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (next != p + len) {
        return CORRUPT(&c, next, "%zu trailing bytes after the value", (size_t)(p + len - next));
    }
    return SHALE_OK;
}

shale_code dval_check(const uint8_t *p, size_t len, shale_error *err)
{
    return check_all(p, len, false, err);
}

shale_code dval_check_frame(const uint8_t *p, size_t len, shale_error *err)
{
    return check_all(p, len, true, err);
}

/* ---- building ---- */

/* Containers are written with a two-byte header guess (body length, count), fixed up when they
 * are closed: small containers (under 128 bytes and values) need no move at all. */
static shale_code open_container(shale_buf *out, uint8_t tag, size_t *mark, shale_error *err)
{
    shale_code rc = buf_reserve(out, 3, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    uint8_t *d = out->data;
    d[out->len] = tag;
    *mark = out->len + 1;
    out->len += 3;
    return SHALE_OK;
}

static shale_code close_container(shale_buf *out, size_t mark, uint32_t count, shale_error *err)
{
    size_t content = out->len - mark - 2;
    size_t cn = (size_t)coding_varint_length(count);
    if (content > BODY_MAX - cn) {
        return err_set(err, SHALE_INVALID, 0, "value too large: a container over 4 GiB");
    }
    uint32_t body = (uint32_t)(content + cn);
    size_t hdr = (size_t)coding_varint_length(body) + cn;
    if (hdr > 2) {
        shale_code rc = buf_reserve(out, hdr - 2, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        uint8_t *d = out->data;
        memmove(d + mark + hdr, d + mark + 2, content);
        out->len += hdr - 2;
    }
    uint8_t *d = out->data;
    coding_put_varint32(coding_put_varint32(d + mark, body), count);
    return SHALE_OK;
}

static shale_code put_name(shale_buf *out, shale_slice name, shale_error *err)
{
    shale_code rc = put_varint(out, (uint32_t)name.len, err);
    return rc != SHALE_OK ? rc : buf_append(out, name.data, name.len, err);
}

static shale_code put_field(shale_buf *out, shale_slice name, dval v, shale_error *err)
{
    shale_code rc = put_name(out, name, err);
    return rc != SHALE_OK ? rc : buf_append(out, v.p, v.len, err);
}

shale_code dval_put_null(shale_buf *out, shale_error *err)
{
    return put_byte(out, DV_NULL, err);
}

shale_code dval_put_bool(shale_buf *out, bool b, shale_error *err)
{
    return put_byte(out, b ? DV_TRUE : DV_FALSE, err);
}

static shale_code put_fixed(shale_buf *out, uint8_t tag, uint64_t u, shale_error *err)
{
    uint8_t b[9];
    b[0] = tag;
    coding_put_fixed64(b + 1, u);
    return buf_append(out, b, sizeof b, err);
}

shale_code dval_put_int(shale_buf *out, int64_t i, shale_error *err)
{
    return put_fixed(out, DV_INT, (uint64_t)i, err);
}

shale_code dval_put_double(shale_buf *out, double d, shale_error *err)
{
    if (!isfinite(d)) {
        return err_set(err, SHALE_INVALID, 0, "a document number must be finite, not %g", d);
    }
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return put_fixed(out, DV_DOUBLE, u, err);
}

static shale_code put_string_raw(shale_buf *out, const void *s, size_t n, shale_error *err)
{
    if (n > BODY_MAX) {
        return err_set(err, SHALE_INVALID, 0, "string too long: %zu bytes (4 GiB at most)", n);
    }
    shale_code rc = buf_reserve(out, 1 + CODING_MAX_VARINT32 + n, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    uint8_t *d = (uint8_t *)out->data + out->len;
    *d++ = DV_STRING;
    d = coding_put_varint32(d, (uint32_t)n);
    if (n > 0) {
        memcpy(d, s, n);
    }
    out->len = (size_t)(d + n - (uint8_t *)out->data);
    return SHALE_OK;
}

shale_code dval_put_string(shale_buf *out, shale_slice s, shale_error *err)
{
    size_t bad = utf8_bad(s.data, s.len);
    if (bad != s.len) {
        return err_set(err, SHALE_INVALID, 0, "string is not valid UTF-8 (byte %zu)", bad);
    }
    return put_string_raw(out, s.data, s.len, err);
}

/* Nesting depth of a checked value (a scalar is 0). */
static int depth_of(dval v)
{
    if (v.p[0] != DV_ARRAY && v.p[0] != DV_OBJECT) {
        return 0;
    }
    int deepest = 0;
    dval_iter it;
    dval_iter_init(&it, v);
    dval e;
    while (dval_iter_next(&it, NULL, &e)) {
        if (e.p[0] == DV_ARRAY || e.p[0] == DV_OBJECT) {
            int d = depth_of(e);
            deepest = d > deepest ? d : deepest;
        }
    }
    return deepest + 1;
}

static shale_code need_object(dval v, const char *what, shale_error *err)
{
    if (v.len == 0 || v.p[0] != DV_OBJECT) {
        return err_set(err, SHALE_INVALID, 0, "%s is not an object", what);
    }
    return SHALE_OK;
}

shale_code dval_set_field(dval obj, shale_slice name, dval value, shale_buf *out, shale_error *err)
{
    shale_code rc = need_object(obj, "set_field: the target", err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (name.len > BODY_MAX || !utf8_valid(name.data, name.len)) {
        return err_set(err, SHALE_INVALID, 0, "field name is not valid UTF-8");
    }
    if (depth_of(value) + 1 > DVAL_MAX_DEPTH) {
        return err_set(err, SHALE_INVALID, 0,
                       "value nested too deep: a field's value may nest %d levels at most",
                       DVAL_MAX_DEPTH - 1);
    }
    buf_reset(out);
    size_t mark;
    if ((rc = buf_reserve(out, obj.len + name.len + value.len + 2 * CODING_MAX_VARINT32, err)) !=
            SHALE_OK ||
        (rc = open_container(out, DV_OBJECT, &mark, err)) != SHALE_OK) {
        return rc;
    }
    uint32_t count = 0;
    bool done = false;
    dval_iter it;
    dval_iter_init(&it, obj);
    shale_slice fname;
    dval fval;
    while (dval_iter_next(&it, &fname, &fval)) {
        int c = done ? -1 : slice_cmp(fname, name);
        if (c >= 0) {
            if ((rc = put_field(out, name, value, err)) != SHALE_OK) {
                return rc;
            }
            count++;
            done = true;
            if (c == 0) {
                continue; /* replaced */
            }
        }
        if ((rc = put_field(out, fname, fval, err)) != SHALE_OK) {
            return rc;
        }
        count++;
    }
    if (!done) {
        if ((rc = put_field(out, name, value, err)) != SHALE_OK) {
            return rc;
        }
        count++;
    }
    return close_container(out, mark, count, err);
}

shale_code dval_merge(dval base, dval patch, shale_buf *out, shale_error *err)
{
    shale_code rc;
    if ((rc = need_object(base, "merge: the base", err)) != SHALE_OK ||
        (rc = need_object(patch, "merge: the patch", err)) != SHALE_OK) {
        return rc;
    }
    buf_reset(out);
    size_t mark;
    if ((rc = buf_reserve(out, base.len + patch.len, err)) != SHALE_OK ||
        (rc = open_container(out, DV_OBJECT, &mark, err)) != SHALE_OK) {
        return rc;
    }
    dval_iter ib, ip;
    dval_iter_init(&ib, base);
    dval_iter_init(&ip, patch);
    shale_slice nb = {NULL, 0}, np = {NULL, 0};
    dval vb, vp;
    bool hb = dval_iter_next(&ib, &nb, &vb), hp = dval_iter_next(&ip, &np, &vp);
    uint32_t count = 0;
    while (hb || hp) {
        int c = !hb ? 1 : (!hp ? -1 : slice_cmp(nb, np));
        if (c < 0) {
            rc = put_field(out, nb, vb, err);
            hb = dval_iter_next(&ib, &nb, &vb);
        } else {
            rc = put_field(out, np, vp, err);
            hp = dval_iter_next(&ip, &np, &vp);
            if (c == 0) {
                hb = dval_iter_next(&ib, &nb, &vb); /* replaced whole */
            }
        }
        if (rc != SHALE_OK) {
            return rc;
        }
        count++;
    }
    return close_container(out, mark, count, err);
}

/* Projection state: the path suffixes still to apply at each nesting level live in `scratch`,
 * npaths slots per level. */
typedef struct projector {
    shale_slice *scratch;
    size_t npaths;
    shale_buf *out;
    shale_error *err;
} projector;

/* Splits the first component off `path`: returns it, and sets *rest and *has_rest. */
static shale_slice first_component(shale_slice path, shale_slice *rest, bool *has_rest)
{
    const char *s = path.data;
    const char *dot = path.len > 0 ? memchr(s, '.', path.len) : NULL;
    if (dot == NULL) {
        *has_rest = false;
        *rest = (shale_slice){NULL, 0};
        return path;
    }
    *has_rest = true;
    *rest = (shale_slice){dot + 1, path.len - (size_t)(dot - s) - 1};
    return (shale_slice){s, (size_t)(dot - s)};
}

static shale_code project_into(projector *pj, dval v, const shale_slice *paths, size_t n, int level,
                               bool *wrote);

/* Collects the suffixes of `paths` (n of them) that go on into the child called `name` (an
 * object field) or numbered `index` (an array element, name.data NULL) into `next`; *whole is
 * set when a path ends at the child. Returns how many went on. An empty component, or a
 * trailing empty one, matches nothing. */
static size_t child_paths(const shale_slice *paths, size_t n, shale_slice name, uint32_t index,
                          shale_slice *next, bool *whole)
{
    size_t k = 0;
    *whole = false;
    for (size_t i = 0; i < n; i++) {
        shale_slice rest;
        bool has_rest;
        shale_slice comp = first_component(paths[i], &rest, &has_rest);
        if (comp.len == 0) {
            continue;
        }
        bool match;
        if (name.data != NULL) {
            match = slice_eq(comp, name);
        } else {
            uint32_t idx;
            match = parse_index(comp.data, comp.len, &idx) && idx == index;
        }
        if (!match) {
            continue;
        }
        if (!has_rest) {
            *whole = true;
            return 0;
        }
        if (rest.len > 0) {
            next[k++] = rest;
        }
    }
    return k;
}

static shale_code project_into(projector *pj, dval v, const shale_slice *paths, size_t n, int level,
                               bool *wrote)
{
    shale_code rc;
    bool object = v.p[0] == DV_OBJECT;
    size_t start = pj->out->len, mark;
    *wrote = false;
    if ((rc = open_container(pj->out, v.p[0], &mark, pj->err)) != SHALE_OK) {
        return rc;
    }
    shale_slice *next = pj->scratch + (size_t)(level + 1) * pj->npaths;
    uint32_t count = 0, index = 0;
    dval_iter it;
    dval_iter_init(&it, v);
    shale_slice name;
    dval child;
    while (dval_iter_next(&it, &name, &child)) {
        bool whole;
        size_t k =
            child_paths(paths, n, object ? name : (shale_slice){NULL, 0}, index++, next, &whole);
        if (!whole && (k == 0 || (child.p[0] != DV_OBJECT && child.p[0] != DV_ARRAY))) {
            continue; /* not asked for, or asked for inside a scalar: missing */
        }
        size_t before = pj->out->len;
        if (object && (rc = put_name(pj->out, name, pj->err)) != SHALE_OK) {
            return rc;
        }
        if (whole) {
            rc = buf_append(pj->out, child.p, child.len, pj->err);
        } else {
            bool sub;
            rc = project_into(pj, child, next, k, level + 1, &sub);
            if (rc == SHALE_OK && !sub) {
                pj->out->len = before; /* nothing of it was there */
                continue;
            }
        }
        if (rc != SHALE_OK) {
            return rc;
        }
        count++;
    }
    if (count == 0) {
        pj->out->len = start;
        return SHALE_OK;
    }
    *wrote = true;
    return close_container(pj->out, mark, count, pj->err);
}

shale_code dval_project(dval doc, const shale_slice *paths, size_t npaths, shale_buf *out,
                        shale_error *err)
{
    static const uint8_t empty_object[3] = {DV_OBJECT, 1, 0};
    buf_reset(out);
    if (doc.len == 0 || doc.p[0] != DV_OBJECT || npaths == 0) {
        return buf_append(out, empty_object, sizeof empty_object, err);
    }
    if (npaths > SIZE_MAX / sizeof(shale_slice) / (DVAL_MAX_DEPTH + 2)) {
        return err_set(err, SHALE_INVALID, 0, "project: too many paths (%zu)", npaths);
    }
    projector pj = {malloc(npaths * (DVAL_MAX_DEPTH + 2) * sizeof(shale_slice)), npaths, out, err};
    if (pj.scratch == NULL) {
        return err_nomem(err);
    }
    bool wrote;
    shale_code rc = project_into(&pj, doc, paths, npaths, 0, &wrote);
    if (rc == SHALE_OK && !wrote) {
        rc = buf_append(out, empty_object, sizeof empty_object, err);
    }
    free(pj.scratch);
    return rc;
}

/* ---- JSON in (jansson) ---- */

/* An object's fields, gathered to be sorted: jansson keeps objects in a hash. One stack serves
 * every level of the walk. */
typedef struct jfield {
    const char *name;
    size_t len;
    json_t *value;
} jfield;

typedef struct jenc {
    shale_buf *out;
    shale_error *err;
    jfield *stack;
    size_t top, cap;
    bool too_deep;
} jenc;

static int jfield_cmp(const void *a, const void *b)
{
    const jfield *x = a, *y = b;
    return slice_cmp((shale_slice){x->name, x->len}, (shale_slice){y->name, y->len});
}

static shale_code encode_json(jenc *e, json_t *j, int depth)
{
    shale_buf *out = e->out;
    shale_code rc;
    switch (json_typeof(j)) {
    case JSON_NULL:
        return put_byte(out, DV_NULL, e->err);
    case JSON_TRUE:
        return put_byte(out, DV_TRUE, e->err);
    case JSON_FALSE:
        return put_byte(out, DV_FALSE, e->err);
    case JSON_INTEGER:
        return put_fixed(out, DV_INT, (uint64_t)json_integer_value(j), e->err);
    case JSON_REAL:
        return dval_put_double(out, json_real_value(j), e->err);
    case JSON_STRING:
        /* jansson validated the UTF-8. */
        return put_string_raw(out, json_string_value(j), json_string_length(j), e->err);
    case JSON_ARRAY: {
        if (depth + 1 > DVAL_MAX_DEPTH) {
            e->too_deep = true; /* the message comes from dval_from_json, with the place */
            return SHALE_INVALID;
        }
        size_t n = json_array_size(j), mark;
        if (n > BODY_MAX) {
            return err_set(e->err, SHALE_INVALID, 0, "JSON array too large");
        }
        if ((rc = open_container(out, DV_ARRAY, &mark, e->err)) != SHALE_OK) {
            return rc;
        }
        for (size_t i = 0; i < n; i++) {
            if ((rc = encode_json(e, json_array_get(j, i), depth + 1)) != SHALE_OK) {
                return rc;
            }
        }
        return close_container(out, mark, (uint32_t)n, e->err);
    }
    case JSON_OBJECT:
        break;
    }

    if (depth + 1 > DVAL_MAX_DEPTH) {
        e->too_deep = true;
        return SHALE_INVALID;
    }
    size_t n = json_object_size(j), mark;
    if (n > BODY_MAX) {
        return err_set(e->err, SHALE_INVALID, 0, "JSON object too large");
    }
    if (n > e->cap - e->top) {
        size_t cap = e->cap < 16 ? 16 : e->cap;
        while (cap - e->top < n) {
            cap *= 2;
        }
        jfield *s = realloc(e->stack, cap * sizeof *s);
        if (s == NULL) {
            return err_nomem(e->err);
        }
        e->stack = s;
        e->cap = cap;
    }
    size_t base = e->top, k = 0;
    for (void *it = json_object_iter(j); it != NULL && k < n; it = json_object_iter_next(j, it)) {
        e->stack[base + k++] = (jfield){json_object_iter_key(it), json_object_iter_key_len(it),
                                        json_object_iter_value(it)};
    }
    e->top = base + k;
    if (k > 1) {
        qsort(e->stack + base, k, sizeof(jfield), jfield_cmp);
    }
    if ((rc = open_container(out, DV_OBJECT, &mark, e->err)) != SHALE_OK) {
        return rc;
    }
    for (size_t i = 0; i < k; i++) {
        jfield f = e->stack[base + i]; /* by value: deeper levels may move the stack */
        if (f.len > BODY_MAX) {
            return err_set(e->err, SHALE_INVALID, 0, "JSON name too long");
        }
        if ((rc = put_name(out, (shale_slice){f.name, f.len}, e->err)) != SHALE_OK ||
            (rc = encode_json(e, f.value, depth + 1)) != SHALE_OK) {
            return rc;
        }
    }
    e->top = base;
    return close_container(out, mark, (uint32_t)k, e->err);
}

/* Where the big-integer pass inserted ".0": after the token ending at `off` (in the original
 * text), on line `line`. */
typedef struct insertion {
    size_t off;
    int line;
} insertion;

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Whether the integer token s[0, n) ('-'? digits) is beyond int64. JSON forbids leading zeros,
 * so more than 19 digits is always beyond; otherwise strtoll decides, as in jansson. */
static bool int_token_overflows(const char *s, size_t n)
{
    size_t digits = n - (s[0] == '-');
    if (digits == 0) {
        return false;
    }
    if (digits > 19) {
        return true;
    }
    char tmp[24];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    (void)strtoll(tmp, NULL, 10);
    return errno == ERANGE;
}

/* Finds the integer tokens of `s` beyond int64 (outside strings) and, if any, builds in *patched
 * (malloc'ed) the text with ".0" after each. *nins is how many (0: *patched stays NULL). */
static shale_code patch_big_ints(const char *s, size_t len, char **patched, size_t *plen,
                                 insertion **ins, size_t *nins, shale_error *err)
{
    insertion *v = NULL;
    size_t n = 0, cap = 0;
    int line = 1;
    *patched = NULL;
    *ins = NULL;
    *nins = 0;
    for (size_t i = 0; i < len;) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < len && s[i] != '"'; i++) {
                i += s[i] == '\\';
            }
            i++;
            continue;
        }
        if (c == '\n') {
            line++;
        }
        if (c != '-' && !is_digit(c)) {
            i++;
            continue;
        }
        size_t j = i + (c == '-');
        while (j < len && is_digit(s[j])) {
            j++;
        }
        if (j < len && (s[j] == '.' || s[j] == 'e' || s[j] == 'E')) {
            while (j < len && (is_digit(s[j]) || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
                               s[j] == '+' || s[j] == '-')) {
                j++;
            }
        } else if (int_token_overflows(s + i, j - i)) {
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                insertion *g = realloc(v, cap * sizeof *v);
                if (g == NULL) {
                    free(v);
                    return err_nomem(err);
                }
                v = g;
            }
            v[n++] = (insertion){j, line};
        }
        i = j;
    }
    if (n == 0) {
        return SHALE_OK;
    }
    char *t = malloc(len + 2 * n);
    if (t == NULL) {
        free(v);
        return err_nomem(err);
    }
    size_t from = 0, to = 0;
    for (size_t k = 0; k < n; k++) {
        memcpy(t + to, s + from, v[k].off - from);
        to += v[k].off - from;
        from = v[k].off;
        t[to++] = '.';
        t[to++] = '0';
    }
    memcpy(t + to, s + from, len - from);
    *patched = t;
    *plen = len + 2 * n;
    *ins = v;
    *nins = n;
    return SHALE_OK;
}

/* Line and column (in characters, as jansson counts) of the first bracket of the valid JSON
 * text s that opens more than DVAL_MAX_DEPTH levels: jansson's tree holds no positions. */
static void locate_depth(const char *s, size_t len, int *line, int *col)
{
    int depth = 0, ln = 1, cl = 0;
    bool in_str = false, esc = false;
    *line = *col = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') {
            ln++;
            cl = 0;
            continue;
        }
        cl += (c & 0xc0) != 0x80; /* a character starts here */
        if (in_str) {
            if (esc) {
                esc = false;
            } else if (c == '\\') {
                esc = true;
            } else if (c == '"') {
                in_str = false;
            }
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > DVAL_MAX_DEPTH) {
                *line = ln;
                *col = cl;
                return;
            }
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
}

/* SHALE_INVALID (or NOMEM) from a jansson error; `ins` maps columns of a patched text back. */
static shale_code json_fail(const json_error_t *je, const insertion *ins, size_t nins,
                            const char *json, size_t len, shale_error *err)
{
    int col = je->column;
    for (size_t k = 0; k < nins; k++) {
        size_t at = ins[k].off + 2 * k; /* where ".0" sits in the patched text */
        if (ins[k].line == je->line && je->position > 0 && (size_t)je->position > at) {
            col -= (size_t)je->position >= at + 2 ? 2 : (int)((size_t)je->position - at);
        }
    }
    const char *what;
    switch (json_error_code(je)) {
    case json_error_out_of_memory:
        return err_set(err, SHALE_NOMEM, ENOMEM, "out of memory parsing JSON");
    case json_error_stack_overflow: {
        /* jansson gave up at its own limit (2048 levels): point at where ours was passed. */
        int line, c;
        locate_depth(json, len, &line, &c);
        return err_set(err, SHALE_INVALID, 0,
                       "invalid JSON at line %d, column %d: nested deeper than %d levels", line, c,
                       DVAL_MAX_DEPTH);
    }
    case json_error_invalid_utf8:
        what = "invalid UTF-8";
        break;
    case json_error_duplicate_key:
        what = "duplicate name";
        break;
    case json_error_end_of_input_expected:
        what = "trailing garbage after the value";
        break;
    case json_error_numeric_overflow:
        what = "number out of range";
        break;
    case json_error_null_byte_in_key:
        what = "a NUL character in a name is not supported";
        break;
    default:
        what = "syntax error";
        break;
    }
    return err_set(err, SHALE_INVALID, 0, "invalid JSON at line %d, column %d: %s (%s)", je->line,
                   col, what, je->text);
}

static const char *json_type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    default:
        return "an object";
    }
}

shale_code dval_from_json(const char *json, size_t len, bool require_object, shale_buf *out,
                          shale_error *err)
{
    /* Any top level (checked below, for a clearer message), NUL allowed in strings (jansson
     * still refuses it in names), duplicates refused; trailing garbage is refused by default
     * (no JSON_DISABLE_EOF_CHECK). */
    const size_t flags = JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_error_t je;
    char *patched = NULL;
    insertion *ins = NULL;
    size_t nins = 0;
    shale_code rc;
    jenc e = {out, err, NULL, 0, 0, false};

    if (json == NULL) {
        json = "";
        len = 0;
    }
    json_t *root = json_loadb(json, len, flags, &je);
    if (root == NULL && json_error_code(&je) == json_error_numeric_overflow) {
        json_error_t first = je;
        size_t plen = 0;
        if ((rc = patch_big_ints(json, len, &patched, &plen, &ins, &nins, err)) != SHALE_OK) {
            return rc;
        }
        if (nins > 0) {
            root = json_loadb(patched, plen, flags, &je);
        } else {
            je = first; /* a real out of range: report it as is */
        }
    }
    if (root == NULL) {
        rc = json_fail(&je, ins, nins, json, len, err);
        goto done;
    }
    if (require_object && !json_is_object(root)) {
        rc = err_set(err, SHALE_INVALID, 0,
                     "invalid JSON document: the top level is %s, not an object",
                     json_type_name(root));
        goto done;
    }
    buf_reset(out);
    rc = encode_json(&e, root, 0);
    if (e.too_deep) {
        int line, col;
        locate_depth(json, len, &line, &col);
        rc = err_set(err, SHALE_INVALID, 0,
                     "invalid JSON at line %d, column %d: nested deeper than %d levels", line, col,
                     DVAL_MAX_DEPTH);
    }
done:
    json_decref(root);
    free(e.stack);
    free(patched);
    free(ins);
    return rc;
}

/* ---- JSON out ---- */

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

typedef struct jwriter {
    shale_buf *out;
    shale_error *err;
    bool switched; /* the thread's locale is C for numbers until we restore `saved` */
    locale_t saved;
} jwriter;

/* Powers of ten a double holds exactly. */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* What format_double prints, without printf, for d = M / 10^k with M < 10^15 and |d| in
 * [1e-4, 1e15) or 0: the common case (prices, coordinates, scores), where printf and strtod
 * cost more than all the rest of a document. The smallest k for which M / 10^k (computed in
 * double: correctly rounded, as strtod would read the decimal) gives back d is the number of
 * decimals %.15g prints once its trailing zeros are dropped: any decimal of 15 digits or fewer
 * that reads back as d is d rounded to 15 digits. Returns 0 when d is not such a number. */
static size_t format_short_decimal(double d, char *buf)
{
    double a = fabs(d);
    if (a != 0 && (a < 1e-4 || a >= 1e15)) {
        return 0;
    }
    for (int k = 0; k <= 19; k++) {
        double m = a * pow10_exact[k];
        if (m >= 1e15) {
            return 0;
        }
        double r = (double)(uint64_t)(m + 0.5); /* round; no libm in the library */
        if (r / pow10_exact[k] != a) {
            continue;
        }
        char digits[24];
        int nd = 0;
        for (uint64_t u = (uint64_t)r; nd == 0 || u != 0; u /= 10) {
            digits[nd++] = (char)('0' + u % 10); /* backwards */
        }
        size_t len = 0;
        if (signbit(d)) {
            buf[len++] = '-';
        }
        if (k == 0) {
            while (nd > 0) {
                buf[len++] = digits[--nd];
            }
            buf[len++] = '.';
            buf[len++] = '0';
        } else if (nd > k) {
            while (nd > k) {
                buf[len++] = digits[--nd];
            }
            buf[len++] = '.';
            while (nd > 0) {
                buf[len++] = digits[--nd];
            }
        } else {
            buf[len++] = '0';
            buf[len++] = '.';
            for (int z = nd; z < k; z++) {
                buf[len++] = '0';
            }
            while (nd > 0) {
                buf[len++] = digits[--nd];
            }
        }
        buf[len] = '\0';
        return len;
    }
    return 0;
}

/* The shortest of %.15g, %.16g, %.17g (%.1g up for subnormals) that reads back as d, in JSON
 * syntax. Returns the length of buf (room for 40). */
static size_t format_double(jwriter *w, double d, char *buf)
{
    size_t quick = format_short_decimal(d, buf);
    if (quick > 0) {
        return quick;
    }
    if (!w->switched) {
        /* printf and strtod follow the thread's LC_NUMERIC ("0,5" in some locales). */
        pthread_once(&c_locale_once, c_locale_init);
        if (c_locale != (locale_t)0) {
            w->saved = uselocale(c_locale);
            w->switched = true;
        }
    }
    int n = 0;
    /* Any decimal of 15 digits or fewer that reads back as a normal double is what %.15g
     * prints (with its trailing zeros dropped); a subnormal holds fewer digits, so its shortest
     * form may be shorter than that: try them all (rare). */
    int prec = fabs(d) < DBL_MIN && d != 0 ? 1 : 15;
    for (; prec <= 17; prec++) {
        n = snprintf(buf, 40, "%.*g", prec, d);
        if (prec == 17 || strtod(buf, NULL) == d) {
            break;
        }
    }
    size_t len = n > 0 ? (size_t)n : 0;
    char *e = memchr(buf, 'e', len);
    if (e != NULL) {
        /* "1e+300" -> "1e300", "1e-07" -> "1e-7": shorter, and still a double. */
        char *r = e + 1, *w2 = e + 1;
        if (*r == '+') {
            r++;
        } else if (*r == '-') {
            *w2++ = *r++;
        }
        while (*r == '0' && r[1] != '\0') {
            r++;
        }
        while (*r != '\0') {
            *w2++ = *r++;
        }
        *w2 = '\0';
        len = (size_t)(w2 - buf);
    } else if (memchr(buf, '.', len) == NULL) {
        buf[len++] = '.'; /* "1" would read back as an int */
        buf[len++] = '0';
        buf[len] = '\0';
    }
    return len;
}

/* Appends n bytes (never from out itself): a copy when they fit, else buf_append. */
static inline shale_code put(shale_buf *out, const void *p, size_t n, shale_error *err)
{
    if (out->cap - out->len >= n && out->data != NULL) {
        if (n > 0) {
            memcpy((char *)out->data + out->len, p, n);
        }
        out->len += n;
        return SHALE_OK;
    }
    return buf_append(out, p, n, err);
}

/* The control characters with a short escape in JSON, by code. */
static const char ctrl_short[32] = {
    ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};

static shale_code write_string(jwriter *w, const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    shale_code rc = buf_reserve(w->out, n + 2, w->err);
    if (rc != SHALE_OK) {
        return rc;
    }
    ((char *)w->out->data)[w->out->len++] = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        if ((rc = put(w->out, s + run, i - run, w->err)) != SHALE_OK) {
            return rc;
        }
        run = i + 1;
        /* c is '"', '\\' or a control character: a short escape where JSON has one. */
        char e1 = c == '"' || c == '\\' ? (char)c : ctrl_short[c];
        char esc[6] = {'\\', e1 ? e1 : 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        size_t elen = e1 ? 2 : 6;
        if ((rc = put(w->out, esc, elen, w->err)) != SHALE_OK) {
            return rc;
        }
    }
    if ((rc = put(w->out, s + run, n - run, w->err)) != SHALE_OK) {
        return rc;
    }
    return put_byte(w->out, '"', w->err);
}

static shale_code write_json(jwriter *w, dval v)
{
    shale_code rc;
    char num[40];
    switch (v.p[0]) {
    case DV_NULL:
        return put(w->out, "null", 4, w->err);
    case DV_FALSE:
        return put(w->out, "false", 5, w->err);
    case DV_TRUE:
        return put(w->out, "true", 4, w->err);
    case DV_INT: {
        /* By hand, not "%lld": printf costs more than the rest of a small document. */
        int64_t i = dval_int(v);
        uint64_t u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
        char *e = num + sizeof num, *d = e;
        do {
            *--d = (char)('0' + u % 10);
            u /= 10;
        } while (u != 0);
        if (i < 0) {
            *--d = '-';
        }
        return put(w->out, d, (size_t)(e - d), w->err);
    }
    case DV_DOUBLE: {
        /* JSON has no NaN or infinity, and dval never stores one (dval_put_double refuses it):
         * one here is damage that passed the frame check, not a value to print. */
        double d = get_double(v.p + 1);
        if (!isfinite(d)) {
            return err_set(w->err, SHALE_CORRUPTION, 0, "document holds a non-finite number");
        }
        return put(w->out, num, format_double(w, d, num), w->err);
    }
    case DV_STRING: {
        shale_slice s = dval_str(v);
        return write_string(w, s.data, s.len);
    }
    default:
        break;
    }
    bool object = v.p[0] == DV_OBJECT;
    if ((rc = put_byte(w->out, object ? '{' : '[', w->err)) != SHALE_OK) {
        return rc;
    }
    dval_iter it;
    dval_iter_init(&it, v);
    shale_slice name;
    dval e;
    bool first = true;
    while (dval_iter_next(&it, &name, &e)) {
        if (!first && (rc = put_byte(w->out, ',', w->err)) != SHALE_OK) {
            return rc;
        }
        first = false;
        if (object && ((rc = write_string(w, name.data, name.len)) != SHALE_OK ||
                       (rc = put_byte(w->out, ':', w->err)) != SHALE_OK)) {
            return rc;
        }
        if ((rc = write_json(w, e)) != SHALE_OK) {
            return rc;
        }
    }
    return put_byte(w->out, object ? '}' : ']', w->err);
}

shale_code dval_to_json(dval v, shale_buf *out, shale_error *err)
{
    jwriter w = {out, err, false, (locale_t)0};
    shale_code rc = buf_reserve(out, v.len + 16, err);
    if (rc == SHALE_OK) {
        rc = write_json(&w, v);
    }
    if (w.switched) {
        uselocale(w.saved);
    }
    return rc;
}
