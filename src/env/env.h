/*
 * env: the operating-system seam. Every durable file operation Shale performs goes through a
 * shale_env as a plain POSIX call (open, write, pread, fdatasync, fsync, ftruncate, rename,
 * unlink, flock): no mmap writes, no io_uring, so fault injectors and write recorders see every
 * operation, both the in-tree env_fault and external tools.
 *
 * Implementations:
 *   env_posix()      the real OS (env_posix.c). Files 0600, directories 0700, O_CLOEXEC.
 *   env_fault_new()  wraps another env (env_fault.h): fails the Nth operation of a kind, and
 *                    simulates power loss by dropping every byte not yet fsynced.
 *
 * Errors: every call returns a shale_code; OS failures are SHALE_IO with errno in err->sys_errno
 * and a message naming the path (and offset, for reads and writes). A read of fewer bytes than
 * asked is reported through *out_read only at end of file; EIO on read is SHALE_IO, never EOF.
 *
 * Threads: an env is shared and thread-safe. One env_file may be used by one thread at a time,
 * except read_at, which may run concurrently with itself.
 *
 * Ownership: env_file objects returned by open_file are the caller's until env_file_close (which
 * frees them even when the close fails). Paths are borrowed; the file copies its own.
 */
#ifndef SHALE_ENV_ENV_H
#define SHALE_ENV_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

/* open_file flags */
enum {
    ENV_READ = 1 << 0,   /* open for reading (pread) */
    ENV_WRITE = 1 << 1,  /* open for appending writes */
    ENV_CREATE = 1 << 2, /* create if missing (mode 0600) */
    ENV_EXCL = 1 << 3,   /* with ENV_CREATE: fail with SHALE_INVALID if it exists */
    ENV_TRUNC = 1 << 4,  /* truncate to 0 on open */
};

/* The kinds of operation, for counting and fault injection. */
typedef enum env_op {
    ENV_OP_OPEN = 0,
    ENV_OP_READ,
    ENV_OP_WRITE,
    ENV_OP_SYNC,     /* file fdatasync/fsync */
    ENV_OP_SYNC_DIR, /* directory fsync */
    ENV_OP_TRUNCATE,
    ENV_OP_RENAME,
    ENV_OP_REMOVE,
    ENV_OP_MKDIR,
    ENV_OP_LOCK,
    ENV_OP_LINK,
    ENV_OP_COUNT_
} env_op;

typedef struct env_file env_file;
typedef struct env_lock env_lock;

typedef struct env_file_ops {
    /* Reads up to n bytes at off; *out_read < n only at end of file. */
    shale_code (*read_at)(env_file *f, uint64_t off, void *buf, size_t n, size_t *out_read,
                          shale_error *err);
    /* Appends all n bytes at the end (looping over partial writes). A failed or short append
     * returns SHALE_IO; how much reached the file is then unknown to the caller, which must
     * truncate back before writing anything after it. */
    shale_code (*append)(env_file *f, const void *data, size_t n, shale_error *err);
    /* fdatasync (data_only) or fsync. A failure is final: see the durable I/O rules. */
    shale_code (*sync)(env_file *f, bool data_only, shale_error *err);
    shale_code (*truncate)(env_file *f, uint64_t size, shale_error *err);
    shale_code (*size)(env_file *f, uint64_t *out, shale_error *err);
    /* Closes and frees f (also on failure). */
    shale_code (*close)(env_file *f, shale_error *err);
} env_file_ops;

/* The common head of every env's file object. */
struct env_file {
    const env_file_ops *ops;
    char *path; /* owned copy, for messages */
};

