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
 *   - generating many crash states from one recorded history (env_fault_make_state), after the
 *     ALICE / CrashMonkey model of what a POSIX file system may keep at power loss. The env
 *     records, per file, every write since the file's last successful sync as an ordered list of
 *     extents (offset, length; the bytes are the file's own, since files are append-only), and
 *     every directory operation (create, rename, link, remove) since the last sync_dir of its
 *     directory. A crash state is then built from those "units":
 *       * synced bytes always survive;
 *       * each unsynced write, or each sector-sized piece of it (ENV_FAULT_GRAIN_512 / _4K:
 *         the write cut at file offsets that are multiples of the sector size), survives or is
 *         lost independently of the others: a later write may persist while an earlier one is
 *         lost. A lost piece reads back as zeros (appends only ever cover bytes that were past
 *         the old end of file, or cut off by a truncate). The file ends where its last
 *         surviving piece ends, or (random states only, one file in four) keeps the size it had
 *         at the crash (the size update persisted, the data did not: a zero-filled hole);
 *       * each unsynced directory operation survives or is undone independently: a creation or
 *         link vanishes, a rename goes back to its old name (bringing back the synced content
 *         of a file it replaced: old or new, never neither or both), a removal brings the file
 *         back with its synced content. Undoing walks newest first and skips an undo that would
 *         clash with a newer surviving operation on the same name (the name keeps the newer
 *         file), so every state is a directory a file system could show.
 *     States are numbered: while the history has at most ENV_FAULT_EXHAUSTIVE_MAX units, state
 *     k < 2^units keeps exactly the units whose bit is set in k (so 0 .. 2^units - 1 enumerates
 *     every subset, 0 being "drop everything unsynced"); beyond that, or for larger k, a state
 *     is a random subset drawn deterministically from (seed, k), mixing prefix-only, one-lost,
 *     one-kept and independent (p = 1/4, 1/2, 3/4) subsets. Building a state rewrites the
 *     directory in place through the base env and keeps the history, so the caller restores the
 *     crashed directory (a copy taken right after the crash) before building the next state.
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
/* Power loss at a chosen point: the nth (1-based, from this call) operation that can change the
 * disk (open, write, sync, sync_dir, truncate, rename, remove, mkdir, link) finds the power gone:
 * it fails, and so does everything after, as after env_fault_crash. 0 cancels. */
void env_fault_crash_after(env_fault *f, uint64_t nth);
/* Whether the env is crashed (by env_fault_crash or env_fault_crash_after). */
bool env_fault_crashed(env_fault *f);
/* Power loss, step 2 (after the code under test closed its files): roll back what was not
 * durable, as described above, then unfreeze. */
shale_code env_fault_drop_unsynced(env_fault *f, env_fault_drop_mode mode, uint64_t seed,
                                   shale_error *err);

/* ---- crash states (see above) ---- */

typedef enum env_fault_grain {
    ENV_FAULT_GRAIN_WRITE = 0, /* a unit is a whole write (one append call) */
    ENV_FAULT_GRAIN_512,       /* a unit is a write's piece within one 512-byte sector */
    ENV_FAULT_GRAIN_4K,        /* ... within one 4 KiB page */
} env_fault_grain;

/* Histories with at most this many units are enumerated exhaustively. */
#define ENV_FAULT_EXHAUSTIVE_MAX 10u

typedef struct env_fault_state_info {
    uint64_t units;      /* choices in the history at this grain (data pieces + dir ops) */
    uint64_t data_units; /* of which data pieces */
    uint64_t lost;       /* units lost (undone) in this state */
    bool exhaustive;     /* the state is subset number k of an exhaustive enumeration */
    bool reordered;      /* some file kept unsynced bytes after a lost one (not a prefix) */
    bool extended;       /* some file kept its crash-time size over lost bytes (zeros) */
    uint64_t dirops_undone;
    char first_hole[192]; /* "path @off" of the first lost byte followed by a kept one */
    char detail[512];     /* what was lost, for reproducers (truncated to fit) */
} env_fault_state_info;

/* Only files (and directory operations on names) for which is_unit(path) is true become units;
 * the others keep whatever they had at the crash (say, an informational log). NULL = all. */
void env_fault_set_unit_filter(env_fault *f, bool (*is_unit)(const char *path));
/* The number of units of the recorded history at `grain` (after env_fault_crash). */
uint64_t env_fault_units(env_fault *f, env_fault_grain grain);
/* Power loss, step 2 in the state-generation mode: turns the directory (which must hold what
 * the crash left, as after env_fault_crash and closing every file) into crash state `state` of
 * the recorded history at `grain`, as described above; fills *info (may be NULL). The env stays
 * frozen and the history is kept: restore the crashed directory and call again for another
 * state; reopen with the base env (or another env). Not to be mixed with drop_unsynced. */
shale_code env_fault_make_state(env_fault *f, env_fault_grain grain, uint64_t state, uint64_t seed,
                                env_fault_state_info *info, shale_error *err);

#endif
