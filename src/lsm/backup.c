/*
 * backup: online, incremental backups of a database into a backup destination DEST, with
 * SHA-256 manifests; list, verify, delete, purge and restore (include/shale.h, "Backups").
 *
 * The files of DEST, their formats and every check made on reading them are in backup_format.h
 * (this file does the I/O and the order of it). In short: DEST/BACKUPS pins DEST to one database
 * and holds the next backup id; DEST/tables/ holds every table once, shared by the backups that
 * list it; DEST/NNNNNN/ is backup NNNNNN (the checkpoint's small files and BACKUP, its manifest,
 * written last); DEST/LOCK is flock'ed while shale_backup, _delete or _purge runs (SHALE_BUSY for
 * a second one; readers (list, verify, restore) do not take it). A directory NNNNNN/ without
 * BACKUP is a backup cut short: list, verify and restore ignore it (SHALE_NOT_FOUND for its id),
 * and the next backup, delete or purge removes it, with every tables/ file no complete backup
 * lists and every *.tmp there.
 *
 * How a backup is taken (shale_backup):
 *   1. DEST is created if missing; it must be empty (LOCK, BACKUPS.tmp aside) or hold BACKUPS
 *      naming this database (SHALE_INVALID otherwise). Take DEST/LOCK. Write BACKUPS if new.
 *   2. Read every BACKUP (a damaged one stops the backup with SHALE_CORRUPTION: the tables it
 *      lists are unknown, so nothing can be removed or reused safely; delete that backup).
 *      Remove leftovers: directories without BACKUP, tables/ *.tmp, unlisted tables.
 *   3. id = next_id (or past the largest directory); BACKUPS is rewritten with id + 1.
 *   4. shale_checkpoint(db, DEST/NNNNNN): a flush, then a consistent snapshot manifest, SHALE,
 *      CURRENT, and the tables hard-linked (or copied when DEST is on another file system).
 *   5. The snapshot is decoded (wal_reader + version_edit_decode): its flushed_seq is `seq`
 *      (every write with seq <= flushed_seq is in the snapshot's tables and none after it: the
 *      flush took the memtable whole at a switch, and no log is copied; last_seq may be larger
 *      and is not what the backup holds), its table list is what the backup needs.
 *   6. Each table: if tables/NNNNNN-S.sst is listed by an earlier backup and is there with size
 *      S, it is reused and its digest carried from that backup's manifest (checked by its CRC;
 *      verify re-reads it); else it is copied from the checkpoint into tables/NAME.tmp while
 *      hashing the bytes read, fsynced, renamed to NAME. Tables are always copied, never linked:
 *      a backup must not share inodes with the database. The checkpoint's link is then removed.
 *   7. tables/ and NNNNNN/ are fsynced; the small files are hashed; BACKUP is written last
 *      (env_write_file_atomic: temp, fsync, rename, fsync the directory).
 *   A failure removes NNNNNN/ (best effort; the next backup does it otherwise). A failed fsync is
 *   never retried: the backup is abandoned with SHALE_IO.
 *
 * Restore (shale_restore): verify every file first (size and SHA-256; nothing is written if one
 * fails), then copy each into dir (never a link) with O_EXCL, hashing again what is read (a file
 * changed since the check is SHALE_CORRUPTION), fsync each; fsync dir; write CURRENT atomically
 * last; fsync dir's parent. dir's LOCK is held throughout, so the restore cannot race an open.
 * With overwrite, an existing database (it must hold SHALE and no subdirectory; anything else
 * is refused with SHALE_INVALID rather than emptied) has CURRENT removed first, then its other
 * files (LOCK stays). A restore cut short leaves no CURRENT: a directory holding tables or a
 * manifest past the first and no CURRENT does not open.
 *
 * Decisions beyond include/shale.h:
 *   - shale_backup_verify with id 0 verifies every backup (each shared table read once).
 *   - shale_backup_list on a directory without BACKUPS is SHALE_INVALID; a missing one
 *     SHALE_NOT_FOUND; no backups gives *out = NULL, *count = 0.
 *   - delete and purge read every BACKUP that remains (to know which tables are still listed);
 *     a damaged one among them stops the call with SHALE_CORRUPTION before anything is removed.
 *     A damaged backup can itself be deleted. Deleting a backup removes its BACKUP first, so a
 *     crash midway leaves an incomplete directory, never a listed backup with files missing.
 *   - Identity is the 28-byte identity file. It tells databases apart by their creation time;
 *     a checkpoint or a restored copy keeps the identity of its origin, so backing up two copies
 *     that diverged into one DEST is not detected (their file numbers can collide); see the
 *     report for a proposed random database id.
 *   - Directories are removed with rmdir(2) directly: the env seam has no directory removal
 *     (proposed: shale_env.remove_dir). Everything else goes through the env.
 *   - list, verify and restore use env_posix(); shale_backup uses the database's env.
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/error.h"
#include "env/env.h"
#include "lsm/backup_format.h"
#include "lsm/db_impl.h"
#include "lsm/version.h"
#include "wal/wal_format.h"
#include "wal/wal_reader.h"

#define BK_CHUNK         ((size_t)1 << 20)
#define BK_PATH          4096
#define BK_CURRENT_BYTES 4096u

/* One numbered directory of DEST. */
typedef enum bk_state { BK_INCOMPLETE, BK_COMPLETE, BK_DAMAGED } bk_state;

typedef struct bk_item {
    uint64_t id;
    bk_state state;
    backup_manifest m; /* BK_COMPLETE */
    shale_error error; /* BK_DAMAGED: what is wrong */
} bk_item;

typedef struct bk_scan {
    bk_item *items; /* sorted by id */
    size_t n;
} bk_scan;

/* A table some complete backup lists: its name in tables/, size and digest. */
typedef struct bk_ref {
    char name[BACKUP_STORED_NAME];
    uint64_t size;
    uint8_t sha[BACKUP_SHA];
    bool conflict; /* two backups list it with different digests: never carried */
} bk_ref;

typedef struct bk_refs {
    bk_ref *v;
    size_t n;
} bk_refs;

/* ---- small helpers ---- */

static shale_code pathf(char *out, shale_error *err, const char *fmt, ...) SHALE_PRINTF(3, 4);

static shale_code pathf(char *out, shale_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, BK_PATH, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= BK_PATH) {
        return err_set(err, SHALE_INVALID, 0, "path too long (%.64s...)", out);
    }
    return SHALE_OK;
}

static void scan_free(bk_scan *s)
{
    for (size_t i = 0; i < s->n; i++) {
        backup_manifest_free(&s->items[i].m);
    }
    free(s->items);
    s->items = NULL;
    s->n = 0;
}

/* Where file f of backup `id` lives in dest. */
static shale_code file_path(char *out, const char *dest, uint64_t id, const backup_file *f,
                            shale_error *err)
{
    if (f->where == BACKUP_WHERE_TABLES) {
        char name[BACKUP_STORED_NAME];
        backup_stored_name(name, f);
        return pathf(out, err, "%s/" BACKUP_TABLES "/%s", dest, name);
    }
    return pathf(out, err, "%s/%06" PRIu64 "/%s", dest, id, f->name);
}

/* Removes directory `path` (empty). See the header comment: the env has no rmdir. */
static shale_code remove_dir(const char *path, shale_error *err)
{
    if (rmdir(path) != 0) {
        return err_set(err, errno == ENOENT ? SHALE_NOT_FOUND : SHALE_IO, errno, "%s: rmdir: %s",
                       path, strerror(errno));
    }
    return SHALE_OK;
}

static bool is(const char *name, const char *which)
{
    return which != NULL && strcmp(name, which) == 0;
}

/* Removes the files names[0, count) of directory `dir` but `keep` (may be NULL): `first` (may be
 * NULL) before the others, with a directory sync in between, so a crash midway leaves it gone
 * first. A file already gone is not an error. */
static shale_code remove_files(const shale_env *env, const char *dir, char **names, size_t count,
                               const char *first, const char *keep, shale_error *err)
{
    char path[BK_PATH];
    shale_code rc = SHALE_OK;

    for (int round = first != NULL ? 0 : 1; round < 2 && rc == SHALE_OK; round++) {
        for (size_t i = 0; i < count && rc == SHALE_OK; i++) {
            if (is(names[i], keep) || is(names[i], first) != (round == 0)) {
                continue;
            }
            rc = pathf(path, err, "%s/%s", dir, names[i]);
            if (rc == SHALE_OK) {
                rc = env->remove_file(env, path, err);
                if (rc == SHALE_NOT_FOUND) {
                    rc = SHALE_OK;
                }
            }
        }
        if (rc == SHALE_OK && round == 0) {
            rc = env->sync_dir(env, dir, err);
        }
    }
    return rc;
}

/* Removes every file in directory `dir`, `first` (may be NULL) before the others (remove_files),
 * then the directory itself and syncs its parent. */
static shale_code remove_tree(const shale_env *env, const char *dir, const char *first,
                              shale_error *err)
{
    char **names = NULL;
    size_t count = 0;
    shale_code rc = env->list_dir(env, dir, &names, &count, err);

    if (rc == SHALE_NOT_FOUND) {
        return SHALE_OK;
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = remove_files(env, dir, names, count, first, NULL, err);
    env_free_names(names, count);
    if (rc == SHALE_OK) {
        rc = remove_dir(dir, err);
    }
    if (rc == SHALE_OK) {
        rc = env_sync_parent(env, dir, err);
    }
    return rc;
}

/* ---- SHA-256 over files, in constant memory ---- */

static shale_code sha_init(EVP_MD_CTX **ctx, shale_error *err)
{
    *ctx = EVP_MD_CTX_new();
    if (*ctx == NULL) {
        return err_nomem(err);
    }
    if (EVP_DigestInit_ex(*ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(*ctx);
        *ctx = NULL;
        return err_set(err, SHALE_IO, 0, "libcrypto: SHA-256 unavailable");
    }
    return SHALE_OK;
}

static shale_code sha_update(EVP_MD_CTX *ctx, const void *data, size_t n, shale_error *err)
{
    if (n > 0 && EVP_DigestUpdate(ctx, data, n) != 1) {
        return err_set(err, SHALE_IO, 0, "libcrypto: SHA-256 update failed");
    }
    return SHALE_OK;
}

static shale_code sha_final(EVP_MD_CTX *ctx, uint8_t out[BACKUP_SHA], shale_error *err)
{
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != BACKUP_SHA) {
        return err_set(err, SHALE_IO, 0, "libcrypto: SHA-256 final failed");
    }
    return SHALE_OK;
}

/* The SHA-256 of data[0, n). */
static shale_code sha_buffer(const void *data, size_t n, uint8_t out[BACKUP_SHA], shale_error *err)
{
    unsigned int len = 0;
    if (EVP_Digest(data, n, out, &len, EVP_sha256(), NULL) != 1 || len != BACKUP_SHA) {
        return err_set(err, SHALE_IO, 0, "libcrypto: SHA-256 failed");
    }
    return SHALE_OK;
}

/* Reads the whole of `src` in BK_CHUNK pieces (buf holds one), hashing it into sha and, when
 * `dst` is not NULL, appending it to a new file `dst` (created with `flags`), fsynced and closed.
 * *size gets the number of bytes read. */
static shale_code copy_hashed(const shale_env *env, const char *src, const char *dst, int flags,
                              uint8_t *buf, uint64_t *size, uint8_t sha[BACKUP_SHA],
                              shale_error *err)
{
    env_file *in = NULL, *out = NULL;
    EVP_MD_CTX *ctx = NULL;
    uint64_t off = 0;
    shale_code rc = sha_init(&ctx, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    rc = env->open_file(env, src, ENV_READ, &in, err);
    if (rc != SHALE_OK) {
        goto out;
    }
    if (dst != NULL) {
        rc = env->open_file(env, dst, ENV_WRITE | ENV_CREATE | flags, &out, err);
        if (rc != SHALE_OK) {
            goto out;
        }
    }
    for (;;) {
        size_t got = 0;
        rc = env_file_read_at(in, off, buf, BK_CHUNK, &got, err);
        if (rc != SHALE_OK) {
            goto out;
        }
        if (got == 0) {
            break;
        }
        rc = sha_update(ctx, buf, got, err);
        if (rc == SHALE_OK && out != NULL) {
            rc = env_file_append(out, buf, got, err);
        }
        if (rc != SHALE_OK) {
            goto out;
        }
        off += got;
        if (got < BK_CHUNK) {
            break;
        }
    }
    rc = sha_final(ctx, sha, err);
    if (rc == SHALE_OK && out != NULL) {
        rc = env_file_sync(out, false, err); /* a failure is final: the caller abandons */
    }
    *size = off;
out:
    EVP_MD_CTX_free(ctx);
    (void)env_file_close(in, NULL);
    if (out != NULL) {
        shale_code crc = env_file_close(out, rc == SHALE_OK ? err : NULL);
        if (rc == SHALE_OK) {
            rc = crc;
        }
    }
    return rc;
}

/* Checks that `path` has size `size` and SHA-256 `sha`: SHALE_CORRUPTION naming it otherwise. */
static shale_code check_file(const shale_env *env, const char *path, uint64_t size,
                             const uint8_t sha[BACKUP_SHA], uint8_t *buf, shale_error *err)
{
    bool is_dir = false;
    uint64_t got_size = 0;
    uint8_t got[BACKUP_SHA];
    shale_code rc = env->stat_path(env, path, &is_dir, &got_size, err);

    if (rc == SHALE_NOT_FOUND) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: missing", path);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    if (is_dir) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: a directory, not a file", path);
    }
    if (got_size != size) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: %" PRIu64 " bytes, the backup lists %" PRIu64,
                       path, got_size, size);
    }
    rc = copy_hashed(env, path, NULL, 0, buf, &got_size, got, err);
    if (rc == SHALE_NOT_FOUND) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: missing", path);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    if (got_size != size) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s: %" PRIu64 " bytes read, the backup lists %" PRIu64, path, got_size,
                       size);
    }
    if (memcmp(got, sha, BACKUP_SHA) != 0) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: SHA-256 mismatch (content changed)", path);
    }
    return SHALE_OK;
}

