/*
 * backup_format: encoders and decoders of DEST/BACKUPS and DEST/NNNNNN/BACKUP (the format and
 * every check: backup_format.h).
 */
#include "lsm/backup_format.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "lsm/version.h"

#define DEST_MAGIC "SHALEBKS"
#define MAGIC      "SHALEBAK"
#define MAGIC_LEN  8u
#define AT_VERSION 8u
#define AT_FLAGS   12u

/* The header both files open with: magic, version, flags 0. */
static void put_head(uint8_t *p, const char *magic)
{
    memcpy(p, magic, MAGIC_LEN);
    coding_put_fixed32(p + AT_VERSION, BACKUP_VERSION);
    coding_put_fixed32(p + AT_FLAGS, 0);
}

/* The trailer both files end with: the masked CRC32C of everything before it, at p + n. */
static void put_crc(uint8_t *p, size_t n)
{
    coding_put_fixed32(p + n, crc32c_mask(crc32c_value(p, n)));
}

/* The checks both files start with, after the length and magic: the checksum over [0, len - 4)
 * and the version. */
static shale_code check_crc_version(const uint8_t *raw, size_t len, const char *path,
                                    shale_error *err)
{
    if (crc32c_unmask(coding_get_fixed32(raw + len - 4)) != crc32c_value(raw, len - 4)) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s @%zu: checksum mismatch", path, len - 4);
    }
    uint32_t v = coding_get_fixed32(raw + AT_VERSION);
    if (v != BACKUP_VERSION) {
        return err_set(err, SHALE_CORRUPTION, 0,
                       "%s @8: format version %" PRIu32 ", this build reads %u", path, v,
                       BACKUP_VERSION);
    }
    return SHALE_OK;
}

/* ---- DEST/BACKUPS ---- */

void backup_dest_encode(uint8_t out[BACKUP_DEST_BYTES], uint64_t next_id,
                        const uint8_t identity[BACKUP_ID_BYTES])
{
    put_head(out, DEST_MAGIC);
    coding_put_fixed64(out + 16, next_id);
    memcpy(out + 24, identity, BACKUP_ID_BYTES);
    put_crc(out, BACKUP_DEST_BYTES - 4);
}

shale_code backup_dest_decode(const uint8_t *raw, size_t len, const char *path, uint64_t *next_id,
                              uint8_t identity[BACKUP_ID_BYTES], shale_error *err)
{
    if (len != BACKUP_DEST_BYTES || memcmp(raw, DEST_MAGIC, MAGIC_LEN) != 0) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: %zu bytes, not a backup destination file",
                       path, len);
    }
    shale_code rc = check_crc_version(raw, len, path, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    *next_id = coding_get_fixed64(raw + 16);
    memcpy(identity, raw + 24, BACKUP_ID_BYTES);
    return SHALE_OK;
}

/* ---- DEST/NNNNNN/BACKUP ---- */

static bool where_ok(const backup_file *f)
{
    uint64_t number;
    version_file_kind kind = version_parse_file_name(f->name, &number);
    return (f->where == BACKUP_WHERE_DIR || f->where == BACKUP_WHERE_TABLES) &&
           (f->where == BACKUP_WHERE_TABLES) == (kind == VERSION_FILE_TABLE);
}

