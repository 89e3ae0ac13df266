"""Recordings of a session under /api/v1/sessions/{id}/recordings: start, list, get, stop, delete, download."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec
from aiohttp import web

from vgpustream.api.requests import read_json
from vgpustream.api.schemas import Recording, RecordingCreate, RecordingList, given, json_response
from vgpustream.api.state import AUDIT, REGISTRY, SETTINGS
from vgpustream.api.tokens import timestamp
from vgpustream.errors import NotFound, VgpuStreamError
from vgpustream.recording.library import RecordingLibrary
from vgpustream.recording.recorder import RecordingInfo, RecordingState

LIBRARY = web.AppKey("recordings", RecordingLibrary)


def recording(info: RecordingInfo) -> Recording:
    base = f"/api/v1/sessions/{info.session_id}/recordings/{info.id}"
    fields = {
        **info.to_json(),
        "started_at": timestamp(info.started_at),
        "stopped_at": timestamp(info.stopped_at) if info.stopped_at is not None else None,
        "href": base,
        "file": f"{base}/file",
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
    started = recording(info)
    return json_response(started, status=201, headers={"Location": started.href})


def _library_of(request: web.Request) -> tuple[RecordingLibrary, str]:
    """The library and the session id of a request, which must name a session or one that had recordings."""
    library, session_id = request.app[LIBRARY], request.match_info["id"]
    if not library.known(session_id):
        request.app[REGISTRY].get(session_id)  # NotFound for a session that neither runs nor had recordings
    return library, session_id


async def list_recordings(request: web.Request) -> web.Response:
    library, session_id = _library_of(request)
    return json_response(RecordingList(recordings=[recording(info) for info in library.recordings(session_id)]))


async def get_recording(request: web.Request) -> web.Response:
    library, session_id = _library_of(request)
    return json_response(recording(library.info(session_id, request.match_info["recording"])))


async def stop_recording(request: web.Request) -> web.Response:
    """Stop a running recording (200 with its final state), or delete a finished one's file (204)."""
    library, session_id = _library_of(request)
    recording_id = request.match_info["recording"]
    if library.info(session_id, recording_id).state in (RecordingState.STARTING, RecordingState.RECORDING):
        return json_response(recording(await library.stop(session_id, recording_id)))
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


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(lifetime)
    app.router.add_post("/api/v1/sessions/{id}/recordings", start_recording)
    app.router.add_get("/api/v1/sessions/{id}/recordings", list_recordings)
    app.router.add_get("/api/v1/sessions/{id}/recordings/{recording}", get_recording)
    app.router.add_delete("/api/v1/sessions/{id}/recordings/{recording}", stop_recording)
    app.router.add_get("/api/v1/sessions/{id}/recordings/{recording}/file", download_recording)
