"""A still screen is sharp for every viewer, one that joins late too, and a join costs no new keyframe."""

from __future__ import annotations

import asyncio

import pytest

from tests.pictures import psnr, synthetic_luma
from vgpustream.api.state import REGISTRY
from vgpustream.encoder import EncoderSettings
from vgpustream.sources.synthetic import SyntheticSource
from vgpustream.stamp import luma, stamp_rows

SHARP_DB = 45.0  # luma PSNR of a picture whose fine text reads as the guest drew it


async def settled(stats, seconds: float = 0.5, timeout: float = 10.0) -> None:
    """Wait until the session stops refining the still picture (no frame encoded for `seconds`)."""
    for _ in range(int(timeout / seconds)):
        before = stats.frames_encoded
        await asyncio.sleep(seconds)
        if stats.frames_encoded == before:
            return
    raise AssertionError("the session never stopped encoding a still picture")


@pytest.mark.parametrize("width, height", [(1280, 720), (1920, 1080)])
async def test_a_viewer_joining_a_still_screen_sees_it_sharp(make_server, viewers, width, height):
    bitrate = EncoderSettings().bitrate  # the default: what a user gets
    server = await make_server(source=f"synthetic:{width}x{height}@30?still=1", bitrate=bitrate)
    watcher = await viewers(server)
    await watcher.next_frame()
    stats = server.app[REGISTRY].get("default").capture.stats
    await settled(stats)
    keyframes = stats.keyframes
    joiner = await viewers(server)
    await joiner.receive_for(1.0)
    expected = synthetic_luma(SyntheticSource(width, height, still=True), 0)
    quality = psnr(luma(joiner.latest.picture), expected, skip_rows=stamp_rows(width))
    assert quality >= SHARP_DB, f"a viewer joining a still {width}x{height} screen sees {quality:.1f} dB"
    assert stats.keyframes == keyframes, "the joiner was replayed the stream since the last IDR, not sent a new one"
    await watcher.receive_for(0.5)
    quality = psnr(luma(watcher.latest.picture), expected, skip_rows=stamp_rows(width))
    assert quality >= SHARP_DB, f"the first viewer sees the still screen at {quality:.1f} dB"
