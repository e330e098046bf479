/*
 * cli_test: runs the real `shale` binary ($SHALE_BIN, set by ctest; the tests skip without it) in
 * child processes and checks stdout, stderr and the exit code: the round trip across processes,
 * scan bounds and escaping, stats, TTL, durability levels, bad input for every subcommand, and
 * check (clean, and each kind of damage: a flipped bit in a table, a log, the manifest, the
 * identity file; torn tails; missing files; leftovers; a locked database), compact and
 * --max-memory. Tables are made through the library (shale_flush), live logs by a child that
 * exits without closing.
 * Each test works in its own temporary directory, removed at the end.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shale.h"

#include "cli_harness.h"
#include "testutil.h"

static void setup(void)
{
    ch_setup("cli");
}

/* Asserts the exit code, and (when not NULL) that stdout is exactly `out` and that stderr contains
 * `err_part`; frees the result. A successful run must print nothing on stderr; a failing one must
 * say why there. */
static void expect(ch_result r, int code, const char *out, const char *err_part)
{
    ch_expect_exit(&r, code, out, err_part);
    if (code == 0) {
        ch_expect_quiet(&r);
    } else if (code == 2) {
        ch_expect_error_line(&r);
    }
    ch_free(&r);
}

static void put(const char *key, const char *value)
{
    expect(RUN("put", ch_db, key, value), 0, "", NULL);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* A directory that exists but is not a database: it holds an unrelated file. */
static char *make_foreign_dir(void)
{
    char *dir = tu_path(ch_dir, "foreign");
    cr_assert_eq(mkdir(dir, 0700), 0);
    char *file = tu_path(dir, "notes.txt");
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("not a database\n", f);
    fclose(f);
    free(file);
    return dir;
}

TestSuite(cli, .init = setup, .fini = ch_teardown);

/* ---- the round trip ---- */

Test(cli, put_get_round_trip_across_processes)
{
    put("alpha", "one");
    put("beta", "two");
    expect(RUN("get", ch_db, "alpha"), 0, "one\n", NULL);
    expect(RUN("get", ch_db, "beta"), 0, "two\n", NULL);
    put("alpha", "uno"); /* overwrite: the newest value wins */
    expect(RUN("get", ch_db, "alpha"), 0, "uno\n", NULL);
    put("empty", ""); /* an empty value is a value */
    expect(RUN("get", ch_db, "empty"), 0, "\n", NULL);
}

Test(cli, get_missing_key_exits_1)
{
    put("a", "1");
    expect(RUN("get", ch_db, "b"), 1, "", "not found");
}

Test(cli, del_then_get_exits_1)
{
    put("a", "1");
    put("b", "2");
    expect(RUN("del", ch_db, "a"), 0, "", NULL);
    expect(RUN("get", ch_db, "a"), 1, "", "shale get: not found");
    expect(RUN("get", ch_db, "b"), 0, "2\n", NULL);
    expect(RUN("del", ch_db, "never-there"), 0, "", NULL); /* deleting a missing key succeeds */
    expect(RUN("scan", ch_db), 0, "b\t2\n", NULL);
}

Test(cli, get_prints_value_bytes_raw)
{
    put("bin", "a\tb\\c\x01\xff");
    expect(RUN("get", ch_db, "bin"), 0, "a\tb\\c\x01\xff\n", NULL);
}

/* ---- flags: placement, spelling, '--' ---- */

Test(cli, flags_before_between_and_after_positionals)
{
    expect(RUN("put", "--durability=full", ch_db, "k1", "v1"), 0, "", NULL);
    expect(RUN("put", ch_db, "--durability", "os", "k2", "v2"), 0, "", NULL);
    expect(RUN("put", ch_db, "k3", "v3", "--ttl", "3600"), 0, "", NULL);
    expect(RUN("put", ch_db, "k4", "--ttl=3600", "v4"), 0, "", NULL);
    expect(RUN("scan", "--keys-only", ch_db, "--limit=3"), 0, "k1\nk2\nk3\n", NULL);
    expect(RUN("scan", "--reverse", "--limit", "1", ch_db), 0, "k4\tv4\n", NULL);
}

Test(cli, double_dash_ends_flags)
{
    expect(RUN("put", ch_db, "--", "-dash", "--value"), 0, "", NULL);
    expect(RUN("get", ch_db, "--", "-dash"), 0, "--value\n", NULL);
    expect(RUN("get", "--", ch_db, "-dash"), 0, "--value\n", NULL);
    expect(RUN("scan", ch_db), 0, "-dash\t--value\n", NULL);
    expect(RUN("del", ch_db, "--", "-dash"), 0, "", NULL);
    expect(RUN("get", ch_db, "--", "-dash"), 1, "", "not found");
    /* A value that looks like a flag needs "--"; the error says so. */
    expect(RUN("put", ch_db, "temp", "-5"), 2, "", "unknown flag '-5' (put '--' before");
    expect(RUN("put", ch_db, "--", "temp", "-5"), 0, "", NULL);
    expect(RUN("get", ch_db, "temp"), 0, "-5\n", NULL);
    /* A lone "-" is an argument, not a flag. */
    put("-", "dash");
    expect(RUN("get", ch_db, "-"), 0, "dash\n", NULL);
}

Test(cli, repeated_flag_last_wins)
{
    expect(RUN("put", ch_db, "k", "v", "--durability", "bogus", "--durability", "full"), 0, "",
           NULL);
    put("a", "1");
    put("b", "2");
    expect(RUN("scan", ch_db, "--limit", "1", "--limit", "2", "--keys-only"), 0, "a\nb\n", NULL);
}

/* ---- scan ---- */

static void put_scan_fixture(void)
{
    /* Out of order on purpose: scan must sort. */
    const char *keys[] = {"b", "ab", "c", "a", "abc", "b1", "ba", "d"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char value[16];
        snprintf(value, sizeof value, "v-%s", keys[i]);
        put(keys[i], value);
    }
}

Test(cli, scan_orders_keys_bytewise)
{
    put_scan_fixture();
    expect(RUN("scan", ch_db), 0,
           "a\tv-a\nab\tv-ab\nabc\tv-abc\nb\tv-b\nb1\tv-b1\nba\tv-ba\nc\tv-c\nd\tv-d\n", NULL);
    expect(RUN("scan", ch_db, "--keys-only"), 0, "a\nab\nabc\nb\nb1\nba\nc\nd\n", NULL);
    expect(RUN("scan", ch_db, "--reverse", "--keys-only"), 0, "d\nc\nba\nb1\nb\nabc\nab\na\n",
           NULL);
}

Test(cli, scan_empty_database_prints_nothing)
{
    put("k", "v");
    expect(RUN("del", ch_db, "k"), 0, "", NULL);
    expect(RUN("scan", ch_db), 0, "", NULL);
}

Test(cli, scan_prefix)
{
    put_scan_fixture();
    expect(RUN("scan", ch_db, "--prefix", "a", "--keys-only"), 0, "a\nab\nabc\n", NULL);
    expect(RUN("scan", ch_db, "--prefix=b"), 0, "b\tv-b\nb1\tv-b1\nba\tv-ba\n", NULL);
    expect(RUN("scan", ch_db, "--prefix", "ab", "--reverse", "--keys-only"), 0, "abc\nab\n", NULL);
    expect(RUN("scan", ch_db, "--prefix", "zz"), 0, "", NULL);
    expect(RUN("scan", ch_db, "--prefix", "b", "--limit", "2", "--keys-only"), 0, "b\nb1\n", NULL);
}

Test(cli, scan_start_inclusive_end_exclusive)
{
    put_scan_fixture();
    expect(RUN("scan", ch_db, "--start", "ab", "--end", "b1", "--keys-only"), 0, "ab\nabc\nb\n",
           NULL);
    expect(RUN("scan", ch_db, "--start=b", "--keys-only"), 0, "b\nb1\nba\nc\nd\n", NULL);
    expect(RUN("scan", ch_db, "--end=b", "--keys-only"), 0, "a\nab\nabc\n", NULL);
    /* Bounds between keys. */
    expect(RUN("scan", ch_db, "--start", "aa", "--end", "bb", "--keys-only"), 0,
           "ab\nabc\nb\nb1\nba\n", NULL);
    expect(RUN("scan", ch_db, "--start", "c", "--end", "c", "--keys-only"), 0, "", NULL);
    expect(RUN("scan", ch_db, "--start", "ab", "--end", "c", "--reverse", "--limit", "2",
               "--keys-only"),
           0, "ba\nb1\n", NULL);
    /* Bounds and prefix combine. */
    expect(RUN("scan", ch_db, "--prefix", "b", "--start", "b1", "--keys-only"), 0, "b1\nba\n",
           NULL);
}

Test(cli, scan_limit)
{
    put_scan_fixture();
    expect(RUN("scan", ch_db, "--limit", "3", "--keys-only"), 0, "a\nab\nabc\n", NULL);
    expect(RUN("scan", ch_db, "--limit", "0"), 0, "", NULL);
    expect(RUN("scan", ch_db, "--limit", "100", "--keys-only"), 0, "a\nab\nabc\nb\nb1\nba\nc\nd\n",
           NULL);
    expect(RUN("scan", ch_db, "--limit", "2", "--reverse"), 0, "d\tv-d\nc\tv-c\n", NULL);
}

Test(cli, scan_escapes_binary_bytes)
{
    put("k\x01\xff", "tab\there\nnl\\end");
    put("sp ace", "caf\xc3\xa9~");
    expect(RUN("scan", ch_db), 0,
           "k\\x01\\xff\ttab\\x09here\\x0anl\\x5cend\n"
           "sp ace\tcaf\\xc3\\xa9~\n",
           NULL);
    expect(RUN("scan", ch_db, "--keys-only", "--prefix", "k\x01"), 0, "k\\x01\\xff\n", NULL);
}

/* ---- stats ---- */

/* The value of the "name: value" line of stats output `text`. */
static uint64_t stat_line(const char *text, const char *name)
{
    char pat[64];
    size_t len = strlen(text);
    char *lines = malloc(len + 2);
    cr_assert_not_null(lines);
    lines[0] = '\n'; /* so the first line matches "\nname: " too */
    memcpy(lines + 1, text, len + 1);
    snprintf(pat, sizeof pat, "\n%s: ", name);
    const char *p = strstr(lines, pat);
    cr_assert_not_null(p, "no '%s' line in\n%s", name, text);
    uint64_t v = strtoull(p + strlen(pat), NULL, 10);
    free(lines);
    return v;
}

Test(cli, stats_lists_every_field)
{
    put("a", "1");
    put("b", "2");
    put("c", "3");
    expect(RUN("del", ch_db, "c"), 0, "", NULL);

    ch_result r = RUN("stats", ch_db);
    cr_assert_eq(r.code, 0, "stderr: %s", r.err);
    const char *names[] = {
        "live_keys", "memory_bytes", "log_bytes", "log_segments", "last_sequence", "writes",
        "reads", "batches", "group_commits", "syncs", "expired_removed", "recovered_records",
        "salvaged_records", "salvaged_bytes", "truncated_bytes",
        /* issue 3: tables, compaction, cache */
        "levels", "immutable_memtables", "flushes", "compactions", "flush_bytes",
        "compaction_bytes_read", "compaction_bytes_written", "user_bytes_written",
        "write_amplification", "pending_compaction_bytes", "stall_us", "slowdown_us", "stalls",
        "estimated_live_keys", "open_tables", "block_cache_bytes", "block_cache_capacity",
        "block_cache_hits", "block_cache_misses", "block_cache_hit_rate", "memtable_budget_bytes",
        "table_bytes_on_disk", "snapshots"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        (void)stat_line(r.out, names[i]);
    }
    cr_assert_not_null(strstr(r.out, "\nwrites_stopped: false\n"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\nstop_reason: \n"), "%s", r.out);
    cr_assert_eq(stat_line(r.out, "live_keys"), 2, "%s", r.out);
    uint64_t seq = stat_line(r.out, "last_sequence");
    cr_assert_geq(seq, 4, "%s", r.out); /* four writes, each its own sequence number */
    /* Each command closes cleanly, and a clean close flushes the memtable into a table: the
     * next open has no log to replay. */
    cr_assert_eq(stat_line(r.out, "recovered_records"), 0, "%s", r.out);
    cr_assert_geq(stat_line(r.out, "table_bytes_on_disk"), 1, "%s", r.out);
    ch_free(&r);

    /* last_sequence is monotonic across restarts. */
    put("d", "4");
    r = RUN("stats", ch_db);
    cr_assert_eq(r.code, 0);
    cr_assert_eq(stat_line(r.out, "last_sequence"), seq + 1, "%s", r.out);
    cr_assert_eq(stat_line(r.out, "live_keys"), 3, "%s", r.out);
    ch_free(&r);
}

Test(cli, stats_json)
{
    put("a", "1");
    ch_result r = RUN("stats", "--json", ch_db);
    cr_assert_eq(r.code, 0, "stderr: %s", r.err);
    cr_assert(r.out_len > 2 && r.out[0] == '{' && strcmp(r.out + r.out_len - 2, "}\n") == 0, "%s",
              r.out);
    cr_assert_eq(strchr(r.out, '\n'), r.out + r.out_len - 1, "one line: %s", r.out);
    cr_assert_not_null(strstr(r.out, "\"last_sequence\": "), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\"live_keys\": 1, "), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\"writes_stopped\": false"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\"stop_reason\": \"\", "), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\"background_error\": false, "), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\"background_error_msg\": \"\"}"), "%s", r.out);
    ch_free(&r);
}

