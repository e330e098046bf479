/*
 * Queries through the public API (include/shale.h, "Documents"): shale_doc_find, explain and the
 * paging contract.
 *
 *   docs_query.cases_file        every case of tests/data/query_cases.json (the filter language
 *                                over a fixed document set), without indexes, then with an index
 *                                on every path the cases filter on: the same ids in the same
 *                                order, and explain says "index" for every case with an
 *                                equality, range or $in condition on an indexed path.
 *   docs_query.sort_*            sorting on one and several fields, ascending and descending,
 *                                over mixed types and missing fields, with filters, compared with
 *                                an independent implementation of the documented order; the same
 *                                with indexes on the sorted and filtered fields.
 *   docs_query.paging_*          limit/offset windows, and cursor pagination: every page forward
 *                                with next_cursor and back with prev_cursor, checking has_next,
 *                                has_prev, total and that the pages partition the results; cursors
 *                                name positions (they stay valid across writes).
 *   docs_query.sort_numbers_by_exact_value, docs_query.sort_and_match_containers
 *                                the documented order where a key encoding could lose it: ints
 *                                beyond 2^53, arrays (element by element, shorter first) and
 *                                objects; with and without an index.
 *   docs_query.projection        "fields" (top-level and nested "a.b" paths), with find and with
 *                                the streaming cursor.
 *   docs_query.explain_shape     explain's fields and counts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docs_util.h"

TestSuite(docs_query);

/* ------------------------------------------------------------------------------------------ */
/* The data-driven cases                                                                      */
/* ------------------------------------------------------------------------------------------ */

static bool is_op(const char *k)
{
    return k[0] == '$';
}

/* Adds every path the filter names (outside and inside $and / $or / $not) to paths. */
static void collect_paths(const json_t *filter, json_t *paths)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)filter, k, v)
    {
        if (strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0) {
            size_t i;
            json_t *sub;
            json_array_foreach(v, i, sub)
            {
                collect_paths(sub, paths);
            }
        } else if (!is_op(k)) {
            json_object_set_new(paths, k, json_true());
        }
    }
}

static bool scalar(const json_t *v)
{
    return !json_is_object(v) && !json_is_array(v);
}

/* Whether an index on `path` can serve the path's expression v: the equality, range and $in
 * conditions with scalar operands (dfilter.h offers $in only without null, and no condition on
 * an array or object operand: their index keys do not follow the documented order). */
static bool servable(const json_t *v)
{
    if (!json_is_object(v)) {
        return scalar(v); /* a literal: equality */
    }
    bool ops = false;
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x)
    {
        ops = ops || is_op(k);
    }
    if (!ops) {
        return false; /* an object literal */
    }
    json_object_foreach((json_t *)v, k, x)
    {
        if ((strcmp(k, "$eq") == 0 || strcmp(k, "$gt") == 0 || strcmp(k, "$gte") == 0 ||
             strcmp(k, "$lt") == 0 || strcmp(k, "$lte") == 0) &&
            scalar(x)) {
            return true;
        }
        if (strcmp(k, "$in") == 0) {
            bool plain = true;
            size_t i;
            json_t *e;
            json_array_foreach(x, i, e)
            {
                plain = plain && scalar(e) && !json_is_null(e);
            }
            if (plain) {
                return true;
            }
        }
    }
    return false;
}

/* The indexed paths of the top-level AND (flattening $and) an index could serve. */
static void servable_paths(const json_t *filter, json_t *out)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)filter, k, v)
    {
        if (strcmp(k, "$and") == 0) {
            size_t i;
            json_t *sub;
            json_array_foreach(v, i, sub)
            {
                servable_paths(sub, out);
            }
        } else if (!is_op(k) && strcmp(k, "_id") != 0 && servable(v)) {
            json_object_set_new(out, k, json_true());
        }
    }
}

static char *join_expect(const json_t *expect)
{
    dt_str s = {0};
    size_t i;
    json_t *id;
    json_array_foreach((json_t *)expect, i, id)
    {
        dt_str_addf(&s, "%s%s", i ? "," : "", json_string_value(id));
    }
    dt_str_c(&s);
    return s.s;
}

/* Runs every case; appends each mismatch to failures; returns the results (one string per
 * case, in case order) for comparing runs. */
