/*
 * cmd_check: `shale check DIR`, the offline verifier. It reads every file of a database that no
 * process has open and reports, one line per file, whether it is intact:
 *
 *   SHALE        the identity file: size, magic, checksum, format version (as db.c checks it)
 *   CURRENT      names a manifest ("MANIFEST-NNNNNN\n") that exists
 *   MANIFEST-N   every record's checksum (the WAL framing), every edit decoded and replayed
 *                (version_set_recover), then the resulting state checked against itself and the
 *                directory (version_set_check: tables exist with their recorded sizes, levels
 *                1+ sorted and disjoint, file numbers below next_file_number)
 *   NNNNNN.sst   every table the manifest lists: present, the recorded size, and sst_verify
 *                (footer, properties, index, filter, every data block's checksum, key order)
 *   NNNNNN.log   every live log segment (numbered >= the manifest's log number): every record's
 *                checksum, every batch decoded, sequence numbers increasing across segments
 *   the rest     listed: the lock, the info log, and leftovers (obsolete logs, tables no
 *                manifest lists, old manifests, temporaries) that the next open deletes
 *
 * It mirrors recovery's rules, so that "check says clean" means "open would succeed without
 * salvage and lose nothing acknowledged": a torn tail of the last log segment, or a torn final
 * manifest record, is what a crash mid-write leaves and recovery cuts or ignores, so it is a note,
 * not damage; a torn record anywhere else is damage. Leftovers are notes too.
 *
 * A damaged final manifest record cannot be told from a torn one (nothing valid follows it), by
 * recovery or here. That is no blind spot: the engine keeps every file the state before the last
 * edit needs until a later edit is durable (src/lsm/version.h), so recovery falls back to that
 * state and loses nothing. The check does the same: it recovers the manifest as an open would
 * and checks the tables and logs of the state it gets, so "clean" still means nothing is lost.
 * Files kept for the state before the last edit (logs from the kept log number, tables the last
 * edit removed) are listed as notes; the kept logs are read through first, since that state
 * would replay them, and their damage is reported.
 *
 * Then, when no file is damaged (notes allowed), the documents (docdb_check, src/doc/doccheck.c):
 * the database is opened read-only (shale_options.read_only: the same recovery as an open, and
 * still nothing written) and every collection is checked from one snapshot - every document
 * decodes, every index entry is the one its document's current value gives, every document has
 * its entries, and no key under the document prefix belongs to nothing. One line per collection
 * ("collection people: 1000 documents, 2 indexes, 2000 index entries: ok"), each problem on its
 * own line before it, then a summary; a database without collections prints nothing more. The
 * file checks' LOCK is released just before that open takes it again: a process that opens the
 * database in between makes the open fail as "in use" (exit 2).
 *
 * It modifies nothing: no recovery, no truncation, no deletion. It takes the database's LOCK for
 * the duration (creating the LOCK file if missing, as any open does), so no process can open the
 * database while it runs, and it refuses (exit 2) a database another process has open: a live
 * database changes under the reader, and its log tail is legitimately incomplete.
 *
 * Exit codes: 0 clean (notes allowed), 1 damage found (CLI_DAMAGED), 2 could not check (usage,
 * not a database, in use, an I/O error with no damage found). Damage wins over an I/O error:
 * once something is known to be damaged, the answer to "is it damaged?" is yes.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/coding.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "base/ikey.h"
#include "cli/cli.h"
#include "doc/docdb.h"
#include "env/env.h"
#include "lsm/batch.h"
#include "lsm/identity.h"
#include "lsm/repair.h"
#include "lsm/version.h"
#include "sst/sst_reader.h"
#include "wal/wal_format.h"
#include "wal/wal_reader.h"

#define ID_NAME DB_IDENTITY_NAME

/* CURRENT holds "MANIFEST-" + at most 20 digits + "\n"; anything far larger is not a CURRENT. */
#define CURRENT_MAX_BYTES 4096u

typedef enum verdict {
    V_OK,      /* intact */
    V_NOTE,    /* intact, with something worth knowing (a torn tail, a leftover) */
    V_DAMAGED, /* damage: the database would not open, or would lose data */
    V_ERROR,   /* could not be checked (I/O error, out of memory) */
} verdict;

typedef struct entry {
    char *name;
    uint64_t size;
    bool size_known;
    bool is_dir;
    bool reported; /* a line was printed for it */
} entry;

typedef struct checker {
    const shale_env *env;
    const char *dir;
    size_t dir_len; /* without trailing slashes: the prefix trimmed from messages */
    entry *files;   /* the directory, sorted by name */
    size_t nfiles;
    unsigned damaged, notes, errors;
    version_set *vs;          /* the recovered manifest, or NULL when there is none readable */
    uint64_t manifest_number; /* named by CURRENT, 0 when CURRENT is missing or unreadable */
    /* The document check. */
    bool doc_header;       /* its section header is printed */
    uint64_t doc_printed;  /* problem lines printed (at most DOC_PRINT_MAX) */
    uint64_t doc_problems; /* problems found */
} checker;

/* Problem lines printed by the document check; the rest are counted in the summary. */
#define DOC_PRINT_MAX 200

/* ---- small helpers ---- */

/* Whether `name` is a file of `kind` (version_parse_file_name), its number into *out. */
static bool is_kind(const char *name, version_file_kind kind, uint64_t *out)
{
    return version_parse_file_name(name, out) == kind;
}

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), sn = strlen(suffix);
    return n > sn && strcmp(name + n - sn, suffix) == 0;
}

static entry *find(checker *c, const char *name)
{
    for (size_t i = 0; i < c->nfiles; i++) {
        if (strcmp(c->files[i].name, name) == 0) {
            return &c->files[i];
        }
    }
    return NULL;
}

