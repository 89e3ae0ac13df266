"""`vgpustream bench record`: what recording a session costs the server, and what reaches the file.

Three runs, each on a fresh `vgpustream serve` of a moving synthetic picture: one viewer and no
recording; one viewer and one recording; a recording and no viewer (the session is encoded for it
alone). Over the same window the server's CPU is read from /proc, the viewer's frames are counted
(vgpustream/bench/worker.py), and the recording says what it wrote and dropped.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from vgpustream.bench.fanout import get_json, watch
from vgpustream.bench.idle import post_json
from vgpustream.testing.server import serve

RUNS = (("viewer", True, False), ("viewer+recording", True, True), ("recording", False, True))


def one_run(name: str, viewer: bool, recording: bool, seconds: float, server_args: list[str]) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="vgpustream-bench-") as folder,
        serve(Path(folder) / "state", "--insecure-no-auth", *server_args) as served,
    ):
        session = f"{served.url}/api/v1/sessions/default"
        started = post_json(f"{session}/recordings", {"label": "bench"}) if recording else None

        def probe() -> tuple[dict[str, Any], dict[str, Any] | None]:
            written = get_json(f"{served.url}{started['href']}") if started else None
            return get_json(session), written

        groups = [(f"{served.url}/whep/default", 1, [])] if viewer else []
        window = watch(served, groups, seconds, probe)
        (session0, written0), (session1, written1) = window.probed
        time.sleep(0.1)
    encoded_fps = (session1["stats"]["frames_encoded"] - session0["stats"]["frames_encoded"]) / seconds
    result: dict[str, Any] = {
        "run": name,
        "server_cores": round(window.cpu_per_wall, 3),
        "encoded_fps": round(encoded_fps, 2),
        # CPU per encoded frame: comparable across runs when a loaded machine encodes fewer frames in one
        "cpu_ms_per_frame": round(window.cpu_per_wall * 1000 / encoded_fps, 2) if encoded_fps else None,
        "viewer_fps": round(window.reports[0]["viewers"][0]["frames"] / seconds, 2) if viewer else None,
    }
    if written0 is not None and written1 is not None:
        result["recorded_fps"] = round((written1["frames"] - written0["frames"]) / seconds, 2)
        result["recorded_kbit_s"] = round((written1["bytes"] - written0["bytes"]) * 8 / seconds / 1000)
        result["dropped"] = written1["dropped"]
    return result


def run(seconds: float, resolution: str, fps: int, bitrate: int) -> dict[str, Any]:
    source = f"synthetic:{resolution}@{fps}?pattern=text"  # every pixel new in every frame
    server_args = ["--source", source, "--fps", str(fps), "--bitrate", str(bitrate)]
    return {
        "resolution": resolution,
        "fps": fps,
        "seconds": seconds,
        "runs": [one_run(name, viewer, recording, seconds, server_args) for name, viewer, recording in RUNS],
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"synthetic:{result['resolution']}@{result['fps']} (moving), {result['seconds']:.0f} s window",
        "run               server cores  encoded fps  cpu ms/frame  viewer fps  recorded fps  kbit/s  dropped",
    ]
    for r in result["runs"]:
        lines.append(
            f"{r['run']:<16}  {r['server_cores']:>12.3f}  {r['encoded_fps']:>11.1f}  {r['cpu_ms_per_frame']!s:>12}"
            f"  {r['viewer_fps'] or '-'!s:>10}"
            f"  {r.get('recorded_fps', '-')!s:>12}  {r.get('recorded_kbit_s', '-')!s:>6}  {r.get('dropped', '-')!s:>7}"
        )
    return "\n".join(lines)
