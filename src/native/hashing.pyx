# Stable 64-bit hashes of strings: XXH64 over the UTF-8 bytes.  Used for device
# keys (the distribution column), record-id dedup keys and device-identifier
# index keys.  0 is reserved for "absent", so a hash that comes out 0 is stored as 1.

cdef uint64_t hash_str(str s, uint64_t seed) except? 0:
    cdef Py_ssize_t n
    cdef const char *p = PyUnicode_AsUTF8AndSize(s, &n)
    cdef uint64_t h = unmo_xxh64(p, <size_t>n, seed)
    return h if h != 0 else 1


def xxh64(data, uint64_t seed=0):
    """XXH64 of bytes or of a str's UTF-8 encoding (0 is not remapped)."""
    cdef const unsigned char[:] view
    cdef Py_ssize_t n
    cdef const char *p
    if isinstance(data, str):
        p = PyUnicode_AsUTF8AndSize(data, &n)
        return unmo_xxh64(p, <size_t>n, seed)
    view = data
    if view.shape[0] == 0:
        return unmo_xxh64(b"", 0, seed)
    return unmo_xxh64(&view[0], <size_t>view.shape[0], seed)


def hash_strings(list values, uint64_t seed=0):
    """uint64 array of hash_str over a list of str or None (None -> 0)."""
    cdef Py_ssize_t i, n = len(values)
    out = np.zeros(n, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef object v
    for i in range(n):
        v = values[i]
        if v is not None:
            o[i] = hash_str(<str>v, seed)
    return out
