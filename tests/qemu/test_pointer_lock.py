"""Relative motion and pointer lock against a real QEMU, whose input trace is the ground truth: a guest with only
a PS/2 mouse gets Mouse.RelMotion; with a tablet, the motion moves an absolute position."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.qemu.vm import Vm
from tests.test_console import console_page
from tests.test_resize import last_state
from vgpustream.testing.qemu import MENU_PROMPT, Bus, wait_for


def traced(vm: Vm, words: list[str]) -> None:
    wait_for(lambda: all(w in vm.log_text() for w in words), 10, f"{words} in QEMU's input trace")


async def test_relative_motion_reaches_a_mouse_as_relmotion(bus: Bus, start_vm, make_server, viewers):
    vm = start_vm(f"dbus,addr={bus.address}", "-trace", "input_event_*")
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    assert (await last_state(receiver))["relative_pointer"] is True, "the console is told to lock the pointer"
    receiver.send_input({"type": "motion", "dx": 37, "dy": -21})
    receiver.send_input({"type": "motion", "dx": 0, "dy": 0, "buttons": 1})
    await asyncio.to_thread(
        traced,
        vm,
        ["input_event_rel con 0, axis x, value 37", "input_event_rel con 0, axis y, value -21", "button left, down 1"],
    )


async def test_relative_motion_moves_a_tablets_position(bus: Bus, start_vm, make_server, viewers):
    vm = start_vm(f"dbus,addr={bus.address}", "-trace", "input_event_abs", "-usb", "-device", "usb-tablet")
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    vm.use_tablet()
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    for _ in range(100):  # the source learns IsAbsolute from QEMU's PropertiesChanged, in its own time
        if (await last_state(receiver))["relative_pointer"] is False:
            break
        await asyncio.sleep(0.1)
    assert (await last_state(receiver))["relative_pointer"] is False, "the console is told not to lock the pointer"
    receiver.send_input({"type": "motion", "dx": 360, "dy": 0})  # from the middle of 720x400 to the right edge
    # x = 719 of 720 pixels on QEMU's absolute range 0..0x7fff: 719 * 0x7fff // 720
    await asyncio.to_thread(traced, vm, ["input_event_abs con 0, axis x, value 0x7fd1"])


@pytest.mark.browser
async def test_the_console_locks_the_pointer_on_a_mouse_guest_and_moves_it(bus: Bus, start_vm, make_server, http):
    vm = start_vm(f"dbus,addr={bus.address}", "-trace", "input_event_rel")
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    async with console_page(server, http, 1) as (page, errors):
        await page.wait_for_function("() => document.getElementById('connection').textContent === 'playing'")
        box = await page.locator("#stage").bounding_box()
        await page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await page.wait_for_function("() => document.pointerLockElement?.id === 'stage'", timeout=5000)
        before = vm.log_text().count("input_event_rel")
        for step in range(1, 11):
            await page.mouse.move(box["x"] + box["width"] / 2 + 10 * step, box["y"] + box["height"] / 2)
            await page.wait_for_timeout(20)
        await asyncio.to_thread(
            wait_for, lambda: vm.log_text().count("axis x") > before, 10, "relative motion in QEMU's trace"
        )
        moved = sum(int(v) for v in re.findall(r"axis x, value (-?\d+)", vm.log_text()))
        assert moved > 0, "the guest's pointer moved right"
        await page.keyboard.press("Escape")
        assert errors == []
