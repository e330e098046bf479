/*
 * docs_util: see docs_util.h.
 */
#include "docs_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "doc/docdb.h"

/* ---- strings ---- */

void dt_str_addn(dt_str *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n + 1) {
            cap *= 2;
        }
        s->s = realloc(s->s, cap);
        cr_assert_not_null(s->s);
        s->cap = cap;
    }
    memcpy(s->s + s->len, p, n);
    s->len += n;
    s->s[s->len] = '\0';
}

void dt_str_addf(dt_str *s, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    if ((size_t)n < sizeof small) {
        dt_str_addn(s, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    cr_assert_not_null(big);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    dt_str_addn(s, big, (size_t)n);
    free(big);
}

const char *dt_str_c(dt_str *s)
{
    if (s->s == NULL) {
        dt_str_addn(s, "", 0);
    }
    return s->s;
}

void dt_str_free(dt_str *s)
{
    free(s->s);
    memset(s, 0, sizeof *s);
}

static char *str_take(dt_str *s)
{
    dt_str_c(s);
    return s->s;
}

/* ---- JSON ---- */

json_t *dt_load_data(const char *name)
{
    const char *me = __FILE__;
    const char *at = strstr(me, "tests/docs/docs_util.c");
    int root = at ? (int)(at - me) : 0;
    char *path = NULL;
    cr_assert_geq(asprintf(&path, "%.*stests/data/%s", root, me, name), 0);
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    cr_assert_not_null(j, "%s: line %d: %s", path, je.line, je.text);
    free(path);
    return j;
}

json_t *dt_parse_text(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    cr_assert_not_null(j, "not JSON (%s): %.300s", je.text, text);
    return j;
}

json_t *dt_parse(const shale_buf *b, const char *ctx)
{
    json_error_t je;
    json_t *j = json_loadb(b->data, b->len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    cr_assert_not_null(j, "%s: the result is not JSON (%s): %.*s", ctx, je.text,
                       (int)(b->len > 300 ? 300 : b->len), (const char *)b->data);
    return j;
}

char *dt_dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    cr_assert_not_null(s);
    return s;
}

static int jclass(const json_t *j)
{
    if (j == NULL) {
        return 0;
    }
    switch (json_typeof(j)) {
    case JSON_NULL:
        return 0;
    case JSON_FALSE:
    case JSON_TRUE:
        return 1;
    case JSON_INTEGER:
    case JSON_REAL:
        return 2;
    case JSON_STRING:
        return 3;
    case JSON_ARRAY:
        return 4;
    default:
        return 5;
    }
}

/* int64 against double, exactly. */
static int cmp_int_double(json_int_t i, double d)
{
    if (d < -9223372036854775808.0) {
        return 1;
    }
    if (d >= 9223372036854775808.0) {
        return -1;
    }
    /* t = d truncated toward zero (exact as a double): |d - t| < 1, so i != t decides. */
    json_int_t t = (json_int_t)d;
    if (i != t) {
        return i < t ? -1 : 1;
    }
    double td = (double)t;
    return td < d ? -1 : td > d;
}

static int cmp_num(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    if (json_is_integer(a)) {
        return cmp_int_double(json_integer_value(a), json_real_value(b));
    }
    if (json_is_integer(b)) {
        return -cmp_int_double(json_integer_value(b), json_real_value(a));
    }
    double x = json_real_value(a), y = json_real_value(b);
    return x < y ? -1 : x > y;
}

static int cmp_str_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0) {
        return c < 0 ? -1 : 1;
    }
    return an < bn ? -1 : an > bn;
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names of an object, sorted bytewise (malloc'ed array of borrowed strings). */
static const char **sorted_names(const json_t *o, size_t *n)
{
    *n = json_object_size(o);
    const char **names = calloc(*n + 1, sizeof *names);
    cr_assert_not_null(names);
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        names[i++] = k;
    }
    qsort(names, *n, sizeof *names, cmp_cstr);
    return names;
}

int dt_cmp(const json_t *a, const json_t *b)
{
    int ca = jclass(a), cb = jclass(b);
    if (ca != cb) {
        return ca < cb ? -1 : 1;
    }
    switch (ca) {
    case 0:
        return 0;
    case 1:
        return json_is_true(a) == json_is_true(b) ? 0 : (json_is_true(a) ? 1 : -1);
    case 2:
        return cmp_num(a, b);
    case 3:
        return cmp_str_bytes(json_string_value(a), json_string_length(a), json_string_value(b),
                             json_string_length(b));
    case 4: {
        size_t na = json_array_size(a), nb = json_array_size(b);
        for (size_t i = 0; i < na && i < nb; i++) {
            int c = dt_cmp(json_array_get(a, i), json_array_get(b, i));
            if (c != 0) {
                return c;
            }
        }
        return na < nb ? -1 : na > nb;
    }
    default: {
        size_t na, nb;
        const char **ka = sorted_names(a, &na), **kb = sorted_names(b, &nb);
        int c = 0;
        for (size_t i = 0; c == 0 && i < na && i < nb; i++) {
            c = cmp_str_bytes(ka[i], strlen(ka[i]), kb[i], strlen(kb[i]));
            if (c == 0) {
                c = dt_cmp(json_object_get(a, ka[i]), json_object_get(b, kb[i]));
            }
        }
        if (c == 0) {
            c = na < nb ? -1 : na > nb;
        }
        free(ka);
        free(kb);
        return c;
    }
    }
}

json_t *dt_path(const json_t *doc, const char *path)
{
    const json_t *cur = doc;
    const char *p = path;
    if (*p == '\0') {
        return NULL;
    }
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || cur == NULL) {
            return NULL;
        }
        char comp[256];
        cr_assert_lt(n, sizeof comp);
        memcpy(comp, p, n);
        comp[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, comp);
        } else if (json_is_array(cur) && strspn(comp, "0123456789") == n) {
            cur = json_array_get(cur, strtoul(comp, NULL, 10));
        } else {
            return NULL;
        }
        if (dot == NULL) {
            return (json_t *)cur;
        }
        p = dot + 1;
    }
}

