/*
 * wal_writer: appends logical records to one log segment in the wal_format.h framing.
 *
 * Records are framed into an in-process buffer by wal_writer_add (no I/O) and handed to the OS by
 * wal_writer_flush (one write call for everything buffered: that is what makes group commit and
 * the MEMORY durability level cheap). wal_writer_sync makes the flushed bytes durable.
 *
 * Failure rules (the durable I/O rules of the project):
 *   - a failed or short flush truncates the file back to the last successfully flushed offset, so
 *     no half-written record can stand in front of a later good one; the buffered bytes stay
 *     buffered (a later flush may retry them) unless the caller discards them with
 *     wal_writer_discard_unflushed. If that truncate also fails the writer is broken.
 *   - a failed sync is final: the writer is broken, every later call fails with the same error,
 *     and nothing written since the previous successful sync may be acknowledged as durable.
 *
 * Threads: not thread-safe; the caller serialises all calls (db.c holds its log mutex).
 * Ownership: the writer owns its file and buffer; wal_writer_close frees it (also on error).
 */
#ifndef SHALE_WAL_WAL_WRITER_H
#define SHALE_WAL_WAL_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "shale.h"

#include "env/env.h"

typedef struct wal_writer wal_writer;

/* Creates dir/name (which must not exist), writes and fsyncs the segment header record carrying
 * `file_number`, and fsyncs `dir`, so the segment is durable before anything is written to it. */
shale_code wal_writer_create(const shale_env *env, const char *dir, const char *name,
                             uint64_t file_number, wal_writer **out,
                             shale_error *err) SHALE_MUST_USE;

/* The same for a log segment that follows segment `prev_number`, whose final size is
 * `prev_size`: a WAL_REC_PREV record naming them goes right after the header, in the same synced
 * write (wal_format.h). prev_number 0 makes no claim (as wal_writer_create). */
shale_code wal_writer_create_next(const shale_env *env, const char *dir, const char *name,
                                  uint64_t file_number, uint64_t prev_number, uint64_t prev_size,
                                  wal_writer **out, shale_error *err) SHALE_MUST_USE;

/* Frames one logical record (kind byte included by the caller) into the buffer. Fails with
 * SHALE_INVALID if n > WAL_MAX_RECORD_BYTES (the reader would reject it), SHALE_NOMEM, or the
 * sticky error of a broken writer. */
shale_code wal_writer_add(wal_writer *w, const void *rec, size_t n,
                          shale_error *err) SHALE_MUST_USE;

/* Writes every buffered byte to the file (one append). No-op when nothing is buffered. */
shale_code wal_writer_flush(wal_writer *w, shale_error *err) SHALE_MUST_USE;

/* fdatasync. Flushes first if anything is buffered. */
shale_code wal_writer_sync(wal_writer *w, shale_error *err) SHALE_MUST_USE;

/* Writes (one append, no sync) a sync marker for the last sync, if one is due (wal_format.h):
 * the proof that the bytes before it are durable, for a sync no record may follow soon (the
 * next record would carry one anyway). A failed write leaves the marker buffered for the next
 * flush; nothing written before it is affected. */
shale_code wal_writer_mark(wal_writer *w, shale_error *err) SHALE_MUST_USE;

/* Drops buffered bytes not yet flushed and rewinds the framing state to the flushed offset. */
void wal_writer_discard_unflushed(wal_writer *w);

/* Bytes in the segment counting buffered ones, and counting only those handed to the OS. */
uint64_t wal_writer_size(const wal_writer *w);
uint64_t wal_writer_flushed_size(const wal_writer *w);
uint64_t wal_writer_buffered_bytes(const wal_writer *w);
uint64_t wal_writer_file_number(const wal_writer *w);
/* True once a sync (or an unrecoverable flush) failed; err gets the sticky error. */
bool wal_writer_broken(const wal_writer *w, shale_error *err);

/* Flushes, optionally syncs, closes and frees. Accepts NULL. On a broken writer
 * it returns the sticky error (and still closes and frees). */
shale_code wal_writer_close(wal_writer *w, bool sync, shale_error *err);

#endif
