/*
 * shale.h: the whole public API of libshale, an embeddable, crash-safe, ordered key-value store.
 *
 * Ownership, in one rule (as in jq): a function never takes ownership of its arguments. Slices
 * passed in are borrowed for the duration of the call. Objects a function creates for you
 * (shale_db, shale_batch, shale_iter) are yours until you give them back with the matching
 * _close/_free call, which accepts NULL. Bytes returned through a shale_buf are yours (the buffer
 * is caller-owned and reused across calls; release it with shale_buf_free). Key and value slices
 * returned by an iterator are borrowed until the iterator moves or is freed.
 *
 * Errors: every fallible call returns a shale_code (SHALE_OK is 0) and, when `err` is not NULL,
 * fills it with the code, the errno behind an I/O failure, and a message that names the file and
 * offset where one is involved. No call allocates on the error path, and no call aborts or
 * crashes on bad input: NULL arguments, empty or oversized keys and a directory that is not a
 * database all get SHALE_INVALID (or the code documented at the call).
 *
 * Threads: a shale_db may be shared by any number of threads; every call on it is thread-safe
 * except shale_close, which must be the last call on the handle. A shale_batch, a shale_iter and
 * a shale_txn belong to one thread at a time.
 */
#ifndef SHALE_H
#define SHALE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SHALE_API      __attribute__((visibility("default")))
#define SHALE_MUST_USE __attribute__((warn_unused_result))
#else
#define SHALE_API
#define SHALE_MUST_USE
#endif

#define SHALE_VERSION_MAJOR 0
#define SHALE_VERSION_MINOR 1
#define SHALE_VERSION_PATCH 0

/* Result codes. The set is small and stable; new failure kinds get new messages, not codes. */
typedef enum shale_code {
    SHALE_OK = 0,
    SHALE_NOT_FOUND = 1,  /* the key (or thing) does not exist; not a failure */
    SHALE_INVALID = 2,    /* a bad argument, option or state: the caller can fix it */
    SHALE_CORRUPTION = 3, /* a checksum, magic or length on disk does not match */
    SHALE_IO = 4,         /* the operating system failed a call; err->sys_errno says why */
    SHALE_NOMEM = 5,      /* an allocation failed */
    SHALE_CONFLICT = 6,   /* a concurrent change wins (transactions, conditional writes) */
    SHALE_BUSY = 7,       /* another process holds the database directory */
    SHALE_FULL = 8,       /* a size limit was reached (key, value, batch) */
    SHALE_CLOSED = 9,     /* the handle is closed, or the database stopped taking writes */
} shale_code;

/* Filled by failing calls when non-NULL. Caller-owned; no allocation, so it works under OOM. */
typedef struct shale_error {
    shale_code code;
    int sys_errno; /* errno behind SHALE_IO (and some SHALE_CLOSED), else 0 */
    char msg[256]; /* NUL-terminated; names the file and offset when one is involved */
} shale_error;

/* A fixed text for a code ("not found", "corruption", ...). Never NULL. */
SHALE_API const char *shale_strerror(shale_code code);

/* The library version as "MAJOR.MINOR.PATCH". */
SHALE_API const char *shale_version(void);

/* A borrowed byte range: valid only during the call it is passed to. */
typedef struct shale_slice {
    const void *data;
    size_t len;
} shale_slice;

/* A caller-owned, growable output buffer. Start it zeroed ({0}); calls that return bytes
 * overwrite data/len and grow cap as needed; reuse it across calls to avoid a malloc per read.
 * Release the memory with shale_buf_free. After a failed call its contents are unspecified. */
typedef struct shale_buf {
    void *data;
    size_t len;
    size_t cap;
} shale_buf;

SHALE_API void shale_buf_free(shale_buf *buf);

/* How far a commit travels before the call that made it returns. Chosen at open, overridable per
 * write. What each level survives:
 *   NONE    no log at all; data lives in memory and is gone when the process ends.
 *   MEMORY  the log is buffered in the process and written to the OS by a background thread every
 *           few milliseconds (wal_flush_interval_ms): a process crash loses at most that window.
 *   OS      the commit's log record is handed to the OS (write) before the call returns: it
 *           survives a process crash, not a power loss. The default.
 *   FULL    the log is fdatasync'ed before the call returns: it survives power loss. Concurrent
 *           commits share one write and one fdatasync (group commit).
 * On a database opened with a log, a per-write NONE is treated as MEMORY (a write cannot skip the
 * log without leaving a hole in the recovered history). On a database opened with NONE, a write
 * asking for more than NONE fails with SHALE_INVALID. */
typedef enum shale_durability {
    SHALE_DURABILITY_DEFAULT = 0, /* in shale_options: OS; in shale_write_opts: the database's */
    SHALE_DURABILITY_NONE = 1,
    SHALE_DURABILITY_MEMORY = 2,
    SHALE_DURABILITY_OS = 3,
    SHALE_DURABILITY_FULL = 4,
} shale_durability;

/* Parses "none", "memory", "os" or "full". Returns SHALE_INVALID for anything else. */
SHALE_API SHALE_MUST_USE shale_code shale_durability_parse(const char *text, shale_durability *out,
                                                           shale_error *err);
SHALE_API const char *shale_durability_name(shale_durability level);

/* Table block compression. */
typedef enum shale_compression {
    SHALE_COMPRESSION_DEFAULT = 0, /* LZ4 */
    SHALE_COMPRESSION_NONE = 1,
    SHALE_COMPRESSION_LZ4 = 2,
    SHALE_COMPRESSION_ZSTD = 3,
} shale_compression;

/* Parses "none", "lz4" or "zstd". Returns SHALE_INVALID for anything else. */
SHALE_API SHALE_MUST_USE shale_code shale_compression_parse(const char *text,
                                                            shale_compression *out,
                                                            shale_error *err);

/* The operating-system seam. NULL in the options means the real OS; tests pass a fault-injecting
 * env (see src/env/env.h). */