json_t *dt_project(const json_t *doc, const char *const *paths, size_t npaths)
{
    json_t *out = json_object();
    json_object_set(out, "_id", json_object_get(doc, "_id"));
    for (size_t i = 0; i < npaths; i++) {
        json_t *v = dt_path(doc, paths[i]);
        if (v == NULL) {
            continue;
        }
        json_t *at = out;
        const char *p = paths[i];
        for (const char *dot; (dot = strchr(p, '.')) != NULL; p = dot + 1) {
            char comp[256];
            snprintf(comp, sizeof comp, "%.*s", (int)(dot - p), p);
            json_t *next = json_object_get(at, comp);
            if (next == NULL) {
                next = json_object();
                json_object_set_new(at, comp, next);
            }
            at = next;
        }
        json_object_set(at, p, v);
    }
    return out;
}

const char *dt_id(const json_t *doc)
{
    json_t *id = json_object_get(doc, "_id");
    cr_assert(json_is_string(id), "document without a string _id");
    return json_string_value(id);
}

/* ---- queries ---- */

static void check_page_shape(const json_t *page, const char *ctx)
{
    cr_assert(json_is_object(page), "%s: the page is not an object", ctx);
    cr_assert(json_is_array(json_object_get(page, "documents")), "%s: no documents array", ctx);
    cr_assert(json_is_boolean(json_object_get(page, "has_next")), "%s: no has_next", ctx);
    cr_assert(json_is_boolean(json_object_get(page, "has_prev")), "%s: no has_prev", ctx);
    json_t *nc = json_object_get(page, "next_cursor"), *pc = json_object_get(page, "prev_cursor");
    cr_assert(json_is_string(nc) || json_is_null(nc), "%s: next_cursor not string/null", ctx);
    cr_assert(json_is_string(pc) || json_is_null(pc), "%s: prev_cursor not string/null", ctx);
    cr_assert(json_is_integer(json_object_get(page, "total")), "%s: no total", ctx);
}

