"""The gateway's application factory, which the CLI and the tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from vgpustream import compat
from vgpustream.api import console
from vgpustream.api.app import API_PREFIX, connection_limits, security_headers
from vgpustream.api.connections import GuardedRequestHandler
from vgpustream.api.errors import json_errors
from vgpustream.api.schemas import Health, Readiness, json_response
from vgpustream.control.auth import OperatorTokens, token_lines
from vgpustream.control.signedtokens import TokenSigner
from vgpustream.gateway import api, openapi, signalling
from vgpustream.gateway.api import GATEWAY_SETTINGS, HOSTS, SIGNER
from vgpustream.gateway.dns import DnsNodes
from vgpustream.gateway.hosts import Hosts, HostTokens
from vgpustream.gateway.nodes import Discovery, StaticNodes
from vgpustream.gateway.settings import GatewaySettings
from vgpustream.gateway.signalling import LIMITER, OPERATORS
from vgpustream.proxies import client_addresses
from vgpustream.ratelimit import RateLimiter


@web.middleware
async def operator_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The control plane (/api/v1) needs the gateway's operator token; viewers' signalling has its own, and a
    recording's signed file link is its own credential (its host checks it); the OpenAPI document is public, as
    a host's."""
    signed = request.match_info.route.name == api.RECORDING_FILE and api.signed_link(request)
    if request.path.startswith(API_PREFIX) and not signed and request.path != openapi.PATH:
        request.app[OPERATORS].require(request)
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    return json_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Ready once it serves: a gateway has nothing of its own that could be not ready."""
    return json_response(Readiness(status="ready"))


def operators(settings: GatewaySettings) -> OperatorTokens:
    """The gateway's own operator tokens: --operator-token, and those of --operator-token-file."""
    secrets = [settings.operator_token] if settings.operator_token else []
    if settings.operator_token_file:
        secrets += token_lines(settings.operator_token_file, "operator token")
    return OperatorTokens(secrets)


def discovery(settings: GatewaySettings) -> Discovery:
    """The hosts of --dns-name, else those of --node."""
    if settings.dns_name:
        server = settings.dns_server_address
        return DnsNodes(settings.dns_name, settings.dns_port, settings.dns_interval, server, settings.host_timeout)
    return StaticNodes(settings.static_nodes)


def create_gateway(settings: GatewaySettings) -> web.Application:
    """The gateway in front of the hosts of its settings."""
    app = web.Application(
        middlewares=[client_addresses(settings.trusted_networks), json_errors, operator_auth],
        client_max_size=max(settings.max_json_bytes, settings.max_sdp_bytes),
        handler_args=connection_limits(settings),
    )
    compat.serve_connections_with(GuardedRequestHandler)
    app[GATEWAY_SETTINGS] = settings
    app[OPERATORS] = operators(settings)  # read the files now: fail at start
    app[LIMITER] = RateLimiter(settings.rate_limit, settings.rate_burst)
    if settings.signing_key_file is not None:
        app[SIGNER] = TokenSigner(settings.signing_key_file)
    hosts = app[HOSTS] = Hosts(
        discovery(settings),
        HostTokens(settings.host_token, settings.host_token_file),
        settings.host_timeout,
        settings.request_timeout,
        settings.refresh_interval,
    )
    headers = security_headers(settings.frame_ancestors)

    async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(headers)

    async def hosts_lifetime(app: web.Application) -> AsyncIterator[None]:
        await hosts.start()
        yield
        await hosts.close()

    app.on_response_prepare.append(add_security_headers)
    app.cleanup_ctx.append(hosts_lifetime)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    api.add_routes(app)
    openapi.add_routes(app)
    signalling.add_routes(app)
    console.add_routes(app)
    return app
