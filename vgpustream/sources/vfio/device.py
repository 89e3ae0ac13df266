"""An open VFIO device, however it was obtained, and the few ioctls display capture uses.

Three ways in: an mdev by UUID (its IOMMU group, a container, TYPE1v2 or TYPE1), a VFIO cdev through
iommufd (Linux 6.6+), or a device fd handed over a Unix socket (SCM_RIGHTS) by the VMM that owns the
device, since a VFIO group can be opened by one process only. Every file descriptor is created after
the steps that can fail, or closed on the way out of a failure, so no error path leaks one.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import socket
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from vgpustream.errors import InvalidSourceUrl, SourceUnavailable
from vgpustream.sources.vfio import uapi

MDEV_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CDEV_PATH = re.compile(r"/dev/vfio/devices/vfio\d{1,6}")
SOCKET_PATH = re.compile(r"unix:/[^\x00]{1,200}")
SYSFS_MDEV = Path("/sys/bus/mdev/devices")


@dataclass(frozen=True)
class Region:
    index: int
    flags: int
    size: int
    offset: int
    subtypes: tuple[tuple[int, int], ...]
    """(type, subtype) pairs from the region's capability chain."""


def _ioctl(fd: int, request: int, arg: ctypes.Structure | ctypes.Array | int, what: str) -> int:
    try:
        # a mutable buffer makes fcntl.ioctl return the ioctl's result (an fd for some) and write back
        return fcntl.ioctl(fd, request, arg)
    except OSError as exc:
        raise OSError(exc.errno, f"{what}: {os.strerror(exc.errno)}") from None


def _unavailable(what: str, exc: OSError) -> SourceUnavailable:
    return SourceUnavailable(f"{what}: {exc.strerror or exc}")


