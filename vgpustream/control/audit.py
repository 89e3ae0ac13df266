"""The audit trail: who watched, typed, issued tokens and recorded, as events in SQLite and to a webhook.

Events are kept in their own SQLite database beside the state (`audit.sqlite3`) for the retention
period (`--audit-retention-days`, applied at start-up and hourly), listed by the API oldest first,
and, with `--audit-webhook URL`, POSTed there one by one as JSON, signed with HMAC-SHA256 where a
secret is given (`--audit-webhook-secret-file`). The webhook never holds anything up: events wait in
a bounded queue (the oldest are dropped and counted when it is full) and are retried with
exponential backoff while the receiver is down, in order.

What an event never holds: a token's secret (only its id) or clipboard content (only its size).
Outsider-controlled text (a user agent) is bounded and made printable.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from vgpustream.control.rfc3339 import timestamp
from vgpustream.control.store import DatabaseUnusable, TokenRecord
from vgpustream.errors import VgpuStreamError, bounded, printable
from vgpustream.settings import RETENTION_INTERVAL

log = logging.getLogger(__name__)

EVENT_TYPES = (
    "viewer.joined",
    "viewer.left",
    "input.started",
    "clipboard.to_guest",
    "clipboard.from_guest",
    "microphone.started",
    "microphone.stopped",
    "token.created",
    "token.revoked",
    "recording.started",
    "recording.stopped",
)
MAX_USER_AGENT = 200
WEBHOOK_QUEUE = 10_000
"""Events waiting for the webhook; past that the oldest are dropped (and counted)."""
WEBHOOK_TIMEOUT = 10.0
FORGET_BATCH = 1000
"""Events deleted in one statement when old ones are forgotten; the event loop is free between batches."""
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
SIGNATURE_HEADER = "X-Vgpustream-Signature"
"""`sha256=` and the hex HMAC-SHA256 of the POST's body under the webhook secret."""
MIN_SECRET_BYTES = 16
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    type TEXT NOT NULL,
    session_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_session ON events (session_id, id);
"""


@dataclass(frozen=True)
class Event:
    id: int
    time: float
    type: str
    session_id: str | None
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The event as the API lists it and the webhook gets it: times in RFC 3339, as tokens and recordings
        give theirs (an event stored before it said so may hold its token's expires_at in seconds)."""
        data = dict(self.data)
        if isinstance(data.get("expires_at"), int | float):
            data["expires_at"] = timestamp(data["expires_at"])
        when = timestamp(self.time, "milliseconds")
        return {"id": self.id, "time": when, "type": self.type, "session": self.session_id, **data}


@dataclass
class WebhookStats:
    delivered: int = 0
    failed_attempts: int = 0
    dropped: int = 0


