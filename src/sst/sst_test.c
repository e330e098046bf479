/*
 * sst tests: tables written by sst_builder and read by sst_reader, against a sorted array model.
 *
 *   - randomized round trips: random user keys (shared prefixes, 0x00 and 0xff bytes) with many
 *     versions, tombstones and TTL entries; empty, small and larger-than-a-block values; random
 *     block sizes, restart intervals, bloom widths and all three compressions; with and without
 *     a block cache. Checked: forward and reverse iteration, seeks followed by random walks,
 *     gets at random snapshots, properties, sst_verify;
 *   - the block cache: gets and filling iterators insert, fill_cache=false never does, nothing
 *     stays pinned, a zero-capacity cache still works;
 *   - damage: a bit flipped in a data block, the index, the filter, the properties, the footer;
 *     truncation; every random single-bit flip; damage behind a recomputed checksum. Each is
 *     SHALE_CORRUPTION naming the file and block kind, and nothing crashes (ASan build);
 *   - builder errors: order, empty tables, bad options, existing paths, abandon, and write or
 *     sync failures through env_fault, which leave no file behind;
 *   - the data block hash index: gets on tables built with and without it agree with each other
 *     and the model (many versions per key, keys spanning blocks, every restart interval), the
 *     format versions written and read (1 without the index, 2 with it), and damage to an
 *     index behind a valid checksum: parse errors on read, a wrong bucket caught by sst_verify.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shale.h"

#include "base/buf.h"
#include "base/cache.h"
#include "base/coding.h"
#include "base/compress.h"
#include "base/crc32c.h"
#include "base/iter.h"
#include "env/env.h"
#include "env/env_fault.h"
#include "sst/block.h"
#include "sst/bloom.h"
#include "sst/sst_builder.h"
#include "sst/sst_format.h"
#include "sst/sst_reader.h"
#include "testutil.h"

#define FNUM 12u
#define NAME "000012.sst"

/* ---- model -------------------------------------------------------------------------------- */

typedef struct ment {
    uint8_t *key;
    size_t klen;
    uint64_t seq;
    uint8_t type;
    uint64_t expire;
    uint8_t *val;
    size_t vlen;
} ment;

typedef struct model {
    ment *e;
    size_t n;
} model;

static int ment_cmp(const void *a, const void *b)
{
    const ment *x = a, *y = b;
    return ikey_cmp(slice_make(x->key, x->klen), x->seq, slice_make(y->key, y->klen), y->seq);
}

static void model_free(model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].key);
        free(m->e[i].val);
    }
    free(m->e);
    m->e = NULL;
    m->n = 0;
}

static uint8_t *rand_bytes(tu_rng *rng, size_t n, bool text)
{
    uint8_t *p = malloc(n ? n : 1);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) {
        p[i] = text ? (uint8_t)('a' + (i * 7 + (i / 13)) % 26) : (uint8_t)tu_rng_next(rng);
    }
    if (text && n > 0) {
        p[tu_rng_below(rng, n)] = (uint8_t)tu_rng_next(rng);
    }
    return p;
}

/* A user key: a shared prefix family, then bytes from a small alphabet with 0x00 and 0xff. */
static size_t rand_key(tu_rng *rng, uint8_t *k)
{
    static const char *prefixes[] = {"", "user:", "user:1", "idx\xff", "\xff\xff"};
    const char *pre = prefixes[tu_rng_below(rng, 5)];
    size_t n = strlen(pre);
    memcpy(k, pre, n);
    size_t extra = 1 + tu_rng_below(rng, 12);
    for (size_t i = 0; i < extra; i++) {
        k[n++] = (uint8_t)("\x00"
                           "ab\xfez\xff"[tu_rng_below(rng, 6)]);
    }
    return n;
}

/* Sorts the model in internal order and drops repeated (key, seq) pairs: a table holds one. */
static void model_sort_unique(model *m)
{
    qsort(m->e, m->n, sizeof *m->e, ment_cmp);
    size_t w = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (w > 0 && ment_cmp(&m->e[w - 1], &m->e[i]) == 0) {
            free(m->e[i].key);
            free(m->e[i].val);
            continue;
        }
        m->e[w++] = m->e[i];
    }
    m->n = w;
}

/* Entries for `keys` user keys, in internal order. */
static model gen_model(tu_rng *rng, size_t keys, uint32_t block_bytes)
{
    model m = {0};
    size_t cap = keys * 4 + 16;
    m.e = calloc(cap, sizeof *m.e);
    cr_assert_not_null(m.e);
    for (size_t i = 0; i < keys; i++) {
        uint8_t k[64];
        size_t kl = rand_key(rng, k);
        size_t versions =
            tu_rng_below(rng, 10) == 0 ? 1 + tu_rng_below(rng, 8) : 1 + tu_rng_below(rng, 2);
        for (size_t v = 0; v < versions && m.n < cap; v++) {
            ment *e = &m.e[m.n++];
            e->key = malloc(kl);
            cr_assert_not_null(e->key);
            memcpy(e->key, k, kl);
            e->klen = kl;
            e->seq = tu_rng_below(rng, 5) == 0 ? IKEY_MAX_SEQ - tu_rng_below(rng, 100)
                                               : 1 + tu_rng_below(rng, 100000);
            uint64_t r = tu_rng_below(rng, 100);
            e->type = r < 15 ? IKEY_DEL : IKEY_PUT;
            e->expire = (r >= 15 && r < 30) ? 1 + tu_rng_below(rng, 1ull << 50) : 0;
            if (e->type == IKEY_DEL) {
                e->vlen = 0;
            } else {
                uint64_t s = tu_rng_below(rng, 100);
                e->vlen = s < 25 ? 0
                                 : (s < 97 ? 1 + tu_rng_below(rng, 150)
                                           : block_bytes + tu_rng_below(rng, 2 * block_bytes));
            }
            e->val = rand_bytes(rng, e->vlen, tu_rng_below(rng, 2));
        }
    }
    model_sort_unique(&m);
    return m;
}

static ikey_entry as_entry(const ment *e)
{
    return (ikey_entry){.key = slice_make(e->key, e->klen),
                        .value = slice_make(e->val, e->vlen),
                        .seq = e->seq,
                        .expire_at_ms = e->expire,
                        .type = e->type};
}

static void assert_same(const ikey_entry *got, const ment *want, const char *where)
{
    cr_assert(slice_eq(got->key, slice_make(want->key, want->klen)), "%s: key differs", where);
    cr_assert_eq(got->seq, want->seq, "%s: seq %" PRIu64 " != %" PRIu64, where, got->seq,
                 want->seq);
    cr_assert_eq(got->type, want->type, "%s: type", where);
    cr_assert_eq(got->expire_at_ms, want->expire, "%s: expire", where);
    cr_assert(slice_eq(got->value, slice_make(want->val, want->vlen)),
              "%s: value differs (%zu vs %zu)", where, got->value.len, want->vlen);
}

/* First model index >= (key, seq). */
static size_t lower_bound(const model *m, shale_slice key, uint64_t seq)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ikey_cmp(slice_make(m->e[mid].key, m->e[mid].klen), m->e[mid].seq, key, seq) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* ---- building and reading ----------------------------------------------------------------- */

static char *build_table(const char *dir, const model *m, const sst_builder_options *o,
                         sst_props *props)
{
    char *path = tu_path(dir, NAME);
    sst_builder *b;
    shale_error err;
    cr_assert_eq(sst_builder_new(env_posix(), path, FNUM, o, &b, &err), SHALE_OK, "%s", err.msg);
    for (size_t i = 0; i < m->n; i++) {
        ikey_entry e = as_entry(&m->e[i]);
        cr_assert_eq(sst_builder_add(b, &e, &err), SHALE_OK, "add %zu: %s", i, err.msg);
    }
    cr_assert_eq(sst_builder_entries(b), m->n);
    uint64_t estimate = sst_builder_file_size(b);
    cr_assert_eq(sst_builder_finish(b, props, &err), SHALE_OK, "%s", err.msg);
    if (props != NULL) {
        cr_assert_eq((int64_t)props->file_size, tu_file_size(path));
        /* A close estimate: within a block and the filter's rounding of the result. */
        cr_assert_leq(estimate, props->file_size + 2 * o->block_bytes + 4096);
        cr_assert_geq(estimate + 2 * o->block_bytes + 4096, props->file_size);
    }
    return path;
}

static void check_forward(iter *it, const model *m)
{
    size_t i = 0;
    ikey_entry e;
    for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
        cr_assert_lt(i, m->n);
        iter_entry(it, &e);
        assert_same(&e, &m->e[i], "forward");
        i++;
    }
    cr_assert_eq(iter_status(it, NULL), SHALE_OK);
    cr_assert_eq(i, m->n, "forward saw %zu of %zu", i, m->n);
}

static void check_backward(iter *it, const model *m)
{
    size_t i = m->n;
    ikey_entry e;
    for (iter_seek_last(it); iter_valid(it); iter_prev(it)) {
        cr_assert_gt(i, 0);
        iter_entry(it, &e);
        assert_same(&e, &m->e[--i], "backward");
    }
    cr_assert_eq(iter_status(it, NULL), SHALE_OK);
    cr_assert_eq(i, 0);
}

static void check_seeks(iter *it, const model *m, tu_rng *rng, int count)
{
    for (int s = 0; s < count; s++) {
        uint8_t kb[64];
        shale_slice key;
        uint64_t seq;
        if (tu_rng_below(rng, 2)) {
            const ment *x = &m->e[tu_rng_below(rng, m->n)];
            key = slice_make(x->key, x->klen);
            uint64_t r = tu_rng_below(rng, 3);
            seq = r == 0 ? x->seq : (r == 1 ? IKEY_MAX_SEQ : tu_rng_below(rng, 100001));
        } else {
            key = slice_make(kb, rand_key(rng, kb));
            seq = tu_rng_below(rng, 2) ? IKEY_MAX_SEQ : tu_rng_below(rng, 100001);
        }
        size_t pos = lower_bound(m, key, seq);
        iter_seek(it, key, seq);
        cr_assert_eq(iter_status(it, NULL), SHALE_OK);
        for (int step = 0; step < 6; step++) {
            if (pos >= m->n) {
                cr_assert_not(iter_valid(it), "seek %d step %d: expected the end", s, step);
                break;
            }
            cr_assert(iter_valid(it), "seek %d step %d: expected entry %zu", s, step, pos);
            ikey_entry e;
            iter_entry(it, &e);
            assert_same(&e, &m->e[pos], "seek walk");
            if (tu_rng_below(rng, 2)) {
                iter_next(it);
                pos++;
            } else {
                iter_prev(it);
                if (pos == 0) {
                    cr_assert_not(iter_valid(it));
                    break;
                }
                pos--;
            }
        }
        cr_assert_eq(iter_status(it, NULL), SHALE_OK);
    }
}

