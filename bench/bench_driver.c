/*
 * bench_driver.c: flags, threads, timing and the db_bench-style report, the database directory
 * and --engines. See bench_driver.h for the workloads and the engine contract, and
 * bench_workloads.h for the split with bench_workloads.c, which holds the workloads' loops.
 *
 * Values are slices of one read-only pool of at least 1 MiB built as db_bench builds its: 100-byte
 * pieces, each 50 random printable bytes written twice, so a value compresses to about half its
 * size. Random keys are uniform over [0, num): thread t of workload w draws from a splitmix64
 * stream seeded by (--seed, w, t), so every engine sees the same key sequences, a run repeats
 * exactly, and readrandom does not replay the exact sequence fillrandom wrote.
 */
#include "bench_driver.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench_compare.h"
#include "bench_workloads.h"

#define DEFAULT_BENCHMARKS                                                                         \
    "fillseq,fillrandom,overwrite,readrandom,readmissing,readseq,deleterandom,fillsync"
#define MAX_VALUE_SIZE    (4u << 20) /* shale's default max_value_bytes */
#define MAX_THREADS       1024
#define POOL_MIN_BYTES    (1u << 20) /* db_bench's RandomGenerator size */
#define PIECE_BYTES       100  /* db_bench builds its pool from 100-byte compressible pieces */
#define DEFAULT_MEMORY_MB 256  /* shale's default max_memory_mb */
#define MAX_TXN_KEYS      1000 /* keys per transaction; drawing them is quadratic in the count */

typedef struct config {
    const bench_engine *engine;
    const char *prog;
    char *benchmarks; /* owned copy, split in place */
    uint64_t num;
    uint64_t reads;
    uint64_t writes;
    uint64_t num_sync;
    size_t key_size;
    size_t value_size;
    size_t batch_size;
    uint64_t txns;     /* transactions per thread for txndisjoint and txnhot */
    size_t txn_keys;   /* keys read and written per transaction */
    uint64_t hot_keys; /* txnhot's shared key set: [0, hot_keys) */
    bool has_txn;      /* --benchmarks names a transaction workload */
    int threads;
    bench_durability durability;
    uint64_t seed;
    bool use_existing;
    bool histogram;
    uint64_t max_memory_mb;
    char db[PATH_MAX];
    bool db_is_temp; /* we made it with mkdtemp, so we remove it at the end */
    /* --engines: the comparison (bench_compare.h); db is then the parent of one directory per
     * engine, and each child sets engine and engine_db. */
    bool compare;
    int (*compare_fn)(const compare_spec *spec); /* NULL: this program does not compare */
    int rounds;
    const bench_engine *selected[COMPARE_MAX_ENGINES];
    size_t selected_count;
    compare_result *result; /* where the child records its rates; NULL outside --engines */
} config;

/* ---- random streams and values ---- */

static uint64_t stream_seed(uint64_t seed, uint64_t bench_index, uint64_t thread_index)
{
    uint64_t s = seed;
    uint64_t a = splitmix64(&s);
    s = a ^ (bench_index * 0xd6e8feb86659fd93ull);
    uint64_t b = splitmix64(&s);
    s = b ^ (thread_index * 0xa0761d6478bd642full);
    return splitmix64(&s);
}

static size_t decimal_digits(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static char *build_value_pool(size_t value_size, size_t *size_out)
{
    size_t size = POOL_MIN_BYTES;
    if (value_size > size) {
        size = value_size;
    }
    size = (size + PIECE_BYTES - 1) / PIECE_BYTES * PIECE_BYTES;
    char *pool = malloc(size);
    if (pool == NULL) {
        return NULL;
    }
    uint64_t rng = 301; /* db_bench's value seed */
    for (size_t off = 0; off < size; off += PIECE_BYTES) {
        char raw[PIECE_BYTES / 2];
        for (size_t i = 0; i < sizeof(raw); i++) {
            raw[i] = (char)(' ' + splitmix64(&rng) % 95); /* printable, as db_bench */
        }
        memcpy(pool + off, raw, sizeof(raw));
        memcpy(pool + off + sizeof(raw), raw, sizeof(raw));
    }
    *size_out = size;
    return pool;
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- latency histogram (--histogram; the buckets are in bench_workloads.h) ---- */

static void hist_merge(hist *into, const hist *from)
{
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        into->count[i] += from->count[i];
    }
    into->n += from->n;
    if (from->max_ns > into->max_ns) {
        into->max_ns = from->max_ns;
    }
}

static double hist_percentile_us(const hist *h, double p)
{
    uint64_t want = (uint64_t)((double)h->n * p / 100.0);
    if (want == 0) {
        want = 1;
    }
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= want) {
            uint64_t up = hist_bucket_upper(i);
            return (double)(up < h->max_ns ? up : h->max_ns) / 1000.0;
        }
    }
    return (double)h->max_ns / 1000.0;
}

/* ---- the workload table ---- */

typedef struct bench_def {
    const char *name;
    bench_kind kind;
    bool fresh; /* starts from an empty database (db_bench's fresh_db) */
} bench_def;

static const bench_def BENCHES[] = {
    {"fillseq", K_FILLSEQ, true},
    {"fillrandom", K_FILLRANDOM, true},
    {"fillbatch", K_FILLBATCH, true},
    {"overwrite", K_OVERWRITE, false},
    {"readrandom", K_READRANDOM, false},
    {"readmissing", K_READMISSING, false},
    {"readseq", K_READSEQ, false},
    {"readreverse", K_READREVERSE, false},
    {"deleterandom", K_DELETERANDOM, false},
    {"fillsync", K_FILLSYNC, true},
    {"reopen", K_REOPEN, false},
    {"stats", K_STATS, false},
    /* Appended, not grouped by kind: a workload's position seeds its key streams, and the older
     * workloads keep theirs. */
    {"txndisjoint", K_TXNDISJOINT, false},
    {"txnhot", K_TXNHOT, false},
};

/* ---- one benchmark's threads ---- */

