# PostgreSQL binary COPY encoding straight from batch columns: numeric columns are
# numpy arrays read in place, text columns lists of str (their cached UTF-8 is
# copied, no per-row Python objects are created).  Format:
# https://www.postgresql.org/docs/current/sql-copy.html (Binary Format).

cdef bytes COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"


cdef inline int _reserve(unmo_wbuf *b, size_t extra) except -1:
    if unmo_wbuf_reserve(b, extra) != 0:
        raise MemoryError("binary COPY buffer")
    return 0


cdef int _put_text(unmo_wbuf *b, object v, bint jsonb) except -1:
    cdef Py_ssize_t n
    cdef const char *p
    if v is None:
        _reserve(b, 4)
        unmo_put_be32(b, -1)
        return 0
    if isinstance(v, str):
        p = PyUnicode_AsUTF8AndSize(v, &n)
    else:
        p = PyBytes_AsString(v)
        n = PyBytes_GET_SIZE(v)
    _reserve(b, <size_t>n + 5)
    if jsonb:
        # jsonb's binary form is a version byte (1) followed by the JSON text.
        unmo_put_be32(b, <int32_t>(n + 1))
        unmo_put_bytes(b, b"\x01", 1)
    else:
        unmo_put_be32(b, <int32_t>n)
    unmo_put_bytes(b, p, <size_t>n)
    return 0


cdef int _put_inet(unmo_wbuf *b, object v) except -1:
    # inet's binary form: family (2 = PGSQL_AF_INET, 3 = PGSQL_AF_INET6), prefix
    # bits, is_cidr, address length, address (src/backend/utils/adt/network.c).
    cdef Py_ssize_t n
    if v is None:
        _reserve(b, 4)
        unmo_put_be32(b, -1)
        return 0
    n = PyBytes_GET_SIZE(v)
    if n != 4 and n != 16:
        raise ValueError(f"inet column: expected 4 or 16 packed bytes, got {n}")
    _reserve(b, <size_t>n + 8)
    unmo_put_be32(b, <int32_t>(n + 4))
    unmo_put_bytes(b, b"\x02\x20\x00\x04" if n == 4 else b"\x03\x80\x00\x10", 4)
    unmo_put_bytes(b, PyBytes_AsString(v), <size_t>n)
    return 0


def encode_copy(Py_ssize_t n, list columns):
    """Encode n rows as one binary COPY stream (header, rows, trailer).

    ``columns`` holds one ``(code, values, nulls)`` per table column, in the
    COPY column order: numeric codes take a contiguous numpy array of the
    matching dtype (int16, int32, int64, float64, uint8 for bool; int64
    milliseconds since the Unix epoch for timestamptz) and ``nulls`` as None or
    a uint8 array (1 = NULL); text, jsonb and inet take a list of str, bytes
    or None (inet: packed 4- or 16-byte addresses).
    """
    cdef unmo_wbuf b
    cdef Py_ssize_t i, c, ncols = len(columns)
    cdef int code
    cdef int16_t[::1] v16
    cdef int32_t[::1] v32
    cdef int64_t[::1] v64
    cdef double[::1] vf
    cdef uint8_t[::1] vb
    cdef uint8_t[::1] nul
    cdef list lst
    cdef int *codes = NULL
    if ncols == 0 or ncols > 1600:
        raise ValueError(f"encode_copy: expected 1..1600 columns, got {ncols}")
    b.data = NULL
    b.len = 0
    b.cap = 0
    try:
        _reserve(&b, <size_t>(19 + n * (2 + ncols * 12) + 2))
        unmo_put_bytes(&b, COPY_HEADER, 19)
        cols = []
        for c in range(ncols):
            code, values, nulls = columns[c]
            cols.append((code, values, nulls))
            if code < COL_TEXT or code == COL_BOOL:
                if len(values) != n or (nulls is not None and len(nulls) != n):
                    raise ValueError(f"encode_copy: column {c} has {len(values)} rows, expected {n}")
            elif len(values) != n:
                raise ValueError(f"encode_copy: column {c} has {len(values)} rows, expected {n}")
        for i in range(n):
            _reserve(&b, 2)
            unmo_put_be16(&b, <int16_t>ncols)
            for c in range(ncols):
                code, values, nulls = <tuple>cols[c]
                if code >= COL_TEXT and code != COL_BOOL:
                    lst = <list>values
                    if code == COL_INET:
                        _put_inet(&b, lst[i])
                    else:
                        _put_text(&b, lst[i], code == COL_JSONB)
                    continue
                if nulls is not None:
                    nul = nulls
                    if nul[i]:
                        _reserve(&b, 4)
                        unmo_put_be32(&b, -1)
                        continue
                _reserve(&b, 12)
                if code == COL_INT2:
                    v16 = values
                    unmo_put_be32(&b, 2)
                    unmo_put_be16(&b, v16[i])
                elif code == COL_INT4:
                    v32 = values
                    unmo_put_be32(&b, 4)
                    unmo_put_be32(&b, v32[i])
                elif code == COL_INT8:
                    v64 = values
                    unmo_put_be32(&b, 8)
                    unmo_put_be64(&b, v64[i])
                elif code == COL_TIMESTAMPTZ_MS:
                    v64 = values
                    unmo_put_be32(&b, 8)
                    unmo_put_be64(&b, (v64[i] - PG_EPOCH_MS) * 1000)
                elif code == COL_FLOAT8:
                    vf = values
                    unmo_put_be32(&b, 8)
                    unmo_put_f64(&b, vf[i])
                elif code == COL_BOOL:
                    vb = values
                    unmo_put_be32(&b, 1)
                    unmo_put_bytes(&b, b"\x01" if vb[i] else b"\x00", 1)
                else:
                    raise ValueError(f"encode_copy: unknown column code {code}")
        _reserve(&b, 2)
        unmo_put_be16(&b, -1)
        return PyBytes_FromStringAndSize(b.data, <Py_ssize_t>b.len)
    finally:
        free(b.data)
