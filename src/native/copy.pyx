# PostgreSQL binary COPY encoding straight from batch columns: numeric columns are
# numpy arrays read in place through raw pointers, text columns are lists whose
# str items' cached UTF-8 is copied; no Python object is made per row.  Format:
# https://www.postgresql.org/docs/current/sql-copy.html (Binary Format).

cdef bytes COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"

cdef extern from "Python.h":
    PyObject *_list_item "PyList_GET_ITEM" (PyObject *lst, Py_ssize_t i)

ctypedef struct CopyCol:
    int code
    const char *data          # numeric columns: contiguous values
    const uint8_t *nulls      # numeric columns: 1 = NULL, or NULL for none
    PyObject *items           # text, jsonb, inet: the list


cdef inline int _reserve(unmo_wbuf *b, size_t extra) except -1:
    if unmo_wbuf_reserve(b, extra) != 0:
        raise MemoryError("binary COPY buffer")
    return 0


cdef inline void _put_sized(unmo_wbuf *b, const char *p, Py_ssize_t n, bint jsonb) noexcept:
    """A text or jsonb field of ``n`` bytes into a buffer with room for it (n + 4, and 1 more for jsonb)."""
    if jsonb:
        # jsonb's binary form is a version byte (1) followed by the JSON text.
        unmo_put_be32(b, <int32_t>(n + 1))
        unmo_put_bytes(b, b"\x01", 1)
    else:
        unmo_put_be32(b, <int32_t>n)
    unmo_put_bytes(b, p, <size_t>n)


cdef inline int _span_of(object v, const char **p, Py_ssize_t *n) except -1:
    """The UTF-8 of a str (or the bytes of a bytes object) as a span; None is the NULL span (n = -1)."""
    if v is None:
        p[0] = NULL
        n[0] = -1
    elif isinstance(v, str):
        p[0] = PyUnicode_AsUTF8AndSize(v, n)
    elif isinstance(v, bytes):
        p[0] = PyBytes_AsString(v)
        n[0] = PyBytes_GET_SIZE(v)
    else:
        raise TypeError(f"text column: expected str, bytes or None, got {type(v).__name__}")
    return 0


cdef inline int _put_span(unmo_wbuf *b, const char *p, Py_ssize_t n, bint jsonb) except -1:
    """A text or jsonb field of n bytes at p; n < 0 is NULL."""
    if n < 0:
        _reserve(b, 4)
        unmo_put_be32(b, -1)
        return 0
    _reserve(b, <size_t>n + 5)
    _put_sized(b, p, n, jsonb)
    return 0


cdef int _put_text(unmo_wbuf *b, object v, bint jsonb) except -1:
    cdef Py_ssize_t n
    cdef const char *p
    _span_of(v, &p, &n)
    return _put_span(b, p, n, jsonb)


cdef int _put_inet_span(unmo_wbuf *b, const char *p, Py_ssize_t n) except -1:
    # inet's binary form: family (2 = PGSQL_AF_INET, 3 = PGSQL_AF_INET6), prefix
    # bits, is_cidr, address length, address (src/backend/utils/adt/network.c).
    # p == NULL is NULL.
    if p == NULL:
        _reserve(b, 4)
        unmo_put_be32(b, -1)
        return 0
    if n != 4 and n != 16:
        raise ValueError(f"inet column: expected 4 or 16 packed bytes, got {n}")
    _reserve(b, <size_t>n + 8)
    unmo_put_be32(b, <int32_t>(n + 4))
    unmo_put_bytes(b, b"\x02\x20\x00\x04" if n == 4 else b"\x03\x80\x00\x10", 4)
    unmo_put_bytes(b, p, <size_t>n)
    return 0


cdef int _put_inet(unmo_wbuf *b, object v) except -1:
    if v is None:
        return _put_inet_span(b, NULL, 0)
    if not isinstance(v, bytes):
        raise TypeError(f"inet column: expected packed bytes or None, got {type(v).__name__}")
    return _put_inet_span(b, PyBytes_AsString(v), PyBytes_GET_SIZE(v))


cdef object _numeric_dtype(int code):
    if code == COL_INT2:
        return np.int16
    if code == COL_INT4:
        return np.int32
    if code == COL_INT8 or code == COL_TIMESTAMPTZ_MS:
        return np.int64
    if code == COL_FLOAT8:
        return np.float64
    if code == COL_BOOL:
        return np.uint8
    return None


