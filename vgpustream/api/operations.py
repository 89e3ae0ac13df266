"""/healthz (alive), /readyz (ready to serve) and /metrics (Prometheus).

/healthz and /readyz's verdict are public (load balancers and probes carry no token); what is wrong, and the
metrics, which name every session and count its viewers and input, are for the operator token only (unless
--metrics-public).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from vgpustream.api.schemas import Health, IceServerState, Readiness, json_response
from vgpustream.api.state import AUTHORITY, ICE_WATCH, REGISTRY, SETTINGS, STORE
from vgpustream.control.rfc3339 import timestamp
from vgpustream.sources.base import SourceState

METRICS = web.AppKey("metrics", CollectorRegistry)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return json_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers and no session has lost its source; for the operator token also the
    node's name, which sessions did, and how each ICE server does (which does not decide readiness)."""
    lost = [s.id for s in request.app[REGISTRY] if s.capture.snapshot.state is SourceState.LOST]
    database = request.app[STORE].healthy()
    ready = database and not lost
    status = "ready" if ready else "not ready"
    authority = request.app[AUTHORITY]
    if authority.enabled and not authority.from_operator(request):
        body = Readiness(status=status)
    else:
        ice_servers = [
            IceServerState(
                url=h.url,
                state=h.state,
                last_allocation=None if h.last_allocation is None else timestamp(h.last_allocation),
                failures=h.failures,
                error=h.error,
            )
            for h in request.app[ICE_WATCH].health()
        ]
        node = request.app[SETTINGS].node
        body = Readiness(status=status, node=node, database=database, lost_sessions=lost, ice_servers=ice_servers)
    return json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """The metrics, in the format the Accept header asks for (OpenMetrics or Prometheus text)."""
    if not request.app[SETTINGS].metrics_public:
        request.app[AUTHORITY].require_operator(request)
    return await make_aiohttp_handler(request.app[METRICS])(request)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
