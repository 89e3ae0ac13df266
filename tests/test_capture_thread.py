"""The thread boundary: a source that blocks stalls only its own capture thread, never the API."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time

from tests.conftest import OPERATOR

VMM_HANDSHAKE_TIMEOUT = 5.0  # how long vgpustream waits for a VMM to send the device fd


async def test_the_api_answers_while_a_vfio_source_is_stalled(make_server, anonymous, tmp_path):
    # a VMM that takes the connection and never sends the device: the source's open blocks for seconds
    path = tmp_path / "vmm.sock"
    vmm = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    vmm.bind(str(path))
    vmm.listen()
    vmm.setblocking(False)
    try:
        server = await make_server(source=f"vfio-fd:unix:{path}")
        loop = asyncio.get_running_loop()
        connection, _ = await asyncio.wait_for(loop.sock_accept(vmm), timeout=10)
        stalled_since = time.monotonic()
        timings = []
        for _ in range(20):
            start = time.perf_counter()
            async with anonymous.get(server.make_url("/api/v1/sessions"), headers=OPERATOR) as response:
                assert response.status == 200
                (session,) = (await response.json())["sessions"]
            timings.append(time.perf_counter() - start)
            await asyncio.sleep(0.05)
        assert time.monotonic() - stalled_since < VMM_HANDSHAKE_TIMEOUT, "the source was stalled throughout"
        assert session["state"] == "starting"
        assert statistics.median(timings) < 0.020, f"GET /api/v1/sessions took {timings}"
        assert max(timings) < 0.5, f"GET /api/v1/sessions took {timings}"
        connection.close()  # the VMM hangs up: the source is lost, and the API says so
        for _ in range(50):
            async with anonymous.get(server.make_url("/api/v1/sessions/default"), headers=OPERATOR) as response:
                if (await response.json())["state"] == "lost":
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("a VMM that hung up without a device must make the source 'lost'")
    finally:
        vmm.close()
