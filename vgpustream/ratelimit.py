"""Token buckets: per client for the endpoints that cost the most (token issue, WHEP offers), and per viewer
for its data-channel messages."""

from __future__ import annotations

import time
from collections import OrderedDict

from vgpustream.errors import RateLimited

MAX_CLIENTS = 10_000


class TokenBucket:
    """`rate` events per second in bursts of up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()

    def take(self, count: float = 1.0) -> bool:
        """Take `count` events' tokens; False (and nothing taken) when the bucket holds fewer."""
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < count:
            return False
        self._tokens -= count
        return True

    def wait(self) -> int:
        """Whole seconds (at least 1) until the next token."""
        return max(1, round((1 - self._tokens) / self.rate))


class RateLimiter:
    """A TokenBucket per key; remembers at most MAX_CLIENTS keys, forgetting the least recent first."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, key: str) -> None:
        """Take one request from `key`'s bucket, or raise RateLimited with the wait in seconds."""
        bucket = self._buckets.pop(key, None) or TokenBucket(self.rate, self.burst)
        self._buckets[key] = bucket
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        if not bucket.take():
            raise RateLimited("too many requests; slow down", retry_after=bucket.wait())
