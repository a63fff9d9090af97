"""The native JSON decoder (unmo._native.decode_json_columns) against the msgspec path it short-cuts.

Differential: for any body, either the native decoder refuses it (None: decode_body then takes the
msgspec path) or it gives exactly the columns, arrays and sent_at of the msgspec path.  And it must not
refuse the plain bodies (the load driver's, and the generator's "plain" ones), or it would be a fast
path in name only.
"""

from __future__ import annotations

import json
import math
import random

import hypothesis
import hypothesis.strategies as st
import msgspec
import numpy as np
import pytest

from unmo._native import decode_json_columns
from unmo.config import Limits
from unmo.ingest.batch import _HELPERS, MIN_TS_MS, decode_body, decode_body_msgspec
from unmo.load.workload import Workload, build_templates, id_prefix

NOW = 1_795_000_000_000  # 2026-11-18
LIMITS = Limits()
TEXT_KEYS = ("record_id",)  # the other columns are only in the segments, compared byte for byte
ARRAYS = ("index", "kind", "ts", "id_h1", "id_h2", "dev", "fp", "ref_h1", "ref_h2", "device_key")
DEVICE_IDS = ("idfa", "gaid", "oaid", "idfv", "android_id")
CAMPAIGN = ("network", "campaign", "adset", "ad", "site")


def native(body: bytes, limits: Limits = LIMITS, received_ms: int = NOW):
    return decode_json_columns(body, received_ms, MIN_TS_MS, received_ms + limits.max_future_ms, limits.max_records,
                               limits.max_record_bytes, limits.max_properties_bytes, _HELPERS)


def reference(body: bytes, limits: Limits = LIMITS, received_ms: int = NOW):
    """The msgspec path's result, or None when it reports any error (or raises for the body)."""
    try:
        d = decode_body_msgspec(body, msgpack=False, received_ms=received_ms, limits=limits)
    except Exception:  # BodyError, LimitError: the native path must refuse those
        return None
    return d


def _same_value(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)  # -0.0 is not 0.0 here
    return a == b


def assert_same(got, d) -> None:
    sent_at_ms, columns, arrays = got
    b = d.batch
    assert d.errors == []
    assert sent_at_ms == d.sent_at_ms and type(sent_at_ms) is type(d.sent_at_ms)
    assert len(columns["record_id"]) == b.n
    for key in TEXT_KEYS:
        mine, theirs = columns[key], getattr(b, key)
        assert len(mine) == len(theirs), key
        assert all(_same_value(x, y) for x, y in zip(mine, theirs, strict=True)), (key, mine, theirs)
    assert set(columns) == {"record_id", "campaign", "segs"}
    assert set(columns["campaign"]) == set(CAMPAIGN)
    for name in CAMPAIGN:
        mine, theirs = columns["campaign"][name], b.campaign[name]
        assert all(_same_value(x, y) for x, y in zip(mine, theirs, strict=True)), (name, mine, theirs)
        assert len(mine) == len(theirs)
    # the COPY segments: byte for byte what build_columns encoded, row boundaries included
    (mine_buf, mine_offs), = columns["segs"]
    (theirs_buf, theirs_offs), = b.segs
    assert mine_buf == theirs_buf
    assert np.array_equal(mine_offs, theirs_offs) and len(mine_offs) == b.n + 1
    theirs_arrays = b.arrays()
    assert set(arrays) == set(ARRAYS)
    for key in ARRAYS:
        assert arrays[key].dtype == theirs_arrays[key].dtype, key
        assert arrays[key].shape == theirs_arrays[key].shape, key
        assert np.array_equal(arrays[key], theirs_arrays[key]), key


def check(body: bytes, *, must_accept: bool = False, limits: Limits = LIMITS, received_ms: int = NOW) -> bool:
    """Differential check of one body; True when the native path took it."""
    got = native(body, limits, received_ms)
    ref = reference(body, limits, received_ms)
    if got is None:
        assert not must_accept, f"the native decoder refused a plain body: {body[:300]!r}"
        return False
    assert ref is not None and ref.errors == [], f"the native decoder took a body the msgspec path refuses: {body!r}"
    assert_same(got, ref)
    # and decode_body returns the native result as its Batch
    d = decode_body(body, msgpack=False, received_ms=received_ms, limits=limits)
    assert d.errors == [] and d.batch.n == ref.batch.n
    for key in ("kind", "dev", "ts"):
        assert np.array_equal(getattr(d.batch, key), getattr(ref.batch, key)), key
    assert d.batch.segs[0][0] == ref.batch.segs[0][0]
    return True


