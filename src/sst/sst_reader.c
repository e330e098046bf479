/*
 * sst_reader: reads tables in the format of sst_format.h (contract in sst_reader.h).
 *
 * Blocks. A block read from the file is checked (handle in bounds, CRC32C over contents and
 * type, raw length bounded, decompressed to exactly that length, restart array or filter layout
 * checked) and becomes an sst_block: the raw bytes plus what a reader wants precomputed (the
 * parsed restart array, the filter's line and probe counts, and for an index block its search
 * accelerator, block.h's block_pindex, which gets and iterator seeks search instead of the
 * block). sst_blocks are what the block cache holds, keyed by (this reader's cache id, block
 * offset) and charged by their allocation sizes (the accelerator's included); a cache hit costs
 * no check at all. Without a cache the index and filter sst_blocks are loaded
 * at first use and kept (published with a compare-and-swap, so concurrent first uses are safe:
 * the loser frees its copy), and data blocks are read per access.
 *
 * Iterator. A two-level iterator (LevelDB's TwoLevelIterator, specialised): a block_iter over
 * the index, pinned for the iterator's life, and a block_iter over the current data block,
 * pinned through its cache handle. Moving within a block touches no lock and allocates
 * nothing; crossing to the next block costs one cache lookup. When the block is not cached and
 * the iterator must not fill the cache (fill_cache false, or no cache), the block is read into
 * two buffers the iterator reuses (stored bytes, decompressed bytes), so a scan allocates only
 * while its buffers grow.
 *
 * Cache values: only this file inserts entries under a reader's id, so the value found under
 * (id, offset) is the sst_block of the block at that offset, of the kind the caller expects.
 * A closed reader's entries are never looked up again (ids are not reused) and age out of the
 * LRU, as in LevelDB.
 */
#include "sst/sst_reader.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/coding.h"
#include "base/compress.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "sst/block.h"
#include "sst/bloom.h"
#include "sst/sst_format.h"

enum block_kind { BK_DATA, BK_INDEX, BK_FILTER, BK_PROPS };

static const char *const kind_name[] = {"data", "index", "filter", "properties"};

typedef struct sst_block {
    block b;          /* data and index blocks */
    block_pindex *pi; /* index blocks: the search accelerator (NULL if it could not be built) */
    bloom_filter f;   /* filter blocks */
    size_t len;       /* raw bytes */
    size_t charge;    /* allocation sizes (this one and pi's), charged to the cache */
    uint8_t bytes[];
} sst_block;

struct sst_reader {
    const shale_env *env;
    env_file *file;
    char *path;
    const char *name; /* base name inside path, for messages */
    uint64_t file_number;
    uint64_t file_size;
    uint32_t format_version; /* SST_FORMAT_VERSION_MIN .. SST_FORMAT_VERSION */
    uint64_t data_end;       /* where the footer starts: every block ends at or before it */
    cache *cache;
    uint64_t cache_id;
    sst_handle index_h, filter_h, props_h;
    sst_props props;
    _Atomic(sst_block *) index_kept; /* without a cache only */
    _Atomic(sst_block *) filter_kept;
    _Atomic(cache_handle *) index_pin; /* with a cache: held from the first use to the close */
    _Atomic(cache_handle *) filter_pin;
};

/*
 * An sst_block's allocation starts with room for the block cache's handle
 * (cache_insert_embedded), then the sst_block, then its bytes: a cache hit then reads the handle
 * and the parsed block from neighbouring lines, one miss fewer than with the handle allocated
 * apart, and an insert allocates nothing more. Blocks that never enter the cache carry the
 * unused room (cache_embedded_size(), 128 bytes).
 */
static sst_block *obj_alloc(size_t payload)
{
    size_t head = cache_embedded_size();
    size_t n = head + sizeof(sst_block) + payload;
    n = (n + CACHE_EMBED_ALIGN - 1) / CACHE_EMBED_ALIGN * CACHE_EMBED_ALIGN;
    uint8_t *mem = aligned_alloc(CACHE_EMBED_ALIGN, n);
    if (mem == NULL) {
        return NULL;
    }
    sst_block *o = (sst_block *)(mem + head);
    o->pi = NULL;
    o->charge = n;
    return o;
}

static void *obj_mem(sst_block *o)
{
    return (uint8_t *)o - cache_embedded_size();
}

/* Accepts NULL. */
static void obj_free(sst_block *o)
{
    if (o != NULL) {
        block_pindex_free(o->pi);
        free(obj_mem(o));
    }
}

/* A block in use: either held through a cache handle, owned (freed on unpin), or borrowed from
 * the reader (kept index and filter). */
typedef struct pin {
    cache_handle *h;
    sst_block *obj;
    bool owned;
} pin;

static void unpin(sst_reader *r, pin *p)
{
    if (p->h != NULL) {
        cache_release(r->cache, p->h);
    } else if (p->owned) {
        obj_free(p->obj);
    }
    p->h = NULL;
    p->obj = NULL;
    p->owned = false;
}

/* err_nomem, with the code visible to the static analyzer (which otherwise assumes a failed
 * allocation may return SHALE_OK and follows that path). */
static shale_code no_memory(shale_error *err)
{
    err_nomem(err);
    return SHALE_NOMEM;
}

