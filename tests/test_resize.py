"""Resize to the window: a control viewer's `resize` message and the control plane's PATCH change the guest's
display size (here the synthetic source with `?resize=1`, a guest that takes every mode it is offered),
bounded by the source's limits; bad and hostile requests are refused, counted, and never stop the stream."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from tests.conftest import OPERATOR
from tests.served import ROOT
from vgpustream.input.events import InvalidInput, ResizeEvent, parse_input
from vgpustream.input.resize import Resizer, physical_size_mm

RESIZABLE = "synthetic:640x360@30?resize=1"


async def stats(http, server) -> dict:
    async with http.get(server.make_url("/api/v1/sessions/default"), headers=OPERATOR) as response:
        return (await response.json())["stats"]


async def last_state(receiver) -> dict:
    """The last state message the viewer was sent (cursor messages come on the same channel); the first
    comes after the capture step that follows the channel's opening."""
    for _ in range(100):
        if told := [message for message in receiver.messages if message["type"] == "state"]:
            return told[-1]
        await asyncio.sleep(0.05)
    raise AssertionError("no state message")


async def size_becomes(receiver, width: int, height: int, frames: int = 150) -> None:
    """Wait until the viewer decodes a picture of width x height (the stream follows the mode change)."""
    for _ in range(frames):
        picture = (await receiver.next_frame()).picture
        if (picture.width, picture.height) == (width, height):
            return
    raise AssertionError(f"the picture stayed {picture.width}x{picture.height}, not {width}x{height}")


async def patch_display(http, server, display: object) -> tuple[int, dict]:
    url = server.make_url("/api/v1/sessions/default")
    async with http.patch(url, json={"display": display}, headers=OPERATOR) as response:
        return response.status, await response.json()


async def test_a_control_viewers_resize_changes_the_picture_without_a_reconnect(make_server, viewers, http):
    server = await make_server(source=RESIZABLE)
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    assert (await last_state(receiver))["resizable"] is True, "the console learns it may resize"
    receiver.send_input({"type": "resize", "width": 800, "height": 600, "scale": 1.5})
    await size_becomes(receiver, 800, 600)
    assert (await stats(http, server))["resizes_applied"] == 1


async def test_a_source_that_cannot_resize_says_so_and_refuses_the_api(make_server, viewers, http):
    server = await make_server(source="synthetic:640x360@30")
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    assert (await last_state(receiver))["resizable"] is False
    async with http.get(server.make_url("/api/v1/sessions/default/planes"), headers=OPERATOR) as response:
        assert (await response.json())["resizable"] is False
    status, body = await patch_display(http, server, {"width": 800, "height": 600})
    assert (status, body["error"]["code"]) == (409, "unsupported")
    receiver.send_input({"type": "resize", "width": 800, "height": 600, "scale": 1})
    for _ in range(100):
        if (await stats(http, server))["resizes_failed"] == 1:
            break
        await asyncio.sleep(0.05)
    assert (await stats(http, server))["resizes_failed"] == 1
    assert (await receiver.next_frame()).picture.width == 640


async def test_the_api_resizes_within_the_sources_limits(make_server, viewers, http):
    server = await make_server(source=RESIZABLE)
    receiver = await viewers(server)
    await receiver.next_frame()
    async with http.get(server.make_url("/api/v1/sessions/default/planes"), headers=OPERATOR) as response:
        assert (await response.json())["resizable"] is True
    status, body = await patch_display(http, server, {"width": 1024, "height": 768})
    assert status == 200, body
    await size_becomes(receiver, 1024, 768)
    async with http.get(server.make_url("/api/v1/sessions/default/planes"), headers=OPERATOR) as response:
        primary = (await response.json())["primary"]
    assert (primary["width"], primary["height"]) == (1024, 768)
    # past the source's own limit (8192 for the synthetic picture) though within the protocol's
    status, body = await patch_display(http, server, {"width": 10000, "height": 600})
    assert (status, body["error"]["code"]) == (400, "bad_request") and "64x64..8192x8192" in body["error"]["message"]


@pytest.mark.parametrize(
    "display",
    [
        {"width": 0, "height": 0},
        {"width": 100000, "height": 100000},
        {"width": 1280.5, "height": 720},
        {"width": "1280", "height": 720},
        {"width": True, "height": 720},
        {"width": 1280},
        {"width": 1280, "height": 720, "scale": 0},
        {"width": 1280, "height": 720, "scale": 100},
        {"width": 1280, "height": 720, "depth": 32},
        [1280, 720],
    ],
)
async def test_bad_display_sizes_get_a_clear_400_and_change_nothing(make_server, http, display):
    server = await make_server(source=RESIZABLE)
    status, body = await patch_display(http, server, display)
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert any(word in body["error"]["message"] for word in ("display", "width", "height", "scale")), body
    assert (await stats(http, server))["resizes_applied"] == 0


async def test_nan_in_a_patch_body_is_refused(make_server, http):
    server = await make_server(source=RESIZABLE)
    url = server.make_url("/api/v1/sessions/default")
    body = '{"display": {"width": NaN, "height": 720}}'
    async with http.patch(url, data=body, headers={**OPERATOR, "Content-Type": "application/json"}) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    "message",
    [
        '{"type": "resize", "width": 0, "height": 0, "scale": 1}',
        '{"type": "resize", "width": 100000, "height": 100000, "scale": 1}',
        '{"type": "resize", "width": NaN, "height": 720, "scale": 1}',
        '{"type": "resize", "width": 1280, "height": 720, "scale": NaN}',
        '{"type": "resize", "width": 1280, "height": 720, "scale": Infinity}',
        '{"type": "resize", "width": 1280.5, "height": 720, "scale": 1}',
        '{"type": "resize", "width": 1280, "height": 720}',
        '{"type": "resize", "width": 1e400, "height": 720, "scale": 1}',
        '{"type": "motion", "dx": 5000, "dy": 0}',
        '{"type": "motion", "dx": 1.5, "dy": 0}',
    ],
)
def test_bad_resize_and_motion_messages_are_invalid(message):
    with pytest.raises(InvalidInput):
        parse_input(message)


