/*
 * doc_cli_test: runs the real `shale` binary ($SHALE_BIN, set by ctest; the tests skip without
 * it) in child processes for the document commands: every `shale doc` verb round trip, JSON
 * Lines on stdin, find with each flag (pages and their cursors, sort, projection, filters,
 * --eq, --all streaming, --explain), indexes, collections, `shale export` / `shale import` (one
 * collection, every collection, 100,000 documents), and bad input: invalid lines (with their
 * line numbers and what was committed before them), unknown verbs, missing arguments, bad
 * collection names, bad flags. Each test works in its own temporary directory, removed at the
 * end.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shale.h"

#include "cli_harness.h"
#include "testutil.h"

static void setup(void)
{
    ch_setup("doccli");
}

/* Asserts the exit code, and (when not NULL) that stdout is exactly `out` and that stderr contains
 * `err_part`; frees the result. A successful run prints nothing on stderr unless `err_part` says
 * what; a failing one says why there, as one "shale ..." line. */
static void expect(ch_result r, int code, const char *out, const char *err_part)
{
    ch_expect_exit(&r, code, out, err_part);
    if (err_part == NULL && code == 0) {
        ch_expect_quiet(&r);
    }
    if (code != 0) {
        ch_expect_error_line(&r);
    }
    ch_free(&r);
}

/* Runs and returns stdout (malloc'ed) after asserting exit 0 (stderr is not checked). */
static char *output_of(ch_result r)
{
    cr_assert_eq(r.code, 0, "%s: exit %d; stderr: %s", r.cmd, r.code, r.err);
    free(r.err);
    return r.out;
}