def encode_copy(Py_ssize_t n, list columns, rows=None):
    """Encode rows as one binary COPY stream (header, rows, trailer).

    ``columns`` holds one ``(code, values, nulls)`` per table column, in the COPY
    column order, each ``n`` long.  Numeric codes take an array-like of the
    matching type (int16, int32, int64, float64, uint8 for bool; int64
    milliseconds since the Unix epoch for timestamptz) and ``nulls`` as None or
    a uint8 array (1 = NULL); text, jsonb and inet take a list of str, bytes or
    None (inet: packed 4- or 16-byte addresses).  ``rows`` (int64 indices, in
    output order) selects the rows to write; by default all ``n``.
    """
    cdef Py_ssize_t ncols = len(columns), c, i, k, nout
    cdef CopyCol *cols = NULL
    cdef unmo_wbuf b
    cdef const int64_t *sel = NULL
    cdef const char *d
    cdef object item
    cdef list keep = []
    if ncols == 0 or ncols > 1600:
        raise ValueError(f"encode_copy: expected 1..1600 columns, got {ncols}")
    if rows is not None:
        rows_arr = np.ascontiguousarray(rows, dtype=np.int64)
        nout = rows_arr.shape[0]
        if nout and (rows_arr.min() < 0 or rows_arr.max() >= n):
            raise IndexError("encode_copy: a row index is out of range")
        keep.append(rows_arr)
        sel = <const int64_t *>cnp.PyArray_DATA(rows_arr)
    else:
        nout = n
    b.data = NULL
    b.len = 0
    b.cap = 0
    cols = <CopyCol *>calloc(ncols, sizeof(CopyCol))
    if cols == NULL:
        raise MemoryError("encode_copy")
    try:
        for c in range(ncols):
            code, values, nulls = columns[c]
            cols[c].code = code
            dtype = _numeric_dtype(code)
            if dtype is not None:
                arr = np.ascontiguousarray(values, dtype=dtype)
                if arr.ndim != 1 or arr.shape[0] != n:
                    raise ValueError(f"encode_copy: column {c} has {arr.shape[0]} rows, expected {n}")
                keep.append(arr)
                cols[c].data = <const char *>cnp.PyArray_DATA(arr)
                if nulls is not None:
                    narr = np.ascontiguousarray(nulls, dtype=np.uint8)
                    if narr.shape[0] != n:
                        raise ValueError(f"encode_copy: column {c} nulls have {narr.shape[0]} rows, expected {n}")
                    keep.append(narr)
                    cols[c].nulls = <const uint8_t *>cnp.PyArray_DATA(narr)
            elif code == COL_TEXT or code == COL_JSONB or code == COL_INET:
                if not isinstance(values, list) or len(values) != n:
                    raise ValueError(f"encode_copy: column {c} must be a list of {n} values")
                keep.append(values)
                cols[c].items = <PyObject *>values
            else:
                raise ValueError(f"encode_copy: unknown column code {code}")

        _reserve(&b, <size_t>(19 + nout * (2 + ncols * 12) + 2))
        unmo_put_bytes(&b, COPY_HEADER, 19)
        for k in range(nout):
            i = sel[k] if sel != NULL else k
            _reserve(&b, 2 + <size_t>ncols * 12)
            unmo_put_be16(&b, <int16_t>ncols)
            for c in range(ncols):
                if cols[c].items != NULL:
                    item = <object>_list_item(cols[c].items, i)
                    if cols[c].code == COL_INET:
                        _put_inet(&b, item)
                    else:
                        _put_text(&b, item, cols[c].code == COL_JSONB)
                    continue
                if cols[c].nulls != NULL and cols[c].nulls[i]:
                    _reserve(&b, 4)
                    unmo_put_be32(&b, -1)
                    continue
                _reserve(&b, 12)
                d = cols[c].data
                if cols[c].code == COL_INT8:
                    unmo_put_be32(&b, 8)
                    unmo_put_be64(&b, (<const int64_t *>d)[i])
                elif cols[c].code == COL_TIMESTAMPTZ_MS:
                    unmo_put_be32(&b, 8)
                    unmo_put_be64(&b, ((<const int64_t *>d)[i] - PG_EPOCH_MS) * 1000)
                elif cols[c].code == COL_INT2:
                    unmo_put_be32(&b, 2)
                    unmo_put_be16(&b, (<const int16_t *>d)[i])
                elif cols[c].code == COL_INT4:
                    unmo_put_be32(&b, 4)
                    unmo_put_be32(&b, (<const int32_t *>d)[i])
                elif cols[c].code == COL_FLOAT8:
                    unmo_put_be32(&b, 8)
                    unmo_put_f64(&b, (<const double *>d)[i])
                else:  # COL_BOOL
                    unmo_put_be32(&b, 1)
                    unmo_put_bytes(&b, b"\x01" if (<const uint8_t *>d)[i] else b"\x00", 1)
        _reserve(&b, 2)
        unmo_put_be16(&b, -1)
        return PyBytes_FromStringAndSize(b.data, <Py_ssize_t>b.len)
    finally:
        free(b.data)
        free(cols)


