"""The OpenAPI paths of the two reports, merged into the server's document (unmo.server.openapi)."""

from __future__ import annotations

from typing import Any

from unmo.reports.query import DAILY_COLUMNS, DEFAULT_DAYS, DIMENSIONS, MAX_DAY_N, MAX_RANGE_DAYS, MAX_ROWS

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_RETRY = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
_MONEY = {"type": "object", "additionalProperties": {"type": "number"},
          "description": "currency (ISO 4217) -> exact decimal amount"}
_LABEL = {"type": ["string", "null"]}


def _param(name: str, description: str, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def _common() -> list[dict[str, Any]]:
    return [
        _param("from", "first local day, YYYY-MM-DD", True, type="string", format="date"),
        _param("to", f"last local day, YYYY-MM-DD; at most {MAX_RANGE_DAYS} days from `from`", True,
               type="string", format="date"),
        _param("group_by", f"comma-separated, any of {', '.join(DIMENSIONS)}; empty: one row per day",
               type="string", default="network,campaign"),
        _param("tz", "IANA time zone of the days", type="string", default="UTC"),
        _param("format", "json or csv (RFC 4180, header row)", type="string", enum=["json", "csv"], default="json"),
    ]


def _responses(row: dict[str, Any], totals: dict[str, Any]) -> dict[str, Any]:
    body = {"type": "object", "required": ["report", "app_id", "from", "to", "tz", "group_by", "rows", "totals"],
            "properties": {"report": {"type": "string"}, "app_id": {"type": "integer"},
                           "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
                           "tz": {"type": "string"}, "group_by": {"type": "array", "items": {"type": "string"}},
                           "currencies": {"type": "array", "items": {"type": "string"}},
                           "rows": {"type": "array", "items": row}, "totals": totals}}
    return {
        "200": {"description": "the report", "content": {"application/json": {"schema": body},
                                                          "text/csv": {"schema": {"type": "string"}}}},
        "400": {"description": f"a bad parameter (named in `parameter`), or more than {MAX_ROWS} rows "
                               "(`limit`: rows)", "content": _ERROR},
        "401": {"description": "missing or unknown key", "content": _ERROR},
        "403": {"description": "an sdk key", "content": _ERROR},
        "503": {"description": "database unavailable or busy", "headers": _RETRY, "content": _ERROR},
    }


def report_paths() -> dict[str, Any]:
    """``/v1/reports/daily`` and ``/v1/reports/cohorts`` as OpenAPI 3.1 path items."""
    labels = {d: _LABEL for d in DIMENSIONS}
    counts = {c: {"type": "integer"} for c in DAILY_COLUMNS.values()}
    daily_row = {"type": "object", "properties": {"date": {"type": "string", "format": "date"}, **labels, **counts,
                                                  "revenue": _MONEY}}
    day = {"type": ["object", "null"], "properties": {
        "retained": {"type": "integer"}, "retention": {"type": ["number", "null"]}, "revenue": _MONEY,
        "complete": {"type": "boolean"}}}
    cohort_row = {"type": "object", "properties": {
        "date": {"type": "string", "format": "date"}, **labels, "installs": {"type": "integer"}, "revenue": _MONEY,
        "days": {"type": "object", "additionalProperties": day}}}
    security: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]
    return {
        "/v1/reports/daily": {"get": {
            "summary": "Per day and group: clicks, impressions, installs, reinstalls, organic installs, events, "
                       "revenue per currency, CTIT-rejected and blocklisted touches (secret key)",
            "security": security,
            "parameters": _common(),
            "responses": _responses(daily_row, {"type": "object", "properties": {**counts, "revenue": _MONEY}}),
        }},
        "/v1/reports/cohorts": {"get": {
            "summary": "Per install day and group: installs, revenue to date, and for each day N after the "
                       "install the devices active that day and the revenue through day N (secret key)",
            "security": security,
            "parameters": [*_common(), _param(
                "days", f"comma-separated days after the install, 0..{MAX_DAY_N}", type="string",
                default=",".join(map(str, DEFAULT_DAYS)))],
            "responses": _responses(cohort_row, {"type": "object"}),
        }},
    }
