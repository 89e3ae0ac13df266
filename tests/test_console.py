"""The web console in Debian's Chromium: it plays, the picture is the pattern, the pointer and keys reach the VM."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest

from tests.browser import chromium, png_rgb, rgb_luma
from tests.test_operations import metric_value
from vgpustream.api.state import REGISTRY
from vgpustream.bench.latency import READ_STAMPS, RECORD_DELAY_REPORTS
from vgpustream.compat import PLAYOUT_DELAY
from vgpustream.media.stamp import luma, read_stamp
from vgpustream.sources.desktop import Desktop, Terminal
from vgpustream.sources.font import text_ink
from vgpustream.sources.synthetic import POINTER_IDLE
from vgpustream.testing.netem import LossyLink

pytestmark = pytest.mark.browser

# page.evaluate awaits the promise (wait_for_function would take the promise itself as truthy)
FRAMES_DECODED = """async () => {
  const pc = window.vgpustream && window.vgpustream.pc;
  if (!pc) return 0;
  for (const report of (await pc.getStats()).values()) {
    if (report.type === "inbound-rtp" && report.kind === "video") return report.framesDecoded || 0;
  }
  return 0;
}"""

# where the picture is drawn inside the <video> element (object-fit: contain letterboxes it)
CONTENT_RECT = """() => {
  const v = document.getElementById("screen");
  const box = v.getBoundingClientRect();
  const scale = Math.min(box.width / v.videoWidth, box.height / v.videoHeight);
  const w = v.videoWidth * scale, h = v.videoHeight * scale;
  return {x: box.left + (box.width - w) / 2, y: box.top + (box.height - h) / 2, w, h};
}"""


def picture_from(screenshot: np.ndarray, rect: dict, width: int, height: int) -> np.ndarray:
    """The video's picture cut out of a page screenshot and sampled back to its own size."""
    ys = (rect["y"] + (np.arange(height) + 0.5) * rect["h"] / height).astype(int)
    xs = (rect["x"] + (np.arange(width) + 0.5) * rect["w"] / width).astype(int)
    return screenshot[ys][:, xs]


@asynccontextmanager
async def console_page(
    server, http, frames: int | None, role: str = "control", clipboard: str | None = None, **emulation: object
) -> AsyncIterator[tuple[object, list[str]]]:
    """Chromium (with `emulation`) on the console link of a new token of `role` (and `clipboard` access, else its
    role's) for session 'default', once the console has decoded more than `frames` frames (at once for None);
    yields the page and its script errors (Content-Security-Policy violations among them: the console must work
    under the server's policy)."""
    body = {"role": role} if clipboard is None else {"role": role, "clipboard": clipboard}
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json=body) as response:
        issued = await response.json()
    async with chromium(**emulation) as browser:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: "Content Security Policy" in message.text and errors.append(message.text))
        await page.goto(issued["console_url"])
        if frames is not None:
            await decoded_more_than(page, frames)
        yield page, errors


