"""A viewer's microphone into a real QEMU's sound input (`-audiodev dbus`, an HDA card with a recording input).

The bad-input test needs no guest: QEMU announces the HDA card's input stream to the AudioInListener as soon
as the listener registers, so SeaBIOS on the card does. The tests with a guest are in test_microphone_guest.py.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import pytest

from tests.browser import chromium, playing_console
from tests.qemu.vm import Vm
from tests.sounds import ToneTrack, opus_packets
from tests.test_auth import issue
from tests.test_console_rough_edges import CONTROLS, assert_reachable_at_every_width
from vgpustream.api.state import AUDIT, REGISTRY
from vgpustream.input.microphone import MAX_PACKET_BYTES, MAX_PACKET_RATE
from vgpustream.testing.qemu import Bus, wait_for
from vgpustream.testing.wsreceiver import WebSocketReceiver
from vgpustream.transports.websocket import HEADER, MICROPHONE

SOUND_CARD = ("-audiodev", "dbus,id=snd0", "-device", "intel-hda", "-device", "hda-duplex,audiodev=snd0")
"""A sound card with an input (hda-duplex: line out and line in) on QEMU's D-Bus audio."""


def microphone_message(packet: bytes) -> bytes:
    """A WebSocket binary message of the microphone kind (the header the server's own messages have)."""
    return HEADER.pack(MICROPHONE, 0, math.nan, 0) + packet


