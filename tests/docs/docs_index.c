/*
 * Index consistency: every index holds exactly the entries its documents imply, whatever the
 * writes, failures, index creations and drops, and restarts in between (include/shale.h,
 * "Documents": "every write maintains it in the document's own transaction").
 *
 *   docs_index.random_ops       a long random sequence (3,000 operations) of inserts (client and
 *                               generated ids), updates, replaces, deletes, insert_many and
 *                               update_many batches (some failing: one bad document, an existing
 *                               id, a missing id => nothing applied), index creates and drops and
 *                               reopens, on a database with a 64 KiB write buffer (flushes and
 *                               compactions run under it), against a model. After each phase:
 *                               the raw key space (dt_verify_indexes: the entries of every index
 *                               are exactly those the stored documents imply, one per document per
 *                               index, no stray entries), and through the API every document and,
 *                               for every field and every value it holds, an equality find that
 *                               returns the model's ids (explain: served by the index when one
 *                               exists).
 *   docs_index.concurrent_build 4 threads insert into one collection and one updates existing
 *                               documents while another creates, drops and re-creates indexes:
 *                               every insert lands (ids unique, generated ids increasing per
 *                               thread), and the indexes end up exact.
 *   docs_index.build_with_small_write_buffer
 *                               an index over 3,000 documents builds with a 64 KiB write buffer.
 *   docs_index.long_indexed_values
 *                               an indexed field may hold a value longer than the longest key.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docs_util.h"

TestSuite(docs_index);

enum { NFIELDS = 5, POOL = 700, PHASES = 6, OPS_PER_PHASE = 500 };

static const char *const fields[NFIELDS] = {"a", "b", "c.d", "e", "g"};
static const char *const colors[] = {"red", "green", "blue", "Red", ""};

/* A value for field f (0 .. NFIELDS-1, 5 = pad), or NULL to leave it out. */
static json_t *gen_value(tu_rng *r, int f)
{
    uint64_t x = tu_rng_below(r, 100);
    switch (f) {
    case 0:
        if (x < 10) {
            return NULL;
        }
        if (x < 15) {
            return json_null();
        }
        if (x < 25) {
            return json_real(2.5);
        }
        /* An int, or the same number written as a double ("3.0"): one value to the index. */
        return x < 45 ? json_real((double)tu_rng_below(r, 8))
                      : json_integer((json_int_t)tu_rng_below(r, 8));
    case 1:
        if (x < 10) {
            return NULL;
        }
        return x < 15 ? json_null() : json_string(colors[tu_rng_below(r, 5)]);
    case 2: /* "c", indexed at "c.d" */
        if (x < 15) {
            return NULL;
        }
        if (x < 25) {
            return json_string("flat");
        }
        if (x < 35) {
            return json_pack("{s:i}", "e", 1);
        }
        if (x < 50) {
            return json_pack("{s:s}", "d", tu_rng_below(r, 2) ? "d1" : "d2");
        }
        return json_pack("{s:I}", "d", (json_int_t)tu_rng_below(r, 4));
    case 3:
        switch (x % 4) {
        case 0:
            return NULL;
        case 1:
            return json_null();
        default:
            return json_boolean(x % 4 == 2);
        }
    case 4: {
        if (x < 10) {
            return NULL;
        }
        char g[16];
        snprintf(g, sizeof g, "x%d", (int)tu_rng_below(r, 30));
        return json_string(g);
    }
    default: {
        char pad[200];
        size_t n = 16 + tu_rng_below(r, 150);
        for (size_t i = 0; i < n; i++) {
            pad[i] = (char)('a' + tu_rng_below(r, 26));
        }
        pad[n] = '\0';
        return json_string(pad);
    }
    }
}

static const char *const names[6] = {"a", "b", "c", "e", "g", "pad"};

/* A whole document (with "_id" when id is not NULL). */
static json_t *gen_doc(tu_rng *r, const char *id)
{
    json_t *d = json_object();
    if (id != NULL) {
        json_object_set_new(d, "_id", json_string(id));
    }
    for (int f = 0; f < 6; f++) {
        json_t *v = gen_value(r, f);
        if (v != NULL) {
            json_object_set_new(d, names[f], v);
        }
    }
    return d;
}

