"""The gateway's /api/v1: the cluster's sessions, and every call about one session relayed to its host.

A session is found by its id (vgpustream.gateway.hosts.Hosts.locate); `?node=NAME` names its host where
the id alone does not say (every host has a session 'default'), and spares the search. Answers that are a
session gain its `node`; the links in answers (a page's `next`, a recording's href, file and signed file
link) name it, so that following them stays on that host; console links minted here point at the gateway.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from vgpustream.api import schemas
from vgpustream.api.requests import read_json, read_text
from vgpustream.api.schemas import json_response
from vgpustream.api.sessions import label_filters
from vgpustream.api.state import link_base
from vgpustream.api.tokens import links, token_terms
from vgpustream.control.rfc3339 import timestamp
from vgpustream.control.signedtokens import SignedToken, TokenSigner
from vgpustream.errors import Forbidden, VgpuStreamError
from vgpustream.gateway.hosts import (
    RECORDINGS,
    ROUTE,
    SESSION,
    Body,
    Hosts,
    Probe,
    answer_headers,
    held,
    host_query,
    routed,
)
from vgpustream.gateway.nodes import Node
from vgpustream.gateway.schemas import NodeSession, NodeSessionCreate, RelayedEventPage
from vgpustream.gateway.settings import GatewaySettings

HOSTS = web.AppKey("hosts", Hosts)
GATEWAY_SETTINGS = web.AppKey("gateway_settings", GatewaySettings)
SIGNER = web.AppKey("signer", TokenSigner)
Paged = TypeVar("Paged", schemas.TokenList, RelayedEventPage)


def session_path(session_id: str) -> str:
    return f"/api/v1/sessions/{quote(session_id, safe='')}"


async def list_sessions(request: web.Request) -> web.Response:
    """Every node's sessions (`?node=`: one node's), each with its node; a node that does not answer within
    --host-timeout has the sessions it last listed, `unreachable`. `?label=` filters as on a host."""
    label_filters(request.query)  # a bad filter is the client's 400, not every host's
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

    def made(session: schemas.Session, node: Node) -> NodeSession:
        hosts.made(node, session)
        return held(session, node)

    return await parsed_answer(request, node, "/api/v1/sessions", host_body, answer=schemas.Session, shown=made)


async def json_body(request: web.Request) -> bytes | None:
    """The request's JSON body as its host is to get it; None for a method that sends none."""
    if request.method not in ("POST", "PATCH"):
        return None
    return (await read_text(request, "application/json", request.app[GATEWAY_SETTINGS].max_json_bytes)).encode()


def parsed_relay(answer: type[Body], shown: Callable[[Body, Node], msgspec.Struct], probe: Probe = SESSION) -> Handler:
    """A handler that relays a call about a session to its host (found by `probe`) and reads its answer as
    `answer`, shown as `shown` makes it: with its node, or its links naming it."""

    async def handler(request: web.Request) -> web.StreamResponse:
        node = await request.app[HOSTS].locate(request.match_info["id"], request.query, probe)
        body = await json_body(request)
        return await parsed_answer(request, node, request.rel_url.raw_path, body, answer=answer, shown=shown)

    return handler


async def parsed_answer(
    request: web.Request,
    node: Node,
    path: str,
    body: bytes | None,
    *,
    answer: type[Body],
    shown: Callable[[Body, Node], msgspec.Struct],
) -> web.Response:
    """The host's answer to the request's method on `path` (with `body` and the request's query): a 2xx with a
    body read whole as `answer` and shown as `shown` makes it (its links naming the node); anything else as the
    host gave it. A body that breaks off or is not `answer` is BadGateway, never relayed as it came."""
    hosts = request.app[HOSTS]
    headers = host_headers(hosts, node, body)
    status, answered, content = await hosts.call(
        node, request.method, path, body, headers, query=host_query(request.query)
    )
    if status == 204 or not 200 <= status < 300:  # no body (204), or an error as the host gave it
        return web.Response(status=status, body=content, headers=answer_headers(answered, node))
    with hosts.reaching(node):
        decoded = msgspec.json.decode(content, type=answer)
    location = {"Location": routed(answered["Location"], node)} if "Location" in answered else {}
    return json_response(shown(decoded, node), status, location)


def page_shown(page: Paged, node: Node) -> Paged:
    """A page of tokens or events whose `next` link names its node, so that paging goes on at the same host."""
    return page if page.next is None else msgspec.structs.replace(page, next=routed(page.next, node))


def recording_shown(recording: schemas.Recording, node: Node) -> schemas.Recording:
    """A recording whose links (its own, its file's, its signed file link) name its node."""
    return msgspec.structs.replace(
        recording,
        href=routed(recording.href, node),
        file=routed(recording.file, node),
        file_link=routed(recording.file_link, node),
    )


def recordings_shown(listing: schemas.RecordingList, node: Node) -> schemas.RecordingList:
    return schemas.RecordingList(recordings=[recording_shown(recording, node) for recording in listing.recordings])


