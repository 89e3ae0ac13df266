"""The QEMU display source's ScanoutDMABUF path on a real dma-buf, inside the rig's VM.

This machine kind has no GPU render node, so QEMU cannot be made to send ScanoutDMABUF (gl=on needs
one). The kernel's vgem driver makes real dma-bufs, though: a dumb buffer exported as a PRIME fd,
filled through its own mapping, is handed to the source's Listener exactly as QEMU's message would
carry it (a unix fd with the message), and read back through the code the VFIO source uses
(lseek size, mmap, DMA_BUF_IOCTL_SYNC).
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dbus_fast import Message

from vgpustream.media.formats import fourcc_code
from vgpustream.sources.base import SourceState
from vgpustream.sources.qemu.source import QemuDisplaySource

pytestmark = pytest.mark.vfio


class drm_mode_create_dumb(ctypes.Structure):  # the kernel's name (drm_mode.h)
    _fields_ = [(name, ctypes.c_uint32) for name in ("height", "width", "bpp", "flags", "handle", "pitch")] + [
        ("size", ctypes.c_uint64)
    ]


class drm_prime_handle(ctypes.Structure):  # the kernel's name (drm.h)
    _fields_ = [("handle", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("fd", ctypes.c_int32)]


def _iowr(nr: int, size: int) -> int:
    return 3 << 30 | size << 16 | ord("d") << 8 | nr


DRM_IOCTL_MODE_CREATE_DUMB = _iowr(0xB2, ctypes.sizeof(drm_mode_create_dumb))
DRM_IOCTL_PRIME_HANDLE_TO_FD = _iowr(0x2D, ctypes.sizeof(drm_prime_handle))


@pytest.fixture
def vgem() -> Iterator[int]:
    subprocess.run(["modprobe", "vgem"], check=True)
    # vgem's card hangs off its platform device, /sys/devices/platform/vgem
    card = next(p for p in Path("/sys/class/drm").glob("card*") if (p / "device").resolve().name == "vgem")
    fd = os.open(f"/dev/dri/{card.name}", os.O_RDWR)
    yield fd
    os.close(fd)


def dmabuf_with(vgem: int, picture: np.ndarray) -> tuple[int, int]:
    """A vgem dma-buf holding `picture` (height, width, 4); returns (fd, stride)."""
    height, width = picture.shape[:2]
    dumb = drm_mode_create_dumb(height=height, width=width, bpp=32)
    fcntl.ioctl(vgem, DRM_IOCTL_MODE_CREATE_DUMB, dumb)
    prime = drm_prime_handle(handle=dumb.handle, flags=os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(vgem, DRM_IOCTL_PRIME_HANDLE_TO_FD, prime)
    with mmap.mmap(prime.fd, dumb.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as memory:
        rows = np.frombuffer(memory, dtype=np.uint8)[: height * dumb.pitch].reshape(height, dumb.pitch)
        rows[:, : width * 4] = picture.reshape(height, width * 4)
        del rows
    return prime.fd, dumb.pitch


def scanout_dmabuf(fd: int, width: int, height: int, stride: int, y0_top: bool) -> Message:
    return Message(
        path="/org/qemu/Display1/Listener",
        interface="org.qemu.Display1.Listener",
        member="ScanoutDMABUF",
        signature="huuuutb",
        body=[0, width, height, stride, fourcc_code("XR24"), 0, y0_top],
        unix_fds=[fd],
        serial=1,
    )


async def no_qemu() -> None:
    raise AssertionError("no QEMU here")


@pytest.mark.parametrize("y0_top", [True, False], ids=["top-down", "bottom-up"])
async def test_a_scanout_dma_buf_is_read_exactly(vgem, y0_top):  # the source is made on an event loop
    rng = np.random.default_rng(7)
    picture = rng.integers(0, 256, (200, 300, 4), dtype=np.uint8)
    open_fds = len(os.listdir("/proc/self/fd"))
    fd, stride = dmabuf_with(vgem, picture)
    source = QemuDisplaySource(no_qemu)
    source._attachment = object()  # as if attached: the listener's calls are all this test needs
    reply = source.listener.on_call(scanout_dmabuf(fd, 300, 200, stride, y0_top))
    assert reply.error_name is None, reply.body
    frame = source.next_frame()
    expected = picture if y0_top else picture[::-1]
    assert np.array_equal(frame.pixels, expected)
    assert source.state is SourceState.STREAMING
    assert source.planes().primary.stride == stride
    assert source.next_frame() is None, "no UpdateDMABUF: nothing new"
    picture[50:60] = 255
    fd2, _ = dmabuf_with(vgem, picture)
    source.listener.on_call(scanout_dmabuf(fd2, 300, 200, stride, True))
    assert np.array_equal(source.next_frame().pixels, picture), "a new scanout replaces the buffer"
    source.listener.set_dmabuf(None)  # as Disable or a Scanout would
    assert len(os.listdir("/proc/self/fd")) == open_fds, "every dma-buf handed over was closed"


async def test_a_dma_buf_smaller_than_its_plane_is_refused(vgem):
    fd, stride = dmabuf_with(vgem, np.zeros((64, 64, 4), dtype=np.uint8))
    source = QemuDisplaySource(no_qemu)
    reply = source.listener.on_call(scanout_dmabuf(fd, 64, 4096, stride, True))
    assert reply.error_name == "org.qemu.Display1.Error.Invalid"
    assert "exceeds its buffer" in reply.body[0]
    assert source.planes().primary is None
