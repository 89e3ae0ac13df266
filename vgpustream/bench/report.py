"""`vgpustream bench report`: every bench that draws a curve, run once, on one HTML page with plots.

Latency in Chromium (its CDF), server CPU against viewers of one session (fanout) and against sessions
(capacity), and the PSNR of the picture over time once it stops moving (quality). The page embeds the
plots as PNG and each bench's JSON, so it is one file to keep beside a note. `--quick` runs each bench
briefly (a smoke run: the figures are not worth quoting).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vgpustream.bench import capacity, fanout, latency, quality
from vgpustream.media.encoder import EncoderSettings
from vgpustream.testing import INSTALL_TEST_EXTRAS

FULL = {
    "latency": {"resolutions": ["1280x720", "1920x1080"], "frames": 900, "loads": 10, "joins": 10},
    "fanout": {"counts": [1, 4, 8, 16], "seconds": 10.0},
    "capacity": {"counts": [1, 2, 4, 6, 8], "seconds": 10.0},
    "quality": {"resolutions": [(1280, 720), (1920, 1080)], "moving": 3.0, "still": 3.0},
}
LATENCY_P50_TARGET_MS, LATENCY_P99_TARGET_MS = 50, 100  # glass-to-glass at 1080p30 (issue #17)


@dataclass(frozen=True)
class Marks:
    """Reference lines on a plot (position, label), and whether its y axis starts at zero."""

    vertical: list[tuple[float, str]] = field(default_factory=list)
    horizontal: list[tuple[float, str]] = field(default_factory=list)
    from_zero: bool = False


ZERO = Marks(from_zero=True)
QUICK = {
    "latency": {"resolutions": ["640x360"], "frames": 60, "loads": 2, "joins": 2},
    "fanout": {"counts": [1, 2], "seconds": 2.0},
    "capacity": {"counts": [1, 2], "seconds": 2.0},
    "quality": {"resolutions": [(320, 240)], "moving": 0.5, "still": 1.0},
}


def run_all(quick: bool) -> dict[str, Any]:
    plan, bitrate = QUICK if quick else FULL, EncoderSettings().bitrate
    return {
        "latency": latency.run(
            plan["latency"]["resolutions"],
            plan["latency"]["frames"],
            bitrate,
            loads=plan["latency"]["loads"],
            joins=plan["latency"]["joins"],
        ),
        "fanout": fanout.run(
            plan["fanout"]["counts"],
            plan["fanout"]["seconds"],
            "1280x720",
            30,
            bitrate,
            transports=("webrtc", "websocket"),
        ),
        "capacity": capacity.run(
            plan["capacity"]["counts"],
            1,
            plan["capacity"]["seconds"],
            resolution="1280x720",
            pattern="text",
            still=False,
            bitrate=bitrate,
            min_fps=28.0,
        ),
        "quality": quality.run(
            plan["quality"]["resolutions"], EncoderSettings(), plan["quality"]["moving"], plan["quality"]["still"]
        ),
    }


def plots(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, PNG as a data: URL) for each plot."""
    try:
        import matplotlib  # noqa: PLC0415 - only the report needs it

        matplotlib.use("Agg")
        from matplotlib import pyplot  # noqa: PLC0415
    except ImportError:
        raise SystemExit(f"bench report needs matplotlib: {INSTALL_TEST_EXTRAS}") from None

    def figure(
        title: str,
        xlabel: str,
        ylabel: str,
        curves: list[tuple[str, list[float], list[float]]],
        marks: Marks = Marks(),
    ) -> str:
        fig, axes = pyplot.subplots(figsize=(6.4, 3.6), dpi=100)
        for label, xs, ys in curves:
            axes.plot(xs, ys, marker="." if len(xs) < 40 else None, label=label)
        for x, label in marks.vertical:
            axes.axvline(x, color="grey", linestyle="--", linewidth=1, label=label)
        for y, label in marks.horizontal:
            axes.axhline(y, color="grey", linestyle="--", linewidth=1, label=label)
        if marks.from_zero:
            axes.set_ylim(bottom=0, top=max(max(ys, default=0) for _, _, ys in curves) * 1.15 or None)
        axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
        axes.grid(alpha=0.3)
        axes.legend()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        pyplot.close(fig)
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    latency_curves = [
        (f"{r['resolution']} {measure.replace('_', ' ')}", cdf, [q / 100 for q in range(101)])
        for r in results["latency"]["runs"]
        for measure, cdf in r["cdf_ms"].items()
    ]
    fan, cap = results["fanout"]["runs"], results["capacity"]["runs"]
    by_viewers = [
        (f"server, {transport} viewers", [r["viewers"] for r in runs], [r["cpu_per_wall"] for r in runs])
        for transport in results["fanout"]["per_viewer_cpu_ms_per_frame"]
        if (runs := [r for r in fan if r["transport"] == transport])
    ]
    by_sessions = [("server", [r["sessions"] for r in cap], [r["cpu_per_wall"] for r in cap])]
    still = [
        (r["resolution"], [t for t, _ in r["still"]["trace"]], [db for _, db in r["still"]["trace"]])
        for r in results["quality"]["runs"]
    ]
    targets = Marks(vertical=[(LATENCY_P50_TARGET_MS, "p50 target"), (LATENCY_P99_TARGET_MS, "p99 target")])
    sharp = Marks(horizontal=[(results["quality"]["sharp_db"], "sharp")])
    return [
        ("Glass-to-glass in Chromium", figure("Latency CDF", "ms", "fraction of frames", latency_curves, targets)),
        ("Server CPU against viewers of one session", figure("Fan-out", "viewers", "cores", by_viewers, ZERO)),
        ("Server CPU against sessions (one viewer each)", figure("Capacity", "sessions", "cores", by_sessions, ZERO)),
        (
            "PSNR once the picture stops moving",
            figure("Still picture", "s after it stopped", "luma PSNR (dB)", still, sharp),
        ),
    ]


