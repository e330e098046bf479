/*
 * cmd_export: `shale export` and `shale import` (documents as JSON Lines), and the JSON Lines
 * loader they share with `shale doc insert` reading standard input.
 *
 * Format. One JSON value per line, '\n' between lines:
 *   - `shale export DIR COLL` writes each document of COLL as it is stored (compact JSON, fields
 *     in the stored order, "_id" included), in _id order; `shale import DIR COLL` reads that.
 *   - `shale export DIR` writes every collection, in name order, each line
 *     {"collection":"NAME","document":{...}}; `shale import DIR` (no COLL) reads that and puts
 *     every document back into its collection.
 * On input a trailing '\r' is dropped (CRLF files) and lines holding only spaces and tabs are
 * skipped (they still count for line numbers). A line may be up to the database's
 * max_value_bytes (--max-value-bytes, default 4 MiB) long.
 *
 * Memory stays bounded whatever the size of the data: export streams each collection through
 * a shale_doc_cursor (one document in memory at a time; each collection is read at its own
 * snapshot, so an export taken while writes go on is consistent per collection, not across
 * them). Import reads one line at a time and holds one batch: at most 1000 documents and, unless
 * a single line is larger, at most a quarter of the write buffer (a batch is one transaction,
 * and a transaction may hold at most the write buffer). A batch the library still finds too
 * large for one transaction is split in halves.
 *
 * Failure. Each batch is one shale_doc_insert_many: all of it or nothing. A bad line (invalid
 * JSON, a bad document, an _id that exists) stops the import with "line N: <reason>", and the
 * message says which lines were committed before it; nothing from the failing batch on was
 * written. Re-running from the first line not committed (tail -n +M) resumes the import.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "cli/cli.h"
#include "doc/docdb.h"
#include "doc/dval.h"

#define CHUNK_BYTES     (64u << 10) /* stdin is read this much at a time */
#define MIN_BATCH_BYTES (64u << 10)

/* ---- reading lines with a bound ---- */

typedef struct line_reader {
    FILE *f;
    char *chunk;
    size_t pos, end;
    bool eof;
    size_t max; /* longest line accepted, '\n' excluded */
    shale_buf line;
    uint64_t lineno; /* of the line last returned */
} line_reader;

enum { LINE_OK, LINE_EOF, LINE_TOO_LONG, LINE_READ_ERROR, LINE_NOMEM };

/* The next line (without its '\n' and a trailing '\r') in r->line. */
static int next_line(line_reader *r)
{
    bool started = false;

    r->line.len = 0;
    for (;;) {
        if (r->pos == r->end) {
            if (r->eof) {
                if (!started) {
                    return LINE_EOF;
                }
                break; /* a last line without '\n' */
            }
            size_t n = fread(r->chunk, 1, CHUNK_BYTES, r->f);
            if (n == 0) {
                if (ferror(r->f)) {
                    return LINE_READ_ERROR;
                }
                r->eof = true;
                continue;
            }
            r->pos = 0;
            r->end = n;
        }
        started = true;
        const char *s = r->chunk + r->pos;
        const char *nl = memchr(s, '\n', r->end - r->pos);
        size_t take = nl != NULL ? (size_t)(nl - s) : r->end - r->pos;
        if (r->line.len + take > r->max) {
            r->lineno++;
            return LINE_TOO_LONG;
        }
        if (buf_append(&r->line, s, take, NULL) != SHALE_OK) {
            return LINE_NOMEM;
        }
        r->pos += take + (nl != NULL);
        if (nl != NULL) {
            break;
        }
    }
    r->lineno++;
    if (r->line.len > 0 && ((char *)r->line.data)[r->line.len - 1] == '\r') {
        r->line.len--;
    }
    return LINE_OK;
}

static bool blank(const shale_buf *b)
{
    const char *p = b->data;
    for (size_t i = 0; i < b->len; i++) {
        if (p[i] != ' ' && p[i] != '\t') {
            return false;
        }
    }
    return true;
}

/* ---- the loader ---- */

