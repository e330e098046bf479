/*
 * crash_lsm: process crashes (SIGKILL) while flushes and compactions run, against the public API.
 *
 * As in crash_test.c, a forked child writes deterministic operations (puts, deletes, multi-key
 * batches; lanes = writer threads, each owning a disjoint slice of the key space) and reports each
 * one over a pipe only after it returned SHALE_OK; the parent SIGKILLs it at a random moment,
 * reopens the database and compares every key with its model. Here the child runs with FULL
 * durability and tiny budgets (64 KiB write buffer and tables, level-0 trigger 2) and values of
 * 0.1..2 KiB, so a memtable fills every few dozen commits: flushes and compactions run nearly
 * all the time, and most kills land while a table, a manifest edit or an obsolete-file deletion is
 * in progress.
 *
 * Checks after every kill:
 *   - the database opens (a killed flush or compaction is never corruption);
 *   - per lane, it equals the model after the last acknowledged operation or after the one in
 *     doubt (the call the kill interrupted): every acknowledged write survives, no batch is
 *     half-applied, no value is damaged or foreign (a prefix-consistent state, per key);
 *   - a full scan sees exactly the keys the gets see;
 *   - no file is leaked: the partial tables and manifests of the killed work are gone
 *     (tu_assert_db_files), no *.tmp;
 *   - `shale check` ($SHALE_BIN), run before the reopen, calls the directory clean (exit 0).
 * The same directory goes through every cycle. Over the run the database must have had tables
 * below level 0 (compactions did happen). SHALE_CRASH_SEED=<n> replaces the operation seed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
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
#define LANE_KEYS  300u
#define MAX_BATCH  6u
#define VALUE_CAP  2200u
#define ERR_RECORD (1ull << 63)
#define LANE_BITS  8u

enum op_kind { OP_PUT, OP_DEL, OP_BATCH };

typedef struct op {
    enum op_kind kind;
    uint32_t nkeys;
    uint32_t keys[MAX_BATCH];
} op;

typedef struct variant {
    const char *name;
    unsigned lanes;
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
    return mix64(seed ^ mix64(((uint64_t)lane << 56) ^ j ^ 0x7f4a7c15ull));
}

/* Operation j of a lane: 55% puts, 15% deletes, 30% batches of 2..6 distinct keys. */
static void gen_op(uint64_t seed, unsigned lane, uint64_t j, op *out)
{
    tu_rng r;
    tu_rng_seed(&r, op_hash(seed, lane, j));
    uint64_t kind = tu_rng_below(&r, 20);

    out->kind = kind < 11 ? OP_PUT : kind < 14 ? OP_DEL : OP_BATCH;
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
    return tu_key(buf, 700000 + (uint64_t)lane * LANE_KEYS + k);
}

/* The value op j of `lane` writes to key k: 100..2100 bytes naming all three. */
static size_t make_value(char *buf, uint64_t seed, unsigned lane, uint64_t j, uint32_t k)
{
    int n = snprintf(buf, VALUE_CAP, "L%u J%" PRIu64 " K%u|", lane, j, k);
    uint64_t h = op_hash(seed, lane, j) ^ mix64(k);
    size_t len = 100 + (size_t)(h >> 40) % 2000;

    for (size_t i = (size_t)n; i < len; i++) {
        buf[i] = (char)('a' + (j + k + i) % 26);
    }
    return len;
}

