"""`vgpustream bench latency`: glass-to-glass delay in Chromium, and page load to the first frame.

A `vgpustream serve` on the moving synthetic source, the web console in Debian's Chromium on loopback.
The synthetic source stamps each picture with its capture time (vgpustream.media.stamp); the page reads the
stamp back from every frame it is handed (`requestVideoFrameCallback`, the stamp's cells drawn to a
canvas) and compares it with the clock: server and browser share this host's clock. Two figures per
frame: when the page was handed the frame, and when Chromium expects it on the screen
(`expectedDisplayTime`), after a warm-up of WARM_UP frames. The first frame: from the console's WHEP
POST to the first frame handed over. Beside them, the delays the console itself measured and reported
(from each frame's abs-capture-time, see web/delay.js), which should agree with the stamps.

Then the first frame as a person sees it: LOADS fresh pages of the console, one after the other (the
session idle in between, as a VM nobody watches), each from navigation to the first frame presented
(`requestVideoFrameCallback`), with how long its WHEP POST took to be answered. Chromium runs with its
default WebRTC settings (vgpustream.testing.chromium.ARGS), which the result names.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vgpustream.media.stamp import COLUMNS, ROWS
from vgpustream.testing.chromium import ARGS, CHROMIUM, WEBRTC_SETTINGS, ConsolePage
from vgpustream.testing.server import serve

TIMEOUT = 120.0
WARM_UP = 30  # frames: the first second shows the connection starting up, not the steady delay
REPORTED = 30  # the console's own delay figures after its warm-up: at least a second of them
JOIN_PHASE_MS = 2000  # after a viewer's first frame: what issue 30 calls the join phase
JOINED = f"""() => window.benchLatency.first !== null
  && performance.timeOrigin + performance.now() - window.benchLatency.first > {JOIN_PHASE_MS + 200}"""

READ_STAMPS = f"""
(() => {{
  const COLUMNS = {COLUMNS}, ROWS = {ROWS};
  window.benchLatency = {{ handed: [], displayed: [], frames: [], joined: [], post: null, first: null, seen: 0 }};
  const fetch = window.fetch;
  window.fetch = (url, options) => {{
    if (options && options.method === "POST" && String(url).includes("/whep/") && window.benchLatency.post === null)
      window.benchLatency.post = performance.timeOrigin + performance.now();
    return fetch(url, options);
  }};
  const crc16 = (bytes) => {{  // CRC-16/CCITT-FALSE, as the stamp's writer (binascii.crc_hqx, 0xFFFF)
    let crc = 0xffff;
    for (const byte of bytes) {{
      crc ^= byte << 8;
      for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }}
    return crc;
  }};
  const read = (video, canvas, context) => {{
    const cell = Math.max(4, Math.min(16, Math.floor(video.videoWidth / 64)));
    const width = COLUMNS * cell, height = ROWS * cell;
    if (canvas.width !== width) {{ canvas.width = width; canvas.height = height; }}
    context.drawImage(video, 0, 0, width, height, 0, 0, width, height);
    const data = context.getImageData(0, 0, width, height).data;
    const bytes = new Uint8Array(12);
    for (let bit = 0; bit < COLUMNS * ROWS; bit++) {{
      const row = Math.floor(bit / COLUMNS), column = bit % COLUMNS;
      const edge = Math.floor(cell / 4);  // the inner half of the cell: its edges blur under lossy coding
      let sum = 0, count = 0;
      for (let y = row * cell + edge; y < (row + 1) * cell - edge; y++)
        for (let x = column * cell + edge; x < (column + 1) * cell - edge; x++) {{
          const i = (y * width + x) * 4;
          sum += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
          count++;
        }}
      if (sum / count > 128) bytes[bit >> 3] |= 0x80 >> (bit & 7);
    }}
    if (crc16(bytes.subarray(0, 10)) !== (bytes[10] << 8 | bytes[11])) return null;
    let time = 0;
    for (let i = 4; i < 10; i++) time = time * 256 + bytes[i];
    return {{ frame: (bytes[0] << 24 | bytes[1] << 16 | bytes[2] << 8 | bytes[3]) >>> 0, time }};
  }};
  const watch = () => {{
    const video = document.getElementById("screen");
    if (!video) return setTimeout(watch, 10);
    const canvas = document.createElement("canvas");
    const context = canvas.getContext("2d", {{ willReadFrequently: true }});
    const onFrame = (now, metadata) => {{
      const handed = performance.timeOrigin + performance.now();
      const results = window.benchLatency;
      if (results.first === null) results.first = handed;
      const joining = handed - results.first < {JOIN_PHASE_MS};  // every frame of the join phase
      const steady = results.seen++ >= {WARM_UP};
      const stamp = joining || steady ? read(video, canvas, context) : null;
      if (stamp !== null) {{
        const displayed = performance.timeOrigin + metadata.expectedDisplayTime - stamp.time;
        if (joining) results.joined.push(displayed);
        if (steady) {{
          results.frames.push(stamp.frame);
          results.handed.push(handed - stamp.time);
          results.displayed.push(displayed);
        }}
      }}
      video.requestVideoFrameCallback(onFrame);
    }};
    video.requestVideoFrameCallback(onFrame);
  }};
  document.addEventListener("DOMContentLoaded", watch);
}})();
"""


FIRST_FRAME = """
// navigation to the first frame presented, and how long the WHEP POST took to be answered
window.benchFirst = { frame: null, post: null };
(() => {
  const fetch = window.fetch;
  window.fetch = async (url, options) => {
    if (!options || options.method !== "POST" || !String(url).includes("/whep/")) return fetch(url, options);
    const started = performance.now();
    const response = await fetch(url, options);
    if (window.benchFirst.post === null) window.benchFirst.post = performance.now() - started;
    return response;
  };
  document.addEventListener("DOMContentLoaded", () => {
    const video = document.getElementById("screen");
    video.requestVideoFrameCallback(() => (window.benchFirst.frame = performance.now()));
  });
})();
"""


RECORD_DELAY_REPORTS = """
// the console's own delay reports (abs-capture-time to expected display), as it sends them
window.delayReports = [];
(() => {
  for (const channel of [RTCDataChannel, WebSocket]) {
    const send = channel.prototype.send;
    channel.prototype.send = function (data) {
      if (typeof data === "string" && data.startsWith('{"type":"delay"')) window.delayReports.push(JSON.parse(data).ms);
      return send.call(this, data);
    };
  }
})();
"""


ENOUGH = """([frames, reported]) =>
  window.benchLatency.handed.length >= frames && window.delayReports.flat().length >= reported"""


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)}


def spread(values: list[float]) -> dict[str, Any]:
    """p50, min and max of `values`, and all of them, rounded to 0.1."""
    return {
        "p50": round(float(np.median(values)), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "all": [round(v, 1) for v in values],
    }


async def first_frame(browser: Any, url: str) -> tuple[float, float]:
    """A fresh page of the console in `browser`: ms from navigation to its first frame, and its WHEP POST's ms."""
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        await page.add_init_script(FIRST_FRAME)
        await page.goto(url)
        await page.wait_for_function("() => window.benchFirst.frame !== null", timeout=TIMEOUT * 1000)
        result = await page.evaluate("window.benchFirst")
        return result["frame"], result["post"]
    finally:
        await page.close()