static json_t *run_cases(shale_db *db, const char *coll, const json_t *cases, bool check_plan,
                         dt_str *failures, int *passed)
{
    json_t *results = json_array();
    size_t i;
    json_t *c;
    json_array_foreach((json_t *)cases, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *filter = json_object_get(c, "filter");
        char *text = dt_dump(filter);
        char *want = join_expect(json_object_get(c, "expect"));
        shale_doc_query q = {.filter = tu_str(text), .limit = 1000};
        shale_buf out = {0};
        shale_error err = {0};
        shale_code rc = shale_doc_find(db, coll, &q, &out, &err);
        char *got = NULL;
        if (rc != SHALE_OK) {
            dt_str_addf(failures, "\n  %s %s: find returned %d: %s", name, text, rc, err.msg);
            got = strdup("<error>");
        } else {
            json_t *page = dt_parse(&out, name);
            got = dt_page_ids(page);
            json_int_t total = json_integer_value(json_object_get(page, "total"));
            json_decref(page);
            size_t nwant = json_array_size(json_object_get(c, "expect"));
            if (strcmp(got, want) != 0) {
                dt_str_addf(failures, "\n  %s %s:\n    want [%s]\n    got  [%s]", name, text, want,
                            got);
            } else if ((size_t)total != nwant) {
                dt_str_addf(failures, "\n  %s %s: total %lld, want %zu", name, text,
                            (long long)total, nwant);
            } else {
                (*passed)++;
            }
        }
        shale_buf_free(&out);
        if (check_plan) {
            json_t *sp = json_object();
            servable_paths(filter, sp);
            if (json_object_size(sp) > 0) {
                const char *ix = NULL;
                const char *plan = dt_plan(db, coll, text, &ix);
                if (strcmp(plan, "index") != 0 || ix == NULL || !json_object_get(sp, ix)) {
                    dt_str_addf(failures, "\n  %s %s: explain says plan '%s' index '%s'", name,
                                text, plan, ix ? ix : "(null)");
                }
            }
            json_decref(sp);
        }
        json_array_append_new(results, json_string(got));
        free(got);
        free(want);
        free(text);
    }
    return results;
}

Test(docs_query, cases_file)
{
    json_t *file = dt_load_data("query_cases.json");
    json_t *docs = json_object_get(file, "documents"), *cases = json_object_get(file, "cases");
    cr_assert(json_is_array(docs) && json_array_size(docs) > 0);
    cr_assert(json_is_array(cases) && json_array_size(cases) > 0);

    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-cases", NULL);
    size_t n = json_array_size(docs);
    shale_slice *in = calloc(n, sizeof *in);
    char **texts = calloc(n, sizeof *texts);
    for (size_t i = 0; i < n; i++) {
        texts[i] = dt_dump(json_array_get(docs, i));
        in[i] = tu_str(texts[i]);
    }
    TU_OK(shale_doc_insert_many(fx.db, "cases", in, n, NULL, &ERR));
    for (size_t i = 0; i < n; i++) {
        free(texts[i]);
    }
    free(texts);
    free(in);

    dt_str failures = {0};
    int passed = 0;
    json_t *plain = run_cases(fx.db, "cases", cases, false, &failures, &passed);
    int passed_plain = passed;

    /* An index on every path the cases name. */
    json_t *paths = json_object();
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c)
    {
        collect_paths(json_object_get(c, "filter"), paths);
    }
    const char *path;
    json_t *v;
    int nindexes = 0;
    json_object_foreach(paths, path, v)
    {
        if (strcmp(path, "_id") != 0) {
            TU_OK(shale_index_create(fx.db, "cases", path, &ERR));
            nindexes++;
        }
    }
    cr_assert_gt(nindexes, 10);
    dt_verify_indexes(fx.db, "cases", "after creating the indexes");

    size_t before = failures.len;
    passed = 0;
    json_t *indexed = run_cases(fx.db, "cases", cases, true, &failures, &passed);
    if (failures.len > before) {
        dt_str_addf(&failures, "%s", "\n  (the lines after this one come from the indexed run)");
    }
    /* The two runs agree exactly, failures included. */
    json_array_foreach(cases, i, c)
    {
        const char *a = json_string_value(json_array_get(plain, i));
        const char *b = json_string_value(json_array_get(indexed, i));
        if (strcmp(a, b) != 0) {
            dt_str_addf(&failures, "\n  %s: with indexes [%s], without [%s]",
                        json_string_value(json_object_get(c, "name")), b, a);
        }
    }
    cr_log_info("query cases: %d/%zu pass without indexes, %d/%zu with %d indexes", passed_plain,
                json_array_size(cases), passed, json_array_size(cases), nindexes);
    cr_expect_eq(failures.len, 0u,
                 "query cases failing (%d/%zu pass without indexes, %d/%zu with):%s", passed_plain,
                 json_array_size(cases), passed, json_array_size(cases), dt_str_c(&failures));

    /* After a reopen the indexes still serve the same answers. */
    tu_fx_reopen(&fx, NULL);
    dt_verify_indexes(fx.db, "cases", "after reopening");
    dt_str again = {0};
    passed = 0;
    json_t *reopened = run_cases(fx.db, "cases", cases, false, &again, &passed);
    json_array_foreach(cases, i, c)
    {
        cr_expect_str_eq(json_string_value(json_array_get(reopened, i)),
                         json_string_value(json_array_get(indexed, i)), "%s after reopen",
                         json_string_value(json_object_get(c, "name")));
    }
    json_decref(reopened);
    dt_str_free(&again);
    dt_str_free(&failures);
    json_decref(plain);
    json_decref(indexed);
    json_decref(paths);
    json_decref(file);
    tu_fx_end(&fx);
}

/* ------------------------------------------------------------------------------------------ */
/* Sorting, paging and projection over a generated collection                                 */
/* ------------------------------------------------------------------------------------------ */

enum { SORT_DOCS = 150 };

static const char *const city_names[] = {"Paris", "Lyon", "berlin", "Z\xc3\xbcrich", "", "Paris2"};
static const char *const k_strings[] = {"", "a", "B", "ab", "\xc3\xa9t\xc3\xa9", "a b", "10", "9"};