# -- the load driver's traffic: always native


@pytest.mark.parametrize("seed", [1, 2])
def test_load_driver_bodies_are_decoded_natively_and_identically(seed):
    templates = build_templates(Workload(batch_size=1000, devices=100000, seed=seed, templates=4),
                                id_prefix("abcd", 1), seed=seed, now_ms=NOW - 1000)
    for n, t in enumerate(templates):
        assert check(t.render(n + 1), must_accept=True)


# -- generated records

ASCII_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # includes U+0000, controls, emoji
NICE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)


def text(plain_ok: bool):
    return NICE_TEXT if plain_ok else st.one_of(ANY_TEXT, NICE_TEXT, st.sampled_from(["", " ", "ß", "😀", "\\"]))


@st.composite
def ip_address(draw):
    kind = draw(st.sampled_from(["v4", "v6", "mapped", "spaced", "bad", "v6short"]))
    a = [draw(st.integers(0, 255)) for _ in range(4)]
    v4 = ".".join(map(str, a))
    if kind == "v4":
        return v4, True
    if kind == "mapped":
        return draw(st.sampled_from(["::ffff:", "::FFFF:", "0:0:0:0:0:ffff:"])) + v4, True
    if kind == "spaced":
        return " " + v4 + "\t", True
    if kind == "v6short":
        return draw(st.sampled_from(["::1", "2001:db8::1", "fe80::", "2001:DB8:0:0:0:0:0:1", "::"])), True
    if kind == "v6":
        groups = [f"{draw(st.integers(0, 0xFFFF)):x}" for _ in range(8)]
        return ":".join(groups), True
    return draw(st.sampled_from(["1.2.3", "256.1.1.1", "01.2.3.4", "x", "", "1.2.3.4 5", "::g"])), False


@st.composite
def device_id(draw):
    v = draw(st.sampled_from(["AbCd-1234-EF", " ABCD ", "00000000-0000-0000-0000-000000000000",
                              "00000000-0000-0000-0000-000000000000 ", "", "  ", "x", "İd", "ÄBC",
                              "6F1A6C3E-A2B9-4A5D-9D6E-6A2A2F6B0C11", "a\tb", "ID\u00a0"]))
    return draw(st.one_of(st.just(v), NICE_TEXT))


def maybe(draw, value, plain: bool):
    """A field as present, absent or null."""
    choice = draw(st.sampled_from(["present", "present", "absent", "null"]))
    return {"present": value, "absent": ABSENT, "null": None}[choice]


ABSENT = object()

UNKNOWN_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=False, allow_infinity=False),
              ANY_TEXT),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(ANY_TEXT, children, max_size=3)),
    max_leaves=8,
)


@st.composite
def timestamp(draw, plain: bool):
    ms = draw(st.integers(NOW - 30 * 86400_000, NOW + 3600_000))
    form = draw(st.sampled_from(["int", "int", "z", "offset", "frac", "lower", "space"] if plain else
                                ["int", "z", "offset", "frac", "lower", "space", "float", "neg", "old", "future",
                                 "nodate", "bigfrac", "nocolon", "huge", "noon"]))
    if form == "int":
        return ms
    if form == "float":
        return float(ms)
    if form == "neg":
        return -ms
    if form == "old":
        return 946_684_799_999
    if form == "future":
        return NOW + LIMITS.max_future_ms + draw(st.integers(1, 10**7))
    if form == "huge":
        return 10 ** draw(st.integers(18, 25))
    import datetime as dt
    off_min = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59)) if form in ("offset", "nocolon", "frac") else 0
    tz = dt.timezone(dt.timedelta(minutes=off_min))
    d = dt.datetime.fromtimestamp(ms / 1000, tz)
    base = d.strftime("%Y-%m-%dT%H:%M:%S")
    frac = ""
    if form in ("frac", "bigfrac"):
        digits = draw(st.integers(1, 6 if form == "frac" else 9))
        frac = "." + "".join(str(draw(st.integers(0, 9))) for _ in range(digits))
    sign = "+" if off_min >= 0 else "-"
    off = f"{sign}{abs(off_min) // 60:02d}:{abs(off_min) % 60:02d}" if off_min or form == "offset" else "Z"
    if form == "nocolon":
        off = off.replace(":", "") if off != "Z" else "+0000"
    if form == "lower":
        return base.replace("T", "t") + "z"
    if form == "space":
        return base.replace("T", " ") + "Z"
    if form == "nodate":
        return base[11:] + "Z"
    if form == "noon":
        return base + frac
    return base + frac + off


