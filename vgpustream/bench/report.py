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
from pathlib import Path
from typing import Any

from vgpustream.bench import capacity, fanout, latency, quality
from vgpustream.encoder import EncoderSettings

FULL = {
    "latency": {"resolutions": ["1280x720", "1920x1080"], "frames": 900},
    "fanout": {"counts": [1, 4, 8, 16], "seconds": 10.0},
    "capacity": {"counts": [1, 2, 4, 6, 8], "seconds": 10.0},
    "quality": {"resolutions": [(1280, 720), (1920, 1080)], "moving": 3.0, "still": 3.0},
}
QUICK = {
    "latency": {"resolutions": ["640x360"], "frames": 60},
    "fanout": {"counts": [1, 2], "seconds": 2.0},
    "capacity": {"counts": [1, 2], "seconds": 2.0},
    "quality": {"resolutions": [(320, 240)], "moving": 0.5, "still": 1.0},
}


def run_all(quick: bool) -> dict[str, Any]:
    plan, bitrate = QUICK if quick else FULL, EncoderSettings().bitrate
    return {
        "latency": latency.run(plan["latency"]["resolutions"], plan["latency"]["frames"], bitrate),
        "fanout": fanout.run(plan["fanout"]["counts"], plan["fanout"]["seconds"], "1280x720", 30, bitrate),
        "capacity": capacity.run(
            plan["capacity"]["counts"],
            1,
            plan["capacity"]["seconds"],
            resolution="1280x720",
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
        raise SystemExit("bench report needs matplotlib: pip install 'vgpustream[test]'") from None

    def figure(title: str, xlabel: str, ylabel: str, curves: list[tuple[str, list[float], list[float]]]) -> str:
        fig, axes = pyplot.subplots(figsize=(6.4, 3.6), dpi=100)
        for label, xs, ys in curves:
            axes.plot(xs, ys, marker="." if len(xs) < 40 else None, label=label)
        axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
        axes.grid(alpha=0.3)
        axes.legend()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        pyplot.close(fig)
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    latency_curves = [(r["resolution"], r["cdf_ms"], [q / 100 for q in range(101)]) for r in results["latency"]["runs"]]
    fan, cap = results["fanout"]["runs"], results["capacity"]["runs"]
    by_viewers = [("server", [r["viewers"] for r in fan], [r["cpu_per_wall"] for r in fan])]
    by_sessions = [("server", [r["sessions"] for r in cap], [r["cpu_per_wall"] for r in cap])]
    still = [
        (r["resolution"], [t for t, _ in r["still"]["trace"]], [db for _, db in r["still"]["trace"]])
        for r in results["quality"]["runs"]
    ]
    return [
        ("Glass-to-glass in Chromium", figure("Latency CDF", "ms", "fraction of frames", latency_curves)),
        ("Server CPU against viewers of one session", figure("Fan-out", "viewers", "cores", by_viewers)),
        ("Server CPU against sessions (one viewer each)", figure("Capacity", "sessions", "cores", by_sessions)),
        ("PSNR once the picture stops moving", figure("Still picture", "s after it stopped", "luma PSNR (dB)", still)),
    ]


def write(output: Path, quick: bool) -> dict[str, Any]:
    results = run_all(quick)
    sections = "".join(
        f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="{url}">' for title, url in plots(results)
    )
    page = (
        "<!doctype html><meta charset=utf-8><title>vgpustream bench report</title>"
        "<style>body{font:14px sans-serif;max-width:60em;margin:auto}pre{white-space:pre-wrap;font-size:11px}</style>"
        f"<h1>vgpustream bench report{' (quick: smoke figures)' if quick else ''}</h1>{sections}"
        f"<h2>Figures</h2><pre>{html.escape(json.dumps(results, indent=1))}</pre>"
    )
    output.write_text(page)
    return {"output": str(output), "plots": 4, "quick": quick}