/* A value of any scalar class (or NULL: leave the field out). */
static json_t *mixed_value(tu_rng *r)
{
    switch (tu_rng_below(r, 10)) {
    case 0:
        return NULL;
    case 1:
        return json_null();
    case 2:
        return json_boolean(tu_rng_below(r, 2));
    case 3:
    case 4:
        return json_integer((json_int_t)tu_rng_below(r, 11) - 5);
    case 5:
        return json_real(((double)tu_rng_below(r, 21) - 10) / 4.0); /* some equal ints */
    case 6:
        return json_real(tu_rng_below(r, 2) ? 1e300 : -1e300);
    default:
        return json_string(k_strings[tu_rng_below(r, 8)]);
    }
}

/* The documents s000 .. s149 (a JSON array in _id order), inserted in a shuffled order. */
static json_t *make_sort_coll(shale_db *db, const char *coll, uint64_t seed)
{
    tu_rng r;
    tu_rng_seed(&r, seed);
    json_t *docs = json_array();
    for (int i = 0; i < SORT_DOCS; i++) {
        json_t *d = json_object();
        char id[16];
        snprintf(id, sizeof id, "s%03d", i);
        json_object_set_new(d, "_id", json_string(id));
        json_t *k = mixed_value(&r);
        if (k != NULL) {
            json_object_set_new(d, "k", k);
        }
        if (tu_rng_below(&r, 10) > 0) {
            json_object_set_new(d, "g", json_integer((json_int_t)tu_rng_below(&r, 4)));
        }
        char name[16];
        snprintf(name, sizeof name, "n%02d", (int)tu_rng_below(&r, 40));
        json_object_set_new(d, "name", json_string(name));
        uint64_t a = tu_rng_below(&r, 10);
        if (a < 7) {
            json_t *addr = json_object();
            json_object_set_new(addr, "city", json_string(city_names[tu_rng_below(&r, 6)]));
            json_object_set_new(addr, "zip", json_integer((json_int_t)tu_rng_below(&r, 99999)));
            json_object_set_new(d, "addr", addr);
        } else if (a == 7) {
            json_object_set_new(d, "addr", json_string("flat"));
        }
        json_object_set_new(d, "other", json_integer(i));
        json_array_append_new(docs, d);
    }
    int order[SORT_DOCS];
    for (int i = 0; i < SORT_DOCS; i++) {
        order[i] = i;
    }
    for (int i = SORT_DOCS - 1; i > 0; i--) {
        int j = (int)tu_rng_below(&r, (uint64_t)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < SORT_DOCS; i++) {
        char *text = dt_dump(json_array_get(docs, (size_t)order[i]));
        TU_OK(shale_doc_insert(db, coll, tu_str(text), NULL, &ERR));
        free(text);
    }
    return docs;
}

/* The filters of the sort tests, with the predicate each means. */
typedef struct sfilter {
    const char *text;
    bool (*match)(const json_t *doc);
} sfilter;

static bool match_all(const json_t *d)
{
    (void)d;
    return true;
}

static bool match_g12(const json_t *d)
{
    json_t *g = json_object_get(d, "g");
    return json_is_number(g) && (json_number_value(g) == 1 || json_number_value(g) == 2);
}

static bool match_k_ge0(const json_t *d)
{
    json_t *k = json_object_get(d, "k");
    return json_is_number(k) && json_number_value(k) >= 0;
}

static bool match_city(const json_t *d)
{
    return dt_path(d, "addr.city") != NULL;
}

static bool match_none(const json_t *d)
{
    (void)d;
    return false;
}

static const sfilter sort_filters[] = {
    {"", match_all},
    {"{\"g\":{\"$in\":[1,2]}}", match_g12},
    {"{\"k\":{\"$gte\":0}}", match_k_ge0},
    {"{\"addr.city\":{\"$exists\":true}}", match_city},
    {"{\"g\":99}", match_none},
};

/* A parsed sort spec. */
typedef struct sspec {
    char path[8][64];
    bool desc[8];
    int n;
} sspec;

static sspec parse_sort(const char *text)
{
    sspec s = {0};
    const char *p = text;
    while (*p != '\0') {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        s.desc[s.n] = p[0] == '-';
        snprintf(s.path[s.n], sizeof s.path[0], "%.*s", (int)(n - s.desc[s.n]), p + s.desc[s.n]);
        s.n++;
        p = c ? c + 1 : p + n;
    }
    return s;
}

static const sspec *g_sort; /* for qsort */

static int sort_cmp(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    for (int i = 0; i < g_sort->n; i++) {
        int c = dt_cmp(dt_path(x, g_sort->path[i]), dt_path(y, g_sort->path[i]));
        if (c != 0) {
            return g_sort->desc[i] ? -c : c;
        }
    }
    return strcmp(dt_id(x), dt_id(y));
}

/* The expected documents of filter + sort, in order: a new array (borrowing the documents). */
static json_t *expected(const json_t *docs, const sfilter *f, const char *sort)
{
    size_t n = json_array_size(docs), m = 0;
    json_t **v = calloc(n + 1, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_array_get(docs, i);
        if (f->match(d)) {
            v[m++] = d;
        }
    }
    sspec s = parse_sort(sort);
    g_sort = &s;
    qsort(v, m, sizeof *v, sort_cmp);
    json_t *out = json_array();
    for (size_t i = 0; i < m; i++) {
        json_array_append(out, v[i]);
    }
    free(v);
    return out;
}

static char *ids_of(const json_t *arr, size_t from, size_t to)
{
    dt_str s = {0};
    for (size_t i = from; i < to && i < json_array_size(arr); i++) {
        dt_str_addf(&s, "%s%s", i > from ? "," : "", dt_id(json_array_get(arr, i)));
    }
    dt_str_c(&s);
    return s.s;
}

static const char *cursor_of(const json_t *page, const char *name)
{
    json_t *c = json_object_get(page, name);
    return json_is_string(c) ? json_string_value(c) : NULL;
}

/* Every page forward (next_cursor) and back (prev_cursor) with `limit`: the pages partition
 * `want` and the flags and totals say so. */
static void walk_pages(shale_db *db, const char *coll, const char *filter, const char *sort,
                       uint32_t limit, const json_t *want, const char *ctx)
{
    size_t n = json_array_size(want);
    size_t npages = n == 0 ? 1 : (n + limit - 1) / limit;
    char **prev = calloc(npages, sizeof *prev); /* each page's prev_cursor */
    char **next = calloc(npages, sizeof *next);
    char *after = NULL;
    char what[512];
    for (size_t p = 0; p < npages; p++) {
        snprintf(what, sizeof what, "%.300s: forward page %zu of %zu (limit %u)", ctx, p, npages,
                 limit);
        shale_doc_query q = {.filter = tu_str(filter), .sort = tu_str(sort), .limit = limit};
        if (after != NULL) {
            q.after = tu_str(after);
        }
        json_t *page = dt_find(db, coll, &q, what);
        char *got = dt_page_ids(page);
        char *exp = ids_of(want, p * limit, (p + 1) * limit);
        cr_assert_str_eq(got, exp, "%s: other documents", what);
        cr_assert_eq(json_integer_value(json_object_get(page, "total")), (json_int_t)n, "%s: total",
                     what);
        bool last = p + 1 == npages;
        cr_assert_eq(json_is_true(json_object_get(page, "has_next")), !last, "%s: has_next", what);
        cr_assert_eq(json_is_true(json_object_get(page, "has_prev")), p > 0, "%s: has_prev", what);
        cr_assert_eq(cursor_of(page, "next_cursor") != NULL, !last, "%s: next_cursor", what);
        cr_assert_eq(cursor_of(page, "prev_cursor") != NULL, p > 0, "%s: prev_cursor", what);
        if (cursor_of(page, "prev_cursor") != NULL) {
            prev[p] = strdup(cursor_of(page, "prev_cursor"));
        }
        if (!last) {
            next[p] = strdup(cursor_of(page, "next_cursor"));
        }
        free(after);
        after = next[p] ? strdup(next[p]) : NULL;
        free(got);
        free(exp);
        json_decref(page);
    }
    free(after);
    /* Back from the last page: the same pages in reverse. */
    char *before = npages > 1 ? strdup(prev[npages - 1]) : NULL;
    for (size_t p = npages - 1; before != NULL; p--) {
        snprintf(what, sizeof what, "%.300s: backward page %zu of %zu (limit %u)", ctx, p - 1,
                 npages, limit);
        shale_doc_query q = {.filter = tu_str(filter),
                             .sort = tu_str(sort),
                             .limit = limit,
                             .before = tu_str(before)};
        json_t *page = dt_find(db, coll, &q, what);
        char *got = dt_page_ids(page);
        char *exp = ids_of(want, (p - 1) * limit, p * limit);
        cr_assert_str_eq(got, exp, "%s: other documents", what);
        cr_assert_eq(json_integer_value(json_object_get(page, "total")), (json_int_t)n, "%s: total",
                     what);
        cr_assert(json_is_true(json_object_get(page, "has_next")), "%s: has_next", what);
        cr_assert_eq(json_is_true(json_object_get(page, "has_prev")), p - 1 > 0, "%s: has_prev",
                     what);
        cr_assert_not_null(cursor_of(page, "next_cursor"), "%s: next_cursor", what);
        cr_assert_eq(cursor_of(page, "prev_cursor") != NULL, p - 1 > 0, "%s: prev_cursor", what);
        if (p == npages - 1) {
            /* Forward again from a page reached backward: the page after it. */
            shale_doc_query fq = {.filter = tu_str(filter),
                                  .sort = tu_str(sort),
                                  .limit = limit,
                                  .after = tu_str(cursor_of(page, "next_cursor"))};
            json_t *fwd = dt_find(db, coll, &fq, what);
            char *fids = dt_page_ids(fwd);
            char *fexp = ids_of(want, p * limit, (p + 1) * limit);
            cr_assert_str_eq(fids, fexp, "%s: next_cursor of a backward page", what);
            free(fids);
            free(fexp);
            json_decref(fwd);
        }
        free(before);
        before = cursor_of(page, "prev_cursor") ? strdup(cursor_of(page, "prev_cursor")) : NULL;
        free(got);
        free(exp);
        json_decref(page);
    }
    for (size_t p = 0; p < npages; p++) {
        free(prev[p]);
        free(next[p]);
    }
    free(prev);
    free(next);
}

/* limit/offset windows over `want`. */
static void check_offsets(shale_db *db, const char *coll, const char *filter, const char *sort,
                          const json_t *want, const char *ctx)
{
    size_t n = json_array_size(want);
    const uint64_t offsets[] = {0, 1, 5, n > 0 ? n - 1 : 0, n, n + 10};
    const uint32_t limits[] = {1, 7, 1000};
    char what[512];
    for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
        for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
            snprintf(what, sizeof what, "%.300s: offset %llu limit %u", ctx,
                     (unsigned long long)offsets[o], limits[l]);
            shale_doc_query q = {.filter = tu_str(filter),
                                 .sort = tu_str(sort),
                                 .limit = limits[l],
                                 .offset = offsets[o]};
            json_t *page = dt_find(db, coll, &q, what);
            char *got = dt_page_ids(page);
            char *exp = ids_of(want, offsets[o], offsets[o] + limits[l]);
            cr_assert_str_eq(got, exp, "%s: other documents", what);
            cr_assert_eq(json_integer_value(json_object_get(page, "total")), (json_int_t)n,
                         "%s: total", what);
            cr_assert_eq(json_is_true(json_object_get(page, "has_next")),
                         offsets[o] + limits[l] < n, "%s: has_next", what);
            cr_assert_eq(json_is_true(json_object_get(page, "has_prev")), offsets[o] > 0 && n > 0,
                         "%s: has_prev", what);
            free(got);
            free(exp);
            json_decref(page);
        }
    }
    /* The default limit is 50. */
    shale_doc_query q = {.filter = tu_str(filter), .sort = tu_str(sort)};
    json_t *page = dt_find(db, coll, &q, ctx);
    char *got = dt_page_ids(page);
    char *exp = ids_of(want, 0, 50);
    cr_assert_str_eq(got, exp, "%s: default limit", ctx);
    free(got);
    free(exp);
    json_decref(page);
}

