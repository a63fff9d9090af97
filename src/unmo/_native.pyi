# Type stub of the compiled core (src/native/_native.pyx); tests/test_native_stub.py
# checks it against the built module with mypy.stubtest.
from collections.abc import Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

def xxh64(data: bytes | bytearray | memoryview | str, seed: int = 0) -> int: ...
def hash_strings(values: list[str | None], seed: int = 0) -> npt.NDArray[np.uint64]: ...
def encode_copy(n: int, columns: list[tuple[int, Any, Any]], rows: Any = None) -> bytes: ...

@final
class Kernel:
    click_window: int
    impression_window: int
    probabilistic_window: int
    reattribution_window: int
    min_ctit: int
    dedup_window: int
    grace: int
    rebuild_min: int
    last_received: int
    @property
    def touch_rebuilds(self) -> int: ...
    @property
    def install_rebuilds(self) -> int: ...
    def __init__(
        self,
        click_window: int,
        impression_window: int,
        probabilistic_window: int,
        reattribution_window: int,
        min_ctit: int,
        dedup_window: int,
        grace: int,
    ) -> None: ...
    def configure(
        self,
        click_window: int,
        impression_window: int,
        probabilistic_window: int,
        reattribution_window: int,
        min_ctit: int,
        dedup_window: int,
        grace: int,
    ) -> None: ...
    @property
    def touches(self) -> int: ...
    @property
    def touch_links(self) -> int: ...
    @property
    def installs(self) -> int: ...
    @property
    def record_ids(self) -> int: ...
    def memory_bytes(self) -> int: ...
    def seen_growth_bytes(self) -> int: ...
    def evict(self, now: int) -> None: ...
    def reserve(self, records: int, touches: int = 0, links: int = 0, id_bytes: int = 0) -> None: ...
    def install_info(self, slot: int) -> tuple[int, int, int, int, int, int, int, str | None]: ...
    def install_ts(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
    def unknown_devices(self, dev: npt.NDArray[np.uint64], kind: npt.NDArray[np.uint8]) -> list[int]: ...
    def mark_absent(self, hashes: list[int]) -> None: ...
    def replay_install(
        self,
        dev: npt.NDArray[np.uint64],
        ts: int,
        status: int,
        tkind: int,
        match: int,
        camp: int,
        tts: int,
        ctit: int,
        touch_id: str | None,
        order: int,
        index: bool = True,
    ) -> int: ...
    def map_ids(self, hashes: npt.NDArray[np.uint64], slot: int) -> None: ...
    def process(
        self,
        kind: npt.NDArray[np.uint8],
        ts: npt.NDArray[np.int64],
        id_h1: npt.NDArray[np.uint64],
        id_h2: npt.NDArray[np.uint64],
        dev: npt.NDArray[np.uint64],
        fp: npt.NDArray[np.uint64],
        ref_h1: npt.NDArray[np.uint64],
        ref_h2: npt.NDArray[np.uint64],
        camp: npt.NDArray[np.int32],
        blocked: npt.NDArray[np.uint8],
        ids: list[str],
        received: npt.NDArray[np.int64],
        decide: bool = True,
        stored: npt.NDArray[np.int16] | None = None,
        order_base: int = 0,
        order: npt.NDArray[np.int64] | None = None,
    ) -> tuple[Any, Any, Any, Any, Any, list[tuple[int, str, int, int, int, int]]]: ...

ERR_TS_RANGE: int
ERR_TS_FUTURE: int
ERR_NETWORK: int
ERR_NAME: int
ERR_REVENUE: int
ERR_CURRENCY: int
ERR_IP: int
ERR_PROPS_SIZE: int
ERR_PROPS: int
ERR_NUL: int

def configure_structs(record: type, device: type, campaign: type) -> None: ...
def build_columns(
    records: list[Any],
    index: list[int],
    raws: list[Any],
    msgpack: bool,
    skew: int,
    min_ts: int,
    future_limit: int,
    max_props: int,
    helpers: tuple[Any, Any, Any, Any],
) -> tuple[dict[str, Any], list[tuple[int, int, Any]], dict[str, Any]]: ...
def campaign_refs(
    kind: npt.NDArray[np.uint8],
    c0: list[str | None],
    c1: list[str | None],
    c2: list[str | None],
    c3: list[str | None],
    c4: list[str | None],
    refs: dict[tuple[str | None, str | None, str | None, str | None, str | None], int],
    campaigns: list[tuple[str | None, str | None, str | None, str | None, str | None]],
) -> npt.NDArray[np.int32]: ...
def encode_flush(
    rows: npt.NDArray[np.int64],
    segs: list[tuple[bytes, npt.NDArray[np.int64]]],
    device_key: npt.NDArray[np.int64],
    app_id: int,
    received: npt.NDArray[np.int64],
    seq: int,
    ord_: npt.NDArray[np.int32],
    outcome: npt.NDArray[np.int16],
    camp: npt.NDArray[np.int32],
    campaigns: Sequence[tuple[str | None, ...]],
    install_ms: npt.NDArray[np.int64],
    ctit_rejected: list[str | None],
) -> bytes: ...
SEGMENT_FIELD_COUNT: int

def seg_field(segs: list[tuple[bytes, npt.NDArray[np.int64]]], col: int) -> list[bytes | None]: ...
def replay_copy_rows(
    buf: bytes | bytearray | memoryview, pos: int, header: bool, dev_seeds: tuple[int, ...], zero_id: bytes,
    max_rows: int,
) -> tuple[
    int,
    bool,
    tuple[
        npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.int64], list[str], npt.NDArray[np.uint64],
        npt.NDArray[np.uint64], list[list[str | None]], npt.NDArray[np.int16],
    ],
]: ...
def decode_json_columns(
    body: bytes,
    received_ms: int,
    min_ts: int,
    future_limit: int,
    max_records: int,
    max_record_bytes: int,
    max_props: int,
    helpers: tuple[Any, Any, Any, Any],
) -> tuple[int | None, dict[str, Any], dict[str, Any]] | None: ...

@final
class PrefaultedTable:
    nbytes: int
    def adopt(self) -> bool: ...

def prefault_table(nbytes: int) -> PrefaultedTable | None: ...
def spare_tables() -> list[tuple[int, bool]]: ...
