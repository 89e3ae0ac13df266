"""A viewer on a weak link: lost packets are sent again, and its keyframe requests cannot flood the session."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.conftest import wait_for
from vgpustream.api.state import REGISTRY
from vgpustream.audience.publisher import VIEWER_KEYFRAME_INTERVAL
from vgpustream.audience.seat import LINK_WINDOW
from vgpustream.testing.netem import LossyLink
from vgpustream.testing.receiver import WhepReceiver
from vgpustream.transports.linkjudge import POOR_LOSS


async def test_a_lossy_viewer_gets_its_lost_packets_again(make_server, http):
    server = await make_server(source="synthetic:320x240@15?pattern=text")
    link = LossyLink(loss=0.0, rtt_ms=60, seed=3)
    await link.open()
    receiver = WhepReceiver(str(server.make_url("/whep/default")), http, link=link)
    try:
        await receiver.connect()
        await receiver.next_frame()
        link.impair(loss=0.05, rtt_ms=60)
        stats = await receiver.receive_for(6.0)
        numbers = sorted({s.frame for s in stats.stamps})[10:]  # from well after the loss began
        expected = numbers[-1] - numbers[0] + 1
        assert link.stats.dropped > 20, "the link must really lose packets"
        # without retransmission about a third of these 6-8 packet frames would miss a packet
        assert len(numbers) >= 0.9 * expected, f"{len(numbers)} of {expected} frames: NACKed packets must be resent"
    finally:
        await receiver.close()
        link.close()


async def test_one_viewers_keyframe_requests_are_limited_and_the_others_still_pass(make_server, viewers):
    server = await make_server(source="synthetic:320x240@30?still=1")  # a still picture: no periodic IDRs
    session = server.app[REGISTRY].get("default")
    asking, other = await viewers(server), await viewers(server)
    await asking.next_frame()
    await other.next_frame()
    await asyncio.sleep(VIEWER_KEYFRAME_INTERVAL)  # past the joins' own requests

    keyframes = session.capture.stats.keyframes
    for _ in range(10):
        await asking.send_pli()
        await asyncio.sleep(0.05)
    await wait_for(
        lambda: session.audience.stats.keyframe_requests_limited >= 9, what="the requests reached the server"
    )
    await wait_for(lambda: session.capture.stats.keyframes > keyframes, what="the first request's IDR")
    await asyncio.sleep(0.5)  # time for any more IDRs, which would be wrong
    assert session.capture.stats.keyframes - keyframes == 1, "ten requests within the interval cost one IDR"
    assert session.audience.stats.keyframe_requests_limited == 9
    await other.send_pli()
    await wait_for(lambda: session.capture.stats.keyframes - keyframes >= 2, what="the other viewer's IDR")
    assert session.capture.stats.keyframes - keyframes == 2, "another viewer's request still goes through"


async def test_a_viewer_whose_link_loses_too_much_is_told_and_told_again_when_it_recovers(make_server, http):
    server = await make_server(source="synthetic:320x240@30?pattern=text")
    session = server.app[REGISTRY].get("default")
    link = LossyLink(seed=5)
    await link.open()
    receiver = WhepReceiver(str(server.make_url("/whep/default")), http, link=link)

    async def within_a_few_windows(done: Callable[[], bool], what: str) -> None:
        for _ in range(6 * round(LINK_WINDOW)):  # receiver reports get lost on such a link too
            if done():
                return
            await receiver.receive_for(1.0)
        raise AssertionError(f"{what}: {receiver.messages}")

    try:
        await receiver.connect()
        await receiver.next_frame()
        await receiver.wait_channel_open()
        (viewer,) = list(session.audience)
        link.impair(loss=0.0, rtt_ms=40, rate_kbps=100)  # a slow uplink: the stream needs several times that
        await within_a_few_windows(lambda: viewer.link is not None and viewer.link.quality == "poor", "never poor")
        assert viewer.link.loss > POOR_LOSS
        assert viewer.to_json()["link"]["quality"] == "poor"
        link.impair(loss=0.0, rtt_ms=0)
        # the data channel delivers what was sent on the lossy link once it can: in order
        said = lambda: [m["quality"] for m in receiver.messages if m["type"] == "link"]  # noqa: E731
        await within_a_few_windows(lambda: said() == ["poor", "good"], "not told poor, then good")
    finally:
        await receiver.close()
        link.close()
