/*
 * crash_test: process crashes (SIGKILL) against the public API.
 *
 * Each cycle the parent forks a child that opens the database and writes in a loop: single puts,
 * deletes and multi-key batches, generated deterministically from (seed, lane, op index), so the
 * parent knows every operation without being told. The child reports each operation over a pipe
 * only after the call returned SHALE_OK (an acknowledgement). The parent SIGKILLs it at a random
 * moment (after a random number of acks and/or a random short delay), reaps it, drains the pipe,
 * reopens the database and compares every key of the key space with its model.
 *
 * The model is exact. Each lane (one writer thread) owns a disjoint slice of the key space and
 * writes its operations strictly in order, so after a kill at most one operation per lane (the one
 * after its last ack) is in doubt. With OS and FULL durability the database must equal the model
 * after the last acked operation, or after the one in doubt; nothing else (no lost ack, no half
 * batch, no garbage). With MEMORY durability acked writes may be lost, but what survives must be
 * a prefix: the database must equal the model after SOME operation of the cycle (no holes). The
 * same directory accumulates over all cycles of a test, so recovery replays many segments, torn
 * tails and recoveries that were themselves killed (a kill can land inside the child's open).
 * SHALE_CRASH_SEED=<n> in the environment replaces the operation seed of every variant.
 *
 * The verifier's clean close flushes the memtable into a table, so from the second cycle on the
 * child recovers tables plus the log it wrote (and kills can land in a flush or compaction). Once
 * tables hold data stats.live_keys is an estimate (include/shale.h), so it is compared exactly
 * with the readable count only while everything is in the memtable, and after a full compaction
 * (shale_compact), which every fifth cycle and the last one run before the verifier closes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shale.h"

#include "testutil.h"

#define MAX_LANES  4
#define LANE_KEYS  160u /* small enough that deletes and overwrites hit live keys often */
#define MAX_BATCH  6u
#define MAX_PAD    120u
#define VALUE_CAP  (64u + MAX_PAD)
#define ERR_RECORD (1ull << 63)
#define LANE_BITS  8u
#define SEG_BYTES  (64u * 1024u) /* the minimum: many segment rolls */

enum op_kind { OP_PUT, OP_DEL, OP_BATCH };

typedef struct op {
    enum op_kind kind;
    uint32_t nkeys;
    uint32_t keys[MAX_BATCH];
} op;

typedef struct variant {
    const char *name;
    unsigned lanes;
    shale_durability durability;
    unsigned cycles;
    uint64_t cap;      /* operations per lane per cycle before the child idles */
    uint64_t max_acks; /* kill after up to this many acks */
    uint64_t max_delay_us;
    uint64_t seed;
} variant;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t op_hash(uint64_t seed, unsigned lane, uint64_t j)
{
    return mix64(seed ^ mix64(((uint64_t)lane << 56) ^ j ^ 0x5bd1e995ull));
}

/* Operation j of a lane: 60% puts, 20% deletes, 20% batches of 2..6 distinct keys. */
static void gen_op(uint64_t seed, unsigned lane, uint64_t j, op *out)
{
    tu_rng r;
    tu_rng_seed(&r, op_hash(seed, lane, j));
    uint64_t kind = tu_rng_below(&r, 10);

    out->kind = kind < 6 ? OP_PUT : kind < 8 ? OP_DEL : OP_BATCH;
    out->nkeys = out->kind == OP_BATCH ? 2 + (uint32_t)tu_rng_below(&r, MAX_BATCH - 1) : 1;
    for (uint32_t i = 0; i < out->nkeys; i++) {
        uint32_t k;
        bool dup;
        do {
            k = (uint32_t)tu_rng_below(&r, LANE_KEYS);
            dup = false;
            for (uint32_t m = 0; m < i; m++) {
                dup = dup || out->keys[m] == k;
            }
        } while (dup);
        out->keys[i] = k;
    }
}

static shale_slice lane_key(char *buf, unsigned lane, uint32_t k)
{
    return tu_key(buf, (uint64_t)lane * LANE_KEYS + k);
}

/* The value op j of `lane` writes to key k: names all three (a batch's values all carry the
 * batch's op index) and is padded to a length that varies with the op, so torn tails land at
 * varied places. */
