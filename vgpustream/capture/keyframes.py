"""When the shared encoder must produce an IDR."""

from __future__ import annotations

KEYFRAME_MIN_INTERVAL = 0.5  # seconds between forced IDRs, however many viewers ask


class KeyframePolicy:
    """Decides when the shared encoder must produce an IDR.

    A request (a viewer that cannot start from the session's recent packets, a PLI/FIR, a viewer's
    queue overflowing) is served at the next frame, but at most one IDR per `min_interval`, so many
    viewers asking at once cost one keyframe; requests inside the window are kept, not dropped.
    Without requests a changing picture gets an IDR every `interval` seconds, which bounds how many
    packets a joining viewer is replayed; a still picture gets none (nothing would decode better).
    """

    def __init__(self, interval: float, min_interval: float = KEYFRAME_MIN_INTERVAL) -> None:
        self.interval = interval
        self.min_interval = min_interval
        self._requested = True
        self._last = -float("inf")

    def request(self) -> None:
        self._requested = True

    def due(self, now: float) -> tuple[bool, bool]:
        """(whether the next frame must be an IDR, whether the next changed frame should be one)."""
        elapsed = now - self._last
        return self._requested and elapsed >= self.min_interval, elapsed >= self.interval

    def sent(self, now: float) -> None:
        self._requested = False
        self._last = now