typedef struct shale_env shale_env;

/* Open options. A NULL pointer means all defaults; a zero field means its documented default, so
 * `shale_options o = { .create_if_missing = true };` works and new fields never change old
 * callers. shale_open validates every field and names the bad one in its error. */
typedef struct shale_options {
    bool create_if_missing;      /* create the directory and database if missing; default false */
    bool error_if_exists;        /* fail with SHALE_INVALID if a database exists; default false */
    bool salvage;                /* recovery skips damaged log records and reports them (in the
                                    SHALE_OK open's stats.salvaged_* and the LOG file) instead of
                                    refusing to open with SHALE_CORRUPTION; default false */
    shale_durability durability; /* default level of every write; 0 = SHALE_DURABILITY_OS */
    uint32_t max_key_bytes;      /* longest key accepted; 0 = 4096; range 1 .. 65536 */
    uint32_t max_value_bytes;    /* longest value accepted; 0 = 4 MiB; range 1 .. 256 MiB */
    uint64_t wal_segment_bytes;  /* roll the log to a new segment past this size;
                                    0 = 64 MiB; range 64 KiB .. 4 GiB */
    uint32_t wal_flush_interval_ms; /* MEMORY durability: the background log write period;
                                       0 = 5 ms; range 1 .. 10000 */
    uint32_t ttl_sweep_interval_ms; /* how often expired keys are removed in the background;
                                       0 = 1000 ms; range 10 .. 3600000 */
    const shale_env *env;           /* NULL = the operating system */

    /* Memory. max_memory_mb bounds what the database holds in memory: the memtables (a quarter,
     * unless write_buffer_bytes says otherwise) and the block cache (the rest). Peak RSS stays
     * within it plus a small overhead (docs/ARCHITECTURE.md, "Memory"). */
    uint32_t max_memory_mb;      /* 0 = 256 MiB; range 4 .. 1048576 */
    uint64_t write_buffer_bytes; /* flush a memtable at this size; 0 = max_memory / 8 (two can be
                                    in memory at once: one filling, one being flushed);
                                    range 64 KiB .. max_memory / 2 */
    uint64_t max_log_bytes;      /* flush once the log holds this many bytes not yet in tables,
                                    bounding recovery time; 0 = 64 MiB; range 64 KiB .. 64 GiB */
    uint32_t flush_idle_ms;      /* flush a non-empty memtable after this long without writes;
                                    0 = 60000; range 10 .. 86400000 */

    /* Tables and compaction. */
    shale_compression compression; /* data block compression; 0 = LZ4 */
    uint64_t table_bytes;          /* target size of compaction output tables; 0 = half the
                                      write buffer, within 1 .. 16 MiB (16 MiB at the default
                                      budget); range 64 KiB .. 1 GiB */
    uint32_t compaction_threads;   /* background compaction threads; 0 = 2; range 1 .. 32 */
    uint32_t max_open_tables; /* table readers kept open (LRU); 0 = 1000; range 16 .. 1000000 */
    uint32_t l0_compaction_trigger; /* compact level 0 at this many tables; 0 = 4; range 2 .. 64.
                                       Writes slow down at twice and stop at three times it. */
    bool read_only; /* open for reading only (RocksDB's OpenForReadOnly): the LOCK is taken as
                       usual (a second open still gets SHALE_BUSY) and the manifest and the live
                       log segments are recovered as a normal open would, but nothing in the
                       directory is created, written, truncated or deleted: a torn log tail is
                       left in place and not replayed (stats.truncated_bytes counts it), no LOG
                       line is written, no background thread runs, and shale_close writes
                       nothing. Every write (put, delete, batch, transaction commit with writes,
                       conditional write, document and index writes), shale_flush,
                       shale_compact, shale_sync, shale_checkpoint and shale_backup return
                       SHALE_INVALID "database is open read-only"; reads, iterators, snapshots,
                       multi_get, stats and the document read calls work. With
                       create_if_missing the open is SHALE_INVALID. Default false */
} shale_options;

typedef struct shale_db shale_db;

/* Opens (with create_if_missing, creates) the database in directory `path` and recovers it by
 * replaying its log. On success stores the handle in *out; give it back with shale_close.
 * Fails with SHALE_BUSY if another process (or handle) has it open, SHALE_INVALID if the
 * directory is not a Shale database or an option is out of range, SHALE_CORRUPTION if a log
 * record before the log's tail fails its checksum (unless opts->salvage), SHALE_IO on an OS
 * failure. A torn final record (a crash mid-write) is not corruption: it is cut off. */
SHALE_API SHALE_MUST_USE shale_code shale_open(const char *path, const shale_options *opts,
                                               shale_db **out, shale_error *err);

/* Stops the background threads, writes out and syncs any log bytes still buffered in the process,
 * closes the files and releases the database's memory, even when it returns an error (the error
 * then says what could not be written). NULL is accepted. No other call may run on `db` while it
 * runs. Afterwards the handle is an inert shell: every call on it, shale_close included, returns
 * SHALE_CLOSED instead of touching freed memory (the shells of the last 256 closes are kept; treat
 * this as a safety net for bugs, not as something to rely on). An iterator left open keeps reading
 * the view it was created on and can still be freed. */
SHALE_API shale_code shale_close(shale_db *db, shale_error *err);

/* Per-write options; NULL means defaults. */
typedef struct shale_write_opts {
    shale_durability durability; /* 0 = the database's level */
} shale_write_opts;

/* A snapshot: a point in time (a sequence number) that reads can be pinned to while writes and
 * compactions go on; compaction keeps every version a live snapshot can see. */
typedef struct shale_snapshot shale_snapshot;

/* Per-read options; NULL means defaults. The snapshot applies to every read; bounds and prefix
 * apply to iterators only; the slices
 * are copied by shale_iter_new. */