typedef struct loader {
    const char *cmd;
    shale_db *db;
    bool print;
    size_t batch_bytes;
    /* The batch: document i is text[off[i], off[i + 1]), read from line[i], for collection coll. */
    shale_buf text;
    size_t off[DOC_MAX_BATCH + 1];
    uint64_t line[DOC_MAX_BATCH];
    shale_slice docs[DOC_MAX_BATCH];
    size_t n;
    char coll[DOC_NAME_MAX + 1];
    /* Progress. */
    uint64_t committed;      /* documents committed */
    uint64_t committed_line; /* the last line of the last committed batch; 0: none */
    shale_buf out, parsed, scratch;
} loader;

/* Prints "shale CMD: WHERE: REASON (what was committed)" and returns CLI_ERROR. `first_unwritten`
 * is the first line whose document is not in the database. */
static int load_fail(const loader *l, const char *where, const char *reason,
                     uint64_t first_unwritten)
{
    /* The JSON parser counts lines within the one line it was given: drop its "line 1". */
    static const char pre[] = "invalid JSON at line 1, column ";
    char fixed[sizeof((shale_error *)0)->msg];
    if (strncmp(reason, pre, sizeof pre - 1) == 0) {
        snprintf(fixed, sizeof fixed, "invalid JSON at column %s", reason + sizeof pre - 1);
        reason = fixed;
    }
    if (l->committed == 0) {
        return cli_errorf(l->cmd, "%s: %s (nothing was written)", where, reason);
    }
    return cli_errorf(l->cmd,
                      "%s: %s (%" PRIu64 " documents from lines 1-%" PRIu64
                      " were committed; nothing from line %" PRIu64 " on was written)",
                      where, reason, l->committed, l->committed_line, first_unwritten);
}

/* Prints the stored documents of one insert_many: an array of them, or (as the library returns
 * for a batch of one) the document itself. */
static int print_stored(loader *l)
{
    shale_error err = {0};
    if (dval_from_json(l->out.data, l->out.len, false, &l->parsed, &err) != SHALE_OK) {
        return cli_fail(l->cmd, &err);
    }
    dval v = {l->parsed.data, l->parsed.len};
    if (dval_tag_of(v) != DV_ARRAY) {
        fwrite(l->out.data, 1, l->out.len, stdout);
        putchar('\n');
        return CLI_OK;
    }
    dval_iter it;
    shale_slice name;
    dval d;
    dval_iter_init(&it, v);
    while (dval_iter_next(&it, &name, &d)) {
        l->scratch.len = 0;
        if (dval_to_json(d, &l->scratch, &err) != SHALE_OK) {
            return cli_fail(l->cmd, &err);
        }
        fwrite(l->scratch.data, 1, l->scratch.len, stdout);
        putchar('\n');
    }
    return CLI_OK;
}

/* Inserts documents [lo, hi) of the batch in one transaction, or (when that is too large for one
 * transaction) as two halves. */
static int insert_range(loader *l, size_t lo, size_t hi)
{
    shale_error err = {0};
    size_t n = hi - lo;
    shale_code rc =
        shale_doc_insert_many(l->db, l->coll, l->docs + lo, n, l->print ? &l->out : NULL, &err);
    if (rc == SHALE_OK) {
        l->committed += n;
        l->committed_line = l->line[hi - 1];
        return l->print ? print_stored(l) : CLI_OK;
    }
    /* The library names a bad document of a batch as "document I: ..." (shale.h); a message
     * without it is about the batch as a whole. */
    size_t idx = 0;
    int used = 0;
    bool named = sscanf(err.msg, "document %zu: %n", &idx, &used) == 1 && used > 0 && idx < n;
    if (rc == SHALE_FULL && n > 1 && !named) {
        size_t mid = lo + n / 2;
        int crc = insert_range(l, lo, mid);
        return crc != CLI_OK ? crc : insert_range(l, mid, hi);
    }
    const char *reason = err.msg[0] != '\0' ? err.msg : shale_strerror(rc);
    char where[64];
    if (named || n == 1) {
        snprintf(where, sizeof where, "line %" PRIu64, l->line[lo + idx]);
        reason += used;
    } else {
        snprintf(where, sizeof where, "lines %" PRIu64 "-%" PRIu64, l->line[lo], l->line[hi - 1]);
    }
    return load_fail(l, where, reason, l->line[lo]);
}