/* (Sorting on containers is docs_query.sort_and_match_containers.) */
static const char *const sorts[] = {
    "k",    "-k",    "g,-k",      "-g,k",   "name",      "addr.city,-g", "-addr.city,name",
    "nope", "-nope", "g,name,-k", "-other", "-g,-name,k"};

static void check_sorts(shale_db *db, const json_t *docs, bool paging, const char *ctx)
{
    char what[512];
    for (size_t f = 0; f < sizeof sort_filters / sizeof sort_filters[0]; f++) {
        for (size_t s = 0; s < sizeof sorts / sizeof sorts[0]; s++) {
            const sfilter *sf = &sort_filters[f];
            snprintf(what, sizeof what, "%.100s: filter '%.100s' sort '%.50s'", ctx, sf->text,
                     sorts[s]);
            json_t *want = expected(docs, sf, sorts[s]);
            shale_doc_query q = {
                .filter = tu_str(sf->text), .sort = tu_str(sorts[s]), .limit = 1000};
            json_t *page = dt_find(db, "sorted", &q, what);
            char *got = dt_page_ids(page);
            char *exp = ids_of(want, 0, SIZE_MAX);
            cr_assert_str_eq(got, exp, "%s: other order", what);
            cr_assert_eq(json_integer_value(json_object_get(page, "total")),
                         (json_int_t)json_array_size(want), "%s: total", what);
            cr_assert_not(json_is_true(json_object_get(page, "has_next")), "%s", what);
            cr_assert_not(json_is_true(json_object_get(page, "has_prev")), "%s", what);
            /* Whole documents, as stored. */
            size_t i;
            json_t *d;
            json_array_foreach(json_object_get(page, "documents"), i, d)
            {
                cr_assert_eq(dt_cmp(d, json_array_get(want, i)), 0, "%s: document %zu differs",
                             what, i);
            }
            if (paging && (s % 3 == f % 3 || f == 4)) {
                walk_pages(db, "sorted", sf->text, sorts[s], 7, want, what);
                walk_pages(db, "sorted", sf->text, sorts[s], 1000, want, what);
            }
            if (paging && s == f) {
                walk_pages(db, "sorted", sf->text, sorts[s], 1, want, what);
                check_offsets(db, "sorted", sf->text, sorts[s], want, what);
            }
            free(got);
            free(exp);
            json_decref(page);
            json_decref(want);
        }
    }
}

