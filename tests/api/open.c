/* shale_open / shale_close: creating, reopening, refusing bad paths, locks and options. */
#include <stdlib.h>

#include "api.h"

TestSuite(open);

Test(open, missing_dir_needs_create_if_missing)
{
    char *root = tu_tmpdir("api-open");
    char *path = tu_path(root, "db");
    shale_options none = {0};
    shale_db *db = NULL;

    TU_CODE(SHALE_INVALID, shale_open(path, NULL, &db, &ERR));
    TU_CODE(SHALE_INVALID, shale_open(path, &none, &db, &ERR));
    cr_assert_not(api_path_exists(path), "a failed open created %s", path);

    shale_options create = {.create_if_missing = true};
    db = tu_open(path, &create);
    char *ident = tu_path(path, "SHALE");
    cr_assert_eq(tu_file_size(ident), 28, "SHALE identity file is 28 bytes");
    TU_OK(shale_close(db, &ERR));
    free(ident);
    tu_rm_rf(root);
    free(path);
    free(root);
}

Test(open, create_then_reopen_keeps_data)
{
    tu_fx fx = {0};
    tu_fx_begin(&fx, "api-open", NULL);
    tu_put(fx.db, "alpha", "1");
    tu_put(fx.db, "beta", "2");
    tu_fx_reopen(&fx, NULL);
    tu_expect(fx.db, "alpha", "1");
    tu_expect(fx.db, "beta", "2");
    tu_expect(fx.db, "gamma", NULL);
    /* create_if_missing on an existing database just opens it. */
    shale_options create = {.create_if_missing = true};
    tu_fx_reopen(&fx, &create);
    tu_expect(fx.db, "alpha", "1");
    tu_fx_end(&fx);
}

Test(open, error_if_exists)
{
    char *root = tu_tmpdir("api-open");
    char *path = tu_path(root, "db");
    shale_options o = {.create_if_missing = true, .error_if_exists = true};
    shale_db *db = tu_open(root, &o); /* an empty directory holds no database yet: fine */
    TU_OK(shale_close(db, &ERR));
    db = tu_open(path, &o); /* a missing one neither */

    tu_put(db, "k", "v");
    TU_OK(shale_close(db, &ERR));
    TU_CODE(SHALE_INVALID, shale_open(path, &o, &db, &ERR));
    o.create_if_missing = false;
    TU_CODE(SHALE_INVALID, shale_open(path, &o, &db, &ERR));
    /* The refused open left the database as it was. */
    db = tu_open(path, NULL);
    tu_expect(db, "k", "v");
    TU_OK(shale_close(db, &ERR));
    tu_rm_rf(root);
    free(path);
    free(root);
}

Test(open, bad_paths_are_invalid)
{
    char *root = tu_tmpdir("api-open");
    char *file = tu_path(root, "plain");
    shale_options create = {.create_if_missing = true};
    shale_db *db = NULL;

    api_write_file(root, "plain", "not a directory\n");
    TU_CODE(SHALE_INVALID, shale_open(NULL, &create, &db, &ERR));
    TU_CODE(SHALE_INVALID, shale_open("", &create, &db, &ERR));
    TU_CODE(SHALE_INVALID, shale_open(file, NULL, &db, &ERR));
    TU_CODE(SHALE_INVALID, shale_open(file, &create, &db, &ERR));
    cr_assert_eq(tu_file_size(file), 16, "the regular file was modified");
    /* NULL out. */
    char *path = tu_path(root, "db");
    TU_CODE(SHALE_INVALID, shale_open(path, &create, NULL, &ERR));
    tu_rm_rf(root);
    free(path);
    free(file);
    free(root);
}

