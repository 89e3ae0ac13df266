"""Who may do what: operator tokens for the control plane, viewer tokens for one session and role.

Tokens are random 256-bit secrets. Viewer tokens are stored only as SHA-256 hashes; every
comparison of a presented secret is constant-time. No token ever reaches a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from vgpustream.control.roles import OPERATOR
from vgpustream.control.signedtokens import SignedToken, TokenVerifier
from vgpustream.control.store import Store, TokenRecord
from vgpustream.errors import Forbidden, Unauthorized, VgpuStreamError
from vgpustream.input.clipboard import default_access
from vgpustream.input.microphone import default_access as default_microphone
from vgpustream.settings import Settings

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 1024
"""The longest token taken: a host's own are 47 characters, a gateway's signed ones (a JWT) about 400."""
GENERATED_TOKEN_FILE = "operator-token"


@dataclass(frozen=True)
class Grant:
    """What a request may do: `role` is view, control or operator."""

    role: str
    token_id: str | None = None
    clipboard: str | None = None
    """The token's clipboard access; None: what its role gets."""
    expires_at: float | None = None
    """When (wall-clock seconds) the token expires; None for the operator's, which do not."""
    max_viewers: int | None = None
    """The viewers the token may have at once; None: the server's default (--token-max-viewers)."""
    microphone: str | None = None
    """The token's microphone access (none or use); None: what its role gets (none, the operator's: use)."""

    @property
    def can_control(self) -> bool:
        return self.role in ("control", OPERATOR)

    @property
    def clipboard_access(self) -> str:
        """none, read or readwrite."""
        return self.clipboard or default_access(self.role)

    @property
    def may_speak(self) -> bool:
        """Whether the token's viewers may send their microphone into the guest (control tokens with `use`)."""
        return self.can_control and (self.microphone or default_microphone(self.role)) == "use"


def new_secret() -> str:
    return "vgs_" + secrets.token_urlsafe(32)


def looks_signed(secret: str) -> bool:
    """Whether a presented token is a gateway's signed one (a JWT: three dot-separated parts), not a random one."""
    return secret.count(".") == 2


def token_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def bearer_token(request: web.Request) -> str | None:
    """The Bearer token of the Authorization header; None without one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > MAX_TOKEN_LENGTH:
        raise Forbidden("the Authorization header must be 'Bearer <token>'", "invalid_request")
    return value


def token_lines(path: Path, what: str) -> list[str]:
    """The lines of a file of secrets, without blank lines and # comments; at least one."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise VgpuStreamError(f"cannot read the {what} file: {exc.strerror}") from None
    found = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not found:
        raise VgpuStreamError(f"the {what} file holds no token")
    return found


class OperatorTokens:
    """The operator tokens, kept as hashes; a presented secret is compared with each of them in constant time."""

    def __init__(self, secrets: list[str]) -> None:
        self._hashes = [token_hash(s) for s in secrets]

    def match(self, secret: str) -> bool:
        presented = token_hash(secret)
        # compare against every operator token, always, so timing says nothing about which matched
        return sum(hmac.compare_digest(presented, h) for h in self._hashes) > 0

    def require(self, request: web.Request) -> str:
        """The request's operator token; Unauthorized without a token, Forbidden for any other token."""
        secret = bearer_token(request)
        if secret is None:
            raise Unauthorized("an operator token is required (Authorization: Bearer <token>)")
        if not self.match(secret):
            raise Forbidden("not a valid operator token")
        return secret


def operator_tokens(settings: Settings) -> tuple[list[str], Path | None]:
    """The operator tokens from the settings, or one generated into the state directory.

    Returns the tokens and, when one was generated (or read back from an earlier start), its file.
    """
    tokens = [settings.operator_token] if settings.operator_token else []
    if settings.operator_token_file:
        tokens += token_lines(settings.operator_token_file, "operator token")
    if tokens:
        return tokens, None
    path = settings.state_dir / GENERATED_TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_secret() + "\n")
    return [path.read_text().strip()], path