/* A patch of 1 .. 3 fields (a field may be set to null, never removed). */
static json_t *gen_patch(tu_rng *r)
{
    json_t *p = json_object();
    int n = 1 + (int)tu_rng_below(r, 3);
    for (int i = 0; i < n; i++) {
        int f = (int)tu_rng_below(r, 6);
        json_t *v = gen_value(r, f);
        json_object_set_new(p, names[f], v != NULL ? v : json_null());
    }
    return p;
}

typedef struct world {
    tu_fx fx;
    tu_rng r;
    json_t *model; /* id -> document */
    bool indexed[NFIELDS];
    char ctx[160];
    int counts[16];                /* operations by kind, for the log */
    uint64_t flushes, compactions; /* over every open */
    int reopens;
} world;

static void reopen(world *w, const shale_options *o)
{
    shale_stats st = tu_stats(w->fx.db);
    w->flushes += st.flushes;
    w->compactions += st.compactions;
    tu_fx_reopen(&w->fx, o);
    w->reopens++;
}

static const char *pool_id(world *w)
{
    static char id[16];
    snprintf(id, sizeof id, "p%03d", (int)tu_rng_below(&w->r, POOL));
    return id;
}

/* An id to change: most often an existing one, sometimes one from the pool (may be absent). */
static const char *some_id(world *w)
{
    size_t n = json_object_size(w->model);
    if (n > 0 && tu_rng_below(&w->r, 10) < 7) {
        size_t k = tu_rng_below(&w->r, n), i = 0;
        const char *key;
        json_t *v;
        json_object_foreach(w->model, key, v)
        {
            if (i++ == k) {
                return key;
            }
        }
    }
    return pool_id(w);
}

/* A pool id that is absent from the model, if a few tries find one. */
static const char *absent_pool_id(world *w)
{
    const char *id = pool_id(w);
    for (int i = 0; i < 20 && json_object_get(w->model, id) != NULL; i++) {
        id = pool_id(w);
    }
    return id;
}

/* An existing id, if there is one. */
static const char *existing_id(world *w)
{
    const char *id = some_id(w);
    for (int i = 0; i < 20 && json_object_get(w->model, id) == NULL; i++) {
        id = some_id(w);
    }
    return id;
}

/* Asserts `out` (a write's result) is the document the model now holds for id. */
static void check_out(world *w, const shale_buf *out, const char *id)
{
    json_t *got = dt_parse(out, w->ctx);
    json_t *want = json_object_get(w->model, id);
    cr_assert_not_null(want, "%s", w->ctx);
    cr_assert_eq(dt_cmp(got, want), 0, "%s: the write returned %.*s", w->ctx, (int)out->len,
                 (const char *)out->data);
    json_decref(got);
}

/* Asserts the stored document of id is the model's (or absent). */
static void check_get(world *w, const char *id)
{
    shale_buf out = {0};
    shale_error err = {0};
    shale_code rc = shale_doc_get(w->fx.db, "coll", tu_str(id), &out, &err);
    json_t *want = json_object_get(w->model, id);
    if (want == NULL) {
        cr_assert_eq(rc, SHALE_NOT_FOUND, "%s: get '%s' returned %d, want NOT_FOUND (%s)", w->ctx,
                     id, rc, err.msg);
    } else {
        cr_assert_eq(rc, SHALE_OK, "%s: get '%s': %s", w->ctx, id, err.msg);
        json_t *got = dt_parse(&out, w->ctx);
        cr_assert_eq(dt_cmp(got, want), 0, "%s: '%s' is %.*s", w->ctx, id, (int)out.len,
                     (const char *)out.data);
        json_decref(got);
    }
    shale_buf_free(&out);
}

static void op_insert(world *w)
{
    bool gen = tu_rng_below(&w->r, 10) == 0;
    char id[32];
    snprintf(id, sizeof id, "%s", tu_rng_below(&w->r, 10) < 6 ? absent_pool_id(w) : pool_id(w));
    json_t *d = gen_doc(&w->r, gen ? NULL : id);
    char *text = dt_dump(d);
    shale_buf out = {0};
    if (!gen && json_object_get(w->model, id) != NULL) {
        TU_CODE(SHALE_CONFLICT, shale_doc_insert(w->fx.db, "coll", tu_str(text), &out, &ERR));
        check_get(w, id);
        w->counts[1]++;
    } else {
        TU_OK(shale_doc_insert(w->fx.db, "coll", tu_str(text), &out, &ERR));
        if (gen) {
            json_t *got = dt_parse(&out, w->ctx);
            snprintf(id, sizeof id, "%s", dt_id(got));
            json_decref(got);
            cr_assert_eq(strlen(id), 24u, "%s: generated id '%s'", w->ctx, id);
            json_object_set_new(d, "_id", json_string(id));
        }
        json_object_set(w->model, id, d);
        check_out(w, &out, id);
        w->counts[0]++;
    }
    shale_buf_free(&out);
    free(text);
    json_decref(d);
}

