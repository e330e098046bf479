/*
 * corrupt_campaign: systematic damage to every kind of file Shale keeps (issue 7), counted.
 *
 * One template per test process: a database written at FULL durability with tables on two levels
 * (a compacted bottom level and two level-0 flushes), a document collection with a secondary
 * index (in a table), a live log tail of single FULL puts spread over several segments (so each
 * record after the first of a segment is preceded by a sync marker, wal_format.h), a manifest of
 * several edits, and a backup destination with two incremental backups. The database is left as
 * a crash leaves it (tu_close_as_crash), so its log holds the tail.
 *
 * For each file kind x damage kind x seed: copy the pristine files, damage one file, then try
 *   database: read-only open + gets of every key + a full scan + document gets and an indexed
 *             query; `shale check` ($SHALE_BIN; always when nothing failed yet, else for a
 *             sample); a normal open + the same reads;
 *   backups:  shale_backup_list, shale_backup_verify(0), shale_restore of each backup (and the
 *             restored data against the pristine restore), `shale backup verify` (sample, or when
 *             nothing failed), and, when still nothing failed, a new shale_backup into it.
 * Damage kinds: flip 1..8 random bits; truncate (a random length, or one time in four a fragment
 * boundary of a log or manifest); zero a random range; swap two equal-size ranges (32 KiB log
 * blocks one time in three); overwrite a range with random bytes.
 *
 * Classes (each case lands in exactly one):
 *   nochange  the damaged bytes equal the pristine ones (zeros over zeros, equal ranges swapped):
 *             not a damage, not tested.
 *   detected  a step failed with a message naming the damaged file.
 *   unnamed   a step failed, but no message named the file (a finding, reported; not fatal).
 *   torn      live log only: the damage starts in bytes no later intact sync marker covers
 *             (the last record, or everything after a damaged marker), open cut it as a torn
 *             tail and said so (stats.truncated_bytes > 0), and every record before the damage
 *             reads back. By design: a damaged last record cannot be told from a torn write
 *             (wal_format.h). Manifest: the final record damaged, ignored as torn, `shale check`
 *             notes it, and nothing is lost (docs/ARCHITECTURE.md section 15).
 *   boundary  a truncation exactly at a fragment boundary of the live log or the manifest: the
 *             file is byte for byte what a crash before the lost appends leaves, so nothing can
 *             tell; the data must be that state (the log's prefix; the manifest's older state,
 *             whole thanks to the kept files).
 *   unused    bytes only the format ignores (the zero padding at a 32 KiB log block's end) or a
 *             log segment the manifest already covers (kept one edit longer, never replayed):
 *             every read must still answer as the model says.
 *   wrong     a read returned data outside every allowed state without an error, whether or
 *             not another step then failed (fatal): e.g. an open that falls back to an older
 *             manifest state and answers stale values.
 *   missed    nothing noticed and no class above explains it, or the live log was cut as a torn
 *             tail although an intact sync marker after the damage proves it had been synced
 *             (fatal).
 * A crash (or an ASan report) kills the test process; the case being run is printed first.
 *
 * SHALE_CAMPAIGN_SCALE multiplies the seeds. SHALE_CORRUPT_CASE="kind:damage:seed" (names as in
 * the report, e.g. "live-log:zero:17") runs that one case, prints what it did and keeps its
 * directories: the reproducer of a finding.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shale.h"

#include "corrupt_util.h"
#include "testutil.h"
#include "wal/wal_format.h"

#define NK      1200 /* key-value keys "key%012d" */
#define NTAIL   300  /* single FULL puts/deletes left in the live log */
#define NDOCS   60
#define SEGMENT (64u * 1024)
#define COLL    "people"

/* ---- crash breadcrumb ------------------------------------------------------------------------ */

static char g_case[512];

static void say_case(void)
{
    static const char pre[] = "\ncorrupt_campaign: crashed in case: ";
    ssize_t w = write(2, pre, sizeof pre - 1);
    w = write(2, g_case, strlen(g_case));
    w = write(2, "\n", 1);
    (void)w;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CC_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CC_ASAN 1
#endif

#ifdef CC_ASAN
void __asan_set_death_callback(void (*callback)(void));
#else
static void on_signal(int sig)
{
    say_case();
    signal(sig, SIG_DFL);
    raise(sig);
}
#endif

static void install_breadcrumb(void)
{
#ifdef CC_ASAN
    __asan_set_death_callback(say_case);
#else
    signal(SIGSEGV, on_signal);
    signal(SIGBUS, on_signal);
    signal(SIGABRT, on_signal);
    signal(SIGFPE, on_signal);
#endif
}

/* ---- small file helpers ------------------------------------------------------------------------
 */

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_geq(n, 0);
    rewind(f);
    uint8_t *p = malloc((size_t)n + 1);
    cr_assert_not_null(p);
    cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n, "read %s", path);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void write_all(const char *path, const uint8_t *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(p, 1, len, f), len, "write %s", path);
    cr_assert_eq(fclose(f), 0);
}

/* cp -r of regular files and directories. */
static void copy_tree(const char *from, const char *to)
{
    DIR *d = opendir(from);
    struct dirent *e;

    cr_assert_not_null(d, "opendir %s", from);
    cr_assert(mkdir(to, 0700) == 0 || errno == EEXIST, "mkdir %s", to);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char *a = tu_path(from, e->d_name), *b = tu_path(to, e->d_name);
        struct stat st;
        cr_assert_eq(lstat(a, &st), 0, "%s", a);
        if (S_ISDIR(st.st_mode)) {
            copy_tree(a, b);
        } else if (S_ISREG(st.st_mode)) {
            size_t n;
            uint8_t *p = read_all(a, &n);
            write_all(b, p, n);
            free(p);
        }
        free(a);
        free(b);
    }
    closedir(d);
}

/* Whether `msg` names `needle` as a file: not glued to a longer name on either side. */
static bool names_file(const char *msg, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = msg; (p = strstr(p, needle)) != NULL; p++) {
        char before = p == msg ? ' ' : p[-1];
        char after = p[n];
        bool word = (before == ' ' || before == '/' || before == '"' || before == '\'' ||
                     before == '(' || before == '\t');
        bool end = !((after >= 'A' && after <= 'Z') || (after >= 'a' && after <= 'z') ||
                     (after >= '0' && after <= '9') || after == '_' || after == '-');
        if (word && end) {
            return true;
        }
    }
    return false;
}

/* ---- the model ----------------------------------------------------------------------------- */

static shale_slice val(char *buf, int k, int gen, size_t min_len)
{
    int n = snprintf(buf, 48, "g%d:k%d:", gen, k);
    uint64_t h = tu_mix64((uint64_t)k * 1000003u + (uint64_t)gen);
    size_t len = min_len + (size_t)(h % (min_len + 1));
    for (size_t i = (size_t)n; i < len; i++) {
        if (i % 16 == 0) {
            h = tu_mix64(h);
        }
        buf[i] = "0123456789abcdef"[(h >> ((i % 16) * 4)) & 15];
    }
    return (shale_slice){buf, len};
}

#define VMAX 2048
static size_t min_len_of(int gen)
{
    return gen >= 100 ? 400 : 60;
}

typedef struct tail_op {
    int key;
    int gen; /* 0: delete */
    int seg; /* index into tmpl.segs */
    uint64_t start, end;
} tail_op;

typedef struct unit_mark {
    bool has;         /* a sync marker in one FULL fragment begins the unit */
    uint64_t at, len; /* its bytes */
} unit_mark;

typedef struct seginfo {
    char name[32];
    uint8_t *bytes; /* pristine */
    size_t len;
    /* fragment boundaries and padding, from walking the pristine framing */
    uint64_t *bounds;
    size_t nbounds;
    uint64_t *pad_lo, *pad_hi;
    size_t npad;
} seginfo;

