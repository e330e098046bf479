/* dfilter: the data-driven cases of tests/data/query_cases.json, every parse rejection with its
 * message, the index conditions offered (and not), the go-db pairs model, and randomized
 * identities ($not, $ne, $nin, $in, $and, $or, ranges against dval_cmp) over random documents. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/slice.h"
#include "doc/dfilter.h"
#include "doc/dval.h"
#include "env/env.h"
#include "testutil.h"

/* ---- helpers ---- */

/* Encodes JSON text (any top-level value) into b and returns the value. */
static dval enc(shale_buf *b, const char *json)
{
    shale_error err = {0};
    shale_code rc = dval_from_json(json, strlen(json), false, b, &err);
    cr_assert_eq(rc, SHALE_OK, "dval_from_json(%s): %s", json, err.msg);
    return dval_at(b->data);
}

static dfilter *parse_ok(const char *json)
{
    shale_error err = {0};
    dfilter *f = NULL;
    shale_code rc = dfilter_parse(json, strlen(json), &f, &err);
    cr_assert_eq(rc, SHALE_OK, "dfilter_parse(%s): %s", json, err.msg);
    cr_assert_not_null(f);
    return f;
}

/* Whether the filter text matches the document text. */
static bool m(const char *filter, const char *doc)
{
    shale_buf b = {0};
    dfilter *f = parse_ok(filter);
    bool r = dfilter_match(f, enc(&b, doc));
    dfilter_free(f);
    buf_free(&b);
    return r;
}

static const char *to_json(dval v, shale_buf *b)
{
    b->len = 0;
    cr_assert_eq(dval_to_json(v, b, NULL), SHALE_OK);
    cr_assert_eq(buf_append(b, "", 1, NULL), SHALE_OK);
    return b->data;
}

static bool slice_is(shale_slice s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.data, lit, s.len) == 0;
}

/* Whether the document has, at the condition's path, a value in the condition's set (the
 * planner's view: what an index read for this condition would return). A null among DFC_EQ or
 * DFC_IN values also admits documents missing the path. */
static bool cond_admits(const dfilter_cond *c, dval doc)
{
    dval x;
    bool found = dval_path(doc, c->path, &x);
    switch (c->kind) {
    case DFC_EQ:
    case DFC_IN:
        for (size_t i = 0; i < c->nvalues; i++) {
            if (found ? dval_eq(x, c->values[i]) : dval_tag_of(c->values[i]) == DV_NULL) {
                return true;
            }
        }
        return false;
    case DFC_RANGE:
        if (!found || dval_class_of(x) != c->range_class) {
            return false;
        }
        if (c->has_lo) {
            int d = dval_cmp(x, c->lo);
            if (d < 0 || (d == 0 && !c->lo_inclusive)) {
                return false;
            }
        }
        if (c->has_hi) {
            int d = dval_cmp(x, c->hi);
            if (d > 0 || (d == 0 && !c->hi_inclusive)) {
                return false;
            }
        }
        return true;
    }
    return false;
}

#define MAX_CONDS 16

/* Checks that every condition offered admits the document (call only for matching ones). */
static bool conds_admit(const dfilter *f, dval doc, size_t *bad)
{
    dfilter_cond cs[MAX_CONDS];
    size_t n = dfilter_index_conds(f, cs, MAX_CONDS);
    cr_assert_leq(n, (size_t)MAX_CONDS);
    for (size_t i = 0; i < n; i++) {
        if (!cond_admits(&cs[i], doc)) {
            *bad = i;
            return false;
        }
    }
    return true;
}

/* A bounded string builder for messages and generated JSON. */
typedef struct sb {
    char *s;
    size_t len, cap;
} sb;

static void sbf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sbf(sb *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
        va_end(ap);
        cr_assert_geq(n, 0);
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap - b->len <= (size_t)n) {
            cap *= 2;
        }
        b->s = realloc(b->s, cap);
        cr_assert_not_null(b->s);
        b->cap = cap;
    }
}

static void sb_reset(sb *b)
{
    b->len = 0;
    if (b->s) {
        b->s[0] = '\0';
    }
}

/* ---- 1. the data-driven cases ---- */

static char *data_file(const char *name)
{
    const char *me = __FILE__;
    const char *at = strstr(me, "src/doc/dfilter_test.c");
    int root = at ? (int)(at - me) : 0;
    char *path = NULL;
    cr_assert_geq(asprintf(&path, "%.*stests/data/%s", root, me, name), 0);
    return path;
}

static dval member(dval obj, const char *name)
{
    dval v;
    cr_assert(dval_field(obj, slice_cstr(name), &v), "no member '%s'", name);
    return v;
}