static void op_update(world *w)
{
    char id[32];
    snprintf(id, sizeof id, "%s", some_id(w));
    json_t *p = gen_patch(&w->r);
    if (tu_rng_below(&w->r, 8) == 0) {
        json_object_set_new(p, "_id", json_string(id)); /* the same _id is allowed */
    }
    char *text = dt_dump(p);
    shale_buf out = {0};
    json_t *old = json_object_get(w->model, id);
    if (old == NULL) {
        TU_CODE(SHALE_NOT_FOUND,
                shale_doc_update(w->fx.db, "coll", tu_str(id), tu_str(text), &out, &ERR));
        w->counts[3]++;
    } else {
        TU_OK(shale_doc_update(w->fx.db, "coll", tu_str(id), tu_str(text), &out, &ERR));
        json_t *merged = json_deep_copy(old);
        json_object_update(merged, p);
        json_object_set_new(w->model, id, merged);
        check_out(w, &out, id);
        w->counts[2]++;
    }
    shale_buf_free(&out);
    free(text);
    json_decref(p);
}

static void op_replace(world *w)
{
    char id[32];
    snprintf(id, sizeof id, "%s", some_id(w));
    /* The body's _id, if any, is ignored. */
    json_t *d = gen_doc(&w->r, tu_rng_below(&w->r, 3) == 0 ? "ignored" : NULL);
    char *text = dt_dump(d);
    shale_buf out = {0};
    if (json_object_get(w->model, id) == NULL) {
        TU_CODE(SHALE_NOT_FOUND,
                shale_doc_replace(w->fx.db, "coll", tu_str(id), tu_str(text), &out, &ERR));
        w->counts[5]++;
    } else {
        TU_OK(shale_doc_replace(w->fx.db, "coll", tu_str(id), tu_str(text), &out, &ERR));
        json_object_set_new(d, "_id", json_string(id));
        json_object_set(w->model, id, d);
        check_out(w, &out, id);
        w->counts[4]++;
    }
    shale_buf_free(&out);
    free(text);
    json_decref(d);
}

static void op_delete(world *w)
{
    char id[32];
    snprintf(id, sizeof id, "%s", some_id(w));
    if (json_object_get(w->model, id) == NULL) {
        TU_CODE(SHALE_NOT_FOUND, shale_doc_delete(w->fx.db, "coll", tu_str(id), &ERR));
    } else {
        TU_OK(shale_doc_delete(w->fx.db, "coll", tu_str(id), &ERR));
        json_object_del(w->model, id);
        w->counts[6]++;
    }
    check_get(w, id);
}

/* Documents that make a batch fail validation. */
static const char *const bad_docs[] = {
    "{\"a\":",                /* invalid JSON */
    "{\"_id\":5}",            /* non-string _id */
    "[1,2]",                  /* not an object */
    "{\"a\":1,\"a\":2}",      /* duplicate name */
    "{\"s\":\"\xff\xfe\"}",   /* invalid UTF-8 */
    "{\"_id\":\"\",\"a\":1}", /* empty _id */
};

