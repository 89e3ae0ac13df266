"""Comparing decoded pictures with what the synthetic source drew."""

from __future__ import annotations

import numpy as np

from vgpustream.sources.synthetic import SyntheticSource


def synthetic_luma(source: SyntheticSource, number: int) -> np.ndarray:
    """The luma (BT.601, limited range, as x264 gets it from swscale) of frame `number`."""
    source.render(number, pointer=None)
    bgr = source.pixels[:, :, :3].astype(np.float32)
    return 16 + (65.481 * bgr[:, :, 2] + 128.553 * bgr[:, :, 1] + 24.966 * bgr[:, :, 0]) / 255


def psnr(decoded: np.ndarray, expected: np.ndarray, skip_rows: int) -> float:
    """PSNR in dB of two lumas, ignoring the top `skip_rows` rows (the stamp's time differs)."""
    diff = decoded[skip_rows:].astype(np.float32) - expected[skip_rows:]
    mse = float(np.mean(diff * diff))
    return 10 * np.log10(255 * 255 / max(mse, 1e-9))
