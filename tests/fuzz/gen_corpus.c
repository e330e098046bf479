/*
 * gen_corpus: writes the seed corpora of the fuzz targets in tests/fuzz (corpus/<target>/gen-*),
 * made with the real encoders: log segments written by wal_writer, batches by the public batch
 * API, tables by sst_builder, blocks by block_builder, filters by bloom_build, edits and
 * manifests by version.c, document encodings by dval_from_json, cursors by shale_doc_find on
 * the same documents cursor_fuzz loads (fuzz_util.h), backup manifests by shale_backup and
 * backup_format.c. Not built by CMake (it is not a target); run it by hand after a format
 * change, from the repository root (see README.md):
 *
 *   cc -std=c11 -D_GNU_SOURCE -Iinclude -Isrc -Itests/fuzz tests/fuzz/gen_corpus.c \
 *      build/<dir>/libshale.a -llz4 -lzstd -ljansson -lcrypto -lpthread -lm \
 *      [-fsanitize=address,undefined] -o /tmp/gen_corpus && /tmp/gen_corpus tests/fuzz/corpus
 *
 * (the sanitizer flags when the library was built with them). A second argument names the one
 * target whose seeds to write (e.g. backup_fuzz). It overwrites gen-* files only; inputs fuzzing
 * found and merged keep their hash names.
 */
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/compress.h"
#include "base/ikey.h"
#include "fuzz_util.h"
#include "lsm/backup_format.h"
#include "lsm/batch.h"
#include "lsm/identity.h"
#include "lsm/version.h"
#include "sst/block.h"
#include "sst/bloom.h"
#include "sst/sst_builder.h"
#include "sst/sst_format.h"
#include "wal/wal_format.h"
#include "wal/wal_writer.h"

static const char *out_root;
static char work[600];
static int files;

#define OK(x)                                                                                      \
    do {                                                                                           \
        shale_error e_;                                                                            \
        if ((x) != SHALE_OK) {                                                                     \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #x);                         \
            exit(1);                                                                               \
        }                                                                                          \
        (void)e_;                                                                                  \
    } while (0)

