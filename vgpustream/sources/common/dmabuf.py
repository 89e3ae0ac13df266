"""Reading a plane's pixels out of a dma-buf or a mapped region, shared by the VFIO and QEMU sources.

A plane description comes from the guest (through the kernel or QEMU) and is untrusted: `check_plane`
validates every field against the real size of the buffer before a byte is read. `Mapping` owns what
it maps (and the dma-buf fd, where there is one) and closes both. CPU reads of a dma-buf are bracketed
by DMA_BUF_IOCTL_SYNC (`cpu_access`).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import time
from dataclasses import dataclass

import numpy as np

from vgpustream.errors import InvalidPlane, UnsupportedFormat
from vgpustream.media.formats import DRM_FORMAT_MOD_LINEAR, PixelFormat, fourcc_text, pixel_format
from vgpustream.sources.base import Frame, PlaneInfo
from vgpustream.sources.common.dmabuf_uapi import (
    DMA_BUF_IOCTL_SYNC,
    DMA_BUF_SYNC_END,
    DMA_BUF_SYNC_READ,
    DMA_BUF_SYNC_START,
    dma_buf_sync,
)
from vgpustream.sources.common.tiling import TILES, detile, tiled_size

PAGE = mmap.PAGESIZE
MAX_BUFFER = 1 << 32


@dataclass
class Mapping:
    """A plane buffer mapped for reading: a dma-buf (fd owned here) or a region of a device fd."""

    buffer: mmap.mmap
    size: int
    dmabuf_fd: int | None

    def close(self) -> None:
        self.buffer.close()
        if self.dmabuf_fd is not None:
            os.close(self.dmabuf_fd)


def map_dmabuf(fd: int, what: str) -> Mapping:
    """Map dma-buf `fd` read-only; the Mapping owns the fd from here on (closed on error too)."""
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if not 0 < size <= MAX_BUFFER:
            raise InvalidPlane(f"{what} has an impossible size {size}")
        # a dma-buf can be mapped only in whole pages it fully covers
        buffer = mmap.mmap(fd, size - size % PAGE, mmap.MAP_SHARED, mmap.PROT_READ)
    except OSError as exc:
        os.close(fd)
        raise InvalidPlane(f"cannot map {what}: {exc.strerror}") from None
    except BaseException:
        os.close(fd)
        raise
    return Mapping(buffer, size, fd)


def needed_bytes(modifier: int, stride: int, height: int) -> int:
    """How many bytes a plane of `height` rows `stride` bytes apart covers in its buffer."""
    return stride * height if modifier == DRM_FORMAT_MOD_LINEAR else tiled_size(modifier, stride, height)


def check_plane(plane: PlaneInfo, buffer_size: int, max_edge: int) -> PixelFormat:
    """The plane's format, once every field the guest supplied is known to be sane; else a clear error."""
    fmt = pixel_format(plane.fourcc)
    modifier = plane.modifier
    if modifier != DRM_FORMAT_MOD_LINEAR and modifier not in TILES:
        raise UnsupportedFormat(f"unsupported plane {fourcc_text(plane.fourcc)} with modifier {modifier:#x}")
    width, height, stride, size = plane.width, plane.height, plane.stride, plane.size
    if not (1 <= width <= max_edge and 1 <= height <= max_edge):
        raise InvalidPlane(f"plane size {width}x{height} is outside 1..{max_edge}")
    if stride < width * fmt.bytes_per_pixel:
        raise InvalidPlane(f"stride {stride} is less than width {width} x {fmt.bytes_per_pixel} bytes per pixel")
    needed = needed_bytes(modifier, stride, height)
    if needed > size:
        raise InvalidPlane(f"stride {stride} x height {height} needs {needed} bytes, the plane has {size}")
    if size > buffer_size:
        raise InvalidPlane(f"plane size {size} exceeds its buffer's {buffer_size} bytes")
    return fmt


def copy_plane(mapping: Mapping, plane: PlaneInfo, out: np.ndarray) -> None:
    """Copy a checked plane into `out` (height rows of stride bytes), detiling if it is tiled."""
    source = np.frombuffer(mapping.buffer, dtype=np.uint8)
    with cpu_access(mapping):
        if plane.modifier == DRM_FORMAT_MOD_LINEAR:
            # a mapping can end before the plane does (dma-bufs map in whole pages): the rest stays black
            visible = min(len(source), plane.stride * plane.height)
            out.reshape(-1)[:visible] = source[:visible]
        else:
            out[:] = detile(source, plane.modifier, plane.stride, plane.height)


class cpu_access:
    """DMA_BUF_IOCTL_SYNC START/END around CPU reads of a dma-buf (regions need no bracket)."""

    def __init__(self, mapping: Mapping) -> None:
        self.fd = mapping.dmabuf_fd

    def _sync(self, when: int) -> None:
        if self.fd is not None:
            fcntl.ioctl(self.fd, DMA_BUF_IOCTL_SYNC, dma_buf_sync(flags=when | DMA_BUF_SYNC_READ))

    def __enter__(self) -> None:
        self._sync(DMA_BUF_SYNC_START)

    def __exit__(self, *_: object) -> None:
        self._sync(DMA_BUF_SYNC_END)


class PlaneReader:
    """Copies a plane out of its buffer into one of two arrays, and tells when nothing changed.

    Damage without the guest's help: a frame is new when the buffer is another one (a page flip) or
    its bytes differ from the last copy.
    """

    def __init__(self) -> None:
        self._buffers: list[np.ndarray] = []
        self._last_id: int | None = None

    def forget(self) -> None:
        """The next read is a new frame whatever it holds (after no signal, a mode change...)."""
        self._last_id = None

    def read(self, mapping: Mapping, plane: PlaneInfo, fmt: PixelFormat, buffer_id: int) -> Frame | None:
        """The plane as a Frame, or None if buffer `buffer_id` holds the same bytes as last time."""
        height, stride = plane.height, plane.stride
        if not self._buffers or self._buffers[0].shape != (height, stride):
            self._buffers = [np.zeros((height, stride), dtype=np.uint8) for _ in range(2)]
            self._last_id = None
        current, previous = self._buffers
        copy_plane(mapping, plane, current)
        if buffer_id == self._last_id and np.array_equal(current, previous):
            return None
        self._last_id = buffer_id
        self._buffers.reverse()
        pixels = current[:, : plane.width * fmt.bytes_per_pixel].reshape(height, plane.width, fmt.bytes_per_pixel)
        return Frame(pixels=pixels, fourcc=plane.fourcc, captured_at=time.time())