json_t *dt_find(shale_db *db, const char *coll, const shale_doc_query *q, const char *ctx)
{
    shale_buf out = {0};
    shale_error err = {0};
    shale_code rc = shale_doc_find(db, coll, q, &out, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: find returned %d: %s", ctx, rc, err.msg);
    json_t *page = dt_parse(&out, ctx);
    shale_buf_free(&out);
    check_page_shape(page, ctx);
    return page;
}

char *dt_page_ids(const json_t *page)
{
    dt_str s = {0};
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(page, "documents"), i, d)
    {
        dt_str_addf(&s, "%s%s", i ? "," : "", dt_id(d));
    }
    return str_take(&s);
}

char *dt_find_ids(shale_db *db, const char *coll, const char *filter, const char *ctx)
{
    shale_doc_query q = {.filter = tu_str(filter), .limit = 1000};
    json_t *page = dt_find(db, coll, &q, ctx);
    char *ids = dt_page_ids(page);
    json_decref(page);
    return ids;
}

json_t *dt_explain(shale_db *db, const char *coll, const shale_doc_query *q, const char *ctx)
{
    shale_buf out = {0};
    shale_error err = {0};
    shale_code rc = shale_doc_explain(db, coll, q, &out, &err);
    cr_assert_eq(rc, SHALE_OK, "%s: explain returned %d: %s", ctx, rc, err.msg);
    json_t *j = dt_parse(&out, ctx);
    shale_buf_free(&out);
    cr_assert(json_is_object(j), "%s: explain is not an object", ctx);
    cr_assert(json_is_string(json_object_get(j, "plan")), "%s: explain has no plan", ctx);
    return j;
}

const char *dt_plan(shale_db *db, const char *coll, const char *filter, const char **index)
{
    static char plan[32], field[300];
    shale_doc_query q = {.filter = tu_str(filter), .limit = 1000};
    json_t *j = dt_explain(db, coll, &q, filter);
    snprintf(plan, sizeof plan, "%s", json_string_value(json_object_get(j, "plan")));
    json_t *ix = json_object_get(j, "index");
    snprintf(field, sizeof field, "%s", json_is_string(ix) ? json_string_value(ix) : "");
    if (index != NULL) {
        *index = json_is_string(ix) ? field : NULL;
    }
    json_decref(j);
    return plan;
}

/* ---- models ---- */

static char *join_sorted(const char **ids, size_t n)
{
    qsort(ids, n, sizeof *ids, cmp_cstr);
    dt_str s = {0};
    for (size_t i = 0; i < n; i++) {
        dt_str_addf(&s, "%s%s", i ? "," : "", ids[i]);
    }
    return str_take(&s);
}

char *dt_model_eq_ids(const json_t *model, const char *path, const json_t *v)
{
    const char **ids = calloc(json_object_size(model) + 1, sizeof *ids);
    cr_assert_not_null(ids);
    size_t n = 0;
    const char *k;
    json_t *doc;
    json_object_foreach((json_t *)model, k, doc)
    {
        json_t *at = dt_path(doc, path);
        if ((at != NULL && dt_cmp(at, v) == 0) || (at == NULL && json_is_null(v))) {
            ids[n++] = k;
        }
    }
    char *out = join_sorted(ids, n);
    free(ids);
    return out;
}

char *dt_model_ids(const json_t *model)
{
    const char **ids = calloc(json_object_size(model) + 1, sizeof *ids);
    cr_assert_not_null(ids);
    size_t n = 0;
    const char *k;
    json_t *doc;
    json_object_foreach((json_t *)model, k, doc)
    {
        ids[n++] = k;
    }
    char *out = join_sorted(ids, n);
    free(ids);
    return out;
}

/* An equality filter for v at path: {"path": v}, or {"path": {"$eq": v}} for containers (so an
 * object value is not read as operators). */
static char *eq_filter(const char *path, const json_t *v)
{
    json_t *f = json_object();
    if (json_is_object(v) || json_is_array(v)) {
        json_t *op = json_object();
        json_object_set(op, "$eq", (json_t *)v);
        json_object_set_new(f, path, op);
    } else {
        json_object_set(f, path, (json_t *)v);
    }
    char *text = dt_dump(f);
    json_decref(f);
    return text;
}

