/* Open-addressing hash tables with linear probing, for keys that are already
 * uniformly distributed 64-bit hashes (XXH64), so the key itself is the probe
 * start.  Key 0 marks an empty slot (every hash unmo stores is remapped to
 * non-zero).  Nothing is ever deleted in place: the kernel rebuilds a table
 * without the entries that fell out of their window (amortised O(1)).
 *
 * Entries are stored as arrays of structs: a probe touches one cache line for
 * the key and its value together, and the kernel prefetches that line a few
 * records ahead of use (the tables are far larger than the caches, so each
 * probe is otherwise a wait on memory; see docs/kernel.md, "Figures"). */
#ifndef UNMO_TABLE_H
#define UNMO_TABLE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "debug.h"

#define UNMO_MAX_LOAD_NUM 7   /* grow beyond 70 % load */
#define UNMO_MAX_LOAD_DEN 10

static inline void unmo_prefetch(const void *p) { __builtin_prefetch(p, 1, 3); }

/* Tables of 2 MiB and more live in their own zeroed mapping, marked for transparent huge
 * pages: a random probe into a table of tens of MB otherwise misses the TLB too, and the
 * page walk costs as much as the cache miss (Linux: Documentation/admin-guide/mm/transhuge.rst,
 * MADV_HUGEPAGE).  Smaller ones come from calloc. */
#define UNMO_HUGE ((size_t)2 << 20)

static inline size_t unmo_mapping_len(size_t bytes) {
    return (bytes + UNMO_HUGE - 1) & ~(UNMO_HUGE - 1);
}

/* A few released mappings are kept for the next table of the same size (a rebuild frees
 * one table and allocates another of the same size): clearing memory the process holds
 * runs at memory bandwidth, while first touches of fresh pages fault one by one, several
 * times slower (docs/kernel.md, "Figures").  Process-wide; the kernel runs under the GIL. */
#define UNMO_SPARES 4
#define UNMO_SPARE_BYTES ((size_t)1 << 30)
static void *unmo_spare[UNMO_SPARES];
static size_t unmo_spare_len[UNMO_SPARES];
static int unmo_spare_clean[UNMO_SPARES];   /* never written since it was mapped: all zero */

/* The slot of a spare mapping of `len` bytes (a mapping length), or -1. */
static inline int unmo_spare_of(size_t len) {
    for (int i = 0; i < UNMO_SPARES; i++)
        if (unmo_spare[i] != NULL && unmo_spare_len[i] == len) return i;
    return -1;
}

static inline void *unmo_table_alloc(size_t bytes) {
    if (bytes < UNMO_HUGE) return calloc(1, bytes);
    size_t len = unmo_mapping_len(bytes);
    int i = unmo_spare_of(len);
    if (i >= 0) {
        void *p = unmo_spare[i];
        unmo_spare[i] = NULL;
        if (!unmo_spare_clean[i]) memset(p, 0, bytes);
        return p;
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE);
#endif
    return p;
}

static inline void unmo_table_free(void *p, size_t bytes) {
    if (p == NULL) return;
    if (bytes < UNMO_HUGE) {
        free(p);
        return;
    }
    size_t len = unmo_mapping_len(bytes), kept = 0;
    int slot = -1;
    for (int i = 0; i < UNMO_SPARES; i++) {
        if (unmo_spare[i] == NULL) slot = i;
        else kept += unmo_spare_len[i];
    }
    if (slot >= 0 && kept + len <= UNMO_SPARE_BYTES) {
        unmo_spare[slot] = p;
        unmo_spare_len[slot] = len;
        unmo_spare_clean[slot] = 0;
    } else {
        munmap(p, len);
    }
}

/* Growing a table needs fresh memory, and the first touch of fresh pages is slow (the kernel clears
 * each page on its first write: at 0.1 to 4.5 GB/s here, a 48 MB dedup set's doubling held the
 * serving thread for 100-200 ms).  unmo_prefault maps and touches a table's worth ahead of need, on
 * any thread and without the interpreter lock; unmo_adopt_spare, under the lock, offers it to the
 * next unmo_table_alloc of that size, which then only writes the entries.  NULL when out of memory. */
static inline void *unmo_prefault(size_t bytes) {
    size_t len = unmo_mapping_len(bytes);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE);
#endif
    for (size_t off = 0; off < len; off += 4096) ((volatile char *)p)[off] = 0;
    return p;
}

/* Keep p (from unmo_prefault) among the spares; released spares of other sizes, smallest first, make
 * room for it (a growth that is due is worth more than a table released earlier).  1 when kept, 0
 * when larger than the spares may hold (it is unmapped). */
