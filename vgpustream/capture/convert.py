"""Captured frames -> the encoder's yuv420p pictures, with as few copies as the format allows."""

from __future__ import annotations

from collections.abc import Callable

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vgpustream.media import libyuv
from vgpustream.media.formats import PixelFormat, pixel_format
from vgpustream.sources.base import Frame, Rect

ENCODER_FORMAT = "yuv420p"
# Measured at 1080p on the project's 2-core machine kind: POINT 1.9 ms, FAST_BILINEAR 2.6 ms,
# BILINEAR 3.3 ms. The scaler runs at 1:1 here, so the choice only decides how chroma is
# subsampled; POINT keeps text edges as sharp as the others at half the cost.
INTERPOLATION = "POINT"
LIBYUV = libyuv.load()
"""libyuv's conversions where it is installed: measured on the same machine kind, XRGB8888 -> yuv420p
took 0.21 ms at 1280x720 and 0.5 ms at 1920x1080, against 1.7 and 4.1 ms for swscale (POINT)."""
RING = 3
"""The pictures libyuv writes in turn. The encoder may still hold the last one (it encodes it again to
refine it, or with a moved cursor) and the capture loop hands over one more while it encodes: the third
is free to write (x264 copies a picture in when it is given it, and keeps none of ours)."""


class FrameConverter:
    """Turns Frames of any supported DRM format into yuv420p av.VideoFrames of the same size.

    libyuv converts the formats it knows straight from the source's buffer into RING pictures in turn,
    and only what changed since a picture was last written: the frames' damage since then (everything
    where a frame has none, after a change of size, and the first time). swscale converts the others (and
    all where libyuv is missing, or if `use_libyuv` is False): formats PyAV can wrap straight from the
    buffer, the others copied once into a staging frame that is reused while the size and format stay
    the same; each of its conversions is a new frame. Either way the encoder may still hold the picture
    before (and the capture loop the one before that, see RING).
    """

    def __init__(self, use_libyuv: bool = True) -> None:
        self._reformatter = VideoReformatter()
        self._staging: av.VideoFrame | None = None
        self._libyuv = LIBYUV if use_libyuv else None
        self._ring: list[av.VideoFrame] = []
        self._stale: list[list[Rect] | None] = []
        """For each picture of the ring, the rectangles changed since it was written (None: all of it)."""
        self._turn = 0

    def packed(self, frame: Frame) -> av.VideoFrame:
        """The frame's pixels as a packed-RGB av.VideoFrame (even width and height)."""
        return self._packed(_even(frame), pixel_format(frame.fourcc))

    def convert(self, frame: Frame) -> av.VideoFrame:
        """The frame as the encoder's yuv420p picture."""
        fmt = pixel_format(frame.fourcc)
        to_i420 = self._libyuv.get(fmt.av_format) if self._libyuv is not None else None
        pixels = _even(frame)
        if to_i420 is not None and pixels.strides[1:] == (fmt.bytes_per_pixel, 1):
            return self._to_ring(to_i420, pixels, frame.damage)
        self.forget()  # the ring missed this frame's changes
        return self._reformatter.reformat(self._packed(pixels, fmt), format=ENCODER_FORMAT, interpolation=INTERPOLATION)

    def forget(self) -> None:
        """Let the next conversions write whole pictures: a frame went by that they did not see."""
        self._stale = [None] * len(self._ring)

    def _to_ring(
        self, to_i420: Callable[..., int], pixels: np.ndarray, damage: tuple[Rect, ...] | None
    ) -> av.VideoFrame:
        """The next picture of the ring brought up to `pixels`: what changed since it was written converted again."""
        height, width = pixels.shape[:2]
        if not self._ring or (self._ring[0].width, self._ring[0].height) != (width, height):
            self._ring = [av.VideoFrame(width, height, ENCODER_FORMAT) for _ in range(RING)]
            self._stale = [None] * RING
        self._stale = [None if stale is None or damage is None else stale + list(damage) for stale in self._stale]
        picture, stale = self._ring[self._turn], self._stale[self._turn]
        self._stale[self._turn] = []
        self._turn = (self._turn + 1) % RING
        for rect in [Rect(0, 0, width, height)] if stale is None else stale:
            _to_i420(to_i420, pixels, picture, _even_rect(rect, width, height))
        return picture

    def _packed(self, pixels: np.ndarray, fmt: PixelFormat) -> av.VideoFrame:
        if fmt.wraps:
            return av.VideoFrame.from_numpy_buffer(pixels, format=fmt.av_format)
        return self._copy_to_staging(pixels, fmt.av_format)

    def _copy_to_staging(self, pixels: np.ndarray, av_format: str) -> av.VideoFrame:
        height, width = pixels.shape[:2]
        staging = self._staging
        shape = (width, height, av_format)
        if staging is None or (staging.width, staging.height, staging.format.name) != shape:
            staging = self._staging = av.VideoFrame(width, height, av_format)
        plane = staging.planes[0]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(height, plane.line_size)
        rows[:, : pixels.shape[1] * pixels.shape[2]] = pixels.reshape(height, -1)
        return staging


def _even(frame: Frame) -> np.ndarray:
    """The frame's pixels, less an odd last row or column: yuv420p needs even sizes (rather than pad them)."""
    return frame.pixels[: frame.height & ~1, : frame.width & ~1]


def _even_rect(rect: Rect, width: int, height: int) -> Rect:
    """`rect` grown to even edges (a chroma sample covers 2x2 pixels) and clipped to width x height."""
    x, y = max(0, rect.x) & ~1, max(0, rect.y) & ~1
    right, bottom = min(width, (rect.x + rect.width + 1) & ~1), min(height, (rect.y + rect.height + 1) & ~1)
    return Rect(x, y, max(0, right - x), max(0, bottom - y))


def _to_i420(to_i420: Callable[..., int], pixels: np.ndarray, picture: av.VideoFrame, rect: Rect) -> None:
    """Convert `rect` (even edges) of `pixels` into the same place of `picture`."""
    if rect.area == 0:
        return
    y, u, v = picture.planes
    source = pixels.ctypes.data + rect.y * pixels.strides[0] + rect.x * pixels.strides[1]
    luma = y.buffer_ptr + rect.y * y.line_size + rect.x
    offset_u = rect.y // 2 * u.line_size + rect.x // 2
    offset_v = rect.y // 2 * v.line_size + rect.x // 2
    status = to_i420(source, pixels.strides[0], luma, y.line_size, u.buffer_ptr + offset_u, u.line_size,
                     v.buffer_ptr + offset_v, v.line_size, rect.width, rect.height)  # fmt: skip
    if status != 0:
        raise ValueError(f"libyuv refused a {rect.width}x{rect.height} rectangle")
