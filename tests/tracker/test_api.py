"""The tracker's JSON API against a real database, a real ingest server and a real tracker process."""

from __future__ import annotations

import re

import httpx
from starlette.routing import Mount, Route

from tests.support import now_ms, post_batch
from tests.tracker.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, new_customer, wait_for


def test_admin_token_guards_everything_but_public_pages(tracker):
    with tracker.client(token=None) as anon:
        assert anon.get("/healthz").json()["status"] == "ok"
        assert anon.get("/openapi.json").status_code == 200
        page = anon.get("/")
        assert page.status_code == 200 and "unmo pilot programme" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for method, path in (("GET", "/v1/customers"), ("POST", "/v1/customers"), ("GET", "/metrics"),
                             ("GET", "/v1/dashboard"), ("GET", "/v1/feedback/stream")):
            r = anon.request(method, path)
            assert r.status_code == 401, (path, r.text)
            assert "Bearer" in r.json()["error"]
    with tracker.client(token="x" * 40) as wrong:
        r = wrong.get("/v1/customers")
        assert r.status_code == 401 and r.json()["error"] == "authorization: wrong admin token"


def test_create_customer_returns_a_working_kit_and_goes_live_with_the_first_record(api, server):
    made = new_customer(api, integration="hybrid", platforms=["ios", "android"], provider="adjust",
                        events_per_day=100_000)
    c, kit = made["customer"], made["kit"]
    assert c["status"] == "onboarding" and c["onboarding_seconds"] is None
    assert kit["ingest_url"] == server.url
    assert [a["platform"] for a in kit["apps"]] == ["ios", "android"]
    assert set(kit["snippets"]) == {"sdk_ios", "sdk_android", "s2s_ios", "s2s_android"}
    for app in kit["apps"]:
        assert app["sdk_key"].startswith("sdk_") and app["secret_key"].startswith("sec_")
        assert app["settings"]["click_window"] == "7d"
        assert app["sdk_key"] in kit["snippets"][f"sdk_{app['platform']}"]
        assert app["secret_key"] in kit["snippets"][f"s2s_{app['platform']}"]
    assert kit["apps"][0]["sdk_key"] in kit["test_event"]["curl"]
    # the keys are stored hashed only: the plain key is nowhere in the tracker's answers afterwards
    listed = api.get("/v1/customers").json()["customers"]
    mine = next(x for x in listed if x["id"] == c["id"])
    assert mine["status"] == "onboarding" and mine["onboarding_seconds"] is None
    assert kit["apps"][0]["sdk_key"] not in api.get(f"/v1/customers/{c['id']}").text

    # the android app's first record makes the customer live
    r = post_batch(server.url, kit["apps"][1]["sdk_key"], [{"type": "open", "id": "first", "ts": now_ms()}])
    assert r.status_code == 200 and r.json()["accepted"] == 1
    got = api.get(f"/v1/customers/{c['id']}").json()
    assert got["status"] == "live"
    assert 0 <= got["onboarding_seconds"] < 60
    assert got["first_record_at"] >= got["created_at"]
    listed = {x["id"]: x for x in api.get("/v1/customers").json()["customers"]}
    assert listed[c["id"]]["status"] == "live"
    assert listed[c["id"]]["onboarding_seconds"] == got["onboarding_seconds"]


def test_customer_goes_live_by_itself(api, server, database):
    made = new_customer(api)
    post_batch(server.url, made["kit"]["apps"][0]["sdk_key"], [{"type": "open", "id": "o", "ts": now_ms()}])
    # no API request for this customer: the tracker's background task moves it (it checks every second)
    cid = made["customer"]["id"]
    wait_for(lambda: database.fetchval("SELECT status FROM tracker.customers WHERE customer_id = $1", cid) == "live",
             timeout=10, every=0.2)
    log = database.fetch("SELECT status FROM tracker.status_log WHERE customer_id = $1 ORDER BY id", cid)
    assert [r["status"] for r in log] == ["onboarding", "live"]


