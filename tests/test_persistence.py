"""Sessions and tokens survive a restart of the server process, and sessions stream again."""

from __future__ import annotations

import sqlite3

import aiohttp

from tests.conftest import OPERATOR
from tests.served import serve
from vgpustream.control.store import MIGRATIONS, Store
from vgpustream.media.encoder import RUNGS
from vgpustream.testing.receiver import WhepReceiver
from vgpustream.testing.server import free_port


async def test_sessions_and_tokens_survive_a_restart(tmp_path):
    state, port = tmp_path / "state", free_port()
    async with aiohttp.ClientSession(headers=OPERATOR) as operator, aiohttp.ClientSession() as person:
        with serve(state, port=port) as served:
            body = {
                "id": "vm1",
                "source": "synthetic:320x240@15",
                "name": "VM one",
                "labels": {"team": "a"},
                "encoder": {"bitrate": 500_000},
            }
            async with operator.post(f"{served.url}/api/v1/sessions", json=body) as response:
                assert response.status == 201
            async with operator.post(f"{served.url}/api/v1/sessions/vm1/tokens", json={"role": "view"}) as response:
                issued = await response.json()
            async with operator.patch(f"{served.url}/api/v1/sessions/vm1", json={"encoder": {"fps": 10}}) as response:
                encoder = {"bitrate": 500_000, "fps": 10, "keyframe_interval": 2.0, "rungs": len(RUNGS)}
                assert (await response.json())["encoder"] == encoder
        with serve(state, port=port) as served:
            async with operator.get(f"{served.url}/api/v1/sessions?label=team=a") as response:
                (session,) = (await response.json())["sessions"]
            assert (session["id"], session["name"], session["encoder"]["fps"]) == ("vm1", "VM one", 10)
            receiver = WhepReceiver(issued["whep_url"], person, token=issued["token"])
            await receiver.connect()
            frame = await receiver.next_frame()
            assert (frame.picture.width, frame.picture.height) == (320, 240) and frame.stamp is not None
            await receiver.close()


def test_an_old_database_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite3"
    sqlite3.connect(path).close()  # version 0: an empty database from before the first migration
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    assert store.sessions() == []
    store.close()
    assert Store(path).schema_version == len(MIGRATIONS), "migrating is idempotent"
