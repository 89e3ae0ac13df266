"""Per-client token buckets for the endpoints that cost the most (token issue, WHEP offers)."""

from __future__ import annotations

import time
from collections import OrderedDict

from vgpustream.errors import RateLimited

MAX_CLIENTS = 10_000


class RateLimiter:
    """`rate` requests per second per key with bursts of `burst`; remembers at most MAX_CLIENTS keys."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, key: str) -> None:
        """Take one request from `key`'s bucket, or raise RateLimited with the wait in seconds."""
        now = time.monotonic()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            raise RateLimited("too many requests; slow down", retry_after=max(1, round((1 - tokens) / self.rate)))
        self._buckets[key] = (tokens - 1.0, now)
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