/* Writes `text` to ch_dir/name and returns the path (free it). */
static char *write_file(const char *name, const char *text)
{
    char *path = tu_path(ch_dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
    return path;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

/* The value after "name: " in stderr text, up to the end of its line (static buffer). */
static const char *err_value(const char *text, const char *name)
{
    static char value[512];
    char pat[64];
    snprintf(pat, sizeof pat, "%s: ", name);
    const char *p = strstr(text, pat);
    cr_assert_not_null(p, "no '%s' in [%s]", pat, text);
    p += strlen(pat);
    size_t len = strcspn(p, "\n");
    cr_assert_lt(len, sizeof value);
    memcpy(value, p, len);
    value[len] = '\0';
    return value;
}

static void insert(const char *coll, const char *json, const char *stored)
{
    char want[1024];
    snprintf(want, sizeof want, "%s\n", stored);
    expect(RUN("doc", "insert", ch_db, coll, json), 0, want, NULL);
}

/* Documents d00 .. d29 of collection "t": {"_id":"dNN","g":N%3,"n":N}. */
static void insert_thirty(void)
{
    char text[30 * 40] = "";
    size_t len = 0;
    for (int i = 0; i < 30; i++) {
        len += (size_t)snprintf(text + len, sizeof text - len,
                                "{\"_id\":\"d%02d\",\"n\":%d,\"g\":%d}\n", i, i, i % 3);
    }
    char *in = write_file("thirty.jsonl", text);
    ch_result r = RUN_IN(in, "doc", "insert", ch_db, "t");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_eq(count_lines(r.out), 30);
    ch_free(&r);
    free(in);
}

/* "{"_id":"dNN","g":..,"n":..}\n" lines for the given NN values, in order (static buffer). */
static const char *docs_of(const int *ids, size_t n)
{
    static char text[4096];
    size_t len = 0;
    text[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        len +=
            (size_t)snprintf(text + len, sizeof text - len,
                             "{\"_id\":\"d%02d\",\"g\":%d,\"n\":%d}\n", ids[i], ids[i] % 3, ids[i]);
    }
    return text;
}

static const char *docs_range(int from, int to)
{
    int ids[64];
    size_t n = 0;
    for (int i = from; i < to; i++) {
        ids[n++] = i;
    }
    return docs_of(ids, n);
}

TestSuite(doc_cli, .init = setup, .fini = ch_teardown);

/* ---- single documents ---- */

Test(doc_cli, insert_get_round_trip_across_processes)
{
    insert("people", "{\"_id\":\"ada\",\"born\":1815,\"tags\":[\"math\",\"poetry\"]}",
           "{\"_id\":\"ada\",\"born\":1815,\"tags\":[\"math\",\"poetry\"]}");
    expect(RUN("doc", "get", ch_db, "people", "ada"), 0,
           "{\"_id\":\"ada\",\"born\":1815,\"tags\":[\"math\",\"poetry\"]}\n", NULL);

    /* Without an _id, one is generated: 24 hex digits, printed with the stored document. */
    char *out = output_of(RUN("doc", "insert", ch_db, "people", "{\"name\":\"bob\"}"));
    char id[32];
    cr_assert_eq(sscanf(out, "{\"_id\":\"%24[0-9a-f]\",\"name\":\"bob\"}\n", id), 1, "[%s]", out);
    cr_assert_eq(strlen(id), 24);
    expect(RUN("doc", "get", ch_db, "people", id), 0, out, NULL);
    free(out);

    /* Fields come back in the stored order (sorted by name), whitespace gone. */
    insert("people", " { \"z\" : 1 , \"_id\" : \"c\" , \"a\" : { \"y\" : null , \"b\" : true } } ",
           "{\"_id\":\"c\",\"a\":{\"b\":true,\"y\":null},\"z\":1}");
}

Test(doc_cli, get_missing_exits_1)
{
    insert("people", "{\"_id\":\"a\"}", "{\"_id\":\"a\"}");
    expect(RUN("doc", "get", ch_db, "people", "b"), 1, "", "shale doc get: no document");
    expect(RUN("doc", "get", ch_db, "nobody", "a"), 1, "", "shale doc get:");
}

Test(doc_cli, insert_existing_id_fails)
{
    insert("people", "{\"_id\":\"a\",\"v\":1}", "{\"_id\":\"a\",\"v\":1}");
    expect(RUN("doc", "insert", ch_db, "people", "{\"_id\":\"a\",\"v\":2}"), 2, "", "exists");
    expect(RUN("doc", "get", ch_db, "people", "a"), 0, "{\"_id\":\"a\",\"v\":1}\n", NULL);
}

Test(doc_cli, update_replace_delete)
{
    insert("p", "{\"_id\":\"a\",\"x\":1,\"y\":2}", "{\"_id\":\"a\",\"x\":1,\"y\":2}");
    /* update: a shallow merge. */
    expect(RUN("doc", "update", ch_db, "p", "a", "{\"y\":3,\"z\":[1]}"), 0,
           "{\"_id\":\"a\",\"x\":1,\"y\":3,\"z\":[1]}\n", NULL);
    expect(RUN("doc", "get", ch_db, "p", "a"), 0, "{\"_id\":\"a\",\"x\":1,\"y\":3,\"z\":[1]}\n",
           NULL);
    expect(RUN("doc", "update", ch_db, "p", "a", "{\"_id\":\"other\"}"), 2, "", "_id");
    expect(RUN("doc", "update", ch_db, "p", "zz", "{\"y\":1}"), 1, "", "no document");
    /* replace: the whole document; the _id stays. */
    expect(RUN("doc", "replace", ch_db, "p", "a", "{\"_id\":\"ignored\",\"w\":true}"), 0,
           "{\"_id\":\"a\",\"w\":true}\n", NULL);
    expect(RUN("doc", "get", ch_db, "p", "a"), 0, "{\"_id\":\"a\",\"w\":true}\n", NULL);
    expect(RUN("doc", "replace", ch_db, "p", "zz", "{}"), 1, "", "no document");
    /* delete, then again. */
    expect(RUN("doc", "delete", ch_db, "p", "a"), 0, "", NULL);
    expect(RUN("doc", "get", ch_db, "p", "a"), 1, "", "no document");
    expect(RUN("doc", "delete", ch_db, "p", "a"), 1, "", "shale doc delete: no document");
    /* Bad JSON in a write is an error, and changes nothing. */
    insert("p", "{\"_id\":\"b\",\"v\":1}", "{\"_id\":\"b\",\"v\":1}");
    expect(RUN("doc", "update", ch_db, "p", "b", "{\"v\":"), 2, "",
           "shale doc update: invalid JSON");
    expect(RUN("doc", "replace", ch_db, "p", "b", "[1]"), 2, "", "shale doc replace:");
    expect(RUN("doc", "get", ch_db, "p", "b"), 0, "{\"_id\":\"b\",\"v\":1}\n", NULL);
}

/* ---- JSON Lines on stdin ---- */

Test(doc_cli, insert_json_lines_from_stdin)
{
    /* Blank lines are skipped, CRLF endings accepted, a last line may lack its newline. */
    char *in = write_file("in.jsonl", "{\"_id\":\"a\",\"v\":1}\n"
                                      "\n"
                                      "   \n"
                                      "{\"v\":2,\"_id\":\"b\"}\r\n"
                                      "{\"_id\":\"c\"}");
    expect(RUN_IN(in, "doc", "insert", ch_db, "s"), 0,
           "{\"_id\":\"a\",\"v\":1}\n{\"_id\":\"b\",\"v\":2}\n{\"_id\":\"c\"}\n", NULL);
    expect(RUN("doc", "find", ch_db, "s", "--all"), 0,
           "{\"_id\":\"a\",\"v\":1}\n{\"_id\":\"b\",\"v\":2}\n{\"_id\":\"c\"}\n", NULL);
    free(in);

    /* One line is a batch of one. */
    in = write_file("one.jsonl", "{\"_id\":\"d\"}\n");
    expect(RUN_IN(in, "doc", "insert", ch_db, "s"), 0, "{\"_id\":\"d\"}\n", NULL);
    free(in);

    /* Empty input inserts nothing. */
    in = write_file("empty.jsonl", "");
    expect(RUN_IN(in, "doc", "insert", ch_db, "s"), 0, "", NULL);
    free(in);
}

Test(doc_cli, insert_stdin_in_batches_prints_every_document)
{
    /* 2,500 documents: batches of 1000, 1000 and 500, each printed in input order. */
    char *path = tu_path(ch_dir, "many.jsonl");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 2500; i++) {
        fprintf(f, "{\"_id\":\"k%05d\",\"i\":%d}\n", i, i);
    }
    cr_assert_eq(fclose(f), 0);
    char *out = output_of(RUN_IN(path, "doc", "insert", ch_db, "m"));
    cr_assert_eq(count_lines(out), 2500);
    cr_assert(strncmp(out, "{\"_id\":\"k00000\",\"i\":0}\n{\"_id\":\"k00001\",\"i\":1}\n", 46) == 0,
              "%.100s", out);
    cr_assert_not_null(
        strstr(out, "{\"_id\":\"k01000\",\"i\":1000}\n{\"_id\":\"k01001\",\"i\":1001}\n"));
    const char *last = "{\"_id\":\"k02499\",\"i\":2499}\n";
    size_t len = strlen(out);
    cr_assert(len > strlen(last) && strcmp(out + len - strlen(last), last) == 0, "%s",
              out + len - 60);
    char *all = output_of(RUN("doc", "find", ch_db, "m", "--all"));
    cr_assert_str_eq(all, out); /* in _id order, which is the input order here */
    free(all);
    free(out);
    free(path);
}

Test(doc_cli, insert_stdin_bad_line_names_it_and_what_was_committed)
{
    /* A bad line in the first batch: nothing is written. */
    char *in = write_file("bad.jsonl", "{\"_id\":\"a\"}\n{\"_id\":\"b\"}\n{\"_id\": oops}\n{}\n");
    ch_result r = RUN_IN(in, "doc", "insert", ch_db, "s");
    cr_assert_eq(r.code, 2, "%s", r.err);
    cr_assert_str_empty(r.out);
    cr_assert(strstr(r.err, "shale doc insert: line 3: invalid JSON") != NULL, "%s", r.err);
    cr_assert(strstr(r.err, "nothing was written") != NULL, "%s", r.err);
    ch_free(&r);
    expect(RUN("doc", "find", ch_db, "s", "--all"), 0, "", NULL);
    free(in);

    /* A valid JSON line that is not a document (an array; a number _id). */
    in = write_file("bad2.jsonl", "{\"_id\":\"a\"}\n[1,2]\n");
    expect(RUN_IN(in, "doc", "insert", ch_db, "s"), 2, "", "line 2: ");
    free(in);
    in = write_file("bad3.jsonl", "{\"_id\":\"a\"}\n\n{\"_id\":7}\n");
    expect(RUN_IN(in, "doc", "insert", ch_db, "s"), 2, "", "line 3: ");
    free(in);
    expect(RUN("doc", "find", ch_db, "s", "--all"), 0, "", NULL);
}

/* ---- find ---- */

Test(doc_cli, find_pages_with_cursors)
{
    insert_thirty();
    /* Default: all 30 fit in one page of 50, no cursors. */
    char *out = output_of(RUN("doc", "find", ch_db, "t"));
    cr_assert_str_eq(out, docs_range(0, 30));
    free(out);

    ch_result r = RUN("doc", "find", ch_db, "t", "--limit", "10");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_str_eq(r.out, docs_range(0, 10));
    cr_assert_null(strstr(r.err, "prev_cursor"), "%s", r.err);
    char next[512];
    snprintf(next, sizeof next, "%s", err_value(r.err, "next_cursor"));
    ch_free(&r);

    r = RUN("doc", "find", ch_db, "t", "--limit", "10", "--after", next);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_str_eq(r.out, docs_range(10, 20));
    char prev[512];
    snprintf(prev, sizeof prev, "%s", err_value(r.err, "prev_cursor"));
    snprintf(next, sizeof next, "%s", err_value(r.err, "next_cursor"));
    ch_free(&r);

    r = RUN("doc", "find", ch_db, "t", "--limit=10", "--after", next);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_str_eq(r.out, docs_range(20, 30));
    cr_assert_null(strstr(r.err, "next_cursor"), "last page: %s", r.err);
    ch_free(&r);

    /* Back from page 2 to page 1. */
    r = RUN("doc", "find", ch_db, "t", "--limit", "10", "--before", prev);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_str_eq(r.out, docs_range(0, 10));
    ch_free(&r);

    /* A cursor stays valid across writes: it names a position, not an offset. */
    expect(RUN("doc", "delete", ch_db, "t", "d21"), 0, "", NULL);
    r = RUN("doc", "find", ch_db, "t", "--limit", "3", "--after", next);
    cr_assert_eq(r.code, 0, "%s", r.err);
    int want[] = {20, 22, 23};
    cr_assert_str_eq(r.out, docs_of(want, 3));
    ch_free(&r);
}

Test(doc_cli, find_offset_sort_fields)
{
    insert_thirty();
    expect(RUN("doc", "find", ch_db, "t", "--offset", "25"), 0, docs_range(25, 30), "prev_cursor");
    expect(RUN("doc", "find", ch_db, "t", "--offset", "30"), 0, "", NULL);
    int desc[] = {29, 28, 27};
    expect(RUN("doc", "find", ch_db, "t", "--sort", "-n", "--limit", "3"), 0, docs_of(desc, 3),
           "next_cursor");
    /* Sort by g, then _id: the g == 0 documents first. */
    int by_g[] = {0, 3, 6, 9};
    expect(RUN("doc", "find", ch_db, "t", "--sort", "g", "--limit", "4"), 0, docs_of(by_g, 4),
           "next_cursor");
    int by_g_desc[] = {2, 5};
    expect(RUN("doc", "find", ch_db, "t", "--sort", "-g,n", "--limit", "2"), 0,
           docs_of(by_g_desc, 2), "next_cursor");
    /* Projection keeps _id. */
    expect(RUN("doc", "find", ch_db, "t", "--fields", "n", "--limit", "2"), 0,
           "{\"_id\":\"d00\",\"n\":0}\n{\"_id\":\"d01\",\"n\":1}\n", "next_cursor");
    expect(RUN("doc", "find", ch_db, "t", "--fields", "nope", "--limit", "1"), 0,
           "{\"_id\":\"d00\"}\n", "next_cursor");
}

Test(doc_cli, find_filter_and_eq)
{
    insert_thirty();
    expect(RUN("doc", "find", ch_db, "t", "--filter", "{\"n\":{\"$gte\":28}}"), 0,
           docs_range(28, 30), NULL);
    int ors[] = {1, 29};
    expect(RUN("doc", "find", ch_db, "t", "--filter", "{\"$or\":[{\"n\":1},{\"n\":{\"$gt\":28}}]}"),
           0, docs_of(ors, 2), NULL);
    expect(RUN("doc", "find", ch_db, "t", "--filter", "{\"n\":\"1\"}"), 0, "", NULL);
    /* --eq: repeatable, all must hold; a number matches numbers. */
    expect(RUN("doc", "find", ch_db, "t", "--eq", "g=1", "--eq=n=4"), 0, docs_range(4, 5), NULL);
    int g2[] = {2, 5, 8};
    expect(RUN("doc", "find", ch_db, "t", "--eq", "g=2", "--limit", "3"), 0, docs_of(g2, 3),
           "next_cursor");
    expect(RUN("doc", "find", ch_db, "t", "--eq", "_id=d07"), 0, docs_range(7, 8), NULL);
    /* --eq and --filter combine. */
    expect(RUN("doc", "find", ch_db, "t", "--eq", "g=0", "--filter", "{\"n\":{\"$lt\":7}}"), 0,
           docs_of((int[]){0, 3, 6}, 3), NULL);
    /* A collection that does not exist has no documents. */
    expect(RUN("doc", "find", ch_db, "nothing"), 0, "", NULL);
    expect(RUN("doc", "find", ch_db, "nothing", "--all"), 0, "", NULL);
}

Test(doc_cli, find_all_streams_every_match)
{
    /* More than a page's maximum (1000). */
    char *path = tu_path(ch_dir, "many.jsonl");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 1500; i++) {
        fprintf(f, "{\"_id\":\"k%05d\",\"odd\":%s}\n", i, i % 2 ? "true" : "false");
    }
    cr_assert_eq(fclose(f), 0);
    ch_result r = RUN_IN(path, "doc", "insert", ch_db, "m");
    cr_assert_eq(r.code, 0, "%s", r.err);
    char *inserted = r.out;
    free(r.err);

    char *all = output_of(RUN("doc", "find", ch_db, "m", "--all"));
    cr_assert_eq(count_lines(all), 1500);
    cr_assert_str_eq(all, inserted);
    free(all);
    free(inserted);

    all = output_of(RUN("doc", "find", ch_db, "m", "--all", "--filter", "{\"odd\":true}"));
    cr_assert_eq(count_lines(all), 750);
    cr_assert(strncmp(all, "{\"_id\":\"k00001\",\"odd\":true}\n", 28) == 0, "%.60s", all);
    free(all);
    all = output_of(RUN("doc", "find", ch_db, "m", "--all", "--eq", "odd=false", "--fields", "x"));
    cr_assert_eq(count_lines(all), 750);
    cr_assert(strncmp(all, "{\"_id\":\"k00000\"}\n{\"_id\":\"k00002\"}\n", 34) == 0, "%.60s", all);
    free(all);
    free(path);

    /* Paging flags make no sense with --all. */
    expect(RUN("doc", "find", ch_db, "m", "--all", "--limit", "5"), 2, "", "--all");
    expect(RUN("doc", "find", ch_db, "m", "--all", "--sort", "odd"), 2, "", "--sort");
    expect(RUN("doc", "find", ch_db, "m", "--all", "--explain"), 2, "", "--explain");
}

