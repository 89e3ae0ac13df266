"""A still screen is sharp for every viewer, one that joins late too, and a join costs no new keyframe."""

from __future__ import annotations

import asyncio

import av
import pytest

from tests.pictures import psnr, synthetic_luma
from vgpustream.api.state import REGISTRY
from vgpustream.capture.pipeline import FramePipeline
from vgpustream.media.encoder import EncoderSettings
from vgpustream.media.stamp import luma, stamp_rows
from vgpustream.sources.synthetic import SyntheticSource, TextPage

SHARP_DB = 45.0  # luma PSNR of a picture whose fine text reads as the guest drew it


async def settled(stats, seconds: float = 0.5, timeout: float = 10.0) -> None:
    """Wait until the session stops refining the still picture (no frame encoded for `seconds`)."""
    for _ in range(int(timeout / seconds)):
        before = stats.frames_encoded
        await asyncio.sleep(seconds)
        if stats.frames_encoded == before:
            return
    raise AssertionError("the session never stopped encoding a still picture")


async def quality_seen(receiver, expected, width: int, timeout: float = 10.0) -> float:
    """Luma PSNR of the last frame `receiver` decoded, once that is sharp or after `timeout` seconds (a slow
    machine takes longer to receive and decode a replayed 1080p stream; the picture itself is still)."""
    for _ in range(int(timeout)):
        await receiver.receive_for(1.0)
        quality = psnr(luma(receiver.latest.picture), expected, skip_rows=stamp_rows(width))
        if quality >= SHARP_DB:
            break
    return quality


@pytest.mark.parametrize("width, height", [(1280, 720), (1920, 1080)])
async def test_a_viewer_joining_a_still_screen_sees_it_sharp(make_server, viewers, width, height):
    bitrate = EncoderSettings().bitrate  # the default: what a user gets
    server = await make_server(source=f"synthetic:{width}x{height}@30?pattern=text&still=1", bitrate=bitrate)
    watcher = await viewers(server)
    await watcher.next_frame()
    stats = server.app[REGISTRY].get("default").capture.stats
    await settled(stats)
    keyframes = stats.keyframes
    joiner = await viewers(server)
    expected = synthetic_luma(TextPage(width, height), 0)
    quality = await quality_seen(joiner, expected, width)
    assert quality >= SHARP_DB, f"a viewer joining a still {width}x{height} screen sees {quality:.1f} dB"
    assert stats.keyframes == keyframes, "the joiner was replayed the stream since the last IDR, not sent a new one"
    quality = await quality_seen(watcher, expected, width)
    assert quality >= SHARP_DB, f"the first viewer sees the still screen at {quality:.1f} dB"


class SteppedSource(SyntheticSource):
    """The synthetic text page, its picture advanced by the test instead of the clock."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height, pattern="text")
        self.number = 1

    def frame_number(self) -> int:
        return self.number


def test_a_picture_that_stops_is_sharp_within_a_second_and_motion_keeps_to_the_bitrate():
    """The worst case for a still picture: motion and an IDR spent the rate's buffer just before a new
    picture came and stood still. Its refinements may exceed the bitrate; moving pictures may not."""
    settings = EncoderSettings()  # the default bitrate
    fps, second = settings.fps, settings.bitrate // 8  # frames and bytes in a second
    width, height = 1920, 1080
    source = SteppedSource(width, height)
    pipeline = FramePipeline(source, settings)
    decoder = av.CodecContext.create("h264", "r")
    sizes: list[int] = []
    shown: list[av.VideoFrame] = []

    def move(frames: int) -> None:
        """A picture that changes and costs much more than the bitrate: an IDR every tenth frame."""
        for n in range(frames):
            source.number += 1
            result = pipeline.step(keyframe=n % 10 == 9)
            sizes.append(sum(packet.size for packet in result.packets))

    def within_bitrate(sizes: list[int]) -> bool:
        """What x264's rate buffer allows (the bitrate, and one second's worth of burst), and 10% more."""
        return sum(sizes) <= 1.1 * second * (len(sizes) / fps + 1)

    def stand(frames: int) -> None:
        for _ in range(frames):
            for packet in pipeline.step().packets:
                shown.extend(decoder.decode(packet))

    move(3 * fps)  # its last frame an IDR: the buffer is spent when the next picture comes
    assert within_bitrate(sizes), f"moving pictures took {sum(sizes)} bytes in 3 s"
    for packet in pipeline.step(keyframe=True).packets:  # the decoder starts at an IDR
        shown.extend(decoder.decode(packet))
    source.number = 0  # a new picture, which then stands still
    stand(1 + fps)  # the picture, then a second of refinements
    expected = synthetic_luma(TextPage(width, height), 0)
    quality = psnr(luma(shown[-1]), expected, skip_rows=stamp_rows(width))
    assert quality >= SHARP_DB, f"{quality:.1f} dB a second after the picture stopped"
    sizes.clear()
    move(3 * fps)  # motion again: back to the bitrate
    assert within_bitrate(sizes), f"motion after a refinement took {sum(sizes)} bytes in 3 s"