Test(dfilter, query_cases_file)
{
    char *path = data_file("query_cases.json");
    void *text = NULL;
    size_t text_len = 0;
    shale_error err = {0};
    shale_buf file = {0}, js = {0}, jd = {0};
    sb fails = {0}, got = {0};
    size_t ncases = 0, nfail = 0, ndocs = 0, nmatched = 0;
    dval_iter it;
    shale_slice name;
    dval v;

    cr_assert_eq(env_read_file(env_posix(), path, 1u << 20, &text, &text_len, &err), SHALE_OK,
                 "%s: %s", path, err.msg);
    cr_assert_eq(dval_from_json(text, text_len, true, &file, &err), SHALE_OK, "%s: %s", path,
                 err.msg);
    dval root = dval_at(file.data);
    dval docs = member(root, "documents"), cases = member(root, "cases");
    cr_assert_eq(dval_tag_of(docs), DV_ARRAY);
    cr_assert_eq(dval_tag_of(cases), DV_ARRAY);
    ndocs = dval_count(docs);
    cr_assert(ndocs >= 30 && ndocs <= 60, "%zu documents", ndocs);

    /* The documents: objects with unique string _ids in increasing order. */
    dval *doc = calloc(ndocs, sizeof *doc);
    shale_slice *id = calloc(ndocs, sizeof *id);
    cr_assert(doc && id);
    dval_iter_init(&it, docs);
    for (size_t i = 0; dval_iter_next(&it, &name, &v); i++) {
        cr_assert_eq(dval_tag_of(v), DV_OBJECT, "document %zu is not an object", i);
        dval idv = member(v, "_id");
        cr_assert_eq(dval_tag_of(idv), DV_STRING, "document %zu: _id is not a string", i);
        doc[i] = v;
        id[i] = dval_str(idv);
        cr_assert(i == 0 || slice_cmp(id[i - 1], id[i]) < 0, "document %zu: _id out of order", i);
    }

    dval_iter_init(&it, cases);
    while (dval_iter_next(&it, &name, &v)) {
        dval cname = member(v, "name"), filter = member(v, "filter"), expect = member(v, "expect");
        cr_assert_eq(dval_tag_of(cname), DV_STRING);
        cr_assert_eq(dval_tag_of(expect), DV_ARRAY);
        shale_slice cn = dval_str(cname);
        ncases++;

        /* Both ways in: the encoded member, and its JSON text through dfilter_parse. */
        dfilter *f = NULL, *g = NULL;
        shale_code rc = dfilter_from_dval(filter, &f, &err);
        if (rc != SHALE_OK) {
            sbf(&fails, "\n  %.*s: from_dval: %s", (int)cn.len, (const char *)cn.data, err.msg);
            nfail++;
            continue;
        }
        const char *ftext = to_json(filter, &js);
        rc = dfilter_parse(ftext, strlen(ftext), &g, &err);
        cr_assert_eq(rc, SHALE_OK, "%.*s: parse %s: %s", (int)cn.len, (const char *)cn.data, ftext,
                     err.msg);

        /* The expected ids must name documents, in order. */
        dval_iter ei;
        shale_slice en;
        dval ev;
        size_t nexp = 0;
        shale_slice prev = {NULL, 0};
        dval_iter_init(&ei, expect);
        while (dval_iter_next(&ei, &en, &ev)) {
            cr_assert_eq(dval_tag_of(ev), DV_STRING);
            shale_slice s = dval_str(ev);
            cr_assert(nexp == 0 || slice_cmp(prev, s) < 0, "%.*s: expect out of order", (int)cn.len,
                      (const char *)cn.data);
            prev = s;
            nexp++;
        }

        /* Walk documents and the expected list together. */
        bool ok = true;
        sb_reset(&got);
        dval_iter_init(&ei, expect);
        bool have = dval_iter_next(&ei, &en, &ev);
        for (size_t i = 0; i < ndocs; i++) {
            bool want = have && slice_eq(dval_str(ev), id[i]);
            if (want) {
                have = dval_iter_next(&ei, &en, &ev);
            }
            bool mf = dfilter_match(f, doc[i]), mg = dfilter_match(g, doc[i]);
            cr_assert_eq(mf, mg, "%.*s: from_dval and parse disagree", (int)cn.len,
                         (const char *)cn.data);
            if (mf) {
                sbf(&got, "%s%.*s", got.len ? "," : "", (int)id[i].len, (const char *)id[i].data);
                nmatched++;
                size_t bad = 0;
                if (!conds_admit(f, doc[i], &bad)) {
                    sbf(&fails, "\n  %.*s: index condition %zu does not admit %.*s", (int)cn.len,
                        (const char *)cn.data, bad, (int)id[i].len, (const char *)id[i].data);
                    nfail++;
                }
            }
            ok = ok && mf == want;
        }
        cr_assert(!have, "%.*s: expect names an unknown id", (int)cn.len, (const char *)cn.data);
        if (!ok) {
            sbf(&fails, "\n  %.*s: %s matched [%s], expected %s", (int)cn.len,
                (const char *)cn.data, ftext, got.s ? got.s : "", to_json(expect, &jd));
            nfail++;
        }
        dfilter_free(f);
        dfilter_free(g);
    }
    cr_assert_geq(ncases, 80u, "only %zu cases", ncases);
    cr_assert_eq(nfail, 0u, "%zu of %zu cases failed:%s", nfail, ncases, fails.s);
    cr_assert_gt(nmatched, 0u);

    free(doc);
    free(id);
    free(fails.s);
    free(got.s);
    buf_free(&js);
    buf_free(&jd);
    buf_free(&file);
    free(text);
    free(path);
}

/* ---- 2. rejections ---- */

static void reject(const char *json, const char *want_msg)
{
    shale_error err;
    dfilter *f = (dfilter *)&err; /* must be reset to NULL */
    memset(&err, 0x5a, sizeof err);
    shale_code rc = dfilter_parse(json, strlen(json), &f, &err);
    cr_assert_eq(rc, SHALE_INVALID, "%s: got code %d", json, (int)rc);
    cr_assert_eq(err.code, SHALE_INVALID, "%s", json);
    cr_assert_null(f, "%s: *out not NULL", json);
    cr_assert(memchr(err.msg, '\0', sizeof err.msg) != NULL, "%s: message not terminated", json);
    cr_assert_gt(strlen(err.msg), 0u, "%s: empty message", json);
    cr_assert(strstr(err.msg, want_msg) != NULL, "%s: message '%s' lacks '%s'", json, err.msg,
              want_msg);
}

Test(dfilter, rejects_bad_operators_with_their_names)
{
    reject("{\"n\": {\"$foo\": 1}}", "unknown operator '$foo' at 'n'");
    reject("{\"a.b\": {\"$eq\": 1, \"$regex\": \"x\"}}", "unknown operator '$regex' at 'a.b'");
    reject("{\"$nor\": [{}]}", "unknown operator '$nor'");
    reject("{\"$\": 1}", "unknown operator '$'");
    reject("{\"n\": {\"$and\": [{}]}}", "'$and' under path 'n'");
    reject("{\"n\": {\"$or\": [{}]}}", "'$or' under path 'n'");
    reject("{\"$and\": [{\"n\": {\"$bad\": 1}}]}", "unknown operator '$bad' at 'n'");
    reject("{\"n\": {\"$not\": {\"$nope\": 1}}}", "unknown operator '$nope' at 'n'");
}

Test(dfilter, rejects_operators_where_a_path_belongs)
{
    reject("{\"$gt\": 1}", "operator '$gt' at the top level, where a path belongs");
    reject("{\"$eq\": 1}", "operator '$eq' at the top level");
    reject("{\"$in\": [1]}", "operator '$in' at the top level");
    reject("{\"$exists\": true}", "operator '$exists' at the top level");
    reject("{\"$not\": {\"n\": 1}}", "operator '$not' at the top level");
    reject("{\"$or\": [{\"$lt\": 3}]}", "operator '$lt' at the top level");
}

Test(dfilter, rejects_operands_of_the_wrong_type)
{
    reject("{\"n\": {\"$in\": 1}}", "'$in' at 'n' needs an array");
    reject("{\"n\": {\"$in\": {\"a\": 1}}}", "'$in' at 'n' needs an array");
    reject("{\"n\": {\"$nin\": \"abc\"}}", "'$nin' at 'n' needs an array");
    reject("{\"n\": {\"$nin\": null}}", "'$nin' at 'n' needs an array");
    reject("{\"n\": {\"$exists\": 1}}", "'$exists' at 'n' needs true or false");
    reject("{\"n\": {\"$exists\": null}}", "'$exists' at 'n' needs true or false");
    reject("{\"n\": {\"$exists\": \"true\"}}", "'$exists' at 'n' needs true or false");
    reject("{\"n\": {\"$not\": 5}}", "'$not' at 'n' needs a non-empty object of operators");
    reject("{\"n\": {\"$not\": {}}}", "'$not' at 'n' needs a non-empty object of operators");
    reject("{\"n\": {\"$not\": {\"a\": 1}}}",
           "'$not' at 'n' needs a non-empty object of operators");
    reject("{\"n\": {\"$not\": [{\"$eq\": 1}]}}", "'$not' at 'n' needs");
    reject("{\"n\": {\"$not\": {\"$in\": 3}}}", "'$in' at 'n' needs an array");
    reject("{\"n\": {\"$gt\": 1, \"a\": 2}}", "the object at 'n' mixes operators and field names");
}

