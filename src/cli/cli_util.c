/* cli_util: flag parsing, usage text, error reporting and escaping shared by the subcommands. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static size_t flag_count(const cli_spec *spec)
{
    size_t n = 0;
    while (spec->flags != NULL && spec->flags[n].name != NULL) {
        n++;
    }
    return n;
}

/* The index of the flag called name[0..len) in spec, or -1. */
static int flag_index(const cli_spec *spec, const char *name, size_t len)
{
    size_t n = flag_count(spec);
    for (size_t i = 0; i < n; i++) {
        if (strlen(spec->flags[i].name) == len && memcmp(spec->flags[i].name, name, len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

static bool is_flag(const char *arg)
{
    return arg[0] == '-' && arg[1] != '\0';
}

void cli_usage(const cli_spec *spec, FILE *f)
{
    size_t n = flag_count(spec);
    int width = (int)strlen("-h, --help");

    fprintf(f, "usage: shale %s %s [FLAGS]\n\n%s\n", spec->name, spec->args, spec->summary);
    if (spec->details != NULL) {
        fprintf(f, "\n%s", spec->details);
    }
    for (size_t i = 0; i < n; i++) {
        const cli_flag_spec *fl = &spec->flags[i];
        int w = 2 + (int)strlen(fl->name) + (fl->arg ? 1 + (int)strlen(fl->arg) : 0);
        width = w > width ? w : width;
    }
    fprintf(f, "\nflags:\n");
    for (size_t i = 0; i < n; i++) {
        const cli_flag_spec *fl = &spec->flags[i];
        char left[128];
        snprintf(left, sizeof left, "--%s%s%s", fl->name, fl->arg ? " " : "",
                 fl->arg ? fl->arg : "");
        fprintf(f, "  %-*s  %s\n", width, left, fl->help);
    }
    fprintf(f, "  %-*s  %s\n", width, "-h, --help", "print this help and exit");
    fprintf(f, "\nFlags may come before or after the arguments, as --flag VALUE or --flag=VALUE;\n"
               "'--' ends the flags (for a key that starts with '-').\n");
}

/* Prints "shale NAME: <message> (usage: ...)" on stderr, sets *exit_code and returns false. */
static bool usage_error(const cli_spec *spec, int *exit_code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool usage_error(const cli_spec *spec, int *exit_code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shale %s: ", spec->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (usage: shale %s %s [FLAGS]; see shale %s --help)\n", spec->name, spec->args,
            spec->name);
    *exit_code = CLI_ERROR;
    return false;
}

/* Parses the flag at argv[*i] (which starts with '-'), taking its value from argv[*i + 1] when it
 * is not given as --flag=value (then *i moves past the value). */
static bool parse_flag(const cli_spec *spec, int argc, char **argv, int *i, cli_args *out,
                       int *exit_code)
{
    const char *arg = argv[*i];

    if (arg[1] != '-') {
        return usage_error(spec, exit_code,
                           "unknown flag '%s' (put '--' before an argument that starts with '-')",
                           arg);
    }
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    int idx = flag_index(spec, name, eq ? (size_t)(eq - name) : strlen(name));
    if (idx < 0) {
        return usage_error(spec, exit_code, "unknown flag '%s'", arg);
    }
    const cli_flag_spec *fl = &spec->flags[idx];
    if (fl->arg == NULL) {
        if (eq != NULL) {
            return usage_error(spec, exit_code, "flag '--%s' takes no value", fl->name);
        }
        out->value[idx] = "";
    } else if (eq != NULL) {
        out->value[idx] = eq + 1;
    } else if (*i + 1 < argc) {
        out->value[idx] = argv[++*i];
    } else {
        return usage_error(spec, exit_code, "flag '--%s' needs a value", fl->name);
    }
    return true;
}

bool cli_parse(const cli_spec *spec, int argc, char **argv, cli_args *out, int *exit_code)
{
    bool flags_done = false;

    memset(out, 0, sizeof *out);
    out->spec = spec;
    *exit_code = CLI_OK;
    if (flag_count(spec) >= CLI_MAX_FLAGS || spec->max_args > CLI_MAX_POSITIONAL) {
        return usage_error(spec, exit_code, "internal error: spec too large");
    }
    /* --help wins wherever it is (before "--"), even next to other mistakes. */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (is_help(argv[i])) {
            cli_usage(spec, stdout);
            return false;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!flags_done && strcmp(arg, "--") == 0) {
            flags_done = true;
        } else if (!flags_done && is_flag(arg)) {
            if (!parse_flag(spec, argc, argv, &i, out, exit_code)) {
                return false;
            }
        } else if (out->npos == spec->max_args) {
            return usage_error(spec, exit_code, "unexpected argument '%s'", arg);
        } else {
            out->pos[out->npos++] = arg;
        }
    }
    if (out->npos < spec->min_args) {
        return usage_error(spec, exit_code, "missing arguments: expected %s", spec->args);
    }
    return true;
}

const char *cli_flag(const cli_args *a, const char *name)
{
    int idx = flag_index(a->spec, name, strlen(name));
    return idx < 0 ? NULL : a->value[idx];
}

bool cli_has(const cli_args *a, const char *name)
{
    return cli_flag(a, name) != NULL;
}

int cli_errorf(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shale %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_ERROR;
}

int cli_fail(const char *cmd, const shale_error *err)
{
    const char *msg = err->msg[0] != '\0' ? err->msg : shale_strerror(err->code);
    return cli_errorf(cmd, "%s", msg);
}

bool cli_parse_u64(const char *cmd, const char *flag, const char *text, uint64_t min, uint64_t max,
                   uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (text[0] < '0' || text[0] > '9') {
        goto bad;
    }
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        goto bad;
    }
    *out = v;
    return true;
bad:
    cli_errorf(cmd, "--%s: '%s' is not an integer in %" PRIu64 "..%" PRIu64, flag, text, min, max);
    return false;
}

bool cli_open_options(const cli_args *a, shale_options *opts)
{
    const char *cmd = a->spec->name;
    const char *text;
    uint64_t v;

    if ((text = cli_flag(a, "durability")) != NULL) {
        if (shale_durability_parse(text, &opts->durability, NULL) != SHALE_OK) {
            cli_errorf(cmd, "--durability: '%s' is not one of none, memory, os, full", text);
            return false;
        }
    }
    /* The ranges are the library's (shale.h); checking them here names the flag, not the field. */
    if ((text = cli_flag(a, "max-key-bytes")) != NULL) {
        if (!cli_parse_u64(cmd, "max-key-bytes", text, 1, 65536, &v)) {
            return false;
        }
        opts->max_key_bytes = (uint32_t)v;
    }
    if ((text = cli_flag(a, "max-value-bytes")) != NULL) {
        if (!cli_parse_u64(cmd, "max-value-bytes", text, 1, 256u << 20, &v)) {
            return false;
        }
        opts->max_value_bytes = (uint32_t)v;
    }
    /* 0 would mean "the default" to the library; on a command line it is more likely a mistake,
     * so the flag takes only the real range and leaving it out gives the default. */
    if ((text = cli_flag(a, "max-memory")) != NULL) {
        if (!cli_parse_u64(cmd, "max-memory", text, 4, 1048576, &v)) {
            return false;
        }
        opts->max_memory_mb = (uint32_t)v;
    }
    return true;
}

int cli_open_db(const cli_args *a, bool create, shale_db **out)
{
    shale_options opts = {.create_if_missing = create};

    *out = NULL;
    if (!cli_open_options(a, &opts)) {
        return CLI_ERROR;
    }
    return cli_open(a->spec->name, a->pos[0], &opts, out);
}

int cli_open(const char *cmd, const char *dir, const shale_options *opts, shale_db **out)
{
    shale_error err = {0};

    *out = NULL;
    if (shale_open(dir, opts, out, &err) != SHALE_OK) {
        *out = NULL;
        return cli_fail(cmd, &err);
    }
    return CLI_OK;
}

int cli_close(const char *cmd, shale_db *db, int rc)
{
    shale_error err = {0};

    if (db != NULL && shale_close(db, &err) != SHALE_OK) {
        return cli_fail(cmd, &err);
    }
    return rc;
}

void cli_print_escaped(FILE *f, const void *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = data;
    size_t run = 0; /* start of the current run of bytes that print as themselves */

    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        if (c >= 0x20 && c <= 0x7e && c != '\\') {
            continue;
        }
        fwrite(p + run, 1, i - run, f);
        char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
        fwrite(esc, 1, sizeof esc, f);
        run = i + 1;
    }
    fwrite(p + run, 1, len - run, f);
}
