"""`vgpustream bench pipeline`: milliseconds per stage of the real capture -> convert -> encode path."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from vgpustream.capture.pipeline import FramePipeline
from vgpustream.encoder import EncoderSettings
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

    def measure(source: Source) -> tuple[int, Planes]:
        pipeline = FramePipeline(source, encoder)
        idle, seen, deadline = 0, 0, time.monotonic() + timeout
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
    }


def run(source_url: str, frames: int, encoder: EncoderSettings, timeout: float) -> dict[str, Any]:
    return asyncio.run(bench_pipeline(source_url, frames, encoder, timeout))
