"""`vgpustream bench capacity`: how many sessions one host holds, each with its own viewers.

For each session count a fresh `vgpustream serve` runs that many sessions on the same synthetic source
(`--pattern text`, every pixel changing, or `desktop`; moving, or `--still`), each watched by its own
viewer process (counting frames without decoding, see vgpustream/bench/worker.py). Over one wall-clock
window the server's CPU time is read from /proc and each viewer's frames are counted. A count is held
when every viewer got at least `--min-fps`.
Server CPU per encoded frame (the sessions' own frame counts over the same window) is the figure to
compare on a busy machine: there, fewer frames get through, and CPU per session falls with them.
The sessions' counters also give the mean share of a captured frame that changed (the source's damage;
all of it for the text pattern) and the bits per second a session sends.
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from vgpustream.bench.fanout import frame_rates, ms_per_frame, session_totals, watch
from vgpustream.testing.server import serve

COUNTERS = ("frames_encoded", "bytes_encoded", "pixels_changed", "pixels_captured")
"""The sessions' counters read at either end of the window."""


def add_session(base: str, session_id: str, source: str) -> None:
    body = json.dumps({"id": session_id, "source": source}).encode()
    request = urllib.request.Request(
        f"{base}/api/v1/sessions", body, {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def one_run(sessions: int, viewers: int, seconds: float, source: str, server_args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vgpustream-bench-capacity-") as folder:
        # every viewer comes from 127.0.0.1: the per-client request limit must not turn them away
        limits = [
            "--max-sessions",
            str(sessions),
            "--max-viewers",
            str(viewers),
            "--rate-burst",
            str(sessions * viewers),
        ]
        with serve(Path(folder) / "state", "--insecure-no-auth", "--source", source, *limits, *server_args) as served:
            ids = ["default", *(f"s{i}" for i in range(1, sessions))]
            for session_id in ids[1:]:
                add_session(served.url, session_id, source)
            groups = [(f"{served.url}/whep/{session_id}", viewers, []) for session_id in ids]
            window = watch(served, groups, seconds, lambda: session_totals(served.url, ids, COUNTERS))
    rates = frame_rates(window, seconds)
    cpu = window.cpu_per_wall
    first, last = window.probed
    encoded, sent, changed, captured = (last[counter] - first[counter] for counter in COUNTERS)
    return {
        "sessions": sessions,
        "cpu_per_wall": round(cpu, 3),
        "cpu_per_session": round(cpu / sessions, 4),
        "encoded_fps_per_session": round(encoded / seconds / sessions, 2),
        "server_cpu_ms_per_frame": ms_per_frame(cpu, seconds, encoded),
        "fps_per_viewer_min": round(min(rates), 2),
        "fps_per_viewer_mean": round(sum(rates) / len(rates), 2),
        "changed_area_per_frame": round(changed / max(1, captured), 4),
        "kbit_per_s_per_session": round(sent * 8 / seconds / sessions / 1000, 1),
    }


def run(
    counts: list[int],
    viewers: int,
    seconds: float,
    *,
    resolution: str,
    pattern: str,
    still: bool,
    bitrate: int,
    min_fps: float,
) -> dict[str, Any]:
    source = f"synthetic:{resolution}@30?pattern={pattern}" + ("&still=1" if still else "")
    runs = [one_run(count, viewers, seconds, source, ["--bitrate", str(bitrate)]) for count in counts]
    held = [r["sessions"] for r in runs if r["fps_per_viewer_min"] >= min_fps]  # a still picture sends ~no frames
    return {
        "source": source,
        "viewers_per_session": viewers,
        "seconds": seconds,
        "min_fps": min_fps,
        "sessions_held": None if still else max(held, default=0),
        "runs": runs,
    }
