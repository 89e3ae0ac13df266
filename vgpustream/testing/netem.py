"""A weak link for one WebRTC peer, in user space: a UDP relay that drops and delays packets.

The kernel's netem is not on every test host, so a viewer's media is sent through this relay
instead: the viewer's offer and the server's answer name the relay's two sockets as their ICE host
candidates, and the relay forwards between them, dropping each packet with probability `loss` and
holding it for half the round-trip time in each direction. The impairment can be changed while
the peers are connected (`impair`), so one run can measure the same viewer before and after.
With `rate_kbps` the link is also a bottleneck of that rate with a small buffer (`QUEUE_MS` of
packets, then tail drop), as a slow uplink is: a stream it cannot carry loses packets for good.

`SlowTcpLink` is the same for the WebSocket transport: a TCP relay whose way back carries at most a rate.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
from dataclasses import dataclass
from typing import Any

QUEUE_MS = 100.0
"""How much a rate-limited link holds back before it drops (its router's buffer)."""
CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ )(\d+\.\d+\.\d+\.\d+) (\d+)( typ host.*)$", re.I | re.M)
"""An IPv4 UDP host candidate: (prefix, address, port, the rest)."""


@dataclass
class LinkStats:
    forwarded: int = 0
    dropped: int = 0


class _End(asyncio.DatagramProtocol):
    """One socket of the relay: what it receives goes out of the other one."""

    def __init__(self, link: LossyLink, name: str) -> None:
        self.link = link
        self.name = name

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.link.forward(self.name, data, addr)


class LossyLink:
    """A relay between one viewer (the offerer) and the server on 127.0.0.1, with loss and delay."""

    def __init__(self, loss: float = 0.0, rtt_ms: float = 0.0, rate_kbps: float | None = None, seed: int = 1) -> None:
        self.loss = loss
        self.rtt_ms = rtt_ms
        self.rate_kbps = rate_kbps
        self._busy_until = {"viewer": 0.0, "server": 0.0}
        """When (loop time) each direction's bottleneck has sent what it holds."""
        self.stats = LinkStats()
        self._rng = random.Random(seed)
        self._ends: dict[str, asyncio.DatagramTransport] = {}
        self._peers: dict[str, tuple[str, int]] = {}
        """Where each side really listens: 'viewer' and 'server'."""

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for name in ("viewer", "server"):  # the socket that faces the server stands in for the viewer
            end, _ = await loop.create_datagram_endpoint(lambda n=name: _End(self, n), local_addr=("127.0.0.1", 0))
            self._ends[name] = end

    def close(self) -> None:
        for end in self._ends.values():
            end.close()

    def impair(self, loss: float, rtt_ms: float, rate_kbps: float | None = None) -> None:
        self.loss, self.rtt_ms, self.rate_kbps = loss, rtt_ms, rate_kbps

    def offer(self, sdp: str) -> str:
        """The viewer's offer, its host candidate replaced by the relay's socket that faces the server (when it
        has one: a browser with its default settings offers only mDNS names, or none)."""
        return self._stand_in(sdp, "viewer")

    def answer(self, sdp: str) -> str:
        """The server's answer, its one host candidate replaced by the relay's socket that faces the viewer."""
        return self._stand_in(sdp, "server")

    def _stand_in(self, sdp: str, side: str) -> str:
        """`sdp` with the relay's socket for `side` (on 127.0.0.1) as its one candidate.

        Offers bundle their sections (the server's answer does): the first section's first IPv4 host
        candidate is the transport, and every other candidate (other sections, interfaces, TCP) is
        dropped, so the relay is the only path.
        """
        found = CANDIDATE.search(sdp)
        if found is None:
            if side == "server":
                raise ValueError("the server's answer has no IPv4 host candidate")
            return sdp  # a viewer with no candidate of its own: its address comes with its first packet
        address, port = found.group(2), int(found.group(3))
        self._peers[side] = (address, port)
        relay_port = self._ends[side].get_extra_info("sockname")[1]
        kept = []
        for line in sdp.splitlines(keepends=True):
            candidate = CANDIDATE.match(line.rstrip("\r\n"))
            if candidate is not None and (candidate.group(2), int(candidate.group(3))) == (address, port):
                kept.append(f"{candidate.group(1)}127.0.0.1 {relay_port}{candidate.group(4)}{line[candidate.end() :]}")
            elif not line.startswith("a=candidate:"):
                kept.append(line)
        return re.sub(rf"^(m=\S+ ){port}( )", rf"\g<1>{relay_port}\2", "".join(kept), flags=re.MULTILINE)

    async def route(self, route: Any) -> None:
        """A Playwright route handler for a console's WHEP resource (`page.route("**/whep/ID", link.route)`):
        its offer and the server's answer name the relay, so its media goes through the link."""
        if route.request.method != "POST":
            await route.continue_()
            return
        response = await route.fetch(post_data=self.offer(route.request.post_data))
        await route.fulfill(response=response, body=self.answer(await response.text()))

    def forward(self, to: str, data: bytes, source: tuple[str, int]) -> None:
        """A datagram from `source` that reached the socket standing in for `to` ('viewer' or 'server'):
        pass it on to `to`. A viewer that offered no candidate is found as ICE finds it (peer reflexive)."""
        if to == "server":
            self._peers.setdefault("viewer", source)
        if to not in self._peers:
            return  # the answer is not in yet
        if self.loss and self._rng.random() < self.loss:
            self.stats.dropped += 1
            return
        delay = self.rtt_ms / 2000
        if self.rate_kbps:
            now = asyncio.get_running_loop().time()
            start = max(now, self._busy_until[to])
            if start - now > QUEUE_MS / 1000:
                self.stats.dropped += 1  # the bottleneck's buffer is full
                return
            self._busy_until[to] = start + len(data) * 8 / (self.rate_kbps * 1000)
            delay += self._busy_until[to] - now
        self.stats.forwarded += 1
        # out of the socket that stands in for the other peer, so each side sees the address it was told
        sender = self._ends["server" if to == "viewer" else "viewer"]
        if delay:
            asyncio.get_running_loop().call_later(delay, _send, sender, data, self._peers[to])
        else:
            _send(sender, data, self._peers[to])


