/* XXH64, the 64-bit xxHash of Yann Collet (BSD-2-Clause algorithm, specified in
 * https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md).  Written out
 * here so that device keys and record-id hashes are the same on every build and
 * every machine: they are stored in the database (device_key, id hashes) and
 * must never change between versions. */
#ifndef UNMO_XXH64_H
#define UNMO_XXH64_H

#include <stdint.h>
#include <string.h>

#define UNMO_P64_1 0x9E3779B185EBCA87ULL
#define UNMO_P64_2 0xC2B2AE3D27D4EB4FULL
#define UNMO_P64_3 0x165667B19E3779F9ULL
#define UNMO_P64_4 0x85EBCA77C2B2AE63ULL
#define UNMO_P64_5 0x27D4EB2F165667C5ULL

static inline uint64_t unmo_rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t unmo_read64(const unsigned char *p) {
    uint64_t v; memcpy(&v, p, 8); return v;   /* little-endian hosts only (x86_64, aarch64) */
}
static inline uint32_t unmo_read32(const unsigned char *p) {
    uint32_t v; memcpy(&v, p, 4); return v;
}

static inline uint64_t unmo_xxh64_round(uint64_t acc, uint64_t input) {
    acc += input * UNMO_P64_2;
    acc = unmo_rotl64(acc, 31);
    return acc * UNMO_P64_1;
}

static inline uint64_t unmo_xxh64_merge(uint64_t acc, uint64_t val) {
    val = unmo_xxh64_round(0, val);
    acc ^= val;
    return acc * UNMO_P64_1 + UNMO_P64_4;
}

static inline uint64_t unmo_xxh64(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = (const unsigned char *)data;
    const unsigned char *end = p + len;
    uint64_t h;
    if (len >= 32) {
        const unsigned char *limit = end - 32;
        uint64_t v1 = seed + UNMO_P64_1 + UNMO_P64_2;
        uint64_t v2 = seed + UNMO_P64_2;
        uint64_t v3 = seed;
        uint64_t v4 = seed - UNMO_P64_1;
        do {
            v1 = unmo_xxh64_round(v1, unmo_read64(p)); p += 8;
            v2 = unmo_xxh64_round(v2, unmo_read64(p)); p += 8;
            v3 = unmo_xxh64_round(v3, unmo_read64(p)); p += 8;
            v4 = unmo_xxh64_round(v4, unmo_read64(p)); p += 8;
        } while (p <= limit);
        h = unmo_rotl64(v1, 1) + unmo_rotl64(v2, 7) + unmo_rotl64(v3, 12) + unmo_rotl64(v4, 18);
        h = unmo_xxh64_merge(h, v1);
        h = unmo_xxh64_merge(h, v2);
        h = unmo_xxh64_merge(h, v3);
        h = unmo_xxh64_merge(h, v4);
    } else {
        h = seed + UNMO_P64_5;
    }
    h += (uint64_t)len;
    while (p + 8 <= end) {
        uint64_t k1 = unmo_xxh64_round(0, unmo_read64(p));
        h ^= k1;
        h = unmo_rotl64(h, 27) * UNMO_P64_1 + UNMO_P64_4;
        p += 8;
    }
    if (p + 4 <= end) {
        h ^= (uint64_t)unmo_read32(p) * UNMO_P64_1;
        h = unmo_rotl64(h, 23) * UNMO_P64_2 + UNMO_P64_3;
        p += 4;
    }
    while (p < end) {
        h ^= (*p) * UNMO_P64_5;
        h = unmo_rotl64(h, 11) * UNMO_P64_1;
        p++;
    }
    h ^= h >> 33;
    h *= UNMO_P64_2;
    h ^= h >> 29;
    h *= UNMO_P64_3;
    h ^= h >> 32;
    return h;
}

#endif
