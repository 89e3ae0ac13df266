"""The part of the Linux dma-buf uAPI that reading a plane needs.

Mirrors include/uapi/linux/dma-buf.h: the same names, the same layout (size asserted below), so the
two can be read side by side. Unlike VFIO's, this ioctl number encodes its direction and argument size.
"""

from __future__ import annotations

import ctypes

_IOC_WRITE = 1


def _IOW(kind: int, nr: int, size: int) -> int:
    return _IOC_WRITE << 30 | size << 16 | kind << 8 | nr


class dma_buf_sync(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64)]


DMA_BUF_SYNC_READ = 1 << 0
DMA_BUF_SYNC_START = 0 << 2
DMA_BUF_SYNC_END = 1 << 2
DMA_BUF_BASE = ord("b")
DMA_BUF_IOCTL_SYNC = _IOW(DMA_BUF_BASE, 0, ctypes.sizeof(dma_buf_sync))
"""Bracket CPU access to a mapped dma-buf: SYNC_START | READ before reading, SYNC_END | READ after."""

assert ctypes.sizeof(dma_buf_sync) == 8
assert DMA_BUF_IOCTL_SYNC == 0x40086200
