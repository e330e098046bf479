/*
 * cmd_admin: the maintenance subcommands stats and compact. Both open the database (recovery
 * included), so they fail with "in use" while another process has it open.
 *
 * stats prints every field of shale_stats as "name: value" lines (or one JSON object), then a
 * levels table. The names are the struct's field names and their order is fixed: scripts parse
 * them, so a field once printed keeps its name and new fields are appended, never inserted.
 */
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "cli/cli.h"

enum stat_type { STAT_U64, STAT_U32, STAT_F64 };

/* Every scalar counter and gauge of shale_stats, for both output formats. The first fifteen are
 * issue 2's, in their original order; the rest came with tables and compaction. */
static const struct {
    const char *name;
    size_t offset;
    enum stat_type type;
} stat_fields[] = {
/* clang-format off */
#define STAT(f) {#f, offsetof(shale_stats, f), STAT_U64}
#define STAT32(f) {#f, offsetof(shale_stats, f), STAT_U32}
#define STATF(f) {#f, offsetof(shale_stats, f), STAT_F64}
    STAT(live_keys), STAT(memory_bytes), STAT(log_bytes), STAT(log_segments),
    STAT(last_sequence), STAT(writes), STAT(reads), STAT(batches), STAT(group_commits),
    STAT(syncs), STAT(expired_removed), STAT(recovered_records), STAT(salvaged_records),
    STAT(salvaged_bytes), STAT(truncated_bytes),
    STAT32(levels), STAT(immutable_memtables), STAT(flushes), STAT(compactions),
    STAT(flush_bytes), STAT(compaction_bytes_read), STAT(compaction_bytes_written),
    STAT(user_bytes_written), STATF(write_amplification), STAT(pending_compaction_bytes),
    STAT(stall_us), STAT(slowdown_us), STAT(stalls), STAT(estimated_live_keys),
    STAT(open_tables), STAT(block_cache_bytes), STAT(block_cache_capacity),
    STAT(block_cache_hits), STAT(block_cache_misses), STATF(block_cache_hit_rate),
    STAT(memtable_budget_bytes), STAT(table_bytes_on_disk), STAT(snapshots),
    STAT(flush_failures), STAT(compaction_failures),
#undef STAT
#undef STAT32
#undef STATF
    /* clang-format on */
};

#define STAT_COUNT (sizeof stat_fields / sizeof stat_fields[0])
#define MAX_LEVELS (sizeof((shale_stats *)0)->level_tables / sizeof(uint64_t))

/* The field's value as text: integers in decimal, ratios with four decimals (a non-finite ratio,
 * which the library should never report, prints as 0 so the output stays valid JSON). */
static void stat_text(const shale_stats *st, size_t i, char *out, size_t cap)
{
    const char *p = (const char *)st + stat_fields[i].offset;

    switch (stat_fields[i].type) {
    case STAT_U64: {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        snprintf(out, cap, "%" PRIu64, v);
        break;
    }
    case STAT_U32: {
        uint32_t v;
        memcpy(&v, p, sizeof v);
        snprintf(out, cap, "%" PRIu32, v);
        break;
    }
    case STAT_F64: {
        double v;
        memcpy(&v, p, sizeof v);
        snprintf(out, cap, "%.4f", isfinite(v) ? v : 0.0);
        break;
    }
    }
}

/* How many rows of level_tables/level_bytes are meaningful. */
static size_t level_count(const shale_stats *st)
{
    return st->levels > MAX_LEVELS ? MAX_LEVELS : st->levels;
}

/* The levels table: a header line, one row per level, a total row. No ':' in any of these lines,
 * so they never look like a "name: value" field to a parser of the lines above them. */
static void print_levels(const shale_stats *st)
{
    uint64_t tables = 0, bytes = 0;

    printf("%-5s %8s %16s\n", "level", "tables", "bytes");
    for (size_t l = 0; l < level_count(st); l++) {
        char name[24];
        snprintf(name, sizeof name, "L%zu", l);
        printf("%-5s %8" PRIu64 " %16" PRIu64 "\n", name, st->level_tables[l], st->level_bytes[l]);
        tables += st->level_tables[l];
        bytes += st->level_bytes[l];
    }
    printf("%-5s %8" PRIu64 " %16" PRIu64 "\n", "total", tables, bytes);
}

/* A JSON string body: quote, backslash and control bytes escaped; other bytes as they are. */
static void print_json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            printf("\\%c", *p);
        } else if (*p < 0x20 || *p == 0x7f) {
            printf("\\u%04x", *p);
        } else {
            putchar(*p);
        }
    }
    putchar('"');
}

static void print_json_array(const char *name, const uint64_t *v, size_t n)
{
    printf("\"%s\": [", name);
    for (size_t i = 0; i < n; i++) {
        printf("%s%" PRIu64, i ? ", " : "", v[i]);
    }
    printf("], ");
}