typedef struct tmpl {
    char *root, *src, *dest, *work, *wdest, *rdir;
    shale_options o;
    int base_gen[NK];
    uint64_t base_exp[NK];
    tail_op ops[NTAIL];
    unit_mark marks[NTAIL];
    seginfo segs[16]; /* tail segments in order; the last is the live one */
    size_t nsegs;
    seginfo manifest;
    char kept[8][32]; /* log segments the last flush covered (kept one edit longer) */
    size_t nkept;
    char tables[32][32];
    size_t ntables;
    char bk_tables[32][48];
    size_t nbk_tables;
    char bk_small[16][48];
    size_t nbk_small;
    /* golden document reads and document-key hash, from the pristine copy */
    char *doc_json[NDOCS];
    char *find_json;
    uint64_t doc_keys_hash;
    uint64_t bk_hash[3]; /* scan hash of the pristine restore of backup 1 and 2 */
    uint64_t deadline;
    bool manifest_noted; /* `shale check` of the pristine copy notes the manifest */
} tmpl;

static void walk_framing(seginfo *s)
{
    size_t cap = 64;
    s->bounds = malloc(cap * sizeof *s->bounds);
    s->pad_lo = malloc(64 * sizeof *s->pad_lo);
    s->pad_hi = malloc(64 * sizeof *s->pad_hi);
    cr_assert(s->bounds && s->pad_lo && s->pad_hi);
    uint64_t pos = 0;
    s->nbounds = 0;
    s->npad = 0;
    while (pos < s->len) {
        if (s->nbounds == cap) {
            cap *= 2;
            s->bounds = realloc(s->bounds, cap * sizeof *s->bounds);
            cr_assert_not_null(s->bounds);
        }
        s->bounds[s->nbounds++] = pos;
        uint64_t room = WAL_BLOCK_SIZE - pos % WAL_BLOCK_SIZE;
        if (room < WAL_HEADER_SIZE) {
            cr_assert_lt(s->npad, 64);
            s->pad_lo[s->npad] = pos;
            s->pad_hi[s->npad++] = pos + room;
            pos += room;
            continue;
        }
        cr_assert_leq(pos + WAL_HEADER_SIZE, s->len, "%s: torn pristine framing", s->name);
        uint32_t flen = (uint32_t)s->bytes[pos + 4] | (uint32_t)s->bytes[pos + 5] << 8;
        pos += WAL_HEADER_SIZE + flen;
    }
    cr_assert_eq(pos, s->len, "%s: pristine framing does not end at the file end", s->name);
}

static void load_seg(seginfo *s, const char *dir, const char *name)
{
    if (s->name != name) {
        snprintf(s->name, sizeof s->name, "%s", name);
    }
    char *p = tu_path(dir, s->name);
    s->bytes = read_all(p, &s->len);
    free(p);
    walk_framing(s);
}

static void free_seg(seginfo *s)
{
    free(s->bytes);
    free(s->bounds);
    free(s->pad_lo);
    free(s->pad_hi);
}

static bool in_padding(const seginfo *s, uint64_t off)
{
    for (size_t i = 0; i < s->npad; i++) {
        if (off >= s->pad_lo[i] && off < s->pad_hi[i]) {
            return true;
        }
    }
    return false;
}

static bool is_bound(const seginfo *s, uint64_t off)
{
    for (size_t i = 0; i < s->nbounds; i++) {
        if (s->bounds[i] == off) {
            return true;
        }
    }
    return off == s->len;
}

/* ---- building the template ------------------------------------------------------------------- */

static void ok(shale_code rc, const shale_error *err, const char *what)
{
    cr_assert_eq(rc, SHALE_OK, "setup: %s: %s (%s)", what, shale_strerror(rc), err->msg);
}

static void batch_put(shale_batch *b, int k, int gen, uint64_t exp)
{
    char kb[17], vb[VMAX];
    shale_error err;
    shale_slice v = val(vb, k, gen, min_len_of(gen));
    shale_code rc = exp ? shale_batch_put_ttl(b, tu_key(kb, (uint64_t)k), v, exp, &err)
                        : shale_batch_put(b, tu_key(kb, (uint64_t)k), v, &err);
    ok(rc, &err, "batch put");
}

static void commit(shale_db *db, shale_batch *b)
{
    shale_error err;
    ok(shale_write(db, NULL, b, &err), &err, "write");
    shale_batch_clear(b);
}

static int seg_index(tmpl *t, const char *name)
{
    for (size_t i = 0; i < t->nsegs; i++) {
        if (strcmp(t->segs[i].name, name) == 0) {
            return (int)i;
        }
    }
    cr_assert_lt(t->nsegs, 16);
    snprintf(t->segs[t->nsegs].name, sizeof t->segs[0].name, "%s", name);
    return (int)t->nsegs++;
}

static void tail_write(tmpl *t, shale_db *db, int i)
{
    tail_op *op = &t->ops[i];
    char kb[17], vb[VMAX];
    shale_error err;

    if (i % 8 == 3) {
        op->key = (i * 37) % 1000;
        op->gen = 0;
    } else if (i % 8 == 5) {
        op->key = (i * 53) % 1000;
        op->gen = 100 + i;
    } else {
        op->key = 1000 + i % 200;
        op->gen = 100 + i;
    }
    char *before = cu_newest_log(t->src);
    uint64_t start = 0;
    if (before != NULL) {
        char *p = tu_path(t->src, before);
        start = (uint64_t)tu_file_size(p);
        free(p);
    }
    shale_code rc = op->gen == 0 ? shale_delete(db, NULL, tu_key(kb, (uint64_t)op->key), &err)
                                 : shale_put(db, NULL, tu_key(kb, (uint64_t)op->key),
                                             val(vb, op->key, op->gen, min_len_of(op->gen)), &err);
    ok(rc, &err, "tail write");
    char *after = cu_newest_log(t->src);
    cr_assert_not_null(after);
    if (before != NULL && strcmp(before, after) != 0) {
        /* The log rolls once a segment passes its size: after the record (the new segment holds
         * only its header) or before it (the record opens the new segment). */
        char *np = tu_path(t->src, after);
        bool empty = tu_file_size(np) == WAL_HEADER_SIZE + WAL_SEGMENT_HEADER_LEN;
        free(np);
        if (empty) {
            free(after);
            after = strdup(before);
        } else {
            start = WAL_HEADER_SIZE + WAL_SEGMENT_HEADER_LEN;
        }
    } else if (before == NULL) {
        start = WAL_HEADER_SIZE + WAL_SEGMENT_HEADER_LEN;
    }
    char *p = tu_path(t->src, after);
    op->start = start;
    op->end = (uint64_t)tu_file_size(p);
    op->seg = seg_index(t, after);
    cr_assert_gt(op->end, op->start);
    free(p);
    free(before);
    free(after);
}

/* Folds one entry (key, value, deadline) into the FNV-1a hash h. */
static uint64_t fnv_entry(uint64_t h, shale_slice key, shale_slice value, uint64_t expire_at_ms)
{
    h = cu_fnv(h, &key.len, sizeof key.len);
    h = cu_fnv(h, key.data, key.len);
    h = cu_fnv(h, &value.len, sizeof value.len);
    h = cu_fnv(h, value.data, value.len);
    return cu_fnv(h, &expire_at_ms, sizeof expire_at_ms);
}

/* Whether key is a document key (documents store under the 0x00 0xD0 prefix). */
static bool is_doc_key(shale_slice key)
{
    return key.len >= 2 && ((const uint8_t *)key.data)[0] == 0x00 &&
           ((const uint8_t *)key.data)[1] == 0xD0;
}

/* Hash of a full scan (keys, values, deadlines); SHALE_OK or the iterator's error. */
static shale_code scan_hash(shale_db *db, uint64_t *out, size_t *count, shale_error *err)
{
    shale_iter *it = NULL;
    shale_code rc = shale_iter_new(db, NULL, &it, err);
    uint64_t h = CU_FNV_INIT;
    size_t n = 0;
    if (rc != SHALE_OK) {
        return rc;
    }
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice k = shale_iter_key(it), v = shale_iter_value(it);
        h = fnv_entry(h, k, v, shale_iter_info(it).expire_at_ms);
        n++;
    }
    rc = shale_iter_status(it, err);
    shale_iter_free(it);
    *out = h;
    *count = n;
    return rc;
}