typedef struct shale_read_opts {
    const shale_snapshot *snapshot; /* read as of this snapshot; NULL = now */
    shale_slice lower_bound;        /* iterate keys >= this; empty = no lower bound */
    shale_slice upper_bound;        /* iterate keys < this; empty = no upper bound */
    shale_slice prefix;             /* iterate only keys starting with this; combines with bounds */
} shale_read_opts;

/* Writes one key. Keys are 1 .. max_key_bytes bytes, values 0 .. max_value_bytes; anything else
 * fails with SHALE_INVALID (empty key) or SHALE_FULL (too long). Returns once the commit is as
 * durable as the write's level says. SHALE_CLOSED if the database refuses writes after an I/O
 * failure it cannot recover from (shale_stats says why). */
SHALE_API SHALE_MUST_USE shale_code shale_put(shale_db *db, const shale_write_opts *wopts,
                                              shale_slice key, shale_slice value, shale_error *err);

/* As shale_put, with an absolute expiry deadline in Unix milliseconds (wall clock). At and after
 * the deadline the key is invisible to get, exists, multi-get and iteration, also after a
 * restart, and a background sweeper deletes it. expire_at_ms 0 means never; a deadline already
 * in the past is accepted (the key is written expired). */
SHALE_API SHALE_MUST_USE shale_code shale_put_ttl(shale_db *db, const shale_write_opts *wopts,
                                                  shale_slice key, shale_slice value,
                                                  uint64_t expire_at_ms, shale_error *err);

/* Deletes one key. Deleting a missing key succeeds (and is still logged). */
SHALE_API SHALE_MUST_USE shale_code shale_delete(shale_db *db, const shale_write_opts *wopts,
                                                 shale_slice key, shale_error *err);

/* Reads the newest value of `key` into `value`. SHALE_NOT_FOUND if the key is absent, deleted or
 * expired (value->len is then 0). */
SHALE_API SHALE_MUST_USE shale_code shale_get(shale_db *db, const shale_read_opts *ropts,
                                              shale_slice key, shale_buf *value, shale_error *err);

/* What shale_get_info reports beside the value. */
typedef struct shale_entry_info {
    uint64_t seq;          /* the sequence number of the write that stored this value */
    uint64_t expire_at_ms; /* its expiry deadline, 0 = never */
} shale_entry_info;

/* As shale_get, also filling *info. `value` may be NULL to skip copying the value. */
SHALE_API SHALE_MUST_USE shale_code shale_get_info(shale_db *db, const shale_read_opts *ropts,
                                                   shale_slice key, shale_buf *value,
                                                   shale_entry_info *info, shale_error *err);

/* Sets *out to whether `key` has a live value. Returns SHALE_OK either way. */
SHALE_API SHALE_MUST_USE shale_code shale_exists(shale_db *db, const shale_read_opts *ropts,
                                                 shale_slice key, bool *out, shale_error *err);

/* Reads `count` keys at one consistent point in time. values[i] gets key i's value and codes[i]
 * SHALE_OK or SHALE_NOT_FOUND (or SHALE_CORRUPTION / SHALE_IO for a key whose table could not be
 * read). Returns SHALE_OK unless the call itself fails (bad arguments,
 * closed handle, no memory), in which case codes[] are unspecified. */
SHALE_API SHALE_MUST_USE shale_code shale_multi_get(shale_db *db, const shale_read_opts *ropts,
                                                    size_t count, const shale_slice *keys,
                                                    shale_buf *values, shale_code *codes,
                                                    shale_error *err);

/* An atomic write batch: puts and deletes over many keys, applied all or nothing (also across a
 * crash: one log record carries the whole batch). Operations apply in the order added, so a later
 * operation on the same key wins. The batch copies keys and values. */
typedef struct shale_batch shale_batch;

/* Returns a new empty batch, or NULL when out of memory. Free it with shale_batch_free. */
SHALE_API shale_batch *shale_batch_new(void);
SHALE_API void shale_batch_free(shale_batch *batch);
SHALE_API void shale_batch_clear(shale_batch *batch);
/* The number of operations in the batch. */
SHALE_API size_t shale_batch_count(const shale_batch *batch);
/* Adding fails with SHALE_INVALID for an empty key, SHALE_NOMEM when out of memory. Size limits are
 * checked by shale_write against the database's options. */
SHALE_API SHALE_MUST_USE shale_code shale_batch_put(shale_batch *batch, shale_slice key,
                                                    shale_slice value, shale_error *err);
SHALE_API SHALE_MUST_USE shale_code shale_batch_put_ttl(shale_batch *batch, shale_slice key,
                                                        shale_slice value, uint64_t expire_at_ms,
                                                        shale_error *err);
SHALE_API SHALE_MUST_USE shale_code shale_batch_delete(shale_batch *batch, shale_slice key,
                                                       shale_error *err);

/* Commits the batch atomically. An empty batch succeeds and writes nothing. Every key and value is
 * checked against the limits first; one bad entry fails the whole batch and nothing is written.
 * The batch is left unchanged and can be reused or freed. */
SHALE_API SHALE_MUST_USE shale_code shale_write(shale_db *db, const shale_write_opts *wopts,
                                                const shale_batch *batch, shale_error *err);

/* An ordered iterator over a consistent point-in-time view (taken at shale_iter_new): later writes
 * are not seen. Keys come in bytewise order; deleted and expired keys are skipped. Movement calls
 * leave the iterator valid or not; after it becomes invalid, shale_iter_status says whether that
 * was the end (SHALE_OK) or a failure. */
typedef struct shale_iter shale_iter;

SHALE_API SHALE_MUST_USE shale_code shale_iter_new(shale_db *db, const shale_read_opts *ropts,
                                                   shale_iter **out, shale_error *err);
