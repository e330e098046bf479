/*
 * docgen: the documents the document benchmarks load (docbench.c against SQLite, encbench.c
 * against MessagePack), generated deterministically from (seed, k) so that every engine and
 * every run sees the same bytes: about 180 bytes of JSON with a client id "u" + 10 digits, a
 * name, an int age in [DOCGEN_AGE_MIN, DOCGEN_AGE_MAX], a double score in [0, 1), a boolean,
 * one of DOCGEN_CITIES city names, a nested address {street, zip} and 1 to 3 tags.
 * Threads: pure functions.
 */
#ifndef SHALE_BENCH_DOCGEN_H
#define SHALE_BENCH_DOCGEN_H

#include <stddef.h>
#include <stdint.h>

#define DOCGEN_CITIES  500
#define DOCGEN_AGE_MIN 18
#define DOCGEN_AGE_MAX 90
#define DOCGEN_ID_CAP  24

/* A small deterministic generator (splitmix64). */
typedef struct docgen_rng {
    uint64_t s;
} docgen_rng;

uint64_t docgen_mix64(uint64_t x);
uint64_t docgen_next(docgen_rng *r);
static inline uint64_t docgen_below(docgen_rng *r, uint64_t n)
{
    return docgen_next(r) % n;
}

/* The name of city c (0 .. DOCGEN_CITIES-1): every name distinct. */
void docgen_city(uint32_t c, char *out, size_t cap);
/* Document k: its JSON into out[0, cap) (returns the length), its id into id. */
size_t docgen_make(uint64_t seed, uint64_t k, char *out, size_t cap, char id[DOCGEN_ID_CAP]);

#endif
