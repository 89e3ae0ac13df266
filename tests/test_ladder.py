"""A viewer on a thin link steps down a rung of its codec (the same size, half the frame rate, a quarter and
then an eighth of the bitrate), and back up once its link carries more (vgpustream.ladder)."""

from __future__ import annotations

import asyncio

from tests.conftest import wait_for
from vgpustream.api.state import REGISTRY
from vgpustream.ladder import MAX_UP_AFTER, PROBE_WINDOW, SETTLE, UP_AFTER, RungPolicy
from vgpustream.renditions import TOP
from vgpustream.testing.netem import LossyLink


def test_a_poor_link_steps_down_at_once_and_a_good_one_up_after_a_while():
    policy = RungPolicy()
    assert policy.judge(0.0, True, at_top=True, at_bottom=False) == 1
    assert policy.judge(1.0, True, at_top=False, at_bottom=False) == 0, "the verdicts just after a change wait"
    assert policy.judge(SETTLE + 1, False, at_top=False, at_bottom=False) == 0
    assert policy.judge(SETTLE + 1 + UP_AFTER, False, at_top=False, at_bottom=False) == -1
    assert policy.judge(100.0, True, at_top=False, at_bottom=True) == 0, "nowhere lower to go"


def test_a_probe_that_fails_doubles_the_wait_before_the_next():
    policy, now = RungPolicy(), 0.0
    assert policy.judge(now, True, at_top=True, at_bottom=False) == 1
    for failed in range(1, 6):
        waited = policy.up_after
        now += SETTLE
        assert policy.judge(now, False, at_top=False, at_bottom=False) == 0
        now += waited
        assert policy.judge(now, False, at_top=False, at_bottom=False) == -1, "a probe"
        now += SETTLE
        assert policy.judge(now, True, at_top=True, at_bottom=False) == 1, "it failed: down again"
        assert SETTLE < PROBE_WINDOW and policy.up_after == min(UP_AFTER * 2**failed, MAX_UP_AFTER)


async def test_a_capped_viewer_steps_down_while_the_other_keeps_the_top_and_comes_back_up(make_server, viewers):
    server = await make_server(source="synthetic:640x360@30?pattern=text", bitrate=2_000_000)
    session = server.app[REGISTRY].get("default")
    link = LossyLink(rate_kbps=600)
    await link.open()
    try:
        capped = await viewers(server, link=link)
        free = await viewers(server)
        # both read all along: what the test measures is the stream, not frames left waiting in the track
        reading = [asyncio.create_task(viewer.receive_for(120)) for viewer in (capped, free)]
        await wait_for(
            lambda: any(seat.rendition is not None and seat.rendition.rung > 0 for seat in session.audience),
            timeout=30,
            what="the capped viewer on a lower rung",
        )
        moved = [seat for seat in session.audience if seat.rendition.rung > 0]
        assert len(moved) == 1 and session.audience.stats.rung_changes >= 1
        stayed = [seat for seat in session.audience if seat.rendition == TOP]
        assert len(stayed) == 1, "the free viewer keeps the top rung"
        await asyncio.sleep(2 * SETTLE)  # settled on the rung that fits
        (figures,) = [f for f in session.rendition_figures() if f.rendition.rung > 0]
        assert figures.seats == 1 and 10 <= figures.fps <= 20 and figures.bitrate < 600_000, figures
        # frames that waited for retransmissions while the link was overrun drain; then it keeps up
        await wait_for(
            lambda: capped.stats.latencies_ms and capped.stats.latencies_ms[-1] < 500,
            timeout=40,
            what="the capped viewer's frames on time",
        )
        settled = len(capped.stats.latencies_ms)
        await asyncio.sleep(5.0)
        ages = capped.stats.latencies_ms[settled:]
        assert len(ages) >= 40 and max(ages) < 1000, f"the capped viewer's frames arrive {ages} ms after capture"
        before = free.stats.frames
        await asyncio.sleep(2.0)
        assert (free.stats.frames - before) / 2.0 > 25, "the free viewer keeps the top rung's frame rate"
        link.impair(loss=0.0, rtt_ms=0, rate_kbps=None)  # the cap is lifted
        await wait_for(
            lambda: all(seat.rendition == TOP for seat in session.audience),
            timeout=UP_AFTER * 2 + 3 * SETTLE + 10,
            what="the viewer back on the top rung",
        )
        frames = capped.stats.frames
        await wait_for(lambda: capped.stats.frames > frames + 30, what="the capped viewer's frames on the top rung")
    finally:
        for task in reading:
            task.cancel()
        link.close()