Test(dfilter, rejects_bad_and_or)
{
    reject("{\"$and\": []}", "'$and' needs a non-empty array of objects");
    reject("{\"$or\": []}", "'$or' needs a non-empty array of objects");
    reject("{\"$or\": {}}", "'$or' needs a non-empty array of objects");
    reject("{\"$and\": {\"n\": 1}}", "'$and' needs a non-empty array of objects");
    reject("{\"$and\": null}", "'$and' needs a non-empty array of objects");
    reject("{\"$and\": [1]}", "element 0 is not an object");
    reject("{\"$or\": [{}, \"x\"]}", "'$or' needs a non-empty array of objects (element 1");
    reject("{\"$or\": [{}, [{}]]}", "element 1 is not an object");
    reject("{\"$and\": [{\"$or\": []}]}", "'$or' needs a non-empty array");
}

Test(dfilter, rejects_bad_paths)
{
    reject("{\"\": 1}", "empty path");
    reject("{\"$or\": [{\"\": {\"$gt\": 1}}]}", "empty path");
    reject("{\"a..b\": 1}", "path 'a..b' has an empty component");
    reject("{\".a\": 1}", "path '.a' has an empty component");
    reject("{\"a.\": 1}", "path 'a.' has an empty component");
    reject("{\".\": 1}", "path '.' has an empty component");
}

Test(dfilter, rejects_bad_text_and_non_objects)
{
    /* dval_from_json's messages (dval.h: what, and where as line and column) */
    reject("[{\"n\": 1}]", "not an object");
    reject("5", "not an object");
    reject("null", "not an object");
    reject("{\"n\": ", "line 1");
    reject("{\"n\": 1} x", "line 1");
    reject("{\"n\": 1, \"n\": 2}", "line 1");
    reject("{\"n\": \"\xff\"}", "line 1");
    reject("", "JSON");

    /* An encoded non-object through dfilter_from_dval. */
    const char *texts[] = {"[1]", "5", "\"x\"", "null", "true"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        shale_buf b = {0};
        shale_error err = {0};
        dfilter *f = (dfilter *)&b;
        cr_assert_eq(dfilter_from_dval(enc(&b, texts[i]), &f, &err), SHALE_INVALID);
        cr_assert_null(f);
        cr_assert_str_eq(err.msg, "filter: not an object");
        buf_free(&b);
    }
}

/* Nesting past DVAL_MAX_DEPTH through $and and through $not. */
Test(dfilter, rejects_nesting_too_deep)
{
    sb s = {0};
    for (int i = 0; i < DVAL_MAX_DEPTH; i++) {
        sbf(&s, "{\"$and\": [");
    }
    sbf(&s, "{\"n\": 1}");
    for (int i = 0; i < DVAL_MAX_DEPTH; i++) {
        sbf(&s, "]}");
    }
    reject(s.s, "deeper than 32");

    sb_reset(&s);
    sbf(&s, "{\"n\": ");
    for (int i = 0; i < DVAL_MAX_DEPTH; i++) {
        sbf(&s, "{\"$not\": ");
    }
    sbf(&s, "{\"$eq\": 1}");
    for (int i = 0; i < DVAL_MAX_DEPTH + 1; i++) {
        sbf(&s, "}");
    }
    reject(s.s, "deeper than 32");

    /* Just inside the limit works and evaluates: 29 $not around $eq at depth 31. */
    sb_reset(&s);
    sbf(&s, "{\"n\": ");
    for (int i = 0; i < DVAL_MAX_DEPTH - 3; i++) {
        sbf(&s, "{\"$not\": ");
    }
    sbf(&s, "{\"$eq\": 1}");
    for (int i = 0; i < DVAL_MAX_DEPTH - 3 + 1; i++) {
        sbf(&s, "}");
    }
    /* an odd number of $not: n != 1 */
    cr_assert(m(s.s, "{\"n\": 2}"));
    cr_assert(!m(s.s, "{\"n\": 1}"));
    free(s.s);
}

Test(dfilter, accepts_literal_objects_and_edge_operands)
{
    cr_assert(m("{\"n\": {}}", "{\"n\": {}}"));
    cr_assert(!m("{\"n\": {}}", "{\"n\": {\"a\": 1}}"));
    cr_assert(!m("{\"n\": {}}", "{}"));
    cr_assert(m("{\"n\": {\"a\": {\"$gt\": 1}}}", "{\"n\": {\"a\": {\"$gt\": 1}}}"));
    cr_assert(!m("{\"n\": {\"a\": {\"$gt\": 1}}}", "{\"n\": {\"a\": 2}}"));
    cr_assert(m("{\"n\": {\"$in\": []}, \"$or\": [{}]}", "{}") == false);
    cr_assert(m("{\"$and\": [{}, {}], \"$or\": [{}]}", "{}"));
    cr_assert(m("{\"n\": {\"$gt\": 1, \"$not\": {\"$gt\": 5}, \"$ne\": 3}}", "{\"n\": 4}"));
    cr_assert(!m("{\"n\": {\"$gt\": 1, \"$not\": {\"$gt\": 5}, \"$ne\": 3}}", "{\"n\": 3}"));
    cr_assert(!m("{\"n\": {\"$gt\": 1, \"$not\": {\"$gt\": 5}, \"$ne\": 3}}", "{\"n\": 6}"));
    /* paths with unusual but non-empty components */
    cr_assert(m("{\"a b.$c\": 1}", "{\"a b\": {\"$c\": 1}}"));
    cr_assert(m("{\"ü.日\": true}", "{\"ü\": {\"日\": true}}"));
}

/* The filter copies its bytes: the source buffer may go away right after parsing. */
Test(dfilter, filter_owns_its_bytes)
{
    shale_buf src = {0}, doc = {0};
    dfilter *f = NULL;
    cr_assert_eq(
        dfilter_from_dval(enc(&src, "{\"s\": {\"$in\": [\"x\", \"y\"]}, \"t\": \"z\"}"), &f, NULL),
        SHALE_OK);
    memset(src.data, 0xee, src.len);
    buf_free(&src);
    cr_assert(dfilter_match(f, enc(&doc, "{\"s\": \"y\", \"t\": \"z\"}")));
    cr_assert(!dfilter_match(f, enc(&doc, "{\"s\": \"y\", \"t\": \"q\"}")));
    dfilter_cond c[2];
    cr_assert_eq(dfilter_index_conds(f, c, 2), 2u);
    cr_assert(slice_is(c[0].path, "s"));
    cr_assert_eq(c[0].kind, DFC_IN);
    cr_assert_eq(c[0].nvalues, 2u);
    cr_assert(slice_is(dval_str(c[0].values[1]), "y"));
    cr_assert(slice_is(c[1].path, "t"));
    cr_assert(slice_is(dval_str(c[1].values[0]), "z"));
    dfilter_free(f);
    dfilter_free(NULL);
    buf_free(&doc);
}

/* ---- 3. index conditions ---- */

typedef struct conds {
    dfilter *f;
    dfilter_cond c[MAX_CONDS];
    size_t n;
} conds;

