"""The QEMU display source's Listener with values no sane QEMU sends, its source URLs, and the input mapping.

The real-QEMU tests are in tests/qemu; these feed the Listener handler D-Bus messages directly, as
the VFIO host tests feed a fake ioctl layer, for the hostile cases a real guest cannot be made to produce.
"""

from __future__ import annotations

import mmap
import re

import numpy as np
import pytest
from dbus_fast import Message

from vgpustream.errors import InvalidSourceUrl
from vgpustream.input.events import KeyEvent, MotionEvent, PointerEvent, WheelEvent
from vgpustream.media.formats import DRM_FORMAT_MOD_LINEAR, fourcc_code, pixel_format
from vgpustream.sources import create_source
from vgpustream.sources.base import PlaneInfo, Rect
from vgpustream.sources.common.dmabuf import Mapping
from vgpustream.sources.common.qemu_input import QNUM, QemuInput
from vgpustream.sources.qemu.framebuffer import MAX_DAMAGE
from vgpustream.sources.qemu.listener import DmabufPlane
from vgpustream.sources.qemu.source import QemuDisplaySource

XRGB = 0x20020888  # PIXMAN_x8r8g8b8


async def never_connects():
    raise AssertionError("these tests do not attach")


def call(member: str, signature: str, body: list, listener: str = "Listener") -> Message:
    """A call as QEMU makes it on one of our listeners (org.qemu.Display1.`listener` at its path)."""
    return Message(
        path=f"/org/qemu/Display1/{listener}",
        interface=f"org.qemu.Display1.{listener}",
        member=member,
        signature=signature,
        body=body,
        serial=7,  # as it came from QEMU's connection
    )


@pytest.fixture
async def source() -> QemuDisplaySource:
    source = QemuDisplaySource(never_connects, max_edge=4096)
    picture = np.arange(64 * 32 * 4, dtype=np.uint32).astype(np.uint8).tobytes()
    reply = source.listener.on_call(call("Scanout", "uuuuay", [64, 32, 256, XRGB, picture]))
    assert reply.error_name is None
    return source


def test_scanout_and_updates_rebuild_the_picture_and_are_its_damage(source):
    first = source.listener.framebuffer.take()
    assert (first.width, first.height) == (64, 32) and first.damage is None, "a Scanout: all of it is new"
    before = first.pixels.copy()
    assert source.listener.framebuffer.take() is None, "nothing changed since"
    patch = bytes([200, 100, 50, 0]) * 4 * 3  # 4x3 pixels, stride 16
    for x in (10, 40):
        assert source.listener.on_call(call("Update", "iiiiuuay", [x, 5, 4, 3, 16, XRGB, patch])).error_name is None
    second = source.listener.framebuffer.take()
    assert second.damage == (Rect(10, 5, 4, 3), Rect(40, 5, 4, 3))
    assert np.all(second.pixels[5:8, 10:14] == [200, 100, 50, 0]) and np.all(
        second.pixels[5:8, 40:44] == [200, 100, 50, 0]
    )
    changed = np.any(second.pixels != before, axis=2)
    changed[5:8, 10:14] = changed[5:8, 40:44] = False
    assert not changed.any(), "only the damaged rectangles changed"


