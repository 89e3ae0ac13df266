"""The WebSocket transport (issue 22): the session's own packets, its tokens and seats, and bad input."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.browser import chromium, playing_console
from tests.conftest import OPERATOR_TOKEN, wait_for
from tests.test_auth import issue
from tests.test_lifecycle import settle, within
from vgpustream.api.state import AUDIT, REGISTRY
from vgpustream.testing.wsreceiver import WebSocketReceiver, WebSocketRefused
from vgpustream.transports.websocket import PROTOCOL


async def ws_viewer(http, server, token: str | None) -> WebSocketReceiver:
    receiver = WebSocketReceiver(str(server.make_url("/ws/default")), http, token)
    await receiver.connect()
    return receiver


async def refused(http, server, first: str | bytes | None) -> tuple[int | None, str]:
    """Open /ws/default, send `first` (nothing for None), and return the code and reason it was closed with."""
    async with http.ws_connect(server.make_url("/ws/default"), protocols=(PROTOCOL,)) as socket:
        if isinstance(first, bytes):
            await socket.send_bytes(first)
        elif first is not None:
            await socket.send_str(first)
        message = await asyncio.wait_for(socket.receive(), 15)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
        return socket.close_code, str(message.extra or "")


async def test_a_websocket_viewer_gets_the_session_s_frames_from_a_keyframe(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    viewer = await ws_viewer(http, server, (await issue(http, server, role="view"))["token"])
    assert viewer.welcome is not None and viewer.welcome["video"]["codec"].startswith("avc1.42")
    frames = [await viewer.next_frame() for _ in range(10)]
    assert viewer.keyframes >= 1 and all(f.picture.width == 320 for f in frames)
    numbers = [f.stamp.frame for f in frames if f.stamp is not None]
    assert len(numbers) == 10 and numbers == sorted(numbers), "stamped frames, in order"
    await wait_for(lambda: any(m.get("type") == "state" for m in viewer.messages), what="the display's state")
    (seat,) = server.app[REGISTRY].get("default").audience
    assert seat.to_json()["transport"] == "websocket" and seat.connection_state == "connected"
    await viewer.close()


async def test_a_joiner_is_told_the_display_s_state_before_its_first_frame(make_server, http):
    """The console shows "playing" with the first picture, not "starting" until the next capture step."""
    server = await make_server(source="synthetic:320x240@30")
    token = (await issue(http, server, role="view"))["token"]
    first = await ws_viewer(http, server, token)
    await first.next_frame()  # the session runs: a joiner gets the replay at once
    joiner = await ws_viewer(http, server, token)
    await joiner.next_frame()
    assert [m["state"] for m in joiner.told_before_video or [] if m["type"] == "state"] == ["streaming"]
    await asyncio.gather(first.close(), joiner.close())


async def test_a_link_minted_for_a_transport_names_it_and_the_websocket_address(make_server, http, anonymous):
    server = await make_server(source="synthetic:320x240@30")
    automatic = await issue(http, server, role="view")
    assert "transport=" not in automatic["console_url"], "auto is the console's own choice"
    issued = await issue(http, server, role="view", transport="websocket")
    assert issued["console_url"].endswith(f"/?session=default&transport=websocket#token={issued['token']}")
    viewer = WebSocketReceiver(issued["websocket_url"], anonymous, issued["token"])
    await viewer.connect()
    assert (await viewer.next_frame()).picture.width == 320
    await viewer.close()
    tokens = server.make_url("/api/v1/sessions/default/tokens")
    async with http.post(tokens, json={"role": "view", "transport": "pigeon"}) as response:
        assert response.status == 400 and "transport" in await response.text()


async def test_input_from_a_websocket_reaches_the_vm_only_with_a_control_token(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    session = server.app[REGISTRY].get("default")
    sink = session.capture.input_sink
    watcher = await ws_viewer(http, server, (await issue(http, server, role="view"))["token"])
    watcher.send_input({"type": "key", "code": "KeyB", "down": True})
    await wait_for(lambda: session.audience.stats.input_refused == 1, what="a view token's key refused")
    typist = await ws_viewer(http, server, (await issue(http, server, role="control"))["token"])
    typist.send_input({"type": "key", "code": "KeyA", "down": True})
    await wait_for(lambda: "KeyA" in sink.keys_down, what="the key in the VM")
    await typist.close()
    await wait_for(lambda: "KeyA" not in sink.keys_down, what="its held key released when it left")
    await watcher.close()
    joined = [e.data for e in server.app[AUDIT].events("default") if e.type == "viewer.joined"]
    assert [e["transport"] for e in joined] == ["websocket", "websocket"], joined


async def test_one_encode_serves_webrtc_and_websocket_viewers_at_once(make_server, http, viewers):
    # every frame new: a still desktop's sharpening encode has no capture of its own
    server = await make_server(source="synthetic:320x240@30?pattern=text")
    session = server.app[REGISTRY].get("default")
    token = (await issue(http, server, role="view"))["token"]
    sockets = [await ws_viewer(http, server, token) for _ in range(2)]
    peers = [await viewers(server) for _ in range(2)]
    for receiver in (*sockets, *peers):
        await receiver.next_frame()
    stats = session.capture.stats
    captured, encoded = stats.frames_captured, stats.frames_encoded
    for receiver in (*sockets, *peers):
        for _ in range(15):
            await receiver.next_frame()
    assert stats.frames_encoded - encoded == stats.frames_captured - captured > 0, "one encode for all four"
    async with http.get(server.make_url("/api/v1/sessions/default/viewers")) as response:
        listed = {viewer["transport"] for viewer in (await response.json())["viewers"]}
    assert listed == {"webrtc", "websocket"}
    for socket in sockets:
        await socket.close()


async def test_bad_first_messages_and_tokens_close_the_socket_with_a_reason(make_server, http, anonymous):
    server = await make_server(source="synthetic:320x240@30", viewer_connect_timeout=1.0)
    view = (await issue(http, server, role="view"))["token"]
    cases = {
        "no token": (json.dumps({"type": "auth"}), 4401),
        "a wrong token": (json.dumps({"type": "auth", "token": "vgs_not-a-token"}), 4403),
        "not an auth message": (json.dumps({"type": "key", "code": "KeyA", "down": True}), 4400),
        "not JSON": ("{{{", 4400),
        "binary first": (b"\x00\x01", 4400),
        "nothing in time": (None, 4400),
    }
    for case, (first, code) in cases.items():
        closed, reason = await refused(anonymous, server, first)
        assert closed == code and reason, (case, closed, reason)
    viewer = await ws_viewer(anonymous, server, view)
    viewer.send_text(json.dumps({"type": "auth", "token": view}))
    assert (await asyncio.wait_for(viewer.closed, 10))[0] == 4400, "a token sent twice"
    viewer = await ws_viewer(anonymous, server, view)
    await viewer.send_bytes(b"\x00" * 16)
    assert (await asyncio.wait_for(viewer.closed, 10))[0] == 1003, "binary from the browser"
    viewer = await ws_viewer(anonymous, server, view)
    viewer.send_text("x" * (300 * 1024))
    assert (await asyncio.wait_for(viewer.closed, 10))[0] == 1009, "a message over the size limit"
    session = server.app[REGISTRY].get("default")
    await wait_for(lambda: len(session.audience) == 0, what="every seat given back")
    watcher = await ws_viewer(anonymous, server, view)
    assert (await watcher.next_frame()).picture.width == 320, "the session streams on"
    await watcher.close()


async def test_revoking_a_token_closes_its_websocket_with_a_reason(make_server, http, anonymous):
    server = await make_server(source="synthetic:320x240@30")
    issued = await issue(http, server, role="control")
    viewer = await ws_viewer(anonymous, server, issued["token"])
    await viewer.next_frame()
    async with http.delete(server.make_url(f"/api/v1/sessions/default/tokens/{issued['id']}")) as response:
        assert response.status in (200, 204)
    code, _ = await asyncio.wait_for(viewer.closed, 15)
    assert code == 4403, code
    (told,) = [m for m in viewer.messages if m.get("type") == "disconnect"]
    assert told["message"] == "the link was revoked", told
    await wait_for(lambda: len(server.app[REGISTRY].get("default").audience) == 0, what="its seat given back")


async def test_a_full_session_closes_a_websocket_with_4503(make_server, http, anonymous):
    server = await make_server(source="synthetic:320x240@30", max_viewers=1)
    first = await ws_viewer(http, server, OPERATOR_TOKEN)
    viewer = WebSocketReceiver(str(server.make_url("/ws/default")), http, OPERATOR_TOKEN)
    try:
        await viewer.connect()
    except WebSocketRefused as error:
        assert error.code == 4503, error
    else:
        raise AssertionError("a second viewer of a full session was let in")
    await first.close()


async def test_a_socket_that_does_not_drain_skips_ahead_and_holds_up_no_one(make_server, http):
    """A browser that reads nothing (a stalled tab): its queue overflows and skips to the next keyframe, its
    delay stays bounded, and a viewer beside it gets every frame on time."""
    server = await make_server(source="synthetic:1280x720@30?pattern=text", bitrate=20_000_000, keyframe_interval=1.0)
    session = server.app[REGISTRY].get("default")
    token = (await issue(http, server, role="view"))["token"]
    async with http.ws_connect(server.make_url("/ws/default"), protocols=(PROTOCOL,)) as stalled:
        await stalled.send_str(json.dumps({"type": "auth", "token": token}))  # and never reads again
        watcher = await ws_viewer(http, server, token)
        await wait_for(
            lambda: any(v.queue.dropped for v in session.audience),
            timeout=60,
            what="the stalled socket's queue overflows",
        )
        fresh = [await watcher.next_frame() for _ in range(30)]
        assert all(frame.stamp is not None for frame in fresh)
        numbers = [frame.stamp.frame for frame in fresh]
        assert numbers[-1] - numbers[0] < 40, f"the watcher skipped nothing: {numbers}"
        stalled_seat = next(v for v in session.audience if v.queue.dropped)
        assert len(stalled_seat.queue) <= stalled_seat.queue.capacity, "its backlog is bounded"
        await watcher.close()


async def churn(url: str, client, token: str, count: int) -> None:
    """`count` sockets to `url`, one after another: every other one with a wrong token (refused), every fourth
    reads a frame first; each closed by the browser."""
    for n in range(count):
        viewer = WebSocketReceiver(url, client, token if n % 2 else "vgs_wrong")
        try:
            await viewer.connect()
        except WebSocketRefused:
            continue
        if n % 4 == 1:
            await viewer.next_frame()
        await viewer.close()


async def test_sockets_opened_and_dropped_leave_nothing_behind(make_server, http, anonymous):
    server = await make_server(source="synthetic:320x240@30")
    token = (await issue(http, server, role="view"))["token"]
    await (await ws_viewer(anonymous, server, token)).close()  # warm-up: lazily made pools and caches
    baseline = await settle((0, 0), seconds=2.0)
    await churn(str(server.make_url("/ws/default")), anonymous, token, 200)
    session = server.app[REGISTRY].get("default")
    await wait_for(lambda: len(session.audience) == 0, what="every seat given back")
    after = await settle(baseline)
    assert within(after, baseline), f"(fds, tasks) were {baseline}, now {after}"
    watcher = await ws_viewer(anonymous, server, token)
    assert (await watcher.next_frame()).picture.width == 320, "the session streams on"
    await watcher.close()


@pytest.mark.browser
async def test_the_console_plays_over_the_websocket_and_input_reaches_the_vm(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    session = server.app[REGISTRY].get("default")
    sink = session.capture.input_sink
    issued = await issue(http, server, role="control", transport="websocket")
    assert "&transport=websocket#token=" in issued["console_url"], issued
    async with chromium() as browser:
        page, errors = await playing_console(browser, issued["console_url"])
        await page.wait_for_function("() => document.getElementById('screen').videoWidth === 320", timeout=20_000)
        assert await page.evaluate("window.vgpustream.transport") == "websocket"
        assert "WebSocket" in await page.locator("#connection").text_content()
        (seat,) = session.audience
        assert seat.transport == "websocket"
        await page.locator("#stage").focus()
        await page.keyboard.down("KeyQ")
        await wait_for(lambda: "KeyQ" in sink.keys_down, what="the key pressed in the page, in the VM")
        await page.keyboard.up("KeyQ")
        assert not errors, errors
