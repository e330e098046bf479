/*
 * bench_compare: runs the same workloads on several engines, each in its own child process, and
 * prints one markdown table: engine x workload ops/sec, plus each engine's peak RSS, size on disk
 * and run time. bench_driver.c uses it for `--engines LIST`.
 *
 * Why a child per engine: peak RSS is a per-process high-water mark (getrusage's ru_maxrss), so a
 * fork per engine and wait4() give each engine its own peak, untouched by the engines measured
 * before it (allocator caches, mapped files, thread stacks). It also keeps one engine's background
 * threads and open files from running into the next engine's timings.
 *
 * Rounds: with rounds > 1 the engines take turns (engine 1, 2, ..., 1, 2, ...), since other
 * processes on the machine come and go; each ops/sec cell and the disk size are the median of
 * the rounds, peak RSS the largest of them, run time the median.
 *
 * The child writes its results into a MAP_SHARED anonymous mapping made before the fork; nothing
 * else crosses the process boundary. Not thread-safe (it forks): call it from the main thread
 * before any other thread exists.
 */
#ifndef SHALE_BENCH_COMPARE_H
#define SHALE_BENCH_COMPARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes v rounded to a whole number with thousands separators ("1,234,567") into out; returns
 * out. Shared by every table the benchmarks print. */
const char *compare_group(char *out, size_t len, double v);

#define COMPARE_MAX_WORKLOADS 32
#define COMPARE_MAX_ENGINES   16

/* One engine's run, filled in by the child. */
typedef struct compare_result {
    bool ran[COMPARE_MAX_WORKLOADS];       /* the workload finished and reported a rate */
    double ops[COMPARE_MAX_WORKLOADS];     /* ops/sec (entries/sec for scans) */
    uint64_t found[COMPARE_MAX_WORKLOADS]; /* keys found, for readrandom and readmissing */
    uint64_t done[COMPARE_MAX_WORKLOADS];  /* operations done */
    bool have_disk;
    uint64_t disk_bytes; /* see bench_driver.c: the database the non-fillsync workloads left */
} compare_result;

/* Runs engine `engine` in the child: returns its exit status (0 = success). */
typedef int (*compare_child_fn)(void *ctx, size_t engine, compare_result *out);

typedef struct compare_spec {
    const char *prog;
    const char *const *engine_names;   /* engine_count names, the table's columns */
    size_t engine_count;               /* 1 .. COMPARE_MAX_ENGINES */
    const char *const *workload_names; /* workload_count names, the table's rows, in run order */
    size_t workload_count;             /* 1 .. COMPARE_MAX_WORKLOADS */
    int rounds;                        /* >= 1 */
    compare_child_fn child;
    void *ctx;
} compare_spec;

/* Runs every round of every engine, printing progress and each child's own output to stdout, then
 * the table. Returns 0 when every child succeeded, 1 otherwise (the table still shows the rest:
 * a failed workload's cell reads "failed"). */
int compare_run(const compare_spec *spec);

#endif /* SHALE_BENCH_COMPARE_H */
