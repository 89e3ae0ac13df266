"""A phone's console against a real QEMU (Chromium's mobile emulation with touch; QEMU's input trace as the
ground truth): tap, long press, two-finger scroll, pinch zoom, the on-screen keyboard and "Type text"."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.qemu.vm import Vm
from tests.test_console import console_page
from vgpustream.testing.qemu import MENU_PROMPT, Bus, wait_for

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 412, "height": 780}, "device_scale_factor": 2.625, "is_mobile": True, "has_touch": True}


def pressed(vm: Vm) -> list[str]:
    """What QEMU traced as pressed, in order: buttons as `button NAME`, keys by their QKeyCode."""
    events = re.findall(r"button (\S+), down 1|key qcode (\S+), down 1", vm.log_text())
    return [f"button {button}" if button else key for button, key in events]


async def traced(vm: Vm, since: int, expected: list[str]) -> None:
    def seen() -> bool:
        return pressed(vm)[since:] == expected

    try:
        await asyncio.to_thread(wait_for, seen, 10, f"{expected} traced")
    except TimeoutError:
        raise AssertionError(f"QEMU traced {pressed(vm)[since:]}, not {expected}") from None


async def touch(cdp, kind: str, *points: tuple[float, float]) -> None:
    touch_points = [{"x": x, "y": y, "id": n} for n, (x, y) in enumerate(points)]
    await cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touch_points})


async def test_touch_gestures_and_the_on_screen_keyboard_reach_the_vm(bus: Bus, start_vm, make_server, http):
    vm = start_vm(f"dbus,addr={bus.address}", "-trace", "input_event_btn", "-trace", "input_event_key_qcode")
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    async with console_page(server, http, 1, **PHONE) as (page, errors):
        toolbar = await page.locator("#toolbar").bounding_box()
        assert toolbar["width"] <= 412, "the toolbar fits the phone's screen"
        box = await page.locator("#stage").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        cdp = await page.context.new_cdp_session(page)

        since = len(pressed(vm))
        await touch(cdp, "touchStart", (x, y))
        await touch(cdp, "touchEnd")
        await traced(vm, since, ["button left"])

        since = len(pressed(vm))
        await touch(cdp, "touchStart", (x, y))
        await page.wait_for_timeout(900)
        await touch(cdp, "touchEnd")
        await traced(vm, since, ["button right"])

        since = len(pressed(vm))
        await touch(cdp, "touchStart", (x - 40, y + 100), (x + 40, y + 100))
        for step in range(1, 11):  # both fingers up by 200 px: the page under them scrolls down
            await touch(cdp, "touchMove", (x - 40, y + 100 - 20 * step), (x + 40, y + 100 - 20 * step))
        await touch(cdp, "touchEnd")
        await asyncio.to_thread(wait_for, lambda: pressed(vm)[since:], 10, "the scroll traced")
        await asyncio.sleep(0.5)  # the rest of the scroll's wheel events
        scrolled = pressed(vm)[since:]
        assert scrolled and set(scrolled) == {"button wheel-down"}, scrolled

        since = len(pressed(vm))
        await touch(cdp, "touchStart", (x - 20, y), (x + 20, y))
        for step in range(1, 11):  # spread apart: the picture zooms in here, the VM gets nothing
            await touch(cdp, "touchMove", (x - 20 - 10 * step, y), (x + 20 + 10 * step, y))
        await touch(cdp, "touchEnd")
        transform = await page.locator("#screen").evaluate("v => v.style.transform")
        assert "scale(" in transform and float(re.search(r"scale\(([\d.]+)\)", transform)[1]) > 2, transform
        await asyncio.sleep(0.5)
        assert pressed(vm)[since:] == []

        # the on-screen keyboard: what the device's keyboard inputs is typed into the VM
        since = len(pressed(vm))
        await page.click("#more-toggle")  # on a phone, Keyboard and Type text are in the toolbar's More menu
        await page.click("#keyboard")
        assert await page.evaluate("document.activeElement.id") == "osk"
        await page.keyboard.insert_text("Hi")
        await traced(vm, since, ["shift", "h", "i"])
        # IME text arrives by composition: typed once composed
        since = len(pressed(vm))
        await cdp.send("Input.imeSetComposition", {"text": "o", "selectionStart": 1, "selectionEnd": 1})
        await cdp.send("Input.imeSetComposition", {"text": "ok", "selectionStart": 2, "selectionEnd": 2})
        await cdp.send("Input.insertText", {"text": "ok"})
        await traced(vm, since, ["o", "k"])

        # Type text: a string as keystrokes
        since = len(pressed(vm))
        await page.click("#more-toggle")
        await page.click("#type-text-open")
        await page.fill("#type-text-value", "a!")
        await page.click("#type-text-go")
        await traced(vm, since, ["a", "shift", "1"])
        assert errors == []
