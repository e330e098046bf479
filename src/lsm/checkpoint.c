/*
 * checkpoint: shale_checkpoint, a consistent and openable copy of a live database.
 *
 * Method: flush the memtable (so every write acknowledged before the call is in a table), then,
 * with obsolete-file deletion paused, take the current version and the manifest's length under
 * bg_mu (no edit can be half-appended then), and copy: the identity file, the manifest's first
 * `length` bytes (which describe exactly that version), every table of the version (hard-linked
 * when the file system allows: tables are immutable), and a fresh CURRENT. No log is copied: the
 * flush made the log tail unnecessary, and the copied manifest's log_number says so.
 * Every file is fsynced, then the directory, then its parent, before the call returns.
 * Writes and compactions go on meanwhile; only deletions wait.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "lsm/db_impl.h"

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
    shale_code rc = db_check_open(db, err);

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

    /* The manifest is copied under bg_mu: no edit is appended meanwhile and no roll-over removes
     * it, so the copy describes exactly version v. */
    pthread_mutex_lock(&db->bg_mu);
    db->deletions_disabled++;
    version *v = version_set_current(db->vs);
    uint64_t manifest = version_set_manifest_number(db->vs);
    uint64_t manifest_len = version_set_manifest_bytes(db->vs);
    if (rc == SHALE_OK) {
        version_manifest_name(src, sizeof src, db->path, manifest);
        version_manifest_name(dst, sizeof dst, dir, manifest);
        rc = copy_file(db->env, src, dst, manifest_len, err);
    }
    pthread_mutex_unlock(&db->bg_mu);
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
        db_log(db, "checkpoint: %s (manifest %" PRIu64 ", %" PRIu64 " bytes)", dir, manifest,
               manifest_len);
    } else {
        db_log(db, "checkpoint to %s failed: %s", dir, err ? err->msg : "");
    }
    return rc;
}
