"""Console links signed by a gateway (vgpustream.gateway) and verified offline by the host that serves them.

A signed token is a JWT (RFC 7519) signed with Ed25519 (RFC 9864's "Ed25519" algorithm, through joserfc):
its session (`sub`), node, role, expiry, whether it is single-use, its clipboard access and viewers, and an id
(`jti`). A host holds the gateways' public keys and keeps no row per token: only those used (single-use) or
revoked are stored, by id, until they would have expired anyway. Every key of a host's key file is valid, so a
gateway's key is rotated by giving the hosts the new public key beside the old one, then the gateways the new
private key, and removing the old public key once the links it signed have expired: no live viewer is cut.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from vgpustream.control.roles import ROLES
from vgpustream.errors import Forbidden, VgpuStreamError
from vgpustream.input.clipboard import ACCESS
from vgpustream.input.microphone import ACCESS as MICROPHONE_ACCESS

ALGORITHM = "Ed25519"
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def _pem_keys(path: Path, what: str) -> list[OKPKey]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise VgpuStreamError(f"cannot read the {what} file: {exc.strerror}") from None
    keys = []
    for block in PEM_BLOCK.finditer(text):
        try:
            key = OKPKey.import_key(block[0])
        except (JoseError, ValueError):
            raise VgpuStreamError(f"the {what} file holds a key that is not Ed25519 (PEM)") from None
        if key.curve_name != "Ed25519":
            raise VgpuStreamError(f"the {what} file holds a key that is not Ed25519 (PEM)")
        keys.append(key)
    if not keys:
        raise VgpuStreamError(f"the {what} file holds no PEM key")
    return keys


@dataclass(frozen=True)
class SignedToken:
    """What a signed token says, once its signature and its claims were checked."""

    id: str
    session: str
    node: str
    role: str
    issued_at: float
    expires_at: float
    single_use: bool
    clipboard: str | None
    max_viewers: int | None
    microphone: str | None = None
    """none or use; None (a gateway that predates the claim): what its role gets."""


class TokenSigner:
    """A gateway's private key, which signs the console links it mints."""

    def __init__(self, path: Path) -> None:
        keys = _pem_keys(path, "signing key")
        if len(keys) != 1 or not keys[0].is_private:
            raise VgpuStreamError("the signing key file must hold one Ed25519 private key (PEM)")
        self._key = keys[0]

    def sign(self, token: SignedToken) -> str:
        claims = {
            "jti": token.id, "sub": token.session, "node": token.node, "role": token.role,
            "iat": int(token.issued_at), "exp": int(token.expires_at), "once": token.single_use,
            "clipboard": token.clipboard, "viewers": token.max_viewers, "microphone": token.microphone,
        }  # fmt: skip
        header = {"alg": ALGORITHM, "kid": self._key.thumbprint()}
        return jwt.encode(header, claims, self._key, algorithms=[ALGORITHM])


class TokenVerifier:
    """The gateways' public keys a host trusts (all of them: two during a rotation), and its own node's name."""

    def __init__(self, path: Path, node: str, max_ttl: int) -> None:
        self._keys = KeySet([OKPKey.import_key(key.as_pem(private=False)) for key in _pem_keys(path, "gateway key")])
        self._node = node
        self._max_ttl = max_ttl

    def verify(self, secret: str, session_id: str) -> SignedToken:
        """The token `secret` for session `session_id` on this node; Forbidden, saying why, for any other."""
        try:
            decoded = jwt.decode(secret, self._keys, algorithms=[ALGORITHM])
        except (JoseError, ValueError):
            raise Forbidden("the token is not signed by a gateway this host trusts") from None
        claims = decoded.claims
        try:
            token = SignedToken(
                id=_text(claims["jti"]),
                session=_text(claims["sub"]),
                node=_text(claims["node"]),
                role=_text(claims["role"]),
                issued_at=_number(claims["iat"]),
                expires_at=_number(claims["exp"]),
                single_use=claims["once"] is True,
                clipboard=claims.get("clipboard"),
                max_viewers=claims.get("viewers"),
                microphone=claims.get("microphone"),
            )
        except (KeyError, TypeError):
            raise Forbidden("the token lacks what a console link must say") from None
        if (
            token.role not in ROLES
            or token.expires_at - token.issued_at > self._max_ttl
            or token.clipboard not in (None, *ACCESS)
            or token.microphone not in (None, *MICROPHONE_ACCESS)
            or not (token.max_viewers is None or (type(token.max_viewers) is int and token.max_viewers >= 1))
        ):
            raise Forbidden(
                "the token's role, lifetime, clipboard, viewers or microphone are not what this host grants"
            )
        if token.expires_at <= time.time():
            raise Forbidden("the token has expired")
        if token.node != self._node:
            raise Forbidden("the token is for another node", "insufficient_scope")
        if token.session != session_id:
            raise Forbidden("the token is for another session", "insufficient_scope")
        return token


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _number(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(value)
    return float(value)
