"""Captured frames to the encoder's yuv420p: libyuv where it has the format (what changed), swscale otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from vgpustream.capture.convert import LIBYUV, RING, FrameConverter
from vgpustream.media.formats import PIXEL_FORMATS, fourcc_code
from vgpustream.media.stamp import luma
from vgpustream.sources.base import Frame, Rect
from vgpustream.sources.desktop import Desktop
from vgpustream.sources.pattern import ViewerInput


def picture(width: int, height: int, bytes_per_pixel: int) -> np.ndarray:
    """Random pixels, constant over each 2x2 block so that any chroma subsampling gives the same."""
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 256, size=((height + 1) // 2, (width + 1) // 2, bytes_per_pixel), dtype=np.uint8)
    return blocks.repeat(2, axis=0).repeat(2, axis=1)[:height, :width]


def planes(frame) -> list[np.ndarray]:
    return [luma(frame).astype(int)] + [
        np.frombuffer(frame.planes[i], np.uint8).reshape(frame.height // 2, -1)[:, : frame.width // 2].astype(int)
        for i in (1, 2)
    ]


def test_libyuv_is_there():
    assert LIBYUV is not None, "libyuv0 is installed where vgpustream runs (.ci/run, deploy/Dockerfile)"


@pytest.mark.parametrize("name", ["XR24", "AR24", "XB24", "AB24", "RG24", "BG24", "RG16", "XR30"])
def test_each_format_converts_as_swscale_does(name):
    fourcc = fourcc_code(name)
    frame = Frame(pixels=picture(321, 241, PIXEL_FORMATS[fourcc].bytes_per_pixel), fourcc=fourcc, captured_at=0)
    converted, reference = FrameConverter().convert(frame), FrameConverter(use_libyuv=False).convert(frame)
    assert (converted.width, converted.height, converted.format.name) == (320, 240, "yuv420p")
    for ours, theirs in zip(planes(converted), planes(reference), strict=True):
        assert np.abs(ours - theirs).max() <= 1


def test_a_window_into_a_wider_buffer_converts_without_a_copy_and_each_picture_is_its_own():
    page = picture(640, 240, 4)
    converter = FrameConverter()
    first = converter.convert(Frame(pixels=page[:, 100:420], fourcc=fourcc_code("XR24"), captured_at=0))
    kept = [plane.copy() for plane in planes(first)]
    second = converter.convert(Frame(pixels=page[:, 200:520], fourcc=fourcc_code("XR24"), captured_at=0))
    reference = FrameConverter(use_libyuv=False).convert(
        Frame(pixels=page[:, 100:420].copy(), fourcc=fourcc_code("XR24"), captured_at=0)
    )
    assert all(np.abs(a - b).max() <= 1 for a, b in zip(planes(first), planes(reference), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(planes(first), kept, strict=True)), (
        "the next conversion left it alone"
    )
    assert not np.array_equal(planes(second)[0], kept[0])


def test_converting_only_the_damage_gives_the_picture_a_whole_conversion_gives():
    desktop = Desktop(642, 362, 30)  # windows with odd edges: their damage grows to even ones
    converter, whole = FrameConverter(), FrameConverter()
    xr24 = fourcc_code("XR24")
    for number in [*range(0, 200, 3), *range(300, 360)]:  # typing, a scroll and a drag among them
        damage = desktop.draw(number, ViewerInput(typed="ab\n" if number % 9 == 0 else ""))
        ours = converter.convert(Frame(desktop.pixels, xr24, 0, damage))
        theirs = whole.convert(Frame(desktop.pixels, xr24, 0))
        assert all(np.array_equal(a, b) for a, b in zip(planes(ours), planes(theirs), strict=True)), number
    # a frame whose damage leaves out what changed is converted as it says: the comparison can fail
    desktop.pixels[100:140, 200:260] = 0
    ours = converter.convert(Frame(desktop.pixels, xr24, 0, (Rect(0, 0, 8, 8),)))
    assert not np.array_equal(planes(ours)[0], planes(whole.convert(Frame(desktop.pixels, xr24, 0)))[0])
    converter.forget()  # a frame went by unseen: every picture of the ring is written whole
    for _ in range(RING):
        ours = converter.convert(Frame(desktop.pixels, xr24, 0, (Rect(0, 0, 8, 8),)))
        assert np.array_equal(planes(ours)[0], planes(whole.convert(Frame(desktop.pixels, xr24, 0)))[0])
