/*
 * libFuzzer target for find cursors (src/doc/query.c: cursor_decode and the paging around it).
 * The decoder is private to query.c, so the target reaches it the way a client does, through
 * shale_doc_find's after/before (the HTTP routes hand the text over unchanged; http_fuzz covers
 * them too). Built and replayed like every target in tests/fuzz (README.md there).
 *
 * Input: two option bytes, then the cursor text. Byte 0: bits 0-2 the sort spec (SORTS below),
 * bit 3 before instead of after, bits 4-5 the limit (1, 2, 3, 7), bits 6-7 the filter. Byte 1:
 * bits 0-1 the offset (0..3), bit 2 a projection. The database (a private temporary directory,
 * fz_people in "people", indexed on "age") is opened once and never written, so every input
 * sees the same documents and the target is deterministic.
 *
 * For each (sort, filter) the full order F is read once (limit 1000, no cursor). A find with a
 * cursor must return SHALE_OK or SHALE_INVALID (with a message), and on SHALE_OK the page must
 * be what query.c's window gives for SOME position of the cursor in F: a cursor names a point
 * k in F (the matches at or before it for `after`, before it for `before`, all compared as
 * position keys), and whatever bytes it decodes to, the page is then
 *   after:  F[k + offset ..][.. limit],  has_next = more after it,
 *           has_prev = k > 0 or (offset > 0 and anything after k);
 *   before: the `limit` matches ending `offset` before k, has_prev = more before them,
 *           has_next = k < |F| or (offset > 0 and anything before k);
 * "total" is |F|, and next_cursor / prev_cursor are present exactly when has_next / has_prev
 * and the page is not empty. Following them must give the page right after (after=next) and
 * right before (before=prev) this one.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const SORTS[8] = {"",      "age",        "-age",     "name,-age", "-score,kind",
                                     "n.m.k", "+kind,-_id", "tags,name"};
static const char *const FILTERS[4] = {"", "{\"age\":{\"$gte\":25,\"$lt\":60}}", "{\"kind\":\"a\"}",
                                       "{\"$or\":[{\"score\":{\"$exists\":true}},{\"tags\":[]}]}"};
static const unsigned LIMITS[4] = {1, 2, 3, 7};

#define MAX_DOCS 64

typedef struct order {
    char *ids[MAX_DOCS]; /* F: the _ids in order */
    size_t n;
    bool done;
} order;

static shale_db *db;
static order orders[8][4];

static void at_exit(void)
{
    for (int s = 0; s < 8; s++) {
        for (int f = 0; f < 4; f++) {
            for (size_t i = 0; i < orders[s][f].n; i++) {
                free(orders[s][f].ids[i]);
            }
        }
    }
    if (db != NULL) {
        (void)shale_close(db, NULL);
        db = NULL;
    }
    fz_tmpdir_cleanup();
}

static void open_db(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/db", fz_tmpdir());
    db = fz_open_db(path);
    fz_seed_docs(db);
    atexit(at_exit);
}

/* One page as find returned it. */
typedef struct page {
    char *ids[MAX_DOCS];
    size_t n;
    bool has_next, has_prev;
    char *next, *prev; /* cursors, or NULL */
    uint64_t total;
} page;

static void page_free(page *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->ids[i]);
    }
    free(p->next);
    free(p->prev);
    memset(p, 0, sizeof *p);
}

static char *dup_str(json_t *v)
{
    if (json_is_null(v)) {
        return NULL;
    }
    FZ_CHECK(json_is_string(v));
    char *s = strdup(json_string_value(v));
    FZ_CHECK(s != NULL);
    return s;
}

static void parse_page(const shale_buf *out, page *p)
{
    json_error_t je;
    json_t *j = json_loadb(out->data, out->len, 0, &je);
    FZ_CHECK(j != NULL && json_is_object(j));
    json_t *docs = json_object_get(j, "documents");
    FZ_CHECK(json_is_array(docs) && json_array_size(docs) <= MAX_DOCS);
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < json_array_size(docs); i++) {
        json_t *id = json_object_get(json_array_get(docs, i), "_id");
        p->ids[p->n++] = dup_str(id);
        FZ_CHECK(p->ids[p->n - 1] != NULL);
    }
    json_t *hn = json_object_get(j, "has_next"), *hp = json_object_get(j, "has_prev");
    json_t *t = json_object_get(j, "total");
    FZ_CHECK(json_is_boolean(hn) && json_is_boolean(hp) && json_is_integer(t));
    p->has_next = json_is_true(hn);
    p->has_prev = json_is_true(hp);
    p->total = (uint64_t)json_integer_value(t);
    p->next = dup_str(json_object_get(j, "next_cursor"));
    p->prev = dup_str(json_object_get(j, "prev_cursor"));
    json_decref(j);
}

typedef struct req {
    int sort, filter;
    unsigned limit;
    uint64_t offset;
    bool fields;
} req;

