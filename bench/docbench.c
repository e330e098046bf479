/*
 * docbench: the document workloads of issue 5 on Shale (the shale_doc_* calls of shale.h) and on
 * SQLite's JSON functions, side by side in one run, each engine in its own child process, then
 * one table (workload x engine) with each engine's peak RSS, size on disk and run time.
 *
 *   docbench [--num N] [--db DIR] [--engines shale,sqlite] [--durability os|full]
 *            [--max-memory MB] [--seed S] [--reads N] [--queries N] [--scans N]
 *            [--max-seconds S] [--keep]
 *
 * The data. N documents of about 200 bytes, made deterministically from the seed, the k-th
 * (k = 0 .. N-1) always the same for a given seed:
 *   {"_id":"u0000001234","name":"Kate Oneill","age":42,"score":0.734512,"active":true,
 *    "city":"Glenbrook Falls","address":{"street":"1234 Maple Ave","zip":"01234"},
 *    "tags":["red","blue"]}
 * _id: client-supplied, "u" and k in 10 zero-padded digits; age: an int in 18 .. 90; score: a
 * double in [0, 1) printed with 6 decimals; city: one of 500 names (about N/500 documents each);
 * tags: 1 to 3 of 8 words. Documents are inserted in a random order (a permutation of 0 .. N-1
 * drawn from the seed), the same for both engines: ids arriving out of order is closer to real
 * use than an append-only load (and is the harder case for a B-tree; an LSM does not care).
 *
 * The workloads, in this order, on one database per engine (each reports its rate; the query
 * workloads also documents returned per second):
 *   insert       N documents in batches of 100 (the last may be smaller): Shale one
 *                shale_doc_insert_many call per batch (one transaction each); SQLite one
 *                BEGIN IMMEDIATE .. COMMIT per batch holding 100 INSERT statements. Same batching,
 *                same durability per commit. docs/s.
 *   index city   Shale shale_index_create(docs, "city"); SQLite CREATE INDEX ON
 *                docs(json_extract(doc, '$.city')). Timed; docs/s = N / seconds.
 *   index age    the same on "age".
 *   get by id    --reads random ids (all present): Shale shale_doc_get; SQLite
 *                SELECT doc FROM docs WHERE id = ?. Reads/s.
 *   find city    --queries queries, each a random city: the first page of 50 documents in _id
 *                order plus the total number of matches (about N/500). Shale: shale_doc_find with
 *                filter {"city": C} and limit 50 (find always computes "total" over every
 *                match, and returns the page sorted by _id). SQLite, in one read transaction
 *                (BEGIN .. COMMIT, so both statements see one snapshot, as Shale's find does):
 *                  SELECT count(*) FROM docs WHERE json_extract(doc,'$.city') = ?1
 *                  SELECT id, doc FROM docs WHERE json_extract(doc,'$.city') = ?1
 *                    ORDER BY id LIMIT 50
 *   find age     the same for a range on the indexed "age": {"age":{"$gte":a,"$lt":a+2}} with a
 *                random a in 18 .. 89 (about N/36 matches); SQLite json_extract(doc,'$.age') >= ?1
 *                AND json_extract(doc,'$.age') < ?2 in both statements.
 *   scan filter  --scans queries on the non-indexed "score": {"score":{"$gt":0.999}} (about
 *                N/1000 matches), the first 50 by _id plus the total: every document is read.
 *                SQLite json_extract(doc,'$.score') > 0.999 in both statements (no index).
 * The query workloads stop early after --max-seconds (the rate is then over the queries done).
 * Every query's page ids (in order) and total are hashed; under the table, per workload, the hash
 * over the first K queries that every engine ran, so a glance shows both engines returned the
 * same pages and totals.
 *
 * What each engine does for a query (each child prints its plans before the queries: Shale's
 * shale_doc_explain, SQLite's EXPLAIN QUERY PLAN):
 *   Shale   one snapshot; the planner counts the index entries of each usable condition (up to
 *           5,000: above that it scans the collection instead); then every candidate document is
 *           read by _id and checked against the whole filter (an index only narrows), counted for
 *           the total, and offered to a heap of the 51 smallest _ids; the 50 page documents are
 *           read again and printed as JSON.
 *   SQLite  count(*) walks the expression index and (3.40 does not treat an expression index as
 *           covering: the plan says USING INDEX, not COVERING INDEX) reads each row; the page
 *           walks the index again, reading rows (city: the index is in (value, id) order, so the
 *           first 50 rows end it; age: every row in the range goes into a temporary B-tree for
 *           ORDER BY id; score: the table is scanned in id order until 50 rows match).
 * The documents are returned as text: Shale's re-encoded from its binary form, SQLite's as stored.
 *
 * Durability, the same for both: os = Shale SHALE_DURABILITY_OS (each commit write()n to the log
 * before the call returns) and SQLite journal_mode=WAL with synchronous=NORMAL (each commit
 * write()s the WAL, synced only at checkpoints); full = Shale SHALE_DURABILITY_FULL (fdatasync
 * per commit) and SQLite WAL with synchronous=FULL (fsync per commit).
 *
 * Memory: --max-memory MB is Shale's max_memory_mb and SQLite's cache_size (-KiB, one
 * connection). SQLite's schema is its best for this data: CREATE TABLE docs(id TEXT PRIMARY KEY,
 * doc TEXT NOT NULL CHECK (json_valid(doc))) WITHOUT ROWID: the documents are stored in the
 * primary-key B-tree (no rowid indirection: a get is one B-tree descent, an expression-index
 * entry holds the id), and the CHECK makes SQLite reject invalid JSON as Shale does.
 *
 * Directory: --db DIR holds DIR/shale and DIR/sqlite (each emptied before its run, removed after
 * unless --keep); without --db a temporary directory under $TMPDIR (or /tmp) is used and removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shale.h"

#include "bench_compare.h"
#include "docgen.h"

#define COLL         "docs"
#define BATCH        100
#define PAGE         50
#define NCITIES      DOCGEN_CITIES
#define AGE_MIN      DOCGEN_AGE_MIN
#define AGE_MAX      DOCGEN_AGE_MAX
#define AGE_SPAN     2
#define SCORE_CUT    0.999
#define DOC_CAP      512
#define ID_CAP       DOCGEN_ID_CAP
#define MAX_ENGINES  2
#define MAX_QUERIES  1000000u
#define SCORE_FILTER "{\"score\":{\"$gt\":0.999}}"

/* ---- configuration ---- */

