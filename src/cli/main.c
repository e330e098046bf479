/* main: the `shale` program's entry point: finds the subcommand in the table and runs it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shale.h"

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"serve", cmd_serve,
     "run the database as a server: HTTP/JSON documents and the Redis protocol"},
    {"put", cmd_put, "write a key (creates the database if missing)"},
    {"get", cmd_get, "print a key's value; exit 1 if it is absent"},
    {"del", cmd_del, "delete a key"},
    {"scan", cmd_scan, "print keys and values in order, with bounds, prefix and limit"},
    {"stats", cmd_stats, "print the database's statistics and levels"},
    {"compact", cmd_compact, "compact the whole database into its bottom level"},
    {"check", cmd_check, "verify every checksum and the manifest; exit 1 on damage"},
    {"backup", cmd_backup, "back up a database (incremental); list, verify, delete, purge backups"},
    {"restore", cmd_restore, "restore a backup into a directory (verified first)"},
    {"bench", cmd_bench, "measure the engine under a workload"},
    {"doc", cmd_doc, "JSON documents: insert, get, update, replace, delete, find, index, ..."},
    {"export", cmd_export, "print the documents of one or every collection as JSON Lines"},
    {"import", cmd_import, "insert JSON Lines from stdin into a collection (or into several)"},
};

#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: shale COMMAND ARGS... [FLAGS]\n"
               "       shale --help | --version\n\n"
               "Shale is a crash-safe key-value store; a database is a directory.\n\n"
               "commands:\n");
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        fprintf(f, "  %-7s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f, "\nRun 'shale COMMAND --help' for a command's arguments and flags.\n"
               "Exit status: 0 success, 1 not found (get, doc get, ...) or damage found (check),\n"
               "2 error.\n");
}

static int find(const char *name)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* `shale help` and `shale help COMMAND` (the latter is `shale COMMAND --help`). */
static int help(int argc, char **argv)
{
    if (argc < 3) {
        usage(stdout);
        return CLI_OK;
    }
    int i = find(argv[2]);
    if (i < 0 || argc > 3) {
        fprintf(stderr, "shale help: unknown command '%s' (see shale --help)\n", argv[2]);
        return CLI_ERROR;
    }
    char *sub[] = {argv[2], (char *)"--help", NULL};
    return commands[i].run(2, sub);
}

static int dispatch(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_ERROR;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        return help(argc, argv);
    }
    if (strcmp(name, "--version") == 0) {
        printf("shale %s\n", shale_version());
        return CLI_OK;
    }
    int i = find(name);
    if (i < 0) {
        fprintf(stderr, "shale: unknown %s '%s' (see shale --help)\n",
                name[0] == '-' ? "flag" : "command", name);
        return CLI_ERROR;
    }
    return commands[i].run(argc - 1, argv + 1);
}

int main(int argc, char **argv)
{
    int rc = dispatch(argc, argv);

    /* A result that did not reach stdout (a full disk, a closed pipe) is a failure. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        char buf[128];
        fprintf(stderr, "shale: writing the output failed: %s\n",
                strerror_r(errno, buf, sizeof buf)); /* GNU strerror_r (_GNU_SOURCE) */
        return CLI_ERROR;
    }
    return rc;
}
