"""`vgpustream serve` (and `vgpustream gateway`) as a real process on loopback: for the tests of what a process
does, and for the benches."""

from __future__ import annotations

import asyncio
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

STARTUP_TIMEOUT = 90.0
"""Under QEMU's TCG (the VFIO rig's guest) importing the server alone takes 20-28 s; a server that
exits instead is reported at once."""
STOP_TIMEOUT = 20.0
SETTLE_SECONDS = 15.0
"""How long a served process's closing transports get to give their fds and threads back."""


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
    arguments = ["--host-address", "127.0.0.1", "--state-dir", str(state_dir), *args]
    with running("serve", arguments, port, state_dir.parent, env=env, scheme=scheme) as served:
        yield served


@contextmanager
def gateway(log_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """Run `vgpustream gateway ARGS` on 127.0.0.1 until the block ends; yields once /healthz answers. Its output
    goes to `gateway-PORT.log` in `log_dir`."""
    with running("gateway", list(args), free_port(), log_dir, env=env, scheme="http") as served:
        yield served


@contextmanager
def running(
    command: str, args: list[str], port: int, log_dir: Path, *, env: dict[str, str] | None, scheme: str
) -> Iterator[Served]:
    """`vgpustream COMMAND` listening on 127.0.0.1:`port` with ARGS, from /healthz's first answer to SIGINT."""
    argv = [sys.executable, "-m", "vgpustream", command, "--host", "127.0.0.1", "--port", str(port), *args]
    log = log_dir / f"{command}-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:  # a file, not a pipe: a full pipe nobody reads would block the server
        process = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=output, stderr=subprocess.STDOUT)
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
            raise RuntimeError(
                f"vgpustream {process.args[3]} exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url}/healthz did not answer within {STARTUP_TIMEOUT:g} s")


def resources(pid: int) -> dict[str, int]:
    """Open fds, threads and resident memory (kB) of a process, from /proc."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
        "rss_kb": int(status["VmRSS"].split()[0]),
    }


async def settle(pid: int, baseline: dict[str, int]) -> dict[str, int]:
    """The server's resources once fds and threads are back to `baseline`, or after SETTLE_SECONDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        now = resources(pid)
        if (now["fds"] <= baseline["fds"] and now["threads"] <= baseline["threads"]) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.25)
