"""What a viewer's transport-wide feedback says of its link: the rate it carries, and whether it is overrun.

Where the viewer's browser negotiates transport-cc (draft-holmer-rmcat-transport-wide-cc-extensions-01, as
Chromium and Firefox do), every video packet it is sent carries a sequence number of its own transport
(vgpustream.compat numbers them through `PacketLog.number`), and the browser reports, every 50 to 100 ms,
when each of them arrived (RTCP transport feedback, `parse_feedback`). The server knows when it sent each and
how big it was, so it sees the link itself, where a receiver's REMB only climbs for tens of seconds whatever
the link carries:

- the rate a link carries shows in how a frame's packets, sent back to back, arrive: a bottleneck passes
  them one after the other at its rate, so they arrive spread out (the median of the last CAPACITY_MEMORY
  seconds' frames; a link that is not the bottleneck delivers them as close as they left): `rate_bps`;
- an overrun link queues more and more: its packets' delay never comes back down to the least of the last
  DELAY_MEMORY seconds, and they arrive further apart than they were sent or some are lost (`overrun`).
  A keyframe's burst queues too, but drains within a frame or two.
"""

from __future__ import annotations

import statistics
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

HISTORY = 4096
"""Sent packets remembered for their feedback (at 4 Mbit/s about ten seconds of video)."""
MAX_STATUSES = 8192
"""The most packets one feedback message is taken to report (a browser reports a few dozen)."""
TICK = 0.000_25
"""The resolution of the arrival times in a feedback message (250 microseconds)."""
REFERENCE_TICK = 0.064
"""The unit of a feedback message's reference time."""
BURST_GAP = 0.002
"""Packets sent less than this many seconds apart are one burst (one frame, sent back to back)."""
MIN_BURST = 2
"""The fewest packets of a burst whose arrival tells a rate (a low rung's frames are one or two packets)."""
SPREAD_SLACK = 2 * TICK
"""Arrival spread beyond the sending's that says the link is the bottleneck (less: it is not)."""
UNBOUNDED = 1_000_000_000
"""The rate said of a link that delivered a burst as fast as it was sent (bits per second): more than any
rung of any ladder."""
CAPACITY_MEMORY = 3.0
"""Seconds of bursts whose median is the link's rate: longer than a session's keyframe interval, whose frames
are bursts even on a rung whose other frames are a packet each."""
DELAY_MEMORY = 10.0
"""Seconds over which the least delay (an empty queue) is remembered."""
QUEUE_WINDOW = 0.5
"""Seconds over which a link's queue must have drained once for it not to be overrun."""
QUEUE_LIMIT = 0.05
"""Seconds of queueing that never drains, above which a link is overrun where its queue grows."""
GROWTH = 1.1
"""Packets that took this many times longer to arrive than to be sent: the queue grows. (A receiver or sender
that stalls delays packets too, but they arrive about as spread as they left.)"""
LOSS_LIMIT = 0.1
"""The share of packets lost in QUEUE_WINDOW above which a link is overrun."""
MIN_REPORTED = 10
"""Packets reported in QUEUE_WINDOW before their loss says anything."""
MAX_FEEDBACK_RATE = 100
"""Feedback messages a second taken from one viewer (a browser sends 10 to 20); more are refused, and counted."""


def parse_feedback(fci: bytes) -> tuple[int, list[float | None]]:
    """A transport feedback message's FCI: its base sequence number, and for each packet from it on the time it
    arrived (seconds, on the receiver's clock) or None where it did not. ValueError where it is malformed."""
    try:
        base, count, reference = struct.unpack_from("!HHI", fci)
        if count > MAX_STATUSES:
            raise ValueError(f"a feedback message reports {count} packets; at most {MAX_STATUSES} are taken")
        symbols, pos = _symbols(fci, 8, count)
        arrival = _signed(reference >> 8, 24) * REFERENCE_TICK
        arrivals: list[float | None] = []
        for symbol in symbols:
            if symbol == 0:
                arrivals.append(None)
                continue
            if symbol == 1:
                delta, pos = fci[pos], pos + 1
            elif symbol == 2:
                (delta,), pos = struct.unpack_from("!h", fci, pos), pos + 2
            else:
                raise ValueError("a feedback message has a reserved packet status")
            arrival += delta * TICK
            arrivals.append(arrival)
    except (struct.error, IndexError):
        raise ValueError("a feedback message is truncated") from None
    return base, arrivals


