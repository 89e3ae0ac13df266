"""The vGPU's EDID region (VFIO_REGION_SUBTYPE_GFX_EDID): tell the guest which display size to prefer.

A viewer asks for its window size; the guest sees a monitor replug whose EDID prefers that mode. The
sequence is QEMU's (hw/display/edid-region.c): take the link down, write the blob and its size, bring
the link up again a little later so the guest notices the change.
"""

from __future__ import annotations

import ctypes
import math
import os
import struct
import threading

from vgpustream.errors import UnsupportedOperation
from vgpustream.sources.vfio import uapi
from vgpustream.sources.vfio.device import VfioDevice

LINK_UP_DELAY = 0.1
MAX_DTD_EDGE = 4095  # a detailed timing descriptor has 12 bits per dimension
MIN_EDGE = 320
REFRESH = 60
CVT_RB_MIN_VBLANK_S = 460e-6
CVT_RB_HBLANK, CVT_RB_HFRONT, CVT_RB_HSYNC = 160, 48, 32
CVT_RB_VFRONT, CVT_RB_VSYNC, CVT_RB_MIN_VBACK = 3, 5, 6


def _field_offset(name: str) -> int:
    return getattr(uapi.vfio_region_gfx_edid, name).offset


def detailed_timing(width: int, height: int) -> bytes:
    """An 18-byte detailed timing descriptor for width x height at 60 Hz, CVT reduced blanking."""
    line_time = (1 / REFRESH - CVT_RB_MIN_VBLANK_S) / height
    vblank = max(math.ceil(CVT_RB_MIN_VBLANK_S / line_time), CVT_RB_VFRONT + CVT_RB_VSYNC + CVT_RB_MIN_VBACK)
    clock = (width + CVT_RB_HBLANK) * (height + vblank) * REFRESH // 10_000  # in 10 kHz units
    width_mm, height_mm = width * 264 // 1000, height * 264 // 1000  # a 96 dpi panel
    return struct.pack(
        "<H16B",
        clock,
        width & 0xFF,
        CVT_RB_HBLANK & 0xFF,
        (width >> 8) << 4 | CVT_RB_HBLANK >> 8,
        height & 0xFF,
        vblank & 0xFF,
        (height >> 8) << 4 | vblank >> 8,
        CVT_RB_HFRONT,
        CVT_RB_HSYNC,
        CVT_RB_VFRONT << 4 | CVT_RB_VSYNC,
        0,
        width_mm & 0xFF,
        height_mm & 0xFF,
        (width_mm >> 8) << 4 | height_mm >> 8,
        0,
        0,
        0x1A,  # digital separate sync, +hsync -vsync (CVT-RB)
    )


def edid_for(width: int, height: int) -> bytes:
    """A 128-byte EDID 1.4 base block whose preferred (first) timing is width x height at 60 Hz."""
    name = b"vgpustream\n".ljust(13, b" ")
    block = bytearray(
        b"\x00\xff\xff\xff\xff\xff\xff\x00"
        + struct.pack(">H", (ord("V") - 64) << 10 | (ord("G") - 64) << 5 | (ord("S") - 64))  # manufacturer VGS
        + struct.pack("<HIBB", 1, 1, 1, 2026 - 1990)  # product, serial, week, year
        + bytes([1, 4, 0x80, width * 264 // 10_000, height * 264 // 10_000, 0x78])
        # features: RGB and YCbCr 4:4:4, sRGB the default colour space (the chromaticities below are
        # sRGB's: edid-decode --check fails an EDID that has them without saying so), native preferred timing
        + bytes([0x08 | 0x04 | 0x02])
        + bytes.fromhex("ee91a3544c99260f5054")  # sRGB chromaticity
        + bytes(3)  # no established timings
        + b"\x01\x01" * 8  # no standard timings
        + detailed_timing(width, height)
        + b"\x00\x00\x00\xfc\x00"
        + name  # monitor name
        + b"\x00\x00\x00\x10\x00"
        + bytes(13)  # dummy descriptors
        + b"\x00\x00\x00\x10\x00"
        + bytes(13)
        + b"\x00"  # no extensions
    )
    block.append(-sum(block) & 0xFF)
    assert len(block) == 128
    return bytes(block)


class EdidRegion:
    """A device's EDID region: its limits, and writing a new preferred mode."""

    def __init__(self, device: VfioDevice, offset: int, header: uapi.vfio_region_gfx_edid) -> None:
        self._device = device
        self._offset = offset
        self._header = header
        self._timer: threading.Timer | None = None

    @classmethod
    def find(cls, device: VfioDevice) -> EdidRegion | None:
        for region in device.regions():
            if (uapi.VFIO_REGION_TYPE_GFX, uapi.VFIO_REGION_SUBTYPE_GFX_EDID) in region.subtypes:
                raw = os.pread(device.fd, ctypes.sizeof(uapi.vfio_region_gfx_edid), region.offset)
                header = uapi.vfio_region_gfx_edid.from_buffer_copy(raw)
                if header.edid_max_size >= 128:
                    return cls(device, region.offset, header)
        return None

    @property
    def limits(self) -> tuple[int, int]:
        return self._header.max_xres, self._header.max_yres

    def largest_mode(self) -> tuple[int, int]:
        """The largest mode an EDID of ours can prefer on this device (its limits, where it states them)."""
        max_x, max_y = self.limits
        return min(max_x or MAX_DTD_EDGE, MAX_DTD_EDGE), min(max_y or MAX_DTD_EDGE, MAX_DTD_EDGE)

    def set_preferred_mode(self, width: int, height: int) -> tuple[int, int]:
        """Prefer width x height (clamped to the device's limits); returns the mode written."""
        max_x, max_y = self.largest_mode()
        width = max(MIN_EDGE, min(width, max_x)) & ~7
        height = max(MIN_EDGE // 2, min(height, max_y))
        if width <= 0 or height <= 0:
            raise UnsupportedOperation("the device's EDID limits allow no display size")
        blob = edid_for(width, height)
        self._write_u32("link_state", uapi.VFIO_DEVICE_GFX_LINK_STATE_DOWN)
        os.pwrite(self._device.fd, blob, self._offset + self._header.edid_offset)
        self._write_u32("edid_size", len(blob))
        if self._timer is not None:
            self._timer.cancel()
        # up again after a moment, so that the guest sees a replug rather than nothing
        self._timer = threading.Timer(
            LINK_UP_DELAY, self._write_u32, ("link_state", uapi.VFIO_DEVICE_GFX_LINK_STATE_UP)
        )
        self._timer.daemon = True
        self._timer.start()
        return width, height

    def _write_u32(self, field: str, value: int) -> None:
        os.pwrite(self._device.fd, struct.pack("<I", value), self._offset + _field_offset(field))
