"""A WHEP viewer built on aiortc: what the tests, the benches and the deploy smoke check watch a session with."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

from vgpustream.media.stamp import Stamp, read_frame_stamp
from vgpustream.testing.netem import LossyLink


def local_peer() -> RTCPeerConnection:
    """A peer connection that asks no STUN server: aiortc's default is a public one, which tests and benches
    must never reach (and which a machine without a network waits seconds for)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def offering_peer(data_channel: bool = False) -> RTCPeerConnection:
    """A real aiortc viewer with its offer made (recvonly video, and the input data channel if asked)."""
    pc = local_peer()
    pc.addTransceiver("video", direction="recvonly")
    if data_channel:
        pc.createDataChannel("input")
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def an_offer(data_channel: bool = True) -> str:
    """A real aiortc viewer's offer: recvonly video and, unless told otherwise, the input data channel."""
    pc = await offering_peer(data_channel)
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


class WhepError(Exception):
    """The server refused the offer; `status` and `body` say why."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"WHEP POST answered {status}: {body[:200]}")
        self.status = status
        self.body = body


@dataclass
class ReceivedFrame:
    picture: av.VideoFrame | None
    """None where the viewer counts frames without decoding them (the benches' counting viewers)."""
    stamp: Stamp | None
    received_at: float


@dataclass
class ReceiverStats:
    frames: int = 0
    stamps: list[Stamp] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)


class WhepReceiver:
    """One viewer: POSTs an offer (recvonly H.264 video + `input` data channel), then receives.

    Every decoded frame's stamp is read, so tests and benchmarks can tell which frames arrived
    and how late (capture to decode, on the same host).
    """

    def __init__(
        self,
        endpoint: str,
        http: aiohttp.ClientSession,
        input_channel: bool = True,
        token: str | None = None,
        *,
        link: LossyLink | None = None,
        sound: bool = False,
        codecs: tuple[str, ...] | None = None,
        microphone: MediaStreamTrack | None = None,
    ) -> None:
        """`codecs`: the only video codecs to offer (e.g. ("vp8",), as a browser without H.264); all of
        aiortc's by default. `microphone`: an audio track to send on the audio section (sendrecv, as the
        console offers it), which it then has whatever `sound` says."""
        self.endpoint = endpoint
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.location: str | None = None
        self.stats = ReceiverStats()
        self.latest: ReceivedFrame | None = None
        self.messages: list[dict[str, Any]] = []
        self._http = http
        self._link = link
        """The media goes through this weak link, when there is one."""
        self._pc = local_peer()
        video = self._pc.addTransceiver("video", direction="recvonly")  # video first, as browsers offer it
        if codecs is not None:
            offered = {f"video/{codec}" for codec in codecs}
            capabilities = RTCRtpReceiver.getCapabilities("video").codecs
            video.setCodecPreferences([codec for codec in capabilities if codec.mimeType.lower() in offered])
        if microphone is not None:
            self._pc.addTransceiver(microphone, direction="sendrecv")
        elif sound:
            self._pc.addTransceiver("audio", direction="recvonly")
        self._track: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self._sound_track: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self._pc.on("track", self._on_track)
        self._channel = self._pc.createDataChannel("input") if input_channel else None
        if self._channel is not None:
            self._channel.on("message", lambda m: self.messages.append(json.loads(m)))
        self._opened = asyncio.Event()
        if self._channel is not None:
            self._channel.on("open", self._opened.set)

    @property
    def pc(self) -> RTCPeerConnection:
        return self._pc

    def _on_track(self, track: MediaStreamTrack) -> None:
        (self._sound_track if track.kind == "audio" else self._track).set_result(track)

    async def connect(self, timeout: float = 20.0) -> None:
        """Offer (with an audio section if the receiver takes sound), take the answer, wait for the video track."""
        await self._pc.setLocalDescription(await self._pc.createOffer())
        offer = self._pc.localDescription.sdp
        async with self._http.post(
            self.endpoint,
            data=self._link.offer(offer) if self._link else offer,
            headers={"Content-Type": "application/sdp", **self._auth},
        ) as response:
            body = await response.text()
            if response.status != 201:
                raise WhepError(response.status, body)
            self.location = urljoin(self.endpoint, response.headers["Location"])
        answer = self._link.answer(body) if self._link else body
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(asyncio.shield(self._track), timeout)

    async def wait_channel_open(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._opened.wait(), timeout)

    def send_input(self, event: dict[str, Any]) -> None:
        assert self._channel is not None, "this receiver has no input channel"
        self._channel.send(json.dumps(event))

    def send_message(self, message: str | bytes) -> None:
        """Send anything at all on the input channel (the abuse bench's hostile messages)."""
        assert self._channel is not None, "this receiver has no input channel"
        self._channel.send(message)

    async def send_pli(self) -> None:
        """Ask the server for a keyframe as a viewer that lost the picture does (RTCP PLI on its video stream)."""
        (rtp_receiver,) = self._pc.getReceivers()
        await rtp_receiver._send_rtcp_pli(rtp_receiver.getSynchronizationSources()[0].source)

    async def send_estimate(self, bitrate: int) -> None:
        """Tell the server the bitrate this viewer's link carries, as a browser's receiver does (RTCP REMB). From
        the first call on, the estimates are the caller's alone: aiortc's own estimator, which would interleave
        its slowly climbing ones, stops."""
        (rtp_receiver,) = self._pc.getReceivers()
        rtp_receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
        ssrc = rtp_receiver.getSynchronizationSources()[0].source
        fci = pack_remb_fci(bitrate, [ssrc])
        await rtp_receiver._send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=fci))

    async def next_frame(self, timeout: float = 10.0) -> ReceivedFrame:
        """The next frame the track yields, with its stamp read back."""
        track = await self._track
        picture = await asyncio.wait_for(track.recv(), timeout)
        now = time.time()
        decoded = picture if isinstance(picture, av.VideoFrame) else None  # else counted, not decoded
        stamp = None if decoded is None else read_frame_stamp(decoded)
        self.stats.frames += 1
        if stamp is not None:
            self.stats.stamps.append(stamp)
            self.stats.latencies_ms.append(now * 1000 - stamp.time_ms)
        self.latest = ReceivedFrame(decoded, stamp, now)
        return self.latest

    async def next_sound(self, timeout: float = 10.0) -> av.AudioFrame:
        """The next decoded 20 ms of the audio track (aiortc decodes the Opus: 48 kHz, s16, stereo)."""
        track = await asyncio.wait_for(asyncio.shield(self._sound_track), timeout)
        return await asyncio.wait_for(track.recv(), timeout)

    async def receive_for(self, seconds: float) -> ReceiverStats:
        """Receive every frame for `seconds` (stops early if the stream ends)."""
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    await self.next_frame(timeout=left)
                except TimeoutError:
                    break
        except MediaStreamError:
            pass
        return self.stats

    async def fresh_frames(self, seconds: float) -> int:
        """How many frames captured from now on arrive within `seconds`: what shows that the stream goes on.
        Frames that waited in the track while nobody read it are received too, but not counted (they show
        the stream as it was). Needs a stamped (synthetic) source."""
        since_ms = time.time() * 1000
        first = len(self.stats.stamps)
        await self.receive_for(seconds)
        return sum(1 for stamp in self.stats.stamps[first:] if stamp.time_ms >= since_ms)

    async def close(self) -> None:
        """DELETE the WHEP resource (if the server still has it) and close the peer connection."""
        if self.location is not None:
            async with self._http.delete(self.location, headers=self._auth) as response:
                await response.read()
            self.location = None
        await self._pc.close()
