/*
 * env_posix: the real OS behind the env seam, with plain POSIX calls only (see env.h for the
 * contract). Appends use O_APPEND, so a write after a truncate lands at the new end of file; the
 * file object tracks that end (`end`) so error messages name offsets without another syscall.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "env/env.h"

typedef struct posix_file {
    env_file base;
    int fd;
    uint64_t end; /* file size as seen through this object: where the next append lands */
} posix_file;

struct env_lock {
    int fd;
    char *path;
};

/* A missing path is SHALE_NOT_FOUND (callers test for it); any other OS failure is SHALE_IO. */
static shale_code code_of(int e)
{
    return e == ENOENT ? SHALE_NOT_FOUND : SHALE_IO;
}

/* Appends ": strerror(errno)" to the message err_set just wrote, and returns its code:
 * `return os_err(err_set(err, SHALE_IO, errno, "%s: fsync", path), err);`. strerror_r because
 * the library is threaded; the GNU variant (we build with _GNU_SOURCE) returns the text, which
 * is not always in buf. */
static shale_code os_err(shale_code code, shale_error *err)
{
    char buf[128];
    size_t len;

    if (err != NULL) {
        len = strlen(err->msg);
        snprintf(err->msg + len, sizeof err->msg - len, ": %s",
                 strerror_r(err->sys_errno, buf, sizeof buf));
    }
    return code;
}

static shale_code posix_read_at(env_file *f, uint64_t off, void *buf, size_t n, size_t *out_read,
                                shale_error *err)
{
    posix_file *pf = (posix_file *)f;
    size_t done = 0;

    while (done < n) {
        ssize_t r = pread(pf->fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            *out_read = done;
            return os_err(err_set(err, SHALE_IO, errno, "%s: read of %zu bytes @%" PRIu64, f->path,
                                  n - done, off + done),
                          err);
        }
        if (r == 0) {
            break; /* end of file */
        }
        done += (size_t)r;
    }
    *out_read = done;
    return SHALE_OK;
}

static shale_code posix_append(env_file *f, const void *data, size_t n, shale_error *err)
{
    posix_file *pf = (posix_file *)f;
    size_t done = 0;

    while (done < n) {
        ssize_t w = write(pf->fd, (const char *)data + done, n - done);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            /* write() returning 0 for a regular file means no progress is possible: report it
             * as an I/O error rather than loop forever. */
            return os_err(err_set(err, SHALE_IO, w < 0 ? errno : EIO,
                                  "%s: write of %zu bytes @%" PRIu64, f->path, n - done, pf->end),
                          err);
        }
        done += (size_t)w;
        pf->end += (uint64_t)w;
    }
    return SHALE_OK;
}

static shale_code posix_sync(env_file *f, bool data_only, shale_error *err)
{
    posix_file *pf = (posix_file *)f;
    int r = data_only ? fdatasync(pf->fd) : fsync(pf->fd);

    if (r != 0) {
        return os_err(
            err_set(err, SHALE_IO, errno, "%s: %s", f->path, data_only ? "fdatasync" : "fsync"),
            err);
    }
    return SHALE_OK;
}

static shale_code posix_truncate(env_file *f, uint64_t size, shale_error *err)
{
    posix_file *pf = (posix_file *)f;

    if (ftruncate(pf->fd, (off_t)size) != 0) {
        return os_err(err_set(err, SHALE_IO, errno, "%s: truncate to %" PRIu64, f->path, size),
                      err);
    }
    pf->end = size;
    return SHALE_OK;
}

static shale_code posix_size(env_file *f, uint64_t *out, shale_error *err)
{
    posix_file *pf = (posix_file *)f;
    struct stat st;

    if (fstat(pf->fd, &st) != 0) {
        return os_err(err_set(err, SHALE_IO, errno, "%s: fstat", f->path), err);
    }
    *out = (uint64_t)st.st_size;
    return SHALE_OK;
}

static shale_code posix_close(env_file *f, shale_error *err)
{
    posix_file *pf = (posix_file *)f;
    shale_code rc = SHALE_OK;

    /* No retry on EINTR: Linux has released the descriptor already. */
    if (close(pf->fd) != 0) {
        rc = os_err(err_set(err, SHALE_IO, errno, "%s: close", f->path), err);
    }
    free(f->path);
    free(pf);
    return rc;
}

static const env_file_ops posix_file_ops = {
    .read_at = posix_read_at,
    .append = posix_append,
    .sync = posix_sync,
    .truncate = posix_truncate,
    .size = posix_size,
    .close = posix_close,
};

