/*
 * repair: salvage a damaged database into a new one (contract: repair.h).
 *
 * Shape of a run:
 *   1. src is checked (a directory holding Shale files), its LOCK taken, dst checked (missing or
 *      empty) and created.
 *   2. The source manifest is recovered read-only, for information only (last_seq, a note when it
 *      does not recover).
 *   3. Every log segment (file-number order) is read with the log reader's salvage; each batch
 *      that decodes goes into an in-memory run of entries; a run that passes spill_bytes is
 *      sorted and written to a temporary table in dst.
 *   4. Every source table and every spill table becomes a salvage iterator (below): it reads the
 *      footer and the index, then one data block at a time, checksummed, expanded and
 *      decoded whole before any of its entries is handed out, so a damaged block is skipped
 *      whole and reported, and the iterator goes on with the next block. The sorted in-memory
 *      run is one more child; merge_iter yields the union in internal order.
 *   5. The merged stream is written with sst_builder into tables at the bottom level, cut at
 *      user-key boundaries once past table_bytes. A (key, seq) met twice (a log segment kept for
 *      the one-edit lag and the table that covers it, a compaction input left over beside its
 *      output) is written once; an entry out of order (damage behind a valid checksum) is
 *      dropped and reported.
 *   6. The directory is fsynced, spill tables removed, the manifest created (version_set_create,
 *      then one version_set_apply listing the tables), and the identity file written last.
 *
 * Tables are read through sst_reader's salvage API (sst_reader.h, "Salvage"): a reader's
 * iterator becomes invalid at the first damaged block and sst_verify stops at the first damage,
 * while a salvage lists the index once and loads each data block on its own, so the reading of
 * blocks (checksum, expansion, entry checks) is sst_reader's, and only the reporting is here.
 *
 * What "take all tables and logs" can bring back: an obsolete file left over (a compaction input
 * whose deletion was cut short, an obsolete log) may hold a put whose tombstone a later
 * compaction dropped at the bottom level together with it; repair then resurrects that put.
 * RocksDB's RepairDB has the same limit. Shale deletes such leftovers at every open, so it needs
 * a crash between the compaction and the next open, then damage bad enough to need repair.
 */
#include "lsm/repair.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/ikey.h"
#include "base/iter.h"
#include "lsm/batch.h"
#include "lsm/identity.h"
#include "lsm/merge_iter.h"
#include "lsm/version.h"
#include "sst/sst_builder.h"
#include "sst/sst_format.h"
#include "sst/sst_reader.h"
#include "wal/wal_format.h"
#include "wal/wal_reader.h"

#define DEFAULT_SPILL_BYTES ((uint64_t)64 << 20)
#define DEFAULT_TABLE_BYTES ((uint64_t)64 << 20)
#define OUTPUT_LEVEL        (VERSION_LEVELS - 1)

typedef struct ctx {
    const shale_env *env;
    const char *src, *dst;
    repair_report *rep;
    uint64_t spill_bytes, table_bytes;
    uint64_t next_number; /* file numbers in dst */
    uint64_t *spills;     /* spill table numbers */
    size_t nspills;
} ctx;

/* ---- the report ---- */

static void add_loss(repair_report *rep, const char *file, uint64_t offset, uint64_t bytes,
                     bool note, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void add_loss(repair_report *rep, const char *file, uint64_t offset, uint64_t bytes,
                     bool note, const char *fmt, ...)
{
    rep->nlosses_total++;
    if (rep->nlosses >= REPAIR_MAX_LOSSES) {
        return;
    }
    repair_loss *l = &rep->losses[rep->nlosses++];
    snprintf(l->file, sizeof l->file, "%s", file);
    l->offset = offset;
    l->bytes = bytes;
    l->note = note;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->what, sizeof l->what, fmt, ap);
    va_end(ap);
}

bool repair_lost_anything(const repair_report *rep)
{
    if (rep->tables_lost || rep->blocks_lost || rep->log_records_lost) {
        return true;
    }
    for (size_t i = 0; i < rep->nlosses; i++) {
        if (!rep->losses[i].note) {
            return true;
        }
    }
    return false;
}

/* A user key for a message: printable bytes as they are, others as \xNN, at most ~40 bytes. */
static void show_key(const uint8_t *k, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        if (o > 40) {
            o += (size_t)snprintf(out + o, cap - o, "...");
            break;
        }
        if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '"' && k[i] != '\\') {
            out[o++] = (char)k[i];
        } else {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", k[i]);
        }
    }
    out[o < cap ? o : cap - 1] = '\0';
}

/* ---- the salvage iterator over one table ---- */