Test(doc_cli, find_explain_and_indexes)
{
    insert_thirty();
    char *out = output_of(RUN("doc", "find", ch_db, "t", "--explain", "--filter", "{\"n\":7}"));
    cr_assert_not_null(strstr(out, "\"plan\":\"scan\""), "%s", out);
    cr_assert_not_null(strstr(out, "\"matched\":1"), "%s", out);
    cr_assert_eq(count_lines(out), 1);
    free(out);

    expect(RUN("doc", "index", ch_db, "t", "create", "n"), 0, "", NULL);
    expect(RUN("doc", "index", ch_db, "t", "create", "n"), 2, "", "shale doc index:");
    expect(RUN("doc", "index", ch_db, "t", "list"), 0,
           "{\"field\":\"_id\",\"state\":\"ready\"}\n{\"field\":\"n\",\"state\":\"ready\"}\n",
           NULL);
    out = output_of(RUN("doc", "find", ch_db, "t", "--explain", "--filter", "{\"n\":7}"));
    cr_assert_not_null(strstr(out, "\"plan\":\"index\""), "%s", out);
    cr_assert_not_null(strstr(out, "\"index\":\"n\""), "%s", out);
    cr_assert_not_null(strstr(out, "\"examined\":1"), "%s", out);
    free(out);
    /* The index serves the same answers. */
    expect(RUN("doc", "find", ch_db, "t", "--filter", "{\"n\":{\"$gt\":26,\"$lte\":28}}"), 0,
           docs_range(27, 29), NULL);
    expect(RUN("doc", "find", ch_db, "t", "--eq", "n=7"), 0, docs_range(7, 8), NULL);

    expect(RUN("doc", "index", ch_db, "t", "drop", "n"), 0, "", NULL);
    expect(RUN("doc", "index", ch_db, "t", "list"), 0, "{\"field\":\"_id\",\"state\":\"ready\"}\n",
           NULL);
    expect(RUN("doc", "index", ch_db, "t", "drop", "n"), 1, "", "shale doc index:");
    expect(RUN("doc", "index", ch_db, "nothing", "drop", "n"), 1, "", "shale doc index:");
    expect(RUN("doc", "index", ch_db, "t", "drop", "_id"), 2, "", "_id");
    expect(RUN("doc", "index", ch_db, "t", "create", "_id"), 2, "", NULL);
    expect(RUN("doc", "index", ch_db, "nothing", "list"), 1, "", "shale doc index:");
    /* Usage of the index verb. */
    expect(RUN("doc", "index", ch_db, "t", "create"), 2, "", "create needs a FIELD");
    expect(RUN("doc", "index", ch_db, "t", "list", "n"), 2, "", "list takes no FIELD");
    expect(RUN("doc", "index", ch_db, "t", "rebuild", "n"), 2, "", "unknown action 'rebuild'");
}

