# Validated records -> batch columns: the per-record half of POST /v1/batch that
# runs after msgspec's typed decode.  Everything that the spec asks of a record
# beyond its types (ts range and skew, required fields per type, IP addresses,
# currencies, properties, U+0000) is checked here, and the good records'
# columns are built with hashes and normalised identifiers.  Messages of the
# (rare) bad records are formatted in Python by unmo.ingest.batch.

from cpython.datetime cimport (
    datetime, import_datetime, timedelta,
    datetime_year, datetime_month, datetime_day, datetime_hour, datetime_minute, datetime_second,
    datetime_microsecond, timedelta_days, timedelta_seconds, timedelta_microseconds,
)

import_datetime()

cdef uint64_t _ID_SEED_2 = 0x9E3779B97F4A7C15ULL
cdef uint64_t _FP_SEED = 0x5EED_F1A9
cdef uint64_t _DEV_SEED = 0xD1CE_0000
cdef str _ZERO_ID = "00000000-0000-0000-0000-000000000000"
cdef tuple _DEVICE_FIELDS = ("idfa", "gaid", "oaid", "idfv", "android_id")
cdef tuple _CAMPAIGN_FIELDS = ("network", "campaign", "adset", "ad", "site")

# Error codes returned to Python, which words the message (unmo.ingest.batch).
ERR_TS_RANGE = 1
ERR_TS_FUTURE = 2
ERR_NETWORK = 3
ERR_NAME = 4
ERR_REVENUE = 5
ERR_CURRENCY = 6
ERR_IP = 7
ERR_PROPS_SIZE = 8
ERR_PROPS = 9
ERR_NUL = 10


