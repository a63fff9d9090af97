"""The OpenAPI 3.1 document of the ingest API, served at /openapi.json.

Written by hand from the spec (ingest-api.md) and kept in step with the routes
and docs/api.md by tests/server/test_openapi.py.
"""

from __future__ import annotations

from typing import Any

from unmo import __version__
from unmo.reports.openapi import report_paths

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_STR = {"type": ["string", "null"]}


def _result(desc: str, id_field: str, result_props: dict[str, Any]) -> dict[str, Any]:
    """An install's attribution result (GET /v1/installs/{id}, GET /v1/attribution): its id, ts and result."""
    properties = {id_field: {"type": "string"}, "install_ts": {"type": "string"}, **result_props}
    return {"description": desc,
            "content": {"application/json": {"schema": {"type": "object", "properties": properties}}}}


def _err(desc: str, retry: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": desc,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry:
        out["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return out


def openapi_document() -> dict[str, Any]:
    device = {
        "type": "object",
        "properties": {
            **{
                k: {"type": "string", "maxLength": 256}
                for k in ("idfa", "gaid", "oaid", "idfv", "android_id")
            },
            "ip": {"type": "string", "description": "IPv4 or IPv6 address"},
            "ua": {"type": "string", "maxLength": 1024},
            "platform": {"enum": ["ios", "android"]},
            "os": {"type": "string"},
            "os_version": {"type": "string"},
            "model": {"type": "string"},
        },
    }
    campaign = {
        "type": "object",
        "properties": {
            k: {"type": "string", "maxLength": 256} for k in ("network", "campaign", "adset", "ad", "site")
        },
    }
    timestamp = {
        "oneOf": [
            {"type": "string", "format": "date-time"},
            {"type": "integer", "description": "epoch milliseconds"},
        ]
    }
    record = {
        "type": "object",
        "required": ["type", "id", "ts"],
        "properties": {
            "type": {"enum": ["click", "impression", "install", "open", "event"]},
            "id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "description": "unique per app; the dedup key",
            },
            "ts": timestamp,
            "device": device,
            "campaign": campaign,
            "referrer": {"type": "string", "description": "Google Play install referrer (installs)"},
            "name": {"type": "string", "description": "event name (events: required)"},
            "revenue": {"type": "number"},
            "currency": {
                "type": "string",
                "pattern": "^[A-Z]{3}$",
                "description": "ISO 4217; USD by default",
            },
            "properties": {"type": "object", "description": "at most 8 KB"},
        },
    }
    rejected = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "touch_id": {"type": "string"},
                "reason": {"enum": ["ctit_anomaly", "ip_blocklist"]},
            },
        },
    }
    result_props = {
        "status": {"enum": ["attributed", "organic", "reinstall", "reattributed"]},
        "touch": {"enum": ["click", "impression", None]},
        "match": {"enum": ["referrer", "device", "probabilistic", None]},
        "touch_id": _STR,
        "touch_ts": {"type": ["string", "null"], "format": "date-time"},
        **{k: _STR for k in ("network", "campaign", "adset", "ad", "site")},
        "ctit_s": {"type": ["number", "null"]},
        "rejected": rejected,
    }
    secured_both: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "unmo ingest API",
            "version": __version__,
            "description": "Mobile attribution and event ingestion (docs/api.md).",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "sdk_... or sec_... key"},
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "the key as user name, empty password",
                },
            },
            "schemas": {
                "Error": _ERROR,
                "Record": record,
                "Batch": {
                    "type": "object",
                    "required": ["batch"],
                    "properties": {
                        "sent_at": timestamp,
                        "batch": {
                            "type": "array",
                            "maxItems": 10000,
                            "items": {"$ref": "#/components/schemas/Record"},
                        },
                    },
                },
                "InstallResult": {
                    "type": "object",
                    "properties": {"index": {"type": "integer"}, "id": {"type": "string"}, **result_props},
                },
                "BatchResponse": {
                    "type": "object",
                    "required": ["accepted", "duplicates", "errors", "installs"],
                    "properties": {
                        "accepted": {"type": "integer"},
                        "duplicates": {"type": "integer"},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "index": {"type": "integer"},
                                    "id": _STR,
                                    "error": {"type": "string"},
                                },
                            },
                        },
                        "installs": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/InstallResult"},
                        },
                    },
                },
            },
        },
        "paths": {
            "/v1/batch": {
                "post": {
                    "summary": "Send a batch of records (sdk or secret key)",
                    "security": secured_both,
                    "parameters": [
                        {"name": "Content-Encoding", "in": "header", "schema": {"enum": ["gzip", "identity"]}}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Batch"}},
                            "application/msgpack": {"schema": {"$ref": "#/components/schemas/Batch"}},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "every accepted record is durably committed",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/BatchResponse"}}
                            },
                        },
                        "400": _err("malformed body, or no good record in the batch"),
                        "401": _err("missing or unknown key"),
                        "413": _err("a size limit was broken (body_bytes, records, record_bytes)"),
                        "415": _err("unsupported content type or encoding"),
                        "429": _err("the app is over its rate limit; nothing stored", retry=True),
                        "503": _err("overloaded or database unavailable; nothing stored", retry=True),
                    },
                }
            },
            "/v1/installs/{id}": {
                "get": {
                    "summary": "The attribution result of one install record (secret key)",
                    "security": secured_both,
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _result("the result", "id", result_props),
                        "401": _err("missing or unknown key"),
                        "403": _err("an sdk key"),
                        "404": _err("no such install"),
                        "503": _err("database unavailable", retry=True),
                    },
                }
            },
            "/v1/attribution": {
                "get": {
                    "summary": "A device's current attribution (sdk or secret key)",
                    "security": secured_both,
                    "parameters": [
                        {"name": "device", "in": "query", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _result("the device's install and its attribution", "install_id", result_props),
                        "400": _err("no usable identifier"),
                        "401": _err("missing or unknown key"),
                        "404": _err("no install known for the device"),
                        "503": _err("database unavailable", retry=True),
                    },
                }
            },
            **report_paths(),  # GET /v1/reports/daily and /v1/reports/cohorts (docs/reports.md)
            "/healthz": {
                "get": {"summary": "The process is alive", "responses": {"200": {"description": "alive"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Database reachable and not shedding load",
                    "responses": {"200": {"description": "ready"}, "503": _err("not ready", retry=True)},
                }
            },
            "/metrics": {
                "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}
            },
        },
    }
