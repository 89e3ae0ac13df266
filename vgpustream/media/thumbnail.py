"""Small pictures of a session's display, for the operator's session list.

The capture thread makes a `Thumbnail` from a frame it captured anyway (at the idle sample rate), so
a thumbnail never calls into a source. A request scales it to the size asked for and encodes a JPEG
off the event loop; `ThumbnailCache` keeps those JPEGs until the next thumbnail, so a flood of
requests costs one encode per size and picture.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

import av
from av.video.reformatter import VideoReformatter

THUMBNAIL_FORMAT = "yuv444p"
"""Full chroma, so that scaling it again for a request loses nothing; measured at 1280x720 -> 640x360 on
this project's 2-core machine kind (area averaging): 1.7 ms from XRGB, against 3.5 ms for rgb24."""
THUMBNAIL_EDGE = 640
"""Longest edge of the picture the capture loop keeps, and the largest size a request may ask for."""
DEFAULT_SIZE = 320
MIN_SIZE = 16
CACHED_SIZES = 8  # JPEGs kept per session (the latest picture at that many sizes)
JPEG_QUALITY = 4  # ffmpeg's mjpeg qscale: 2 is best, 31 worst; 4 keeps small text legible


@dataclass(frozen=True)
class Thumbnail:
    """A small yuv444p copy of a captured picture; `tag` is new for each one (it names it in ETags)."""

    picture: av.VideoFrame
    tag: str


def fitted(width: int, height: int, edge: int) -> tuple[int, int]:
    """A size of the same aspect with its longest edge at most `edge`, never larger than the original; even."""
    scale = min(1.0, edge / max(width, height))
    return max(2, round(width * scale) & ~1), max(2, round(height * scale) & ~1)


def shrink(picture: av.VideoFrame, edge: int, pixel_format: str) -> av.VideoFrame:
    """A new frame of `picture` scaled down to fit `edge` (area averaging keeps text readable).

    Safe from several threads at once on the same picture (requests for different sizes): each call
    scales with a reformatter of its own. `picture.reformat()` would use the frame's cached one, and
    FFmpeg's scaler shared between threads hangs or crashes the process.
    """
    width, height = fitted(picture.width, picture.height, edge)
    return VideoReformatter().reformat(picture, width=width, height=height, format=pixel_format, interpolation="AREA")


def make_thumbnail(picture: av.VideoFrame, tag: str) -> Thumbnail:
    """A thumbnail of a captured (packed RGB) picture."""
    return Thumbnail(shrink(picture, THUMBNAIL_EDGE, THUMBNAIL_FORMAT), tag)


def jpeg(thumbnail: Thumbnail, size: int) -> bytes:
    """The thumbnail as a JPEG whose longest edge is at most `size`."""
    picture = shrink(thumbnail.picture, size, "yuvj420p")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = picture.width, picture.height, "yuvj420p"
    codec.options = {"qmin": str(JPEG_QUALITY), "qmax": str(JPEG_QUALITY)}
    return b"".join(bytes(packet) for packet in [*codec.encode(picture), *codec.encode(None)])


class ThumbnailCache:
    """JPEGs of one session's latest thumbnail by size; each made once, on a worker thread."""

    def __init__(self) -> None:
        self.encodes = 0
        """JPEGs made so far (requests served from the cache make none)."""
        self._tag: str | None = None
        self._jpegs: OrderedDict[int, asyncio.Future[bytes]] = OrderedDict()

    async def jpeg(self, thumbnail: Thumbnail, size: int) -> bytes:
        if thumbnail.tag != self._tag:
            self._tag, self._jpegs = thumbnail.tag, OrderedDict()
        made = self._jpegs.get(size)
        if made is None:
            # requests for the same size wait for one encode rather than each starting their own
            made = self._jpegs[size] = asyncio.ensure_future(asyncio.to_thread(jpeg, thumbnail, size))
            self.encodes += 1
            while len(self._jpegs) > CACHED_SIZES:
                self._jpegs.popitem(last=False)
        self._jpegs.move_to_end(size)
        return await asyncio.shield(made)