static void op_insert_many(world *w)
{
    size_t n = 2 + tu_rng_below(&w->r, 11);
    char ids[16][16];
    char *texts[16];
    shale_slice in[16];
    bool exists = false, dup = tu_rng_below(&w->r, 10) == 0;
    bool any = tu_rng_below(&w->r, 4) == 0; /* else ids absent so far: most batches succeed */
    for (size_t i = 0; i < n; i++) {
        if (dup && i > 0 && i + 1 == n) {
            memcpy(ids[i], ids[0], sizeof ids[i]); /* two documents, one _id */
            break;
        }
        bool fresh;
        int tries = 0;
        do {
            snprintf(ids[i], sizeof ids[i], "%s",
                     any || tries++ > 50 ? pool_id(w) : absent_pool_id(w));
            fresh = true;
            for (size_t j = 0; j < i; j++) {
                fresh = fresh && strcmp(ids[i], ids[j]) != 0;
            }
        } while (!fresh);
        exists = exists || json_object_get(w->model, ids[i]) != NULL;
    }
    json_t *docs = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *d = gen_doc(&w->r, ids[i]);
        texts[i] = dt_dump(d);
        in[i] = tu_str(texts[i]);
        json_array_append_new(docs, d);
    }
    size_t bad = tu_rng_below(&w->r, 4) == 0 ? tu_rng_below(&w->r, n) : SIZE_MAX;
    if (bad != SIZE_MAX) {
        in[bad] = tu_str(bad_docs[tu_rng_below(&w->r, sizeof bad_docs / sizeof bad_docs[0])]);
    }
    shale_buf out = {0};
    if (bad != SIZE_MAX) {
        TU_CODE(SHALE_INVALID, shale_doc_insert_many(w->fx.db, "coll", in, n, &out, &ERR));
        char head[32];
        snprintf(head, sizeof head, "document %zu", bad);
        cr_assert(strstr(tu_last_msg, head) != NULL, "%s: the message '%s' does not name '%s'",
                  w->ctx, tu_last_msg, head);
        w->counts[8]++;
    } else if (exists || dup) {
        TU_CODE(SHALE_CONFLICT, shale_doc_insert_many(w->fx.db, "coll", in, n, &out, &ERR));
        w->counts[8]++;
    } else {
        TU_OK(shale_doc_insert_many(w->fx.db, "coll", in, n, &out, &ERR));
        json_t *got = dt_parse(&out, w->ctx);
        cr_assert(json_is_array(got) && json_array_size(got) == n, "%s: insert_many output",
                  w->ctx);
        for (size_t i = 0; i < n; i++) {
            json_object_set(w->model, ids[i], json_array_get(docs, i));
            cr_assert_eq(dt_cmp(json_array_get(got, i), json_array_get(docs, i)), 0,
                         "%s: insert_many output %zu", w->ctx, i);
        }
        json_decref(got);
        w->counts[7]++;
    }
    /* All or nothing: on failure, none of the batch is there (or changed). */
    for (size_t i = 0; i < n; i++) {
        check_get(w, ids[i]);
        free(texts[i]);
    }
    shale_buf_free(&out);
    json_decref(docs);
}

static void op_update_many(world *w)
{
    size_t n = 2 + tu_rng_below(&w->r, 9);
    char ids[16][32];
    char *texts[16];
    shale_slice sid[16], sp[16];
    bool missing = false, any = tu_rng_below(&w->r, 4) == 0;
    for (size_t i = 0; i < n; i++) {
        bool fresh;
        int tries = 0;
        do { /* (few documents: give up on existing ones, take any pool id) */
            snprintf(ids[i], sizeof ids[i], "%s",
                     any || tries++ > 50 ? some_id(w) : existing_id(w));
            fresh = true;
            for (size_t j = 0; j < i; j++) {
                fresh = fresh && strcmp(ids[i], ids[j]) != 0;
            }
        } while (!fresh);
        missing = missing || json_object_get(w->model, ids[i]) == NULL;
    }
    json_t *patches = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *p = gen_patch(&w->r);
        texts[i] = dt_dump(p);
        sid[i] = tu_str(ids[i]);
        sp[i] = tu_str(texts[i]);
        json_array_append_new(patches, p);
    }
    size_t bad = tu_rng_below(&w->r, 4) == 0 ? tu_rng_below(&w->r, n) : SIZE_MAX;
    if (bad != SIZE_MAX) {
        sp[bad] = tu_rng_below(&w->r, 2) ? TU_SL("{\"_id\":\"changed\"}") : TU_SL("{\"a\":}");
    }
    shale_buf out = {0};
    if (bad != SIZE_MAX) {
        TU_CODE(SHALE_INVALID, shale_doc_update_many(w->fx.db, "coll", sid, sp, n, &out, &ERR));
        char head[32];
        snprintf(head, sizeof head, "document %zu", bad);
        cr_assert(strstr(tu_last_msg, head) != NULL, "%s: the message '%s' does not name '%s'",
                  w->ctx, tu_last_msg, head);
        w->counts[10]++;
    } else if (missing) {
        TU_CODE(SHALE_NOT_FOUND, shale_doc_update_many(w->fx.db, "coll", sid, sp, n, &out, &ERR));
        w->counts[10]++;
    } else {
        TU_OK(shale_doc_update_many(w->fx.db, "coll", sid, sp, n, &out, &ERR));
        json_t *got = dt_parse(&out, w->ctx);
        cr_assert(json_is_array(got) && json_array_size(got) == n, "%s: update_many output",
                  w->ctx);
        for (size_t i = 0; i < n; i++) {
            json_t *merged = json_deep_copy(json_object_get(w->model, ids[i]));
            json_object_update(merged, json_array_get(patches, i));
            json_object_set_new(w->model, ids[i], merged);
            cr_assert_eq(dt_cmp(json_array_get(got, i), merged), 0, "%s: update_many output %zu",
                         w->ctx, i);
        }
        json_decref(got);
        w->counts[9]++;
    }
    for (size_t i = 0; i < n; i++) {
        check_get(w, ids[i]);
        free(texts[i]);
    }
    shale_buf_free(&out);
    json_decref(patches);
}

