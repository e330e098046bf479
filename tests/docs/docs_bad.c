/*
 * Bad input to the document calls: every rejection include/shale.h documents ("Documents"),
 * each with its code and a check of its message, and the proof that a rejected call changed
 * nothing.
 *
 *   docs_bad.documents    invalid JSON, a top level that is not an object, nesting past 32,
 *                         invalid UTF-8 (values, names, overlong forms, surrogates), duplicate
 *                         names, non-string / empty / too long _id, an existing _id, too large
 *                         a document.
 *   docs_bad.writes       update changing _id, update / replace / delete / get of missing ids
 *                         and collections, bad ids and patches.
 *   docs_bad.names        collection names: empty, 65 characters, '/', ' ', '.', non-ASCII,
 *                         NULL, in every call that takes one.
 *   docs_bad.batches      batches of 0 and 1001 (1000 works), a batch with one bad document
 *                         (nothing inserted; the message names "document N"), with an existing
 *                         or repeated _id, update_many with a missing id.
 *   docs_bad.queries      limit 1001, offset 100001, malformed cursors, a cursor of another sort,
 *                         after with before, bad filters and sort specs, a streaming cursor with
 *                         a sort.
 *   docs_bad.indexes      an index on _id, a duplicate index, dropping a missing index or
 *                         collection, bad field paths.
 *   docs_bad.null_args    NULL handles and outputs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "docs_util.h"

TestSuite(docs_bad);

/* Asserts the last TU_CODE message contains `part` (case-insensitive). */
#define MSG_HAS(part)                                                                              \
    cr_assert(strcasestr(tu_last_msg, (part)) != NULL, "message '%s' does not mention '%s'",       \
              tu_last_msg, (part))

static size_t count_docs(shale_db *db, const char *coll)
{
    shale_buf out = {0};
    TU_OK(shale_coll_describe(db, coll, &out, &ERR));
    json_t *d = dt_parse(&out, "describe");
    json_t *n = json_object_get(d, "documents");
    cr_assert(json_is_integer(n), "describe has no documents count: %.*s", (int)out.len,
              (const char *)out.data);
    size_t count = (size_t)json_integer_value(n);
    json_decref(d);
    shale_buf_free(&out);
    return count;
}

/* A document nested `depth` deep: an object holding, `depth - 1` times, an object ({"a":...}) or
 * an array ([...]) around the innermost value 1. */
static char *nested(int depth, bool arrays)
{
    dt_str s = {0};
    dt_str_addf(&s, "{\"a\":");
    for (int i = 1; i < depth; i++) {
        dt_str_addf(&s, "%s", arrays ? "[" : "{\"a\":");
    }
    dt_str_addf(&s, "1");
    for (int i = 1; i < depth; i++) {
        dt_str_addf(&s, "%s", arrays ? "]" : "}");
    }
    dt_str_addf(&s, "}");
    dt_str_c(&s);
    return s.s;
}

