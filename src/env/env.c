/*
 * env.c: the helpers of env.h that work on any shale_env (atomic pointer-file writes, whole-file
 * reads, exact reads). They use only the env's operations, so env_fault sees every step.
 */
#include "env/env.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

void env_free_names(char **names, size_t count)
{
    if (names == NULL) {
        return;
    }
    for (size_t i = 0; i < count; i++) {
        free(names[i]);
    }
    free(names);
}

shale_code env_sync_parent(const shale_env *env, const char *path, shale_error *err)
{
    char *parent = strdup(path);

    if (parent == NULL) {
        return err_nomem(err);
    }
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/') {
        parent[--n] = '\0';
    }
    char *slash = strrchr(parent, '/');
    if (slash == NULL) {
        strcpy(parent, ".");
    } else if (slash == parent) {
        parent[1] = '\0';
    } else {
        *slash = '\0';
    }
    shale_code rc = env->sync_dir(env, parent, err);
    free(parent);
    return rc;
}

shale_code env_file_close(env_file *f, shale_error *err)
{
    if (f == NULL) {
        return SHALE_OK;
    }
    return f->ops->close(f, err);
}

shale_code env_read_exact(env_file *f, uint64_t off, void *buf, size_t n, shale_error *err)
{
    size_t got = 0;
    shale_code rc = env_file_read_at(f, off, buf, n, &got, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    if (got < n) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s @%" PRIu64 ": truncated: read %zu of %zu bytes", env_file_name(f), off,
                       got, n);
    }
    return SHALE_OK;
}

/* dir + "/" + name + suffix, malloc'ed; NULL when out of memory. */
static char *join(const char *dir, const char *name, const char *suffix)
{
    size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 2;
    char *p = malloc(n);

    if (p != NULL) {
        snprintf(p, n, "%s/%s%s", dir, name, suffix);
    }
    return p;
}

char *env_join_path(const char *dir, const char *name)
{
    return join(dir, name, "");
}

shale_code env_write_file_atomic(const shale_env *env, const char *dir, const char *name,
                                 const void *data, size_t n, shale_error *err)
{
    char *tmp = join(dir, name, ".tmp");
    char *dst = join(dir, name, "");
    env_file *f = NULL;
    shale_code rc;

    if (tmp == NULL || dst == NULL) {
        rc = err_nomem(err);
        goto out_free;
    }
    rc = env->open_file(env, tmp, ENV_WRITE | ENV_CREATE | ENV_TRUNC, &f, err);
    if (rc != SHALE_OK) {
        goto out_free;
    }
    rc = env_file_append(f, data, n, err);
    if (rc == SHALE_OK) {
        rc = env_file_sync(f, false, err);
    }
    if (rc != SHALE_OK) {
        (void)env_file_close(f, NULL);
        goto out_remove_tmp;
    }
    rc = env_file_close(f, err);
    if (rc != SHALE_OK) {
        goto out_remove_tmp;
    }
    rc = env->rename_file(env, tmp, dst, err);
    if (rc != SHALE_OK) {
        goto out_remove_tmp;
    }
    /* Past the rename the tmp file is gone; a failed directory sync leaves the new content in
     * place but not durable, and the caller must treat that as a failed write. */
    rc = env->sync_dir(env, dir, err);
    goto out_free;

out_remove_tmp:
    (void)env->remove_file(env, tmp, NULL); /* best effort: the first error is the one to report */
out_free:
    free(tmp);
    free(dst);
    return rc;
}

shale_code env_read_file(const shale_env *env, const char *path, size_t max_bytes, void **out,
                         size_t *out_len, shale_error *err)
{
    env_file *f = NULL;
    void *buf = NULL;
    uint64_t size = 0;
    shale_code rc;

    rc = env->open_file(env, path, ENV_READ, &f, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = env_file_size(f, &size, err);
    if (rc != SHALE_OK) {
        goto out_close;
    }
    if (size > max_bytes) {
        rc = err_set(err, SHALE_CORRUPTION, 0, "%s: %" PRIu64 " bytes, more than the %zu allowed",
                     path, size, max_bytes);
        goto out_close;
    }
    buf = malloc(size > 0 ? (size_t)size : 1);
    if (buf == NULL) {
        rc = err_nomem(err);
        goto out_close;
    }
    rc = env_read_exact(f, 0, buf, (size_t)size, err);
    if (rc != SHALE_OK) {
        goto out_close;
    }
    rc = env_file_close(f, err);
    f = NULL;
    if (rc != SHALE_OK) {
        goto out_close;
    }
    *out = buf;
    *out_len = (size_t)size;
    return SHALE_OK;

out_close:
    (void)env_file_close(f, NULL);
    free(buf);
    return rc;
}