/* A forward-only iterator (base/iter.h) over the entries of every data block of one table that
 * sst_salvage_load accepts; the others are reported as lost as it meets them. */
typedef struct tsalv {
    iter base;
    repair_report *rep;
    bool count; /* a source table (false: our own spill table) */
    char name[32];
    sst_salvage *s;
    size_t next_block;
    ikey_entry cur;
    bool valid;
    shale_code status;
    shale_error err;
} tsalv;

/* The user key of an index separator, for a message (empty when too short to hold one). */
static void show_separator(const tsalv *t, size_t i, char *out, size_t cap)
{
    sst_handle h;
    shale_slice k;
    sst_salvage_block_at(t->s, i, &h, &k);
    out[0] = '\0';
    if (k.len >= SST_TAG_SIZE) {
        show_key(k.data, k.len - SST_TAG_SIZE, out, cap);
    }
}

static void lost_block(tsalv *t, size_t i, const shale_error *why)
{
    char lo[192] = "", hi[192] = "";
    size_t n = sst_salvage_blocks(t->s);
    sst_handle h;
    shale_slice k;
    sst_salvage_block_at(t->s, i, &h, &k);
    if (i > 0) {
        show_separator(t, i - 1, lo, sizeof lo);
    }
    show_separator(t, i, hi, sizeof hi);
    t->rep->blocks_lost++;
    t->rep->block_lost_bytes += h.size + SST_TRAILER_SIZE;
    if (i > 0) {
        add_loss(t->rep, t->name, h.offset, h.size + SST_TRAILER_SIZE, false,
                 "%s (block %zu of %zu); lost its entries of keys after \"%s\" up to \"%s\"",
                 why->msg, i, n, lo, hi);
    } else {
        add_loss(t->rep, t->name, h.offset, h.size + SST_TRAILER_SIZE, false,
                 "%s (block %zu of %zu); lost its entries of keys up to \"%s\"", why->msg, i, n,
                 hi);
    }
}

/* Moves to the first entry of the first good block from next_block on. */
static void load_next(tsalv *t)
{
    t->valid = false;
    while (t->next_block < sst_salvage_blocks(t->s)) {
        size_t i = t->next_block++;
        shale_error e = {0};
        uint64_t entries = 0;
        shale_code rc = sst_salvage_load(t->s, i, &entries, &e);
        if (rc == SHALE_NOMEM) {
            t->status = rc;
            t->err = e;
            return;
        }
        if (rc != SHALE_OK) {
            lost_block(t, i, &e);
            continue;
        }
        if (t->count) {
            t->rep->blocks_salvaged++;
            t->rep->entries_read += entries;
        }
        t->valid = sst_salvage_next(t->s, &t->cur);
        if (t->valid) {
            return;
        }
    }
}

static bool ts_valid(const iter *it)
{
    return ((const tsalv *)it)->valid;
}

static void ts_unsupported(tsalv *t)
{
    t->valid = false;
    t->status = err_set(&t->err, SHALE_INVALID, 0, "%s: repair reads tables forward only", t->name);
}

static void ts_seek(iter *it, shale_slice key, uint64_t seq)
{
    (void)key;
    (void)seq;
    ts_unsupported((tsalv *)it);
}

static void ts_seek_first(iter *it)
{
    tsalv *t = (tsalv *)it;
    t->next_block = 0;
    load_next(t);
}

static void ts_seek_last(iter *it)
{
    ts_unsupported((tsalv *)it);
}

static void ts_next(iter *it)
{
    tsalv *t = (tsalv *)it;
    t->valid = sst_salvage_next(t->s, &t->cur);
    if (!t->valid) {
        load_next(t);
    }
}

static void ts_prev(iter *it)
{
    ts_unsupported((tsalv *)it);
}

static void ts_entry(const iter *it, ikey_entry *e)
{
    *e = ((const tsalv *)it)->cur;
}

static shale_code ts_status(const iter *it, shale_error *err)
{
    const tsalv *t = (const tsalv *)it;
    return t->status == SHALE_OK ? SHALE_OK : err_copy(err, &t->err);
}

static void ts_destroy(iter *it)
{
    tsalv *t = (tsalv *)it;
    sst_salvage_close(t->s);
    free(t);
}

static const iter_ops ts_ops = {
    .valid = ts_valid,
    .seek = ts_seek,
    .seek_first = ts_seek_first,
    .seek_last = ts_seek_last,
    .next = ts_next,
    .prev = ts_prev,
    .entry = ts_entry,
    .status = ts_status,
    .destroy = ts_destroy,
};

/* A salvage iterator over dir/NNNNNN.sst into *out, or *out NULL when the table is lost whole
 * (reported). Fails only for SHALE_NOMEM. */