static conds conds_of(const char *filter)
{
    conds r;
    memset(&r, 0, sizeof r);
    r.f = parse_ok(filter);
    r.n = dfilter_index_conds(r.f, r.c, MAX_CONDS);
    cr_assert_leq(r.n, (size_t)MAX_CONDS);
    return r;
}

/* Whether v encodes the same value as the JSON text. */
static bool is_value(dval v, const char *json)
{
    shale_buf b = {0};
    dval w = enc(&b, json);
    bool r = v.len == w.len && memcmp(v.p, w.p, v.len) == 0;
    buf_free(&b);
    return r;
}

Test(dfilter, conds_equality_and_in)
{
    conds r = conds_of("{}");
    cr_assert_eq(r.n, 0u);
    dfilter_free(r.f);

    r = conds_of("{\"a\": 1}");
    cr_assert_eq(r.n, 1u);
    cr_assert(slice_is(r.c[0].path, "a"));
    cr_assert_eq(r.c[0].kind, DFC_EQ);
    cr_assert_eq(r.c[0].nvalues, 1u);
    cr_assert(is_value(r.c[0].values[0], "1"));
    dfilter_free(r.f);

    r = conds_of("{\"a.b\": {\"$eq\": \"x\"}}");
    cr_assert_eq(r.n, 1u);
    cr_assert(slice_is(r.c[0].path, "a.b"));
    cr_assert_eq(r.c[0].kind, DFC_EQ);
    cr_assert(is_value(r.c[0].values[0], "\"x\""));
    dfilter_free(r.f);

    /* arrays and objects as operands are not offered: index keys order them by class only, and
     * [1] and [1.0] are equal but keyed differently */
    r = conds_of("{\"a\": [1, 2], \"b\": {\"x\": 1}, \"c\": {\"$in\": [1, [1]]}, "
                 "\"d\": {\"$gt\": []}, \"e\": {\"$lte\": {}}}");
    cr_assert_eq(r.n, 0u);
    dfilter_free(r.f);

    /* ... which leaves the scalar conditions on the same path */
    r = conds_of("{\"a\": {\"$eq\": [1], \"$gt\": 0, \"$lt\": [5]}}");
    cr_assert_eq(r.n, 1u);
    cr_assert_eq(r.c[0].kind, DFC_RANGE);
    cr_assert_eq(r.c[0].range_class, DVC_NUMBER);
    cr_assert(r.c[0].has_lo && !r.c[0].has_hi);
    dfilter_free(r.f);

    /* null equality is offered (the planner adds documents missing the path) */
    r = conds_of("{\"a\": null}");
    cr_assert_eq(r.n, 1u);
    cr_assert_eq(r.c[0].kind, DFC_EQ);
    cr_assert(is_value(r.c[0].values[0], "null"));
    dfilter_free(r.f);

    /* $in: sorted by dval_cmp, duplicates (1 and 1.0) removed */
    r = conds_of("{\"a\": {\"$in\": [\"x\", 3, 1, 2, 1.0, true]}}");
    cr_assert_eq(r.n, 1u);
    cr_assert_eq(r.c[0].kind, DFC_IN);
    cr_assert_eq(r.c[0].nvalues, 5u);
    cr_assert_eq(dval_tag_of(r.c[0].values[0]), DV_TRUE);
    cr_assert_eq(dval_double(r.c[0].values[1]), 1.0);
    cr_assert_eq(dval_double(r.c[0].values[2]), 2.0);
    cr_assert_eq(dval_double(r.c[0].values[3]), 3.0);
    cr_assert(is_value(r.c[0].values[4], "\"x\""));
    dfilter_free(r.f);

    /* an empty $in is the empty set */
    r = conds_of("{\"a\": {\"$in\": []}}");
    cr_assert_eq(r.n, 1u);
    cr_assert_eq(r.c[0].kind, DFC_IN);
    cr_assert_eq(r.c[0].nvalues, 0u);
    dfilter_free(r.f);

    /* an $in with null is not offered (the header promises "missing too" only for DFC_EQ) */
    r = conds_of("{\"a\": {\"$in\": [null, 1]}}");
    cr_assert_eq(r.n, 0u);
    dfilter_free(r.f);
}

Test(dfilter, conds_merge_ranges)
{
    conds r = conds_of("{\"a\": {\"$gt\": 1, \"$lte\": 5}}");
    cr_assert_eq(r.n, 1u);
    cr_assert_eq(r.c[0].kind, DFC_RANGE);
    cr_assert_eq(r.c[0].range_class, DVC_NUMBER);
    cr_assert(r.c[0].has_lo && r.c[0].has_hi);
    cr_assert(!r.c[0].lo_inclusive && r.c[0].hi_inclusive);
    cr_assert(is_value(r.c[0].lo, "1"));
    cr_assert(is_value(r.c[0].hi, "5"));
    dfilter_free(r.f);

    r = conds_of("{\"a\": {\"$gte\": \"m\"}}");
    cr_assert_eq(r.n, 1u);
    cr_assert_eq(r.c[0].kind, DFC_RANGE);
    cr_assert_eq(r.c[0].range_class, DVC_STRING);
    cr_assert(r.c[0].has_lo && r.c[0].lo_inclusive && !r.c[0].has_hi);
    dfilter_free(r.f);

    r = conds_of("{\"a\": {\"$lt\": 2.5}}");
    cr_assert_eq(r.c[0].kind, DFC_RANGE);
    cr_assert(!r.c[0].has_lo && r.c[0].has_hi && !r.c[0].hi_inclusive);
    cr_assert(is_value(r.c[0].hi, "2.5"));
    dfilter_free(r.f);

    /* tighter bounds win, across the operator object and nested $and */
    r = conds_of("{\"a\": {\"$gt\": 1, \"$gte\": 3}, \"$and\": [{\"a\": {\"$lt\": 10}}, "
                 "{\"$and\": [{\"a\": {\"$lte\": 8}}]}]}");
    cr_assert_eq(r.n, 1u);
    cr_assert_eq(r.c[0].kind, DFC_RANGE);
    cr_assert(is_value(r.c[0].lo, "3") && r.c[0].lo_inclusive);
    cr_assert(is_value(r.c[0].hi, "8") && r.c[0].hi_inclusive);
    dfilter_free(r.f);

    /* on a tie the exclusive bound wins, whichever comes first; 3 and 3.0 tie */
    r = conds_of("{\"$and\": [{\"a\": {\"$gte\": 3, \"$lte\": 7}}, {\"a\": {\"$gt\": 3.0, "
                 "\"$lt\": 7}}]}");
    cr_assert(!r.c[0].lo_inclusive && !r.c[0].hi_inclusive);
    dfilter_free(r.f);
    r = conds_of("{\"$and\": [{\"a\": {\"$gt\": 3, \"$lt\": 7}}, {\"a\": {\"$gte\": 3, "
                 "\"$lte\": 7}}]}");
    cr_assert(!r.c[0].lo_inclusive && !r.c[0].hi_inclusive);
    dfilter_free(r.f);

    /* operands of two classes: nothing can match, the range is empty (v, v) */
    r = conds_of("{\"a\": {\"$gt\": 2, \"$lt\": \"z\"}}");
    cr_assert_eq(r.n, 1u);
    cr_assert_eq(r.c[0].kind, DFC_RANGE);
    cr_assert(r.c[0].has_lo && r.c[0].has_hi);
    cr_assert(!r.c[0].lo_inclusive && !r.c[0].hi_inclusive);
    cr_assert_eq(dval_cmp(r.c[0].lo, r.c[0].hi), 0);
    cr_assert_eq(dval_class_of(r.c[0].lo), r.c[0].range_class);
    dfilter_free(r.f);

    /* crossed bounds of one class come back as they are (an empty range) */
    r = conds_of("{\"a\": {\"$gt\": 5, \"$lt\": 3}}");
    cr_assert(is_value(r.c[0].lo, "5") && is_value(r.c[0].hi, "3"));
    dfilter_free(r.f);
}

