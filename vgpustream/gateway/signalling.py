"""Viewers' signalling through the gateway, their media to the host: WHEP and the WebSocket transport.

WHEP requests are relayed as they are, the viewer's token and all (its host checks it; the gateway's own
operator token becomes the host's); a viewer's Location names the node, so that its PATCH and DELETE need no
search. A WebSocket is joined to one of its host's, message by message in both directions; when either side
closes, the other is closed with the same code and reason, so a browser learns what its host said.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import Callable
from urllib.parse import quote

import aiohttp
from aiohttp import web

from vgpustream.api.websocket import HEARTBEAT, MAX_MESSAGE
from vgpustream.control.auth import MAX_TOKEN_LENGTH, OperatorTokens, bearer_token
from vgpustream.errors import Forbidden, NotFound, bounded
from vgpustream.gateway.api import HOSTS
from vgpustream.gateway.hosts import ROUTE, client_headers, host_query
from vgpustream.gateway.nodes import Node
from vgpustream.input.events import json_object
from vgpustream.media.renditions import check_quality
from vgpustream.ratelimit import RateLimiter
from vgpustream.transports.websocket import PROTOCOL, close, is_auth

OPERATORS = web.AppKey("operators", OperatorTokens)
LIMITER = web.AppKey("limiter", RateLimiter)
SOCKETS = web.AppKey("sockets", weakref.WeakSet[web.WebSocketResponse])
"""The browsers' WebSockets open now, closed with 1001 when the gateway stops: they reconnect at once, to
another replica."""
MAX_HOST_MESSAGE = 16 * 1024 * 1024
"""The largest message a host may send a viewer (a keyframe of a large display)."""
CLOSE_TIMEOUT = 5.0
"""Seconds one side of a joined WebSocket gets to close once the other has."""
SENDABLE_CLOSE_CODES = frozenset((*range(1000, 1004), *range(1007, 1012), *range(3000, 5000)))
"""The close codes a close frame may carry (RFC 6455 section 7.4; 1005 and 1006 only say that none came)."""


def host_hello(text: str, request: web.Request, node: Node) -> str:
    """A browser's first WebSocket message as its host is to see it: an auth message with the gateway's
    operator token carries the host's instead; anything else goes as it came, for the host to judge."""
    if not is_auth(text):
        return text
    hello = json_object(text)
    token = hello.get("token")
    if isinstance(token, str) and len(token) <= MAX_TOKEN_LENGTH and request.app[OPERATORS].match(token):
        return json.dumps({**hello, "token": request.app[HOSTS].tokens.token(node)})
    return text


def viewer_authorization(request: web.Request, node: Node) -> str | None:
    """What a viewer's request carries to its host: its own Authorization, or the host's operator token in
    place of the gateway's."""
    try:
        secret = bearer_token(request)
    except Forbidden:
        secret = None  # the host says what is wrong with it
    if secret is not None and request.app[OPERATORS].match(secret):
        return request.app[HOSTS].tokens.authorization(node)
    return request.headers.get("Authorization")


async def located(request: web.Request) -> Node:
    """The node of the request's session. A request that does not name it (?node=, as the gateway's links do)
    costs a search of every host: those are counted against its client's budget (--rate-limit)."""
    if ROUTE not in request.query:
        request.app[LIMITER].check(request.remote or "unknown")
    return await request.app[HOSTS].locate(request.match_info["session"], request.query)


async def whep(request: web.Request) -> web.StreamResponse:
    """OPTIONS and POST of a session's WHEP endpoint, OPTIONS, PATCH and DELETE of a viewer, at its host."""
    hosts = request.app[HOSTS]
    session_id = request.match_info["session"]
    node = await located(request)
    path = f"/whep/{quote(session_id, safe='')}"
    if "viewer" in request.match_info:
        path += f"/{quote(request.match_info['viewer'], safe='')}"
    return await hosts.relay(request, node, path, viewer_authorization(request, node))


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """A viewer's WebSocket joined to one of its session's host, opened before the browser's is accepted."""
    hosts = request.app[HOSTS]
    session_id = request.match_info["session"]
    check_quality(request.query.get("quality", "auto"))  # the host's 400, before the upgrade
    node = await located(request)
    headers = client_headers(request)
    with hosts.reaching(node):
        try:
            upstream = await hosts.client.ws_connect(
                f"{node.url}/ws/{quote(session_id, safe='')}",
                params=host_query(request.query),
                protocols=(PROTOCOL,),
                headers=headers,
                heartbeat=HEARTBEAT,
                max_msg_size=MAX_HOST_MESSAGE,
            )
        except aiohttp.WSServerHandshakeError as refused:
            if refused.status == 404:
                raise NotFound(f"no session {bounded(session_id, 60)} on node {node.name}") from None
            raise
    async with upstream:
        socket = web.WebSocketResponse(protocols=(PROTOCOL,), max_msg_size=MAX_MESSAGE, heartbeat=HEARTBEAT)
        await socket.prepare(request)
        request.app[SOCKETS].add(socket)
        await join(socket, upstream, lambda text: host_hello(text, request, node))
    return socket


async def close_sockets(app: web.Application) -> None:
    """Say goodbye to every browser's WebSocket (the gateway is stopping): 1001, and they come back elsewhere."""
    sockets = list(app[SOCKETS])
    await asyncio.gather(*(close(s, aiohttp.WSCloseCode.GOING_AWAY, "the gateway is stopping") for s in sockets))


async def join(
    browser: web.WebSocketResponse, host: aiohttp.ClientWebSocketResponse, hello: Callable[[str], str]
) -> None:
    """Pass messages both ways until one side closes (the browser's first text through `hello`); then close the
    other the same way."""
    down = asyncio.create_task(pipe(host, browser), name="gateway-ws-down")
    up = asyncio.create_task(pipe(browser, host, hello), name="gateway-ws-up")
    try:
        done, _ = await asyncio.wait((down, up), return_when=asyncio.FIRST_COMPLETED)
        first = done.pop()
        code, reason = first.result()
        other, sink = (up, browser) if first is down else (down, host)
        await close(sink, code, reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(other), CLOSE_TIMEOUT)
    finally:
        for task in (down, up):
            task.cancel()
        await asyncio.gather(down, up, return_exceptions=True)


async def pipe(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    first: Callable[[str], str] | None = None,
) -> tuple[int, str]:
    """Messages from `source` to `sink` as they come (the first text message through `first`), until `source`
    closes: its close code and reason."""
    try:
        while True:
            message = await source.receive()
            if message.type is aiohttp.WSMsgType.TEXT:
                await sink.send_str(message.data if first is None else first(message.data))
                first = None
            elif message.type is aiohttp.WSMsgType.BINARY:
                await sink.send_bytes(message.data)
            elif message.type is aiohttp.WSMsgType.CLOSE:
                code = message.data if message.data in SENDABLE_CLOSE_CODES else aiohttp.WSCloseCode.OK
                return code, message.extra or ""
            else:  # closing, closed, or an error: no code of its own to pass on
                return aiohttp.WSCloseCode.GOING_AWAY, ""
    except (ConnectionError, aiohttp.ClientError):
        return aiohttp.WSCloseCode.GOING_AWAY, ""  # the sink went


def add_routes(app: web.Application) -> None:
    app[SOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(close_sockets)
    for method in ("OPTIONS", "POST"):
        app.router.add_route(method, "/whep/{session}", whep)
    for method in ("OPTIONS", "PATCH", "DELETE"):
        app.router.add_route(method, "/whep/{session}/{viewer}", whep)
    app.router.add_get("/ws/{session}", websocket)
