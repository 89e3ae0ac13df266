"""Resources come back: viewers that come and go leave no fds or tasks behind; sessions stop cleanly."""

from __future__ import annotations

import asyncio
import os
import threading

import aiohttp

from tests.conftest import OPERATOR
from tests.served import serve
from vgpustream.api.app import BACKGROUND_THREADS
from vgpustream.api.state import REGISTRY
from vgpustream.input.events import ResizeEvent
from vgpustream.testing import server
from vgpustream.testing.receiver import WhepReceiver

CYCLES = 200
BATCH = 4


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def within(now: tuple[int, int], baseline: tuple[int, int]) -> bool:
    """Fds and tasks each at most the baseline's (tuples' own <= would let fewer fds hide more tasks)."""
    return all(count <= bound for count, bound in zip(now, baseline, strict=True))


async def settle(baseline: tuple[int, int], seconds: float = 10.0) -> tuple[int, int]:
    """Fds and tasks now, after giving closing transports up to `seconds` to finish."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        now = (open_fds(), len(asyncio.all_tasks()))
        if within(now, baseline) or loop.time() > deadline:
            return now
        await asyncio.sleep(0.2)


async def test_viewer_churn_leaks_nothing(make_server):
    server = await make_server(source="synthetic:320x240@30")
    session = server.app[REGISTRY].get("default")
    url = str(server.make_url("/whep/default"))
    # no keep-alive: a pooled HTTP connection is an fd on each side and a server task, and how many
    # the pool holds depends on how the requests of a batch happen to overlap
    async with aiohttp.ClientSession(headers=OPERATOR, connector=aiohttp.TCPConnector(force_close=True)) as http:

        async def cycle() -> None:
            receiver = WhepReceiver(url, http)
            await receiver.connect()
            await receiver.next_frame()  # really streamed: attached to the fan-out and decoded
            await receiver.close()

        await asyncio.gather(*(cycle() for _ in range(BATCH)))  # warm-up: lazily created pools and caches
        baseline = await settle((0, 0), seconds=2.0)
        for _ in range(CYCLES // BATCH):
            await asyncio.gather(*(cycle() for _ in range(BATCH)))
    assert len(session.audience) == 0
    after = await settle(baseline)
    assert within(after, baseline), f"(fds, tasks) were {baseline}, now {after}"


async def test_closing_the_peer_without_delete_frees_the_viewer(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    session = server.app[REGISTRY].get("default")
    receiver = WhepReceiver(str(server.make_url("/whep/default")), http)
    await receiver.connect()
    await receiver.next_frame()
    assert len(session.audience) == 1
    await receiver.pc.close()  # the browser tab goes away without saying goodbye
    for _ in range(100):
        if len(session.audience) == 0:
            break
        await asyncio.sleep(0.1)
    assert len(session.audience) == 0, "a viewer whose peer closed must be freed"


async def test_mode_change_keeps_the_stream_going(make_server, viewers):
    server = await make_server(source="synthetic:640x360@30?resize=1")
    receiver = await viewers(server)
    assert (await receiver.next_frame()).picture.width == 640
    await server.app[REGISTRY].get("default").capture.resize(ResizeEvent(480, 270))
    for _ in range(90):
        frame = await receiver.next_frame()
        if (frame.picture.width, frame.picture.height) == (480, 270) and frame.stamp is not None:
            break
    else:
        raise AssertionError("the stream never came back at the new size")
    assert (await receiver.next_frame()).picture.width == 480


async def test_deleted_sessions_leave_no_threads_behind(tmp_path):
    """Each watched session runs native threads (x264's, FFmpeg's scaler slices): a deleted one takes them along."""
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        with serve(tmp_path / "state") as served:

            async def watched_session(name: str) -> None:
                body = {"id": name, "source": "synthetic:320x240@15"}
                async with http.post(f"{served.url}/api/v1/sessions", json=body) as response:
                    assert response.status == 201
                receiver = WhepReceiver(f"{served.url}/whep/{name}", http)
                await receiver.connect()
                await receiver.next_frame()  # encoded: the encoder and the scaler are running
                async with http.delete(f"{served.url}/api/v1/sessions/{name}") as response:
                    assert response.status == 204
                await receiver.close()

            await watched_session("warm-up")
            baseline = server.resources(served.process.pid)
            for i in range(4):
                await watched_session(f"vm{i}")
            after = await server.settle(served.process.pid, baseline)
            assert after["threads"] <= baseline["threads"], (baseline, after)


async def test_the_background_threads_all_start_with_the_server(make_server):
    """Started at once, not by the first requests that need them: a later request cannot look as if it
    had left a thread behind, and the thread counts the benches compare hold still from the start."""
    await make_server(source="synthetic:320x240@30")
    names = [t.name for t in threading.enumerate() if t.name.startswith("vgpustream-background")]
    assert len(names) == BACKGROUND_THREADS, names
