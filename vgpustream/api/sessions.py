"""Sessions under /api/v1: create, list (by label), get, update live, delete, and live plane metadata."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from vgpustream.api import validate
from vgpustream.api.requests import read_json_object
from vgpustream.api.state import REGISTRY, SETTINGS
from vgpustream.errors import VgpuStreamError
from vgpustream.store import SessionSpec

MAX_VIEWERS_LIMIT = 256
CREATE_FIELDS = {"id", "source", "name", "labels", "encoder", "max_viewers"}
UPDATE_FIELDS = {"name", "labels", "encoder", "max_viewers"}


async def list_sessions(request: web.Request) -> web.Response:
    wanted = []
    for selector in request.query.getall("label", []):
        key, sep, value = selector.partition("=")
        if not sep or not key:
            raise VgpuStreamError("label filters look like ?label=key=value")
        wanted.append((key, value))
    sessions = [s for s in request.app[REGISTRY] if all(s.spec.labels.get(k) == v for k, v in wanted)]
    return web.json_response({"sessions": [s.to_json() for s in sessions]})


async def create_session(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = await read_json_object(request, settings.max_json_bytes, CREATE_FIELDS)
    spec = SessionSpec(
        id=validate.string(body, "id", 63),
        source=validate.string(body, "source", 1024),
        name=validate.string(body, "name", validate.MAX_NAME, default=""),
        labels=validate.labels(body, {}),
        encoder=validate.encoder(body, settings.encoder),
        max_viewers=validate.integer(body, "max_viewers", 1, MAX_VIEWERS_LIMIT, settings.max_viewers),
    )
    session = await request.app[REGISTRY].create(spec)
    return web.json_response(session.to_json(), status=201, headers={"Location": f"/api/v1/sessions/{session.id}"})


async def get_session(request: web.Request) -> web.Response:
    return web.json_response(request.app[REGISTRY].get(request.match_info["id"]).to_json())


async def update_session(request: web.Request) -> web.Response:
    """Change name, labels, encoder settings or the viewer limit; the stream goes on."""
    registry = request.app[REGISTRY]
    session = registry.get(request.match_info["id"])
    body = await read_json_object(request, request.app[SETTINGS].max_json_bytes, UPDATE_FIELDS)
    spec = session.spec
    spec = dataclasses.replace(
        spec,
        name=validate.string(body, "name", validate.MAX_NAME, default=spec.name),
        labels=validate.labels(body, spec.labels),
        encoder=validate.encoder(body, spec.encoder),
        max_viewers=validate.integer(body, "max_viewers", 1, MAX_VIEWERS_LIMIT, spec.max_viewers),
    )
    await registry.update(session, spec)
    return web.json_response(session.to_json())


async def delete_session(request: web.Request) -> web.Response:
    await request.app[REGISTRY].delete(request.match_info["id"])
    return web.Response(status=204)


async def get_planes(request: web.Request) -> web.Response:
    session = request.app[REGISTRY].get(request.match_info["id"])
    return web.json_response(session.planes_json())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/sessions", list_sessions)
    app.router.add_post("/api/v1/sessions", create_session)
    app.router.add_get("/api/v1/sessions/{id}", get_session)
    app.router.add_patch("/api/v1/sessions/{id}", update_session)
    app.router.add_delete("/api/v1/sessions/{id}", delete_session)
    app.router.add_get("/api/v1/sessions/{id}/planes", get_planes)
