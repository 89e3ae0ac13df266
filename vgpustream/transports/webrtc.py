"""A viewer: one aiortc RTCPeerConnection that sends the shared packets of a session's rendition (H.264,
or VP8 for a browser without H.264).

aiortc only packetizes what a track returns when it is an `av.Packet`; it re-encodes nothing.
The viewer's keyframe requests (RTCP PLI/FIR) go to its rendition's shared encoder (vgpustream.compat).
"""

from __future__ import annotations

import asyncio
import itertools

import av
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import MediaDescription, SessionDescription, candidate_from_sdp

from vgpustream import compat
from vgpustream.audience.fanout import PacketQueue, QueueClosed
from vgpustream.audience.seat import Seat, SeatCallbacks
from vgpustream.control.auth import Grant
from vgpustream.errors import InvalidOffer, Unavailable
from vgpustream.media.encoder import CODECS
from vgpustream.media.renditions import Rendition
from vgpustream.settings import ViewerRules
from vgpustream.transports.linkjudge import WebRtcLinkJudge

INPUT_CHANNEL = "input"
H264_PROFILE = "42e01f"  # constrained baseline, what the encoder produces


class PacketTrack(MediaStreamTrack):
    """A track (video, or audio) whose frames are already-encoded packets from a viewer's queue."""

    def __init__(self, queue: PacketQueue, kind: str = "video") -> None:
        super().__init__()
        self.kind = kind
        self._queue = queue
        self.captured_at: float | None = None
        """The capture time (wall-clock seconds) of the packet last handed out, where the pipeline set
        one: the sender writes it as abs-capture-time (vgpustream.compat)."""
        self.bytes_out = 0
        """The payload bytes handed out so far."""
        self.keyframe = False
        """Whether the packet last handed out is a keyframe (no packet before it is sent again: vgpustream.compat)."""

    async def recv(self) -> av.Packet:  # type: ignore[override]
        try:
            packet = await self._queue.get()
        except QueueClosed:
            self.stop()
            raise MediaStreamError from None
        self.captured_at = packet.opaque
        self.keyframe = packet.is_keyframe
        self.bytes_out += packet.size
        return packet


MEDIA_KINDS = ("video", "audio", "application")
"""The sections an offer may have, at most one of each: the video we send, sound (sent when the
session's source has sound, else answered inactive) and the input data channel. More would only cost
transports and parsing."""
SENDABLE = (None, "recvonly", "sendrecv")
"""Directions of a video or audio section we can send to (none given means sendrecv)."""


def check_offer(sdp: str) -> SessionDescription:
    """The parsed offer; InvalidOffer unless `sdp` is an SDP offer vgpustream can answer.

    Checked here, before aiortc sees the offer: aiortc 1.16 fails with AttributeError (and leaves a
    half-made peer connection) on offers without a=setup, with an empty or repeated a=mid, and so on.
    """
    if sdp.count("\nm=") > len(MEDIA_KINDS):  # before parsing hundreds of sections
        raise InvalidOffer(f"an offer may have at most {len(MEDIA_KINDS)} media sections")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises whatever its regexes and int() raise
        raise InvalidOffer("malformed SDP offer") from exc
    kinds = [m.kind for m in parsed.media]
    if any(kind not in MEDIA_KINDS for kind in kinds) or len(set(kinds)) != len(kinds):
        raise InvalidOffer("an offer may have one video, one audio and one application section, no others")
    mids = [m.rtp.muxId for m in parsed.media]
    if not all(mids) or len(set(mids)) != len(mids):
        raise InvalidOffer("every media section needs an a=mid of its own")
    for media in parsed.media:
        if media.dtls is None or media.dtls.role is None or not media.dtls.fingerprints:
            raise InvalidOffer("every media section needs a=setup and a=fingerprint")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise InvalidOffer("every media section needs a=ice-ufrag and a=ice-pwd")
    if "application" in kinds and not any(m.kind == "application" and "SCTP" in m.profile for m in parsed.media):
        raise InvalidOffer("the application section must be an SCTP data channel")
    video = next((m for m in parsed.media if m.kind == "video"), None)
    if video is None:
        raise InvalidOffer("the offer has no video media section")
    if video.direction not in SENDABLE:
        raise InvalidOffer("the video section must be recvonly or sendrecv")
    if choose_codec(video) is None and len(parsed.media) == 1:
        raise InvalidOffer("the offer must accept H.264 with packetization-mode=1, or VP8")
    return parsed


