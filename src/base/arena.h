/*
 * arena: a bump allocator for the memtable. Memory comes in blocks (ARENA_BLOCK_BYTES, or one
 * dedicated block for a large request) and is freed all at once by arena_free; there is no
 * per-allocation free.
 *
 * Threads: one allocating thread at a time (the memtable's single writer). arena_memory_bytes may
 * be read from any thread (relaxed atomic).
 */
#ifndef SHALE_BASE_ARENA_H
#define SHALE_BASE_ARENA_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* 4 MiB by default: block allocation is rare on the write path, and a block is two huge pages.
 * Small memtable budgets use smaller blocks (arena_init_sized), so one block is never a large
 * share of the budget. */
#define ARENA_BLOCK_BYTES     ((size_t)4 << 20)
#define ARENA_MIN_BLOCK_BYTES ((size_t)16 << 10)

typedef struct arena_block arena_block;

typedef struct arena {
    char *ptr;           /* next free byte in the current block */
    size_t remaining;    /* bytes left in the current block */
    arena_block *blocks; /* every block, newest first, for arena_free */
    size_t block_bytes;  /* ARENA_MIN_BLOCK_BYTES .. ARENA_BLOCK_BYTES */
    _Atomic size_t memory_bytes;
} arena;

/* arena_init: 4 MiB blocks. arena_init_sized: blocks of block_bytes, clamped to
 * ARENA_MIN_BLOCK_BYTES .. ARENA_BLOCK_BYTES. */
void arena_init(arena *a);
void arena_init_sized(arena *a, size_t block_bytes);
/* Frees every block. The arena may be reused after arena_init. */
void arena_destroy(arena *a);
/* Returns `bytes` bytes aligned to `align` (a power of two, at most 64), or NULL when malloc
 * fails. bytes may be 0 (returns a valid non-NULL pointer). */
void *arena_alloc(arena *a, size_t bytes, size_t align);
size_t arena_memory_bytes(const arena *a);

/* malloc for large, randomly probed memory (arena blocks, the memtable's hash index): requests of
 * at least a huge page (2 MiB) come 2 MiB-aligned and marked MADV_HUGEPAGE, smaller ones from
 * malloc. Release with free(). NULL when out of memory. Thread-safe. */
void *arena_huge_malloc(size_t bytes);

#endif
