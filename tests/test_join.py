"""A viewer who joins never watches the past (issue 30).

A joiner is replayed the packets since its rendition's keyframe only while they show the present (the
picture has not changed since the keyframe, or changed first within JOIN_MAX_AGE); otherwise it starts from a
fresh keyframe. A still screen keeps the replay, so that it is sharp at once.
"""

from __future__ import annotations

import asyncio
import time

import av
import pytest

from tests import conftest
from tests.browser import chromium
from tests.test_auth import issue
from vgpustream.api.state import REGISTRY
from vgpustream.audience.audience import Audience
from vgpustream.audience.publisher import JOIN_MAX_AGE, REPLAY_LIMIT, JoinReplay
from vgpustream.audience.seat import Seat
from vgpustream.bench.latency import join_phase
from vgpustream.capture.pipeline import Encoded
from vgpustream.control.auth import Grant
from vgpustream.media.encoder import EncoderSettings
from vgpustream.media.renditions import TOP


def packet(captured_at: float, keyframe: bool = False) -> av.Packet:
    made = av.Packet(b"\0\0\0\1" + bytes(20))
    made.is_keyframe = keyframe
    made.opaque = captured_at
    return made


def step(captured_at: float, *, changed: bool, keyframe: bool = False) -> Encoded:
    return Encoded([packet(captured_at, keyframe)], repeated=not changed, changed=changed)


def test_a_keyframe_refined_since_is_replayed_however_old():
    kept = JoinReplay()
    assert not kept.current(0.0), "nothing kept: a joiner waits for a keyframe"
    kept.add(step(100.0, changed=True, keyframe=True))
    for n in range(1, 40):
        kept.add(step(100.0 + n / 30, changed=False))  # refinements of the same picture
    assert kept.current(160.0) and len(kept.packets) == 40


def test_a_picture_that_changed_after_the_keyframe_is_replayed_only_within_the_limit():
    kept = JoinReplay()
    kept.add(step(100.0, changed=True, keyframe=True))
    kept.add(step(100.5, changed=False))
    kept.add(step(101.0, changed=True))  # the first change: frames before it are the past from now on
    kept.add(step(101.1, changed=True))
    assert kept.current(101.0 + JOIN_MAX_AGE - 0.01)
    assert not kept.current(101.0 + JOIN_MAX_AGE + 0.01)
    kept.add(step(102.0, changed=True, keyframe=True))  # a keyframe starts afresh
    assert kept.current(150.0) and len(kept.packets) == 1


def test_more_packets_than_a_replay_takes_are_not_replayed():
    kept = JoinReplay()
    kept.add(step(0.0, changed=True, keyframe=True))
    for n in range(REPLAY_LIMIT):
        kept.add(step(n / 1000, changed=False))
    assert not kept.current(1.0)


async def ages_after_joining(viewer, seconds: float) -> list[float]:
    """The age (ms from capture to arrival) of each frame the viewer decodes in its first `seconds`."""
    ages = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = await viewer.next_frame()
        assert frame.stamp is not None
        ages.append(frame.received_at * 1000 - frame.stamp.time_ms)
    return ages


async def test_a_joiner_of_a_moving_picture_starts_from_a_fresh_keyframe_never_the_past(make_server, viewers):
    server = await make_server(source="synthetic:320x240@30?pattern=text", keyframe_interval=10.0)
    stats = server.app[REGISTRY].get("default").audience.stats
    watcher = await viewers(server)
    await watcher.next_frame()
    await asyncio.sleep(1.0)  # the keyframe is a second old, and the picture changed with every frame since
    before = (stats.joins_on_a_keyframe, stats.joins_replayed)
    joiner = await viewers(server)
    ages = await ages_after_joining(joiner, 2.0)
    assert len(ages) > 30 and max(ages) < JOIN_MAX_AGE * 1000, f"frames {max(ages):.0f} ms old: the past replayed"
    assert (stats.joins_on_a_keyframe, stats.joins_replayed) == (before[0] + 1, before[1])


async def test_a_joiner_of_a_still_picture_is_replayed_its_sharp_picture_at_once(make_server, viewers):
    server = await make_server(source="synthetic:320x240@30?pattern=text&still=1", keyframe_interval=10.0)
    stats = server.app[REGISTRY].get("default").audience.stats
    watcher = await viewers(server)
    await watcher.next_frame()
    await asyncio.sleep(1.0)  # long after the keyframe; only refinements since
    before = (stats.joins_on_a_keyframe, stats.joins_replayed)
    joiner = await viewers(server)
    frame = await joiner.next_frame(timeout=2.0)
    assert frame.picture.width == 320
    assert (stats.joins_on_a_keyframe, stats.joins_replayed) == (before[0], before[1] + 1)


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_the_console_joining_a_moving_picture_shows_no_frame_from_the_past(make_server, viewers, http, transport):
    """Read back from the page: the stamp of every frame Chromium shows in its first 2 s after joining."""
    server = await make_server(source="synthetic:640x360@30?pattern=text", keyframe_interval=10.0)
    watcher = await viewers(server)
    await watcher.next_frame()
    await asyncio.sleep(1.0)  # a second past the keyframe: a replay would be a second of the past
    issued = await issue(http, server, role="view", transport=transport)
    async with chromium() as browser:
        joined = await join_phase(browser, issued["console_url"])
    assert len(joined) > 20, joined
    assert max(joined) < JOIN_MAX_AGE * 1000, f"a frame {max(joined):.0f} ms old was shown: {joined[:10]}"


class QuietSeat(Seat):
    """A seat whose transport carries nothing anywhere: the audience's own bookkeeping is what is tested."""

    transport = "websocket"

    @property
    def connection_state(self) -> str:
        return "connected"

    @property
    def input_channel(self) -> bool:
        return True

    def send_message(self, text: str) -> bool:
        return True

    async def _close_transport(self) -> None:
        pass


async def test_a_rendition_nobody_takes_any_more_keeps_no_replay_for_later(tmp_path):
    """Its viewer moved to another rung: the picture it kept is from before, and a joiner of the rendition
    when it runs again later must not be replayed it."""
    audience = Audience(
        4,
        conftest.test_settings(tmp_path).viewer_rules,
        None,
        lambda rendition: None,
        EncoderSettings(bitrate=1_000_000),
    )
    viewer = audience.admit(Grant(role="operator"), QuietSeat)
    viewer._connected()
    still = [step(time.time(), changed=True, keyframe=True), step(time.time(), changed=False)]
    audience.publish({TOP: still[0]}, None)
    audience.publish({TOP: still[1]}, None)
    lower = TOP.lower(EncoderSettings())
    assert lower is not None
    audience._rungs.move(viewer, lower)  # as a poor link makes it (RungPolicy)
    audience.publish(
        {TOP: step(time.time(), changed=False), lower: step(time.time(), changed=True, keyframe=True)}, None
    )
    assert viewer.rendition == lower and TOP not in audience.renditions()
    joiner = audience.admit(Grant(role="operator"), QuietSeat)
    joiner._connected()
    assert (audience.stats.joins_replayed, audience.stats.joins_on_a_keyframe) == (0, 2), (
        "no replay: both on a keyframe"
    )
    await asyncio.gather(viewer.close(), joiner.close())
