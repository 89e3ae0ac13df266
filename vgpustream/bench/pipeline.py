"""`vgpustream bench pipeline`: the real capture -> convert -> encode path against the naive PyAV path.

The naive path, on the same source: `VideoFrame.from_ndarray` -> `reformat("yuv420p")` -> libx264
with preset ultrafast and tune zerolatency at the same bitrate, one call after the other on one thread.

What "the step" is. The product's capture loop overlaps its stages: frame N+1 is captured and converted
on the capture thread while frame N is encoded on the encoder thread. A frame's capture + convert +
encode time then no longer says how fast frames go through, so the step is measured as throughput:
wall time per frame of a `CaptureLoop`, as the product runs it but unpaced, on a source that changes
faster than it runs, in steady state (after a warm-up), against the naive path's wall time per frame.
The two are measured in windows of the same run taken in turn (loop, naive, loop, naive, ...), so that
whatever else a shared machine runs falls on both alike; `step_to_naive` is the ratio of the medians.
CPU time per frame over the same windows (the whole process, every thread) comes beside it: on a busy
machine it is the steadier figure, and it decides how many sessions a host holds.

Each round also has a window of `FramePipeline.step` calls one after the other (no overlap), whose
stage times say what each stage costs (`stages`; `total_to_naive_p50` compares their sum per frame
with the naive path's).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from vgpustream.capture.loop import CaptureLoop
from vgpustream.capture.oneshot import use_source
from vgpustream.capture.pipeline import Encoded, FramePipeline
from vgpustream.capture.stats import CaptureStats
from vgpustream.media.encoder import TIME_BASE, EncoderSettings
from vgpustream.media.renditions import TOP, Rendition
from vgpustream.sources import create_source
from vgpustream.sources.base import Cursor, Planes, Source, SourceState

WARM_UP = 10  # the first frames of each window open the codec and fill caches; they are not counted
ROUNDS = 3  # windows of each kind, taken in turn
STAGES = ("capture", "convert", "encode", "total")
IDLE_WAIT = 0.001


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds of samples in seconds."""
    values = np.array(samples) * 1000
    return {"p50": round(float(np.percentile(values, 50)), 3), "p95": round(float(np.percentile(values, 95)), 3)}


@dataclass
class Window:
    """`frames` frames in `wall` seconds, using `cpu` seconds of the process's CPU time (every thread)."""

    frames: int
    wall: float
    cpu: float


class FrameCounter:
    """The capture loop's Output in the bench: counts captured frames until a target is reached."""

    def __init__(self, stats: CaptureStats) -> None:
        self.stats = stats
        self._target = 0
        self._reached: asyncio.Future[None] | None = None

    async def reached(self, frames: int) -> None:
        """Until the loop has captured (and encoded and published) `frames` frames."""
        self._target, self._reached = frames, asyncio.get_running_loop().create_future()
        self._check()
        await self._reached

    def composites_cursor(self) -> bool:
        return False

    def renditions(self) -> set[Rendition]:
        return {TOP}

    def publish(self, encoded: dict[Rendition, Encoded], cursor: Cursor | None) -> None:
        self._check()

    def show_state(self, state: SourceState, error: str | None, resizable: bool) -> None:
        pass

    def _check(self) -> None:
        if self._reached is not None and not self._reached.done() and self.stats.frames_captured >= self._target:
            self._reached.set_result(None)


async def loop_window(source_url: str, frames: int, settings: EncoderSettings, timeout: float) -> tuple[Window, int]:
    """A flat-out CaptureLoop's steady state over `frames` captured frames; and how many frames in that
    window were repeats (the source had nothing new: it, not the pipeline, set the pace)."""
    loop = CaptureLoop(create_source(source_url), settings, "bench", paced=False)
    output = FrameCounter(loop.stats)
    await loop.open()
    loop.start(output)
    try:
        await asyncio.wait_for(output.reached(WARM_UP), timeout)
        wall, cpu, repeated = time.perf_counter(), time.process_time(), loop.stats.frames_repeated
        await asyncio.wait_for(output.reached(WARM_UP + frames), timeout)
        window = Window(frames, time.perf_counter() - wall, time.process_time() - cpu)
        return window, loop.stats.frames_repeated - repeated
    finally:
        await loop.stop()


def naive_window(source: Source, frames: int, settings: EncoderSettings, deadline: float) -> tuple[Window, list[float]]:
    """The naive path over `frames` new frames after a warm-up; and each frame's time."""
    naive = NaivePath(source, settings)
    times: list[float] = []
    for _ in range(WARM_UP):
        naive.step(deadline)
    wall, cpu = time.perf_counter(), time.process_time()
    while len(times) < frames and (step := naive.step(deadline)) is not None:
        times.append(step)
    return Window(len(times), time.perf_counter() - wall, time.process_time() - cpu), times


def stage_window(source: Source, frames: int, settings: EncoderSettings, deadline: float) -> tuple[dict, int]:
    """`FramePipeline.step` one call after the other over `frames` changed frames after a warm-up: the
    stage times of each; and the steps that found no new picture (not counted)."""
    pipeline = FramePipeline(source, settings)
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    idle, seen = 0, 0
    try:
        while len(samples["total"]) < frames and time.monotonic() < deadline:
            result = pipeline.step(keyframe=seen == 0)
            if not result.captured:
                idle += 1
                time.sleep(IDLE_WAIT)
                continue
            seen += 1
            if seen > WARM_UP:
                for stage in STAGES:
                    samples[stage].append(getattr(result, stage))
    finally:
        pipeline.close()
    return samples, idle


