# Declarations for the attribution kernel (kernel.pyx): C hash tables and libc qsort.
cdef extern from "table.h":
    ctypedef struct unmo_map:
        uint64_t *keys
        int64_t *vals
        size_t cap
        size_t len
    int unmo_map_init(unmo_map *m, size_t cap) nogil
    void unmo_map_free(unmo_map *m) nogil
    int64_t *unmo_map_get(const unmo_map *m, uint64_t key) nogil
    int unmo_map_put(unmo_map *m, uint64_t key, int64_t val) nogil

    ctypedef struct unmo_set128:
        uint64_t *k1
        uint64_t *k2
        int64_t *vals
        size_t cap
        size_t len
    int unmo_set128_init(unmo_set128 *s, size_t cap) nogil
    void unmo_set128_free(unmo_set128 *s) nogil
    int64_t *unmo_set128_get(const unmo_set128 *s, uint64_t k1, uint64_t k2) nogil
    void unmo_set128_add(unmo_set128 *s, uint64_t k1, uint64_t k2, int64_t val) nogil
    int unmo_set128_full(const unmo_set128 *s) nogil
    int unmo_set128_rebuild(unmo_set128 *s, int64_t keep_from) nogil

cdef extern from "<stdlib.h>":
    void qsort(void *base, size_t nmemb, size_t size, int (*compar)(const void *, const void *) noexcept nogil) nogil

ctypedef struct Cand:
    int64_t ts
    int64_t slot
