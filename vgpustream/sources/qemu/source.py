"""QEMU's D-Bus display (org.qemu.Display1) as a frame source, with its keyboard and mouse as input sink.

The story of an attachment: connect to QEMU (through a bus, or peer to peer via QMP `add_client`),
read the console's size, register a Listener on a private socket (`listener.py`: what QEMU shows arrives
there), and attach the sound and the clipboard beside it. QEMU 7.2 sends no new Scanout on a guest mode
change, so a size change (Console properties, or an Update that does not fit) means: attach again, which
starts with a fresh Scanout. When the listener's socket closes, QEMU has gone: the source is lost, and a
supervisor attaches again until QEMU is back. Keyboard and mouse (`input.py`) and the size hint
(`uiinfo.py`) go to the attached console.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from vgpustream.compat import PeerBus
from vgpustream.errors import SourceUnavailable, VgpuStreamError
from vgpustream.input.microphone import MicrophoneIn
from vgpustream.media.sound import SoundOut
from vgpustream.sources.base import Cursor, Frame, InputSink, Planes, Source, SourceState
from vgpustream.sources.common.options import DEFAULT_MAX_EDGE
from vgpustream.sources.common.placeholder import no_signal_frame
from vgpustream.sources.qemu.audio import QemuAudioIn, QemuAudioOut
from vgpustream.sources.qemu.clipboard import QemuClipboard
from vgpustream.sources.qemu.dbus import Display, add_match, peer_connection
from vgpustream.sources.qemu.heads import QemuHeads
from vgpustream.sources.qemu.input import MOUSE, DbusInput
from vgpustream.sources.qemu.listener import QemuListener
from vgpustream.sources.qemu.uiinfo import CONSOLE, UiInfo

log = logging.getLogger(__name__)

RETRY_INTERVAL = 0.25  # between attempts to attach while QEMU is away (a failed one costs a connect)
CLOSE_RETRY = 0.5  # seconds between cancellations of a supervisor that goes on

Connector = Callable[[], Awaitable[tuple[MessageBus, bool]]]
"""Opens a connection to QEMU's display; returns it and whether it is peer to peer (no bus)."""


class _Attachment:
    """One registration with QEMU: the connection, the console's path, and the listener's socket."""

    def __init__(self, bus: MessageBus, peer: bool, listener_socket: PeerBus, console: str, absolute: bool) -> None:
        self.display = Display(bus, peer)
        self.listener_socket = listener_socket
        """The peer connection QEMU calls our Listener on; it closes when QEMU goes."""
        self.console = console
        self.absolute = absolute

    def close(self) -> None:
        self.listener_socket.disconnect()
        self.display.bus.disconnect()


class QemuDisplaySource(Source):
    """One console of a QEMU VM, through `-display dbus`: the attachment's lifetime (attach, re-attach on a mode
    change, wait for QEMU to come back) and the Source interface over what its parts hold: the Listener's
    picture and cursor, the console's size hint, keyboard and mouse, sound, microphone and clipboard."""

    def __init__(self, connect: Connector, console: int = 0, max_edge: int = DEFAULT_MAX_EDGE) -> None:
        self._loop = asyncio.get_running_loop()
        """The event loop QEMU's connections live on; created on it, the source is driven from another thread."""
        self._connect = connect
        self.console = f"Console_{console}"
        self._heads = QemuHeads(self, console)
        self.max_edge = max_edge
        self.listener = QemuListener(self.console, max_edge, self._resized)
        self.attachments = 0
        self._attachment: _Attachment | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._reattach = asyncio.Event()
        self._lost = False
        """Written on the event loop: QEMU went away (or never came) and is being waited for."""
        self._shown: tuple[int, SourceState] = (0, SourceState.STARTING)
        """Written on the capture thread: what the last frame showed, during which attachment."""
        self._ui_info = UiInfo(self.console)
        self._input = DbusInput(lambda: self._attachment, lambda: self.listener.framebuffer.size)
        self._sound = SoundOut()
        self.audio = QemuAudioOut(self._sound)
        self._microphone = MicrophoneIn()
        self.audio_in = QemuAudioIn(self._microphone)
        self._clipboard = QemuClipboard()
        self._extras: asyncio.Task[None] | None = None
        """Attaching the sound and the clipboard, for the current attachment."""

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
        return self.listener.planes()

    def cursor(self) -> Cursor | None:
        return self.listener.cursor()

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

        if self.listener.disabled or self.listener.placeholder:
            if self.state is SourceState.NO_SIGNAL:
                return None
            self._shown = (self.attachments, SourceState.NO_SIGNAL)
            return no_signal_frame()
        frame = self.listener.take()
        if frame is not None:
            self._shown = (self.attachments, SourceState.STREAMING)
        return frame

    def display_range(self) -> tuple[int, int] | None:
        """Known from the attachment on (`UiInfo.learn_whether_followed`); None where the device takes no size hint."""
        return (self.max_edge, self.max_edge) if self._ui_info.follows else None

    def resize(self, width: int, height: int, scale: float = 1.0) -> None:
        self._on_loop(self._set_ui_info(width, height, scale))

    async def _set_ui_info(self, width: int, height: int, scale: float) -> None:
        """Console.SetUIInfo: the device (virtio-gpu) offers the guest this size as its preferred mode."""
        attachment = self._attachment
        if attachment is None:
            raise SourceUnavailable("QEMU's display is not attached")
        await self._ui_info.ask(attachment.display, width, height, scale)

    # attaching and re-attaching

    async def _attach(self) -> None:
        bus, peer = await self._connect()
        try:
            attachment = await self._register(bus, peer)
        except BaseException:
            bus.disconnect()
            raise
        await self._ui_info.learn_whether_followed(attachment.display)
        self.attachments += 1
        self._attachment = attachment
        # beside the picture, not before it: the first Scanout comes as soon as it would without them
        self._extras = asyncio.create_task(self._attach_sound_and_clipboard(attachment.display), name="qemu-extras")
        self.listener.disabled = False
        if self._lost:
            log.info("QEMU display %s is back", self.console)
            self._ui_info.follows = None  # a QEMU started again may have another display device
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

        socket = await peer_connection(register, "attach a listener", self.listener.on_call)
        return _Attachment(bus, peer, socket, self.console, bool(mouse.get("IsAbsolute", False)))

    async def _detach(self) -> None:
        attachment, self._attachment = self._attachment, None
        if self._extras is not None:
            self._extras.cancel()
            await asyncio.gather(self._extras, return_exceptions=True)
        await self._clipboard.release()
        if attachment is not None:
            attachment.close()
        self.listener.clear()

    async def _supervise(self) -> None:
        while True:
            attachment = self._attachment
            assert attachment is not None
            gone = asyncio.ensure_future(attachment.listener_socket.wait_for_disconnect())
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

    def _on_signal(self, message: Message) -> None:
        """QEMU's PropertiesChanged of the console (its size) and of the mouse (absolute or relative)."""
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
        size = self.listener.framebuffer.size
        if interface == CONSOLE and size is not None and self._new_size(changed, size):
            self._resized()

    @staticmethod
    def _new_size(changed: dict[str, Any], size: tuple[int, int]) -> bool:
        """Whether changed Console properties give another Width or Height than the picture's."""
        return (changed.get("Width", size[0]), changed.get("Height", size[1])) != size
