"""The guest's cursor reaches viewers: as messages on the input channel, or drawn into the picture."""

from __future__ import annotations

import asyncio
import base64
import io

import av
import numpy as np

from vgpustream.sources.synthetic import ARROW, POINTER_IDLE


async def cursor_messages(receiver, count: int, timeout: float = 10.0) -> list[dict]:
    for _ in range(int(timeout / 0.05)):
        found = [m for m in receiver.messages if m.get("type") == "cursor"]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} cursor messages, got {receiver.messages}")


def red_at(picture: av.VideoFrame, x: int, y: int) -> bool:
    rgb = picture.to_ndarray(format="rgb24")[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).mean(axis=0)
    return bool(np.allclose(rgb, POINTER_IDLE[::-1], atol=60))


async def test_a_viewer_with_a_channel_gets_cursor_messages_and_a_clean_picture(make_server, viewers):
    server = await make_server(source="synthetic:320x240@30?pattern=text&cursor=1")
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    (initial,) = await cursor_messages(receiver, 1)  # where the cursor is when the viewer arrives
    assert initial["visible"] is False
    receiver.send_input({"type": "pointer", "x": 0.5, "y": 0.5, "buttons": 0})
    first = (await cursor_messages(receiver, 2))[-1]
    assert (first["x"], first["y"], first["visible"], first["composited"]) == (160, 120, True, False)
    images = [m for m in receiver.messages if "image" in m]
    assert len(images) == 1, "the image is sent once"
    png = base64.b64decode(images[0]["image"].removeprefix("data:image/png;base64,"))
    with av.open(io.BytesIO(png)) as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="rgba")
    assert np.array_equal(decoded[:, :, [2, 1, 0, 3]], ARROW)
    receiver.send_input({"type": "pointer", "x": 0.25, "y": 0.25, "buttons": 0})
    moved = (await cursor_messages(receiver, 3))[-1]
    assert (moved["x"], moved["y"]) == (80, 60) and "image" not in moved
    for _ in range(10):
        assert not red_at((await receiver.next_frame()).picture, 80 + 3, 60 + 10), "no cursor drawn in"


async def test_the_cursor_is_drawn_in_for_a_viewer_without_a_channel(make_server, viewers):
    server = await make_server(source="synthetic:320x240@30?pattern=text&cursor=1")
    controller = await viewers(server)
    watcher = await viewers(server, input_channel=False)
    await controller.next_frame()
    await watcher.next_frame()
    await controller.wait_channel_open()
    controller.send_input({"type": "pointer", "x": 0.5, "y": 0.5, "buttons": 0})
    for _ in range(60):
        if red_at((await watcher.next_frame()).picture, 160 + 3, 120 + 10):
            break
    else:
        raise AssertionError("the cursor never appeared in the watcher's picture")
    told = (await cursor_messages(controller, 1))[-1]
    assert told["composited"] is True, "viewers that draw the cursor themselves are told it is drawn in"
