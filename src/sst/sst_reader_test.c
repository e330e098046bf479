/*
 * sst_reader_test: the salvage API of sst_reader.h (sst_salvage_*), on tables written by
 * sst_builder: an intact table hands out every entry in order, block by block; a damaged data
 * block fails alone with SHALE_CORRUPTION naming the file and the block while its neighbours
 * load; damage to the properties block (which sst_reader_open refuses) costs nothing; a damaged
 * footer or index loses the table whole.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale.h"

#include "base/coding.h"
#include "env/env.h"
#include "sst/sst_builder.h"
#include "sst/sst_format.h"
#include "sst/sst_reader.h"
#include "testutil.h"

#define SV_FNUM 12u
#define SV_NAME "000012.sst"
#define SV_KEYS 400

/* Writes dir/000012.sst: keys tu_key(0 .. SV_KEYS - 1), seq i + 1, values "value-i", in blocks of
 * about 512 bytes, no compression (so an offset inside a block is known). */
static char *sv_table(const char *dir, sst_props *props)
{
    char *path = tu_path(dir, SV_NAME);
    sst_builder_options o = sst_builder_default_options();
    sst_builder *b = NULL;
    shale_error err;
    o.block_bytes = 512;
    o.compression = 0;
    cr_assert_eq(sst_builder_new(env_posix(), path, SV_FNUM, &o, &b, &err), SHALE_OK, "%s",
                 err.msg);
    for (int i = 0; i < SV_KEYS; i++) {
        char kb[32], vb[32];
        int vn = snprintf(vb, sizeof vb, "value-%d", i);
        ikey_entry e = {.key = tu_key(kb, (uint64_t)i),
                        .seq = (uint64_t)i + 1,
                        .type = IKEY_PUT,
                        .value = slice_make(vb, (size_t)vn)};
        cr_assert_eq(sst_builder_add(b, &e, &err), SHALE_OK, "%s", err.msg);
    }
    cr_assert_eq(sst_builder_finish(b, props, &err), SHALE_OK, "%s", err.msg);
    return path;
}

/* Loads every block; returns the entries handed out, checking each against the model and
 * counting the blocks that failed (their messages must name the file and a data block). */
static int sv_read_all(sst_salvage *s, size_t *failed, bool *seen)
{
    int total = 0;
    *failed = 0;
    for (size_t i = 0; i < sst_salvage_blocks(s); i++) {
        shale_error err;
        uint64_t entries = 0;
        shale_code rc = sst_salvage_load(s, i, &entries, &err);
        ikey_entry e;
        if (rc != SHALE_OK) {
            cr_assert_eq(rc, SHALE_CORRUPTION, "%s", err.msg);
            cr_assert(strstr(err.msg, SV_NAME ": data block @") != NULL, "%s", err.msg);
            cr_assert_not(sst_salvage_next(s, &e), "a failed load hands out nothing");
            ++*failed;
            continue;
        }
        uint64_t n = 0;
        while (sst_salvage_next(s, &e)) {
            char kb[32], vb[32];
            int k = (int)e.seq - 1;
            cr_assert(k >= 0 && k < SV_KEYS);
            shale_slice want = tu_key(kb, (uint64_t)k);
            int vn = snprintf(vb, sizeof vb, "value-%d", k);
            cr_assert(slice_eq(e.key, want));
            cr_assert(slice_eq(e.value, slice_make(vb, (size_t)vn)));
            cr_assert_eq(e.type, IKEY_PUT);
            cr_assert_not(seen[k], "key %d twice", k);
            seen[k] = true;
            n++;
        }
        cr_assert_eq(n, entries);
        total += (int)n;
    }
    return total;
}

Test(sst_salvage, intact_table_gives_every_entry_block_by_block)
{
    char *dir = tu_tmpdir("salv-ok");
    sst_props props;
    char *path = sv_table(dir, &props);
    sst_salvage *s = NULL;
    shale_error err;
    cr_assert_eq(sst_salvage_open(env_posix(), path, SV_FNUM, &s, &err), SHALE_OK, "%s", err.msg);
    cr_assert_eq(sst_salvage_blocks(s), props.data_blocks);
    cr_assert_gt(props.data_blocks, 5);
    /* The handles tile the data blocks; separators rise. */
    uint64_t off = 0;
    for (size_t i = 0; i < sst_salvage_blocks(s); i++) {
        sst_handle h;
        shale_slice k;
        sst_salvage_block_at(s, i, &h, &k);
        cr_assert_eq(h.offset, off);
        cr_assert_gt(k.len, SST_TAG_SIZE);
        off += h.size + SST_TRAILER_SIZE;
    }
    cr_assert_eq(off, props.data_bytes);
    bool seen[SV_KEYS] = {false};
    size_t failed = 0;
    cr_assert_eq(sv_read_all(s, &failed, seen), SV_KEYS);
    cr_assert_eq(failed, 0);
    /* Loading a block again works (reused buffers). */
    uint64_t n = 0;
    cr_assert_eq(sst_salvage_load(s, 0, &n, &err), SHALE_OK, "%s", err.msg);
    cr_assert_gt(n, 0);
    sst_salvage_close(s);
    sst_salvage_close(NULL);
    sst_props_free(&props);
    free(path);
    tu_rm_rf(dir);
    free(dir);
}

