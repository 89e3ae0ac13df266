"""The parts of the Linux VFIO and iommufd uAPI that display capture needs.

Mirrors include/uapi/linux/vfio.h and linux/iommufd.h: the same names, the same layouts (sizes asserted
below), so the two can be read side by side. Every VFIO ioctl is `_IO(VFIO_TYPE, VFIO_BASE + n)`: the
header encodes neither size nor direction in the number (the `_IOW`/`_IOR` in its comments are
documentation only); the structures carry their size in `argsz`. The dma-buf uAPI is in
sources/common/dmabuf_uapi.py.
"""

from __future__ import annotations

import ctypes

u16, u32, s32, u64 = ctypes.c_uint16, ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64


def _IO(kind: int, nr: int) -> int:
    return kind << 8 | nr


VFIO_TYPE = ord(";")
VFIO_BASE = 100
VFIO_API_VERSION = 0

# --- container (/dev/vfio/vfio) ----------------------------------------------------------------
VFIO_GET_API_VERSION = _IO(VFIO_TYPE, VFIO_BASE + 0)
"""No argument; returns VFIO_API_VERSION."""
VFIO_CHECK_EXTENSION = _IO(VFIO_TYPE, VFIO_BASE + 1)
"""Argument: an extension (by value); returns > 0 when supported."""
VFIO_SET_IOMMU = _IO(VFIO_TYPE, VFIO_BASE + 2)
"""Argument: the IOMMU model (by value), after a group was added to the container."""
VFIO_TYPE1_IOMMU = 1
VFIO_TYPE1v2_IOMMU = 3

# --- group (/dev/vfio/<group>) ---------------------------------------------------------------
VFIO_GROUP_GET_STATUS = _IO(VFIO_TYPE, VFIO_BASE + 3)
"""Argument: struct vfio_group_status (out: flags)."""
VFIO_GROUP_SET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 4)
"""Argument: pointer to the container fd (s32)."""
VFIO_GROUP_UNSET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 5)
VFIO_GROUP_GET_DEVICE_FD = _IO(VFIO_TYPE, VFIO_BASE + 6)
"""Argument: the device name (NUL-terminated); returns a new device fd. EBUSY: opened elsewhere."""
VFIO_GROUP_FLAGS_VIABLE = 1 << 0
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1

# --- device ------------------------------------------------------------------------------------
VFIO_DEVICE_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 7)
"""Argument: struct vfio_device_info (out: flags, num_regions, num_irqs)."""
VFIO_DEVICE_GET_REGION_INFO = _IO(VFIO_TYPE, VFIO_BASE + 8)
"""Argument: struct vfio_region_info with index set (out: flags, size, offset; with
VFIO_REGION_INFO_FLAG_CAPS a capability chain follows, and argsz grows when the buffer was too small)."""
VFIO_DEVICE_RESET = _IO(VFIO_TYPE, VFIO_BASE + 11)
"""Resets the device. Never used by vgpustream: it would reset the guest's GPU."""
VFIO_DEVICE_QUERY_GFX_PLANE = _IO(VFIO_TYPE, VFIO_BASE + 14)
"""Argument: struct vfio_device_gfx_plane_info with flags and drm_plane_type set.
With VFIO_GFX_PLANE_TYPE_PROBE | <type>: returns 0 if the device supports that plane type.
Otherwise fills in the plane; an all-zero plane (drm_format 0) means no plane (display off).
EINVAL: unsupported plane type; ENODEV: no plane yet; ENOMEM: transient in some drivers."""
VFIO_DEVICE_GET_GFX_DMABUF = _IO(VFIO_TYPE, VFIO_BASE + 15)
"""Argument: pointer to a u32 dmabuf_id from QUERY_GFX_PLANE; returns a new dma-buf fd."""
VFIO_DEVICE_BIND_IOMMUFD = _IO(VFIO_TYPE, VFIO_BASE + 18)
"""cdev only (Linux 6.6+): argument struct vfio_device_bind_iommufd."""
VFIO_DEVICE_ATTACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 19)
"""cdev only: argument struct vfio_device_attach_iommufd_pt (pt_id: an IOAS id)."""