/* ---- TTL and durability ---- */

Test(cli, ttl_key_expires)
{
    expect(RUN("put", ch_db, "short", "gone-soon", "--ttl", "1"), 0, "", NULL);
    expect(RUN("put", ch_db, "long", "stays", "--ttl", "3600"), 0, "", NULL);
    put("forever", "x");
    /* The short key may already be gone on a slow machine, so only the long one is checked now. */
    expect(RUN("get", ch_db, "long"), 0, "stays\n", NULL);
    tu_sleep_us(1200000);
    expect(RUN("get", ch_db, "short"), 1, "", "not found");
    expect(RUN("scan", ch_db, "--keys-only"), 0, "forever\nlong\n", NULL);
    /* A plain put over an expiring key clears its deadline. */
    expect(RUN("put", ch_db, "long", "renewed"), 0, "", NULL);
    expect(RUN("get", ch_db, "long"), 0, "renewed\n", NULL);
}

Test(cli, ttl_is_seen_before_expiry)
{
    expect(RUN("put", ch_db, "k", "v", "--ttl=5"), 0, "", NULL);
    expect(RUN("get", ch_db, "k"), 0, "v\n", NULL);
    expect(RUN("scan", ch_db), 0, "k\tv\n", NULL);
}

Test(cli, durability_levels)
{
    const char *levels[] = {"memory", "os", "full"};
    for (size_t i = 0; i < 3; i++) {
        expect(RUN("put", ch_db, levels[i], "durable", "--durability", levels[i]), 0, "", NULL);
        expect(RUN("get", ch_db, levels[i]), 0, "durable\n", NULL);
        expect(RUN("del", ch_db, levels[i], "--durability", levels[i]), 0, "", NULL);
        expect(RUN("get", ch_db, levels[i]), 1, "", "not found");
    }
    expect(RUN("put", ch_db, "k", "kept", "--durability", "full"), 0, "", NULL);
    /* NONE keeps no log: the write lives in the memtable until the command's clean close
     * flushes it into a table (a crash before that would lose it). */
    expect(RUN("put", ch_db, "volatile", "v", "--durability", "none"), 0, "", NULL);
    expect(RUN("get", ch_db, "volatile"), 0, "v\n", NULL);
    expect(RUN("get", ch_db, "k"), 0, "kept\n", NULL);
    /* Level names are case-sensitive, as shale_durability_parse defines them. */
    expect(RUN("put", ch_db, "k", "v", "--durability", "FULL"), 2, "", "--durability");
}

