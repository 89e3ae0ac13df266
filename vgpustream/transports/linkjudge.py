"""How a WebRTC viewer's link is judged: over a window of its RTCP reports, and sooner where its feedback says so.

Every LINK_WINDOW seconds the window's verdict: packets lost for good, the viewer's queue overflowed, or (where
the link's rate is measured) the link overrun. Between windows, at most one verdict each EARLY_VERDICT_INTERVAL
from the viewer's feedback: its transport-cc feedback (vgpustream.transports.congestion), where the browser
negotiated it, else a fall of its receiver's estimate (REMB, vgpustream.audience.ladder.Estimates).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from aiortc import RTCPeerConnection

from vgpustream.audience.fanout import PacketQueue
from vgpustream.audience.ladder import Estimates
from vgpustream.audience.seat import LINK_WINDOW, Link
from vgpustream.transports.congestion import PacketLog

POOR_LOSS = 0.05
"""The share of packets lost for good (after NACK retransmission) above which a link is poor."""
EARLY_VERDICT_INTERVAL = 1.0
"""Seconds at least between two verdicts that the viewer's feedback brings before the window's end."""


class WebRtcLinkJudge:
    """Judges one WebRTC viewer's link and hands each verdict to `judged`: fed the peer connection's stats (each
    window, from `start` until `stop`), the receiver's estimates (`estimate`) and the transport-cc feedback
    (through `packets`)."""

    def __init__(self, pc: RTCPeerConnection, queue: PacketQueue, judged: Callable[[Link], None]) -> None:
        self._pc = pc
        self._queue = queue
        """The viewer's video queue: packets dropped from it since the last window make the link poor."""
        self._judged = judged
        self.link: Link | None = None
        """The last verdict (None before the first)."""
        self._estimates = Estimates()
        self.packets = PacketLog(self._on_feedback)
        """The video packets the viewer was sent, and what its transport-cc feedback says of its link."""
        self._early_verdict_at = -float("inf")
        self._watching: asyncio.Task[None] | None = None

    def start(self, name: str) -> None:
        """Judge the link every LINK_WINDOW seconds from now on, in a task called `name`."""
        self._watching = asyncio.create_task(self._watch(), name=name)

    def stop(self) -> None:
        """No more window verdicts: the task is cancelled (it only waits and reads stats)."""
        if self._watching is not None:
            self._watching.cancel()

    def estimate(self, estimate: int, sent_bytes: int) -> None:
        """The receiver's estimate of its link (REMB), when the viewer had been sent `sent_bytes` of video: where
        it fell, the link is poor now, not at the window's end. Not where the link's rate is measured."""
        now = time.monotonic()
        if self.packets.rate_bps is not None:
            return
        overrun = self._estimates.add(now, estimate, sent_bytes)
        if not overrun or now - self._early_verdict_at < EARLY_VERDICT_INTERVAL:
            return
        self._early_verdict_at = now
        last = self.link or Link("good", 0.0, None, 0)
        self._verdict(dataclasses.replace(last, quality="poor", estimate_bps=estimate))

    def _on_feedback(self) -> None:
        """The viewer's transport-cc feedback judged its link again: a verdict now (at most one each
        EARLY_VERDICT_INTERVAL), not at the window's end, so that the ladder follows the link within seconds."""
        now, rate = time.monotonic(), self.packets.rate_bps
        if rate is None or now - self._early_verdict_at < EARLY_VERDICT_INTERVAL:
            return
        self._early_verdict_at = now
        last = self.link or Link("good", 0.0, None, 0)
        quality = "poor" if self.packets.overrun else "good"
        self._verdict(dataclasses.replace(last, quality=quality, estimate_bps=rate, measured=True))

    async def _watch(self) -> None:
        """Judge the link every LINK_WINDOW seconds, from the RTCP reports and the queue's drops of the window."""
        sent, lost, dropped = 0, 0, self._queue.dropped
        while True:
            await asyncio.sleep(LINK_WINDOW)
            now_sent, now_lost, rtt = 0, 0, None
            for stats in (await self._pc.getStats()).values():
                if stats.type == "outbound-rtp":
                    now_sent += stats.packetsSent
                elif stats.type == "remote-inbound-rtp":
                    now_lost += max(0, stats.packetsLost)
                    rtt = stats.roundTripTime
            loss = (now_lost - lost) / (now_sent - sent) if now_sent > sent else 0.0
            overflowed = self._queue.dropped - dropped
            measured = self.packets.rate_bps is not None
            poor = loss > POOR_LOSS or overflowed > 0 or (measured and self.packets.overrun)
            rtt_ms = None if rtt is None else round(rtt * 1000)
            sent, lost, dropped = now_sent, now_lost, self._queue.dropped
            estimate = self.packets.rate_bps if measured else self._estimates.latest
            quality = "poor" if poor else "good"
            self._verdict(Link(quality, round(max(0.0, loss), 3), rtt_ms, overflowed, estimate, measured))

    def _verdict(self, link: Link) -> None:
        self.link = link
        self._judged(link)