static void block_deleter(void *value, void *arg)
{
    (void)arg;
    obj_free(value);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static shale_code bad_block(shale_error *err, const sst_reader *r, int kind, const sst_handle *h,
                            const char *what)
{
    return err_set(err, SHALE_CORRUPTION, 0, "%s: %s block @%" PRIu64 "+%" PRIu64 ": %s", r->name,
                   kind_name[kind], h->offset, h->size, what);
}

static shale_code check_handle(const sst_reader *r, int kind, const sst_handle *h, shale_error *err)
{
    if (h->size > (uint64_t)SST_MAX_BLOCK_BYTES + CODING_MAX_VARINT32 || h->offset > r->data_end ||
        h->size + SST_TRAILER_SIZE > r->data_end - h->offset) {
        return bad_block(err, r, kind, h, "handle out of bounds");
    }
    return SHALE_OK;
}

/* Reads contents and trailer into dst (h->size + SST_TRAILER_SIZE bytes) and checks the CRC. */
static shale_code read_stored(const sst_reader *r, int kind, const sst_handle *h, uint8_t *dst,
                              uint8_t *type, shale_error *err)
{
    size_t n = (size_t)h->size + SST_TRAILER_SIZE;
    size_t got = 0;
    shale_error e;

    if (env_file_read_at(r->file, h->offset, dst, n, &got, &e) != SHALE_OK) {
        return err_set(err, e.code, e.sys_errno, "%s: %s block @%" PRIu64 "+%" PRIu64 ": %s",
                       r->name, kind_name[kind], h->offset, h->size, e.msg);
    }
    if (got < n) {
        return bad_block(err, r, kind, h, "truncated");
    }
    *type = dst[h->size];
    uint32_t want = crc32c_unmask(coding_get_fixed32(dst + h->size + 1));
    uint32_t crc = crc32c_extend(crc32c_value(dst, (size_t)h->size), type, 1);
    if (crc != want) {
        return bad_block(err, r, kind, h, "bad checksum");
    }
    return SHALE_OK;
}

/* For compressed contents: the raw length and where the compressed bytes start. */
static shale_code compressed_layout(const sst_reader *r, int kind, const sst_handle *h,
                                    const uint8_t *stored, uint8_t type, size_t *raw_len,
                                    const uint8_t **payload, size_t *payload_len, shale_error *err)
{
    uint32_t len;
    if (type > COMPRESS_ZSTD) {
        char what[48];
        snprintf(what, sizeof what, "unknown compression type %u", type);
        return bad_block(err, r, kind, h, what);
    }
    const uint8_t *p = coding_get_varint32(stored, stored + h->size, &len);
    if (p == NULL || len > SST_MAX_BLOCK_BYTES) {
        return bad_block(err, r, kind, h, "bad raw length");
    }
    *raw_len = len;
    *payload = p;
    *payload_len = (size_t)(stored + h->size - p);
    return SHALE_OK;
}

static shale_code expand(const sst_reader *r, int kind, const sst_handle *h, uint8_t type,
                         const uint8_t *payload, size_t payload_len, uint8_t *dst, size_t raw_len,
                         shale_error *err)
{
    shale_error e;
    if (compress_decompress(type, payload, payload_len, dst, raw_len, &e) != SHALE_OK) {
        if (e.code == SHALE_NOMEM) {
            return err_copy(err, &e);
        }
        return bad_block(err, r, kind, h, e.msg);
    }
    return SHALE_OK;
}

/* Checks the raw bytes of a block for its kind and fills the precomputed parts. */
static shale_code parse_kind(const sst_reader *r, int kind, const sst_handle *h,
                             const uint8_t *data, size_t n, block *b, bloom_filter *f,
                             shale_error *err)
{
    const char *why = NULL;
    if (kind == BK_DATA || kind == BK_INDEX) {
        why = block_parse(data, n, b);
        if (why == NULL && b->num_restarts == 0) {
            why = "no entries";
        } else if (why == NULL && b->num_buckets > 0 && kind == BK_INDEX) {
            why = "hash index in an index block";
        } else if (why == NULL && b->num_buckets > 0 && r->format_version < 2) {
            why = "hash index in a format version 1 table";
        }
    } else if (kind == BK_FILTER) {
        why = bloom_parse(data, n, f);
    }
    return why ? bad_block(err, r, kind, h, why) : SHALE_OK;
}

/* Reads a block into a new sst_block (obj_alloc: one allocation when stored raw, a second, freed
 * here, when compressed). */
static shale_code load_obj(const sst_reader *r, int kind, const sst_handle *h, sst_block **out,
                           shale_error *err)
{
    shale_code rc = check_handle(r, kind, h, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    size_t stored = (size_t)h->size + SST_TRAILER_SIZE;
    sst_block *o = obj_alloc(stored);
    uint8_t type = COMPRESS_NONE;
    if (o == NULL) {
        return no_memory(err);
    }
    o->len = (size_t)h->size;
    rc = read_stored(r, kind, h, o->bytes, &type, err);
    if (rc != SHALE_OK) {
        goto out_free;
    }
    if (type != COMPRESS_NONE) {
        size_t raw_len = 0, plen = 0;
        const uint8_t *payload = NULL;
        rc = compressed_layout(r, kind, h, o->bytes, type, &raw_len, &payload, &plen, err);
        if (rc != SHALE_OK) {
            goto out_free;
        }
        sst_block *x = obj_alloc(raw_len);
        if (x == NULL) {
            rc = no_memory(err);
            goto out_free;
        }
        rc = expand(r, kind, h, type, payload, plen, x->bytes, raw_len, err);
        obj_free(o);
        o = x;
        if (rc != SHALE_OK) {
            goto out_free;
        }
        o->len = raw_len;
    }
    rc = parse_kind(r, kind, h, o->bytes, o->len, &o->b, &o->f, err);
    if (rc != SHALE_OK) {
        goto out_free;
    }
    /* An index block that cannot have the accelerator (damage behind a valid checksum, out of
     * memory) is searched without it; block_iter_seek reports damage where it meets it. */
    if (kind == BK_INDEX && block_pindex_build(&o->b, &o->pi) == NULL) {
        o->charge += block_pindex_bytes(o->pi);
    }
    *out = o;
    return SHALE_OK;

out_free:
    obj_free(o);
    return rc;
}

/* Reads a block into reusable buffers: io for the stored bytes, raw for decompressed ones.
 * *out views whichever holds the raw bytes. */
static shale_code load_into(const sst_reader *r, int kind, const sst_handle *h, shale_buf *io,
                            shale_buf *raw, block *out, bloom_filter *f, shale_error *err)
{
    shale_code rc = check_handle(r, kind, h, err);
    uint8_t type = COMPRESS_NONE;
    if (rc != SHALE_OK) {
        return rc;
    }
    buf_reset(io);
    rc = buf_reserve(io, (size_t)h->size + SST_TRAILER_SIZE, err);
    if (rc == SHALE_OK) {
        rc = read_stored(r, kind, h, io->data, &type, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    const uint8_t *data = io->data;
    size_t n = (size_t)h->size;
    if (type != COMPRESS_NONE) {
        size_t plen = 0;
        const uint8_t *payload = NULL;
        rc = compressed_layout(r, kind, h, io->data, type, &n, &payload, &plen, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        buf_reset(raw);
        rc = buf_reserve(raw, n, err);
        if (rc == SHALE_OK) {
            rc = expand(r, kind, h, type, payload, plen, raw->data, n, err);
        }
        if (rc != SHALE_OK) {
            return rc;
        }
        data = raw->data;
    }
    return parse_kind(r, kind, h, data, n, out, f, err);
}

/* A block through the cache when there is one: a hit pins it; a miss reads it and, with fill,
 * inserts it. Without a cache (or without fill) the block is owned by the pin. */
static shale_code get_block(sst_reader *r, int kind, const sst_handle *h, bool fill, pin *out,
                            shale_error *err)
{
    sst_block *o = NULL;
    out->h = NULL;
    out->obj = NULL;
    out->owned = false;
    if (r->cache != NULL) {
        cache_handle *ch = cache_lookup(r->cache, r->cache_id, h->offset);
        if (ch != NULL) {
            out->h = ch;
            out->obj = cache_value(ch);
            return SHALE_OK;
        }
    }
    shale_code rc = load_obj(r, kind, h, &o, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (r->cache != NULL && fill) {
        out->h = cache_insert_embedded(r->cache, obj_mem(o), r->cache_id, h->offset, o, o->charge,
                                       block_deleter, NULL);
        out->obj = o;
        return SHALE_OK;
    }
    out->obj = o;
    out->owned = true;
    return SHALE_OK;
}

/* The index or filter block, borrowed from the reader: with a cache, the handle the reader took
 * at the first use that went through the cache (every later use costs an atomic load, no cache
 * lock); without one, the copy it loaded. A use that does not fill the cache (a compaction
 * input) and misses gets an owned copy and leaves nothing behind. Held blocks count against
 * half the cache's capacity (cache_hold_try); past that, the block is pinned per use, as data
 * blocks are, so the readers of a database far larger than its cache never hold more than half
 * of it. */
static shale_code get_meta(sst_reader *r, int kind, bool fill, pin *out, shale_error *err)
{
    const sst_handle *h = kind == BK_INDEX ? &r->index_h : &r->filter_h;
    if (r->cache != NULL) {
        _Atomic(cache_handle *) *hslot = kind == BK_INDEX ? &r->index_pin : &r->filter_pin;
        cache_handle *kept = atomic_load_explicit(hslot, memory_order_acquire);
        if (kept == NULL) {
            shale_code rc = get_block(r, kind, h, fill, out, err);
            if (rc != SHALE_OK || out->h == NULL) {
                return rc;
            }
            size_t charge = out->obj->charge;
            if (!cache_hold_try(r->cache, charge)) {
                return SHALE_OK; /* over the cache's share for held blocks: pinned per use */
            }
            cache_handle *expected = NULL;
            if (atomic_compare_exchange_strong_explicit(
                    hslot, &expected, out->h, memory_order_acq_rel, memory_order_acquire)) {
                kept = out->h;
            } else {
                cache_hold_done(r->cache, charge);
                cache_release(r->cache, out->h);
                kept = expected;
            }
        }
        out->h = NULL;
        out->obj = cache_value(kept);
        out->owned = false;
        return SHALE_OK;
    }
    _Atomic(sst_block *) *slot = kind == BK_INDEX ? &r->index_kept : &r->filter_kept;
    sst_block *o = atomic_load_explicit(slot, memory_order_acquire);
    if (o == NULL) {
        shale_code rc = load_obj(r, kind, h, &o, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        sst_block *expected = NULL;
        if (!atomic_compare_exchange_strong_explicit(slot, &expected, o, memory_order_acq_rel,
                                                     memory_order_acquire)) {
            obj_free(o);
            o = expected;
        }
    }
    out->h = NULL;
    out->obj = o;
    out->owned = false;
    return SHALE_OK;
}

static bool decode_handle(const uint8_t *p, size_t n, sst_handle *h)
{
    const uint8_t *end = p + n;
    p = coding_get_varint64(p, end, &h->offset);
    p = coding_get_varint64(p, end, &h->size);
    return p != NULL && p == end;
}

/* ---- open --------------------------------------------------------------------------------- */

/* salvage: the file number is not checked and only the index handle is (sst_salvage_open). */
static shale_code decode_footer(sst_reader *r, const uint8_t *f, bool salvage, shale_error *err)
{
    if (coding_get_fixed64(f + SST_FOOTER_MAGIC) != SST_MAGIC) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: footer: bad magic", r->name);
    }
    uint32_t want = crc32c_unmask(coding_get_fixed32(f + SST_FOOTER_CRC));
    if (crc32c_value(f, SST_FOOTER_CRC) != want) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: footer: bad checksum", r->name);
    }
    uint32_t version = coding_get_fixed32(f + SST_FOOTER_VERSION);
    if (version < SST_FORMAT_VERSION_MIN || version > SST_FORMAT_VERSION) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s: footer: format version %" PRIu32
                       " not supported (this build reads %u .. %u)",
                       r->name, version, SST_FORMAT_VERSION_MIN, SST_FORMAT_VERSION);
    }
    r->format_version = version;
    uint64_t number = coding_get_fixed64(f + SST_FOOTER_NUMBER);
    if (!salvage && number != r->file_number) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s: footer: file number %" PRIu64 ", expected %" PRIu64, r->name, number,
                       r->file_number);
    }
    sst_handle *hs[3] = {&r->index_h, &r->filter_h, &r->props_h};
    const uint32_t at[3] = {SST_FOOTER_INDEX, SST_FOOTER_FILTER, SST_FOOTER_PROPS};
    const int kinds[3] = {BK_INDEX, BK_FILTER, BK_PROPS};
    for (int i = 0; i < (salvage ? 1 : 3); i++) {
        hs[i]->offset = coding_get_fixed64(f + at[i]);
        hs[i]->size = coding_get_fixed64(f + at[i] + 8);
        shale_error e;
        if (check_handle(r, kinds[i], hs[i], &e) != SHALE_OK) {
            return err_set(err, SHALE_CORRUPTION, 0,
                           "%s: footer: %s handle @%" PRIu64 "+%" PRIu64 " out of bounds", r->name,
                           kind_name[kinds[i]], hs[i]->offset, hs[i]->size);
        }
    }
    return SHALE_OK;
}

static const char *decode_props(const uint8_t *p, size_t n, sst_props *out, shale_error *err)
{
    const uint8_t *end = p + n;
    if (n < 4) {
        return "too short";
    }
    uint32_t count = coding_get_fixed32(p);
    if (count < SST_PROP_COUNT || count > SST_PROP_MAX_FIELDS || 4 + 8 * (size_t)count > n) {
        return "bad field count";
    }
    uint64_t f[SST_PROP_COUNT];
    for (int i = 0; i < SST_PROP_COUNT; i++) {
        f[i] = coding_get_fixed64(p + 4 + 8 * (size_t)i);
    }
    p += 4 + 8 * (size_t)count;
    const uint8_t *sk, *lk;
    uint32_t skl, lkl;
    p = coding_get_length_prefixed(p, end, &sk, &skl);
    p = coding_get_length_prefixed(p, end, &lk, &lkl);
    if (p == NULL || p != end) {
        return "bad key bounds";
    }
    out->entries = f[SST_PROP_ENTRIES];
    out->deletions = f[SST_PROP_DELETIONS];
    out->ttl_entries = f[SST_PROP_TTL_ENTRIES];
    out->min_seq = f[SST_PROP_MIN_SEQ];
    out->max_seq = f[SST_PROP_MAX_SEQ];
    out->raw_key_bytes = f[SST_PROP_RAW_KEY_BYTES];
    out->raw_value_bytes = f[SST_PROP_RAW_VALUE_BYTES];
    out->data_bytes = f[SST_PROP_DATA_BYTES];
    out->index_bytes = f[SST_PROP_INDEX_BYTES];
    out->filter_bytes = f[SST_PROP_FILTER_BYTES];
    out->data_blocks = f[SST_PROP_DATA_BLOCKS];
    out->file_size = f[SST_PROP_FILE_SIZE];
    out->created_at_ms = f[SST_PROP_CREATED_AT_MS];
    out->smallest_seq = f[SST_PROP_SMALLEST_SEQ];
    out->largest_seq = f[SST_PROP_LARGEST_SEQ];
    if (f[SST_PROP_COMPRESSION] > COMPRESS_ZSTD) {
        return "unknown compression";
    }
    out->compression = (uint32_t)f[SST_PROP_COMPRESSION];
    if (out->entries == 0 || out->data_blocks == 0 ||
        out->deletions > out->entries - out->ttl_entries || out->ttl_entries > out->entries ||
        out->min_seq > out->max_seq || out->max_seq > IKEY_MAX_SEQ) {
        return "inconsistent counts";
    }
    if (skl == 0 || skl > SST_MAX_KEY_BYTES || lkl == 0 || lkl > SST_MAX_KEY_BYTES) {
        return "bad key bounds";
    }
    if (buf_set(&out->smallest_key, sk, skl, err) != SHALE_OK ||
        buf_set(&out->largest_key, lk, lkl, err) != SHALE_OK) {
        return NULL; /* err holds SHALE_NOMEM */
    }
    return NULL;
}

static shale_code read_props(sst_reader *r, shale_error *err)
{
    sst_block *o = NULL;
    shale_error e;
    shale_code rc = load_obj(r, BK_PROPS, &r->props_h, &o, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    err_clear(&e);
    const char *why = decode_props(o->bytes, o->len, &r->props, &e);
    obj_free(o);
    if (why != NULL) {
        return bad_block(err, r, BK_PROPS, &r->props_h, why);
    }
    if (e.code != SHALE_OK) {
        return err_copy(err, &e);
    }
    if (r->props.file_size != r->file_size) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s: properties block: file size %" PRIu64 ", file has %" PRIu64, r->name,
                       r->props.file_size, r->file_size);
    }
    return SHALE_OK;
}

