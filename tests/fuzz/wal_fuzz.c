/*
 * libFuzzer target for the log segment reader (src/wal/wal_reader.c) and the write batch decoder
 * (src/lsm/batch.c: batch_iterate, what recovery runs on every log record). Built and replayed
 * like every target in tests/fuzz (README.md there).
 *
 * The input is a segment file, 000007.log, served by the in-memory env (fuzz_util.h). It is read
 * to the end twice, without and with salvage, and the target traps unless:
 *   - every call returns a record, SHALE_NOT_FOUND (the end, clean or torn) or SHALE_CORRUPTION
 *     with a message naming the file (never SHALE_IO or anything else), and the end stays the end;
 *   - records start in the file, at increasing offsets, and valid_end stays within the file;
 *   - salvage changes nothing before the first damage: the records read without salvage are a
 *     prefix of those read with it, all of them when reading without salvage reached the end;
 *   - when the whole file reads cleanly (no damage, no torn tail), every truncation of it (a
 *     torn write) reads as a torn tail, never as corruption, giving exactly the records that end
 *     at or before the cut; the one exception the format allows (a valid fragment inside the cut
 *     record's bytes, wal_reader.h) is confirmed by a scan of the bytes before it is accepted.
 * All of that runs on the input and, when it differs, on a copy whose fragment checksums are
 * made right (fuzz_util.h fz_wal_fix_crcs), so mutations behind the checksums (fragment order,
 * lengths, record contents) reach the reader's record assembly and the batch decoder.
 * Every record with the batch kind, and the whole input too, goes through batch_iterate, which
 * must return SHALE_OK or SHALE_CORRUPTION; on SHALE_OK its ops must lie inside the bytes, come
 * with consecutive sequence numbers and match the header's count, and the same ops re-encoded
 * through the public shale_batch API must decode to the same ops again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "fuzz_util.h"
#include "lsm/batch.h"
#include "wal/wal_format.h"
#include "wal/wal_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIR        "/fuzz"
#define LOG_NUMBER 7u
#define LOG_PATH   DIR "/000007.log"
#define MAX_RECS   4096 /* records followed per read (a 64 KiB input holds fewer) */

typedef struct rec {
    uint64_t off, end, len;
    uint64_t hash;
} rec;

typedef struct readout {
    rec recs[MAX_RECS];
    size_t n;
    shale_code last; /* SHALE_NOT_FOUND or SHALE_CORRUPTION */
    bool open_failed;
    wal_reader_stats st;
} readout;

/* ---- batches ---- */

typedef struct op_list {
    shale_buf b; /* per op: type, seq, expiry, key len, key, value len, value */
    uint64_t n, next_seq;
    const uint8_t *lo, *hi; /* the bytes the ops must lie in */
    bool empty_key;         /* the public API refuses those: no re-encoding */
} op_list;

static void put(shale_buf *b, const void *p, size_t n)
{
    FZ_CHECK(buf_append(b, p, n, NULL) == SHALE_OK);
}

static bool inside(const op_list *l, shale_slice s)
{
    const uint8_t *p = s.data;
    return s.len == 0 || (p >= l->lo && p <= l->hi && (size_t)(l->hi - p) >= s.len);
}

static shale_code collect_op(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    (void)err;
    op_list *l = arg;
    FZ_CHECK(seq == l->next_seq);
    FZ_CHECK(op->type == BATCH_DEL || op->type == BATCH_PUT);
    FZ_CHECK(inside(l, op->key) && inside(l, op->value));
    FZ_CHECK(op->type == BATCH_PUT || (op->value.len == 0 && op->expire_at_ms == 0));
    l->next_seq++;
    l->n++;
    l->empty_key |= op->key.len == 0;
    put(&l->b, &op->type, 1);
    put(&l->b, &seq, sizeof seq);
    put(&l->b, &op->expire_at_ms, sizeof op->expire_at_ms);
    put(&l->b, &op->key.len, sizeof op->key.len);
    put(&l->b, op->key.data, op->key.len);
    put(&l->b, &op->value.len, sizeof op->value.len);
    put(&l->b, op->value.data, op->value.len);
    return SHALE_OK;
}

/* Re-encodes the ops of `rep` through the public API (keys of any length: this is the encoder,
 * not shale_write's limits). */
static shale_code reencode(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    (void)seq;
    shale_batch *b = arg;
    if (op->type == BATCH_DEL) {
        return shale_batch_delete(b, op->key, err);
    }
    if (op->expire_at_ms != 0) {
        return shale_batch_put_ttl(b, op->key, op->value, op->expire_at_ms, err);
    }
    return shale_batch_put(b, op->key, op->value, err);
}

