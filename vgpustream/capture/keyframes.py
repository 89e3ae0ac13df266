"""When the shared encoder must produce an IDR."""

from __future__ import annotations

KEYFRAME_MIN_INTERVAL = 0.5  # seconds between forced IDRs, however many viewers ask


class KeyframePolicy:
    """Decides when the shared encoder must produce an IDR.

    A request (a viewer joining, a PLI/FIR, a viewer's queue overflowing) is served at the
    next frame, but at most one IDR per `min_interval`, so many viewers asking at once cost one
    keyframe; requests inside the window are kept, not dropped. Without requests an IDR comes
    every `interval` seconds, so a still screen stays decodable for late joiners.
    """

    def __init__(self, interval: float, min_interval: float = KEYFRAME_MIN_INTERVAL) -> None:
        self.interval = interval
        self.min_interval = min_interval
        self._requested = True
        self._last = -float("inf")

    def request(self) -> None:
        self._requested = True

    def due(self, now: float) -> bool:
        elapsed = now - self._last
        return (self._requested and elapsed >= self.min_interval) or elapsed >= self.interval

    def sent(self, now: float) -> None:
        self._requested = False
        self._last = now
