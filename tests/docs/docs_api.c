/*
 * The document calls' behaviour (include/shale.h, "Documents").
 *
 *   docs_api.generated_ids       24 hex digits, unique, increasing in insertion order (also after
 *                                a reopen); find by _id returns them in insertion order.
 *   docs_api.client_ids          a client _id is kept (unicode, NUL bytes, 512 bytes).
 *   docs_api.write_outputs       the _many calls return arrays (of one document too).
 *   docs_api.update_replace_delete
 *                                update is a shallow merge, replace keeps the _id, the outputs
 *                                equal what get returns, get after delete is NOT_FOUND.
 *   docs_api.list_and_describe   the collection list (sorted), describe (documents, bytes,
 *                                created_ms, indexes with their entries), the index list.
 *   docs_api.drop_collection     a drop removes the documents and every index entry (the key space
 *                                under its id is empty) and a re-created collection of the same
 *                                name is empty.
 *   docs_api.streaming_cursor    every match in _id order, with a filter and go-db pairs; it reads
 *                                one snapshot (writes during the iteration are not seen).
 *   docs_api.eq_pairs            the go-db query model (eq_names / eq_values) in find.
 *   docs_api.many_collections    2000 collections with one document each, through a reopen: the
 *                                list returns all 2000 sorted and each keeps its document.
 *   docs_api.apply_mixed_operations
 *                                shale_doc_apply: inserts, updates, replaces and deletes across
 *                                two collections (one indexed) in one call, later operations
 *                                seeing earlier ones; a failing operation anywhere leaves nothing
 *                                applied (documents and index entries), its message naming it;
 *                                bad operations are refused before anything runs.
 *   docs_api.catalog_changes_reach_readers
 *                                reads right after a drop, a re-creation, an index creation or
 *                                drop see the new catalog (reads keep collection metas in a cache,
 *                                catcache.h); with a thread dropping and re-creating a collection
 *                                while readers read it, no reader ever sees an older document
 *                                after a newer one (a stale cached meta would show the dropped
 *                                collection's document).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "docs_util.h"

TestSuite(docs_api);

static bool is_hex24(const char *s)
{
    return strlen(s) == 24 && strspn(s, "0123456789abcdef") == 24;
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Inserts json into coll and returns the stored _id (malloc'ed). */
static char *insert_id(shale_db *db, const char *coll, const char *json)
{
    shale_buf out = {0};
    TU_OK(shale_doc_insert(db, coll, tu_str(json), &out, &ERR));
    json_t *d = dt_parse(&out, json);
    char *id = strdup(dt_id(d));
    json_decref(d);
    shale_buf_free(&out);
    return id;
}

static json_t *get_doc(shale_db *db, const char *coll, shale_slice id)
{
    shale_buf out = {0};
    TU_OK(shale_doc_get(db, coll, id, &out, &ERR));
    json_t *d = dt_parse(&out, "get");
    shale_buf_free(&out);
    return d;
}

static void expect_doc(shale_db *db, const char *coll, const char *id, const char *want_json)
{
    json_t *got = get_doc(db, coll, tu_str(id)), *want = dt_parse_text(want_json);
    char *text = dt_dump(got);
    cr_assert_eq(dt_cmp(got, want), 0, "'%s' is %s, want %s", id, text, want_json);
    free(text);
    json_decref(got);
    json_decref(want);
}

Test(docs_api, generated_ids)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-genid", NULL);
    enum { N = 300 };
    char *ids[N + 50];
    for (int i = 0; i < N + 50; i++) {
        if (i == N) {
            tu_fx_reopen(&fx, NULL);
        }
        char text[64];
        snprintf(text, sizeof text, "{\"i\":%d}", i);
        ids[i] = insert_id(fx.db, "g", text);
        cr_assert(is_hex24(ids[i]), "generated id '%s' is not 24 hex digits", ids[i]);
        if (i > 0) {
            cr_assert_gt(strcmp(ids[i], ids[i - 1]), 0, "id %d '%s' not after '%s'", i, ids[i],
                         ids[i - 1]);
        }
    }
    /* Each is stored under its id, and find by _id returns insertion order. */
    shale_doc_query q = {.limit = 1000};
    json_t *page = dt_find(fx.db, "g", &q, "all");
    json_t *docs = json_object_get(page, "documents");
    cr_assert_eq(json_array_size(docs), (size_t)N + 50);
    for (int i = 0; i < N + 50; i++) {
        json_t *d = json_array_get(docs, (size_t)i);
        cr_assert_str_eq(dt_id(d), ids[i]);
        cr_assert_eq(json_integer_value(json_object_get(d, "i")), i);
    }
    json_decref(page);
    /* insert_many generates ids too, increasing within the batch. */
    shale_slice many[3] = {TU_SL("{}"), TU_SL("{\"x\":1}"), TU_SL("{}")};
    shale_buf out = {0};
    TU_OK(shale_doc_insert_many(fx.db, "g", many, 3, &out, &ERR));
    json_t *arr = dt_parse(&out, "insert_many");
    cr_assert_eq(json_array_size(arr), 3u);
    const char *prev = ids[N + 49];
    for (size_t i = 0; i < 3; i++) {
        const char *id = dt_id(json_array_get(arr, i));
        cr_assert(is_hex24(id));
        cr_assert_gt(strcmp(id, prev), 0);
        prev = id;
    }
    json_decref(arr);
    shale_buf_free(&out);
    for (int i = 0; i < N + 50; i++) {
        free(ids[i]);
    }
    tu_fx_end(&fx);
}

