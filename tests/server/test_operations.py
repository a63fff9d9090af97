"""/healthz, /readyz, /metrics, /openapi.json and what the logs never contain."""

import re

import httpx

from tests.support import ROOT, now_ms, post_batch


def test_health_and_readiness(server):
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
    r = httpx.get(server.url + "/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_metrics_count_records_by_type_and_outcome(server, app):
    t = now_ms()
    post_batch(server.url, app["sdk_key"], [
        {"type": "open", "id": "m-o1", "ts": t}, {"type": "open", "id": "m-o1", "ts": t},
        {"type": "open", "id": "m-bad", "ts": "x"}])
    text = httpx.get(server.url + "/metrics").text
    for name in ("unmo_records_total", "unmo_batch_seconds_bucket", "unmo_queue_records", "unmo_commit_seconds",
                 "unmo_db_pool_in_use", "unmo_db_pool_size", "process_resident_memory_bytes",
                 "unmo_gc_full_seconds", "python_gc_collections_total"):
        assert name in text, name
    opens = re.search(r'unmo_records_total\{outcome="accepted",type="open"\} (\d+)', text)
    dups = re.search(r'unmo_records_total\{outcome="duplicate",type="open"\} (\d+)', text)
    assert opens and int(float(opens.group(1))) >= 1
    assert dups and int(float(dups.group(1))) >= 1


def test_openapi_document_lists_every_route_and_is_valid(server):
    doc = httpx.get(server.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    for path, method in [("/v1/batch", "post"), ("/v1/installs/{id}", "get"), ("/v1/attribution", "get"),
                         ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get"), ("/openapi.json", "get")]:
        assert method in doc["paths"][path], path
    batch = doc["paths"]["/v1/batch"]["post"]["responses"]
    assert {"200", "400", "401", "413", "429", "503"} <= set(batch)
    record = doc["components"]["schemas"]["Record"]
    assert record["required"] == ["type", "id", "ts"]
    assert record["properties"]["type"]["enum"] == ["click", "impression", "install", "open", "event"]
    from openapi_spec_validator import validate

    validate(doc)


def test_docs_api_md_describes_every_path_of_the_openapi_document(server):
    doc = httpx.get(server.url + "/openapi.json").json()
    text = (ROOT / "docs" / "api.md").read_text()
    for path in doc["paths"]:
        assert f"`{path}" in text or f"{path}`" in text or f" {path}" in text, f"docs/api.md does not describe {path}"


def test_logs_hold_no_keys_and_no_device_ids(server, app):
    t = now_ms()
    secret_device = "5EC2E7DE-0000-4000-8000-00000000D1CE"
    post_batch(server.url, app["sdk_key"], [
        {"type": "install", "id": "log-1", "ts": t, "device": {"idfa": secret_device, "ip": "198.51.100.23"}},
        {"type": "open", "id": "log-2", "ts": "bad " + secret_device}])
    httpx.post(server.url + "/v1/batch", json={"batch": []}, headers={"Authorization": "Bearer sdk_guessing_12345"})
    log = server.log_path.read_text()
    assert log, "the server should have logged something"
    for secret in (app["sdk_key"], app["secret_key"], secret_device, secret_device.lower(), "sdk_guessing_12345"):
        assert secret not in log


def test_per_app_minute_figures_for_the_tracker(server, database, app):
    import time

    t = now_ms()
    post_batch(server.url, app["sdk_key"], [
        {"type": "open", "id": "st-1", "ts": t}, {"type": "click", "id": "st-2", "ts": t, "campaign": {"network": "n"}},
        {"type": "open", "id": "st-bad", "ts": "never"}])
    post_batch(server.url, app["sdk_key"], [{"type": "open", "id": "st-1", "ts": t}])
    deadline = time.monotonic() + 15
    rows = []
    while time.monotonic() < deadline:  # the server stores them every 5 s
        rows = database.fetch("SELECT * FROM unmo.ingest_minute WHERE app_id = $1", app["app_id"])
        if rows and sum(r["batches"] for r in rows) >= 2:
            break
        time.sleep(0.5)
    assert sum(r["batches"] for r in rows) == 2
    assert sum(r["accepted"] for r in rows) == 2
    assert sum(r["duplicates"] for r in rows) == 1
    assert sum(r["rejected"] for r in rows) == 1
    import json

    by_kind: dict = {}
    for r in rows:
        for kind, counts in json.loads(r["by_kind"]).items():
            for k, n in counts.items():
                by_kind.setdefault(kind, {}).setdefault(k, 0)
                by_kind[kind][k] += n
    assert by_kind == {"open": {"accepted": 1, "duplicate": 1}, "click": {"accepted": 1}}
    assert sum(sum(r["latency_buckets"]) for r in rows) == 2
