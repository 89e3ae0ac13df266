"""DRM pixel formats (fourcc codes from include/uapi/drm/drm_fourcc.h) and what PyAV calls them."""

from __future__ import annotations

from dataclasses import dataclass

from vgpustream.errors import UnsupportedFormat

DRM_FORMAT_MOD_LINEAR = 0
DRM_FORMAT_MOD_INVALID = (1 << 56) - 1


def fourcc_code(text: str) -> int:
    """'XR24' -> 0x34325258, as drm_fourcc.h's fourcc_code() macro."""
    a, b, c, d = (ord(ch) for ch in text)
    return a | b << 8 | c << 16 | d << 24


def fourcc_text(code: int) -> str:
    """0x34325258 -> 'XR24'; unprintable bytes show as '?'."""
    chars = (code >> shift & 0xFF for shift in (0, 8, 16, 24))
    return "".join(chr(ch) if 0x20 < ch < 0x7F else "?" for ch in chars)


@dataclass(frozen=True)
class PixelFormat:
    """A packed RGB format: its fourcc, bytes per pixel, and the PyAV pixel format of the same layout.

    `wraps` says whether PyAV can wrap such pixels without a copy (VideoFrame.from_numpy_buffer).
    """

    name: str
    bytes_per_pixel: int
    av_format: str
    wraps: bool

    @property
    def fourcc(self) -> int:
        return fourcc_code(self.name)


# DRM formats name bits from the most significant end of a little-endian word, PyAV (FFmpeg) names
# bytes in memory order: XRGB8888 ("XR24") is stored B, G, R, X, which FFmpeg calls bgr0 / bgra.
PIXEL_FORMATS: dict[int, PixelFormat] = {
    f.fourcc: f
    for f in (
        PixelFormat("XR24", 4, "bgra", wraps=True),  # DRM_FORMAT_XRGB8888
        PixelFormat("AR24", 4, "bgra", wraps=True),  # DRM_FORMAT_ARGB8888
        PixelFormat("XB24", 4, "rgba", wraps=True),  # DRM_FORMAT_XBGR8888
        PixelFormat("AB24", 4, "rgba", wraps=True),  # DRM_FORMAT_ABGR8888
        PixelFormat("RG24", 3, "bgr24", wraps=True),  # DRM_FORMAT_RGB888: B, G, R in memory
        PixelFormat("BG24", 3, "rgb24", wraps=True),  # DRM_FORMAT_BGR888: R, G, B in memory
        PixelFormat("RG16", 2, "rgb565le", wraps=False),  # DRM_FORMAT_RGB565
        PixelFormat("XR30", 4, "x2rgb10le", wraps=False),  # DRM_FORMAT_XRGB2101010
        PixelFormat("AR30", 4, "x2rgb10le", wraps=False),  # DRM_FORMAT_ARGB2101010, alpha dropped
    )
}

DRM_FORMAT_XRGB8888 = fourcc_code("XR24")


def pixel_format(fourcc: int) -> PixelFormat:
    """The PixelFormat of a DRM fourcc, or UnsupportedFormat naming it."""
    try:
        return PIXEL_FORMATS[fourcc]
    except KeyError:
        raise UnsupportedFormat(f"unsupported DRM format {fourcc_text(fourcc)} ({fourcc:#010x})") from None
