"""A session: one display, one capture loop, one encoder, and the viewers watching it."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from aiortc import RTCIceServer

from vgpustream.cursor import cursor_key, cursor_message, png_data_url
from vgpustream.errors import Full, SourceUnavailable, VgpuStreamError, bounded
from vgpustream.input import InvalidInput, KeyEvent, parse_input
from vgpustream.pipeline import FramePipeline, StepResult
from vgpustream.sources import create_source
from vgpustream.sources.base import Cursor, SourceState
from vgpustream.store import SessionSpec
from vgpustream.viewer import Viewer, ViewerCallbacks

log = logging.getLogger(__name__)

KEYFRAME_MIN_INTERVAL = 0.5  # seconds between forced IDRs, however many viewers ask
ERROR_BACKOFF = 1.0
RATE_WINDOW = 2.0  # seconds over which fps and bitrate are measured
ENCODE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class EncodeTimes:
    """A histogram of encode times (seconds) in fixed buckets, for /metrics."""

    bounds: tuple[float, ...] = ENCODE_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(ENCODE_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds


@dataclass
class SessionStats:
    frames_captured: int = 0
    frames_encoded: int = 0
    keyframes: int = 0
    frames_repeated: int = 0
    bytes_encoded: int = 0
    capture_errors: int = 0
    input_events: int = 0
    input_invalid: int = 0
    input_refused: int = 0


class RateMeter:
    """Events and bytes per second over the last RATE_WINDOW seconds."""

    def __init__(self) -> None:
        self._events: deque[tuple[float, int]] = deque()

    def add(self, now: float, size: int) -> None:
        self._events.append((now, size))
        while self._events and self._events[0][0] < now - RATE_WINDOW:
            self._events.popleft()

    def rates(self, now: float) -> tuple[float, float]:
        """(events per second, bits per second)."""
        recent = [size for t, size in self._events if t >= now - RATE_WINDOW]
        return len(recent) / RATE_WINDOW, sum(recent) * 8 / RATE_WINDOW


class KeyframePolicy:
    """Decides when the shared encoder must produce an IDR.

    A request (a viewer joining, a PLI/FIR, a viewer's queue overflowing) is served at the
    next frame, but at most one IDR per `min_interval`, so many viewers asking at once cost one
    keyframe; requests inside the window are kept, not dropped. Without requests an IDR comes
    every `interval` seconds, so a still screen stays decodable for late joiners.
    """

    def __init__(self, interval: float, min_interval: float = KEYFRAME_MIN_INTERVAL) -> None:
        self.interval = interval
        self.min_interval = min_interval
        self._requested = True
        self._last = -float("inf")

    def request(self) -> None:
        self._requested = True

    def due(self, now: float) -> bool:
        elapsed = now - self._last
        return (self._requested and elapsed >= self.min_interval) or elapsed >= self.interval

    def sent(self, now: float) -> None:
        self._requested = False
        self._last = now


class Session:
    """Captures one source at up to `fps`, encodes each changed frame once, fans packets out."""

    def __init__(self, spec: SessionSpec, viewer_idle_timeout: float = 30.0) -> None:
        self.spec = spec
        self.source = create_source(spec.source)
        self.stats = SessionStats()
        self.encode_times = EncodeTimes()
        self.viewers: dict[str, Viewer] = {}
        self.viewer_idle_timeout = viewer_idle_timeout
        self._attached: set[Viewer] = set()
        self._keyframes = KeyframePolicy(spec.encoder.keyframe_interval)
        self._pipeline = FramePipeline(self.source, spec.encoder)
        self._rate = RateMeter()
        self._cursor_image: tuple[int, str] | None = None
        self._opened = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"capture-{spec.id}")
        self._task: asyncio.Task[None] | None = None
        self._callbacks = ViewerCallbacks(
            request_keyframe=self._keyframes.request,
            attach=self._attach,
            closed=self._forget,
            input=self._on_input,
        )

    @property
    def id(self) -> str:
        return self.spec.id

    async def open_source(self) -> None:
        """Open the source now, raising its error (a new session should fail loudly)."""
        await self.source.open()
        self._opened = True

    def start(self) -> None:
        """Start capturing; a source not yet open is opened by the loop, retried until it opens."""
        self._task = asyncio.create_task(self._capture_loop(), name=f"capture-{self.id}")

    async def stop(self) -> None:
        """Close every viewer, stop capturing, close the source. Waits for all of it."""
        await asyncio.gather(*(viewer.close() for viewer in list(self.viewers.values())))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
        if self._opened:
            await self.source.close()

    async def update(self, spec: SessionSpec) -> None:
        """Take new settings (name, labels, encoder, viewer limit) without interrupting the stream."""
        if spec.encoder != self.spec.encoder:
            # on the capture thread, between two frames: the next one reopens the codec as an IDR
            await asyncio.get_running_loop().run_in_executor(
                self._executor, self._pipeline.encoder.reconfigure, spec.encoder
            )
            self._keyframes.interval = spec.encoder.keyframe_interval
        self.spec = spec

    def new_viewer(self, ice_servers: list[RTCIceServer], role: str, token_id: str | None = None) -> Viewer:
        """A viewer for this session (not yet connected); Full when there is no room."""
        if len(self.viewers) >= self.spec.max_viewers:
            raise Full(f"session has its maximum of {self.spec.max_viewers} viewers")
        viewer = Viewer(self._callbacks, ice_servers, role, token_id, self.viewer_idle_timeout)
        self.viewers[viewer.id] = viewer
        return viewer

    def request_keyframe(self) -> None:
        self._keyframes.request()

    def rates(self) -> tuple[float, float]:
        """Encoded frames per second and bits per second, over the last few seconds."""
        return self._rate.rates(time.monotonic())

    def _attach(self, viewer: Viewer) -> None:
        self._attached.add(viewer)
        self._keyframes.request()

    def _compositing(self) -> bool:
        """Whether the cursor is drawn into the picture: some viewer has no channel to get it on."""
        return any(viewer.channel is None for viewer in self._attached)

    def _send_cursor(self) -> None:
        """Tell viewers on a data channel where the cursor is, with its image when they lack it."""
        cursor = self.source.cursor()
        if cursor is None:
            return
        composited = self._compositing()
        shown = (cursor_key(cursor), composited)
        for viewer in self._attached:
            if viewer.cursor_shown == shown:
                continue
            with_image = cursor.image is not None and viewer.cursor_serial != cursor.serial
            image = self._cursor_png(cursor) if with_image else None
            if not viewer.send_message(cursor_message(cursor, image, composited)):
                continue  # its channel is not open yet: try again next frame
            viewer.cursor_shown = shown
            if with_image:
                viewer.cursor_serial = cursor.serial

    def _cursor_png(self, cursor: Cursor) -> str:
        if self._cursor_image is None or self._cursor_image[0] != cursor.serial:
            self._cursor_image = (cursor.serial, png_data_url(cursor.image))
        return self._cursor_image[1]

    def _forget(self, viewer: Viewer) -> None:
        self._attached.discard(viewer)
        self.viewers.pop(viewer.id, None)
        # a viewer that leaves mid-keystroke must not leave the key stuck down in the guest
        sink = self.source.input_sink
        for code in sorted(viewer.keys_down):
            if sink is not None:
                sink.send(KeyEvent(code=code, down=False))
        viewer.keys_down.clear()

    def _on_input(self, viewer: Viewer, message: str | bytes) -> None:
        try:
            event = parse_input(message)
        except InvalidInput:
            self.stats.input_invalid += 1
            return
        sink = self.source.input_sink
        if not viewer.can_control or sink is None:
            self.stats.input_refused += 1
            return
        self.stats.input_events += 1
        if isinstance(event, KeyEvent):
            (viewer.keys_down.add if event.down else viewer.keys_down.discard)(event.code)
        sink.send(event)

    async def _capture_loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            try:
                if not self._opened:
                    await self.open_source()
                now = loop.time()
                keyframe = self._keyframes.due(now)
                drawn = self.source.cursor() if self._compositing() else None
                result = await loop.run_in_executor(self._executor, self._pipeline.step, keyframe, drawn)
            except VgpuStreamError as exc:
                self._capture_failed(exc)
                await asyncio.sleep(ERROR_BACKOFF)
                deadline = loop.time()
                continue
            self._publish(result, now)
            self._send_cursor()
            deadline = max(deadline + 1.0 / self.spec.encoder.fps, loop.time())
            await asyncio.sleep(deadline - loop.time())

    def _capture_failed(self, exc: VgpuStreamError) -> None:
        self.stats.capture_errors += 1
        if isinstance(exc, SourceUnavailable):
            self.source.state = SourceState.LOST
        # rate-limited: the first error and then one in a hundred
        if self.stats.capture_errors % 100 == 1:
            log.warning(
                "session %s: capture failed (%d so far): %s",
                self.id,
                self.stats.capture_errors,
                bounded(exc.message, 200),
            )

    def _publish(self, result: StepResult, now: float) -> None:
        stats = self.stats
        stats.frames_captured += result.captured
        stats.frames_repeated += result.repeated
        if not result.packets:
            return
        stats.frames_encoded += 1
        self.encode_times.observe(result.encode)
        self._rate.add(time.monotonic(), sum(packet.size for packet in result.packets))
        for packet in result.packets:
            stats.bytes_encoded += packet.size
            if packet.is_keyframe:
                stats.keyframes += 1
                self._keyframes.sent(now)
            for viewer in self._attached:
                viewer.queue.push(packet)

    def planes_json(self) -> dict[str, Any]:
        """Live plane metadata, the pointer, the EDID limits and the source's state."""
        if not self._opened:
            return {"state": self.source.state.value, "primary": None, "cursor": None, "pointer": None, "edid": None}
        cursor = self.source.cursor()
        limits = self.source.display_limits()
        pointer = None
        if cursor is not None:
            pointer = {
                "x": cursor.x,
                "y": cursor.y,
                "hot_x": cursor.hot_x,
                "hot_y": cursor.hot_y,
                "visible": cursor.visible,
            }
        return {
            "state": self.source.state.value,
            **self.source.planes().to_json(),
            "pointer": pointer,
            "edid": {"max_xres": limits[0], "max_yres": limits[1]} if limits else None,
        }

    def to_json(self) -> dict[str, Any]:
        spec = self.spec
        fps, bitrate = self.rates()
        count = self.encode_times.counts
        encoded = sum(count)
        return {
            "id": spec.id,
            "source": spec.source,
            "name": spec.name,
            "labels": spec.labels,
            "encoder": dataclasses.asdict(spec.encoder),
            "max_viewers": spec.max_viewers,
            "state": self.source.state.value,
            "planes": self.source.planes().to_json() if self._opened else {"primary": None, "cursor": None},
            "stats": {
                **asdict(self.stats),
                "viewers": len(self.viewers),
                "fps": round(fps, 2),
                "bitrate": round(bitrate),
                "encode_ms": round(self.encode_times.total / encoded * 1000, 3) if encoded else None,
                "dropped_packets": sum(v.queue.dropped for v in self.viewers.values()),
            },
        }