static const char *find_filter = "{\"age\":{\"$gte\":20}}";

static void build(tmpl *t)
{
    shale_db *db = NULL;
    shale_error err;
    shale_batch *b = shale_batch_new();

    cr_assert_not_null(b);
    memset(t, 0, sizeof *t);
    t->root = tu_tmpdir("corrupt-campaign");
    t->src = tu_path(t->root, "db");
    t->dest = tu_path(t->root, "bk");
    t->work = tu_path(t->root, "w");
    t->wdest = tu_path(t->root, "wbk");
    t->rdir = tu_path(t->root, "r");
    t->o = (shale_options){
        .create_if_missing = true,
        .durability = SHALE_DURABILITY_FULL,
        .max_memory_mb = 8,
        .write_buffer_bytes = 1024 * 1024, /* no automatic flush: the flushes are ours */
        .table_bytes = 64 * 1024,          /* several tables per level */
        .wal_segment_bytes = SEGMENT,      /* the tail spans several segments */
        .l0_compaction_trigger = 8,        /* no automatic compaction */
        .flush_idle_ms = 3600000,
        .ttl_sweep_interval_ms = 3600000,
    };
    t->deadline = (uint64_t)time(NULL) * 1000 + 24 * 3600 * 1000ull;
    ok(shale_open(t->src, &t->o, &db, &err), &err, "open");

    /* Phase A: keys 0..899, some with a deadline; flushed and compacted to the bottom level. */
    for (int k = 0; k < 900; k++) {
        t->base_gen[k] = 1;
        t->base_exp[k] = k % 50 == 0 ? t->deadline : 0;
        batch_put(b, k, 1, t->base_exp[k]);
        if (k % 50 == 49) {
            commit(db, b);
        }
    }
    ok(shale_flush(db, &err), &err, "flush A");
    ok(shale_compact(db, &err), &err, "compact");
    shale_backup_info bi;
    ok(shale_backup(db, t->dest, &bi, &err), &err, "backup 1");

    /* Phase B: overwrites, deletes and new keys (a level-0 table), then documents with an index
     * (another level-0 table). */
    for (int k = 0; k < 1000; k++) {
        char kb[17];
        if (k < 900 && k % 7 == 1) {
            ok(shale_batch_delete(b, tu_key(kb, (uint64_t)k), &err), &err, "batch delete");
            t->base_gen[k] = 0;
            t->base_exp[k] = 0;
        } else if ((k < 900 && k % 3 == 0) || k >= 900) {
            t->base_gen[k] = 2;
            t->base_exp[k] = 0;
            batch_put(b, k, 2, 0);
        }
        if (k % 50 == 49) {
            commit(db, b);
        }
    }
    commit(db, b);
    ok(shale_flush(db, &err), &err, "flush B");
    ok(shale_index_create(db, COLL, "age", &err), &err, "index create");
    for (int i = 0; i < NDOCS; i++) {
        char js[256];
        snprintf(js, sizeof js,
                 "{\"_id\":\"p%03d\",\"name\":\"name-%d\",\"age\":%d,\"tags\":[\"t%d\",\"u\"],"
                 "\"nested\":{\"x\":%d.5,\"ok\":%s}}",
                 i, i, 18 + i % 40, i % 5, i, i % 2 ? "true" : "false");
        ok(shale_doc_insert(db, COLL, tu_str(js), NULL, &err), &err, "doc insert");
    }
    for (int i = 0; i < NDOCS; i += 6) {
        char id[8], patch[64];
        snprintf(id, sizeof id, "p%03d", i);
        snprintf(patch, sizeof patch, "{\"age\":%d,\"new\":null}", 70 + i);
        ok(shale_doc_update(db, COLL, tu_str(id), tu_str(patch), NULL, &err), &err, "doc update");
    }
    for (int i = 7; i < NDOCS; i += 10) {
        char id[8];
        snprintf(id, sizeof id, "p%03d", i);
        ok(shale_doc_delete(db, COLL, tu_str(id), &err), &err, "doc delete");
    }
    ok(shale_flush(db, &err), &err, "flush docs");
    ok(shale_backup(db, t->dest, &bi, &err), &err, "backup 2");
    cr_assert_gt(bi.files, bi.new_files, "setup: backup 2 is not incremental");

    /* The segments the last flush covered stay one edit longer; the tail starts a new one. */
    size_t n = 0;
    char **names = tu_list_dir(t->src, &n);
    for (size_t i = 0; i < n && t->nkept < 8; i++) {
        if (tu_is_numbered(names[i], "log")) {
            snprintf(t->kept[t->nkept++], 32, "%s", names[i]);
        }
    }
    tu_free_names(names, n);

    /* Phase C: the live log tail, one FULL write per record. */
    for (int i = 0; i < NTAIL; i++) {
        tail_write(t, db, i);
    }
    shale_batch_free(b);
    tu_close_as_crash(db, t->src);

    /* The kept segments: those that existed before the tail and that it did not write to. */
    size_t kept = 0;
    for (size_t i = 0; i < t->nkept; i++) {
        bool tail = false;
        for (size_t j = 0; j < t->nsegs; j++) {
            tail |= strcmp(t->kept[i], t->segs[j].name) == 0;
        }
        if (!tail) {
            memmove(t->kept[kept++], t->kept[i], 32);
        }
    }
    t->nkept = kept;
    cr_assert_geq(t->nsegs, 3, "setup: the tail spans %zu segments", t->nsegs);
    char *live = cu_newest_log(t->src);
    cr_assert_str_eq(live, t->segs[t->nsegs - 1].name, "setup: the last write rolled the log");
    free(live);
    for (size_t i = 0; i < t->nsegs; i++) {
        load_seg(&t->segs[i], t->src, t->segs[i].name);
    }
    /* Which units begin with a sync marker (one FULL fragment of kind WAL_REC_SYNCED). */
    for (int i = 0; i < NTAIL; i++) {
        const seginfo *s = &t->segs[t->ops[i].seg];
        uint64_t at = t->ops[i].start;
        if (WAL_BLOCK_SIZE - at % WAL_BLOCK_SIZE < WAL_HEADER_SIZE) {
            at += WAL_BLOCK_SIZE - at % WAL_BLOCK_SIZE;
        }
        if (at + WAL_HEADER_SIZE + WAL_SYNC_MARK_LEN <= s->len &&
            s->bytes[at + 6] == WAL_FRAG_FULL && s->bytes[at + 4] == WAL_SYNC_MARK_LEN &&
            s->bytes[at + 5] == 0 && s->bytes[at + 7] == WAL_REC_SYNCED) {
            t->marks[i] = (unit_mark){true, at, WAL_HEADER_SIZE + WAL_SYNC_MARK_LEN};
        }
    }

    /* Files by kind. */
    names = tu_list_dir(t->src, &n);
    for (size_t i = 0; i < n; i++) {
        if (tu_is_numbered(names[i], "sst")) {
            cr_assert_lt(t->ntables, 32);
            snprintf(t->tables[t->ntables++], 32, "%s", names[i]);
        } else if (strncmp(names[i], "MANIFEST-", 9) == 0) {
            load_seg(&t->manifest, t->src, names[i]);
        }
    }
    tu_free_names(names, n);
    cr_assert_geq(t->ntables, 4, "setup: %zu tables", t->ntables);
    cr_assert_gt(t->manifest.len, 0);
    char *bt = tu_path(t->dest, "tables");
    names = tu_list_dir(bt, &n);
    for (size_t i = 0; i < n && t->nbk_tables < 32; i++) {
        snprintf(t->bk_tables[t->nbk_tables++], 48, "tables/%s", names[i]);
    }
    tu_free_names(names, n);
    free(bt);
    for (int id = 1; id <= 2; id++) {
        char d[16];
        snprintf(d, sizeof d, "%06d", id);
        char *bd = tu_path(t->dest, d);
        names = tu_list_dir(bd, &n);
        for (size_t i = 0; i < n && t->nbk_small < 16; i++) {
            if (strcmp(names[i], "BACKUP") != 0) {
                snprintf(t->bk_small[t->nbk_small++], 48, "%s/%s", d, names[i]);
            }
        }
        tu_free_names(names, n);
        free(bd);
    }
    cr_assert_gt(t->nbk_tables, 0);
    cr_assert_geq(t->nbk_small, 6);
}

