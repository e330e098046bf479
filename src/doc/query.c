/*
 * query: shale_doc_find, shale_doc_explain and the streaming cursor (contract in shale.h, key
 * layout in docdb.h).
 *
 * A query runs at one snapshot in three steps:
 *   1. Candidates. The planner takes the index-usable conditions of the filter
 *      (dfilter_index_conds), keeps those on a ready index, estimates each by counting its
 *      entries up to PLAN_CAP and picks the smallest; with none (or only huge ones) it scans the
 *      collection in _id order. Index entries of one value are in _id order; each candidate's
 *      document is read and checked against the whole filter, so an index only narrows.
 *   2. Position. Every match gets a position key: for each sort field the order-preserving key
 *      of its value (bytes inverted when descending: inverting a prefix-free code reverses its
 *      order), then the _id. Positions are total and deterministic.
 *   3. Window. A bounded heap keeps the offset + limit + 1 matches nearest to the cursor (after
 *      it, or before it), and every match is counted for "total"; then the page's documents are
 *      read again from the snapshot. Memory is bounded by the window (at most 101,001 positions),
 *      not by the collection.
 * Cursors: hex of (0x01 | a 32-bit hash of the sort spec | the position key), so a cursor of
 * another sort order is refused rather than misread.
 */
#include <float.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/hash.h"
#include "base/slice.h"
#include "doc/dfilter.h"
#include "doc/docdb.h"

#define QUERY_DEFAULT_LIMIT 50u
#define QUERY_MAX_LIMIT     1000u
#define QUERY_MAX_OFFSET    100000u
#define QUERY_MAX_SORT      8
#define QUERY_MAX_FIELDS    32
/* Index entries counted per candidate condition: reading an index entry and its document costs
 * about as much as a scan step over a few hundred documents, so beyond this a scan wins for
 * any collection this query would make worth scanning. */
#define PLAN_CAP            100000
#define CURSOR_VERSION      0x01

typedef struct sort_field {
    shale_slice path;
    bool desc;
} sort_field;

/* A parsed query. */
typedef struct query {
    dfilter *filter, *pairs; /* either may be NULL */
    sort_field sort[QUERY_MAX_SORT];
    size_t nsort;
    uint32_t sort_hash;
    shale_slice fields[QUERY_MAX_FIELDS + 1];
    size_t nfields; /* 0: whole documents */
    uint32_t limit;
    uint64_t offset;
    shale_buf after, before; /* decoded cursor positions */
    bool has_after, has_before;
} query;

static void query_free(query *q)
{
    dfilter_free(q->filter);
    dfilter_free(q->pairs);
    buf_free(&q->after);
    buf_free(&q->before);
}

static bool matches(const query *q, dval doc)
{
    return (q->filter == NULL || dfilter_match(q->filter, doc)) &&
           (q->pairs == NULL || dfilter_match(q->pairs, doc));
}

/* Splits "a,-b" into up to max parts (whitespace not allowed, empty parts refused). */
static shale_code split_list(shale_slice s, const char *what, shale_slice *parts, size_t max,
                             size_t *n, shale_error *err)
{
    const char *p = s.data, *end = p + s.len;
    *n = 0;
    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *e = c ? c : end;
        if (e == p) {
            return err_set(err, SHALE_INVALID, 0, "%s: empty field name", what);
        }
        if (*n == max) {
            return err_set(err, SHALE_INVALID, 0, "%s: more than %zu fields", what, max);
        }
        parts[(*n)++] = (shale_slice){p, (size_t)(e - p)};
        p = c ? c + 1 : end;
        if (c != NULL && p == end) {
            return err_set(err, SHALE_INVALID, 0, "%s: empty field name", what);
        }
    }
    return SHALE_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