Test(docs_api, client_ids)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-clientid", NULL);
    shale_db *db = fx.db;
    shale_buf out = {0};
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"x\":1,\"_id\":\"mine\"}"), &out, &ERR));
    json_t *d = dt_parse(&out, "insert");
    cr_assert_str_eq(dt_id(d), "mine");
    json_decref(d);
    expect_doc(db, "c", "mine", "{\"_id\":\"mine\",\"x\":1}");
    /* Unicode, and a NUL byte inside the id. */
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"\xc3\xbc-1\"}"), NULL, &ERR));
    expect_doc(db, "c", "\xc3\xbc-1", "{\"_id\":\"\xc3\xbc-1\"}");
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"a\\u0000b\",\"v\":2}"), &out, &ERR));
    TU_OK(shale_doc_get(db, "c", TU_SL("a\0b"), &out, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "c", TU_SL("a"), &out, &ERR));
    /* Ids that are prefixes of one another are distinct documents. */
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"mi\",\"x\":2}"), NULL, &ERR));
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"mine2\",\"x\":3}"), NULL, &ERR));
    expect_doc(db, "c", "mine", "{\"_id\":\"mine\",\"x\":1}");
    TU_OK(shale_doc_delete(db, "c", TU_SL("mi"), &ERR));
    expect_doc(db, "c", "mine", "{\"_id\":\"mine\",\"x\":1}");
    expect_doc(db, "c", "mine2", "{\"_id\":\"mine2\",\"x\":3}");
    /* The same id in another collection is another document. */
    TU_OK(shale_doc_insert(db, "other", TU_SL("{\"_id\":\"mine\",\"x\":9}"), NULL, &ERR));
    expect_doc(db, "c", "mine", "{\"_id\":\"mine\",\"x\":1}");
    expect_doc(db, "other", "mine", "{\"_id\":\"mine\",\"x\":9}");
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

Test(docs_api, update_replace_delete)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-urd", NULL);
    shale_db *db = fx.db;
    shale_buf out = {0};
    TU_OK(shale_doc_insert(
        db, "c", TU_SL("{\"_id\":\"k\",\"a\":{\"x\":1,\"y\":2},\"b\":1,\"n\":null}"), NULL, &ERR));
    /* A shallow merge: "a" is replaced whole, "c" added, "b" kept, a field set to null stays. */
    TU_OK(shale_doc_update(db, "c", TU_SL("k"), TU_SL("{\"a\":{\"x\":5},\"c\":[3],\"n\":false}"),
                           &out, &ERR));
    const char *merged = "{\"_id\":\"k\",\"a\":{\"x\":5},\"b\":1,\"c\":[3],\"n\":false}";
    json_t *got = dt_parse(&out, "update out"), *want = dt_parse_text(merged);
    cr_assert_eq(dt_cmp(got, want), 0, "update returned %.*s", (int)out.len,
                 (const char *)out.data);
    json_decref(got);
    json_decref(want);
    expect_doc(db, "c", "k", merged);
    TU_OK(shale_doc_update(db, "c", TU_SL("k"), TU_SL("{}"), NULL, &ERR));
    TU_OK(shale_doc_update(db, "c", TU_SL("k"), TU_SL("{\"b\":null}"), NULL, &ERR));
    expect_doc(db, "c", "k", "{\"_id\":\"k\",\"a\":{\"x\":5},\"b\":null,\"c\":[3],\"n\":false}");

    /* Replace: the whole document, _id kept whatever the body says. */
    TU_OK(shale_doc_replace(db, "c", TU_SL("k"), TU_SL("{\"_id\":\"other\",\"z\":1}"), &out, &ERR));
    got = dt_parse(&out, "replace out");
    want = dt_parse_text("{\"_id\":\"k\",\"z\":1}");
    cr_assert_eq(dt_cmp(got, want), 0, "replace returned %.*s", (int)out.len,
                 (const char *)out.data);
    json_decref(got);
    json_decref(want);
    expect_doc(db, "c", "k", "{\"_id\":\"k\",\"z\":1}");
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "c", TU_SL("other"), &out, &ERR));
    TU_OK(shale_doc_replace(db, "c", TU_SL("k"), TU_SL("{}"), NULL, &ERR));
    expect_doc(db, "c", "k", "{\"_id\":\"k\"}");

    /* Delete: gone for get, find, a second delete, update and replace; insertable again. */
    TU_OK(shale_doc_delete(db, "c", TU_SL("k"), &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "c", TU_SL("k"), &out, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_delete(db, "c", TU_SL("k"), &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_update(db, "c", TU_SL("k"), TU_SL("{}"), &out, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_replace(db, "c", TU_SL("k"), TU_SL("{}"), &out, &ERR));
    char *ids = dt_find_ids(db, "c", "", "after delete");
    cr_assert_str_eq(ids, "");
    free(ids);
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"k\",\"again\":true}"), NULL, &ERR));
    expect_doc(db, "c", "k", "{\"_id\":\"k\",\"again\":true}");
    /* And it all holds after a reopen. */
    tu_fx_reopen(&fx, NULL);
    expect_doc(fx.db, "c", "k", "{\"_id\":\"k\",\"again\":true}");
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