typedef struct config {
    uint64_t num;
    char db[PATH_MAX - 32];
    bool db_is_temp;
    bool keep;
    int engines[MAX_ENGINES]; /* indexes into engine_names */
    size_t nengines;
    bool full; /* --durability full */
    uint32_t max_memory_mb;
    uint64_t seed;
    uint64_t reads;
    uint64_t queries;
    uint64_t scans;
    double max_seconds;
} config;

static const char *const engine_names[MAX_ENGINES] = {"shale", "sqlite"};

/* ---- workloads and results ---- */

enum { W_INSERT, W_IDX_CITY, W_IDX_AGE, W_GET, W_CITY, W_AGE, W_SCAN, W_COUNT };
enum { Q_CITY, Q_AGE, Q_SCAN, Q_COUNT }; /* the query workloads */

static const char *const wl_names[W_COUNT] = {
    "insert", "index city", "index age", "get by id", "find city", "find age", "scan filter",
};

typedef struct wl_result {
    bool ran;
    double seconds;
    uint64_t ops;      /* docs inserted or indexed, gets, queries */
    uint64_t returned; /* documents returned (gets found, page documents) */
    uint64_t total;    /* sum of the queries' totals */
} wl_result;

/* What a child writes into the shared mapping: this, then Q_COUNT arrays of cap_queries
 * uint64_t: the running hash after each query. */
typedef struct eng_result {
    wl_result w[W_COUNT];
    bool have_disk;
    uint64_t disk_bytes;
    double avg_doc_bytes;
} eng_result;

/* ---- deterministic data: bench/docgen.h ---- */

/* One query: what it looks for. */
typedef struct doc_query {
    int kind; /* Q_* */
    char city[32];
    int age_lo; /* [age_lo, age_lo + AGE_SPAN) */
} doc_query;

static void make_query(int kind, docgen_rng *r, doc_query *q)
{
    memset(q, 0, sizeof *q);
    q->kind = kind;
    if (kind == Q_CITY) {
        docgen_city((uint32_t)docgen_below(r, NCITIES), q->city, sizeof q->city);
    } else if (kind == Q_AGE) {
        q->age_lo = AGE_MIN + (int)docgen_below(r, AGE_MAX - AGE_MIN);
    }
}

/* What a query returned. */
typedef struct qres {
    uint64_t total;
    uint64_t returned;
    uint64_t hash; /* FNV-1a over the page's ids, each followed by '\n' */
} qres;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ s[i]) * 0x100000001b3ULL;
    }
    return h;
}

#define FNV_START 0xcbf29ce484222325ULL

/* ---- engines ---- */

typedef struct engine_ops {
    const char *name;
    const char *marker; /* a file every database of the engine has */
    void *(*open)(const config *c, const char *dir, char *msg, size_t msglen);
    void (*describe)(void *h, const config *c);
    bool (*insert)(void *h, char *const *docs, const size_t *lens, char *const *ids, size_t n,
                   char *msg, size_t msglen);
    bool (*index)(void *h, const char *field, char *msg, size_t msglen);
    /* *found: the document was there. */
    bool (*get)(void *h, const char *id, bool *found, char *msg, size_t msglen);
    bool (*find)(void *h, const doc_query *q, qres *out, char *msg, size_t msglen);
    void (*explain)(void *h, const doc_query *q); /* prints the plan */
    void (*note)(void *h, const char *when);      /* prints the engine's state */
    bool (*close)(void *h, char *msg, size_t msglen);
} engine_ops;

/* -- Shale -- */

typedef struct sh {
    shale_db *db;
    shale_buf out;
    char filter[128];
} sh;

static bool sh_fail(char *msg, size_t msglen, const char *what, const shale_error *e)
{
    snprintf(msg, msglen, "%s: %s: %s", what, shale_strerror(e->code), e->msg);
    return false;
}

static void *sh_open(const config *c, const char *dir, char *msg, size_t msglen)
{
    sh *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    shale_options o = {
        .create_if_missing = true,
        .error_if_exists = true,
        .durability = c->full ? SHALE_DURABILITY_FULL : SHALE_DURABILITY_OS,
        .max_memory_mb = c->max_memory_mb,
    };
    shale_error e = {0};
    if (shale_open(dir, &o, &s->db, &e) != SHALE_OK) {
        sh_fail(msg, msglen, "shale_open", &e);
        free(s);
        return NULL;
    }
    return s;
}

static void sh_describe(void *h, const config *c)
{
    (void)h;
    printf("shale %s: collection \"%s\", max_memory_mb=%u, durability=%s; other options at "
           "their defaults\n",
           shale_version(), COLL, c->max_memory_mb, c->full ? "full" : "os");
}

static bool sh_insert(void *h, char *const *docs, const size_t *lens, char *const *ids, size_t n,
                      char *msg, size_t msglen)
{
    (void)ids;
    sh *s = h;
    shale_slice sl[BATCH];
    for (size_t i = 0; i < n; i++) {
        sl[i] = (shale_slice){docs[i], lens[i]};
    }
    shale_error e = {0};
    if (shale_doc_insert_many(s->db, COLL, sl, n, NULL, &e) != SHALE_OK) {
        return sh_fail(msg, msglen, "shale_doc_insert_many", &e);
    }
    return true;
}

static bool sh_index(void *h, const char *field, char *msg, size_t msglen)
{
    sh *s = h;
    shale_error e = {0};
    if (shale_index_create(s->db, COLL, field, &e) != SHALE_OK) {
        return sh_fail(msg, msglen, "shale_index_create", &e);
    }
    return true;
}

static bool sh_get(void *h, const char *id, bool *found, char *msg, size_t msglen)
{
    sh *s = h;
    shale_error e = {0};
    shale_code rc = shale_doc_get(s->db, COLL, (shale_slice){id, strlen(id)}, &s->out, &e);
    if (rc != SHALE_OK && rc != SHALE_NOT_FOUND) {
        return sh_fail(msg, msglen, "shale_doc_get", &e);
    }
    *found = rc == SHALE_OK;
    return true;
}

static size_t sh_filter(sh *s, const doc_query *q)
{
    int n = 0;
    switch (q->kind) {
    case Q_CITY:
        n = snprintf(s->filter, sizeof s->filter, "{\"city\":\"%s\"}", q->city);
        break;
    case Q_AGE:
        n = snprintf(s->filter, sizeof s->filter, "{\"age\":{\"$gte\":%d,\"$lt\":%d}}", q->age_lo,
                     q->age_lo + AGE_SPAN);
        break;
    default:
        n = snprintf(s->filter, sizeof s->filter, "%s", SCORE_FILTER);
        break;
    }
    return n < 0 ? 0 : (size_t)n;
}

