/*
 * crc32c: two implementations of CRC-32C behind one entry point.
 *
 * Portable: slicing-by-8 (Intel's method): eight 256-entry tables, where table[k][b] is the CRC
 * register after byte b followed by k zero bytes, so eight input bytes cost eight lookups and one
 * dependency chain step instead of eight.
 *
 * Hardware (x86-64 with SSE4.2): the crc32 instruction, 8 bytes at a time. The instruction has a
 * latency of 3 cycles but a throughput of 1 per cycle, so long buffers are cut into three
 * adjacent streams computed in an interleaved loop and combined afterwards by "shifting" the
 * earlier streams' CRCs over the later streams' lengths (Mark Adler's method, also used by
 * LevelDB and the Linux kernel). The shift is a linear map over GF(2), applied with four byte
 * tables per stream length.
 *
 * All tables are built once, on first use, under pthread_once; CPU detection happens there too.
 */
#include "base/crc32c.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "base/coding.h"

/* The reflected Castagnoli polynomial. */
#define POLY 0x82f63b78u

/* ---- portable: slicing-by-8 ------------------------------------------------------------------ */

static uint32_t slice_table[8][256];
static pthread_once_t slice_once = PTHREAD_ONCE_INIT;

static void slice_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        }
        slice_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = slice_table[0][n];
        for (int k = 1; k < 8; k++) {
            c = slice_table[0][c & 0xff] ^ (c >> 8);
            slice_table[k][n] = c;
        }
    }
}

uint32_t crc32c_extend_portable(uint32_t init_crc, const void *data, size_t n)
{
    if (n == 0) {
        return init_crc;
    }
    pthread_once(&slice_once, slice_init);
    const uint8_t *p = data;
    uint32_t crc = ~init_crc;

    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        crc = slice_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        /* Little-endian load whatever the host's order, so the byte lanes below are fixed. */
        uint64_t w = coding_get_fixed64(p) ^ crc;
        crc = slice_table[7][w & 0xff] ^ slice_table[6][(w >> 8) & 0xff] ^
              slice_table[5][(w >> 16) & 0xff] ^ slice_table[4][(w >> 24) & 0xff] ^
              slice_table[3][(w >> 32) & 0xff] ^ slice_table[2][(w >> 40) & 0xff] ^
              slice_table[1][(w >> 48) & 0xff] ^ slice_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n > 0) {
        crc = slice_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        n--;
    }
    return ~crc;
}

/* ---- hardware: SSE4.2 crc32 ------------------------------------------------------------------ */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

/* Stream lengths for the three-way interleave. LONG amortises the combine over 24 KiB; SHORT
 * keeps the interleave for buffers down to 768 bytes. Both multiples of 8. */
#define LONG_BYTES  8192
#define SHORT_BYTES 256

static bool hw_present;
/* zeros_long[i][b]: the CRC register contribution of byte i of a register value b after
 * LONG_BYTES zero bytes (likewise for SHORT). */
static uint32_t zeros_long[4][256];
static uint32_t zeros_short[4][256];
static pthread_once_t hw_once = PTHREAD_ONCE_INIT;

/* Multiplies the 32x32 GF(2) matrix mat (one uint32_t per column) by vec. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    while (vec != 0) {
        if (vec & 1) {
            sum ^= *mat;
        }
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
    for (int n = 0; n < 32; n++) {
        square[n] = gf2_times(mat, mat[n]);
    }
}

/* Builds the operator that feeds `len` zero bytes (len a power of two) through the register. */
static void zeros_op(uint32_t *even, size_t len)
{
    uint32_t odd[32];

    /* One zero bit. */
    odd[0] = POLY;
    uint32_t row = 1;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_square(even, odd); /* two zero bits */
    gf2_square(odd, even); /* four zero bits */
    /* Each square doubles the count: first one byte into even, then two bytes into odd, ... */
    for (;;) {
        gf2_square(even, odd);
        len >>= 1;
        if (len == 0) {
            return;
        }
        gf2_square(odd, even);
        len >>= 1;
        if (len == 0) {
            memcpy(even, odd, sizeof odd);
            return;
        }
    }
}

