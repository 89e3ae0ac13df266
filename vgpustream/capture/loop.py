"""A session's capture loop: the one owner of its source, capture thread, pacing and keyframe policy.

While nobody watches (no viewer, no recording) the loop only samples the source, `sample_interval`
seconds apart, to keep its state, planes and thumbnail current: nothing is converted or encoded. A
keyframe request (the first viewer's) wakes it at once, and the next step is an IDR of the current picture.

The thread boundary: every call into the source (open, next frame, planes, cursor, close) and the
conversion run on the loop's capture thread, the encoder on its encoder thread, never on the event
loop, so a stalled device stalls only its own session. The two overlap: frame N+1 is captured and
converted while frame N is encoded, one frame in flight, handed over and published in order; what to
encode (a keyframe, a repeat for the cursor or a refinement) is decided on the encoder thread once the
frame before has been encoded. After each step the loop publishes a `Snapshot`, which the API and the
metrics read instead of asking the source; the loop's counters change only on the event loop.

Its parts, one job each: `CaptureThread` (thread.py) owns the source and the thread every call into it runs
on; `RunningRenditions` (running.py) keeps which renditions run and when each needs a keyframe;
`CaptureCounters` (stats.py) counts the steps. The loop itself paces the steps and hands each frame from
the capture thread to the encoder thread and out to its Output.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Protocol, TypeVar

from vgpustream.capture.pipeline import Capture, Decisions, Encoded, FramePipeline, StepResult
from vgpustream.capture.running import RenditionState, RunningRenditions
from vgpustream.capture.stats import CaptureCounters, CaptureStats, Histogram
from vgpustream.capture.thread import CaptureThread, Snapshot
from vgpustream.errors import SourceUnavailable, VgpuStreamError, bounded, printable
from vgpustream.input.clipboard import GuestClipboard
from vgpustream.input.events import ResizeEvent
from vgpustream.input.microphone import MicrophoneIn
from vgpustream.media.encoder import EncoderSettings
from vgpustream.media.renditions import Rendition
from vgpustream.media.sound import SoundOut
from vgpustream.sources.base import Cursor, Heads, InputSink, Planes, Source, SourceState
from vgpustream.sources.common.placeholder import no_signal_frame

log = logging.getLogger(__name__)

ERROR_BACKOFF = 1.0  # seconds before a failed open or capture is tried again
MAX_ERROR_CHARS = 200  # of a capture error's message kept for the API and viewers
T = TypeVar("T")


class Output(Protocol):
    """Where a capture loop delivers each step: the session's audience."""

    def composites_cursor(self) -> bool:
        """Whether the cursor must be drawn into the picture (some viewer cannot be sent it)."""
        ...

    def renditions(self) -> set[Rendition]:
        """The renditions someone (a viewer, a recording) takes; none: nothing is encoded."""
        ...

    def publish(self, encoded: dict[Rendition, Encoded], cursor: Cursor | None) -> None:
        """Deliver what each rendition made of one step (possibly nothing) and the cursor as it is now."""
        ...

    def show_state(self, state: SourceState, error: str | None, resizable: bool) -> None:
        """The source's state, last error and whether it takes resizes after each step, failed or not
        (most often unchanged)."""
        ...


