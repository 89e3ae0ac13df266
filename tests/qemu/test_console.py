"""The web console in Debian's Chromium driving a real QEMU VM: Escape opens SeaBIOS's boot menu,
the key menu's Ctrl+Alt+Del restarts the VM."""

from __future__ import annotations

import asyncio

import pytest

from tests.qemu.vm import Vm
from tests.test_console import console_page
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
