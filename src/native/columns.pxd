# Declarations for columns.pyx: address parsing and civil-date arithmetic in C.
cdef extern from "<arpa/inet.h>":
    int inet_pton(int af, const char *src, void *dst) nogil
    const char *inet_ntop(int af, const void *src, char *dst, unsigned int size) nogil

cdef extern from "<sys/socket.h>":
    int AF_INET
    int AF_INET6

cdef extern from "<string.h>":
    void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen) nogil

cdef extern from "civil.h":
    int64_t unmo_days_from_civil(int64_t y, unsigned m, unsigned d) nogil

# Struct fields read by their slot offsets (unmo.model's msgspec Structs keep their fields as member slots).
cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset

cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    ctypedef struct PyTypeObject
    PyTypeObject *Py_TYPE(object o)
