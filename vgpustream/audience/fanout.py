"""Fan-out of one encoder's packets to many viewers, each through its own bounded queue."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import av

DEFAULT_CAPACITY = 60  # two seconds at 30 fps


class QueueClosed(Exception):
    """The viewer queue was closed while someone waited on it."""


class PacketQueue:
    """A viewer's bounded queue of encoded packets.

    A new queue waits for a keyframe, so a viewer starts on a decodable picture. When a viewer
    stops reading and its queue fills, the queue drops everything and waits for the next
    keyframe again (asking for one through `on_overflow`): the viewer skips ahead, and pushing
    never blocks, so the session and the other viewers never wait for it.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, on_overflow: Callable[[], None] | None = None) -> None:
        self.capacity = capacity
        self.dropped = 0
        self.overflows = 0
        self._on_overflow = on_overflow
        self._packets: deque[av.Packet] = deque()
        self._waiting_for_keyframe = True
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._packets)

    def push(self, packet: av.Packet) -> None:
        """Queue a packet for this viewer without ever blocking."""
        if self._closed:
            return
        if self._waiting_for_keyframe and not packet.is_keyframe:
            self.dropped += 1
            return
        if len(self._packets) >= self.capacity:
            self.dropped += len(self._packets) + (not packet.is_keyframe)
            self.overflows += 1
            self._packets.clear()
            self._waiting_for_keyframe = True
            if self._on_overflow is not None:
                self._on_overflow()
            if not packet.is_keyframe:
                return
        self._waiting_for_keyframe = False
        self._packets.append(packet)
        self._ready.set()

    async def get(self) -> av.Packet:
        """The next packet; raises QueueClosed once the queue is closed."""
        while not self._packets:
            if self._closed:
                raise QueueClosed
            self._ready.clear()
            await self._ready.wait()
        return self._packets.popleft()

    def close(self) -> None:
        self._closed = True
        self._packets.clear()
        self._ready.set()
