"""The picture viewers see while a display is off: dark, with NO SIGNAL written across it."""

from __future__ import annotations

import time

import numpy as np

from vgpustream.media.formats import DRM_FORMAT_XRGB8888
from vgpustream.sources.base import Frame

# 5x7 bitmaps of the letters needed, one string per row
_GLYPHS = {
    "N": ["X...X", "XX..X", "X.X.X", "X..XX", "X...X", "X...X", "X...X"],
    "O": [".XXX.", "X...X", "X...X", "X...X", "X...X", "X...X", ".XXX."],
    "S": [".XXXX", "X....", "X....", ".XXX.", "....X", "....X", "XXXX."],
    "I": ["XXXXX", "..X..", "..X..", "..X..", "..X..", "..X..", "XXXXX"],
    "G": [".XXXX", "X....", "X....", "X.XXX", "X...X", "X...X", ".XXXX"],
    "A": [".XXX.", "X...X", "X...X", "XXXXX", "X...X", "X...X", "X...X"],
    "L": ["X....", "X....", "X....", "X....", "X....", "X....", "XXXXX"],
    " ": ["....."] * 7,
}
BACKGROUND = 0x18
INK = 0xA0


def no_signal(width: int = 640, height: int = 480) -> np.ndarray:
    """A BGRX picture saying NO SIGNAL, as (height, width, 4) uint8."""
    text = "NO SIGNAL"
    mask = np.hstack([np.array([[c == "X" for c in row] + [False] for row in _GLYPHS[ch]]) for ch in text])
    scale = max(1, min(width // (mask.shape[1] + 4), height // 20))
    big = np.kron(mask, np.ones((scale, scale), dtype=bool))
    picture = np.full((height, width, 4), BACKGROUND, dtype=np.uint8)
    top, left = (height - big.shape[0]) // 2, (width - big.shape[1]) // 2
    picture[top : top + big.shape[0], left : left + big.shape[1]][big] = INK
    return picture


def no_signal_frame() -> Frame:
    """The placeholder as a Frame captured now."""
    return Frame(pixels=no_signal(), fourcc=DRM_FORMAT_XRGB8888, captured_at=time.time())
