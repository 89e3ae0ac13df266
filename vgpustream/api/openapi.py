"""The OpenAPI 3.1 description of the HTTP interface, served at /api/v1/openapi.json.

A test runs schemathesis against a live server with this document, so it must say exactly what
the handlers do: every status they answer with and the shape of every body. Nothing of a route is written
here: its paths are the app's own table of routes (vgpustream.api.routes), each declared with its handler, and
the bodies' schemas are generated from the Structs the handlers use (vgpustream.api.schemas).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vgpustream import __version__
from vgpustream.api import route, schemas
from vgpustream.api.routes import ROUTES

PATH = "/api/v1/openapi.json"
UNDOCUMENTED = {
    ("GET", PATH): "this document",
    ("GET", "/"): "the console's page",
    ("GET", "/web/{name}"): "the console's scripts and styles",
    ("GET", "/ws/{session}"): "a WebSocket upgrade, not an operation: the tag websocket describes it",
}
"""The routes of the app that are not operations of the document, and why."""

TAGS = {
    "sessions": "Sessions: one VM display each, captured and encoded once",
    "tokens": "Viewer tokens: console links for people",
    "viewers": "The viewers of a session",
    "recordings": "Recordings of a session's stream, without encoding again",
    "audit": "The audit trail: who watched, typed, issued tokens and recorded",
    "whep": "WHEP signalling (draft-ietf-wish-whep)",
    "websocket": (
        "`GET /ws/{session}` (not an operation of this document: a WebSocket upgrade, answered `101`, subprotocol "
        "`vgpustream.v1`): a viewer over a WebSocket, the session's own H.264 and Opus packets, for browsers WebRTC "
        "cannot reach (`?quality=` as for WHEP, a bad one answered 400 before the upgrade). "
        'The browser\'s first message is the text message `{"type": "auth", "token": "…"}` (the token '
        'never in the URL); the server answers `{"type": "welcome", "viewer", "role", "video": {"codec"}, "sound"}`, '
        "then sends each H.264 access unit and Opus packet as a binary message (u8 kind: 1 video, 2 sound; u8 flags: "
        "bit 0 keyframe; f64 capture time, ms since the epoch; i64 timestamp, µs; then the packet) and the input "
        "channel's JSON messages as text; the browser sends the input channel's messages as text. Closed with 4400 "
        "(a bad or second auth message), 4401 (no token), 4403 (a token that does not allow it, or revoked), 4429 "
        "(too many requests), 4503 (full), 1003 (binary from the browser), 1009 (a message over 257 KiB), each with "
        "a reason"
    ),
    "operations": "Health and metrics",
}


def document() -> dict[str, Any]:
    """The document: the table of routes, its bodies' schemas and how callers authenticate."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vgpustream",
            "version": __version__,
            "description": "Control plane and WHEP signalling of vgpustream, a remote console for VMs.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/", "description": "The vgpustream server that serves this document"}],
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "components": {
            "schemas": schemas.components(),
            "securitySchemes": {
                "operator": {"type": "http", "scheme": "bearer", "description": "An operator token"},
                "viewer": {"type": "http", "scheme": "bearer", "description": "A viewer token or an operator token"},
                "signedLink": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "signature",
                    "description": "A recording's `file_link`: its file's path signed for an hour, with `expires`",
                },
            },
        },
        "security": route.OPERATOR,
        "paths": route.paths(ROUTES),
    }


async def serve_document(request: web.Request) -> web.Response:
    return web.json_response(document())


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, serve_document)