/* The _many calls return a JSON array (also of one document), the single calls one document;
 * a NULL out is fine. */
Test(docs_api, write_outputs)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-outputs", NULL);
    shale_db *db = fx.db;
    shale_buf out = {0};
    shale_slice one = TU_SL("{\"_id\":\"a\",\"v\":1}"), id = TU_SL("a");
    TU_OK(shale_doc_insert_many(db, "c", &one, 1, &out, &ERR));
    json_t *j = dt_parse(&out, "insert_many of 1");
    cr_assert(json_is_array(j) && json_array_size(j) == 1, "insert_many of 1 returned %.*s",
              (int)out.len, (const char *)out.data);
    cr_assert_str_eq(dt_id(json_array_get(j, 0)), "a");
    json_decref(j);
    shale_slice patch = TU_SL("{\"v\":2}");
    TU_OK(shale_doc_update_many(db, "c", &id, &patch, 1, &out, &ERR));
    j = dt_parse(&out, "update_many of 1");
    cr_assert(json_is_array(j) && json_array_size(j) == 1, "update_many of 1 returned %.*s",
              (int)out.len, (const char *)out.data);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(j, 0), "v")), 2);
    json_decref(j);
    TU_OK(shale_doc_update(db, "c", id, TU_SL("{\"v\":3}"), &out, &ERR));
    j = dt_parse(&out, "update");
    cr_assert(json_is_object(j), "update returned %.*s", (int)out.len, (const char *)out.data);
    json_decref(j);
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"b\"}"), &out, &ERR));
    j = dt_parse(&out, "insert");
    cr_assert(json_is_object(j), "insert returned %.*s", (int)out.len, (const char *)out.data);
    json_decref(j);
    shale_slice two[2] = {TU_SL("{\"_id\":\"c\"}"), TU_SL("{\"_id\":\"d\"}")};
    TU_OK(shale_doc_insert_many(db, "c", two, 2, NULL, &ERR));
    TU_OK(shale_doc_replace(db, "c", id, TU_SL("{}"), NULL, &ERR));
    TU_OK(shale_doc_update(db, "c", id, TU_SL("{}"), NULL, &ERR));
    char *ids = dt_find_ids(db, "c", "", "all");
    cr_assert_str_eq(ids, "a,b,c,d");
    free(ids);
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

Test(docs_api, list_and_describe)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-describe", NULL);
    shale_db *db = fx.db;
    shale_buf out = {0};
    uint64_t t0 = now_ms();
    TU_OK(shale_coll_list(db, &out, &ERR));
    cr_assert(out.len == 2 && memcmp(out.data, "[]", 2) == 0);
    TU_OK(shale_coll_create(db, "b", &ERR));
    TU_OK(shale_doc_insert(db, "a", TU_SL("{\"_id\":\"1\",\"f\":1}"), NULL, &ERR));
    TU_OK(shale_doc_insert(db, "a", TU_SL("{\"_id\":\"2\",\"f\":2,\"g\":\"x\"}"), NULL, &ERR));
    TU_OK(shale_doc_insert(db, "a", TU_SL("{\"_id\":\"3\"}"), NULL, &ERR));
    TU_OK(shale_coll_create(db, "C", &ERR));
    TU_OK(shale_coll_create(db, "a-b", &ERR));
    TU_OK(shale_coll_list(db, &out, &ERR));
    json_t *list = dt_parse(&out, "list"), *want = dt_parse_text("[\"C\",\"a\",\"a-b\",\"b\"]");
    cr_assert(json_equal(list, want), "list %.*s", (int)out.len, (const char *)out.data);
    json_decref(list);
    json_decref(want);

    TU_OK(shale_index_create(db, "a", "f", &ERR));
    TU_OK(shale_index_create(db, "a", "g", &ERR));
    TU_OK(shale_coll_describe(db, "a", &out, &ERR));
    json_t *d = dt_parse(&out, "describe");
    char *text = dt_dump(d);
    cr_assert_str_eq(json_string_value(json_object_get(d, "name")), "a", "%s", text);
    cr_assert_eq(json_integer_value(json_object_get(d, "documents")), 3, "%s", text);
    cr_assert_gt(json_integer_value(json_object_get(d, "bytes")), 0, "%s", text);
    json_int_t created = json_integer_value(json_object_get(d, "created_ms"));
    cr_assert(created >= (json_int_t)t0 - 1000 && created <= (json_int_t)now_ms() + 1000,
              "created_ms %lld (now %llu): %s", (long long)created, (unsigned long long)now_ms(),
              text);
    json_t *ix = json_object_get(d, "indexes");
    cr_assert(json_is_array(ix) && json_array_size(ix) == 3, "%s", text);
    const char *fields[] = {"_id", "f", "g"};
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(ix, i);
        cr_assert_str_eq(json_string_value(json_object_get(x, "field")), fields[i], "%s", text);
        cr_assert_str_eq(json_string_value(json_object_get(x, "state")), "ready", "%s", text);
        /* Every index has one entry per document (a missing field is indexed as null). */
        json_t *entries = json_object_get(x, "entries");
        cr_expect(json_is_integer(entries) && json_integer_value(entries) == 3,
                  "index '%s' of describe has no entries count 3: %s", fields[i], text);
    }
    free(text);
    json_decref(d);

    TU_OK(shale_index_list(db, "a", &out, &ERR));
    list = dt_parse(&out, "index list");
    want = dt_parse_text("[{\"field\":\"_id\",\"state\":\"ready\"},{\"field\":\"f\",\"state\":"
                         "\"ready\"},{\"field\":\"g\",\"state\":\"ready\"}]");
    cr_assert(json_equal(list, want), "index list %.*s", (int)out.len, (const char *)out.data);
    json_decref(list);
    json_decref(want);

    /* An empty collection. */
    TU_OK(shale_coll_describe(db, "b", &out, &ERR));
    d = dt_parse(&out, "describe b");
    cr_assert_eq(json_integer_value(json_object_get(d, "documents")), 0);
    cr_assert_eq(json_integer_value(json_object_get(d, "bytes")), 0);
    cr_assert_eq(json_array_size(json_object_get(d, "indexes")), 1u);
    json_decref(d);
    /* A delete is counted. */
    TU_OK(shale_doc_delete(db, "a", TU_SL("2"), &ERR));
    TU_OK(shale_coll_describe(db, "a", &out, &ERR));
    d = dt_parse(&out, "describe after delete");
    cr_assert_eq(json_integer_value(json_object_get(d, "documents")), 2);
    json_t *f = json_array_get(json_object_get(d, "indexes"), 1);
    cr_assert_eq(json_integer_value(json_object_get(f, "entries")), 2);
    json_decref(d);
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

