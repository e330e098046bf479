/*
 * docdb: collections of JSON documents over the key-value store (the shale_coll_*, shale_doc_*
 * and shale_index_* calls of shale.h), shared by docdb.c (catalog, writes, indexes) and query.c
 * (find, explain, cursors).
 *
 * Key layout (all under the reserved prefix 0x00 0xD0, so `shale scan` shows it last but one and
 * key-value users never meet it by accident):
 *   P 'C' name                         -> collection meta (below)
 *   P 'N'                              -> next collection id, fixed64
 *   P 'D' cid u32be _id                -> 0x01 | the document (dval.h), _id field included
 *   P 'I' cid u32be iid u32be key _id  -> _id: one entry per document per index, key =
 *                                         dval_index_key of the value at the index's path (null
 *                                         when the path is missing), so the entries of one value
 *                                         are in _id order; the value repeats the _id so a reader
 *                                         need not find where the value key ends
 *   P 'X' cid u32be                    -> a dropped collection whose keys are still being removed
 *   P 'Y' cid u32be iid u32be          -> a dropped index whose entries are still being removed
 * Collection ids and index ids are never reused, so a dropped collection's or index's leftover
 * keys (a crash in the middle of removing them) are never read again.
 *
 * Meta value: 0x01 (format version) | cid u32 | created_ms u64 | next_iid u32 | n u16 |
 *   n * (iid u32 | state u8 (0 building, 1 ready) | path_len u16 | path). Little-endian.
 * The KV layer checksums every byte (log records and table blocks); the version byte lets a
 * later format be told apart, and a meta or document that does not decode is SHALE_CORRUPTION
 * naming the collection.
 *
 * Consistency: every write is one transaction that reads the collection's meta with
 * shale_txn_get_for_update, so a write that raced an index creation or drop fails validation and
 * is retried with the new meta: once an index's "building" meta is committed, every committed
 * write maintains it. The index build then fills entries for the documents that existed,
 * in chunks, each chunk reading its documents for update (a document changed meanwhile makes the
 * chunk retry), and finally marks the index ready; only ready indexes serve queries.
 */
#ifndef SHALE_DOC_DOCDB_H
#define SHALE_DOC_DOCDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

#include "doc/dval.h"

#define DOC_PREFIX0        0x00
#define DOC_PREFIX1        0xD0
#define DOC_NAME_MAX       64
#define DOC_ID_MAX         512
#define DOC_PATH_MAX       256
#define DOC_MAX_INDEXES    64
#define DOC_FORMAT_VERSION 0x01
#define DOC_MAX_BATCH      1000

typedef struct doc_index {
    uint32_t iid;
    bool ready;
    uint16_t path_len;
    char path[DOC_PATH_MAX + 1];
} doc_index;

typedef struct doc_meta {
    uint32_t cid;
    uint64_t created_ms;
    uint32_t next_iid;
    uint16_t nindexes;
    doc_index idx[DOC_MAX_INDEXES];
} doc_meta;

/* SHALE_INVALID unless name is a valid collection name. */
shale_code docdb_check_name(const char *name, shale_error *err) SHALE_MUST_USE;

/* Keys. Each replaces the contents of out. */
shale_code docdb_meta_key(shale_buf *out, const char *name, shale_error *err) SHALE_MUST_USE;
shale_code docdb_doc_key(shale_buf *out, uint32_t cid, shale_slice id,
                         shale_error *err) SHALE_MUST_USE;
/* P 'D' cid: every document key of the collection starts with it. */
shale_code docdb_doc_prefix(shale_buf *out, uint32_t cid, shale_error *err) SHALE_MUST_USE;
/* P 'I' cid iid: every entry of the index starts with it. */
shale_code docdb_index_prefix(shale_buf *out, uint32_t cid, uint32_t iid,
                              shale_error *err) SHALE_MUST_USE;

/* Reads a collection's meta at the read options' snapshot: SHALE_NOT_FOUND if absent. */
shale_code docdb_meta_read(shale_db *db, const shale_read_opts *ro, const char *name, doc_meta *m,
                           shale_error *err) SHALE_MUST_USE;

/* A stored document value (version byte | dval): the dval, after checking it. SHALE_CORRUPTION
 * naming the collection and id when it does not decode. */
shale_code docdb_doc_decode(shale_slice stored, const char *coll, shale_slice id, dval *out,
                            shale_error *err) SHALE_MUST_USE;

/* Index entries keep at most DOC_INDEX_VALUE_MAX bytes of a value's key, so a long string (or a
 * big array) can be indexed within max_key_bytes. Cutting is monotone (a <= b implies
 * cut(a) <= cut(b)), so a walk between cut bounds, taking entries that start with a cut bound,
 * misses nothing; the filter re-checks every candidate. Cuts key[start..]. */
