from tests.support import now_ms, post_batch


def test_click_install_event_round_trip(server, app):
    t = now_ms()
    r = post_batch(server.url, app["sdk_key"], [
        {"type": "click", "id": "c1", "ts": t - 60_000, "device": {"gaid": "G-1"}, "campaign": {"network": "n"}},
        {"type": "install", "id": "i1", "ts": t, "device": {"gaid": "g-1"}},
    ])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2
    assert body["installs"][0]["status"] == "attributed"
    assert body["installs"][0]["touch_id"] == "c1"
