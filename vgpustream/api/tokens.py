"""Viewer tokens and viewers of a session under /api/v1/sessions/{id}/.

Tokens that expired or were revoked are deleted --token-retention-days later (at start-up and hourly): until
then the list shows them, so that an operator can tell what became of a link.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from vgpustream.api.answers import ERRORS, LIMITED, NO_CONTENT, STORED, error_answer, json_answer
from vgpustream.api.events import DEFAULT_LIMIT, MAX_LIMIT, page_parameters, whole
from vgpustream.api.requests import read_json
from vgpustream.api.route import Route, json_body
from vgpustream.api.schemas import IssuedToken, Token, TokenCreate, TokenList, ViewerList, given, json_response
from vgpustream.api.state import AUDIT, AUTHORITY, REGISTRY, SETTINGS, STORE, base_url, rate_limit
from vgpustream.control.rfc3339 import timestamp
from vgpustream.control.store import TokenRecord
from vgpustream.errors import NotFound, VgpuStreamError
from vgpustream.input.clipboard import default_access
from vgpustream.settings import RETENTION_INTERVAL, ServiceSettings

log = logging.getLogger(__name__)

SIGNED_TOKEN_ID = re.compile(r"[0-9a-f]{16}")
"""The id of a gateway's signed token (vgpustream.gateway.api mints them)."""


def token_fields(record: TokenRecord, default_viewers: int) -> dict[str, object]:
    """A token's fields (never its secret): a Token, or the start of an IssuedToken; a token minted without
    a number of viewers has `default_viewers`."""
    return {
        "id": record.id,
        "role": record.role,
        "clipboard": record.clipboard or default_access(record.role),
        "microphone": record.microphone or "none",
        "created_at": timestamp(record.created_at),
        "expires_at": timestamp(record.expires_at),
        "single_use": record.single_use,
        "used": record.used_at is not None,
        "revoked": record.revoked_at is not None,
        "max_viewers": record.max_viewers or default_viewers,
    }


async def create_token(request: web.Request) -> web.Response:
    """A console link for a person: a viewer token scoped to this session and a role."""
    rate_limit(request)
    settings = request.app[SETTINGS]
    session = request.app[REGISTRY].get(request.match_info["id"])
    body = await read_json(request, settings.max_json_bytes, TokenCreate)
    clipboard, ttl_seconds, max_viewers = token_terms(body, settings)
    base = base_url(request)  # before anything is stored: a request for a foreign Host makes no token
    record, secret = request.app[AUTHORITY].issue(
        session.id,
        role=body.role,
        ttl_seconds=ttl_seconds,
        single_use=body.single_use,
        clipboard=clipboard,
        max_viewers=max_viewers,
        microphone=body.microphone,
    )
    request.app[AUDIT].token_created(record)
    fields = token_fields(record, settings.token_max_viewers)
    return json_response(IssuedToken(**fields, **links(base, session.id, secret, body.console())), 201)


def token_terms(body: TokenCreate, settings: ServiceSettings) -> tuple[str, int, int]:
    """A token request's clipboard access, lifetime and viewers, the settings' defaults where it gives none;
    VgpuStreamError where it asks a view token for what only control may do."""
    clipboard = given(body.clipboard, default_access(body.role))
    if body.role == "view" and clipboard == "readwrite":
        raise VgpuStreamError("a view token cannot write the guest's clipboard: 'clipboard' must be none or read")
    if body.role == "view" and body.microphone != "none":
        raise VgpuStreamError("a view token cannot use the microphone: 'microphone' must be none")
    ttl_seconds = given(body.ttl_seconds, settings.token_ttl)
    if ttl_seconds > settings.max_token_ttl:
        raise VgpuStreamError(f"'ttl_seconds' must be at most {settings.max_token_ttl} (--max-token-ttl)")
    return clipboard, ttl_seconds, given(body.max_viewers, settings.token_max_viewers)


def links(
    base: str, session_id: str, secret: str, console: dict[str, str] | None = None, node: str | None = None
) -> dict[str, str]:
    """The token with where to use it. The console link carries it in the fragment, which no server sees,
    and the `console`'s choices (transport, quality) where they are not its own (auto); links through a
    gateway (vgpustream.gateway) name the session's `node`, every one of them."""
    route = {} if node is None else {"node": node}
    chosen = {name: value for name, value in (console or {}).items() if value != "auto"}
    query = urlencode({"session": session_id} | chosen | route)
    at = f"?{urlencode(route)}" if route else ""
    return {
        "token": secret,
        "console_url": f"{base}/?{query}#token={secret}",
        "whep_url": f"{base}/whep/{session_id}{at}",
        "websocket_url": f"{base.replace('http', 'ws', 1)}/ws/{session_id}{at}",
    }