static void save(const char *target, const char *name, const void *data, size_t len)
{
    char dir[700], path[800];
    snprintf(dir, sizeof dir, "%s/%s", out_root, target);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/gen-%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (len > 0 && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    files++;
}

/* save() with a prefix byte (the targets that take an option byte first). */
static void save_with(const char *target, const char *name, uint8_t first, const void *data,
                      size_t len)
{
    uint8_t *b = malloc(len + 1);
    b[0] = first;
    memcpy(b + 1, data, len);
    save(target, name, b, len + 1);
    free(b);
}

static void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)n + 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n) {
        exit(1);
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* ---- wal_fuzz ---- */

/* A batch of `ops` ops with keys "k<i>" (i from k0), seq `seq`; kinds cycle put, put_ttl, del. */
static shale_batch *make_batch(uint64_t seq, int ops, int k0, size_t vlen)
{
    shale_batch *b = shale_batch_new();
    char key[32];
    uint8_t *val = malloc(vlen + 1);
    for (size_t i = 0; i < vlen; i++) {
        val[i] = (uint8_t)('a' + (i * 7 + (size_t)k0) % 26);
    }
    for (int i = 0; i < ops; i++) {
        int n = snprintf(key, sizeof key, "k%04d", k0 + i);
        shale_slice k = {key, (size_t)n}, v = {val, vlen};
        switch (i % 3) {
        case 0:
            OK(shale_batch_put(b, k, v, &e_));
            break;
        case 1:
            OK(shale_batch_put_ttl(b, k, v, 1700000000000ull + (uint64_t)i, &e_));
            break;
        default:
            OK(shale_batch_delete(b, k, &e_));
            break;
        }
    }
    OK(batch_ensure_header(b, &e_));
    batch_rep_set_header(b->rep.data, seq, (uint32_t)ops);
    free(val);
    return b;
}

static void add_batch(wal_writer *w, shale_batch *b)
{
    shale_buf rec = {0};
    uint8_t kind = WAL_REC_BATCH;
    OK(buf_append(&rec, &kind, 1, &e_));
    OK(buf_append(&rec, b->rep.data, b->rep.len, &e_));
    OK(wal_writer_add(w, rec.data, rec.len, &e_));
    buf_free(&rec);
}

/* Writes a segment 000007.log with the given batches; returns its bytes. */
static uint8_t *segment(int nbatches, const int *ops, const size_t *vlens, size_t *len)
{
    char path[700];
    snprintf(path, sizeof path, "%s/000007.log", work);
    remove(path);
    wal_writer *w;
    OK(wal_writer_create(env_posix(), work, "000007.log", 7, &w, &e_));
    uint64_t seq = 100;
    for (int i = 0; i < nbatches; i++) {
        shale_batch *b = make_batch(seq, ops[i], i * 10, vlens[i]);
        add_batch(w, b);
        seq += (uint64_t)ops[i];
        shale_batch_free(b);
    }
    OK(wal_writer_close(w, true, &e_));
    return read_file(path, len);
}

static void gen_wal(void)
{
    size_t len;
    uint8_t *s;
    s = segment(0, NULL, NULL, &len);
    save("wal_fuzz", "header-only", s, len);
    free(s);

    int ops1[] = {3};
    size_t v1[] = {5};
    s = segment(1, ops1, v1, &len);
    save("wal_fuzz", "one-batch", s, len);
    free(s);

    int ops[12];
    size_t vl[12];
    for (int i = 0; i < 12; i++) {
        ops[i] = 1 + i % 4;
        vl[i] = (size_t)(i * 3);
    }
    s = segment(12, ops, vl, &len);
    save("wal_fuzz", "many", s, len);
    /* A torn write: the last record cut short. */
    save("wal_fuzz", "torn-tail", s, len - 5);
    /* Damage in the middle, with valid records after it. */
    s[len / 2] ^= 0x20;
    save("wal_fuzz", "corrupt-middle", s, len);
    s[len / 2] ^= 0x20;
    /* A bad header magic. */
    s[WAL_HEADER_SIZE + 2] ^= 1;
    save("wal_fuzz", "bad-header", s, len);
    free(s);

    /* A record crossing a block boundary (FIRST + LAST), then a small one. */
    int ops2[] = {1, 2};
    size_t v2[] = {34000, 4};
    s = segment(2, ops2, v2, &len);
    save("wal_fuzz", "two-blocks", s, len);
    free(s);

    /* A block ending in padding: the first block is filled to 3 bytes short of its end. The
     * header record takes 28 bytes, a one-op batch record 7 + 1 + 12 + 1 + 1 + 5 + 2 + value
     * (varint length 3 for values >= 16384). */
    size_t fill = WAL_BLOCK_SIZE - 3 - 28 - 7 - (1 + 12 + 1 + 1 + 5 + 3);
    int ops3[] = {1, 1};
    size_t v3[] = {fill, 7};
    s = segment(2, ops3, v3, &len);
    save("wal_fuzz", "block-padding", s, len);
    free(s);

    /* Raw batches (the target decodes the whole input as a batch too). */
    shale_batch *b = make_batch(5, 6, 0, 9);
    save("wal_fuzz", "raw-batch", b->rep.data, b->rep.len);
    shale_batch_free(b);
    b = make_batch(0, 0, 0, 0);
    save("wal_fuzz", "raw-empty-batch", b->rep.data, b->rep.len);
    shale_batch_free(b);
    b = make_batch(UINT64_MAX - 3, 2, 7, 200);
    save("wal_fuzz", "raw-batch-long", b->rep.data, b->rep.len);
    shale_batch_free(b);
}

/* ---- sst_fuzz ---- */

typedef struct tspec {
    const char *name;
    bool hash;
    int compression;
    uint32_t block_bytes, restart;
    int keys, versions;
    size_t klen, vlen;
    bool ttl_dels;
} tspec;

static uint8_t *make_table(const tspec *t, size_t *len)
{
    char path[700];
    snprintf(path, sizeof path, "%s/000009.sst", work);
    remove(path);
    sst_builder_options o = sst_builder_default_options();
    o.block_bytes = t->block_bytes;
    o.restart_interval = t->restart;
    o.compression = t->compression;
    o.no_data_block_hash = !t->hash;
    sst_builder *b;
    OK(sst_builder_new(env_posix(), path, 9, &o, &b, &e_));
    uint8_t key[300], val[300];
    uint64_t seq = 1000;
    for (int i = 0; i < t->keys; i++) {
        memset(key, 'p', t->klen);
        int n = snprintf((char *)key + (t->klen > 8 ? t->klen - 8 : 0), 9, "%08d", i * 3);
        size_t kl = (t->klen > 8 ? t->klen - 8 : 0) + (size_t)n;
        int nv = 1 + (t->versions > 1 ? i % t->versions : 0);
        for (int v = 0; v < nv; v++) {
            for (size_t j = 0; j < t->vlen; j++) {
                val[j] = (uint8_t)('A' + (i + (int)j) % 4);
            }
            ikey_entry e = {.key = {key, kl}, .seq = seq - (uint64_t)v, .type = IKEY_PUT};
            e.value = (shale_slice){val, t->vlen};
            if (t->ttl_dels && (i + v) % 3 == 1) {
                e.type = IKEY_DEL;
                e.value = (shale_slice){NULL, 0};
            } else if (t->ttl_dels && (i + v) % 3 == 2) {
                e.expire_at_ms = 1700000000000ull + (uint64_t)i;
            }
            OK(sst_builder_add(b, &e, &e_));
        }
        seq += 10;
    }
    sst_props props;
    OK(sst_builder_finish(b, &props, &e_));
    sst_props_free(&props);
    return read_file(path, len);
}

static void gen_sst(void)
{
    static const tspec specs[] = {
        {"hash-none", true, COMPRESS_NONE, 256, 4, 120, 3, 10, 12, true},
        {"hash-lz4", true, COMPRESS_LZ4, 256, 4, 150, 2, 10, 24, false},
        {"hash-zstd", true, COMPRESS_ZSTD, 256, 16, 150, 2, 10, 24, true},
        {"nohash-none", false, COMPRESS_NONE, 256, 1, 100, 2, 12, 8, false},
        {"nohash-lz4", false, COMPRESS_LZ4, 256, 4, 120, 1, 10, 30, true},
        {"nohash-zstd", false, COMPRESS_ZSTD, 512, 8, 160, 3, 10, 20, false},
        {"one-entry", true, COMPRESS_NONE, 256, 4, 1, 1, 3, 5, false},
        {"long-keys", true, COMPRESS_LZ4, 1024, 4, 40, 2, 120, 40, true},
        {"restart-1", true, COMPRESS_NONE, 256, 1, 60, 4, 9, 0, true},
    };
    size_t len;
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        uint8_t *t = make_table(&specs[i], &len);
        save("sst_fuzz", specs[i].name, t, len);
        if (i == 0) {
            t[len / 3] ^= 0x04; /* a data block's checksum fails */
            save("sst_fuzz", "damaged-block", t, len);
            t[len / 3] ^= 0x04;
            save("sst_fuzz", "truncated", t, len - 30);
        }
        free(t);
    }
}

