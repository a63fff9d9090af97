"""Stored rows <-> Batch columns: the binary COPY of new records and the replay of stored ones."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import cast

import numpy as np

from unmo._native import encode_flush, replay_copy_rows
from unmo.hashing import hash_strings
from unmo.ingest.batch import DEVICE_SEEDS, ID_SEED_1, ID_SEED_2, SEGMENT_COLUMNS, Batch, empty_arrays
from unmo.model import CAMPAIGN_FIELDS, DEVICE_ID_FIELDS, ZERO_ID

# The COPY of unmo.records, in two halves: the columns the flush decides, then the record's own columns,
# which are encoded when its request is decoded (unmo._native.seg_record; the order is fixed there).
DECIDED_COLUMNS = [
    "device_key",
    "app_id",
    "received_at",
    "seq",
    "ord",
    "outcome",
    *CAMPAIGN_FIELDS,
    # for the reports (unmo.reports.rollup.record_columns)
    "install_ms",
    "ctit_rejected",
]
RECORD_COLUMNS = DECIDED_COLUMNS + SEGMENT_COLUMNS

REPLAY_COLUMNS = (
    # in the order and types replay_copy_rows (native) parses; the times as epoch milliseconds, computed by
    # PostgreSQL; the device ids as stored (normalised when they came in; the all-zero id kept as sent)
    "kind, floor(extract(epoch FROM ts) * 1000)::int8 AS ts_ms, "
    "floor(extract(epoch FROM received_at) * 1000)::int8 AS received_ms, record_id, idfa, gaid, oaid, idfv, "
    "android_id, fp, network, campaign, adset, ad, site, outcome"
)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DEVICE_SEED_LIST = tuple(DEVICE_SEEDS[f] for f in DEVICE_ID_FIELDS)
_ZERO_ID_BYTES = ZERO_ID.encode()


def encode_records(
    b: Batch,
    *,
    app_id: int,
    seq: int,
    keep: np.ndarray,
    ord_: np.ndarray,
    received: np.ndarray,
    outcome: np.ndarray,
    camp: np.ndarray,
    campaigns: Sequence[tuple[str | None, ...]],
    install_ms: np.ndarray | None = None,
    ctit_rejected: list[str | None] | None = None,
) -> tuple[bytes, int]:
    """Binary COPY stream (RECORD_COLUMNS) of the rows of ``b`` where ``keep`` (the non-duplicates).

    ``camp``: each row's index into ``campaigns`` (5-tuples), -1 for none (the kernel's campaign refs and
    AppKernel.campaigns).  ``install_ms`` (-1: NULL) and ``ctit_rejected`` are the reports' columns
    (unmo.reports.rollup); None stores NULL.  The rows' own columns come from the segments their
    requests were decoded into (Batch.segs); only the decided ones are written here.
    """
    n = b.n
    if install_ms is None:
        install_ms = np.full(n, -1, dtype=np.int64)
    if ctit_rejected is None:
        ctit_rejected = [None] * n
    rows = np.flatnonzero(keep).astype(np.int64)
    stream = encode_flush(
        rows, b.segs, b.arrays()["device_key"], app_id, np.ascontiguousarray(received, dtype=np.int64), seq,
        np.ascontiguousarray(ord_, dtype=np.int32), np.ascontiguousarray(outcome, dtype=np.int16),
        np.ascontiguousarray(camp, dtype=np.int32), campaigns, np.ascontiguousarray(install_ms, dtype=np.int64),
        ctit_rejected,
    )
    return stream, int(rows.size)


def to_ms(value: dt.datetime) -> int:
    return (value - EPOCH) // dt.timedelta(milliseconds=1)


def batch_from_columns(kind: np.ndarray, ts: np.ndarray, rids: list[str], dev: np.ndarray, fp: np.ndarray,
                       campaign: Sequence[list[str | None]]) -> Batch:
    """A Batch of stored records for a replay, from their columns (no segments: a replay is never
    stored again, and only the columns the kernel replays are set; ref_h1/ref_h2 stay 0)."""
    b = Batch()
    n = len(rids)
    b.n = n
    b.record_id = rids
    a = empty_arrays(n)
    ids = cast(list[str | None], rids)
    a["id_h1"][:] = hash_strings(ids, ID_SEED_1)
    a["id_h2"][:] = hash_strings(ids, ID_SEED_2)
    a["dev"][:] = dev
    a["kind"][:] = kind
    a["ts"][:] = ts
    a["fp"][:] = fp
    for f, col in zip(CAMPAIGN_FIELDS, campaign, strict=True):
        b.campaign[f] = col
    a["index"][:] = np.arange(n, dtype=np.int32)
    first = a["dev"][:, 0]
    a["device_key"][:] = np.where(first == 0, np.uint64(1), first).view(np.int64)
    b.parts = [a]
    return b


def batch_from_copy(buf: bytearray, header: bool, max_rows: int) -> tuple[int, bool, Batch, np.ndarray, np.ndarray]:
    """The whole rows at the start of ``buf``, a binary COPY of REPLAY_COLUMNS (``header``: the COPY's
    header first), at most ``max_rows``: ``(bytes read, trailer read, batch, received ms, stored
    outcomes)``.  Parsed natively (replay_copy_rows): no row object, device identifiers hashed from
    their bytes.  This is what a server runs over every record of the windows when it starts."""
    end, done, (kind, ts, received, rids, dev, fp, campaign, stored) = replay_copy_rows(
        buf, 0, header, _DEVICE_SEED_LIST, _ZERO_ID_BYTES, max_rows)
    return end, done, batch_from_columns(kind, ts, rids, dev, fp, campaign), received, stored