/* ---- collections ---- */

Test(doc_cli, collections_describe_drop)
{
    insert("zeta", "{\"_id\":\"1\"}", "{\"_id\":\"1\"}");
    insert("alpha", "{\"_id\":\"1\",\"v\":\"x\"}", "{\"_id\":\"1\",\"v\":\"x\"}");
    insert("alpha", "{\"_id\":\"2\"}", "{\"_id\":\"2\"}");
    insert("mid-dle_9", "{\"_id\":\"1\"}", "{\"_id\":\"1\"}");
    expect(RUN("doc", "collections", ch_db), 0, "alpha\nmid-dle_9\nzeta\n", NULL);

    char *out = output_of(RUN("doc", "describe", ch_db, "alpha"));
    cr_assert_not_null(strstr(out, "\"name\":\"alpha\""), "%s", out);
    cr_assert_not_null(strstr(out, "\"documents\":2"), "%s", out);
    cr_assert_eq(count_lines(out), 1);
    free(out);
    expect(RUN("doc", "describe", ch_db, "nothing"), 1, "", "shale doc describe:");

    expect(RUN("doc", "drop", ch_db, "alpha"), 0, "", NULL);
    expect(RUN("doc", "collections", ch_db), 0, "mid-dle_9\nzeta\n", NULL);
    expect(RUN("doc", "get", ch_db, "alpha", "1"), 1, "", NULL);
    expect(RUN("doc", "describe", ch_db, "alpha"), 1, "", NULL);
    expect(RUN("doc", "drop", ch_db, "alpha"), 1, "", "shale doc drop:");
    /* Recreated by an insert: empty but for the new document. */
    insert("alpha", "{\"_id\":\"3\"}", "{\"_id\":\"3\"}");
    expect(RUN("doc", "find", ch_db, "alpha", "--all"), 0, "{\"_id\":\"3\"}\n", NULL);
    /* Key-value data and documents live side by side. */
    expect(RUN("put", ch_db, "k", "v"), 0, "", NULL);
    expect(RUN("get", ch_db, "k"), 0, "v\n", NULL);
    expect(RUN("doc", "collections", ch_db), 0, "alpha\nmid-dle_9\nzeta\n", NULL);
}

