"""`vgpustream serve` as a real process on loopback: for the tests of what a process does, and for the benches."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A running `vgpustream serve`: its process (for signals and CPU time), base URL, port and output file."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve(
    state_dir: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None, scheme: str = "http"
) -> Iterator[Served]:
    """Run `vgpustream serve ARGS` on 127.0.0.1 until the block ends; yields once /healthz answers.

    Its state lives in `state_dir`, its output goes to `serve-PORT.log` beside it, and `env` is added to
    this process's environment; `scheme` is https when ARGS give it a certificate.
    """
    port = port or free_port()
    command = [sys.executable, "-m", "vgpustream", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--host-address", "127.0.0.1", "--state-dir", str(state_dir), *args]  # fmt: skip
    log = state_dir.parent / f"serve-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:  # a file, not a pipe: a full pipe nobody reads would block the server
        process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=output, stderr=subprocess.STDOUT)
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield Served(process, url, port, log)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until /healthz answers; the server listens only once its sessions are up, so they are then."""
    context = ssl._create_unverified_context()  # whoever asked for TLS checks the certificate itself
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vgpustream serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url}/healthz did not answer within {STARTUP_TIMEOUT:g} s")
