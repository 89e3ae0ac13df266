"""Typed application state shared by the request handlers."""

from __future__ import annotations

from aiohttp import web

from vgpustream.control.audit import AuditLog
from vgpustream.control.auth import Authority
from vgpustream.control.store import Store
from vgpustream.errors import MisdirectedRequest, bounded
from vgpustream.ratelimit import RateLimiter
from vgpustream.registry import SessionRegistry
from vgpustream.settings import Settings
from vgpustream.transports.iceservers import IceServers
from vgpustream.transports.relays import IceServerWatch

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
REGISTRY = web.AppKey("registry", SessionRegistry)
AUTHORITY = web.AppKey("authority", Authority)
LIMITER = web.AppKey("limiter", RateLimiter)
AUDIT = web.AppKey("audit", AuditLog)
ICE_SERVERS = web.AppKey("ice_servers", IceServers)
ICE_WATCH = web.AppKey("ice_watch", IceServerWatch)


def base_url(request: web.Request) -> str:
    """Where links handed out should point: the configured public URL, else this request's origin when its
    Host is one of the server's own names (--allowed-host); MisdirectedRequest for any other Host, which
    would make the links point wherever the request's sender likes."""
    settings = request.app[SETTINGS]
    return link_base(request, settings.public_url, settings.allowed_hosts)


def link_base(request: web.Request, public_url: str | None, allowed_hosts: frozenset[str]) -> str:
    """`public_url`, else the request's origin if its Host is one of `allowed_hosts` (see base_url)."""
    if public_url:
        return public_url.rstrip("/")
    try:
        name = (request.url.host or "").lower()
    except ValueError:  # a Host header that is no host at all
        name = ""
    if name not in allowed_hosts:
        raise MisdirectedRequest(
            f"links are not made for the host {bounded(request.host, 60)}: set --public-url or --allowed-host"
        )
    return f"{request.scheme}://{request.host}"


def rate_limit(request: web.Request) -> None:
    """Count this request against its client's budget for the expensive endpoints.

    The control plane (a valid operator token) is trusted and not limited; everyone else is,
    which also slows down anyone guessing tokens.
    """
    if not request.app[AUTHORITY].from_operator(request):
        request.app[LIMITER].check(request.remote or "unknown")
