"""The arrow the synthetic sources offer as their cursor plane, as a guest's pointer image is."""

from __future__ import annotations

import numpy as np


def arrow(fill: tuple[int, int, int]) -> np.ndarray:
    """A 12x20 BGRA arrow of colour `fill` (BGR) with a black edge, its hotspot at the tip (0, 0)."""
    rows = np.arange(20)[:, None]
    cols = np.arange(12)[None, :]
    inside = (cols <= rows * 0.6) & (rows < 17) | (rows >= 17) & (cols < 4 - (rows - 17) * 2)
    padded = np.pad(inside, 1)
    core = inside & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    edge = inside & ~core
    image = np.zeros((20, 12, 4), dtype=np.uint8)
    image[inside] = (*fill, 255)
    image[edge] = (0, 0, 0, 255)
    return image