Test(docs_bad, documents)
{
    tu_fx fx = {0};
    shale_options o = {.max_value_bytes = 4096};
    tu_fx_begin(&fx, "docs-bad-doc", &o);
    shale_db *db = fx.db;
    TU_OK(shale_coll_create(db, "c", &ERR));

    /* Invalid JSON. */
    const char *syntax[] = {"",        "{",           "{\"a\":}",   "{\"a\":1,}", "{\"a\":1} x",
                            "{'a':1}", "{\"a\":tru}", "{\"a\":1}}", "{\"a\":01}", "{\"a\":NaN}"};
    for (size_t i = 0; i < sizeof syntax / sizeof syntax[0]; i++) {
        TU_CODE(SHALE_INVALID, shale_doc_insert(db, "c", tu_str(syntax[i]), NULL, &ERR));
        MSG_HAS("JSON");
    }
    TU_CODE(SHALE_INVALID, shale_doc_insert(db, "c", (shale_slice){NULL, 3}, NULL, &ERR));

    /* Not an object at the top level. */
    const char *scalars[] = {"[]", "[{\"a\":1}]", "1", "\"s\"", "null", "true"};
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
        TU_CODE(SHALE_INVALID, shale_doc_insert(db, "c", tu_str(scalars[i]), NULL, &ERR));
        MSG_HAS("object");
    }

    /* Nesting: 32 levels are fine, 33 are not (objects, and arrays inside an object). */
    char *ok32 = nested(32, false), *bad33 = nested(33, false);
    char *ok32a = nested(32, true), *bad33a = nested(33, true);
    TU_OK(shale_doc_insert(db, "c", tu_str(ok32), NULL, &ERR));
    TU_OK(shale_doc_insert(db, "c", tu_str(ok32a), NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_insert(db, "c", tu_str(bad33), NULL, &ERR));
    MSG_HAS("deep");
    TU_CODE(SHALE_INVALID, shale_doc_insert(db, "c", tu_str(bad33a), NULL, &ERR));
    MSG_HAS("deep");
    char *deep_patch = nested(33, false);
    free(ok32);
    free(bad33);
    free(ok32a);
    free(bad33a);

    /* Invalid UTF-8: bad bytes, an overlong form, an encoded surrogate, a cut sequence, in values
     * and in names; a lone surrogate escape. */
    const char *utf8[] = {
        "{\"s\":\"\xff\"}",
        "{\"s\":\"a\xc0\xaf\"}",
        "{\"s\":\"\xed\xa0\x80\"}",
        "{\"s\":\"\xe2\x82\"}",
        "{\"\xfe\":1}",
        "{\"n\xc3\":1}",
        "{\"s\":[\"ok\",\"\x80\"]}",
        "{\"s\":\"\xf4\x90\x80\x80\"}",
    };
    for (size_t i = 0; i < sizeof utf8 / sizeof utf8[0]; i++) {
        TU_CODE(SHALE_INVALID, shale_doc_insert(db, "c", tu_str(utf8[i]), NULL, &ERR));
        MSG_HAS("UTF-8");
    }
    TU_CODE(SHALE_INVALID, shale_doc_insert(db, "c", TU_SL("{\"s\":\"\\ud800\"}"), NULL, &ERR));
    /* Valid multi-byte text is fine. */
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"s\":\"\xc3\xbc\xe6\x97\xa5\xf0\x9f\x98\x80\"}"), NULL,
                           &ERR));

    /* Duplicate names, at the top and nested. */
    TU_CODE(SHALE_INVALID, shale_doc_insert(db, "c", TU_SL("{\"a\":1,\"a\":2}"), NULL, &ERR));
    MSG_HAS("duplicate");
    TU_CODE(SHALE_INVALID,
            shale_doc_insert(db, "c", TU_SL("{\"o\":{\"x\":1,\"x\":1}}"), NULL, &ERR));
    MSG_HAS("duplicate");
    TU_CODE(SHALE_INVALID,
            shale_doc_insert(db, "c", TU_SL("{\"_id\":\"d\",\"_id\":\"d\"}"), NULL, &ERR));

    /* _id: a string of 1 .. 512 bytes. */
    const char *ids[] = {"{\"_id\":5}",       "{\"_id\":null}", "{\"_id\":true}", "{\"_id\":{}}",
                         "{\"_id\":[\"x\"]}", "{\"_id\":1.5}",  "{\"_id\":\"\"}"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        TU_CODE(SHALE_INVALID, shale_doc_insert(db, "c", tu_str(ids[i]), NULL, &ERR));
        MSG_HAS("_id");
    }
    char big[700];
    snprintf(big, sizeof big, "{\"_id\":\"%0513d\"}", 7);
    TU_CODE(SHALE_INVALID, shale_doc_insert(db, "c", tu_str(big), NULL, &ERR));
    MSG_HAS("_id");
    snprintf(big, sizeof big, "{\"_id\":\"%0512d\"}", 7);
    TU_OK(shale_doc_insert(db, "c", tu_str(big), NULL, &ERR));
    /* 512 bytes of multi-byte text (256 x "\xc3\xa9") are fine; one more character is not. */
    dt_str u = {0};
    dt_str_addf(&u, "{\"_id\":\"");
    for (int i = 0; i < 256; i++) {
        dt_str_addf(&u, "\xc3\xa9");
    }
    dt_str_addf(&u, "\"}");
    TU_OK(shale_doc_insert(db, "c", tu_str(dt_str_c(&u)), NULL, &ERR));
    u.len -= 2;
    dt_str_addf(&u, "x\"}");
    TU_CODE(SHALE_INVALID, shale_doc_insert(db, "c", tu_str(dt_str_c(&u)), NULL, &ERR));
    dt_str_free(&u);

    /* An existing _id. */
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"dup\",\"v\":1}"), NULL, &ERR));
    TU_CODE(SHALE_CONFLICT,
            shale_doc_insert(db, "c", TU_SL("{\"_id\":\"dup\",\"v\":2}"), NULL, &ERR));
    MSG_HAS("dup");
    shale_buf out = {0};
    TU_OK(shale_doc_get(db, "c", TU_SL("dup"), &out, &ERR));
    json_t *d = dt_parse(&out, "dup");
    cr_assert_eq(json_integer_value(json_object_get(d, "v")), 1,
                 "the conflicting insert changed "
                 "the document");
    json_decref(d);

    /* Too large for max_value_bytes (4096): SHALE_FULL, for insert, replace and update. */
    dt_str large = {0}, patch = {0};
    dt_str_addf(&large, "{\"_id\":\"large\",");
    dt_str_addf(&patch, "{\"s\":\"%05000d\"}", 0);
    dt_str_addn(&large, patch.s + 1, patch.len - 1);
    TU_CODE(SHALE_FULL, shale_doc_insert(db, "c", tu_str(dt_str_c(&large)), NULL, &ERR));
    TU_CODE(SHALE_FULL,
            shale_doc_replace(db, "c", TU_SL("dup"), tu_str(dt_str_c(&large)), NULL, &ERR));
    TU_CODE(SHALE_FULL,
            shale_doc_update(db, "c", TU_SL("dup"), tu_str(dt_str_c(&patch)), NULL, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "c", TU_SL("large"), &out, &ERR));
    /* A too-deep patch. */
    TU_CODE(SHALE_INVALID, shale_doc_update(db, "c", TU_SL("dup"), tu_str(deep_patch), NULL, &ERR));
    free(deep_patch);
    dt_str_free(&large);
    dt_str_free(&patch);

    /* Only the accepted documents are there: ok32, ok32a, the text, 512, 256 x e-acute, dup. */
    cr_assert_eq(count_docs(db, "c"), 6u);
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

