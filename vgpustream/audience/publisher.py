"""The fan-out of a session's packets to its connected viewers' queues, and the replay that starts a joiner.

A viewer that joins is replayed the packets since the last keyframe (the keyframe and the P-frames
that refined it), so it starts at once and as sharp as the others, instead of from a new IDR of the
same picture, which the rate control would have to squeeze into a drained budget. The replay is
paced (REPLAY_SPEED times the session's bitrate): sent at once, a second of video would overflow the
viewer's socket buffers and arrive as loss.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import av

from vgpustream.audience.seat import Seat
from vgpustream.audience.stats import AudienceStats
from vgpustream.capture.pipeline import Encoded
from vgpustream.media.renditions import Rendition

REPLAY_LIMIT = 120
"""The most packets a joining viewer is replayed (a still picture's keyframe and its refinements fit, at
up to 60 fps); past that it waits for a new keyframe instead. Paced, the replay never fills its queue."""
REPLAY_SPEED = 3
"""A replay goes out at this many times the session's bitrate."""
JOIN_MAX_AGE = 0.3
"""Seconds: a joiner is replayed the packets since the keyframe only where none of their pictures was
superseded longer ago than this (see JoinReplay)."""
VIEWER_KEYFRAME_INTERVAL = 2.0
"""Seconds between two keyframe requests of one viewer that are passed on to the encoder."""


@dataclass
class _Feed:
    """What the publisher keeps for one viewer."""

    attached: bool = False
    """Whether the viewer gets the fan-out (from when it is connected)."""
    backlog: list[av.Packet] | None = None
    """While the viewer is being replayed the recent packets: those still to send it, live ones last."""
    replaying: asyncio.Task[None] | None = None
    keyframe_asked_at: float = -float("inf")
    """When (monotonic) this viewer's last keyframe request that was passed on came."""


class Publisher:
    """Queues each step's packets (and the sound) for the connected viewers that take them, starts a joiner
    from the replay of its rendition's packets since the keyframe, and passes the viewers' keyframe requests on."""

    def __init__(
        self,
        request_keyframe: Callable[[Rendition | None], None],
        bitrate: Callable[[], int],
        stats: AudienceStats,
    ) -> None:
        self._request_keyframe = request_keyframe
        self._bitrate = bitrate
        """The session's bitrate now, which paces replays."""
        self._stats = stats
        self._feeds: dict[Seat, _Feed] = {}
        self._since_keyframe: dict[Rendition, JoinReplay] = {}
        """Of each rendition: the last keyframe and the packets after it, for joiners."""

    def add(self, viewer: Seat) -> None:
        """A viewer admitted: it gets the fan-out once it is attached."""
        self._feeds[viewer] = _Feed()

    def remove(self, viewer: Seat) -> None:
        """A viewer left: its replay, if any, stops (it only feeds the viewer's queue, which is closed with it)."""
        feed = self._feeds.pop(viewer, None)
        if feed is not None and feed.replaying is not None:
            feed.replaying.cancel()

    def attached(self) -> list[Seat]:
        """The viewers that get the fan-out, in the order they came."""
        return [viewer for viewer, feed in self._feeds.items() if feed.attached]

    def attach(self, viewer: Seat) -> None:
        """The viewer is connected: it starts from the replay of its rendition's packets since the keyframe where
        they show the present, else from a fresh keyframe, which is asked for."""
        feed = self._feeds[viewer]
        feed.attached = True
        if viewer.rendition is None:
            return  # its offer took no video the session makes: it gets messages and sound only
        kept = self._since_keyframe.get(viewer.rendition)
        if kept is None or not kept.current(time.time()):
            self._stats.joins_on_a_keyframe += 1
            self._request_keyframe(viewer.rendition)  # its queue waits for it: it starts from the present
            return
        self._stats.joins_replayed += 1
        feed.backlog = replay(kept.packets)
        feed.replaying = asyncio.create_task(self._replay(viewer, feed), name=f"replay-{viewer.id}")

    async def _replay(self, viewer: Seat, feed: _Feed) -> None:
        """Send the viewer its backlog, paced, then hand it over to the live fan-out."""
        assert feed.backlog is not None
        while feed.backlog:
            packet = feed.backlog.pop(0)
            viewer.queue.push(packet)
            await asyncio.sleep(packet.size * 8 / (self._bitrate() * REPLAY_SPEED))
        feed.backlog = None

    def keep(self, rendition: Rendition, made: Encoded) -> None:
        """Keep `rendition`'s packets since its keyframe for joiners."""
        self._since_keyframe.setdefault(rendition, JoinReplay()).add(made)

    def drop_replay(self, rendition: Rendition) -> None:
        """Nobody takes `rendition` any more: its replay goes (its encoder stops, and one that starts again later
        must not replay a picture from before)."""
        self._since_keyframe.pop(rendition, None)

    def publish(self, encoded: dict[Rendition, Encoded]) -> None:
        """Queue one step's packets of each rendition for every attached viewer of it (behind its replay, while
        it is being replayed)."""
        for rendition, made in encoded.items():
            attached = [
                viewer for viewer, feed in self._feeds.items() if feed.attached and viewer.rendition == rendition
            ]
            for packet in made.packets:
                for viewer in attached:
                    backlog = self._feeds[viewer].backlog
                    if backlog is None:
                        viewer.queue.push(packet)
                    else:
                        backlog.append(packet)

    def listened(self) -> bool:
        """Whether a connected viewer takes the sound (if none does, nothing is encoded)."""
        return any(feed.attached and viewer.sound_queue is not None for viewer, feed in self._feeds.items())

    def publish_sound(self, packets: list[av.Packet]) -> None:
        """Queue the session's Opus packets for every connected viewer that takes the sound."""
        for viewer, feed in self._feeds.items():
            if feed.attached and viewer.sound_queue is not None:
                for packet in packets:
                    viewer.sound_queue.push(packet)

    def on_overflow(self, viewer: Seat) -> None:
        """A viewer's queue overflowed: it skips to the next keyframe of its rendition, which is asked for."""
        self._request_keyframe(viewer.rendition)

    def on_keyframe_request(self, viewer: Seat) -> None:
        """A viewer's RTCP PLI/FIR: passed on at most once per VIEWER_KEYFRAME_INTERVAL for that viewer.

        A viewer on a lossy link asks again and again, and every IDR costs every viewer of the session
        (a burst of bits, a softer picture after it); the others' requests still go through.
        """
        feed = self._feeds.get(viewer)
        if feed is None:
            return
        now = time.monotonic()
        if now - feed.keyframe_asked_at < VIEWER_KEYFRAME_INTERVAL:
            self._stats.keyframe_requests_limited += 1
            return
        feed.keyframe_asked_at = now
        self._request_keyframe(viewer.rendition)


