"""A viewer over a WebSocket: the session's own packets, for browsers that WebRTC cannot reach.

The same H.264 access units and Opus packets the WebRTC viewers get (never a second encode), each in one
binary message with a small header; text messages both ways are the data channel's JSON (state, cursor,
link, clipboard, disconnect from the server; input, clipboard, resize and delay reports from the browser),
read by the same validator. The browser decodes with WebCodecs.

Binary message (server to browser), network byte order:

    kind      u8       1: video (an H.264 access unit, Annex B), 2: sound (one Opus packet)
    flags     u8       bit 0: a keyframe (IDR, with SPS and PPS)
    captured  f64      the frame's capture time, ms since the Unix epoch (abs-capture-time's clock); NaN if unknown
    timestamp i64      the packet's presentation time in microseconds (for the decoder)
    payload   the rest

The browser sends binary messages of one kind, with the same header: 3, its microphone (one Opus packet, as
WebCodecs' AudioEncoder makes it), while it holds the session's microphone (vgpustream.input.microphone); any other
binary message closes the socket.

A viewer whose socket does not drain (a slow link, a stalled tab) falls behind in its packet queue, which
skips to the next keyframe when it overflows, as a WebRTC viewer's does; the others never wait for it. Its
link is judged every LINK_WINDOW seconds by how fast its socket drains: poor where its queue overflowed or more
than BACKLOG_POOR seconds of stream wait to leave the host (in the socket's buffers: SEND_BUFFER bounds the
kernel's, which would otherwise hold many seconds), and then what left in the window is what the link carries
(the estimate the ladder picks a rung by: vgpustream.audience.ladder).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import math
import socket
import struct
import termios

import av
from aiohttp import ClientWebSocketResponse, WSCloseCode, web

from vgpustream.audience.fanout import PacketQueue, QueueClosed
from vgpustream.audience.seat import LINK_WINDOW, Link, Seat, SeatCallbacks
from vgpustream.control.auth import Grant
from vgpustream.input.events import InvalidInput, json_object
from vgpustream.settings import ViewerRules

PROTOCOL = "vgpustream.v1"
"""The WebSocket subprotocol (Sec-WebSocket-Protocol) of this format."""
VIDEO, SOUND, MICROPHONE = 1, 2, 3
KEYFRAME = 1
HEADER = struct.Struct("!BBdq")
BAD_AUTH = 4400
"""The close code for a first message that is not the auth message, or a second auth message (vgpustream.api.
websocket lists the codes)."""
ENDED = 4403
"""The close code where the server ended the viewer (its token revoked or expired, a flood): the reason says."""
MAX_REASON_BYTES = 123
"""The longest close reason a WebSocket close frame carries (RFC 6455: 125 bytes of payload, 2 for the code)."""
BACKLOG_POOR = 0.5
"""Seconds of stream waiting to leave the host above which a WebSocket viewer's link is poor."""
SEND_BUFFER = 128 * 1024
"""The kernel's send buffer of a viewer's socket (it doubles it): at most a second or so of a thin link's stream
waits there, a few times a wide link's bandwidth-delay product (4 Mbit/s at 100 ms is 50 KB)."""
CODEC = "avc1.42e01f"
"""What the browser's VideoDecoder is configured with: H.264 constrained baseline, as the encoder makes it."""


def binary_message(kind: int, packet: av.Packet) -> bytes:
    """One packet as the binary message the browser reads (the header, then the packet's bytes)."""
    captured = packet.opaque * 1000 if isinstance(packet.opaque, float) else math.nan
    micros = 0 if packet.pts is None or packet.time_base is None else round(packet.pts * packet.time_base * 1_000_000)
    flags = KEYFRAME if packet.is_keyframe else 0
    return HEADER.pack(kind, flags, captured, micros) + bytes(packet)


