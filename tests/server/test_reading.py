"""GET /v1/installs/{id} and /v1/attribution, keys' permissions and tenant isolation."""

import httpx

from tests.support import now_ms, post_batch


def _get(server, path, key, **params):
    return httpx.get(server.url + path, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def _attributed_install(server, app, device="IDFA-READ-1"):
    t = now_ms()
    r = post_batch(server.url, app["sdk_key"], [
        {"type": "click", "id": "rc-1", "ts": t - 120_000, "device": {"idfa": device},
         "campaign": {"network": "tiktok", "campaign": "launch"}},
        {"type": "install", "id": "ri-1", "ts": t, "device": {"idfa": device, "idfv": "VENDOR-1"}},
    ])
    assert r.status_code == 200, r.text
    return r.json()["installs"][0]


def test_install_result_by_id_with_the_secret_key(server, app):
    original = _attributed_install(server, app)
    r = _get(server, "/v1/installs/ri-1", app["secret_key"])
    assert r.status_code == 200
    got = r.json()
    assert got["id"] == "ri-1" and got["status"] == "attributed" and got["touch_id"] == "rc-1"
    for k in ("network", "campaign", "touch", "match", "touch_ts", "ctit_s", "rejected"):
        assert got[k] == original[k]
    assert _get(server, "/v1/installs/nope", app["secret_key"]).status_code == 404


def test_sdk_key_may_send_but_not_read_installs(server, app):
    _attributed_install(server, app)
    r = _get(server, "/v1/installs/ri-1", app["sdk_key"])
    assert r.status_code == 403
    assert "sdk key" in r.json()["error"]


def test_attribution_by_any_identifier_with_either_key(server, app):
    _attributed_install(server, app)
    for key in (app["sdk_key"], app["secret_key"]):
        for device in ("idfa-read-1", "IDFA-READ-1", "vendor-1"):
            r = _get(server, "/v1/attribution", key, device=device)
            assert r.status_code == 200, (device, r.text)
            assert r.json()["install_id"] == "ri-1" and r.json()["network"] == "tiktok"
    assert _get(server, "/v1/attribution", app["sdk_key"], device="unknown").status_code == 404
    assert _get(server, "/v1/attribution", app["sdk_key"]).status_code == 400
    r = _get(server, "/v1/attribution", app["sdk_key"], device="00000000-0000-0000-0000-000000000000")
    assert r.status_code == 400


def test_one_apps_key_never_reaches_another_apps_data(server, database, app):
    other = database.create_app()
    _attributed_install(server, app)
    assert _get(server, "/v1/installs/ri-1", other["secret_key"]).status_code == 404
    assert _get(server, "/v1/attribution", other["secret_key"], device="idfa-read-1").status_code == 404
    # the same record ids and devices in the other app are a separate world: no duplicates, no attribution
    t = now_ms()
    r = post_batch(server.url, other["sdk_key"], [
        {"type": "install", "id": "ri-1", "ts": t, "device": {"idfa": "IDFA-READ-1"}}]).json()
    assert r["accepted"] == 1 and r["duplicates"] == 0
    assert r["installs"][0]["status"] == "organic"
    assert database.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", other["app_id"]) == 1
