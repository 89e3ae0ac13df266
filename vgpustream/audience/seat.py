"""A seat: what the audience knows of one viewer, whatever transport carries its stream.

The audience admits seats, counts them, feeds their packet queues and reads their input; it never asks which
transport a seat uses. A transport (WebRTC in `transports/webrtc.py`, a WebSocket in `transports/websocket.py`)
turns a seat into bytes on a wire: it says when the viewer is connected (`_connected`), sends what the seat is
given (`send_message`, the queues), and brings the viewer's messages back through the same callbacks.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import av

from vgpustream.audience.fanout import PacketQueue
from vgpustream.control.auth import Grant
from vgpustream.control.roles import OPERATOR
from vgpustream.media.renditions import TOP, Rendition
from vgpustream.settings import ViewerRules

SOUND_QUEUE = 25
"""A viewer's queue of Opus packets: half a second; a viewer that falls further behind skips ahead."""
DISMISS_GRACE = 3.0
"""Seconds between telling a viewer why it is disconnected and disconnecting it, for the message to arrive: a
viewer busy sending (a flooding one) takes it in only after one to three seconds of its own queue."""


@dataclass(frozen=True)
class SeatCallbacks:
    """How a seat reaches its session, without knowing the session's type."""

    request_keyframe: Callable[[Seat], None]
    """The session needs an IDR of this viewer's rendition (its queue overflowed: it skips to the next keyframe)."""
    viewer_asks_keyframe: Callable[[Seat], None]
    """The viewer itself asked for one (RTCP PLI/FIR); the session decides whether to honour it."""
    attach: Callable[[Seat], None]
    closed: Callable[[Seat], None]
    link_judged: Callable[[Seat], None]
    """The transport judged the viewer's link again (`Seat.link`)."""
    input: Callable[[Seat, str | bytes], None]
    microphone: Callable[[Seat, av.AudioFrame | bytes], None]
    """Sound from the viewer's microphone: decoded (its WebRTC track) or one Opus packet (its WebSocket)."""


LINK_WINDOW = 4.0
"""Seconds over which a viewer's link is judged (by its transport: RTCP receiver reports, a socket's backlog)."""


@dataclass(frozen=True)
class Link:
    """How a viewer's network link carries the stream, as its transport judges it over a window of seconds."""

    quality: str
    """'good', or 'poor' when packets are lost for good, the viewer's queue overflowed or its receiver's estimate
    fell (vgpustream.audience.ladder.Estimates)."""
    loss: float
    rtt_ms: int | None
    dropped: int
    """Packets the server dropped for this viewer (its queue overflowed: it could not keep up)."""
    estimate_bps: int | None = None
    """What the link is estimated to carry (bits per second), where there is an estimate (`measured` says whose)."""
    measured: bool = False
    """Whether `estimate_bps` is the link's rate as the server measured it (transport-cc feedback:
    vgpustream.transports.congestion), which shows room for more; else it is the receiver's REMB or what the link
    carried while it was overrun, which show only less."""

    def to_json(self) -> dict[str, object]:
        return {
            "quality": self.quality,
            "loss": self.loss,
            "rtt_ms": self.rtt_ms,
            "dropped": self.dropped,
            "estimate_bps": self.estimate_bps,
            "measured": self.measured,
        }

    def message(self) -> str:
        return json.dumps({"type": "link", **self.to_json()})


