/*
 * crash_txn: process crashes (SIGKILL) while transactions commit, against the public API. The
 * contract (include/shale.h, "Transactions"): after a crash a transaction is wholly there or
 * wholly absent, and one committed with FULL durability is there once commit returned.
 *
 * Each cycle a forked child opens the database with tiny budgets (64 KiB write buffer and tables,
 * level-0 trigger 2, 64 KiB log segments, so flushes, compactions and segment rolls run all the
 * time) and runs operations generated deterministically from (seed, lane, op index), so the
 * parent knows every one without being told; a lane is a writer thread that owns its own keys.
 * The child reports each operation over a pipe once it returned as it must (an acknowledgement),
 * with the transaction's snapshot and commit sequence numbers. The parent SIGKILLs it at a random
 * moment (after a random number of acks and/or a random delay), reopens the same directory (it is
 * kept over every cycle), checks it, closes it, and the next child goes on after the last ack.
 *
 * A lane owns 24 accounts, 360 data keys and a ring of 32 transaction records, named by a hash so
 * the keys of one transaction lie far apart in key order (in different tables and blocks). Its
 * operations, in order:
 *   - SNAPSHOT and SERIALIZABLE transactions committed with FULL durability. Most move amounts
 *     between 2 or 3 accounts (balances read inside the transaction; a lane's balances always sum
 *     to 0); each puts or deletes 2..8 data keys (often keys earlier transactions wrote), some
 *     write a key twice (the first value must never be seen), and each writes its record (ring
 *     slot id % 32) listing its writes. Serializable ones first read some data keys. Each checks
 *     that it reads its own write;
 *   - big transactions: 24..64 data keys of 0.6..2 KiB, more than the write buffer, in one commit;
 *   - plain shale_put and shale_delete (OS or FULL durability);
 *   - transactions that write, then roll back (shale_txn_rollback, or shale_txn_free while open);
 *     a commit after the rollback must fail with SHALE_INVALID;
 *   - transactions whose commit must fail with SHALE_CONFLICT: a plain put between begin and
 *     commit hits a key the transaction wrote (SNAPSHOT) or read (SERIALIZABLE);
 *   - read-only SERIALIZABLE audits: the lane's balances sum to 0 (the child fails otherwise).
 * Every value names its lane, op and key (and, for an account, the balance) and is padded to a
 * length that varies with them. Values that must never be seen (rolled back, refused, overwritten
 * inside their transaction) carry the tag X.
 *
 * Checks on every ack: commit sequences grow (also across crashes: a reopened database never
 * reuses one), snapshot < commit seq for a transaction that wrote, commit seq 0 for read-only,
 * rolled-back and refused ones. Checks after every kill, on the reopened database:
 *   - every value is well formed and byte for byte what its header says; no X value anywhere;
 *   - each lane's balances sum to 0 (a transfer half there shows here first);
 *   - per lane, the database equals the model after the last acknowledged operation, or after the
 *     one in doubt (the one the kill interrupted): every acknowledged transaction is wholly there
 *     (but for keys later operations overwrote), the one in doubt wholly there or wholly absent.
 *     A mismatch says which writes of the transaction in doubt are there and which acked writes
 *     are missing;
 *   - values of acknowledged transactions carry versions in (snapshot, commit seq];
 *   - a full scan sees exactly the keys the gets see, with the same versions; a SERIALIZABLE
 *     transaction started on the reopened database reads the same balances (sum 0) and its
 *     iterator sees the same keys; its read-only commit succeeds;
 *   - no file is leaked (tu_assert_db_files); every 10 cycles (and the last) a full compaction
 *     changes nothing, versions included; every 10 cycles `shale check` ($SHALE_BIN) calls the
 *     killed directory clean.
 * SHALE_CRASH_SEED=<n> in the environment replaces the operation seed; SHALE_CAMPAIGN_SCALE=<n>
 * multiplies the cycles. The run ends with one campaign report line (tu_campaign_report).
 *
 * The harness of crash_common.h models single puts, deletes and batches per lane; transactions
 * need reads inside the operation (balances), refused and rolled-back writes and commit
 * sequences in the acks, so this file has its own model and checks, on crash_common's plumbing
 * (crash_fork_kill with 24-byte acks, crash_offline_check, crash_check_scan).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shale.h"

#include "crash_common.h"
#include "testutil.h"

#define LANES_MAX   2u
#define N_ACCT      24u
#define N_DATA      360u
#define N_REC       32u
#define N_SLOTS     (N_ACCT + N_DATA + N_REC)
#define DATA0       N_ACCT            /* first data slot */
#define REC0        (N_ACCT + N_DATA) /* first record slot */
#define MAX_WRITES  72u
#define MAX_READS   4u
#define CAP_MAX     4096u /* operations per lane per cycle */
#define VALUE_CAP   3072u
#define KEY_CAP     32u
#define ERR_RECORD  (1ull << 63)
#define LANE_BITS   8u
#define ACK_WAIT_MS 2000 /* past this without the planned acks, the kill comes anyway */

enum op_kind {
    OP_TXN,
    OP_TXN_SER,
    OP_TXN_BIG,
    OP_PUT,
    OP_DEL,
    OP_ROLLBACK,
    OP_CONFLICT,
    OP_AUDIT,
    OP_KINDS
};

static const char *const kind_names[OP_KINDS] = {
    "snapshot txn", "serializable txn", "big txn",     "put",
    "delete",       "rolled-back txn",  "refused txn", "audit txn",
};

static bool kind_writes_txn(enum op_kind k)
{
    return k == OP_TXN || k == OP_TXN_SER || k == OP_TXN_BIG;
}

static bool kind_uses_txn(enum op_kind k)
{
    return kind_writes_txn(k) || k == OP_ROLLBACK || k == OP_CONFLICT || k == OP_AUDIT;
}

typedef struct txn_write {
    uint32_t slot;
    bool del;
    bool twice;    /* an X value first, then this write */
    int64_t delta; /* accounts: added to the balance */
} txn_write;

typedef struct op {
    enum op_kind kind;
    uint32_t nw;
    txn_write w[MAX_WRITES];
    uint32_t nr;
    uint32_t r[MAX_READS]; /* data slots read first (serializable) */
    uint32_t target;       /* the key of the plain write (PUT, DEL, CONFLICT) */
} op;

/* ---- deterministic operations and values ---------------------------------------------------- */

static uint64_t op_hash(uint64_t seed, unsigned lane, uint64_t j)
{
    return tu_mix64(seed ^ tu_mix64(((uint64_t)lane << 56) ^ j ^ 0x7c0ffee5ull));
}

