"""Stock Firefox ESR from Debian, with its default preferences, against the console (issue 21).

Firefox hides its host addresses behind mDNS names and signals end-of-candidates, so it connects only
through its own checks (peer-reflexive pairs on the server). Its WebRTC has no H.264 without Cisco's
OpenH264 plugin, which cannot be downloaded here: the server answers its offer with the video section
rejected, and the console says what the browser lacks while the data channel still comes up.
"""

from __future__ import annotations

import pytest

from tests.firefox import in_firefox

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
    console = await in_firefox(str(server.make_url("/?session=default")), CONNECTED, CONSOLE)
    assert console["source"]["state"] == "streaming", "the server's state message came over the data channel"
    assert console["state"] == "unsupported", console
    assert "H.264" in console["status"] and "OpenH264" in console["status"], console["status"]