/* ---- block_fuzz ---- */

static void put_ikey(uint8_t *out, size_t *len, const char *ukey, size_t ulen, uint64_t seq,
                     uint8_t type)
{
    memcpy(out, ukey, ulen);
    coding_put_fixed64(out + ulen, seq << 8 | type);
    *len = ulen + 8;
}

static void gen_block(void)
{
    static const struct {
        const char *name;
        uint32_t interval;
        bool hash;
        int keys, versions;
        size_t prefix;
    } specs[] = {
        {"data-r1-hash", 1, true, 20, 1, 0},   {"data-r4-hash", 4, true, 40, 2, 3},
        {"data-r16-hash", 16, true, 60, 3, 0}, {"data-r4-nohash", 4, false, 40, 2, 0},
        {"data-r2-long", 2, true, 12, 1, 60},  {"data-one", 4, true, 1, 1, 0},
    };
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        block_builder bb;
        block_builder_init(&bb, specs[s].interval, specs[s].hash);
        uint8_t k[200];
        char u[100];
        for (int i = 0; i < specs[s].keys; i++) {
            memset(u, 'q', specs[s].prefix);
            int n = snprintf(u + specs[s].prefix, sizeof u - specs[s].prefix, "u%03d", i * 2);
            size_t ul = specs[s].prefix + (size_t)n;
            for (int v = 0; v < specs[s].versions; v++) {
                size_t kl;
                uint8_t type = (uint8_t)((i + v) % 3);
                put_ikey(k, &kl, u, ul, 500 - (uint64_t)v, type);
                uint8_t ttl[8];
                coding_put_fixed64(ttl, 1700000000000ull);
                const char *val = type == SST_TYPE_DEL ? "" : "value";
                OK(block_builder_add(&bb, k, kl, type == SST_TYPE_PUT_TTL ? ttl : NULL,
                                     type == SST_TYPE_PUT_TTL ? 8 : 0, val, strlen(val), &e_));
            }
        }
        OK(block_builder_finish(&bb, &e_));
        save_with("block_fuzz", specs[s].name, 1, bb.buf.data, bb.buf.len);
        block_builder_destroy(&bb);
    }
    /* Index blocks: interval 1, separator keys of type 0, handle values. */
    for (int big = 0; big < 2; big++) {
        block_builder bb;
        block_builder_init(&bb, SST_INDEX_RESTART_INTERVAL, false);
        int n = big ? 60 : 5;
        for (int i = 0; i < n; i++) {
            char u[40];
            int ul = snprintf(u, sizeof u, big ? "sep%05d" : "s%03d", i * 7);
            uint8_t k[64], h[20];
            size_t kl;
            put_ikey(k, &kl, u, (size_t)ul, IKEY_MAX_SEQ, 0);
            uint8_t *e = coding_put_varint64(h, (uint64_t)i * 300);
            e = coding_put_varint64(e, 295);
            OK(block_builder_add(&bb, k, kl, NULL, 0, h, (size_t)(e - h), &e_));
        }
        OK(block_builder_finish(&bb, &e_));
        save_with("block_fuzz", big ? "index-60" : "index-5", 0, bb.buf.data, bb.buf.len);
        block_builder_destroy(&bb);
    }
    /* Filters. */
    static const struct {
        const char *name;
        size_t n;
        uint32_t bits;
    } filters[] = {{"bloom-1", 1, 10}, {"bloom-120", 120, 10}, {"bloom-300-b3", 300, 3}};
    for (size_t f = 0; f < sizeof filters / sizeof filters[0]; f++) {
        uint64_t h[300];
        for (size_t i = 0; i < filters[f].n; i++) {
            char u[16];
            int ul = snprintf(u, sizeof u, "u%03zu", i * 2);
            h[i] = bloom_hash(u, (size_t)ul);
        }
        shale_buf out = {0};
        OK(bloom_build(h, filters[f].n, filters[f].bits, &out, &e_));
        save_with("block_fuzz", filters[f].name, 0, out.data, out.len);
        buf_free(&out);
    }
}

