"""A process of `bench fanout` viewers: `python -m vgpustream.bench.worker URL COUNT SECONDS [--decode]`.

It connects COUNT viewers (aiortc's over WHEP, or WebSocket viewers where URL is a /ws/ address) and prints
`ready` once each has received a frame. It keeps them
receiving, reads the window's start (wall-clock seconds) from a line of its stdin, counts what each
gets between that start and SECONDS later, and prints one JSON line with the counts.

Without --decode the viewers do not decode: aiortc's receiver decodes every frame it assembles,
and sixteen decoders would starve a two-core machine that also runs the server. In this process
only, aiortc hands the assembled (still encoded) frames through (`compat.count_frames_without_decoding`),
so the viewers count whole frames without decoding them; WebSocket viewers count access units.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from typing import Any

import aiohttp

from vgpustream import compat
from vgpustream.testing.receiver import WhepReceiver
from vgpustream.testing.wsreceiver import WebSocketReceiver


async def watch(
    receiver: WhepReceiver | WebSocketReceiver, window: asyncio.Future[float], seconds: float
) -> dict[str, Any]:
    """Receive all along (a frame left waiting would be counted when read, not when it came); count the
    frames received within the window, once its start is known."""
    frames, stamps = 0, set()
    while True:
        start = window.result() if window.done() else math.inf
        if (now := time.time()) >= start + seconds:
            break
        try:
            received = await receiver.next_frame(timeout=max(0.1, min(start + seconds - now, 1.0)))
        except TimeoutError:
            if window.done():
                break
            continue
        if start <= received.received_at < start + seconds:
            frames += 1
            if received.stamp is not None:
                stamps.add(received.stamp.frame)
    return {"frames": frames, "stamped_frames": len(stamps)}


async def main(url: str, count: int, seconds: float, decode: bool) -> None:
    compat.check_versions()
    compat.advertise_host_addresses(["127.0.0.1"])
    if not decode:
        compat.count_frames_without_decoding()
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        receivers: list[WhepReceiver | WebSocketReceiver] = [
            WebSocketReceiver(url, http, decode=decode)
            if "/ws/" in url
            else WhepReceiver(url, http, input_channel=False)
            for _ in range(count)
        ]
        await asyncio.gather(*(r.connect() for r in receivers))
        await asyncio.gather(*(r.next_frame() for r in receivers))
        window: asyncio.Future[float] = loop.create_future()
        watching = [asyncio.create_task(watch(r, window, seconds)) for r in receivers]
        print("ready", flush=True)
        window.set_result(float(await loop.run_in_executor(None, sys.stdin.readline)))
        results = await asyncio.gather(*watching)
        await asyncio.gather(*(r.close() for r in receivers))
    print(json.dumps({"decode": decode, "viewers": results}), flush=True)


if __name__ == "__main__":
    url, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    asyncio.run(main(url, count, seconds, "--decode" in sys.argv[4:]))
