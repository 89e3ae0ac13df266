"""Recording a session without encoding again: the file holds exactly the frames the session encoded."""

from __future__ import annotations

import asyncio
import json
import time

import av
import pytest

from tests.conftest import wait_for
from tests.recordings import (
    download,
    ffprobe_frames,
    frame_stamps,
    info,
    needs_ffprobe,
    recorded_server,
    start,
    stop,
    wait_state,
)
from vgpustream.api.recordings import LINK_SECONDS, LINKS
from vgpustream.api.state import REGISTRY
from vgpustream.errors import VgpuStreamError
from vgpustream.input.events import PointerEvent, ResizeEvent
from vgpustream.recording import library
from vgpustream.recording.recorder import RecordingInfo, RecordingState
from vgpustream.settings import Settings


@needs_ffprobe
async def test_a_recording_holds_every_frame_encoded_while_viewers_come_and_go(make_server, http, viewers, tmp_path):
    server = await make_server(source="synthetic:320x240@30")
    base = str(server.make_url("/"))
    stats = server.app[REGISTRY].get("default").capture.stats
    started = time.monotonic()
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
    took = time.monotonic() - started  # 10 s of sleeps, and the viewers' connecting and closing

    assert done["state"] == "stopped" and done["reason"] == "requested", done
    assert done["dropped"] == 0, done
    window = done["last_frame"] - done["first_frame"] + 1
    assert window >= 150, f"10 s at up to 30 fps, the session encoding all along: {done}"
    assert done["last_frame"] >= encoded_before_stop
    path = await download(http, base, recording, tmp_path / "recording.mp4")
    assert done["bytes"] == path.stat().st_size
    assert ffprobe_frames(path) == window == done["frames"], "every frame encoded in the window, and no other"
    stamps = frame_stamps(path)
    assert len(stamps) == window, "every decoded picture carries its stamp"
    # in capture order; a picture may come twice where the session encoded it again (a keyframe, a refinement)
    assert stamps == sorted(stamps), "the pictures are in capture order"
    assert 9.0 <= done["duration"] <= took, (done, took)


async def test_bad_recording_requests_get_clear_errors_and_touch_nothing(make_server, http):
    server = await make_server(source="synthetic:320x240@30", max_recordings=2)
    base = str(server.make_url("/"))
    url = str(server.make_url("/api/v1/sessions/default/recordings"))
    running = await start(http, base)

    async def refused(method: str, path: str, status: int, code: str, **kwargs) -> None:
        async with http.request(method, server.make_url(path), **kwargs) as response:
            body = await response.json()
            assert response.status == status, body
            assert body["error"]["code"] == code, body

    records = "/api/v1/sessions/default/recordings"
    await refused("POST", "/api/v1/sessions/nope/recordings", 404, "not_found", json={})
    for body in ({"max_seconds": 0}, {"max_seconds": 7 * 86_400}, {"max_seconds": "10"}, {"max_seconds": True},
                 {"max_bytes": 1000}, {"max_bytes": 10**15}, {"label": "a\nb"}, {"label": "x" * 201},
                 {"path": "/etc/passwd"}):  # fmt: skip
        await refused("POST", records, 400, "bad_request", json=body)
    await refused("POST", records, 415, "unsupported_media_type", data="max_seconds=5")
    for rid in ("..%2F..%2Fvgpustream.sqlite3", "rec-..", "rec-0123456789abcdef%2F..", "REC-0123456789ABCDEF"):
        await refused("GET", f"{records}/{rid}", 404, "not_found")
        await refused("GET", f"{records}/{rid}/file", 404, "not_found")
        await refused("DELETE", f"{records}/{rid}", 404, "not_found")
    await refused("GET", "/api/v1/sessions/..%2F..%2Fetc/recordings", 404, "not_found")
    await refused("GET", f"{records}/rec-0123456789abcdef", 404, "not_found")

    second = await start(http, base)
    await refused("POST", records, 409, "recording_limit", json={})
    async with http.get(url) as response:
        listed = (await response.json())["recordings"]
    assert {r["id"] for r in listed} == {running["id"], second["id"]}, "the refusals started or lost nothing"
    assert all(r["state"] in ("starting", "recording") for r in listed)
    await stop(http, base, second)
    third = await start(http, base)  # a stopped recording frees its place
    await stop(http, base, third)
    await stop(http, base, running)