class VfioDevice:
    """A VFIO device fd and the fds that keep it usable (group and container, or iommufd)."""

    def __init__(self, fd: int, holders: list[int], mdev_type: Path | None = None) -> None:
        self.fd = fd
        self._holders = holders
        self._mdev_type = mdev_type
        """The mdev's `mdev_type` link in sysfs, where the device is an mdev opened by UUID."""

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open_mdev(cls, uuid: str) -> VfioDevice:
        if not MDEV_UUID.fullmatch(uuid):
            raise InvalidSourceUrl("vfio: takes a lower-case mdev UUID")
        try:
            group = os.path.basename(os.readlink(SYSFS_MDEV / uuid / "iommu_group"))
        except OSError as exc:
            raise _unavailable(f"no mdev {uuid}", exc) from None
        with ExitStack() as cleanup:
            try:
                container = os.open("/dev/vfio/vfio", os.O_RDWR | os.O_CLOEXEC)
                cleanup.callback(os.close, container)
                if _ioctl(container, uapi.VFIO_GET_API_VERSION, 0, "VFIO_GET_API_VERSION") != uapi.VFIO_API_VERSION:
                    raise SourceUnavailable("unknown VFIO API version")
                group_fd = os.open(f"/dev/vfio/{group}", os.O_RDWR | os.O_CLOEXEC)
                cleanup.callback(os.close, group_fd)
                status = uapi.vfio_group_status(argsz=ctypes.sizeof(uapi.vfio_group_status))
                _ioctl(group_fd, uapi.VFIO_GROUP_GET_STATUS, status, "VFIO_GROUP_GET_STATUS")
                if not status.flags & uapi.VFIO_GROUP_FLAGS_VIABLE:
                    raise SourceUnavailable(f"IOMMU group {group} is not viable (a device in it is bound elsewhere)")
                _ioctl(group_fd, uapi.VFIO_GROUP_SET_CONTAINER, ctypes.c_int32(container), "VFIO_GROUP_SET_CONTAINER")
                model = next(
                    m
                    for m in (uapi.VFIO_TYPE1v2_IOMMU, uapi.VFIO_TYPE1_IOMMU, 0)
                    if m == 0 or _ioctl(container, uapi.VFIO_CHECK_EXTENSION, m, "VFIO_CHECK_EXTENSION") > 0
                )
                if not model:
                    raise SourceUnavailable("the container supports no type1 IOMMU model")
                _ioctl(container, uapi.VFIO_SET_IOMMU, model, "VFIO_SET_IOMMU")
                fd = _ioctl(
                    group_fd,
                    uapi.VFIO_GROUP_GET_DEVICE_FD,
                    ctypes.create_string_buffer(uuid.encode()),
                    "VFIO_GROUP_GET_DEVICE_FD",
                )
            except OSError as exc:
                hint = " (is the VM running and holding it? use vfio-fd:)" if exc.errno == errno.EBUSY else ""
                raise _unavailable(f"cannot open mdev {uuid}{hint}", exc) from None
            cleanup.pop_all()
        return cls(fd, [group_fd, container], SYSFS_MDEV / uuid / "mdev_type")

    @classmethod
    def open_cdev(cls, path: str) -> VfioDevice:
        """A VFIO device cdev bound to a fresh iommufd address space (needs Linux 6.6+ with VFIO_DEVICE_CDEV)."""
        if not CDEV_PATH.fullmatch(path):
            raise InvalidSourceUrl("vfio-cdev: takes a path like /dev/vfio/devices/vfio0")
        with ExitStack() as cleanup:
            try:
                iommufd = os.open("/dev/iommu", os.O_RDWR | os.O_CLOEXEC)
                cleanup.callback(os.close, iommufd)
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                cleanup.callback(os.close, fd)
                size = ctypes.sizeof(uapi.vfio_device_bind_iommufd)
                bind = uapi.vfio_device_bind_iommufd(argsz=size, iommufd=iommufd)
                _ioctl(fd, uapi.VFIO_DEVICE_BIND_IOMMUFD, bind, "VFIO_DEVICE_BIND_IOMMUFD")
                ioas = uapi.iommu_ioas_alloc(size=ctypes.sizeof(uapi.iommu_ioas_alloc))
                _ioctl(iommufd, uapi.IOMMU_IOAS_ALLOC, ioas, "IOMMU_IOAS_ALLOC")
                attach = uapi.vfio_device_attach_iommufd_pt(
                    argsz=ctypes.sizeof(uapi.vfio_device_attach_iommufd_pt), pt_id=ioas.out_ioas_id
                )
                _ioctl(fd, uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT, attach, "VFIO_DEVICE_ATTACH_IOMMUFD_PT")
            except OSError as exc:
                raise _unavailable(f"cannot open {path} through iommufd", exc) from None
            cleanup.pop_all()
        return cls(fd, [iommufd])

    @classmethod
    def receive(cls, socket_path: str) -> VfioDevice:
        """The device fd the VMM sends (SCM_RIGHTS, with any one-byte message) on connecting to its socket."""
        if not socket_path.startswith("/"):
            raise InvalidSourceUrl("vfio-fd:unix: takes an absolute socket path")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(socket_path)
                _, fds, _, _ = socket.recv_fds(sock, 1, 4)
        except OSError as exc:
            raise _unavailable("no device fd from the VMM's socket", exc) from None
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise SourceUnavailable(f"the VMM sent {len(fds)} file descriptors, not one")
        device = cls(fds[0], [])
        try:
            info = uapi.vfio_device_info(argsz=ctypes.sizeof(uapi.vfio_device_info))
            _ioctl(device.fd, uapi.VFIO_DEVICE_GET_INFO, info, "VFIO_DEVICE_GET_INFO")
        except OSError as exc:
            device.close()
            raise _unavailable("the fd the VMM sent is not a VFIO device", exc) from None
        return device

    def removed(self) -> bool:
        """Whether the mdev is being removed. Neither mbochs nor mdpy (nor the 6.1 mdev core) tells an open
        device's user: the kernel unlinks the mdev from sysfs (`mdev_type` first), then waits until the last
        fd on the device is closed. A device not opened by UUID cannot tell: always False."""
        return self._mdev_type is not None and not os.path.lexists(self._mdev_type)

    # --- the gfx-plane uAPI ----------------------------------------------------------------

    def supports(self, plane_flags: int) -> bool:
        """PROBE: whether the device exports planes of this type (DMABUF or REGION)."""
        probe = uapi.vfio_device_gfx_plane_info(
            argsz=ctypes.sizeof(uapi.vfio_device_gfx_plane_info),
            flags=uapi.VFIO_GFX_PLANE_TYPE_PROBE | plane_flags,
            drm_plane_type=uapi.DRM_PLANE_TYPE_PRIMARY,
        )
        try:
            return _ioctl(self.fd, uapi.VFIO_DEVICE_QUERY_GFX_PLANE, probe, "QUERY_GFX_PLANE(PROBE)") == 0
        except OSError:
            return False

    def query_plane(self, plane_flags: int, drm_plane_type: int) -> uapi.vfio_device_gfx_plane_info:
        plane = uapi.vfio_device_gfx_plane_info(
            argsz=ctypes.sizeof(uapi.vfio_device_gfx_plane_info), flags=plane_flags, drm_plane_type=drm_plane_type
        )
        _ioctl(self.fd, uapi.VFIO_DEVICE_QUERY_GFX_PLANE, plane, "VFIO_DEVICE_QUERY_GFX_PLANE")
        return plane

    def get_dmabuf(self, dmabuf_id: int) -> int:
        """A new dma-buf fd for a plane's dmabuf_id; the caller owns (closes) it."""
        return _ioctl(self.fd, uapi.VFIO_DEVICE_GET_GFX_DMABUF, ctypes.c_uint32(dmabuf_id), "GET_GFX_DMABUF")

    def region(self, index: int) -> Region:
        """VFIO_DEVICE_GET_REGION_INFO, growing the buffer for the capability chain as the kernel asks."""
        argsz = ctypes.sizeof(uapi.vfio_region_info)
        while True:
            buffer = ctypes.create_string_buffer(argsz)
            header = uapi.vfio_region_info.from_buffer(buffer)
            header.argsz, header.index = argsz, index
            _ioctl(self.fd, uapi.VFIO_DEVICE_GET_REGION_INFO, buffer, "VFIO_DEVICE_GET_REGION_INFO")
            if header.argsz <= argsz:
                break
            argsz = header.argsz
        subtypes = []
        offset = header.cap_offset if header.flags & uapi.VFIO_REGION_INFO_FLAG_CAPS else 0
        while offset and offset + ctypes.sizeof(uapi.vfio_region_info_cap_type) <= argsz:
            cap = uapi.vfio_info_cap_header.from_buffer_copy(buffer, offset)
            if cap.id == uapi.VFIO_REGION_INFO_CAP_TYPE:
                typed = uapi.vfio_region_info_cap_type.from_buffer_copy(buffer, offset)
                subtypes.append((typed.type, typed.subtype))
            if cap.next <= offset:  # a chain must move forward; anything else would loop
                break
            offset = cap.next
        return Region(index, header.flags, header.size, header.offset, tuple(subtypes))

    def regions(self) -> list[Region]:
        info = uapi.vfio_device_info(argsz=ctypes.sizeof(uapi.vfio_device_info))
        _ioctl(self.fd, uapi.VFIO_DEVICE_GET_INFO, info, "VFIO_DEVICE_GET_INFO")
        found = []
        for index in range(min(info.num_regions, 64)):
            try:
                found.append(self.region(index))
            except OSError:
                continue  # a region index the device does not implement
        return found

    def close(self) -> None:
        os.close(self.fd)
        for fd in self._holders:
            os.close(fd)
        self._holders = []
