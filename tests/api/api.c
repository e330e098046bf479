/* api: the shared helpers of the public-API suite (see api.h). */
#include "api.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "env/env.h"

void api_check_code(shale_code got, shale_code want, const shale_error *err, const char *what,
                    const char *file, int line)
{
    const char *msg = memchr(err->msg, 0, sizeof err->msg) ? err->msg : "<unterminated>";

    cr_assert_eq(got, want, "%s:%d: %s returned %d (%s), want %d (%s); msg: %s", file, line, what,
                 got, shale_strerror(got), want, shale_strerror(want), msg);
    if (want == SHALE_OK) {
        return;
    }
    cr_assert_eq(err->code, want, "%s:%d: %s: err.code %d, want %d", file, line, what, err->code,
                 want);
    cr_assert_not_null(memchr(err->msg, 0, sizeof err->msg),
                       "%s:%d: %s: err.msg not NUL-terminated", file, line, what);
    if (want != SHALE_NOT_FOUND) {
        cr_assert(err->msg[0] != '\0', "%s:%d: %s: empty err.msg", file, line, what);
    }
    if (want == SHALE_INVALID || want == SHALE_FULL) {
        cr_assert_eq(err->sys_errno, 0, "%s:%d: %s: sys_errno %d for an argument error (%s)", file,
                     line, what, err->sys_errno, err->msg);
    }
}

shale_db *api_open(const char *path, const shale_options *opts)
{
    shale_db *db = NULL;
    shale_error err = {0};
    shale_code rc = shale_open(path, opts, &db, &err);
    cr_assert_eq(rc, SHALE_OK, "open %s: %s: %s", path, shale_strerror(rc), err.msg);
    cr_assert_not_null(db);
    return db;
}

void api_begin(api_fx *fx, const char *tag, const shale_options *opts)
{
    shale_options o = opts ? *opts : (shale_options){0};

    o.create_if_missing = true;
    fx->root = tu_tmpdir(tag);
    fx->path = tu_path(fx->root, "db");
    fx->db = api_open(fx->path, &o);
}

void api_close(api_fx *fx)
{
    if (fx->db != NULL) {
        shale_error err = {0};
        shale_code rc = shale_close(fx->db, &err);
        fx->db = NULL;
        cr_assert_eq(rc, SHALE_OK, "close: %s", err.msg);
    }
}

void api_reopen(api_fx *fx, const shale_options *opts)
{
    api_close(fx);
    fx->db = api_open(fx->path, opts);
}

void api_end(api_fx *fx)
{
    api_close(fx);
    if (fx->root != NULL) {
        tu_rm_rf(fx->root);
    }
    free(fx->path);
    free(fx->root);
    fx->path = NULL;
    fx->root = NULL;
    tu_assert_no_leaks();
}

shale_slice api_str(const char *s)
{
    return (shale_slice){s, strlen(s)};
}

void api_putn(shale_db *db, shale_slice key, shale_slice value)
{
    shale_error err = {0};
    shale_code rc = shale_put(db, NULL, key, value, &err);
    cr_assert_eq(rc, SHALE_OK, "put (%zu-byte key): %s", key.len, err.msg);
}

void api_put(shale_db *db, const char *key, const char *value)
{
    api_putn(db, api_str(key), api_str(value));
}

void api_del(shale_db *db, const char *key)
{
    shale_error err = {0};
    shale_code rc = shale_delete(db, NULL, api_str(key), &err);
    cr_assert_eq(rc, SHALE_OK, "delete %s: %s", key, err.msg);
}

void api_expectn(shale_db *db, shale_slice key, const shale_slice *value)
{
    shale_buf buf = {0};
    shale_error err = {0};
    bool exists = !value;
    shale_entry_info info;
    int klen = (int)key.len;
    const char *kp = key.data;

    shale_code rc = shale_get(db, NULL, key, &buf, &err);
    if (value == NULL) {
        cr_assert_eq(rc, SHALE_NOT_FOUND, "get %.*s: want NOT_FOUND, got %s (%s)", klen, kp,
                     shale_strerror(rc), err.msg);
        cr_assert_eq(buf.len, 0, "get %.*s: NOT_FOUND left len %zu", klen, kp, buf.len);
    } else {
        cr_assert_eq(rc, SHALE_OK, "get %.*s: %s (%s)", klen, kp, shale_strerror(rc), err.msg);
        cr_assert_eq(buf.len, value->len, "get %.*s: len %zu, want %zu", klen, kp, buf.len,
                     value->len);
        cr_assert(value->len == 0 || memcmp(buf.data, value->data, value->len) == 0,
                  "get %.*s: wrong bytes", klen, kp);
        cr_assert_geq(buf.cap, buf.len);
    }
    rc = shale_exists(db, NULL, key, &exists, &err);
    cr_assert_eq(rc, SHALE_OK, "exists %.*s: %s", klen, kp, err.msg);
    cr_assert_eq(exists, value != NULL, "exists %.*s: %d", klen, kp, exists);
    rc = shale_get_info(db, NULL, key, NULL, &info, &err);
    cr_assert_eq(rc, value ? SHALE_OK : SHALE_NOT_FOUND, "get_info %.*s: %s (%s)", klen, kp,
                 shale_strerror(rc), err.msg);
    shale_buf_free(&buf);
}

void api_expect(shale_db *db, const char *key, const char *value)
{
    shale_slice v = value ? api_str(value) : (shale_slice){0};
    api_expectn(db, api_str(key), value ? &v : NULL);
}

shale_stats api_stats(shale_db *db)
{
    shale_stats st;
    shale_error err = {0};
    memset(&st, 0x5a, sizeof st);
    shale_code rc = shale_stats_get(db, &st, &err);
    cr_assert_eq(rc, SHALE_OK, "stats: %s", err.msg);
    return st;
}

uint64_t api_seq(shale_db *db, shale_slice key)
{
    shale_entry_info info = {0};
    shale_error err = {0};
    shale_code rc = shale_get_info(db, NULL, key, NULL, &info, &err);
    cr_assert_eq(rc, SHALE_OK, "get_info: %s (%s)", shale_strerror(rc), err.msg);
    return info.seq;
}

size_t api_count_logs(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    cr_assert_not_null(d, "opendir %s", dir);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".log") == 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

void api_write_file(const char *dir, const char *name, const char *text)
{
    char *p = tu_path(dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f, "create %s", p);
    fputs(text, f);
    fclose(f);
    free(p);
}

bool api_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

_Atomic uint64_t api_now = 1700000000000ull;

static uint64_t fake_now_ms(const shale_env *env)
{
    (void)env;
    return atomic_load(&api_now);
}

const shale_env *api_fake_env(void)
{
    static shale_env fake;
    fake = *env_posix();
    fake.name = "fake-clock";
    fake.now_ms = fake_now_ms;
    return &fake;
}

shale_slice api_value(char *buf, uint64_t i)
{
    int n = snprintf(buf, 32, "v%llu-", (unsigned long long)i);
    size_t want = 1 + (size_t)((i * 2654435761u) % 200);
    size_t len = (size_t)n;

    while (len < want) {
        size_t step = (size_t)n < want - len ? (size_t)n : want - len;
        memcpy(buf + len, buf, step);
        len += step;
    }
    return (shale_slice){buf, len};
}
