"""Per-app token buckets: records per second an app may send to one server process."""

from __future__ import annotations

import time


class TokenBucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst_s: float = 2.0) -> None:
        self.rate = rate
        self.capacity = rate * burst_s
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self, n: int) -> float:
        """Take ``n`` tokens; returns 0.0 when allowed, else seconds until they would be there."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if n <= self.tokens or (n > self.capacity and self.tokens >= self.capacity):
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, default_rate: int) -> None:
        self.default_rate = default_rate
        self.rates: dict[int, int | None] = {}
        self._buckets: dict[int, TokenBucket] = {}

    def check(self, app_id: int, n: int) -> float:
        rate = self.rates.get(app_id) or self.default_rate
        bucket = self._buckets.get(app_id)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[app_id] = TokenBucket(rate)
        return bucket.take(n)