Test(docs_query, sort_and_paging_without_indexes)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-sort", NULL);
    json_t *docs = make_sort_coll(fx.db, "sorted", 17);
    check_sorts(fx.db, docs, true, "no indexes");
    json_decref(docs);
    tu_fx_end(&fx);
}

Test(docs_query, sort_and_paging_with_indexes)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-sort-ix", NULL);
    json_t *docs = make_sort_coll(fx.db, "sorted", 23);
    const char *fields[] = {"k", "g", "addr.city", "name", "addr"};
    for (size_t i = 0; i < 5; i++) {
        TU_OK(shale_index_create(fx.db, "sorted", fields[i], &ERR));
    }
    dt_verify_indexes(fx.db, "sorted", "sort collection");
    /* The filtered queries now run on an index. */
    for (size_t f = 1; f < sizeof sort_filters / sizeof sort_filters[0]; f++) {
        if (strstr(sort_filters[f].text, "$exists") != NULL) {
            continue; /* $exists is never served by an index */
        }
        const char *plan = dt_plan(fx.db, "sorted", sort_filters[f].text, NULL);
        cr_assert_str_eq(plan, "index", "%s", sort_filters[f].text);
    }
    check_sorts(fx.db, docs, true, "indexes");
    json_decref(docs);
    tu_fx_end(&fx);
}

