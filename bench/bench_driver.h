/*
 * bench_driver: a db_bench-style workload driver, generic over a key-value engine.
 *
 * One driver runs the same workloads, with the same keys, values and random streams, on every
 * engine: `shale bench` (src/cli/cmd_bench.c, engine_shale.c) and `peerbench` (bench/peerbench.c
 * with engine_shale.c, engine_leveldb.c, engine_rocksdb.c, engine_lmdb.c, engine_sqlite.c). An
 * engine is a table of functions (bench_engine); the driver owns threads, timing, key and value
 * generation and the report. `peerbench --engines all` is the side-by-side comparison: every
 * engine in its own child process, one table with ops/sec, peak RSS and size on disk.
 *
 * Size on disk: the sum of the file sizes (st_size) in the database directory, measured after
 * the engine closed the database that the non-fillsync workloads built (in the default order,
 * the one fillrandom, overwrite and deleterandom left behind, closed before fillsync starts
 * afresh).
 *
 * Workloads (names and semantics follow LevelDB's db_bench; each thread does --num operations and
 * the report gives the aggregate rate):
 *   fillseq       fresh database; keys 0, 1, ..., num-1 in order
 *   fillrandom    fresh database; num keys drawn uniformly from [0, num)
 *   fillbatch     fresh database; fillrandom in batches of --batch-size keys (engines with batches)
 *   overwrite     --writes (default num) random keys from [0, num) over the existing database
 *   readrandom    --reads random point reads over [0, num); reports how many were found
 *   readmissing   --reads point reads of keys that cannot exist (a random key plus ".")
 *   readseq       a forward scan of up to --reads entries (ops/sec = entries/sec)
 *   readreverse   the same scan backwards from the last key
 *   deleterandom  --writes (default num) random deletes of keys drawn uniformly from [0, num), as
 * db_bench: after fillrandom and overwrite about 86% of them exist (readrandom's found count)
 *   fillsync      fresh database opened with durability full; --num-sync random writes per thread,
 *                 each synced to stable storage (default num/100: LevelDB uses num/1000, which is
 *                 too few at 8 threads to measure group commit over more than a few hundred syncs)
 *   reopen        closes the database and opens it again; reports the open time in milliseconds
 *                 and how many log records the open replayed (engines that report it)
 *   stats         prints the engine's counters since the last open (no timing)
 *
 * Transaction workloads (engines with transactions only: the others print "skipped" and
 * `--engines` shows n/a; not in the default list, so the default tables stay as they were). Each
 * thread runs --txns transactions (default num / --txn-keys, so a thread reads and writes about
 * num keys as overwrite does; under --durability full, --num-sync, as fillsync, since each
 * commit then waits for a sync). A transaction is a read-modify-write of --txn-keys distinct
 * keys (default 4) in random order: get each, put each (a new value), commit. Transactions run
 * at the engine's default isolation, with the commit at --durability.
 *   txndisjoint   thread t draws its keys from its own slice of [0, num) (num / threads keys),
 *                 so no two threads touch a key: commit throughput without contention. Reports
 *                 transactions/s (ops/sec) and keys/s; a conflict, not expected, is retried and
 *                 counted
 *   txnhot        every thread draws its keys from one hot set, keys [0, --hot-keys) (default
 *                 16): commits/s under contention. A commit refused with a conflict is retried
 *                 as a new transaction over the same keys until it commits; reports the
 *                 conflict rate, conflicts / (commits + conflicts). micros/op is the time per
 *                 committed transaction, retries included
 *
 * Threads: every thread starts on one barrier after its per-thread state is ready; micros/op is
 * the summed per-thread time divided by the total operations (the latency a caller sees, as
 * db_bench reports it) and ops/sec and MB/s use the wall time from the first start to the last
 * finish (the aggregate throughput).
 *
 * Engine contract: the driver calls open/close from one thread with no other call in flight;
 * thread_new, put, get, del, write_batch and the iter_ and txn_ functions run concurrently from
 * many threads, each with its own thread state. Return codes are BENCH_OK, BENCH_NOT_FOUND (get
 * and txn_get only), BENCH_CONFLICT (txn_commit only) or BENCH_ERROR with a message in *err.
 * Slices passed in are borrowed for the call; slices an iterator returns are borrowed until it
 * moves or is freed.
 */
#ifndef SHALE_BENCH_DRIVER_H
#define SHALE_BENCH_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { BENCH_OK = 0, BENCH_NOT_FOUND = 1, BENCH_CONFLICT = 2, BENCH_ERROR = -1 };

/* The four durability levels of include/shale.h; each engine maps them to its nearest setting
 * and says how in durability_desc. */
typedef enum bench_durability {
    BENCH_DUR_NONE = 0,
    BENCH_DUR_MEMORY = 1,
    BENCH_DUR_OS = 2,
    BENCH_DUR_FULL = 3,
} bench_durability;

typedef struct bench_err {
    char msg[256];
} bench_err;

typedef struct bench_slice {
    const void *data;
    size_t len;
} bench_slice;

