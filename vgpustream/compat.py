"""Every change vgpustream makes to a third-party library, in one module, each checked against its version.

`install()` runs once at start (the server's app factory, the bench's viewer processes) and fails
loudly on a library version these patches were not written for: a patch of internals that silently
stopped applying would show up only as a stream that never recovers from loss.

- aiortc: RTCP PLI/FIR from a viewer reach `RTCRtpSender._send_keyframe`, which only flags aiortc's own
  encoder. Our tracks return already-encoded packets, so the request must reach the session's shared
  encoder instead (`on_keyframe_request`).
- aiortc: a viewer's RTCP REMB (its receiver's estimate of the bitrate its link carries) only sets aiortc's own
  encoder's bitrate; ours are shared by many viewers, so it goes to the viewer instead, which judges its link
  by it (`on_bitrate_estimate`).
- aiortc: the `playout-delay` RTP header extension (min = max = 0) on every video packet, where the
  viewer offers it (Chromium does): a browser then shows each frame as soon as it is decoded instead of
  holding it in a render buffer, as remote-desktop senders ask. aiortc neither offers nor writes it.
- aiortc: the `abs-capture-time` RTP header extension on the first packet of each video frame, where
  the viewer offers it (the console asks Chromium to): the frame's capture time, from the packet's
  `opaque` (wall-clock seconds, set by the capture pipeline), so the page can tell its glass-to-glass
  delay (`getSynchronizationSources()[].captureTimestamp`).
- aiortc: a sender packetizes each video packet itself (`H264Encoder.pack`); every viewer of a session
  is handed the same packet, so the payloads are computed once and shared (`_share_packetization`).
- aiortc: transport-wide congestion control (transport-cc), where the viewer offers it (Chromium and Firefox
  do): aiortc can write the extension's sequence number but never numbers a packet, never offers it, and reads a
  transport feedback message as a NACK (it has the same RTCP type). Each video packet a viewer is sent is
  numbered by the viewer's packet log (`on_transport_feedback`), and the viewer's feedback goes to that log,
  also where it names the retransmission stream's SSRC (`_transport_wide_feedback`). A NACK for a packet
  from before the viewer's last keyframe is not answered (aiortc answers every NACK it still has the packet
  for: after a step down a rung, the old rung's losses held the new rung's keyframe up for seconds).
- aiortc: the NTP clock it reads twice per RTP packet sent (`clock.current_ntp_time`) goes through
  `datetime`; the same value from `time.time_ns()` costs a fraction (`_fast_ntp_clock`).
- aiortc: `RTCPeerConnection.close` stops at the first transport that a failed offer/answer left unset
  (an SCTP transport without its DTLS transport) and never completes; `close_peer_connection` stops
  the rest one by one, so a rejected viewer's sockets are released.
- aiortc: DTLS with peers whose certificate is RSA (GStreamer's webrtcbin, among others): aiortc offers
  only ECDHE-ECDSA cipher suites, so such a peer, as DTLS server, finds "no shared cipher". ECDHE-RSA
  suites are offered after them (`_offer_rsa_cipher_suites`; aiortc PRs #1392 and #1421 are open).
- aioice: which local addresses are offered as ICE host candidates (`advertise_host_addresses`);
  aioice has no per-connection setting, only a module-level lookup.
- aioice: a remote candidate named by mDNS (`<uuid>.local`, how every browser hides its host addresses
  by default) is resolved before `add_remote_candidate` returns, up to 1 s, and aiortc awaits that for
  every candidate of an offer before it answers. The names are resolved in the background instead
  (at most MAX_RESOLVING at a time per connection; more are dropped), so they never hold up an answer
  (`_resolve_mdns_in_background`).
- aioice: an agent whose peer signalled end-of-candidates without a candidate it could use (only
  unresolvable mDNS names, as Firefox's offers) fails at once ("Components {1} have no candidate
  pairs"), though the browser's own connectivity checks would reach it and make peer-reflexive pairs.
  It waits for them instead, up to PEER_REFLEXIVE_WAIT, as browsers do (`_wait_for_peer_reflexive`).
- aioice: its mDNS protocol and the lock around it are kept per thread for the first event loop that asked;
  another loop in the same thread gets state of its own (`_mdns_state_per_loop`).
- aioice: remote candidates are bounded per connection (MAX_REMOTE_CANDIDATES), and those whose address
  no peer can have (multicast, broadcast, unspecified, port 0) are dropped before any check is sent to
  them (`_refuse_unusable_candidates`).
- aioice: gathering waits up to 5 s for STUN and TURN servers (`Connection.get_component_candidates`)
  and aiortc answers only after it, so a server that does not answer held up every viewer. `gather_within`
  bounds that wait and takes relay candidates from vgpustream's warm allocations (`vgpustream.transports.relays`)
  instead of a new allocation per viewer; `spare_protocol_factory` and `claim` make an allocation before
  any connection wants it and hand it to the one that does.
- aioice: once ICE completes, the checks still in progress are cancelled and their pairs stay In-Progress
  for good, so a later check from the browser on such a pair never triggers a check of ours (RFC 8445
  section 7.3.1.4) and the browser's nomination of it is never followed: the browser then expects the
  media on the pair it chose (typically its relay to our host candidate) while aioice sends it on another,
  and the first picture came seconds late. `_resume_abandoned_checks` puts those pairs back to Frozen.
- aioice: an allocation given back (a viewer leaves, the server stops) is deleted with a Refresh that
  aioice retries for half a minute over UDP when the TURN server went away, and closing the peer connection
  waits for it. `_bound_allocation_delete` gives it TURN_DELETE_TIMEOUT (the server frees the allocation
  when it expires anyway).
- aiortc: a received audio track waits for 4 packets (80 ms of Opus) in its jitter buffer before it hands
  one to the decoder; for a viewer's microphone, where the session's own buffer takes up the jitter (the
  guest waits for sound that is late), `low_latency_audio` makes that one packet.
- aiortc, in viewers that only count frames (the bench's): a receiver that does not decode
  (`count_frames_without_decoding`).
- aiohttp: a server makes each connection's `RequestHandler` itself (`web_server.Server.__call__`), with no
  way to name another class; `serve_connections_with` rebinds that module's name to a subclass (ours bounds
  each client address's connections, times out slow headers, and keeps request bytes out of the log).
- dbus-fast: `PeerBus`, a connection to one peer over an existing socket, without the bus's Hello.
- PyAV: a codec's options are set only when it is opened, but FFmpeg's libx264 takes a new peak rate
  (`maxrate`) while open, at the next frame, and the encoder refines a still picture at a higher one
  (`CodecOptions.set_int`). It reaches the open AVCodecContext through the pointer PyAV's object holds,
  checked to be one before it is used, and sets the option with FFmpeg's own `av_opt_set_int`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ctypes
import functools
import ipaddress
import os
import socket
import struct
import sys
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import aiohttp.web_server
import aioice.ice
import aioice.mdns
import aioice.stun
import aioice.turn
import aiortc.clock
import aiortc.codecs
import aiortc.rtcdtlstransport
import aiortc.rtcrtpreceiver
import av
from aioice import Candidate
from aioice.ice import CandidatePair, StunProtocol
from aiortc import (
    RTCPeerConnection,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpReceiver,
    RTCRtpSender,
)
from aiortc.codecs.h264 import H264Encoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpparameters import RTCRtcpFeedback
from aiortc.rtp import (
    RTCP_PSFB_APP,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    pack_header_extensions,
    unpack_header_extensions,
    unpack_remb_fci,
)
from dbus_fast.aio import MessageBus
from dbus_fast.aio.message_bus import _MessageWriter, build_message_reader

from vgpustream.errors import VgpuStreamError

SUPPORTED = {"aiortc": "1.16.", "aioice": "0.13.", "dbus-fast": "5.", "aiohttp": "3.14."}
"""The release series each patch below was written and tested against (a version prefix)."""

DTLS_CIPHER_SUITES = b":".join(
    [
        b"ECDHE-ECDSA-AES128-GCM-SHA256",
        b"ECDHE-ECDSA-CHACHA20-POLY1305",
        b"ECDHE-ECDSA-AES128-SHA",
        b"ECDHE-ECDSA-AES256-SHA",
        b"ECDHE-RSA-AES128-GCM-SHA256",
        b"ECDHE-RSA-CHACHA20-POLY1305",
        b"ECDHE-RSA-AES128-SHA",
        b"ECDHE-RSA-AES256-SHA",
    ]
)
"""aiortc's own suites (for its ECDSA certificate) first, then the same for a peer's RSA certificate."""

PLAYOUT_DELAY = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
NO_PLAYOUT_DELAY = bytes(3)
"""The extension's value: 12 bits of minimum and 12 of maximum delay, in 10 ms units: none at all."""
PLAYOUT_DELAY_ID = 5
"""Its id where aiortc makes the offer (the viewer's own id is used where it offers, as WHEP viewers do)."""
ABS_CAPTURE_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"
ABS_CAPTURE_TIME_ID = 6
TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
TRANSPORT_CC_ID = 7
TRANSPORT_FEEDBACK = 15
"""The RTCP transport-layer feedback message type (RTPFB FMT) of transport-cc feedback."""
PACKET_OVERHEAD = 40
"""Bytes a video packet carries besides its payload: RTP header, header extensions, SRTP tag."""
NTP_UNIX_OFFSET = 2_208_988_800
"""Seconds from the NTP epoch (1900) to the Unix epoch (1970)."""
ONE_BYTE_PROFILE = 0xBEDE
"""The RTP header extension profile of RFC 8285's one-byte form."""
SHARED_PACKETS = 32
"""How many video packets' payloads are kept for the other viewers of the same packet."""
MAX_RESOLVING = 8
"""The most mDNS candidates (`<uuid>.local`) of one ICE connection being resolved at a time; more are dropped."""
MAX_REMOTE_CANDIDATES = 32
"""The most remote candidates one ICE connection takes (a browser has a handful); more are dropped."""
PEER_REFLEXIVE_WAIT = 30.0
"""Seconds an ICE agent without a usable remote candidate waits for the peer's checks (Chromium gives
up on a connection that never succeeds after about as long)."""

