"""Where the cluster's hosts are: a discovery keeps the current name → Node map, which may change at any time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Node:
    """A host of the cluster: its node's name, and the base URL of its `vgpustream serve`."""

    name: str
    url: str


Identify = Callable[[str], Awaitable[str]]
"""Asks the host at a base URL for its node's name (vgpustream.gateway.hosts.Hosts.identify)."""


class Discovery(Protocol):
    """The hosts of the cluster as last found; started with the gateway (with a way to ask a host found by its
    address alone for its node's name), stopped with it."""

    def nodes(self) -> Mapping[str, Node]: ...

    async def start(self, identify: Identify) -> None: ...

    async def stop(self) -> None: ...


class StaticNodes:
    """The hosts named on the command line (--node NAME=URL): a cluster without Kubernetes."""

    def __init__(self, urls: Mapping[str, str]) -> None:
        self._nodes = {name: Node(name, url) for name, url in urls.items()}

    def nodes(self) -> Mapping[str, Node]:
        return self._nodes

    async def start(self, identify: Identify) -> None:
        """Nothing to find: the hosts were given, with their names."""

    async def stop(self) -> None:
        """Nothing runs."""