static void free_tmpl(tmpl *t, bool keep)
{
    if (!keep) {
        tu_rm_rf(t->root);
    }
    for (size_t i = 0; i < t->nsegs; i++) {
        free_seg(&t->segs[i]);
    }
    free_seg(&t->manifest);
    for (int i = 0; i < NDOCS; i++) {
        free(t->doc_json[i]);
    }
    free(t->find_json);
    free(t->root);
    free(t->src);
    free(t->dest);
    free(t->work);
    free(t->wdest);
    free(t->rdir);
}

/* ---- reading a database against the model ---------------------------------------------------- */

enum { O_ABSENT, O_PRESENT, O_ERROR, O_GARBAGE };

typedef struct obs {
    uint8_t st[NK];
    int gen[NK];
    uint64_t exp[NK];
} obs;

typedef struct readout {
    bool failed;        /* some call returned an error */
    bool named;         /* ... whose message named the damaged file */
    char msg[300];      /* the first error */
    bool doc_wrong;     /* a document read answered differently without an error */
    bool foreign;       /* the scan returned a key that is neither ours nor a document key */
    bool disagree;      /* get and scan disagree on a key, both without error */
    bool scan_ok;       /* the scan ran to its end */
    obs get, scan;      /* what gets and the scan saw */
    uint64_t truncated; /* stats.truncated_bytes after the open */
} readout;

static void note_err(readout *r, shale_code rc, const shale_error *err, const char *needle,
                     const char *what)
{
    if (!r->failed) {
        snprintf(r->msg, sizeof r->msg, "%s: %s: %.200s", what, shale_strerror(rc), err->msg);
    }
    r->failed = true;
    if (names_file(err->msg, needle)) {
        r->named = true;
    }
}

/* Classifies a value read for key k. */
static void classify_value(obs *o, int k, const void *data, size_t len, uint64_t exp)
{
    char head[48], vb[VMAX];
    int g = -1, kk = -1;
    tu_head(head, sizeof head, data, len);
    if (sscanf(head, "g%d:k%d:", &g, &kk) == 2 && kk == k && g > 0) {
        shale_slice w = val(vb, k, g, min_len_of(g));
        if (w.len == len && memcmp(w.data, data, len) == 0) {
            o->st[k] = O_PRESENT;
            o->gen[k] = g;
            o->exp[k] = exp;
            return;
        }
    }
    o->st[k] = O_GARBAGE;
}

static int key_index(shale_slice k)
{
    char buf[17];
    if (k.len != 16 || memcmp(k.data, "key", 3) != 0) {
        return -1;
    }
    memcpy(buf, k.data, 16);
    buf[16] = '\0';
    char *end;
    unsigned long long v = strtoull(buf + 3, &end, 10);
    if (*end != '\0' || v >= NK) {
        return -2;
    }
    return (int)v;
}

static void read_db(const tmpl *t, shale_db *db, const char *needle, readout *r)
{
    shale_error err;
    shale_buf v = {0};
    shale_stats st;

    if (shale_stats_get(db, &st, &err) == SHALE_OK) {
        r->truncated = st.truncated_bytes;
    }
    for (int k = 0; k < NK; k++) {
        char kb[17];
        shale_entry_info info;
        shale_code rc = shale_get_info(db, NULL, tu_key(kb, (uint64_t)k), &v, &info, &err);
        if (rc == SHALE_OK) {
            classify_value(&r->get, k, v.data, v.len, info.expire_at_ms);
        } else if (rc == SHALE_NOT_FOUND) {
            r->get.st[k] = O_ABSENT;
        } else {
            r->get.st[k] = O_ERROR;
            note_err(r, rc, &err, needle, "get");
        }
    }
    /* The full scan: every key ours or a document key, document keys hashed. */
    shale_iter *it = NULL;
    shale_code rc = shale_iter_new(db, NULL, &it, &err);
    if (rc != SHALE_OK) {
        note_err(r, rc, &err, needle, "iter_new");
    } else {
        uint64_t h = CU_FNV_INIT;
        for (int k = 0; k < NK; k++) {
            r->scan.st[k] = O_ABSENT;
        }
        for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
            shale_slice key = shale_iter_key(it), value = shale_iter_value(it);
            int k = key_index(key);
            if (k >= 0) {
                classify_value(&r->scan, k, value.data, value.len,
                               shale_iter_info(it).expire_at_ms);
            } else if (is_doc_key(key)) {
                h = fnv_entry(h, key, value, shale_iter_info(it).expire_at_ms);
            } else {
                r->foreign = true;
            }
        }
        rc = shale_iter_status(it, &err);
        shale_iter_free(it);
        if (rc != SHALE_OK) {
            note_err(r, rc, &err, needle, "scan");
        } else {
            r->scan_ok = true;
            if (t->doc_keys_hash != 0 && h != t->doc_keys_hash) {
                r->doc_wrong = true;
            }
            for (int k = 0; k < NK; k++) {
                if (r->get.st[k] == O_ERROR) {
                    continue;
                }
                if (r->get.st[k] != r->scan.st[k] ||
                    (r->get.st[k] == O_PRESENT &&
                     (r->get.gen[k] != r->scan.gen[k] || r->get.exp[k] != r->scan.exp[k]))) {
                    r->disagree = true;
                }
            }
        }
    }
    /* Documents: every id, and a query through the index. */
    for (int i = 0; i < NDOCS; i++) {
        char id[8];
        snprintf(id, sizeof id, "p%03d", i);
        rc = shale_doc_get(db, COLL, tu_str(id), &v, &err);
        if (rc == SHALE_OK || rc == SHALE_NOT_FOUND) {
            const char *want = t->doc_json[i];
            bool same = rc == SHALE_NOT_FOUND ? want == NULL
                                              : want != NULL && v.len == strlen(want) &&
                                                    memcmp(v.data, want, v.len) == 0;
            if (!same && t->find_json != NULL) {
                r->doc_wrong = true;
            }
        } else {
            note_err(r, rc, &err, needle, "doc_get");
        }
    }
    shale_doc_query q = {.filter = tu_str(find_filter), .sort = tu_str("age"), .limit = 1000};
    rc = shale_doc_find(db, COLL, &q, &v, &err);
    if (rc == SHALE_OK) {
        if (t->find_json != NULL &&
            (v.len != strlen(t->find_json) || memcmp(v.data, t->find_json, v.len) != 0)) {
            r->doc_wrong = true;
        }
    } else {
        note_err(r, rc, &err, needle, "doc_find");
    }
    shale_buf_free(&v);
}

/* Does `o` (ignoring keys that failed) equal the state after the first k tail writes? Fills
 * match[0..NTAIL] for every k at once. */
static void match_states(const tmpl *t, const obs *o, bool *match)
{
    int gen[NK];
    uint64_t exp[NK];
    int bad = 0;
    memcpy(gen, t->base_gen, sizeof gen);
    memcpy(exp, t->base_exp, sizeof exp);
#define KEY_BAD(k)                                                                                 \
    (o->st[k] == O_ERROR ? 0                                                                       \
     : o->st[k] == O_GARBAGE                                                                       \
         ? 1                                                                                       \
         : (gen[k] == 0 ? o->st[k] != O_ABSENT                                                     \
                        : (o->st[k] != O_PRESENT || o->gen[k] != gen[k] || o->exp[k] != exp[k])))
    for (int k = 0; k < NK; k++) {
        bad += KEY_BAD(k);
    }
    match[0] = bad == 0;
    for (int i = 0; i < NTAIL; i++) {
        int k = t->ops[i].key;
        bad -= KEY_BAD(k);
        gen[k] = t->ops[i].gen;
        exp[k] = 0;
        bad += KEY_BAD(k);
        match[i + 1] = bad == 0;
    }
#undef KEY_BAD
}