/* Hashes the _id of every document in a find result and reads its total. */
static bool sh_parse(const shale_buf *b, qres *out)
{
    const char *p = b->data, *end = p + b->len;
    static const char idk[] = "\"_id\":", totk[] = "\"total\":";
    out->returned = 0;
    out->hash = FNV_START;
    for (;;) {
        const char *at = memmem(p, (size_t)(end - p), idk, sizeof idk - 1);
        if (at == NULL) {
            break;
        }
        p = at + sizeof idk - 1;
        while (p < end && *p == ' ') {
            p++;
        }
        if (p >= end || *p != '"') {
            return false;
        }
        const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (q == NULL) {
            return false;
        }
        out->hash = fnv(fnv(out->hash, p + 1, (size_t)(q - p - 1)), "\n", 1);
        out->returned++;
        p = q + 1;
    }
    /* "total" is the last member. */
    const char *t = NULL;
    for (const char *s = b->data; (s = memmem(s, (size_t)(end - s), totk, sizeof totk - 1)) != NULL;
         s += sizeof totk - 1) {
        t = s;
    }
    if (t == NULL) {
        return false;
    }
    out->total = strtoull(t + sizeof totk - 1, NULL, 10);
    return true;
}

static bool sh_find(void *h, const doc_query *q, qres *out, char *msg, size_t msglen)
{
    sh *s = h;
    size_t n = sh_filter(s, q);
    shale_doc_query dq = {.filter = {s->filter, n}, .limit = PAGE};
    shale_error e = {0};
    if (shale_doc_find(s->db, COLL, &dq, &s->out, &e) != SHALE_OK) {
        return sh_fail(msg, msglen, "shale_doc_find", &e);
    }
    if (!sh_parse(&s->out, out)) {
        snprintf(msg, msglen, "shale_doc_find: cannot read the result");
        return false;
    }
    return true;
}

static void sh_explain(void *h, const doc_query *q)
{
    sh *s = h;
    size_t n = sh_filter(s, q);
    shale_doc_query dq = {.filter = {s->filter, n}, .limit = PAGE};
    shale_error e = {0};
    if (shale_doc_explain(s->db, COLL, &dq, &s->out, &e) != SHALE_OK) {
        printf("  plan of %s: (explain failed: %s)\n", s->filter, e.msg);
        return;
    }
    printf("  plan of %s: %.*s\n", s->filter, (int)s->out.len, (const char *)s->out.data);
}

static void sh_note(void *h, const char *when)
{
    sh *s = h;
    shale_stats st;
    shale_error e = {0};
    if (shale_stats_get(s->db, &st, &e) != SHALE_OK) {
        printf("  state %s: (stats failed: %s)\n", when, e.msg);
        return;
    }
    printf("  state %s: tables per level", when);
    for (uint32_t l = 0; l < st.levels && l < 8; l++) {
        printf(" %" PRIu64, st.level_tables[l]);
    }
    printf(" (%.1f MiB), memtable %.1f MiB, block cache %.1f of %.1f MiB, hit rate %.3f, "
           "%" PRIu64 " flushes, %" PRIu64 " compactions, write amplification %.2f\n",
           (double)st.table_bytes_on_disk / 1048576.0, (double)st.memory_bytes / 1048576.0,
           (double)st.block_cache_bytes / 1048576.0, (double)st.block_cache_capacity / 1048576.0,
           st.block_cache_hit_rate, st.flushes, st.compactions, st.write_amplification);
}

static bool sh_close(void *h, char *msg, size_t msglen)
{
    sh *s = h;
    shale_error e = {0};
    bool ok = shale_close(s->db, &e) == SHALE_OK;
    if (!ok) {
        sh_fail(msg, msglen, "shale_close", &e);
    }
    shale_buf_free(&s->out);
    free(s);
    return ok;
}

/* -- SQLite -- */

enum {
    S_BEGIN_W,
    S_BEGIN_R,
    S_COMMIT,
    S_INSERT,
    S_GET,
    S_CITY_COUNT,
    S_CITY_PAGE,
    S_AGE_COUNT,
    S_AGE_PAGE,
    S_SCAN_COUNT,
    S_SCAN_PAGE,
    S_COUNT
};

#define J_CITY  "json_extract(doc,'$.city')"
#define J_AGE   "json_extract(doc,'$.age')"
#define J_SCORE "json_extract(doc,'$.score')"
#define W_CITYQ " FROM docs WHERE " J_CITY " = ?1"
#define W_AGEQ  " FROM docs WHERE " J_AGE " >= ?1 AND " J_AGE " < ?2"
#define W_SCANQ " FROM docs WHERE " J_SCORE " > ?1"
#define PAGE_Q  " ORDER BY id LIMIT 50"

static const char *const sql_text[S_COUNT] = {
    [S_BEGIN_W] = "BEGIN IMMEDIATE",
    [S_BEGIN_R] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_INSERT] = "INSERT INTO docs(id, doc) VALUES(?1, ?2)",
    [S_GET] = "SELECT doc FROM docs WHERE id = ?1",
    [S_CITY_COUNT] = "SELECT count(*)" W_CITYQ,
    [S_CITY_PAGE] = "SELECT id, doc" W_CITYQ PAGE_Q,
    [S_AGE_COUNT] = "SELECT count(*)" W_AGEQ,
    [S_AGE_PAGE] = "SELECT id, doc" W_AGEQ PAGE_Q,
    [S_SCAN_COUNT] = "SELECT count(*)" W_SCANQ,
    [S_SCAN_PAGE] = "SELECT id, doc" W_SCANQ PAGE_Q,
};

typedef struct sq {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    long long cache_kib;
} sq;

static bool sq_fail(sq *s, char *msg, size_t msglen, const char *what)
{
    snprintf(msg, msglen, "%s: %s", what, sqlite3_errmsg(s->db));
    return false;
}

static bool sq_exec(sq *s, const char *sql, char *msg, size_t msglen)
{
    char *em = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &em) != SQLITE_OK) {
        snprintf(msg, msglen, "%s: %s", sql, em != NULL ? em : "?");
        sqlite3_free(em);
        return false;
    }
    return true;
}

