"""A session nobody watches encodes nothing and samples its source slowly; its thumbnail shows the picture."""

from __future__ import annotations

import asyncio
import io

import aiohttp
import av
import numpy as np

from tests.pictures import psnr
from vgpustream.api.state import REGISTRY
from vgpustream.media.stamp import luma, stamp_rows
from vgpustream.sources.synthetic import TextPage
from vgpustream.testing.server import serve

THUMBNAIL = "/api/v1/sessions/default/thumbnail"


async def first_capture(server) -> None:
    """Until the session's source was first captured (so that it has a thumbnail)."""
    stats = server.app[REGISTRY].get("default").capture.stats
    for _ in range(100):
        if stats.frames_captured:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the source was never captured")


def decode_jpeg(data: bytes) -> av.VideoFrame:
    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0))


def expected_thumbnail(page: TextPage, number: int, width: int, height: int) -> np.ndarray:
    """The luma of picture `number` of the text page scaled down to width x height, independently of the server."""
    page.render(number, None)
    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(page.pixels), format="bgra")
    return luma(picture.reformat(width=width, height=height, format="yuvj420p", interpolation="AREA"))


async def test_an_unwatched_session_encodes_nothing_until_a_viewer_comes(make_server, viewers):
    server = await make_server(source="synthetic:320x240@30", idle_sample_rate=4.0)
    session = server.app[REGISTRY].get("default")
    stats = session.capture.stats
    await asyncio.sleep(1.5)
    assert stats.frames_encoded == 0, "nobody watches: nothing is encoded"
    assert 2 <= stats.frames_captured <= 10, f"sampled at 4/s, not at 30: {stats.frames_captured} in 1.5 s"

    posted = session.capture._thread.source.frame_number()  # the synthetic picture's number, from its clock
    viewer = await viewers(server)
    frame = await viewer.next_frame()
    assert frame.stamp is not None, "the first viewer decodes the source's picture"
    # sampled at 4/s: the last sample before the viewer came is 1/4 s (8 pictures) older, 1/2 s at worst
    assert frame.stamp.frame >= posted - 15, "the first picture is a recent one, not one sampled long ago"
    assert stats.keyframes >= 1

    await viewer.close()
    await asyncio.sleep(0.3)  # the step running when the viewer left may still encode
    encoded = stats.frames_encoded
    await asyncio.sleep(1.0)
    assert stats.frames_encoded == encoded, "once the last viewer left, encoding stops"


async def test_the_first_viewer_wakes_a_session_from_its_slow_sampling(make_server, viewers):
    server = await make_server(source="synthetic:320x240@30", idle_sample_rate=0.1)
    await first_capture(server)
    await asyncio.sleep(0.5)  # the loop now sleeps until its next sample, 10 s after the first
    viewer = await viewers(server)
    frame = await viewer.next_frame(timeout=5.0)
    assert frame.stamp is not None, "the viewer's offer woke the loop: it did not wait for the next sample"


async def test_the_thumbnail_is_a_small_jpeg_of_the_current_picture(make_server, http):
    server = await make_server(source="synthetic:1280x720@30?pattern=text&still=1")
    await first_capture(server)
    async with http.get(server.make_url(THUMBNAIL)) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "image/jpeg"
        etag = response.headers["ETag"]
        picture = decode_jpeg(await response.read())
    assert (picture.width, picture.height) == (320, 180), "longest edge 320 by default, aspect kept"
    expected = expected_thumbnail(TextPage(1280, 720), 0, 320, 180)
    stamp = stamp_rows(1280) * 180 // 720 + 2  # the frame stamp's time differs
    assert psnr(luma(picture), expected, skip_rows=stamp) > 30, "the thumbnail shows the source's picture"

    async with http.get(server.make_url(THUMBNAIL), headers={"If-None-Match": etag}) as response:
        assert response.status == 304, "an unchanged picture is not sent again"
    async with http.get(server.make_url(THUMBNAIL), params={"size": "64"}) as response:
        assert response.status == 200
        assert response.headers["ETag"] != etag
        small = decode_jpeg(await response.read())
    assert (small.width, small.height) == (64, 36)


async def test_thumbnail_sizes_out_of_bounds_are_refused(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    await first_capture(server)
    for size in ("0", "100000", "15", "641", "-1", "abc", "", "1e3", "٣٢٠"):
        async with http.get(server.make_url(THUMBNAIL), params={"size": size}) as response:
            assert response.status == 400, size
            assert (await response.json())["error"]["code"] == "bad_request"
    async with http.get(server.make_url(THUMBNAIL), params={"size": "640"}) as response:
        picture = decode_jpeg(await response.read())
    assert (picture.width, picture.height) == (320, 240), "a thumbnail is never larger than the picture"


async def test_a_flood_of_thumbnail_requests_is_served_from_the_cache(make_server, http):
    server = await make_server(source="synthetic:640x480@30?still=1", idle_sample_rate=4.0)
    session = server.app[REGISTRY].get("default")
    await first_capture(server)
    async with http.get(server.make_url(THUMBNAIL)) as response:
        first = await response.read()
    encodes, captured = session.thumbnails.encodes, session.capture.stats.frames_captured

    async def fetch() -> bytes:
        async with http.get(server.make_url(THUMBNAIL)) as response:
            assert response.status == 200
            return await response.read()

    bodies = await asyncio.gather(*(fetch() for _ in range(300)))
    assert all(body == first for body in bodies), "a still picture: the same thumbnail every time"
    assert session.thumbnails.encodes == encodes, "served from the cache: no JPEG made again"
    await asyncio.sleep(1.0)
    assert session.capture.stats.frames_captured == captured, "a still picture is not captured again"
    assert session.capture.stats.capture_errors == 0 and session.capture.stats.frames_encoded == 0


async def test_the_thumbnail_of_a_lost_source_is_a_conflict(make_server, http, tmp_path):
    # a VM that is down: the socket its VMM would hand the device over on is not there
    server = await make_server(source=f"vfio-fd:unix:{tmp_path}/vmm.sock")
    session = server.app[REGISTRY].get("default")
    for _ in range(50):
        if session.capture.snapshot.state.value == "lost":
            break
        await asyncio.sleep(0.1)
    async with http.get(server.make_url(THUMBNAIL)) as response:
        assert response.status == 409
        assert "lost" in (await response.json())["error"]["message"]


async def test_thumbnails_of_many_sizes_at_once_are_all_made(tmp_path):
    """JPEGs of one picture at several sizes are made on worker threads at once, each scaled by a
    reformatter of its own: a frame's cached one, shared between threads, hangs or crashes FFmpeg. The
    server runs in a process of its own, so that such a crash fails this test alone."""
    with serve(tmp_path / "state", "--insecure-no-auth", "--source", "synthetic:640x480@30") as served:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as client:
            for _ in range(100):  # the server answers before its source has shown its first picture
                async with client.get(f"{served.url}{THUMBNAIL}") as response:
                    if response.status != 409:
                        break
                await asyncio.sleep(0.05)

            async def width(size: int) -> int:
                async with client.get(f"{served.url}{THUMBNAIL}", params={"size": str(size)}) as response:
                    assert response.status == 200, await response.text()
                    return decode_jpeg(await response.read()).width

            for round_ in range(25):
                sizes = [16 + 2 * (round_ * 8 + i) for i in range(8)]
                assert await asyncio.gather(*(width(size) for size in sizes)) == sizes
        assert served.process.poll() is None, "the server is still running"
