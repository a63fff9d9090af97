/* Open-addressing hash tables with linear probing, for keys that are already
 * uniformly distributed 64-bit hashes (XXH64), so the key itself is the probe
 * start.  Key 0 marks an empty slot (every hash unmo stores is remapped to
 * non-zero).  Nothing is ever deleted in place: the kernel rebuilds a table
 * without the entries that fell out of their window (amortised O(1)). */
#ifndef UNMO_TABLE_H
#define UNMO_TABLE_H

#include <stdint.h>
#include <stdlib.h>
#include "debug.h"

/* uint64 -> int64 */
typedef struct {
    uint64_t *keys;
    int64_t *vals;
    size_t cap;   /* power of two */
    size_t len;
} unmo_map;

static inline int unmo_map_init(unmo_map *m, size_t cap) {
    size_t c = 16;
    while (c < cap) c <<= 1;
    m->keys = (uint64_t *)calloc(c, sizeof(uint64_t));
    m->vals = (int64_t *)malloc(c * sizeof(int64_t));
    m->cap = c;
    m->len = 0;
    return (m->keys && m->vals) ? 0 : -1;
}

static inline void unmo_map_free(unmo_map *m) {
    free(m->keys); free(m->vals);
    m->keys = NULL; m->vals = NULL; m->cap = m->len = 0;
}

/* Pointer to the value of key, or NULL. */
static inline int64_t *unmo_map_get(const unmo_map *m, uint64_t key) {
    size_t mask = m->cap - 1, i = (size_t)key & mask;
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) return &m->vals[i];
        if (k == 0) return NULL;
        i = (i + 1) & mask;
    }
}

static int unmo_map_put(unmo_map *m, uint64_t key, int64_t val);

static inline int unmo_map_grow(unmo_map *m) {
    unmo_map n;
    if (unmo_map_init(&n, m->cap * 2) != 0) { unmo_map_free(&n); return -1; }
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) unmo_map_put(&n, m->keys[i], m->vals[i]);
    unmo_map_free(m);
    *m = n;
    return 0;
}

/* Insert or overwrite; returns -1 when out of memory. */
static int unmo_map_put(unmo_map *m, uint64_t key, int64_t val) {
#if UNMO_DEBUG
    if (key == 0) abort();
#endif
    if ((m->len + 1) * 10 > m->cap * 7 && unmo_map_grow(m) != 0) return -1;
    size_t mask = m->cap - 1, i = (size_t)key & mask;
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) { m->vals[i] = val; return 0; }
        if (k == 0) { m->keys[i] = key; m->vals[i] = val; m->len++; return 0; }
        i = (i + 1) & mask;
    }
}

/* 128-bit key (two halves, k1 != 0) -> int64: the dedup set of record ids. */
typedef struct {
    uint64_t *k1;
    uint64_t *k2;
    int64_t *vals;
    size_t cap;
    size_t len;
} unmo_set128;

static inline int unmo_set128_init(unmo_set128 *s, size_t cap) {
    size_t c = 16;
    while (c < cap) c <<= 1;
    s->k1 = (uint64_t *)calloc(c, sizeof(uint64_t));
    s->k2 = (uint64_t *)malloc(c * sizeof(uint64_t));
    s->vals = (int64_t *)malloc(c * sizeof(int64_t));
    s->cap = c;
    s->len = 0;
    return (s->k1 && s->k2 && s->vals) ? 0 : -1;
}

static inline void unmo_set128_free(unmo_set128 *s) {
    free(s->k1); free(s->k2); free(s->vals);
    s->k1 = s->k2 = NULL; s->vals = NULL; s->cap = s->len = 0;
}

static inline int64_t *unmo_set128_get(const unmo_set128 *s, uint64_t k1, uint64_t k2) {
    size_t mask = s->cap - 1, i = (size_t)(k1 ^ (k2 >> 7)) & mask;
    for (;;) {
        uint64_t a = s->k1[i];
        if (a == 0) return NULL;
        if (a == k1 && s->k2[i] == k2) return &s->vals[i];
        i = (i + 1) & mask;
    }
}

/* Insert (caller checked absence, table has room). */
static inline void unmo_set128_add(unmo_set128 *s, uint64_t k1, uint64_t k2, int64_t val) {
    size_t mask = s->cap - 1, i = (size_t)(k1 ^ (k2 >> 7)) & mask;
    while (s->k1[i] != 0) i = (i + 1) & mask;
    s->k1[i] = k1; s->k2[i] = k2; s->vals[i] = val;
    s->len++;
}

static inline int unmo_set128_full(const unmo_set128 *s) {
    return (s->len + 1) * 10 > s->cap * 7;
}

/* Rebuild keeping entries with val >= keep_from, at a capacity with room to grow. */
static inline int unmo_set128_rebuild(unmo_set128 *s, int64_t keep_from) {
    size_t live = 0;
    for (size_t i = 0; i < s->cap; i++)
        if (s->k1[i] && s->vals[i] >= keep_from) live++;
    unmo_set128 n;
    size_t cap = s->cap;
    while ((live + 1) * 10 > cap * 5) cap <<= 1;   /* at most half full afterwards */
    if (unmo_set128_init(&n, cap) != 0) { unmo_set128_free(&n); return -1; }
    for (size_t i = 0; i < s->cap; i++)
        if (s->k1[i] && s->vals[i] >= keep_from) unmo_set128_add(&n, s->k1[i], s->k2[i], s->vals[i]);
    unmo_set128_free(s);
    *s = n;
    return 0;
}
#endif
