/*
 * recovery: rebuilds the memtable at open by replaying the log segments the manifest does not
 * cover (numbered >= its log_number), in file-number order, skipping records whose writes are
 * already in tables (seq <= its flushed_seq). Segments below log_number are skipped unread:
 * those from version_set_kept_log_number up are kept on disk one edit longer (version.h), and
 * are replayed only when the manifest's last edit was lost, since log_number is then older.
 *
 * The rules (docs/ARCHITECTURE.md, "Recovery"): a torn tail of the LAST segment is cut off - the
 * file is truncated to the end of its last complete record and synced. Damage anywhere else is
 * corruption: segments are synced before the next one is created, so only the last can be torn.
 * With salvage, damaged regions are skipped and counted instead; salvage never rewrites damaged
 * records (they stay on disk as evidence, and a later open without salvage reports them again,
 * until the memtable holding the salvaged data is flushed and its segments are deleted like any
 * covered log), though a torn tail of the last segment is still cut as in a normal open.
 * Sequence numbers must increase from batch to batch; one that goes backwards is corruption.
 * Each segment after the first names the segment before it and that one's final size
 * (WAL_REC_PREV): a live segment missing or of another size is corruption (check_prev).
 *
 * A read-only open (db_options.read_only) decides exactly the same, and writes nothing: a torn
 * tail is left in the file, simply not replayed (the reader stopped at its valid end), and the
 * last segment is not synced (a later writable open syncs or cuts it).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "lsm/db_impl.h"
#include "wal/wal_format.h"
#include "wal/wal_reader.h"

void recovery_log_name(char *out, size_t cap, uint64_t number)
{
    snprintf(out, cap, "%06llu.log", (unsigned long long)number);
}

static shale_code list_segments(shale_db *db, uint64_t **out, size_t *out_count, shale_error *err)
{
    char **names = NULL;
    size_t count = 0, n = 0;
    shale_code rc;

    rc = db->env->list_dir(db->env, db->path, &names, &count, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    *out = calloc(count ? count : 1, sizeof **out);
    if (*out == NULL) {
        env_free_names(names, count);
        return err_nomem(err);
    }
    uint64_t first = version_set_log_number(db->vs);
    for (size_t i = 0; i < count; i++) {
        if (version_parse_file_name(names[i], &(*out)[n]) == VERSION_FILE_LOG) {
            /* Every number seen is spent, also those of obsolete segments not yet deleted and of
             * covered ones kept for the state before the last edit. */
            version_set_mark_file_number_used(db->vs, (*out)[n] + 1);
            if ((*out)[n] >= first) {
                n++;
            }
        }
    }
    env_free_names(names, count);
    qsort(*out, n, sizeof **out, version_cmp_u64);
    *out_count = n;
    return SHALE_OK;
}

/* Cuts a torn tail: truncate to `valid_end` and sync; a segment with no complete record at all
 * (its header never became durable) is removed instead. */
