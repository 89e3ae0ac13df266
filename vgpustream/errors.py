"""Errors a user, a client or a guest can cause. Each carries a stable code and a safe message.

The HTTP layer maps them to responses in one place (vgpustream/api/errors.py); messages never
contain unbounded text that an outsider sent (see `bounded`).
"""

from __future__ import annotations


def bounded(text: str, limit: int = 80) -> str:
    """`text` made safe to echo in a message or a log line: printable, and at most `limit` characters."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return repr(clean + ("…" if len(text) > limit else ""))


class VgpuStreamError(Exception):
    """Base of the errors that are the caller's (or the guest's) doing, not a bug."""

    code = "bad_request"
    status = 400
    retry_after: int | None = None
    """Seconds after which a retry may succeed, for errors that are temporary."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidSourceUrl(VgpuStreamError):
    code = "invalid_source"


class UnsupportedFormat(VgpuStreamError):
    """A plane whose DRM fourcc or modifier vgpustream cannot convert."""

    code = "unsupported_format"
    status = 422


class InvalidPlane(VgpuStreamError):
    """Plane metadata from the guest that fails validation (sizes, strides)."""

    code = "invalid_plane"
    status = 422


class UnsupportedOperation(VgpuStreamError):
    code = "unsupported"
    status = 409


class NotFound(VgpuStreamError):
    code = "not_found"
    status = 404


class Conflict(VgpuStreamError):
    code = "conflict"
    status = 409


class Full(VgpuStreamError):
    """No room for another viewer or session; the client may retry later."""

    code = "full"
    status = 503

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceUnavailable(VgpuStreamError):
    """The device or connection behind a source cannot be opened or has gone."""

    code = "source_unavailable"
    status = 503
