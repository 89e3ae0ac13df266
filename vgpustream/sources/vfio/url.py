"""Source URLs of VFIO devices: `vfio:<mdev-uuid>`, `vfio-cdev:/dev/vfio/devices/vfioN`, `vfio-fd:unix:PATH`.

Options: `?max_edge=N` (largest plane width or height accepted from the guest, default 8192) and
`?qmp=unix:/run/vm/qmp.sock` (the VM's QEMU monitor: viewers' keyboard and mouse go to the guest
through QMP `input-send-event`; without it the display is view-only).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from vgpustream.errors import InvalidSourceUrl
from vgpustream.sources.base import Source
from vgpustream.sources.common.options import MAX_EDGE, QMP_ADDRESS, Options, Text
from vgpustream.sources.common.qmp import QmpInput
from vgpustream.sources.vfio.device import VfioDevice
from vgpustream.sources.vfio.source import VfioSource

QMP = Text("qmp", "unix:PATH")


def vfio_url(
    scheme: str, opener: Callable[[str], VfioDevice], target: re.Pattern[str], example: str
) -> Callable[[str, str], Source]:
    """A source factory for one VFIO URL scheme; the device is opened when the source is."""

    def create(spec: str, query: str) -> Source:
        if not target.fullmatch(spec):
            raise InvalidSourceUrl(f"{scheme}: source URLs look like {scheme}:{example}")
        path = spec.removeprefix("unix:")
        options = Options(scheme, query, MAX_EDGE, QMP)
        monitor = options[QMP]
        qmp = None
        if monitor is not None:
            match = QMP_ADDRESS.fullmatch(monitor)
            if match is None:
                raise InvalidSourceUrl(f"{scheme}: qmp= takes the VM's monitor socket, e.g. qmp=unix:/run/vm/qmp.sock")
            qmp = QmpInput(match[1])
        return VfioSource(lambda: opener(path), max_edge=options[MAX_EDGE], qmp_input=qmp)

    return create
