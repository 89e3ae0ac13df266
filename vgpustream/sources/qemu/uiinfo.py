"""A console's size hint (org.qemu.Display1.Console.SetUIInfo): the size the display device offers the guest
as its preferred mode, and whether the device takes a hint at all (virtio-gpu does; std VGA does not)."""

from __future__ import annotations

import contextlib

from vgpustream.errors import UnsupportedOperation, VgpuStreamError
from vgpustream.input.resize import physical_size_mm
from vgpustream.sources.qemu.dbus import Display

CONSOLE = "org.qemu.Display1.Console"


class UiInfo:
    """The size hints one source gives one console, and what QEMU said of them."""

    def __init__(self, console: str) -> None:
        self.console = console
        self.follows: bool | None = None
        """Whether QEMU's display device takes a size hint; None until QEMU said."""
        self._given = [0, 0, 0, 0, 0, 0]
        """The last SetUIInfo given (none yet: zeros, QEMU's own initial value)."""

    async def ask(self, display: Display, width: int, height: int, scale: float) -> None:
        """Offer the guest this size (and the physical size that gives it `scale`)."""
        width_mm, height_mm = physical_size_mm(width, height, scale)
        await self._give(display, [width_mm, height_mm, 0, 0, width, height])

    async def learn_whether_followed(self, display: Display) -> None:
        """QEMU tells whether the display device takes a size hint only when given one: give it the last one
        this source gave (zeros at first, QEMU's initial value), which QEMU drops as unchanged, so the guest
        sees nothing of it. (Had another client, or an earlier process, given QEMU a size, zeros take it back.)"""
        if self.follows is not None:
            return
        with contextlib.suppress(VgpuStreamError):  # unsupported: now known; no answer: asked again next time
            await self._give(display, self._given)

    async def _give(self, display: Display, body: list[int]) -> None:
        try:
            await display.call(self.console, CONSOLE, "SetUIInfo", "qqiiuu", body)
        except UnsupportedOperation:
            self.follows = False
            raise
        self.follows = True
        self._given = body
