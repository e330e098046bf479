/*
 * encbench: Shale's document encoding (src/doc/dval.h) against MessagePack (Debian's msgpack-c)
 * on what the document layer does with a stored document: read one field, read a nested field,
 * evaluate a 3-condition filter; plus encoded size and encode time.
 *
 *   encbench [--num N] [--seed S] [--runs R]
 *
 * Data: N (default 200,000) documents of about 200 bytes made from the seed exactly as docbench's
 * (same generator): _id, name, age int, score double, active bool, city (one of 500), address
 * {street, zip}, tags array. Each is encoded once with dval_from_json and once with msgpack-c
 * (jansson parse with dval_from_json's flags, then msgpack_packer over the tree: keys in the
 * JSON text's order). All encoded documents sit back to back in one buffer per encoding.
 *
 * Every read workload runs over the whole set R times (default 5); the best run is reported, in
 * ns per document. The readers:
 *   shale           dval_field / dval_path / dfilter_match (filter parsed once), on bytes
 *                   trusted as produced by the encoder.
 *   shale+frame     the same preceded by dval_check_frame on each document: what a scan pays
 *                   for a document read back from the store (docdb checks every one it reads).
 *   mp unpack_next  msgpack_unpack_next into one reused msgpack_unpacked (the documented C way
 *                   to read a buffer), then a scan of the map(s) for the keys.
 *   mp unpack+zone  msgpack_unpack with one caller zone cleared after each document: the
 *                   fastest reader msgpack-c's C API offers (no zone malloc/free per document);
 *                   msgpack-c has no lazy or in-place field access in C, only a full decode.
 * Each workload counts its matches; the counts must agree across readers (printed, and checked).
 *
 * Encode: "from JSON text" is the whole path a document insert takes (text -> jansson ->
 * encoding), for both; "jansson parse only" is the common part, so each encoder's own cost is
 * the difference; "msgpack pack from tree" times only the packer over already-parsed trees.
 * (dval's tree encoder is internal to dval_from_json, so Shale's own cost is given as the
 * difference.) dval_from_json also sorts fields, checks UTF-8 and nesting depth.
 */
#include <inttypes.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shale.h"

#include "base/buf.h"
#include "doc/dfilter.h"
#include "doc/dval.h"
#include "docgen.h"

#define NCITIES  DOCGEN_CITIES
#define AGE_MIN  DOCGEN_AGE_MIN
#define AGE_MAX  DOCGEN_AGE_MAX
#define DOC_CAP  512
#define CHUNK    1024
#define AGE_CUT  30
#define JFLAGS   (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL)
#define MAX_RUNS 100

/* ---- the documents: bench/docgen.h, as docbench.c's ---- */

static size_t make_doc(uint64_t seed, uint64_t k, char *out, size_t cap)
{
    char id[DOCGEN_ID_CAP];
    return docgen_make(seed, k, out, cap, id);
}

/* ---- helpers ---- */

static void die(const char *what)
{
    fprintf(stderr, "encbench: %s\n", what);
    exit(1);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* A set of documents back to back: doc i is data[off[i] .. off[i+1]). */
typedef struct docset {
    char *data;
    size_t len, cap;
    size_t *off; /* n + 1 entries */
} docset;

static void set_add(docset *s, size_t i, const void *p, size_t n)
{
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2;
        s->data = realloc(s->data, s->cap);
        if (s->data == NULL) {
            die("out of memory");
        }
    }
    memcpy(s->data + s->len, p, n);
    s->off[i] = s->len;
    s->len += n;
    s->off[i + 1] = s->len;
}

/* Packs a jansson tree (object keys in insertion order, i.e. the text's order). */
static int pack_json(msgpack_packer *pk, json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_NULL:
        return msgpack_pack_nil(pk);
    case JSON_TRUE:
        return msgpack_pack_true(pk);
    case JSON_FALSE:
        return msgpack_pack_false(pk);
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, (int64_t)json_integer_value(j));
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(j));
    case JSON_STRING:
        return msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        if (msgpack_pack_array(pk, json_array_size(j)) != 0) {
            return -1;
        }
        json_array_foreach(j, i, v)
        {
            if (pack_json(pk, v) != 0) {
                return -1;
            }
        }
        return 0;
    }
    case JSON_OBJECT: {
        const char *k;
        size_t klen;
        json_t *v;
        if (msgpack_pack_map(pk, json_object_size(j)) != 0) {
            return -1;
        }
        json_object_keylen_foreach(j, k, klen, v)
        {
            if (msgpack_pack_str_with_body(pk, k, klen) != 0 || pack_json(pk, v) != 0) {
                return -1;
            }
        }
        return 0;
    }
    }
    return -1;
}

