# Interned text of repeated field values.  Most text of a batch repeats from record to record (user
# agents, OS names and versions, device models, the five campaign fields, event names, currencies),
# and every str the decoder makes is an allocation that lands on a cold cache line and is freed again
# with the batch (allocation and list teardown were a fifth of the server's time).  intern_utf8 hands
# out the same str object for the same bytes: a direct-mapped table of 8192 strong references keyed
# by XXH64, bounded in memory (values up to 512 bytes), replaced on collision, never freed.

cdef enum:
    _INTERN_SLOTS = 8192  # a power of two
    _INTERN_MAX_BYTES = 512

cdef PyObject *_intern_obj[_INTERN_SLOTS]
cdef uint64_t _intern_key[_INTERN_SLOTS]
cdef uint64_t _INTERN_SEED = 0x1A7E_5EED


cdef object intern_utf8(const char *p, Py_ssize_t n):
    """The str of the valid UTF-8 bytes ``p[:n]``: the same object as last time for the same bytes."""
    cdef uint64_t h
    cdef size_t slot
    cdef PyObject *old
    cdef Py_ssize_t m
    cdef const char *q
    cdef object s
    if n > _INTERN_MAX_BYTES:
        return PyUnicode_DecodeUTF8(p, n, NULL)
    h = unmo_xxh64(p, <size_t>n, _INTERN_SEED)
    slot = <size_t>(h & (_INTERN_SLOTS - 1))
    old = _intern_obj[slot]
    if old != NULL and _intern_key[slot] == h:
        q = PyUnicode_AsUTF8AndSize(<object>old, &m)
        if m == n and memcmp(p, q, <size_t>n) == 0:
            return <object>old
    s = PyUnicode_DecodeUTF8(p, n, NULL)
    Py_INCREF(s)
    _intern_obj[slot] = <PyObject *>s
    _intern_key[slot] = h
    Py_XDECREF(old)
    return s


def intern_text(bytes data):
    """intern_utf8 from Python (tests): the shared str of these UTF-8 bytes."""
    return intern_utf8(PyBytes_AsString(data), PyBytes_GET_SIZE(data))