Test(open, non_database_directory_is_invalid)
{
    char *root = tu_tmpdir("api-open");
    shale_options create = {.create_if_missing = true};
    shale_db *db = NULL;
    shale_error err = {0};

    api_write_file(root, "notes.txt", "hello\n");
    cr_assert_eq(shale_open(root, NULL, &db, &err), SHALE_INVALID);
    cr_assert_not_null(strstr(err.msg, "not a Shale database"), "msg: %s", err.msg);
    cr_assert_eq(shale_open(root, &create, &db, &err), SHALE_INVALID, "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "not a Shale database"), "msg: %s", err.msg);
    char *notes = tu_path(root, "notes.txt");
    cr_assert_eq(tu_file_size(notes), 6, "the foreign file was touched");
    char *ident = tu_path(root, "SHALE");
    cr_assert_not(api_path_exists(ident), "a SHALE file was written into a foreign directory");
    tu_rm_rf(root);
    free(ident);
    free(notes);
    free(root);
}

Test(open, empty_directory_is_initialised_only_with_create)
{
    char *root = tu_tmpdir("api-open");
    shale_options create = {.create_if_missing = true};
    shale_db *db = NULL;

    TU_CODE(SHALE_INVALID, shale_open(root, NULL, &db, &ERR));
    db = tu_open(root, &create);
    tu_put(db, "k", "v");
    TU_OK(shale_close(db, &ERR));
    db = tu_open(root, NULL);
    tu_expect(db, "k", "v");
    TU_OK(shale_close(db, &ERR));
    tu_rm_rf(root);
    free(root);
}

Test(open, directory_with_only_lock_is_initialised_with_create)
{
    char *root = tu_tmpdir("api-open");
    shale_options create = {.create_if_missing = true};

    api_write_file(root, "LOCK", "");
    shale_db *db = tu_open(root, &create);
    tu_put(db, "k", "v");
    TU_OK(shale_close(db, &ERR));
    tu_rm_rf(root);
    free(root);
}

Test(open, damaged_identity_file_is_corruption)
{
    static const uint64_t offsets[] = {0, 9, 16, 27};

    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        tu_fx fx = {0};
        tu_fx_begin(&fx, "api-open", NULL);
        tu_put(fx.db, "k", "v");
        tu_fx_close(&fx);
        char *ident = tu_path(fx.path, "SHALE");
        cr_assert_eq(tu_flip_bit(ident, offsets[i], 3), 0);
        shale_db *db = NULL;
        shale_error err = {0};
        shale_code rc = shale_open(fx.path, NULL, &db, &err);
        cr_assert_eq(rc, SHALE_CORRUPTION, "bit flip @%llu: got %s (%s)",
                     (unsigned long long)offsets[i], shale_strerror(rc), err.msg);
        cr_assert_eq(err.code, SHALE_CORRUPTION);
        free(ident);
        tu_fx_end(&fx);
    }
}

Test(open, second_open_is_busy)
{
    tu_fx fx = {0};
    shale_db *db2 = NULL;
    shale_error err = {0};
    shale_options create = {.create_if_missing = true};

    tu_fx_begin(&fx, "api-open", NULL);
    cr_assert_eq(shale_open(fx.path, NULL, &db2, &err), SHALE_BUSY, "%s", err.msg);
    cr_assert_eq(err.code, SHALE_BUSY);
    cr_assert_not_null(strstr(err.msg, "in use"), "msg: %s", err.msg);
    cr_assert_eq(shale_open(fx.path, &create, &db2, &err), SHALE_BUSY, "%s", err.msg);
    /* The refused opens did not release the first handle's lock or disturb it. */
    tu_put(fx.db, "k", "v");
    cr_assert_eq(shale_open(fx.path, NULL, &db2, &err), SHALE_BUSY, "%s", err.msg);
    tu_expect(fx.db, "k", "v");
    /* Once closed, the directory can be opened again. */
    tu_fx_close(&fx);
    db2 = tu_open(fx.path, NULL);
    tu_expect(db2, "k", "v");
    TU_OK(shale_close(db2, &ERR));
    tu_fx_end(&fx);
}

typedef struct opt_case {
    const char *name; /* must appear in err.msg */
    shale_options o;
} opt_case;

#define MiB (1024u * 1024u)

