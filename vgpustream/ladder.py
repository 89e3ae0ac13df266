"""When a viewer's rung changes: down as soon as its link is poor, up after a while of a good link.

There is no usable bandwidth estimate to climb by (aiortc's REMB ramps up over ten seconds whatever the link
carries), so the server judges what it sees: a viewer whose link is poor (packets lost for good, or its queue
overflowed: vgpustream.seat.Link) steps down a rung at once; one whose link stays good for `up_after` seconds
steps up a rung, a probe. A probe that turns the link poor again within PROBE_WINDOW steps back down and
doubles the wait before the next one (up to MAX_UP_AFTER): a link that carries one rung and not the next
settles there instead of flapping. The verdicts of SETTLE seconds after a change are not acted on (their
window still saw the rung before).
"""

from __future__ import annotations

UP_AFTER = 12.0
"""Seconds of a good link before the first step up."""
MAX_UP_AFTER = 96.0
PROBE_WINDOW = 12.0
"""A step up that is followed by a poor link within this many seconds failed."""
SETTLE = 6.0


class RungPolicy:
    """One viewer's ladder decisions, fed its link's verdicts (monotonic seconds)."""

    def __init__(self) -> None:
        self.up_after = UP_AFTER
        self._good_since: float | None = None
        self._changed_at = -float("inf")
        self._probed_at: float | None = None

    def judge(self, now: float, poor: bool, *, at_top: bool, at_bottom: bool) -> int:
        """+1 to step down a rung, -1 to step up, 0 to stay."""
        if now - self._changed_at < SETTLE:
            return 0
        if poor:
            self._good_since = None
            if self._probed_at is not None and now - self._probed_at < PROBE_WINDOW:
                self.up_after = min(self.up_after * 2, MAX_UP_AFTER)
            self._probed_at = None
            return self._change(now, +1) if not at_bottom else 0
        if self._good_since is None:
            self._good_since = now
        if at_top or now - self._good_since < self.up_after:
            return 0
        self._probed_at = now
        return self._change(now, -1)

    def _change(self, now: float, step: int) -> int:
        self._changed_at = now
        self._good_since = None
        return step