/* ---- help, version, dispatch ---- */

Test(cli, help_for_every_subcommand)
{
    const char *cmds[] = {"put", "get", "del", "scan", "stats", "compact", "check", "bench"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char want[32];
        snprintf(want, sizeof want, "usage: shale %s", cmds[i]);
        ch_result r = RUN(cmds[i], "--help");
        cr_assert_eq(r.code, 0, "%s --help: exit %d, stderr %s", cmds[i], r.code, r.err);
        cr_assert_not_null(strcasestr(r.out, want), "%s --help: %s", cmds[i], r.out);
        cr_assert_str_empty(r.err, "%s --help: stderr %s", cmds[i], r.err);
        ch_free(&r);
        /* --help wins over other arguments, even bad ones (bench parses its own flags). */
        if (strcmp(cmds[i], "bench") != 0) {
            r = RUN(cmds[i], "--bogus", "x", "y", "z", "-h");
            cr_assert_eq(r.code, 0, "%s -h: exit %d, stderr %s", cmds[i], r.code, r.err);
            cr_assert_not_null(strcasestr(r.out, want), "%s -h: %s", cmds[i], r.out);
            ch_free(&r);
        }
        r = RUN("help", cmds[i]);
        cr_assert_eq(r.code, 0, "help %s: %d %s", cmds[i], r.code, r.err);
        cr_assert_not_null(strcasestr(r.out, want), "help %s: %s", cmds[i], r.out);
        ch_free(&r);
    }
    ch_result r = RUN("put", "--help");
    cr_assert_not_null(strstr(r.out, "--durability"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "--ttl"), "%s", r.out);
    ch_free(&r);
    r = RUN("scan", "--help");
    const char *flags[] = {"--prefix", "--start", "--end", "--limit", "--reverse", "--keys-only"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        cr_assert_not_null(strstr(r.out, flags[i]), "%s", r.out);
    }
    ch_free(&r);
}

Test(cli, top_level_help_and_version)
{
    const char *cmds[] = {"put", "get", "del", "scan", "stats", "compact", "check", "bench"};
    const char *spellings[] = {"--help", "-h", "help"};
    for (size_t s = 0; s < 3; s++) {
        ch_result r = RUN(spellings[s]);
        cr_assert_eq(r.code, 0, "%s: %d %s", spellings[s], r.code, r.err);
        cr_assert_str_empty(r.err);
        cr_assert_not_null(strstr(r.out, "usage: shale"), "%s", r.out);
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
            char line[32];
            snprintf(line, sizeof line, "\n  %s ", cmds[i]);
            cr_assert_not_null(strstr(r.out, line), "%s missing from\n%s", cmds[i], r.out);
        }
        ch_free(&r);
    }
    char want[64];
    snprintf(want, sizeof want, "shale %s\n", shale_version());
    expect(RUN("--version"), 0, want, NULL);
}

Test(cli, no_arguments_prints_usage_on_stderr)
{
    ch_result r = ch_run(NULL, NULL, (const char *const[]){NULL});
    cr_assert_eq(r.code, 2);
    cr_assert_eq(r.out_len, 0, "%s", r.out);
    cr_assert_not_null(strstr(r.err, "usage: shale"), "%s", r.err);
    cr_assert_not_null(strstr(r.err, "scan"), "%s", r.err);
    ch_free(&r);
}

