/*
 * cmd_kv: the key-value subcommands put, get, del and scan. Each opens the database, does one
 * thing and closes it, so every run is a separate "session" of the engine (recovery included).
 * Only put creates a missing database; the others fail on a directory that does not hold one.
 * (stats and compact are in cmd_admin.c, check in cmd_check.c.)
 */
#include <inttypes.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

/* --ttl upper bound: about 3,170 years, far beyond any use, small enough that now + ttl in
 * milliseconds cannot overflow a uint64_t. */
#define TTL_MAX_SECONDS 100000000000ull

static shale_slice arg_slice(const char *s)
{
    return (shale_slice){s, strlen(s)};
}

/* An empty key is refused before the database is opened, so a bad put does not create one. */
static bool key_ok(const cli_args *a, const char *key)
{
    if (key[0] == '\0') {
        cli_errorf(a->spec->name, "the key must not be empty");
        return false;
    }
    return true;
}

static const cli_flag_spec put_flags[] = {
    CLI_FLAG_DURABILITY,
    {"ttl", "SECONDS", "expire the key SECONDS (a positive integer) from now"},
    CLI_FLAG_MAX_KEY_BYTES,
    CLI_FLAG_MAX_VALUE_BYTES,
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_spec put_spec = {
    .name = "put",
    .args = "DIR KEY VALUE",
    .summary = "Writes KEY = VALUE into the database in DIR, creating the database if missing.",
    .details = "KEY and VALUE are taken byte for byte from the command line.\n",
    .min_args = 3,
    .max_args = 3,
    .flags = put_flags,
};

int cmd_put(int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_error err = {0};
    uint64_t ttl = 0;
    shale_code code;
    int rc;

    if (!cli_parse(&put_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (cli_has(&a, "ttl") &&
        !cli_parse_u64("put", "ttl", cli_flag(&a, "ttl"), 1, TTL_MAX_SECONDS, &ttl)) {
        return CLI_ERROR;
    }
    if (!key_ok(&a, a.pos[1]) || cli_open_db(&a, true, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    if (ttl > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
        code = shale_put_ttl(db, NULL, arg_slice(a.pos[1]), arg_slice(a.pos[2]),
                             now_ms + ttl * 1000u, &err);
    } else {
        code = shale_put(db, NULL, arg_slice(a.pos[1]), arg_slice(a.pos[2]), &err);
    }
    rc = code == SHALE_OK ? CLI_OK : cli_fail("put", &err);
    return cli_close("put", db, rc);
}

static const cli_flag_spec get_flags[] = {
    CLI_FLAG_MAX_KEY_BYTES,
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_spec get_spec = {
    .name = "get",
    .args = "DIR KEY",
    .summary = "Prints the value of KEY (as stored, then a newline); exits 1 if there is none.",
    .details = NULL,
    .min_args = 2,
    .max_args = 2,
    .flags = get_flags,
};

int cmd_get(int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_error err = {0};
    shale_buf value = {0};
    int rc;

    if (!cli_parse(&get_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (!key_ok(&a, a.pos[1]) || cli_open_db(&a, false, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    switch (shale_get(db, NULL, arg_slice(a.pos[1]), &value, &err)) {
    case SHALE_OK:
        fwrite(value.data, 1, value.len, stdout);
        putchar('\n');
        rc = CLI_OK;
        break;
    case SHALE_NOT_FOUND:
        rc = CLI_NOT_FOUND;
        cli_errorf("get", "not found");
        break;
    default:
        rc = cli_fail("get", &err);
        break;
    }
    shale_buf_free(&value);
    return cli_close("get", db, rc);
}

static const cli_flag_spec del_flags[] = {
    CLI_FLAG_DURABILITY,
    CLI_FLAG_MAX_KEY_BYTES,
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_spec del_spec = {
    .name = "del",
    .args = "DIR KEY",
    .summary = "Deletes KEY from the database in DIR (deleting a missing key succeeds).",
    .details = NULL,
    .min_args = 2,
    .max_args = 2,
    .flags = del_flags,
};

int cmd_del(int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_error err = {0};
    int rc;

    if (!cli_parse(&del_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    /* Unlike put, del does not create a database: a mistyped DIR should fail, not appear. */
    if (!key_ok(&a, a.pos[1]) || cli_open_db(&a, false, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    rc = shale_delete(db, NULL, arg_slice(a.pos[1]), &err) == SHALE_OK ? CLI_OK
                                                                       : cli_fail("del", &err);
    return cli_close("del", db, rc);
}

static const cli_flag_spec scan_flags[] = {
    {"prefix", "P", "only keys that start with P"},
    {"start", "K", "only keys >= K"},
    {"end", "K", "only keys < K"},
    {"limit", "N", "print at most N keys"},
    {"reverse", NULL, "print in descending key order"},
    {"keys-only", NULL, "print keys without values"},
    CLI_FLAG_MAX_MEMORY,
    {NULL, NULL, NULL},
};

static const cli_spec scan_spec = {
    .name = "scan",
    .args = "DIR",
    .summary = "Prints the live keys in order, one \"KEY<TAB>VALUE\" line each.",
    .details = "Bytes that are not printable ASCII, and backslashes, print as \\xNN.\n",
    .min_args = 1,
    .max_args = 1,
    .flags = scan_flags,
};

static shale_slice flag_slice(const cli_args *a, const char *name)
{
    const char *v = cli_flag(a, name);
    return v ? arg_slice(v) : (shale_slice){NULL, 0};
}

int cmd_scan(int argc, char **argv)
{
    cli_args a;
    shale_db *db;
    shale_iter *it = NULL;
    shale_error err = {0};
    uint64_t limit = UINT64_MAX;
    int rc;

    if (!cli_parse(&scan_spec, argc, argv, &a, &rc)) {
        return rc;
    }
    if (cli_has(&a, "limit") &&
        !cli_parse_u64("scan", "limit", cli_flag(&a, "limit"), 0, UINT64_MAX, &limit)) {
        return CLI_ERROR;
    }
    bool reverse = cli_has(&a, "reverse");
    bool keys_only = cli_has(&a, "keys-only");
    shale_read_opts ropts = {
        .lower_bound = flag_slice(&a, "start"),
        .upper_bound = flag_slice(&a, "end"),
        .prefix = flag_slice(&a, "prefix"),
    };
    if (cli_open_db(&a, false, &db) != CLI_OK) {
        return CLI_ERROR;
    }
    if (shale_iter_new(db, &ropts, &it, &err) != SHALE_OK) {
        return cli_close("scan", db, cli_fail("scan", &err));
    }
    if (reverse) {
        shale_iter_seek_last(it);
    } else {
        shale_iter_seek_first(it);
    }
    for (uint64_t n = 0; n < limit && shale_iter_valid(it); n++) {
        shale_slice k = shale_iter_key(it);
        cli_print_escaped(stdout, k.data, k.len);
        if (!keys_only) {
            shale_slice v = shale_iter_value(it);
            putchar('\t');
            cli_print_escaped(stdout, v.data, v.len);
        }
        putchar('\n');
        if (reverse) {
            shale_iter_prev(it);
        } else {
            shale_iter_next(it);
        }
    }
    rc = shale_iter_status(it, &err) == SHALE_OK ? CLI_OK : cli_fail("scan", &err);
    shale_iter_free(it);
    return cli_close("scan", db, rc);
}
