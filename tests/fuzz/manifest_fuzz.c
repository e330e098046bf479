/*
 * libFuzzer target for the manifest (src/lsm/version.c): version edits, CURRENT, and a whole
 * manifest replayed by recovery. Built and replayed like every target in tests/fuzz (README.md
 * there).
 *
 * The input is used three ways:
 *   1. As CURRENT's contents: version_parse_current accepts exactly "MANIFEST-" + six or more
 *      digits naming a number > 0 + "\n" (checked against a parse written here).
 *   2. As one encoded edit: version_edit_decode returns SHALE_OK or SHALE_CORRUPTION (naming
 *      `where`); a decoded edit's tables have smallest <= largest and min_seq <= max_seq, and
 *      encoding it (version_edit_encode) and decoding that gives the same edit and, encoded
 *      again, the same bytes.
 *   3. As a manifest file: the in-memory env (fuzz_util.h) serves it as MANIFEST-<n>, n taken
 *      from the input's segment header (so the fuzzer reaches the edits), with a CURRENT naming
 *      it, and version_set_recover replays it. It must return SHALE_OK or SHALE_CORRUPTION (naming
 *      the manifest or CURRENT). A recovered set must be a valid version: no table listed twice,
 *      level 0 newest first, levels >= 1 sorted and disjoint, level byte counts the sums of the
 *      sizes, file numbers handed out above every table and the manifest, the kept log number
 *      not above the log number, the manifest's valid bytes within the file. Then compaction
 *      picking runs on it (automatic picks until none is due, and a manual range on each level):
 *      each compaction's inputs come from its two levels of the current version, the output
 *      level is the next one, its deletions name every input, and the key-order helpers accept
 *      keys in order. version_set_check on a fresh set (which reads but never writes) returns
 *      SHALE_OK or SHALE_CORRUPTION with a report. This third use runs again on a copy whose
 *      fragment checksums are made right (fuzz_util.h fz_wal_fix_crcs) when that changes
 *      anything, so the fuzzer reaches the edits behind the framing.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/coding.h"
#include "fuzz_util.h"
#include "lsm/version.h"
#include "wal/wal_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIR "/fuzz"

static shale_slice key_of(const shale_buf *b)
{
    return slice_make(b->data, b->len);
}

/* ---- 1. CURRENT ---- */

static void check_current(const uint8_t *data, size_t size)
{
    uint64_t number = 0;
    bool ok = version_parse_current(data, size, &number);
    /* The reference: "MANIFEST-", at least six digits fitting in 64 bits, "\n", nothing else,
     * at most VERSION_CURRENT_MAX_BYTES in all. */
    bool want = size >= 9 + 6 + 1 && size <= VERSION_CURRENT_MAX_BYTES &&
                memcmp(data, "MANIFEST-", 9) == 0 && data[size - 1] == '\n';
    uint64_t v = 0;
    for (size_t i = 9; want && i < size - 1; i++) {
        if (data[i] < '0' || data[i] > '9' || v > (UINT64_MAX - (data[i] - '0')) / 10) {
            want = false;
        } else {
            v = v * 10 + (uint64_t)(data[i] - '0');
        }
    }
    want = want && v > 0;
    FZ_CHECK(ok == want);
    FZ_CHECK(!ok || number == v);
}

/* ---- 2. one edit ---- */

static bool same_meta(const file_meta *a, const file_meta *b)
{
    return a->number == b->number && a->size == b->size &&
           slice_eq(key_of(&a->smallest), key_of(&b->smallest)) &&
           slice_eq(key_of(&a->largest), key_of(&b->largest)) &&
           a->smallest_seq == b->smallest_seq && a->largest_seq == b->largest_seq &&
           a->min_seq == b->min_seq && a->max_seq == b->max_seq && a->entries == b->entries &&
           a->deletions == b->deletions;
}

static bool same_edit(const version_edit *a, const version_edit *b)
{
    if (a->has_log_number != b->has_log_number || a->has_flushed_seq != b->has_flushed_seq ||
        a->has_next_file != b->has_next_file || a->has_last_seq != b->has_last_seq ||
        a->nadded != b->nadded || a->ndeleted != b->ndeleted) {
        return false;
    }
    if ((a->has_log_number && a->log_number != b->log_number) ||
        (a->has_flushed_seq && a->flushed_seq != b->flushed_seq) ||
        (a->has_next_file && a->next_file_number != b->next_file_number) ||
        (a->has_last_seq && a->last_seq != b->last_seq)) {
        return false;
    }
    for (int l = 0; l < VERSION_LEVELS; l++) {
        if (a->has_pointer[l] != b->has_pointer[l] ||
            (a->has_pointer[l] && !slice_eq(key_of(&a->pointer[l]), key_of(&b->pointer[l])))) {
            return false;
        }
    }
    for (size_t i = 0; i < a->ndeleted; i++) {
        if (a->deleted[i].level != b->deleted[i].level ||
            a->deleted[i].number != b->deleted[i].number) {
            return false;
        }
    }
    for (size_t i = 0; i < a->nadded; i++) {
        if (a->added[i].level != b->added[i].level ||
            !same_meta(a->added[i].meta, b->added[i].meta)) {
            return false;
        }
    }
    return true;
}

