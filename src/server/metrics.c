/* metrics: see metrics.h. */
#include "server/metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"

/* Upper bounds of the latency buckets, in microseconds (Prometheus prints them in seconds). */
static const uint64_t bucket_us[] = {50,    100,   250,   500,    1000,   2500,   5000,
                                     10000, 25000, 50000, 100000, 250000, 500000, 1000000};
#define NBUCKETS (sizeof bucket_us / sizeof bucket_us[0])

/* Written by one thread (the shard's), read by metrics_text: relaxed atomics, plain adds. */
typedef struct series {
    _Atomic(const char *) name; /* NULL = free slot */
    _Atomic uint64_t count, errors, sum_us;
    _Atomic uint64_t bucket[NBUCKETS]; /* not cumulative; summed when printed */
} series;

typedef struct shard {
    series s[2][METRICS_MAX_SERIES];
    series other[2];
} shard;

struct metrics {
    uint32_t nshards;
    shard *shards;
    _Atomic int64_t conns[2];
    _Atomic uint64_t conns_total[2];
};

metrics *metrics_new(uint32_t nshards)
{
    metrics *m = calloc(1, sizeof *m);
    if (m != NULL) {
        m->nshards = nshards ? nshards : 1;
        m->shards = calloc(m->nshards, sizeof *m->shards);
        if (m->shards == NULL) {
            free(m);
            m = NULL;
        }
    }
    return m;
}

void metrics_free(metrics *m)
{
    if (m != NULL) {
        free(m->shards);
        free(m);
    }
}