static shale_code cut_tail(shale_db *db, const char *path, uint64_t valid_end, shale_error *err)
{
    env_file *f = NULL;
    shale_code rc;

    if (valid_end == 0) {
        rc = db->env->remove_file(db->env, path, err);
        if (rc != SHALE_OK) {
            return rc;
        }
        return db->env->sync_dir(db->env, db->path, err);
    }
    rc = db->env->open_file(db->env, path, ENV_WRITE, &f, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = env_file_truncate(f, valid_end, err);
    if (rc == SHALE_OK) {
        rc = env_file_sync(f, false, err);
    }
    shale_code crc = env_file_close(f, rc == SHALE_OK ? err : NULL);
    return rc != SHALE_OK ? rc : crc;
}

static shale_code sync_segment(shale_db *db, const char *path, shale_error *err)
{
    env_file *f = NULL;
    shale_code rc = db->env->open_file(db->env, path, ENV_READ, &f, err);

    if (rc != SHALE_OK) {
        return rc;
    }
    rc = env_file_sync(f, false, err);
    shale_code crc = env_file_close(f, rc == SHALE_OK ? err : NULL);
    return rc != SHALE_OK ? rc : crc;
}

typedef struct replay_state {
    shale_db *db;
    memtable_loader *loader; /* the memtable is empty at open: bulk-load it */
    uint64_t last_seq;
    uint64_t flushed_seq; /* records at or below are in tables (the manifest says) */
    /* The segments replayed, in order, with their final sizes (SEGMENT_GONE once removed). */
    const uint64_t *numbers;
    uint64_t *sizes;
    size_t index; /* the one being replayed */
} replay_state;

#define SEGMENT_GONE UINT64_MAX

/* A segment's WAL_REC_PREV (wal_format.h) names the segment before it and the size that one
 * ended at. A live segment missing, or with another size, lost records no torn-tail rule could
 * see: a closed segment cut at a record boundary reads as complete. */
static shale_code check_prev(replay_state *st, const char *name, const wal_reader_stats *stats,
                             shale_error *err)
{
    shale_db *db = st->db;
    shale_code rc = SHALE_OK;

    if (!stats->has_prev || stats->prev_number < version_set_log_number(db->vs)) {
        return SHALE_OK; /* no claim, or about a segment the manifest no longer needs */
    }
    size_t j = 0;
    while (j < st->index && st->numbers[j] != stats->prev_number) {
        j++;
    }
    if (j == st->index) {
        rc = err_set(err, SHALE_CORRUPTION, 0,
                     "%s names %06" PRIu64 ".log as the segment before it, which is missing "
                     "(MANIFEST-%06" PRIu64 " needs the logs from %06" PRIu64 ".log)",
                     name, stats->prev_number, version_set_manifest_number(db->vs),
                     version_set_log_number(db->vs));
    } else if (st->sizes[j] != stats->prev_size) {
        rc = err_set(err, SHALE_CORRUPTION, 0,
                     "%06" PRIu64 ".log is %" PRIu64 " bytes, but %s (made after it was closed) "
                     "says it ended at %" PRIu64,
                     stats->prev_number, st->sizes[j], name, stats->prev_size);
    }
    if (rc != SHALE_OK && db->opts.salvage) {
        db_log(db, "salvage: %s", err->msg);
        db->salvaged_records++;
        return SHALE_OK;
    }
    return rc;
}

static shale_code load_op(void *arg, uint64_t seq, const batch_op *op, shale_error *err)
{
    replay_state *st = arg;
    return memtable_loader_add(st->loader, seq, op->type, op->key, op->value, op->expire_at_ms,
                               err);
}

static shale_code replay_segment(replay_state *st, uint64_t number, bool is_last, shale_error *err)
{
    shale_db *db = st->db;
    char name[32], *path;
    wal_reader *r = NULL;
    wal_reader_stats stats;
    shale_code rc;

    recovery_log_name(name, sizeof name, number);
    path = env_join_path(db->path, name);
    if (path == NULL) {
        return err_nomem(err);
    }
    rc = wal_reader_open(db->env, path, number, db->opts.salvage, &r, err);
    if (rc != SHALE_OK) {
        goto out;
    }
    for (;;) {
        shale_slice rec;
        uint64_t off;
        rc = wal_reader_next(r, &rec, &off, err);
        if (rc == SHALE_NOT_FOUND) {
            rc = SHALE_OK;
            break;
        }
        if (rc != SHALE_OK) {
            goto out;
        }
        const uint8_t *p = rec.data;
        if (rec.len < 1 + BATCH_HEADER_BYTES || p[0] != WAL_REC_BATCH) {
            rc = err_set(err, SHALE_CORRUPTION, 0, "%s @%" PRIu64 ": not a batch record (kind %u)",
                         name, off, rec.len ? p[0] : 0u);
            goto salvage_or_fail;
        }
        uint64_t seq = batch_rep_seq(p + 1);
        uint32_t count = batch_rep_count(p + 1);
        if (seq <= st->last_seq || count == 0 || seq + count - 1 > MEMTABLE_MAX_SEQ ||
            seq + count - 1 < seq) {
            rc = err_set(err, SHALE_CORRUPTION, 0,
                         "%s @%" PRIu64 ": batch sequence %" PRIu64 " (+%u) after %" PRIu64, name,
                         off, seq, count, st->last_seq);
            goto salvage_or_fail;
        }
        if (seq + count - 1 <= st->flushed_seq) {
            st->last_seq = seq + count - 1; /* already in a table */
            db->recovered_records++;
            continue;
        }
        /* Commits take consecutive sequence numbers (a failed one takes none), and everything
         * up to flushed_seq is in tables: a gap means records were lost, e.g. a manifest that
         * fell back to an older state whose logs are gone. Salvage leaves gaps of its own. */
        uint64_t expect = (st->last_seq > st->flushed_seq ? st->last_seq : st->flushed_seq) + 1;
        if (seq != expect && !db->opts.salvage) {
            /* Either a log lost records or the manifest lost edits: name both. */
            rc = err_set(err, SHALE_CORRUPTION, 0,
                         "%s @%" PRIu64 ": batch sequence %" PRIu64 " where %" PRIu64
                         " was due: the records between are missing (MANIFEST-%06" PRIu64
                         " has everything up to %" PRIu64 " in tables)",
                         name, off, seq, expect, version_set_manifest_number(db->vs),
                         st->flushed_seq);
            goto out;
        }
        shale_error berr;
        rc = batch_iterate(p + 1, rec.len - 1, load_op, st, &berr);
        if (rc != SHALE_OK) {
            /* A malformed batch passed its CRC, so this is a bug or deliberate damage; the prefix
             * of the batch already applied cannot be taken back, so even salvage stops here. */
            rc = err_set(err, rc, berr.sys_errno, "%s @%" PRIu64 ": %s", name, off, berr.msg);
            goto out;
        }
        st->last_seq = seq + count - 1;
        db->recovered_records++;
        continue;
    salvage_or_fail:
        if (!db->opts.salvage) {
            goto out;
        }
        db->salvaged_records++;
        db->salvaged_bytes += rec.len;
        db_log(db, "salvage: skipped %s @%" PRIu64 " (%zu bytes)", name, off, rec.len);
        rc = SHALE_OK;
    }
    wal_reader_get_stats(r, &stats);
    /* A segment without a record is a creation that failed after its header was written (a
     * failed roll keeps the old segment growing past the size named here): its claim protects
     * nothing, and the next segment with records names the one before it itself. */
    if (stats.records > 1) {
        rc = check_prev(st, name, &stats, err);
        if (rc != SHALE_OK) {
            goto out;
        }
    }
    db->salvaged_records += stats.salvaged_records;
    db->salvaged_bytes += stats.salvaged_bytes;
    if (stats.salvaged_records > 0) {
        db_log(db, "salvage: %s: skipped %" PRIu64 " damaged regions, %" PRIu64 " bytes", name,
               stats.salvaged_records, stats.salvaged_bytes);
    }
    if (stats.torn_tail) {
        if (!is_last && !db->opts.salvage) {
            rc = err_set(err, SHALE_CORRUPTION, 0,
                         "%s @%" PRIu64 ": incomplete record in a segment that is not the last",
                         name, stats.valid_end);
            goto out;
        }
        if (is_last && db->opts.read_only) {
            db->truncated_bytes += stats.file_size - stats.valid_end; /* ignored, not cut */
        } else if (is_last) {
            db_log(db, "recovery: %s: torn tail cut at %" PRIu64 " (%" PRIu64 " bytes)", name,
                   stats.valid_end, stats.file_size - stats.valid_end);
            db->truncated_bytes += stats.file_size - stats.valid_end;
            rc = cut_tail(db, path, stats.valid_end, err);
            if (rc != SHALE_OK) {
                goto out;
            }
            stats.file_size = stats.valid_end;
            if (stats.valid_end == 0) {
                st->sizes[st->index] = SEGMENT_GONE;
                goto out; /* removed: not a segment any more */
            }
        }
    }
    if (is_last && !stats.torn_tail && !db->opts.read_only) {
        /* A process crash can leave the last segment's tail in the page cache only. The next
         * segment is made durable on its own, so without this sync a power loss later could
         * tear a segment that is no longer the last (refused as corruption) or lose acknowledged
         * writes in front of durable ones. (cut_tail syncs a torn one.) */
        rc = sync_segment(db, path, err);
        if (rc != SHALE_OK) {
            goto out;
        }
    }
    db->log_bytes_closed += stats.file_size;
    db->log_segments++;
    st->sizes[st->index] = stats.file_size;
out:
    wal_reader_close(r);
    free(path);
    return rc;
}

shale_code recovery_replay(shale_db *db, shale_error *err)
{
    uint64_t *numbers = NULL;
    size_t count = 0;
    replay_state st = {.db = db, .flushed_seq = version_set_flushed_seq(db->vs)};
    memtable_load_stats loaded;
    shale_code rc;

    rc = list_segments(db, &numbers, &count, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    st.numbers = numbers;
    st.sizes = calloc(count ? count : 1, sizeof *st.sizes);
    if (st.sizes == NULL) {
        free(numbers);
        return err_nomem(err);
    }
    rc = memtable_loader_new(db->mem, &st.loader, err);
    if (rc != SHALE_OK) {
        free(st.sizes);
        free(numbers);
        return rc;
    }
    for (size_t i = 0; i < count; i++) {
        st.index = i;
        st.sizes[i] = SEGMENT_GONE;
        rc = replay_segment(&st, numbers[i], i + 1 == count, err);
        if (rc != SHALE_OK) {
            break;
        }
        if (st.sizes[i] != SEGMENT_GONE) {
            db->last_log_number = numbers[i];
        }
    }
    if (rc == SHALE_OK) {
        /* Sorts and links everything replayed; frees the loader either way. */
        rc = memtable_loader_finish(st.loader, &loaded, err);
    } else {
        memtable_loader_free(st.loader);
    }
    if (rc == SHALE_OK) {
        db->last_seq = st.last_seq;
        atomic_store_explicit(&db->visible_seq, st.last_seq, memory_order_release);
        db->live_keys += (int64_t)loaded.live_keys;
        atomic_fetch_add_explicit(&db->ttl_puts, loaded.ttl_puts, memory_order_relaxed);
        db_log(db, "recovery: %zu segments, %" PRIu64 " records, last sequence %" PRIu64, count,
               db->recovered_records, db->last_seq);
    }
    free(st.sizes);
    free(numbers);
    return rc;
}
