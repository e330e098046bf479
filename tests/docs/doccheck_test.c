/*
 * docdb_check (src/doc/doccheck.c) and `shale check`'s document section: a clean database checks
 * clean with exact counts, and each kind of damage, made through the plain key-value API on the
 * reserved 0x00 0xD0 keys (keys built with the docdb_* functions), is found and counted:
 *   (a) an index entry whose document is missing, (b) an entry that does not match its
 *   document, (c) a document without its entry, (d) an orphan key, (e) a document that does
 *   not decode; plus the keys of a dropped collection (pending, not a problem).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "doc/docdb.h"
#include "doc/dval.h"
#include "docs_util.h"

TestSuite(doccheck);

enum { NPEOPLE = 50, NCITIES = 20 };

typedef struct seen {
    int collections;
    docdb_check_coll c[8];
    char names[8][DOC_NAME_MAX + 1];
    int problems;
} seen;

static void on_coll(void *arg, const docdb_check_coll *c)
{
    seen *s = arg;
    if (s->collections < 8) {
        s->c[s->collections] = *c;
        snprintf(s->names[s->collections], sizeof s->names[0], "%s", c->name);
    }
    s->collections++;
}

static void on_problem(void *arg, docdb_problem kind, const char *msg)
{
    seen *s = arg;
    cr_assert(kind < DOCDB_PROBLEM_KINDS);
    cr_assert(msg[0] != '\0');
    s->problems++;
}

/* people: NPEOPLE documents, indexes on age and name (every fifth has no name: a null entry);
 * cities: NCITIES documents, an index on pop; empty: no documents, no index. Half the people
 * are flushed into tables, the rest stay in the memtable. */
static void fill(shale_db *db)
{
    char json[128];
    for (int i = 0; i < NPEOPLE; i++) {
        if (i % 5 == 0) {
            snprintf(json, sizeof json, "{\"_id\":\"p%d\",\"age\":%d}", i, i % 13);
        } else {
            snprintf(json, sizeof json, "{\"_id\":\"p%d\",\"age\":%d,\"name\":\"n%d\"}", i, i % 13,
                     i);
        }
        TU_OK(shale_doc_insert(db, "people", tu_str(json), NULL, &ERR));
        if (i == NPEOPLE / 2) {
            TU_OK(shale_index_create(db, "people", "age", &ERR));
            TU_OK(shale_flush(db, &ERR));
        }
    }
    TU_OK(shale_index_create(db, "people", "name", &ERR));
    for (int i = 0; i < NCITIES; i++) {
        snprintf(json, sizeof json, "{\"_id\":\"c%02d\",\"pop\":%d}", i, i * 1000);
        TU_OK(shale_doc_insert(db, "cities", tu_str(json), NULL, &ERR));
    }
    TU_OK(shale_index_create(db, "cities", "pop", &ERR));
    TU_OK(shale_coll_create(db, "empty", &ERR));
}

static docdb_check_report run(shale_db *db, seen *s)
{
    docdb_check_report rep;
    memset(&rep, 0x5a, sizeof rep); /* docdb_check zeroes what it fills */
    memset(s, 0, sizeof *s);
    rep.on_collection = on_coll;
    rep.on_problem = on_problem;
    rep.arg = s;
    shale_error err;
    shale_code rc = docdb_check(db, &rep, &err);
    cr_assert_eq(rc, SHALE_OK, "docdb_check: %s", err.msg);
    cr_assert_eq((uint64_t)s->problems, rep.problems);
    cr_assert_eq(rep.kept, rep.problems < DOCDB_CHECK_KEEP ? rep.problems : DOCDB_CHECK_KEEP);
    uint64_t sum = 0;
    for (int k = 0; k < DOCDB_PROBLEM_KINDS; k++) {
        sum += rep.by_kind[k];
    }
    cr_assert_eq(sum, rep.problems);
    return rep;
}

static const docdb_check_coll *coll_of(const seen *s, const char *name)
{
    for (int i = 0; i < s->collections && i < 8; i++) {
        if (strcmp(s->names[i], name) == 0) {
            return &s->c[i];
        }
    }
    cr_assert_fail("no report for collection %s", name);
    return NULL;
}

