"""The application factory that the CLI and the tests share."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from vgpustream import compat
from vgpustream.api import console, heads, openapi, operations, recordings, route, tokens, websocket
from vgpustream.api.connections import SERVER, GuardedRequestHandler
from vgpustream.api.errors import json_errors
from vgpustream.api.routes import ROUTES
from vgpustream.api.state import AUDIT, AUTHORITY, ICE_SERVERS, ICE_WATCH, LIMITER, REGISTRY, SETTINGS, STORE
from vgpustream.control.audit import AuditLog, read_webhook_secret
from vgpustream.control.auth import Authority, operator_tokens
from vgpustream.control.signedtokens import TokenVerifier
from vgpustream.control.store import Store
from vgpustream.metrics import metrics_registry
from vgpustream.proxies import client_addresses
from vgpustream.ratelimit import RateLimiter
from vgpustream.registry import SessionRegistry
from vgpustream.settings import ServiceSettings, Settings
from vgpustream.transports.iceservers import IceServers
from vgpustream.transports.relays import IceServerWatch

API_PREFIX = "/api/v1/"
BACKGROUND_THREADS = 2
PUBLIC_API = {openapi.PATH}
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After",
    "Access-Control-Max-Age": "600",
}


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string: it may carry secrets), status, size and time; bounded."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %d %.1fms",
            request.remote,
            request.method,
            request.rel_url.path[:200].encode("unicode_escape").decode(),
            response.status,
            response.body_length,
            time * 1000,
        )


def cors_middleware(origins: tuple[str, ...]) -> web.middleware:
    """Browsers on `origins` ("*" for any) may call WHEP and the API; others only from our own pages."""
    allowed = set(origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        permitted = origin is not None and ("*" in allowed or origin in allowed)
        if permitted and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)  # a preflight, for any path
        else:
            response = await handler(request)
        if permitted:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers.update(CORS_HEADERS)
        return response

    return cors


@web.middleware
async def operator_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (
        not request.path.startswith(API_PREFIX)
        or request.path in PUBLIC_API
        or heads.VIEWER_PATHS.fullmatch(request.path)
    ):
        return await handler(request)
    if not request.app[recordings.LINKS].allows(request):  # a recording's signed file link needs no token
        request.app[AUTHORITY].require_operator(request)
    return await handler(request)


def connection_limits(settings: ServiceSettings) -> dict[str, object]:
    """What GuardedRequestHandler holds each client's connections to (the app's `handler_args`)."""
    return {
        "max_client_connections": settings.max_client_connections,
        "header_timeout": settings.header_timeout,
        "trusted_proxies": settings.trusted_networks,
    }


def security_headers(frame_ancestors: tuple[str, ...]) -> dict[str, str]:
    """The headers of every answer, page and API alike: `Server: vgpustream` (without aiohttp's default of
    Python's and aiohttp's versions), a Content-Security-Policy that allows only our own files (no inline
    script), no framing but by `frame_ancestors` (--frame-ancestors), no MIME sniffing and no Referer."""
    ancestors = " ".join(frame_ancestors) or "'none'"
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        f"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    )
    return {
        "Server": SERVER,
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def create_app(settings: Settings) -> web.Application:
    """The vgpustream web application: session 'default' on settings' source, and the remembered sessions."""
    app = web.Application(
        middlewares=[
            client_addresses(settings.trusted_networks),
            cors_middleware(settings.cors_origin),
            json_errors,
            operator_auth,
        ],
        client_max_size=max(settings.max_sdp_bytes, settings.max_json_bytes),
        handler_args=connection_limits(settings),
    )
    app[SETTINGS] = settings
    headers = security_headers(settings.frame_ancestors)

    async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(headers)

    app.on_response_prepare.append(add_security_headers)
    app[LIMITER] = RateLimiter(settings.rate_limit, settings.rate_burst)
    compat.install()
    compat.serve_connections_with(GuardedRequestHandler)
    if settings.host_address:
        compat.advertise_host_addresses(settings.host_address)
    ice_servers = app[ICE_SERVERS] = IceServers(settings)  # reads the TURN secret now: fail at start
    gateways = None  # read now: fail at start
    if settings.gateway_key_file is not None and not settings.insecure_no_auth:
        gateways = TokenVerifier(settings.gateway_key_file, settings.node, settings.max_token_ttl)
    secret_file = settings.audit_webhook_secret_file
    webhook_secret = None if secret_file is None else read_webhook_secret(secret_file)  # read now: fail at start

    async def background_threads(app: web.Application) -> AsyncIterator[None]:
        # the event loop's default executor (thumbnail encodes, name lookups, capture threads' shutdown):
        # bounded and named, so a burst of requests cannot grow the process by more than a few threads
        pool = ThreadPoolExecutor(max_workers=BACKGROUND_THREADS, thread_name_prefix="vgpustream-background")
        loop = asyncio.get_running_loop()
        loop.set_default_executor(pool)
        # all of them now, not lazily: the process's thread count is then the same from start-up on (a
        # pool thread first started by some later request would look like one that request leaked)
        everyone = threading.Barrier(BACKGROUND_THREADS, timeout=10)
        await asyncio.gather(*(loop.run_in_executor(pool, everyone.wait) for _ in range(BACKGROUND_THREADS)))
        yield  # the loop shuts its default executor down when it closes

    async def ice_server_watch(app: web.Application) -> AsyncIterator[None]:
        watch = app[ICE_WATCH] = IceServerWatch(ice_servers, settings.ice_gather_timeout)
        watch.start()
        yield
        await watch.stop()

    async def state_lifetime(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE] = Store(settings.database)
        audit = app[AUDIT] = AuditLog(
            settings.audit_database,
            settings.audit_webhook,
            secret=webhook_secret,
            retention=settings.audit_retention_days * 86_400,
        )
        audit.start()
        app[AUTHORITY] = Authority(
            store, operator_secrets(settings), enabled=not settings.insecure_no_auth, gateways=gateways
        )
        registry = app[REGISTRY] = SessionRegistry(settings, store, audit)
        app[operations.METRICS] = metrics_registry(registry, app[ICE_WATCH])
        await registry.resume()
        yield
        await registry.close()
        await audit.close()
        store.close()

    app.cleanup_ctx.append(background_threads)
    app.cleanup_ctx.append(ice_server_watch)
    app.cleanup_ctx.append(state_lifetime)
    app.cleanup_ctx.append(tokens.token_retention)
    recordings.add_library(app)
    route.register(app, ROUTES)
    openapi.add_routes(app)
    websocket.add_routes(app)
    console.add_routes(app)
    return app


def operator_secrets(settings: Settings) -> list[str]:
    return [] if settings.insecure_no_auth else operator_tokens(settings)[0]
