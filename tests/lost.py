"""A session whose source is lost and comes back, as the API and a watching viewer see it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import av
from aiohttp.test_utils import TestServer

from tests.conftest import OPERATOR
from tests.pictures import psnr
from vgpustream.media.stamp import luma
from vgpustream.sources.common import placeholder
from vgpustream.testing.receiver import WhepReceiver


async def session_state(http: aiohttp.ClientSession, server: TestServer) -> dict[str, Any]:
    async with http.get(server.make_url("/api/v1/sessions/default"), headers=OPERATOR) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def wait_state(
    http: aiohttp.ClientSession, server: TestServer, state: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (session := await session_state(http, server))["state"] != state:
        assert time.monotonic() < deadline, f"session state stayed {session['state']}, expected {state}"
        await asyncio.sleep(0.1)
    return session


def shows_no_signal(picture: av.VideoFrame) -> bool:
    """Whether a decoded picture is the NO SIGNAL placeholder the pipeline shows while a source is lost."""
    expected = luma(av.VideoFrame.from_ndarray(placeholder.no_signal(), format="bgra").reformat(format="yuv420p"))
    return (picture.height, picture.width) == expected.shape and psnr(luma(picture), expected, 0) > 30


async def viewer_sees(viewer: WhepReceiver, state: str, no_signal_shown: bool, timeout: float = 30) -> None:
    """Until the viewer was last told `state` and its latest picture is (or is not) NO SIGNAL."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):  # a still picture sends nothing new
            await viewer.next_frame(timeout=1.0)
        told = [m["state"] for m in viewer.messages if m["type"] == "state"]
        shown = viewer.latest is not None and shows_no_signal(viewer.latest.picture)
        if told and told[-1] == state and shown == no_signal_shown:
            return
    raise AssertionError(f"the viewer never saw {state}: told {viewer.messages[-3:]}")