TURN_DELETE_TIMEOUT = 2.0
"""Seconds a TURN allocation's delete is waited for (a TURN server that is there answers in milliseconds)."""
RelayedCandidate = Callable[..., Awaitable[tuple[Candidate, StunProtocol]]]
"""aioice's `relayed_candidate`: keyword arguments component, hide_related_address, protocol_factory,
turn_server, turn_username, turn_password, turn_ssl, turn_transport."""
AIOICE_RELAYED_CANDIDATE: RelayedCandidate = aioice.ice.relayed_candidate
"""A new TURN allocation, as aioice makes it."""
_AIOICE_COMPONENT_CANDIDATES = aioice.ice.Connection.get_component_candidates

_keyframe_handlers: weakref.WeakKeyDictionary[RTCRtpSender, Callable[[], None]] = weakref.WeakKeyDictionary()
_estimate_handlers: weakref.WeakKeyDictionary[RTCRtpSender, Callable[[int], None]] = weakref.WeakKeyDictionary()
VIDEO_SEND = "_vgpustream_video_send"
"""The attribute of a viewer's video sender's header extensions map (what a packet's serialization sees) that
holds what vgpustream keeps of the sender (`_VideoSend`): an attribute, read for every packet sent, costs less
than a look-up in a weak dictionary."""
MAX_ESTIMATE = 10_000_000_000
"""The most a receiver's estimate is taken to say (bits per second): REMB's encoding reaches 2^81."""
_installed = False