static shale_code posix_open_file(const shale_env *env, const char *path, int flags, env_file **out,
                                  shale_error *err)
{
    int oflags = O_CLOEXEC;
    posix_file *pf;
    struct stat st;
    shale_code rc;

    (void)env;
    if ((flags & (ENV_READ | ENV_WRITE)) == 0) {
        return err_set(err, SHALE_INVALID, 0, "%s: open without ENV_READ or ENV_WRITE", path);
    }
    if (flags & ENV_WRITE) {
        oflags |= ((flags & ENV_READ) ? O_RDWR : O_WRONLY) | O_APPEND;
    } else {
        oflags |= O_RDONLY;
    }
    oflags |= (flags & ENV_CREATE) ? O_CREAT : 0;
    oflags |= (flags & ENV_CREATE) && (flags & ENV_EXCL) ? O_EXCL : 0;
    oflags |= (flags & ENV_TRUNC) ? O_TRUNC : 0;

    pf = calloc(1, sizeof *pf);
    if (pf == NULL) {
        return err_nomem(err);
    }
    pf->base.ops = &posix_file_ops;
    pf->base.path = strdup(path);
    if (pf->base.path == NULL) {
        rc = err_nomem(err);
        goto out_free;
    }
    do {
        pf->fd = open(path, oflags, 0600);
    } while (pf->fd < 0 && errno == EINTR);
    if (pf->fd < 0) {
        if (errno == EEXIST) {
            rc = err_set(err, SHALE_INVALID, EEXIST, "%s: already exists", path);
        } else {
            rc = os_err(err_set(err, code_of(errno), errno, "%s: open", path), err);
        }
        goto out_free;
    }
    if (fstat(pf->fd, &st) != 0) {
        rc = os_err(err_set(err, SHALE_IO, errno, "%s: fstat", path), err);
        close(pf->fd);
        goto out_free;
    }
    pf->end = (uint64_t)st.st_size;
    *out = &pf->base;
    return SHALE_OK;

out_free:
    free(pf->base.path);
    free(pf);
    return rc;
}

static shale_code posix_remove_file(const shale_env *env, const char *path, shale_error *err)
{
    (void)env;
    if (unlink(path) != 0) {
        return os_err(err_set(err, code_of(errno), errno, "%s: remove", path), err);
    }
    return SHALE_OK;
}

static shale_code posix_rename_file(const shale_env *env, const char *from, const char *to,
                                    shale_error *err)
{
    (void)env;
    if (rename(from, to) != 0) {
        return os_err(err_set(err, code_of(errno), errno, "%s: rename to %s", from, to), err);
    }
    return SHALE_OK;
}

static shale_code posix_link_file(const shale_env *env, const char *from, const char *to,
                                  shale_error *err)
{
    (void)env;
    if (link(from, to) != 0) {
        int e = errno;
        shale_code code = (e == EXDEV || e == EPERM || e == EMLINK) ? SHALE_INVALID : code_of(e);
        return os_err(err_set(err, code, e, "%s: link to %s", from, to), err);
    }
    return SHALE_OK;
}

static shale_code posix_mkdir(const shale_env *env, const char *path, shale_error *err)
{
    struct stat st;

    (void)env;
    if (mkdir(path, 0700) == 0) {
        return SHALE_OK;
    }
    if (errno != EEXIST) {
        return os_err(err_set(err, code_of(errno), errno, "%s: mkdir", path), err);
    }
    if (stat(path, &st) != 0) {
        return os_err(err_set(err, SHALE_IO, errno, "%s: stat", path), err);
    }
    if (!S_ISDIR(st.st_mode)) {
        return os_err(err_set(err, SHALE_IO, ENOTDIR, "%s: mkdir", path), err);
    }
    return SHALE_OK;
}

static shale_code posix_sync_dir(const shale_env *env, const char *path, shale_error *err)
{
    shale_code rc = SHALE_OK;
    int fd;

    (void)env;
    do {
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return os_err(err_set(err, code_of(errno), errno, "%s: open directory", path), err);
    }
    if (fsync(fd) != 0) {
        rc = os_err(err_set(err, SHALE_IO, errno, "%s: fsync directory", path), err);
    }
    close(fd);
    return rc;
}