/* Copies a library message without the "DIR/" before file names: the report is about DIR, and
 * the bare names keep the lines short. */
static void tidy(const checker *c, const char *msg, char *out, size_t cap)
{
    size_t o = 0;

    while (*msg != '\0' && o + 1 < cap) {
        if (c->dir_len > 0 && strncmp(msg, c->dir, c->dir_len) == 0 && msg[c->dir_len] == '/') {
            msg += c->dir_len + 1;
            continue;
        }
        out[o++] = *msg++;
    }
    out[o] = '\0';
}

static const char *plural(uint64_t n)
{
    return n == 1 ? "" : "s";
}

static verdict verdict_of(shale_code code)
{
    return code == SHALE_CORRUPTION ? V_DAMAGED : V_ERROR;
}

/* Prints one report line: name, kind, size ("-" when unknown), what was checked, the verdict and
 * its detail (printf-style; may be NULL for a plain OK). Counts the verdict. */
static void report(checker *c, const char *name, const char *kind, const entry *e,
                   const char *checked, verdict v, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static void report(checker *c, const char *name, const char *kind, const entry *e,
                   const char *checked, verdict v, const char *fmt, ...)
{
    static const char *const words[] = {"OK", "NOTE", "DAMAGED", "ERROR"};
    char size[24] = "-", detail[640] = "";

    if (e != NULL && e->size_known && !e->is_dir) {
        snprintf(size, sizeof size, "%" PRIu64, e->size);
    }
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof detail, fmt, ap);
        va_end(ap);
    }
    printf("%-18s %-10s %12s  %-12s %s", name, kind, size, checked, words[v]);
    if (detail[0] != '\0') {
        printf(v == V_OK ? " (%s)" : ": %s", detail);
    }
    putchar('\n');
    c->damaged += v == V_DAMAGED;
    c->notes += v == V_NOTE;
    c->errors += v == V_ERROR;
}

/* Reports a failed library call on `name`: damage for SHALE_CORRUPTION, else an error. */
static void report_failure(checker *c, const char *name, const char *kind, const entry *e,
                           const char *checked, const shale_error *err)
{
    char msg[sizeof err->msg];
    tidy(c, err->msg[0] ? err->msg : shale_strerror(err->code), msg, sizeof msg);
    report(c, name, kind, e, checked, verdict_of(err->code), "%s", msg);
}

static void report_nomem(checker *c, const char *name, const char *kind, const entry *e)
{
    report(c, name, kind, e, "-", V_ERROR, "out of memory");
}

/* ---- SHALE ---- */

static void check_identity(checker *c)
{
    entry *e = find(c, ID_NAME);
    shale_error err = {0};
    void *data = NULL;
    size_t len = 0;
    char *path;

    if (e == NULL) {
        report(c, ID_NAME, "identity", NULL, "-", V_DAMAGED,
               "missing (every database has one; without it the directory will not open)");
        return;
    }
    e->reported = true;
    if ((path = env_join_path(c->dir, ID_NAME)) == NULL) {
        report_nomem(c, ID_NAME, "identity", e);
        return;
    }
    shale_code rc = env_read_file(c->env, path, CURRENT_MAX_BYTES, &data, &len, &err);
    free(path);
    if (rc != SHALE_OK) {
        report_failure(c, ID_NAME, "identity", e, "-", &err);
        return;
    }
    size_t at;
    uint32_t id_version;
    const char *why = db_identity_check(data, len, &at, &id_version);
    if (why != NULL && len != DB_IDENTITY_BYTES) {
        report(c, ID_NAME, "identity", e, "28 bytes", V_DAMAGED, "%zu bytes, want %u", len,
               DB_IDENTITY_BYTES);
    } else if (why != NULL && at == 8) {
        report(c, ID_NAME, "identity", e, "28 bytes", V_DAMAGED,
               "@8: format version %" PRIu32 ", this build reads %u", id_version,
               DB_IDENTITY_VERSION);
    } else if (why != NULL) {
        report(c, ID_NAME, "identity", e, "28 bytes", V_DAMAGED, "@%zu: %s", at, why);
    } else {
        report(c, ID_NAME, "identity", e, "28 bytes", V_OK, "format %u", DB_IDENTITY_VERSION);
    }
    free(data);
}

/* ---- CURRENT ---- */

static bool dir_has_tables_or_manifests(const checker *c)
{
    uint64_t n;
    for (size_t i = 0; i < c->nfiles; i++) {
        if (is_kind(c->files[i].name, VERSION_FILE_TABLE, &n) ||
            is_kind(c->files[i].name, VERSION_FILE_MANIFEST, &n)) {
            return true;
        }
    }
    return false;
}

static void check_current(checker *c)
{
    entry *e = find(c, "CURRENT");
    shale_error err = {0};
    void *data = NULL;
    size_t len = 0;
    char *path, text[32];
    uint64_t number;

    if (e == NULL) {
        /* A database made before tables existed has no manifest yet: the next open writes one. */
        if (dir_has_tables_or_manifests(c)) {
            report(c, "CURRENT", "pointer", NULL, "-", V_DAMAGED,
                   "missing, but the directory holds tables or a manifest");
        } else {
            report(c, "CURRENT", "pointer", NULL, "-", V_NOTE,
                   "absent: no manifest yet (the next open creates one)");
        }
        return;
    }
    e->reported = true;
    if ((path = env_join_path(c->dir, "CURRENT")) == NULL) {
        report_nomem(c, "CURRENT", "pointer", e);
        return;
    }
    shale_code rc = env_read_file(c->env, path, CURRENT_MAX_BYTES, &data, &len, &err);
    free(path);
    if (rc != SHALE_OK) {
        report_failure(c, "CURRENT", "pointer", e, "-", &err);
        return;
    }
    bool ok = version_parse_current(data, len, &number);
    free(data);
    if (!ok) {
        report(c, "CURRENT", "pointer", e, "1 name", V_DAMAGED,
               "does not hold \"MANIFEST-NNNNNN\" and a newline");
        return;
    }
    c->manifest_number = number;
    snprintf(text, sizeof text, "MANIFEST-%06" PRIu64, number);
    report(c, "CURRENT", "pointer", e, "1 name", V_OK, "%s", text);
}

