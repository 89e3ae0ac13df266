"""Durable state in an embedded SQLite database: session definitions and viewer tokens (as hashes).

Schema changes are numbered migrations applied in order; PRAGMA user_version records how far a
database has come, so an older database is brought up to date when the server starts.

Faults: a database that cannot be read at start-up is left exactly as it is (DatabaseUnusable names
the file; the server does not start). A write that fails while running (disk full, read-only, I/O
error) is rolled back whole and answered StorageFull or StorageUnavailable: the change was not made,
and everything stored before it is still there.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vgpustream.errors import StorageFull, StorageUnavailable, VgpuStreamError
from vgpustream.media.encoder import EncoderSettings

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions and tokens
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        labels TEXT NOT NULL,
        encoder TEXT NOT NULL,
        max_viewers INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('view', 'control')),
        hash BLOB NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        single_use INTEGER NOT NULL,
        used_at REAL,
        revoked_at REAL
    );
    CREATE INDEX tokens_by_session ON tokens (session_id);
    """,
    # 2: a token's clipboard access (NULL: what its role gets)
    """
    ALTER TABLE tokens ADD COLUMN clipboard TEXT CHECK (clipboard IN ('none', 'read', 'readwrite'));
    """,
    # 3: how many viewers a token may have at once (NULL: the server's --token-max-viewers)
    """
    ALTER TABLE tokens ADD COLUMN max_viewers INTEGER;
    """,
    # 4: the signed tokens of a gateway (vgpustream.control.signedtokens) that were used (single-use) or revoked: the
    # others have no row
    """
    CREATE TABLE signed_tokens (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL,
        revoked_at REAL
    );
    """,
    # 5: a token's microphone access (NULL: none)
    """
    ALTER TABLE tokens ADD COLUMN microphone TEXT CHECK (microphone IN ('none', 'use'));
    """,
)


@dataclass(frozen=True)
class SessionSpec:
    """What defines a session; a session can be rebuilt from it after a restart."""

    id: str
    source: str
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    max_viewers: int = 16
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class TokenRecord:
    id: str
    session_id: str
    role: str
    created_at: float
    expires_at: float
    single_use: bool
    used_at: float | None
    revoked_at: float | None
    clipboard: str | None = None
    """none, read or readwrite; None for what the role gets (tokens from before there was a choice)."""
    max_viewers: int | None = None
    """Viewers it may have at once; None for the server's default (tokens from before there was a choice)."""
    microphone: str | None = None
    """none or use; None for none (tokens from before there was a choice)."""


class DatabaseUnusable(Exception):
    """The database file cannot be used; it was not changed. The message names the file and the cause."""


