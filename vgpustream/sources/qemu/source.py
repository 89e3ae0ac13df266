"""QEMU's D-Bus display (org.qemu.Display1) as a frame source, with its keyboard and mouse as input sink.

The story of an attachment: connect to QEMU (through a bus, or peer to peer via QMP `add_client`),
read the console's size, register a Listener on a private socket, and receive Scanout/Update (shared
pixels, rebuilt in a Framebuffer) or ScanoutDMABUF/UpdateDMABUF (a dma-buf, read with the
shared dma-buf reader; UpdateDMABUF's rectangles are its damage), CursorDefine/MouseSet and Disable.
QEMU 7.2 sends no new Scanout on a guest mode change, so a size change (Console properties, or an
Update that does not fit) means: attach again, which starts with a fresh Scanout. When the listener's
socket closes, QEMU has gone: the source is lost, and a supervisor attaches again until QEMU is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from vgpustream.compat import PeerBus
from vgpustream.errors import InvalidPlane, SourceUnavailable, UnsupportedOperation, VgpuStreamError, bounded
from vgpustream.input.microphone import MicrophoneIn
from vgpustream.input.resize import physical_size_mm
from vgpustream.media.formats import PixelFormat, fourcc_code
from vgpustream.media.sound import SoundOut
from vgpustream.sources.base import Cursor, Frame, InputSink, PlaneInfo, Planes, Rect, Source, SourceState
from vgpustream.sources.common.dmabuf import Mapping, PlaneReader, check_plane, map_dmabuf, needed_bytes
from vgpustream.sources.common.options import DEFAULT_MAX_EDGE
from vgpustream.sources.common.placeholder import no_signal_frame
from vgpustream.sources.common.qemu_input import QemuInput
from vgpustream.sources.qemu.audio import QemuAudioIn, QemuAudioOut
from vgpustream.sources.qemu.clipboard import QemuClipboard
from vgpustream.sources.qemu.dbus import PROPERTIES, Display, add_match, peer_connection
from vgpustream.sources.qemu.framebuffer import MAX_DAMAGE, Framebuffer, Pixels
from vgpustream.sources.qemu.heads import QemuHeads, is_qemu_placeholder

log = logging.getLogger(__name__)

LISTENER = "org.qemu.Display1.Listener"
CONSOLE = "org.qemu.Display1.Console"
KEYBOARD = "org.qemu.Display1.Keyboard"
MOUSE = "org.qemu.Display1.Mouse"
RETRY_INTERVAL = 0.25  # between attempts to attach while QEMU is away (a failed one costs a connect)
CLOSE_RETRY = 0.5  # seconds between cancellations of a supervisor that goes on
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

Connector = Callable[[], Awaitable[tuple[MessageBus, bool]]]
"""Opens a connection to QEMU's display; returns it and whether it is peer to peer (no bus)."""


@dataclass
class _DmabufPlane:
    mapping: Mapping
    plane: PlaneInfo
    format: PixelFormat
    y0_top: bool
    serial: int


class _Attachment:
    """One registration with QEMU: the connection, the console's path, and the listener's socket."""

    def __init__(self, bus: MessageBus, peer: bool, listener: PeerBus, console: str, absolute: bool) -> None:
        self.display = Display(bus, peer)
        self.listener = listener
        self.console = console
        self.absolute = absolute

    def close(self) -> None:
        self.listener.disconnect()
        self.display.bus.disconnect()