/* sst_reader_open; salvage: see decode_footer, and no properties block is read. */
static shale_code open_reader(const shale_env *env, const char *path, uint64_t file_number,
                              uint64_t file_size, cache *block_cache, bool salvage,
                              sst_reader **out, shale_error *err)
{
    uint8_t footer[SST_FOOTER_SIZE];
    uint64_t actual;
    size_t got;
    shale_code rc;

    sst_reader *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return no_memory(err);
    }
    r->path = strdup(path);
    if (r->path == NULL) {
        free(r);
        return no_memory(err);
    }
    r->name = base_name(r->path);
    r->env = env;
    r->file_number = file_number;
    atomic_init(&r->index_kept, NULL);
    atomic_init(&r->filter_kept, NULL);
    atomic_init(&r->index_pin, NULL);
    atomic_init(&r->filter_pin, NULL);

    rc = env->open_file(env, path, ENV_READ, &r->file, err);
    if (rc != SHALE_OK) {
        r->file = NULL;
        goto out_close;
    }
    rc = env_file_size(r->file, &actual, err);
    if (rc != SHALE_OK) {
        goto out_close;
    }
    if (file_size != 0 && file_size != actual) {
        rc = err_set(err, SHALE_CORRUPTION, 0, "%s: file is %" PRIu64 " bytes, expected %" PRIu64,
                     r->name, actual, file_size);
        goto out_close;
    }
    r->file_size = actual;
    if (actual < SST_FOOTER_SIZE) {
        rc = err_set(err, SHALE_CORRUPTION, 0, "%s: %" PRIu64 " bytes, shorter than a footer",
                     r->name, actual);
        goto out_close;
    }
    r->data_end = actual - SST_FOOTER_SIZE;
    rc = env_file_read_at(r->file, r->data_end, footer, sizeof footer, &got, err);
    if (rc != SHALE_OK) {
        goto out_close;
    }
    if (got < sizeof footer) {
        rc = err_set(err, SHALE_CORRUPTION, 0, "%s: footer: truncated", r->name);
        goto out_close;
    }
    rc = decode_footer(r, footer, salvage, err);
    if (rc != SHALE_OK) {
        goto out_close;
    }
    rc = salvage ? SHALE_OK : read_props(r, err);
    if (rc != SHALE_OK) {
        goto out_close;
    }
    r->cache = block_cache;
    if (block_cache != NULL) {
        r->cache_id = cache_new_id(block_cache);
    }
    *out = r;
    return SHALE_OK;