def signature(secret: bytes, body: bytes) -> str:
    """The webhook's signature header value of `body`: `sha256=` and the hex HMAC-SHA256 under `secret`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def read_webhook_secret(path: Path) -> bytes:
    """The webhook secret from its file (surrounding whitespace dropped); at least MIN_SECRET_BYTES."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise VgpuStreamError(f"cannot read the audit webhook secret file: {exc.strerror}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise VgpuStreamError(f"the audit webhook secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret


class AuditLog:
    """Records events (on the event loop; one short SQLite insert each) and feeds the webhook."""

    def __init__(
        self, path: Path, webhook: str | None = None, *, secret: bytes | None = None, retention: float = float("inf")
    ) -> None:
        """`retention`: seconds an event is kept; `secret`: signs each webhook POST."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise DatabaseUnusable(
                f"{path} is not a usable audit database ({exc}); it was left as it is: "
                "restore it from a backup, or move it away to start a new audit trail"
            ) from None
        self.webhook = webhook
        self.retention = retention
        self._secret = secret
        self.webhook_stats = WebhookStats()
        self.unstored = 0
        """Events the database refused (a full disk); they still went to the webhook."""
        self._outbox: deque[Event] = deque(maxlen=WEBHOOK_QUEUE)
        self._pending = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Remove the events past the retention period, at once and hourly; start delivering to the webhook."""
        self._tasks.append(asyncio.create_task(self._keep_retention(), name="audit-retention"))
        if self.webhook is not None:
            self._tasks.append(asyncio.create_task(self._deliver(self.webhook), name="audit-webhook"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._db.close()

    async def forget_old(self, now: float) -> int:
        """Delete the events older than the retention period; how many went (as far as the disk let it).

        In batches of FORGET_BATCH, the oldest first, with the event loop free between them: a year of
        events due at once never holds up the viewers and the API that share the loop (and this database).
        """
        removed = 0
        while True:
            try:
                batch = self._db.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE time < ? ORDER BY id LIMIT ?)",
                    (now - self.retention, FORGET_BATCH),
                ).rowcount
            except sqlite3.Error as exc:
                log.error("audit: old events could not be removed: %s", bounded(str(exc), 120))
                return removed
            removed += batch
            if batch < FORGET_BATCH:
                return removed
            await asyncio.sleep(0)

    async def _keep_retention(self) -> None:
        while True:
            await self.forget_old(time.time())
            await asyncio.sleep(RETENTION_INTERVAL)

    def record(self, kind: str, session_id: str | None, **data: Any) -> Event:
        """Store an event and queue it for the webhook; never waits, never fails its caller.

        An event the database refuses (its disk is full) is counted in `unstored`, logged (rate-limited),
        and still sent to the webhook, with id 0.
        """
        now = round(time.time(), 3)  # as to_json writes it, so that `since` its time finds it
        try:
            cursor = self._db.execute(
                "INSERT INTO events (time, type, session_id, data) VALUES (?, ?, ?, ?)",
                (now, kind, session_id, json.dumps(data)),
            )
            event_id = int(cursor.lastrowid or 0)
        except sqlite3.Error as exc:
            self.unstored += 1
            event_id = 0
            if self.unstored % 100 == 1:
                log.error("audit: %d event(s) could not be stored: %s", self.unstored, bounded(str(exc), 120))
        event = Event(event_id, now, kind, session_id, data)
        if self.webhook is not None:
            if len(self._outbox) == self._outbox.maxlen:
                self.webhook_stats.dropped += 1
            self._outbox.append(event)
            self._pending.set()
        return event

    def events(
        self, session_id: str | None = None, since: float | None = None, after: int = 0, limit: int = 100
    ) -> list[Event]:
        """Events oldest first: of `session_id` (all if None), at or after `since`, with ids above `after`."""
        query, args = "SELECT id, time, type, session_id, data FROM events WHERE id > ?", [after]
        if session_id is not None:
            query += " AND session_id = ?"
            args.append(session_id)
        if since is not None:
            query += " AND time >= ?"
            args.append(since)
        rows = self._db.execute(query + " ORDER BY id LIMIT ?", [*args, limit]).fetchall()
        return [Event(i, t, kind, sid, json.loads(data)) for i, t, kind, sid, data in rows]

    async def _deliver(self, url: str) -> None:
        """POST queued events in order; an event that fails is retried (backing off) before the next."""
        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            backoff = BACKOFF_FIRST
            while True:
                if not self._outbox:
                    self._pending.clear()
                    await self._pending.wait()
                    continue
                event = self._outbox[0]
                if await self._post(http, url, event):
                    if self._outbox and self._outbox[0] is event:
                        self._outbox.popleft()
                    self.webhook_stats.delivered += 1
                    backoff = BACKOFF_FIRST
                else:
                    self.webhook_stats.failed_attempts += 1
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)

    async def _post(self, http: aiohttp.ClientSession, url: str, event: Event) -> bool:
        body = json.dumps(event.to_json()).encode()
        headers = {"Content-Type": "application/json"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        try:
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                ok = 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError, OSError):
            ok = False
        if not ok and self.webhook_stats.failed_attempts % 100 == 0:
            log.warning("audit webhook: delivery failed (%d attempts so far)", self.webhook_stats.failed_attempts + 1)
        return ok

    def token_created(self, record: TokenRecord) -> None:
        """A viewer token was issued: its id and terms, never its secret."""
        self.record(
            "token.created",
            record.session_id,
            token=record.id,
            role=record.role,
            expires_at=record.expires_at,
            single_use=record.single_use,
        )

    def viewers(self, session_id: str) -> ViewerAudit:
        """What a session's audience reports to (viewers leaving, first input)."""
        return ViewerAudit(self, session_id)


class AuditedViewer(Protocol):
    """What the audit trail records of a viewer that joins (a seat has it; the audit knows no seat)."""

    id: str
    token_id: str | None
    role: str
    transport: str


class ViewerAudit:
    """The audit of one session's viewers: joined (from the WHEP request), left, and their first input."""

    def __init__(self, audit: AuditLog, session_id: str) -> None:
        self._audit = audit
        self._session_id = session_id
        self._joined: set[str] = set()

    def joined(self, viewer: AuditedViewer, remote: str | None, user_agent: str) -> None:
        self._joined.add(viewer.id)
        self._audit.record(
            "viewer.joined",
            self._session_id,
            viewer=viewer.id,
            token=viewer.token_id,
            role=viewer.role,
            transport=viewer.transport,
            remote=remote,
            user_agent=printable(user_agent, MAX_USER_AGENT),
        )

    def left(self, viewer_id: str) -> None:
        if viewer_id in self._joined:  # an offer that failed made no viewer that joined
            self._joined.discard(viewer_id)
            self._audit.record("viewer.left", self._session_id, viewer=viewer_id)

    def input_started(self, viewer_id: str) -> None:
        self._audit.record("input.started", self._session_id, viewer=viewer_id)

    def clipboard_to_guest(self, viewer_id: str, size: int) -> None:
        """A viewer wrote the guest's clipboard: who, and how many characters (never what)."""
        self._audit.record("clipboard.to_guest", self._session_id, viewer=viewer_id, characters=size)

    def microphone_started(self, viewer_id: str) -> None:
        """A viewer's microphone went live: its sound goes into the guest from now on."""
        self._audit.record("microphone.started", self._session_id, viewer=viewer_id)

    def microphone_stopped(self, viewer_id: str, reason: str) -> None:
        """A viewer's microphone went off: it turned it off, left, or was stopped (`reason`, ours)."""
        self._audit.record("microphone.stopped", self._session_id, viewer=viewer_id, reason=reason)

    def clipboard_from_guest(self, viewers: list[str], size: int) -> None:
        """The guest's clipboard went to these viewers: how many characters (never what)."""
        self._audit.record("clipboard.from_guest", self._session_id, viewers=viewers, characters=size)