SHALE_API void shale_iter_free(shale_iter *it);
SHALE_API void shale_iter_seek_first(shale_iter *it);
SHALE_API void shale_iter_seek_last(shale_iter *it);
/* Positions at the first key >= target (clamped into the bounds). */
SHALE_API void shale_iter_seek(shale_iter *it, shale_slice target);
/* Positions at the last key <= target (clamped into the bounds). */
SHALE_API void shale_iter_seek_for_prev(shale_iter *it, shale_slice target);
SHALE_API void shale_iter_next(shale_iter *it);
SHALE_API void shale_iter_prev(shale_iter *it);
SHALE_API bool shale_iter_valid(const shale_iter *it);
/* REQUIRES: shale_iter_valid(it). The slices are borrowed until the iterator moves or is freed. */
SHALE_API shale_slice shale_iter_key(const shale_iter *it);
SHALE_API shale_slice shale_iter_value(const shale_iter *it);
SHALE_API shale_entry_info shale_iter_info(const shale_iter *it);
SHALE_API SHALE_MUST_USE shale_code shale_iter_status(const shale_iter *it, shale_error *err);

/* Takes a snapshot of the database as of now. NULL when out of memory or on a closed handle.
 * Release it with shale_snapshot_release (before shale_close; close releases any left). */
SHALE_API shale_snapshot *shale_snapshot_get(shale_db *db);
SHALE_API void shale_snapshot_release(shale_db *db, shale_snapshot *snap);
/* The sequence number a snapshot reads at. */
SHALE_API uint64_t shale_snapshot_seq(const shale_snapshot *snap);

/* Makes every write committed before the call at least as durable as `level`: OS writes the log
 * bytes that MEMORY-level commits left buffered in the process to the OS, FULL also fdatasyncs the
 * log (skipped when nothing was written since this call last synced). DEFAULT means the
 * database's level; NONE and MEMORY return at once. A server uses it to commit a batch of
 * requests at MEMORY level and make them all durable with one write (and one sync) before it
 * answers any of them, as Redis writes its append-only file once per event-loop turn. A failed
 * sync is final: writes stop (SHALE_CLOSED from then on). Thread-safe. */
SHALE_API SHALE_MUST_USE shale_code shale_sync(shale_db *db, shale_durability level,
                                               shale_error *err);

/* Writes the memtable out as a table now and waits for it (and any flush in progress). */
SHALE_API SHALE_MUST_USE shale_code shale_flush(shale_db *db, shale_error *err);

/* Flushes, then compacts every level down until no level overlaps the next and each key is in
 * one table at the bottom: shadowed versions no snapshot needs, tombstones and expired entries are
 * dropped. Waits for it. */
SHALE_API SHALE_MUST_USE shale_code shale_compact(shale_db *db, shale_error *err);

/* Writes a consistent, openable copy of the database into directory `dir`, which must not exist
 * (SHALE_INVALID otherwise). It flushes the memtable first, so the copy holds every write
 * acknowledged before the call (and possibly some made during it), in tables only: tables are
 * hard-linked when `dir` is on the same file system and copied otherwise, and the manifest is
 * copied; no log is needed. Every file, `dir` and its parent are fsynced before it returns.
 * Writes go on meanwhile. */
SHALE_API SHALE_MUST_USE shale_code shale_checkpoint(shale_db *db, const char *dir,
                                                     shale_error *err);

/* ---- Backups ----
 * A backup destination DEST holds any number of backups of one database, each self-contained
 * once restored, and shares the table files they have in common (incremental backups):
 *   DEST/BACKUPS            marks the directory as a backup destination (magic, version, the
 *                           identity of the database it backs up, checksum)
 *   DEST/tables/            table files, each written once and shared by every backup that
 *                           lists it (tables are immutable; named by file number and size)
 *   DEST/NNNNNN/            backup number NNNNNN (1, 2, ...; never reused in DEST): the small
 *                           files of a checkpoint (SHALE, CURRENT, the manifest) and
 *   DEST/NNNNNN/BACKUP      its manifest: magic, format version, backup id, the database's
 *                           identity, the sequence number it reflects, creation time (ms since
 *                           the epoch), and every file it needs (in the backup's directory or in
 *                           tables/) with its size and SHA-256, then a CRC32C of it all.
 * A backup is taken online from a checkpoint (shale_checkpoint): writes go on meanwhile, and the
 * backup holds every write acknowledged before the call. A backup becomes visible (listed,
 * restorable) only once every file and then its BACKUP manifest are written and fsynced; a
 * crash or failure midway leaves a directory without a manifest, which list ignores and the
 * next backup or delete removes. Thread-safe with respect to the database; two processes must
 * not write to one DEST at once (a LOCK file in DEST is held while a backup, delete or purge
 * runs: SHALE_BUSY for the second). A damaged BACKUP manifest stops shale_backup, and stops
 * delete and purge when that backup would remain (SHALE_CORRUPTION naming it): delete it first.
 * Every table is copied into DEST (never hard-linked), so a backup shares no file with the
 * database. */
typedef struct shale_backup_info {
    uint64_t id;            /* 1, 2, ... within DEST */
    uint64_t seq;           /* the newest sequence number the backup holds */
    uint64_t created_at_ms; /* when it was taken, ms since the epoch */
    uint64_t files;         /* files the backup lists */
    uint64_t bytes;         /* their total size */
    uint64_t new_files;     /* of those, written by this backup (the rest were already in DEST) */
    uint64_t new_bytes;
} shale_backup_info;

/* Takes a backup of the open database into dest (created if missing; it must be empty or a
 * backup destination of this same database: SHALE_INVALID otherwise). info (may be NULL) gets
 * what was written. */
SHALE_API SHALE_MUST_USE shale_code shale_backup(shale_db *db, const char *dest,
                                                 shale_backup_info *info, shale_error *err);
/* The complete backups in dest, oldest first: *out is a malloc'ed array of *count entries (the
 * caller frees it with free(); NULL and 0 when there is none). Reads only the BACKUP manifests
 * (checking their CRC32C; a damaged one is SHALE_CORRUPTION naming the file). SHALE_NOT_FOUND if
 * dest is missing, SHALE_INVALID if it is not a backup destination. */
