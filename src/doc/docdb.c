/*
 * docdb: collections, document writes and index maintenance (docdb.h has the key layout and the
 * consistency argument; shale.h the contract).
 *
 * Every write runs as a function inside a transaction (run_txn), retried when the commit meets a
 * conflict it did not cause on purpose (another writer of the same document or meta): the
 * document layer's own writes are read-modify-write steps that are safe to redo from the start.
 * A conflict that is the answer (an _id that exists) is returned at once.
 */
#include "doc/docdb.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/error.h"
#include "base/slice.h"
#include "doc/catcache.h"

/* Redo a write this many times when concurrent writers keep winning. */
#define DOC_MAX_RETRIES   64
/* Documents per transaction while an index is built over existing documents. */
#define DOC_BUILD_CHUNK   2048
/* Memory a document transaction may buffer: shale_txn_opts's largest. */
#define DOC_TXN_MAX_BYTES ((uint64_t)1 << 30)
/* Keys per batch while a dropped collection's or index's keys are removed. */
#define DOC_PURGE_CHUNK   1024

static const char doc_tag_meta = 'C', doc_tag_seq = 'N', doc_tag_doc = 'D', doc_tag_index = 'I',
                  doc_tag_drop = 'X', doc_tag_drop_index = 'Y';

/* ---- names and keys ---- */

shale_code docdb_check_name(const char *name, shale_error *err)
{
    if (name == NULL) {
        return err_set(err, SHALE_INVALID, 0, "collection name is NULL");
    }
    size_t n = strlen(name);
    if (n == 0 || n > DOC_NAME_MAX) {
        return err_set(err, SHALE_INVALID, 0,
                       "collection name must be 1 to %d characters (got %zu)", DOC_NAME_MAX, n);
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok) {
            return err_set(err, SHALE_INVALID, 0,
                           "collection name '%.64s': character %zu is not a letter, digit, '_' "
                           "or '-'",
                           name, i + 1);
        }
    }
    return SHALE_OK;
}

static shale_code key_start(shale_buf *out, char tag, shale_error *err)
{
    const uint8_t head[3] = {DOC_PREFIX0, DOC_PREFIX1, (uint8_t)tag};
    buf_reset(out);
    return buf_append(out, head, sizeof head, err);
}

static shale_code append_u32be(shale_buf *out, uint32_t v, shale_error *err)
{
    const uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return buf_append(out, b, sizeof b, err);
}

shale_code docdb_meta_key(shale_buf *out, const char *name, shale_error *err)
{
    shale_code rc = key_start(out, doc_tag_meta, err);
    return rc != SHALE_OK ? rc : buf_append(out, name, strlen(name), err);
}

shale_code docdb_doc_prefix(shale_buf *out, uint32_t cid, shale_error *err)
{
    shale_code rc = key_start(out, doc_tag_doc, err);
    return rc != SHALE_OK ? rc : append_u32be(out, cid, err);
}

shale_code docdb_doc_key(shale_buf *out, uint32_t cid, shale_slice id, shale_error *err)
{
    shale_code rc = docdb_doc_prefix(out, cid, err);
    return rc != SHALE_OK ? rc : buf_append(out, id.data, id.len, err);
}

shale_code docdb_index_prefix(shale_buf *out, uint32_t cid, uint32_t iid, shale_error *err)
{
    shale_code rc = key_start(out, doc_tag_index, err);
    if (rc == SHALE_OK) {
        rc = append_u32be(out, cid, err);
    }
    return rc != SHALE_OK ? rc : append_u32be(out, iid, err);
}

static shale_code drop_key(shale_buf *out, uint32_t cid, shale_error *err)
{
    shale_code rc = key_start(out, doc_tag_drop, err);
    return rc != SHALE_OK ? rc : append_u32be(out, cid, err);
}

static shale_code drop_index_key(shale_buf *out, uint32_t cid, uint32_t iid, shale_error *err)
{
    shale_code rc = key_start(out, doc_tag_drop_index, err);
    if (rc == SHALE_OK) {
        rc = append_u32be(out, cid, err);
    }
    return rc != SHALE_OK ? rc : append_u32be(out, iid, err);
}

static uint32_t get_u32be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static shale_slice sl(const shale_buf *b)
{
    return (shale_slice){b->data, b->len};
}

/* ---- meta ---- */

static shale_code meta_encode(const doc_meta *m, shale_buf *out, shale_error *err)
{
    uint8_t head[1 + 4 + 8 + 4 + 2];
    head[0] = DOC_FORMAT_VERSION;
    coding_put_fixed32(head + 1, m->cid);
    coding_put_fixed64(head + 5, m->created_ms);
    coding_put_fixed32(head + 13, m->next_iid);
    coding_put_fixed16(head + 17, m->nindexes);
    buf_reset(out);
    shale_code rc = buf_append(out, head, sizeof head, err);
    for (uint16_t i = 0; rc == SHALE_OK && i < m->nindexes; i++) {
        uint8_t e[4 + 1 + 2];
        coding_put_fixed32(e, m->idx[i].iid);
        e[4] = m->idx[i].ready ? 1 : 0;
        coding_put_fixed16(e + 5, m->idx[i].path_len);
        rc = buf_append(out, e, sizeof e, err);
        if (rc == SHALE_OK) {
            rc = buf_append(out, m->idx[i].path, m->idx[i].path_len, err);
        }
    }
    return rc;
}

static shale_code meta_decode(const char *name, shale_slice v, doc_meta *m, shale_error *err)
{
    const uint8_t *p = v.data, *end = p + v.len;
    /* Not the whole struct (17 KiB, on every read): entries past nindexes are never read. */
    memset(m, 0, offsetof(doc_meta, idx));
    if (v.len < 19 || p[0] != DOC_FORMAT_VERSION) {
        goto bad;
    }
    m->cid = coding_get_fixed32(p + 1);
    m->created_ms = coding_get_fixed64(p + 5);
    m->next_iid = coding_get_fixed32(p + 13);
    m->nindexes = coding_get_fixed16(p + 17);
    if (m->nindexes > DOC_MAX_INDEXES) {
        goto bad;
    }
    p += 19;
    for (uint16_t i = 0; i < m->nindexes; i++) {
        if (end - p < 7) {
            goto bad;
        }
        doc_index *x = &m->idx[i];
        x->iid = coding_get_fixed32(p);
        x->ready = p[4] == 1;
        x->path_len = coding_get_fixed16(p + 5);
        p += 7;
        if (p[-3] > 1 || x->path_len == 0 || x->path_len > DOC_PATH_MAX ||
            x->path_len > (size_t)(end - p)) {
            goto bad;
        }
        memcpy(x->path, p, x->path_len);
        x->path[x->path_len] = '\0';
        p += x->path_len;
    }
    if (p != end) {
        goto bad;
    }
    return SHALE_OK;
bad:
    return err_set(err, SHALE_CORRUPTION, 0, "collection '%s': its catalog entry does not decode",
                   name);
}

/* The end of both meta reads: rc and val from the read of name's catalog entry. */
static shale_code meta_read_result(const char *name, shale_code rc, const shale_buf *val,
                                   doc_meta *m, shale_error *err)
{
    if (rc == SHALE_OK) {
        return meta_decode(name, sl(val), m, err);
    }
    if (rc == SHALE_NOT_FOUND) {
        return err_set(err, SHALE_NOT_FOUND, 0, "no collection '%s'", name);
    }
    return rc;
}