static enum op_kind draw_kind(uint64_t d)
{
    /* 36% snapshot, 24% serializable, 4% big, 12% puts, 6% deletes, 6% rolled back, 6% refused,
     * 6% audits */
    static const unsigned below[OP_KINDS] = {36, 60, 64, 76, 82, 88, 94, 100};
    enum op_kind k = OP_TXN;
    while (d >= below[k]) {
        k++;
    }
    return k;
}

static enum op_kind kind_of(uint64_t seed, unsigned lane, uint64_t j)
{
    tu_rng r;
    tu_rng_seed(&r, op_hash(seed, lane, j));
    return draw_kind(tu_rng_below(&r, 100));
}

static uint32_t pick_slot(tu_rng *r, bool *used, uint32_t first, uint32_t count)
{
    uint32_t s;
    do {
        s = first + (uint32_t)tu_rng_below(r, count);
    } while (used[s]);
    used[s] = true;
    return s;
}

static void add_data_writes(tu_rng *r, op *o, bool *used, uint32_t n, unsigned del_one_in)
{
    for (uint32_t i = 0; i < n; i++) {
        txn_write *w = &o->w[o->nw++];
        w->slot = pick_slot(r, used, DATA0, N_DATA);
        w->del = tu_rng_below(r, del_one_in) == 0;
        w->twice = tu_rng_below(r, 5) == 0;
    }
}

static void gen_op(uint64_t seed, unsigned lane, uint64_t j, op *o)
{
    tu_rng r;
    bool used[N_SLOTS] = {false};

    memset(o, 0, sizeof *o);
    tu_rng_seed(&r, op_hash(seed, lane, j));
    o->kind = draw_kind(tu_rng_below(&r, 100));
    switch (o->kind) {
    case OP_PUT:
    case OP_DEL:
        o->target = pick_slot(&r, used, DATA0, N_DATA);
        return;
    case OP_AUDIT:
        return;
    case OP_ROLLBACK:
    case OP_CONFLICT:
        add_data_writes(&r, o, used, 2 + (uint32_t)tu_rng_below(&r, 4), 3);
        if (o->kind == OP_CONFLICT) {
            if (j % 2 == 1) {
                /* serializable: the plain put hits a key the transaction only read */
                o->nr = 1;
                o->r[0] = pick_slot(&r, used, DATA0, N_DATA);
                o->target = o->r[0];
            } else {
                o->target = o->w[tu_rng_below(&r, o->nw)].slot;
            }
        } else {
            o->w[o->nw++] = (txn_write){.slot = REC0 + (uint32_t)(j % N_REC)};
        }
        return;
    default:
        break;
    }
    if (o->kind != OP_TXN_BIG && tu_rng_below(&r, 10) < 7) {
        uint32_t na = 2 + (uint32_t)tu_rng_below(&r, 2);
        int64_t sum = 0;
        for (uint32_t i = 0; i < na; i++) {
            txn_write *w = &o->w[o->nw++];
            w->slot = pick_slot(&r, used, 0, N_ACCT);
            w->delta = i + 1 < na ? (int64_t)tu_rng_below(&r, 1000) - 499 : -sum;
            sum += w->delta;
        }
    }
    if (o->kind == OP_TXN_BIG) {
        add_data_writes(&r, o, used, 24 + (uint32_t)tu_rng_below(&r, 41), 8);
    } else {
        add_data_writes(&r, o, used, 2 + (uint32_t)tu_rng_below(&r, 7), 4);
    }
    if (o->kind == OP_TXN_SER) {
        bool rused[N_SLOTS] = {false};
        o->nr = 1 + (uint32_t)tu_rng_below(&r, MAX_READS);
        for (uint32_t i = 0; i < o->nr; i++) {
            o->r[i] = pick_slot(&r, rused, DATA0, N_DATA);
        }
    }
    /* The record goes somewhere in the middle of the writes. */
    uint32_t at = (uint32_t)tu_rng_below(&r, o->nw + 1);
    memmove(&o->w[at + 1], &o->w[at], (o->nw - at) * sizeof o->w[0]);
    o->w[at] = (txn_write){.slot = REC0 + (uint32_t)(j % N_REC)};
    o->nw++;
}

/* The key of a lane's slot: a hash first, so slots (and lanes) interleave in key order. */
static shale_slice slot_key(char *buf, unsigned lane, uint32_t slot)
{
    uint32_t h = (uint32_t)tu_mix64(0x5eed0000ull ^ ((uint64_t)lane << 32) ^ slot);
    int n = snprintf(buf, KEY_CAP, "%08" PRIx32 ".t%u.%03" PRIu32, h, lane, slot);
    return (shale_slice){buf, (size_t)n};
}

static char slot_tag(uint32_t slot)
{
    return slot < DATA0 ? 'A' : slot < REC0 ? 'D' : 'R';
}

/* The value op j of `lane` writes to `slot`. Tags: 'A' an account holding `bal`, 'D' data, 'R' a
 * transaction record listing the op's writes, 'X' a value that must never be seen. Padded to a
 * length that varies with the op, the slot and the tag. */
static size_t make_value(char *buf, uint64_t seed, unsigned lane, uint64_t j, uint32_t slot,
                         char tag, int64_t bal)
{
    int n;
    if (tag == 'A') {
        n = snprintf(buf, VALUE_CAP, "L%u J%" PRIu64 " S%" PRIu32 " A%" PRId64 "|", lane, j, slot,
                     bal);
    } else {
        n = snprintf(buf, VALUE_CAP, "L%u J%" PRIu64 " S%" PRIu32 " %c|", lane, j, slot, tag);
    }
    size_t len = (size_t)n;
    if (tag == 'R') {
        op o;
        gen_op(seed, lane, j, &o);
        len += (size_t)snprintf(buf + len, VALUE_CAP - len, "%" PRIu32 ":", o.nw);
        for (uint32_t i = 0; i < o.nw; i++) {
            len += (size_t)snprintf(buf + len, VALUE_CAP - len, "%" PRIu32 "%c,", o.w[i].slot,
                                    o.w[i].del ? 'd' : 'p');
        }
    }
    uint64_t h = tu_mix64(op_hash(seed, lane, j) ^ ((uint64_t)slot << 8) ^ (uint64_t)tag);
    size_t pad = tag == 'A' ? h % 48 : tag == 'R' ? h % 64 : h % 900;
    if ((tag == 'D' || tag == 'X') && kind_of(seed, lane, j) == OP_TXN_BIG) {
        pad = 600 + h % 1400;
    }
    /* Random letters: LZ4 must not squeeze the tables down to nothing. */
    tu_rng r;
    tu_rng_seed(&r, h);
    for (size_t i = 0; i < pad; i++) {
        buf[len + i] = (char)('a' + tu_rng_next(&r) % 26);
    }
    return len + pad;
}

