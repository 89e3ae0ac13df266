"""A recording outlives the death of its server, and the disk's failures stop it, never the stream."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import OPERATOR
from tests.recordings import download, ffprobe_frames, info, needs_ffprobe, start, wait_state
from tests.served import serve
from vgpustream.testing.server import free_port


@needs_ffprobe
async def test_a_killed_server_leaves_a_recording_that_plays_up_to_its_last_fragment(tmp_path):
    state, port = tmp_path / "state", free_port()
    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        with serve(state, "--source", "synthetic:320x240@30", port=port) as served:
            recording = await start(http, served.url, label="before the crash")
            await wait_state(http, served.url, recording, "recording")
            await asyncio.sleep(3.5)
            written = await info(http, served.url, recording)
            served.process.send_signal(signal.SIGKILL)
            served.process.wait()
        path = state / "recordings" / "default" / f"{recording['id']}.mp4"
        frames = ffprobe_frames(path)
        assert frames >= 60, f"at least the fragments cut before the kill (3 s at 30 fps): {frames}"
        assert frames <= written["frames"] + 45, "no more than was handed to the muxer"

        with serve(state, port=port) as served:
            after = await info(http, served.url, recording)
            assert after["state"] == "interrupted" and after["reason"] == "server_stopped"
            assert after["label"] == "before the crash" and after["bytes"] == path.stat().st_size
            copy = await download(http, served.url, recording, tmp_path / "copy.mp4")
            assert ffprobe_frames(copy) == frames


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=False)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")


@pytest.fixture
def small_disk(tmp_path):
    """The server's recordings directory on a 1 MiB tmpfs (the rest of its state on the normal disk)."""
    recordings = tmp_path / "state" / "recordings"
    mount_tmpfs(recordings, "1m")
    yield recordings
    subprocess.run(["umount", "-l", str(recordings)], check=True)


@needs_ffprobe
async def test_a_full_disk_stops_the_recording_never_the_stream(small_disk, make_server, http, viewers, tmp_path):
    server = await make_server(source="synthetic:320x240@30")
    base = str(server.make_url("/"))
    viewer = await viewers(server)
    await viewer.receive_for(0.5)
    recording = await start(http, base)
    failed = await wait_state(http, base, recording, "failed", timeout=30)
    assert failed["reason"] == "No space left on device"
    assert failed["frames"] > 0 and failed["bytes"] > 0
    before = viewer.stats.frames
    await viewer.receive_for(2)
    assert viewer.stats.frames - before >= 45, "the viewer's stream goes on at full rate"
    path = await download(http, base, recording, tmp_path / "partial.mp4")
    assert ffprobe_frames(path) > 0, "what fitted plays"
    async with http.post(server.make_url("/api/v1/sessions/default/recordings"), json={}) as response:
        assert response.status == 201, "a full disk does not stop the next recording from being tried"
