"""`vgpustream bench weaknet`: one viewer of several on a lossy, slow link; what it gets, and what the others lose.

Every viewer decodes (aiortc); one of them receives through a user-space relay (vgpustream.testing.netem)
that drops and delays its packets both ways. The same viewers are measured twice in one run: with
the link clean, then with it impaired, so every figure has its baseline beside it. Per viewer: frames
per second, the longest gap between two decoded frames (a freeze), and the bitrate received; for
the session: keyframes encoded, and how many keyframe requests of viewers were held back.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from vgpustream.compat import advertise_host_addresses
from vgpustream.testing.netem import LossyLink
from vgpustream.testing.receiver import WhepReceiver
from vgpustream.testing.server import serve

OPERATOR_TOKEN = "weaknet-bench-operator"


async def watch(receiver: WhepReceiver, seconds: float) -> dict[str, float]:
    """Frames per second and the longest gap between decoded frames over `seconds`, and kbit/s received."""
    frames, worst, last = 0, 0.0, time.monotonic()
    received = await _bytes_received(receiver)
    end = last + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            await receiver.next_frame(timeout=left)
        except TimeoutError:
            break
        now = time.monotonic()
        frames, worst, last = frames + 1, max(worst, now - last), now
    worst = max(worst, time.monotonic() - last)
    kbits = (await _bytes_received(receiver) - received) * 8 / 1000
    return {"fps": round(frames / seconds, 1), "longest_gap_s": round(worst, 2), "kbps": round(kbits / seconds)}


async def _bytes_received(receiver: WhepReceiver) -> int:
    report = await receiver.pc.getStats()
    return sum(s.bytesReceived for s in report.values() if s.type == "transport")


async def _session(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/api/v1/sessions/default") as response:
        return (await response.json())["stats"]


async def _phase(http: aiohttp.ClientSession, url: str, viewers: list[WhepReceiver], seconds: float) -> dict[str, Any]:
    before = await _session(http, url)
    figures = await asyncio.gather(*(watch(v, seconds) for v in viewers))
    after = await _session(http, url)
    return {
        "viewers": figures,
        "frames_encoded": after["frames_encoded"] - before["frames_encoded"],
        "keyframes": after["keyframes"] - before["keyframes"],
        "keyframe_requests_limited": after["keyframe_requests_limited"] - before["keyframe_requests_limited"],
    }


async def _run(url: str, viewers: int, loss: float, rtt_ms: float, seconds: float) -> dict[str, Any]:
    advertise_host_addresses(["127.0.0.1"])
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    link = LossyLink()
    await link.open()
    async with aiohttp.ClientSession(headers=auth) as http:
        receivers = [WhepReceiver(f"{url}/whep/default", http) for _ in range(viewers - 1)]
        receivers.append(WhepReceiver(f"{url}/whep/default", http, link=link))
        for receiver in receivers:
            await receiver.connect()
            await receiver.next_frame()
        await asyncio.gather(*(r.receive_for(2.0) for r in receivers))  # past the first keyframe's burst
        clean = await _phase(http, url, receivers, seconds)
        link.impair(loss, rtt_ms)
        impaired = await _phase(http, url, receivers, seconds)
        for receiver in receivers:
            await receiver.close()
    link.close()
    others = [
        round(i["fps"] / c["fps"], 3) if c["fps"] else None
        for c, i in zip(clean["viewers"][:-1], impaired["viewers"][:-1], strict=True)
    ]
    for phase in (clean, impaired):  # what each viewer got of what was encoded: the server's own pace aside
        for figures in phase["viewers"]:
            figures["share"] = round(figures["fps"] * seconds / max(1, phase["frames_encoded"]), 3)
    return {
        "viewers": viewers,
        "loss": loss,
        "rtt_ms": rtt_ms,
        "seconds": seconds,
        "clean": clean,
        "impaired": impaired,
        "link": {"forwarded": link.stats.forwarded, "dropped": link.stats.dropped},
        "others_fps_ratio": others,
        "lossy_fps": impaired["viewers"][-1]["fps"],
        "lossy_longest_gap_s": impaired["viewers"][-1]["longest_gap_s"],
    }


def run(viewers: int, loss: float, rtt_ms: float, *, seconds: float, resolution: str, bitrate: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vgpustream-weaknet-") as folder:
        env = {"VGPUSTREAM_OPERATOR_TOKEN": OPERATOR_TOKEN}
        args = ("--source", f"synthetic:{resolution}@30?pattern=text", "--bitrate", str(bitrate))
        with serve(Path(folder) / "state", *args, env=env) as served:
            result = asyncio.run(_run(served.url, viewers, loss, rtt_ms, seconds))
    result["resolution"], result["bitrate"] = resolution, bitrate
    return result


def table(result: dict[str, Any]) -> str:
    def row(name: str, phase: dict[str, Any]) -> str:
        cells = "  ".join(
            f"{v['fps']:5.1f} fps ({v['share']:.0%}) {v['longest_gap_s']:5.2f} s {v['kbps']:5d} kbit/s"
            for v in phase["viewers"]
        )
        return (
            f"{name:9} {cells}  | keyframes {phase['keyframes']}, requests held back "
            f"{phase['keyframe_requests_limited']}, frames encoded {phase['frames_encoded']}"
        )

    return "\n".join(
        [
            f"{result['viewers']} viewers of {result['resolution']} at {result['bitrate']} bit/s; the last one on a "
            f"link with {result['loss']:.0%} loss and {result['rtt_ms']:g} ms RTT, {result['seconds']:g} s each",
            "          per viewer: fps (of the frames encoded), longest gap between frames, bitrate received",
            row("clean", result["clean"]),
            row("impaired", result["impaired"]),
            f"others' fps impaired/clean: {result['others_fps_ratio']}; the lossy viewer {result['lossy_fps']} fps, "
            f"longest gap {result['lossy_longest_gap_s']} s; link dropped {result['link']['dropped']} of "
            f"{result['link']['dropped'] + result['link']['forwarded']} packets",
        ]
    )
