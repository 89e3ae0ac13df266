"""Viewers are told the source's state, and why it is not streaming, on their input channel; the API says the same.
They are told the session's name and whether the VM has a clipboard with it."""

from __future__ import annotations

import asyncio
import time

from tests.lost import viewer_sees
from vgpustream.errors import printable


async def told_states(receiver, count: int, timeout: float = 10.0) -> list[dict]:
    """The first `count` state messages the viewer was sent."""
    deadline = time.monotonic() + timeout
    while len(states := [m for m in receiver.messages if m.get("type") == "state"]) < count:
        assert time.monotonic() < deadline, f"the viewer was told {states}, expected {count} state messages"
        await asyncio.sleep(0.05)
    return states[:count]


async def session_json(http, server) -> dict:
    async with http.get(server.make_url("/api/v1/sessions/default")) as response:
        assert response.status == 200
        return await response.json()


async def test_a_view_only_viewer_is_told_the_source_is_lost_and_why(make_server, http, viewers, tmp_path):
    socket_path = tmp_path / "no-such-vm" / "bus.sock"
    server = await make_server(source=f"qemu-dbus:unix:path={socket_path}")
    deadline = time.monotonic() + 10
    while (session := await session_json(http, server))["message"] is None:
        assert time.monotonic() < deadline, f"no error in {session}"
        await asyncio.sleep(0.05)
    assert session["state"] == "lost"
    assert "No such file or directory" in session["message"] and len(session["message"]) <= 201
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view"}) as response:
        token = (await response.json())["token"]
    watcher = await viewers(server, token=token)
    await watcher.wait_channel_open()
    (told,) = await told_states(watcher, 1)
    assert told == {
        "type": "state",
        "state": "lost",
        "message": session["message"],
        "resizable": False,
        "relative_pointer": False,
        "clipboard": False,
        "microphone": False,
        "name": None,
    }
    await asyncio.sleep(2.5)  # the source is retried (and fails) every second: the same state is told once
    assert len([m for m in watcher.messages if m.get("type") == "state"]) == 1


async def test_viewers_of_a_source_that_cannot_be_read_see_no_signal(make_server, viewers, tmp_path):
    """Every try fails, so no step runs: the loop itself keeps the NO SIGNAL picture going, a frame after
    the first (aiortc decodes a frame once the next one comes) and an IDR for a viewer who joins later."""
    server = await make_server(source=f"qemu-dbus:unix:path={tmp_path / 'no-such-vm' / 'bus.sock'}")
    first = await viewers(server)
    await viewer_sees(first, "lost", no_signal_shown=True, timeout=10)
    later = await viewers(server)
    await viewer_sees(later, "lost", no_signal_shown=True, timeout=10)


async def test_a_streaming_source_is_told_without_a_message(make_server, viewers, http):
    server = await make_server(source="synthetic:320x240@30")
    receiver = await viewers(server)
    await receiver.next_frame()
    told = {"type": "state", "state": "streaming", "message": None, "resizable": False, "relative_pointer": False}
    assert await told_states(receiver, 1) == [told | {"clipboard": False, "microphone": False, "name": None}]
    assert (await session_json(http, server))["message"] is None


async def test_viewers_are_told_the_sessions_name_and_that_a_vm_without_a_clipboard_takes_no_text(
    make_server, viewers, http
):
    """The console shows the name, and offers the clipboard only where the VM has one; a text sent all the same
    is refused, counted, and the viewer told so (not that the VM has it)."""
    server = await make_server(source="synthetic:320x240@30")
    receiver = await viewers(server)
    await receiver.wait_channel_open()
    (first,) = await told_states(receiver, 1)
    assert (first["name"], first["clipboard"]) == (None, False)
    async with http.patch(server.make_url("/api/v1/sessions/default"), json={"name": "Build agent 7"}) as response:
        assert response.status == 200
    (_, renamed) = await told_states(receiver, 2)
    assert renamed == first | {"name": "Build agent 7"}, "told again once the name changes"
    receiver.send_input({"type": "clipboard", "text": "pasted"})
    deadline = time.monotonic() + 10
    while not (outcomes := [m for m in receiver.messages if m.get("type") == "clipboard_outcome"]):
        assert time.monotonic() < deadline, "the viewer was never told what became of its text"
        await asyncio.sleep(0.05)
    assert outcomes == [{"type": "clipboard_outcome", "accepted": False, "message": "the VM has no clipboard to share"}]
    assert (await session_json(http, server))["stats"]["clipboard_refused"] == 1


def test_printable_bounds_and_cleans_text():
    assert printable("a\nb", 80) == "a?b"
    assert printable("x" * 300, 200) == "x" * 200 + "…"
