/*
 * sst_builder: writes a table in the format of sst_format.h (contract in sst_builder.h).
 *
 * Flow (LevelDB's TableBuilder): entries go into the current data block; once it reaches
 * block_bytes it is compressed, checksummed and queued for the file. Its index entry waits for
 * the next key, so the separator can be the shortest key between the two blocks. finish writes
 * the filter, index, properties and footer, then fdatasyncs and closes.
 *
 * Data blocks carry a hash index for point lookups (block.h, sst_format.h) unless
 * no_data_block_hash; the footer's format version says which (2 with, 1 without).
 *
 * Output is gathered in `out` and handed to the file in appends of about SST_WRITE_CHUNK bytes
 * (one system call per chunk, not per 4 KiB block).
 *
 * Filter: one 64-bit hash per distinct user key (consecutive versions of a key are adjacent in
 * internal order, so comparing with the previous key dedups them). The hashes are kept until
 * finish, since the filter's size depends on the key count. That is 8 bytes per distinct user
 * key, not the 4 of sst_builder.h's contract: a 32-bit hash would also have to choose the cache
 * line, and the two uses would then be correlated (RocksDB moved to 64-bit hashes for this).
 */
#include "sst/sst_builder.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/coding.h"
#include "base/compress.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "sst/block.h"
#include "sst/bloom.h"
#include "sst/sst_format.h"

/* Appends to the file in chunks of about this size: large enough that system calls do not
 * matter, small enough to stay in the CPU caches. */
#define SST_WRITE_CHUNK ((size_t)256 << 10)

struct sst_builder {
    const shale_env *env;
    env_file *file;
    char *path;
    const char *name; /* base name inside path, for messages */
    uint64_t file_number;
    sst_builder_options o;

    uint64_t written; /* bytes handed to the file */
    shale_buf out;    /* bytes after `written`, not yet handed over */
    shale_buf cbuf;   /* compressed block scratch */

    block_builder data;
    block_builder index;
    shale_buf key;  /* internal key being added */
    shale_buf last; /* the last internal key added */
    shale_buf sep;  /* separator scratch */
    bool pending_index;
    sst_handle pending; /* the last flushed data block, waiting for its index entry */

    uint64_t *hashes;
    size_t nhashes;
    size_t cap_hashes;

    sst_props props;
    bool broken;
    shale_error sticky;
};

sst_builder_options sst_builder_default_options(void)
{
    return (sst_builder_options){
        .block_bytes = 4096,
        .restart_interval = 4,
        .bloom_bits_per_key = 10,
        .compression = COMPRESS_LZ4,
        .compression_level = 0,
        .no_data_block_hash = false,
    };
}

