/* crc32c: published vectors (RFC 3720 B.4) for both implementations, agreement with a bit-at-a-time
 * reference on random data at many lengths and misalignments, extension in pieces, and masking. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "base/crc32c.h"
#include "testutil.h"

/* The definition itself: one bit at a time, reflected polynomial. Slow but obviously right. */
static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc & 1) ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
        }
    }
    return ~crc;
}

typedef struct vector {
    const char *name;
    uint8_t data[48];
    size_t len;
    uint32_t crc;
} vector;

static const uint8_t iscsi_read[48] = {
    0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
    0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static size_t make_vectors(vector *v)
{
    size_t n = 0;
    v[n] = (vector){.name = "32 x 0x00", .len = 32, .crc = 0x8a9136aau};
    n++;
    v[n] = (vector){.name = "32 x 0xff", .len = 32, .crc = 0x62a8ab43u};
    memset(v[n].data, 0xff, 32);
    n++;
    v[n] = (vector){.name = "0..31", .len = 32, .crc = 0x46dd794eu};
    for (int i = 0; i < 32; i++) {
        v[n].data[i] = (uint8_t)i;
    }
    n++;
    v[n] = (vector){.name = "31..0", .len = 32, .crc = 0x113fdb5cu};
    for (int i = 0; i < 32; i++) {
        v[n].data[i] = (uint8_t)(31 - i);
    }
    n++;
    v[n] = (vector){.name = "iSCSI read", .len = 48, .crc = 0xd9963a56u};
    memcpy(v[n].data, iscsi_read, 48);
    n++;
    v[n] = (vector){.name = "123456789", .len = 9, .crc = 0xe3069283u};
    memcpy(v[n].data, "123456789", 9);
    n++;
    return n;
}

/* Which implementation a check runs against. */
enum impl { IMPL_PORTABLE, IMPL_HW, IMPL_DISPATCH };

static uint32_t run(enum impl which, uint32_t init, const void *p, size_t n)
{
    uint32_t out = 0;
    switch (which) {
    case IMPL_PORTABLE:
        return crc32c_extend_portable(init, p, n);
    case IMPL_HW:
        cr_assert(crc32c_extend_hw(init, p, n, &out), "hw path refused although available");
        return out;
    case IMPL_DISPATCH:
        return crc32c_extend(init, p, n);
    }
    return 0;
}

/* Every vector at every start offset 0..15, so both aligned and unaligned heads are covered. */
static void check_vectors(enum impl which)
{
    vector v[8];
    size_t nv = make_vectors(v);
    uint8_t space[48 + 16];
    for (size_t i = 0; i < nv; i++) {
        for (size_t off = 0; off < 16; off++) {
            memcpy(space + off, v[i].data, v[i].len);
            uint32_t got = run(which, 0, space + off, v[i].len);
            cr_assert_eq(got, v[i].crc, "%s @+%zu: got 0x%08x want 0x%08x", v[i].name, off, got,
                         v[i].crc);
        }
        cr_assert_eq(crc_bitwise(0, v[i].data, v[i].len), v[i].crc, "reference: %s", v[i].name);
    }
}

Test(crc32c, vectors_portable)
{
    check_vectors(IMPL_PORTABLE);
}

Test(crc32c, vectors_hw)
{
    if (!crc32c_hw_available()) {
        uint32_t out = 0x1234;
        cr_assert_not(crc32c_extend_hw(0, "abc", 3, &out));
        cr_assert_eq(out, 0x1234u, "hw path must compute nothing when unavailable");
        cr_skip_test("CPU lacks SSE4.2 (or not x86-64)");
    }
    check_vectors(IMPL_HW);
}

Test(crc32c, vectors_dispatch)
{
    check_vectors(IMPL_DISPATCH);
    cr_assert_eq(crc32c_value("123456789", 9), 0xe3069283u);
}

Test(crc32c, empty_input_returns_init)
{
    uint32_t out = 0;
    cr_assert_eq(crc32c_value(NULL, 0), 0u);
    cr_assert_eq(crc32c_extend(0xdeadbeefu, NULL, 0), 0xdeadbeefu);
    cr_assert_eq(crc32c_extend_portable(0xdeadbeefu, NULL, 0), 0xdeadbeefu);
    if (crc32c_extend_hw(0xdeadbeefu, NULL, 0, &out)) {
        cr_assert_eq(out, 0xdeadbeefu);
    }
}

static uint8_t *random_bytes(size_t n, uint64_t seed)
{
    tu_rng r;
    tu_rng_seed(&r, seed);
    uint8_t *p = malloc(n);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)tu_rng_next(&r);
    }
    return p;
}

/* Lengths around every path boundary: byte tail, 4- and 8-byte steps, the 3 x 256 and 3 x 8192
 * interleaved chunks, and a few multi-chunk sizes. */
static const size_t lengths[] = {
    1,    2,     3,     4,     5,           7,           8,     9,      15,   16,
    17,   31,    63,    64,    65,          255,         256,   257,    767,  768,
    769,  1023,  1024,  1536,  3071,        3072,        3073,  4096,   8191, 8192,
    8193, 24575, 24576, 24577, 24576 + 768, 49152 + 777, 65536, 100003,
};

