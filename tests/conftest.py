"""Shared fixtures: a live vgpustream server on loopback and aiortc viewers of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
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


def test_settings(state_dir: Path, **overrides: Any) -> Settings:
    overrides.setdefault("bitrate", 2_000_000)
    overrides.setdefault("operator_token", OPERATOR_TOKEN)
    return Settings(host_address=LOOPBACK, state_dir=state_dir, **overrides)


@pytest.fixture
async def make_server(aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path) -> ServerFactory:
    """Start a server with test settings plus `overrides`; its state lives in the test's tmp_path."""

    async def make(**overrides: Any) -> TestServer:
        return await aiohttp_server(create_app(test_settings(tmp_path / "state", **overrides)))

    return make


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
