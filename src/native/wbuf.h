/* A growable write buffer with big-endian stores, for PostgreSQL's binary COPY
 * format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4). */
#ifndef UNMO_WBUF_H
#define UNMO_WBUF_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} unmo_wbuf;

static inline int unmo_wbuf_reserve(unmo_wbuf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + extra) cap *= 2;
    char *d = (char *)realloc(b->data, cap);
    if (d == NULL) return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

static inline void unmo_put_be16(unmo_wbuf *b, int16_t v) {
    uint16_t u = __builtin_bswap16((uint16_t)v);
    memcpy(b->data + b->len, &u, 2); b->len += 2;
}
static inline void unmo_put_be32(unmo_wbuf *b, int32_t v) {
    uint32_t u = __builtin_bswap32((uint32_t)v);
    memcpy(b->data + b->len, &u, 4); b->len += 4;
}
static inline void unmo_put_be64(unmo_wbuf *b, int64_t v) {
    uint64_t u = __builtin_bswap64((uint64_t)v);
    memcpy(b->data + b->len, &u, 8); b->len += 8;
}
static inline void unmo_put_f64(unmo_wbuf *b, double v) {
    uint64_t u; memcpy(&u, &v, 8); u = __builtin_bswap64(u);
    memcpy(b->data + b->len, &u, 8); b->len += 8;
}
static inline void unmo_put_bytes(unmo_wbuf *b, const char *p, size_t n) {
    memcpy(b->data + b->len, p, n); b->len += n;
}
#endif
