/*
 * libFuzzer target for the backup formats (src/lsm/backup_format.h): the BACKUP manifest of a
 * backup and the BACKUPS file of a destination, and the operations that read them (shale_backup_
 * list, _verify, shale_restore in src/lsm/backup.c). Built and replayed like every target in
 * tests/fuzz (README.md there).
 *
 * The input is used four ways:
 *   1. As a BACKUP: backup_manifest_decode returns SHALE_OK or SHALE_CORRUPTION naming the file.
 *      A decoded manifest has at most (size - 92) / 42 files, each with a valid, distinct name
 *      in the right place, SHALE and CURRENT among them; encoding it gives the input back (with
 *      the flags, which are not checked on read, written 0 and the checksum made right for
 *      them); the encoding cut by one byte is refused; backup_manifest_check accepts the
 *      manifest's own id and identity and refuses another id.
 *   2. As BACKUPS: backup_dest_decode returns SHALE_OK or SHALE_CORRUPTION naming the file; what
 *      it decodes encodes back to the input (flags aside, as above).
 *   3. Both again on a copy whose trailing checksum is made right, so the fuzzer reaches the
 *      entries behind it; and the first bytes as a backup directory name (backup_parse_id
 *      accepts exactly the "%06" spelling of a number > 0).
 *   4. On disk (every input that decodes, one in 16 of the others): a destination in a private
 * temporary directory (fuzz_util.h fz_tmpdir) holds BACKUPS (naming the identity at the input's
 * offset 56, so the fuzzer gets past that check), the fixed files below, and the input as
 * NNNNNN/BACKUP (NNNNNN = the input's id when it is 1 .. 999999, else 000001). shale_backup_list
 * succeeds exactly when 1. decoded the input and it names that directory and identity, and then
 * reports what it holds; shale_backup_verify gives SHALE_OK or SHALE_CORRUPTION, for id 0 as for
 * NNNNNN; when it passes, shale_restore into a new directory succeeds (unless a file is named LOCK,
 * which the restore holds) and leaves every listed file there with its size.
 *
 * The fixed files (gen_corpus.c's gen_backup writes seeds listing them, with their SHA-256, so
 * restores run): NNNNNN/SHALE (db_identity_make(FZ_BK_CREATED)), NNNNNN/CURRENT and
 * NNNNNN/MANIFEST-000002 (the strings below), tables/000003-13.sst (FZ_BK_TABLE).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "fuzz_util.h"
#include "lsm/backup_format.h"
#include "lsm/identity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PATH "/fuzz/000001/BACKUP"

#define FZ_BK_CREATED  1700000000000ull
#define FZ_BK_CURRENT  "MANIFEST-000002\n"
#define FZ_BK_MANIFEST "manifest of the fuzz backup\n"
#define FZ_BK_TABLE    "table 000003\n" /* 13 bytes: tables/000003-13.sst */

/* data with the flags at 12..15 zeroed and the last 4 bytes the checksum of the rest: what an
 * encoder writes for what the decoder read from data. */
static uint8_t *canonical(const uint8_t *data, size_t size)
{
    uint8_t *c = fz_copy(data, size);
    memset(c + 12, 0, 4);
    coding_put_fixed32(c + size - 4, crc32c_mask(crc32c_value(c, size - 4)));
    return c;
}

/* ---- 1. BACKUP ---- */

