"""An independent WHEP player (Eyevinn's @eyevinn/webrtc-player, from npm) plays a session in Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from tests.browser import chromium, png_rgb, rgb_luma
from vgpustream.media.stamp import read_stamp

pytestmark = pytest.mark.browser

PLAYER = Path(__file__).resolve().parent / "browser" / "dist" / "eyevinn-player.js"
PAGE = """<!doctype html>
<html><body style="margin:0;background:#000">
<video id="video" autoplay muted playsinline style="display:block;width:640px;height:360px"></video>
<script src="/eyevinn-player.js"></script>
<script>
  const video = document.getElementById("video");
  window.framesShown = 0;
  const count = () => { window.framesShown += 1; video.requestVideoFrameCallback(count); };
  video.requestVideoFrameCallback(count);
  // no ICE servers: the player's default is a public STUN server, and tests stay on loopback
  const player = new EyevinnWebRTCPlayer.WebRTCPlayer({ video, type: "whep", iceServers: [] });
  player.load(new URL(WHEP_URL), AUTH_KEY);
</script></body></html>"""


async def test_eyevinn_whep_player_plays_a_session(make_server, aiohttp_server, http):
    if not PLAYER.is_file():
        pytest.skip("the Eyevinn player bundle is missing: run `npm ci && npm run build` in tests/browser")
    # the player's page comes from another origin than the WHEP endpoint, as it would in real use
    page = {}

    async def page_html(_: web.Request) -> web.Response:
        return web.Response(text=page["html"], content_type="text/html")

    page_app = web.Application()
    page_app.router.add_get("/", page_html)
    page_app.router.add_static("/", PLAYER.parent)
    page_server = await aiohttp_server(page_app)
    origin = str(page_server.make_url("/")).rstrip("/")
    server = await make_server(source="synthetic:640x360@30", cors_origin=(origin,))
    # the control plane hands the player a view-only token
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view"}) as response:
        issued = await response.json()
    page["html"] = PAGE.replace("WHEP_URL", json.dumps(issued["whep_url"])).replace(
        "AUTH_KEY", json.dumps("Bearer " + issued["token"])
    )
    async with chromium() as browser:
        tab = await browser.new_page()
        await tab.goto(origin + "/")
        await tab.wait_for_function("window.framesShown > 30", timeout=30_000)
        assert await tab.evaluate("[video.videoWidth, video.videoHeight]") == [640, 360]
        shot = png_rgb(await tab.locator("#video").screenshot())
    stamp = read_stamp(rgb_luma(shot))
    assert stamp is not None, "the frame stamp must be readable in what Chromium shows"
    assert stamp.frame > 0
