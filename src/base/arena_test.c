/* arena: alignment, many small allocations that never overlap, large requests in dedicated blocks,
 * memory accounting, zero-size requests and reuse after destroy. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "testutil.h"

Test(arena, fresh_arena_is_empty)
{
    arena a;
    arena_init(&a);
    cr_assert_eq(arena_memory_bytes(&a), 0u);
    arena_destroy(&a);
    cr_assert_eq(arena_memory_bytes(&a), 0u);
}

Test(arena, alignment)
{
    arena a;
    arena_init(&a);
    tu_rng r;
    tu_rng_seed(&r, 1);
    for (int i = 0; i < 20000; i++) {
        /* Odd sizes in between push the bump pointer off every boundary. */
        size_t odd = (size_t)tu_rng_below(&r, 13) + 1;
        cr_assert_not_null(arena_alloc(&a, odd, 1));
        size_t align = (size_t)1 << tu_rng_below(&r, 7); /* 1 .. 64 */
        size_t bytes = (size_t)tu_rng_below(&r, 200);
        char *p = arena_alloc(&a, bytes, align);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % align, 0u, "align %zu gave %p", align, (void *)p);
        memset(p, 0xab, bytes);
    }
    /* Alignment also holds for dedicated (large) blocks. */
    for (size_t align = 1; align <= 64; align *= 2) {
        cr_assert_not_null(arena_alloc(&a, 3, 1));
        char *p = arena_alloc(&a, ARENA_BLOCK_BYTES / 4 + 1, align);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % align, 0u);
        memset(p, 0, ARENA_BLOCK_BYTES / 4 + 1);
    }
    /* align 0 is treated as 1. */
    cr_assert_not_null(arena_alloc(&a, 5, 0));
    arena_destroy(&a);
}

typedef struct rec {
    uint8_t *p;
    uint32_t len;
    uint8_t fill;
} rec;

/* Fills every allocation with its own pattern, then checks them all: any overlap shows up. */
Test(arena, many_small_allocations_do_not_overlap)
{
    arena a;
    arena_init(&a);
    enum { N = 200000 };
    rec *recs = calloc(N, sizeof *recs);
    cr_assert_not_null(recs);
    tu_rng r;
    tu_rng_seed(&r, 2);
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        uint32_t len = (uint32_t)tu_rng_below(&r, 100) + 1;
        recs[i].p = arena_alloc(&a, len, (i % 3 == 0) ? 8 : 1);
        cr_assert_not_null(recs[i].p);
        recs[i].len = len;
        recs[i].fill = (uint8_t)i;
        memset(recs[i].p, recs[i].fill, len);
        total += len;
    }
    for (int i = 0; i < N; i++) {
        for (uint32_t k = 0; k < recs[i].len; k++) {
            cr_assert_eq(recs[i].p[k], recs[i].fill, "allocation %d byte %u overwritten", i, k);
        }
    }
    size_t mem = arena_memory_bytes(&a);
    cr_assert_geq(mem, total);
    /* ~10 MiB of payload in 4 MiB blocks: at most one block of waste per block used. */
    cr_assert_leq(mem, total + 2 * ARENA_BLOCK_BYTES, "mem %zu for %zu payload", mem, total);
    cr_assert_eq(mem % ARENA_BLOCK_BYTES, 0u, "only standard blocks expected");
    free(recs);
    arena_destroy(&a);
}

Test(arena, memory_accounting)
{
    arena a;
    arena_init(&a);
    cr_assert_not_null(arena_alloc(&a, 10, 1));
    cr_assert_eq(arena_memory_bytes(&a), ARENA_BLOCK_BYTES, "first allocation opens one block");
    cr_assert_not_null(arena_alloc(&a, 1000, 8));
    cr_assert_eq(arena_memory_bytes(&a), ARENA_BLOCK_BYTES, "fits in the current block");
    size_t big = 3u << 20;
    cr_assert_not_null(arena_alloc(&a, big, 8));
    size_t mem = arena_memory_bytes(&a);
    cr_assert_geq(mem, ARENA_BLOCK_BYTES + big);
    cr_assert_leq(mem, ARENA_BLOCK_BYTES + big + 256, "dedicated block overhead: %zu", mem);
    arena_destroy(&a);
    cr_assert_eq(arena_memory_bytes(&a), 0u);
}

