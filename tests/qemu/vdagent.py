"""A guest's clipboard agent, for the rig's guest: the SPICE vdagent protocol on QEMU's qemu-vdagent port.

Run in the guest (stdlib only): `python3 vdagent.py TEXT`. It announces clipboard-by-demand with
selections and grab serials (QEMU 7.2's D-Bus clipboard ignores grabs without a serial), then grabs
the guest clipboard with TEXT once a second (answering QEMU's requests for it) until the host grabs
the clipboard in turn; it then requests the host's text, prints `host clipboard: <text as JSON>`, and
a second later copies TEXT again, until it is stopped.

QEMU's side is ui/vdagent.c; the layout is spice-protocol's vd_agent.h: a chunk header (port, size)
and, in the first chunk of a message, the message header. QEMU resets the serials by closing its end
of the port (when a D-Bus client registers): the agent then opens the port again and starts over, as
spice-vdagent does.
"""

from __future__ import annotations

import glob
import json
import os
import select
import struct
import sys
import time

PORT_NAME = "com.redhat.spice.0"
CLIENT_PORT = 1
PROTOCOL = 1
CLIPBOARD, ANNOUNCE_CAPABILITIES, GRAB, REQUEST, RELEASE = 4, 6, 7, 8, 9
CAP_CLIPBOARD_BY_DEMAND, CAP_CLIPBOARD_SELECTION, CAP_CLIPBOARD_GRAB_SERIAL = 5, 6, 17
CAPS = (1 << CAP_CLIPBOARD_BY_DEMAND) | (1 << CAP_CLIPBOARD_SELECTION) | (1 << CAP_CLIPBOARD_GRAB_SERIAL)
UTF8_TEXT = 1
SELECTION_CLIPBOARD = 0
CHUNK = struct.Struct("<II")
MESSAGE = struct.Struct("<IIQI")


def open_port() -> int:
    for _ in range(200):
        for name in glob.glob("/sys/class/virtio-ports/*/name"):
            with open(name) as file:
                if file.read().strip() == PORT_NAME:
                    return os.open(f"/dev/{name.split('/')[-2]}", os.O_RDWR)
        time.sleep(0.05)
    raise SystemExit(f"no virtio port named {PORT_NAME}")


def send(fd: int, kind: int, data: bytes) -> None:
    message = MESSAGE.pack(PROTOCOL, kind, 0, len(data)) + data
    for offset in range(0, len(message), 2048):
        part = message[offset : offset + 2048]
        os.write(fd, CHUNK.pack(CLIENT_PORT, len(part)) + part)


def selection(kind_data: bytes = b"") -> bytes:
    return struct.pack("<B3x", SELECTION_CLIPBOARD) + kind_data


class Reader:
    """Reassembles messages from chunks."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def _read(self, size: int, deadline: float) -> bytes | None:
        while len(self.buffer) < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            data = os.read(self.fd, 65536)
            if not data:
                raise EOFError  # QEMU closed its end
            self.buffer += data
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def message(self, timeout: float) -> tuple[int, bytes] | None:
        deadline = time.monotonic() + timeout
        body = b""
        while True:
            header = self._read(CHUNK.size, deadline)
            if header is None:
                return None
            _, size = CHUNK.unpack(header)
            body += self._read(size, deadline + 5) or b""
            if len(body) >= MESSAGE.size:
                _, kind, _, length = MESSAGE.unpack_from(body)
                if len(body) >= MESSAGE.size + length:
                    return kind, body[MESSAGE.size : MESSAGE.size + length]


def main() -> None:
    text = sys.argv[1].encode()
    while True:
        fd = open_port()
        try:
            serve(fd, text)
        except (EOFError, OSError):
            time.sleep(0.1)  # QEMU reset the agent connection: open it again
        finally:
            os.close(fd)


def serve(fd: int, text: bytes) -> None:
    """One agent connection, until QEMU closes it."""
    send(fd, ANNOUNCE_CAPABILITIES, struct.pack("<II", 1, CAPS))
    reader = Reader(fd)
    serial = 0
    host_grabbed = False
    next_grab = 0.0
    while True:
        if not host_grabbed and time.monotonic() >= next_grab:
            send(fd, GRAB, selection(struct.pack("<II", serial, UTF8_TEXT)))
            serial += 1
            next_grab = time.monotonic() + 1
        received = reader.message(0.2)
        if received is None:
            continue
        kind, data = received
        if kind == ANNOUNCE_CAPABILITIES and struct.unpack_from("<I", data)[0]:
            send(fd, ANNOUNCE_CAPABILITIES, struct.pack("<II", 0, CAPS))
        elif kind == REQUEST:
            send(fd, CLIPBOARD, selection(struct.pack("<I", UTF8_TEXT) + text))
        elif kind == GRAB:
            host_grabbed = True
            serial = max(serial, struct.unpack_from("<I", data, 4)[0] + 1)
            send(fd, REQUEST, selection(struct.pack("<I", UTF8_TEXT)))
        elif kind == CLIPBOARD and host_grabbed:
            print("host clipboard:", json.dumps(data[8:].decode("utf-8", "replace")), flush=True)
            host_grabbed, next_grab = False, time.monotonic() + 1  # and copy TEXT again a second later


if __name__ == "__main__":
    main()