async def bench_pipeline(source_url: str, frames: int, encoder: EncoderSettings, timeout: float) -> dict[str, Any]:
    """Rounds of a loop window, a naive window and a stage window, each of frames / ROUNDS frames."""
    per_window = math.ceil(frames / ROUNDS)
    deadline = time.monotonic() + timeout
    loops: list[Window] = []
    naives: list[Window] = []
    naive_times: list[float] = []
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    idle = repeated = 0
    for _ in range(ROUNDS):
        window, repeats = await loop_window(source_url, per_window, encoder, max(1.0, deadline - time.monotonic()))
        loops.append(window)
        repeated += repeats

        def naive(source: Source) -> tuple[Window, list[float]]:
            return naive_window(source, per_window, encoder, deadline)

        def stages(source: Source) -> tuple[dict, int]:
            return stage_window(source, per_window, encoder, deadline)

        window, times = await use_source(source_url, naive)
        naives.append(window)
        naive_times += times
        stage_samples, stage_idle = await use_source(source_url, stages)
        idle += stage_idle
        for stage in STAGES:
            samples[stage] += stage_samples[stage]
    if not samples["total"] or not naive_times or any(w.frames == 0 for w in naives):
        raise TimeoutError(f"the source produced no changed frame within {timeout:.0f} s")
    planes: Planes = await use_source(source_url, lambda source: source.planes())
    primary = planes.primary
    pipeline_ms, naive_ms = _per_frame_ms(loops, "wall"), _per_frame_ms(naives, "wall")
    pipeline_cpu, naive_cpu = _per_frame_ms(loops, "cpu"), _per_frame_ms(naives, "cpu")
    return {
        "resolution": f"{primary.width}x{primary.height}" if primary else None,
        "source": source_url,
        "frames": per_window * ROUNDS,
        "rounds": ROUNDS,
        "warm_up_frames": WARM_UP,
        "throughput": {
            "pipeline_ms_per_frame": round(pipeline_ms, 3),
            "naive_ms_per_frame": round(naive_ms, 3),
            "pipeline_cpu_ms_per_frame": round(pipeline_cpu, 3),
            "naive_cpu_ms_per_frame": round(naive_cpu, 3),
            "source_bound_frames": repeated,
        },
        "step_to_naive": round(pipeline_ms / naive_ms, 3),
        "cpu_to_naive": round(pipeline_cpu / naive_cpu, 3),
        "idle_steps": idle,
        "stages": {stage: percentiles(values) for stage, values in samples.items()},
        "naive_total": percentiles(naive_times),
        "total_to_naive_p50": round(float(np.median(samples["total"]) / np.median(naive_times)), 3),
    }


def _per_frame_ms(windows: list[Window], what: str) -> float:
    """The median over windows of milliseconds of `what` (wall or cpu) per frame."""
    return statistics.median(getattr(w, what) / w.frames * 1000 for w in windows)


class NaivePath:
    """The straightforward PyAV path for the same source: the baseline the pipeline should beat."""

    def __init__(self, source: Source, settings: EncoderSettings) -> None:
        self.source = source
        self.settings = settings
        self.context: av.VideoCodecContext | None = None
        self.frames = 0

    def step(self, deadline: float) -> float | None:
        """Seconds to capture, convert and encode the source's next new frame; None if none came by `deadline`."""
        while True:
            start = time.perf_counter()  # timed from the capture that finds a new frame, as pipeline steps are
            frame = self.source.next_frame()
            if frame is not None:
                break
            if time.monotonic() > deadline:
                return None
            time.sleep(IDLE_WAIT)
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.pixels), format="bgra")
        picture = picture.reformat(format="yuv420p")
        # timed as the frames of a 30 fps stream: with pts one tick apart x264 takes 90 000 fps and gives each
        # frame 1/90 000 of a second's bits, next to nothing (0.0 KB a frame at 1080p), which costs less to encode
        picture.pts, picture.time_base = round(self.frames / (self.settings.fps * TIME_BASE)), TIME_BASE
        self.frames += 1
        self._context(picture).encode(picture)
        return time.perf_counter() - start

    def _context(self, picture: av.VideoFrame) -> av.VideoCodecContext:
        if self.context is None:
            self.context = av.CodecContext.create("libx264", "w")
            self.context.width, self.context.height, self.context.pix_fmt = picture.width, picture.height, "yuv420p"
            self.context.time_base, self.context.bit_rate = TIME_BASE, self.settings.bitrate
            self.context.framerate = Fraction(self.settings.fps, 1)
            self.context.options = {"preset": "ultrafast", "tune": "zerolatency"}
            self.context.open()
        return self.context


def run(source_url: str, frames: int, encoder: EncoderSettings, timeout: float) -> dict[str, Any]:
    return asyncio.run(bench_pipeline(source_url, frames, encoder, timeout))
