"""Stock Firefox ESR from Debian, with its default preferences, against the console (issues 21, 22, 23).

Firefox hides its host addresses behind mDNS names and signals end-of-candidates, so it connects only
through its own checks (peer-reflexive pairs on the server). Its WebRTC has no H.264 without Cisco's
OpenH264 plugin, which cannot be downloaded here: over WebRTC the server sends it the session's VP8
rendition; over the WebSocket, H.264 decoded by WebCodecs.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import wait_for
from tests.firefox import in_firefox
from vgpustream.api.state import REGISTRY
from vgpustream.media.renditions import TOP, Rendition

pytestmark = pytest.mark.browser

PLAYING = "window.vgpustream?.state === 'playing' && document.getElementById('screen').videoWidth === 320"
RESULT = "({state: window.vgpustream?.state, transport: window.vgpustream?.transport})"
VP8 = Rendition("vp8")


@pytest.mark.parametrize("transport", ["auto", "webrtc"])
async def test_stock_firefox_plays_vp8_over_webrtc_beside_an_h264_viewer_one_encode_each(
    make_server, http, viewers, test_net, transport
):
    """Its WebRTC has VP8: with transport=auto too the console stays on WebRTC (it connects within 2 s)."""
    server = await make_server(source="synthetic:320x240@30", host_address=(test_net,))
    session = server.app[REGISTRY].get("default")
    h264 = await viewers(server)
    await h264.next_frame()
    body = {"role": "control", "transport": transport}
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json=body) as response:
        console_url = (await response.json())["console_url"]
    counted: list[dict[Rendition, int]] = []

    async def count_encodes() -> None:
        """Each rendition's frames encoded, every 0.5 s while both run."""
        while True:
            if set(session.capture.renditions) == {TOP, VP8}:
                counted.append({r: s.stats.frames_encoded for r, s in session.capture.renditions.items()})
            await asyncio.sleep(0.5)

    counting = asyncio.create_task(count_encodes())
    until = PLAYING + " && (window.playingAt ??= performance.now()) < performance.now() - 2000"
    console = await in_firefox(console_url, until, RESULT, press=("#stage", ["KeyQ", "KeyW"]))
    counting.cancel()
    assert console == {"state": "playing", "transport": "webrtc"}, console
    await wait_for(lambda: session.audience.stats.input_events >= 4, what="four key events from Firefox in the VM")
    assert len(counted) >= 3, counted
    first, last = counted[0], counted[-1]
    assert last[TOP] - first[TOP] == last[VP8] - first[VP8] > 20, f"one encode of each rendition per frame: {counted}"
    assert (await h264.next_frame()).picture.width == 320, "the H.264 viewer plays on"


async def test_stock_firefox_plays_the_console_over_the_websocket_and_types_into_the_vm(make_server, http):
    """WebCodecs decodes the session's H.264, which Firefox's WebRTC cannot."""
    server = await make_server(source="synthetic:320x240@30")
    session = server.app[REGISTRY].get("default")
    body = {"role": "control", "transport": "websocket"}
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json=body) as response:
        console_url = (await response.json())["console_url"]
    console = await in_firefox(console_url, PLAYING, RESULT, press=("#stage", ["KeyQ", "KeyW"]))
    assert console == {"state": "playing", "transport": "websocket"}, console
    await wait_for(lambda: session.audience.stats.input_events >= 4, what="four key events from Firefox in the VM")


async def test_firefox_is_told_its_glass_to_glass_delay_is_not_available_over_webrtc(make_server, http, test_net):
    """Firefox cannot negotiate abs-capture-time, so no frame's capture time reaches it over WebRTC: the stats
    overlay says the delay is not available and why, rather than nothing."""
    server = await make_server(source="synthetic:320x240@30", host_address=(test_net,))
    body = {"role": "view", "transport": "webrtc"}
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json=body) as response:
        console_url = (await response.json())["console_url"]
    overlay = "document.getElementById('stats').textContent"
    # once playing, the Stats button is clicked (once), then the overlay is waited for
    shows_stats = "(window.statsShown ??= (document.getElementById('stats-toggle').click(), true))"
    shown = await in_firefox(console_url, f"{PLAYING} && {shows_stats} && / fps/.test({overlay})", overlay)
    assert "glass to glass not available: this browser's WebRTC does not take the frames' capture times" in shown