Test(docs_bad, writes)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-bad-write", NULL);
    shale_db *db = fx.db;
    shale_buf out = {0};
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"x\",\"v\":1}"), NULL, &ERR));

    /* update cannot change _id (nor give a non-string one); the same _id is fine. */
    TU_CODE(SHALE_INVALID,
            shale_doc_update(db, "c", TU_SL("x"), TU_SL("{\"_id\":\"y\"}"), &out, &ERR));
    MSG_HAS("_id");
    TU_CODE(SHALE_INVALID, shale_doc_update(db, "c", TU_SL("x"), TU_SL("{\"_id\":5}"), &out, &ERR));
    TU_OK(shale_doc_update(db, "c", TU_SL("x"), TU_SL("{\"_id\":\"x\",\"v\":2}"), &out, &ERR));
    /* Patches are documents: objects of valid JSON. */
    TU_CODE(SHALE_INVALID, shale_doc_update(db, "c", TU_SL("x"), TU_SL("[1]"), &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_update(db, "c", TU_SL("x"), TU_SL("{"), &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_replace(db, "c", TU_SL("x"), TU_SL("{"), &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_replace(db, "c", TU_SL("x"), TU_SL("7"), &out, &ERR));
    TU_OK(shale_doc_get(db, "c", TU_SL("x"), &out, &ERR));
    json_t *d = dt_parse(&out, "x");
    json_t *want = dt_parse_text("{\"_id\":\"x\",\"v\":2}");
    cr_assert_eq(dt_cmp(d, want), 0, "rejected writes changed the document: %.*s", (int)out.len,
                 (const char *)out.data);
    json_decref(d);
    json_decref(want);

    /* Missing ids, in an existing and in a missing collection. */
    const char *colls[] = {"c", "nosuch"};
    for (int i = 0; i < 2; i++) {
        TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, colls[i], TU_SL("missing"), &out, &ERR));
        TU_CODE(SHALE_NOT_FOUND,
                shale_doc_update(db, colls[i], TU_SL("missing"), TU_SL("{\"v\":1}"), &out, &ERR));
        TU_CODE(SHALE_NOT_FOUND,
                shale_doc_replace(db, colls[i], TU_SL("missing"), TU_SL("{\"v\":1}"), &out, &ERR));
        TU_CODE(SHALE_NOT_FOUND, shale_doc_delete(db, colls[i], TU_SL("missing"), &ERR));
    }
    TU_CODE(SHALE_NOT_FOUND, shale_coll_describe(db, "nosuch", &out, &ERR));
    /* A failed write on a missing collection does not create it. */
    TU_OK(shale_coll_list(db, &out, &ERR));
    cr_assert(out.len == 5 && memcmp(out.data, "[\"c\"]", 5) == 0, "collections: %.*s",
              (int)out.len, (const char *)out.data);

    /* Bad ids as arguments. */
    char long_id[600];
    memset(long_id, 'i', 513);
    long_id[513] = '\0';
    TU_CODE(SHALE_INVALID, shale_doc_get(db, "c", (shale_slice){"", 0}, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_get(db, "c", tu_str(long_id), &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_delete(db, "c", (shale_slice){NULL, 0}, &ERR));
    TU_CODE(SHALE_INVALID,
            shale_doc_update(db, "c", tu_str(long_id), TU_SL("{\"v\":1}"), &out, &ERR));
    TU_CODE(SHALE_INVALID,
            shale_doc_replace(db, "c", (shale_slice){"", 0}, TU_SL("{\"v\":1}"), &out, &ERR));
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

Test(docs_bad, names)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-bad-names", NULL);
    shale_db *db = fx.db;
    char n65[66], n64[65];
    memset(n65, 'n', 65);
    n65[65] = '\0';
    memset(n64, 'n', 64);
    n64[64] = '\0';
    const char *bad[] = {"", n65, "a/b", "a b", "a.b", "\xc3\xa9", "a\tb", "$x", NULL};
    shale_buf out = {0};
    shale_slice doc = TU_SL("{\"v\":1}"), id = TU_SL("x");
    shale_doc_query q = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *n = bad[i];
        TU_CODE(SHALE_INVALID, shale_coll_create(db, n, &ERR));
        MSG_HAS("collection name");
        TU_CODE(SHALE_INVALID, shale_coll_drop(db, n, &ERR));
        TU_CODE(SHALE_INVALID, shale_coll_describe(db, n, &out, &ERR));
        TU_CODE(SHALE_INVALID, shale_doc_insert(db, n, doc, &out, &ERR));
        MSG_HAS("collection name");
        TU_CODE(SHALE_INVALID, shale_doc_insert_many(db, n, &doc, 1, &out, &ERR));
        TU_CODE(SHALE_INVALID, shale_doc_get(db, n, id, &out, &ERR));
        TU_CODE(SHALE_INVALID, shale_doc_update(db, n, id, doc, &out, &ERR));
        TU_CODE(SHALE_INVALID, shale_doc_update_many(db, n, &id, &doc, 1, &out, &ERR));
        TU_CODE(SHALE_INVALID, shale_doc_replace(db, n, id, doc, &out, &ERR));
        TU_CODE(SHALE_INVALID, shale_doc_delete(db, n, id, &ERR));
        TU_CODE(SHALE_INVALID, shale_doc_find(db, n, &q, &out, &ERR));
        TU_CODE(SHALE_INVALID, shale_doc_explain(db, n, &q, &out, &ERR));
        shale_doc_cursor *c = NULL;
        TU_CODE(SHALE_INVALID, shale_doc_cursor_open(db, n, &q, &c, &ERR));
        TU_CODE(SHALE_INVALID, shale_index_create(db, n, "f", &ERR));
        TU_CODE(SHALE_INVALID, shale_index_drop(db, n, "f", &ERR));
        TU_CODE(SHALE_INVALID, shale_index_list(db, n, &out, &ERR));
    }
    TU_OK(shale_coll_list(db, &out, &ERR));
    cr_assert(out.len == 2 && memcmp(out.data, "[]", 2) == 0, "collections: %.*s", (int)out.len,
              (const char *)out.data);
    /* The edges that are fine: 64 characters, and every allowed character. */
    TU_OK(shale_coll_create(db, n64, &ERR));
    TU_OK(shale_doc_insert(db, "AZaz09_-", doc, NULL, &ERR));
    TU_OK(shale_doc_insert(db, "_", doc, NULL, &ERR));
    TU_OK(shale_doc_insert(db, "-", doc, NULL, &ERR));
    TU_OK(shale_coll_list(db, &out, &ERR));
    json_t *list = dt_parse(&out, "list");
    cr_assert_eq(json_array_size(list), 4u);
    json_decref(list);
    /* Creating an existing collection is a conflict. */
    TU_CODE(SHALE_CONFLICT, shale_coll_create(db, n64, &ERR));
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

Test(docs_bad, batches)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-bad-batch", NULL);
    shale_db *db = fx.db;
    enum { N = 1001 };
    shale_slice *docs = calloc(N, sizeof *docs), *ids = calloc(N, sizeof *ids);
    char(*idtext)[16] = calloc(N, sizeof *idtext);
    char(*doctext)[48] = calloc(N, sizeof *doctext);
    for (int i = 0; i < N; i++) {
        snprintf(idtext[i], sizeof idtext[i], "b%04d", i);
        snprintf(doctext[i], sizeof doctext[i], "{\"_id\":\"b%04d\",\"v\":%d}", i, i);
        ids[i] = tu_str(idtext[i]);
        docs[i] = tu_str(doctext[i]);
    }
    shale_buf out = {0};
    TU_CODE(SHALE_INVALID, shale_doc_insert_many(db, "c", docs, 0, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_insert_many(db, "c", docs, 1001, &out, &ERR));
    MSG_HAS("1001");
    TU_CODE(SHALE_INVALID, shale_doc_insert_many(db, "c", NULL, 3, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_update_many(db, "c", ids, docs, 0, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_update_many(db, "c", ids, docs, 1001, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_update_many(db, "c", NULL, docs, 2, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_update_many(db, "c", ids, NULL, 2, &out, &ERR));
    /* Nothing was created. */
    TU_OK(shale_coll_list(db, &out, &ERR));
    cr_assert(out.len == 2 && memcmp(out.data, "[]", 2) == 0);

    /* One bad document among five: nothing inserted, and the message names it. */
    const char *bad[] = {"{\"v\":", "[1]", "{\"_id\":3}", "{\"a\":1,\"a\":1}"};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        shale_slice five[5] = {docs[0], docs[1], docs[2], tu_str(bad[b]), docs[4]};
        TU_CODE(SHALE_INVALID, shale_doc_insert_many(db, "c", five, 5, &out, &ERR));
        cr_assert(strncmp(tu_last_msg, "document 3", 10) == 0 ||
                      strstr(tu_last_msg, "document 3") != NULL,
                  "message '%s' does not name document 3", tu_last_msg);
    }
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "c", ids[0], &out, &ERR));

    /* Exactly 1000 work, with their output. */
    TU_OK(shale_doc_insert_many(db, "c", docs, 1000, &out, &ERR));
    json_t *arr = dt_parse(&out, "insert_many 1000");
    cr_assert_eq(json_array_size(arr), 1000u);
    json_decref(arr);
    shale_buf d = {0};
    TU_OK(shale_coll_describe(db, "c", &d, &ERR));
    json_t *desc = dt_parse(&d, "describe");
    cr_assert_eq(json_integer_value(json_object_get(desc, "documents")), 1000);
    json_decref(desc);
    shale_buf_free(&d);

    /* An existing _id in the batch, or one _id twice: conflict, nothing inserted. */
    char t1[64], t2[64];
    snprintf(t1, sizeof t1, "{\"_id\":\"new1\"}");
    snprintf(t2, sizeof t2, "{\"_id\":\"new2\"}");
    shale_slice clash[3] = {tu_str(t1), docs[500], tu_str(t2)};
    TU_CODE(SHALE_CONFLICT, shale_doc_insert_many(db, "c", clash, 3, &out, &ERR));
    MSG_HAS("b0500");
    shale_slice twice[3] = {tu_str(t1), tu_str(t2), tu_str(t1)};
    TU_CODE(SHALE_CONFLICT, shale_doc_insert_many(db, "c", twice, 3, &out, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "c", TU_SL("new1"), &out, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "c", TU_SL("new2"), &out, &ERR));

    /* update_many: 1000 work; a missing id among them fails all, naming the id; a bad patch
     * fails all, naming its index. */
    shale_slice *patches = calloc(N, sizeof *patches);
    for (int i = 0; i < N; i++) {
        patches[i] = TU_SL("{\"u\":1}");
    }
    ids[7] = TU_SL("b9999");
    TU_CODE(SHALE_NOT_FOUND, shale_doc_update_many(db, "c", ids, patches, 1000, &out, &ERR));
    MSG_HAS("b9999");
    ids[7] = tu_str(idtext[7]);
    patches[9] = TU_SL("{\"_id\":\"other\"}");
    TU_CODE(SHALE_INVALID, shale_doc_update_many(db, "c", ids, patches, 1000, &out, &ERR));
    MSG_HAS("document 9");
    patches[9] = TU_SL("{\"u\":1}");
    char *none = dt_find_ids(db, "c", "{\"u\":1}", "after failed update_many");
    cr_assert_str_eq(none, "", "failed update_many calls changed documents");
    free(none);
    TU_OK(shale_doc_update_many(db, "c", ids, patches, 1000, &out, &ERR));
    json_t *page = NULL;
    shale_doc_query q = {.filter = TU_SL("{\"u\":1}"), .limit = 1};
    page = dt_find(db, "c", &q, "after update_many");
    cr_assert_eq(json_integer_value(json_object_get(page, "total")), 1000);
    json_decref(page);

    free(patches);
    free(docs);
    free(ids);
    free(idtext);
    free(doctext);
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

/* A next_cursor of `sort` over collection "c" (which has more than 2 documents). */
static char *a_cursor(shale_db *db, const char *sort)
{
    shale_doc_query q = {.sort = tu_str(sort), .limit = 2};
    json_t *page = dt_find(db, "c", &q, "cursor source");
    json_t *c = json_object_get(page, "next_cursor");
    cr_assert(json_is_string(c));
    char *s = strdup(json_string_value(c));
    json_decref(page);
    return s;
}

Test(docs_bad, queries)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-bad-query", NULL);
    shale_db *db = fx.db;
    for (int i = 0; i < 10; i++) {
        char t[64];
        snprintf(t, sizeof t, "{\"_id\":\"q%d\",\"x\":%d}", i, i % 3);
        TU_OK(shale_doc_insert(db, "c", tu_str(t), NULL, &ERR));
    }
    shale_buf out = {0};
    shale_doc_query q = {.limit = 1001};
    TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));
    MSG_HAS("limit");
    TU_CODE(SHALE_INVALID, shale_doc_explain(db, "c", &q, &out, &ERR));
    q = (shale_doc_query){.limit = UINT32_MAX};
    TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));
    q = (shale_doc_query){.limit = 1000};
    TU_OK(shale_doc_find(db, "c", &q, &out, &ERR));
    q = (shale_doc_query){.offset = 100001};
    TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));
    MSG_HAS("offset");
    q = (shale_doc_query){.offset = UINT64_MAX};
    TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));
    q = (shale_doc_query){.offset = 100000, .limit = 1000};
    json_t *page = dt_find(db, "c", &q, "offset 100000");
    cr_assert_eq(json_array_size(json_object_get(page, "documents")), 0u);
    cr_assert_eq(json_integer_value(json_object_get(page, "total")), 10);
    json_decref(page);

    /* Malformed cursors, as after and as before. */
    char *good = a_cursor(db, "x");
    char odd[256], flipped_version[256], nonhex[256];
    snprintf(odd, sizeof odd, "%s0", good);
    snprintf(flipped_version, sizeof flipped_version, "%s", good);
    flipped_version[1] = flipped_version[1] == '1' ? '2' : '1';
    snprintf(nonhex, sizeof nonhex, "%s", good);
    nonhex[strlen(nonhex) / 2] = 'g';
    const char *malformed[] = {"zz", "abc",           "01",   "0102030405", "not a cursor",
                               odd,  flipped_version, nonhex, "\"x\"",      "ff"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        for (int side = 0; side < 2; side++) {
            q = (shale_doc_query){.sort = TU_SL("x")};
            if (side) {
                q.before = tu_str(malformed[i]);
            } else {
                q.after = tu_str(malformed[i]);
            }
            TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));
            MSG_HAS("cursor");
        }
    }
    /* A cursor of another sort order. */
    const char *others[] = {"-x", "", "x,_id", "y"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        q = (shale_doc_query){.sort = tu_str(others[i]), .after = tu_str(good)};
        TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));
        MSG_HAS("sort");
        q = (shale_doc_query){.sort = tu_str(others[i]), .before = tu_str(good)};
        TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));
    }
    char *byid = a_cursor(db, "");
    q = (shale_doc_query){.sort = TU_SL("x"), .after = tu_str(byid)};
    TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));
    /* The right sort takes it; after and before together do not. */
    q = (shale_doc_query){.sort = TU_SL("x"), .after = tu_str(good)};
    TU_OK(shale_doc_find(db, "c", &q, &out, &ERR));
    q = (shale_doc_query){.sort = TU_SL("x"), .after = tu_str(good), .before = tu_str(good)};
    TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));
    free(good);
    free(byid);

    /* Bad filters and sort / field lists. */
    const char *filters[] = {
        "{\"$foo\":1}",           "[1]",          "{",        "{\"x\":{\"$in\":5}}",
        "{\"x\":{\"$bogus\":1}}", "{\"$or\":[]}", "{\"\":1}", "7"};
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
        q = (shale_doc_query){.filter = tu_str(filters[i])};
        TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));
        TU_CODE(SHALE_INVALID, shale_doc_explain(db, "c", &q, &out, &ERR));
        shale_doc_cursor *c = NULL;
        TU_CODE(SHALE_INVALID, shale_doc_cursor_open(db, "c", &q, &c, &ERR));
    }
    const char *sorts[] = {"a,,b", ",", "-", "a,", ",a"};
    for (size_t i = 0; i < sizeof sorts / sizeof sorts[0]; i++) {
        q = (shale_doc_query){.sort = tu_str(sorts[i])};
        TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));
        MSG_HAS("sort");
        q = (shale_doc_query){.fields = tu_str(sorts[i] + (sorts[i][0] == '-'))};
        if (q.fields.len > 0) {
            TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));
        }
    }
    q = (shale_doc_query){.neq = 1};
    TU_CODE(SHALE_INVALID, shale_doc_find(db, "c", &q, &out, &ERR));

    /* A streaming cursor takes no sort. */
    shale_doc_cursor *c = NULL;
    q = (shale_doc_query){.sort = TU_SL("x")};
    TU_CODE(SHALE_INVALID, shale_doc_cursor_open(db, "c", &q, &c, &ERR));
    MSG_HAS("sort");
    q = (shale_doc_query){.sort = TU_SL("-x,y")};
    TU_CODE(SHALE_INVALID, shale_doc_cursor_open(db, "c", &q, &c, &ERR));
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

