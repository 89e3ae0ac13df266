"""A real aiortc viewer on loopback receives and decodes the session's H.264 stream."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.pictures import psnr, synthetic_luma
from vgpustream.api.state import REGISTRY
from vgpustream.audience.publisher import VIEWER_KEYFRAME_INTERVAL
from vgpustream.media.stamp import luma, stamp_rows
from vgpustream.sources.synthetic import POINTER_IDLE, TextPage


async def test_viewer_decodes_the_pattern(make_server, viewers):
    server = await make_server(source="synthetic:640x360@30?pattern=text")
    receiver = await viewers(server)
    frames = [await receiver.next_frame() for _ in range(30)]
    assert all(f.picture.width == 640 and f.picture.height == 360 for f in frames)
    stamps = [f.stamp for f in frames if f.stamp is not None]
    assert len(stamps) >= 28, "frame stamps must survive encoding"
    numbers = [s.frame for s in stamps]
    assert numbers == sorted(numbers) and numbers[-1] > numbers[0]
    # the decoded picture is the source's picture: compare with a fresh rendering of the same frame
    reference = TextPage(640, 360)
    last = frames[-1]
    expected = synthetic_luma(reference, last.stamp.frame)
    assert psnr(luma(last.picture), expected, skip_rows=stamp_rows(640)) > 30
    # a different frame number does not match as well: the comparison can fail
    other = synthetic_luma(reference, last.stamp.frame + 7)
    assert psnr(luma(last.picture), other, skip_rows=stamp_rows(640)) < 25


async def test_pointer_input_shows_in_the_picture(make_server, viewers):
    server = await make_server(source="synthetic:640x360@30?pattern=text&still=1")
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    receiver.send_input({"type": "pointer", "x": 0.75, "y": 0.5, "buttons": 0})
    for _ in range(60):
        rgb = (await receiver.next_frame()).picture.to_ndarray(format="rgb24")
        spot = rgb[178:183, 477:483].reshape(-1, 3).mean(axis=0)
        if np.allclose(spot, POINTER_IDLE[::-1], atol=40):
            break
    else:
        raise AssertionError(f"pointer never appeared at (480, 180); colour there {spot}")
    session = server.app[REGISTRY].get("default")
    assert session.audience.stats.input_events == 1


async def test_invalid_input_is_counted_and_dropped(make_server, viewers):
    server = await make_server(source="synthetic:640x360@30")
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    for bad in ('{"type": "key"}', "not json", '{"type":"pointer","x":2,"y":0,"buttons":0}', "[]", "x" * 2000):
        receiver._channel.send(bad)
    receiver.send_input({"type": "key", "code": "KeyA", "down": True})
    session = server.app[REGISTRY].get("default")
    for _ in range(50):
        if session.audience.stats.input_events == 1 and session.audience.stats.input_invalid == 5:
            break
        await asyncio.sleep(0.1)
    assert (session.audience.stats.input_events, session.audience.stats.input_invalid) == (1, 5)
    assert "KeyA" in session.capture.input_sink.keys_down
    await receiver.next_frame()  # the stream goes on


async def test_keys_held_by_a_viewer_that_leaves_are_released(make_server, viewers, http):
    server = await make_server(source="synthetic:320x240@30")
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    receiver.send_input({"type": "key", "code": "ShiftLeft", "down": True})
    receiver.send_input({"type": "key", "code": "KeyQ", "down": True})
    receiver.send_input({"type": "key", "code": "KeyQ", "down": False})
    sink = server.app[REGISTRY].get("default").capture.input_sink
    for _ in range(50):
        if sink.events == 3:
            break
        await asyncio.sleep(0.1)
    assert sink.keys_down == {"ShiftLeft"}
    await receiver.close()
    assert sink.keys_down == set(), "the key still held when the viewer left must be released"
    async with http.get(server.make_url("/healthz")) as response:
        assert response.status == 200


async def test_a_picture_loss_indication_yields_one_keyframe_soon(make_server, viewers):
    # no periodic keyframes for a minute: every IDR after the first answers a request
    server = await make_server(source="synthetic:320x240@30", keyframe_interval=60)
    receiver = await viewers(server)
    await receiver.next_frame()
    stats = server.app[REGISTRY].get("default").capture.stats
    await asyncio.sleep(VIEWER_KEYFRAME_INTERVAL)  # past the join's own request
    before = stats.keyframes

    async def keyframe_arrives() -> None:
        # frames queued in the viewer while the test slept come first: allow for a few seconds' worth
        for _ in range(120):
            if (await receiver.next_frame()).picture.key_frame:
                return
        raise AssertionError("no keyframe within 120 frames of the request")

    for _ in range(10):  # a burst of PLIs, as several viewers or a lossy link would send
        await receiver.send_pli()
    await keyframe_arrives()
    await asyncio.sleep(VIEWER_KEYFRAME_INTERVAL)
    assert stats.keyframes == before + 1, "ten requests inside the rate limit cost one IDR"
    await receiver.send_pli()
    await keyframe_arrives()
    assert stats.keyframes == before + 2, "a request after the rate-limit window gets its own IDR"


async def test_any_viewer_reports_its_delays_and_bad_reports_are_dropped(make_server, viewers, http):
    server = await make_server(source="synthetic:320x240@30")
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view"}) as response:
        token = (await response.json())["token"]
    receiver = await viewers(server, token=token)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    bad = ([], [-1], ["12"], [True], [60_001], [1] * 65, "12")
    for ms in bad:
        receiver.send_input({"type": "delay", "ms": ms})
    receiver._channel.send('{"type": "delay", "ms": [1e999]}')
    receiver.send_input({"type": "delay", "ms": [12.5, 40]})
    audience = server.app[REGISTRY].get("default").audience
    delays = audience.glass_to_glass
    for _ in range(50):
        if audience.stats.input_invalid == len(bad) + 1 and sum(delays.counts) == 2:
            break
        await asyncio.sleep(0.1)
    assert (audience.stats.input_invalid, audience.stats.input_refused) == (len(bad) + 1, 0)
    assert delays.total == pytest.approx(0.0525)
    assert [delays.bounds[i] for i, count in enumerate(delays.counts) if count] == [0.02, 0.05]