static void op_index(world *w)
{
    int f = (int)tu_rng_below(&w->r, NFIELDS);
    bool create = tu_rng_below(&w->r, 10) < 6;
    if (create) {
        if (w->indexed[f]) {
            TU_CODE(SHALE_CONFLICT, shale_index_create(w->fx.db, "coll", fields[f], &ERR));
        } else {
            TU_OK(shale_index_create(w->fx.db, "coll", fields[f], &ERR));
            w->indexed[f] = true;
            w->counts[11]++;
        }
    } else {
        if (w->indexed[f]) {
            TU_OK(shale_index_drop(w->fx.db, "coll", fields[f], &ERR));
            w->indexed[f] = false;
            w->counts[12]++;
        } else {
            TU_CODE(SHALE_NOT_FOUND, shale_index_drop(w->fx.db, "coll", fields[f], &ERR));
        }
    }
}

static void verify(world *w, const char *when)
{
    char ctx[200];
    snprintf(ctx, sizeof ctx, "%s (%s)", w->ctx, when);
    size_t n = dt_verify_indexes(w->fx.db, "coll", ctx);
    cr_assert_eq(n, json_object_size(w->model), "%s: %zu documents stored, the model has %zu", ctx,
                 n, json_object_size(w->model));
    dt_check_model(w->fx.db, "coll", w->model, fields, w->indexed, NFIELDS, ctx);
    /* The index list agrees with the model. */
    shale_buf out = {0};
    TU_OK(shale_index_list(w->fx.db, "coll", &out, &ERR));
    json_t *list = dt_parse(&out, ctx);
    size_t want = 1;
    for (int f = 0; f < NFIELDS; f++) {
        want += w->indexed[f];
    }
    cr_assert_eq(json_array_size(list), want, "%s: index list %.*s", ctx, (int)out.len,
                 (const char *)out.data);
    json_decref(list);
    shale_buf_free(&out);
}