/* The tail states a read-out is consistent with: bit k set in states[] for each k. Returns false
 * if it is consistent with none. */
static bool states_of(const tmpl *t, const readout *r, bool *states)
{
    bool g[NTAIL + 1], s[NTAIL + 1];
    bool any = false;
    match_states(t, &r->get, g);
    if (r->scan_ok) {
        match_states(t, &r->scan, s);
    }
    for (int k = 0; k <= NTAIL; k++) {
        states[k] = g[k] && (!r->scan_ok || s[k]);
        any |= states[k];
    }
    return any;
}

/* ---- damage --------------------------------------------------------------------------------- */

enum dkind { D_FLIP, D_TRUNC, D_ZERO, D_SWAP, D_RANDOM, NDAMAGE };
static const char *const dnames[NDAMAGE] = {"flip", "truncate", "zero", "swap", "random"};

typedef struct damage {
    char what[160];
    size_t old_len, new_len;
    uint64_t first; /* first changed offset (new_len when only cut) */
} damage;

static size_t range_len(tu_rng *r, size_t room)
{
    size_t cap = tu_rng_below(r, 3) == 0 ? 64 : 4096;
    if (cap > room) {
        cap = room;
    }
    return 1 + (size_t)tu_rng_below(r, cap);
}

/* Damages the file at `path` (seg: its pristine framing, or NULL); returns false when the file
 * is empty (nothing to damage). */
static bool apply_damage(const char *path, int dk, tu_rng *r, const seginfo *seg, damage *d)
{
    size_t len;
    uint8_t *p = read_all(path, &len);
    size_t n = len;
    int w = 0;

    memset(d, 0, sizeof *d);
    d->old_len = len;
    if (len == 0) {
        free(p);
        return false;
    }
    switch (dk) {
    case D_FLIP: {
        int bits = 1 + (int)tu_rng_below(r, 8);
        w = snprintf(d->what, sizeof d->what, "flip");
        for (int i = 0; i < bits; i++) {
            uint64_t off = tu_rng_below(r, len);
            int bit = (int)tu_rng_below(r, 8);
            p[off] ^= (uint8_t)(1u << bit);
            if (w < (int)sizeof d->what - 24) {
                w +=
                    snprintf(d->what + w, sizeof d->what - (size_t)w, " @%" PRIu64 ".%d", off, bit);
            }
        }
        break;
    }
    case D_TRUNC:
        if (seg != NULL && seg->nbounds > 1 && tu_rng_below(r, 4) == 0) {
            n = (size_t)seg->bounds[1 + tu_rng_below(r, seg->nbounds - 1)];
            snprintf(d->what, sizeof d->what, "truncate to %zu of %zu (a fragment boundary)", n,
                     len);
        } else {
            n = (size_t)tu_rng_below(r, len);
            snprintf(d->what, sizeof d->what, "truncate to %zu of %zu", n, len);
        }
        break;
    case D_ZERO:
    case D_RANDOM: {
        uint64_t off = tu_rng_below(r, len);
        size_t l = range_len(r, len - off);
        for (size_t i = 0; i < l; i++) {
            p[off + i] = dk == D_ZERO ? 0 : (uint8_t)tu_rng_next(r);
        }
        snprintf(d->what, sizeof d->what, "%s [%" PRIu64 ", +%zu)",
                 dk == D_ZERO ? "zero" : "random bytes", off, l);
        break;
    }
    case D_SWAP: {
        if (len < 2) {
            free(p);
            return false;
        }
        size_t l, a, b;
        if (seg != NULL && len >= 2 * WAL_BLOCK_SIZE && tu_rng_below(r, 3) == 0) {
            size_t blocks = len / WAL_BLOCK_SIZE;
            l = WAL_BLOCK_SIZE;
            a = (size_t)tu_rng_below(r, blocks - 1);
            b = a + 1 + (size_t)tu_rng_below(r, blocks - a - 1);
            a *= l;
            b *= l;
        } else {
            l = range_len(r, len / 2);
            a = (size_t)tu_rng_below(r, len - 2 * l + 1);
            b = a + l + (size_t)tu_rng_below(r, len - a - 2 * l + 1);
        }
        uint8_t *tmp = malloc(l);
        cr_assert_not_null(tmp);
        memcpy(tmp, p + a, l);
        memmove(p + a, p + b, l);
        memcpy(p + b, tmp, l);
        free(tmp);
        snprintf(d->what, sizeof d->what, "swap [%zu, +%zu) with [%zu, +%zu)", a, l, b, l);
        break;
    }
    default:
        cr_assert_fail("damage kind %d", dk);
    }
    d->new_len = n;
    write_all(path, p, n);
    free(p);
    return true;
}

/* ---- cases ---------------------------------------------------------------------------------- */

enum fkind {
    K_LIVE_LOG,
    K_OLD_LOG,
    K_KEPT_LOG,
    K_TABLE,
    K_MANIFEST,
    K_CURRENT,
    K_IDENTITY,
    K_BK_MANIFEST,
    K_BK_CATALOG,
    K_BK_TABLE,
    K_BK_SMALL,
    NFKINDS
};
static const char *const knames[NFKINDS] = {
    "live-log", "closed-log",    "kept-log",       "table",        "manifest",     "CURRENT",
    "SHALE",    "backup-BACKUP", "backup-BACKUPS", "backup-table", "backup-small",
};
/* Seeds per damage kind at scale 1. */
static const int kseeds[NFKINDS] = {10, 8, 2, 10, 8, 3, 3, 4, 3, 5, 3};

enum cls { C_NOCHANGE, C_DETECTED, C_UNNAMED, C_TORN, C_BOUNDARY, C_UNUSED, C_WRONG, C_MISSED, NC };
static const char *const cnames[NC] = {"no-change", "detected", "unnamed", "torn",
                                       "boundary",  "unused",   "wrong",   "missed"};

typedef struct tally {
    uint64_t made, c[NC];
    uint64_t check_runs, check_named, crashes;
    char findings[4096];
    size_t flen;
} tally;

static void finding(tally *ty, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void finding(tally *ty, const char *fmt, ...)
{
    va_list ap;
    char line[768];
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "corrupt_campaign: %s\n", line);
    if (ty->flen + strlen(line) + 2 < sizeof ty->findings) {
        ty->flen +=
            (size_t)snprintf(ty->findings + ty->flen, sizeof ty->findings - ty->flen, "%s\n", line);
    }
}

static bool verbose;

/* Runs `shale ARGS`: whether it named the file as damaged (or failed naming it), noted it, or
 * failed at all; crashes counted. */
typedef struct cli_out {
    bool ran, failed, named, noted;
    int status;
    char first[200];
} cli_out;