def test_bad_customer_input_names_the_field_and_value(api):
    cases = [
        ({"vertical": "games"}, "vertical: expected one of gaming, ecommerce, fintech, other, got 'games'"),
        ({"provider": "tune"},
         "provider: expected one of appsflyer, adjust, branch, singular, kochava, none, got 'tune'"),
        ({"platforms": ["ios", "web"]}, "platforms: expected ios or android, got 'web'"),
        ({"platforms": ["ios", "ios"]}, "platforms: ios given twice"),
        ({"events_per_day": "lots"}, "events_per_day: expected a whole number 0..1e+10, got 'lots'"),
        ({"events_per_day": -1}, "events_per_day: expected a whole number 0..1e+10, got -1"),
        ({"integration": None}, "integration: expected one of sdk, s2s, hybrid, got None"),
        ({"company": ""}, "company: expected 1 to 100 printable characters, got ''"),
        ({"plan_price": True}, "plan_price: expected a number 0..1e+07, got True"),
        ({"colour": "red"}, "body: unknown field 'colour'"),
    ]
    base = {"company": "Bad Input Co", "vertical": "gaming", "provider": "appsflyer", "events_per_day": 1,
            "integration": "sdk", "platforms": ["ios"]}
    for change, message in cases:
        r = api.post("/v1/customers", json={**base, **change})
        assert r.status_code == 400, (change, r.text)
        assert r.json()["error"] == message
    assert api.post("/v1/customers", content=b"{not json", headers={"content-type": "application/json"}
                    ).status_code == 400
    r = api.post("/v1/customers", content=b"x" * 70_000)
    assert r.status_code == 413 and "larger than 65536 bytes" in r.json()["error"]
    # nothing was created by any of these
    assert not [c for c in api.get("/v1/customers").json()["customers"] if c["company"] == "Bad Input Co"]


def test_duplicate_company_is_refused_whatever_the_case(api):
    made = new_customer(api)
    r = api.post("/v1/customers", json={"company": made["customer"]["company"].upper(), "vertical": "other",
                                        "provider": "none", "events_per_day": 1, "integration": "s2s",
                                        "platforms": "android"})
    assert r.status_code == 409 and "exists already" in r.json()["error"]


def test_status_changes_by_hand(api, server):
    made = new_customer(api)
    cid = made["customer"]["id"]
    r = api.patch(f"/v1/customers/{cid}", json={"status": "live"})
    assert r.status_code == 409 and "by itself" in r.json()["error"]
    assert api.patch(f"/v1/customers/{cid}", json={"status": "sleeping"}).status_code == 400
    post_batch(server.url, made["kit"]["apps"][0]["sdk_key"], [{"type": "open", "id": "o", "ts": now_ms()}])
    assert api.get(f"/v1/customers/{cid}").json()["status"] == "live"
    r = api.patch(f"/v1/customers/{cid}", json={"status": "paused", "plan_price": 1500})
    assert r.status_code == 200 and r.json()["status"] == "paused" and r.json()["plan_price"] == 1500
    assert api.patch(f"/v1/customers/{cid}", json={"status": "onboarding"}).status_code == 409
    assert api.get("/v1/customers/999999999").status_code == 404
    assert api.get("/v1/customers/abc").status_code == 404


def test_prices_are_seeded_with_sources_and_editable(api):
    prices = {p["provider"]: p for p in api.get("/v1/prices").json()["prices"]}
    assert set(prices) == {"appsflyer", "adjust", "branch", "singular", "kochava", "none"}
    assert prices["appsflyer"]["price_per_conversion"] == 0.07
    assert all(p["source"] for p in prices.values())
    assert "approximate" in prices["adjust"]["source"]
    r = api.put("/v1/prices/kochava", json={"price_per_conversion": 0.04, "source": "customer contract 2026"})
    assert r.status_code == 200 and r.json()["price_per_conversion"] == 0.04
    assert api.put("/v1/prices/kochava", json={"price_per_conversion": -1}).status_code == 400
    assert api.put("/v1/prices/nobody", json={"price_per_conversion": 1}).status_code == 404
    api.put("/v1/prices/kochava", json={"price_per_conversion": 0.03, "source": prices["kochava"]["source"]})


def test_cost_savings_count_attributed_installs_at_the_provider_price(api, server):
    made = new_customer(api, provider="appsflyer", plan_price=0.5)
    key = made["kit"]["apps"][0]["sdk_key"]
    t = now_ms()
    batch = []
    for i in range(10):
        batch.append({"type": "click", "id": f"c{i}", "ts": t - 3_600_000, "device": {"idfa": f"idfa-{i}"},
                      "campaign": {"network": "meta", "campaign": "spring"}})
        batch.append({"type": "install", "id": f"i{i}", "ts": t, "device": {"idfa": f"IDFA-{i}"}})
    batch.append({"type": "install", "id": "organic", "ts": t, "device": {"idfa": "someone-else"}})
    r = post_batch(server.url, key, batch)
    assert r.status_code == 200 and r.json()["accepted"] == 21
    got = api.get(f"/v1/customers/{made['customer']['id']}").json()
    s = got["cost_savings"]
    assert s["attributed_installs"] == 10  # the organic one is free at every provider
    assert s["price_per_conversion"] == 0.07
    assert s["provider_cost_to_date"] == 0.7
    # one day of data assumed at least: the month is projected from 10 installs a day
    assert s["projected_installs"] >= 10 * 28
    assert s["provider_cost"] == round(s["projected_installs"] * 0.07, 2)
    assert s["saved"] == round(s["provider_cost"] - 0.5, 2)
    assert s["percent"] == round(100 * s["saved"] / s["provider_cost"], 1) and s["validated"] is True


