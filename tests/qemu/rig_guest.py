"""The rig's Linux guest (Debian's kernel under QEMU, the host's / as its root) on QEMU's D-Bus display.

tests/rig/setup.sh prepares it (.ci/run does); tests/rig/in-guest.sh boots it (about 15 s under TCG)
and runs one command in it, here with the display on a private bus and the devices a test needs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from vgpustream.testing.qemu import Bus

RIG = Path(os.environ.get("RIG", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vgpustream-rig"))
CHECKOUT = Path(__file__).resolve().parents[2]
RUN_LIMIT_S = 600

if not (RIG / "kver").exists():
    pytest.skip("the rig's guest kernel is not prepared (tests/rig/setup.sh; .ci/run runs it)", allow_module_level=True)


class RigGuest:
    """Boots the guest with `-display dbus,addr=BUS,<display_options>` and `devices`, running `command` in it."""

    def __init__(self, directory: Path, display_options: str, devices: str, command: Sequence[str]) -> None:
        self.bus = Bus(directory)
        self.log = directory / "guest.log"
        self.pidfile = directory / "qemu.pid"
        display = f"-display dbus,addr={self.bus.address}" + (f",{display_options}" if display_options else "")
        devices = f"-pidfile {self.pidfile} -device VGA {devices}"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(CHECKOUT / "tests/rig/in-guest.sh"), *command],
                env={
                    **os.environ,
                    "RIG_QEMU_ARGS": f"{display} {devices}",
                    "RIG_TIMEOUT": str(RUN_LIMIT_S),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=CHECKOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """Stop QEMU (in-guest.sh runs it under `timeout`, in a process group of its own); the script then ends."""
        if self.pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(self.pidfile.read_text()), signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
        self.bus.stop()
