"""Errors a user, a client or a guest can cause. Each carries a stable code and a safe message.

They say what went wrong, not how to answer it: the HTTP layer maps codes to statuses in one table
(vgpustream/api/errors.py). Messages never contain unbounded text that an outsider sent (see `bounded`).
"""

from __future__ import annotations


def printable(text: str, limit: int = 80) -> str:
    """`text` made safe to show a person: printable characters only, and at most `limit` of them."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit]) + ("…" if len(text) > limit else "")


def bounded(text: str, limit: int = 80) -> str:
    """`text` made safe to echo in a message or a log line: printable, at most `limit` characters, quoted."""
    return repr(printable(text, limit))


class VgpuStreamError(Exception):
    """Base of the errors that are the caller's (or the guest's) doing, not a bug."""

    code = "bad_request"
    retry_after: int | None = None
    """Seconds after which a retry may succeed, for errors that are temporary."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after


class InvalidSourceUrl(VgpuStreamError):
    code = "invalid_source"


class InvalidOffer(VgpuStreamError):
    """An SDP offer or trickled candidate vgpustream cannot answer."""

    code = "invalid_offer"


class UnsupportedFormat(VgpuStreamError):
    """A plane whose DRM fourcc or modifier vgpustream cannot convert."""

    code = "unsupported_format"


class InvalidPlane(VgpuStreamError):
    """Plane metadata from the guest that fails validation (sizes, strides)."""

    code = "invalid_plane"


class UnsupportedOperation(VgpuStreamError):
    code = "unsupported"


class IceRestartUnsupported(VgpuStreamError):
    code = "ice_restart_unsupported"


class NotFound(VgpuStreamError):
    code = "not_found"


class Conflict(VgpuStreamError):
    code = "conflict"


class PreconditionFailed(VgpuStreamError):
    """A conditional request (If-Match) whose condition does not hold."""

    code = "precondition_failed"


class Unauthorized(VgpuStreamError):
    """No credentials where some are needed."""

    code = "unauthorized"


class Forbidden(VgpuStreamError):
    """Credentials that do not allow this request: unknown, expired, revoked, used, or for elsewhere."""

    code = "forbidden"

    def __init__(self, message: str, token_error: str = "invalid_token") -> None:
        super().__init__(message)
        self.token_error = token_error
        """Its Bearer token error (RFC 6750): invalid_token, insufficient_scope or invalid_request."""


class MisdirectedRequest(VgpuStreamError):
    """A request whose Host is none of the server's own names, where a link would be built from it."""

    code = "misdirected_request"


class UnsupportedMediaType(VgpuStreamError):
    code = "unsupported_media_type"


class PayloadTooLarge(VgpuStreamError):
    code = "payload_too_large"


class RateLimited(VgpuStreamError):
    """A client over its request budget; it may retry after `retry_after` seconds."""

    code = "rate_limited"


class RecordingLimit(VgpuStreamError):
    """A session that already runs its maximum of recordings."""

    code = "recording_limit"


class Full(VgpuStreamError):
    """No room for another viewer or session; the client may retry later."""

    code = "full"
    retry_after = 5


class SourceUnavailable(VgpuStreamError):
    """The device or connection behind a source cannot be opened or has gone."""

    code = "source_unavailable"


class StorageFull(VgpuStreamError):
    """The state directory's disk is full: a change could not be stored, and was not made."""

    code = "storage_full"


class StorageUnavailable(VgpuStreamError):
    """The state database cannot be written now (read-only, I/O error, locked); nothing was changed."""

    code = "storage_unavailable"
    retry_after = 30


class BadGateway(VgpuStreamError):
    """A host behind the gateway that answered with something that is not a vgpustream answer."""

    code = "bad_gateway"


class Unavailable(VgpuStreamError):
    """A transient lack of resources (sockets, ports) for this request; the client may retry later."""

    code = "unavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after