void dt_check_model(shale_db *db, const char *coll, const json_t *model, const char *const *paths,
                    const bool *indexed, size_t npaths, const char *ctx)
{
    /* Every document, in _id order, through the streaming cursor. */
    shale_doc_cursor *c = NULL;
    shale_error err = {0};
    shale_buf out = {0};
    cr_assert_eq(shale_doc_cursor_open(db, coll, NULL, &c, &err), SHALE_OK, "%s: %s", ctx, err.msg);
    dt_str got = {0};
    size_t n = 0;
    shale_code rc;
    while ((rc = shale_doc_cursor_next(c, &out, &err)) == SHALE_OK) {
        json_t *d = dt_parse(&out, ctx);
        const char *id = dt_id(d);
        json_t *want = json_object_get(model, id);
        cr_assert_not_null(want, "%s: document '%s' is not in the model", ctx, id);
        cr_assert_eq(dt_cmp(d, want), 0, "%s: document '%s' differs: got %.*s", ctx, id,
                     (int)(out.len > 300 ? 300 : out.len), (const char *)out.data);
        dt_str_addf(&got, "%s%s", n++ ? "," : "", id);
        json_decref(d);
    }
    cr_assert_eq(rc, SHALE_NOT_FOUND, "%s: cursor_next returned %d: %s", ctx, rc, err.msg);
    shale_doc_cursor_close(c);
    char *want_ids = dt_model_ids(model);
    cr_assert_str_eq(dt_str_c(&got), want_ids, "%s: the documents differ from the model", ctx);
    free(want_ids);
    dt_str_free(&got);
    shale_buf_free(&out);

    for (size_t p = 0; p < npaths; p++) {
        /* The distinct values the model holds at the path, and null. */
        json_t *vals = json_array();
        json_array_append_new(vals, json_null());
        const char *k;
        json_t *doc;
        json_object_foreach((json_t *)model, k, doc)
        {
            json_t *v = dt_path(doc, paths[p]);
            if (v == NULL) {
                continue;
            }
            bool seen = false;
            size_t i;
            json_t *w;
            json_array_foreach(vals, i, w)
            {
                seen = seen || dt_cmp(v, w) == 0;
            }
            if (!seen) {
                json_array_append(vals, v);
            }
        }
        size_t i;
        json_t *v;
        json_array_foreach(vals, i, v)
        {
            char *filter = eq_filter(paths[p], v);
            char what[600];
            snprintf(what, sizeof what, "%s: %s", ctx, filter);
            char *ids = dt_find_ids(db, coll, filter, what);
            char *want = dt_model_eq_ids(model, paths[p], v);
            cr_assert_str_eq(ids, want, "%s: find returned other ids", what);
            if (indexed != NULL && indexed[p]) {
                const char *ix = NULL;
                const char *plan = dt_plan(db, coll, filter, &ix);
                cr_assert_str_eq(plan, "index", "%s: explain says plan '%s'", what, plan);
                cr_assert(ix != NULL && strcmp(ix, paths[p]) == 0, "%s: explain names index '%s'",
                          what, ix ? ix : "(null)");
            }
            free(ids);
            free(want);
            free(filter);
        }
        json_decref(vals);
    }
}

/* ---- the key space ---- */

typedef struct keyset {
    shale_buf *k;
    size_t n, cap;
} keyset;

static void ks_add(keyset *s, const void *p, size_t n)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->k = realloc(s->k, s->cap * sizeof *s->k);
        cr_assert_not_null(s->k);
    }
    shale_buf b = {0};
    cr_assert_eq(buf_set(&b, p, n, NULL), SHALE_OK);
    s->k[s->n++] = b;
}

static void ks_free(keyset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        buf_free(&s->k[i]);
    }
    free(s->k);
    memset(s, 0, sizeof *s);
}

static int bytes_cmp(const void *a, size_t an, const void *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c != 0 ? c : (an < bn ? -1 : an > bn);
}

static int ks_cmp(const void *a, const void *b)
{
    const shale_buf *x = a, *y = b;
    return bytes_cmp(x->data, x->len, y->data, y->len);
}

