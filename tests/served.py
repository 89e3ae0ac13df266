"""`vgpustream serve` as a real process, for tests of what a process does: restarts, TLS, the CLI."""

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

from tests.conftest import OPERATOR_TOKEN

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
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
    """Run `vgpustream serve` on loopback until the block ends; waits until /healthz answers."""
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "vgpustream",
        "serve",
        "--port",
        str(port),
        "--host-address",
        "127.0.0.1",
        "--state-dir",
        str(state_dir),
        *args,
    ]
    environment = {**os.environ, "VGPUSTREAM_OPERATOR_TOKEN": OPERATOR_TOKEN, "PYTHONPATH": str(ROOT), **(env or {})}
    log = state_dir.parent / f"serve-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:  # a file, not a pipe: a full pipe nobody reads would block the server
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield Served(process, url, port, log)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    context = ssl._create_unverified_context()  # the TLS test checks the certificate itself
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vgpustream serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url}/healthz did not answer within {timeout} s")
