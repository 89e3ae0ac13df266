"""What the recording tests share: starting and stopping recordings over the API, reading files back."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from vgpustream.media.sound import SAMPLE_RATE
from vgpustream.media.stamp import Stamp, read_frame_stamp

needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe (Debian's ffmpeg)")


def recordings_url(base: str, session: str = "default") -> str:
    return f"{base.rstrip('/')}/api/v1/sessions/{session}/recordings"


async def start(http: aiohttp.ClientSession, base: str, session: str = "default", **body: Any) -> dict[str, Any]:
    async with http.post(recordings_url(base, session), json=body) as response:
        assert response.status == 201, await response.text()
        return await response.json()


async def info(http: aiohttp.ClientSession, base: str, recording: dict[str, Any]) -> dict[str, Any]:
    async with http.get(base.rstrip("/") + recording["href"]) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def stop(http: aiohttp.ClientSession, base: str, recording: dict[str, Any]) -> dict[str, Any]:
    async with http.delete(base.rstrip("/") + recording["href"]) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def wait_state(
    http: aiohttp.ClientSession, base: str, recording: dict[str, Any], *states: str, timeout: float = 10.0
) -> dict[str, Any]:
    """The recording's info once its state is one of `states`."""
    for _ in range(int(timeout / 0.1)):
        now = await info(http, base, recording)
        if now["state"] in states:
            return now
        await asyncio.sleep(0.1)
    raise AssertionError(f"recording stayed {now['state']}, not {states}: {now}")


async def download(http: aiohttp.ClientSession, base: str, recording: dict[str, Any], to: Path) -> Path:
    async with http.get(base.rstrip("/") + recording["file"]) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "video/mp4"
        to.write_bytes(await response.read())
    return to


def ffprobe_frames(path: Path) -> int:
    """How many video frames ffprobe decodes from `path` (it fails on a file it cannot read)."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return int(json.loads(result.stdout)["streams"][0]["nb_read_frames"])


def ffprobe_streams(path: Path) -> list[dict[str, Any]]:
    """What ffprobe reads of each stream of `path`: codec_name, start_time, duration, nb_read_packets, ..."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_entries",
         "stream=codec_name,sample_rate,channels,start_time,duration,nb_read_packets", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)["streams"]


def recorded_sound(path: Path) -> tuple[float, np.ndarray]:
    """The sound track of `path` decoded by PyAV: the time of its first sample (s) and the samples, mono float."""
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
    assert all(frame.sample_rate == SAMPLE_RATE for frame in frames)
    for before, after in itertools.pairwise(frames):
        assert after.pts == before.pts + before.samples, "the sound track is continuous"
    samples = np.concatenate([_mono(frame) for frame in frames])
    return float(frames[0].pts * frames[0].time_base), samples


def _mono(frame: av.AudioFrame) -> np.ndarray:
    array = frame.to_ndarray()
    return array.mean(axis=0) if frame.format.is_planar else array.reshape(frame.samples, -1).mean(axis=1)


def frame_stamps(path: Path) -> list[int]:
    """The frame numbers stamped into each decoded picture of `path`, in decoding order."""
    with av.open(str(path)) as container:
        return [stamp.frame for frame in container.decode(video=0) if (stamp := read_frame_stamp(frame)) is not None]


def first_stamp(path: Path) -> Stamp:
    """The stamp of the first picture of `path` (its frame number and when it was drawn)."""
    with av.open(str(path)) as container:
        stamp = read_frame_stamp(next(container.decode(video=0)))
    assert stamp is not None
    return stamp


async def record(http: aiohttp.ClientSession, base: str, **body: Any) -> dict[str, Any]:
    """Start recording session default and wait until it writes (it has had its keyframe)."""
    started = await start(http, base, **body)
    await wait_state(http, base, started, "recording")
    return started


async def recorded_server(
    make_server: Any, http: aiohttp.ClientSession, source: str
) -> tuple[Any, str, dict[str, Any]]:
    """A test server on `source` whose session default is being recorded: (server, its base URL, the recording)."""
    server = await make_server(source=source)
    base = str(server.make_url("/"))
    return server, base, await record(http, base)