Test(doc_cli, collections_of_a_new_database_is_empty)
{
    expect(RUN("put", ch_db, "k", "v"), 0, "", NULL);
    expect(RUN("doc", "collections", ch_db), 0, "", NULL);
    expect(RUN("export", ch_db), 0, "", NULL);
}

/* ---- export and import ---- */

/* Documents that exercise the JSON printer and parser: escapes, Unicode, numbers, nesting. */
static const char *const varied[] = {
    "{\"_id\":\"plain\",\"s\":\"hello\"}",
    "{\"_id\":\"esc\",\"s\":\"quote \\\" backslash \\\\ slash / tab \\t nl \\n cr \\r \\u0001\"}",
    "{\"_id\":\"uni\",\"s\":\"caf\\u00e9 \xe2\x82\xac \xf0\x9f\x98\x80\",\"k\\u00e9y\":1}",
    "{\"_id\":\"num\",\"i\":-9223372036854775808,\"j\":9223372036854775807,\"d\":1.5,"
    "\"e\":1e300,\"f\":-2.5e-300,\"z\":0,\"h\":0.1}",
    "{\"_id\":\"nest\",\"a\":{\"b\":{\"c\":[1,[2,[3,{\"d\":null}]],{}]}},\"e\":[],\"t\":true,"
    "\"f\":false}",
    "{\"_id\":\"id with spaces and \\\"quotes\\\"\",\"v\":1}",
    "{\"v\":\"generated id\"}",
};

static void insert_varied(const char *coll)
{
    for (size_t i = 0; i < sizeof varied / sizeof varied[0]; i++) {
        ch_result r = RUN("doc", "insert", ch_db, coll, varied[i]);
        cr_assert_eq(r.code, 0, "%s: %s", varied[i], r.err);
        ch_free(&r);
    }
}