def test_past_max_damage_updates_the_whole_picture_counts_as_changed(source):
    source.listener.framebuffer.take()
    patch = bytes([1, 2, 3, 0])
    for n in range(MAX_DAMAGE + 1):
        source.listener.on_call(call("Update", "iiiiuuay", [n % 64, n // 64, 1, 1, 4, XRGB, patch]))
    frame = source.listener.framebuffer.take()
    assert frame.damage is None and np.all(frame.pixels[0, :, :3] == [1, 2, 3])


def dmabuf_scanout(source: QemuDisplaySource, y0_top: bool) -> np.ndarray:
    """Give the source a 64x32 XR24 scanout buffer as ScanoutDMABUF would (a plain mapping: no GPU here; the
    real dma-buf path is tests/vfio/test_qemu_dmabuf.py); returns the buffer's pixels to draw into."""
    buffer = mmap.mmap(-1, 64 * 32 * 4)
    plane = PlaneInfo(fourcc_code("XR24"), DRM_FORMAT_MOD_LINEAR, 64, 32, 256, 64 * 32 * 4)
    source.listener.set_dmabuf(
        DmabufPlane(Mapping(buffer, len(buffer), None), plane, pixel_format(plane.fourcc), y0_top, 0)
    )
    source._attachment = object()  # as if attached: the listener's calls are all these tests need
    return np.frombuffer(buffer, dtype=np.uint8).reshape(32, 64, 4)


def test_update_dmabuf_rectangles_are_the_damage_of_a_top_down_scanout(source):
    pixels = dmabuf_scanout(source, y0_top=True)
    assert source.next_frame().damage is None, "a new scanout: all of it is new"
    for x, y, width, height in ((10, 5, 4, 3), (60, 30, 10, 10)):
        pixels[y : y + height, x : x + width] = 255
        assert source.listener.on_call(call("UpdateDMABUF", "iiii", [x, y, width, height])).error_name is None
    frame = source.next_frame()
    assert frame.damage == (Rect(10, 5, 4, 3), Rect(60, 30, 4, 2)), "off the picture: clipped"
    assert np.array_equal(frame.pixels, pixels)
    assert source.next_frame() is None, "no UpdateDMABUF since"


def test_update_dmabuf_damages_all_of_a_bottom_up_scanout_or_past_max_damage(source):
    pixels = dmabuf_scanout(source, y0_top=False)
    source.next_frame()
    pixels[0, 0] = 255
    source.listener.on_call(call("UpdateDMABUF", "iiii", [0, 0, 1, 1]))
    assert source.next_frame().damage is None, "which way up its rectangles are, QEMU does not say"
    del pixels  # its buffer is closed when the next scanout replaces it
    pixels = dmabuf_scanout(source, y0_top=True)
    source.next_frame()
    for n in range(MAX_DAMAGE + 1):
        pixels[n // 64, n % 64] = 7
        source.listener.on_call(call("UpdateDMABUF", "iiii", [n % 64, n // 64, 1, 1]))
    assert source.next_frame().damage is None


@pytest.mark.parametrize(
    ("member", "signature", "body", "message"),
    [
        ("Scanout", "uuuuay", [100000, 10, 400000, XRGB, b"\0" * 16], "outside 1..4096"),
        ("Scanout", "uuuuay", [64, 64, 100, XRGB, b"\0" * 256], "less than width 64 x 4"),
        ("Scanout", "uuuuay", [64, 64, 256, XRGB, b"\0" * 1000], "need more than the 1000 bytes"),
        ("Scanout", "uuuuay", [64, 64, 256, 0x12345678, b"\0" * 64 * 256], "unsupported pixman format 0x12345678"),
        ("Update", "iiiiuuay", [0, 0, 16, 16, 64, XRGB, b"\0" * 100], "need more than the 100 bytes"),
        ("CursorDefine", "iiiiay", [4096, 4096, 0, 0, b"\0" * 16], "cursor 4096x4096"),
        ("CursorDefine", "iiiiay", [8, 8, 0, 0, b"\0" * 16], "with 16 bytes"),
        ("Scanout", "uuu", [1, 2, 3], "signature 'uuu'"),
        ("ScanoutDMABUF", "huuuutb", [0, 64, 64, 256, 0x34325258, 0, True], "without its file descriptor"),
    ],
    ids=["huge", "short-stride", "short-data", "format", "short-update", "huge-cursor", "cursor-data", "sig", "no-fd"],
)
def test_hostile_listener_calls_get_an_error_reply_and_change_nothing(source, member, signature, body, message):
    before = source.listener.framebuffer.pixels.copy()
    reply = source.listener.on_call(call(member, signature, body))
    assert reply.error_name == "org.qemu.Display1.Error.Invalid"
    assert message in reply.body[0]
    assert source.listener.rejected == 1
    assert np.array_equal(source.listener.framebuffer.pixels, before), "the picture survived"


def test_an_update_outside_the_picture_asks_for_a_new_scanout(source):
    """QEMU 7.2 sends no Scanout when the guest changes mode; an Update that does not fit tells."""
    assert not source._reattach.is_set()
    reply = source.listener.on_call(call("Update", "iiiiuuay", [60, 0, 16, 1, 64, XRGB, b"\0" * 64]))
    assert reply.error_name is None and source._reattach.is_set()


def test_disable_means_no_signal_and_unknown_methods_are_refused(source):
    source.listener.on_call(call("Disable", "", []))
    assert source.listener.framebuffer.pixels is None and source.listener.disabled
    assert source.listener.on_call(call("Explode", "", [])) is None, "left to dbus-fast: UnknownMethod"


def text_row(width: int, height: int, top: int, left: int, columns: int, ink: int = 0xAA) -> bytes:
    """A black XRGB picture with a 16-pixel row of `columns` grey text pixels (every other one lit) at top, left."""
    picture = np.zeros((height, width, 4), dtype=np.uint8)
    picture[top + 3 : top + 13, left : left + columns : 2, :3] = ink
    return picture.tobytes()


@pytest.mark.parametrize(
    ("picture", "placeholder"),
    [
        (text_row(640, 480, 224, 144, 352), True),  # QEMU's "Guest has not initialized the display (yet)."
        (text_row(1024, 768, 368, 396, 232), True),  # "Display output is not active." on a 1024x768 head
        (text_row(640, 480, 0, 0, 352), False),  # a text console's first line
        (text_row(640, 480, 224, 8, 352), False),  # a line of text in the middle, not centred
        (text_row(640, 480, 224, 144, 352, ink=0xFF), False),  # another colour
        (bytes(640 * 480 * 4), False),  # a black screen
    ],
    ids=["not-initialized", "not-active", "first-line", "left", "white", "black"],
)
def test_qemus_placeholder_for_a_head_the_guest_has_not_set_up_is_told_from_a_picture(source, picture, placeholder):
    """The source shows NO SIGNAL while the head shows QEMU's placeholder (tests/qemu/test_heads.py: a real one)."""
    width, height = (1024, 768) if len(picture) == 1024 * 768 * 4 else (640, 480)
    source.listener.on_call(call("Scanout", "uuuuay", [width, height, width * 4, XRGB, picture]))
    assert source.listener.placeholder is placeholder
    source.listener.on_call(call("Update", "iiiiuuay", [0, 0, 1, 1, 4, XRGB, bytes(4)]))
    assert not source.listener.placeholder, "the guest draws: its picture"


STANDARD_104 = (
    ["Escape", *(f"F{n}" for n in range(1, 13)), "PrintScreen", "ScrollLock", "Pause", "Backquote"]
    + [f"Digit{n}" for n in range(10)]
    + ["Minus", "Equal", "Backspace", "Insert", "Home", "PageUp", "NumLock", "NumpadDivide", "NumpadMultiply"]
    + ["NumpadSubtract", "Tab", *(f"Key{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"), "BracketLeft", "BracketRight"]
    + ["Backslash", "Delete", "End", "PageDown", *(f"Numpad{n}" for n in range(10)), "NumpadAdd", "CapsLock"]
    + ["Semicolon", "Quote", "Enter", "ShiftLeft", "Comma", "Period", "Slash", "ShiftRight", "ArrowUp"]
    + ["NumpadEnter", "ControlLeft", "MetaLeft", "AltLeft", "Space", "AltRight", "MetaRight", "ContextMenu"]
    + ["ControlRight", "ArrowLeft", "ArrowDown", "ArrowRight", "NumpadDecimal"]
)


def test_every_key_of_a_105_key_keyboard_has_its_own_qemu_number():
    keys = [*STANDARD_104, "IntlBackslash"]
    assert len(set(keys)) == 105
    numbers = [QNUM[code] for code in keys]
    assert len(set(numbers)) == 105
    # spot checks against the PC scan code set 1 (extended keys are 0x80 | code after 0xE0)
    assert (QNUM["Escape"], QNUM["KeyA"], QNUM["Enter"], QNUM["NumpadEnter"]) == (0x01, 0x1E, 0x1C, 0x9C)
    assert (QNUM["ArrowUp"], QNUM["Delete"], QNUM["MetaLeft"], QNUM["AudioVolumeMute"]) == (0xC8, 0xD3, 0xDB, 0xA0)


class Recorded(QemuInput):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def key(self, qnum: int, down: bool) -> None:
        self.calls.append(("key", qnum, down))

    def relative(self, dx: int, dy: int) -> None:
        self.calls.append(("relative", dx, dy))

    def move(self, x: float, y: float) -> None:
        self.calls.append(("move", x, y))

    def button(self, index: int, down: bool) -> None:
        self.calls.append(("button", index, down))


def test_input_events_become_qemu_keys_buttons_and_wheel_clicks():
    sink = Recorded()
    sink.send(KeyEvent("ControlLeft", True))
    sink.send(KeyEvent("NoSuchKey", True))
    sink.send(PointerEvent(0.5, 0.25, 0b011))  # primary and secondary down
    sink.send(PointerEvent(0.5, 0.25, 0b010))  # primary up
    sink.send(WheelEvent(0, 250))  # two and a half notches down: two clicks
    sink.send(MotionEvent(-3, 7))  # a locked pointer's motion
    assert sink.unmapped == 1
    assert sink.calls == [
        ("key", 0x1D, True),
        ("move", 0.5, 0.25),
        ("button", 0, True),
        ("button", 2, True),
        ("move", 0.5, 0.25),
        ("button", 0, False),
        *[("button", 4, True), ("button", 4, False)] * 2,
        ("relative", -3, 7),
    ]


MDEV = "0b1c2d3e-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("qemu-dbus:tcp:host=x,port=1", "look like qemu-dbus:unix:path="),
        ("qemu-dbus:unix:path=/run/bus.sock?console=64", "console=0..63"),
        ("qemu-dbus:unix:path=/run/bus.sock?max_edge=10", "max_edge=64..16384"),
        ("qemu-dbus:unix:path=/run/bus.sock?max_edge=²", "max_edge=64..16384"),
        ("qemu-dbus:unix:path=/run/bus.sock?gl=on", "takes only the options"),
        ("qemu-dbus+qmp:unix:relative.sock", "look like qemu-dbus+qmp:unix:/"),
        ("qemu-dbus+qmp:unix:/run/vm/qmp sock", "look like qemu-dbus+qmp:unix:/"),
        (f"vfio:{MDEV}?qmp=/run/vm/qmp.sock", "qmp= takes the VM's monitor socket"),
        (f"vfio:{MDEV}?max_edge=", "vfio: takes only the options max_edge=64..16384 and qmp=unix:PATH"),
        (f"vfio:{MDEV}?qmp=unix:/run/../etc/x", "'..'"),
    ],
)
def test_malformed_qemu_urls_get_a_clear_error(url, message):
    with pytest.raises(InvalidSourceUrl, match=re.escape(message)):
        create_source(url)
