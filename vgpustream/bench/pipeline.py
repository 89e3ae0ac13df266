"""`vgpustream bench pipeline`: milliseconds per stage of the real capture -> convert -> encode path.

Beside it, in the same loop (a step of each in turn, on the same source), the naive PyAV path the
pipeline is measured against: `VideoFrame.from_ndarray` -> `reformat("yuv420p")` -> libx264 with
preset ultrafast and tune zerolatency at the same bitrate, one call after the other.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import av
import numpy as np

from vgpustream.capture.pipeline import FramePipeline
from vgpustream.encoder import TIME_BASE, EncoderSettings
from vgpustream.snapshot import use_source
from vgpustream.sources.base import Planes, Source

WARM_UP = 10  # the first frames open the codec and fill caches; they are not counted
STAGES = ("capture", "convert", "encode", "total")
IDLE_WAIT = 0.001


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds of samples in seconds."""
    values = np.array(samples) * 1000
    return {"p50": round(float(np.percentile(values, 50)), 3), "p95": round(float(np.percentile(values, 95)), 3)}


async def bench_pipeline(source_url: str, frames: int, encoder: EncoderSettings, timeout: float) -> dict[str, Any]:
    """Run the pipeline until `frames` changed frames were captured and encoded (after a warm-up).

    Steps that find no new picture (the source did not change yet) are not counted; they are
    reported as `idle_steps`. Keyframes come only at the start, as in a session without new viewers.
    """
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    naive_samples: list[float] = []

    def measure(source: Source) -> tuple[int, Planes]:
        pipeline = FramePipeline(source, encoder)
        naive = NaivePath(source, encoder)
        idle, seen, deadline = 0, 0, time.monotonic() + timeout
        while len(samples["total"]) < frames and time.monotonic() < deadline:
            result = pipeline.step(keyframe=seen == 0)
            if not result.captured:
                idle += 1
                time.sleep(IDLE_WAIT)
                continue
            seen += 1
            naive_time = naive.step(deadline)
            if seen > WARM_UP:
                for stage in STAGES:
                    samples[stage].append(getattr(result, stage))
                if naive_time is not None:
                    naive_samples.append(naive_time)
        return idle, source.planes()

    idle, planes = await use_source(source_url, measure)
    if not samples["total"]:
        raise TimeoutError(f"the source produced no changed frame within {timeout:.0f} s")
    primary = planes.primary
    return {
        "resolution": f"{primary.width}x{primary.height}" if primary else None,
        "source": source_url,
        "frames": len(samples["total"]),
        "warm_up_frames": WARM_UP,
        "idle_steps": idle,
        "stages": {stage: percentiles(values) for stage, values in samples.items()},
        "naive_total": percentiles(naive_samples),
        "total_to_naive_p50": round(float(np.median(samples["total"]) / np.median(naive_samples)), 3),
    }


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
        picture.pts, picture.time_base = self.frames, TIME_BASE
        self.frames += 1
        self._context(picture).encode(picture)
        return time.perf_counter() - start

    def _context(self, picture: av.VideoFrame) -> av.VideoCodecContext:
        if self.context is None:
            self.context = av.CodecContext.create("libx264", "w")
            self.context.width, self.context.height, self.context.pix_fmt = picture.width, picture.height, "yuv420p"
            self.context.time_base, self.context.bit_rate = TIME_BASE, self.settings.bitrate
            self.context.options = {"preset": "ultrafast", "tune": "zerolatency"}
            self.context.open()
        return self.context


def run(source_url: str, frames: int, encoder: EncoderSettings, timeout: float) -> dict[str, Any]:
    return asyncio.run(bench_pipeline(source_url, frames, encoder, timeout))