/* Numbers sort by exact value, beyond 2^53 too (the header: "numbers by value"). */
Test(docs_query, sort_numbers_by_exact_value)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-sort-big", NULL);
    const char *docs[] = {
        "{\"_id\":\"a\",\"n\":9007199254740993}",   /* 2^53 + 1 */
        "{\"_id\":\"b\",\"n\":9007199254740992.0}", /* 2^53 as a double */
        "{\"_id\":\"c\",\"n\":9007199254740992}",   /* 2^53 */
        "{\"_id\":\"d\",\"n\":-9007199254740993}",   "{\"_id\":\"e\",\"n\":-9007199254740992.0}",
        "{\"_id\":\"f\",\"n\":9223372036854775807}", "{\"_id\":\"g\",\"n\":9223372036854775806}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        TU_OK(shale_doc_insert(fx.db, "big", tu_str(docs[i]), NULL, &ERR));
    }
    shale_doc_query q = {.sort = TU_SL("n"), .limit = 100};
    json_t *page = dt_find(fx.db, "big", &q, "sort n");
    char *got = dt_page_ids(page);
    cr_expect_str_eq(got, "d,e,b,c,a,g,f", "sort n: got %s, want d,e,b,c,a,g,f (by exact value)",
                     got);
    free(got);
    json_decref(page);
    q.sort = TU_SL("-n");
    page = dt_find(fx.db, "big", &q, "sort -n");
    got = dt_page_ids(page);
    cr_expect_str_eq(got, "f,g,a,b,c,e,d",
                     "sort -n: got %s, want f,g,a,b,c,e,d (by exact value, ties by _id)", got);
    free(got);
    json_decref(page);
    /* The filter side agrees: $gt 2^53 finds only the larger ones, with and without index. */
    char *ids = dt_find_ids(fx.db, "big", "{\"n\":{\"$gt\":9007199254740992}}", "gt");
    cr_expect_str_eq(ids, "a,f,g", "$gt 2^53 without an index: got %s", ids);
    free(ids);
    TU_OK(shale_index_create(fx.db, "big", "n", &ERR));
    ids = dt_find_ids(fx.db, "big", "{\"n\":{\"$gt\":9007199254740992}}", "gt indexed");
    cr_expect_str_eq(ids, "a,f,g", "$gt 2^53 with an index: got %s", ids);
    free(ids);
    ids = dt_find_ids(fx.db, "big", "{\"n\":{\"$lt\":9007199254740993,\"$gt\":0}}", "lt indexed");
    cr_expect_str_eq(ids, "b,c", "$lt 2^53+1 with an index: got %s", ids);
    free(ids);
    ids = dt_find_ids(fx.db, "big", "{\"n\":9007199254740993}", "eq indexed");
    cr_expect_str_eq(ids, "a");
    free(ids);
    tu_fx_end(&fx);
}

/* Arrays and objects sort by the documented order (element by element, then shorter first;
 * objects field by field), not by their encoding; and equality on them treats numbers as
 * numbers with an index too. */
Test(docs_query, sort_and_match_containers)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-sort-arr", NULL);
    const char *texts[] = {
        "{\"_id\":\"a01\",\"v\":[-1]}",        "{\"_id\":\"a02\",\"v\":[1]}",
        "{\"_id\":\"a03\",\"v\":[1,1]}",       "{\"_id\":\"a04\",\"v\":[2]}",
        "{\"_id\":\"a05\",\"v\":[]}",          "{\"_id\":\"a06\",\"v\":[1,\"a\"]}",
        "{\"_id\":\"a07\",\"v\":[\"a\"]}",     "{\"_id\":\"a08\",\"v\":[1.5]}",
        "{\"_id\":\"a09\",\"v\":[1.0]}",       "{\"_id\":\"a10\",\"v\":{\"a\":-1}}",
        "{\"_id\":\"a11\",\"v\":{\"a\":1}}",   "{\"_id\":\"a12\",\"v\":{\"b\":0}}",
        "{\"_id\":\"a13\",\"v\":{\"a\":1.0}}", "{\"_id\":\"a14\",\"v\":{\"a\":1,\"b\":1}}",
        "{\"_id\":\"a15\",\"v\":[[2],1]}",     "{\"_id\":\"a16\",\"v\":[[10]]}",
        "{\"_id\":\"a17\",\"v\":\"str\"}",     "{\"_id\":\"a18\",\"v\":[100000]}",
    };
    size_t n = sizeof texts / sizeof texts[0];
    json_t *docs = json_array();
    for (size_t i = 0; i < n; i++) {
        TU_OK(shale_doc_insert(fx.db, "arr", tu_str(texts[i]), NULL, &ERR));
        json_array_append_new(docs, dt_parse_text(texts[i]));
    }
    const sfilter all = {"", match_all};
    for (int round = 0; round < 2; round++) {
        const char *ctx = round ? "with an index on v" : "without indexes";
        for (int desc = 0; desc < 2; desc++) {
            json_t *want = expected(docs, &all, desc ? "-v" : "v");
            shale_doc_query q = {.sort = desc ? TU_SL("-v") : TU_SL("v"), .limit = 100};
            json_t *page = dt_find(fx.db, "arr", &q, ctx);
            char *got = dt_page_ids(page), *exp = ids_of(want, 0, SIZE_MAX);
            cr_expect_str_eq(got, exp, "%s: sort %sv:\n  got  %s\n  want %s", ctx, desc ? "-" : "",
                             got, exp);
            free(got);
            free(exp);
            json_decref(page);
            json_decref(want);
        }
        /* Equality and ranges over containers: numbers as numbers (1 == 1.0). */
        const struct {
            const char *filter, *want;
        } eqs[] = {
            {"{\"v\":[1]}", "a02,a09"},
            {"{\"v\":[1.0]}", "a02,a09"},
            {"{\"v\":{\"a\":1}}", "a11,a13"},
            {"{\"v\":{\"$in\":[[1],{\"a\":1.0}]}}", "a02,a09,a11,a13"},
            {"{\"v\":{\"$lt\":[0]}}", "a01,a05"},
            {"{\"v\":{\"$gt\":[1,\"a\"]}}", "a04,a07,a08,a15,a16,a18"},
            {"{\"v\":{\"$gte\":[1],\"$lt\":[2]}}", "a02,a03,a06,a08,a09"},
            {"{\"v\":{\"$lt\":{\"a\":1}}}", "a10"},
        };
        for (size_t i = 0; i < sizeof eqs / sizeof eqs[0]; i++) {
            char *ids = dt_find_ids(fx.db, "arr", eqs[i].filter, eqs[i].filter);
            cr_expect_str_eq(ids, eqs[i].want, "%s: %s: got %s", ctx, eqs[i].filter, ids);
            free(ids);
        }
        if (round == 0) {
            TU_OK(shale_index_create(fx.db, "arr", "v", &ERR));
        }
    }
    json_decref(docs);
    tu_fx_end(&fx);
}

