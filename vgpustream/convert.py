"""Captured frames -> the encoder's yuv420p pictures, with as few copies as the format allows."""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vgpustream.formats import pixel_format
from vgpustream.sources.base import Frame

ENCODER_FORMAT = "yuv420p"
# Measured at 1080p on the project's 2-core machine kind: POINT 1.9 ms, FAST_BILINEAR 2.6 ms,
# BILINEAR 3.3 ms. The scaler runs at 1:1 here, so the choice only decides how chroma is
# subsampled; POINT keeps text edges as sharp as the others at half the cost.
INTERPOLATION = "POINT"


class FrameConverter:
    """Turns Frames of any supported DRM format into yuv420p av.VideoFrames of the same size.

    Formats PyAV can wrap are converted straight from the source's buffer; the others are
    copied once into a staging frame that is reused while the size and format stay the same.
    """

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()
        self._staging: av.VideoFrame | None = None

    def packed(self, frame: Frame) -> av.VideoFrame:
        """The frame's pixels as a packed-RGB av.VideoFrame (even width and height)."""
        fmt = pixel_format(frame.fourcc)
        # yuv420p needs even sizes: drop an odd last row or column rather than pad it
        pixels = frame.pixels[: frame.height & ~1, : frame.width & ~1]
        if fmt.wraps:
            return av.VideoFrame.from_numpy_buffer(pixels, format=fmt.av_format)
        return self._copy_to_staging(pixels, fmt.av_format)

    def convert(self, frame: Frame) -> av.VideoFrame:
        """The frame as the encoder's yuv420p picture."""
        return self._reformatter.reformat(self.packed(frame), format=ENCODER_FORMAT, interpolation=INTERPOLATION)

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