SHALE_API SHALE_MUST_USE shale_code shale_backup_list(const char *dest, shale_backup_info **out,
                                                      size_t *count, shale_error *err);
/* Reads every file backup `id` lists (id 0: every backup) and checks its size and SHA-256:
 * SHALE_OK, SHALE_NOT_FOUND (no such backup), or SHALE_CORRUPTION naming the first file that is
 * missing, of the wrong size, or whose digest differs. */
SHALE_API SHALE_MUST_USE shale_code shale_backup_verify(const char *dest, uint64_t id,
                                                        shale_error *err);
/* Deletes backup `id` (its directory, then every table file no remaining backup lists). */
SHALE_API SHALE_MUST_USE shale_code shale_backup_delete(const char *dest, uint64_t id,
                                                        shale_error *err);
/* Retention: deletes every backup but the newest `keep` (keep >= 1). */
SHALE_API SHALE_MUST_USE shale_code shale_backup_purge(const char *dest, uint32_t keep,
                                                       shale_error *err);
/* Restores backup `id` (0 = the newest) into dir: verifies every file first (as
 * shale_backup_verify; nothing is written if one fails), then writes the database's files into
 * dir, fsyncing each, and CURRENT last, so dir opens as the backed-up state or, if the restore is
 * cut short, does not open at all. dir must be missing or empty (holding at most LOCK) unless
 * overwrite is true, in which case an existing database there is removed first (SHALE_BUSY if it
 * is open; SHALE_INVALID if dir holds something that is not a Shale database, which is never
 * touched). */
SHALE_API SHALE_MUST_USE shale_code shale_restore(const char *dest, uint64_t id, const char *dir,
                                                  bool overwrite, shale_error *err);

/* ---- Conditional writes ----
 * Compare-and-set by version, without a transaction: the version of a value is the sequence
 * number of the write that stored it (shale_entry_info.seq, from shale_get_info or an iterator).
 * The check and the write are one step: no other write can come between them. */

/* Writes `key` only if its current value has version `version`, or, with version 0, only if the
 * key has no live value (absent, deleted or expired): insert-if-absent. SHALE_CONFLICT otherwise,
 * with nothing written. On success *new_version (may be NULL) gets the version of this write. */
SHALE_API SHALE_MUST_USE shale_code shale_put_if_version(shale_db *db,
                                                         const shale_write_opts *wopts,
                                                         shale_slice key, shale_slice value,
                                                         uint64_t version, uint64_t *new_version,
                                                         shale_error *err);
/* Deletes `key` only if its current value has version `version` (not 0). SHALE_NOT_FOUND if the
 * key has no live value, SHALE_CONFLICT if it has another version; nothing is written then. */
SHALE_API SHALE_MUST_USE shale_code shale_delete_if_version(shale_db *db,
                                                            const shale_write_opts *wopts,
                                                            shale_slice key, uint64_t version,
                                                            shale_error *err);

/* ---- Transactions ----
 * Optimistic, multi-key, all or nothing. A transaction reads at a snapshot taken at begin and
 * buffers its writes in memory; reads inside it see its own writes first. Nothing it writes is
 * visible to anyone else until commit, which validates and then writes everything as one log
 * record (one atomic batch), durable at the transaction's level: after a crash a transaction is
 * wholly there or wholly absent.
 *
 * Isolation:
 *   SNAPSHOT (the default)  every read sees the database as of begin. Commit fails with
 *       SHALE_CONFLICT if any key the transaction writes was written by anyone else (another
 *       transaction or a plain write) after begin: the first committer wins. Write skew (two
 *       transactions each reading what the other writes) is possible.
 *   SERIALIZABLE  as SNAPSHOT, and commit also fails if any key the transaction read (found or
 *       not) or any key range its iterators covered was written after begin, which rules out
 *       write skew and phantoms. Costs memory for the read set and, at commit, a scan of every
 *       range read.
 * A conflict's message names the key. A failed commit leaves the database unchanged; retry with
 * a new transaction.
 *
 * Versions: values read in a transaction carry their version (shale_txn_get_info); values the
 * transaction wrote itself report version 0 until commit.
 *
 * Lifetime: begin, any number of reads and writes, then commit or rollback; either ends the
 * transaction, and every later call on it but shale_txn_free fails with SHALE_INVALID ("already
 * committed" / "already rolled back"). shale_txn_free ends (rolls back) a transaction still open
 * and frees it. shale_close rolls back every transaction still open on the database; their
 * calls then return SHALE_CLOSED, and shale_txn_free still frees them.
 *
 * Limits: a transaction's buffered writes (and, serializable, its read set) are bounded by
 * shale_txn_opts.max_bytes: a write that would pass it fails with SHALE_FULL and is not applied
 * (the transaction stays usable). Keys and values obey the database's limits.
 *
 * Threads: a transaction belongs to one thread at a time; any number of transactions (and plain
 * writes) run concurrently on one database. Commit validation runs in the commit pipeline, so a
 * commit briefly delays other writes by the lookups it makes (one per key written, plus the
 * read set when serializable). */
typedef struct shale_txn shale_txn;

typedef enum shale_isolation {
    SHALE_ISOLATION_DEFAULT = 0, /* SNAPSHOT */
    SHALE_ISOLATION_SNAPSHOT = 1,
    SHALE_ISOLATION_SERIALIZABLE = 2,
} shale_isolation;

/* Transaction options; NULL means defaults. */
typedef struct shale_txn_opts {
    shale_isolation isolation;
    shale_durability durability; /* of the commit; 0 = the database's level */
    uint64_t max_bytes;          /* memory for buffered writes and the read set; 0 = the
                                    database's write buffer size; range 64 KiB .. 1 GiB */
    bool unchecked_writes;       /* commit does not check the keys written for conflicts (reads
                                    for update, and the read set when serializable, still are):
                                    for writes no one else can make, such as keys derived from
                                    what the transaction read; saves a lookup per key */
} shale_txn_opts;