def choose_codec(video: MediaDescription) -> str | None:
    """The first of the codecs the session can encode (vgpustream.media.encoder.CODECS, in its order) that the
    offer's video section takes: H.264 in packetization mode 1, or VP8; None if it takes neither."""
    return next((codec for codec in CODECS if any(_takes(codec, offered) for offered in video.rtp.codecs)), None)


def _takes(codec: str, offered: RTCRtpCodecParameters) -> bool:
    if codec == "h264":
        return offered.mimeType.lower() == "video/h264" and str(offered.parameters.get("packetization-mode")) == "1"
    return offered.mimeType.lower() == f"video/{codec}"


def without_section(sdp: str, mid: str) -> tuple[str, int, list[str]]:
    """`sdp` without its media section `mid` (and without `mid` in its BUNDLE group), the index the
    section had, and its lines."""
    lines = sdp.splitlines()
    starts = [n for n, line in enumerate(lines) if line.startswith("m=")] + [len(lines)]
    sections = [lines[start:end] for start, end in itertools.pairwise(starts)]
    index = next(n for n, section in enumerate(sections) if f"a=mid:{mid}" in section)
    session = [_unbundled(line, mid) for line in lines[: starts[0]]]
    kept = [line for n, section in enumerate(sections) if n != index for line in section]
    return "\r\n".join([*session, *kept, ""]), index, sections[index]


def with_rejected_section(sdp: str, index: int, offered: list[str]) -> str:
    """`sdp` (an answer) with a rejected answer to the `offered` media section at `index` (port 0)."""
    kind, _port, proto, *formats = offered[0].split()
    mid = next(line for line in offered if line.startswith("a=mid:"))
    rejected = [f"{kind} 0 {proto} {formats[0]}", "c=IN IP4 0.0.0.0", mid, "a=inactive"]
    lines = sdp.splitlines()
    starts = [n for n, line in enumerate(lines) if line.startswith("m=")] + [len(lines)]
    at = starts[min(index, len(starts) - 1)]
    return "\r\n".join([*lines[:at], *rejected, *lines[at:], ""])


def _unbundled(line: str, mid: str) -> str:
    if not line.startswith("a=group:BUNDLE"):
        return line
    return " ".join(item for item in line.split() if item != mid)


