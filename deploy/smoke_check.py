"""Watch a running vgpustream through WHEP and check the picture: `python3 deploy/smoke_check.py URL TOKEN`.

Used by deploy/smoke-test.sh against the container; exits non-zero unless decoded frames carrying the
synthetic source's frame stamp arrive.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp

from vgpustream.compat import advertise_host_addresses
from vgpustream.testing.receiver import WhepReceiver

FRAMES = 30


async def main(base: str, token: str) -> int:
    advertise_host_addresses(["127.0.0.1"])
    async with aiohttp.ClientSession() as http:
        receiver = WhepReceiver(f"{base}/whep/default", http, token=token)
        await receiver.connect()
        frames = [await receiver.next_frame() for _ in range(FRAMES)]
        await receiver.close()
    stamped = [f.stamp.frame for f in frames if f.stamp is not None]
    size = f"{frames[-1].picture.width}x{frames[-1].picture.height}"
    print(f"smoke: {len(frames)} frames decoded ({size}), {len(stamped)} with a readable stamp")
    return 0 if len(stamped) >= FRAMES * 0.9 and stamped == sorted(stamped) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