SHALE_API SHALE_MUST_USE shale_code shale_txn_begin(shale_db *db, const shale_txn_opts *opts,
                                                    shale_txn **out, shale_error *err);
/* Reads `key`: the transaction's own write if it made one, else the value as of begin.
 * SHALE_NOT_FOUND when absent, deleted or expired. */
SHALE_API SHALE_MUST_USE shale_code shale_txn_get(shale_txn *txn, shale_slice key, shale_buf *value,
                                                  shale_error *err);
/* As shale_txn_get, and the commit will also fail with SHALE_CONFLICT if `key` was written by
 * anyone after begin, whatever the isolation (RocksDB's GetForUpdate): a read the transaction's
 * decision rests on, validated even under SNAPSHOT. `value` may be NULL. */
SHALE_API SHALE_MUST_USE shale_code shale_txn_get_for_update(shale_txn *txn, shale_slice key,
                                                             shale_buf *value, shale_error *err);
/* As shale_txn_get, also filling *info (version 0 for the transaction's own writes). `value` may
 * be NULL. */
SHALE_API SHALE_MUST_USE shale_code shale_txn_get_info(shale_txn *txn, shale_slice key,
                                                       shale_buf *value, shale_entry_info *info,
                                                       shale_error *err);
SHALE_API SHALE_MUST_USE shale_code shale_txn_exists(shale_txn *txn, shale_slice key, bool *out,
                                                     shale_error *err);
SHALE_API SHALE_MUST_USE shale_code shale_txn_put(shale_txn *txn, shale_slice key,
                                                  shale_slice value, shale_error *err);
SHALE_API SHALE_MUST_USE shale_code shale_txn_put_ttl(shale_txn *txn, shale_slice key,
                                                      shale_slice value, uint64_t expire_at_ms,
                                                      shale_error *err);
SHALE_API SHALE_MUST_USE shale_code shale_txn_delete(shale_txn *txn, shale_slice key,
                                                     shale_error *err);
/* An iterator over the database as of begin merged with the transaction's writes made before
 * this call (later writes are not seen, as with every shale_iter). ropts->snapshot must be NULL;
 * bounds and prefix work as for shale_iter_new. Free it with shale_iter_free; it stays readable
 * after the transaction ends. */
SHALE_API SHALE_MUST_USE shale_code shale_txn_iter_new(shale_txn *txn, const shale_read_opts *ropts,
                                                       shale_iter **out, shale_error *err);
/* Validates and commits. SHALE_CONFLICT (naming the key) when validation fails; SHALE_OK with
 * nothing written for a transaction that wrote nothing. Either way the transaction is over. */
SHALE_API SHALE_MUST_USE shale_code shale_txn_commit(shale_txn *txn, shale_error *err);
/* Discards the transaction's writes. */
SHALE_API SHALE_MUST_USE shale_code shale_txn_rollback(shale_txn *txn, shale_error *err);
/* Rolls back if still open, then frees. Accepts NULL. */
SHALE_API void shale_txn_free(shale_txn *txn);
/* The sequence number the transaction reads at. */
SHALE_API uint64_t shale_txn_snapshot_seq(const shale_txn *txn);
/* After a successful commit that wrote something: the version of its last write (its writes
 * carry versions in (snapshot, commit seq]). 0 otherwise. */
SHALE_API uint64_t shale_txn_commit_seq(const shale_txn *txn);

/* ---- Documents ----
 * Named collections of JSON documents on top of the key-value store. Every call that changes
 * documents is one transaction, index entries included: all or nothing, also across a crash,
 * durable at the database's level. Documents and results go in and out as JSON text (UTF-8).
 *
 * Collections: names are 1 .. 64 characters of [A-Za-z0-9_-] (else SHALE_INVALID). A collection
 * is created by its first insert or by shale_coll_create; it lives in the key space (no files),
 * so opening a database reads none of it.
 *
 * Documents: a JSON object, nested at most 32 deep, at most the database's max_value_bytes once
 * encoded; "_id" is a string of 1 .. 512 bytes. An insert without "_id" gets a generated one:
 * 24 hex digits, unique across restarts and processes and increasing with insertion time (48
 * bits of milliseconds, a per-process counter, 32 random bits). A non-string "_id" is
 * SHALE_INVALID; inserting an "_id" that exists is SHALE_CONFLICT. Rejected as SHALE_INVALID
 * with a message: invalid JSON or UTF-8, a top level that is not an object, a duplicate field
 * name, nesting too deep; SHALE_FULL: a document too large.
 *
 * Order and comparison (queries, sorting, indexes): null < false < true < numbers < strings <
 * arrays < objects; numbers by value (1 == 1.0), strings bytewise (case-sensitive). The filter
 * language is in docs/DOCUMENTS.md.
 *
 * Reserved keys: the document layer keeps everything under keys starting with the two bytes
 * 0x00 0xD0; key-value users must not write there.
 *
 * Threads: every call is thread-safe, as shale_db's; a cursor belongs to one thread at a time. */

SHALE_API SHALE_MUST_USE shale_code shale_coll_create(shale_db *db, const char *name,
                                                      shale_error *err);
/* Removes the collection, its documents and its indexes. SHALE_NOT_FOUND if absent. */
SHALE_API SHALE_MUST_USE shale_code shale_coll_drop(shale_db *db, const char *name,
                                                    shale_error *err);
/* out = a JSON array of the collection names, sorted. */
SHALE_API SHALE_MUST_USE shale_code shale_coll_list(shale_db *db, shale_buf *out, shale_error *err);
/* out = {"name":..,"documents":N,"bytes":N,"indexes":[{"field":..,"state":..,"entries":N}],
 * "created_ms":N}: counts by a scan (time grows with the collection, memory does not). */