/* A cursor names a position: writes before or after it do not shift the next page, and it
 * still works when its own document is gone. */
Test(docs_query, paging_cursor_survives_writes)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-cursor", NULL);
    for (int i = 0; i < 40; i += 2) {
        char text[64];
        snprintf(text, sizeof text, "{\"_id\":\"p%02d\",\"x\":%d}", i, i % 5);
        TU_OK(shale_doc_insert(fx.db, "pg", tu_str(text), NULL, &ERR));
    }
    for (int withsort = 0; withsort < 2; withsort++) {
        shale_doc_query q = {.limit = 5, .sort = withsort ? TU_SL("-x") : (shale_slice){0}};
        json_t *p1 = dt_find(fx.db, "pg", &q, "page 1");
        char *ids1 = dt_page_ids(p1);
        char *cur = strdup(cursor_of(p1, "next_cursor"));
        char *p2ids_before;
        {
            shale_doc_query q2 = q;
            q2.after = tu_str(cur);
            json_t *p2 = dt_find(fx.db, "pg", &q2, "page 2");
            p2ids_before = dt_page_ids(p2);
            json_decref(p2);
        }
        /* Documents before the cursor (in both orders) come and go. */
        char text[64];
        const char *first = ids1; /* the first id of page 1 */
        char firstid[8];
        snprintf(firstid, sizeof firstid, "%.3s", first);
        TU_OK(shale_doc_delete(fx.db, "pg", tu_str(firstid), &ERR));
        snprintf(text, sizeof text, "{\"_id\":\"p00a\",\"x\":%d}", withsort ? 9 : 0);
        TU_OK(shale_doc_insert(fx.db, "pg", tu_str(text), NULL, &ERR));
        /* The cursor's own document goes away too. */
        const char *lastid = ids1 + strlen(ids1) - 3;
        TU_OK(shale_doc_delete(fx.db, "pg", tu_str(lastid), &ERR));
        shale_doc_query q2 = q;
        q2.after = tu_str(cur);
        json_t *p2 = dt_find(fx.db, "pg", &q2, "page 2 after writes");
        char *p2ids = dt_page_ids(p2);
        cr_assert_str_eq(p2ids, p2ids_before, "sort '%s': the page after the cursor moved",
                         withsort ? "-x" : "");
        cr_assert(json_is_true(json_object_get(p2, "has_prev")));
        json_decref(p2);
        free(p2ids);
        free(p2ids_before);
        free(cur);
        free(ids1);
        json_decref(p1);
        /* Restore for the next round. */
        TU_OK(shale_doc_delete(fx.db, "pg", TU_SL("p00a"), &ERR));
    }
    tu_fx_end(&fx);
}

Test(docs_query, paging_empty_and_single)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-paging-empty", NULL);
    /* No such collection: an empty page. */
    json_t *none = json_array();
    walk_pages(fx.db, "absent", "", "", 5, none, "missing collection");
    TU_OK(shale_doc_insert(fx.db, "one", TU_SL("{\"_id\":\"only\"}"), NULL, &ERR));
    walk_pages(fx.db, "one", "{\"x\":1}", "x", 5, none, "no match");
    json_t *one = json_array();
    json_array_append_new(one, dt_parse_text("{\"_id\":\"only\"}"));
    walk_pages(fx.db, "one", "", "", 1, one, "one document, limit 1");
    walk_pages(fx.db, "one", "", "-x", 5, one, "one document");
    json_decref(none);
    json_decref(one);
    tu_fx_end(&fx);
}

