/*
 * cmd_doc: `shale doc VERB ...`, the document subcommands (the shale_coll_*, shale_doc_* and
 * shale_index_* calls of shale.h): insert, get, update, replace, delete, find, index,
 * collections, describe, drop. Like the key-value subcommands, each run opens the database, does
 * one thing and closes it; only insert creates a missing database.
 *
 * Output: documents print as compact JSON, one per line (JSON Lines), as the library returns
 * them (fields in stored order, "_id" included). `find` prints the documents of one page; the
 * cursors to the neighbouring pages go to stderr as "next_cursor: C" / "prev_cursor: C" lines
 * (only when there is such a page), so stdout stays pure JSON Lines for scripts. `find --all`
 * streams every match through a shale_doc_cursor in constant memory. Exit codes as for every
 * subcommand (cli.h): 1 when the document, collection or index asked for does not exist (get,
 * update, replace, delete, describe, drop, index drop), 2 on bad usage or any other failure.
 *
 * A collection name is checked before the database is opened, so a mistyped name fails without
 * creating a database.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "doc/docdb.h"
#include "doc/dval.h"

static shale_slice arg_slice(const char *s)
{
    return (shale_slice){s, s != NULL ? strlen(s) : 0};
}

static void print_buf(const shale_buf *b)
{
    fwrite(b->data, 1, b->len, stdout);
    putchar('\n');
}

/* The exit code for a library result: 1 for SHALE_NOT_FOUND, 2 for any other failure (both with
 * the library's message on stderr). */
static int result(const char *cmd, shale_code rc, const shale_error *err)
{
    if (rc == SHALE_OK) {
        return CLI_OK;
    }
    cli_fail(cmd, err);
    return rc == SHALE_NOT_FOUND ? CLI_NOT_FOUND : CLI_ERROR;
}

/* Checks the collection name in a->pos[1], then opens the database in a->pos[0]. */
static int open_coll(const cli_args *a, bool create, shale_db **db)
{
    shale_error err = {0};
    *db = NULL;
    if (docdb_check_name(a->pos[1], &err) != SHALE_OK) {
        return cli_fail(a->spec->name, &err);
    }
    return cli_open_db(a, create, db);
}

/* ---- insert ---- */

