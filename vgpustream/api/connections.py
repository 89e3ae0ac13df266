"""The server's HTTP connections, before any request reaches the application.

aiohttp's RequestHandler reads and parses each connection. Ours (installed by vgpustream.compat) adds what
an outsider could otherwise use against every other client:

- a bound on the connections one client address holds open (more are answered 429 and closed), but for the
  trusted proxies' (--trusted-proxy: a gateway holds one for each of its WebSocket viewers, whom it bounds);
- a deadline for a request's headers, from the connection's start or the request's first byte: a client
  that trickles them is closed (aiohttp waits for them forever);
- requests the HTTP parser refuses (a NUL in a header, a header too long, ...) are answered with our JSON
  error and logged in one line that names the client and the kind of error, never the request's bytes,
  which may hold a token (aiohttp logs a traceback holding them).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from vgpustream.api.errors import error_response
from vgpustream.proxies import Networks, is_trusted

log = logging.getLogger(__name__)

SERVER = "vgpustream"
"""The Server header of every answer."""
TOO_MANY_CONNECTIONS = (
    f"HTTP/1.1 429 Too Many Requests\r\nServer: {SERVER}\r\nRetry-After: 5\r\n"
    "Content-Length: 0\r\nConnection: close\r\n\r\n"
).encode()
"""The answer to a connection over its address's bound, written before any request is read."""

_open: weakref.WeakKeyDictionary[Server, Counter[str]] = weakref.WeakKeyDictionary()
"""Each server's open connections, by client address."""


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with a per-address connection bound, a header deadline, and parser errors
    answered and logged without the request's bytes. The limits and the trusted proxies come from the app's
    `handler_args`."""

    def __init__(
        self,
        manager: Server,
        *,
        max_client_connections: int | None = None,
        header_timeout: float | None = None,
        trusted_proxies: Networks = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._max_client_connections = max_client_connections
        self._trusted_proxies = trusted_proxies
        self._header_timeout = header_timeout
        self._client: str | None = None
        """The client address this connection is counted under, while it is open."""
        self._headers_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        counts = _open.setdefault(self._manager, Counter())
        bounded = self._max_client_connections is not None and not is_trusted(client, self._trusted_proxies)
        if bounded and counts[client] >= self._max_client_connections:
            assert isinstance(transport, asyncio.Transport)
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()  # never made: connection_lost finds nothing of it to undo
            return
        counts[client] += 1
        self._client = client
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None
        if self._client is not None:
            counts = _open[self._manager]
            counts[self._client] -= 1
            if counts[self._client] <= 0:
                del counts[self._client]
            self._client = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        requests = self._request_count
        super().data_received(data)
        if self._request_count > requests and self._headers_due is not None:
            self._headers_due.cancel()  # a whole request's headers came
            self._headers_due = None
        elif data and not self._request_in_progress and not self._messages:
            self._await_headers()  # the first bytes of a request

    def _await_headers(self) -> None:
        if self._header_timeout is not None and self._headers_due is None:
            self._headers_due = asyncio.get_running_loop().call_later(self._header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._headers_due = None
        if not self._request_in_progress and not self._messages:
            # debug: a trickle of hundreds of connections must not cost a log line each
            log.debug("closed a connection from %s: no request headers within %g s", self._client, self._header_timeout)
            self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        log.info("refused a malformed request from %s: %s", request.remote, type(exc).__name__)
        response = error_response(status, "bad_request", "malformed HTTP request", {"Server": SERVER})
        response.force_close()
        return response