def _send(transport: asyncio.DatagramTransport, data: bytes, to: tuple[str, int]) -> None:
    if not transport.is_closing():  # a delayed datagram after the link was closed is lost, as on a real link
        transport.sendto(data, to)


RECEIVE_BUFFER = 16 * 1024
"""The relay's receive buffer toward the server: small, so that what the slow side has not taken waits unacknowledged
in the server's send queue, as behind a real bottleneck, not in the relay's kernel."""


class SlowTcpLink:
    """A TCP relay on 127.0.0.1 to `target` (host, port) whose way back (server to client) carries at most
    `rate_kbps` (None: no cap, changed with `cap` while connections run): a thin link for the WebSocket transport."""

    def __init__(self, target: tuple[str, int], rate_kbps: float | None = None) -> None:
        self.target = target
        self.rate_kbps = rate_kbps
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cap(self, rate_kbps: float | None) -> None:
        self.rate_kbps = rate_kbps

    async def close(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        upstream.setblocking(False)
        await asyncio.get_running_loop().sock_connect(upstream, self.target)
        server_in, server_out = await asyncio.open_connection(sock=upstream, limit=RECEIVE_BUFFER)
        for pump in (self._pump(client_in, server_out, paced=False), self._pump(server_in, client_out, paced=True)):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, paced: bool) -> None:
        try:
            while chunk := await source.read(4096):
                sink.write(chunk)
                await sink.drain()
                if paced and self.rate_kbps:
                    await asyncio.sleep(len(chunk) * 8 / (self.rate_kbps * 1000))
        except ConnectionError:
            pass
        finally:
            sink.close()