void sst_props_free(sst_props *p)
{
    if (p != NULL) {
        buf_free(&p->smallest_key);
        buf_free(&p->largest_key);
    }
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Records the first failure: every later call returns it. */
static shale_code fail(sst_builder *b, shale_code rc, const shale_error *e, shale_error *err)
{
    if (!b->broken) {
        b->broken = true;
        if (e != NULL) {
            err_copy(&b->sticky, e);
        } else {
            err_set(&b->sticky, rc, 0, "%s: builder failed", b->name);
        }
    }
    return err_copy(err, &b->sticky);
}

static uint64_t pos(const sst_builder *b)
{
    return b->written + b->out.len;
}

static shale_code flush_out(sst_builder *b, shale_error *err)
{
    if (b->out.len == 0) {
        return SHALE_OK;
    }
    shale_code rc = env_file_append(b->file, b->out.data, b->out.len, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    b->written += b->out.len;
    buf_reset(&b->out);
    return SHALE_OK;
}

/* Queues one block: contents (compressed when that saves 1/8 and `compress` allows) and the
 * trailer. Fills *h with where it goes. */
static shale_code write_block(sst_builder *b, const void *raw, size_t n, bool compress,
                              sst_handle *h, shale_error *err)
{
    const void *contents = raw;
    size_t len = n;
    uint8_t type = COMPRESS_NONE;
    shale_code rc;

    if (compress && b->o.compression != COMPRESS_NONE) {
        uint8_t hdr[CODING_MAX_VARINT32];
        buf_reset(&b->cbuf);
        rc = buf_append(&b->cbuf, hdr, (size_t)(coding_put_varint32(hdr, (uint32_t)n) - hdr), err);
        if (rc == SHALE_OK) {
            rc = compress_append(b->o.compression, b->o.compression_level, raw, n, &b->cbuf, err);
        }
        if (rc != SHALE_OK) {
            return rc;
        }
        if (b->cbuf.len <= n - (n >> SST_MIN_SAVING_SHIFT)) {
            contents = b->cbuf.data;
            len = b->cbuf.len;
            type = (uint8_t)b->o.compression;
        }
    }
    uint8_t trailer[SST_TRAILER_SIZE];
    uint32_t crc = crc32c_extend(crc32c_value(contents, len), &type, 1);
    trailer[0] = type;
    coding_put_fixed32(trailer + 1, crc32c_mask(crc));

    h->offset = pos(b);
    h->size = len;
    rc = buf_append(&b->out, contents, len, err);
    if (rc == SHALE_OK) {
        rc = buf_append(&b->out, trailer, sizeof trailer, err);
    }
    if (rc == SHALE_OK && b->out.len >= SST_WRITE_CHUNK) {
        rc = flush_out(b, err);
    }
    return rc;
}

shale_code sst_builder_new(const shale_env *env, const char *path, uint64_t file_number,
                           const sst_builder_options *opts, sst_builder **out, shale_error *err)
{
    sst_builder_options o = opts ? *opts : sst_builder_default_options();
    shale_code rc;

    if (o.block_bytes == 0) {
        o.block_bytes = 4096;
    }
    if (o.restart_interval == 0) {
        o.restart_interval = 4;
    }
    if (o.bloom_bits_per_key == 0) {
        o.bloom_bits_per_key = 10;
    }
    if (o.block_bytes < 256 || o.block_bytes > (1u << 20)) {
        return err_set(err, SHALE_INVALID, 0,
                       "sst: block_bytes %" PRIu32 " is outside 256 .. 1 MiB", o.block_bytes);
    }
    if (o.restart_interval > 1024) {
        return err_set(err, SHALE_INVALID, 0,
                       "sst: restart_interval %" PRIu32 " is outside 1 .. 1024",
                       o.restart_interval);
    }
    if (o.bloom_bits_per_key > 32) {
        return err_set(err, SHALE_INVALID, 0,
                       "sst: bloom_bits_per_key %" PRIu32 " is outside 1 .. 32",
                       o.bloom_bits_per_key);
    }
    if (o.compression < COMPRESS_NONE || o.compression > COMPRESS_ZSTD) {
        return err_set(err, SHALE_INVALID, 0, "sst: unknown compression %d", o.compression);
    }
    if (o.compression == COMPRESS_ZSTD && o.compression_level != 0) {
        /* Let the library judge the level once, here, rather than at the first block. */
        shale_buf probe = {0};
        rc = compress_append(COMPRESS_ZSTD, o.compression_level, "", 0, &probe, err);
        buf_free(&probe);
        if (rc != SHALE_OK) {
            return rc;
        }
    }

    sst_builder *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return err_nomem(err);
    }
    b->path = strdup(path);
    if (b->path == NULL) {
        free(b);
        return err_nomem(err);
    }
    b->name = base_name(b->path);
    b->env = env;
    b->file_number = file_number;
    b->o = o;
    block_builder_init(&b->data, o.restart_interval, !o.no_data_block_hash);
    block_builder_init(&b->index, SST_INDEX_RESTART_INTERVAL, false);
    b->props.compression = (uint32_t)o.compression;
    b->props.min_seq = UINT64_MAX;

    rc = env->open_file(env, path, ENV_WRITE | ENV_CREATE | ENV_EXCL, &b->file, err);
    if (rc != SHALE_OK) {
        b->file = NULL;
        goto out_free;
    }
    *out = b;
    return SHALE_OK;

out_free:
    block_builder_destroy(&b->data);
    block_builder_destroy(&b->index);
    free(b->path);
    free(b);
    return rc;
}

/* user key of the internal key in buf */
static shale_slice ukey_of(const shale_buf *k)
{
    return slice_make(k->data, k->len - SST_TAG_SIZE);
}

static uint64_t seq_of(const shale_buf *k)
{
    return coding_get_fixed64((const uint8_t *)k->data + k->len - SST_TAG_SIZE) >> 8;
}

/* Adds the index entry for the pending block: a key K with last <= K < first key of the next
 * block (next_ukey; NULL after the last block), as short as LevelDB makes it. */
static shale_code add_index_entry(sst_builder *b, const shale_slice *next_ukey, shale_error *err)
{
    shale_slice a = ukey_of(&b->last);
    const uint8_t *ap = a.data;
    size_t cut = 0; /* length of the shortened user key, 0 if none */
    shale_code rc;

    if (next_ukey != NULL) {
        const uint8_t *bp = next_ukey->data;
        size_t n = a.len < next_ukey->len ? a.len : next_ukey->len;
        size_t i = 0;
        while (i < n && ap[i] == bp[i]) {
            i++;
        }
        if (i < n && ap[i] < 0xff && ap[i] + 1 < bp[i]) {
            cut = i + 1;
        }
    } else {
        for (size_t i = 0; i < a.len; i++) {
            if (ap[i] != 0xff) {
                cut = i + 1;
                break;
            }
        }
    }
    uint8_t tag[SST_TAG_SIZE];
    buf_reset(&b->sep);
    if (cut > 0) {
        /* a[0, cut-1) ++ (a[cut-1] + 1): greater than a, smaller than next; first version. */
        rc = buf_append(&b->sep, ap, cut, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        ((uint8_t *)b->sep.data)[cut - 1]++;
        coding_put_fixed64(tag, IKEY_MAX_SEQ << 8);
    } else {
        rc = buf_append(&b->sep, ap, a.len, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        coding_put_fixed64(tag, seq_of(&b->last) << 8);
    }
    rc = buf_append(&b->sep, tag, sizeof tag, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    uint8_t hv[SST_MAX_HANDLE_BYTES];
    uint8_t *p = coding_put_varint64(hv, b->pending.offset);
    p = coding_put_varint64(p, b->pending.size);
    rc = block_builder_add(&b->index, b->sep.data, b->sep.len, hv, (size_t)(p - hv), NULL, 0, err);
    if (rc == SHALE_OK) {
        b->pending_index = false;
    }
    return rc;
}

static shale_code flush_data_block(sst_builder *b, shale_error *err)
{
    shale_code rc = block_builder_finish(&b->data, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = write_block(b, b->data.buf.data, b->data.buf.len, true, &b->pending, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    b->pending_index = true;
    b->props.data_bytes += b->pending.size + SST_TRAILER_SIZE;
    b->props.data_blocks++;
    block_builder_reset(&b->data);
    return SHALE_OK;
}

static shale_code push_hash(sst_builder *b, shale_slice key, shale_error *err)
{
    if (b->nhashes == b->cap_hashes) {
        size_t cap = b->cap_hashes ? 2 * b->cap_hashes : 1024;
        uint64_t *h = realloc(b->hashes, cap * sizeof *h);
        if (h == NULL) {
            return err_nomem(err);
        }
        b->hashes = h;
        b->cap_hashes = cap;
    }
    b->hashes[b->nhashes++] = bloom_hash(key.data, key.len);
    return SHALE_OK;
}

static shale_code check_entry(const sst_builder *b, const ikey_entry *e, shale_error *err)
{
    if (e->key.len == 0 || e->key.len > SST_MAX_KEY_BYTES) {
        return err_set(err, SHALE_INVALID, 0, "%s: key of %zu bytes (1 .. %u allowed)", b->name,
                       e->key.len, SST_MAX_KEY_BYTES);
    }
    if (e->value.len > SST_MAX_VALUE_BYTES) {
        return err_set(err, SHALE_INVALID, 0, "%s: value of %zu bytes (at most %u allowed)",
                       b->name, e->value.len, SST_MAX_VALUE_BYTES);
    }
    if (e->seq > IKEY_MAX_SEQ) {
        return err_set(err, SHALE_INVALID, 0, "%s: seq %" PRIu64 " above the 56-bit limit", b->name,
                       e->seq);
    }
    if (e->type != IKEY_DEL && e->type != IKEY_PUT) {
        return err_set(err, SHALE_INVALID, 0, "%s: unknown entry type %u", b->name, e->type);
    }
    if (e->type == IKEY_DEL && (e->expire_at_ms != 0 || e->value.len != 0)) {
        return err_set(err, SHALE_INVALID, 0, "%s: a deletion with a value or a deadline", b->name);
    }
    if (b->last.len > 0 && ikey_cmp(e->key, e->seq, ukey_of(&b->last), seq_of(&b->last)) <= 0) {
        return err_set(err, SHALE_INVALID, 0,
                       "%s: entry (%zu-byte key, seq %" PRIu64 ") not after the previous one",
                       b->name, e->key.len, e->seq);
    }
    return SHALE_OK;
}

shale_code sst_builder_add(sst_builder *b, const ikey_entry *e, shale_error *err)
{
    shale_error lerr;
    shale_code rc;

    if (b->broken) {
        return err_copy(err, &b->sticky);
    }
    rc = check_entry(b, e, &lerr);
    if (rc != SHALE_OK) {
        return fail(b, rc, &lerr, err);
    }
    bool new_ukey = b->last.len == 0 || !slice_eq(e->key, ukey_of(&b->last));
    uint8_t type =
        e->type == IKEY_DEL ? SST_TYPE_DEL : (e->expire_at_ms ? SST_TYPE_PUT_TTL : SST_TYPE_PUT);
    uint8_t tag[SST_TAG_SIZE];
    uint8_t exp[8];

    coding_put_fixed64(tag, e->seq << 8 | type);
    buf_reset(&b->key);
    rc = buf_append(&b->key, e->key.data, e->key.len, &lerr);
    if (rc == SHALE_OK) {
        rc = buf_append(&b->key, tag, sizeof tag, &lerr);
    }
    if (rc == SHALE_OK && b->pending_index) {
        rc = add_index_entry(b, &e->key, &lerr);
    }
    if (rc == SHALE_OK && new_ukey) {
        rc = push_hash(b, e->key, &lerr);
    }
    if (rc == SHALE_OK) {
        coding_put_fixed64(exp, e->expire_at_ms);
        rc = block_builder_add(&b->data, b->key.data, b->key.len, exp,
                               type == SST_TYPE_PUT_TTL ? sizeof exp : 0, e->value.data,
                               e->value.len, &lerr);
    }
    if (rc != SHALE_OK) {
        return fail(b, rc, &lerr, err);
    }

    sst_props *p = &b->props;
    if (p->entries == 0) {
        rc = buf_set(&p->smallest_key, e->key.data, e->key.len, &lerr);
        if (rc != SHALE_OK) {
            return fail(b, rc, &lerr, err);
        }
        p->smallest_seq = e->seq;
    }
    p->entries++;
    p->deletions += type == SST_TYPE_DEL;
    p->ttl_entries += type == SST_TYPE_PUT_TTL;
    p->min_seq = e->seq < p->min_seq ? e->seq : p->min_seq;
    p->max_seq = e->seq > p->max_seq ? e->seq : p->max_seq;
    p->raw_key_bytes += e->key.len;
    p->raw_value_bytes += e->value.len;

    shale_buf t = b->last; /* the new key becomes the last; reuse the old one's memory */
    b->last = b->key;
    b->key = t;

    if (block_builder_size(&b->data) >= b->o.block_bytes) {
        rc = flush_data_block(b, &lerr);
        if (rc != SHALE_OK) {
            return fail(b, rc, &lerr, err);
        }
    }
    return SHALE_OK;
}

uint64_t sst_builder_file_size(const sst_builder *b)
{
    uint64_t filter = (uint64_t)b->nhashes * b->o.bloom_bits_per_key / 8 + BLOOM_META_BYTES;
    uint64_t props =
        4 + 8 * SST_PROP_COUNT + 2 * CODING_MAX_VARINT32 + b->props.smallest_key.len + b->last.len;
    return pos(b) + (block_builder_empty(&b->data) ? 0 : block_builder_size(&b->data)) +
           block_builder_size(&b->index) + filter + props + 4 * SST_TRAILER_SIZE + SST_FOOTER_SIZE;
}

uint64_t sst_builder_entries(const sst_builder *b)
{
    return b->props.entries;
}

static shale_code encode_props(const sst_props *p, shale_buf *out, size_t *file_size_at,
                               shale_error *err)
{
    uint64_t f[SST_PROP_COUNT];
    f[SST_PROP_ENTRIES] = p->entries;
    f[SST_PROP_DELETIONS] = p->deletions;
    f[SST_PROP_TTL_ENTRIES] = p->ttl_entries;
    f[SST_PROP_MIN_SEQ] = p->min_seq;
    f[SST_PROP_MAX_SEQ] = p->max_seq;
    f[SST_PROP_RAW_KEY_BYTES] = p->raw_key_bytes;
    f[SST_PROP_RAW_VALUE_BYTES] = p->raw_value_bytes;
    f[SST_PROP_DATA_BYTES] = p->data_bytes;
    f[SST_PROP_INDEX_BYTES] = p->index_bytes;
    f[SST_PROP_FILTER_BYTES] = p->filter_bytes;
    f[SST_PROP_DATA_BLOCKS] = p->data_blocks;
    f[SST_PROP_FILE_SIZE] = p->file_size;
    f[SST_PROP_CREATED_AT_MS] = p->created_at_ms;
    f[SST_PROP_COMPRESSION] = p->compression;
    f[SST_PROP_SMALLEST_SEQ] = p->smallest_seq;
    f[SST_PROP_LARGEST_SEQ] = p->largest_seq;

    size_t need =
        4 + 8 * SST_PROP_COUNT + 2 * CODING_MAX_VARINT32 + p->smallest_key.len + p->largest_key.len;
    shale_code rc = buf_reserve(out, need, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    uint8_t *s = (uint8_t *)out->data + out->len;
    uint8_t *q = s;
    coding_put_fixed32(q, SST_PROP_COUNT);
    q += 4;
    for (int i = 0; i < SST_PROP_COUNT; i++) {
        coding_put_fixed64(q, f[i]);
        q += 8;
    }
    *file_size_at = out->len + 4 + 8 * SST_PROP_FILE_SIZE;
    q = coding_put_varint32(q, (uint32_t)p->smallest_key.len);
    memcpy(q, p->smallest_key.data, p->smallest_key.len);
    q += p->smallest_key.len;
    q = coding_put_varint32(q, (uint32_t)p->largest_key.len);
    memcpy(q, p->largest_key.data, p->largest_key.len);
    q += p->largest_key.len;
    out->len += (size_t)(q - s);
    return SHALE_OK;
}

static void encode_footer(uint8_t *f, const sst_handle *index, const sst_handle *filter,
                          const sst_handle *props, uint64_t file_number, uint32_t version)
{
    coding_put_fixed64(f + SST_FOOTER_INDEX, index->offset);
    coding_put_fixed64(f + SST_FOOTER_INDEX + 8, index->size);
    coding_put_fixed64(f + SST_FOOTER_FILTER, filter->offset);
    coding_put_fixed64(f + SST_FOOTER_FILTER + 8, filter->size);
    coding_put_fixed64(f + SST_FOOTER_PROPS, props->offset);
    coding_put_fixed64(f + SST_FOOTER_PROPS + 8, props->size);
    coding_put_fixed64(f + SST_FOOTER_NUMBER, file_number);
    coding_put_fixed32(f + SST_FOOTER_VERSION, version);
    coding_put_fixed32(f + SST_FOOTER_CRC, crc32c_mask(crc32c_value(f, SST_FOOTER_CRC)));
    coding_put_fixed64(f + SST_FOOTER_MAGIC, SST_MAGIC);
}

/* Everything after the last data entry, up to a synced, closed file. */
static shale_code write_tail(sst_builder *b, shale_error *err)
{
    sst_handle filter, index, props;
    shale_code rc;

    if (!block_builder_empty(&b->data)) {
        rc = flush_data_block(b, err);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    if (b->pending_index) {
        rc = add_index_entry(b, NULL, err);
        if (rc != SHALE_OK) {
            return rc;
        }
    }

    buf_reset(&b->sep);
    rc = bloom_build(b->hashes, b->nhashes, b->o.bloom_bits_per_key, &b->sep, err);
    if (rc == SHALE_OK) {
        rc = write_block(b, b->sep.data, b->sep.len, false, &filter, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    b->props.filter_bytes = filter.size + SST_TRAILER_SIZE;

    rc = block_builder_finish(&b->index, err);
    if (rc == SHALE_OK) {
        rc = write_block(b, b->index.buf.data, b->index.buf.len, true, &index, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    b->props.index_bytes = index.size + SST_TRAILER_SIZE;

    sst_props *p = &b->props;
    rc = buf_set(&p->largest_key, b->last.data, b->last.len - SST_TAG_SIZE, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    p->largest_seq = seq_of(&b->last);
    p->created_at_ms = b->env->now_ms(b->env);
    p->file_size = 0;

    size_t fs_at;
    buf_reset(&b->sep);
    rc = encode_props(p, &b->sep, &fs_at, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    p->file_size = pos(b) + b->sep.len + SST_TRAILER_SIZE + SST_FOOTER_SIZE;
    coding_put_fixed64((uint8_t *)b->sep.data + fs_at, p->file_size);
    rc = write_block(b, b->sep.data, b->sep.len, false, &props, err);
    if (rc != SHALE_OK) {
        return rc;
    }

    uint8_t footer[SST_FOOTER_SIZE];
    /* Version 1 without the hash index, so builds that predate it still read the table. */
    encode_footer(footer, &index, &filter, &props, b->file_number,
                  b->o.no_data_block_hash ? SST_FORMAT_VERSION_MIN : SST_FORMAT_VERSION);
    rc = buf_append(&b->out, footer, sizeof footer, err);
    if (rc == SHALE_OK) {
        rc = flush_out(b, err);
    }
    if (rc == SHALE_OK) {
        rc = env_file_sync(b->file, true, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    env_file *f = b->file;
    b->file = NULL;
    return env_file_close(f, err);
}

static void builder_free(sst_builder *b)
{
    block_builder_destroy(&b->data);
    block_builder_destroy(&b->index);
    buf_free(&b->out);
    buf_free(&b->cbuf);
    buf_free(&b->key);
    buf_free(&b->last);
    buf_free(&b->sep);
    free(b->hashes);
    sst_props_free(&b->props);
    free(b->path);
    free(b);
}

void sst_builder_abandon(sst_builder *b)
{
    if (b == NULL) {
        return;
    }
    if (b->file != NULL) {
        (void)env_file_close(b->file, NULL);
        b->file = NULL;
    }
    (void)b->env->remove_file(b->env, b->path, NULL);
    builder_free(b);
}

shale_code sst_builder_finish(sst_builder *b, sst_props *props, shale_error *err)
{
    shale_code rc;

    if (b->broken) {
        rc = err_copy(err, &b->sticky);
        sst_builder_abandon(b);
        return rc;
    }
    if (b->props.entries == 0) {
        rc = err_set(err, SHALE_INVALID, 0, "%s: a table needs at least one entry", b->name);
        sst_builder_abandon(b);
        return rc;
    }
    rc = write_tail(b, err);
    if (rc != SHALE_OK) {
        sst_builder_abandon(b);
        return rc;
    }
    if (props != NULL) {
        *props = b->props;
        memset(&b->props.smallest_key, 0, sizeof b->props.smallest_key);
        memset(&b->props.largest_key, 0, sizeof b->props.largest_key);
    }
    builder_free(b);
    return SHALE_OK;
}