async def test_console_plays_and_the_pointer_reaches_the_vm(make_server, http):
    server = await make_server(source="synthetic:640x360@30?pattern=text")
    async with console_page(server, http, 30) as (page, errors):
        video = page.locator("#screen")
        assert await video.evaluate("v => [v.videoWidth, v.videoHeight]") == [640, 360]
        assert "token" not in page.url, "the token leaves the address bar and history"
        negotiated = await page.evaluate(
            "window.vgpustream.pc.getReceivers()[0].getParameters().headerExtensions.map(e => e.uri)"
        )
        assert PLAYOUT_DELAY in negotiated, "Chromium shows frames at once only with playout-delay negotiated"
        rect = await page.evaluate(CONTENT_RECT)
        shot = picture_from(png_rgb(await page.screenshot()), rect, 640, 360)
        stamp = read_stamp(rgb_luma(shot))
        assert stamp is not None and stamp.frame > 0, "the screenshot shows the pattern with a readable stamp"
        # the pointer over the picture at (0.75, 0.5) is drawn there by the VM (the synthetic source)
        await page.mouse.move(rect["x"] + 0.75 * rect["w"], rect["y"] + 0.5 * rect["h"])
        for _ in range(50):
            shot = picture_from(png_rgb(await page.screenshot()), rect, 640, 360)
            spot = shot[178:183, 477:483].reshape(-1, 3).mean(axis=0)
            if np.allclose(spot, POINTER_IDLE[::-1], atol=50):
                break
            await page.wait_for_timeout(100)
        else:
            raise AssertionError(f"the pointer never showed at (480, 180); colour there {spot}")
        # keys typed into the focused console reach the VM, and are released when focus goes
        sink = server.app[REGISTRY].get("default").capture.input_sink
        await page.click("#stage")
        await page.keyboard.down("KeyA")
        await wait_until(lambda: "KeyA" in sink.keys_down)
        await page.keyboard.up("KeyA")
        await wait_until(lambda: not sink.keys_down)
        # the viewer is thrown out (by the control plane): the console reconnects by itself
        first_pc = await page.evaluate_handle("window.vgpustream.pc")
        (viewer,) = server.app[REGISTRY].get("default").audience
        viewer_id = viewer.id
        async with http.delete(server.make_url(f"/api/v1/sessions/default/viewers/{viewer_id}")) as response:
            assert response.status == 204
        await page.wait_for_function("pc => window.vgpustream.pc !== pc", arg=first_pc, timeout=20_000)
        await decoded_more_than(page, 10)
        assert await page.evaluate("window.vgpustream.state") == "playing"
        assert errors == []


async def decoded_more_than(page, frames: int, seconds: float = 30.0) -> None:
    """Wait until the console's current connection has decoded more than `frames` frames."""
    for _ in range(int(seconds / 0.1)):
        if await page.evaluate(FRAMES_DECODED) > frames:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the console did not decode {frames} frames in {seconds} s")


async def wait_until(condition, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_the_console_warns_while_its_link_cannot_carry_the_stream(make_server, http):
    server = await make_server(source="synthetic:640x360@30")
    link = LossyLink(seed=9)
    await link.open()

    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view"}) as response:
        issued = await response.json()
    try:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.route("**/whep/default", link.route)
            await page.goto(issued["console_url"])
            await decoded_more_than(page, 10)
            warning = page.locator("#link-warning")
            assert await warning.is_hidden()
            link.impair(loss=0.0, rtt_ms=40, rate_kbps=100)  # a slow uplink: the stream needs several times that
            await warning.wait_for(state="visible", timeout=40_000)
            assert "cannot carry this stream" in await warning.text_content()
            assert await page.evaluate("window.vgpustream.state") == "playing", "the stream goes on"
            link.impair(loss=0.0, rtt_ms=0)
            await warning.wait_for(state="hidden", timeout=40_000)
    finally:
        link.close()


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_the_console_measures_glass_to_glass_as_the_stamps_do(make_server, http, transport):
    """Each frame's delay from its capture time (abs-capture-time over WebRTC, the message header over the
    WebSocket) agrees with the synthetic source's stamp read from the same frames, the stats overlay shows
    it, and every reported delay reaches /metrics."""
    server = await make_server(source="synthetic:640x360@30?pattern=text")
    body = {"role": "view", "transport": transport}
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json=body) as response:
        issued = await response.json()
    async with chromium() as browser:
        page = await browser.new_page()
        await page.add_init_script(READ_STAMPS + RECORD_DELAY_REPORTS)
        await page.goto(issued["console_url"])
        await page.wait_for_function("() => window.delayReports.flat().length >= 90", timeout=20_000)
        assert await page.evaluate("window.vgpustream.transport") == transport
        await page.click("#stats-toggle")
        overlay = page.locator("#stats")
        await page.wait_for_function(
            "() => /glass to glass \\d+ ms/.test(document.getElementById('stats').textContent)"
        )
        await page.wait_for_function("() => / [1-9]\\d\\.\\d fps/.test(document.getElementById('stats').textContent)")
        shown = await overlay.text_content()
        assert "640\u00d7360" in shown and "kbit/s" in shown, shown
        reports = await page.evaluate("window.delayReports")
        stamped = await page.evaluate("window.benchLatency.displayed")
    reported = [ms for report in reports for ms in report]
    assert len(reported) >= 60, "about one delay per frame shown"
    # the stamp reader skips the first second; so does this comparison
    console, stamps = float(np.median(reported[30:])), float(np.median(stamped))
    assert abs(console - stamps) < 3, f"console {console:.1f} ms, stamps {stamps:.1f} ms"
    async with http.get(server.make_url("/metrics")) as response:
        metrics = await response.text()
    count = metric_value(metrics, "vgpustream_session_glass_to_glass_seconds_count", session="default")
    total = metric_value(metrics, "vgpustream_session_glass_to_glass_seconds_sum", session="default")
    assert count >= len(reported), "every delay the console reported is counted (and maybe a later report)"
    assert total >= sum(reported) / 1000 - 0.001


