"""Every error response is JSON {"error": {"code", "message"}}; this is the one place that maps them."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from vgpustream.api.schemas import Error, ErrorDetail, json_response
from vgpustream.errors import Forbidden, Unauthorized, VgpuStreamError

log = logging.getLogger(__name__)

STATUS = {
    "bad_request": 400,
    "invalid_source": 400,
    "invalid_offer": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "unsupported": 409,
    "recording_limit": 409,
    "precondition_failed": 412,
    "payload_too_large": 413,
    "misdirected_request": 421,
    "unsupported_media_type": 415,
    "unsupported_format": 422,
    "invalid_plane": 422,
    "ice_restart_unsupported": 422,
    "rate_limited": 429,
    "bad_gateway": 502,
    "full": 503,
    "source_unavailable": 503,
    "unavailable": 503,
    "storage_unavailable": 503,
    "storage_full": 507,
}
"""The HTTP status of each error code (vgpustream.errors); a code missing here is a bug, answered 500."""


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(Error(ErrorDetail(code=code, message=message)), status=status, headers=headers)


def bearer_challenge(exc: VgpuStreamError) -> str | None:
    """The WWW-Authenticate value for an auth error (RFC 9110 requires one on 401; RFC 6750's error on 403)."""
    if isinstance(exc, Unauthorized):
        return "Bearer"  # no credentials at all: no error code (RFC 6750 section 3.1)
    if isinstance(exc, Forbidden):
        return f'Bearer error="{exc.token_error}"'
    return None


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except VgpuStreamError as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
        challenge = bearer_challenge(exc)
        if challenge is not None:
            headers["WWW-Authenticate"] = challenge
        return error_response(STATUS[exc.code], exc.code, exc.message, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return error_response(exc.status, code, exc.reason, {k: v for k, v in exc.headers.items() if k == "Allow"})
    except Exception:
        log.exception("internal error handling %s %s", request.method, request.rel_url.path[:200])
        return error_response(500, "internal", "internal error")
