"""Reading a request body within its limits: gzip inflated with a running size check."""

from __future__ import annotations

import zlib

from unmo.errors import UnmoError


class LimitError(UnmoError):
    """A size limit was broken: answered with 413 and the limit's name."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class BodyError(UnmoError):
    """The body cannot be read at all (bad gzip, unknown encoding): 400 or 415."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def inflate(data: bytes, max_bytes: int) -> bytes:
    """Inflate gzip ``data``, refusing as soon as the output passes ``max_bytes``.

    The size is checked while inflating (zlib's max_length), so a small gzip bomb
    costs at most ``max_bytes`` of memory before it is refused.
    """
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    chunk = data
    try:
        while chunk:
            out += d.decompress(chunk, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                raise LimitError("body_bytes", f"body: larger than {max_bytes} bytes after decompression")
            chunk = d.unconsumed_tail
        out += d.flush()
    except zlib.error as exc:
        raise BodyError(f"body: invalid gzip data ({exc})") from None
    if len(out) > max_bytes:
        raise LimitError("body_bytes", f"body: larger than {max_bytes} bytes after decompression")
    if not d.eof:
        raise BodyError("body: truncated gzip data")
    return bytes(out)