static void check_gets(sst_reader *r, const model *m, tu_rng *rng, int count)
{
    shale_buf scratch = {0};
    sst_get_stats st = {0};
    shale_error err;
    for (int g = 0; g < count; g++) {
        uint8_t kb[64];
        shale_slice key;
        if (tu_rng_below(rng, 4)) {
            const ment *x = &m->e[tu_rng_below(rng, m->n)];
            key = slice_make(x->key, x->klen);
        } else {
            key = slice_make(kb, rand_key(rng, kb));
        }
        uint64_t r3 = tu_rng_below(rng, 3);
        uint64_t snap = r3 == 0 ? IKEY_MAX_SEQ : tu_rng_below(rng, 100001);
        size_t pos = lower_bound(m, key, snap);
        bool want = pos < m->n && slice_eq(slice_make(m->e[pos].key, m->e[pos].klen), key);
        bool found;
        ikey_entry e;
        cr_assert_eq(sst_reader_get(r, key, snap, &found, &e, &scratch, &st, &err), SHALE_OK, "%s",
                     err.msg);
        cr_assert_eq(found, want, "get %d: found %d, want %d", g, found, want);
        if (found) {
            assert_same(&e, &m->e[pos], "get");
            cr_assert(sst_reader_may_contain(r, key));
        }
    }
    cr_assert_eq(st.filter_checked, (uint64_t)count);
    buf_free(&scratch);
}

static void check_props(const sst_props *p, const model *m, int compression)
{
    uint64_t del = 0, ttl = 0, kb = 0, vb = 0, mn = UINT64_MAX, mx = 0;
    for (size_t i = 0; i < m->n; i++) {
        del += m->e[i].type == IKEY_DEL;
        ttl += m->e[i].expire != 0;
        kb += m->e[i].klen;
        vb += m->e[i].vlen;
        mn = m->e[i].seq < mn ? m->e[i].seq : mn;
        mx = m->e[i].seq > mx ? m->e[i].seq : mx;
    }
    cr_assert_eq(p->entries, m->n);
    cr_assert_eq(p->deletions, del);
    cr_assert_eq(p->ttl_entries, ttl);
    cr_assert_eq(p->raw_key_bytes, kb);
    cr_assert_eq(p->raw_value_bytes, vb);
    cr_assert_eq(p->min_seq, mn);
    cr_assert_eq(p->max_seq, mx);
    cr_assert_eq(p->compression, (uint32_t)compression);
    cr_assert(slice_eq(slice_make(p->smallest_key.data, p->smallest_key.len),
                       slice_make(m->e[0].key, m->e[0].klen)));
    cr_assert_eq(p->smallest_seq, m->e[0].seq);
    cr_assert(slice_eq(slice_make(p->largest_key.data, p->largest_key.len),
                       slice_make(m->e[m->n - 1].key, m->e[m->n - 1].klen)));
    cr_assert_eq(p->largest_seq, m->e[m->n - 1].seq);
    cr_assert_gt(p->data_blocks, 0);
    cr_assert_gt(p->index_bytes, 0);
    cr_assert_gt(p->filter_bytes, 0);
    cr_assert_gt(p->created_at_ms, 0);
    cr_assert_lt(p->data_bytes, p->file_size);
}

