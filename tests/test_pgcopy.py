"""The native binary COPY encoder, checked by PostgreSQL itself."""

import numpy as np
import pytest

from unmo.pgcopy import ColType, encode

COLUMNS = (
    "a smallint, b integer, c bigint, d double precision, e timestamptz, f text, g jsonb, h inet, i boolean"
)


def _columns():
    return [
        (ColType.INT2, np.array([1, -2, 3], dtype=np.int16), None),
        (ColType.INT4, [10, 20, -30], np.array([0, 1, 0], dtype=np.uint8)),
        (ColType.INT8, np.array([2**62, -(2**62), 0]), None),
        (ColType.FLOAT8, [1.5, -0.25, 1e300], None),
        (ColType.TIMESTAMPTZ_MS, [0, 946_684_800_000, 1_795_000_000_123], None),
        (ColType.TEXT, ["plain", None, "ünïcødé ✓ 😀"], None),
        (ColType.JSONB, ['{"a": [1, 2]}', None, b'{"k": "v"}'], None),
        (ColType.INET, [bytes([10, 0, 0, 1]), None, bytes(15) + b"\x01"], None),
        (ColType.BOOL, [1, 0, 1], None),
    ]


def test_every_column_type_round_trips(database):
    async def go(conn):
        await conn.execute(f"CREATE TEMP TABLE t ({COLUMNS})")
        await conn.copy_to_table("t", source=memoryview(encode(3, _columns())), format="binary")
        return await conn.fetch(
            "SELECT a, b, c, d, (extract(epoch from e) * 1000)::bigint AS e, f, g::text, host(h) AS h, i "
            "FROM t ORDER BY c DESC"
        )

    rows = database.call(go)
    assert [tuple(r) for r in rows] == [
        (1, 10, 2**62, 1.5, 0, "plain", '{"a": [1, 2]}', "10.0.0.1", True),
        (3, -30, 0, 1e300, 1_795_000_000_123, "ünïcødé ✓ 😀", '{"k": "v"}', "::1", True),
        (-2, None, -(2**62), -0.25, 946_684_800_000, None, None, None, False),
    ]


def test_rows_select_and_order_the_output(database):
    async def go(conn):
        await conn.execute(f"CREATE TEMP TABLE t ({COLUMNS})")
        await conn.copy_to_table(
            "t", source=memoryview(encode(3, _columns(), np.array([2, 0]))), format="binary"
        )
        return [r["a"] for r in await conn.fetch("SELECT a FROM t")]

    assert database.call(go) == [3, 1]


@pytest.mark.parametrize(
    ("columns", "error"),
    [
        ([(ColType.INT8, [1, 2], None)], "has 2 rows, expected 3"),
        ([(ColType.TEXT, ["a", "b"], None)], "must be a list of 3 values"),
        ([(ColType.INET, [b"\x01\x02", None, None], None)], "4 or 16 packed bytes"),
        ([(ColType.TEXT, [1, None, None], None)], "expected str, bytes or None, got int"),
        ([(99, [1, 2, 3], None)], "unknown column code 99"),
        ([], "expected 1..1600 columns"),
    ],
)
def test_bad_columns_are_refused(columns, error):
    with pytest.raises((ValueError, TypeError), match=error):
        encode(3, columns)
    with pytest.raises(IndexError):
        encode(3, [(ColType.INT8, [1, 2, 3], None)], [0, 3])
