"""Every recording of a server: files under the state directory, their index, limits and retention.

`<state dir>/recordings/<session id>/<recording id>.mp4`, with `<recording id>.json` beside it (its
RecordingInfo, written when it starts and when it ends). A recording that was running when the server
died is `interrupted` at the next start-up; its file plays up to its last fragment.
Retention (finished recordings older than `max_age`, then the oldest while all of them take more than
`max_total_bytes`) is applied at start-up and every RETENTION_INTERVAL seconds.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from vgpustream.errors import NotFound, RecordingLimit, Unavailable, VgpuStreamError
from vgpustream.media.renditions import TOP, Rendition
from vgpustream.recording.recorder import FINISHED, Recorder, Recorders, RecordingInfo, RecordingState
from vgpustream.settings import RETENTION_INTERVAL

log = logging.getLogger(__name__)

RECORDING_ID = re.compile(r"rec-[0-9a-f]{16}")
SESSION_DIR = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class KeyframeSource(Protocol):
    def request_keyframe(self, rendition: Rendition | None = None) -> None: ...


class RecordedSession(Protocol):
    """What the library needs of a session it records: a session has it, and the library knows no session."""

    @property
    def id(self) -> str: ...
    @property
    def capture(self) -> KeyframeSource: ...
    @property
    def sound(self) -> object | None: ...
    @property
    def recorders(self) -> Recorders: ...


class RecordingLibrary:
    """Starts, finds, stops and deletes recordings; keeps the directory within its retention."""

    def __init__(
        self,
        root: Path,
        max_per_session: int,
        max_age: float,
        max_total_bytes: int,
        on_change: Callable[[RecordingInfo], None] | None = None,
    ) -> None:
        self.root = root
        self.max_per_session = max_per_session
        self.max_age = max_age
        self.max_total_bytes = max_total_bytes
        self._on_change = on_change
        self._finished: dict[tuple[str, str], RecordingInfo] = {}
        self._running: dict[tuple[str, str], Recorder] = {}

    def load(self) -> None:
        """Index the recordings on disk; those that were running when the server died end as interrupted."""
        for sidecar in self.root.glob("*/rec-*.json"):
            try:
                info = RecordingInfo.from_json(json.loads(sidecar.read_text()))
            except (OSError, ValueError, TypeError, KeyError):
                log.warning("recordings: unreadable index file %s", sidecar.name[:80])
                continue
            media = sidecar.with_suffix(".mp4")
            if info.state not in FINISHED:
                info.state, info.reason = RecordingState.INTERRUPTED, "server_stopped"
                info.bytes = media.stat().st_size if media.exists() else 0
                write_info(sidecar, info)
                self._changed(info)  # its end was never told
            self._finished[(info.session_id, info.id)] = info

    def start(self, session: RecordedSession, label: str, max_seconds: int, max_bytes: int) -> RecordingInfo:
        """Start recording `session` on its next keyframe (RecordingLimit when it has its maximum)."""
        if len(session.recorders) >= self.max_per_session:
            raise RecordingLimit(f"session has its maximum of {self.max_per_session} recordings running")
        info = RecordingInfo(
            id=f"rec-{secrets.token_hex(8)}",
            session_id=session.id,
            label=label,
            max_seconds=max_seconds,
            max_bytes=max_bytes,
        )
        try:
            self.root.mkdir(exist_ok=True, mode=0o700)
            (self.root / session.id).mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            raise Unavailable(f"cannot create the session's recordings directory: {exc.strerror}") from None
        sidecar = self._sidecar(info)
        recorder = Recorder(
            info,
            sidecar.with_suffix(".mp4"),
            functools.partial(session.capture.request_keyframe, TOP),
            lambda i: write_info(sidecar, i),
            sound=session.sound is not None,
        )
        self._running[(session.id, info.id)] = recorder
        recorder.on_finished(self._finished_recording)
        session.recorders.add(recorder)
        self._changed(info)
        return info

    def recordings(self, session_id: str) -> list[RecordingInfo]:
        """A session's recordings, newest first."""
        found = [r.live for (sid, _), r in self._running.items() if sid == session_id]
        found += [info for (sid, _), info in self._finished.items() if sid == session_id]
        return sorted(found, key=lambda info: info.started_at, reverse=True)

    def known(self, session_id: str) -> bool:
        return any(sid == session_id for sid, _ in (*self._running, *self._finished))

    def info(self, session_id: str, recording_id: str) -> RecordingInfo:
        key = self._key(session_id, recording_id)
        if key in self._running:
            return self._running[key].live
        try:
            return self._finished[key]
        except KeyError:
            raise NotFound("no such recording") from None

    def path(self, session_id: str, recording_id: str) -> Path:
        """The file of a recording (growing while it runs)."""
        info = self.info(session_id, recording_id)
        return self.root / info.session_id / f"{info.id}.mp4"

    async def stop(self, session_id: str, recording_id: str) -> RecordingInfo:
        """Stop a running recording and wait until its file is closed."""
        recorder = self._running.get(self._key(session_id, recording_id))
        if recorder is None:
            raise NotFound("no such running recording")
        recorder.stop()
        await recorder.wait()
        return recorder.info

    def delete(self, session_id: str, recording_id: str) -> None:
        """Remove a finished recording's file and index entry."""
        key = self._key(session_id, recording_id)
        if key in self._running:
            raise VgpuStreamError("stop the recording before deleting it")
        info = self._finished.pop(key, None)
        if info is None:
            raise NotFound("no such recording")
        self._remove(info)

    def enforce_retention(self, now: float) -> int:
        """Delete finished recordings past `max_age`, then the oldest while all take too much room."""
        removed = 0
        finished = sorted(self._finished.values(), key=lambda info: info.started_at)
        total = sum(info.bytes for info in finished) + sum(r.live.bytes for r in self._running.values())
        for info in finished:
            if now - info.started_at <= self.max_age and total <= self.max_total_bytes:
                continue
            self._finished.pop((info.session_id, info.id), None)
            self._remove(info)
            total -= info.bytes
            removed += 1
        return removed

    async def keep_retention(self) -> None:
        """Apply retention every RETENTION_INTERVAL seconds, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(RETENTION_INTERVAL)
            removed = await loop.run_in_executor(None, self.enforce_retention, time.time())
            if removed:
                log.info("recordings: retention removed %d", removed)

    def _finished_recording(self, recorder: Recorder) -> None:
        info = recorder.info
        key = (info.session_id, info.id)
        self._running.pop(key, None)
        self._finished[key] = replace(info)
        self._changed(info)

    def _changed(self, info: RecordingInfo) -> None:
        if self._on_change is not None:
            self._on_change(info)

    def _key(self, session_id: str, recording_id: str) -> tuple[str, str]:
        if not SESSION_DIR.fullmatch(session_id) or not RECORDING_ID.fullmatch(recording_id):
            raise NotFound("no such recording")
        return session_id, recording_id

    def _sidecar(self, info: RecordingInfo) -> Path:
        return self.root / info.session_id / f"{info.id}.json"

    def _remove(self, info: RecordingInfo) -> None:
        for path in (self._sidecar(info), self._sidecar(info).with_suffix(".mp4")):
            path.unlink(missing_ok=True)


def write_info(path: Path, info: RecordingInfo) -> None:
    """Replace the JSON beside a recording (atomically); a full disk leaves the old one."""
    partial = path.with_suffix(".json.partial")
    try:
        partial.write_text(json.dumps(info.to_json()))
        partial.replace(path)
    except OSError:
        partial.unlink(missing_ok=True)
