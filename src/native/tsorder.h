/* The order the kernel applies a batch in: a stable argsort of the records' ts
 * (spec attribution.md, "Order": inside one batch, records are applied in ts
 * order, stable for equal ts).
 *
 * A request's records are usually in order already (an SDK sends its queue in
 * order), so a sorted batch costs one comparison per record and no order array.
 * Otherwise an LSD radix sort of (ts - min) in 11-bit digits: one pass builds every
 * digit's histogram, then one scatter per digit that is not the same for all
 * records (a day of ms is 27 bits: three scatters), in buffers the kernel keeps
 * between batches.  On a million timestamps up to a minute out of order it takes
 * about what numpy's stable argsort (a timsort) takes, 25 to 40 ms on this machine;
 * wider digits did not help (docs/kernel.md, "Figures"). */
#ifndef UNMO_TSORDER_H
#define UNMO_TSORDER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "debug.h"

#define UNMO_DIGIT_BITS 11
#define UNMO_DIGITS 6  /* ceil(64 / 11) */
#define UNMO_BUCKETS (1u << UNMO_DIGIT_BITS)

/* 1 when ts is sorted already: the batch applies in row order. */
static inline int unmo_ts_sorted(const int64_t *ts, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (ts[i] < ts[i - 1]) return 0;
    return 1;
}

/* Buffers of the radix passes, kept by the caller between batches: fresh memory costs a
 * page fault per 4 KiB on first touch, more than the sort itself. */
typedef struct {
    uint64_t *ka, *kb;
    uint32_t *ia, *ib;
    size_t cap;
} unmo_sort_scratch;

static inline void unmo_sort_scratch_free(unmo_sort_scratch *s) {
    free(s->ka); free(s->kb); free(s->ia); free(s->ib);
    s->ka = s->kb = NULL;
    s->ia = s->ib = NULL;
    s->cap = 0;
}

static inline int unmo_sort_scratch_reserve(unmo_sort_scratch *s, size_t n) {
    if (n <= s->cap) return 0;
    unmo_sort_scratch_free(s);
    s->ka = (uint64_t *)malloc(n * sizeof(uint64_t));
    s->kb = (uint64_t *)malloc(n * sizeof(uint64_t));
    s->ia = (uint32_t *)malloc(n * sizeof(uint32_t));
    s->ib = (uint32_t *)malloc(n * sizeof(uint32_t));
    if (!s->ka || !s->kb || !s->ia || !s->ib) {
        unmo_sort_scratch_free(s);
        return -1;
    }
    s->cap = n;
    return 0;
}

/* out[k] = the row applied k-th.  Returns -1 when out of memory, -2 when n >= 2^32. */
static int unmo_ts_order(const int64_t *ts, size_t n, int64_t *out, unmo_sort_scratch *scratch) {
    if (n == 0) return 0;
    if ((uint64_t)n >= ((uint64_t)1 << 32)) return -2;
    int64_t lo = ts[0], hi = ts[0];
    for (size_t i = 1; i < n; i++) {
        int64_t t = ts[i];
        if (t < lo) lo = t;
        if (t > hi) hi = t;
    }
    uint64_t range = (uint64_t)hi - (uint64_t)lo;
    size_t (*count)[UNMO_BUCKETS] = calloc(UNMO_DIGITS, sizeof *count);
    if (!count || unmo_sort_scratch_reserve(scratch, n) != 0) {
        free(count);
        return -1;
    }
    uint64_t *ka = scratch->ka, *kb = scratch->kb;
    uint32_t *ia = scratch->ia, *ib = scratch->ib;
    int digits = 0;
    while (digits < UNMO_DIGITS && (range >> (digits * UNMO_DIGIT_BITS)) != 0) digits++;
    for (size_t i = 0; i < n; i++) {
        uint64_t k = (uint64_t)ts[i] - (uint64_t)lo;
        ka[i] = k;
        ia[i] = (uint32_t)i;
        for (int d = 0; d < digits; d++) count[d][(k >> (d * UNMO_DIGIT_BITS)) & (UNMO_BUCKETS - 1)]++;
    }
    for (int d = 0; d < digits; d++) {
        size_t *c = count[d], sum = 0;
        int skip = 0;
        for (unsigned b = 0; b < UNMO_BUCKETS; b++) {
            if (c[b] == n) { skip = 1; break; }   /* every record has this digit: nothing moves */
            size_t x = c[b];
            c[b] = sum;
            sum += x;
        }
        if (skip) continue;
        int shift = d * UNMO_DIGIT_BITS;
        for (size_t i = 0; i < n; i++) {
            size_t p = c[(ka[i] >> shift) & (UNMO_BUCKETS - 1)]++;
            kb[p] = ka[i];
            ib[p] = ia[i];
        }
        uint64_t *tk = ka; ka = kb; kb = tk;
        uint32_t *ti = ia; ia = ib; ib = ti;
    }
    for (size_t i = 0; i < n; i++) out[i] = ia[i];
#if UNMO_DEBUG
    for (size_t i = 1; i < n; i++) {
        int64_t a = ts[out[i - 1]], b = ts[out[i]];
        if (a > b || (a == b && out[i - 1] > out[i])) abort();
    }
#endif
    free(count);
    return 0;
}

#endif