Test(sst_salvage, damaged_block_fails_alone)
{
    char *dir = tu_tmpdir("salv-block");
    sst_props props;
    char *path = sv_table(dir, &props);
    sst_salvage *s = NULL;
    shale_error err;
    cr_assert_eq(sst_salvage_open(env_posix(), path, SV_FNUM, &s, &err), SHALE_OK, "%s", err.msg);
    sst_handle h;
    shale_slice k;
    sst_salvage_block_at(s, 2, &h, &k);
    sst_salvage_close(s);
    cr_assert_eq(tu_flip_bit(path, h.offset + h.size / 2, 3), 0);

    cr_assert_eq(sst_salvage_open(env_posix(), path, SV_FNUM, &s, &err), SHALE_OK, "%s", err.msg);
    uint64_t n = 0;
    cr_assert_eq(sst_salvage_load(s, 2, &n, &err), SHALE_CORRUPTION);
    char want[96];
    snprintf(want, sizeof want, SV_NAME ": data block @%" PRIu64 "+%" PRIu64 ": bad checksum",
             h.offset, h.size);
    cr_assert_str_eq(err.msg, want);
    bool seen[SV_KEYS] = {false};
    size_t failed = 0;
    int got = sv_read_all(s, &failed, seen);
    cr_assert_eq(failed, 1);
    cr_assert_lt(got, SV_KEYS);
    cr_assert_gt(got, SV_KEYS / 2);
    /* What is missing is one run of keys: block 2's. */
    int first = -1, last = -1;
    for (int i = 0; i < SV_KEYS; i++) {
        if (!seen[i]) {
            first = first < 0 ? i : first;
            last = i;
        }
    }
    cr_assert_eq(last - first + 1, SV_KEYS - got, "the lost keys are contiguous");
    sst_salvage_close(s);
    sst_props_free(&props);
    free(path);
    tu_rm_rf(dir);
    free(dir);
}

Test(sst_salvage, damaged_properties_cost_nothing)
{
    char *dir = tu_tmpdir("salv-props");
    sst_props props;
    char *path = sv_table(dir, &props);
    int64_t size = tu_file_size(path);
    /* The properties block ends right before the footer. */
    cr_assert_eq(tu_flip_bit(path, (uint64_t)size - SST_FOOTER_SIZE - SST_TRAILER_SIZE - 10, 0), 0);
    sst_reader *r = NULL;
    shale_error err;
    cr_assert_eq(sst_reader_open(env_posix(), path, SV_FNUM, 0, NULL, &r, &err), SHALE_CORRUPTION);
    sst_salvage *s = NULL;
    cr_assert_eq(sst_salvage_open(env_posix(), path, SV_FNUM, &s, &err), SHALE_OK, "%s", err.msg);
    bool seen[SV_KEYS] = {false};
    size_t failed = 0;
    cr_assert_eq(sv_read_all(s, &failed, seen), SV_KEYS);
    sst_salvage_close(s);
    sst_props_free(&props);
    free(path);
    tu_rm_rf(dir);
    free(dir);
}

Test(sst_salvage, damaged_footer_or_index_loses_the_table)
{
    char *dir = tu_tmpdir("salv-footer");
    sst_props props;
    char *path = sv_table(dir, &props);
    int64_t size = tu_file_size(path);
    sst_salvage *s = NULL;
    shale_error err;
    /* The index block: right after the filter, which follows the data blocks. */
    uint64_t index_at = props.data_bytes + props.filter_bytes;
    cr_assert_eq(tu_flip_bit(path, index_at + 2, 5), 0);
    cr_assert_eq(sst_salvage_open(env_posix(), path, SV_FNUM, &s, &err), SHALE_CORRUPTION);
    cr_assert_null(s);
    cr_assert(strstr(err.msg, SV_NAME ": index block @") != NULL, "%s", err.msg);
    cr_assert_eq(tu_flip_bit(path, index_at + 2, 5), 0); /* undo */
    cr_assert_eq(tu_flip_bit(path, (uint64_t)size - 4, 1), 0);
    cr_assert_eq(sst_salvage_open(env_posix(), path, SV_FNUM, &s, &err), SHALE_CORRUPTION);
    cr_assert(strstr(err.msg, SV_NAME ": footer: bad magic") != NULL, "%s", err.msg);
    /* A missing file. */
    char *gone = tu_path(dir, "000013.sst");
    cr_assert_eq(sst_salvage_open(env_posix(), gone, 13, &s, &err), SHALE_NOT_FOUND);
    free(gone);
    sst_props_free(&props);
    free(path);
    tu_rm_rf(dir);
    free(dir);
}
