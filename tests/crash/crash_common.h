/*
 * crash_common: the process-crash harness shared by crash_test.c and crash_lsm.c.
 *
 * Each cycle the parent forks a child that opens the database and writes in a loop: single puts,
 * deletes and multi-key batches, generated deterministically from (seed, lane, op index), so the
 * parent knows every operation without being told. The child reports each operation over a pipe
 * only after the call returned SHALE_OK (an acknowledgement). The parent SIGKILLs it at a random
 * moment (after a random number of acks and/or a random delay), reaps it, drains the pipe, reopens
 * the database and compares every key of the key space with its model.
 *
 * The model is exact. Each lane (one writer thread) owns a disjoint slice of the key space and
 * writes its operations strictly in order, so after a kill at most one operation per lane (the one
 * after its last ack) is in doubt. With OS and FULL durability the database must equal the model
 * after the last acked operation, or after the one in doubt; nothing else (no lost ack, no half
 * batch, no garbage). With MEMORY durability acked writes may be lost, but what survives must be
 * a prefix: the database must equal the model after SOME operation of the cycle (no holes). Every
 * value names its lane, op and key and is checked byte for byte. The same directory accumulates
 * over all cycles of a test. SHALE_CRASH_SEED=<n> in the environment replaces the operation seed
 * of every variant. SHALE_CAMPAIGN_SCALE=<n> multiplies every variant's cycles (the long mode),
 * and each variant ends with one tu_campaign_report("crash", ...) line: cycles, acknowledged ops
 * verified, ops in doubt found applied, and 0 lost (a lost ack fails the test before it).
 *
 * What differs between the tests (key space, op mix, value sizes, options, the kill plan, what is
 * checked on top after each reopen) is a crash_config; one test case is a crash_variant.
 *
 * The plumbing under crash_run_variant is public for harnesses whose operations do not fit the
 * put/delete/batch model (crash_txn.c): crash_fork_kill runs one fork/ack/kill cycle with records
 * of any fixed size, and crash_send_record, crash_env_seed, crash_offline_check and
 * crash_check_scan are the pieces every harness needs.
 */
#ifndef SHALE_TESTS_CRASH_COMMON_H
#define SHALE_TESTS_CRASH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

#include "testutil.h"

#define CRASH_MAX_LANES     4
#define CRASH_MAX_LANE_KEYS 300u
#define CRASH_MAX_BATCH     6u
#define CRASH_VALUE_CAP     2200u /* the longest value any config may make */

typedef struct crash_run crash_run;

typedef struct crash_variant {
    const char *name;
    unsigned lanes;
    shale_durability durability;
    unsigned cycles;
    uint64_t cap;      /* operations per lane per cycle before the child idles */
    uint64_t max_acks; /* kill after up to this many acks */
    uint64_t max_delay_us;
    uint64_t seed;
} crash_variant;

/* Which open an options callback is asked for. */
typedef enum crash_open { CRASH_CREATE, CRASH_CHILD, CRASH_VERIFY } crash_open;

typedef struct crash_config {
    const char *name;   /* names the test in the child's messages and its temporary directory */
    uint32_t lane_keys; /* keys per lane, at most CRASH_MAX_LANE_KEYS */
    uint64_t key_base;  /* tu_key number of lane 0's first key */
    uint64_t salt;      /* mixed into each operation's hash */
    /* Op mix: kind drawn in [0, kind_range): below put_below a put, below del_below a delete,
     * else a batch of 2..CRASH_MAX_BATCH distinct keys. */
    uint32_t kind_range, put_below, del_below;
    /* A value is max(its header, value_min) + [0, value_spread) bytes, at most CRASH_VALUE_CAP. */
    size_t value_min, value_spread;
    /* Kill plan: mode 0 after up to max_acks acks, mode 1 after up to max_delay_us, mode 2 after
     * both, with up to max_delay_us / mixed_delay_div. ack_wait_ms > 0 bounds the wait for acks
     * (the kill comes anyway, e.g. when writes stall behind compaction). */
    unsigned mixed_delay_div;
    long ack_wait_ms;
    /* Run `shale check` ($SHALE_BIN) on the directory after each kill, before the reopen: it must
     * call the directory clean (exit 0). */
    bool offline_check;
    shale_options (*options)(const crash_variant *v, crash_open why);
    /* Called over and over by the child once its planned work is done; NULL: it just waits. */
    void (*idle)(shale_db *db);
    /* After each reopen, once crash_read_actual filled the lanes' actual state: more checks. */
    void (*check)(crash_run *r, shale_db *db, unsigned cycle);
    /* At the end of the run, after the common summary checks. May be NULL. */
    void (*finish)(crash_run *r);
} crash_config;

