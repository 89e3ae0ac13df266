"""The state database under faults: damaged at start, a full disk while running, SIGKILL in the middle of writes.

Each fault gets a clear answer and loses nothing: what was stored stays stored, a change that could not be
stored is not made, and the stream goes on.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests import conftest
from tests.conftest import OPERATOR
from tests.served import ROOT, serve
from vgpustream.api.app import create_app
from vgpustream.control.store import SessionSpec, Store
from vgpustream.settings import Settings
from vgpustream.testing.receiver import WhepReceiver
from vgpustream.testing.server import free_port

DATABASE = "vgpustream.sqlite3"


def filled(path: Path) -> None:
    """A real database, a few pages long."""
    store = Store(path)
    for i in range(40):
        store.save_session(SessionSpec(f"vm{i}", "synthetic:", name="x" * 200))
    store.close()


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(16384))


def page_overwritten(path: Path) -> None:
    filled(path)
    with path.open("r+b") as f:  # page 2 onwards: b-tree pages of the sessions table
        f.seek(4096)
        f.write(b"\xff" * 512)


def newer_schema(path: Path) -> None:
    filled(path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()


DAMAGES: dict[str, Callable[[Path], None]] = {
    "random bytes": random_bytes,
    "a page overwritten": page_overwritten,
    "a newer schema": newer_schema,
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_database_stops_the_server_and_is_left_as_it_is(tmp_path, damage):
    state = tmp_path / "state"
    state.mkdir()
    database = state / DATABASE
    DAMAGES[damage](database)
    before = database.read_bytes()
    command = [sys.executable, "-m", "vgpustream", "serve", "--host", "127.0.0.1", "--port", str(free_port()),
               "--state-dir", str(state)]  # fmt: skip
    result = subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"{database} is not a usable vgpustream database" in result.stderr
    assert "Traceback" not in result.stderr
    assert database.read_bytes() == before, "the damaged file must be left exactly as it was"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs for the state directory (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)]
    done = subprocess.run(command, check=False, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(directory: Path) -> Path:
    """Write zeros into a file in `directory` until its disk is full; returns the file."""
    filler = directory / "filler"
    # unbuffered: a buffered file keeps what did not fit and fails again when it is closed
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@dataclass(frozen=True)
class DiskFault:
    """A fault of the state directory's disk while the server runs, and how the API answers changes then."""

    state: Path
    """The state directory, on the faulty disk."""
    begin: Callable[[], object]
    end: Callable[[], None]
    status: int
    code: str


@pytest.fixture(params=["full", "read-only"])
def disk_fault(request: pytest.FixtureRequest, tmp_path: Path) -> DiskFault:
    """A full tmpfs; or a disk that turns read-only with its files open (a FUSE pass-through answering EROFS,
    as ext4 does once it aborted its journal: a remount read-only is refused while files are open for
    writing, and the kernel's forced one lets them write on)."""
    if request.param == "full":
        disk = request.getfixturevalue("small_disk")
        return DiskFault(disk / "state", lambda: fill(disk), (disk / "filler").unlink, 507, "storage_full")
    switch = tmp_path / "read-only"
    options = ("--delay", "0", "--slow-for", "0", "--read-only-while", str(switch))
    disk = request.getfixturevalue("fuse_disk")(tmp_path / "disk", *options)
    return DiskFault(disk / "state", switch.touch, switch.unlink, 503, "storage_unavailable")