Test(docs_api, drop_collection)
{
    tu_fx fx = {0};
    shale_options o = tu_small_lsm_options(4);
    tu_fx_begin(&fx, "docs-drop", &o);
    shale_db *db = fx.db;
    /* Two collections, so the drop must leave the other alone. */
    for (int i = 0; i < 1500; i++) {
        char t[96];
        snprintf(t, sizeof t, "{\"_id\":\"d%04d\",\"f\":%d,\"g\":\"%d\",\"pad\":\"%040d\"}", i,
                 i % 10, i % 7, i);
        TU_OK(shale_doc_insert(db, i % 3 ? "gone" : "kept", tu_str(t), NULL, &ERR));
    }
    TU_OK(shale_index_create(db, "gone", "f", &ERR));
    TU_OK(shale_index_create(db, "gone", "g", &ERR));
    TU_OK(shale_index_create(db, "kept", "f", &ERR));
    uint32_t cid = dt_coll_id(db, "gone"), kept = dt_coll_id(db, "kept");
    cr_assert_eq(dt_count_keys(db, 'D', cid), 1000u);
    cr_assert_eq(dt_count_keys(db, 'I', cid), 2000u);
    TU_OK(shale_coll_drop(db, "gone", &ERR));

    /* Nothing left under its id: documents, index entries, the drop marker. */
    cr_assert_eq(dt_count_keys(db, 'D', cid), 0u);
    cr_assert_eq(dt_count_keys(db, 'I', cid), 0u);
    cr_assert_eq(dt_count_keys(db, 'X', cid), 0u);
    shale_buf out = {0};
    TU_CODE(SHALE_NOT_FOUND, shale_coll_describe(db, "gone", &out, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "gone", TU_SL("d0001"), &out, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_index_list(db, "gone", &out, &ERR));
    char *ids = dt_find_ids(db, "gone", "", "dropped");
    cr_assert_str_eq(ids, "");
    free(ids);
    TU_OK(shale_coll_list(db, &out, &ERR));
    cr_assert(out.len == 8 && memcmp(out.data, "[\"kept\"]", 8) == 0, "%.*s", (int)out.len,
              (const char *)out.data);
    /* The other collection is whole. */
    cr_assert_eq(dt_verify_indexes(db, "kept", "kept"), 500u);
    cr_assert_eq(dt_count_keys(db, 'D', kept), 500u);

    /* Re-created: empty, no indexes but _id, a new id. */
    TU_OK(shale_coll_create(db, "gone", &ERR));
    cr_assert_neq(dt_coll_id(db, "gone"), cid);
    TU_OK(shale_coll_describe(db, "gone", &out, &ERR));
    json_t *d = dt_parse(&out, "describe recreated");
    cr_assert_eq(json_integer_value(json_object_get(d, "documents")), 0);
    cr_assert_eq(json_array_size(json_object_get(d, "indexes")), 1u);
    json_decref(d);
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "gone", TU_SL("d0001"), &out, &ERR));
    TU_OK(shale_doc_insert(db, "gone", TU_SL("{\"_id\":\"d0001\",\"new\":1}"), NULL, &ERR));
    expect_doc(db, "gone", "d0001", "{\"_id\":\"d0001\",\"new\":1}");
    ids = dt_find_ids(db, "gone", "{\"f\":1}", "recreated");
    cr_assert_str_eq(ids, "");
    free(ids);
    dt_verify_indexes(db, "gone", "recreated");

    /* After a reopen too; and a collection dropped by its first insert's name again. */
    tu_fx_reopen(&fx, &o);
    cr_assert_eq(dt_count_keys(fx.db, 'D', cid), 0u);
    cr_assert_eq(dt_count_keys(fx.db, 'I', cid), 0u);
    expect_doc(fx.db, "gone", "d0001", "{\"_id\":\"d0001\",\"new\":1}");
    TU_OK(shale_coll_drop(fx.db, "kept", &ERR));
    cr_assert_eq(dt_count_keys(fx.db, 'D', kept), 0u);
    cr_assert_eq(dt_count_keys(fx.db, 'I', kept), 0u);
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

