/*
 * fuzz_util: helpers shared by the fuzz targets of tests/fuzz (and by gen_corpus.c, which writes
 * their seed corpora). Everything is static inline: CMake builds each *_fuzz.c alone (with
 * replay_main.c or libFuzzer), so there is no second translation unit to put code in.
 *
 *   FZ_CHECK(x)      a broken invariant: prints where and traps (what libFuzzer and the replay
 *                    report as a crash).
 *   fz_env           a read-only in-memory env (src/env/env.h) serving a few named files that
 *                    borrow the fuzz input, so the readers of log segments, tables and manifests
 *                    run on the input without touching the disk: faster, deterministic, and a
 *                    read past the input is a read past a buffer of the reader's own (ASan sees
 *                    it there). Every write operation fails with SHALE_IO.
 *   fz_tmpdir        one private temporary directory per process, removed at exit (the targets
 *                    that need a real database).
 *   fz_wal_fix_crcs  rewrite the checksums of the fragments of a log or manifest so that the
 *   fz_sst_fix_crcs  framing (or every block and the footer of a table) is valid: the targets
 *                    also run the repaired copy of an input, so the fuzzer explores what lies
 *                    behind a checksum (record assembly, batches, edits, block contents: what a
 *                    writer bug or a checksum collision would hand the decoders) instead of
 *                    stopping at the first bad CRC.
 *   fz_dval_readers  the readers of dval.h run over a value and everything in it, with the
 *                    checks its contract allows (json_fuzz, dval_fuzz).
 *   fz_people        the fixed documents the database targets (http_fuzz, cursor_fuzz) start
 *                    from; gen_corpus.c loads the same ones to make real cursors.
 */
#ifndef SHALE_TESTS_FUZZ_FUZZ_UTIL_H
#define SHALE_TESTS_FUZZ_FUZZ_UTIL_H

#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shale.h"

#include "base/buf.h"
#include "base/coding.h"
#include "base/compress.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "base/slice.h"
#include "doc/dval.h"
#include "env/env.h"
#include "sst/block.h"
#include "sst/sst_format.h"
#include "wal/wal_format.h"

#define FZ_CHECK(x)                                                                                \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fz_fail(__FILE__, __LINE__, #x);                                                       \
        }                                                                                          \
    } while (0)

__attribute__((noreturn)) static inline void fz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", file, line, what);
    fflush(stderr);
    __builtin_trap();
}

/* splitmix64: per-input decisions derived from the input, so every run is deterministic. */
static inline uint64_t fz_rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* FNV-1a of the input: a seed for fz_rnd. */
static inline uint64_t fz_hash(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < size; i++) {
        h = (h ^ data[i]) * 0x100000001b3u;
    }
    return h;
}

/* ---- read-only in-memory env ---------------------------------------------------------------- */

#define FZ_ENV_FILES 4

typedef struct fz_env {
    shale_env env; /* first: the env pointer is the fz_env's */
    const char *dir;
    const char *names[FZ_ENV_FILES]; /* full paths, "dir/name" */
    const uint8_t *data[FZ_ENV_FILES];
    size_t len[FZ_ENV_FILES];
    size_t n;
} fz_env;

typedef struct fz_file {
    env_file base;
    const uint8_t *data;
    size_t len;
} fz_file;

static inline shale_code fz_ro(shale_error *err, const char *path)
{
    return err_set(err, SHALE_IO, EROFS, "%s: the fuzz env is read-only", path ? path : "?");
}

static inline shale_code fz_file_read_at(env_file *f, uint64_t off, void *buf, size_t n,
                                         size_t *out_read, shale_error *err)
{
    (void)err;
    fz_file *m = (fz_file *)f;
    size_t got = 0;
    if (off < m->len) {
        got = m->len - (size_t)off < n ? m->len - (size_t)off : n;
        memcpy(buf, m->data + off, got);
    }
    *out_read = got;
    return SHALE_OK;
}

static inline shale_code fz_file_append(env_file *f, const void *data, size_t n, shale_error *err)
{
    (void)data;
    (void)n;
    return fz_ro(err, f->path);
}

static inline shale_code fz_file_sync(env_file *f, bool data_only, shale_error *err)
{
    (void)data_only;
    return fz_ro(err, f->path);
}

static inline shale_code fz_file_truncate(env_file *f, uint64_t size, shale_error *err)
{
    (void)size;
    return fz_ro(err, f->path);
}