static shale_code cursor_decode(const query *q, shale_slice text, shale_buf *out, shale_error *err)
{
    const char *t = text.data;
    buf_reset(out);
    if (text.len < 10 || text.len % 2 != 0) {
        return err_set(err, SHALE_INVALID, 0, "bad cursor: not one this server made");
    }
    for (size_t i = 0; i < text.len; i += 2) {
        int hi = hexval(t[i]), lo = hexval(t[i + 1]);
        if (hi < 0 || lo < 0) {
            return err_set(err, SHALE_INVALID, 0, "bad cursor: not one this server made");
        }
        uint8_t b = (uint8_t)(hi << 4 | lo);
        shale_code rc = buf_append(out, &b, 1, err);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    const uint8_t *p = out->data;
    uint32_t h = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
    if (p[0] != CURSOR_VERSION || h != q->sort_hash) {
        return err_set(err, SHALE_INVALID, 0, "bad cursor: it belongs to another sort order");
    }
    memmove(out->data, p + 5, out->len - 5);
    out->len -= 5;
    return SHALE_OK;
}

static shale_code cursor_encode(const query *q, shale_slice pos, shale_buf *out, shale_error *err)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t head[5] = {CURSOR_VERSION, (uint8_t)(q->sort_hash >> 24), (uint8_t)(q->sort_hash >> 16),
                       (uint8_t)(q->sort_hash >> 8), (uint8_t)q->sort_hash};
    shale_code rc = buf_append(out, "\"", 1, err);
    for (size_t i = 0; rc == SHALE_OK && i < 5 + pos.len; i++) {
        uint8_t b = i < 5 ? head[i] : ((const uint8_t *)pos.data)[i - 5];
        char two[2] = {hex[b >> 4], hex[b & 15]};
        rc = buf_append(out, two, 2, err);
    }
    return rc != SHALE_OK ? rc : buf_append(out, "\"", 1, err);
}

static shale_code query_parse(const shale_doc_query *in, bool paged, query *q, shale_error *err)
{
    shale_doc_query none = {0};
    shale_code rc = SHALE_OK;
    memset(q, 0, sizeof *q);
    if (in == NULL) {
        in = &none;
    }
    if (in->filter.len > 0) {
        if (in->filter.data == NULL) {
            return err_set(err, SHALE_INVALID, 0, "filter has NULL data");
        }
        rc = dfilter_parse(in->filter.data, in->filter.len, &q->filter, err);
    }
    if (rc == SHALE_OK && in->neq > 0) {
        if (in->eq_names == NULL || in->eq_values == NULL) {
            return err_set(err, SHALE_INVALID, 0, "eq_names or eq_values is NULL");
        }
        rc = dfilter_from_pairs(in->eq_names, in->eq_values, in->neq, &q->pairs, err);
    }
    shale_slice parts[QUERY_MAX_SORT];
    size_t n = 0;
    if (rc == SHALE_OK && in->sort.len > 0) {
        rc = split_list(in->sort, "sort", parts, QUERY_MAX_SORT, &n, err);
    }
    if (rc == SHALE_OK && n > 0 && !paged) {
        rc = err_set(err, SHALE_INVALID, 0, "a streaming cursor returns documents by _id: no sort");
    }
    q->sort_hash = (uint32_t)hash_bytes(in->sort.data, in->sort.len, 0x534f5254);
    for (size_t i = 0; rc == SHALE_OK && i < n; i++) {
        shale_slice p = parts[i];
        bool desc = p.len > 0 && ((const char *)p.data)[0] == '-';
        if (desc || (p.len > 0 && ((const char *)p.data)[0] == '+')) {
            p = (shale_slice){(const char *)p.data + 1, p.len - 1};
        }
        if (p.len == 0) {
            rc = err_set(err, SHALE_INVALID, 0, "sort: empty field name");
        }
        q->sort[q->nsort++] = (sort_field){p, desc};
    }
    if (rc == SHALE_OK && in->fields.len > 0) {
        rc = split_list(in->fields, "fields", q->fields, QUERY_MAX_FIELDS, &q->nfields, err);
        if (rc == SHALE_OK) {
            q->fields[q->nfields++] = (shale_slice){"_id", 3};
        }
    }
    q->limit = in->limit == 0 ? QUERY_DEFAULT_LIMIT : in->limit;
    q->offset = in->offset;
    if (rc == SHALE_OK && paged && q->limit > QUERY_MAX_LIMIT) {
        rc = err_set(err, SHALE_INVALID, 0, "limit %" PRIu32 " is over the maximum of %u", q->limit,
                     QUERY_MAX_LIMIT);
    }
    if (rc == SHALE_OK && paged && q->offset > QUERY_MAX_OFFSET) {
        rc = err_set(err, SHALE_INVALID, 0,
                     "offset %" PRIu64 " is over the maximum of %u (use cursors to go further)",
                     q->offset, QUERY_MAX_OFFSET);
    }
    if (rc == SHALE_OK && paged && in->after.len > 0 && in->before.len > 0) {
        rc = err_set(err, SHALE_INVALID, 0, "give after or before, not both");
    }
    if (rc == SHALE_OK && paged && in->after.len > 0) {
        q->has_after = true;
        rc = cursor_decode(q, in->after, &q->after, err);
    }
    if (rc == SHALE_OK && paged && in->before.len > 0) {
        q->has_before = true;
        rc = cursor_decode(q, in->before, &q->before, err);
    }
    if (rc != SHALE_OK) {
        query_free(q);
    }
    return rc;
}

