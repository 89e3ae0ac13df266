"""A real QEMU VM for the D-Bus display tests: no disk, SeaBIOS with a boot menu prompt, std VGA.

Ground truth comes from QEMU itself, independently of vgpustream: `screendump` for the picture and a
read of the VGA text buffer (physical 0xB8000) for the words on the screen. The QMP client here is
deliberately separate from the product's.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np

QEMU = shutil.which("qemu-system-x86_64")
DBUS_DAEMON = shutil.which("dbus-daemon")
SPLASH_MS = 60_000  # SeaBIOS waits this long at "Press ESC for boot menu"
VGA_TEXT = 0xB8000
MENU_PROMPT = "Press ESC for boot menu"
BOOT_MENU = "Select boot device"


def missing() -> str | None:
    """Why these tests cannot run here, or None."""
    if QEMU is None:
        return "qemu-system-x86_64 is not installed (apt install qemu-system-x86; .ci/run does)"
    if DBUS_DAEMON is None:
        return "dbus-daemon is not installed (apt install dbus; .ci/run does)"
    return None


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class Bus:
    """A private D-Bus daemon (session configuration) on a socket in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "bus.sock"
        self.address = f"unix:path={self.path}"
        self.process = subprocess.Popen(
            [DBUS_DAEMON, "--config-file=/usr/share/dbus-1/session.conf", f"--address={self.address}", "--nofork"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.path.exists, 10, "the D-Bus daemon's socket")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Vm:
    """One QEMU process; `display` is `dbus,addr=...` (a bus) or `dbus,p2p=yes`; `extra` arguments."""

    def __init__(self, directory: Path, display: str, extra: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.qmp_path = directory / "qmp.sock"
        self.vmm_path = directory / "vmm.sock"
        """A second monitor, for vgpustream (a QMP socket serves one client at a time)."""
        for path in (self.qmp_path, self.vmm_path):
            path.unlink(missing_ok=True)
        self.log = open(directory / "qemu.log", "ab")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [QEMU, "-machine", "q35,accel=tcg", "-m", "256", "-vga", "std", "-display", display,
             "-boot", f"menu=on,splash-time={SPLASH_MS}", "-nic", "user,restrict=on",
             "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
             "-qmp", f"unix:{self.vmm_path},server=on,wait=off", *extra],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self.qmp_path.exists, 10, "QEMU's QMP socket")
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

    def log_text(self) -> str:
        self.log.flush()
        return (self.directory / "qemu.log").read_text(errors="replace")

    def kill(self) -> None:
        """Stop QEMU the hard way, as a crash would."""
        self._qmp.close()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self._qmp.close()
            self.process.terminate()
            self.process.wait(10)
        self.log.close()


def bgrx_to_rgb(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels[:, :, 2::-1])