Test(cli, unknown_subcommand_or_top_level_flag)
{
    expect(RUN("frobnicate", ch_db), 2, "", "unknown command 'frobnicate'");
    expect(RUN("--frob"), 2, "", "unknown flag '--frob'");
    expect(RUN("PUT", ch_db, "k", "v"), 2, "", "unknown command");
    expect(RUN("help", "frobnicate"), 2, "", "unknown command");
    cr_assert(!exists(ch_db));
}

/* ---- bad input ---- */

Test(cli, wrong_argument_counts)
{
    put("k", "v");
    expect(RUN("put"), 2, "", "shale put: missing arguments");
    expect(RUN("put", ch_db), 2, "", "shale put: missing arguments");
    expect(RUN("put", ch_db, "k"), 2, "", "shale put: missing arguments");
    expect(RUN("put", ch_db, "k", "v", "extra"), 2, "", "shale put: unexpected argument 'extra'");
    expect(RUN("get"), 2, "", "shale get: missing arguments");
    expect(RUN("get", ch_db), 2, "", "shale get: missing arguments");
    expect(RUN("get", ch_db, "k", "extra"), 2, "", "shale get: unexpected argument");
    expect(RUN("del"), 2, "", "shale del: missing arguments");
    expect(RUN("del", ch_db), 2, "", "shale del: missing arguments");
    expect(RUN("del", ch_db, "k", "extra"), 2, "", "shale del: unexpected argument");
    expect(RUN("scan"), 2, "", "shale scan: missing arguments");
    expect(RUN("scan", ch_db, "extra"), 2, "", "shale scan: unexpected argument");
    expect(RUN("stats"), 2, "", "shale stats: missing arguments");
    expect(RUN("stats", ch_db, "extra"), 2, "", "shale stats: unexpected argument");
    expect(RUN("compact"), 2, "", "shale compact: missing arguments");
    expect(RUN("compact", ch_db, "extra"), 2, "", "shale compact: unexpected argument");
    expect(RUN("check"), 2, "", "shale check: missing arguments");
    expect(RUN("check", ch_db, "extra"), 2, "", "shale check: unexpected argument");
    /* Nothing above changed the data. */
    expect(RUN("scan", ch_db), 0, "k\tv\n", NULL);
}

Test(cli, unknown_flags)
{
    put("k", "v");
    const char *cmds[][4] = {{"put", "k", "v2", NULL},    {"get", "k", NULL, NULL},
                             {"del", "k", NULL, NULL},    {"scan", NULL, NULL, NULL},
                             {"stats", NULL, NULL, NULL}, {"compact", NULL, NULL, NULL},
                             {"check", NULL, NULL, NULL}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const char *const *c = cmds[i];
        char prefix[32];
        snprintf(prefix, sizeof prefix, "shale %s: unknown flag", c[0]);
        const char *bad[] = {"--bogus", "--bogus=1", "-x", "---", "--Prefix"};
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            const char *args[8] = {c[0], ch_db};
            size_t n = 2;
            for (size_t j = 1; c[j] != NULL; j++) {
                args[n++] = c[j];
            }
            args[n++] = bad[b];
            args[n] = NULL;
            expect(ch_run(NULL, NULL, args), 2, "", prefix);
        }
    }
    /* A flag of another subcommand is unknown here. */
    expect(RUN("get", ch_db, "k", "--ttl", "5"), 2, "", "unknown flag '--ttl'");
    expect(RUN("stats", ch_db, "--reverse"), 2, "", "unknown flag '--reverse'");
    expect(RUN("scan", ch_db, "--json"), 2, "", "unknown flag '--json'");
    expect(RUN("get", ch_db, "k"), 0, "v\n", NULL);
}

Test(cli, flag_values_missing_or_unwanted)
{
    put("k", "v");
    expect(RUN("put", ch_db, "k", "v2", "--durability"), 2, "", "'--durability' needs a value");
    expect(RUN("put", ch_db, "k", "v2", "--ttl"), 2, "", "'--ttl' needs a value");
    expect(RUN("scan", ch_db, "--limit"), 2, "", "'--limit' needs a value");
    expect(RUN("scan", ch_db, "--prefix"), 2, "", "'--prefix' needs a value");
    expect(RUN("scan", ch_db, "--reverse=yes"), 2, "", "'--reverse' takes no value");
    expect(RUN("stats", ch_db, "--json=1"), 2, "", "'--json' takes no value");
    expect(RUN("get", ch_db, "k"), 0, "v\n", NULL);
}

Test(cli, bad_durability)
{
    put("k", "v");
    const char *bad[] = {"bogus", "", "Full", "fulll", "3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect(RUN("put", ch_db, "k", "v2", "--durability", bad[i]), 2, "",
               "shale put: --durability");
        expect(RUN("del", ch_db, "k", "--durability", bad[i]), 2, "", "shale del: --durability");
    }
    expect(RUN("get", ch_db, "k"), 0, "v\n", NULL);
    /* A bad flag fails before the database is created. */
    char *fresh = tu_path(ch_dir, "fresh");
    expect(RUN("put", fresh, "k", "v", "--durability=bogus"), 2, "", "--durability");
    cr_assert(!exists(fresh));
    free(fresh);
}

Test(cli, bad_ttl)
{
    const char *bad[] = {"0", "-1", "abc", "1.5", "", " 5", "5s", "+5", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect(RUN("put", ch_db, "k", "v", "--ttl", bad[i]), 2, "", "shale put: --ttl");
    }
    /* None of them wrote anything, or even created the database. */
    cr_assert(!exists(ch_db));
}

Test(cli, bad_limit)
{
    put("k", "v");
    const char *bad[] = {"abc", "-1", "", "1e3", "0x10", "18446744073709551616"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect(RUN("scan", ch_db, "--limit", bad[i]), 2, "", "shale scan: --limit");
    }
}

Test(cli, empty_key)
{
    put("k", "v");
    expect(RUN("put", ch_db, "", "v"), 2, "", "shale put: ");
    expect(RUN("get", ch_db, ""), 2, "", "shale get: ");
    expect(RUN("del", ch_db, ""), 2, "", "shale del: ");
    expect(RUN("scan", ch_db), 0, "k\tv\n", NULL);
    char *fresh = tu_path(ch_dir, "fresh");
    expect(RUN("put", fresh, "", "v"), 2, "", "empty");
    cr_assert(!exists(fresh), "a refused put created the database");
    free(fresh);
}

