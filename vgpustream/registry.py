"""The sessions a server runs, by id, kept in step with their definitions in the store."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

from vgpustream.control.audit import AuditLog
from vgpustream.control.store import SessionSpec, Store
from vgpustream.errors import Conflict, Full, NotFound, VgpuStreamError, bounded
from vgpustream.session import Session
from vgpustream.settings import Settings

SESSION_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
DEFAULT_SESSION = "default"


class SessionRegistry:
    def __init__(self, settings: Settings, store: Store, audit: AuditLog | None = None) -> None:
        self.settings = settings
        self.store = store
        self.audit = audit
        self._sessions: dict[str, Session] = {}
        self._lock = asyncio.Lock()

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise NotFound(f"no session {bounded(session_id, 64)}") from None

    async def resume(self) -> None:
        """Start the default session (from the settings) and every session the store remembers.

        Remembered sessions start even when their source cannot be opened yet (the VM may not run):
        they show state 'lost' and keep trying.
        """
        default = SessionSpec(
            DEFAULT_SESSION,
            self.settings.default_source,
            encoder=self.settings.encoder,
            max_viewers=self.settings.max_viewers,
        )
        self._start(self._session(default))
        for spec in self.store.sessions():
            if spec.id != DEFAULT_SESSION:
                self._start(self._session(spec))

    async def create(self, spec: SessionSpec) -> Session:
        """Open the source (its error is the caller's answer), start capturing, remember the session."""
        if not SESSION_ID.fullmatch(spec.id):
            raise VgpuStreamError("session id must match [a-z0-9][a-z0-9_-]{0,62}")
        async with self._lock:
            if spec.id in self._sessions:
                raise Conflict(f"session {spec.id!r} exists")
            if len(self._sessions) >= self.settings.max_sessions:
                raise Full(f"the server runs its maximum of {self.settings.max_sessions} sessions")
            session = self._session(spec)
            await session.open_source()
            try:
                self.store.save_session(spec)
            except VgpuStreamError:  # not stored (disk full): not created either
                await session.stop()
                raise
            self._start(session)
            return session

    async def update(self, session: Session, spec: SessionSpec) -> None:
        """Store the new definition first: a change that cannot be stored is not made."""
        if spec.id != DEFAULT_SESSION:
            self.store.save_session(spec)
        await session.update(spec)

    async def delete(self, session_id: str) -> None:
        """Forget the session in the store first: one the store still holds keeps running."""
        async with self._lock:
            session = self.get(session_id)
            self.store.delete_session(session_id)
            del self._sessions[session_id]
        await session.stop()

    async def close(self) -> None:
        async with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(session.stop() for session in sessions))

    def _session(self, spec: SessionSpec) -> Session:
        session = Session(spec, self.settings.viewer_rules, self.settings.idle_sample_rate, self.settings.sound_bitrate)
        if self.audit is not None:
            session.audience.audit = self.audit.viewers(spec.id)
        return session

    def _start(self, session: Session) -> None:
        self._sessions[session.id] = session
        session.start()