async def test_a_full_or_read_only_disk_refuses_changes_keeps_what_was_stored_and_the_stream(
    disk_fault, aiohttp_server, http
):
    settings: Settings = conftest.test_settings(disk_fault.state)

    async def start() -> TestServer:
        return await aiohttp_server(create_app(settings))

    server = await start()
    api = server.make_url("/api/v1/sessions")
    async with http.post(api, json={"id": "vm1", "source": "synthetic:320x240@15", "name": "one"}) as response:
        assert response.status == 201
    async with http.post(f"{api}/vm1/tokens", json={"role": "view"}) as response:
        token = await response.json()
    viewer = WhepReceiver(str(server.make_url("/whep/vm1")), http)
    await viewer.connect()
    await viewer.next_frame()

    disk_fault.begin()
    refused = [
        http.post(api, json={"id": "vm2", "source": "synthetic:320x240@15"}),
        http.post(f"{api}/vm1/tokens", json={"role": "control"}),
        http.patch(f"{api}/vm1", json={"name": "renamed"}),
        http.delete(f"{api}/vm1/tokens/{token['id']}"),
        http.delete(f"{api}/vm1"),
    ]
    for request in refused:
        async with request as response:
            assert response.status == disk_fault.status, await response.text()
            error = (await response.json())["error"]
            assert error["code"] == disk_fault.code and "nothing was changed" in error["message"], error

    # nothing changed, in memory or on disk, and the viewer watches on
    async with http.get(api) as response:
        assert [(s["id"], s["name"]) for s in (await response.json())["sessions"]] == [("default", ""), ("vm1", "one")]
    async with http.get(f"{api}/vm1/tokens") as response:
        assert [(t["id"], t["revoked"]) for t in (await response.json())["tokens"]] == [(token["id"], False)]
    stamps = {(await viewer.next_frame()).stamp for _ in range(10)}
    assert len(stamps) > 1, "the stream must go on while the disk refuses changes"
    await viewer.close()

    disk_fault.end()
    async with http.post(api, json={"id": "vm2", "source": "synthetic:320x240@15"}) as response:
        assert response.status == 201, "once the disk takes writes again, changes are stored again"
    await server.close()

    server = await start()  # a restart finds exactly what was answered as stored
    async with http.get(server.make_url("/api/v1/sessions")) as response:
        assert [(s["id"], s["name"]) for s in (await response.json())["sessions"]] == [
            ("default", ""),
            ("vm1", "one"),
            ("vm2", ""),
        ]
    async with aiohttp.ClientSession() as person:
        again = WhepReceiver(str(server.make_url("/whep/vm1")), person, token=token["token"])
        await again.connect()
        await again.next_frame()
        await again.close()


async def test_sigkill_in_the_middle_of_writes_loses_nothing_that_was_answered(tmp_path):
    state, port = tmp_path / "state", free_port()
    created: list[str] = []
    tokens: dict[str, str] = {}  # token id -> session id
    revoking: set[str] = set()
    revoked: list[str] = []

    async def write(http: aiohttp.ClientSession, url: str, worker: int) -> None:
        """Create sessions and tokens and revoke some, recording only what the server answered as done."""
        for i in range(10_000):
            session = f"s{worker}-{i}"
            try:
                async with http.post(f"{url}/api/v1/sessions", json={"id": session, "source": "synthetic:"}) as r:
                    if r.status != 201:
                        continue
                    created.append(session)
                async with http.post(f"{url}/api/v1/sessions/{session}/tokens", json={}) as r:
                    if r.status != 201:
                        continue
                    token = (await r.json())["id"]
                    tokens[token] = session
                if i % 2:
                    revoking.add(token)
                    async with http.delete(f"{url}/api/v1/sessions/{session}/tokens/{token}") as r:
                        if r.status == 204:
                            revoked.append(token)
            except aiohttp.ClientError:
                return  # the server is gone

    async with aiohttp.ClientSession(headers=OPERATOR) as http:
        unlimited = ("--max-sessions", "1000", "--rate-limit", "1000", "--rate-burst", "1000")
        with serve(state, *unlimited, port=port) as served:
            writers = [asyncio.create_task(write(http, served.url, worker)) for worker in range(4)]
            while len(revoked) < 10:
                await asyncio.sleep(0.05)
            served.process.kill()
            await asyncio.gather(*writers)
            served.process.wait()
        assert len(created) >= 20
        with serve(state, "--max-sessions", "1000", port=port) as served:
            async with http.get(f"{served.url}/api/v1/sessions") as response:
                stored = {s["id"] for s in (await response.json())["sessions"]}
            assert set(created) <= stored
            for session in {tokens[t] for t in tokens}:
                async with http.get(f"{served.url}/api/v1/sessions/{session}/tokens") as response:
                    listed = {t["id"]: t["revoked"] for t in (await response.json())["tokens"]}
                for token in (t for t, s in tokens.items() if s == session):
                    assert token in listed
                    if token in revoked:
                        assert listed[token], "a revocation answered 204 must survive"
                    elif token not in revoking:
                        assert not listed[token]