static shale_code tsalv_open(ctx *c, const char *dir, uint64_t number, bool count, iter **out,
                             shale_error *err)
{
    char path[4096];
    shale_error e = {0};
    tsalv *t = calloc(1, sizeof *t);

    *out = NULL;
    if (t == NULL) {
        return err_nomem(err);
    }
    t->base.ops = &ts_ops;
    t->rep = c->rep;
    t->count = count;
    version_table_name(path, sizeof path, dir, number);
    /* The table's own name: NNNNNN.sst, at most 24 bytes (a 20-digit number). */
    snprintf(t->name, sizeof t->name, "%06" PRIu64 ".sst", number);
    shale_code rc = sst_salvage_open(c->env, path, number, &t->s, &e);
    if (rc == SHALE_NOMEM) {
        ts_destroy(&t->base);
        return err_copy(err, &e);
    }
    if (count) {
        c->rep->tables_read += rc == SHALE_OK;
    }
    if (rc != SHALE_OK) {
        bool is_dir = false;
        uint64_t size = 0;
        (void)c->env->stat_path(c->env, path, &is_dir, &size, NULL);
        c->rep->tables_lost++;
        c->rep->table_lost_bytes += size;
        add_loss(c->rep, t->name, 0, size, false, "%s; the whole table (%" PRIu64 " bytes) is lost",
                 e.msg, size);
        ts_destroy(&t->base);
        return SHALE_OK;
    }
    *out = &t->base;
    return SHALE_OK;
}

/* ---- log records: the in-memory run ---- */

typedef struct run_ent {
    size_t off; /* key at data[off], value right after it */
    uint32_t klen, vlen;
    uint64_t seq, expire;
    uint8_t type;
} run_ent;

typedef struct run {
    shale_buf data;
    run_ent *v;
    size_t n, cap;
} run;

static int cmp_run(const void *a, const void *b, void *arg)
{
    const run_ent *x = a, *y = b;
    const uint8_t *d = arg;
    return ikey_cmp(slice_make(d + x->off, x->klen), x->seq, slice_make(d + y->off, y->klen),
                    y->seq);
}

static void run_sort(run *r)
{
    if (r->n > 1) {
        qsort_r(r->v, r->n, sizeof *r->v, cmp_run, r->data.data);
    }
}

static void run_reset(run *r)
{
    buf_reset(&r->data);
    r->n = 0;
}

static void run_free(run *r)
{
    buf_free(&r->data);
    free(r->v);
}

static uint64_t run_bytes(const run *r)
{
    return r->data.len + r->n * sizeof(run_ent);
}

static void run_get(const run *r, size_t i, ikey_entry *e)
{
    const run_ent *x = &r->v[i];
    const uint8_t *d = r->data.data;
    e->key = slice_make(d + x->off, x->klen);
    e->value = slice_make(d + x->off + x->klen, x->vlen);
    e->seq = x->seq;
    e->expire_at_ms = x->expire;
    e->type = x->type;
}

/* A forward iterator over a sorted run (it borrows the run). */
typedef struct rit {
    iter base;
    const run *r;
    size_t pos;
    bool positioned;
} rit;

static bool rit_valid(const iter *it)
{
    const rit *r = (const rit *)it;
    return r->positioned && r->pos < r->r->n;
}
static void rit_seek(iter *it, shale_slice key, uint64_t seq)
{
    rit *r = (rit *)it;
    r->positioned = true;
    r->pos = 0;
    while (r->pos < r->r->n) {
        ikey_entry e;
        run_get(r->r, r->pos, &e);
        if (ikey_cmp(e.key, e.seq, key, seq) >= 0) {
            break;
        }
        r->pos++;
    }
}
static void rit_seek_first(iter *it)
{
    rit *r = (rit *)it;
    r->positioned = true;
    r->pos = 0;
}
static void rit_seek_last(iter *it)
{
    rit *r = (rit *)it;
    r->positioned = r->r->n > 0;
    r->pos = r->r->n ? r->r->n - 1 : 0;
}
static void rit_next(iter *it)
{
    ((rit *)it)->pos++;
}
static void rit_prev(iter *it)
{
    rit *r = (rit *)it;
    if (r->pos == 0) {
        r->positioned = false;
    } else {
        r->pos--;
    }
}
static void rit_entry(const iter *it, ikey_entry *out)
{
    const rit *r = (const rit *)it;
    run_get(r->r, r->pos, out);
}
static shale_code rit_status(const iter *it, shale_error *err)
{
    (void)it;
    (void)err;
    return SHALE_OK;
}
static void rit_destroy(iter *it)
{
    free(it);
}

