"""When a viewer's rung changes: down as soon as its link is poor, up once the link shows room or, where it
cannot show it, after a while of a good link.

A viewer whose link is poor (packets lost for good, its queue overflowed, its link overrun:
vgpustream.audience.seat.Link) steps down at once, to the highest rung that fits what the link is estimated to
carry where there is an estimate. Up again:
- where the link's rate is measured (transport-cc feedback, vgpustream.transports.congestion), once it has
  shown room for a higher rung for FIT_AFTER seconds of a good link: straight to the highest rung that fits;
- where it is not (a receiver's REMB ramps up over tens of seconds whatever the link carries, and never
  above half again what it receives; a WebSocket's socket drains only what it is given), after `up_after`
  seconds of a good link, a rung at a time: a probe.
A step up that turns the link poor again within PROBE_WINDOW steps back down and doubles the wait before the
next one (up to MAX_UP_AFTER): a link that carries one rung and not the next settles there instead of
flapping. The verdicts of SETTLE seconds after a change are not acted on (their window still saw the rung
before), unless the link is overrun.
"""

from __future__ import annotations

from collections import deque

UP_AFTER = 12.0
"""Seconds of a good link before the first step up where the link's rate is not measured."""
FIT_AFTER = 2.0
"""Seconds of a good link that shows room for a higher rung before the first step up to it."""
MAX_UP_AFTER = 96.0
PROBE_WINDOW = 12.0
"""A step up that is followed by a poor link within this many seconds failed."""
SETTLE = 6.0
ESTIMATE_MEMORY = 3.0
"""Seconds of a viewer's receiver estimates (REMB) that a new one is compared with."""
FALL = 0.7
"""An estimate below this share of the highest of the last ESTIMATE_MEMORY seconds, and of the rate the viewer is
sent, says its link is overrun: a browser's estimator drops to about 0.85 of what it receives when its queue
grows, which is far below what it is sent only where the link cannot carry it (a fall on a link that carries the
stream, from a burst or a busy relay, stays near what it is sent)."""
MAX_ESTIMATES = 256
RATE_WINDOW = 1.0
"""Seconds over which the rate a viewer is sent is measured."""


class RungPolicy:
    """One viewer's ladder decisions, fed its link's verdicts (monotonic seconds)."""

    def __init__(self) -> None:
        self.up_after = UP_AFTER
        self.fit_after = FIT_AFTER
        self._good_since: float | None = None
        self._room_since: float | None = None
        self._changed_at = -float("inf")
        self._probed_at: float | None = None

    def judge(
        self, now: float, poor: bool, *, at_top: bool, at_bottom: bool, overrun: bool = False, room: bool | None = None
    ) -> int:
        """+1 to step down, -1 to step up, 0 to stay. `overrun`: the link's estimate says the rung it is on does
        not fit (it steps down then even just after a change: the estimate is of the link, not of the rung
        before). `room`: whether the link's measured rate fits a higher rung (None: it is not measured)."""
        if now - self._changed_at < SETTLE and not (poor and overrun):
            return 0
        if poor:
            self._good_since = self._room_since = None
            if self._probed_at is not None and now - self._probed_at < PROBE_WINDOW:
                self.up_after = min(self.up_after * 2, MAX_UP_AFTER)
                self.fit_after = min(self.fit_after * 2, MAX_UP_AFTER)
            self._probed_at = None
            return self._change(now, +1) if not at_bottom else 0
        if self._good_since is None:
            self._good_since = now
        if not room:
            self._room_since = None
        elif self._room_since is None:
            self._room_since = now
        since = self._good_since if self._room_since is None else self._room_since
        if at_top or room is False or now - since < self._wait(room):
            return 0
        self._probed_at = now
        return self._change(now, -1)

    def _wait(self, room: bool | None) -> float:
        """Seconds of a good link before a step up: shorter where the link showed room for it."""
        return self.up_after if room is None else self.fit_after

    def _change(self, now: float, step: int) -> int:
        self._changed_at = now
        self._good_since = self._room_since = None
        return step


class Estimates:
    """A viewer's receiver estimates of the bitrate its link carries (REMB): the latest, and whether it fell.

    A browser's estimate starts low and climbs for tens of seconds whatever its link carries, so its level
    says little; a fall says the link is overrun, at once, seconds before lost packets do.
    """

    def __init__(self) -> None:
        self.latest: int | None = None
        self._peaks: deque[tuple[float, int]] = deque(maxlen=MAX_ESTIMATES)
        """(time, estimate), the estimates decreasing: the first is the highest of the last ESTIMATE_MEMORY s."""
        self._sent: tuple[float, int] | None = None
        """(time, bytes sent by then): where the rate the viewer is sent is measured from."""
        self._sent_bps = 0.0

    def add(self, now: float, estimate: int, sent_bytes: int) -> bool:
        """Take an estimate (bits per second, at monotonic time `now`, when the viewer had been sent `sent_bytes`
        in all); True when it says the link is overrun (FALL)."""
        if self._sent is None or now - self._sent[0] >= RATE_WINDOW:
            if self._sent is not None:
                self._sent_bps = (sent_bytes - self._sent[1]) * 8 / (now - self._sent[0])
            self._sent = (now, sent_bytes)
        while self._peaks and now - self._peaks[0][0] > ESTIMATE_MEMORY:
            self._peaks.popleft()
        fell = bool(self._peaks) and estimate < FALL * min(self._peaks[0][1], self._sent_bps)
        while self._peaks and self._peaks[-1][1] <= estimate:
            self._peaks.pop()
        self._peaks.append((now, estimate))
        self.latest = estimate
        return fell