Test(cli, key_length_limit)
{
    char *key = malloc(4098);
    cr_assert_not_null(key);
    memset(key, 'k', 4097);
    key[4097] = '\0';
    /* 4097 bytes: one past the default limit. */
    expect(RUN("put", ch_db, key, "v"), 2, "", "shale put: ");
    key[4096] = '\0'; /* exactly the limit is fine */
    put(key, "max");
    ch_result r = RUN("get", ch_db, key);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_str_eq(r.out, "max\n");
    ch_free(&r);
    key[4096] = 'k';
    expect(RUN("get", ch_db, key), 2, "", "shale get: ");
    expect(RUN("del", ch_db, key), 2, "", "shale del: ");
    /* --max-key-bytes lowers (or raises) the limit for this run. */
    expect(RUN("put", ch_db, "123456789", "v", "--max-key-bytes", "8"), 2, "", "shale put: ");
    expect(RUN("put", ch_db, "12345678", "v", "--max-key-bytes", "8"), 0, "", NULL);
    expect(RUN("put", ch_db, key, "long", "--max-key-bytes=5000"), 0, "", NULL);
    const char *bad[] = {"0", "abc", "65537", "-8"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect(RUN("put", ch_db, "k", "v", "--max-key-bytes", bad[i]), 2, "", "--max-key-bytes");
    }
    expect(RUN("put", ch_db, "k", "12345", "--max-value-bytes", "4"), 2, "", "shale put: ");
    expect(RUN("put", ch_db, "k", "1234", "--max-value-bytes", "4"), 0, "", NULL);
    free(key);
}

Test(cli, read_only_commands_on_missing_dir)
{
    char *missing = tu_path(ch_dir, "missing");
    expect(RUN("get", missing, "k"), 2, "", "shale get: ");
    expect(RUN("scan", missing), 2, "", "shale scan: ");
    expect(RUN("stats", missing), 2, "", "shale stats: ");
    expect(RUN("del", missing, "k"), 2, "", "shale del: ");
    cr_assert(!exists(missing), "a read created the database");
    /* put does create it. */
    expect(RUN("put", missing, "k", "v"), 0, "", NULL);
    expect(RUN("get", missing, "k"), 0, "v\n", NULL);
    free(missing);
}

Test(cli, commands_on_a_directory_that_is_not_a_database)
{
    char *foreign = make_foreign_dir();
    expect(RUN("get", foreign, "k"), 2, "", "not a Shale database");
    expect(RUN("scan", foreign), 2, "", "not a Shale database");
    expect(RUN("stats", foreign), 2, "", "not a Shale database");
    expect(RUN("del", foreign, "k"), 2, "", "not a Shale database");
    expect(RUN("put", foreign, "k", "v"), 2, "", "not a Shale database");
    /* Nothing was added to it. */
    char *shale_file = tu_path(foreign, "SHALE");
    cr_assert(!exists(shale_file));
    free(shale_file);
    free(foreign);
}

Test(cli, commands_on_a_regular_file)
{
    char *file = tu_path(ch_dir, "plain");
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    expect(RUN("get", file, "k"), 2, "", "shale get: ");
    expect(RUN("scan", file), 2, "", "shale scan: ");
    expect(RUN("stats", file), 2, "", "shale stats: ");
    expect(RUN("put", file, "k", "v"), 2, "", "shale put: ");
    free(file);
}

