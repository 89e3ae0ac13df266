"""A viewer on a thin link steps down a rung of its codec (the same size, a lower bitrate and frame rate:
vgpustream.media.encoder.RUNGS), and back up once its link carries more (vgpustream.audience.ladder)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.browser import chromium
from tests.conftest import OPERATOR_TOKEN, wait_for
from vgpustream.api.state import REGISTRY
from vgpustream.audience.ladder import (
    FIT_AFTER,
    MAX_UP_AFTER,
    PROBE_WINDOW,
    RATE_WINDOW,
    SETTLE,
    UP_AFTER,
    Estimates,
    RungPolicy,
)
from vgpustream.audience.seat import LINK_WINDOW
from vgpustream.bench.capped import Console
from vgpustream.media.encoder import EncoderSettings
from vgpustream.media.renditions import RUNGS, TOP, Rendition
from vgpustream.testing.netem import LossyLink, SlowTcpLink
from vgpustream.testing.receiver import an_offer
from vgpustream.testing.wsreceiver import WebSocketReceiver


def test_a_poor_link_steps_down_at_once_and_a_good_one_up_after_a_while():
    policy = RungPolicy()
    assert policy.judge(0.0, True, at_top=True, at_bottom=False) == 1
    assert policy.judge(1.0, True, at_top=False, at_bottom=False) == 0, "the verdicts just after a change wait"
    assert policy.judge(SETTLE + 1, False, at_top=False, at_bottom=False) == 0
    assert policy.judge(SETTLE + 1 + UP_AFTER, False, at_top=False, at_bottom=False) == -1
    assert policy.judge(100.0, True, at_top=False, at_bottom=True) == 0, "nowhere lower to go"


def test_a_link_whose_rate_is_measured_steps_up_once_it_shows_room_and_never_probes_blind():
    policy = RungPolicy()
    assert policy.judge(0.0, True, at_top=True, at_bottom=False, overrun=True) == 1
    for now in range(int(SETTLE), 100):  # a good link whose measured rate fits no higher rung: it stays
        assert policy.judge(float(now), False, at_top=False, at_bottom=False, room=False) == 0
    assert policy.judge(100.0, False, at_top=False, at_bottom=False, room=True) == 0, "room, not for long yet"
    assert policy.judge(100.0 + FIT_AFTER, False, at_top=False, at_bottom=False, room=True) == -1
    assert FIT_AFTER < UP_AFTER


@pytest.mark.parametrize(("room", "wait", "first"), [(None, "up_after", UP_AFTER), (True, "fit_after", FIT_AFTER)])
def test_a_step_up_that_fails_doubles_the_wait_before_the_next(room: bool | None, wait: str, first: float):
    """A blind probe (the link's rate not measured: room None) or a step up the measured rate led to."""
    policy, now = RungPolicy(), 0.0
    assert policy.judge(now, True, at_top=True, at_bottom=False) == 1
    for failed in range(1, 6):
        waited = getattr(policy, wait)
        now += SETTLE
        assert policy.judge(now, False, at_top=False, at_bottom=False, room=room) == 0
        now += waited
        assert policy.judge(now, False, at_top=False, at_bottom=False, room=room) == -1, "a step up"
        now += SETTLE
        assert policy.judge(now, True, at_top=True, at_bottom=False, room=room and False) == 1, "it failed: down"
        assert SETTLE < PROBE_WINDOW and getattr(policy, wait) == min(first * 2**failed, MAX_UP_AFTER)


@pytest.mark.browser
async def test_a_capped_console_steps_down_at_once_while_the_other_keeps_the_top_and_comes_back_up(make_server, http):
    """Two Chromium consoles; one link narrows under the running stream: that console is on a rung that fits
    within 5 s (its transport-cc feedback shows the link's rate: vgpustream.transports.congestion) and plays on,
    the other keeps the top rung; when the link widens again the capped one is back on the top within seconds, with no
    blind probe. (aiortc's receiver is no stand-in here: it sends no transport-cc feedback, and through a link
    its stream overruns it shows no picture for tens of seconds.)"""
    server = await make_server(source="synthetic:640x360@30?pattern=text", bitrate=2_000_000)
    session = server.app[REGISTRY].get("default")
    link = LossyLink()
    await link.open()

    async def console(through: LossyLink | None) -> Console:
        async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view"}) as response:
            url = (await response.json())["console_url"]
        page = await browser.new_page()
        if through is not None:
            await page.route("**/whep/default", through.route)
        await page.goto(url)
        opened = Console(page)
        await opened.start()
        return opened

    try:
        async with chromium() as browser:
            free = await console(None)
            capped = await console(link)
            assert [seat.rendition for seat in session.audience] == [TOP, TOP]
            link.impair(loss=0.0, rtt_ms=0, rate_kbps=400)  # the top rung sends about 1.5 Mbit/s
            await wait_for(
                lambda: any(seat.rendition.rung > 0 for seat in session.audience),
                timeout=5,
                what="the capped console on a lower rung within 5 s",
            )
            await asyncio.sleep(SETTLE)
            rungs = sorted(seat.rendition.rung for seat in session.audience)
            assert rungs == [0, len(RUNGS) - 1], "the capped console on the rung that fits, the other on the top"
            async with http.get(server.make_url("/api/v1/sessions/default/viewers")) as response:
                links = [viewer["link"] for viewer in (await response.json())["viewers"]]
            capped_link = next(link for link in links if (link["estimate_bps"] or 0) < 1_000_000)
            assert capped_link["measured"] and 300_000 < capped_link["estimate_bps"] < 500_000, capped_link
            await capped.read()
            await asyncio.sleep(3.0)
            assert (await capped.read())["fps"] >= 10, "the capped console plays on"
            assert (await free.read())["fps"] >= 20, "the free console keeps the top rung's frame rate"
            link.impair(loss=0.0, rtt_ms=0, rate_kbps=None)  # the cap is lifted
            await wait_for(
                lambda: all(seat.rendition == TOP for seat in session.audience),
                timeout=FIT_AFTER + 5,
                what="the capped console back on the top rung within seconds",
            )
    finally:
        link.close()


def test_a_receiver_estimate_that_falls_far_below_what_the_viewer_is_sent_says_its_link_is_overrun():
    estimates = Estimates()
    sent = 0
    for second in range(4):  # 2 Mbit/s sent, estimated at 1.5 Mbit/s: a browser's estimate climbs slowly
        sent += 250_000
        assert not estimates.add(float(second), 1_500_000, sent)
    assert not estimates.add(4.0, 1_200_000, sent + 250_000), "a fall that stays near what it is sent: a burst"
    assert estimates.add(4.5, 600_000, sent + 375_000), "far below both: the link cannot carry the stream"
    assert estimates.latest == 600_000


def test_a_step_down_goes_to_the_highest_rung_the_estimate_fits_and_a_step_up_to_the_highest_it_has_room_for():
    top = EncoderSettings(bitrate=4_000_000)  # rungs: 4, 1.33, 0.67 and 0.33 Mbit/s
    assert [Rendition("h264", rung).settings(top).fps for rung in range(len(RUNGS))] == [30, 20, 20, 15]
    assert TOP.lower_within(None, top) == Rendition("h264", 1), "without an estimate: one rung"
    assert TOP.lower_within(2_000_000, top) == Rendition("h264", 1)
    assert TOP.lower_within(1_000_000, top) == Rendition("h264", 2), "1 Mbit/s leaves room for headers and sound"
    assert TOP.lower_within(0, top) == Rendition("h264", 3), "nothing fits: the bottom"
    assert Rendition("h264", 3).lower_within(0, top) is None
    assert Rendition("h264", 3).higher_within(1_000_000, top) == Rendition("h264", 2)
    assert Rendition("h264", 3).higher_within(10_000_000, top) == TOP, "straight to the top where it fits"
    assert Rendition("h264", 2).higher_within(1_000_000, top) is None
    two = EncoderSettings(bitrate=4_000_000, rungs=2)  # a session whose ladder is capped at two rungs
    assert TOP.lower_within(0, two) == Rendition("h264", 1)
    assert Rendition("h264", 1).lower(two) is None
    assert Rendition("h264", 2).within(two) == Rendition("h264", 1)


def test_an_overrun_rung_steps_down_even_while_the_last_change_settles():
    policy = RungPolicy()
    assert policy.judge(0.0, True, at_top=True, at_bottom=False) == 1
    assert policy.judge(1.0, True, at_top=False, at_bottom=False) == 0
    assert policy.judge(1.5, True, at_top=False, at_bottom=False, overrun=True) == 1


async def test_a_viewer_whose_receiver_says_its_link_carries_nothing_goes_to_the_bottom_rung_at_once(
    make_server, viewers
):
    """Bad input from a receiver: an estimate of 0 moves only that viewer (to the bottom rung, at once, not at
    its link window's end); one of 10 Gbit/s moves nobody; the session streams on."""
    server = await make_server(source="synthetic:320x240@30?pattern=text", bitrate=2_000_000)
    session = server.app[REGISTRY].get("default")
    starved, other = await viewers(server), await viewers(server)
    reading = [asyncio.create_task(viewer.receive_for(60)) for viewer in (starved, other)]
    try:
        await asyncio.sleep(2.5)  # the server knows what it sends each viewer
        await starved.send_estimate(5_000_000)
        await other.send_estimate(10**10)
        await asyncio.sleep(RATE_WINDOW + 0.2)  # the estimates know what the viewer is sent from their first on
        await starved.send_estimate(0)
        await wait_for(
            lambda: any(s.rendition is not None and s.rendition.rung == len(RUNGS) - 1 for s in session.audience),
            timeout=LINK_WINDOW - 1,
            what="the starved viewer on the bottom rung before its link window ends",
        )
        assert [s.rendition for s in session.audience].count(TOP) == 1, "the other viewer keeps the top rung"
        frames = other.stats.frames
        await wait_for(lambda: other.stats.frames > frames + 20, what="the other viewer's stream going on")
    finally:
        for task in reading:
            task.cancel()


async def test_a_viewer_pinned_to_a_rung_stays_there_whatever_its_link_says(make_server, http, viewers):
    """`quality=` on WHEP and the WebSocket: the viewer takes that rung, in the API, and the ladder does not move it
    (not even a receiver estimate of 0); one below the session's last rung takes the last."""
    server = await make_server(source="synthetic:320x240@30?pattern=text", bitrate=2_000_000)
    session = server.app[REGISTRY].get("default")
    low = await viewers(server, "default?quality=2")
    top = await viewers(server, "default?quality=0")
    socket = WebSocketReceiver(str(server.make_url("/ws/default?quality=1")), http, OPERATOR_TOKEN)
    await socket.connect()
    try:
        await low.next_frame()
        await top.next_frame()
        await socket.next_frame()
        async with http.get(server.make_url("/api/v1/sessions/default/viewers")) as response:
            listed = {(v["transport"], v["quality"], v["rendition"]) for v in (await response.json())["viewers"]}
        assert listed == {("webrtc", "2", "h264/2"), ("webrtc", "0", "h264"), ("websocket", "1", "h264/1")}
        await wait_for(lambda: len(session.rendition_figures()) == 3, what="one encode per rung taken")
        await top.send_estimate(0)
        await asyncio.sleep(LINK_WINDOW + 1)
        assert {s.rendition.rung for s in session.audience} == {0, 1, 2}, "pinned viewers stay where they asked"
        assert session.audience.stats.rung_changes == 0
    finally:
        await socket.close()


async def test_a_session_s_ladder_cut_short_moves_its_viewers_up_to_its_last_rung(make_server, http, viewers):
    server = await make_server(source="synthetic:320x240@30?pattern=text", bitrate=2_000_000)
    session = server.app[REGISTRY].get("default")
    low = await viewers(server, "default?quality=2")
    await low.next_frame()
    body = {"encoder": {"rungs": 2}}
    async with http.patch(server.make_url("/api/v1/sessions/default"), json=body) as response:
        assert response.status == 200 and (await response.json())["encoder"]["rungs"] == 2
    await wait_for(lambda: [s.rendition.rung for s in session.audience] == [1], what="the viewer on rung 1")
    assert await low.fresh_frames(2.0) >= 10, "its frames on the rung it moved to"
    assert [s.to_json()["quality"] for s in session.audience] == ["1"]
    async with http.patch(server.make_url("/api/v1/sessions/default"), json={"encoder": {"rungs": 5}}) as response:
        assert response.status == 400, "a ladder has at most 4 rungs"
    later = await viewers(server, "default?quality=2")
    await later.next_frame()
    assert sorted(s.rendition.rung for s in session.audience) == [1, 1], "a rung below the last takes the last"


@pytest.mark.parametrize("quality", ["4", "-1", "high", "", "1" * 100])
async def test_a_quality_that_does_not_exist_is_refused_with_the_ones_that_do(make_server, http, quality):
    server = await make_server(source="synthetic:320x240@30")
    session = server.app[REGISTRY].get("default")
    query = {"quality": quality}
    headers = {"Content-Type": "application/sdp"}
    async with http.post(server.make_url("/whep/default"), params=query, data=await an_offer(), headers=headers) as r:
        assert r.status == 400 and "auto, 0, 1, 2, 3" in (await r.json())["error"]["message"]
    async with http.get(server.make_url("/ws/default"), params=query) as response:
        assert response.status == 400, "refused before the upgrade"
    async with http.post(
        server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view", "quality": quality}
    ) as response:
        assert response.status == 400
    assert len(session.audience) == 0


async def test_a_console_link_minted_for_a_quality_names_it(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    body = {"role": "view", "quality": "1", "transport": "websocket"}
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json=body) as response:
        issued = await response.json()
    assert "quality=1" in issued["console_url"] and "transport=websocket" in issued["console_url"]
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view"}) as response:
        assert "quality" not in (await response.json())["console_url"], "auto is the console's own choice"


async def test_a_websocket_viewer_on_a_thin_link_steps_down_by_how_its_socket_drains(make_server, http):
    """The WebSocket transport judges its link by its socket's backlog: a viewer behind a 600 kbit/s relay moves to
    the rung that fits, is told its link is poor, and its frames come on time again; the other keeps the top; both
    are on the top once the link widens."""
    server = await make_server(source="synthetic:640x360@30?pattern=text", bitrate=2_000_000)
    session = server.app[REGISTRY].get("default")
    link = SlowTcpLink(("127.0.0.1", server.port))
    await link.open()
    thin = WebSocketReceiver(f"ws://127.0.0.1:{link.port}/ws/default", http, OPERATOR_TOKEN)
    wide = WebSocketReceiver(str(server.make_url("/ws/default")), http, OPERATOR_TOKEN)
    try:
        for viewer in (thin, wide):
            await viewer.connect()
            await viewer.next_frame()
        link.cap(600)
        await wait_for(
            lambda: any(seat.rendition.rung > 0 for seat in session.audience),
            timeout=2 * LINK_WINDOW + 2,
            what="the thin link's viewer on a lower rung",
        )
        assert [seat.rendition.rung for seat in session.audience].count(0) == 1, "the other keeps the top"
        await wait_for(  # through the same thin link, behind what waits there
            lambda: any(m.get("type") == "link" and m["quality"] == "poor" for m in thin.messages),
            timeout=15,
            what="the viewer told its link is poor",
        )

        moved = time.time()

        async def late_ms() -> float:
            """How late the next frame the viewer received after it moved was, from its capture."""
            while (frame := await thin.next_frame()).received_at < moved or frame.stamp is None:
                pass  # from before it moved, or too blurred at a low rung for the stamp to read
            return frame.received_at * 1000 - frame.stamp.time_ms

        deadline = time.monotonic() + 30
        while await late_ms() >= 500:
            assert time.monotonic() < deadline, "the thin link's frames on time again within 30 s"
        ages = [await late_ms() for _ in range(30)]  # two seconds of the bottom rung's 15 fps
        assert max(ages) < 1000, ages
        assert [seat.rendition.rung for seat in session.audience if seat.rendition == TOP] == [0]
        link.cap(None)
        await wait_for(
            lambda: all(seat.rendition == TOP for seat in session.audience),
            timeout=2 * UP_AFTER + 3 * SETTLE + 10,
            what="the viewer back on the top rung",
        )
    finally:
        await thin.close()
        await wide.close()
        await link.close()
