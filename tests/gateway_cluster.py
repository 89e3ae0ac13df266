"""A cluster on loopback for the gateway's tests: hosts, gateways in front of them, and hosts that misbehave."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp.test_utils import TestServer

from tests.conftest import OPERATOR_TOKEN
from vgpustream.gateway.app import create_gateway
from vgpustream.gateway.settings import GatewaySettings

GATEWAY_TOKEN = "test-gateway-token"
"""The gateway's own operator token: not the hosts' (OPERATOR_TOKEN), which the gateway keeps to itself."""
CONTROL_PLANE = {"Authorization": f"Bearer {GATEWAY_TOKEN}"}
NODES = ("gpu-host-1", "gpu-host-2", "gpu-host-3")
SOURCE = "synthetic:320x240@30"


class Cluster:
    """Three hosts and what it takes to start gateways in front of them, or to stop a host."""

    def __init__(self, hosts: dict[str, TestServer], start: Callable[..., Awaitable[TestServer]]) -> None:
        self.hosts = hosts
        self._start = start

    def nodes(self, **extra: str) -> tuple[str, ...]:
        return (
            *(f"{name}={host.make_url('')}" for name, host in self.hosts.items()),
            *(f"{n}={u}" for n, u in extra.items()),
        )

    async def gateway(self, **overrides: object) -> TestServer:
        overrides.setdefault("node", self.nodes())
        settings = GatewaySettings(operator_token=GATEWAY_TOKEN, host_token=OPERATOR_TOKEN, **overrides)
        return await self._start(create_gateway(settings))


async def answer(response: aiohttp.ClientResponse) -> tuple[int, dict]:
    return response.status, await response.json()


async def create(control_plane, gateway: TestServer, session_id: str, node: str) -> dict:
    body = {"id": session_id, "source": SOURCE, "node": node, "labels": {"vm": session_id}}
    async with control_plane.post(gateway.make_url("/api/v1/sessions"), json=body) as response:
        assert response.status == 201, await response.text()
        assert response.headers["Location"] == f"/api/v1/sessions/{session_id}?node={node}"
        return await response.json()


async def misbehaving_host(reply: bytes | list[bytes] | None) -> tuple[asyncio.Server, str]:
    """A TCP server on loopback that answers every connection with `reply` (a list: its pieces, a tenth of a
    second apart) and closes it, or (None) reads and never answers at all."""
    held: list[asyncio.StreamWriter] = []
    pieces = [reply] if isinstance(reply, bytes) else reply

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        if pieces is None:
            held.append(writer)  # kept open, silent
            return
        for n, piece in enumerate(pieces):
            if n:
                await asyncio.sleep(0.1)
            writer.write(piece)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"
