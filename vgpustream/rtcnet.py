"""Which local addresses WebRTC offers as ICE host candidates."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import aioice.ice

from vgpustream.errors import VgpuStreamError


def advertise_host_addresses(addresses: Sequence[str]) -> None:
    """Offer exactly `addresses` as host candidates, for every peer connection of this process.

    aioice gathers every interface address except loopback and has no per-connection setting,
    so this replaces its module-level lookup. It serves hosts with many interfaces (offer only
    the one viewers can reach) and loopback-only set-ups such as the tests' network namespace.
    """
    chosen = []
    for address in addresses:
        try:
            chosen.append(str(ipaddress.ip_address(address)))
        except ValueError:
            raise VgpuStreamError(f"not an IP address: {address[:64]!r}") from None

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses
