"""POST /v1/batch over real HTTP against a real server and PostgreSQL (spec: ingest-api.md)."""

import base64
import gzip
import json

import httpx
import msgspec
import pytest

from tests.support import now_ms, post_batch


def _post_raw(server, key, body: bytes, headers=None):
    h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    h.update(headers or {})
    return httpx.post(server.url + "/v1/batch", content=body, headers=h, timeout=30)


def test_every_record_type_round_trips_into_the_database(server, database, app):
    t = now_ms()
    records = [
        {
            "type": "click",
            "id": "c-1",
            "ts": t - 3_600_000,
            "device": {
                "idfa": "AAAA-1111",
                "ip": "203.0.113.7",
                "ua": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X)",
            },
            "campaign": {"network": "meta", "campaign": "summer", "adset": "s1", "ad": "a1", "site": "fb"},
        },
        {
            "type": "impression",
            "id": "m-1",
            "ts": t - 7_200_000,
            "device": {"gaid": "GGGG"},
            "campaign": {"network": "unity", "campaign": "winter"},
        },
        {
            "type": "install",
            "id": "i-1",
            "ts": t - 1_000,
            "referrer": "utm_source=x",
            "device": {
                "idfa": "aaaa-1111",
                "idfv": "V-1",
                "platform": "ios",
                "os": "iOS",
                "os_version": "17.1.2",
                "model": "iPhone15,2",
                "ip": "203.0.113.7",
            },
        },
        {"type": "open", "id": "o-1", "ts": t - 500, "device": {"idfv": "v-1"}},
        {
            "type": "event",
            "id": "e-1",
            "ts": t,
            "device": {"idfv": "v-1"},
            "name": "purchase",
            "revenue": 4.99,
            "currency": "eur",
            "properties": {"sku": "gem-pack", "qty": 2},
        },
    ]
    r = post_batch(server.url, app["sdk_key"], records)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 5 and body["duplicates"] == 0 and body["errors"] == []
    [inst] = body["installs"]
    assert inst["index"] == 2 and inst["id"] == "i-1"
    assert inst["status"] == "attributed" and inst["touch_id"] == "c-1" and inst["match"] == "device"
    assert (
        inst["network"] == "meta" and inst["campaign"] == "summer" and inst["ctit_s"] == pytest.approx(3599.0)
    )

    rows = {
        r["record_id"]: r
        for r in database.fetch("SELECT * FROM unmo.records WHERE app_id = $1", app["app_id"])
    }
    assert set(rows) == {"c-1", "m-1", "i-1", "o-1", "e-1"}
    assert rows["c-1"]["idfa"] == "aaaa-1111" and str(rows["c-1"]["ip"]) == "203.0.113.7"
    assert (rows["c-1"]["network"], rows["c-1"]["adset"], rows["c-1"]["site"]) == ("meta", "s1", "fb")
    assert rows["i-1"]["os_version"] == "17.1.2" and rows["i-1"]["outcome"] == 1
    # opens and events inherit the install's source
    assert rows["e-1"]["network"] == "meta" and rows["e-1"]["outcome"] == 1
    assert rows["e-1"]["revenue"] == 4.99 and rows["e-1"]["currency"] == "EUR"
    assert json.loads(rows["e-1"]["properties"]) == {"sku": "gem-pack", "qty": 2}
    assert int(rows["e-1"]["ts"].timestamp() * 1000) == t
    [stored] = database.fetch("SELECT * FROM unmo.installs WHERE app_id = $1", app["app_id"])
    assert stored["status"] == "attributed" and stored["touch_id"] == "c-1"


def test_retry_of_a_batch_is_acknowledged_as_duplicates_with_the_original_results(server, database, app):
    t = now_ms()
    batch = [
        {
            "type": "click",
            "id": "c",
            "ts": t - 60_000,
            "device": {"gaid": "g-9"},
            "campaign": {"network": "n"},
        },
        {"type": "install", "id": "i", "ts": t, "device": {"gaid": "g-9"}},
    ]
    first = post_batch(server.url, app["sdk_key"], batch).json()
    again = post_batch(server.url, app["sdk_key"], batch).json()
    assert again["accepted"] == 0 and again["duplicates"] == 2
    assert again["installs"] == first["installs"]
    assert database.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", app["app_id"]) == 2


def test_duplicates_inside_one_batch(server, app):
    t = now_ms()
    r = post_batch(
        server.url,
        app["sdk_key"],
        [
            {"type": "install", "id": "same", "ts": t, "device": {"gaid": "x1"}},
            {"type": "install", "id": "same", "ts": t, "device": {"gaid": "x1"}},
        ],
    ).json()
    assert r["accepted"] == 1 and r["duplicates"] == 1
    assert len(r["installs"]) == 2 and r["installs"][0]["status"] == r["installs"][1]["status"] == "organic"