async def test_a_recording_stops_by_itself_at_its_limits(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    base = str(server.make_url("/"))
    short = await start(http, base, max_seconds=1)
    small = await start(http, base, max_bytes=1024 * 1024)
    done = await wait_state(http, base, short, "stopped", timeout=5)
    assert done["reason"] == "max_seconds" and 0.5 <= done["duration"] <= 1.0
    done = await wait_state(http, base, small, "stopped", timeout=30)
    assert done["reason"] == "max_bytes" and 1024 * 1024 <= done["bytes"] < 1024 * 1024 + 200_000


@needs_ffprobe
async def test_a_finished_recording_is_deleted_with_its_file(make_server, http, tmp_path):
    server, base, recording = await recorded_server(make_server, http, "synthetic:320x240@30")
    await asyncio.sleep(1)
    await stop(http, base, recording)
    files = sorted(p.name for p in (tmp_path / "state" / "recordings" / "default").iterdir())
    assert files == [f"{recording['id']}.json", f"{recording['id']}.mp4"]
    assert ffprobe_frames(tmp_path / "state" / "recordings" / "default" / files[1]) > 0
    async with http.delete(server.make_url(recording["href"])) as response:
        assert response.status == 204
    assert not list((tmp_path / "state" / "recordings" / "default").iterdir())
    async with http.get(server.make_url(recording["href"])) as response:
        assert response.status == 404


def old_recording(root, session: str, number: int, age_days: float, size: int) -> str:
    """A finished recording as an earlier run left it: its file and its JSON, `age_days` old."""
    recording_id = f"rec-{number:016x}"
    directory = root / session
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{recording_id}.mp4").write_bytes(b"\0" * size)
    info = RecordingInfo(recording_id, session, "", 60, 10**9, started_at=time.time() - age_days * 86_400)
    info.state, info.bytes, info.stopped_at = RecordingState.STOPPED, size, info.started_at + 60
    (directory / f"{recording_id}.json").write_text(json.dumps(info.to_json()))
    return recording_id


async def test_retention_removes_old_recordings_at_start_up_and_then_hourly(make_server, http, tmp_path, monkeypatch):
    root = tmp_path / "state" / "recordings"
    ancient = old_recording(root, "default", 1, age_days=10, size=1000)
    older = old_recording(root, "gone", 2, age_days=2, size=600_000)
    newer = old_recording(root, "default", 3, age_days=1, size=600_000)
    monkeypatch.setattr(library, "RETENTION_INTERVAL", 0.2)
    server = await make_server(
        source="synthetic:320x240@30?pattern=text", recording_retention_days=7, recording_retention_bytes=1_800_000
    )
    base = str(server.make_url("/"))
    async with http.get(server.make_url("/api/v1/sessions/default/recordings")) as response:
        kept = [r["id"] for r in (await response.json())["recordings"]]
    assert kept == [newer], "the recording past 7 days is gone at start-up, files and all"
    assert not (root / "default" / f"{ancient}.mp4").exists()
    async with http.get(server.make_url("/api/v1/sessions/gone/recordings")) as response:
        assert [r["id"] for r in (await response.json())["recordings"]] == [older], "a deleted session's are kept"

    recording = await start(http, base, max_bytes=1024 * 1024)  # fills the room the two old ones left
    await wait_state(http, base, recording, "stopped", timeout=30)
    # at the next retention pass (every 0.2 s here)
    await wait_for(lambda: not (root / "gone" / f"{older}.mp4").exists(), what="over the total, the oldest to go first")
    assert (root / "default" / f"{newer}.mp4").exists() and (root / "default" / f"{recording['id']}.mp4").exists()


@needs_ffprobe
async def test_a_mode_change_goes_on_in_the_same_track_at_the_new_size(make_server, http, tmp_path):
    server, base, recording = await recorded_server(make_server, http, "synthetic:320x240@30?resize=1")
    await asyncio.sleep(1)
    await server.app[REGISTRY].get("default").capture.resize(ResizeEvent(480, 360))
    await asyncio.sleep(1)
    done = await stop(http, base, recording)
    path = await download(http, base, recording, tmp_path / "resized.mp4")
    assert ffprobe_frames(path) == done["frames"] == done["last_frame"] - done["first_frame"] + 1
    with av.open(str(path)) as container:
        sizes = [(frame.width, frame.height) for frame in container.decode(video=0)]
    changed = sizes.index((480, 360))
    assert changed >= 20 and set(sizes[:changed]) == {(320, 240)} and set(sizes[changed:]) == {(480, 360)}


@needs_ffprobe
async def test_a_recording_shows_the_guest_cursor_drawn_into_the_picture(make_server, http, tmp_path):
    server, base, recording = await recorded_server(
        make_server, http, "synthetic:320x240@30?pattern=text&still=1&cursor=1"
    )
    session = server.app[REGISTRY].get("default")
    session.capture.input_sink.send(PointerEvent(x=0.5, y=0.5, buttons=0))  # the cursor plane's position
    await asyncio.sleep(1)
    await stop(http, base, recording)
    path = await download(http, base, recording, tmp_path / "cursor.mp4")
    with av.open(str(path)) as container:
        last = list(container.decode(video=0))[-1].to_ndarray(format="rgb24").astype(int)
    tip_x, tip_y = round(0.5 * 319), round(0.5 * 239)
    red, green, blue = last[tip_y + 12, tip_x + 3]  # inside the red arrow, below its tip
    assert red > 150 and green < 100 and blue < 100, f"the arrow is in the recorded picture: {red, green, blue}"
    assert last[tip_y + 12, tip_x + 40].min() > 150, "and only there: the page around it is light"


@pytest.mark.parametrize(
    "bad",
    [
        {"max_recordings": 0},
        {"recording_retention_days": 0},
        {"recording_retention_bytes": 0},
        {"audit_webhook": "ftp://example.org/hook"},
        {"audit_webhook": "http://"},
    ],
)
def test_bad_recording_and_audit_settings_are_refused(bad):
    with pytest.raises(VgpuStreamError):
        Settings(**bad)


async def test_deleting_a_session_ends_its_recordings_which_stay_listed(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    base = str(server.make_url("/"))
    body = {"id": "vm1", "source": "synthetic:320x240@15"}
    async with http.post(server.make_url("/api/v1/sessions"), json=body) as response:
        assert response.status == 201
    recording = await start(http, base, session="vm1", label="until deleted")
    await wait_state(http, base, recording, "recording")
    async with http.delete(server.make_url("/api/v1/sessions/vm1")) as response:
        assert response.status == 204
    done = await info(http, base, recording)
    assert (done["state"], done["reason"]) == ("stopped", "session_stopped") and done["frames"] > 0
    async with http.post(server.make_url("/api/v1/sessions/vm1/recordings"), json={}) as response:
        assert response.status == 404, "a deleted session cannot be recorded"


async def test_a_signed_file_link_works_without_a_token_and_only_as_issued(make_server, http, anonymous):
    server, base, recording = await recorded_server(make_server, http, "synthetic:320x240@30")
    other = await start(http, base, label="another")
    await asyncio.sleep(1.5)
    link = recording["file_link"]
    path, query = link.split("?", 1)
    assert path == recording["file"] and query.startswith("expires=")
    async with anonymous.get(server.make_url(recording["file"])) as response:
        assert response.status == 401, "the plain file address needs the operator token"
    async with anonymous.get(server.make_url(link), headers={"Range": "bytes=0-99"}) as response:
        assert response.status == 206 and len(await response.read()) == 100, "a <video> seeks through the link"
    links = server.app[LINKS]
    expired = links.link(recording["file"], time.time() - LINK_SECONDS - 5)
    signature = query.rsplit("signature=", 1)[1]
    tampered = link[:-1] + ("0" if link[-1] != "0" else "1")
    refused = {
        "tampered": tampered,
        "expired": expired,
        "another recording's file": f"{other['file']}?{query}",
        "another route": f"/api/v1/sessions/default/recordings?{query}",
        "no expiry": f"{recording['file']}?signature={signature}",
        "a later expiry": f"{recording['file']}?expires=99999999999&signature={signature}",
        "a huge expiry": f"{recording['file']}?expires={'9' * 400}&signature={signature}",
        "a signature that is not hex": f"{recording['file']}?expires=12941569&signature=%F0%A3%BC%A1{'0' * 60}",
        "an expiry without a signature": f"{recording['file']}?expires=12941569",
    }
    for why, url in refused.items():
        async with anonymous.get(server.make_url(url)) as response:
            assert response.status == 403, why
            assert len((await response.json())["error"]["message"]) < 200
    async with anonymous.delete(server.make_url(f"{other['href']}?{other['file_link'].split('?', 1)[1]}")) as response:
        assert response.status == 403, "a link only reads"
    assert (await info(http, base, other))["state"] == "recording", "and changed nothing"
    await stop(http, base, other)