Test(docs_api, streaming_cursor)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-stream", NULL);
    shale_db *db = fx.db;
    /* 400 documents inserted in a scrambled order. */
    json_t *model = json_object();
    for (int i = 0; i < 400; i++) {
        int k = (i * 157) % 400;
        char t[96], id[16];
        snprintf(id, sizeof id, "s%03d", k);
        snprintf(t, sizeof t, "{\"_id\":\"%s\",\"x\":%d,\"y\":\"%s\"}", id, k % 100,
                 k % 2 ? "odd" : "even");
        TU_OK(shale_doc_insert(db, "c", tu_str(t), NULL, &ERR));
        json_object_set_new(model, id, dt_parse_text(t));
    }
    /* A filter: every match, in _id order. */
    shale_doc_query q = {.filter = TU_SL("{\"x\":{\"$lt\":50},\"y\":\"odd\"}")};
    shale_doc_cursor *c = NULL;
    shale_buf out = {0};
    TU_OK(shale_doc_cursor_open(db, "c", &q, &c, &ERR));
    dt_str got = {0}, want = {0};
    int n = 0;
    shale_code rc;
    shale_error err = {0};
    while ((rc = shale_doc_cursor_next(c, &out, &err)) == SHALE_OK) {
        json_t *d = dt_parse(&out, "cursor");
        dt_str_addf(&got, "%s%s", n++ ? "," : "", dt_id(d));
        json_decref(d);
    }
    cr_assert_eq(rc, SHALE_NOT_FOUND, "cursor_next: %d %s", rc, err.msg);
    shale_doc_cursor_close(c);
    for (int k = 0, m = 0; k < 400; k++) {
        if (k % 100 < 50 && k % 2) {
            dt_str_addf(&want, "%ss%03d", m++ ? "," : "", k);
        }
    }
    cr_assert_str_eq(dt_str_c(&got), dt_str_c(&want));
    dt_str_free(&got);
    dt_str_free(&want);

    /* A snapshot: writes during the iteration are not seen. */
    q = (shale_doc_query){0};
    TU_OK(shale_doc_cursor_open(db, "c", &q, &c, &ERR));
    for (int i = 0; i < 10; i++) {
        TU_OK(shale_doc_cursor_next(c, &out, &ERR));
    }
    TU_OK(shale_doc_delete(db, "c", TU_SL("s200"), &ERR));
    TU_OK(shale_doc_delete(db, "c", TU_SL("s003"), &ERR)); /* already read */
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"s250a\"}"), NULL, &ERR));
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"s999\"}"), NULL, &ERR));
    TU_OK(shale_doc_update(db, "c", TU_SL("s300"), TU_SL("{\"x\":-1}"), NULL, &ERR));
    TU_OK(shale_flush(db, &ERR));
    for (int i = 10; i < 400; i++) {
        TU_OK(shale_doc_cursor_next(c, &out, &ERR));
        json_t *d = dt_parse(&out, "snapshot cursor");
        char id[16];
        snprintf(id, sizeof id, "s%03d", i);
        cr_assert_str_eq(dt_id(d), id);
        cr_assert_eq(dt_cmp(d, json_object_get(model, id)), 0, "'%s' changed under the cursor", id);
        json_decref(d);
    }
    TU_CODE(SHALE_NOT_FOUND, shale_doc_cursor_next(c, &out, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_cursor_next(c, &out, &ERR));
    shale_doc_cursor_close(c);

    /* Limit, offset and cursors are ignored. */
    q = (shale_doc_query){.limit = 5, .offset = 7, .after = TU_SL("zz")};
    TU_OK(shale_doc_cursor_open(db, "c", &q, &c, &ERR));
    n = 0;
    while (shale_doc_cursor_next(c, &out, NULL) == SHALE_OK) {
        n++;
    }
    shale_doc_cursor_close(c);
    cr_assert_eq(n, 400, "the cursor returned %d documents (400 now)", n);

    /* A missing collection: nothing. A cursor closed early is fine. */
    TU_OK(shale_doc_cursor_open(db, "nosuch", NULL, &c, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_cursor_next(c, &out, &ERR));
    shale_doc_cursor_close(c);
    TU_OK(shale_doc_cursor_open(db, "c", NULL, &c, &ERR));
    TU_OK(shale_doc_cursor_next(c, &out, &ERR));
    shale_doc_cursor_close(c);
    json_decref(model);
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

Test(docs_api, eq_pairs)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-pairs", NULL);
    const char *docs[] = {
        "{\"_id\":\"1\",\"n\":5,\"s\":\"a\"}", "{\"_id\":\"2\",\"n\":\"5\",\"s\":\"a\"}",
        "{\"_id\":\"3\",\"n\":5.0,\"s\":\"b\"}", "{\"_id\":\"4\",\"n\":true,\"s\":\"a\"}",
        "{\"_id\":\"5\",\"n\":\"true\",\"s\":\"a\"}"};
    for (size_t i = 0; i < 5; i++) {
        TU_OK(shale_doc_insert(fx.db, "p", tu_str(docs[i]), NULL, &ERR));
    }
    for (int round = 0; round < 2; round++) {
        shale_slice names[2] = {TU_SL("n"), TU_SL("s")};
        shale_slice vals[2] = {TU_SL("5"), TU_SL("a")};
        shale_doc_query q = {.eq_names = names, .eq_values = vals, .neq = 1, .limit = 100};
        json_t *page = dt_find(fx.db, "p", &q, "n=5");
        char *ids = dt_page_ids(page);
        cr_assert_str_eq(ids, "1,2,3", "n=5 (round %d)", round);
        free(ids);
        json_decref(page);
        q.neq = 2;
        page = dt_find(fx.db, "p", &q, "n=5&s=a");
        ids = dt_page_ids(page);
        cr_assert_str_eq(ids, "1,2", "n=5&s=a (round %d)", round);
        free(ids);
        json_decref(page);
        vals[0] = TU_SL("true");
        q.neq = 1;
        page = dt_find(fx.db, "p", &q, "n=true");
        ids = dt_page_ids(page);
        cr_assert_str_eq(ids, "4,5", "n=true (round %d)", round);
        free(ids);
        json_decref(page);
        /* Pairs combine with a filter (AND). */
        q.filter = TU_SL("{\"s\":\"a\"}");
        vals[0] = TU_SL("5");
        page = dt_find(fx.db, "p", &q, "n=5 and filter");
        ids = dt_page_ids(page);
        cr_assert_str_eq(ids, "1,2", "pairs and filter (round %d)", round);
        free(ids);
        json_decref(page);
        if (round == 0) {
            TU_OK(shale_index_create(fx.db, "p", "n", &ERR));
        }
    }
    tu_fx_end(&fx);
}

Test(docs_api, many_collections)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-many", NULL);
    enum { N = 2000 };
    /* Names that sort differently as strings than as numbers, with every allowed character. */
    static const char *const heads[] = {"c", "C", "_", "-", "z9", "Z"};
    char(*names)[32] = calloc(N, sizeof *names);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "%s%d", heads[i % 6], i);
        char t[64];
        snprintf(t, sizeof t, "{\"_id\":\"only\",\"i\":%d}", i);
        TU_OK(shale_doc_insert(fx.db, names[i], tu_str(t), NULL, &ERR));
    }
    tu_fx_reopen(&fx, NULL);
    shale_buf out = {0};
    TU_OK(shale_coll_list(fx.db, &out, &ERR));
    json_t *list = dt_parse(&out, "list");
    cr_assert_eq(json_array_size(list), (size_t)N);
    const char **sorted = calloc(N, sizeof *sorted);
    for (int i = 0; i < N; i++) {
        sorted[i] = names[i];
    }
    for (int i = 1; i < N; i++) { /* insertion sort: bytewise (strcmp) */
        const char *x = sorted[i];
        int j = i - 1;
        while (j >= 0 && strcmp(sorted[j], x) > 0) {
            sorted[j + 1] = sorted[j];
            j--;
        }
        sorted[j + 1] = x;
    }
    for (int i = 0; i < N; i++) {
        cr_assert_str_eq(json_string_value(json_array_get(list, (size_t)i)), sorted[i],
                         "list entry %d", i);
    }
    json_decref(list);
    /* Every collection kept its document. */
    for (int i = 0; i < N; i += 7) {
        TU_OK(shale_doc_get(fx.db, names[i], TU_SL("only"), &out, &ERR));
        json_t *d = dt_parse(&out, names[i]);
        cr_assert_eq(json_integer_value(json_object_get(d, "i")), i);
        json_decref(d);
    }
    free(sorted);
    free(names);
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

