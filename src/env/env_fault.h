/*
 * env_fault: a fault-injecting env for tests. It wraps any env (normally env_posix() on a
 * temporary directory) and forwards every call, while:
 *
 *   - counting operations of each kind (env_op; link_file counts as ENV_OP_LINK);
 *   - failing the Nth operation of a kind with a chosen errno (env_fault_fail_nth), once;
 *   - simulating power loss: env_fault_crash() freezes the env (every later operation fails with
 *     EIO, so nothing more reaches disk), and env_fault_drop_unsynced(), called after the code
 *     under test has closed its files, rolls the directory back to what was durable:
 *       * each file written through this env is cut back to its length at its last successful
 *         sync (ENV_FAULT_DROP_ALL), or keeps a random prefix of its unsynced bytes
 *         (ENV_FAULT_KEEP_RANDOM, a torn write), chosen with `seed`;
 *       * a file created through this env whose directory was not fsynced after its creation is
 *         removed;
 *       * a rename whose directory was not fsynced afterwards is undone: the renamed file goes
 *         back to its old name and, when the rename replaced an existing file, that file comes
 *         back with its durable content (a real file system may lose an un-synced rename over
 *         an existing file and keep the old one; a pointer file replaced by write-temp + rename
 *         is then either new or old, never missing). The replaced file's bytes are kept in
 *         memory until a sync_dir makes the rename durable;
 *       * a hard link (link_file) whose directory was not fsynced after it is removed, like a
 *         created file (the source keeps its content).
 *     Afterwards the env is unfrozen and its bookkeeping reset, ready for a reopen.
 *
 * Threads: all calls are thread-safe (one internal mutex).
 * Ownership: env_fault_new copies nothing of `base`, which must outlive the fault env.
 */
#ifndef SHALE_ENV_ENV_FAULT_H
#define SHALE_ENV_ENV_FAULT_H

#include "env/env.h"

typedef struct env_fault env_fault;

typedef enum env_fault_drop_mode {
    ENV_FAULT_DROP_ALL = 0, /* every unsynced byte vanishes */
    ENV_FAULT_KEEP_RANDOM,  /* a random prefix of each file's unsynced bytes survives */
} env_fault_drop_mode;

/* Returns NULL when out of memory. */
env_fault *env_fault_new(const shale_env *base);
void env_fault_free(env_fault *f);
/* The env to pass to the code under test (valid until env_fault_free). */
const shale_env *env_fault_env(env_fault *f);

/* Fails the nth (1-based, counted from this call) future operation of kind `op` with errno
 * `sys_errno` (e.g. EIO, ENOSPC). For ENV_OP_WRITE with short_write, the failing append first
 * writes half of its bytes, as a real short write would. One pending fault per kind. */
void env_fault_fail_nth(env_fault *f, env_op op, uint64_t nth, int sys_errno, bool short_write);
/* Clears every pending fault. */
void env_fault_clear(env_fault *f);
/* Operations of kind `op` seen since env_fault_new (failed ones included). */
uint64_t env_fault_count(env_fault *f, env_op op);

/* Power loss, step 1: from now on every operation fails with EIO. */
void env_fault_crash(env_fault *f);
/* Power loss, step 2 (after the code under test closed its files): roll back what was not
 * durable, as described above, then unfreeze. */
shale_code env_fault_drop_unsynced(env_fault *f, env_fault_drop_mode mode, uint64_t seed,
                                   shale_error *err);

#endif