class JoinReplay:
    """A rendition's last keyframe and the packets after it (at most REPLAY_LIMIT), which a joining viewer is
    sent so that it starts at once, and whether they show the present.

    A browser shows each replayed frame as it decodes it, so a replay of a picture that changed after its
    keyframe plays the past back in fast motion (measured at 1080p30, moving: frames up to 1.15 s old in the
    first 2 s after a join). It is used only while nothing in it was superseded more than JOIN_MAX_AGE ago:
    the picture has not changed since the keyframe (a still screen, or one only being refined: the replay
    makes it sharp at once), or it first changed within JOIN_MAX_AGE. Otherwise the joiner waits for a
    fresh keyframe, which the keyframe policy shares among the joiners of half a second.
    """

    def __init__(self) -> None:
        self.packets: list[av.Packet] = []
        self._changed_at: float | None = None
        """The capture time of the first change after the keyframe (None while its picture stands)."""

    def add(self, encoded: Encoded) -> None:
        for packet in encoded.packets:
            if packet.is_keyframe:
                self.packets, self._changed_at = [packet], None
            elif 0 < len(self.packets) < REPLAY_LIMIT:
                self.packets.append(packet)
                if encoded.changed and self._changed_at is None:
                    self._changed_at = packet.opaque
            else:
                self.packets = []  # too long to replay (or no keyframe yet): joiners ask for one

    def current(self, now: float) -> bool:
        """Whether a joiner may be replayed the packets at wall-clock time `now`."""
        return bool(self.packets) and (self._changed_at is None or now - self._changed_at <= JOIN_MAX_AGE)


def replay(packets: list[av.Packet]) -> list[av.Packet]:
    """Copies of `packets` timed one RTP clock tick apart, ending at the last one's time.

    A joining viewer gets them at once: timed as they were encoded, a browser would play them out at
    their original pace and stay that far behind the live picture.
    """
    last = packets[-1].pts
    copies = []
    for age, packet in enumerate(reversed(packets)):
        copy = av.Packet(bytes(packet))
        copy.pts = copy.dts = last - age
        copy.time_base = packet.time_base
        copy.is_keyframe = packet.is_keyframe
        copies.append(copy)
    return copies[::-1]