class Seat(ABC):
    """One viewer of a session: its role and token, its packet queues, `send_message` and `close`.

    A seat that is not connected within the rules' connect timeout, or not again within their idle
    timeout, gives its place back.
    """

    transport: str
    """The transport's name, as the API and the audit trail show it."""

    def __init__(self, callbacks: SeatCallbacks, grant: Grant, rules: ViewerRules) -> None:
        self.id = secrets.token_urlsafe(12)
        self.role = grant.role
        self.token_id = grant.token_id
        self.clipboard = grant.clipboard_access
        """What the viewer may do with the guest's clipboard: none, read or readwrite (its token says)."""
        self.may_speak = grant.may_speak
        """Whether the viewer may send its microphone into the guest (its token says)."""
        self.created_at = time.time()
        self.idle_timeout = rules.idle_timeout
        self.dismissed: str | None = None
        """Why the viewer is being disconnected (it is told, then let go); None while it is welcome."""
        self.queue = PacketQueue(on_overflow=lambda: callbacks.request_keyframe(self))
        self.sound_queue: PacketQueue | None = None
        """The viewer's Opus packets, when the session has sound and the viewer takes it."""
        self.rendition: Rendition | None = TOP
        """The rendition whose packets the viewer takes (its transport picks it); None where it has no codec
        the session makes."""
        self.pinned: int | None = None
        """The rung the viewer asked to stay on (`quality=`), where it did: the ladder leaves it there."""
        self.link: Link | None = None
        """The link's last verdict (None until its transport judged it)."""
        self._told = "good"
        """The link's quality the viewer was last told (it hears of it only once it is poor, and again when it is
        good again)."""
        self.closed_because: str | None = None
        """Why the server ended the viewer, where it did (revoked, dismissed)."""
        self._callbacks = callbacks
        self._attached = False
        self._closing = False
        self._closed = asyncio.Event()
        self._close_task: asyncio.Task[None] | None = None
        self._leaving: asyncio.TimerHandle | None = None
        self._idle = asyncio.get_running_loop().call_later(rules.connect_timeout, self._idle_expired)

    @property
    def video(self) -> bool:
        """Whether the viewer takes the video."""
        return self.rendition is not None

    @property
    def can_control(self) -> bool:
        """Whether this viewer's keyboard and mouse reach the guest (view-only viewers' do not)."""
        return self.role in ("control", OPERATOR)

    @property
    @abstractmethod
    def connection_state(self) -> str:
        """new, connecting, connected, disconnected, failed or closed (the W3C RTCPeerConnection's words)."""

    @property
    @abstractmethod
    def input_channel(self) -> bool:
        """Whether the viewer has a channel for messages open (its input, our state and cursor messages)."""

    @abstractmethod
    def send_message(self, text: str) -> bool:
        """Send a JSON text message to the viewer; False if it has no channel open for it."""

    @abstractmethod
    async def _close_transport(self) -> None:
        """Release what carries the viewer's stream."""

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "role": self.role,
            "token_id": self.token_id,
            "transport": self.transport,
            "rendition": None if self.rendition is None else self.rendition.name,
            "quality": "auto" if self.pinned is None else str(self.pinned),
            "created_at": self.created_at,
            "state": self.connection_state,
            "input_channel": self.input_channel,
            "dropped_packets": self.queue.dropped,
            "link": self.link.to_json() if self.link else None,
        }

    def take_sound(self) -> PacketQueue:
        """The viewer takes the session's sound: its queue of Opus packets."""
        self.sound_queue = PacketQueue(capacity=SOUND_QUEUE)
        return self.sound_queue

    def dismiss(self, reason: str, message: str) -> None:
        """Tell the viewer why it must go ({"type": "disconnect", "reason", "message"}), then disconnect it
        DISMISS_GRACE seconds later; what it sends meanwhile is ignored."""
        if self._closing or self.dismissed is not None:
            return
        self.dismissed, self.closed_because = reason, message
        self.send_message(json.dumps({"type": "disconnect", "reason": reason, "message": message}))
        self._leaving = asyncio.get_running_loop().call_later(DISMISS_GRACE, self._let_go)

    async def close(self, reason: str | None = None) -> None:
        """Leave: detach from the session and release the transport; where the server ends the viewer, the
        `reason` is told it first ({"type": "disconnect", "reason": "closed", "message": reason}). Safe to call
        twice."""
        if self._closing:
            await self._closed.wait()
            return
        if reason is not None:
            self.closed_because = reason
            self.send_message(json.dumps({"type": "disconnect", "reason": "closed", "message": reason}))
        self._closing = True
        self._idle.cancel()
        if self._leaving is not None:
            self._leaving.cancel()
        self._callbacks.closed(self)
        self.queue.close()
        if self.sound_queue is not None:
            self.sound_queue.close()
        try:
            await self._close_transport()
        finally:
            self._closed.set()

    def _judged(self, link: Link) -> None:
        """The transport's new verdict on the link: the audience hears of it (the ladder), and the viewer where its
        quality changed."""
        self.link = link
        self._callbacks.link_judged(self)
        if link.quality != self._told and self.send_message(link.message()):
            self._told = link.quality

    def _connected(self) -> bool:
        """The transport is up (again): no idle timeout runs; the first time, the seat joins the fan-out
        (only now: packets queued before they can flow would arrive late). True the first time."""
        self._idle.cancel()
        if self._attached or self._closing:
            return False
        self._attached = True
        self._callbacks.attach(self)
        return True

    def _disconnected(self) -> None:
        """The transport is down for now: the seat is given up unless it is up again within the idle timeout."""
        self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(self.idle_timeout, self._idle_expired)

    def _let_go(self) -> None:
        self._close_task = asyncio.ensure_future(self.close())

    def _idle_expired(self) -> None:
        """Not connected within the timeout (never, or not again): give the place back."""
        if not self._closing and self.connection_state != "connected":
            self._let_go()