Test(cli, database_in_use_by_another_process)
{
    int ready[2], release[2];
    char byte;

    ch_shale_bin();
    put("k", "v");
    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(release), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        shale_db *db = NULL;
        shale_error err = {0};
        close(ready[0]);
        close(release[1]);
        if (shale_open(ch_db, NULL, &db, &err) != SHALE_OK) {
            fprintf(stderr, "child open: %s\n", err.msg);
            _exit(1);
        }
        (void)!write(ready[1], "r", 1);
        (void)!read(release[0], &byte, 1); /* until the parent closes its end */
        _exit(shale_close(db, &err) == SHALE_OK ? 0 : 1);
    }
    close(ready[1]);
    close(release[0]);
    cr_assert_eq(read(ready[0], &byte, 1), 1, "the child could not open the database");

    expect(RUN("put", ch_db, "k", "v2"), 2, "", "in use");
    expect(RUN("get", ch_db, "k"), 2, "", "in use");
    expect(RUN("del", ch_db, "k"), 2, "", "in use");
    expect(RUN("scan", ch_db), 2, "", "in use");
    expect(RUN("stats", ch_db), 2, "", "in use");
    expect(RUN("compact", ch_db), 2, "", "in use");
    expect(RUN("check", ch_db), 2, "", "in use");

    close(release[1]);
    close(ready[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Released: the value is unchanged and usable again. */
    expect(RUN("get", ch_db, "k"), 0, "v\n", NULL);
}

/* ---- tables: check, compact, stats levels, --max-memory ---- */

/* Writes `ntables` level-0 tables of `keys` keys each through the library (one flush per table),
 * then closes the database cleanly (so no log is left: close flushes). Keys are "t<table>k<i>"
 * with values "v<table>-<i>". Fewer than 4 tables stay in level 0 (the compaction trigger). */
static void make_tables(int ntables, int keys)
{
    shale_options o = {.create_if_missing = true};
    shale_db *db = NULL;
    shale_error err = {0};

    cr_assert_eq(shale_open(ch_db, &o, &db, &err), SHALE_OK, "%s", err.msg);
    for (int t = 0; t < ntables; t++) {
        for (int i = 0; i < keys; i++) {
            char k[32], v[32];
            snprintf(k, sizeof k, "t%dk%04d", t, i);
            snprintf(v, sizeof v, "v%d-%d", t, i);
            cr_assert_eq(
                shale_put(db, NULL, (shale_slice){k, strlen(k)}, (shale_slice){v, strlen(v)}, &err),
                SHALE_OK, "%s", err.msg);
        }
        cr_assert_eq(shale_flush(db, &err), SHALE_OK, "%s", err.msg);
    }
    cr_assert_eq(shale_close(db, &err), SHALE_OK, "%s", err.msg);
}

/* Writes `n` keys "log%04d" in a child process that exits without closing, so the records stay
 * in live log segments (one record per put) as after a crash. Values are "a value long enough to
 * matter <i>" padded with '.' to `value_len` bytes (0: not padded); segment_bytes 0 = default. */
static void make_live_log_ex(int n, size_t value_len, uint64_t segment_bytes)
{
    ch_shale_bin(); /* skip before forking when the binary is not there */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* FULL: every record is synced, and each later one's sync marker proves it, so damage
         * in the middle of the log is corruption, not an unsynced torn tail (wal_format.h). */
        shale_options o = {.create_if_missing = true,
                           .wal_segment_bytes = segment_bytes,
                           .durability = SHALE_DURABILITY_FULL};
        shale_db *db = NULL;
        shale_error err = {0};
        char *v = malloc(value_len + 64);
        if (v == NULL || shale_open(ch_db, &o, &db, &err) != SHALE_OK) {
            _exit(1);
        }
        for (int i = 0; i < n; i++) {
            char k[32];
            snprintf(k, sizeof k, "log%04d", i);
            size_t len = (size_t)snprintf(v, 64, "a value long enough to matter %d", i);
            for (; len < value_len; len++) {
                v[len] = '.';
            }
            if (shale_put(db, NULL, (shale_slice){k, strlen(k)}, (shale_slice){v, len}, &err) !=
                SHALE_OK) {
                _exit(2);
            }
        }
        _exit(0); /* no close: the log is not flushed into a table */
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}

static void make_live_log(int n)
{
    make_live_log_ex(n, 0, 0);
}

/* The path of the first file in ch_db whose name ends with `suffix` (or starts with it, for
 * "MANIFEST-"), malloc'ed; fails the test when there is none. */
static char *db_file(const char *suffix)
{
    size_t count = 0;
    char **names = tu_list_dir(ch_db, &count);
    char *path = NULL;
    for (size_t i = 0; i < count && path == NULL; i++) {
        size_t n = strlen(names[i]), sn = strlen(suffix);
        if (strncmp(names[i], suffix, sn) == 0 ||
            (n > sn && strcmp(names[i] + n - sn, suffix) == 0)) {
            path = tu_path(ch_db, names[i]);
        }
    }
    tu_free_names(names, count);
    cr_assert_not_null(path, "no *%s file in %s", suffix, ch_db);
    return path;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The report line of file `name` in check output `out` (a static copy), or fails the test. */
static const char *report_line(const char *out, const char *name)
{
    static char line[1024];
    size_t n = strlen(name);
    for (const char *p = out; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len > n && strncmp(p, name, n) == 0 && p[n] == ' ') {
            snprintf(line, sizeof line, "%.*s", (int)len, p);
            return line;
        }
        p = nl ? nl + 1 : NULL;
    }
    cr_assert_fail("no report line for %s in\n%s", name, out);
    return NULL;
}

/* "name size" of every file in ch_db, one per line: to prove check changed nothing. */
static char *dir_state(void)
{
    size_t count = 0, used = 0, cap = 4096;
    char **names = tu_list_dir(ch_db, &count);
    char *s = malloc(cap);
    cr_assert_not_null(s);
    s[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        char *p = tu_path(ch_db, names[i]);
        int w = snprintf(s + used, cap - used, "%s %lld\n", names[i], (long long)tu_file_size(p));
        cr_assert(w > 0 && (size_t)w < cap - used);
        used += (size_t)w;
        free(p);
    }
    tu_free_names(names, count);
    return s;
}

/* Runs check expecting exit `code`, and returns the result (stdout/stderr) for more asserts. */
static ch_result check_expect(int code)
{
    ch_result r = RUN("check", ch_db);
    cr_assert_eq(r.code, code, "check: exit %d, want %d\nstdout:\n%s\nstderr: %s", r.code, code,
                 r.out, r.err);
    return r;
}

/* Runs check expecting exit `code`; the report line of file `path` (its base name) must say
 * `verdict` and, unless NULL, `detail`. */
static void expect_line(int code, const char *path, const char *verdict, const char *detail)
{
    ch_result r = check_expect(code);
    const char *line = report_line(r.out, base_name(path));
    cr_assert_not_null(strstr(line, verdict), "%s", line);
    if (detail != NULL) {
        cr_assert_not_null(strstr(line, detail), "%s", line);
    }
    ch_free(&r);
}

/* Asserts that check finds nothing wrong. */
static void expect_clean(void)
{
    ch_result r = check_expect(0);
    cr_assert_not_null(strstr(r.out, "clean"), "%s", r.out);
    cr_assert_str_empty(r.err);
    ch_free(&r);
}

Test(cli, check_clean_database_lists_every_file)
{
    make_tables(2, 200);
    make_live_log(20);
    char *before = dir_state();
    ch_result r = check_expect(0);
    cr_assert_str_empty(r.err);
    cr_assert_not_null(strstr(r.out, "FILE"), "%s", r.out);
    cr_assert_not_null(strstr(report_line(r.out, "SHALE"), " OK"), "%s", r.out);
    cr_assert_not_null(strstr(report_line(r.out, "CURRENT"), " OK"), "%s", r.out);
    /* Every file of the directory has its line, and each table and log is OK. */
    size_t count = 0, tables = 0, logs = 0;
    char **names = tu_list_dir(ch_db, &count);
    for (size_t i = 0; i < count; i++) {
        const char *line = report_line(r.out, names[i]);
        if (tu_is_numbered(names[i], "sst")) {
            tables++;
            cr_assert_not_null(strstr(line, "table L"), "%s", line);
            cr_assert_not_null(strstr(line, "blocks"), "%s", line);
            cr_assert_not_null(strstr(line, " OK"), "%s", line);
        } else if (tu_is_numbered(names[i], "log")) {
            logs++;
            cr_assert_not_null(strstr(line, "20 records"), "%s", line);
            cr_assert_not_null(strstr(line, " OK"), "%s", line);
        } else if (strncmp(names[i], "MANIFEST-", 9) == 0) {
            cr_assert_not_null(strstr(line, " OK"), "%s", line);
        }
    }
    tu_free_names(names, count);
    cr_assert_geq(tables, 2, "%s", r.out);
    cr_assert_eq(logs, 1, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "0 damage findings"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "clean"), "%s", r.out);
    ch_free(&r);
    /* Nothing changed, and the database still opens with every key. */
    char *after = dir_state();
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
    expect(RUN("get", ch_db, "t1k0199"), 0, "v1-199\n", NULL);
    expect(RUN("get", ch_db, "log0019"), 0, "a value long enough to matter 19\n", NULL);
}

Test(cli, check_database_made_by_the_cli)
{
    put("a", "1");
    put("b", "2");
    expect_clean();
}

Test(cli, check_flipped_bit_in_a_table)
{
    make_tables(2, 200);
    char *sst = db_file(".sst");
    cr_assert_eq(tu_flip_bit(sst, 20, 3), 0); /* inside the first data block */
    ch_result r = check_expect(1);
    const char *line = report_line(r.out, base_name(sst));
    cr_assert_not_null(strstr(line, "DAMAGED"), "%s", line);
    cr_assert_not_null(strstr(line, base_name(sst)), "%s", line);
    cr_assert_not_null(strstr(r.err, "shale check: "), "%s", r.err);
    cr_assert_not_null(strstr(r.err, "damage found"), "%s", r.err);
    ch_free(&r);
    free(sst);
}