class Viewer(Seat):
    """One WebRTC peer watching a session (WHEP); `close` releases the peer connection and the queues.

    Its one job is the peer connection and what rides on it: the answer to the viewer's offer, the video and
    sound tracks, the viewer's microphone track and its input channel. Its link is judged apart
    (WebRtcLinkJudge), fed from the connection's stats and the video sender's feedback.
    """

    transport = "webrtc"

    def __init__(
        self,
        callbacks: SeatCallbacks,
        ice_servers: list[RTCIceServer],
        grant: Grant,
        rules: ViewerRules,
        *,
        sound: bool = False,
    ) -> None:
        super().__init__(callbacks, grant, rules)
        self._sound = sound
        self.channel: RTCDataChannel | None = None
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers))
        self._judge = WebRtcLinkJudge(self._pc, self.queue, self._judged)
        """Judges the viewer's link from its RTCP reports and feedback, from when it is connected."""
        self._listening: asyncio.Task[None] | None = None
        """Reads the viewer's microphone track (aiortc decodes it), where its token may send one."""
        self._pc.on("connectionstatechange", self._on_connection_state)
        self._pc.on("datachannel", self._on_datachannel)
        self._pc.on("track", self._on_track)

    @property
    def connection_state(self) -> str:
        return self._pc.connectionState

    @property
    def input_channel(self) -> bool:
        return self.channel is not None

    @property
    def remote_ice_ufrag(self) -> str | None:
        """The ICE username fragment of the viewer's offer (a different one means an ICE restart)."""
        description = self._pc.remoteDescription
        if description is None:
            return None
        media = SessionDescription.parse(description.sdp).media
        return media[0].ice.usernameFragment if media and media[0].ice else None

    async def answer(self, offer_sdp: str) -> str:
        """Take the viewer's SDP offer, return our answer with every local candidate in it.

        The video is the first codec the session makes that the offer takes (H.264, else VP8 for a
        browser without H.264, such as stock Firefox): the viewer takes that rendition. A video section
        with neither is rejected in the answer (port 0), as SDP negotiation does with a format it cannot
        send: the data channel and sound still come up, and the console says what the browser lacks.
        """
        offer = check_offer(offer_sdp)
        video = next(m for m in offer.media if m.kind == "video")
        codec = choose_codec(video)
        self.rendition = None if codec is None else Rendition(codec, self.pinned or 0)
        if codec is not None:
            self._add_video(codec)
            return await self._answer(offer, offer_sdp)
        reduced, index, section = without_section(offer_sdp, video.rtp.muxId or "")
        answer = await self._answer(SessionDescription.parse(reduced), reduced)
        return with_rejected_section(answer, index, section)

    def _add_video(self, codec: str) -> None:
        """The video track of the session's shared packets of `codec`'s rendition, offering only that codec.

        Added before the offer is applied, so that aiortc answers the offer's video section with it.
        """
        track = PacketTrack(self.queue)
        transceiver = self._pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(
            [
                offered
                for offered in RTCRtpSender.getCapabilities("video").codecs
                if offered.mimeType.lower() == f"video/{codec}"
                and (codec != "h264" or offered.parameters.get("profile-level-id") == H264_PROFILE)
            ]
        )
        compat.on_keyframe_request(transceiver.sender, lambda: self._callbacks.viewer_asks_keyframe(self))
        compat.on_bitrate_estimate(transceiver.sender, lambda estimate: self._judge.estimate(estimate, track.bytes_out))
        compat.on_transport_feedback(transceiver.sender, self._judge.packets)

    async def _answer(self, offer: SessionDescription, offer_sdp: str) -> str:
        pc = self._pc
        if self._sound and any(m.kind == "audio" and m.direction in SENDABLE for m in offer.media):
            self._add_sound()
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except OSError as exc:  # no socket for ICE now (fds, ports): the offer may succeed later
            raise Unavailable("cannot open a connection for this viewer now") from exc
        except Exception as exc:  # aiortc raises whatever its internals hit on an offer it cannot answer
            raise InvalidOffer("the SDP offer was not accepted") from exc
        return pc.localDescription.sdp

    def _add_sound(self) -> None:
        """An audio track of the session's shared Opus packets (every packet decodes alone: no waiting); it also
        receives the viewer's microphone where its token may send one (else the answer says sendonly, and the
        browser sends nothing)."""
        direction = "sendrecv" if self.may_speak else "sendonly"
        transceiver = self._pc.addTransceiver(PacketTrack(self.take_sound(), "audio"), direction=direction)
        if self.may_speak:
            compat.low_latency_audio(transceiver.receiver)
        transceiver.setCodecPreferences(
            [codec for codec in RTCRtpSender.getCapabilities("audio").codecs if codec.mimeType.lower() == "audio/opus"]
        )

    async def add_ice_candidates(self, candidates: list[tuple[str | None, int | None, str]]) -> None:
        """Add trickled remote candidates: (sdpMid, sdpMLineIndex, candidate-attribute) each."""
        parsed = []
        for mid, index, line in candidates:
            try:
                candidate = candidate_from_sdp(line)
            except (AssertionError, ValueError, IndexError):  # what aiortc's parser raises on bad input
                raise InvalidOffer("malformed ICE candidate in the SDP fragment") from None
            candidate.sdpMid, candidate.sdpMLineIndex = mid, index
            parsed.append(candidate)
        for candidate in parsed:  # mDNS names are resolved in the background (vgpustream.compat)
            await self._pc.addIceCandidate(candidate)

    def send_message(self, text: str) -> bool:
        """Send a JSON text message on the viewer's input channel; False if it has none open."""
        if self.channel is None or self.channel.readyState != "open":
            return False
        self.channel.send(text)
        return True

    async def _close_transport(self) -> None:
        self._judge.stop()
        if self._listening is not None:
            self._listening.cancel()
        await compat.close_peer_connection(self._pc)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.may_speak and self._listening is None:
            self._listening = asyncio.create_task(self._listen(track), name=f"microphone-{self.id}")

    async def _listen(self, track: MediaStreamTrack) -> None:
        """Hand each decoded frame of the viewer's microphone to the session (which drops it unless it is live)."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.AudioFrame)
            self._callbacks.microphone(self, frame)

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if self._closing:
            return
        if state == "connected":
            if self._connected():
                self._judge.start(f"link-{self.id}")
        elif state == "disconnected":
            self._disconnected()
        elif state in ("failed", "closed"):
            self._let_go()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != INPUT_CHANNEL:
            return
        self.channel = channel
        channel.on("message", lambda message: self._callbacks.input(self, message))
