# XXH64 (xxh64.h): the one hash behind device keys, record-id dedup keys and
# device-identifier index keys.
cdef extern from "xxh64.h":
    uint64_t unmo_xxh64(const void *data, size_t length, uint64_t seed) nogil