static shale_code find(const req *r, const char *after, size_t alen, const char *before,
                       size_t blen, unsigned limit, page *p)
{
    shale_doc_query q = {
        .filter = {FILTERS[r->filter], strlen(FILTERS[r->filter])},
        .sort = {SORTS[r->sort], strlen(SORTS[r->sort])},
        .fields = r->fields ? (shale_slice){"name,age", 8} : (shale_slice){NULL, 0},
        .limit = limit,
        .offset = limit == 1000 ? 0 : r->offset,
        .after = {after, alen},
        .before = {before, blen},
    };
    shale_buf out = {0};
    shale_error err = {0};
    shale_code rc = shale_doc_find(db, "people", &q, &out, &err);
    FZ_CHECK(rc == SHALE_OK || (rc == SHALE_INVALID && err.msg[0] != '\0'));
    if (rc == SHALE_OK) {
        parse_page(&out, p);
    }
    buf_free(&out);
    return rc;
}

static const order *full_order(const req *r)
{
    order *o = &orders[r->sort][r->filter];
    if (!o->done) {
        page p;
        FZ_CHECK(find(r, NULL, 0, NULL, 0, 1000, &p) == SHALE_OK);
        FZ_CHECK(!p.has_next && !p.has_prev && p.total == p.n);
        for (size_t i = 0; i < p.n; i++) {
            o->ids[i] = p.ids[i];
            p.ids[i] = NULL;
        }
        o->n = p.n;
        p.n = 0;
        page_free(&p);
        o->done = true;
    }
    return o;
}

/* The page query.c's window gives with the cursor at point k of F. */
static bool page_is(const order *o, const req *r, bool before, size_t k, const page *p,
                    size_t *first_out)
{
    size_t nf = o->n, off = (size_t)r->offset, lim = r->limit;
    size_t first, count;
    bool has_next, has_prev;
    if (!before) {
        size_t rest = nf - k; /* matches after the cursor */
        size_t a = rest < off + lim + 1 ? rest : off + lim + 1;
        size_t f = a < off ? a : off;
        count = a - f < lim ? a - f : lim;
        first = k + f;
        has_next = rest > off + lim;
        has_prev = k > 0 || (off > 0 && a > 0);
    } else {
        size_t a = k < off + lim + 1 ? k : off + lim + 1; /* the window: F[k - a, k) */
        size_t end = a < off ? 0 : a - off;
        size_t f = end < lim ? 0 : end - lim;
        count = end - f;
        first = k - a + f;
        has_prev = k > off + lim;
        has_next = nf - k > 0 || (off > 0 && a > 0);
    }
    if (p->n != count || p->has_next != has_next || p->has_prev != has_prev) {
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        if (strcmp(p->ids[i], o->ids[first + i]) != 0) {
            return false;
        }
    }
    *first_out = first;
    return true;
}

/* Some k in 0..|F| explains the page; returns the page's first index in F (or SIZE_MAX). */
static size_t explain(const order *o, const req *r, bool before, const page *p)
{
    size_t first;
    for (size_t k = 0; k <= o->n; k++) {
        if (page_is(o, r, before, k, p, &first)) {
            return first;
        }
    }
    return SIZE_MAX;
}

static void check_page(const order *o, const req *r, const page *p)
{
    FZ_CHECK(p->total == o->n);
    FZ_CHECK((p->next != NULL) == (p->has_next && p->n > 0));
    FZ_CHECK((p->prev != NULL) == (p->has_prev && p->n > 0));
    (void)r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    if (db == NULL) {
        open_db();
    }
    req r = {.sort = data[0] & 7,
             .filter = data[0] >> 6,
             .limit = LIMITS[(data[0] >> 4) & 3],
             .offset = data[1] & 3,
             .fields = (data[1] & 4) != 0};
    const char *cur = (const char *)data + 2;
    size_t clen = size - 2;
    bool before = (data[0] & 8) != 0 && clen > 0; /* an empty cursor is none */
    char *copy = malloc(clen > 0 ? clen : 1);     /* exact size: no read past the cursor */
    FZ_CHECK(copy != NULL);
    if (clen > 0) {
        memcpy(copy, cur, clen);
    }
    const order *o = full_order(&r);
    page p;
    shale_code rc = find(&r, before ? NULL : copy, before ? 0 : clen, before ? copy : NULL,
                         before ? clen : 0, r.limit, &p);
    if (rc == SHALE_OK) {
        check_page(o, &r, &p);
        size_t first = explain(o, &r, before, &p);
        if (first == SIZE_MAX) {
            fprintf(stderr,
                    "cursor_fuzz: page of %zu documents not explained by any cursor "
                    "position (sort \"%s\", %s, limit %u, offset %u)\n",
                    p.n, SORTS[r.sort], before ? "before" : "after", r.limit, (unsigned)r.offset);
        }
        FZ_CHECK(first != SIZE_MAX);
        /* Follow the page's cursors (offset 0). */
        req r0 = r;
        r0.offset = 0;
        if (p.next != NULL) {
            page q;
            FZ_CHECK(find(&r0, p.next, strlen(p.next), NULL, 0, r.limit, &q) == SHALE_OK);
            size_t k = first + p.n, f2;
            FZ_CHECK(page_is(o, &r0, false, k, &q, &f2));
            check_page(o, &r0, &q);
            page_free(&q);
        }
        if (p.prev != NULL) {
            page q;
            FZ_CHECK(find(&r0, NULL, 0, p.prev, strlen(p.prev), r.limit, &q) == SHALE_OK);
            size_t f2;
            FZ_CHECK(page_is(o, &r0, true, first, &q, &f2));
            check_page(o, &r0, &q);
            page_free(&q);
        }
        page_free(&p);
    }
    free(copy);
    return 0;
}
