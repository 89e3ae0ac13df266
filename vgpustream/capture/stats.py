"""What a session counts: frames, keyframes, bytes, errors, encode times, recent rates, and the
glass-to-glass delays its viewers report."""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

RATE_WINDOW = 2.0  # seconds over which fps and bitrate are measured
ENCODE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
GLASS_TO_GLASS_BUCKETS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


@dataclass
class Histogram:
    """Observed durations (seconds) counted in fixed buckets, for /metrics."""

    bounds: tuple[float, ...] = ENCODE_BUCKETS
    counts: list[int] = field(init=False)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def mean(self) -> float | None:
        observed = sum(self.counts)
        return self.total / observed if observed else None


@dataclass
class CaptureStats:
    """Counters of one capture loop, updated on the event loop after each step."""

    frames_captured: int = 0
    pixels_captured: int = 0
    pixels_changed: int = 0
    """Of the pixels captured, those the source reported as changed (its damage)."""
    frames_encoded: int = 0
    keyframes: int = 0
    frames_repeated: int = 0
    bytes_encoded: int = 0
    capture_errors: int = 0


class RateMeter:
    """Events and bytes per second over the last RATE_WINDOW seconds; in the first RATE_WINDOW seconds after
    the first event, over the time since it (the gaps after it), so that a stream just started does not
    read as slower than it is."""

    def __init__(self) -> None:
        self._events: deque[tuple[float, int]] = deque()
        self._first: float | None = None

    def add(self, now: float, size: int) -> None:
        if self._first is None:
            self._first = now
        self._events.append((now, size))
        while self._events and self._events[0][0] < now - RATE_WINDOW:
            self._events.popleft()

    def rates(self, now: float) -> tuple[float, float]:
        """(events per second, bits per second)."""
        recent = [size for t, size in self._events if t >= now - RATE_WINDOW]
        if self._first is not None and (elapsed := now - self._first) < RATE_WINDOW:
            after_first = recent[1:]  # the events in the gaps that followed the first one
            if not after_first or elapsed <= 0:
                return 0.0, 0.0
            return len(after_first) / elapsed, sum(after_first) * 8 / elapsed
        return len(recent) / RATE_WINDOW, sum(recent) * 8 / RATE_WINDOW


class CaptureCounters:
    """What a capture loop counts of its steps for the whole session, on the event loop: a frame that several
    renditions encode counts once, its bytes and keyframes those of all of them."""

    def __init__(self) -> None:
        self.stats = CaptureStats()
        self.encode_times = Histogram()
        self._rate = RateMeter()

    def count_step(self, captured: int, pixels: int, changed: int, repeated: int) -> None:
        stats = self.stats
        stats.frames_captured += captured
        stats.pixels_captured += pixels
        stats.pixels_changed += changed
        stats.frames_repeated += repeated

    def count_encoded(self, encode_seconds: float, made: list[tuple[int, int]], at: float) -> None:
        """One frame encoded: how long it took, and each rendition's (bytes, keyframes) of it."""
        stats = self.stats
        stats.frames_encoded += 1
        self.encode_times.observe(encode_seconds)
        total = sum(size for size, _ in made)
        stats.keyframes += sum(keyframes for _, keyframes in made)
        stats.bytes_encoded += total
        self._rate.add(at, total)

    def count_error(self) -> int:
        """A failed step; how many there have been."""
        self.stats.capture_errors += 1
        return self.stats.capture_errors

    def rates(self, now: float) -> tuple[float, float]:
        """Encoded frames per second and bits per second, over the last few seconds."""
        return self._rate.rates(now)
