# JSON body of POST /v1/batch -> batch columns in one pass, for the plain case.
#
# decode_json_columns parses the bytes straight into the columns that
# build_columns (columns.pyx) makes from msgspec's typed records: no Struct, no
# Raw, no Python object but the values that end up in a column.  It covers the
# common case only: a body that is valid JSON, within the limits, whose every
# record is good.  For anything else (malformed JSON, a record build_columns
# would refuse, a form it does not parse natively, a duplicate key, ...) it
# returns None and unmo.ingest.batch.decode_body takes the msgspec path, which
# words the errors.  So every check here either matches msgspec and
# build_columns exactly or refuses the body.

from libc.string cimport memcpy

cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil

cdef extern from "Python.h":
    object _list_new "PyList_New" (Py_ssize_t n)
    void _list_steal "PyList_SET_ITEM" (object lst, Py_ssize_t i, PyObject *o)
    ctypedef unsigned char Py_UCS1
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    Py_UCS1 *PyUnicode_1BYTE_DATA(object o)
    void *PyUnicode_DATA(object o)
    void Py_XDECREF(PyObject *o)
    void Py_INCREF(object o)
    double PyOS_string_to_double(const char *s, char **endptr, PyObject *overflow_exception) except? -1.0

cdef object _FAIL = object()   # "refuse the body" from the helpers that return a value

cdef enum:
    _SF_ESC = 1        # the string has a backslash escape
    _SF_NONASCII = 2   # ... a character beyond U+007F
    _SF_NUL = 4        # ... a \u0000

cdef enum:
    _MAX_DEPTH = 64    # nesting of skipped values (deeper: refused, msgspec words it)


cdef struct _JCtx:
    const unsigned char *s
    Py_ssize_t pos
    Py_ssize_t end
    unsigned char *scratch     # unescaped text of the last string (allocated on the first escape)
    # the last string scanned: its raw text (between the quotes), code points, _SF_* flags
    const unsigned char *sp
    Py_ssize_t sn
    Py_ssize_t chars
    int flags


# The object fields of a good record that are read after the decode, by position in _NumRow.obj (their
# lists are made at the end, each in one allocation).  The record's other fields go into its segment
# while it is parsed, straight from the body's bytes where they can (no object for them).
cdef enum:
    _C_RID = 0
    _C_CAMP = 1       # .. 5: network, campaign, adset, ad, site
    _NCOLS = 6


cdef struct _NumRow:
    int64_t ts                 # as sent; the skew is added once sent_at is known
    uint64_t h1, h2, fp, r1, r2
    uint64_t dev[5]
    int64_t key
    Py_ssize_t ts_at           # where the ts value of its segment is in _SEGBUF (seg_patch_ts)
    Py_ssize_t seg_end         # where its segment ends in _SEGBUF
    uint8_t kind
    PyObject *obj[_NCOLS]      # strong references until moved into the column lists


cdef inline int _peek(_JCtx *c) noexcept nogil:
    """The next byte after whitespace (c.pos moved to it), or -1 at the end."""
    cdef const unsigned char *s = c.s
    cdef Py_ssize_t i = c.pos, end = c.end
    while i < end and (s[i] == 32 or s[i] == 10 or s[i] == 13 or s[i] == 9):
        i += 1
    c.pos = i
    return s[i] if i < end else -1


cdef inline bint _lit(_JCtx *c, const char *text, Py_ssize_t n) noexcept nogil:
    if c.pos + n <= c.end and memcmp(c.s + c.pos, text, n) == 0:
        c.pos += n
        return True
    return False


cdef inline int _hex4(const unsigned char *p) noexcept nogil:
    cdef int v = 0, k, d
    cdef unsigned char ch
    for k in range(4):
        ch = p[k]
        if 48 <= ch <= 57:
            d = ch - 48
        elif 97 <= ch <= 102:
            d = ch - 87
        elif 65 <= ch <= 70:
            d = ch - 55
        else:
            return -1
        v = v * 16 + d
    return v


cdef inline int _utf8_len(const unsigned char *p, Py_ssize_t avail) noexcept nogil:
    """Length of the well-formed UTF-8 sequence at p (Unicode table 3-7), 0 if ill-formed."""
    cdef unsigned char b0 = p[0], b1
    if 0xC2 <= b0 <= 0xDF:
        if avail < 2 or (p[1] & 0xC0) != 0x80:
            return 0
        return 2
    if 0xE0 <= b0 <= 0xEF:
        if avail < 3:
            return 0
        b1 = p[1]
        if b0 == 0xE0:
            if not (0xA0 <= b1 <= 0xBF):
                return 0
        elif b0 == 0xED:
            if not (0x80 <= b1 <= 0x9F):
                return 0
        elif (b1 & 0xC0) != 0x80:
            return 0
        if (p[2] & 0xC0) != 0x80:
            return 0
        return 3
    if 0xF0 <= b0 <= 0xF4:
        if avail < 4:
            return 0
        b1 = p[1]
        if b0 == 0xF0:
            if not (0x90 <= b1 <= 0xBF):
                return 0
        elif b0 == 0xF4:
            if not (0x80 <= b1 <= 0x8F):
                return 0
        elif (b1 & 0xC0) != 0x80:
            return 0
        if (p[2] & 0xC0) != 0x80 or (p[3] & 0xC0) != 0x80:
            return 0
        return 4
    return 0


cdef inline uint64_t _special_bytes(uint64_t w) noexcept nogil:
    """The high bit of each byte of w that is '"', '\\', < 0x20 or >= 0x80 (exact up to the lowest one)."""
    cdef uint64_t q = w ^ 0x2222222222222222ULL, b = w ^ 0x5C5C5C5C5C5C5C5CULL
    return ((((q - 0x0101010101010101ULL) & ~q) | ((b - 0x0101010101010101ULL) & ~b)
             | ((w - 0x2020202020202020ULL) & ~w) | w) & 0x8080808080808080ULL)