static inline int unmo_adopt_spare(void *p, size_t bytes) {
    size_t len = unmo_mapping_len(bytes);
    if (len > UNMO_SPARE_BYTES) {
        munmap(p, len);
        return 0;
    }
    for (;;) {
        size_t kept = 0;
        int slot = -1, smallest = -1;
        for (int i = 0; i < UNMO_SPARES; i++) {
            if (unmo_spare[i] == NULL) { slot = i; continue; }
            kept += unmo_spare_len[i];
            if (smallest < 0 || unmo_spare_len[i] < unmo_spare_len[smallest]) smallest = i;
        }
        if (slot >= 0 && kept + len <= UNMO_SPARE_BYTES) {
            unmo_spare[slot] = p;
            unmo_spare_len[slot] = len;
            unmo_spare_clean[slot] = 1;
            return 1;
        }
        munmap(unmo_spare[smallest], unmo_spare_len[smallest]);  /* some spare is held: no room otherwise */
        unmo_spare[smallest] = NULL;
    }
}

/* Whether a spare of a table of `bytes` is held (a prefault for it would be wasted). */
static inline int unmo_has_spare(size_t bytes) {
    return unmo_spare_of(unmo_mapping_len(bytes)) >= 0;
}

/* Resize a growing column (touch and install columns, links, the id arena) from old_bytes
 * to new_bytes, keeping its contents.  Small ones are malloc'd; from 2 MiB they live in a
 * huge-page mapping (unmo_table_alloc), which mremap grows without copying.  Appending to a
 * column touches fresh memory: with 4 KiB pages that is one page fault per ~70 touches,
 * more than the kernel's own work per touch.  NULL when out of memory (p is then kept). */
static inline void *unmo_array_resize(void *p, size_t old_bytes, size_t new_bytes) {
    if (new_bytes < UNMO_HUGE && old_bytes < UNMO_HUGE) return realloc(p, new_bytes ? new_bytes : 1);
    if (old_bytes >= UNMO_HUGE && new_bytes >= UNMO_HUGE) {
        size_t ol = unmo_mapping_len(old_bytes), nl = unmo_mapping_len(new_bytes);
        if (nl == ol) return p;
#ifdef MREMAP_MAYMOVE
        void *q = mremap(p, ol, nl, MREMAP_MAYMOVE);
        if (q == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
        madvise(q, nl, MADV_HUGEPAGE);
#endif
        return q;
#endif
    }
    void *q = unmo_table_alloc(new_bytes);
    if (q == NULL) return NULL;
    if (p != NULL) memcpy(q, p, old_bytes < new_bytes ? old_bytes : new_bytes);
    unmo_table_free(p, old_bytes);
    return q;
}

/* ------------------------------------------------------------------ uint64 -> int64 */
typedef struct {
    uint64_t key;
    int64_t val;
} unmo_entry;

typedef struct {
    unmo_entry *e;
    size_t cap;   /* power of two */
    size_t len;
} unmo_map;

static inline size_t unmo_pow2_at_least(size_t want) {
    size_t c = 16;
    while (c < want) c <<= 1;
    return c;
}

static inline int unmo_map_init(unmo_map *m, size_t cap) {
    m->cap = unmo_pow2_at_least(cap);
    m->len = 0;
    m->e = (unmo_entry *)unmo_table_alloc(m->cap * sizeof(unmo_entry));
    return m->e ? 0 : -1;
}

static inline void unmo_map_free(unmo_map *m) {
    unmo_table_free(m->e, m->cap * sizeof(unmo_entry));
    m->e = NULL;
    m->cap = m->len = 0;
}

static inline void unmo_map_prefetch(const unmo_map *m, uint64_t key) {
    unmo_prefetch(&m->e[(size_t)key & (m->cap - 1)]);
}

/* Pointer to the value of key, or NULL. */
static inline int64_t *unmo_map_get(const unmo_map *m, uint64_t key) {
    size_t mask = m->cap - 1, i = (size_t)key & mask;
    for (;;) {
        uint64_t k = m->e[i].key;
        if (k == key) return &m->e[i].val;
        if (k == 0) return NULL;
        i = (i + 1) & mask;
    }
}

/* Insert into a table known to have room and not to hold key. */
static inline void unmo_map_add_new(unmo_map *m, uint64_t key, int64_t val) {
    size_t mask = m->cap - 1, i = (size_t)key & mask;
    while (m->e[i].key != 0) i = (i + 1) & mask;
    m->e[i].key = key;
    m->e[i].val = val;
    m->len++;
}

static inline int unmo_map_resize(unmo_map *m, size_t cap) {
    unmo_map n;
    if (unmo_map_init(&n, cap) != 0) return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->e[i].key) unmo_map_add_new(&n, m->e[i].key, m->e[i].val);
    unmo_map_free(m);
    *m = n;
    return 0;
}