/* ---- manifest_fuzz ---- */

static void add_file(version_edit *e, int level, uint64_t number, const char *lo, const char *hi,
                     uint64_t seq)
{
    OK(version_edit_add_file(e, level, number, 1000 + number, slice_cstr(lo), seq, slice_cstr(hi),
                             seq + 1, seq, seq + 5, 40, 3, &e_));
}

static void gen_manifest(void)
{
    /* Edits. */
    version_edit e;
    shale_buf b = {0};
    version_edit_init(&e);
    OK(version_edit_encode(&e, &b, &e_));
    save("manifest_fuzz", "edit-empty", b.data, b.len);
    e.has_log_number = e.has_last_seq = e.has_next_file = e.has_flushed_seq = true;
    e.log_number = 12;
    e.last_seq = 9999;
    e.next_file_number = 40;
    e.flushed_seq = 9000;
    b.len = 0;
    OK(version_edit_encode(&e, &b, &e_));
    save("manifest_fuzz", "edit-scalars", b.data, b.len);
    add_file(&e, 0, 21, "apple", "melon", 100);
    add_file(&e, 1, 22, "a", "f", 50);
    add_file(&e, 1, 23, "g", "z", 60);
    OK(version_edit_delete_file(&e, 0, 19, &e_));
    e.has_pointer[1] = true;
    OK(buf_set(&e.pointer[1], "f", 1, &e_));
    b.len = 0;
    OK(version_edit_encode(&e, &b, &e_));
    save("manifest_fuzz", "edit-files", b.data, b.len);
    version_edit_free(&e);

    /* CURRENT. */
    save("manifest_fuzz", "current", "MANIFEST-000003\n", 16);
    save("manifest_fuzz", "current-long", "MANIFEST-1234567\n", 17);

    /* Real manifests: a created set, then flushes and a compaction applied. */
    char dir[700];
    snprintf(dir, sizeof dir, "%s/vs", work);
    fz_rm_rf(dir);
    mkdir(dir, 0700);
    version_set *vs = version_set_new(env_posix(), dir, NULL);
    OK(version_set_create(vs, &e_));
    char cur[800];
    snprintf(cur, sizeof cur, "%s/CURRENT", dir);
    size_t len;
    char *c = read_file(cur, &len);
    uint64_t number = 0;
    if (!version_parse_current(c, len, &number)) {
        exit(1);
    }
    free(c);
    char path[800];
    version_manifest_name(path, sizeof path, dir, number);
    uint8_t *m = read_file(path, &len);
    save("manifest_fuzz", "manifest-created", m, len);
    free(m);

    const char *ranges[][2] = {{"b", "k"}, {"c", "q"}, {"a", "d"}};
    uint64_t seq = 10;
    for (int i = 0; i < 3; i++) {
        version_edit_init(&e);
        uint64_t n = version_set_new_file_number(vs);
        add_file(&e, 0, n, ranges[i][0], ranges[i][1], seq);
        e.has_log_number = true;
        e.log_number = n;
        e.has_flushed_seq = true;
        e.flushed_seq = seq + 5;
        seq += 10;
        OK(version_set_apply(vs, &e, &e_));
        version_edit_free(&e);
    }
    compaction *cp =
        version_set_compact_range(vs, 0, (shale_slice){NULL, 0}, (shale_slice){NULL, 0});
    if (cp != NULL) {
        version_edit_init(&e);
        OK(compaction_add_input_deletions(cp, &e, &e_));
        add_file(&e, 1, version_set_new_file_number(vs), "a", "h", 5);
        add_file(&e, 1, version_set_new_file_number(vs), "i", "q", 6);
        compaction_free(cp);
        OK(version_set_apply(vs, &e, &e_));
        version_edit_free(&e);
    }
    c = read_file(cur, &len);
    if (!version_parse_current(c, len, &number)) {
        exit(1);
    }
    free(c);
    version_manifest_name(path, sizeof path, dir, number);
    m = read_file(path, &len);
    save("manifest_fuzz", "manifest-applied", m, len);
    save("manifest_fuzz", "manifest-torn", m, len - 9);
    m[len - 20] ^= 0x10;
    save("manifest_fuzz", "manifest-damaged-last", m, len);
    free(m);
    version_set_free(vs);
    buf_free(&b);
}