SHALE_API SHALE_MUST_USE shale_code shale_coll_describe(shale_db *db, const char *name,
                                                        shale_buf *out, shale_error *err);

/* Inserts one document; out (may be NULL) = the stored document as JSON, "_id" included. */
SHALE_API SHALE_MUST_USE shale_code shale_doc_insert(shale_db *db, const char *coll,
                                                     shale_slice json, shale_buf *out,
                                                     shale_error *err);
/* out = the document as JSON. SHALE_NOT_FOUND if absent (or no such collection). */
SHALE_API SHALE_MUST_USE shale_code shale_doc_get(shale_db *db, const char *coll, shale_slice id,
                                                  shale_buf *out, shale_error *err);
/* Shallow merge: each top-level field of `patch` replaces or adds that field. "_id" in the patch
 * must equal id (else SHALE_INVALID: an id never changes). out (may be NULL) = the new document.
 * SHALE_NOT_FOUND if absent. */
SHALE_API SHALE_MUST_USE shale_code shale_doc_update(shale_db *db, const char *coll, shale_slice id,
                                                     shale_slice patch, shale_buf *out,
                                                     shale_error *err);
/* Replaces the whole document; its "_id" is `id` whatever the argument says. SHALE_NOT_FOUND if
 * absent. */
SHALE_API SHALE_MUST_USE shale_code shale_doc_replace(shale_db *db, const char *coll,
                                                      shale_slice id, shale_slice json,
                                                      shale_buf *out, shale_error *err);
/* SHALE_NOT_FOUND if absent. */
SHALE_API SHALE_MUST_USE shale_code shale_doc_delete(shale_db *db, const char *coll, shale_slice id,
                                                     shale_error *err);
/* 1 .. 1000 documents, all or nothing: every document is validated first, then all are inserted
 * in one transaction. out (may be NULL) = a JSON array of the stored documents. On failure the
 * message names the index of the first bad document ("document 3: ..."). */
SHALE_API SHALE_MUST_USE shale_code shale_doc_insert_many(shale_db *db, const char *coll,
                                                          const shale_slice *docs, size_t n,
                                                          shale_buf *out, shale_error *err);
/* 1 .. 1000 shallow merges (ids[i], patches[i]), all or nothing; SHALE_NOT_FOUND (naming the id)
 * if any document is absent. out (may be NULL) = a JSON array of the updated documents. */
SHALE_API SHALE_MUST_USE shale_code shale_doc_update_many(shale_db *db, const char *coll,
                                                          const shale_slice *ids,
                                                          const shale_slice *patches, size_t n,
                                                          shale_buf *out, shale_error *err);

/* Several document operations, on any collections, as one transaction: all of them or none
 * (index entries included), with the same checks and errors as the single calls, each message
 * naming the operation ("operation 3: ..."). Operations see the earlier ones of the same call
 * (an insert then an update of the same _id works). An insert ignores `id` (its _id comes from
 * the document or is generated) and creates a missing collection; update, replace and delete
 * need `id`; update's json is the patch. 1 .. 1000 operations. out (may be NULL) = a JSON array
 * with, per operation, the stored document, or {"_id":..,"deleted":true} for a delete. */
typedef enum shale_doc_op_kind {
    SHALE_DOC_INSERT = 1,
    SHALE_DOC_UPDATE = 2,
    SHALE_DOC_REPLACE = 3,
    SHALE_DOC_DELETE = 4,
} shale_doc_op_kind;
typedef struct shale_doc_op {
    shale_doc_op_kind kind;
    const char *coll;
    shale_slice id;
    shale_slice json;
} shale_doc_op;
SHALE_API SHALE_MUST_USE shale_code shale_doc_apply(shale_db *db, const shale_doc_op *ops, size_t n,
                                                    shale_buf *out, shale_error *err);

/* A query. Zero fields mean defaults. */
typedef struct shale_doc_query {
    shale_slice filter;          /* JSON filter (docs/DOCUMENTS.md); empty = every document */
    const shale_slice *eq_names; /* plus the go-db model: AND of eq_names[i] = eq_values[i] */
    const shale_slice *eq_values;
    size_t neq;
    shale_slice sort;   /* "field,-other": ascending, "-" descending; empty = by _id */
    shale_slice fields; /* projection "a,b.c" ("_id" always kept); empty = whole documents */
    uint32_t limit;     /* 0 = 50; 1 .. 1000, anything larger is SHALE_INVALID */
    uint64_t offset;    /* documents to skip; at most 100000 (use cursors beyond) */
    shale_slice after;  /* a next_cursor from an earlier page: the page after it */
    shale_slice before; /* a prev_cursor: the page before it */
} shale_doc_query;

/* One page: out = {"documents":[...],"has_next":b,"has_prev":b,"next_cursor":s|null,
 * "prev_cursor":s|null,"total":N} (total: every match, not just this page). Results come in a
 * deterministic order: by the sort fields, then _id. Cursors are opaque and stay valid across
 * writes (they name a position, not an offset); a malformed one is SHALE_INVALID. */
SHALE_API SHALE_MUST_USE shale_code shale_doc_find(shale_db *db, const char *coll,
                                                   const shale_doc_query *q, shale_buf *out,
                                                   shale_error *err);
/* out = how the query ran: {"plan":"scan"|"index","index":field|null,"condition":"eq"|"in"|
 * "range"|null,"examined":N,"matched":N} (it runs the query to count). */
SHALE_API SHALE_MUST_USE shale_code shale_doc_explain(shale_db *db, const char *coll,
                                                      const shale_doc_query *q, shale_buf *out,
                                                      shale_error *err);

/* A streaming cursor over every match of q's filter (limit, offset and cursors ignored; sort
 * must be empty: documents come by _id), in constant memory however many there are, reading one
 * snapshot while writes go on. */