out_close:
    sst_reader_close(r);
    return rc;
}

shale_code sst_reader_open(const shale_env *env, const char *path, uint64_t file_number,
                           uint64_t file_size, cache *block_cache, sst_reader **out,
                           shale_error *err)
{
    return open_reader(env, path, file_number, file_size, block_cache, false, out, err);
}

void sst_reader_close(sst_reader *r)
{
    if (r == NULL) {
        return;
    }
    /* The pinned index and filter leave the cache with the reader (their offsets are known);
     * its data blocks age out (see the top of the file): erasing them would need their list. */
    cache_handle *pins[2] = {atomic_load(&r->index_pin), atomic_load(&r->filter_pin)};
    const sst_handle *where[2] = {&r->index_h, &r->filter_h};
    for (int i = 0; i < 2; i++) {
        if (pins[i] != NULL) {
            cache_hold_done(r->cache, ((const sst_block *)cache_value(pins[i]))->charge);
            cache_release(r->cache, pins[i]);
            cache_erase(r->cache, r->cache_id, where[i]->offset);
        }
    }
    obj_free(atomic_load(&r->index_kept));
    obj_free(atomic_load(&r->filter_kept));
    (void)env_file_close(r->file, NULL);
    sst_props_free(&r->props);
    free(r->path);
    free(r);
}

const sst_props *sst_reader_props(const sst_reader *r)
{
    return &r->props;
}

uint64_t sst_reader_file_number(const sst_reader *r)
{
    return r->file_number;
}

/* ---- point reads -------------------------------------------------------------------------- */

static shale_code entry_error(shale_error *err, const sst_reader *r, int kind, const sst_handle *h,
                              const block_iter *bi)
{
    if (bi->status == SHALE_NOMEM) {
        return no_memory(err);
    }
    char what[48];
    snprintf(what, sizeof what, "bad entry @%" PRIu32, bi->bad_offset);
    return bad_block(err, r, kind, h, what);
}

/* The block handle of the index entry ii is on. */
static shale_code index_handle(const sst_reader *r, const block_iter *ii, sst_handle *h,
                               shale_error *err)
{
    if (!decode_handle(ii->val, ii->val_len, h)) {
        char what[48];
        snprintf(what, sizeof what, "bad block handle @%" PRIu32, ii->cur);
        return bad_block(err, r, BK_INDEX, &r->index_h, what);
    }
    return SHALE_OK;
}

/* Fills *e from the block iterator's current entry (slices into the block and key buffer). */
static void fill_entry(const block_iter *bi, ikey_entry *e)
{
    uint64_t tag = block_iter_tag(bi);
    uint8_t type = (uint8_t)tag;
    e->key = slice_make(bi->key, block_iter_ukey_len(bi));
    e->seq = tag >> 8;
    if (type == SST_TYPE_PUT_TTL) {
        e->type = IKEY_PUT;
        e->expire_at_ms = coding_get_fixed64(bi->val);
        e->value = slice_make(bi->val + 8, bi->val_len - 8);
    } else {
        e->type = type == SST_TYPE_DEL ? IKEY_DEL : IKEY_PUT;
        e->expire_at_ms = 0;
        e->value = slice_make(bi->val, bi->val_len);
    }
}

bool sst_reader_may_contain(sst_reader *r, shale_slice key)
{
    pin p;
    if (get_meta(r, BK_FILTER, true, &p, NULL) != SHALE_OK) {
        return true;
    }
    bool may = bloom_may_contain(&p.obj->f, bloom_hash(key.data, key.len));
    unpin(r, &p);
    return may;
}

