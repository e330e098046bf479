/*
 * docs_util: helpers of the document-layer suite (test_docs), which drives the shale_coll_*,
 * shale_doc_* and shale_index_* calls of include/shale.h and checks what the header promises.
 *
 * JSON on the test side is jansson's (the library's own parser is dval.c; the tests use jansson
 * only to build inputs and read results). dt_cmp is an independent implementation of the order
 * the header documents (null < false < true < numbers < strings < arrays < objects, numbers by
 * exact value, strings bytewise, arrays element by element then shorter first, objects field by
 * field by name then fewer fields first), used to compute expected sort orders and to compare
 * documents (jansson's json_equal tells 1 from 1.0, the document layer does not).
 *
 * The raw index check (dt_verify_indexes) is the one place that looks below the public API: it
 * reads the collection's catalog entry (docdb_meta_read) and walks the reserved key space with
 * shale_iter, rebuilding from the stored documents the exact index entries docdb.h's layout
 * implies and comparing them with the entries present.
 *
 * Every function asserts (Criterion) on failure, so call them from the test's main thread only.
 * Strings returned are malloc'ed (free them); json_t results are new references (json_decref).
 */
#ifndef SHALE_TESTS_DOCS_DOCS_UTIL_H
#define SHALE_TESTS_DOCS_DOCS_UTIL_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

#include "testutil.h"

/* A growable C string. Start zeroed; dt_str_free releases it. */
typedef struct dt_str {
    char *s;
    size_t len, cap;
} dt_str;
void dt_str_addf(dt_str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dt_str_addn(dt_str *s, const char *p, size_t n);
/* The string (never NULL: "" when nothing was added). Owned by s. */
const char *dt_str_c(dt_str *s);
void dt_str_free(dt_str *s);

/* ---- JSON ---- */

/* Loads tests/data/<name>. */
json_t *dt_load_data(const char *name);
/* Parses the bytes of a result buffer (asserting it is valid JSON). */
json_t *dt_parse(const shale_buf *b, const char *ctx);
json_t *dt_parse_text(const char *text);
/* Compact JSON text (any value). */
char *dt_dump(const json_t *j);
/* The order described above; a NULL value is a missing field and compares as null. */
int dt_cmp(const json_t *a, const json_t *b);
/* The value at a dotted path ("a.b", "tags.0": decimal components index arrays), NULL when
 * missing. Borrowed. */
json_t *dt_path(const json_t *doc, const char *path);
/* The projection the header describes for fields "p1,p2" (only object paths): _id plus each
 * path that resolves, nested as in the document. */
json_t *dt_project(const json_t *doc, const char *const *paths, size_t npaths);
/* The "_id" of a document as a C string (borrowed), asserting it is a string. */
const char *dt_id(const json_t *doc);

/* ---- queries ---- */

/* shale_doc_find asserting SHALE_OK and the page's shape; returns the parsed page. */
json_t *dt_find(shale_db *db, const char *coll, const shale_doc_query *q, const char *ctx);
/* The page's document ids joined with ',' ("" for none). */
char *dt_page_ids(const json_t *page);
/* find with a JSON filter and limit 1000: the ids joined with ','. */
char *dt_find_ids(shale_db *db, const char *coll, const char *filter, const char *ctx);
/* shale_doc_explain asserting SHALE_OK: the parsed answer. */
json_t *dt_explain(shale_db *db, const char *coll, const shale_doc_query *q, const char *ctx);
/* The plan ("scan" / "index") and index field (NULL for none) of a filter's explain. Static
 * storage: copy before the next call. */
const char *dt_plan(shale_db *db, const char *coll, const char *filter, const char **index);

/* ---- a model of a collection: a JSON object id -> document ---- */

/* Ids of the model's documents matching {path: v} (the header's equality: path resolves and
 * equals v, or v is null and the path is missing), bytewise sorted, joined with ','. */
char *dt_model_eq_ids(const json_t *model, const char *path, const json_t *v);
/* Every model id, bytewise sorted, joined with ','. */
char *dt_model_ids(const json_t *model);
/* Checks the collection against the model through the public API: the streaming cursor returns
 * exactly the model's documents in _id order, and for every path in `paths` and every distinct
 * value the model holds there (plus null), an equality find returns the model's ids; when
 * `indexed[i]`, explain must say the query uses the index on paths[i]. */
void dt_check_model(shale_db *db, const char *coll, const json_t *model, const char *const *paths,
                    const bool *indexed, size_t npaths, const char *ctx);

/* ---- below the API: the key space ---- */

/* Asserts every index of the collection holds exactly the entries its documents imply (one per
 * document per index, key = prefix | index key of the value at the path (null when missing) |
 * _id, value = _id), that every index is ready, that no entry exists under the collection's id
 * for an index the catalog does not list, and that no drop marker ('X' cid, 'Y' cid iid) is
 * left. Returns the number of documents. */
size_t dt_verify_indexes(shale_db *db, const char *coll, const char *ctx);
/* The collection's id from its catalog entry (asserting it exists). */
uint32_t dt_coll_id(shale_db *db, const char *coll);
/* The number of keys starting with the 7 bytes 0x00 0xD0 tag <cid big-endian>. */
size_t dt_count_keys(shale_db *db, char tag, uint32_t cid);

#endif