static void run_cli(tally *ty, const char *const *args, const char *needle, cli_out *c)
{
    char *out = NULL;
    memset(c, 0, sizeof *c);
    int st = tu_run_shale(args, &out);
    if (st < 0) {
        free(out);
        return; /* no SHALE_BIN */
    }
    c->ran = true;
    c->status = st;
    ty->check_runs++;
    if (st >= 128) {
        ty->crashes++;
        finding(ty, "CRASH: shale %s %s exited %d (%s)", args[0], args[1], st, g_case);
    }
    c->failed = st != 0;
    for (char *line = out; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        if (names_file(line, needle)) {
            if (strstr(line, "DAMAGED") != NULL || strstr(line, "ERROR") != NULL ||
                (st != 0 && strstr(line, "OK") == NULL)) {
                c->named = true;
            }
            if (strstr(line, "NOTE") != NULL) {
                c->noted = true;
            }
        }
        if (c->first[0] == '\0' && st != 0 &&
            (strstr(line, "DAMAGED") != NULL || strstr(line, "rror") != NULL)) {
            snprintf(c->first, sizeof c->first, "%s", line);
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    if (verbose) {
        fprintf(stderr, "shale %s %s -> %d\n%s\n", args[0], args[1], st, out);
    }
    free(out);
    if (c->named) {
        ty->check_named++;
    }
}

/* Where the damage may cut the live log: the number of tail writes wholly before `first`, and
 * whether an intact sync marker after it proves it had been synced. */
static void tail_cut(const tmpl *t, int seg, const uint8_t *now, size_t now_len, uint64_t first,
                     int *k_cut, bool *provable)
{
    *k_cut = 0;
    *provable = false;
    for (int i = 0; i < NTAIL; i++) {
        const tail_op *op = &t->ops[i];
        if (op->seg < seg || (op->seg == seg && op->end <= first)) {
            *k_cut = i + 1;
        }
        const unit_mark *m = &t->marks[i];
        if (op->seg == seg && m->has && m->at > first && m->at + m->len <= now_len &&
            memcmp(now + m->at, t->segs[seg].bytes + m->at, m->len) == 0) {
            *provable = true;
        }
    }
}

typedef struct target {
    int kind;
    char rel[64];       /* path relative to the database or backup destination */
    char needle[64];    /* how a message names it */
    const seginfo *seg; /* pristine framing (logs, manifest) */
    int segi;           /* tail segment index for logs */
} target;

static void pick_target(const tmpl *t, int kind, tu_rng *r, target *g)
{
    memset(g, 0, sizeof *g);
    g->kind = kind;
    g->segi = -1;
    const char *rel = ""; /* the file, relative to the database or the backup directory */
    char bk_manifest[24];
    switch (kind) {
    case K_LIVE_LOG:
    case K_OLD_LOG:
        g->segi = kind == K_LIVE_LOG ? (int)t->nsegs - 1 : (int)tu_rng_below(r, t->nsegs - 1);
        g->seg = &t->segs[g->segi];
        rel = g->seg->name;
        break;
    case K_KEPT_LOG:
        rel = t->kept[tu_rng_below(r, t->nkept)];
        break;
    case K_TABLE:
        rel = t->tables[tu_rng_below(r, t->ntables)];
        break;
    case K_MANIFEST:
        g->seg = &t->manifest;
        rel = t->manifest.name;
        break;
    case K_CURRENT:
        rel = "CURRENT";
        break;
    case K_IDENTITY:
        rel = "SHALE";
        break;
    case K_BK_MANIFEST:
        snprintf(bk_manifest, sizeof bk_manifest, "%06d/BACKUP", 1 + (int)tu_rng_below(r, 2));
        rel = bk_manifest;
        break;
    case K_BK_CATALOG:
        rel = "BACKUPS";
        break;
    case K_BK_TABLE:
        rel = t->bk_tables[tu_rng_below(r, t->nbk_tables)];
        break;
    case K_BK_SMALL:
        rel = t->bk_small[tu_rng_below(r, t->nbk_small)];
        break;
    default:
        cr_assert_fail();
    }
    snprintf(g->rel, sizeof g->rel, "%s", rel);
    /* Messages name database files by base name, backup files by a path ending in rel. */
    snprintf(g->needle, sizeof g->needle, "%s", g->rel);
}

/* One open (read-only or normal) of the damaged database plus every read. */
typedef struct step {
    bool opened;
    readout r;
    bool states[NTAIL + 1];
    bool consistent; /* the reads match some tail state */
} step;

static void db_step(const tmpl *t, const target *g, bool read_only, step *s)
{
    shale_options o = t->o;
    shale_db *db = NULL;
    shale_error err;

    memset(s, 0, sizeof *s);
    o.create_if_missing = false;
    o.read_only = read_only;
    shale_code rc = shale_open(t->work, &o, &db, &err);
    if (rc != SHALE_OK) {
        note_err(&s->r, rc, &err, g->needle, read_only ? "open (read-only)" : "open");
        return;
    }
    s->opened = true;
    read_db(t, db, g->needle, &s->r);
    rc = shale_close(db, &err);
    if (rc != SHALE_OK) {
        note_err(&s->r, rc, &err, g->needle, "close");
    }
    s->consistent = states_of(t, &s->r, s->states);
}

/* Whether every changed byte of `now` against the pristine framing lies in block padding. */
static bool only_padding(const seginfo *s, const uint8_t *now, size_t now_len)
{
    if (now_len != s->len) {
        return false;
    }
    for (size_t i = 0; i < s->len; i++) {
        if (now[i] != s->bytes[i] && !in_padding(s, i)) {
            return false;
        }
    }
    return true;
}

static int db_case(const tmpl *t, tally *ty, const target *g, int dk, tu_rng *r, bool sample)
{
    damage d;
    char *path;
    size_t plen, nlen;

    tu_rm_rf(t->work);
    copy_tree(t->src, t->work);
    path = tu_path(t->work, g->rel);
    char *ppath = tu_path(t->src, g->rel);
    uint8_t *pristine = read_all(ppath, &plen);
    free(ppath);
    if (!apply_damage(path, dk, r, g->seg, &d)) {
        free(pristine);
        free(path);
        return -1;
    }
    uint8_t *now = read_all(path, &nlen);
    free(path);
    snprintf(g_case + strlen(g_case), sizeof g_case - strlen(g_case), " %s: %s", g->rel, d.what);
    if (nlen == plen && memcmp(now, pristine, plen) == 0) {
        free(now);
        free(pristine);
        return C_NOCHANGE;
    }
    /* The first byte that changed, skipping log padding (never read). */
    d.first = nlen < plen ? nlen : plen;
    for (size_t i = 0; i < (nlen < plen ? nlen : plen); i++) {
        if (now[i] != pristine[i] && (g->seg == NULL || !in_padding(g->seg, i))) {
            d.first = i;
            break;
        }
    }

    step ro, rw;
    db_step(t, g, true, &ro);
    cli_out chk = {0};
    bool need_check = !(ro.r.failed && ro.r.named) || sample;
    if (need_check) {
        const char *args[] = {"check", t->work, NULL};
        run_cli(ty, args, g->needle, &chk);
    }
    db_step(t, g, false, &rw);

    bool failed = ro.r.failed || rw.r.failed || chk.failed;
    bool named = (ro.r.failed && ro.r.named) || (rw.r.failed && rw.r.named) || chk.named;
    int k_cut = NTAIL;
    bool provable = true;
    if (g->kind == K_LIVE_LOG) {
        tail_cut(t, g->segi, now, nlen, d.first, &k_cut, &provable);
    }
    /* Silent wrong data: a read without error outside every allowed state. Allowed: the whole
     * model; for the live log also the state cut before the damage, when nothing proves the
     * damaged bytes were synced. */
    bool wrong = false;
    const step *steps[2] = {&ro, &rw};
    bool lost = false;
    for (int i = 0; i < 2; i++) {
        const step *s = steps[i];
        if (!s->opened) {
            continue;
        }
        if (s->r.doc_wrong || s->r.foreign || s->r.disagree || !s->consistent) {
            wrong = true;
        } else if (!s->states[NTAIL]) {
            if (g->kind == K_LIVE_LOG && s->states[k_cut]) {
                lost = true; /* cut before the damage: a torn tail, if nothing proves a sync */
            } else {
                wrong = true;
            }
        }
    }
    int cls;
    if (wrong) {
        cls = C_WRONG;
    } else if (failed) {
        cls = named ? C_DETECTED : C_UNNAMED;
    } else if (lost && provable) {
        cls = C_MISSED; /* synced bytes (a later intact marker says so) cut as a torn tail */
    } else if (lost && (ro.r.truncated > 0 || rw.r.truncated > 0)) {
        cls = C_TORN;
    } else if (lost && dk == D_TRUNC && is_bound(g->seg, nlen)) {
        cls = C_BOUNDARY;
    } else if (lost) {
        cls = C_MISSED;
    } else if (g->kind == K_MANIFEST && dk == D_TRUNC && is_bound(g->seg, nlen)) {
        cls = C_BOUNDARY;
    } else if (g->kind == K_MANIFEST && chk.noted && !t->manifest_noted) {
        cls = C_TORN;
    } else if (g->kind == K_KEPT_LOG) {
        cls = C_UNUSED;
    } else if (g->seg != NULL && only_padding(g->seg, now, nlen)) {
        cls = C_UNUSED;
    } else {
        cls = C_MISSED;
    }
    if (cls == C_WRONG || cls == C_MISSED || cls == C_UNNAMED || verbose) {
        finding(ty,
                "%s: %s [first changed byte %" PRIu64 ", tail cut %d, provable %d; ro: open %d "
                "failed %d '%s' trunc %" PRIu64 " all %d cut %d docs %d foreign %d disagree %d; "
                "check: exit %d named %d noted %d '%s'; rw: open %d failed %d '%s' trunc %" PRIu64
                " all %d cut %d]",
                cnames[cls], g_case, d.first, k_cut, provable, ro.opened, ro.r.failed, ro.r.msg,
                ro.r.truncated, ro.states[NTAIL], ro.states[k_cut], ro.r.doc_wrong, ro.r.foreign,
                ro.r.disagree, chk.status, chk.named, chk.noted, chk.first, rw.opened, rw.r.failed,
                rw.r.msg, rw.r.truncated, rw.states[NTAIL], rw.states[k_cut]);
    }
    free(now);
    free(pristine);
    return cls;
}

/* Restores backup `id` from the damaged destination: the error, or the restored data's hash
 * against the pristine restore's. */
static void restore_check(const tmpl *t, int id, const char *needle, bool *failed, bool *named,
                          bool *wrong, char *msg, size_t cap)
{
    shale_error err;
    tu_rm_rf(t->rdir);
    shale_code rc = shale_restore(t->wdest, (uint64_t)id, t->rdir, false, &err);
    if (rc != SHALE_OK) {
        *failed = true;
        *named |= names_file(err.msg, needle);
        if (msg[0] == '\0') {
            snprintf(msg, cap, "restore %d: %.200s", id, err.msg);
        }
        return;
    }
    shale_options o = {.read_only = true};
    shale_db *db = NULL;
    rc = shale_open(t->rdir, &o, &db, &err);
    if (rc != SHALE_OK) {
        *failed = true;
        *named |= names_file(err.msg, needle);
        if (msg[0] == '\0') {
            snprintf(msg, cap, "open restored %d: %.200s", id, err.msg);
        }
        return;
    }
    uint64_t h;
    size_t n;
    rc = scan_hash(db, &h, &n, &err);
    if (rc != SHALE_OK) {
        *failed = true;
        *named |= names_file(err.msg, needle);
        if (msg[0] == '\0') {
            snprintf(msg, cap, "scan restored %d: %.200s", id, err.msg);
        }
    } else if (h != t->bk_hash[id]) {
        *wrong = true;
    }
    cr_assert_eq(shale_close(db, &err), SHALE_OK);
}

static int bk_case(const tmpl *t, tally *ty, const target *g, int dk, tu_rng *r, bool sample)
{
    damage d;
    size_t plen, nlen;
    shale_error err;
    char msg[256] = "";

    tu_rm_rf(t->wdest);
    copy_tree(t->dest, t->wdest);
    char *path = tu_path(t->wdest, g->rel);
    char *ppath = tu_path(t->dest, g->rel);
    uint8_t *pristine = read_all(ppath, &plen);
    free(ppath);
    if (!apply_damage(path, dk, r, NULL, &d)) {
        free(pristine);
        free(path);
        return -1;
    }
    uint8_t *now = read_all(path, &nlen);
    free(path);
    snprintf(g_case + strlen(g_case), sizeof g_case - strlen(g_case), " %s: %s", g->rel, d.what);
    bool same = nlen == plen && memcmp(now, pristine, plen) == 0;
    free(now);
    free(pristine);
    if (same) {
        return C_NOCHANGE;
    }
    bool failed = false, named = false, wrong = false;
    shale_backup_info *list = NULL;
    size_t count = 0;
    shale_code rc = shale_backup_list(t->wdest, &list, &count, &err);
    free(list);
    if (rc != SHALE_OK) {
        failed = true;
        named |= names_file(err.msg, g->needle);
        snprintf(msg, sizeof msg, "list: %.200s", err.msg);
    } else if (count != 2) {
        wrong = true;
    }
    rc = shale_backup_verify(t->wdest, 0, &err);
    if (rc != SHALE_OK) {
        failed = true;
        named |= names_file(err.msg, g->needle);
        if (msg[0] == '\0') {
            snprintf(msg, sizeof msg, "verify: %.200s", err.msg);
        }
    }
    for (int id = 1; id <= 2; id++) {
        restore_check(t, id, g->needle, &failed, &named, &wrong, msg, sizeof msg);
    }
    cli_out cli = {0};
    if (!(failed && named) || sample) {
        const char *args[] = {"backup", "verify", t->wdest, NULL};
        run_cli(ty, args, g->needle, &cli);
        failed |= cli.failed;
        named |= cli.named;
    }
    if (!failed) {
        /* The next backup reads the catalog and the newest manifest. */
        shale_db *db = NULL;
        shale_options o = t->o;
        o.create_if_missing = false;
        tu_rm_rf(t->work);
        copy_tree(t->src, t->work);
        cr_assert_eq(shale_open(t->work, &o, &db, &err), SHALE_OK, "%s", err.msg);
        rc = shale_backup(db, t->wdest, NULL, &err);
        if (rc != SHALE_OK) {
            failed = true;
            named |= names_file(err.msg, g->needle);
            snprintf(msg, sizeof msg, "backup: %.200s", err.msg);
        }
        cr_assert_eq(shale_close(db, &err), SHALE_OK);
    }
    int cls = wrong ? C_WRONG : failed ? (named ? C_DETECTED : C_UNNAMED) : C_MISSED;
    if (cls != C_DETECTED || verbose) {
        finding(ty, "%s: %s [%s; cli exit %d '%s']", cnames[cls], g_case, msg, cli.status,
                cli.first);
    }
    return cls;
}

/* ---- the campaign -----------------------------------------------------------------------------
 */

static void golden(tmpl *t)
{
    shale_options o = t->o;
    shale_db *db = NULL;
    shale_error err;
    shale_buf v = {0};

    o.create_if_missing = false;
    o.read_only = true;
    ok(shale_open(t->src, &o, &db, &err), &err, "open pristine");
    for (int i = 0; i < NDOCS; i++) {
        char id[8];
        snprintf(id, sizeof id, "p%03d", i);
        shale_code rc = shale_doc_get(db, COLL, tu_str(id), &v, &err);
        cr_assert(rc == SHALE_OK || rc == SHALE_NOT_FOUND, "doc %s: %s", id, err.msg);
        cr_assert_eq(rc == SHALE_NOT_FOUND, i % 10 == 7, "doc %s", id);
        if (rc == SHALE_OK) {
            t->doc_json[i] = strndup(v.data, v.len);
        }
    }
    shale_doc_query q = {.filter = tu_str(find_filter), .sort = tu_str("age"), .limit = 1000};
    ok(shale_doc_find(db, COLL, &q, &v, &err), &err, "find");
    t->find_json = strndup(v.data, v.len);
    cr_assert(strstr(t->find_json, "\"total\":") != NULL);
    shale_buf_free(&v);

    /* The pristine reads as the model, in full (doc_keys_hash 0: not compared yet). */
    readout rd;
    memset(&rd, 0, sizeof rd);
    read_db(t, db, "-", &rd);
    cr_assert_not(rd.failed, "pristine: %s", rd.msg);
    cr_assert_not(rd.foreign || rd.disagree || rd.doc_wrong);
    bool states[NTAIL + 1];
    states_of(t, &rd, states);
    cr_assert(states[NTAIL], "the pristine copy does not read as the model");
    ok(shale_close(db, &err), &err, "close pristine");
    /* The document keys' hash, from a second pass. */
    ok(shale_open(t->src, &o, &db, &err), &err, "open pristine");
    shale_iter *it = NULL;
    ok(shale_iter_new(db, NULL, &it, &err), &err, "iter");
    uint64_t h = CU_FNV_INIT;
    size_t ndockeys = 0;
    for (shale_iter_seek_first(it); shale_iter_valid(it); shale_iter_next(it)) {
        shale_slice key = shale_iter_key(it), value = shale_iter_value(it);
        if (is_doc_key(key)) {
            h = fnv_entry(h, key, value, shale_iter_info(it).expire_at_ms);
            ndockeys++;
        }
    }
    ok(shale_iter_status(it, &err), &err, "iter");
    shale_iter_free(it);
    cr_assert_gt(ndockeys, NDOCS, "setup: %zu document keys", ndockeys);
    t->doc_keys_hash = h;
    ok(shale_close(db, &err), &err, "close pristine");

    /* `shale check` calls the pristine copy clean. */
    char *out = NULL;
    const char *args[] = {"check", t->src, NULL};
    int st = tu_run_shale(args, &out);
    if (st >= 0) {
        cr_assert_eq(st, 0, "shale check of the pristine copy: exit %d\n%s", st, out);
        for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
            if (names_file(line, t->manifest.name) && strstr(line, "NOTE") != NULL) {
                t->manifest_noted = true;
            }
        }
    }
    free(out);

    /* The pristine restores. */
    for (int id = 1; id <= 2; id++) {
        size_t n;
        tu_rm_rf(t->rdir);
        ok(shale_restore(t->dest, (uint64_t)id, t->rdir, false, &err), &err, "restore");
        ok(shale_open(t->rdir, &o, &db, &err), &err, "open restored");
        ok(scan_hash(db, &t->bk_hash[id], &n, &err), &err, "scan restored");
        cr_assert_gt(n, 500);
        ok(shale_close(db, &err), &err, "close restored");
    }
}

/* Parses SHALE_CORRUPT_CASE="kind:damage:seed". */
static bool only_case(int *kind, int *dk, uint64_t *seed)
{
    const char *v = getenv("SHALE_CORRUPT_CASE");
    char kn[32], dn[32];
    unsigned long long s;
    if (v == NULL || *v == '\0') {
        return false;
    }
    cr_assert_eq(sscanf(v, "%31[^:]:%31[^:]:%llu", kn, dn, &s), 3,
                 "SHALE_CORRUPT_CASE=%s: want kind:damage:seed", v);
    *kind = -1;
    *dk = -1;
    for (int i = 0; i < NFKINDS; i++) {
        if (strcmp(kn, knames[i]) == 0) {
            *kind = i;
        }
    }
    for (int i = 0; i < NDAMAGE; i++) {
        if (strcmp(dn, dnames[i]) == 0) {
            *dk = i;
        }
    }
    cr_assert(*kind >= 0 && *dk >= 0, "SHALE_CORRUPT_CASE=%s: unknown kind or damage", v);
    *seed = s;
    return true;
}

static void campaign(const char *group, const int *kinds, size_t nkinds)
{
    tmpl *t = calloc(1, sizeof *t);
    tally ty[NFKINDS];
    uint64_t scale = tu_campaign_scale();
    int only_kind = -1, only_dk = -1;
    uint64_t only_seed = 0;
    bool one = only_case(&only_kind, &only_dk, &only_seed);
    struct timespec t0, t1;

    cr_assert_not_null(t);
    install_breadcrumb();
    verbose = one;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(g_case, sizeof g_case, "building the template");
    build(t);
    golden(t);
    memset(ty, 0, sizeof ty);
    for (size_t ki = 0; ki < nkinds; ki++) {
        int kind = kinds[ki];
        if (one && kind != only_kind) {
            continue;
        }
        if (kind == K_KEPT_LOG && t->nkept == 0) {
            continue;
        }
        uint64_t nseeds = (uint64_t)kseeds[kind] * scale;
        for (int dk = 0; dk < NDAMAGE; dk++) {
            if (one && dk != only_dk) {
                continue;
            }
            for (uint64_t s = 0; s < nseeds; s++) {
                uint64_t seed = one ? only_seed : s;
                tu_rng r;
                target g;
                if (one && s > 0) {
                    break;
                }
                tu_rng_seed(&r, tu_mix64(seed * 131 + (uint64_t)kind * 7 + (uint64_t)dk) | 1);
                pick_target(t, kind, &r, &g);
                snprintf(g_case, sizeof g_case, "SHALE_CORRUPT_CASE=%s:%s:%" PRIu64 "",
                         knames[kind], dnames[dk], seed);
                bool sample = seed % 6 == 0;
                int cls = kind >= K_BK_MANIFEST ? bk_case(t, &ty[kind], &g, dk, &r, sample)
                                                : db_case(t, &ty[kind], &g, dk, &r, sample);
                if (cls < 0) {
                    continue;
                }
                ty[kind].c[cls]++;
                ty[kind].made += cls != C_NOCHANGE;
            }
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

    uint64_t bad = 0, total = 0, detected = 0;
    for (size_t ki = 0; ki < nkinds; ki++) {
        int kind = kinds[ki];
        const tally *y = &ty[kind];
        if (y->made == 0 && y->c[C_NOCHANGE] == 0) {
            continue;
        }
        tu_campaign_report("corrupt",
                           "%s: %" PRIu64 " damaged, %" PRIu64 " detected, %" PRIu64
                           " unnamed, %" PRIu64 " torn tail, %" PRIu64 " boundary cut, %" PRIu64
                           " unused bytes, %" PRIu64 " no change, %" PRIu64 " wrong, %" PRIu64
                           " missed; %" PRIu64 " CLI runs (%" PRIu64 " named it), %" PRIu64
                           " crashes",
                           knames[kind], y->made, y->c[C_DETECTED], y->c[C_UNNAMED], y->c[C_TORN],
                           y->c[C_BOUNDARY], y->c[C_UNUSED], y->c[C_NOCHANGE], y->c[C_WRONG],
                           y->c[C_MISSED], y->check_runs, y->check_named, y->crashes);
        bad += y->c[C_WRONG] + y->c[C_MISSED] + y->crashes;
        total += y->made;
        detected += y->c[C_DETECTED] + y->c[C_UNNAMED];
    }
    tu_campaign_report("corrupt",
                       "%s: %" PRIu64 " damaged files, %" PRIu64 " detected, %" PRIu64
                       " wrong/missed/crashed (scale %" PRIu64 ", %.1f s)",
                       group, total, detected, bad, scale, secs);
    char all[8192] = "";
    size_t alen = 0;
    for (size_t ki = 0; ki < nkinds; ki++) {
        const tally *y = &ty[kinds[ki]];
        if (alen + y->flen + 1 < sizeof all) {
            memcpy(all + alen, y->findings, y->flen);
            alen += y->flen;
            all[alen] = '\0';
        }
    }
    g_case[0] = '\0';
    free_tmpl(t, one);
    if (one) {
        fprintf(stderr, "kept %s\n", "the case's directories (see the paths above)");
    }
    free(t);
    cr_assert_eq(bad, 0, "%" PRIu64 " damaged files missed, read wrong or crashed:\n%s", bad, all);
}

/* Four tests, so that Criterion's --jobs runs them side by side (each builds its template). */
Test(corrupt_campaign, logs)
{
    static const int kinds[] = {K_LIVE_LOG, K_OLD_LOG, K_KEPT_LOG};
    campaign("logs", kinds, 3);
}

Test(corrupt_campaign, tables)
{
    static const int kinds[] = {K_TABLE};
    campaign("tables", kinds, 1);
}

Test(corrupt_campaign, manifest_current_identity)
{
    static const int kinds[] = {K_MANIFEST, K_CURRENT, K_IDENTITY};
    campaign("manifest, CURRENT, SHALE", kinds, 3);
}

Test(corrupt_campaign, backups)
{
    static const int kinds[] = {K_BK_MANIFEST, K_BK_CATALOG, K_BK_TABLE, K_BK_SMALL};
    campaign("backups", kinds, 4);
}
