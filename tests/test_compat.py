"""The patches of third-party libraries: applied to the real libraries, and refused on unknown versions."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import struct
import time
from fractions import Fraction

import aioice
import aiortc.clock
import av
import pytest
from aioice import stun
from aiortc import RTCCertificate, RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.clock import datetime_to_ntp
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80
from aiortc.rtp import (
    RTCP_RTPFB,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtpPacket,
    pack_rtcp_packet,
    unpack_header_extensions,
)
from OpenSSL import SSL

from tests.conftest import wait_for
from vgpustream import compat
from vgpustream.api.state import REGISTRY
from vgpustream.errors import VgpuStreamError
from vgpustream.transports.congestion import TICK

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def negotiated_map(*extensions: tuple[int, str]) -> HeaderExtensionsMap:
    """aiortc's header extension map of a sender that negotiated `extensions` (id, uri)."""
    extension_map = HeaderExtensionsMap()
    extension_map.configure(
        RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=uri) for i, uri in extensions])
    )
    return extension_map


def test_an_unknown_library_version_is_refused_loudly():
    compat.check_versions()  # the installed ones are supported
    with pytest.raises(compat.UnsupportedLibrary, match=r"aiortc 0\.1\.x but aiortc 1\.16"):
        compat.check_versions({"aiortc": "0.1."})


def test_video_packets_carry_a_zero_playout_delay_where_it_was_negotiated():
    compat.install()
    negotiated = negotiated_map((9, MID), (5, compat.PLAYOUT_DELAY))
    written = unpack_header_extensions(*negotiated.set(HeaderExtensions(mid="0")))
    assert written == [(9, b"0"), (5, b"\x00\x00\x00")]
    assert negotiated.get(*negotiated.set(HeaderExtensions(mid="0"))).mid == "0", "aiortc still reads its own"
    plain = negotiated_map((9, MID))
    assert unpack_header_extensions(*plain.set(HeaderExtensions(mid="0"))) == [(9, b"0")], "not where it was not"


def test_dtls_offers_rsa_suites_after_aiortc_s_ecdsa_ones():
    compat.install()
    certificate = RTCCertificate.generateCertificate()
    context = certificate._create_ssl_context([SRTP_AES128_CM_SHA1_80])
    # TLS 1.3 suites (OpenSSL lists them first) do not apply to DTLS 1.2
    offered = [c for c in SSL.Connection(context).get_cipher_list() if c.startswith("ECDHE")]
    assert offered[0] == "ECDHE-ECDSA-AES128-GCM-SHA256", "aiortc's own certificate is ECDSA: its suites first"
    assert "ECDHE-RSA-AES128-GCM-SHA256" in offered, "a peer with an RSA certificate (GStreamer) finds one it shares"
    assert offered.index("ECDHE-RSA-AES128-GCM-SHA256") > offered.index("ECDHE-ECDSA-AES256-SHA")


def test_abs_capture_time_is_the_capture_time_in_ntp_format():
    assert compat.abs_capture_time(0.0) == (2_208_988_800 << 32).to_bytes(8, "big"), "NTP counts from 1900"
    assert compat.abs_capture_time(1.5)[4:] == (1 << 31).to_bytes(4, "big"), "half a second: UQ32.32 fraction"


def test_added_header_extensions_read_back_after_aiortc_s_own():
    compat.install()
    negotiated = negotiated_map((9, MID), (3, ABS_SEND_TIME), (5, compat.PLAYOUT_DELAY))
    profile, packed = negotiated.set(HeaderExtensions(mid="12", abs_send_time=0xABCDEF))
    assert profile == 0xBEDE and len(packed) % 4 == 0
    assert unpack_header_extensions(profile, packed) == [(9, b"12"), (3, b"\xab\xcd\xef"), (5, b"\x00\x00\x00")]
    values = negotiated.get(profile, packed)
    assert (values.mid, values.abs_send_time) == ("12", 0xABCDEF), "aiortc reads its own despite the padding"


def test_the_viewers_of_one_packet_share_its_payloads():
    compat.install()
    encoder = H264Encoder()
    stream = b"".join(b"\x00\x00\x00\x01" + bytes([0x65]) + bytes(range(256)) * 20 for _ in range(2))
    packet = av.Packet(stream)
    packet.pts, packet.time_base = 3000, Fraction(1, 90000)
    payloads, timestamp = encoder.pack(packet)
    assert H264Encoder().pack(packet)[0] is payloads, "a second viewer's sender gets the same payloads"
    assert timestamp == 3000 and len(payloads) > 2 and all(len(p) <= 1300 for p in payloads)
    other = av.Packet(stream)
    other.pts, other.time_base = 6000, Fraction(1, 90000)
    assert encoder.pack(other)[1] == 6000, "another packet is packetized on its own"


