"""One-shot use of a source: its plane metadata, or one frame saved as PNG."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import av

from vgpustream.capture.convert import FrameConverter
from vgpustream.errors import SourceUnavailable
from vgpustream.sources import create_source
from vgpustream.sources.base import Frame, Source

FIRST_FRAME_TIMEOUT = 10.0
T = TypeVar("T")


async def use_source(source_url: str, use: Callable[[Source], T]) -> T:
    """Open the source at `source_url`, `use` it and close it, all on a thread of its own.

    The source is created here, on the event loop, which sources that are sent their frames (QEMU's
    display) keep receiving on while the thread waits for them.
    """
    source = create_source(source_url)

    def opened() -> T:
        source.open()
        try:
            return use(source)
        finally:
            source.close()

    return await asyncio.to_thread(opened)


async def planes_json(source_url: str) -> dict[str, Any]:
    def planes(source: Source) -> dict[str, Any]:
        # a source that is sent its frames (QEMU's display) knows its planes once the first has come
        first_frame(source)
        return {"source": source_url, "state": source.state.value, **source.planes().to_json()}

    return await use_source(source_url, planes)


def first_frame(source: Source, timeout: float = FIRST_FRAME_TIMEOUT) -> Frame:
    """The source's current picture, waiting up to `timeout` seconds for one."""
    deadline = time.monotonic() + timeout
    while (frame := source.next_frame()) is None:
        if time.monotonic() > deadline:
            raise SourceUnavailable(f"no frame from the source within {timeout:.0f} s")
        time.sleep(0.02)
    return frame


def png_bytes(picture: av.VideoFrame) -> bytes:
    rgb = picture.reformat(format="rgb24")
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = rgb.width, rgb.height, "rgb24"
    return b"".join(bytes(packet) for packet in codec.encode(rgb))


async def write_snapshot(source_url: str, output: str) -> None:
    def save(source: Source) -> None:
        Path(output).write_bytes(png_bytes(FrameConverter().packed(first_frame(source))))

    await use_source(source_url, save)