static void *worker_main(void *arg)
{
    worker *w = arg;
    run *r = w->r;
    bench_err err;
    bool ready = r->eng->thread_new(r->db, &w->state, &err) == BENCH_OK;
    if (!ready) {
        w->state = NULL;
        worker_fail(w, &err);
    }
    pthread_barrier_wait(&r->barrier); /* every thread starts together */
    w->start = now_sec();
    if (ready && !worker_stopped(w)) {
        workload_run(w);
    }
    w->finish = now_sec();
    if (ready) {
        r->eng->thread_free(w->state);
    }
    return NULL;
}

/* Prints one db_bench result line; returns the ops/sec it printed. */
static double print_result(const char *name, uint64_t done, uint64_t bytes, double thread_sec,
                           double wall_sec, const char *extra)
{
    if (done < 1) {
        done = 1; /* as db_bench: pretend one op so the rates stay finite */
    }
    if (wall_sec <= 0) {
        wall_sec = 1e-9;
    }
    double micros = thread_sec * 1e6 / (double)done;
    double ops = (double)done / wall_sec;
    printf("%-12s : %11.3f micros/op; %8.0f ops/sec", name, micros, ops);
    if (bytes > 0) {
        printf("; %6.1f MB/s", (double)bytes / 1048576.0 / wall_sec);
    }
    if (extra != NULL && extra[0] != '\0') {
        printf(" %s", extra);
    }
    printf("\n");
    return ops;
}

/* Runs one threaded benchmark. Returns false (with the first failure printed) on an error. Under
 * --engines also records the rate as workload `slot` of the engine's result. */
static bool run_threads(run *r, const char *name, size_t slot)
{
    const config *c = r->cfg;
    int n = c->threads;
    worker *ws = calloc((size_t)n, sizeof(*ws));
    if (ws == NULL) {
        fprintf(stderr, "%s: %s: out of memory\n", c->prog, name);
        return false;
    }
    bool ok = true;
    int started = 0;
    atomic_init(&r->stop, false);
    if (pthread_barrier_init(&r->barrier, NULL, (unsigned)n) != 0) {
        fprintf(stderr, "%s: %s: pthread_barrier_init failed\n", c->prog, name);
        free(ws);
        return false;
    }
    for (int i = 0; i < n; i++) {
        ws[i].r = r;
        ws[i].index = i;
        if (c->histogram) {
            ws[i].h = calloc(1, sizeof(hist));
            if (ws[i].h == NULL) {
                fprintf(stderr, "%s: %s: out of memory\n", c->prog, name);
                ok = false;
                goto out;
            }
        }
    }
    size_t bench_index = 0;
    for (size_t i = 0; i < sizeof(BENCHES) / sizeof(BENCHES[0]); i++) {
        if (BENCHES[i].kind == r->kind) {
            bench_index = i;
        }
    }
    for (int i = 0; i < n; i++) {
        ws[i].rng = stream_seed(c->seed, bench_index, (uint64_t)i);
    }
    for (int i = 0; i < n; i++) {
        int rc = pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]);
        if (rc != 0) {
            /* The barrier counts n threads: without all of them it would never open. */
            fprintf(stderr, "%s: %s: cannot start thread %d: %s\n", c->prog, name, i, strerror(rc));
            exit(1);
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(ws[i].tid, NULL);
    }

    uint64_t done = 0, bytes = 0, found = 0, reads = 0, conflicts = 0;
    double thread_sec = 0, first = 0, last = 0;
    hist total;
    memset(&total, 0, sizeof(total));
    for (int i = 0; i < n; i++) {
        worker *w = &ws[i];
        if (w->failed && ok) {
            fprintf(stderr, "%s: %s: thread %d: %s\n", c->prog, name, i, w->err.msg);
            ok = false;
        }
        done += w->done;
        bytes += w->bytes;
        found += w->found;
        reads += w->reads;
        conflicts += w->conflicts;
        thread_sec += w->finish - w->start;
        if (i == 0 || w->start < first) {
            first = w->start;
        }
        if (i == 0 || w->finish > last) {
            last = w->finish;
        }
        if (w->h) {
            hist_merge(&total, w->h);
        }
    }
    if (ok) {
        char extra[256] = "";
        if (r->kind == K_READRANDOM || r->kind == K_READMISSING) {
            snprintf(extra, sizeof(extra), "(%" PRIu64 " of %" PRIu64 " found)", found, done);
        } else if (r->kind == K_TXNDISJOINT || r->kind == K_TXNHOT) {
            double wall = last - first > 0 ? last - first : 1e-9;
            uint64_t tries = done + conflicts;
            char hot[48] = "";
            if (r->kind == K_TXNHOT) {
                snprintf(hot, sizeof(hot), " of %" PRIu64 " hot", c->hot_keys);
            }
            snprintf(extra, sizeof(extra),
                     "(%zu%s keys/txn: %.0f keys/sec; %" PRIu64 " commits, %" PRIu64
                     " conflicts, conflict rate %.1f%%; %" PRIu64 " of %" PRIu64 " reads found)",
                     c->txn_keys, hot, (double)(done * c->txn_keys) / wall, done, conflicts,
                     tries > 0 ? 100.0 * (double)conflicts / (double)tries : 0.0, found, reads);
        }
        double ops = print_result(name, done, bytes, thread_sec, last - first, extra);
        if (c->result != NULL && slot < COMPARE_MAX_WORKLOADS) {
            c->result->ran[slot] = true;
            c->result->ops[slot] = ops;
            c->result->found[slot] = found;
            c->result->done[slot] = done;
        }
        if (c->histogram && total.n > 0) {
            const char *unit = r->kind == K_FILLBATCH ? "per batch"
                               : (r->kind == K_TXNDISJOINT || r->kind == K_TXNHOT)
                                   ? "per committed txn"
                                   : "per op";
            printf("%-12s   latency micros %s: p50 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  "
                   "(%" PRIu64 " samples)\n",
                   "", unit, hist_percentile_us(&total, 50), hist_percentile_us(&total, 99),
                   hist_percentile_us(&total, 99.9), (double)total.max_ns / 1000.0, total.n);
        }
    }
