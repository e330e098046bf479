/*
 * env_fault: the fault-injecting wrapper env (contract in env_fault.h).
 *
 * Bookkeeping, all under fe->mu:
 *   - one `tracked` per path opened for writing: its length at the last successful sync
 *     (synced_len), its length now (cur_len), and whether it was created through this env and
 *     its directory not fsynced since (undurable). Open files point at their entry, so a rename
 *     of an open file keeps following it. An entry that stops describing a live path (removed,
 *     overwritten by a rename, or reset by drop_unsynced) is marked `gone` and freed when its
 *     last open file closes.
 *   - the renames not yet made durable by a sync_dir of the target's directory, newest first,
 *     so drop_unsynced can walk a chain a -> b -> c back to a. A rename over an existing file
 *     keeps a copy of that file's bytes (and how many of them were synced), because a power loss
 *     may undo the rename and bring the old file back; undoing walks newest first, so a pointer
 *     file replaced twice (CURRENT) ends with its content from before the first rename.
 *   - a hard link is tracked like a created file: undurable until a sync_dir of its directory.
 *   - for crash-state generation (env_fault_make_state): each entry's unsynced writes as
 *     extents (offset, length), disjoint and ascending (files are append-only; a truncate clips
 *     them), cleared by a successful sync; and every directory operation since the last
 *     sync_dir of its directory (`dirops`, newest first), with, for a removal or a rename over
 *     an existing file, the synced content the undo brings back. A file's unsynced bytes are
 *     read from the crashed file itself when a state is built, so no data is copied per write.
 * Base operations run outside the mutex, except in drop_unsynced and make_state, which run
 * when the code under test has stopped.
 */
#include "env/env_fault.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* Pseudo-kind for operations that are not counted but still fail after a crash. */
#define NO_OP ENV_OP_COUNT_

typedef struct extent {
    uint64_t off, len;
} extent;

typedef struct tracked {
    struct tracked *next;
    char *path;
    uint64_t synced_len;
    uint64_t cur_len;
    extent *ext; /* unsynced writes since the last sync, ascending */
    size_t next_ext, cap_ext;
    bool undurable; /* created here; its directory not fsynced since */
    bool gone;      /* no longer describes `path`; kept only for open files */
    int refs;       /* open files pointing here */
} tracked;

/* A rename not yet durable. When it replaced an existing file, that file's bytes and its
 * durability are kept, so a crash can put it back as a real file system may. */
typedef struct moved {
    struct moved *next;
    char *from;
    char *to;
    bool replaced;     /* `to` existed (as a file whose name was durable) before the rename */
    uint8_t *old_data; /* its content then */
    size_t old_len;
    uint64_t old_synced; /* the durable prefix of old_data */
} moved;

/* A directory operation not yet made durable by a sync_dir, for crash-state generation. */
enum { DOP_CREATE, DOP_RENAME, DOP_LINK, DOP_REMOVE };
typedef struct dirop {
    struct dirop *next; /* newest first */
    int kind;
    char *path;   /* the name created, linked or removed; a rename's target */
    char *from;   /* a rename's source */
    bool has_old; /* a removal, or a rename that replaced a durable file: bring back old[] */
    uint8_t *old; /* the synced content of that file */
    size_t old_len;
} dirop;

struct env_fault {
    shale_env env; /* first, so the shale_env pointer converts back to the env_fault */
    const shale_env *base;
    pthread_mutex_t mu;
    uint64_t counts[ENV_OP_COUNT_];
    struct {
        uint64_t nth; /* operations left until the fault fires; 0 = none pending */
        int sys_errno;
        bool short_write;
    } faults[ENV_OP_COUNT_];
    bool crashed;
    tracked *files;
    moved *renames;      /* newest first */
    dirop *dirops;       /* newest first */
    bool history_broken; /* out of memory while recording: no crash states */
    bool (*is_unit)(const char *path);
    uint64_t crash_after; /* mutating operations left until an automatic crash; 0 = none */
};

typedef struct fault_file {
    env_file base;
    env_fault *fe;
    env_file *inner;
    tracked *t; /* NULL for files opened read-only */
} fault_file;

static const char *const op_names[ENV_OP_COUNT_] = {
    "open",   "read",   "write", "sync", "sync_dir", "truncate",
    "rename", "remove", "mkdir", "lock", "link",
};

static env_fault *of(const shale_env *env)
{
    return (env_fault *)env;
}

/* Counts an operation and decides whether it fails: after a crash every operation fails with
 * EIO; otherwise a pending fault of this kind fires when its countdown reaches zero. */
static shale_code enter(env_fault *fe, int op, const char *path, bool *short_write,
                        shale_error *err)
{
    bool crashed;
    int e = 0;

    pthread_mutex_lock(&fe->mu);
    if (!fe->crashed && fe->crash_after > 0 && op != NO_OP && op != ENV_OP_READ &&
        op != ENV_OP_LOCK && --fe->crash_after == 0) {
        fe->crashed = true; /* the power goes before this operation */
    }
    crashed = fe->crashed;
    if (op != NO_OP) {
        fe->counts[op]++;
        if (!crashed && fe->faults[op].nth > 0 && --fe->faults[op].nth == 0) {
            e = fe->faults[op].sys_errno;
            if (short_write != NULL) {
                *short_write = fe->faults[op].short_write;
            }
        }
    }
    pthread_mutex_unlock(&fe->mu);
    if (crashed) {
        return err_set(err, SHALE_IO, EIO, "%s: env_fault: crashed (EIO)", path);
    }
    if (e != 0) {
        return err_set(err, SHALE_IO, e, "%s: env_fault: injected %s failure (errno %d)", path,
                       op_names[op], e);
    }
    return SHALE_OK;
}

