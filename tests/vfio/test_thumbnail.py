"""The thumbnail of a VFIO display is the guest's picture scaled down, inside the rig's VM."""

from __future__ import annotations

import asyncio
import io

import av
import pytest

from tests.pictures import psnr, thumbnail_luma
from tests.vfio.mbochs import Mbochs, pattern
from tests.vfio.test_capture import serve_device_fd
from vgpustream.media.stamp import luma
from vgpustream.sources.vfio.device import VfioDevice

pytestmark = pytest.mark.vfio


async def test_the_thumbnail_is_the_guests_picture_scaled_down(mbochs_uuid, make_server, http, tmp_path):
    device = VfioDevice.open_mdev(mbochs_uuid)
    card = Mbochs(device)
    try:
        card.set_mode(800, 600)
        shown = pattern(800, 600, seed=3)
        card.show(shown)
        serve_device_fd(device, tmp_path / "vmm.sock")  # the test plays the VMM that holds the device
        server = await make_server(source=f"vfio-fd:unix:{tmp_path / 'vmm.sock'}", idle_sample_rate=5.0)
        for _ in range(600):  # the source's first sample in a TCG guest: up to a minute
            async with http.get(server.make_url("/api/v1/sessions/default/thumbnail")) as response:
                if response.status == 200:
                    data = await response.read()
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("no thumbnail of the VFIO display")
        with av.open(io.BytesIO(data)) as container:
            picture = next(container.decode(video=0))
        assert (picture.width, picture.height) == (320, 240)
        quality = psnr(luma(picture), thumbnail_luma(shown, "bgra", 320, 240), skip_rows=0)
        assert quality > 30, f"the thumbnail is not the guest's picture ({quality:.1f} dB)"
    finally:
        card.close()
        device.close()