/* ---- the manifest ---- */

/* Reads every record of the manifest through the WAL reader: the framing's checksums, and that
 * every record after the header is an edit. Sets *torn when the final record is torn. */
static shale_code scan_manifest(checker *c, const char *path, const char *name, uint64_t *edits,
                                bool *torn, uint64_t *torn_at, shale_error *err)
{
    wal_reader *r = NULL;
    wal_reader_stats st;
    shale_code rc;

    *edits = 0;
    *torn = false;
    rc = wal_reader_open(c->env, path, c->manifest_number, false, &r, err);
    while (rc == SHALE_OK) {
        shale_slice rec;
        uint64_t off;
        rc = wal_reader_next(r, &rec, &off, err);
        if (rc == SHALE_NOT_FOUND) {
            wal_reader_get_stats(r, &st);
            *torn = st.torn_tail;
            *torn_at = st.valid_end;
            rc = SHALE_OK;
            break;
        }
        if (rc == SHALE_OK) {
            unsigned kind = rec.len ? ((const uint8_t *)rec.data)[0] : 0u;
            if (kind != WAL_REC_EDIT) {
                rc = err_set(err, SHALE_CORRUPTION, 0,
                             "%s @%" PRIu64 ": not an edit record (kind %u)", name, off, kind);
                break;
            }
            ++*edits;
        }
    }
    wal_reader_close(r);
    return rc;
}

static void check_manifest(checker *c)
{
    char name[40], checked[32];
    shale_error err = {0};
    shale_buf problems = {0};
    uint64_t edits = 0, torn_at = 0;
    bool torn = false;
    shale_code rc;
    entry *e;
    char *path;

    if (c->manifest_number == 0) {
        return;
    }
    snprintf(name, sizeof name, "MANIFEST-%06" PRIu64, c->manifest_number);
    if ((e = find(c, name)) == NULL) {
        report(c, name, "manifest", NULL, "-", V_DAMAGED, "missing (CURRENT names it)");
        return;
    }
    e->reported = true;
    if ((path = env_join_path(c->dir, name)) == NULL) {
        report_nomem(c, name, "manifest", e);
        return;
    }
    rc = scan_manifest(c, path, name, &edits, &torn, &torn_at, &err);
    free(path);
    snprintf(checked, sizeof checked, "%" PRIu64 " record%s", edits, plural(edits));
    if (rc != SHALE_OK) {
        report_failure(c, name, "manifest", e, checked, &err);
        return;
    }
    version_options vo = {0};
    if ((c->vs = version_set_new(c->env, c->dir, &vo)) == NULL) {
        report_nomem(c, name, "manifest", e);
        return;
    }
    rc = version_set_recover(c->vs, &err);
    if (rc != SHALE_OK) {
        /* The framing was intact, so this is an edit that does not decode or does not apply. */
        report_failure(c, name, "manifest", e, checked, &err);
        version_set_free(c->vs);
        c->vs = NULL;
        return;
    }
    rc = version_set_check(c->vs, &problems, &err);
    if (rc == SHALE_CORRUPTION && problems.len > 0) {
        /* One line per problem, indented under the manifest's line. */
        size_t lines = 0;
        for (size_t i = 0; i < problems.len; i++) {
            lines += ((const char *)problems.data)[i] == '\n';
        }
        lines += ((const char *)problems.data)[problems.len - 1] != '\n';
        report(c, name, "manifest", e, checked, V_DAMAGED, "%zu problem%s:", lines, plural(lines));
        const char *p = problems.data, *end = p + problems.len;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
            char raw[512], msg[512];
            snprintf(raw, sizeof raw, "%.*s", (int)(n < sizeof raw ? n : sizeof raw - 1), p);
            tidy(c, raw, msg, sizeof msg);
            printf("    %s\n", msg);
            p += n + 1;
        }
    } else if (rc != SHALE_OK) {
        report_failure(c, name, "manifest", e, checked, &err);
    } else if (torn) {
        report(c, name, "manifest", e, checked, V_NOTE,
               "torn final record @%" PRIu64
               " ignored: a crash mid-write, or a damaged last edit; the state before it, which "
               "the engine keeps whole, is what is checked",
               torn_at);
    } else {
        report(c, name, "manifest", e, checked, V_OK, "logs from #%" PRIu64,
               version_set_log_number(c->vs));
    }
    buf_free(&problems);
}

/* ---- tables ---- */

/* Verifies one table. `level` is -1 and `listed` false when no readable manifest says where it
 * belongs (every table in the directory is then checked on its own). */
