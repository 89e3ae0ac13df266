"""Recordings of a session under /api/v1/sessions/{id}/recordings: start, list, get, stop, delete, download."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import AsyncIterator

import msgspec
from aiohttp import web

from vgpustream.api.answers import ERRORS, NO_CONTENT, error_answer, json_answer
from vgpustream.api.requests import read_json
from vgpustream.api.route import INT, OPERATOR, TEXT, Route, json_body
from vgpustream.api.schemas import Recording, RecordingCreate, RecordingList, given, json_response
from vgpustream.api.state import AUDIT, REGISTRY, SETTINGS
from vgpustream.control.rfc3339 import timestamp
from vgpustream.errors import Forbidden, NotFound, VgpuStreamError
from vgpustream.recording.library import RecordingLibrary
from vgpustream.recording.recorder import RecordingInfo, RecordingState

LIBRARY = web.AppKey("recordings", RecordingLibrary)
LINK_SECONDS = 3600
"""How long a signed file link works."""
SIGNATURE = re.compile(r"[0-9a-f]{64}")


class FileLinks:
    """File links that work without a token, for an hour: what a browser's <video> needs, since it cannot
    send an Authorization header, and still seeks with Range requests on the same address.

    A link is the file's path with `?expires=<epoch seconds>&signature=<hex HMAC-SHA256 of the path and
    the expiry>`; only an operator (who may list recordings) gets one.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def link(self, path: str, now: float) -> str:
        expires = int(now) + LINK_SECONDS
        return f"{path}?expires={expires}&signature={self._sign(path, expires)}"

    def allows(self, request: web.Request) -> bool:
        """Whether `request` reads a file through a signed link; False without one (neither expires nor
        signature), Forbidden with a wrong, incomplete or expired one."""
        if "signature" not in request.query and "expires" not in request.query:
            return False
        expires, signature = request.query.get("expires", ""), request.query.get("signature", "")
        well_formed = expires.isdigit() and len(expires) <= 12 and SIGNATURE.fullmatch(signature)
        if request.method not in ("GET", "HEAD") or not well_formed:
            raise Forbidden("a signed link is a GET of a recording's file with expires and signature")
        if not hmac.compare_digest(self._sign(request.path, int(expires)), signature):
            raise Forbidden("the link's signature is not valid (the server may have restarted): get a new one")
        if int(expires) < time.time():
            raise Forbidden("the link has expired: get a new one from the recording")
        return True

    def _sign(self, path: str, expires: int) -> str:
        return hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


LINKS = web.AppKey("recording-links", FileLinks)


def recording(info: RecordingInfo, links: FileLinks) -> Recording:
    base = f"/api/v1/sessions/{info.session_id}/recordings/{info.id}"
    fields = {
        **info.to_json(),
        "started_at": timestamp(info.started_at),
        "stopped_at": timestamp(info.stopped_at) if info.stopped_at is not None else None,
        "href": base,
        "file": f"{base}/file",
        "file_link": links.link(f"{base}/file", time.time()),
    }
    return msgspec.convert(fields, Recording)


async def start_recording(request: web.Request) -> web.Response:
    """Record the session from its next keyframe, up to `max_seconds` and `max_bytes`."""
    settings = request.app[SETTINGS]
    session = request.app[REGISTRY].get(request.match_info["id"])
    body = await read_json(request, settings.max_json_bytes, RecordingCreate)
    most_bytes = settings.recording_retention_bytes
    max_bytes = given(body.max_bytes, most_bytes)
    if max_bytes > most_bytes:
        raise VgpuStreamError(f"'max_bytes' must be at most {most_bytes} (--recording-retention-bytes)")
    info = request.app[LIBRARY].start(session, label=body.label, max_seconds=body.max_seconds, max_bytes=max_bytes)
    started = recording(info, request.app[LINKS])
    return json_response(started, status=201, headers={"Location": started.href})


def _library_of(request: web.Request) -> tuple[RecordingLibrary, str]:
    """The library and the session id of a request, which must name a session or one that had recordings."""
    library, session_id = request.app[LIBRARY], request.match_info["id"]
    if not library.known(session_id):
        request.app[REGISTRY].get(session_id)  # NotFound for a session that neither runs nor had recordings
    return library, session_id


async def list_recordings(request: web.Request) -> web.Response:
    library, session_id = _library_of(request)
    links = request.app[LINKS]
    return json_response(RecordingList(recordings=[recording(info, links) for info in library.recordings(session_id)]))


async def get_recording(request: web.Request) -> web.Response:
    library, session_id = _library_of(request)
    return json_response(recording(library.info(session_id, request.match_info["recording"]), request.app[LINKS]))


async def stop_recording(request: web.Request) -> web.Response:
    """Stop a running recording (200 with its final state), or delete a finished one's file (204)."""
    library, session_id = _library_of(request)
    recording_id = request.match_info["recording"]
    if library.info(session_id, recording_id).state in (RecordingState.STARTING, RecordingState.RECORDING):
        return json_response(recording(await library.stop(session_id, recording_id), request.app[LINKS]))
    library.delete(session_id, recording_id)
    return web.Response(status=204)


async def download_recording(request: web.Request) -> web.FileResponse:
    """The MP4 file, with Range requests (a browser's <video> seeks with them); growing while it records."""
    library, session_id = _library_of(request)
    path = library.path(session_id, request.match_info["recording"])
    if not path.is_file():
        raise NotFound("the recording has no file (yet)")
    return web.FileResponse(path, headers={"Content-Type": "video/mp4", "Cache-Control": "no-cache"})


async def lifetime(app: web.Application) -> AsyncIterator[None]:
    """The library for the app's lifetime: loaded and kept within its retention at start-up, then hourly."""
    settings, audit = app[SETTINGS], app[AUDIT]

    def audited(info: RecordingInfo) -> None:
        if info.state is RecordingState.STARTING:
            audit.record("recording.started", info.session_id, recording=info.id, label=info.label)
        else:
            audit.record(
                "recording.stopped",
                info.session_id,
                recording=info.id,
                state=info.state.value,
                reason=info.reason,
                frames=info.frames,
                bytes=info.bytes,
            )

    library = app[LIBRARY] = RecordingLibrary(
        settings.recordings,
        settings.max_recordings,
        settings.recording_retention_days * 86_400,
        settings.recording_retention_bytes,
        audited,
    )
    library.load()
    library.enforce_retention(time.time())
    task = asyncio.create_task(library.keep_retention(), name="recording-retention")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def add_library(app: web.Application) -> None:
    """The recordings' library for the app's lifetime, and the key of its file links."""
    app[LINKS] = FileLinks()  # a key of its own at each start: a restart ends every link handed out
    app.cleanup_ctx.append(lifetime)


ROUTES = [
    Route(
        "GET",
        "/api/v1/sessions/{id}/recordings",
        list_recordings,
        "listRecordings",
        "Recordings of a session, newest first (also of a session deleted since)",
        tag="recordings",
        answers={"200": json_answer(RecordingList, "Recordings"), **ERRORS},
    ),
    Route(
        "POST",
        "/api/v1/sessions/{id}/recordings",
        start_recording,
        "startRecording",
        "Record the session's stream, without encoding again, from its next keyframe",
        tag="recordings",
        answers={
            "201": json_answer(Recording, "Started; Location names it"),
            **ERRORS,
            "409": error_answer("The session runs its maximum of recordings"),
            "503": error_answer("The recordings directory cannot be written"),
        },
        body=json_body(RecordingCreate),
    ),
    Route(
        "GET",
        "/api/v1/sessions/{id}/recordings/{recording}",
        get_recording,
        "getRecording",
        "One recording",
        tag="recordings",
        answers={"200": json_answer(Recording, "It"), **ERRORS},
    ),
    Route(
        "DELETE",
        "/api/v1/sessions/{id}/recordings/{recording}",
        stop_recording,
        "stopRecording",
        "Stop a running recording (200, once its file is closed), or delete a finished one (204)",
        tag="recordings",
        answers={"200": json_answer(Recording, "Stopped"), **NO_CONTENT, **ERRORS},
    ),
    Route(
        "GET",
        "/api/v1/sessions/{id}/recordings/{recording}/file",
        download_recording,
        "downloadRecording",
        "The recording as fragmented MP4 (H.264, and Opus where the session can have sound), growing while it "
        "records; Range requests welcome",
        tag="recordings",
        answers={
            "200": {"description": "The file", "content": {"video/mp4": {"schema": TEXT}}},
            "206": {"description": "The range asked for", "content": {"video/mp4": {"schema": TEXT}}},
            "416": {"description": "A range outside the file"},
            **ERRORS,
        },
        parameters=(
            {
                "name": "expires",
                "in": "query",
                "required": False,
                "schema": INT,
                "description": "Until when (epoch seconds) a signed link works; with `signature`",
            },
        ),
        security=[*OPERATOR, {"signedLink": []}],
    ),
]
