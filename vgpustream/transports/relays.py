"""Every configured STUN and TURN server watched, so that none holds up a viewer.

WHEP gives the server no way to trickle candidates after its answer, and aioice gathers before aiortc
answers. So the answer waits for STUN and TURN servers only a short bound (`--ice-gather-timeout`), and
relay candidates come from a warm allocation: each TURN server has one spare allocation made ahead of
time, handed to the next viewer that gathers and replaced in the background. A healthy TURN server then
costs a viewer nothing, and a dead one costs it nothing either: while the server is known to fail, nobody
waits for it. An allocation still in progress is waited for only until it is the bound old, so one that
never answers holds up no one after that; when it does come it is the next viewer's.

Each server's health (last allocation or answer, failures) is what `/readyz` and `/metrics` report; the
log says so once per change of state, not per viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

import aioice.stun
from aioice import Candidate
from aioice.ice import StunProtocol
from aiortc.rtcicetransport import parse_stun_turn_uri

from vgpustream import compat
from vgpustream.transports.iceservers import IceServer, IceServers

log = logging.getLogger(__name__)

ATTEMPT_TIMEOUT = 5.0
"""Seconds one allocation (or one STUN probe) may take before it counts as a failure."""
RETRY_FIRST, RETRY_MAX = 1.0, 30.0
"""Seconds before the next attempt after a failure, doubling each time up to RETRY_MAX."""
SPARE_MAX_AGE = 3600.0
"""Seconds a spare allocation is kept unclaimed before it is made again (with a fresh credential)."""
PROBE_INTERVAL = 30.0
"""Seconds between two probes of a STUN server that answers."""
SPARE_COMPONENT = 1
"""The ICE component of spare allocations: the only one with rtcp-mux, as every browser offers."""

ServerKey = tuple[tuple[str, int], bool, str]
"""A TURN server as aioice is handed it: (host, port), TLS or not, transport."""


@dataclass
class IceServerHealth:
    """Whether an ICE server answers, as a viewer would have found it."""

    url: str
    state: str = "unknown"
    """unknown (no attempt has ended yet), up or down."""
    last_allocation: float | None = None
    """When it last gave an allocation (TURN) or answered (STUN), Unix seconds."""
    failures: int = 0
    error: str | None = None
    """Why the last attempt failed, while it is down."""

    def succeeded(self, took: float) -> None:
        if self.state != "up":
            log.info("ICE server %s answers (%.0f ms)", self.url, took * 1000)
        self.state, self.last_allocation, self.error = "up", time.time(), None

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        self.error = (str(error) or type(error).__name__)[:200]
        if self.state != "down":
            log.warning("ICE server %s does not answer (%s); viewers get no candidates of it", self.url, self.error)
        self.state = "down"


class WarmRelay:
    """One TURN server's spare allocation: made ahead of time, handed to the next viewer, made again."""

    def __init__(self, url: str, servers: IceServers, bound: float) -> None:
        self.health = IceServerHealth(url)
        parsed = parse_stun_turn_uri(url)
        self.key: ServerKey = ((parsed["host"], parsed["port"]), parsed["scheme"] == "turns", parsed["transport"])
        self._servers = servers
        self._bound = bound
        self._spare: tuple[Candidate, StunProtocol] | None = None
        self._allocating: asyncio.Task[None] | None = None
        self._started = 0.0
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_spare(), name=f"warm-relay-{self.health.url}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._discard_spare()

    async def take(self, protocol_factory: Any) -> tuple[Candidate, StunProtocol]:
        """The spare allocation, for the connection `protocol_factory` is bound to; waits for one in
        progress until it is the bound old. ConnectionError when there is none by then."""
        loop = asyncio.get_running_loop()
        while self._spare is None:
            allocating = self._allocating
            remaining = self._started + self._bound - loop.time()
            if allocating is None or allocating.done() or remaining <= 0:
                raise ConnectionError(f"no TURN allocation of {self.health.url} ready")
            await asyncio.wait({allocating}, timeout=remaining)
        candidate, protocol = self._spare
        self._spare = None
        self._wanted.set()
        compat.claim(protocol, protocol_factory)
        return candidate, protocol

    async def _keep_spare(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            self._started = loop.time()
            self._allocating = asyncio.create_task(self._allocate())
            try:
                await self._allocating
            except Exception as exc:  # whatever a TURN client meets: refused, reset, timeout, TLS, 401
                self.health.failed(exc)
                failures += 1
                await asyncio.sleep(min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1)))
                continue
            self.health.succeeded(loop.time() - self._started)
            failures = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), SPARE_MAX_AGE)
            await self._discard_spare()  # claimed (nothing to do), lost, or too old

    async def _allocate(self) -> None:
        self._wanted.clear()
        server = next(s for s in self._servers.for_server() if s.url == self.health.url)
        (host_port, ssl, transport) = self.key
        self._spare = await asyncio.wait_for(
            compat.AIOICE_RELAYED_CANDIDATE(
                component=SPARE_COMPONENT,
                hide_related_address=False,
                protocol_factory=compat.spare_protocol_factory(self._lost),
                turn_server=host_port,
                turn_username=server.username,
                turn_password=server.credential,
                turn_ssl=ssl,
                turn_transport=transport,
            ),
            ATTEMPT_TIMEOUT,
        )

    def _lost(self) -> None:
        """The spare's transport closed unclaimed: make another."""
        self._wanted.set()

    async def _discard_spare(self) -> None:
        """Give the spare allocation back (within compat.TURN_DELETE_TIMEOUT, also if its server is gone)."""
        spare, self._spare = self._spare, None
        if spare is not None:
            await spare[1].close()


