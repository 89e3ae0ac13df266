"""The clipboard both ways against a real QEMU: an aiortc viewer, QEMU's D-Bus clipboard and a guest agent.

The guest is the rig's Linux (tests/qemu/rig_guest.py) with `-chardev qemu-vdagent,clipboard=on` on a
virtio-serial port, running a small agent that speaks the vdagent protocol (tests/qemu/vdagent.py): it
copies GUEST_TEXT, then prints the host's text once the host copies something.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

from tests.qemu.rig_guest import RigGuest
from tests.test_console import console_page
from vgpustream.api.state import REGISTRY
from vgpustream.input.clipboard import MAX_TEXT_BYTES, PART_CHARS
from vgpustream.testing.qemu import wait_for

GUEST_TEXT = "copied in the guest: ünïcödé ✓ 🐧"
BROWSER_TEXT = "pasted from the browser: ✓ 🐧\nsecond line"
FLOOD = 1_500
"""Clipboard messages a view-only viewer sends at once: each refused and counted."""
AGENT = "-chardev qemu-vdagent,id=vdagent,clipboard=on -device virtserialport,chardev=vdagent,name=com.redhat.spice.0"


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RigGuest]:
    guest = RigGuest(tmp_path_factory.mktemp("clipboard"), "", AGENT, ["python3", "tests/qemu/vdagent.py", GUEST_TEXT])
    yield guest
    guest.stop()


def clipboard_texts(viewer) -> list[str]:
    """The whole texts a viewer was sent, parts joined."""
    texts, parts = [], []
    for message in viewer.messages:
        if message.get("type") == "clipboard":
            parts.append(message["text"])
            if not message.get("more"):
                texts.append("".join(parts))
                parts = []
    return texts


async def test_text_goes_guest_to_viewers_and_back_and_bad_input_is_refused(
    guest: RigGuest, make_server, viewers, http
):
    server = await make_server(source=f"qemu-dbus:{guest.bus.address}")
    session = server.app[REGISTRY].get("default")

    async def token(**body: str) -> str:
        async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json=body) as response:
            return (await response.json())["token"]

    controller = await viewers(server)  # the operator's token: readwrite
    onlooker = await viewers(server, token=await token(role="view"))  # read, a view token's default
    reader = await viewers(server, token=await token(role="control", clipboard="read"))
    left_out = await viewers(server, token=await token(role="view", clipboard="none"))
    await asyncio.gather(*(v.wait_channel_open() for v in (controller, onlooker, reader, left_out)))

    # the guest copies: every viewer that may read the clipboard is sent the text
    for viewer in (controller, onlooker, reader):
        await asyncio.to_thread(wait_for, lambda v=viewer: GUEST_TEXT in clipboard_texts(v), 120, "the guest's text")
    stats = session.audience.clipboard_stats
    assert stats.clipboard_from_guest >= 1
    assert clipboard_texts(left_out) == [], "a token with clipboard none is sent nothing"

    # what a viewer may not send is refused and counted, and nothing of it reaches the guest
    # a flood from a view-only viewer, within the burst a viewer may send (--input-burst, 2000 by default;
    # past it the viewer is disconnected: tests/test_abuse.py)
    for _ in range(FLOOD):
        onlooker.send_input({"type": "clipboard", "text": "flood"})
    huge = "x" * PART_CHARS
    for index in range(10 * MAX_TEXT_BYTES // PART_CHARS):  # 10 MiB, in parts
        controller.send_input(
            {"type": "clipboard", "text": huge, "more": index < 10 * MAX_TEXT_BYTES // PART_CHARS - 1}
        )
    controller.send_message('{"type": "clipboard", "text": "\\ud800 a lone surrogate"}')
    controller.send_message(b'{"type": "clipboard", "text": "\xff\xfe not UTF-8"}')
    reader.send_input({"type": "clipboard", "text": "a control token that may only read"})
    sent = time.monotonic()
    # aiortc's SCTP is pure Python: 10 MiB and the flood take it a while on a loaded machine
    await asyncio.to_thread(wait_for, lambda: stats.clipboard_refused >= FLOOD + 4, 300, "the refusals")
    print(f"{FLOOD + 4} refusals counted {time.monotonic() - sent:.1f} s after the last was sent")
    assert stats.clipboard_refused == FLOOD + 4 and stats.clipboard_to_guest == 0
    assert await controller.next_frame(), "the session goes on streaming"

    # the controlling viewer pastes: the guest gets exactly that text
    controller.send_input({"type": "clipboard", "text": BROWSER_TEXT})
    expected = f"host clipboard: {json.dumps(BROWSER_TEXT)}"
    await asyncio.to_thread(wait_for, lambda: expected in guest.output(), 60, "the text in the guest")
    assert stats.clipboard_to_guest == 1
    async with http.get(server.make_url("/api/v1/sessions/default")) as response:
        described = await response.json()
    assert described["clipboard"] is True and described["stats"]["clipboard_refused"] == FLOOD + 4

    # the audit trail says who moved how much, never what
    async with http.get(server.make_url("/api/v1/events?session=default&limit=1000")) as response:
        events = (await response.json())["events"]
    from_guest = [e for e in events if e["type"] == "clipboard.from_guest"]
    to_guest = [e for e in events if e["type"] == "clipboard.to_guest"]
    readers = {viewer.location.rsplit("/", 1)[1] for viewer in (controller, onlooker, reader)}
    assert any(readers <= set(e["viewers"]) for e in from_guest), from_guest
    assert all(left_out.location.rsplit("/", 1)[1] not in e["viewers"] for e in from_guest)
    assert {e["characters"] for e in from_guest} == {len(GUEST_TEXT)}
    assert [(e["viewer"], e["characters"]) for e in to_guest] == [
        (controller.location.rsplit("/", 1)[1], len(BROWSER_TEXT))
    ], "one write reached the guest; the refused ones are no event"
    assert GUEST_TEXT not in json.dumps(events) and BROWSER_TEXT not in json.dumps(events)


@pytest.mark.browser
async def test_the_console_shows_the_guests_text_and_sends_a_paste_and_the_panels_text(
    guest: RigGuest, make_server, http
):
    server = await make_server(source=f"qemu-dbus:{guest.bus.address}")
    async with console_page(server, http, 1) as (page, errors):
        await page.click("#clipboard-toggle")
        text = page.locator("#clipboard-text")
        await page.wait_for_function(
            f"() => document.getElementById('clipboard-text').value === {json.dumps(GUEST_TEXT)}"
        )
        assert await page.locator("#clipboard-note").text_content() != ""
        # a paste into the console goes to the VM
        pasted = "pasted into the console ✓"
        await page.evaluate(
            """(text) => {
              const data = new DataTransfer();
              data.setData("text/plain", text);
              document.getElementById("stage").dispatchEvent(new ClipboardEvent("paste", { clipboardData: data }));
            }""",
            pasted,
        )
        await asyncio.to_thread(
            wait_for, lambda: f"host clipboard: {json.dumps(pasted)}" in guest.output(), 60, "paste"
        )
        # so does the panel's text
        await text.fill(BROWSER_TEXT + " (panel)")
        await page.click("#clipboard-send")
        sent = f"host clipboard: {json.dumps(BROWSER_TEXT + ' (panel)')}"
        await asyncio.to_thread(wait_for, lambda: sent in guest.output(), 60, "the panel's text in the guest")
        await page.wait_for_function("() => document.getElementById('clipboard-note').textContent === 'sent to the VM'")
        assert errors == []
    # a link that may only read the clipboard: its console never says the VM has its text
    async with console_page(server, http, 1, clipboard="read") as (page, errors):
        await page.click("#clipboard-toggle")
        await page.locator("#clipboard-text").fill("not for the VM")
        await page.click("#clipboard-send")
        await page.wait_for_function("() => document.getElementById('clipboard-note').textContent.startsWith('not')")
        note = await page.locator("#clipboard-note").text_content()
        assert note == "not sent to the VM: this link may not write the VM's clipboard"
        assert errors == []
