"""Frame sources, opened from a source URL such as `synthetic:1280x720@30`."""

from __future__ import annotations

import re
from collections.abc import Callable

from vgpustream.errors import InvalidSourceUrl, bounded
from vgpustream.sources.base import Source
from vgpustream.sources.qemu.url import qemu_dbus, qemu_dbus_qmp
from vgpustream.sources.synthetic import SyntheticSource
from vgpustream.sources.vfio.device import CDEV_PATH, MDEV_UUID, SOCKET_PATH, VfioDevice
from vgpustream.sources.vfio.url import vfio_url

MAX_URL_LENGTH = 1024

_SCHEMES: dict[str, Callable[[str, str], Source]] = {
    "synthetic": SyntheticSource.from_url,
    "vfio": vfio_url("vfio", VfioDevice.open_mdev, MDEV_UUID, "<mdev-uuid>"),
    "vfio-cdev": vfio_url("vfio-cdev", VfioDevice.open_cdev, CDEV_PATH, "/dev/vfio/devices/vfio0"),
    "vfio-fd": vfio_url("vfio-fd", VfioDevice.receive, SOCKET_PATH, "unix:/run/vmm/vfio.sock"),
    "qemu-dbus": qemu_dbus,
    "qemu-dbus+qmp": qemu_dbus_qmp,
}


def create_source(url: str) -> Source:
    """A (not yet opened) Source for `url`; InvalidSourceUrl if the URL is not one we understand."""
    if len(url) > MAX_URL_LENGTH or not url.isprintable():
        raise InvalidSourceUrl("source URL too long or not printable")
    if ".." in re.split(r"[/:=?&,]", url):
        # every path in a source URL names a device or socket; none needs to climb out of a folder
        raise InvalidSourceUrl("source URL must not contain '..' path segments")
    scheme, sep, rest = url.partition(":")
    factory = _SCHEMES.get(scheme)
    if not sep or factory is None:
        raise InvalidSourceUrl(f"unknown source scheme {bounded(scheme, 20)}; known: {', '.join(_SCHEMES)}")
    spec, _, query = rest.partition("?")
    return factory(spec, query)