cdef int _scan_string(_JCtx *c) noexcept nogil:
    """c.pos at an opening quote: check the string (escapes, surrogate pairs, UTF-8, no control
    characters), count its code points; c.sp/c.sn/c.chars/c.flags describe it and c.pos is after the
    closing quote.  0, or -1 when it is not a valid JSON string."""
    cdef const unsigned char *s = c.s
    cdef Py_ssize_t i = c.pos + 1, end = c.end, chars = 0
    cdef int flags = 0, cp, lo, n
    cdef unsigned char ch
    cdef uint64_t w, hit
    cdef int skip
    c.sp = s + i
    while True:
        # 8 bytes at a time up to the first that is not a plain character ('"', '\\', a control
        # character, a byte >= 0x80): the lowest flagged byte of the word is exact (the borrows of the
        # subtractions only flag bytes above a flagged one)
        while i + 8 <= end:
            memcpy(&w, s + i, 8)
            hit = _special_bytes(w)
            if hit:
                skip = __builtin_ctzll(hit) >> 3
                i += skip
                chars += skip
                break
            i += 8
            chars += 8
        if i >= end:
            return -1
        ch = s[i]
        if ch == 34:  # '"'
            break
        if 32 <= ch < 128 and ch != 92:
            i += 1
            chars += 1
        elif ch == 92:  # '\'
            flags |= _SF_ESC
            if i + 1 >= end:
                return -1
            ch = s[i + 1]
            if ch == 117:  # 'u'
                if i + 6 > end:
                    return -1
                cp = _hex4(s + i + 2)
                if cp < 0:
                    return -1
                i += 6
                if 0xD800 <= cp <= 0xDBFF:
                    if i + 6 > end or s[i] != 92 or s[i + 1] != 117:
                        return -1
                    lo = _hex4(s + i + 2)
                    if lo < 0xDC00 or lo > 0xDFFF:
                        return -1
                    i += 6
                elif 0xDC00 <= cp <= 0xDFFF:
                    return -1
                if cp == 0:
                    flags |= _SF_NUL
                elif cp >= 128:
                    flags |= _SF_NONASCII
                chars += 1
            elif ch == 34 or ch == 92 or ch == 47 or ch == 98 or ch == 102 or ch == 110 or ch == 114 or ch == 116:
                i += 2
                chars += 1
            else:
                return -1
        elif ch < 32:
            return -1
        else:
            n = _utf8_len(s + i, end - i)
            if n == 0:
                return -1
            flags |= _SF_NONASCII
            i += n
            chars += 1
    c.sn = (s + i) - c.sp
    c.chars = chars
    c.flags = flags
    c.pos = i + 1
    return 0


cdef Py_ssize_t _unescape(const unsigned char *p, Py_ssize_t n, unsigned char *out) noexcept nogil:
    """UTF-8 of a string's raw text already checked by _scan_string; returns its length (<= n)."""
    cdef Py_ssize_t i = 0, m = 0
    cdef int cp, lo
    cdef unsigned char ch
    while i < n:
        ch = p[i]
        if ch != 92:
            out[m] = ch
            m += 1
            i += 1
            continue
        ch = p[i + 1]
        if ch == 117:
            cp = _hex4(p + i + 2)
            i += 6
            if 0xD800 <= cp <= 0xDBFF:
                lo = _hex4(p + i + 2)
                i += 6
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
            if cp < 0x80:
                out[m] = <unsigned char>cp
                m += 1
            elif cp < 0x800:
                out[m] = <unsigned char>(0xC0 | (cp >> 6))
                out[m + 1] = <unsigned char>(0x80 | (cp & 0x3F))
                m += 2
            elif cp < 0x10000:
                out[m] = <unsigned char>(0xE0 | (cp >> 12))
                out[m + 1] = <unsigned char>(0x80 | ((cp >> 6) & 0x3F))
                out[m + 2] = <unsigned char>(0x80 | (cp & 0x3F))
                m += 3
            else:
                out[m] = <unsigned char>(0xF0 | (cp >> 18))
                out[m + 1] = <unsigned char>(0x80 | ((cp >> 12) & 0x3F))
                out[m + 2] = <unsigned char>(0x80 | ((cp >> 6) & 0x3F))
                out[m + 3] = <unsigned char>(0x80 | (cp & 0x3F))
                m += 4
        else:
            if ch == 98:
                ch = 8
            elif ch == 102:
                ch = 12
            elif ch == 110:
                ch = 10
            elif ch == 114:
                ch = 13
            elif ch == 116:
                ch = 9
            out[m] = ch  # '"', '\' and '/' stand for themselves
            m += 1
            i += 2
    return m


cdef int _scan_number(_JCtx *c, bint *is_int) noexcept nogil:
    """c.pos at '-' or a digit: a JSON number (RFC 8259 grammar); c.pos after it.  0 or -1."""
    cdef const unsigned char *s = c.s
    cdef Py_ssize_t i = c.pos, end = c.end
    is_int[0] = True
    if i < end and s[i] == 45:  # '-'
        i += 1
    if i >= end:
        return -1
    if s[i] == 48:  # '0'
        i += 1
    elif 49 <= s[i] <= 57:
        while i < end and 48 <= s[i] <= 57:
            i += 1
    else:
        return -1
    if i < end and s[i] == 46:  # '.'
        is_int[0] = False
        i += 1
        if i >= end or not (48 <= s[i] <= 57):
            return -1
        while i < end and 48 <= s[i] <= 57:
            i += 1
    if i < end and (s[i] == 101 or s[i] == 69):  # 'e' 'E'
        is_int[0] = False
        i += 1
        if i < end and (s[i] == 43 or s[i] == 45):
            i += 1
        if i >= end or not (48 <= s[i] <= 57):
            return -1
        while i < end and 48 <= s[i] <= 57:
            i += 1
    c.pos = i
    return 0