Test(dfilter, conds_prefer_eq_then_smallest_in)
{
    conds r = conds_of("{\"a\": {\"$gt\": 0, \"$eq\": 5, \"$in\": [5, 6]}}");
    cr_assert_eq(r.n, 1u);
    cr_assert_eq(r.c[0].kind, DFC_EQ);
    cr_assert(is_value(r.c[0].values[0], "5"));
    dfilter_free(r.f);

    r = conds_of("{\"$and\": [{\"a\": {\"$in\": [1, 2, 3]}}, {\"a\": {\"$in\": [2, 3]}}, "
                 "{\"a\": {\"$lt\": 9}}]}");
    cr_assert_eq(r.n, 1u);
    cr_assert_eq(r.c[0].kind, DFC_IN);
    cr_assert_eq(r.c[0].nvalues, 2u);
    dfilter_free(r.f);

    /* the first $eq when two disagree (the filter matches nothing; either is sound) */
    r = conds_of("{\"$and\": [{\"a\": 1}, {\"a\": 2}]}");
    cr_assert_eq(r.n, 1u);
    cr_assert(is_value(r.c[0].values[0], "1"));
    dfilter_free(r.f);
}

Test(dfilter, conds_not_offered)
{
    conds r = conds_of("{\"a\": {\"$ne\": 1}, \"b\": {\"$nin\": [1]}, \"c\": {\"$exists\": "
                       "true}, \"d\": {\"$not\": {\"$eq\": 1}}, \"$or\": [{\"e\": 1}, "
                       "{\"e\": 2}]}");
    cr_assert_eq(r.n, 0u);
    dfilter_free(r.f);

    r = conds_of("{\"$or\": [{\"a\": 1}]}");
    cr_assert_eq(r.n, 0u);
    dfilter_free(r.f);

    r = conds_of("{\"$and\": [{\"$or\": [{\"a\": 1}, {\"b\": 2}]}]}");
    cr_assert_eq(r.n, 0u);
    dfilter_free(r.f);

    /* $not of a range is not a range */
    r = conds_of("{\"a\": {\"$not\": {\"$gt\": 5}}, \"b\": {\"$not\": {\"$in\": [1]}}}");
    cr_assert_eq(r.n, 0u);
    dfilter_free(r.f);

    /* a mix: only the top-level AND's usable parts */
    r = conds_of("{\"a\": {\"$ne\": 1, \"$gt\": 0}, \"$or\": [{\"b\": 1}, {\"c\": 2}], "
                 "\"d\": {\"$exists\": true}, \"e\": \"x\"}");
    cr_assert_eq(r.n, 2u);
    cr_assert(slice_is(r.c[0].path, "a"));
    cr_assert_eq(r.c[0].kind, DFC_RANGE);
    cr_assert(slice_is(r.c[1].path, "e"));
    cr_assert_eq(r.c[1].kind, DFC_EQ);
    dfilter_free(r.f);
}

Test(dfilter, conds_several_paths_and_cap)
{
    /* object fields are stored sorted: "$and" < "a" < "b" < "c" */
    conds r = conds_of("{\"c\": 3, \"a\": {\"$lt\": 1}, \"$and\": [{\"b\": {\"$in\": [1]}}, "
                       "{\"c\": {\"$gt\": 0}}], \"b\": 2}");
    cr_assert_eq(r.n, 3u);
    cr_assert(slice_is(r.c[0].path, "b"));
    cr_assert_eq(r.c[0].kind, DFC_EQ); /* the $eq 2 beats the $in */
    cr_assert(slice_is(r.c[1].path, "c"));
    cr_assert_eq(r.c[1].kind, DFC_EQ);
    cr_assert(slice_is(r.c[2].path, "a"));
    cr_assert_eq(r.c[2].kind, DFC_RANGE);

    dfilter_cond one[2];
    memset(one, 0x77, sizeof one);
    cr_assert_eq(dfilter_index_conds(r.f, one, 1), 3u);
    cr_assert(slice_is(one[0].path, "b"));
    uint8_t untouched[sizeof one[1]];
    memset(untouched, 0x77, sizeof untouched);
    cr_assert_eq(memcmp(&one[1], untouched, sizeof untouched), 0);
    cr_assert_eq(dfilter_index_conds(r.f, NULL, 0), 3u);
    dfilter_free(r.f);
}

/* ---- 4. the go-db pairs model ---- */

static dfilter *pairs(size_t n, const char *const *kv)
{
    shale_slice fields[8], values[8];
    dfilter *f = NULL;
    shale_error err = {0};
    cr_assert_leq(n, 8u);
    for (size_t i = 0; i < n; i++) {
        fields[i] = slice_cstr(kv[2 * i]);
        values[i] = slice_cstr(kv[2 * i + 1]);
    }
    cr_assert_eq(dfilter_from_pairs(fields, values, n, &f, &err), SHALE_OK, "%s", err.msg);
    return f;
}

/* Which of the documents (JSON texts) the filter matches, as a string of 0/1. */
static const char *matches(dfilter *f, const char *const *docs, size_t n)
{
    static char out[64];
    shale_buf b = {0};
    cr_assert_lt(n, sizeof out);
    for (size_t i = 0; i < n; i++) {
        out[i] = dfilter_match(f, enc(&b, docs[i])) ? '1' : '0';
    }
    out[n] = '\0';
    buf_free(&b);
    return out;
}