async def told(viewer: WebSocketReceiver, count: int = 1, timeout: float = 10) -> list[dict]:
    """The viewer's microphone outcomes, once it has at least `count` of them."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(outcomes := [m for m in viewer.messages if m.get("type") == "microphone"]) < count:
        assert asyncio.get_running_loop().time() < deadline, f"told {outcomes}"
        await asyncio.sleep(0.05)
    return outcomes


async def test_microphone_bad_input_is_refused_counted_and_the_session_plays_on(
    bus: Bus, start_vm: Callable[..., Vm], make_server, http
):
    start_vm(f"dbus,addr={bus.address},audiodev=snd0", *SOUND_CARD)
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    session = server.app[REGISTRY].get("default")
    microphone = session.audience.microphone
    await asyncio.to_thread(wait_for, lambda: microphone.available, 60, "QEMU's sound input")

    async def viewer(**terms: str) -> WebSocketReceiver:
        token = (await issue(http, server, **terms))["token"]
        receiver = WebSocketReceiver(str(server.make_url("/ws/default")), http, token)
        await receiver.connect()
        return receiver

    async with http.post(
        server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view", "microphone": "use"}
    ) as response:
        assert response.status == 400, "a view token never gets the microphone"
    onlooker = await viewer(role="view")
    typist = await viewer(role="control")  # microphone: none, the default
    speaker = await viewer(role="control", microphone="use")
    second = await viewer(role="control", microphone="use")
    tone = opus_packets(1.0)

    def offered(viewer: WebSocketReceiver) -> list[bool]:
        return [m["microphone"] for m in viewer.messages if m.get("type") == "state"]

    # the console offers its Microphone button where the VM takes sound in and the link may use it
    offers = lambda: True in offered(speaker) and True in offered(second)  # noqa: E731
    await asyncio.to_thread(wait_for, offers, 10, "the console's offer of the microphone")
    assert offered(onlooker) and offered(typist) and not any(offered(onlooker) + offered(typist))

    # without the permission: the request and the sound are refused, and counted
    for refused in (onlooker, typist):
        refused.send_input({"type": "microphone", "on": True})
        await told(refused)
        await refused.send_bytes(microphone_message(tone[0]))
        outcomes = await told(refused, 2)
        assert outcomes[0] == {"type": "microphone", "live": False, "message": "this link may not use the microphone"}
        assert outcomes[1]["message"] == "this viewer's microphone is not on"
    assert microphone.stats.microphone_refused == 4

    # absurd formats are refused with the reason
    speaker.send_input({"type": "microphone", "on": True, "codec": "opus", "sampleRate": 4_000_000})
    speaker.send_input({"type": "microphone", "on": True, "codec": "opus", "numberOfChannels": 64})
    outcomes = await told(speaker, 2)
    assert [o["message"] for o in outcomes] == [
        "the microphone's sound must be at 48000 Hz",
        "the microphone's sound must have 1 or 2 channels",
    ]
    assert microphone.speaker is None

    # one microphone at a time: the second is told why
    speaker.send_input({"type": "microphone", "on": True, "codec": "opus", "sampleRate": 48000, "numberOfChannels": 1})
    assert (await told(speaker, 3))[2] == {"type": "microphone", "live": True, "message": None}
    second.send_input({"type": "microphone", "on": True})
    assert (await told(second))[0] == {
        "type": "microphone",
        "live": False,
        "message": "another viewer's microphone is on; only one at a time",
    }
    await second.send_bytes(microphone_message(tone[0]))
    for packet in tone[:10]:
        await speaker.send_bytes(microphone_message(packet))
    await asyncio.to_thread(wait_for, lambda: microphone.stats.microphone_packets == 10, 10, "the speaker's packets")
    assert len(await told(second, 2)) == 2, "the second viewer's sound is refused"

    # a packet too large: refused, and the speaker's microphone stops, with the reason
    await speaker.send_bytes(microphone_message(b"\xfc" * (MAX_PACKET_BYTES + 1)))
    assert (await told(speaker, 4))[3] == {
        "type": "microphone",
        "live": False,
        "message": f"a microphone packet over {MAX_PACKET_BYTES} bytes",
    }
    assert microphone.speaker is None

    # too many packets a second (2.5 ms each: not too much sound)
    speaker.send_input({"type": "microphone", "on": True})
    await told(speaker, 5)
    for packet in opus_packets(2 * MAX_PACKET_RATE * 0.0025, frame_ms=2.5):
        await speaker.send_bytes(microphone_message(packet))
    outcome = (await told(speaker, 6))[5]
    assert outcome["message"] == f"more than {MAX_PACKET_RATE} microphone packets a second", outcome

    # more sound than time: 60 ms packets, as fast as the socket takes them
    speaker.send_input({"type": "microphone", "on": True})
    await told(speaker, 7)
    for packet in opus_packets(1.5, frame_ms=60):
        await speaker.send_bytes(microphone_message(packet))
    assert (await told(speaker, 8))[7]["message"] == "more than 1.5 seconds of sound a second"

    # not Opus
    speaker.send_input({"type": "microphone", "on": True})
    await told(speaker, 9)
    await speaker.send_bytes(microphone_message(b"\xff" * 3))
    assert (await told(speaker, 10))[9]["message"] == "a microphone packet that is not Opus"

    # the session played on for every viewer, and the refusals are in the stats and /metrics
    for watcher in (onlooker, typist, speaker, second):
        await watcher.next_frame(timeout=30)
        assert not watcher.closed.done()
    async with http.get(server.make_url("/api/v1/sessions/default")) as response:
        described = await response.json()
    assert described["microphone"] is True
    assert described["stats"]["microphone_refused"] == microphone.stats.microphone_refused >= 12
    assert described["stats"]["microphone_starts"] == 4
    async with http.get(server.make_url("/metrics")) as response:
        metrics = await response.text()
    assert (
        f'vgpustream_session_microphone_refused_total{{session="default"}} {microphone.stats.microphone_refused}'
        in (metrics.replace(".0\n", "\n"))
    )
    # the audit trail says who started and stopped it, and why
    events = [e for e in server.app[AUDIT].events("default", limit=1000) if e.type.startswith("microphone.")]
    assert [(e.type, e.data["viewer"]) for e in events] == [
        (kind, speaker.welcome["viewer"]) for _ in range(4) for kind in ("microphone.started", "microphone.stopped")
    ]
    assert events[1].data["reason"] == f"a microphone packet over {MAX_PACKET_BYTES} bytes"
    for watcher in (onlooker, typist, speaker, second):
        await watcher.close()


def audio_direction(answer: str) -> str:
    """The direction the server's answer gives its audio section."""
    audio = answer[answer.index("m=audio") :]
    return next(line[2:] for line in audio.splitlines() if line in ("a=sendonly", "a=sendrecv", "a=inactive"))


