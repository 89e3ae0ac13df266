"""Source URLs of QEMU displays.

`qemu-dbus:unix:path=/run/vm/bus.sock` attaches through a D-Bus daemon QEMU is on (`-display
dbus,addr=...`); `qemu-dbus+qmp:unix:/run/vm/qmp.sock` attaches peer to peer through QEMU's monitor
(`-display dbus,p2p=yes`). Options: `?console=N` (default 0) and `?max_edge=N` (default 8192).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

from vgpustream.errors import InvalidSourceUrl
from vgpustream.sources.base import Source
from vgpustream.sources.common.options import MAX_EDGE, QMP_ADDRESS, SOCKET, Number, Options
from vgpustream.sources.qemu.dbus import bus_connector, qmp_connector
from vgpustream.sources.qemu.source import QemuDisplaySource

BUS_ADDRESS = re.compile(rf"unix:path=({SOCKET})")
CONSOLE = Number("console", 0, 63, 0)


def qemu_options(scheme: str, query: str) -> tuple[int, int]:
    """(console, max_edge) from a URL's query; InvalidSourceUrl for anything else."""
    options = Options(scheme, query, CONSOLE, MAX_EDGE)
    return options[CONSOLE], options[MAX_EDGE]


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


def head_url(url: str, console: int) -> str:
    """The source URL of head `console` of the VM at QEMU source URL `url`: its options in order, with
    `console` set (left out for head 0), so that two URLs of one head compare equal."""
    base, _, query = url.partition("?")
    options = sorted((name, value) for name, value in parse_qsl(query, keep_blank_values=True) if name != CONSOLE.name)
    if console != CONSOLE.default:
        options = sorted([*options, (CONSOLE.name, str(console))])
    return base + ("?" + urlencode(options, safe=":/") if options else "")


def head_of(url: str) -> tuple[str, int]:
    """The URL of head 0 of the VM at source URL `url` (as head_url writes it, so that URLs of one VM compare
    equal) and the head `url` names."""
    _, _, query = url.partition("?")
    console = dict(parse_qsl(query)).get(CONSOLE.name, "0")
    return head_url(url, 0), int(console) if console.isascii() and console.isdigit() else CONSOLE.default