/* ---- json_fuzz, dval_fuzz ---- */

static const char *const jsons[] = {
    "{}",
    "[]",
    "null",
    "{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}",
    "{\"n\":-0,\"m\":-0.0,\"x\":1e308,\"y\":0.1,\"z\":5e-324}",
    "[9223372036854775807,-9223372036854775808,9223372036854775808,1.5e300]",
    "{\"s\":\"caf\\u00e9 \\ud83d\\ude00 \\n\\t\\\"q\\\" \\u0000 end\"}",
    "{\"z\":1,\"a\":2,\"m\":{\"b\":[1,{\"c\":[[]]}]}}",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    "{\"a\":1,\"a\":2}",
    "{\"_id\":\"x\",\"tags\":[\"a\",\"b\"],\"n\":{\"m\":{\"k\":3}},\"v\":12.25}",
    "  {\"ws\" : [ 1 , 2 ] }  ",
    "\"just a string\"",
    "123456789012345678901234567890",
    "[1,2,3,\"3\",3.0,true,null,{},[]]",
};

static void gen_json(void)
{
    for (size_t i = 0; i < sizeof jsons / sizeof jsons[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "%02zu", i);
        save("json_fuzz", name, jsons[i], strlen(jsons[i]));
        shale_buf d = {0};
        if (dval_from_json(jsons[i], strlen(jsons[i]), false, &d, NULL) == SHALE_OK) {
            save("dval_fuzz", name, d.data, d.len);
        }
        buf_free(&d);
    }
}

