"""A QEMU console's keyboard and mouse: the input protocol as org.qemu.Display1.Keyboard and .Mouse calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from vgpustream.sources.common.qemu_input import QemuInput
from vgpustream.sources.qemu.dbus import Display

KEYBOARD = "org.qemu.Display1.Keyboard"
MOUSE = "org.qemu.Display1.Mouse"


class Attached(Protocol):
    """The source's registration with QEMU, as input uses it: where to call, and whether the pointer is absolute."""

    display: Display
    console: str
    absolute: bool


class DbusInput(QemuInput):
    """The input protocol as org.qemu.Display1.Keyboard and .Mouse calls on the attached console."""

    def __init__(self, attachment: Callable[[], Attached | None], size: Callable[[], tuple[int, int] | None]) -> None:
        """`attachment`: the source's current one (None while detached); `size`: the picture's, where known."""
        super().__init__()
        self._attachment = attachment
        self._size = size
        self._position: tuple[int, int] | None = None

    def _send(self, interface: str, member: str, signature: str, body: list[Any]) -> None:
        attachment = self._attachment()
        if attachment is not None:
            attachment.display.send(attachment.console, interface, member, signature, body)

    def key(self, qnum: int, down: bool) -> None:
        self._send(KEYBOARD, "Press" if down else "Release", "u", [qnum])

    @property
    def relative_pointer(self) -> bool:
        attachment = self._attachment()
        return attachment is not None and not attachment.absolute

    def move(self, x: float, y: float) -> None:
        attachment, size = self._attachment(), self._size()
        if attachment is None or size is None:
            return
        point = (min(round(x * size[0]), size[0] - 1), min(round(y * size[1]), size[1] - 1))
        if attachment.absolute:
            self._send(MOUSE, "SetAbsPosition", "uu", list(point))
        elif self._position is not None:
            self._send(MOUSE, "RelMotion", "ii", [point[0] - self._position[0], point[1] - self._position[1]])
        self._position = point

    def relative(self, dx: int, dy: int) -> None:
        attachment, size = self._attachment(), self._size()
        if attachment is None or size is None:
            return
        if not attachment.absolute:
            self._send(MOUSE, "RelMotion", "ii", [dx, dy])
            self._position = None  # where the guest's pointer is now, only the guest knows
            return
        # a tablet takes positions: move from where the pointer was put last (the middle at first)
        x, y = self._position or (size[0] // 2, size[1] // 2)
        self._position = (min(max(x + dx, 0), size[0] - 1), min(max(y + dy, 0), size[1] - 1))
        self._send(MOUSE, "SetAbsPosition", "uu", list(self._position))

    def button(self, index: int, down: bool) -> None:
        self._send(MOUSE, "Press" if down else "Release", "u", [index])
