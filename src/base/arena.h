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
    arena_block *spare;         /* recycled blocks of block_bytes, used before malloc */
    _Atomic size_t spare_bytes; /* their total; not in memory_bytes until used */
} arena;

/* arena_init: 4 MiB blocks. arena_init_sized: blocks of block_bytes, clamped to
 * ARENA_MIN_BLOCK_BYTES .. ARENA_BLOCK_BYTES. */
void arena_init(arena *a);
void arena_init_sized(arena *a, size_t block_bytes);
/* Frees every block (spare ones too). The arena may be reused after arena_init. */
void arena_destroy(arena *a);

/* ---- Block recycling ----
 * A memtable's arena dies whole, and the next memtable of the same database wants as many
 * blocks of the same size: handing the old blocks over saves a malloc and, above all, the kernel
 * faulting in and zeroing every page again (measured: ~5% of a sequential fill).
 *
 * arena_destroy_keep: as arena_destroy, but the standard blocks (block_bytes each) are prepended
 * to *keep instead of freed (dedicated large blocks are freed); returns the bytes kept. The
 * blocks' contents are garbage.
 * arena_give_spare: gives the arena a list of such blocks (of its own block_bytes; others are
 * freed) to allocate from before malloc; `a` owns them from then on. A spare block counts in
 * memory_bytes once the arena starts using it, exactly as a fresh one would; until then it is
 * in arena_spare_bytes (for callers that account for memory held, not just used).
 * arena_free_blocks frees such a list. */
size_t arena_destroy_keep(arena *a, arena_block **keep);
/* Allocates as many blocks of the size arena_init_sized(block_bytes) gives as fit in `total`
 * bytes (never more), touching every page so that the page faults (and the kernel's zeroing)
 * happen here, on the caller's thread, rather than on the arena's first use. Returns the list
 * (shorter when out of memory) and its bytes in *bytes; release with arena_give_spare or
 * arena_free_blocks. */
arena_block *arena_blocks_new_faulted(size_t block_bytes, size_t total, size_t *bytes);
void arena_give_spare(arena *a, arena_block *list);
size_t arena_spare_bytes(const arena *a);
void arena_free_blocks(arena_block *list);
/* Returns `bytes` bytes aligned to `align` (a power of two, at most 64), or NULL when malloc
 * fails. bytes may be 0 (returns a valid non-NULL pointer). */
void *arena_alloc(arena *a, size_t bytes, size_t align);
size_t arena_memory_bytes(const arena *a);

/* malloc for large, randomly probed memory (arena blocks, the memtable's hash index): requests of
 * at least a huge page (2 MiB) come 2 MiB-aligned and marked MADV_HUGEPAGE, smaller ones from
 * malloc. Release with free(). NULL when out of memory. Thread-safe. */
void *arena_huge_malloc(size_t bytes);

#endif
