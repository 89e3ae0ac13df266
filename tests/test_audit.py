"""The audit trail: viewers, their first input, tokens and recordings, in SQLite, the API and a webhook."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import json
import time

import pytest
from aiohttp import web

from tests.conftest import wait_for
from tests.recordings import start, stop
from vgpustream.api.state import AUDIT, REGISTRY
from vgpustream.cli import main
from vgpustream.control.audit import FORGET_BATCH, AuditLog
from vgpustream.testing.server import free_port

EVENTS = "/api/v1/events"


async def all_events(http, server, **query) -> list[dict]:
    async with http.get(server.make_url(EVENTS), params=query) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["events"]


class Receiver:
    """A webhook receiver: an aiohttp server on `port`, started (and stopped) when the test says."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.events: list[dict] = []
        self.signed: list[tuple[str | None, bytes]] = []
        """Each POST's signature header and its body."""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            self.signed.append((request.headers.get("X-Vgpustream-Signature"), body))
            self.events.append(json.loads(body))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receiver():
    hook = Receiver(free_port())
    yield hook
    await hook.stop()


async def test_viewers_tokens_and_recordings_make_exactly_the_expected_events(
    make_server, http, viewers, receiver, tmp_path
):
    secret = b"a webhook secret of the operator's"
    (tmp_path / "webhook-secret").write_bytes(secret + b"\n")
    server = await make_server(
        source="synthetic:320x240@30",
        audit_webhook=f"http://127.0.0.1:{receiver.port}/hook",
        audit_webhook_secret_file=tmp_path / "webhook-secret",
    )
    session = server.app[REGISTRY].get("default")
    base = str(server.make_url("/"))
    secrets = []

    async def token(role: str) -> dict:
        async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": role}) as response:
            assert response.status == 201
            issued = await response.json()
        secrets.append(issued["token"])
        return issued

    control, view = await token("control"), await token("view")
    typist = await viewers(server, token=control["token"])
    await typist.wait_channel_open()
    for x in (0.1, 0.2, 0.3):
        typist.send_input({"type": "pointer", "x": x, "y": 0.5, "buttons": 0})
    await wait_for(lambda: session.audience.stats.input_events == 3, what="the typist's input")  # events in order
    watcher = await viewers(server, token=view["token"])
    await watcher.wait_channel_open()
    watcher.send_input({"type": "pointer", "x": 0.9, "y": 0.9, "buttons": 0})  # view-only: refused, no event
    await wait_for(lambda: session.audience.stats.input_events == 3 and session.audience.stats.input_refused == 1)
    async with http.delete(server.make_url(f"/api/v1/sessions/default/tokens/{control['id']}")) as response:
        assert response.status == 204
    await wait_for(lambda: len(session.audience) == 1, what="the revoked token's viewer to go")
    watcher_id = watcher.location.rsplit("/", 1)[1]
    await watcher.close()
    recording = await start(http, base, label="for the audit")
    await asyncio.sleep(0.5)
    await stop(http, base, recording)

    events = await all_events(http, server, session="default")
    typist_id = typist.location.rsplit("/", 1)[1]
    assert [(e["type"], e.get("viewer"), e.get("token")) for e in events] == [
        ("token.created", None, control["id"]),
        ("token.created", None, view["id"]),
        ("viewer.joined", typist_id, control["id"]),
        ("input.started", typist_id, None),
        ("viewer.joined", watcher_id, view["id"]),
        ("token.revoked", None, control["id"]),
        ("viewer.left", typist_id, None),
        ("viewer.left", watcher_id, None),
        ("recording.started", None, None),
        ("recording.stopped", None, None),
    ]
    joined = events[2]
    assert (joined["role"], joined["remote"], joined["session"]) == ("control", "127.0.0.1", "default")
    assert joined["user_agent"].startswith("Python/") and "aiohttp" in joined["user_agent"]
    assert events[4]["role"] == "view"
    assert events[8]["label"] == "for the audit" and events[9]["reason"] == "requested"
    assert events[8]["recording"] == events[9]["recording"] == recording["id"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    text = json.dumps(events)
    assert not any(secret in text for secret in secrets), "no token secret in any event"

    # the receiver was down until now: the webhook retried, and delivers everything, in order
    stats = server.app[AUDIT].webhook_stats
    await wait_for(lambda: stats.failed_attempts >= 4, timeout=15, what="retries, backing off")  # 0.5+1+2+4 s
    assert stats.delivered == 0
    await receiver.start()
    await wait_for(lambda: len(receiver.events) == len(events), timeout=40, what="the webhook to catch up")
    assert receiver.events == events
    assert stats.delivered == len(events) and stats.dropped == 0
    for header, body in receiver.signed:  # the receiver can tell the POSTs are the server's
        assert header == "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


async def test_events_come_a_page_at_a_time_and_bad_queries_are_refused(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    for _ in range(7):
        async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={}) as response:
            assert response.status == 201
    everything = await all_events(http, server)
    assert len(everything) == 7

    pages, url = [], str(server.make_url(f"{EVENTS}?session=default&limit=3"))
    while url is not None:
        async with http.get(url) as response:
            page = await response.json()
        pages.append(page["events"])
        url = page["next"] and str(server.make_url(page["next"]))
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [e for p in pages for e in p] == everything

    assert await all_events(http, server, session="other") == []
    since = everything[4]["time"]  # to the millisecond: an event of the same millisecond before it counts too
    found = await all_events(http, server, since=since)
    assert found == [e for e in everything if e["time"] >= since] and found[-3:] == everything[4:]
    assert await all_events(http, server, since="2999-01-01T00:00:00Z") == []
    for query in ({"limit": "0"}, {"limit": "1001"}, {"limit": "-1"}, {"after": "x"}, {"since": "yesterday"},
                  {"since": "2026-11-29T06:00:00"}, {"since": "nan"}, {"since": "1e999"}, {"token": "x"}):  # fmt: skip
        async with http.get(server.make_url(EVENTS), params=query) as response:
            assert response.status == 400, (query, await response.text())
            assert (await response.json())["error"]["code"] == "bad_request"


async def test_events_give_their_times_in_rfc_3339_as_tokens_do(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    before = time.time()
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={}) as response:
        issued = await response.json()
    (created,) = await all_events(http, server)
    assert created["time"].endswith("Z") and created["expires_at"].endswith("Z"), created
    when = datetime.datetime.fromisoformat(created["time"]).timestamp()
    assert before - 0.001 <= when <= time.time(), "to the millisecond"
    assert created["expires_at"] == issued["expires_at"], "as the token gives it"
    assert await all_events(http, server, since=created["time"]) == [created], "an event's time finds it"


async def test_events_past_the_retention_period_are_forgotten(tmp_path):
    path = tmp_path / "audit.sqlite3"
    audit = AuditLog(path, retention=3600)
    first = audit.record("token.revoked", "s1", token="t1")
    await asyncio.sleep(0.01)
    second = audit.record("token.revoked", "s2", token="t2")
    assert await audit.forget_old(first.time + 3600) == 0, "an event exactly as old as the retention stays"
    assert await audit.forget_old(second.time + 3600) == 1
    assert [e.id for e in audit.events()] == [second.id]
    await audit.close()

    short = AuditLog(path, retention=0.2)
    short.record("token.revoked", "s3", token="t3")
    await short.close()
    await asyncio.sleep(0.3)
    restarted = AuditLog(path, retention=0.2)
    restarted.start()  # at start-up, then hourly
    await asyncio.sleep(0.1)
    assert restarted.events() == []
    await restarted.close()


async def test_a_backlog_of_old_events_goes_in_batches_with_the_event_loop_free_between(tmp_path):
    audit = AuditLog(tmp_path / "audit.sqlite3", retention=3600)
    old = [audit.record("token.revoked", "s1", token=f"t{n}") for n in range(2 * FORGET_BATCH + 10)]
    await asyncio.sleep(0.01)
    kept = audit.record("token.created", "s1", token="new")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    assert await audit.forget_old(kept.time + 3600) == len(old), "every event older than the retention went"
    other.cancel()
    assert ticks - before >= 2, "another task ran between the batches"
    assert [e.id for e in audit.events()] == [kept.id]
    await audit.close()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--audit-webhook-secret-file", "{missing}", "--audit-webhook", "http://127.0.0.1:9/"], "cannot read"),
        (["--audit-webhook-secret-file", "{short}", "--audit-webhook", "http://127.0.0.1:9/"], "at least 16 bytes"),
        (["--audit-webhook-secret-file", "{short}"], "give both"),
        (["--audit-retention-days", "0"], "audit retention must be within"),
    ],
)
def test_bad_audit_settings_stop_serve_with_a_clear_error(tmp_path, capsys, flags, message):
    (tmp_path / "short").write_text("too short\n")
    names = {"missing": tmp_path / "missing", "short": tmp_path / "short"}
    argv = ["serve", "--state-dir", str(tmp_path / "state"), "--insecure-no-auth", *(f.format(**names) for f in flags)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
