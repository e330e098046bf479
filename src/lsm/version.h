/*
 * version: which tables make up the database, level by level, and the manifest that records it.
 *
 * A version is an immutable set of tables per level (VERSION_LEVELS levels). Level 0 holds flushed
 * memtables: its tables may overlap and are ordered newest first (by max_seq, descending). In
 * levels >= 1 tables are sorted by key and never overlap. A version is reference counted: readers
 * and compactions hold one while they use its tables, so a table is deleted only once no live
 * version lists it (version_set_live_files).
 *
 * A version edit is the change between two versions: tables added and removed per level, plus
 * log_number (every log segment numbered below it is obsolete), flushed_seq (every write with a
 * seq <= it is in a table; recovery skips log records at or below it), next_file_number,
 * last_seq and compaction pointers.
 *
 * The manifest (MANIFEST-NNNNNN) is an append-only log of edits in the write-ahead log's framing
 * (src/wal/wal_format.h: blocks, fragments, CRC32C; first record WAL_REC_HEADER carrying the
 * manifest's file number; each edit one WAL_REC_EDIT record). Its first edit after the header is a
 * snapshot of the whole version. CURRENT names the live manifest ("MANIFEST-000005\n"); it is
 * replaced by write-temp, fsync, rename, fsync-dir (env_write_file_atomic). Edit encoding: see
 * version.c and docs/ARCHITECTURE.md (tagged fields, each a varint tag then its payload, then a
 * fixed trailer; unknown tags are corruption).
 *
 * Durable I/O: version_set_apply appends the edit, fdatasyncs the manifest, and only then installs
 * the new version; a new manifest (first apply after open, or a roll over when the manifest passes
 * manifest_roll_bytes) is written with a snapshot, synced, its directory synced, and only then is
 * CURRENT switched to it. A failed sync or write of the manifest is final: the set is broken and
 * every later apply fails with the same error (the caller stops writes). Recovery reads CURRENT and
 * replays the manifest; a torn final record (never acknowledged) is ignored, any other damage is
 * SHALE_CORRUPTION naming the file and offset. A damaged final record looks torn and is ignored
 * too; that is harmless because the files the state before the last edit needs are kept until
 * the next edit is durable (version_set_kept_log_number, version_set_live_files).
 *
 * Lazy: recovery reads only the manifest. Opening (version_set_recover) writes nothing; the first
 * version_set_apply writes a fresh manifest, so a read-only session leaves the directory untouched.
 *
 * Threads: version_set_apply and the compaction picking calls are serialised by the caller (the
 * database's version mutex). version_set_current and version_unref may be called from any thread
 * at any time. Ownership: file_meta structs are shared by versions and reference counted inside
 * the set; callers never free them.
 */
#ifndef SHALE_LSM_VERSION_H
#define SHALE_LSM_VERSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

#include "base/buf.h"
#include "env/env.h"

#define VERSION_LEVELS 7

typedef struct file_meta {
    uint64_t number;
    uint64_t size;
    shale_buf smallest, largest;        /* user keys of the first and last entries */
    uint64_t smallest_seq, largest_seq; /* the seqs of those two entries */
    uint64_t min_seq, max_seq;          /* the table's seq range */
    uint64_t entries, deletions;
    _Atomic int refs;     /* versions (and edits) holding it; private */
    bool being_compacted; /* under the caller's version mutex */
    /* The table's reader, pinned for the meta's life by the first point read that found room for
     * it (table_cache_lookup); NULL until then. Owned by table_cache.c: a read loads it with
     * acquire and uses the reader without touching the table cache; when the meta is freed,
     * `unpin` (set by the pinning thread before it publishes) gives the pin back. */
    _Atomic(void *) reader;
    _Atomic(void *) reader_pin;
    void (*unpin)(struct file_meta *f);
} file_meta;

