"""The tests' view of a QEMU VM (launched by vgpustream.testing.qemu, as `bench qemu` does): what it shows.

Ground truth comes from QEMU itself, independently of vgpustream: `screendump` for the picture and a
read of the VGA text buffer (physical 0xB8000) for the words on the screen. The QMP client here is
deliberately separate from the product's; only the launching is shared.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vgpustream.testing.qemu import START_TIMEOUT, STOP_TIMEOUT, Qemu, wait_for

VGA_TEXT = 0xB8000
IN_GUEST = Path(__file__).parents[1] / "rig" / "in-guest.sh"
RIG = Path(os.environ.get("RIG") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vgpustream-rig")


class Vm(Qemu):
    """A launched VM with the tests' own QMP client on its first monitor."""

    display_device = "vga"
    """The QOM id of the display device, for a screendump of a head other than the first."""

    def __init__(self, directory: Path, display: str, extra: Sequence[str] = ()) -> None:
        super().__init__(directory, display, extra)
        self._qmp = wait_for(self._connect, START_TIMEOUT, "QEMU's QMP socket")
        self._lines = self._qmp.makefile("r")
        self._lines.readline()  # the greeting
        self.qmp("qmp_capabilities")

    def _connect(self) -> socket.socket | None:
        """A connection to the monitor, or None while QEMU does not listen yet."""
        monitor = socket.socket(socket.AF_UNIX)
        try:
            monitor.connect(str(self.qmp_path))
        except (FileNotFoundError, ConnectionRefusedError):
            monitor.close()
            return None
        return monitor

    def qmp(self, command: str, **arguments) -> object:
        self._qmp.sendall(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
        while True:
            reply = json.loads(self._lines.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")

    def screendump(self, head: int = 0) -> np.ndarray:
        """The display (its head `head`) as QEMU sees it, (height, width, 3) RGB."""
        path = self.directory / "screen.ppm"
        self.qmp("screendump", filename=str(path), **({"device": self.display_device, "head": head} if head else {}))
        data = path.read_bytes()
        # the header ends with one whitespace byte: the pixels after it may start with bytes that are whitespace
        header = re.match(rb"P6\s+(\d+)\s+(\d+)\s+255\s", data)
        assert header, data[:20]
        width, height = int(header[1]), int(header[2])
        pixels = np.frombuffer(data[header.end() :], dtype=np.uint8)
        if pixels.size != width * height * 3:  # the guest changed mode while QEMU wrote the file: ask again
            return self.screendump(head)
        return pixels.reshape(height, width, 3)

    def text(self) -> str:
        """The characters in the VGA text buffer (80x25), as one string."""
        path = self.directory / "text.bin"
        self.qmp("pmemsave", val=VGA_TEXT, size=80 * 25 * 2, filename=str(path))
        return bytes(path.read_bytes()[::2]).decode("cp437")

    def keyboard_flags(self) -> int:
        """The BIOS keyboard shift flags (BDA 0x417; bit 2: a Ctrl key is down), kept by SeaBIOS."""
        path = self.directory / "flags.bin"
        self.qmp("pmemsave", val=0x417, size=1, filename=str(path))
        return path.read_bytes()[0]

    def use_tablet(self) -> None:
        """Make the USB tablet (`-usb -device usb-tablet`) the active pointer, as a guest's tablet driver
        would; SeaBIOS drives none. QEMU tells the source through the Mouse's IsAbsolute property."""
        mice = self.qmp("human-monitor-command", **{"command-line": "info mice"})
        match = re.search(r"Mouse #(\d+): QEMU HID Tablet", str(mice))
        assert match, mice
        self.qmp("human-monitor-command", **{"command-line": f"mouse_set {match[1]}"})

    def wait_text(self, words: str, timeout: float = 60, without: str | None = None) -> None:
        """Wait until the screen shows `words` (and not `without`)."""

        def shown() -> bool:
            text = self.text()
            return words in text and (without is None or without not in text)

        wait_for(shown, timeout, f"{words!r} on the VM's screen" + (f" without {without!r}" if without else ""), 0.1)

    def kill(self) -> None:
        self._close_qmp()
        super().kill()

    def stop(self) -> None:
        self._close_qmp()
        super().stop()

    def _close_qmp(self) -> None:
        self._lines.close()
        self._qmp.close()


class LinuxVm(Vm):
    """Debian's kernel (the rig's guest, tests/rig/in-guest.sh) on a virtio-vga: a guest whose display follows
    the size QEMU offers it (Console.SetUIInfo), as the kernel's fbdev console takes the preferred mode.

    The console starts at `xres` x `yres`, which is also the largest mode it can take (its framebuffer's size).
    With `outputs` > 1 the device has that many heads (QEMU's Console_0, Console_1, ...); `append` goes on the
    kernel's command line (`video=Virtual-2:1024x768e` turns the second head on); `extra` are more QEMU arguments,
    without spaces.
    """

    def __init__(
        self,
        directory: Path,
        display: str,
        xres: int = 1920,
        yres: int = 1200,
        outputs: int = 1,
        append: str = "",
        extra: Sequence[str] = (),
    ) -> None:
        self.xres, self.yres = xres, yres
        self.outputs, self.append = outputs, append
        super().__init__(directory, display, extra)

    @staticmethod
    def missing() -> str | None:
        """Why the guest cannot be booted here, or None."""
        if not (RIG / "kver").exists():
            return f"the rig's guest kernel is not set up in {RIG} (run tests/rig/setup.sh)"
        return None

    def command(self, display: str, extra: Sequence[str]) -> list[str]:
        device = f"virtio-vga,id={self.display_device},xres={self.xres},yres={self.yres},max_outputs={self.outputs}"
        qemu = ["-display", display, "-device", device, *self.monitors(), *extra]
        guest = "modprobe virtio_gpu && exec sleep 3600"
        environment = [f"RIG_QEMU_ARGS={' '.join(qemu)}", f"RIG_APPEND={self.append}", "RIG_MEM=512M"]
        return ["env", *environment, str(IN_GUEST), "sh", "-c", guest]

    def wait_mode(self, width: int, height: int, timeout: float = 60, head: int = 0) -> None:
        """Wait until the guest's display (its head `head`) is width x height (QEMU's screendump, independent of
        vgpustream)."""

        def shown() -> bool:
            return self.screendump(head).shape[:2] == (height, width)

        wait_for(shown, timeout, f"the guest's display {head} at {width}x{height}", 0.2)

    def stop(self) -> None:
        """Quit QEMU through its monitor: in-guest.sh then cleans up after it."""
        if self.process.poll() is None:
            self._qmp.sendall(b'{"execute": "quit"}\n')
            self.process.wait(STOP_TIMEOUT)
        self._close_qmp()


def bgrx_to_rgb(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels[:, :, 2::-1])