async def list_tokens(request: web.Request) -> web.Response:
    """A page of a session's tokens in the order they were issued; `next` links the following page."""
    session = request.app[REGISTRY].get(request.match_info["id"])
    query = request.query
    unknown = set(query) - {"after", "limit"}
    if unknown:
        raise VgpuStreamError(f"unknown parameter(s): {', '.join(repr(k[:40]) for k in sorted(unknown)[:5])}")
    after = whole(query.get("after", "0"), "after", 0, 2**62)
    limit = whole(query.get("limit", str(DEFAULT_LIMIT)), "limit", 1, MAX_LIMIT)
    page = request.app[STORE].tokens(session.id, after, limit)
    default_viewers = request.app[SETTINGS].token_max_viewers
    following = None
    if len(page) == limit:
        following = f"/api/v1/sessions/{session.id}/tokens?{urlencode({'after': page[-1][0], 'limit': limit})}"
    return json_response(TokenList(tokens=[Token(**token_fields(t, default_viewers)) for _, t in page], next=following))


async def token_retention(app: web.Application) -> AsyncIterator[None]:
    """Delete the tokens past --token-retention-days since they expired or were revoked: now, then hourly."""
    store, retention = app[STORE], app[SETTINGS].token_retention_days * 86_400

    def purge() -> None:
        try:
            removed = store.purge_tokens(time.time() - retention)
        except VgpuStreamError as exc:  # a disk that takes no writes now: next time
            log.warning("tokens: retention not applied: %s", exc.message)
            return
        if removed:
            log.info("tokens: retention removed %d", removed)

    async def keep() -> None:
        while True:
            await asyncio.sleep(RETENTION_INTERVAL)
            purge()

    purge()
    task = asyncio.create_task(keep(), name="token-retention")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def revoke_token(request: web.Request) -> web.Response:
    """Revoke a token and disconnect every viewer that came in with it. A gateway's signed token (which has no
    row here until then) is refused from now until it would have expired anyway."""
    session = request.app[REGISTRY].get(request.match_info["id"])
    token_id = request.match_info["token"]
    store, now = request.app[STORE], time.time()
    if not store.revoke_token(session.id, token_id, now):
        if request.app[AUTHORITY].gateways is None or not SIGNED_TOKEN_ID.fullmatch(token_id):
            raise NotFound("no such token")
        store.revoke_signed_token(token_id, session.id, now + request.app[SETTINGS].max_token_ttl, now)
    request.app[AUDIT].record("token.revoked", session.id, token=token_id)
    await session.audience.close_viewers(token_id, "the link was revoked")
    return web.Response(status=204)


async def list_viewers(request: web.Request) -> web.Response:
    session = request.app[REGISTRY].get(request.match_info["id"])
    viewers = [{**v.to_json(), "created_at": timestamp(v.created_at)} for v in session.audience]
    return json_response(msgspec.convert({"viewers": viewers}, ViewerList))


async def disconnect_viewer(request: web.Request) -> web.Response:
    session = request.app[REGISTRY].get(request.match_info["id"])
    await session.audience.viewer(request.match_info["viewer"]).close()
    return web.Response(status=204)


ROUTES = [
    Route(
        "GET",
        "/api/v1/sessions/{id}/tokens",
        list_tokens,
        "listTokens",
        "Viewer tokens of a session (never their secrets), in the order they were issued, a page at a time; expired "
        "and revoked ones until --token-retention-days after",
        tag="tokens",
        answers={"200": json_answer(TokenList, "A page of tokens"), **ERRORS},
        parameters=page_parameters("only tokens issued after this position (the `next` link sets it)"),
    ),
    Route(
        "POST",
        "/api/v1/sessions/{id}/tokens",
        create_token,
        "createToken",
        "A viewer token and console link",
        tag="tokens",
        answers={
            "201": json_answer(IssuedToken, "Issued; the secret is shown only now"),
            **ERRORS,
            "421": error_answer(
                "The request's Host is none of the server's names (--allowed-host) and --public-url is not set: no "
                "links are made for it"
            ),
            **LIMITED,
            **STORED,
        },
        body=json_body(TokenCreate),
    ),
    Route(
        "DELETE",
        "/api/v1/sessions/{id}/tokens/{token}",
        revoke_token,
        "revokeToken",
        "Revoke a token and disconnect its viewers",
        tag="tokens",
        answers={**NO_CONTENT, **ERRORS, **STORED},
    ),
    Route(
        "GET",
        "/api/v1/sessions/{id}/viewers",
        list_viewers,
        "listViewers",
        "Viewers of a session",
        tag="viewers",
        answers={"200": json_answer(ViewerList, "Viewers"), **ERRORS},
    ),
    Route(
        "DELETE",
        "/api/v1/sessions/{id}/viewers/{viewer}",
        disconnect_viewer,
        "disconnectViewer",
        "Disconnect a viewer",
        tag="viewers",
        answers={**NO_CONTENT, **ERRORS},
    ),
]
