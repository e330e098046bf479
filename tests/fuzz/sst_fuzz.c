/*
 * libFuzzer target for the sorted table reader (src/sst/sst_reader.c, format in sst_format.h).
 * Built and replayed like every target in tests/fuzz (README.md there).
 *
 * Everything below runs on the input and, when it differs, on a copy whose footer and block
 * checksums are made right (fuzz_util.h fz_sst_fix_crcs), so mutations of block contents reach
 * the decoders behind the checksums (properties, index and its accelerator, filter, data
 * blocks, hash indexes, decompression) instead of stopping at a bad CRC.
 *
 * The input is a table file, 000009.sst, served by the in-memory env (fuzz_util.h). The target
 * runs sst_verify, then opens the table twice, without a block cache and with a small one (its
 * size picked by a hash of the input, so the index and filter are pinned in it or not), and
 * with each reader iterates forward (fill_cache on) and backward (fill_cache off), seeks, and
 * makes point gets and filter checks for keys taken from the table and from the input. Damaged
 * input must give SHALE_CORRUPTION (open, get, iterator status), never a crash; it traps unless:
 *   - opening with the wrong file number or size fails with SHALE_CORRUPTION;
 *   - both readers see exactly the same entries, errors and get results (a cache changes where a
 *     block comes from, never what it says);
 *   - every iterator status and get result is SHALE_OK or SHALE_CORRUPTION;
 *   - when sst_verify accepts the table: the forward scan ends cleanly with strictly increasing
 *     internal keys, as many entries as the properties say, bounded by the properties' smallest
 *     and largest keys; the backward scan is its mirror; a seek lands on the first entry >= the
 *     target; a get finds exactly the newest version at or below its snapshot (value, type, seq,
 *     expiry), or nothing when there is none; and the filter never denies a key of the table.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/cache.h"
#include "base/iter.h"
#include "fuzz_util.h"
#include "sst/sst_format.h"
#include "sst/sst_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIR         "/fuzz"
#define SST_NUMBER  9u
#define SST_PATH    DIR "/000009.sst"
#define MAX_ENTRIES 20000 /* a 64 KiB table holds fewer */
#define MAX_PROBES  48

/* One entry as the iterator gave it, copied. */
typedef struct ent {
    uint8_t *key; /* user key then value */
    size_t klen, vlen;
    uint64_t seq, expire;
    uint8_t type;
} ent;

typedef struct scan {
    ent *e;
    size_t n;
    shale_code status;
} scan;

static void scan_free(scan *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].key);
    }
    free(s->e);
    memset(s, 0, sizeof *s);
}

static void ent_set(ent *e, const ikey_entry *k)
{
    e->key = malloc(k->key.len + k->value.len + 1);
    FZ_CHECK(e->key != NULL);
    memcpy(e->key, k->key.data, k->key.len);
    if (k->value.len > 0) {
        memcpy(e->key + k->key.len, k->value.data, k->value.len);
    }
    e->klen = k->key.len;
    e->vlen = k->value.len;
    e->seq = k->seq;
    e->expire = k->expire_at_ms;
    e->type = k->type;
}

static bool ent_eq(const ent *a, const ent *b)
{
    return a->klen == b->klen && a->vlen == b->vlen && a->seq == b->seq && a->expire == b->expire &&
           a->type == b->type && memcmp(a->key, b->key, a->klen + a->vlen) == 0;
}

static bool ent_eq_ikey(const ent *a, const ikey_entry *k)
{
    return a->klen == k->key.len && a->vlen == k->value.len && a->seq == k->seq &&
           a->expire == k->expire_at_ms && a->type == k->type &&
           memcmp(a->key, k->key.data, a->klen) == 0 &&
           (a->vlen == 0 || memcmp(a->key + a->klen, k->value.data, a->vlen) == 0);
}

static int ent_cmp(const ent *a, shale_slice key, uint64_t seq)
{
    return ikey_cmp(slice_make(a->key, a->klen), a->seq, key, seq);
}

static void scan_add(scan *s, const ikey_entry *k)
{
    if (s->n % 64 == 0) {
        ent *g = realloc(s->e, (s->n + 64) * sizeof *g);
        FZ_CHECK(g != NULL);
        s->e = g;
    }
    ent_set(&s->e[s->n++], k);
}

static void check_status(iter *it)
{
    shale_error err = {0};
    shale_code rc = iter_status(it, &err);
    FZ_CHECK(rc == SHALE_OK || rc == SHALE_CORRUPTION);
    FZ_CHECK(rc == SHALE_OK || strstr(err.msg, "000009.sst") != NULL);
}

static void scan_forward(sst_reader *r, scan *out)
{
    iter *it = sst_reader_iter(r, true);
    FZ_CHECK(it != NULL);
    FZ_CHECK(!iter_valid(it));
    for (iter_seek_first(it); iter_valid(it) && out->n < MAX_ENTRIES; iter_next(it)) {
        ikey_entry k;
        iter_entry(it, &k);
        FZ_CHECK(k.type == IKEY_DEL || k.type == IKEY_PUT);
        FZ_CHECK(k.seq <= IKEY_MAX_SEQ);
        scan_add(out, &k);
    }
    check_status(it);
    out->status = iter_status(it, NULL);
    iter_destroy(it);
}