static const cli_flag_spec insert_flags[] = {
    CLI_FLAG_DURABILITY,
    CLI_FLAG_MAX_VALUE_BYTES,
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_spec insert_spec = {
    .name = "doc insert",
    .args = "DIR COLL [JSON]",
    .summary = "Inserts a document (or, without JSON, the JSON Lines on stdin) into COLL.",
    .details =
        "Creates the database and the collection if missing, and prints each stored document\n"
        "(with its _id, generated when the document has none) as one line. From stdin, one\n"
        "document per line, inserted in batches of up to 1000 (each all or nothing); a bad\n"
        "line stops the insert with its line number and the lines committed before it.\n",
    .min_args = 2,
    .max_args = 3,
    .flags = insert_flags,
};

static int doc_insert(int argc, char **argv)
{
    cli_args a;
    shale_db *db = NULL;
    shale_error err = {0};
    shale_options opts = {.create_if_missing = true};
    shale_buf out = {0};
    int rc;

    if (!cli_parse(&insert_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (docdb_check_name(a.pos[1], &err) != SHALE_OK) {
        return cli_fail(a.spec->name, &err);
    }
    if (!cli_open_options(&a, &opts) || cli_open(a.spec->name, a.pos[0], &opts, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    if (a.npos == 3) {
        shale_code code = shale_doc_insert(db, a.pos[1], arg_slice(a.pos[2]), &out, &err);
        rc = result(a.spec->name, code, &err);
        if (rc == CLI_OK) {
            print_buf(&out);
        }
    } else {
        size_t max_line =
            opts.max_value_bytes != 0 ? opts.max_value_bytes : CLI_DEFAULT_MAX_VALUE_BYTES;
        rc = cli_load_jsonl(a.spec->name, db, a.pos[1], stdin, max_line, true, NULL, NULL);
    }
    shale_buf_free(&out);
    return cli_close(a.spec->name, db, rc);
}

/* ---- get, update, replace, delete ---- */

static const cli_flag_spec read_flags[] = {
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_flag_spec write_flags[] = {
    CLI_FLAG_DURABILITY,
    CLI_FLAG_MAX_VALUE_BYTES,
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_spec get_spec = {
    .name = "doc get",
    .args = "DIR COLL ID",
    .summary = "Prints the document with _id ID; exits 1 if there is none.",
    .details = NULL,
    .min_args = 3,
    .max_args = 3,
    .flags = read_flags,
};

static const cli_spec update_spec = {
    .name = "doc update",
    .args = "DIR COLL ID JSON",
    .summary =
        "Merges the fields of JSON into document ID and prints the result; exit 1 if absent.",
    .details =
        "A shallow merge: each top-level field of JSON replaces or adds that field. An \"_id\"\n"
        "in JSON must equal ID.\n",
    .min_args = 4,
    .max_args = 4,
    .flags = write_flags,
};

static const cli_spec replace_spec = {
    .name = "doc replace",
    .args = "DIR COLL ID JSON",
    .summary = "Replaces document ID with JSON (its _id stays ID) and prints it; exit 1 if absent.",
    .details = NULL,
    .min_args = 4,
    .max_args = 4,
    .flags = write_flags,
};

static const cli_spec delete_spec = {
    .name = "doc delete",
    .args = "DIR COLL ID",
    .summary = "Deletes document ID; exits 1 if there is none.",
    .details = NULL,
    .min_args = 3,
    .max_args = 3,
    .flags = write_flags,
};

enum by_id_op { BY_ID_GET, BY_ID_UPDATE, BY_ID_REPLACE, BY_ID_DELETE };

static int by_id(const cli_spec *spec, enum by_id_op op, int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_error err = {0};
    shale_buf out = {0};
    shale_code code = SHALE_OK;
    int rc;

    if (!cli_parse(spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (open_coll(&a, false, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    const char *coll = a.pos[1];
    shale_slice id = arg_slice(a.pos[2]);
    switch (op) {
    case BY_ID_GET:
        code = shale_doc_get(db, coll, id, &out, &err);
        break;
    case BY_ID_UPDATE:
        code = shale_doc_update(db, coll, id, arg_slice(a.pos[3]), &out, &err);
        break;
    case BY_ID_REPLACE:
        code = shale_doc_replace(db, coll, id, arg_slice(a.pos[3]), &out, &err);
        break;
    case BY_ID_DELETE:
        code = shale_doc_delete(db, coll, id, &err);
        break;
    }
    rc = result(spec->name, code, &err);
    if (rc == CLI_OK && op != BY_ID_DELETE) {
        print_buf(&out);
    }
    shale_buf_free(&out);
    return cli_close(spec->name, db, rc);
}

static int doc_get(int argc, char **argv)
{
    return by_id(&get_spec, BY_ID_GET, argc, argv);
}

static int doc_update(int argc, char **argv)
{
    return by_id(&update_spec, BY_ID_UPDATE, argc, argv);
}

static int doc_replace(int argc, char **argv)
{
    return by_id(&replace_spec, BY_ID_REPLACE, argc, argv);
}

static int doc_delete(int argc, char **argv)
{
    return by_id(&delete_spec, BY_ID_DELETE, argc, argv);
}

/* ---- find ---- */

static const cli_flag_spec find_flags[] = {
    {"filter", "JSON", "only documents matching the filter (docs/DOCUMENTS.md)"},
    {"eq", "FIELD=VALUE", "only documents whose FIELD equals VALUE (repeatable; all must hold)"},
    {"sort", "S", "order by fields, \"a,-b\" (- descending); default by _id"},
    {"fields", "F", "print only these fields, \"a,b.c\" (_id is always kept)"},
    {"limit", "N", "documents per page, 1..1000 (default 50)"},
    {"offset", "N", "skip N matches first, 0..100000"},
    {"after", "CURSOR", "the page after CURSOR (a next_cursor)"},
    {"before", "CURSOR", "the page before CURSOR (a prev_cursor)"},
    {"all", NULL, "stream every match, by _id, in constant memory (no paging flags)"},
    {"explain", NULL, "print how the query runs (plan, index, counts) instead of documents"},
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_spec find_spec = {
    .name = "doc find",
    .args = "DIR COLL",
    .summary = "Prints the documents of COLL that match, one JSON document per line.",
    .details =
        "Without --all, prints one page (--limit, default 50) in the order of --sort, then\n"
        "_id; when there are more pages, their cursors go to stderr as \"next_cursor: C\" and\n"
        "\"prev_cursor: C\" lines, for --after C and --before C. --eq FIELD=VALUE matches a\n"
        "number, true/false or the identical string. --all prints every match by _id\n"
        "(--filter, --eq and --fields apply; --sort, --limit, --offset, --after, --before do\n"
        "not). A collection that does not exist has no documents.\n",
    .min_args = 2,
    .max_args = 2,
    .flags = find_flags,
};

static const cli_flag_spec *spec_flag(const cli_spec *spec, const char *name, size_t len)
{
    for (const cli_flag_spec *f = spec->flags; f->name != NULL; f++) {
        if (strlen(f->name) == len && memcmp(f->name, name, len) == 0) {
            return f;
        }
    }
    return NULL;
}

/* cli_parse keeps a repeated flag's last value; --eq is the one flag that repeats, so its values
 * are collected here, walking argv as cli_parse does (after it accepted argv). Each value is
 * split at its first '=' into names[i] and values[i]. */
static int collect_eq(const cli_spec *spec, int argc, char **argv, shale_slice *names,
                      shale_slice *values, size_t *n)
{
    *n = 0;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] != '-' || arg[2] == '\0') {
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const cli_flag_spec *f = spec_flag(spec, name, len);
        if (f == NULL || f->arg == NULL) {
            continue;
        }
        const char *v = eq != NULL ? eq + 1 : argv[++i];
        if (strcmp(f->name, "eq") != 0) {
            continue;
        }
        const char *sep = strchr(v, '=');
        if (sep == NULL || sep == v) {
            return cli_errorf(spec->name, "--eq: expected FIELD=VALUE, got '%s'", v);
        }
        names[*n] = (shale_slice){v, (size_t)(sep - v)};
        values[*n] = arg_slice(sep + 1);
        (*n)++;
    }
    return CLI_OK;
}

/* Prints the documents of a page, and its cursors on stderr. */
static int print_page(const char *cmd, const shale_buf *page)
{
    shale_error err = {0};
    shale_buf parsed = {0}, doc = {0};
    dval v, docs, cur;
    int rc = CLI_OK;

    if (dval_from_json(page->data, page->len, true, &parsed, &err) != SHALE_OK) {
        rc = cli_fail(cmd, &err);
        goto out;
    }
    v = (dval){parsed.data, parsed.len};
    if (!dval_field(v, (shale_slice){"documents", 9}, &docs) || dval_tag_of(docs) != DV_ARRAY) {
        rc = cli_errorf(cmd, "the page has no documents array");
        goto out;
    }
    dval_iter it;
    shale_slice unused;
    dval d;
    dval_iter_init(&it, docs);
    while (dval_iter_next(&it, &unused, &d)) {
        doc.len = 0;
        if (dval_to_json(d, &doc, &err) != SHALE_OK) {
            rc = cli_fail(cmd, &err);
            goto out;
        }
        print_buf(&doc);
    }
    static const char *const cursors[] = {"next_cursor", "prev_cursor"};
    for (size_t i = 0; i < 2; i++) {
        if (dval_field(v, (shale_slice){cursors[i], 11}, &cur) && dval_tag_of(cur) == DV_STRING) {
            shale_slice s = dval_str(cur);
            fprintf(stderr, "%s: %.*s\n", cursors[i], (int)s.len, (const char *)s.data);
        }
    }
out:
    shale_buf_free(&parsed);
    shale_buf_free(&doc);
    return rc;
}

/* Streams every match through a cursor. */
static int find_all(const char *cmd, shale_db *db, const char *coll, const shale_doc_query *q)
{
    shale_doc_cursor *c = NULL;
    shale_error err = {0};
    shale_buf doc = {0};
    shale_code code = shale_doc_cursor_open(db, coll, q, &c, &err);

    while (code == SHALE_OK && (code = shale_doc_cursor_next(c, &doc, &err)) == SHALE_OK) {
        print_buf(&doc);
        if (ferror(stdout)) {
            break; /* main reports it */
        }
    }
    shale_doc_cursor_close(c);
    shale_buf_free(&doc);
    return code == SHALE_NOT_FOUND || code == SHALE_OK ? CLI_OK : cli_fail(cmd, &err);
}

static int doc_find(int argc, char **argv)
{
    cli_args a;
    shale_db *db = NULL;
    shale_error err = {0};
    shale_buf out = {0};
    shale_doc_query q = {0};
    uint64_t v;
    int rc;

    if (!cli_parse(&find_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    const char *cmd = a.spec->name;
    bool all = cli_has(&a, "all"), explain = cli_has(&a, "explain");
    if (all) {
        static const char *const paged[] = {"sort",  "limit",  "offset",
                                            "after", "before", "explain"};
        for (size_t i = 0; i < sizeof paged / sizeof paged[0]; i++) {
            if (cli_has(&a, paged[i])) {
                return cli_errorf(cmd, "--all streams every match by _id: it takes no --%s",
                                  paged[i]);
            }
        }
    }
    if (cli_has(&a, "limit")) {
        if (!cli_parse_u64(cmd, "limit", cli_flag(&a, "limit"), 1, 1000, &v)) {
            return CLI_ERROR;
        }
        q.limit = (uint32_t)v;
    }
    if (cli_has(&a, "offset") &&
        !cli_parse_u64(cmd, "offset", cli_flag(&a, "offset"), 0, 100000, &q.offset)) {
        return CLI_ERROR;
    }
    /* argc bounds the number of --eq flags. */
    shale_slice *names = calloc((size_t)argc, sizeof *names);
    shale_slice *values = calloc((size_t)argc, sizeof *values);
    if (names == NULL || values == NULL) {
        rc = cli_errorf(cmd, "out of memory");
        goto out;
    }
    rc = collect_eq(&find_spec, argc, argv, names, values, &q.neq);
    if (rc != CLI_OK) {
        goto out;
    }
    q.eq_names = names;
    q.eq_values = values;
    q.filter = arg_slice(cli_flag(&a, "filter"));
    q.sort = arg_slice(cli_flag(&a, "sort"));
    q.fields = arg_slice(cli_flag(&a, "fields"));
    q.after = arg_slice(cli_flag(&a, "after"));
    q.before = arg_slice(cli_flag(&a, "before"));
    rc = open_coll(&a, false, &db);
    if (rc != CLI_OK) {
        goto out;
    }
    if (all) {
        rc = find_all(cmd, db, a.pos[1], &q);
    } else if (explain) {
        rc = result(cmd, shale_doc_explain(db, a.pos[1], &q, &out, &err), &err);
        if (rc == CLI_OK) {
            print_buf(&out);
        }
    } else {
        rc = result(cmd, shale_doc_find(db, a.pos[1], &q, &out, &err), &err);
        if (rc == CLI_OK) {
            rc = print_page(cmd, &out);
        }
    }
    rc = cli_close(cmd, db, rc);
out:
    free(names);
    free(values);
    shale_buf_free(&out);
    return rc;
}

/* ---- index ---- */

static const cli_spec index_spec = {
    .name = "doc index",
    .args = "DIR COLL create|drop|list [FIELD]",
    .summary = "Creates or drops the index on FIELD of COLL, or lists COLL's indexes.",
    .details =
        "FIELD is a dotted path (\"address.city\"). create builds the index over the existing\n"
        "documents; list prints one {\"field\":..,\"state\":..} line per index, _id first.\n"
        "list and drop exit 1 if the collection (or, for drop, the index) does not exist.\n",
    .min_args = 3,
    .max_args = 4,
    .flags = write_flags,
};

static int print_array_lines(const char *cmd, const shale_buf *text)
{
    shale_error err = {0};
    shale_buf parsed = {0}, line = {0};
    int rc = CLI_OK;

    if (dval_from_json(text->data, text->len, false, &parsed, &err) != SHALE_OK) {
        rc = cli_fail(cmd, &err);
    } else if (dval_tag_of((dval){parsed.data, parsed.len}) != DV_ARRAY) {
        rc = cli_errorf(cmd, "the library returned something other than an array");
    } else {
        dval_iter it;
        shale_slice unused;
        dval d;
        dval_iter_init(&it, (dval){parsed.data, parsed.len});
        while (rc == CLI_OK && dval_iter_next(&it, &unused, &d)) {
            line.len = 0;
            if (dval_tag_of(d) == DV_STRING) {
                shale_slice s = dval_str(d); /* a collection name: print it bare */
                fwrite(s.data, 1, s.len, stdout);
                putchar('\n');
            } else if (dval_to_json(d, &line, &err) == SHALE_OK) {
                print_buf(&line);
            } else {
                rc = cli_fail(cmd, &err);
            }
        }
    }
    shale_buf_free(&parsed);
    shale_buf_free(&line);
    return rc;
}

static int verb_index(int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_error err = {0};
    shale_buf out = {0};
    int rc;

    if (!cli_parse(&index_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    const char *cmd = a.spec->name, *action = a.pos[2];
    bool list = strcmp(action, "list") == 0;
    if (!list && strcmp(action, "create") != 0 && strcmp(action, "drop") != 0) {
        return cli_errorf(cmd, "unknown action '%s': expected create, drop or list", action);
    }
    if (list != (a.npos == 3)) {
        return cli_errorf(cmd, list ? "list takes no FIELD" : "%s needs a FIELD", action);
    }
    if (open_coll(&a, false, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    if (list) {
        rc = result(cmd, shale_index_list(db, a.pos[1], &out, &err), &err);
        if (rc == CLI_OK) {
            rc = print_array_lines(cmd, &out);
        }
    } else if (strcmp(action, "create") == 0) {
        rc = result(cmd, shale_index_create(db, a.pos[1], a.pos[3], &err), &err);
    } else {
        rc = result(cmd, shale_index_drop(db, a.pos[1], a.pos[3], &err), &err);
    }
    shale_buf_free(&out);
    return cli_close(cmd, db, rc);
}

/* ---- collections, describe, drop ---- */

static const cli_spec collections_spec = {
    .name = "doc collections",
    .args = "DIR",
    .summary = "Prints the names of the collections, one per line, sorted.",
    .details = NULL,
    .min_args = 1,
    .max_args = 1,
    .flags = read_flags,
};

static int doc_collections(int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_error err = {0};
    shale_buf out = {0};
    int rc;

    if (!cli_parse(&collections_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (cli_open_db(&a, false, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    rc = result(a.spec->name, shale_coll_list(db, &out, &err), &err);
    if (rc == CLI_OK) {
        rc = print_array_lines(a.spec->name, &out);
    }
    shale_buf_free(&out);
    return cli_close(a.spec->name, db, rc);
}

static const cli_spec describe_spec = {
    .name = "doc describe",
    .args = "DIR COLL",
    .summary = "Prints COLL's counts and indexes as one JSON object; exit 1 if it does not exist.",
    .details = "{\"name\":..,\"documents\":N,\"bytes\":N,\"indexes\":[...],\"created_ms\":N}; the\n"
               "counts come from a scan of the collection.\n",
    .min_args = 2,
    .max_args = 2,
    .flags = read_flags,
};

static const cli_spec drop_spec = {
    .name = "doc drop",
    .args = "DIR COLL",
    .summary = "Removes COLL with its documents and indexes; exits 1 if it does not exist.",
    .details = NULL,
    .min_args = 2,
    .max_args = 2,
    .flags = write_flags,
};

static int doc_describe(int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_error err = {0};
    shale_buf out = {0};
    int rc;

    if (!cli_parse(&describe_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (open_coll(&a, false, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    rc = result(a.spec->name, shale_coll_describe(db, a.pos[1], &out, &err), &err);
    if (rc == CLI_OK) {
        print_buf(&out);
    }
    shale_buf_free(&out);
    return cli_close(a.spec->name, db, rc);
}

static int doc_drop(int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_error err = {0};
    int rc;

    if (!cli_parse(&drop_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (open_coll(&a, false, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    rc = result(a.spec->name, shale_coll_drop(db, a.pos[1], &err), &err);
    return cli_close(a.spec->name, db, rc);
}

/* ---- dispatch ---- */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} verbs[] = {
    {"insert", doc_insert, "insert a document, or JSON Lines from stdin (creates the database)"},
    {"get", doc_get, "print a document by _id; exit 1 if it is absent"},
    {"update", doc_update, "merge fields into a document; exit 1 if it is absent"},
    {"replace", doc_replace, "replace a document; exit 1 if it is absent"},
    {"delete", doc_delete, "delete a document; exit 1 if it is absent"},
    {"find", doc_find, "print matching documents: a page, every match (--all) or the plan"},
    {"index", verb_index, "create, drop or list a collection's indexes"},
    {"collections", doc_collections, "print the collection names"},
    {"describe", doc_describe, "print a collection's counts and indexes"},
    {"drop", doc_drop, "remove a collection with its documents and indexes"},
};

#define VERB_COUNT (sizeof verbs / sizeof verbs[0])

static void doc_usage(FILE *f)
{
    fprintf(f, "usage: shale doc VERB DIR [COLL] ARGS... [FLAGS]\n\n"
               "Collections of JSON documents in the database in DIR.\n\nverbs:\n");
    for (size_t i = 0; i < VERB_COUNT; i++) {
        fprintf(f, "  %-11s  %s\n", verbs[i].name, verbs[i].summary);
    }
    fprintf(f, "\nRun 'shale doc VERB --help' for a verb's arguments and flags.\n"
               "Documents print as one JSON object per line. Exit status: 0 success, 1 not found,\n"
               "2 error.\n");
}

int cmd_doc(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "shale doc: missing verb (see shale doc --help)\n");
        return CLI_ERROR;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        doc_usage(stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < VERB_COUNT; i++) {
        if (strcmp(verbs[i].name, verb) == 0) {
            return verbs[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "shale doc: unknown %s '%s' (see shale doc --help)\n",
            verb[0] == '-' ? "flag" : "verb", verb);
    return CLI_ERROR;
}
