"""The STUN and TURN servers: what a viewer is told of them (WHEP Link headers) and what our own ICE agent uses.

TURN credentials are handed only to a holder of a valid token. With `--turn-secret-file` they follow the
TURN REST scheme that coturn checks (`use-auth-secret`, `static-auth-secret`): username
`<unix expiry>:<name>`, password base64(HMAC-SHA1(secret, username)); coturn computes the password again
and refuses the username once its expiry has passed, so each viewer's credential is its own and ends with
its token. Without a secret, the static `--turn-username`/credential pair is handed out (to token holders only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from pathlib import Path

from aiortc import RTCIceServer
from aiortc.rtcicetransport import parse_stun_turn_uri

from vgpustream.errors import VgpuStreamError
from vgpustream.settings import Settings

SERVER_NAME = "vgpustream"
"""The name in the username of the server's own TURN credential."""
SERVER_CREDENTIAL_LIFETIME = 86_400
"""Seconds the server's own TURN credential is valid: its allocations are refreshed with it while viewers use them."""
MIN_SECRET_BYTES = 16


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server with the credential one holder may use."""

    url: str
    username: str | None = None
    credential: str | None = None

    def to_rtc(self) -> RTCIceServer:
        return RTCIceServer(urls=self.url, username=self.username, credential=self.credential)


def rest_credential(secret: bytes, name: str, expires_at: float) -> tuple[str, str]:
    """The TURN REST username and password for `name`, valid until `expires_at` (Unix seconds)."""
    username = f"{int(expires_at)}:{name}"
    password = base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest()).decode()
    return username, password


def read_turn_secret(path: Path) -> bytes:
    """The shared secret in `path` (its first line, as coturn's static-auth-secret takes it)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise VgpuStreamError(f"cannot read the TURN secret file: {exc.strerror}") from None
    secret = (lines[0] if lines else "").strip().encode()
    if len(secret) < MIN_SECRET_BYTES:
        raise VgpuStreamError(f"the TURN secret file must hold a secret of at least {MIN_SECRET_BYTES} bytes")
    return secret


class IceServers:
    """The configured servers, with credentials made for whoever is to use them."""

    def __init__(self, settings: Settings) -> None:
        for url in settings.ice_server:
            try:
                parse_stun_turn_uri(url)
            except ValueError:
                raise VgpuStreamError(f"not a STUN or TURN URL: {url[:100]!r}") from None
        self.urls = settings.ice_server
        self._secret = None if settings.turn_secret_file is None else read_turn_secret(settings.turn_secret_file)
        self._static = (settings.turn_username, settings.turn_credential)

    def announced(self, holder: str | None, expires_at: float) -> tuple[IceServer, ...]:
        """What a viewer is told: with TURN credentials for `holder` (a token id) valid until `expires_at`,
        or none when `holder` is None (no valid token)."""
        if holder is None:
            return tuple(IceServer(url) for url in self.urls)
        return tuple(
            IceServer(url, *self._credential(holder, expires_at)) if is_turn(url) else IceServer(url)
            for url in self.urls
        )

    def for_server(self) -> tuple[IceServer, ...]:
        """What the server's own ICE agent uses (its TURN allocations)."""
        return self.announced(SERVER_NAME, time.time() + SERVER_CREDENTIAL_LIFETIME)

    def _credential(self, holder: str, expires_at: float) -> tuple[str | None, str | None]:
        if self._secret is None:
            return self._static
        return rest_credential(self._secret, holder, expires_at)


def is_turn(url: str) -> bool:
    return url.startswith(("turn:", "turns:"))
