/*
 * arena: bump allocation out of ARENA_BLOCK_BYTES blocks. A request larger than a quarter of a
 * block gets a dedicated block of its own and leaves the current block current, so at most a
 * quarter of any block is wasted when it is abandoned for a fresh one.
 *
 * Blocks of 2 MiB or more are 2 MiB-aligned and marked MADV_HUGEPAGE (arena_huge_malloc): a
 * memtable of a million nodes is searched by pointer chasing across its whole arena, and with 4 KiB
 * pages most steps also miss the TLB (measured: random gets on 1M entries went from 200k to 356k
 * per second with huge pages). Where the kernel has THP off, madvise fails harmlessly and the block
 * is ordinary.
 *
 * memory_bytes is written only by the allocating thread and read by anyone (the memtable's size
 * check from other threads), hence the relaxed atomic: the value is a statistic, not a fence.
 */
#include "base/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "base/error.h"

struct arena_block {
    arena_block *next;
    size_t bytes; /* what malloc was asked for, header included */
};
/* Payload starts right after the header; keep the header a multiple of malloc's alignment so the
 * payload starts as aligned as the block itself. */
_Static_assert(sizeof(arena_block) % 16 == 0, "arena_block header must keep 16-byte alignment");

#define ARENA_MAX_ALIGN       64
/* x86-64 transparent huge page size; ARENA_BLOCK_BYTES is a multiple of it. */
#define ARENA_HUGE_PAGE_BYTES ((size_t)2 << 20)

static size_t clamp_block(size_t block_bytes)
{
    return block_bytes < ARENA_MIN_BLOCK_BYTES ? ARENA_MIN_BLOCK_BYTES
           : block_bytes > ARENA_BLOCK_BYTES   ? ARENA_BLOCK_BYTES
                                               : block_bytes;
}

void arena_init_sized(arena *a, size_t block_bytes)
{
    a->ptr = NULL;
    a->remaining = 0;
    a->blocks = NULL;
    a->block_bytes = clamp_block(block_bytes);
    atomic_init(&a->memory_bytes, 0);
    a->spare = NULL;
    atomic_init(&a->spare_bytes, 0);
}

void arena_init(arena *a)
{
    arena_init_sized(a, ARENA_BLOCK_BYTES);
}

void arena_free_blocks(arena_block *b)
{
    while (b != NULL) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
}

void arena_destroy(arena *a)
{
    arena_free_blocks(a->blocks);
    arena_free_blocks(a->spare);
    arena_init_sized(a, a->block_bytes);
}

size_t arena_destroy_keep(arena *a, arena_block **keep)
{
    size_t kept = 0;
    arena_block *lists[2] = {a->blocks, a->spare};

    for (int i = 0; i < 2; i++) {
        for (arena_block *b = lists[i], *next; b != NULL; b = next) {
            next = b->next;
            if (b->bytes == a->block_bytes) {
                b->next = *keep;
                *keep = b;
                kept += b->bytes;
            } else {
                free(b);
            }
        }
    }
    a->blocks = a->spare = NULL;
    arena_init_sized(a, a->block_bytes);
    return kept;
}

void arena_give_spare(arena *a, arena_block *list)
{
    size_t bytes = atomic_load_explicit(&a->spare_bytes, memory_order_relaxed);

    for (arena_block *b = list, *next; b != NULL; b = next) {
        next = b->next;
        if (b->bytes != a->block_bytes) {
            free(b);
            continue;
        }
        b->next = a->spare;
        a->spare = b;
        bytes += b->bytes;
    }
    atomic_store_explicit(&a->spare_bytes, bytes, memory_order_relaxed);
}

arena_block *arena_blocks_new_faulted(size_t block_bytes, size_t total, size_t *bytes)
{
    arena_block *list = NULL;
    size_t size = clamp_block(block_bytes);

    *bytes = 0;
    for (size_t i = 0; i < total / size; i++) {
        arena_block *b = arena_huge_malloc(size);
        if (b == NULL) {
            break;
        }
        /* One write per 4 KiB page (a huge page faults in whole on its first). volatile: the
         * stores must happen although nothing reads them. */
        for (size_t off = sizeof *b; off < size; off += 4096) {
            ((volatile char *)b)[off] = 0;
        }
        b->bytes = size;
        b->next = list;
        list = b;
        *bytes += size;
    }
    return list;
}