Test(docs_query, projection)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-proj", NULL);
    json_t *docs = make_sort_coll(fx.db, "sorted", 5);
    const char *specs[][4] = {
        {"name", NULL}, {"name", "addr.city", NULL},
        {"addr", NULL}, {"addr.zip", "k", "g", NULL},
        {"nope", NULL}, {"_id", NULL},
    };
    const char *texts[] = {"name", "name,addr.city", "addr", "addr.zip,k,g", "nope", "_id"};
    for (size_t s = 0; s < sizeof texts / sizeof texts[0]; s++) {
        size_t np = 0;
        while (specs[s][np] != NULL) {
            np++;
        }
        shale_doc_query q = {.fields = tu_str(texts[s]), .sort = TU_SL("-name"), .limit = 1000};
        json_t *page = dt_find(fx.db, "sorted", &q, texts[s]);
        const sfilter all = {"", match_all};
        json_t *want = expected(docs, &all, "-name");
        json_t *got = json_object_get(page, "documents");
        cr_assert_eq(json_array_size(got), json_array_size(want));
        size_t i;
        json_t *d;
        json_array_foreach(got, i, d)
        {
            json_t *w = dt_project(json_array_get(want, i), specs[s], np);
            char *gt = dt_dump(d), *wt = dt_dump(w);
            cr_assert_eq(dt_cmp(d, w), 0, "fields '%s': got %s want %s", texts[s], gt, wt);
            free(gt);
            free(wt);
            json_decref(w);
        }
        json_decref(want);
        json_decref(page);

        /* The streaming cursor projects the same way (in _id order). */
        shale_doc_query cq = {.fields = tu_str(texts[s])};
        shale_doc_cursor *c = NULL;
        TU_OK(shale_doc_cursor_open(fx.db, "sorted", &cq, &c, &ERR));
        shale_buf out = {0};
        for (i = 0; i < json_array_size(docs); i++) {
            TU_OK(shale_doc_cursor_next(c, &out, &ERR));
            json_t *cd = dt_parse(&out, "cursor");
            json_t *w = dt_project(json_array_get(docs, i), specs[s], np);
            cr_assert_eq(dt_cmp(cd, w), 0, "cursor fields '%s': got %.*s", texts[s], (int)out.len,
                         (const char *)out.data);
            json_decref(w);
            json_decref(cd);
        }
        TU_CODE(SHALE_NOT_FOUND, shale_doc_cursor_next(c, &out, &ERR));
        shale_doc_cursor_close(c);
        shale_buf_free(&out);
    }
    /* A nested projection keeps the nesting: {"a":{"b":1,"c":2}} on "a.b" is {"a":{"b":1}}. */
    TU_OK(shale_doc_insert(fx.db, "nest", TU_SL("{\"_id\":\"x\",\"a\":{\"b\":1,\"c\":2},\"d\":3}"),
                           NULL, &ERR));
    shale_doc_query q = {.fields = TU_SL("a.b")};
    json_t *page = dt_find(fx.db, "nest", &q, "a.b");
    json_t *want = dt_parse_text("{\"_id\":\"x\",\"a\":{\"b\":1}}");
    cr_assert_eq(dt_cmp(json_array_get(json_object_get(page, "documents"), 0), want), 0);
    json_decref(want);
    json_decref(page);
    json_decref(docs);
    tu_fx_end(&fx);
}

/* Explain's answer has the shape the header gives, and counts what the query examined. */
Test(docs_query, explain_shape)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-explain", NULL);
    for (int i = 0; i < 100; i++) {
        char t[64];
        snprintf(t, sizeof t, "{\"_id\":\"e%03d\",\"f\":%d}", i, i % 10);
        TU_OK(shale_doc_insert(fx.db, "c", tu_str(t), NULL, &ERR));
    }
    for (int indexed = 0; indexed < 2; indexed++) {
        shale_doc_query q = {.filter = TU_SL("{\"f\":3}")};
        json_t *x = dt_explain(fx.db, "c", &q, "explain");
        char *text = dt_dump(x);
        const char *keys[] = {"plan", "index", "condition", "examined", "matched"};
        for (size_t k = 0; k < 5; k++) {
            cr_expect_not_null(json_object_get(x, keys[k]), "explain has no \"%s\": %s", keys[k],
                               text);
        }
        cr_assert_str_eq(json_string_value(json_object_get(x, "plan")), indexed ? "index" : "scan",
                         "%s", text);
        json_t *ix = json_object_get(x, "index");
        cr_assert(indexed ? json_is_string(ix) && strcmp(json_string_value(ix), "f") == 0
                          : json_is_null(ix),
                  "%s", text);
        cr_assert_eq(json_integer_value(json_object_get(x, "matched")), 10, "%s", text);
        json_int_t examined = json_integer_value(json_object_get(x, "examined"));
        cr_assert(indexed ? examined == 10 : examined == 100, "%s", text);
        free(text);
        json_decref(x);
        if (!indexed) {
            TU_OK(shale_index_create(fx.db, "c", "f", &ERR));
        }
    }
    tu_fx_end(&fx);
}
