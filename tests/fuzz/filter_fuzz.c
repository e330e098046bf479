/*
 * libFuzzer target for the document filter language (src/doc/dfilter.c). Built and replayed like
 * every target in tests/fuzz (README.md there).
 *
 * The input is a filter's JSON text. dfilter_parse must return SHALE_OK or SHALE_INVALID (with a
 * message); the same text parsed to a value first and given to dfilter_from_dval must agree. A
 * parsed filter is matched against fixed documents (every class of value at the paths the seeds
 * use) and against the input itself when it is an object, and the target traps unless both
 * filters give the same answers and the planner's conditions keep their contract (dfilter.h):
 *   - every document that matches has, at each condition's path (null when missing), a value in
 *     the condition's set: EQ its value, IN one of its values (which are sorted and distinct),
 *     RANGE a value of the range's class within its bounds;
 *   - when dfilter_exact says the filter is one condition, a document matches exactly when its
 *     value is in that set (except a range over nulls, which query.c never answers from an
 *     index alone: a missing field is indexed as null).
 * The input is also cut into go-db pairs ("a=1&b=x": split at '&', then the first '=') for
 * dfilter_from_pairs, whose matches must only be documents where each field is the value's
 * string, a number or a boolean, and must include every document where each field is exactly
 * the value's string.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "doc/dfilter.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const docs_json[] = {
    "{}",
    "{\"a\":1}",
    "{\"a\":1.0,\"b\":\"x\"}",
    "{\"a\":2,\"b\":\"y\",\"c\":[1,2],\"d\":{\"e\":null}}",
    "{\"a\":\"1\",\"b\":true,\"c\":[],\"d\":{\"e\":5}}",
    "{\"a\":null,\"b\":false,\"tags\":[\"x\",\"y\"]}",
    "{\"a\":-3.5,\"n\":{\"m\":{\"k\":3}},\"tags\":[\"y\"]}",
    "{\"a\":[1],\"b\":\"\",\"n\":{\"m\":{\"k\":\"3\"}}}",
    "{\"a\":{\"x\":1},\"age\":30,\"name\":\"ada\",\"kind\":\"a\"}",
    "{\"a\":9007199254740993,\"age\":25.5,\"name\":\"Bob\",\"kind\":\"b\",\"score\":null}",
    "{\"a\":true,\"age\":\"30\",\"c\":[1,2,3],\"d\":[{\"e\":1}]}",
    "{\"a\":false,\"age\":1e300,\"b\":\"\\u0000z\",\"tags\":[]}",
};
#define NDOCS (sizeof docs_json / sizeof docs_json[0])

static shale_buf docs[NDOCS];
static shale_buf null_value;

static void init_docs(void)
{
    static bool done;
    if (done) {
        return;
    }
    for (size_t i = 0; i < NDOCS; i++) {
        FZ_CHECK(dval_from_json(docs_json[i], strlen(docs_json[i]), true, &docs[i], NULL) ==
                 SHALE_OK);
    }
    FZ_CHECK(dval_put_null(&null_value, NULL) == SHALE_OK);
    done = true;
}

/* The value at the condition's path, as an index sees it: null when missing. */
static dval value_at(dval doc, shale_slice path)
{
    dval v;
    if (dval_path(doc, path, &v)) {
        return v;
    }
    return (dval){null_value.data, null_value.len};
}

static bool in_cond(const dfilter_cond *c, dval v)
{
    switch (c->kind) {
    case DFC_EQ:
        return dval_cmp(v, c->values[0]) == 0;
    case DFC_IN:
        for (size_t i = 0; i < c->nvalues; i++) {
            if (dval_cmp(v, c->values[i]) == 0) {
                return true;
            }
        }
        return false;
    case DFC_RANGE:
    default:
        if (dval_class_of(v) != c->range_class) {
            return false;
        }
        if (c->has_lo) {
            int k = dval_cmp(v, c->lo);
            if (k < 0 || (k == 0 && !c->lo_inclusive)) {
                return false;
            }
        }
        if (c->has_hi) {
            int k = dval_cmp(v, c->hi);
            if (k > 0 || (k == 0 && !c->hi_inclusive)) {
                return false;
            }
        }
        return true;
    }
}

static void check_cond(const dfilter_cond *c)
{
    FZ_CHECK(c->path.len > 0);
    FZ_CHECK(c->kind == DFC_EQ || c->kind == DFC_IN || c->kind == DFC_RANGE);
    if (c->kind == DFC_EQ) {
        FZ_CHECK(c->nvalues == 1);
    }
    if (c->kind == DFC_IN) {
        for (size_t i = 1; i < c->nvalues; i++) {
            FZ_CHECK(dval_cmp(c->values[i - 1], c->values[i]) < 0);
        }
    }
    if (c->kind == DFC_RANGE) {
        FZ_CHECK(!c->has_lo || dval_class_of(c->lo) == c->range_class);
        FZ_CHECK(!c->has_hi || dval_class_of(c->hi) == c->range_class);
    }
}

