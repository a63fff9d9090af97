import gzip
import zlib

import pytest

from unmo.ingest.body import BodyError, LimitError, inflate


def test_inflate_round_trip():
    data = b'{"batch": []}' * 1000
    assert inflate(gzip.compress(data), 1 << 20) == data


def test_gzip_bomb_is_refused_while_inflating():
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros, ~64 KiB compressed
    assert len(bomb) < 200_000
    with pytest.raises(LimitError) as exc:
        inflate(bomb, 5 << 20)
    assert exc.value.limit == "body_bytes"
    assert "5242880 bytes" in str(exc.value)


def test_exactly_at_the_limit_is_accepted_one_byte_more_is_not():
    assert len(inflate(gzip.compress(b"x" * 1000), 1000)) == 1000
    with pytest.raises(LimitError):
        inflate(gzip.compress(b"x" * 1001), 1000)


def test_not_gzip_and_truncated_gzip_are_body_errors():
    with pytest.raises(BodyError, match="invalid gzip"):
        inflate(b"not gzip at all", 1000)
    whole = gzip.compress(b"y" * 5000)
    with pytest.raises(BodyError, match="truncated"):
        inflate(whole[: len(whole) // 2], 100_000)


def test_raw_deflate_is_not_gzip():
    with pytest.raises(BodyError):
        inflate(zlib.compress(b"abc"), 1000)