class StunProbe:
    """A STUN server asked for this host's address now and then, from a socket of its own."""

    def __init__(self, url: str) -> None:
        self.health = IceServerHealth(url)
        parsed = parse_stun_turn_uri(url)
        self._server: tuple[str, int] = (parsed["host"], parsed["port"])
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._probe_now_and_then(), name=f"stun-probe-{self.health.url}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _probe_now_and_then(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            started = loop.time()
            try:
                await asyncio.wait_for(self._probe(), ATTEMPT_TIMEOUT)
            except Exception as exc:  # name lookup, socket or STUN transaction errors, timeout
                self.health.failed(exc)
                failures += 1
                await asyncio.sleep(min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1)))
                continue
            self.health.succeeded(loop.time() - started)
            failures = 0
            await asyncio.sleep(PROBE_INTERVAL)

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self._server
        found = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
        address = found[0][4][:2]
        transport, protocol = await loop.create_datagram_endpoint(
            compat.spare_protocol_factory(lambda: None), local_addr=("0.0.0.0", 0)
        )
        try:
            request = aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST)
            await protocol.request(request, address)
        finally:
            transport.close()


class IceServerWatch:
    """Every configured ICE server watched: a warm allocation of each TURN server (aioice accepts turn:
    over UDP or TCP and turns: over TCP), a probe of each STUN server."""

    def __init__(self, servers: IceServers, bound: float) -> None:
        self._bound = bound
        self._relays: dict[ServerKey, WarmRelay] = {}
        self._probes: list[StunProbe] = []
        for url in servers.urls:
            parsed = parse_stun_turn_uri(url)
            if parsed["scheme"] == "stun":
                self._probes.append(StunProbe(url))
            elif parsed["scheme"] in ("turn", "turns"):
                relay = WarmRelay(url, servers, bound)
                self._relays.setdefault(relay.key, relay)

    def health(self) -> list[IceServerHealth]:
        return [watched.health for watched in (*self._relays.values(), *self._probes)]

    def answering(self, servers: tuple[IceServer, ...]) -> tuple[IceServer, ...]:
        """Those of `servers` that a viewer's ICE agent should ask: the ones that answer, and a TURN server
        whose first allocation is still under way (its warm allocation bounds the wait). A STUN query is
        made from each viewer's own socket, so it cannot be made ahead: a STUN server is asked only once
        it is known to answer."""
        usable = {h.url for h in self.health() if h.state == "up"}
        usable |= {relay.health.url for relay in self._relays.values() if relay.health.state == "unknown"}
        return tuple(server for server in servers if server.url in usable)

    def start(self) -> None:
        compat.gather_within(self._bound, self.relayed_candidate)
        for watched in (*self._relays.values(), *self._probes):
            watched.start()

    async def stop(self) -> None:
        compat.gather_as_aioice_does(self.relayed_candidate)
        for watched in (*self._relays.values(), *self._probes):
            await watched.stop()

    async def relayed_candidate(self, **kwargs: Any) -> tuple[Candidate, StunProtocol]:
        """aioice's `relayed_candidate` (see compat.RelayedCandidate), from the server's warm allocation."""
        relay = self._relays.get((kwargs["turn_server"], kwargs["turn_ssl"], kwargs["turn_transport"]))
        if relay is None or kwargs["component"] != SPARE_COMPONENT or kwargs["hide_related_address"]:
            return await compat.AIOICE_RELAYED_CANDIDATE(**kwargs)
        return await relay.take(kwargs["protocol_factory"])