/* A batch of 1000 documents (the documented maximum) is accepted whatever the write buffer
 * size (here the smallest, 64 KiB), and so is update_many of 1000. */
Test(docs_api, batch_of_1000_small_write_buffer)
{
    tu_fx fx = {0};
    shale_options o = tu_small_lsm_options(4);
    tu_fx_begin(&fx, "docs-batch-small", &o);
    enum { N = 1000 };
    shale_slice *docs = calloc(N, sizeof *docs), *ids = calloc(N, sizeof *ids),
                *patches = calloc(N, sizeof *patches);
    char(*t)[128] = calloc(N, sizeof *t);
    char(*id)[16] = calloc(N, sizeof *id);
    for (int i = 0; i < N; i++) {
        snprintf(id[i], sizeof id[i], "b%04d", i);
        snprintf(t[i], sizeof t[i], "{\"_id\":\"%s\",\"v\":%d,\"pad\":\"%040d\"}", id[i], i, i);
        docs[i] = tu_str(t[i]);
        ids[i] = tu_str(id[i]);
        patches[i] = TU_SL("{\"u\":true}");
    }
    TU_OK(shale_doc_insert_many(fx.db, "c", docs, N, NULL, &ERR));
    TU_OK(shale_doc_update_many(fx.db, "c", ids, patches, N, NULL, &ERR));
    shale_doc_query q = {.filter = TU_SL("{\"u\":true}"), .limit = 1};
    json_t *page = dt_find(fx.db, "c", &q, "after update_many");
    cr_assert_eq(json_integer_value(json_object_get(page, "total")), N);
    json_decref(page);
    free(docs);
    free(ids);
    free(patches);
    free(t);
    free(id);
    tu_fx_end(&fx);
}

/* The "n" of a document's JSON ({"_id":"k","n":N}); -1 when absent. */
static long doc_n(const shale_buf *b)
{
    const char *p = memmem(b->data, b->len, "\"n\":", 4);
    return p == NULL ? -1 : strtol(p + 4, NULL, 10);
}