/* The statement, prepared on first use (the query statements after their index exists). */
static sqlite3_stmt *sq_stmt(sq *s, int i, char *msg, size_t msglen)
{
    if (s->st[i] == NULL && sqlite3_prepare_v3(s->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT,
                                               &s->st[i], NULL) != SQLITE_OK) {
        sq_fail(s, msg, msglen, sql_text[i]);
        return NULL;
    }
    return s->st[i];
}

/* Runs a statement that returns no rows. */
static bool sq_run(sq *s, int i, char *msg, size_t msglen)
{
    sqlite3_stmt *st = sq_stmt(s, i, msg, msglen);
    if (st == NULL) {
        return false;
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        return sq_fail(s, msg, msglen, sql_text[i]);
    }
    return true;
}

static void *sq_open(const config *c, const char *dir, char *msg, size_t msglen)
{
    sq *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/docs.sqlite", dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(msg, msglen, "mkdir %s: %s", dir, strerror(errno));
        free(s);
        return NULL;
    }
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(msg, msglen, "sqlite3_open_v2 %s: %s", path,
                 s->db != NULL ? sqlite3_errmsg(s->db) : "out of memory");
        sqlite3_close(s->db);
        free(s);
        return NULL;
    }
    s->cache_kib = (long long)c->max_memory_mb * 1024;
    char pragma[96];
    snprintf(pragma, sizeof pragma, "PRAGMA cache_size=-%lld", s->cache_kib);
    if (!sq_exec(s, "PRAGMA journal_mode=WAL", msg, msglen) ||
        !sq_exec(s, c->full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", msg,
                 msglen) ||
        !sq_exec(s, pragma, msg, msglen) ||
        !sq_exec(s,
                 "CREATE TABLE docs(id TEXT PRIMARY KEY, doc TEXT NOT NULL CHECK "
                 "(json_valid(doc))) WITHOUT ROWID",
                 msg, msglen)) {
        sqlite3_close(s->db);
        free(s);
        return NULL;
    }
    return s;
}

static void sq_describe(void *h, const config *c)
{
    sq *s = h;
    printf("sqlite %s: CREATE TABLE docs(id TEXT PRIMARY KEY, doc TEXT NOT NULL CHECK "
           "(json_valid(doc))) WITHOUT ROWID; journal_mode=WAL, synchronous=%s, "
           "cache_size=-%lld (KiB), one connection\n",
           sqlite3_libversion(), c->full ? "FULL" : "NORMAL", s->cache_kib);
}

static bool sq_insert(void *h, char *const *docs, const size_t *lens, char *const *ids, size_t n,
                      char *msg, size_t msglen)
{
    sq *s = h;
    sqlite3_stmt *ins = sq_stmt(s, S_INSERT, msg, msglen);
    if (ins == NULL || !sq_run(s, S_BEGIN_W, msg, msglen)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_text(ins, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, docs[i], (int)lens[i], SQLITE_STATIC);
        int rc = sqlite3_step(ins);
        sqlite3_reset(ins);
        if (rc != SQLITE_DONE) {
            sq_fail(s, msg, msglen, "INSERT");
            (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return false;
        }
    }
    sqlite3_clear_bindings(ins);
    return sq_run(s, S_COMMIT, msg, msglen);
}

static bool sq_index(void *h, const char *field, char *msg, size_t msglen)
{
    sq *s = h;
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE INDEX docs_%s ON docs(json_extract(doc,'$.%s'))", field,
             field);
    return sq_exec(s, sql, msg, msglen);
}

static bool sq_get(void *h, const char *id, bool *found, char *msg, size_t msglen)
{
    sq *s = h;
    sqlite3_stmt *st = sq_stmt(s, S_GET, msg, msglen);
    if (st == NULL) {
        return false;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    if (*found) {
        /* Materialize the text, as Shale copies the document out. */
        (void)sqlite3_column_text(st, 0);
        (void)sqlite3_column_bytes(st, 0);
        rc = sqlite3_step(st);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        return sq_fail(s, msg, msglen, "SELECT doc");
    }
    return true;
}

static void sq_bind(sqlite3_stmt *st, const doc_query *q)
{
    switch (q->kind) {
    case Q_CITY:
        sqlite3_bind_text(st, 1, q->city, -1, SQLITE_STATIC);
        break;
    case Q_AGE:
        sqlite3_bind_int(st, 1, q->age_lo);
        sqlite3_bind_int(st, 2, q->age_lo + AGE_SPAN);
        break;
    default:
        sqlite3_bind_double(st, 1, SCORE_CUT);
        break;
    }
}

static bool sq_find(void *h, const doc_query *q, qres *out, char *msg, size_t msglen)
{
    sq *s = h;
    int ci = S_CITY_COUNT + 2 * q->kind, pi = ci + 1;
    sqlite3_stmt *cs = sq_stmt(s, ci, msg, msglen);
    sqlite3_stmt *ps = cs != NULL ? sq_stmt(s, pi, msg, msglen) : NULL;
    if (ps == NULL || !sq_run(s, S_BEGIN_R, msg, msglen)) {
        return false;
    }
    bool ok = true;
    sq_bind(cs, q);
    if (sqlite3_step(cs) == SQLITE_ROW) {
        out->total = (uint64_t)sqlite3_column_int64(cs, 0);
    } else {
        ok = sq_fail(s, msg, msglen, sql_text[ci]);
    }
    sqlite3_reset(cs);
    out->returned = 0;
    out->hash = FNV_START;
    if (ok) {
        sq_bind(ps, q);
        int rc;
        while ((rc = sqlite3_step(ps)) == SQLITE_ROW) {
            const unsigned char *id = sqlite3_column_text(ps, 0);
            int idn = sqlite3_column_bytes(ps, 0);
            (void)sqlite3_column_text(ps, 1);
            (void)sqlite3_column_bytes(ps, 1);
            out->hash = fnv(fnv(out->hash, id, (size_t)idn), "\n", 1);
            out->returned++;
        }
        if (rc != SQLITE_DONE) {
            ok = sq_fail(s, msg, msglen, sql_text[pi]);
        }
        sqlite3_reset(ps);
    }
    if (!sq_run(s, S_COMMIT, msg, msglen)) {
        ok = false;
    }
    return ok;
}

static void sq_explain(void *h, const doc_query *q)
{
    sq *s = h;
    int ci = S_CITY_COUNT + 2 * q->kind;
    for (int i = ci; i <= ci + 1; i++) {
        char sql[512];
        snprintf(sql, sizeof sql, "EXPLAIN QUERY PLAN %s", sql_text[i]);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
            printf("  plan of %s: (%s)\n", sql_text[i], sqlite3_errmsg(s->db));
            continue;
        }
        sq_bind(st, q);
        printf("  plan of %s:", sql_text[i]);
        while (sqlite3_step(st) == SQLITE_ROW) {
            printf(" [%s]", (const char *)sqlite3_column_text(st, 3));
        }
        printf("\n");
        sqlite3_finalize(st);
    }
}

