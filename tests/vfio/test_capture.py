"""The VFIO source against real kernel code: mbochs (dma-buf planes) and mdpy (region planes)."""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from tests.vfio.mbochs import Mbochs, pattern
from vgpustream.input.events import ResizeEvent
from vgpustream.input.resize import check_display
from vgpustream.media.formats import DRM_FORMAT_XRGB8888
from vgpustream.sources import create_source
from vgpustream.sources.base import SourceState
from vgpustream.sources.common.placeholder import no_signal
from vgpustream.sources.vfio import uapi
from vgpustream.sources.vfio.device import VfioDevice
from vgpustream.sources.vfio.source import VfioSource
from vgpustream.testing.qemu import wait_for

pytestmark = pytest.mark.vfio
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mbochs(mbochs_uuid):
    """(card, source) on one mbochs device: a VFIO group opens once per process, so the test's
    "guest driver" and the source share the device. Always closed: removing an mdev waits for it."""
    device = VfioDevice.open_mdev(mbochs_uuid)
    card = Mbochs(device)
    source = VfioSource(lambda: device)
    source.open()
    try:
        yield card, source
    finally:
        card.close()
        source.close()


def capture(source: VfioSource, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = source.next_frame()
        if frame is not None:
            return frame
        time.sleep(0.01)
    raise AssertionError("no frame")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("width, height", [(640, 480), (1024, 768), (1920, 1080), (3840, 2160)])
def test_exact_readback_through_dmabuf(mbochs, width, height):
    card, source = mbochs
    assert source.kind == uapi.VFIO_GFX_PLANE_TYPE_DMABUF
    card.set_mode(width, height)
    expected = pattern(width, height, seed=width % 251)
    card.show(expected)
    frame = capture(source)
    assert frame.fourcc == DRM_FORMAT_XRGB8888 and (frame.width, frame.height) == (width, height)
    assert np.array_equal(frame.pixels, expected), "every pixel read back exactly"
    primary = source.planes().primary
    assert (primary.width, primary.height, primary.stride, primary.dmabuf_id > 0) == (width, height, width * 4, True)
    assert source.next_frame() is None, "same buffer, same bytes: no new frame"
    card.show(pattern(width, height, seed=7))
    assert np.array_equal(capture(source).pixels, pattern(width, height, seed=7)), "changed bytes: a new frame"


@pytest.mark.parametrize("kind, width, height", [("mdpy-vga", 640, 480), ("mdpy-hd", 1920, 1080)])
def test_region_planes_of_mdpy(mdev_factory, kind, width, height):
    source = create_source(f"vfio:{mdev_factory('mdpy', kind)}")
    source.open()
    assert source.kind == uapi.VFIO_GFX_PLANE_TYPE_REGION
    frame = capture(source)
    # mdpy starts with a grey gradient: row i has every byte = i * 255 // height
    rows = (np.arange(height, dtype=np.uint32) * 255 // height).astype(np.uint8)
    assert np.array_equal(frame.pixels, np.broadcast_to(rows[:, None, None], (height, width, 4)))
    assert source.planes().primary.region_index is not None
    source.close()


def test_display_off_is_no_signal_and_the_picture_comes_back(mbochs):
    card, source = mbochs
    card.set_mode(1024, 768)
    card.show(pattern(1024, 768, seed=1))
    capture(source)
    card.disable()
    placeholder = source.next_frame()
    assert source.state is SourceState.NO_SIGNAL
    assert placeholder is not None and np.array_equal(placeholder.pixels, no_signal())
    assert [source.next_frame() for _ in range(20)] == [None] * 20, "no error storm, no frame storm"
    card.set_mode(1024, 768)
    card.show(pattern(1024, 768, seed=2))
    assert np.array_equal(capture(source).pixels, pattern(1024, 768, seed=2))
    assert source.state is SourceState.STREAMING


def test_a_plane_that_ends_inside_a_page(mbochs):
    # 800x600x4 = 1,920,000 bytes: a dma-buf maps only in whole pages it covers (the kernel's rule),
    # so the last 3,072 bytes cannot be read; they show black, everything before them is exact
    card, source = mbochs
    card.set_mode(800, 600)
    expected = pattern(800, 600, seed=4)
    card.show(expected)
    flat, got = expected.reshape(-1), capture(source).pixels.reshape(-1)
    mapped = 1_920_000 - 1_920_000 % 4096
    assert np.array_equal(got[:mapped], flat[:mapped])
    assert not got[mapped:].any()


def test_dmabuf_cache_is_bounded_and_closes_its_fds(mbochs):
    card, source = mbochs
    before = open_fds()
    modes = [(640, 480), (800, 600), (1024, 768), (1280, 720), (1280, 1024), (1600, 900), (1920, 1080)]
    for width, height in modes:  # each mode is its own dma-buf
        card.set_mode(width, height)
        card.show(pattern(width, height, seed=3))
        assert capture(source).width == width
        assert source.open_dmabufs <= 5
    assert source.open_dmabufs == 5
    # each cached dma-buf: our fd and the one Python's mmap keeps; evicted ones are closed
    assert open_fds() == before + 2 * 5, "evicted dma-bufs are closed"
    source.close()
    assert open_fds() == before - 3, "closing the source closes its dma-bufs and the device's fds"


def link_up_again(card: Mbochs) -> None:
    """A resize unplugs the display and plugs it in again a moment later (as a monitor's replug)."""
    wait_for(lambda: card.edid()[0] == uapi.VFIO_DEVICE_GFX_LINK_STATE_UP, 10, "the display's link up again")


def test_edid_resize_writes_a_preferred_mode(mbochs):
    card, source = mbochs
    limits = source.display_limits()
    assert limits is None or limits >= (1024, 768), "mbochs states no limits (0); others a real maximum"
    source.resize(1024, 768)
    link_up_again(card)
    link_state, size, blob = card.edid()
    assert link_state == uapi.VFIO_DEVICE_GFX_LINK_STATE_UP and size == 128
    assert sum(blob) % 256 == 0 and blob[:8] == b"\x00\xff\xff\xff\xff\xff\xff\x00"
    assert card.preferred_mode() == (1024, 768)


def test_a_viewers_resize_reaches_the_edid_and_the_plane_follows_the_guest(mbochs):
    card, source = mbochs
    card.set_mode(800, 600)
    card.show(pattern(800, 600, seed=5))
    assert capture(source).width == 800
    assert source.display_range() == (4095, 4095), "mbochs states no limits: an EDID timing's 12 bits bound it"
    request = ResizeEvent(1280, 720, scale=1.0)
    check_display(request, source.display_range())
    source.resize(request.width, request.height, request.scale)
    link_up_again(card)
    # the guest driver sees the replug and sets the mode its monitor now prefers
    width, height = card.preferred_mode()
    assert (width, height) == (1280, 720)
    card.set_mode(width, height)
    card.show(pattern(width, height, seed=6))
    frame = capture(source)
    assert (frame.width, frame.height) == (1280, 720)
    assert (source.planes().primary.width, source.planes().primary.height) == (1280, 720)


def test_cli_planes_opens_the_device_itself(mbochs_uuid):
    device = VfioDevice.open_mdev(mbochs_uuid)
    card = Mbochs(device)
    card.set_mode(1024, 768)
    card.close()
    device.close()  # the CLI opens the group itself (one process at a time)
    run = subprocess.run(
        [sys.executable, "-m", "vgpustream", "planes", "--source", f"vfio:{mbochs_uuid}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    primary = json.loads(run.stdout)["primary"]
    assert (primary["fourcc"], primary["width"], primary["height"], primary["stride"]) == ("XR24", 1024, 768, 4096)
    assert primary["dmabuf_id"] > 0


def test_cli_snapshot_of_a_device_the_vmm_holds(mbochs, tmp_path):
    # as on a real host: the VMM holds the device and hands its fd over a Unix socket
    card, _ = mbochs
    card.set_mode(1024, 768)
    expected = pattern(1024, 768, seed=9)
    card.show(expected)
    serve_device_fd(card.device, tmp_path / "vmm.sock")
    out = tmp_path / "shot.png"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "vgpustream",
            "snapshot",
            "--source",
            f"vfio-fd:unix:{tmp_path / 'vmm.sock'}",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    with av.open(str(out)) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.array_equal(rgb, expected[:, :, [2, 1, 0]]), "the PNG is the exact picture"


def serve_device_fd(device: VfioDevice, path: Path) -> threading.Thread:
    """Act as the VMM: hand the open device fd to whoever connects to `path` (once)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def hand_over() -> None:
        connection, _ = listener.accept()
        socket.send_fds(connection, [b"\0"], [device.fd])
        connection.close()
        listener.close()

    thread = threading.Thread(target=hand_over, daemon=True)
    thread.start()
    return thread


def test_device_fd_received_from_the_vmm(mbochs_uuid, tmp_path):
    device = VfioDevice.open_mdev(mbochs_uuid)
    card = Mbochs(device)
    card.set_mode(640, 480)
    card.show(pattern(640, 480, seed=5))
    serve_device_fd(device, tmp_path / "vmm.sock")
    source = create_source(f"vfio-fd:unix:{tmp_path / 'vmm.sock'}")
    source.open()
    assert np.array_equal(capture(source).pixels, pattern(640, 480, seed=5))
    source.close()
    card.close()
    device.close()


def test_query_plane_struct_is_the_kernels():
    # the kernel rejects an argsz below its structure: ours must be the full 64 bytes it expects
    assert ctypes.sizeof(uapi.vfio_device_gfx_plane_info) == 64