static void check_table(checker *c, uint64_t number, int level, uint64_t size, bool listed)
{
    char name[32], kind[24], checked[32] = "-";
    shale_error err = {0};
    uint64_t blocks = 0;
    entry *e;
    char *path;

    snprintf(name, sizeof name, "%06" PRIu64 ".sst", number);
    if (level >= 0) {
        snprintf(kind, sizeof kind, "table L%d", level);
    } else {
        snprintf(kind, sizeof kind, "table");
    }
    if ((e = find(c, name)) == NULL) {
        report(c, name, kind, NULL, "-", V_DAMAGED, "missing (the manifest lists it)");
        return;
    }
    e->reported = true;
    if (listed && e->size_known && e->size != size) {
        report(c, name, kind, e, "-", V_DAMAGED, "%" PRIu64 " bytes, the manifest says %" PRIu64,
               e->size, size);
        return;
    }
    if ((path = env_join_path(c->dir, name)) == NULL) {
        report_nomem(c, name, kind, e);
        return;
    }
    shale_code rc = sst_verify(c->env, path, number, &blocks, &err);
    free(path);
    snprintf(checked, sizeof checked, "%" PRIu64 " block%s", blocks, plural(blocks));
    if (rc != SHALE_OK) {
        report_failure(c, name, kind, e, checked, &err);
    } else if (!listed) {
        report(c, name, kind, e, checked, V_OK, "level unknown: no readable manifest");
    } else {
        report(c, name, kind, e, checked, V_OK, NULL);
    }
}

static void check_tables(checker *c)
{
    uint64_t number;

    if (c->vs != NULL) {
        version *v = version_set_current(c->vs);
        for (int l = 0; l < VERSION_LEVELS; l++) {
            for (size_t i = 0; i < v->nfiles[l]; i++) {
                const file_meta *m = v->files[l][i];
                check_table(c, m->number, l, m->size, true);
            }
        }
        version_unref(v);
        return;
    }
    for (size_t i = 0; i < c->nfiles; i++) {
        if (!c->files[i].is_dir && is_kind(c->files[i].name, VERSION_FILE_TABLE, &number)) {
            check_table(c, number, -1, 0, false);
        }
    }
}

/* ---- log segments ---- */

static shale_code count_op(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    (void)seq;
    (void)op;
    (void)err;
    ++*(uint64_t *)arg;
    return SHALE_OK;
}

/* Checks one log record as recovery would replay it (src/lsm/recovery.c): a batch record whose
 * sequence numbers follow the previous batch's, and whose ops all decode. */
static shale_code check_batch(const char *name, shale_slice rec, uint64_t off, uint64_t *last_seq,
                              shale_error *err)
{
    const uint8_t *p = rec.data;
    shale_error berr = {0};
    uint64_t ops = 0;

    if (rec.len < 1 + BATCH_HEADER_BYTES || p[0] != WAL_REC_BATCH) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s @%" PRIu64 ": not a batch record (kind %u)",
                       name, off, rec.len ? p[0] : 0u);
    }
    uint64_t seq = batch_rep_seq(p + 1);
    uint32_t count = batch_rep_count(p + 1);
    if (seq <= *last_seq || count == 0 || seq + count - 1 > IKEY_MAX_SEQ || seq + count - 1 < seq) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s @%" PRIu64 ": batch sequence %" PRIu64 " (+%" PRIu32 ") after %" PRIu64,
                       name, off, seq, count, *last_seq);
    }
    shale_code rc = batch_iterate(p + 1, rec.len - 1, count_op, &ops, &berr);
    if (rc != SHALE_OK) {
        return err_set(err, rc, berr.sys_errno, "%s @%" PRIu64 ": %s", name, off, berr.msg);
    }
    *last_seq = seq + count - 1;
    return SHALE_OK;
}

/* The segment's WAL_REC_PREV claim about the one before it (as recovery's check_prev). */
static shale_code check_prev(checker *c, const char *name, const wal_reader_stats *st,
                             uint64_t first, shale_error *err)
{
    char prev[32];

    if (!st->has_prev || st->prev_number < first) {
        return SHALE_OK;
    }
    snprintf(prev, sizeof prev, "%06" PRIu64 ".log", st->prev_number);
    const entry *p = find(c, prev);
    if (p == NULL || p->is_dir) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s names %s as the segment before it, which is missing", name, prev);
    }
    if (p->size_known && p->size != st->prev_size) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s is %" PRIu64 " bytes, but %s (made after it was closed) says it ended "
                       "at %" PRIu64,
                       prev, p->size, name, st->prev_size);
    }
    return SHALE_OK;
}

/* Reads segment `name` through: *records counts its records (each batch checked as recovery
 * would when last_seq is not NULL), *st gets the reader's stats. */
static shale_code read_segment(checker *c, const char *name, uint64_t number, uint64_t *last_seq,
                               uint64_t *records, wal_reader_stats *st, shale_error *err)
{
    wal_reader *r = NULL;
    char *path = env_join_path(c->dir, name);

    *records = 0;
    memset(st, 0, sizeof *st);
    if (path == NULL) {
        return err_nomem(err);
    }
    shale_code rc = wal_reader_open(c->env, path, number, false, &r, err);
    while (rc == SHALE_OK) {
        shale_slice rec;
        uint64_t off;
        rc = wal_reader_next(r, &rec, &off, err);
        if (rc == SHALE_NOT_FOUND) {
            rc = SHALE_OK;
            break;
        }
        if (rc == SHALE_OK && last_seq != NULL) {
            rc = check_batch(name, rec, off, last_seq, err);
        }
        *records += rc == SHALE_OK;
    }
    if (r != NULL) {
        wal_reader_get_stats(r, st);
    }
    wal_reader_close(r);
    free(path);
    return rc;
}

