"""Attribution agreement: a provider's install report against unmo's results, device by device.

Two upload formats (spec: tracker.md):
- an AppsFlyer raw-data installs export (Pull API / CSV export).  Columns are read
  by name, never by position, because newer exports append columns (shared/data
  README): ``Media Source`` is the network (``organic`` or empty: organic),
  ``Campaign`` the campaign, and the device is any of ``IDFA``, ``Advertising ID``
  (GAID), ``OAID``, ``IDFV``, ``Android ID``, each hashed as its own type;
- a plain ``device_id,network,campaign`` file (empty or ``organic`` network:
  organic); its identifier's type is unknown, so it is looked up under every type,
  as ``GET /v1/attribution?device=`` does.

unmo's answer for a device is its latest install (``unmo.installs``) in the
customer's apps.  A row agrees when both say organic, or both name the same
network (case-insensitively) and, when both name a campaign, the same campaign.
Agreement share = agreed / compared, where compared rows are those whose device
unmo has an install for; rows unmo never saw are listed as ``not_in_unmo`` and
counted apart (they measure integration coverage, not attribution).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from unmo.errors import ValidationError, cut
from unmo.ingest.batch import device_hash, normalize_device_id, to_signed
from unmo.ingest.writer import INSTALLS_BY_IDS
from unmo.server.app import device_lookup_hashes

# AppsFlyer column -> unmo identifier type (support.appsflyer.com article 208387843, raw-data fields)
APPSFLYER_IDS = {"IDFA": "idfa", "Advertising ID": "gaid", "OAID": "oaid", "IDFV": "idfv", "Android ID": "android_id"}
PLAIN_HEADER = ["device_id", "network", "campaign"]
ORGANIC = ("", "organic")
CHUNK = 2000
MAX_DISAGREEMENTS_SHOWN = 1000


@dataclass
class Row:
    """One install row of an upload: where it is, its device hashes and the provider's answer."""

    line: int
    device: str                         # the first identifier as uploaded, for the (masked) listing
    hashes: list[int]
    network: str | None                 # None: organic
    campaign: str | None


@dataclass
class Upload:
    """A decoded upload: its format, its install rows and how many rows were skipped."""

    format: str
    rows: list[Row] = field(default_factory=list)
    skipped: int = 0


