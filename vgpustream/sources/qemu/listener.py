"""What QEMU shows on one console: our org.qemu.Display1.Listener, the picture and cursor its calls build.

QEMU calls the listener on the event loop: Scanout/Update (shared pixels, rebuilt in a Framebuffer),
ScanoutDMABUF/UpdateDMABUF (a dma-buf, read with the shared dma-buf reader; UpdateDMABUF's rectangles are
its damage), CursorDefine/MouseSet and Disable. The capture thread reads what they built (`take`, `planes`,
`cursor`): the dma-buf plane and the cursor are handed between the two under one lock. Every call is checked
against its signature and the limits before it changes anything; a refused one gets an error reply.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from dbus_fast import Message, MessageType

from vgpustream.errors import InvalidPlane, VgpuStreamError, bounded
from vgpustream.media.formats import PixelFormat, fourcc_code
from vgpustream.sources.base import Cursor, Frame, PlaneInfo, Planes, Rect
from vgpustream.sources.common.dmabuf import Mapping, PlaneReader, check_plane, map_dmabuf, needed_bytes
from vgpustream.sources.qemu.dbus import PROPERTIES
from vgpustream.sources.qemu.framebuffer import MAX_DAMAGE, Framebuffer, Pixels
from vgpustream.sources.qemu.heads import is_qemu_placeholder

log = logging.getLogger(__name__)

LISTENER = "org.qemu.Display1.Listener"
MAX_CURSOR_EDGE = 256
CURSOR_FORMAT = fourcc_code("AR24")
SIGNATURES = {
    "Scanout": "uuuuay",
    "Update": "iiiiuuay",
    "ScanoutDMABUF": "huuuutb",
    "UpdateDMABUF": "iiii",
    "Disable": "",
    "MouseSet": "iii",
    "CursorDefine": "iiiiay",
}
"""The Listener methods QEMU calls, with their D-Bus signatures (QEMU's ui/dbus-display1.xml)."""


@dataclass
class DmabufPlane:
    """A scanout dma-buf QEMU handed over, mapped; the listener owns it and closes it when it is replaced."""

    mapping: Mapping
    plane: PlaneInfo
    format: PixelFormat
    y0_top: bool
    serial: int


class QemuListener:
    """The Listener QEMU calls for one console, and the picture and cursor it builds from those calls."""

    def __init__(self, console: str, max_edge: int, resized: Callable[[], None]) -> None:
        """`resized`: the guest changed mode without a new Scanout (an Update that does not fit)."""
        self.console = console
        self.max_edge = max_edge
        self.framebuffer = Framebuffer(max_edge)
        self.rejected = 0
        self.disabled = False
        """The guest turned the display off (Disable)."""
        self.placeholder = False
        """The head shows QEMU's own picture for a display the guest has not set up (no Update since)."""
        self._resized = resized
        self._lock = threading.Lock()
        self._dmabuf: DmabufPlane | None = None
        self._dmabuf_dirty = False
        self._dmabuf_damage: list[Rect] | None = None
        """The UpdateDMABUF rectangles since the dma-buf was last read; None: all of it."""
        self._reader = PlaneReader()
        self._cursor: Cursor | None = None

    # read on the capture thread

    def take(self) -> Frame | None:
        """The picture if it changed since the last take (with its damage), else None."""
        with self._lock:
            dmabuf = self._dmabuf
            return self._read_dmabuf(dmabuf) if dmabuf is not None else self.framebuffer.take()

    def planes(self) -> Planes:
        with self._lock:
            primary = self._dmabuf.plane if self._dmabuf is not None else self.framebuffer.plane()
            cursor = self._cursor
        cursor_plane = None
        if cursor is not None and cursor.image is not None:
            height, width = cursor.image.shape[:2]
            cursor_plane = PlaneInfo(CURSOR_FORMAT, 0, width, height, width * 4, width * height * 4)
        return Planes(primary=primary, cursor=cursor_plane)

    def cursor(self) -> Cursor | None:
        return self._cursor

    def _read_dmabuf(self, dmabuf: DmabufPlane) -> Frame | None:
        if not self._dmabuf_dirty:
            return None
        damage, self._dmabuf_dirty, self._dmabuf_damage = self._dmabuf_damage, False, []
        frame = self._reader.read(dmabuf.mapping, dmabuf.plane, dmabuf.format, dmabuf.serial)
        if frame is not None and not dmabuf.y0_top:
            frame.pixels = np.ascontiguousarray(frame.pixels[::-1])  # rendered bottom-up (GL origin)
        if frame is not None and damage is not None:
            frame.damage = tuple(damage)
        return frame

    # on the event loop

    def clear(self) -> None:
        """Forget the picture (detached): the dma-buf is closed, the framebuffer emptied."""
        self.set_dmabuf(None)
        self.framebuffer.clear()

    def set_dmabuf(self, dmabuf: DmabufPlane | None) -> None:
        with self._lock:
            old, self._dmabuf = self._dmabuf, dmabuf
            self._dmabuf_dirty, self._dmabuf_damage = dmabuf is not None, None
            self._reader.forget()
        if old is not None:
            old.mapping.close()

    def on_call(self, message: Message) -> Message | None:
        """A call on the listener's connection: its reply, or None for dbus-fast to answer."""
        if message.message_type is not MessageType.METHOD_CALL:
            return None
        if message.interface == PROPERTIES and message.member == "GetAll":
            # QEMU's proxy for the listener loads its properties first; it has none
            return Message.new_method_return(message, "a{sv}", [{}])
        expected = SIGNATURES.get(message.member)
        if message.interface != LISTENER or expected is None:
            return None  # dbus-fast answers UnknownMethod
        received = list(message.unix_fds)
        try:
            if message.signature != expected:
                raise InvalidPlane(f"{message.member} with signature {bounded(message.signature, 20)}")
            getattr(self, f"_listener_{message.member}")(message.body, received)
        except VgpuStreamError as exc:
            self._reject(exc)
            return Message.new_error(message, "org.qemu.Display1.Error.Invalid", exc.message)
        finally:
            for fd in received:
                os.close(fd)
        return Message.new_method_return(message)

    def _reject(self, exc: VgpuStreamError) -> None:
        self.rejected += 1
        if self.rejected % 100 == 1:  # rate-limited: the first and then one in a hundred
            log.warning("QEMU display %s: refused (%d so far): %s", self.console, self.rejected, exc.message)

    def _listener_Scanout(self, body: list[Any], fds: list[int]) -> None:
        pixels = Pixels(*body)
        self.framebuffer.scanout(pixels)
        self.set_dmabuf(None)
        self.disabled = False
        self.placeholder = is_qemu_placeholder(pixels.rows(self.max_edge))

    def _listener_Update(self, body: list[Any], fds: list[int]) -> None:
        x, y, *pixels = body
        self.placeholder = False  # the guest draws
        if not self.framebuffer.update(x, y, Pixels(*pixels)):
            self._resized()

    def _listener_ScanoutDMABUF(self, body: list[Any], fds: list[int]) -> None:
        index, width, height, stride, fourcc, modifier, y0_top = body
        if not 0 <= index < len(fds):
            raise InvalidPlane("ScanoutDMABUF without its file descriptor")
        mapping = map_dmabuf(fds.pop(index), "QEMU's scanout dma-buf")
        try:
            plane = PlaneInfo(fourcc, modifier, width, height, stride, needed_bytes(modifier, stride, height))
            fmt = check_plane(plane, mapping.size, self.max_edge)
        except BaseException:
            mapping.close()
            raise
        serial = self._dmabuf.serial + 1 if self._dmabuf is not None else 0
        self.set_dmabuf(DmabufPlane(mapping, plane, fmt, y0_top, serial))
        self.framebuffer.clear()
        self.disabled = False

    def _listener_UpdateDMABUF(self, body: list[Any], fds: list[int]) -> None:
        with self._lock:
            dmabuf, damage = self._dmabuf, self._dmabuf_damage
            self._dmabuf_dirty = dmabuf is not None
            if dmabuf is None or damage is None:
                return
            # QEMU does not say which way up a bottom-up (GL) buffer's rectangles are: that one is all damage,
            # as is a rectangle off the picture
            whole = Rect(0, 0, dmabuf.plane.width, dmabuf.plane.height)
            rect = Rect(*body).intersection(whole) if dmabuf.y0_top else None
            self._dmabuf_damage = [*damage, rect] if rect is not None and len(damage) < MAX_DAMAGE else None

    def _listener_Disable(self, body: list[Any], fds: list[int]) -> None:
        self.clear()
        self.disabled = True

    def _listener_MouseSet(self, body: list[Any], fds: list[int]) -> None:
        x, y, on = body
        cursor = self._cursor
        if cursor is not None:
            self._cursor = Cursor(cursor.image, cursor.hot_x, cursor.hot_y, x, y, bool(on), cursor.serial)

    def _listener_CursorDefine(self, body: list[Any], fds: list[int]) -> None:
        width, height, hot_x, hot_y, data = body
        if not (0 < width <= MAX_CURSOR_EDGE and 0 < height <= MAX_CURSOR_EDGE) or len(data) != width * height * 4:
            raise InvalidPlane(f"cursor {width}x{height} with {len(data)} bytes of image")
        image = np.frombuffer(data, dtype=np.uint8).reshape(height, width, 4).copy()  # QEMU's ARGB words: B,G,R,A
        old = self._cursor
        self._cursor = Cursor(
            image=image,
            hot_x=min(max(hot_x, 0), width - 1),
            hot_y=min(max(hot_y, 0), height - 1),
            x=old.x if old else 0,
            y=old.y if old else 0,
            visible=old.visible if old else True,
            serial=old.serial + 1 if old else 1,
        )
