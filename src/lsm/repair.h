/*
 * repair: salvages what is readable of a damaged database into a NEW database (RocksDB's
 * RepairDB is the model; `shale check DIR --repair NEWDIR`). The source is never modified.
 *
 * Contract:
 *   - The source is only read. Its LOCK is taken for the duration (created if missing, as every
 *     open and `shale check` does; SHALE_BUSY if another handle holds it); nothing in it is
 *     written, truncated, renamed or deleted.
 *   - `dst` must not exist (it is created, 0700) or be an empty directory (SHALE_INVALID
 *     otherwise).
 *   - Every NNNNNN.sst and every NNNNNN.log of the source is read, listed in the manifest or not:
 *     entries carry their sequence numbers, so the newest version of a key wins wherever it was
 *     found, and a tombstone (a newer seq) still hides older puts. The manifest, when readable, is
 *     used for information only (its last sequence number).
 *       tables: footer and index are read; each data block is checksummed, expanded and decoded
 *               whole; a damaged block is skipped and reported (file, offset, size, the key range
 *               between its neighbours' index separators). A table whose footer or index is
 *               damaged is reported lost whole, with its size (no block scan is attempted).
 *       logs:   read with the log reader's salvage (it resyncs at the next valid fragment,
 *               at worst the next 32 KiB block); every record that checksums and decodes as a
 *               batch is kept with its sequence numbers; skipped regions and records that do
 *               not decode are reported (file, offset, bytes). A torn tail of the newest segment
 *               is what a crash leaves (never acknowledged): a note, not a loss.
 *   - What is written: every salvaged version (every (key, seq) once; nothing is dropped, so
 *     snapshot semantics do not matter; the next compaction discards shadowed versions), merged
 *     into internal order and cut into tables of about table_bytes at user-key boundaries, all
 *     in the BOTTOM level (VERSION_LEVELS - 1: disjoint, so no overlap rule is bent, and no
 *     compaction rewrites the data just to move it down). The manifest records last_seq = the
 *     larger of the highest seq salvaged and the source manifest's last_seq (so sequence numbers
 *     never go back), flushed_seq = last_seq, no log. The identity file is copied from the
 *     source when it is intact, else a fresh one is made.
 *   - Memory: log records are collected in memory up to spill_bytes, then sorted and written to
 *     a temporary table in dst (removed before the database is committed); tables are read one
 *     data block at a time per table.
 *   - Durability (docs/ARCHITECTURE.md section 10): every table is fdatasynced and the directory
 *     fsynced before the manifest names them; the manifest goes through version_set_create and
 *     version_set_apply (which write CURRENT); the identity file SHALE is written LAST, atomically:
 *     a directory without SHALE is "not a Shale database", so a repair cut short never leaves
 *     something that opens as a (partial or empty) database. version_set_create writes CURRENT
 *     naming an empty manifest before the tables are listed, which is why the commit point is the
 *     identity file and not CURRENT.
 *
 * Errors: SHALE_OK when a database was produced (check rep for losses); SHALE_BUSY, SHALE_INVALID
 * (dst not empty, src not a directory), SHALE_IO, SHALE_NOMEM when none was. Damage in the source
 * is never an error: it is a loss in the report.
 * Threads: one call at a time per source; nothing is shared.
 */
#ifndef SHALE_LSM_REPAIR_H
#define SHALE_LSM_REPAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shale.h"

#include "env/env.h"

#define REPAIR_MAX_LOSSES 64

/* One description of something not salvaged (or a note, when note is true). */
typedef struct repair_loss {
    char file[32];   /* "000012.sst", "000007.log", "MANIFEST-000004" */
    uint64_t offset; /* where the damage starts (0 for a whole file) */
    uint64_t bytes;  /* bytes not salvaged */
    bool note;       /* true: worth knowing, but nothing acknowledged was lost */
    char what[256];  /* the full human-readable line */
} repair_loss;

typedef struct repair_report {
    /* tables */
    uint64_t tables_read;      /* tables whose footer and index were read */
    uint64_t tables_lost;      /* tables lost whole (footer or index damaged) */
    uint64_t table_lost_bytes; /* their sizes */
    uint64_t blocks_salvaged, blocks_lost, block_lost_bytes;
    /* logs */
    uint64_t log_segments;                     /* segments read (in part or whole) */
    uint64_t log_records;                      /* batch records salvaged */
    uint64_t log_records_lost, log_lost_bytes; /* damaged regions / records skipped */
    uint64_t torn_tail_bytes;                  /* the newest segment's torn tail (a note) */
    /* what was written */
    uint64_t entries_read;    /* entries salvaged from all sources (duplicates included) */
    uint64_t entries_written; /* distinct (key, seq) written into dst */
    uint64_t tables_written;
    uint64_t first_seq, last_seq; /* of the entries written (0, 0 when none) */
    /* the source manifest, for information */
    bool manifest_ok;
    uint64_t manifest_last_seq;
    bool identity_copied; /* false: a fresh identity was made */
    /* losses and notes, the first REPAIR_MAX_LOSSES of them; nlosses_total counts all */
    repair_loss losses[REPAIR_MAX_LOSSES];
    size_t nlosses;
    uint64_t nlosses_total;
} repair_report;

typedef struct repair_options {
    uint64_t spill_bytes; /* log entries held in memory before a spill table; 0 = 64 MiB */
    uint64_t table_bytes; /* target output table size; 0 = 64 MiB */
} repair_options;

/* Salvages src into dst (see above). rep is filled (zeroed first) whatever the result. */
shale_code repair_salvage(const shale_env *env, const char *src, const char *dst,
                          repair_report *rep, shale_error *err) SHALE_MUST_USE;
/* The same with options (NULL = defaults), for tests that need small spills. */
shale_code repair_salvage_opts(const shale_env *env, const char *src, const char *dst,
                               const repair_options *opts, repair_report *rep,
                               shale_error *err) SHALE_MUST_USE;

/* True if the report records any loss (notes do not count). */
bool repair_lost_anything(const repair_report *rep);

#endif
