cdef extern from "wbuf.h":
    ctypedef struct unmo_wbuf:
        char *data
        size_t len
        size_t cap
    int unmo_wbuf_reserve(unmo_wbuf *b, size_t extra) nogil
    void unmo_put_be16(unmo_wbuf *b, int16_t v) nogil
    void unmo_put_be32(unmo_wbuf *b, int32_t v) nogil
    void unmo_put_be64(unmo_wbuf *b, int64_t v) nogil
    void unmo_put_f64(unmo_wbuf *b, double v) nogil
    void unmo_put_bytes(unmo_wbuf *b, const char *p, size_t n) nogil
