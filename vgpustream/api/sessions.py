"""Sessions under /api/v1: create, list (by label), get, update live, delete, live plane metadata, thumbnails."""

from __future__ import annotations

import dataclasses

import msgspec
from aiohttp import web
from multidict import MultiMapping

from vgpustream.api import schemas
from vgpustream.api.answers import ERRORS, NO_CONTENT, STORED, error_answer, json_answer, stored_change
from vgpustream.api.requests import read_json
from vgpustream.api.route import INT, TEXT, Route, json_body
from vgpustream.api.schemas import UNSET, SessionCreate, SessionUpdate, given, json_response
from vgpustream.api.state import REGISTRY, SETTINGS
from vgpustream.control.store import SessionSpec
from vgpustream.errors import Conflict, VgpuStreamError
from vgpustream.media.thumbnail import DEFAULT_SIZE, MIN_SIZE, THUMBNAIL_EDGE
from vgpustream.session import RenditionFigures, Session
from vgpustream.sources.base import SourceState


def session_body(session: Session) -> schemas.Session:
    """A session's definition, its source's state (with the last capture error) and planes, and its counters."""
    spec, capture, audience = session.spec, session.capture, session.audience
    fps, bitrate = capture.rates()
    encode = capture.encode_times.mean
    stats = schemas.Stats(
        **dataclasses.asdict(capture.stats),
        **dataclasses.asdict(audience.stats),
        **dataclasses.asdict(audience.clipboard_stats),
        **dataclasses.asdict(audience.microphone.stats),
        **dataclasses.asdict(session.resizer.stats),
        viewers=len(audience),
        fps=round(fps, 2),
        bitrate=round(bitrate),
        encode_ms=round(encode * 1000, 3) if encode is not None else None,
        dropped_packets=audience.dropped_packets,
        audio_packets=session.sound_stats.packets,
        audio_bytes=session.sound_stats.bytes,
    )
    return schemas.Session(
        id=spec.id,
        source=spec.source,
        name=spec.name,
        labels=spec.labels,
        encoder=schemas.Encoder(**dataclasses.asdict(spec.encoder)),
        max_viewers=spec.max_viewers,
        state=capture.snapshot.state.value,
        message=capture.snapshot.error,
        planes=msgspec.convert(capture.snapshot.planes.to_json(), schemas.PlaneSet),
        recordings=len(session.recorders),
        sound=session.sound_available,
        clipboard=session.clipboard_available,
        microphone=audience.microphone.available,
        stats=stats,
        renditions=[rendition_body(figures) for figures in session.rendition_figures()],
    )


def rendition_body(figures: RenditionFigures) -> schemas.Rendition:
    width, height = figures.size or (None, None)
    return schemas.Rendition(
        codec=figures.rendition.codec,
        rung=figures.rendition.rung,
        width=width,
        height=height,
        fps=round(figures.fps, 2),
        bitrate=round(figures.bitrate),
        seats=figures.seats,
        frames_encoded=figures.frames_encoded,
        keyframes=figures.keyframes,
    )


def planes_body(session: Session) -> schemas.Planes:
    """Live plane metadata, the pointer, the EDID limits and the source's state."""
    snapshot = session.capture.snapshot
    cursor, limits = snapshot.cursor, snapshot.display_limits
    pointer = None
    if cursor is not None:
        pointer = schemas.Pointer(
            x=cursor.x, y=cursor.y, hot_x=cursor.hot_x, hot_y=cursor.hot_y, visible=cursor.visible
        )
    planes = msgspec.convert(snapshot.planes.to_json(), schemas.PlaneSet)
    return schemas.Planes(
        state=snapshot.state.value,
        primary=planes.primary,
        cursor=planes.cursor,
        pointer=pointer,
        edid=schemas.Edid(max_xres=limits[0], max_yres=limits[1]) if limits else None,
        sound=session.sound_available,
        clipboard=session.clipboard_available,
        resizable=snapshot.display_range is not None,
    )


def label_filters(query: MultiMapping[str]) -> list[tuple[str, str]]:
    """The `?label=key=value` filters of a list (a gateway checks them too, before it asks the hosts)."""
    wanted = []
    for selector in query.getall("label", []):
        key, sep, value = selector.partition("=")
        if not sep or not key:
            raise VgpuStreamError("label filters look like ?label=key=value")
        wanted.append((key, value))
    return wanted


async def list_sessions(request: web.Request) -> web.Response:
    wanted = label_filters(request.query)
    sessions = [s for s in request.app[REGISTRY] if all(s.spec.labels.get(k) == v for k, v in wanted)]
    return json_response(schemas.SessionList(sessions=[session_body(s) for s in sessions]))


