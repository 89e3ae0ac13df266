"""/healthz (alive), /readyz (ready to serve) and /metrics (Prometheus).

/healthz and /readyz's verdict are public (load balancers and probes carry no token); what is wrong, and the
metrics, which name every session and count its viewers and input, are for the operator token only (unless
--metrics-public).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from vgpustream.api.answers import ERRORS, MALFORMED, json_answer
from vgpustream.api.route import ANYONE, OPERATOR, TEXT, Route
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


METRICS_MEDIA = ("text/plain", "application/openmetrics-text")
ROUTES = [
    Route(
        "GET",
        "/healthz",
        healthz,
        "healthz",
        "Liveness",
        tag="operations",
        answers={"200": json_answer(Health, "Alive"), **MALFORMED},
        security=ANYONE,
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        "readyz",
        "Readiness: database open, no session lost its source (which, for the operator token)",
        tag="operations",
        answers={"200": json_answer(Readiness, "Ready"), "503": json_answer(Readiness, "Not ready"), **MALFORMED},
        security=[{}, *OPERATOR],  # anyone: the verdict; the operator: what is wrong
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        "metrics",
        "Prometheus metrics",
        tag="operations",
        answers={
            "200": {
                "description": "Metrics, in OpenMetrics where the Accept header asks for it",
                "content": {media: {"schema": TEXT} for media in METRICS_MEDIA},
            },
            **MALFORMED,
            "401": ERRORS["401"],
            "403": ERRORS["403"],
        },
        description="Needs the operator token unless the server runs with --metrics-public",
    ),
]