typedef struct cat_run {
    shale_db *db;
    _Atomic bool stop;
    _Atomic long reads_found;
    tu_failure fail;
} cat_run;

static void *cat_reader(void *p)
{
    cat_run *r = p;
    shale_buf out = {0};
    shale_error err = {0};
    long last = 0;
    shale_doc_query q = {.filter = TU_SL("{\"n\":{\"$gte\":0}}")};
    for (int i = 0; !atomic_load(&r->stop) && !tu_failed(&r->fail); i++) {
        shale_code rc = i % 2 ? shale_doc_get(r->db, "cyc", TU_SL("k"), &out, &err)
                              : shale_doc_find(r->db, "cyc", &q, &out, &err);
        if (rc == SHALE_NOT_FOUND) {
            continue; /* between a drop and the re-creating insert */
        }
        if (rc != SHALE_OK) {
            tu_fail(&r->fail, "read %d: %d %s", i, rc, err.msg);
            break;
        }
        long n = doc_n(&out);
        if (i % 2 == 0 && n < 0 && strstr((const char *)out.data, "\"total\":0") == NULL) {
            tu_fail(&r->fail, "find: neither a document nor an empty page: %.*s", (int)out.len,
                    (const char *)out.data);
        }
        if (n >= 0 && n < last) {
            tu_fail(&r->fail, "read %d: document n=%ld after n=%ld (a dropped collection's)", i, n,
                    last);
        }
        if (n >= 0) {
            last = n;
            atomic_fetch_add(&r->reads_found, 1);
        }
    }
    shale_buf_free(&out);
    return NULL;
}

Test(docs_api, catalog_changes_reach_readers)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-catalog", NULL);
    shale_db *db = fx.db;
    shale_buf out = {0};

    /* One thread: every read after a catalog change sees it. */
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"a\",\"v\":1}"), NULL, &ERR));
    expect_doc(db, "c", "a", "{\"_id\":\"a\",\"v\":1}");
    const char *index = NULL;
    cr_assert_str_eq(dt_plan(db, "c", "{\"v\":1}", &index), "scan");
    TU_OK(shale_index_create(db, "c", "v", &ERR));
    cr_assert_str_eq(dt_plan(db, "c", "{\"v\":1}", &index), "index");
    cr_assert_str_eq(index, "v");
    TU_OK(shale_index_drop(db, "c", "v", &ERR));
    cr_assert_str_eq(dt_plan(db, "c", "{\"v\":1}", &index), "scan");
    TU_OK(shale_coll_drop(db, "c", &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "c", TU_SL("a"), &out, &ERR));
    cr_assert(strstr(tu_last_msg, "no collection 'c'") != NULL, "%s", tu_last_msg);
    TU_OK(shale_coll_create(db, "c", &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "c", TU_SL("a"), &out, &ERR));
    cr_assert(strstr(tu_last_msg, "no document") != NULL, "%s", tu_last_msg);
    TU_OK(shale_coll_drop(db, "c", &ERR));
    TU_OK(shale_doc_insert(db, "c", TU_SL("{\"_id\":\"b\"}"), NULL, &ERR)); /* creates */
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "c", TU_SL("a"), &out, &ERR));
    expect_doc(db, "c", "b", "{\"_id\":\"b\"}");

    /* Threads: one drops and re-creates "cyc" (its one document's n grows), four read it. */
    cat_run r = {.db = db};
    tu_failure_init(&r.fail);
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        cr_assert_eq(pthread_create(&th[t], NULL, cat_reader, &r), 0);
    }
    for (int i = 1; i <= 300 && !tu_failed(&r.fail); i++) {
        shale_error err = {0};
        shale_code rc = shale_coll_drop(db, "cyc", &err);
        cr_assert(rc == SHALE_OK || rc == SHALE_NOT_FOUND, "drop %d: %d %s", i, rc, err.msg);
        char doc[64];
        snprintf(doc, sizeof doc, "{\"_id\":\"k\",\"n\":%d}", i);
        TU_OK(shale_doc_insert(db, "cyc", tu_str(doc), NULL, &ERR));
        if (i % 3 == 0) {
            TU_OK(shale_index_create(db, "cyc", "n", &ERR));
        }
    }
    atomic_store(&r.stop, true);
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
    }
    tu_failure_check(&r.fail, "catalog_changes_reach_readers");
    cr_assert_gt(atomic_load(&r.reads_found), 0);
    shale_buf_free(&out);
    tu_fx_end(&fx);
}

static char *find_ids(shale_db *db, const char *coll, const char *filter)
{
    return dt_find_ids(db, coll, filter, "apply");
}