def mask(device: str) -> str:
    """First and last four characters: enough for the customer to find the row, not to re-identify."""
    return f"{device[:4]}...{device[-4:]}" if len(device) > 12 else f"{device[:2]}..."


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def parse_upload(data: bytes, max_rows: int) -> Upload:
    """Decode an uploaded report; raises ValidationError naming the line and column at fault."""
    try:
        text = data.decode("utf-8-sig")  # Excel writes a BOM
    except UnicodeDecodeError as exc:
        raise ValidationError(f"upload: expected UTF-8 CSV, got undecodable bytes at offset {exc.start}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ValidationError("upload: the file is empty (expected a CSV header line)") from None
    except csv.Error as exc:
        raise ValidationError(f"upload: line 1: {exc}") from None
    if "Media Source" in header:
        upload = Upload("appsflyer")
        col = {name: i for i, name in enumerate(header)}
        id_cols = [(col[name], kind) for name, kind in APPSFLYER_IDS.items() if name in col]
        if not id_cols:
            raise ValidationError("upload: AppsFlyer export without a device column (expected IDFA, "
                                  "Advertising ID, OAID, IDFV or Android ID)")
        media, campaign, event = col["Media Source"], col.get("Campaign"), col.get("Event Name")
    elif [h.lower() for h in header[:3]] == PLAIN_HEADER:
        upload = Upload("plain")
        id_cols, media, campaign, event = [], 1, 2, None
    else:
        raise ValidationError(
            "upload: expected an AppsFlyer raw-data installs export (with a 'Media Source' column) or a "
            f"device_id,network,campaign file, got header {cut(','.join(header), 60)}"
        )
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(upload.rows) + upload.skipped >= max_rows:
                raise ValidationError(f"upload: more than {max_rows} rows (split the file)")
            if upload.format == "appsflyer" and len(values) <= media:
                raise ValidationError(f"upload: line {line}: expected {len(header)} columns, got {len(values)}")

            def at(i: int | None, values: list[str] = values) -> str | None:
                return _clean(values[i]) if i is not None and i < len(values) else None

            if event is not None and (at(event) or "install").lower() != "install":
                upload.skipped += 1  # in-app events or re-installs: not this comparison
                continue
            hashes: list[int] = []
            first = None
            if upload.format == "appsflyer":
                for i, kind in id_cols:
                    raw = at(i)
                    v = normalize_device_id(raw)
                    if v is not None:
                        hashes.append(device_hash(kind, v))
                        first = first or raw
            else:
                first = at(0)
                hashes = device_lookup_hashes(first) if first else []
            if not hashes or first is None:
                upload.skipped += 1
                continue
            network = at(media)
            upload.rows.append(Row(
                line=line,
                device=first,
                hashes=hashes,
                network=None if (network or "").lower() in ORGANIC else network,
                campaign=at(campaign),
            ))
    except csv.Error as exc:
        raise ValidationError(f"upload: line {reader.line_num}: {exc}") from None
    if not upload.rows:
        raise ValidationError("upload: no install rows with a device identifier in the file")
    return upload


def verdict(row: Row, unmo: asyncpg.Record | None) -> str | None:
    """None when the row agrees, else the disagreement reason."""
    if unmo is None:
        return "not_in_unmo"
    unmo_network = unmo["network"] if unmo["status"] != "organic" else None
    if row.network is None and unmo_network is None:
        return None
    if row.network is None or unmo_network is None:
        return "organic_vs_paid"
    if row.network.casefold() != unmo_network.casefold():
        return "network"
    if row.campaign and unmo["campaign"] and row.campaign.casefold() != unmo["campaign"].casefold():
        return "campaign"
    return None


async def compare(conn: asyncpg.Connection, customer_id: int, app_ids: list[int], upload: Upload,
                  filename: str | None) -> dict[str, Any]:
    """Compare, store the run and its disagreements, and answer the run as the API shows it."""
    disagreements: list[tuple[Any, ...]] = []
    agreed = compared = missing = 0
    for start in range(0, len(upload.rows), CHUNK):
        chunk = upload.rows[start:start + CHUNK]
        wanted = sorted({to_signed(h) for r in chunk for h in r.hashes})
        latest: dict[int, asyncpg.Record] = {}
        # the writer's look-up: one probe of the GIN index an identifier (`device_hashes && $2` costs the
        # apps' installs times the identifiers; migration 0006), never a sequential scan of unmo.installs per
        # identifier, whatever the table's statistics: as on the ingest connections (unmo.ingest.writer.
        # INGEST_SETTINGS), here for this statement only, so that every plan of it, the prepared statement's
        # generic one included, is made with sequential scans off
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            found = await conn.fetch(INSTALLS_BY_IDS, app_ids, wanted)
        for rec in found:
            order = (rec["received_at"], rec["seq"], rec["ord"])
            for h in rec["device_hashes"]:
                have = latest.get(h)
                if have is None or order > (have["received_at"], have["seq"], have["ord"]):
                    latest[h] = rec
        for row in chunk:
            found = [latest[s] for s in (to_signed(h) for h in row.hashes) if s in latest]
            unmo = max(found, key=lambda r: (r["received_at"], r["seq"], r["ord"])) if found else None
            reason = verdict(row, unmo)
            if unmo is None:
                missing += 1
            else:
                compared += 1
                agreed += reason is None
            if reason is not None:
                disagreements.append((
                    row.line, mask(row.device), reason, row.network, row.campaign,
                    unmo["status"] if unmo else None, unmo["network"] if unmo else None,
                    unmo["campaign"] if unmo else None,
                ))
    share = agreed / compared if compared else None
    async with conn.transaction():
        run_id = await conn.fetchval(
            """INSERT INTO tracker.agreement_runs (customer_id, format, filename, rows, skipped, compared, agreed,
                   not_in_unmo, share) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING run_id""",
            customer_id, upload.format, filename, len(upload.rows), upload.skipped, compared, agreed, missing, share,
        )
        await conn.copy_records_to_table(
            "agreement_disagreements", schema_name="tracker",
            columns=["run_id", "line", "device", "reason", "provider_network", "provider_campaign", "unmo_status",
                     "unmo_network", "unmo_campaign"],
            records=[(run_id, *d) for d in disagreements],
        )
    return await get_run(conn, run_id)


async def get_run(conn: asyncpg.Connection, run_id: int, limit: int = MAX_DISAGREEMENTS_SHOWN) -> dict[str, Any]:
    """An agreement run as the API answers it, with at most ``limit`` disagreements listed."""
    run = await conn.fetchrow("SELECT * FROM tracker.agreement_runs WHERE run_id = $1", run_id)
    assert run is not None
    by_reason = {r["reason"]: r["n"] for r in await conn.fetch(
        "SELECT reason, count(*) AS n FROM tracker.agreement_disagreements WHERE run_id = $1 GROUP BY reason", run_id
    )}
    listed = await conn.fetch(
        "SELECT * FROM tracker.agreement_disagreements WHERE run_id = $1 ORDER BY line LIMIT $2", run_id, limit
    )
    return {
        "run_id": run_id,
        "customer_id": run["customer_id"],
        "uploaded_at": run["uploaded_at"].isoformat(),
        "format": run["format"],
        "filename": run["filename"],
        "rows": run["rows"],
        "skipped": run["skipped"],
        "compared": run["compared"],
        "agreed": run["agreed"],
        "not_in_unmo": run["not_in_unmo"],
        "agreement": run["share"],
        "disagreements_by_reason": by_reason,
        "disagreements_total": sum(by_reason.values()),
        "disagreements": [
            {"line": d["line"], "device": d["device"], "reason": d["reason"],
             "provider": {"network": d["provider_network"], "campaign": d["provider_campaign"]},
             "unmo": {"status": d["unmo_status"], "network": d["unmo_network"], "campaign": d["unmo_campaign"]}}
            for d in listed
        ],
    }


async def latest_run(conn: asyncpg.Connection, customer_id: int) -> dict[str, Any] | None:
    """The customer's most recent agreement run, or None."""
    run_id = await conn.fetchval(
        "SELECT run_id FROM tracker.agreement_runs WHERE customer_id = $1 ORDER BY uploaded_at DESC, run_id DESC "
        "LIMIT 1", customer_id,
    )
    return None if run_id is None else await get_run(conn, run_id)
