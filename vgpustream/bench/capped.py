"""`vgpustream bench weaknet --cap-kbit N`: two Chromium consoles of one session, one of them on a thin link.

A `vgpustream serve` on the moving synthetic source; two consoles in Debian's Chromium (its default WebRTC
settings), each on a page of its own. The capped console's WHEP offer and answer are rewritten to name a
user-space relay (vgpustream.testing.netem.LossyLink) as their only candidates, so its media crosses a
bottleneck of N kbit/s with a 100 ms buffer, as a slow link's router has. Four phases, one after another:

1. baseline: the free console alone (its figures and the server's CPU with one rendition);
2. joined: the capped console joins through the relay, uncapped;
3. capped: the relay's rate drops to N kbit/s: the rung each console is on, second by second (from the API),
   how long the capped one took to settle on the rung it kept, then its frame rate and glass-to-glass delay
   over the phase, in thirds (growth shows as a rising p95), and the free one's figures against the baseline;
4. lifted: the cap goes; how long until the capped console is back on the top rung.

Glass-to-glass is what the console itself measures for every frame it shows (web/delay.js: abs-capture-time
against the frame's expected display time), collected from its once-a-second reports.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from vgpustream.bench.fanout import cpu_seconds
from vgpustream.bench.latency import percentiles
from vgpustream.testing.chromium import ARGS, CHROMIUM, WEBRTC_SETTINGS, start_playwright
from vgpustream.testing.netem import LossyLink
from vgpustream.testing.server import serve

OPERATOR_TOKEN = "weaknet-bench-operator"
SAMPLE_PERIOD = 1.0
LIFTED_TIMEOUT = 120.0
"""How long phase 4 waits for the capped console to be back on the top rung."""

COLLECT = """() => {
  const meter = window.vgpustream.delay;
  window.benchCapped = [];
  const report = meter.report.bind(meter);
  meter.report = () => { window.benchCapped.push(...meter.samples); report(); };
}"""
"""Keeps every glass-to-glass delay the console measures (its reports take at most 64 a second)."""

READ = """async () => {
  const delays = window.benchCapped.splice(0);
  let frames = 0, bytes = 0;
  for (const report of (await window.vgpustream.pc.getStats()).values())
    if (report.type === "inbound-rtp" && report.kind === "video") {
      frames += report.framesDecoded || 0;
      bytes += report.bytesReceived || 0;
    }
  return { delays, frames, bytes };
}"""


class Console:
    """One console page, read every SAMPLE_PERIOD: frames decoded, bytes received, the delays it measured."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.delays: list[float] = []
        self._frames = self._bytes = 0
        self._since = time.monotonic()

    async def start(self) -> None:
        await self.page.wait_for_function("() => window.vgpustream && window.vgpustream.state === 'playing'")
        await self.page.evaluate(COLLECT)
        await self.read()

    async def read(self) -> dict[str, float]:
        """Frames per second and kbit/s since the last read; the delays measured meanwhile are kept."""
        now, got = time.monotonic(), await self.page.evaluate(READ)
        seconds = max(1e-3, now - self._since)
        figures = {
            "fps": (got["frames"] - self._frames) / seconds,
            "kbps": (got["bytes"] - self._bytes) * 8 / 1000 / seconds,
        }
        self._frames, self._bytes, self._since = got["frames"], got["bytes"], now
        self.delays.extend(got["delays"])
        return figures


class Run:
    """The served session, its two consoles and what the phases measured."""

    def __init__(self, url: str, pid: int, http: aiohttp.ClientSession, link: LossyLink) -> None:
        self.url, self.pid, self.http, self.link = url, pid, http, link
        self.consoles: dict[str, Console] = {}
        self.trace: list[dict[str, Any]] = []
        """Second by second: the phase, each console's rung, frame rate and kbit/s."""
        self.started = time.monotonic()

    async def console_url(self) -> str:
        async with self.http.post(f"{self.url}/api/v1/sessions/default/tokens", json={"role": "view"}) as response:
            return (await response.json())["console_url"]

    async def rungs(self) -> dict[str, str | None]:
        """Each console's rendition, as the API lists the viewers (in the order they joined: free, capped)."""
        async with self.http.get(f"{self.url}/api/v1/sessions/default/viewers") as response:
            viewers = sorted((await response.json())["viewers"], key=lambda v: v["created_at"])
        return {name: v["rendition"] for name, v in zip(self.consoles, viewers, strict=False)}

    async def phase(self, name: str, seconds: float, until: str | None = None) -> dict[str, Any]:
        """Sample every second for `seconds` (or until the capped console's rung is `until`); the phase's
        figures per console, the server's CPU, and the seconds it took."""
        for console in self.consoles.values():
            await console.read()
            console.delays.clear()
        cpu, start = cpu_seconds(self.pid), time.monotonic()
        samples: dict[str, list[dict[str, float]]] = {n: [] for n in self.consoles}
        while time.monotonic() - start < seconds:
            await asyncio.sleep(SAMPLE_PERIOD)
            rungs = await self.rungs()
            row: dict[str, Any] = {"t": round(time.monotonic() - self.started, 1), "phase": name}
            for console_name, console in self.consoles.items():
                figures = await console.read()
                samples[console_name].append(figures)
                row[console_name] = {"rung": rungs.get(console_name), **{k: round(v) for k, v in figures.items()}}
            self.trace.append(row)
            if until is not None and rungs.get("capped") == until:
                break
        elapsed = time.monotonic() - start
        cores = (cpu_seconds(self.pid) - cpu) / elapsed
        result: dict[str, Any] = {"seconds": round(elapsed, 1), "cores": round(cores, 3)}
        for console_name, console in self.consoles.items():
            got = samples[console_name]
            result[console_name] = {
                "fps": round(float(np.mean([g["fps"] for g in got])), 1) if got else None,
                "kbps": round(float(np.mean([g["kbps"] for g in got]))) if got else None,
                "glass_to_glass_ms": percentiles(console.delays),
            }
        return result

    def settled_after(self, phase: str, since: float) -> dict[str, Any]:
        """The rung the capped console spent most of `phase` on, the seconds from `since` (run time) to its first
        second there, how often its rung changed in the phase (failed probes upward among them), and its frame
        rate from then on (the mean, and the least of a second)."""
        rows = [r for r in self.trace if r["phase"] == phase]
        rungs = [r["capped"]["rung"] for r in rows]
        kept = max(set(rungs), key=rungs.count)
        first = next(r["t"] for r in rows if r["capped"]["rung"] == kept)
        changes = sum(a != b for a, b in itertools.pairwise(rungs))
        settled = [r["capped"]["fps"] for r in rows if r["t"] > first]
        return {
            "rung": kept,
            "settled_s": round(max(0.0, first - since), 1),
            "rung_changes": changes,
            "settled_fps": round(float(np.mean(settled)), 1) if settled else None,
            "settled_min_fps": min(settled, default=None),
        }