static bool kept_has(const docdb_check_report *r, const char *needle)
{
    for (size_t i = 0; i < r->kept; i++) {
        if (strstr(r->first[i], needle) != NULL) {
            return true;
        }
    }
    return false;
}

static void assert_clean(shale_db *db)
{
    seen s;
    docdb_check_report r = run(db, &s);
    cr_assert_eq(r.problems, 0, "problems: %llu, first: %s", (unsigned long long)r.problems,
                 r.kept ? r.first[0] : "");
    cr_assert_eq(r.collections, 3);
    cr_assert_eq(s.collections, 3);
    cr_assert_eq(r.documents, NPEOPLE + NCITIES);
    cr_assert_eq(r.indexes, 3);
    cr_assert_eq(r.entries, 2 * NPEOPLE + NCITIES);
    cr_assert_eq(r.building, 0);
    cr_assert_eq(r.pending, 0);
    const docdb_check_coll *p = coll_of(&s, "people");
    cr_assert_eq(p->documents, NPEOPLE);
    cr_assert_eq(p->indexes, 2);
    cr_assert_eq(p->entries, 2 * NPEOPLE);
    cr_assert_eq(p->problems, 0);
    const docdb_check_coll *c = coll_of(&s, "cities");
    cr_assert_eq(c->documents, NCITIES);
    cr_assert_eq(c->indexes, 1);
    cr_assert_eq(c->entries, NCITIES);
    const docdb_check_coll *e = coll_of(&s, "empty");
    cr_assert_eq(e->documents + e->indexes + e->entries, 0);
}

static doc_meta *meta_of(shale_db *db, const char *coll)
{
    doc_meta *m = malloc(sizeof *m);
    cr_assert_not_null(m);
    TU_OK(docdb_meta_read(db, NULL, coll, m, &ERR));
    return m;
}

static uint32_t iid_of(const doc_meta *m, const char *path)
{
    for (uint16_t i = 0; i < m->nindexes; i++) {
        if (strcmp(m->idx[i].path, path) == 0) {
            return m->idx[i].iid;
        }
    }
    cr_assert_fail("no index on %s", path);
    return 0;
}

/* The entry of {path: value of json} for _id `id` in index iid, as docdb.c builds it. */
static void entry_for(shale_buf *out, uint32_t cid, uint32_t iid, const char *json,
                      const char *path, const char *id)
{
    shale_buf doc = {0};
    TU_OK(dval_from_json(json, strlen(json), true, &doc, &ERR));
    TU_OK(docdb_index_prefix(out, cid, iid, &ERR));
    size_t at = out->len;
    TU_OK(docdb_path_key((dval){doc.data, doc.len}, tu_str(path), out, &ERR));
    docdb_cap_value_key(out, at);
    cr_assert_eq(buf_append(out, id, strlen(id), NULL), SHALE_OK);
    shale_buf_free(&doc);
}

/* Stores json as document `id` of the collection, version byte first, as put_doc does, without
 * touching any index. */
static void raw_put_doc(shale_db *db, uint32_t cid, const char *id, const char *json)
{
    shale_buf key = {0}, doc = {0}, val = {0};
    TU_OK(docdb_doc_key(&key, cid, tu_str(id), &ERR));
    TU_OK(dval_from_json(json, strlen(json), true, &doc, &ERR));
    const uint8_t v = DOC_FORMAT_VERSION;
    cr_assert_eq(buf_append(&val, &v, 1, NULL), SHALE_OK);
    cr_assert_eq(buf_append(&val, doc.data, doc.len, NULL), SHALE_OK);
    TU_OK(shale_put(db, NULL, (shale_slice){key.data, key.len}, (shale_slice){val.data, val.len},
                    &ERR));
    shale_buf_free(&key);
    shale_buf_free(&doc);
    shale_buf_free(&val);
}

static void raw_put(shale_db *db, const uint8_t *k, size_t klen, const char *v)
{
    TU_OK(shale_put(db, NULL, (shale_slice){k, klen}, tu_str(v), &ERR));
}