Test(open, out_of_range_options_name_the_field)
{
    static const opt_case bad[] = {
        {"max_key_bytes", {.max_key_bytes = 70000}},
        {"max_key_bytes", {.max_key_bytes = 65537}},
        {"max_value_bytes", {.max_value_bytes = 1024u * MiB}},
        {"max_value_bytes", {.max_value_bytes = 256u * MiB + 1}},
        {"wal_segment_bytes", {.wal_segment_bytes = 1000}},
        {"wal_segment_bytes", {.wal_segment_bytes = 64 * 1024 - 1}},
        {"wal_segment_bytes", {.wal_segment_bytes = 4ull * 1024 * MiB + 1}},
        {"wal_flush_interval_ms", {.wal_flush_interval_ms = 20000}},
        {"wal_flush_interval_ms", {.wal_flush_interval_ms = 10001}},
        {"ttl_sweep_interval_ms", {.ttl_sweep_interval_ms = 1}},
        {"ttl_sweep_interval_ms", {.ttl_sweep_interval_ms = 9}},
        {"ttl_sweep_interval_ms", {.ttl_sweep_interval_ms = 3600001}},
        {"durability", {.durability = (shale_durability)99}},
        {"durability", {.durability = (shale_durability)5}},
    };
    char *root = tu_tmpdir("api-open");
    char *path = tu_path(root, "db");

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shale_options o = bad[i].o;
        shale_db *db = NULL;
        shale_error err = {0};
        o.create_if_missing = true;
        shale_code rc = shale_open(path, &o, &db, &err);
        cr_assert_eq(rc, SHALE_INVALID, "case %zu (%s): got %s", i, bad[i].name,
                     shale_strerror(rc));
        cr_assert_eq(err.code, SHALE_INVALID);
        cr_assert_not_null(strstr(err.msg, bad[i].name), "case %zu: msg \"%s\" lacks \"%s\"", i,
                           err.msg, bad[i].name);
        /* A database already there is refused the same way. */
        if (i == 0) {
            shale_options ok = {.create_if_missing = true};
            TU_OK(shale_close(tu_open(path, &ok), &ERR));
        }
    }
    tu_rm_rf(root);
    free(path);
    free(root);
}

Test(open, option_range_edges_are_accepted)
{
    static const shale_options good[] = {
        {.max_key_bytes = 1},
        {.max_key_bytes = 65536},
        {.max_value_bytes = 1},
        {.max_value_bytes = 256u * MiB},
        {.wal_segment_bytes = 64 * 1024},
        {.wal_segment_bytes = 4ull * 1024 * MiB},
        {.wal_flush_interval_ms = 1},
        {.wal_flush_interval_ms = 10000},
        {.ttl_sweep_interval_ms = 10},
        {.ttl_sweep_interval_ms = 3600000},
        {.durability = SHALE_DURABILITY_DEFAULT},
        {.durability = SHALE_DURABILITY_NONE},
        {.durability = SHALE_DURABILITY_MEMORY},
        {.durability = SHALE_DURABILITY_OS},
        {.durability = SHALE_DURABILITY_FULL},
    };
    char *root = tu_tmpdir("api-open");
    char *path = tu_path(root, "db");

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        shale_options o = good[i];
        shale_db *db = NULL;
        shale_error err = {0};
        o.create_if_missing = true;
        shale_code rc = shale_open(path, &o, &db, &err);
        cr_assert_eq(rc, SHALE_OK, "case %zu: %s", i, err.msg);
        tu_put(db, "k", "v");
        tu_expect(db, "k", "v");
        TU_OK(shale_close(db, &ERR));
    }
    tu_rm_rf(root);
    free(path);
    free(root);
}

Test(open, close_null_is_fine)
{
    cr_assert_eq(shale_close(NULL, NULL), SHALE_OK);
    TU_OK(shale_close(NULL, &ERR));
}

