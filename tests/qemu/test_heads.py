"""Every head of a QEMU VM: the rig's Linux guest on a virtio-vga with two outputs, the second turned on by the
kernel's `video=` argument. QEMU's screendump of each head and its trace of key events (which name the
console each came in on) are the ground truth."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chromium
from tests.qemu.vm import LinuxVm
from tests.test_console import decoded_more_than
from tests.test_resize import size_becomes
from tests.test_scaling import VIDEO_SIZE
from vgpustream.testing.qemu import Bus, wait_for

SECOND_HEAD_ON = "video=Virtual-2:1024x768e"
"""Linux's virtio-gpu calls its outputs Virtual-1, Virtual-2; `e` turns one on whatever QEMU says of it."""
KEYS = "input_event_key_*"
SESSION_SHOWN = "() => new URLSearchParams(location.search).get('session')"
"""The session a console page shows (a function: the console's Content-Security-Policy allows no eval)."""


def two_heads(tmp_path: Path, bus: Bus, append: str) -> LinuxVm:
    if reason := LinuxVm.missing():
        pytest.skip(reason)
    trace = f"enable={KEYS},file={tmp_path / 'keys.log'}"
    return LinuxVm(tmp_path, f"dbus,addr={bus.address}", outputs=2, append=append, extra=["-trace", trace])


@pytest.fixture
def vm(bus: Bus, tmp_path: Path) -> Iterator[LinuxVm]:
    """The guest with both heads on: head 0 at 1920x1200, head 1 at 1024x768."""
    vm = two_heads(tmp_path, bus, SECOND_HEAD_ON)
    yield vm
    vm.stop()


def keys_traced(vm: LinuxVm) -> list[tuple[int, str]]:
    """(console, QEMU's key name) of each key press QEMU's input layer traced."""
    path = vm.directory / "keys.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return [(int(console), key) for console, key in re.findall(r"con (\d+), key qcode (\S+), down 1", text)]


async def pressed(vm: LinuxVm, expected: list[tuple[int, str]]) -> None:
    await asyncio.to_thread(wait_for, lambda: set(expected) <= set(keys_traced(vm)), 10, f"key presses {expected}")
    assert sorted(set(keys_traced(vm))) == sorted(expected), "each key on its own head's console, and only there"


async def both_heads_on(vm: LinuxVm) -> None:
    await asyncio.to_thread(vm.wait_mode, 1920, 1200, 90)
    await asyncio.to_thread(vm.wait_mode, 1024, 768, 30, 1)


async def heads(http, server, session: str = "default") -> list[dict]:
    async with http.get(server.make_url(f"/api/v1/sessions/{session}/heads")) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["heads"]


async def heads_become(http, server, expected: list[tuple], session: str = "default", timeout: float = 15) -> None:
    """Wait until the session's list of heads says `expected`: (console, width, height, state, session) each
    (an unwatched session looks at its source once a second)."""
    listed: list[tuple] = []
    for _ in range(int(timeout / 0.2)):
        listed = [
            (h["console"], h["width"], h["height"], h["state"], h["session"])
            for h in await heads(http, server, session)
        ]
        if listed == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the heads are {listed}, not {expected}")


async def open_head(http, server, head: int | str) -> tuple[int, dict]:
    async with http.post(server.make_url(f"/api/v1/sessions/default/heads/{head}")) as response:
        return response.status, await response.json()


