"""libyuv's packed RGB -> I420 conversions (Debian's libyuv0), bound with ctypes under libyuv's own names.

libyuv names a pixel layout by its little-endian word: its "ARGB" is B, G, R, A in memory (DRM's
XRGB8888, FFmpeg's bgra), "ABGR" is R, G, B, A (rgba), "RGB24" is B, G, R (bgr24), "RAW" is R, G, B
(rgb24). Every `*ToI420` writes BT.601 limited-range I420, the matrix swscale
uses for yuv420p (luma matches it within 1), chroma from the mean of each 2x2 block, and returns 0
(-1 for bad arguments):

    int ARGBToI420(const uint8_t* src_argb, int src_stride_argb, uint8_t* dst_y, int dst_stride_y,
                   uint8_t* dst_u, int dst_stride_u, uint8_t* dst_v, int dst_stride_v, int width, int height);

ctypes lets go of the GIL during the call, so it runs beside the encoder thread.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

SONAME = "libyuv.so.0"
TO_I420 = {"bgra": "ARGBToI420", "rgba": "ABGRToI420", "bgr24": "RGB24ToI420", "rgb24": "RAWToI420"}
"""The conversion for each packed format (PyAV's name) that takes libyuv's. Not RGB565: libyuv widens
its 5 and 6 bits otherwise than swscale (luma up to 5 apart), and guests rarely use it."""
_ARGTYPES = [ctypes.c_void_p, ctypes.c_int] * 4 + [ctypes.c_int, ctypes.c_int]


def load() -> dict[str, Callable[..., int]] | None:
    """The conversions by PyAV format name; None where libyuv is not installed."""
    try:
        library = ctypes.CDLL(SONAME)
    except OSError:
        return None
    functions: dict[str, Callable[..., int]] = {}
    for av_format, name in TO_I420.items():
        function = getattr(library, name)
        function.argtypes, function.restype = _ARGTYPES, ctypes.c_int
        functions[av_format] = function
    return functions