static void sq_note(void *h, const char *when)
{
    sq *s = h;
    int cur = 0, hi = 0, hit = 0, miss = 0;
    sqlite3_db_status(s->db, SQLITE_DBSTATUS_CACHE_USED, &cur, &hi, 0);
    sqlite3_db_status(s->db, SQLITE_DBSTATUS_CACHE_HIT, &hit, &hi, 0);
    sqlite3_db_status(s->db, SQLITE_DBSTATUS_CACHE_MISS, &miss, &hi, 0);
    long long pages = 0, psize = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT page_count, page_size FROM pragma_page_count, "
                           "pragma_page_size",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        pages = sqlite3_column_int64(st, 0);
        psize = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    printf("  state %s: %lld pages of %lld bytes (%.1f MiB), page cache %.1f MiB used, "
           "%d hits, %d misses\n",
           when, pages, psize, (double)(pages * psize) / 1048576.0, (double)cur / 1048576.0, hit,
           miss);
}

static bool sq_close(void *h, char *msg, size_t msglen)
{
    sq *s = h;
    for (int i = 0; i < S_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
    }
    bool ok = sqlite3_close(s->db) == SQLITE_OK;
    if (!ok) {
        sq_fail(s, msg, msglen, "sqlite3_close");
    }
    free(s);
    return ok;
}

static const engine_ops engines[MAX_ENGINES] = {
    {"shale", "SHALE", sh_open, sh_describe, sh_insert, sh_index, sh_get, sh_find, sh_explain,
     sh_note, sh_close},
    {"sqlite", "docs.sqlite", sq_open, sq_describe, sq_insert, sq_index, sq_get, sq_find,
     sq_explain, sq_note, sq_close},
};

/* ---- files ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    int rc = (flag == FTW_DP || flag == FTW_D) ? rmdir(path) : unlink(path);
    if (rc != 0 && errno != ENOENT) {
        fprintf(stderr, "docbench: cannot remove %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void remove_tree(const char *path)
{
    (void)nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Empties dir for a new database of engine e: refuses to delete files that are not one (no marker
 * file), so a mistyped --db cannot wipe anything else. */
static bool reset_dir(const char *dir, const engine_ops *e)
{
    struct stat st;
    char marker[PATH_MAX + 32];
    if (stat(dir, &st) != 0) {
        return errno == ENOENT;
    }
    snprintf(marker, sizeof marker, "%s/%s", dir, e->marker);
    if (stat(marker, &st) != 0 && rmdir(dir) != 0) {
        fprintf(stderr, "docbench: %s holds files but no %s database; refusing to delete them\n",
                dir, e->name);
        return false;
    }
    remove_tree(dir);
    return true;
}

static uint64_t tree_sum;

static int sum_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F && S_ISREG(sb->st_mode)) {
        tree_sum += (uint64_t)sb->st_size;
    }
    return 0;
}

static uint64_t dir_bytes(const char *path)
{
    tree_sum = 0;
    (void)nftw(path, sum_entry, 16, FTW_PHYS);
    return tree_sum;
}

/* ---- the child: one engine's run ---- */

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A rate: grouped, with decimals below 100 so that a slow one still shows. */
static const char *rate(char *out, size_t len, double v)
{
    if (v > 0 && v < 100) {
        snprintf(out, len, v < 10 ? "%.2f" : "%.1f", v);
        return out;
    }
    return compare_group(out, len, v);
}

static void report(const char *name, const wl_result *w, const char *unit)
{
    char a[32], b[32];
    printf("%-12s : %s %s in %.2f s: %s %s/s\n", name, compare_group(a, sizeof a, (double)w->ops),
           unit, w->seconds, rate(b, sizeof b, w->seconds > 0 ? (double)w->ops / w->seconds : 0),
           unit);
    fflush(stdout);
}

