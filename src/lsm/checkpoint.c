/*
 * checkpoint: shale_checkpoint, a consistent and openable copy of a live database.
 *
 * Method: flush the memtable (so every write acknowledged before the call is in a table), then,
 * with obsolete-file deletion paused, take the current version and encode a snapshot of the
 * state under bg_mu (no edit can be applied meanwhile), and write: the identity file (copied), a
 * manifest holding only that snapshot (same number as the source's live manifest), every table
 * of the version (hard-linked when the file system allows: tables are immutable), and a fresh
 * CURRENT. No log is copied: the flush made the log tail unnecessary, and the snapshot's
 * log_number says so. Every file is fsynced, then the directory, then its parent, before the call
 * returns. Writes and compactions go on meanwhile; only deletions wait.
 *
 * Why a fresh snapshot and not a copy of the source manifest: the source keeps the files its
 * state before the last edit needs (version.h: a damaged final record is taken for a torn one),
 * but a checkpoint holds only the current version's tables and no log. A copied manifest whose
 * last edit got damaged would fall back to a state whose files the checkpoint lacks. A manifest
 * that is one snapshot has no earlier state to fall back to, and a damaged snapshot is reported
 * as corruption at open.
 *
 * Failure: a checkpoint that fails removes every file it put in `dir` (best effort; the empty
 * directory stays, as the env has no rmdir), so that a half-made copy never opens: with the
 * identity file but no CURRENT it would open as an EMPTY database, silently missing the data.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "lsm/db_impl.h"
#include "wal/wal_writer.h"

#define CHECKPOINT_COPY_CHUNK ((size_t)1 << 20)

/* Copies the first `limit` bytes of src (UINT64_MAX: all) into the new file dst, synced. */
static shale_code copy_file(const shale_env *env, const char *src, const char *dst, uint64_t limit,
                            shale_error *err)
{
    env_file *in = NULL, *out = NULL;
    char *buf = malloc(CHECKPOINT_COPY_CHUNK);
    uint64_t off = 0;
    shale_code rc;

    if (buf == NULL) {
        return err_nomem(err);
    }
    rc = env->open_file(env, src, ENV_READ, &in, err);
    if (rc != SHALE_OK) {
        goto out;
    }
    rc = env->open_file(env, dst, ENV_WRITE | ENV_CREATE | ENV_EXCL, &out, err);
    if (rc != SHALE_OK) {
        goto out;
    }
    while (off < limit) {
        size_t want =
            limit - off < CHECKPOINT_COPY_CHUNK ? (size_t)(limit - off) : CHECKPOINT_COPY_CHUNK;
        size_t got = 0;
        rc = in->ops->read_at(in, off, buf, want, &got, err);
        if (rc != SHALE_OK) {
            goto out;
        }
        if (got == 0) {
            break;
        }
        rc = env_file_append(out, buf, got, err);
        if (rc != SHALE_OK) {
            goto out;
        }
        off += got;
    }
    if (limit != UINT64_MAX && off != limit) {
        rc =
            err_set(err, SHALE_IO, 0, "%s: shorter (%" PRIu64 " bytes) than expected (%" PRIu64 ")",
                    src, off, limit);
        goto out;
    }
    rc = env_file_sync(out, false, err);
out:
    if (in != NULL) {
        (void)env_file_close(in, NULL);
    }
    if (out != NULL) {
        shale_code crc = env_file_close(out, rc == SHALE_OK ? err : NULL);
        if (rc == SHALE_OK) {
            rc = crc;
        }
    }
    free(buf);
    return rc;
}

/* Best effort: removes the files of a failed checkpoint from dir (SHALE first: without it the
 * directory is no database), then syncs dir so the removal of CURRENT, if written, is durable. */
static void undo_checkpoint(shale_db *db, const char *dir)
{
    char **names = NULL;
    size_t count = 0;
    char path[4096];

    snprintf(path, sizeof path, "%s/SHALE", dir);
    (void)db->env->remove_file(db->env, path, NULL);
    if (db->env->list_dir(db->env, dir, &names, &count, NULL) == SHALE_OK) {
        for (size_t i = 0; i < count; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            (void)db->env->remove_file(db->env, path, NULL);
        }
        env_free_names(names, count);
    }
    (void)db->env->sync_dir(db->env, dir, NULL);
}

/* dir/MANIFEST-<number>: the header, then the one record `snap`, synced (wal_writer_create syncs
 * the directory entry). */