/* Pointer to the value of key; a new key is inserted with *is_new = 1 and its value left
 * for the caller to set.  NULL when out of memory. */
static inline int64_t *unmo_map_upsert(unmo_map *m, uint64_t key, int *is_new) {
#if UNMO_DEBUG
    if (key == 0) abort();
#endif
    if ((m->len + 1) * UNMO_MAX_LOAD_DEN > m->cap * UNMO_MAX_LOAD_NUM && unmo_map_resize(m, m->cap * 2) != 0)
        return NULL;
    size_t mask = m->cap - 1, i = (size_t)key & mask;
    for (;;) {
        uint64_t k = m->e[i].key;
        if (k == key) { *is_new = 0; return &m->e[i].val; }
        if (k == 0) {
            m->e[i].key = key;
            m->len++;
            *is_new = 1;
            return &m->e[i].val;
        }
        i = (i + 1) & mask;
    }
}

/* Insert or overwrite; -1 when out of memory. */
static inline int unmo_map_put(unmo_map *m, uint64_t key, int64_t val) {
    int is_new;
    int64_t *v = unmo_map_upsert(m, key, &is_new);
    if (v == NULL) return -1;
    *v = val;
    return 0;
}

/* ------------------------------------------------ chain heads of the touch index */
/* Per typed device hash (or fingerprint): the newest link of its chain of touches,
 * and the key's latest click (with its ts) and latest impression by (ts, slot), with
 * their "blocked" flags.  32 bytes, two to a cache line: the kernel prefetches it
 * before a touch links itself in, and an install usually finds its winner here
 * without walking the chain (Kernel._latest).  Slots and link indices are below
 * 2^31 (the kernel refuses to hold more). */
typedef struct {
    uint64_t key;
    int32_t link;       /* newest link, -1: none */
    int32_t click;      /* touch slot of the latest click, -1: none */
    int32_t imp;        /* touch slot of the latest impression, -1: none */
    int32_t flags;      /* 1: the latest click is blocked, 2: the latest impression is */
    int64_t click_ts;
} unmo_head;

typedef struct {
    unmo_head *e;
    size_t cap;
    size_t len;
} unmo_heads;

static inline int unmo_heads_init(unmo_heads *m, size_t cap) {
    m->cap = unmo_pow2_at_least(cap);
    m->len = 0;
    m->e = (unmo_head *)unmo_table_alloc(m->cap * sizeof(unmo_head));
    return m->e ? 0 : -1;
}

static inline void unmo_heads_free(unmo_heads *m) {
    unmo_table_free(m->e, m->cap * sizeof(unmo_head));
    m->e = NULL;
    m->cap = m->len = 0;
}

static inline void unmo_heads_prefetch(const unmo_heads *m, uint64_t key) {
    unmo_prefetch(&m->e[(size_t)key & (m->cap - 1)]);
}

static inline unmo_head *unmo_heads_get(const unmo_heads *m, uint64_t key) {
    size_t mask = m->cap - 1, i = (size_t)key & mask;
    for (;;) {
        uint64_t k = m->e[i].key;
        if (k == key) return &m->e[i];
        if (k == 0) return NULL;
        i = (i + 1) & mask;
    }
}

/* Copy an entry into a table known to have room and not to hold its key. */
static inline void unmo_heads_add_new(unmo_heads *m, const unmo_head *h) {
    size_t mask = m->cap - 1, i = (size_t)h->key & mask;
    while (m->e[i].key != 0) i = (i + 1) & mask;
    m->e[i] = *h;
    m->len++;
}

static inline int unmo_heads_resize(unmo_heads *m, size_t cap) {
    unmo_heads n;
    if (unmo_heads_init(&n, cap) != 0) return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->e[i].key) unmo_heads_add_new(&n, &m->e[i]);
    unmo_heads_free(m);
    *m = n;
    return 0;
}

/* The head of key, a new one (no link, no latest touches) when absent; NULL when out of memory. */
static inline unmo_head *unmo_heads_upsert(unmo_heads *m, uint64_t key) {
#if UNMO_DEBUG
    if (key == 0) abort();
#endif
    if ((m->len + 1) * UNMO_MAX_LOAD_DEN > m->cap * UNMO_MAX_LOAD_NUM && unmo_heads_resize(m, m->cap * 2) != 0)
        return NULL;
    size_t mask = m->cap - 1, i = (size_t)key & mask;
    for (;;) {
        unmo_head *h = &m->e[i];
        if (h->key == key) return h;
        if (h->key == 0) {
            h->key = key;
            h->link = h->click = h->imp = -1;
            h->click_ts = 0;
            h->flags = 0;
            m->len++;
            return h;
        }
        i = (i + 1) & mask;
    }
}

