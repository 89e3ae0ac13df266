"""Stock Firefox ESR from Debian, with its default preferences, against the console (issue 21).

Firefox hides its host addresses behind mDNS names and signals end-of-candidates, so it connects only
through its own checks (peer-reflexive pairs on the server). Its WebRTC has no H.264 without Cisco's
OpenH264 plugin, which cannot be downloaded here: the server answers its offer with the video section
rejected, and the console says what the browser lacks while the data channel still comes up.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import wait_for
from tests.firefox import in_firefox
from vgpustream.api.state import REGISTRY

pytestmark = pytest.mark.browser

CONNECTED = (
    "window.vgpustream?.pc?.connectionState === 'connected'"
    " && window.vgpustream.channel?.readyState === 'open' && window.vgpustream.source !== null"
)
CONSOLE = (
    "({state: window.vgpustream?.state, connection: window.vgpustream?.pc?.connectionState,"
    " channel: window.vgpustream?.channel?.readyState, source: window.vgpustream?.source,"
    " status: document.getElementById('status')?.textContent})"
)


async def test_stock_firefox_completes_ice_and_opens_the_data_channel(make_server, test_net):
    server = await make_server(source="synthetic:320x240@30", insecure_no_auth=True, host_address=(test_net,))
    session = server.app[REGISTRY].get("default")
    encoded: list[int] = []

    async def watch_encoding() -> None:
        """While Firefox is connected, what the session encodes, every 0.5 s."""
        while True:
            if any(viewer.connection_state == "connected" for viewer in session.audience):
                encoded.append(session.capture.stats.frames_encoded)
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_encoding())
    # the page stays a few seconds once connected: the session's encoding is watched meanwhile
    until = CONNECTED + " && (window.connectedAt ??= performance.now()) < performance.now() - 3000"
    console = await in_firefox(str(server.make_url("/?session=default&transport=webrtc")), until, CONSOLE)
    watcher.cancel()
    assert console["source"]["state"] == "streaming", "the server's state message came over the data channel"
    assert console["state"] == "unsupported", console
    assert "H.264" in console["status"] and "OpenH264" in console["status"], console["status"]
    assert len(encoded) >= 3 and encoded[-1] == encoded[1], f"nothing encoded for a viewer without video: {encoded}"


async def test_stock_firefox_plays_the_console_over_the_websocket_and_types_into_the_vm(make_server, http):
    """transport=auto: Firefox's WebRTC has no H.264, its WebCodecs has: the console takes the WebSocket."""
    server = await make_server(source="synthetic:320x240@30")
    session = server.app[REGISTRY].get("default")
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "control"}) as response:
        console_url = (await response.json())["console_url"]
    playing = "window.vgpustream?.state === 'playing' && document.getElementById('screen').videoWidth === 320"
    result = "({state: window.vgpustream?.state, transport: window.vgpustream?.transport})"
    console = await in_firefox(console_url, playing, result, press=("#stage", ["KeyQ", "KeyW"]))
    assert console == {"state": "playing", "transport": "websocket"}, console
    await wait_for(lambda: session.audience.stats.input_events >= 4, what="four key events from Firefox in the VM")