Test(doc_cli, export_import_one_collection_round_trip)
{
    insert_varied("src");
    expect(RUN("doc", "index", ch_db, "src", "create", "v"), 0, "", NULL);
    char *file = tu_path(ch_dir, "src.jsonl");
    expect(RUN_OUT(file, "export", ch_db, "src"), 0, "", NULL);

    ch_result r = RUN_IN(file, "import", ch_db, "dst");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_str_empty(r.out);
    cr_assert_not_null(strstr(r.err, "shale import: 7 documents from 7 lines into dst"), "%s",
                       r.err);
    ch_free(&r);

    char *a = output_of(RUN("doc", "find", ch_db, "src", "--all"));
    char *b = output_of(RUN("doc", "find", ch_db, "dst", "--all"));
    cr_assert_eq(count_lines(a), 7);
    cr_assert_str_eq(a, b);
    /* The export is exactly what find --all prints. */
    char *c = output_of(RUN("export", ch_db, "dst"));
    cr_assert_str_eq(c, a);
    free(a);
    free(b);
    free(c);

    /* Importing again: every _id exists, the first batch fails whole. */
    r = RUN_IN(file, "import", ch_db, "dst");
    cr_assert_eq(r.code, 2);
    cr_assert_not_null(strstr(r.err, "exists"), "%s", r.err);
    cr_assert_not_null(strstr(r.err, "nothing was written"), "%s", r.err);
    ch_free(&r);
    free(file);

    expect(RUN("export", ch_db, "nothing"), 1, "", "shale export: no collection 'nothing'");
}

Test(doc_cli, export_import_every_collection)
{
    insert_varied("one");
    insert("two", "{\"_id\":\"x\",\"w\":2}", "{\"_id\":\"x\",\"w\":2}");
    insert("Three", "{\"_id\":\"y\"}", "{\"_id\":\"y\"}");
    char *file = tu_path(ch_dir, "all.jsonl");
    expect(RUN_OUT(file, "export", ch_db), 0, "", NULL);

    char *text = output_of(RUN("export", ch_db));
    cr_assert_eq(count_lines(text), 9);
    /* Collections in name order ("Three" < "one" bytewise), each line wrapped. */
    cr_assert(strncmp(text, "{\"collection\":\"Three\",\"document\":{\"_id\":\"y\"}}\n", 46) == 0,
              "%.80s", text);
    cr_assert_not_null(
        strstr(text, "{\"collection\":\"two\",\"document\":{\"_id\":\"x\",\"w\":2}}\n"));

    /* Into a new database: the same collections and documents. */
    char *db2 = tu_path(ch_dir, "db2");
    ch_result r = RUN_IN(file, "import", db2);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.err, "9 documents from 9 lines"), "%s", r.err);
    ch_free(&r);
    expect(RUN("doc", "collections", db2), 0, "Three\none\ntwo\n", NULL);
    char *again = output_of(RUN("export", db2));
    cr_assert_str_eq(again, text);
    char *a = output_of(RUN("doc", "find", ch_db, "one", "--all"));
    char *b = output_of(RUN("doc", "find", db2, "one", "--all"));
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
    free(again);
    free(text);

    /* A per-collection file is not the all-collections format, and vice versa is a document. */
    char *single = write_file("single.jsonl", "{\"_id\":\"q\"}\n");
    expect(RUN_IN(single, "import", db2), 2, "", "line 1: expected {\"collection\"");
    char *bad_name = write_file("badname.jsonl",
                                "{\"collection\":\"no spaces\",\"document\":{\"_id\":\"q\"}}\n");
    expect(RUN_IN(bad_name, "import", db2), 2, "", "line 1: bad collection name");
    free(bad_name);
    free(single);
    free(db2);
    free(file);
}

Test(doc_cli, import_bad_line_reports_committed_batches)
{
    /* 1,500 good lines, then a bad one at line 1,700 (1,501 .. 1,699 are good too). */
    char *path = tu_path(ch_dir, "bad.jsonl");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 1; i <= 2000; i++) {
        if (i == 1700) {
            fputs("{\"_id\":\"broken\",\n", f);
        } else {
            fprintf(f, "{\"_id\":\"k%05d\"}\n", i);
        }
    }
    cr_assert_eq(fclose(f), 0);
    ch_result r = RUN_IN(path, "import", ch_db, "c");
    cr_assert_eq(r.code, 2);
    cr_assert_not_null(strstr(r.err, "shale import: line 1700: invalid JSON"), "%s", r.err);
    cr_assert_not_null(strstr(r.err, "1000 documents from lines 1-1000 were committed; "
                                     "nothing from line 1001 on was written"),
                       "%s", r.err);
    cr_assert_eq(count_lines(r.err), 1, "%s", r.err);
    ch_free(&r);
    char *all = output_of(RUN("doc", "find", ch_db, "c", "--all"));
    cr_assert_eq(count_lines(all), 1000);
    cr_assert_not_null(strstr(all, "{\"_id\":\"k01000\"}\n"));
    cr_assert_null(strstr(all, "{\"_id\":\"k01001\"}"));
    free(all);
    free(path);

    /* A batch that fails as a whole (an _id that exists) names its lines. */
    char *in =
        write_file("dup.jsonl", "{\"_id\":\"new1\"}\n{\"_id\":\"k00005\"}\n{\"_id\":\"new2\"}\n");
    expect(RUN_IN(in, "import", ch_db, "c"), 2, "", "lines 1-3: a document with _id 'k00005'");
    expect(RUN("doc", "get", ch_db, "c", "new1"), 1, "", NULL);
    free(in);
    /* Two lines with the same _id in one batch: the second is named. */
    in = write_file("dup2.jsonl", "{\"_id\":\"n1\"}\n{\"_id\":\"n2\"}\n{\"_id\":\"n1\"}\n");
    expect(RUN_IN(in, "import", ch_db, "c"), 2, "", "line 3: ");
    free(in);
}

