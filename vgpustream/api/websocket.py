"""`GET /ws/{session}`: a viewer over a WebSocket (vgpustream.websocket), for browsers WebRTC cannot reach.

The token never travels in the URL (URLs reach logs and proxies): the browser's first message is
`{"type": "auth", "token": "…"}` (the token may be left out where the server takes none). What the token
allows, the session's seats, single use, revocation and the audit trail are the WHEP viewers' own.
A socket is closed with a code and a reason that say what went wrong:

    4400  the first message was not an auth message, or a second one came
    4401  no token             4403  a token that does not allow this
    4429  too many requests    4503  the session is full (try again later)
    1003  a binary message from the browser other than a microphone packet
    1009  a message over the size limit
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from vgpustream.api.state import AUTHORITY, REGISTRY, SETTINGS, rate_limit
from vgpustream.control.auth import MAX_TOKEN_LENGTH
from vgpustream.errors import Forbidden, Full, RateLimited, Unauthorized, VgpuStreamError
from vgpustream.input.clipboard import MAX_MESSAGE_BYTES as MAX_CLIPBOARD_MESSAGE
from vgpustream.input.events import InvalidInput, json_object
from vgpustream.media.renditions import pinned_rung
from vgpustream.transports.websocket import BAD_AUTH, PROTOCOL, WebSocketViewer, close

MAX_MESSAGE = MAX_CLIPBOARD_MESSAGE + 1024
"""The largest message a browser may send: a part of a clipboard text, with room for its JSON."""
HEARTBEAT = 20.0
"""Seconds between pings: a browser that stops answering them is gone, and its seat is given back."""
CLOSE_CODES: dict[type[VgpuStreamError], int] = {Unauthorized: 4401, Forbidden: 4403, RateLimited: 4429, Full: 4503}


class BadHello(VgpuStreamError):
    """The browser's first message was not `{"type": "auth", …}`."""


async def websocket_endpoint(request: web.Request) -> web.WebSocketResponse:
    session = request.app[REGISTRY].get(request.match_info["session"])  # 404 before the upgrade
    quality = request.query.get("quality", "auto")
    pinned_rung(quality, session.audience.encoder)  # 400 before the upgrade
    socket = web.WebSocketResponse(protocols=(PROTOCOL,), max_msg_size=MAX_MESSAGE, heartbeat=HEARTBEAT)
    await socket.prepare(request)
    try:
        rate_limit(request)
        token = await first_message_token(socket, request.app[SETTINGS].viewer_connect_timeout)
        grant = request.app[AUTHORITY].grant(token, session.id)
        audience = session.audience
        viewer = audience.admit(
            grant,
            lambda callbacks, grant, rules: WebSocketViewer(
                callbacks, grant, rules, socket, sound=audience.sound, transport=request.transport
            ),
            quality,
        )
    except VgpuStreamError as error:
        await close(socket, CLOSE_CODES.get(type(error), BAD_AUTH), str(error))
        return socket
    except TimeoutError:
        await close(socket, BAD_AUTH, "no auth message in time")
        return socket
    if audience.audit is not None:
        user_agent = request.headers.get("User-Agent", "")
        audience.audit.joined(viewer, request.remote, user_agent)
    await viewer.run()
    return socket


async def first_message_token(socket: web.WebSocketResponse, timeout: float) -> str | None:
    """The token of the browser's first message, `{"type": "auth", "token": "…"}` (None where it has none)."""
    message = await asyncio.wait_for(socket.receive(), timeout)
    if message.type != web.WSMsgType.TEXT:
        raise BadHello("the first message must be the auth message (text)")
    try:
        hello = json_object(message.data)
    except InvalidInput as error:
        raise BadHello(f"the first message must be the auth message: {error}") from None
    token = hello.get("token")
    if hello.get("type") != "auth" or not (
        token is None or (isinstance(token, str) and len(token) <= MAX_TOKEN_LENGTH)
    ):
        raise BadHello('the first message must be {"type": "auth", "token": "…"}')
    return token


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws/{session}", websocket_endpoint)
