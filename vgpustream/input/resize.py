"""A guest display that follows the viewer's window: requests checked against the source's limits, and paced.

Viewers ask on their input channel (`{"type": "resize", ...}`, control viewers only), the operator through
`PATCH /api/v1/sessions/{id}` (`{"display": {...}}`). A session's `Resizer` applies its viewers' requests
one at a time, at most one per RESIZE_INTERVAL: a request that arrives meanwhile replaces the one
waiting, so a window dragged at 100 Hz costs the guest a few mode changes, the last one the final size.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vgpustream.errors import UnsupportedOperation, VgpuStreamError, bounded
from vgpustream.input.events import MIN_DISPLAY_EDGE, ResizeEvent

log = logging.getLogger(__name__)

RESIZE_INTERVAL = 0.25
"""Seconds between two resizes applied to a session's guest."""
CSS_DPI = 96
"""The pixels per inch of a display whose devicePixelRatio is 1 (CSS's reference pixel)."""
MM_PER_INCH = 25.4
MAX_MM = 0xFFFF


def check_display(request: ResizeEvent, largest: tuple[int, int] | None) -> None:
    """Raise a clear error unless the source can take `request` (its largest display is `largest`)."""
    if largest is None:
        raise UnsupportedOperation("this source cannot change its display size")
    if not (MIN_DISPLAY_EDGE <= request.width <= largest[0] and MIN_DISPLAY_EDGE <= request.height <= largest[1]):
        raise VgpuStreamError(
            f"the display size must be within {MIN_DISPLAY_EDGE}x{MIN_DISPLAY_EDGE}..{largest[0]}x{largest[1]}"
        )


def physical_size_mm(width: int, height: int, scale: float) -> tuple[int, int]:
    """A display's size in millimetres at CSS_DPI times scale, so that the guest can pick its DPI."""
    per_mm = CSS_DPI * scale / MM_PER_INCH
    width_mm, height_mm = (min(MAX_MM, max(1, round(edge / per_mm))) for edge in (width, height))
    return width_mm, height_mm


@dataclass
class ResizeStats:
    resize_requests: int = 0
    resizes_applied: int = 0
    resizes_failed: int = 0


class Resizer:
    """Applies a session's resize requests in order of arrival, paced, the latest replacing one not yet applied."""

    def __init__(self, apply: Callable[[ResizeEvent], Awaitable[None]], interval: float = RESIZE_INTERVAL) -> None:
        self.stats = ResizeStats()
        self._apply = apply
        self._interval = interval
        self._waiting: ResizeEvent | None = None
        self._applied: ResizeEvent | None = None
        self._task: asyncio.Task[None] | None = None

    def request(self, request: ResizeEvent) -> None:
        """Take a viewer's request; it is applied within RESIZE_INTERVAL unless a newer one replaces it."""
        self.stats.resize_requests += 1
        self._waiting = request
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="resizer")

    async def close(self) -> None:
        """Stop applying; waits for a resize under way."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while self._waiting is not None:
            request, self._waiting = self._waiting, None
            if request == self._applied:
                continue
            try:
                await self._apply(request)
            except VgpuStreamError as exc:
                self.stats.resizes_failed += 1
                if self.stats.resizes_failed % 100 == 1:  # rate-limited: the first and then one in a hundred
                    log.info("resize to %dx%d refused: %s", request.width, request.height, bounded(exc.message, 120))
            else:
                self.stats.resizes_applied += 1
                self._applied = request
            await asyncio.sleep(self._interval)