static bool mp_streq(const msgpack_object *o, const char *s, size_t n)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

/* The value of key `name` in map m, or NULL: a linear scan, as a msgpack reader must. */
static const msgpack_object *mp_get(const msgpack_object *m, const char *name, size_t n)
{
    if (m->type != MSGPACK_OBJECT_MAP) {
        return NULL;
    }
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        if (mp_streq(&m->via.map.ptr[i].key, name, n)) {
            return &m->via.map.ptr[i].val;
        }
    }
    return NULL;
}

/* ---- the workloads ---- */

enum { OP_CITY, OP_ZIP, OP_FILTER, OP_COUNT };
enum { R_SHALE, R_SHALE_FRAME, R_MP_NEXT, R_MP_ZONE, R_COUNT };

static const char *const op_names[OP_COUNT] = {"lookup city", "lookup address.zip",
                                               "filter (3 conds)"};
static const char *const reader_names[R_COUNT] = {"shale", "shale+frame", "mp unpack_next",
                                                  "mp unpack+zone"};

typedef struct consts {
    const char *city;
    size_t city_len;
    const char *zip;
    size_t zip_len;
    const dfilter *filter;
} consts;

static bool shale_op(int op, dval d, const consts *c)
{
    static const shale_slice city = {"city", 4}, zip = {"address.zip", 11};
    dval v;
    shale_slice s;
    switch (op) {
    case OP_CITY:
        if (!dval_field(d, city, &v) || dval_tag_of(v) != DV_STRING) {
            return false;
        }
        s = dval_str(v);
        return s.len == c->city_len && memcmp(s.data, c->city, s.len) == 0;
    case OP_ZIP:
        if (!dval_path(d, zip, &v) || dval_tag_of(v) != DV_STRING) {
            return false;
        }
        s = dval_str(v);
        return s.len == c->zip_len && memcmp(s.data, c->zip, s.len) == 0;
    default:
        return dfilter_match(c->filter, d);
    }
}

static bool mp_op(int op, const msgpack_object *doc, const consts *c)
{
    const msgpack_object *v;
    switch (op) {
    case OP_CITY:
        v = mp_get(doc, "city", 4);
        return v != NULL && mp_streq(v, c->city, c->city_len);
    case OP_ZIP:
        v = mp_get(doc, "address", 7);
        v = v != NULL ? mp_get(v, "zip", 3) : NULL;
        return v != NULL && mp_streq(v, c->zip, c->zip_len);
    default: {
        /* One pass over the map picks up all three fields, as a hand-written reader would. */
        const msgpack_object *age = NULL, *active = NULL, *city = NULL;
        for (uint32_t i = 0; i < doc->via.map.size; i++) {
            const msgpack_object *k = &doc->via.map.ptr[i].key;
            if (mp_streq(k, "age", 3)) {
                age = &doc->via.map.ptr[i].val;
            } else if (mp_streq(k, "active", 6)) {
                active = &doc->via.map.ptr[i].val;
            } else if (mp_streq(k, "city", 4)) {
                city = &doc->via.map.ptr[i].val;
            }
        }
        if (age == NULL || active == NULL || city == NULL) {
            return false;
        }
        bool age_ok =
            (age->type == MSGPACK_OBJECT_POSITIVE_INTEGER && age->via.u64 >= AGE_CUT) ||
            ((age->type == MSGPACK_OBJECT_FLOAT64 || age->type == MSGPACK_OBJECT_FLOAT32) &&
             age->via.f64 >= AGE_CUT);
        return age_ok && active->type == MSGPACK_OBJECT_BOOLEAN && active->via.boolean &&
               mp_streq(city, c->city, c->city_len);
    }
    }
}

