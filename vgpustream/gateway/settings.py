"""The gateway's configuration: flags, VGPUSTREAM_* environment and a TOML file, as the host's Settings."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from yarl import URL

from vgpustream.errors import VgpuStreamError
from vgpustream.settings import NODE_NAME, ServiceSettings, setting

HOST_URL = re.compile(r"https?://[\w.:\[\]-]{1,260}/?")
"""A host's base URL: scheme, name or address and port, nothing after."""


@dataclass(frozen=True)
class GatewaySettings(ServiceSettings):
    """`vgpustream gateway`'s settings: its hosts (--node), its token and theirs, and how long it waits for them."""

    port: int = setting("port to listen on", default=8090)
    node: tuple[str, ...] = setting(
        "a host of the cluster as NAME=URL, e.g. gpu-host-7=http://10.0.3.7:8080 (repeatable; comma-separated "
        "in the environment)",
        default=(),
    )
    dns_name: str | None = setting(
        "find the hosts in DNS: the name of the DaemonSet's headless Service, e.g. "
        "vgpustream.vgpustream.svc.cluster.local (its SRV records _http._tcp.NAME, else its A/AAAA records)"
    )
    dns_server: str | None = setting("DNS server to ask, ADDRESS or ADDRESS:PORT (default the system's)")
    dns_port: int = setting("port of the hosts found by A/AAAA records (SRV records carry their own)", default=8080)
    dns_interval: float = setting("seconds between two looks at DNS for hosts come and gone", default=5.0)
    operator_token: str | None = setting("the gateway's own operator token for /api/v1", cli=False)
    operator_token_file: Path | None = setting("file with the gateway's operator tokens for /api/v1, one per line")
    host_token: str | None = setting("the operator token the gateway presents to every host", cli=False)
    host_token_file: Path | None = setting(
        "file of the hosts' operator tokens: a line `NAME TOKEN` per host, `* TOKEN` for every other host"
    )
    signing_key_file: Path | None = setting(
        "the gateway's Ed25519 private key (PEM): console links are then tokens it signs, which hosts check "
        "with its public key (--gateway-key-file) and keep no row of; without it, the hosts mint their own"
    )
    host_timeout: float = setting(
        "seconds a host has to answer a list or a search for a session before it counts as unreachable", default=2.0
    )
    refresh_interval: float = setting(
        "seconds between two lists of every host's sessions, which the list shows while a host does not answer",
        default=10.0,
    )
    request_timeout: float = setting(
        "seconds a host has to start answering a relayed request (a WHEP offer, a thumbnail), and the longest "
        "pause within an answer",
        default=15.0,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("host_timeout", "request_timeout", "refresh_interval", "dns_interval"):
            if not 0 < getattr(self, name) <= 300:
                raise VgpuStreamError(f"{name.replace('_', ' ')} must be within 0..300 seconds")
        if not (self.operator_token or self.operator_token_file):
            raise VgpuStreamError(
                "the gateway needs its operator token: VGPUSTREAM_OPERATOR_TOKEN or --operator-token-file"
            )
        if not (self.host_token or self.host_token_file):
            raise VgpuStreamError(
                "the gateway needs the hosts' operator token: VGPUSTREAM_HOST_TOKEN or --host-token-file"
            )
        if bool(self.node) == bool(self.dns_name):
            raise VgpuStreamError("name the hosts with --node NAME=URL, or find them with --dns-name: one of the two")
        if self.dns_name and not NODE_NAME.fullmatch(self.dns_name.rstrip(".")):
            raise VgpuStreamError(f"--dns-name {self.dns_name[:80]!r} must be a DNS name")
        if not 1 <= self.dns_port <= 65535:
            raise VgpuStreamError("--dns-port must be a TCP port, 1..65535")
        self.static_nodes  # noqa: B018 - validates every --node now, not at first use
        self.dns_server_address  # noqa: B018 - and --dns-server

    @property
    def dns_server_address(self) -> tuple[str, int] | None:
        """--dns-server as an address and a port (53 unless it names one); None for the system's servers."""
        if self.dns_server is None:
            return None
        try:
            server = URL(f"dns://{self.dns_server}")  # [v6]:port as in a URL
            address, port = str(ipaddress.ip_address(server.host or "")), server.port or 53
        except ValueError:
            address, port = "", 0
        if not (address and 1 <= port <= 65535):
            raise VgpuStreamError(f"--dns-server {self.dns_server[:60]!r} must be ADDRESS or ADDRESS:PORT")
        return address, port

    @property
    def static_nodes(self) -> dict[str, str]:
        """The --node hosts: name → base URL (without a trailing slash)."""
        nodes: dict[str, str] = {}
        for given in self.node:
            name, sep, url = given.partition("=")
            if not sep or not NODE_NAME.fullmatch(name):
                raise VgpuStreamError(f"--node {given[:80]!r} must be NAME=URL with a node name such as gpu-host-7")
            if not HOST_URL.fullmatch(url):
                raise VgpuStreamError(f"--node {name}: {url[:80]!r} must be a base URL such as http://10.0.3.7:8080")
            if name in nodes:
                raise VgpuStreamError(f"--node {name} is given twice")
            nodes[name] = url.rstrip("/")
        return nodes
