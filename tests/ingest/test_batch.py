"""Decoding and validating bodies into columns (unmo.ingest.batch): every error names the field and the value."""

import datetime as dt

import hypothesis
import hypothesis.strategies as st
import msgspec
import numpy as np
import pytest

from unmo.config import Limits
from unmo.ingest.batch import (
    NUMERIC_COLUMNS,
    Batch,
    canonical_ip,
    decode_body,
    device_hash,
    id_hashes,
    normalize_device_id,
    referrer_click_id,
    to_signed,
)
from unmo.ingest.body import BodyError, LimitError
from unmo.ingest.fingerprint import fingerprint_hash, fingerprint_parts
from unmo.model import Kind

NOW = 1_795_000_000_000  # 2026-11-18
LIMITS = Limits()


def decode(records, *, msgpack=False, **envelope):
    body = {"batch": records, **envelope}
    raw = msgspec.msgpack.encode(body) if msgpack else msgspec.json.encode(body)
    return decode_body(raw, msgpack=msgpack, received_ms=NOW, limits=LIMITS)


def one_error(record):
    d = decode([record])
    assert d.batch.n == 0, "the record should have been rejected"
    assert len(d.errors) == 1
    return d.errors[0]["error"]


def click(**kw):
    rec = {"type": "click", "id": "c-1", "ts": NOW, "campaign": {"network": "meta"}}
    rec.update(kw)
    return rec


def test_good_records_become_columns_in_order():
    d = decode([
        click(id="a", device={"idfa": " ABCD-1 ", "ip": "10.1.2.3"}),
        {"type": "install", "id": "b", "ts": "2026-11-18T00:00:00.250+01:00", "device": {"gaid": "G"}},
        {"type": "event", "id": "c", "ts": NOW, "name": "purchase", "revenue": 4.99},
    ])
    b = d.batch
    assert d.errors == []
    assert b.n == 3 and b.index.tolist() == [0, 1, 2] and b.index.dtype == np.int32
    assert b.kind.tolist() == [Kind.CLICK, Kind.INSTALL, Kind.EVENT] and b.kind.dtype == np.uint8
    assert b.ids["idfa"][0] == "abcd-1"
    assert b.ts[1] == int(dt.datetime(2026, 11, 17, 23, 0, 0, 250000, tzinfo=dt.UTC).timestamp() * 1000)
    assert b.currency[2] == "USD"  # Segment's default currency when revenue comes without one
    assert b.dev[0][0] == device_hash("idfa", "abcd-1")
    assert (b.id_h1[0], b.id_h2[0]) == id_hashes("a")
    assert b.dev.shape == (3, 5) and b.dev[1].tolist() == [0, device_hash("gaid", "g"), 0, 0, 0]
    assert b.device_key[1] == to_signed(device_hash("gaid", "g"))  # the first id of the device


def test_bad_record_is_reported_by_index_and_the_good_ones_stay():
    d = decode([click(id="ok-1"), click(id="bad", ts="yesterday"), click(id="ok-2")])
    assert d.batch.record_id == ["ok-1", "ok-2"]
    assert d.batch.index.tolist() == [0, 2]
    assert d.errors == [{
        "index": 1, "id": "bad",
        "error": "batch[1].ts: expected RFC 3339 timestamp or epoch milliseconds, got 'yesterday'",
    }]


