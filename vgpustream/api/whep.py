"""WHEP signalling (draft-ietf-wish-whep): one viewer per POSTed SDP offer.

The answer carries every server candidate (we do not trickle; STUN and TURN servers are waited for only
briefly, see vgpustream.transports.relays); viewers may trickle theirs with PATCH. ICE servers are announced in Link
headers on OPTIONS and on the 201 response, with TURN credentials only for a valid token's holder.
"""

from __future__ import annotations

import secrets
import time

from aiohttp import web
from multidict import CIMultiDict

from vgpustream.api.answers import ERRORS, FULL, LIMITED, STORED, error_answer
from vgpustream.api.requests import read_text
from vgpustream.api.route import ANYONE, TEXT, VIEWER, Route, text_body
from vgpustream.api.state import AUTHORITY, ICE_SERVERS, ICE_WATCH, REGISTRY, SETTINGS, rate_limit
from vgpustream.control.auth import Grant
from vgpustream.errors import Forbidden, IceRestartUnsupported, PreconditionFailed, Unauthorized, VgpuStreamError
from vgpustream.media.renditions import QUALITIES
from vgpustream.transports.iceservers import IceServer
from vgpustream.transports.webrtc import Viewer, check_offer

SDP = "application/sdp"
TRICKLE = "application/trickle-ice-sdpfrag"
MAX_FRAGMENT_LINES = 64


def link_headers(servers: tuple[IceServer, ...]) -> CIMultiDict[str]:
    """One `Link: <url>; rel="ice-server"` header per ICE server, with TURN credentials."""
    headers: CIMultiDict[str] = CIMultiDict()
    for server in servers:
        value = f'<{server.url}>; rel="ice-server"'
        if server.username is not None and server.credential is not None:
            value += f'; username="{server.username}"; credential="{server.credential}"; credential-type="password"'
        headers.add("Link", value)
    return headers


def announced_servers(request: web.Request, grant: Grant | None) -> tuple[IceServer, ...]:
    """The ICE servers for the holder of `grant`: TURN credentials named after its token and expiring with
    it (an operator's token, which neither has an id nor expires: a name of its own, --token-ttl); None
    (no valid token): no credentials at all."""
    if grant is None:
        return request.app[ICE_SERVERS].announced(None, 0)
    holder = grant.token_id or f"{grant.role}-{secrets.token_hex(4)}"
    return request.app[ICE_SERVERS].announced(holder, grant.expires_at or time.time() + request.app[SETTINGS].token_ttl)


async def options_endpoint(request: web.Request) -> web.Response:
    """Accept-Post and the ICE servers: their credentials only with a valid token (none is required)."""
    session = request.app[REGISTRY].get(request.match_info["session"])
    try:
        grant: Grant | None = request.app[AUTHORITY].viewer_grant(request, session.id, consume=False)
    except (Unauthorized, Forbidden):
        grant = None
    headers = link_headers(announced_servers(request, grant))
    headers["Accept-Post"] = SDP
    return web.Response(status=204, headers=headers)


async def post_offer(request: web.Request) -> web.Response:
    """A new viewer from an SDP offer; the Bearer token decides whether its input reaches the guest."""
    rate_limit(request)
    settings = request.app[SETTINGS]
    authority = request.app[AUTHORITY]
    session = request.app[REGISTRY].get(request.match_info["session"])
    grant = authority.viewer_grant(request, session.id, consume=False)  # refuse before reading the body
    offer = await read_text(request, SDP, settings.max_sdp_bytes)
    check_offer(offer)
    server_ice = [s.to_rtc() for s in request.app[ICE_WATCH].answering(request.app[ICE_SERVERS].for_server())]
    viewer = session.audience.admit(
        grant,
        lambda callbacks, grant, rules: Viewer(callbacks, server_ice, grant, rules, sound=session.audience.sound),
        request.query.get("quality", "auto"),
    )
    try:
        authority.viewer_grant(request, session.id)  # uses up a single-use token (only once it has a seat)
        answer = await viewer.answer(offer)
    except BaseException:
        await viewer.close()
        raise
    if session.audience.audit is not None:
        user_agent = request.headers.get("User-Agent", "")
        session.audience.audit.joined(viewer, request.remote, user_agent)
    headers = link_headers(announced_servers(request, grant))
    headers["Location"] = f"/whep/{session.id}/{viewer.id}"
    headers["ETag"] = _etag(viewer)
    headers["Accept-Patch"] = TRICKLE
    return web.Response(status=201, text=answer, content_type=SDP, headers=headers)


async def options_viewer(request: web.Request) -> web.Response:
    _viewer(request)
    return web.Response(status=204, headers={"Accept-Patch": TRICKLE})


async def delete_viewer(request: web.Request) -> web.Response:
    """Leave; 200 too for a viewer that already left (players may close their peer connection first)."""
    audience = request.app[REGISTRY].get(request.match_info["session"]).audience
    viewer_id = request.match_info["viewer"]
    if not audience.has_left(viewer_id):
        await audience.viewer(viewer_id).close()  # not_found for an id never issued (or long gone)
    return web.Response(status=200)


async def patch_viewer(request: web.Request) -> web.Response:
    """Trickled client candidates (RFC 8840 SDP fragment). ICE restarts are not supported."""
    viewer = _viewer(request)
    if_match = request.headers.get("If-Match")
    if if_match is not None and if_match not in ("*", _etag(viewer)):
        raise PreconditionFailed("If-Match does not match the session's ETag")
    fragment = await read_text(request, TRICKLE, request.app[SETTINGS].max_sdp_bytes)
    candidates = _parse_fragment(fragment, viewer)
    await viewer.add_ice_candidates(candidates)
    return web.Response(status=204)