out:
    for (int i = 0; i < n; i++) {
        free(ws[i].h);
    }
    pthread_barrier_destroy(&r->barrier);
    free(ws);
    return ok;
}

/* ---- the database directory ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    int rc = (flag == FTW_DP || flag == FTW_D) ? rmdir(path) : unlink(path);
    if (rc != 0 && errno != ENOENT) {
        fprintf(stderr, "cannot remove %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static bool dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        return false;
    }
    bool empty = true;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = false;
            break;
        }
    }
    closedir(d);
    return empty;
}

/* Makes `dir` an empty directory, deleting an older database of this engine there. Refuses to
 * delete anything that is neither empty nor holds the engine's marker file, so a mistyped --db
 * cannot wipe a home directory. */
static bool reset_dir(const config *c)
{
    struct stat st;
    if (stat(c->db, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            fprintf(stderr, "%s: --db %s: not a directory\n", c->prog, c->db);
            return false;
        }
        char marker[PATH_MAX + 64];
        snprintf(marker, sizeof(marker), "%s/%s", c->db, c->engine->marker_file);
        if (stat(marker, &st) != 0 && !dir_is_empty(c->db)) {
            fprintf(stderr,
                    "%s: --db %s: holds files but no %s database (no %s file); refusing to "
                    "delete them\n",
                    c->prog, c->db, c->engine->name, c->engine->marker_file);
            return false;
        }
        if (nftw(c->db, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
            return false;
        }
    } else if (errno != ENOENT) {
        fprintf(stderr, "%s: --db %s: %s\n", c->prog, c->db, strerror(errno));
        return false;
    }
    if (mkdir(c->db, 0700) != 0) {
        fprintf(stderr, "%s: --db %s: cannot create: %s\n", c->prog, c->db, strerror(errno));
        return false;
    }
    return true;
}

static void remove_tree(const char *path)
{
    (void)nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The sum of the sizes (st_size) of the regular files under the directory open as dirfd, which
 * it closes; subdirectories are followed `depth` levels down. */
static uint64_t tree_bytes(int dirfd, int depth)
{
    DIR *d = fdopendir(dirfd);
    if (d == NULL) {
        close(dirfd);
        return 0;
    }
    uint64_t sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            continue;
        }
        if (S_ISREG(st.st_mode)) {
            sum += (uint64_t)st.st_size;
        } else if (S_ISDIR(st.st_mode) && depth > 0) {
            int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (sub >= 0) {
                sum += tree_bytes(sub, depth - 1);
            }
        }
    }
    closedir(d);
    return sum;
}

static uint64_t dir_bytes(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? 0 : tree_bytes(fd, 8);
}

/* ---- the open database ---- */

typedef struct db_state {
    void *db;
    bench_durability level; /* the level it was opened with */
    bool for_fillsync;      /* opened afresh by fillsync (its size is not the one reported) */
    bool used;              /* a workload ran on it since it was opened */
    bool have_disk;         /* disk_bytes holds a measurement */
    uint64_t disk_bytes;    /* the directory after the last close of a non-fillsync database */
} db_state;

static bench_open_opts open_opts(const config *c, bench_durability level)
{
    uint64_t budget = c->max_memory_mb << 20;
    bench_open_opts o = {
        .durability = level,
        .create = !c->use_existing,
        .expected_bytes = c->num * (c->key_size + 1 + c->value_size),
        .max_memory_bytes = budget,
        .write_buffer_bytes = budget / 8,
        .cache_bytes = budget - 2 * (budget / 8),
        .threads = c->threads,
    };
    return o;
}

static bool db_open(const config *c, db_state *s, bench_durability level)
{
    bench_open_opts o = open_opts(c, level);
    bench_err err;
    memset(&err, 0, sizeof(err));
    if (c->engine->open(c->db, &o, &s->db, &err) != BENCH_OK) {
        fprintf(stderr, "%s: open %s: %s\n", c->prog, c->db, err.msg);
        s->db = NULL;
        return false;
    }
    s->level = level;
    s->used = false;
    s->for_fillsync = false;
    return true;
}

static bool db_close(const config *c, db_state *s)
{
    if (s->db == NULL) {
        return true;
    }
    bench_err err;
    memset(&err, 0, sizeof(err));
    int rc = c->engine->close(s->db, &err);
    s->db = NULL;
    if (rc != BENCH_OK) {
        fprintf(stderr, "%s: close %s: %s\n", c->prog, c->db, err.msg);
        return false;
    }
    if (s->used && !s->for_fillsync) {
        s->disk_bytes = dir_bytes(c->db);
        s->have_disk = true;
    }
    return true;
}

/* ---- the report header ---- */

static void cpu_info(char *model, size_t model_len, char *cache, size_t cache_len, int *cpus)
{
    snprintf(model, model_len, "unknown");
    snprintf(cache, cache_len, "unknown");
    *cpus = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL) {
        return;
    }
    char line[512];
    bool have_model = false, have_cache = false;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *colon = strchr(line, ':');
        if (colon == NULL) {
            continue;
        }
        char *val = colon + 1;
        while (*val == ' ' || *val == '\t') {
            val++;
        }
        val[strcspn(val, "\n")] = '\0';
        if (strncmp(line, "processor", 9) == 0) {
            (*cpus)++;
        } else if (!have_model && strncmp(line, "model name", 10) == 0) {
            snprintf(model, model_len, "%s", val);
            have_model = true;
        } else if (!have_cache && strncmp(line, "cache size", 10) == 0) {
            snprintf(cache, cache_len, "%s", val);
            have_cache = true;
        }
    }
    fclose(f);
}

static const char *build_kind(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return "WARNING: built with a sanitizer; numbers are not representative";
#else
#ifdef __has_feature
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return "WARNING: built with a sanitizer; numbers are not representative";
#endif
#endif
#endif
#ifndef __OPTIMIZE__
    return "WARNING: built without optimization; numbers are not representative";
#else
#ifndef NDEBUG
    return "optimized, assertions enabled (NDEBUG not defined)";
#else
    return "optimized, assertions off";
#endif
#endif
}