static void check_filter(const dfilter *f, const dfilter *f2, dval self)
{
    dfilter_cond conds[8], exact;
    size_t nc = dfilter_index_conds(f, conds, 8);
    size_t shown = nc < 8 ? nc : 8;
    for (size_t i = 0; i < shown; i++) {
        check_cond(&conds[i]);
    }
    bool is_exact = dfilter_exact(f, &exact);
    if (is_exact) {
        check_cond(&exact);
    }
    for (size_t d = 0; d <= NDOCS; d++) {
        dval doc = d < NDOCS ? (dval){docs[d].data, docs[d].len} : self;
        if (doc.p == NULL) {
            continue;
        }
        bool m = dfilter_match(f, doc);
        FZ_CHECK(f2 == NULL || dfilter_match(f2, doc) == m);
        for (size_t i = 0; m && i < shown; i++) {
            FZ_CHECK(in_cond(&conds[i], value_at(doc, conds[i].path)));
        }
        if (is_exact && !(exact.kind == DFC_RANGE && exact.range_class == DVC_NULL)) {
            FZ_CHECK(m == in_cond(&exact, value_at(doc, exact.path)));
        }
    }
}

/* go-db pairs: "f=v&f=v...". */
#define MAX_PAIRS 8

static void check_pairs(const uint8_t *data, size_t size)
{
    shale_slice names[MAX_PAIRS], values[MAX_PAIRS];
    size_t n = 0;
    const char *p = (const char *)data, *end = p + size;
    while (p < end && n < MAX_PAIRS) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        if (eq == NULL) {
            return; /* not pairs */
        }
        names[n] = (shale_slice){p, (size_t)(eq - p)};
        values[n] = (shale_slice){eq + 1, (size_t)(e - eq - 1)};
        n++;
        p = amp ? amp + 1 : end;
    }
    dfilter *f = NULL;
    shale_error err = {0};
    shale_code rc = dfilter_from_pairs(names, values, n, &f, &err);
    FZ_CHECK(rc == SHALE_OK || (rc == SHALE_INVALID && err.msg[0] != '\0' && f == NULL));
    if (rc != SHALE_OK) {
        return;
    }
    for (size_t d = 0; d < NDOCS; d++) {
        dval doc = {docs[d].data, docs[d].len};
        bool m = dfilter_match(f, doc);
        bool all_strings = true;
        for (size_t i = 0; i < n; i++) {
            dval v;
            bool has = dval_path(doc, names[i], &v);
            bool str_eq = has && dval_tag_of(v) == DV_STRING && slice_eq(dval_str(v), values[i]);
            all_strings = all_strings && str_eq;
            if (m) {
                enum dval_class c = has ? dval_class_of(v) : DVC_NULL;
                FZ_CHECK(has && (str_eq || c == DVC_NUMBER || c == DVC_BOOL));
            }
        }
        FZ_CHECK(!all_strings || m);
    }
    dfilter_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_docs();
    char *text = malloc(size > 0 ? size : 1);
    FZ_CHECK(text != NULL);
    if (size > 0) {
        memcpy(text, data, size);
    }
    dfilter *f = NULL, *f2 = NULL;
    shale_error err = {0};
    shale_code rc = dfilter_parse(text, size, &f, &err);
    FZ_CHECK(rc == SHALE_OK || (rc == SHALE_INVALID && err.msg[0] != '\0'));
    FZ_CHECK((rc == SHALE_OK) == (f != NULL));

    /* The same filter through a parsed value. */
    shale_buf v = {0};
    shale_code vrc = dval_from_json(text, size, false, &v, NULL);
    if (vrc == SHALE_OK) {
        shale_code rc2 = dfilter_from_dval((dval){v.data, v.len}, &f2, &err);
        FZ_CHECK(rc2 == rc);
    } else {
        FZ_CHECK(rc != SHALE_OK);
    }
    if (f != NULL) {
        dval self = {NULL, 0};
        if (((const uint8_t *)v.data)[0] == DV_OBJECT) {
            self = (dval){v.data, v.len};
        }
        check_filter(f, f2, self);
    }
    dfilter_free(f);
    dfilter_free(f2);
    buf_free(&v);
    if (size < 512) {
        check_pairs(data, size);
    }
    free(text);
    return 0;
}
