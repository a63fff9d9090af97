"""Reports as JSON, CSV (RFC 4180) and rich tables (docs/reports.md)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import msgspec
from rich.table import Table

from unmo.reports.query import DAILY_COLUMNS, Report

# Exact decimals stay exact numbers in JSON (4.99, not "4.99" and not 4.990000000000000213).
_json = msgspec.json.Encoder(decimal_format="number")
# Cells a spreadsheet would run as a formula (OWASP "CSV Injection"): campaign names come from outsiders.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_json(report: Report) -> bytes:
    """The report as one JSON document (the HTTP answer and ``unmo report --format json``)."""
    return _json.encode(report.to_json())


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _label(value: str | None) -> str:
    if value is None:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def header(report: Report) -> list[str]:
    """The CSV header: one column per value; revenue one column per currency (``revenue_USD``)."""
    p = report.params
    cols = ["date", *p.group_by]
    revenue = [f"revenue_{c}" for c in report.currencies]
    if report.kind == "daily":
        names = list(DAILY_COLUMNS.values())
        return cols + names[:8] + revenue + names[8:]
    cols += ["installs", *revenue]
    for n in p.days:
        cols += [f"day{n}_retained", f"day{n}_retention", *[f"day{n}_revenue_{c}" for c in report.currencies]]
    return cols


def _percent(value: float | None, complete: bool = True) -> str:
    return "" if value is None else f"{value * 100:.1f}%" + ("" if complete else "*")


def rows(report: Report, *, human: bool = False) -> list[list[str]]:
    """The CSV rows (without the header), as text; ``human``: retention in per cent, a day N that is not
    over yet for every install of the day marked ``*`` (the table)."""
    p = report.params
    out = []
    for row in report.rows:
        cells = [row["date"], *(_label(row[d]) for d in p.group_by)]
        revenue = [_text(row["revenue"].get(c, Decimal(0))) for c in report.currencies]
        if report.kind == "daily":
            names = list(DAILY_COLUMNS.values())
            cells += [_text(row[n]) for n in names[:8]] + revenue + [_text(row[n]) for n in names[8:]]
        else:
            cells += [_text(row["installs"]), *revenue]
            for n in p.days:
                day = row["days"][str(n)]
                if day is None:
                    cells += ["", "", *[""] * len(report.currencies)]
                else:
                    retention = (_percent(day["retention"], day["complete"]) if human
                                 else _text(day["retention"]))
                    cells += [_text(day["retained"]), retention,
                              *[_text(day["revenue"].get(c, Decimal(0))) for c in report.currencies]]
        out.append(cells)
    return out


def to_csv(report: Report) -> str:
    """RFC 4180: CRLF line ends, fields quoted when they hold a comma, quote or line break; a header row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(header(report))
    w.writerows(rows(report))
    return buf.getvalue()


def to_table(report: Report) -> Table:
    """A rich table for a terminal, totals in the footer."""
    p = report.params
    title = (f"{report.kind} report, {p.start} .. {p.end} ({p.tz})"
             + (f", by {', '.join(p.group_by)}" if p.group_by else ""))
    table = Table(title=title, show_footer=bool(report.rows), header_style="bold")
    heads = header(report)
    footer = _footer(report, heads)
    for i, h in enumerate(heads):
        numeric = i > len(p.group_by)
        table.add_column(h, footer=footer[i], justify="right" if numeric else "left", no_wrap=True)
    for cells in rows(report, human=True):
        table.add_row(*cells)
    if not report.rows:
        table.caption = "no records in this range"
    elif report.kind == "cohorts":
        table.caption = ("retention: share of the day's installs active on day N (the N-th 24 h after the "
                         "install); *: day N not over yet for every install; revenue through day N")
    return table


def _footer(report: Report, heads: list[str]) -> list[str]:
    t = report.totals
    values: dict[str, Any] = {"date": "total"}
    for c, v in t.get("revenue", {}).items():
        values[f"revenue_{c}"] = v
    if report.kind == "daily":
        values.update({n: t[n] for n in DAILY_COLUMNS.values()})
    else:
        values["installs"] = t["installs"]
        for n, d in t["days"].items():
            values[f"day{n}_retained"] = d["retained"]
            values[f"day{n}_retention"] = _percent(d["retention"])
            for c, v in d["revenue"].items():
                values[f"day{n}_revenue_{c}"] = v
    return [_text(values.get(h)) for h in heads]