class QemuDisplaySource(Source):
    """One console of a QEMU VM, through `-display dbus`."""

    def __init__(self, connect: Connector, console: int = 0, max_edge: int = DEFAULT_MAX_EDGE) -> None:
        self._loop = asyncio.get_running_loop()
        """The event loop QEMU's connections live on; created on it, the source is driven from another thread."""
        self._connect = connect
        self.console = f"Console_{console}"
        self._heads = QemuHeads(self, console)
        self.max_edge = max_edge
        self.framebuffer = Framebuffer(max_edge)
        self.attachments = 0
        self.rejected = 0
        self._attachment: _Attachment | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._reattach = asyncio.Event()
        self._lock = threading.Lock()
        self._dmabuf: _DmabufPlane | None = None
        self._dmabuf_dirty = False
        self._dmabuf_damage: list[Rect] | None = None
        """The UpdateDMABUF rectangles since the dma-buf was last read; None: all of it."""
        self._reader = PlaneReader()
        self._disabled = False
        self._placeholder = False
        """The head shows QEMU's own picture for a display the guest has not set up (no Update since)."""
        self._lost = False
        """Written on the event loop: QEMU went away (or never came) and is being waited for."""
        self._shown: tuple[int, SourceState] = (0, SourceState.STARTING)
        """Written on the capture thread: what the last frame showed, during which attachment."""
        self._cursor: Cursor | None = None
        self._input = DbusInput(self)
        self._sound = SoundOut()
        self.audio = QemuAudioOut(self._sound)
        self._microphone = MicrophoneIn()
        self.audio_in = QemuAudioIn(self._microphone)
        self._clipboard = QemuClipboard()
        self._extras: asyncio.Task[None] | None = None
        """Attaching the sound and the clipboard, for the current attachment."""
        self._follows: bool | None = None
        """Whether QEMU's display device takes a size hint (SetUIInfo; std VGA does not); None until QEMU said."""
        self._ui_info = [0, 0, 0, 0, 0, 0]
        """The last SetUIInfo this source gave QEMU (none yet: zeros, QEMU's own initial value)."""

    def open(self) -> None:
        self._on_loop(self._open())

    def close(self) -> None:
        self._on_loop(self._close())

    def _on_loop(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` on the event loop the connections live on, and wait for it (from the capture thread)."""
        asyncio.run_coroutine_threadsafe(work, self._loop).result()

    async def _open(self) -> None:
        await self._attach()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"qemu-display-{self.console}")

    async def _close(self) -> None:
        supervisor = self._supervisor
        while supervisor is not None and not supervisor.done():
            # cancelled again until it ends: a cancellation can be lost on the way (Python 3.11's wait_for can
            # lose one that meets the end of what it waits for; where it was lost here is not known), and the
            # supervisor would attach again for ever
            supervisor.cancel()
            await asyncio.wait((supervisor,), timeout=CLOSE_RETRY)
        if supervisor is not None:
            await asyncio.gather(supervisor, return_exceptions=True)  # done: what it ended with, taken
        await self._detach()
        self.audio.close()
        self.audio_in.close()

    @property
    def input_sink(self) -> InputSink:
        return self._input

    @property
    def sound(self) -> SoundOut:
        return self._sound

    @property
    def microphone(self) -> MicrophoneIn:
        return self._microphone

    @property
    def clipboard(self) -> QemuClipboard:
        return self._clipboard

    @property
    def heads(self) -> QemuHeads:
        return self._heads

    @property
    def attachment(self) -> _Attachment | None:
        return self._attachment

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

    @property
    def state(self) -> SourceState:
        """Derived from the connection (event loop) and from what the last frame showed (capture thread)."""
        if self._attachment is None:
            return SourceState.LOST if self._lost else SourceState.STARTING
        attachment, shown = self._shown
        return shown if attachment == self.attachments else SourceState.STARTING

    def next_frame(self) -> Frame | None:
        if self._attachment is None:
            return None  # lost: the supervisor attaches again as soon as QEMU is back

        if self._disabled or self._placeholder:
            if self.state is SourceState.NO_SIGNAL:
                return None
            self._shown = (self.attachments, SourceState.NO_SIGNAL)
            return no_signal_frame()
        with self._lock:
            dmabuf = self._dmabuf
            frame = self._read_dmabuf(dmabuf) if dmabuf is not None else self.framebuffer.take()
        if frame is not None:
            self._shown = (self.attachments, SourceState.STREAMING)
        return frame

    def display_range(self) -> tuple[int, int] | None:
        """Known from the attachment on (`_ask_whether_display_follows`); None where the device takes no size hint."""
        return (self.max_edge, self.max_edge) if self._follows else None

    def resize(self, width: int, height: int, scale: float = 1.0) -> None:
        self._on_loop(self._set_ui_info(width, height, scale))

    async def _set_ui_info(self, width: int, height: int, scale: float) -> None:
        """Console.SetUIInfo: the device (virtio-gpu) offers the guest this size as its preferred mode."""
        attachment = self._attachment
        if attachment is None:
            raise SourceUnavailable("QEMU's display is not attached")
        width_mm, height_mm = physical_size_mm(width, height, scale)
        await self._give_ui_info(attachment.display, [width_mm, height_mm, 0, 0, width, height])

    async def _give_ui_info(self, display: Display, body: list[int]) -> None:
        try:
            await display.call(self.console, CONSOLE, "SetUIInfo", "qqiiuu", body)
        except UnsupportedOperation:
            self._follows = False
            raise
        self._follows = True
        self._ui_info = body

    async def _ask_whether_display_follows(self, display: Display) -> None:
        """QEMU tells whether the display device takes a size hint only when given one: give it the last one
        this source gave (zeros at first, QEMU's initial value), which QEMU drops as unchanged, so the guest
        sees nothing of it. (Had another client, or an earlier process, given QEMU a size, zeros take it back.)"""
        if self._follows is not None:
            return
        with contextlib.suppress(VgpuStreamError):  # unsupported: now known; no answer: asked again next time
            await self._give_ui_info(display, self._ui_info)

    def _read_dmabuf(self, dmabuf: _DmabufPlane) -> Frame | None:
        if not self._dmabuf_dirty:
            return None
        damage, self._dmabuf_dirty, self._dmabuf_damage = self._dmabuf_damage, False, []
        frame = self._reader.read(dmabuf.mapping, dmabuf.plane, dmabuf.format, dmabuf.serial)
        if frame is not None and not dmabuf.y0_top:
            frame.pixels = np.ascontiguousarray(frame.pixels[::-1])  # rendered bottom-up (GL origin)
        if frame is not None and damage is not None:
            frame.damage = tuple(damage)
        return frame

    # attaching and re-attaching

    async def _attach(self) -> None:
        bus, peer = await self._connect()
        try:
            attachment = await self._register(bus, peer)
        except BaseException:
            bus.disconnect()
            raise
        await self._ask_whether_display_follows(attachment.display)
        self.attachments += 1
        self._attachment = attachment
        # beside the picture, not before it: the first Scanout comes as soon as it would without them
        self._extras = asyncio.create_task(self._attach_sound_and_clipboard(attachment.display), name="qemu-extras")
        self._disabled = False
        if self._lost:
            log.info("QEMU display %s is back", self.console)
            self._follows = None  # a QEMU started again may have another display device
        self._lost = False

    async def _attach_sound_and_clipboard(self, display: Display) -> None:
        if not self.audio.registered:  # its own socket: it outlives re-attachments for a mode change
            self.audio.close()
            await self.audio.register(display)
        if not self.audio_in.registered:
            self.audio_in.close()
            await self.audio_in.register(display)
        await self._clipboard.attach(display)

    async def _register(self, bus: MessageBus, peer: bool) -> _Attachment:
        display = Display(bus, peer)
        mouse = await display.properties(self.console, MOUSE)
        if not peer:
            # QEMU's signals reach a bus client only through a match rule (a peer gets them all)
            rule = f"type='signal',sender='org.qemu',path='/org/qemu/Display1/{self.console}'"
            await add_match(bus, rule)
        bus.add_message_handler(self._on_signal)

        def register(fd: int) -> Awaitable[list[Any]]:
            return display.call(self.console, CONSOLE, "RegisterListener", "h", [0], unix_fds=[fd])

        listener = await peer_connection(register, "attach a listener", self._on_listener_call)
        return _Attachment(bus, peer, listener, self.console, bool(mouse.get("IsAbsolute", False)))

    async def _detach(self) -> None:
        attachment, self._attachment = self._attachment, None
        if self._extras is not None:
            self._extras.cancel()
            await asyncio.gather(self._extras, return_exceptions=True)
        await self._clipboard.release()
        if attachment is not None:
            attachment.close()
        self._set_dmabuf(None)
        self.framebuffer.clear()

    async def _supervise(self) -> None:
        while True:
            attachment = self._attachment
            assert attachment is not None
            gone = asyncio.ensure_future(attachment.listener.wait_for_disconnect())
            resize = asyncio.ensure_future(self._reattach.wait())
            await asyncio.wait((gone, resize), return_when=asyncio.FIRST_COMPLETED)
            lost = gone.done()
            for waiter in (gone, resize):
                waiter.cancel()
            await asyncio.gather(gone, resize, return_exceptions=True)
            self._reattach.clear()
            await self._detach()
            if lost:
                self.audio.close()
                self.audio_in.close()
                self._lost = True
                log.warning("QEMU display %s is gone (QEMU stopped?); reconnecting", self.console)
            await self._attach_until_back()

    async def _attach_until_back(self) -> None:
        while True:
            try:
                await self._attach()
                return
            except VgpuStreamError:
                self._lost = True
                await asyncio.sleep(RETRY_INTERVAL)

    def _resized(self) -> None:
        """The guest changed mode without a new Scanout: register again to be sent one."""
        self._reattach.set()

    # what QEMU sends

    def _on_signal(self, message: Message) -> None:
        if (
            message.message_type is not MessageType.SIGNAL
            or message.member != "PropertiesChanged"
            or message.path != f"/org/qemu/Display1/{self.console}"
            or message.signature != "sa{sv}as"
        ):
            return
        interface, values, _ = message.body
        changed = {name: variant.value for name, variant in values.items()}
        attachment = self._attachment
        if interface == MOUSE and "IsAbsolute" in changed and attachment is not None:
            # the guest switched pointing device (a tablet driver loaded, or went away)
            attachment.absolute = bool(changed["IsAbsolute"])
        size = self.framebuffer.size
        if interface == CONSOLE and size is not None and self._new_size(changed, size):
            self._resized()

    @staticmethod
    def _new_size(changed: dict[str, Any], size: tuple[int, int]) -> bool:
        """Whether changed Console properties give another Width or Height than the picture's."""
        return (changed.get("Width", size[0]), changed.get("Height", size[1])) != size

    def _on_listener_call(self, message: Message) -> Message | None:
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
        self._set_dmabuf(None)
        self._disabled = False
        self._placeholder = is_qemu_placeholder(pixels.rows(self.max_edge))

    def _listener_Update(self, body: list[Any], fds: list[int]) -> None:
        x, y, *pixels = body
        self._placeholder = False  # the guest draws
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
        self._set_dmabuf(_DmabufPlane(mapping, plane, fmt, y0_top, serial))
        self.framebuffer.clear()
        self._disabled = False

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
        self._set_dmabuf(None)
        self.framebuffer.clear()
        self._disabled = True

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

    def _set_dmabuf(self, dmabuf: _DmabufPlane | None) -> None:
        with self._lock:
            old, self._dmabuf = self._dmabuf, dmabuf
            self._dmabuf_dirty, self._dmabuf_damage = dmabuf is not None, None
            self._reader.forget()
        if old is not None:
            old.mapping.close()


class DbusInput(QemuInput):
    """The input protocol as org.qemu.Display1.Keyboard and .Mouse calls on the attached console."""

    def __init__(self, source: QemuDisplaySource) -> None:
        super().__init__()
        self.source = source
        self._position: tuple[int, int] | None = None

    def _send(self, interface: str, member: str, signature: str, body: list[Any]) -> None:
        attachment = self.source.attachment
        if attachment is not None:
            attachment.display.send(attachment.console, interface, member, signature, body)

    def key(self, qnum: int, down: bool) -> None:
        self._send(KEYBOARD, "Press" if down else "Release", "u", [qnum])

    @property
    def relative_pointer(self) -> bool:
        attachment = self.source.attachment
        return attachment is not None and not attachment.absolute

    def move(self, x: float, y: float) -> None:
        attachment, size = self.source.attachment, self.source.framebuffer.size
        if attachment is None or size is None:
            return
        point = (min(round(x * size[0]), size[0] - 1), min(round(y * size[1]), size[1] - 1))
        if attachment.absolute:
            self._send(MOUSE, "SetAbsPosition", "uu", list(point))
        elif self._position is not None:
            self._send(MOUSE, "RelMotion", "ii", [point[0] - self._position[0], point[1] - self._position[1]])
        self._position = point

    def relative(self, dx: int, dy: int) -> None:
        attachment, size = self.source.attachment, self.source.framebuffer.size
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