/* Every call accepts err == NULL, on success and on failure. */
Test(open, null_err_everywhere)
{
    char *root = tu_tmpdir("api-open");
    char *path = tu_path(root, "db");
    shale_options bad = {.create_if_missing = true, .max_key_bytes = 70000};
    shale_options create = {.create_if_missing = true};
    shale_db *db = NULL;
    shale_buf buf = {0};
    bool yes = false;
    shale_stats st;
    shale_durability level;
    shale_iter *it = NULL;
    shale_slice keys[2] = {TU_SL("a"), TU_SL("b")};
    shale_buf vals[2] = {{0}, {0}};
    shale_code codes[2];

    cr_assert_eq(shale_open(NULL, &create, &db, NULL), SHALE_INVALID);
    cr_assert_eq(shale_open(path, NULL, &db, NULL), SHALE_INVALID);
    cr_assert_eq(shale_open(path, &bad, &db, NULL), SHALE_INVALID);
    cr_assert_eq(shale_open(path, &create, &db, NULL), SHALE_OK);
    shale_db *db2 = NULL;
    cr_assert_eq(shale_open(path, &create, &db2, NULL), SHALE_BUSY);

    cr_assert_eq(shale_put(db, NULL, TU_SL("a"), TU_SL("1"), NULL), SHALE_OK);
    cr_assert_eq(shale_put(db, NULL, TU_SL(""), TU_SL("1"), NULL), SHALE_INVALID);
    cr_assert_eq(shale_put(NULL, NULL, TU_SL("a"), TU_SL("1"), NULL), SHALE_INVALID);
    cr_assert_eq(shale_put_ttl(db, NULL, TU_SL(""), TU_SL("1"), 5, NULL), SHALE_INVALID);
    cr_assert_eq(shale_delete(db, NULL, TU_SL(""), NULL), SHALE_INVALID);
    cr_assert_eq(shale_get(db, NULL, TU_SL("a"), &buf, NULL), SHALE_OK);
    cr_assert_eq(shale_get(db, NULL, TU_SL("zz"), &buf, NULL), SHALE_NOT_FOUND);
    cr_assert_eq(shale_get(db, NULL, TU_SL("a"), NULL, NULL), SHALE_INVALID);
    cr_assert_eq(shale_get_info(db, NULL, TU_SL("zz"), NULL, &(shale_entry_info){0}, NULL),
                 SHALE_NOT_FOUND);
    cr_assert_eq(shale_exists(db, NULL, TU_SL("a"), &yes, NULL), SHALE_OK);
    cr_assert(yes);
    cr_assert_eq(shale_exists(db, NULL, TU_SL("a"), NULL, NULL), SHALE_INVALID);
    cr_assert_eq(shale_multi_get(db, NULL, 2, keys, vals, codes, NULL), SHALE_OK);
    cr_assert_eq(shale_multi_get(db, NULL, 2, NULL, vals, codes, NULL), SHALE_INVALID);
    cr_assert_eq(shale_stats_get(db, &st, NULL), SHALE_OK);
    cr_assert_eq(shale_stats_get(db, NULL, NULL), SHALE_INVALID);
    cr_assert_eq(shale_durability_parse("bogus", &level, NULL), SHALE_INVALID);

    shale_batch *b = shale_batch_new();
    cr_assert_not_null(b);
    cr_assert_eq(shale_batch_put(b, TU_SL(""), TU_SL("x"), NULL), SHALE_INVALID);
    cr_assert_eq(shale_batch_delete(b, TU_SL(""), NULL), SHALE_INVALID);
    cr_assert_eq(shale_batch_put_ttl(b, TU_SL(""), TU_SL("x"), 1, NULL), SHALE_INVALID);
    cr_assert_eq(shale_batch_put(b, TU_SL("b"), TU_SL("2"), NULL), SHALE_OK);
    cr_assert_eq(shale_write(db, NULL, NULL, NULL), SHALE_INVALID);
    cr_assert_eq(shale_write(db, NULL, b, NULL), SHALE_OK);
    shale_batch_free(b);

    cr_assert_eq(shale_iter_new(NULL, NULL, &it, NULL), SHALE_INVALID);
    cr_assert_eq(shale_iter_new(db, NULL, &it, NULL), SHALE_OK);
    shale_iter_seek_first(it);
    cr_assert(shale_iter_valid(it));
    cr_assert_eq(shale_iter_status(it, NULL), SHALE_OK);
    shale_iter_free(it);

    cr_assert_eq(shale_close(db, NULL), SHALE_OK);
    shale_buf_free(&buf);
    shale_buf_free(&vals[0]);
    shale_buf_free(&vals[1]);
    tu_rm_rf(root);
    free(path);
    free(root);
}
