"""A weak link for one WebRTC peer, in user space: a UDP relay that drops and delays packets.

The kernel's netem is not on every test host, so a viewer's media is sent through this relay
instead: the viewer's offer and the server's answer name the relay's two sockets as their ICE host
candidates, and the relay forwards between them, dropping each packet with probability `loss` and
holding it for half the round-trip time in each direction. The impairment can be changed while
the peers are connected (`impair`), so one run can measure the same viewer before and after.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass

CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 )(\d+)( typ host.*)$", re.IGNORECASE | re.MULTILINE)


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
        self.link.forward(self.name, data)


class LossyLink:
    """A relay between one viewer (the offerer) and the server on 127.0.0.1, with loss and delay."""

    def __init__(self, loss: float = 0.0, rtt_ms: float = 0.0, seed: int = 1) -> None:
        self.loss = loss
        self.rtt_ms = rtt_ms
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

    def impair(self, loss: float, rtt_ms: float) -> None:
        self.loss, self.rtt_ms = loss, rtt_ms

    def offer(self, sdp: str) -> str:
        """The viewer's offer, its one host candidate replaced by the relay's socket that faces the server."""
        return self._stand_in(sdp, "viewer")

    def answer(self, sdp: str) -> str:
        """The server's answer, its one host candidate replaced by the relay's socket that faces the viewer."""
        return self._stand_in(sdp, "server")

    def _stand_in(self, sdp: str, side: str) -> str:
        ports = {int(m.group(2)) for m in CANDIDATE.finditer(sdp)}
        if len(ports) != 1:
            raise ValueError(f"the {side}'s SDP must have one 127.0.0.1 host candidate (bundled); it has {ports}")
        (port,) = ports
        self._peers[side] = ("127.0.0.1", port)
        relay_port = self._ends[side].get_extra_info("sockname")[1]
        sdp = CANDIDATE.sub(lambda m: f"{m.group(1)}{relay_port}{m.group(3)}", sdp)
        return re.sub(rf"^(m=\S+ ){port}( )", rf"\g<1>{relay_port}\2", sdp, flags=re.MULTILINE)

    def forward(self, to: str, data: bytes) -> None:
        """A datagram that reached the socket standing in for `to` ('viewer' or 'server'): pass it on to `to`."""
        if to not in self._peers:
            return  # the answer is not in yet
        if self.loss and self._rng.random() < self.loss:
            self.stats.dropped += 1
            return
        self.stats.forwarded += 1
        # out of the socket that stands in for the other peer, so each side sees the address it was told
        sender = self._ends["server" if to == "viewer" else "viewer"]
        delay = self.rtt_ms / 2000
        if delay:
            asyncio.get_running_loop().call_later(delay, _send, sender, data, self._peers[to])
        else:
            _send(sender, data, self._peers[to])


def _send(transport: asyncio.DatagramTransport, data: bytes, to: tuple[str, int]) -> None:
    if not transport.is_closing():  # a delayed datagram after the link was closed is lost, as on a real link
        transport.sendto(data, to)