VFIO_DEVICE_FLAGS_PCI = 1 << 1
VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
VFIO_REGION_INFO_FLAG_CAPS = 1 << 3
VFIO_REGION_INFO_CAP_TYPE = 2
VFIO_REGION_TYPE_GFX = 1
VFIO_REGION_SUBTYPE_GFX_EDID = 1

VFIO_GFX_PLANE_TYPE_PROBE = 1 << 0
VFIO_GFX_PLANE_TYPE_DMABUF = 1 << 1
VFIO_GFX_PLANE_TYPE_REGION = 1 << 2

# enum drm_plane_type (include/drm/drm_plane.h)
DRM_PLANE_TYPE_PRIMARY = 1
DRM_PLANE_TYPE_CURSOR = 2

VFIO_DEVICE_GFX_LINK_STATE_UP = 1
VFIO_DEVICE_GFX_LINK_STATE_DOWN = 2


class vfio_group_status(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32)]


class vfio_device_info(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32), ("num_regions", u32), ("num_irqs", u32), ("cap_offset", u32)]


class vfio_region_info(ctypes.Structure):
    _fields_ = [
        ("argsz", u32),
        ("flags", u32),
        ("index", u32),
        ("cap_offset", u32),
        ("size", u64),
        ("offset", u64),
    ]


class vfio_info_cap_header(ctypes.Structure):
    _fields_ = [("id", u16), ("version", u16), ("next", u32)]


class vfio_region_info_cap_type(ctypes.Structure):
    _fields_ = [("header", vfio_info_cap_header), ("type", u32), ("subtype", u32)]


class _plane_id(ctypes.Union):
    _fields_ = [("region_index", u32), ("dmabuf_id", u32)]


class vfio_device_gfx_plane_info(ctypes.Structure):
    """One display plane: everything in it after drm_plane_type comes from the (untrusted) guest."""

    _anonymous_ = ("u",)
    _fields_ = [
        ("argsz", u32),
        ("flags", u32),
        ("drm_plane_type", u32),  # in
        ("drm_format", u32),  # DRM fourcc
        ("drm_format_mod", u64),  # DRM modifier (tiling)
        ("width", u32),
        ("height", u32),
        ("stride", u32),
        ("size", u32),
        ("x_pos", u32),  # cursor position
        ("y_pos", u32),
        ("x_hot", u32),  # cursor hotspot; 0xffffffff: none
        ("y_hot", u32),
        ("u", _plane_id),
    ]


class vfio_region_gfx_edid(ctypes.Structure):
    """At offset 0 of the EDID region; the EDID blob itself lives at edid_offset."""

    _fields_ = [
        ("edid_offset", u32),
        ("edid_max_size", u32),
        ("edid_size", u32),
        ("max_xres", u32),
        ("max_yres", u32),
        ("link_state", u32),
    ]


class vfio_device_bind_iommufd(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32), ("iommufd", s32), ("out_devid", u32)]


class vfio_device_attach_iommufd_pt(ctypes.Structure):
    _fields_ = [("argsz", u32), ("flags", u32), ("pt_id", u32)]


# --- iommufd (/dev/iommu, linux/iommufd.h) -------------------------------------------------------
IOMMUFD_TYPE = ord(";")
IOMMUFD_CMD_IOAS_ALLOC = 0x81
IOMMU_IOAS_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)
"""Argument: struct iommu_ioas_alloc (out: out_ioas_id)."""


class iommu_ioas_alloc(ctypes.Structure):
    _fields_ = [("size", u32), ("flags", u32), ("out_ioas_id", u32)]


for _struct, _size in (
    (vfio_group_status, 8),
    (vfio_device_info, 20),
    (vfio_region_info, 32),
    (vfio_info_cap_header, 8),
    (vfio_region_info_cap_type, 16),
    (vfio_device_gfx_plane_info, 64),
    (vfio_region_gfx_edid, 24),
    (vfio_device_bind_iommufd, 16),
    (vfio_device_attach_iommufd_pt, 12),
    (iommu_ioas_alloc, 12),
):
    assert ctypes.sizeof(_struct) == _size, (_struct.__name__, ctypes.sizeof(_struct))
assert vfio_device_gfx_plane_info.drm_format_mod.offset == 16
assert vfio_device_gfx_plane_info.dmabuf_id.offset == 56