class Authority:
    """Checks credentials and issues viewer tokens; with `enabled` False everything is allowed."""

    def __init__(
        self,
        store: Store,
        operator_secrets: list[str],
        enabled: bool = True,
        gateways: TokenVerifier | None = None,
    ) -> None:
        self.enabled = enabled
        self.gateways = gateways
        """The gateways whose signed tokens this host takes (--gateway-key-file), if any."""
        self._store = store
        self._operators = OperatorTokens(operator_secrets)

    def from_operator(self, request: web.Request) -> bool:
        """Whether the request carries a valid operator token."""
        try:
            secret = bearer_token(request)
        except Forbidden:
            return False
        return secret is not None and self._operators.match(secret)

    def require_operator(self, request: web.Request) -> None:
        if not self.enabled:
            return
        try:
            self._operators.require(request)
        except Forbidden as refused:
            secret = bearer_token(request)
            if secret is not None and self._store.token_by_hash(token_hash(secret)) is not None:
                # a viewer token is a valid token, of too small a scope
                raise Forbidden(refused.message, "insufficient_scope") from None
            raise

    def viewer_grant(self, request: web.Request, session_id: str, consume: bool = True) -> Grant:
        """What the request's token allows on session `session_id`; a single-use token is used up here."""
        return self.grant(bearer_token(request) if self.enabled else None, session_id, consume)

    def grant(self, secret: str | None, session_id: str, consume: bool = True) -> Grant:
        """What token `secret` allows on session `session_id` (however it came: a header, a WebSocket's first
        message); a single-use token is used up here."""
        if not self.enabled:
            return Grant("control", microphone="use")
        if secret is None:
            raise Unauthorized("a viewer token is required (Authorization: Bearer <token>)")
        if self._operators.match(secret):
            return Grant(OPERATOR)
        if self.gateways is not None and looks_signed(secret):
            return self._signed_grant(self.gateways.verify(secret, session_id), consume)
        found = self._store.token_by_hash(token_hash(secret))
        if found is None or not hmac.compare_digest(found[1], token_hash(secret)):
            raise Forbidden("unknown token")
        record = found[0]
        now = time.time()
        if record.session_id != session_id:
            raise Forbidden("the token is for another session", "insufficient_scope")
        if record.revoked_at is not None:
            raise Forbidden("the token was revoked")
        if record.expires_at <= now:
            raise Forbidden("the token has expired")
        if record.single_use and (
            record.used_at is not None or (consume and not self._store.use_token(record.id, now))
        ):
            raise Forbidden("the single-use token was used already")
        return Grant(record.role, record.id, record.clipboard, record.expires_at, record.max_viewers, record.microphone)

    def _signed_grant(self, token: SignedToken, consume: bool) -> Grant:
        """What a gateway's signed token (its signature and claims checked) allows, unless it was revoked or,
        single-use, used; a single-use one is used up here."""
        used_at, revoked_at = self._store.signed_token(token.id)
        if revoked_at is not None:
            raise Forbidden("the token was revoked")
        if token.single_use and (
            used_at is not None
            or (consume and not self._store.use_signed_token(token.id, token.session, token.expires_at, time.time()))
        ):
            raise Forbidden("the single-use token was used already")
        return Grant(token.role, token.id, token.clipboard, token.expires_at, token.max_viewers, token.microphone)

    def issue(
        self,
        session_id: str,
        role: str,
        ttl_seconds: int,
        single_use: bool,
        *,
        clipboard: str | None = None,
        max_viewers: int | None = None,
        microphone: str | None = None,
    ) -> tuple[TokenRecord, str]:
        """A new viewer token for a session: its record and its secret (shown once, never stored)."""
        secret = new_secret()
        now = time.time()
        record = TokenRecord(
            id=secrets.token_hex(8),
            session_id=session_id,
            role=role,
            created_at=now,
            expires_at=now + ttl_seconds,
            single_use=single_use,
            used_at=None,
            revoked_at=None,
            clipboard=clipboard,
            max_viewers=max_viewers,
            microphone=microphone,
        )
        self._store.add_token(record, token_hash(secret))
        return record, secret
