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


cdef inline uint64_t _nz(uint64_t h):
    return h if h != 0 else 1


cdef object _canonical_ip(str text):
    """(canonical text, packed bytes) of an IPv4/IPv6 address (::ffff:a.b.c.d is a.b.c.d), or None."""
    cdef Py_ssize_t n
    cdef const char *p
    cdef unsigned char buf[16]
    cdef char out[64]
    cdef bytes s
    if text[:1].isspace() or text[len(text) - 1:].isspace():
        text = text.strip()
    s = text.encode("utf-8", "surrogatepass")
    p = s
    if inet_pton(AF_INET, p, buf) == 1:
        inet_ntop(AF_INET, buf, out, 64)
        return out.decode("ascii"), PyBytes_FromStringAndSize(<char *>buf, 4)
    if inet_pton(AF_INET6, p, buf) == 1:
        if memcmp(buf, b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff", 12) == 0:
            inet_ntop(AF_INET, buf + 12, out, 64)
            return out.decode("ascii"), PyBytes_FromStringAndSize(<char *>buf + 12, 4)
        inet_ntop(AF_INET6, buf, out, 64)
        return out.decode("ascii"), PyBytes_FromStringAndSize(<char *>buf, 16)
    return None


cdef inline object _norm_id(object v):
    if v is None:
        return None
    v = (<str>v).strip().lower()
    if not v or v == _ZERO_ID:
        return None
    return v


cdef object _major_minor(str version):
    cdef list parts = version.strip().split(".")
    return f"{parts[0]}.{parts[1] if len(parts) > 1 and parts[1] else '0'}"


cdef uint64_t _fingerprint(object ip, object ua, object os, object osv, object model, object parse_ua) except? 0:
    """XXH64 of (ip, os, os major.minor, model); the same value as unmo.ingest.fingerprint."""
    cdef object ua_os = None, ua_ver = None, ua_model = None
    if ip is None:
        return 0
    if ua is not None and (os is None or osv is None or model is None):
        ua_os, ua_ver, ua_model = parse_ua(ua)
    parts = (
        ip,
        (<str>os).strip().lower() if os else ua_os,
        _major_minor(osv) if osv else ua_ver,
        (<str>model).strip().lower() if model else ua_model,
    )
    return _nz(hash_str("\x1f".join([p if p is not None else "\x00" for p in parts]), _FP_SEED))


def build_columns(list records, list index, list raws, bint msgpack, int64_t skew, int64_t min_ts,
                  int64_t future_limit, Py_ssize_t max_props, object helpers):
    """Validate typed records and build their columns.

    ``records`` are msgspec-decoded unmo.model.Record objects, ``index`` their
    positions in the request, ``raws`` their raw bytes.  ``helpers`` gives
    parse_ua(ua), referrer_click_id(referrer), has_nul(record) -> path and
    props_from_msgpack(raw) -> JSON text or None.  Returns ``(columns, errors)``:
    columns is a dict of lists keyed like unmo.ingest.batch.Batch's fields,
    errors a list of ``(index, code, record)``.
    """
    cdef Py_ssize_t i, n = len(records), j, plen
    cdef object rec, dev, camp, rid, v, ip, props, rev, cur, ua, typ, ts_obj, parsed
    cdef int kind
    cdef int64_t ts
    cdef uint64_t h1, h2, first, hh, r1, r2
    cdef bytes packed_b
    cdef const unsigned char[::1] pv
    cdef const unsigned char[::1] rv
    cdef const unsigned char *pp
    parse_ua, click_id_of, has_nul, props_from_msgpack = helpers

    out_index = []; out_kind = []; out_ts = []; out_rid = []; out_h1 = []; out_h2 = []
    out_dev = []; out_key = []; out_ip = []; out_packed = []; out_ua = []; out_platform = []
    out_os = []; out_osv = []; out_model = []; out_ref = []; out_r1 = []; out_r2 = []
    out_name = []; out_rev = []; out_cur = []; out_props = []; out_fp = []
    out_ids = {f: [] for f in _DEVICE_FIELDS}
    out_camp = {f: [] for f in _CAMPAIGN_FIELDS}
    errors = []
    cdef list ids_lists = [out_ids[f] for f in _DEVICE_FIELDS]
    cdef list camp_lists = [out_camp[f] for f in _CAMPAIGN_FIELDS]
    cdef uint64_t hashes[5]

    for i in range(n):
        rec = records[i]
        typ = rec.type
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
            rv = raws[i]
            if rv.shape[0] and memmem(&rv[0], rv.shape[0], b"\\u0000", 6) != NULL and has_nul(rec) is not None:
                errors.append((index[i], ERR_NUL, rec))
                continue
        ts_obj = rec.ts
        ts = _ts_ms(ts_obj)
        if ts < min_ts:
            errors.append((index[i], ERR_TS_RANGE, rec))
            continue
        ts += skew
        if ts > future_limit:
            errors.append((index[i], ERR_TS_FUTURE, rec))
            continue
        dev = rec.device
        camp = rec.campaign
        if kind <= KIND_IMPRESSION and (camp is None or not camp.network):
            errors.append((index[i], ERR_NETWORK, rec))
            continue
        if kind == KIND_EVENT and not rec.name:
            errors.append((index[i], ERR_NAME, rec))
            continue
        rev = rec.revenue
        cur = rec.currency
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
        if dev is not None and dev.ip is not None:
            parsed = _canonical_ip(dev.ip)
            if parsed is None:
                errors.append((index[i], ERR_IP, rec))
                continue
            ip, packed_b = parsed
        props = None
        pv = rec.properties
        plen = pv.shape[0]
        if plen and not (plen == 4 and memcmp(&pv[0], b"null", 4) == 0) and not (plen == 1 and pv[0] == 0xC0):
            if plen > max_props:
                errors.append((index[i], ERR_PROPS_SIZE, rec))
                continue
            if msgpack:
                props = props_from_msgpack(rec.properties)
                if props is None:
                    errors.append((index[i], ERR_PROPS, rec))
                    continue
            else:
                pp = &pv[0]
                j = 0
                while j < plen and (pp[j] == 32 or pp[j] == 9 or pp[j] == 10 or pp[j] == 13):
                    j += 1
                if j == plen or pp[j] != 123 or memmem(pp, plen, b"\\u0000", 6) != NULL:  # '{'
                    errors.append((index[i], ERR_PROPS, rec))
                    continue
                props = PyUnicode_DecodeUTF8(<const char *>pp, plen, NULL)

        # -- good: append its columns
        rid = rec.id
        h1 = hash_str(rid, 0)
        h2 = hash_str(rid, _ID_SEED_2)
        first = 0
        for j in range(5):
            v = _norm_id(getattr(dev, _DEVICE_FIELDS[j])) if dev is not None else None
            (<list>ids_lists[j]).append(v)
            if v is not None:
                hashes[j] = hash_str(v, _DEV_SEED + j)
                if first == 0:
                    first = hashes[j]
            else:
                hashes[j] = 0
        out_dev.append((hashes[0], hashes[1], hashes[2], hashes[3], hashes[4]))
        hh = first if first != 0 else ((h1 ^ h2) if (h1 ^ h2) != 0 else 1)
        out_key.append(<int64_t>hh)
        out_index.append(index[i])
        out_kind.append(kind)
        out_ts.append(ts)
        out_rid.append(rid)
        out_h1.append(h1)
        out_h2.append(h2)
        out_ip.append(ip)
        out_packed.append(packed_b)
        if dev is not None:
            ua = dev.ua
            out_ua.append(ua)
            out_platform.append(dev.platform)
            out_os.append(dev.os)
            out_osv.append(dev.os_version)
            out_model.append(dev.model)
        else:
            ua = None
            out_ua.append(None); out_platform.append(None); out_os.append(None)
            out_osv.append(None); out_model.append(None)
        for j in range(5):
            (<list>camp_lists[j]).append(getattr(camp, _CAMPAIGN_FIELDS[j]) if camp is not None else None)
        v = rec.referrer
        out_ref.append(v)
        r1 = r2 = 0
        if kind == KIND_INSTALL and v is not None:
            v = click_id_of(v)
            if v is not None:
                r1 = hash_str(v, 0)
                r2 = hash_str(v, _ID_SEED_2)
        out_r1.append(r1)
        out_r2.append(r2)
        out_name.append(rec.name)
        out_rev.append(rev)
        out_cur.append(cur)
        out_props.append(props)
        if kind <= KIND_IMPRESSION:
            out_fp.append(_fingerprint(ip, ua, None, None, None, parse_ua))
        elif kind == KIND_INSTALL and dev is not None:
            out_fp.append(_fingerprint(ip, ua, dev.os, dev.os_version, dev.model, parse_ua))
        else:
            out_fp.append(0)

    columns = {
        "index": out_index, "kind": out_kind, "ts": out_ts, "record_id": out_rid, "id_h1": out_h1,
        "id_h2": out_h2, "dev": out_dev, "device_key": out_key, "ids": out_ids, "ip": out_ip,
        "ip_packed": out_packed, "ua": out_ua, "platform": out_platform, "os": out_os,
        "os_version": out_osv, "model": out_model, "campaign": out_camp, "referrer": out_ref,
        "ref_h1": out_r1, "ref_h2": out_r2, "name": out_name, "revenue": out_rev, "currency": out_cur,
        "properties": out_props, "fp": out_fp,
    }
    return columns, errors