/* A big request must not abandon the current block: the next small one continues in place. */
Test(arena, big_allocation_gets_dedicated_block)
{
    arena a;
    arena_init(&a);
    char *p1 = arena_alloc(&a, 16, 1);
    cr_assert_not_null(p1);
    size_t big = ARENA_BLOCK_BYTES / 4 + 1;
    char *b = arena_alloc(&a, big, 16);
    cr_assert_not_null(b);
    memset(b, 0x5a, big);
    char *p2 = arena_alloc(&a, 16, 1);
    cr_assert_eq(p2, p1 + 16, "the current block stayed current");
    /* Larger than a whole block works too. */
    size_t huge = ARENA_BLOCK_BYTES * 2 + 7;
    char *h = arena_alloc(&a, huge, 64);
    cr_assert_not_null(h);
    memset(h, 0x33, huge);
    cr_assert_eq(arena_alloc(&a, 16, 1), p2 + 16);
    for (size_t i = 0; i < big; i += 4096) {
        cr_assert_eq((unsigned char)b[i], 0x5a);
    }
    /* Exactly a quarter block still comes from the shared blocks. */
    size_t before = arena_memory_bytes(&a);
    cr_assert_not_null(arena_alloc(&a, ARENA_BLOCK_BYTES / 4, 1));
    cr_assert_eq(arena_memory_bytes(&a), before, "a quarter block fits the current block");
    arena_destroy(&a);
}

/* When the current block cannot fit a request, a fresh block is opened for it. */
Test(arena, block_rollover)
{
    arena a;
    arena_init(&a);
    size_t q = ARENA_BLOCK_BYTES / 4;
    for (int i = 0; i < 3; i++) {
        cr_assert_not_null(arena_alloc(&a, q, 1));
    }
    cr_assert_eq(arena_memory_bytes(&a), ARENA_BLOCK_BYTES);
    /* The block header takes a few bytes, so a fourth quarter does not fit. */
    char *p = arena_alloc(&a, q, 1);
    cr_assert_not_null(p);
    cr_assert_eq(arena_memory_bytes(&a), 2 * ARENA_BLOCK_BYTES);
    memset(p, 1, q);
    arena_destroy(&a);
}

Test(arena, zero_size)
{
    arena a;
    arena_init(&a);
    void *p = arena_alloc(&a, 0, 1);
    cr_assert_not_null(p, "zero-size allocation on an empty arena");
    void *q = arena_alloc(&a, 0, 64);
    cr_assert_not_null(q);
    cr_assert_eq((uintptr_t)q % 64, 0u);
    cr_assert_not_null(arena_alloc(&a, 0, 8));
    arena_destroy(&a);
}

Test(arena, reuse_after_destroy)
{
    arena a;
    arena_init(&a);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 1000; i++) {
            char *p = arena_alloc(&a, 100, 8);
            cr_assert_not_null(p);
            memset(p, i, 100);
        }
        cr_assert_not_null(arena_alloc(&a, 2u << 20, 8));
        cr_assert_gt(arena_memory_bytes(&a), 0u);
        arena_destroy(&a);
        cr_assert_eq(arena_memory_bytes(&a), 0u);
    }
}

/* A request whose size plus header and padding overflows size_t fails cleanly, without malloc. */
Test(arena, overflowing_request_returns_null)
{
    arena a;
    arena_init(&a);
    cr_assert_not_null(arena_alloc(&a, 8, 8));
    size_t before = arena_memory_bytes(&a);
    cr_assert_null(arena_alloc(&a, SIZE_MAX, 1));
    cr_assert_null(arena_alloc(&a, SIZE_MAX - 8, 64));
    cr_assert_eq(arena_memory_bytes(&a), before);
    cr_assert_not_null(arena_alloc(&a, 8, 8), "still usable afterwards");
    arena_destroy(&a);
}

/* Recycling: the standard blocks of a dead arena serve the next one (the same memory, no
 * malloc), counted in memory_bytes only once used; large dedicated blocks are not kept; blocks
 * of another size are refused; destroy frees unused spares (ASan checks leaks). */