@st.composite
def record(draw, plain: bool, index: int):
    kind = draw(st.sampled_from(["click", "impression", "install", "open", "event"]))
    rec: dict = {"type": kind if plain or draw(st.integers(0, 20)) else draw(st.sampled_from(["Click", "x", 1])),
                 "id": draw(st.one_of(st.just(f"r-{index}"), NICE_TEXT)) if plain else
                 draw(st.one_of(st.just(f"r-{index}"), text(False), st.just("x" * 129), st.just("é" * 128))),
                 "ts": draw(timestamp(plain))}
    device: dict = {}
    for name in DEVICE_IDS:
        if draw(st.booleans()):
            device[name] = draw(device_id()) if plain else draw(st.one_of(device_id(), text(False)))
    if draw(st.booleans()):
        ip, ok = draw(ip_address())
        if ok or not plain:
            device["ip"] = ip
    for name in ("ua", "os", "os_version", "model"):
        if draw(st.booleans()):
            device[name] = draw(st.one_of(text(plain), st.sampled_from([
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)", "Android", "14.2.1", "SM-S918B", " iOS ",
                "17"])))
    if draw(st.booleans()):
        device["platform"] = draw(st.sampled_from(["ios", "android"] if plain else ["ios", "android", "IOS", ""]))
    if not plain and draw(st.integers(0, 10)) == 0:
        device["ua"] = "u" * 1025
    if draw(st.booleans()):
        device[draw(st.sampled_from(["extra", "Idfa", "ip_v6"]))] = draw(UNKNOWN_VALUES)
    if device or draw(st.booleans()):
        rec["device"] = device if device or draw(st.booleans()) else None
    camp: dict = {}
    if kind in ("click", "impression") or draw(st.booleans()):
        camp["network"] = draw(text(plain)) if not plain or kind not in ("click", "impression") else draw(NICE_TEXT)
        for name in CAMPAIGN[1:]:
            if draw(st.booleans()):
                camp[name] = draw(text(plain))
        if draw(st.booleans()):
            camp["x_extra"] = draw(UNKNOWN_VALUES)
    if camp:
        rec["campaign"] = camp
    if draw(st.booleans()):
        rec["referrer"] = draw(st.one_of(
            text(plain), st.sampled_from(["utm_source=google-play&click_id=abc", "click_id=x%26y",
                                          "click_id%3Dabc%26a%3Db", "a=1&click_id=", "click_id=ÄÖ", "x+y=1"])))
    if kind == "event" or draw(st.booleans()):
        if plain and kind == "event":
            rec["name"] = draw(NICE_TEXT)
        else:
            v = maybe(draw, draw(text(plain)), plain)
            if v is not ABSENT:
                rec["name"] = v
    if draw(st.booleans()):
        rev = draw(st.one_of(st.integers(-10**25, 10**25), st.floats(allow_nan=False, allow_infinity=False),
                             st.sampled_from([0, 0.0, -0.0, 1e308, 3, 4.99])))
        rec["revenue"] = rev if plain else draw(st.one_of(st.just(rev), st.sampled_from(["1", None, True])))
    if draw(st.booleans()):
        cur = draw(st.sampled_from(["USD", "eur", "Gbp", "", "US", "USDX", "ßa", "U1D", "ÉUR"] if not plain else
                                   ["USD", "eur", "Gbp"]))
        rec["currency"] = cur
    if draw(st.booleans()):
        props = draw(st.dictionaries(ANY_TEXT if not plain else NICE_TEXT, UNKNOWN_VALUES, max_size=4))
        rec["properties"] = props if plain else draw(st.one_of(st.just(props), st.sampled_from([None, [], "x", 1])))
    elif draw(st.booleans()):
        rec["properties"] = None
    if draw(st.booleans()):
        rec[draw(st.sampled_from(["extra", "Type", "session", "ids"]))] = draw(UNKNOWN_VALUES)
    return rec