def _symbols(fci: bytes, pos: int, count: int) -> tuple[list[int], int]:
    """The `count` packet status symbols from the chunks at `pos`, and where the receive deltas begin."""
    symbols: list[int] = []
    while len(symbols) < count:
        (chunk,), pos = struct.unpack_from("!H", fci, pos), pos + 2
        if not chunk & 0x8000:  # a run of one symbol
            symbols += [(chunk >> 13) & 3] * (chunk & 0x1FFF)
        elif not chunk & 0x4000:  # fourteen one-bit symbols
            symbols += [(chunk >> shift) & 1 for shift in range(13, -1, -1)]
        else:  # seven two-bit symbols
            symbols += [(chunk >> shift) & 3 for shift in range(12, -1, -2)]
    return symbols[:count], pos


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


@dataclass(frozen=True)
class Delivery:
    """One packet as its feedback tells it: when it was sent (monotonic seconds), its size, and when it arrived
    (seconds on the receiver's clock; None: it did not)."""

    sent: float
    size: int
    arrived: float | None


class PacketLog:
    """The video packets sent to one viewer, numbered on its transport, and what its feedback says of its link.

    `number` runs for every packet sent (vgpustream.compat), `feedback` for every feedback message: both on the
    event loop's thread. `on_judged` runs after each feedback message that told something.
    """

    def __init__(self, on_judged: Callable[[], None] = lambda: None) -> None:
        self._on_judged = on_judged
        self._next = 0
        """The sequence number of the next packet, not wrapped at 16 bits."""
        self._sent: list[tuple[int, float, int] | None] = [None] * HISTORY
        """(sequence number, sent at, size) by sequence number modulo HISTORY."""
        self._delays: deque[tuple[float, float]] = deque()
        """(sent at, delay), the delays increasing: the first is the least of the last DELAY_MEMORY seconds."""
        self._recent: deque[tuple[Delivery, float | None]] = deque()
        """The last QUEUE_WINDOW seconds' packets and their queueing delay (None where lost)."""
        self._rates: deque[tuple[float, float]] = deque()
        """(sent at, rate in bits per second) of the last CAPACITY_MEMORY seconds' bursts."""
        self.rate_bps: int | None = None
        """The rate the link carries for this viewer (bits per second): as the last bursts' spread tells it, or
        what it carried while overrun where that is less (other traffic shares its bottleneck); None before
        any packet told it."""
        self.overrun = False
        """Whether the link's queue never drains, and grows or overflows."""
        self.malformed = 0
        """Feedback messages that could not be read (they are dropped)."""
        self.refused = 0
        """Feedback messages beyond MAX_FEEDBACK_RATE a second (they are dropped unread)."""
        self._second = (0.0, 0)
        """(when the current second of feedback began, messages taken in it)."""

    def number(self, size: int) -> int:
        """The transport-wide sequence number (16 bits) of a packet of `size` bytes sent now."""
        sequence = self._next
        self._next += 1
        self._sent[sequence % HISTORY] = (sequence, time.monotonic(), size)
        return sequence & 0xFFFF

    def feedback(self, fci: bytes) -> None:
        """Take one feedback message (its FCI): the link's rate and overrun are judged again. Each packet counts
        once, as its first report tells it: a message repeated, or a storm of them, adds nothing."""
        now = time.monotonic()
        began, taken = self._second if now - self._second[0] < 1.0 else (now, 0)
        if taken >= MAX_FEEDBACK_RATE:
            self.refused += 1
            return
        self._second = (began, taken + 1)
        try:
            base, arrivals = parse_feedback(fci)
        except ValueError:
            self.malformed += 1
            return
        first = self._next - ((self._next - base) & 0xFFFF)
        deliveries = []
        for sequence, arrived in enumerate(arrivals, first):
            record = self._sent[sequence % HISTORY]
            if record is not None and record[0] == sequence:
                deliveries.append(Delivery(record[1], record[2], arrived))
                self._sent[sequence % HISTORY] = None
        if deliveries:
            self.take(deliveries)
            self._on_judged()

    def take(self, deliveries: list[Delivery]) -> None:
        """Judge the link again with these packets' deliveries (in the order they were sent)."""
        for delivery in deliveries:
            self._take_delay(delivery)
        newest = deliveries[-1].sent
        while self._recent and newest - self._recent[0][0].sent > QUEUE_WINDOW:
            self._recent.popleft()
        for burst in _bursts(deliveries):
            self._rates.append((burst[0].sent, _rate(burst)))
        while self._rates and newest - self._rates[0][0] > CAPACITY_MEMORY:
            self._rates.popleft()
        capacity = round(statistics.median(rate for _sent, rate in self._rates)) if self._rates else None
        carried = self._carried()
        self.overrun = carried is not None
        self.rate_bps = capacity if carried is None or capacity is None else min(capacity, carried)

    def _carried(self) -> int | None:
        """The rate the link carried the last QUEUE_WINDOW's packets at (bits per second) where it was overrun:
        its queue never drained in that time, and grew (they took longer to arrive than to be sent) or
        overflowed (packets were lost); else None. (Packets lost without a queue, from a burst that overflowed
        a socket's buffer or a lossy radio, say nothing of the link's rate.)"""
        received = [(delivery, queueing) for delivery, queueing in self._recent if queueing is not None]
        if len(received) < 2 or min(queueing for _delivery, queueing in received) <= QUEUE_LIMIT:
            return None
        first, last = received[0][0], received[-1][0]
        assert first.arrived is not None and last.arrived is not None
        spread = last.arrived - first.arrived
        lost = len(self._recent) - len(received)
        lossy = len(self._recent) >= MIN_REPORTED and lost > LOSS_LIMIT * len(self._recent)
        if spread <= 0 or (spread <= GROWTH * (last.sent - first.sent) and not lossy):
            return None
        return round(sum(delivery.size for delivery, _queueing in received[1:]) * 8 / spread)

    def _take_delay(self, delivery: Delivery) -> None:
        if delivery.arrived is None:
            self._recent.append((delivery, None))
            return
        delay = delivery.arrived - delivery.sent
        while self._delays and self._delays[-1][1] >= delay:
            self._delays.pop()
        self._delays.append((delivery.sent, delay))
        while delivery.sent - self._delays[0][0] > DELAY_MEMORY:
            self._delays.popleft()
        self._recent.append((delivery, delay - self._delays[0][1]))


def _bursts(deliveries: list[Delivery]) -> list[list[Delivery]]:
    """The runs of packets sent back to back (less than BURST_GAP apart) of which MIN_BURST or more arrived."""
    bursts: list[list[Delivery]] = []
    run: list[Delivery] = []
    for delivery in deliveries:
        if run and delivery.sent - run[-1].sent >= BURST_GAP:
            bursts.append(run)
            run = []
        run.append(delivery)
    bursts.append(run)
    return [arrived for burst in bursts if len(arrived := [d for d in burst if d.arrived is not None]) >= MIN_BURST]


def _rate(burst: list[Delivery]) -> float:
    """The rate a burst's packets arrived at (bits per second): the bytes after the first over their spread;
    UNBOUNDED where they arrived about as close as they were sent (the link is not what spaced them)."""
    arrivals = [delivery.arrived for delivery in burst if delivery.arrived is not None]
    spread = max(arrivals) - min(arrivals)
    if spread <= burst[-1].sent - burst[0].sent + SPREAD_SLACK:
        return UNBOUNDED
    return sum(delivery.size for delivery in burst[1:]) * 8 / spread
