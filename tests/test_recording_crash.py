"""A recording outlives the death of its server, and the disk's failures stop it, never the stream."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import pytest

from tests import conftest, test_faults
from tests.conftest import OPERATOR
from tests.recordings import (
    download,
    ffprobe_frames,
    frame_stamps,
    info,
    needs_ffprobe,
    record,
    start,
    stop,
    wait_state,
)
from tests.served import serve
from vgpustream.api.app import create_app
from vgpustream.api.state import REGISTRY
from vgpustream.testing.server import free_port


@needs_ffprobe
async def test_a_killed_server_leaves_a_recording_that_plays_up_to_its_last_fragment(tmp_path):
    state, port = tmp_path / "state", free_port()
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        with serve(state, "--source", "synthetic:320x240@30", port=port) as served:
            recording = await record(http, served.url, label="before the crash")
            await asyncio.sleep(6.5)  # past the first checkpoint (5 s)
            written = await info(http, served.url, recording)
            served.process.send_signal(signal.SIGKILL)
            served.process.wait()
        path = state / "recordings" / "default" / f"{recording['id']}.mp4"
        frames = ffprobe_frames(path)
        assert frames >= 150, f"at least the fragments cut before the kill (6 s at 30 fps): {frames}"
        assert frames <= written["frames"] + 45, "no more than was handed to the muxer"

        with serve(state, port=port) as served:
            after = await info(http, served.url, recording)
            assert after["state"] == "interrupted" and after["reason"] == "server_stopped"
            assert after["label"] == "before the crash" and after["bytes"] == path.stat().st_size
            assert 0 < after["frames"] <= frames, "what it had written at its last checkpoint (every 5 s)"
            copy = await download(http, served.url, recording, tmp_path / "copy.mp4")
            assert ffprobe_frames(copy) == frames
            async with http.get(f"{served.url}/api/v1/events", params={"session": "default"}) as response:
                events = [(e["type"], e.get("role"), e.get("state")) for e in (await response.json())["events"]]
            assert events == [
                ("token.created", "control", None),  # the console link each start prints
                ("recording.started", None, None),
                ("recording.stopped", None, "interrupted"),  # told when the next start finds it
                ("token.created", "control", None),
            ]


small_disk = test_faults.small_disk  # a 4 MiB tmpfs


@needs_ffprobe
async def test_a_full_disk_stops_the_recording_never_the_stream(small_disk, aiohttp_server, http, viewers, tmp_path):
    settings = conftest.test_settings(small_disk / "state", source="synthetic:320x240@30")  # all its state on 4 MiB
    server = await aiohttp_server(create_app(settings))
    base = str(server.make_url("/"))
    viewer = await viewers(server)
    await viewer.receive_for(0.5)
    filler = test_faults.fill(small_disk)
    os.truncate(filler, filler.stat().st_size - 512 * 1024)  # half a MiB left
    recording = await start(http, base)
    failed = await wait_state(http, base, recording, "failed", timeout=30)
    assert failed["reason"] == "No space left on device"
    assert failed["frames"] > 0 and failed["bytes"] > 0
    assert await viewer.fresh_frames(2.5) >= 45, "the viewer's stream goes on at full rate"
    path = await download(http, base, recording, tmp_path / "partial.mp4")
    assert ffprobe_frames(path) > 0, "what fitted plays"
    async with http.post(server.make_url("/api/v1/sessions/default/recordings"), json={}) as response:
        assert response.status == 201, "a full disk does not stop the next recording from being tried"


@pytest.fixture
def slow_disk(fuse_disk, tmp_path):
    """The server's recordings directory on a FUSE disk whose writes take 1 s each for its first 12 s."""
    return fuse_disk(tmp_path / "state" / "recordings", "--delay", "1", "--slow-for", "12")


@needs_ffprobe
async def test_a_slow_disk_thins_the_recording_never_the_stream(slow_disk, make_server, http, viewers, tmp_path):
    server = await make_server(source="synthetic:320x240@60", fps=60)
    base = str(server.make_url("/"))
    stats = server.app[REGISTRY].get("default").capture.stats
    viewer = await viewers(server)
    await viewer.receive_for(0.5)
    recording = await start(http, base)
    received, encoded = viewer.stats.frames, stats.frames_encoded
    await viewer.receive_for(8)  # the disk takes a second per write: the muxer falls behind by far
    received, encoded = viewer.stats.frames - received, stats.frames_encoded - encoded
    assert received >= 0.9 * encoded and encoded >= 8 * 40, f"the stream went on: {received} of {encoded} frames"
    assert (await info(http, base, recording))["dropped"] > 0, "the recording dropped frames instead"
    await asyncio.sleep(6)  # the disk is fast again: the recording catches up
    done = await stop(http, base, recording)
    assert done["state"] == "stopped" and done["dropped"] > 0
    assert done["frames"] + done["dropped"] == done["last_frame"] - done["first_frame"] + 1, done
    path = await download(http, base, recording, tmp_path / "thinned.mp4")
    assert ffprobe_frames(path) == done["frames"], "what was not dropped is in the file"
    stamps = frame_stamps(path)
    assert stamps == sorted(stamps) and len(stamps) == done["frames"]