static void check_log(checker *c, uint64_t number, uint64_t first, bool is_last, uint64_t *last_seq)
{
    char name[32], checked[32];
    shale_error err = {0};
    wal_reader_stats st;
    uint64_t records;
    entry *e;

    snprintf(name, sizeof name, "%06" PRIu64 ".log", number);
    e = find(c, name);
    if (e == NULL) {
        return; /* cannot happen: the number came from the listing */
    }
    e->reported = true;
    shale_code rc = read_segment(c, name, number, last_seq, &records, &st, &err);
    snprintf(checked, sizeof checked, "%" PRIu64 " record%s", records, plural(records));
    if (rc == SHALE_OK && records > 0) {
        /* As recovery: a segment without records (a failed creation) claims nothing. */
        rc = check_prev(c, name, &st, first, &err);
    }
    if (rc != SHALE_OK) {
        report_failure(c, name, "log", e, checked, &err);
    } else if (!st.torn_tail) {
        report(c, name, "log", e, checked, V_OK, NULL);
    } else if (!is_last) {
        /* Segments are synced before the next is created, so only the last can be torn. */
        report(c, name, "log", e, checked, V_DAMAGED,
               "%s @%" PRIu64 ": incomplete record in a segment that is not the last", name,
               st.valid_end);
    } else if (st.valid_end == 0) {
        report(c, name, "log", e, checked, V_NOTE,
               "torn header: no complete record (a crash mid-write); the next open removes it");
    } else {
        report(c, name, "log", e, checked, V_NOTE,
               "torn tail @%" PRIu64 ": %" PRIu64
               " bytes of an unacknowledged write (a crash mid-write); the next open cuts them",
               st.valid_end, st.file_size - st.valid_end);
    }
}

/* A segment kept for the state before the manifest's last edit: recovery replays it only if
 * that edit is lost, and then it must be whole (closed segments are synced), so it is read
 * through and any damage reported, though today's state does not need it. */
static void check_kept_log(checker *c, const char *name, uint64_t number, entry *e)
{
    shale_error err = {0};
    wal_reader_stats st;
    uint64_t records;
    char checked[32];

    shale_code rc = read_segment(c, name, number, NULL, &records, &st, &err);
    snprintf(checked, sizeof checked, "%" PRIu64 " record%s", records, plural(records));
    if (rc != SHALE_OK) {
        report_failure(c, name, "log", e, checked, &err);
    } else if (st.torn_tail) {
        report(c, name, "log", e, checked, V_DAMAGED,
               "%s @%" PRIu64 ": incomplete record in a kept segment (closed ones are whole)", name,
               st.valid_end);
    } else {
        report(c, name, "log", e, checked, V_NOTE,
               "kept: covered by a table, but the state before the manifest's last edit "
               "replays it; deleted after the next edit");
    }
}

/* The live segments (numbered from the manifest's log number; all of them when no manifest is
 * readable), in order: the last one alone may have a torn tail. */
static void check_logs(checker *c)
{
    uint64_t first = c->vs != NULL ? version_set_log_number(c->vs) : 0, last_seq = 0;
    uint64_t *numbers = calloc(c->nfiles ? c->nfiles : 1, sizeof *numbers);
    size_t n = 0;

    if (numbers == NULL) {
        report_nomem(c, "*.log", "log", NULL);
        return;
    }
    for (size_t i = 0; i < c->nfiles; i++) {
        if (!c->files[i].is_dir && is_kind(c->files[i].name, VERSION_FILE_LOG, &numbers[n]) &&
            numbers[n] >= first) {
            n++;
        }
    }
    qsort(numbers, n, sizeof *numbers, version_cmp_u64);
    for (size_t i = 0; i < n; i++) {
        check_log(c, numbers[i], first, i + 1 == n, &last_seq);
    }
    free(numbers);
}

/* ---- everything else ---- */

static bool numbers_has(const version_numbers *s, uint64_t number)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i] == number) {
            return true;
        }
    }
    return false;
}

static void check_rest(checker *c)
{
    uint64_t first = c->vs != NULL ? version_set_log_number(c->vs) : 0, n;
    /* The one-edit lag: what the state before the manifest's last edit needs stays on disk. */
    uint64_t kept_first = c->vs != NULL ? version_set_kept_log_number(c->vs) : 0;
    version_numbers kept = {
        0}; /* the current tables (reported already) and those the last edit removed */

    if (c->vs != NULL) {
        version_set_live_files(c->vs, version_numbers_add, &kept);
    }

    for (size_t i = 0; i < c->nfiles; i++) {
        entry *e = &c->files[i];
        const char *name = e->name;
        if (e->reported) {
            continue;
        }
        e->reported = true;
        if (e->is_dir) {
            report(c, name, "directory", e, "-", V_NOTE, "not part of a Shale database");
        } else if (strcmp(name, "LOCK") == 0) {
            report(c, name, "lock", e, "-", V_OK, NULL);
        } else if (strcmp(name, "LOG") == 0 || strcmp(name, "LOG.old") == 0) {
            report(c, name, "info log", e, "-", V_OK, "text, not checked");
        } else if (has_suffix(name, ".tmp")) {
            report(c, name, "temporary", e, "-", V_NOTE,
                   "leftover of an interrupted write, never used; the next open deletes it");
        } else if (is_kind(name, VERSION_FILE_LOG, &n) && n >= kept_first) {
            check_kept_log(c, name, n, e);
        } else if (is_kind(name, VERSION_FILE_TABLE, &n) && numbers_has(&kept, n)) {
            report(c, name, "table", e, "-", V_NOTE,
                   "kept: the manifest's last edit removed it, but the state before that edit "
                   "lists it; deleted after the next edit");
        } else if (is_kind(name, VERSION_FILE_LOG, &n)) {
            report(c, name, "log", e, "-", V_NOTE,
                   "leftover: obsolete (the manifest's logs start at #%" PRIu64
                   "); the next open deletes it",
                   first);
        } else if (is_kind(name, VERSION_FILE_TABLE, &n)) {
            report(c, name, "table", e, "-", V_NOTE,
                   "leftover: the manifest does not list it; the next open deletes it");
        } else if (is_kind(name, VERSION_FILE_MANIFEST, &n)) {
            if (c->manifest_number != 0) {
                report(c, name, "manifest", e, "-", V_NOTE,
                       "leftover: CURRENT names another; the next open deletes it");
            } else {
                report(c, name, "manifest", e, "-", V_NOTE, "not checked: no CURRENT names it");
            }
        } else {
            report(c, name, "unknown", e, "-", V_NOTE, "not a Shale file");
        }
    }
    free(kept.v);
}