static const char *level_name(bench_durability d)
{
    switch (d) {
    case BENCH_DUR_NONE:
        return "none";
    case BENCH_DUR_MEMORY:
        return "memory";
    case BENCH_DUR_OS:
        return "os";
    case BENCH_DUR_FULL:
        return "full";
    }
    return "?";
}

/* The lines that hold for every engine of the run. */
static void print_header(const config *c)
{
    char model[256], cache[64];
    int cpus = 0;
    cpu_info(model, sizeof(model), cache, sizeof(cache), &cpus);
    struct utsname u;
    if (uname(&u) != 0) {
        memset(&u, 0, sizeof(u));
    }
    time_t t = time(NULL);
    struct tm tm;
    char date[64] = "unknown";
    if (localtime_r(&t, &tm) != NULL) {
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S %Z", &tm);
    }
    double raw_mb = (double)c->num * (double)(c->key_size + c->value_size) / 1048576.0;
    printf("%s: db_bench-style benchmark\n", c->prog);
    printf("Date:       %s\n", date);
    printf("CPU:        %d * %s (%ld online)\n", cpus, model, sysconf(_SC_NPROCESSORS_ONLN));
    printf("CPUCache:   %s\n", cache);
    printf("Kernel:     %s %s %s\n", u.sysname, u.release, u.machine);
    double load[3];
    if (getloadavg(load, 3) == 3) {
        /* Other processes on the machine skew every number: say how busy it was. */
        printf("Load:       %.2f %.2f %.2f (1, 5, 15 min averages at start)\n", load[0], load[1],
               load[2]);
    }
#ifdef __VERSION__
    printf("Build:      %s; compiler %s\n", build_kind(), __VERSION__);
#else
    printf("Build:      %s\n", build_kind());
#endif
    printf("Keys:       %zu bytes each (zero-padded decimal)\n", c->key_size);
    printf("Values:     %zu bytes each (%zu bytes after compression: 50 random printable bytes "
           "repeated twice per 100)\n",
           c->value_size, c->value_size / 2);
    printf("Entries:    %" PRIu64 " per thread (reads %" PRIu64 ", overwrite/deleterandom %" PRIu64
           ", fillsync %" PRIu64 ")\n",
           c->num, c->reads, c->writes, c->num_sync);
    printf("RawSize:    %.1f MiB per thread (keys + values, before compression)\n", raw_mb);
    printf("Threads:    %d (each does the full count; ops/sec is the aggregate)\n", c->threads);
    if (c->has_txn) {
        printf("Txns:       %" PRIu64
               " per thread, each a read-modify-write of %zu keys committed at "
               "%s; txnhot's hot set: %" PRIu64 " keys\n",
               c->txns, c->txn_keys, level_name(c->durability), c->hot_keys);
    }
    bench_open_opts o = open_opts(c, c->durability);
    printf("Memory:     %" PRIu64 " MiB budget per engine: write buffer %" PRIu64
           " MiB (two may be held), cache %" PRIu64 " MiB; --max-memory\n",
           c->max_memory_mb, o.write_buffer_bytes >> 20, o.cache_bytes >> 20);
    printf("Seed:       %" PRIu64 "\n", c->seed);
    if (c->compare) {
        printf("Engines:    ");
        for (size_t i = 0; i < c->selected_count; i++) {
            printf("%s%s", i ? ", " : "", c->selected[i]->name);
        }
        printf("; each in its own process, %d round(s), taking turns\n", c->rounds);
        printf("Databases:  %s/<engine>%s\n", c->db, c->db_is_temp ? " (temporary)" : "");
    }
    fflush(stdout);
}

/* The lines about the engine being measured. */
static void print_engine_header(const config *c)
{
    char line[1024];
    bench_open_opts o = open_opts(c, c->durability);
    c->engine->describe(&o, line, sizeof(line));
    printf("Engine:     %s\n", line);
    printf("Durability: %s: %s\n", level_name(c->durability),
           c->engine->durability_desc(c->durability));
    printf("Fillsync:   %s\n", c->engine->durability_desc(BENCH_DUR_FULL));
    printf("Database:   %s%s\n", c->db,
           c->use_existing ? " (existing)" : (c->db_is_temp ? " (temporary)" : ""));
    printf("------------------------------------------------\n");
    fflush(stdout);
}

/* ---- flags ---- */