Test(cli, check_flipped_bit_in_a_middle_log_record)
{
    make_live_log(60);
    char *log = db_file(".log");
    int64_t size = tu_file_size(log);
    cr_assert_gt(size, 1000);
    cr_assert_eq(tu_flip_bit(log, (uint64_t)size / 2, 1), 0);
    char *before = dir_state();
    expect_line(1, log, "DAMAGED", "@");
    char *after = dir_state();
    cr_assert_str_eq(before, after, "check changed the directory");
    free(before);
    free(after);
    free(log);
}

Test(cli, check_torn_log_tail_is_a_note)
{
    make_live_log(10);
    char *log = db_file(".log");
    int64_t size = tu_file_size(log);
    cr_assert_eq(tu_truncate(log, (uint64_t)size - 5), 0);
    char *before = dir_state();
    ch_result r = check_expect(0);
    const char *line = report_line(r.out, base_name(log));
    cr_assert_not_null(strstr(line, "NOTE"), "%s", line);
    cr_assert_not_null(strstr(line, "torn tail"), "%s", line);
    cr_assert_not_null(strstr(line, "9 records"), "%s", line);
    cr_assert_str_empty(r.err);
    ch_free(&r);
    /* Not cut: check never truncates. */
    char *after = dir_state();
    cr_assert_str_eq(before, after, "check changed the directory");
    cr_assert_eq(tu_file_size(log), size - 5);
    free(before);
    free(after);
    free(log);
}

Test(cli, check_torn_tail_of_an_earlier_log_segment_is_damage)
{
    /* ~40 KiB per segment of 64 KiB: at least two segments. */
    make_live_log_ex(100, 1000, 64 << 10);
    size_t count = 0;
    char **names = tu_list_dir(ch_db, &count);
    char *first = NULL;
    size_t logs = 0;
    for (size_t i = 0; i < count; i++) {
        if (tu_is_numbered(names[i], "log")) {
            logs++;
            if (first == NULL) {
                first = tu_path(ch_db, names[i]); /* sorted: the lowest number */
            }
        }
    }
    tu_free_names(names, count);
    cr_assert_geq(logs, 2);
    expect_clean();
    cr_assert_eq(tu_truncate(first, (uint64_t)tu_file_size(first) - 10), 0);
    expect_line(1, first, "DAMAGED", "not the last");
    free(first);
}

/* A closed segment cut at a record boundary reads as complete; the next segment's record of
 * how long it was gives it away. */
Test(cli, check_closed_log_segment_cut_at_a_record_boundary_is_damage)
{
    make_live_log_ex(100, 1000, 64 << 10);
    size_t count = 0;
    char **names = tu_list_dir(ch_db, &count);
    char *logs[2] = {NULL, NULL};
    for (size_t i = 0; i < count; i++) {
        if (tu_is_numbered(names[i], "log")) {
            if (logs[0] == NULL) {
                logs[0] = tu_path(ch_db, names[i]);
            } else if (logs[1] == NULL) {
                logs[1] = tu_path(ch_db, names[i]);
            }
        }
    }
    tu_free_names(names, count);
    cr_assert_not_null(logs[1]);
    /* Just the segment header (28 bytes): a record boundary. */
    cr_assert_eq(tu_truncate(logs[0], 28), 0);
    expect_line(1, logs[1], "DAMAGED", base_name(logs[0]));
    free(logs[0]);
    free(logs[1]);
}

Test(cli, check_torn_final_manifest_record_is_a_note)
{
    make_tables(2, 50);
    char *manifest = db_file("MANIFEST-");
    cr_assert_eq(tu_truncate(manifest, (uint64_t)tu_file_size(manifest) - 3), 0);
    expect_line(0, manifest, "NOTE", "torn final record");
    free(manifest);
}

Test(cli, check_flipped_bit_in_the_manifest)
{
    make_tables(3, 50); /* one edit per flush after the snapshot */
    char *manifest = db_file("MANIFEST-");
    cr_assert_gt(tu_file_size(manifest), 60);
    cr_assert_eq(tu_flip_bit(manifest, 40, 2), 0); /* inside the first edit, valid ones follow */
    expect_line(1, manifest, "DAMAGED", "MANIFEST-");
    free(manifest);
}

Test(cli, check_flipped_bit_in_the_identity_file)
{
    put("k", "v");
    char *id = tu_path(ch_db, "SHALE");
    cr_assert_eq(tu_flip_bit(id, 17, 0), 0); /* the creation time: only the checksum notices */
    expect_line(1, "SHALE", "DAMAGED", "checksum");
    cr_assert_eq(tu_flip_bit(id, 17, 0), 0); /* flipped back: clean again */
    expect_clean();
    cr_assert_eq(tu_flip_bit(id, 0, 0), 0); /* the magic */
    expect_line(1, "SHALE", "DAMAGED", NULL);
    free(id);
}

Test(cli, check_missing_table)
{
    make_tables(2, 100);
    char *sst = db_file(".sst");
    cr_assert_eq(unlink(sst), 0);
    expect_line(1, sst, "DAMAGED", "missing");
    free(sst);
}

Test(cli, check_missing_identity_or_current)
{
    make_tables(1, 10);
    char *current = tu_path(ch_db, "CURRENT");
    char *saved = tu_path(ch_dir, "CURRENT.saved");
    cr_assert_eq(rename(current, saved), 0);
    ch_result r = check_expect(1);
    cr_assert_not_null(strstr(report_line(r.out, "CURRENT"), "DAMAGED"), "%s", r.out);
    /* Without a manifest the tables are still verified on their own. */
    cr_assert_not_null(strstr(r.out, "level unknown"), "%s", r.out);
    ch_free(&r);
    cr_assert_eq(rename(saved, current), 0);
    char *id = tu_path(ch_db, "SHALE");
    cr_assert_eq(unlink(id), 0);
    expect_line(1, "SHALE", "missing", NULL);
    free(id);
    free(current);
    free(saved);
}

