"""Clients behind a trusted proxy (a gateway, an Ingress): their own address, from X-Forwarded-For.

Every viewer that comes through a gateway reaches its host from the gateway's address: without this, they
would share one rate-limit budget (and the audit trail would name the gateway). A proxy named by
--trusted-proxy appends the address it saw to X-Forwarded-For; the client is the last address of that list
that is not itself a trusted proxy. From anyone else, the header is ignored: a client cannot choose its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from vgpustream.errors import VgpuStreamError

FORWARDED_FOR = "X-Forwarded-For"
MAX_HOPS = 16
"""The addresses of X-Forwarded-For read, from its end (a longer list is a client's own making)."""

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def trusted_networks(proxies: Sequence[str]) -> Networks:
    """--trusted-proxy values (addresses or networks) as networks."""
    try:
        return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)
    except ValueError:
        raise VgpuStreamError("a trusted proxy must be an IP address or network, e.g. 10.42.0.0/16") from None


def is_trusted(address: str | None, networks: Networks) -> bool:
    """Whether `address` (a peer's) belongs to one of the trusted proxies."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in networks)


def forwarded_client(request: web.BaseRequest, networks: Networks) -> str | None:
    """The client a trusted proxy says it relays; None where the peer is no trusted proxy or says nothing usable."""
    if not is_trusted(request.remote, networks):
        return None
    hops = [hop.strip() for value in request.headers.getall(FORWARDED_FOR, ()) for hop in value.split(",")]
    for hop in reversed(hops[-MAX_HOPS:]):
        if not is_trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return None
    return None


def client_addresses(networks: Networks) -> Middleware:
    """A middleware that gives each request its client's address (request.remote) behind the trusted proxies."""

    @web.middleware
    async def client_address(request: web.Request, handler: Handler) -> web.StreamResponse:
        client = forwarded_client(request, networks) if networks else None
        return await handler(request if client is None else request.clone(remote=client))

    return client_address