/* ---- DEST/BACKUPS and DEST/NNNNNN/BACKUP ---- */

/* Reads the whole of `path` (at most max bytes) into *data (the caller frees it):
 * SHALE_NOT_FOUND (err not set) if it is missing. */
static shale_code read_whole(const shale_env *env, const char *path, size_t max, void **data,
                             size_t *len, shale_error *err)
{
    shale_error local;
    shale_code rc = env_read_file(env, path, max, data, len, &local);
    return rc == SHALE_OK || rc == SHALE_NOT_FOUND ? rc : err_copy(err, &local);
}

static shale_code dest_write(const shale_env *env, const char *dest, uint64_t next_id,
                             const uint8_t identity[BACKUP_ID_BYTES], shale_error *err)
{
    uint8_t raw[BACKUP_DEST_BYTES];
    backup_dest_encode(raw, next_id, identity);
    return env_write_file_atomic(env, dest, BACKUP_DEST_FILE, raw, sizeof raw, err);
}

/* Reads DEST/BACKUPS. SHALE_NOT_FOUND if it is missing (err not set), SHALE_CORRUPTION naming it
 * if damaged. */
static shale_code dest_read(const shale_env *env, const char *dest, uint64_t *next_id,
                            uint8_t identity[BACKUP_ID_BYTES], shale_error *err)
{
    char path[BK_PATH];
    void *data = NULL;
    size_t len = 0;
    shale_code rc = pathf(path, err, "%s/" BACKUP_DEST_FILE, dest);

    if (rc == SHALE_OK) {
        rc = read_whole(env, path, 4096, &data, &len, err);
    }
    if (rc == SHALE_OK) {
        rc = backup_dest_decode(data, len, path, next_id, identity, err);
    }
    free(data);
    return rc;
}

/* `path` must be a directory: SHALE_NOT_FOUND (err not set) if it is missing, SHALE_INVALID if it
 * is something else. */
static shale_code stat_dir(const shale_env *env, const char *path, shale_error *err)
{
    bool is_dir = false;
    uint64_t size;
    shale_code rc = env->stat_path(env, path, &is_dir, &size, err);

    if (rc == SHALE_OK && !is_dir) {
        return err_set(err, SHALE_INVALID, 0, "%s: not a directory", path);
    }
    return rc;
}

/* Makes sure directory `path` exists: created (and its parent synced) when missing. */
static shale_code make_dir(const shale_env *env, const char *path, shale_error *err)
{
    shale_code rc = stat_dir(env, path, err);
    if (rc == SHALE_NOT_FOUND) {
        rc = env->mkdir(env, path, err);
        if (rc == SHALE_OK) {
            rc = env_sync_parent(env, path, err);
        }
    }
    return rc;
}

/* For readers: DEST must exist and hold a valid BACKUPS. */
static shale_code dest_open(const shale_env *env, const char *dest,
                            uint8_t identity[BACKUP_ID_BYTES], shale_error *err)
{
    uint64_t next_id;

    if (dest == NULL || dest[0] == '\0') {
        return err_set(err, SHALE_INVALID, 0, "backup destination: empty path");
    }
    shale_code rc = stat_dir(env, dest, err);
    if (rc == SHALE_NOT_FOUND) {
        return err_set(err, SHALE_NOT_FOUND, 0, "%s: no such backup destination", dest);
    }
    if (rc == SHALE_OK) {
        rc = dest_read(env, dest, &next_id, identity, err);
    }
    if (rc == SHALE_NOT_FOUND) {
        return err_set(err, SHALE_INVALID, 0,
                       "%s: not a backup destination (no " BACKUP_DEST_FILE " file)", dest);
    }
    return rc;
}

/* Reads DEST/NNNNNN/BACKUP: SHALE_NOT_FOUND (no BACKUP: the backup is incomplete or absent),
 * SHALE_CORRUPTION naming the file, SHALE_IO. */
static shale_code manifest_read(const shale_env *env, const char *dest, uint64_t id,
                                const uint8_t identity[BACKUP_ID_BYTES], backup_manifest *m,
                                shale_error *err)
{
    char path[BK_PATH];
    void *data = NULL;
    size_t len = 0;
    shale_code rc = pathf(path, err, "%s/%06" PRIu64 "/" BACKUP_FILE, dest, id);

    memset(m, 0, sizeof *m);
    if (rc == SHALE_OK) {
        rc = read_whole(env, path, BACKUP_MAX_MANIFEST, &data, &len, err);
    }
    if (rc == SHALE_NOT_FOUND) {
        return err_set(err, SHALE_NOT_FOUND, 0, "%s: backup %" PRIu64 " not found", dest, id);
    }
    if (rc == SHALE_OK) {
        rc = backup_manifest_decode(data, len, path, m, err);
    }
    free(data);
    if (rc == SHALE_OK) {
        rc = backup_manifest_check(m, path, id, identity, err);
        if (rc != SHALE_OK) {
            backup_manifest_free(m);
        }
    }
    return rc;
}

static int item_cmp(const void *a, const void *b)
{
    uint64_t x = ((const bk_item *)a)->id, y = ((const bk_item *)b)->id;
    return x < y ? -1 : x > y;
}

/* Every numbered directory of dest, with its manifest read (damage recorded per item, not
 * returned). Other names are ignored. */
static shale_code scan_dest(const shale_env *env, const char *dest,
                            const uint8_t identity[BACKUP_ID_BYTES], bk_scan *out, shale_error *err)
{
    char **names = NULL;
    size_t count = 0;
    char path[BK_PATH];
    shale_code rc = env->list_dir(env, dest, &names, &count, err);

    memset(out, 0, sizeof *out);
    if (rc != SHALE_OK) {
        return rc;
    }
    out->items = calloc(count ? count : 1, sizeof *out->items);
    if (out->items == NULL) {
        env_free_names(names, count);
        return err_nomem(err);
    }
    for (size_t i = 0; i < count && rc == SHALE_OK; i++) {
        uint64_t id, size;
        bool is_dir = false;
        if (!backup_parse_id(names[i], &id)) {
            continue;
        }
        rc = pathf(path, err, "%s/%s", dest, names[i]);
        if (rc != SHALE_OK) {
            break;
        }
        rc = env->stat_path(env, path, &is_dir, &size, err);
        if (rc == SHALE_NOT_FOUND) {
            rc = SHALE_OK;
            continue;
        }
        if (rc != SHALE_OK || !is_dir) {
            continue;
        }
        bk_item *it = &out->items[out->n];
        memset(it, 0, sizeof *it);
        it->id = id;
        shale_code mrc = manifest_read(env, dest, id, identity, &it->m, &it->error);
        if (mrc == SHALE_OK) {
            it->state = BK_COMPLETE;
        } else if (mrc == SHALE_NOT_FOUND) {
            it->state = BK_INCOMPLETE;
        } else if (mrc == SHALE_CORRUPTION) {
            it->state = BK_DAMAGED;
        } else {
            rc = err_copy(err, &it->error);
            break;
        }
        out->n++;
    }
    env_free_names(names, count);
    if (rc != SHALE_OK) {
        scan_free(out);
        return rc;
    }
    qsort(out->items, out->n, sizeof *out->items, item_cmp);
    return SHALE_OK;
}