Test(docs_index, random_ops)
{
    world w = {0};
    shale_options o = tu_small_lsm_options(2);
    tu_fx_begin(&w.fx, "docs-random", &o);
    tu_rng_seed(&w.r, 0x5eed0001);
    w.model = json_object();
    TU_OK(shale_coll_create(w.fx.db, "coll", &ERR));
    for (int phase = 0; phase < PHASES; phase++) {
        for (int op = 0; op < OPS_PER_PHASE; op++) {
            snprintf(w.ctx, sizeof w.ctx, "phase %d op %d", phase, op);
            uint64_t x = tu_rng_below(&w.r, 1000);
            /* Past 300 documents half the inserts become deletes: the collection stays around
             * there, with as many absent ids as present ones. */
            if ((x < 250 || (x >= 740 && x < 840)) && json_object_size(w.model) > 300 &&
                tu_rng_below(&w.r, 2) == 0) {
                x = 700;
            }
            if (x < 250) {
                op_insert(&w);
            } else if (x < 430) {
                op_update(&w);
            } else if (x < 540) {
                op_replace(&w);
            } else if (x < 740) {
                op_delete(&w);
            } else if (x < 840) {
                op_insert_many(&w);
            } else if (x < 930) {
                op_update_many(&w);
            } else if (x < 996) {
                op_index(&w);
            } else {
                reopen(&w, &o);
            }
        }
        snprintf(w.ctx, sizeof w.ctx, "after phase %d", phase);
        verify(&w, "open");
        if (phase % 2 == 1) {
            reopen(&w, &o);
            verify(&w, "reopened");
        }
    }
    shale_stats st = tu_stats(w.fx.db);
    w.flushes += st.flushes;
    w.compactions += st.compactions;
    cr_log_info("random_ops: %zu documents; inserts %d (+%d conflicts), updates %d (+%d missing), "
                "replaces %d (+%d), deletes %d, insert_many %d (+%d failed), update_many %d "
                "(+%d failed), index creates %d drops %d, reopens %d; %llu flushes, %llu "
                "compactions",
                json_object_size(w.model), w.counts[0], w.counts[1], w.counts[2], w.counts[3],
                w.counts[4], w.counts[5], w.counts[6], w.counts[7], w.counts[8], w.counts[9],
                w.counts[10], w.counts[11], w.counts[12], w.reopens, (unsigned long long)w.flushes,
                (unsigned long long)w.compactions);
    cr_assert_gt(w.flushes, 10u, "the write buffer never filled: the test lost its point");
    cr_assert_gt(w.counts[7], 10);
    cr_assert_gt(w.counts[8], 10);
    cr_assert_gt(w.counts[9], 10);
    cr_assert_gt(w.counts[10], 10);
    cr_assert_gt(w.counts[11], 5);
    cr_assert_gt(w.counts[12], 2);
    json_decref(w.model);
    tu_fx_end(&w.fx);
}

/* ------------------------------------------------------------------------------------------ */
/* Concurrent writes while indexes are built                                                  */
/* ------------------------------------------------------------------------------------------ */

enum { WRITERS = 4, PER_WRITER = 300, PRELOAD = 700, UPDATES = 600 };

typedef struct conc {
    shale_db *db;
    tu_failure fail;
    atomic_int inserted;
    char *ids[WRITERS][PER_WRITER]; /* the stored _id of each insert */
    int pre_v[PRELOAD];             /* the last value of "v" of each preload document */
    bool pre_updated[PRELOAD];      /* whether the updater changed it ("w" is then "u<v % 3>") */
} conc;

typedef struct warg {
    conc *c;
    int t;
} warg;

static void *writer_main(void *p)
{
    warg *a = p;
    conc *c = a->c;
    shale_buf out = {0};
    shale_error err = {0};
    for (int i = 0; i < PER_WRITER && !tu_failed(&c->fail); i++) {
        char text[160];
        if (i % 3 == 0) {
            snprintf(text, sizeof text, "{\"v\":%d,\"w\":\"w%d\",\"t\":%d,\"i\":%d}", i % 13, i % 7,
                     a->t, i);
        } else {
            snprintf(text, sizeof text,
                     "{\"_id\":\"t%d-%04d\",\"v\":%d,\"w\":\"w%d\",\"t\":%d,\"i\":%d}", a->t, i,
                     i % 13, i % 7, a->t, i);
        }
        shale_code rc = shale_doc_insert(c->db, "conc", tu_str(text), &out, &err);
        if (rc != SHALE_OK) {
            tu_fail(&c->fail, "writer %d insert %d: %d %s", a->t, i, rc, err.msg);
            break;
        }
        json_error_t je;
        json_t *d = json_loadb(out.data, out.len, 0, &je);
        json_t *id = json_object_get(d, "_id");
        if (!json_is_string(id)) {
            tu_fail(&c->fail, "writer %d insert %d: output %.*s", a->t, i, (int)out.len,
                    (const char *)out.data);
            json_decref(d);
            break;
        }
        c->ids[a->t][i] = strdup(json_string_value(id));
        json_decref(d);
        atomic_fetch_add(&c->inserted, 1);
        if (i % 16 == 0) {
            sched_yield();
        }
    }
    shale_buf_free(&out);
    return NULL;
}