/* Index lookup for (key, seq): the handle of the only data block that can hold it. */
static shale_code find_block(sst_reader *r, shale_slice key, uint64_t seq, bool *any, sst_handle *h,
                             shale_error *err)
{
    pin ip;
    block_iter bi;
    shale_code rc = get_meta(r, BK_INDEX, true, &ip, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    block_iter_init(&bi, false);
    block_iter_set(&bi, &ip.obj->b);
    block_iter_seek_pindex(&bi, ip.obj->pi, key.data, key.len, seq);
    *any = block_iter_valid(&bi);
    if (*any) {
        rc = index_handle(r, &bi, h, err);
    } else if (!*any && bi.status != SHALE_OK) {
        rc = entry_error(err, r, BK_INDEX, &r->index_h, &bi);
    }
    block_iter_destroy(&bi);
    unpin(r, &ip);
    return rc;
}

uint64_t sst_reader_key_hash(shale_slice key)
{
    return bloom_hash(key.data, key.len);
}

shale_code sst_reader_get(sst_reader *r, shale_slice key, uint64_t snapshot_seq, bool *found,
                          ikey_entry *out, shale_buf *scratch, sst_get_stats *stats,
                          shale_error *err)
{
    return sst_reader_get_hashed(r, key, bloom_hash(key.data, key.len), snapshot_seq, found, out,
                                 scratch, stats, err);
}

void sst_reader_prefetch(sst_reader *r, uint64_t hash)
{
    const sst_block *o = NULL;
    if (r->cache != NULL) {
        cache_handle *kept = atomic_load_explicit(&r->filter_pin, memory_order_acquire);
        o = kept != NULL ? cache_value(kept) : NULL;
    } else {
        o = atomic_load_explicit(&r->filter_kept, memory_order_acquire);
    }
    if (o != NULL) {
        bloom_prefetch(&o->f, hash);
    }
}

shale_code sst_reader_get_hashed(sst_reader *r, shale_slice key, uint64_t hash,
                                 uint64_t snapshot_seq, bool *found, ikey_entry *out,
                                 shale_buf *scratch, sst_get_stats *stats, shale_error *err)
{
    pin p;
    block_iter bi;
    sst_handle h;
    bool any;
    shale_code rc;

    *found = false;
    if (snapshot_seq > IKEY_MAX_SEQ) {
        snapshot_seq = IKEY_MAX_SEQ;
    }
    rc = get_meta(r, BK_FILTER, true, &p, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    /* One hash for the filter and the data block's hash index. */
    bool may = bloom_may_contain(&p.obj->f, hash);
    unpin(r, &p);
    if (stats != NULL) {
        stats->filter_checked++;
        stats->filter_negative += !may;
    }
    if (!may) {
        return SHALE_OK;
    }
    rc = find_block(r, key, snapshot_seq, &any, &h, err);
    if (rc != SHALE_OK || !any) {
        return rc;
    }
    rc = get_block(r, BK_DATA, &h, true, &p, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    block_iter_init(&bi, true);
    block_iter_set(&bi, &p.obj->b);
    /* find_block's block is the only one that can hold (key, seq <= snapshot_seq) (sst_format.h:
     * index keys separate the blocks), so a point seek that lands elsewhere or nowhere ends the
     * get. */
    block_iter_seek_point(&bi, key.data, key.len, snapshot_seq, hash);
    if (block_iter_valid(&bi)) {
        ikey_entry e;
        fill_entry(&bi, &e);
        if (slice_eq(e.key, key)) {
            buf_reset(scratch);
            rc = buf_reserve(scratch, e.key.len + e.value.len, err);
            if (rc == SHALE_OK) {
                uint8_t *d = scratch->data;
                memcpy(d, e.key.data, e.key.len);
                if (e.value.len > 0) {
                    memcpy(d + e.key.len, e.value.data, e.value.len);
                }
                scratch->len = e.key.len + e.value.len;
                *out = e;
                out->key = slice_make(d, e.key.len);
                out->value = slice_make(d + e.key.len, e.value.len);
                *found = true;
            }
        }
    } else if (bi.status != SHALE_OK) {
        rc = entry_error(err, r, BK_DATA, &h, &bi);
    }
    block_iter_destroy(&bi);
    unpin(r, &p);
    return rc;
}

/* ---- iterator ----------------------------------------------------------------------------- */

typedef struct sst_iter {
    iter base;
    sst_reader *r;
    bool fill_cache;
    bool have_index;
    pin index;
    block_iter ii;
    pin data;       /* the current data block when it came from the cache or is owned */
    bool have_data; /* di is attached to the block at data_h */
    sst_handle data_h;
    block data_view;   /* the current block when read into io/raw */
    shale_buf io, raw; /* reusable read buffers (uncached reads) */
    block_iter di;
    shale_code status;
    shale_error err;
} sst_iter;

static void drop_data(sst_iter *it)
{
    unpin(it->r, &it->data);
    it->have_data = false;
    block_iter_clear(&it->di);
}

static void set_error(sst_iter *it, shale_code rc, const shale_error *e)
{
    if (it->status == SHALE_OK) {
        it->status = rc;
        err_copy(&it->err, e);
    }
    drop_data(it);
    block_iter_clear(&it->ii);
}

static bool ensure_index(sst_iter *it)
{
    shale_error e;
    it->status = SHALE_OK;
    if (it->have_index) {
        block_iter_set(&it->ii, &it->index.obj->b); /* an error may have detached it */
        return true;
    }
    shale_code rc = get_meta(it->r, BK_INDEX, it->fill_cache, &it->index, &e);
    if (rc != SHALE_OK) {
        set_error(it, rc, &e);
        return false;
    }
    it->have_index = true;
    block_iter_set(&it->ii, &it->index.obj->b);
    return true;
}

/* Attaches di to the data block the index iterator is on (or detaches it at the index's end).
 * False on error. */
static bool init_data(sst_iter *it)
{
    sst_reader *r = it->r;
    shale_error e;
    sst_handle h;

    if (!block_iter_valid(&it->ii)) {
        drop_data(it);
        if (it->ii.status != SHALE_OK) {
            shale_code rc = entry_error(&e, r, BK_INDEX, &r->index_h, &it->ii);
            set_error(it, rc, &e);
            return false;
        }
        return true;
    }
    if (!decode_handle(it->ii.val, it->ii.val_len, &h)) {
        char what[48];
        snprintf(what, sizeof what, "bad block handle @%" PRIu32, it->ii.cur);
        set_error(it, bad_block(&e, r, BK_INDEX, &r->index_h, what), &e);
        return false;
    }
    if (it->have_data && h.offset == it->data_h.offset && h.size == it->data_h.size) {
        return true; /* same block: di keeps its position, the caller repositions it */
    }
    drop_data(it);
    shale_code rc = SHALE_OK;
    const block *b = NULL;
    if (r->cache != NULL) {
        cache_handle *ch = cache_lookup(r->cache, r->cache_id, h.offset);
        if (ch != NULL) {
            it->data.h = ch;
            it->data.obj = cache_value(ch);
            b = &it->data.obj->b;
        } else if (it->fill_cache) {
            rc = get_block(r, BK_DATA, &h, true, &it->data, &e);
            b = rc == SHALE_OK ? &it->data.obj->b : NULL;
        }
    }
    if (rc == SHALE_OK && b == NULL) {
        rc = load_into(r, BK_DATA, &h, &it->io, &it->raw, &it->data_view, NULL, &e);
        b = &it->data_view;
    }
    if (rc != SHALE_OK) {
        set_error(it, rc, &e);
        return false;
    }
    block_iter_set(&it->di, b);
    it->data_h = h;
    it->have_data = true;
    return true;
}

static void data_error(sst_iter *it)
{
    shale_error e;
    shale_code rc = entry_error(&e, it->r, BK_DATA, &it->data_h, &it->di);
    set_error(it, rc, &e);
}

/* The data iterator ran off its block: moves the index on (fwd) or back to the nearest block
 * with an entry, stopping at the index's end or at an error. */
static void skip_empty(sst_iter *it, bool fwd)
{
    while (!block_iter_valid(&it->di)) {
        if (it->di.status != SHALE_OK) {
            data_error(it);
            return;
        }
        if (!block_iter_valid(&it->ii)) {
            return;
        }
        if (fwd) {
            block_iter_next(&it->ii);
        } else {
            block_iter_prev(&it->ii);
        }
        if (!init_data(it) || !block_iter_valid(&it->ii)) {
            return;
        }
        if (fwd) {
            block_iter_seek_first(&it->di);
        } else {
            block_iter_seek_last(&it->di);
        }
    }
}

/* What a seek aims at: (key, seq), or one end. */
typedef enum seek_target { SEEK_KEY, SEEK_FIRST, SEEK_LAST } seek_target;

/* pi: the index block's accelerator (NULL for a data block). */
static void block_seek(block_iter *bi, const block_pindex *pi, seek_target to, shale_slice key,
                       uint64_t seq)
{
    switch (to) {
    case SEEK_KEY:
        block_iter_seek_pindex(bi, pi, key.data, key.len, seq);
        break;
    case SEEK_FIRST:
        block_iter_seek_first(bi);
        break;
    case SEEK_LAST:
        block_iter_seek_last(bi);
        break;
    }
}

static bool it_valid(const iter *base)
{
    const sst_iter *it = (const sst_iter *)base;
    return block_iter_valid(&it->di);
}

/* Every seek: the index block and then the data block it points to are sought to the same
 * target (an index entry's key is >= every key of its block, so the index finds the block). */
static void it_seek_to(iter *base, seek_target to, shale_slice key, uint64_t seq)
{
    sst_iter *it = (sst_iter *)base;
    if (!ensure_index(it)) {
        return;
    }
    block_seek(&it->ii, it->index.obj->pi, to, key, seq);
    if (!init_data(it)) {
        return;
    }
    if (block_iter_valid(&it->ii)) {
        block_seek(&it->di, NULL, to, key, seq);
    }
    skip_empty(it, to != SEEK_LAST);
}

static void it_seek(iter *base, shale_slice key, uint64_t seq)
{
    it_seek_to(base, SEEK_KEY, key, seq);
}

static void it_seek_first(iter *base)
{
    it_seek_to(base, SEEK_FIRST, (shale_slice){NULL, 0}, 0);
}

static void it_seek_last(iter *base)
{
    it_seek_to(base, SEEK_LAST, (shale_slice){NULL, 0}, 0);
}

static void it_next(iter *base)
{
    sst_iter *it = (sst_iter *)base;
    block_iter_next(&it->di);
    if (!block_iter_valid(&it->di)) {
        skip_empty(it, true);
    }
}

static void it_prev(iter *base)
{
    sst_iter *it = (sst_iter *)base;
    block_iter_prev(&it->di);
    if (!block_iter_valid(&it->di)) {
        skip_empty(it, false);
    }
}

static void it_entry(const iter *base, ikey_entry *out)
{
    const sst_iter *it = (const sst_iter *)base;
    fill_entry(&it->di, out);
}

static shale_code it_status(const iter *base, shale_error *err)
{
    const sst_iter *it = (const sst_iter *)base;
    if (it->status != SHALE_OK) {
        return err_copy(err, &it->err);
    }
    return SHALE_OK;
}

static void it_destroy(iter *base)
{
    sst_iter *it = (sst_iter *)base;
    drop_data(it);
    unpin(it->r, &it->index);
    block_iter_destroy(&it->ii);
    block_iter_destroy(&it->di);
    buf_free(&it->io);
    buf_free(&it->raw);
    free(it);
}

static const iter_ops sst_iter_ops = {
    .valid = it_valid,
    .seek = it_seek,
    .seek_first = it_seek_first,
    .seek_last = it_seek_last,
    .next = it_next,
    .prev = it_prev,
    .entry = it_entry,
    .status = it_status,
    .destroy = it_destroy,
};

iter *sst_reader_iter(sst_reader *r, bool fill_cache)
{
    sst_iter *it = calloc(1, sizeof *it);
    if (it == NULL) {
        return NULL;
    }
    it->base.ops = &sst_iter_ops;
    it->r = r;
    it->fill_cache = fill_cache;
    block_iter_init(&it->ii, false);
    block_iter_init(&it->di, true);
    err_clear(&it->err);
    return &it->base;
}

/* ---- verification ------------------------------------------------------------------------- */

typedef struct verify_state {
    sst_reader *r;
    shale_buf prev;       /* the previous internal key */
    shale_buf prev_index; /* the previous block's index key */
    shale_buf io, raw;
    bloom_filter filter;
    sst_props seen;
    uint64_t next_off; /* where the next data block must start */
    uint64_t blocks;
} verify_state;

static shale_code verify_fail(shale_error *err, const sst_reader *r, const char *what)
{
    return err_set(err, SHALE_CORRUPTION, 0, "%s: %s", r->name, what);
}

/* Checks one data block's entries against the order, the index key and the filter. */
static shale_code verify_data_block(verify_state *vs, const sst_handle *h, const block_iter *ikey,
                                    shale_error *err)
{
    sst_reader *r = vs->r;
    block b;
    block_iter bi;
    shale_code rc = load_into(r, BK_DATA, h, &vs->io, &vs->raw, &b, NULL, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    vs->blocks++;
    block_iter_init(&bi, true);
    block_iter_set(&bi, &b);
    for (block_iter_seek_first(&bi); block_iter_valid(&bi); block_iter_next(&bi)) {
        ikey_entry e;
        fill_entry(&bi, &e);
        uint8_t type = (uint8_t)block_iter_tag(&bi);
        if (vs->prev.len > 0) {
            shale_slice pk = slice_make(vs->prev.data, vs->prev.len - SST_TAG_SIZE);
            uint64_t ps = coding_get_fixed64((const uint8_t *)vs->prev.data + pk.len) >> 8;
            int c = ikey_cmp(e.key, e.seq, pk, ps);
            if (c <= 0) {
                char what[64];
                snprintf(what, sizeof what, "entry @%" PRIu32 " out of order", bi.cur);
                rc = bad_block(err, r, BK_DATA, h, what);
                break;
            }
        }
        if (bi.cur == 0 && vs->prev_index.len > 0 &&
            block_key_cmp(vs->prev_index.data, vs->prev_index.len, e.key.data, e.key.len, e.seq) >=
                0) {
            rc = bad_block(err, r, BK_INDEX, &r->index_h,
                           "a key is not below the next block's first key");
            break;
        }
        bool new_key = vs->prev.len == 0 ||
                       !slice_eq(e.key, slice_make(vs->prev.data, vs->prev.len - SST_TAG_SIZE));
        uint64_t hash = new_key || bi.cur == 0 ? bloom_hash(e.key.data, e.key.len) : 0;
        if (new_key && !bloom_may_contain(&vs->filter, hash)) {
            rc = bad_block(err, r, BK_FILTER, &r->filter_h, "a key of the table is missing");
            break;
        }
        /* The hash index must lead a get of each user key of the block to, or before, the
         * restart run of its first entry here (a key continued from the previous block starts
         * this one: bi.cur == 0). */
        if ((new_key || bi.cur == 0) && b.num_buckets > 0) {
            uint8_t bucket = b.buckets[(uint32_t)(hash >> 32) % b.num_buckets];
            if (bucket == SST_BLOCK_HASH_EMPTY || bucket > bi.restart_index) {
                char what[64];
                snprintf(what, sizeof what, "hash index misses the key @%" PRIu32, bi.cur);
                rc = bad_block(err, r, BK_DATA, h, what);
                break;
            }
        }
        if (vs->seen.entries == 0) {
            rc = buf_set(&vs->seen.smallest_key, e.key.data, e.key.len, err);
            if (rc != SHALE_OK) {
                break;
            }
            vs->seen.smallest_seq = e.seq;
            vs->seen.min_seq = UINT64_MAX;
        }
        vs->seen.entries++;
        vs->seen.deletions += type == SST_TYPE_DEL;
        vs->seen.ttl_entries += type == SST_TYPE_PUT_TTL;
        vs->seen.min_seq = e.seq < vs->seen.min_seq ? e.seq : vs->seen.min_seq;
        vs->seen.max_seq = e.seq > vs->seen.max_seq ? e.seq : vs->seen.max_seq;
        vs->seen.raw_key_bytes += e.key.len;
        vs->seen.raw_value_bytes += e.value.len;
        rc = buf_set(&vs->prev, bi.key, bi.key_len, err);
        if (rc != SHALE_OK) {
            break;
        }
    }
    if (rc == SHALE_OK && bi.status != SHALE_OK) {
        rc = entry_error(err, r, BK_DATA, h, &bi);
    }
    /* The index key must be >= the block's last key and < the next block's first (checked
     * above, at the next block's first entry, through prev_index). */
    if (rc == SHALE_OK) {
        shale_slice pk = slice_make(vs->prev.data, vs->prev.len - SST_TAG_SIZE);
        uint64_t ps = coding_get_fixed64((const uint8_t *)vs->prev.data + pk.len) >> 8;
        if (block_key_cmp(ikey->key, ikey->key_len, pk.data, pk.len, ps) < 0) {
            char what[64];
            snprintf(what, sizeof what, "entry @%" PRIu32 " below its block's last key", ikey->cur);
            rc = bad_block(err, r, BK_INDEX, &r->index_h, what);
        }
    }
    if (rc == SHALE_OK) {
        rc = buf_set(&vs->prev_index, ikey->key, ikey->key_len, err);
    }
    block_iter_destroy(&bi);
    return rc;
}

static shale_code verify_counts(const verify_state *vs, shale_error *err)
{
    const sst_props *p = &vs->r->props;
    const sst_props *s = &vs->seen;
    const char *what = NULL;
    if (s->entries != p->entries || s->deletions != p->deletions ||
        s->ttl_entries != p->ttl_entries) {
        what = "properties block: entry counts do not match the data blocks";
    } else if (s->min_seq != p->min_seq || s->max_seq != p->max_seq ||
               s->smallest_seq != p->smallest_seq || s->largest_seq != p->largest_seq) {
        what = "properties block: sequence numbers do not match the data blocks";
    } else if (s->raw_key_bytes != p->raw_key_bytes || s->raw_value_bytes != p->raw_value_bytes) {
        what = "properties block: byte counts do not match the data blocks";
    } else if (s->data_blocks != p->data_blocks || s->data_bytes != p->data_bytes) {
        what = "properties block: block counts do not match the index";
    } else if (!slice_eq(slice_make(s->smallest_key.data, s->smallest_key.len),
                         slice_make(p->smallest_key.data, p->smallest_key.len)) ||
               !slice_eq(slice_make(s->largest_key.data, s->largest_key.len),
                         slice_make(p->largest_key.data, p->largest_key.len))) {
        what = "properties block: key bounds do not match the data blocks";
    } else if (p->index_bytes != vs->r->index_h.size + SST_TRAILER_SIZE ||
               p->filter_bytes != vs->r->filter_h.size + SST_TRAILER_SIZE) {
        what = "properties block: index or filter size does not match the footer";
    }
    return what ? verify_fail(err, vs->r, what) : SHALE_OK;
}

/* Blocks are contiguous: data from 0, then filter, index, properties, footer. */
static shale_code verify_layout(const verify_state *vs, shale_error *err)
{
    const sst_reader *r = vs->r;
    const sst_handle *order[3] = {&r->filter_h, &r->index_h, &r->props_h};
    uint64_t off = vs->next_off;
    for (int i = 0; i < 3; i++) {
        if (order[i]->offset != off) {
            return verify_fail(err, r, "footer: blocks are not contiguous");
        }
        off += order[i]->size + SST_TRAILER_SIZE;
    }
    if (off != r->data_end) {
        return verify_fail(err, r, "footer: blocks do not end at the footer");
    }
    return SHALE_OK;
}

static shale_code verify_all(verify_state *vs, shale_error *err)
{
    sst_reader *r = vs->r;
    pin ip, fp;
    block_iter ii;
    shale_code rc = get_meta(r, BK_INDEX, false, &ip, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    vs->blocks++;
    rc = get_meta(r, BK_FILTER, false, &fp, err);
    if (rc != SHALE_OK) {
        unpin(r, &ip);
        return rc;
    }
    vs->blocks++;
    vs->filter = fp.obj->f;

    block_iter_init(&ii, false);
    block_iter_set(&ii, &ip.obj->b);
    for (block_iter_seek_first(&ii); block_iter_valid(&ii); block_iter_next(&ii)) {
        sst_handle h;
        rc = index_handle(r, &ii, &h, err);
        if (rc != SHALE_OK) {
            break;
        }
        if (h.offset != vs->next_off) {
            char what[64];
            snprintf(what, sizeof what, "entry @%" PRIu32 ": data blocks not contiguous", ii.cur);
            rc = bad_block(err, r, BK_INDEX, &r->index_h, what);
            break;
        }
        rc = verify_data_block(vs, &h, &ii, err);
        if (rc != SHALE_OK) {
            break;
        }
        vs->next_off = h.offset + h.size + SST_TRAILER_SIZE;
        vs->seen.data_blocks++;
        vs->seen.data_bytes += h.size + SST_TRAILER_SIZE;
    }
    if (rc == SHALE_OK && ii.status != SHALE_OK) {
        rc = entry_error(err, r, BK_INDEX, &r->index_h, &ii);
    }
    if (rc == SHALE_OK && vs->prev.len > 0) {
        rc = buf_set(&vs->seen.largest_key, vs->prev.data, vs->prev.len - SST_TAG_SIZE, err);
        vs->seen.largest_seq =
            coding_get_fixed64((const uint8_t *)vs->prev.data + vs->prev.len - SST_TAG_SIZE) >> 8;
    }
    if (rc == SHALE_OK) {
        rc = verify_counts(vs, err);
    }
    if (rc == SHALE_OK) {
        rc = verify_layout(vs, err);
    }
    block_iter_destroy(&ii);
    unpin(r, &fp);
    unpin(r, &ip);
    return rc;
}

shale_code sst_verify(const shale_env *env, const char *path, uint64_t file_number,
                      uint64_t *blocks_checked, shale_error *err)
{
    verify_state vs;
    shale_code rc;

    memset(&vs, 0, sizeof vs);
    if (blocks_checked != NULL) {
        *blocks_checked = 0;
    }
    rc = sst_reader_open(env, path, file_number, 0, NULL, &vs.r, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (NEVER(vs.r == NULL)) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: no reader", path);
    }
    vs.blocks = 1; /* the properties block, checked by open */
    rc = verify_all(&vs, err);
    if (blocks_checked != NULL) {
        *blocks_checked = vs.blocks;
    }
    buf_free(&vs.prev);
    buf_free(&vs.prev_index);
    buf_free(&vs.io);
    buf_free(&vs.raw);
    sst_props_free(&vs.seen);
    sst_reader_close(vs.r);
    return rc;
}

/* ---- salvage ------------------------------------------------------------------------------ */

typedef struct salvage_block {
    sst_handle h;
    size_t key_off, key_len; /* the index separator, in keys */
} salvage_block;

struct sst_salvage {
    sst_reader *r;
    shale_buf blocks; /* salvage_block[n] (malloc'ed memory: aligned for them) */
    size_t n;
    shale_buf keys; /* every separator, back to back */
    shale_buf io, raw, prev;
    block b;
    block_iter bi;
    bool loaded, started;
};

static shale_code salvage_add(sst_salvage *s, const block_iter *ii, shale_error *err)
{
    sst_handle h;
    shale_code rc = index_handle(s->r, ii, &h, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    salvage_block b = {.h = h, .key_off = s->keys.len, .key_len = ii->key_len};
    rc = buf_append(&s->blocks, &b, sizeof b, err);
    if (rc == SHALE_OK) {
        rc = buf_append(&s->keys, ii->key, ii->key_len, err);
    }
    s->n += rc == SHALE_OK;
    return rc;
}

/* Lists the data blocks of the index. */
static shale_code salvage_index(sst_salvage *s, shale_error *err)
{
    pin ip;
    block_iter ii;
    shale_code rc = get_meta(s->r, BK_INDEX, false, &ip, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    block_iter_init(&ii, false);
    block_iter_set(&ii, &ip.obj->b);
    for (block_iter_seek_first(&ii); block_iter_valid(&ii) && rc == SHALE_OK;
         block_iter_next(&ii)) {
        rc = salvage_add(s, &ii, err);
    }
    if (rc == SHALE_OK && ii.status != SHALE_OK) {
        rc = entry_error(err, s->r, BK_INDEX, &s->r->index_h, &ii);
    }
    block_iter_destroy(&ii);
    unpin(s->r, &ip);
    return rc;
}

shale_code sst_salvage_open(const shale_env *env, const char *path, uint64_t file_number,
                            sst_salvage **out, shale_error *err)
{
    sst_salvage *s = calloc(1, sizeof *s);
    *out = NULL;
    if (s == NULL) {
        return no_memory(err);
    }
    block_iter_init(&s->bi, true);
    shale_code rc = open_reader(env, path, file_number, 0, NULL, true, &s->r, err);
    if (rc == SHALE_OK) {
        rc = salvage_index(s, err);
    }
    if (rc != SHALE_OK) {
        sst_salvage_close(s);
        return rc;
    }
    *out = s;
    return SHALE_OK;
}

void sst_salvage_close(sst_salvage *s)
{
    if (s == NULL) {
        return;
    }
    sst_reader_close(s->r);
    buf_free(&s->blocks);
    buf_free(&s->keys);
    buf_free(&s->io);
    buf_free(&s->raw);
    buf_free(&s->prev);
    block_iter_destroy(&s->bi);
    free(s);
}

size_t sst_salvage_blocks(const sst_salvage *s)
{
    return s->n;
}

void sst_salvage_block_at(const sst_salvage *s, size_t i, sst_handle *h, shale_slice *index_key)
{
    const salvage_block *x = (const salvage_block *)s->blocks.data + i;
    *h = x->h;
    *index_key = slice_make((const uint8_t *)s->keys.data + x->key_off, x->key_len);
}

/* Decodes every entry of the loaded block and checks what sst_builder_add would refuse and the
 * strict internal order, so that a block is taken whole or not at all. */
static shale_code salvage_check(sst_salvage *s, const sst_handle *h, uint64_t *entries,
                                shale_error *err)
{
    block_iter *bi = &s->bi;
    uint64_t prev_seq = 0, n = 0;
    char what[96];

    buf_reset(&s->prev);
    block_iter_set(bi, &s->b);
    for (block_iter_seek_first(bi); block_iter_valid(bi); block_iter_next(bi), n++) {
        uint64_t tag = block_iter_tag(bi);
        uint32_t klen = block_iter_ukey_len(bi);
        uint8_t type = (uint8_t)tag;
        shale_slice k = slice_make(bi->key, klen);
        if (klen == 0 || klen > SST_MAX_KEY_BYTES) {
            snprintf(what, sizeof what, "entry %" PRIu64 ": key of %" PRIu32 " bytes", n, klen);
            return bad_block(err, s->r, BK_DATA, h, what);
        }
        if (type > SST_TYPE_PUT_TTL || (type == SST_TYPE_DEL && bi->val_len != 0) ||
            (type == SST_TYPE_PUT_TTL && (bi->val_len < 8 || coding_get_fixed64(bi->val) == 0)) ||
            bi->val_len > (uint64_t)SST_MAX_VALUE_BYTES + 8) {
            snprintf(what, sizeof what, "entry %" PRIu64 ": bad type or value", n);
            return bad_block(err, s->r, BK_DATA, h, what);
        }
        if (n > 0 && ikey_cmp(slice_make(s->prev.data, s->prev.len), prev_seq, k, tag >> 8) >= 0) {
            snprintf(what, sizeof what, "entry %" PRIu64 ": keys out of order", n);
            return bad_block(err, s->r, BK_DATA, h, what);
        }
        shale_code rc = buf_set(&s->prev, k.data, k.len, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        prev_seq = tag >> 8;
    }
    if (bi->status != SHALE_OK) {
        return entry_error(err, s->r, BK_DATA, h, bi);
    }
    *entries = n;
    return SHALE_OK;
}

shale_code sst_salvage_load(sst_salvage *s, size_t i, uint64_t *entries, shale_error *err)
{
    const sst_handle *h = &((const salvage_block *)s->blocks.data + i)->h;
    uint64_t n = 0;
    s->loaded = false;
    shale_code rc = load_into(s->r, BK_DATA, h, &s->io, &s->raw, &s->b, NULL, err);
    if (rc == SHALE_OK) {
        rc = salvage_check(s, h, &n, err);
    }
    if (entries != NULL) {
        *entries = n;
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    block_iter_set(&s->bi, &s->b);
    block_iter_seek_first(&s->bi);
    s->loaded = true;
    s->started = false;
    return SHALE_OK;
}

bool sst_salvage_next(sst_salvage *s, ikey_entry *out)
{
    if (!s->loaded) {
        return false;
    }
    if (s->started) {
        block_iter_next(&s->bi);
    }
    s->started = true;
    s->loaded = block_iter_valid(&s->bi);
    if (s->loaded) {
        fill_entry(&s->bi, out);
    }
    return s->loaded;
}