typedef struct version {
    file_meta **files[VERSION_LEVELS]; /* L0 newest first (max_seq); L1+ sorted by smallest key,
                                          disjoint: no two tables of a level share a user key */
    size_t nfiles[VERSION_LEVELS];
    uint64_t level_bytes[VERSION_LEVELS];
    /* private */
    _Atomic int refs;
    struct version_set *vs;
    struct version *prev, *next; /* the set's list of live versions */
} version;

typedef struct version_edit_file {
    int level;
    file_meta *meta; /* for added files: owned by the edit until applied */
    uint64_t number; /* for deleted files */
} version_edit_file;

typedef struct version_edit {
    bool has_log_number, has_flushed_seq, has_next_file, has_last_seq;
    uint64_t log_number, flushed_seq, next_file_number, last_seq;
    version_edit_file *added;
    size_t nadded, added_cap;
    version_edit_file *deleted;
    size_t ndeleted, deleted_cap;
    /* Compaction pointers: the largest user key last compacted per level (round robin). */
    bool has_pointer[VERSION_LEVELS];
    shale_buf pointer[VERSION_LEVELS];
} version_edit;

void version_edit_init(version_edit *e);
/* Frees what the edit owns (added metas not yet applied). */
void version_edit_free(version_edit *e);
/* Adds a table; `smallest`/`largest` are copied. The file_meta is created with one reference
 * held by the edit. */
shale_code version_edit_add_file(version_edit *e, int level, uint64_t number, uint64_t size,
                                 shale_slice smallest, uint64_t smallest_seq, shale_slice largest,
                                 uint64_t largest_seq, uint64_t min_seq, uint64_t max_seq,
                                 uint64_t entries, uint64_t deletions,
                                 shale_error *err) SHALE_MUST_USE;
shale_code version_edit_delete_file(version_edit *e, int level, uint64_t number,
                                    shale_error *err) SHALE_MUST_USE;
shale_code version_edit_encode(const version_edit *e, shale_buf *out,
                               shale_error *err) SHALE_MUST_USE;
/* Decodes into a fresh edit (version_edit_free it). SHALE_CORRUPTION on anything malformed,
 * naming `where` (e.g. "MANIFEST-000004 @123"). */
shale_code version_edit_decode(const void *data, size_t n, const char *where, version_edit *out,
                               shale_error *err) SHALE_MUST_USE;

/* Compaction shape; zero fields take the defaults. */
typedef struct version_options {
    uint32_t l0_compaction_trigger; /* 0 = 4 tables */
    uint64_t base_level_bytes;      /* level 1 target size; 0 = 64 MiB */
    uint32_t level_ratio;           /* each level this many times the previous; 0 = 10 */
    uint64_t table_bytes;           /* target table size of compaction outputs; 0 = 16 MiB */
    uint64_t manifest_roll_bytes;   /* 0 = 64 MiB */
} version_options;

typedef struct version_set version_set;

/* A set for the database in `dir` (no I/O). NULL when out of memory. */
version_set *version_set_new(const shale_env *env, const char *dir, const version_options *opts);
/* Frees the set. Versions still referenced keep the set's memory until their last version_unref
 * (an iterator left open past shale_close). */
void version_set_free(version_set *vs);

/* A new database: writes MANIFEST-000001 (an empty snapshot), syncs it and the directory, then
 * CURRENT. next_file_number starts at 2. */
shale_code version_set_create(version_set *vs, shale_error *err) SHALE_MUST_USE;
/* Reads CURRENT and replays the manifest. SHALE_NOT_FOUND if CURRENT is missing; SHALE_CORRUPTION
 * for damage (or a table listed twice, or a deleted table that was never added). */
shale_code version_set_recover(version_set *vs, shale_error *err) SHALE_MUST_USE;

/* Applies `edit` (fills in next_file_number and last_seq from the set when unset), makes it
 * durable in the manifest, and installs the result as the current version. On failure nothing
 * changes (and the set is broken if the manifest is in doubt). The edit is left empty of added
 * metas either way; the caller still calls version_edit_free. */