static bool do_insert(const config *c, const engine_ops *e, void *h, wl_result *w,
                      double *avg_bytes, char *msg, size_t msglen)
{
    uint32_t *perm = malloc(c->num * sizeof *perm);
    char *store = malloc((size_t)BATCH * DOC_CAP);
    char *idstore = malloc((size_t)BATCH * ID_CAP);
    if (perm == NULL || store == NULL || idstore == NULL) {
        free(perm);
        free(store);
        free(idstore);
        snprintf(msg, msglen, "out of memory");
        return false;
    }
    /* The insertion order: a permutation drawn from the seed. */
    docgen_rng r = {docgen_mix64(c->seed ^ 0x5eed)};
    for (uint64_t i = 0; i < c->num; i++) {
        perm[i] = (uint32_t)i;
    }
    for (uint64_t i = c->num; i > 1; i--) {
        uint64_t j = docgen_below(&r, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    char *docs[BATCH], *ids[BATCH];
    size_t lens[BATCH];
    for (size_t i = 0; i < BATCH; i++) {
        docs[i] = store + i * DOC_CAP;
        ids[i] = idstore + i * ID_CAP;
    }
    uint64_t bytes = 0;
    bool ok = true;
    double t0 = now_sec();
    for (uint64_t at = 0; ok && at < c->num; at += BATCH) {
        size_t n = c->num - at < BATCH ? (size_t)(c->num - at) : BATCH;
        for (size_t i = 0; i < n; i++) {
            lens[i] = docgen_make(c->seed, perm[at + i], docs[i], DOC_CAP, ids[i]);
            bytes += lens[i];
        }
        ok = e->insert(h, docs, lens, ids, n, msg, msglen);
    }
    w->seconds = now_sec() - t0;
    w->ops = c->num;
    w->ran = ok;
    *avg_bytes = c->num > 0 ? (double)bytes / (double)c->num : 0;
    free(perm);
    free(store);
    free(idstore);
    return ok;
}

static bool do_index(const config *c, const engine_ops *e, void *h, const char *field, wl_result *w,
                     char *msg, size_t msglen)
{
    double t0 = now_sec();
    bool ok = e->index(h, field, msg, msglen);
    w->seconds = now_sec() - t0;
    w->ops = c->num;
    w->ran = ok;
    return ok;
}

static bool do_get(const config *c, const engine_ops *e, void *h, wl_result *w, char *msg,
                   size_t msglen)
{
    docgen_rng r = {docgen_mix64(c->seed ^ 0x6e7)};
    char id[ID_CAP];
    bool ok = true;
    double t0 = now_sec();
    for (uint64_t i = 0; ok && i < c->reads; i++) {
        bool found = false;
        snprintf(id, sizeof id, "u%010" PRIu64, docgen_below(&r, c->num));
        ok = e->get(h, id, &found, msg, msglen);
        w->returned += found;
    }
    w->seconds = now_sec() - t0;
    w->ops = c->reads;
    w->ran = ok;
    return ok;
}

/* Runs up to `count` queries of a kind (stopping after max_seconds), recording the running hash
 * after each in hashes[]. */
static bool do_queries(const config *c, const engine_ops *e, void *h, int kind, uint64_t count,
                       wl_result *w, uint64_t *hashes, char *msg, size_t msglen)
{
    docgen_rng r = {docgen_mix64(c->seed ^ (0x9000 + (uint64_t)kind))};
    uint64_t running = FNV_START;
    bool ok = true;
    double t0 = now_sec(), t = t0;
    uint64_t i = 0;
    for (; ok && i < count; i++) {
        doc_query q;
        qres res = {0};
        make_query(kind, &r, &q);
        ok = e->find(h, &q, &res, msg, msglen);
        if (!ok) {
            break;
        }
        w->returned += res.returned;
        w->total += res.total;
        running = docgen_mix64(running ^ res.hash) ^ res.total;
        hashes[i] = running;
        t = now_sec();
        if (t - t0 >= c->max_seconds) {
            i++;
            break;
        }
    }
    w->seconds = t - t0;
    w->ops = i;
    w->ran = ok;
    return ok;
}

static void report_query(const char *name, const wl_result *w)
{
    char a[32], b[32], d[32], f[32];
    double s = w->seconds > 0 ? w->seconds : 1e-9;
    printf("%-12s : %s queries in %.2f s: %s queries/s, %s docs returned/s (avg total %s)\n", name,
           compare_group(a, sizeof a, (double)w->ops), w->seconds,
           rate(b, sizeof b, (double)w->ops / s), rate(d, sizeof d, (double)w->returned / s),
           compare_group(f, sizeof f, w->ops > 0 ? (double)w->total / (double)w->ops : 0));
    fflush(stdout);
}

static int child_run(const config *c, int ei, eng_result *out, uint64_t *hashes, uint64_t cap)
{
    const engine_ops *e = &engines[ei];
    char dir[PATH_MAX], msg[512] = "";
    snprintf(dir, sizeof dir, "%s/%s", c->db, e->name);
    if (!reset_dir(dir, e)) {
        return 1;
    }
    void *h = e->open(c, dir, msg, sizeof msg);
    if (h == NULL) {
        fprintf(stderr, "%s: %s\n", e->name, msg);
        return 1;
    }
    e->describe(h, c);
    fflush(stdout);
    bool ok = do_insert(c, e, h, &out->w[W_INSERT], &out->avg_doc_bytes, msg, sizeof msg);
    if (ok) {
        report("insert", &out->w[W_INSERT], "docs");
        printf("%-12s : %.1f bytes of JSON per document on average\n", "", out->avg_doc_bytes);
        ok = do_index(c, e, h, "city", &out->w[W_IDX_CITY], msg, sizeof msg);
    }
    if (ok) {
        report("index city", &out->w[W_IDX_CITY], "docs");
        ok = do_index(c, e, h, "age", &out->w[W_IDX_AGE], msg, sizeof msg);
    }
    if (ok) {
        report("index age", &out->w[W_IDX_AGE], "docs");
        ok = do_get(c, e, h, &out->w[W_GET], msg, sizeof msg);
    }
    if (ok) {
        char a[32];
        report("get by id", &out->w[W_GET], "reads");
        printf("%-12s : %s found\n", "",
               compare_group(a, sizeof a, (double)out->w[W_GET].returned));
        e->note(h, "before the queries");
        /* How each engine runs the queries (Shale's explain runs the query to count). */
        docgen_rng r = {docgen_mix64(c->seed ^ 0x9000)};
        doc_query q;
        for (int k = 0; k < Q_COUNT; k++) {
            make_query(k, &r, &q);
            e->explain(h, &q);
        }
        fflush(stdout);
    }
    static const int wl_of[Q_COUNT] = {W_CITY, W_AGE, W_SCAN};
    for (int k = 0; ok && k < Q_COUNT; k++) {
        uint64_t count = k == Q_SCAN ? c->scans : c->queries;
        ok = do_queries(c, e, h, k, count, &out->w[wl_of[k]], hashes + (size_t)k * cap, msg,
                        sizeof msg);
        if (ok) {
            report_query(wl_names[wl_of[k]], &out->w[wl_of[k]]);
        }
    }
    if (ok) {
        e->note(h, "after the queries");
    } else {
        fprintf(stderr, "%s: %s\n", e->name, msg);
    }
    char cmsg[512] = "";
    if (!e->close(h, cmsg, sizeof cmsg)) {
        fprintf(stderr, "%s: %s\n", e->name, cmsg);
        ok = false;
    }
    out->disk_bytes = dir_bytes(dir);
    out->have_disk = true;
    if (!c->keep) {
        remove_tree(dir);
    }
    return ok ? 0 : 1;
}

/* ---- the parent ---- */

typedef struct child_info {
    bool ok;
    long maxrss_kib;
    double seconds;
} child_info;

static bool run_child(const config *c, int ei, eng_result *shared, uint64_t *hashes, uint64_t cap,
                      child_info *info)
{
    fflush(stdout);
    fflush(stderr);
    double t0 = now_sec();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "docbench: fork: %s\n", strerror(errno));
        return false;
    }
    if (pid == 0) {
        int st = child_run(c, ei, shared, hashes, cap);
        fflush(stdout);
        fflush(stderr);
        _exit(st);
    }
    int st = 0;
    struct rusage ru;
    pid_t got;
    memset(&ru, 0, sizeof ru);
    do {
        got = wait4(pid, &st, 0, &ru);
    } while (got < 0 && errno == EINTR);
    info->seconds = now_sec() - t0;
    info->ok = got == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    info->maxrss_kib = ru.ru_maxrss;
    if (got == pid && WIFSIGNALED(st)) {
        printf("(%s: killed by signal %d)\n", engine_names[ei], WTERMSIG(st));
    } else if (!info->ok) {
        printf("(%s: exit status %d)\n", engine_names[ei], got == pid ? WEXITSTATUS(st) : -1);
    }
    return true;
}

