"""The hosts behind the DaemonSet's headless Service, found in DNS (which needs no Kubernetes API permissions).

Every --dns-interval the gateway asks for the Service's SRV records (`_http._tcp.NAME`: each pod's name and
its port named http), or where it has none, its A and AAAA records (each pod's address, with --dns-port).
DNS holds no node names for a DaemonSet's pods, so each new address is asked for its node's name once (its
/readyz, vgpustream.gateway.hosts.Hosts.identify); an address that does not answer is asked again next time.
A DNS server that does not answer leaves the hosts as they were (a blip must not empty the cluster); one that
says the name has no records (no pod is ready) empties it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Mapping

import dns.asyncresolver
import dns.exception
import dns.resolver

from vgpustream.errors import VgpuStreamError
from vgpustream.gateway.nodes import Identify, Node

log = logging.getLogger(__name__)

SERVICE = "_http._tcp"
"""The SRV records' service and protocol: the headless Service's port named http."""


def host_url(address: str, port: int) -> str:
    """The base URL of a host at `address` (IPv4 or IPv6) and `port`."""
    return f"http://[{address}]:{port}" if ipaddress.ip_address(address).version == 6 else f"http://{address}:{port}"


class DnsNodes:
    """The hosts that the DNS name of a headless Service has, kept current by a task of their own."""

    def __init__(self, name: str, port: int, interval: float, server: tuple[str, int] | None, timeout: float) -> None:
        self.name = name
        self._port = port
        self._interval = interval
        self._resolver = dns.asyncresolver.Resolver(configure=server is None)
        if server is not None:
            self._resolver.nameservers = [server[0]]
            self._resolver.port = server[1]
        self._resolver.lifetime = timeout
        self._names: dict[str, str] = {}
        """The node name of each host URL found and identified."""
        self._nodes: dict[str, Node] = {}
        self._watching: asyncio.Task[None] | None = None

    def nodes(self) -> Mapping[str, Node]:
        return self._nodes

    async def start(self, identify: Identify) -> None:
        """Find the hosts now (the gateway then starts with them), then every --dns-interval."""
        await self.refresh(identify)
        self._watching = asyncio.create_task(self._watch(identify), name="gateway-dns")

    async def stop(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            await asyncio.gather(self._watching, return_exceptions=True)

    async def _watch(self, identify: Identify) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh(identify)

    async def refresh(self, identify: Identify) -> None:
        """The hosts as DNS has them now, each new one identified."""
        try:
            urls = await self._host_urls()
        except dns.exception.DNSException as error:
            log.warning(
                "dns discovery: no answer for %s (%s): the hosts stay as they were", self.name, type(error).__name__
            )
            return
        new = sorted(urls - self._names.keys())
        names = await asyncio.gather(*(identify(url) for url in new), return_exceptions=True)
        for url, name in zip(new, names, strict=True):
            if isinstance(name, VgpuStreamError):
                log.info("dns discovery: the host at %s does not say its node yet: %s", url, name.message)
            elif isinstance(name, BaseException):
                raise name
            else:
                self._names[url] = name
        left = self._names.keys() - urls
        for url in sorted(left):
            log.info("dns discovery: node %s at %s left", self._names.pop(url), url)
        for url in new:
            if url in self._names:
                log.info("dns discovery: node %s at %s joined", self._names[url], url)
        self._nodes = {name: Node(name, url) for url, name in sorted(self._names.items())}

    async def _host_urls(self) -> set[str]:
        try:
            services = await self._resolver.resolve(f"{SERVICE}.{self.name}", "SRV")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return {host_url(address, self._port) for address in await self._addresses(self.name)}
        urls = set()
        for record in services:
            urls.update(host_url(address, record.port) for address in await self._addresses(record.target.to_text()))
        return urls

    async def _addresses(self, name: str) -> list[str]:
        """The A and AAAA records of `name`; none where it has none or does not exist."""
        found = []
        for kind in ("A", "AAAA"):
            with contextlib.suppress(dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                found += [record.address for record in await self._resolver.resolve(name, kind)]
        return found