@pytest.mark.parametrize(("record", "message"), [
    ({"type": "purchase", "id": "x", "ts": NOW},
     "batch[0].type: expected one of click, impression, install, open, event, got 'purchase'"),
    ({"type": "open", "id": "", "ts": NOW}, "batch[0].id: expected a string of 1 to 128 characters, got ''"),
    ({"type": "open", "id": "x" * 129, "ts": NOW}, "batch[0].id: expected a string of 1 to 128 characters, got 'xxx"),
    ({"type": "open", "ts": NOW}, "batch[0].id: required field is missing"),
    ({"type": "open", "id": "x"}, "batch[0].ts: required field is missing"),
    ({"type": "open", "id": "x", "ts": 1.5}, "batch[0].ts: expected RFC 3339 timestamp or epoch milliseconds, got 1.5"),
    ({"type": "open", "id": "x", "ts": "2026-11-18T10:00:00"},
     "batch[0].ts: expected RFC 3339 timestamp or epoch milliseconds, got '2026-11-18T10:00:00'"),
    ({"type": "open", "id": "x", "ts": 1_700_000_000},  # seconds, not milliseconds
     "batch[0].ts: expected RFC 3339 timestamp or epoch milliseconds, got 1700000000"),
    ({"type": "open", "id": "x", "ts": NOW + 24 * 3600_000 + 1}, "batch[0].ts: more than 24 h in the future"),
    ({"type": "click", "id": "x", "ts": NOW}, "batch[0].campaign.network: required for a click, got None"),
    ({"type": "impression", "id": "x", "ts": NOW, "campaign": {"network": ""}},
     "batch[0].campaign.network: required for a impression, got ''"),
    ({"type": "event", "id": "x", "ts": NOW}, "batch[0].name: required for an event, got None"),
    ({"type": "open", "id": "x", "ts": NOW, "device": {"ip": "999.1.1.1"}},
     "batch[0].device.ip: expected an IPv4 or IPv6 address, got '999.1.1.1'"),
    ({"type": "open", "id": "x", "ts": NOW, "device": {"platform": "windows"}},
     "batch[0].device.platform: expected ios or android, got 'windows'"),
    ({"type": "open", "id": "x", "ts": NOW, "device": {"idfa": 5}}, "batch[0].device.idfa: expected str"),
    ({"type": "event", "id": "x", "ts": NOW, "name": "p", "revenue": "4.99"},
     "batch[0].revenue: expected a number, got '4.99'"),
    ({"type": "event", "id": "x", "ts": NOW, "name": "p", "revenue": 1, "currency": "dollars"},
     "batch[0].currency: expected an ISO 4217 code like USD, got 'dollars'"),
    ({"type": "open", "id": "x", "ts": NOW, "properties": [1, 2]},
     "batch[0].properties: expected an object without NUL characters, got [1, 2]"),
    ({"type": "open", "id": "x", "ts": NOW, "properties": {"a": "x" * 9000}},
     "batch[0].properties: larger than 8192 bytes"),
    ({"type": "open", "id": "x\u0000y", "ts": NOW}, "batch[0].id: NUL characters are not allowed"),
])
def test_error_names_field_and_value(record, message):
    assert one_error(record).startswith(message)


def test_a_record_over_32kb_breaks_the_record_limit():
    big = click(id="big", padding="x" * 40_000)  # unknown fields are ignored, but they count
    with pytest.raises(LimitError) as exc:
        decode([click(id="small"), big])
    assert exc.value.limit == "record_bytes"
    assert str(exc.value).startswith("batch[1]: record larger than 32768 bytes")
    assert decode([click(id="fits", padding="x" * 30_000)]).batch.n == 1


def test_long_value_is_cut_in_the_message():
    err = one_error({"type": "open", "id": "x", "ts": "y" * 500})
    assert len(err) < 150 and err.endswith("...")


def test_sent_at_corrects_clock_skew():
    # the device clock runs 1 hour fast: ts and sent_at are both an hour ahead
    d = decode([click(ts=NOW + 3_600_000 - 5_000)], sent_at=NOW + 3_600_000)
    assert d.batch.ts.tolist() == [NOW - 5_000]
    d = decode([click(ts=NOW)], sent_at="2026-11-18T00:00:00Z")
    assert d.sent_at_ms is not None and d.batch.ts[0] == NOW + (NOW - d.sent_at_ms)


def test_future_limit_applies_after_skew_correction():
    d = decode([click(ts=NOW + 30 * 3_600_000)], sent_at=NOW + 10 * 3_600_000)
    assert d.errors == [] and d.batch.ts.tolist() == [NOW + 20 * 3_600_000]


def test_msgpack_decodes_the_same():
    recs = [click(id="a", device={"gaid": "g"}), {"type": "event", "id": "b", "ts": NOW, "name": "n",
                                                  "properties": {"level": 3}}]
    j, m = decode(recs), decode(recs, msgpack=True)
    assert j.batch.record_id == m.batch.record_id
    assert j.batch.dev.tolist() == m.batch.dev.tolist()
    assert m.batch.properties[1] == '{"level":3}'


def test_malformed_bodies_fail_whole():
    for raw in (b"not json", b"[1,2]", b'{"records": []}', b'{"batch": {}}', b'{"batch": [1}'):
        with pytest.raises(BodyError):
            decode_body(raw, msgpack=False, received_ms=NOW, limits=LIMITS)
    with pytest.raises(BodyError, match="sent_at: expected RFC 3339 timestamp or epoch milliseconds, got 'soon'"):
        decode_body(b'{"batch": [], "sent_at": "soon"}', msgpack=False, received_ms=NOW, limits=LIMITS)


def test_too_many_records_is_a_limit():
    with pytest.raises(LimitError) as exc:
        decode([{"type": "open", "id": str(i), "ts": NOW} for i in range(10_001)])
    assert exc.value.limit == "records"


@pytest.mark.parametrize(("value", "expected"), [
    ("00000000-0000-0000-0000-000000000000", None), ("", None), ("  ", None), (" AbC ", "abc"), (None, None),
])
def test_device_id_normalisation(value, expected):
    assert normalize_device_id(value) == expected


@pytest.mark.parametrize(("referrer", "expected"), [
    ("utm_source=google&click_id=abc-1", "abc-1"),
    ("utm_source%3Dgoogle%26click_id%3Dabc-2", "abc-2"),
    ("click_id=", None),
    ("utm_source=google", None),
    (None, None),
])
def test_referrer_click_id(referrer, expected):
    assert referrer_click_id(referrer) == expected


def test_native_fingerprints_equal_the_python_definition():
    ua_iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
    ua_android = "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36"
    d = decode([
        click(id="t1", device={"ip": "203.0.113.9", "ua": ua_iphone}),
        click(id="t2", device={"ip": "::ffff:203.0.113.9", "ua": ua_android}),
        click(id="t3", device={"ua": ua_android}),
        {"type": "install", "id": "i1", "ts": NOW, "device": {"ip": "203.0.113.9", "ua": ua_android,
                                                             "os": " Android ", "os_version": "14", "model": "X1"}},
        {"type": "install", "id": "i2", "ts": NOW, "device": {"ip": "2001:db8::7", "ua": ua_iphone}},
    ])
    expected = [
        fingerprint_hash(fingerprint_parts("203.0.113.9", ua_iphone)),
        fingerprint_hash(fingerprint_parts("203.0.113.9", ua_android)),
        0,
        fingerprint_hash(fingerprint_parts("203.0.113.9", ua_android, " Android ", "14", "X1")),
        fingerprint_hash(fingerprint_parts("2001:db8::7", ua_iphone)),
    ]
    assert d.batch.fp.tolist() == expected
    assert fingerprint_parts("203.0.113.9", ua_android, " Android ", "14", "X1") == ("203.0.113.9", "android",
                                                                                     "14.0", "x1")
    assert fingerprint_parts("203.0.113.9", ua_iphone)[1:] == ("ios", "17.1", "iphone")


def test_ip_canonical_forms():
    assert canonical_ip("::ffff:10.0.0.1") == ("10.0.0.1", bytes([10, 0, 0, 1]))
    assert canonical_ip("2001:DB8::0:1")[0] == "2001:db8::1"
    assert canonical_ip("nope") is None


def test_numeric_columns_hold_the_good_records_only_also_after_extend():
    from unmo.load.workload import Workload, build_templates

    bodies = [t.render(1) for t in build_templates(Workload(batch_size=300, templates=3), "arr-", seed=3, now_ms=NOW)]
    # a bad record in the middle: the arrays hold the good ones only, in order
    bad = msgspec.json.decode(bodies[1])
    bad["batch"][7]["ts"] = "not a time"
    bodies[1] = msgspec.json.encode(bad)
    decoded = [decode_body(b, msgpack=False, received_ms=NOW, limits=LIMITS).batch for b in bodies]
    assert [b.n for b in decoded] == [300, 299, 300]
    second = decoded[1]
    assert second.index.tolist() == [i for i in range(300) if i != 7]
    want_ids = [r["id"] for i, r in enumerate(bad["batch"]) if i != 7]
    assert second.record_id == want_ids
    assert [tuple(h) for h in zip(second.id_h1.tolist(), second.id_h2.tolist(), strict=True)] == [
        id_hashes(r) for r in want_ids]
    assert second.ts.tolist() == [r["ts"] for i, r in enumerate(bad["batch"]) if i != 7]
    for b in decoded:
        a = b.arrays()
        assert set(a) == set(NUMERIC_COLUMNS)
        for k, t in NUMERIC_COLUMNS.items():
            assert a[k].dtype == t and len(a[k]) == b.n, k
    merged = Batch()
    for b in decoded:
        merged.extend(b)
    assert merged.n == 899 and len(merged.parts) == 3
    made = merged.arrays()
    assert len(merged.parts) == 1  # joined once, then kept
    for k in NUMERIC_COLUMNS:
        want = np.concatenate([b.arrays()[k] for b in decoded])
        assert made[k].shape == want.shape and (made[k] == want).all(), k
    assert merged.record_id == [r for b in decoded for r in b.record_id]
    assert Batch().arrays()["dev"].shape == (0, 5)


def _click_id_by_parse_qsl(referrer):
    """The definition: parse_qsl of the text as sent, decoded once, decoded twice."""
    from urllib.parse import parse_qsl, unquote

    if not referrer:
        return None
    for text in (referrer, unquote(referrer), unquote(unquote(referrer))):
        for key, value in parse_qsl(text, keep_blank_values=False):
            if key == "click_id" and value:
                return value
    return None


@hypothesis.given(st.lists(st.sampled_from(["click_id", "=", "&", "a", "x=1", ";", " ", "%26", "%3D", "+", "é", "%"]),
                           max_size=12).map("".join))
def test_referrer_click_id_fast_path_is_parse_qsl(referrer):
    assert referrer_click_id(referrer) == _click_id_by_parse_qsl(referrer)


def test_fields_read_by_slot_offset_equal_fields_read_by_attribute():
    """build_columns reads unmo.model's Structs by slot offset (configure_structs); records of any other
    type (here a subclass) are read by attribute, with the same columns."""
    from unmo._native import build_columns, configure_structs
    from unmo.ingest.batch import _HELPERS, MIN_TS_MS
    from unmo.load.workload import Workload, build_templates
    from unmo.model import Record

    with pytest.raises(TypeError):
        configure_structs(dict, dict, dict)

    class Other(Record):
        pass

    body = build_templates(Workload(batch_size=200, templates=1), "slot-", seed=5, now_ms=NOW)[0].render(1)
    raws = msgspec.json.decode(body, type=dict[str, list[msgspec.Raw]])["batch"]
    args = (False, 0, MIN_TS_MS, NOW + LIMITS.max_future_ms, LIMITS.max_properties_bytes, _HELPERS)
    mine = [msgspec.json.decode(r, type=Record) for r in raws]
    other = [msgspec.json.decode(r, type=Other) for r in raws]
    fast, _, fast_arrays = build_columns(mine, list(range(len(raws))), raws, *args)
    slow, _, slow_arrays = build_columns(other, list(range(len(raws))), raws, *args)
    (fast_buf, fast_offs), = fast.pop("segs")
    (slow_buf, slow_offs), = slow.pop("segs")
    assert fast_buf == slow_buf and (fast_offs == slow_offs).all() and len(fast_offs) == 201
    assert fast == slow
    assert all((fast_arrays[k] == slow_arrays[k]).all() for k in fast_arrays)
    assert len(fast["record_id"]) == 200 and fast_arrays["index"].tolist() == list(range(200))


