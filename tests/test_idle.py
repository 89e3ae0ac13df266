"""A session nobody watches encodes nothing and samples its source slowly; its thumbnail shows the picture."""

from __future__ import annotations

import asyncio
import io

import av
import numpy as np

from vgpustream.api.state import REGISTRY
from vgpustream.sources.synthetic import SyntheticSource
from vgpustream.stamp import luma

THUMBNAIL = "/api/v1/sessions/default/thumbnail"


async def first_capture(server) -> None:
    """Until the session's source was first captured (so that it has a thumbnail)."""
    stats = server.app[REGISTRY].get("default").capture.stats
    for _ in range(100):
        if stats.frames_captured:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the source was never captured")


def decode_jpeg(data: bytes) -> av.VideoFrame:
    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0))


def expected_thumbnail(source: SyntheticSource, number: int, width: int, height: int) -> np.ndarray:
    """The luma of picture `number` of `source` scaled down to width x height, independently of the server."""
    source.render(number, None)
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(source.pixels), format="bgra")
    return luma(picture.reformat(width=width, height=height, format="yuvj420p", interpolation="AREA"))


async def test_an_unwatched_session_encodes_nothing_until_a_viewer_comes(make_server, viewers):
    server = await make_server(source="synthetic:320x240@30", idle_sample_rate=4.0)
    session = server.app[REGISTRY].get("default")
    stats = session.capture.stats
    await asyncio.sleep(1.5)
    assert stats.frames_encoded == 0, "nobody watches: nothing is encoded"
    assert 2 <= stats.frames_captured <= 10, f"sampled at 4/s, not at 30: {stats.frames_captured} in 1.5 s"

    viewer = await viewers(server)
    frame = await viewer.next_frame()
    assert frame.stamp is not None, "the first viewer decodes the source's picture"
    now = session.capture._source.frame_number()  # the synthetic picture's number, from its clock
    assert now - frame.stamp.frame < 30, "the first picture is the current one, not one sampled long ago"
    assert stats.keyframes >= 1

    await viewer.close()
    await asyncio.sleep(0.3)  # the step running when the viewer left may still encode
    encoded = stats.frames_encoded
    await asyncio.sleep(1.0)
    assert stats.frames_encoded == encoded, "once the last viewer left, encoding stops"