typedef struct parsed {
    uint64_t j;
    char tag;
    int64_t bal;
} parsed;

/* Parses a value read from (lane, slot): its header must name that key, and the whole value must
 * be what make_value makes of the header. On failure says why in `why`. */
static bool parse_value(uint64_t seed, unsigned lane, uint32_t slot, const void *data, size_t len,
                        parsed *p, char *why, size_t cap)
{
    char text[64];
    char want[VALUE_CAP];
    unsigned vl = 0;
    uint32_t vs = 0;
    int n = 0;

    memset(p, 0, sizeof *p);
    tu_head(text, sizeof text, data, len);
    if (sscanf(text, "L%u J%" SCNu64 " S%" SCNu32 " %c%n", &vl, &p->j, &vs, &p->tag, &n) != 4 ||
        n <= 0 || (p->tag == 'A' && sscanf(text + n, "%" SCNd64, &p->bal) != 1)) {
        snprintf(why, cap, "malformed value '%.40s'", text);
        return false;
    }
    if (vl != lane || vs != slot || p->j == 0 || (p->tag != 'X' && p->tag != slot_tag(slot))) {
        snprintf(why, cap, "foreign value '%.40s'", text);
        return false;
    }
    size_t wl = make_value(want, seed, lane, p->j, slot, p->tag, p->bal);
    if (wl != len || memcmp(want, data, len) != 0) {
        snprintf(why, cap, "damaged value of op %" PRIu64 " (%zu bytes, want %zu)", p->j, len, wl);
        return false;
    }
    return true;
}

/* ---- child ---------------------------------------------------------------------------------- */

/* One acknowledgement: 24 bytes, below PIPE_BUF, so the lanes' writes never interleave. */
typedef struct ack {
    uint64_t tag; /* op << LANE_BITS | lane; ERR_RECORD | code << LANE_BITS | lane on failure */
    uint64_t snap;
    uint64_t commit;
} ack;

typedef struct variant {
    const char *name;
    unsigned lanes;
    unsigned cycles;
    uint64_t cap; /* operations per lane per cycle before the child idles */
    uint64_t max_acks;
    uint64_t max_delay_us;
    uint64_t seed;
} variant;

typedef struct child {
    shale_db *db;
    int fd;
    unsigned lane;
    uint64_t start;
    uint64_t seed;
    uint64_t cap;
    uint64_t j; /* the op running */
    shale_buf val;
} child;

static _Noreturn void child_fail(const child *c, shale_code rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static _Noreturn void child_fail(const child *c, shale_code rc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "crash_txn child: lane %u op %" PRIu64 " (%s): %s\n", c->lane, c->j,
            kind_names[kind_of(c->seed, c->lane, c->j)], msg);
    ack a = {ERR_RECORD | ((uint64_t)rc << LANE_BITS) | c->lane, c->j, 0};
    crash_send_record(c->fd, &a, sizeof a);
    _exit(3);
}

static void must(const child *c, shale_code rc, shale_code want, const char *what,
                 const shale_error *err)
{
    if (rc != want) {
        child_fail(c, rc == SHALE_OK ? SHALE_INVALID : rc, "%s: %s, want %s (%s)", what,
                   shale_strerror(rc), shale_strerror(want), err->msg);
    }
}

static void put_value(child *c, shale_txn *t, uint32_t slot, char tag, int64_t bal)
{
    char kb[KEY_CAP];
    char vb[VALUE_CAP];
    shale_error err = {0};
    size_t n = make_value(vb, c->seed, c->lane, c->j, slot, tag, bal);
    shale_code rc = shale_txn_put(t, slot_key(kb, c->lane, slot), (shale_slice){vb, n}, &err);
    must(c, rc, SHALE_OK, "txn put", &err);
}

/* Reads `slot` inside `t`: SHALE_NOT_FOUND or a well-formed value, parsed into *p. */
static shale_code txn_read(child *c, shale_txn *t, uint32_t slot, parsed *p)
{
    char kb[KEY_CAP];
    char why[128];
    shale_error err = {0};
    shale_code rc = shale_txn_get(t, slot_key(kb, c->lane, slot), &c->val, &err);

    memset(p, 0, sizeof *p);
    if (rc == SHALE_NOT_FOUND) {
        return rc;
    }
    must(c, rc, SHALE_OK, "txn get", &err);
    if (!parse_value(c->seed, c->lane, slot, c->val.data, c->val.len, p, why, sizeof why)) {
        child_fail(c, SHALE_CORRUPTION, "txn get of slot %" PRIu32 ": %s", slot, why);
    }
    if (p->tag == 'X') {
        child_fail(c, SHALE_CORRUPTION,
                   "txn get of slot %" PRIu32 " reads the X value of op %" PRIu64 " (%s)", slot,
                   p->j, kind_names[kind_of(c->seed, c->lane, p->j)]);
    }
    return rc;
}

static int64_t txn_balance(child *c, shale_txn *t, uint32_t slot)
{
    parsed p;
    return txn_read(c, t, slot, &p) == SHALE_OK ? p.bal : 0;
}

static shale_txn *begin(child *c, shale_isolation iso, uint64_t max_bytes)
{
    shale_txn_opts to = {
        .isolation = iso, .durability = SHALE_DURABILITY_FULL, .max_bytes = max_bytes};
    shale_txn *t = NULL;
    shale_error err = {0};
    must(c, shale_txn_begin(c->db, &to, &t, &err), SHALE_OK, "txn begin", &err);
    return t;
}

/* Writes the data slots of `o` with X values (the transaction must not survive). */
static void write_doomed(child *c, shale_txn *t, const op *o)
{
    char kb[KEY_CAP];
    shale_error err = {0};

    for (uint32_t i = 0; i < o->nw; i++) {
        const txn_write *w = &o->w[i];
        if (w->del) {
            must(c, shale_txn_delete(t, slot_key(kb, c->lane, w->slot), &err), SHALE_OK,
                 "txn delete", &err);
        } else {
            put_value(c, t, w->slot, 'X', 0);
        }
    }
}