def test_the_ntp_clock_reads_the_same_time_as_aiortc_s():
    compat.install()
    expected = datetime_to_ntp(datetime.datetime.now(datetime.UTC))
    assert abs(aiortc.clock.current_ntp_time() - expected) < 2**32 // 100, "within 10 ms"


def test_an_open_codec_takes_a_new_peak_rate_and_nothing_but_a_codec_is_written_to():
    context = av.CodecContext.create("libx264", "w")
    context.width, context.height, context.pix_fmt = 64, 64, "yuv420p"
    context.time_base = Fraction(1, 90_000)
    context.options = {"crf": "18", "maxrate": "1000k", "bufsize": "1000k"}
    context.open()
    compat.codec_options().set_int(context, "maxrate", 4_000_000)
    assert context.max_bit_rate == 4_000_000
    with pytest.raises(VgpuStreamError, match="refused maxrate=-5"):
        compat.codec_options().set_int(context, "maxrate", -5)
    assert context.max_bit_rate == 4_000_000
    for not_a_codec in (object(), av.AudioFrame(), "maxrate"):
        with pytest.raises(compat.UnsupportedLibrary, match="does not hold its AVCodecContext"):
            compat.codec_options().set_int(not_a_codec, "maxrate", 1)  # type: ignore[arg-type]


async def test_gathering_waits_for_a_turn_server_no_longer_than_the_bound():
    """aioice alone waits 5 s for a TURN server that accepts TCP and never answers; bounded, 0.2 s."""
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    connection = aioice.Connection(ice_controlling=False, turn_server=("127.0.0.1", port), turn_transport="tcp")
    compat.install()
    compat.gather_within(0.2, compat.AIOICE_RELAYED_CANDIDATE)
    compat.advertise_host_addresses(["127.0.0.1"])
    try:
        started = time.monotonic()
        await connection.gather_candidates()
        took = time.monotonic() - started
        assert [c.type for c in connection.local_candidates] == ["host"]
    finally:
        compat.gather_as_aioice_does(compat.AIOICE_RELAYED_CANDIDATE)
        await connection.close()
        silent.close()
    assert took < 1.0, f"gathering took {took:.1f} s"


class LateCandidate(asyncio.DatagramProtocol):
    """A browser's candidate that nothing reaches at first (its TURN permission is not there yet), then
    answers checks like a browser; it keeps the data it receives."""

    def __init__(self, password: str) -> None:
        self.password = password.encode()
        self.answering = False
        self.data: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            self.data.append(data)
            return
        if self.answering and message.message_class == stun.Class.REQUEST:
            response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=message.transaction_id)
            response.attributes["XOR-MAPPED-ADDRESS"] = addr
            response.add_message_integrity(self.password)
            response.add_fingerprint()
            self.transport.sendto(bytes(response), addr)

    def nominate(self, username: str, password: str, to: tuple[str, int]) -> None:
        """A check with USE-CANDIDATE, as the controlling browser sends once it prefers this pair."""
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        request.attributes.update({"USERNAME": username, "PRIORITY": 1, "ICE-CONTROLLING": 1, "USE-CANDIDATE": None})
        request.add_message_integrity(password.encode())
        request.add_fingerprint()
        self.transport.sendto(bytes(request), to)


async def test_the_server_follows_the_browser_to_a_pair_whose_check_was_cut_short():
    """A pair whose check was still under way when ICE completed: the browser nominates it later, and the
    server's media must go there (aioice alone left the pair In-Progress and ignored the nomination)."""
    compat.install()
    compat.advertise_host_addresses(["127.0.0.1"])
    server, browser = aioice.Connection(ice_controlling=False), aioice.Connection(ice_controlling=True)
    await asyncio.gather(server.gather_candidates(), browser.gather_candidates())
    server.remote_username, server.remote_password = browser.local_username, browser.local_password
    browser.remote_username, browser.remote_password = server.local_username, server.local_password
    transport, late = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: LateCandidate(browser.local_password), local_addr=("127.0.0.1", 0)
    )
    late_port = transport.get_extra_info("sockname")[1]
    # checked first (the highest priority), so still under way when ICE completes on the other pair
    relay = aioice.Candidate("late", 1, "udp", 2**32 - 1, "127.0.0.1", late_port, "relay")
    try:
        for candidate in (*browser.local_candidates, relay, None):
            await server.add_remote_candidate(candidate)
        for candidate in (*server.local_candidates, None):
            await browser.add_remote_candidate(candidate)
        await asyncio.gather(server.connect(), browser.connect())
        late.answering = True
        host = server.local_candidates[0]
        late.nominate(
            f"{server.local_username}:{browser.local_username}", server.local_password, (host.host, host.port)
        )

        async def sent_to_late() -> bool:
            await server.sendto(b"media", 1)
            return b"media" in late.data

        for _ in range(100):
            if await sent_to_late():
                break
            await asyncio.sleep(0.05)
        assert b"media" in late.data, "the server's media does not follow the browser's nomination"
    finally:
        transport.close()
        await asyncio.gather(server.close(), browser.close())


