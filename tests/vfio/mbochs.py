"""A guest's display driver for mbochs, in a few lines: set a mode, write pixels into video memory.

mbochs emulates a bochs-dispi card: mode registers at BAR2 + 0x500 + 2 * index (16-bit writes
only), video memory in BAR0 (through mmap: pwrite to BAR0 lands 8 KiB off in 6.1).
"""

from __future__ import annotations

import mmap
import os
import struct

import numpy as np

from vgpustream.sources.vfio import uapi
from vgpustream.sources.vfio.device import VfioDevice

DISPI = {"XRES": 1, "YRES": 2, "BPP": 3, "ENABLE": 4, "VIRT_WIDTH": 6, "VIRT_HEIGHT": 7, "X_OFFSET": 8, "Y_OFFSET": 9}
DISPI_ENABLED = 0x01 | 0x40  # enabled, linear framebuffer
DISPI_MMIO = 0x500


class Mbochs:
    def __init__(self, device: VfioDevice) -> None:
        self.device = device
        self.vram_region = device.region(0)
        self.mmio = device.region(2)
        self.vram = mmap.mmap(
            device.fd,
            self.vram_region.size,
            mmap.MAP_SHARED,
            mmap.PROT_READ | mmap.PROT_WRITE,
            offset=self.vram_region.offset,
        )

    def register(self, name: str, value: int) -> None:
        os.pwrite(self.device.fd, struct.pack("<H", value), self.mmio.offset + DISPI_MMIO + 2 * DISPI[name])

    def set_mode(self, width: int, height: int) -> None:
        self.register("ENABLE", 0)
        for name, value in (
            ("XRES", width),
            ("YRES", height),
            ("BPP", 32),
            ("VIRT_WIDTH", width),
            ("VIRT_HEIGHT", height),
            ("X_OFFSET", 0),
            ("Y_OFFSET", 0),
        ):
            self.register(name, value)
        self.register("ENABLE", DISPI_ENABLED)

    def disable(self) -> None:
        self.register("ENABLE", 0)

    def show(self, pixels: np.ndarray) -> None:
        """Put BGRX pixels (height, width, 4) at the start of video memory."""
        data = np.ascontiguousarray(pixels).tobytes()
        self.vram[: len(data)] = data

    def edid(self) -> tuple[int, int, bytes]:
        """The EDID region as a guest driver reads it: link state, EDID size, and the blob."""
        region = next(
            r
            for r in self.device.regions()
            if (uapi.VFIO_REGION_TYPE_GFX, uapi.VFIO_REGION_SUBTYPE_GFX_EDID) in r.subtypes
        )
        header = uapi.vfio_region_gfx_edid.from_buffer_copy(os.pread(self.device.fd, 24, region.offset))
        blob = os.pread(self.device.fd, header.edid_size, region.offset + header.edid_offset)
        return header.link_state, header.edid_size, blob

    def preferred_mode(self) -> tuple[int, int]:
        """The mode the EDID prefers (its first detailed timing), which a guest driver would set."""
        timing = self.edid()[2][54:72]
        return timing[2] | (timing[4] >> 4) << 8, timing[5] | (timing[7] >> 4) << 8

    def close(self) -> None:
        self.vram.close()


def pattern(width: int, height: int, seed: int) -> np.ndarray:
    """A picture in which every pixel differs: its index plus a seed, as BGRX bytes."""
    values = np.arange(width * height, dtype=np.uint32) + np.uint32(seed << 24)
    return values.view(np.uint8).reshape(height, width, 4)
