"""PostgreSQL binary COPY encoding from columns, from the native core.

``encode(n, columns)`` takes one ``(ColType, values, nulls)`` per table column;
see unmo._native.encode_copy for the value conventions.
"""

from enum import IntEnum

from unmo._native import encode_copy as encode


class ColType(IntEnum):
    """Column codes of the encoder (src/native/consts.pxi COL_*)."""

    INT2 = 1
    INT4 = 2
    INT8 = 3
    FLOAT8 = 4
    TIMESTAMPTZ_MS = 5
    TEXT = 6
    JSONB = 7
    INET = 8
    BOOL = 9


__all__ = ["ColType", "encode"]
