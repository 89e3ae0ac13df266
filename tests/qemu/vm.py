"""The tests' view of a QEMU VM (launched by vgpustream.testing.qemu, as `bench qemu` does): what it shows.

Ground truth comes from QEMU itself, independently of vgpustream: `screendump` for the picture and a
read of the VGA text buffer (physical 0xB8000) for the words on the screen. The QMP client here is
deliberately separate from the product's; only the launching is shared.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vgpustream.testing.qemu import START_TIMEOUT, Qemu, wait_for

VGA_TEXT = 0xB8000


class Vm(Qemu):
    """A launched VM with the tests' own QMP client on its first monitor."""

    def __init__(self, directory: Path, display: str, extra: Sequence[str] = ()) -> None:
        super().__init__(directory, display, extra)
        wait_for(self.qmp_path.exists, START_TIMEOUT, "QEMU's QMP socket")
        self._qmp = socket.socket(socket.AF_UNIX)
        self._qmp.connect(str(self.qmp_path))
        self._lines = self._qmp.makefile("r")
        self._lines.readline()  # the greeting
        self.qmp("qmp_capabilities")

    def qmp(self, command: str, **arguments) -> object:
        self._qmp.sendall(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
        while True:
            reply = json.loads(self._lines.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")

    def screendump(self) -> np.ndarray:
        """The display as QEMU sees it, (height, width, 3) RGB."""
        path = self.directory / "screen.ppm"
        self.qmp("screendump", filename=str(path))
        data = path.read_bytes()
        magic, width, height, depth, pixels = data.split(maxsplit=4)
        assert magic == b"P6" and depth == b"255"
        return np.frombuffer(pixels, dtype=np.uint8).reshape(int(height), int(width), 3)

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


def bgrx_to_rgb(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels[:, :, 2::-1])