def test_partial_acceptance_reports_bad_records_by_index(server, database, app):
    t = now_ms()
    r = post_batch(
        server.url,
        app["sdk_key"],
        [
            {"type": "open", "id": "good-1", "ts": t},
            {"type": "open", "id": "bad-1", "ts": "yesterday"},
            {"type": "open", "id": "good-2", "ts": t},
        ],
    )
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2
    assert body["errors"] == [
        {
            "index": 1,
            "id": "bad-1",
            "error": "batch[1].ts: expected RFC 3339 timestamp or epoch milliseconds, got 'yesterday'",
        }
    ]
    ids = {
        r["record_id"]
        for r in database.fetch("SELECT record_id FROM unmo.records WHERE app_id = $1", app["app_id"])
    }
    assert ids == {"good-1", "good-2"}


def test_a_batch_with_no_good_record_is_400_with_the_errors(server, app):
    r = post_batch(server.url, app["sdk_key"], [{"type": "open", "id": "x", "ts": "never"}])
    assert r.status_code == 400
    assert r.json()["errors"][0]["index"] == 0


def test_malformed_body_is_400_and_nothing_is_stored(server, database, app):
    for raw in (b"{not json", b"[]", b'{"batch": "no"}', b'{"events": []}'):
        r = _post_raw(server, app["sdk_key"], raw)
        assert r.status_code == 400, raw
        assert r.json()["error"].startswith("body:")
    assert database.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", app["app_id"]) == 0


def test_gzip_and_msgpack_bodies(server, app):
    t = now_ms()
    recs = [{"type": "open", "id": f"o{i}", "ts": t} for i in range(50)]
    r = _post_raw(
        server,
        app["sdk_key"],
        gzip.compress(msgspec.json.encode({"batch": recs})),
        {"Content-Encoding": "gzip"},
    )
    assert r.status_code == 200 and r.json()["accepted"] == 50
    r = _post_raw(
        server,
        app["sdk_key"],
        msgspec.msgpack.encode({"batch": [{"type": "open", "id": "mp", "ts": t}]}),
        {"Content-Type": "application/msgpack"},
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1


@pytest.mark.parametrize(
    ("make_body", "headers", "limit"),
    [
        (
            lambda t: b'{"batch": [' + b",".join([b'{"type":"open","id":"a","ts":1}'] * 10_001) + b"]}",
            {},
            "records",
        ),
        (lambda t: b" " * (5 * 1024 * 1024 + 1) + b'{"batch": []}', {}, "body_bytes"),
        (
            lambda t: msgspec.json.encode(
                {
                    "batch": [
                        {"type": "open", "id": "ok", "ts": t},
                        {"type": "open", "id": "big", "ts": t, "pad": "x" * 33_000},
                    ]
                }
            ),
            {},
            "record_bytes",
        ),
        (
            lambda t: gzip.compress(b'{"batch": [], "pad": "' + b"x" * (6 * 1024 * 1024) + b'"}'),
            {"Content-Encoding": "gzip"},
            "body_bytes",
        ),
    ],
)
def test_limits_answer_413_naming_the_limit(server, database, app, make_body, headers, limit):
    r = _post_raw(server, app["sdk_key"], make_body(now_ms()), headers)
    assert r.status_code == 413
    assert r.json()["limit"] == limit
    assert database.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", app["app_id"]) == 0


def test_unsupported_content_type_and_encoding_are_415(server, app):
    assert _post_raw(server, app["sdk_key"], b"{}", {"Content-Type": "text/csv"}).status_code == 415
    r = _post_raw(server, app["sdk_key"], b"{}", {"Content-Encoding": "br"})
    assert r.status_code == 415 and "content-encoding" in r.json()["error"]


def test_keys_by_bearer_and_by_basic_auth(server, app):
    t = now_ms()
    body = {"batch": [{"type": "open", "id": "b1", "ts": t}]}
    basic = base64.b64encode(f"{app['sdk_key']}:".encode()).decode()
    r = httpx.post(server.url + "/v1/batch", json=body, headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    r = httpx.post(server.url + "/v1/batch", json=body, auth=(app["secret_key"], ""))
    assert r.status_code == 200 and r.json()["duplicates"] == 1


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer sdk_unknown", "Basic !!!", "Token abc"])
def test_missing_or_unknown_key_is_401(server, header):
    headers = {"Authorization": header} if header else {}
    r = httpx.post(server.url + "/v1/batch", json={"batch": []}, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"].startswith("authorization:")


def test_concurrent_clients_all_committed_once(server, database, app):
    import concurrent.futures

    t = now_ms()

    def send(k):
        recs = [
            {"type": "open", "id": f"cc-{k}-{i}", "ts": t, "device": {"idfv": f"d{i % 7}"}}
            for i in range(200)
        ]
        return post_batch(server.url, app["sdk_key"], recs).json()["accepted"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        accepted = sum(pool.map(send, range(40)))
    assert accepted == 8000
    assert (
        database.fetchval(
            "SELECT count(DISTINCT record_id) FROM unmo.records WHERE app_id = $1", app["app_id"]
        )
        == 8000
    )
    assert database.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", app["app_id"]) == 8000