/* ---- the command ---- */

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

/* Lists the directory into c->files (sorted) with each file's size. */
static shale_code load_dir(checker *c, shale_error *err)
{
    char **names = NULL;
    size_t count = 0;
    shale_code rc = c->env->list_dir(c->env, c->dir, &names, &count, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    c->files = calloc(count ? count : 1, sizeof *c->files);
    if (c->files == NULL) {
        env_free_names(names, count);
        return err_nomem(err);
    }
    /* The names move into the entries; only the array is freed here. */
    for (size_t i = 0; i < count; i++) {
        entry *e = &c->files[c->nfiles++];
        char *path = env_join_path(c->dir, names[i]);
        e->name = names[i];
        if (path != NULL) {
            e->size_known = c->env->stat_path(c->env, path, &e->is_dir, &e->size, NULL) == SHALE_OK;
        }
        free(path);
    }
    free(names);
    qsort(c->files, c->nfiles, sizeof *c->files, cmp_entry);
    return SHALE_OK;
}

/* Does the directory look like a Shale database at all? Asked before taking the lock, so that a
 * foreign directory is refused without leaving a LOCK file in it. A damaged database (SHALE
 * lost, say) still counts when it holds any of Shale's own files. */
static shale_code looks_like_db(const checker *c, bool *out, shale_error *err)
{
    char **names = NULL;
    size_t count = 0;
    uint64_t n;
    shale_code rc = c->env->list_dir(c->env, c->dir, &names, &count, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    *out = false;
    for (size_t i = 0; i < count; i++) {
        const char *name = names[i];
        if (strcmp(name, ID_NAME) == 0 || strcmp(name, "CURRENT") == 0 ||
            is_kind(name, VERSION_FILE_MANIFEST, &n) || is_kind(name, VERSION_FILE_TABLE, &n) ||
            is_kind(name, VERSION_FILE_LOG, &n)) {
            *out = true;
        }
    }
    env_free_names(names, count);
    return SHALE_OK;
}

static const cli_flag_spec check_flags[] = {
    {"repair", "NEWDIR",
     "salvage what is readable into a new database in NEWDIR (new or empty); DIR is not changed"},
    {NULL, NULL, NULL},
};

static const cli_spec check_spec = {
    .name = "check",
    .args = "DIR",
    .summary = "Verifies every file of the database in DIR without changing anything.",
    .details =
        "Checks the identity file SHALE, CURRENT, the manifest (every record's checksum, the\n"
        "replayed state and its consistency with the directory), every table the manifest\n"
        "lists (every block's checksum, the key order), and every live log segment (every\n"
        "record's checksum and batch), and lists the other files. One line per file: name,\n"
        "kind, size in bytes, what was checked, then OK; NOTE (intact but worth knowing: a\n"
        "torn log tail from a crash, which the next open cuts, or a leftover file, which it\n"
        "deletes); DAMAGED, with what and where; or ERROR (the file could not be read).\n"
        "\n"
        "\n"
        "When no file is damaged, the documents are checked too, on a read-only open: each\n"
        "collection's documents decode, every index entry matches its document's current\n"
        "value and every document has its entries, and every key under the document prefix\n"
        "belongs to a collection or an index. One line per collection, each problem before\n"
        "it (DAMAGED: ...), then a summary; nothing when the database has no collections.\n"
        "\n"
        "The database must not be open in any process: check takes its LOCK and exits 2 if\n"
        "it is in use. Nothing is modified: no recovery, no truncation, no deletion.\n"
        "\n"
        "Exit status: 0 no damage (notes allowed); 1 damage found; 2 the check could not\n"
        "run or could not read a file (bad usage, not a database, in use, I/O error).\n"
        "\n"
        "With --repair NEWDIR, instead of the check: every table and log segment of DIR\n"
        "(listed in the manifest or not) is read, every block and record that checksums and\n"
        "decodes is kept with its sequence number, and the result is written as a new\n"
        "database in NEWDIR (which must not exist or be empty). DIR is only read (its LOCK is\n"
        "taken). The report lists what was salvaged and each loss (file, offset, bytes, and\n"
        "for a table block the key range), then the document check of NEWDIR. Exit status:\n"
        "0 nothing lost; 1 something was lost (or the documents of NEWDIR have problems) but\n"
        "NEWDIR was written; 2 no database could be produced.\n",
    .min_args = 1,
    .max_args = 1,
    .flags = check_flags,
};

/* ---- documents ---- */

static void doc_header(checker *c)
{
    if (!c->doc_header) {
        printf("\nDOCUMENTS\n");
        c->doc_header = true;
    }
}

static void on_doc_problem(void *arg, docdb_problem kind, const char *msg)
{
    checker *c = arg;
    (void)kind;
    c->doc_problems++;
    if (c->doc_printed < DOC_PRINT_MAX) {
        doc_header(c);
        printf("  DAMAGED: %s\n", msg);
        c->doc_printed++;
    }
}

static void on_doc_collection(void *arg, const docdb_check_coll *s)
{
    checker *c = arg;
    doc_header(c);
    printf("collection %s: %" PRIu64 " document%s, %" PRIu64 " index%s, %" PRIu64 " index entr%s: ",
           s->name, s->documents, plural(s->documents), s->indexes, s->indexes == 1 ? "" : "es",
           s->entries, s->entries == 1 ? "y" : "ies");
    if (s->problems == 0) {
        printf("ok");
    } else {
        printf("%" PRIu64 " problem%s", s->problems, plural(s->problems));
    }
    if (s->building > 0) {
        printf(" (%" PRIu64 " index%s still building: creating it again finishes the build)",
               s->building, s->building == 1 ? "" : "es");
    }
    putchar('\n');
}

/* Opens the database read-only and checks its documents. Returns the verdict: V_OK (also when
 * there is nothing to check), V_DAMAGED, or V_ERROR (printed). */
static verdict check_documents(checker *c)
{
    shale_options ro = {.read_only = true, .env = c->env};
    shale_db *db = NULL;
    shale_error err = {0};
    char msg[sizeof err.msg];

    shale_code code = shale_open(c->dir, &ro, &db, &err);
    if (code != SHALE_OK) {
        doc_header(c);
        tidy(c, err.msg, msg, sizeof msg);
        printf("  %s: the read-only open failed: %s\n",
               code == SHALE_CORRUPTION ? "DAMAGED" : "ERROR", msg);
        c->doc_problems += code == SHALE_CORRUPTION;
        return code == SHALE_CORRUPTION ? V_DAMAGED : V_ERROR;
    }
    docdb_check_report rep = {
        .on_problem = on_doc_problem, .on_collection = on_doc_collection, .arg = c};
    code = docdb_check(db, &rep, &err);
    verdict v = rep.problems > 0 ? V_DAMAGED : V_OK;
    if (code != SHALE_OK) {
        doc_header(c);
        tidy(c, err.msg, msg, sizeof msg);
        printf("  %s: %s\n", code == SHALE_CORRUPTION ? "DAMAGED" : "ERROR", msg);
        c->doc_problems += code == SHALE_CORRUPTION;
        v = code == SHALE_CORRUPTION ? V_DAMAGED : v == V_DAMAGED ? V_DAMAGED : V_ERROR;
    }
    if (c->doc_problems > c->doc_printed) {
        printf("  ... and %" PRIu64 " more problem%s\n", c->doc_problems - c->doc_printed,
               plural(c->doc_problems - c->doc_printed));
    }
    if (c->doc_header) {
        printf("\n%" PRIu64 " collection%s, %" PRIu64 " document%s, %" PRIu64 " index%s, %" PRIu64
               " index entr%s: %" PRIu64 " problem%s",
               rep.collections, plural(rep.collections), rep.documents, plural(rep.documents),
               rep.indexes, rep.indexes == 1 ? "" : "es", rep.entries,
               rep.entries == 1 ? "y" : "ies", rep.problems, plural(rep.problems));
        if (rep.pending > 0) {
            printf(", %" PRIu64 " key%s of dropped collections or indexes not yet removed",
                   rep.pending, plural(rep.pending));
        }
        printf(": %s\n", v == V_DAMAGED ? "DAMAGED" : v == V_ERROR ? "INCOMPLETE" : "clean");
    }
    (void)shale_close(db, NULL);
    return v;
}

static int run_check(checker *c)
{
    shale_error err = {0};
    env_lock *lock = NULL;
    bool is_dir = false, is_db = false;
    uint64_t size = 0;
    char *lock_path = NULL;
    int rc = CLI_ERROR;

    shale_code code = c->env->stat_path(c->env, c->dir, &is_dir, &size, &err);
    if (code == SHALE_NOT_FOUND) {
        return cli_errorf("check", "%s: does not exist", c->dir);
    }
    if (code != SHALE_OK) {
        return cli_fail("check", &err);
    }
    if (!is_dir) {
        return cli_errorf("check", "%s: not a directory", c->dir);
    }
    if (looks_like_db(c, &is_db, &err) != SHALE_OK) {
        return cli_fail("check", &err);
    }
    if (!is_db) {
        return cli_errorf("check", "%s: not a Shale database (no %s file)", c->dir, ID_NAME);
    }
    if ((lock_path = env_join_path(c->dir, "LOCK")) == NULL) {
        return cli_errorf("check", "out of memory");
    }
    code = c->env->lock_file(c->env, lock_path, &lock, &err);
    free(lock_path);
    if (code == SHALE_BUSY) {
        return cli_errorf("check", "%s: in use by another process; close it before checking",
                          c->dir);
    }
    if (code != SHALE_OK) {
        return cli_fail("check", &err);
    }
    if (load_dir(c, &err) != SHALE_OK) {
        rc = cli_fail("check", &err);
        goto out;
    }

    printf("%-18s %-10s %12s  %-12s %s\n", "FILE", "KIND", "BYTES", "CHECKED", "STATUS");
    check_identity(c);
    check_current(c);
    check_manifest(c);
    check_tables(c);
    check_logs(c);
    check_rest(c);
    printf("\n%zu file%s: %u damage finding%s, %u note%s, %u unreadable: %s\n", c->nfiles,
           plural(c->nfiles), c->damaged, plural(c->damaged), c->notes, plural(c->notes), c->errors,
           c->damaged  ? "DAMAGED"
           : c->errors ? "INCOMPLETE (not all files could be read)"
                       : "clean");
    verdict docs = V_OK;
    if (c->damaged == 0 && c->errors == 0) {
        /* The open takes the LOCK itself (and the same process cannot hold it twice). */
        (void)c->env->unlock_file(c->env, lock, NULL);
        lock = NULL;
        docs = check_documents(c);
    }
    if (docs == V_DAMAGED) {
        rc = CLI_DAMAGED;
        cli_errorf("check", "%s: the documents are damaged (%" PRIu64 " problem%s, see the report)",
                   c->dir, c->doc_problems, plural(c->doc_problems));
    } else if (docs == V_ERROR) {
        rc = cli_errorf("check", "%s: the documents could not be checked (see the report)", c->dir);
    } else if (c->damaged > 0) {
        rc = CLI_DAMAGED;
        cli_errorf("check", "%s: damage found (%u finding%s, see the report)", c->dir, c->damaged,
                   plural(c->damaged));
    } else if (c->errors > 0) {
        rc = cli_errorf("check", "%s: %u file%s could not be checked (see the report)", c->dir,
                        c->errors, plural(c->errors));
    } else {
        rc = CLI_OK;
    }
out:
    (void)c->env->unlock_file(c->env, lock, NULL);
    return rc;
}

/* ---- --repair ---- */

/* Strips trailing slashes in place; false if nothing is left. */
static bool trim_dir(char *dir, size_t *len)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') {
        dir[--n] = '\0';
    }
    *len = n;
    return n > 0;
}