shale_code docdb_meta_read(shale_db *db, const shale_read_opts *ro, const char *name, doc_meta *m,
                           shale_error *err)
{
    shale_buf key = {0}, val = {0};
    shale_code rc = docdb_meta_key(&key, name, err);
    if (rc == SHALE_OK) {
        rc = meta_read_result(name, shale_get(db, ro, sl(&key), &val, err), &val, m, err);
    }
    buf_free(&key);
    buf_free(&val);
    return rc;
}

/* The meta inside a write transaction, read for update (see docdb.h). */
static shale_code meta_txn_read(shale_txn *txn, const char *name, shale_buf *key, doc_meta *m,
                                shale_error *err)
{
    shale_buf val = {0};
    shale_code rc = docdb_meta_key(key, name, err);
    if (rc == SHALE_OK) {
        rc =
            meta_read_result(name, shale_txn_get_for_update(txn, sl(key), &val, err), &val, m, err);
    }
    buf_free(&val);
    return rc;
}

static uint64_t wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Creates the collection in txn (its meta key already in key): a fresh id from the counter. */
static shale_code meta_create(shale_txn *txn, const shale_buf *key, doc_meta *m, shale_error *err)
{
    shale_buf seqk = {0}, val = {0};
    uint64_t next = 1;
    shale_code rc = key_start(&seqk, doc_tag_seq, err);
    if (rc == SHALE_OK) {
        rc = shale_txn_get_for_update(txn, sl(&seqk), &val, err);
        if (rc == SHALE_OK && val.len == 8) {
            next = coding_get_fixed64(val.data);
        } else if (rc == SHALE_OK) {
            rc = err_set(err, SHALE_CORRUPTION, 0, "the collection id counter does not decode");
        } else if (rc == SHALE_NOT_FOUND) {
            rc = SHALE_OK;
        }
    }
    if (rc == SHALE_OK && next > UINT32_MAX) {
        rc = err_set(err, SHALE_FULL, 0, "no collection ids left");
    }
    uint8_t nb[8];
    coding_put_fixed64(nb, next + 1);
    if (rc == SHALE_OK) {
        rc = shale_txn_put(txn, sl(&seqk), (shale_slice){nb, 8}, err);
    }
    if (rc == SHALE_OK) {
        memset(m, 0, sizeof *m);
        m->cid = (uint32_t)next;
        m->created_ms = wall_ms();
        m->next_iid = 1;
        rc = meta_encode(m, &val, err);
    }
    if (rc == SHALE_OK) {
        rc = shale_txn_put(txn, sl(key), sl(&val), err);
    }
    buf_free(&seqk);
    buf_free(&val);
    return rc;
}

static shale_code meta_write(shale_txn *txn, const shale_buf *key, const doc_meta *m,
                             shale_error *err)
{
    shale_buf val = {0};
    shale_code rc = meta_encode(m, &val, err);
    if (rc == SHALE_OK) {
        rc = shale_txn_put(txn, sl(key), sl(&val), err);
    }
    buf_free(&val);
    return rc;
}

/* ---- documents ---- */

shale_code docdb_read_begin(shale_db *db, const char *coll, shale_snapshot **snap, doc_meta *m,
                            shale_error *err)
{
    catcache *cc = catcache_of(db);
    uint64_t gen = 0;
    bool quiet = catcache_begin(cc, &gen);
    *snap = shale_snapshot_get(db);
    if (*snap == NULL) {
        return err_set(err, SHALE_NOMEM, 0,
                       "could not take a snapshot (out of memory, or the database is closed)");
    }
    quiet = quiet && catcache_end(cc, gen);
    if (quiet && catcache_get(cc, coll, gen, m)) {
        return SHALE_OK;
    }
    shale_read_opts ro = {.snapshot = *snap};
    shale_code rc = docdb_meta_read(db, &ro, coll, m, err);
    if (rc == SHALE_OK && quiet) {
        catcache_put(cc, coll, gen, m);
    }
    return rc;
}

shale_code docdb_doc_decode(shale_slice stored, const char *coll, shale_slice id, dval *out,
                            shale_error *err)
{
    const uint8_t *p = stored.data;
    shale_error e;
    if (stored.len < 2 || p[0] != DOC_FORMAT_VERSION ||
        dval_check_frame(p + 1, stored.len - 1, &e) != SHALE_OK || p[1] != DV_OBJECT) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "collection '%s', document '%.*s': does not decode", coll,
                       (int)(id.len > 64 ? 64 : id.len), (const char *)id.data);
    }
    *out = (dval){p + 1, stored.len - 1};
    return SHALE_OK;
}

void docdb_cap_value_key(shale_buf *key, size_t start)
{
    if (key->len > start + DOC_INDEX_VALUE_MAX) {
        key->len = start + DOC_INDEX_VALUE_MAX;
    }
}

shale_code docdb_path_key(dval doc, shale_slice path, shale_buf *out, shale_error *err)
{
    dval v;
    if (dval_path(doc, path, &v)) {
        return dval_index_key(v, out, err);
    }
    static const uint8_t null_val[1] = {DV_NULL};
    return dval_index_key((dval){null_val, 1}, out, err);
}

/* The generator of _id values: 48 bits of milliseconds, 16 bits of a counter, 32 random bits
 * drawn once per process, in hex. Within a process ids strictly increase (the counter carries
 * into the milliseconds when it wraps, and the clock is never allowed to go back); across
 * processes they are unique by the random part and ordered by time. */
static _Atomic uint64_t id_last; /* ms << 16 | counter of the last id made */
static uint32_t id_random;
static _Atomic bool id_random_set;

static void make_id(char out[25])
{
    if (!atomic_load_explicit(&id_random_set, memory_order_acquire)) {
        uint32_t r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
            r = (uint32_t)wall_ms() ^ (uint32_t)getpid() * 2654435761u;
        }
        id_random = r;
        atomic_store_explicit(&id_random_set, true, memory_order_release);
    }
    uint64_t now = wall_ms() << 16, last = atomic_load(&id_last), next;
    do {
        next = now > last ? now : last + 1;
    } while (!atomic_compare_exchange_weak(&id_last, &last, next));
    snprintf(out, 25, "%016" PRIx64 "%08" PRIx32, next, id_random);
}

/* A document to write: parsed, with its _id checked or generated. */
typedef struct doc_in {
    shale_buf enc; /* the dval */
    shale_slice id;
    dval doc;
} doc_in;

static const shale_slice id_name = {"_id", 3};

/* Parses json into d; the _id must be a string of 1 .. DOC_ID_MAX bytes, or absent (then
 * generated unless require_id is false and force_id given). force_id: the id to set whatever
 * the document says (replace). */