/* A key for a message: printable bytes as they are, others as \xNN (static buffer). */
static const char *show(const void *p, size_t n)
{
    static char out[400];
    size_t w = 0;
    const uint8_t *b = p;
    for (size_t i = 0; i < n && w + 5 < sizeof out; i++) {
        if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\') {
            out[w++] = (char)b[i];
        } else {
            w += (size_t)snprintf(out + w, sizeof out - w, "\\x%02x", b[i]);
        }
    }
    out[w] = '\0';
    return out;
}

static size_t put_prefix(uint8_t *p, char tag, uint32_t cid)
{
    p[0] = 0x00;
    p[1] = 0xD0;
    p[2] = (uint8_t)tag;
    p[3] = (uint8_t)(cid >> 24);
    p[4] = (uint8_t)(cid >> 16);
    p[5] = (uint8_t)(cid >> 8);
    p[6] = (uint8_t)cid;
    return 7;
}

static size_t put_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return 4;
}

static void scan_prefix(shale_db *db, const shale_snapshot *snap, const void *prefix, size_t n,
                        keyset *keys, keyset *vals)
{
    shale_read_opts ro = {.snapshot = snap, .prefix = {prefix, n}};
    shale_iter *it = NULL;
    shale_error err = {0};
    cr_assert_eq(shale_iter_new(db, &ro, &it, &err), SHALE_OK, "%s", err.msg);
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice k = shale_iter_key(it), v = shale_iter_value(it);
        ks_add(keys, k.data, k.len);
        if (vals != NULL) {
            ks_add(vals, v.data, v.len);
        }
    }
    cr_assert_eq(shale_iter_status(it, &err), SHALE_OK, "%s", err.msg);
    shale_iter_free(it);
}

uint32_t dt_coll_id(shale_db *db, const char *coll)
{
    doc_meta m;
    shale_error err = {0};
    cr_assert_eq(docdb_meta_read(db, NULL, coll, &m, &err), SHALE_OK, "%s: %s", coll, err.msg);
    return m.cid;
}

size_t dt_count_keys(shale_db *db, char tag, uint32_t cid)
{
    uint8_t prefix[7];
    put_prefix(prefix, tag, cid);
    keyset keys = {0};
    scan_prefix(db, NULL, prefix, sizeof prefix, &keys, NULL);
    size_t n = keys.n;
    ks_free(&keys);
    return n;
}