# -- unmo.records rows in two halves --------------------------------------------------------------
# A record's own columns (SEGMENT_COLUMNS of unmo.ingest.rows) are encoded once, when its request is
# decoded and its values are still in the cache, into the request's segment buffer; at the flush,
# encode_flush writes the columns the kernel decided and copies each kept row's segment after them.
# The flush used to read every str of every record back from memory (cold by then, the whole flush's
# worth) and grow its buffer by reallocation.

cdef inline int _put_i16(unmo_wbuf *b, int16_t v) except -1:
    _reserve(b, 6)
    unmo_put_be32(b, 2)
    unmo_put_be16(b, v)
    return 0


cdef inline int _put_i64(unmo_wbuf *b, int64_t v) except -1:
    _reserve(b, 12)
    unmo_put_be32(b, 8)
    unmo_put_be64(b, v)
    return 0


ctypedef struct SegSpans:
    # the fields of a record's segment that its decoder may hold as bytes rather than as objects
    const char *ids[5]        # normalised device ids (UTF-8) ...
    Py_ssize_t idn[5]         # ... and their lengths, -1 for none
    const char *packed        # packed IP, 4 or 16 bytes, or NULL
    Py_ssize_t packed_n
    bint has_revenue
    double revenue
    const char *props         # JSON text of the properties ...
    Py_ssize_t props_n        # ... and its length, -1 for none


cdef Py_ssize_t seg_record_spans(unmo_wbuf *b, int kind, object rid, int64_t ts_ms, const SegSpans *f,
                                 object ua, object platform, object os, object osv, object model,
                                 object referrer, object name, object currency, uint64_t fp) except -1:
    """Append one record's SEGMENT_COLUMNS; returns the buffer offset of its ts value (8 bytes, for a
    decoder that learns the clock skew after the record: seg_patch_ts)."""
    cdef int j
    cdef Py_ssize_t ts_at
    _put_i16(b, <int16_t>kind)
    _put_text(b, rid, False)
    _reserve(b, 12)
    unmo_put_be32(b, 8)
    ts_at = <Py_ssize_t>b.len
    unmo_put_be64(b, (ts_ms - PG_EPOCH_MS) * 1000)
    for j in range(5):
        _put_span(b, f.ids[j], f.idn[j], False)
    _put_inet_span(b, f.packed, f.packed_n)
    _put_text(b, ua, False)
    _put_text(b, platform, False)
    _put_text(b, os, False)
    _put_text(b, osv, False)
    _put_text(b, model, False)
    _put_text(b, referrer, False)
    _put_text(b, name, False)
    if not f.has_revenue:
        _reserve(b, 4)
        unmo_put_be32(b, -1)
    else:
        _reserve(b, 12)
        unmo_put_be32(b, 8)
        unmo_put_f64(b, f.revenue)
    _put_text(b, currency, False)
    _put_span(b, f.props, f.props_n, True)
    if fp == 0:
        _reserve(b, 4)
        unmo_put_be32(b, -1)
    else:
        _put_i64(b, <int64_t>fp)
    return ts_at


cdef inline void seg_patch_ts(unmo_wbuf *b, Py_ssize_t ts_at, int64_t ts_ms) noexcept:
    """Rewrite the ts value seg_record_spans put at ts_at."""
    cdef unmo_wbuf at
    at.data = b.data + ts_at
    at.len = 0
    at.cap = 8
    unmo_put_be64(&at, (ts_ms - PG_EPOCH_MS) * 1000)