/* ---- filter_fuzz ---- */

static const char *const filters[] = {
    "{}",
    "{\"a\":1}",
    "{\"a\":null}",
    "{\"b\":\"x\",\"a\":{\"$gte\":1,\"$lt\":3}}",
    "{\"a\":{\"$in\":[1,\"1\",true,null]}}",
    "{\"a\":{\"$nin\":[1,2]},\"b\":{\"$exists\":true}}",
    "{\"$or\":[{\"a\":1},{\"b\":\"y\"}]}",
    "{\"$and\":[{\"a\":{\"$gt\":0}},{\"a\":{\"$lte\":2}}]}",
    "{\"a\":{\"$not\":{\"$eq\":1}}}",
    "{\"n.m.k\":3,\"c.0\":1}",
    "{\"tags\":[\"x\",\"y\"]}",
    "{\"a\":{\"$ne\":null}}",
    "{\"age\":{\"$gt\":\"a\",\"$lt\":\"z\"}}",
    "{\"$bad\":1}",
    "a=1&b=x",
    "name=ada&kind=a&age=30",
};

static void gen_filter(void)
{
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "%02zu", i);
        save("filter_fuzz", name, filters[i], strlen(filters[i]));
    }
}

/* ---- http_fuzz ---- */

static const struct {
    uint8_t flags; /* method: 0 GET 1 POST 2 PUT 3 PATCH 4 DELETE 5 HEAD 6 OTHER */
    const char *text;
} requests[] = {
    {0, "/health"},
    {0, "/collections"},
    {0, "/stats"},
    {0, "/collections/people/find\nage=25&limit=2"},
    {0, "/collections/people/find\nkind=a&limit=3&offset=1"},
    {0, "/collections/people/find\nlimit=2&after=01"},
    {0, "/collections/people/find\nlimit=abc"},
    {0, "/collections/people/find_with_stream\nkind=b"},
    {8, "/collections/people/find_with_stream\nkind=b"},
    {0, "/collections/people/documents/p01"},
    {0, "/collections/people/documents/nope"},
    {0, "/collections/people/indexes"},
    {1, "/collections/people\n\n{\"_id\":\"new1\",\"name\":\"zed\",\"age\":5}"},
    {1, "/collections/people\n\n{\"name\":\"no id\"}"},
    {1, "/collections/people\n\n[1,2]"},
    {1, "/collections/people/batch\n\n{\"documents\":[{\"a\":1},{\"_id\":\"b2\",\"a\":2}]}"},
    {3, "/collections/people/batch\n\n{\"operations\":[{\"id\":\"p01\",\"updates\":{\"age\":26}},"
        "{\"id\":\"missing\",\"updates\":{}}]}"},
    {3, "/collections/people/documents/p02\n\n{\"age\":42,\"x\":[1]}"},
    {2, "/collections/people/documents/p03\n\n{\"name\":\"dee2\"}"},
    {4, "/collections/people/documents/p04"},
    {1, "/collections/people/query\n\n{\"filter\":{\"age\":{\"$gte\":30}},\"sort\":\"-age,name\","
        "\"limit\":3,\"fields\":\"name,age\"}"},
    {1, "/collections/people/query\n\n{\"filter\":{\"kind\":\"a\"},\"sort\":\"name\",\"limit\":2,"
        "\"after\":\"0100000000\"}"},
    {1, "/collections/people/query\n\n{\"before\":\"zz\",\"limit\":1}"},
    {1, "/collections/people/indexes/name"},
    {4, "/collections/people/indexes/name"},
    {1, "/transaction\n\n{\"operations\":[{\"op\":\"insert\",\"collection\":\"t1\",\"document\":"
        "{\"_id\":\"a\",\"v\":1}},{\"op\":\"update\",\"collection\":\"t1\",\"id\":\"a\","
        "\"document\":{\"v\":2}},{\"op\":\"delete\",\"collection\":\"people\",\"id\":\"p05\"}]}"},
    {1, "/transaction\n\n{\"operations\":[{\"op\":\"replace\",\"collection\":\"items\",\"id\":"
        "\"i1\",\"document\":{\"sku\":\"Z\"}}]}"},
    {1, "/transaction\n\n{\"operations\":[]}"},
    {4, "/collections/items"},
    {6, "/collections/people"},
    {0, "/collections/peo%70le/documents/p%3001"},
    {0, "/collections/%zz"},
    {0x10, "/metrics"},
};

