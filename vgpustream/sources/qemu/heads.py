"""The heads of a QEMU VM: one D-Bus Console per display output (`-device virtio-vga,max_outputs=2`).

QEMU lists them on its VM object (`ConsoleIDs`); each Console says its label and size. Whether the guest
turned a head on, QEMU 7.2 says only in pictures: a head the guest has not set up shows QEMU's placeholder
("Guest has not initialized the display (yet)." or "Display output is not active.", grey on black in one
text row across the middle), sent as an ordinary Scanout. So a head other than the source's own is looked at
once per listing: a listener is registered on it, QEMU hands it the head's current picture, and it goes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
from dbus_fast import Message, MessageType

from vgpustream.errors import SourceUnavailable, VgpuStreamError
from vgpustream.sources.base import Head, Heads, SourceState
from vgpustream.sources.qemu.dbus import PROPERTIES, Display, peer_connection
from vgpustream.sources.qemu.framebuffer import Pixels


class Attached(Protocol):
    """A source's connection to QEMU, as the heads use it."""

    @property
    def display(self) -> Display: ...


class HeadSource(Protocol):
    """What the heads ask of the source attached to one of them (vgpustream.sources.qemu.source)."""

    @property
    def state(self) -> SourceState: ...

    @property
    def attachment(self) -> Attached | None: ...


VM = "org.qemu.Display1.VM"
CONSOLE = "org.qemu.Display1.Console"
LOOK_TIMEOUT = 2.0
"""How long QEMU may take to hand a new listener a head's picture, and the source to attach again."""
ATTACH_POLL = 0.05
GLYPH_WIDTH, GLYPH_HEIGHT = 8, 16
"""QEMU's placeholder text is in its VGA font (ui/vgafont.h)."""
PLACEHOLDER_INK = 0xAA
"""The placeholder text's grey (QEMU's color_table_rgb[0][QEMU_COLOR_WHITE])."""


def is_qemu_placeholder(rows: np.ndarray) -> bool:
    """Whether a picture (height, width, 4 bytes BGRX) is QEMU's own for a display the guest has not set up:
    black but for grey text in the character row QEMU centres it in, centred across."""
    height, width = rows.shape[:2]
    if rows.shape[2] != 4 or height < GLYPH_HEIGHT or width < GLYPH_WIDTH:
        return False
    colour = rows[..., :3]
    top = (height // GLYPH_HEIGHT - 1) // 2 * GLYPH_HEIGHT
    if colour[0, 0].any() or colour[:top].any() or colour[top + GLYPH_HEIGHT :].any():
        return False
    band = colour[top : top + GLYPH_HEIGHT]
    lit = band.any(axis=2)
    if not lit.any() or not np.isin(band, (0, PLACEHOLDER_INK)).all():
        return False
    if not ((band[..., 0] == band[..., 1]) & (band[..., 1] == band[..., 2])).all():
        return False
    columns = np.flatnonzero(lit.any(axis=0))
    return abs(int(columns[0]) - (width - 1 - int(columns[-1]))) <= 2 * GLYPH_WIDTH


class QemuHeads(Heads):
    """The heads of the VM a QemuDisplaySource is attached to."""

    def __init__(self, source: HeadSource, own: int) -> None:
        self.source = source
        self.own = own
        """The head the source shows: QEMU takes one listener per client and head, so it is never looked at."""
        self._looking = asyncio.Lock()
        """One look at a time: QEMU takes one listener per client and head."""

    async def list(self, known: Mapping[int, SourceState]) -> list[Head]:
        display = await self._display()
        consoles = (await display.properties("VM", VM)).get("ConsoleIDs", [])
        heads = []
        for console in sorted(consoles):
            properties = await display.properties(f"Console_{console}", CONSOLE)
            if properties.get("Type", "Graphic") != "Graphic":
                continue
            if console in known:
                state = known[console]
            else:
                state = self.source.state if console == self.own else await self._look(display, console)
            heads.append(
                Head(
                    console=console,
                    label=str(properties.get("Label", "")),
                    width=int(properties.get("Width", 0)),
                    height=int(properties.get("Height", 0)),
                    state=state,
                )
            )
        return heads

    async def _display(self) -> Display:
        """The source's connection to QEMU, waiting out a re-attachment (the guest changed mode)."""
        for _ in range(int(LOOK_TIMEOUT / ATTACH_POLL)):
            attachment = self.source.attachment
            if attachment is not None:
                return attachment.display
            await asyncio.sleep(ATTACH_POLL)
        raise SourceUnavailable("QEMU's display is not attached")

    async def _look(self, display: Display, console: int) -> SourceState:
        """What head `console` shows now: a listener of its own is handed the current picture, then goes."""
        shown: asyncio.Future[SourceState] = asyncio.get_running_loop().create_future()

        def on_call(message: Message) -> Message | None:
            if message.message_type is not MessageType.METHOD_CALL:
                return None
            for fd in message.unix_fds:
                os.close(fd)
            if message.interface == PROPERTIES:
                return Message.new_method_return(message, "a{sv}", [{}])
            if not shown.done():
                shown.set_result(_state_of(message))
            return Message.new_method_return(message)

        def register(fd: int) -> Any:
            path = f"Console_{console}"
            return display.call(path, CONSOLE, "RegisterListener", "h", [0], unix_fds=[fd])

        async with self._looking:
            listener = await peer_connection(register, f"look at head {console}", on_call)
            try:
                async with asyncio.timeout(LOOK_TIMEOUT):
                    return await shown
            except TimeoutError:
                return SourceState.STARTING
            finally:
                listener.disconnect()


def _state_of(message: Message) -> SourceState:
    """What the first call QEMU makes on a new listener says of the head."""
    if message.member == "Disable":
        return SourceState.NO_SIGNAL
    if message.member == "Scanout" and message.signature == "uuuuay":
        try:
            rows = Pixels(*message.body).rows(1 << 14)
        except VgpuStreamError:  # a picture that cannot be read is not QEMU's placeholder
            return SourceState.STREAMING
        return SourceState.NO_SIGNAL if is_qemu_placeholder(rows) else SourceState.STREAMING
    return SourceState.STREAMING