async def test_a_viewer_whose_link_ran_out_is_told_it_only_watches(make_server, http):
    """--on-token-expiry view: the console says why the VM no longer takes its input, and keeps playing."""
    server = await make_server(source="synthetic:320x240@30", on_token_expiry="view")
    body = {"role": "control", "ttl_seconds": 4}
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json=body) as response:
        issued = await response.json()
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(issued["console_url"])
        await page.wait_for_function(
            "() => document.getElementById('connection').textContent === 'view only'", timeout=20_000
        )
        assert "time is up" in await page.locator("#status").text_content()
        assert await page.evaluate("window.vgpustream.state") == "playing"


SEEN = 0.97
"""The least share of a word's pixels that must match for it to be seen (a word that differs in all but
its first two and last letters matched 0.88)."""


def best_match(picture: np.ndarray, terminal: Terminal, word: str) -> float:
    """How well `word`, in the glyphs the desktop draws, matches the best cell run of the terminal's grid in
    a decoded luma picture: the share of its pixels on the right side of mid-grey (1.0: every one)."""
    face = terminal.face
    top, left = terminal.rect.y + terminal.content.y, terminal.rect.x + terminal.content.x
    grid = picture[top : top + terminal.rows * face.cell_h, left : left + terminal.columns * face.cell_w] > 128
    ink = text_ink(word, face.scale)
    best = 0.0
    for row in range(terminal.rows):
        band = grid[row * face.cell_h : (row + 1) * face.cell_h]
        for column in range(terminal.columns - len(word) + 1):
            cells = band[:, column * face.cell_w : column * face.cell_w + ink.shape[1]]
            best = max(best, float(np.mean(cells == ink)))
    return best


async def test_a_word_typed_in_the_console_is_drawn_in_the_desktops_terminal(make_server, http, viewers):
    server = await make_server(source="synthetic:1280x720@30")  # the default pattern: the desktop
    terminal = Desktop(1280, 720, 30).terminal  # where the source's terminal stands and how it draws
    word, other = (f"zq{secrets.token_hex(3)}" for _ in range(2))
    receiver = await viewers(server)  # a second viewer: the stream as anyone receives it
    async with console_page(server, http, 10) as (page, errors):
        await page.click("#stage")
        await page.keyboard.press("Enter")  # a line of its own: the word is not wrapped across two
        await page.keyboard.type(word)
        for _ in range(300):
            picture = luma((await receiver.next_frame()).picture)
            if best_match(picture, terminal, word) > SEEN:
                break
        else:
            raise AssertionError(
                f"{word!r} never showed in the terminal (best match {best_match(picture, terminal, word):.2f})"
            )
        assert best_match(picture, terminal, other) < SEEN, "a word nobody typed is not found: the check can fail"
        assert errors == []