Test(dfilter, pairs_values)
{
    static const char *const docs[] = {
        "{\"v\": 5}",        "{\"v\": 5.0}",      "{\"v\": \"5\"}",
        "{\"v\": \"05\"}",   "{\"v\": 6}",        "{}",
        "{\"v\": true}",     "{\"v\": \"true\"}", "{\"v\": null}",
        "{\"v\": \"\"}",     "{\"v\": 100}",      "{\"v\": \"1e2\"}",
        "{\"v\": -2.5}",     "{\"v\": 0}",        "{\"v\": \"null\"}",
        "{\"v\": \"True\"}", "{\"v\": [5]}",      "{\"v\": false}",
        "{\"v\": 1}",        "{\"v\": \" 5\"}",   "{\"v\": \"-2.5\"}",
    };
    size_t nd = sizeof docs / sizeof docs[0];
    static const struct {
        const char *value, *want;
    } cases[] = {
        /* one digit per document above, in order */
        {"5", /*          */ "111000000000000000000"},
        {"05", /*         */ "000100000000000000000"},
        {"true", /*       */ "000000110000000000000"},
        {"True", /*       */ "000000000000000100000"},
        {"false", /*      */ "000000000000000001000"},
        {"null", /*       */ "000000000000001000000"},
        {"", /*           */ "000000000100000000000"},
        {"1e2", /*        */ "000000000011000000000"},
        {"-2.5", /*       */ "000000000000100000001"},
        {"-0", /*         */ "000000000000010000000"},
        {"0.0", /*        */ "000000000000010000000"},
        {" 5", /*         */ "000000000000000000010"},
        {"5 ", /*         */ "000000000000000000000"},
        {"+5", /*         */ "000000000000000000000"},
        {"1.", /*         */ "000000000000000000000"},
        {".5", /*         */ "000000000000000000000"},
        {"1e", /*         */ "000000000000000000000"},
        {"[5]", /*        */ "000000000000000000000"},
        {"1E0", /*        */ "000000000000000000100"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *kv[] = {"v", cases[i].value};
        dfilter *f = pairs(1, kv);
        cr_assert_str_eq(matches(f, docs, nd), cases[i].want, "value '%s'", cases[i].value);
        dfilter_free(f);
    }
}

Test(dfilter, pairs_huge_number_stays_a_string)
{
    static const char *const docs[] = {"{\"v\": \"1e999\"}", "{\"v\": 1e300}", "{}"};
    const char *kv[] = {"v", "1e999"};
    dfilter *f = pairs(1, kv);
    cr_assert_str_eq(matches(f, docs, 3), "100");
    dfilter_free(f);
}

Test(dfilter, pairs_and_paths)
{
    static const char *const docs[] = {
        "{\"a\": {\"b\": \"x\"}, \"n\": 1}",       "{\"a\": {\"b\": \"x\"}, \"n\": 2}",
        "{\"a\": {\"b\": \"y\"}, \"n\": 1}",       "{\"a\": \"x\", \"n\": 1}",
        "{\"a\": {\"b\": [\"x\"]}, \"n\": \"1\"}", "{}",
    };
    const char *kv1[] = {"a.b", "x", "n", "1"};
    dfilter *f = pairs(2, kv1);
    cr_assert_str_eq(matches(f, docs, 6), "100000");
    dfilter_free(f);

    /* the same field twice is an AND: nothing equals both */
    const char *kv2[] = {"n", "1", "n", "2"};
    f = pairs(2, kv2);
    cr_assert_str_eq(matches(f, docs, 6), "000000");
    dfilter_free(f);

    /* no pairs: everything */
    f = pairs(0, NULL);
    cr_assert_str_eq(matches(f, docs, 6), "111111");
    cr_assert_eq(dfilter_index_conds(f, NULL, 0), 0u);
    dfilter_free(f);

    /* a NUL inside a value is part of the string */
    shale_slice fl = SLICE_LIT("a.b"), vl = {"x\0y", 3};
    cr_assert_eq(dfilter_from_pairs(&fl, &vl, 1, &f, NULL), SHALE_OK);
    cr_assert_str_eq(matches(f, docs, 6), "000000");
    dfilter_free(f);
}

Test(dfilter, pairs_index_conds)
{
    const char *kv[] = {"age", "5", "name", "bob", "ok", "false"};
    dfilter *f = pairs(3, kv);
    dfilter_cond c[4];
    cr_assert_eq(dfilter_index_conds(f, c, 4), 3u);
    cr_assert(slice_is(c[0].path, "age"));
    cr_assert_eq(c[0].kind, DFC_IN);
    cr_assert_eq(c[0].nvalues, 2u);
    cr_assert(is_value(c[0].values[0], "5"));
    cr_assert(is_value(c[0].values[1], "\"5\""));
    cr_assert(slice_is(c[1].path, "name"));
    cr_assert_eq(c[1].kind, DFC_EQ);
    cr_assert(is_value(c[1].values[0], "\"bob\""));
    cr_assert(slice_is(c[2].path, "ok"));
    cr_assert_eq(c[2].kind, DFC_IN);
    cr_assert(is_value(c[2].values[0], "false"));
    cr_assert(is_value(c[2].values[1], "\"false\""));
    dfilter_free(f);
}

Test(dfilter, pairs_reject_bad_fields)
{
    static const struct {
        const char *field, *msg;
    } bad[] = {
        {"", "filter: empty path"},
        {"a..b", "filter: path 'a..b' has an empty component"},
        {"a.", "filter: path 'a.' has an empty component"},
        {"$where", "filter: field '$where' starts with '$'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shale_slice fields[2] = {SLICE_LIT("ok"), slice_cstr(bad[i].field)};
        shale_slice values[2] = {SLICE_LIT("1"), SLICE_LIT("1")};
        dfilter *f = (dfilter *)&fields;
        shale_error err;
        memset(&err, 0x5a, sizeof err);
        cr_assert_eq(dfilter_from_pairs(fields, values, 2, &f, &err), SHALE_INVALID);
        cr_assert_null(f);
        cr_assert_eq(err.code, SHALE_INVALID);
        cr_assert_str_eq(err.msg, bad[i].msg);
    }
}

/* ---- 5. randomized identities ---- */

static const char *const rnd_paths[] = {"a", "b", "c", "e", "c.x", "c.y", "a.0", "a.1", "zz"};
#define NPATHS (sizeof rnd_paths / sizeof rnd_paths[0])

/* Small pools, so that random operands often meet random document values (1 and 1.0 included). */
static void gen_scalar(tu_rng *r, sb *s)
{
    static const char *const strs[] = {"", "a", "b", "A", "\\u00fc"};
    static const char *const nums[] = {"-1", "0", "1", "2", "-0.5", "0.0", "1.0", "1.5"};
    switch (tu_rng_below(r, 6)) {
    case 0:
        sbf(s, "null");
        break;
    case 1:
        sbf(s, tu_rng_below(r, 2) ? "true" : "false");
        break;
    case 2:
    case 3:
        sbf(s, "%s", nums[tu_rng_below(r, sizeof nums / sizeof nums[0])]);
        break;
    default:
        sbf(s, "\"%s\"", strs[tu_rng_below(r, sizeof strs / sizeof strs[0])]);
        break;
    }
}

static void gen_value(tu_rng *r, sb *s)
{
    uint64_t k = tu_rng_below(r, 10);
    if (k < 7) {
        gen_scalar(r, s);
    } else if (k < 9) {
        uint64_t n = tu_rng_below(r, 3);
        sbf(s, "[");
        for (uint64_t i = 0; i < n; i++) {
            sbf(s, i ? ", " : "");
            gen_scalar(r, s);
        }
        sbf(s, "]");
    } else {
        sbf(s, "{\"x\": ");
        gen_scalar(r, s);
        if (tu_rng_below(r, 2)) {
            sbf(s, ", \"y\": ");
            gen_scalar(r, s);
        }
        sbf(s, "}");
    }
}

static void gen_doc(tu_rng *r, sb *s)
{
    static const char *const fields[] = {"a", "b", "c", "e"};
    bool first = true;
    sbf(s, "{");
    for (size_t i = 0; i < 4; i++) {
        if (tu_rng_below(r, 10) < 3) {
            continue;
        }
        sbf(s, "%s\"%s\": ", first ? "" : ", ", fields[i]);
        first = false;
        if (fields[i][0] == 'c' && tu_rng_below(r, 2)) {
            sbf(s, "{\"x\": ");
            gen_value(r, s);
            sbf(s, ", \"y\": ");
            gen_value(r, s);
            sbf(s, "}");
        } else if (fields[i][0] == 'a' && tu_rng_below(r, 2)) {
            sbf(s, "[");
            gen_value(r, s);
            sbf(s, ", ");
            gen_value(r, s);
            sbf(s, "]");
        } else {
            gen_value(r, s);
        }
    }
    sbf(s, "}");
}

static const char *const rnd_ops[] = {"$eq",  "$ne", "$gt",  "$gte",    "$lt",
                                      "$lte", "$in", "$nin", "$exists", "$not"};
#define NOPS (sizeof rnd_ops / sizeof rnd_ops[0])

static void gen_opexpr(tu_rng *r, sb *s, int depth);

static void gen_operand(tu_rng *r, sb *s, const char *op, int depth)
{
    if (strcmp(op, "$in") == 0 || strcmp(op, "$nin") == 0) {
        /* now and then past the linear-scan size */
        uint64_t n = tu_rng_below(r, 8) == 0 ? 17 + tu_rng_below(r, 24) : tu_rng_below(r, 4);
        sbf(s, "[");
        for (uint64_t i = 0; i < n; i++) {
            sbf(s, i ? ", " : "");
            gen_value(r, s);
        }
        sbf(s, "]");
    } else if (strcmp(op, "$exists") == 0) {
        sbf(s, tu_rng_below(r, 2) ? "true" : "false");
    } else if (strcmp(op, "$not") == 0) {
        gen_opexpr(r, s, depth + 1);
    } else {
        gen_value(r, s);
    }
}

/* {"$op": operand[, "$op2": operand]} with distinct operators ($not only while shallow). */
static void gen_opexpr(tu_rng *r, sb *s, int depth)
{
    size_t nops = depth < 2 ? NOPS : NOPS - 1;
    size_t a = tu_rng_below(r, nops), b = tu_rng_below(r, nops);
    sbf(s, "{\"%s\": ", rnd_ops[a]);
    gen_operand(r, s, rnd_ops[a], depth);
    if (b != a && tu_rng_below(r, 3) == 0) {
        sbf(s, ", \"%s\": ", rnd_ops[b]);
        gen_operand(r, s, rnd_ops[b], depth);
    }
    sbf(s, "}");
}

static void gen_filter(tu_rng *r, sb *s, int depth)
{
    uint64_t k = tu_rng_below(r, depth < 3 ? 10 : 6);
    if (k == 0 && tu_rng_below(r, 2) == 0) {
        sbf(s, "{}");
    } else if (k < 4) {
        sbf(s, "{\"%s\": ", rnd_paths[tu_rng_below(r, NPATHS)]);
        if (tu_rng_below(r, 3) == 0) {
            gen_value(r, s);
        } else {
            gen_opexpr(r, s, 0);
        }
        sbf(s, "}");
    } else if (k < 6) {
        size_t p = tu_rng_below(r, NPATHS), q = (p + 1 + tu_rng_below(r, NPATHS - 1)) % NPATHS;
        sbf(s, "{\"%s\": ", rnd_paths[p]);
        gen_opexpr(r, s, 0);
        sbf(s, ", \"%s\": ", rnd_paths[q]);
        gen_opexpr(r, s, 0);
        sbf(s, "}");
    } else {
        uint64_t n = 1 + tu_rng_below(r, 2);
        sbf(s, "{\"%s\": [", k < 8 ? "$and" : "$or");
        for (uint64_t i = 0; i < n; i++) {
            sbf(s, i ? ", " : "");
            gen_filter(r, s, depth + 1);
        }
        sbf(s, "]}");
    }
}

#define RND_DOCS 40

typedef struct rnd_docs {
    shale_buf buf[RND_DOCS];
    dval doc[RND_DOCS];
    sb text[RND_DOCS];
} rnd_docs;

static void rnd_docs_make(tu_rng *r, rnd_docs *d)
{
    for (size_t i = 0; i < RND_DOCS; i++) {
        sb_reset(&d->text[i]);
        gen_doc(r, &d->text[i]);
        d->doc[i] = enc(&d->buf[i], d->text[i].s);
    }
}

static void rnd_docs_free(rnd_docs *d)
{
    for (size_t i = 0; i < RND_DOCS; i++) {
        buf_free(&d->buf[i]);
        free(d->text[i].s);
    }
}

/* Match results of a filter text on every document, as a bit mask. */
static uint64_t mask(const char *filter, const rnd_docs *d)
{
    dfilter *f = parse_ok(filter);
    uint64_t bits = 0;
    for (size_t i = 0; i < RND_DOCS; i++) {
        if (dfilter_match(f, d->doc[i])) {
            bits |= 1ull << i;
            size_t bad = 0;
            cr_assert(conds_admit(f, d->doc[i], &bad), "%s: condition %zu does not admit %s",
                      filter, bad, d->text[i].s);
        }
    }
    dfilter_free(f);
    return bits;
}

#define ALL_DOCS ((1ull << RND_DOCS) - 1)

static void expect_mask(uint64_t got, uint64_t want, const char *what, const char *filter,
                        const rnd_docs *d)
{
    if (got == want) {
        return;
    }
    size_t i = 0;
    while (((got ^ want) >> i & 1) == 0) {
        i++;
    }
    cr_assert_fail("%s: %s: document %s: %s", what, filter, d->text[i].s,
                   (got >> i & 1) ? "matches but should not" : "should match but does not");
}

Test(dfilter, random_filters_and_or_identities)
{
    tu_rng r;
    rnd_docs d;
    sb f = {0}, g = {0}, x = {0};
    int mixed = 0, total = 0;
    memset(&d, 0, sizeof d);
    tu_rng_seed(&r, 0xdf117e5);
    for (int round = 0; round < 40; round++) {
        rnd_docs_make(&r, &d);
        for (int i = 0; i < 40; i++) {
            sb_reset(&f);
            sb_reset(&g);
            gen_filter(&r, &f, 0);
            gen_filter(&r, &g, 0);
            uint64_t mf = mask(f.s, &d), mg = mask(g.s, &d);
            mixed += mf != 0 && mf != ALL_DOCS;
            total++;

            sb_reset(&x);
            sbf(&x, "{\"$and\": [%s, %s]}", f.s, g.s);
            expect_mask(mask(x.s, &d), mf & mg, "$and", x.s, &d);
            sb_reset(&x);
            sbf(&x, "{\"$or\": [%s, %s]}", f.s, g.s);
            expect_mask(mask(x.s, &d), mf | mg, "$or", x.s, &d);
            sb_reset(&x);
            sbf(&x, "{\"$or\": [%s]}", f.s);
            expect_mask(mask(x.s, &d), mf, "$or of one", x.s, &d);
            sb_reset(&x);
            sbf(&x, "{\"$and\": [{\"$or\": [%s, %s]}, %s]}", f.s, g.s, f.s);
            expect_mask(mask(x.s, &d), mf, "absorption", x.s, &d);
        }
    }
    /* the generator is worth something only if many filters split the documents (about 38%) */
    cr_assert_gt(mixed * 4, total, "%d of %d random filters split the documents", mixed, total);
    rnd_docs_free(&d);
    free(f.s);
    free(g.s);
    free(x.s);
}

Test(dfilter, random_operator_identities)
{
    tu_rng r;
    rnd_docs d;
    sb e = {0}, v = {0}, x = {0}, y = {0};
    memset(&d, 0, sizeof d);
    tu_rng_seed(&r, 0x5eed0f);
    for (int round = 0; round < 30; round++) {
        rnd_docs_make(&r, &d);
        for (int i = 0; i < 30; i++) {
            const char *p = rnd_paths[tu_rng_below(&r, NPATHS)];
            sb_reset(&e);
            gen_opexpr(&r, &e, 0);
            sb_reset(&v);
            gen_value(&r, &v);

            /* $not E is the complement of E */
            sb_reset(&x);
            sbf(&x, "{\"%s\": %s}", p, e.s);
            uint64_t me = mask(x.s, &d);
            sb_reset(&x);
            sbf(&x, "{\"%s\": {\"$not\": %s}}", p, e.s);
            expect_mask(mask(x.s, &d), ~me & ALL_DOCS, "$not", x.s, &d);

            /* $ne v, $not $eq v and the literal v */
            sb_reset(&x);
            sbf(&x, "{\"%s\": %s}", p, v.s);
            uint64_t meq = mask(x.s, &d);
            sb_reset(&x);
            sbf(&x, "{\"%s\": {\"$eq\": %s}}", p, v.s);
            expect_mask(mask(x.s, &d), meq, "$eq vs literal", x.s, &d);
            sb_reset(&x);
            sbf(&x, "{\"%s\": {\"$ne\": %s}}", p, v.s);
            expect_mask(mask(x.s, &d), ~meq & ALL_DOCS, "$ne", x.s, &d);

            /* $gte == $gt or (exists and $eq); $lte likewise */
            sb_reset(&x);
            sbf(&x, "{\"%s\": {\"$gt\": %s}}", p, v.s);
            uint64_t mgt = mask(x.s, &d);
            sb_reset(&x);
            sbf(&x, "{\"%s\": {\"$lt\": %s}}", p, v.s);
            uint64_t mlt = mask(x.s, &d);
            sb_reset(&x);
            sbf(&x, "{\"%s\": {\"$exists\": true}}", p);
            uint64_t mex = mask(x.s, &d);
            sb_reset(&x);
            sbf(&x, "{\"%s\": {\"$gte\": %s}}", p, v.s);
            expect_mask(mask(x.s, &d), mgt | (mex & meq), "$gte", x.s, &d);
            sb_reset(&x);
            sbf(&x, "{\"%s\": {\"$lte\": %s}}", p, v.s);
            expect_mask(mask(x.s, &d), mlt | (mex & meq), "$lte", x.s, &d);
            cr_assert_eq(mgt & mlt, 0u);
            cr_assert_eq(mgt & meq, 0u);
            sb_reset(&x);
            sbf(&x, "{\"%s\": {\"$exists\": false}}", p);
            expect_mask(mask(x.s, &d), ~mex & ALL_DOCS, "$exists false", x.s, &d);

            /* $in [v...] == $or of $eq; $nin is its complement */
            uint64_t n =
                tu_rng_below(&r, 4) == 0 ? 17 + tu_rng_below(&r, 30) : 1 + tu_rng_below(&r, 5);
            sb_reset(&v);
            sb_reset(&y);
            sbf(&y, "{\"$or\": [");
            for (uint64_t k = 0; k < n; k++) {
                sbf(&v, k ? ", " : "");
                size_t start = v.len;
                gen_value(&r, &v);
                sbf(&y, "%s{\"%s\": {\"$eq\": %.*s}}", k ? ", " : "", p, (int)(v.len - start),
                    v.s + start);
            }
            sbf(&y, "]}");
            uint64_t mor = mask(y.s, &d);
            sb_reset(&x);
            sbf(&x, "{\"%s\": {\"$in\": [%s]}}", p, v.s);
            expect_mask(mask(x.s, &d), mor, "$in", x.s, &d);
            sb_reset(&x);
            sbf(&x, "{\"%s\": {\"$nin\": [%s]}}", p, v.s);
            expect_mask(mask(x.s, &d), ~mor & ALL_DOCS, "$nin", x.s, &d);
        }
    }
    rnd_docs_free(&d);
    free(e.s);
    free(v.s);
    free(x.s);
    free(y.s);
}

/* Leaf operators against dval_path + dval_cmp directly (the header's definitions). */
Test(dfilter, random_leaves_against_definitions)
{
    static const char *const ops[] = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"};
    tu_rng r;
    rnd_docs d;
    sb v = {0}, x = {0};
    shale_buf vb = {0};
    memset(&d, 0, sizeof d);
    tu_rng_seed(&r, 0x1eaf);
    for (int round = 0; round < 30; round++) {
        rnd_docs_make(&r, &d);
        for (int i = 0; i < 40; i++) {
            const char *p = rnd_paths[tu_rng_below(&r, NPATHS)];
            size_t o = tu_rng_below(&r, 6);
            sb_reset(&v);
            gen_value(&r, &v);
            dval opnd = enc(&vb, v.s);
            sb_reset(&x);
            sbf(&x, "{\"%s\": {\"%s\": %s}}", p, ops[o], v.s);
            dfilter *f = parse_ok(x.s);
            for (size_t k = 0; k < RND_DOCS; k++) {
                dval at;
                bool found = dval_path(d.doc[k], slice_cstr(p), &at);
                bool same = found && dval_class_of(at) == dval_class_of(opnd);
                int c = found ? dval_cmp(at, opnd) : 0;
                bool eq = found ? c == 0 : dval_tag_of(opnd) == DV_NULL;
                bool want = o == 0   ? eq
                            : o == 1 ? !eq
                            : o == 2 ? same && c > 0
                            : o == 3 ? same && c >= 0
                            : o == 4 ? same && c < 0
                                     : same && c <= 0;
                cr_assert_eq(dfilter_match(f, d.doc[k]), want, "%s on %s", x.s, d.text[k].s);
            }
            dfilter_free(f);
        }
    }
    rnd_docs_free(&d);
    buf_free(&vb);
    free(v.s);
    free(x.s);
}