static void print_repair_report(const repair_report *r)
{
    printf("REPAIR\n");
    printf("tables:  %" PRIu64 " read, %" PRIu64 " lost whole (%" PRIu64 " bytes); %" PRIu64
           " data block%s salvaged, %" PRIu64 " lost (%" PRIu64 " bytes)\n",
           r->tables_read, r->tables_lost, r->table_lost_bytes, r->blocks_salvaged,
           plural(r->blocks_salvaged), r->blocks_lost, r->block_lost_bytes);
    printf("logs:    %" PRIu64 " segment%s read, %" PRIu64 " record%s salvaged, %" PRIu64
           " damaged region%s or record%s lost (%" PRIu64 " bytes)",
           r->log_segments, plural(r->log_segments), r->log_records, plural(r->log_records),
           r->log_records_lost, plural(r->log_records_lost), plural(r->log_records_lost),
           r->log_lost_bytes);
    if (r->torn_tail_bytes > 0) {
        printf(", torn tail %" PRIu64 " bytes", r->torn_tail_bytes);
    }
    putchar('\n');
    printf("written: %" PRIu64 " entr%s (of %" PRIu64 " read) in %" PRIu64 " table%s, seq %" PRIu64
           " .. %" PRIu64 "\n",
           r->entries_written, r->entries_written == 1 ? "y" : "ies", r->entries_read,
           r->tables_written, plural(r->tables_written), r->first_seq, r->last_seq);
    if (r->manifest_ok) {
        printf("manifest: last seq %" PRIu64
               " (for information; not used to decide what to keep)\n",
               r->manifest_last_seq);
    }
    printf("identity: %s\n", r->identity_copied ? "copied" : "fresh");
    for (size_t i = 0; i < r->nlosses; i++) {
        printf("  %s: %s\n", r->losses[i].note ? "NOTE" : "LOST", r->losses[i].what);
    }
    if (r->nlosses_total > r->nlosses) {
        printf("  ... and %" PRIu64 " more\n", r->nlosses_total - r->nlosses);
    }
}

