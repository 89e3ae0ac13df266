"""A WHEP viewer in its own process: `python tests/receiver_process.py URL TOKEN`.

Prints "ready" once it has decoded a frame, then keeps receiving until killed. Tests freeze it
with SIGSTOP to play a viewer that stops reading.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp

from vgpustream.compat import advertise_host_addresses
from vgpustream.testing.receiver import WhepReceiver


async def main(url: str, token: str) -> None:
    advertise_host_addresses(["127.0.0.1"])
    async with aiohttp.ClientSession() as http:
        receiver = WhepReceiver(url, http, token=token)
        await receiver.connect()
        await receiver.next_frame()
        print("ready", flush=True)
        while True:
            await receiver.next_frame(timeout=60)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