size_t dt_verify_indexes(shale_db *db, const char *coll, const char *ctx)
{
    shale_snapshot *snap = shale_snapshot_get(db);
    cr_assert_not_null(snap);
    shale_read_opts ro = {.snapshot = snap};
    doc_meta m;
    shale_error err = {0};
    cr_assert_eq(docdb_meta_read(db, &ro, coll, &m, &err), SHALE_OK, "%s: %s", ctx, err.msg);

    /* The documents, at the snapshot. */
    uint8_t dprefix[7];
    put_prefix(dprefix, 'D', m.cid);
    keyset dkeys = {0}, dvals = {0};
    scan_prefix(db, snap, dprefix, sizeof dprefix, &dkeys, &dvals);

    for (uint16_t i = 0; i < m.nindexes; i++) {
        const doc_index *x = &m.idx[i];
        cr_assert(x->ready, "%s: index on '%s' is still building", ctx, x->path);
        uint8_t iprefix[11];
        put_prefix(iprefix, 'I', m.cid);
        put_u32be(iprefix + 7, x->iid);

        keyset want = {0};
        shale_buf k = {0};
        for (size_t d = 0; d < dkeys.n; d++) {
            shale_slice id = {(const uint8_t *)dkeys.k[d].data + 7, dkeys.k[d].len - 7};
            dval doc, idv;
            cr_assert_eq(docdb_doc_decode((shale_slice){dvals.k[d].data, dvals.k[d].len}, coll, id,
                                          &doc, &err),
                         SHALE_OK, "%s: %s", ctx, err.msg);
            cr_assert(dval_field(doc, (shale_slice){"_id", 3}, &idv) &&
                          dval_tag_of(idv) == DV_STRING &&
                          bytes_cmp(dval_str(idv).data, dval_str(idv).len, id.data, id.len) == 0,
                      "%s: document under key '%s' has another _id", ctx, show(id.data, id.len));
            cr_assert_eq(buf_set(&k, iprefix, sizeof iprefix, NULL), SHALE_OK);
            cr_assert_eq(docdb_path_key(doc, (shale_slice){x->path, x->path_len}, &k, &err),
                         SHALE_OK);
            docdb_cap_value_key(&k, sizeof iprefix); /* long values are cut (docdb.h) */
            cr_assert_eq(buf_append(&k, id.data, id.len, NULL), SHALE_OK);
            ks_add(&want, k.data, k.len);
        }
        buf_free(&k);
        qsort(want.k, want.n, sizeof *want.k, ks_cmp);

        keyset got = {0}, gotv = {0};
        scan_prefix(db, snap, iprefix, sizeof iprefix, &got, &gotv);
        for (size_t e = 0; e < got.n; e++) {
            const shale_buf *gk = &got.k[e], *gv = &gotv.k[e];
            cr_assert(
                gv->len > 0 && gv->len < gk->len - sizeof iprefix &&
                    memcmp((const uint8_t *)gk->data + gk->len - gv->len, gv->data, gv->len) == 0,
                "%s: index '%s': entry '%s' does not end with its value (the _id)", ctx, x->path,
                show(gk->data, gk->len));
        }
        size_t e = 0;
        while (e < got.n && e < want.n && ks_cmp(&got.k[e], &want.k[e]) == 0) {
            e++;
        }
        if (e < got.n || e < want.n) {
            char wbuf[400];
            snprintf(wbuf, sizeof wbuf, "%s",
                     e < want.n ? show(want.k[e].data, want.k[e].len) : "(none)");
            cr_assert_fail("%s: index '%s' holds %zu entries, its %zu documents imply %zu; first "
                           "difference at entry %zu: want '%s' got '%s'",
                           ctx, x->path, got.n, dkeys.n, want.n, e, wbuf,
                           e < got.n ? show(got.k[e].data, got.k[e].len) : "(none)");
        }
        ks_free(&want);
        ks_free(&got);
        ks_free(&gotv);
    }

    /* Nothing under the collection's id for an index the catalog does not list. */
    uint8_t all[7];
    put_prefix(all, 'I', m.cid);
    keyset every = {0};
    scan_prefix(db, snap, all, sizeof all, &every, NULL);
    for (size_t e = 0; e < every.n; e++) {
        const uint8_t *p = every.k[e].data;
        cr_assert_geq(every.k[e].len, 11u);
        uint32_t iid = (uint32_t)p[7] << 24 | (uint32_t)p[8] << 16 | (uint32_t)p[9] << 8 | p[10];
        bool listed = false;
        for (uint16_t i = 0; i < m.nindexes; i++) {
            listed = listed || m.idx[i].iid == iid;
        }
        cr_assert(listed, "%s: a stray entry of index id %u (not in the catalog): '%s'", ctx, iid,
                  show(every.k[e].data, every.k[e].len));
    }
    cr_assert_eq(every.n, dkeys.n * m.nindexes,
                 "%s: %zu index entries for %zu documents x %u "
                 "indexes",
                 ctx, every.n, dkeys.n, (unsigned)m.nindexes);
    /* No drop left unfinished: no marker of a dropped index ('Y' cid iid) or of this id as a
     * dropped collection ('X' cid). */
    uint8_t marker[7];
    put_prefix(marker, 'Y', m.cid);
    keyset markers = {0};
    scan_prefix(db, snap, marker, sizeof marker, &markers, NULL);
    put_prefix(marker, 'X', m.cid);
    scan_prefix(db, snap, marker, sizeof marker, &markers, NULL);
    cr_assert_eq(markers.n, 0u, "%s: %zu drop markers left, the first '%s'", ctx, markers.n,
                 markers.n ? show(markers.k[0].data, markers.k[0].len) : "");
    ks_free(&markers);
    size_t ndocs = dkeys.n;
    ks_free(&every);
    ks_free(&dkeys);
    ks_free(&dvals);
    shale_snapshot_release(db, snap);
    return ndocs;
}