struct shale_env {
    const char *name;
    shale_code (*open_file)(const shale_env *env, const char *path, int flags, env_file **out,
                            shale_error *err);
    /* SHALE_NOT_FOUND if missing. */
    shale_code (*remove_file)(const shale_env *env, const char *path, shale_error *err);
    shale_code (*rename_file)(const shale_env *env, const char *from, const char *to,
                              shale_error *err);
    /* Creates `to` as a hard link to `from` (checkpoints). SHALE_INVALID with sys_errno EXDEV or
     * EPERM when the file system cannot link them (the caller copies instead); SHALE_NOT_FOUND if
     * `from` is missing. Like a creation, durable only after a sync_dir of `to`'s directory. */
    shale_code (*link_file)(const shale_env *env, const char *from, const char *to,
                            shale_error *err);
    /* Creates a directory (0700). SHALE_OK if it already exists as a directory. */
    shale_code (*mkdir)(const shale_env *env, const char *path, shale_error *err);
    /* Opens the directory and fsyncs it, making creations, renames and removals in it durable. */
    shale_code (*sync_dir)(const shale_env *env, const char *path, shale_error *err);
    /* Lists the names in a directory (not "." or ".."). *out is a malloc'ed array of malloc'ed
     * strings; free with env_free_names. SHALE_NOT_FOUND if the directory is missing. */
    shale_code (*list_dir)(const shale_env *env, const char *path, char ***out, size_t *out_count,
                           shale_error *err);
    /* SHALE_OK if it exists (*is_dir says what it is), SHALE_NOT_FOUND if not. */
    shale_code (*stat_path)(const shale_env *env, const char *path, bool *is_dir, uint64_t *size,
                            shale_error *err);
    /* Creates (0600) and takes an exclusive, non-blocking flock on `path`. SHALE_BUSY if held. */
    shale_code (*lock_file)(const shale_env *env, const char *path, env_lock **out,
                            shale_error *err);
    shale_code (*unlock_file)(const shale_env *env, env_lock *lock, shale_error *err);
    /* Wall-clock Unix milliseconds (TTL deadlines) and a monotonic clock in microseconds. */
    uint64_t (*now_ms)(const shale_env *env);
    uint64_t (*mono_us)(const shale_env *env);
};

/* The process-wide real OS env. Never freed. */
const shale_env *env_posix(void);

void env_free_names(char **names, size_t count);

/* "dir/name", malloc'ed (free it); NULL when out of memory. */
char *env_join_path(const char *dir, const char *name);

/* Syncs the directory that holds `path` (a file or a directory just created or renamed), so its
 * entry there is durable: "a/b/" syncs "a", "b" syncs ".", "/b" syncs "/". */
shale_code env_sync_parent(const shale_env *env, const char *path, shale_error *err) SHALE_MUST_USE;

/* Thin call-through helpers, so callers read `env_file_append(f, ...)`. */
static inline shale_code env_file_read_at(env_file *f, uint64_t off, void *buf, size_t n,
                                          size_t *out_read, shale_error *err)
{
    return f->ops->read_at(f, off, buf, n, out_read, err);
}
static inline shale_code env_file_append(env_file *f, const void *data, size_t n, shale_error *err)
{
    return f->ops->append(f, data, n, err);
}
static inline shale_code env_file_sync(env_file *f, bool data_only, shale_error *err)
{
    return f->ops->sync(f, data_only, err);
}
static inline shale_code env_file_truncate(env_file *f, uint64_t size, shale_error *err)
{
    return f->ops->truncate(f, size, err);
}
static inline shale_code env_file_size(env_file *f, uint64_t *out, shale_error *err)
{
    return f->ops->size(f, out, err);
}
/* Accepts NULL. */
shale_code env_file_close(env_file *f, shale_error *err);

static inline const char *env_file_name(const env_file *f)
{
    return f->path;
}

/* Reads exactly n bytes at off; a short read is SHALE_CORRUPTION ("truncated"), naming the file
 * and offset. */
shale_code env_read_exact(env_file *f, uint64_t off, void *buf, size_t n, shale_error *err);

/* Writes `data` to `path` durably and atomically: write path.tmp, fsync it, rename over path,
 * fsync the directory. For pointer files (CURRENT, IDENTITY). */
shale_code env_write_file_atomic(const shale_env *env, const char *dir, const char *name,
                                 const void *data, size_t n, shale_error *err);

/* Reads a whole small file (at most max_bytes, else SHALE_CORRUPTION) into *out (malloc'ed). */
shale_code env_read_file(const shale_env *env, const char *path, size_t max_bytes, void **out,
                         size_t *out_len, shale_error *err);

#endif
