"""`vgpustream bench idle`: what sessions nobody watches cost, and how soon the first viewer of one sees it.

For each kind of picture (moving, still) a fresh `vgpustream serve` runs N sessions of that synthetic
source that nobody watches. Its CPU time over a window, divided by N, is what one unwatched session
costs (an upper bound: the share includes the idle server itself). Then, run after run, an aiortc
viewer in this process posts its WHEP offer to a session nobody has watched for a while, and the time
from the POST to its first decoded frame is taken.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from vgpustream import compat
from vgpustream.bench.fanout import cpu_seconds, get_json
from vgpustream.testing.receiver import WhepReceiver
from vgpustream.testing.server import serve

SETTLE_SECONDS = 3.0  # after the sessions are created, before the window opens
UNWATCHED_SECONDS = 3.0  # a session nobody watched for this long is what a first viewer meets


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


async def first_frame_times(url: str, runs: int) -> list[float]:
    """Seconds from each viewer's WHEP POST to its first decoded frame, each to a session left unwatched."""
    compat.advertise_host_addresses(["127.0.0.1"])
    times = []
    async with aiohttp.ClientSession() as http:
        for _ in range(runs):
            await asyncio.sleep(UNWATCHED_SECONDS)
            receiver = WhepReceiver(f"{url}/whep/default", http, input_channel=False)
            start = time.perf_counter()
            try:
                await receiver.connect()
                await receiver.next_frame()
                times.append(time.perf_counter() - start)
            finally:
                await receiver.close()
    return times


def frames(before: list[dict[str, Any]], after: list[dict[str, Any]], counter: str) -> int:
    """How much `counter` rose over all sessions between two session lists."""
    return sum(a["stats"][counter] - b["stats"][counter] for a, b in zip(after, before, strict=True))


def one_kind(kind: str, *, sessions: int, seconds: float, runs: int, resolution: str, fps: int) -> dict[str, Any]:
    source = f"synthetic:{resolution}@{fps}?pattern=text" + ("&still=1" if kind == "still" else "")
    args = ["--insecure-no-auth", "--source", source, "--max-sessions", str(sessions), "--fps", str(fps)]
    with tempfile.TemporaryDirectory(prefix="vgpustream-bench-") as folder, serve(Path(folder) / "state", *args) as s:
        for number in range(1, sessions):
            post_json(f"{s.url}/api/v1/sessions", {"id": f"idle-{number}", "source": source})
        time.sleep(SETTLE_SECONDS)
        before = get_json(f"{s.url}/api/v1/sessions")["sessions"]
        cpu0, wall0 = cpu_seconds(s.process.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = cpu_seconds(s.process.pid), time.monotonic()
        after = get_json(f"{s.url}/api/v1/sessions")["sessions"]
        first = asyncio.run(first_frame_times(s.url, runs))
    cores = (cpu1 - cpu0) / (wall1 - wall0)
    captured, encoded = (frames(before, after, counter) for counter in ("frames_captured", "frames_encoded"))
    return {
        "kind": kind,
        "sessions": sessions,
        "server_cores": round(cores, 4),
        "cores_per_session": round(cores / sessions, 5),
        "captured_fps_per_session": round(captured / seconds / sessions, 2),
        "encoded_fps_per_session": round(encoded / seconds / sessions, 2),
        "first_frame_s": {
            "median": round(statistics.median(first), 3) if first else None,
            "all": [round(t, 3) for t in first],
        },
    }


def run(kinds: list[str], *, sessions: int, seconds: float, runs: int, resolution: str, fps: int) -> dict[str, Any]:
    return {
        "resolution": resolution,
        "fps": fps,
        "seconds": seconds,
        "runs": [
            one_kind(kind, sessions=sessions, seconds=seconds, runs=runs, resolution=resolution, fps=fps)
            for kind in kinds
        ],
    }