FULL = [
    {"type": "install", "id": "i-1", "ts": NOW, "referrer": "click_id=k&utm_source=x",
     "device": {"idfa": " AB-CD ", "idfv": "00000000-0000-0000-0000-000000000000", "gaid": "G-1", "oaid": "O",
                "android_id": "Aid", "ip": "::ffff:10.0.0.9", "ua": "UA/1 ünï", "platform": "ios", "os": "iOS",
                "os_version": "17.4", "model": "iPhone15,2"}},
    {"type": "event", "id": "e-1", "ts": NOW, "name": "purchase", "revenue": -0.0, "currency": "eur",
     "properties": {"level": 3, "tag": "ß"}, "device": {"ip": "2001:DB8::1"}},
    {"type": "open", "id": "o-1", "ts": NOW},
]
FULL_WANT = {
    "ip": ["10.0.0.9", "2001:db8::1", None],
    "ip_packed": [bytes([10, 0, 0, 9]), bytes.fromhex("20010db8000000000000000000000001"), None],
    "ua": ["UA/1 ünï", None, None], "platform": ["ios", None, None], "os": ["iOS", None, None],
    "os_version": ["17.4", None, None], "model": ["iPhone15,2", None, None],
    "referrer": ["click_id=k&utm_source=x", None, None], "name": [None, "purchase", None],
    "revenue": [None, -0.0, None], "currency": [None, "EUR", None],
}


@pytest.mark.parametrize("msgpack", [False, True], ids=["json (native decoder)", "msgpack (msgspec path)"])
def test_columns_kept_only_in_the_segments_read_back_as_sent_and_normalised(msgpack):
    b = decode(FULL, msgpack=msgpack).batch
    assert b.n == 3 and b.record_id == ["i-1", "e-1", "o-1"]
    for name, want in FULL_WANT.items():
        got = b.segment_column(name)
        assert got == want and got == getattr(b, name), name
        assert [type(v) for v in got] == [type(v) for v in want], name
    assert str(b.revenue[1]) == "-0.0"
    assert b.ids == {"idfa": ["ab-cd", None, None], "gaid": ["g-1", None, None], "oaid": ["o", None, None],
                     "idfv": [None, None, None], "android_id": ["aid", None, None]}
    assert [None if p is None else msgspec.json.decode(p) for p in b.properties] == [
        None, {"level": 3, "tag": "ß"}, None]
    with pytest.raises(KeyError, match="record_id"):
        b.segment_column("record_id")


def test_columns_read_back_from_merged_requests_and_not_from_a_replay():
    first, second = decode(FULL).batch, decode(FULL[::-1]).batch
    merged = Batch()
    merged.extend(first)
    merged.extend(second)
    assert merged.ua == first.ua + second.ua and merged.ids["idfa"] == first.ids["idfa"] + second.ids["idfa"]
    assert Batch().ua == []
    from unmo.ingest.rows import batch_from_columns
    replay = batch_from_columns(np.array([3], dtype=np.uint8), np.array([1_795_000_000_000]), ["r"],
                                np.zeros((1, 5), dtype=np.uint64), np.zeros(1, dtype=np.uint64), [[None]] * 5)
    with pytest.raises(ValueError, match="no segments"):
        replay.segment_column("ip")


def test_seg_field_reads_one_field_of_each_row_and_refuses_a_broken_segment():
    from unmo._native import SEGMENT_FIELD_COUNT, seg_field
    from unmo.ingest.rows import SEGMENT_COLUMNS
    b = decode(FULL).batch
    assert SEGMENT_FIELD_COUNT == len(SEGMENT_COLUMNS)
    assert seg_field(b.segs, SEGMENT_COLUMNS.index("record_id")) == [b"i-1", b"e-1", b"o-1"]
    assert seg_field(b.segs, SEGMENT_COLUMNS.index("kind")) == [b"\x00\x03", b"\x00\x05", b"\x00\x04"]
    assert seg_field(b.segs, SEGMENT_COLUMNS.index("fp"))[2] is None  # an open has no fingerprint
    for col in (-1, SEGMENT_FIELD_COUNT):
        with pytest.raises(IndexError):
            seg_field(b.segs, col)
    buf, offs = b.segs[0]
    cut_offs = offs.copy()
    cut_offs[1] = 10  # the first row cut inside its record id
    with pytest.raises(ValueError, match="row 0"):
        seg_field([(buf, cut_offs)], SEGMENT_COLUMNS.index("fp"))
    with pytest.raises(ValueError, match="out of their buffer"):
        seg_field([(buf[:-1], offs)], 0)