def _parse_fragment(fragment: str, viewer: Viewer) -> list[tuple[str | None, int | None, str]]:
    lines = [line.strip() for line in fragment.splitlines() if line.strip()]
    if len(lines) > MAX_FRAGMENT_LINES:
        raise VgpuStreamError(f"SDP fragment has more than {MAX_FRAGMENT_LINES} lines")
    candidates: list[tuple[str | None, int | None, str]] = []
    mid: str | None = None
    index = -1
    for line in lines:
        key, _, value = line.partition(":")
        if key == "a=ice-ufrag" and value != viewer.remote_ice_ufrag:
            raise IceRestartUnsupported("ICE restart is not supported; start a new WHEP session")
        if line.startswith("m="):
            index += 1
            mid = None
        elif key == "a=mid":
            mid = value
        elif key == "a=candidate":
            candidates.append((mid, max(index, 0), value))
        elif not line.startswith(("a=ice-", "a=end-of-candidates", "a=group:")):
            raise VgpuStreamError("SDP fragment may hold only ICE lines, m= and a=mid")
    return candidates


def _viewer(request: web.Request) -> Viewer:
    session = request.app[REGISTRY].get(request.match_info["session"])
    return session.audience.viewer(request.match_info["viewer"])


def _etag(viewer: Viewer) -> str:
    return f'"{viewer.id}"'


ICE_LINKS = {
    "Link": {
        "description": 'One `<url>; rel="ice-server"` per STUN/TURN server; TURN servers with `username`, '
        "`credential` and `credential-type` only for a request with a valid token (with --turn-secret-file, "
        "a credential of the token's own that expires with it)",
        "schema": TEXT,
    }
}
ACCEPT_PATCH = {"Accept-Patch": {"description": f"`{TRICKLE}`", "schema": TEXT}}
QUALITY = {
    "name": "quality",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": list(QUALITIES), "default": "auto"},
    "description": "the rung of the session's ladder the viewer stays on (0: the top; one below the session's "
    "last rung takes the last); auto: the server moves it by how its link carries the stream",
}
ROUTES = [
    Route(
        "OPTIONS",
        "/whep/{session}",
        options_endpoint,
        "whepOptions",
        "WHEP: what the endpoint accepts, and its ICE servers",
        tag="whep",
        answers={
            "204": {
                "description": "The endpoint exists",
                "headers": {"Accept-Post": {"description": f"`{SDP}`", "schema": TEXT, "required": True}, **ICE_LINKS},
            },
            "404": ERRORS["404"],
        },
        security=ANYONE,
    ),
    Route(
        "POST",
        "/whep/{session}",
        post_offer,
        "whepOffer",
        "WHEP: an SDP offer in, a viewer and its SDP answer out",
        tag="whep",
        answers={
            "201": {
                "description": "The SDP answer; Location names the viewer resource",
                "content": {SDP: {"schema": TEXT}},
                "headers": {
                    "Location": {"description": "The viewer resource", "schema": TEXT, "required": True},
                    "ETag": {"description": "The viewer's ICE session, for If-Match", "schema": TEXT},
                    **ACCEPT_PATCH,
                    **ICE_LINKS,
                },
            },
            **ERRORS,
            **LIMITED,
            **FULL,
            "507": STORED["507"],  # a single-use token is marked used before the viewer is made
        },
        # no maxLength: a longer body is answered 413 (payload_too_large), which schemathesis counts as a
        # violating request accepted
        body=text_body(SDP, "an SDP offer of at most --max-sdp-bytes (32 KiB)"),
        parameters=(QUALITY,),
        security=VIEWER,
    ),
    Route(
        "OPTIONS",
        "/whep/{session}/{viewer}",
        options_viewer,
        "whepViewerOptions",
        "WHEP: what the viewer resource accepts",
        tag="whep",
        answers={"204": {"description": "The viewer exists", "headers": ACCEPT_PATCH}, "404": ERRORS["404"]},
        security=ANYONE,
    ),
    Route(
        "PATCH",
        "/whep/{session}/{viewer}",
        patch_viewer,
        "whepTrickle",
        "WHEP: trickle the viewer's ICE candidates (RFC 8840 SDP fragment)",
        tag="whep",
        answers={
            "204": {"description": "Candidates added (mDNS names are resolved in the background)"},
            "400": ERRORS["400"],
            "404": ERRORS["404"],
            "412": error_answer("If-Match does not match the viewer's ETag"),
            "413": ERRORS["413"],
            "415": ERRORS["415"],
            "422": error_answer("An ICE restart (a new ufrag): start a new WHEP session"),
        },
        body=text_body(TRICKLE, "an SDP fragment of at most --max-sdp-bytes (32 KiB)"),
        parameters=({"name": "If-Match", "in": "header", "required": False, "schema": TEXT},),
        security=ANYONE,
    ),
    Route(
        "DELETE",
        "/whep/{session}/{viewer}",
        delete_viewer,
        "whepLeave",
        "WHEP: leave (the viewer resource named by the offer's Location)",
        tag="whep",
        answers={
            "200": {"description": "Left, or had left already (for up to a minute after)"},
            "404": ERRORS["404"],
        },
        security=ANYONE,
    ),
]