/* The position key of a match (see the top of the file). */
static shale_code position(const query *q, dval doc, shale_slice id, shale_buf *out,
                           shale_error *err)
{
    shale_code rc = SHALE_OK;
    buf_reset(out);
    for (size_t i = 0; rc == SHALE_OK && i < q->nsort; i++) {
        size_t at = out->len;
        rc = docdb_path_key(doc, q->sort[i].path, out, err);
        if (rc == SHALE_OK && q->sort[i].desc) {
            uint8_t *b = out->data;
            for (size_t j = at; j < out->len; j++) {
                b[j] = (uint8_t)~b[j];
            }
        }
    }
    return rc != SHALE_OK ? rc : buf_append(out, id.data, id.len, err);
}

/* ---- the window: a bounded binary heap of positions ---- */

typedef struct pos {
    uint8_t *key;
    uint32_t len, id_len;
} pos;

typedef struct window {
    pos *items;
    size_t n, cap;
    bool keep_small; /* keep the smallest cap positions (a max-heap) or the largest (min-heap) */
} window;

static int pos_cmp(const pos *a, const pos *b)
{
    return slice_cmp((shale_slice){a->key, a->len}, (shale_slice){b->key, b->len});
}

/* True if a belongs nearer the root than b. */
static bool above(const window *w, const pos *a, const pos *b)
{
    int c = pos_cmp(a, b);
    return w->keep_small ? c > 0 : c < 0;
}

static void sift_down(window *w, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < w->n && above(w, &w->items[l], &w->items[top])) {
            top = l;
        }
        if (r < w->n && above(w, &w->items[r], &w->items[top])) {
            top = r;
        }
        if (top == i) {
            return;
        }
        pos t = w->items[i];
        w->items[i] = w->items[top];
        w->items[top] = t;
        i = top;
    }
}

static shale_code window_offer(window *w, shale_slice key, size_t id_len, shale_error *err)
{
    /* Compared only: the bytes are copied below once the position is kept. */
    pos p = {(uint8_t *)(uintptr_t)key.data, (uint32_t)key.len, (uint32_t)id_len};
    if (w->n == w->cap) {
        if (w->cap == 0 || !above(w, &w->items[0], &p)) {
            return SHALE_OK; /* no nearer than what the window holds */
        }
        uint8_t *k = realloc(w->items[0].key, key.len ? key.len : 1);
        if (k == NULL) {
            return err_nomem(err);
        }
        memcpy(k, key.data, key.len);
        w->items[0] = (pos){k, (uint32_t)key.len, (uint32_t)id_len};
        sift_down(w, 0);
        return SHALE_OK;
    }
    p.key = malloc(key.len ? key.len : 1);
    if (p.key == NULL) {
        return err_nomem(err);
    }
    memcpy(p.key, key.data, key.len);
    size_t i = w->n++;
    w->items[i] = p;
    while (i > 0 && above(w, &w->items[i], &w->items[(i - 1) / 2])) {
        pos t = w->items[i];
        w->items[i] = w->items[(i - 1) / 2];
        w->items[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
    return SHALE_OK;
}

static int pos_qsort(const void *a, const void *b)
{
    return pos_cmp(a, b);
}

static void window_free(window *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->items[i].key);
    }
    free(w->items);
}

/* ---- candidates ---- */

typedef struct run {
    shale_db *db;
    const char *coll;
    const query *q;
    shale_read_opts ro; /* at the snapshot */
    doc_meta meta;
    /* the plan */
    int index; /* -1: scan */
    dfilter_cond cond;
    bool exact; /* the index answers the whole filter: no document is read to decide (only the
                   page's are read, to print) */
    /* counters */
    uint64_t examined, matched;
    /* visitor */
    shale_code (*visit)(struct run *r, dval doc, shale_slice id, shale_error *err);
    /* exact plans: a match known from its index entry alone */
    shale_code (*visit_id)(struct run *r, shale_slice id, shale_error *err);
    void *arg;
    shale_buf val, key, scratch;
} run;

/* Reads candidate id's document and, if it matches, visits it. */
static shale_code consider(run *r, shale_slice id, shale_slice stored, shale_error *err)
{
    dval d;
    r->examined++;
    shale_code rc = docdb_doc_decode(stored, r->coll, id, &d, err);
    if (rc != SHALE_OK || !matches(r->q, d)) {
        return rc;
    }
    r->matched++;
    return r->visit(r, d, id, err);
}