static void *updater_main(void *p)
{
    conc *c = p;
    tu_rng r;
    tu_rng_seed(&r, 99);
    shale_error err = {0};
    for (int i = 0; i < UPDATES && !tu_failed(&c->fail); i++) {
        int k = (int)tu_rng_below(&r, PRELOAD), v = (int)tu_rng_below(&r, 13);
        char id[16], patch[64];
        snprintf(id, sizeof id, "pre%04d", k);
        snprintf(patch, sizeof patch, "{\"v\":%d,\"w\":\"u%d\"}", v, v % 3);
        shale_code rc = shale_doc_update(c->db, "conc", tu_str(id), tu_str(patch), NULL, &err);
        if (rc != SHALE_OK) {
            tu_fail(&c->fail, "update %s: %d %s", id, rc, err.msg);
            break;
        }
        c->pre_v[k] = v;
        c->pre_updated[k] = true;
    }
    return NULL;
}

static void *indexer_main(void *p)
{
    conc *c = p;
    shale_error err = {0};
    while (atomic_load(&c->inserted) < 150 && !tu_failed(&c->fail)) {
        sched_yield();
    }
    static const struct {
        bool create;
        const char *field;
    } steps[] = {{true, "v"}, {true, "w"}, {false, "w"}, {true, "t"}, {true, "w"}};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        shale_code rc = steps[s].create ? shale_index_create(c->db, "conc", steps[s].field, &err)
                                        : shale_index_drop(c->db, "conc", steps[s].field, &err);
        if (rc != SHALE_OK) {
            tu_fail(&c->fail, "index %s '%s': %d %s", steps[s].create ? "create" : "drop",
                    steps[s].field, rc, err.msg);
            break;
        }
    }
    return NULL;
}

Test(docs_index, concurrent_build)
{
    tu_fx fx = {0};
    shale_options o = tu_small_lsm_options(4);
    tu_fx_begin(&fx, "docs-conc", &o);
    conc *c = calloc(1, sizeof *c);
    c->db = fx.db;
    tu_failure_init(&c->fail);
    json_t *model = json_object();

    /* Existing documents, so the builds have more than one chunk to fill in. */
    shale_slice in[100];
    char texts[100][96];
    for (int b = 0; b < PRELOAD / 100; b++) {
        for (int i = 0; i < 100; i++) {
            int k = b * 100 + i;
            snprintf(texts[i], sizeof texts[i],
                     "{\"_id\":\"pre%04d\",\"v\":%d,\"w\":\"p\",\"t\":-1}", k, k % 13);
            in[i] = tu_str(texts[i]);
            c->pre_v[k] = k % 13;
        }
        TU_OK(shale_doc_insert_many(fx.db, "conc", in, 100, NULL, &ERR));
    }

    pthread_t th[WRITERS + 2];
    warg args[WRITERS];
    for (int t = 0; t < WRITERS; t++) {
        args[t] = (warg){c, t};
        cr_assert_eq(pthread_create(&th[t], NULL, writer_main, &args[t]), 0);
    }
    cr_assert_eq(pthread_create(&th[WRITERS], NULL, updater_main, c), 0);
    cr_assert_eq(pthread_create(&th[WRITERS + 1], NULL, indexer_main, c), 0);
    for (int t = 0; t < WRITERS + 2; t++) {
        pthread_join(th[t], NULL);
    }
    tu_failure_check(&c->fail, "concurrent_build");

    /* The model: the preload with the updater's last values, and every insert. */
    for (int k = 0; k < PRELOAD; k++) {
        char id[16];
        snprintf(id, sizeof id, "pre%04d", k);
        char w[8];
        snprintf(w, sizeof w, "u%d", c->pre_v[k] % 3);
        json_t *d = json_pack("{s:s,s:i,s:s,s:i}", "_id", id, "v", c->pre_v[k], "w",
                              c->pre_updated[k] ? w : "p", "t", -1);
        json_object_set_new(model, id, d);
    }
    for (int t = 0; t < WRITERS; t++) {
        const char *last_gen = "";
        for (int i = 0; i < PER_WRITER; i++) {
            const char *id = c->ids[t][i];
            cr_assert_not_null(id);
            cr_assert_null(json_object_get(model, id), "id '%s' given twice", id);
            if (i % 3 == 0) {
                cr_assert_eq(strlen(id), 24u, "generated id '%s'", id);
                cr_assert_gt(strcmp(id, last_gen), 0, "writer %d: generated id '%s' after '%s'", t,
                             id, last_gen);
                last_gen = id;
            }
            char w[8];
            snprintf(w, sizeof w, "w%d", i % 7);
            json_object_set_new(
                model, id,
                json_pack("{s:s,s:i,s:s,s:i,s:i}", "_id", id, "v", i % 13, "w", w, "t", t, "i", i));
        }
    }
    cr_assert_eq(json_object_size(model), (size_t)(PRELOAD + WRITERS * PER_WRITER));

    const char *paths[] = {"v", "w", "t"};
    const bool indexed[] = {true, true, true};
    size_t n = dt_verify_indexes(fx.db, "conc", "after the concurrent run");
    cr_assert_eq(n, json_object_size(model));
    dt_check_model(fx.db, "conc", model, paths, indexed, 3, "after the concurrent run");
    tu_fx_reopen(&fx, &o);
    dt_verify_indexes(fx.db, "conc", "after reopening");

    for (int t = 0; t < WRITERS; t++) {
        for (int i = 0; i < PER_WRITER; i++) {
            free(c->ids[t][i]);
        }
    }
    free(c);
    json_decref(model);
    tu_fx_end(&fx);
}