static const iter_ops rit_ops = {
    .valid = rit_valid,
    .seek = rit_seek,
    .seek_first = rit_seek_first,
    .seek_last = rit_seek_last,
    .next = rit_next,
    .prev = rit_prev,
    .entry = rit_entry,
    .status = rit_status,
    .destroy = rit_destroy,
};

static iter *rit_new(const run *r)
{
    rit *it = calloc(1, sizeof *it);
    if (it != NULL) {
        it->base.ops = &rit_ops;
        it->r = r;
    }
    return it ? &it->base : NULL;
}

/* ---- writing tables ---- */

typedef struct writer {
    ctx *c;
    version_edit *edit; /* NULL for a spill table (not listed) */
    int level;
    sst_builder *b;
    uint64_t number;
    shale_buf last;
    uint64_t last_seq;
    bool have_last;
    bool counting; /* the final output: counts entries_written and the seq range */
} writer;

static shale_code out_finish(writer *o, shale_error *err)
{
    sst_props props;
    shale_code rc;

    if (o->b == NULL) {
        return SHALE_OK;
    }
    memset(&props, 0, sizeof props);
    rc = sst_builder_finish(o->b, &props, err);
    o->b = NULL;
    if (rc != SHALE_OK) {
        return rc;
    }
    if (o->edit != NULL) {
        rc = version_edit_add_file(
            o->edit, o->level, o->number, props.file_size,
            slice_make(props.smallest_key.data, props.smallest_key.len), props.smallest_seq,
            slice_make(props.largest_key.data, props.largest_key.len), props.largest_seq,
            props.min_seq, props.max_seq, props.entries, props.deletions, err);
        o->c->rep->tables_written++;
    }
    sst_props_free(&props);
    return rc;
}

/* Adds e (skipping a repeated (key, seq), reporting one out of order); cuts the table at a new
 * user key once it passed table_bytes. */
static shale_code out_add(writer *o, const ikey_entry *e, shale_error *err)
{
    ctx *c = o->c;
    shale_code rc;
    bool new_key = true;

    if (o->have_last) {
        shale_slice last = slice_make(o->last.data, o->last.len);
        int cmp = ikey_cmp(last, o->last_seq, e->key, e->seq);
        if (cmp == 0) {
            return SHALE_OK; /* the same write found in two sources */
        }
        if (cmp > 0) {
            char k[192];
            show_key(e->key.data, e->key.len, k, sizeof k);
            add_loss(c->rep, "-", 0, e->key.len + e->value.len, false,
                     "an entry of key \"%s\" seq %" PRIu64
                     " came out of order (damage behind a valid checksum): dropped",
                     k, e->seq);
            return SHALE_OK;
        }
        new_key = !slice_eq(last, e->key);
    }
    /* Only the final output is cut: a spill is one table, whatever its size. */
    if (o->b != NULL && o->edit != NULL && new_key &&
        sst_builder_file_size(o->b) >= c->table_bytes) {
        if ((rc = out_finish(o, err)) != SHALE_OK) {
            return rc;
        }
    }
    if (o->b == NULL) {
        char path[4096];
        sst_builder_options bo = sst_builder_default_options();
        o->number = c->next_number++;
        version_table_name(path, sizeof path, c->dst, o->number);
        if ((rc = sst_builder_new(c->env, path, o->number, &bo, &o->b, err)) != SHALE_OK) {
            return rc;
        }
    }
    if ((rc = sst_builder_add(o->b, e, err)) != SHALE_OK) {
        return rc;
    }
    buf_reset(&o->last);
    if ((rc = buf_append(&o->last, e->key.data, e->key.len, err)) != SHALE_OK) {
        return rc;
    }
    o->last_seq = e->seq;
    o->have_last = true;
    if (o->counting) {
        repair_report *rep = c->rep;
        rep->entries_written++;
        if (rep->first_seq == 0 || e->seq < rep->first_seq) {
            rep->first_seq = e->seq;
        }
        if (e->seq > rep->last_seq) {
            rep->last_seq = e->seq;
        }
    }
    return SHALE_OK;
}

/* Sorts the run and writes it to one spill table in dst. */
static shale_code spill(ctx *c, run *r, shale_error *err)
{
    writer o = {.c = c};
    shale_code rc = SHALE_OK;

    if (r->n == 0) {
        return SHALE_OK;
    }
    uint64_t *v = realloc(c->spills, (c->nspills + 1) * sizeof *v);
    if (v == NULL) {
        return err_nomem(err);
    }
    c->spills = v;
    run_sort(r);
    for (size_t i = 0; i < r->n && rc == SHALE_OK; i++) {
        ikey_entry e;
        run_get(r, i, &e);
        rc = out_add(&o, &e, err);
    }
    if (rc == SHALE_OK) {
        c->spills[c->nspills++] = o.number;
        rc = out_finish(&o, err);
    } else {
        sst_builder_abandon(o.b);
    }
    buf_free(&o.last);
    run_reset(r);
    return rc;
}