def test_the_physical_size_follows_the_device_pixel_ratio():
    assert physical_size_mm(1920, 1080, 1.0) == (508, 286)  # 96 dpi: 20 inches wide
    assert physical_size_mm(3840, 2160, 2.0) == (508, 286)  # the same panel at HiDPI
    assert physical_size_mm(16384, 16384, 0.25) == (17340, 17340)


async def test_bad_resize_messages_are_counted_and_the_stream_goes_on(make_server, viewers, http):
    server = await make_server(source=RESIZABLE)
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    bad = [
        '{"type": "resize", "width": 0, "height": 0, "scale": 1}',
        '{"type": "resize", "width": 100000, "height": 100000, "scale": 1}',
        '{"type": "resize", "width": NaN, "height": 720, "scale": 1}',
        '{"type": "resize", "width": 1280.5, "height": 720, "scale": 1}',
    ]
    for message in bad:
        receiver.send_message(message)
    for _ in range(100):
        if (await stats(http, server))["input_invalid"] == len(bad):
            break
        await asyncio.sleep(0.05)
    counted = await stats(http, server)
    assert counted["input_invalid"] == len(bad) and counted["resize_requests"] == 0
    for _ in range(10):
        assert (await receiver.next_frame()).picture.width == 640


async def test_a_view_only_viewers_resize_is_refused_and_counted(make_server, viewers, http):
    server = await make_server(source=RESIZABLE)
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view"}) as response:
        token = (await response.json())["token"]
    watcher = await viewers(server, token=token)
    await watcher.next_frame()
    await watcher.wait_channel_open()
    watcher.send_input({"type": "resize", "width": 800, "height": 600, "scale": 1})
    for _ in range(100):
        if (await stats(http, server))["input_refused"] == 1:
            break
        await asyncio.sleep(0.05)
    counted = await stats(http, server)
    assert counted["input_refused"] == 1 and counted["resize_requests"] == 0
    await asyncio.sleep(0.5)
    assert (await watcher.next_frame()).picture.width == 640


async def flood(receiver, seconds: float, last: tuple[int, int]) -> tuple[int, int, float]:
    """Ask for a new width 100 times a second for `seconds` while receiving the stream, then for `last`;
    returns the requests sent, the frames received meanwhile, and the seconds it took."""
    frames = receiver.stats.frames
    receiving = asyncio.create_task(receiver.receive_for(seconds))
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < seconds:
        receiver.send_input({"type": "resize", "width": 640 + 2 * (sent % 100), "height": 480, "scale": 1})
        sent += 1
        await asyncio.sleep(0.01)
    await receiving
    receiver.send_input({"type": "resize", "width": last[0], "height": last[1], "scale": 1})
    return sent + 1, receiver.stats.frames - frames, time.monotonic() - started


async def test_a_100_hz_flood_of_resizes_is_paced_the_last_wins_and_the_stream_goes_on(make_server, viewers, http):
    server = await make_server(source=RESIZABLE)
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    sent, frames, elapsed = await flood(receiver, 2.0, (1000, 500))
    await size_becomes(receiver, 1000, 500)
    counted = await stats(http, server)
    assert counted["resize_requests"] == sent
    # at most one applied per RESIZE_INTERVAL (0.25 s), and one more for the last
    assert 2 <= counted["resizes_applied"] <= elapsed / 0.25 + 2, counted
    assert frames > 20, f"the stream kept going through the flood: {frames} frames in 2 s"


async def test_the_resizer_skips_a_request_for_the_size_it_applied_last():
    applied: list[ResizeEvent] = []

    async def apply(request: ResizeEvent) -> None:
        applied.append(request)

    resizer = Resizer(apply, interval=0.01)
    for _ in range(3):
        resizer.request(ResizeEvent(800, 600))
        await asyncio.sleep(0.05)
    resizer.request(ResizeEvent(1024, 768))
    await asyncio.sleep(0.05)
    await resizer.close()
    assert applied == [ResizeEvent(800, 600), ResizeEvent(1024, 768)]
    assert resizer.stats.resize_requests == 4 and resizer.stats.resizes_applied == 2


async def test_the_readmes_example_session_takes_the_readmes_display_request(make_server, http):
    """The README's typical calls, as a reader pastes them: its example session, then its display PATCH."""
    calls = (ROOT / "README.md").read_text().split("## Control plane: typical calls", 1)[1]
    bodies = [json.loads(body) for body in re.findall(r"-d '(\{.*?\})'", calls, re.DOTALL)]
    created = next(body for body in bodies if "source" in body)
    display = next(body for body in bodies if "display" in body)
    server = await make_server(source="synthetic:320x240@30")
    async with http.post(server.make_url("/api/v1/sessions"), json=created) as response:
        assert response.status == 201, await response.text()
    async with http.patch(server.make_url(f"/api/v1/sessions/{created['id']}"), json=display) as response:
        assert response.status == 200, await response.text()