static shale_code write_manifest(const shale_env *env, const char *dir, uint64_t number,
                                 const shale_buf *snap, shale_error *err)
{
    char name[64];
    wal_writer *w = NULL;

    snprintf(name, sizeof name, "MANIFEST-%06" PRIu64, number);
    shale_code rc = wal_writer_create(env, dir, name, number, &w, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = wal_writer_add(w, snap->data, snap->len, err);
    shale_code crc = wal_writer_close(w, rc == SHALE_OK, rc == SHALE_OK ? err : NULL);
    return rc != SHALE_OK ? rc : crc;
}

static shale_code place_table(shale_db *db, const char *dir, uint64_t number, shale_error *err)
{
    char src[4096], dst[4096];

    version_table_name(src, sizeof src, db->path, number);
    version_table_name(dst, sizeof dst, dir, number);
    shale_code rc = db->env->link_file(db->env, src, dst, err);
    if (rc == SHALE_INVALID) {
        rc = copy_file(db->env, src, dst, UINT64_MAX, err); /* another file system */
    }
    return rc;
}

shale_code shale_checkpoint(shale_db *db, const char *dir, shale_error *err)
{
    bool is_dir;
    uint64_t size;
    char src[4096], dst[4096];
    /* Read-only: a checkpoint flushes the memtable first, and that writes a table. */
    shale_code rc = db_check_writable(db, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    if (dir == NULL || dir[0] == '\0') {
        return err_set(err, SHALE_INVALID, 0, "shale_checkpoint: empty directory name");
    }
    rc = db->env->stat_path(db->env, dir, &is_dir, &size, err);
    if (rc == SHALE_OK) {
        return err_set(err, SHALE_INVALID, 0,
                       "%s: already exists (a checkpoint needs a new directory)", dir);
    }
    if (rc != SHALE_NOT_FOUND) {
        return rc;
    }
    rc = flush_now(db, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = db->env->mkdir(db->env, dir, err);
    if (rc != SHALE_OK) {
        return rc;
    }

    snprintf(src, sizeof src, "%s/SHALE", db->path);
    snprintf(dst, sizeof dst, "%s/SHALE", dir);
    rc = copy_file(db->env, src, dst, UINT64_MAX, err);

    /* The snapshot is encoded under bg_mu: no edit is applied meanwhile, so it describes exactly
     * version v. */
    shale_buf snap = {0};
    pthread_mutex_lock(&db->bg_mu);
    db->deletions_disabled++;
    version *v = version_set_current(db->vs);
    uint64_t manifest = version_set_manifest_number(db->vs);
    if (rc == SHALE_OK) {
        rc = version_set_snapshot_record(db->vs, &snap, err);
    }
    pthread_mutex_unlock(&db->bg_mu);
    if (rc == SHALE_OK) {
        rc = write_manifest(db->env, dir, manifest, &snap, err);
    }
    uint64_t manifest_len = snap.len;
    buf_free(&snap);
    for (int level = 0; level < VERSION_LEVELS && rc == SHALE_OK; level++) {
        for (size_t i = 0; i < v->nfiles[level] && rc == SHALE_OK; i++) {
            rc = place_table(db, dir, v->files[level][i]->number, err);
        }
    }
    if (rc == SHALE_OK) {
        /* Every file above is synced; their directory entries become durable here, before
         * CURRENT (written atomically, with its own directory sync) makes the copy openable. */
        rc = db->env->sync_dir(db->env, dir, err);
    }
    if (rc == SHALE_OK) {
        char current[64];
        version_manifest_name(current, sizeof current - 1, ".", manifest);
        size_t n = strlen(current);
        memmove(current, current + 2, n - 1); /* drop "./" */
        n -= 2;
        current[n++] = '\n';
        rc = env_write_file_atomic(db->env, dir, "CURRENT", current, n, err);
    }
    if (rc == SHALE_OK) {
        rc = env_sync_parent(db->env, dir, err);
    }

    pthread_mutex_lock(&db->bg_mu);
    db->deletions_disabled--;
    pthread_mutex_unlock(&db->bg_mu);
    version_unref(v);
    if (rc == SHALE_OK) {
        db_log(db, "checkpoint: %s (manifest %" PRIu64 ", a %" PRIu64 "-byte snapshot)", dir,
               manifest, manifest_len);
    } else {
        db_log(db, "checkpoint to %s failed (its files removed): %s", dir, err ? err->msg : "");
        undo_checkpoint(db, dir);
    }
    return rc;
}