static shale_code scan_all(run *r, shale_error *err)
{
    shale_buf prefix = {0};
    shale_iter *it = NULL;
    shale_code rc = docdb_doc_prefix(&prefix, r->meta.cid, err);
    shale_read_opts ro = r->ro;
    ro.prefix = (shale_slice){prefix.data, prefix.len};
    if (rc == SHALE_OK) {
        rc = shale_iter_new(r->db, &ro, &it, err);
    }
    for (shale_iter_seek_first(it); rc == SHALE_OK && shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice k = shale_iter_key(it);
        rc = consider(r, (shale_slice){(const uint8_t *)k.data + prefix.len, k.len - prefix.len},
                      shale_iter_value(it), err);
    }
    if (rc == SHALE_OK && it != NULL) {
        rc = shale_iter_status(it, err);
    }
    shale_iter_free(it);
    buf_free(&prefix);
    return rc;
}

/* Visits the documents of the index entries in [lo, hi) (hi empty: to the end of the index),
 * lo_skip: skip entries starting with lo (an exclusive lower bound), hi_incl: also the entries
 * starting with hi. count_only: stop counting at cap and visit nothing. */
static shale_code walk_entries(run *r, const shale_buf *prefix, shale_slice lo, bool lo_skip,
                               shale_slice hi, bool hi_incl, uint64_t cap, uint64_t *counted,
                               shale_error *err)
{
    shale_iter *it = NULL;
    shale_read_opts ro = r->ro;
    ro.prefix = (shale_slice){prefix->data, prefix->len};
    shale_code rc = shale_iter_new(r->db, &ro, &it, err);
    uint64_t n = 0;
    if (rc == SHALE_OK) {
        shale_iter_seek(it, lo);
    }
    for (; rc == SHALE_OK && shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice k = shale_iter_key(it);
        if (lo_skip && slice_starts_with(k, lo)) {
            continue;
        }
        if (hi.len > 0 && slice_cmp(k, hi) >= 0 && !(hi_incl && slice_starts_with(k, hi))) {
            break;
        }
        if (counted != NULL) {
            if (++n >= cap) {
                break;
            }
            continue;
        }
        shale_slice id = shale_iter_value(it);
        /* An exact plan decides from the entry, unless its value key was cut (docdb.h): then
         * two values may share it, and the document decides. */
        if (r->exact && id.len < k.len && k.len - prefix->len - id.len < DOC_INDEX_VALUE_MAX) {
            r->examined++;
            r->matched++;
            rc = r->visit_id(r, id, err);
            continue;
        }
        rc = docdb_doc_key(&r->key, r->meta.cid, id, err);
        if (rc == SHALE_OK) {
            rc = shale_get(r->db, &r->ro, (shale_slice){r->key.data, r->key.len}, &r->val, err);
        }
        if (rc == SHALE_NOT_FOUND) {
            /* An entry without its document: the index and the documents disagree. */
            rc = err_set(err, SHALE_CORRUPTION, 0,
                         "collection '%s': an index entry names a missing document '%.*s'", r->coll,
                         (int)(id.len > 64 ? 64 : id.len), (const char *)id.data);
        }
        if (rc == SHALE_OK) {
            rc = consider(r, id, (shale_slice){r->val.data, r->val.len}, err);
        }
    }
    if (counted != NULL) {
        *counted = n;
    }
    if (rc == SHALE_OK && it != NULL) {
        rc = shale_iter_status(it, err);
    }
    shale_iter_free(it);
    return rc;
}

/* ---- the plan ---- */

/* The smallest value of a class, encoded (the start of its keys in an index). */
static shale_code class_min(enum dval_class c, shale_buf *out, shale_error *err)
{
    static const uint8_t empty_array[3] = {DV_ARRAY, 0x01, 0x00};
    static const uint8_t empty_object[3] = {DV_OBJECT, 0x01, 0x00};
    buf_reset(out);
    switch (c) {
    case DVC_NULL:
        return dval_put_null(out, err);
    case DVC_BOOL:
        return dval_put_bool(out, false, err);
    case DVC_NUMBER:
        return dval_put_double(out, -DBL_MAX, err);
    case DVC_STRING:
        return dval_put_string(out, (shale_slice){"", 0}, err);
    case DVC_ARRAY:
        return buf_set(out, empty_array, sizeof empty_array, err);
    case DVC_OBJECT:
        break;
    }
    return buf_set(out, empty_object, sizeof empty_object, err);
}