Test(doc_cli, import_line_limit_is_the_max_value_size)
{
    char doc[300];
    snprintf(doc, sizeof doc, "{\"_id\":\"a\"}\n{\"_id\":\"b\",\"s\":\"%0200d\"}\n", 0);
    char *in = write_file("long.jsonl", doc);
    expect(RUN_IN(in, "import", ch_db, "c", "--max-value-bytes", "100"), 2, "",
           "line 2: longer than 100 bytes");
    expect(RUN_IN(in, "import", ch_db, "c", "--max-value-bytes", "1000"), 0, "",
           "2 documents from 2 lines");
    expect(RUN_IN(in, "doc", "insert", ch_db, "d", "--max-value-bytes", "100"), 2, "",
           "shale doc insert: line 2: longer than 100 bytes");
    free(in);
}

Test(doc_cli, import_large_documents_in_a_small_budget)
{
    /* 40 documents of ~100 KiB with 4 MiB of memory (a 512 KiB write buffer): batches are cut
     * by bytes, not only by count. */
    char *path = tu_path(ch_dir, "big.jsonl");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 40; i++) {
        fprintf(f, "{\"_id\":\"b%02d\",\"s\":\"", i);
        for (int j = 0; j < 100000; j++) {
            fputc('a' + (i + j) % 26, f);
        }
        fputs("\"}\n", f);
    }
    cr_assert_eq(fclose(f), 0);
    expect(RUN_IN(path, "import", ch_db, "big", "--max-memory", "4"), 0, "",
           "40 documents from 40 lines");
    char *out = output_of(RUN("doc", "find", ch_db, "big", "--all", "--fields", "_id"));
    cr_assert_eq(count_lines(out), 40);
    free(out);
    free(path);
}

Test(doc_cli, export_import_100000_documents)
{
    char *path = tu_path(ch_dir, "h.jsonl");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 100000; i++) {
        fprintf(f, "{\"_id\":\"h%06d\",\"n\":%d,\"s\":\"x%d\"}\n", i, i, i % 97);
    }
    cr_assert_eq(fclose(f), 0);
    expect(RUN_IN(path, "import", ch_db, "h"), 0, "", "100000 documents from 100000 lines into h");

    char *out = tu_path(ch_dir, "h.out");
    expect(RUN_OUT(out, "export", ch_db, "h"), 0, "", NULL);
    /* Documents come back by _id, which is the input order here: the files are identical. */
    cr_assert_eq(tu_file_size(out), tu_file_size(path));
    FILE *a = fopen(path, "r"), *b = fopen(out, "r");
    cr_assert(a != NULL && b != NULL);
    char la[128], lb[128];
    size_t n = 0;
    while (fgets(la, sizeof la, a) != NULL) {
        cr_assert_not_null(fgets(lb, sizeof lb, b));
        cr_assert_str_eq(la, lb, "line %zu", n + 1);
        n++;
    }
    cr_assert_null(fgets(lb, sizeof lb, b));
    cr_assert_eq(n, 100000);
    fclose(a);
    fclose(b);
    free(out);
    free(path);
}

/* ---- usage and bad input ---- */

Test(doc_cli, verbs_help_and_unknown_verbs)
{
    char *out = output_of(RUN("doc", "--help"));
    const char *verbs[] = {"insert", "get",   "update",      "replace",  "delete",
                           "find",   "index", "collections", "describe", "drop"};
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        char pat[32];
        snprintf(pat, sizeof pat, "\n  %s ", verbs[i]);
        cr_assert_not_null(strstr(out, pat), "%s missing in\n%s", verbs[i], out);
    }
    free(out);
    out = output_of(RUN("--help"));
    cr_assert_not_null(strstr(out, "\n  doc "), "%s", out);
    cr_assert_not_null(strstr(out, "\n  export "), "%s", out);
    cr_assert_not_null(strstr(out, "\n  import "), "%s", out);
    free(out);
    out = output_of(RUN("doc", "find", "--help"));
    cr_assert_not_null(strstr(out, "usage: shale doc find DIR COLL"), "%s", out);
    cr_assert_not_null(strstr(out, "--eq FIELD=VALUE"), "%s", out);
    free(out);
    out = output_of(RUN("help", "export"));
    cr_assert_not_null(strstr(out, "usage: shale export DIR [COLLECTION]"), "%s", out);
    free(out);

    expect(RUN("doc"), 2, "", "shale doc: missing verb");
    expect(RUN("doc", "frob", ch_db), 2, "", "shale doc: unknown verb 'frob'");
    expect(RUN("doc", "--frob"), 2, "", "shale doc: unknown flag '--frob'");
}