static void check_batch(const uint8_t *rep, size_t len)
{
    /* An exact-size copy: a read past the batch is a read past this allocation. */
    uint8_t *copy = malloc(len > 0 ? len : 1);
    FZ_CHECK(copy != NULL);
    if (len > 0) {
        memcpy(copy, rep, len);
    }
    op_list l = {.lo = copy, .hi = copy + len};
    if (len >= BATCH_HEADER_BYTES) {
        l.next_seq = batch_rep_seq(copy);
    }
    shale_error err = {0};
    shale_code rc = batch_iterate(copy, len, collect_op, &l, &err);
    FZ_CHECK(rc == SHALE_OK || rc == SHALE_CORRUPTION);
    if (rc != SHALE_OK) {
        FZ_CHECK(err.msg[0] != '\0' && strncmp(err.msg, "batch", 5) == 0);
    } else {
        FZ_CHECK(len >= BATCH_HEADER_BYTES && l.n == batch_rep_count(copy));
    }
    if (rc == SHALE_OK && !l.empty_key) {
        shale_batch *b = shale_batch_new();
        FZ_CHECK(b != NULL);
        FZ_CHECK(batch_iterate(copy, len, reencode, b, &err) == SHALE_OK);
        FZ_CHECK(shale_batch_count(b) == l.n);
        FZ_CHECK(batch_ensure_header(b, &err) == SHALE_OK);
        batch_rep_set_header(b->rep.data, batch_rep_seq(copy), (uint32_t)l.n);
        op_list l2 = {.lo = b->rep.data,
                      .hi = (const uint8_t *)b->rep.data + b->rep.len,
                      .next_seq = batch_rep_seq(copy)};
        FZ_CHECK(batch_iterate(b->rep.data, b->rep.len, collect_op, &l2, &err) == SHALE_OK);
        FZ_CHECK(l2.n == l.n && l2.b.len == l.b.len &&
                 (l.b.len == 0 || memcmp(l.b.data, l2.b.data, l.b.len) == 0));
        shale_batch_free(b);
        buf_free(&l2.b);
    }
    buf_free(&l.b);
    free(copy);
}

/* ---- segments ---- */

static void read_all(const uint8_t *data, size_t size, bool salvage, readout *out)
{
    fz_env e;
    fz_env_init(&e, DIR);
    fz_env_add(&e, LOG_PATH, data, size);
    memset(out, 0, sizeof *out);
    wal_reader *r = NULL;
    shale_error err = {0};
    shale_code rc = wal_reader_open(&e.env, LOG_PATH, LOG_NUMBER, salvage, &r, &err);
    if (rc != SHALE_OK) {
        FZ_CHECK(rc == SHALE_CORRUPTION && r == NULL);
        FZ_CHECK(strstr(err.msg, "000007.log") != NULL);
        out->open_failed = true;
        out->last = rc;
        return;
    }
    uint64_t prev_off = 0;
    for (;;) {
        shale_slice s;
        uint64_t off = UINT64_MAX;
        rc = wal_reader_next(r, &s, &off, &err);
        if (rc != SHALE_OK) {
            break;
        }
        FZ_CHECK(off < size && s.len <= size - off);
        FZ_CHECK(out->n == 0 || off > prev_off);
        prev_off = off;
        wal_reader_stats st;
        wal_reader_get_stats(r, &st);
        FZ_CHECK(st.valid_end <= size);
        if (s.len > 0 && ((const uint8_t *)s.data)[0] == WAL_REC_BATCH) {
            check_batch((const uint8_t *)s.data + 1, s.len - 1);
        }
        if (out->n < MAX_RECS) {
            out->recs[out->n] = (rec){off, st.valid_end, s.len, fz_hash(s.data, s.len)};
            out->n++;
        } else {
            rc = SHALE_NOT_FOUND; /* enough: stop here (both reads stop at the same record) */
            break;
        }
    }
    FZ_CHECK(rc == SHALE_NOT_FOUND || rc == SHALE_CORRUPTION);
    if (rc == SHALE_CORRUPTION) {
        FZ_CHECK(!salvage); /* salvage skips damage; only I/O could fail it */
        FZ_CHECK(strstr(err.msg, "000007.log @") != NULL);
    }
    out->last = rc;
    /* The end (or the failure) is sticky. */
    shale_slice s;
    uint64_t off;
    shale_error err2 = {0};
    if (out->n < MAX_RECS) {
        FZ_CHECK(wal_reader_next(r, &s, &off, &err2) == rc);
    }
    wal_reader_get_stats(r, &out->st);
    FZ_CHECK(out->st.valid_end <= size && out->st.file_size == size);
    wal_reader_close(r);
}