/* Walks (or counts, with counted) the entries a condition covers. */
static shale_code walk_cond(run *r, const dfilter_cond *c, const doc_index *x, uint64_t cap,
                            uint64_t *counted, shale_error *err)
{
    shale_buf prefix = {0}, lo = {0}, hi = {0}, tmp = {0};
    shale_code rc = docdb_index_prefix(&prefix, r->meta.cid, x->iid, err);
    uint64_t total = 0;
    if (c->kind == DFC_EQ || c->kind == DFC_IN) {
        /* dfilter keeps $in values sorted and distinct: each value's entries are walked once. */
        for (size_t i = 0; rc == SHALE_OK && i < c->nvalues && total < cap; i++) {
            rc = buf_set(&lo, prefix.data, prefix.len, err);
            if (rc == SHALE_OK) {
                rc = dval_index_key(c->values[i], &lo, err);
            }
            docdb_cap_value_key(&lo, prefix.len);
            uint64_t n = 0;
            if (rc == SHALE_OK) {
                shale_slice l = {lo.data, lo.len};
                rc = walk_entries(r, &prefix, l, false, l, true, cap - total, counted ? &n : NULL,
                                  err);
            }
            total += n;
        }
    } else {
        rc = buf_set(&lo, prefix.data, prefix.len, err);
        if (rc == SHALE_OK && c->has_lo) {
            rc = dval_index_key(c->lo, &lo, err);
        } else if (rc == SHALE_OK) {
            rc = class_min(c->range_class, &tmp, err);
            if (rc == SHALE_OK) {
                rc = dval_index_key((dval){tmp.data, tmp.len}, &lo, err);
            }
        }
        /* Keys order exactly as values (dval_index_key), so an exact plan honours exclusive
         * bounds; otherwise bounds are walked inclusively and the filter decides (a bound cut
         * to DOC_INDEX_VALUE_MAX covers every value it was cut from). */
        bool lo_skip = r->exact && c->has_lo && !c->lo_inclusive;
        bool hi_incl = c->has_hi && (!r->exact || c->hi_inclusive);
        docdb_cap_value_key(&lo, prefix.len);
        if (rc == SHALE_OK) {
            rc = buf_set(&hi, prefix.data, prefix.len, err);
        }
        if (rc == SHALE_OK && c->has_hi) {
            rc = dval_index_key(c->hi, &hi, err);
        } else if (rc == SHALE_OK && c->range_class < DVC_OBJECT) {
            rc = class_min((enum dval_class)(c->range_class + 1), &tmp, err);
            if (rc == SHALE_OK) {
                rc = dval_index_key((dval){tmp.data, tmp.len}, &hi, err);
            }
        } else {
            hi.len = 0;
        }
        if (hi.len > 0) {
            docdb_cap_value_key(&hi, prefix.len);
        }
        if (rc == SHALE_OK) {
            rc = walk_entries(r, &prefix, (shale_slice){lo.data, lo.len}, lo_skip,
                              (shale_slice){hi.data, hi.len}, hi_incl, cap, counted ? &total : NULL,
                              err);
        }
    }
    if (counted != NULL) {
        *counted = total;
    }
    buf_free(&prefix);
    buf_free(&lo);
    buf_free(&hi);
    buf_free(&tmp);
    return rc;
}

static int ready_index(const doc_meta *m, shale_slice path)
{
    for (int i = 0; i < m->nindexes; i++) {
        if (m->idx[i].ready && slice_eq((shale_slice){m->idx[i].path, m->idx[i].path_len}, path)) {
            return i;
        }
    }
    return -1;
}

/* Chooses the plan: the usable condition with the fewest entries, below PLAN_CAP. */
static shale_code plan(run *r, shale_error *err)
{
    dfilter_cond conds[16];
    r->index = -1;
    const dfilter *fs[2] = {r->q->filter, r->q->pairs};
    uint64_t best = PLAN_CAP;
    shale_code rc = SHALE_OK;
    for (int f = 0; f < 2 && rc == SHALE_OK; f++) {
        if (fs[f] == NULL) {
            continue;
        }
        size_t n = dfilter_index_conds(fs[f], conds, 16);
        for (size_t i = 0; i < n && i < 16 && rc == SHALE_OK; i++) {
            int at = ready_index(&r->meta, conds[i].path);
            if (at < 0) {
                continue;
            }
            uint64_t count = 0;
            rc = walk_cond(r, &conds[i], &r->meta.idx[at], best, &count, err);
            if (rc == SHALE_OK && count < best) {
                best = count;
                r->index = at;
                r->cond = conds[i];
            }
        }
    }
    return rc;
}

/* Whether the chosen index answers the whole query by itself: one filter that is exactly the
 * chosen condition, no sort (positions are then the _ids the entries carry), and bounds whose
 * keys were not cut. */
