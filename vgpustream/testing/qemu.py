"""A QEMU VM with its display on D-Bus, for the QEMU tests and `bench qemu`: the launching only.

The VM has no disk: SeaBIOS shows MENU_PROMPT for a minute, Escape opens BOOT_MENU; std VGA. What the
VM shows is read by whoever launched it, through the monitor it opens for them: the tests with their
own QMP client (ground truth independent of vgpustream), the bench with vgpustream's.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

SPLASH_MS = 60_000  # SeaBIOS waits this long at MENU_PROMPT
MENU_PROMPT = "Press ESC for boot menu"
BOOT_MENU = "Select boot device"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")


def missing() -> str | None:
    """Why a VM cannot be launched here, or None."""
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (apt install qemu-system-x86)"
    if shutil.which("dbus-daemon") is None:
        return "dbus-daemon is not installed (apt install dbus-daemon)"
    return None


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call `predicate` every `interval` seconds until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


class Bus:
    """A private D-Bus daemon (session configuration) on `bus.sock` in `directory`; ready once constructed."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "bus.sock"
        self.address = f"unix:path={self.path}"
        self.process = subprocess.Popen(
            ["dbus-daemon", "--config-file=/usr/share/dbus-1/session.conf", f"--address={self.address}", "--nofork"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(self.path.exists, START_TIMEOUT, "the D-Bus daemon's socket")
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(STOP_TIMEOUT)


class Qemu:
    """One QEMU process showing on `display` (`dbus,addr=ADDRESS` on a bus, or `dbus,p2p=yes`), with `extra` arguments.

    It listens on two QMP monitors in `directory`, `qmp_path` for whoever watches the VM and `vmm_path` for
    vgpustream (a QMP socket serves one client at a time), and appends its output to `log`. Returns at
    once: a monitor socket exists when QEMU listens on it.
    """

    def __init__(self, directory: Path, display: str, extra: Sequence[str] = ()) -> None:
        self.directory = directory
        self.qmp_path = directory / "qmp.sock"
        self.vmm_path = directory / "vmm.sock"
        self.log = directory / "qemu.log"
        for path in (self.qmp_path, self.vmm_path):
            path.unlink(missing_ok=True)  # a QEMU before this one left them
        with self.log.open("ab") as output:  # a file, not a pipe: a full pipe nobody reads would block QEMU
            self.started = time.time()  # wall clock, as viewers time frames: bench qemu's start of a run
            self.process = subprocess.Popen(self.command(display, extra), stdout=output, stderr=subprocess.STDOUT)

    def command(self, display: str, extra: Sequence[str]) -> list[str]:
        """The command line that starts the VM: SeaBIOS on std VGA, no disk."""
        return [
            *("qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "256", "-vga", "std", "-display", display),
            *("-boot", f"menu=on,splash-time={SPLASH_MS}", "-nic", "user,restrict=on", *self.monitors(), *extra),
        ]

    def monitors(self) -> list[str]:
        return ["-qmp", f"unix:{self.qmp_path},server=on,wait=off", "-qmp", f"unix:{self.vmm_path},server=on,wait=off"]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """Stop QEMU the hard way, as a crash would."""
        self.process.kill()
        self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        """Stop QEMU if it still runs."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(STOP_TIMEOUT)
