"""Chromium plays a recording from the server and seeks in it with Range requests."""

from __future__ import annotations

import asyncio
import base64

import pytest

from tests.browser import chromium, png_rgb, rgb_luma
from tests.conftest import OPERATOR_TOKEN
from tests.recordings import record, recorded_server, start, stop
from vgpustream.media.stamp import read_stamp

pytestmark = pytest.mark.browser

# the picture the <video> shows now, as a PNG data URL (same origin, so the canvas is readable)
PICTURE = """() => {
  const video = document.querySelector("video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return canvas.toDataURL("image/png");
}"""

SEEK = """async (time) => {
  const video = document.querySelector("video");
  video.pause();
  const seeked = new Promise((resolve) => video.addEventListener("seeked", resolve, { once: true }));
  video.currentTime = time;
  await seeked;
  return video.currentTime;
}"""


async def stamp_on_show(page) -> int:
    url = await page.evaluate(PICTURE)
    stamp = read_stamp(rgb_luma(png_rgb(base64.b64decode(url.split(",", 1)[1]))))
    assert stamp is not None, "the picture on show carries a readable stamp"
    return stamp.frame


async def test_chromium_plays_a_recording_and_seeks_in_it(make_server, http):
    server, base, recording = await recorded_server(make_server, http, "synthetic:640x360@30")
    await asyncio.sleep(6)
    done = await stop(http, base, recording)

    async with chromium() as browser:  # no token: the signed link is all a <video> has
        page = await browser.new_page()
        ranges: list[str] = []
        partial: list[int] = []
        page.on("request", lambda r: ranges.append(r.headers.get("range", "")) if "/file?" in r.url else None)
        page.on("response", lambda r: partial.append(r.status) if "/file?" in r.url else None)
        await page.goto(str(server.make_url(done["file_link"])))
        await page.wait_for_function(
            "() => document.querySelector('video') && document.querySelector('video').readyState >= 2"
        )
        duration = await page.evaluate("document.querySelector('video').duration")
        assert abs(duration - done["duration"]) < 0.2, (duration, done["duration"])
        assert await page.evaluate("document.querySelector('video').videoWidth") == 640

        await page.evaluate(SEEK, 0.0)  # the media page may have started playing
        start_frame = await stamp_on_show(page)
        assert await page.evaluate(SEEK, 4.0) == pytest.approx(4.0, abs=0.05)
        later = await stamp_on_show(page)
        assert 100 <= later - start_frame <= 140, f"4 s in is about 120 pictures on: {start_frame} -> {later}"
        assert await page.evaluate(SEEK, 1.0) == pytest.approx(1.0, abs=0.05)
        back = await stamp_on_show(page)
        assert 20 <= back - start_frame <= 40, f"and back to 1 s: {start_frame} -> {back}"
        await page.evaluate("document.querySelector('video').play()")
        await page.wait_for_function("() => document.querySelector('video').currentTime > 2.0")

    assert any(r.startswith("bytes=") for r in ranges), f"Chromium asked for ranges: {ranges}"
    assert 206 in partial, f"and got partial content: {partial}"


async def test_the_session_list_badges_a_recording_session_and_plays_its_recordings(make_server, http, tmp_path):
    server = await make_server(source="synthetic:320x240@30")
    base = str(server.make_url("/"))
    finished = await record(http, base, label="first")
    await asyncio.sleep(2)
    await stop(http, base, finished)
    running = await start(http, base, label="second")

    async with chromium() as browser:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{server.make_url('/')}#token={OPERATOR_TOKEN}")
        badge = page.locator('tr[data-session="default"] .badge.recording')
        await badge.wait_for()
        assert await badge.get_attribute("title") == "1 recording running"
        await page.locator('tr[data-session="default"] a.recordings-link').click()
        rows = page.locator("#recording-table tbody tr")
        await rows.nth(1).wait_for()
        assert await rows.evaluate_all("rows => rows.map(r => r.dataset.recording)") == [running["id"], finished["id"]]
        assert await rows.nth(1).locator("td").nth(1).text_content() == "first"
        await rows.nth(1).locator("a", has_text="play").click()
        await page.wait_for_function(
            "() => { const v = document.getElementById('recording-player'); "
            "return v.readyState >= 2 && v.currentTime > 0.5 && v.videoWidth === 320; }"
        )
        assert await page.evaluate("document.getElementById('recording-player').dataset.recording") == finished["id"]
        (tmp_path / "recordings.png").write_bytes(await page.screenshot(full_page=True))

        await stop(http, base, running)
        await badge.wait_for(state="detached", timeout=10_000)
        assert errors == []