cdef int seg_record(unmo_wbuf *b, int kind, object rid, int64_t ts_ms, object idfa, object gaid, object oaid,
                    object idfv, object android_id, object packed, object ua, object platform, object os,
                    object osv, object model, object referrer, object name, object revenue, object currency,
                    object props, uint64_t fp) except -1:
    """Append one record's SEGMENT_COLUMNS from objects (normalised ids, packed IP bytes, JSON text of
    the properties): seg_record_spans."""
    cdef SegSpans f
    _span_of(idfa, &f.ids[0], &f.idn[0])
    _span_of(gaid, &f.ids[1], &f.idn[1])
    _span_of(oaid, &f.ids[2], &f.idn[2])
    _span_of(idfv, &f.ids[3], &f.idn[3])
    _span_of(android_id, &f.ids[4], &f.idn[4])
    if packed is not None and not isinstance(packed, bytes):
        raise TypeError(f"inet column: expected packed bytes or None, got {type(packed).__name__}")
    _span_of(packed, &f.packed, &f.packed_n)
    f.has_revenue = revenue is not None
    f.revenue = <double>revenue if f.has_revenue else 0.0
    _span_of(props, &f.props, &f.props_n)
    seg_record_spans(b, kind, rid, ts_ms, &f, ua, platform, os, osv, model, referrer, name, currency, fp)
    return 0


cdef inline Py_ssize_t _text_size(object v) except -1:
    """Bytes _put_str_sized writes for a str or None (a TypeError for anything else)."""
    cdef Py_ssize_t n
    if v is None:
        return 4
    if not isinstance(v, str):
        raise TypeError(f"text column: expected str or None, got {type(v).__name__}")
    PyUnicode_AsUTF8AndSize(v, &n)
    return 4 + n


cdef inline void _put_str_sized(unmo_wbuf *b, object v, bint jsonb):
    """_put_text of a str or None into a buffer already sized for it (_text_size, plus 1 for jsonb)."""
    cdef Py_ssize_t n
    cdef const char *p
    if v is None:
        unmo_put_be32(b, -1)
        return
    p = PyUnicode_AsUTF8AndSize(v, &n)
    _put_sized(b, p, n, jsonb)


def encode_flush(const int64_t[::1] rows, list segs, const int64_t[::1] device_key, int64_t app_id,
                 const int64_t[::1] received, int64_t seq, const int32_t[::1] ord_, const int16_t[::1] outcome,
                 const int32_t[::1] camp, list campaigns, const int64_t[::1] install_ms, list ctit_rejected):
    """Binary COPY stream of the flush's kept ``rows`` (indices into the batch, in output order): per row
    the decided columns (DECIDED_COLUMNS of unmo.ingest.rows: device_key, app_id, received_at, seq, ord,
    outcome, the five campaign fields of ``campaigns[camp[row]]`` (-1: NULL), install_ms (-1: NULL),
    ctit_rejected (jsonb text or None)), then the row's segment.  ``segs``: the batch's segment parts,
    ``(buffer, offsets)`` with offsets one longer than the part's rows.  The stream is written into a
    bytes object of its exact size (no reallocation, no copy)."""
    cdef Py_ssize_t n = device_key.shape[0], nout = rows.shape[0], k, i, j, p, size, local, total = 0
    cdef const int64_t[::1] offs
    cdef const char **ptr = NULL
    cdef Py_ssize_t *plen = NULL
    cdef list camp_sizes
    cdef object buf, c
    cdef unmo_wbuf b
    cdef char *out
    if (received.shape[0] != n or ord_.shape[0] != n or outcome.shape[0] != n or camp.shape[0] != n
            or install_ms.shape[0] != n or len(ctit_rejected) != n):
        raise ValueError(f"encode_flush: every column must have {n} rows")
    ptr = <const char **>malloc(max(n, 1) * sizeof(char *))
    plen = <Py_ssize_t *>malloc(max(n, 1) * sizeof(Py_ssize_t))
    if ptr == NULL or plen == NULL:
        free(ptr); free(plen)
        raise MemoryError("encode_flush")
    try:
        # where each row's segment is
        i = 0
        for p in range(len(segs)):
            buf, offs = segs[p]
            if not isinstance(buf, bytes):
                raise TypeError("encode_flush: a segment buffer must be bytes")
            if offs.shape[0] < 1 or offs[offs.shape[0] - 1] > PyBytes_GET_SIZE(buf):
                raise ValueError("encode_flush: segment offsets out of their buffer")
            for local in range(offs.shape[0] - 1):
                if i >= n:
                    raise ValueError(f"encode_flush: the segments hold more than {n} rows")
                ptr[i] = PyBytes_AsString(buf) + offs[local]
                plen[i] = <Py_ssize_t>(offs[local + 1] - offs[local])
                i += 1
        if i != n:
            raise ValueError(f"encode_flush: the segments hold {i} rows, expected {n}")
        # the exact size: header, per row the field count, the decided fields, the segment; trailer
        camp_sizes = []
        for c in campaigns:
            camp_sizes.append(sum([_text_size(c[j]) for j in range(5)]))
        size = 19 + 2
        for k in range(nout):
            i = rows[k]
            if i < 0 or i >= n:
                raise IndexError("encode_flush: a row index is out of range")
            size += 2 + 12 * 4 + 8 + 6 + plen[i]
            size += 20 if camp[i] < 0 else <Py_ssize_t>camp_sizes[camp[i]]
            size += 4 if install_ms[i] < 0 else 12
            size += 4 if ctit_rejected[i] is None else 1 + _text_size(ctit_rejected[i])
        result = PyBytes_FromStringAndSize(NULL, size)
        out = PyBytes_AsString(result)
        # written through a wbuf over the result, with the puts that do not reserve (nothing may reallocate)
        b.data = out
        b.len = 0
        b.cap = <size_t>size
        unmo_put_bytes(&b, COPY_HEADER, 19)
        for k in range(nout):
            i = rows[k]
            unmo_put_be16(&b, 33)
            unmo_put_be32(&b, 8); unmo_put_be64(&b, device_key[i])
            unmo_put_be32(&b, 8); unmo_put_be64(&b, app_id)
            unmo_put_be32(&b, 8); unmo_put_be64(&b, (received[i] - PG_EPOCH_MS) * 1000)
            unmo_put_be32(&b, 8); unmo_put_be64(&b, seq)
            unmo_put_be32(&b, 4); unmo_put_be32(&b, ord_[i])
            unmo_put_be32(&b, 2); unmo_put_be16(&b, outcome[i])
            if camp[i] < 0:
                for j in range(5):
                    unmo_put_be32(&b, -1)
            else:
                c = campaigns[camp[i]]
                for j in range(5):
                    _put_str_sized(&b, c[j], False)
            if install_ms[i] < 0:
                unmo_put_be32(&b, -1)
            else:
                unmo_put_be32(&b, 8); unmo_put_be64(&b, install_ms[i])
            _put_str_sized(&b, ctit_rejected[i], True)
            unmo_put_bytes(&b, ptr[i], <size_t>plen[i])
        unmo_put_be16(&b, -1)
        if b.len != <size_t>size:
            raise AssertionError(f"encode_flush: wrote {b.len} bytes of {size}")
        return result
    finally:
        free(ptr)
        free(plen)


