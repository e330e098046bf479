/*
 * cmd_backup: `shale backup` and `shale restore`, over the library's backup API (include/shale.h,
 * "Backups"; the formats are in src/lsm/backup.c).
 *
 *   shale backup DIR DEST              open DIR (refused while another process has it open) and
 *                                      back it up into DEST
 *   shale backup list DEST             one line per complete backup, oldest first
 *   shale backup verify DEST [ID]      re-read every file and check its size and SHA-256
 *   shale backup delete DEST ID
 *   shale backup purge DEST --keep N   delete every backup but the newest N
 *   shale restore DEST DIR [--id ID] [--force]
 *
 * The first argument of `shale backup` picks the verb: list, verify, delete and purge are verbs,
 * anything else is the DIR of a backup (write ./list to back up a database called "list").
 *
 * Exit codes (cli.h): 0 success; 1 "the answer is no": damage was found (verify, or a restore
 * that refused a damaged backup: nothing was written) or no such backup; 2 any other failure
 * (usage, not a backup destination, another database's destination, busy, I/O).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

/* A library code as an exit code. */
static int exit_of(shale_code rc)
{
    switch (rc) {
    case SHALE_OK:
        return CLI_OK;
    case SHALE_NOT_FOUND:
        return CLI_NOT_FOUND;
    case SHALE_CORRUPTION:
        return CLI_DAMAGED;
    default:
        return CLI_ERROR;
    }
}

static int fail(const char *cmd, const shale_error *err)
{
    (void)cli_fail(cmd, err);
    return exit_of(err->code);
}

/* "2024-05-01T12:00:00.123Z" */
static void iso_time(uint64_t ms, char *out, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&s, &tm) == NULL) {
        snprintf(out, cap, "%" PRIu64 "ms", ms);
        return;
    }
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03uZ", day, (unsigned)(ms % 1000));
}

static bool parse_id(const char *cmd, const char *what, const char *text, uint64_t *out)
{
    return cli_parse_u64(cmd, what, text, 1, UINT64_MAX, out);
}

/* ---- shale backup DIR DEST ---- */