static void random_round(uint64_t seed, int compression, bool use_cache)
{
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    char *dir = tu_tmpdir("sst");
    sst_builder_options o = sst_builder_default_options();
    o.block_bytes = (uint32_t)(256 + tu_rng_below(&rng, 6000));
    o.restart_interval = (uint32_t)(1 + tu_rng_below(&rng, 24));
    o.bloom_bits_per_key = (uint32_t)(1 + tu_rng_below(&rng, 20));
    o.compression = compression;
    o.no_data_block_hash = seed % 3 == 0;
    model m = gen_model(&rng, 1 + tu_rng_below(&rng, 1500), o.block_bytes);
    sst_props props;
    char *path = build_table(dir, &m, &o, &props);
    check_props(&props, &m, compression);

    cache *c = use_cache ? cache_new(tu_rng_below(&rng, 2) ? 8u << 20 : 20000, 2) : NULL;
    sst_reader *r;
    shale_error err;
    cr_assert_eq(sst_reader_open(env_posix(), path, FNUM, props.file_size, c, &r, &err), SHALE_OK,
                 "%s", err.msg);
    const sst_props *rp = sst_reader_props(r);
    check_props(rp, &m, compression);
    cr_assert_eq(rp->file_size, props.file_size);
    cr_assert_eq(rp->data_bytes, props.data_bytes);
    cr_assert_eq(rp->data_blocks, props.data_blocks);
    cr_assert_eq(rp->created_at_ms, props.created_at_ms);
    cr_assert_eq(sst_reader_file_number(r), FNUM);

    for (int pass = 0; pass < 2; pass++) {
        iter *it = sst_reader_iter(r, pass == 0);
        cr_assert_not_null(it);
        cr_assert_not(iter_valid(it));
        check_forward(it, &m);
        check_backward(it, &m);
        check_seeks(it, &m, &rng, 150);
        iter_destroy(it);
    }
    check_gets(r, &m, &rng, 400);
    uint64_t blocks;
    cr_assert_eq(sst_verify(env_posix(), path, FNUM, &blocks, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(blocks, props.data_blocks + 3);

    sst_reader_close(r);
    if (c != NULL) {
        cache_stats cs;
        cache_get_stats(c, &cs);
        cr_assert_eq(cs.pinned_bytes, 0);
        cache_free(c);
    }
    sst_props_free(&props);
    model_free(&m);
    free(path);
    tu_rm_rf(dir);
    free(dir);
}

Test(sst, random_round_trips_none)
{
    for (uint64_t s = 1; s <= 10; s++) {
        random_round(s, COMPRESS_NONE, s % 2);
    }
    tu_assert_no_leaks();
}

Test(sst, random_round_trips_lz4)
{
    for (uint64_t s = 101; s <= 110; s++) {
        random_round(s, COMPRESS_LZ4, s % 2);
    }
    tu_assert_no_leaks();
}

Test(sst, random_round_trips_zstd)
{
    for (uint64_t s = 201; s <= 210; s++) {
        random_round(s, COMPRESS_ZSTD, s % 2);
    }
    tu_assert_no_leaks();
}

/* ---- a fixed table for the cache and damage tests ------------------------------------------ */

/* n entries "key%013d", values of 100 bytes (compressible text), one version each. */
static model seq_model(size_t n)
{
    model m = {0};
    tu_rng rng;
    tu_rng_seed(&rng, 5);
    m.e = calloc(n, sizeof *m.e);
    cr_assert_not_null(m.e);
    for (size_t i = 0; i < n; i++) {
        char k[17];
        tu_key(k, i);
        m.e[i].key = malloc(16);
        memcpy(m.e[i].key, k, 16);
        m.e[i].klen = 16;
        m.e[i].seq = 1000 + i;
        m.e[i].type = IKEY_PUT;
        m.e[i].vlen = 100;
        m.e[i].val = rand_bytes(&rng, 100, true);
    }
    m.n = n;
    return m;
}

typedef struct fixture {
    char *dir;
    char *path;
    model m;
    sst_props props;
    sst_handle index, filter, propsh;
    uint64_t size;
} fixture;

static void fixture_init(fixture *f, size_t n, int compression)
{
    sst_builder_options o = sst_builder_default_options();
    o.compression = compression;
    f->dir = tu_tmpdir("sst");
    f->m = seq_model(n);
    f->path = build_table(f->dir, &f->m, &o, &f->props);
    f->size = f->props.file_size;

    FILE *fp = fopen(f->path, "rb");
    uint8_t footer[SST_FOOTER_SIZE];
    cr_assert_not_null(fp);
    cr_assert_eq(fseek(fp, (long)(f->size - SST_FOOTER_SIZE), SEEK_SET), 0);
    cr_assert_eq(fread(footer, 1, sizeof footer, fp), sizeof footer);
    fclose(fp);
    cr_assert(memcmp(footer + SST_FOOTER_MAGIC, "SHALESST", 8) == 0);
    f->index = (sst_handle){coding_get_fixed64(footer + SST_FOOTER_INDEX),
                            coding_get_fixed64(footer + SST_FOOTER_INDEX + 8)};
    f->filter = (sst_handle){coding_get_fixed64(footer + SST_FOOTER_FILTER),
                             coding_get_fixed64(footer + SST_FOOTER_FILTER + 8)};
    f->propsh = (sst_handle){coding_get_fixed64(footer + SST_FOOTER_PROPS),
                             coding_get_fixed64(footer + SST_FOOTER_PROPS + 8)};
}

static void fixture_destroy(fixture *f)
{
    sst_props_free(&f->props);
    model_free(&f->m);
    free(f->path);
    tu_rm_rf(f->dir);
    free(f->dir);
}

static void assert_err(shale_code rc, const shale_error *err, const char *needle)
{
    cr_assert_eq(rc, SHALE_CORRUPTION, "rc %d: %s", rc, err->msg);
    cr_assert(strncmp(err->msg, NAME ": ", strlen(NAME) + 2) == 0, "no file name in '%s'",
              err->msg);
    cr_assert(strstr(err->msg, needle) != NULL, "'%s' not in '%s'", needle, err->msg);
}

Test(sst, layout_footer_and_contiguous_blocks)
{
    fixture f;
    fixture_init(&f, 3000, COMPRESS_LZ4);
    cr_assert_eq(f.filter.offset, f.props.data_bytes);
    cr_assert_eq(f.index.offset, f.filter.offset + f.filter.size + SST_TRAILER_SIZE);
    cr_assert_eq(f.propsh.offset, f.index.offset + f.index.size + SST_TRAILER_SIZE);
    cr_assert_eq(f.size, f.propsh.offset + f.propsh.size + SST_TRAILER_SIZE + SST_FOOTER_SIZE);
    cr_assert_eq(f.props.filter_bytes, f.filter.size + SST_TRAILER_SIZE);
    cr_assert_eq(f.props.index_bytes, f.index.size + SST_TRAILER_SIZE);
    /* 3000 * ~125 bytes in 4 KiB blocks, compressed text: well under the raw size. */
    cr_assert_gt(f.props.data_blocks, 50);
    cr_assert_lt(f.props.data_bytes, 3000 * 100);
    /* Filter: 3000 keys * 10 bits -> 59 lines. */
    cr_assert_eq(f.filter.size, 59 * 64 + 8);
    fixture_destroy(&f);
}

/* The block starting at off (data blocks are contiguous from 0): found, without the index, as
 * the first length whose trailer's checksum matches. */
static sst_handle block_at(const uint8_t *d, uint64_t off, uint64_t limit)
{
    for (uint64_t end = off + 1; end + SST_TRAILER_SIZE <= limit; end++) {
        uint8_t type = d[end];
        uint32_t crc = crc32c_extend(crc32c_value(d + off, end - off), &type, 1);
        if (crc32c_mask(crc) == coding_get_fixed32(d + end + 1)) {
            return (sst_handle){off, end - off};
        }
    }
    cr_assert_fail("no block at %" PRIu64, off);
    return (sst_handle){0, 0};
}

Test(sst, incompressible_blocks_are_stored_raw)
{
    tu_rng rng;
    tu_rng_seed(&rng, 77);
    model m = seq_model(500);
    for (size_t i = 0; i < m.n; i++) {
        free(m.e[i].val);
        m.e[i].val = rand_bytes(&rng, 100, false);
    }
    char *dir = tu_tmpdir("sst");
    sst_builder_options o = sst_builder_default_options();
    sst_props p;
    char *path = build_table(dir, &m, &o, &p);
    /* Every data block's trailer says NONE: random values do not save 1/8. */
    FILE *fp = fopen(path, "rb");
    uint8_t *d = malloc(p.file_size);
    cr_assert_eq(fread(d, 1, p.file_size, fp), p.file_size);
    fclose(fp);
    uint64_t off = 0;
    int blocks = 0;
    while (off < p.data_bytes) {
        sst_handle h = block_at(d, off, p.data_bytes);
        cr_assert_eq(d[h.offset + h.size], COMPRESS_NONE, "block @%" PRIu64 " is compressed", off);
        off = h.offset + h.size + SST_TRAILER_SIZE;
        blocks++;
    }
    cr_assert_eq((uint64_t)blocks, p.data_blocks);
    free(d);
    sst_props_free(&p);
    model_free(&m);
    free(path);
    tu_rm_rf(dir);
    free(dir);
}

/* ---- cache -------------------------------------------------------------------------------- */

Test(sst, gets_fill_the_cache_and_hit_it)
{
    fixture f;
    fixture_init(&f, 2000, COMPRESS_LZ4);
    cache *c = cache_new(16u << 20, 2);
    sst_reader *r;
    shale_buf scratch = {0};
    cache_stats cs;
    bool found;
    ikey_entry e;
    char k[17];

    cr_assert_eq(sst_reader_open(env_posix(), f.path, FNUM, 0, c, &r, NULL), SHALE_OK);
    cache_get_stats(c, &cs);
    cr_assert_eq(cs.inserts, 0, "open reads footer and properties only");

    cr_assert_eq(sst_reader_get(r, tu_key(k, 7), IKEY_MAX_SEQ, &found, &e, &scratch, NULL, NULL),
                 SHALE_OK);
    cr_assert(found);
    assert_same(&e, &f.m.e[7], "get");
    cache_get_stats(c, &cs);
    cr_assert_eq(cs.inserts, 3, "filter, index and one data block");
    cr_assert_geq(cs.pinned_bytes, f.index.size + f.filter.size,
                  "the reader holds its index and filter");
    uint64_t usage = cs.usage_bytes;
    cr_assert_gt(usage, cs.pinned_bytes + 4096 / 2, "the data block is not held");
    uint64_t meta_pinned = cs.pinned_bytes;

    cr_assert_eq(sst_reader_get(r, tu_key(k, 8), IKEY_MAX_SEQ, &found, &e, &scratch, NULL, NULL),
                 SHALE_OK);
    cr_assert(found);
    cache_get_stats(c, &cs);
    cr_assert_eq(cs.inserts, 3, "same block: all hits");
    cr_assert_eq(cs.hits, 1, "index and filter are the reader's: only the data block is looked up");
    cr_assert_eq(cs.pinned_bytes, meta_pinned);

    /* An absent key stops at the filter (almost always) and inserts nothing. */
    sst_get_stats st = {0};
    for (int i = 0; i < 100; i++) {
        char absent[32];
        int n = snprintf(absent, sizeof absent, "nokey%d", i);
        cr_assert_eq(sst_reader_get(r, slice_make(absent, (size_t)n), IKEY_MAX_SEQ, &found, &e,
                                    &scratch, &st, NULL),
                     SHALE_OK);
        cr_assert_not(found);
    }
    cr_assert_eq(st.filter_checked, 100);
    cr_assert_geq(st.filter_negative, 90);

    /* The value lives in scratch, not in the cache: it survives eviction of everything. */
    cr_assert_eq(sst_reader_get(r, tu_key(k, 1999), IKEY_MAX_SEQ, &found, &e, &scratch, NULL, NULL),
                 SHALE_OK);
    cr_assert(found);
    cache_prune(c);
    assert_same(&e, &f.m.e[1999], "after prune");
    cache_get_stats(c, &cs);
    cr_assert_eq(cs.entries, 2, "prune keeps only what the reader holds");

    sst_reader_close(r);
    cache_get_stats(c, &cs);
    cr_assert_eq(cs.entries, 0, "index and filter leave the cache with their reader");
    cr_assert_eq(cs.pinned_bytes, 0);
    cache_free(c);
    buf_free(&scratch);
    fixture_destroy(&f);
    tu_assert_no_leaks();
}

Test(sst, iterator_fill_cache_false_never_inserts)
{
    fixture f;
    fixture_init(&f, 3000, COMPRESS_LZ4);
    cache *c = cache_new(16u << 20, 1);
    sst_reader *r;
    cache_stats cs;

    cr_assert_eq(sst_reader_open(env_posix(), f.path, FNUM, f.size, c, &r, NULL), SHALE_OK);
    iter *it = sst_reader_iter(r, false);
    check_forward(it, &f.m);
    check_backward(it, &f.m);
    iter_destroy(it);
    cache_get_stats(c, &cs);
    cr_assert_eq(cs.inserts, 0);
    cr_assert_eq(cs.entries, 0);

    it = sst_reader_iter(r, true);
    iter_seek_first(it);
    cr_assert(iter_valid(it));
    cache_get_stats(c, &cs);
    cr_assert_eq(cs.inserts, 2, "index and the first data block");
    cr_assert_gt(cs.pinned_bytes, 0, "the iterator pins its index and block");
    check_forward(it, &f.m);
    cache_get_stats(c, &cs);
    cr_assert_eq(cs.inserts, 1 + f.props.data_blocks);
    iter_destroy(it);
    cache_get_stats(c, &cs);
    cr_assert_gt(cs.pinned_bytes, 0, "the reader holds its index");
    cr_assert_lt(cs.pinned_bytes * 2, cs.usage_bytes, "but no data block");

    /* A non-filling iterator still uses what is cached. */
    uint64_t hits = cs.hits;
    it = sst_reader_iter(r, false);
    check_forward(it, &f.m);
    iter_destroy(it);
    cache_get_stats(c, &cs);
    cr_assert_geq(cs.hits, hits + f.props.data_blocks);
    cr_assert_eq(cs.inserts, 1 + f.props.data_blocks);

    sst_reader_close(r);
    cache_get_stats(c, &cs);
    cr_assert_eq(cs.pinned_bytes, 0);
    cr_assert_eq(cs.entries, f.props.data_blocks, "the index leaves with its reader");
    cache_free(c);
    fixture_destroy(&f);
    tu_assert_no_leaks();
}

Test(sst, tiny_and_zero_capacity_caches_still_read)
{
    fixture f;
    fixture_init(&f, 1500, COMPRESS_NONE);
    size_t caps[] = {0, 5000};
    for (int i = 0; i < 2; i++) {
        cache *c = cache_new(caps[i], 0);
        sst_reader *r;
        tu_rng rng;
        tu_rng_seed(&rng, 3);
        cr_assert_eq(sst_reader_open(env_posix(), f.path, FNUM, 0, c, &r, NULL), SHALE_OK);
        iter *it = sst_reader_iter(r, true);
        check_forward(it, &f.m);
        check_backward(it, &f.m);
        check_seeks(it, &f.m, &rng, 100);
        iter_destroy(it);
        check_gets(r, &f.m, &rng, 200);
        cache_stats cs;
        cache_get_stats(c, &cs);
        cr_assert_leq(cs.usage_bytes, caps[i]);
        cr_assert_leq(cs.pinned_bytes, caps[i] / 2, "a reader holds at most half the cache");
        sst_reader_close(r);
        cache_get_stats(c, &cs);
        cr_assert_eq(cs.pinned_bytes, 0);
        cr_assert(cache_hold_try(c, caps[i] / 2), "the reader gave its holds back");
        cache_free(c);
    }
    fixture_destroy(&f);
}

Test(sst, two_readers_share_a_cache_without_mixing_blocks)
{
    char *dir = tu_tmpdir("sst");
    tu_rng rng;
    tu_rng_seed(&rng, 11);
    sst_builder_options o = sst_builder_default_options();
    model m1 = seq_model(800);
    model m2 = gen_model(&rng, 300, o.block_bytes);
    char *p1 = tu_path(dir, "000001.sst");
    char *p2 = tu_path(dir, "000002.sst");
    sst_builder *b;
    for (int t = 0; t < 2; t++) {
        model *m = t ? &m2 : &m1;
        cr_assert_eq(sst_builder_new(env_posix(), t ? p2 : p1, 1 + (uint64_t)t, &o, &b, NULL),
                     SHALE_OK);
        for (size_t i = 0; i < m->n; i++) {
            ikey_entry e = as_entry(&m->e[i]);
            cr_assert_eq(sst_builder_add(b, &e, NULL), SHALE_OK);
        }
        cr_assert_eq(sst_builder_finish(b, NULL, NULL), SHALE_OK);
    }
    cache *c = cache_new(1u << 20, 2);
    sst_reader *r1, *r2;
    cr_assert_eq(sst_reader_open(env_posix(), p1, 1, 0, c, &r1, NULL), SHALE_OK);
    cr_assert_eq(sst_reader_open(env_posix(), p2, 2, 0, c, &r2, NULL), SHALE_OK);
    for (int round = 0; round < 2; round++) {
        iter *i1 = sst_reader_iter(r1, true);
        iter *i2 = sst_reader_iter(r2, true);
        check_forward(i1, &m1);
        check_forward(i2, &m2);
        iter_destroy(i1);
        iter_destroy(i2);
    }
    sst_reader_close(r1);
    sst_reader_close(r2);
    cache_free(c);
    model_free(&m1);
    model_free(&m2);
    free(p1);
    free(p2);
    tu_rm_rf(dir);
    free(dir);
}

typedef struct reader_thread {
    sst_reader *r;
    const model *m;
    uint64_t seed;
    int failures;
} reader_thread;

static void *reader_main(void *arg)
{
    reader_thread *t = arg;
    tu_rng rng;
    shale_buf scratch = {0};
    tu_rng_seed(&rng, t->seed);
    iter *it = sst_reader_iter(t->r, t->seed % 2);
    for (int i = 0; i < 1500; i++) {
        const ment *x = &t->m->e[tu_rng_below(&rng, t->m->n)];
        bool found;
        ikey_entry e;
        if (sst_reader_get(t->r, slice_make(x->key, x->klen), x->seq, &found, &e, &scratch, NULL,
                           NULL) != SHALE_OK ||
            !found || e.seq != x->seq) {
            t->failures++;
        }
        iter_seek(it, slice_make(x->key, x->klen), x->seq);
        if (!iter_valid(it)) {
            t->failures++;
            continue;
        }
        iter_entry(it, &e);
        t->failures += e.seq != x->seq;
    }
    iter_destroy(it);
    buf_free(&scratch);
    return NULL;
}

/* Readers are shared without locks: the first uses of the kept index and filter race (without
 * a cache), and cache entries are shared (with one). */
Test(sst, concurrent_readers)
{
    fixture f;
    fixture_init(&f, 4000, COMPRESS_LZ4);
    for (int with_cache = 0; with_cache < 2; with_cache++) {
        cache *c = with_cache ? cache_new(64u << 10, 2) : NULL;
        sst_reader *r;
        cr_assert_eq(sst_reader_open(env_posix(), f.path, FNUM, 0, c, &r, NULL), SHALE_OK);
        pthread_t th[4];
        reader_thread rt[4];
        for (int i = 0; i < 4; i++) {
            rt[i] = (reader_thread){.r = r, .m = &f.m, .seed = 1 + (uint64_t)i};
            cr_assert_eq(pthread_create(&th[i], NULL, reader_main, &rt[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            cr_assert_eq(rt[i].failures, 0, "thread %d", i);
        }
        sst_reader_close(r);
        cache_free(c);
    }
    fixture_destroy(&f);
    tu_assert_no_leaks();
}

/* ---- damage ------------------------------------------------------------------------------- */

/* Opens (no cache, or a cache) and runs get, a full scan and verify; each must fail with a
 * corruption message containing `needle`. */
static void expect_damage_on_read(const fixture *f, const char *needle, bool get_fails,
                                  bool iter_fails)
{
    for (int with_cache = 0; with_cache < 2; with_cache++) {
        cache *c = with_cache ? cache_new(1u << 20, 0) : NULL;
        sst_reader *r;
        shale_error err;
        shale_buf scratch = {0};
        bool found;
        ikey_entry e;
        char k[17];
        cr_assert_eq(sst_reader_open(env_posix(), f->path, FNUM, f->size, c, &r, &err), SHALE_OK,
                     "%s", err.msg);
        shale_code rc =
            sst_reader_get(r, tu_key(k, 3), IKEY_MAX_SEQ, &found, &e, &scratch, NULL, &err);
        if (get_fails) {
            assert_err(rc, &err, needle);
        } else {
            cr_assert_eq(rc, SHALE_OK, "%s", err.msg);
        }
        iter *it = sst_reader_iter(r, with_cache);
        size_t n = 0;
        for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
            n++;
        }
        rc = iter_status(it, &err);
        if (iter_fails) {
            assert_err(rc, &err, needle);
            cr_assert_lt(n, f->m.n);
            cr_assert_not(iter_valid(it));
        } else {
            cr_assert_eq(rc, SHALE_OK, "%s", err.msg);
            cr_assert_eq(n, f->m.n);
        }
        iter_destroy(it);
        sst_reader_close(r);
        cache_free(c);
        buf_free(&scratch);
    }
    shale_error err;
    uint64_t blocks;
    assert_err(sst_verify(env_posix(), f->path, FNUM, &blocks, &err), &err, needle);
}

static void expect_damage_on_open(const fixture *f, const char *needle)
{
    sst_reader *r = NULL;
    shale_error err;
    assert_err(sst_reader_open(env_posix(), f->path, FNUM, 0, NULL, &r, &err), &err, needle);
    cr_assert_null(r);
    assert_err(sst_verify(env_posix(), f->path, FNUM, NULL, &err), &err, needle);
}

Test(sst, bit_flip_in_a_data_block)
{
    fixture f;
    fixture_init(&f, 3000, COMPRESS_LZ4);
    cr_assert_eq(tu_flip_bit(f.path, 100, 3), 0);
    expect_damage_on_read(&f, "data block @0+", true, true);
    expect_damage_on_read(&f, "bad checksum", true, true);

    /* Damage is local: a key in a later block still reads. */
    sst_reader *r;
    shale_buf scratch = {0};
    bool found;
    ikey_entry e;
    char k[17];
    cr_assert_eq(sst_reader_open(env_posix(), f.path, FNUM, 0, NULL, &r, NULL), SHALE_OK);
    cr_assert_eq(sst_reader_get(r, tu_key(k, 2900), IKEY_MAX_SEQ, &found, &e, &scratch, NULL, NULL),
                 SHALE_OK);
    cr_assert(found);
    /* And a reverse scan reaches every block after the damaged one. */
    iter *it = sst_reader_iter(r, false);
    size_t n = 0;
    for (iter_seek_last(it); iter_valid(it); iter_prev(it)) {
        n++;
    }
    cr_assert_eq(iter_status(it, NULL), SHALE_CORRUPTION);
    cr_assert_gt(n, 2500);
    /* The error holds until the next seek, which resets it; seeks that avoid the damaged
     * block succeed, one that lands on it fails again. */
    cr_assert_not(iter_valid(it));
    iter_seek(it, tu_key(k, 2000), IKEY_MAX_SEQ);
    cr_assert(iter_valid(it));
    cr_assert_eq(iter_status(it, NULL), SHALE_OK);
    ikey_entry got;
    iter_entry(it, &got);
    assert_same(&got, &f.m.e[2000], "seek after an error");
    iter_seek_first(it);
    cr_assert_not(iter_valid(it));
    cr_assert_eq(iter_status(it, NULL), SHALE_CORRUPTION);
    iter_seek_last(it);
    cr_assert(iter_valid(it));
    cr_assert_eq(iter_status(it, NULL), SHALE_OK);
    iter_destroy(it);
    sst_reader_close(r);
    buf_free(&scratch);
    fixture_destroy(&f);
}

Test(sst, bit_flip_in_a_block_trailer)
{
    fixture f;
    fixture_init(&f, 3000, COMPRESS_NONE);
    /* The type byte of the filter's trailer: covered by the checksum too. */
    cr_assert_eq(tu_flip_bit(f.path, f.filter.offset + f.filter.size, 1), 0);
    expect_damage_on_read(&f, "filter block", true, false);
    fixture_destroy(&f);
}

Test(sst, bit_flip_in_the_index_block)
{
    fixture f;
    fixture_init(&f, 3000, COMPRESS_LZ4);
    cr_assert_eq(tu_flip_bit(f.path, f.index.offset + f.index.size / 2, 0), 0);
    expect_damage_on_read(&f, "index block @", true, true);
    fixture_destroy(&f);
    tu_assert_no_leaks();
}

Test(sst, bit_flip_in_the_filter_block)
{
    fixture f;
    fixture_init(&f, 3000, COMPRESS_LZ4);
    cr_assert_eq(tu_flip_bit(f.path, f.filter.offset + 17, 5), 0);
    expect_damage_on_read(&f, "filter block @", true, false);
    sst_reader *r;
    cr_assert_eq(sst_reader_open(env_posix(), f.path, FNUM, 0, NULL, &r, NULL), SHALE_OK);
    cr_assert(sst_reader_may_contain(r, slice_cstr("anything")), "a filter error says maybe");
    sst_reader_close(r);
    fixture_destroy(&f);
}

Test(sst, bit_flip_in_the_properties_block)
{
    fixture f;
    fixture_init(&f, 3000, COMPRESS_LZ4);
    cr_assert_eq(tu_flip_bit(f.path, f.propsh.offset + 9, 2), 0);
    expect_damage_on_open(&f, "properties block @");
    fixture_destroy(&f);
}

Test(sst, bit_flips_in_the_footer)
{
    fixture f;
    fixture_init(&f, 500, COMPRESS_LZ4);
    uint64_t foot = f.size - SST_FOOTER_SIZE;
    cr_assert_eq(tu_flip_bit(f.path, foot + SST_FOOTER_MAGIC + 3, 6), 0);
    expect_damage_on_open(&f, "footer: bad magic");
    cr_assert_eq(tu_flip_bit(f.path, foot + SST_FOOTER_MAGIC + 3, 6), 0);
    cr_assert_eq(sst_verify(env_posix(), f.path, FNUM, NULL, NULL), SHALE_OK);

    for (uint32_t at = 0; at < SST_FOOTER_MAGIC; at += 5) {
        cr_assert_eq(tu_flip_bit(f.path, foot + at, (int)(at % 8)), 0);
        expect_damage_on_open(&f, "footer: bad checksum");
        cr_assert_eq(tu_flip_bit(f.path, foot + at, (int)(at % 8)), 0);
    }
    fixture_destroy(&f);
}

Test(sst, wrong_file_number_and_missing_file)
{
    fixture f;
    fixture_init(&f, 100, COMPRESS_LZ4);
    sst_reader *r;
    shale_error err;
    shale_code rc = sst_reader_open(env_posix(), f.path, FNUM + 1, 0, NULL, &r, &err);
    assert_err(rc, &err, "footer: file number 12, expected 13");
    char *missing = tu_path(f.dir, "000099.sst");
    cr_assert_eq(sst_reader_open(env_posix(), missing, 99, 0, NULL, &r, &err), SHALE_NOT_FOUND);
    cr_assert_eq(sst_verify(env_posix(), missing, 99, NULL, &err), SHALE_NOT_FOUND);
    free(missing);
    fixture_destroy(&f);
}

Test(sst, truncated_files)
{
    fixture f;
    fixture_init(&f, 1000, COMPRESS_LZ4);
    sst_reader *r;
    shale_error err;

    cr_assert_eq(tu_truncate(f.path, f.size - 1), 0);
    assert_err(sst_reader_open(env_posix(), f.path, FNUM, f.size, NULL, &r, &err), &err,
               "expected");
    assert_err(sst_reader_open(env_posix(), f.path, FNUM, 0, NULL, &r, &err), &err, "footer");
    assert_err(sst_verify(env_posix(), f.path, FNUM, NULL, &err), &err, "footer");

    /* Cut at every block boundary region and inside blocks: never opens. */
    uint64_t cuts[] = {f.size - SST_FOOTER_SIZE,
                       f.propsh.offset + 3,
                       f.index.offset,
                       f.filter.offset + 1,
                       4096,
                       SST_FOOTER_SIZE,
                       10,
                       0};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        cr_assert_eq(tu_truncate(f.path, cuts[i]), 0);
        shale_code rc = sst_reader_open(env_posix(), f.path, FNUM, 0, NULL, &r, &err);
        assert_err(rc, &err, cuts[i] < SST_FOOTER_SIZE ? "shorter than a footer" : "footer");
    }
    fixture_destroy(&f);
    tu_assert_no_leaks();
}

/* Every single-bit flip anywhere in the file is caught by verify (CRC32C detects all of them),
 * and reading the damaged table never crashes. */
Test(sst, every_random_bit_flip_is_detected)
{
    fixture f;
    fixture_init(&f, 600, COMPRESS_LZ4);
    tu_rng rng;
    tu_rng_seed(&rng, 42);
    for (int i = 0; i < 150; i++) {
        uint64_t at = tu_rng_below(&rng, f.size);
        int bit = (int)tu_rng_below(&rng, 8);
        cr_assert_eq(tu_flip_bit(f.path, at, bit), 0);
        shale_error err;
        shale_code rc = sst_verify(env_posix(), f.path, FNUM, NULL, &err);
        cr_assert_eq(rc, SHALE_CORRUPTION, "flip @%" PRIu64 " bit %d not detected", at, bit);
        cr_assert(strncmp(err.msg, NAME ": ", strlen(NAME) + 2) == 0, "%s", err.msg);

        sst_reader *r;
        if (sst_reader_open(env_posix(), f.path, FNUM, 0, NULL, &r, NULL) == SHALE_OK) {
            iter *it = sst_reader_iter(r, false);
            for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
            }
            for (iter_seek_last(it); iter_valid(it); iter_prev(it)) {
            }
            shale_buf scratch = {0};
            bool found;
            ikey_entry e;
            char k[17];
            rc = sst_reader_get(r, tu_key(k, tu_rng_below(&rng, 600)), IKEY_MAX_SEQ, &found, &e,
                                &scratch, NULL, NULL);
            cr_assert(rc == SHALE_OK || rc == SHALE_CORRUPTION);
            buf_free(&scratch);
            iter_destroy(it);
            sst_reader_close(r);
        }
        cr_assert_eq(tu_flip_bit(f.path, at, bit), 0);
    }
    cr_assert_eq(sst_verify(env_posix(), f.path, FNUM, NULL, NULL), SHALE_OK);
    fixture_destroy(&f);
    tu_assert_no_leaks();
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *d = malloc(*n);
    cr_assert_eq(fread(d, 1, *n, fp), *n);
    fclose(fp);
    return d;
}

static void spill(const char *path, const uint8_t *d, size_t n)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    cr_assert_eq(fwrite(d, 1, n, fp), n);
    fclose(fp);
}

static void reseal(uint8_t *d, const sst_handle *h)
{
    uint8_t type = d[h->offset + h->size];
    uint32_t crc = crc32c_extend(crc32c_value(d + h->offset, h->size), &type, 1);
    coding_put_fixed32(d + h->offset + h->size + 1, crc32c_mask(crc));
}

/* A fixture, its table's bytes (orig) and a copy of them to damage (d, n bytes). */
typedef struct image {
    fixture f;
    uint8_t *orig, *d;
    size_t n;
} image;

static void image_init(image *im, size_t entries, int compression)
{
    fixture_init(&im->f, entries, compression);
    im->orig = slurp(im->f.path, &im->n);
    im->d = malloc(im->n);
    cr_assert_not_null(im->d);
}

/* Reseals block h of the damaged copy and writes the copy over the table. */
static void image_store(const image *im, const sst_handle *h)
{
    reseal(im->d, h);
    spill(im->f.path, im->d, im->n);
}

static void image_destroy(image *im)
{
    free(im->d);
    free(im->orig);
    fixture_destroy(&im->f);
}

/* Damage behind a valid checksum (what a buggy writer or a crafted file gives): the parsers'
 * own bounds checks must hold. Random bytes in the index and in the first data block (stored
 * raw, so the parser sees them), then every read path; nothing may crash. */
Test(sst, damage_behind_a_valid_checksum_never_crashes)
{
    image im;
    image_init(&im, 800, COMPRESS_NONE);
    tu_rng rng;
    tu_rng_seed(&rng, 8);
    /* First data block's handle: from the index's first entry, which is whole (restart 1). */
    const uint8_t *ie = im.orig + im.f.index.offset;
    uint32_t shared, nonshared, vlen;
    const uint8_t *p = coding_get_varint32(ie, ie + 5, &shared);
    p = coding_get_varint32(p, p + 5, &nonshared);
    p = coding_get_varint32(p, p + 5, &vlen);
    sst_handle d0;
    p += nonshared;
    p = coding_get_varint64(p, p + 10, &d0.offset);
    p = coding_get_varint64(p, p + 10, &d0.size);
    cr_assert_not_null(p);
    cr_assert_eq(d0.offset, 0);
    int corrupt = 0;

    for (int round = 0; round < 120; round++) {
        memcpy(im.d, im.orig, im.n);
        const sst_handle *h = round % 2 ? &im.f.index : &d0;
        int k = 1 + (int)tu_rng_below(&rng, 3);
        for (int j = 0; j < k; j++) {
            im.d[h->offset + tu_rng_below(&rng, h->size)] = (uint8_t)tu_rng_next(&rng);
        }
        image_store(&im, h);

        sst_reader *r;
        cr_assert_eq(sst_reader_open(env_posix(), im.f.path, FNUM, 0, NULL, &r, NULL), SHALE_OK);
        iter *it = sst_reader_iter(r, false);
        int steps = 0;
        for (iter_seek_first(it); iter_valid(it) && steps < 5000; iter_next(it), steps++) {
            ikey_entry e;
            iter_entry(it, &e);
        }
        for (iter_seek_last(it); iter_valid(it) && steps < 10000; iter_prev(it), steps++) {
        }
        for (int s = 0; s < 20; s++) {
            char key[17];
            iter_seek(it, tu_key(key, tu_rng_below(&rng, 900)), IKEY_MAX_SEQ);
            if (iter_valid(it)) {
                iter_prev(it);
            }
            shale_buf scratch = {0};
            bool found;
            ikey_entry e;
            shale_code rc = sst_reader_get(r, tu_key(key, tu_rng_below(&rng, 900)), IKEY_MAX_SEQ,
                                           &found, &e, &scratch, NULL, NULL);
            cr_assert(rc == SHALE_OK || rc == SHALE_CORRUPTION);
            buf_free(&scratch);
        }
        iter_destroy(it);
        sst_reader_close(r);
        shale_code rc = sst_verify(env_posix(), im.f.path, FNUM, NULL, NULL);
        cr_assert(rc == SHALE_OK || rc == SHALE_CORRUPTION);
        corrupt += rc == SHALE_CORRUPTION;
    }
    cr_assert_gt(corrupt, 30, "verify noticed only %d of 120 damaged tables", corrupt);
    image_destroy(&im);
    tu_assert_no_leaks();
}

/* A compressed block whose checksum holds but whose contents do not expand: the decompressor's
 * error, named after the block. Also an unknown compression type and an absurd raw length. */
Test(sst, compressed_block_damage_behind_a_valid_checksum)
{
    image im;
    image_init(&im, 2000, COMPRESS_LZ4);
    sst_handle h = block_at(im.orig, 0, im.f.props.data_bytes);
    cr_assert_eq(im.orig[h.size], COMPRESS_LZ4, "the fixture's text values compress");
    struct {
        const char *needle;
        int what;
    } cases[] = {{"lz4: damaged input", 0},
                 {"unknown compression type 7", 1},
                 {"bad raw length", 2},
                 {"lz4: damaged input", 3}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(im.d, im.orig, im.n);
        switch (cases[i].what) {
        case 0: { /* the stream becomes endless literal-length bytes: runs past its input */
            uint32_t raw;
            const uint8_t *q = coding_get_varint32(im.d, im.d + h.size, &raw);
            cr_assert_not_null(q);
            memset(im.d + (q - im.d), 0xff, h.size - (size_t)(q - im.d));
            break;
        }
        case 1:
            im.d[h.size] = 7;
            break;
        case 2: /* raw length varint > SST_MAX_BLOCK_BYTES (1 GiB) */
            memcpy(im.d, "\x80\x80\x80\x80\x04", 5);
            break;
        default: /* claims one byte more than it expands to */
            im.d[0]++;
            break;
        }
        image_store(&im, &h);
        expect_damage_on_read(&im.f, "data block @0+", true, true);
        shale_error err;
        assert_err(sst_verify(env_posix(), im.f.path, FNUM, NULL, &err), &err, cases[i].needle);
    }
    image_destroy(&im);
    tu_assert_no_leaks();
}

/* Properties that pass their checksum but not their checks (or disagree with the data). */
Test(sst, properties_damage_behind_a_valid_checksum)
{
    image im;
    image_init(&im, 300, COMPRESS_NONE);
    uint8_t *p = im.d + im.f.propsh.offset;
    struct {
        int field; /* enum sst_prop_field, or -1: the field count */
        uint64_t value;
        bool opens;
        const char *needle;
    } cases[] = {
        {-1, 3, false, "bad field count"},
        {-1, 100000, false, "bad field count"},
        {SST_PROP_FILE_SIZE, 12345, false, "file size 12345"},
        {SST_PROP_COMPRESSION, 9, false, "unknown compression"},
        {SST_PROP_ENTRIES, 0, false, "inconsistent counts"},
        {SST_PROP_MIN_SEQ, UINT64_MAX, false, "inconsistent counts"},
        {SST_PROP_ENTRIES, 301, true, "entry counts do not match"},
        {SST_PROP_RAW_VALUE_BYTES, 7, true, "byte counts do not match"},
        {SST_PROP_DATA_BLOCKS, 99, true, "block counts do not match"},
        {SST_PROP_MAX_SEQ, 5000, true, "sequence numbers do not match"},
        {SST_PROP_INDEX_BYTES, 1, true, "index or filter size"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(im.d, im.orig, im.n);
        if (cases[i].field < 0) {
            coding_put_fixed32(p, (uint32_t)cases[i].value);
        } else {
            coding_put_fixed64(p + 4 + 8 * (size_t)cases[i].field, cases[i].value);
        }
        image_store(&im, &im.f.propsh);
        shale_error err;
        sst_reader *r = NULL;
        shale_code rc = sst_reader_open(env_posix(), im.f.path, FNUM, 0, NULL, &r, &err);
        if (cases[i].opens) {
            cr_assert_eq(rc, SHALE_OK, "case %zu: %s", i, err.msg);
            sst_reader_close(r);
        } else {
            assert_err(rc, &err, cases[i].needle);
            assert_err(rc, &err, "properties block");
        }
        assert_err(sst_verify(env_posix(), im.f.path, FNUM, NULL, &err), &err, cases[i].needle);
    }
    /* The key bounds: a smallest key that claims more bytes than there are. */
    memcpy(im.d, im.orig, im.n);
    p[4 + 8 * SST_PROP_COUNT] = 0x7f;
    image_store(&im, &im.f.propsh);
    shale_error err;
    sst_reader *r;
    assert_err(sst_reader_open(env_posix(), im.f.path, FNUM, 0, NULL, &r, &err), &err,
               "bad key bounds");
    image_destroy(&im);
    tu_assert_no_leaks();
}

/* ---- builder errors ----------------------------------------------------------------------- */

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* A new scratch directory (*dir) and the path of table NAME in it; free with scratch_free. */
static char *scratch_table(char **dir)
{
    *dir = tu_tmpdir("sst");
    return tu_path(*dir, NAME);
}

static void scratch_free(char *dir, char *path)
{
    free(path);
    tu_rm_rf(dir);
    free(dir);
}

Test(sst, out_of_order_adds_are_rejected_and_break_the_builder)
{
    char *dir, *path = scratch_table(&dir);
    sst_builder *b;
    shale_error err;
    ikey_entry e = {.key = SLICE_LIT("b"), .value = SLICE_LIT("v"), .seq = 5, .type = IKEY_PUT};

    cr_assert_eq(sst_builder_new(env_posix(), path, FNUM, NULL, &b, NULL), SHALE_OK);
    cr_assert_eq(sst_builder_add(b, &e, NULL), SHALE_OK);
    ikey_entry same = e;
    cr_assert_eq(sst_builder_add(b, &same, &err), SHALE_INVALID, "same key and seq");
    cr_assert(strstr(err.msg, "not after") != NULL, "%s", err.msg);
    ikey_entry later = e;
    later.key = SLICE_LIT("c");
    cr_assert_eq(sst_builder_add(b, &later, &err), SHALE_INVALID, "broken: later adds fail too");
    sst_builder_abandon(b);
    cr_assert_not(exists(path));

    /* Each kind of disorder on a fresh builder. */
    ikey_entry cases[][2] = {
        {{.key = SLICE_LIT("b"), .seq = 5, .type = IKEY_PUT},
         {.key = SLICE_LIT("a"), .seq = 9, .type = IKEY_PUT}},
        {{.key = SLICE_LIT("b"), .seq = 5, .type = IKEY_PUT},
         {.key = SLICE_LIT("b"), .seq = 6, .type = IKEY_PUT}}, /* newer after older */
        {{.key = SLICE_LIT("ab"), .seq = 5, .type = IKEY_PUT},
         {.key = SLICE_LIT("a"), .seq = 5, .type = IKEY_PUT}},
    };
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(sst_builder_new(env_posix(), path, FNUM, NULL, &b, NULL), SHALE_OK);
        cr_assert_eq(sst_builder_add(b, &cases[i][0], NULL), SHALE_OK);
        cr_assert_eq(sst_builder_add(b, &cases[i][1], NULL), SHALE_INVALID, "case %zu", i);
        cr_assert_eq(sst_builder_finish(b, NULL, &err), SHALE_INVALID, "finish of a broken one");
        cr_assert_not(exists(path));
    }
    scratch_free(dir, path);
    tu_assert_no_leaks();
}

Test(sst, bad_entries_are_rejected)
{
    char *dir, *path = scratch_table(&dir);
    sst_builder *b;
    ikey_entry bad[] = {
        {.key = SLICE_LIT(""), .seq = 1, .type = IKEY_PUT},
        {.key = SLICE_LIT("a"), .seq = IKEY_MAX_SEQ + 1, .type = IKEY_PUT},
        {.key = SLICE_LIT("a"), .seq = 1, .type = 7},
        {.key = SLICE_LIT("a"), .value = SLICE_LIT("x"), .seq = 1, .type = IKEY_DEL},
        {.key = SLICE_LIT("a"), .seq = 1, .type = IKEY_DEL, .expire_at_ms = 5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(sst_builder_new(env_posix(), path, FNUM, NULL, &b, NULL), SHALE_OK);
        cr_assert_eq(sst_builder_add(b, &bad[i], NULL), SHALE_INVALID, "case %zu", i);
        sst_builder_abandon(b);
        cr_assert_not(exists(path));
    }
    /* The extremes that are allowed: seq IKEY_MAX_SEQ and seq 0, a 65536-byte key. */
    uint8_t *big = malloc(SST_MAX_KEY_BYTES + 1);
    memset(big, 'k', SST_MAX_KEY_BYTES + 1);
    cr_assert_eq(sst_builder_new(env_posix(), path, FNUM, NULL, &b, NULL), SHALE_OK);
    ikey_entry e = {.key = SLICE_LIT("a"), .seq = IKEY_MAX_SEQ, .type = IKEY_PUT};
    cr_assert_eq(sst_builder_add(b, &e, NULL), SHALE_OK);
    e.seq = 0;
    cr_assert_eq(sst_builder_add(b, &e, NULL), SHALE_OK);
    e.key = slice_make(big, SST_MAX_KEY_BYTES);
    e.seq = 3;
    cr_assert_eq(sst_builder_add(b, &e, NULL), SHALE_OK);
    ikey_entry too_big = {
        .key = slice_make(big, SST_MAX_KEY_BYTES + 1), .seq = 1, .type = IKEY_PUT};
    cr_assert_eq(sst_builder_add(b, &too_big, NULL), SHALE_INVALID);
    sst_builder_abandon(b);
    free(big);
    scratch_free(dir, path);
}

Test(sst, extreme_seqs_and_a_huge_key_round_trip)
{
    char *dir, *path = scratch_table(&dir);
    uint8_t *big = malloc(SST_MAX_KEY_BYTES);
    memset(big, 0xff, SST_MAX_KEY_BYTES);
    ikey_entry es[] = {
        {.key = SLICE_LIT("a"), .value = SLICE_LIT("new"), .seq = IKEY_MAX_SEQ, .type = IKEY_PUT},
        {.key = SLICE_LIT("a"),
         .value = SLICE_LIT("old"),
         .seq = 0,
         .type = IKEY_PUT,
         .expire_at_ms = UINT64_MAX},
        {.key = slice_make(big, SST_MAX_KEY_BYTES),
         .value = SLICE_LIT(""),
         .seq = 1,
         .type = IKEY_DEL},
    };
    sst_builder *b;
    cr_assert_eq(sst_builder_new(env_posix(), path, FNUM, NULL, &b, NULL), SHALE_OK);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(sst_builder_add(b, &es[i], NULL), SHALE_OK);
    }
    cr_assert_eq(sst_builder_finish(b, NULL, NULL), SHALE_OK);
    sst_reader *r;
    cr_assert_eq(sst_reader_open(env_posix(), path, FNUM, 0, NULL, &r, NULL), SHALE_OK);
    shale_buf scratch = {0};
    bool found;
    ikey_entry e;
    cr_assert_eq(
        sst_reader_get(r, SLICE_LIT("a"), IKEY_MAX_SEQ - 1, &found, &e, &scratch, NULL, NULL),
        SHALE_OK);
    cr_assert(found);
    cr_assert_eq(e.seq, 0);
    cr_assert_eq(e.expire_at_ms, UINT64_MAX);
    cr_assert(slice_eq(e.value, SLICE_LIT("old")));
    cr_assert_eq(sst_reader_get(r, SLICE_LIT("a"), UINT64_MAX, &found, &e, &scratch, NULL, NULL),
                 SHALE_OK);
    cr_assert(found);
    cr_assert_eq(e.seq, IKEY_MAX_SEQ);
    cr_assert_eq(
        sst_reader_get(r, slice_make(big, SST_MAX_KEY_BYTES), 5, &found, &e, &scratch, NULL, NULL),
        SHALE_OK);
    cr_assert(found);
    cr_assert_eq(e.type, IKEY_DEL);
    iter *it = sst_reader_iter(r, true);
    iter_seek_last(it);
    cr_assert(iter_valid(it));
    iter_entry(it, &e);
    cr_assert_eq(e.key.len, SST_MAX_KEY_BYTES);
    iter_destroy(it);
    cr_assert_eq(sst_verify(env_posix(), path, FNUM, NULL, NULL), SHALE_OK);
    sst_reader_close(r);
    buf_free(&scratch);
    free(big);
    scratch_free(dir, path);
}

Test(sst, empty_table_is_rejected_and_removed)
{
    char *dir, *path = scratch_table(&dir);
    sst_builder *b;
    shale_error err;
    cr_assert_eq(sst_builder_new(env_posix(), path, FNUM, NULL, &b, NULL), SHALE_OK);
    cr_assert(exists(path));
    cr_assert_eq(sst_builder_finish(b, NULL, &err), SHALE_INVALID);
    cr_assert(strstr(err.msg, "at least one entry") != NULL, "%s", err.msg);
    cr_assert_not(exists(path));
    scratch_free(dir, path);
}

Test(sst, abandon_removes_the_file)
{
    char *dir, *path = scratch_table(&dir);
    sst_builder *b;
    model m = seq_model(5000);
    sst_builder_options o = sst_builder_default_options();
    o.compression = COMPRESS_NONE;
    cr_assert_eq(sst_builder_new(env_posix(), path, FNUM, &o, &b, NULL), SHALE_OK);
    for (size_t i = 0; i < m.n; i++) {
        ikey_entry e = as_entry(&m.e[i]);
        cr_assert_eq(sst_builder_add(b, &e, NULL), SHALE_OK);
    }
    cr_assert_gt(tu_file_size(path), 0, "big enough to have written some");
    sst_builder_abandon(b);
    sst_builder_abandon(NULL);
    cr_assert_not(exists(path));
    model_free(&m);
    scratch_free(dir, path);
}

Test(sst, bad_options_and_existing_paths)
{
    char *dir, *path = scratch_table(&dir);
    sst_builder *b;
    shale_error err;
    sst_builder_options bad[] = {
        {.block_bytes = 100},
        {.block_bytes = (1u << 20) + 1},
        {.restart_interval = 1025},
        {.bloom_bits_per_key = 33},
        {.compression = 3},
        {.compression = -1},
        {.compression = COMPRESS_ZSTD, .compression_level = 1000},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(sst_builder_new(env_posix(), path, FNUM, &bad[i], &b, &err), SHALE_INVALID,
                     "case %zu", i);
        cr_assert_not(exists(path));
    }
    /* Zero fields are defaults. */
    sst_builder_options zero = {0};
    cr_assert_eq(sst_builder_new(env_posix(), path, FNUM, &zero, &b, NULL), SHALE_OK);
    /* The path now exists: a second builder must not take it over. */
    sst_builder *b2;
    cr_assert_eq(sst_builder_new(env_posix(), path, FNUM, NULL, &b2, &err), SHALE_INVALID);
    ikey_entry e = {.key = SLICE_LIT("k"), .value = SLICE_LIT("v"), .seq = 1, .type = IKEY_PUT};
    cr_assert_eq(sst_builder_add(b, &e, NULL), SHALE_OK);
    sst_props p;
    cr_assert_eq(sst_builder_finish(b, &p, NULL), SHALE_OK);
    cr_assert_eq(p.compression, COMPRESS_NONE, "a zeroed options struct means no compression");
    sst_props_free(&p);
    sst_builder_options d = sst_builder_default_options();
    cr_assert_eq(d.block_bytes, 4096);
    cr_assert_eq(d.restart_interval, 4);
    cr_assert_eq(d.bloom_bits_per_key, 10);
    cr_assert_eq(d.compression, COMPRESS_LZ4);
    scratch_free(dir, path);
}

/* Builds the 5000-entry table through a fault env that fails the nth op of `op`; the failure
 * must surface as SHALE_IO from add or finish, and no file may remain. */
static void fault_run(env_op op, uint64_t nth, bool short_write)
{
    char *dir, *path = scratch_table(&dir);
    env_fault *fe = env_fault_new(env_posix());
    const shale_env *env = env_fault_env(fe);
    model m = seq_model(5000); /* ~600 KiB: a few 256 KiB appends, then the tail */
    sst_builder *b;
    shale_error err;
    sst_builder_options o = sst_builder_default_options();
    o.compression = COMPRESS_NONE;

    cr_assert_eq(sst_builder_new(env, path, FNUM, &o, &b, NULL), SHALE_OK);
    env_fault_fail_nth(fe, op, nth, EIO, short_write);
    shale_code rc = SHALE_OK;
    size_t i;
    for (i = 0; i < m.n && rc == SHALE_OK; i++) {
        ikey_entry e = as_entry(&m.e[i]);
        rc = sst_builder_add(b, &e, &err);
    }
    if (rc != SHALE_OK) {
        cr_assert_eq(rc, SHALE_IO, "add %zu: %s", i, err.msg);
        /* Broken: finish fails with the same error and cleans up. */
        ikey_entry e = as_entry(&m.e[0]);
        cr_assert_eq(sst_builder_add(b, &e, NULL), SHALE_IO);
        cr_assert_eq(sst_builder_finish(b, NULL, &err), SHALE_IO);
    } else {
        cr_assert_eq(sst_builder_finish(b, NULL, &err), SHALE_IO, "op %d #%" PRIu64, op, nth);
    }
    cr_assert_eq(err.sys_errno, EIO, "%s", err.msg);
    cr_assert_not(exists(path), "op %d #%" PRIu64 ": the partial file remains", op, nth);
    env_fault_free(fe);
    model_free(&m);
    scratch_free(dir, path);
}

Test(sst, write_failures_leave_no_file)
{
    fault_run(ENV_OP_WRITE, 1, false); /* during the adds */
    fault_run(ENV_OP_WRITE, 2, true);
    fault_run(ENV_OP_WRITE, 3, false); /* the tail's append, in finish */
    fault_run(ENV_OP_SYNC, 1, false);
    tu_assert_no_leaks();
}

Test(sst, write_failure_at_finish_of_a_small_table)
{
    char *dir, *path = scratch_table(&dir);
    env_fault *fe = env_fault_new(env_posix());
    sst_builder *b;
    shale_error err;
    ikey_entry e = {.key = SLICE_LIT("k"), .value = SLICE_LIT("v"), .seq = 1, .type = IKEY_PUT};
    cr_assert_eq(sst_builder_new(env_fault_env(fe), path, FNUM, NULL, &b, NULL), SHALE_OK);
    cr_assert_eq(sst_builder_add(b, &e, NULL), SHALE_OK);
    cr_assert_eq(env_fault_count(fe, ENV_OP_WRITE), 0, "small tables write once, at finish");
    env_fault_fail_nth(fe, ENV_OP_WRITE, 1, ENOSPC, false);
    cr_assert_eq(sst_builder_finish(b, NULL, &err), SHALE_IO);
    cr_assert_eq(err.sys_errno, ENOSPC);
    cr_assert_not(exists(path));
    env_fault_free(fe);
    scratch_free(dir, path);
    tu_assert_no_leaks();
}

/* ---- data block hash index ---------------------------------------------------------------- */

static uint32_t footer_version(const char *path)
{
    size_t n;
    uint8_t *d = slurp(path, &n);
    cr_assert_geq(n, SST_FOOTER_SIZE);
    uint32_t v = coding_get_fixed32(d + n - SST_FOOTER_SIZE + SST_FOOTER_VERSION);
    free(d);
    return v;
}

/* Data blocks of an uncompressed table that carry a hash index (and, in *blocks, how many data
 * blocks there are). */
static uint64_t hashed_blocks(const char *path, const sst_props *p, uint64_t *blocks)
{
    size_t n;
    uint8_t *d = slurp(path, &n);
    uint64_t off = 0, hashed = 0;
    *blocks = 0;
    while (off < p->data_bytes) {
        sst_handle h = block_at(d, off, p->data_bytes);
        cr_assert_eq(d[h.offset + h.size], COMPRESS_NONE);
        block b;
        cr_assert_null(block_parse(d + h.offset, h.size, &b));
        hashed += b.num_buckets > 0;
        (*blocks)++;
        off = h.offset + h.size + SST_TRAILER_SIZE;
    }
    free(d);
    return hashed;
}

/* keys user keys; one in five has up to 40 versions, and the first has 60 versions of 30-byte
 * values, so it spans data blocks of up to 1 KiB. */
static model versions_model(tu_rng *rng, size_t keys)
{
    model m = {0};
    size_t cap = keys * 40 + 60;
    m.e = calloc(cap, sizeof *m.e);
    cr_assert_not_null(m.e);
    for (size_t i = 0; i < keys; i++) {
        uint8_t k[64];
        size_t kl = rand_key(rng, k);
        size_t versions = i == 0 ? 60
                                 : (tu_rng_below(rng, 5) == 0 ? 1 + tu_rng_below(rng, 40)
                                                              : 1 + tu_rng_below(rng, 2));
        uint64_t seq = 10000 + tu_rng_below(rng, 90000);
        for (size_t v = 0; v < versions && m.n < cap; v++) {
            ment *e = &m.e[m.n++];
            e->key = malloc(kl);
            cr_assert_not_null(e->key);
            memcpy(e->key, k, kl);
            e->klen = kl;
            e->seq = seq;
            seq -= 1 + tu_rng_below(rng, 100);
            uint64_t r = tu_rng_below(rng, 100);
            e->type = r < 15 ? IKEY_DEL : IKEY_PUT;
            e->expire = (r >= 15 && r < 25) ? 1 + tu_rng_below(rng, 1ull << 50) : 0;
            e->vlen = e->type == IKEY_DEL ? 0 : (i == 0 ? 30 : tu_rng_below(rng, 60));
            e->val = rand_bytes(rng, e->vlen, tu_rng_below(rng, 2));
        }
    }
    model_sort_unique(&m);
    return m;
}

/* One get on both readers: the same answer, and the model's. */
static void get_both(sst_reader *r[2], const model *m, shale_slice key, uint64_t snap,
                     shale_buf scratch[2], size_t *hits)
{
    size_t pos = lower_bound(m, key, snap);
    bool want = pos < m->n && slice_eq(slice_make(m->e[pos].key, m->e[pos].klen), key);
    for (int t = 0; t < 2; t++) {
        bool found;
        ikey_entry e;
        shale_error err;
        cr_assert_eq(sst_reader_get(r[t], key, snap, &found, &e, &scratch[t], NULL, &err), SHALE_OK,
                     "%s", err.msg);
        cr_assert_eq(found, want, "%s: found %d, want %d (snapshot %" PRIu64 ")",
                     t ? "no hash" : "hash", found, want, snap);
        if (found) {
            assert_same(&e, &m->e[pos], t ? "get without hash" : "get with hash");
        }
    }
    *hits += want;
}

Test(sst, gets_agree_with_and_without_the_hash_index)
{
    static const struct {
        uint32_t interval, block_bytes;
        int compression;
    } cfg[] = {
        {1, 512, COMPRESS_NONE},   {2, 1024, COMPRESS_LZ4},  {8, 4096, COMPRESS_NONE},
        {16, 4096, COMPRESS_ZSTD}, {16, 512, COMPRESS_NONE}, {1, 16384, COMPRESS_NONE},
    };
    tu_rng rng;
    tu_rng_seed(&rng, 2024);
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        model m = versions_model(&rng, 400);
        char *dir[2];
        char *path[2];
        sst_props props[2];
        sst_reader *r[2];
        shale_buf scratch[2] = {{0}, {0}};
        cache *cc = cache_new(4u << 20, 1);
        for (int t = 0; t < 2; t++) {
            sst_builder_options o = sst_builder_default_options();
            o.restart_interval = cfg[c].interval;
            o.block_bytes = cfg[c].block_bytes;
            o.compression = cfg[c].compression;
            o.bloom_bits_per_key = 2; /* absent keys often get past the filter */
            o.no_data_block_hash = t == 1;
            dir[t] = tu_tmpdir("sst");
            path[t] = build_table(dir[t], &m, &o, &props[t]);
            cr_assert_eq(footer_version(path[t]), t ? 1u : 2u);
            cr_assert_eq(sst_verify(env_posix(), path[t], FNUM, NULL, NULL), SHALE_OK);
            cr_assert_eq(sst_reader_open(env_posix(), path[t], FNUM, 0, t ? NULL : cc, &r[t], NULL),
                         SHALE_OK);
        }
        cr_assert_eq(props[0].entries, props[1].entries);
        cr_assert_gt(props[0].data_blocks, 2);
        if (cfg[c].compression == COMPRESS_NONE) {
            uint64_t blocks, hashed = hashed_blocks(path[0], &props[0], &blocks);
            /* 16 KiB blocks of ~50-byte entries have over 253 restart points at interval 1;
             * only the table's last block may be short enough for an index. */
            if (cfg[c].block_bytes > 8192) {
                cr_assert_leq(hashed, 1, "config %zu: %" PRIu64 " of %" PRIu64, c, hashed, blocks);
            } else {
                cr_assert_eq(hashed, blocks, "config %zu", c);
            }
            cr_assert_eq(hashed_blocks(path[1], &props[1], &blocks), 0);
        }
        size_t hits = 0;
        /* Every version of every key, the snapshots between versions, and the extremes. */
        for (size_t i = 0; i < m.n; i++) {
            shale_slice key = slice_make(m.e[i].key, m.e[i].klen);
            uint64_t snaps[] = {m.e[i].seq, m.e[i].seq - 1, m.e[i].seq + 1, IKEY_MAX_SEQ, 0};
            for (size_t s = 0; s < sizeof snaps / sizeof snaps[0]; s++) {
                get_both(r, &m, key, snaps[s], scratch, &hits);
            }
        }
        for (int a = 0; a < 2000; a++) {
            uint8_t kb[64];
            shale_slice key = slice_make(kb, rand_key(&rng, kb));
            get_both(r, &m, key, tu_rng_below(&rng, 2) ? IKEY_MAX_SEQ : tu_rng_below(&rng, 100000),
                     scratch, &hits);
        }
        cr_assert_gt(hits, 3 * m.n);
        for (int t = 0; t < 2; t++) {
            sst_reader_close(r[t]);
            buf_free(&scratch[t]);
            sst_props_free(&props[t]);
            free(path[t]);
            tu_rm_rf(dir[t]);
            free(dir[t]);
        }
        cache_free(cc);
        model_free(&m);
    }
    tu_assert_no_leaks();
}