/* The memory budget (--max-memory, default 256 MiB: Shale's default max_memory) is given to every
 * engine, split the way Shale splits it: a write buffer (memtable) of an eighth, since an LSM
 * engine may hold two (one filling, one being flushed), and a block cache of the rest (three
 * quarters). Engines without a memtable give their cache the whole budget. */
typedef struct bench_open_opts {
    bench_durability durability; /* the database's default level for this open */
    bool create;                 /* create it when missing (false with --use-existing) */
    uint64_t expected_bytes;     /* keys + values the whole run may write (sizes LMDB's map) */
    uint64_t max_memory_bytes;   /* the budget, a whole number of MiB */
    uint64_t write_buffer_bytes; /* max_memory_bytes / 8 */
    uint64_t cache_bytes;        /* max_memory_bytes - 2 * write_buffer_bytes */
    int threads;                 /* driver threads (engines with per-thread caches divide) */
} bench_open_opts;

typedef struct bench_engine {
    const char *name;        /* "shale", "leveldb", "rocksdb", "lmdb", "sqlite" */
    const char *marker_file; /* a file every database of this engine holds: the driver only
                                deletes a directory that holds it (or is empty) */
    /* Writes the engine's version and the options the adapter sets for `opts`, one line. */
    void (*describe)(const bench_open_opts *opts, char *out, size_t len);
    /* What `level` means for this engine, one line. */
    const char *(*durability_desc)(bench_durability level);

    int (*open)(const char *dir, const bench_open_opts *opts, void **db, bench_err *err);
    int (*close)(void *db, bench_err *err);
    /* Log records replayed by the last open, or -1 when the engine does not say. May be NULL. */
    int64_t (*recovered_records)(void *db);
    /* The engine's own counters since open, one line (the `stats` benchmark). May be NULL. */
    void (*stats)(void *db, char *out, size_t len);

    int (*thread_new)(void *db, void **thread, bench_err *err);
    void (*thread_free)(void *thread);
    int (*put)(void *thread, bench_slice key, bench_slice value, bench_durability level,
               bench_err *err);
    /* Reads key; on BENCH_OK stores the value's length in *value_len. */
    int (*get)(void *thread, bench_slice key, size_t *value_len, bench_err *err);
    int (*del)(void *thread, bench_slice key, bench_durability level, bench_err *err);
    /* Applies n puts atomically. May be NULL (fillbatch is then skipped). */
    int (*write_batch)(void *thread, const bench_slice *keys, const bench_slice *values, size_t n,
                       bench_durability level, bench_err *err);

    int (*iter_new)(void *thread, void **iter, bench_err *err);
    void (*iter_free)(void *iter);
    void (*iter_seek_first)(void *iter);
    void (*iter_seek_last)(void *iter);
    bool (*iter_valid)(void *iter);
    void (*iter_next)(void *iter);
    void (*iter_prev)(void *iter);
    bench_slice (*iter_key)(void *iter);
    bench_slice (*iter_value)(void *iter);
    /* BENCH_OK when the iterator ended cleanly, else BENCH_ERROR. */
    int (*iter_status)(void *iter, bench_err *err);

    /* Transactions (txndisjoint, txnhot): all NULL for an engine without them, which skips those
     * workloads. A thread state holds at most one open transaction, begun by txn_begin with its
     * commit at `level`; txn_get and txn_put act on it (txn_get as get, reading the
     * transaction's own writes first). txn_commit ends it either way: BENCH_OK when it committed,
     * BENCH_CONFLICT when a concurrent write won (nothing was written; the caller may retry with
     * a new transaction), BENCH_ERROR otherwise. txn_abort ends (rolls back) a transaction still
     * open, after a failed txn_get or txn_put; it does nothing when none is open. thread_free
     * aborts one still open. */
    int (*txn_begin)(void *thread, bench_durability level, bench_err *err);
    int (*txn_get)(void *thread, bench_slice key, size_t *value_len, bench_err *err);
    int (*txn_put)(void *thread, bench_slice key, bench_slice value, bench_err *err);
    int (*txn_commit)(void *thread, bench_err *err);
    void (*txn_abort)(void *thread);
} bench_engine;

/* The adapters (each defined in engine_<name>.c, built only when its library is found). */
extern const bench_engine bench_engine_shale;
extern const bench_engine bench_engine_leveldb;
extern const bench_engine bench_engine_rocksdb;
extern const bench_engine bench_engine_lmdb;
extern const bench_engine bench_engine_sqlite;

struct compare_spec;

/* Parses db_bench-style flags (argv[0] is the command name), runs the benchmarks on the engine
 * chosen by --engine (the first one when there is only one) and prints the report to stdout.
 * `prog` names the command in usage and messages ("shale bench", "peerbench"). `compare` is
 * compare_run (bench_compare.h) in the comparison program, NULL elsewhere: with it, --engines
 * LIST (or "all") runs the benchmarks on each engine of LIST in turn, each in its own child
 * process, --rounds times, and ends with one table of all of them. Returns the exit status: 0 on
 * success, 1 when a benchmark or the database failed, 2 on a usage error. */
int bench_main(const bench_engine *const *engines, size_t engine_count, const char *prog,
               int (*compare)(const struct compare_spec *spec), int argc, char **argv);

#endif /* SHALE_BENCH_DRIVER_H */