static shale_code doc_prepare(shale_slice json, const shale_slice *force_id, doc_in *d,
                              shale_error *err)
{
    shale_buf raw = {0};
    char gen[25];
    dval idv, parsed;
    shale_code rc = dval_from_json(json.data, json.len, true, &raw, err);
    if (rc != SHALE_OK) {
        buf_free(&raw);
        return rc;
    }
    parsed = (dval){raw.data, raw.len};
    shale_slice id;
    shale_buf idbuf = {0};
    if (force_id != NULL) {
        id = *force_id;
    } else if (dval_field(parsed, id_name, &idv)) {
        if (dval_tag_of(idv) != DV_STRING) {
            buf_free(&raw);
            return err_set(err, SHALE_INVALID, 0, "_id must be a string");
        }
        id = dval_str(idv);
    } else {
        make_id(gen);
        id = (shale_slice){gen, 24};
    }
    if (id.len == 0 || id.len > DOC_ID_MAX) {
        buf_free(&raw);
        return err_set(err, SHALE_INVALID, 0, "_id must be 1 to %d bytes (got %zu)", DOC_ID_MAX,
                       id.len);
    }
    rc = dval_put_string(&idbuf, id, err);
    buf_reset(&d->enc);
    if (rc == SHALE_OK) {
        rc = dval_set_field(parsed, id_name, (dval){idbuf.data, idbuf.len}, &d->enc, err);
    }
    buf_free(&idbuf);
    buf_free(&raw);
    if (rc != SHALE_OK) {
        return rc;
    }
    d->doc = (dval){d->enc.data, d->enc.len};
    dval stored_id;
    if (!dval_field(d->doc, id_name, &stored_id)) {
        return err_set(err, SHALE_INVALID, 0, "_id could not be set");
    }
    d->id = dval_str(stored_id);
    return SHALE_OK;
}

/* Stores doc (version byte + dval) under its key. */
static shale_code put_doc(shale_txn *txn, const doc_meta *m, dval doc, shale_slice id,
                          shale_buf *scratch, shale_error *err)
{
    shale_buf key = {0};
    shale_code rc = docdb_doc_key(&key, m->cid, id, err);
    if (rc == SHALE_OK) {
        buf_reset(scratch);
        const uint8_t v = DOC_FORMAT_VERSION;
        rc = buf_append(scratch, &v, 1, err);
    }
    if (rc == SHALE_OK) {
        rc = buf_append(scratch, doc.p, doc.len, err);
    }
    if (rc == SHALE_OK) {
        rc = shale_txn_put(txn, sl(&key), sl(scratch), err);
    }
    buf_free(&key);
    return rc;
}

shale_code docdb_entry_key(uint32_t cid, const doc_index *x, dval doc, shale_slice id,
                           shale_buf *out, shale_error *err)
{
    shale_code rc = docdb_index_prefix(out, cid, x->iid, err);
    size_t at = out->len;
    if (rc == SHALE_OK) {
        rc = docdb_path_key(doc, (shale_slice){x->path, x->path_len}, out, err);
    }
    docdb_cap_value_key(out, at);
    return rc != SHALE_OK ? rc : buf_append(out, id.data, id.len, err);
}

/* Moves doc's index entries from old (NULL: none) to new (NULL: none), every index of m (ready
 * or building): an entry whose key is unchanged is left alone. */
static shale_code maintain(shale_txn *txn, const doc_meta *m, const dval *old, const dval *new_doc,
                           shale_slice id, shale_error *err)
{
    shale_buf ko = {0}, kn = {0};
    shale_code rc = SHALE_OK;
    for (uint16_t i = 0; rc == SHALE_OK && i < m->nindexes; i++) {
        const doc_index *x = &m->idx[i];
        buf_reset(&ko);
        buf_reset(&kn);
        if (old != NULL) {
            rc = docdb_entry_key(m->cid, x, *old, id, &ko, err);
        }
        if (rc == SHALE_OK && new_doc != NULL) {
            rc = docdb_entry_key(m->cid, x, *new_doc, id, &kn, err);
        }
        if (rc != SHALE_OK) {
            break;
        }
        if (old != NULL && new_doc != NULL && slice_eq(sl(&ko), sl(&kn))) {
            continue;
        }
        if (old != NULL) {
            rc = shale_txn_delete(txn, sl(&ko), err);
        }
        if (rc == SHALE_OK && new_doc != NULL) {
            rc = shale_txn_put(txn, sl(&kn), id, err);
        }
    }
    buf_free(&ko);
    buf_free(&kn);
    return rc;
}

/* ---- transactions with retry ---- */

typedef shale_code (*txn_fn)(shale_txn *txn, void *arg, bool *final, shale_error *err);

/* Runs fn in a transaction and commits, redoing both when the commit conflicts; fn sets *final
 * for a failure that is the answer (no retry). When *catalog (if given) is true after fn, the
 * transaction writes a catalog entry, and its commit is bracketed for the catalog cache. */