/* -------------------------------------------------- 128-bit key (k1 != 0) -> int64 */
/* The dedup set of record ids (value: receive time) and the index of click ids
 * (value: touch slot).  k1 is an XXH64 of the id: it is the probe start. */
typedef struct {
    uint64_t k1;
    uint64_t k2;
    int64_t val;
} unmo_entry128;

typedef struct {
    unmo_entry128 *e;
    size_t cap;
    size_t len;
} unmo_set128;

static inline int unmo_set128_init(unmo_set128 *s, size_t cap) {
    s->cap = unmo_pow2_at_least(cap);
    s->len = 0;
    s->e = (unmo_entry128 *)unmo_table_alloc(s->cap * sizeof(unmo_entry128));
    return s->e ? 0 : -1;
}

static inline void unmo_set128_free(unmo_set128 *s) {
    unmo_table_free(s->e, s->cap * sizeof(unmo_entry128));
    s->e = NULL;
    s->cap = s->len = 0;
}

static inline void unmo_set128_prefetch(const unmo_set128 *s, uint64_t k1) {
    const unmo_entry128 *p = &s->e[(size_t)k1 & (s->cap - 1)];
    unmo_prefetch(p);
    unmo_prefetch((const char *)p + sizeof(unmo_entry128) - 1);  /* 24-byte entries may straddle two lines */
}

static inline int64_t *unmo_set128_get(const unmo_set128 *s, uint64_t k1, uint64_t k2) {
    size_t mask = s->cap - 1, i = (size_t)k1 & mask;
    for (;;) {
        uint64_t a = s->e[i].k1;
        if (a == 0) return NULL;
        if (a == k1 && s->e[i].k2 == k2) return &s->e[i].val;
        i = (i + 1) & mask;
    }
}

/* Pointer to the value of (k1, k2), inserting it with value val when absent (*found = 0).
 * The caller keeps the table below its load limit (unmo_set128_full). */
static inline int64_t *unmo_set128_find_or_add(unmo_set128 *s, uint64_t k1, uint64_t k2, int64_t val, int *found) {
    size_t mask = s->cap - 1, i = (size_t)k1 & mask;
    for (;;) {
        uint64_t a = s->e[i].k1;
        if (a == 0) {
            s->e[i].k1 = k1;
            s->e[i].k2 = k2;
            s->e[i].val = val;
            s->len++;
            *found = 0;
            return &s->e[i].val;
        }
        if (a == k1 && s->e[i].k2 == k2) { *found = 1; return &s->e[i].val; }
        i = (i + 1) & mask;
    }
}

static inline int unmo_set128_full(const unmo_set128 *s, size_t more) {
    return (s->len + more) * UNMO_MAX_LOAD_DEN > s->cap * UNMO_MAX_LOAD_NUM;
}

/* Rebuild keeping the entries with val >= keep_from, at a capacity that leaves room for
 * `more` insertions below the load limit (the table never shrinks below its live set). */
static inline int unmo_set128_rebuild(unmo_set128 *s, int64_t keep_from, size_t more) {
    size_t live = 0;
    for (size_t i = 0; i < s->cap; i++)
        if (s->e[i].k1 && s->e[i].val >= keep_from) live++;
    unmo_set128 n;
    /* At most half full afterwards.  Sized c times the live entries, the table is rebuilt
     * again after (0.7 c - 1) live-sets of inserts, and a rebuild reads the old table, clears
     * the new one and writes the live entries: (2 c + 1) / (0.7 c - 1) slots per insert, 12.5
     * for c = 2, 5 for c = 4.  Measured, c = 2 is the faster here all the same: its rebuilds
     * land on a table of the same size, whose memory is reused (unmo_table_alloc), while a
     * larger one is fresh memory, slow to touch first (docs/kernel.md, "Memory"). */
    if (unmo_set128_init(&n, ((live + more) * 2 > 16) ? (live + more) * 2 : 16) != 0) return -1;
    for (size_t i = 0; i < s->cap; i++) {
        const unmo_entry128 *x = &s->e[i];
        if (x->k1 && x->val >= keep_from) {
            int found;
            unmo_set128_find_or_add(&n, x->k1, x->k2, x->val, &found);
        }
    }
    unmo_set128_free(s);
    *s = n;
    return 0;
}

#endif