/* Returns whether data decodes; *m gets the manifest when it does (the caller frees it). */
static bool check_manifest(const uint8_t *data, size_t size, backup_manifest *m)
{
    shale_error err = {0};
    shale_code rc = backup_manifest_decode(data, size, PATH, m, &err);
    FZ_CHECK(rc == SHALE_OK || rc == SHALE_CORRUPTION);
    if (rc != SHALE_OK) {
        FZ_CHECK(strstr(err.msg, PATH) != NULL);
        FZ_CHECK(m->files == NULL && m->nfiles == 0);
        return false;
    }
    FZ_CHECK(size >= BACKUP_HEAD_BYTES + 4);
    FZ_CHECK(m->nfiles <= (size - BACKUP_HEAD_BYTES - 4) / BACKUP_ENTRY_MIN);
    bool shale = false, current = false;
    for (size_t i = 0; i < m->nfiles; i++) {
        const backup_file *f = &m->files[i];
        FZ_CHECK(backup_name_ok(f->name, strlen(f->name)));
        FZ_CHECK(f->where == BACKUP_WHERE_DIR || f->where == BACKUP_WHERE_TABLES);
        for (size_t j = 0; j < i; j++) {
            FZ_CHECK(strcmp(m->files[j].name, f->name) != 0);
        }
        shale |= strcmp(f->name, "SHALE") == 0;
        current |= strcmp(f->name, "CURRENT") == 0;
    }
    FZ_CHECK(shale && current);

    shale_buf b = {0};
    backup_manifest m2;
    FZ_CHECK(backup_manifest_encode(m, &b, &err) == SHALE_OK);
    uint8_t *want = canonical(data, size);
    FZ_CHECK(b.len == size && memcmp(b.data, want, size) == 0);
    free(want);
    FZ_CHECK(backup_manifest_decode(b.data, b.len - 1, "cut", &m2, &err) == SHALE_CORRUPTION);
    FZ_CHECK(backup_manifest_decode(b.data, b.len, "again", &m2, &err) == SHALE_OK);
    FZ_CHECK(m2.nfiles == m->nfiles && m2.id == m->id && m2.seq == m->seq);
    backup_manifest_free(&m2);
    buf_free(&b);

    FZ_CHECK(backup_manifest_check(m, PATH, m->id, m->identity, &err) == SHALE_OK);
    FZ_CHECK(backup_manifest_check(m, PATH, m->id + 1, m->identity, &err) == SHALE_CORRUPTION);
    FZ_CHECK(strstr(err.msg, PATH) != NULL);
    return true;
}

/* ---- 2. BACKUPS ---- */

static void check_dest(const uint8_t *data, size_t size)
{
    shale_error err = {0};
    uint64_t next_id = 0;
    uint8_t identity[BACKUP_ID_BYTES];
    shale_code rc = backup_dest_decode(data, size, "/fuzz/BACKUPS", &next_id, identity, &err);
    FZ_CHECK(rc == SHALE_OK || rc == SHALE_CORRUPTION);
    if (rc != SHALE_OK) {
        FZ_CHECK(strstr(err.msg, "/fuzz/BACKUPS") != NULL);
        return;
    }
    FZ_CHECK(size == BACKUP_DEST_BYTES);
    uint8_t enc[BACKUP_DEST_BYTES];
    backup_dest_encode(enc, next_id, identity);
    uint8_t *want = canonical(data, size);
    FZ_CHECK(memcmp(enc, want, size) == 0);
    free(want);
}

/* ---- 3. a directory name ---- */

static void check_id(const uint8_t *data, size_t size)
{
    char name[24];
    size_t n = size < sizeof name - 1 ? size : sizeof name - 1;
    memcpy(name, data, n);
    name[n] = '\0';
    uint64_t id = 0;
    if (backup_parse_id(name, &id)) {
        char canon[32];
        snprintf(canon, sizeof canon, "%06" PRIu64, id);
        FZ_CHECK(id > 0 && strcmp(canon, name) == 0);
    }
}

/* ---- 4. on disk ---- */

static char dest[600];
static uint64_t dir_id; /* the NNNNNN/ that exists, 0 before the first input */

static void put_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    FZ_CHECK(f != NULL);
    FZ_CHECK(n == 0 || fwrite(p, 1, n, f) == n);
    FZ_CHECK(fclose(f) == 0);
}

static void put_in(const char *dir, const char *name, const void *p, size_t n)
{
    char path[800];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    put_file(path, p, n);
}

/* Makes dest/NNNNNN (removing the previous one) with the fixed small files. */
static void make_backup_dir(uint64_t id)
{
    char dir[700];
    uint8_t shale[DB_IDENTITY_BYTES];
    if (dest[0] == '\0') {
        snprintf(dest, sizeof dest, "%s/dest", fz_tmpdir());
        snprintf(dir, sizeof dir, "%s/tables", dest);
        FZ_CHECK(mkdir(dest, 0700) == 0 && mkdir(dir, 0700) == 0);
        put_in(dir, "000003-13.sst", FZ_BK_TABLE, strlen(FZ_BK_TABLE));
    }
    if (dir_id == id) {
        return;
    }
    if (dir_id != 0) {
        snprintf(dir, sizeof dir, "%s/%06" PRIu64, dest, dir_id);
        FZ_CHECK(fz_rm_rf(dir) == 0);
    }
    snprintf(dir, sizeof dir, "%s/%06" PRIu64, dest, id);
    FZ_CHECK(mkdir(dir, 0700) == 0);
    db_identity_make(FZ_BK_CREATED, shale);
    put_in(dir, "SHALE", shale, sizeof shale);
    put_in(dir, "CURRENT", FZ_BK_CURRENT, strlen(FZ_BK_CURRENT));
    put_in(dir, "MANIFEST-000002", FZ_BK_MANIFEST, strlen(FZ_BK_MANIFEST));
    dir_id = id;
}

