#include "crash_common.h"

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

#include "testutil.h"

#define ERR_RECORD (1ull << 63)
#define LANE_BITS  8u

enum op_kind { OP_PUT, OP_DEL, OP_BATCH };

typedef struct op {
    enum op_kind kind;
    uint32_t nkeys;
    uint32_t keys[CRASH_MAX_BATCH];
} op;

/* ---- deterministic operations --------------------------------------------------------------- */

static uint64_t op_hash(const crash_config *cfg, uint64_t seed, unsigned lane, uint64_t j)
{
    return tu_mix64(seed ^ tu_mix64(((uint64_t)lane << 56) ^ j ^ cfg->salt));
}

/* Operation j of a lane, drawn with the config's op mix over distinct keys. */
static void gen_op(const crash_config *cfg, uint64_t seed, unsigned lane, uint64_t j, op *out)
{
    tu_rng r;
    tu_rng_seed(&r, op_hash(cfg, seed, lane, j));
    uint64_t kind = tu_rng_below(&r, cfg->kind_range);

    out->kind = kind < cfg->put_below ? OP_PUT : kind < cfg->del_below ? OP_DEL : OP_BATCH;
    out->nkeys = out->kind == OP_BATCH ? 2 + (uint32_t)tu_rng_below(&r, CRASH_MAX_BATCH - 1) : 1;
    for (uint32_t i = 0; i < out->nkeys; i++) {
        uint32_t k;
        bool dup;
        do {
            k = (uint32_t)tu_rng_below(&r, cfg->lane_keys);
            dup = false;
            for (uint32_t m = 0; m < i; m++) {
                dup = dup || out->keys[m] == k;
            }
        } while (dup);
        out->keys[i] = k;
    }
}

static shale_slice lane_key(const crash_config *cfg, char *buf, unsigned lane, uint32_t k)
{
    return tu_key(buf, cfg->key_base + (uint64_t)lane * cfg->lane_keys + k);
}

/* The value op j of `lane` writes to key k: names all three (a batch's values all carry the
 * batch's op index) and is padded to a length that varies with the op and the key, so torn tails
 * land at varied places. */
static size_t make_value(const crash_config *cfg, char *buf, uint64_t seed, unsigned lane,
                         uint64_t j, uint32_t k)
{
    int n = snprintf(buf, CRASH_VALUE_CAP, "L%u J%" PRIu64 " K%u|", lane, j, k);
    uint64_t h = op_hash(cfg, seed, lane, j) ^ tu_mix64(k);
    size_t len = ((size_t)n > cfg->value_min ? (size_t)n : cfg->value_min) +
                 (size_t)(h >> 40) % cfg->value_spread;

    for (size_t i = (size_t)n; i < len; i++) {
        buf[i] = (char)('a' + (j + k + i) % 26);
    }
    return len;
}

/* ---- child ---------------------------------------------------------------------------------- */

typedef struct lane_ctx {
    shale_db *db;
    int fd;
    unsigned lane;
    uint64_t start;
    const crash_run *r;
} lane_ctx;

void crash_send_record(int fd, const void *rec, size_t len)
{
    const char *p = rec;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            _exit(4);
        }
        p += n;
        len -= (size_t)n;
    }
}

static void send_record(int fd, uint64_t rec)
{
    crash_send_record(fd, &rec, sizeof rec);
}

static void child_fail(const crash_run *r, int fd, unsigned lane, uint64_t j, const char *what,
                       shale_code rc, const shale_error *err)
{
    fprintf(stderr, "%s child: lane %u op %" PRIu64 ": %s: %s (%s)\n", r->cfg->name, lane, j, what,
            shale_strerror(rc), err != NULL ? err->msg : "");
    send_record(fd, ERR_RECORD | ((uint64_t)rc << LANE_BITS) | lane);
    _exit(3);
}