class WebSocketViewer(Seat):
    """One browser watching a session over a WebSocket that the handler has prepared and authenticated."""

    transport = "websocket"

    def __init__(
        self,
        callbacks: SeatCallbacks,
        grant: Grant,
        rules: ViewerRules,
        socket: web.WebSocketResponse,
        *,
        sound: bool,
        transport: asyncio.Transport | None = None,
    ) -> None:
        super().__init__(callbacks, grant, rules)
        self._socket = socket
        self._transport = transport
        """The connection under the socket, whose backlog tells how the link drains (None: not judged)."""
        self._sent_bytes = 0
        bound_send_buffer(transport)
        self._senders: list[asyncio.Task[None]] = []
        self._messages: set[asyncio.Future[None]] = set()
        """Text messages on their way (kept, so that none is collected before it is written)."""
        self._close_code = WSCloseCode.OK
        self._close_reason = "the viewer left"
        if sound:
            self.take_sound()

    @property
    def connection_state(self) -> str:
        if self._closing or self._socket.closed:
            return "closed"
        return "connected" if self._attached else "connecting"

    @property
    def input_channel(self) -> bool:
        return not self._socket.closed

    def send_message(self, text: str) -> bool:
        if self._socket.closed or self._closing:
            return False
        # aiohttp queues the frame at once; a socket that does not drain holds up only its own sender tasks
        task = asyncio.ensure_future(self._socket.send_str(text))
        self._messages.add(task)
        task.add_done_callback(self._sent)
        return True

    def _sent(self, task: asyncio.Future[None]) -> None:
        self._messages.discard(task)
        if not task.cancelled():
            task.exception()  # a message to a browser that went away is lost with it

    async def run(self) -> None:
        """Tell the browser what it receives, join the fan-out, and read its messages until either side closes."""
        welcome = {
            "type": "welcome",
            "viewer": self.id,
            "role": self.role,
            "video": {"codec": CODEC},
            "sound": {"codec": "opus", "sampleRate": 48_000, "numberOfChannels": 2}
            if self.sound_queue is not None
            else None,
        }
        await self._socket.send_str(json.dumps(welcome))
        self._senders.append(asyncio.create_task(self._send(self.queue, VIDEO), name=f"ws-video-{self.id}"))
        if self.sound_queue is not None:
            self._senders.append(asyncio.create_task(self._send(self.sound_queue, SOUND), name=f"ws-sound-{self.id}"))
        self._connected()
        if self._transport is not None:
            self._senders.append(asyncio.create_task(self._watch_link(), name=f"ws-link-{self.id}"))
        try:
            async for message in self._socket:
                if message.type == web.WSMsgType.TEXT and is_auth(message.data):
                    self._close_code, self._close_reason = BAD_AUTH, "the token was sent already"
                    break
                if message.type == web.WSMsgType.TEXT:
                    self._callbacks.input(self, message.data)
                elif message.type == web.WSMsgType.BINARY and message.data[:1] == bytes([MICROPHONE]):
                    self._callbacks.microphone(self, message.data[HEADER.size :])
                elif message.type == web.WSMsgType.BINARY:
                    self._close_code = WSCloseCode.UNSUPPORTED_DATA
                    self._close_reason = "the browser sends text messages and microphone packets only"
                    break
        finally:
            await self.close()

    async def _send(self, queue: PacketQueue, kind: int) -> None:
        while True:
            try:
                packet = await queue.get()
            except QueueClosed:
                return
            message = binary_message(kind, packet)
            try:
                await self._socket.send_bytes(message)
            except ConnectionError:  # the browser went away: run() ends on its own
                return
            self._sent_bytes += len(message)

    async def _watch_link(self) -> None:
        """Judge the link every LINK_WINDOW seconds by how fast the socket drains."""
        sent, dropped, waiting = self._sent_bytes, self.queue.dropped, unsent_bytes(self._transport)
        while True:
            await asyncio.sleep(LINK_WINDOW)
            now_waiting = unsent_bytes(self._transport)
            carried = (self._sent_bytes - sent - (now_waiting - waiting)) * 8 / LINK_WINDOW  # bits/s that left
            overflowed = self.queue.dropped - dropped
            poor = overflowed > 0 or now_waiting * 8 > BACKLOG_POOR * max(carried, 1.0)
            # a link that held the stream back all along carried what it can
            self._judged(Link("poor" if poor else "good", 0.0, None, overflowed, round(carried) if poor else None))
            sent, dropped, waiting = self._sent_bytes, self.queue.dropped, now_waiting

    async def _close_transport(self) -> None:
        for sender in self._senders:
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        if self.closed_because is not None:  # the server ended it: revoked, dismissed
            self._close_code, self._close_reason = ENDED, self.closed_because
        await close(self._socket, self._close_code, self._close_reason)


def bound_send_buffer(transport: asyncio.Transport | None) -> None:
    """The socket's kernel send buffer at SEND_BUFFER (autotuned, it grows to megabytes: a minute of a thin
    link's stream)."""
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)


def unsent_bytes(transport: asyncio.Transport | None) -> int:
    """Bytes written to the connection that have not left the host: in the transport's buffer, and in the
    kernel's send queue, unsent or not yet acknowledged (SIOCOUTQ)."""
    if transport is None or transport.is_closing():
        return 0
    waiting = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            waiting += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(4)))[0]
    return waiting


def is_auth(text: str) -> bool:
    """Whether a browser's text message is an auth message (the first one's; any other is one too many)."""
    if '"auth"' not in text:
        return False
    try:
        return json_object(text).get("type") == "auth"
    except InvalidInput:
        return False


async def close(socket: web.WebSocketResponse | ClientWebSocketResponse, code: int, reason: str) -> None:
    """Close `socket` with `code` and as much of `reason` as a close frame carries, cut at a whole character."""
    await socket.close(code=code, message=reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore").encode())