static void usage(const config *c, const bench_engine *const *engines, size_t engine_count,
                  FILE *out)
{
    fprintf(
        out,
        "usage: %s [flags]\n"
        "A db_bench-style benchmark. Flags (also as --flag=value):\n"
        "  --benchmarks LIST   comma-separated workloads, run in order (default:\n"
        "                      " DEFAULT_BENCHMARKS ")\n"
        "                      available: fillseq fillrandom fillbatch overwrite readrandom\n"
        "                      readmissing readseq readreverse deleterandom fillsync reopen "
        "stats\n"
        "                      txndisjoint txnhot (engines with transactions; never by default)\n"
        "  --num N             operations per thread for fills, overwrite and deleterandom;\n"
        "                      keys come from [0, N) (default 1000000)\n"
        "  --reads N           operations per thread for the read workloads (default --num)\n"
        "  --writes N          operations per thread for overwrite and deleterandom, keys still\n"
        "                      drawn from [0, num) (default --num)\n"
        "  --num-sync N        writes per thread for fillsync (default --num / 100)\n"
        "  --value-size N      bytes per value (default 100)\n"
        "  --key-size N        bytes per key, zero-padded decimal (default 16)\n"
        "  --batch-size N      keys per batch for fillbatch (default 1000)\n"
        "  --txns N            transactions per thread for txndisjoint and txnhot (default\n"
        "                      --num / --txn-keys; with --durability full, --num-sync)\n"
        "  --txn-keys N        keys each transaction reads, then writes, then commits\n"
        "                      (default 4); txndisjoint draws them from the thread's own\n"
        "                      slice of [0, num), txnhot from the hot set\n"
        "  --hot-keys N        txnhot's hot set, keys [0, N) shared by every thread (default\n"
        "                      16); a conflicting commit is retried; reports ops/sec =\n"
        "                      commits/sec and the conflict rate conflicts/(commits+conflicts)\n"
        "  --threads N         threads; each does the full count (default 1)\n"
        "  --durability LEVEL  none|memory|os|full: the database's level (default os);\n"
        "                      fillsync opens its fresh database with full\n"
        "  --db DIR            database directory (default: a new directory under $TMPDIR\n"
        "                      or /tmp, removed at the end); emptied before the run and\n"
        "                      before each fill\n"
        "  --use-existing      use the database in --db as it is; fills are skipped\n"
        "  --seed N            seed of the random key streams (default 301)\n"
        "  --max-memory MIB    memory budget given to every engine (default 256, Shale's\n"
        "                      default): Shale's max_memory_mb; LevelDB and RocksDB a write\n"
        "                      buffer of 1/8 and a block cache of 3/4; SQLite's cache_size;\n"
        "                      LMDB has no budget (the OS page cache holds its map)\n"
        "  --histogram         also print latency percentiles (two clock reads per op)\n"
        "  --engine NAME       the engine to measure:",
        c->prog);
    for (size_t i = 0; i < engine_count; i++) {
        fprintf(out, " %s", engines[i]->name);
    }
    fprintf(out, "\n");
    if (c->compare_fn != NULL) {
        fprintf(
            out,
            "  --engines LIST|all  compare: run the workloads on each engine of LIST in its own\n"
            "                      process, then print one table (ops/sec, peak RSS, size on\n"
            "                      disk); databases go to --db DIR/<engine>, removed after each\n"
            "  --rounds N          with --engines: N rounds, engines taking turns; the table\n"
            "                      gives medians (default 1)\n");
    }
    fprintf(out, "  --help              this text\n");
}

static bool parse_u64(const config *c, const char *flag, const char *v, uint64_t min, uint64_t max,
                      uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (v == NULL || *v == '\0' || *v == '-') {
        fprintf(stderr, "%s: %s needs a number\n", c->prog, flag);
        return false;
    }
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || x < min || x > max) {
        fprintf(stderr, "%s: %s %s: expected a whole number in %" PRIu64 "..%" PRIu64 "\n", c->prog,
                flag, v, min, max);
        return false;
    }
    *out = (uint64_t)x;
    return true;
}

static bool parse_durability(const char *v, bench_durability *out)
{
    static const char *const names[] = {"none", "memory", "os", "full"};
    for (int i = 0; i < 4; i++) {
        if (v != NULL && strcmp(v, names[i]) == 0) {
            *out = (bench_durability)i;
            return true;
        }
    }
    return false;
}

static const bench_def *find_bench(const char *name)
{
    for (size_t i = 0; i < sizeof(BENCHES) / sizeof(BENCHES[0]); i++) {
        if (strcmp(BENCHES[i].name, name) == 0) {
            return &BENCHES[i];
        }
    }
    return NULL;
}

/* Fills c->selected from a comma-separated list of engine names, or "all" (every engine built
 * in, in the order given to bench_main). Returns 0, or 2 on a usage error. */
static int parse_engines(config *c, const bench_engine *const *engines, size_t engine_count,
                         const char *list)
{
    c->compare = true;
    if (strcmp(list, "all") == 0) {
        for (size_t i = 0; i < engine_count && i < COMPARE_MAX_ENGINES; i++) {
            c->selected[c->selected_count++] = engines[i];
        }
        return 0;
    }
    char *copy = strdup(list);
    if (copy == NULL) {
        fprintf(stderr, "%s: out of memory\n", c->prog);
        return 2;
    }
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL && rc == 0;
         tok = strtok_r(NULL, ",", &save)) {
        const bench_engine *found = NULL;
        for (size_t i = 0; i < engine_count; i++) {
            if (strcmp(engines[i]->name, tok) == 0) {
                found = engines[i];
            }
        }
        for (size_t i = 0; i < c->selected_count; i++) {
            if (c->selected[i] == found) {
                fprintf(stderr, "%s: --engines: %s is listed twice\n", c->prog, tok);
                rc = 2;
            }
        }
        if (found == NULL) {
            fprintf(stderr, "%s: --engines: %s is not built in (built with:", c->prog, tok);
            for (size_t i = 0; i < engine_count; i++) {
                fprintf(stderr, " %s", engines[i]->name);
            }
            fprintf(stderr, ")\n");
            rc = 2;
        } else if (rc == 0 && c->selected_count == COMPARE_MAX_ENGINES) {
            fprintf(stderr, "%s: --engines: more than %d engines\n", c->prog, COMPARE_MAX_ENGINES);
            rc = 2;
        } else if (rc == 0) {
            c->selected[c->selected_count++] = found;
        }
    }
    free(copy);
    if (rc == 0 && c->selected_count == 0) {
        fprintf(stderr, "%s: --engines is empty\n", c->prog);
        rc = 2;
    }
    return rc;
}