static shale_code run_op(shale_db *db, const crash_run *r, unsigned lane, uint64_t j,
                         shale_error *err)
{
    const crash_config *cfg = r->cfg;
    char kb[17];
    char vb[CRASH_VALUE_CAP];
    op o;
    shale_code rc;

    gen_op(cfg, r->v.seed, lane, j, &o);
    if (o.kind == OP_PUT) {
        size_t n = make_value(cfg, vb, r->v.seed, lane, j, o.keys[0]);
        return shale_put(db, NULL, lane_key(cfg, kb, lane, o.keys[0]), (shale_slice){vb, n}, err);
    }
    if (o.kind == OP_DEL) {
        return shale_delete(db, NULL, lane_key(cfg, kb, lane, o.keys[0]), err);
    }
    shale_batch *b = shale_batch_new();
    if (b == NULL) {
        return SHALE_NOMEM;
    }
    rc = SHALE_OK;
    for (uint32_t i = 0; i < o.nkeys && rc == SHALE_OK; i++) {
        size_t n = make_value(cfg, vb, r->v.seed, lane, j, o.keys[i]);
        rc = shale_batch_put(b, lane_key(cfg, kb, lane, o.keys[i]), (shale_slice){vb, n}, err);
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

    for (uint64_t j = c->start; j < c->start + c->r->v.cap; j++) {
        shale_error err = {0};
        shale_code rc = run_op(c->db, c->r, c->lane, j, &err);
        if (rc != SHALE_OK) {
            child_fail(c->r, c->fd, c->lane, j, "write", rc, &err);
        }
        send_record(c->fd, (j << LANE_BITS) | c->lane);
    }
    return NULL;
}

/* What the child of one cycle is given. */
typedef struct child_arg {
    const crash_run *r;
    const uint64_t *next; /* per lane, the first op index of the cycle */
} child_arg;

static _Noreturn void child_main(void *arg, int fd)
{
    const crash_run *r = ((const child_arg *)arg)->r;
    const uint64_t *next = ((const child_arg *)arg)->next;
    shale_options o = r->cfg->options(&r->v, CRASH_CHILD);
    shale_error err = {0};
    shale_db *db = NULL;
    lane_ctx ctx[CRASH_MAX_LANES];
    pthread_t th[CRASH_MAX_LANES];

    shale_code rc = shale_open(r->dir, &o, &db, &err);
    if (rc != SHALE_OK) {
        child_fail(r, fd, 0, 0, "open", rc, &err);
    }
    for (unsigned l = 0; l < r->v.lanes; l++) {
        ctx[l] = (lane_ctx){.db = db, .fd = fd, .lane = l, .start = next[l], .r = r};
    }
    if (r->v.lanes == 1) {
        lane_main(&ctx[0]);
    } else {
        for (unsigned l = 0; l < r->v.lanes; l++) {
            if (pthread_create(&th[l], NULL, lane_main, &ctx[l]) != 0) {
                _exit(6);
            }
        }
        for (unsigned l = 0; l < r->v.lanes; l++) {
            pthread_join(th[l], NULL);
        }
    }
    /* Out of planned work: idle (holding the database open) until killed. */
    for (;;) {
        if (r->cfg->idle != NULL) {
            r->cfg->idle(db);
        } else {
            pause();
        }
    }
}

/* ---- parent: one cycle ---------------------------------------------------------------------- */

/* Reads one `len`-byte record: 1, or 0 at end of file. */
static int read_record(int fd, void *rec, size_t len)
{
    char *p = rec;
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
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
static bool book_record(crash_run *r, uint64_t rec, bool *order_ok)
{
    if (rec & ERR_RECORD) {
        r->child_error = true;
        r->child_error_rec = rec;
        return false;
    }
    unsigned lane = (unsigned)(rec & ((1u << LANE_BITS) - 1));
    uint64_t j = rec >> LANE_BITS;
    if (lane >= r->v.lanes || j != r->lanes[lane].last_ack + 1) {
        *order_ok = false;
        return true;
    }
    r->lanes[lane].last_ack = j;
    op o;
    gen_op(r->cfg, r->v.seed, lane, j, &o);
    r->acked_ops++;
    r->acked_puts += o.kind == OP_PUT;
    r->acked_dels += o.kind == OP_DEL;
    r->acked_batches += o.kind == OP_BATCH;
    return true;
}

/* Whether another ack may be waited for (at most `wait_ms` from `t0`; <= 0: no bound). */
static bool ack_wait_left(long wait_ms, int fd, const struct timespec *t0)
{
    struct timespec t1;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    if (wait_ms <= 0) {
        return true;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long waited_ms = (long)(t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
    return waited_ms < wait_ms && poll(&pfd, 1, (int)(wait_ms - waited_ms)) != 0;
}

int crash_fork_kill(const crash_child *c, tu_rng *rng)
{
    uint64_t rec[CRASH_RECORD_MAX / sizeof(uint64_t)];
    int fds[2];

    cr_assert(c->record_len > 0 && c->record_len <= sizeof rec);
    cr_assert_eq(pipe(fds), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        /* Never outlive the test process, even if it fails an assertion before killing us. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(5);
        }
        c->main(c->main_arg, fds[1]);
        _exit(7);
    }
    close(fds[1]);

    /* The kill plan: after n acks, after a delay, or both. n = 0 with no delay kills the child
     * during (or before) its recovery. */
    uint64_t mode = tu_rng_below(rng, 3);
    uint64_t want = mode == 1 ? 0 : tu_rng_below(rng, c->max_acks + 1);
    uint64_t delay = mode == 0   ? 0
                     : mode == 1 ? tu_rng_below(rng, c->max_delay_us + 1)
                                 : tu_rng_below(rng, c->max_delay_us / c->mixed_delay_div + 1);
    uint64_t seen = 0;
    bool alive = true, child_failed = false;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (seen < want && alive && ack_wait_left(c->ack_wait_ms, fds[0], &t0)) {
        if (!read_record(fds[0], rec, c->record_len)) {
            alive = false;
            break;
        }
        alive = c->book(c->book_arg, rec);
        child_failed = !alive;
        seen++;
    }
    if (alive && delay > 0) {
        tu_sleep_us(delay);
    }
    kill(pid, SIGKILL);
    int status = 0;
    pid_t w;
    do {
        w = waitpid(pid, &status, 0);
    } while (w < 0 && errno == EINTR);
    /* Everything the child wrote to the pipe before it died was acknowledged. */
    while (!child_failed && read_record(fds[0], rec, c->record_len)) {
        child_failed = !c->book(c->book_arg, rec);
    }
    close(fds[0]);
    cr_assert_eq(w, pid, "waitpid: %s", strerror(errno));
    return status;
}

/* crash_run_variant's booking: one uint64_t record. */
typedef struct book_arg {
    crash_run *r;
    bool order_ok;
} book_arg;

static bool book_u64(void *arg, const void *rec)
{
    book_arg *b = arg;
    uint64_t v;

    memcpy(&v, rec, sizeof v);
    return book_record(b->r, v, &b->order_ok);
}

/* Fork, let the child write, kill it at a random moment, collect every ack. */
static void crash_cycle(crash_run *r, tu_rng *rng, unsigned cycle)
{
    const crash_variant *v = &r->v;
    uint64_t next[CRASH_MAX_LANES];
    child_arg ca = {.r = r, .next = next};
    book_arg ba = {.r = r, .order_ok = true};

    for (unsigned l = 0; l < v->lanes; l++) {
        next[l] = r->lanes[l].next;
        r->lanes[l].last_ack = next[l] - 1;
    }
    int status = crash_fork_kill(&(crash_child){.main = child_main,
                                                .main_arg = &ca,
                                                .book = book_u64,
                                                .book_arg = &ba,
                                                .record_len = sizeof(uint64_t),
                                                .max_acks = v->max_acks,
                                                .max_delay_us = v->max_delay_us,
                                                .mixed_delay_div = r->cfg->mixed_delay_div,
                                                .ack_wait_ms = r->cfg->ack_wait_ms},
                                 rng);
    cr_assert(!r->child_error,
              "%s seed %" PRIu64 " cycle %u: the child failed on lane %u with %s (see stderr)",
              v->name, v->seed, cycle, (unsigned)(r->child_error_rec & 0xff),
              shale_strerror((shale_code)((r->child_error_rec & ~ERR_RECORD) >> LANE_BITS)));
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "%s cycle %u: the child ended on its own (status 0x%x)", v->name, cycle, status);
    cr_assert(ba.order_ok, "%s cycle %u: acks out of order", v->name, cycle);
}

/* ---- parent: the check after a kill --------------------------------------------------------- */

uint64_t crash_read_actual(crash_run *r, shale_db *db, unsigned cycle, shale_stats *st)
{
    const crash_config *cfg = r->cfg;
    const crash_variant *v = &r->v;
    shale_buf val = {0};
    char kb[17];
    char want[CRASH_VALUE_CAP];
    uint64_t present = 0;

    for (unsigned l = 0; l < v->lanes; l++) {
        for (uint32_t k = 0; k < cfg->lane_keys; k++) {
            shale_error err = {0};
            shale_code rc = shale_get(db, NULL, lane_key(cfg, kb, l, k), &val, &err);
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
            tu_head(text, sizeof text, val.data, val.len);
            int fields = sscanf(text, "L%u J%" SCNu64 " K%u|", &vl, &vj, &vk);
            cr_assert(fields == 3 && vl == l && vk == k && vj > 0,
                      "%s cycle %u: lane %u key %u holds a foreign value '%.40s'", v->name, cycle,
                      l, k, text);
            size_t wl = make_value(cfg, want, v->seed, l, vj, k);
            cr_assert(wl == val.len && memcmp(want, val.data, wl) == 0,
                      "%s seed %" PRIu64 " cycle %u: lane %u key %u: value of op %" PRIu64
                      " is damaged",
                      v->name, v->seed, cycle, l, k, vj);
            r->lanes[l].actual[k] = vj;
        }
    }
    shale_buf_free(&val);

    shale_error err = {0};
    cr_assert_eq(shale_stats_get(db, st, &err), SHALE_OK, "%s", err.msg);
    cr_assert_geq(st->last_sequence, r->last_sequence,
                  "%s cycle %u: last_sequence went back from %" PRIu64 " to %" PRIu64, v->name,
                  cycle, r->last_sequence, st->last_sequence);
    r->last_sequence = st->last_sequence;
    return present;
}

/* Applies op j to `state`, keeping `mismatch` (keys where state != actual) up to date. */
static void apply_op(const crash_run *r, unsigned lane, uint64_t j, uint64_t *state,
                     const uint64_t *actual, uint64_t *mismatch)
{
    op o;
    gen_op(r->cfg, r->v.seed, lane, j, &o);
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
static void match_lane(crash_run *r, unsigned l, unsigned cycle)
{
    const crash_variant *v = &r->v;
    uint32_t nkeys = r->cfg->lane_keys;
    crash_lane *m = &r->lanes[l];
    bool durable = v->durability >= SHALE_DURABILITY_OS;
    uint64_t first = m->next;
    uint64_t doubt = m->last_ack + 1;
    uint64_t lo = durable ? m->last_ack : first - 1;
    uint64_t acked_state[CRASH_MAX_LANE_KEYS];
    uint64_t mismatch = 0;
    uint64_t at = first - 1;
    bool found;

    for (uint32_t k = 0; k < nkeys; k++) {
        mismatch += m->state[k] != m->actual[k];
    }
    found = at >= lo && mismatch == 0;
    while (!found && at < doubt) {
        if (at + 1 == doubt) {
            memcpy(acked_state, m->state, sizeof acked_state);
        }
        at++;
        apply_op(r, l, at, m->state, m->actual, &mismatch);
        found = at >= lo && mismatch == 0;
    }
    if (!found) {
        /* Name the first keys that differ from the acknowledged state. */
        char msg[512];
        tu_diff_keys(msg, sizeof msg, acked_state, m->actual, nkeys);
        cr_assert_fail("%s seed %" PRIu64 " cycle %u lane %u: the database matches no allowed "
                       "point (%s; ops %" PRIu64 "..%" PRIu64 ", last ack %" PRIu64 "):%s",
                       v->name, v->seed, cycle, l,
                       durable ? "the acknowledged state or the op in doubt" : "a prefix", first,
                       doubt, m->last_ack, msg);
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

static void verify(crash_run *r, unsigned cycle)
{
    const crash_variant *v = &r->v;
    shale_options o = r->cfg->options(v, CRASH_VERIFY);
    shale_error err = {0};
    shale_db *db = NULL;

    if (r->cfg->offline_check) {
        crash_offline_check(r->dir, v->name, v->seed, cycle);
    }
    shale_code rc = shale_open(r->dir, &o, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s seed %" PRIu64 " cycle %u: reopen after the kill: %s (%s)",
                 v->name, v->seed, cycle, shale_strerror(rc), err.msg);
    r->cfg->check(r, db, cycle);
    rc = shale_close(db, &err);
    cr_assert_eq(rc, SHALE_OK, "%s cycle %u: close: %s", v->name, cycle, err.msg);
    for (unsigned l = 0; l < v->lanes; l++) {
        match_lane(r, l, cycle);
    }
}

char *crash_create(const char *tag, const shale_options *opts, uint64_t seed, tu_rng *rng)
{
    char *dir = tu_tmpdir(tag);
    shale_error err = {0};
    shale_db *db = NULL;

    tu_rng_seed(rng, seed ^ 0xc2b2ae3d27d4eb4full ^ (uint64_t)getpid());
    cr_assert_eq(shale_open(dir, opts, &db, &err), SHALE_OK, "create: %s", err.msg);
    cr_assert_eq(shale_close(db, &err), SHALE_OK, "close: %s", err.msg);
    return dir;
}

void crash_remove(char **dir)
{
    tu_rm_rf(*dir);
    free(*dir);
    *dir = NULL;
    tu_assert_no_leaks();
}

uint64_t crash_env_seed(uint64_t fallback)
{
    const char *s = getenv("SHALE_CRASH_SEED");
    return s != NULL && s[0] != '\0' ? strtoull(s, NULL, 0) : fallback;
}

void crash_offline_check(const char *dir, const char *name, uint64_t seed, unsigned cycle)
{
    /* The offline checker agrees that what the kill left is sound (a torn log tail and the
     * leftovers of killed work are notes, not damage): "clean" means the open succeeds. */
    char *out = NULL;
    int code = tu_run_shale((const char *const[]){"check", dir, NULL}, &out);
    cr_assert(code == -1 || code == 0,
              "%s seed %" PRIu64 " cycle %u: shale check after the kill exited %d:\n%s", name, seed,
              cycle, code, out);
    free(out);
}

void crash_check_scan(shale_iter *it, uint64_t present, void (*each)(void *arg, shale_iter *it),
                      void *arg, const char *what, const char *name, unsigned cycle)
{
    shale_error err = {0};
    uint64_t seen = 0;

    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        if (each != NULL) {
            each(arg, it);
        }
        seen++;
    }
    shale_code rc = shale_iter_status(it, &err);
    cr_assert_eq(rc, SHALE_OK, "%s cycle %u: %s: %s (%s)", name, cycle, what, shale_strerror(rc),
                 err.msg);
    shale_iter_free(it);
    cr_assert_eq(seen, present, "%s cycle %u: %s saw %" PRIu64 " keys, the gets %" PRIu64, name,
                 cycle, what, seen, present);
}

void crash_run_variant(const crash_config *cfg, const crash_variant *vin, void *user)
{
    /* Static, so a failed assertion (which ends the test process) leaves nothing leaked. */
    static crash_run run_state;
    crash_run *r = &run_state;
    const crash_variant *v = &r->v;

    cr_assert_leq(cfg->lane_keys, CRASH_MAX_LANE_KEYS);
    cr_assert_leq(vin->lanes, CRASH_MAX_LANES);
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->v = *vin;
    r->v.seed = crash_env_seed(vin->seed);
    r->v.cycles = vin->cycles * (unsigned)tu_campaign_scale();
    r->user = user;
    for (unsigned l = 0; l < v->lanes; l++) {
        r->lanes[l].next = 1;
    }
    tu_rng rng;
    shale_options o = cfg->options(v, CRASH_CREATE);
    r->dir = crash_create(cfg->name, &o, v->seed, &rng);

    for (unsigned c = 0; c < v->cycles; c++) {
        crash_cycle(r, &rng, c);
        verify(r, c);
    }
    cr_log_info("%s: seed %" PRIu64 ", %u cycles, %" PRIu64 " acked ops (%" PRIu64 " puts, %" PRIu64
                " deletes, %" PRIu64 " batches), in-doubt op present %" PRIu64
                " times, acked ops lost %" PRIu64,
                v->name, v->seed, v->cycles, r->acked_ops, r->acked_puts, r->acked_dels,
                r->acked_batches, r->in_doubt_present, r->lost_acked);
    /* The run must have exercised what it claims to. */
    cr_assert_gt(r->acked_ops, 0, "%s: nothing was acked", v->name);
    cr_assert_gt(r->acked_puts, 0, "%s: no put was ever acked", v->name);
    cr_assert_gt(r->acked_dels, 0, "%s: no delete was ever acked", v->name);
    cr_assert_gt(r->acked_batches, 0, "%s: no batch was ever acked", v->name);
    if (v->durability >= SHALE_DURABILITY_OS) {
        cr_assert_eq(r->lost_acked, 0, "%s: %" PRIu64 " acked ops lost", v->name, r->lost_acked);
    }
    if (cfg->finish != NULL) {
        cfg->finish(r);
    }
    /* With MEMORY durability acked writes may be lost: "verified" counts those found there, and
     * the ones the kill took are counted apart (each surviving state was checked to be a
     * prefix); at OS and FULL nothing may be lost (asserted above). */
    if (v->durability >= SHALE_DURABILITY_OS) {
        tu_campaign_report("crash",
                           "%s: %u cycles, %llu acknowledged ops verified, %llu in doubt, 0 lost "
                           "(%llu puts, %llu deletes, %llu batches; seed 0x%llx)",
                           v->name, v->cycles, (unsigned long long)r->acked_ops,
                           (unsigned long long)r->in_doubt_present,
                           (unsigned long long)r->acked_puts, (unsigned long long)r->acked_dels,
                           (unsigned long long)r->acked_batches, (unsigned long long)v->seed);
    } else {
        tu_campaign_report("crash",
                           "%s: %u cycles, %llu acknowledged ops verified, %llu in doubt, 0 lost "
                           "beyond what MEMORY durability allows (%llu acked ops not yet written "
                           "at the kills; every state a prefix; seed 0x%llx)",
                           v->name, v->cycles, (unsigned long long)(r->acked_ops - r->lost_acked),
                           (unsigned long long)r->in_doubt_present,
                           (unsigned long long)r->lost_acked, (unsigned long long)v->seed);
    }
    crash_remove(&r->dir);
}
