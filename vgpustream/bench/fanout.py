"""`vgpustream bench fanout`: what one session costs the server as viewers are added.

For each viewer count (and transport: WebRTC over WHEP, or the WebSocket) a fresh `vgpustream serve` runs
in its own process; the viewers run in two other processes: one decodes and reads the frame stamps back
(so the picture is checked), the rest only count frames (see vgpustream/bench/worker.py). Over the same
wall-clock window the server's CPU time is read from /proc, and each viewer's frames are counted.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vgpustream.testing.server import Served, serve

READY_TIMEOUT = 120.0  # for every viewer process to have each of its viewers connected and receiving
SETTLE_SECONDS = 2.0  # from then to the window: the joins' keyframes and replays are not measured
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User plus system CPU time of a process, or of one of its threads, from /proc/PID[/task/TID]/stat."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@dataclass
class Window:
    """What the viewer processes reported, and the server's CPU over their measuring window."""

    cpu_per_wall: float
    event_loop_cpu_per_wall: float
    """The server's main thread: its event loop, where every viewer's packets are sent."""
    reports: list[dict[str, Any]]
    probed: tuple[Any, Any]
    """`probe()` at the window's start and end."""


def watch(
    served: Served, viewers: list[tuple[str, int, list[str]]], seconds: float, probe: Callable[[], Any] = lambda: None
) -> Window:
    """Run viewer processes (URL, count, worker flags) over one window, opened once all their viewers receive."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "vgpustream.bench.worker", url, str(count), str(seconds), *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for url, count, flags in viewers
    ]
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        for worker in workers:
            assert worker.stdout is not None and worker.stdin is not None
            if not select.select([worker.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError(f"a viewer process was not receiving within {READY_TIMEOUT:g} s")
            if (line := worker.stdout.readline().strip()) != "ready":
                raise RuntimeError(f"a viewer process said {line[:200]!r} (exit {worker.poll()}), not ready")
        start = time.time() + SETTLE_SECONDS
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(f"{start}\n")
            worker.stdin.flush()
        time.sleep(max(0.0, start - time.time()))
        pid = served.process.pid
        cpu0, loop0, wall0, first = cpu_seconds(pid), cpu_seconds(pid, pid), time.monotonic(), probe()
        time.sleep(seconds)
        cpu1, loop1, wall1, last = cpu_seconds(pid), cpu_seconds(pid, pid), time.monotonic(), probe()
        reports = [json.loads(w.communicate(timeout=60 + seconds)[0]) for w in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
    return Window((cpu1 - cpu0) / (wall1 - wall0), (loop1 - loop0) / (wall1 - wall0), reports, (first, last))


def session_totals(base: str, session_ids: list[str], counters: tuple[str, ...]) -> dict[str, int]:
    """Counters of the sessions' stats (frames_encoded, bytes_encoded, ...), each summed over all of them."""
    stats = [get_json(f"{base}/api/v1/sessions/{i}")["stats"] for i in session_ids]
    return {counter: sum(s[counter] for s in stats) for counter in counters}


def frames_encoded(base: str, session_ids: list[str]) -> int:
    """Frames encoded so far by all the sessions."""
    return session_totals(base, session_ids, ("frames_encoded",))["frames_encoded"]


def ms_per_frame(cpu_per_wall: float, seconds: float, frames: int) -> float:
    """CPU milliseconds per encoded frame, from CPU per wall second over a window of `seconds`."""
    return round(cpu_per_wall * seconds * 1000 / max(1, frames), 3)


def frame_rates(window: Window, seconds: float) -> list[float]:
    return [v["frames"] / seconds for report in window.reports for v in report["viewers"]]


def one_run(viewers: int, seconds: float, server_args: list[str], transport: str) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="vgpustream-bench-") as folder,
        serve(Path(folder) / "state", "--insecure-no-auth", "--max-viewers", str(viewers), *server_args) as served,
    ):
        url = f"{served.url}/{'ws' if transport == 'websocket' else 'whep'}/default"
        groups = [(url, 1, ["--decode"])] + ([(url, viewers - 1, [])] if viewers > 1 else [])
        window = watch(served, groups, seconds, lambda: frames_encoded(served.url, ["default"]))
    decoding = window.reports[0]["viewers"][0]
    if decoding["stamped_frames"] == 0:
        raise RuntimeError("the decoding viewer read no frame stamp: the pictures are not the source's")
    rates = frame_rates(window, seconds)
    encoded = window.probed[1] - window.probed[0]
    return {
        "transport": transport,
        "viewers": viewers,
        "cpu_per_wall": round(window.cpu_per_wall, 3),
        "fps_per_viewer_min": round(min(rates), 2),
        "fps_per_viewer_mean": round(sum(rates) / len(rates), 2),
        "encoded_fps": round(encoded / seconds, 2),
        "server_cpu_ms_per_frame": ms_per_frame(window.cpu_per_wall, seconds, encoded),
        "event_loop_cpu_ms_per_frame": ms_per_frame(window.event_loop_cpu_per_wall, seconds, encoded),
        "decoded_fps": round(decoding["frames"] / seconds, 2),
        "decoded_stamped_frames": decoding["stamped_frames"],
    }


def run(
    counts: list[int],
    seconds: float,
    resolution: str,
    fps: int,
    bitrate: int,
    *,
    transports: tuple[str, ...] = ("webrtc",),
) -> dict[str, Any]:
    """Each viewer count over each transport, one run after the other; what one more viewer costs on each."""
    source = f"synthetic:{resolution}@{fps}?pattern=text"  # every pixel new in every frame
    server_args = ["--source", source, "--fps", str(fps), "--bitrate", str(bitrate)]
    runs = [one_run(count, seconds, server_args, transport) for transport in transports for count in counts]
    return {
        "resolution": resolution,
        "fps": fps,
        "seconds": seconds,
        "runs": runs,
        # the event loop's CPU per encoded frame rises by this much with each viewer: what sending to one
        # more costs (a ratio to the frames actually encoded, so it holds on a busy machine too)
        "per_viewer_cpu_ms_per_frame": {
            transport: per_viewer([r for r in runs if r["transport"] == transport]) for transport in transports
        },
    }


def per_viewer(runs: list[dict[str, Any]]) -> float | None:
    """The rise of the event loop's CPU per encoded frame from the fewest viewers to the most, per viewer added."""
    fewest, most = min(runs, key=lambda r: r["viewers"]), max(runs, key=lambda r: r["viewers"])
    added = most["viewers"] - fewest["viewers"]
    # the event loop's CPU alone: the sends are there, and it is not swayed by x264's threads on a busy machine
    rise = most["event_loop_cpu_ms_per_frame"] - fewest["event_loop_cpu_ms_per_frame"]
    return round(rise / added, 4) if added else None
