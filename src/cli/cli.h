/*
 * cli: the contract between the `shale` program's entry point (main.c) and its subcommands, plus
 * the helpers every subcommand shares (cli_util.c).
 *
 * A subcommand is `int cmd_NAME(int argc, char **argv)`: argv[0] is the subcommand's name ("put"),
 * the rest are its arguments. It returns the process exit code: CLI_OK, CLI_NOT_FOUND (a lookup
 * found nothing; not a failure), CLI_DAMAGED (only `check`: damage was found) or CLI_ERROR (bad
 * usage or a library failure). It prints results
 * on stdout and every error on stderr as one line "shale NAME: message", where a library failure's
 * message is the library's own (shale_error.msg). `NAME --help` prints usage on stdout, exit 0.
 *
 * Flags: a subcommand describes its positional arguments and flags in a cli_spec; cli_parse()
 * does the rest, the same way for every subcommand: flags are spelled `--long-name`, may come
 * before, between or after the positional arguments, take their value as `--flag=value` or
 * `--flag value`; a repeated flag's last value wins; `--` ends the flags (so a key may start with
 * '-'); `-h` is `--help`. Any other argument starting with '-' (except "-" itself) is an unknown
 * flag. Flag values are then read with cli_flag()/cli_has() and converted with cli_parse_u64()
 * and cli_open_options(), which print their own errors.
 *
 * Ownership: cli_args points into argv; nothing here allocates except cli_open (the handle).
 * Threads: none of this is thread-safe; the program is single-threaded around these calls.
 */
#ifndef SHALE_CLI_CLI_H
#define SHALE_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shale.h"

/* Process exit codes. */
#define CLI_OK        0
#define CLI_NOT_FOUND 1
#define CLI_DAMAGED                                                                                \
    1 /* `shale check` found damage; shares 1 with "not found": both mean                          \
         "ran fine, and the answer is no" */
#define CLI_ERROR 2