static int flush(loader *l)
{
    if (l->n == 0) {
        return CLI_OK;
    }
    for (size_t i = 0; i < l->n; i++) {
        l->docs[i] =
            (shale_slice){(const char *)l->text.data + l->off[i], l->off[i + 1] - l->off[i]};
    }
    int rc = insert_range(l, 0, l->n);
    l->n = 0;
    l->text.len = 0;
    return rc;
}

/* Adds one document's text to the batch of collection `coll`, flushing first when the batch is
 * full or belongs to another collection. */
static int add_doc(loader *l, const char *coll, const void *json, size_t len, uint64_t lineno)
{
    if (l->n > 0 && (l->n == DOC_MAX_BATCH || strcmp(coll, l->coll) != 0 ||
                     l->text.len + len > l->batch_bytes)) {
        int rc = flush(l);
        if (rc != CLI_OK) {
            return rc;
        }
    }
    shale_error err = {0};
    if (buf_append(&l->text, json, len, &err) != SHALE_OK) {
        return cli_fail(l->cmd, &err);
    }
    snprintf(l->coll, sizeof l->coll, "%s", coll);
    l->line[l->n] = lineno;
    l->off[++l->n] = l->text.len;
    return CLI_OK;
}

/* A line of the all-collections format: {"collection":NAME,"document":{...}}. */
static int add_wrapped(loader *l, const shale_buf *line, uint64_t lineno)
{
    shale_error err = {0};
    char where[48], reason[320];
    snprintf(where, sizeof where, "line %" PRIu64, lineno);
    if (dval_from_json(line->data, line->len, true, &l->parsed, &err) != SHALE_OK) {
        return load_fail(l, where, err.msg, l->n > 0 ? l->line[0] : lineno);
    }
    dval v = {l->parsed.data, l->parsed.len}, cv, dv;
    if (dval_count(v) != 2 || !dval_field(v, (shale_slice){"collection", 10}, &cv) ||
        !dval_field(v, (shale_slice){"document", 8}, &dv) || dval_tag_of(cv) != DV_STRING ||
        dval_tag_of(dv) != DV_OBJECT) {
        return load_fail(l, where,
                         "expected {\"collection\":NAME,\"document\":{...}} (to import documents "
                         "into one collection, name it: shale import DIR COLLECTION)",
                         l->n > 0 ? l->line[0] : lineno);
    }
    shale_slice name = dval_str(cv);
    char coll[DOC_NAME_MAX + 1];
    snprintf(coll, sizeof coll, "%.*s", (int)(name.len > DOC_NAME_MAX ? DOC_NAME_MAX : name.len),
             (const char *)name.data);
    if (name.len > DOC_NAME_MAX || memchr(name.data, '\0', name.len) != NULL ||
        docdb_check_name(coll, &err) != SHALE_OK) {
        snprintf(reason, sizeof reason, "bad collection name: %s",
                 err.msg[0] != '\0' ? err.msg : "too long or holds a NUL byte");
        return load_fail(l, where, reason, l->n > 0 ? l->line[0] : lineno);
    }
    l->scratch.len = 0;
    if (dval_to_json(dv, &l->scratch, &err) != SHALE_OK) {
        return cli_fail(l->cmd, &err);
    }
    return add_doc(l, coll, l->scratch.data, l->scratch.len, lineno);
}