Test(doc_cli, missing_and_extra_arguments)
{
    expect(RUN("doc", "insert", ch_db), 2, "", "shale doc insert: missing arguments");
    expect(RUN("doc", "get", ch_db, "c"), 2, "", "shale doc get: missing arguments");
    expect(RUN("doc", "update", ch_db, "c", "id"), 2, "", "missing arguments");
    expect(RUN("doc", "replace", ch_db, "c", "id"), 2, "", "missing arguments");
    expect(RUN("doc", "delete", ch_db, "c"), 2, "", "missing arguments");
    expect(RUN("doc", "find", ch_db), 2, "", "missing arguments");
    expect(RUN("doc", "index", ch_db, "c"), 2, "", "missing arguments");
    expect(RUN("doc", "describe", ch_db), 2, "", "missing arguments");
    expect(RUN("doc", "drop", ch_db), 2, "", "missing arguments");
    expect(RUN("doc", "collections"), 2, "", "missing arguments");
    expect(RUN("doc", "get", ch_db, "c", "id", "extra"), 2, "", "unexpected argument 'extra'");
    expect(RUN("export"), 2, "", "shale export: missing arguments");
    expect(RUN("import"), 2, "", "shale import: missing arguments");
    expect(RUN("doc", "find", ch_db, "c", "--bogus"), 2, "", "unknown flag '--bogus'");
    /* None of that created a database. */
    struct stat st;
    cr_assert_neq(stat(ch_db, &st), 0);
}

Test(doc_cli, bad_collection_names)
{
    const char *bad[] = {"", "has space", "dot.ted", "slash/x",
                         "a234567890123456789012345678901234567890123456789012345678901234x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect(RUN("doc", "insert", ch_db, bad[i], "{}"), 2, "", "shale doc insert:");
        expect(RUN("import", ch_db, bad[i]), 2, "", "shale import:");
    }
    /* Rejected before the database is opened: none was created. */
    struct stat st;
    cr_assert_neq(stat(ch_db, &st), 0);
    insert("ok", "{\"_id\":\"1\"}", "{\"_id\":\"1\"}");
    expect(RUN("doc", "get", ch_db, "bad name", "1"), 2, "", "shale doc get:");
    expect(RUN("doc", "find", ch_db, "bad/name"), 2, "", "shale doc find:");
    expect(RUN("doc", "describe", ch_db, "bad name"), 2, "", NULL);
    expect(RUN("doc", "drop", ch_db, "bad name"), 2, "", NULL);
    expect(RUN("export", ch_db, "bad name"), 2, "", "shale export:");
    /* 64 characters is the longest name. */
    const char *longest = "a234567890123456789012345678901234567890123456789012345678901234";
    insert(longest, "{\"_id\":\"1\"}", "{\"_id\":\"1\"}");
    expect(RUN("doc", "get", ch_db, longest, "1"), 0, "{\"_id\":\"1\"}\n", NULL);
}

Test(doc_cli, bad_documents_and_queries)
{
    insert("c", "{\"_id\":\"1\",\"n\":1}", "{\"_id\":\"1\",\"n\":1}");
    expect(RUN("doc", "insert", ch_db, "c", "{\"a\":"), 2, "", "shale doc insert: invalid JSON");
    expect(RUN("doc", "insert", ch_db, "c", "[1,2]"), 2, "", "shale doc insert:");
    expect(RUN("doc", "insert", ch_db, "c", "{\"_id\":5}"), 2, "", "shale doc insert:");
    expect(RUN("doc", "insert", ch_db, "c", "{\"a\":1,\"a\":2}"), 2, "", "shale doc insert:");
    expect(RUN("doc", "get", ch_db, "c", ""), 2, "", "shale doc get:");
    expect(RUN("doc", "find", ch_db, "c", "--filter", "{\"n\":{\"$bogus\":1}}"), 2, "",
           "shale doc find:");
    expect(RUN("doc", "find", ch_db, "c", "--filter", "[1]"), 2, "", "shale doc find:");
    expect(RUN("doc", "find", ch_db, "c", "--limit", "0"), 2, "", "--limit");
    expect(RUN("doc", "find", ch_db, "c", "--limit", "1001"), 2, "", "--limit");
    expect(RUN("doc", "find", ch_db, "c", "--offset", "100001"), 2, "", "--offset");
    expect(RUN("doc", "find", ch_db, "c", "--offset", "-1"), 2, "", "--offset");
    expect(RUN("doc", "find", ch_db, "c", "--after", "not-a-cursor"), 2, "", "cursor");
    expect(RUN("doc", "find", ch_db, "c", "--eq", "novalue"), 2, "",
           "--eq: expected FIELD=VALUE, got 'novalue'");
    expect(RUN("doc", "find", ch_db, "c", "--eq", "=1"), 2, "", "--eq: expected FIELD=VALUE");
    expect(RUN("doc", "find", ch_db, "c", "--sort", ","), 2, "", "shale doc find:");
    expect(RUN("doc", "find", ch_db, "c", "--all", "--filter", "{\"$nope\":1}"), 2, "",
           "shale doc find:");
    /* Nothing changed. */
    expect(RUN("doc", "find", ch_db, "c", "--all"), 0, "{\"_id\":\"1\",\"n\":1}\n", NULL);
}

Test(doc_cli, not_a_database)
{
    /* Only insert and import create a database; the others fail on a missing one. */
    expect(RUN("doc", "get", ch_db, "c", "1"), 2, "", "shale doc get:");
    expect(RUN("doc", "find", ch_db, "c"), 2, "", "shale doc find:");
    expect(RUN("doc", "collections", ch_db), 2, "", "shale doc collections:");
    expect(RUN("export", ch_db), 2, "", "shale export:");
    struct stat st;
    cr_assert_neq(stat(ch_db, &st), 0);
    char *in = write_file("one.jsonl", "{\"_id\":\"1\"}\n");
    expect(RUN_IN(in, "import", ch_db, "c"), 0, "", "1 document from 1 line into c");
    expect(RUN("doc", "get", ch_db, "c", "1"), 0, "{\"_id\":\"1\"}\n", NULL);
    free(in);
}