async def test_the_api_lists_both_heads_and_a_session_of_each_plays_it_and_takes_its_keys(
    vm: LinuxVm, bus: Bus, make_server, viewers, http
):
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await both_heads_on(vm)
    await heads_become(http, server, [(0, 1920, 1200, "streaming", "default"), (1, 1024, 768, "streaming", None)])
    status, created = await open_head(http, server, 1)
    assert status == 201, created
    assert (created["id"], created["source"]) == ("default-head1", f"qemu-dbus:{bus.address}?console=1")
    status, again = await open_head(http, server, 1)
    assert (status, again["id"]) == (200, "default-head1"), "the session there is"
    assert [h["session"] for h in await heads(http, server)] == ["default", "default-head1"]
    assert [h["session"] for h in await heads(http, server, "default-head1")] == ["default", "default-head1"]
    status, error = await open_head(http, server, 2)
    assert status == 404 and error["error"]["message"].endswith("its heads: 0, 1"), error

    first, second = await viewers(server), await viewers(server, "default-head1")
    await asyncio.gather(size_becomes(first, 1920, 1200), size_becomes(second, 1024, 768))
    await asyncio.gather(first.wait_channel_open(), second.wait_channel_open())
    for receiver, code in ((first, "KeyA"), (second, "KeyB")):
        receiver.send_input({"type": "key", "code": code, "down": True})
        receiver.send_input({"type": "key", "code": code, "down": False})
    await pressed(vm, [(0, "a"), (1, "b")])


async def shows_head(vm: LinuxVm, page, head: int) -> None:
    """Wait until the console at `page` plays head `head`: its picture has the size QEMU's screendump of the
    head has (whatever size the guest gave it: a console asks the VM for its window's size)."""

    async def same_size() -> bool:
        shown = await page.evaluate(f"({VIDEO_SIZE})()")
        return shown == list((await asyncio.to_thread(vm.screendump, head)).shape[1::-1])

    for _ in range(300):
        if await same_size():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the console does not show head {head}")


@pytest.mark.browser
async def test_two_heads_play_in_two_consoles_at_once_each_typing_into_its_own(
    vm: LinuxVm, bus: Bus, make_server, http
):
    """The console of head 0 offers the VM's other head: opened in a window of its own (its session made on the
    way), both play at once and each types into its own head; the second window then switches to head 0."""
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await both_heads_on(vm)
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "control"}) as response:
        link = (await response.json())["console_url"]
    async with chromium(viewport={"width": 1000, "height": 700}) as browser:
        errors: list[str] = []
        browser.on("weberror", lambda error: errors.append(str(error.error)))
        first = await browser.new_page()
        await first.goto(link)
        await decoded_more_than(first, 5)
        switcher = first.locator("#heads")
        await switcher.wait_for(state="visible")
        offered = await switcher.locator("option").evaluate_all("options => options.map(o => [o.value, o.text])")
        assert offered == [["show:0", "Display 1"], ["show:1", "Display 2"], ["window:1", "Display 2 in a new window"]]
        async with browser.expect_page() as opened:
            await switcher.select_option("window:1")
        second = await opened.value  # blank at first: the console's link comes from the server a moment later
        await second.wait_for_url(re.compile(r"[?&]session=default-head1\b"))
        await decoded_more_than(second, 5)
        await shows_head(vm, first, 0)  # one after the other: the tests' QMP client takes one command at a time
        await shows_head(vm, second, 1)
        for page, key in ((first, "KeyA"), (second, "KeyB")):
            await page.click("#stage")
            await page.keyboard.press(key)
        await pressed(vm, [(0, "a"), (1, "b")])
        await second.locator("#heads").select_option("show:0")
        await second.wait_for_function(f"() => ({SESSION_SHOWN})() === 'default'")
        await decoded_more_than(second, 5)
        await shows_head(vm, second, 0)
        assert errors == []


async def test_a_head_the_guest_has_not_turned_on_is_no_signal(bus: Bus, tmp_path: Path, make_server, http):
    vm = two_heads(tmp_path, bus, "")
    try:
        server = await make_server(source=f"qemu-dbus:{bus.address}")
        await asyncio.to_thread(vm.wait_mode, 1920, 1200, 90)
        await heads_become(http, server, [(0, 1920, 1200, "streaming", "default"), (1, 640, 480, "no_signal", None)])
        status, created = await open_head(http, server, 1)
        assert status == 201, created
        for _ in range(50):
            async with http.get(server.make_url("/api/v1/sessions/default-head1")) as response:
                session = await response.json()
            if session["state"] == "no_signal":
                break
            await asyncio.sleep(0.1)
        assert (session["state"], session["message"]) == ("no_signal", None), session
    finally:
        vm.stop()