static void run_txn(child *c, const op *o, ack *a)
{
    shale_txn *t =
        begin(c, o->kind == OP_TXN_SER ? SHALE_ISOLATION_SERIALIZABLE : SHALE_ISOLATION_SNAPSHOT,
              o->kind == OP_TXN_BIG ? 1u << 20 : 0);
    char kb[KEY_CAP];
    char vb[VALUE_CAP];
    shale_error err = {0};
    parsed p;
    const txn_write *first_data = NULL;

    for (uint32_t i = 0; i < o->nr; i++) {
        txn_read(c, t, o->r[i], &p);
    }
    for (uint32_t i = 0; i < o->nw; i++) {
        const txn_write *w = &o->w[i];
        char tag = slot_tag(w->slot);
        if (tag == 'A') {
            put_value(c, t, w->slot, 'A', txn_balance(c, t, w->slot) + w->delta);
            continue;
        }
        if (tag == 'R') {
            put_value(c, t, w->slot, 'R', 0);
            continue;
        }
        first_data = first_data != NULL ? first_data : w;
        if (w->twice) {
            put_value(c, t, w->slot, 'X', 0);
        }
        if (w->del) {
            must(c, shale_txn_delete(t, slot_key(kb, c->lane, w->slot), &err), SHALE_OK,
                 "txn delete", &err);
        } else {
            put_value(c, t, w->slot, 'D', 0);
        }
    }
    /* The transaction reads its own (last) write. */
    if (first_data != NULL) {
        shale_code rc = shale_txn_get(t, slot_key(kb, c->lane, first_data->slot), &c->val, &err);
        if (first_data->del) {
            must(c, rc, SHALE_NOT_FOUND, "txn get of its own delete", &err);
        } else {
            must(c, rc, SHALE_OK, "txn get of its own put", &err);
            size_t n = make_value(vb, c->seed, c->lane, c->j, first_data->slot, 'D', 0);
            if (n != c->val.len || memcmp(vb, c->val.data, n) != 0) {
                child_fail(c, SHALE_CORRUPTION,
                           "txn get of its own put of slot %" PRIu32 " reads something else",
                           first_data->slot);
            }
        }
    }
    a->snap = shale_txn_snapshot_seq(t);
    must(c, shale_txn_commit(t, &err), SHALE_OK, "txn commit", &err);
    a->commit = shale_txn_commit_seq(t);
    shale_txn_free(t);
}

static void run_rollback(child *c, const op *o, ack *a)
{
    shale_txn *t = begin(c, SHALE_ISOLATION_SNAPSHOT, 0);
    shale_error err = {0};

    write_doomed(c, t, o);
    a->snap = shale_txn_snapshot_seq(t);
    if (c->j % 2 == 0) {
        must(c, shale_txn_rollback(t, &err), SHALE_OK, "txn rollback", &err);
        must(c, shale_txn_commit(t, &err), SHALE_INVALID, "txn commit after rollback", &err);
    }
    a->commit = shale_txn_commit_seq(t);
    shale_txn_free(t); /* odd ops: frees it open, which rolls it back */
}

static void run_conflict(child *c, const op *o, ack *a)
{
    bool ser = o->nr > 0;
    shale_txn *t = begin(c, ser ? SHALE_ISOLATION_SERIALIZABLE : SHALE_ISOLATION_SNAPSHOT, 0);
    char kb[KEY_CAP];
    char vb[VALUE_CAP];
    shale_error err = {0};
    parsed p;

    if (ser) {
        txn_read(c, t, o->r[0], &p);
    }
    write_doomed(c, t, o);
    /* A plain write after begin, on a key the transaction wrote or read: the commit must fail. */
    size_t n = make_value(vb, c->seed, c->lane, c->j, o->target, 'D', 0);
    shale_write_opts wo = {.durability = SHALE_DURABILITY_FULL};
    must(c, shale_put(c->db, &wo, slot_key(kb, c->lane, o->target), (shale_slice){vb, n}, &err),
         SHALE_OK, "plain put inside a transaction", &err);
    a->snap = shale_txn_snapshot_seq(t);
    must(c, shale_txn_commit(t, &err), SHALE_CONFLICT,
         ser ? "commit after a plain write to a key read"
             : "commit after a plain write to a key "
               "written",
         &err);
    a->commit = shale_txn_commit_seq(t);
    shale_txn_free(t);
}

static void run_audit(child *c, ack *a)
{
    shale_txn *t = begin(c, SHALE_ISOLATION_SERIALIZABLE, 0);
    shale_error err = {0};
    int64_t sum = 0;

    for (uint32_t s = 0; s < N_ACCT; s++) {
        sum += txn_balance(c, t, s);
    }
    if (sum != 0) {
        child_fail(c, SHALE_CORRUPTION, "audit: the balances sum to %" PRId64, sum);
    }
    a->snap = shale_txn_snapshot_seq(t);
    must(c, shale_txn_commit(t, &err), SHALE_OK, "read-only commit", &err);
    a->commit = shale_txn_commit_seq(t);
    shale_txn_free(t);
}

static void run_plain(child *c, const op *o)
{
    char kb[KEY_CAP];
    char vb[VALUE_CAP];
    shale_error err = {0};
    shale_write_opts wo = {.durability =
                               c->j % 2 == 0 ? SHALE_DURABILITY_FULL : SHALE_DURABILITY_DEFAULT};
    shale_slice key = slot_key(kb, c->lane, o->target);

    if (o->kind == OP_DEL) {
        must(c, shale_delete(c->db, &wo, key, &err), SHALE_OK, "delete", &err);
        return;
    }
    size_t n = make_value(vb, c->seed, c->lane, c->j, o->target, 'D', 0);
    must(c, shale_put(c->db, &wo, key, (shale_slice){vb, n}, &err), SHALE_OK, "put", &err);
}

static void *lane_main(void *arg)
{
    child *c = arg;
    static _Thread_local op o;

    for (c->j = c->start; c->j < c->start + c->cap; c->j++) {
        ack a = {(c->j << LANE_BITS) | c->lane, 0, 0};
        gen_op(c->seed, c->lane, c->j, &o);
        switch (o.kind) {
        case OP_PUT:
        case OP_DEL:
            run_plain(c, &o);
            break;
        case OP_ROLLBACK:
            run_rollback(c, &o, &a);
            break;
        case OP_CONFLICT:
            run_conflict(c, &o, &a);
            break;
        case OP_AUDIT:
            run_audit(c, &a);
            break;
        default:
            run_txn(c, &o, &a);
            break;
        }
        crash_send_record(c->fd, &a, sizeof a);
    }
    return NULL;
}

static shale_options db_opts(bool create)
{
    shale_options o = tu_small_lsm_options(2);
    o.create_if_missing = create;
    o.wal_segment_bytes = 64 * 1024;
    return o;
}

/* What the child of one cycle is given. */
typedef struct child_arg {
    const variant *v;
    const char *dir;
    const uint64_t *next; /* per lane, the first op of the cycle */
} child_arg;

