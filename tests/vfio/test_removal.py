"""An mdev removed under a watching viewer, and created again under the same UUID, inside the rig's VM.

Neither mbochs nor the 6.1 mdev core tells a device's user that its removal began: `remove` unlinks the
mdev from sysfs, then blocks until the last fd on the device is closed. The source must notice and let go.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.lost import viewer_sees, wait_state
from tests.vfio.conftest import create_mdev
from tests.vfio.mbochs import Mbochs, pattern
from tests.vfio.test_streaming import frame_of_size
from vgpustream.api.state import REGISTRY
from vgpustream.sources.vfio.device import VfioDevice
from vgpustream.sources.vfio.source import VfioSource

pytestmark = pytest.mark.vfio

READS = ("/api/v1/sessions/default", "/api/v1/sessions/default/planes", "/api/v1/sessions", "/metrics")


async def opened_device(source: VfioSource, not_this: VfioDevice | None = None, timeout: float = 20) -> VfioDevice:
    """The device the session's source has open (another than `not_this`), once it has one."""
    deadline = time.monotonic() + timeout
    while (device := source.device) is None or device is not_this:
        assert time.monotonic() < deadline, "the source did not open the device"
        await asyncio.sleep(0.05)
    return device


def draw(device: VfioDevice, width: int, height: int, seed: int) -> None:
    """Be the guest's display driver for a moment: a mode and a picture (video memory unmapped after, since
    a mapping of the device holds it open as an fd does)."""
    card = Mbochs(device)
    try:
        card.set_mode(width, height)
        card.show(pattern(width, height, seed))
    finally:
        card.close()


def remove(uuid: str) -> float:
    """Remove the mdev; the seconds the kernel took (it returns once the device's last fd is closed)."""
    start = time.monotonic()
    Path(f"/sys/bus/mdev/devices/{uuid}/remove").write_text("1")
    return time.monotonic() - start


async def test_an_mdev_removed_mid_stream_is_let_go_and_streams_again_when_created_again(
    mbochs_uuid, make_server, http, viewers
):
    server = await make_server(source=f"vfio:{mbochs_uuid}")
    source = server.app[REGISTRY].get("default").capture._thread.source
    first = await opened_device(source)
    draw(first, 800, 600, seed=1)  # not 640x480: the NO SIGNAL picture's size
    viewer = await viewers(server)
    await frame_of_size(viewer, 800, 600)
    await viewer.wait_channel_open()

    took = await asyncio.wait_for(asyncio.to_thread(remove, mbochs_uuid), timeout=10)
    print(f"mdev remove took {took * 1000:.0f} ms under a watching viewer")
    assert took < 3, "the source let go of the device within a few frames"
    lost = await wait_state(http, server, "lost")
    assert ("removed" in lost["message"] or "no mdev" in lost["message"]) and lost["planes"]["primary"] is None, lost
    await viewer_sees(viewer, "lost", no_signal_shown=True)
    assert [m for m in viewer.messages if m["type"] == "state"][-1]["resizable"] is False
    for path in READS:
        async with http.get(server.make_url(path)) as response:
            assert response.status == 200, (path, response.status, await response.text())
    async with http.get(server.make_url("/readyz")) as response:  # not ready while a session is lost, by design
        assert response.status == 503 and (await response.json())["lost_sessions"] == ["default"]
    async with http.patch(
        server.make_url("/api/v1/sessions/default"), json={"display": {"width": 1024, "height": 768}}
    ) as response:
        assert 400 <= response.status < 500, await response.text()  # nothing to resize while it is gone

    create_mdev("mbochs", "mbochs-large", name=mbochs_uuid)
    draw(await opened_device(source, not_this=first), 1024, 768, seed=2)
    await viewer_sees(viewer, "streaming", no_signal_shown=False)
    await frame_of_size(viewer, 1024, 768)
    assert viewer.pc.connectionState == "connected" and len(server.app[REGISTRY].get("default").audience) == 1