static const cli_flag_spec backup_flags[] = {
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_spec backup_spec = {
    .name = "backup",
    .args = "DIR DEST",
    .summary = "Backs up the database in DIR into the backup destination DEST (created if "
               "missing).",
    .details =
        "DEST holds any number of backups of one database; tables they share are stored once,\n"
        "so each backup after the first copies only the tables written since. Every file is\n"
        "recorded with its size and SHA-256. The backup holds every write made before the\n"
        "command. DIR must not be open in another process (a server backs up through\n"
        "POST /admin/backup).\n"
        "\n"
        "Other forms:\n"
        "  shale backup list DEST             one line per backup, oldest first: id, time (UTC),\n"
        "                                     sequence number, files, bytes\n"
        "  shale backup verify DEST [ID]      re-read every file of backup ID (all without ID)\n"
        "                                     and check its size and SHA-256\n"
        "  shale backup delete DEST ID        delete one backup and the tables only it used\n"
        "  shale backup purge DEST --keep N   delete every backup but the newest N\n"
        "  shale restore DEST DIR [--id ID] [--force]\n"
        "\n"
        "Exit status: 0 success, 1 damage found (verify, restore) or no such backup, 2 error.\n",
    .min_args = 2,
    .max_args = 2,
    .flags = backup_flags,
};

static int run_backup(int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_error err = {0};
    shale_backup_info info;
    int rc;

    if (!cli_parse(&backup_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (cli_open_db(&a, false, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    if (shale_backup(db, a.pos[1], &info, &err) != SHALE_OK) {
        rc = fail("backup", &err);
        return cli_close("backup", db, rc);
    }
    char when[48];
    iso_time(info.created_at_ms, when, sizeof when);
    printf("backup %" PRIu64 ": %s, seq %" PRIu64 ", %" PRIu64 " files (%" PRIu64
           " bytes), %" PRIu64 " new (%" PRIu64 " bytes)\n",
           info.id, when, info.seq, info.files, info.bytes, info.new_files, info.new_bytes);
    return cli_close("backup", db, CLI_OK);
}

/* ---- shale backup list DEST ---- */

static const cli_spec list_spec = {
    .name = "backup list",
    .args = "DEST",
    .summary = "Lists the backups in DEST, oldest first.",
    .details = "One line per complete backup after a header: id, creation time (ISO 8601, UTC),\n"
               "the newest sequence number it holds, its files and their total bytes. A backup\n"
               "cut short (no manifest) is not listed. Reads only the manifests: use verify to\n"
               "read the files.\n",
    .min_args = 1,
    .max_args = 1,
    .flags = NULL,
};

static int run_list(int argc, char **argv)
{
    cli_args a;
    shale_error err = {0};
    shale_backup_info *v = NULL;
    size_t n = 0;
    int rc;

    if (!cli_parse(&list_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (shale_backup_list(a.pos[0], &v, &n, &err) != SHALE_OK) {
        return fail("backup list", &err);
    }
    printf("%-8s %-24s %12s %8s %16s\n", "id", "time", "seq", "files", "bytes");
    for (size_t i = 0; i < n; i++) {
        char when[48];
        iso_time(v[i].created_at_ms, when, sizeof when);
        printf("%-8" PRIu64 " %-24s %12" PRIu64 " %8" PRIu64 " %16" PRIu64 "\n", v[i].id, when,
               v[i].seq, v[i].files, v[i].bytes);
    }
    free(v);
    return CLI_OK;
}

/* ---- shale backup verify DEST [ID] ---- */

static const cli_spec verify_spec = {
    .name = "backup verify",
    .args = "DEST [ID]",
    .summary = "Re-reads every file of backup ID (of every backup without ID) and checks its "
               "size and SHA-256.",
    .details = "Prints one line per backup checked. Exit status: 0 intact, 1 damage found (the\n"
               "message names the file) or no such backup, 2 could not check.\n",
    .min_args = 1,
    .max_args = 2,
    .flags = NULL,
};

static int run_verify(int argc, char **argv)
{
    cli_args a;
    shale_error err = {0};
    uint64_t id = 0;
    int rc;

    if (!cli_parse(&verify_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (a.npos == 2 && !parse_id("backup verify", "ID", a.pos[1], &id)) {
        return CLI_ERROR;
    }
    if (id != 0) {
        if (shale_backup_verify(a.pos[0], id, &err) != SHALE_OK) {
            return fail("backup verify", &err);
        }
        printf("backup %" PRIu64 ": OK\n", id);
        return CLI_OK;
    }
    /* All of them, one line each; stop at the first damage (it names the file). */
    shale_backup_info *v = NULL;
    size_t n = 0;
    if (shale_backup_list(a.pos[0], &v, &n, &err) != SHALE_OK) {
        return fail("backup verify", &err);
    }
    rc = CLI_OK;
    for (size_t i = 0; i < n && rc == CLI_OK; i++) {
        if (shale_backup_verify(a.pos[0], v[i].id, &err) != SHALE_OK) {
            printf("backup %" PRIu64 ": DAMAGED\n", v[i].id);
            rc = fail("backup verify", &err);
        } else {
            printf("backup %" PRIu64 ": OK\n", v[i].id);
        }
    }
    if (rc == CLI_OK) {
        printf("%zu backup%s verified\n", n, n == 1 ? "" : "s");
    }
    free(v);
    return rc;
}

/* ---- shale backup delete DEST ID ---- */

static const cli_spec delete_spec = {
    .name = "backup delete",
    .args = "DEST ID",
    .summary = "Deletes backup ID from DEST, and the tables no other backup uses.",
    .details = NULL,
    .min_args = 2,
    .max_args = 2,
    .flags = NULL,
};

static int run_delete(int argc, char **argv)
{
    cli_args a;
    shale_error err = {0};
    uint64_t id;
    int rc;

    if (!cli_parse(&delete_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (!parse_id("backup delete", "ID", a.pos[1], &id)) {
        return CLI_ERROR;
    }
    if (shale_backup_delete(a.pos[0], id, &err) != SHALE_OK) {
        return fail("backup delete", &err);
    }
    printf("backup %" PRIu64 ": deleted\n", id);
    return CLI_OK;
}

/* ---- shale backup purge DEST --keep N ---- */

static const cli_flag_spec purge_flags[] = {
    {"keep", "N", "how many of the newest backups to keep, at least 1 (required)"},
    {NULL, NULL, NULL},
};

static const cli_spec purge_spec = {
    .name = "backup purge",
    .args = "DEST",
    .summary = "Deletes every backup in DEST but the newest N (--keep N), and the tables only "
               "they used.",
    .details = NULL,
    .min_args = 1,
    .max_args = 1,
    .flags = purge_flags,
};

static int run_purge(int argc, char **argv)
{
    cli_args a;
    shale_error err = {0};
    uint64_t keep;
    shale_backup_info *before = NULL, *after = NULL;
    size_t nbefore = 0, nafter = 0;
    int rc;

    if (!cli_parse(&purge_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (cli_flag(&a, "keep") == NULL) {
        return cli_errorf("backup purge", "--keep N is required");
    }
    if (!cli_parse_u64("backup purge", "keep", cli_flag(&a, "keep"), 1, UINT32_MAX, &keep)) {
        return CLI_ERROR;
    }
    if (shale_backup_list(a.pos[0], &before, &nbefore, &err) != SHALE_OK) {
        return fail("backup purge", &err);
    }
    free(before);
    if (shale_backup_purge(a.pos[0], (uint32_t)keep, &err) != SHALE_OK) {
        return fail("backup purge", &err);
    }
    if (shale_backup_list(a.pos[0], &after, &nafter, &err) != SHALE_OK) {
        return fail("backup purge", &err);
    }
    free(after);
    printf("deleted %zu backup%s, kept %zu\n", nbefore - nafter, nbefore - nafter == 1 ? "" : "s",
           nafter);
    return CLI_OK;
}

int cmd_backup(int argc, char **argv)
{
    static const struct {
        const char *verb;
        int (*run)(int argc, char **argv);
    } verbs[] = {
        {"list", run_list},
        {"verify", run_verify},
        {"delete", run_delete},
        {"purge", run_purge},
    };

    if (argc >= 2) {
        for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
            if (strcmp(argv[1], verbs[i].verb) == 0) {
                return verbs[i].run(argc - 1, argv + 1);
            }
        }
    }
    return run_backup(argc, argv);
}

/* ---- shale restore DEST DIR ---- */

static const cli_flag_spec restore_flags[] = {
    {"id", "ID", "the backup to restore (default: the newest)"},
    {"force", NULL, "replace the database in DIR (refused while it is open)"},
    {NULL, NULL, NULL},
};

static const cli_spec restore_spec = {
    .name = "restore",
    .args = "DEST DIR",
    .summary = "Restores a backup from DEST into DIR, which must be missing or empty unless "
               "--force.",
    .details = "Every file of the backup is checked (size and SHA-256) before anything is\n"
               "written; a damaged backup is refused with exit status 1 and DIR untouched.\n"
               "Files are copied (never linked) and synced, CURRENT last: an interrupted\n"
               "restore leaves a directory that does not open. With --force, an existing\n"
               "database in DIR is removed first; a directory that is not a database is never\n"
               "emptied.\n",
    .min_args = 2,
    .max_args = 2,
    .flags = restore_flags,
};

int cmd_restore(int argc, char **argv)
{
    cli_args a;
    shale_error err = {0};
    uint64_t id = 0;
    int rc;

    if (!cli_parse(&restore_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (cli_flag(&a, "id") != NULL && !parse_id("restore", "id", cli_flag(&a, "id"), &id)) {
        return CLI_ERROR;
    }
    if (id == 0) {
        /* The newest, named in the output. */
        shale_backup_info *v = NULL;
        size_t n = 0;
        if (shale_backup_list(a.pos[0], &v, &n, &err) != SHALE_OK) {
            return fail("restore", &err);
        }
        id = n > 0 ? v[n - 1].id : 0;
        free(v);
        if (id == 0) {
            (void)cli_errorf("restore", "%s: no backup to restore", a.pos[0]);
            return CLI_NOT_FOUND;
        }
    }
    if (shale_restore(a.pos[0], id, a.pos[1], cli_has(&a, "force"), &err) != SHALE_OK) {
        return fail("restore", &err);
    }
    printf("restored backup %" PRIu64 " into %s\n", id, a.pos[1]);
    return CLI_OK;
}