Test(cli, check_leftovers_are_notes)
{
    make_tables(1, 10);
    const char *extra[] = {"000999.sst", "CURRENT.tmp", "notes.txt"};
    for (size_t i = 0; i < 3; i++) {
        char *p = tu_path(ch_db, extra[i]);
        FILE *f = fopen(p, "w");
        cr_assert_not_null(f);
        fputs("junk\n", f);
        fclose(f);
        free(p);
    }
    ch_result r = check_expect(0);
    cr_assert_not_null(strstr(report_line(r.out, "000999.sst"), "NOTE: leftover"), "%s", r.out);
    cr_assert_not_null(strstr(report_line(r.out, "CURRENT.tmp"), "NOTE"), "%s", r.out);
    cr_assert_not_null(strstr(report_line(r.out, "notes.txt"), "not a Shale file"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "3 notes"), "%s", r.out);
    cr_assert_str_empty(r.err);
    ch_free(&r);
}

Test(cli, check_database_open_in_this_process_is_refused)
{
    make_tables(1, 10);
    shale_db *db = NULL;
    shale_error err = {0};
    cr_assert_eq(shale_open(ch_db, NULL, &db, &err), SHALE_OK, "%s", err.msg);
    expect(RUN("check", ch_db), 2, "", "in use by another process");
    cr_assert_eq(shale_close(db, &err), SHALE_OK, "%s", err.msg);
    expect_clean();
}

Test(cli, check_bad_targets)
{
    char *missing = tu_path(ch_dir, "missing");
    expect(RUN("check", missing), 2, "", "does not exist");
    cr_assert(!exists(missing));
    free(missing);
    char *foreign = make_foreign_dir();
    expect(RUN("check", foreign), 2, "", "not a Shale database");
    char *lock = tu_path(foreign, "LOCK");
    cr_assert(!exists(lock), "check left a LOCK in a foreign directory");
    free(lock);
    free(foreign);
    char *file = tu_path(ch_dir, "plain");
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    expect(RUN("check", file), 2, "", "not a directory");
    free(file);
    ch_result r = RUN("check", "--help");
    cr_assert_eq(r.code, 0);
    cr_assert_not_null(strstr(r.out, "Exit status: 0"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "1 damage found"), "%s", r.out);
    ch_free(&r);
}

/* The number of tables of level `level` in the levels table that follows `section` in `text`. */
static uint64_t level_tables(const char *text, const char *section, int level)
{
    const char *p = strstr(text, section);
    char row[16];
    cr_assert_not_null(p, "no '%s' in\n%s", section, text);
    snprintf(row, sizeof row, "\nL%d ", level);
    p = strstr(p, row);
    cr_assert_not_null(p, "no row L%d after '%s' in\n%s", level, section, text);
    return strtoull(p + strlen(row), NULL, 10);
}

Test(cli, compact_prints_levels_before_and_after)
{
    make_tables(3, 100);
    ch_result r = RUN("compact", ch_db);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_str_empty(r.err);
    cr_assert_eq(level_tables(r.out, "before:", 0), 3, "%s", r.out);
    cr_assert_eq(level_tables(r.out, "after:", 0), 0, "%s", r.out);
    uint64_t below = 0;
    for (int l = 1; l < 7; l++) {
        below += level_tables(r.out, "after:", l);
    }
    cr_assert_geq(below, 1, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "compactions: "), "%s", r.out);
    ch_free(&r);
    /* Same data, still clean. */
    expect(RUN("get", ch_db, "t0k0000"), 0, "v0-0\n", NULL);
    expect(RUN("get", ch_db, "t2k0099"), 0, "v2-99\n", NULL);
    expect_clean();
    /* Compacting a compacted database is a no-op that still succeeds. */
    r = RUN("compact", ch_db);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_eq(level_tables(r.out, "before:", 0), 0, "%s", r.out);
    ch_free(&r);
}

Test(cli, stats_levels_and_cache)
{
    make_tables(2, 100);
    ch_result r = RUN("stats", ch_db);
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_eq(stat_line(r.out, "levels"), 7, "%s", r.out);
    cr_assert_gt(stat_line(r.out, "table_bytes_on_disk"), 0, "%s", r.out);
    cr_assert_gt(stat_line(r.out, "block_cache_capacity"), 0, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\nlevel "), "%s", r.out);
    cr_assert_eq(level_tables(r.out, "\nlevel ", 0), 2, "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\ntotal "), "%s", r.out);
    ch_free(&r);

    r = RUN("stats", ch_db, "--json");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_not_null(strstr(r.out, "\"level_tables\": [2, 0, 0, 0, 0, 0, 0]"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\"block_cache_hit_rate\": "), "%s", r.out);
    cr_assert_eq(strchr(r.out, '\n'), r.out + r.out_len - 1, "one line: %s", r.out);
    ch_free(&r);
}

Test(cli, max_memory_flag)
{
    put("k", "v");
    /* Accepted by every command that opens the database. */
    expect(RUN("put", ch_db, "k2", "v2", "--max-memory", "16"), 0, "", NULL);
    expect(RUN("get", ch_db, "k2", "--max-memory=16"), 0, "v2\n", NULL);
    expect(RUN("scan", ch_db, "--keys-only", "--max-memory", "4"), 0, "k\nk2\n", NULL);
    expect(RUN("del", ch_db, "k2", "--max-memory", "1048576"), 0, "", NULL);
    ch_result r = RUN("compact", ch_db, "--max-memory", "32");
    cr_assert_eq(r.code, 0, "%s", r.err);
    ch_free(&r);
    /* It reaches the library: the write buffer defaults to an eighth of it. */
    r = RUN("stats", ch_db, "--max-memory", "64");
    cr_assert_eq(r.code, 0, "%s", r.err);
    cr_assert_eq(stat_line(r.out, "memtable_budget_bytes"), (64u << 20) / 8, "%s", r.out);
    ch_free(&r);
    /* Bad values are refused before anything is opened or created. */
    const char *bad[] = {"0", "3", "1048577", "abc", "-1", "", "16M", "1.5"};
    char *fresh = tu_path(ch_dir, "fresh");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect(RUN("put", fresh, "k", "v", "--max-memory", bad[i]), 2, "", "--max-memory");
        expect(RUN("get", ch_db, "k", "--max-memory", bad[i]), 2, "", "shale get: --max-memory");
        expect(RUN("stats", ch_db, "--max-memory", bad[i]), 2, "", "shale stats: --max-memory");
        expect(RUN("compact", ch_db, "--max-memory", bad[i]), 2, "", "shale compact: --max-memory");
    }
    cr_assert(!exists(fresh));
    free(fresh);
    expect(RUN("put", ch_db, "k", "v", "--max-memory"), 2, "", "'--max-memory' needs a value");
    ch_result h = RUN("put", "--help");
    cr_assert_not_null(strstr(h.out, "--max-memory MIB"), "%s", h.out);
    ch_free(&h);
    expect(RUN("get", ch_db, "k"), 0, "v\n", NULL);
}
