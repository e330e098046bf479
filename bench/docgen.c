/* docgen: see docgen.h. */
#include "docgen.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

static const char *const first_names[16] = {
    "Alice", "Bruno", "Chen", "Dana", "Elif", "Farid", "Greta", "Hiro",
    "Ines",  "Jonas", "Kate", "Luis", "Mira", "Nils",  "Olga",  "Pavel",
};
static const char *const last_names[16] = {
    "Smith", "Garcia", "Kowalski", "Nakamura", "Oneill", "Schmidt", "Rossi",  "Dubois",
    "Silva", "Novak",  "Jensen",   "Moreau",   "Okafor", "Larsen",  "Petrov", "Yilmaz",
};
static const char *const city_a[10] = {"Ash",  "Bell", "Clear", "Dun",  "East",
                                       "Fair", "Glen", "High",  "Iron", "Lake"};
static const char *const city_b[10] = {"ford",   "wood", "field", "brook", "stone",
                                       "bridge", "more", "haven", "mouth", "vale"};
static const char *const city_c[5] = {"", " City", " Falls", " Park", " Springs"};
static const char *const streets[16] = {
    "Maple", "Oak",  "Pine",   "Cedar", "Elm",    "Birch",  "Willow", "Spruce",
    "Main",  "Mill", "Church", "River", "Market", "School", "Park",   "Station",
};
static const char *const suffixes[4] = {"St", "Ave", "Rd", "Blvd"};
static const char *const tag_words[8] = {"red", "blue", "green", "gold",
                                         "new", "vip",  "trial", "beta"};

uint64_t docgen_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t docgen_next(docgen_rng *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return docgen_mix64(r->s);
}

void docgen_city(uint32_t c, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s", city_a[c % 10], city_b[(c / 10) % 10], city_c[c / 100]);
}

size_t docgen_make(uint64_t seed, uint64_t k, char *out, size_t cap, char id[DOCGEN_ID_CAP])
{
    docgen_rng r = {docgen_mix64(seed ^ docgen_mix64(k + 1))};
    char city[32], tags[64];
    snprintf(id, DOCGEN_ID_CAP, "u%010" PRIu64, k);
    const char *first = first_names[docgen_below(&r, 16)];
    const char *last = last_names[docgen_below(&r, 16)];
    unsigned age = DOCGEN_AGE_MIN + (unsigned)docgen_below(&r, DOCGEN_AGE_MAX - DOCGEN_AGE_MIN + 1);
    double score = (double)docgen_below(&r, 1000000) / 1e6;
    bool active = docgen_below(&r, 2) == 1;
    docgen_city((uint32_t)docgen_below(&r, DOCGEN_CITIES), city, sizeof city);
    unsigned house = 1 + (unsigned)docgen_below(&r, 9999);
    const char *street = streets[docgen_below(&r, 16)];
    const char *suffix = suffixes[docgen_below(&r, 4)];
    unsigned zip = (unsigned)docgen_below(&r, 100000);
    size_t ntags = 1 + (size_t)docgen_below(&r, 3), tn = 0;
    uint64_t start = docgen_below(&r, 8);
    for (size_t i = 0; i < ntags; i++) {
        tn += (size_t)snprintf(tags + tn, sizeof tags - tn, "%s\"%s\"", i > 0 ? "," : "",
                               tag_words[(start + i) % 8]);
    }
    int n = snprintf(out, cap,
                     "{\"_id\":\"%s\",\"name\":\"%s %s\",\"age\":%u,\"score\":%.6f,\"active\":%s,"
                     "\"city\":\"%s\",\"address\":{\"street\":\"%u %s %s\",\"zip\":\"%05u\"},"
                     "\"tags\":[%s]}",
                     id, first, last, age, score, active ? "true" : "false", city, house, street,
                     suffix, zip, tags);
    return n < 0 ? 0 : (size_t)n;
}