async def join_phase(browser: Any, url: str) -> list[float]:
    """A fresh page of the console joining a session others watch: how old (ms, capture to expected on
    screen) each frame it shows in its first JOIN_PHASE_MS is. `browser`: a Playwright Browser or context."""
    page = await browser.new_page()
    await page.set_viewport_size({"width": 1280, "height": 800})
    try:
        await page.add_init_script(READ_STAMPS)
        await page.goto(url)
        await page.wait_for_function(JOINED, timeout=TIMEOUT * 1000)
        return await page.evaluate("window.benchLatency.joined")
    finally:
        await page.close()


async def measure(
    resolution: str, frames: int, bitrate: int, chromium: str, *, loads: int, joins: int, transport: str
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vgpustream-bench-latency-") as folder:
        source = f"synthetic:{resolution}@30?pattern=text"
        args = ("--insecure-no-auth", "--source", source, "--bitrate", str(bitrate))
        with serve(Path(folder) / "state", *args) as served:
            page_url = f"{served.url}/?session=default&transport={transport}"
            scripts = READ_STAMPS + RECORD_DELAY_REPORTS
            console = ConsolePage(page_url, chromium, scripts)
            async with console as page:
                deadline = time.monotonic() + TIMEOUT
                while not await page.evaluate(ENOUGH, [frames, WARM_UP + REPORTED]):
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"fewer than {frames} stamped frames or {REPORTED} reported within {TIMEOUT:g} s"
                        )
                    await asyncio.sleep(0.5)
                results = await page.evaluate("window.benchLatency")
                reported = [ms for report in await page.evaluate("window.delayReports") for ms in report]
                # while this page watches, the session is moving and encoded: viewers join it
                joined = [await join_phase(console.browser, page_url) for _ in range(joins)]
                await page.close()
                firsts = [await first_frame(console.browser, page_url) for _ in range(loads)]
    numbers = results["frames"][:frames]
    # over the WebSocket there is no WHEP POST
    post_to_first = None if results["post"] is None else round(results["first"] - results["post"], 1)
    return {
        "resolution": resolution,
        "transport": transport,
        "bitrate": bitrate,
        "frames": len(numbers),
        "frames_skipped": numbers[-1] - numbers[0] + 1 - len(set(numbers)),
        "whep_post_to_first_frame_ms": post_to_first,
        "page_load_to_first_frame_ms": spread([frame for frame, _ in firsts]),
        "join_phase_ms": {
            "joins": joins,
            "max_per_join": [round(max(ages), 1) for ages in joined if ages],
            **percentiles([age for ages in joined for age in ages]),
            "max": round(max((age for ages in joined for age in ages), default=float("nan")), 1),
        },
        "whep_post_answered_ms": None if transport == "websocket" else spread([post for _, post in firsts]),
        "glass_to_glass_ms": {
            "handed_to_page": percentiles(results["handed"][:frames]),
            "expected_on_screen": percentiles(results["displayed"][:frames]),
            "console_reported": percentiles(reported[WARM_UP:]),
        },
        "cdf_ms": {
            measure: [round(float(v), 1) for v in np.percentile(results[key][:frames], range(101))]
            for measure, key in (("handed_to_page", "handed"), ("expected_on_screen", "displayed"))
        },
    }


def run(
    resolutions: list[str],
    frames: int,
    bitrate: int,
    chromium: str = CHROMIUM,
    *,
    loads: int = 10,
    joins: int = 10,
    transports: tuple[str, ...] = ("webrtc",),
) -> dict[str, Any]:
    """Each resolution over each transport (the console's transport=), one after the other in one run."""
    runs = [
        asyncio.run(measure(resolution, frames, bitrate, chromium, loads=loads, joins=joins, transport=transport))
        for resolution in resolutions
        for transport in transports
    ]
    browser = {"chromium": chromium, "flags": ARGS, "webrtc": WEBRTC_SETTINGS}
    return {"cpus": os.cpu_count(), "browser": browser, "loads": loads, "runs": runs}
