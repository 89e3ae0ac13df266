"""The OpenAPI 3.1 description of the HTTP interface, served at /api/v1/openapi.json.

A test runs schemathesis against a live server with this document, so it must say exactly what
the handlers do: every status they answer with and the shape of every body. The bodies' schemas are
not written here: they are generated from the Structs the handlers use (vgpustream.api.schemas).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from msgspec import Struct

from vgpustream import __version__
from vgpustream.api import schemas
from vgpustream.api.events import DEFAULT_LIMIT, MAX_LIMIT
from vgpustream.api.schemas import schema_of
from vgpustream.media.renditions import QUALITIES
from vgpustream.media.thumbnail import DEFAULT_SIZE, MIN_SIZE, THUMBNAIL_EDGE

PATH = "/api/v1/openapi.json"

INT = {"type": "integer"}
TEXT = {"type": "string"}


def json_answer(struct: type[Struct], description: str) -> dict[str, Any]:
    """A JSON response whose body is a `struct` (vgpustream.api.schemas)."""
    return {"description": description, "content": {"application/json": {"schema": schema_of(struct)}}}


def error_answer(description: str) -> dict[str, Any]:
    return json_answer(schemas.Error, description)


def _challenge(description: str, required: bool) -> dict[str, Any]:
    return {"WWW-Authenticate": {"description": description, "required": required, "schema": TEXT}}


RETRY_AFTER = {"Retry-After": {"description": "Seconds after which to try again", "schema": INT}}
ERRORS = {
    "400": error_answer("Invalid request"),
    "401": {
        **error_answer("No credentials"),
        "headers": _challenge("`Bearer` (RFC 9110, RFC 6750)", required=True),
    },
    "403": {
        **error_answer("Credentials that do not allow this"),
        "headers": _challenge(
            'RFC 6750: `Bearer error="invalid_token"`, `"insufficient_scope"` or `"invalid_request"`', required=False
        ),
    },
    "404": error_answer("No such resource"),
    "413": error_answer("Body too large"),
    "415": error_answer("Wrong Content-Type"),
}
LIMITED = {"429": {**error_answer("Too many requests; see Retry-After"), "headers": RETRY_AFTER}}
FULL = {"503": {**error_answer("No room; see Retry-After"), "headers": RETRY_AFTER}}
STORED = {
    "503": {
        **error_answer("The state database cannot be written now (storage_unavailable); nothing changed"),
        "headers": RETRY_AFTER,
    },
    "507": error_answer("The state directory's disk is full (storage_full); nothing changed"),
}
"""A change the state database must keep: refused whole when it cannot be stored."""
NO_CONTENT = {"204": {"description": "Done"}}


def _stored_change(done: dict[str, Any], conflict: str, unavailable: str) -> dict[str, Any]:
    """The answers to a change the state database keeps: `done`, the usual errors, 409 and 503 as said."""
    return {
        **done,
        **ERRORS,
        "409": error_answer(conflict),
        **STORED,
        "503": error_answer(unavailable),
    }


METRICS_MEDIA = ("text/plain", "application/openmetrics-text")
SESSION_ID = {"name": "id", "in": "path", "required": True, "schema": TEXT}
RECORDING_ID = {"name": "recording", "in": "path", "required": True, "schema": TEXT}
OPERATOR_OR_VIEWER = [{"operator": []}, {"viewer": []}]
"""Routes that take a viewer token of the session as well as the operator's."""
HEAD = {
    "name": "head",
    "in": "path",
    "required": True,
    "schema": TEXT,
    "description": "The head's number (`console` in the list of heads)",
}


def _operation(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"operationId": op_id, "summary": summary, "responses": responses, **extra}