def headlines(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, figure) rows: the numbers a reader looks for, from each bench's JSON."""

    def triple(figures: dict[str, float]) -> str:
        return f"{figures['p50']} / {figures['p95']} / {figures['p99']} ms"

    def load(run: dict[str, Any]) -> str:
        return f"{run['cpu_per_wall']} cores, >= {run['fps_per_viewer_min']} fps each"

    rows = []
    for run in results["latency"]["runs"]:
        delay, size = run["glass_to_glass_ms"], run["resolution"]
        rows += [
            (f"glass-to-glass {size}, expected on screen, p50 / p95 / p99", triple(delay["expected_on_screen"])),
            (f"glass-to-glass {size}, as the console measured it", triple(delay["console_reported"])),
            (f"WHEP POST to first frame {size}", f"{run['whep_post_to_first_frame_ms']} ms"),
            (f"oldest frame a joiner was shown in its first 2 s, {size}", f"{run['join_phase_ms']['max']} ms"),
        ]
    fanout, capacity = results["fanout"], results["capacity"]
    rows += [(f"one session, {run['viewers']} {run['transport']} viewer(s)", load(run)) for run in fanout["runs"]]
    rows += [
        (f"one more {transport} viewer, on the event loop", f"{cost} ms per frame")
        for transport, cost in fanout["per_viewer_cpu_ms_per_frame"].items()
    ]
    rows += [(f"{run['sessions']} moving session(s), a viewer each", load(run)) for run in capacity["runs"]]
    rows.append((f"sessions held at >= {capacity['min_fps']} fps", str(capacity["sessions_held"])))
    for run in results["quality"]["runs"]:
        moving, still, size = run["moving"], run["still"], run["resolution"]
        rows += [
            (f"{size} moving, luma PSNR p50", f"{moving['psnr_db_p50']} dB at {moving['kbit_per_s']} kbit/s"),
            (
                f"{size} once it stops: sharp after, final (a joiner's)",
                f"{still['seconds_to_sharp']} s, {still['psnr_db_final']} dB ({still['joiner_psnr_db']} dB)",
            ),
        ]
    return rows


def write(output: Path, quick: bool) -> dict[str, Any]:
    results = run_all(quick)
    table = "".join(
        f"<tr><td>{html.escape(what)}</td><td>{html.escape(value)}</td></tr>" for what, value in headlines(results)
    )
    sections = "".join(
        f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="{url}">' for title, url in plots(results)
    )
    page = (
        "<!doctype html><meta charset=utf-8><title>vgpustream bench report</title>"
        "<style>body{font:14px sans-serif;max-width:60em;margin:auto}pre{white-space:pre-wrap;font-size:11px}"
        "td{padding:2px 12px 2px 0}</style>"
        f"<h1>vgpustream bench report{' (quick: smoke figures)' if quick else ''}</h1>"
        f"<table>{table}</table>{sections}"
        "<h2>Figures</h2><details><summary>every bench's JSON</summary>"
        f"<pre>{html.escape(json.dumps(results))}</pre></details>"
    )
    output.write_text(page)
    return {"output": str(output), "plots": 4, "quick": quick}
