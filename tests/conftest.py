"""Shared fixtures: a live vgpustream server on loopback and aiortc viewers of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from vgpustream.api.app import create_app
from vgpustream.bench.receiver import WhepReceiver
from vgpustream.encoder import EncoderSettings
from vgpustream.settings import Settings

# Every peer, server and viewers, offers 127.0.0.1 only: tests never send media anywhere else.
LOOPBACK = ("127.0.0.1",)

ServerFactory = Callable[..., Awaitable[TestServer]]


def settings(**overrides: Any) -> Settings:
    overrides.setdefault("encoder", EncoderSettings(bitrate=2_000_000, fps=30))
    return Settings(host_addresses=LOOPBACK, **overrides)


@pytest.fixture
async def make_server(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> ServerFactory:
    async def make(**overrides: Any) -> TestServer:
        return await aiohttp_server(create_app(settings(**overrides)))

    return make


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def viewers(http: aiohttp.ClientSession) -> AsyncIterator[Callable[..., Awaitable[WhepReceiver]]]:
    """Connect aiortc viewers with `await viewers(server)`; all are closed after the test."""
    opened: list[WhepReceiver] = []

    async def connect(server: TestServer, session: str = "default", **kwargs: Any) -> WhepReceiver:
        receiver = WhepReceiver(str(server.make_url(f"/whep/{session}")), http, **kwargs)
        opened.append(receiver)
        await receiver.connect()
        return receiver

    yield connect
    for receiver in opened:
        await receiver.close()
