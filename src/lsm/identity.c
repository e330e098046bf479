/* identity: see identity.h. */
#include "lsm/identity.h"

#include <string.h>

#include "base/coding.h"
#include "base/crc32c.h"

#define DB_IDENTITY_MAGIC "SHALEDB\0"

void db_identity_make(uint64_t created_at_ms, uint8_t out[DB_IDENTITY_BYTES])
{
    memcpy(out, DB_IDENTITY_MAGIC, 8);
    coding_put_fixed32(out + 8, DB_IDENTITY_VERSION);
    coding_put_fixed32(out + 12, 0);
    coding_put_fixed64(out + 16, created_at_ms);
    coding_put_fixed32(out + 24, crc32c_mask(crc32c_value(out, 24)));
}

const char *db_identity_check(const uint8_t *p, size_t n, size_t *at, uint32_t *version)
{
    *at = 0;
    *version = 0;
    if (n != DB_IDENTITY_BYTES) {
        return "28 bytes expected";
    }
    if (memcmp(p, DB_IDENTITY_MAGIC, 8) != 0) {
        return "bad magic";
    }
    if (crc32c_unmask(coding_get_fixed32(p + 24)) != crc32c_value(p, 24)) {
        *at = 24;
        return "checksum mismatch";
    }
    *version = coding_get_fixed32(p + 8);
    if (*version != DB_IDENTITY_VERSION) {
        *at = 8;
        return "unknown format version";
    }
    return NULL;
}