static void decide_exact(run *r)
{
    const query *q = r->q;
    dfilter_cond c;
    const dfilter *only = q->filter != NULL && q->pairs == NULL   ? q->filter
                          : q->pairs != NULL && q->filter == NULL ? q->pairs
                                                                  : NULL;
    r->exact = false;
    if (r->index < 0 || only == NULL || q->nsort > 0 || !dfilter_exact(only, &c) ||
        !slice_eq(c.path, r->cond.path)) {
        return;
    }
    /* A missing field is indexed as null: a range over nulls ("exists and is null") needs the
     * documents to tell the two apart ($eq null means either, so it stays exact). */
    if (c.kind == DFC_RANGE && c.range_class == DVC_NULL) {
        return;
    }
    /* A bound whose key would be cut is not exact. */
    shale_buf k = {0};
    bool short_keys = true;
    const dval *vals = c.kind == DFC_RANGE ? NULL : c.values;
    size_t nv = c.kind == DFC_RANGE ? 0 : c.nvalues;
    dval bounds[2];
    if (c.kind == DFC_RANGE) {
        if (c.has_lo) {
            bounds[nv++] = c.lo;
        }
        if (c.has_hi) {
            bounds[nv++] = c.hi;
        }
        vals = bounds;
    }
    for (size_t i = 0; i < nv && short_keys; i++) {
        buf_reset(&k);
        short_keys = dval_index_key(vals[i], &k, NULL) == SHALE_OK && k.len < DOC_INDEX_VALUE_MAX;
    }
    buf_free(&k);
    r->exact = short_keys;
}

static shale_code execute(run *r, shale_error *err)
{
    decide_exact(r);
    if (r->index < 0) {
        return scan_all(r, err);
    }
    return walk_cond(r, &r->cond, &r->meta.idx[r->index], UINT64_MAX, NULL, err);
}

static shale_code run_open(run *r, shale_db *db, const char *coll, const query *q, shale_error *err)
{
    memset(r, 0, sizeof *r);
    r->db = db;
    r->coll = coll;
    r->q = q;
    r->index = -1;
    shale_snapshot *snap;
    shale_code rc = docdb_read_begin(db, coll, &snap, &r->meta, err);
    r->ro.snapshot = snap;
    if (rc == SHALE_OK) {
        rc = plan(r, err);
    }
    return rc;
}

static void run_close(run *r)
{
    shale_snapshot_release(r->db, (shale_snapshot *)r->ro.snapshot);
    buf_free(&r->val);
    buf_free(&r->key);
    buf_free(&r->scratch);
}

/* ---- find ---- */

typedef struct page {
    window w;
    uint64_t outside; /* matches on the cursor's far side (at or before `after`, at or after
                         `before`) */
    shale_buf pos;
} page;

static shale_code place(run *r, shale_slice p, size_t id_len, shale_error *err);

static shale_code visit_page(run *r, dval doc, shale_slice id, shale_error *err)
{
    page *pg = r->arg;
    shale_code rc = position(r->q, doc, id, &pg->pos, err);
    return rc != SHALE_OK ? rc : place(r, (shale_slice){pg->pos.data, pg->pos.len}, id.len, err);
}

/* Without a sort a position is the _id itself. */
static shale_code visit_page_id(run *r, shale_slice id, shale_error *err)
{
    return place(r, id, id.len, err);
}

/* Puts a match at position p into the window (or counts it beyond the cursor). */
static shale_code place(run *r, shale_slice p, size_t id_len, shale_error *err)
{
    page *pg = r->arg;
    const query *q = r->q;
    if (q->has_after && slice_cmp(p, (shale_slice){q->after.data, q->after.len}) <= 0) {
        pg->outside++;
        return SHALE_OK;
    }
    if (q->has_before && slice_cmp(p, (shale_slice){q->before.data, q->before.len}) >= 0) {
        pg->outside++;
        return SHALE_OK;
    }
    return window_offer(&pg->w, p, id_len, err);
}

/* Appends the JSON of the document at position p (its _id is the key's tail). */
static shale_code emit_doc(run *r, const pos *p, shale_buf *out, shale_error *err)
{
    shale_slice id = {p->key + p->len - p->id_len, p->id_len};
    dval d;
    shale_code rc = docdb_doc_key(&r->key, r->meta.cid, id, err);
    if (rc == SHALE_OK) {
        rc = shale_get(r->db, &r->ro, (shale_slice){r->key.data, r->key.len}, &r->val, err);
    }
    if (rc == SHALE_OK) {
        rc = docdb_doc_decode((shale_slice){r->val.data, r->val.len}, r->coll, id, &d, err);
    }
    if (rc == SHALE_OK && r->q->nfields > 0) {
        rc = dval_project(d, r->q->fields, r->q->nfields, &r->scratch, err);
        d = (dval){r->scratch.data, r->scratch.len};
    }
    return rc != SHALE_OK ? rc : dval_to_json(d, out, err);
}

