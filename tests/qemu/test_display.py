"""The QEMU D-Bus display source against a real QEMU (SeaBIOS, std VGA, no disk) on a private bus.

QEMU's own `screendump` and its VGA text buffer are the ground truth for what the guest shows.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time

import av
import numpy as np
import pytest

from tests.lost import session_state, viewer_sees, wait_state
from tests.pictures import psnr, thumbnail_luma
from tests.qemu.vm import Vm, bgrx_to_rgb
from vgpustream.api.state import REGISTRY
from vgpustream.input.events import KeyEvent
from vgpustream.media.formats import fourcc_code
from vgpustream.media.stamp import luma
from vgpustream.sources import create_source
from vgpustream.sources.base import Frame, Source, SourceState
from vgpustream.sources.common.qmp import QmpInput
from vgpustream.testing.qemu import BOOT_MENU, MENU_PROMPT, Bus, wait_for

CTRL = 0x04  # BIOS keyboard flags: a Ctrl key is down
ESCAPE = [{"type": "key", "code": "Escape", "down": True}, {"type": "key", "code": "Escape", "down": False}]


async def open_source(url: str, timeout: float = 20) -> Source:
    """Open `url`, retrying while QEMU is still starting."""
    source = create_source(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            await asyncio.to_thread(source.open)  # as a session does: on a thread, not the event loop
            return source
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def next_frame(source: Source, timeout: float = 10) -> Frame:
    deadline = time.monotonic() + timeout
    while (frame := await asyncio.to_thread(source.next_frame)) is None:
        assert time.monotonic() < deadline, "no new frame from the source"
        await asyncio.sleep(0.02)
    return frame


def same_but_the_text_cursor(ours: np.ndarray, truth: np.ndarray) -> bool:
    """Equal pictures, or equal but for one 9x16 character cell of VGA text mode: the blinking cursor."""
    if ours.shape != truth.shape:
        return False
    rows, cols = np.nonzero((ours != truth).any(axis=2))
    if rows.size == 0:
        return True
    cells = {(r // 16, c // 9) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)}
    return ours.shape[:2] == (400, 720) and len(cells) == 1


async def matches_screendump(vm: Vm, picture, attempts: int = 20) -> np.ndarray:
    """Compare `await picture()` (RGB) with QEMU's screendump until they are equal (but for the blinking text
    cursor, which QEMU toggles every 133 ms while taking our picture can take a second)."""
    for _ in range(attempts):
        ours = await picture()
        truth = await asyncio.to_thread(vm.screendump)
        if same_but_the_text_cursor(ours, truth):
            return ours
        await asyncio.sleep(0.1)
    differing = int(np.count_nonzero((ours != truth).any(axis=2))) if ours.shape == truth.shape else "all"
    raise AssertionError(f"picture {ours.shape} never equalled the screendump {truth.shape}: {differing} pixels differ")


async def vgpustream(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vgpustream", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_the_boot_mode_change_from_640x480_to_720x400_gives_the_exact_picture(bus: Bus, start_vm):
    vm = start_vm(f"dbus,addr={bus.address}", "-S")  # held before its first instruction: attached first
    source = await open_source(f"qemu-dbus:{bus.address}")
    try:
        first = await next_frame(source)
        assert (first.width, first.height) == (640, 480), "QEMU's placeholder before SeaBIOS sets a mode"
        assert source.state is SourceState.NO_SIGNAL, "the guest has not set up its display: no signal"
        await asyncio.to_thread(vm.qmp, "cont")  # off the loop: QEMU may be calling into ours
        await asyncio.to_thread(vm.wait_text, MENU_PROMPT)

        async def latest() -> np.ndarray:
            await asyncio.to_thread(source.next_frame)
            assert source.listener.framebuffer.pixels is not None
            return bgrx_to_rgb(source.listener.framebuffer.pixels)

        picture = await matches_screendump(vm, latest)
        assert picture.shape == (400, 720, 3) and source.state is SourceState.STREAMING
        assert source.attachments >= 2, "the mode change made the source register again for a new Scanout"
        assert source.planes().primary.fourcc == fourcc_code("XR24")
    finally:
        await asyncio.to_thread(source.close)


async def test_snapshot_and_planes_show_the_bios_screen(vm: Vm, bus: Bus, tmp_path):
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    url = f"qemu-dbus:{bus.address}"
    for _ in range(5):  # QEMU can hand a new listener the previous mode's surface first (seen under load)
        planes = json.loads(await vgpustream("planes", "--source", url))
        if planes["primary"]["width"] == 720:
            break
    assert planes["state"] == "streaming"
    assert {k: planes["primary"][k] for k in ("fourcc", "width", "height", "stride")} == {
        "fourcc": "XR24",
        "width": 720,
        "height": 400,
        "stride": 2880,
    }

    async def snapshot() -> np.ndarray:
        await vgpustream("snapshot", "--source", url, "-o", str(tmp_path / "shot.png"))
        with av.open(io.BytesIO((tmp_path / "shot.png").read_bytes())) as png:
            return next(png.decode(video=0)).to_ndarray(format="rgb24")

    await matches_screendump(vm, snapshot, attempts=5)


async def test_peer_to_peer_through_qmp_add_client(start_vm):
    vm = start_vm("dbus,p2p=yes")
    source = await open_source(f"qemu-dbus+qmp:unix:{vm.vmm_path}")
    try:
        await asyncio.to_thread(vm.wait_text, MENU_PROMPT)

        async def latest() -> np.ndarray:
            await asyncio.to_thread(source.next_frame)
            return bgrx_to_rgb(source.listener.framebuffer.pixels)

        await matches_screendump(vm, latest)
        source.input_sink.send(KeyEvent("Escape", True))
        source.input_sink.send(KeyEvent("Escape", False))
        await asyncio.to_thread(vm.wait_text, BOOT_MENU, 20)
    finally:
        await asyncio.to_thread(source.close)


async def test_the_qmp_input_sink_drives_the_guest(start_vm):
    vm = start_vm("dbus,p2p=yes")  # any display: the sink needs only the monitor
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    sink = QmpInput(str(vm.vmm_path))
    await sink.open()
    try:
        sink.send(KeyEvent("Escape", True))
        sink.send(KeyEvent("Escape", False))
        await asyncio.to_thread(vm.wait_text, BOOT_MENU, 20)
        assert sink.dropped == 0
    finally:
        await sink.close()


def wrong_pixels(picture: np.ndarray, truth: np.ndarray) -> int:
    """Pixels of a decoded (lossy) frame that are far from the truth: a glyph that is not there, or is."""
    if picture.shape != truth.shape:
        return picture.size
    return int(np.count_nonzero((np.abs(picture.astype(int) - truth) > 96).any(axis=2)))


def close_to(picture: av.VideoFrame, truth: np.ndarray) -> bool:
    """A decoded frame shows the same screen (a line of text is hundreds of wrong pixels)."""
    return wrong_pixels(picture.to_ndarray(format="rgb24"), truth) < 50


async def wait_for_picture(receiver, vm: Vm, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    truth = await asyncio.to_thread(vm.screendump)
    while time.monotonic() < deadline:
        frame = await receiver.next_frame()
        if close_to(frame.picture, truth):
            return
        truth = await asyncio.to_thread(vm.screendump)
    raise AssertionError("the viewer never showed what the VM shows")


async def test_escape_from_a_viewer_opens_the_boot_menu(vm: Vm, bus: Bus, make_server, viewers):
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    receiver = await viewers(server)
    await wait_for_picture(receiver, vm)
    menu_before = np.array(receiver.latest.picture.to_ndarray(format="rgb24"))
    await receiver.wait_channel_open()
    for event in ESCAPE:
        receiver.send_input(event)
    await asyncio.to_thread(vm.wait_text, BOOT_MENU, 20)
    await wait_for_picture(receiver, vm)
    after = receiver.latest.picture.to_ndarray(format="rgb24")
    assert wrong_pixels(after, menu_before) > 500, "the picture changed to the boot menu"


async def test_a_view_only_viewers_keys_do_not_reach_qemu(vm: Vm, bus: Bus, make_server, viewers, http):
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view"}) as response:
        assert response.status == 201
        token = (await response.json())["token"]
    watcher = await viewers(server, token=token)
    await watcher.next_frame()
    await watcher.wait_channel_open()
    for event in ESCAPE:
        watcher.send_input(event)
    stats: dict = {}
    for _ in range(100):
        async with http.get(server.make_url("/api/v1/sessions/default")) as response:
            stats = (await response.json())["stats"]
        if stats["input_refused"] >= 2:
            break
        await asyncio.sleep(0.05)
    assert stats["input_refused"] == 2 and stats["input_events"] == 0
    # refused means never sent: the guest still waits at its prompt; a controller's Escape then works
    text = await asyncio.to_thread(vm.text)
    assert MENU_PROMPT in text and BOOT_MENU not in text
    controller = await viewers(server)
    await controller.next_frame()
    await controller.wait_channel_open()
    for event in ESCAPE:
        controller.send_input(event)
    await asyncio.to_thread(vm.wait_text, BOOT_MENU, 20)


async def test_qemu_killed_mid_stream_shows_no_signal_to_its_viewer_and_then_the_picture_again(
    bus: Bus, start_vm, make_server, http, viewers
):
    """QEMU dies (SIGKILL) under a watching viewer and is started again: the viewer is told the display
    is lost and sees the NO SIGNAL picture, then is told it streams and sees the guest, on one connection."""
    display = f"dbus,addr={bus.address}"
    vm = start_vm(display)
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await wait_state(http, server, "streaming")
    viewer = await viewers(server)
    await viewer.next_frame()
    await viewer.wait_channel_open()
    vm.kill()
    lost = await wait_state(http, server, "lost")
    async with http.get(server.make_url("/api/v1/sessions/default/planes")) as response:
        assert (await response.json())["state"] == "lost"

    await viewer_sees(viewer, "lost", no_signal_shown=True)
    start_vm(display)
    await wait_state(http, server, "streaming")
    await viewer_sees(viewer, "streaming", no_signal_shown=False)
    assert viewer.pc.connectionState == "connected" and len(server.app[REGISTRY].get("default").audience) == 1
    for _ in range(100):
        if (await session_state(http, server))["stats"]["frames_captured"] > lost["stats"]["frames_captured"]:
            return
        await asyncio.sleep(0.1)
    pytest.fail("no frames after QEMU came back")


async def test_a_key_held_by_a_viewer_that_leaves_is_released_in_the_guest(vm: Vm, bus: Bus, make_server, viewers):
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    receiver.send_input({"type": "key", "code": "ControlLeft", "down": True})
    await asyncio.to_thread(wait_for, lambda: vm.keyboard_flags() & CTRL, 10, "Ctrl down in the guest")
    await receiver.close()  # gone mid-keystroke
    await asyncio.to_thread(wait_for, lambda: not vm.keyboard_flags() & CTRL, 10, "Ctrl released in the guest")


@pytest.mark.parametrize("tablet", [True, False], ids=["absolute-tablet", "relative-ps2"])
async def test_pointer_buttons_and_wheel_reach_qemus_input_layer(bus: Bus, start_vm, make_server, viewers, tablet):
    """QEMU traces every input event it routes to the guest; the pointer is absolute where a tablet is."""
    extra = ("-usb", "-device", "usb-tablet") if tablet else ()
    vm = start_vm(f"dbus,addr={bus.address}", "-trace", "input_event_*", *extra)
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    if tablet:
        vm.use_tablet()
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    for event in [
        {"type": "pointer", "x": 0.25, "y": 0.5, "buttons": 0},
        {"type": "pointer", "x": 0.5, "y": 0.5, "buttons": 1},
        {"type": "pointer", "x": 0.5, "y": 0.5, "buttons": 0},
        {"type": "wheel", "dx": 0, "dy": 100},
    ]:
        receiver.send_input(event)
    expected = ["input_event_btn", "wheel-down"] + (["input_event_abs"] if tablet else ["input_event_rel"])
    await asyncio.to_thread(wait_for, lambda: all(w in vm.log_text() for w in expected), 10, f"{expected} traced")
    if tablet:
        # x = 0.5 of QEMU's absolute range 0..0x7fff, whatever the display's size
        assert "input_event_abs con 0, axis x, value 0x3fff" in vm.log_text()


async def test_the_thumbnail_is_qemus_screendump_scaled_down(vm: Vm, bus: Bus, make_server, http):
    server = await make_server(source=f"qemu-dbus:{bus.address}", idle_sample_rate=5.0)
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    url = server.make_url("/api/v1/sessions/default/thumbnail")
    quality, shapes = float("nan"), "no thumbnail"
    # the text cursor blinks, and a sample may be from before the guest's last mode change: until one
    # thumbnail and a screendump show the same
    for _ in range(20):
        async with http.get(url) as response:
            if response.status != 200:
                await asyncio.sleep(0.2)
                continue
            with av.open(io.BytesIO(await response.read())) as container:
                picture = next(container.decode(video=0))
        truth = await asyncio.to_thread(vm.screendump)
        shapes = f"a {picture.width}x{picture.height} thumbnail of a {truth.shape[1]}x{truth.shape[0]} display"
        if picture.width == 320 and truth.shape[1] * picture.height == pytest.approx(
            truth.shape[0] * picture.width, rel=0.02
        ):
            quality = psnr(luma(picture), thumbnail_luma(truth, "rgb24", picture.width, picture.height), skip_rows=0)
            if quality > 30:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the thumbnail never matched QEMU's screendump (last: {shapes}, {quality:.1f} dB)")