static shale_options lsm_opts(bool create)
{
    return (shale_options){
        .create_if_missing = create,
        .durability = SHALE_DURABILITY_FULL,
        .max_memory_mb = 4,
        .write_buffer_bytes = 64 * 1024,
        .table_bytes = 64 * 1024,
        .l0_compaction_trigger = 2,
        .wal_segment_bytes = 64 * 1024,
    };
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
    fprintf(stderr, "crash_lsm child: lane %u op %" PRIu64 ": %s: %s (%s)\n", lane, j, what,
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
    shale_options o = lsm_opts(false);
    shale_error err = {0};
    shale_db *db = NULL;
    lane_ctx ctx[MAX_LANES];
    pthread_t th[MAX_LANES];

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
    /* Out of planned work: keep flushing and compacting until killed. */
    for (;;) {
        if (shale_compact(db, NULL) != SHALE_OK) {
            usleep(10000);
        }
        usleep(1000);
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
    uint64_t acked_ops, in_doubt_present;
    uint64_t last_sequence;
    uint64_t max_l0, max_deep, max_tables;
    bool child_error;
    uint64_t child_error_rec;
} run;

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
    r->acked_ops++;
    return true;
}

static void sleep_us(uint64_t us)
{
    struct timespec ts = {.tv_sec = (time_t)(us / 1000000), .tv_nsec = (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

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

    /* Kill after a number of acks, after a delay, or both; the delays are long enough for
     * several flushes and compactions. */
    uint64_t mode = tu_rng_below(rng, 3);
    uint64_t want = mode == 1 ? 0 : tu_rng_below(rng, v->max_acks + 1);
    uint64_t delay = mode == 0 ? 0 : tu_rng_below(rng, v->max_delay_us + 1);
    uint64_t seen = 0;
    bool alive = true;
    /* Waiting for acks is bounded in time too (writes may stall behind compaction under a slow
     * sanitizer build): past 2 s the kill comes anyway. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (seen < want && alive) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long waited_ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (waited_ms >= 2000 || poll(&pfd, 1, (int)(2000 - waited_ms)) == 0) {
            break;
        }
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
    while (!r->child_error && read_record(fds[0], &rec)) {
        book_record(r, rec, &order_ok);
    }
    close(fds[0]);

    cr_assert_eq(w, pid, "waitpid: %s", strerror(errno));
    cr_assert(!r->child_error,
              "%s seed %" PRIu64 " cycle %u: the child failed on lane %u with %s (see stderr)",
              v->name, v->seed, cycle, (unsigned)(r->child_error_rec & 0xff),
              shale_strerror((shale_code)((r->child_error_rec & ~ERR_RECORD) >> LANE_BITS)));
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "%s cycle %u: the child ended on its own (status 0x%x)", v->name, cycle, status);
    cr_assert(order_ok, "%s cycle %u: acks out of order", v->name, cycle);
}

static void read_actual(run *r, shale_db *db, unsigned cycle)
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
            cr_assert(rc == SHALE_OK || rc == SHALE_NOT_FOUND,
                      "%s seed %" PRIu64 " cycle %u: get: %s (%s)", v->name, v->seed, cycle,
                      shale_strerror(rc), err.msg);
            r->lanes[l].actual[k] = 0;
            if (rc == SHALE_NOT_FOUND) {
                continue;
            }
            present++;
            unsigned vl = 0, vk = 0;
            uint64_t vj = 0;
            char text[64];
            size_t tl = val.len < sizeof text - 1 ? val.len : sizeof text - 1;
            memcpy(text, val.data, tl);
            text[tl] = '\0';
            int fields = sscanf(text, "L%u J%" SCNu64 " K%u|", &vl, &vj, &vk);
            cr_assert(fields == 3 && vl == l && vk == k && vj > 0,
                      "%s cycle %u: lane %u key %u holds a foreign value '%.40s'", v->name, cycle,
                      l, k, text);
            size_t wl = make_value(want, v->seed, l, vj, k);
            cr_assert(wl == val.len && memcmp(want, val.data, wl) == 0,
                      "%s seed %" PRIu64 " cycle %u: lane %u key %u: value of op %" PRIu64
                      " is damaged",
                      v->name, v->seed, cycle, l, k, vj);
            r->lanes[l].actual[k] = vj;
        }
    }
    shale_buf_free(&val);

    /* The scan agrees with the gets. */
    shale_iter *it = NULL;
    shale_error err = {0};
    uint64_t seen = 0;
    cr_assert_eq(shale_iter_new(db, NULL, &it, &err), SHALE_OK, "%s", err.msg);
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        seen++;
    }
    shale_code rc = shale_iter_status(it, &err);
    cr_assert_eq(rc, SHALE_OK, "%s cycle %u: scan: %s (%s)", v->name, cycle, shale_strerror(rc),
                 err.msg);
    shale_iter_free(it);
    cr_assert_eq(seen, present, "%s cycle %u: the scan saw %" PRIu64 " keys, the gets %" PRIu64,
                 v->name, cycle, seen, present);

    shale_stats st;
    cr_assert_eq(shale_stats_get(db, &st, &err), SHALE_OK, "%s", err.msg);
    cr_assert_geq(st.last_sequence, r->last_sequence,
                  "%s cycle %u: last_sequence went back from %" PRIu64 " to %" PRIu64, v->name,
                  cycle, r->last_sequence, st.last_sequence);
    r->last_sequence = st.last_sequence;
    uint64_t deep = 0, all = 0;
    for (int lv = 0; lv < 8; lv++) {
        all += st.level_tables[lv];
        deep += lv > 0 ? st.level_tables[lv] : 0;
    }
    r->max_l0 = st.level_tables[0] > r->max_l0 ? st.level_tables[0] : r->max_l0;
    r->max_deep = deep > r->max_deep ? deep : r->max_deep;
    r->max_tables = all > r->max_tables ? all : r->max_tables;
}

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

/* FULL durability: the lane equals the model after its last ack or after the op in doubt. */
static void match_lane(run *r, unsigned l, unsigned cycle)
{
    const variant *v = r->v;
    lane_model *m = &r->lanes[l];
    uint64_t doubt = m->last_ack + 1;
    uint64_t mismatch = 0;

    for (uint64_t j = m->next; j <= m->last_ack; j++) {
        op o;
        gen_op(v->seed, l, j, &o);
        for (uint32_t i = 0; i < o.nkeys; i++) {
            m->state[o.keys[i]] = o.kind == OP_DEL ? 0 : j;
        }
    }
    for (uint32_t k = 0; k < LANE_KEYS; k++) {
        mismatch += m->state[k] != m->actual[k];
    }
    if (mismatch != 0) {
        uint64_t acked_state[LANE_KEYS];
        memcpy(acked_state, m->state, sizeof acked_state);
        apply_op(v, l, doubt, m->state, m->actual, &mismatch);
        if (mismatch != 0) {
            char msg[512];
            size_t len = 0;
            for (uint32_t k = 0; k < LANE_KEYS && len < sizeof msg - 64; k++) {
                if (acked_state[k] != m->actual[k]) {
                    len += (size_t)snprintf(msg + len, sizeof msg - len,
                                            " key %u: want op %" PRIu64 " got %" PRIu64 ";", k,
                                            acked_state[k], m->actual[k]);
                }
            }
            cr_assert_fail("%s seed %" PRIu64 " cycle %u lane %u: the database is neither the "
                           "acknowledged state (last ack %" PRIu64 ") nor the one after op %" PRIu64
                           ":%s",
                           v->name, v->seed, cycle, l, m->last_ack, doubt, msg);
        }
        r->in_doubt_present++;
    }
    m->next = doubt + 1;
}

static void verify(run *r, unsigned cycle)
{
    /* Defaults but for the level-0 trigger: no compaction starts while the files are listed. */
    shale_options o = {.durability = SHALE_DURABILITY_FULL, .l0_compaction_trigger = 64};
    shale_error err = {0};
    shale_db *db = NULL;
    char ctx[128];

    /* The offline checker agrees that what the kill left is sound (a torn log tail and the
     * leftovers of the killed work are notes, not damage): "clean" means the open succeeds. */
    char *out = NULL;
    int code = tu_run_shale((const char *const[]){"check", r->dir, NULL}, &out);
    cr_assert(code == -1 || code == 0,
              "%s seed %" PRIu64 " cycle %u: shale check after the kill exited %d:\n%s", r->v->name,
              r->v->seed, cycle, code, out);
    free(out);

    shale_code rc = shale_open(r->dir, &o, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s seed %" PRIu64 " cycle %u: reopen after the kill: %s (%s)",
                 r->v->name, r->v->seed, cycle, shale_strerror(rc), err.msg);
    read_actual(r, db, cycle);
    snprintf(ctx, sizeof ctx, "%s seed %" PRIu64 " cycle %u: after the kill", r->v->name,
             r->v->seed, cycle);
    tu_assert_db_files(db, r->dir, ctx);
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
    static variant v;
    static run run_state;
    run *r = &run_state;
    v = *vin;
    memset(r, 0, sizeof *r);
    v.seed = env_seed(v.seed);
    r->v = &v;
    r->dir = tu_tmpdir("crash-lsm");
    for (unsigned l = 0; l < v.lanes; l++) {
        r->lanes[l].next = 1;
    }
    tu_rng rng;
    tu_rng_seed(&rng, v.seed ^ 0x2545f4914f6cdd1dull ^ (uint64_t)getpid());

    shale_options o = lsm_opts(true);
    shale_error err = {0};
    shale_db *db = NULL;
    cr_assert_eq(shale_open(r->dir, &o, &db, &err), SHALE_OK, "create: %s", err.msg);
    cr_assert_eq(shale_close(db, &err), SHALE_OK, "close: %s", err.msg);

    for (unsigned c = 0; c < v.cycles; c++) {
        crash_cycle(r, &rng, c);
        verify(r, c);
    }
    cr_log_info("%s: seed %" PRIu64 ", %u cycles, %" PRIu64
                " acked ops, in-doubt op present %" PRIu64 " times, up to %" PRIu64
                " tables (%" PRIu64 " in level 0, %" PRIu64 " below)",
                v.name, v.seed, v.cycles, r->acked_ops, r->in_doubt_present, r->max_tables,
                r->max_l0, r->max_deep);
    cr_assert_gt(r->acked_ops, 0, "%s: nothing was acked", v.name);
    cr_assert_gt(r->max_deep, 0, "%s: no table ever reached level 1: no compaction ran", v.name);
    tu_rm_rf(r->dir);
    free(r->dir);
    r->dir = NULL;
    tu_assert_no_leaks();
}

Test(crash_lsm, full_single_writer_flush_compact)
{
    static const variant v = {.name = "lsm/1",
                              .lanes = 1,
                              .cycles = 16,
                              .cap = 6000,
                              .max_acks = 1500,
                              .max_delay_us = 300000,
                              .seed = 0x15a10001};
    run_variant(&v);
}

Test(crash_lsm, full_four_writers_flush_compact)
{
    static const variant v = {.name = "lsm/4",
                              .lanes = 4,
                              .cycles = 12,
                              .cap = 3000,
                              .max_acks = 3000,
                              .max_delay_us = 300000,
                              .seed = 0x15a10004};
    run_variant(&v);
}