static _Noreturn void child_main(void *arg, int fd)
{
    static child ctx[LANES_MAX];
    const variant *v = ((const child_arg *)arg)->v;
    const char *dir = ((const child_arg *)arg)->dir;
    const uint64_t *next = ((const child_arg *)arg)->next;
    shale_options o = db_opts(false);
    shale_error err = {0};
    shale_db *db = NULL;
    pthread_t th[LANES_MAX];

    ctx[0] = (child){.fd = fd, .seed = v->seed, .j = next[0]};
    shale_code rc = shale_open(dir, &o, &db, &err);
    if (rc != SHALE_OK) {
        child_fail(&ctx[0], rc, "open: %s", err.msg);
    }
    for (unsigned l = 0; l < v->lanes; l++) {
        ctx[l] = (child){
            .db = db, .fd = fd, .lane = l, .start = next[l], .seed = v->seed, .cap = v->cap};
    }
    for (unsigned l = 0; l < v->lanes; l++) {
        if (pthread_create(&th[l], NULL, lane_main, &ctx[l]) != 0) {
            _exit(6);
        }
    }
    for (unsigned l = 0; l < v->lanes; l++) {
        pthread_join(th[l], NULL);
    }
    /* Out of planned work: idle (holding the database open) until killed. */
    for (;;) {
        pause();
    }
}

/* ---- parent: the model ---------------------------------------------------------------------- */

/* A lane's state after some op: which op's value each slot holds (0 = absent), the balances,
 * and the version bounds (lo, hi] of each value when known (hi 0 = not known). */
typedef struct model {
    uint64_t j[N_SLOTS];
    int64_t bal[N_ACCT];
    uint64_t lo[N_SLOTS], hi[N_SLOTS];
} model;

typedef struct lane_state {
    uint64_t next;                           /* first op of the coming cycle */
    uint64_t last_ack;                       /* last acked op this cycle (next - 1 if none) */
    uint64_t last_commit;                    /* the last commit seq acked */
    model m;                                 /* after op next - 1 */
    uint64_t snap[CAP_MAX], commit[CAP_MAX]; /* this cycle's acks, by op - next */
    /* What the reopened database holds. */
    uint64_t aj[N_SLOTS];
    int64_t abal[N_ACCT];
    uint64_t aseq[N_SLOTS];
} lane_state;

typedef struct run_state {
    variant v;
    char *dir;
    lane_state lanes[LANES_MAX];
    uint64_t last_sequence; /* stats.last_sequence at the last reopen */
    uint64_t acked[OP_KINDS];
    uint64_t verified_txns; /* writing transactions whose writes were checked after a kill */
    uint64_t doubt_present, doubt_absent, doubt_txn_present, doubt_txn_absent;
    uint64_t peak_deep_tables;
    bool child_error;
    ack child_err;
    char bad_ack[256];
} run_state;

static void apply(const run_state *r, unsigned lane, uint64_t j, model *m, uint64_t snap,
                  uint64_t commit)
{
    static op o;
    gen_op(r->v.seed, lane, j, &o);
    if (o.kind == OP_PUT || o.kind == OP_CONFLICT || o.kind == OP_DEL) {
        m->j[o.target] = o.kind == OP_DEL ? 0 : j;
        m->lo[o.target] = m->hi[o.target] = 0;
        return;
    }
    if (!kind_writes_txn(o.kind)) {
        return;
    }
    for (uint32_t i = 0; i < o.nw; i++) {
        uint32_t s = o.w[i].slot;
        if (s < DATA0) {
            m->bal[s] += o.w[i].delta;
        }
        m->j[s] = o.w[i].del ? 0 : j;
        m->lo[s] = snap;
        m->hi[s] = commit;
    }
}

static bool slot_matches(const model *m, const lane_state *ls, uint32_t s)
{
    return m->j[s] == ls->aj[s] && (s >= DATA0 || m->bal[s] == ls->abal[s]);
}

static uint32_t mismatches(const model *m, const lane_state *ls)
{
    uint32_t n = 0;
    for (uint32_t s = 0; s < N_SLOTS; s++) {
        n += !slot_matches(m, ls, s);
    }
    return n;
}

static void describe(char *msg, size_t cap, const run_state *r, unsigned lane, uint32_t s,
                     const model *m, const lane_state *ls)
{
    size_t len = strlen(msg);
    if (len + 1 >= cap) {
        return;
    }
    snprintf(msg + len, cap - len, " slot %" PRIu32 ": want op %" PRIu64 " (%s", s, m->j[s],
             m->j[s] != 0 ? kind_names[kind_of(r->v.seed, lane, m->j[s])] : "absent");
    len = strlen(msg);
    if (s < DATA0 && len + 1 < cap) {
        snprintf(msg + len, cap - len,
                 ", balance %" PRId64 "), got op %" PRIu64 " (balance %" PRId64 ");", m->bal[s],
                 ls->aj[s], ls->abal[s]);
    } else if (len + 1 < cap) {
        snprintf(msg + len, cap - len, "), got op %" PRIu64 ";", ls->aj[s]);
    }
}

/* Finds which allowed state the lane's database is in: after the last ack, or after the op in
 * doubt. Fails naming what is partly there otherwise. */