static void cell_rate(char *cell, size_t len, const wl_result *w, uint64_t n, bool failed)
{
    if (!w->ran) {
        snprintf(cell, len, "%s", failed ? "failed" : "n/a");
    } else {
        rate(cell, len, w->seconds > 0 ? (double)n / w->seconds : 0);
    }
}

static void print_table(const config *c, const eng_result *res, const child_info *info,
                        const uint64_t *const *hashes, uint64_t cap)
{
    size_t ne = c->nengines;
    char cell[64];
    printf("\n%" PRIu64 " documents (%.0f bytes of JSON on average), durability %s, max memory "
           "%u MiB, seed %" PRIu64 "; rates per second, one round.\n\n",
           c->num, res[0].avg_doc_bytes, c->full ? "full" : "os", c->max_memory_mb, c->seed);
    printf("| workload |");
    for (size_t i = 0; i < ne; i++) {
        printf(" %s |", engine_names[c->engines[i]]);
    }
    printf("\n|---|");
    for (size_t i = 0; i < ne; i++) {
        printf("---:|");
    }
    printf("\n");
    static const char *const rows[] = {
        "insert (docs/s)",
        "create index city (docs/s)",
        "create index age (docs/s)",
        "get by id (reads/s)",
    };
    for (int w = W_INSERT; w <= W_GET; w++) {
        printf("| %s |", rows[w]);
        for (size_t i = 0; i < ne; i++) {
            cell_rate(cell, sizeof cell, &res[i].w[w], res[i].w[w].ops, !info[i].ok);
            printf(" %s |", cell);
        }
        printf("\n");
    }
    printf("| create index city, age (s) |");
    for (size_t i = 0; i < ne; i++) {
        printf(" %.1f, %.1f |", res[i].w[W_IDX_CITY].seconds, res[i].w[W_IDX_AGE].seconds);
    }
    printf("\n");
    static const char *const qrows[Q_COUNT] = {
        "find city = C, limit 50 + total",
        "find age in [a, a+2), limit 50 + total",
        "scan filter score > 0.999, limit 50 + total",
    };
    for (int k = 0; k < Q_COUNT; k++) {
        int w = W_CITY + k;
        printf("| %s (queries/s) |", qrows[k]);
        for (size_t i = 0; i < ne; i++) {
            cell_rate(cell, sizeof cell, &res[i].w[w], res[i].w[w].ops, !info[i].ok);
            printf(" %s |", cell);
        }
        printf("\n| %s (docs returned/s) |", qrows[k]);
        for (size_t i = 0; i < ne; i++) {
            cell_rate(cell, sizeof cell, &res[i].w[w], res[i].w[w].returned, !info[i].ok);
            printf(" %s |", cell);
        }
        printf("\n");
    }
    printf("| peak RSS (MiB) |");
    for (size_t i = 0; i < ne; i++) {
        printf(" %.0f |", (double)info[i].maxrss_kib / 1024.0);
    }
    printf("\n| size on disk (MiB) |");
    for (size_t i = 0; i < ne; i++) {
        printf(" %.1f |", (double)res[i].disk_bytes / 1048576.0);
    }
    printf("\n| run time (s) |");
    for (size_t i = 0; i < ne; i++) {
        printf(" %.0f |", info[i].seconds);
    }
    printf("\n\n");

    /* The same answers? Over the first K queries every engine ran. */
    bool all_same = true;
    printf("Answers: get by id found");
    uint64_t found0 = res[0].w[W_GET].returned;
    for (size_t i = 0; i < ne; i++) {
        char a[32];
        printf(" %s %s%s", engine_names[c->engines[i]],
               compare_group(a, sizeof a, (double)res[i].w[W_GET].returned), i + 1 < ne ? "," : "");
        all_same = all_same && res[i].w[W_GET].returned == found0;
    }
    printf(" of %" PRIu64 "\n", c->reads);
    for (int k = 0; k < Q_COUNT; k++) {
        int w = W_CITY + k;
        uint64_t kmin = UINT64_MAX;
        for (size_t i = 0; i < ne; i++) {
            kmin = res[i].w[w].ops < kmin ? res[i].w[w].ops : kmin;
        }
        if (kmin == 0 || kmin == UINT64_MAX) {
            printf("  %s: no queries to compare\n", wl_names[w]);
            all_same = false;
            continue;
        }
        printf("  %s, first %" PRIu64 " queries: result hash", wl_names[w], kmin);
        uint64_t h0 = hashes[0][(size_t)k * cap + kmin - 1];
        for (size_t i = 0; i < ne; i++) {
            uint64_t hv = hashes[i][(size_t)k * cap + kmin - 1];
            printf(" %s %016" PRIx64 "%s", engine_names[c->engines[i]], hv, i + 1 < ne ? "," : "");
            all_same = all_same && hv == h0;
        }
        printf("\n");
    }
    printf("%s\n", all_same ? "Every engine returned the same documents and totals."
                            : "THE ENGINES' ANSWERS DIFFER.");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: docbench [--num N] [--db DIR] [--engines shale,sqlite] "
               "[--durability os|full]\n"
               "                [--max-memory MB] [--seed S] [--reads N] [--queries N] "
               "[--scans N]\n"
               "                [--max-seconds S] [--keep]\n"
               "  --num N          documents to insert (default 1000000)\n"
               "  --reads N        gets by random id (default 100000)\n"
               "  --queries N      find city and find age queries each (default 1000)\n"
               "  --scans N        full-scan filter queries (default 10)\n"
               "  --max-seconds S  stop a query workload after S seconds (default 60)\n"
               "  --keep           keep the databases under DIR\n");
}