def _page(after: str) -> list[dict[str, Any]]:
    """The query parameters of a paged list: `after` (described as `after`) and `limit`."""
    return [
        {"name": "after", "in": "query", "required": False, "schema": {**INT, "minimum": 0}, "description": after},
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {**INT, "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        },
    ]


def _body(schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"required": True, "content": {media: {"schema": schema}}}


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
"""Operations are tagged by where their path starts (the longest match wins)."""
TAGGED_PATHS = {
    "/api/v1/sessions": "sessions",
    "/api/v1/sessions/{id}/tokens": "tokens",
    "/api/v1/sessions/{id}/viewers": "viewers",
    "/api/v1/sessions/{id}/recordings": "recordings",
    "/api/v1/events": "audit",
    "/whep/": "whep",
    "/healthz": "operations",
    "/readyz": "operations",
    "/metrics": "operations",
}
WHEP_SESSION = {"name": "session", "in": "path", "required": True, "schema": TEXT}
WHEP_VIEWER = {"name": "viewer", "in": "path", "required": True, "schema": TEXT}
QUALITY = {
    "name": "quality",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": list(QUALITIES), "default": "auto"},
    "description": "the rung of the session's ladder the viewer stays on (0: the top; one below the session's "
    "last rung takes the last); auto: the server moves it by how its link carries the stream",
}
ACCEPT_PATCH = {"description": "`application/trickle-ice-sdpfrag`", "schema": TEXT}
MALFORMED = {"400": error_answer("A malformed HTTP request, refused by the HTTP parser before any handler")}
ICE_LINKS = {
    "Link": {
        "description": 'One `<url>; rel="ice-server"` per STUN/TURN server; TURN servers with `username`, '
        "`credential` and `credential-type` only for a request with a valid token (with --turn-secret-file, "
        "a credential of the token's own that expires with it)",
        "schema": TEXT,
    }
}


def _tagged(paths: dict[str, Any]) -> dict[str, Any]:
    """`paths` with each operation tagged by TAGGED_PATHS."""
    for path, item in paths.items():
        tag = TAGGED_PATHS[max((p for p in TAGGED_PATHS if path.startswith(p)), key=len)]
        for method, operation in item.items():
            if method != "parameters":
                operation["tags"] = [tag]
    return paths


def document() -> dict[str, Any]:
    operator = [{"operator": []}]
    session = {"parameters": [SESSION_ID]}
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
        "security": operator,
        "paths": _tagged(
            {
                "/api/v1/sessions": {
                    "get": _operation(
                        "listSessions",
                        "List sessions, optionally by label",
                        {"200": json_answer(schemas.SessionList, "The sessions"), **ERRORS},
                        parameters=[
                            {
                                "name": "label",
                                "in": "query",
                                "required": False,
                                "schema": {**TEXT, "pattern": "^[^=]+=.*$"},
                                "description": "key=value; only sessions with this label",
                            }
                        ],
                    ),
                    "post": _operation(
                        "createSession",
                        "Create a session and start capturing",
                        _stored_change(
                            {"201": json_answer(schemas.Session, "Created")},
                            conflict="Exists",
                            unavailable="No room (full; see Retry-After), the source cannot be opened "
                            "(source_unavailable: no such device, or nothing at the VM's socket; nothing was created), "
                            "or the state database cannot be written (storage_unavailable; see Retry-After)",
                        ),
                        requestBody=_body(schema_of(schemas.SessionCreate)),
                    ),
                },
                "/api/v1/sessions/{id}": {
                    **session,
                    "get": _operation(
                        "getSession", "One session", {"200": json_answer(schemas.Session, "The session"), **ERRORS}
                    ),
                    "patch": _operation(
                        "updateSession",
                        "Change name, labels, encoder settings or viewer limit live; ask the guest for a display size",
                        _stored_change(
                            {"200": json_answer(schemas.Session, "Updated")},
                            conflict="The source cannot change its display size (unsupported)",
                            unavailable="The source is not available now, or the state database cannot be written; "
                            "nothing changed",
                        ),
                        requestBody=_body(schema_of(schemas.SessionUpdate)),
                    ),
                    "delete": _operation(
                        "deleteSession", "Stop and forget a session", {**NO_CONTENT, **ERRORS, **STORED}
                    ),
                },
                "/api/v1/sessions/{id}/planes": {
                    **session,
                    "get": _operation(
                        "getPlanes",
                        "Live plane metadata and source state",
                        {"200": json_answer(schemas.Planes, "Planes"), **ERRORS},
                    ),
                },
                "/api/v1/sessions/{id}/thumbnail": {
                    **session,
                    "get": _operation(
                        "getThumbnail",
                        "A small JPEG of the latest picture (at most one idle sample interval old)",
                        {
                            "200": {
                                "description": "The picture; its ETag changes with the picture and the size",
                                "headers": {"ETag": {"schema": TEXT}},
                                "content": {"image/jpeg": {"schema": {**TEXT, "contentMediaType": "image/jpeg"}}},
                            },
                            "304": {"description": "Not modified (If-None-Match named the current ETag)"},
                            **ERRORS,
                            "409": error_answer("No picture: the source is lost or has shown none yet"),
                        },
                        parameters=[
                            {
                                "name": "size",
                                "in": "query",
                                "required": False,
                                "schema": {
                                    **INT,
                                    "minimum": MIN_SIZE,
                                    "maximum": THUMBNAIL_EDGE,
                                    "default": DEFAULT_SIZE,
                                },
                                "description": "longest edge in pixels (never larger than the picture)",
                            }
                        ],
                    ),
                },
                "/api/v1/sessions/{id}/heads": {
                    **session,
                    "get": _operation(
                        "listHeads",
                        "The display heads of the session's VM (QEMU: one per Console), each with what it shows and "
                        "the session showing it",
                        {
                            "200": json_answer(schemas.HeadList, "The heads"),
                            **ERRORS,
                            "503": error_answer("The VM cannot be asked now (source_unavailable: no display attached)"),
                        },
                        security=OPERATOR_OR_VIEWER,
                    ),
                },
                "/api/v1/sessions/{id}/heads/{head}": {
                    "parameters": [SESSION_ID, HEAD],
                    "post": _operation(
                        "openHead",
                        "The session showing one head of the VM: the one there is, or a new one (the same source URL "
                        "with `?console=` that head, labels, encoder settings and viewer limit)",
                        _stored_change(
                            {
                                "200": json_answer(schemas.Session, "The session that shows the head already"),
                                "201": json_answer(schemas.Session, "Created; Location names it"),
                            },
                            conflict="The id this head's session would have is taken by another session",
                            unavailable="The VM cannot be asked now (source_unavailable), no room (full; see "
                            "Retry-After), or the state database cannot be written (storage_unavailable)",
                        )
                        | {"404": error_answer("No such session, or no such head (the message lists the VM's heads)")},
                    ),
                },
                "/api/v1/sessions/{id}/heads/{head}/link": {
                    "parameters": [SESSION_ID, HEAD],
                    "post": _operation(
                        "linkHead",
                        "A console link to one head of the VM, for a holder of any token of the session (the console's "
                        "head switcher): a token of the session showing the head (made if there is none) with the "
                        "caller's role, clipboard access and viewers, expiring when the caller's token does",
                        {
                            "201": json_answer(schemas.IssuedToken, "Issued; the secret is shown only now"),
                            **ERRORS,
                            "404": error_answer("No such session, or no such head (the message lists the VM's heads)"),
                            "409": error_answer("The id this head's session would have is taken by another session"),
                            "421": error_answer("The request's Host is none of the server's names (--allowed-host)"),
                            **LIMITED,
                            **STORED,
                            "503": error_answer(
                                "The VM cannot be asked now (source_unavailable), no room (full; see Retry-After), or "
                                "the state database cannot be written (storage_unavailable)"
                            ),
                        },
                        security=OPERATOR_OR_VIEWER,
                    ),
                },
                "/api/v1/sessions/{id}/tokens": {
                    **session,
                    "get": _operation(
                        "listTokens",
                        "Viewer tokens of a session (never their secrets), in the order they were issued, a page at a "
                        "time; expired and revoked ones until --token-retention-days after",
                        {"200": json_answer(schemas.TokenList, "A page of tokens"), **ERRORS},
                        parameters=_page("only tokens issued after this position (the `next` link sets it)"),
                    ),
                    "post": _operation(
                        "createToken",
                        "A viewer token and console link",
                        {
                            "201": json_answer(schemas.IssuedToken, "Issued; the secret is shown only now"),
                            **ERRORS,
                            "421": error_answer(
                                "The request's Host is none of the server's names (--allowed-host) and --public-url "
                                "is not set: no links are made for it"
                            ),
                            **LIMITED,
                            **STORED,
                        },
                        requestBody=_body(schema_of(schemas.TokenCreate)),
                    ),
                },
                "/api/v1/sessions/{id}/tokens/{token}": {
                    "parameters": [SESSION_ID, {"name": "token", "in": "path", "required": True, "schema": TEXT}],
                    "delete": _operation(
                        "revokeToken", "Revoke a token and disconnect its viewers", {**NO_CONTENT, **ERRORS, **STORED}
                    ),
                },
                "/api/v1/sessions/{id}/viewers": {
                    **session,
                    "get": _operation(
                        "listViewers",
                        "Viewers of a session",
                        {"200": json_answer(schemas.ViewerList, "Viewers"), **ERRORS},
                    ),
                },
                "/api/v1/sessions/{id}/viewers/{viewer}": {
                    "parameters": [SESSION_ID, {"name": "viewer", "in": "path", "required": True, "schema": TEXT}],
                    "delete": _operation("disconnectViewer", "Disconnect a viewer", {**NO_CONTENT, **ERRORS}),
                },
                "/api/v1/sessions/{id}/recordings": {
                    **session,
                    "get": _operation(
                        "listRecordings",
                        "Recordings of a session, newest first (also of a session deleted since)",
                        {"200": json_answer(schemas.RecordingList, "Recordings"), **ERRORS},
                    ),
                    "post": _operation(
                        "startRecording",
                        "Record the session's stream, without encoding again, from its next keyframe",
                        {
                            "201": json_answer(schemas.Recording, "Started; Location names it"),
                            **ERRORS,
                            "409": error_answer("The session runs its maximum of recordings"),
                            "503": error_answer("The recordings directory cannot be written"),
                        },
                        requestBody=_body(schema_of(schemas.RecordingCreate)),
                    ),
                },
                "/api/v1/sessions/{id}/recordings/{recording}": {
                    "parameters": [SESSION_ID, RECORDING_ID],
                    "get": _operation(
                        "getRecording", "One recording", {"200": json_answer(schemas.Recording, "It"), **ERRORS}
                    ),
                    "delete": _operation(
                        "stopRecording",
                        "Stop a running recording (200, once its file is closed), or delete a finished one (204)",
                        {"200": json_answer(schemas.Recording, "Stopped"), **NO_CONTENT, **ERRORS},
                    ),
                },
                "/api/v1/sessions/{id}/recordings/{recording}/file": {
                    "parameters": [SESSION_ID, RECORDING_ID],
                    "get": _operation(
                        "downloadRecording",
                        "The recording as fragmented MP4 (H.264, and Opus where the session can have sound), "
                        "growing while it records; Range requests welcome",
                        {
                            "200": {"description": "The file", "content": {"video/mp4": {"schema": TEXT}}},
                            "206": {"description": "The range asked for", "content": {"video/mp4": {"schema": TEXT}}},
                            "416": {"description": "A range outside the file"},
                            **ERRORS,
                        },
                        security=[*operator, {"signedLink": []}],
                        parameters=[
                            {
                                "name": "expires",
                                "in": "query",
                                "required": False,
                                "schema": INT,
                                "description": "Until when (epoch seconds) a signed link works; with `signature`",
                            }
                        ],
                    ),
                },
                "/api/v1/events": {
                    "get": _operation(
                        "listEvents",
                        "The audit trail, oldest first, a page at a time",
                        {"200": json_answer(schemas.EventPage, "A page of events"), **ERRORS},
                        parameters=[
                            {"name": "session", "in": "query", "required": False, "schema": TEXT},
                            {
                                "name": "since",
                                "in": "query",
                                "required": False,
                                "schema": TEXT,
                                "description": "RFC 3339 time with offset, or seconds since the epoch",
                            },
                            *_page("only events with a greater id (the `next` link sets it)"),
                        ],
                    ),
                },
                "/whep/{session}": {
                    "parameters": [WHEP_SESSION],
                    "options": _operation(
                        "whepOptions",
                        "WHEP: what the endpoint accepts, and its ICE servers",
                        {
                            "204": {
                                "description": "The endpoint exists",
                                "headers": {
                                    "Accept-Post": {
                                        "description": "`application/sdp`",
                                        "schema": TEXT,
                                        "required": True,
                                    },
                                    **ICE_LINKS,
                                },
                            },
                            "404": ERRORS["404"],
                        },
                        security=[],
                    ),
                    "post": _operation(
                        "whepOffer",
                        "WHEP: an SDP offer in, a viewer and its SDP answer out",
                        {
                            "201": {
                                "description": "The SDP answer; Location names the viewer resource",
                                "content": {"application/sdp": {"schema": TEXT}},
                                "headers": {
                                    "Location": {
                                        "description": "The viewer resource",
                                        "schema": TEXT,
                                        "required": True,
                                    },
                                    "ETag": {"description": "The viewer's ICE session, for If-Match", "schema": TEXT},
                                    "Accept-Patch": {
                                        "description": "`application/trickle-ice-sdpfrag`",
                                        "schema": TEXT,
                                    },
                                    **ICE_LINKS,
                                },
                            },
                            **ERRORS,
                            **LIMITED,
                            **FULL,
                            "507": STORED["507"],  # a single-use token is marked used before the viewer is made
                        },
                        security=[{"viewer": []}],
                        parameters=[QUALITY],
                        # no maxLength: a longer body is answered 413 (payload_too_large), which schemathesis counts
                        # as a violating request accepted
                        requestBody=_body(
                            {**TEXT, "description": "an SDP offer of at most --max-sdp-bytes (32 KiB)"},
                            "application/sdp",
                        ),
                    ),
                },
                "/whep/{session}/{viewer}": {
                    "parameters": [WHEP_SESSION, WHEP_VIEWER],
                    "options": _operation(
                        "whepViewerOptions",
                        "WHEP: what the viewer resource accepts",
                        {
                            "204": {
                                "description": "The viewer exists",
                                "headers": {
                                    "Accept-Patch": {"description": "`application/trickle-ice-sdpfrag`", "schema": TEXT}
                                },
                            },
                            "404": ERRORS["404"],
                        },
                        security=[],
                    ),
                    "patch": _operation(
                        "whepTrickle",
                        "WHEP: trickle the viewer's ICE candidates (RFC 8840 SDP fragment)",
                        {
                            "204": {"description": "Candidates added (mDNS names are resolved in the background)"},
                            "400": ERRORS["400"],
                            "404": ERRORS["404"],
                            "412": error_answer("If-Match does not match the viewer's ETag"),
                            "413": ERRORS["413"],
                            "415": ERRORS["415"],
                            "422": error_answer("An ICE restart (a new ufrag): start a new WHEP session"),
                        },
                        security=[],
                        parameters=[{"name": "If-Match", "in": "header", "required": False, "schema": TEXT}],
                        requestBody=_body(
                            {**TEXT, "description": "an SDP fragment of at most --max-sdp-bytes (32 KiB)"},
                            "application/trickle-ice-sdpfrag",
                        ),
                    ),
                    "delete": _operation(
                        "whepLeave",
                        "WHEP: leave (the viewer resource named by the offer's Location)",
                        {
                            "200": {"description": "Left, or had left already (for up to a minute after)"},
                            "404": ERRORS["404"],
                        },
                        security=[],
                    ),
                },
                "/healthz": {
                    "get": _operation(
                        "healthz",
                        "Liveness",
                        {"200": json_answer(schemas.Health, "Alive"), **MALFORMED},
                        security=[],
                    )
                },
                "/readyz": {
                    "get": _operation(
                        "readyz",
                        "Readiness: database open, no session lost its source (which, for the operator token)",
                        {
                            code: json_answer(schemas.Readiness, text)
                            for code, text in (("200", "Ready"), ("503", "Not ready"))
                        }
                        | MALFORMED,
                        security=[{}, *operator],  # anyone: the verdict; the operator: what is wrong
                    )
                },
                "/metrics": {
                    "get": _operation(
                        "metrics",
                        "Prometheus metrics",
                        {
                            "200": {
                                "description": "Metrics, in OpenMetrics where the Accept header asks for it",
                                "content": {media: {"schema": TEXT} for media in METRICS_MEDIA},
                            },
                            **MALFORMED,
                            "401": ERRORS["401"],
                            "403": ERRORS["403"],
                        },
                        description="Needs the operator token unless the server runs with --metrics-public",
                    )
                },
            }
        ),
    }


async def serve_document(request: web.Request) -> web.Response:
    return web.json_response(document())


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, serve_document)