/* Returns 0 to run, 1 after --help, 2 on a usage error. */
static int parse_flags(config *c, const bench_engine *const *engines, size_t engine_count, int argc,
                       char **argv)
{
    const char *benchmarks = DEFAULT_BENCHMARKS;
    const char *engine_name = NULL;
    const char *engine_list = NULL;
    const char *db = NULL;
    uint64_t reads = 0, writes = 0, num_sync = 0, txns = 0, u = 0;
    bool have_reads = false, have_writes = false, have_num_sync = false, have_txns = false;
    /* --help wins over every other argument, bad ones included (as in every shale command). */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(c, engines, engine_count, stdout);
            return 1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "%s: unexpected argument '%s' (flags start with --)\n", c->prog, arg);
            return 2;
        }
        char name[64];
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (name_len >= sizeof(name)) {
            fprintf(stderr, "%s: unknown flag '%s'\n", c->prog, arg);
            return 2;
        }
        memcpy(name, arg, name_len);
        name[name_len] = '\0';
        const char *val = eq ? eq + 1 : NULL;

        if (strcmp(name, "--use-existing") == 0 || strcmp(name, "--histogram") == 0) {
            bool on = true;
            if (val != NULL) {
                if (strcmp(val, "1") == 0 || strcmp(val, "true") == 0) {
                    on = true;
                } else if (strcmp(val, "0") == 0 || strcmp(val, "false") == 0) {
                    on = false;
                } else {
                    fprintf(stderr, "%s: %s=%s: expected true or false\n", c->prog, name, val);
                    return 2;
                }
            }
            if (name[2] == 'u') {
                c->use_existing = on;
            } else {
                c->histogram = on;
            }
            continue;
        }
        static const char *const value_flags[] = {
            "--benchmarks", "--engine",   "--engines",    "--rounds",   "--db",
            "--durability", "--num",      "--reads",      "--writes",   "--num-sync",
            "--value-size", "--key-size", "--batch-size", "--threads",  "--seed",
            "--max-memory", "--txns",     "--txn-keys",   "--hot-keys",
        };
        bool known = false;
        for (size_t f = 0; f < sizeof(value_flags) / sizeof(value_flags[0]); f++) {
            known = known || strcmp(name, value_flags[f]) == 0;
        }
        if (!known) {
            fprintf(stderr, "%s: unknown flag '%s' (see --help)\n", c->prog, name);
            return 2;
        }
        if (val == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a value\n", c->prog, name);
                return 2;
            }
            val = argv[++i];
        }
        if (strcmp(name, "--benchmarks") == 0) {
            benchmarks = val;
        } else if (strcmp(name, "--engine") == 0) {
            engine_name = val;
        } else if (strcmp(name, "--engines") == 0) {
            engine_list = val;
        } else if (strcmp(name, "--rounds") == 0) {
            if (!parse_u64(c, name, val, 1, 100, &u)) {
                return 2;
            }
            c->rounds = (int)u;
        } else if (strcmp(name, "--max-memory") == 0) {
            /* Shale's max_memory_mb range. */
            if (!parse_u64(c, name, val, 4, 1048576, &c->max_memory_mb)) {
                return 2;
            }
        } else if (strcmp(name, "--db") == 0) {
            db = val;
        } else if (strcmp(name, "--durability") == 0) {
            if (!parse_durability(val, &c->durability)) {
                fprintf(stderr, "%s: --durability %s: expected none, memory, os or full\n", c->prog,
                        val);
                return 2;
            }
        } else if (strcmp(name, "--num") == 0) {
            if (!parse_u64(c, name, val, 1, UINT64_C(1) << 40, &c->num)) {
                return 2;
            }
        } else if (strcmp(name, "--writes") == 0) {
            if (!parse_u64(c, name, val, 1, UINT64_C(1) << 40, &writes)) {
                return 2;
            }
            have_writes = true;
        } else if (strcmp(name, "--reads") == 0) {
            if (!parse_u64(c, name, val, 1, UINT64_C(1) << 40, &reads)) {
                return 2;
            }
            have_reads = true;
        } else if (strcmp(name, "--num-sync") == 0) {
            if (!parse_u64(c, name, val, 1, UINT64_C(1) << 40, &num_sync)) {
                return 2;
            }
            have_num_sync = true;
        } else if (strcmp(name, "--value-size") == 0) {
            if (!parse_u64(c, name, val, 0, MAX_VALUE_SIZE, &u)) {
                return 2;
            }
            c->value_size = (size_t)u;
        } else if (strcmp(name, "--key-size") == 0) {
            if (!parse_u64(c, name, val, 1, MAX_KEY_SIZE - 1, &u)) {
                return 2;
            }
            c->key_size = (size_t)u;
        } else if (strcmp(name, "--batch-size") == 0) {
            if (!parse_u64(c, name, val, 1, 1000000, &u)) {
                return 2;
            }
            c->batch_size = (size_t)u;
        } else if (strcmp(name, "--txns") == 0) {
            if (!parse_u64(c, name, val, 1, UINT64_C(1) << 40, &txns)) {
                return 2;
            }
            have_txns = true;
        } else if (strcmp(name, "--txn-keys") == 0) {
            if (!parse_u64(c, name, val, 1, MAX_TXN_KEYS, &u)) {
                return 2;
            }
            c->txn_keys = (size_t)u;
        } else if (strcmp(name, "--hot-keys") == 0) {
            if (!parse_u64(c, name, val, 1, UINT64_C(1) << 40, &c->hot_keys)) {
                return 2;
            }
        } else if (strcmp(name, "--threads") == 0) {
            if (!parse_u64(c, name, val, 1, MAX_THREADS, &u)) {
                return 2;
            }
            c->threads = (int)u;
        } else if (strcmp(name, "--seed") == 0) {
            if (!parse_u64(c, name, val, 0, UINT64_MAX, &c->seed)) {
                return 2;
            }
        } else {
            fprintf(stderr, "%s: unknown flag '%s' (see --help)\n", c->prog, name);
            return 2;
        }
    }

    if (engine_list != NULL) {
        if (c->compare_fn == NULL) {
            fprintf(stderr, "%s: --engines: this program measures one engine; peerbench compares\n",
                    c->prog);
            return 2;
        }
        if (engine_name != NULL) {
            fprintf(stderr, "%s: give --engine or --engines, not both\n", c->prog);
            return 2;
        }
        if (parse_engines(c, engines, engine_count, engine_list) != 0) {
            return 2;
        }
    } else if (c->rounds > 1) {
        fprintf(stderr, "%s: --rounds needs --engines\n", c->prog);
        return 2;
    } else if (engine_name == NULL) {
        if (engine_count != 1) {
            fprintf(stderr, "%s: --engine is required (built with:", c->prog);
            for (size_t i = 0; i < engine_count; i++) {
                fprintf(stderr, " %s", engines[i]->name);
            }
            fprintf(stderr, ")\n");
            return 2;
        }
        c->engine = engines[0];
    } else {
        for (size_t i = 0; i < engine_count; i++) {
            if (strcmp(engines[i]->name, engine_name) == 0) {
                c->engine = engines[i];
            }
        }
        if (c->engine == NULL) {
            fprintf(stderr, "%s: --engine %s: not built in (built with:", c->prog, engine_name);
            for (size_t i = 0; i < engine_count; i++) {
                fprintf(stderr, " %s", engines[i]->name);
            }
            fprintf(stderr, ")\n");
            return 2;
        }
    }

    c->reads = have_reads ? reads : c->num;
    c->writes = have_writes ? writes : c->num;
    c->num_sync = have_num_sync ? num_sync : (c->num / 100 > 0 ? c->num / 100 : 1);
    if (decimal_digits(c->num - 1) > c->key_size) {
        fprintf(stderr, "%s: --key-size %zu is too short for keys up to %" PRIu64 "\n", c->prog,
                c->key_size, c->num - 1);
        return 2;
    }
    if (c->compare && c->use_existing) {
        fprintf(stderr,
                "%s: --engines measures fresh databases; --use-existing cannot go with it\n",
                c->prog);
        return 2;
    }
    if (c->use_existing && db == NULL) {
        fprintf(stderr, "%s: --use-existing needs --db DIR\n", c->prog);
        return 2;
    }
    c->benchmarks = strdup(benchmarks);
    if (c->benchmarks == NULL) {
        fprintf(stderr, "%s: out of memory\n", c->prog);
        return 2;
    }
    /* Check every name before running anything: a typo should not cost a long run. */
    char *copy = strdup(benchmarks);
    if (copy == NULL) {
        fprintf(stderr, "%s: out of memory\n", c->prog);
        return 2;
    }
    char *save = NULL;
    int count = 0;
    bool disjoint = false, hot = false;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        const bench_def *def = find_bench(tok);
        if (def == NULL) {
            fprintf(stderr, "%s: unknown benchmark '%s' (see --help)\n", c->prog, tok);
            free(copy);
            return 2;
        }
        disjoint = disjoint || def->kind == K_TXNDISJOINT;
        hot = hot || def->kind == K_TXNHOT;
        count++;
    }
    free(copy);
    c->has_txn = disjoint || hot;
    c->txns = have_txns                         ? txns
              : c->durability == BENCH_DUR_FULL ? c->num_sync
              : c->num / c->txn_keys > 0        ? c->num / c->txn_keys
                                                : 1;
    if (disjoint && c->num / (uint64_t)c->threads < c->txn_keys) {
        fprintf(stderr,
                "%s: txndisjoint: --num %" PRIu64 " split over %d threads leaves fewer keys per "
                "thread than --txn-keys %zu\n",
                c->prog, c->num, c->threads, c->txn_keys);
        return 2;
    }
    if (hot && c->hot_keys < c->txn_keys) {
        fprintf(stderr, "%s: txnhot: --hot-keys %" PRIu64 " is fewer than --txn-keys %zu\n",
                c->prog, c->hot_keys, c->txn_keys);
        return 2;
    }
    if (hot && c->hot_keys > c->num) {
        fprintf(stderr, "%s: txnhot: --hot-keys %" PRIu64 " is more than --num %" PRIu64 "\n",
                c->prog, c->hot_keys, c->num);
        return 2;
    }
    if (count == 0) {
        fprintf(stderr, "%s: --benchmarks is empty\n", c->prog);
        return 2;
    }
    if (c->compare && count > COMPARE_MAX_WORKLOADS) {
        fprintf(stderr, "%s: --engines: at most %d workloads in --benchmarks\n", c->prog,
                COMPARE_MAX_WORKLOADS);
        return 2;
    }

    if (db != NULL) {
        if (strlen(db) >= sizeof(c->db)) {
            fprintf(stderr, "%s: --db: path too long\n", c->prog);
            return 2;
        }
        snprintf(c->db, sizeof(c->db), "%s", db);
        /* Under --engines, DIR holds one directory per engine. */
        if (c->compare && mkdir(c->db, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "%s: --db %s: cannot create: %s\n", c->prog, c->db, strerror(errno));
            return 2;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        if (tmp == NULL || *tmp == '\0') {
            tmp = "/tmp";
        }
        int n = snprintf(c->db, sizeof(c->db), "%s/%s-bench-XXXXXX", tmp,
                         c->compare ? "compare" : c->engine->name);
        if (n < 0 || (size_t)n >= sizeof(c->db) || mkdtemp(c->db) == NULL) {
            fprintf(stderr, "%s: cannot create a temporary directory under %s: %s\n", c->prog, tmp,
                    strerror(errno));
            return 2;
        }
        c->db_is_temp = true;
    }
    return 0;
}