static bool parse_u64(const char *flag, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi || s[0] == '-') {
        fprintf(stderr, "docbench: %s %s: expected a number in %" PRIu64 " .. %" PRIu64 "\n", flag,
                s, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

static int parse_engines(config *c, const char *list)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", list);
    c->nengines = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        int found = -1;
        for (int i = 0; i < MAX_ENGINES; i++) {
            if (strcmp(t, engine_names[i]) == 0) {
                found = i;
            }
        }
        if (found < 0 || c->nengines == MAX_ENGINES) {
            fprintf(stderr,
                    "docbench: --engines: unknown or repeated engine '%s' (shale, sqlite)\n", t);
            return 2;
        }
        for (size_t i = 0; i < c->nengines; i++) {
            if (c->engines[i] == found) {
                fprintf(stderr, "docbench: --engines: '%s' twice\n", t);
                return 2;
            }
        }
        c->engines[c->nengines++] = found;
    }
    if (c->nengines == 0) {
        fprintf(stderr, "docbench: --engines: empty list\n");
        return 2;
    }
    return 0;
}

static int parse_args(config *c, int argc, char **argv)
{
    *c = (config){.num = 1000000,
                  .full = false,
                  .max_memory_mb = 256,
                  .seed = 42,
                  .reads = 100000,
                  .queries = 1000,
                  .scans = 10,
                  .max_seconds = 60};
    c->engines[0] = 0;
    c->engines[1] = 1;
    c->nengines = 2;
    const char *db = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--keep") == 0) {
            c->keep = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "docbench: %s: missing value or unknown flag\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        uint64_t x = 0;
        if (strcmp(a, "--num") == 0) {
            if (!parse_u64(a, v, 1, UINT32_MAX, &c->num)) {
                return 2;
            }
        } else if (strcmp(a, "--db") == 0) {
            db = v;
        } else if (strcmp(a, "--engines") == 0) {
            if (parse_engines(c, v) != 0) {
                return 2;
            }
        } else if (strcmp(a, "--durability") == 0) {
            if (strcmp(v, "os") != 0 && strcmp(v, "full") != 0) {
                fprintf(stderr, "docbench: --durability %s: expected os or full\n", v);
                return 2;
            }
            c->full = strcmp(v, "full") == 0;
        } else if (strcmp(a, "--max-memory") == 0) {
            if (!parse_u64(a, v, 4, 1048576, &x)) {
                return 2;
            }
            c->max_memory_mb = (uint32_t)x;
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_u64(a, v, 0, UINT64_MAX, &c->seed)) {
                return 2;
            }
        } else if (strcmp(a, "--reads") == 0) {
            if (!parse_u64(a, v, 1, UINT64_MAX / 2, &c->reads)) {
                return 2;
            }
        } else if (strcmp(a, "--queries") == 0) {
            if (!parse_u64(a, v, 1, MAX_QUERIES, &c->queries)) {
                return 2;
            }
        } else if (strcmp(a, "--scans") == 0) {
            if (!parse_u64(a, v, 1, MAX_QUERIES, &c->scans)) {
                return 2;
            }
        } else if (strcmp(a, "--max-seconds") == 0) {
            if (!parse_u64(a, v, 1, 86400, &x)) {
                return 2;
            }
            c->max_seconds = (double)x;
        } else {
            fprintf(stderr, "docbench: unknown flag %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (db != NULL) {
        if (strlen(db) >= sizeof c->db) {
            fprintf(stderr, "docbench: --db: path too long\n");
            return 2;
        }
        snprintf(c->db, sizeof c->db, "%s", db);
        if (mkdir(c->db, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "docbench: --db %s: cannot create: %s\n", c->db, strerror(errno));
            return 2;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        if (tmp == NULL || *tmp == '\0') {
            tmp = "/tmp";
        }
        int n = snprintf(c->db, sizeof c->db, "%s/docbench-XXXXXX", tmp);
        if (n < 0 || (size_t)n >= sizeof c->db || mkdtemp(c->db) == NULL) {
            fprintf(stderr, "docbench: cannot create a temporary directory under %s: %s\n", tmp,
                    strerror(errno));
            return 2;
        }
        c->db_is_temp = true;
    }
    return 0;
}

int main(int argc, char **argv)
{
    config c;
    int rc = parse_args(&c, argc, argv);
    if (rc != 0) {
        return rc;
    }
    uint64_t cap = c.queries > c.scans ? c.queries : c.scans;
    size_t per = sizeof(eng_result) + (size_t)Q_COUNT * cap * sizeof(uint64_t);
    per = (per + 63) & ~(size_t)63;
    unsigned char *shared =
        mmap(NULL, per * c.nengines, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        fprintf(stderr, "docbench: mmap: %s\n", strerror(errno));
        return 1;
    }
    printf("docbench: %" PRIu64 " documents, batches of %d, durability %s, max memory %u MiB, "
           "seed %" PRIu64 ", %" PRIu64 " reads, %" PRIu64 " queries, %" PRIu64
           " scans, at most %.0f s per query workload, in %s\n",
           c.num, BATCH, c.full ? "full" : "os", c.max_memory_mb, c.seed, c.reads, c.queries,
           c.scans, c.max_seconds, c.db);
    double load[3];
    if (getloadavg(load, 3) == 3) {
        /* Other processes on the machine skew every rate: say how busy it was. */
        printf("load averages %.2f %.2f %.2f (1, 5, 15 min) at the start\n", load[0], load[1],
               load[2]);
    }
    eng_result res[MAX_ENGINES];
    child_info info[MAX_ENGINES];
    const uint64_t *hashes[MAX_ENGINES];
    int status = 0;
    memset(info, 0, sizeof info);
    memset(res, 0, sizeof res);
    for (size_t i = 0; i < c.nengines; i++) {
        eng_result *er = (eng_result *)(void *)(shared + i * per);
        uint64_t *hs = (uint64_t *)(void *)(shared + i * per + sizeof(eng_result));
        hashes[i] = hs;
        printf("\n== %s ==\n", engine_names[c.engines[i]]);
        if (!run_child(&c, c.engines[i], er, hs, cap, &info[i]) || !info[i].ok) {
            status = 1;
        }
        res[i] = *er;
        printf("%-12s : peak RSS %.1f MiB; %.1f MiB on disk; %.1f s in all\n", "process",
               (double)info[i].maxrss_kib / 1024.0, (double)res[i].disk_bytes / 1048576.0,
               info[i].seconds);
    }
    print_table(&c, res, info, hashes, cap);
    if (getloadavg(load, 3) == 3) {
        printf("load averages %.2f %.2f %.2f (1, 5, 15 min) at the end\n", load[0], load[1],
               load[2]);
    }
    if (c.db_is_temp) {
        remove_tree(c.db);
    }
    munmap(shared, per * c.nengines);
    return status;
}
