/*
 * hash: a fast 64-bit hash of a byte string, for in-memory hash tables (the memtable's point-read
 * index) and later for bloom filters and caches. Not cryptographic: it resists accidents, not
 * adversaries (the seed is the only defence against crafted collisions).
 *
 * The construction follows wyhash (public domain): 64x64->128-bit multiplies folded by xor
 * ("mum"), reading 16 bytes per step for short keys and 48 for long ones, with the length mixed
 * in. Keys of up to 16 bytes - most keys - cost two multiplies and no loop.
 *
 * The result depends only on the bytes, the length and the seed: it is the same on every platform
 * (input words are read little-endian) and must never change, since bloom filters will store it;
 * hash_test.c pins known values.
 * Pure functions; thread-safe.
 */
#ifndef SHALE_BASE_HASH_H
#define SHALE_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t hash_bytes(const void *data, size_t len, uint64_t seed);

#endif