/* Whether data[from, to) holds a fragment that reads as valid in a file of `to` bytes. */
static bool any_valid_fragment(const uint8_t *data, uint64_t from, uint64_t to)
{
    for (uint64_t o = from; o + WAL_HEADER_SIZE <= to; o++) {
        uint64_t room = WAL_BLOCK_SIZE - o % WAL_BLOCK_SIZE;
        if (room < WAL_HEADER_SIZE) {
            continue;
        }
        uint32_t len = coding_get_fixed16(data + o + 4);
        uint8_t type = data[o + 6];
        if (type == WAL_FRAG_ZERO || type > WAL_FRAG_MAX_TYPE || WAL_HEADER_SIZE + len > room ||
            o + WAL_HEADER_SIZE + len > to) {
            continue;
        }
        uint32_t crc = crc32c_extend(crc32c_value(&type, 1), data + o + WAL_HEADER_SIZE, len);
        if (crc32c_unmask(coding_get_fixed32(data + o)) == crc) {
            return true;
        }
    }
    return false;
}

static bool same_rec(const rec *a, const rec *b)
{
    return a->off == b->off && a->end == b->end && a->len == b->len && a->hash == b->hash;
}

/* A clean file cut at `cut` is a torn tail holding the records that end by the cut. */
static void check_cut(const uint8_t *data, const readout *full, uint64_t cut, readout *t)
{
    read_all(data, (size_t)cut, false, t);
    size_t want = 0;
    while (want < full->n && full->recs[want].end <= cut) {
        want++;
    }
    if (t->last == SHALE_CORRUPTION) {
        /* Allowed only if the cut bytes hold a fragment that looks valid (a record whose payload
         * embeds log framing): the reader cannot tell that from damage. */
        uint64_t from = want > 0 ? full->recs[want - 1].end : 0;
        FZ_CHECK(any_valid_fragment(data, from + 1, cut));
        return;
    }
    FZ_CHECK(!t->open_failed);
    FZ_CHECK(t->n == want);
    for (size_t i = 0; i < want; i++) {
        FZ_CHECK(same_rec(&t->recs[i], &full->recs[i]));
    }
    FZ_CHECK(t->st.valid_end == (want > 0 ? full->recs[want - 1].end : t->st.valid_end));
}

static readout ra, rb, rc_;

static void run_segment(const uint8_t *data, size_t size)
{
    read_all(data, size, false, &ra);
    read_all(data, size, true, &rb);
    /* Salvage only differs after the first damage. */
    FZ_CHECK(ra.n <= rb.n);
    for (size_t i = 0; i < ra.n; i++) {
        FZ_CHECK(same_rec(&ra.recs[i], &rb.recs[i]));
    }
    if (ra.last == SHALE_NOT_FOUND && !ra.open_failed && ra.n < MAX_RECS) {
        FZ_CHECK(rb.n == ra.n && rb.last == SHALE_NOT_FOUND);
        FZ_CHECK(rb.st.valid_end == ra.st.valid_end && rb.st.torn_tail == ra.st.torn_tail);
        FZ_CHECK(rb.st.salvaged_records == 0 && rb.st.salvaged_bytes == 0);
        FZ_CHECK(ra.n == 0 || ra.st.valid_end == ra.recs[ra.n - 1].end);
        FZ_CHECK(ra.st.torn_tail || ra.st.valid_end == size);
    }

    /* Torn writes of a clean file. */
    if (ra.last == SHALE_NOT_FOUND && !ra.open_failed && !ra.st.torn_tail && ra.n < MAX_RECS &&
        size > 1) {
        uint64_t seed = fz_hash(data, size);
        uint64_t cuts[4] = {size - 1, fz_rnd(&seed) % size, fz_rnd(&seed) % size, 0};
        if (ra.n > 0) {
            const rec *last = &ra.recs[ra.n - 1];
            cuts[3] = last->off + fz_rnd(&seed) % (last->end - last->off);
        }
        for (int i = 0; i < 4; i++) {
            if (cuts[i] > 0) {
                check_cut(data, &ra, cuts[i], &rc_);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The input as a batch on its own: salvage can hand batch_iterate any bytes. */
    check_batch(data, size);
    run_segment(data, size);
    /* And with every plausible fragment's checksum made right. */
    uint8_t *fixed = fz_copy(data, size);
    if (fz_wal_fix_crcs(fixed, size)) {
        run_segment(fixed, size);
    }
    free(fixed);
    return 0;
}