static void print_stats(const shale_stats *st, bool json)
{
    char text[64];

    if (!json) {
        for (size_t i = 0; i < STAT_COUNT; i++) {
            stat_text(st, i, text, sizeof text);
            printf("%s: %s\n", stat_fields[i].name, text);
        }
        printf("writes_stopped: %s\n", st->writes_stopped ? "true" : "false");
        printf("stop_reason: "); /* escaped: it must stay one line */
        cli_print_escaped(stdout, st->stop_reason, strlen(st->stop_reason));
        putchar('\n');
        printf("background_error: %s\n", st->background_error ? "true" : "false");
        printf("compactions_halted: %s\n", st->compactions_halted ? "true" : "false");
        printf("background_error_msg: ");
        cli_print_escaped(stdout, st->background_error_msg, strlen(st->background_error_msg));
        putchar('\n');
        print_levels(st);
        return;
    }
    printf("{");
    for (size_t i = 0; i < STAT_COUNT; i++) {
        stat_text(st, i, text, sizeof text);
        printf("\"%s\": %s, ", stat_fields[i].name, text);
    }
    print_json_array("level_tables", st->level_tables, level_count(st));
    print_json_array("level_bytes", st->level_bytes, level_count(st));
    printf("\"writes_stopped\": %s, \"stop_reason\": ", st->writes_stopped ? "true" : "false");
    print_json_string(st->stop_reason);
    printf(", \"background_error\": %s, \"compactions_halted\": %s, \"background_error_msg\": ",
           st->background_error ? "true" : "false", st->compactions_halted ? "true" : "false");
    print_json_string(st->background_error_msg);
    printf("}\n");
}

/* shale_stats_get with the reason string made safe to print. */
static int get_stats(const char *cmd, shale_db *db, shale_stats *st)
{
    shale_error err = {0};

    memset(st, 0, sizeof *st);
    if (shale_stats_get(db, st, &err) != SHALE_OK) {
        return cli_fail(cmd, &err);
    }
    st->stop_reason[sizeof st->stop_reason - 1] = '\0';
    st->background_error_msg[sizeof st->background_error_msg - 1] = '\0';
    return CLI_OK;
}

static const cli_flag_spec stats_flags[] = {
    {"json", NULL, "print one JSON object instead of \"name: value\" lines"},
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_spec stats_spec = {
    .name = "stats",
    .args = "DIR",
    .summary = "Opens the database in DIR and prints its statistics, one \"name: value\" per line.",
    .details = "Counters run since open, so they describe this run (recovery included). After\n"
               "the fields comes a table of the levels: level, tables, bytes, and a total row.\n"
               "With --json the levels are the arrays level_tables and level_bytes.\n",
    .min_args = 1,
    .max_args = 1,
    .flags = stats_flags,
};

int cmd_stats(int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_stats st;
    int rc;

    if (!cli_parse(&stats_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (cli_open_db(&a, false, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    rc = get_stats("stats", db, &st);
    if (rc == CLI_OK) {
        print_stats(&st, cli_has(&a, "json"));
    }
    return cli_close("stats", db, rc);
}

static const cli_flag_spec compact_flags[] = {
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_spec compact_spec = {
    .name = "compact",
    .args = "DIR",
    .summary = "Flushes and compacts the whole database in DIR, printing the levels before and "
               "after.",
    .details = "Every key ends up in one table at the bottom level; versions no snapshot needs,\n"
               "deleted keys and expired keys are dropped, so the database takes the least space\n"
               "and reads touch the fewest tables. It rewrites all the data: expect it to take\n"
               "as long as reading and writing the whole database once.\n",
    .min_args = 1,
    .max_args = 1,
    .flags = compact_flags,
};

int cmd_compact(int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_error err = {0};
    shale_stats before, after;
    int rc;

    if (!cli_parse(&compact_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (cli_open_db(&a, false, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    rc = get_stats("compact", db, &before);
    if (rc != CLI_OK) {
        return cli_close("compact", db, rc);
    }
    printf("before:\n");
    print_levels(&before);
    if (shale_compact(db, &err) != SHALE_OK) {
        return cli_close("compact", db, cli_fail("compact", &err));
    }
    rc = get_stats("compact", db, &after);
    if (rc == CLI_OK) {
        printf("after:\n");
        print_levels(&after);
        printf("compactions: %" PRIu64 ", bytes read: %" PRIu64 ", bytes written: %" PRIu64 "\n",
               after.compactions - before.compactions,
               after.compaction_bytes_read - before.compaction_bytes_read,
               after.compaction_bytes_written - before.compaction_bytes_written);
    }
    return cli_close("compact", db, rc);
}