cdef inline int64_t _ts_ms(object value) except? -1:
    cdef timedelta off
    cdef int64_t ms
    if isinstance(value, int):
        return <int64_t>value
    ms = (unmo_days_from_civil(datetime_year(value), datetime_month(value), datetime_day(value)) * 86400000
          + datetime_hour(value) * 3600000 + datetime_minute(value) * 60000 + datetime_second(value) * 1000
          + datetime_microsecond(value) // 1000)
    off = value.utcoffset()
    return ms - (timedelta_days(off) * 86400000 + timedelta_seconds(off) * 1000
                 + timedelta_microseconds(off) // 1000)


# Offsets of the fields of unmo.model.Record, Device and Campaign (configure_structs): build_columns
# reads a field with one load instead of an attribute lookup (about 30 a record).  A record whose type
# is not the configured one is read by attribute.
cdef PyTypeObject *_REC_T = NULL
cdef PyTypeObject *_DEV_T = NULL
cdef PyTypeObject *_CAMP_T = NULL
cdef Py_ssize_t _R_TYPE, _R_ID, _R_TS, _R_DEVICE, _R_CAMPAIGN, _R_REFERRER, _R_NAME, _R_REVENUE, _R_CURRENCY
cdef Py_ssize_t _R_PROPERTIES, _D_IP, _D_UA, _D_PLATFORM, _D_OS, _D_OSV, _D_MODEL, _C_NETWORK
cdef Py_ssize_t _D_IDS[5]
cdef Py_ssize_t _C_FIELDS[5]
cdef list _STRUCT_TYPES = []   # keeps the configured types alive


cdef Py_ssize_t _offset(object tp, str name) except -1:
    descr = tp.__dict__.get(name)
    if descr is None or type(descr).__name__ != "member_descriptor":
        raise TypeError(f"{tp.__name__}.{name}: not a member slot")
    return (<PyMemberDescrObject *>descr).d_member.offset


def configure_structs(object record, object device, object campaign):
    """Read the fields of these msgspec Struct types by slot offset in build_columns."""
    global _REC_T, _DEV_T, _CAMP_T, _R_TYPE, _R_ID, _R_TS, _R_DEVICE, _R_CAMPAIGN, _R_REFERRER, _R_NAME
    global _R_REVENUE, _R_CURRENCY, _R_PROPERTIES, _D_IP, _D_UA, _D_PLATFORM, _D_OS, _D_OSV, _D_MODEL, _C_NETWORK
    cdef int j
    _R_TYPE = _offset(record, "type"); _R_ID = _offset(record, "id"); _R_TS = _offset(record, "ts")
    _R_DEVICE = _offset(record, "device"); _R_CAMPAIGN = _offset(record, "campaign")
    _R_REFERRER = _offset(record, "referrer"); _R_NAME = _offset(record, "name")
    _R_REVENUE = _offset(record, "revenue"); _R_CURRENCY = _offset(record, "currency")
    _R_PROPERTIES = _offset(record, "properties")
    _D_IP = _offset(device, "ip"); _D_UA = _offset(device, "ua"); _D_PLATFORM = _offset(device, "platform")
    _D_OS = _offset(device, "os"); _D_OSV = _offset(device, "os_version"); _D_MODEL = _offset(device, "model")
    for j in range(5):
        _D_IDS[j] = _offset(device, _DEVICE_FIELDS[j])
        _C_FIELDS[j] = _offset(campaign, _CAMPAIGN_FIELDS[j])
    _C_NETWORK = _C_FIELDS[0]
    _STRUCT_TYPES[:] = [record, device, campaign]
    _REC_T = <PyTypeObject *>record
    _DEV_T = <PyTypeObject *>device
    _CAMP_T = <PyTypeObject *>campaign


cdef inline object _slot(object o, Py_ssize_t off):
    cdef PyObject *p = (<PyObject **>((<char *><PyObject *>o) + off))[0]
    if p == NULL:
        return None
    return <object>p


cdef inline uint64_t _nz(uint64_t h):
    return h if h != 0 else 1


cdef int _ipv4_text(const unsigned char *a, char *out) noexcept nogil:
    """Dotted-quad text of 4 bytes into out; returns its length (inet_ntop without printf)."""
    cdef int k, n = 0, v
    for k in range(4):
        v = a[k]
        if v >= 100:
            out[n] = <char>(48 + v // 100); n += 1
        if v >= 10:
            out[n] = <char>(48 + (v // 10) % 10); n += 1
        out[n] = <char>(48 + v % 10); n += 1
        if k < 3:
            out[n] = 46; n += 1  # '.'
    out[n] = 0
    return n


cdef object _canonical_ip(str text):
    """(canonical text, packed bytes) of an IPv4/IPv6 address (::ffff:a.b.c.d is a.b.c.d), or None."""
    cdef Py_ssize_t n
    cdef const char *p
    cdef unsigned char buf[16]
    cdef char out[64]
    cdef int m
    p = PyUnicode_AsUTF8AndSize(text, &n)
    if n == 0 or n > 63 or p[0] == 32 or p[n - 1] == 32 or p[0] == 9 or p[n - 1] == 9:
        text = text.strip()
        p = PyUnicode_AsUTF8AndSize(text, &n)
        if n == 0 or n > 63:
            return None
    if inet_pton(AF_INET, p, buf) == 1:
        m = _ipv4_text(buf, out)
        # the text as sent is almost always canonical already: keep that object
        canon = text if (m == n and memcmp(out, p, n) == 0) else PyUnicode_DecodeASCII(out, m, NULL)
        return canon, PyBytes_FromStringAndSize(<char *>buf, 4)
    if inet_pton(AF_INET6, p, buf) == 1:
        if memcmp(buf, b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff", 12) == 0:
            m = _ipv4_text(buf + 12, out)
            return PyUnicode_DecodeASCII(out, m, NULL), PyBytes_FromStringAndSize(<char *>buf + 12, 4)
        inet_ntop(AF_INET6, buf, out, 64)
        return out.decode("ascii"), PyBytes_FromStringAndSize(<char *>buf, 16)
    return None


cdef inline object _norm_id(object v):
    """Lower-cased and trimmed; None for empty and the all-zero id.  The str is reused when it is
    already normal (lower-case ASCII without surrounding spaces), as most identifiers are."""
    cdef Py_ssize_t n, k
    cdef const char *p
    cdef unsigned char c
    cdef bint clean = True
    if v is None:
        return None
    p = PyUnicode_AsUTF8AndSize(v, &n)
    if n == 0:
        return None
    for k in range(n):
        c = <unsigned char>p[k]
        if (65 <= c <= 90) or c >= 128 or c <= 32:
            clean = False
            break
    if not clean:
        v = (<str>v).strip().lower()
        if not v:
            return None
        p = PyUnicode_AsUTF8AndSize(v, &n)
    if n == 36 and memcmp(p, b"00000000-0000-0000-0000-000000000000", 36) == 0:
        return None
    return v


cdef object _major_minor(str version):
    cdef list parts = version.strip().split(".")
    return f"{parts[0]}.{parts[1] if len(parts) > 1 and parts[1] else '0'}"


cdef dict _ua_cache = {}
# One buffer for building fingerprints, reused by every call (the GIL serialises them); its size is
# bounded by the field limits of unmo.model.
cdef unmo_wbuf _FPBUF = unmo_wbuf(NULL, 0, 0)
# The same for the segments of a request (copy.pyx seg_record): grows to the largest request's and stays.
cdef unmo_wbuf _SEGBUF = unmo_wbuf(NULL, 0, 0)


cdef object _ua_parts(object ua, object parse_ua):
    cdef object got = _ua_cache.get(ua)
    if got is None:
        if len(_ua_cache) >= 65536:
            _ua_cache.clear()
        got = parse_ua(ua)
        _ua_cache[ua] = got
    return got


cdef inline int _fp_part(unmo_wbuf *b, object part, bint sep) except -1:
    cdef Py_ssize_t n
    cdef const char *p
    if unmo_wbuf_reserve(b, 1) != 0:
        raise MemoryError("fingerprint")
    if sep:
        unmo_put_bytes(b, b"\x1f", 1)
    if part is None:
        if unmo_wbuf_reserve(b, 1) != 0:
            raise MemoryError("fingerprint")
        unmo_put_bytes(b, b"\x00", 1)
        return 0
    p = PyUnicode_AsUTF8AndSize(part, &n)
    if unmo_wbuf_reserve(b, <size_t>n) != 0:
        raise MemoryError("fingerprint")
    unmo_put_bytes(b, p, <size_t>n)
    return 0


cdef uint64_t _fingerprint(unmo_wbuf *b, object ip, object ua, object os, object osv, object model,
                           object parse_ua) except? 0:
    """XXH64 of (ip, os, os major.minor, model) joined by U+001F, None as U+0000: the same value as
    unmo.ingest.fingerprint.fingerprint_hash, hashed from a reused C buffer."""
    cdef Py_ssize_t n
    cdef const char *p
    if ip is None:
        return 0
    p = PyUnicode_AsUTF8AndSize(ip, &n)
    return _fingerprint_span(b, p, n, ua, os, osv, model, parse_ua)


cdef uint64_t _fingerprint_span(unmo_wbuf *b, const char *ip, Py_ssize_t ip_n, object ua, object os, object osv,
                                object model, object parse_ua) except? 0:
    """_fingerprint of the canonical IP text at ip (ip_n bytes)."""
    cdef object ua_os = None, ua_ver = None, ua_model = None
    cdef uint64_t h
    if ua is not None and (os is None or osv is None or model is None):
        ua_os, ua_ver, ua_model = _ua_parts(ua, parse_ua)
    b.len = 0
    if unmo_wbuf_reserve(b, <size_t>ip_n) != 0:
        raise MemoryError("fingerprint")
    unmo_put_bytes(b, ip, <size_t>ip_n)
    _fp_part(b, (<str>os).strip().lower() if os else ua_os, True)
    _fp_part(b, _major_minor(osv) if osv else ua_ver, True)
    _fp_part(b, (<str>model).strip().lower() if model else ua_model, True)
    h = unmo_xxh64(b.data, b.len, _FP_SEED)
    return h if h != 0 else 1


def build_columns(list records, list index, list raws, bint msgpack, int64_t skew, int64_t min_ts,
                  int64_t future_limit, Py_ssize_t max_props, object helpers):
    """Validate typed records and build their columns.

    ``records`` are msgspec-decoded unmo.model.Record objects, ``index`` their
    positions in the request, ``raws`` their raw bytes.  ``helpers`` gives
    parse_ua(ua), referrer_click_id(referrer), has_nul(record) -> path and
    props_from_msgpack(raw) -> JSON text or None.  Returns ``(columns, errors, arrays)``:
    columns is a dict of Batch's list fields (record_id, campaign) and its
    segments (every other column of a record is only in its segment:
    unmo.ingest.batch.SEGMENT_ONLY), errors a list of ``(index, code, record)``,
    arrays the numeric columns as Batch.arrays() gives them.
    """
    cdef Py_ssize_t i, n = len(records), j, plen
    cdef object rec, dev, camp, rid, v, ip, props, rev, cur, ua, typ, ts_obj, parsed, praw, name, dip, referrer
    cdef object dos = None, dosv = None, dmodel = None, dplat
    cdef bint fast, fast_dev, fast_camp
    cdef bint found
    cdef int bad_props
    cdef int kind
    cdef int64_t ts
    cdef uint64_t h1, h2, first, hh, r1, r2
    cdef bytes packed_b
    cdef Py_buffer view
    cdef const unsigned char *pp

    parse_ua, click_id_of, has_nul, props_from_msgpack = helpers

    out_rid = []
    out_camp = {f: [] for f in _CAMPAIGN_FIELDS}
    errors = []
    # the numeric columns, filled in place (no Python int a value)
    a_kind = np.empty(n, dtype=np.uint8); a_ts = np.empty(n, dtype=np.int64)
    a_h1 = np.empty(n, dtype=np.uint64); a_h2 = np.empty(n, dtype=np.uint64)
    a_dev = np.empty((n, 5), dtype=np.uint64); a_fp = np.empty(n, dtype=np.uint64)
    a_r1 = np.empty(n, dtype=np.uint64); a_r2 = np.empty(n, dtype=np.uint64)
    a_key = np.empty(n, dtype=np.int64)
    a_index = np.empty(n, dtype=np.int32)
    cdef int64_t[::1] m_key = a_key
    cdef int32_t[::1] m_index = a_index
    cdef uint8_t[::1] m_kind = a_kind
    cdef int64_t[::1] m_ts = a_ts
    cdef uint64_t[::1] m_h1 = a_h1, m_h2 = a_h2, m_fp = a_fp, m_r1 = a_r1, m_r2 = a_r2
    cdef uint64_t[:, ::1] m_dev = a_dev
    cdef Py_ssize_t g = 0  # good records so far
    cdef uint64_t fp
    cdef list ids = [None] * 5   # the record's normalised device ids
    cdef list camp_lists = [out_camp[f] for f in _CAMPAIGN_FIELDS]
    cdef uint64_t hashes[5]
    # each good record's SEGMENT_COLUMNS, binary COPY encoded (copy.pyx seg_record)
    a_seg = np.empty(n + 1, dtype=np.int64)
    cdef int64_t[::1] m_seg = a_seg
    m_seg[0] = 0
    _SEGBUF.len = 0

    for i in range(n):
        rec = records[i]
        fast = Py_TYPE(rec) == _REC_T
        typ = _slot(rec, _R_TYPE) if fast else rec.type
        if typ == "click":
            kind = KIND_CLICK
        elif typ == "impression":
            kind = KIND_IMPRESSION
        elif typ == "install":
            kind = KIND_INSTALL
        elif typ == "open":
            kind = KIND_OPEN
        else:
            kind = KIND_EVENT
        # U+0000: PostgreSQL text cannot hold it.  JSON spells it \u0000; msgpack
        # strings may carry it raw, so every msgpack record is checked.
        if msgpack:
            if has_nul(rec) is not None:
                errors.append((index[i], ERR_NUL, rec))
                continue
        else:
            PyObject_GetBuffer(raws[i], &view, PyBUF_SIMPLE)
            found = memmem(view.buf, view.len, b"\\u0000", 6) != NULL
            PyBuffer_Release(&view)
            if found and has_nul(rec) is not None:
                errors.append((index[i], ERR_NUL, rec))
                continue
        ts_obj = _slot(rec, _R_TS) if fast else rec.ts
        ts = _ts_ms(ts_obj)
        if ts < min_ts:
            errors.append((index[i], ERR_TS_RANGE, rec))
            continue
        ts += skew
        if ts > future_limit:
            errors.append((index[i], ERR_TS_FUTURE, rec))
            continue
        dev = _slot(rec, _R_DEVICE) if fast else rec.device
        camp = _slot(rec, _R_CAMPAIGN) if fast else rec.campaign
        fast_dev = dev is not None and Py_TYPE(dev) == _DEV_T
        fast_camp = camp is not None and Py_TYPE(camp) == _CAMP_T
        name = _slot(rec, _R_NAME) if fast else rec.name
        if kind <= KIND_IMPRESSION and (camp is None or not (_slot(camp, _C_NETWORK) if fast_camp else camp.network)):
            errors.append((index[i], ERR_NETWORK, rec))
            continue
        if kind == KIND_EVENT and not name:
            errors.append((index[i], ERR_NAME, rec))
            continue
        rev = _slot(rec, _R_REVENUE) if fast else rec.revenue
        cur = _slot(rec, _R_CURRENCY) if fast else rec.currency
        if rev is not None:
            if not (-1.7976931348623157e308 <= <double>rev <= 1.7976931348623157e308):
                errors.append((index[i], ERR_REVENUE, rec))
                continue
            cur = (cur or "USD").upper()
        if cur is not None:
            cur = (<str>cur).upper()
            if len(<str>cur) != 3 or not (<str>cur).isalpha() or not (<str>cur).isascii():
                errors.append((index[i], ERR_CURRENCY, rec))
                continue
        ip = None
        packed_b = None
        dip = None if dev is None else _slot(dev, _D_IP) if fast_dev else dev.ip
        if dip is not None:
            parsed = _canonical_ip(dip)
            if parsed is None:
                errors.append((index[i], ERR_IP, rec))
                continue
            ip, packed_b = parsed
        props = None
        praw = _slot(rec, _R_PROPERTIES) if fast else rec.properties
        PyObject_GetBuffer(praw, &view, PyBUF_SIMPLE)
        pp = <const unsigned char *>view.buf
        plen = view.len
        bad_props = 0
        if plen and not (plen == 4 and memcmp(pp, b"null", 4) == 0) and not (plen == 1 and pp[0] == 0xC0):
            if plen > max_props:
                bad_props = ERR_PROPS_SIZE
            elif not msgpack:
                j = 0
                while j < plen and (pp[j] == 32 or pp[j] == 9 or pp[j] == 10 or pp[j] == 13):
                    j += 1
                if j == plen or pp[j] != 123 or memmem(pp, plen, b"\\u0000", 6) != NULL:  # '{'
                    bad_props = ERR_PROPS
                else:
                    props = PyUnicode_DecodeUTF8(<const char *>pp, plen, NULL)
            else:
                props = True  # decoded below, outside the buffer
        PyBuffer_Release(&view)
        if bad_props:
            errors.append((index[i], bad_props, rec))
            continue
        if props is True:
            props = props_from_msgpack(praw)
            if props is None:
                errors.append((index[i], ERR_PROPS, rec))
                continue

        # -- good: append its columns
        rid = _slot(rec, _R_ID) if fast else rec.id
        h1 = hash_str(rid, 0)
        h2 = hash_str(rid, _ID_SEED_2)
        first = 0
        for j in range(5):
            v = (None if dev is None else _norm_id(_slot(dev, _D_IDS[j]) if fast_dev
                                                   else getattr(dev, _DEVICE_FIELDS[j])))
            ids[j] = v
            if v is not None:
                hashes[j] = hash_str(v, _DEV_SEED + j)
                if first == 0:
                    first = hashes[j]
            else:
                hashes[j] = 0
        for j in range(5):
            m_dev[g, j] = hashes[j]
        hh = first if first != 0 else ((h1 ^ h2) if (h1 ^ h2) != 0 else 1)
        m_key[g] = <int64_t>hh
        m_index[g] = <int32_t>index[i]
        out_rid.append(rid)
        if dev is not None:
            if fast_dev:
                ua = _slot(dev, _D_UA); dos = _slot(dev, _D_OS); dosv = _slot(dev, _D_OSV)
                dmodel = _slot(dev, _D_MODEL); dplat = _slot(dev, _D_PLATFORM)
            else:
                ua = dev.ua; dos = dev.os; dosv = dev.os_version; dmodel = dev.model; dplat = dev.platform
        else:
            ua = dos = dosv = dmodel = dplat = None
        for j in range(5):
            (<list>camp_lists[j]).append(None if camp is None else _slot(camp, _C_FIELDS[j]) if fast_camp
                                         else getattr(camp, _CAMPAIGN_FIELDS[j]))
        referrer = v = _slot(rec, _R_REFERRER) if fast else rec.referrer
        r1 = r2 = 0
        if kind == KIND_INSTALL and v is not None:
            v = click_id_of(v)
            if v is not None:
                r1 = hash_str(v, 0)
                r2 = hash_str(v, _ID_SEED_2)
        m_r1[g] = r1
        m_r2[g] = r2
        if kind <= KIND_IMPRESSION:
            fp = _fingerprint(&_FPBUF, ip, ua, None, None, None, parse_ua)
        elif kind == KIND_INSTALL and dev is not None:
            fp = _fingerprint(&_FPBUF, ip, ua, dos, dosv, dmodel, parse_ua)
        else:
            fp = 0
        m_fp[g] = fp
        m_kind[g] = <uint8_t>kind
        m_ts[g] = ts
        m_h1[g] = h1
        m_h2[g] = h2
        seg_record(&_SEGBUF, kind, rid, ts, ids[0], ids[1], ids[2], ids[3], ids[4], packed_b, ua, dplat, dos,
                   dosv, dmodel, referrer, name, rev, cur, props, fp)
        g += 1
        m_seg[g] = <int64_t>_SEGBUF.len

    columns = {
        "record_id": out_rid, "campaign": out_camp,
        "segs": [(PyBytes_FromStringAndSize(_SEGBUF.data, <Py_ssize_t>_SEGBUF.len), a_seg[:g + 1])],
    }
    arrays = {"index": a_index[:g], "kind": a_kind[:g], "ts": a_ts[:g], "id_h1": a_h1[:g], "id_h2": a_h2[:g],
              "dev": a_dev[:g], "fp": a_fp[:g], "ref_h1": a_r1[:g], "ref_h2": a_r2[:g], "device_key": a_key[:g]}
    return columns, errors, arrays


def campaign_refs(const uint8_t[::1] kind, list c0, list c1, list c2, list c3, list c4, dict refs,
                  list campaigns):
    """int32 column of campaign refs: each touch's (network, campaign, adset, ad, site) interned in ``refs``
    (tuple -> index into ``campaigns``, both grown here), -1 for non-touches and touches without a network
    (unmo.kernel.AppKernel.campaign_ref, one tuple lookup a touch instead of a Python loop)."""
    cdef Py_ssize_t i, n = kind.shape[0]
    cdef object key, got
    out = np.full(n, -1, dtype=np.int32)
    cdef int32_t[::1] o = out
    for i in range(n):
        if kind[i] > KIND_IMPRESSION:
            continue
        if c0[i] is None:
            continue
        key = (c0[i], c1[i], c2[i], c3[i], c4[i])
        got = refs.get(key)
        if got is None:
            got = len(campaigns)
            campaigns.append(key)
            refs[key] = got
        o[i] = <int32_t>got
    return out