static void scan_backward(sst_reader *r, scan *out)
{
    iter *it = sst_reader_iter(r, false);
    FZ_CHECK(it != NULL);
    for (iter_seek_last(it); iter_valid(it) && out->n < MAX_ENTRIES; iter_prev(it)) {
        ikey_entry k;
        iter_entry(it, &k);
        scan_add(out, &k);
    }
    check_status(it);
    out->status = iter_status(it, NULL);
    iter_destroy(it);
}

static bool same_scan(const scan *a, const scan *b)
{
    if (a->n != b->n || a->status != b->status) {
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (!ent_eq(&a->e[i], &b->e[i])) {
            return false;
        }
    }
    return true;
}

/* A probe: a user key and a snapshot. */
typedef struct probe {
    const uint8_t *key;
    size_t len;
    uint64_t seq;
} probe;

/* Results of the probes on one reader, for comparing the two. */
typedef struct results {
    shale_buf b;
} results;

static void note(results *res, const void *p, size_t n)
{
    FZ_CHECK(buf_append(&res->b, p, n, NULL) == SHALE_OK);
}

static void run_probes(sst_reader *r, const probe *pr, size_t np, const scan *fwd, bool verified,
                       results *res)
{
    shale_buf scratch = {0};
    iter *it = sst_reader_iter(r, true);
    FZ_CHECK(it != NULL);
    for (size_t i = 0; i < np; i++) {
        shale_slice key = slice_make(pr[i].key, pr[i].len);
        uint64_t snap = pr[i].seq;
        bool found = false;
        ikey_entry out;
        shale_error err = {0};
        shale_code rc = i % 2 ? sst_reader_get(r, key, snap, &found, &out, &scratch, NULL, &err)
                              : sst_reader_get_hashed(r, key, sst_reader_key_hash(key), snap,
                                                      &found, &out, &scratch, NULL, &err);
        FZ_CHECK(rc == SHALE_OK || rc == SHALE_CORRUPTION);
        FZ_CHECK(rc == SHALE_OK || !found);
        note(res, &rc, sizeof rc);
        note(res, &found, sizeof found);
        if (found) {
            FZ_CHECK(slice_eq(out.key, key) && out.seq <= snap);
            note(res, &out.seq, sizeof out.seq);
            note(res, &out.type, sizeof out.type);
            note(res, &out.expire_at_ms, sizeof out.expire_at_ms);
            note(res, out.value.data, out.value.len);
        }
        bool may = sst_reader_may_contain(r, key);
        note(res, &may, sizeof may);

        iter_seek(it, key, snap);
        check_status(it);
        bool valid = iter_valid(it);
        note(res, &valid, sizeof valid);
        if (valid) {
            ikey_entry k;
            iter_entry(it, &k);
            note(res, k.key.data, k.key.len);
            note(res, &k.seq, sizeof k.seq);
            if (i % 3 == 0) { /* and a step each way from there */
                iter_next(it);
                check_status(it);
                iter_seek(it, key, snap);
                if (iter_valid(it)) {
                    iter_prev(it);
                    check_status(it);
                }
            }
        }

        if (!verified) {
            continue;
        }
        /* The model: the forward scan of a verified table. */
        FZ_CHECK(rc == SHALE_OK);
        size_t lo = 0, hi = fwd->n; /* first entry >= (key, snap) */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (ent_cmp(&fwd->e[mid], key, snap) < 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        bool want = lo < fwd->n && fwd->e[lo].klen == key.len &&
                    memcmp(fwd->e[lo].key, key.data, key.len) == 0;
        FZ_CHECK(found == want);
        if (want) {
            FZ_CHECK(ent_eq_ikey(&fwd->e[lo], &out));
            FZ_CHECK(may);
        }
        FZ_CHECK(valid == (lo < fwd->n));
        if (valid) {
            iter_seek(it, key, snap);
            ikey_entry k;
            iter_entry(it, &k);
            FZ_CHECK(ent_eq_ikey(&fwd->e[lo], &k));
        }
    }
    iter_destroy(it);
    buf_free(&scratch);
}

/* Keys to probe: every user key of the table (up to MAX_PROBES) at several snapshots, and slices
 * of the input. */
static size_t make_probes(const uint8_t *data, size_t size, const scan *fwd, probe *pr, size_t cap)
{
    size_t n = 0;
    uint64_t seed = fz_hash(data, size);
    size_t step = fwd->n / (cap / 8) + 1;
    for (size_t i = 0; i < fwd->n && n + 4 <= cap * 3 / 4; i += step) {
        const ent *e = &fwd->e[i];
        pr[n++] = (probe){e->key, e->klen, IKEY_MAX_SEQ};
        pr[n++] = (probe){e->key, e->klen, e->seq};
        pr[n++] = (probe){e->key, e->klen, e->seq > 0 ? e->seq - 1 : 0};
        if (e->klen > 0) {
            pr[n++] = (probe){e->key, e->klen - 1, fz_rnd(&seed) % (e->seq + 2)};
        }
    }
    while (n < cap && size > 0) {
        size_t off = (size_t)(fz_rnd(&seed) % size);
        size_t len = (size_t)(fz_rnd(&seed) % 24);
        if (len > size - off) {
            len = size - off;
        }
        pr[n++] = (probe){data + off, len, fz_rnd(&seed) % 4 ? IKEY_MAX_SEQ : fz_rnd(&seed)};
    }
    return n;
}

static void run_table(const uint8_t *data, size_t size)
{
    fz_env e;
    fz_env_init(&e, DIR);
    fz_env_add(&e, SST_PATH, data, size);
    shale_error err = {0};

    uint64_t blocks = 0;
    shale_code vrc = sst_verify(&e.env, SST_PATH, SST_NUMBER, &blocks, &err);
    FZ_CHECK(vrc == SHALE_OK || vrc == SHALE_CORRUPTION);
    FZ_CHECK(vrc == SHALE_OK || strstr(err.msg, "000009.sst") != NULL);
    bool verified = vrc == SHALE_OK;

    sst_reader *r = NULL;
    shale_code orc = sst_reader_open(&e.env, SST_PATH, SST_NUMBER, 0, NULL, &r, &err);
    FZ_CHECK(orc == SHALE_OK || orc == SHALE_CORRUPTION);
    FZ_CHECK(!verified || orc == SHALE_OK);
    if (orc != SHALE_OK) {
        FZ_CHECK(r == NULL && strstr(err.msg, "000009.sst") != NULL);
        return;
    }
    FZ_CHECK(sst_reader_file_number(r) == SST_NUMBER);
    /* The wrong number or size is refused. */
    sst_reader *bad = NULL;
    FZ_CHECK(sst_reader_open(&e.env, SST_PATH, SST_NUMBER + 1, 0, NULL, &bad, &err) ==
             SHALE_CORRUPTION);
    FZ_CHECK(sst_reader_open(&e.env, SST_PATH, SST_NUMBER, size + 1, NULL, &bad, &err) ==
             SHALE_CORRUPTION);
    FZ_CHECK(bad == NULL);

    uint64_t seed = fz_hash(data, size);
    cache *c = cache_new(fz_rnd(&seed) % 2 ? 4096 : 256 * 1024, (int)(fz_rnd(&seed) % 2));
    FZ_CHECK(c != NULL);
    sst_reader *rc_ = NULL;
    FZ_CHECK(sst_reader_open(&e.env, SST_PATH, SST_NUMBER, size, c, &rc_, &err) == SHALE_OK);

    scan f1 = {0}, f2 = {0}, b1 = {0};
    scan_forward(r, &f1);
    scan_forward(rc_, &f2);
    FZ_CHECK(same_scan(&f1, &f2));
    scan_backward(rc_, &b1);

    const sst_props *p = sst_reader_props(r);
    verified = verified && f1.n < MAX_ENTRIES; /* a highly compressed table: too many to model */
    if (verified) {
        FZ_CHECK(f1.status == SHALE_OK && b1.status == SHALE_OK);
        FZ_CHECK(f1.n == p->entries && b1.n == f1.n);
        for (size_t i = 0; i < f1.n; i++) {
            FZ_CHECK(ent_eq(&f1.e[i], &b1.e[f1.n - 1 - i]));
            if (i > 0) {
                FZ_CHECK(ent_cmp(&f1.e[i - 1], slice_make(f1.e[i].key, f1.e[i].klen), f1.e[i].seq) <
                         0);
            }
        }
        if (f1.n > 0) {
            const ent *a = &f1.e[0], *z = &f1.e[f1.n - 1];
            FZ_CHECK(slice_eq(slice_make(a->key, a->klen),
                              slice_make(p->smallest_key.data, p->smallest_key.len)));
            FZ_CHECK(slice_eq(slice_make(z->key, z->klen),
                              slice_make(p->largest_key.data, p->largest_key.len)));
        }
    }

    probe pr[MAX_PROBES * 2];
    size_t np = make_probes(data, size, &f1, pr, sizeof pr / sizeof pr[0]);
    results r1 = {0}, r2 = {0};
    run_probes(r, pr, np, &f1, verified, &r1);
    run_probes(rc_, pr, np, &f1, verified, &r2);
    FZ_CHECK(r1.b.len == r2.b.len &&
             (r1.b.len == 0 || memcmp(r1.b.data, r2.b.data, r1.b.len) == 0));

    buf_free(&r1.b);
    buf_free(&r2.b);
    scan_free(&f1);
    scan_free(&f2);
    scan_free(&b1);
    sst_reader_close(rc_);
    sst_reader_close(r);
    cache_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_table(data, size);
    /* And with the footer's and every reachable block's checksum made right. */
    uint8_t *fixed = fz_copy(data, size);
    if (fz_sst_fix_crcs(fixed, size)) {
        run_table(fixed, size);
    }
    free(fixed);
    return 0;
}
