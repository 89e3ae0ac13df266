"""A process of `bench fanout` viewers: `python -m vgpustream.bench.worker URL COUNT START SECONDS [--decode]`.

It connects COUNT aiortc viewers, keeps them receiving, counts what each gets between the wall-clock
times START and START+SECONDS, and prints one JSON line with the counts.

Without --decode the viewers do not decode: aiortc's receiver decodes every frame it assembles,
and sixteen decoders would starve a two-core machine that also runs the server. In this process
only, aiortc hands the assembled (still encoded) frames through (`compat.count_frames_without_decoding`),
so the viewers count whole frames without decoding them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

from vgpustream import compat
from vgpustream.testing.receiver import WhepReceiver


async def watch(receiver: WhepReceiver, start: float, end: float) -> dict[str, Any]:
    frames, stamps = 0, set()
    while (now := time.time()) < end:
        try:
            received = await receiver.next_frame(timeout=max(0.1, end - now))
        except TimeoutError:
            break
        if start <= received.received_at < end:
            frames += 1
            if received.stamp is not None:
                stamps.add(received.stamp.frame)
    return {"frames": frames, "stamped_frames": len(stamps)}


async def main(url: str, count: int, start: float, seconds: float, decode: bool) -> None:
    compat.check_versions()
    compat.advertise_host_addresses(["127.0.0.1"])
    if not decode:
        compat.count_frames_without_decoding()
    async with aiohttp.ClientSession() as http:
        receivers = [WhepReceiver(url, http, input_channel=False) for _ in range(count)]
        await asyncio.gather(*(r.connect() for r in receivers))
        results = await asyncio.gather(*(watch(r, start, start + seconds) for r in receivers))
        await asyncio.gather(*(r.close() for r in receivers))
    print(json.dumps({"decode": decode, "viewers": results}), flush=True)


if __name__ == "__main__":
    url, count, start, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    asyncio.run(main(url, count, start, seconds, "--decode" in sys.argv[5:]))