/* ---- the run ---- */

/* Runs workload def, the slot-th of the list. */
static bool run_one(config *c, db_state *s, const bench_def *def, size_t slot, const char *pool,
                    size_t pool_size)
{
    const bench_engine *e = c->engine;
    if (def->kind == K_FILLBATCH && e->write_batch == NULL) {
        printf("%-12s : skipped; %s has no batch adapter\n", def->name, e->name);
        return true;
    }
    if ((def->kind == K_TXNDISJOINT || def->kind == K_TXNHOT) && e->txn_begin == NULL) {
        printf("%-12s : skipped; %s has no transaction adapter\n", def->name, e->name);
        return true;
    }
    if (def->fresh) {
        if (c->use_existing) {
            printf("%-12s : skipped; will not destroy an existing database\n", def->name);
            return true;
        }
        bench_durability level = def->kind == K_FILLSYNC ? BENCH_DUR_FULL : c->durability;
        if (!db_close(c, s) || !reset_dir(c) || !db_open(c, s, level)) {
            return false;
        }
        s->for_fillsync = def->kind == K_FILLSYNC;
    }
    if (def->kind == K_REOPEN) {
        bench_durability level = s->level;
        double t0 = now_sec();
        if (!db_close(c, s)) {
            return false;
        }
        double t1 = now_sec();
        if (!db_open(c, s, level)) {
            return false;
        }
        double t2 = now_sec();
        int64_t records = e->recovered_records ? e->recovered_records(s->db) : -1;
        char what[96];
        if (records >= 0) {
            snprintf(what, sizeof(what), "%" PRId64 " log records replayed", records);
        } else {
            snprintf(what, sizeof(what), "replayed records not reported by %s", e->name);
        }
        printf("%-12s : %11.3f ms to open; close took %.3f ms; %s\n", def->name, (t2 - t1) * 1e3,
               (t1 - t0) * 1e3, what);
        return true;
    }
    if (def->kind == K_STATS) {
        char line[1024] = "not reported";
        if (e->stats != NULL) {
            e->stats(s->db, line, sizeof(line));
        }
        printf("%-12s : %s\n", def->name, line);
        return true;
    }
    run r;
    memset(&r, 0, sizeof(r));
    r.cfg = c;
    r.params = (workload_params){
        .num = c->num,
        .key_size = c->key_size,
        .value_size = c->value_size,
        .batch_size = c->batch_size,
        .txn_keys = c->txn_keys,
        .hot_keys = c->hot_keys,
        .threads = c->threads,
    };
    r.eng = e;
    r.db = s->db;
    r.kind = def->kind;
    r.pool = pool;
    r.pool_size = pool_size;
    r.level = def->kind == K_FILLSYNC ? BENCH_DUR_FULL : c->durability;
    switch (def->kind) {
    case K_READRANDOM:
    case K_READMISSING:
    case K_READSEQ:
    case K_READREVERSE:
        r.ops = c->reads;
        break;
    case K_FILLSYNC:
        r.ops = c->num_sync;
        break;
    case K_OVERWRITE:
    case K_DELETERANDOM:
        r.ops = c->writes;
        break;
    case K_TXNDISJOINT:
    case K_TXNHOT:
        r.ops = c->txns;
        break;
    default:
        r.ops = c->num;
        break;
    }
    s->used = true;
    return run_threads(&r, def->name, slot);
}

