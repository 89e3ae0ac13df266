"""Source URLs of QEMU displays.

`qemu-dbus:unix:path=/run/vm/bus.sock` attaches through a D-Bus daemon QEMU is on (`-display
dbus,addr=...`); `qemu-dbus+qmp:unix:/run/vm/qmp.sock` attaches peer to peer through QEMU's monitor
(`-display dbus,p2p=yes`). Options: `?console=N` (default 0) and `?max_edge=N` (default 8192).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from vgpustream.errors import InvalidSourceUrl
from vgpustream.sources.base import Source
from vgpustream.sources.qemu.dbus import bus_connector, qmp_connector
from vgpustream.sources.qemu.source import QemuDisplaySource

SOCKET = r"/[A-Za-z0-9._@+/-]{1,200}"
BUS_ADDRESS = re.compile(rf"unix:path=({SOCKET})")
QMP_ADDRESS = re.compile(rf"unix:({SOCKET})")
MAX_CONSOLE = 63
EDGE_RANGE = (64, 16384)


def qemu_options(scheme: str, query: str) -> tuple[int, int]:
    """(console, max_edge) from a URL's query; InvalidSourceUrl for anything else."""
    options = parse_qs(query, keep_blank_values=True)
    console = options.pop("console", ["0"])[-1]
    edge = options.pop("max_edge", ["8192"])[-1]
    valid = console.isdigit() and int(console) <= MAX_CONSOLE and edge.isdigit()
    if options or not valid or not EDGE_RANGE[0] <= int(edge) <= EDGE_RANGE[1]:
        raise InvalidSourceUrl(
            f"{scheme}: takes only the options console=0..{MAX_CONSOLE} and max_edge={EDGE_RANGE[0]}..{EDGE_RANGE[1]}"
        )
    return int(console), int(edge)


def qemu_dbus(spec: str, query: str) -> Source:
    match = BUS_ADDRESS.fullmatch(spec)
    if match is None:
        raise InvalidSourceUrl("qemu-dbus: source URLs look like qemu-dbus:unix:path=/run/vm/dbus.sock")
    console, edge = qemu_options("qemu-dbus", query)
    return QemuDisplaySource(bus_connector(spec), console=console, max_edge=edge)


def qemu_dbus_qmp(spec: str, query: str) -> Source:
    match = QMP_ADDRESS.fullmatch(spec)
    if match is None:
        raise InvalidSourceUrl("qemu-dbus+qmp: source URLs look like qemu-dbus+qmp:unix:/run/vm/qmp.sock")
    console, edge = qemu_options("qemu-dbus+qmp", query)
    return QemuDisplaySource(qmp_connector(match[1]), console=console, max_edge=edge)
