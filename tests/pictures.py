"""Comparing decoded pictures with what a source drew."""

from __future__ import annotations

import av
import numpy as np

from vgpustream.media.stamp import luma
from vgpustream.sources.synthetic import TextPage


def synthetic_luma(page: TextPage, number: int) -> np.ndarray:
    """The luma (BT.601, limited range, as x264 gets it from swscale) of picture `number` of the text page."""
    page.render(number, pointer=None)
    bgr = page.pixels[:, :, :3].astype(np.float32)
    return 16 + (65.481 * bgr[:, :, 2] + 128.553 * bgr[:, :, 1] + 24.966 * bgr[:, :, 0]) / 255


def psnr(decoded: np.ndarray, expected: np.ndarray, skip_rows: int) -> float:
    """PSNR in dB of two lumas, ignoring the top `skip_rows` rows (the stamp's time differs)."""
    diff = decoded[skip_rows:].astype(np.float32) - expected[skip_rows:]
    mse = float(np.mean(diff * diff))
    return 10 * np.log10(255 * 255 / max(mse, 1e-9))


def thumbnail_luma(pixels: np.ndarray, pixel_format: str, width: int, height: int) -> np.ndarray:
    """The full-range luma of a picture scaled down as a thumbnail is: to fit 640 first, then to width x height."""
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format=pixel_format)
    scale = min(1.0, 640 / max(picture.width, picture.height))
    first = (round(picture.width * scale) & ~1, round(picture.height * scale) & ~1)
    picture = picture.reformat(width=first[0], height=first[1], format="yuv444p", interpolation="AREA")
    return luma(picture.reformat(width=width, height=height, format="yuvj420p", interpolation="AREA"))