class _Feedback:
    """An RTCP message of any kind, as aiortc's receiver sends one (it takes anything `bytes()` packs)."""

    def __init__(self, fmt: int, media_ssrc: int, fci: bytes) -> None:
        self.packed = pack_rtcp_packet(RTCP_RTPFB, fmt, struct.pack("!LL", 1, media_ssrc) + fci)

    def __bytes__(self) -> bytes:
        return self.packed


def starts_keyframe(payload: bytes) -> bool:
    """Whether an H.264 RTP payload begins a keyframe: its SPS, alone or first of an aggregate (STAP-A)."""
    return payload[0] & 0x1F == 7 or (payload[0] & 0x1F == 24 and len(payload) > 3 and payload[3] & 0x1F == 7)


async def test_a_viewer_s_video_is_numbered_its_feedback_measures_its_link_and_no_nack_reaches_past_a_keyframe(
    make_server, viewers
):
    """A real aiortc viewer (it negotiates transport-cc, as browsers do, but sends no feedback of its own): the
    packets it gets carry consecutive transport-wide numbers; feedback written as a browser writes it reaches
    the server's log of the viewer's packets, and the viewer's link is then measured; a NACK is answered (an RTX
    packet) for a packet since the last keyframe, not for one before it."""
    server = await make_server(source="synthetic:320x240@30?pattern=text")
    session = server.app[REGISTRY].get("default")
    viewer = await viewers(server)
    (receiver,) = viewer.pc.getReceivers()
    got: list[RtpPacket] = []
    arrived: list[float] = []
    handle = receiver._handle_rtp_packet

    async def recording(packet: RtpPacket, arrival_time_ms: int) -> None:
        got.append(packet)
        arrived.append(time.monotonic())
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = recording
    await viewer.next_frame()
    await wait_for(lambda: len(got) >= 40, what="40 packets")
    media = got[0].ssrc
    numbers = [packet.extensions.transport_sequence_number for packet in got[:40]]
    assert None not in numbers and numbers == list(range(numbers[0], numbers[0] + 40)), "consecutive, one each"

    deltas = [0] + [min(255, round((b - a) / TICK)) for a, b in itertools.pairwise(arrived[:40])]
    fci = struct.pack("!HHIH", numbers[0], 40, 1, 0b0_01_0000000000000 | 40) + bytes(deltas)
    await receiver._send_rtcp(_Feedback(compat.TRANSPORT_FEEDBACK, media, fci + bytes(-len(fci) % 4)))
    await wait_for(lambda: all(seat.link is not None and seat.link.measured for seat in session.audience))

    await viewer.send_pli()  # a keyframe; then a NACK for a packet on each side of it

    def video() -> list[RtpPacket]:
        return [packet for packet in got if packet.ssrc == media]

    def keyframes() -> list[int]:
        return [n for n, packet in enumerate(video()) if starts_keyframe(packet.payload)]

    await wait_for(lambda: len(keyframes()) >= 2 and len(video()) > keyframes()[-1] + 1, what="a second keyframe")
    last = keyframes()[-1]
    before, after = video()[last - 1].sequence_number, video()[last + 1].sequence_number
    seat = next(iter(session.audience))
    sender = next(sender for sender in seat._pc.getSenders() if sender.kind == "video")
    sent: list[int] = []  # what the server sends from now on (a copy of a packet that arrived would not be
    send_rtp = sender.transport._send_rtp  # let through the viewer's SRTP replay check: seen before it)

    async def recording_send(data: bytes) -> None:
        if not 192 <= data[1] <= 223 and struct.unpack_from("!L", data, 8)[0] == sender._ssrc:  # RTP, not RTCP
            sent.append(struct.unpack_from("!H", data, 2)[0])
        await send_rtp(data)

    sender.transport._send_rtp = recording_send
    await receiver._send_rtcp(_Feedback(1, media, struct.pack("!HHHH", before, 0, after, 0)))
    await asyncio.sleep(1.0)
    resent = set(sent) & {before, after}
    assert after in resent, "a packet since the last keyframe is sent again"
    assert before not in resent, "one before it is not: the keyframe made it useless"