/* One run of reader r over the whole set: the number of matches. */
static size_t run_once(int op, int r, const docset *sh, const docset *mp, size_t n, const consts *c)
{
    size_t hits = 0;
    if (r == R_SHALE || r == R_SHALE_FRAME) {
        for (size_t i = 0; i < n; i++) {
            const uint8_t *p = (const uint8_t *)sh->data + sh->off[i];
            size_t len = sh->off[i + 1] - sh->off[i];
            if (r == R_SHALE_FRAME && dval_check_frame(p, len, NULL) != SHALE_OK) {
                die("dval_check_frame failed");
            }
            hits += shale_op(op, (dval){p, len}, c);
        }
    } else if (r == R_MP_NEXT) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        for (size_t i = 0; i < n; i++) {
            size_t off = 0;
            if (msgpack_unpack_next(&u, mp->data + mp->off[i], mp->off[i + 1] - mp->off[i], &off) !=
                MSGPACK_UNPACK_SUCCESS) {
                die("msgpack_unpack_next failed");
            }
            hits += mp_op(op, &u.data, c);
        }
        msgpack_unpacked_destroy(&u);
    } else {
        msgpack_zone z;
        if (!msgpack_zone_init(&z, MSGPACK_ZONE_CHUNK_SIZE)) {
            die("out of memory");
        }
        for (size_t i = 0; i < n; i++) {
            size_t off = 0;
            msgpack_object o;
            if (msgpack_unpack(mp->data + mp->off[i], mp->off[i + 1] - mp->off[i], &off, &z, &o) !=
                MSGPACK_UNPACK_SUCCESS) {
                die("msgpack_unpack failed");
            }
            hits += mp_op(op, &o, c);
            msgpack_zone_clear(&z);
        }
        msgpack_zone_destroy(&z);
    }
    return hits;
}

