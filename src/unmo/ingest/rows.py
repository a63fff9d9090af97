"""Stored rows <-> Batch columns: the binary COPY of new records and the replay of stored ones."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from unmo.hashing import hash_strings
from unmo.ingest.batch import DEVICE_SEEDS, ID_SEED_1, ID_SEED_2, Batch, empty_arrays
from unmo.model import CAMPAIGN_FIELDS, DEVICE_ID_FIELDS, ZERO_ID
from unmo.pgcopy import ColType, encode

INT2, INT4, INT8, FLOAT8 = ColType.INT2, ColType.INT4, ColType.INT8, ColType.FLOAT8
TSTZ_MS, TEXT, JSONB, INET = ColType.TIMESTAMPTZ_MS, ColType.TEXT, ColType.JSONB, ColType.INET

RECORD_COLUMNS = [
    "device_key",
    "app_id",
    "received_at",
    "seq",
    "ord",
    "kind",
    "record_id",
    "ts",
    *DEVICE_ID_FIELDS,
    "ip",
    "ua",
    "platform",
    "os",
    "os_version",
    "model",
    *CAMPAIGN_FIELDS,
    "referrer",
    "name",
    "revenue",
    "currency",
    "properties",
    "fp",
    "outcome",
    # for the reports (unmo.reports.rollup.record_columns)
    "install_ms",
    "ctit_rejected",
]

REPLAY_COLUMNS = (
    "kind, ts, received_at, record_id, idfa, gaid, oaid, idfv, android_id, fp, "
    "network, campaign, adset, ad, site, outcome"
)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


def encode_records(
    b: Batch,
    *,
    app_id: int,
    seq: int,
    keep: np.ndarray,
    ord_: np.ndarray,
    received: np.ndarray,
    outcome: np.ndarray,
    campaign: Sequence[tuple[str | None, ...] | None] | np.ndarray,
    install_ms: np.ndarray | None = None,
    ctit_rejected: list[str | None] | None = None,
) -> tuple[bytes, int]:
    """Binary COPY stream of the rows of ``b`` where ``keep`` (the non-duplicates).

    ``campaign``: each row's campaign tuple or None, or those as an object array (n, 5)
    (``AppKernel.campaign_table()[refs]``).  ``install_ms`` (-1: NULL) and ``ctit_rejected``
    are the reports' columns (unmo.reports.rollup); None stores NULL.  The columns go to the
    native encoder whole; it reads the kept rows in place.
    """
    rows = np.flatnonzero(keep)
    n = b.n
    a = b.arrays()
    if install_ms is None:
        install_ms = np.full(n, -1, dtype=np.int64)
    if ctit_rejected is None:
        ctit_rejected = [None] * n
    rev_null = np.fromiter((v is None for v in b.revenue), dtype=np.uint8, count=n)
    rev = np.fromiter((v or 0.0 for v in b.revenue), dtype=np.float64, count=n)
    fp = a["fp"].view(np.int64)
    if isinstance(campaign, np.ndarray):
        camp_cols = [campaign[:, j].tolist() for j in range(5)]
    else:
        camp_cols = [[c[j] if c is not None else None for c in campaign] for j in range(5)]
    columns: list[tuple[int, Any, Any]] = [
        (INT8, a["device_key"], None),
        (INT8, np.full(n, app_id, dtype=np.int64), None),
        (TSTZ_MS, received, None),
        (INT8, np.full(n, seq, dtype=np.int64), None),
        (INT4, ord_, None),
        (INT2, a["kind"], None),
        (TEXT, b.record_id, None),
        (TSTZ_MS, a["ts"], None),
        *[(TEXT, b.ids[f], None) for f in DEVICE_ID_FIELDS],
        (INET, b.ip_packed, None),
        (TEXT, b.ua, None),
        (TEXT, b.platform, None),
        (TEXT, b.os, None),
        (TEXT, b.os_version, None),
        (TEXT, b.model, None),
        *[(TEXT, col, None) for col in camp_cols],
        (TEXT, b.referrer, None),
        (TEXT, b.name, None),
        (FLOAT8, rev, rev_null),
        (TEXT, b.currency, None),
        (JSONB, b.properties, None),
        (INT8, fp, (fp == 0).astype(np.uint8)),
        (INT2, outcome, None),
        (INT8, install_ms, (install_ms < 0).view(np.uint8)),
        (JSONB, ctit_rejected, None),
    ]
    return encode(n, columns, rows), int(rows.size)


def to_ms(value: dt.datetime) -> int:
    return (value - EPOCH) // dt.timedelta(milliseconds=1)


def batch_from_rows(rows: list[Any]) -> tuple[Batch, np.ndarray, np.ndarray]:
    """A Batch of stored records (REPLAY_COLUMNS), their received ms and stored outcomes.

    Column by column, hashing in the native core: this is what a server runs at start
    over every record of the windows (docs/architecture.md, "Warm-up").
    """
    b = Batch()
    n = len(rows)
    b.n = n
    rids = [r["record_id"] for r in rows]
    b.record_id = rids
    a = empty_arrays(n)
    a["id_h1"][:] = hash_strings(rids, ID_SEED_1)
    a["id_h2"][:] = hash_strings(rids, ID_SEED_2)
    for j, f in enumerate(DEVICE_ID_FIELDS):
        # stored ids are normalised already (lower case, trimmed); the all-zero id is kept as sent
        col = [v if v != ZERO_ID else None for v in (r[f] for r in rows)]
        b.ids[f] = col
        a["dev"][:, j] = hash_strings(col, DEVICE_SEEDS[f])
    a["kind"][:] = np.fromiter((r["kind"] for r in rows), dtype=np.uint8, count=n)
    a["ts"][:] = np.fromiter(((r["ts"] - EPOCH) // _MS for r in rows), dtype=np.int64, count=n)
    a["fp"][:] = np.fromiter(((fp or 0) & 0xFFFFFFFFFFFFFFFF for fp in (r["fp"] for r in rows)),
                             dtype=np.uint64, count=n)
    for f in CAMPAIGN_FIELDS:
        b.campaign[f] = [r[f] for r in rows]
    received = np.fromiter(((r["received_at"] - EPOCH) // _MS for r in rows), dtype=np.int64, count=n)
    stored = np.fromiter((r["outcome"] for r in rows), dtype=np.int16, count=n)
    # columns the replay does not read (ref_h1/ref_h2 stay 0)
    b.index = list(range(n))
    first = a["dev"][:, 0]
    a["device_key"][:] = np.where(first == 0, np.uint64(1), first).view(np.int64)
    b.parts = [a]
    for name in ("ip", "ip_packed", "ua", "platform", "os", "os_version", "model", "referrer", "name",
                 "revenue", "currency", "properties"):
        setattr(b, name, [None] * n)
    return b, received, stored