static size_t make_value(char *buf, uint64_t seed, unsigned lane, uint64_t j, uint32_t k)
{
    int n = snprintf(buf, VALUE_CAP, "L%u J%" PRIu64 " K%u|", lane, j, k);
    size_t pad = (size_t)(op_hash(seed, lane, j) >> 40) % MAX_PAD;

    for (size_t i = 0; i < pad; i++) {
        buf[(size_t)n + i] = (char)('a' + (j + k + i) % 26);
    }
    return (size_t)n + pad;
}

/* ---- child ---------------------------------------------------------------------------------- */

typedef struct lane_ctx {
    shale_db *db;
    int fd;
    unsigned lane;
    uint64_t start;
    const variant *v;
} lane_ctx;

static void send_record(int fd, uint64_t rec)
{
    const char *p = (const char *)&rec;
    size_t left = sizeof rec;

    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            _exit(4);
        }
        p += n;
        left -= (size_t)n;
    }
}

static void child_fail(int fd, unsigned lane, uint64_t j, const char *what, shale_code rc,
                       const shale_error *err)
{
    fprintf(stderr, "crash child: lane %u op %" PRIu64 ": %s: %s (%s)\n", lane, j, what,
            shale_strerror(rc), err != NULL ? err->msg : "");
    send_record(fd, ERR_RECORD | ((uint64_t)rc << LANE_BITS) | lane);
    _exit(3);
}

static shale_code run_op(shale_db *db, const variant *v, unsigned lane, uint64_t j,
                         shale_error *err)
{
    char kb[17];
    char vb[VALUE_CAP];
    op o;
    shale_code rc;

    gen_op(v->seed, lane, j, &o);
    if (o.kind == OP_PUT) {
        size_t n = make_value(vb, v->seed, lane, j, o.keys[0]);
        return shale_put(db, NULL, lane_key(kb, lane, o.keys[0]), (shale_slice){vb, n}, err);
    }
    if (o.kind == OP_DEL) {
        return shale_delete(db, NULL, lane_key(kb, lane, o.keys[0]), err);
    }
    shale_batch *b = shale_batch_new();
    if (b == NULL) {
        return SHALE_NOMEM;
    }
    rc = SHALE_OK;
    for (uint32_t i = 0; i < o.nkeys && rc == SHALE_OK; i++) {
        size_t n = make_value(vb, v->seed, lane, j, o.keys[i]);
        rc = shale_batch_put(b, lane_key(kb, lane, o.keys[i]), (shale_slice){vb, n}, err);
    }
    if (rc == SHALE_OK) {
        rc = shale_write(db, NULL, b, err);
    }
    shale_batch_free(b);
    return rc;
}

static void *lane_main(void *arg)
{
    lane_ctx *c = arg;

    for (uint64_t j = c->start; j < c->start + c->v->cap; j++) {
        shale_error err = {0};
        shale_code rc = run_op(c->db, c->v, c->lane, j, &err);
        if (rc != SHALE_OK) {
            child_fail(c->fd, c->lane, j, "write", rc, &err);
        }
        send_record(c->fd, (j << LANE_BITS) | c->lane);
    }
    return NULL;
}

static _Noreturn void child_main(const variant *v, const char *dir, int fd, pid_t parent,
                                 const uint64_t *next)
{
    shale_options o = {
        .create_if_missing = false,
        .durability = v->durability,
        .wal_segment_bytes = SEG_BYTES,
    };
    shale_error err = {0};
    shale_db *db = NULL;
    lane_ctx ctx[MAX_LANES];
    pthread_t th[MAX_LANES];

    /* Never outlive the test process, even if it fails an assertion before killing us. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(5);
    }
    shale_code rc = shale_open(dir, &o, &db, &err);
    if (rc != SHALE_OK) {
        child_fail(fd, 0, 0, "open", rc, &err);
    }
    for (unsigned l = 0; l < v->lanes; l++) {
        ctx[l] = (lane_ctx){.db = db, .fd = fd, .lane = l, .start = next[l], .v = v};
    }
    if (v->lanes == 1) {
        lane_main(&ctx[0]);
    } else {
        for (unsigned l = 0; l < v->lanes; l++) {
            if (pthread_create(&th[l], NULL, lane_main, &ctx[l]) != 0) {
                _exit(6);
            }
        }
        for (unsigned l = 0; l < v->lanes; l++) {
            pthread_join(th[l], NULL);
        }
    }
    /* Out of planned work: idle (holding the database open) until killed. */
    for (;;) {
        pause();
    }
}