class UnsupportedLibrary(RuntimeError):
    """A library is at a version whose internals these patches were not checked against."""


def check_versions(supported: dict[str, str] = SUPPORTED) -> None:
    """Raise UnsupportedLibrary unless every patched library is of a supported release series."""
    for package, series in supported.items():
        found = version(package)
        if not found.startswith(series):
            raise UnsupportedLibrary(
                f"vgpustream patches {package} {series}x but {package} {found} is installed; "
                "check vgpustream/compat.py against it (or install the supported release)"
            )


def install() -> None:
    """Check the versions, then apply the patches that hold for the whole process. Safe to call twice."""
    global _installed  # noqa: PLW0603 - a process-wide patch is applied once
    if _installed:
        return
    check_versions()
    original = RTCRtpSender._send_keyframe

    def send_keyframe(sender: RTCRtpSender) -> None:
        handler = _keyframe_handlers.get(sender)
        if handler is None:
            original(sender)
        else:
            handler()

    RTCRtpSender._send_keyframe = send_keyframe  # type: ignore[method-assign]
    _pass_on_estimates()
    _write_header_extensions()
    _transport_wide_feedback()
    _share_packetization()
    _fast_ntp_clock()
    _offer_rsa_cipher_suites()
    _resolve_mdns_in_background()
    _mdns_state_per_loop()
    _wait_for_peer_reflexive()
    _refuse_unusable_candidates()
    _resume_abandoned_checks()
    _bound_allocation_delete()
    _installed = True


@dataclass
class _ExtraExtensions:
    """The ids a viewer negotiated for the extensions aiortc does not write, and what to write next."""

    playout_delay: int | None = None
    capture_time: int | None = None
    pending_capture_time: bytes | None = None
    """The abs-capture-time value for the next packet: the first of a frame."""


def abs_capture_time(captured_at: float) -> bytes:
    """The 8-byte abs-capture-time value: a wall-clock time as a 64-bit NTP timestamp (UQ32.32)."""
    return struct.pack("!Q", round((captured_at + NTP_UNIX_OFFSET) * (1 << 32)))


def _write_header_extensions() -> None:
    """Negotiate playout-delay and abs-capture-time for video and write them where they were."""
    aiortc.codecs.HEADER_EXTENSIONS["video"] += [
        RTCRtpHeaderExtensionParameters(PLAYOUT_DELAY_ID, PLAYOUT_DELAY),
        RTCRtpHeaderExtensionParameters(ABS_CAPTURE_TIME_ID, ABS_CAPTURE_TIME),
    ]
    configure, write = HeaderExtensionsMap.configure, HeaderExtensionsMap.set
    next_encoded_frame = RTCRtpSender._next_encoded_frame
    extras: weakref.WeakKeyDictionary[HeaderExtensionsMap, _ExtraExtensions] = weakref.WeakKeyDictionary()

    def configure_with_extras(extensions: HeaderExtensionsMap, parameters: RTCRtpParameters) -> None:
        configure(extensions, parameters)
        ids = {extension.uri: extension.id for extension in parameters.headerExtensions}
        if PLAYOUT_DELAY in ids or ABS_CAPTURE_TIME in ids:
            extras[extensions] = _ExtraExtensions(ids.get(PLAYOUT_DELAY), ids.get(ABS_CAPTURE_TIME))

    def write_with_extras(extensions: HeaderExtensionsMap, values: HeaderExtensions) -> tuple[int, bytes]:
        profile, packed = write(extensions, values)
        extra = extras.get(extensions)
        if extra is None:
            return profile, packed
        added = [] if extra.playout_delay is None else [(extra.playout_delay, NO_PLAYOUT_DELAY)]
        if extra.capture_time is not None and extra.pending_capture_time is not None:
            added.append((extra.capture_time, extra.pending_capture_time))
            extra.pending_capture_time = None
        return _append_header_extensions(profile, packed, added)

    async def next_encoded_frame_with_capture_time(sender: RTCRtpSender, codec: Any) -> Any:
        frame = await next_encoded_frame(sender, codec)
        extra = extras.get(sender._RTCRtpSender__rtp_header_extensions_map)  # type: ignore[attr-defined]
        captured_at = getattr(sender.track, "captured_at", None)
        if frame is not None and extra is not None and extra.capture_time is not None and captured_at is not None:
            extra.pending_capture_time = abs_capture_time(captured_at)
        return frame

    HeaderExtensionsMap.configure = configure_with_extras  # type: ignore[method-assign]
    HeaderExtensionsMap.set = write_with_extras  # type: ignore[method-assign]
    RTCRtpSender._next_encoded_frame = next_encoded_frame_with_capture_time  # type: ignore[method-assign]


