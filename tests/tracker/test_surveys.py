"""Satisfaction surveys: created by themselves after go-live, answered once through an unguessable link."""

from __future__ import annotations

import httpx

from tests.support import now_ms, post_batch
from tests.tracker.conftest import ADMIN_TOKEN, new_customer, wait_for
from unmo.tracker.surveys import hash_token


def _live_customer(api, server):
    made = new_customer(api)
    post_batch(server.url, made["kit"]["apps"][0]["sdk_key"], [{"type": "open", "id": "o", "ts": now_ms()}])
    assert api.get(f"/v1/customers/{made['customer']['id']}").json()["status"] == "live"
    return made["customer"]


def _auto_survey(api, cid):
    def find():
        return next((s for s in api.get("/v1/surveys").json()["surveys"]
                     if s["customer_id"] == cid and s["automatic"]), None)

    return wait_for(find, timeout=10, every=0.2)  # the session's tracker surveys 1 s after go-live


def test_survey_appears_after_go_live_and_is_answered_once(api, server, tracker, database):
    customer = _live_customer(api, server)
    survey = _auto_survey(api, customer["id"])
    assert survey["answered_at"] is None and survey["link_issued_at"] is None
    link = api.post(f"/v1/surveys/{survey['id']}/link").json()["link"]
    assert link.startswith(tracker.url + "/survey/")
    token = link.rsplit("/", 1)[1]
    assert len(token) >= 43  # 256 random bits
    # stored hashed only
    stored = database.fetchval("SELECT token_hash FROM tracker.surveys WHERE survey_id = $1", survey["id"])
    assert bytes(stored) == hash_token(token)
    assert token.encode() not in bytes(stored)

    page = httpx.get(link)  # no admin token: the link is the credential
    assert page.status_code == 200 and customer["company"] in page.text and 'name="csat"' in page.text
    r = httpx.post(link, data={"csat": "5", "nps": "9", "comment": "onboarding took minutes"})
    assert r.status_code == 200 and "Thank you" in r.text
    again = httpx.post(link, json={"csat": 1})
    assert again.status_code == 404  # the token is gone once answered
    got = next(s for s in api.get("/v1/surveys").json()["surveys"] if s["id"] == survey["id"])
    assert (got["csat"], got["nps"], got["comment"]) == (5, 9, "onboarding took minutes")
    fig = api.get(f"/v1/customers/{customer['id']}").json()["satisfaction"]
    assert fig == {"answers": 1, "satisfaction": 1.0, "csat_avg": 5.0, "nps": 100.0}
    assert api.post(f"/v1/surveys/{survey['id']}/link").status_code == 409


def test_reissued_link_replaces_the_old_one_and_bad_answers_are_refused(api, server):
    customer = _live_customer(api, server)
    made = api.post(f"/v1/customers/{customer['id']}/surveys")
    assert made.status_code == 201
    old = made.json()["link"]
    new = api.post(f"/v1/surveys/{made.json()['id']}/link").json()["link"]
    assert old != new
    assert httpx.get(old).status_code == 404 and httpx.get(new).status_code == 200
    for body, message in (
        ({"csat": 6}, "csat: expected a whole number 1..5, got 6"),
        ({"csat": 4, "nps": 11}, "nps: expected a whole number 0..10, got 11"),
        ({"nps": 3}, "csat: expected a whole number 1..5, got None"),
        ({"csat": 4, "comment": "x" * 4001}, "comment: expected at most 4000 characters, got 4001"),
    ):
        r = httpx.post(new, json=body)
        assert r.status_code == 400 and r.json()["error"] == message
    assert httpx.post(new, json={"csat": 2}).json() == {"status": "recorded"}


def test_satisfaction_is_the_share_of_csat_4_and_5(api, server):
    customer = _live_customer(api, server)
    for csat in (5, 4, 2, 3):
        link = api.post(f"/v1/customers/{customer['id']}/surveys").json()["link"]
        assert httpx.post(link, json={"csat": csat, "nps": csat * 2}).status_code == 200
    fig = api.get(f"/v1/customers/{customer['id']}").json()["satisfaction"]
    assert fig["answers"] == 4 and fig["satisfaction"] == 0.5 and fig["csat_avg"] == 3.5
    # NPS: promoters (9-10) 1 of 4 (nps 10), detractors (0-6) 2 of 4 (4, 6): 25 - 50
    assert fig["nps"] == -25.0


def test_unknown_links_and_wrong_tokens_are_rate_limited(tracker):
    # from 127.0.0.2 (still loopback): the limit blocks that address for a minute, not the other tests'
    def client(token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=tracker.url, headers=headers, timeout=10,
                            transport=httpx.HTTPTransport(local_address="127.0.0.2"))

    with client(None) as anon:
        codes = [anon.get("/survey/" + "x" * 43).status_code for _ in range(21)]
    assert codes[:20] == [404] * 20 and codes[20] == 429
    with client("wrong-token-" + "y" * 20) as wrong:
        codes = [wrong.get("/v1/customers").status_code for _ in range(21)]
    assert codes[:20] == [401] * 20 and codes[20] == 429
    with client(ADMIN_TOKEN) as right:  # the right token is refused too while the address is blocked
        r = right.get("/v1/customers")
        assert r.status_code == 429 and int(r.headers["retry-after"]) <= 61
    with tracker.client() as other:  # another address is not
        assert other.get("/v1/customers").status_code == 200
