"""Shared fixtures: a live vgpustream server on loopback and aiortc viewers of it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from vgpustream.api.app import create_app
from vgpustream.settings import Settings
from vgpustream.testing.receiver import WhepReceiver

# Every peer, server and viewers, offers 127.0.0.1 only: tests never send media anywhere else.
LOOPBACK = ("127.0.0.1",)
OPERATOR_TOKEN = "test-operator-token"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

ServerFactory = Callable[..., Awaitable[TestServer]]


async def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Until `condition()` holds, polled every 50 ms; AssertionError naming `what` after `timeout` seconds."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


TEST_NET = "192.0.2.10"
"""The tests' namespace's one address beside loopback (tests/netns.sh, TEST-NET-1): browsers with their
default settings ignore a server's loopback candidates, and need a route to gather their own."""


@pytest.fixture
def test_net() -> str:
    """TEST_NET, where this machine has it (in .ci/run's namespace); the test is skipped elsewhere."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((TEST_NET, 0))
        except OSError:
            pytest.skip(f"needs the tests' network namespace with {TEST_NET} (see tests/netns.sh and .ci/run)")
    return TEST_NET


def test_settings(state_dir: Path, **overrides: Any) -> Settings:
    overrides.setdefault("bitrate", 2_000_000)
    overrides.setdefault("operator_token", OPERATOR_TOKEN)
    overrides.setdefault("host_address", LOOPBACK)
    return Settings(state_dir=state_dir, **overrides)


@pytest.fixture
async def make_server(aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path) -> ServerFactory:
    """Start a server with test settings plus `overrides`; its state lives in the test's tmp_path."""

    async def make(**overrides: Any) -> TestServer:
        return await aiohttp_server(create_app(test_settings(tmp_path / "state", **overrides)))

    return make


@pytest.fixture
def fuse_disk(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount a faulty disk (tests/slowfs.py, over a fresh directory) with `fuse_disk(mountpoint, *options)`;
    skips where FUSE cannot be mounted (it needs root and /dev/fuse). Unmounted after the test."""
    if os.geteuid() != 0 or not Path("/dev/fuse").exists():
        pytest.skip("a FUSE mount needs root and /dev/fuse")
    pytest.importorskip("mfusepy", reason="the faulty disk needs mfusepy (pip install -e '.[test]')")
    mounted: list[tuple[Path, subprocess.Popen[bytes]]] = []

    def mount(mountpoint: Path, *options: str) -> Path:
        backing = tmp_path / f"backing{len(mounted)}"
        backing.mkdir()
        mountpoint.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "tests.slowfs", str(backing), str(mountpoint), *options]
        process = subprocess.Popen(
            command, cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        mounted.append((mountpoint, process))
        for _ in range(100):
            if os.path.ismount(mountpoint):
                return mountpoint
            time.sleep(0.05)
        process.kill()
        pytest.skip("cannot mount a FUSE file system here")

    yield mount
    for mountpoint, process in mounted:
        subprocess.run(["umount", str(mountpoint)], check=False)
        process.wait(timeout=10)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client that presents the operator token (the control plane)."""
    async with aiohttp.ClientSession(headers=OPERATOR) as session:
        yield session


@pytest.fixture
async def anonymous() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client without credentials (a person's browser, an attacker)."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def viewers(http: aiohttp.ClientSession) -> AsyncIterator[Callable[..., Awaitable[WhepReceiver]]]:
    """Connect aiortc viewers with `await viewers(server)` (operator token unless `token=`); closed after."""
    opened: list[WhepReceiver] = []

    async def connect(server: TestServer, session: str = "default", **kwargs: Any) -> WhepReceiver:
        receiver = WhepReceiver(str(server.make_url(f"/whep/{session}")), http, **kwargs)
        opened.append(receiver)
        await receiver.connect()
        return receiver

    yield connect
    for receiver in opened:
        await receiver.close()


@pytest.fixture
async def cluster(aiohttp_server: ServerFactory, tmp_path: Path) -> Any:
    """Three hosts on loopback (tests.gateway_cluster.NODES), each with its session 'default'."""
    from tests.gateway_cluster import NODES, SOURCE, Cluster  # noqa: PLC0415 - it imports this module

    hosts = {}
    for name in NODES:
        hosts[name] = await aiohttp_server(create_app(test_settings(tmp_path / name, source=SOURCE)))
    return Cluster(hosts, aiohttp_server)


@pytest.fixture
async def control_plane() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client with the gateway's operator token."""
    from tests.gateway_cluster import CONTROL_PLANE  # noqa: PLC0415 - it imports this module

    async with aiohttp.ClientSession(headers=CONTROL_PLANE) as session:
        yield session