def _append_header_extensions(profile: int, packed: bytes, added: list[tuple[int, bytes]]) -> tuple[int, bytes]:
    """`added` elements after those already packed: appended as they are in the one-byte form (RFC 8285
    allows the padding between elements), else unpacked and packed again."""
    if profile not in (0, ONE_BYTE_PROFILE) or any(not 1 <= x_id <= 14 or not 1 <= len(v) <= 16 for x_id, v in added):
        return pack_header_extensions([*unpack_header_extensions(profile, packed), *added])
    data = packed + b"".join(bytes([(x_id << 4) | (len(value) - 1)]) + value for x_id, value in added)
    return ONE_BYTE_PROFILE, data + bytes(-len(data) % 4)


def _share_packetization() -> None:
    """Packetize each video packet once for all the viewers it is handed to.

    The fan-out hands every viewer of a session the same `av.Packet`; the payloads (the H.264 stream
    split into NAL units and FU-A fragments) depend only on it, so the last SHARED_PACKETS results are
    kept by packet, each with its packet so that the id is not reused while kept.
    """
    pack = H264Encoder.pack
    packed: OrderedDict[int, tuple[Any, tuple[list[bytes], int]]] = OrderedDict()

    def pack_once(encoder: H264Encoder, packet: Any) -> tuple[list[bytes], int]:
        kept = packed.get(id(packet))
        if kept is not None and kept[0] is packet:
            return kept[1]
        result = pack(encoder, packet)
        packed[id(packet)] = (packet, result)
        if len(packed) > SHARED_PACKETS:
            packed.popitem(last=False)
        return result

    H264Encoder.pack = pack_once  # type: ignore[method-assign]