static shale_code run_txn_opts(shale_db *db, const shale_txn_opts *opts, txn_fn fn, void *arg,
                               const bool *catalog, shale_error *err)
{
    shale_code rc = SHALE_OK;
    for (int attempt = 0; attempt < DOC_MAX_RETRIES; attempt++) {
        shale_txn *txn = NULL;
        bool final = false;
        /* The caller's input bounds what a document write buffers (a batch is at most
         * DOC_MAX_BATCH documents of at most max_value_bytes each), not the write buffer size. */
        shale_txn_opts to = *opts;
        to.max_bytes = DOC_TXN_MAX_BYTES;
        rc = shale_txn_begin(db, &to, &txn, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        rc = fn(txn, arg, &final, err);
        if (rc == SHALE_OK) {
            catcache *cc = catalog != NULL && *catalog ? catcache_of(db) : NULL;
            catcache_write_begin(cc);
            rc = shale_txn_commit(txn, err);
            catcache_write_end(cc);
        }
        shale_txn_free(txn);
        if (rc != SHALE_CONFLICT || final) {
            return rc;
        }
    }
    return rc;
}

/* A transaction that writes the catalog (collections and indexes). */
static shale_code run_txn(shale_db *db, txn_fn fn, void *arg, shale_error *err)
{
    static const bool catalog = true;
    shale_txn_opts to = {.isolation = SHALE_ISOLATION_SNAPSHOT};
    return run_txn_opts(db, &to, fn, arg, &catalog, err);
}

/* ---- writes ---- */

/* Prefixes err's message with "<what> i: " when `named`: for calls of several documents, and
 * always for shale_doc_apply (whose caller built a list, even of one). */
static shale_code at_index(const char *what, bool named, size_t i, shale_code rc, shale_error *err)
{
    if (named && err != NULL && rc != SHALE_OK) {
        char head[48];
        int hn = snprintf(head, sizeof head, "%s %zu: ", what, i);
        size_t keep = sizeof err->msg - 1 - (size_t)hn;
        size_t len = strnlen(err->msg, keep);
        memmove(err->msg + hn, err->msg, len);
        memcpy(err->msg, head, (size_t)hn);
        err->msg[hn + len] = '\0';
    }
    return rc;
}

/* One document operation of a write transaction, prepared (parsed, its _id checked) before the
 * transaction starts. */
typedef struct wop {
    shale_doc_op_kind kind;
    const char *coll;
    shale_slice id;  /* update, replace, delete; insert: doc.id */
    doc_in doc;      /* insert, replace: the document (doc.enc owned) */
    shale_buf patch; /* update: the parsed patch (owned) */
} wop;

typedef struct write_ctx {
    wop *ops;
    size_t n;
    bool created; /* this attempt created a collection (a catalog write) */
    bool array;   /* out is a JSON array (the _many calls and apply), else one document */
    bool deletes; /* a delete appends {"_id":..,"deleted":true} to out (apply) */
    shale_buf *out;
    shale_buf scratch;
} write_ctx;

/* Appends one element of the result to ctx->out: the document, or a delete's marker. */
static shale_code emit(write_ctx *c, const dval *doc, shale_slice id, size_t i, shale_error *err)
{
    if (c->out == NULL || (doc == NULL && !c->deletes)) {
        return SHALE_OK;
    }
    shale_code rc = i > 0 ? buf_append(c->out, ",", 1, err) : SHALE_OK; /* inside the array */
    if (rc != SHALE_OK || doc != NULL) {
        return rc != SHALE_OK ? rc : dval_to_json(*doc, c->out, err);
    }
    shale_buf s = {0};
    rc = buf_append(c->out, "{\"_id\":", 7, err);
    if (rc == SHALE_OK) {
        rc = dval_put_string(&s, id, err);
    }
    if (rc == SHALE_OK) {
        rc = dval_to_json((dval){s.data, s.len}, c->out, err);
    }
    if (rc == SHALE_OK) {
        rc = buf_append(c->out, ",\"deleted\":true}", 16, err);
    }
    buf_free(&s);
    return rc;
}

/* Reads (for update) the meta of o's collection, creating it for an insert. */
static shale_code op_meta(shale_txn *txn, write_ctx *c, const wop *o, shale_buf *mkey, doc_meta *m,
                          bool *final, shale_error *err)
{
    shale_code rc = meta_txn_read(txn, o->coll, mkey, m, err);
    if (rc == SHALE_NOT_FOUND && o->kind == SHALE_DOC_INSERT) {
        rc = meta_create(txn, mkey, m, err);
        c->created = true;
    } else if (rc == SHALE_NOT_FOUND) {
        *final = true;
    }
    return rc;
}

/* One operation inside the transaction: the document, its index entries, its output. */
static shale_code write_op(shale_txn *txn, write_ctx *c, const wop *o, const doc_meta *m, size_t i,
                           bool *final, shale_buf *dkey, shale_buf *old, shale_buf *merged,
                           shale_error *err)
{
    shale_code rc = docdb_doc_key(dkey, m->cid, o->id, err);
    if (rc == SHALE_OK) {
        rc = shale_txn_get(txn, sl(dkey), old, err); /* this transaction's own writes included */
    }
    bool exists = rc == SHALE_OK;
    if (rc == SHALE_NOT_FOUND) {
        rc = SHALE_OK;
    }
    dval oldv = {0};
    if (rc == SHALE_OK && exists) {
        rc = docdb_doc_decode(sl(old), o->coll, o->id, &oldv, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    int idl = (int)(o->id.len > 64 ? 64 : o->id.len);
    if (o->kind == SHALE_DOC_INSERT && exists) {
        *final = true;
        return err_set(err, SHALE_CONFLICT, 0, "a document with _id '%.*s' exists in '%s'", idl,
                       (const char *)o->id.data, o->coll);
    }
    if (o->kind != SHALE_DOC_INSERT && !exists) {
        *final = true;
        return err_set(err, SHALE_NOT_FOUND, 0, "no document with _id '%.*s' in '%s'", idl,
                       (const char *)o->id.data, o->coll);
    }
    dval newv = o->doc.doc;
    const dval *newp = &newv;
    if (o->kind == SHALE_DOC_UPDATE) {
        rc = dval_merge(oldv, (dval){o->patch.data, o->patch.len}, merged, err);
        newv = (dval){merged->data, merged->len};
    } else if (o->kind == SHALE_DOC_DELETE) {
        newp = NULL;
    }
    if (rc == SHALE_OK) {
        rc = newp != NULL ? put_doc(txn, m, newv, o->id, &c->scratch, err)
                          : shale_txn_delete(txn, sl(dkey), err);
    }
    if (rc == SHALE_OK) {
        rc = maintain(txn, m, exists ? &oldv : NULL, newp, o->id, err);
    }
    return rc == SHALE_OK ? emit(c, newp, o->id, i, err) : rc;
}

static shale_code write_fn(shale_txn *txn, void *arg, bool *final, shale_error *err)
{
    write_ctx *c = arg;
    shale_buf mkey = {0}, dkey = {0}, old = {0}, merged = {0};
    doc_meta m;
    shale_code rc = SHALE_OK;
    c->created = false;
    if (c->out != NULL) {
        buf_reset(c->out);
        if (c->array) {
            rc = buf_append(c->out, "[", 1, err);
        }
    }
    for (size_t i = 0; rc == SHALE_OK && i < c->n; i++) {
        const wop *o = &c->ops[i];
        /* The meta once per run of operations on one collection (a batch: once). */
        if (i == 0 || strcmp(o->coll, c->ops[i - 1].coll) != 0) {
            rc = op_meta(txn, c, o, &mkey, &m, final, err);
        }
        if (rc == SHALE_OK) {
            rc = write_op(txn, c, o, &m, i, final, &dkey, &old, &merged, err);
        }
        if (rc != SHALE_OK && c->deletes) {
            rc = at_index("operation", true, i, rc, err);
        }
    }
    if (rc == SHALE_OK && c->out != NULL && c->array) {
        rc = buf_append(c->out, "]", 1, err);
    }
    if (rc == SHALE_FULL || rc == SHALE_INVALID) {
        *final = true;
    }
    buf_free(&mkey);
    buf_free(&dkey);
    buf_free(&old);
    buf_free(&merged);
    return rc;
}

/* Runs the prepared operations as one transaction (retried on conflicts), then frees them. */
static shale_code run_write(shale_db *db, write_ctx *c, shale_error *err)
{
    shale_txn_opts to = {.isolation = SHALE_ISOLATION_SNAPSHOT};
    shale_code rc = run_txn_opts(db, &to, write_fn, c, &c->created, err);
    buf_free(&c->scratch);
    if (rc != SHALE_OK && c->out != NULL) {
        c->out->len = 0;
    }
    for (size_t i = 0; i < c->n; i++) {
        buf_free(&c->ops[i].doc.enc);
        buf_free(&c->ops[i].patch);
    }
    return rc;
}

static shale_code check_coll(shale_db *db, const char *coll, shale_error *err)
{
    if (db == NULL) {
        return err_set(err, SHALE_INVALID, 0, "database handle is NULL");
    }
    return docdb_check_name(coll, err);
}

static shale_code check_id(shale_slice id, shale_error *err)
{
    if (id.data == NULL || id.len == 0 || id.len > DOC_ID_MAX) {
        return err_set(err, SHALE_INVALID, 0, "_id must be 1 to %d bytes (got %zu)", DOC_ID_MAX,
                       id.len);
    }
    return SHALE_OK;
}

static shale_code check_json(shale_slice json, const char *what, shale_error *err)
{
    if (json.data == NULL) {
        return err_set(err, SHALE_INVALID, 0, "%s: JSON text is NULL", what);
    }
    return SHALE_OK;
}

static shale_code check_batch(size_t n, shale_error *err)
{
    if (n == 0 || n > DOC_MAX_BATCH) {
        return err_set(err, SHALE_INVALID, 0, "a batch holds 1 to %d documents (got %zu)",
                       DOC_MAX_BATCH, n);
    }
    return SHALE_OK;
}

/* Parses update patches: objects whose _id, if present, equals the id. */
static shale_code prepare_patch(shale_slice id, shale_slice json, shale_buf *out, shale_error *err)
{
    shale_code rc = check_json(json, "update", err);
    if (rc == SHALE_OK) {
        rc = dval_from_json(json.data, json.len, true, out, err);
    }
    dval idv;
    if (rc == SHALE_OK && dval_field((dval){out->data, out->len}, id_name, &idv) &&
        (dval_tag_of(idv) != DV_STRING || !slice_eq(dval_str(idv), id))) {
        rc = err_set(err, SHALE_INVALID, 0, "update: _id cannot change");
    }
    return rc;
}

/* Checks and prepares one operation (before any transaction). */
static shale_code prepare_op(shale_db *db, const shale_doc_op *in, wop *o, shale_error *err)
{
    o->kind = in->kind;
    o->coll = in->coll;
    o->id = in->id;
    shale_code rc = check_coll(db, in->coll, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    switch (in->kind) {
    case SHALE_DOC_INSERT:
        rc = check_json(in->json, "insert", err);
        if (rc == SHALE_OK) {
            rc = doc_prepare(in->json, NULL, &o->doc, err);
        }
        o->id = o->doc.id;
        return rc;
    case SHALE_DOC_REPLACE:
        rc = check_id(in->id, err);
        if (rc == SHALE_OK) {
            rc = check_json(in->json, "replace", err);
        }
        return rc == SHALE_OK ? doc_prepare(in->json, &in->id, &o->doc, err) : rc;
    case SHALE_DOC_UPDATE:
        rc = check_id(in->id, err);
        return rc == SHALE_OK ? prepare_patch(in->id, in->json, &o->patch, err) : rc;
    case SHALE_DOC_DELETE:
        return check_id(in->id, err);
    }
    return err_set(err, SHALE_INVALID, 0, "unknown operation kind %d", (int)in->kind);
}

/* The shared path of every document write: prepare all, then one transaction. what names an
 * operation in messages ("document" for the batch calls, "operation" for apply). */
static shale_code write_ops(shale_db *db, const shale_doc_op *in, size_t n, const char *what,
                            bool array, bool deletes, shale_buf *out, shale_error *err)
{
    wop *ops = calloc(n, sizeof *ops);
    if (ops == NULL) {
        return err_nomem(err);
    }
    shale_code rc = SHALE_OK;
    for (size_t i = 0; rc == SHALE_OK && i < n; i++) {
        rc = at_index(what, n > 1 || deletes, i, prepare_op(db, &in[i], &ops[i], err), err);
        /* Within a batch of one kind on one collection a repeated _id is the caller's mistake,
         * told before anything runs; apply lets later operations see earlier ones instead. */
        for (size_t j = 0; rc == SHALE_OK && !deletes && j < i; j++) {
            if (slice_eq(ops[j].id, ops[i].id)) {
                int l = (int)(ops[i].id.len > 64 ? 64 : ops[i].id.len);
                rc = err_set(err, ops[i].kind == SHALE_DOC_INSERT ? SHALE_CONFLICT : SHALE_INVALID,
                             0, "%s %zu: _id '%.*s' is also %s %zu's", what, i, l,
                             (const char *)ops[i].id.data, what, j);
            }
        }
    }
    write_ctx c = {.ops = ops, .n = n, .array = array, .deletes = deletes, .out = out};
    if (rc == SHALE_OK) {
        rc = run_write(db, &c, err);
    } else {
        for (size_t i = 0; i < n; i++) {
            buf_free(&ops[i].doc.enc);
            buf_free(&ops[i].patch);
        }
    }
    free(ops);
    return rc;
}

/* The batch calls: n operations of one kind on one collection. */
static shale_code write_batch(shale_db *db, const char *coll, shale_doc_op_kind kind,
                              const shale_slice *ids, const shale_slice *json, size_t n, bool array,
                              shale_buf *out, shale_error *err)
{
    shale_code rc = check_coll(db, coll, err);
    if (rc == SHALE_OK && array) {
        rc = check_batch(n, err);
    }
    if (rc == SHALE_OK &&
        ((kind != SHALE_DOC_INSERT && ids == NULL) || (kind != SHALE_DOC_DELETE && json == NULL))) {
        rc = err_set(err, SHALE_INVALID, 0, "%s array is NULL", ids == NULL ? "ids" : "documents");
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    shale_doc_op *in = calloc(n, sizeof *in);
    if (in == NULL) {
        return err_nomem(err);
    }
    for (size_t i = 0; i < n; i++) {
        in[i] = (shale_doc_op){.kind = kind,
                               .coll = coll,
                               .id = ids != NULL ? ids[i] : (shale_slice){0},
                               .json = json != NULL ? json[i] : (shale_slice){0}};
    }
    rc = write_ops(db, in, n, "document", array, false, out, err);
    free(in);
    return rc;
}

shale_code shale_doc_insert(shale_db *db, const char *coll, shale_slice json, shale_buf *out,
                            shale_error *err)
{
    return write_batch(db, coll, SHALE_DOC_INSERT, NULL, &json, 1, false, out, err);
}

shale_code shale_doc_insert_many(shale_db *db, const char *coll, const shale_slice *docs, size_t n,
                                 shale_buf *out, shale_error *err)
{
    return write_batch(db, coll, SHALE_DOC_INSERT, NULL, docs, n, true, out, err);
}

shale_code shale_doc_update_many(shale_db *db, const char *coll, const shale_slice *ids,
                                 const shale_slice *patches, size_t n, shale_buf *out,
                                 shale_error *err)
{
    return write_batch(db, coll, SHALE_DOC_UPDATE, ids, patches, n, true, out, err);
}

shale_code shale_doc_update(shale_db *db, const char *coll, shale_slice id, shale_slice patch,
                            shale_buf *out, shale_error *err)
{
    return write_batch(db, coll, SHALE_DOC_UPDATE, &id, &patch, 1, false, out, err);
}

shale_code shale_doc_replace(shale_db *db, const char *coll, shale_slice id, shale_slice json,
                             shale_buf *out, shale_error *err)
{
    return write_batch(db, coll, SHALE_DOC_REPLACE, &id, &json, 1, false, out, err);
}

shale_code shale_doc_delete(shale_db *db, const char *coll, shale_slice id, shale_error *err)
{
    return write_batch(db, coll, SHALE_DOC_DELETE, &id, NULL, 1, false, NULL, err);
}

shale_code shale_doc_apply(shale_db *db, const shale_doc_op *ops, size_t n, shale_buf *out,
                           shale_error *err)
{
    if (db == NULL) {
        return err_set(err, SHALE_INVALID, 0, "database handle is NULL");
    }
    if (ops == NULL || n == 0 || n > DOC_MAX_BATCH) {
        return err_set(err, SHALE_INVALID, 0, "shale_doc_apply: 1 to %d operations (got %zu)",
                       DOC_MAX_BATCH, ops == NULL ? 0 : n);
    }
    return write_ops(db, ops, n, "operation", true, true, out, err);
}

shale_code shale_doc_get(shale_db *db, const char *coll, shale_slice id, shale_buf *out,
                         shale_error *err)
{
    shale_code rc = check_coll(db, coll, err);
    if (rc == SHALE_OK) {
        rc = check_id(id, err);
    }
    if (rc == SHALE_OK && out == NULL) {
        rc = err_set(err, SHALE_INVALID, 0, "shale_doc_get: out is NULL");
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    shale_snapshot *snap;
    doc_meta m;
    shale_buf key = {0}, val = {0};
    rc = docdb_read_begin(db, coll, &snap, &m, err);
    shale_read_opts ro = {.snapshot = snap};
    if (rc == SHALE_OK) {
        rc = docdb_doc_key(&key, m.cid, id, err);
    }
    if (rc == SHALE_OK) {
        rc = shale_get(db, &ro, sl(&key), &val, err);
        if (rc == SHALE_NOT_FOUND) {
            rc = err_set(err, SHALE_NOT_FOUND, 0, "no document with _id '%.*s' in '%s'",
                         (int)(id.len > 64 ? 64 : id.len), (const char *)id.data, coll);
        }
    }
    dval d;
    if (rc == SHALE_OK) {
        rc = docdb_doc_decode(sl(&val), coll, id, &d, err);
    }
    if (rc == SHALE_OK) {
        buf_reset(out);
        rc = dval_to_json(d, out, err);
    }
    shale_snapshot_release(db, snap);
    buf_free(&key);
    buf_free(&val);
    return rc;
}

/* ---- collections ---- */

typedef struct coll_ctx {
    const char *name;
    bool drop;
    uint32_t cid;
} coll_ctx;

static shale_code coll_fn(shale_txn *txn, void *arg, bool *final, shale_error *err)
{
    coll_ctx *c = arg;
    shale_buf key = {0}, dk = {0};
    doc_meta m;
    shale_code rc = meta_txn_read(txn, c->name, &key, &m, err);
    if (!c->drop) {
        if (rc == SHALE_OK) {
            *final = true;
            rc = err_set(err, SHALE_CONFLICT, 0, "collection '%s' exists", c->name);
        } else if (rc == SHALE_NOT_FOUND) {
            rc = meta_create(txn, &key, &m, err);
        }
    } else if (rc == SHALE_OK) {
        c->cid = m.cid;
        rc = shale_txn_delete(txn, sl(&key), err);
        if (rc == SHALE_OK) {
            rc = drop_key(&dk, m.cid, err);
        }
        if (rc == SHALE_OK) {
            rc = shale_txn_put(txn, sl(&dk), (shale_slice){"", 0}, err);
        }
    } else if (rc == SHALE_NOT_FOUND) {
        *final = true;
    }
    buf_free(&key);
    buf_free(&dk);
    return rc;
}

shale_code shale_coll_create(shale_db *db, const char *name, shale_error *err)
{
    shale_code rc = check_coll(db, name, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    coll_ctx c = {.name = name};
    return run_txn(db, coll_fn, &c, err);
}

/* Deletes every key starting with prefix, DOC_PURGE_CHUNK per batch (no transaction: nobody
 * reads or writes these keys any more). */
static shale_code purge_prefix(shale_db *db, shale_slice prefix, shale_error *err)
{
    shale_batch *b = shale_batch_new();
    if (b == NULL) {
        return err_nomem(err);
    }
    shale_code rc = SHALE_OK;
    for (bool more = true; rc == SHALE_OK && more;) {
        shale_iter *it = NULL;
        shale_read_opts ro = {.prefix = prefix};
        rc = shale_iter_new(db, &ro, &it, err);
        if (rc != SHALE_OK) {
            break;
        }
        shale_batch_clear(b);
        size_t n = 0;
        for (shale_iter_seek_first(it);
             rc == SHALE_OK && shale_iter_valid(it) && n < DOC_PURGE_CHUNK;
             shale_iter_next(it), n++) {
            rc = shale_batch_delete(b, shale_iter_key(it), err);
        }
        if (rc == SHALE_OK) {
            rc = shale_iter_status(it, err);
        }
        more = n == DOC_PURGE_CHUNK;
        shale_iter_free(it);
        if (rc == SHALE_OK && n > 0) {
            rc = shale_write(db, NULL, b, err);
        }
    }
    shale_batch_free(b);
    return rc;
}

/* Removes what dropped collections ('X' cid: documents and every index) and dropped indexes
 * ('Y' cid iid: that index's entries) left, then each marker. A marker is written in the same
 * transaction as the catalog change, so a crash in the middle of a purge leaves the marker, and
 * the next drop finishes the job. */
static shale_code purge_dropped(shale_db *db, shale_error *err)
{
    static const char tags[2] = {doc_tag_drop, doc_tag_drop_index};
    shale_buf mp = {0}, p1 = {0}, p2 = {0}, mk = {0};
    shale_code rc = SHALE_OK;
    for (int t = 0; t < 2 && rc == SHALE_OK; t++) {
        rc = key_start(&mp, tags[t], err);
        for (bool more = true; rc == SHALE_OK && more;) {
            shale_iter *it = NULL;
            shale_read_opts ro = {.prefix = sl(&mp)};
            rc = shale_iter_new(db, &ro, &it, err);
            if (rc != SHALE_OK) {
                break;
            }
            shale_iter_seek_first(it);
            more = shale_iter_valid(it);
            if (more) {
                rc = buf_set(&mk, shale_iter_key(it).data, shale_iter_key(it).len, err);
            } else {
                rc = shale_iter_status(it, err);
            }
            shale_iter_free(it);
            if (rc != SHALE_OK || !more) {
                break;
            }
            const uint8_t *k = mk.data;
            buf_reset(&p1);
            buf_reset(&p2);
            if (t == 0 && mk.len == 7) {
                rc = docdb_doc_prefix(&p1, get_u32be(k + 3), err);
                if (rc == SHALE_OK) {
                    rc = key_start(&p2, doc_tag_index, err);
                }
                if (rc == SHALE_OK) {
                    rc = append_u32be(&p2, get_u32be(k + 3), err);
                }
            } else if (t == 1 && mk.len == 11) {
                rc = docdb_index_prefix(&p1, get_u32be(k + 3), get_u32be(k + 7), err);
            }
            if (rc == SHALE_OK && p1.len > 0) {
                rc = purge_prefix(db, sl(&p1), err);
            }
            if (rc == SHALE_OK && p2.len > 0) {
                rc = purge_prefix(db, sl(&p2), err);
            }
            if (rc == SHALE_OK) {
                rc = shale_delete(db, NULL, sl(&mk), err);
            }
        }
    }
    buf_free(&mp);
    buf_free(&p1);
    buf_free(&p2);
    buf_free(&mk);
    return rc;
}

shale_code shale_coll_drop(shale_db *db, const char *name, shale_error *err)
{
    shale_code rc = check_coll(db, name, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    coll_ctx c = {.name = name, .drop = true};
    rc = run_txn(db, coll_fn, &c, err);
    return rc != SHALE_OK ? rc : purge_dropped(db, err);
}

shale_code shale_coll_list(shale_db *db, shale_buf *out, shale_error *err)
{
    if (db == NULL || out == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_coll_list: NULL argument");
    }
    shale_buf prefix = {0}, name = {0};
    shale_code rc = key_start(&prefix, doc_tag_meta, err);
    shale_iter *it = NULL;
    shale_read_opts ro = {.prefix = sl(&prefix)};
    if (rc == SHALE_OK) {
        rc = shale_iter_new(db, &ro, &it, err);
    }
    buf_reset(out);
    if (rc == SHALE_OK) {
        rc = buf_append(out, "[", 1, err);
    }
    bool first = true;
    for (shale_iter_seek_first(it); rc == SHALE_OK && it != NULL && shale_iter_valid(it);
         shale_iter_next(it)) {
        shale_slice k = shale_iter_key(it);
        buf_reset(&name);
        rc = dval_put_string(&name, (shale_slice){(const uint8_t *)k.data + 3, k.len - 3}, err);
        if (rc == SHALE_OK && !first) {
            rc = buf_append(out, ",", 1, err);
        }
        if (rc == SHALE_OK) {
            rc = dval_to_json((dval){name.data, name.len}, out, err);
        }
        first = false;
    }
    if (rc == SHALE_OK && it != NULL) {
        rc = shale_iter_status(it, err);
    }
    if (rc == SHALE_OK) {
        rc = buf_append(out, "]", 1, err);
    }
    shale_iter_free(it);
    buf_free(&prefix);
    buf_free(&name);
    return rc;
}

/* Counts the keys under prefix at the snapshot, and their value bytes. */
static shale_code count_prefix(shale_db *db, const shale_read_opts *base, shale_slice prefix,
                               uint64_t *n, uint64_t *bytes, shale_error *err)
{
    shale_read_opts ro = *base;
    ro.prefix = prefix;
    shale_iter *it = NULL;
    shale_code rc = shale_iter_new(db, &ro, &it, err);
    *n = 0;
    if (bytes != NULL) {
        *bytes = 0;
    }
    for (shale_iter_seek_first(it); rc == SHALE_OK && shale_iter_valid(it); shale_iter_next(it)) {
        (*n)++;
        if (bytes != NULL) {
            *bytes += shale_iter_key(it).len + shale_iter_value(it).len;
        }
    }
    if (rc == SHALE_OK) {
        rc = shale_iter_status(it, err);
    }
    shale_iter_free(it);
    return rc;
}

/* Appends ,"name":"text" with text JSON-escaped. */
static shale_code append_str_field(shale_buf *out, const char *name, shale_slice text,
                                   shale_error *err)
{
    shale_buf tmp = {0};
    char head[64];
    int hn = snprintf(head, sizeof head, "\"%s\":", name);
    shale_code rc = buf_append(out, head, (size_t)hn, err);
    if (rc == SHALE_OK) {
        rc = dval_put_string(&tmp, text, err);
    }
    if (rc == SHALE_OK) {
        rc = dval_to_json((dval){tmp.data, tmp.len}, out, err);
    }
    buf_free(&tmp);
    return rc;
}

/* The index list; with counts, each index's entries too (the _id index has one per document:
 * ndocs). */
static shale_code index_list_json(shale_db *db, const shale_read_opts *ro, const doc_meta *m,
                                  bool counts, uint64_t ndocs, shale_buf *out, shale_error *err)
{
    static const char id_index[] = "[{\"field\":\"_id\",\"state\":\"ready\"";
    shale_code rc = buf_append(out, id_index, sizeof id_index - 1, err);
    if (rc == SHALE_OK && counts) {
        char c[40];
        int cn = snprintf(c, sizeof c, ",\"entries\":%" PRIu64, ndocs);
        rc = buf_append(out, c, (size_t)cn, err);
    }
    if (rc == SHALE_OK) {
        rc = buf_append(out, "}", 1, err);
    }
    shale_buf prefix = {0};
    for (uint16_t i = 0; rc == SHALE_OK && i < m->nindexes; i++) {
        rc = buf_append(out, ",{", 2, err);
        if (rc == SHALE_OK) {
            rc = append_str_field(out, "field", (shale_slice){m->idx[i].path, m->idx[i].path_len},
                                  err);
        }
        char tail[96];
        int tn = snprintf(tail, sizeof tail, ",\"state\":\"%s\"",
                          m->idx[i].ready ? "ready" : "building");
        if (rc == SHALE_OK) {
            rc = buf_append(out, tail, (size_t)tn, err);
        }
        if (rc == SHALE_OK && counts) {
            uint64_t n = 0;
            rc = docdb_index_prefix(&prefix, m->cid, m->idx[i].iid, err);
            if (rc == SHALE_OK) {
                rc = count_prefix(db, ro, sl(&prefix), &n, NULL, err);
            }
            tn = snprintf(tail, sizeof tail, ",\"entries\":%" PRIu64, n);
            if (rc == SHALE_OK) {
                rc = buf_append(out, tail, (size_t)tn, err);
            }
        }
        if (rc == SHALE_OK) {
            rc = buf_append(out, "}", 1, err);
        }
    }
    if (rc == SHALE_OK) {
        rc = buf_append(out, "]", 1, err);
    }
    buf_free(&prefix);
    return rc;
}

shale_code shale_coll_describe(shale_db *db, const char *name, shale_buf *out, shale_error *err)
{
    shale_code rc = check_coll(db, name, err);
    if (rc == SHALE_OK && out == NULL) {
        rc = err_set(err, SHALE_INVALID, 0, "shale_coll_describe: out is NULL");
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    shale_snapshot *snap;
    doc_meta m;
    shale_buf prefix = {0};
    uint64_t n = 0, bytes = 0;
    rc = docdb_read_begin(db, name, &snap, &m, err);
    shale_read_opts ro = {.snapshot = snap};
    if (rc == SHALE_OK) {
        rc = docdb_doc_prefix(&prefix, m.cid, err);
    }
    if (rc == SHALE_OK) {
        rc = count_prefix(db, &ro, sl(&prefix), &n, &bytes, err);
    }
    buf_reset(out);
    if (rc == SHALE_OK) {
        rc = buf_append(out, "{", 1, err);
    }
    if (rc == SHALE_OK) {
        rc = append_str_field(out, "name", (shale_slice){name, strlen(name)}, err);
    }
    char mid[160];
    int mn = snprintf(mid, sizeof mid,
                      ",\"documents\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"created_ms\":%" PRIu64
                      ",\"indexes\":",
                      n, bytes, m.created_ms);
    if (rc == SHALE_OK) {
        rc = buf_append(out, mid, (size_t)mn, err);
    }
    if (rc == SHALE_OK) {
        rc = index_list_json(db, &ro, &m, true, n, out, err);
    }
    if (rc == SHALE_OK) {
        rc = buf_append(out, "}", 1, err);
    }
    shale_snapshot_release(db, snap);
    buf_free(&prefix);
    return rc;
}

/* ---- indexes ---- */

static shale_code check_path(const char *field, shale_error *err)
{
    if (field == NULL) {
        return err_set(err, SHALE_INVALID, 0, "index field is NULL");
    }
    size_t n = strlen(field);
    if (n == 0 || n > DOC_PATH_MAX) {
        return err_set(err, SHALE_INVALID, 0, "index field must be 1 to %d bytes", DOC_PATH_MAX);
    }
    if (field[0] == '.' || field[n - 1] == '.' || strstr(field, "..") != NULL) {
        return err_set(err, SHALE_INVALID, 0, "index field '%s' has an empty path component",
                       field);
    }
    if (strcmp(field, "_id") == 0) {
        return err_set(err, SHALE_INVALID, 0, "_id is always indexed");
    }
    return SHALE_OK;
}

static int find_index(const doc_meta *m, const char *field)
{
    for (int i = 0; i < m->nindexes; i++) {
        if (strcmp(m->idx[i].path, field) == 0) {
            return i;
        }
    }
    return -1;
}

typedef struct index_ctx {
    const char *coll, *field;
    int step; /* 0 declare, 1 mark ready, 2 drop */
    bool resumed;
    doc_meta m;        /* after the step */
    doc_index dropped; /* step 2: the index removed */
} index_ctx;

static shale_code index_fn(shale_txn *txn, void *arg, bool *final, shale_error *err)
{
    index_ctx *c = arg;
    shale_buf key = {0};
    shale_code rc = meta_txn_read(txn, c->coll, &key, &c->m, err);
    if (rc == SHALE_NOT_FOUND && c->step == 0) {
        rc = meta_create(txn, &key, &c->m, err);
    } else if (rc == SHALE_NOT_FOUND) {
        *final = true;
    }
    int at = rc == SHALE_OK ? find_index(&c->m, c->field) : -1;
    if (rc == SHALE_OK && c->step == 0) {
        if (at >= 0 && c->m.idx[at].ready) {
            *final = true;
            rc = err_set(err, SHALE_CONFLICT, 0, "collection '%s' already has an index on '%s'",
                         c->coll, c->field);
        } else if (at >= 0) {
            c->resumed = true; /* an interrupted build: finish it */
        } else if (c->m.nindexes == DOC_MAX_INDEXES) {
            *final = true;
            rc = err_set(err, SHALE_FULL, 0, "collection '%s' has %d indexes, the most it can",
                         c->coll, DOC_MAX_INDEXES);
        } else {
            doc_index *x = &c->m.idx[c->m.nindexes++];
            memset(x, 0, sizeof *x);
            x->iid = c->m.next_iid++;
            x->path_len = (uint16_t)strlen(c->field);
            memcpy(x->path, c->field, x->path_len);
            rc = meta_write(txn, &key, &c->m, err);
        }
    } else if (rc == SHALE_OK && at < 0) {
        *final = true;
        rc = err_set(err, SHALE_NOT_FOUND, 0, "collection '%s' has no index on '%s'", c->coll,
                     c->field);
    } else if (rc == SHALE_OK && c->step == 1) {
        c->m.idx[at].ready = true;
        rc = meta_write(txn, &key, &c->m, err);
    } else if (rc == SHALE_OK) {
        c->dropped = c->m.idx[at];
        memmove(&c->m.idx[at], &c->m.idx[at + 1],
                (size_t)(c->m.nindexes - at - 1) * sizeof c->m.idx[0]);
        c->m.nindexes--;
        rc = meta_write(txn, &key, &c->m, err);
        shale_buf mk = {0};
        if (rc == SHALE_OK) {
            rc = drop_index_key(&mk, c->m.cid, c->dropped.iid, err);
        }
        if (rc == SHALE_OK) {
            rc = shale_txn_put(txn, sl(&mk), (shale_slice){"", 0}, err);
        }
        buf_free(&mk);
    }
    buf_free(&key);
    return rc;
}

/* One chunk of an index build: entries for the documents with ids in [from, ...), up to
 * DOC_BUILD_CHUNK of them, in a serializable transaction: the range its iterator covered is
 * validated at commit by one scan, so a document changed meanwhile makes the chunk retry (a
 * point read for update per document cost two lookups each). The meta is read for update so
 * that a drop of the index meanwhile stops the build. *next = the id after the chunk. */
typedef struct build_ctx {
    const char *coll;
    const doc_meta *m;
    const doc_index *x;
    shale_buf from, next;
    bool done;
} build_ctx;

static shale_code build_fn(shale_txn *txn, void *arg, bool *final, shale_error *err)
{
    build_ctx *c = arg;
    shale_buf prefix = {0}, start = {0}, ek = {0}, mkey = {0};
    shale_iter *it = NULL;
    doc_meta now;
    shale_code rc = meta_txn_read(txn, c->coll, &mkey, &now, err);
    bool alive = false;
    for (uint16_t i = 0; rc == SHALE_OK && i < now.nindexes; i++) {
        alive |= now.idx[i].iid == c->x->iid;
    }
    if (rc == SHALE_OK && (!alive || now.cid != c->m->cid)) {
        *final = true;
        rc = err_set(err, SHALE_CONFLICT, 0, "index on '%s' was dropped while it was built",
                     c->x->path);
    }
    if (rc == SHALE_NOT_FOUND) {
        *final = true;
    }
    if (rc == SHALE_OK) {
        rc = docdb_doc_prefix(&prefix, c->m->cid, err);
    }
    if (rc == SHALE_OK) {
        rc = buf_set(&start, prefix.data, prefix.len, err);
    }
    if (rc == SHALE_OK) {
        rc = buf_append(&start, c->from.data, c->from.len, err);
    }
    shale_read_opts ro = {.prefix = sl(&prefix)};
    if (rc == SHALE_OK) {
        rc = shale_txn_iter_new(txn, &ro, &it, err);
    }
    size_t n = 0;
    c->done = true;
    if (rc == SHALE_OK) {
        shale_iter_seek(it, sl(&start));
    }
    for (; rc == SHALE_OK && shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice k = shale_iter_key(it);
        shale_slice id = {(const uint8_t *)k.data + prefix.len, k.len - prefix.len};
        if (n == DOC_BUILD_CHUNK) {
            c->done = false;
            rc = buf_set(&c->next, id.data, id.len, err);
            break;
        }
        dval d;
        rc = docdb_doc_decode(shale_iter_value(it), c->coll, id, &d, err);
        if (rc == SHALE_OK) {
            rc = docdb_entry_key(c->m->cid, c->x, d, id, &ek, err);
        }
        if (rc == SHALE_OK) {
            rc = shale_txn_put(txn, sl(&ek), id, err);
        }
        n++;
    }
    if (rc == SHALE_OK && it != NULL) {
        rc = shale_iter_status(it, err);
    }
    shale_iter_free(it);
    buf_free(&prefix);
    buf_free(&start);
    buf_free(&ek);
    buf_free(&mkey);
    return rc;
}

shale_code shale_index_create(shale_db *db, const char *coll, const char *field, shale_error *err)
{
    shale_code rc = check_coll(db, coll, err);
    if (rc == SHALE_OK) {
        rc = check_path(field, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    index_ctx c = {.coll = coll, .field = field, .step = 0};
    rc = run_txn(db, index_fn, &c, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    /* Every write committed from now on maintains the index (docdb.h). Fill in the rest. */
    int at = find_index(&c.m, field);
    if (at < 0) {
        return err_set(err, SHALE_CONFLICT, 0, "index on '%s' was dropped while it was built",
                       field);
    }
    build_ctx b = {.coll = coll, .m = &c.m, .x = &c.m.idx[at]};
    for (bool more = true; rc == SHALE_OK && more;) {
        /* The entries a chunk writes are derived from the documents it read, and any change to
         * those documents (or any new one among them) fails the range validation: the entry
         * keys need no check of their own. */
        shale_txn_opts to = {.isolation = SHALE_ISOLATION_SERIALIZABLE, .unchecked_writes = true};
        rc = run_txn_opts(db, &to, build_fn, &b, NULL, err);
        more = !b.done;
        if (rc == SHALE_OK && more) {
            rc = buf_set(&b.from, b.next.data, b.next.len, err);
        }
    }
    buf_free(&b.from);
    buf_free(&b.next);
    if (rc == SHALE_OK) {
        index_ctx r = {.coll = coll, .field = field, .step = 1};
        rc = run_txn(db, index_fn, &r, err);
    }
    return rc;
}

shale_code shale_index_drop(shale_db *db, const char *coll, const char *field, shale_error *err)
{
    shale_code rc = check_coll(db, coll, err);
    if (rc == SHALE_OK && field != NULL && strcmp(field, "_id") == 0) {
        return err_set(err, SHALE_INVALID, 0, "the _id index cannot be dropped");
    }
    if (rc == SHALE_OK) {
        rc = check_path(field, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    index_ctx c = {.coll = coll, .field = field, .step = 2};
    rc = run_txn(db, index_fn, &c, err);
    return rc != SHALE_OK ? rc : purge_dropped(db, err);
}

shale_code shale_index_list(shale_db *db, const char *coll, shale_buf *out, shale_error *err)
{
    shale_code rc = check_coll(db, coll, err);
    if (rc == SHALE_OK && out == NULL) {
        rc = err_set(err, SHALE_INVALID, 0, "shale_index_list: out is NULL");
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    doc_meta m;
    rc = docdb_meta_read(db, NULL, coll, &m, err);
    buf_reset(out);
    if (rc == SHALE_OK) {
        rc = index_list_json(db, NULL, &m, false, 0, out, err);
    }
    return rc;
}