static void match_lane(run_state *r, unsigned l, unsigned cycle)
{
    static model acked, doubt;
    lane_state *ls = &r->lanes[l];
    const variant *v = &r->v;
    uint64_t d = ls->last_ack + 1;
    enum op_kind dk = kind_of(v->seed, l, d);

    acked = ls->m;
    for (uint64_t j = ls->next; j <= ls->last_ack; j++) {
        apply(r, l, j, &acked, ls->snap[j - ls->next], ls->commit[j - ls->next]);
    }
    doubt = acked;
    apply(r, l, d, &doubt, 0, 0);

    const model *chosen = NULL;
    if (mismatches(&acked, ls) == 0) {
        chosen = &acked;
        r->doubt_absent++;
        r->doubt_txn_absent += kind_writes_txn(dk);
    } else if (mismatches(&doubt, ls) == 0) {
        chosen = &doubt;
        r->doubt_present++;
        r->doubt_txn_present += kind_writes_txn(dk);
    } else {
        /* Which writes of the op in doubt are there, and what else differs from the acked
         * state (acked writes lost, or garbage). */
        char msg[1536] = "";
        uint32_t there = 0, missing = 0, other = 0;
        for (uint32_t s = 0; s < N_SLOTS; s++) {
            bool touched = doubt.j[s] != acked.j[s] || (s < DATA0 && doubt.bal[s] != acked.bal[s]);
            if (touched && slot_matches(&doubt, ls, s)) {
                there++;
            } else if (touched && slot_matches(&acked, ls, s)) {
                missing++;
            } else if (!slot_matches(&acked, ls, s)) {
                other++;
                describe(msg, sizeof msg, r, l, s, &acked, ls);
            }
        }
        cr_assert_fail("%s seed %" PRIu64 " cycle %u lane %u: the database is neither the state "
                       "after the last ack (op %" PRIu64 ") nor after op %" PRIu64 " in doubt "
                       "(%s): of the keys op %" PRIu64 " changes, %u are there and %u are not%s; "
                       "%u other keys differ from the acked state:%s",
                       v->name, v->seed, cycle, l, ls->last_ack, d, kind_names[dk], d, there,
                       missing, there > 0 && missing > 0 ? " (PARTLY THERE)" : "", other, msg);
    }
    r->verified_txns += kind_writes_txn(dk) && chosen == &doubt;
    for (uint64_t j = ls->next; j <= ls->last_ack; j++) {
        r->verified_txns += kind_writes_txn(kind_of(v->seed, l, j));
    }
    for (uint32_t s = 0; s < N_SLOTS; s++) {
        if (chosen->j[s] != 0 && chosen->hi[s] != 0) {
            cr_assert(ls->aseq[s] > chosen->lo[s] && ls->aseq[s] <= chosen->hi[s],
                      "%s seed %" PRIu64 " cycle %u lane %u slot %" PRIu32 ": op %" PRIu64
                      " (%s) committed with snapshot %" PRIu64 " and commit seq %" PRIu64
                      ", but its value has version %" PRIu64,
                      v->name, v->seed, cycle, l, s, chosen->j[s],
                      kind_names[kind_of(v->seed, l, chosen->j[s])], chosen->lo[s], chosen->hi[s],
                      ls->aseq[s]);
        }
    }
    ls->m = *chosen;
    /* The op in doubt is settled either way; the next cycle starts after it. */
    ls->next = d + 1;
}

/* ---- parent: reading the reopened database -------------------------------------------------- */

/* Reads every slot of every lane into the lanes' aj/abal/aseq, checking each value. Returns how
 * many keys are present. */
static uint64_t read_actual(run_state *r, shale_db *db, unsigned cycle)
{
    const variant *v = &r->v;
    shale_buf val = {0};
    char kb[KEY_CAP];
    char why[160];
    uint64_t present = 0;

    for (unsigned l = 0; l < v->lanes; l++) {
        lane_state *ls = &r->lanes[l];
        int64_t sum = 0;
        for (uint32_t s = 0; s < N_SLOTS; s++) {
            shale_error err = {0};
            shale_entry_info info = {0};
            shale_code rc = shale_get_info(db, NULL, slot_key(kb, l, s), &val, &info, &err);
            cr_assert(rc == SHALE_OK || rc == SHALE_NOT_FOUND,
                      "%s seed %" PRIu64 " cycle %u: get: %s (%s)", v->name, v->seed, cycle,
                      shale_strerror(rc), err.msg);
            ls->aj[s] = 0;
            ls->aseq[s] = 0;
            if (s < DATA0) {
                ls->abal[s] = 0;
            }
            if (rc == SHALE_NOT_FOUND) {
                continue;
            }
            present++;
            parsed p;
            cr_assert(parse_value(v->seed, l, s, val.data, val.len, &p, why, sizeof why),
                      "%s seed %" PRIu64 " cycle %u: lane %u slot %" PRIu32 ": %s", v->name,
                      v->seed, cycle, l, s, why);
            cr_assert(p.tag != 'X',
                      "%s seed %" PRIu64 " cycle %u: lane %u slot %" PRIu32 " holds a value op "
                      "%" PRIu64 " (%s) wrote that must never be seen (rolled back, refused, or "
                      "overwritten inside its transaction)",
                      v->name, v->seed, cycle, l, s, p.j, kind_names[kind_of(v->seed, l, p.j)]);
            ls->aj[s] = p.j;
            ls->aseq[s] = info.seq;
            if (s < DATA0) {
                ls->abal[s] = p.bal;
                sum += p.bal;
            }
        }
        cr_assert_eq(sum, 0,
                     "%s seed %" PRIu64 " cycle %u lane %u: the balances sum to %" PRId64
                     ", not 0: a transfer is partly there",
                     v->name, v->seed, cycle, l, sum);
    }
    shale_buf_free(&val);
    return present;
}

/* Finds the (lane, slot) of a key, or false if it is no key of ours. */
static bool key_slot(const run_state *r, shale_slice key, unsigned *lane, uint32_t *slot)
{
    char text[KEY_CAP];
    char kb[KEY_CAP];
    unsigned x = 0;

    tu_head(text, sizeof text, key.data, key.len);
    if (sscanf(text, "%8x.t%u.%" SCNu32, &x, lane, slot) != 3 || *lane >= r->v.lanes ||
        *slot >= N_SLOTS) {
        return false;
    }
    shale_slice k = slot_key(kb, *lane, *slot);
    return k.len == key.len && memcmp(k.data, key.data, k.len) == 0;
}

typedef struct scan_arg {
    const run_state *r;
    unsigned cycle;
} scan_arg;

/* One entry of the scan: a key of ours that the gets saw, with the same version. */
static void check_scan_entry(void *arg, shale_iter *it)
{
    const run_state *r = ((const scan_arg *)arg)->r;
    unsigned cycle = ((const scan_arg *)arg)->cycle;
    const variant *v = &r->v;
    unsigned l;
    uint32_t s;
    char text[KEY_CAP];
    shale_slice k = shale_iter_key(it);

    tu_head(text, sizeof text, k.data, k.len);
    cr_assert(key_slot(r, k, &l, &s), "%s cycle %u: the scan sees a foreign key '%s'", v->name,
              cycle, text);
    const lane_state *ls = &r->lanes[l];
    cr_assert(ls->aj[s] != 0 && shale_iter_info(it).seq == ls->aseq[s],
              "%s cycle %u: the scan sees key '%s' version %" PRIu64 ", the get saw op %" PRIu64
              " version %" PRIu64,
              v->name, cycle, text, shale_iter_info(it).seq, ls->aj[s], ls->aseq[s]);
}

/* The scan sees exactly what the gets saw, with the same versions. */
static void check_scan(const run_state *r, shale_db *db, unsigned cycle, uint64_t present)
{
    shale_iter *it = NULL;
    shale_error err = {0};

    cr_assert_eq(shale_iter_new(db, NULL, &it, &err), SHALE_OK, "%s", err.msg);
    crash_check_scan(it, present, check_scan_entry, &(scan_arg){r, cycle}, "the scan", r->v.name,
                     cycle);
}

/* A transaction on the reopened database reads the same: balances (sum 0) and, through its
 * iterator, the same number of keys; its read-only commit succeeds and writes nothing. */