static shale_code find_or_explain(shale_db *db, const char *coll, const shale_doc_query *in,
                                  bool explain, shale_buf *out, shale_error *err)
{
    if (db == NULL || out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "find: NULL database or output");
    }
    shale_code rc = docdb_check_name(coll, err);
    query q;
    if (rc == SHALE_OK) {
        rc = query_parse(in, true, &q, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    run r;
    page pg = {0};
    pg.w.cap = q.offset + q.limit + 1;
    pg.w.keep_small = !q.has_before;
    rc = run_open(&r, db, coll, &q, err);
    bool missing = rc == SHALE_NOT_FOUND; /* no collection: an empty result */
    if (missing) {
        rc = SHALE_OK;
    }
    if (rc == SHALE_OK && !missing) {
        pg.w.items = malloc(pg.w.cap * sizeof *pg.w.items);
        if (pg.w.items == NULL) {
            rc = err_nomem(err);
        }
    }
    if (rc == SHALE_OK && !missing) {
        r.visit = visit_page;
        r.visit_id = visit_page_id;
        r.arg = &pg;
        rc = execute(&r, err);
    }
    buf_reset(out);
    if (rc == SHALE_OK && explain) {
        char head[256];
        int hn = snprintf(head, sizeof head,
                          "{\"plan\":\"%s\",\"index\":", r.index < 0 ? "scan" : "index");
        rc = buf_append(out, head, (size_t)hn, err);
        if (rc == SHALE_OK && r.index >= 0) {
            shale_buf s = {0};
            rc = dval_put_string(
                &s, (shale_slice){r.meta.idx[r.index].path, r.meta.idx[r.index].path_len}, err);
            if (rc == SHALE_OK) {
                rc = dval_to_json((dval){s.data, s.len}, out, err);
            }
            buf_free(&s);
        } else if (rc == SHALE_OK) {
            rc = buf_append(out, "null", 4, err);
        }
        static const char *const kinds[] = {"eq", "in", "range"};
        hn = snprintf(head, sizeof head,
                      ",\"condition\":%s%s%s,\"examined\":%" PRIu64 ",\"matched\":%" PRIu64 "}",
                      r.index < 0 ? "" : "\"", r.index < 0 ? "null" : kinds[r.cond.kind],
                      r.index < 0 ? "" : "\"", r.examined, r.matched);
        if (rc == SHALE_OK) {
            rc = buf_append(out, head, (size_t)hn, err);
        }
    } else if (rc == SHALE_OK) {
        if (pg.w.n > 1) {
            qsort(pg.w.items, pg.w.n, sizeof *pg.w.items, pos_qsort);
        }
        size_t a = pg.w.n, first, count;
        bool has_next, has_prev;
        if (!q.has_before) {
            first = a < q.offset ? a : (size_t)q.offset;
            count = a - first < q.limit ? a - first : q.limit;
            has_next = a > q.offset + q.limit;
            has_prev = pg.outside > 0 || (q.offset > 0 && a > 0);
        } else {
            size_t end = a < q.offset ? 0 : a - (size_t)q.offset;
            first = end < q.limit ? 0 : end - q.limit;
            count = end - first;
            has_prev = a > q.offset + q.limit;
            has_next = pg.outside > 0 || (q.offset > 0 && a > 0);
        }
        rc = buf_append(out, "{\"documents\":[", 14, err);
        for (size_t i = 0; rc == SHALE_OK && i < count; i++) {
            if (i > 0) {
                rc = buf_append(out, ",", 1, err);
            }
            if (rc == SHALE_OK) {
                rc = emit_doc(&r, &pg.w.items[first + i], out, err);
            }
        }
        char tail[96];
        int tn = snprintf(tail, sizeof tail, "],\"has_next\":%s,\"has_prev\":%s,\"next_cursor\":",
                          has_next ? "true" : "false", has_prev ? "true" : "false");
        if (rc == SHALE_OK) {
            rc = buf_append(out, tail, (size_t)tn, err);
        }
        if (rc == SHALE_OK && has_next && count > 0) {
            const pos *p = &pg.w.items[first + count - 1];
            rc = cursor_encode(&q, (shale_slice){p->key, p->len}, out, err);
        } else if (rc == SHALE_OK) {
            rc = buf_append(out, "null", 4, err);
        }
        if (rc == SHALE_OK) {
            rc = buf_append(out, ",\"prev_cursor\":", 15, err);
        }
        if (rc == SHALE_OK && has_prev && count > 0) {
            const pos *p = &pg.w.items[first];
            rc = cursor_encode(&q, (shale_slice){p->key, p->len}, out, err);
        } else if (rc == SHALE_OK) {
            rc = buf_append(out, "null", 4, err);
        }
        tn = snprintf(tail, sizeof tail, ",\"total\":%" PRIu64 "}", r.matched);
        if (rc == SHALE_OK) {
            rc = buf_append(out, tail, (size_t)tn, err);
        }
    }
    if (rc != SHALE_OK) {
        out->len = 0;
    }
    window_free(&pg.w);
    buf_free(&pg.pos);
    if (r.ro.snapshot != NULL) {
        run_close(&r);
    }
    query_free(&q);
    return rc;
}

shale_code shale_doc_find(shale_db *db, const char *coll, const shale_doc_query *q, shale_buf *out,
                          shale_error *err)
{
    return find_or_explain(db, coll, q, false, out, err);
}

shale_code shale_doc_explain(shale_db *db, const char *coll, const shale_doc_query *q,
                             shale_buf *out, shale_error *err)
{
    return find_or_explain(db, coll, q, true, out, err);
}

/* ---- streaming cursor ---- */

struct shale_doc_cursor {
    shale_db *db;
    char coll[DOC_NAME_MAX + 1];
    query q;
    shale_snapshot *snap;
    shale_iter *it;
    size_t prefix_len;
    bool started, missing;
    shale_buf scratch;
};

shale_code shale_doc_cursor_open(shale_db *db, const char *coll, const shale_doc_query *in,
                                 shale_doc_cursor **out, shale_error *err)
{
    if (out == NULL || db == NULL) {
        return err_set(err, SHALE_INVALID, 0, "cursor_open: NULL argument");
    }
    *out = NULL;
    shale_code rc = docdb_check_name(coll, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    shale_doc_cursor *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return err_nomem(err);
    }
    c->db = db;
    snprintf(c->coll, sizeof c->coll, "%s", coll);
    rc = query_parse(in, false, &c->q, err);
    if (rc != SHALE_OK) {
        free(c);
        return rc;
    }
    doc_meta m;
    rc = docdb_read_begin(db, coll, &c->snap, &m, err);
    shale_read_opts ro = {.snapshot = c->snap};
    if (rc == SHALE_NOT_FOUND) {
        c->missing = true;
        rc = SHALE_OK;
    }
    shale_buf prefix = {0};
    if (rc == SHALE_OK && !c->missing) {
        rc = docdb_doc_prefix(&prefix, m.cid, err);
        ro.prefix = (shale_slice){prefix.data, prefix.len};
        c->prefix_len = prefix.len;
    }
    if (rc == SHALE_OK && !c->missing) {
        rc = shale_iter_new(db, &ro, &c->it, err);
    }
    buf_free(&prefix);
    if (rc != SHALE_OK) {
        shale_doc_cursor_close(c);
        return rc;
    }
    *out = c;
    return SHALE_OK;
}

shale_code shale_doc_cursor_next(shale_doc_cursor *c, shale_buf *out, shale_error *err)
{
    if (c == NULL || out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "cursor_next: NULL argument");
    }
    if (c->missing) {
        return err_set(err, SHALE_NOT_FOUND, 0, "no more documents");
    }
    if (!c->started) {
        shale_iter_seek_first(c->it);
        c->started = true;
    } else if (shale_iter_valid(c->it)) {
        shale_iter_next(c->it);
    }
    for (; shale_iter_valid(c->it); shale_iter_next(c->it)) {
        shale_slice k = shale_iter_key(c->it);
        shale_slice id = {(const uint8_t *)k.data + c->prefix_len, k.len - c->prefix_len};
        dval d;
        shale_code rc = docdb_doc_decode(shale_iter_value(c->it), c->coll, id, &d, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        if (!matches(&c->q, d)) {
            continue;
        }
        if (c->q.nfields > 0) {
            rc = dval_project(d, c->q.fields, c->q.nfields, &c->scratch, err);
            d = (dval){c->scratch.data, c->scratch.len};
        }
        buf_reset(out);
        return rc != SHALE_OK ? rc : dval_to_json(d, out, err);
    }
    shale_code rc = shale_iter_status(c->it, err);
    return rc != SHALE_OK ? rc : err_set(err, SHALE_NOT_FOUND, 0, "no more documents");
}

void shale_doc_cursor_close(shale_doc_cursor *c)
{
    if (c == NULL) {
        return;
    }
    shale_iter_free(c->it);
    if (c->snap != NULL) {
        shale_snapshot_release(c->db, c->snap);
    }
    query_free(&c->q);
    buf_free(&c->scratch);
    free(c);
}
