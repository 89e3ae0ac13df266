"""The service's configuration, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from vgpustream.encoder import EncoderSettings

DEFAULT_SOURCE = "synthetic:1280x720@30"


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server offered to viewers (WHEP Link header) and used by our own ICE agent."""

    url: str
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    source: str = DEFAULT_SOURCE
    """Source URL of the session `default` created at start-up."""
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    max_sessions: int = 16
    max_viewers: int = 16
    ice_servers: tuple[IceServer, ...] = ()
    host_addresses: tuple[str, ...] = ()
    """Addresses to offer as ICE host candidates (all but loopback when empty)."""
    max_sdp_bytes: int = 32 * 1024
    max_json_bytes: int = 16 * 1024