/* Rewrites the footer's version (and its checksum). */
static void set_footer_version(const char *path, uint32_t version)
{
    size_t n;
    uint8_t *d = slurp(path, &n);
    uint8_t *f = d + n - SST_FOOTER_SIZE;
    coding_put_fixed32(f + SST_FOOTER_VERSION, version);
    coding_put_fixed32(f + SST_FOOTER_CRC, crc32c_mask(crc32c_value(f, SST_FOOTER_CRC)));
    spill(path, d, n);
    free(d);
}

Test(sst, format_versions)
{
    char *dir = tu_tmpdir("sst");
    model m = seq_model(3000);
    sst_builder_options o = sst_builder_default_options();
    o.compression = COMPRESS_NONE;
    o.no_data_block_hash = true;
    sst_props p;
    char *path = build_table(dir, &m, &o, &p);
    uint64_t blocks;

    /* Without the hash index: version 1, which this build still reads. */
    cr_assert_eq(footer_version(path), 1);
    cr_assert_eq(hashed_blocks(path, &p, &blocks), 0);
    sst_reader *r;
    tu_rng rng;
    tu_rng_seed(&rng, 1);
    cr_assert_eq(sst_reader_open(env_posix(), path, FNUM, 0, NULL, &r, NULL), SHALE_OK);
    check_gets(r, &m, &rng, 500);
    iter *it = sst_reader_iter(r, false);
    check_forward(it, &m);
    iter_destroy(it);
    sst_reader_close(r);
    cr_assert_eq(sst_verify(env_posix(), path, FNUM, NULL, NULL), SHALE_OK);
    sst_props_free(&p);
    cr_assert_eq(remove(path), 0);
    free(path);

    /* With it (the default): version 2, every data block indexed. */
    path = build_table(dir, &m, &(sst_builder_options){0}, &p);
    cr_assert_eq(footer_version(path), 2);
    cr_assert_eq(hashed_blocks(path, &p, &blocks), blocks);
    cr_assert_gt(blocks, 10);

    /* Versions this build does not know are refused at open. */
    shale_error err;
    uint32_t bad[] = {0, 3, 0xffffffffu};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_footer_version(path, bad[i]);
        assert_err(sst_reader_open(env_posix(), path, FNUM, 0, NULL, &r, &err), &err,
                   "not supported (this build reads 1 .. 2)");
    }
    /* A version 1 table cannot hold a hash index: the block that has one is damage. */
    set_footer_version(path, 1);
    cr_assert_eq(sst_reader_open(env_posix(), path, FNUM, 0, NULL, &r, &err), SHALE_OK);
    bool found;
    ikey_entry e;
    shale_buf scratch = {0};
    char k[17];
    assert_err(sst_reader_get(r, tu_key(k, 5), IKEY_MAX_SEQ, &found, &e, &scratch, NULL, &err),
               &err, "hash index in a format version 1 table");
    sst_reader_close(r);
    assert_err(sst_verify(env_posix(), path, FNUM, NULL, &err), &err, "data block @0+");
    set_footer_version(path, 2);
    cr_assert_eq(sst_verify(env_posix(), path, FNUM, NULL, NULL), SHALE_OK);

    buf_free(&scratch);
    sst_props_free(&p);
    model_free(&m);
    free(path);
    tu_rm_rf(dir);
    free(dir);
    tu_assert_no_leaks();
}

