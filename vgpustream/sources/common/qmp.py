"""A small asyncio QMP client (QEMU's JSON machine protocol on a unix socket) and a QMP input sink.

Commands carry an `id` that QEMU echoes, so replies are matched to callers; events are ignored.
File descriptors travel with a command as SCM_RIGHTS (for `getfd`, then `add_client`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
from collections.abc import Sequence
from typing import Any

from vgpustream.errors import SourceUnavailable, bounded
from vgpustream.sources.common.qemu_input import BUTTON_NAMES, QemuInput

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 5.0
MAX_LINE = 1 << 20
ABS_MAX = 0x7FFF  # QEMU's absolute axis range (INPUT_EVENT_ABS_MAX)
RECONNECT_INTERVAL = 1.0


class QmpError(SourceUnavailable):
    """QEMU refused a command or the monitor went away."""


class Qmp:
    """One QMP connection: `connect`, then `execute` commands (or `send` them without waiting)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self) -> Qmp:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await loop.sock_connect(sock, self.path)
                greeting = await self._read_line(sock, bytearray())
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise QmpError(f"cannot reach QMP at {bounded(self.path)}: {exc}") from None
        if "QMP" not in greeting:
            sock.close()
            raise QmpError(f"{bounded(self.path)} is not a QMP socket")
        self._sock = sock
        self._reader = asyncio.create_task(self._read_replies(sock), name="qmp-reader")
        await self.execute("qmp_capabilities")
        return self

    async def execute(self, command: str, arguments: dict[str, Any] | None = None, fds: Sequence[int] = ()) -> Any:
        """Run one command and return its `return` value; QmpError with QEMU's message if it fails."""
        future = self._submit(command, arguments, fds)
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                return await future
        except TimeoutError:
            raise QmpError(f"QMP: no answer to {command} in {COMMAND_TIMEOUT:g} s") from None

    def send(self, command: str, arguments: dict[str, Any]) -> None:
        """Submit a command whose reply nobody waits for (input events); errors are logged, bounded."""
        if self._sock is None:
            return
        future = self._submit(command, arguments, ())
        future.add_done_callback(_log_failure)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._drop("QMP connection closed")

    def _submit(self, command: str, arguments: dict[str, Any] | None, fds: Sequence[int]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._sock is None:
            future.set_exception(QmpError("QMP is not connected"))
            return future
        ident = next(self._ids)
        message = {"execute": command, "id": ident} | ({"arguments": arguments} if arguments else {})
        data = json.dumps(message).encode() + b"\n"
        try:
            # commands are small: a unix socket takes them whole (SCM_RIGHTS travel with the first byte)
            sent = socket.send_fds(self._sock, [data], list(fds)) if fds else self._sock.send(data)
        except OSError as exc:
            future.set_exception(QmpError(f"QMP: cannot send {command}: {exc.strerror}"))
            return future
        if sent != len(data):
            future.set_exception(QmpError(f"QMP: {command} was cut short"))
            return future
        self._pending[ident] = future
        return future

    async def _read_line(self, sock: socket.socket, buffer: bytearray) -> str:
        loop = asyncio.get_running_loop()
        while b"\n" not in buffer:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                raise ConnectionResetError("QMP closed the connection")
            buffer += chunk
            if len(buffer) > MAX_LINE:
                raise ConnectionResetError("QMP sent an over-long line")
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        return line.decode(errors="replace")

    async def _read_replies(self, sock: socket.socket) -> None:
        buffer = bytearray()
        try:
            while True:
                reply = json.loads(await self._read_line(sock, buffer))
                future = self._pending.pop(reply.get("id"), None) if isinstance(reply, dict) else None
                if future is None or future.done():
                    continue  # an event, or a reply to a command that timed out
                if "error" in reply:
                    error = reply["error"].get("desc", "error") if isinstance(reply["error"], dict) else "error"
                    future.set_exception(QmpError(f"QMP: {bounded(str(error), 160)}"))
                else:
                    future.set_result(reply.get("return"))
        except (OSError, ValueError) as exc:
            self._drop(f"QMP connection lost: {exc}")

    def _drop(self, reason: str) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(QmpError(reason))
        self._pending.clear()
        self.closed.set()


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.debug("QMP input event failed: %s", exc)


class QmpInput(QemuInput):
    """The input protocol as QMP `input-send-event`, for a display whose VM QEMU runs (VFIO).

    Events that arrive while the monitor is unreachable are dropped and counted, and the sink
    connects again (at most once a second): a restarted QEMU gets input again without a restart here.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.qmp: Qmp | None = None
        self.dropped = 0
        self._connecting: asyncio.Task[None] | None = None
        self._last_attempt = -RECONNECT_INTERVAL

    async def open(self) -> None:
        """Connect now if QEMU's monitor is there; if not, say so and keep trying on input."""
        try:
            await self._connect()
        except QmpError as exc:
            log.warning("QMP input sink: %s; will retry", exc.message)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self.qmp is not None:
            await self.qmp.close()

    async def _connect(self) -> None:
        self._last_attempt = asyncio.get_running_loop().time()
        self.qmp = await Qmp(self.path).connect()

    async def _reconnect(self) -> None:
        with contextlib.suppress(QmpError):
            await self._connect()

    def _events(self, *events: dict[str, Any]) -> None:
        qmp = self.qmp
        if qmp is None or qmp.closed.is_set():
            self.dropped += 1
            now = asyncio.get_running_loop().time()
            idle = self._connecting is None or self._connecting.done()
            if idle and now - self._last_attempt >= RECONNECT_INTERVAL:
                self._connecting = asyncio.create_task(self._reconnect(), name="qmp-reconnect")
            return
        qmp.send("input-send-event", {"events": list(events)})

    def key(self, qnum: int, down: bool) -> None:
        self._events({"type": "key", "data": {"down": down, "key": {"type": "number", "data": qnum}}})

    def move(self, x: float, y: float) -> None:
        self._events(
            {"type": "abs", "data": {"axis": "x", "value": round(x * ABS_MAX)}},
            {"type": "abs", "data": {"axis": "y", "value": round(y * ABS_MAX)}},
        )

    def button(self, index: int, down: bool) -> None:
        self._events({"type": "btn", "data": {"down": down, "button": BUTTON_NAMES[index]}})