def _fast_ntp_clock() -> None:
    """aiortc's `clock.current_ntp_time()`, the same 64-bit NTP time, from `time.time_ns()`."""

    def current_ntp_time() -> int:
        seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
        return ((seconds + NTP_UNIX_OFFSET) << 32) | ((nanoseconds << 32) // 1_000_000_000)

    aiortc.clock.current_ntp_time = current_ntp_time


def _offer_rsa_cipher_suites() -> None:
    """Let DTLS agree with a peer whose certificate is RSA: the suites it needs follow aiortc's ECDSA ones."""
    certificate = aiortc.rtcdtlstransport.RTCCertificate
    create_context = certificate._create_ssl_context

    def create_context_with_rsa(self: Any, srtp_profiles: Any) -> Any:
        context = create_context(self, srtp_profiles)
        context.set_cipher_list(DTLS_CIPHER_SUITES)
        return context

    certificate._create_ssl_context = create_context_with_rsa  # type: ignore[method-assign]


def _mdns_state_per_loop() -> None:
    """aioice keeps its one mDNS protocol, and the lock around it, per thread, for the first event loop that
    asks: a later loop in the same thread (each test's) found that lock held by a task of a loop long closed,
    and failed ("bound to a different event loop") or waited for ever. The state is dropped whenever another
    loop asks for it."""
    owner: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    def per_loop(call: Callable[[object], Awaitable[Any]]) -> Callable[[object], Awaitable[Any]]:
        async def called(subscriber: object) -> Any:
            loop = asyncio.get_running_loop()
            if not owner or owner[0]() is not loop:
                aioice.ice._mdns.__dict__.clear()
                owner[:] = [weakref.ref(loop)]
            return await call(subscriber)

        return called

    aioice.ice.get_or_create_mdns_protocol = per_loop(aioice.ice.get_or_create_mdns_protocol)
    aioice.ice.unref_mdns_protocol = per_loop(aioice.ice.unref_mdns_protocol)


def _resolve_mdns_in_background() -> None:
    """`Connection.add_remote_candidate` returns at once for mDNS candidates, which are resolved in a task.

    The connection counts them as being resolved meanwhile, as aioice's own code does, so that an
    end-of-candidates waits for them; a name that resolves is added as aioice would have added it.
    """
    connection_class = aioice.ice.Connection
    add_remote_candidate, close = connection_class.add_remote_candidate, connection_class.close
    resolving: weakref.WeakKeyDictionary[aioice.ice.Connection, set[asyncio.Task[None]]] = weakref.WeakKeyDictionary()

    async def resolve(connection: aioice.ice.Connection, candidate: aioice.Candidate) -> None:
        try:
            mdns = await aioice.ice.get_or_create_mdns_protocol(connection)
            address = await mdns.resolve(candidate.host)
            if address is not None and not connection._closing:
                connection._add_remote_candidate(candidate, address)
        except OSError:  # no multicast here: the name cannot be resolved, like one nobody answers
            pass
        finally:
            connection._remote_candidates_resolving -= 1
            if (
                connection._remote_candidates_end
                and not connection._remote_candidates_resolving
                and not connection._closing
            ):
                connection._end_remote_candidates()

    async def add_in_background(connection: aioice.ice.Connection, candidate: aioice.Candidate | None) -> None:
        if (
            candidate is None
            or not aioice.mdns.is_mdns_hostname(candidate.host)
            or connection._remote_candidates_end
            or connection._transport_policy == aioice.TransportPolicy.RELAY
        ):
            await add_remote_candidate(connection, candidate)
            return
        tasks = resolving.setdefault(connection, set())
        if connection._closing or len(tasks) >= MAX_RESOLVING:
            return
        connection._remote_candidates_resolving += 1
        task = asyncio.create_task(resolve(connection, copy.copy(candidate)), name="resolve-mdns-candidate")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def close_and_stop_resolving(connection: aioice.ice.Connection) -> None:
        tasks = resolving.pop(connection, set())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close(connection)

    connection_class.add_remote_candidate = add_in_background  # type: ignore[method-assign]
    connection_class.close = close_and_stop_resolving  # type: ignore[method-assign]


def _wait_for_peer_reflexive() -> None:
    """A connection without a candidate pair keeps waiting for the peer's checks, up to PEER_REFLEXIVE_WAIT.

    aioice ends `connect()` as failed once the peer said end-of-candidates and no pair exists, and drops
    the components without signalled candidates (`_prune_components`), after which none could complete.
    An incoming check makes a peer-reflexive pair (aioice's `check_incoming`), and that is how a browser
    whose candidates are all mDNS names connects.
    """
    connection_class = aioice.ice.Connection
    connect, expected = connection_class.connect, connection_class._remote_candidates_expected
    deadlines: weakref.WeakKeyDictionary[aioice.ice.Connection, float] = weakref.WeakKeyDictionary()

    async def connect_with_deadline(connection: aioice.ice.Connection) -> None:
        deadlines[connection] = time.monotonic() + PEER_REFLEXIVE_WAIT
        await connect(connection)

    def expected_or_waiting(connection: aioice.ice.Connection) -> bool:
        if expected(connection):
            return True
        deadline = deadlines.get(connection)
        return (
            not connection._check_list
            and not connection._closing
            and deadline is not None
            and time.monotonic() < deadline
        )

    def keep_components(connection: aioice.ice.Connection) -> None:
        """Any component may yet get peer-reflexive candidates: none is dropped."""

    connection_class.connect = connect_with_deadline  # type: ignore[method-assign]
    connection_class._remote_candidates_expected = expected_or_waiting  # type: ignore[method-assign]
    connection_class._prune_components = keep_components  # type: ignore[method-assign]


def _refuse_unusable_candidates() -> None:
    """Drop remote candidates no peer can have, and any past MAX_REMOTE_CANDIDATES, before pairing them.

    aioice would send connectivity checks to whatever address a candidate names (a multicast group,
    the broadcast address) and to as many candidates as a peer cares to trickle.
    """
    connection_class = aioice.ice.Connection
    add = connection_class._add_remote_candidate

    def add_if_usable(connection: aioice.ice.Connection, candidate: aioice.Candidate, network_host: str) -> None:
        full = len(connection._remote_candidates) >= MAX_REMOTE_CANDIDATES
        if not full and usable_address(network_host, candidate.port):
            add(connection, candidate, network_host)

    connection_class._add_remote_candidate = add_if_usable  # type: ignore[method-assign]


def usable_address(host: str, port: int) -> bool:
    """Whether a remote candidate at `host`:`port` could be a peer (a unicast address and a port)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # aioice refuses it too, and says so
    broadcast = address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255")
    return 0 < port < 65536 and not (address.is_multicast or address.is_unspecified or broadcast)


def on_keyframe_request(sender: RTCRtpSender, handler: Callable[[], None]) -> None:
    """Route the viewer's RTCP PLI/FIR arriving at `sender` to `handler` (needs `install()`)."""
    if not _installed:
        raise RuntimeError("vgpustream.compat.install() has not run")
    _keyframe_handlers[sender] = handler


def on_bitrate_estimate(sender: RTCRtpSender, handler: Callable[[int], None]) -> None:
    """Hand each bitrate the viewer estimates it can receive (its RTCP REMB naming `sender`'s stream, bits per
    second, at most MAX_ESTIMATE) to `handler` (needs `install()`)."""
    if not _installed:
        raise RuntimeError("vgpustream.compat.install() has not run")
    _estimate_handlers[sender] = handler


def _pass_on_estimates() -> None:
    """aiortc reads a REMB only to set its own encoder's bitrate; ours are shared, so the estimate goes to the
    sender's handler (`on_bitrate_estimate`) instead."""
    handle = RTCRtpSender._handle_rtcp_packet

    async def handle_with_estimates(sender: RTCRtpSender, packet: Any) -> None:
        handler = _estimate_handlers.get(sender)
        if handler is not None and isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            with contextlib.suppress(ValueError):  # an APP message that is no REMB
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
                if sender._ssrc in ssrcs:
                    handler(min(bitrate, MAX_ESTIMATE))
            return
        await handle(sender, packet)

    RTCRtpSender._handle_rtcp_packet = handle_with_estimates  # type: ignore[method-assign]


class PacketLog(Protocol):
    """What numbers a viewer's video packets on its transport and reads its transport feedback
    (vgpustream.transports.congestion.PacketLog)."""

    def number(self, size: int) -> int:
        """The transport-wide sequence number (16 bits) of a packet of `size` bytes sent now."""

    def feedback(self, fci: bytes) -> None:
        """Take one transport feedback message (its FCI)."""


@dataclass
class _VideoSend:
    """What vgpustream keeps of a viewer's video sender: its packets' log, and where its last keyframe began."""

    log: PacketLog
    keyframe_next: bool = False
    """The next packet sent is the first of a keyframe."""
    keyframe_at: int | None = None
    """The RTP sequence number of the last keyframe's first packet: no packet before it is sent again."""


def on_transport_feedback(sender: RTCRtpSender, log: PacketLog) -> None:
    """Number every video packet `sender` sends in `log` (where the viewer negotiated transport-cc, the number
    is written in the packet), hand `log` the viewer's transport feedback, and retransmit no packet from before
    the last keyframe `sender` sent (its track says which packet is one: `keyframe`; needs `install()`)."""
    if not _installed:
        raise RuntimeError("vgpustream.compat.install() has not run")
    setattr(_extensions_map(sender), VIDEO_SEND, _VideoSend(log))


def _precedes(sequence_number: int, other: int) -> bool:
    """Whether the 16-bit RTP `sequence_number` comes before `other` (within half the range, across a wrap)."""
    return 0 < (other - sequence_number) & 0xFFFF < 0x8000


def _video_send(extensions_map: HeaderExtensionsMap) -> _VideoSend | None:
    return getattr(extensions_map, VIDEO_SEND, None)


def _extensions_map(sender: RTCRtpSender) -> HeaderExtensionsMap:
    return sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined,no-any-return]