async def create_session(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = await read_json(request, settings.max_json_bytes, SessionCreate)
    spec = SessionSpec(
        id=body.id,
        source=body.source,
        name=body.name,
        labels=body.labels,
        encoder=body.encoder.settings(settings.encoder),
        max_viewers=given(body.max_viewers, settings.max_viewers),
    )
    session = await request.app[REGISTRY].create(spec)
    return json_response(session_body(session), status=201, headers={"Location": f"/api/v1/sessions/{session.id}"})


async def get_session(request: web.Request) -> web.Response:
    return json_response(session_body(request.app[REGISTRY].get(request.match_info["id"])))


async def update_session(request: web.Request) -> web.Response:
    """Change name, labels, encoder settings or the viewer limit, or ask the guest for a display size; the
    stream goes on. The display size is checked and asked for first: when the source refuses it, nothing changes."""
    registry = request.app[REGISTRY]
    session = registry.get(request.match_info["id"])
    body = await read_json(request, request.app[SETTINGS].max_json_bytes, SessionUpdate)
    spec = session.spec
    spec = dataclasses.replace(
        spec,
        name=given(body.name, spec.name),
        labels=given(body.labels, spec.labels),
        encoder=spec.encoder if body.encoder is UNSET else body.encoder.settings(spec.encoder),
        max_viewers=given(body.max_viewers, spec.max_viewers),
    )
    if body.display is not UNSET:
        await session.capture.resize(body.display.event())
    await registry.update(session, spec)
    return json_response(session_body(session))


async def delete_session(request: web.Request) -> web.Response:
    await request.app[REGISTRY].delete(request.match_info["id"])
    return web.Response(status=204)


async def get_planes(request: web.Request) -> web.Response:
    session = request.app[REGISTRY].get(request.match_info["id"])
    return json_response(planes_body(session))


def thumbnail_size(request: web.Request) -> int:
    """The longest edge a thumbnail request asks for (`?size=`), within MIN_SIZE..THUMBNAIL_EDGE."""
    text = request.query.get("size", str(DEFAULT_SIZE))
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and MIN_SIZE <= int(text) <= THUMBNAIL_EDGE):
        raise VgpuStreamError(f"size must be a whole number of pixels within {MIN_SIZE}..{THUMBNAIL_EDGE}")
    return int(text)


async def get_thumbnail(request: web.Request) -> web.Response:
    """A JPEG of the latest picture, longest edge `?size=` (320); 304 when the client has it already."""
    session = request.app[REGISTRY].get(request.match_info["id"])
    size = thumbnail_size(request)
    snapshot = session.capture.snapshot
    if snapshot.state is SourceState.LOST:
        raise Conflict("the session's source is lost: there is no current picture")
    thumbnail = snapshot.thumbnail
    if thumbnail is None:
        raise Conflict("the session's source has shown no picture yet")
    etag = f"{thumbnail.tag}-{size}"
    headers = {"ETag": f'"{etag}"', "Cache-Control": "no-cache"}
    if any(given.value in (etag, "*") for given in request.if_none_match or ()):
        return web.Response(status=304, headers=headers)
    body = await session.thumbnails.jpeg(thumbnail, size)
    return web.Response(body=body, content_type="image/jpeg", headers=headers)


LABEL = {
    "name": "label",
    "in": "query",
    "required": False,
    "schema": {**TEXT, "pattern": "^[^=]+=.*$"},
    "description": "key=value; only sessions with this label",
}
SIZE = {
    "name": "size",
    "in": "query",
    "required": False,
    "schema": {**INT, "minimum": MIN_SIZE, "maximum": THUMBNAIL_EDGE, "default": DEFAULT_SIZE},
    "description": "longest edge in pixels (never larger than the picture)",
}
ROUTES = [
    Route(
        "GET",
        "/api/v1/sessions",
        list_sessions,
        "listSessions",
        "List sessions, optionally by label",
        tag="sessions",
        answers={"200": json_answer(schemas.SessionList, "The sessions"), **ERRORS},
        parameters=(LABEL,),
    ),
    Route(
        "POST",
        "/api/v1/sessions",
        create_session,
        "createSession",
        "Create a session and start capturing",
        tag="sessions",
        answers=stored_change(
            {"201": json_answer(schemas.Session, "Created")},
            conflict="Exists",
            unavailable="No room (full; see Retry-After), the source cannot be opened (source_unavailable: no such "
            "device, or nothing at the VM's socket; nothing was created), or the state database cannot be written "
            "(storage_unavailable; see Retry-After)",
        ),
        body=json_body(SessionCreate),
    ),
    Route(
        "GET",
        "/api/v1/sessions/{id}",
        get_session,
        "getSession",
        "One session",
        tag="sessions",
        answers={"200": json_answer(schemas.Session, "The session"), **ERRORS},
    ),
    Route(
        "PATCH",
        "/api/v1/sessions/{id}",
        update_session,
        "updateSession",
        "Change name, labels, encoder settings or viewer limit live; ask the guest for a display size",
        tag="sessions",
        answers=stored_change(
            {"200": json_answer(schemas.Session, "Updated")},
            conflict="The source cannot change its display size (unsupported)",
            unavailable="The source is not available now, or the state database cannot be written; nothing changed",
        ),
        body=json_body(SessionUpdate),
    ),
    Route(
        "DELETE",
        "/api/v1/sessions/{id}",
        delete_session,
        "deleteSession",
        "Stop and forget a session",
        tag="sessions",
        answers={**NO_CONTENT, **ERRORS, **STORED},
    ),
    Route(
        "GET",
        "/api/v1/sessions/{id}/planes",
        get_planes,
        "getPlanes",
        "Live plane metadata and source state",
        tag="sessions",
        answers={"200": json_answer(schemas.Planes, "Planes"), **ERRORS},
    ),
    Route(
        "GET",
        "/api/v1/sessions/{id}/thumbnail",
        get_thumbnail,
        "getThumbnail",
        "A small JPEG of the latest picture (at most one idle sample interval old)",
        tag="sessions",
        answers={
            "200": {
                "description": "The picture; its ETag changes with the picture and the size",
                "headers": {"ETag": {"schema": TEXT}},
                "content": {"image/jpeg": {"schema": {**TEXT, "contentMediaType": "image/jpeg"}}},
            },
            "304": {"description": "Not modified (If-None-Match named the current ETag)"},
            **ERRORS,
            "409": error_answer("No picture: the source is lost or has shown none yet"),
        },
        parameters=(SIZE,),
    ),
]