def host_headers(hosts: Hosts, node: Node, body: bytes | None) -> dict[str, str]:
    """What a call of the gateway's carries: the host's operator token, and the JSON body's type."""
    headers = {"Authorization": hosts.tokens.authorization(node)}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return headers


async def relay_session(request: web.Request) -> web.StreamResponse:
    """Any other call about a session (planes, thumbnails, viewers, a token's revocation), relayed."""
    hosts = request.app[HOSTS]
    node = await hosts.locate(request.match_info["id"], request.query)
    return await hosts.relay(request, node, request.rel_url.raw_path, hosts.tokens.authorization(node))


async def delete_session(request: web.Request) -> web.StreamResponse:
    """Stop and forget a session on its host."""
    hosts = request.app[HOSTS]
    node = await hosts.locate(request.match_info["id"], request.query)
    response = await hosts.relay(request, node, request.rel_url.raw_path, hosts.tokens.authorization(node))
    if response.status == 204:
        hosts.deleted(node, request.match_info["id"])
    return response


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

    def linked(issued: schemas.IssuedToken, node: Node) -> schemas.IssuedToken:
        """The host's token with links through the gateway, for the console's choices the host's links name."""
        query = URL(issued.console_url).query
        console = {name: query.get(name, "auto") for name in schemas.CONSOLE_CHOICES}
        return msgspec.structs.replace(issued, **links(base, session_id, issued.token, console, node.name))

    body = await json_body(request)
    path = f"{session_path(session_id)}/tokens"
    return await parsed_answer(request, node, path, body, answer=schemas.IssuedToken, shown=linked)


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
        microphone=body.microphone,
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
        microphone=body.microphone,
        **links(base, session_id, secret, body.console(), node.name),
    )
    return json_response(issued, 201)


async def list_events(request: web.Request) -> web.Response:
    """The audit trail of one host: the one `?node=` names, or the one of `?session=`; its `next` link names
    the node."""
    hosts = request.app[HOSTS]
    if ROUTE in request.query:
        node = hosts.node(request.query[ROUTE])
    elif "session" in request.query:
        node = await hosts.locate(request.query["session"], request.query)
    else:
        raise VgpuStreamError("the audit trail is each host's own: name a node (?node=) or a session (?session=)")
    return await parsed_answer(request, node, "/api/v1/events", None, answer=RelayedEventPage, shown=page_shown)


def signed_link(request: web.Request) -> bool:
    """Whether a request for a recording's file comes with a signed file link, which its host checks."""
    return "signature" in request.query or "expires" in request.query


async def download_recording(request: web.Request) -> web.StreamResponse:
    """A recording's file, relayed as it comes: for the gateway's operator token, or through a signed file link
    (which needs no token: the gateway adds none, and its host checks the signature)."""
    hosts = request.app[HOSTS]
    if not signed_link(request):
        node = await hosts.locate(request.match_info["id"], request.query, RECORDINGS)
        return await hosts.relay(request, node, request.rel_url.raw_path, hosts.tokens.authorization(node))
    if ROUTE not in request.query:  # no search of every host for a request without a token: not through here
        raise Forbidden(
            "a signed file link through the gateway names its node (?node=): take the recording's "
            "file_link from the gateway"
        )
    return await hosts.relay(request, hosts.node(request.query[ROUTE]), request.rel_url.raw_path, None)


RECORDING_FILE = "recording-file"
"""The route of a recording's file, which a signed file link reaches without the gateway's operator token."""


def add_routes(app: web.Application) -> None:
    session = parsed_relay(schemas.Session, held)
    app.router.add_get("/api/v1/sessions", list_sessions)
    app.router.add_post("/api/v1/sessions", create_session)
    app.router.add_get("/api/v1/sessions/{id}", session)
    app.router.add_patch("/api/v1/sessions/{id}", session)
    app.router.add_delete("/api/v1/sessions/{id}", delete_session)
    app.router.add_post("/api/v1/sessions/{id}/tokens", create_token)
    app.router.add_get("/api/v1/sessions/{id}/tokens", parsed_relay(schemas.TokenList, page_shown))
    recordings = "/api/v1/sessions/{id}/recordings"
    app.router.add_get(recordings, parsed_relay(schemas.RecordingList, recordings_shown, RECORDINGS))
    app.router.add_post(recordings, parsed_relay(schemas.Recording, recording_shown, RECORDINGS))
    for method in ("GET", "DELETE"):
        app.router.add_route(
            method, recordings + "/{recording}", parsed_relay(schemas.Recording, recording_shown, RECORDINGS)
        )
    app.router.add_get(recordings + "/{recording}/file", download_recording, name=RECORDING_FILE)
    app.router.add_route("*", "/api/v1/sessions/{id}/{rest:.+}", relay_session)
    app.router.add_get("/api/v1/events", list_events)
