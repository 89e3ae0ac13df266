"""Recording a session without encoding again: the file holds exactly the frames the session encoded."""

from __future__ import annotations

import asyncio

from tests.recordings import download, ffprobe_frames, frame_stamps, needs_ffprobe, start, stop, wait_state
from vgpustream.api.state import REGISTRY


@needs_ffprobe
async def test_a_recording_holds_every_frame_encoded_while_viewers_come_and_go(make_server, http, viewers, tmp_path):
    server = await make_server(source="synthetic:320x240@30")
    base = str(server.make_url("/"))
    stats = server.app[REGISTRY].get("default").capture.stats
    recording = await start(http, base, label="audit 42")
    assert recording["state"] in ("starting", "recording") and recording["label"] == "audit 42"
    await wait_state(http, base, recording, "recording")
    await asyncio.sleep(2)
    first = await viewers(server)
    await first.receive_for(2)
    second = await viewers(server)
    await second.receive_for(2)
    await first.close()
    await asyncio.sleep(2)
    await second.close()
    await asyncio.sleep(2)  # nobody watches now but the recording: the session keeps encoding
    encoded_before_stop = stats.frames_encoded
    done = await stop(http, base, recording)

    assert done["state"] == "stopped" and done["reason"] == "requested"
    assert done["dropped"] == 0
    window = done["last_frame"] - done["first_frame"] + 1
    assert window >= 9 * 25, f"10 s at 30 fps, the session encoding all along: {window} frames"
    assert done["last_frame"] >= encoded_before_stop
    path = await download(http, base, recording, tmp_path / "recording.mp4")
    assert done["bytes"] == path.stat().st_size
    assert ffprobe_frames(path) == window == done["frames"], "every frame encoded in the window, and no other"
    stamps = frame_stamps(path)
    assert len(stamps) == window, "every decoded picture carries its stamp"
    assert stamps == sorted(stamps), "the pictures are in capture order"
    repeats = len(stamps) - len(set(stamps))
    assert repeats <= 4, f"a picture is encoded again only for a keyframe (a viewer joining): {repeats}"
    assert 9.0 <= done["duration"] <= 11.0
