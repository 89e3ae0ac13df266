"""A VFIO display streamed to a real aiortc viewer, inside the rig's VM."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.served import serve
from tests.vfio.mbochs import Mbochs, pattern
from tests.vfio.test_capture import serve_device_fd
from vgpustream.sources.vfio.device import VfioDevice
from vgpustream.testing.receiver import WhepReceiver

pytestmark = pytest.mark.vfio


async def frame_of_size(receiver: WhepReceiver, width: int, height: int, frames: int = 150) -> None:
    for _ in range(frames):
        picture = (await receiver.next_frame(timeout=20)).picture
        if (picture.width, picture.height) == (width, height):
            return
    raise AssertionError(f"no {width}x{height} frame in {frames}")


async def test_the_stream_goes_on_across_a_mode_change(mbochs_uuid, make_server, viewers, tmp_path):
    device = VfioDevice.open_mdev(mbochs_uuid)
    card = Mbochs(device)
    try:
        card.set_mode(640, 480)
        card.show(pattern(640, 480, seed=1))
        serve_device_fd(device, tmp_path / "vmm.sock")  # the test plays the VMM that holds the device
        server = await make_server(source=f"vfio-fd:unix:{tmp_path / 'vmm.sock'}")
        receiver = await viewers(server)
        await frame_of_size(receiver, 640, 480)
        card.set_mode(1024, 768)  # the guest switches modes while a viewer watches
        for seed in range(2, 30):  # and keeps drawing
            card.show(pattern(1024, 768, seed=seed))
            await asyncio.sleep(0.05)
        await frame_of_size(receiver, 1024, 768)
    finally:
        card.close()
        device.close()  # (the server's copy of the fd closes with the server)


async def test_serve_streams_a_vfio_display(mbochs_uuid, tmp_path):
    device = VfioDevice.open_mdev(mbochs_uuid)
    card = Mbochs(device)
    card.set_mode(800, 600)
    card.close()
    device.close()  # `vgpustream serve` opens the device itself
    with serve(tmp_path / "state", "--source", f"vfio:{mbochs_uuid}", "--insecure-no-auth") as served:
        async with aiohttp.ClientSession() as http:
            receiver = WhepReceiver(f"{served.url}/whep/default", http)
            await receiver.connect()
            await frame_of_size(receiver, 800, 600, frames=5)
            await receiver.close()