static void check_in_txn(const run_state *r, shale_db *db, unsigned cycle, uint64_t present)
{
    const variant *v = &r->v;
    shale_txn_opts to = {.isolation = SHALE_ISOLATION_SERIALIZABLE};
    shale_txn *t = NULL;
    shale_error err = {0};
    shale_buf val = {0};
    char kb[KEY_CAP];
    char why[160] = "";

    cr_assert_eq(shale_txn_begin(db, &to, &t, &err), SHALE_OK, "%s", err.msg);
    for (unsigned l = 0; l < v->lanes; l++) {
        const lane_state *ls = &r->lanes[l];
        int64_t sum = 0;
        for (uint32_t s = 0; s < N_ACCT; s++) {
            shale_code rc = shale_txn_get(t, slot_key(kb, l, s), &val, &err);
            parsed p = {0};
            cr_assert(rc == SHALE_OK || rc == SHALE_NOT_FOUND, "%s cycle %u: txn get: %s (%s)",
                      v->name, cycle, shale_strerror(rc), err.msg);
            cr_assert(rc == SHALE_NOT_FOUND ||
                          parse_value(v->seed, l, s, val.data, val.len, &p, why, sizeof why),
                      "%s cycle %u: txn get of lane %u account %" PRIu32 ": %s", v->name, cycle, l,
                      s, why);
            cr_assert(p.j == ls->aj[s] && p.bal == ls->abal[s],
                      "%s cycle %u: lane %u account %" PRIu32 ": the txn reads op %" PRIu64
                      " balance %" PRId64 ", the get read op %" PRIu64 " balance %" PRId64,
                      v->name, cycle, l, s, p.j, p.bal, ls->aj[s], ls->abal[s]);
            sum += p.bal;
        }
        cr_assert_eq(sum, 0, "%s cycle %u lane %u: in a txn the balances sum to %" PRId64, v->name,
                     cycle, l, sum);
    }
    shale_buf_free(&val);

    shale_iter *it = NULL;
    cr_assert_eq(shale_txn_iter_new(t, NULL, &it, &err), SHALE_OK, "%s", err.msg);
    crash_check_scan(it, present, NULL, NULL, "the txn iterator", v->name, cycle);

    shale_code rc = shale_txn_commit(t, &err);
    cr_assert_eq(rc, SHALE_OK, "%s cycle %u: read-only commit: %s (%s)", v->name, cycle,
                 shale_strerror(rc), err.msg);
    cr_assert_eq(shale_txn_commit_seq(t), 0, "%s cycle %u: a read-only commit has a commit seq",
                 v->name, cycle);
    shale_txn_free(t);
}

/* Compacts everything; nothing may change, versions included. */
static void compact_and_compare(run_state *r, shale_db *db, unsigned cycle, uint64_t present)
{
    static lane_state before[LANES_MAX];
    const variant *v = &r->v;
    shale_error err = {0};

    memcpy(before, r->lanes, sizeof before);
    shale_code rc = shale_compact(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s cycle %u: compact: %s (%s)", v->name, cycle, shale_strerror(rc),
                 err.msg);
    uint64_t after = read_actual(r, db, cycle);
    cr_assert_eq(after, present, "%s cycle %u: compaction changed the key count", v->name, cycle);
    for (unsigned l = 0; l < v->lanes; l++) {
        const lane_state *a = &r->lanes[l];
        const lane_state *b = &before[l];
        cr_assert(memcmp(a->aj, b->aj, sizeof a->aj) == 0 &&
                      memcmp(a->abal, b->abal, sizeof a->abal) == 0 &&
                      memcmp(a->aseq, b->aseq, sizeof a->aseq) == 0,
                  "%s cycle %u lane %u: compaction changed values or versions", v->name, cycle, l);
    }
}

