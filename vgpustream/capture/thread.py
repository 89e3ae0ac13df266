"""A session's capture thread: the one thread that calls into its source, and the Snapshot it takes after each step.

Every call into a source (open, each frame through the pipeline's capture stage, planes, cursor, resize,
close) runs here, never on the event loop, so a stalled device stalls only its own session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from vgpustream.capture.pipeline import Capture, FramePipeline, StepResult
from vgpustream.input.events import ResizeEvent
from vgpustream.input.resize import check_display
from vgpustream.media.thumbnail import Thumbnail
from vgpustream.sources.base import Cursor, Frame, Planes, Source, SourceState

T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot:
    """What the source said after the last step; immutable, so any thread may read it."""

    state: SourceState
    planes: Planes
    cursor: Cursor | None = None
    display_limits: tuple[int, int] | None = None
    """The largest display the guest can be asked for (EDID max_xres, max_yres), where known."""
    display_range: tuple[int, int] | None = None
    """The largest display size a resize may ask for; None where the source cannot resize."""
    error: str | None = None
    """Why the last step failed (bounded, printable); None once a step succeeds."""
    thumbnail: Thumbnail | None = None
    """A small copy of a recent picture (at most a sample interval old)."""


class CaptureThread:
    """Owns a session's source and the thread every call into it runs on; each method waits for its call."""

    def __init__(self, source: Source, pipeline: FramePipeline, name: str) -> None:
        self.source = source
        self.opened = False
        self._pipeline = pipeline
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"capture-{name}")

    async def open(self) -> Snapshot:
        """Open the source; raises its error."""
        return await self._run(self._open)

    async def capture(self, composite: bool) -> tuple[Capture, Snapshot]:
        """The capture stage of one frame (the cursor drawn in if `composite`), then what the source says now."""
        return await self._run(self._capture, composite)

    async def sample(self) -> tuple[StepResult, Snapshot]:
        """Nobody watches: a capture only, then what the source says now."""
        return await self._run(self._sample)

    async def show(self, frame: Frame) -> Capture:
        """The capture stage of a picture of our own (NO SIGNAL) instead of the source's."""
        return await self._run(self._pipeline.show, frame)

    async def resize(self, request: ResizeEvent) -> None:
        """Ask the guest for another display size; a clear error if it cannot."""
        await self._run(self._resize, request)

    async def close(self) -> None:
        """Close the source (if it was opened)."""
        if self.opened:
            await self._run(self.source.close)

    def shutdown(self) -> None:
        """End the thread (blocks until it is idle)."""
        self._executor.shutdown()

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    # on the capture thread

    def _open(self) -> Snapshot:
        self.source.open()
        self.opened = True
        return self._look()

    def _look(self) -> Snapshot:
        source = self.source
        return Snapshot(
            source.state,
            source.planes(),
            source.cursor(),
            source.display_limits(),
            source.display_range(),
            thumbnail=self._pipeline.thumbnail,
        )

    def _resize(self, request: ResizeEvent) -> None:
        check_display(request, self.source.display_range())
        self.source.resize(request.width, request.height, request.scale)

    def _capture(self, composite: bool) -> tuple[Capture, Snapshot]:
        return self._pipeline.capture(self.source.cursor() if composite else None), self._look()

    def _sample(self) -> tuple[StepResult, Snapshot]:
        return self._pipeline.sample(), self._look()