static void zeros_tables(uint32_t zeros[4][256], size_t len)
{
    uint32_t op[32];
    zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        zeros[0][n] = gf2_times(op, n);
        zeros[1][n] = gf2_times(op, n << 8);
        zeros[2][n] = gf2_times(op, n << 16);
        zeros[3][n] = gf2_times(op, n << 24);
    }
}

static uint32_t shift(uint32_t zeros[4][256], uint32_t crc)
{
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^
           zeros[3][crc >> 24];
}

static void hw_init(void)
{
    __builtin_cpu_init();
    hw_present = __builtin_cpu_supports("sse4.2");
    if (hw_present) {
        zeros_tables(zeros_long, LONG_BYTES);
        zeros_tables(zeros_short, SHORT_BYTES);
    }
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v); /* x86-64 is little-endian and allows unaligned loads */
    return v;
}

/* Runs the crc32 instruction over three adjacent streams of `stride` bytes at once (the
 * instruction's latency hides behind the other two), then folds them into one register:
 * crc(A|B) = shift_|B|(crc(A)) ^ crc_from_zero(B). Consumes whole 3*stride chunks only. */
__attribute__((target("sse4.2"))) static inline uint64_t
triple(uint64_t c0, const uint8_t **pp, size_t *np, size_t stride, uint32_t zeros[4][256])
{
    const uint8_t *p = *pp;
    size_t n = *np;
    while (n >= 3 * stride) {
        uint64_t c1 = 0;
        uint64_t c2 = 0;
        const uint8_t *end = p + stride;
        do {
            c0 = __builtin_ia32_crc32di(c0, load64(p));
            c1 = __builtin_ia32_crc32di(c1, load64(p + stride));
            c2 = __builtin_ia32_crc32di(c2, load64(p + 2 * stride));
            p += 8;
        } while (p < end);
        c0 = shift(zeros, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = shift(zeros, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * stride;
        n -= 3 * stride;
    }
    *pp = p;
    *np = n;
    return c0;
}

__attribute__((target("sse4.2"))) static uint32_t hw_extend(uint32_t init_crc, const uint8_t *p,
                                                            size_t n)
{
    uint64_t c0 = ~init_crc;

    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        c0 = __builtin_ia32_crc32qi((uint32_t)c0, *p++);
        n--;
    }
    c0 = triple(c0, &p, &n, LONG_BYTES, zeros_long);
    c0 = triple(c0, &p, &n, SHORT_BYTES, zeros_short);
    while (n >= 8) {
        c0 = __builtin_ia32_crc32di(c0, load64(p));
        p += 8;
        n -= 8;
    }
    if (n >= 4) {
        uint32_t w;
        memcpy(&w, p, sizeof w);
        c0 = __builtin_ia32_crc32si((uint32_t)c0, w);
        p += 4;
        n -= 4;
    }
    while (n > 0) {
        c0 = __builtin_ia32_crc32qi((uint32_t)c0, *p++);
        n--;
    }
    return ~(uint32_t)c0;
}

bool crc32c_hw_available(void)
{
    pthread_once(&hw_once, hw_init);
    return hw_present;
}

bool crc32c_extend_hw(uint32_t init_crc, const void *data, size_t n, uint32_t *out)
{
    if (!crc32c_hw_available()) {
        return false;
    }
    *out = n == 0 ? init_crc : hw_extend(init_crc, data, n);
    return true;
}

uint32_t crc32c_extend(uint32_t init_crc, const void *data, size_t n)
{
    if (n == 0) {
        return init_crc;
    }
    if (crc32c_hw_available()) {
        return hw_extend(init_crc, data, n);
    }
    return crc32c_extend_portable(init_crc, data, n);
}

#else /* not x86-64 */

bool crc32c_hw_available(void)
{
    return false;
}

bool crc32c_extend_hw(uint32_t init_crc, const void *data, size_t n, uint32_t *out)
{
    (void)init_crc;
    (void)data;
    (void)n;
    (void)out;
    return false;
}

uint32_t crc32c_extend(uint32_t init_crc, const void *data, size_t n)
{
    return crc32c_extend_portable(init_crc, data, n);
}

#endif
