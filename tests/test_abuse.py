"""Hostile input is answered 4xx, never 5xx, and leaves nothing behind (issue 12)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc import RTCSessionDescription
from aiortc.sdp import SessionDescription

from tests.conftest import wait_for
from tests.test_lifecycle import settle, within
from vgpustream import compat
from vgpustream.api import whep
from vgpustream.api.state import REGISTRY
from vgpustream.testing.hostile import spoiled_offers
from vgpustream.testing.receiver import an_offer, local_peer
from vgpustream.transports import webrtc

SDP = {"Content-Type": "application/sdp"}


def mutate(sdp: str, case: str) -> str:
    return spoiled_offers(sdp)[case]


HOSTILE_OFFERS = [
    "empty-mid",
    "repeated-mid",
    "no-setup",
    "no-fingerprint",
    "no-ice-credentials",
    "300-video-m-lines",
    "two-video-sections",
    "sendonly-video",
    "unknown-kind",
    "application-not-sctp",
]


@pytest.mark.parametrize("case", HOSTILE_OFFERS)
async def test_hostile_offers_are_invalid_offer_400(make_server, http, viewers, case):
    server = await make_server(source="synthetic:320x240@30")
    offer = mutate(await an_offer(), case)
    async with http.post(server.make_url("/whep/default"), data=offer, headers=SDP) as response:
        assert response.status == 400, await response.text()
        assert (await response.json())["error"]["code"] == "invalid_offer"
    receiver = await viewers(server)
    assert (await receiver.next_frame()).picture.width == 320


async def test_offers_aiortc_fails_on_are_400_and_release_the_viewer(make_server, http, monkeypatch):
    """With the up-front check out of the way, aiortc itself fails on these: still 400, nothing left."""
    monkeypatch.setattr(whep, "check_offer", SessionDescription.parse)
    monkeypatch.setattr(webrtc, "check_offer", SessionDescription.parse)
    server = await make_server(source="synthetic:320x240@30", max_viewers=2)
    session = server.app[REGISTRY].get("default")
    offer = await an_offer()
    broken = [mutate(offer, case) for case in ("empty-mid", "no-setup")]

    async def post(sdp: str) -> int:
        async with http.post(server.make_url("/whep/default"), data=sdp, headers=SDP) as response:
            return response.status

    assert [await post(sdp) for sdp in broken] == [400, 400]  # warm-up
    baseline = await settle((0, 0), seconds=2.0)
    statuses = [await post(broken[n % len(broken)]) for n in range(60)]
    assert set(statuses) == {400}, statuses
    assert len(session.audience) == 0, "a rejected offer must give its viewer slot back"
    after = await settle(baseline)
    assert within(after, baseline), f"(fds, tasks) were {baseline}, now {after}"


async def test_closing_a_half_made_peer_connection_finishes():
    """aiortc 1.16's close() raises on an SCTP transport that an unanswerable offer left without DTLS."""
    pc = local_peer()
    pc.addTransceiver("video", direction="sendonly")
    offer = mutate(await an_offer(), "empty-mid")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    with pytest.raises(AttributeError):
        await pc.createAnswer()
    await asyncio.wait_for(compat.close_peer_connection(pc), 5)
    await asyncio.wait_for(pc.close(), 5)  # a second close returns too


DEEP = 5000


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/api/v1/sessions", "[" * DEEP + "]" * DEEP, "nests deeper"),
        ("/api/v1/sessions", '{"labels":' + "[" * DEEP + "]" * DEEP + "}", "nests deeper"),
        ("/api/v1/sessions/default", '{"labels":"' + "[" * DEEP + '"}', "labels"),  # brackets in a string are text
        ("/api/v1/sessions/default", '{"encoder":{"keyframe_interval":' + "9" * 400 + "}}", "keyframe_interval"),
        ("/api/v1/sessions/default", '{"encoder":{"keyframe_interval":NaN}}', "not valid JSON"),
        ("/api/v1/sessions/default", '{"encoder":{"keyframe_interval":-Infinity}}', "not valid JSON"),
        ("/api/v1/sessions/default", '{"encoder":{"bitrate":' + "9" * 400 + "}}", "bitrate"),
        ("/api/v1/sessions/default/tokens", '{"ttl_seconds":' + "9" * 400 + "}", "ttl_seconds"),
        ("/api/v1/sessions/default/tokens", '{"ttl_seconds":1e999}', "ttl_seconds"),
    ],
    ids=[
        "deep-array",
        "deep-labels",
        "brackets-in-text",
        "huge-interval",
        "nan",
        "infinity",
        "huge-bitrate",
        "huge-ttl",
        "float-overflow-ttl",
    ],
)
async def test_hostile_json_is_400(make_server, http, path, body, fragment):
    server = await make_server(source="synthetic:320x240@30")
    method = http.patch if path == "/api/v1/sessions/default" else http.post
    async with method(server.make_url(path), data=body, headers={"Content-Type": "application/json"}) as response:
        assert response.status == 400, await response.text()
        assert fragment in (await response.json())["error"]["message"]


async def test_hostile_input_messages_are_counted_and_the_channel_goes_on(make_server, viewers):
    server = await make_server(source="synthetic:320x240@30")
    session = server.app[REGISTRY].get("default")
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    channel = receiver._channel
    hostile = [
        '{"type":"pointer","x":' + "9" * 400 + ',"y":0,"buttons":0}',  # no float for it
        "[" * 256 + "]" * 256,
        '{"type":"pointer","x":NaN,"y":0,"buttons":0}',
        b"\xff\xfe",
        "x" * 4096,
    ]
    for message in hostile:
        channel.send(message)
    receiver.send_input({"type": "pointer", "x": 0.5, "y": 0.5, "buttons": 0})
    for _ in range(100):
        if session.audience.stats.input_events == 1:
            break
        await asyncio.sleep(0.05)
    stats = session.audience.stats
    assert (stats.input_invalid, stats.input_events) == (len(hostile), 1)
    assert (await receiver.next_frame()).picture.width == 320


async def test_a_viewer_that_floods_its_channel_is_disconnected_and_told_why(make_server, viewers):
    server = await make_server(source="synthetic:320x240@30", input_rate=20.0, input_burst=40)
    session = server.app[REGISTRY].get("default")
    calm = await viewers(server)
    flooding = await viewers(server)
    for receiver in (calm, flooding):
        await receiver.wait_channel_open()
    started = time.monotonic()
    for _ in range(400):
        flooding.send_input({"type": "pointer", "x": 0.5, "y": 0.5, "buttons": 0})
    await wait_for(lambda: len(session.audience) == 1, what="the flooding viewer disconnected")
    assert [m["reason"] for m in flooding.messages if m.get("type") == "disconnect"] == ["flood"]
    assert session.audience.stats.viewers_flooding == 1
    # its burst, and what its bucket refilled while the flood lasted (however slowly the machine took it in)
    allowed = 40 + 20 * (time.monotonic() - started)
    assert session.audience.stats.input_events <= allowed, "nothing past its budget reached the guest"
    events = session.audience.stats.input_events
    calm.send_input({"type": "pointer", "x": 0.25, "y": 0.25, "buttons": 0})
    await wait_for(lambda: session.audience.stats.input_events == events + 1, what="the calm viewer's input")