def encode(value, rng: random.Random, style: str) -> str:
    """JSON text of value; "varied" and "wild": whitespace, escapes in string values (and keys: "wild"),
    keys shuffled."""
    ws = (lambda: rng.choice(["", " ", "\n", "\t ", "\r\n  "])) if style != "compact" else (lambda: "")
    if isinstance(value, dict):
        items = list(value.items())
        if style != "compact":
            rng.shuffle(items)
        keys = [encode(k, rng, style) if style == "wild" else json.dumps(k, ensure_ascii=False) for k, _ in items]
        members = [key + ws() + ":" + ws() + encode(v, rng, style) + ws()
                   for key, (_, v) in zip(keys, items, strict=True)]
        return "{" + ws() + ("," + ws()).join(members) + "}"
    if isinstance(value, list):
        return "[" + ws() + ("," + ws()).join(encode(v, rng, style) + ws() for v in value) + "]"
    if isinstance(value, str):
        mode = rng.choice(["json", "ascii", "escape"]) if style != "compact" else "json"
        if mode == "json":
            return json.dumps(value, ensure_ascii=False)
        if mode == "ascii":
            return json.dumps(value, ensure_ascii=True)  # \uXXXX, surrogate pairs for emoji
        return _escaped(value, rng)
    return json.dumps(value)