cdef int _skip(_JCtx *c, int depth) noexcept nogil:
    """Skip any JSON value (checked as msgspec would read it); 0 or -1."""
    cdef int ch = _peek(c), close, nx
    cdef bint is_int
    if ch == 34:
        return _scan_string(c)
    if ch == 123 or ch == 91:  # '{' '['
        if depth >= _MAX_DEPTH:
            return -1
        close = 125 if ch == 123 else 93
        c.pos += 1
        if _peek(c) == close:
            c.pos += 1
            return 0
        while True:
            if ch == 123:
                if _peek(c) != 34 or _scan_string(c) != 0 or _peek(c) != 58:  # ':'
                    return -1
                c.pos += 1
            if _skip(c, depth + 1) != 0:
                return -1
            nx = _peek(c)
            if nx == 44:  # ','
                c.pos += 1
                continue
            if nx == close:
                c.pos += 1
                return 0
            return -1
    if ch == 116:
        return 0 if _lit(c, "true", 4) else -1
    if ch == 102:
        return 0 if _lit(c, "false", 5) else -1
    if ch == 110:
        return 0 if _lit(c, "null", 4) else -1
    if ch == 45 or 48 <= ch <= 57:
        return _scan_number(c, &is_int)
    return -1


cdef inline int _days_in_month(int64_t y, int m) noexcept nogil:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


cdef inline int _dig(const unsigned char *p, int n) noexcept nogil:
    cdef int v = 0, k
    for k in range(n):
        if not (48 <= p[k] <= 57):
            return -1
        v = v * 10 + (p[k] - 48)
    return v


cdef int _rfc3339(const unsigned char *p, Py_ssize_t n, int64_t *out) noexcept nogil:
    """Epoch ms of YYYY-MM-DD(T|t| )HH:MM:SS[.f{1,6}](Z|z|+HH:MM|-HH:MM), as msgspec's datetime and
    _ts_ms / to_ms give it; -1 for any other text (more fraction digits, offsets without a colon, ...)."""
    cdef int y, mo, d, h, mi, sec, us = 0, k = 0, oh = 0, om = 0, sign = 0
    cdef Py_ssize_t i
    if n < 20 or p[4] != 45 or p[7] != 45 or p[13] != 58 or p[16] != 58:
        return -1
    if not (p[10] == 84 or p[10] == 116 or p[10] == 32):
        return -1
    y = _dig(p, 4); mo = _dig(p + 5, 2); d = _dig(p + 8, 2)
    h = _dig(p + 11, 2); mi = _dig(p + 14, 2); sec = _dig(p + 17, 2)
    if y < 1 or y > 9998 or mo < 1 or mo > 12 or d < 1 or d > _days_in_month(y, mo):
        return -1
    if h < 0 or h > 23 or mi < 0 or mi > 59 or sec < 0 or sec > 59:
        return -1
    i = 19
    if p[i] == 46:  # '.'
        i += 1
        while i < n and 48 <= p[i] <= 57:
            if k == 6:
                return -1
            us = us * 10 + (p[i] - 48)
            k += 1
            i += 1
        if k == 0:
            return -1
        while k < 6:
            us *= 10
            k += 1
    if i >= n:
        return -1
    if p[i] == 90 or p[i] == 122:  # 'Z' 'z'
        i += 1
    elif p[i] == 43 or p[i] == 45:
        if n - i != 6 or p[i + 3] != 58:
            return -1
        sign = 1 if p[i] == 43 else -1
        oh = _dig(p + i + 1, 2); om = _dig(p + i + 4, 2)
        if oh < 0 or oh > 23 or om < 0 or om > 59:
            return -1
        i += 6
    else:
        return -1
    if i != n:
        return -1
    out[0] = (unmo_days_from_civil(y, mo, d) * 86400000 + h * 3600000 + mi * 60000 + sec * 1000 + us // 1000
              - sign * (oh * 3600000 + om * 60000))
    return 0


cdef inline int _need_scratch(_JCtx *c) noexcept nogil:
    """The buffer unescaped strings are written to: as long as the body, since no string grows."""
    if c.scratch == NULL:
        c.scratch = <unsigned char *>malloc(c.end + 8)
        if c.scratch == NULL:
            return -1
    return 0


cdef int _ts_value(_JCtx *c, int64_t *out) noexcept nogil:
    """A timestamp at c.pos: JSON integer (epoch ms, up to 18 digits) or RFC 3339 string.  0 or -1."""
    cdef int ch = _peek(c)
    cdef bint is_int
    cdef Py_ssize_t start, k
    cdef int64_t v = 0
    cdef bint neg
    if ch == 34:
        if _scan_string(c) != 0 or (c.flags & (_SF_NUL | _SF_NONASCII)):
            return -1
        if c.flags & _SF_ESC:  # msgspec reads the escaped text (a client that escapes every character)
            if _need_scratch(c) != 0:
                return -1
            return _rfc3339(c.scratch, _unescape(c.sp, c.sn, c.scratch), out)
        return _rfc3339(c.sp, c.sn, out)
    if ch == 45 or 48 <= ch <= 57:
        start = c.pos
        if _scan_number(c, &is_int) != 0 or not is_int:
            return -1
        neg = c.s[start] == 45
        k = start + 1 if neg else start
        if c.pos - k > 18:
            return -1
        while k < c.pos:
            v = v * 10 + (c.s[k] - 48)
            k += 1
        out[0] = -v if neg else v
        return 0
    return -1


cdef object _str_value(_JCtx *c, Py_ssize_t min_chars, Py_ssize_t max_chars, bint nullable):
    """A string field at c.pos: its str (min_chars..max_chars code points, no U+0000), None for a
    null when nullable, else _FAIL."""
    cdef int ch = _peek(c)
    if ch == 110:
        if nullable and _lit(c, "null", 4):
            return None
        return _FAIL
    if ch != 34 or _scan_string(c) != 0:
        return _FAIL
    return _str_from_scan(c, min_chars, max_chars)


cdef object _str_from_scan(_JCtx *c, Py_ssize_t min_chars, Py_ssize_t max_chars):
    """The str of the string just scanned (c.sp ...), or _FAIL."""
    cdef Py_ssize_t m
    if (c.flags & _SF_NUL) or c.chars < min_chars or c.chars > max_chars:
        return _FAIL
    if c.flags & _SF_ESC:
        if _need_scratch(c) != 0:
            raise MemoryError("decode_json_columns")
        m = _unescape(c.sp, c.sn, c.scratch)
        return PyUnicode_DecodeUTF8(<char *>c.scratch, m, NULL)
    return PyUnicode_DecodeUTF8(<char *>c.sp, c.sn, NULL)