def test_figures_come_from_what_the_ingest_server_recorded(api, server):
    made = new_customer(api)
    key = made["kit"]["apps"][0]["sdk_key"]
    t = now_ms()
    for n in range(5):
        post_batch(server.url, key, [{"type": "open", "id": f"f{n}-{i}", "ts": t} for i in range(20)])
    post_batch(server.url, key, [{"type": "open", "id": "bad", "ts": "yesterday"}])
    cid = made["customer"]["id"]

    def recorded() -> dict | None:  # the ingest server writes its per-minute stats every 5 s
        got = api.get(f"/v1/customers/{cid}").json()
        return got if got["accepted"] >= 100 else None

    got = wait_for(recorded, timeout=15, every=0.5)
    assert got["accepted"] == 100
    assert got["records_per_day"] == 100.0  # over the last 24 hours
    assert 0 < got["p95_ms"] <= got["p99_ms"] <= 5000
    assert got["error_rate"] == 1 / 101  # one rejected record out of 101 received


def test_dashboard_figures_carry_every_criterion_with_its_target(api):
    d = api.get("/v1/dashboard").json()
    keys = [c["key"] for c in d["criteria"]]
    assert keys == ["customers_live", "new_this_week", "avg_onboarding_s", "satisfaction", "throughput",
                    "p95_latency_ms", "uptime", "error_rate", "mrr", "cost_savings", "attribution_agreement"]
    targets = {c["key"]: c["target"] for c in d["criteria"]}
    assert targets["customers_live"] == 5 and targets["new_this_week"] == 3
    assert targets["avg_onboarding_s"] == 300 and targets["satisfaction"] == 0.9
    assert targets["p95_latency_ms"] == 100 and targets["uptime"] == 0.999 and targets["mrr"] == 10_000
    for c in d["criteria"]:
        assert c["pass"] in (True, False, None)
        if c["value"] is not None and c["target"] is not None:
            assert c["pass"] == (c["value"] >= c["target"] if c["op"] == ">=" else c["value"] <= c["target"])
    assert re.fullmatch(r"\d{4}-W\d{2}", d["windows"]["week"])
    assert len(d["series"]["t"]) == len(d["series"]["p95_ms"]) > 0
    live = [c for c in d["customers"] if c["status"] == "live"]
    assert next(c for c in d["criteria"] if c["key"] == "mrr")["value"] == sum(c["plan_price"] for c in live)


def test_uptime_is_measured_by_probes(api, tracker):
    def probed() -> dict | None:
        u = api.get("/v1/uptime").json()
        return u if u["probes"] >= 3 else None

    u = wait_for(probed, timeout=10)
    assert u["uptime"] == 1.0 and u["failed"] == 0
    assert u["servers"][0]["url"].startswith("http://127.0.0.1:")
    assert "unmo_tracker_probes_total" in api.get("/metrics").text


def test_openapi_documents_exactly_the_routes(api, tracker):
    from unmo.tracker.app import create_app
    from unmo.tracker.settings import TrackerSettings

    doc = api.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    app = create_app(TrackerSettings(), "postgresql://unused")
    served = {(r.path, m.lower()) for r in app.routes if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD"}
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    assert any(isinstance(r, Mount) and r.path == "/static" for r in app.routes)
    from openapi_spec_validator import validate

    validate(doc)


def test_tracker_serves_its_static_files(tracker):
    for path in ("/static/dashboard.js", "/static/vendor/uPlot.iife.min.js", "/static/dashboard.css"):
        r = httpx.get(tracker.url + path)
        assert r.status_code == 200 and len(r.content) > 500, path


def test_logs_hold_no_keys_tokens_or_device_ids(api, server, tracker):
    made = new_customer(api)
    kit = made["kit"]
    post_batch(server.url, kit["apps"][0]["sdk_key"], [{"type": "install", "id": "l1", "ts": now_ms(),
                                                        "device": {"idfa": "6d92078a-8246-4ba4-ae5b-76104861e7dc"}}])
    api.post(f"/v1/customers/{made['customer']['id']}/agreement",
             content=b"device_id,network,campaign\n6d92078a-8246-4ba4-ae5b-76104861e7dc,meta,x\n")
    with httpx.Client(base_url=tracker.url, headers={"Authorization": "Bearer not-the-token-but-long"}) as bad:
        bad.get("/v1/customers")
    api.get("/v1/dashboard")
    text = tracker.log_path.read_text()
    assert "customer created" in text  # the log is the tracker's and it was written
    for secret in (kit["apps"][0]["sdk_key"], kit["apps"][0]["secret_key"], ADMIN_TOKEN, WEBHOOK_SECRET,
                   "6d92078a-8246-4ba4-ae5b-76104861e7dc", "not-the-token-but-long"):
        assert secret not in text
