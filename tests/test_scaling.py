"""The console's scaling modes in Chromium: the VM resized to the window (debounced, no reconnect), greyed
where the VM cannot follow, and 1:1 (one device pixel per guest pixel on a HiDPI screen, checked in a screenshot)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from tests.browser import png_rgb, rgb_luma
from tests.pictures import psnr
from tests.test_console import console_page
from tests.test_resize import stats
from vgpustream.api.state import REGISTRY
from vgpustream.media.stamp import stamp_rows
from vgpustream.sources.synthetic import SyntheticSource

pytestmark = pytest.mark.browser

VIDEO_SIZE = "() => { const v = document.getElementById('screen'); return [v.videoWidth, v.videoHeight]; }"
STAGE_DEVICE_SIZE = """() => {
  const s = document.getElementById("stage");
  return [s.clientWidth, s.clientHeight].map((css) => Math.floor(css * devicePixelRatio) & ~1);
}"""
"""The stage's size in device pixels, rounded down to even: what the console asks the VM for."""


async def video_is(page, size: list[int], timeout: float = 20_000) -> None:
    await page.wait_for_function(f"size => ({VIDEO_SIZE})().join() === size.join()", arg=size, timeout=timeout)


async def test_the_vm_follows_the_window_on_a_hidpi_screen_without_a_reconnect(make_server, http):
    server = await make_server(source="synthetic:640x360@30?resize=1")
    async with console_page(server, http, 10, device_scale_factor=2) as (page, errors):
        assert await page.locator("#scaling").input_value() == "resize", "the default where the VM can follow"
        stage = await page.evaluate(STAGE_DEVICE_SIZE)
        assert stage[0] == 2560, "the window's width in device pixels"
        await video_is(page, stage)
        pc = await page.evaluate_handle("window.vgpustream.pc")
        # the window changes size in steps, as a person drags it: the VM is asked once it stops
        steps = []
        for width in range(1200, 900, -20):
            await page.set_viewport_size({"width": width, "height": 700})
            steps.append(time.monotonic())
            await page.wait_for_timeout(30)
        # a loaded machine may pause between steps for longer than the console waits (300 ms)
        pauses = sum(later - earlier >= 0.25 for earlier, later in itertools.pairwise(steps))  # 0.3, give or take
        stage = await page.evaluate(STAGE_DEVICE_SIZE)
        await video_is(page, stage)
        assert await page.evaluate("pc => window.vgpustream.pc === pc", pc), "no reconnect"
        counted = await stats(http, server)
        # one when the console opened, one when the steps stopped, and one per pause among them
        assert counted["resize_requests"] <= 2 + pauses, f"debounced: {counted} for 15 steps, {pauses} pauses"
        # fit: the VM keeps its size
        await page.select_option("#scaling", "fit")
        await page.set_viewport_size({"width": 1000, "height": 600})
        await page.wait_for_timeout(600)
        assert await page.evaluate(VIDEO_SIZE) == stage
        assert errors == []


async def test_resize_is_greyed_where_the_vm_cannot_follow(make_server, http):
    server = await make_server(source="synthetic:640x360@30")
    async with console_page(server, http, 10) as (page, errors):
        assert await page.locator("#scaling").input_value() == "fit"
        assert await page.locator('#scaling option[value="resize"]').is_disabled()
        assert await page.evaluate(VIDEO_SIZE) == [640, 360]
        assert (await stats(http, server))["resize_requests"] == 0
        assert errors == []


async def test_a_view_only_console_does_not_resize_the_vm(make_server, http):
    server = await make_server(source="synthetic:640x360@30?resize=1")
    async with console_page(server, http, 10, role="view") as (page, errors):
        await page.wait_for_timeout(1000)
        assert await page.evaluate(VIDEO_SIZE) == [640, 360]
        counted = await stats(http, server)
        assert counted["resize_requests"] == 0 and counted["input_refused"] >= 1, counted
        assert errors == []


async def test_one_to_one_shows_each_guest_pixel_on_one_device_pixel(make_server, http):
    server = await make_server(source="synthetic:640x360@30?still=1")
    async with console_page(server, http, 10, device_scale_factor=2) as (page, errors):
        await page.select_option("#scaling", "1:1")
        box = await page.locator("#screen").bounding_box()
        assert (box["width"] * 2, box["height"] * 2) == (640, 360), box
        await page.wait_for_timeout(500)  # the picture sharpens after the first frames
        shot = png_rgb(await page.screenshot())
        left, top = round(box["x"] * 2), round(box["y"] * 2)
        shown = rgb_luma(shot[top : top + 360, left : left + 640])
        source = server.app[REGISTRY].get("default").capture._thread.source
        assert isinstance(source, SyntheticSource)
        expected = rgb_luma(np.ascontiguousarray(source.pixels[:, :, 2::-1]))
        quality = psnr(shown, expected, stamp_rows(640))
        assert quality > 30, f"1:1 picture PSNR {quality:.1f} dB"
        # scaled to fit, the same picture is no longer pixel for pixel
        await page.select_option("#scaling", "fit")
        box = await page.locator("#screen").bounding_box()
        assert box["width"] * 2 > 640
        assert errors == []