static void gen_http(void)
{
    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "%02zu", i);
        save_with("http_fuzz", name, requests[i].flags, requests[i].text, strlen(requests[i].text));
    }
}

/* ---- cursor_fuzz ---- */

static void gen_cursor(void)
{
    char path[700];
    snprintf(path, sizeof path, "%s/db", work);
    fz_rm_rf(path);
    shale_db *db = fz_open_db(path);
    fz_seed_docs(db);
    /* (byte 0, byte 1) as cursor_fuzz reads them: sort, before, limit, filter; offset. */
    static const char *const sorts[8] = {
        "", "age", "-age", "name,-age", "-score,kind", "n.m.k", "+kind,-_id", "tags,name"};
    static const char *const filt[4] = {"", "{\"age\":{\"$gte\":25,\"$lt\":60}}",
                                        "{\"kind\":\"a\"}",
                                        "{\"$or\":[{\"score\":{\"$exists\":true}},{\"tags\":[]}]}"};
    static const unsigned limits[4] = {1, 2, 3, 7};
    int made = 0;
    for (int s = 0; s < 8; s++) {
        int f = s % 4, l = (s / 2) % 4;
        shale_doc_query q = {
            .filter = slice_cstr(filt[f]), .sort = slice_cstr(sorts[s]), .limit = limits[l]};
        shale_buf out = {0};
        OK(shale_doc_find(db, "people", &q, &out, &e_));
        json_t *j = json_loadb(out.data, out.len, 0, NULL);
        json_t *next = json_object_get(j, "next_cursor");
        if (json_is_string(next)) {
            const char *cur = json_string_value(next);
            uint8_t b[600];
            b[0] = (uint8_t)(s | l << 4 | f << 6);
            b[1] = (uint8_t)(s % 3);
            size_t n = strlen(cur);
            memcpy(b + 2, cur, n);
            char name[32];
            snprintf(name, sizeof name, "after-%d", s);
            save("cursor_fuzz", name, b, n + 2);
            b[0] |= 8; /* the same position as a before cursor */
            snprintf(name, sizeof name, "before-%d", s);
            save("cursor_fuzz", name, b, n + 2);
            made++;
        }
        json_decref(j);
        buf_free(&out);
    }
    save("cursor_fuzz", "empty", "\x01\x00", 2);
    save("cursor_fuzz", "not-hex", "\x00\x00zz01", 6);
    shale_close(db, NULL);
    if (made == 0) {
        fprintf(stderr, "no cursors made\n");
        exit(1);
    }
}

/* ---- backup_fuzz ---- */

/* backup_fuzz.c's fixed files (its header comment): a seed that lists them with their digests
 * verifies there, so the fuzzer starts from restores that succeed. */
#define FZ_BK_CREATED  1700000000000ull
#define FZ_BK_CURRENT  "MANIFEST-000002\n"
#define FZ_BK_MANIFEST "manifest of the fuzz backup\n"
#define FZ_BK_TABLE    "table 000003\n"

static void bk_add(backup_manifest *m, uint8_t where, const char *name, const void *p, size_t n)
{
    backup_file f = {.where = where, .size = n};
    snprintf(f.name, sizeof f.name, "%s", name);
    unsigned len = 0;
    if (EVP_Digest(p, n, f.sha, &len, EVP_sha256(), NULL) != 1 || len != BACKUP_SHA) {
        fprintf(stderr, "SHA-256 failed\n");
        exit(1);
    }
    OK(backup_manifest_add(m, &f, &e_));
}