static void usage(void)
{
    fprintf(stderr, "usage: encbench [--num N] [--seed S] [--runs R]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    size_t n = 200000;
    uint64_t seed = 42;
    int runs = 5;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            usage();
        }
        if (strcmp(argv[i], "--num") == 0) {
            n = (size_t)strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--seed") == 0) {
            seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--runs") == 0) {
            runs = atoi(argv[++i]);
        } else {
            usage();
        }
    }
    if (n == 0 || runs < 1 || runs > MAX_RUNS) {
        usage();
    }

    /* Build the three sets: JSON text, Shale, msgpack. */
    docset js = {0}, sh = {0}, mp = {0};
    js.off = calloc(n + 1, sizeof *js.off);
    sh.off = calloc(n + 1, sizeof *sh.off);
    mp.off = calloc(n + 1, sizeof *mp.off);
    if (js.off == NULL || sh.off == NULL || mp.off == NULL) {
        die("out of memory");
    }
    shale_buf buf = {0};
    shale_error err = {0};
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    char doc[DOC_CAP];
    for (size_t i = 0; i < n; i++) {
        size_t len = make_doc(seed, i, doc, sizeof doc);
        set_add(&js, i, doc, len);
        if (dval_from_json(doc, len, true, &buf, &err) != SHALE_OK) {
            die(err.msg);
        }
        set_add(&sh, i, buf.data, buf.len);
        json_t *root = json_loadb(doc, len, JFLAGS, NULL);
        msgpack_sbuffer_clear(&sbuf);
        if (root == NULL || pack_json(&pk, root) != 0) {
            die("msgpack encoding failed");
        }
        json_decref(root);
        set_add(&mp, i, sbuf.data, sbuf.size);
    }

    /* Constants: the city and zip of document 0 (about N/500 and N/100000 matches). */
    consts c;
    {
        dval d = {(const uint8_t *)sh.data, sh.off[1]}, v;
        if (!dval_field(d, (shale_slice){"city", 4}, &v)) {
            die("document 0 has no city");
        }
        shale_slice s = dval_str(v);
        c.city = strndup(s.data, s.len);
        c.city_len = s.len;
        if (!dval_path(d, (shale_slice){"address.zip", 11}, &v)) {
            die("document 0 has no address.zip");
        }
        s = dval_str(v);
        c.zip = strndup(s.data, s.len);
        c.zip_len = s.len;
    }
    char ftext[128];
    int fn = snprintf(ftext, sizeof ftext,
                      "{\"age\":{\"$gte\":%d},\"active\":true,\"city\":\"%s\"}", AGE_CUT, c.city);
    dfilter *filter = NULL;
    if (fn < 0 || dfilter_parse(ftext, (size_t)fn, &filter, &err) != SHALE_OK) {
        die(err.msg);
    }
    c.filter = filter;

    /* Reads. */
    double best[OP_COUNT][R_COUNT];
    size_t hits[OP_COUNT][R_COUNT];
    bool agree = true;
    for (int op = 0; op < OP_COUNT; op++) {
        for (int r = 0; r < R_COUNT; r++) {
            best[op][r] = 1e300;
            for (int k = 0; k < runs; k++) {
                double t0 = now_ns();
                hits[op][r] = run_once(op, r, &sh, &mp, n, &c);
                double t = (now_ns() - t0) / (double)n;
                best[op][r] = t < best[op][r] ? t : best[op][r];
            }
            agree = agree && hits[op][r] == hits[op][0];
        }
    }

    /* Encoding. */
    double enc_shale = 1e300, enc_mp_text = 1e300, parse_only = 1e300, pack_tree = 1e300;
    json_t **trees = calloc(CHUNK, sizeof *trees);
    if (trees == NULL) {
        die("out of memory");
    }
    for (int k = 0; k < runs; k++) {
        double t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            if (dval_from_json(js.data + js.off[i], js.off[i + 1] - js.off[i], true, &buf, &err) !=
                SHALE_OK) {
                die(err.msg);
            }
        }
        double t = (now_ns() - t0) / (double)n;
        enc_shale = t < enc_shale ? t : enc_shale;

        t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            json_t *root = json_loadb(js.data + js.off[i], js.off[i + 1] - js.off[i], JFLAGS, NULL);
            msgpack_sbuffer_clear(&sbuf);
            if (root == NULL || pack_json(&pk, root) != 0) {
                die("msgpack encoding failed");
            }
            json_decref(root);
        }
        t = (now_ns() - t0) / (double)n;
        enc_mp_text = t < enc_mp_text ? t : enc_mp_text;

        t0 = now_ns();
        for (size_t i = 0; i < n; i++) {
            json_t *root = json_loadb(js.data + js.off[i], js.off[i + 1] - js.off[i], JFLAGS, NULL);
            if (root == NULL) {
                die("jansson failed");
            }
            json_decref(root);
        }
        t = (now_ns() - t0) / (double)n;
        parse_only = t < parse_only ? t : parse_only;

        /* The packer alone, over trees parsed (untimed) a chunk at a time. */
        double packed = 0;
        for (size_t base = 0; base < n; base += CHUNK) {
            size_t m = n - base < CHUNK ? n - base : CHUNK;
            for (size_t i = 0; i < m; i++) {
                size_t d = base + i;
                trees[i] = json_loadb(js.data + js.off[d], js.off[d + 1] - js.off[d], JFLAGS, NULL);
                if (trees[i] == NULL) {
                    die("jansson failed");
                }
            }
            t0 = now_ns();
            for (size_t i = 0; i < m; i++) {
                msgpack_sbuffer_clear(&sbuf);
                if (pack_json(&pk, trees[i]) != 0) {
                    die("msgpack encoding failed");
                }
            }
            packed += now_ns() - t0;
            for (size_t i = 0; i < m; i++) {
                json_decref(trees[i]);
            }
        }
        t = packed / (double)n;
        pack_tree = t < pack_tree ? t : pack_tree;
    }

    /* The table. */
    printf("encbench: %zu documents, seed %" PRIu64 ", best of %d runs, ns per document\n", n, seed,
           runs);
    printf("filter: %s\n\n", ftext);
    printf("%-20s", "read");
    for (int r = 0; r < R_COUNT; r++) {
        printf(" %15s", reader_names[r]);
    }
    printf(" %10s %10s\n", "matches", "mp/shale");
    for (int op = 0; op < OP_COUNT; op++) {
        printf("%-20s", op_names[op]);
        for (int r = 0; r < R_COUNT; r++) {
            printf(" %15.1f", best[op][r]);
        }
        printf(" %10zu %9.1fx\n", hits[op][0], best[op][R_MP_ZONE] / best[op][R_SHALE_FRAME]);
    }
    printf("(mp/shale: mp unpack+zone over shale+frame, the fairest pair)\n");
    printf("matches agree across readers: %s\n\n", agree ? "yes" : "NO");

    printf("%-36s %10s %10s %10s\n", "size, bytes per document", "JSON", "shale", "msgpack");
    printf("%-36s %10.1f %10.1f %10.1f\n", "", (double)js.len / (double)n,
           (double)sh.len / (double)n, (double)mp.len / (double)n);
    printf("\n%-36s %10s\n", "encode, ns per document", "ns");
    printf("%-36s %10.1f\n", "shale dval_from_json (text)", enc_shale);
    printf("%-36s %10.1f\n", "msgpack: jansson + pack (text)", enc_mp_text);
    printf("%-36s %10.1f\n", "jansson parse only (common part)", parse_only);
    printf("%-36s %10.1f\n", "shale own part (text - parse)", enc_shale - parse_only);
    printf("%-36s %10.1f\n", "msgpack pack from parsed tree", pack_tree);

    free(trees);
    dfilter_free(filter);
    free((char *)c.city);
    free((char *)c.zip);
    msgpack_sbuffer_destroy(&sbuf);
    shale_buf_free(&buf);
    free(js.data);
    free(js.off);
    free(sh.data);
    free(sh.off);
    free(mp.data);
    free(mp.off);
    return agree ? 0 : 1;
}
