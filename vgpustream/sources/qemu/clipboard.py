"""QEMU's clipboard (org.qemu.Display1.Clipboard): we are a clipboard peer beside the guest's agent.

Both sides implement the interface on /org/qemu/Display1/Clipboard, on the display's connection: we call
Register, then Grab (our text is the clipboard now) and Request (fetch the guest's); QEMU calls our Grab
when the guest copies (then we Request its text), our Request when the guest pastes ours, and Register
to reset the grab serials. The guest side is an agent on `-chardev qemu-vdagent,clipboard=on` (a
virtio-serial port `com.redhat.spice.0`). Text only (`text/plain;charset=utf-8`), bounded; a text that
does not fit is refused and counted, never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from dbus_fast import Message, MessageType

from vgpustream.errors import SourceUnavailable
from vgpustream.input.clipboard import MAX_TEXT_BYTES, GuestClipboard, InvalidClipboard, check_text
from vgpustream.sources.qemu.dbus import DISPLAY_PATH, PROPERTIES, Display

log = logging.getLogger(__name__)

CLIPBOARD_PATH = "Clipboard"
CLIPBOARD = "org.qemu.Display1.Clipboard"
OBJECT_PATH = f"{DISPLAY_PATH}/{CLIPBOARD_PATH}"
TEXT = "text/plain;charset=utf-8"
SELECTION = 0  # the clipboard (not the primary or secondary selection)
SIGNATURES = {"Register": "", "Unregister": "", "Grab": "uuas", "Release": "u", "Request": "uas"}
"""The Clipboard methods QEMU calls on us, with their D-Bus signatures (QEMU's ui/dbus-display1.xml)."""
UNREGISTER_TIMEOUT = 1.0
"""Seconds a QEMU that is going away gets to answer our Unregister."""


class QemuClipboard(GuestClipboard):
    """Our clipboard peer on one QEMU display connection (attached again with each connection)."""

    def __init__(self) -> None:
        super().__init__()
        self._display: Display | None = None
        self._serial = 0
        """The highest grab serial seen; the peer with the highest owns the clipboard."""
        self._ours: bytes | None = None
        """Our text while we own the clipboard, for QEMU's Request."""
        self._grabbing: asyncio.Task[None] | None = None
        self._fetching: asyncio.Task[None] | None = None
        self._pending_fetch = False
        self.refused = 0
        """Texts from the guest refused (not text, too large, not UTF-8)."""

    async def attach(self, display: Display) -> None:
        """Register as a clipboard peer on `display`'s connection; never raises (no clipboard then)."""
        self.detach()
        display.bus.add_message_handler(self._on_call)
        self._display = display
        try:
            await display.call(CLIPBOARD_PATH, CLIPBOARD, "Register")
        except SourceUnavailable as exc:
            log.warning("QEMU clipboard: not attached: %s", exc.message)
            self.detach()
            return
        self._serial = 0
        self.available = True

    async def release(self) -> None:
        """Unregister from QEMU while the connection is still up, then detach: QEMU keeps a peer that only
        went away (its connection closed) registered, and refuses the next one ("Clipboard peer already
        registered!"), so a re-attachment (a mode change) would leave the session without a clipboard."""
        display = self._display
        if display is not None:
            with contextlib.suppress(SourceUnavailable, TimeoutError):
                await asyncio.wait_for(display.call(CLIPBOARD_PATH, CLIPBOARD, "Unregister"), UNREGISTER_TIMEOUT)
        self.detach()

    def detach(self) -> None:
        if self._display is not None:
            self._display.bus.remove_message_handler(self._on_call)
        self._display = None
        self.available = False
        for task in (self._grabbing, self._fetching):
            if task is not None:
                task.cancel()

    def write(self, text: str) -> None:
        """Own the clipboard with `text`; a grab still on its way is followed by one more, not by many."""
        self._ours = text.encode()
        self._serial += 1
        if self._grabbing is None or self._grabbing.done():
            self._grabbing = asyncio.create_task(self._grab(), name="qemu-clipboard-grab")

    async def _grab(self) -> None:
        sent = -1
        while self._display is not None and sent != self._serial:
            sent = self._serial
            try:
                await self._display.call(CLIPBOARD_PATH, CLIPBOARD, "Grab", "uuas", [SELECTION, sent, [TEXT]])
            except SourceUnavailable:
                return  # QEMU went away; the source reports that

    async def _fetch(self) -> None:
        """The guest copied: fetch its text (once per grab, the last one if several came meanwhile)."""
        while self._pending_fetch and self._display is not None:
            self._pending_fetch = False
            try:
                request = [SELECTION, [TEXT]]
                mime, data = await self._display.call(CLIPBOARD_PATH, CLIPBOARD, "Request", "uas", request)
                if mime != TEXT or len(data) > MAX_TEXT_BYTES:
                    raise InvalidClipboard("not text, or too large")
                text = bytes(data).decode()
                check_text(text)
            except (SourceUnavailable, InvalidClipboard, UnicodeDecodeError):
                self.refused += 1
                continue
            self.deliver(text)

    def _on_call(self, message: Message) -> Message | None:
        if message.message_type is not MessageType.METHOD_CALL or message.path != OBJECT_PATH:
            return None
        if message.interface == PROPERTIES and message.member == "GetAll":
            return Message.new_method_return(message, "a{sv}", [{}])  # QEMU's proxy loads properties first
        if message.interface != CLIPBOARD or SIGNATURES.get(message.member) != message.signature:
            return None  # dbus-fast answers UnknownMethod
        return getattr(self, f"_on_{message.member}")(message, *message.body)

    def _on_Register(self, message: Message) -> Message:
        self._serial = 0  # QEMU resets the serials (a guest agent connected)
        return Message.new_method_return(message)

    def _on_Unregister(self, message: Message) -> Message:
        self._ours = None
        return Message.new_method_return(message)

    def _on_Grab(self, message: Message, selection: int, serial: int, mimes: list[str]) -> Message:
        if selection == SELECTION and serial >= self._serial:
            self._serial, self._ours = serial, None
            if TEXT in mimes:
                self._pending_fetch = True
                if self._fetching is None or self._fetching.done():
                    self._fetching = asyncio.create_task(self._fetch(), name="qemu-clipboard-fetch")
        return Message.new_method_return(message)

    def _on_Release(self, message: Message, selection: int) -> Message:
        return Message.new_method_return(message)

    def _on_Request(self, message: Message, selection: int, mimes: list[str]) -> Message:
        if selection != SELECTION or self._ours is None or TEXT not in mimes:
            return Message.new_error(message, "org.qemu.Display1.Error.Failed", "no text in this clipboard")
        return Message.new_method_return(message, "say", [TEXT, self._ours])