static int run_repair(const char *src, const char *dst_arg)
{
    repair_report *rep = calloc(1, sizeof *rep);
    shale_error err = {0};
    char *dst = strdup(dst_arg);
    checker c;
    size_t n;
    int rc;

    if (rep == NULL || dst == NULL) {
        free(rep);
        free(dst);
        return cli_errorf("check", "out of memory");
    }
    if (!trim_dir(dst, &n)) {
        free(rep);
        free(dst);
        return cli_errorf("check", "--repair: the directory name must not be empty");
    }
    shale_code code = repair_salvage(env_posix(), src, dst, rep, &err);
    if (code != SHALE_OK) {
        rc = cli_fail("check", &err);
        free(rep);
        free(dst);
        return rc;
    }
    print_repair_report(rep);
    bool lost = repair_lost_anything(rep);
    printf("\n%s: %s\n", dst, lost ? "written, with LOSSES (see above)" : "written, nothing lost");

    /* The documents of the new database, on a read-only open (nothing is fixed). */
    memset(&c, 0, sizeof c);
    c.env = env_posix();
    c.dir = dst;
    c.dir_len = n;
    verdict docs = check_documents(&c);
    if (lost) {
        rc = CLI_DAMAGED;
        cli_errorf("check", "%s: salvaged into %s with losses (see the report)", src, dst);
    } else if (docs != V_OK) {
        rc = CLI_DAMAGED;
        cli_errorf("check", "%s: salvaged into %s, but its documents %s (see the report)", src, dst,
                   docs == V_DAMAGED ? "have problems" : "could not be checked");
    } else {
        rc = CLI_OK;
    }
    free(rep);
    free(dst);
    return rc;
}

int cmd_check(int argc, char **argv)
{
    cli_args a;
    checker c;
    int rc;

    if (!cli_parse(&check_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (a.value[0] != NULL) {
        char *src = strdup(a.pos[0]);
        size_t sn;
        if (src == NULL) {
            return cli_errorf("check", "out of memory");
        }
        if (!trim_dir(src, &sn)) {
            free(src);
            return cli_errorf("check", "the directory name must not be empty");
        }
        rc = run_repair(src, a.value[0]);
        free(src);
        return rc;
    }
    memset(&c, 0, sizeof c);
    c.env = env_posix();
    /* Without trailing slashes, so paths read "DIR/NAME" and messages trim cleanly. */
    char *dir = strdup(a.pos[0]);
    if (dir == NULL) {
        return cli_errorf("check", "out of memory");
    }
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') {
        dir[--n] = '\0';
    }
    if (n == 0) {
        free(dir);
        return cli_errorf("check", "the directory name must not be empty");
    }
    c.dir = dir;
    c.dir_len = n;
    rc = run_check(&c);
    if (c.vs != NULL) {
        version_set_free(c.vs);
    }
    for (size_t i = 0; i < c.nfiles; i++) {
        free(c.files[i].name);
    }
    free(c.files);
    free(dir);
    return rc;
}
