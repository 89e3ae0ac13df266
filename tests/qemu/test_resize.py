"""Resize to the window against a real QEMU: a Linux guest on virtio-vga takes the size asked through
Console.SetUIInfo (QEMU's screendump is the ground truth); std VGA cannot, and QEMU says so."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import OPERATOR
from tests.qemu.vm import LinuxVm, Vm
from tests.test_console import console_page
from tests.test_resize import flood, patch_display, size_becomes, stats
from tests.test_scaling import STAGE_DEVICE_SIZE, video_is
from vgpustream.testing.qemu import MENU_PROMPT, Bus


async def planes(http, server) -> dict:
    async with http.get(server.make_url("/api/v1/sessions/default/planes"), headers=OPERATOR) as response:
        return await response.json()


async def watched(linux_vm: LinuxVm, bus: Bus, make_server, viewers):
    """A session on the guest's display and a viewer of it, once the guest's console is up (1920x1200)."""
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(linux_vm.wait_mode, 1920, 1200)
    receiver = await viewers(server)  # after the boot: its frames of the firmware's screen would come first
    await size_becomes(receiver, 1920, 1200)
    await receiver.wait_channel_open()
    return server, receiver


async def guest_and_stream_at(linux_vm: LinuxVm, receiver, width: int, height: int, timeout: float = 30) -> None:
    """Wait until the guest's mode (QEMU's screendump) and then the viewer's picture are width x height."""
    await asyncio.to_thread(linux_vm.wait_mode, width, height, timeout)
    await size_becomes(receiver, width, height)


async def test_the_api_resizes_a_linux_guest_and_the_stream_follows(linux_vm, bus, make_server, viewers, http):
    server, receiver = await watched(linux_vm, bus, make_server, viewers)
    assert (await planes(http, server))["resizable"] is True
    status, body = await patch_display(http, server, {"width": 1024, "height": 768, "scale": 1})
    assert status == 200, body
    await guest_and_stream_at(linux_vm, receiver, 1024, 768)
    # a viewer's own request, on the same connection: the guest follows again
    receiver.send_input({"type": "resize", "width": 1280, "height": 720, "scale": 2})
    await guest_and_stream_at(linux_vm, receiver, 1280, 720)


async def test_a_flood_of_resizes_is_paced_and_the_guest_ends_at_the_last(linux_vm, bus, make_server, viewers, http):
    server, receiver = await watched(linux_vm, bus, make_server, viewers)
    sent, frames, elapsed = await flood(receiver, 3.0, (1000, 700))
    await guest_and_stream_at(linux_vm, receiver, 1000, 700)
    counted = await stats(http, server)
    assert counted["resize_requests"] == sent and counted["resizes_failed"] == 0
    assert 2 <= counted["resizes_applied"] <= elapsed / 0.25 + 2, counted
    assert frames > 5, f"the stream went on through the guest's mode changes: {frames} frames"


async def test_std_vga_cannot_resize_and_the_session_says_so(vm: Vm, bus: Bus, make_server, http):
    """QEMU is asked when the source attaches (a SetUIInfo QEMU drops as unchanged): the session says so
    before anyone asks for a size."""
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    assert (await planes(http, server))["resizable"] is False
    status, body = await patch_display(http, server, {"width": 1024, "height": 768})
    assert (status, body["error"]["code"]) == (409, "unsupported"), body
    assert MENU_PROMPT in await asyncio.to_thread(vm.text), "the guest is as it was"


@pytest.mark.browser
async def test_the_console_resizes_a_linux_guest_to_its_window(linux_vm: LinuxVm, bus: Bus, make_server, http):
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(linux_vm.wait_mode, 1920, 1200)
    async with console_page(server, http, 1, viewport={"width": 1000, "height": 700}) as (page, errors):
        pc = await page.evaluate_handle("window.vgpustream.pc")
        stage = await page.evaluate(STAGE_DEVICE_SIZE)
        await asyncio.to_thread(linux_vm.wait_mode, *stage, 30)
        await video_is(page, stage)
        await page.set_viewport_size({"width": 800, "height": 600})
        stage = await page.evaluate(STAGE_DEVICE_SIZE)
        await asyncio.to_thread(linux_vm.wait_mode, *stage, 30)
        await video_is(page, stage)
        assert await page.evaluate("pc => window.vgpustream.pc === pc", pc), "the console followed without a reconnect"
        assert errors == []


@pytest.mark.browser
async def test_the_console_on_std_vga_fits_the_picture_and_never_asks_for_a_size(vm: Vm, bus: Bus, make_server, http):
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    async with console_page(server, http, 1, viewport={"width": 1000, "height": 700}) as (page, errors):
        await video_is(page, [720, 400])
        assert await page.locator('#scaling option[value="resize"]').is_disabled()
        assert await page.locator("#scaling").input_value() == "fit"
        await page.set_viewport_size({"width": 800, "height": 600})
        await asyncio.sleep(1)  # past the console's debounce: a console that could ask would have
        assert (await stats(http, server))["resize_requests"] == 0, "the console never asked the VM for a size"
        assert errors == []