#define DOC_INDEX_VALUE_MAX 1024
void docdb_cap_value_key(shale_buf *key, size_t start);

/* Takes a snapshot (*snap, to release with shale_snapshot_release; NULL on failure) and reads
 * the collection's meta at it: how every read of the document layer starts, so that the meta and
 * the documents it reads agree. SHALE_NOT_FOUND (with *snap held) when there is no such
 * collection. */
shale_code docdb_read_begin(shale_db *db, const char *coll, shale_snapshot **snap, doc_meta *m,
                            shale_error *err) SHALE_MUST_USE;

/* Appends the order-preserving key of the value at `path` in doc (null when missing). */
shale_code docdb_path_key(dval doc, shale_slice path, shale_buf *out,
                          shale_error *err) SHALE_MUST_USE;
/* Appends the key of doc's entry (_id `id`) in index x of collection cid: the index prefix, the
 * value key at x's path (capped), then the id. The one encoder of entry keys: writes and
 * docdb_check both use it. */
shale_code docdb_entry_key(uint32_t cid, const doc_index *x, dval doc, shale_slice id,
                           shale_buf *out, shale_error *err) SHALE_MUST_USE;

/* ---- docdb_check (doccheck.c): is the document layer consistent with itself? ----
 *
 * From one snapshot: every catalog entry decodes (and collection ids are unique and below the
 * id counter), every document decodes and its key's _id is its own, every entry of every index is
 * the entry its document's current value gives (key built by the same functions the writes use),
 * every document has its entry in every ready index (an index whose build was interrupted is
 * counted as building, its missing entries are expected), and every key under 0x00 0xD0 belongs
 * to a collection, an index, the id counter or a drop marker (the keys of dropped collections and
 * indexes not yet removed are counted as pending, not as problems). Memory stays bounded: the
 * documents and entries are walked with iterators, each checked by point reads. Works on a live
 * database too (the snapshot keeps it consistent); `shale check` runs it on a read-only open. */
typedef enum docdb_problem {
    DOCDB_NO_DOCUMENT,   /* (a) an index entry whose document does not exist */
    DOCDB_WRONG_ENTRY,   /* (b) an index entry its document's current value does not give, or a
                            malformed one (its value is not the _id its key ends with) */
    DOCDB_MISSING_ENTRY, /* (c) a document without its entry in a ready index */
    DOCDB_ORPHAN_KEY,    /* (d) a key of no collection, index, counter or drop marker */
    DOCDB_BAD_DOCUMENT,  /* (e) a stored document that does not decode, or under a bad key */
    DOCDB_BAD_CATALOG,   /* a catalog entry that does not decode, a collection id used twice,
                            a bad index id, or a missing or stale id counter */
    DOCDB_PROBLEM_KINDS
} docdb_problem;

/* One collection's result, handed to on_collection when its check is done. */
typedef struct docdb_check_coll {
    const char *name;
    uint32_t cid;
    uint64_t documents, indexes, building, entries, problems;
} docdb_check_coll;

#define DOCDB_CHECK_KEEP 16  /* problem messages kept in the report */
#define DOCDB_CHECK_MSG  240 /* bytes of each, NUL included */

typedef struct docdb_check_report {
    /* Set by the caller (each may be NULL); docdb_check zeroes and fills the rest. on_problem is
     * called for every problem (collection-scoped ones before that collection's on_collection),
     * from the calling thread. */
    void (*on_problem)(void *arg, docdb_problem kind, const char *msg);
    void (*on_collection)(void *arg, const docdb_check_coll *c);
    void *arg;
    uint64_t collections, documents, indexes, entries;
    uint64_t building; /* indexes whose build was interrupted (not a problem) */
    uint64_t pending;  /* keys of dropped collections and indexes not yet removed (not a problem) */
    uint64_t problems, by_kind[DOCDB_PROBLEM_KINDS];
    size_t kept; /* the first min(problems, DOCDB_CHECK_KEEP) messages */
    char first[DOCDB_CHECK_KEEP][DOCDB_CHECK_MSG];
} docdb_check_report;

/* Runs the check. SHALE_OK when it ran to the end, whatever it found (rep->problems); another code
 * when a read failed (SHALE_IO, SHALE_CORRUPTION from the key-value layer, SHALE_NOMEM), with
 * rep holding what was found before. */
shale_code docdb_check(shale_db *db, docdb_check_report *rep, shale_error *err) SHALE_MUST_USE;

#endif