static inline void add(_Atomic uint64_t *x, uint64_t v)
{
    atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

/* The series of name in a shard: found by the string's address (names are static), else a free
 * slot, published with a release store for metrics_text. */
static series *find(shard *sh, metrics_kind kind, const char *name)
{
    size_t h = (size_t)(((uintptr_t)name >> 3) * 0x9E3779B97F4A7C15u) % METRICS_MAX_SERIES;
    for (size_t i = 0; i < METRICS_MAX_SERIES; i++) {
        series *s = &sh->s[kind][(h + i) % METRICS_MAX_SERIES];
        const char *cur = atomic_load_explicit(&s->name, memory_order_relaxed);
        if (cur == name) {
            return s;
        }
        if (cur == NULL) {
            atomic_store_explicit(&s->name, name, memory_order_release);
            return s;
        }
    }
    return &sh->other[kind];
}

void metrics_observe(metrics *m, uint32_t shard_no, metrics_kind kind, const char *name,
                     uint64_t usec, bool error)
{
    if (m == NULL || name == NULL) {
        return;
    }
    series *s = find(&m->shards[shard_no % m->nshards], kind, name);
    add(&s->count, 1);
    add(&s->sum_us, usec);
    if (error) {
        add(&s->errors, 1);
    }
    size_t b = 0;
    while (b < NBUCKETS && usec > bucket_us[b]) {
        b++;
    }
    if (b < NBUCKETS) {
        add(&s->bucket[b], 1);
    }
}

void metrics_conn(metrics *m, metrics_kind kind, int delta)
{
    if (m != NULL) {
        atomic_fetch_add(&m->conns[kind], delta);
        if (delta > 0) {
            atomic_fetch_add(&m->conns_total[kind], (uint64_t)delta);
        }
    }
}

static shale_code addf(shale_buf *out, shale_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static shale_code addf(shale_buf *out, shale_error *err, const char *fmt, ...)
{
    /* Formatted straight into out, growing it when the text is longer than the room left. */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return err_set(err, SHALE_INVALID, 0, "metrics: format failed");
    }
    shale_code rc = buf_reserve(out, (size_t)n + 1, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    va_start(ap, fmt);
    vsnprintf((char *)out->data + out->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    out->len += (size_t)n;
    return SHALE_OK;
}

/* A label value: the route and command names are ours (no quotes or backslashes), but escape
 * anyway as the format asks. */
static void label(char *dst, size_t cap, const char *s)
{
    size_t j = 0;
    for (; *s != '\0' && j + 3 < cap; s++) {
        if (*s == '"' || *s == '\\') {
            dst[j++] = '\\';
        }
        dst[j++] = *s == '\n' ? ' ' : *s;
    }
    dst[j] = '\0';
}

/* One series summed over the shards. */
typedef struct total {
    const char *name;
    uint64_t count, errors, sum_us, bucket[NBUCKETS];
} total;

static void sum_into(total *t, series *s)
{
    t->count += atomic_load_explicit(&s->count, memory_order_relaxed);
    t->errors += atomic_load_explicit(&s->errors, memory_order_relaxed);
    t->sum_us += atomic_load_explicit(&s->sum_us, memory_order_relaxed);
    for (size_t b = 0; b < NBUCKETS; b++) {
        t->bucket[b] += atomic_load_explicit(&s->bucket[b], memory_order_relaxed);
    }
}

/* Every series of a kind, summed over the shards (by name); the last is "other". */
static size_t totals(metrics *m, metrics_kind kind, total *out)
{
    size_t n = 0;
    for (uint32_t i = 0; i < m->nshards; i++) {
        for (size_t j = 0; j < METRICS_MAX_SERIES; j++) {
            series *s = &m->shards[i].s[kind][j];
            const char *name = atomic_load_explicit(&s->name, memory_order_acquire);
            if (name == NULL) {
                continue;
            }
            size_t k = 0;
            while (k < n && out[k].name != name) {
                k++;
            }
            if (k == n) {
                if (n == METRICS_MAX_SERIES) {
                    continue; /* more names than slots over all shards: rare, dropped */
                }
                memset(&out[n], 0, sizeof out[n]);
                out[n++].name = name;
            }
            sum_into(&out[k], s);
        }
    }
    memset(&out[n], 0, sizeof out[n]);
    out[n].name = "other";
    for (uint32_t i = 0; i < m->nshards; i++) {
        sum_into(&out[n], &m->shards[i].other[kind]);
    }
    return n + 1;
}

/* One counter family over the series: shale_<what><suffix>_total{<lname>="..."} per series
 * that served anything, the count or (errors) the error count. */
static shale_code counters(shale_buf *out, const total *t, size_t n, const char *what,
                           const char *suffix, const char *help, const char *lname, bool errors,
                           shale_error *err)
{
    shale_code rc =
        addf(out, err, "# HELP shale_%s%s_total %s, by %s.\n# TYPE shale_%s%s_total counter\n",
             what, suffix, help, lname, what, suffix);
    for (size_t i = 0; rc == SHALE_OK && i < n; i++) {
        char l[160];
        label(l, sizeof l, t[i].name);
        if (t[i].count > 0) {
            rc = addf(out, err, "shale_%s%s_total{%s=\"%s\"} %" PRIu64 "\n", what, suffix, lname, l,
                      errors ? t[i].errors : t[i].count);
        }
    }
    return rc;
}

static shale_code family(metrics *m, metrics_kind kind, shale_buf *out, shale_error *err)
{
    const char *what = kind == METRICS_HTTP ? "http_requests" : "resp_commands";
    const char *lname = kind == METRICS_HTTP ? "route" : "command";
    const char *dur = kind == METRICS_HTTP ? "http_request" : "resp_command";
    total *t = malloc((METRICS_MAX_SERIES + 1) * sizeof *t);
    if (t == NULL) {
        return err_set(err, SHALE_NOMEM, 0, "metrics: out of memory");
    }
    size_t n = totals(m, kind, t);
    shale_code rc = counters(out, t, n, what, "", "Requests served", lname, false, err);
    if (rc == SHALE_OK) {
        rc = counters(out, t, n, what, "_errors", "Requests answered with an error", lname, true,
                      err);
    }
    if (rc == SHALE_OK) {
        rc = addf(out, err,
                  "# HELP shale_%s_duration_seconds Time to serve a request, by %s.\n"
                  "# TYPE shale_%s_duration_seconds histogram\n",
                  dur, lname, dur);
    }
    for (size_t i = 0; rc == SHALE_OK && i < n; i++) {
        if (t[i].count == 0) {
            continue;
        }
        char l[160];
        label(l, sizeof l, t[i].name);
        uint64_t cum = 0;
        for (size_t b = 0; rc == SHALE_OK && b < NBUCKETS; b++) {
            cum += t[i].bucket[b];
            rc = addf(out, err,
                      "shale_%s_duration_seconds_bucket{%s=\"%s\",le=\"%g\"} %" PRIu64 "\n", dur,
                      lname, l, (double)bucket_us[b] / 1e6, cum);
        }
        if (rc == SHALE_OK) {
            rc = addf(out, err,
                      "shale_%s_duration_seconds_bucket{%s=\"%s\",le=\"+Inf\"} %" PRIu64 "\n"
                      "shale_%s_duration_seconds_sum{%s=\"%s\"} %.6f\n"
                      "shale_%s_duration_seconds_count{%s=\"%s\"} %" PRIu64 "\n",
                      dur, lname, l, t[i].count, dur, lname, l, (double)t[i].sum_us / 1e6, dur,
                      lname, l, t[i].count);
        }
    }
    free(t);
    return rc;
}

shale_code metrics_text(metrics *m, shale_db *db, shale_buf *out, shale_error *err)
{
    shale_code rc = family(m, METRICS_HTTP, out, err);
    if (rc == SHALE_OK) {
        rc = family(m, METRICS_RESP, out, err);
    }
    if (rc == SHALE_OK) {
        rc = addf(out, err,
                  "# HELP shale_connections Open client connections, by protocol.\n"
                  "# TYPE shale_connections gauge\n"
                  "shale_connections{protocol=\"http\"} %" PRId64 "\n"
                  "shale_connections{protocol=\"resp\"} %" PRId64 "\n"
                  "# HELP shale_connections_total Client connections accepted, by protocol.\n"
                  "# TYPE shale_connections_total counter\n"
                  "shale_connections_total{protocol=\"http\"} %" PRIu64 "\n"
                  "shale_connections_total{protocol=\"resp\"} %" PRIu64 "\n",
                  atomic_load(&m->conns[METRICS_HTTP]), atomic_load(&m->conns[METRICS_RESP]),
                  atomic_load(&m->conns_total[METRICS_HTTP]),
                  atomic_load(&m->conns_total[METRICS_RESP]));
    }
    shale_stats st;
    if (rc == SHALE_OK) {
        rc = shale_stats_get(db, &st, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } g[] = {
#define G(f, t, h) {#f, t, h, offsetof(shale_stats, f)}
        G(live_keys, "gauge", "Keys with a current value (an estimate once in tables)."),
        G(memory_bytes, "gauge", "Memory held by the memtables."),
        G(block_cache_bytes, "gauge", "Block cache usage."),
        G(block_cache_capacity, "gauge", "Block cache capacity."),
        G(table_bytes_on_disk, "gauge", "Bytes of sorted tables on disk."),
        G(log_bytes, "gauge", "Bytes of live log segments."),
        G(open_tables, "gauge", "Table readers open."),
        G(snapshots, "gauge", "Live snapshots."),
        G(txns_open, "gauge", "Open transactions."),
        G(writes, "counter", "Keys written since open."),
        G(reads, "counter", "Point reads since open."),
        G(batches, "counter", "Commits since open."),
        G(group_commits, "counter", "Log records carrying commits since open."),
        G(syncs, "counter", "Log fdatasyncs since open."),
        G(flushes, "counter", "Memtable flushes since open."),
        G(compactions, "counter", "Compactions since open."),
        G(block_cache_hits, "counter", "Block cache hits since open."),
        G(block_cache_misses, "counter", "Block cache misses since open."),
        G(txn_commits, "counter", "Transactions committed since open."),
        G(txn_conflicts, "counter", "Commits refused with a conflict since open."),
        G(expired_removed, "counter", "Expired keys removed by the sweeper since open."),
        G(flush_failures, "gauge", "Consecutive failed flush attempts now."),
        G(compaction_failures, "counter", "Failed compactions since open."),
#undef G
    };
    for (size_t i = 0; rc == SHALE_OK && i < sizeof g / sizeof g[0]; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&st + g[i].off, sizeof v);
        bool counter = strcmp(g[i].type, "counter") == 0;
        rc = addf(out, err, "# HELP shale_%s%s %s\n# TYPE shale_%s%s %s\nshale_%s%s %" PRIu64 "\n",
                  g[i].name, counter ? "_total" : "", g[i].help, g[i].name, counter ? "_total" : "",
                  g[i].type, g[i].name, counter ? "_total" : "", v);
    }
    if (rc == SHALE_OK) {
        rc = addf(out, err,
                  "# HELP shale_writes_stopped 1 when a failed write or sync made the database "
                  "refuse writes.\n# TYPE shale_writes_stopped gauge\nshale_writes_stopped %d\n",
                  st.writes_stopped ? 1 : 0);
    }
    if (rc == SHALE_OK) {
        rc = addf(out, err,
                  "# HELP shale_background_error 1 while a flush or compaction error is "
                  "unresolved.\n# TYPE shale_background_error gauge\nshale_background_error %d\n"
                  "# HELP shale_compactions_halted 1 when a compaction met damaged data (until "
                  "reopen).\n# TYPE shale_compactions_halted gauge\nshale_compactions_halted %d\n",
                  st.background_error ? 1 : 0, st.compactions_halted ? 1 : 0);
    }
    return rc;
}