Test(docs_api, apply_mixed_operations)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-apply", NULL);
    shale_db *db = fx.db;
    shale_buf out = {0};
    TU_OK(shale_doc_insert(db, "a", TU_SL("{\"_id\":\"a1\",\"v\":1}"), NULL, &ERR));
    TU_OK(shale_doc_insert(db, "a", TU_SL("{\"_id\":\"a2\",\"v\":2}"), NULL, &ERR));
    TU_OK(shale_index_create(db, "a", "v", &ERR));

    /* Every kind, two collections (b is created by its insert), later ops see earlier ones. */
    shale_doc_op ops[] = {
        {SHALE_DOC_INSERT, "a", {0}, TU_SL("{\"_id\":\"a3\",\"v\":3}")},
        {SHALE_DOC_UPDATE, "a", TU_SL("a3"), TU_SL("{\"v\":30}")},
        {SHALE_DOC_UPDATE, "a", TU_SL("a1"), TU_SL("{\"v\":10,\"w\":true}")},
        {SHALE_DOC_INSERT, "b", {0}, TU_SL("{\"_id\":\"b1\",\"v\":2}")},
        {SHALE_DOC_REPLACE, "a", TU_SL("a2"), TU_SL("{\"x\":\"y\"}")},
        {SHALE_DOC_DELETE, "b", TU_SL("b1"), {0}},
        {SHALE_DOC_INSERT, "b", {0}, TU_SL("{\"_id\":\"b1\",\"v\":5}")},
    };
    TU_OK(shale_doc_apply(db, ops, 7, &out, &ERR));
    json_t *res = dt_parse(&out, "apply");
    cr_assert_eq(json_array_size(res), 7u);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(res, 1), "v")), 30);
    cr_assert(json_is_true(json_object_get(json_array_get(res, 5), "deleted")));
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(res, 5), "_id")), "b1");
    json_decref(res);
    expect_doc(db, "a", "a1", "{\"_id\":\"a1\",\"v\":10,\"w\":true}");
    expect_doc(db, "a", "a2", "{\"_id\":\"a2\",\"x\":\"y\"}");
    expect_doc(db, "a", "a3", "{\"_id\":\"a3\",\"v\":30}");
    expect_doc(db, "b", "b1", "{\"_id\":\"b1\",\"v\":5}");
    char *ids = find_ids(db, "a", "{\"v\":{\"$gte\":10}}");
    cr_assert_str_eq(ids, "a1,a3");
    free(ids);
    cr_assert_eq(dt_verify_indexes(db, "a", "after apply"), 3u);

    /* A failure anywhere: nothing applied, the message names the operation. */
    shale_doc_op fail_update[] = {
        {SHALE_DOC_DELETE, "a", TU_SL("a1"), {0}},
        {SHALE_DOC_INSERT, "b", {0}, TU_SL("{\"_id\":\"b9\"}")},
        {SHALE_DOC_UPDATE, "a", TU_SL("nope"), TU_SL("{\"v\":1}")},
    };
    TU_CODE(SHALE_NOT_FOUND, shale_doc_apply(db, fail_update, 3, &out, &ERR));
    cr_assert(strstr(tu_last_msg, "operation 2") != NULL, "%s", tu_last_msg);
    shale_doc_op fail_insert[] = {
        {SHALE_DOC_UPDATE, "a", TU_SL("a3"), TU_SL("{\"v\":99}")},
        {SHALE_DOC_INSERT, "a", {0}, TU_SL("{\"_id\":\"a1\"}")},
    };
    TU_CODE(SHALE_CONFLICT, shale_doc_apply(db, fail_insert, 2, &out, &ERR));
    cr_assert(strstr(tu_last_msg, "operation 1") != NULL, "%s", tu_last_msg);
    expect_doc(db, "a", "a1", "{\"_id\":\"a1\",\"v\":10,\"w\":true}");
    expect_doc(db, "a", "a3", "{\"_id\":\"a3\",\"v\":30}");
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "b", TU_SL("b9"), &out, &ERR));
    ids = find_ids(db, "a", "{\"v\":99}");
    cr_assert_str_eq(ids, "");
    free(ids);
    cr_assert_eq(dt_verify_indexes(db, "a", "after failed applies"), 3u);

    /* Refused before anything runs. */
    shale_doc_op bad[] = {
        {SHALE_DOC_INSERT, "a", {0}, TU_SL("{\"_id\":\"a4\"}")},
        {SHALE_DOC_UPDATE, "a", {0}, TU_SL("{}")},
    };
    TU_CODE(SHALE_INVALID, shale_doc_apply(db, bad, 2, &out, &ERR));
    cr_assert(strstr(tu_last_msg, "operation 1") != NULL, "%s", tu_last_msg);
    bad[1] = (shale_doc_op){SHALE_DOC_DELETE, "no such!", TU_SL("x"), {0}};
    TU_CODE(SHALE_INVALID, shale_doc_apply(db, bad, 2, &out, &ERR));
    bad[1] = (shale_doc_op){(shale_doc_op_kind)9, "a", TU_SL("x"), {0}};
    TU_CODE(SHALE_INVALID, shale_doc_apply(db, bad, 2, &out, &ERR));
    bad[1] = (shale_doc_op){SHALE_DOC_INSERT, "a", {0}, TU_SL("[1]")};
    TU_CODE(SHALE_INVALID, shale_doc_apply(db, bad, 2, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_apply(db, bad, 0, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_apply(db, NULL, 1, &out, &ERR));
    TU_CODE(SHALE_INVALID, shale_doc_apply(db, bad, 1001, &out, &ERR));
    TU_CODE(SHALE_NOT_FOUND, shale_doc_get(db, "a", TU_SL("a4"), &out, &ERR));

    /* After a reopen, the applied state is there and the indexes agree. */
    tu_fx_reopen(&fx, NULL);
    expect_doc(fx.db, "b", "b1", "{\"_id\":\"b1\",\"v\":5}");
    cr_assert_eq(dt_verify_indexes(fx.db, "a", "after reopen"), 3u);
    shale_buf_free(&out);
    tu_fx_end(&fx);
}