/* Where the first data block's hash index lies in an uncompressed image, and one key of the
 * block whose bucket names exactly its run, with a later run after it. */
typedef struct bucket_pick {
    sst_handle h;
    uint64_t buckets_at; /* file offset of the bucket array */
    uint32_t num_buckets, num_restarts;
    size_t key;      /* model index of the key */
    uint64_t bucket; /* file offset of its bucket */
    uint32_t run;    /* its restart run (>= 1) */
} bucket_pick;

static bucket_pick pick_bucket(const image *im)
{
    bucket_pick bp;
    memset(&bp, 0, sizeof bp);
    bp.h = block_at(im->orig, 0, im->f.props.data_bytes);
    cr_assert_eq(im->orig[bp.h.size], COMPRESS_NONE);
    block b;
    cr_assert_null(block_parse(im->orig, bp.h.size, &b));
    cr_assert_gt(b.num_buckets, 0);
    bp.buckets_at = (uint64_t)(b.buckets - im->orig);
    bp.num_buckets = b.num_buckets;
    bp.num_restarts = b.num_restarts;
    block_iter bi;
    block_iter_init(&bi, true);
    block_iter_set(&bi, &b);
    size_t i = 0;
    bool picked = false;
    for (block_iter_seek_first(&bi); block_iter_valid(&bi) && !picked; block_iter_next(&bi), i++) {
        uint32_t slot =
            (uint32_t)(bloom_hash(bi.key, block_iter_ukey_len(&bi)) >> 32) % b.num_buckets;
        if (bi.restart_index >= 1 && bi.restart_index + 1 < b.num_restarts &&
            b.buckets[slot] == bi.restart_index) {
            bp.key = i; /* seq_model: one entry per key, in order from 0 */
            bp.bucket = bp.buckets_at + slot;
            bp.run = bi.restart_index;
            picked = true;
        }
    }
    cr_assert(picked);
    block_iter_destroy(&bi);
    return bp;
}