static bk_item *scan_find(bk_scan *s, uint64_t id)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->items[i].id == id) {
            return &s->items[i];
        }
    }
    return NULL;
}

/* ---- table references and garbage collection ---- */

static int ref_cmp(const void *a, const void *b)
{
    return strcmp(((const bk_ref *)a)->name, ((const bk_ref *)b)->name);
}

/* Every table the complete backups of s list. */
static shale_code refs_build(const bk_scan *s, bk_refs *out, shale_error *err)
{
    size_t n = 0;
    out->v = NULL;
    out->n = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->items[i].state == BK_COMPLETE) {
            n += s->items[i].m.nfiles;
        }
    }
    out->v = calloc(n ? n : 1, sizeof *out->v);
    if (out->v == NULL) {
        return err_nomem(err);
    }
    for (size_t i = 0; i < s->n; i++) {
        const bk_item *it = &s->items[i];
        if (it->state != BK_COMPLETE) {
            continue;
        }
        for (size_t j = 0; j < it->m.nfiles; j++) {
            const backup_file *f = &it->m.files[j];
            if (f->where != BACKUP_WHERE_TABLES) {
                continue;
            }
            bk_ref *r = &out->v[out->n++];
            backup_stored_name(r->name, f);
            r->size = f->size;
            memcpy(r->sha, f->sha, BACKUP_SHA);
        }
    }
    qsort(out->v, out->n, sizeof *out->v, ref_cmp);
    /* Deduplicate; two digests for one name mean one manifest is wrong: carry neither. */
    size_t w = 0;
    for (size_t i = 0; i < out->n; i++) {
        if (w > 0 && strcmp(out->v[w - 1].name, out->v[i].name) == 0) {
            if (memcmp(out->v[w - 1].sha, out->v[i].sha, BACKUP_SHA) != 0) {
                out->v[w - 1].conflict = true;
            }
            continue;
        }
        out->v[w++] = out->v[i];
    }
    out->n = w;
    return SHALE_OK;
}

static const bk_ref *refs_find(const bk_refs *r, const char *name)
{
    bk_ref key;
    snprintf(key.name, sizeof key.name, "%s", name);
    return r->n ? bsearch(&key, r->v, r->n, sizeof *r->v, ref_cmp) : NULL;
}

/* Removes what no complete backup needs: incomplete backup directories (except `keep_id`),
 * tables/ *.tmp, and tables/ files that `refs` does not list. Callers ensure no backup is
 * damaged (its tables would be unknown). */
static shale_code collect_garbage(const shale_env *env, const char *dest, const bk_scan *s,
                                  const bk_refs *refs, shale_error *err)
{
    char path[BK_PATH];
    char **names = NULL;
    size_t count = 0;
    shale_code rc = SHALE_OK;

    for (size_t i = 0; i < s->n && rc == SHALE_OK; i++) {
        if (s->items[i].state == BK_INCOMPLETE) {
            rc = pathf(path, err, "%s/%06" PRIu64, dest, s->items[i].id);
            if (rc == SHALE_OK) {
                rc = remove_tree(env, path, NULL, err);
            }
        }
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = pathf(path, err, "%s/" BACKUP_TABLES, dest);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = env->list_dir(env, path, &names, &count, err);
    if (rc == SHALE_NOT_FOUND) {
        return SHALE_OK;
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    bool removed = false;
    for (size_t i = 0; i < count && rc == SHALE_OK; i++) {
        if (refs_find(refs, names[i]) != NULL) {
            continue;
        }
        char file[BK_PATH];
        rc = pathf(file, err, "%s/%s", path, names[i]);
        if (rc == SHALE_OK) {
            rc = env->remove_file(env, file, err);
            removed = true;
        }
    }
    env_free_names(names, count);
    if (rc == SHALE_OK && removed) {
        rc = env->sync_dir(env, path, err);
    }
    return rc;
}

/* The first damaged backup of s, or NULL. */
static const bk_item *first_damaged(const bk_scan *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->items[i].state == BK_DAMAGED) {
            return &s->items[i];
        }
    }
    return NULL;
}

/* ---- the destination lock ---- */

static shale_code dest_lock(const shale_env *env, const char *dest, env_lock **out,
                            shale_error *err)
{
    char path[BK_PATH];
    shale_code rc = pathf(path, err, "%s/LOCK", dest);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = env->lock_file(env, path, out, err);
    if (rc == SHALE_BUSY) {
        return err_set(err, SHALE_BUSY, EWOULDBLOCK,
                       "%s: in use (another backup, delete or purge is running)", path);
    }
    return rc;
}

static void dest_unlock(const shale_env *env, env_lock *lock)
{
    if (lock != NULL) {
        (void)env->unlock_file(env, lock, NULL);
    }
}

/* What list, verify, delete, purge and restore start with: DEST opened (dest_open), locked when
 * `lock` is not NULL, and scanned. On failure nothing is held. */