size_t arena_spare_bytes(const arena *a)
{
    return atomic_load_explicit(&a->spare_bytes, memory_order_relaxed);
}

void *arena_huge_malloc(size_t bytes)
{
    void *p = NULL;

    if (bytes < ARENA_HUGE_PAGE_BYTES) {
        return malloc(bytes);
    }
    if (posix_memalign(&p, ARENA_HUGE_PAGE_BYTES, bytes) != 0) {
        return NULL;
    }
    (void)madvise(p, bytes, MADV_HUGEPAGE); /* fails harmlessly where THP is off */
    return p;
}

/* Mallocs a block of `bytes` (header included), links it in and counts it. */
static arena_block *new_block(arena *a, size_t bytes)
{
    arena_block *b;
    if (a->spare != NULL && bytes == a->block_bytes) {
        b = a->spare; /* every spare block is block_bytes (arena_give_spare) */
        a->spare = b->next;
        atomic_store_explicit(&a->spare_bytes,
                              atomic_load_explicit(&a->spare_bytes, memory_order_relaxed) - bytes,
                              memory_order_relaxed);
    } else {
        /* A dedicated (large) block cannot use a spare: free spares of at least its size, so
         * used + spare never passes what the arena was given (a memtable fed large values would
         * otherwise reach a full write buffer used beside a full write buffer of spares). */
        size_t freed = 0;
        while (a->spare != NULL && freed < bytes) {
            arena_block *s = a->spare;
            a->spare = s->next;
            freed += s->bytes;
            free(s);
        }
        if (freed > 0) {
            atomic_store_explicit(&a->spare_bytes,
                                  atomic_load_explicit(&a->spare_bytes, memory_order_relaxed) -
                                      freed,
                                  memory_order_relaxed);
        }
        b = arena_huge_malloc(bytes);
    }
    if (b == NULL) {
        return NULL;
    }
    b->bytes = bytes;
    b->next = a->blocks;
    a->blocks = b;
    size_t total = atomic_load_explicit(&a->memory_bytes, memory_order_relaxed);
    atomic_store_explicit(&a->memory_bytes, total + bytes, memory_order_relaxed);
    return b;
}

static size_t padding(const char *p, size_t align)
{
    return (size_t)(-(uintptr_t)p & (uintptr_t)(align - 1));
}

void *arena_alloc(arena *a, size_t bytes, size_t align)
{
    if (align == 0) {
        align = 1;
    }
    if (NEVER(align > ARENA_MAX_ALIGN || (align & (align - 1)) != 0)) {
        return NULL;
    }
    if (bytes == 0) {
        bytes = 1; /* a distinct, valid pointer, as malloc(1) would give */
    }

    if (bytes > a->block_bytes / 4) {
        /* Always a dedicated block, even when the current block has room: the current block is
         * kept for the small entries that follow, and the big one costs exactly its size.
         * Dedicated block: header + bytes + worst-case alignment padding. */
        if (bytes > SIZE_MAX - sizeof(arena_block) - (align - 1)) {
            return NULL;
        }
        arena_block *b = new_block(a, sizeof(arena_block) + bytes + (align - 1));
        if (b == NULL) {
            return NULL;
        }
        char *start = (char *)(b + 1);
        return start + padding(start, align);
    }

    if (a->ptr != NULL) {
        size_t pad = padding(a->ptr, align);
        if (pad <= a->remaining && bytes <= a->remaining - pad) {
            char *p = a->ptr + pad;
            a->ptr = p + bytes;
            a->remaining -= pad + bytes;
            return p;
        }
    }

    arena_block *b = new_block(a, a->block_bytes);
    if (b == NULL) {
        return NULL;
    }
    char *start = (char *)(b + 1);
    size_t pad = padding(start, align);
    /* bytes <= a quarter block and pad < 64, so this always fits. */
    a->ptr = start + pad + bytes;
    a->remaining = a->block_bytes - sizeof(arena_block) - pad - bytes;
    return start + pad;
}

size_t arena_memory_bytes(const arena *a)
{
    return atomic_load_explicit(&a->memory_bytes, memory_order_relaxed);
}