/* ------------------------------------------------------------------------------------------ */
/* Limits an index must live with                                                              */
/* ------------------------------------------------------------------------------------------ */

/* An index over thousands of documents builds on a database with the smallest write buffer
 * (64 KiB, which also bounds a transaction's buffered bytes by default). */
Test(docs_index, build_with_small_write_buffer)
{
    tu_fx fx = {0};
    shale_options o = tu_small_lsm_options(4);
    tu_fx_begin(&fx, "docs-build-small", &o);
    shale_slice in[100];
    char texts[100][96];
    for (int b = 0; b < 30; b++) {
        for (int i = 0; i < 100; i++) {
            snprintf(texts[i], sizeof texts[i], "{\"_id\":\"d%05d\",\"v\":%d,\"w\":\"%030d\"}",
                     b * 100 + i, i % 13, i);
            in[i] = tu_str(texts[i]);
        }
        TU_OK(shale_doc_insert_many(fx.db, "c", in, 100, NULL, &ERR));
    }
    TU_OK(shale_index_create(fx.db, "c", "v", &ERR));
    TU_OK(shale_index_create(fx.db, "c", "w", &ERR));
    cr_assert_eq(dt_verify_indexes(fx.db, "c", "3000 documents"), 3000u);
    cr_assert_str_eq(dt_plan(fx.db, "c", "{\"v\":3}", NULL), "index");
    tu_fx_end(&fx);
}

/* An indexed field may hold any value a document may hold: a string longer than the
 * database's longest key (4096 bytes by default) included, whether the index exists before the
 * write or is built over it. */
Test(docs_index, long_indexed_values)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "docs-long-values", NULL);
    dt_str a = {0}, b = {0};
    dt_str_addf(&a, "{\"_id\":\"a\",\"s\":\"%06000d\"}", 1);
    dt_str_addf(&b, "{\"_id\":\"b\",\"s\":\"%06000d\"}", 2);
    TU_OK(shale_doc_insert(fx.db, "c", tu_str(dt_str_c(&a)), NULL, &ERR));
    shale_code rc = shale_index_create(fx.db, "c", "s", NULL);
    shale_buf out = {0};
    TU_OK(shale_index_list(fx.db, "c", &out, &ERR));
    cr_expect_eq(rc, SHALE_OK,
                 "index create over a 6000-byte value returned %d; the index list "
                 "is now %.*s",
                 rc, (int)out.len, (const char *)out.data);
    TU_OK(shale_doc_insert(fx.db, "c", tu_str(dt_str_c(&b)), NULL, &ERR));
    if (rc == SHALE_OK) {
        dt_verify_indexes(fx.db, "c", "long values");
        char filter[7000];
        snprintf(filter, sizeof filter, "{\"s\":\"%06000d\"}", 2);
        char *ids = dt_find_ids(fx.db, "c", filter, "long value");
        cr_assert_str_eq(ids, "b");
        free(ids);
    }
    shale_buf_free(&out);
    dt_str_free(&a);
    dt_str_free(&b);
    tu_fx_end(&fx);
}