Test(crc32c, implementations_agree_on_random_data)
{
    size_t max = 100003 + 16;
    uint8_t *buf = random_bytes(max, 7);
    bool hw = crc32c_hw_available();
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        for (size_t off = 0; off < 16; off++) {
            size_t n = lengths[i];
            const uint8_t *p = buf + off;
            uint32_t want = crc_bitwise(0x5a5a5a5au, p, n);
            uint32_t got = crc32c_extend_portable(0x5a5a5a5au, p, n);
            cr_assert_eq(got, want, "portable len %zu off %zu", n, off);
            if (hw) {
                uint32_t h = 0;
                cr_assert(crc32c_extend_hw(0x5a5a5a5au, p, n, &h));
                cr_assert_eq(h, want, "hw len %zu off %zu: 0x%08x != 0x%08x", n, off, h, want);
            }
            cr_assert_eq(crc32c_extend(0x5a5a5a5au, p, n), want, "dispatch len %zu", n);
        }
    }
    free(buf);
}

Test(crc32c, every_small_length_and_offset)
{
    uint8_t *buf = random_bytes(600, 11);
    bool hw = crc32c_hw_available();
    for (size_t off = 0; off < 8; off++) {
        for (size_t n = 0; n <= 560; n++) {
            uint32_t want = crc_bitwise(0, buf + off, n);
            cr_assert_eq(crc32c_extend_portable(0, buf + off, n), want, "portable %zu+%zu", off, n);
            if (hw) {
                uint32_t h = 0;
                cr_assert(crc32c_extend_hw(0, buf + off, n, &h));
                cr_assert_eq(h, want, "hw %zu+%zu", off, n);
            }
        }
    }
    free(buf);
}

/* CRC(A|B|C...) must equal extending piece by piece, for any cut points. */
Test(crc32c, extend_in_pieces_equals_whole)
{
    size_t n = 70001;
    uint8_t *buf = random_bytes(n, 3);
    tu_rng r;
    tu_rng_seed(&r, 99);
    uint32_t whole = crc_bitwise(0, buf, n);
    cr_assert_eq(crc32c_value(buf, n), whole);
    for (int round = 0; round < 60; round++) {
        uint32_t port = 0;
        uint32_t disp = 0;
        uint32_t hw = 0;
        bool have_hw = crc32c_hw_available();
        size_t pos = 0;
        while (pos < n) {
            /* Mix tiny and large pieces so every path sees a non-zero starting CRC. */
            size_t max = (round % 3 == 0) ? 17 : (round % 3 == 1) ? 3000 : 30000;
            size_t piece = (size_t)tu_rng_below(&r, max);
            if (piece > n - pos) {
                piece = n - pos;
            }
            port = crc32c_extend_portable(port, buf + pos, piece);
            disp = crc32c_extend(disp, buf + pos, piece);
            if (have_hw) {
                cr_assert(crc32c_extend_hw(hw, buf + pos, piece, &hw));
            }
            pos += piece;
        }
        cr_assert_eq(port, whole, "portable pieces, round %d", round);
        cr_assert_eq(disp, whole, "dispatch pieces, round %d", round);
        if (have_hw) {
            cr_assert_eq(hw, whole, "hw pieces, round %d", round);
        }
    }
    free(buf);
}

Test(crc32c, vectors_split_anywhere)
{
    vector v[8];
    size_t nv = make_vectors(v);
    for (size_t i = 0; i < nv; i++) {
        for (size_t cut = 0; cut <= v[i].len; cut++) {
            uint32_t c =
                crc32c_extend(crc32c_value(v[i].data, cut), v[i].data + cut, v[i].len - cut);
            cr_assert_eq(c, v[i].crc, "%s cut at %zu", v[i].name, cut);
            c = crc32c_extend_portable(crc32c_extend_portable(0, v[i].data, cut), v[i].data + cut,
                                       v[i].len - cut);
            cr_assert_eq(c, v[i].crc, "portable %s cut at %zu", v[i].name, cut);
        }
    }
}

Test(crc32c, different_data_different_crc)
{
    cr_assert_neq(crc32c_value("a", 1), crc32c_value("foo", 3));
    cr_assert_neq(crc32c_value("hello", 5), crc32c_value("hellp", 5));
}

Test(crc32c, mask_round_trip)
{
    tu_rng r;
    tu_rng_seed(&r, 5);
    uint32_t crcs[] = {0, 1, 0xffffffffu, 0x8a9136aau, 0xe3069283u, crc32c_value("foo", 3)};
    for (size_t i = 0; i < sizeof crcs / sizeof crcs[0]; i++) {
        uint32_t c = crcs[i];
        cr_assert_neq(crc32c_mask(c), c, "mask(0x%08x) == itself", c);
        cr_assert_neq(crc32c_mask(crc32c_mask(c)), c);
        cr_assert_eq(crc32c_unmask(crc32c_mask(c)), c);
        cr_assert_eq(crc32c_unmask(crc32c_unmask(crc32c_mask(crc32c_mask(c)))), c);
    }
    for (int i = 0; i < 100000; i++) {
        uint32_t c = (uint32_t)tu_rng_next(&r);
        cr_assert_eq(crc32c_unmask(crc32c_mask(c)), c);
    }
    /* The documented transform: rotate right by 15, add the delta. */
    cr_assert_eq(crc32c_mask(0), CRC32C_MASK_DELTA);
    cr_assert_eq(crc32c_mask(1), (1u << 17) + CRC32C_MASK_DELTA);
}