def storage_error(exc: sqlite3.Error) -> VgpuStreamError:
    """What a caller is told when the database refused a change (the cause is SQLite's own error name)."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return StorageFull("the state directory's disk is full; nothing was changed")
    name = getattr(exc, "sqlite_errorname", type(exc).__name__)
    return StorageUnavailable(f"the state database cannot be written now ({name}); nothing was changed")


class Store:
    """The database; every call is one short transaction (SQLite in WAL mode)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            # read-only checks first: a damaged or foreign file must stay exactly as it was
            problems = [row[0] for row in self._db.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(str(p)[:200] for p in problems))
            if self.schema_version > len(MIGRATIONS):
                raise sqlite3.DatabaseError(
                    f"schema version {self.schema_version} is newer than this vgpustream knows ({len(MIGRATIONS)})"
                )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self.migrate()
        except sqlite3.Error as exc:
            raise DatabaseUnusable(
                f"{path} is not a usable vgpustream database ({exc}); it was left as it is: "
                "restore it from a backup, or move it away to start with an empty state"
            ) from None

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        for version, script in enumerate(MIGRATIONS[self.schema_version :], start=self.schema_version + 1):
            self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {version}; COMMIT;")

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed whole, or rolled back and reported as a storage error."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
        except sqlite3.Error as exc:
            if self._db.in_transaction:  # a COMMIT that failed leaves its transaction open
                self._db.rollback()
            raise storage_error(exc) from None

    def close(self) -> None:
        self._db.close()

    def healthy(self) -> bool:
        try:
            self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    # sessions

    def save_session(self, spec: SessionSpec) -> None:
        encoder = {
            "bitrate": spec.encoder.bitrate,
            "fps": spec.encoder.fps,
            "keyframe_interval": spec.encoder.keyframe_interval,
        }
        with self._writing() as db:
            db.execute(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    spec.id,
                    spec.source,
                    spec.name,
                    json.dumps(spec.labels),
                    json.dumps(encoder),
                    spec.max_viewers,
                    spec.created_at,
                ),
            )

    def delete_session(self, session_id: str) -> None:
        with self._writing() as db:
            db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            db.execute("DELETE FROM tokens WHERE session_id = ?", (session_id,))

    def sessions(self) -> list[SessionSpec]:
        rows = self._db.execute("SELECT * FROM sessions ORDER BY created_at").fetchall()
        return [
            SessionSpec(
                sid, source, name, json.loads(labels), EncoderSettings(**json.loads(encoder)), max_viewers, created_at
            )
            for sid, source, name, labels, encoder, max_viewers, created_at in rows
        ]

    # tokens

    def add_token(self, record: TokenRecord, token_hash: bytes) -> None:
        with self._writing() as db:
            db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.session_id,
                    record.role,
                    token_hash,
                    record.created_at,
                    record.expires_at,
                    int(record.single_use),
                    None,
                    None,
                    record.clipboard,
                    record.max_viewers,
                    record.microphone,
                ),
            )

    def token_by_hash(self, token_hash: bytes) -> tuple[TokenRecord, bytes] | None:
        row = self._db.execute(f"SELECT {TOKEN_COLUMNS}, hash FROM tokens WHERE hash = ?", (token_hash,)).fetchone()
        if row is None:
            return None
        return _token(row), row[-1]

    def use_token(self, token_id: str, now: float) -> bool:
        """Mark a single-use token used; False if it was used already (atomic)."""
        with self._writing() as db:
            cursor = db.execute("UPDATE tokens SET used_at = ? WHERE id = ? AND used_at IS NULL", (now, token_id))
        return cursor.rowcount == 1

    def revoke_token(self, session_id: str, token_id: str, now: float) -> bool:
        with self._writing() as db:
            cursor = db.execute(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND session_id = ?",
                (now, token_id, session_id),
            )
        return cursor.rowcount == 1

    def signed_token(self, token_id: str) -> tuple[float | None, float | None]:
        """When a gateway's signed token was used and revoked (None: not)."""
        row = self._db.execute("SELECT used_at, revoked_at FROM signed_tokens WHERE id = ?", (token_id,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def use_signed_token(self, token_id: str, session_id: str, expires_at: float, now: float) -> bool:
        """Mark a single-use signed token used; False if it was used already (atomic)."""
        with self._writing() as db:
            cursor = db.execute(
                "INSERT INTO signed_tokens VALUES (?, ?, ?, ?, NULL) "
                "ON CONFLICT (id) DO UPDATE SET used_at = excluded.used_at WHERE used_at IS NULL",
                (token_id, session_id, expires_at, now),
            )
        return cursor.rowcount == 1

    def revoke_signed_token(self, token_id: str, session_id: str, until: float, now: float) -> None:
        """Refuse a gateway's signed token from now on; kept until `until`, past which it has expired anyway."""
        with self._writing() as db:
            db.execute(
                "INSERT INTO signed_tokens VALUES (?, ?, ?, NULL, ?) "
                "ON CONFLICT (id) DO UPDATE SET revoked_at = COALESCE(revoked_at, excluded.revoked_at)",
                (token_id, session_id, until, now),
            )

    def tokens(self, session_id: str, after: int = 0, limit: int = -1) -> list[tuple[int, TokenRecord]]:
        """A session's tokens in the order they were issued, from after position `after`, at most `limit`
        (-1: all); each with its position, which a next page starts after."""
        rows = self._db.execute(
            f"SELECT rowid, {TOKEN_COLUMNS} FROM tokens WHERE session_id = ? AND rowid > ? ORDER BY rowid LIMIT ?",
            (session_id, after, limit),
        ).fetchall()
        return [(row[0], _token(row[1:])) for row in rows]

    def purge_tokens(self, before: float) -> int:
        """Delete the tokens that expired or were revoked before `before`; how many went."""
        with self._writing() as db:
            cursor = db.execute("DELETE FROM tokens WHERE expires_at < ? OR revoked_at < ?", (before, before))
            signed = db.execute("DELETE FROM signed_tokens WHERE expires_at < ?", (before,))
        return cursor.rowcount + signed.rowcount


TOKEN_COLUMNS = (
    "id, session_id, role, created_at, expires_at, single_use, used_at, revoked_at, clipboard, max_viewers, microphone"
)
"""A TokenRecord's columns, in its fields' order."""


def _token(row: tuple[object, ...]) -> TokenRecord:
    """A token record from its columns, in the order of TOKEN_COLUMNS (anything after them ignored)."""
    return TokenRecord(*row[:5], bool(row[5]), *row[6:11])  # type: ignore[arg-type]