_SHORT = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(s: str, rng: random.Random) -> str:
    """A JSON string of s with characters escaped at random: \\uXXXX (either case, surrogate pairs beyond the
    BMP), the short escapes, \\/."""
    out = []
    for ch in s:
        o = ord(ch)
        r = rng.random()
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "/" and r < 0.5:
            out.append("\\/")
        elif o < 0x20 or r < 0.3:
            if ch in _SHORT and r < 0.15:
                out.append(_SHORT[ch])
            elif o >= 0x10000:
                o -= 0x10000
                out.append(f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04X}")
            else:
                out.append(f"\\u{o:04x}" if r < 0.2 else f"\\u{o:04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


@st.composite
def body(draw, plain: bool):
    n = draw(st.integers(0, 6))
    recs = [draw(record(plain, i)) for i in range(n)]
    env: dict = {"batch": recs}
    if draw(st.booleans()):
        # plain: a clock within an hour of the server's, so that no ts is pushed out of range by the skew
        env["sent_at"] = draw(st.one_of(st.integers(NOW - 3600_000, NOW + 3600_000), st.none()) if plain else
                              st.one_of(timestamp(False), st.none(), st.just("yesterday")))
    if draw(st.booleans()):
        env["client"] = draw(UNKNOWN_VALUES)
    rng = random.Random(draw(st.integers(0, 2**32)))
    # keys escaped too ("wild") only in adversarial bodies: the native path refuses escaped keys
    style = draw(st.sampled_from(["compact", "varied"] if plain else ["compact", "varied", "wild"]))
    return encode(env, rng, style).encode()


SETTINGS = hypothesis.settings(max_examples=600, deadline=None,
                               suppress_health_check=[hypothesis.HealthCheck.too_slow,
                                                      hypothesis.HealthCheck.data_too_large])


@SETTINGS
@hypothesis.given(body(plain=True))
def test_plain_bodies_are_decoded_natively_and_identically(raw):
    # "plain" records are valid by construction; one whose sent_at skew pushes a ts out of range is not
    ref = reference(raw)
    plain = ref is not None and not ref.errors
    hypothesis.event("native" if check(raw, must_accept=plain) else "refused")


@SETTINGS
@hypothesis.given(body(plain=False))
def test_adversarial_bodies_are_refused_or_decoded_identically(raw):
    hypothesis.event("native" if check(raw) else "refused")


@SETTINGS
@hypothesis.given(body(plain=False), st.data())
def test_mangled_bodies_are_refused_or_decoded_identically(raw, data):
    # bytes cut, inserted, replaced: malformed JSON, invalid UTF-8, stray escapes
    b = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        if not b:
            break
        i = data.draw(st.integers(0, len(b) - 1))
        op = data.draw(st.sampled_from(["cut", "insert", "replace", "truncate"]))
        ch = data.draw(st.sampled_from([b'"', b"\\", b"{", b"}", b",", b":", b"\xff", b"\xc3", b"\xed\xa0\x80",
                                        b"\\ud83d", b"\\u0000", b"1", b"e", b"-", b" ", b"\x01", b"null"]))
        if op == "cut":
            del b[i]
        elif op == "insert":
            b[i:i] = ch
        elif op == "replace":
            b[i:i + 1] = ch
        else:
            del b[i:]
    hypothesis.event("native" if check(bytes(b)) else "refused")


# -- hand-picked cases


def rec(**kw):
    r = {"type": "install", "id": "i-1", "ts": NOW}
    r.update(kw)
    return r


def body_of(*records, **env) -> bytes:
    return msgspec.json.encode({"batch": list(records), **env})


@pytest.mark.parametrize("raw", [
    b'{"batch":[]}',
    b' \n{ "batch" : [ ] } \n',
    body_of(rec(), sent_at=NOW - 5000),
    body_of(rec(ts="2026-11-18T00:00:00.250+01:00"), sent_at="2026-11-18T01:00:00Z"),
    body_of(rec(device={"idfa": "ABC-DEF", "ip": "::ffff:10.0.0.1", "ua": "Mozilla/5.0 (Linux; Android 14; Pixel 8)"})),
    body_of(rec(referrer="utm_source=x&click_id=c-9"), rec(id="i-2", type="event", name="buy", revenue=3)),
    body_of(rec(type="event", name="é😀", revenue=-0.0, currency="eur", properties={"a": [1, {"b": "\u00e9"}]})),
    rb'{"batch":[{"type":"cl\u0069ck","id":"\ud83d\ude00","ts":1795000000000,"campaign":{"network":"\/n\"\\"}}]}',
    b'{"x":{"batch":1},"batch":[{"type":"open","id":"a","ts":1795000000000,"z":[{"ts":1}]}],"sent_at":null}',
])
def test_hand_picked_bodies_are_native(raw):
    assert check(raw, must_accept=True)


@pytest.mark.parametrize("raw", [
    b'{"batch":[{"type":"open","id":"a","ts":1795000000000,"id":"b"}]}',  # duplicate key
    b'{"batch":[{"type":"open","id":"a","ts":1795000000000}],"batch":[]}',
    b'{"batch":[{"type":"open","id":"a","ts":1795000000000}]} x',
    b'{"batch":[{"type":"open","id":"a","ts":1795000000000,"x":"\xff"}]}',  # invalid UTF-8 (msgspec skips it)
    b'{"batch":[{"type":"open","id":"a","ts":1795000000000,"x":"\\ud800"}]}',  # unpaired surrogate
    b'{"batch":[{"type":"open","id":"a","ts":1795000000000.0}]}',
    b'{"batch":[{"type":"open","id":"a","ts":"2026-11-18T00:00:00.1234567Z"}]}',  # more than 6 digits: msgspec rounds
    b'{"batch":[{"type":"open","id":"a","ts":"2026-11-18T00:00:00+0100"}]}',
    b'{"batch":[{"t\\u0079pe":"open","id":"a","ts":1795000000000}]}',  # an escaped key
    b'{"batch":[{"type":"event","id":"a","ts":1795000000000,"name":"x","currency":"\xc3\x9fa"}]}',  # "ßa".upper()
    b'{"batch":[{"type":"open","id":"a","ts":1795000000000,"properties":{"a":"\\u0000"}}]}',
    b'{"batch":[{"type":"open","id":"a","ts":1795000000000,"device":{"os":"\\u0000"}}]}',
    b'{"batch":[{"type":"event","id":"a","ts":1795000000000,"name":"x","revenue":1e999}]}',
])
def test_refused_bodies(raw):
    assert native(raw) is None
    check(raw)


def test_limits_refuse_the_native_path():
    raw = body_of(rec(), rec(id="i-2", properties={"k": "v" * 100}))
    assert native(raw, Limits(max_records=1)) is None
    assert native(raw, Limits(max_record_bytes=100)) is None
    assert native(raw, Limits(max_properties_bytes=50)) is None
    assert native(raw, Limits(max_records=2, max_record_bytes=200)) is not None
    check(raw, limits=Limits(max_record_bytes=100))


def test_bad_records_still_get_the_msgspec_errors():
    good = rec(id="g")
    raw = body_of(good, rec(id="b1", ts=1.5), good, rec(id="b2", type="click"), rec(id="b3", device={"ip": "x"}),
                  rec(id="b4", properties={"a": "\u0000"}))
    assert native(raw) is None
    d = decode_body(raw, msgpack=False, received_ms=NOW, limits=LIMITS)
    assert d.batch.index.tolist() == [0, 2]
    assert [e["index"] for e in d.errors] == [1, 3, 4, 5]
    assert d.errors == decode_body_msgspec(raw, msgpack=False, received_ms=NOW, limits=LIMITS).errors
    assert d.errors[1]["error"] == "batch[3].campaign.network: required for a click, got None"
    assert d.errors[2]["error"] == "batch[4].device.ip: expected an IPv4 or IPv6 address, got 'x'"


def test_revenue_is_the_float_msgspec_gives():
    for text, want in [("3", 3.0), ("-0", 0.0), ("-0.0", -0.0), ("1e2", 100.0),
                       ("12345678901234567891", 1.2345678901234567e19), ("0.1", 0.1),
                       ("2.4703282292062328e-324", 5e-324)]:
        raw = b'{"batch":[{"type":"event","id":"a","ts":1795000000000,"name":"n","revenue":' + text.encode() + b"}]}"
        assert native(raw) is not None
        v, = decode_body(raw, msgpack=False, received_ms=NOW, limits=LIMITS).batch.revenue  # from the segment
        assert type(v) is float and repr(v) == repr(want) and math.copysign(1, v) == math.copysign(1, want)
        check(raw, must_accept=True)


def test_shared_strings_stay_right_when_the_cache_is_full():
    # more distinct repeated-field texts than the decoder's string cache has slots (4096), near-identical
    # ones (differing in one middle character, or only in length), over several bodies: every slot is
    # reused and every lookup must still compare the text, not trust the hash
    ua = "Mozilla/5.0 (Linux; Android {}; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile"
    for part in range(3):
        records = []
        for i in range(3000):
            n = part * 3000 + i
            records.append(rec(id=f"r{n}", type="click", ts=NOW - n,
                               campaign={"network": f"net-{n % 5000}", "campaign": "c" * (1 + n % 250),
                                         "adset": f"a{n % 97}b", "ad": f"ad-{n:06d}-x", "site": "s"},
                               device={"ua": ua.format(n % 4500), "os": f"os{n % 7}", "model": f"m{n}",
                                       "ip": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}))
        assert check(body_of(*records), must_accept=True)


def test_short_repeated_texts_share_one_str_across_bodies():
    # texts that differ only in their last bytes ("ad-0" ... "ad-10", "net-campaign-0" ... "-22"), short and
    # long, each keep a cache slot of their own: a second body gets the very str objects of the first (the
    # slot was the low bits of a product, and they replaced each other)
    records = [rec(id=f"r{n}", type="click", ts=NOW - n,
                   campaign={"network": "googleadwords_int", "campaign": f"googleadwords_int-campaign-{n % 23}",
                             "ad": f"ad-{n % 11}", "site": f"site-{n % 7}", "adset": f"adset-{n % 5}"})
               for n in range(23 * 11 * 7)]
    first = native(body_of(*records))
    second = native(body_of(*records))
    assert first is not None and second is not None
    for name in ("campaign", "ad", "site", "adset"):
        a, b = first[1]["campaign"][name], second[1]["campaign"][name]
        assert a == b and all(x is y for x, y in zip(a, b, strict=True)), name
