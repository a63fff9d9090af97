# Declarations for the attribution kernel (kernel.pyx): C hash tables (table.h), the batch
# order (tsorder.h) and libc qsort.
cdef extern from "table.h":
    ctypedef struct unmo_entry:
        uint64_t key
        int64_t val
    ctypedef struct unmo_map:
        unmo_entry *e
        size_t cap
        size_t len
    int unmo_map_init(unmo_map *m, size_t cap) nogil
    void unmo_map_free(unmo_map *m) nogil
    void unmo_map_prefetch(const unmo_map *m, uint64_t key) nogil
    int64_t *unmo_map_get(const unmo_map *m, uint64_t key) nogil
    int64_t *unmo_map_upsert(unmo_map *m, uint64_t key, int *is_new) nogil
    void unmo_map_add_new(unmo_map *m, uint64_t key, int64_t val) nogil
    int unmo_map_put(unmo_map *m, uint64_t key, int64_t val) nogil

    ctypedef struct unmo_head:
        uint64_t key
        int32_t link
        int32_t click
        int32_t imp
        int32_t flags
        int64_t click_ts
    ctypedef struct unmo_heads:
        unmo_head *e
        size_t cap
        size_t len
    int unmo_heads_init(unmo_heads *m, size_t cap) nogil
    void unmo_heads_free(unmo_heads *m) nogil
    void unmo_heads_prefetch(const unmo_heads *m, uint64_t key) nogil
    unmo_head *unmo_heads_get(const unmo_heads *m, uint64_t key) nogil
    void unmo_heads_add_new(unmo_heads *m, const unmo_head *h) nogil
    unmo_head *unmo_heads_upsert(unmo_heads *m, uint64_t key) nogil

    ctypedef struct unmo_entry128:
        uint64_t k1
        uint64_t k2
        int64_t val
    ctypedef struct unmo_set128:
        unmo_entry128 *e
        size_t cap
        size_t len
    int unmo_set128_init(unmo_set128 *s, size_t cap) nogil
    void unmo_set128_free(unmo_set128 *s) nogil
    void unmo_set128_prefetch(const unmo_set128 *s, uint64_t k1) nogil
    int64_t *unmo_set128_get(const unmo_set128 *s, uint64_t k1, uint64_t k2) nogil
    int64_t *unmo_set128_find_or_add(unmo_set128 *s, uint64_t k1, uint64_t k2, int64_t val, int *found) nogil
    int unmo_set128_full(const unmo_set128 *s, size_t more) nogil
    int unmo_set128_rebuild(unmo_set128 *s, int64_t keep_from, size_t more) nogil
    void unmo_prefetch(const void *p) nogil
    void *unmo_array_resize(void *p, size_t old_bytes, size_t new_bytes) nogil
    void unmo_table_free(void *p, size_t bytes) nogil
    enum:
        UNMO_MAX_LOAD_NUM
        UNMO_MAX_LOAD_DEN
        UNMO_HUGE
        UNMO_SPARES
    const size_t UNMO_SPARE_BYTES
    void *unmo_spare[]
    size_t unmo_spare_len[]
    int unmo_spare_clean[]
    void *unmo_prefault(size_t bytes) nogil
    int unmo_adopt_spare(void *p, size_t bytes) nogil
    int unmo_has_spare(size_t bytes) nogil

cdef extern from "tsorder.h":
    ctypedef struct unmo_sort_scratch:
        size_t cap
    void unmo_sort_scratch_free(unmo_sort_scratch *s) nogil
    int unmo_ts_sorted(const int64_t *ts, size_t n) nogil
    int unmo_ts_order(const int64_t *ts, size_t n, int64_t *out, unmo_sort_scratch *scratch) nogil

cdef extern from "<stdlib.h>":
    void qsort(void *base, size_t nmemb, size_t size, int (*compar)(const void *, const void *) noexcept nogil) nogil

cdef extern from "<string.h>":
    void *_k_memmove "memmove" (void *dest, const void *src, size_t n) nogil
    void *_k_memcpy "memcpy" (void *dest, const void *src, size_t n) nogil

cdef extern from "Python.h":
    PyObject *_k_list_item "PyList_GET_ITEM" (PyObject *lst, Py_ssize_t i)
    bint _k_is_ascii "PyUnicode_IS_COMPACT_ASCII" (PyObject *o)
    bint _k_is_str "PyUnicode_Check" (PyObject *o)
    void *_k_str_data "PyUnicode_DATA" (PyObject *o)
    Py_ssize_t _k_str_len "PyUnicode_GET_LENGTH" (PyObject *o)
    const char *_k_utf8 "PyUnicode_AsUTF8AndSize" (PyObject *o, Py_ssize_t *size) except NULL
    object _k_decode "PyUnicode_DecodeUTF8" (const char *s, Py_ssize_t size, const char *errors)

cdef extern from "<stdint.h>":
    const int64_t _K_INT64_MAX "INT64_MAX"

# A touch reached from a chain head: chains of links, newest first, per typed device hash
# (t_bydev) and per fingerprint of clicks without identifiers (t_byfp).
# A link carries its touch's ts and kind, so that a walk reads 16 bytes per touch.
ctypedef struct Link:
    int64_t ts      # the touch's ts
    int32_t next    # the next (older) link of the same chain, or -1
    uint32_t touch  # (touch slot << 1) | 1 for a click

ctypedef struct Cand:
    int64_t ts
    int64_t slot