static void verify(run_state *r, unsigned cycle)
{
    const variant *v = &r->v;
    bool tenth = cycle % 10 == 9 || cycle + 1 == v->cycles;

    if (tenth) {
        crash_offline_check(r->dir, v->name, v->seed, cycle);
    }
    /* Defaults but for the level-0 trigger: no compaction starts while the files are listed. */
    shale_options o = {.l0_compaction_trigger = 64};
    shale_error err = {0};
    shale_db *db = NULL;
    shale_code rc = shale_open(r->dir, &o, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s seed %" PRIu64 " cycle %u: reopen after the kill: %s (%s)",
                 v->name, v->seed, cycle, shale_strerror(rc), err.msg);

    uint64_t present = read_actual(r, db, cycle);
    for (unsigned l = 0; l < v->lanes; l++) {
        match_lane(r, l, cycle);
    }
    check_scan(r, db, cycle, present);
    check_in_txn(r, db, cycle, present);

    shale_stats st;
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
    for (unsigned l = 0; l < v->lanes; l++) {
        cr_assert_geq(st.last_sequence, r->lanes[l].last_commit,
                      "%s cycle %u: last_sequence %" PRIu64 " below the acked commit seq %" PRIu64,
                      v->name, cycle, st.last_sequence, r->lanes[l].last_commit);
    }
    cr_assert_geq(st.last_sequence, r->last_sequence,
                  "%s cycle %u: last_sequence went back from %" PRIu64 " to %" PRIu64, v->name,
                  cycle, r->last_sequence, st.last_sequence);
    r->last_sequence = st.last_sequence;
    uint64_t deep = 0;
    for (int lv = 1; lv < 8; lv++) {
        deep += st.level_tables[lv];
    }
    r->peak_deep_tables = deep > r->peak_deep_tables ? deep : r->peak_deep_tables;

    char ctx[128];
    snprintf(ctx, sizeof ctx, "%s seed %" PRIu64 " cycle %u: after the kill", v->name, v->seed,
             cycle);
    tu_assert_db_files(db, r->dir, ctx);
    if (tenth) {
        compact_and_compare(r, db, cycle, present);
    }
    rc = shale_close(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s cycle %u: close: %s", v->name, cycle, err.msg);
}

/* ---- parent: one cycle ---------------------------------------------------------------------- */

static void bad_ack(run_state *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bad_ack(run_state *r, const char *fmt, ...)
{
    va_list ap;
    if (r->bad_ack[0] != '\0') {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(r->bad_ack, sizeof r->bad_ack, fmt, ap);
    va_end(ap);
}

/* Books one ack; returns false if it reports a child error. A lane's acks come strictly in op
 * order (one thread sends them, each after its call returned). */
static bool book_ack(void *arg, const void *rec)
{
    run_state *r = arg;
    const ack *a = rec;

    if (a->tag & ERR_RECORD) {
        r->child_error = true;
        r->child_err = *a;
        return false;
    }
    unsigned l = (unsigned)(a->tag & ((1u << LANE_BITS) - 1));
    uint64_t j = a->tag >> LANE_BITS;
    if (l >= r->v.lanes || j != r->lanes[l].last_ack + 1 || j - r->lanes[l].next >= CAP_MAX) {
        bad_ack(r, "ack of lane %u op %" PRIu64 " out of order", l, j);
        return true;
    }
    lane_state *ls = &r->lanes[l];
    enum op_kind k = kind_of(r->v.seed, l, j);
    if (kind_writes_txn(k)) {
        if (!(a->snap >= r->last_sequence && a->commit > a->snap && a->commit > ls->last_commit)) {
            bad_ack(r,
                    "lane %u op %" PRIu64 " (%s): snapshot %" PRIu64 ", commit seq %" PRIu64
                    " (the last acked commit seq %" PRIu64 ", last_sequence at the reopen %" PRIu64
                    ")",
                    l, j, kind_names[k], a->snap, a->commit, ls->last_commit, r->last_sequence);
        }
        ls->last_commit = a->commit;
    } else if (a->commit != 0 || (!kind_uses_txn(k) && a->snap != 0)) {
        bad_ack(r, "lane %u op %" PRIu64 " (%s) wrote nothing but has commit seq %" PRIu64, l, j,
                kind_names[k], a->commit);
    }
    ls->snap[j - ls->next] = a->snap;
    ls->commit[j - ls->next] = a->commit;
    ls->last_ack = j;
    r->acked[k]++;
    return true;
}

static void crash_cycle(run_state *r, tu_rng *rng, unsigned cycle)
{
    const variant *v = &r->v;
    uint64_t next[LANES_MAX];
    child_arg ca = {.v = v, .dir = r->dir, .next = next};

    for (unsigned l = 0; l < v->lanes; l++) {
        next[l] = r->lanes[l].next;
        r->lanes[l].last_ack = next[l] - 1;
    }
    int status = crash_fork_kill(&(crash_child){.main = child_main,
                                                .main_arg = &ca,
                                                .book = book_ack,
                                                .book_arg = r,
                                                .record_len = sizeof(ack),
                                                .max_acks = v->max_acks,
                                                .max_delay_us = v->max_delay_us,
                                                .mixed_delay_div = 4,
                                                .ack_wait_ms = ACK_WAIT_MS},
                                 rng);
    cr_assert(!r->child_error,
              "%s seed %" PRIu64 " cycle %u: the child failed on lane %u op %" PRIu64
              " with %s (see stderr)",
              v->name, v->seed, cycle, (unsigned)(r->child_err.tag & 0xff), r->child_err.snap,
              shale_strerror((shale_code)((r->child_err.tag & ~ERR_RECORD) >> LANE_BITS)));
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "%s cycle %u: the child ended on its own (status 0x%x)", v->name, cycle, status);
    cr_assert(r->bad_ack[0] == '\0', "%s seed %" PRIu64 " cycle %u: %s", v->name, v->seed, cycle,
              r->bad_ack);
}

static void run(const variant *vin)
{
    /* Static, so a failed assertion (which ends the test process) leaves nothing leaked. */
    static run_state run_state_;
    run_state *r = &run_state_;
    const variant *v = &r->v;

    cr_assert_leq(vin->lanes, LANES_MAX);
    cr_assert_leq(vin->cap, CAP_MAX);
    memset(r, 0, sizeof *r);
    r->v = *vin;
    r->v.seed = crash_env_seed(vin->seed);
    r->v.cycles = vin->cycles * (unsigned)tu_campaign_scale();
    for (unsigned l = 0; l < v->lanes; l++) {
        r->lanes[l].next = 1;
    }
    tu_rng rng;
    shale_options o = db_opts(true);
    r->dir = crash_create("crash_txn", &o, v->seed, &rng);

    for (unsigned c = 0; c < v->cycles; c++) {
        crash_cycle(r, &rng, c);
        verify(r, c);
    }
    uint64_t txns = r->acked[OP_TXN] + r->acked[OP_TXN_SER] + r->acked[OP_TXN_BIG];
    cr_log_info("%s: seed %" PRIu64 ", %u cycles, %" PRIu64
                " writing transactions verified (%" PRIu64 " acked: %" PRIu64 " snapshot, %" PRIu64
                " serializable, %" PRIu64 " big; in doubt %" PRIu64 " there, %" PRIu64
                " absent); also acked %" PRIu64 " puts, %" PRIu64 " deletes, %" PRIu64
                " rollbacks, %" PRIu64 " refused, %" PRIu64 " audits; up to %" PRIu64
                " tables below level 0",
                v->name, v->seed, v->cycles, r->verified_txns, txns, r->acked[OP_TXN],
                r->acked[OP_TXN_SER], r->acked[OP_TXN_BIG], r->doubt_txn_present,
                r->doubt_txn_absent, r->acked[OP_PUT], r->acked[OP_DEL], r->acked[OP_ROLLBACK],
                r->acked[OP_CONFLICT], r->acked[OP_AUDIT], r->peak_deep_tables);
    /* The run must have exercised what it claims to. */
    for (int k = 0; k < OP_KINDS; k++) {
        cr_assert_gt(r->acked[k], 0, "%s: no %s was ever acked", v->name, kind_names[k]);
    }
    cr_assert_gt(r->peak_deep_tables, 0, "%s: no table ever reached level 1", v->name);
    /* Every mismatch failed in match_lane: nothing acknowledged was lost. */
    uint64_t acked = 0;
    for (int k = 0; k < OP_KINDS; k++) {
        acked += r->acked[k];
    }
    tu_campaign_report("crash",
                       "%s: %u cycles, %llu acknowledged ops verified, %llu in doubt, 0 lost "
                       "(%llu writing transactions; in doubt %llu transactions there, %llu absent; "
                       "seed 0x%llx)",
                       v->name, v->cycles, (unsigned long long)acked,
                       (unsigned long long)r->doubt_present, (unsigned long long)txns,
                       (unsigned long long)r->doubt_txn_present,
                       (unsigned long long)r->doubt_txn_absent, (unsigned long long)v->seed);
    crash_remove(&r->dir);
}

/* Variants: name, lanes, cycles, ops per lane per cycle, max acks before the kill, max delay
 * before the kill (us), seed. */

Test(crash_txn, full_single_writer)
{
    run(&(variant){"txn/1", 1, 60, 3000, 150, 200000, 0x7a110001});
}

Test(crash_txn, full_two_writers_group_commit)
{
    run(&(variant){"txn/2", 2, 30, 2000, 200, 200000, 0x7a110002});
}
