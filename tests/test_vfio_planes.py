"""The VFIO source's checks of what the (untrusted) guest says, with a fake device standing in for the
kernel: plane values no real driver produces, formats and modifiers we cannot convert, tiled buffers."""

from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np
import pytest

from vgpustream.errors import InvalidPlane, UnsupportedFormat
from vgpustream.media.formats import fourcc_code
from vgpustream.sources.base import PlaneInfo, SourceState
from vgpustream.sources.common.dmabuf import check_plane
from vgpustream.sources.common.tiling import I915_FORMAT_MOD_X_TILED, I915_FORMAT_MOD_Y_TILED, detile, tiled_size
from vgpustream.sources.vfio import uapi
from vgpustream.sources.vfio.device import Region
from vgpustream.sources.vfio.source import VfioSource, plane_info

XR24 = fourcc_code("XR24")


def plane(**fields) -> uapi.vfio_device_gfx_plane_info:
    values = {"drm_format": XR24, "width": 64, "height": 32, "stride": 256, "size": 256 * 32} | fields
    return uapi.vfio_device_gfx_plane_info(argsz=ctypes.sizeof(uapi.vfio_device_gfx_plane_info), **values)


def info(**fields) -> PlaneInfo:
    """The plane as the sources describe it to check_plane."""
    return plane_info(plane(**fields), uapi.VFIO_GFX_PLANE_TYPE_DMABUF)


@pytest.mark.parametrize(
    ("fields", "buffer", "message"),
    [
        ({"width": 0}, 8192, "outside 1..8192"),
        ({"width": 8193, "stride": 8193 * 4, "size": 8193 * 4 * 32}, 1 << 32, "outside 1..8192"),
        ({"height": 0xFFFFFFFF}, 1 << 32, "outside 1..8192"),
        ({"stride": 255}, 8192, "less than width 64 x 4"),
        ({"stride": 0xFFFFFFFF, "size": 0xFFFFFFFF}, 1 << 40, "needs"),
        ({"size": 256 * 31}, 8192, "needs 8192 bytes"),
        ({"size": 0xFFFFFFFF}, 8192, "exceeds its buffer"),
    ],
    ids=["zero-width", "too-wide", "huge-height", "short-stride", "stride-overflow", "small-size", "beyond-buffer"],
)
def test_hostile_plane_values_are_refused(fields, buffer, message):
    with pytest.raises(InvalidPlane, match=message):
        check_plane(info(**fields), buffer, max_edge=8192)


def test_unknown_format_and_modifier_are_named():
    with pytest.raises(UnsupportedFormat, match=r"NV12 \(0x3231564e\)"):
        check_plane(info(drm_format=fourcc_code("NV12")), 1 << 20, 8192)
    with pytest.raises(UnsupportedFormat, match="XR24 with modifier 0x100000000000004"):
        check_plane(info(drm_format_mod=(1 << 56) | 4), 1 << 20, 8192)


def reference_tile(linear: np.ndarray, modifier: int) -> bytes:
    """Tile a linear (rows, stride) buffer, one tile at a time, as the hardware lays it out."""
    rows, stride = linear.shape
    width, height = (512, 8) if modifier == I915_FORMAT_MOD_X_TILED else (128, 32)
    out = bytearray()
    for tile_row in range(0, rows, height):
        for tile_col in range(0, stride, width):
            tile = linear[tile_row : tile_row + height, tile_col : tile_col + width]
            if modifier == I915_FORMAT_MOD_X_TILED:
                out += tile.tobytes()
            else:  # Y: 16-byte columns, each 32 rows tall
                for column in range(0, width, 16):
                    out += tile[:, column : column + 16].tobytes()
    return bytes(out)


@pytest.mark.parametrize("modifier", [I915_FORMAT_MOD_X_TILED, I915_FORMAT_MOD_Y_TILED], ids=["X", "Y"])
def test_detiling_inverts_the_hardware_layout(modifier):
    rng = np.random.default_rng(1)
    linear = rng.integers(0, 256, size=(64, 1024), dtype=np.uint8)
    tiled = np.frombuffer(reference_tile(linear, modifier), dtype=np.uint8)
    assert len(tiled) == tiled_size(modifier, 1024, 64)
    assert not np.array_equal(tiled.reshape(64, 1024), linear), "tiling really moves bytes"
    assert np.array_equal(detile(tiled, modifier, 1024, 64), linear)
    with pytest.raises(InvalidPlane, match="not a multiple"):
        detile(tiled, modifier, 1000, 64)


class FakeDevice:
    """Stands in for the kernel's VFIO device: one region plane whose metadata a test chooses."""

    def __init__(self, pixels: bytes, plane_fields: dict) -> None:
        self.fd = os.memfd_create("fake-vfio-region")
        size = max(mmap.PAGESIZE, -(-len(pixels) // mmap.PAGESIZE) * mmap.PAGESIZE)
        os.ftruncate(self.fd, size)
        os.pwrite(self.fd, pixels, 0)
        self.size = size
        self.plane_fields = plane_fields
        self.closed = False

    def supports(self, kind: int) -> bool:
        return kind == uapi.VFIO_GFX_PLANE_TYPE_REGION

    def query_plane(self, kind: int, plane_type: int) -> uapi.vfio_device_gfx_plane_info:
        if plane_type == uapi.DRM_PLANE_TYPE_CURSOR:
            return plane(drm_format=0, width=0, height=0, stride=0, size=0)
        return plane(**self.plane_fields)

    def region(self, index: int) -> Region:
        return Region(index, uapi.VFIO_REGION_INFO_FLAG_MMAP, self.size, 0, ())

    def regions(self) -> list[Region]:
        return [self.region(0)]

    def removed(self) -> bool:
        return False  # removal is the rig's test (tests/vfio/test_removal.py), with the kernel's own mbochs

    def close(self) -> None:
        os.close(self.fd)
        self.closed = True


def fake_source(pixels: bytes, **fields) -> tuple[VfioSource, FakeDevice]:
    device = FakeDevice(pixels, fields)
    source = VfioSource(lambda: device)
    source.open()
    return source, device


def test_a_tiled_region_plane_is_detiled():
    rng = np.random.default_rng(2)
    linear = rng.integers(0, 256, size=(32, 512), dtype=np.uint8)  # 128 XR24 pixels wide
    source, device = fake_source(
        reference_tile(linear, I915_FORMAT_MOD_Y_TILED),
        width=128,
        height=32,
        stride=512,
        size=512 * 32,
        drm_format_mod=I915_FORMAT_MOD_Y_TILED,
    )
    frame = source.next_frame()
    assert np.array_equal(frame.pixels.reshape(32, 512), linear)
    source.close()
    assert device.closed


def test_a_plane_larger_than_its_region_is_refused_before_reading():
    source, _ = fake_source(b"\x11" * 4096, width=64, height=64, stride=256, size=256 * 64)
    with pytest.raises(InvalidPlane, match="exceeds its buffer"):
        source.next_frame()
    source.close()


def test_an_all_zero_plane_is_no_signal():
    source, _ = fake_source(b"", drm_format=0, width=0, height=0, stride=0, size=0)
    assert source.next_frame() is not None, "one placeholder picture"
    assert source.state is SourceState.NO_SIGNAL
    assert source.next_frame() is None
    assert source.planes().primary is None
    source.close()