/* ---- parent --------------------------------------------------------------------------------- */

typedef struct lane_model {
    uint64_t next;              /* first op index of the coming cycle */
    uint64_t last_ack;          /* last acked op index this cycle (next - 1 if none) */
    uint64_t state[LANE_KEYS];  /* op index whose value the key holds; 0 = absent */
    uint64_t actual[LANE_KEYS]; /* what the reopened database holds */
} lane_model;

typedef struct run {
    const variant *v;
    char *dir;
    lane_model lanes[MAX_LANES];
    uint64_t acked_ops, acked_puts, acked_dels, acked_batches;
    uint64_t in_doubt_present, lost_acked;
    uint64_t last_sequence;
    bool child_error;
    uint64_t child_error_rec;
} run;

/* Returns 1 for a record, 0 at end of file. */
static int read_record(int fd, uint64_t *rec)
{
    char *p = (char *)rec;
    size_t got = 0;

    while (got < sizeof *rec) {
        ssize_t n = read(fd, p + got, sizeof *rec - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return 0;
        }
        got += (size_t)n;
    }
    return 1;
}

/* Books one record; returns false if it reports a child error. Ack order is checked: a lane's
 * acks arrive strictly in op order because one thread writes them after each call returns. */
static bool book_record(run *r, uint64_t rec, bool *order_ok)
{
    if (rec & ERR_RECORD) {
        r->child_error = true;
        r->child_error_rec = rec;
        return false;
    }
    unsigned lane = (unsigned)(rec & ((1u << LANE_BITS) - 1));
    uint64_t j = rec >> LANE_BITS;
    if (lane >= r->v->lanes || j != r->lanes[lane].last_ack + 1) {
        *order_ok = false;
        return true;
    }
    r->lanes[lane].last_ack = j;
    op o;
    gen_op(r->v->seed, lane, j, &o);
    r->acked_ops++;
    r->acked_puts += o.kind == OP_PUT;
    r->acked_dels += o.kind == OP_DEL;
    r->acked_batches += o.kind == OP_BATCH;
    return true;
}

