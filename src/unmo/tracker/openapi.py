"""The OpenAPI 3.1 document of the tracker API, served at /openapi.json.

Written by hand from the spec (tracker.md) and kept in step with the routes by
tests/tracker/test_api.py (every route is documented, nothing else is).
"""

from __future__ import annotations

from typing import Any

from unmo import __version__

_ERR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}


def _ok(desc: str, schema: dict[str, Any] | None = None, ctype: str = "application/json") -> dict[str, Any]:
    return {"description": desc, "content": {ctype: {"schema": schema or {"type": "object"}}}}


def _op(summary: str, ok: dict[str, Any], *, status: str = "200", params: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None, public: bool = False, errors: tuple[str, ...] = ("400", "401", "404"),
        ) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {status: ok, **{e: _ERR for e in errors}}}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": body}
    if public:
        op["security"] = []
    return op


def openapi_document() -> dict[str, Any]:
    """The tracker API as an OpenAPI 3.1 document."""
    customer_in = {
        "type": "object",
        "required": ["company", "vertical", "provider", "events_per_day", "integration", "platforms"],
        "properties": {
            "company": {"type": "string", "minLength": 1, "maxLength": 100},
            "vertical": {"enum": ["gaming", "ecommerce", "fintech", "other"]},
            "provider": {"enum": ["appsflyer", "adjust", "branch", "singular", "kochava", "none"]},
            "events_per_day": {"type": "integer", "minimum": 0},
            "integration": {"enum": ["sdk", "s2s", "hybrid"]},
            "platforms": {"type": "array", "items": {"enum": ["ios", "android"]}, "minItems": 1, "maxItems": 2},
            "plan_price": {"type": "number", "minimum": 0, "description": "USD per month (default 2000)"},
            "contact_email": {"type": "string", "format": "email"},
        },
    }
    customer = {
        "type": "object",
        "required": ["id", "company", "status", "onboarding_seconds"],
        "properties": {
            "id": {"type": "integer"},
            "company": {"type": "string"},
            "status": {"enum": ["onboarding", "live", "paused", "churned"]},
            "onboarding_seconds": {"type": ["number", "null"],
                                   "description": "first accepted record minus creation; null until then"},
            **{k: v for k, v in customer_in["properties"].items() if k != "company"},  # type: ignore[attr-defined]
            "created_at": {"type": "string", "format": "date-time"},
            "first_record_at": {"type": ["string", "null"], "format": "date-time"},
            "live_at": {"type": ["string", "null"], "format": "date-time"},
        },
    }
    kit = {
        "type": "object",
        "properties": {
            "ingest_url": {"type": "string"},
            "apps": {"type": "array", "items": {"type": "object", "properties": {
                "app_id": {"type": "integer"}, "platform": {"type": "string"}, "sdk_key": {"type": "string"},
                "secret_key": {"type": "string"}, "settings": {"type": "object"}}}},
            "snippets": {"type": "object", "additionalProperties": {"type": "string"}},
            "test_event": {"type": "object", "properties": {"curl": {"type": "string"}}},
        },
    }
    json_body = {"application/json": {"schema": {"type": "object"}}}
    feedback_in = {"application/json": {"schema": {
        "type": "object", "required": ["category", "text"],
        "properties": {"category": {"enum": ["bug", "feature", "question", "praise"]},
                       "severity": {"enum": ["low", "medium", "high", "critical"], "default": "medium"},
                       "text": {"type": "string", "maxLength": 10000}}}}}
    answer_in = {
        "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/SurveyAnswer"}},
        "application/json": {"schema": {"$ref": "#/components/schemas/SurveyAnswer"}},
    }
    paths: dict[str, Any] = {
        "/": {"get": _op("The dashboard page (asks for the admin token; holds no data)",
                         _ok("page", {"type": "string"}, "text/html"), public=True, errors=())},
        "/healthz": {"get": _op("Process alive", _ok("ok"), public=True, errors=())},
        "/metrics": {"get": _op("Prometheus metrics", _ok("text format", {"type": "string"}, "text/plain"),
                                errors=("401",))},
        "/openapi.json": {"get": _op("This document", _ok("OpenAPI 3.1"), public=True, errors=())},
        "/survey/{token}": {
            "get": _op("Survey answer form", _ok("form", {"type": "string"}, "text/html"), public=True,
                       params=[{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
                       errors=("404", "429")),
            "post": _op("Answer a survey (once)", _ok("recorded"), public=True, body=answer_in,
                        params=[{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
                        errors=("400", "404", "409", "429")),
        },
        "/v1/customers": {
            "post": _op("Create a customer, its apps and keys; returns the onboarding kit",
                        _ok("created", {"type": "object", "properties": {
                            "customer": {"$ref": "#/components/schemas/Customer"},
                            "kit": {"$ref": "#/components/schemas/Kit"}}}),
                        status="201",
                        body={"application/json": {"schema": {"$ref": "#/components/schemas/NewCustomer"}}},
                        errors=("400", "401", "409", "413")),
            "get": _op("All customers", _ok("list", {"type": "object", "required": ["customers"], "properties": {
                "customers": {"type": "array", "items": {"$ref": "#/components/schemas/Customer"}}}}),
                errors=("401",)),
        },
        "/v1/customers/{id}": {
            "get": _op("A customer with its figures (last 24 h, this month's savings, agreement)", _ok("customer"),
                       params=[_ID]),
            "patch": _op("Change status (paused, churned, live) or plan_price", _ok("customer"), params=[_ID],
                         body=json_body, errors=("400", "401", "404", "409")),
        },
        "/v1/customers/{id}/agreement": {
            "post": _op("Upload the provider's install report (CSV body: AppsFlyer raw-data export or "
                        "device_id,network,campaign) and compare it with unmo", _ok("agreement run"),
                        status="201", params=[_ID, {"name": "filename", "in": "query", "schema": {"type": "string"}}],
                        body={"text/csv": {"schema": {"type": "string"}}}, errors=("400", "401", "404", "413", "415")),
            "get": _op("The latest agreement run", _ok("agreement run"), params=[_ID]),
        },
        "/v1/customers/{id}/feedback": {
            "post": _op("Record feedback and forward it to the ticketing webhook", _ok("feedback"), status="201",
                        params=[_ID], body=feedback_in),
            "get": _op("A customer's feedback, newest first", _ok("list"), params=[_ID]),
        },
        "/v1/customers/{id}/surveys": {
            "post": _op("Create a survey by hand and issue its link", _ok("survey and link"), status="201",
                        params=[_ID]),
        },
        "/v1/feedback": {"get": _op("All feedback, newest first", _ok("list"), params=[
            {"name": "after", "in": "query", "schema": {"type": "integer"}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000}}])},
        "/v1/feedback/stream": {"get": _op("Live feed of new feedback (server-sent events, event `feedback`)",
                                           _ok("event stream", {"type": "string"}, "text/event-stream"),
                                           errors=("401", "503"))},
        "/v1/webhook": {"get": _op("Webhook outbox and the log of every delivery attempt", _ok("status"),
                                   errors=("401",))},
        "/v1/surveys": {"get": _op("All surveys and their answers", _ok("list"), errors=("401",))},
        "/v1/surveys/{id}/link": {"post": _op("Issue a (new) answer link; the previous one stops working",
                                              _ok("link"), params=[_ID], errors=("401", "404", "409"))},
        "/v1/prices": {"get": _op("Provider price table (USD per conversion, with sources)", _ok("prices"),
                                  errors=("401",))},
        "/v1/prices/{provider}": {"put": _op("Change a provider's price", _ok("price"), params=[
            {"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}}], body=json_body)},
        "/v1/dashboard": {"get": _op("Every success criterion against its target, customers, charts",
                                     _ok("figures"), params=[{"name": "hours", "in": "query",
                                                              "schema": {"type": "integer", "default": 24}}])},
        "/v1/uptime": {"get": _op("Probe-based uptime of the ingest servers", _ok("uptime"),
                                  params=[{"name": "hours", "in": "query", "schema": {"type": "integer"}}])},
        "/v1/report": {"get": _op("The weekly results report", _ok("report"), params=[
            {"name": "week", "in": "query", "schema": {"type": "string", "pattern": "^\\d{4}-W\\d{2}$"}},
            {"name": "format", "in": "query", "schema": {"enum": ["json", "markdown", "html"]}}])},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "unmo Customer Success Tracker", "version": __version__,
                 "description": "Onboarding, pilot figures, satisfaction and feedback (docs/tracker.md)."},
        "servers": [{"url": "http://127.0.0.1:8084"}],
        "security": [{"admin": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer",
                                          "description": "UNMO_ADMIN_TOKEN"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "NewCustomer": customer_in,
                "Customer": customer,
                "Kit": kit,
                "SurveyAnswer": {"type": "object", "required": ["csat"], "properties": {
                    "csat": {"type": "integer", "minimum": 1, "maximum": 5},
                    "nps": {"type": "integer", "minimum": 0, "maximum": 10},
                    "comment": {"type": "string", "maxLength": 4000}}},
            },
        },
    }