static shale_code posix_list_dir(const shale_env *env, const char *path, char ***out,
                                 size_t *out_count, shale_error *err)
{
    char **names = NULL;
    size_t count = 0;
    size_t cap = 0;
    struct dirent *de;
    shale_code rc = SHALE_OK;
    DIR *d;

    (void)env;
    d = opendir(path);
    if (d == NULL) {
        return os_err(err_set(err, code_of(errno), errno, "%s: opendir", path), err);
    }
    for (;;) {
        errno = 0;
        de = readdir(d); /* NOLINT(concurrency-mt-unsafe): this DIR is ours alone */
        if (de == NULL) {
            if (errno != 0) {
                rc = os_err(err_set(err, SHALE_IO, errno, "%s: readdir", path), err);
            }
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **grown = realloc(names, ncap * sizeof *names);
            if (grown == NULL) {
                rc = err_nomem(err);
                break;
            }
            names = grown;
            cap = ncap;
        }
        names[count] = strdup(de->d_name);
        if (names[count] == NULL) {
            rc = err_nomem(err);
            break;
        }
        count++;
    }
    closedir(d);
    if (rc != SHALE_OK) {
        env_free_names(names, count);
        return rc;
    }
    *out = names;
    *out_count = count;
    return SHALE_OK;
}

static shale_code posix_stat_path(const shale_env *env, const char *path, bool *is_dir,
                                  uint64_t *size, shale_error *err)
{
    struct stat st;

    (void)env;
    if (stat(path, &st) != 0) {
        return os_err(err_set(err, code_of(errno), errno, "%s: stat", path), err);
    }
    if (is_dir != NULL) {
        *is_dir = S_ISDIR(st.st_mode);
    }
    if (size != NULL) {
        *size = (uint64_t)st.st_size;
    }
    return SHALE_OK;
}

static shale_code posix_lock_file(const shale_env *env, const char *path, env_lock **out,
                                  shale_error *err)
{
    env_lock *lk;
    shale_code rc;
    int r;

    (void)env;
    lk = calloc(1, sizeof *lk);
    if (lk == NULL) {
        return err_nomem(err);
    }
    lk->path = strdup(path);
    if (lk->path == NULL) {
        rc = err_nomem(err);
        goto out_free;
    }
    do {
        lk->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    } while (lk->fd < 0 && errno == EINTR);
    if (lk->fd < 0) {
        rc = os_err(err_set(err, code_of(errno), errno, "%s: open lock file", path), err);
        goto out_free;
    }
    /* flock locks belong to the open file description, so a second lock_file in this same
     * process also fails: two handles on one database directory are refused like two processes. */
    do {
        r = flock(lk->fd, LOCK_EX | LOCK_NB);
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
        if (errno == EWOULDBLOCK) {
            rc = err_set(err, SHALE_BUSY, errno, "%s: in use by another process", path);
        } else {
            rc = os_err(err_set(err, SHALE_IO, errno, "%s: flock", path), err);
        }
        close(lk->fd);
        goto out_free;
    }
    *out = lk;
    return SHALE_OK;

out_free:
    free(lk->path);
    free(lk);
    return rc;
}

static shale_code posix_unlock_file(const shale_env *env, env_lock *lock, shale_error *err)
{
    shale_code rc = SHALE_OK;

    (void)env;
    if (lock == NULL) {
        return SHALE_OK;
    }
    if (flock(lock->fd, LOCK_UN) != 0) {
        rc = os_err(err_set(err, SHALE_IO, errno, "%s: unlock", lock->path), err);
    }
    if (close(lock->fd) != 0 && rc == SHALE_OK) {
        rc = os_err(err_set(err, SHALE_IO, errno, "%s: close lock file", lock->path), err);
    }
    free(lock->path);
    free(lock);
    return rc;
}

static uint64_t posix_now_ms(const shale_env *env)
{
    struct timespec ts;

    (void)env;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t posix_mono_us(const shale_env *env)
{
    struct timespec ts;

    (void)env;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const shale_env posix_env = {
    .name = "posix",
    .open_file = posix_open_file,
    .remove_file = posix_remove_file,
    .rename_file = posix_rename_file,
    .link_file = posix_link_file,
    .mkdir = posix_mkdir,
    .sync_dir = posix_sync_dir,
    .list_dir = posix_list_dir,
    .stat_path = posix_stat_path,
    .lock_file = posix_lock_file,
    .unlock_file = posix_unlock_file,
    .now_ms = posix_now_ms,
    .mono_us = posix_mono_us,
};

const shale_env *env_posix(void)
{
    return &posix_env;
}