/* The subcommands (main.c dispatches to them). */
int cmd_put(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_del(int argc, char **argv);
int cmd_scan(int argc, char **argv);
int cmd_stats(int argc, char **argv);   /* cmd_admin.c */
int cmd_compact(int argc, char **argv); /* cmd_admin.c */
int cmd_check(int argc, char **argv);   /* cmd_check.c */
int cmd_backup(int argc, char **argv);  /* cmd_backup.c: `shale backup [VERB] ...` */
int cmd_restore(int argc, char **argv); /* cmd_backup.c */
int cmd_bench(int argc, char **argv);   /* src/cli/cmd_bench.c */
int cmd_doc(int argc, char **argv);     /* cmd_doc.c: `shale doc VERB ...` */
int cmd_export(int argc, char **argv);  /* cmd_export.c */
int cmd_import(int argc, char **argv);  /* cmd_export.c */
int cmd_serve(int argc, char **argv);   /* cmd_serve.c: the server (src/server/) */

/* One flag: `--name` (no leading dashes here). `arg` names its value in the usage text ("LEVEL");
 * NULL makes it a switch that takes no value. `help` is one line for the usage text. */
typedef struct cli_flag_spec {
    const char *name;
    const char *arg;
    const char *help;
} cli_flag_spec;

/* Flags shared by commands that open a database; cli_open_options() reads them. */
#define CLI_FLAG_DURABILITY                                                                        \
    {                                                                                              \
        "durability", "LEVEL",                                                                     \
            "none|memory|os|full: how durable a write is on return (default os)"                   \
    }
#define CLI_FLAG_MAX_KEY_BYTES                                                                     \
    {                                                                                              \
        "max-key-bytes", "N", "longest key accepted, 1..65536 (default 4096)"                      \
    }
#define CLI_FLAG_MAX_VALUE_BYTES                                                                   \
    {                                                                                              \
        "max-value-bytes", "N", "longest value accepted, 1..268435456 (default 4 MiB)"             \
    }

#define CLI_FLAG_MAX_MEMORY                                                                        \
    {                                                                                              \
        "max-memory", "MIB",                                                                       \
            "memory budget in MiB (memtables + block cache), 4..1048576 (default 256)"             \
    }

#define CLI_MAX_FLAGS      24 /* flags per subcommand, --help included */
#define CLI_MAX_POSITIONAL 8

/* What a subcommand accepts. `flags` ends with a {NULL} entry (or is NULL) and must not list
 * "help" (always accepted). `args` is the positional synopsis ("DIR KEY VALUE"), `summary` one
 * sentence, `details` optional extra paragraphs for --help (may be NULL). */
typedef struct cli_spec {
    const char *name;
    const char *args;
    const char *summary;
    const char *details;
    size_t min_args;
    size_t max_args;
    const cli_flag_spec *flags;
} cli_spec;

/* The result of cli_parse: positional arguments in order and each flag's value (NULL when absent;
 * "" for a switch that is present). Points into argv. */
typedef struct cli_args {
    const cli_spec *spec;
    const char *pos[CLI_MAX_POSITIONAL];
    size_t npos;
    const char *value[CLI_MAX_FLAGS];
} cli_args;

/* Parses argv[1..argc) (argv[0] is the subcommand name) against spec. Returns true when the
 * command should run. Returns false when it must stop and return *exit_code: CLI_OK after printing
 * usage for --help, CLI_ERROR after printing "shale NAME: ..." and a usage hint on stderr for an
 * unknown flag, a missing flag value, a value given to a switch, or too few/many arguments. */
bool cli_parse(const cli_spec *spec, int argc, char **argv, cli_args *out, int *exit_code);

/* Prints the usage text of spec (synopsis, summary, details, flags) to f. */
void cli_usage(const cli_spec *spec, FILE *f);

/* The value of flag `name` ("" for a present switch), or NULL when it was not given (or is not in
 * the spec). */
const char *cli_flag(const cli_args *a, const char *name);
bool cli_has(const cli_args *a, const char *name);

/* Prints "shale CMD: <formatted message>\n" on stderr and returns CLI_ERROR. */
int cli_errorf(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "shale CMD: <err->msg>" (or the code's text when msg is empty) and returns CLI_ERROR. */
int cli_fail(const char *cmd, const shale_error *err);

/* Parses `text` as a decimal integer in [min, max] (no sign, no spaces, no trailing bytes). On
 * failure prints "shale CMD: --FLAG: ..." and returns false. */
bool cli_parse_u64(const char *cmd, const char *flag, const char *text, uint64_t min, uint64_t max,
                   uint64_t *out);

/* Fills the fields of *opts that the flags --durability, --max-key-bytes, --max-value-bytes and
 * --max-memory control, for those of them that were given (the others keep their value). On a bad
 * value prints the error and returns false. Does not touch create_if_missing or anything else. */
bool cli_open_options(const cli_args *a, shale_options *opts);

/* shale_open with error reporting: on failure prints "shale CMD: <library message>", sets *out
 * to NULL and returns CLI_ERROR; else CLI_OK. */
int cli_open(const char *cmd, const char *dir, const shale_options *opts, shale_db **out);

/* Opens the database in a->pos[0] with the open-related flags of `a` (cli_open_options), creating
 * it when `create`. Prints any error; returns CLI_OK with *out set, or CLI_ERROR with *out NULL. */
int cli_open_db(const cli_args *a, bool create, shale_db **out);

/* shale_close with error reporting: returns `rc` when the close succeeds, else prints the error
 * and returns CLI_ERROR. A NULL db returns rc. */
int cli_close(const char *cmd, shale_db *db, int rc);

/* Loads JSON Lines from `in` into the database (cmd_export.c; `shale import` and `shale doc
 * insert` without a JSON argument). With `coll`, every non-blank line is one document of that
 * collection; with coll NULL, every line is {"collection":NAME,"document":{...}} (the format of
 * `shale export DIR`). Lines are read one at a time, at most `max_line` bytes each, and inserted
 * in batches of up to 1000 documents (fewer when their text passes a byte budget derived from the
 * database's write buffer), each batch one shale_doc_insert_many: all or nothing. With `print`,
 * each stored document is printed on stdout as one line. A bad line stops the load with
 * "shale CMD: line N: ..." on stderr, which also says what was committed before it; returns
 * CLI_ERROR then, else CLI_OK. *docs and *lines (may be NULL) get the documents inserted and the
 * lines read. */
#define CLI_DEFAULT_MAX_VALUE_BYTES (4u << 20) /* shale_options.max_value_bytes's default */
int cli_load_jsonl(const char *cmd, shale_db *db, const char *coll, FILE *in, size_t max_line,
                   bool print, uint64_t *docs, uint64_t *lines);

/* Writes bytes to f with every byte that is not printable ASCII (0x20..0x7e), and every
 * backslash, as \xNN (two lower-case hex digits), so any key prints on one line unambiguously. */
void cli_print_escaped(FILE *f, const void *data, size_t len);

#endif
