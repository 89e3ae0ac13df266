"""The sessions a server runs, by id."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

from vgpustream.encoder import EncoderSettings
from vgpustream.errors import Conflict, Full, NotFound, VgpuStreamError, bounded
from vgpustream.session import Session
from vgpustream.settings import Settings
from vgpustream.sources import create_source

SESSION_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class SessionRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sessions: dict[str, Session] = {}
        self._lock = asyncio.Lock()

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise NotFound(f"no session {bounded(session_id, 64)}") from None

    async def create(self, session_id: str, source_url: str, encoder: EncoderSettings | None = None) -> Session:
        """Open the source and start capturing; the session is listed only once it runs."""
        if not SESSION_ID.fullmatch(session_id):
            raise VgpuStreamError("session id must match [a-z0-9][a-z0-9_-]{0,62}")
        async with self._lock:
            if session_id in self._sessions:
                raise Conflict(f"session {session_id!r} exists")
            if len(self._sessions) >= self.settings.max_sessions:
                raise Full(f"the server runs its maximum of {self.settings.max_sessions} sessions")
            session = Session(
                session_id,
                source_url,
                create_source(source_url),
                encoder or self.settings.encoder,
                self.settings.max_viewers,
            )
            await session.start()
            self._sessions[session_id] = session
            return session

    async def delete(self, session_id: str) -> None:
        async with self._lock:
            session = self.get(session_id)
            del self._sessions[session_id]
        await session.stop()

    async def close(self) -> None:
        async with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(session.stop() for session in sessions))
