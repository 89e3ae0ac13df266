"""/healthz (alive), /readyz (ready to serve) and /metrics (Prometheus)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from vgpustream.api.schemas import Health, Readiness, json_response
from vgpustream.api.state import REGISTRY, STORE
from vgpustream.sources.base import SourceState

METRICS = web.AppKey("metrics", CollectorRegistry)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return json_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers and no session has lost its source."""
    lost = [s.id for s in request.app[REGISTRY] if s.capture.snapshot.state is SourceState.LOST]
    database = request.app[STORE].healthy()
    ready = database and not lost
    body = Readiness(status="ready" if ready else "not ready", database=database, lost_sessions=lost)
    return json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """The metrics, in the format the Accept header asks for (OpenMetrics or Prometheus text)."""
    return await make_aiohttp_handler(request.app[METRICS])(request)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