shale_code version_set_apply(version_set *vs, version_edit *edit, shale_error *err) SHALE_MUST_USE;

/* If the last edit left files kept for the state before it (a lower kept log number, or removed
 * tables), applies an empty edit so that they become obsolete; otherwise does nothing (no I/O).
 * For a clean close: the directory is then left holding only the live files. Caller holds its
 * version mutex. */
shale_code version_set_settle(version_set *vs, shale_error *err) SHALE_MUST_USE;

/* Appends to `out` a manifest record (kind byte included) holding a snapshot of the current state:
 * what a new manifest starts with. For shale_checkpoint, whose manifest is that one record (so it
 * has no last edit to lose). Caller holds its version mutex. */
shale_code version_set_snapshot_record(version_set *vs, shale_buf *out,
                                       shale_error *err) SHALE_MUST_USE;

/* The current version with one more reference. */
version *version_set_current(version_set *vs);
void version_ref(version *v);
/* Accepts NULL. */
void version_unref(version *v);

uint64_t version_set_new_file_number(version_set *vs); /* thread-safe */
/* Raises next_file_number to at least n (recovery saw a log numbered n - 1). */
void version_set_mark_file_number_used(version_set *vs, uint64_t n);
uint64_t version_set_next_file_number(version_set *vs);
uint64_t version_set_log_number(version_set *vs);
uint64_t version_set_flushed_seq(version_set *vs);
uint64_t version_set_last_seq(version_set *vs);
/* The log_number in force before the last durable edit (at open: before the manifest's last
 * valid record; for a manifest holding only its snapshot, the snapshot's own). Log segments
 * numbered below it are obsolete; those from it up to version_set_log_number are kept one edit
 * longer, so that losing the last edit (a damaged final manifest record is taken for a torn one)
 * loses no log the state before it needs. */
uint64_t version_set_kept_log_number(version_set *vs);
uint64_t version_set_manifest_number(version_set *vs); /* 0 before the first manifest is known */
uint64_t version_set_manifest_bytes(version_set *vs);

/* Calls fn(number, arg) once for every table listed by any live version, and for every table
 * the last durable edit removed (kept until the next edit is durable, like the logs above), outside
 * the set's lock. */
void version_set_live_files(version_set *vs, void (*fn)(uint64_t number, void *arg), void *arg);

/* A growable list of file numbers; version_numbers_add(number, list) appends (the callback for
 * version_set_live_files). Out of memory sets `nomem` and drops the number. Free `v`. */
typedef struct version_numbers {
    uint64_t *v;
    size_t n, cap;
    bool nomem;
} version_numbers;
void version_numbers_add(uint64_t number, void *arg);

/* ---- Compaction picking (caller holds its version mutex) ---- */

typedef struct compaction {
    int level; /* inputs[0] are in `level`, inputs[1] in level + 1 (the output level) */
    int output_level;
    file_meta **inputs[2];
    size_t ninputs[2];
    version *input_version; /* referenced until compaction_free */
    uint64_t max_output_bytes;
    bool manual;
    /* private: grandparent overlap for output splitting, per-level key pointers */
    file_meta **grandparents;
    size_t ngrandparents, gp_index;
    uint64_t gp_overlap;
    bool gp_seen_key;
    size_t level_ptrs[VERSION_LEVELS];
} compaction;

/* The most urgent compaction (L0 by table count against the trigger; other levels by size against
 * their target), skipping tables being compacted, or NULL if nothing needs it. Targets are sized
 * from the bottom (see version.c): the deepest non-empty level against its static target
 * base_level_bytes * ratio^(level-1), each level above it against a ratio-th of the level below
 * (for the level just above the deepest, of its actual size), at least base_level_bytes and at
 * most the static target; sizes above the deepest level count tombstone-heavy tables as the
 * entries they shadow (RocksDB's compensated size). Marks its inputs being_compacted. At most one
 * L0->L1 compaction runs at a time (a newer L0 table could otherwise fall in a gap of a running
 * one's range). */