static void check_restore(const backup_manifest *m)
{
    char dir[700], path[800];
    shale_error err = {0};
    bool lock = false;
    snprintf(dir, sizeof dir, "%s/restored", fz_tmpdir());
    shale_code rc = shale_restore(dest, m->id, dir, false, &err);
    for (size_t i = 0; i < m->nfiles; i++) {
        lock |= strcmp(m->files[i].name, "LOCK") == 0;
    }
    if (lock) {
        FZ_CHECK(rc != SHALE_OK);
    } else {
        if (rc != SHALE_OK) {
            fprintf(stderr, "restore: %s\n", err.msg);
        }
        FZ_CHECK(rc == SHALE_OK);
        for (size_t i = 0; i < m->nfiles; i++) {
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", dir, m->files[i].name);
            FZ_CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == m->files[i].size);
        }
    }
    FZ_CHECK(fz_rm_rf(dir) == 0);
}

static void check_on_disk(const uint8_t *data, size_t size, bool decoded, const backup_manifest *m)
{
    uint64_t id = size >= 24 ? coding_get_fixed64(data + 16) : 0;
    uint8_t identity[BACKUP_ID_BYTES], raw[BACKUP_DEST_BYTES];
    char dir[700];
    if (id == 0 || id > 999999) {
        id = 1;
    }
    if (size >= 56 + BACKUP_ID_BYTES) {
        memcpy(identity, data + 56, BACKUP_ID_BYTES);
    } else {
        db_identity_make(FZ_BK_CREATED, identity);
    }
    make_backup_dir(id);
    backup_dest_encode(raw, id + 1, identity);
    put_in(dest, BACKUP_DEST_FILE, raw, sizeof raw);
    snprintf(dir, sizeof dir, "%s/%06" PRIu64, dest, id);
    put_in(dir, BACKUP_FILE, data, size);

    bool listed = decoded && m->id == id; /* the identity matches by construction */
    shale_backup_info *infos = NULL;
    size_t count = 0;
    shale_error err = {0};
    shale_code rc = shale_backup_list(dest, &infos, &count, &err);
    FZ_CHECK(rc == (listed ? SHALE_OK : SHALE_CORRUPTION));
    if (rc == SHALE_OK) {
        uint64_t bytes = 0;
        for (size_t i = 0; i < m->nfiles; i++) {
            bytes += m->files[i].size;
        }
        FZ_CHECK(count == 1 && infos[0].id == id && infos[0].seq == m->seq &&
                 infos[0].files == m->nfiles && infos[0].bytes == bytes &&
                 infos[0].new_files == m->new_files);
    } else {
        FZ_CHECK(count == 0 && infos == NULL);
    }
    free(infos);

    shale_code all = shale_backup_verify(dest, 0, &err);
    shale_code one = shale_backup_verify(dest, id, &err);
    FZ_CHECK(all == SHALE_OK || all == SHALE_CORRUPTION);
    FZ_CHECK(one == all);
    FZ_CHECK(all != SHALE_OK || listed);
    if (all == SHALE_OK) {
        check_restore(m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    backup_manifest m;
    bool decoded = check_manifest(data, size, &m);
    check_dest(data, size);
    check_id(data, size);
    if (size >= 4) {
        uint8_t *fixed = fz_copy(data, size);
        coding_put_fixed32(fixed + size - 4, crc32c_mask(crc32c_value(fixed, size - 4)));
        if (memcmp(fixed, data, size) != 0) {
            backup_manifest m2;
            if (check_manifest(fixed, size, &m2)) {
                backup_manifest_free(&m2);
            }
            check_dest(fixed, size);
        }
        free(fixed);
    }
    /* The disk is slow: inputs that do not decode (list and verify must report the damage) are
     * taken there one in 16. */
    if (decoded || fz_hash(data, size) % 16 == 0) {
        check_on_disk(data, size, decoded, &m);
    }
    backup_manifest_free(&m);
    return 0;
}
