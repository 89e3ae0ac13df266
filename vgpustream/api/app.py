"""The application factory that the CLI and the tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from vgpustream.api import console, sessions, whep
from vgpustream.api.errors import json_errors
from vgpustream.api.state import REGISTRY, SETTINGS
from vgpustream.registry import SessionRegistry
from vgpustream.rtcnet import advertise_host_addresses
from vgpustream.settings import Settings

DEFAULT_SESSION = "default"


@web.middleware
async def cors(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    """Let WHEP players and control planes on other origins call us (an allowlist comes with auth)."""
    response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization, If-Match"
    response.headers["Access-Control-Expose-Headers"] = "Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After"
    return response


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return web.json_response({"status": "ok"})


def create_app(settings: Settings, default_session: bool = True) -> web.Application:
    """The vgpustream web application; with `default_session`, session 'default' runs settings.source."""
    app = web.Application(middlewares=[cors, json_errors], client_max_size=settings.max_sdp_bytes)
    app[SETTINGS] = settings
    if settings.host_addresses:
        advertise_host_addresses(settings.host_addresses)

    async def registry_lifetime(app: web.Application) -> AsyncIterator[None]:
        registry = app[REGISTRY] = SessionRegistry(settings)
        if default_session:
            await registry.create(DEFAULT_SESSION, settings.source)
        yield
        await registry.close()

    app.cleanup_ctx.append(registry_lifetime)
    app.router.add_get("/healthz", healthz)
    whep.add_routes(app)
    sessions.add_routes(app)
    console.add_routes(app)
    return app