/* The live entry for `path`, or NULL. Locks: fe->mu held. */
static tracked *lookup(env_fault *fe, const char *path)
{
    for (tracked *t = fe->files; t != NULL; t = t->next) {
        if (!t->gone && strcmp(t->path, path) == 0) {
            return t;
        }
    }
    return NULL;
}

static void unlink_tracked(env_fault *fe, tracked *t)
{
    for (tracked **p = &fe->files; *p != NULL; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    free(t->path);
    free(t->ext);
    free(t);
}

/* Detaches t from its path; frees it unless an open file still points at it. Locks: fe->mu. */
static void forget(env_fault *fe, tracked *t)
{
    t->gone = true;
    if (t->refs == 0) {
        unlink_tracked(fe, t);
    }
}

/* Whether `path` names an entry directly inside directory `dir`. */
static bool in_dir(const char *path, const char *dir)
{
    const char *slash = strrchr(path, '/');
    size_t dlen = strlen(dir);
    size_t plen;

    while (dlen > 1 && dir[dlen - 1] == '/') {
        dlen--;
    }
    if (slash == NULL) {
        return dlen == 1 && dir[0] == '.';
    }
    plen = slash == path ? 1 : (size_t)(slash - path); /* "/x" is in "/" */
    return plen == dlen && memcmp(path, dir, dlen) == 0;
}

static void free_moved(moved *m)
{
    if (m != NULL) {
        free(m->from);
        free(m->to);
        free(m->old_data);
        free(m);
    }
}

static void free_renames(env_fault *fe)
{
    while (fe->renames != NULL) {
        moved *m = fe->renames;
        fe->renames = m->next;
        free_moved(m);
    }
}

static void free_dirop(dirop *d)
{
    if (d != NULL) {
        free(d->path);
        free(d->from);
        free(d->old);
        free(d);
    }
}

static void free_dirops(env_fault *fe)
{
    while (fe->dirops != NULL) {
        dirop *d = fe->dirops;
        fe->dirops = d->next;
        free_dirop(d);
    }
}

/* A new dirop of `kind` on `path` (and `from`), or NULL when out of memory. */
static dirop *new_dirop(int kind, const char *path, const char *from)
{
    dirop *d = calloc(1, sizeof *d);

    if (d == NULL || (d->path = strdup(path)) == NULL ||
        (from != NULL && (d->from = strdup(from)) == NULL)) {
        free_dirop(d);
        return NULL;
    }
    d->kind = kind;
    return d;
}

/* Records d (may be NULL: an allocation failed, the history is then incomplete).
 * Locks: fe->mu held. */
static void push_dirop(env_fault *fe, dirop *d)
{
    if (d == NULL) {
        fe->history_broken = true;
        return;
    }
    d->next = fe->dirops;
    fe->dirops = d;
}

/* Records an unsynced write of [off, off + len) of t. Locks: fe->mu held. */
static void add_extent(env_fault *fe, tracked *t, uint64_t off, uint64_t len)
{
    if (len == 0) {
        return;
    }
    if (t->next_ext > 0) {
        extent *last = &t->ext[t->next_ext - 1];
        if (last->off + last->len > off) {
            fe->history_broken = true; /* not append-only: cannot happen through this env */
        }
    }
    if (t->next_ext == t->cap_ext) {
        size_t cap = t->cap_ext ? 2 * t->cap_ext : 8;
        extent *e = realloc(t->ext, cap * sizeof *e);
        if (e == NULL) {
            fe->history_broken = true;
            return;
        }
        t->ext = e;
        t->cap_ext = cap;
    }
    t->ext[t->next_ext++] = (extent){off, len};
}

/* A truncate to `size` cut off every unsynced byte at or past it. */
static void clip_extents(tracked *t, uint64_t size)
{
    while (t->next_ext > 0) {
        extent *last = &t->ext[t->next_ext - 1];
        if (last->off >= size) {
            t->next_ext--;
        } else {
            if (last->off + last->len > size) {
                last->len = size - last->off;
            }
            break;
        }
    }
}

/* ---- files ---- */

static shale_code ff_read_at(env_file *f, uint64_t off, void *buf, size_t n, size_t *out_read,
                             shale_error *err)
{
    fault_file *ff = (fault_file *)f;
    shale_code rc = enter(ff->fe, ENV_OP_READ, f->path, NULL, err);

    if (rc != SHALE_OK) {
        *out_read = 0;
        return rc;
    }
    return env_file_read_at(ff->inner, off, buf, n, out_read, err);
}

static void grew(fault_file *ff, uint64_t n)
{
    if (ff->t != NULL) {
        pthread_mutex_lock(&ff->fe->mu);
        add_extent(ff->fe, ff->t, ff->t->cur_len, n);
        ff->t->cur_len += n;
        pthread_mutex_unlock(&ff->fe->mu);
    }
}

static shale_code ff_append(env_file *f, const void *data, size_t n, shale_error *err)
{
    fault_file *ff = (fault_file *)f;
    bool short_write = false;
    uint64_t size;
    shale_code rc;

    rc = enter(ff->fe, ENV_OP_WRITE, f->path, &short_write, err);
    if (rc != SHALE_OK) {
        if (short_write && n / 2 > 0 && env_file_append(ff->inner, data, n / 2, NULL) == SHALE_OK) {
            grew(ff, n / 2);
        }
        return rc;
    }
    rc = env_file_append(ff->inner, data, n, err);
    if (rc == SHALE_OK) {
        grew(ff, n);
    } else if (ff->t != NULL && env_file_size(ff->inner, &size, NULL) == SHALE_OK) {
        /* Part of a failed append may have landed: learn how much from the file itself. */
        pthread_mutex_lock(&ff->fe->mu);
        if (size > ff->t->cur_len) {
            add_extent(ff->fe, ff->t, ff->t->cur_len, size - ff->t->cur_len);
        }
        ff->t->cur_len = size;
        pthread_mutex_unlock(&ff->fe->mu);
    }
    return rc;
}

static shale_code ff_sync(env_file *f, bool data_only, shale_error *err)
{
    fault_file *ff = (fault_file *)f;
    shale_code rc = enter(ff->fe, ENV_OP_SYNC, f->path, NULL, err);

    if (rc == SHALE_OK) {
        rc = env_file_sync(ff->inner, data_only, err);
    }
    if (rc == SHALE_OK && ff->t != NULL) {
        pthread_mutex_lock(&ff->fe->mu);
        ff->t->synced_len = ff->t->cur_len;
        ff->t->next_ext = 0;
        pthread_mutex_unlock(&ff->fe->mu);
    }
    return rc;
}

static shale_code ff_truncate(env_file *f, uint64_t size, shale_error *err)
{
    fault_file *ff = (fault_file *)f;
    shale_code rc = enter(ff->fe, ENV_OP_TRUNCATE, f->path, NULL, err);

    if (rc == SHALE_OK) {
        rc = env_file_truncate(ff->inner, size, err);
    }
    if (rc == SHALE_OK && ff->t != NULL) {
        /* Bytes cut off cannot come back on a crash (we keep no copy), so the synced prefix
         * shrinks with the file; the next sync makes the new length the synced one. */
        pthread_mutex_lock(&ff->fe->mu);
        ff->t->cur_len = size;
        if (ff->t->synced_len > size) {
            ff->t->synced_len = size;
        }
        clip_extents(ff->t, size);
        pthread_mutex_unlock(&ff->fe->mu);
    }
    return rc;
}

static shale_code ff_size(env_file *f, uint64_t *out, shale_error *err)
{
    fault_file *ff = (fault_file *)f;
    shale_code rc = enter(ff->fe, NO_OP, f->path, NULL, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    return env_file_size(ff->inner, out, err);
}

/* Closes the base file even after a crash, so a crashed run leaks nothing. */
static shale_code ff_close(env_file *f, shale_error *err)
{
    fault_file *ff = (fault_file *)f;
    shale_code rc = enter(ff->fe, NO_OP, f->path, NULL, err);
    shale_code rc_inner;

    if (ff->t != NULL) {
        pthread_mutex_lock(&ff->fe->mu);
        if (--ff->t->refs == 0 && ff->t->gone) {
            unlink_tracked(ff->fe, ff->t);
        }
        pthread_mutex_unlock(&ff->fe->mu);
    }
    rc_inner = env_file_close(ff->inner, rc == SHALE_OK ? err : NULL);
    free(f->path);
    free(ff);
    return rc != SHALE_OK ? rc : rc_inner;
}

static const env_file_ops fault_file_ops = {
    .read_at = ff_read_at,
    .append = ff_append,
    .sync = ff_sync,
    .truncate = ff_truncate,
    .size = ff_size,
    .close = ff_close,
};

/* ---- env ---- */

/* Registers (or finds) the entry of a file just opened for writing. A file that existed before
 * counts as synced up to its size at open. Locks: takes fe->mu. */
static shale_code track_open(env_fault *fe, fault_file *ff, bool existed, int flags,
                             shale_error *err)
{
    uint64_t size = 0;
    shale_code rc = SHALE_OK;
    tracked *t;

    if (existed && !(flags & ENV_TRUNC)) {
        rc = env_file_size(ff->inner, &size, err);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    pthread_mutex_lock(&fe->mu);
    t = lookup(fe, ff->base.path);
    if (t == NULL) {
        t = calloc(1, sizeof *t);
        if (t == NULL || (t->path = strdup(ff->base.path)) == NULL) {
            free(t);
            rc = err_nomem(err);
            goto out_unlock;
        }
        t->synced_len = t->cur_len = size;
        t->undurable = !existed;
        t->next = fe->files;
        fe->files = t;
    } else if (flags & ENV_TRUNC) {
        t->synced_len = t->cur_len = 0;
        t->next_ext = 0;
    }
    if (!existed) {
        push_dirop(fe, new_dirop(DOP_CREATE, ff->base.path, NULL));
    }
    t->refs++;
    ff->t = t;
out_unlock:
    pthread_mutex_unlock(&fe->mu);
    return rc;
}

static shale_code fault_open_file(const shale_env *env, const char *path, int flags, env_file **out,
                                  shale_error *err)
{
    env_fault *fe = of(env);
    bool track = (flags & (ENV_WRITE | ENV_CREATE | ENV_TRUNC)) != 0;
    bool existed = false;
    fault_file *ff;
    shale_code rc;

    rc = enter(fe, ENV_OP_OPEN, path, NULL, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    ff = calloc(1, sizeof *ff);
    if (ff == NULL) {
        return err_nomem(err);
    }
    ff->base.ops = &fault_file_ops;
    ff->fe = fe;
    ff->base.path = strdup(path);
    if (ff->base.path == NULL) {
        rc = err_nomem(err);
        goto out_free;
    }
    if (track) {
        existed = fe->base->stat_path(fe->base, path, NULL, NULL, NULL) == SHALE_OK;
    }
    rc = fe->base->open_file(fe->base, path, flags, &ff->inner, err);
    if (rc != SHALE_OK) {
        goto out_free;
    }
    if (track) {
        rc = track_open(fe, ff, existed, flags, err);
        if (rc != SHALE_OK) {
            goto out_close;
        }
    }
    *out = &ff->base;
    return SHALE_OK;

out_close:
    (void)env_file_close(ff->inner, NULL);
out_free:
    free(ff->base.path);
    free(ff);
    return rc;
}

static shale_code fault_remove_file(const shale_env *env, const char *path, shale_error *err)
{
    env_fault *fe = of(env);
    shale_code rc = enter(fe, ENV_OP_REMOVE, path, NULL, err);
    const shale_env *b = fe->base;
    dirop *d = NULL;
    bool is_dir = false;
    tracked *t;

    if (rc != SHALE_OK) {
        return rc;
    }
    /* Keep what a crash could bring back: the removal is durable only after a sync_dir. */
    if (b->stat_path(b, path, &is_dir, NULL, NULL) == SHALE_OK && !is_dir) {
        void *data = NULL;
        size_t len = 0;
        d = new_dirop(DOP_REMOVE, path, NULL);
        if (d != NULL && env_read_file(b, path, SIZE_MAX, &data, &len, NULL) == SHALE_OK) {
            d->old = data;
            d->old_len = len;
            d->has_old = true;
        } else {
            free_dirop(d);
            d = NULL;
        }
    }
    rc = b->remove_file(b, path, err);
    if (rc == SHALE_OK || rc == SHALE_NOT_FOUND) {
        pthread_mutex_lock(&fe->mu);
        if ((t = lookup(fe, path)) != NULL) {
            if (d != NULL && t->synced_len < d->old_len) {
                d->old_len = t->synced_len; /* only its synced prefix could come back */
            }
            forget(fe, t);
        }
        if (rc == SHALE_OK) {
            push_dirop(fe, d);
            d = NULL;
        }
        pthread_mutex_unlock(&fe->mu);
    }
    free_dirop(d);
    return rc;
}

/* Copies the content of the existing regular file `path` (through the base env) into m, so a
 * crash can restore it. A missing `path` (or a directory) leaves m->replaced false. */
static shale_code save_target(const shale_env *b, const char *path, moved *m, shale_error *err)
{
    bool is_dir = false;
    uint64_t size = 0;
    void *data = NULL;
    size_t len = 0;
    shale_code rc = b->stat_path(b, path, &is_dir, &size, err);

    if (rc == SHALE_NOT_FOUND || (rc == SHALE_OK && is_dir)) {
        return SHALE_OK;
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = env_read_file(b, path, SIZE_MAX, &data, &len, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    m->replaced = true;
    m->old_data = data;
    m->old_len = len;
    m->old_synced = len; /* an untracked file counts as durable at its size, as in track_open */
    return SHALE_OK;
}

static shale_code fault_rename_file(const shale_env *env, const char *from, const char *to,
                                    shale_error *err)
{
    env_fault *fe = of(env);
    shale_code rc = enter(fe, ENV_OP_RENAME, from, NULL, err);
    char *new_path = NULL;
    moved *m = NULL;
    dirop *d = NULL;
    tracked *t;

    if (rc != SHALE_OK) {
        return rc;
    }
    /* Allocate the bookkeeping first, so nothing can fail after the rename happened. */
    m = calloc(1, sizeof *m);
    if (m == NULL || (m->from = strdup(from)) == NULL || (m->to = strdup(to)) == NULL ||
        (new_path = strdup(to)) == NULL) {
        rc = err_nomem(err);
        goto out_free;
    }
    rc = save_target(fe->base, to, m, err);
    if (rc != SHALE_OK) {
        goto out_free;
    }
    d = new_dirop(DOP_RENAME, to, from);
    if (d != NULL && m->replaced && m->old_len > 0) {
        d->old = malloc(m->old_len);
        if (d->old == NULL) {
            free_dirop(d);
            d = NULL;
        } else {
            memcpy(d->old, m->old_data, m->old_len);
        }
    }
    rc = fe->base->rename_file(fe->base, from, to, err);
    if (rc != SHALE_OK) {
        goto out_free;
    }
    pthread_mutex_lock(&fe->mu);
    if ((t = lookup(fe, to)) != NULL) {
        /* Overwritten. Only its synced prefix could come back, and nothing at all if its own
         * name was never made durable. */
        if (m->replaced) {
            m->replaced = !t->undurable;
            if (t->synced_len < m->old_synced) {
                m->old_synced = t->synced_len;
            }
        }
        forget(fe, t);
    }
    if ((t = lookup(fe, from)) != NULL) {
        free(t->path);
        t->path = new_path;
        new_path = NULL;
    }
    if (d != NULL) {
        d->has_old = m->replaced;
        d->old_len = m->replaced ? (size_t)m->old_synced : 0;
    }
    push_dirop(fe, d);
    d = NULL;
    m->next = fe->renames;
    fe->renames = m;
    m = NULL;
    pthread_mutex_unlock(&fe->mu);

out_free:
    free(new_path);
    free_moved(m);
    free_dirop(d);
    return rc;
}

/* A hard link names an existing inode: its bytes share the source's durability, and the new name
 * is a creation, durable only after a sync_dir of its directory (env.h). Links are meant for
 * finished files (checkpoints): later appends through one name are not mirrored into the
 * other's entry. */
static shale_code fault_link_file(const shale_env *env, const char *from, const char *to,
                                  shale_error *err)
{
    env_fault *fe = of(env);
    shale_code rc = enter(fe, ENV_OP_LINK, from, NULL, err);
    uint64_t size = 0;
    tracked *t = NULL;
    tracked *src;

    if (rc != SHALE_OK) {
        return rc;
    }
    if (fe->base->link_file == NULL) {
        return err_set(err, SHALE_INVALID, EPERM, "%s: link to %s: not supported by env %s", from,
                       to, fe->base->name);
    }
    t = calloc(1, sizeof *t);
    if (t == NULL || (t->path = strdup(to)) == NULL) {
        free(t);
        return err_nomem(err);
    }
    rc = fe->base->link_file(fe->base, from, to, err);
    if (rc != SHALE_OK) {
        free(t->path);
        free(t);
        return rc;
    }
    (void)fe->base->stat_path(fe->base, to, NULL, &size, NULL);
    pthread_mutex_lock(&fe->mu);
    if ((src = lookup(fe, to)) != NULL) {
        forget(fe, src); /* a stale entry: the name did not exist, or link would have failed */
    }
    src = lookup(fe, from);
    t->synced_len = src != NULL ? src->synced_len : size;
    t->cur_len = src != NULL ? src->cur_len : size;
    t->undurable = true;
    t->next = fe->files;
    fe->files = t;
    push_dirop(fe, new_dirop(DOP_LINK, to, from));
    pthread_mutex_unlock(&fe->mu);
    return SHALE_OK;
}

static shale_code fault_mkdir(const shale_env *env, const char *path, shale_error *err)
{
    env_fault *fe = of(env);
    shale_code rc = enter(fe, ENV_OP_MKDIR, path, NULL, err);

    return rc != SHALE_OK ? rc : fe->base->mkdir(fe->base, path, err);
}

static shale_code fault_sync_dir(const shale_env *env, const char *path, shale_error *err)
{
    env_fault *fe = of(env);
    shale_code rc = enter(fe, ENV_OP_SYNC_DIR, path, NULL, err);

    if (rc == SHALE_OK) {
        rc = fe->base->sync_dir(fe->base, path, err);
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    pthread_mutex_lock(&fe->mu);
    for (tracked *t = fe->files; t != NULL; t = t->next) {
        if (!t->gone && in_dir(t->path, path)) {
            t->undurable = false;
        }
    }
    for (moved **p = &fe->renames; *p != NULL;) {
        moved *m = *p;
        if (in_dir(m->to, path)) {
            *p = m->next;
            free_moved(m);
        } else {
            p = &m->next;
        }
    }
    for (dirop **p = &fe->dirops; *p != NULL;) {
        dirop *d = *p;
        if (in_dir(d->path, path)) {
            *p = d->next;
            free_dirop(d);
        } else {
            p = &d->next;
        }
    }
    pthread_mutex_unlock(&fe->mu);
    return SHALE_OK;
}

static shale_code fault_list_dir(const shale_env *env, const char *path, char ***out,
                                 size_t *out_count, shale_error *err)
{
    env_fault *fe = of(env);
    shale_code rc = enter(fe, NO_OP, path, NULL, err);

    return rc != SHALE_OK ? rc : fe->base->list_dir(fe->base, path, out, out_count, err);
}

static shale_code fault_stat_path(const shale_env *env, const char *path, bool *is_dir,
                                  uint64_t *size, shale_error *err)
{
    env_fault *fe = of(env);
    shale_code rc = enter(fe, NO_OP, path, NULL, err);

    return rc != SHALE_OK ? rc : fe->base->stat_path(fe->base, path, is_dir, size, err);
}

static shale_code fault_lock_file(const shale_env *env, const char *path, env_lock **out,
                                  shale_error *err)
{
    env_fault *fe = of(env);
    shale_code rc = enter(fe, ENV_OP_LOCK, path, NULL, err);

    return rc != SHALE_OK ? rc : fe->base->lock_file(fe->base, path, out, err);
}

/* Releases the lock even after a crash, so the "rebooted" code can take it again. */
static shale_code fault_unlock_file(const shale_env *env, env_lock *lock, shale_error *err)
{
    env_fault *fe = of(env);
    shale_code rc = enter(fe, NO_OP, "lock", NULL, err);
    shale_code rc_base = fe->base->unlock_file(fe->base, lock, rc == SHALE_OK ? err : NULL);

    return rc != SHALE_OK ? rc : rc_base;
}

static uint64_t fault_now_ms(const shale_env *env)
{
    return of(env)->base->now_ms(of(env)->base);
}

static uint64_t fault_mono_us(const shale_env *env)
{
    return of(env)->base->mono_us(of(env)->base);
}

/* ---- control ---- */

env_fault *env_fault_new(const shale_env *base)
{
    env_fault *fe = calloc(1, sizeof *fe);

    if (fe == NULL) {
        return NULL;
    }
    if (pthread_mutex_init(&fe->mu, NULL) != 0) {
        free(fe);
        return NULL;
    }
    fe->base = base;
    fe->env = (shale_env){
        .name = "fault",
        .open_file = fault_open_file,
        .remove_file = fault_remove_file,
        .rename_file = fault_rename_file,
        .link_file = fault_link_file,
        .mkdir = fault_mkdir,
        .sync_dir = fault_sync_dir,
        .list_dir = fault_list_dir,
        .stat_path = fault_stat_path,
        .lock_file = fault_lock_file,
        .unlock_file = fault_unlock_file,
        .now_ms = fault_now_ms,
        .mono_us = fault_mono_us,
    };
    return fe;
}

/* REQUIRES: every file opened through fe is closed. */
void env_fault_free(env_fault *fe)
{
    if (fe == NULL) {
        return;
    }
    while (fe->files != NULL) {
        unlink_tracked(fe, fe->files);
    }
    free_renames(fe);
    free_dirops(fe);
    pthread_mutex_destroy(&fe->mu);
    free(fe);
}

const shale_env *env_fault_env(env_fault *fe)
{
    return &fe->env;
}

void env_fault_fail_nth(env_fault *fe, env_op op, uint64_t nth, int sys_errno, bool short_write)
{
    if ((unsigned)op >= ENV_OP_COUNT_) {
        return;
    }
    pthread_mutex_lock(&fe->mu);
    fe->faults[op].nth = nth;
    fe->faults[op].sys_errno = sys_errno != 0 ? sys_errno : EIO;
    fe->faults[op].short_write = short_write && op == ENV_OP_WRITE;
    pthread_mutex_unlock(&fe->mu);
}

void env_fault_clear(env_fault *fe)
{
    pthread_mutex_lock(&fe->mu);
    memset(fe->faults, 0, sizeof fe->faults);
    pthread_mutex_unlock(&fe->mu);
}

uint64_t env_fault_count(env_fault *fe, env_op op)
{
    uint64_t n = 0;

    if ((unsigned)op < ENV_OP_COUNT_) {
        pthread_mutex_lock(&fe->mu);
        n = fe->counts[op];
        pthread_mutex_unlock(&fe->mu);
    }
    return n;
}

void env_fault_crash_after(env_fault *fe, uint64_t nth)
{
    pthread_mutex_lock(&fe->mu);
    fe->crash_after = nth;
    pthread_mutex_unlock(&fe->mu);
}

bool env_fault_crashed(env_fault *fe)
{
    pthread_mutex_lock(&fe->mu);
    bool c = fe->crashed;
    pthread_mutex_unlock(&fe->mu);
    return c;
}

void env_fault_crash(env_fault *fe)
{
    pthread_mutex_lock(&fe->mu);
    fe->crashed = true;
    pthread_mutex_unlock(&fe->mu);
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Cuts t's file back to what a power loss would leave. A missing file is fine. */
static shale_code cut(const shale_env *b, const tracked *t, env_fault_drop_mode mode, uint64_t *rng,
                      shale_error *err)
{
    uint64_t size = 0;
    uint64_t keep;
    env_file *f = NULL;
    shale_code rc;

    rc = b->stat_path(b, t->path, NULL, &size, err);
    if (rc != SHALE_OK) {
        return rc == SHALE_NOT_FOUND ? SHALE_OK : rc;
    }
    keep = t->synced_len < size ? t->synced_len : size;
    if (mode == ENV_FAULT_KEEP_RANDOM && size > keep) {
        keep += xorshift(rng) % (size - keep + 1);
    }
    if (keep == size) {
        return SHALE_OK;
    }
    rc = b->open_file(b, t->path, ENV_WRITE, &f, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = env_file_truncate(f, keep, err);
    if (rc != SHALE_OK) {
        (void)env_file_close(f, NULL);
        return rc;
    }
    return env_file_close(f, err);
}

/* Keeps the first failure in *first (and in err); later ones are dropped. */
static void keep_first(shale_code rc, const shale_error *e, shale_code *first, shale_error *err)
{
    if (rc != SHALE_OK && rc != SHALE_NOT_FOUND && *first == SHALE_OK) {
        *first = err_copy(err, e);
    }
}

/* Writes the content a rename replaced back under its name, tracked with its old synced length
 * so the cut below drops what was never durable. Locks: fe->mu held. */
static shale_code restore(env_fault *fe, const moved *m, shale_error *err)
{
    const shale_env *b = fe->base;
    env_file *f = NULL;
    tracked *t = calloc(1, sizeof *t);
    shale_code rc;

    if (t == NULL || (t->path = strdup(m->to)) == NULL) {
        free(t);
        return err_nomem(err);
    }
    rc = b->open_file(b, m->to, ENV_WRITE | ENV_CREATE | ENV_TRUNC, &f, err);
    if (rc == SHALE_OK && m->old_len > 0) {
        rc = env_file_append(f, m->old_data, m->old_len, err);
    }
    if (f != NULL) {
        shale_code crc = env_file_close(f, rc == SHALE_OK ? err : NULL);
        rc = rc != SHALE_OK ? rc : crc;
    }
    if (rc != SHALE_OK) {
        free(t->path);
        free(t);
        return rc;
    }
    tracked *old = lookup(fe, m->to);
    if (old != NULL) {
        forget(fe, old); /* whatever stood there since is not durable */
    }
    t->synced_len = m->old_synced;
    t->cur_len = m->old_len;
    t->next = fe->files;
    fe->files = t;
    return SHALE_OK;
}

shale_code env_fault_drop_unsynced(env_fault *fe, env_fault_drop_mode mode, uint64_t seed,
                                   shale_error *err)
{
    const shale_env *b = fe->base;
    uint64_t rng = seed != 0 ? seed : 0x9e3779b97f4a7c15ull; /* xorshift must not start at 0 */
    shale_code first = SHALE_OK;
    shale_error e;
    tracked *t;

    pthread_mutex_lock(&fe->mu);
    /* Newest first, so a chain a -> b -> c walks back to a. */
    for (moved *m = fe->renames; m != NULL; m = m->next) {
        shale_code rc = b->rename_file(b, m->to, m->from, &e);
        keep_first(rc, &e, &first, err);
        if (rc == SHALE_OK) {
            if ((t = lookup(fe, m->from)) != NULL) {
                forget(fe, t); /* overwritten by the file moving back */
            }
            if ((t = lookup(fe, m->to)) != NULL) {
                free(t->path);
                t->path = m->from; /* moved into t */
                m->from = NULL;
            }
        }
        /* The file the rename replaced comes back, even if `to` was removed since (that removal
         * was not durable either). */
        if (m->replaced) {
            keep_first(restore(fe, m, &e), &e, &first, err);
        }
    }
    free_renames(fe);
    for (t = fe->files; t != NULL; t = t->next) {
        if (t->gone) {
            continue;
        }
        if (t->undurable) {
            keep_first(b->remove_file(b, t->path, &e), &e, &first, err);
        } else {
            keep_first(cut(b, t, mode, &rng, &e), &e, &first, err);
        }
    }
    free_dirops(fe);
    fe->history_broken = false;
    /* Reset: the surviving files are the new durable state. */
    for (tracked *next = NULL, *cur = fe->files; cur != NULL; cur = next) {
        next = cur->next;
        forget(fe, cur);
    }
    fe->crashed = false;
    fe->crash_after = 0;
    memset(fe->faults, 0, sizeof fe->faults);
    pthread_mutex_unlock(&fe->mu);
    return first;
}

/* ---- crash states ---- */

/* One choice of a crash state: a piece of an unsynced write, or a directory operation. */
typedef struct unit {
    tracked *t; /* the file of a data piece; NULL for a dirop */
    dirop *d;
    uint64_t off, len;
    bool keep;
} unit;

void env_fault_set_unit_filter(env_fault *fe, bool (*is_unit)(const char *path))
{
    pthread_mutex_lock(&fe->mu);
    fe->is_unit = is_unit;
    pthread_mutex_unlock(&fe->mu);
}

static bool counts(const env_fault *fe, const char *path)
{
    return fe->is_unit == NULL || fe->is_unit(path);
}

static uint64_t grain_bytes(env_fault_grain g)
{
    return g == ENV_FAULT_GRAIN_512 ? 512u : g == ENV_FAULT_GRAIN_4K ? 4096u : 0u;
}

/* Lists the units of the history in a fixed order (each file's pieces in file order, files in
 * list order, then the dirops newest first) into out (when not NULL); returns how many.
 * Locks: fe->mu held. */
static size_t collect(const env_fault *fe, env_fault_grain g, unit *out)
{
    uint64_t sector = grain_bytes(g);
    size_t n = 0;

    for (tracked *t = fe->files; t != NULL; t = t->next) {
        if (t->gone || !counts(fe, t->path)) {
            continue;
        }
        for (size_t i = 0; i < t->next_ext; i++) {
            uint64_t p = t->ext[i].off;
            uint64_t end = p + t->ext[i].len;
            while (p < end) {
                uint64_t q = sector == 0 ? end : (p / sector + 1) * sector;
                q = q < end ? q : end;
                if (out != NULL) {
                    out[n] = (unit){.t = t, .off = p, .len = q - p};
                }
                n++;
                p = q;
            }
        }
    }
    for (dirop *d = fe->dirops; d != NULL; d = d->next) {
        if (counts(fe, d->path) && (d->from == NULL || counts(fe, d->from))) {
            if (out != NULL) {
                out[n] = (unit){.d = d};
            }
            n++;
        }
    }
    return n;
}

uint64_t env_fault_units(env_fault *fe, env_fault_grain grain)
{
    pthread_mutex_lock(&fe->mu);
    uint64_t n = collect(fe, grain, NULL);
    pthread_mutex_unlock(&fe->mu);
    return n;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void addf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void addf(char *buf, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(buf);
    va_list ap;

    if (len + 1 >= cap) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

/* Chooses which units survive in random state (seed, state); sets *extend per file run through
 * the `extend` flags (one per unit, meaningful on a file's first unit). */
static void choose_random(unit *u, size_t n, uint64_t seed, uint64_t state, bool *extend)
{
    uint64_t rng = mix64(seed ^ mix64(state ^ 0x5eed));
    uint64_t style;

    rng = rng != 0 ? rng : 1;
    style = xorshift(&rng) % 6;
    if (style == 0) {
        /* Prefix-only (the ordered model): each file keeps a random prefix of its pieces. */
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && u[j].t != NULL && u[j].t == u[i].t) {
                j++;
            }
            if (j == i) { /* a dirop */
                u[i].keep = xorshift(&rng) % 2 == 0;
                i++;
                continue;
            }
            size_t cut = i + (size_t)(xorshift(&rng) % (j - i + 1));
            for (size_t k = i; k < j; k++) {
                u[k].keep = k < cut;
            }
            i = j;
        }
    } else if (style == 1 || style == 2) {
        /* Exactly one unit lost (1) or kept (2). */
        size_t pick = n > 0 ? (size_t)(xorshift(&rng) % n) : 0;
        for (size_t i = 0; i < n; i++) {
            u[i].keep = (i == pick) == (style == 2);
        }
    } else {
        uint64_t p = style - 2; /* keep with probability p/4 */
        for (size_t i = 0; i < n; i++) {
            u[i].keep = xorshift(&rng) % 4 < p;
        }
    }
    for (size_t i = 0; i < n; i++) {
        extend[i] = xorshift(&rng) % 4 == 0;
    }
}

/* Rewrites path with data[0, len) through the base env. */
static shale_code rewrite(const shale_env *b, const char *path, const void *data, size_t len,
                          shale_error *err)
{
    env_file *f = NULL;
    shale_code rc = b->open_file(b, path, ENV_WRITE | ENV_CREATE | ENV_TRUNC, &f, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    if (len > 0) {
        rc = env_file_append(f, data, len, err);
    }
    shale_code crc = env_file_close(f, rc == SHALE_OK ? err : NULL);
    return rc != SHALE_OK ? rc : crc;
}

/* Applies the data pieces u[i, j) of one file t. */
static shale_code apply_file(const shale_env *b, const tracked *t, const unit *u, size_t i,
                             size_t j, bool extend, env_fault_state_info *info, shale_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    uint64_t kept_end = 0;
    size_t lost = 0;
    shale_code rc;

    for (size_t k = i; k < j; k++) {
        lost += !u[k].keep;
        if (u[k].keep && u[k].off + u[k].len > kept_end) {
            kept_end = u[k].off + u[k].len;
        }
    }
    if (lost == 0) {
        return SHALE_OK; /* every unsynced byte survived: the crashed file as it is */
    }
    rc = env_read_file(b, t->path, SIZE_MAX, (void **)&data, &size, err);
    if (rc == SHALE_NOT_FOUND) {
        return SHALE_OK;
    }
    if (rc != SHALE_OK) {
        return rc;
    }
    uint64_t new_len = t->synced_len < size ? t->synced_len : size;
    new_len = kept_end > new_len ? kept_end : new_len;
    if (extend && size > new_len) {
        new_len = size;
        info->extended = true;
    }
    new_len = new_len < size ? new_len : size;
    bool hole = false;
    for (size_t k = i; k < j; k++) {
        if (u[k].keep || u[k].off >= new_len) {
            continue;
        }
        uint64_t end = u[k].off + u[k].len < new_len ? u[k].off + u[k].len : new_len;
        memset(data + u[k].off, 0, (size_t)(end - u[k].off));
        if (u[k].off < kept_end && !hole) {
            hole = true;
            if (!info->reordered) {
                snprintf(info->first_hole, sizeof info->first_hole, "%s @%" PRIu64, t->path,
                         u[k].off);
            }
            info->reordered = true;
        }
    }
    const char *base = strrchr(t->path, '/');
    addf(info->detail, sizeof info->detail, "%s: lost %zu/%zu, size %" PRIu64 "->%" PRIu64 "%s; ",
         base != NULL ? base + 1 : t->path, lost, j - i, (uint64_t)size, new_len,
         hole ? " (hole)" : "");
    rc = rewrite(b, t->path, data, (size_t)new_len, err);
    free(data);
    return rc;
}

static bool exists(const shale_env *b, const char *path)
{
    return b->stat_path(b, path, NULL, NULL, NULL) == SHALE_OK;
}

static bool pinned(const char *const *pins, size_t npins, const char *path)
{
    for (size_t i = 0; i < npins; i++) {
        if (strcmp(pins[i], path) == 0) {
            return true;
        }
    }
    return false;
}

/* Undoes d if it can be without clashing with a newer surviving operation; returns whether it
 * did (false: d counts as surviving). */
static bool undo_dirop(const shale_env *b, const dirop *d, const char *const *pins, size_t npins,
                       shale_code *rc, shale_error *err)
{
    if (pinned(pins, npins, d->path) || (d->from != NULL && pinned(pins, npins, d->from))) {
        return false;
    }
    switch (d->kind) {
    case DOP_CREATE:
    case DOP_LINK:
        if (!exists(b, d->path)) {
            return false;
        }
        *rc = b->remove_file(b, d->path, err);
        return true;
    case DOP_RENAME:
        if (!exists(b, d->path) || exists(b, d->from)) {
            return false;
        }
        *rc = b->rename_file(b, d->path, d->from, err);
        if (*rc == SHALE_OK && d->has_old) {
            *rc = rewrite(b, d->path, d->old, d->old_len, err);
        }
        return true;
    case DOP_REMOVE:
        if (!d->has_old || exists(b, d->path)) {
            return false;
        }
        *rc = rewrite(b, d->path, d->old, d->old_len, err);
        return true;
    default:
        return false;
    }
}

shale_code env_fault_make_state(env_fault *fe, env_fault_grain grain, uint64_t state, uint64_t seed,
                                env_fault_state_info *info_out, shale_error *err)
{
    static const char *const kinds[] = {"create", "rename", "link", "remove"};
    const shale_env *b = fe->base;
    env_fault_state_info info;
    shale_code rc = SHALE_OK;
    unit *u = NULL;
    bool *extend = NULL;
    const char **pins = NULL;
    size_t n, npins = 0;

    memset(&info, 0, sizeof info);
    pthread_mutex_lock(&fe->mu);
    if (fe->history_broken) {
        rc = err_set(err, SHALE_NOMEM, ENOMEM, "env_fault: the write history is incomplete");
        goto out;
    }
    n = collect(fe, grain, NULL);
    u = calloc(n + 1, sizeof *u);
    extend = calloc(n + 1, sizeof *extend);
    pins = calloc(n + 1, sizeof *pins);
    if (u == NULL || extend == NULL || pins == NULL) {
        rc = err_nomem(err);
        goto out;
    }
    collect(fe, grain, u);
    info.units = n;
    for (size_t i = 0; i < n; i++) {
        info.data_units += u[i].t != NULL;
    }
    if (n <= ENV_FAULT_EXHAUSTIVE_MAX && state < ((uint64_t)1 << n)) {
        info.exhaustive = true;
        for (size_t i = 0; i < n; i++) {
            u[i].keep = (state >> i) & 1;
        }
    } else {
        choose_random(u, n, seed, state, extend);
    }
    /* File contents first (they belong to the files, wherever their names end up)... */
    for (size_t i = 0; i < n && rc == SHALE_OK;) {
        size_t j = i;
        if (u[i].t == NULL) {
            i++;
            continue;
        }
        while (j < n && u[j].t == u[i].t) {
            info.lost += !u[j].keep;
            j++;
        }
        rc = apply_file(b, u[i].t, u, i, j, extend[i], &info, err);
        i = j;
    }
    /* ...then the names, newest operation first. */
    for (size_t i = 0; i < n && rc == SHALE_OK; i++) {
        const dirop *d = u[i].d;
        if (d == NULL) {
            continue;
        }
        if (!u[i].keep && undo_dirop(b, d, pins, npins, &rc, err)) {
            info.lost++;
            info.dirops_undone++;
            const char *base = strrchr(d->path, '/');
            addf(info.detail, sizeof info.detail, "undo %s %s%s%s; ", kinds[d->kind],
                 d->from != NULL ? strrchr(d->from, '/') ? strrchr(d->from, '/') + 1 : d->from : "",
                 d->from != NULL ? "->" : "", base != NULL ? base + 1 : d->path);
        } else {
            pins[npins++] = d->path;
        }
    }
out:
    pthread_mutex_unlock(&fe->mu);
    free(u);
    free(extend);
    free(pins);
    if (info_out != NULL) {
        *info_out = info;
    }
    return rc;
}
