"""One-shot use of a source: its plane metadata, or one frame saved as PNG."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import av

from vgpustream.convert import FrameConverter
from vgpustream.errors import SourceUnavailable
from vgpustream.sources import create_source
from vgpustream.sources.base import Frame, Source

FIRST_FRAME_TIMEOUT = 10.0


async def planes_json(source_url: str) -> dict[str, Any]:
    source = create_source(source_url)
    await source.open()
    try:
        # a source that is sent its frames (QEMU's display) knows its planes once the first has come
        await asyncio.get_running_loop().run_in_executor(None, first_frame, source)
        return {"source": source_url, "state": source.state.value, **source.planes().to_json()}
    finally:
        await source.close()


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
    source = create_source(source_url)
    await source.open()
    try:
        # off the event loop, which sources that are pushed frames (QEMU's display) need to receive them
        frame = await asyncio.get_running_loop().run_in_executor(None, first_frame, source)
        Path(output).write_bytes(png_bytes(FrameConverter().packed(frame)))
    finally:
        await source.close()
