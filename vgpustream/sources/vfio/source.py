"""The VFIO display source: each frame is a query of the primary plane, then a read of its buffer.

The story of one frame, as in QEMU's hw/vfio/display.c: query the plane (DMABUF or REGION, probed at
open); an all-zero plane means the display is off; check every field the guest gave before touching
memory; find the plane's dma-buf in a small cache keyed by dmabuf_id (or the mapped region); copy the
pixels out between DMA_BUF_IOCTL_SYNC brackets; report nothing when neither the buffer nor its bytes
changed. Ownership: the cache owns each dma-buf fd and mapping and closes them on eviction and close.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from vgpustream.errors import InvalidPlane, SourceUnavailable, UnsupportedFormat
from vgpustream.media.formats import fourcc_text
from vgpustream.sources.base import Cursor, Frame, InputSink, PlaneInfo, Planes, Source, SourceState
from vgpustream.sources.common.dmabuf import Mapping, PlaneReader, check_plane, cpu_access, map_dmabuf
from vgpustream.sources.common.options import DEFAULT_MAX_EDGE
from vgpustream.sources.common.placeholder import no_signal_frame
from vgpustream.sources.common.qmp import QmpInput
from vgpustream.sources.vfio import uapi
from vgpustream.sources.vfio.device import Region, VfioDevice
from vgpustream.sources.vfio.edid import EdidRegion

DMABUF_CACHE = 5  # as QEMU: a guest flips between a few buffers
MAX_CURSOR_EDGE = 256
NO_HOTSPOT = 0xFFFFFFFF
PAGE = mmap.PAGESIZE


def plane_info(plane: uapi.vfio_device_gfx_plane_info, kind: int) -> PlaneInfo:
    dmabuf = kind == uapi.VFIO_GFX_PLANE_TYPE_DMABUF
    return PlaneInfo(
        fourcc=plane.drm_format,
        modifier=plane.drm_format_mod,
        width=plane.width,
        height=plane.height,
        stride=plane.stride,
        size=plane.size,
        dmabuf_id=plane.dmabuf_id if dmabuf else None,
        region_index=None if dmabuf else plane.region_index,
    )


class VfioSource(Source):
    """A vGPU's display through VFIO; `opener` opens the device (by mdev UUID, cdev, or received fd)."""

    def __init__(
        self, opener: Callable[[], VfioDevice], max_edge: int = DEFAULT_MAX_EDGE, qmp_input: QmpInput | None = None
    ) -> None:
        self._opener = opener
        self.max_edge = max_edge
        self._input = qmp_input
        self.device: VfioDevice | None = None
        self.kind = 0
        self._mappings: OrderedDict[int, Mapping] = OrderedDict()
        self._planes = Planes(primary=None)
        self._reader = PlaneReader()
        self._cursor: Cursor | None = None
        self._cursor_id: int | None = None
        self._cursor_image: np.ndarray | None = None
        self._edid: EdidRegion | None = None

    def open(self) -> None:
        device = self._opener()
        for kind in (uapi.VFIO_GFX_PLANE_TYPE_DMABUF, uapi.VFIO_GFX_PLANE_TYPE_REGION):
            if device.supports(kind):
                self.kind = kind
                break
        else:
            device.close()
            raise SourceUnavailable("the device exports no display planes (no gfx-plane support)")
        self.device = device
        self._edid = EdidRegion.find(device)

    @property
    def input_sink(self) -> InputSink | None:
        """QMP input-send-event to the VM's QEMU, when the source URL names its monitor (`?qmp=`)."""
        return self._input

    def close(self) -> None:
        for mapping in self._mappings.values():
            mapping.close()
        self._mappings.clear()
        if self.device is not None:
            self.device.close()
            self.device = None

    def planes(self) -> Planes:
        """The planes as the device described them at the last capture."""
        return self._planes

    def display_limits(self) -> tuple[int, int] | None:
        if self._edid is None or not all(self._edid.limits):
            return None  # no EDID region, or one that states no maximum
        return self._edid.limits

    def display_range(self) -> tuple[int, int] | None:
        return None if self._edid is None else self._edid.largest_mode()

    def resize(self, width: int, height: int, scale: float = 1.0) -> None:
        if self._edid is None:
            super().resize(width, height, scale)
            return
        self._edid.set_preferred_mode(width, height)

    def cursor(self) -> Cursor | None:
        return self._cursor

    @property
    def open_dmabufs(self) -> int:
        """How many dma-buf fds the cache holds (for tests of eviction)."""
        return sum(m.dmabuf_fd is not None for m in self._mappings.values())

    def next_frame(self) -> Frame | None:
        if self.device is None:
            self.open()  # released when it was removed: back as soon as it is created again
        assert self.device is not None
        if self.device.removed():
            self._release()
            raise SourceUnavailable("the device was removed")
        plane = self._query(uapi.DRM_PLANE_TYPE_PRIMARY)
        if plane.drm_format == 0:
            return self._no_signal()
        mapping = self._map(plane)
        info = plane_info(plane, self.kind)
        fmt = check_plane(info, mapping.size, self.max_edge)
        self._planes = Planes(primary=info, cursor=self._planes.cursor)
        frame = self._reader.read(mapping, info, fmt, self._buffer_id(plane))
        self._update_cursor()
        self.state = SourceState.STREAMING
        return frame

    def _release(self) -> None:
        """Close the device at once (its removal waits for the last fd) and forget all it showed."""
        self.close()
        self.state = SourceState.LOST
        self._planes = Planes(primary=None)
        self._reader.forget()
        self._cursor = self._cursor_id = self._cursor_image = self._edid = None

    def _query(self, plane_type: int) -> uapi.vfio_device_gfx_plane_info:
        assert self.device is not None
        try:
            return self.device.query_plane(self.kind, plane_type)
        except OSError as exc:
            if exc.errno != errno.ENOMEM:
                raise SourceUnavailable(f"cannot query the display plane: {exc.strerror}") from None
        # some drivers (mbochs in 6.1) fail the first query after a mode change: once more
        try:
            return self.device.query_plane(self.kind, plane_type)
        except OSError as exc:
            raise SourceUnavailable(f"cannot query the display plane: {exc.strerror}") from None

    def _no_signal(self) -> Frame | None:
        """The display is off: show the placeholder once, then nothing until a plane comes back."""
        self._planes = Planes(primary=None)
        if self.state is SourceState.NO_SIGNAL:
            return None
        self.state = SourceState.NO_SIGNAL
        self._reader.forget()
        return no_signal_frame()

    def _buffer_id(self, plane: uapi.vfio_device_gfx_plane_info) -> int:
        """A key for the plane's buffer: its dmabuf_id (>= 0), or -1 - its region index."""
        return plane.dmabuf_id if self.kind == uapi.VFIO_GFX_PLANE_TYPE_DMABUF else -1 - plane.region_index

    def _map(self, plane: uapi.vfio_device_gfx_plane_info) -> Mapping:
        """The mapping of the plane's buffer, from the cache or newly made (evicting the oldest)."""
        key = self._buffer_id(plane)
        mapping = self._mappings.get(key)
        if mapping is not None:
            self._mappings.move_to_end(key)
            return mapping
        mapping = self._map_dmabuf(plane) if key >= 0 else self._map_region(plane.region_index)
        self._mappings[key] = mapping
        while len(self._mappings) > DMABUF_CACHE:
            _, evicted = self._mappings.popitem(last=False)
            evicted.close()
        return mapping

    def _map_dmabuf(self, plane: uapi.vfio_device_gfx_plane_info) -> Mapping:
        assert self.device is not None
        try:
            fd = self.device.get_dmabuf(plane.dmabuf_id)
        except OSError as exc:
            raise SourceUnavailable(f"cannot export dma-buf {plane.dmabuf_id}: {exc.strerror}") from None
        return map_dmabuf(fd, f"dma-buf {plane.dmabuf_id}")

    def _map_region(self, index: int) -> Mapping:
        assert self.device is not None
        try:
            region: Region = self.device.region(index)
            if not region.flags & uapi.VFIO_REGION_INFO_FLAG_MMAP or not 0 < region.size <= (1 << 32):
                raise InvalidPlane(f"region {index} cannot hold a plane (flags {region.flags:#x}, size {region.size})")
            buffer = mmap.mmap(self.device.fd, region.size, mmap.MAP_SHARED, mmap.PROT_READ, offset=region.offset)
        except OSError as exc:
            raise SourceUnavailable(f"cannot map region {index}: {exc.strerror}") from None
        return Mapping(buffer, region.size, None)

    def _update_cursor(self) -> None:
        """The cursor plane, when the device has one (dma-buf devices only; its image read on change)."""
        if self.kind != uapi.VFIO_GFX_PLANE_TYPE_DMABUF:
            return
        try:
            plane = self._query(uapi.DRM_PLANE_TYPE_CURSOR)
        except SourceUnavailable:
            return
        if plane.drm_format == 0 or not (0 < plane.width <= MAX_CURSOR_EDGE and 0 < plane.height <= MAX_CURSOR_EDGE):
            self._cursor = None
            return
        if plane.dmabuf_id != self._cursor_id:
            mapping = self._map(plane)
            fmt = check_plane(plane_info(plane, self.kind), mapping.size, MAX_CURSOR_EDGE)
            if fmt.bytes_per_pixel != 4:
                raise UnsupportedFormat(f"cursor plane in {fourcc_text(plane.drm_format)}; expected a 32-bit format")
            rows = np.frombuffer(mapping.buffer, dtype=np.uint8)[: plane.stride * plane.height]
            with cpu_access(mapping):
                image = rows.reshape(plane.height, plane.stride)[:, : plane.width * 4].reshape(plane.height, -1, 4)
                self._cursor_image = image.copy()
            self._cursor_id = plane.dmabuf_id
        hot_x = 0 if plane.x_hot == NO_HOTSPOT else min(plane.x_hot, plane.width - 1)
        hot_y = 0 if plane.y_hot == NO_HOTSPOT else min(plane.y_hot, plane.height - 1)
        self._cursor = Cursor(
            image=self._cursor_image,
            hot_x=hot_x,
            hot_y=hot_y,
            x=ctypes.c_int32(plane.x_pos).value,  # positions may be negative (partly off-screen)
            y=ctypes.c_int32(plane.y_pos).value,
            visible=True,
            serial=plane.dmabuf_id,
        )
        self._planes = Planes(primary=self._planes.primary, cursor=plane_info(plane, self.kind))