int cli_load_jsonl(const char *cmd, shale_db *db, const char *coll, FILE *in, size_t max_line,
                   bool print, uint64_t *docs, uint64_t *lines)
{
    line_reader r = {.f = in, .max = max_line};
    loader *l = calloc(1, sizeof *l);
    shale_stats st;
    shale_error err = {0};
    int rc = CLI_OK;

    r.chunk = malloc(CHUNK_BYTES);
    if (l == NULL || r.chunk == NULL) {
        free(l);
        free(r.chunk);
        return cli_errorf(cmd, "out of memory");
    }
    l->cmd = cmd;
    l->db = db;
    l->print = print;
    if (shale_stats_get(db, &st, &err) != SHALE_OK) {
        rc = cli_fail(cmd, &err);
        goto out;
    }
    l->batch_bytes = (size_t)(st.memtable_budget_bytes / 4);
    if (l->batch_bytes < MIN_BATCH_BYTES) {
        l->batch_bytes = MIN_BATCH_BYTES;
    }
    for (;;) {
        int lr = next_line(&r);
        if (lr == LINE_EOF) {
            break;
        }
        char where[48];
        snprintf(where, sizeof where, "line %" PRIu64, r.lineno);
        uint64_t unwritten = l->n > 0 ? l->line[0] : r.lineno;
        if (lr == LINE_TOO_LONG) {
            char reason[128];
            snprintf(reason, sizeof reason,
                     "longer than %zu bytes (the largest document; see --max-value-bytes)",
                     max_line);
            rc = load_fail(l, where, reason, unwritten);
        } else if (lr == LINE_READ_ERROR) {
            rc = load_fail(l, where, "reading the input failed", unwritten);
        } else if (lr == LINE_NOMEM) {
            rc = load_fail(l, where, "out of memory", unwritten);
        } else if (blank(&r.line)) {
            continue;
        } else if (coll != NULL) {
            rc = add_doc(l, coll, r.line.data, r.line.len, r.lineno);
        } else {
            rc = add_wrapped(l, &r.line, r.lineno);
        }
        if (rc != CLI_OK) {
            goto out;
        }
    }
    rc = flush(l);
out:
    if (docs != NULL) {
        *docs = l->committed;
    }
    if (lines != NULL) {
        *lines = r.lineno;
    }
    buf_free(&r.line);
    free(r.chunk);
    buf_free(&l->text);
    buf_free(&l->out);
    buf_free(&l->parsed);
    buf_free(&l->scratch);
    free(l);
    return rc;
}

/* ---- shale export ---- */