class _TransportFeedbackPacket(RtcpRtpfbPacket):
    """A transport feedback message, its FCI kept (aiortc reads every RTPFB message as a NACK)."""

    fci: bytes = b""


def _transport_wide_feedback() -> None:
    """Offer and answer transport-cc for video, number each video packet a viewer with a packet log is sent,
    and hand that log the viewer's feedback (routed to the video sender also where it names the SSRC of the
    sender's retransmissions, as a browser does when the last packet it had was one). A NACK for a packet
    sent before the viewer's last keyframe is not answered: the keyframe made it useless, and on a thin link
    (a viewer that just stepped down a rung) its retransmission would delay the keyframe's own packets."""
    aiortc.codecs.HEADER_EXTENSIONS["video"].append(RTCRtpHeaderExtensionParameters(TRANSPORT_CC_ID, TRANSPORT_CC))
    for codec in aiortc.codecs.CODECS["video"]:
        if codec.mimeType.lower() != "video/rtx":
            codec.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))
    serialize, parse = RtpPacket.serialize, RtcpRtpfbPacket.parse.__func__  # type: ignore[attr-defined]
    route = aiortc.rtcdtlstransport.RtpRouter.route_rtcp
    handle, retransmit = RTCRtpSender._handle_rtcp_packet, RTCRtpSender._retransmit
    next_encoded_frame = RTCRtpSender._next_encoded_frame

    def serialize_numbered(packet: RtpPacket, extensions_map: HeaderExtensionsMap | None = None) -> bytes:
        if extensions_map is None:
            return serialize(packet)
        send: _VideoSend | None = getattr(extensions_map, VIDEO_SEND, None)
        if send is not None:
            packet.extensions.transport_sequence_number = send.log.number(len(packet.payload) + PACKET_OVERHEAD)
            if send.keyframe_next:
                send.keyframe_next, send.keyframe_at = False, packet.sequence_number
        return serialize(packet, extensions_map)

    async def next_encoded_frame_marking_keyframes(sender: RTCRtpSender, codec: Any) -> Any:
        frame = await next_encoded_frame(sender, codec)
        send = _video_send(_extensions_map(sender))
        if frame is not None and send is not None and getattr(sender.track, "keyframe", False):
            send.keyframe_next = True
        return frame

    async def retransmit_since_keyframe(sender: RTCRtpSender, sequence_number: int) -> None:
        send = _video_send(_extensions_map(sender))
        if send is None or send.keyframe_at is None or not _precedes(sequence_number, send.keyframe_at):
            await retransmit(sender, sequence_number)

    def parse_with_transport_feedback(cls: type[RtcpRtpfbPacket], data: bytes, fmt: int) -> RtcpRtpfbPacket:
        if fmt != TRANSPORT_FEEDBACK or len(data) < 8:
            return parse(cls, data, fmt)
        ssrc, media_ssrc = struct.unpack_from("!LL", data)
        feedback = _TransportFeedbackPacket(fmt=fmt, ssrc=ssrc, media_ssrc=media_ssrc)
        feedback.fci = data[8:]
        return feedback

    def route_to_the_video_sender(router: aiortc.rtcdtlstransport.RtpRouter, packet: Any) -> set[Any]:
        recipients = route(router, packet)
        if not recipients and isinstance(packet, _TransportFeedbackPacket):
            recipients = {sender for sender in router.senders.values() if sender._rtx_ssrc == packet.media_ssrc}
        return recipients

    async def handle_transport_feedback(sender: RTCRtpSender, packet: Any) -> None:
        if isinstance(packet, _TransportFeedbackPacket):
            send = _video_send(_extensions_map(sender))
            if send is not None:
                send.log.feedback(packet.fci)
            return
        await handle(sender, packet)

    RtpPacket.serialize = serialize_numbered  # type: ignore[method-assign]
    RtcpRtpfbPacket.parse = classmethod(parse_with_transport_feedback)  # type: ignore[method-assign,assignment]
    aiortc.rtcdtlstransport.RtpRouter.route_rtcp = route_to_the_video_sender  # type: ignore[method-assign]
    RTCRtpSender._handle_rtcp_packet = handle_transport_feedback  # type: ignore[method-assign]
    RTCRtpSender._retransmit = retransmit_since_keyframe  # type: ignore[method-assign]
    RTCRtpSender._next_encoded_frame = next_encoded_frame_marking_keyframes  # type: ignore[method-assign]


MICROPHONE_PREFETCH = 1
"""Packets a viewer's microphone waits for in aiortc's jitter buffer (aiortc's audio default: 4)."""