Test(doccheck, clean_database_has_exact_counts)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "doccheck", NULL);
    seen s;
    docdb_check_report r = run(fx.db, &s); /* no collections at all */
    cr_assert_eq(r.collections + r.documents + r.indexes + r.entries + r.problems, 0);
    cr_assert_eq(s.collections, 0);
    fill(fx.db);
    assert_clean(fx.db);
    /* Also after a restart (everything in tables), and read-only. */
    tu_fx_close(&fx);
    shale_options ro = {.read_only = true};
    fx.db = tu_open(fx.path, &ro);
    assert_clean(fx.db);
    tu_fx_end(&fx);
}

Test(doccheck, each_kind_of_damage_is_found)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "doccheck", NULL);
    fill(fx.db);
    doc_meta *people = meta_of(fx.db, "people");
    uint32_t cid = people->cid, age = iid_of(people, "age");
    shale_buf k = {0};
    seen s;

    /* (c) an index entry deleted. */
    entry_for(&k, cid, age, "{\"age\":3}", "age", "p3");
    TU_OK(shale_delete(fx.db, NULL, (shale_slice){k.data, k.len}, &ERR));
    docdb_check_report r = run(fx.db, &s);
    cr_assert_eq(r.problems, 1, "%s", r.kept ? r.first[0] : "");
    cr_assert_eq(r.by_kind[DOCDB_MISSING_ENTRY], 1);
    cr_assert(kept_has(&r, "document 'p3' has no entry"), "%s", r.first[0]);
    cr_assert_eq(coll_of(&s, "people")->problems, 1);
    cr_assert_eq(coll_of(&s, "cities")->problems, 0);
    cr_assert_eq(r.entries, 2 * NPEOPLE + NCITIES - 1);
    TU_OK(shale_put(fx.db, NULL, (shale_slice){k.data, k.len}, tu_str("p3"), &ERR)); /* mend */
    assert_clean(fx.db);

    /* (a) a bogus entry for a document that does not exist. */
    entry_for(&k, cid, age, "{\"age\":5}", "age", "ghost");
    TU_OK(shale_put(fx.db, NULL, (shale_slice){k.data, k.len}, tu_str("ghost"), &ERR));
    r = run(fx.db, &s);
    cr_assert_eq(r.problems, 1, "%s", r.kept ? r.first[0] : "");
    cr_assert_eq(r.by_kind[DOCDB_NO_DOCUMENT], 1);
    cr_assert(kept_has(&r, "'ghost', which has no document"), "%s", r.first[0]);
    TU_OK(shale_delete(fx.db, NULL, (shale_slice){k.data, k.len}, &ERR));
    assert_clean(fx.db);

    /* (b) + (c): p7's stored age changes (7 -> 99) without its index. */
    raw_put_doc(fx.db, cid, "p7", "{\"_id\":\"p7\",\"age\":99,\"name\":\"n7\"}");
    r = run(fx.db, &s);
    cr_assert_eq(r.problems, 2, "%s", r.kept ? r.first[0] : "");
    cr_assert_eq(r.by_kind[DOCDB_WRONG_ENTRY], 1);
    cr_assert_eq(r.by_kind[DOCDB_MISSING_ENTRY], 1);
    cr_assert(kept_has(&r, "the entry for _id 'p7' does not match"));
    cr_assert(kept_has(&r, "document 'p7' has no entry"));
    raw_put_doc(fx.db, cid, "p7", "{\"_id\":\"p7\",\"age\":7,\"name\":\"n7\"}");
    assert_clean(fx.db);

    /* (d) orphans: a document of no collection, an entry of an index people does not have, a
     * key of no known kind. */
    const uint8_t o1[] = {0x00, 0xD0, 'D', 0, 0, 3, 0xe7, 'x'};
    const uint8_t o2[] = {0x00,
                          0xD0,
                          'I',
                          (uint8_t)(cid >> 24),
                          (uint8_t)(cid >> 16),
                          (uint8_t)(cid >> 8),
                          (uint8_t)cid,
                          0,
                          0,
                          0,
                          77,
                          0x05,
                          'x'};
    const uint8_t o3[] = {0x00, 0xD0, 'Q', 1};
    raw_put(fx.db, o1, sizeof o1, "{}");
    raw_put(fx.db, o2, sizeof o2, "x");
    raw_put(fx.db, o3, sizeof o3, "");
    r = run(fx.db, &s);
    cr_assert_eq(r.problems, 3, "%s", r.kept ? r.first[0] : "");
    cr_assert_eq(r.by_kind[DOCDB_ORPHAN_KEY], 3);
    cr_assert(kept_has(&r, "a document of no collection"));
    cr_assert(kept_has(&r, "an entry of an index its collection does not have"));
    cr_assert(kept_has(&r, "no such kind of key"));
    cr_assert_eq(coll_of(&s, "people")->problems, 0, "orphans belong to no collection");

    /* A dropped collection's leftovers are pending, not orphans: the marker for id 999 makes
     * o1 one of them. */
    const uint8_t x999[] = {0x00, 0xD0, 'X', 0, 0, 3, 0xe7};
    raw_put(fx.db, x999, sizeof x999, "");
    r = run(fx.db, &s);
    cr_assert_eq(r.by_kind[DOCDB_ORPHAN_KEY], 2);
    cr_assert_eq(r.pending, 1);
    TU_OK(shale_delete(fx.db, NULL, (shale_slice){o1, sizeof o1}, &ERR));
    TU_OK(shale_delete(fx.db, NULL, (shale_slice){o2, sizeof o2}, &ERR));
    TU_OK(shale_delete(fx.db, NULL, (shale_slice){o3, sizeof o3}, &ERR));
    TU_OK(shale_delete(fx.db, NULL, (shale_slice){x999, sizeof x999}, &ERR));
    assert_clean(fx.db);

    /* (e) a stored document that does not decode (its entries are then not judged). */
    shale_buf dk = {0};
    TU_OK(docdb_doc_key(&dk, cid, tu_str("p11"), &ERR));
    const uint8_t junk[] = {DOC_FORMAT_VERSION, 0xff, 0x00, 0x13};
    TU_OK(shale_put(fx.db, NULL, (shale_slice){dk.data, dk.len}, (shale_slice){junk, sizeof junk},
                    &ERR));
    r = run(fx.db, &s);
    cr_assert_eq(r.problems, 1, "%s", r.kept ? r.first[0] : "");
    cr_assert_eq(r.by_kind[DOCDB_BAD_DOCUMENT], 1);
    cr_assert(kept_has(&r, "document 'p11': does not decode"), "%s", r.first[0]);
    /* ... and a document whose _id field is not its key's. */
    raw_put_doc(fx.db, cid, "p11", "{\"_id\":\"p12\",\"age\":11,\"name\":\"n11\"}");
    r = run(fx.db, &s);
    cr_assert_eq(r.by_kind[DOCDB_BAD_DOCUMENT], 1);
    cr_assert(kept_has(&r, "its _id field is not its key's"));
    raw_put_doc(fx.db, cid, "p11", "{\"_id\":\"p11\",\"age\":11,\"name\":\"n11\"}");
    assert_clean(fx.db);

    /* Many problems at once: every one counted, the first DOCDB_CHECK_KEEP kept. */
    shale_buf ip = {0};
    TU_OK(docdb_index_prefix(&ip, cid, iid_of(people, "name"), &ERR));
    shale_iter *it = NULL;
    shale_read_opts pro = {.prefix = {ip.data, ip.len}};
    TU_OK(shale_iter_new(fx.db, &pro, &it, &ERR));
    shale_batch *b = shale_batch_new();
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        TU_OK(shale_batch_delete(b, shale_iter_key(it), &ERR));
    }
    TU_OK(shale_iter_status(it, &ERR));
    shale_iter_free(it);
    TU_OK(shale_write(fx.db, NULL, b, &ERR));
    shale_batch_free(b);
    r = run(fx.db, &s);
    cr_assert_eq(r.problems, NPEOPLE);
    cr_assert_eq(r.by_kind[DOCDB_MISSING_ENTRY], NPEOPLE);
    cr_assert_eq(r.kept, DOCDB_CHECK_KEEP);
    cr_assert_eq(coll_of(&s, "people")->problems, NPEOPLE);

    shale_buf_free(&ip);
    shale_buf_free(&dk);
    shale_buf_free(&k);
    free(people);
    tu_fx_end(&fx);
}

