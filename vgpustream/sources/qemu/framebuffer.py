"""The guest's display rebuilt from QEMU's Scanout (a whole picture) and Update (a damaged rectangle).

Every size, stride and rectangle QEMU passes on comes from the guest's mode and is checked before any
allocation or copy. Updates land in `pixels` under a lock, and their rectangles are kept as the damage;
`take` hands the capture thread the picture when something changed since it last asked: a copy of its
own, into which only the damage is copied again (the whole picture after a Scanout).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from vgpustream.errors import InvalidPlane, UnsupportedFormat
from vgpustream.media.formats import PixelFormat, fourcc_code, pixel_format
from vgpustream.sources.base import Frame, PlaneInfo, Rect

MAX_DAMAGE = 64
"""The most Update rectangles kept between two captures; past that, the whole picture counts as changed."""


def _pixman(bpp: int, kind: int, bits: tuple[int, int, int, int]) -> int:
    """pixman.h's PIXMAN_FORMAT(bpp, type, a, r, g, b), with `bits` = (a, r, g, b)."""
    a, r, g, b = bits
    return bpp << 24 | kind << 16 | a << 12 | r << 8 | g << 4 | b


_ARGB, _ABGR = 2, 3
PIXMAN_FORMATS: dict[int, str] = {
    _pixman(32, _ARGB, (0, 8, 8, 8)): "XR24",  # x8r8g8b8: what QEMU's VGA models produce
    _pixman(32, _ARGB, (8, 8, 8, 8)): "AR24",
    _pixman(32, _ABGR, (0, 8, 8, 8)): "XB24",
    _pixman(32, _ABGR, (8, 8, 8, 8)): "AB24",
    _pixman(24, _ARGB, (0, 8, 8, 8)): "RG24",
    _pixman(24, _ABGR, (0, 8, 8, 8)): "BG24",
    _pixman(16, _ARGB, (0, 5, 6, 5)): "RG16",
    _pixman(32, _ARGB, (0, 10, 10, 10)): "XR30",
    _pixman(32, _ARGB, (2, 10, 10, 10)): "AR30",
}
"""pixman format code (what Scanout and Update carry) → DRM fourcc of the same memory layout."""


def pixman_format(code: int) -> PixelFormat:
    name = PIXMAN_FORMATS.get(code)
    if name is None:
        raise UnsupportedFormat(f"unsupported pixman format {code:#010x} from QEMU")
    return pixel_format(fourcc_code(name))


@dataclass(frozen=True)
class Pixels:
    """Rows of pixels as QEMU sends them: `height` rows of `width` pixels, `stride` bytes apart."""

    width: int
    height: int
    stride: int
    code: int
    """The pixman format."""
    data: bytes

    def rows(self, max_edge: int) -> np.ndarray:
        """A (height, width, bytes per pixel) view, once the sizes are known to fit; else InvalidPlane."""
        fmt = pixman_format(self.code)
        width, height, stride, bpp = self.width, self.height, self.stride, fmt.bytes_per_pixel
        if not (1 <= width <= max_edge and 1 <= height <= max_edge):
            raise InvalidPlane(f"display size {width}x{height} is outside 1..{max_edge}")
        if stride < width * bpp:
            raise InvalidPlane(f"stride {stride} is less than width {width} x {bpp} bytes per pixel")
        if stride * (height - 1) + width * bpp > len(self.data):
            raise InvalidPlane(f"{height} rows of stride {stride} need more than the {len(self.data)} bytes sent")
        flat = np.frombuffer(self.data, dtype=np.uint8)
        return np.lib.stride_tricks.as_strided(flat, (height, width, bpp), (stride, bpp, 1), writeable=False)


class Framebuffer:
    """One display's current picture; written from the event loop, read by the capture thread."""

    def __init__(self, max_edge: int) -> None:
        self.max_edge = max_edge
        self.format: PixelFormat | None = None
        self.pixels: np.ndarray | None = None
        self.dirty = False
        self.damage: list[Rect] | None = None
        """The rectangles updated since the last `take`; None: the whole picture."""
        self.updates = 0
        self._lock = threading.Lock()
        self._shown: np.ndarray | None = None
        """The copy `take` hands out (the capture thread's: it is valid until the next `take`)."""

    @property
    def size(self) -> tuple[int, int] | None:
        return None if self.pixels is None else (self.pixels.shape[1], self.pixels.shape[0])

    def scanout(self, pixels: Pixels) -> None:
        """A whole new picture (a new mode, or the first one)."""
        picture = pixels.rows(self.max_edge).copy()
        fmt = pixman_format(pixels.code)
        with self._lock:
            self.format, self.pixels, self.dirty, self.damage = fmt, picture, True, None

    def update(self, x: int, y: int, pixels: Pixels) -> bool:
        """Paint one damaged rectangle at (x, y); False if it does not fit the current picture (a mode
        change QEMU announced no Scanout for), and the caller should ask for a new Scanout."""
        update = pixels.rows(self.max_edge)
        height, width = update.shape[:2]
        with self._lock:
            if self.pixels is None or pixman_format(pixels.code) != self.format:
                return False
            full_height, full_width = self.pixels.shape[:2]
            if x < 0 or y < 0 or x + width > full_width or y + height > full_height:
                return False
            self.pixels[y : y + height, x : x + width] = update
            self.dirty = True
            if self.damage is not None:
                self.damage = [*self.damage, Rect(x, y, width, height)] if len(self.damage) < MAX_DAMAGE else None
            self.updates += 1
        return True

    def clear(self) -> None:
        """The display is off: nothing to show until the next Scanout."""
        with self._lock:
            self.format, self.pixels, self.dirty, self.damage = None, None, False, None

    def take(self) -> Frame | None:
        """The picture if it changed since the last call (a copy, valid until the next call), else None."""
        with self._lock:
            if not self.dirty or self.pixels is None or self.format is None:
                return None
            damage, shown = self.damage, self._shown
            if damage is None or shown is None or shown.shape != self.pixels.shape:
                shown = self._shown = self.pixels.copy()
                damage = None
            else:
                for rect in damage:
                    shown[rect.slices] = self.pixels[rect.slices]
            self.dirty, self.damage = False, []
        return Frame(shown, self.format.fourcc, time.time(), None if damage is None else tuple(damage))

    def plane(self) -> PlaneInfo | None:
        """The picture described as a plane (packed rows, linear)."""
        with self._lock:
            if self.pixels is None or self.format is None:
                return None
            height, width, bpp = self.pixels.shape
            return PlaneInfo(self.format.fourcc, 0, width, height, width * bpp, width * bpp * height)