/* ---- reading the logs ---- */

typedef struct batch_check {
    run *r;
    bool add;
    const char *why;
} batch_check;

static shale_code on_op(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    batch_check *bc = arg;
    if (op->key.len == 0 || op->key.len > SST_MAX_KEY_BYTES ||
        op->value.len > SST_MAX_VALUE_BYTES || seq == 0 || seq > IKEY_MAX_SEQ ||
        (op->type != BATCH_DEL && op->type != BATCH_PUT)) {
        bc->why = "an op the tables cannot hold (empty or oversized key or value, bad seq)";
        return err_set(err, SHALE_CORRUPTION, 0, "bad op");
    }
    if (!bc->add) {
        return SHALE_OK;
    }
    run *r = bc->r;
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 1024;
        run_ent *v = realloc(r->v, ncap * sizeof *v);
        if (v == NULL) {
            return err_nomem(err);
        }
        r->v = v;
        r->cap = ncap;
    }
    run_ent *x = &r->v[r->n];
    bool del = op->type == BATCH_DEL;
    x->off = r->data.len;
    x->klen = (uint32_t)op->key.len;
    x->vlen = del ? 0 : (uint32_t)op->value.len;
    x->seq = seq;
    x->expire = del ? 0 : op->expire_at_ms;
    x->type = del ? IKEY_DEL : IKEY_PUT;
    shale_code rc = buf_append(&r->data, op->key.data, op->key.len, err);
    if (rc == SHALE_OK && x->vlen > 0) {
        rc = buf_append(&r->data, op->value.data, op->value.len, err);
    }
    if (rc == SHALE_OK) {
        r->n++;
    }
    return rc;
}

/* Takes one log record (kind byte first) into the run, or reports it lost. */
static shale_code take_record(ctx *c, run *r, const char *name, shale_slice rec, uint64_t off,
                              shale_error *err)
{
    const uint8_t *p = rec.data;
    const char *why = NULL;
    batch_check bc = {.r = r};
    shale_error e = {0};

    if (rec.len == 0 || p[0] != WAL_REC_BATCH) {
        why = "not a batch record";
    } else if (rec.len - 1 < BATCH_HEADER_BYTES || batch_rep_count(p + 1) == 0) {
        why = "batch shorter than its header or empty";
    } else {
        uint64_t seq = batch_rep_seq(p + 1), count = batch_rep_count(p + 1);
        if (seq == 0 || seq > IKEY_MAX_SEQ || count - 1 > IKEY_MAX_SEQ - seq) {
            why = "sequence numbers out of range";
        } else if (batch_iterate(p + 1, rec.len - 1, on_op, &bc, &e) != SHALE_OK) {
            why = bc.why ? bc.why : e.msg;
        }
    }
    if (why != NULL) {
        c->rep->log_records_lost++;
        c->rep->log_lost_bytes += rec.len;
        add_loss(c->rep, name, off, rec.len, false,
                 "%s @%" PRIu64 ": record of %zu bytes: %s; lost", name, off, rec.len, why);
        return SHALE_OK;
    }
    size_t before = r->n;
    bc.add = true;
    shale_code rc = batch_iterate(p + 1, rec.len - 1, on_op, &bc, err);
    if (rc != SHALE_OK) {
        return rc; /* only out of memory: the check above passed */
    }
    c->rep->log_records++;
    c->rep->entries_read += r->n - before;
    if (run_bytes(r) >= c->spill_bytes) {
        return spill(c, r, err);
    }
    return SHALE_OK;
}