async def _run(url: str, pid: int, cap_kbit: float, seconds: float) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    link = LossyLink()
    await link.open()

    playwright = await start_playwright()
    try:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        async with aiohttp.ClientSession(headers=auth) as http:
            run = Run(url, pid, http, link)
            free = await browser.new_page(viewport={"width": 1280, "height": 800})
            await free.goto(await run.console_url())
            run.consoles["free"] = Console(free)
            await run.consoles["free"].start()
            result: dict[str, Any] = {"baseline": await run.phase("baseline", seconds / 2)}
            capped = await browser.new_page(viewport={"width": 1280, "height": 800})
            await capped.route("**/whep/default", link.route)
            await capped.goto(await run.console_url())
            run.consoles["capped"] = Console(capped)
            await run.consoles["capped"].start()
            result["joined"] = await run.phase("joined", 5.0)
            link.impair(loss=0.0, rtt_ms=0.0, rate_kbps=cap_kbit)
            capped_at = time.monotonic() - run.started
            thirds = [await run.phase("capped", seconds / 3) for _ in range(3)]
            result["capped"] = {"thirds": thirds, **run.settled_after("capped", capped_at)}
            link.impair(loss=0.0, rtt_ms=0.0, rate_kbps=None)
            top = run.trace[0]["free"]["rung"]
            lifted = await run.phase("lifted", LIFTED_TIMEOUT, until=top)
            back = run.trace[-1]["capped"]["rung"] == top
            result["lifted"] = {"back_on_top_s": lifted["seconds"] if back else None, "top": top}
            result["trace"] = run.trace
            result["link"] = {"forwarded": link.stats.forwarded, "dropped": link.stats.dropped}
            await browser.close()
    finally:
        await playwright.stop()
        link.close()
    return result


def run(cap_kbit: float, *, seconds: float, resolution: str, bitrate: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vgpustream-capped-") as folder:
        env = {"VGPUSTREAM_OPERATOR_TOKEN": OPERATOR_TOKEN}
        args = ("--source", f"synthetic:{resolution}@30?pattern=text", "--bitrate", str(bitrate))
        with serve(Path(folder) / "state", *args, env=env) as served:
            result = asyncio.run(_run(served.url, served.process.pid, cap_kbit, seconds))
    result.update(cap_kbit=cap_kbit, seconds=seconds, resolution=resolution, bitrate=bitrate, browser=WEBRTC_SETTINGS)
    return result


def table(result: dict[str, Any]) -> str:
    def figures(f: dict[str, Any]) -> str:
        delays = f["glass_to_glass_ms"]
        p50, p95 = delays.get("p50"), delays.get("p95")
        return f"{f['fps']:5.1f} fps {f['kbps']:5d} kbit/s, glass-to-glass p50/p95 {p50}/{p95} ms"

    base, thirds, trace = result["baseline"], result["capped"]["thirds"], result["trace"]
    lines = [
        f"Two Chromium consoles of {result['resolution']} at {result['bitrate']} bit/s (moving text), one of them "
        f"capped at {result['cap_kbit']:g} kbit/s ({result['browser']})",
        f"baseline, the free console alone: {figures(base['free'])}; server {base['cores']} cores",
    ]
    for i, third in enumerate(thirds, 1):
        lines.append(
            f"capped, third {i}: capped {figures(third['capped'])} | free {figures(third['free'])}; "
            f"server {third['cores']} cores"
        )
    free_fps = np.mean([t["free"]["fps"] for t in thirds])
    free_kbps = np.mean([t["free"]["kbps"] for t in thirds])
    capped = result["capped"]
    lines += [
        f"the capped console was on {capped['rung']}, where it spent most of the capped phase, "
        f"{capped['settled_s']} s after the cap; its rung changed {capped['rung_changes']} times in the phase; "
        f"from then on {capped['settled_fps']} fps (the least second {capped['settled_min_fps']})",
        f"free console with the capped one beside it / alone: fps {free_fps / base['free']['fps']:.3f}, "
        f"bitrate {free_kbps / base['free']['kbps']:.3f} (the same encode of the top rendition: its pictures, "
        f"so their PSNR, are the ones it had alone); server CPU two rungs / one: "
        f"{np.mean([t['cores'] for t in thirds]) / base['cores']:.2f}",
        f"cap lifted: back on {result['lifted']['top']} after {result['lifted']['back_on_top_s']} s",
        "rung trace (s: capped console's rung, fps):",
        "  " + ", ".join(f"{r['t']:g}: {r['capped']['rung']} {r['capped']['fps']}" for r in trace if "capped" in r),
    ]
    return "\n".join(lines)
