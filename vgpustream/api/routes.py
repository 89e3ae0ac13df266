"""Every operation of the HTTP interface, gathered from the modules of their handlers into the one table that
both routes requests (vgpustream.api.app) and is the OpenAPI document's paths (vgpustream.api.openapi)."""

from __future__ import annotations

from vgpustream.api import events, heads, operations, recordings, sessions, tokens, whep
from vgpustream.api.route import Route

ROUTES: tuple[Route, ...] = (
    *sessions.ROUTES,
    *heads.ROUTES,
    *tokens.ROUTES,
    *recordings.ROUTES,
    *events.ROUTES,
    *whep.ROUTES,
    *operations.ROUTES,
)