SEGMENT_FIELD_COUNT = SEGMENT_FIELDS  # for the test that keeps it in step with SEGMENT_COLUMNS


cdef inline int32_t _get_be32(const unsigned char *p) noexcept:
    return <int32_t>((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3])


def seg_field(list segs, int col):
    """Field ``col`` (a position in SEGMENT_COLUMNS of unmo.ingest.rows) of every row of the segment
    parts ``segs`` (``(buffer, offsets)`` as encode_flush takes them): its binary COPY value as bytes, None
    for NULL.  The rows' own columns are kept only in their segments; this reads one of them back."""
    cdef const unsigned char *base
    cdef const unsigned char *p
    cdef const unsigned char *end
    cdef const int64_t[::1] offs
    cdef Py_ssize_t r, k
    cdef int32_t n
    cdef list out = []
    if col < 0 or col >= SEGMENT_FIELDS:
        raise IndexError(f"seg_field: no segment column {col}")
    for buf, offs_obj in segs:
        if not isinstance(buf, bytes):
            raise TypeError("seg_field: a segment buffer must be bytes")
        offs = offs_obj
        if offs.shape[0] < 1 or offs[offs.shape[0] - 1] > PyBytes_GET_SIZE(buf):
            raise ValueError("seg_field: segment offsets out of their buffer")
        base = <const unsigned char *>PyBytes_AsString(buf)
        for r in range(offs.shape[0] - 1):
            p = base + offs[r]
            end = base + offs[r + 1]
            k = 0
            while True:
                if p + 4 > end:
                    raise ValueError(f"seg_field: row {r} ends before its field {k}")
                n = _get_be32(p)
                p += 4
                if n > 0 and p + n > end:
                    raise ValueError(f"seg_field: row {r}: field {k} runs past the row")
                if k == col:
                    out.append(None if n < 0 else PyBytes_FromStringAndSize(<const char *>p, n))
                    break
                if n > 0:
                    p += n
                k += 1
    return out
