/*
 * doccheck: docdb_check, the document layer's consistency check (docdb.h has the contract, the
 * key layout and the problem kinds).
 *
 * Four steps, all reading one snapshot:
 *   1. the catalog: every 'C' entry is read (docdb_meta_read) into a small table of collection
 *      ids and index ids - memory grows with the number of collections, never with documents -
 *      then the table is checked (ids unique, index ids below next_iid) and so is the counter;
 *   2. the drop markers ('X' cid, 'Y' cid iid): few, kept in two small arrays;
 *   3. each collection: its documents in _id order, each decoded, its stored _id compared with
 *      its key, and for each ready index the entry it gives looked up (missing: kind c); then
 *      each index's entries in order, each one's document looked up by the _id the entry holds
 *      (missing: kind a) and the entry it gives now compared with the entry found (kind b). So
 *      each entry costs one point read, and each document one per index: bounded memory, and
 *      every mismatch is seen from the side that has the key;
 *   4. every key under 0x00 0xD0 is classified; the ranges of known collections and indexes are
 *      skipped with one seek each (step 3 read them), the keys of dropped ones counted as
 *      pending, and anything else is an orphan (kind d).
 * Index entry keys are built by docdb_entry_key, the encoder the writes use, never a second one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/error.h"
#include "base/slice.h"
#include "doc/docdb.h"
#include "doc/dval.h"

/* A collection as the catalog lists it: what step 4 needs to tell its keys from orphans. */
typedef struct known_coll {
    char name[DOC_NAME_MAX + 1];
    uint32_t cid;
    uint16_t nindexes;
    uint32_t iids[DOC_MAX_INDEXES];
} known_coll;

typedef struct checker {
    shale_db *db;
    shale_read_opts ro; /* the snapshot, no bounds */
    docdb_check_report *rep;
    docdb_check_coll *cur; /* the collection being checked, NULL outside one */
    known_coll *colls;     /* sorted by cid after step 1 */
    size_t ncolls, colls_cap;
    uint32_t *dropped; /* 'X' markers: cids */
    size_t ndropped, dropped_cap;
    uint64_t *dropped_idx; /* 'Y' markers: cid << 32 | iid */
    size_t ndropped_idx, dropped_idx_cap;
    shale_buf k1, k2, val; /* scratch keys and a value */
} checker;

static shale_slice sl(const shale_buf *b)
{
    return (shale_slice){b->data, b->len};
}