def low_latency_audio(receiver: RTCRtpReceiver) -> None:
    """Make `receiver` (an audio one, not started yet) hand each packet to its decoder as soon as it can."""
    check_versions({"aiortc": SUPPORTED["aiortc"]})
    receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(  # type: ignore[attr-defined]
        capacity=16, prefetch=MICROPHONE_PREFETCH
    )


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """Close `pc`, also when an offer aiortc could not answer left it half-made."""
    try:
        await pc.close()
    except Exception:  # aiortc 1.16: e.g. AttributeError from RTCSctpTransport.stop without a transport
        await _stop_each_transport(pc)


async def _stop_each_transport(pc: RTCPeerConnection) -> None:
    """What `RTCPeerConnection.close` would have done after the step that failed, each step on its own."""
    transports: list[Any] = []
    for transceiver in pc.getTransceivers():
        transports += [transceiver.sender, transceiver.receiver]
        dtls = transceiver.receiver.transport
        transports += [dtls, dtls.transport] if dtls is not None else []
    sctp = pc.sctp
    if sctp is not None and sctp.transport is not None:
        transports += [sctp, sctp.transport, sctp.transport.transport]
    for transport in transports:
        with contextlib.suppress(Exception):
            await transport.stop()
    closed = pc._RTCPeerConnection__isClosed  # type: ignore[attr-defined]
    if closed is not None and not closed.done():
        closed.set_result(True)  # a second close() waits on it
    pc.remove_all_listeners()


def serve_connections_with(handler: type[aiohttp.web_server.RequestHandler]) -> None:
    """Make every aiohttp server of this process handle its connections with `handler`, a RequestHandler
    subclass that takes the app's `handler_args` (aiohttp passes them to the class it names)."""
    check_versions({"aiohttp": SUPPORTED["aiohttp"]})
    aiohttp.web_server.RequestHandler = handler  # type: ignore[misc]


def advertise_host_addresses(addresses: Sequence[str]) -> None:
    """Offer exactly `addresses` as ICE host candidates, for every peer connection of this process.

    aioice gathers every interface address except loopback. This serves hosts with many interfaces
    (offer only the one viewers can reach) and loopback-only set-ups such as the tests' network namespace.
    """
    chosen = []
    for address in addresses:
        try:
            chosen.append(str(ipaddress.ip_address(address)))
        except ValueError:
            raise VgpuStreamError(f"not an IP address: {address[:64]!r}") from None

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def _resume_abandoned_checks() -> None:
    """Pairs whose check ICE's completion cancelled go back to Frozen: an incoming check triggers one of ours."""
    connect = aioice.ice.Connection.connect

    async def connect_then_resume_checks(connection: aioice.ice.Connection) -> None:
        await connect(connection)
        for pair in connection._check_list:
            if pair.state is CandidatePair.State.IN_PROGRESS:  # its check was cancelled when ICE completed
                pair.task = None
                connection.check_state(pair, CandidatePair.State.FROZEN)

    aioice.ice.Connection.connect = connect_then_resume_checks  # type: ignore[method-assign]


def _bound_allocation_delete() -> None:
    """A TURN allocation's delete is given up after TURN_DELETE_TIMEOUT (the transport is closed all the same)."""
    delete = aioice.turn.TurnClientMixin.delete

    async def delete_within(protocol: aioice.turn.TurnClientMixin) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(delete(protocol), TURN_DELETE_TIMEOUT)

    aioice.turn.TurnClientMixin.delete = delete_within  # type: ignore[method-assign]


def gather_within(timeout: float, relayed_candidate: RelayedCandidate) -> None:
    """Bound every ICE agent's wait for STUN and TURN servers to `timeout` seconds (host candidates do not
    wait), and take its relay candidates from `relayed_candidate` (vgpustream's warm allocations). Needs
    `install()`, which checks aioice's version first."""
    if not _installed:
        raise RuntimeError("vgpustream.compat.install() has not run")

    async def component_candidates(
        connection: aioice.ice.Connection, component: int, addresses: list[str]
    ) -> list[Candidate]:
        return await _AIOICE_COMPONENT_CANDIDATES(connection, component, addresses, timeout=timeout)  # type: ignore[arg-type]

    aioice.ice.Connection.get_component_candidates = component_candidates  # type: ignore[method-assign,assignment]
    aioice.ice.relayed_candidate = relayed_candidate


def gather_as_aioice_does(relayed_candidate: RelayedCandidate) -> None:
    """Undo `gather_within(…, relayed_candidate)` unless another has been made since (a server that stops
    gives its warm allocations back; another one in the same process, the tests', may have started)."""
    if aioice.ice.relayed_candidate == relayed_candidate:
        aioice.ice.Connection.get_component_candidates = _AIOICE_COMPONENT_CANDIDATES  # type: ignore[method-assign]
        aioice.ice.relayed_candidate = AIOICE_RELAYED_CANDIDATE


class _SpareReceiver:
    """Stands in for an aioice Connection behind an allocation that no connection has claimed yet."""

    def __init__(self, lost: Callable[[], None]) -> None:
        self._lost = lost

    def protocol_lost(self, protocol: StunProtocol) -> None:
        self._lost()

    def data_received(self, data: bytes, component: int) -> None:
        """Nothing: no peer has a permission on an unclaimed allocation."""

    def request_received(self, message: aioice.stun.Message, addr: tuple[str, int], protocol: StunProtocol) -> None:
        """Nothing, as above."""

    def __repr__(self) -> str:
        return "spare-allocation"