Test(doccheck, bad_catalog)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "doccheck", NULL);
    fill(fx.db);
    /* A catalog entry that does not decode, and the id counter set back. */
    shale_buf mk = {0};
    TU_OK(docdb_meta_key(&mk, "broken", &ERR));
    TU_OK(shale_put(fx.db, NULL, (shale_slice){mk.data, mk.len}, tu_str("\x01zz"), &ERR));
    const uint8_t nk[] = {0x00, 0xD0, 'N'};
    const uint8_t one[8] = {1};
    TU_OK(shale_put(fx.db, NULL, (shale_slice){nk, 3}, (shale_slice){one, 8}, &ERR));
    seen s;
    docdb_check_report r = run(fx.db, &s);
    cr_assert_eq(r.by_kind[DOCDB_BAD_CATALOG], 2, "%s", r.kept ? r.first[0] : "");
    cr_assert(kept_has(&r, "'broken'"));
    cr_assert(kept_has(&r, "a new collection would reuse it"));
    cr_assert_eq(r.collections, 3, "the good collections are still checked");
    cr_assert_eq(r.problems, 2);
    shale_buf_free(&mk);
    tu_fx_end(&fx);
}

/* `shale check DIR` runs the document check after the file checks. */
Test(doccheck, cli_check)
{
    if (getenv("SHALE_BIN") == NULL) {
        cr_skip_test("SHALE_BIN is not set (run under ctest)");
    }
    tu_fx fx = {0};
    tu_fx_begin(&fx, "doccheck", NULL);
    fill(fx.db);
    tu_fx_close(&fx);

    const char *args[] = {"check", fx.path, NULL};
    char *out = NULL;
    int status = tu_run_shale(args, &out);
    cr_assert_eq(status, 0, "exit %d:\n%s", status, out);
    cr_assert(strstr(out, "collection people: 50 documents, 2 indexes, 100 index entries: ok") !=
                  NULL,
              "%s", out);
    cr_assert(strstr(out, "collection cities: 20 documents, 1 index, 20 index entries: ok") != NULL,
              "%s", out);
    cr_assert(strstr(out, "collection empty: 0 documents, 0 indexes, 0 index entries: ok") != NULL,
              "%s", out);
    free(out);

    /* Damage: one entry of people's age index goes. */
    fx.db = tu_open(fx.path, NULL);
    doc_meta *people = meta_of(fx.db, "people");
    shale_buf k = {0};
    entry_for(&k, people->cid, iid_of(people, "age"), "{\"age\":3}", "age", "p3");
    TU_OK(shale_delete(fx.db, NULL, (shale_slice){k.data, k.len}, &ERR));
    tu_fx_close(&fx);
    status = tu_run_shale(args, &out);
    cr_assert_eq(status, 1, "exit %d:\n%s", status, out);
    cr_assert(strstr(out, "index on 'age': document 'p3' has no entry") != NULL, "%s", out);
    cr_assert(strstr(out, "collection people: 50 documents, 2 indexes, 99 index entries: 1 "
                          "problem") != NULL,
              "%s", out);
    free(out);

    /* A database without collections prints no document section. */
    char *plain = tu_path(fx.root, "plain");
    shale_options c = {.create_if_missing = true};
    shale_db *db = tu_open(plain, &c);
    tu_put(db, "k", "v");
    TU_OK(shale_close(db, &ERR));
    const char *pargs[] = {"check", plain, NULL};
    status = tu_run_shale(pargs, &out);
    cr_assert_eq(status, 0, "exit %d:\n%s", status, out);
    cr_assert(strstr(out, "collection") == NULL, "%s", out);
    free(out);

    free(plain);
    shale_buf_free(&k);
    free(people);
    tu_fx_end(&fx);
}