# Strings of the columns whose values repeat (user agents, OS, models, campaign fields, event names, ...):
# one str per distinct short ASCII text, kept across bodies in a direct-mapped table, instead of a new
# str per record.  (A str is immutable: sharing it changes no value.)
cdef enum:
    _CACHE_SLOTS = 4096
    _CACHE_MAX_LEN = 256

cdef struct _CacheEnt:
    uint64_t h
    Py_ssize_t n
    PyObject *s   # a strong reference, or NULL

cdef _CacheEnt _STR_CACHE[_CACHE_SLOTS]


cdef inline uint64_t _text_hash(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    """A quick hash for the cache's slots (a word at a time, the tail as the last 8 bytes; collisions
    only cost a new str), finished with MurmurHash3's fmix64: the slot is the low bits, and a product
    carries a difference only upwards, so without it texts that differ in their last bytes ("ad-1" ...
    "ad-9", "net-campaign-1" ... "-22") shared one slot and replaced each other."""
    cdef uint64_t h = <uint64_t>n * 0x9E3779B97F4A7C15ULL, w
    cdef Py_ssize_t k = 0
    if n < 8:
        w = 0
        for k in range(n):
            w |= (<uint64_t>p[k]) << (8 * k)
        h ^= w
    else:
        while k + 8 <= n:
            memcpy(&w, p + k, 8)
            h = (h ^ w) * 0xBF58476D1CE4E5B9ULL
            h ^= h >> 31
            k += 8
        if k < n:
            memcpy(&w, p + n - 8, 8)
            h ^= w
    h ^= h >> 33
    h *= 0xFF51AFD7ED558CCDULL
    h ^= h >> 33
    h *= 0xC4CEB9FE1A85EC53ULL
    return h ^ (h >> 33)


cdef object _cached_str(_JCtx *c, Py_ssize_t max_chars):
    """Like _str_value(c, 0, max_chars, True), the str shared through _STR_CACHE when plain ASCII."""
    cdef int ch = _peek(c)
    cdef uint64_t h
    cdef _CacheEnt *e
    cdef object v
    if ch != 34:
        return _str_value(c, 0, max_chars, True)
    if _scan_string(c) != 0:
        return _FAIL
    if c.flags != 0 or c.sn > _CACHE_MAX_LEN:
        return _str_from_scan(c, 0, max_chars)
    if c.sn > max_chars:
        return _FAIL
    h = _text_hash(c.sp, c.sn)
    e = &_STR_CACHE[h & (_CACHE_SLOTS - 1)]
    if e.s != NULL and e.h == h and e.n == c.sn and memcmp(PyUnicode_DATA(<object>e.s), c.sp, c.sn) == 0:
        return <object>e.s
    v = PyUnicode_DecodeUTF8(<char *>c.sp, c.sn, NULL)
    Py_XDECREF(e.s)
    Py_INCREF(v)
    e.s = <PyObject *>v
    e.h = h
    e.n = c.sn
    return v


cdef inline int _ascii_lower(const unsigned char *p, Py_ssize_t n, Py_UCS1 *out) noexcept nogil:
    """out = p lower-cased (p is ASCII); -1 when p has a byte <= 0x20 or 0x7F (8 bytes at a time)."""
    cdef Py_ssize_t k = 0
    cdef uint64_t w, t, up, bad
    cdef unsigned char b
    while k + 8 <= n:
        memcpy(&w, p + k, 8)
        bad = (w - 0x2121212121212121ULL) & ~w          # a byte < 0x21 (exact as "any": bytes are < 0x80)
        t = w ^ 0x7F7F7F7F7F7F7F7FULL
        bad |= (t - 0x0101010101010101ULL) & ~t         # a 0x7F
        if bad & 0x8080808080808080ULL:
            return -1
        # 'A'..'Z': >= 0x41 and not >= 0x5B, per byte (no carries: bytes are < 0x80)
        up = (w + 0x3F3F3F3F3F3F3F3FULL) & ~(w + 0x2525252525252525ULL) & 0x8080808080808080ULL
        w |= up >> 2
        memcpy(out + k, &w, 8)
        k += 8
    while k < n:
        b = p[k]
        if b <= 32 or b == 127:
            return -1
        out[k] = b + 32 if 65 <= b <= 90 else b
        k += 1
    return 0


cdef int _slow_id(_Rec r, int j, object v) except -2:
    """Device id j of r as the str _norm_id made of it (None: absent)."""
    r.ids[j] = v
    if v is None:
        r.f.ids[j] = NULL
        r.f.idn[j] = -1
    else:
        r.f.ids[j] = PyUnicode_AsUTF8AndSize(v, &r.f.idn[j])
    return 0


cdef int _device_id(_JCtx *c, _Rec r, int j) except -2:
    """Device identifier j at c.pos into r, normalised as _norm_id does it: ASCII without spaces or control
    characters is lower-cased while it is copied into r.idb (no str); anything else is a str through
    _norm_id, kept in r.ids.  0, or -1 to refuse."""
    cdef int ch = _peek(c)
    cdef Py_ssize_t n
    cdef unsigned char *d
    cdef object v
    if ch != 34:
        v = _str_value(c, 0, 256, True)
        return -1 if v is _FAIL else _slow_id(r, j, _norm_id(v))
    if _scan_string(c) != 0:
        return -1
    n = c.sn
    if c.flags != 0:
        v = _str_from_scan(c, 0, 256)
        return -1 if v is _FAIL else _slow_id(r, j, _norm_id(v))
    if n > 256:
        return -1
    if n == 0 or (n == 36 and memcmp(c.sp, b"00000000-0000-0000-0000-000000000000", 36) == 0):
        return 0  # absent (reset left it so)
    d = r.idb + 256 * j
    if _ascii_lower(c.sp, n, <Py_UCS1 *>d) != 0:  # a space or a control character: strip() decides
        return _slow_id(r, j, _norm_id(_str_from_scan(c, 0, 256)))
    r.f.ids[j] = <const char *>d
    r.f.idn[j] = n
    return 0


cdef int _revenue_value(_JCtx *c, _Rec r) except -2:
    """The revenue at c.pos into r.f as msgspec gives it (null: none; an integer as an int converted, so -0
    is 0.0).  0, or -1 to refuse (also for what build_columns refuses: a number beyond the finite
    doubles)."""
    cdef int ch = _peek(c)
    cdef bint is_int
    cdef Py_ssize_t start, n
    cdef char buf[72]
    cdef char *endp
    cdef double v
    if ch == 110:
        return 0 if _lit(c, "null", 4) else -1
    if not (ch == 45 or 48 <= ch <= 57):
        return -1
    start = c.pos
    if _scan_number(c, &is_int) != 0:
        return -1
    n = c.pos - start
    if n > 64:
        return -1
    memcpy(buf, c.s + start, n)
    buf[n] = 0
    if is_int and n == 2 and buf[0] == 45 and buf[1] == 48:
        v = 0.0
    else:
        v = PyOS_string_to_double(buf, &endp, NULL)
        if endp != buf + n or not (-1.7976931348623157e308 <= v <= 1.7976931348623157e308):
            return -1
    r.f.has_revenue = True
    r.f.revenue = v
    return 0


cdef class _Rec:
    """The fields of the record being parsed (one object, reset per record)."""
    cdef int kind
    cdef int64_t ts
    cdef object rid, referrer, name, currency
    cdef object ip, ua, platform, os, osv, model   # ip: a str for _canonical_ip (not a plain dotted quad)
    cdef list ids        # a device id that needed _norm_id, as its str (else None)
    cdef list camp
    cdef SegSpans f      # device ids, packed IP, revenue and properties, as the segment takes them
    cdef unsigned char idb[5 * 256]   # the device ids lower-cased (f.ids points here)
    cdef Py_ssize_t ip_n              # > 0: ip_text (ip_n bytes) is a plain dotted quad, packed in ip_b
    cdef char ip_text[16]
    cdef unsigned char ip_b[4]
    cdef Py_ssize_t props_start, props_len

    def __cinit__(self):
        self.ids = [None] * 5
        self.camp = [None] * 5

    cdef inline void reset(self):
        cdef int j
        self.kind = 0
        self.rid = self.referrer = self.name = self.currency = None
        self.ip = self.ua = self.platform = self.os = self.osv = self.model = None
        for j in range(5):
            self.ids[j] = None
            self.camp[j] = None
            self.f.ids[j] = NULL
            self.f.idn[j] = -1
        self.f.packed = NULL
        self.f.packed_n = 0
        self.f.has_revenue = False
        self.f.revenue = 0.0
        self.f.props = NULL
        self.f.props_n = -1
        self.ip_n = 0
        self.props_start = -1
        self.props_len = 0


cdef inline bint _key(_JCtx *c, const char *name, Py_ssize_t n) noexcept nogil:
    return c.sn == n and memcmp(c.sp, name, n) == 0


cdef int _object_key(_JCtx *c) noexcept nogil:
    """At a key of an object (after '{' or ','): scan it and the ':' after it.  0, or -1 (also for a key
    with an escape: it could spell a known field)."""
    cdef Py_ssize_t i, k
    cdef uint64_t w, hit
    cdef bint done = False
    if _peek(c) != 34:
        return -1
    # a key of plain characters within 16 bytes (all known keys): found here, without _scan_string
    i = c.pos + 1
    k = i
    while k + 8 <= c.end and k < i + 16:
        memcpy(&w, c.s + k, 8)
        hit = _special_bytes(w)
        if hit:
            k += __builtin_ctzll(hit) >> 3
            if c.s[k] == 34:
                c.sp = c.s + i
                c.sn = k - i
                c.chars = c.sn
                c.flags = 0
                c.pos = k + 1
                done = True
            break
        k += 8
    if not done and (_scan_string(c) != 0 or (c.flags & _SF_ESC)):
        return -1
    if _peek(c) != 58:
        return -1
    c.pos += 1
    return 0


cdef int _object_next(_JCtx *c) noexcept nogil:
    """After a member: 1 for ',' (another member), 0 for the closing '}', -1 otherwise."""
    cdef int ch = _peek(c)
    if ch == 44:
        c.pos += 1
        return 1
    if ch == 125:
        c.pos += 1
        return 0
    return -1


cdef int _ip_value(_JCtx *c, _Rec r) except -2:
    """device.ip into r: a dotted quad sent as such is checked and packed here (r.ip_text, r.ip_b, as
    _canonical_ip does it), without an object; anything else is kept as a str for _canonical_ip (r.ip).
    0, or -1 to refuse."""
    cdef unsigned char buf[4]
    cdef char text[16]
    cdef char out[16]
    cdef int m
    cdef object v
    if _peek(c) != 34:
        v = _str_value(c, 0, 256, True)
        if v is _FAIL:
            return -1
        r.ip = v
        return 0
    if _scan_string(c) != 0:
        return -1
    if c.flags == 0 and 7 <= c.sn <= 15 and c.sp[0] > 32 and c.sp[c.sn - 1] > 32:
        memcpy(text, c.sp, c.sn)
        text[c.sn] = 0
        if inet_pton(AF_INET, text, buf) == 1:
            m = _ipv4_text(buf, out)
            if m == c.sn and memcmp(out, text, m) == 0:
                memcpy(r.ip_text, text, m)
                memcpy(r.ip_b, buf, 4)
                r.ip_n = m
                return 0
    v = _str_from_scan(c, 0, 256)
    if v is _FAIL:
        return -1
    r.ip = v
    return 0


cdef inline int _open_object(_JCtx *c) noexcept nogil:
    """An optional object's start (device, campaign): 1 when an object with keys follows (c.pos after its
    '{'), 0 for null or {} (consumed), -1 for anything else."""
    cdef int ch = _peek(c)
    if ch == 110:
        return 0 if _lit(c, "null", 4) else -1
    if ch != 123:
        return -1
    c.pos += 1
    if _peek(c) == 125:
        c.pos += 1
        return 0
    return 1


cdef int _parse_device(_JCtx *c, _Rec r) except -2:
    cdef int f, more = _open_object(c)
    cdef uint32_t seen = 0
    cdef object v
    while more == 1:
        if _object_key(c) != 0:
            return -1
        f = -1
        if _key(c, "idfa", 4):
            f = 0
        elif _key(c, "gaid", 4):
            f = 1
        elif _key(c, "oaid", 4):
            f = 2
        elif _key(c, "idfv", 4):
            f = 3
        elif _key(c, "android_id", 10):
            f = 4
        elif _key(c, "ip", 2):
            f = 5
        elif _key(c, "ua", 2):
            f = 6
        elif _key(c, "platform", 8):
            f = 7
        elif _key(c, "os", 2):
            f = 8
        elif _key(c, "os_version", 10):
            f = 9
        elif _key(c, "model", 5):
            f = 10
        if f < 0:
            if _skip(c, 0) != 0:
                return -1
        else:
            if seen & (1u << f):
                return -1
            seen |= 1u << f
            if f <= 5:
                if (_device_id(c, r, f) if f < 5 else _ip_value(c, r)) != 0:
                    return -1
                more = _object_next(c)
                continue
            v = _cached_str(c, 1024 if f == 6 else 256)
            if v is _FAIL:
                return -1
            if f == 6:
                r.ua = v
            elif f == 7:
                if v is not None and v != "ios" and v != "android":
                    return -1
                r.platform = v
            elif f == 8:
                r.os = v
            elif f == 9:
                r.osv = v
            else:
                r.model = v
        more = _object_next(c)
    return more


cdef int _parse_campaign(_JCtx *c, _Rec r) except -2:
    cdef int f, more = _open_object(c)
    cdef uint32_t seen = 0
    cdef object v
    while more == 1:
        if _object_key(c) != 0:
            return -1
        f = -1
        if _key(c, "network", 7):
            f = 0
        elif _key(c, "campaign", 8):
            f = 1
        elif _key(c, "adset", 5):
            f = 2
        elif _key(c, "ad", 2):
            f = 3
        elif _key(c, "site", 4):
            f = 4
        if f < 0:
            if _skip(c, 0) != 0:
                return -1
        else:
            if seen & (1u << f):
                return -1
            seen |= 1u << f
            v = _cached_str(c, 256)
            if v is _FAIL:
                return -1
            r.camp[f] = v
        more = _object_next(c)
    return more


cdef inline int _kind_of(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    if n == 5 and memcmp(p, b"click", 5) == 0:
        return KIND_CLICK
    if n == 10 and memcmp(p, b"impression", 10) == 0:
        return KIND_IMPRESSION
    if n == 7 and memcmp(p, b"install", 7) == 0:
        return KIND_INSTALL
    if n == 4 and memcmp(p, b"open", 4) == 0:
        return KIND_OPEN
    if n == 5 and memcmp(p, b"event", 5) == 0:
        return KIND_EVENT
    return 0


cdef int _parse_record(_JCtx *c, _Rec r) except -2:
    """The record object at c.pos (its '{') into r; 0, or -1 to refuse the body."""
    cdef int f, more, ch
    cdef uint32_t seen = 0
    cdef object v
    cdef Py_ssize_t start
    r.reset()
    c.pos += 1
    if _peek(c) == 125:
        return -1  # type, id and ts are required
    more = 1
    while more == 1:
        if _object_key(c) != 0:
            return -1
        f = -1
        if _key(c, "type", 4):
            f = 0
        elif _key(c, "id", 2):
            f = 1
        elif _key(c, "ts", 2):
            f = 2
        elif _key(c, "device", 6):
            f = 3
        elif _key(c, "campaign", 8):
            f = 4
        elif _key(c, "referrer", 8):
            f = 5
        elif _key(c, "name", 4):
            f = 6
        elif _key(c, "revenue", 7):
            f = 7
        elif _key(c, "currency", 8):
            f = 8
        elif _key(c, "properties", 10):
            f = 9
        if f < 0:
            if _skip(c, 0) != 0:
                return -1
            more = _object_next(c)
            continue
        if seen & (1u << f):
            return -1
        seen |= 1u << f
        if f == 0:
            if _peek(c) != 34 or _scan_string(c) != 0:
                return -1
            if c.flags == 0:
                r.kind = _kind_of(c.sp, c.sn)
            elif _need_scratch(c) == 0:  # escaped: msgspec matches the text it stands for
                r.kind = _kind_of(c.scratch, _unescape(c.sp, c.sn, c.scratch))
            if r.kind == 0:
                return -1
        elif f == 1:
            v = _str_value(c, 1, 128, False)
            if v is _FAIL:
                return -1
            r.rid = v
        elif f == 2:
            if _ts_value(c, &r.ts) != 0:
                return -1
        elif f == 3:
            if _parse_device(c, r) != 0:
                return -1
        elif f == 4:
            if _parse_campaign(c, r) != 0:
                return -1
        elif f == 7:
            if _revenue_value(c, r) != 0:
                return -1
        elif f == 9:
            ch = _peek(c)
            if ch == 110:
                if not _lit(c, "null", 4):
                    return -1
            elif ch == 123:
                start = c.pos
                if _skip(c, 0) != 0:
                    return -1
                r.props_start = start
                r.props_len = c.pos - start
            else:
                return -1  # not an object: build_columns refuses it
        else:
            v = _cached_str(c, 1024 if f == 5 else 256)
            if v is _FAIL:
                return -1
            if f == 5:
                r.referrer = v
            elif f == 6:
                r.name = v
            else:
                r.currency = v
        more = _object_next(c)
    if more != 0 or (seen & 7) != 7:
        return -1
    return 0


cdef object _currency(object cur):
    """build_columns' currency check for a str: three ASCII letters, upper-cased; None to refuse."""
    cdef Py_ssize_t n, k
    cdef const char *p = PyUnicode_AsUTF8AndSize(cur, &n)
    cdef bint upper = True
    cdef unsigned char ch
    if n != 3:
        return None  # also non-ASCII text (whose .upper() may be 3 letters: the msgspec path decides)
    for k in range(3):
        ch = <unsigned char>p[k]
        if 97 <= ch <= 122:
            upper = False
        elif not (65 <= ch <= 90):
            return None
    return cur if upper else (<str>cur).upper()


cdef inline void _keep(_NumRow *row, int k, object v):
    Py_INCREF(v)
    row.obj[k] = <PyObject *>v


cdef list _take_column(_NumRow *rows, Py_ssize_t g, int k):
    """The list of column k, which takes over the rows' references."""
    cdef list lst = _list_new(g)
    cdef Py_ssize_t i
    for i in range(g):
        _list_steal(lst, i, rows[i].obj[k])
        rows[i].obj[k] = NULL
    return lst


def decode_json_columns(bytes body, int64_t received_ms, int64_t min_ts, int64_t future_limit,
                        Py_ssize_t max_records, Py_ssize_t max_record_bytes, Py_ssize_t max_props,
                        object helpers):
    """Parse a JSON POST /v1/batch body straight into build_columns' columns.

    Returns ``(sent_at_ms, columns, arrays)`` -- the same values unmo.ingest.batch.decode_body's msgspec
    path gives (build_columns' columns: record_id, campaign and the segments) --
    when the body is valid, within ``max_records`` / ``max_record_bytes``, and every record is good;
    otherwise None (the msgspec path then words the errors).  ``min_ts`` is the smallest epoch ms of
    a timestamp and of sent_at, ``future_limit`` received_ms + the allowed future; ``helpers`` is
    build_columns' tuple (parse_ua, referrer_click_id, ...).
    """
    cdef _JCtx c
    cdef _Rec r = _Rec()
    cdef _NumRow *rows = NULL
    cdef _NumRow *row
    cdef _NumRow *grown
    cdef Py_ssize_t cap = 0, g = 0, i, j, rec_start
    cdef int ch, more
    cdef bint seen_batch = False, seen_sent = False, has_sent = False
    cdef int64_t sent_at = 0, skew, ts
    cdef uint64_t first, h1, h2, h
    cdef object v, ip, packed_b, cur, parsed, ua
    cdef const char *ip_p
    cdef Py_ssize_t ip_len = 0
    cdef int k
    cdef const char *pp
    cdef uint8_t *m_kind
    cdef int64_t *m_ts
    cdef int64_t *m_k
    cdef uint64_t *m_h1
    cdef uint64_t *m_h2
    cdef uint64_t *m_dev
    cdef uint64_t *m_fp
    cdef uint64_t *m_r1
    cdef uint64_t *m_r2
    cdef int64_t *m_seg

    parse_ua, click_id_of = helpers[0], helpers[1]
    c.s = <const unsigned char *>PyBytes_AsString(body)
    c.end = PyBytes_GET_SIZE(body)
    c.pos = 0
    c.scratch = NULL
    _SEGBUF.len = 0  # the request's segments are written while it is parsed


    try:
        if _peek(&c) != 123:
            return None
        c.pos += 1
        if _peek(&c) == 125:
            return None  # no "batch"
        more = 1
        while more == 1:
            if _object_key(&c) != 0:
                return None
            if _key(&c, "batch", 5):
                if seen_batch or _peek(&c) != 91:
                    return None
                seen_batch = True
                c.pos += 1
                if _peek(&c) == 93:
                    c.pos += 1
                else:
                    while True:
                        if _peek(&c) != 123:
                            return None
                        if g >= max_records:
                            return None
                        rec_start = c.pos
                        if _parse_record(&c, r) != 0:
                            return None
                        if c.pos - rec_start > max_record_bytes:
                            return None
                        # -- build_columns' checks (the ts ones below, once sent_at is known)
                        if r.kind <= KIND_IMPRESSION and not r.camp[0]:
                            return None
                        if r.kind == KIND_EVENT and not r.name:
                            return None
                        cur = r.currency
                        if r.f.has_revenue and not cur:
                            cur = "USD"
                        if cur is not None:
                            cur = _currency(cur)
                            if cur is None:
                                return None
                        # the IP: its canonical text (for the fingerprint) and packed form (for the segment)
                        ip = packed_b = None
                        if r.ip_n > 0:
                            ip_p = r.ip_text
                            ip_len = r.ip_n
                            r.f.packed = <const char *>r.ip_b
                            r.f.packed_n = 4
                        elif r.ip is not None:
                            parsed = _canonical_ip(r.ip)
                            if parsed is None:
                                return None
                            ip, packed_b = parsed   # held until the segment is written
                            ip_p = PyUnicode_AsUTF8AndSize(ip, &ip_len)
                            r.f.packed = PyBytes_AsString(packed_b)
                            r.f.packed_n = PyBytes_GET_SIZE(packed_b)
                        else:
                            ip_p = NULL
                        if r.props_start >= 0:
                            # the text as sent: _skip checked it is JSON, its strings UTF-8
                            pp = <const char *>c.s + r.props_start
                            if r.props_len > max_props or memmem(pp, r.props_len, b"\\u0000", 6) != NULL:
                                return None
                            r.f.props = pp
                            r.f.props_n = r.props_len
                        # -- good: its columns
                        if g == cap:
                            cap = 256 if cap == 0 else cap * 2
                            grown = <_NumRow *>realloc(rows, cap * sizeof(_NumRow))
                            if grown == NULL:
                                raise MemoryError("decode_json_columns")
                            rows = grown
                        row = &rows[g]
                        row.kind = <uint8_t>r.kind
                        row.ts = r.ts
                        h1 = hash_str(r.rid, 0)
                        h2 = hash_str(r.rid, _ID_SEED_2)
                        row.h1 = h1
                        row.h2 = h2
                        first = 0
                        for j in range(5):
                            if r.f.idn[j] >= 0:  # hash_str of the normalised id, from its bytes
                                h = unmo_xxh64(r.f.ids[j], <size_t>r.f.idn[j], _DEV_SEED + j)
                                row.dev[j] = h if h != 0 else 1
                                if first == 0:
                                    first = row.dev[j]
                            else:
                                row.dev[j] = 0
                        row.key = <int64_t>(first if first != 0 else ((h1 ^ h2) if (h1 ^ h2) != 0 else 1))
                        ua = r.ua
                        v = r.referrer
                        row.r1 = row.r2 = 0
                        if r.kind == KIND_INSTALL and v is not None:
                            v = click_id_of(v)
                            if v is not None:
                                row.r1 = hash_str(v, 0)
                                row.r2 = hash_str(v, _ID_SEED_2)
                        if ip_p == NULL or r.kind > KIND_INSTALL:
                            row.fp = 0
                        elif r.kind <= KIND_IMPRESSION:
                            row.fp = _fingerprint_span(&_FPBUF, ip_p, ip_len, ua, None, None, None, parse_ua)
                        else:
                            row.fp = _fingerprint_span(&_FPBUF, ip_p, ip_len, ua, r.os, r.osv, r.model, parse_ua)
                        # its segment, with the ts as sent (seg_patch_ts adds the skew once sent_at is known)
                        row.ts_at = seg_record_spans(&_SEGBUF, r.kind, r.rid, r.ts, &r.f, ua, r.platform, r.os, r.osv,
                                                     r.model, r.referrer, r.name, cur, row.fp)
                        row.seg_end = <Py_ssize_t>_SEGBUF.len
                        # nothing below raises: the row's references are complete when g counts it
                        _keep(row, _C_RID, r.rid)
                        for j in range(5):
                            _keep(row, _C_CAMP + j, r.camp[j])
                        g += 1
                        ch = _peek(&c)
                        if ch == 44:
                            c.pos += 1
                            continue
                        if ch == 93:
                            c.pos += 1
                            break
                        return None
            elif _key(&c, "sent_at", 7):
                if seen_sent:
                    return None
                seen_sent = True
                if _peek(&c) == 110:
                    if not _lit(&c, "null", 4):
                        return None
                else:
                    if _ts_value(&c, &sent_at) != 0 or sent_at < min_ts:
                        return None
                    has_sent = True
            elif _skip(&c, 0) != 0:
                return None
            more = _object_next(&c)
        if more != 0 or not seen_batch or _peek(&c) != -1:
            return None

        skew = received_ms - sent_at if has_sent else 0
        a_kind = np.empty(g, dtype=np.uint8); a_ts = np.empty(g, dtype=np.int64)
        a_h1 = np.empty(g, dtype=np.uint64); a_h2 = np.empty(g, dtype=np.uint64)
        a_dev = np.empty((g, 5), dtype=np.uint64); a_fp = np.empty(g, dtype=np.uint64)
        a_r1 = np.empty(g, dtype=np.uint64); a_r2 = np.empty(g, dtype=np.uint64)
        a_key = np.empty(g, dtype=np.int64)
        m_kind = <uint8_t *>cnp.PyArray_DATA(a_kind)
        m_ts = <int64_t *>cnp.PyArray_DATA(a_ts)
        m_h1 = <uint64_t *>cnp.PyArray_DATA(a_h1)
        m_h2 = <uint64_t *>cnp.PyArray_DATA(a_h2)
        m_dev = <uint64_t *>cnp.PyArray_DATA(a_dev)
        m_fp = <uint64_t *>cnp.PyArray_DATA(a_fp)
        m_r1 = <uint64_t *>cnp.PyArray_DATA(a_r1)
        m_r2 = <uint64_t *>cnp.PyArray_DATA(a_r2)
        m_k = <int64_t *>cnp.PyArray_DATA(a_key)
        # each record's SEGMENT_COLUMNS, binary COPY encoded now that its ts is final (copy.pyx seg_record)
        a_seg = np.empty(g + 1, dtype=np.int64)
        m_seg = <int64_t *>cnp.PyArray_DATA(a_seg)
        m_seg[0] = 0
        for i in range(g):
            row = &rows[i]
            ts = row.ts
            if ts < min_ts:
                return None
            ts += skew
            if ts > future_limit:
                return None
            if skew != 0:
                seg_patch_ts(&_SEGBUF, row.ts_at, ts)
            m_seg[i + 1] = <int64_t>row.seg_end
            m_ts[i] = ts
            m_kind[i] = row.kind
            m_h1[i] = row.h1
            m_h2[i] = row.h2
            for j in range(5):
                m_dev[i * 5 + j] = row.dev[j]
            m_fp[i] = row.fp
            m_r1[i] = row.r1
            m_r2[i] = row.r2
            m_k[i] = row.key
        # the columns read after the decode; the others were needed for the segments only (and are freed
        # below, while still in the cache)
        rid_col = _take_column(rows, g, _C_RID)
        camp_cols = [_take_column(rows, g, _C_CAMP + j) for j in range(5)]
    finally:
        if rows != NULL:
            for i in range(g):
                for k in range(_NCOLS):
                    Py_XDECREF(rows[i].obj[k])   # NULL once moved into a list
        free(rows)
        free(c.scratch)

    columns = {
        "record_id": rid_col,
        "campaign": {_CAMPAIGN_FIELDS[j]: camp_cols[j] for j in range(5)},
        "segs": [(PyBytes_FromStringAndSize(_SEGBUF.data, <Py_ssize_t>_SEGBUF.len), a_seg)],
    }
    arrays = {"index": np.arange(g, dtype=np.int32), "kind": a_kind, "ts": a_ts, "id_h1": a_h1, "id_h2": a_h2,
              "dev": a_dev, "fp": a_fp, "ref_h1": a_r1, "ref_h2": a_r2, "device_key": a_key}
    return (sent_at if has_sent else None), columns, arrays
