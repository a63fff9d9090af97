"""Feedback: recorded, forwarded to a real local ticketing webhook as signed JSON, retried, logged,
never lost (also across a tracker restart), and streamed live."""

from __future__ import annotations

import json
import threading
import time

import httpx

from tests.tracker.conftest import ADMIN_TOKEN, WEBHOOK_SECRET, new_customer, wait_for
from unmo.tracker.feedback import safe_url, sign, verify


def _delivered(api, feedback_id):
    items = api.get("/v1/feedback", params={"limit": 1000}).json()["feedback"]
    item = next(f for f in items if f["id"] == feedback_id)
    return item if item["delivery"]["status"] == "delivered" else None


def test_webhook_down_then_up_retries_signed_and_logs_every_attempt(api, receiver):
    made = new_customer(api)
    cid = made["customer"]["id"]
    receiver.fail_next = 2
    r = api.post(f"/v1/customers/{cid}/feedback",
                 json={"category": "bug", "severity": "high", "text": "iOS installs show up late"})
    assert r.status_code == 201, r.text
    fb = r.json()
    assert fb["company"] == made["customer"]["company"] and fb["delivery"]["status"] == "pending"

    item = wait_for(lambda: _delivered(api, fb["id"]), timeout=20, every=0.2)
    assert item["delivery"]["attempts"] == 3

    log = [a for a in api.get("/v1/webhook").json()["attempts"] if a["feedback_id"] == fb["id"]]
    assert sorted(a["attempt"] for a in log) == [1, 2, 3]
    by_attempt = {a["attempt"]: a for a in log}
    assert by_attempt[1]["status"] == 500 and not by_attempt[1]["ok"] and "ticketing is down" in by_attempt[1]["error"]
    assert by_attempt[2]["status"] == 500 and not by_attempt[2]["ok"]
    assert by_attempt[3]["status"] == 200 and by_attempt[3]["ok"] and by_attempt[3]["error"] is None

    delivery_id = log[0]["delivery_id"]
    got = receiver.for_delivery(delivery_id)
    assert [g["failed"] for g in got] == [True, True, False]
    # backoff: the retries were spaced (base 200 ms, full jitter, at least half the base)
    assert got[1]["at"] - got[0]["at"] >= 0.09 and got[2]["at"] - got[1]["at"] >= 0.09
    for g in got:
        assert verify(WEBHOOK_SECRET, g["headers"]["X-Unmo-Signature"], g["body"])
        assert not verify("another-secret", g["headers"]["X-Unmo-Signature"], g["body"])
    assert [g["headers"]["X-Unmo-Attempt"] for g in got] == ["1", "2", "3"]
    payload = json.loads(got[-1]["body"])
    assert payload["type"] == "feedback.created" and payload["delivery_id"] == delivery_id
    assert payload["feedback"] == {**payload["feedback"], "id": fb["id"], "category": "bug", "severity": "high",
                                   "text": "iOS installs show up late"}
    assert payload["customer"] == {"id": cid, "company": made["customer"]["company"]}


def test_webhook_url_is_shown_without_secrets():
    assert safe_url("https://user:pw@tickets.example.com:8443/hook?token=abc") == "https://tickets.example.com:8443/hook?..."
    assert safe_url("http://127.0.0.1:9/x") == "http://127.0.0.1:9/x"


def test_signature_is_hmac_sha256_of_timestamp_and_body():
    body = b'{"a":1}'
    header = sign("s3cret", 1_700_000_000, body)
    # echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
    assert header == "t=1700000000,v1=" + __import__("hmac").new(
        b"s3cret", b'1700000000.{"a":1}', "sha256").hexdigest()
    now = int(time.time())
    assert verify("s3cret", sign("s3cret", now, body), body)
    assert not verify("s3cret", sign("s3cret", now, body), body + b" ")
    assert not verify("s3cret", sign("s3cret", now - 3600, body), body)  # replayed an hour later
    assert not verify("s3cret", "garbage", body)


def test_feedback_is_never_lost_when_the_webhook_is_down_across_a_restart(tracker, receiver):
    """Feedback taken while the ticketing system is down is delivered after the tracker restarts."""
    receiver.fail_next = 1_000_000
    try:
        with tracker.client() as c:
            cid = new_customer(c)["customer"]["id"]
            fb = c.post(f"/v1/customers/{cid}/feedback", json={"category": "feature", "text": "CSV export"}).json()

            def failed_attempts():
                return [a for a in c.get("/v1/webhook").json()["attempts"] if a["feedback_id"] == fb["id"]]

            failed = wait_for(failed_attempts, timeout=10)
            assert all(not a["ok"] and a["status"] == 500 for a in failed)
            assert c.get("/v1/webhook").json()["pending"] >= 1
        tracker.stop()  # SIGTERM while the delivery is pending
    finally:
        receiver.fail_next = 0
    tracker.start()
    with tracker.client() as c:
        item = wait_for(lambda: _delivered(c, fb["id"]), timeout=20, every=0.2)
        assert item["delivery"]["attempts"] > len(failed)
        assert item["delivery"]["last_error"] is None


def test_bad_feedback_is_refused(api):
    cid = new_customer(api)["customer"]["id"]
    for body, message in (
        ({"category": "rant", "text": "x"}, "category: expected one of bug, feature, question, praise, got 'rant'"),
        ({"category": "bug", "severity": "urgent", "text": "x"},
         "severity: expected one of low, medium, high, critical, got 'urgent'"),
        ({"category": "bug", "text": "  "}, "text: expected the feedback text, got '  '"),
        ({"category": "bug", "text": "x" * 10_001}, "text: expected at most 10000 characters, got 10001"),
    ):
        r = api.post(f"/v1/customers/{cid}/feedback", json=body)
        assert r.status_code == 400 and r.json()["error"] == message
    assert api.post("/v1/customers/424242424/feedback", json={"category": "bug", "text": "x"}).status_code == 404
    assert api.get(f"/v1/customers/{cid}/feedback").json()["feedback"] == []


def test_live_feed_streams_new_feedback(api, tracker):
    cid = new_customer(api)["customer"]["id"]
    events: list[dict] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", tracker.url + "/v1/feedback/stream",
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=15) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            block: dict[str, str] = {}
            for line in r.iter_lines():
                if line == "":
                    if block.get("event") == "hello":
                        ready.set()
                    if block.get("event") == "feedback":
                        events.append(json.loads(block["data"]))
                        return
                    block = {}
                elif ":" in line and not line.startswith(":"):
                    k, _, v = line.partition(":")
                    block[k] = v.strip()

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    fb = api.post(f"/v1/customers/{cid}/feedback", json={"category": "praise", "text": "fast!"}).json()
    t.join(15)
    assert events and events[0]["id"] == fb["id"] and events[0]["text"] == "fast!"