class CaptureLoop:
    """Captures one source at up to `fps`, encodes each changed frame once, and hands it to an Output."""

    def __init__(
        self, source: Source, settings: EncoderSettings, name: str, sample_interval: float = 1.0, *, paced: bool = True
    ) -> None:
        """`paced=False`: no wait between steps, however high the frame rate (the pipeline bench's flat-out run)."""
        self.settings = settings
        self._counters = CaptureCounters()
        self.snapshot = Snapshot(state=source.state, planes=Planes(primary=None))
        self.input_sink: InputSink | None = source.input_sink
        """Where viewers' input goes; an event-loop object of its own (the source is not called for it)."""
        self.sound: SoundOut | None = source.sound
        """Where the guest's sound comes out; an event-loop object too."""
        self.clipboard: GuestClipboard | None = source.clipboard
        """The guest's clipboard; an event-loop object too."""
        self.microphone: MicrophoneIn | None = source.microphone
        """Where viewers' microphone sound goes into the guest; an event-loop object too."""
        self.heads: Heads | None = source.heads
        """The display heads of the VM; an event-loop object too."""
        self._running = RunningRenditions(settings.keyframe_interval)
        self._pipeline = FramePipeline(source, settings, thumbnail_interval=sample_interval)
        self._thread = CaptureThread(source, self._pipeline, name)
        self._sample_interval = sample_interval
        self._paced = paced
        self._idle = False
        self._wakeup = asyncio.Event()
        self._no_signal_shown = False
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"encode-{name}")
        self._encoding: asyncio.Task[None] | None = None
        """The frame being encoded and then published, while the next one is captured."""
        self._task: asyncio.Task[None] | None = None
        self._name = name

    @property
    def epoch(self) -> float:
        """The origin (wall-clock seconds) of the clock the packets are timed on."""
        return self._pipeline.epoch

    @property
    def stats(self) -> CaptureStats:
        return self._counters.stats

    @property
    def encode_times(self) -> Histogram:
        return self._counters.encode_times

    @property
    def renditions(self) -> dict[Rendition, RenditionState]:
        """The renditions encoded now, each with its keyframe policy and counts."""
        return self._running.states

    async def open(self) -> None:
        """Open the source now (on the capture thread), then its input sink; raises the source's error."""
        self.snapshot = await self._thread.open()
        if self.input_sink is not None:
            await self.input_sink.open()

    def start(self, output: Output) -> None:
        """Capture into `output`; a source not yet open is opened first, retried until it opens."""
        self._task = asyncio.create_task(self._run(output), name=f"capture-{self._name}")

    async def stop(self) -> None:
        """Stop capturing and close the source; waits for a step still running on the capture thread."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._encoding is not None:
            await asyncio.gather(self._encoding, return_exceptions=True)
        if self._thread.opened:
            if self.input_sink is not None:
                await self.input_sink.close()
            await self._thread.close()
        # the encoder's threads go now: a stopped loop may wait for the cycle collector much longer
        await self._on_encoder_thread(self._pipeline.close)  # both threads are idle by now
        await asyncio.get_running_loop().run_in_executor(None, self._shut_down_threads)

    def _shut_down_threads(self) -> None:
        self._thread.shutdown()
        self._encoder.shutdown()

    async def reconfigure(self, settings: EncoderSettings) -> None:
        """New encoder settings, taken between two frames; the next frame is an IDR."""
        await self._on_encoder_thread(self._pipeline.reconfigure, settings)
        self._running.set_keyframe_interval(settings.keyframe_interval)
        self.settings = settings

    async def resize(self, request: ResizeEvent) -> None:
        """Ask the guest for another display size (on the capture thread); a clear error if it cannot."""
        await self._thread.resize(request)

    def request_keyframe(self, rendition: Rendition | None = None) -> None:
        """An IDR of `rendition` (of every running one if None) at the next step; a loop that only samples
        (nobody watched) takes that step now. A rendition not running yet starts with one anyway."""
        self._running.request_keyframe(rendition)
        if self._idle:
            self._wakeup.set()

    def rates(self) -> tuple[float, float]:
        """Encoded frames per second and bits per second, over the last few seconds."""
        return self._counters.rates(time.monotonic())

    async def _on_encoder_thread(self, call: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._encoder, call, *args)

    async def _run(self, output: Output) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            now = loop.time()
            try:
                # first: while the source cannot be opened, its viewers are shown NO SIGNAL in their renditions
                self._idle = not self._running.keep(output.renditions())
                if not self._thread.opened:
                    await self.open()
                if self._idle:
                    result, self.snapshot = await self._thread.sample()
                    self._count(result, {}, now)
                    output.publish({}, self.snapshot.cursor)
                else:
                    capture, self.snapshot = await self._thread.capture(output.composites_cursor())
                    await self._start_encoding(capture, self.snapshot.cursor, output, now)
            except VgpuStreamError as exc:
                self._failed(exc)
                await self._show_no_signal_while_lost(output, now, stepped=False)
                self._show_state(output)
                await asyncio.sleep(ERROR_BACKOFF)
                deadline = loop.time()
                continue
            await self._show_no_signal_while_lost(output, now, stepped=True)
            self._show_state(output)
            interval = self._sample_interval if self._idle else 1.0 / self.settings.fps
            deadline = max(deadline + interval, loop.time())
            if not self._idle:
                await asyncio.sleep(deadline - loop.time() if self._paced else 0)
            elif await self._woken_before(deadline):
                deadline = loop.time()

    async def _show_no_signal_while_lost(self, output: Output, now: float, stepped: bool) -> None:
        """Once the source is lost, its viewers see the NO SIGNAL picture instead of its last frame frozen
        (players that do not read the state messages too); shown once per loss, while someone watches. When
        the source failed (no step ran), the picture is refined and keyframed here: a receiver decodes a frame
        only once the next one comes (aiortc's jitter buffer), and a viewer who joins needs an IDR."""
        lost = self.snapshot.state is SourceState.LOST
        if lost and not self._idle and (not self._no_signal_shown or not stepped):
            if self._no_signal_shown:  # no capture: the encode stage refines or keyframes the last picture
                await self._start_encoding(Capture(None, time.time(), None, StepResult()), None, output, now)
            else:
                capture = await self._thread.show(no_signal_frame())
                await self._start_encoding(capture, None, output, now, forced=True)
        self._no_signal_shown = lost and not self._idle

    async def _start_encoding(
        self, capture: Capture, cursor: Cursor | None, output: Output, now: float, forced: bool = False
    ) -> None:
        """Encode `capture` on the encoder thread and publish it (with `cursor`), once the frame before
        it is out: an IDR if `forced`, else as the keyframe policy says, knowing that frame's keyframes."""
        encoding = self._encoding
        if encoding is not None:
            try:
                await asyncio.shield(encoding)  # normally long done; an error it raised comes out here, once
            finally:
                if encoding.done():
                    self._encoding = None
        decisions = self._running.decisions(now, forced)
        if not self._pipeline.wants_encode(capture, decisions):  # a still screen: no trip to the encoder thread
            self._count(capture.result, {}, now)
            output.publish({}, cursor)
            return
        self._encoding = asyncio.create_task(self._encode(capture, cursor, output, now, decisions))

    async def _encode(
        self, capture: Capture, cursor: Cursor | None, output: Output, now: float, decisions: Decisions
    ) -> None:
        encoded = await self._on_encoder_thread(self._pipeline.encode, capture, decisions)
        for result in encoded.values():
            capture.result.encode += result.seconds
            capture.result.repeated |= result.repeated
        self._count(capture.result, encoded, now)
        output.publish(encoded, cursor)

    def _show_state(self, output: Output) -> None:
        snapshot = self.snapshot
        output.show_state(snapshot.state, snapshot.error, snapshot.display_range is not None)

    async def _woken_before(self, deadline: float) -> bool:
        """Sleep until `deadline` (loop time); True if a keyframe request woke the idle loop first."""
        try:
            await asyncio.wait_for(self._wakeup.wait(), deadline - asyncio.get_running_loop().time())
        except TimeoutError:
            return False
        finally:
            self._wakeup.clear()
        return True

    def _failed(self, exc: VgpuStreamError) -> None:
        errors = self._counters.count_error()
        error = printable(exc.message, MAX_ERROR_CHARS)
        if isinstance(exc, SourceUnavailable):  # nothing of it is there to show or to resize
            self.snapshot = Snapshot(
                SourceState.LOST, Planes(primary=None), error=error, thumbnail=self.snapshot.thumbnail
            )
        else:
            self.snapshot = replace(self.snapshot, error=error)
        # rate-limited: the first error and then one in a hundred
        if errors % 100 == 1:
            log.warning(
                "session %s: capture failed (%d so far): %s",
                self._name,
                errors,
                bounded(exc.message, 200),
            )

    def _count(self, result: StepResult, encoded: dict[Rendition, Encoded], now: float) -> None:
        """Count a step: the session's frames (a frame encoded by several renditions counts once, its bytes
        and keyframes in each), and each rendition's own."""
        self._counters.count_step(result.captured, result.pixels, result.changed, result.repeated)
        made = {
            rendition: (e, sum(packet.size for packet in e.packets), sum(packet.is_keyframe for packet in e.packets))
            for rendition, e in encoded.items()
            if e.packets
        }
        if not made:
            return
        at = time.monotonic()
        self._counters.count_encoded(result.encode, [(size, keyframes) for _, size, keyframes in made.values()], at)
        for rendition, (e, size, keyframes) in made.items():
            self._running.count(rendition, e, size=size, keyframes=keyframes, at=at, now=now)
