"""The JSON API for sessions under /api/v1 (auth arrives as a middleware in front of it)."""

from __future__ import annotations

from aiohttp import web

from vgpustream.api.requests import read_json_object
from vgpustream.api.state import REGISTRY, SETTINGS
from vgpustream.errors import VgpuStreamError


async def list_sessions(request: web.Request) -> web.Response:
    return web.json_response({"sessions": [s.to_json() for s in request.app[REGISTRY]]})


async def create_session(request: web.Request) -> web.Response:
    body = await read_json_object(request, request.app[SETTINGS].max_json_bytes, {"id", "source"})
    session_id, source = body.get("id"), body.get("source")
    if not isinstance(session_id, str) or not isinstance(source, str):
        raise VgpuStreamError("'id' and 'source' are required strings")
    session = await request.app[REGISTRY].create(session_id, source)
    return web.json_response(session.to_json(), status=201, headers={"Location": f"/api/v1/sessions/{session.id}"})


async def get_session(request: web.Request) -> web.Response:
    return web.json_response(request.app[REGISTRY].get(request.match_info["id"]).to_json())


async def delete_session(request: web.Request) -> web.Response:
    await request.app[REGISTRY].delete(request.match_info["id"])
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/sessions", list_sessions)
    app.router.add_post("/api/v1/sessions", create_session)
    app.router.add_get("/api/v1/sessions/{id}", get_session)
    app.router.add_delete("/api/v1/sessions/{id}", delete_session)