static bool get_key(const image *im, size_t i, shale_code *rc, shale_error *err)
{
    sst_reader *r;
    shale_buf scratch = {0};
    bool found = false;
    ikey_entry e;
    cr_assert_eq(sst_reader_open(env_posix(), im->f.path, FNUM, 0, NULL, &r, NULL), SHALE_OK);
    *rc = sst_reader_get(r, slice_make(im->f.m.e[i].key, im->f.m.e[i].klen), IKEY_MAX_SEQ, &found,
                         &e, &scratch, NULL, err);
    if (*rc == SHALE_OK && found) {
        assert_same(&e, &im->f.m.e[i], "get");
    }
    sst_reader_close(r);
    buf_free(&scratch);
    return found;
}

/* A bucket that parses but leads a get past its key: only sst_verify can see it. */
Test(sst, verify_catches_a_hash_index_that_misses_a_key)
{
    image im;
    image_init(&im, 800, COMPRESS_NONE);
    bucket_pick bp = pick_bucket(&im);
    shale_error err;
    shale_code rc;
    cr_assert(get_key(&im, bp.key, &rc, &err));

    uint8_t wrong[] = {SST_BLOCK_HASH_EMPTY, (uint8_t)(bp.run + 1), (uint8_t)(bp.num_restarts - 1)};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        memcpy(im.d, im.orig, im.n);
        im.d[bp.bucket] = wrong[i];
        image_store(&im, &bp.h);
        assert_err(sst_verify(env_posix(), im.f.path, FNUM, NULL, &err), &err, "data block @0+");
        assert_err(SHALE_CORRUPTION, &err, "hash index misses the key @");
        /* What a get makes of it: the key is missed, without an error (hence verify). */
        cr_assert_not(get_key(&im, bp.key, &rc, &err));
        cr_assert_eq(rc, SHALE_OK);
    }
    /* A bucket that names an earlier run (0) is still correct: the scan is only longer. */
    memcpy(im.d, im.orig, im.n);
    im.d[bp.bucket] = 0;
    image_store(&im, &bp.h);
    cr_assert_eq(sst_verify(env_posix(), im.f.path, FNUM, NULL, &err), SHALE_OK, "%s", err.msg);
    cr_assert(get_key(&im, bp.key, &rc, &err));
    image_destroy(&im);
    tu_assert_no_leaks();
}