/* Runs the workload list on c->engine in c->db and closes it; under --engines, records the size
 * on disk in c->result. Returns the exit status. */
static int run_engine(config *c)
{
    int status = 1;
    db_state s;
    memset(&s, 0, sizeof(s));
    size_t pool_size = 0;
    char *pool = build_value_pool(c->value_size, &pool_size);
    if (pool == NULL) {
        fprintf(stderr, "%s: out of memory\n", c->prog);
        goto out;
    }
    if (!c->use_existing && !reset_dir(c)) {
        goto out;
    }
    print_engine_header(c);
    if (!db_open(c, &s, c->durability)) {
        goto out;
    }
    char *save = NULL;
    size_t slot = 0;
    for (char *tok = strtok_r(c->benchmarks, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save), slot++) {
        if (!run_one(c, &s, find_bench(tok), slot, pool, pool_size)) {
            goto out;
        }
        fflush(stdout);
    }
    status = 0;
out:
    if (!db_close(c, &s)) {
        status = 1;
    }
    if (s.have_disk) {
        printf("%-12s : %.1f MiB in %s after close (%s)\n", "disk",
               (double)s.disk_bytes / 1048576.0, c->db,
               "the database the workloads before fillsync left");
        if (c->result != NULL) {
            c->result->have_disk = true;
            c->result->disk_bytes = s.disk_bytes;
        }
    }
    free(pool);
    return status;
}

/* The child of one engine under --engines: its own directory under c->db, removed at the end
 * (a 10,000,000-key database takes gigabytes; the next engine needs the space). */
static int compare_child(void *ctx, size_t engine, compare_result *out)
{
    config *c = ctx;
    c->engine = c->selected[engine];
    c->result = out;
    char base[PATH_MAX];
    snprintf(base, sizeof(base), "%s", c->db);
    int n = snprintf(c->db, sizeof(c->db), "%s/%s", base, c->engine->name);
    if (n < 0 || (size_t)n >= sizeof(c->db)) {
        fprintf(stderr, "%s: --db: path too long\n", c->prog);
        return 2;
    }
    int status = run_engine(c);
    remove_tree(c->db);
    return status;
}

static int run_compare(config *c)
{
    const char *engine_names[COMPARE_MAX_ENGINES];
    const char *workload_names[COMPARE_MAX_WORKLOADS];
    size_t nw = 0;
    char *copy = strdup(c->benchmarks);
    if (copy == NULL) {
        fprintf(stderr, "%s: out of memory\n", c->prog);
        return 1;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL && nw < COMPARE_MAX_WORKLOADS;
         tok = strtok_r(NULL, ",", &save)) {
        workload_names[nw++] = tok;
    }
    for (size_t i = 0; i < c->selected_count; i++) {
        engine_names[i] = c->selected[i]->name;
    }
    compare_spec spec = {
        .prog = c->prog,
        .engine_names = engine_names,
        .engine_count = c->selected_count,
        .workload_names = workload_names,
        .workload_count = nw,
        .rounds = c->rounds,
        .child = compare_child,
        .ctx = c,
    };
    int status = c->compare_fn(&spec);
    free(copy);
    return status;
}

int bench_main(const bench_engine *const *engines, size_t engine_count, const char *prog,
               int (*compare)(const compare_spec *spec), int argc, char **argv)
{
    config c;
    memset(&c, 0, sizeof(c));
    c.prog = prog;
    c.compare_fn = compare;
    c.num = 1000000;
    c.key_size = 16;
    c.value_size = 100;
    c.batch_size = 1000;
    c.txn_keys = 4;
    c.hot_keys = 16;
    c.threads = 1;
    c.durability = BENCH_DUR_OS;
    c.seed = 301;
    c.max_memory_mb = DEFAULT_MEMORY_MB;
    c.rounds = 1;
    int rc = parse_flags(&c, engines, engine_count, argc, argv);
    if (rc != 0) {
        free(c.benchmarks);
        return rc == 1 ? 0 : 2;
    }

    print_header(&c);
    int status = c.compare ? run_compare(&c) : run_engine(&c);
    if (c.db_is_temp) {
        remove_tree(c.db);
    }
    free(c.benchmarks);
    return status;
}