static const cli_flag_spec export_flags[] = {
    CLI_FLAG_MAX_VALUE_BYTES,
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_spec export_spec = {
    .name = "export",
    .args = "DIR [COLLECTION]",
    .summary = "Prints documents as JSON Lines: those of COLLECTION, or of every collection.",
    .details = "With COLLECTION: one document per line, in _id order (shale import DIR COLL reads\n"
               "it back). Without: every collection in name order, each line\n"
               "{\"collection\":NAME,\"document\":{...}} (shale import DIR reads it back).\n"
               "Memory stays bounded: documents stream from a cursor, one at a time; each\n"
               "collection is read at one snapshot. Exit 1 if COLLECTION does not exist.\n",
    .min_args = 1,
    .max_args = 2,
    .flags = export_flags,
};

/* The collection names (a JSON array of strings) parsed into `parsed`. */
static int list_collections(const char *cmd, shale_db *db, shale_buf *text, shale_buf *parsed)
{
    shale_error err = {0};
    if (shale_coll_list(db, text, &err) != SHALE_OK ||
        dval_from_json(text->data, text->len, false, parsed, &err) != SHALE_OK) {
        return cli_fail(cmd, &err);
    }
    if (dval_tag_of((dval){parsed->data, parsed->len}) != DV_ARRAY) {
        return cli_errorf(cmd, "the collection list is not an array");
    }
    return CLI_OK;
}

/* Streams one collection; `wrap` prints each document inside the all-collections line. */
static int export_one(const char *cmd, shale_db *db, const char *coll, bool wrap, shale_buf *doc)
{
    shale_doc_cursor *c = NULL;
    shale_error err = {0};
    shale_code rc = shale_doc_cursor_open(db, coll, NULL, &c, &err);

    while (rc == SHALE_OK && (rc = shale_doc_cursor_next(c, doc, &err)) == SHALE_OK) {
        if (wrap) {
            printf("{\"collection\":\"%s\",\"document\":", coll); /* names need no escaping */
        }
        fwrite(doc->data, 1, doc->len, stdout);
        fputs(wrap ? "}\n" : "\n", stdout);
        if (ferror(stdout)) {
            shale_doc_cursor_close(c);
            return cli_errorf(cmd, "writing the output failed");
        }
    }
    shale_doc_cursor_close(c);
    return rc == SHALE_NOT_FOUND ? CLI_OK : cli_fail(cmd, &err);
}

int cmd_export(int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_buf text = {0}, parsed = {0}, doc = {0};
    shale_error err = {0};
    int rc;

    if (!cli_parse(&export_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    const char *only = a.npos > 1 ? a.pos[1] : NULL;
    if (only != NULL && docdb_check_name(only, &err) != SHALE_OK) {
        return cli_fail("export", &err);
    }
    if (cli_open_db(&a, false, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    rc = list_collections("export", db, &text, &parsed);
    bool found = false;
    dval_iter it;
    shale_slice name_unused;
    dval name;
    if (rc == CLI_OK) {
        dval_iter_init(&it, (dval){parsed.data, parsed.len});
    }
    while (rc == CLI_OK && dval_iter_next(&it, &name_unused, &name)) {
        shale_slice s = dval_str(name);
        char coll[DOC_NAME_MAX + 1];
        if (dval_tag_of(name) != DV_STRING || s.len > DOC_NAME_MAX) {
            rc = cli_errorf("export", "the collection list holds a bad name");
            break;
        }
        snprintf(coll, sizeof coll, "%.*s", (int)s.len, (const char *)s.data);
        if (only == NULL) {
            rc = export_one("export", db, coll, true, &doc);
        } else if (strcmp(only, coll) == 0) {
            found = true;
            rc = export_one("export", db, coll, false, &doc);
        }
    }
    if (rc == CLI_OK && only != NULL && !found) {
        rc = CLI_NOT_FOUND;
        cli_errorf("export", "no collection '%s'", only);
    }
    buf_free(&text);
    buf_free(&parsed);
    buf_free(&doc);
    return cli_close("export", db, rc);
}

/* ---- shale import ---- */

static const cli_flag_spec import_flags[] = {
    CLI_FLAG_DURABILITY,
    CLI_FLAG_MAX_VALUE_BYTES,
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_spec import_spec = {
    .name = "import",
    .args = "DIR [COLLECTION]",
    .summary = "Inserts the JSON Lines on standard input (creating the database if missing).",
    .details =
        "With COLLECTION: one document per line (as `shale export DIR COLLECTION` writes them).\n"
        "Without: lines {\"collection\":NAME,\"document\":{...}} (as `shale export DIR` writes).\n"
        "Lines are read one at a time (each at most --max-value-bytes) and inserted in batches of\n"
        "up to 1000 documents, each batch all or nothing. Blank lines are skipped. The counts go\n"
        "to stderr. A bad line stops the import: the message names its line number and the lines\n"
        "committed before it (nothing from the failing batch on is written); exit 2.\n",
    .min_args = 1,
    .max_args = 2,
    .flags = import_flags,
};

int cmd_import(int argc, char **argv)
{
    cli_args a;
    shale_db *db = NULL;
    shale_error err = {0};
    shale_options opts = {.create_if_missing = true};
    uint64_t docs = 0, lines = 0;
    int rc;

    if (!cli_parse(&import_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    const char *coll = a.npos > 1 ? a.pos[1] : NULL;
    if (coll != NULL && docdb_check_name(coll, &err) != SHALE_OK) {
        return cli_fail("import", &err);
    }
    if (!cli_open_options(&a, &opts) || cli_open("import", a.pos[0], &opts, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    size_t max_line =
        opts.max_value_bytes != 0 ? opts.max_value_bytes : CLI_DEFAULT_MAX_VALUE_BYTES;
    rc = cli_load_jsonl("import", db, coll, stdin, max_line, false, &docs, &lines);
    if (rc == CLI_OK) {
        fprintf(stderr, "shale import: %" PRIu64 " document%s from %" PRIu64 " line%s%s%s\n", docs,
                docs == 1 ? "" : "s", lines, lines == 1 ? "" : "s", coll != NULL ? " into " : "",
                coll != NULL ? coll : "");
    }
    return cli_close("import", db, rc);
}