async def test_webrtc_microphone_sound_counts_only_from_the_viewer_that_holds_it(
    bus: Bus, start_vm: Callable[..., Vm], make_server, http, viewers
):
    start_vm(f"dbus,addr={bus.address},audiodev=snd0", *SOUND_CARD)
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    microphone = server.app[REGISTRY].get("default").audience.microphone
    await asyncio.to_thread(wait_for, lambda: microphone.available, 60, "QEMU's sound input")

    async def speaking(**terms: str):
        viewer = await viewers(server, token=(await issue(http, server, **terms))["token"], microphone=ToneTrack())
        await viewer.wait_channel_open()
        return viewer

    # a view token's viewer offers its microphone: the server's answer takes none of it (sendonly)
    onlooker = await speaking(role="view")
    assert audio_direction(onlooker.pc.remoteDescription.sdp) == "sendonly"
    # a viewer that may speak but did not ask: its sound is refused and counted, and it is told once
    speaker = await speaking(role="control", microphone="use")
    assert audio_direction(speaker.pc.remoteDescription.sdp) == "sendrecv"
    await asyncio.to_thread(wait_for, lambda: microphone.stats.microphone_refused >= 25, 20, "refused sound")
    told = [m for m in speaker.messages if m.get("type") == "microphone"]
    assert told == [{"type": "microphone", "live": False, "message": "this viewer's microphone is not on"}]
    assert microphone.stats.microphone_packets == 0
    # once it holds the microphone, its sound (decoded by aiortc, once) reaches the guest's buffer
    speaker.send_input({"type": "microphone", "on": True})
    await asyncio.to_thread(wait_for, lambda: microphone.stats.microphone_packets >= 25, 20, "the speaker's sound")
    refused = microphone.stats.microphone_refused
    await asyncio.sleep(0.5)
    assert microphone.stats.microphone_refused == refused, "nothing of the speaker's is refused"
    # and it gives it back by leaving: the audit trail says so, and nothing of its microphone is left running
    await speaker.close()
    await asyncio.to_thread(wait_for, lambda: microphone.speaker is None, 10, "the microphone given back")
    await onlooker.close()
    await asyncio.sleep(0.5)
    assert [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("microphone-")] == []
    events = [e for e in server.app[AUDIT].events("default", limit=1000) if e.type.startswith("microphone.")]
    assert [(e.type, e.data.get("reason")) for e in events] == [
        ("microphone.started", None),
        ("microphone.stopped", "the viewer left"),
    ]


async def test_a_microphone_stops_when_its_link_s_time_is_up(bus: Bus, start_vm: Callable[..., Vm], make_server, http):
    start_vm(f"dbus,addr={bus.address},audiodev=snd0", *SOUND_CARD)
    server = await make_server(source=f"qemu-dbus:{bus.address}", on_token_expiry="view")
    microphone = server.app[REGISTRY].get("default").audience.microphone
    await asyncio.to_thread(wait_for, lambda: microphone.available, 60, "QEMU's sound input")
    token = (await issue(http, server, role="control", microphone="use", ttl_seconds=2))["token"]
    speaker = WebSocketReceiver(str(server.make_url("/ws/default")), http, token)
    await speaker.connect()
    speaker.send_input({"type": "microphone", "on": True})
    assert (await told(speaker))[0]["live"] is True
    assert (await told(speaker, 2, timeout=10))[1] == {
        "type": "microphone",
        "live": False,
        "message": "the link's time is up",
    }
    assert microphone.speaker is None
    speaker.send_input({"type": "microphone", "on": True})
    assert (await told(speaker, 3))[2]["message"] == "this link may not use the microphone"
    await speaker.close()


SHOWN_CONTROLS = "() => [...document.querySelectorAll('.control')].filter((c) => !c.hidden).map((c) => c.id)"


@pytest.mark.browser
async def test_the_console_offers_the_microphone_only_where_it_may_and_it_fits_the_toolbar(
    bus: Bus, start_vm: Callable[..., Vm], make_server, http
):
    start_vm(f"dbus,addr={bus.address},audiodev=snd0", *SOUND_CARD)
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    microphone = server.app[REGISTRY].get("default").audience.microphone
    await asyncio.to_thread(wait_for, lambda: microphone.available, 60, "QEMU's sound input")
    speaking = await issue(http, server, role="control", microphone="use")
    typing = await issue(http, server, role="control")
    async with chromium() as browser:
        page, errors = await playing_console(browser, speaking["console_url"])
        await page.wait_for_function("() => !document.getElementById('microphone').hidden", timeout=10_000)
        assert await page.locator("#microphone svg").count() == 1, "its icon is inline SVG"
        shown = await page.evaluate(SHOWN_CONTROLS)
        assert {*CONTROLS, "microphone"} <= set(shown), shown
        await assert_reachable_at_every_width(page, shown)
        other, _ = await playing_console(browser, typing["console_url"])  # playing: it was told the state
        assert await other.locator("#microphone").is_hidden(), "a link without the permission has no button"
        assert errors == []