static shale_code dest_scan(const shale_env *env, const char *dest, env_lock **lock, bk_scan *scan,
                            shale_error *err)
{
    uint8_t identity[BACKUP_ID_BYTES];
    shale_code rc = dest_open(env, dest, identity, err);

    memset(scan, 0, sizeof *scan);
    if (rc == SHALE_OK && lock != NULL) {
        rc = dest_lock(env, dest, lock, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = scan_dest(env, dest, identity, scan, err);
    if (rc != SHALE_OK && lock != NULL) {
        dest_unlock(env, *lock);
        *lock = NULL;
    }
    return rc;
}

/* Backup `id` of the scan, complete: SHALE_NOT_FOUND if there is none (or it is incomplete), its
 * damage (SHALE_CORRUPTION) if it is damaged. id 0 means the newest backup. */
static shale_code scan_pick(bk_scan *s, const char *dest, uint64_t id, bk_item **out,
                            shale_error *err)
{
    bk_item *it = id != 0 ? scan_find(s, id) : NULL;
    for (size_t i = s->n; id == 0 && i-- > 0 && it == NULL;) {
        if (s->items[i].state != BK_INCOMPLETE) {
            it = &s->items[i];
        }
    }
    *out = it;
    if (it == NULL || it->state == BK_INCOMPLETE) {
        return id == 0
                   ? err_set(err, SHALE_NOT_FOUND, 0, "%s: no backup to restore", dest)
                   : err_set(err, SHALE_NOT_FOUND, 0, "%s: backup %" PRIu64 " not found", dest, id);
    }
    return it->state == BK_DAMAGED ? err_copy(err, &it->error) : SHALE_OK;
}

/* ---- shale_backup ---- */

/* Reads the checkpoint's CURRENT and its one-snapshot manifest into *snap. */
static shale_code read_snapshot(const shale_env *env, const char *ckpt, char *manifest_name,
                                size_t cap, version_edit *snap, shale_error *err)
{
    char path[BK_PATH];
    void *data = NULL;
    size_t len = 0;
    uint64_t number = 0;
    wal_reader *r = NULL;
    shale_slice rec;
    uint64_t off;
    shale_code rc = pathf(path, err, "%s/CURRENT", ckpt);

    if (rc != SHALE_OK) {
        return rc;
    }
    rc = env_read_file(env, path, 64, &data, &len, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (len < 2 || len >= cap || ((char *)data)[len - 1] != '\n') {
        free(data);
        return err_set(err, SHALE_CORRUPTION, 0, "%s: not a CURRENT file", path);
    }
    memcpy(manifest_name, data, len - 1);
    manifest_name[len - 1] = '\0';
    free(data);
    if (version_parse_file_name(manifest_name, &number) != VERSION_FILE_MANIFEST) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: names no manifest", path);
    }
    rc = pathf(path, err, "%s/%s", ckpt, manifest_name);
    if (rc == SHALE_OK) {
        rc = wal_reader_open(env, path, number, false, &r, err);
    }
    if (rc == SHALE_OK) {
        rc = wal_reader_next(r, &rec, &off, err);
        if (rc == SHALE_NOT_FOUND) {
            rc = err_set(err, SHALE_CORRUPTION, 0, "%s: no snapshot", path);
        }
    }
    if (rc == SHALE_OK) {
        const uint8_t *p = rec.data;
        char where[BK_PATH + 32];
        snprintf(where, sizeof where, "%s @%" PRIu64, path, off);
        if (rec.len < 1 || p[0] != WAL_REC_EDIT) {
            rc = err_set(err, SHALE_CORRUPTION, 0, "%s: not an edit", where);
        } else {
            rc = version_edit_decode(p + 1, rec.len - 1, where, snap, err);
        }
    }
    wal_reader_close(r);
    return rc;
}

/* Copies (or reuses) one table of the checkpoint into tables/, filling f. */
static shale_code place_table(const shale_env *env, const char *dest, const char *ckpt,
                              uint64_t number, uint64_t size, const bk_refs *refs, uint8_t *buf,
                              backup_file *f, bool *is_new, shale_error *err)
{
    char src[BK_PATH], dst[BK_PATH], tmp[BK_PATH], name[BACKUP_STORED_NAME];
    bool is_dir = false;
    uint64_t have = 0;

    memset(f, 0, sizeof *f);
    f->where = BACKUP_WHERE_TABLES;
    snprintf(f->name, sizeof f->name, "%06" PRIu64 ".sst", number);
    f->size = size;
    backup_stored_name(name, f);
    shale_code rc = pathf(src, err, "%s/%s", ckpt, f->name);
    if (rc == SHALE_OK) {
        rc = pathf(dst, err, "%s/" BACKUP_TABLES "/%s", dest, name);
    }
    if (rc == SHALE_OK) {
        rc = pathf(tmp, err, "%s.tmp", dst);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    const bk_ref *ref = refs_find(refs, name);
    if (ref != NULL && !ref->conflict) {
        rc = env->stat_path(env, dst, &is_dir, &have, err);
        if (rc == SHALE_OK && !is_dir && have == size) {
            memcpy(f->sha, ref->sha, BACKUP_SHA);
            *is_new = false;
            return env->remove_file(env, src, err); /* the checkpoint's link */
        }
        if (rc != SHALE_OK && rc != SHALE_NOT_FOUND) {
            return rc;
        }
    }
    /* Missing, or not what an earlier backup wrote: copy, and replace any file there. */
    rc = copy_hashed(env, src, tmp, ENV_TRUNC, buf, &have, f->sha, err);
    if (rc == SHALE_OK && have != size) {
        rc = err_set(err, SHALE_CORRUPTION, 0,
                     "%s: %" PRIu64 " bytes, the checkpoint's manifest says %" PRIu64, src, have,
                     size);
    }
    if (rc == SHALE_OK) {
        rc = env->rename_file(env, tmp, dst, err);
    }
    if (rc != SHALE_OK) {
        (void)env->remove_file(env, tmp, NULL);
        return rc;
    }
    *is_new = true;
    return env->remove_file(env, src, err);
}

/* Hashes a small file of the checkpoint into the manifest (it is new: written by this backup). */
static shale_code add_small_file(const shale_env *env, const char *ckpt, const char *name,
                                 uint8_t *buf, backup_manifest *m, shale_error *err)
{
    char path[BK_PATH];
    backup_file f;
    memset(&f, 0, sizeof f);
    f.where = BACKUP_WHERE_DIR;
    snprintf(f.name, sizeof f.name, "%s", name);
    shale_code rc = pathf(path, err, "%s/%s", ckpt, name);
    if (rc == SHALE_OK) {
        rc = copy_hashed(env, path, NULL, 0, buf, &f.size, f.sha, err);
    }
    if (rc == SHALE_OK) {
        rc = backup_manifest_add(m, &f, err);
    }
    if (rc == SHALE_OK) {
        m->new_files++;
        m->new_bytes += f.size;
    }
    return rc;
}

/* Makes sure dest is a destination of `identity` (creating it), returns its next id. Called
 * before the lock (nothing written into a foreign directory) and again under it. */
static shale_code dest_prepare(const shale_env *env, const char *dest,
                               const uint8_t identity[BACKUP_ID_BYTES], bool create,
                               uint64_t *next_id, shale_error *err)
{
    uint8_t have[BACKUP_ID_BYTES];
    shale_code rc = dest_read(env, dest, next_id, have, err);

    if (rc == SHALE_OK) {
        if (memcmp(have, identity, BACKUP_ID_BYTES) != 0) {
            return err_set(err, SHALE_INVALID, 0,
                           "%s: holds the backups of another database (" BACKUP_DEST_FILE
                           " names another identity)",
                           dest);
        }
        return SHALE_OK;
    }
    if (rc != SHALE_NOT_FOUND) {
        return rc;
    }
    char **names = NULL;
    size_t count = 0;
    rc = env->list_dir(env, dest, &names, &count, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    for (size_t i = 0; i < count && rc == SHALE_OK; i++) {
        if (strcmp(names[i], "LOCK") != 0 && strcmp(names[i], BACKUP_DEST_FILE ".tmp") != 0) {
            rc = err_set(
                err, SHALE_INVALID, 0,
                "%s: not empty and not a backup destination (holds %s, no " BACKUP_DEST_FILE ")",
                dest, names[i]);
        }
    }
    env_free_names(names, count);
    if (rc != SHALE_OK) {
        return rc;
    }
    *next_id = 1;
    return create ? dest_write(env, dest, 1, identity, err) : SHALE_OK;
}

static shale_code backup_locked(shale_db *db, const char *dest,
                                const uint8_t identity[BACKUP_ID_BYTES], uint8_t *buf,
                                backup_manifest *m, shale_error *err)
{
    const shale_env *env = db->env;
    char path[BK_PATH], ckpt[BK_PATH], manifest_name[64];
    uint64_t next_id = 0;
    bk_scan scan = {0};
    bk_refs refs = {0};
    version_edit snap;
    bool have_snap = false, ckpt_made = false;
    shale_code rc = dest_prepare(env, dest, identity, true, &next_id, err);

    if (rc == SHALE_OK) {
        rc = pathf(path, err, "%s/" BACKUP_TABLES, dest);
    }
    if (rc == SHALE_OK) {
        rc = env->mkdir(env, path, err);
    }
    if (rc == SHALE_OK) {
        rc = env->sync_dir(env, dest, err);
    }
    if (rc == SHALE_OK) {
        rc = scan_dest(env, dest, identity, &scan, err);
    }
    if (rc != SHALE_OK) {
        goto out;
    }
    const bk_item *bad = first_damaged(&scan);
    if (bad != NULL) {
        rc = err_set(err, SHALE_CORRUPTION, 0, "%s (delete backup %" PRIu64 " first)",
                     bad->error.msg, bad->id);
        goto out;
    }
    rc = refs_build(&scan, &refs, err);
    if (rc == SHALE_OK) {
        rc = collect_garbage(env, dest, &scan, &refs, err);
    }
    if (rc != SHALE_OK) {
        goto out;
    }
    uint64_t id = next_id;
    if (scan.n > 0 && scan.items[scan.n - 1].id >= id) {
        id = scan.items[scan.n - 1].id + 1;
    }
    rc = dest_write(env, dest, id + 1, identity, err);
    if (rc == SHALE_OK) {
        rc = pathf(ckpt, err, "%s/%06" PRIu64, dest, id);
    }
    if (rc != SHALE_OK) {
        goto out;
    }
    rc = shale_checkpoint(db, ckpt, err);
    ckpt_made = rc == SHALE_OK;
    if (rc != SHALE_OK) {
        /* A checkpoint that failed midway leaves its directory: ours to remove. */
        bool is_dir;
        uint64_t size;
        ckpt_made = env->stat_path(env, ckpt, &is_dir, &size, NULL) == SHALE_OK;
        goto out;
    }
    version_edit_init(&snap);
    have_snap = true;
    rc = read_snapshot(env, ckpt, manifest_name, sizeof manifest_name, &snap, err);
    if (rc != SHALE_OK) {
        goto out;
    }
    memset(m, 0, sizeof *m);
    m->id = id;
    m->seq = snap.has_flushed_seq ? snap.flushed_seq : 0;
    m->created_at_ms = env->now_ms(env);
    memcpy(m->identity, identity, BACKUP_ID_BYTES);
    rc = add_small_file(env, ckpt, "SHALE", buf, m, err);
    if (rc == SHALE_OK) {
        rc = add_small_file(env, ckpt, manifest_name, buf, m, err);
    }
    bool any_new = false;
    for (size_t i = 0; i < snap.nadded && rc == SHALE_OK; i++) {
        const file_meta *meta = snap.added[i].meta;
        backup_file f;
        bool is_new = false;
        rc = place_table(env, dest, ckpt, meta->number, meta->size, &refs, buf, &f, &is_new, err);
        if (rc == SHALE_OK) {
            rc = backup_manifest_add(m, &f, err);
        }
        if (rc == SHALE_OK && is_new) {
            any_new = true;
            m->new_files++;
            m->new_bytes += f.size;
        }
    }
    if (rc == SHALE_OK) {
        rc = add_small_file(env, ckpt, "CURRENT", buf, m, err);
    }
    /* The new tables' names, then the removal of the checkpoint's links, become durable before
     * BACKUP names them. */
    if (rc == SHALE_OK && any_new) {
        rc = env->sync_dir(env, path, err);
    }
    if (rc == SHALE_OK) {
        rc = env->sync_dir(env, ckpt, err);
    }
    if (rc == SHALE_OK) {
        shale_buf enc = {0};
        rc = backup_manifest_encode(m, &enc, err);
        if (rc == SHALE_OK) {
            rc = env_write_file_atomic(env, ckpt, BACKUP_FILE, enc.data, enc.len, err);
        }
        buf_free(&enc);
    }
out:
    if (rc != SHALE_OK && ckpt_made) {
        (void)remove_tree(env, ckpt, NULL, NULL); /* best effort; the next backup otherwise */
    }
    if (have_snap) {
        version_edit_free(&snap);
    }
    free(refs.v);
    scan_free(&scan);
    return rc;
}

static void info_of(const backup_manifest *m, shale_backup_info *out)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < m->nfiles; i++) {
        bytes += m->files[i].size;
    }
    *out = (shale_backup_info){.id = m->id,
                               .seq = m->seq,
                               .created_at_ms = m->created_at_ms,
                               .files = m->nfiles,
                               .bytes = bytes,
                               .new_files = m->new_files,
                               .new_bytes = m->new_bytes};
}

shale_code shale_backup(shale_db *db, const char *dest, shale_backup_info *info, shale_error *err)
{
    char path[BK_PATH];
    void *id_data = NULL;
    size_t id_len = 0;
    uint64_t next_id;
    env_lock *lock = NULL;
    uint8_t *buf = NULL;
    backup_manifest m = {0};
    /* Read-only: a backup flushes the memtable first, and that writes a table. */
    shale_code rc = db_check_writable(db, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    if (dest == NULL || dest[0] == '\0') {
        return err_set(err, SHALE_INVALID, 0, "shale_backup: empty destination path");
    }
    const shale_env *env = db->env;
    rc = pathf(path, err, "%s/SHALE", db->path);
    if (rc == SHALE_OK) {
        rc = env_read_file(env, path, 4096, &id_data, &id_len, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    if (id_len != BACKUP_ID_BYTES) {
        free(id_data);
        return err_set(err, SHALE_CORRUPTION, 0, "%s: %zu bytes, not a Shale identity file", path,
                       id_len);
    }
    uint8_t identity[BACKUP_ID_BYTES];
    memcpy(identity, id_data, BACKUP_ID_BYTES);
    free(id_data);

    rc = make_dir(env, dest, err);
    if (rc == SHALE_OK) {
        rc = dest_prepare(env, dest, identity, false, &next_id, err);
    }
    if (rc == SHALE_OK) {
        rc = dest_lock(env, dest, &lock, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    buf = malloc(BK_CHUNK);
    if (buf == NULL) {
        rc = err_nomem(err);
    } else {
        rc = backup_locked(db, dest, identity, buf, &m, err);
    }
    free(buf);
    dest_unlock(env, lock);
    if (rc == SHALE_OK) {
        shale_backup_info bi;
        info_of(&m, &bi);
        if (info != NULL) {
            *info = bi;
        }
        db_log(db,
               "backup %" PRIu64 " to %s: seq %" PRIu64 ", %zu files (%" PRIu64 " bytes), %" PRIu64
               " new (%" PRIu64 " bytes)",
               m.id, dest, m.seq, m.nfiles, bi.bytes, m.new_files, m.new_bytes);
    } else {
        db_log(db, "backup to %s failed: %s", dest, err ? err->msg : "");
    }
    backup_manifest_free(&m);
    return rc;
}

/* ---- list ---- */

shale_code shale_backup_list(const char *dest, shale_backup_info **out, size_t *count,
                             shale_error *err)
{
    const shale_env *env = env_posix();
    bk_scan scan;

    if (out == NULL || count == NULL) {
        return err_set(err, SHALE_INVALID, 0, "shale_backup_list: NULL argument");
    }
    *out = NULL;
    *count = 0;
    shale_code rc = dest_scan(env, dest, NULL, &scan, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    const bk_item *bad = first_damaged(&scan);
    if (bad != NULL) {
        rc = err_copy(err, &bad->error);
        scan_free(&scan);
        return rc;
    }
    size_t n = 0;
    for (size_t i = 0; i < scan.n; i++) {
        n += scan.items[i].state == BK_COMPLETE;
    }
    if (n > 0) {
        *out = calloc(n, sizeof **out);
        if (*out == NULL) {
            scan_free(&scan);
            return err_nomem(err);
        }
        for (size_t i = 0; i < scan.n; i++) {
            if (scan.items[i].state == BK_COMPLETE) {
                info_of(&scan.items[i].m, &(*out)[(*count)++]);
            }
        }
    }
    scan_free(&scan);
    return SHALE_OK;
}

/* ---- verify ---- */

/* Checks every file of m; tables already in `done` (verified names, may be NULL) are skipped
 * and newly verified ones added. */
static shale_code verify_manifest(const shale_env *env, const char *dest, const backup_manifest *m,
                                  uint8_t *buf, bk_refs *done, shale_error *err)
{
    char path[BK_PATH];
    shale_code rc = SHALE_OK;

    for (size_t i = 0; i < m->nfiles && rc == SHALE_OK; i++) {
        const backup_file *f = &m->files[i];
        char name[BACKUP_STORED_NAME] = "";
        if (f->where == BACKUP_WHERE_TABLES && done != NULL) {
            backup_stored_name(name, f);
            bool seen = false;
            for (size_t j = 0; j < done->n && !seen; j++) {
                seen = strcmp(done->v[j].name, name) == 0 &&
                       memcmp(done->v[j].sha, f->sha, BACKUP_SHA) == 0;
            }
            if (seen) {
                continue;
            }
        }
        rc = file_path(path, dest, m->id, f, err);
        if (rc == SHALE_OK) {
            rc = check_file(env, path, f->size, f->sha, buf, err);
        }
        if (rc == SHALE_OK && done != NULL && name[0] != '\0') {
            bk_ref *v = realloc(done->v, (done->n + 1) * sizeof *v);
            if (v == NULL) {
                return err_nomem(err);
            }
            done->v = v;
            memset(&v[done->n], 0, sizeof v[done->n]);
            snprintf(v[done->n].name, sizeof v[done->n].name, "%s", name);
            memcpy(v[done->n].sha, f->sha, BACKUP_SHA);
            done->n++;
        }
    }
    return rc;
}

shale_code shale_backup_verify(const char *dest, uint64_t id, shale_error *err)
{
    const shale_env *env = env_posix();
    bk_scan scan;
    bk_refs done = {0};
    uint8_t *buf = NULL;
    shale_code rc = dest_scan(env, dest, NULL, &scan, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    buf = malloc(BK_CHUNK);
    if (buf == NULL) {
        rc = err_nomem(err);
        goto out;
    }
    if (id != 0) {
        bk_item *it = NULL;
        rc = scan_pick(&scan, dest, id, &it, err);
        if (rc == SHALE_OK) {
            rc = verify_manifest(env, dest, &it->m, buf, NULL, err);
        }
        goto out;
    }
    for (size_t i = 0; i < scan.n && rc == SHALE_OK; i++) {
        const bk_item *it = &scan.items[i];
        if (it->state == BK_DAMAGED) {
            rc = err_copy(err, &it->error);
        } else if (it->state == BK_COMPLETE) {
            rc = verify_manifest(env, dest, &it->m, buf, &done, err);
        }
    }
out:
    free(buf);
    free(done.v);
    scan_free(&scan);
    return rc;
}

/* ---- delete and purge ---- */

/* Removes backup directory `id`: BACKUP first (so a crash leaves an incomplete directory, never
 * a listed backup with files missing), then the rest. */
static shale_code remove_backup(const shale_env *env, const char *dest, uint64_t id,
                                shale_error *err)
{
    char path[BK_PATH];
    shale_code rc = pathf(path, err, "%s/%06" PRIu64, dest, id);
    return rc != SHALE_OK ? rc : remove_tree(env, path, BACKUP_FILE, err);
}

/* Deletes every backup with id in `victims` (sorted), then collects garbage. Every other backup
 * must be readable. */
static shale_code delete_backups(const char *dest, const uint64_t *victims, size_t nvictims,
                                 bk_scan *scan, const shale_env *env, shale_error *err)
{
    shale_code rc = SHALE_OK;

    for (size_t i = 0; i < scan->n; i++) {
        bk_item *it = &scan->items[i];
        bool victim = false;
        for (size_t j = 0; j < nvictims; j++) {
            victim |= victims[j] == it->id;
        }
        if (it->state == BK_DAMAGED && !victim) {
            return err_set(err, SHALE_CORRUPTION, 0,
                           "%s (nothing deleted: the tables it lists are unknown; delete backup "
                           "%" PRIu64 " too)",
                           it->error.msg, it->id);
        }
    }
    for (size_t i = 0; i < nvictims && rc == SHALE_OK; i++) {
        rc = remove_backup(env, dest, victims[i], err);
        bk_item *it = scan_find(scan, victims[i]);
        if (rc == SHALE_OK && it != NULL) {
            backup_manifest_free(&it->m);
            it->state = BK_INCOMPLETE; /* gone: nothing of it is listed any more */
        }
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    /* Directories already removed above are skipped by remove_tree (not found). */
    bk_refs refs = {0};
    rc = refs_build(scan, &refs, err);
    if (rc == SHALE_OK) {
        rc = collect_garbage(env, dest, scan, &refs, err);
    }
    free(refs.v);
    return rc;
}

shale_code shale_backup_delete(const char *dest, uint64_t id, shale_error *err)
{
    const shale_env *env = env_posix();
    env_lock *lock = NULL;
    bk_scan scan;
    shale_code rc = dest_scan(env, dest, &lock, &scan, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    bk_item *it = scan_find(&scan, id);
    if (id == 0 || it == NULL || it->state == BK_INCOMPLETE) {
        rc = err_set(err, SHALE_NOT_FOUND, 0, "%s: backup %" PRIu64 " not found", dest, id);
    } else {
        rc = delete_backups(dest, &id, 1, &scan, env, err);
    }
    scan_free(&scan);
    dest_unlock(env, lock);
    return rc;
}

shale_code shale_backup_purge(const char *dest, uint32_t keep, shale_error *err)
{
    const shale_env *env = env_posix();
    env_lock *lock = NULL;
    bk_scan scan;
    size_t nvictims = 0, backups = 0;

    if (keep < 1) {
        return err_set(err, SHALE_INVALID, 0, "shale_backup_purge: keep must be at least 1");
    }
    shale_code rc = dest_scan(env, dest, &lock, &scan, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    for (size_t i = 0; i < scan.n; i++) {
        backups += scan.items[i].state != BK_INCOMPLETE;
    }
    uint64_t *victims = calloc(scan.n ? scan.n : 1, sizeof *victims);
    if (victims == NULL) {
        rc = err_nomem(err);
    }
    /* Oldest first: every backup but the newest `keep` (damaged ones count as backups). */
    for (size_t i = 0; i < scan.n && rc == SHALE_OK && backups > keep; i++) {
        if (scan.items[i].state != BK_INCOMPLETE) {
            victims[nvictims++] = scan.items[i].id;
            backups--;
        }
    }
    if (rc == SHALE_OK) {
        rc = delete_backups(dest, victims, nvictims, &scan, env, err);
    }
    free(victims);
    scan_free(&scan);
    dest_unlock(env, lock);
    return rc;
}

/* ---- restore ---- */

/* Prepares dir for a restore and locks it: created if missing; else it must be empty (LOCK
 * aside) or, with overwrite, a Shale database, which is then emptied (CURRENT first). */
static shale_code restore_prepare(const shale_env *env, const char *dir, bool overwrite,
                                  env_lock **lock, shale_error *err)
{
    bool is_dir = false;
    uint64_t size;
    char path[BK_PATH];
    char **names = NULL;
    size_t count = 0;
    shale_code rc = make_dir(env, dir, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    /* Look before taking the lock (which creates LOCK), and again under it. */
    for (int pass = 0; pass < 2 && rc == SHALE_OK; pass++) {
        if (pass == 1) {
            rc = pathf(path, err, "%s/LOCK", dir);
            if (rc == SHALE_OK) {
                rc = env->lock_file(env, path, lock, err);
            }
            if (rc == SHALE_BUSY) {
                rc = err_set(err, SHALE_BUSY, EWOULDBLOCK, "%s: the database there is open", dir);
            }
            if (rc != SHALE_OK) {
                break;
            }
        }
        rc = env->list_dir(env, dir, &names, &count, err);
        if (rc != SHALE_OK) {
            break;
        }
        bool empty = true, has_identity = false, has_subdir = false;
        for (size_t i = 0; i < count && rc == SHALE_OK; i++) {
            if (strcmp(names[i], "LOCK") == 0) {
                continue;
            }
            empty = false;
            has_identity |= strcmp(names[i], "SHALE") == 0;
            rc = pathf(path, err, "%s/%s", dir, names[i]);
            if (rc == SHALE_OK && env->stat_path(env, path, &is_dir, &size, NULL) == SHALE_OK) {
                has_subdir |= is_dir;
            }
        }
        if (rc == SHALE_OK && !empty && !overwrite) {
            rc =
                err_set(err, SHALE_INVALID, 0,
                        "%s: not empty (restore into a new or empty directory, or overwrite)", dir);
        } else if (rc == SHALE_OK && !empty && (!has_identity || has_subdir)) {
            rc = err_set(err, SHALE_INVALID, 0,
                         "%s: not a Shale database (%s); refusing to overwrite it", dir,
                         has_subdir ? "holds a directory" : "no SHALE file");
        }
        if (rc == SHALE_OK && pass == 1 && !empty) {
            /* CURRENT first: from then on the directory no longer opens as the old database. */
            rc = remove_files(env, dir, names, count, "CURRENT", "LOCK", err);
            if (rc == SHALE_OK) {
                rc = env->sync_dir(env, dir, err);
            }
        }
        env_free_names(names, count);
        names = NULL;
        count = 0;
    }
    if (rc != SHALE_OK && *lock != NULL) {
        (void)env->unlock_file(env, *lock, NULL);
        *lock = NULL;
    }
    return rc;
}

/* What was copied from src (size bytes, digest sha) must be what the manifest lists as f. */
static shale_code check_restored(const char *src, uint64_t size, const uint8_t sha[BACKUP_SHA],
                                 const backup_file *f, shale_error *err)
{
    if (size != f->size || memcmp(sha, f->sha, BACKUP_SHA) != 0) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: changed while being restored", src);
    }
    return SHALE_OK;
}

static shale_code restore_files(const shale_env *env, const char *dest, const backup_manifest *m,
                                const char *dir, uint8_t *buf, shale_error *err)
{
    char src[BK_PATH], dst[BK_PATH];
    const backup_file *current = NULL;
    shale_code rc = SHALE_OK;

    for (size_t i = 0; i < m->nfiles && rc == SHALE_OK; i++) {
        const backup_file *f = &m->files[i];
        uint64_t size = 0;
        uint8_t sha[BACKUP_SHA];
        if (strcmp(f->name, "CURRENT") == 0) {
            current = f;
            continue;
        }
        rc = file_path(src, dest, m->id, f, err);
        if (rc == SHALE_OK) {
            rc = pathf(dst, err, "%s/%s", dir, f->name);
        }
        if (rc == SHALE_OK) {
            rc = copy_hashed(env, src, dst, ENV_EXCL, buf, &size, sha, err);
        }
        if (rc == SHALE_OK) {
            rc = check_restored(src, size, sha, f, err);
        }
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = env->sync_dir(env, dir, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    /* CURRENT last, atomically: the directory opens only once everything it names is durable. */
    void *data = NULL;
    size_t len = 0;
    uint8_t sha[BACKUP_SHA];
    rc = file_path(src, dest, m->id, current, err);
    if (rc == SHALE_OK) {
        rc = env_read_file(env, src, BK_CURRENT_BYTES, &data, &len, err);
    }
    if (rc == SHALE_OK) {
        rc = sha_buffer(data, len, sha, err);
    }
    if (rc == SHALE_OK) {
        rc = check_restored(src, len, sha, current, err);
    }
    if (rc == SHALE_OK) {
        rc = env_write_file_atomic(env, dir, "CURRENT", data, len, err);
    }
    if (rc == SHALE_OK) {
        rc = env_sync_parent(env, dir, err);
    }
    free(data);
    return rc;
}

shale_code shale_restore(const char *dest, uint64_t id, const char *dir, bool overwrite,
                         shale_error *err)
{
    const shale_env *env = env_posix();
    bk_scan scan;
    env_lock *lock = NULL;
    uint8_t *buf = NULL;
    bk_item *it = NULL;

    if (dir == NULL || dir[0] == '\0') {
        return err_set(err, SHALE_INVALID, 0, "shale_restore: empty directory path");
    }
    shale_code rc = dest_scan(env, dest, NULL, &scan, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = scan_pick(&scan, dest, id, &it, err);
    if (rc != SHALE_OK) {
        goto out;
    }
    buf = malloc(BK_CHUNK);
    if (buf == NULL) {
        rc = err_nomem(err);
        goto out;
    }
    rc = verify_manifest(env, dest, &it->m, buf, NULL, err);
    if (rc == SHALE_OK) {
        rc = restore_prepare(env, dir, overwrite, &lock, err);
    }
    if (rc == SHALE_OK) {
        rc = restore_files(env, dest, &it->m, dir, buf, err);
    }
    if (lock != NULL) {
        (void)env->unlock_file(env, lock, NULL);
    }
out:
    free(buf);
    scan_free(&scan);
    return rc;
}