shale_code backup_manifest_encode(const backup_manifest *m, shale_buf *out, shale_error *err)
{
    size_t n = BACKUP_HEAD_BYTES + 4;
    if (m->nfiles > UINT32_MAX) {
        return err_set(err, SHALE_INVALID, 0, "backup manifest: %zu files", m->nfiles);
    }
    for (size_t i = 0; i < m->nfiles; i++) {
        const backup_file *f = &m->files[i];
        size_t len = strnlen(f->name, sizeof f->name);
        if (!backup_name_ok(f->name, len) || !where_ok(f)) {
            return err_set(err, SHALE_INVALID, 0, "backup manifest: bad file entry %.47s", f->name);
        }
        n += BACKUP_ENTRY_MIN + len;
    }
    buf_reset(out);
    shale_code rc = buf_reserve(out, n, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    uint8_t *p = out->data;
    put_head(p, MAGIC);
    coding_put_fixed64(p + 16, m->id);
    coding_put_fixed64(p + 24, m->seq);
    coding_put_fixed64(p + 32, m->created_at_ms);
    coding_put_fixed64(p + 40, m->new_files);
    coding_put_fixed64(p + 48, m->new_bytes);
    memcpy(p + 56, m->identity, BACKUP_ID_BYTES);
    coding_put_fixed32(p + 84, (uint32_t)m->nfiles);
    p += BACKUP_HEAD_BYTES;
    for (size_t i = 0; i < m->nfiles; i++) {
        const backup_file *f = &m->files[i];
        size_t len = strlen(f->name);
        *p++ = f->where;
        *p++ = (uint8_t)len;
        memcpy(p, f->name, len);
        p += len;
        coding_put_fixed64(p, f->size);
        memcpy(p + 8, f->sha, BACKUP_SHA);
        p += 8 + BACKUP_SHA;
    }
    put_crc(out->data, n - 4);
    out->len = n;
    return SHALE_OK;
}

/* Decodes the entry at raw[*off, end) into f (moving *off past it), checking it against the
 * m->nfiles entries before it. NULL, or what is wrong (why may hold it). */
static const char *decode_entry(const uint8_t *raw, size_t end, size_t *off,
                                const backup_manifest *m, backup_file *f, char *why, size_t cap)
{
    size_t o = *off;
    if (end - o < BACKUP_ENTRY_MIN || end - o < BACKUP_ENTRY_MIN + raw[o + 1]) {
        return "file entry runs past the end";
    }
    size_t nlen = raw[o + 1];
    f->where = raw[o];
    if (!backup_name_ok((const char *)raw + o + 2, nlen)) {
        return "bad file entry";
    }
    memcpy(f->name, raw + o + 2, nlen);
    f->name[nlen] = '\0';
    o += 2 + nlen;
    f->size = coding_get_fixed64(raw + o);
    memcpy(f->sha, raw + o + 8, BACKUP_SHA);
    o += 8 + BACKUP_SHA;
    if (f->where != BACKUP_WHERE_DIR && f->where != BACKUP_WHERE_TABLES) {
        return "bad file entry";
    }
    if (!where_ok(f)) {
        snprintf(why, cap, "%s in the wrong place", f->name);
        return why;
    }
    for (size_t j = 0; j < m->nfiles; j++) {
        if (strcmp(m->files[j].name, f->name) == 0) {
            snprintf(why, cap, "%s listed twice", f->name);
            return why;
        }
    }
    *off = o;
    return NULL;
}

shale_code backup_manifest_decode(const uint8_t *raw, size_t len, const char *path,
                                  backup_manifest *m, shale_error *err)
{
    memset(m, 0, sizeof *m);
    if (len < BACKUP_HEAD_BYTES + 4 || memcmp(raw, MAGIC, MAGIC_LEN) != 0) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s: %zu bytes, not a backup manifest", path, len);
    }
    shale_code rc = check_crc_version(raw, len, path, err);
    if (rc != SHALE_OK) {
        return rc;
    }
    uint32_t nfiles = coding_get_fixed32(raw + 84);
    size_t end = len - 4, off = BACKUP_HEAD_BYTES;
    if (nfiles > (end - off) / BACKUP_ENTRY_MIN) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s @84: %" PRIu32 " files do not fit", path,
                       nfiles);
    }
    m->id = coding_get_fixed64(raw + 16);
    m->seq = coding_get_fixed64(raw + 24);
    m->created_at_ms = coding_get_fixed64(raw + 32);
    m->new_files = coding_get_fixed64(raw + 40);
    m->new_bytes = coding_get_fixed64(raw + 48);
    memcpy(m->identity, raw + 56, BACKUP_ID_BYTES);
    m->files = calloc(nfiles ? nfiles : 1, sizeof *m->files);
    if (m->files == NULL) {
        return err_nomem(err);
    }
    m->cap = nfiles;
    bool has_shale = false, has_current = false;
    for (uint32_t i = 0; i < nfiles; i++) {
        backup_file *f = &m->files[i];
        size_t at = off;
        char why[96];
        const char *bad = decode_entry(raw, end, &off, m, f, why, sizeof why);
        if (bad != NULL) {
            backup_manifest_free(m);
            return err_set(err, SHALE_CORRUPTION, 0, "%s @%zu: %s", path, at, bad);
        }
        has_shale |= strcmp(f->name, DB_IDENTITY_NAME) == 0;
        has_current |= strcmp(f->name, "CURRENT") == 0;
        m->nfiles++;
    }
    if (off != end) {
        backup_manifest_free(m);
        return err_set(err, SHALE_CORRUPTION, 0, "%s @%zu: %zu unexpected bytes after the files",
                       path, off, end - off);
    }
    if (!has_shale || !has_current) {
        backup_manifest_free(m);
        return err_set(err, SHALE_CORRUPTION, 0, "%s: lists no %s", path,
                       has_shale ? "CURRENT" : DB_IDENTITY_NAME);
    }
    return SHALE_OK;
}

shale_code backup_manifest_check(const backup_manifest *m, const char *path, uint64_t id,
                                 const uint8_t identity[BACKUP_ID_BYTES], shale_error *err)
{
    if (m->id != id) {
        return err_set(err, SHALE_CORRUPTION, 0, "%s @16: id %" PRIu64 " in directory %06" PRIu64,
                       path, m->id, id);
    }
    if (memcmp(m->identity, identity, BACKUP_ID_BYTES) != 0) {
        return err_set(
            err, SHALE_CORRUPTION, 0,
            "%s @56: another database's backup (identity differs from " BACKUP_DEST_FILE ")", path);
    }
    return SHALE_OK;
}

shale_code backup_manifest_add(backup_manifest *m, const backup_file *f, shale_error *err)
{
    if (m->nfiles == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        backup_file *v = realloc(m->files, cap * sizeof *v);
        if (v == NULL) {
            return err_nomem(err);
        }
        m->files = v;
        m->cap = cap;
    }
    m->files[m->nfiles++] = *f;
    return SHALE_OK;
}

void backup_manifest_free(backup_manifest *m)
{
    free(m->files);
    m->files = NULL;
    m->nfiles = m->cap = 0;
}

/* ---- names ---- */

void backup_stored_name(char out[BACKUP_STORED_NAME], const backup_file *f)
{
    uint64_t number = 0;
    (void)version_parse_file_name(f->name, &number);
    snprintf(out, BACKUP_STORED_NAME, "%06" PRIu64 "-%" PRIu64 ".sst", number, f->size);
}

bool backup_name_ok(const char *name, size_t n)
{
    if (n == 0 || n > BACKUP_NAME_MAX || name[0] == '.') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

bool backup_parse_id(const char *name, uint64_t *id)
{
    size_t n = strlen(name);
    uint64_t v = 0;

    if (n < 6 || n > 19) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    if (v == 0) {
        return false;
    }
    char canon[32];
    snprintf(canon, sizeof canon, "%06" PRIu64, v);
    if (strcmp(canon, name) != 0) {
        return false;
    }
    *id = v;
    return true;
}
