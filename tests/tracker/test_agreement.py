"""Attribution agreement: a provider's install report against unmo's results, device by device.

The AppsFlyer fixture is their raw-data installs export header (data/appsflyer-raw-installs-header.csv,
copied from the published column list in shared/data), filled with rows in their value formats.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

from tests.support import now_ms, post_batch
from tests.tracker.conftest import new_customer

HEADER = (Path(__file__).parent / "data" / "appsflyer-raw-installs-header.csv").read_text().strip().split(",")


def appsflyer_csv(rows: list[dict[str, str]], header: list[str] = HEADER) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(header)
    for row in rows:
        w.writerow([row.get(col, "") for col in header])
    return out.getvalue().encode()


def af_install(media: str, campaign: str, **device: str) -> dict[str, str]:
    return {"Attributed Touch Type": "click" if media.lower() not in ("", "organic") else "",
            "Attributed Touch Time": "2026-11-27 10:00:00", "Install Time": "2026-11-27 10:05:00",
            "Event Time": "2026-11-27 10:05:00", "Event Name": "install", "Event Value": '{"af_level":"1"}',
            "Event Source": "SDK", "Media Source": media, "Campaign": campaign, "Platform": "ios",
            "Country Code": "US", "App ID": "id123456789", **device}


def seed(api, server, platform="ios"):
    """A customer whose app attributed a1..a3 to meta/spring, b1 to google/brand, o1 organic."""
    made = new_customer(api, platforms=[platform])
    key = made["kit"]["apps"][0]["sdk_key"]
    t = now_ms()
    field = "idfa" if platform == "ios" else "gaid"
    batch = []
    for dev, net, camp in (("a1", "meta", "spring"), ("a2", "meta", "spring"), ("a3", "meta", "spring"),
                           ("b1", "google", "brand")):
        batch.append({"type": "click", "id": f"c-{dev}", "ts": t - 600_000, "device": {field: f"dev-{dev}"},
                      "campaign": {"network": net, "campaign": camp}})
    for dev in ("a1", "a2", "a3", "b1", "o1"):
        batch.append({"type": "install", "id": f"i-{dev}", "ts": t, "device": {field: f"DEV-{dev}"}})
    r = post_batch(server.url, key, batch)
    assert r.status_code == 200 and r.json()["accepted"] == 9
    assert [i["status"] for i in r.json()["installs"]] == ["attributed"] * 4 + ["organic"]
    return made["customer"]["id"]


def test_appsflyer_export_is_compared_device_by_device(api, server):
    cid = seed(api, server)
    rows = [
        af_install("Meta", "spring", IDFA="dev-a1"),                 # agrees (case-insensitive network)
        af_install("meta", "summer", IDFA="dev-a2"),                 # campaign differs
        af_install("googleadwords_int", "spring", IDFA="dev-a3"),    # network differs
        af_install("organic", "", IDFA="dev-b1"),                    # provider organic, unmo paid
        af_install("", "", IDFA="dev-o1"),                           # both organic: agrees
        af_install("meta", "spring", IDFA="dev-zz"),                 # unmo never saw this device
        {**af_install("meta", "spring", IDFA="dev-a1"), "Event Name": "af_purchase"},  # not an install: skipped
        af_install("meta", "spring"),                                # no device id at all: skipped
    ]
    r = api.post(f"/v1/customers/{cid}/agreement?filename=installs.csv", content=appsflyer_csv(rows),
                 headers={"content-type": "text/csv"})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["format"] == "appsflyer" and run["filename"] == "installs.csv"
    assert (run["rows"], run["skipped"], run["compared"], run["agreed"], run["not_in_unmo"]) == (6, 2, 5, 2, 1)
    assert run["agreement"] == 2 / 5
    assert run["disagreements_by_reason"] == {"campaign": 1, "network": 1, "organic_vs_paid": 1, "not_in_unmo": 1}
    by_line = {d["line"]: d for d in run["disagreements"]}
    assert set(by_line) == {3, 4, 5, 7}  # file lines (the header is line 1)
    assert by_line[3]["reason"] == "campaign" and by_line[3]["unmo"]["campaign"] == "spring"
    assert by_line[4]["provider"]["network"] == "googleadwords_int" and by_line[4]["unmo"]["network"] == "meta"
    assert by_line[5]["provider"]["network"] is None and by_line[5]["unmo"]["network"] == "google"
    assert by_line[7]["unmo"] == {"status": None, "network": None, "campaign": None}
    assert by_line[3]["device"] == "de..."  # masked: a short id shows two characters, a long one 4 + 4
    # the latest run is what the customer's figures show
    latest = api.get(f"/v1/customers/{cid}/agreement").json()
    assert latest["run_id"] == run["run_id"]
    assert api.get(f"/v1/customers/{cid}").json()["agreement"]["share"] == 2 / 5


def test_columns_are_read_by_name_not_position(api, server):
    cid = seed(api, server, platform="android")
    header = [*HEADER, "Match Type", "Device Model", "OAID", "Store Reinstall"]
    random.Random(7).shuffle(header)
    rows = [af_install(net, camp, **{"Advertising ID": f"dev-{d}", "Match Type": "id_matching"})
            for d, net, camp in (("a1", "meta", "spring"), ("a2", "meta", "spring"), ("a3", "meta", "spring"),
                                 ("b1", "google", "brand"), ("o1", "organic", ""))]
    r = api.post(f"/v1/customers/{cid}/agreement", content=appsflyer_csv(rows, header))
    assert r.status_code == 201, r.text
    assert r.json()["agreement"] == 1.0 and r.json()["compared"] == 5


def test_plain_device_network_campaign_file(api, server):
    cid = seed(api, server)
    body = ("\ufeffdevice_id,network,campaign\n"         # with a BOM, as Excel writes it
            "DEV-A1,meta,spring\ndev-b1,google,\ndev-o1,,\ndev-a2,tiktok,x\n").encode()
    r = api.post(f"/v1/customers/{cid}/agreement", content=body)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["format"] == "plain" and run["compared"] == 4 and run["agreed"] == 3
    assert run["disagreements"][0]["line"] == 5 and run["disagreements"][0]["reason"] == "network"


def test_bad_uploads_are_refused_with_the_reason(api, server):
    cid = seed(api, server)
    cases = [
        (b"", "upload: the file is empty (expected a CSV header line)"),
        (b"foo,bar\n1,2\n", "upload: expected an AppsFlyer raw-data installs export (with a 'Media Source' column) "
                           "or a device_id,network,campaign file, got header 'foo,bar'"),
        (b"device_id,network,campaign\n\xff\xfe,x,y\n",
         "upload: expected UTF-8 CSV, got undecodable bytes at offset 27"),
        (b"device_id,network,campaign\n,meta,x\n", "upload: no install rows with a device identifier in the file"),
        (b"Media Source,Campaign\nmeta,x\n", "upload: AppsFlyer export without a device column (expected IDFA, "
                                              "Advertising ID, OAID, IDFV or Android ID)"),
    ]
    for body, message in cases:
        r = api.post(f"/v1/customers/{cid}/agreement", content=body)
        assert r.status_code == 400 and r.json()["error"] == message, r.text
    r = api.post(f"/v1/customers/{cid}/agreement", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 415
    r = api.post(f"/v1/customers/{cid}/agreement", content=b"device_id,network,campaign\n" + b"x,y,z\n" * 3_500_000)
    assert r.status_code == 413 and "larger than" in r.json()["error"]
    assert api.post("/v1/customers/987654321/agreement", content=b"device_id,network,campaign\na,b,c\n"
                    ).status_code == 404
    assert api.get(f"/v1/customers/{cid}/agreement").status_code == 404  # no run was stored
