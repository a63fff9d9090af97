"""The onboarding kit: what a new customer needs to send its first event (spec: tracker.md).

Keys, the public ingest URL, a snippet for the chosen integration (the SDK's
batch call from the app, the server-to-server call, or both for ``hybrid``), a
ready ``curl`` that sends one test event, and each app's attribution settings.
Keys appear here once: unmo stores only their hashes.
"""

from __future__ import annotations

import shlex
from typing import Any

from unmo.apps import App, AppSettings

TEST_EVENT_NAME = "unmo_onboarding_test"

_SWIFT = """\
// iOS ({name}): the SDK's batch call. The sdk key is safe to ship in the app: it can only send records.
var request = URLRequest(url: URL(string: "{url}/v1/batch")!)
request.httpMethod = "POST"
request.setValue("Bearer {sdk_key}", forHTTPHeaderField: "Authorization")
request.setValue("application/json", forHTTPHeaderField: "Content-Type")
let install: [String: Any] = [
    "type": "install",
    "id": UUID().uuidString,                                  // unique per record: retries are deduplicated
    "ts": Int(Date().timeIntervalSince1970 * 1000),
    "device": ["idfv": UIDevice.current.identifierForVendor?.uuidString ?? "",
               "idfa": idfaIfAuthorized ?? "",                // ATTrackingManager consent
               "platform": "ios", "os": "iOS", "os_version": UIDevice.current.systemVersion],
]
request.httpBody = try JSONSerialization.data(withJSONObject: [
    "sent_at": ISO8601DateFormatter().string(from: Date()), "batch": [install]])
URLSession.shared.dataTask(with: request) {{ data, response, error in
    // 200: stored (body.installs[0] is the attribution); 429/503: retry after Retry-After with the same ids
}}.resume()
"""

_KOTLIN = """\
// Android ({name}): the SDK's batch call (OkHttp). The sdk key can only send records.
val install = JSONObject()
    .put("type", "install")
    .put("id", UUID.randomUUID().toString())                  // unique per record: retries are deduplicated
    .put("ts", System.currentTimeMillis())
    .put("device", JSONObject().put("gaid", gaid).put("android_id", androidId)
        .put("platform", "android").put("os", "Android").put("os_version", Build.VERSION.RELEASE))
    .put("referrer", installReferrer)                         // Play Install Referrer API: enables click_id match
val body = JSONObject().put("sent_at", Instant.now().toString()).put("batch", JSONArray().put(install))
val request = Request.Builder().url("{url}/v1/batch")
    .header("Authorization", "Bearer {sdk_key}")
    .post(body.toString().toRequestBody("application/json".toMediaType()))
    .build()
OkHttpClient().newCall(request).enqueue(callback)  // 429/503: retry after Retry-After with the same ids
"""

_S2S = """\
# Server to server ({name}): send installs, clicks and events from your backend with the secret key
# (never ship it in an app). Up to 10,000 records or 5 MB per batch; gzip welcome.
curl -sS -X POST {batch_url} \\
  -H {auth} \\
  -H 'Content-Type: application/json' \\
  --data-binary @- <<'JSON'
{{"batch": [
  {{"type": "click", "id": "click-123", "ts": "2026-01-01T12:00:00Z",
   "device": {{"{id_field}": "<device id>", "ip": "203.0.113.7"}},
   "campaign": {{"network": "<network>", "campaign": "<campaign>"}}}},
  {{"type": "install", "id": "install-456", "ts": "2026-01-01T12:05:00Z",
   "device": {{"{id_field}": "<device id>", "platform": "{platform}"}}}},
  {{"type": "event", "id": "order-789", "ts": "2026-01-01T12:30:00Z", "name": "purchase",
   "revenue": 4.99, "currency": "USD", "device": {{"{id_field}": "<device id>"}}}}
]}}
JSON
# Read results with the same key: GET {url}/v1/installs/install-456,
# GET {url}/v1/attribution?device=<device id>, GET {url}/v1/reports/daily?from=...&to=...
"""


def settings_json(settings: AppSettings) -> dict[str, Any]:
    """App settings as the kit shows them (durations spelt like ``7d``)."""
    return dict(App(app_id=0, name="", platform=None, settings=settings).to_json()["settings"])


def test_event_curl(ingest_url: str, sdk_key: str) -> str:
    """A shell command that sends one event and prints the answer; ``ts`` and ``id`` come from ``date``."""
    body = (
        '{"batch":[{"type":"event","id":"onboarding-test-\'"$(date +%s)-$RANDOM"\'",'
        '"ts":\'"$(($(date +%s)*1000))"\',"name":"' + TEST_EVENT_NAME + '"}]}'
    )
    return (
        f"curl -sS -X POST {shlex.quote(ingest_url + '/v1/batch')} "
        f"-H {shlex.quote('Authorization: Bearer ' + sdk_key)} -H 'Content-Type: application/json' "
        f"--data-binary '{body}'"
    )


def build_kit(customer: dict[str, Any], apps: list[dict[str, Any]], ingest_url: str | None) -> dict[str, Any]:
    """The kit for a just-created customer; ``apps`` carry the plain keys from create_app."""
    url = ingest_url or "http://127.0.0.1:8080"
    integration = customer["integration"]
    snippets: dict[str, str] = {}
    for app in apps:
        fill = {"name": app["name"], "url": url, "sdk_key": app["sdk_key"], "platform": app["platform"],
                "batch_url": shlex.quote(url + "/v1/batch"),
                "auth": shlex.quote("Authorization: Bearer " + app["secret_key"]),
                "id_field": "idfa" if app["platform"] == "ios" else "gaid"}
        if integration in ("sdk", "hybrid"):
            snippets[f"sdk_{app['platform']}"] = (_SWIFT if app["platform"] == "ios" else _KOTLIN).format(**fill)
        if integration in ("s2s", "hybrid"):
            snippets[f"s2s_{app['platform']}"] = _S2S.format(**fill)
    first = apps[0]
    return {
        "customer_id": customer["id"],
        "company": customer["company"],
        "integration": integration,
        "ingest_url": url,
        "apps": [
            {"app_id": a["app_id"], "name": a["name"], "platform": a["platform"], "sdk_key": a["sdk_key"],
             "secret_key": a["secret_key"], "settings": settings_json(AppSettings())}
            for a in apps
        ],
        "snippets": snippets,
        "test_event": {
            "app_id": first["app_id"],
            "platform": first["platform"],
            "name": TEST_EVENT_NAME,
            "curl": test_event_curl(url, first["sdk_key"]),
        },
        "notes": [
            "Keep the keys now: unmo stores only their hashes.",
            "The sdk key goes into the app (it can only send); the secret key stays on your servers.",
            "Onboarding completes with the first accepted record of any of these apps.",
            "Change attribution windows with `unmo apps set NAME --click-window 7d ...` (docs/attribution.md).",
        ],
    }