static void save_file(const char *target, const char *name, const char *path)
{
    size_t len = 0;
    void *p = read_file(path, &len);
    save(target, name, p, len);
    free(p);
}

static void gen_backup(void)
{
    /* 1. A manifest of backup_fuzz's fixed files, and its BACKUPS. */
    backup_manifest m = {.id = 1, .seq = 7, .created_at_ms = FZ_BK_CREATED, .new_files = 4};
    db_identity_make(FZ_BK_CREATED, m.identity);
    bk_add(&m, BACKUP_WHERE_DIR, "SHALE", m.identity, sizeof m.identity);
    bk_add(&m, BACKUP_WHERE_DIR, "MANIFEST-000002", FZ_BK_MANIFEST, strlen(FZ_BK_MANIFEST));
    bk_add(&m, BACKUP_WHERE_TABLES, "000003.sst", FZ_BK_TABLE, strlen(FZ_BK_TABLE));
    bk_add(&m, BACKUP_WHERE_DIR, "CURRENT", FZ_BK_CURRENT, strlen(FZ_BK_CURRENT));
    for (size_t i = 0; i < m.nfiles; i++) {
        m.new_bytes += m.files[i].size;
    }
    shale_buf b = {0};
    OK(backup_manifest_encode(&m, &b, &e_));
    save("backup_fuzz", "fixed", b.data, b.len);
    m.id = 2; /* in directory 000002 */
    OK(backup_manifest_encode(&m, &b, &e_));
    save("backup_fuzz", "fixed-2", b.data, b.len);
    uint8_t dest[BACKUP_DEST_BYTES];
    backup_dest_encode(dest, 2, m.identity);
    save("backup_fuzz", "dest", dest, sizeof dest);
    buf_free(&b);
    backup_manifest_free(&m);

    /* 2. Real backups (shale_backup) of a small database: the first, and an incremental one. */
    char db_path[700], dest_path[700], path[800];
    snprintf(db_path, sizeof db_path, "%s/bdb", work);
    snprintf(dest_path, sizeof dest_path, "%s/bdest", work);
    fz_rm_rf(db_path);
    fz_rm_rf(dest_path);
    shale_db *db = fz_open_db(db_path);
    for (int round = 1; round <= 2; round++) {
        for (int i = 0; i < 50; i++) {
            char k[32], v[32];
            snprintf(k, sizeof k, "key-%d-%03d", round, i);
            snprintf(v, sizeof v, "value %d", i * round);
            OK(shale_put(db, NULL, slice_cstr(k), slice_cstr(v), &e_));
        }
        OK(shale_backup(db, dest_path, NULL, &e_));
        char name[32];
        snprintf(path, sizeof path, "%s/%06d/" BACKUP_FILE, dest_path, round);
        snprintf(name, sizeof name, "real-%d", round);
        save_file("backup_fuzz", name, path);
    }
    snprintf(path, sizeof path, "%s/" BACKUP_DEST_FILE, dest_path);
    save_file("backup_fuzz", "real-dest", path);
    shale_close(db, NULL);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *target;
        void (*gen)(void);
    } gens[] = {
        {"wal_fuzz", gen_wal},           {"sst_fuzz", gen_sst},       {"block_fuzz", gen_block},
        {"manifest_fuzz", gen_manifest}, {"json_fuzz", gen_json},     {"filter_fuzz", gen_filter},
        {"http_fuzz", gen_http},         {"cursor_fuzz", gen_cursor}, {"backup_fuzz", gen_backup},
    };
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: gen_corpus CORPUS_DIR [TARGET]\n");
        return 2;
    }
    out_root = argv[1];
    snprintf(work, sizeof work, "%s/work", fz_tmpdir());
    mkdir(work, 0700);
    bool any = false;
    for (size_t i = 0; i < sizeof gens / sizeof gens[0]; i++) {
        if (argc == 2 || strcmp(argv[2], gens[i].target) == 0) {
            gens[i].gen();
            any = true;
        }
    }
    if (!any) {
        fprintf(stderr, "gen_corpus: no target %s\n", argv[2]);
        return 2;
    }
    printf("wrote %d seed files under %s\n", files, out_root);
    return 0;
}