/* Hash index damage that block_parse sees: every read path reports the block, nothing crashes. */
Test(sst, hash_index_damage_behind_a_valid_checksum)
{
    image im;
    image_init(&im, 800, COMPRESS_NONE);
    bucket_pick bp = pick_bucket(&im);
    uint64_t count_at = bp.h.size - 6; /* B fixed16, then the footer fixed32 */
    for (int what = 0; what < 4; what++) {
        memcpy(im.d, im.orig, im.n);
        switch (what) {
        case 0:
            im.d[bp.bucket] = (uint8_t)bp.num_restarts;
            break;
        case 1:
            coding_put_fixed16(im.d + count_at, 0);
            break;
        case 2:
            coding_put_fixed16(im.d + count_at, 0xffff);
            break;
        default:
            coding_put_fixed32(im.d + bp.h.size - 4, 300u | SST_BLOCK_HASH_FLAG);
            break;
        }
        image_store(&im, &bp.h);
        expect_damage_on_read(&im.f, "data block @0+", true, true);
        expect_damage_on_read(&im.f, "bad hash index", true, true);
    }
    image_destroy(&im);
    tu_assert_no_leaks();
}

/* ---- the index search accelerator ---------------------------------------------------------- */

/* Keys of one of three shapes, sorted with versions: 16-digit zero-padded decimals (the
 * benchmark's keys: index keys then share 10 zeros and the last is a short successor), a long
 * shared prefix with a number and an optional suffix (many index keys tie on the 8 bytes after
 * the prefix), and rand_key's families. */
