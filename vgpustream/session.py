"""A session: one display, one capture loop, one encoder, and the viewers watching it."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from aiortc import RTCIceServer

from vgpustream.encoder import EncoderSettings
from vgpustream.errors import Full, SourceUnavailable, VgpuStreamError, bounded
from vgpustream.input import InvalidInput, KeyEvent, parse_input
from vgpustream.pipeline import FramePipeline, StepResult
from vgpustream.sources.base import Source, SourceState
from vgpustream.viewer import Viewer, ViewerCallbacks

log = logging.getLogger(__name__)

KEYFRAME_MIN_INTERVAL = 0.5  # seconds between forced IDRs, however many viewers ask
ERROR_BACKOFF = 1.0


@dataclass
class SessionStats:
    frames_captured: int = 0
    frames_encoded: int = 0
    keyframes: int = 0
    repeated_keyframes: int = 0
    bytes_encoded: int = 0
    capture_errors: int = 0
    input_events: int = 0
    input_invalid: int = 0
    input_refused: int = 0


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

    def __init__(
        self,
        session_id: str,
        source_url: str,
        source: Source,
        encoder: EncoderSettings,
        max_viewers: int,
    ) -> None:
        self.id = session_id
        self.source_url = source_url
        self.source = source
        self.encoder_settings = encoder
        self.max_viewers = max_viewers
        self.stats = SessionStats()
        self.viewers: dict[str, Viewer] = {}
        self._attached: set[Viewer] = set()
        self._keyframes = KeyframePolicy(encoder.keyframe_interval)
        self._pipeline = FramePipeline(source, encoder)
        self._encode_ms: deque[float] = deque(maxlen=120)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"capture-{session_id}")
        self._task: asyncio.Task[None] | None = None
        self._callbacks = ViewerCallbacks(
            request_keyframe=self._keyframes.request,
            attach=self._attach,
            closed=self._forget,
            input=self._on_input,
        )

    async def start(self) -> None:
        await self.source.open()
        self._task = asyncio.create_task(self._capture_loop(), name=f"capture-{self.id}")

    async def stop(self) -> None:
        """Close every viewer, stop capturing, close the source. Waits for all of it."""
        await asyncio.gather(*(viewer.close() for viewer in list(self.viewers.values())))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
        await self.source.close()

    def new_viewer(self, ice_servers: list[RTCIceServer], can_control: bool = True) -> Viewer:
        """A viewer for this session (not yet connected); Full when there is no room."""
        if len(self.viewers) >= self.max_viewers:
            raise Full(f"session has its maximum of {self.max_viewers} viewers")
        viewer = Viewer(self._callbacks, ice_servers, can_control)
        self.viewers[viewer.id] = viewer
        return viewer

    def _forget(self, viewer: Viewer) -> None:
        self._attached.discard(viewer)
        self.viewers.pop(viewer.id, None)
        # a viewer that leaves mid-keystroke must not leave the key stuck down in the guest
        sink = self.source.input_sink
        for code in sorted(viewer.keys_down):
            if sink is not None:
                sink.send(KeyEvent(code=code, down=False))
        viewer.keys_down.clear()

    def request_keyframe(self) -> None:
        self._keyframes.request()

    def _attach(self, viewer: Viewer) -> None:
        self._attached.add(viewer)
        self._keyframes.request()

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
        period = 1.0 / self.encoder_settings.fps
        deadline = loop.time()
        while True:
            now = loop.time()
            keyframe = self._keyframes.due(now)
            try:
                result = await loop.run_in_executor(self._executor, self._pipeline.step, keyframe)
            except VgpuStreamError as exc:
                self._capture_failed(exc)
                await asyncio.sleep(ERROR_BACKOFF)
                deadline = loop.time()
                continue
            self._publish(result, now)
            deadline = max(deadline + period, loop.time())
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
        stats.repeated_keyframes += result.repeated
        if not result.packets:
            return
        stats.frames_encoded += 1
        self._encode_ms.append(result.encode * 1000)
        for packet in result.packets:
            stats.bytes_encoded += packet.size
            if packet.is_keyframe:
                stats.keyframes += 1
                self._keyframes.sent(now)
            for viewer in self._attached:
                viewer.queue.push(packet)

    def to_json(self) -> dict[str, Any]:
        encode_ms = sorted(self._encode_ms)
        return {
            "id": self.id,
            "source": self.source_url,
            "state": self.source.state.value,
            "planes": self.source.planes().to_json(),
            "stats": {
                **asdict(self.stats),
                "viewers": len(self.viewers),
                "encode_ms": round(encode_ms[len(encode_ms) // 2], 3) if encode_ms else None,
                "dropped_packets": sum(v.queue.dropped for v in self.viewers.values()),
            },
        }
