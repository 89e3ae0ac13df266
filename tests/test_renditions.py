"""Renditions: one encode per codec that some viewer takes, from the same captured picture.

A WebRTC viewer whose offer has no H.264 (stock Firefox's) gets VP8; the session then runs two encoders,
each on every frame, and stops the VP8 one when its last viewer leaves. The API and /metrics list what runs.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.conftest import wait_for
from tests.test_operations import metric_value
from vgpustream.api.state import REGISTRY
from vgpustream.media.renditions import TOP, Rendition
from vgpustream.testing.receiver import an_offer

VP8 = Rendition("vp8")


def answered_video(viewer) -> set[str]:
    """The codecs the server's answer sends in its video section (rtx aside)."""
    sdp = viewer.pc.remoteDescription.sdp
    video = sdp[sdp.index("m=video") :].split("\nm=")[0]
    return set(re.findall(r"a=rtpmap:\d+ (\w+)/90000", video)) - {"rtx"}


async def described(http, server) -> dict:
    async with http.get(server.make_url("/api/v1/sessions/default")) as response:
        assert response.status == 200
        return await response.json()


async def test_a_viewer_without_h264_gets_vp8_beside_the_h264_viewers_one_encode_each(make_server, viewers, http):
    server = await make_server(source="synthetic:320x240@30")
    session = server.app[REGISTRY].get("default")
    h264 = await viewers(server)
    vp8 = await viewers(server, codecs=("vp8",))
    for viewer in (h264, vp8):
        frames = [await viewer.next_frame() for _ in range(10)]
        assert all(f.picture.width == 320 and f.stamp is not None for f in frames), "the source's stamped frames"
    assert {seat.rendition for seat in session.audience} == {TOP, VP8}
    assert (answered_video(h264), answered_video(vp8)) == ({"H264"}, {"VP8"})
    # one encode per rendition: each encodes every frame the session encodes
    before = {r: s.stats.frames_encoded for r, s in session.capture.renditions.items()}
    session_before = session.capture.stats.frames_encoded
    await asyncio.sleep(1.0)
    after = {r: s.stats.frames_encoded for r, s in session.capture.renditions.items()}
    encoded = session.capture.stats.frames_encoded - session_before
    assert encoded >= 20 and all(after[r] - before[r] == encoded for r in (TOP, VP8)), (encoded, before, after)
    body = await described(http, server)
    shown = {r["codec"]: r for r in body["renditions"]}
    assert set(shown) == {"h264", "vp8"}
    for rendition in shown.values():
        assert (rendition["width"], rendition["height"], rendition["seats"]) == (320, 240, 1), rendition
        assert rendition["frames_encoded"] > 20 and rendition["keyframes"] >= 1 and rendition["bitrate"] > 0
    async with http.get(server.make_url("/metrics")) as response:
        metrics = await response.text()
    for name in ("h264", "vp8"):
        labels = {"session": "default", "rendition": name}
        assert metric_value(metrics, "vgpustream_rendition_frames_encoded_total", **labels) > 20
        assert metric_value(metrics, "vgpustream_rendition_seats", **labels) == 1
    # the last VP8 viewer leaves: its encoder stops, the H.264 one goes on
    await vp8.close()
    await wait_for(lambda: set(session.capture.renditions) == {TOP}, what="the VP8 encoder stopped")
    assert [r["codec"] for r in (await described(http, server))["renditions"]] == ["h264"]
    assert (await h264.next_frame()).picture.width == 320


async def test_a_vp8_viewer_joining_a_still_screen_gets_a_picture_at_once(make_server, viewers):
    """A rendition that starts while the session runs encodes the last picture first (a still screen sends
    no new one)."""
    server = await make_server(source="synthetic:320x240@30?pattern=text&still=1")
    first = await viewers(server)
    await first.next_frame()
    await asyncio.sleep(0.5)  # the picture stands still by now
    joiner = await viewers(server, codecs=("vp8",))
    frame = await joiner.next_frame(timeout=5)
    assert frame.picture.width == 320 and frame.stamp is not None


async def test_an_unwatched_session_runs_no_rendition(make_server, viewers, http):
    server = await make_server(source="synthetic:320x240@30")
    session = server.app[REGISTRY].get("default")
    viewer = await viewers(server, codecs=("vp8",))
    await viewer.next_frame()
    await viewer.close()
    await wait_for(lambda: not session.capture.renditions, what="every encoder stopped")
    assert (await described(http, server))["renditions"] == []


@pytest.mark.parametrize("data_channel", [True, False])
async def test_an_offer_with_neither_h264_nor_vp8_gets_no_video(make_server, anonymous, data_channel):
    """A video section of codecs the session cannot make (VP9 and AV1 here) is rejected in the answer (port
    0) where the offer has a data channel to come up; alone, the offer gets 400 naming what it must take."""
    server = await make_server(source="synthetic:320x240@30", insecure_no_auth=True)
    offer = (await an_offer(data_channel)).replace("VP8/90000", "VP9/90000").replace("H264/90000", "AV1/90000")
    whep = server.make_url("/whep/default")
    async with anonymous.post(whep, data=offer, headers={"Content-Type": "application/sdp"}) as response:
        body = await response.text()
    if data_channel:
        assert response.status == 201 and "m=video 0 " in body, body
    else:
        assert response.status == 400 and "H.264" in body and "VP8" in body, body
    session = server.app[REGISTRY].get("default")
    assert not session.capture.renditions, "nothing is encoded for a viewer without video"