static model gen_shaped_model(tu_rng *rng, size_t keys, int shape)
{
    model m = {0};
    m.e = calloc(keys * 3, sizeof *m.e);
    cr_assert_not_null(m.e);
    for (size_t i = 0; i < keys; i++) {
        uint8_t k[80];
        size_t kl;
        if (shape == 0) {
            kl = (size_t)snprintf((char *)k, sizeof k, "%016" PRIu64, tu_rng_below(rng, 1000000));
        } else if (shape == 1) {
            /* One draw per statement: argument evaluation order differs between compilers. */
            uint64_t user = tu_rng_below(rng, 300);
            const char *tail = tu_rng_below(rng, 2) ? "profile" : "settings/theme";
            kl = (size_t)snprintf((char *)k, sizeof k, "tenant-0042/users/%04" PRIu64 "/%s", user,
                                  tail);
            if (tu_rng_below(rng, 3) == 0) {
                k[kl++] = 0;
                k[kl++] = (uint8_t)tu_rng_next(rng);
            }
        } else {
            kl = rand_key(rng, k);
        }
        size_t versions = 1 + (tu_rng_below(rng, 6) == 0 ? tu_rng_below(rng, 3) : 0);
        for (size_t v = 0; v < versions; v++) {
            ment *e = &m.e[m.n++];
            e->key = malloc(kl);
            cr_assert_not_null(e->key);
            memcpy(e->key, k, kl);
            e->klen = kl;
            e->seq = 1 + tu_rng_below(rng, 100000);
            e->type = tu_rng_below(rng, 8) == 0 ? IKEY_DEL : IKEY_PUT;
            e->expire = 0;
            e->vlen = e->type == IKEY_DEL ? 0 : 1 + tu_rng_below(rng, 60);
            e->val = rand_bytes(rng, e->vlen, true);
        }
    }
    model_sort_unique(&m);
    return m;
}

/* Gets and iterator seeks at and around present keys (last byte moved by one, cut short,
 * extended by 0x00 or 0xff) at snapshots around their seqs, against the model. */
static void check_near_keys(sst_reader *r, const model *m, tu_rng *rng, int count)
{
    shale_buf scratch = {0};
    iter *it = sst_reader_iter(r, true);
    cr_assert_not_null(it);
    for (int g = 0; g < count; g++) {
        const ment *x = &m->e[tu_rng_below(rng, m->n)];
        uint8_t kb[96];
        size_t kl = x->klen;
        memcpy(kb, x->key, kl);
        switch (tu_rng_below(rng, 6)) {
        case 0:
            kb[kl - 1]++;
            break;
        case 1:
            kb[kl - 1]--;
            break;
        case 2:
            kl--;
            break;
        case 3:
            kb[kl++] = tu_rng_below(rng, 2) ? 0x00 : 0xff;
            break;
        default:
            break;
        }
        shale_slice key = slice_make(kb, kl);
        uint64_t r4 = tu_rng_below(rng, 4);
        uint64_t snap = r4 == 0   ? IKEY_MAX_SEQ
                        : r4 == 1 ? x->seq
                        : r4 == 2 ? x->seq - 1
                                  : tu_rng_below(rng, 100001);
        size_t pos = lower_bound(m, key, snap);
        bool want = pos < m->n && slice_eq(slice_make(m->e[pos].key, m->e[pos].klen), key);
        bool found;
        ikey_entry e;
        shale_error err;
        cr_assert_eq(sst_reader_get(r, key, snap, &found, &e, &scratch, NULL, &err), SHALE_OK, "%s",
                     err.msg);
        cr_assert_eq(found, want, "get %d: found %d, want %d", g, found, want);
        if (found) {
            assert_same(&e, &m->e[pos], "get near");
        }
        iter_seek(it, key, snap);
        cr_assert_eq(iter_status(it, NULL), SHALE_OK);
        cr_assert_eq(iter_valid(it), pos < m->n, "seek %d", g);
        if (pos < m->n) {
            iter_entry(it, &e);
            assert_same(&e, &m->e[pos], "seek near");
        }
    }
    iter_destroy(it);
    buf_free(&scratch);
}

/* Many tables with small data blocks, so each index block has hundreds to thousands of entries
 * and the accelerator (block_pindex) does the index search of every get and seek: every answer
 * agrees with the model, and the accelerator is charged to the cache with its index block. */
Test(sst, gets_and_seeks_through_big_index_blocks)
{
    tu_rng rng;
    tu_rng_seed(&rng, 2718);
    char *dir = tu_tmpdir("sst");
    for (int t = 0; t < 9; t++) {
        sst_builder_options o = sst_builder_default_options();
        o.block_bytes = 256;
        o.restart_interval = (uint32_t)(1 + tu_rng_below(&rng, 16));
        o.compression = t % 3 == 0 ? COMPRESS_NONE : (t % 3 == 1 ? COMPRESS_LZ4 : COMPRESS_ZSTD);
        model m = gen_shaped_model(&rng, 1000 + tu_rng_below(&rng, 3000), t % 3);
        /* No props: the builder's size estimate is not that close with 256-byte compressed
         * blocks (build_table checks it); the reader's copy is read below. */
        char *path = build_table(dir, &m, &o, NULL);
        /* A cache that holds the index and filter, one too small to hold them, and none. */
        size_t cap = t / 3 == 0 ? 64u << 20 : 20000;
        cache *c = t / 3 == 2 ? NULL : cache_new(cap, 0);
        sst_reader *r;
        shale_error err;
        cr_assert_eq(sst_reader_open(env_posix(), path, FNUM, 0, c, &r, &err), SHALE_OK, "%s",
                     err.msg);
        const sst_props *props = sst_reader_props(r);
        cr_assert_gt(props->data_blocks, 150, "table %d: %" PRIu64 " blocks", t,
                     props->data_blocks);
        check_near_keys(r, &m, &rng, 1500);
        check_gets(r, &m, &rng, 300);
        if (t / 3 == 0) {
            /* Held: the index (raw size = stored size, uncompressed) plus 8 bytes per entry. */
            cache_stats cs;
            cache_get_stats(c, &cs);
            uint64_t raw = props->index_bytes - SST_TRAILER_SIZE;
            cr_assert_geq(cs.pinned_bytes,
                          (t == 0 ? raw : 0) + 8 * props->data_blocks + props->filter_bytes,
                          "table %d: %" PRIu64 " bytes held", t, cs.pinned_bytes);
        }
        iter *it = sst_reader_iter(r, false);
        cr_assert_not_null(it);
        check_forward(it, &m);
        check_seeks(it, &m, &rng, 300);
        iter_destroy(it);
        sst_reader_close(r);
        cache_free(c);
        model_free(&m);
        cr_assert_eq(remove(path), 0);
        free(path);
    }
    tu_rm_rf(dir);
    free(dir);
    tu_assert_no_leaks();
}