static shale_code read_log(ctx *c, run *r, uint64_t number, bool newest, shale_error *err)
{
    char path[4096], name[40];
    wal_reader *wr = NULL;
    wal_reader_stats st;
    shale_error e = {0};
    uint64_t seen_recs = 0, seen_bytes = 0, size = 0;
    bool is_dir;

    snprintf(name, sizeof name, "%06" PRIu64 ".log", number);
    snprintf(path, sizeof path, "%s/%s", c->src, name);
    (void)c->env->stat_path(c->env, path, &is_dir, &size, NULL);
    shale_code rc = wal_reader_open(c->env, path, number, true, &wr, &e);
    if (rc == SHALE_NOMEM) {
        return err_copy(err, &e);
    }
    if (rc != SHALE_OK) {
        c->rep->log_records_lost++;
        c->rep->log_lost_bytes += size;
        add_loss(c->rep, name, 0, size, false,
                 "%s: %s; the whole segment (%" PRIu64 " bytes) is lost", name, e.msg, size);
        return SHALE_OK;
    }
    c->rep->log_segments++;
    for (;;) {
        shale_slice rec;
        uint64_t off = 0;
        rc = wal_reader_next(wr, &rec, &off, &e);
        wal_reader_get_stats(wr, &st);
        if (st.salvaged_records > seen_recs) {
            uint64_t n = st.salvaged_bytes - seen_bytes;
            uint64_t at = rc == SHALE_OK ? off : st.file_size;
            c->rep->log_records_lost += st.salvaged_records - seen_recs;
            c->rep->log_lost_bytes += n;
            add_loss(c->rep, name, at >= n ? at - n : 0, n, false,
                     "%s @%" PRIu64 ": %" PRIu64 " damaged bytes skipped (%" PRIu64
                     " region%s), reading resumed @%" PRIu64,
                     name, at >= n ? at - n : 0, n, st.salvaged_records - seen_recs,
                     st.salvaged_records - seen_recs == 1 ? "" : "s", at);
            seen_recs = st.salvaged_records;
            seen_bytes = st.salvaged_bytes;
        }
        if (rc == SHALE_NOT_FOUND) {
            break;
        }
        if (rc == SHALE_NOMEM) {
            err_copy(err, &e);
            goto out;
        }
        if (rc != SHALE_OK) {
            uint64_t from = st.valid_end, n = st.file_size > from ? st.file_size - from : 0;
            c->rep->log_records_lost++;
            c->rep->log_lost_bytes += n;
            add_loss(c->rep, name, from, n, false, "%s: %s; the rest of the segment is lost", name,
                     e.msg);
            rc = SHALE_OK;
            goto out;
        }
        if ((rc = take_record(c, r, name, rec, off, err)) != SHALE_OK) {
            goto out;
        }
    }
    rc = SHALE_OK;
    if (st.torn_tail && st.file_size > st.valid_end) {
        uint64_t n = st.file_size - st.valid_end;
        if (newest) {
            c->rep->torn_tail_bytes += n;
            add_loss(c->rep, name, st.valid_end, n, true,
                     "%s @%" PRIu64 ": torn tail of %" PRIu64
                     " bytes (a write cut short by a crash, never acknowledged)",
                     name, st.valid_end, n);
        } else {
            c->rep->log_records_lost++;
            c->rep->log_lost_bytes += n;
            add_loss(c->rep, name, st.valid_end, n, false,
                     "%s @%" PRIu64 ": incomplete record of %" PRIu64
                     " bytes in a segment that is not the newest; lost",
                     name, st.valid_end, n);
        }
    }
out:
    wal_reader_close(wr);
    return rc;
}

/* ---- the directories ---- */

static shale_code list_numbers(ctx *c, version_file_kind kind, char **names, size_t count,
                               uint64_t **out, size_t *n, shale_error *err)
{
    uint64_t *v = calloc(count ? count : 1, sizeof *v);
    *n = 0;
    if (v == NULL) {
        return err_nomem(err);
    }
    (void)c;
    for (size_t i = 0; i < count; i++) {
        uint64_t num;
        if (version_parse_file_name(names[i], &num) == kind) {
            v[(*n)++] = num;
        }
    }
    qsort(v, *n, sizeof *v, version_cmp_u64);
    *out = v;
    return SHALE_OK;
}

