/*
 * bench_workloads: what one driver thread does to the engine, between the start barrier and its
 * finish time. Internal to the bench driver (bench_driver.c and bench_workloads.c include it);
 * bench_driver.h is the driver's interface and documents every workload.
 *
 * What lives where:
 *   bench_driver.c     flags and the workload table (BENCHES: names, kinds, fresh databases),
 *                      the value pool and each thread's random stream seed, the threads (start
 *                      barrier, timing, join), the report and the histogram percentiles, the
 *                      database directory, open, close, reopen and stats, and --engines.
 *   bench_workloads.c  the operation loops: writes, batches, point reads, scans, deletes and
 *                      read-modify-write transactions with their conflict retries; key
 *                      formatting, the walk through the value pool, the per-operation latency
 *                      samples.
 *   this header        what both touch: one benchmark's shared state (run), one thread's state
 *                      (worker), the histogram's bucket layout (the workloads fill the buckets,
 *                      the driver reads them back), and the helpers both call, static inline
 *                      because the workloads call them once per operation.
 *
 * Threads: the workers of one run share it read-only, except `stop` (atomic). A worker is
 * written only by its own thread until the driver has joined that thread.
 * Ownership: the driver allocates and frees the run, the workers, their histograms and the value
 * pool; a workload frees whatever it allocated before it returns. The engine thread state
 * (worker.state) is made and freed by the driver around workload_run.
 * Failure: a workload records its first failure with worker_fail and returns; the other workers
 * see worker_stopped and give up early.
 */
#ifndef SHALE_BENCH_WORKLOADS_H
#define SHALE_BENCH_WORKLOADS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench_driver.h"

#define MAX_KEY_SIZE 4096 /* shale's default max_key_bytes; a longer key measures nothing new */

typedef enum bench_kind {
    K_FILLSEQ,
    K_FILLRANDOM,
    K_FILLBATCH,
    K_OVERWRITE,
    K_READRANDOM,
    K_READMISSING,
    K_READSEQ,
    K_READREVERSE,
    K_DELETERANDOM,
    K_FILLSYNC,
    K_REOPEN,
    K_STATS,
    K_TXNDISJOINT,
    K_TXNHOT,
} bench_kind;

/* The flags a workload reads, copied from the driver's config for each run. parse_flags checked
 * them: keys up to num - 1 fit in key_size digits and, when the workload is in the list,
 * txn_keys <= num / threads (txndisjoint) and txn_keys <= hot_keys <= num (txnhot). */
typedef struct workload_params {
    uint64_t num;      /* random keys are drawn from [0, num) */
    size_t key_size;   /* bytes per key, < MAX_KEY_SIZE */
    size_t value_size; /* bytes per value, <= the pool's size */
    size_t batch_size; /* fillbatch: keys per write_batch */
    size_t txn_keys;   /* txndisjoint and txnhot: distinct keys per transaction */
    uint64_t hot_keys; /* txnhot: the shared key set is [0, hot_keys) */
    int threads;       /* txndisjoint: thread t owns slice t of [0, num) */
} workload_params;

/* One benchmark: set up by the driver before its threads start. */
typedef struct run {
    const struct config *cfg; /* the driver's flags (bench_driver.c); workloads read params */
    workload_params params;
    const bench_engine *eng;
    void *db;
    bench_kind kind;
    uint64_t ops;           /* per thread */
    bench_durability level; /* of each write */
    const char *pool;       /* the values: read-only, pool_size bytes */
    size_t pool_size;
    pthread_barrier_t barrier;
    atomic_bool stop; /* a thread failed: the others give up early */
} run;

/* ---- latency histogram (--histogram): 8 buckets per power of two, so about 12% resolution ---- */

#define HIST_BUCKETS (64 * 8)

typedef struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t n;
    uint64_t max_ns;
} hist;

/* The bucket of a sample of ns nanoseconds: below 8 one per value, then 8 per power of two. */
static inline size_t hist_bucket(uint64_t ns)
{
    if (ns < 8) {
        return (size_t)ns;
    }
    int msb = 63 - __builtin_clzll(ns);
    return (size_t)msb * 8 + (size_t)((ns >> (msb - 3)) & 7);
}

/* The smallest value above every sample of bucket b (the inverse of hist_bucket). */
static inline uint64_t hist_bucket_upper(size_t b)
{
    if (b < 8) {
        return b + 1;
    }
    size_t msb = b / 8;
    uint64_t sub = b % 8;
    return (9 + sub) << (msb - 3);
}

/* One thread of a run. The driver sets r, index, rng (and h) before the thread starts, and reads
 * the counters after it ends. */
typedef struct worker {
    run *r;
    int index;
    pthread_t tid;
    void *state; /* the engine's per-thread state */
    uint64_t rng;
    size_t value_pos;
    uint64_t done;
    uint64_t bytes;
    uint64_t found;
    uint64_t reads;     /* transactions: every read, retries included (found counts the hits) */
    uint64_t conflicts; /* transactions: commits refused with a conflict, then retried */
    double start;
    double finish;
    bool failed;
    bench_err err;
    hist *h; /* NULL unless --histogram */
} worker;

static inline uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Records w's first failure and tells the other threads to stop. */
static inline void worker_fail(worker *w, const bench_err *err)
{
    w->failed = true;
    w->err = *err;
    atomic_store(&w->r->stop, true);
}

static inline bool worker_stopped(const worker *w)
{
    return atomic_load_explicit(&w->r->stop, memory_order_relaxed);
}

/* Runs w's share of workload w->r->kind on the engine thread state w->state: w->r->ops
 * operations (transactions for txndisjoint and txnhot; at most that many entries for readseq and
 * readreverse), fewer when a thread fails. Adds to w's counters and, when w->h is set, one
 * latency sample per operation (per batch for fillbatch, per committed transaction for the
 * transaction workloads). Does nothing for reopen and stats, which the driver runs itself. */
void workload_run(worker *w);

#endif /* SHALE_BENCH_WORKLOADS_H */
