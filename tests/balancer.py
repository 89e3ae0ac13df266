"""A TCP load balancer for the tests, as a Kubernetes Service is for the gateway's replicas: each connection
goes to the first backend that takes it, byte for byte both ways."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def balancer(backends: list[tuple[str, int]]) -> AsyncIterator[int]:
    """Listen on a port of 127.0.0.1 (yielded) until the block ends, for `backends` in this order."""
    tasks: set[asyncio.Future] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for host, port in backends:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
            except OSError:
                continue  # that replica is gone: the next one
            both = asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
            tasks.add(both)
            both.add_done_callback(tasks.discard)
            return
        writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
