"""The web console in Debian's Chromium driving a real QEMU VM: Escape opens SeaBIOS's boot menu,
the key menu's Ctrl+Alt+Del restarts the VM; the console says plainly when the VM's display is not there."""

from __future__ import annotations

import asyncio

import pytest
from dbus_fast import Message, MessageType

from tests.conftest import OPERATOR, OPERATOR_TOKEN
from tests.qemu.vm import Vm
from tests.test_console import console_page, decoded_more_than
from vgpustream.api.state import REGISTRY
from vgpustream.sources.qemu.listener import LISTENER
from vgpustream.testing.qemu import BOOT_MENU, MENU_PROMPT, Bus

pytestmark = pytest.mark.browser


async def test_the_console_types_into_the_vm_and_sends_ctrl_alt_del(vm: Vm, bus: Bus, make_server, http):
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    async with console_page(server, http, 1) as (page, errors):
        assert await page.locator("#screen").evaluate("v => [v.videoWidth, v.videoHeight]") == [720, 400]
        await page.click("#stage")
        await page.keyboard.press("Escape")
        await asyncio.to_thread(vm.wait_text, BOOT_MENU, 20)
        # the key menu sends what the browser's own shortcuts would swallow; SeaBIOS restarts on it
        await page.select_option("#keys", "ControlLeft+AltLeft+Delete")
        await asyncio.to_thread(vm.wait_text, MENU_PROMPT, 30, BOOT_MENU)
        assert errors == []


async def shows(page, phase: str, badge: str, words: str, timeout: float = 30_000) -> None:
    """Wait until the console is in `phase`, its badge says `badge` and its message over the picture has `words`."""
    await page.wait_for_function("phase => window.vgpustream.state === phase", arg=phase, timeout=timeout)
    assert await page.locator("#connection").text_content() == badge
    assert words in await page.locator("#status").text_content()


async def api_state(server, http) -> dict:
    async with http.get(server.make_url("/api/v1/sessions/default"), headers=OPERATOR) as response:
        return await response.json()


async def test_a_vm_that_is_not_running_is_not_available_until_qemu_starts(tmp_path, start_vm, make_server, http):
    server = await make_server(source=f"qemu-dbus:unix:path={tmp_path / 'bus.sock'}")  # no bus there yet
    async with console_page(server, http, None) as (page, errors):
        await shows(page, "lost", "not available", "The VM's display is not available")
        session = await api_state(server, http)
        assert session["state"] == "lost" and "No such file or directory" in session["message"]
        assert session["message"] in await page.locator("#status").text_content(), "the console says why"
        # the operator's session list says the same, and why
        listing = await page.context.new_page()
        await listing.goto(f"{server.make_url('/')}#token={OPERATOR_TOKEN}")
        state_cell = listing.locator('tr[data-session="default"] td.state')
        await state_cell.wait_for()
        assert await state_cell.text_content() == "lost" + session["message"]
        await listing.close()
        bus = Bus(tmp_path)
        try:
            start_vm(f"dbus,addr={bus.address}")
            # the console that waited gets the picture, without a reload
            await shows(page, "playing", "playing", "", timeout=60_000)
            await decoded_more_than(page, 1)
            assert await page.locator("#status").text_content() == ""
            assert (await api_state(server, http))["state"] == "streaming"
        finally:
            bus.stop()
        assert errors == []


def place_text_cursor(vm: Vm, offset: int) -> None:
    """Move the VGA text cursor (CRTC registers 0x0E/0x0F) to character `offset`, as the guest would."""
    for register, value in ((0x0E, offset >> 8), (0x0F, offset & 0xFF)):
        for port, byte in ((0x3D4, register), (0x3D5, value)):
            vm.qmp("human-monitor-command", **{"command-line": f"o /b {port:#x} {byte:#x}"})


async def test_a_display_qemu_disables_shows_no_signal(vm: Vm, bus: Bus, make_server, http):
    """QEMU tells a listener the display is off with Listener.Disable, which QEMU 7.2 sends only from its
    GL listener (no render node here: no GL), while std VGA draws a blanked screen as black pixels. So
    the test quiets the guest (paused, its text cursor moved off the screen: QEMU redraws the cursor's cell
    on every refresh) and hands the source's listener the Disable call QEMU with GL sends, as
    tests/test_qemu_listener.py hands it QEMU's calls; everything after that is real."""
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    async with console_page(server, http, 1) as (page, errors):
        await shows(page, "playing", "playing", "")
        await asyncio.to_thread(vm.qmp, "stop")
        await asyncio.to_thread(place_text_cursor, vm, 80 * 25)
        await asyncio.sleep(0.5)  # the Updates QEMU sent before go first
        source = server.app[REGISTRY].get("default").capture._thread.source
        disable = Message(path="/org/qemu/Display1/Listener", interface=LISTENER, member="Disable", serial=1)
        assert source.listener.on_call(disable).message_type is MessageType.METHOD_RETURN
        await shows(page, "no_signal", "no signal", "The guest turned its display off")
        assert (await api_state(server, http))["state"] == "no_signal"
        # the NO SIGNAL picture stays, for players that do not read the input channel
        await page.wait_for_function("() => document.getElementById('screen').videoWidth === 640", timeout=20_000)
        # the guest draws again: QEMU sends Updates, the source asks for a Scanout, the picture is back
        await asyncio.to_thread(place_text_cursor, vm, 0)
        await asyncio.to_thread(vm.qmp, "cont")
        await shows(page, "playing", "playing", "")
        await page.wait_for_function("() => document.getElementById('screen').videoWidth === 720", timeout=20_000)
        assert errors == []