static void check_edit(const uint8_t *data, size_t size)
{
    version_edit e, e2, e3;
    shale_error err = {0};
    shale_code rc = version_edit_decode(data, size, "fuzz-edit", &e, &err);
    FZ_CHECK(rc == SHALE_OK || rc == SHALE_CORRUPTION);
    if (rc != SHALE_OK) {
        FZ_CHECK(strstr(err.msg, "fuzz-edit") != NULL);
        return;
    }
    for (size_t i = 0; i < e.nadded; i++) {
        const file_meta *m = e.added[i].meta;
        FZ_CHECK(e.added[i].level >= 0 && e.added[i].level < VERSION_LEVELS && m != NULL);
        FZ_CHECK(slice_cmp(key_of(&m->smallest), key_of(&m->largest)) <= 0);
        FZ_CHECK(m->min_seq <= m->max_seq);
    }
    for (size_t i = 0; i < e.ndeleted; i++) {
        FZ_CHECK(e.deleted[i].level >= 0 && e.deleted[i].level < VERSION_LEVELS);
    }
    shale_buf b1 = {0}, b2 = {0};
    FZ_CHECK(version_edit_encode(&e, &b1, &err) == SHALE_OK);
    FZ_CHECK(version_edit_decode(b1.data, b1.len, "fuzz-edit-2", &e2, &err) == SHALE_OK);
    FZ_CHECK(same_edit(&e, &e2));
    FZ_CHECK(version_edit_encode(&e2, &b2, &err) == SHALE_OK);
    FZ_CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    /* A cut or extended encoding is refused (the trailer's count and magic). */
    if (b1.len > 0) {
        FZ_CHECK(version_edit_decode(b1.data, b1.len - 1, "cut", &e3, &err) == SHALE_CORRUPTION);
    }
    buf_free(&b1);
    buf_free(&b2);
    version_edit_free(&e);
    version_edit_free(&e2);
}

/* ---- 3. a manifest ---- */

static void check_version(version_set *vs, uint64_t manifest_number, size_t size)
{
    version *v = version_set_current(vs);
    FZ_CHECK(v != NULL);
    uint64_t next = version_set_next_file_number(vs);
    FZ_CHECK(next > manifest_number);
    size_t total = 0;
    for (int l = 0; l < VERSION_LEVELS; l++) {
        uint64_t bytes = 0;
        FZ_CHECK(v->nfiles[l] == 0 || v->files[l] != NULL);
        for (size_t i = 0; i < v->nfiles[l]; i++) {
            const file_meta *f = v->files[l][i];
            FZ_CHECK(f->number < next);
            FZ_CHECK(slice_cmp(key_of(&f->smallest), key_of(&f->largest)) <= 0);
            FZ_CHECK(f->min_seq <= f->max_seq);
            bytes = bytes + f->size < bytes ? UINT64_MAX : bytes + f->size;
            if (i > 0) {
                const file_meta *p = v->files[l][i - 1];
                if (l == 0) {
                    FZ_CHECK(p->max_seq > f->max_seq ||
                             (p->max_seq == f->max_seq && p->number > f->number));
                } else {
                    FZ_CHECK(slice_cmp(key_of(&p->largest), key_of(&f->smallest)) < 0);
                }
            }
            /* No table twice. */
            for (int l2 = 0; l2 <= l; l2++) {
                for (size_t j = 0; j < (l2 == l ? i : v->nfiles[l2]); j++) {
                    FZ_CHECK(v->files[l2][j]->number != f->number);
                }
            }
            total++;
        }
        FZ_CHECK(v->level_bytes[l] == bytes);
    }
    FZ_CHECK(version_set_kept_log_number(vs) <= version_set_log_number(vs));
    FZ_CHECK(version_set_manifest_number(vs) == manifest_number);
    FZ_CHECK(version_set_manifest_bytes(vs) <= size);
    version_numbers live = {0};
    version_set_live_files(vs, version_numbers_add, &live);
    FZ_CHECK(!live.nomem && live.n >= total);
    free(live.v);
    version_pressure pr;
    version_set_pressure(vs, &pr);
    FZ_CHECK(pr.l0_tables == v->nfiles[0]);
    version_unref(v);
}

static bool in_level(const version *v, int level, const file_meta *f)
{
    for (size_t i = 0; i < v->nfiles[level]; i++) {
        if (v->files[level][i] == f) {
            return true;
        }
    }
    return false;
}

