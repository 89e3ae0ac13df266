"""The gateway's /api/v1: the cluster's sessions, and every call about one session relayed to its host.

A session is found by its id (vgpustream.gateway.hosts.Hosts.locate); `?node=NAME` names its host where
the id alone does not say (every host has a session 'default'), and spares the search. Answers that are a
session gain its `node`; console links minted here point at the gateway.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import quote

import msgspec
from aiohttp import web
from yarl import URL

from vgpustream.api import schemas
from vgpustream.api.requests import read_json, read_text
from vgpustream.api.schemas import json_response
from vgpustream.api.state import link_base
from vgpustream.api.tokens import links, token_terms
from vgpustream.errors import VgpuStreamError
from vgpustream.gateway.hosts import ROUTE, Hosts, answer_headers, held, host_query, routed
from vgpustream.gateway.nodes import Node
from vgpustream.gateway.schemas import NodeSessionCreate
from vgpustream.gateway.settings import GatewaySettings
from vgpustream.rfc3339 import timestamp
from vgpustream.signedtokens import SignedToken, TokenSigner

HOSTS = web.AppKey("hosts", Hosts)
GATEWAY_SETTINGS = web.AppKey("gateway_settings", GatewaySettings)
SIGNER = web.AppKey("signer", TokenSigner)


def session_path(session_id: str) -> str:
    return f"/api/v1/sessions/{quote(session_id, safe='')}"


async def list_sessions(request: web.Request) -> web.Response:
    """Every node's sessions (`?node=`: one node's), each with its node; a node that does not answer within
    --host-timeout has the sessions it last listed, `unreachable`. `?label=` filters as on a host."""
    hosts = request.app[HOSTS]
    named = request.query.get(ROUTE)
    nodes = [hosts.node(named)] if named is not None else list(hosts.discovery.nodes().values())
    return json_response(await hosts.sessions(nodes, host_query(request.query)))


async def create_session(request: web.Request) -> web.Response:
    """A new session on the host of the body's `node`."""
    body = await read_json(request, request.app[GATEWAY_SETTINGS].max_json_bytes, NodeSessionCreate)
    hosts = request.app[HOSTS]
    node = hosts.node(body.node)
    fields = msgspec.structs.asdict(body)
    del fields["node"]
    host_body = msgspec.json.encode(schemas.SessionCreate(**fields))
    return await session_answer(request, node, "/api/v1/sessions", host_body)


async def session_call(request: web.Request) -> web.Response:
    """GET or PATCH a session on its host."""
    node = await request.app[HOSTS].locate(request.match_info["id"], request.query)
    body = None
    if request.method == "PATCH":
        body = (await read_text(request, "application/json", request.app[GATEWAY_SETTINGS].max_json_bytes)).encode()
    return await session_answer(request, node, session_path(request.match_info["id"]), body)


async def session_answer(request: web.Request, node: Node, path: str, body: bytes | None) -> web.Response:
    """The host's answer to the request's method on `path` (with `body`): a session, with its node; an error
    as the host gave it."""
    hosts = request.app[HOSTS]
    status, headers, content = await hosts.call(node, request.method, path, body, host_headers(hosts, node, body))
    if status not in (200, 201):
        return web.Response(status=status, body=content, headers=answer_headers(headers, node))
    with hosts.reaching(node):
        session = msgspec.json.decode(content, type=schemas.Session)
    location = {"Location": routed(headers["Location"], node)} if "Location" in headers else {}
    return json_response(held(session, node), status, location)


def host_headers(hosts: Hosts, node: Node, body: bytes | None) -> dict[str, str]:
    """What a call of the gateway's carries: the host's operator token, and the JSON body's type."""
    headers = {"Authorization": hosts.tokens.authorization(node)}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return headers


async def relay_session(request: web.Request) -> web.StreamResponse:
    """Any other call about a session (delete, planes, thumbnails, recordings, tokens, viewers), relayed."""
    hosts = request.app[HOSTS]
    node = await hosts.locate(request.match_info["id"], request.query)
    return await hosts.relay(request, node, request.rel_url.raw_path, hosts.tokens.authorization(node))


async def create_token(request: web.Request) -> web.Response:
    """A viewer token, with its console, WHEP and WebSocket links through the gateway: signed by the gateway
    (--signing-key-file), else minted by the session's host."""
    settings = request.app[GATEWAY_SETTINGS]
    base = link_base(request, settings.public_url, settings.allowed_hosts)  # a foreign Host makes no token
    hosts = request.app[HOSTS]
    session_id = request.match_info["id"]
    node = await hosts.locate(session_id, request.query)
    if SIGNER in request.app:
        return await sign_token(request, base, session_id, node)
    body = (await read_text(request, "application/json", settings.max_json_bytes)).encode()
    path = f"{session_path(session_id)}/tokens"
    status, headers, content = await hosts.call(node, "POST", path, body, host_headers(hosts, node, body))
    if status != 201:
        return web.Response(status=status, body=content, headers=answer_headers(headers, node))
    with hosts.reaching(node):
        issued = msgspec.json.decode(content, type=schemas.IssuedToken)
    query = URL(issued.console_url).query
    console = {name: query.get(name, "auto") for name in schemas.CONSOLE_CHOICES}
    linked = msgspec.structs.replace(issued, **links(base, session_id, issued.token, console, node.name))
    return json_response(linked, 201)


async def sign_token(request: web.Request, base: str, session_id: str, node: Node) -> web.Response:
    """A token signed here for the session on `node`, which its host checks offline."""
    settings = request.app[GATEWAY_SETTINGS]
    body = await read_json(request, settings.max_json_bytes, schemas.TokenCreate)
    clipboard, ttl_seconds, max_viewers = token_terms(body, settings)
    now = int(time.time())
    token = SignedToken(
        id=secrets.token_hex(8),
        session=session_id,
        node=node.name,
        role=body.role,
        issued_at=now,
        expires_at=now + ttl_seconds,
        single_use=body.single_use,
        clipboard=clipboard,
        max_viewers=max_viewers,
    )
    secret = request.app[SIGNER].sign(token)
    issued = schemas.IssuedToken(
        id=token.id,
        role=body.role,
        clipboard=clipboard,
        created_at=timestamp(now),
        expires_at=timestamp(token.expires_at),
        single_use=body.single_use,
        used=False,
        revoked=False,
        max_viewers=max_viewers,
        **links(base, session_id, secret, body.console(), node.name),
    )
    return json_response(issued, 201)


async def list_events(request: web.Request) -> web.StreamResponse:
    """The audit trail of one host: the one `?node=` names, or the one of `?session=`."""
    hosts = request.app[HOSTS]
    if ROUTE in request.query:
        node = hosts.node(request.query[ROUTE])
    elif "session" in request.query:
        node = await hosts.locate(request.query["session"], request.query)
    else:
        raise VgpuStreamError("the audit trail is each host's own: name a node (?node=) or a session (?session=)")
    return await hosts.relay(request, node, "/api/v1/events", hosts.tokens.authorization(node))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/sessions", list_sessions)
    app.router.add_post("/api/v1/sessions", create_session)
    app.router.add_get("/api/v1/sessions/{id}", session_call)
    app.router.add_patch("/api/v1/sessions/{id}", session_call)
    app.router.add_delete("/api/v1/sessions/{id}", relay_session)
    app.router.add_post("/api/v1/sessions/{id}/tokens", create_token)
    app.router.add_route("*", "/api/v1/sessions/{id}/{rest:.+}", relay_session)
    app.router.add_get("/api/v1/events", list_events)