static shale_code prepare_dst(ctx *c, shale_error *err)
{
    bool is_dir = false;
    uint64_t size = 0;
    shale_code rc = c->env->stat_path(c->env, c->dst, &is_dir, &size, err);

    if (rc == SHALE_NOT_FOUND) {
        if ((rc = c->env->mkdir(c->env, c->dst, err)) != SHALE_OK) {
            return rc;
        }
        return env_sync_parent(c->env, c->dst, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    if (!is_dir) {
        return err_set(err, SHALE_INVALID, 0, "%s: exists and is not a directory", c->dst);
    }
    char **names = NULL;
    size_t count = 0;
    if ((rc = c->env->list_dir(c->env, c->dst, &names, &count, err)) != SHALE_OK) {
        return rc;
    }
    env_free_names(names, count);
    if (count > 0) {
        return err_set(err, SHALE_INVALID, 0,
                       "%s: not empty; repair writes into a new or empty directory", c->dst);
    }
    return SHALE_OK;
}

/* Reads the source manifest for information; a note when it does not recover. */
static void read_manifest(ctx *c)
{
    version_options vo = {0};
    shale_error e = {0};
    version_set *vs = version_set_new(c->env, c->src, &vo);

    if (vs == NULL) {
        return;
    }
    shale_code rc = version_set_recover(vs, &e);
    if (rc == SHALE_OK) {
        c->rep->manifest_ok = true;
        c->rep->manifest_last_seq = version_set_last_seq(vs);
    } else {
        char msg[sizeof e.msg];
        const char *m = e.msg;
        size_t n = strlen(c->src);
        /* Messages name "SRC/MANIFEST-N": keep the bare name. */
        const char *at = strstr(m, c->src);
        if (at != NULL && at[n] == '/') {
            snprintf(msg, sizeof msg, "%.*s%s", (int)(at - m), m, at + n + 1);
        } else {
            snprintf(msg, sizeof msg, "%s", m);
        }
        add_loss(c->rep, "MANIFEST", 0, 0, true,
                 "the manifest does not recover (%s): not used; every table and log is read "
                 "anyway",
                 msg);
    }
    version_set_free(vs);
}

static shale_code write_identity(ctx *c, shale_error *err)
{
    uint8_t raw[DB_IDENTITY_BYTES];
    void *data = NULL;
    size_t len = 0;
    char *path = env_join_path(c->src, DB_IDENTITY_NAME);

    if (path == NULL) {
        return err_nomem(err);
    }
    shale_code rc = env_read_file(c->env, path, 4096, &data, &len, NULL);
    free(path);
    size_t at;
    uint32_t id_version;
    if (rc == SHALE_OK && db_identity_check(data, len, &at, &id_version) == NULL) {
        memcpy(raw, data, DB_IDENTITY_BYTES);
        c->rep->identity_copied = true;
    } else {
        db_identity_make(c->env->now_ms(c->env), raw);
        add_loss(c->rep, DB_IDENTITY_NAME, 0, 0, true,
                 "the identity file is missing or damaged: the new database has a fresh one");
    }
    free(data);
    return env_write_file_atomic(c->env, c->dst, DB_IDENTITY_NAME, raw, sizeof raw, err);
}

/* Merges every source into tables in dst and lists them in a new manifest. */
static shale_code build(ctx *c, const uint64_t *tables, size_t ntables, run *r, shale_error *err)
{
    iter **kids = calloc(ntables + c->nspills + 1, sizeof *kids);
    size_t nk = 0;
    version_edit edit;
    writer o = {.c = c, .level = OUTPUT_LEVEL, .counting = true};
    shale_code rc = SHALE_OK;
    iter *m = NULL;

    version_edit_init(&edit);
    o.edit = &edit;
    if (kids == NULL) {
        rc = err_nomem(err);
        goto out;
    }
    for (size_t i = 0; i < ntables && rc == SHALE_OK; i++) {
        iter *t = NULL;
        rc = tsalv_open(c, c->src, tables[i], true, &t, err);
        if (t != NULL) {
            kids[nk++] = t;
        }
    }
    for (size_t i = 0; i < c->nspills && rc == SHALE_OK; i++) {
        iter *t = NULL;
        rc = tsalv_open(c, c->dst, c->spills[i], false, &t, err);
        if (t != NULL) {
            kids[nk++] = t;
        }
    }
    if (rc == SHALE_OK) {
        run_sort(r);
        if ((kids[nk] = rit_new(r)) == NULL) {
            rc = err_nomem(err);
        } else {
            nk++;
        }
    }
    if (rc != SHALE_OK) {
        for (size_t i = 0; i < nk; i++) {
            iter_destroy(kids[i]);
        }
        goto out;
    }
    if ((m = merge_iter_new(kids, nk)) == NULL) {
        rc = err_nomem(err);
        goto out;
    }
    for (iter_seek_first(m); iter_valid(m) && rc == SHALE_OK; iter_next(m)) {
        ikey_entry e;
        iter_entry(m, &e);
        rc = out_add(&o, &e, err);
    }
    if (rc == SHALE_OK) {
        rc = iter_status(m, err);
    }
    if (rc == SHALE_OK) {
        rc = out_finish(&o, err);
    }
    iter_destroy(m);
    m = NULL;
    if (rc != SHALE_OK) {
        goto out;
    }
    /* The tables are durable (fdatasynced by the builder) once their names are. */
    if ((rc = c->env->sync_dir(c->env, c->dst, err)) != SHALE_OK) {
        goto out;
    }
    for (size_t i = 0; i < c->nspills; i++) {
        char path[4096];
        version_table_name(path, sizeof path, c->dst, c->spills[i]);
        if ((rc = c->env->remove_file(c->env, path, err)) != SHALE_OK) {
            goto out;
        }
    }
    if (c->nspills > 0 && (rc = c->env->sync_dir(c->env, c->dst, err)) != SHALE_OK) {
        goto out;
    }

    uint64_t last = c->rep->last_seq;
    if (c->rep->manifest_ok && c->rep->manifest_last_seq > last) {
        last = c->rep->manifest_last_seq;
    }
    version_options vo = {0};
    version_set *vs = version_set_new(c->env, c->dst, &vo);
    if (vs == NULL) {
        rc = err_nomem(err);
        goto out;
    }
    rc = version_set_create(vs, err);
    if (rc == SHALE_OK) {
        version_set_mark_file_number_used(vs, c->next_number);
        edit.has_last_seq = edit.has_flushed_seq = true;
        edit.last_seq = edit.flushed_seq = last;
        rc = version_set_apply(vs, &edit, err);
    }
    version_set_free(vs);

out:
    if (o.b != NULL) {
        sst_builder_abandon(o.b);
    }
    buf_free(&o.last);
    version_edit_free(&edit);
    free(kids);
    return rc;
}

static bool looks_like_db(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        uint64_t n;
        if (strcmp(names[i], DB_IDENTITY_NAME) == 0 || strcmp(names[i], "CURRENT") == 0 ||
            version_parse_file_name(names[i], &n) != VERSION_FILE_OTHER) {
            return true;
        }
    }
    return false;
}

shale_code repair_salvage_opts(const shale_env *env, const char *src, const char *dst,
                               const repair_options *opts, repair_report *rep, shale_error *err)
{
    ctx c = {.env = env, .src = src, .dst = dst, .rep = rep, .next_number = 2};
    char **names = NULL;
    size_t count = 0, ntables = 0, nlogs = 0;
    uint64_t *tables = NULL, *logs = NULL;
    env_lock *lock = NULL;
    run r = {0};
    bool is_dir = false;
    uint64_t size = 0;
    shale_code rc;

    memset(rep, 0, sizeof *rep);
    c.spill_bytes = opts && opts->spill_bytes ? opts->spill_bytes : DEFAULT_SPILL_BYTES;
    c.table_bytes = opts && opts->table_bytes ? opts->table_bytes : DEFAULT_TABLE_BYTES;

    rc = env->stat_path(env, src, &is_dir, &size, err);
    if (rc == SHALE_NOT_FOUND) {
        return err_set(err, SHALE_NOT_FOUND, 0, "%s: does not exist", src);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    if (!is_dir) {
        return err_set(err, SHALE_INVALID, 0, "%s: not a directory", src);
    }
    if ((rc = env->list_dir(env, src, &names, &count, err)) != SHALE_OK) {
        return rc;
    }
    if (!looks_like_db(names, count)) {
        env_free_names(names, count);
        return err_set(err, SHALE_INVALID, 0, "%s: not a Shale database", src);
    }
    env_free_names(names, count);
    names = NULL;
    count = 0;

    char *lock_path = env_join_path(src, "LOCK");
    if (lock_path == NULL) {
        return err_nomem(err);
    }
    rc = env->lock_file(env, lock_path, &lock, err);
    free(lock_path);
    if (rc == SHALE_BUSY) {
        return err_set(err, SHALE_BUSY, 0, "%s: in use by another process; close it first", src);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    if ((rc = prepare_dst(&c, err)) != SHALE_OK) {
        goto out;
    }
    /* Listed under the lock: nothing changes it from here on. */
    if ((rc = env->list_dir(env, src, &names, &count, err)) != SHALE_OK) {
        goto out;
    }
    if ((rc = list_numbers(&c, VERSION_FILE_TABLE, names, count, &tables, &ntables, err)) !=
            SHALE_OK ||
        (rc = list_numbers(&c, VERSION_FILE_LOG, names, count, &logs, &nlogs, err)) != SHALE_OK) {
        goto out;
    }
    read_manifest(&c);
    for (size_t i = 0; i < nlogs && rc == SHALE_OK; i++) {
        rc = read_log(&c, &r, logs[i], i + 1 == nlogs, err);
    }
    if (rc == SHALE_OK) {
        rc = build(&c, tables, ntables, &r, err);
    }
    if (rc == SHALE_OK) {
        rc = write_identity(&c, err);
    }
out:
    run_free(&r);
    free(tables);
    free(logs);
    free(c.spills);
    env_free_names(names, count);
    (void)env->unlock_file(env, lock, NULL);
    return rc;
}

shale_code repair_salvage(const shale_env *env, const char *src, const char *dst,
                          repair_report *rep, shale_error *err)
{
    return repair_salvage_opts(env, src, dst, NULL, rep, err);
}