static int cmp_slices(const void *a, const void *b)
{
    return slice_cmp(*(const shale_slice *)a, *(const shale_slice *)b);
}

static void check_compaction(compaction *c)
{
    FZ_CHECK(c->level >= 0 && c->level < VERSION_LEVELS - 1);
    FZ_CHECK(c->output_level == c->level + 1);
    FZ_CHECK(c->ninputs[0] > 0 && c->input_version != NULL);
    size_t n = 0;
    for (int w = 0; w < 2; w++) {
        for (size_t i = 0; i < c->ninputs[w]; i++) {
            const file_meta *f = c->inputs[w][i];
            FZ_CHECK(f->being_compacted);
            FZ_CHECK(in_level(c->input_version, w == 0 ? c->level : c->output_level, f));
            n++;
        }
    }
    version_edit e;
    version_edit_init(&e);
    FZ_CHECK(compaction_add_input_deletions(c, &e, NULL) == SHALE_OK);
    FZ_CHECK(e.ndeleted == n);
    version_edit_free(&e);
    /* The key-order helpers, with the inputs' bounds in order. */
    shale_slice *keys = malloc(2 * n * sizeof *keys);
    FZ_CHECK(keys != NULL);
    size_t k = 0;
    for (int w = 0; w < 2; w++) {
        for (size_t i = 0; i < c->ninputs[w]; i++) {
            keys[k++] = key_of(&c->inputs[w][i]->smallest);
            keys[k++] = key_of(&c->inputs[w][i]->largest);
        }
    }
    qsort(keys, k, sizeof *keys, cmp_slices);
    for (size_t i = 0; i < k; i++) {
        (void)compaction_is_bottom_for_key(c, keys[i]);
        (void)compaction_should_stop_before(c, keys[i]);
    }
    free(keys);
}

static void check_manifest(const uint8_t *data, size_t size)
{
    /* The number the segment header carries (when there is one), so the header can match. */
    uint64_t number = 1;
    if (size >= WAL_HEADER_SIZE + WAL_SEGMENT_HEADER_LEN) {
        number = coding_get_fixed64(data + WAL_HEADER_SIZE + 1 + WAL_MAGIC_LEN + 4);
        if (number == 0) {
            number = 1;
        }
    }
    char current[64], mpath[128];
    int clen = snprintf(current, sizeof current, "MANIFEST-%06" PRIu64 "\n", number);
    version_manifest_name(mpath, sizeof mpath, DIR, number);
    fz_env e;
    fz_env_init(&e, DIR);
    fz_env_add(&e, DIR "/CURRENT", current, (size_t)clen);
    fz_env_add(&e, mpath, data, size);

    version_options o = {.l0_compaction_trigger = 2,
                         .base_level_bytes = 4096,
                         .level_ratio = 4,
                         .table_bytes = 1024};
    version_set *vs = version_set_new(&e.env, DIR, &o);
    FZ_CHECK(vs != NULL);
    shale_error err = {0};
    shale_code rc = version_set_recover(vs, &err);
    FZ_CHECK(rc == SHALE_OK || rc == SHALE_CORRUPTION);
    if (rc != SHALE_OK) {
        FZ_CHECK(strstr(err.msg, "MANIFEST-") != NULL || strstr(err.msg, "CURRENT") != NULL);
    } else {
        check_version(vs, number, size);
        for (int i = 0; i < 2 * VERSION_LEVELS; i++) {
            compaction *c = version_set_pick_compaction(vs);
            if (c == NULL) {
                break;
            }
            check_compaction(c);
            compaction_free(c);
        }
        for (int l = 0; l < VERSION_LEVELS; l++) {
            compaction *c =
                version_set_compact_range(vs, l, (shale_slice){NULL, 0}, (shale_slice){NULL, 0});
            if (c != NULL) {
                check_compaction(c);
                compaction_free(c);
            }
        }
    }
    version_set_free(vs);

    /* shale check's replay: read-only, lenient about overlaps, reports what it finds. */
    vs = version_set_new(&e.env, DIR, &o);
    FZ_CHECK(vs != NULL);
    shale_buf report = {0};
    shale_code crc = version_set_check(vs, &report, &err);
    FZ_CHECK(crc == SHALE_OK || crc == SHALE_CORRUPTION);
    FZ_CHECK(crc == SHALE_OK ? report.len == 0 : report.len > 0);
    FZ_CHECK(rc == SHALE_OK || crc == SHALE_CORRUPTION);
    buf_free(&report);
    version_set_free(vs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_current(data, size);
    check_edit(data, size);
    check_manifest(data, size);
    /* And with every plausible fragment's checksum made right: edits behind the framing. */
    uint8_t *fixed = fz_copy(data, size);
    if (fz_wal_fix_crcs(fixed, size)) {
        check_manifest(fixed, size);
    }
    free(fixed);
    return 0;
}