static uint32_t get_u32be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An _id (or any bytes) for a message: at most 64 bytes, non-printable ones as '?'. */
static const char *show(shale_slice s, char out[72])
{
    size_t n = s.len > 64 ? 64 : s.len, i;
    const uint8_t *p = s.data;
    for (i = 0; i < n; i++) {
        out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    }
    if (s.len > n) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

/* A key in hex for a message, at most 32 bytes of it. */
static const char *hex(shale_slice k, char out[72])
{
    static const char digits[] = "0123456789abcdef";
    size_t n = k.len > 32 ? 32 : k.len, o = 0;
    const uint8_t *p = k.data;
    for (size_t i = 0; i < n; i++) {
        out[o++] = digits[p[i] >> 4];
        out[o++] = digits[p[i] & 15];
    }
    if (k.len > n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

static void problem(checker *c, docdb_problem kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(checker *c, docdb_problem kind, const char *fmt, ...)
{
    char msg[DOCDB_CHECK_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    docdb_check_report *r = c->rep;
    r->problems++;
    r->by_kind[kind]++;
    if (r->kept < DOCDB_CHECK_KEEP) {
        memcpy(r->first[r->kept++], msg, sizeof msg);
    }
    if (c->cur != NULL) {
        c->cur->problems++;
    }
    if (r->on_problem != NULL) {
        r->on_problem(r->arg, kind, msg);
    }
}

/* Opens an iterator over the keys starting with prefix, at the snapshot. */
static shale_code iter_prefix(checker *c, shale_slice prefix, shale_iter **it, shale_error *err)
{
    shale_read_opts ro = c->ro;
    ro.prefix = prefix;
    return shale_iter_new(c->db, &ro, it, err);
}

/* Reads key at the snapshot into c->val: *found false when it is absent. */
static shale_code get(checker *c, shale_slice key, bool *found, shale_error *err)
{
    shale_error e;
    shale_code rc = shale_get(c->db, &c->ro, key, &c->val, &e);
    *found = rc == SHALE_OK;
    if (rc == SHALE_NOT_FOUND) {
        return SHALE_OK;
    }
    return rc == SHALE_OK ? SHALE_OK : err_copy(err, &e);
}

/* ---- step 1: the catalog ---- */

static shale_code add_coll(checker *c, const char *name, const doc_meta *m, shale_error *err)
{
    if (c->ncolls == c->colls_cap) {
        size_t cap = c->colls_cap ? c->colls_cap * 2 : 8;
        known_coll *n = realloc(c->colls, cap * sizeof *n);
        if (n == NULL) {
            return err_nomem(err);
        }
        c->colls = n;
        c->colls_cap = cap;
    }
    known_coll *k = &c->colls[c->ncolls++];
    snprintf(k->name, sizeof k->name, "%s", name);
    k->cid = m->cid;
    k->nindexes = m->nindexes;
    for (uint16_t i = 0; i < m->nindexes; i++) {
        k->iids[i] = m->idx[i].iid;
    }
    return SHALE_OK;
}

static int cmp_coll(const void *a, const void *b)
{
    uint32_t x = ((const known_coll *)a)->cid, y = ((const known_coll *)b)->cid;
    return x < y ? -1 : x > y;
}

static shale_code read_catalog(checker *c, shale_error *err)
{
    const uint8_t head[3] = {DOC_PREFIX0, DOC_PREFIX1, 'C'};
    shale_iter *it = NULL;
    doc_meta *m = malloc(sizeof *m); /* 17 KiB: not on the stack */
    char name[DOC_NAME_MAX + 1], shown[72];
    shale_code rc = m != NULL ? iter_prefix(c, (shale_slice){head, 3}, &it, err) : err_nomem(err);

    for (shale_iter_seek_first(it); rc == SHALE_OK && shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice k = shale_iter_key(it);
        shale_slice n = {(const uint8_t *)k.data + 3, k.len - 3};
        shale_error e;
        bool named = n.len >= 1 && n.len <= DOC_NAME_MAX && memchr(n.data, 0, n.len) == NULL;
        if (named) {
            memcpy(name, n.data, n.len);
            name[n.len] = '\0';
            named = docdb_check_name(name, &e) == SHALE_OK;
        }
        if (!named) {
            problem(c, DOCDB_BAD_CATALOG, "catalog entry '%s': not a valid collection name",
                    show(n, shown));
            continue;
        }
        shale_code mrc = docdb_meta_read(c->db, &c->ro, name, m, &e);
        if (mrc == SHALE_CORRUPTION) {
            problem(c, DOCDB_BAD_CATALOG, "%s", e.msg);
            continue;
        }
        if (mrc != SHALE_OK) {
            rc = err_copy(err, &e);
            break;
        }
        for (uint16_t i = 0; i < m->nindexes; i++) {
            bool twice = false;
            for (uint16_t j = 0; j < i; j++) {
                twice |= m->idx[j].iid == m->idx[i].iid;
            }
            if (twice || m->idx[i].iid >= m->next_iid) {
                problem(c, DOCDB_BAD_CATALOG, "collection '%s': index on '%s' has id %u, %s", name,
                        m->idx[i].path, m->idx[i].iid,
                        twice ? "used twice" : "not below the next index id");
            }
        }
        rc = add_coll(c, name, m, err);
    }
    if (rc == SHALE_OK && it != NULL) {
        rc = shale_iter_status(it, err);
    }
    shale_iter_free(it);
    free(m);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (c->ncolls > 0) {
        qsort(c->colls, c->ncolls, sizeof *c->colls, cmp_coll);
    }
    for (size_t i = 1; i < c->ncolls; i++) {
        if (c->colls[i].cid == c->colls[i - 1].cid) {
            problem(c, DOCDB_BAD_CATALOG, "collections '%s' and '%s' both have id %u",
                    c->colls[i - 1].name, c->colls[i].name, c->colls[i].cid);
        }
    }
    /* The id counter: a new collection takes its value, so it must be above every id. */
    const uint8_t nkey[3] = {DOC_PREFIX0, DOC_PREFIX1, 'N'};
    bool found = false;
    rc = get(c, (shale_slice){nkey, 3}, &found, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    uint32_t max_cid = c->ncolls > 0 ? c->colls[c->ncolls - 1].cid : 0;
    if (found && c->val.len != 8) {
        problem(c, DOCDB_BAD_CATALOG, "the collection id counter holds %zu bytes, not 8",
                c->val.len);
    } else if (found && coding_get_fixed64(c->val.data) <= max_cid) {
        problem(c, DOCDB_BAD_CATALOG,
                "the collection id counter (%llu) is not above collection id %u: a new "
                "collection would reuse it",
                (unsigned long long)coding_get_fixed64(c->val.data), max_cid);
    } else if (!found && c->ncolls > 0) {
        problem(c, DOCDB_BAD_CATALOG, "the collection id counter is missing");
    }
    return SHALE_OK;
}

/* ---- step 2: drop markers ---- */

static shale_code read_markers(checker *c, shale_error *err)
{
    for (int t = 0; t < 2; t++) {
        const uint8_t head[3] = {DOC_PREFIX0, DOC_PREFIX1, t == 0 ? 'X' : 'Y'};
        size_t want = t == 0 ? 7 : 11;
        shale_iter *it = NULL;
        shale_code rc = iter_prefix(c, (shale_slice){head, 3}, &it, err);
        for (shale_iter_seek_first(it); rc == SHALE_OK && shale_iter_valid(it);
             shale_iter_next(it)) {
            shale_slice k = shale_iter_key(it);
            const uint8_t *p = k.data;
            if (k.len != want) {
                continue; /* step 4 reports it */
            }
            void **arr = t == 0 ? (void **)&c->dropped : (void **)&c->dropped_idx;
            size_t *n = t == 0 ? &c->ndropped : &c->ndropped_idx;
            size_t *cap = t == 0 ? &c->dropped_cap : &c->dropped_idx_cap;
            size_t elem = t == 0 ? sizeof(uint32_t) : sizeof(uint64_t);
            if (*n == *cap) {
                size_t ncap = *cap ? *cap * 2 : 8;
                void *grown = realloc(*arr, ncap * elem);
                if (grown == NULL) {
                    rc = err_nomem(err);
                    break;
                }
                *arr = grown;
                *cap = ncap;
            }
            if (t == 0) {
                c->dropped[(*n)++] = get_u32be(p + 3);
            } else {
                c->dropped_idx[(*n)++] = (uint64_t)get_u32be(p + 3) << 32 | get_u32be(p + 7);
            }
        }
        if (rc == SHALE_OK && it != NULL) {
            rc = shale_iter_status(it, err);
        }
        shale_iter_free(it);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    return SHALE_OK;
}

/* ---- step 3: one collection ---- */

static shale_code check_documents(checker *c, const char *name, const doc_meta *m, shale_error *err)
{
    static const shale_slice id_name = {"_id", 3};
    shale_buf prefix = {0};
    shale_iter *it = NULL;
    char shown[72];
    shale_code rc = docdb_doc_prefix(&prefix, m->cid, err);
    if (rc == SHALE_OK) {
        rc = iter_prefix(c, sl(&prefix), &it, err);
    }
    for (shale_iter_seek_first(it); rc == SHALE_OK && shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice k = shale_iter_key(it);
        shale_slice id = {(const uint8_t *)k.data + prefix.len, k.len - prefix.len};
        shale_error e;
        dval doc, stored_id;
        c->cur->documents++;
        if (id.len == 0 || id.len > DOC_ID_MAX) {
            problem(c, DOCDB_BAD_DOCUMENT, "collection '%s': a document key with a %zu-byte _id",
                    name, id.len);
            continue;
        }
        if (docdb_doc_decode(shale_iter_value(it), name, id, &doc, &e) != SHALE_OK) {
            problem(c, DOCDB_BAD_DOCUMENT, "%s", e.msg);
            continue;
        }
        if (!dval_field(doc, id_name, &stored_id) || dval_tag_of(stored_id) != DV_STRING ||
            !slice_eq(dval_str(stored_id), id)) {
            problem(c, DOCDB_BAD_DOCUMENT,
                    "collection '%s', document '%s': its _id field is not its key's", name,
                    show(id, shown));
            continue;
        }
        for (uint16_t i = 0; rc == SHALE_OK && i < m->nindexes; i++) {
            const doc_index *x = &m->idx[i];
            bool found = false;
            if (!x->ready) {
                continue; /* an interrupted build: entries may be missing */
            }
            rc = docdb_entry_key(m->cid, x, doc, id, &c->k1, err);
            if (rc == SHALE_OK) {
                rc = get(c, sl(&c->k1), &found, err);
            }
            if (rc == SHALE_OK && !found) {
                problem(c, DOCDB_MISSING_ENTRY,
                        "collection '%s', index on '%s': document '%s' has no entry", name, x->path,
                        show(id, shown));
            }
        }
    }
    if (rc == SHALE_OK && it != NULL) {
        rc = shale_iter_status(it, err);
    }
    shale_iter_free(it);
    buf_free(&prefix);
    return rc;
}

static shale_code check_index(checker *c, const char *name, const doc_meta *m, const doc_index *x,
                              shale_error *err)
{
    shale_buf prefix = {0};
    shale_iter *it = NULL;
    char shown[72];
    shale_code rc = docdb_index_prefix(&prefix, m->cid, x->iid, err);
    if (rc == SHALE_OK) {
        rc = iter_prefix(c, sl(&prefix), &it, err);
    }
    for (shale_iter_seek_first(it); rc == SHALE_OK && shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice k = shale_iter_key(it), id = shale_iter_value(it);
        shale_error e;
        bool found = false;
        dval doc;
        c->cur->entries++;
        c->rep->entries++;
        /* The value repeats the _id the key ends with, after at least one byte of value key. */
        if (id.len == 0 || id.len > DOC_ID_MAX || k.len < prefix.len + 1 + id.len ||
            memcmp((const uint8_t *)k.data + k.len - id.len, id.data, id.len) != 0) {
            problem(c, DOCDB_WRONG_ENTRY,
                    "collection '%s', index on '%s': malformed entry (its value is not the _id "
                    "its key ends with)",
                    name, x->path);
            continue;
        }
        rc = docdb_doc_key(&c->k2, m->cid, id, err);
        if (rc == SHALE_OK) {
            rc = get(c, sl(&c->k2), &found, err);
        }
        if (rc != SHALE_OK) {
            break;
        }
        if (!found) {
            problem(c, DOCDB_NO_DOCUMENT,
                    "collection '%s', index on '%s': entry for _id '%s', which has no document",
                    name, x->path, show(id, shown));
            continue;
        }
        if (docdb_doc_decode(sl(&c->val), name, id, &doc, &e) != SHALE_OK) {
            continue; /* the document walk reports it */
        }
        rc = docdb_entry_key(m->cid, x, doc, id, &c->k1, err);
        if (rc == SHALE_OK && !slice_eq(sl(&c->k1), k)) {
            problem(c, DOCDB_WRONG_ENTRY,
                    "collection '%s', index on '%s': the entry for _id '%s' does not match the "
                    "document's value",
                    name, x->path, show(id, shown));
        }
    }
    if (rc == SHALE_OK && it != NULL) {
        rc = shale_iter_status(it, err);
    }
    shale_iter_free(it);
    buf_free(&prefix);
    return rc;
}

static shale_code check_collection(checker *c, const known_coll *k, doc_meta *m, shale_error *err)
{
    shale_error e;
    docdb_check_coll cs = {.name = k->name, .cid = k->cid};
    shale_code rc = docdb_meta_read(c->db, &c->ro, k->name, m, &e);
    if (rc != SHALE_OK) {
        return err_copy(err, &e); /* read and decoded in step 1, at the same snapshot */
    }
    c->cur = &cs;
    cs.indexes = m->nindexes;
    for (uint16_t i = 0; i < m->nindexes; i++) {
        cs.building += !m->idx[i].ready;
    }
    rc = check_documents(c, k->name, m, err);
    for (uint16_t i = 0; rc == SHALE_OK && i < m->nindexes; i++) {
        rc = check_index(c, k->name, m, &m->idx[i], err);
    }
    c->cur = NULL;
    c->rep->collections++;
    c->rep->documents += cs.documents;
    c->rep->indexes += cs.indexes;
    c->rep->building += cs.building;
    if (rc == SHALE_OK && c->rep->on_collection != NULL) {
        c->rep->on_collection(c->rep->arg, &cs);
    }
    return rc;
}

/* ---- step 4: every key ---- */

static const known_coll *find_coll(const checker *c, uint32_t cid)
{
    size_t lo = 0, hi = c->ncolls;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->colls[mid].cid < cid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < c->ncolls && c->colls[lo].cid == cid ? &c->colls[lo] : NULL;
}

static bool coll_dropped(const checker *c, uint32_t cid)
{
    for (size_t i = 0; i < c->ndropped; i++) {
        if (c->dropped[i] == cid) {
            return true;
        }
    }
    return false;
}

static bool index_dropped(const checker *c, uint32_t cid, uint32_t iid)
{
    uint64_t want = (uint64_t)cid << 32 | iid;
    for (size_t i = 0; i < c->ndropped_idx; i++) {
        if (c->dropped_idx[i] == want) {
            return true;
        }
    }
    return false;
}

static bool has_index(const known_coll *k, uint32_t iid)
{
    for (uint16_t i = 0; i < k->nindexes; i++) {
        if (k->iids[i] == iid) {
            return true;
        }
    }
    return false;
}

/* Where the keys after every key starting with p[0, n) begin: p's last 32-bit big-endian field
 * (at n - 4) plus one, with the carry; 0 when nothing follows within the tag. Into out. */
static size_t after_range(const uint8_t *p, size_t n, uint8_t out[16])
{
    memcpy(out, p, n);
    for (size_t at = n; at > 3; at -= 4) {
        uint32_t v = get_u32be(out + at - 4);
        if (v != UINT32_MAX) {
            put_u32be(out + at - 4, v + 1);
            return at;
        }
        put_u32be(out + at - 4, 0);
    }
    if (out[2] == 0xff) {
        return 0;
    }
    out[2]++; /* past the whole tag */
    return 3;
}

static shale_code scan_all(checker *c, shale_error *err)
{
    const uint8_t head[2] = {DOC_PREFIX0, DOC_PREFIX1};
    shale_iter *it = NULL;
    char shown[72];
    shale_code rc = iter_prefix(c, (shale_slice){head, 2}, &it, err);

    shale_iter_seek_first(it);
    while (rc == SHALE_OK && shale_iter_valid(it)) {
        shale_slice k = shale_iter_key(it);
        const uint8_t *p = k.data;
        uint8_t tag = k.len > 2 ? p[2] : 0;
        const known_coll *kc = NULL;
        size_t skip = 0; /* bytes of p whose range step 3 checked: seek past it */
        const char *why = NULL;
        if (k.len < 3) {
            why = "too short";
        } else if (tag == 'C') {
            /* step 1 */
        } else if (tag == 'N') {
            why = k.len == 3 ? NULL : "not the id counter";
        } else if (tag == 'X') {
            why = k.len == 7 ? NULL : "not a drop marker";
        } else if (tag == 'Y') {
            why = k.len == 11 ? NULL : "not an index drop marker";
        } else if (tag == 'D' && k.len >= 7) {
            uint32_t cid = get_u32be(p + 3);
            if ((kc = find_coll(c, cid)) != NULL) {
                skip = 7;
            } else if (coll_dropped(c, cid)) {
                c->rep->pending++;
            } else {
                why = "a document of no collection";
            }
        } else if (tag == 'I' && k.len >= 11) {
            uint32_t cid = get_u32be(p + 3), iid = get_u32be(p + 7);
            kc = find_coll(c, cid);
            if (kc != NULL && has_index(kc, iid)) {
                skip = 11;
            } else if (coll_dropped(c, cid) || index_dropped(c, cid, iid)) {
                c->rep->pending++;
            } else {
                why = kc != NULL ? "an entry of an index its collection does not have"
                                 : "an index entry of no collection";
            }
        } else {
            why = "no such kind of key";
        }
        if (why != NULL) {
            problem(c, DOCDB_ORPHAN_KEY, "orphan key %s: %s", hex(k, shown), why);
        }
        if (skip == 0) {
            shale_iter_next(it);
            continue;
        }
        uint8_t next[16];
        size_t n = after_range(p, skip, next);
        if (n == 0) {
            break;
        }
        shale_iter_seek(it, (shale_slice){next, n});
    }
    if (rc == SHALE_OK && it != NULL) {
        rc = shale_iter_status(it, err);
    }
    shale_iter_free(it);
    return rc;
}

shale_code docdb_check(shale_db *db, docdb_check_report *rep, shale_error *err)
{
    if (db == NULL || rep == NULL) {
        return err_set(err, SHALE_INVALID, 0, "docdb_check: NULL argument");
    }
    docdb_check_report keep = {
        .on_problem = rep->on_problem, .on_collection = rep->on_collection, .arg = rep->arg};
    *rep = keep;
    checker c = {.db = db, .rep = rep};
    shale_snapshot *snap = shale_snapshot_get(db);
    if (snap == NULL) {
        return err_set(err, SHALE_NOMEM, 0,
                       "could not take a snapshot (out of memory, or the database is closed)");
    }
    c.ro.snapshot = snap;
    doc_meta *m = malloc(sizeof *m);
    shale_code rc = m != NULL ? read_catalog(&c, err) : err_nomem(err);
    if (rc == SHALE_OK) {
        rc = read_markers(&c, err);
    }
    for (size_t i = 0; rc == SHALE_OK && i < c.ncolls; i++) {
        rc = check_collection(&c, &c.colls[i], m, err);
    }
    if (rc == SHALE_OK) {
        rc = scan_all(&c, err);
    }
    free(m);
    free(c.colls);
    free(c.dropped);
    free(c.dropped_idx);
    buf_free(&c.k1);
    buf_free(&c.k2);
    buf_free(&c.val);
    shale_snapshot_release(db, snap);
    return rc;
}