typedef struct crash_lane {
    uint64_t next;                        /* first op index of the coming cycle */
    uint64_t last_ack;                    /* last acked op index this cycle (next - 1 if none) */
    uint64_t state[CRASH_MAX_LANE_KEYS];  /* op index whose value the key holds; 0 = absent */
    uint64_t actual[CRASH_MAX_LANE_KEYS]; /* what the reopened database holds */
} crash_lane;

struct crash_run {
    const crash_config *cfg;
    crash_variant v; /* seed already replaced by SHALE_CRASH_SEED */
    char *dir;
    crash_lane lanes[CRASH_MAX_LANES];
    uint64_t acked_ops, acked_puts, acked_dels, acked_batches;
    uint64_t in_doubt_present, lost_acked;
    uint64_t last_sequence;
    bool child_error;
    uint64_t child_error_rec;
    void *user; /* the test's own state, for its callbacks */
};

/* Runs every cycle of `v` (times tu_campaign_scale()) in a new directory: create, then per cycle
 * fork/write/kill, reopen, cfg->check, close, match every lane with the model. Ends with: some
 * put, delete and batch were acked; with OS or FULL durability no acked op was lost; then the
 * campaign report line. */
void crash_run_variant(const crash_config *cfg, const crash_variant *v, void *user);

/* Reads every key into the lanes' actual[], checking each value byte for byte, then `st`
 * (stats, whose last_sequence must not go back). Returns how many keys are present. */
uint64_t crash_read_actual(crash_run *r, shale_db *db, unsigned cycle, shale_stats *st);

/* ---- the plumbing, for harnesses of their own -------------------------------------------- */

/* The biggest record crash_fork_kill carries. */
#define CRASH_RECORD_MAX 64u

/* One cycle's child process and how it is killed. */
typedef struct crash_child {
    /* Runs in the forked child (after PR_SET_PDEATHSIG; the child _exit(5)s first if the test
     * process is already gone) with `fd`, the write end of the ack pipe. Never returns: it works,
     * then idles until killed. */
    void (*main)(void *arg, int fd);
    void *main_arg;
    /* Parent: books one record the child sent; returns false when it reports a failure of the
     * child (then nothing more is read). */
    bool (*book)(void *arg, const void *rec);
    void *book_arg;
    size_t record_len; /* every record's size, at most CRASH_RECORD_MAX */
    /* The kill plan: one of after up to max_acks acks, after up to max_delay_us, or after both
     * with up to max_delay_us / mixed_delay_div; ack_wait_ms > 0 bounds the wait for the acks
     * (the kill comes anyway, e.g. when writes stall behind compaction). */
    uint64_t max_acks, max_delay_us;
    unsigned mixed_delay_div;
    long ack_wait_ms;
} crash_child;

/* Forks c->main with a new pipe, draws the kill plan from `rng`, books the acks it waits for,
 * SIGKILLs the child, reaps it (cr_assert), books every record still in the pipe (each was
 * acknowledged before the kill) and closes the pipe. Returns the child's wait status: the caller
 * checks its own failure records first, then that the child died of SIGKILL. */
int crash_fork_kill(const crash_child *c, tu_rng *rng);

/* Child: writes the `len` bytes at `rec` to the pipe whole, or _exit(4)s. A record up to
 * PIPE_BUF bytes is never interleaved with another thread's. */
void crash_send_record(int fd, const void *rec, size_t len);

/* Starts a run: a new temporary directory named after `tag` (returned, malloc'ed) holding a new
 * database created with `opts` (up front, so every child and every kill meets an existing
 * database), and `rng` for the kill plans seeded from `seed` and the process id. */
char *crash_create(const char *tag, const shale_options *opts, uint64_t seed, tu_rng *rng);
/* Ends a run: removes and frees *dir (NULL after) and, under ASan, asserts nothing leaked. */
void crash_remove(char **dir);

/* SHALE_CRASH_SEED from the environment (strtoull, any base), else `fallback`. */
uint64_t crash_env_seed(uint64_t fallback);

/* Runs `shale check` ($SHALE_BIN; nothing when it is not set) on the killed directory, before
 * the reopen: it must call it clean (exit 0; a torn log tail and leftovers of killed work are
 * notes, not damage). `name`, `seed` and `cycle` start the failure message. */
void crash_offline_check(const char *dir, const char *name, uint64_t seed, unsigned cycle);

/* Walks the fresh iterator `it` from seek_first, calling each(arg, it) at every entry when each
 * is not NULL, asserts it ends with SHALE_OK, frees it, and asserts it showed `present` keys (what
 * the gets found). `what` names the iterator in failure messages ("the scan"). */
void crash_check_scan(shale_iter *it, uint64_t present, void (*each)(void *arg, shale_iter *it),
                      void *arg, const char *what, const char *name, unsigned cycle);

#endif