static inline shale_code fz_file_size(env_file *f, uint64_t *out, shale_error *err)
{
    (void)err;
    *out = ((fz_file *)f)->len;
    return SHALE_OK;
}

static inline shale_code fz_file_close(env_file *f, shale_error *err)
{
    (void)err;
    free(f->path);
    free(f);
    return SHALE_OK;
}

static const env_file_ops fz_file_ops = {
    .read_at = fz_file_read_at,
    .append = fz_file_append,
    .sync = fz_file_sync,
    .truncate = fz_file_truncate,
    .size = fz_file_size,
    .close = fz_file_close,
};

static inline int fz_env_find(const fz_env *e, const char *path)
{
    for (size_t i = 0; i < e->n; i++) {
        if (strcmp(e->names[i], path) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static inline shale_code fz_env_open(const shale_env *env, const char *path, int flags,
                                     env_file **out, shale_error *err)
{
    const fz_env *e = (const fz_env *)env;
    *out = NULL;
    if (flags & (ENV_WRITE | ENV_CREATE | ENV_TRUNC)) {
        return fz_ro(err, path);
    }
    int i = fz_env_find(e, path);
    if (i < 0) {
        return err_set(err, SHALE_NOT_FOUND, ENOENT, "%s: no such file", path);
    }
    fz_file *f = calloc(1, sizeof *f);
    char *p = strdup(path);
    if (f == NULL || p == NULL) {
        free(f);
        free(p);
        return err_nomem(err);
    }
    f->base.ops = &fz_file_ops;
    f->base.path = p;
    f->data = e->data[i];
    f->len = e->len[i];
    *out = &f->base;
    return SHALE_OK;
}

static inline shale_code fz_env_remove(const shale_env *env, const char *path, shale_error *err)
{
    (void)env;
    return fz_ro(err, path);
}

static inline shale_code fz_env_rename(const shale_env *env, const char *from, const char *to,
                                       shale_error *err)
{
    (void)env;
    (void)to;
    return fz_ro(err, from);
}

static inline shale_code fz_env_link(const shale_env *env, const char *from, const char *to,
                                     shale_error *err)
{
    (void)env;
    (void)from;
    return fz_ro(err, to);
}

static inline shale_code fz_env_mkdir(const shale_env *env, const char *path, shale_error *err)
{
    (void)env;
    return fz_ro(err, path);
}

static inline shale_code fz_env_sync_dir(const shale_env *env, const char *path, shale_error *err)
{
    (void)env;
    return fz_ro(err, path);
}

static inline shale_code fz_env_list_dir(const shale_env *env, const char *path, char ***out,
                                         size_t *out_count, shale_error *err)
{
    const fz_env *e = (const fz_env *)env;
    *out = NULL;
    *out_count = 0;
    if (strcmp(path, e->dir) != 0) {
        return err_set(err, SHALE_NOT_FOUND, ENOENT, "%s: no such directory", path);
    }
    char **names = calloc(e->n + 1, sizeof *names);
    if (names == NULL) {
        return err_nomem(err);
    }
    size_t skip = strlen(e->dir) + 1;
    for (size_t i = 0; i < e->n; i++) {
        names[i] = strdup(e->names[i] + skip);
        if (names[i] == NULL) {
            env_free_names(names, i);
            return err_nomem(err);
        }
    }
    *out = names;
    *out_count = e->n;
    return SHALE_OK;
}

static inline shale_code fz_env_stat(const shale_env *env, const char *path, bool *is_dir,
                                     uint64_t *size, shale_error *err)
{
    const fz_env *e = (const fz_env *)env;
    int i = fz_env_find(e, path);
    bool dir = i < 0 && strcmp(path, e->dir) == 0;
    if (i >= 0 || dir) {
        if (is_dir != NULL) { /* callers that only ask whether it exists pass NULL */
            *is_dir = dir;
        }
        if (size != NULL) {
            *size = dir ? 0 : e->len[i];
        }
        return SHALE_OK;
    }
    return err_set(err, SHALE_NOT_FOUND, ENOENT, "%s: no such file", path);
}

static inline shale_code fz_env_lock(const shale_env *env, const char *path, env_lock **out,
                                     shale_error *err)
{
    (void)env;
    *out = NULL;
    return fz_ro(err, path);
}

static inline shale_code fz_env_unlock(const shale_env *env, env_lock *lock, shale_error *err)
{
    (void)env;
    (void)lock;
    return fz_ro(err, NULL);
}

static inline uint64_t fz_env_now_ms(const shale_env *env)
{
    (void)env;
    return 1700000000000ull; /* fixed: deterministic TTL decisions */
}

static inline uint64_t fz_env_mono_us(const shale_env *env)
{
    (void)env;
    return 1000000ull;
}

/* An env over directory `dir` (no trailing '/') with no files yet. */
static inline void fz_env_init(fz_env *e, const char *dir)
{
    memset(e, 0, sizeof *e);
    e->env = (shale_env){
        .name = "fuzz-mem",
        .open_file = fz_env_open,
        .remove_file = fz_env_remove,
        .rename_file = fz_env_rename,
        .link_file = fz_env_link,
        .mkdir = fz_env_mkdir,
        .sync_dir = fz_env_sync_dir,
        .list_dir = fz_env_list_dir,
        .stat_path = fz_env_stat,
        .lock_file = fz_env_lock,
        .unlock_file = fz_env_unlock,
        .now_ms = fz_env_now_ms,
        .mono_us = fz_env_mono_us,
    };
    e->dir = dir;
}

/* Serves data[0, len) (borrowed) as `path`, which must be "dir/name" and stay valid. */
static inline void fz_env_add(fz_env *e, const char *path, const void *data, size_t len)
{
    FZ_CHECK(e->n < FZ_ENV_FILES);
    e->names[e->n] = path;
    e->data[e->n] = data;
    e->len[e->n] = len;
    e->n++;
}

/* ---- a private temporary directory ------------------------------------------------------- */

static char fz_tmp_path[512];

static inline int fz_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* rm -rf path (0 on success). */
static inline int fz_rm_rf(const char *path)
{
    return nftw(path, fz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void fz_tmpdir_cleanup(void)
{
    if (fz_tmp_path[0] != '\0') {
        (void)fz_rm_rf(fz_tmp_path);
        fz_tmp_path[0] = '\0';
    }
}

/* The process's own empty directory under $TMPDIR (or /tmp), made at the first call and removed
 * (with everything in it) at exit. */
static inline const char *fz_tmpdir(void)
{
    if (fz_tmp_path[0] == '\0') {
        const char *base = getenv("TMPDIR");
        if (base == NULL || base[0] == '\0') {
            base = "/tmp";
        }
        snprintf(fz_tmp_path, sizeof fz_tmp_path, "%s/shale-fuzz-XXXXXX", base);
        FZ_CHECK(mkdtemp(fz_tmp_path) != NULL);
        atexit(fz_tmpdir_cleanup);
    }
    return fz_tmp_path;
}

/* ---- checksum repair ------------------------------------------------------------------- */

/* Makes every fragment of the chain starting at offset 0 valid (wal_format.h): each header whose
 * type and length are plausible gets the right checksum; the walk stops at the first that is
 * not (what follows stays as it is). Returns whether anything changed. */
static inline bool fz_wal_fix_crcs(uint8_t *p, size_t n)
{
    bool changed = false;
    size_t pos = 0;
    while (pos + WAL_HEADER_SIZE <= n) {
        size_t room = WAL_BLOCK_SIZE - pos % WAL_BLOCK_SIZE;
        if (room < WAL_HEADER_SIZE) {
            pos += room;
            continue;
        }
        uint32_t len = coding_get_fixed16(p + pos + 4);
        uint8_t type = p[pos + 6];
        if (type == WAL_FRAG_ZERO || type > WAL_FRAG_MAX_TYPE || WAL_HEADER_SIZE + len > room ||
            pos + WAL_HEADER_SIZE + len > n) {
            break;
        }
        uint32_t crc =
            crc32c_mask(crc32c_extend(crc32c_value(&type, 1), p + pos + WAL_HEADER_SIZE, len));
        if (coding_get_fixed32(p + pos) != crc) {
            coding_put_fixed32(p + pos, crc);
            changed = true;
        }
        pos += WAL_HEADER_SIZE + len;
    }
    return changed;
}

/* Fixes the trailer checksum of the block at h (sst_format.h) if it lies inside data_end. */
static inline bool fz_sst_fix_block(uint8_t *p, uint64_t data_end, uint64_t off, uint64_t size)
{
    if (off > data_end || size > data_end - off || data_end - off - size < SST_TRAILER_SIZE) {
        return false;
    }
    uint8_t *t = p + off + size;
    uint32_t crc = crc32c_mask(crc32c_extend(crc32c_value(p + off, (size_t)size), t, 1));
    if (coding_get_fixed32(t + 1) == crc) {
        return false;
    }
    coding_put_fixed32(t + 1, crc);
    return true;
}

/* Makes the footer's and every reachable block's checksum valid: the footer, the index, filter
 * and properties blocks it names, and the data blocks the (repaired) index names. Returns
 * whether anything changed. */
static inline bool fz_sst_fix_crcs(uint8_t *p, size_t n)
{
    if (n < SST_FOOTER_SIZE) {
        return false;
    }
    uint64_t end = n - SST_FOOTER_SIZE;
    uint8_t *f = p + end;
    bool changed = false;
    uint32_t crc = crc32c_mask(crc32c_value(f, SST_FOOTER_CRC));
    if (coding_get_fixed32(f + SST_FOOTER_CRC) != crc) {
        coding_put_fixed32(f + SST_FOOTER_CRC, crc);
        changed = true;
    }
    static const unsigned at[3] = {SST_FOOTER_INDEX, SST_FOOTER_FILTER, SST_FOOTER_PROPS};
    for (int i = 0; i < 3; i++) {
        changed |= fz_sst_fix_block(p, end, coding_get_fixed64(f + at[i]),
                                    coding_get_fixed64(f + at[i] + 8));
    }
    /* The data blocks, from the index block's handles. */
    uint64_t ioff = coding_get_fixed64(f + SST_FOOTER_INDEX);
    uint64_t isize = coding_get_fixed64(f + SST_FOOTER_INDEX + 8);
    if (ioff > end || isize > end - ioff || end - ioff - isize < SST_TRAILER_SIZE) {
        return changed;
    }
    const uint8_t *raw = p + ioff;
    size_t raw_len = (size_t)isize;
    uint8_t *expanded = NULL;
    uint8_t type = p[ioff + isize];
    if (type != COMPRESS_NONE) {
        uint32_t len;
        const uint8_t *q = coding_get_varint32(raw, raw + raw_len, &len);
        if (q == NULL || len > (1u << 20) || (expanded = malloc(len > 0 ? len : 1)) == NULL ||
            compress_decompress(type, q, (size_t)(raw + raw_len - q), expanded, len, NULL) !=
                SHALE_OK) {
            free(expanded);
            return changed;
        }
        raw = expanded;
        raw_len = len;
    }
    block b;
    if (block_parse(raw, raw_len, &b) == NULL) {
        block_iter it;
        block_iter_init(&it, false);
        block_iter_set(&it, &b);
        int guard = 0;
        for (block_iter_seek_first(&it); block_iter_valid(&it) && guard < 100000;
             block_iter_next(&it), guard++) {
            uint64_t off, size;
            const uint8_t *v = it.val, *ve = it.val + it.val_len;
            v = coding_get_varint64(v, ve, &off);
            v = v ? coding_get_varint64(v, ve, &size) : NULL;
            if (v != NULL) {
                changed |= fz_sst_fix_block(p, end, off, size);
            }
        }
        block_iter_destroy(&it);
    }
    free(expanded);
    return changed;
}

/* A malloc'ed copy of data[0, n) (at least one byte allocated). */
static inline uint8_t *fz_copy(const uint8_t *data, size_t n)
{
    uint8_t *c = malloc(n > 0 ? n : 1);
    FZ_CHECK(c != NULL);
    if (n > 0) {
        memcpy(c, data, n);
    }
    return c;
}

/* ---- dval readers ---------------------------------------------------------------------------- */

#define FZ_DVAL_MAX 48

/* Up to FZ_DVAL_MAX values of v, v first, depth first. */
static inline size_t fz_dval_collect(dval v, dval *out, size_t n, int depth)
{
    if (n < FZ_DVAL_MAX) {
        out[n++] = v;
    }
    if (depth > DVAL_MAX_DEPTH + 1 || (dval_tag_of(v) != DV_ARRAY && dval_tag_of(v) != DV_OBJECT)) {
        return n;
    }
    dval_iter it;
    dval child;
    dval_iter_init(&it, v);
    while (n < FZ_DVAL_MAX && dval_iter_next(&it, NULL, &child)) {
        n = fz_dval_collect(child, out, n, depth + 1);
    }
    return n;
}

static inline int fz_sign(long long x)
{
    return x < 0 ? -1 : (x > 0 ? 1 : 0);
}

/* The order of two index keys as dval.h defines it: memcmp, a proper prefix first. */
static inline int fz_key_cmp(const shale_buf *a, const shale_buf *b)
{
    size_t m = a->len < b->len ? a->len : b->len;
    int c = m > 0 ? memcmp(a->data, b->data, m) : 0;
    return c != 0 ? fz_sign(c)
                  : fz_sign((long long)(a->len > b->len) - (long long)(a->len < b->len));
}

/* Runs the readers over v (which passed dval_check_frame: then they must only stay inside it)
 * and, when `checked` (it passed dval_check), checks what they promise: a field is found by
 * name where the walk meets it, dval_cmp is a consistent order (reflexive, antisymmetric) and
 * the index keys order as dval_cmp does. */
static inline void fz_dval_readers(dval v, bool checked)
{
    dval vals[FZ_DVAL_MAX];
    shale_buf keys[FZ_DVAL_MAX];
    size_t n = fz_dval_collect(v, vals, 0, 0);
    for (size_t i = 0; i < n; i++) {
        dval x = vals[i];
        enum dval_tag t = dval_tag_of(x);
        enum dval_class c = dval_class_of(x);
        FZ_CHECK(t <= DV_OBJECT);
        FZ_CHECK(c == (t == DV_NULL     ? DVC_NULL
                       : t <= DV_TRUE   ? DVC_BOOL
                       : t <= DV_DOUBLE ? DVC_NUMBER
                       : t == DV_STRING ? DVC_STRING
                       : t == DV_ARRAY  ? DVC_ARRAY
                                        : DVC_OBJECT));
        FZ_CHECK(dval_at(x.p).len == x.len);
        if (t == DV_INT || t == DV_DOUBLE) {
            volatile double d = dval_double(x);
            (void)d;
        }
        if (t == DV_STRING) {
            shale_slice s = dval_str(x);
            FZ_CHECK((const uint8_t *)s.data >= x.p && s.len < x.len);
        }
        if (t == DV_OBJECT || t == DV_ARRAY) {
            dval_iter it;
            shale_slice name;
            dval child, found;
            uint32_t count = 0;
            dval_iter_init(&it, x);
            while (dval_iter_next(&it, &name, &child)) {
                FZ_CHECK(child.p > x.p && child.p + child.len <= x.p + x.len);
                count++;
                if (t == DV_OBJECT) {
                    bool ok = dval_field(x, name, &found);
                    FZ_CHECK(!checked || (ok && found.p == child.p && found.len == child.len));
                }
            }
            FZ_CHECK(count == dval_count(x));
        }
        keys[i] = (shale_buf){0};
        FZ_CHECK(dval_index_key(x, &keys[i], NULL) == SHALE_OK);
        FZ_CHECK(keys[i].len > 0);
        uint8_t k0 = ((const uint8_t *)keys[i].data)[0];
        FZ_CHECK(k0 >= 0x01 && k0 <= 0x07);
    }
    for (size_t i = 0; checked && i < n; i++) {
        FZ_CHECK(dval_cmp(vals[i], vals[i]) == 0);
        for (size_t j = i + 1; j < n; j++) {
            int c = fz_sign(dval_cmp(vals[i], vals[j]));
            FZ_CHECK(c == -fz_sign(dval_cmp(vals[j], vals[i])));
            FZ_CHECK(c == fz_key_cmp(&keys[i], &keys[j]));
        }
    }
    for (size_t i = 0; i < n; i++) {
        buf_free(&keys[i]);
    }
}

/* ---- the fixed documents of the database targets ---------------------------------------- */

/* Collection "people" (with an index on "age") and "items". Fixed _ids, so cursors and pages are
 * the same in every run. Mixed types on purpose: sorts and filters meet every class. */
static const char *const fz_people[] = {
    "{\"_id\":\"p00\",\"name\":\"ada\",\"age\":36,\"kind\":\"a\",\"score\":9.5,\"tags\":[\"x\"]}",
    "{\"_id\":\"p01\",\"name\":\"bob\",\"age\":25,\"kind\":\"b\",\"score\":3}",
    "{\"_id\":\"p02\",\"name\":\"cy\",\"age\":41,\"kind\":\"a\",\"n\":{\"m\":{\"k\":1}}}",
    "{\"_id\":\"p03\",\"name\":\"dee\",\"age\":25,\"kind\":\"c\",\"score\":-1}",
    "{\"_id\":\"p04\",\"name\":\"eve\",\"age\":\"thirty\",\"kind\":\"b\"}",
    "{\"_id\":\"p05\",\"name\":\"fay\",\"kind\":\"a\",\"tags\":[\"x\",\"y\"]}",
    "{\"_id\":\"p06\",\"name\":\"gus\",\"age\":null,\"kind\":\"c\",\"score\":0}",
    "{\"_id\":\"p07\",\"name\":\"hal\",\"age\":30.5,\"kind\":\"a\",\"n\":{\"m\":{\"k\":2}}}",
    "{\"_id\":\"p08\",\"name\":\"ida\",\"age\":30,\"kind\":\"b\",\"score\":7}",
    "{\"_id\":\"p09\",\"name\":\"jo\",\"age\":-4,\"kind\":\"a\",\"flag\":true}",
    "{\"_id\":\"p10\",\"name\":\"kim\",\"age\":99,\"kind\":\"c\",\"flag\":false}",
    "{\"_id\":\"p11\",\"name\":\"lu\",\"age\":30,\"kind\":\"a\",\"n\":{\"m\":{\"k\":\"two\"}}}",
    "{\"_id\":\"p12\",\"name\":\"max\",\"age\":1e3,\"kind\":\"b\",\"score\":3}",
    "{\"_id\":\"p13\",\"name\":\"ned\",\"age\":[1,2],\"kind\":\"c\"}",
    "{\"_id\":\"p14\",\"name\":\"oz\",\"age\":{\"y\":1},\"kind\":\"a\"}",
    "{\"_id\":\"p15\",\"name\":\"pam\",\"age\":18,\"kind\":\"b\",\"tags\":[]}",
    "{\"_id\":\"p16\",\"name\":\"Quinn\",\"age\":77,\"kind\":\"a\",\"score\":9.5}",
    "{\"_id\":\"p17\",\"name\":\"rae\",\"age\":25,\"kind\":\"b\"}",
    "{\"_id\":\"p18\",\"age\":52,\"kind\":\"c\",\"score\":1e-3}",
    "{\"_id\":\"p19\",\"name\":\"\",\"age\":9007199254740993,\"kind\":\"a\"}",
    "{\"_id\":\"p20\",\"name\":\"tia\",\"age\":60,\"kind\":\"b\",\"n\":{\"m\":null}}",
    "{\"_id\":\"p21\",\"name\":\"ugo\",\"age\":33,\"kind\":\"c\",\"score\":4}",
    "{\"_id\":\"p22\",\"name\":\"vi\",\"age\":true,\"kind\":\"a\"}",
    "{\"_id\":\"p23\",\"name\":\"wes\",\"age\":44,\"kind\":\"b\",\"tags\":[\"y\"]}",
};
#define FZ_NPEOPLE (sizeof fz_people / sizeof fz_people[0])

static const char *const fz_items[] = {
    "{\"_id\":\"i1\",\"sku\":\"A-1\",\"qty\":3}",
    "{\"_id\":\"i2\",\"sku\":\"B-2\",\"qty\":0,\"tags\":[\"sale\"]}",
    "{\"_id\":\"i3\",\"sku\":\"C-3\",\"qty\":12.5}",
};
#define FZ_NITEMS (sizeof fz_items / sizeof fz_items[0])

/* Loads fz_people (with an index on "age") and fz_items into an open database. */
static inline void fz_seed_docs(shale_db *db)
{
    shale_slice docs[FZ_NPEOPLE];
    shale_error err;
    for (size_t i = 0; i < FZ_NPEOPLE; i++) {
        docs[i] = (shale_slice){fz_people[i], strlen(fz_people[i])};
    }
    FZ_CHECK(shale_index_create(db, "people", "age", &err) == SHALE_OK);
    FZ_CHECK(shale_doc_insert_many(db, "people", docs, FZ_NPEOPLE, NULL, &err) == SHALE_OK);
    for (size_t i = 0; i < FZ_NITEMS; i++) {
        docs[i] = (shale_slice){fz_items[i], strlen(fz_items[i])};
    }
    FZ_CHECK(shale_doc_insert_many(db, "items", docs, FZ_NITEMS, NULL, &err) == SHALE_OK);
}

/* A small database for the targets: no log (nothing to make durable), little memory. */
static inline shale_db *fz_open_db(const char *path)
{
    shale_options o = {
        .create_if_missing = true,
        .durability = SHALE_DURABILITY_NONE,
        .max_memory_mb = 16,
        .compaction_threads = 1,
    };
    shale_db *db = NULL;
    shale_error err;
    if (shale_open(path, &o, &db, &err) != SHALE_OK) {
        fprintf(stderr, "fuzz: cannot open %s: %s\n", path, err.msg);
        FZ_CHECK(!"shale_open");
    }
    return db;
}

#endif