Test(docs_bad, indexes)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-bad-index", NULL);
    shale_db *db = fx.db;
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"1\",\"f\":1}"), NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_index_create(db, "c", "_id", &ERR));
    MSG_HAS("_id");
    /* (Dropping the _id index is not documented; it must at least fail.) */
    cr_assert_neq(shale_index_drop(db, "c", "_id", NULL), SHALE_OK);
    TU_OK(shale_index_create(db, "c", "f", &ERR));
    TU_CODE(SHALE_CONFLICT, shale_index_create(db, "c", "f", &ERR));
    MSG_HAS("index");
    TU_CODE(SHALE_NOT_FOUND, shale_index_drop(db, "c", "g", &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_index_drop(db, "nosuch", "f", &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_coll_drop(db, "nosuch", &ERR));
    shale_buf out = {0};
    TU_CODE(SHALE_NOT_FOUND, shale_index_list(db, "nosuch", &out, &ERR));
    const char *paths[] = {"", ".a", "a.", "a..b", NULL};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        TU_CODE(SHALE_INVALID, shale_index_create(db, "c", paths[i], &ERR));
        TU_CODE(SHALE_INVALID, shale_index_drop(db, "c", paths[i], &ERR));
    }
    /* Dropping works once, then the index is missing. */
    TU_OK(shale_index_drop(db, "c", "f", &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_index_drop(db, "c", "f", &ERR));
    TU_OK(shale_index_list(db, "c", &out, &ERR));
    json_t *list = dt_parse(&out, "index list");
    cr_assert_eq(json_array_size(list), 1u);
    json_decref(list);
    dt_verify_indexes(db, "c", "after the drop");  /* no entry or marker left */
    TU_OK(shale_index_create(db, "c", "f", &ERR)); /* and it can be created again */
    dt_verify_indexes(db, "c", "re-created");
    /* A dropped collection is gone for the second drop. */
    TU_OK(shale_coll_drop(db, "c", &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_coll_drop(db, "c", &ERR));
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

Test(docs_bad, null_args)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-bad-null", NULL);
    shale_buf out = {0};
    shale_slice doc = TU_SL("{}"), id = TU_SL("x");
    shale_doc_query q = {0};
    shale_doc_cursor *c = NULL;
    TU_CODE(SHALE_INVALID, shale_coll_create(NULL, "c", &ERR));
    TU_CODE(SHALE_INVALID, shale_coll_drop(NULL, "c", &ERR));
    TU_CODE(SHALE_INVALID, shale_coll_list(NULL, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_coll_list(fx.db, NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_coll_describe(NULL, "c", &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_insert(NULL, "c", doc, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_get(NULL, "c", id, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_update(NULL, "c", id, doc, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_replace(NULL, "c", id, doc, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_delete(NULL, "c", id, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_find(NULL, "c", &q, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_find(fx.db, "c", &q, NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_explain(NULL, "c", &q, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_cursor_open(NULL, "c", &q, &c, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_cursor_open(fx.db, "c", &q, NULL, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_cursor_next(NULL, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_index_create(NULL, "c", "f", &ERR));
    TU_CODE(SHALE_INVALID, shale_index_drop(NULL, "c", "f", &ERR));
    TU_CODE(SHALE_INVALID, shale_index_list(NULL, "c", &out, &ERR));
    shale_doc_cursor_close(NULL);
    /* The calls work without an err. */
    cr_assert_eq(shale_doc_insert(fx.db, "c", TU_SL("{"), NULL, NULL), SHALE_INVALID);
    cr_assert_eq(shale_doc_get(fx.db, "c", id, &out, NULL), SHALE_NOT_FOUND);
    /* A NULL query is the default query. */
    TU_OK(shale_doc_insert(fx.db, "c", TU_SL("{\"_id\":\"x\"}"), NULL, &ERR));
    json_t *page = dt_find(fx.db, "c", NULL, "NULL query");
    cr_assert_eq(json_integer_value(json_object_get(page, "total")), 1);
    json_decref(page);
    TU_OK(shale_doc_cursor_open(fx.db, "c", NULL, &c, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_cursor_next(c, NULL, &ERR));
    TU_OK(shale_doc_cursor_next(c, &out, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_cursor_next(c, &out, &ERR));
    shale_doc_cursor_close(c);
    shale_buf_free(&out);
    tu_fx_end(&fx);
}