def spare_protocol_factory(lost: Callable[[], None]) -> Callable[[], StunProtocol]:
    """The protocol factory of an allocation made before any connection wants it; `lost` is called when
    its transport closes while unclaimed (the TURN server went away, a refresh failed)."""
    receiver = _SpareReceiver(lost)
    return lambda: StunProtocol(receiver)  # type: ignore[arg-type]


def claim(protocol: StunProtocol, protocol_factory: Callable[[], StunProtocol]) -> None:
    """Hand a spare allocation's protocol to the connection that aioice's `protocol_factory` is bound to."""
    protocol.receiver = protocol_factory().receiver


class _PassThroughDecoder:
    """Stands in for aiortc's decoder in counting-only viewers: returns the encoded frame."""

    def decode(self, encoded_frame: Any) -> list[Any]:
        return [encoded_frame]


def count_frames_without_decoding() -> None:
    """Make this process's aiortc receivers hand assembled frames through still encoded.

    aiortc decodes every frame it assembles; many decoding viewers would starve a small machine that
    also runs the server being measured.
    """
    aiortc.rtcrtpreceiver.get_decoder = lambda codec: _PassThroughDecoder()


class PeerBus(MessageBus):
    """A D-Bus connection to one peer over an already connected socket (no bus daemon, no Hello).

    On a peer connection the other side (QEMU) authenticates and there is no bus: the client must not
    send Hello, which dbus-fast's `connect()` always does. This connect uses dbus-fast's own
    authentication and message reader on the socket it is given.
    """

    def __init__(self, sock: socket.socket) -> None:
        # the address is never dialled: connect() below takes the socket it was given
        super().__init__(bus_address="unix:path=/dev/null", negotiate_unix_fd=True)
        self._peer = sock

    async def connect(self) -> PeerBus:
        sock = self._peer
        sock.setblocking(False)
        self._sock = sock
        self._stream = sock.makefile("rwb")
        self._fd = sock.fileno()
        self._writer = _MessageWriter(self)
        try:
            await self._authenticate()
        except BaseException:
            self._stream.close()
            sock.close()
            self._sock = None  # so that disconnect() has nothing left to shut down
            raise
        reader = build_message_reader(sock, self._process_message, self._finalize, self._negotiate_unix_fd)
        self._loop.add_reader(self._fd, reader)
        # dbus-fast writes (and counts itself connected) once it has a unique name, which a bus's
        # Hello would have given; a peer has none to give
        self.unique_name = ":peer"
        self._writer.schedule_write()
        return self


PYAV_CONTEXT_POINTER = 24
"""Where a PyAV CodecContext keeps its AVCodecContext pointer: after the object header (16 bytes) and the
Cython method table (8). `CodecOptions` checks what it finds there before it uses it."""


class CodecOptions:
    """FFmpeg's `av_opt_set_int` on the AVCodecContext of open PyAV codec contexts (see the module notes).

    What is read to find the context is read through /proc/self/mem, which answers an error rather than
    crash on an address that is not mapped, and the address found must point at an AVCodecContext (its
    first word is libavcodec's AVClass for codec contexts) before FFmpeg is handed it.
    """

    def __init__(self) -> None:
        codec, util = ctypes.CDLL(_pyav_library("libavcodec")), ctypes.CDLL(_pyav_library("libavutil"))
        codec.avcodec_get_class.restype = ctypes.c_void_p
        self._codec_class = codec.avcodec_get_class()
        self._set_int = util.av_opt_set_int
        self._set_int.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64, ctypes.c_int]
        self._set_int.restype = ctypes.c_int

    def set_int(self, context: av.CodecContext, name: str, value: int) -> None:
        """Set option `name` of `context` (open or not) to `value`; UnsupportedLibrary if PyAV's object is
        not laid out as this was written for, VgpuStreamError if FFmpeg refuses the value."""
        address = self._context_address(context)
        error = self._set_int(address, name.encode(), value, 0)
        if error < 0:
            raise VgpuStreamError(f"FFmpeg refused {name}={value} (error {error})")

    def _context_address(self, context: av.CodecContext) -> int:
        fd = os.open("/proc/self/mem", os.O_RDONLY)
        try:
            address = _read_pointer(fd, id(context) + PYAV_CONTEXT_POINTER)
            if address is None or _read_pointer(fd, address) != self._codec_class:
                raise UnsupportedLibrary(f"PyAV {av.__version__} does not hold its AVCodecContext where expected")
            return address
        finally:
            os.close(fd)


def _pyav_library(name: str) -> str:
    """The path of FFmpeg library `name` as this process mapped it for PyAV: the copy PyAV's wheel brings
    (next to its package) if there is one, else the one the system's PyAV was linked with."""
    mapped = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "/" in line}
    found = sorted(path for path in mapped if Path(path).name.split("-")[0].split(".")[0] == name)
    bundled = [path for path in found if path.startswith(str(Path(av.__file__).parent.parent))]
    if not found:
        raise UnsupportedLibrary(f"{name} is not among this process's mappings")
    return (bundled or found)[0]


def _read_pointer(fd: int, address: int) -> int | None:
    """The pointer stored at `address` of this process, or None where nothing readable is mapped."""
    try:
        word = os.pread(fd, ctypes.sizeof(ctypes.c_void_p), address)
    except (OSError, OverflowError):  # not mapped; past what a file offset holds (kernel addresses)
        return None
    return int.from_bytes(word, sys.byteorder) if len(word) == ctypes.sizeof(ctypes.c_void_p) else None


@functools.cache
def codec_options() -> CodecOptions:
    """The process's one CodecOptions (it looks FFmpeg's libraries up once)."""
    return CodecOptions()