typedef struct shale_doc_cursor shale_doc_cursor;
SHALE_API SHALE_MUST_USE shale_code shale_doc_cursor_open(shale_db *db, const char *coll,
                                                          const shale_doc_query *q,
                                                          shale_doc_cursor **out, shale_error *err);
/* out = the next document as JSON; SHALE_NOT_FOUND after the last. */
SHALE_API SHALE_MUST_USE shale_code shale_doc_cursor_next(shale_doc_cursor *c, shale_buf *out,
                                                          shale_error *err);
SHALE_API void shale_doc_cursor_close(shale_doc_cursor *c);

/* Secondary indexes on a field path. Creating one builds it over the existing documents while
 * writes go on; from then on every write maintains it in the document's own transaction (a
 * missing collection is created, empty, with the index). "_id" is always indexed (SHALE_INVALID
 * to create); an existing index is SHALE_CONFLICT; creating one whose build was interrupted (a
 * crash) finishes the build. */
SHALE_API SHALE_MUST_USE shale_code shale_index_create(shale_db *db, const char *coll,
                                                       const char *field, shale_error *err);
SHALE_API SHALE_MUST_USE shale_code shale_index_drop(shale_db *db, const char *coll,
                                                     const char *field, shale_error *err);
/* out = a JSON array of {"field":..,"state":"ready"|"building"}, "_id" first. */
SHALE_API SHALE_MUST_USE shale_code shale_index_list(shale_db *db, const char *coll, shale_buf *out,
                                                     shale_error *err);

/* Counters and gauges. Gauges describe the moment of the call; counters run since open. */
typedef struct shale_stats {
    uint64_t live_keys;       /* keys with a current value (expired keys count until swept):
                                 exact while every write is in the memtable, an estimate once
                                 tables hold data (a put over a key in a table counts as new
                                 until compaction meets both versions) */
    uint64_t memory_bytes;    /* memory held by the memtables: arena blocks and index, with what is
                                 kept for the next memtable */
    uint64_t log_bytes;       /* bytes in the live log segments on disk, plus any buffered */
    uint64_t log_segments;    /* number of log segment files */
    uint64_t last_sequence;   /* the newest committed sequence number */
    uint64_t writes;          /* keys written (puts and deletes) since open */
    uint64_t reads;           /* point reads (get, exists, each key of a multi-get) since open */
    uint64_t batches;         /* commits since open */
    uint64_t group_commits;   /* log records that carried the commits (one per commit group);
                                 batches/group_commits is the average group size */
    uint64_t syncs;           /* fdatasync calls on the log since open */
    uint64_t expired_removed; /* expired keys deleted by the background sweeper since open */
    uint64_t recovered_records; /* log records replayed at open */
    uint64_t salvaged_records;  /* damaged log records skipped at open (salvage only) */
    uint64_t salvaged_bytes;    /* bytes skipped at open (salvage only) */
    uint64_t truncated_bytes;   /* torn-tail bytes cut from the log at open */
    /* Tables and compaction. */
    uint32_t levels;                   /* number of levels below (7) */
    uint64_t level_tables[8];          /* tables per level now */
    uint64_t level_bytes[8];           /* bytes of tables per level now */
    uint64_t immutable_memtables;      /* memtables waiting for their flush (0 or 1) */
    uint64_t flushes, compactions;     /* finished since open */
    uint64_t flush_bytes;              /* table bytes written by flushes since open */
    uint64_t compaction_bytes_read;    /* table bytes read by compactions since open */
    uint64_t compaction_bytes_written; /* table bytes written by compactions since open */
    uint64_t user_bytes_written;       /* key and value bytes written by the user since open */
    double write_amplification;        /* (flush + compaction bytes written) / user bytes */
    uint64_t pending_compaction_bytes; /* estimated bytes compaction must still rewrite */
    uint64_t stall_us, slowdown_us;    /* time writes spent stopped / slowed by level 0 */
    uint64_t stalls;                   /* waits (of up to 100 ms each) of stopped writers */
    uint64_t estimated_live_keys;      /* = live_keys; an estimate once data is in tables */
    uint64_t open_tables;              /* table readers open now */
    uint64_t block_cache_bytes;        /* block cache usage now */
    uint64_t block_cache_capacity;
    uint64_t block_cache_hits, block_cache_misses;
    double block_cache_hit_rate;    /* hits / (hits + misses), 0 when none */
    uint64_t memtable_budget_bytes; /* write_buffer_bytes in effect */
    uint64_t table_bytes_on_disk;   /* sum of level_bytes */
    uint64_t snapshots;             /* live snapshots (open transactions hold one each) */
    uint64_t txns_open;             /* transactions begun and not yet ended */
    uint64_t txn_commits;           /* transactions committed since open (read-only ones too) */
    uint64_t txn_conflicts;         /* commits refused with SHALE_CONFLICT since open, conditional
                                       writes included */
    uint64_t txn_rollbacks;         /* transactions rolled back (or freed open) since open */
    bool writes_stopped;            /* a failed sync or write made the database refuse writes */
    char stop_reason[256];          /* why, when writes_stopped */
    /* Background errors: a flush or compaction that failed is retried on its own; until one
     * succeeds, background_error is set and background_error_msg says what failed (the last
     * failure). Writers stalled behind it (memtable full, or level 0 full) get that error after a
     * few failed retries and go on once a retry succeeds; the failures are LOG lines too. */
    uint64_t flush_failures;        /* consecutive failed flush attempts now (0 once one works) */
    uint64_t compaction_failures;   /* failed compactions since open (background and manual) */
    bool background_error;          /* a flush or compaction error is unresolved now */
    bool compactions_halted;        /* a compaction met damaged data: no compaction runs until
                                       reopen (background_error_msg names it) */
    char background_error_msg[256]; /* the unresolved error, when background_error */
} shale_stats;

SHALE_API SHALE_MUST_USE shale_code shale_stats_get(shale_db *db, shale_stats *out,
                                                    shale_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SHALE_H */