compaction *version_set_pick_compaction(version_set *vs);
/* The static target of level >= 1, base_level_bytes * ratio^(level-1): the deepest non-empty
 * level is scored against it (0 for level 0). For shale_compact, which leaves the data in a level
 * under it, so that no background compaction is due right after. */
uint64_t version_set_static_target(const version_set *vs, int level);
/* A compaction of the tables of `level` overlapping [begin, end] (empty slices = unbounded), or
 * NULL if none (or they are busy). Marks its inputs being_compacted. */
compaction *version_set_compact_range(version_set *vs, int level, shale_slice begin,
                                      shale_slice end);
/* True if no table in a level below the output level can hold `key` (so a tombstone for it, or an
 * older version, can be dropped). Keys must be asked in increasing order within one compaction. */
bool compaction_is_bottom_for_key(compaction *c, shale_slice key);
/* True if the output table so far should be closed before `key` is added (it would overlap too
 * many grandparent bytes). Keys must be asked in increasing order. */
bool compaction_should_stop_before(compaction *c, shale_slice key);
/* Adds the deletion of every input table to `edit`, and records the level's round-robin pointer
 * (the largest key of inputs[0]). */
shale_code compaction_add_input_deletions(const compaction *c, version_edit *edit,
                                          shale_error *err) SHALE_MUST_USE;
/* Clears being_compacted on the inputs and drops the references. Accepts NULL. Caller holds the
 * version mutex. */
void compaction_free(compaction *c);

/* Compaction pressure for stats and write stalls. */
typedef struct version_pressure {
    size_t l0_tables;
    double max_score;       /* >= 1 means some level needs compaction */
    uint64_t pending_bytes; /* estimated bytes compactions must rewrite to reach targets */
} version_pressure;
void version_set_pressure(version_set *vs, version_pressure *out);

/* "dir/NNNNNN.sst", "dir/NNNNNN.log", "dir/MANIFEST-NNNNNN" into out. */
void version_table_name(char *out, size_t cap, const char *dir, uint64_t number);
void version_manifest_name(char *out, size_t cap, const char *dir, uint64_t number);

/* The numbered files of a database directory. Every reader of a directory listing (open,
 * recovery, obsolete-file deletion, `shale check`) classifies names with this one parser, so they
 * agree on what is a table, a log segment or a manifest. */
typedef enum version_file_kind {
    VERSION_FILE_OTHER = 0, /* anything else: CURRENT, LOCK, LOG, *.tmp, foreign files */
    VERSION_FILE_TABLE,     /* NNNNNN.sst */
    VERSION_FILE_LOG,       /* NNNNNN.log */
    VERSION_FILE_MANIFEST,  /* MANIFEST-NNNNNN */
} version_file_kind;

/* Classifies a bare file name: six or more decimal digits (what the writers produce, %06),
 * fitting in 64 bits, with exactly the prefix or suffix of its kind. *number is set for every
 * kind but VERSION_FILE_OTHER. */
version_file_kind version_parse_file_name(const char *name, uint64_t *number);

/* The longest CURRENT accepted: "MANIFEST-" and a number, with room to spare (we write six to
 * twenty digits). */
#define VERSION_CURRENT_MAX_BYTES 64u

/* Parses the contents of CURRENT: exactly "MANIFEST-NNNNNN\n" naming a manifest numbered > 0. */
bool version_parse_current(const void *data, size_t len, uint64_t *number);

/* qsort/bsearch comparator for uint64_t arrays of file numbers. */
int version_cmp_u64(const void *a, const void *b);

/* For `shale check`: replays the manifest read-only and checks it: every table listed exists with
 * the recorded size, L1+ tables are sorted and disjoint, file numbers below next_file_number.
 * Appends one human-readable line per problem to `report`; returns SHALE_CORRUPTION if any. */
shale_code version_set_check(version_set *vs, shale_buf *report, shale_error *err) SHALE_MUST_USE;

#endif