Test(arena, destroy_keep_and_give_spare)
{
    const size_t block = 64 << 10;
    arena a;
    arena_init_sized(&a, block);
    void *first = arena_alloc(&a, 100, 8);
    cr_assert_not_null(first);
    for (int i = 0; i < 3 * 64; i++) {
        cr_assert_not_null(arena_alloc(&a, 1000, 8)); /* about three more blocks */
    }
    cr_assert_not_null(arena_alloc(&a, block, 8)); /* dedicated: not kept */
    size_t used = arena_memory_bytes(&a);
    arena_block *keep = NULL;
    size_t kept = arena_destroy_keep(&a, &keep);
    cr_assert_not_null(keep);
    cr_assert_eq(kept % block, 0);
    cr_assert_geq(kept, 3 * block);
    cr_assert_eq(kept, used - (16 + block + 7), "all but the dedicated block (header, padding)");
    cr_assert_eq(arena_memory_bytes(&a), 0);

    arena b;
    arena_init_sized(&b, block);
    arena_give_spare(&b, keep);
    cr_assert_eq(arena_spare_bytes(&b), kept);
    cr_assert_eq(arena_memory_bytes(&b), 0, "a spare counts once used");
    char *p = arena_alloc(&b, 100, 8);
    cr_assert_not_null(p);
    cr_assert_eq(arena_memory_bytes(&b), block);
    cr_assert_eq(arena_spare_bytes(&b), kept - block);
    memset(p, 0x5a, 100);
    /* Using every spare, then one more block from malloc. */
    size_t n = 0;
    while (arena_memory_bytes(&b) <= kept) {
        char *q = arena_alloc(&b, 1000, 8);
        cr_assert_not_null(q);
        memset(q, (int)(n++ & 0xff), 1000);
        cr_assert_eq(arena_memory_bytes(&b) + arena_spare_bytes(&b),
                     arena_memory_bytes(&b) <= kept ? kept : kept + block);
    }
    cr_assert_eq(arena_spare_bytes(&b), 0);
    cr_assert_eq(arena_memory_bytes(&b), kept + block);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq((unsigned char)p[i], 0x5a, "nothing overlaps");
    }

    /* Blocks of another size are freed, not kept; destroy frees unused spares. */
    arena_block *more = NULL;
    cr_assert_eq(arena_destroy_keep(&b, &more), kept + block);
    arena c;
    arena_init_sized(&c, 2 * block);
    arena_give_spare(&c, more);
    cr_assert_eq(arena_spare_bytes(&c), 0, "the wrong size is refused");
    arena_destroy(&c);
    arena d;
    arena_init_sized(&d, block);
    arena_block *none = NULL;
    cr_assert_eq(arena_destroy_keep(&d, &none), 0);
    cr_assert_null(none);
    arena_init_sized(&d, block);
    cr_assert_not_null(arena_alloc(&d, 10, 1));
    arena_block *one = NULL;
    cr_assert_eq(arena_destroy_keep(&d, &one), block);
    arena_init_sized(&d, block);
    arena_give_spare(&d, one);
    arena_destroy(&d); /* the unused spare is freed */
    cr_assert_eq(arena_spare_bytes(&d), 0);
}

/* Large entries cannot use spare blocks: each one frees spares of at least its size, so memory
 * used plus spare never passes what the arena was given plus the current block (the memtable's
 * bound: a memtable fed large values must not hold a write buffer of idle spares beside a full
 * write buffer of its own). */
Test(arena, large_entries_free_spares_of_their_size)
{
    const size_t block = 64 << 10;
    arena a;
    arena_init_sized(&a, block);
    for (int i = 0; i < 8 * 64; i++) {
        cr_assert_not_null(arena_alloc(&a, 1000, 8));
    }
    arena_block *keep = NULL;
    size_t kept = arena_destroy_keep(&a, &keep);
    cr_assert_geq(kept, 7 * block);

    arena b;
    arena_init_sized(&b, block);
    arena_give_spare(&b, keep);
    size_t spare_before = arena_spare_bytes(&b);
    cr_assert_eq(spare_before, kept);
    const size_t big = 40000; /* over a quarter block: a dedicated block each */
    for (int i = 0; i < 20; i++) {
        size_t spare = arena_spare_bytes(&b), used = arena_memory_bytes(&b);
        char *p = arena_alloc(&b, big, 8);
        cr_assert_not_null(p);
        memset(p, 0x33, big);
        size_t grew = arena_memory_bytes(&b) - used;
        cr_assert_geq(grew, big);
        cr_assert(arena_spare_bytes(&b) == 0 || spare - arena_spare_bytes(&b) >= grew,
                  "entry %d: %zu spare bytes before, %zu after, %zu used", i, spare,
                  arena_spare_bytes(&b), grew);
        if (spare > 0) {
            cr_assert_leq(arena_memory_bytes(&b) + arena_spare_bytes(&b), kept + block,
                          "while spares last, held memory stays within what was given");
        }
    }
    cr_assert_eq(arena_spare_bytes(&b), 0, "20 large entries used up every spare");
    /* Standard-size allocations still work once the spares are gone. */
    cr_assert_not_null(arena_alloc(&b, 100, 8));
    arena_destroy(&b);
}
