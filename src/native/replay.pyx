# Stored records read back for a replay (warm-up, catch-up: unmo.ingest.writer), from PostgreSQL's
# binary COPY of unmo.ingest.rows.REPLAY_COLUMNS straight into the columns the kernel replays: no row
# objects, no datetime, device identifiers hashed from their bytes.

cdef bytes _PGCOPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
cdef enum:
    _REPLAY_FIELDS = 16    # kind, ts_ms, received_ms, record_id, 5 device ids, fp, 5 campaign fields, outcome


cdef inline int64_t _get_be64(const unsigned char *p) noexcept:
    return <int64_t>((<uint64_t>p[0] << 56) | (<uint64_t>p[1] << 48) | (<uint64_t>p[2] << 40)
                     | (<uint64_t>p[3] << 32) | (<uint64_t>p[4] << 24) | (<uint64_t>p[5] << 16)
                     | (<uint64_t>p[6] << 8) | <uint64_t>p[7])


cdef inline int16_t _get_be16(const unsigned char *p) noexcept:
    return <int16_t>((<uint32_t>p[0] << 8) | <uint32_t>p[1])


def replay_copy_rows(const unsigned char[::1] buf, Py_ssize_t pos, bint header, tuple dev_seeds,
                     bytes zero_id, Py_ssize_t max_rows):
    """Parse whole rows of a binary COPY of REPLAY_COLUMNS from ``buf[pos:]`` (``header``: the COPY's header
    comes first), at most ``max_rows``.  Returns ``(pos, done, columns)``: where the first row not parsed
    starts (a row cut by the end of ``buf`` is left for the next call), whether the COPY's trailer was
    read, and the rows' columns: kind (uint8), ts and received ms (int64), record ids (list of str), device
    identifier hashes (uint64, rows x 5: hash_str of each with its seed, 0 for NULL and for the all-zero
    id), fp (uint64), the five campaign fields (lists of str or None), outcome (int16)."""
    cdef Py_ssize_t end = buf.shape[0], p = pos, row_start, n = 0, cap, j
    cdef const unsigned char *b = &buf[0] if end > 0 else NULL
    cdef int32_t flen, ext
    cdef int16_t nf
    cdef int f
    cdef bint done = False
    cdef uint64_t seeds[5]
    cdef uint64_t h
    cdef const char *zp = PyBytes_AsString(zero_id)
    cdef Py_ssize_t zn = PyBytes_GET_SIZE(zero_id)
    if len(dev_seeds) != 5:
        raise ValueError("replay_copy_rows: five device seeds")
    for j in range(5):
        seeds[j] = dev_seeds[j]
    if header:
        if memcmp(b + p, PyBytes_AsString(_PGCOPY_SIGNATURE), 11 if end - p >= 11 else end - p) != 0:
            raise ValueError("replay_copy_rows: not a binary COPY header")
        if end - p < 19 or end - p < 19 + _get_be32(b + p + 15):
            max_rows = 0  # the header is not all there yet: read nothing
        else:
            ext = _get_be32(b + p + 15)
            if ext < 0:
                raise ValueError("replay_copy_rows: not a binary COPY header")
            p += 19 + ext
    # upper bound of the rows in buf: each takes at least 2 + 16 * 4 bytes
    cap = (end - p) // (2 + 4 * _REPLAY_FIELDS) + 1
    if cap > max_rows:
        cap = max_rows
    if cap < 0:
        cap = 0
    kind_a = np.empty(cap, dtype=np.uint8)
    ts_a = np.empty(cap, dtype=np.int64)
    rec_a = np.empty(cap, dtype=np.int64)
    dev_a = np.zeros((cap, 5), dtype=np.uint64)
    fp_a = np.zeros(cap, dtype=np.uint64)
    out_a = np.empty(cap, dtype=np.int16)
    cdef uint8_t[::1] kind = kind_a
    cdef int64_t[::1] ts = ts_a
    cdef int64_t[::1] rec = rec_a
    cdef uint64_t[:, ::1] dev = dev_a
    cdef uint64_t[::1] fp = fp_a
    cdef int16_t[::1] outcome = out_a
    cdef list rids = []
    cdef list camp = [[], [], [], [], []]
    cdef list cl
    while n < cap:
        row_start = p
        if end - p < 2:
            break
        nf = _get_be16(b + p)
        if nf == -1:
            done = True
            p += 2
            break
        if nf != _REPLAY_FIELDS:
            raise ValueError(f"replay_copy_rows: a row of {nf} fields, expected {_REPLAY_FIELDS}")
        p += 2
        for f in range(_REPLAY_FIELDS):
            if end - p < 4:
                break
            flen = _get_be32(b + p)
            p += 4
            if flen > 0 and end - p < flen:
                break
            if f == 0 or f == 15:
                if flen != 2:
                    raise ValueError(f"replay_copy_rows: field {f} is not an int2")
                if f == 0:
                    kind[n] = <uint8_t>_get_be16(b + p)
                else:
                    outcome[n] = _get_be16(b + p)
            elif f == 1 or f == 2 or f == 9:
                if f == 9 and flen < 0:
                    fp[n] = 0
                elif flen != 8:
                    raise ValueError(f"replay_copy_rows: field {f} is not an int8")
                elif f == 1:
                    ts[n] = _get_be64(b + p)
                elif f == 2:
                    rec[n] = _get_be64(b + p)
                else:
                    fp[n] = <uint64_t>_get_be64(b + p)
            elif f == 3:
                if flen < 0:
                    raise ValueError("replay_copy_rows: a NULL record id")
                rids.append(PyUnicode_DecodeUTF8(<const char *>(b + p), flen, NULL))
            elif f <= 8:
                if flen >= 0 and not (flen == zn and memcmp(b + p, zp, <size_t>zn) == 0):
                    h = unmo_xxh64(<const char *>(b + p), <size_t>flen, seeds[f - 4])
                    dev[n, f - 4] = h if h != 0 else 1
                else:
                    dev[n, f - 4] = 0
            else:
                cl = camp[f - 10]
                cl.append(None if flen < 0 else PyUnicode_DecodeUTF8(<const char *>(b + p), flen, NULL))
            if flen > 0:
                p += flen
        else:
            n += 1
            continue
        # the row is cut by the end of buf: drop what it appended, leave it for the next call
        del rids[n:]
        for cl in camp:
            del cl[n:]
        p = row_start
        break
    return p, done, (kind_a[:n], ts_a[:n], rec_a[:n], rids, dev_a[:n], fp_a[:n], camp, out_a[:n])
