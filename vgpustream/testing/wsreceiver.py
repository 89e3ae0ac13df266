"""A viewer over the WebSocket transport (vgpustream.transports.websocket), decoded with PyAV, for tests and benches."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import av

from vgpustream.media.stamp import read_frame_stamp
from vgpustream.testing.receiver import ReceivedFrame
from vgpustream.transports.websocket import HEADER, KEYFRAME, PROTOCOL, SOUND, VIDEO


class WebSocketRefused(Exception):
    """The server closed the socket; `code` and `reason` say why."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"the WebSocket was closed: {code} {reason}")
        self.code = code
        self.reason = reason


class WebSocketReceiver:
    """One viewer: `connect()` authenticates with `token` and reads the welcome; then frames and messages.

    With `decode=False` it only counts frames (each video message is one access unit): `next_frame` gives
    them without a picture, as the fan-out bench's counting viewers need.
    """

    def __init__(self, url: str, http: aiohttp.ClientSession, token: str | None = None, *, decode: bool = True) -> None:
        self.url = url
        self._http = http
        self._token = token
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._decoder = av.CodecContext.create("h264", "r") if decode else None
        self._frames: asyncio.Queue[ReceivedFrame] = asyncio.Queue()
        self.messages: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] | None = None
        self.keyframes = 0
        self.sound_packets = 0
        self.told_before_video: list[dict[str, Any]] | None = None
        """The text messages that came before the first video packet (None until it came)."""
        self._reading: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Future[None]] = set()
        self.closed: asyncio.Future[tuple[int | None, str]] = asyncio.get_running_loop().create_future()

    async def connect(self, timeout: float = 10.0) -> None:
        """Open the socket and authenticate; WebSocketRefused if the server closes it instead of welcoming."""
        self._socket = await self._http.ws_connect(self.url, protocols=(PROTOCOL,), max_msg_size=0)
        await self._socket.send_str(json.dumps({"type": "auth", "token": self._token}))
        message = await asyncio.wait_for(self._socket.receive(), timeout)
        if message.type != aiohttp.WSMsgType.TEXT:
            await self._socket.close()
            raise WebSocketRefused(self._socket.close_code, str(message.extra or ""))
        self.welcome = json.loads(message.data)
        self._reading = asyncio.create_task(self._read())

    def send_input(self, event: dict[str, Any]) -> None:
        self.send_text(json.dumps(event))

    def send_text(self, text: str) -> None:
        assert self._socket is not None
        self._sending.add(task := asyncio.ensure_future(self._socket.send_str(text)))
        task.add_done_callback(self._sending.discard)

    async def send_bytes(self, data: bytes) -> None:
        assert self._socket is not None
        await self._socket.send_bytes(data)

    async def next_frame(self, timeout: float = 10.0) -> ReceivedFrame:
        return await asyncio.wait_for(self._frames.get(), timeout)

    async def _read(self) -> None:
        assert self._socket is not None
        async for message in self._socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(message.data))
            elif message.type == aiohttp.WSMsgType.BINARY:
                self._take(message.data)
        self.closed.set_result((self._socket.close_code, str(self._socket.exception() or "")))

    def _take(self, data: bytes) -> None:
        kind, flags, _captured, _micros = HEADER.unpack_from(data)
        if kind == SOUND:
            self.sound_packets += 1
            return
        assert kind == VIDEO, kind
        if self.told_before_video is None:
            self.told_before_video = list(self.messages)
        self.keyframes += bool(flags & KEYFRAME)
        if self._decoder is None:
            self._frames.put_nowait(ReceivedFrame(None, None, time.time()))
            return
        for picture in self._decoder.decode(av.Packet(data[HEADER.size :])):
            self._frames.put_nowait(ReceivedFrame(picture, read_frame_stamp(picture), time.time()))

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._reading is not None:
            await asyncio.gather(self._reading, return_exceptions=True)