static void sleep_us(uint64_t us)
{
    struct timespec ts = {.tv_sec = (time_t)(us / 1000000), .tv_nsec = (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Fork, let the child write, kill it at a random moment, collect every ack. */
static void crash_cycle(run *r, tu_rng *rng, unsigned cycle)
{
    const variant *v = r->v;
    int fds[2];
    uint64_t next[MAX_LANES];
    bool order_ok = true;
    uint64_t rec;

    for (unsigned l = 0; l < v->lanes; l++) {
        next[l] = r->lanes[l].next;
        r->lanes[l].last_ack = next[l] - 1;
    }
    cr_assert_eq(pipe(fds), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        child_main(v, r->dir, fds[1], parent, next);
    }
    close(fds[1]);

    /* The kill plan: after n acks, after a delay, or both. n = 0 with no delay kills the child
     * during (or before) its recovery. */
    uint64_t mode = tu_rng_below(rng, 3);
    uint64_t want = mode == 1 ? 0 : tu_rng_below(rng, v->max_acks + 1);
    uint64_t delay = mode == 0   ? 0
                     : mode == 1 ? tu_rng_below(rng, v->max_delay_us + 1)
                                 : tu_rng_below(rng, v->max_delay_us / 8 + 1);
    uint64_t seen = 0;
    bool alive = true;
    while (seen < want && alive) {
        if (!read_record(fds[0], &rec)) {
            alive = false;
            break;
        }
        alive = book_record(r, rec, &order_ok);
        seen++;
    }
    if (alive && delay > 0) {
        sleep_us(delay);
    }
    kill(pid, SIGKILL);
    int status = 0;
    pid_t w;
    do {
        w = waitpid(pid, &status, 0);
    } while (w < 0 && errno == EINTR);
    /* Everything the child wrote to the pipe before it died was acknowledged. */
    while (!r->child_error && read_record(fds[0], &rec)) {
        book_record(r, rec, &order_ok);
    }
    close(fds[0]);

    cr_assert_eq(w, pid, "waitpid: %s", strerror(errno));
    cr_assert(!r->child_error,
              "%s cycle %u: the child failed a write on lane %u with %s (see stderr)", v->name,
              cycle, (unsigned)(r->child_error_rec & 0xff),
              shale_strerror((shale_code)((r->child_error_rec & ~ERR_RECORD) >> LANE_BITS)));
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "%s cycle %u: the child ended on its own (status 0x%x)", v->name, cycle, status);
    cr_assert(order_ok, "%s cycle %u: acks out of order", v->name, cycle);
}

/* Whether data lives outside the mutable memtable (then live_keys is an estimate). */
static bool tables_hold_data(const shale_stats *st)
{
    for (int l = 0; l < 8; l++) {
        if (st->level_tables[l] != 0) {
            return true;
        }
    }
    return st->immutable_memtables != 0;
}

/* Reads every key into the lanes' actual[], checking every value byte for byte; returns how many
 * keys are present. */
static uint64_t read_actual(run *r, shale_db *db, unsigned cycle)
{
    const variant *v = r->v;
    shale_buf val = {0};
    char kb[17];
    char want[VALUE_CAP];
    uint64_t present = 0;

    for (unsigned l = 0; l < v->lanes; l++) {
        for (uint32_t k = 0; k < LANE_KEYS; k++) {
            shale_error err = {0};
            shale_code rc = shale_get(db, NULL, lane_key(kb, l, k), &val, &err);
            cr_assert(rc == SHALE_OK || rc == SHALE_NOT_FOUND, "%s cycle %u: get: %s (%s)", v->name,
                      cycle, shale_strerror(rc), err.msg);
            r->lanes[l].actual[k] = 0;
            if (rc == SHALE_NOT_FOUND) {
                continue;
            }
            present++;
            unsigned vl = 0, vk = 0;
            uint64_t vj = 0;
            char text[VALUE_CAP + 1];
            size_t tl = val.len < VALUE_CAP ? val.len : VALUE_CAP;
            memcpy(text, val.data, tl);
            text[tl] = '\0';
            int fields = sscanf(text, "L%u J%" SCNu64 " K%u|", &vl, &vj, &vk);
            cr_assert(fields == 3 && vl == l && vk == k && vj > 0,
                      "%s cycle %u: lane %u key %u holds a foreign value '%.40s'", v->name, cycle,
                      l, k, text);
            size_t wl = make_value(want, v->seed, l, vj, k);
            cr_assert(wl == val.len && memcmp(want, val.data, wl) == 0,
                      "%s cycle %u: lane %u key %u: value of op %" PRIu64 " is damaged", v->name,
                      cycle, l, k, vj);
            r->lanes[l].actual[k] = vj;
        }
    }
    shale_buf_free(&val);

    shale_stats st;
    shale_error err = {0};
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(st.estimated_live_keys, st.live_keys,
                 "%s cycle %u: estimated_live_keys %" PRIu64 " != live_keys %" PRIu64, v->name,
                 cycle, st.estimated_live_keys, st.live_keys);
    /* Exact only while every key is in the memtable (recovered from the log alone); with
     * tables, compact_and_check makes the comparison exact. */
    if (!tables_hold_data(&st)) {
        cr_assert_eq(st.live_keys, present,
                     "%s cycle %u: live_keys %" PRIu64 " but %" PRIu64 " keys readable", v->name,
                     cycle, st.live_keys, present);
    }
    cr_assert_geq(st.last_sequence, r->last_sequence,
                  "%s cycle %u: last_sequence went back from %" PRIu64 " to %" PRIu64, v->name,
                  cycle, r->last_sequence, st.last_sequence);
    r->last_sequence = st.last_sequence;
    return present;
}

/* Compacts everything, checks that this lost or changed nothing and that live_keys is exact
 * again (one version per key, no tombstones, nothing in the memtable). */
static void compact_and_check(run *r, shale_db *db, unsigned cycle)
{
    static uint64_t before[MAX_LANES][LANE_KEYS];
    const variant *v = r->v;
    shale_error err = {0};
    shale_stats st;

    for (unsigned l = 0; l < v->lanes; l++) {
        memcpy(before[l], r->lanes[l].actual, sizeof before[l]);
    }
    shale_code rc = shale_compact(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s cycle %u: compact: %s (%s)", v->name, cycle, shale_strerror(rc),
                 err.msg);
    uint64_t present = read_actual(r, db, cycle);
    for (unsigned l = 0; l < v->lanes; l++) {
        cr_assert(memcmp(before[l], r->lanes[l].actual, sizeof before[l]) == 0,
                  "%s cycle %u: lane %u: compaction changed the data", v->name, cycle, l);
    }
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(st.live_keys, present,
                 "%s cycle %u: after a full compaction live_keys %" PRIu64 " but %" PRIu64
                 " keys readable",
                 v->name, cycle, st.live_keys, present);
}

/* Applies op j to `state`, keeping `mismatch` (keys where state != actual) up to date. */
static void apply_op(const variant *v, unsigned lane, uint64_t j, uint64_t *state,
                     const uint64_t *actual, uint64_t *mismatch)
{
    op o;
    gen_op(v->seed, lane, j, &o);
    for (uint32_t i = 0; i < o.nkeys; i++) {
        uint32_t k = o.keys[i];
        uint64_t nv = o.kind == OP_DEL ? 0 : j;
        *mismatch -= state[k] != actual[k];
        state[k] = nv;
        *mismatch += state[k] != actual[k];
    }
}

/* Finds the point of the lane's op sequence the database equals. Durable levels: the last ack
 * or the op in doubt just after it. MEMORY: any point of the cycle (a prefix). */
static void match_lane(run *r, unsigned l, unsigned cycle)
{
    const variant *v = r->v;
    lane_model *m = &r->lanes[l];
    bool durable = v->durability >= SHALE_DURABILITY_OS;
    uint64_t first = m->next;
    uint64_t doubt = m->last_ack + 1;
    uint64_t lo = durable ? m->last_ack : first - 1;
    uint64_t acked_state[LANE_KEYS];
    uint64_t mismatch = 0;
    uint64_t at = first - 1;
    bool found;

    for (uint32_t k = 0; k < LANE_KEYS; k++) {
        mismatch += m->state[k] != m->actual[k];
    }
    found = at >= lo && mismatch == 0;
    while (!found && at < doubt) {
        if (at + 1 == doubt) {
            memcpy(acked_state, m->state, sizeof acked_state);
        }
        at++;
        apply_op(v, l, at, m->state, m->actual, &mismatch);
        found = at >= lo && mismatch == 0;
    }
    if (!found) {
        /* Name the first keys that differ from the acknowledged state. */
        char msg[512];
        size_t len = 0;
        for (uint32_t k = 0; k < LANE_KEYS && len < sizeof msg - 64; k++) {
            if (acked_state[k] != m->actual[k]) {
                len += (size_t)snprintf(msg + len, sizeof msg - len,
                                        " key %u: want op %" PRIu64 " got %" PRIu64 ";", k,
                                        acked_state[k], m->actual[k]);
            }
        }
        cr_assert_fail("%s cycle %u lane %u: the database matches no allowed point (ops %" PRIu64
                       "..%" PRIu64 ", last ack %" PRIu64 "):%s",
                       v->name, cycle, l, first, doubt, m->last_ack, msg);
    }
    if (at == doubt) {
        r->in_doubt_present++;
    }
    if (at < m->last_ack) {
        r->lost_acked += m->last_ack - at;
    }
    /* The op in doubt is settled either way; the next cycle starts after it. */
    m->next = doubt + 1;
}

static void verify(run *r, unsigned cycle)
{
    shale_options o = {.durability = r->v->durability, .wal_segment_bytes = SEG_BYTES};
    shale_error err = {0};
    shale_db *db = NULL;

    shale_code rc = shale_open(r->dir, &o, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s cycle %u: reopen after the kill: %s (%s)", r->v->name, cycle,
                 shale_strerror(rc), err.msg);
    read_actual(r, db, cycle);
    if (cycle % 5 == 4 || cycle + 1 == r->v->cycles) {
        compact_and_check(r, db, cycle);
    }
    rc = shale_close(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s cycle %u: close: %s", r->v->name, cycle, err.msg);
    for (unsigned l = 0; l < r->v->lanes; l++) {
        match_lane(r, l, cycle);
    }
}

static uint64_t env_seed(uint64_t fallback)
{
    const char *s = getenv("SHALE_CRASH_SEED");
    return s != NULL && s[0] != '\0' ? strtoull(s, NULL, 0) : fallback;
}

static void run_variant(const variant *vin)
{
    /* Static, so a failed assertion (which ends the test process) leaves nothing leaked. */
    static variant v;
    static run run_state;
    run *r = &run_state;
    v = *vin;
    memset(r, 0, sizeof *r);
    v.seed = env_seed(v.seed);
    r->v = &v;
    r->dir = tu_tmpdir("crash");
    for (unsigned l = 0; l < v.lanes; l++) {
        r->lanes[l].next = 1;
    }
    tu_rng rng;
    tu_rng_seed(&rng, v.seed ^ 0xc2b2ae3d27d4eb4full ^ (uint64_t)getpid());

    /* Created up front, so every child (and every kill) meets an existing database. */
    shale_options o = {.create_if_missing = true, .durability = v.durability};
    shale_error err = {0};
    shale_db *db = NULL;
    cr_assert_eq(shale_open(r->dir, &o, &db, &err), SHALE_OK, "create: %s", err.msg);
    cr_assert_eq(shale_close(db, &err), SHALE_OK, "close: %s", err.msg);

    for (unsigned c = 0; c < v.cycles; c++) {
        crash_cycle(r, &rng, c);
        verify(r, c);
    }
    cr_log_info("%s: seed %" PRIu64 ", %u cycles, %" PRIu64 " acked ops (%" PRIu64 " puts, %" PRIu64
                " deletes, %" PRIu64 " batches), in-doubt op present %" PRIu64
                " times, acked ops lost %" PRIu64,
                v.name, v.seed, v.cycles, r->acked_ops, r->acked_puts, r->acked_dels,
                r->acked_batches, r->in_doubt_present, r->lost_acked);
    /* The run must have exercised what it claims to. */
    cr_assert_gt(r->acked_puts, 0, "%s: no put was ever acked", v.name);
    cr_assert_gt(r->acked_dels, 0, "%s: no delete was ever acked", v.name);
    cr_assert_gt(r->acked_batches, 0, "%s: no batch was ever acked", v.name);
    if (v.durability >= SHALE_DURABILITY_OS) {
        cr_assert_eq(r->lost_acked, 0);
    }
    tu_rm_rf(r->dir);
    free(r->dir);
    r->dir = NULL;
    tu_assert_no_leaks();
}

Test(crash, full_single_writer)
{
    static const variant v = {.name = "full/1",
                              .lanes = 1,
                              .durability = SHALE_DURABILITY_FULL,
                              .cycles = 80,
                              .cap = 2000,
                              .max_acks = 60,
                              .max_delay_us = 20000,
                              .seed = 0x5a1e0001};
    run_variant(&v);
}

Test(crash, full_four_writers_group_commit)
{
    static const variant v = {.name = "full/4",
                              .lanes = 4,
                              .durability = SHALE_DURABILITY_FULL,
                              .cycles = 40,
                              .cap = 1500,
                              .max_acks = 120,
                              .max_delay_us = 20000,
                              .seed = 0x5a1e0004};
    run_variant(&v);
}

Test(crash, os_single_writer)
{
    static const variant v = {.name = "os/1",
                              .lanes = 1,
                              .durability = SHALE_DURABILITY_OS,
                              .cycles = 40,
                              .cap = 2000,
                              .max_acks = 600,
                              .max_delay_us = 20000,
                              .seed = 0x5a1e00a5};
    run_variant(&v);
}

Test(crash, os_four_writers)
{
    static const variant v = {.name = "os/4",
                              .lanes = 4,
                              .durability = SHALE_DURABILITY_OS,
                              .cycles = 25,
                              .cap = 1500,
                              .max_acks = 600,
                              .max_delay_us = 20000,
                              .seed = 0x5a1e04a5};
    run_variant(&v);
}

Test(crash, memory_single_writer_prefix)
{
    static const variant v = {.name = "memory/1",
                              .lanes = 1,
                              .durability = SHALE_DURABILITY_MEMORY,
                              .cycles = 40,
                              .cap = 2000,
                              .max_acks = 600,
                              .max_delay_us = 20000,
                              .seed = 0x5a1e000e};
    run_variant(&v);
}
