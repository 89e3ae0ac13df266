"""QMP (QEMU's JSON machine protocol on a unix socket) through QEMU's own client, `qemu.qmp`, and a
QMP input sink.

`Qmp` wraps `qemu.qmp.QMPClient` in this project's terms: every failure is a QmpError (a
SourceUnavailable with a bounded message), every wait is bounded by COMMAND_TIMEOUT, and file
descriptors travel before the command that names them (SCM_RIGHTS, for `getfd`, then `add_client`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from qemu.qmp import ExecuteError, QMPClient, QMPError, Runstate

from vgpustream.errors import SourceUnavailable, bounded
from vgpustream.sources.common.qemu_input import BUTTON_NAMES, QemuInput

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 5.0
ABS_MAX = 0x7FFF  # QEMU's absolute axis range (INPUT_EVENT_ABS_MAX)
RECONNECT_INTERVAL = 1.0


class QmpError(SourceUnavailable):
    """QEMU refused a command or the monitor went away."""


class Qmp:
    """One QMP connection: `connect`, then `execute` commands (or `send` them without waiting)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._client = QMPClient("vgpustream")
        self._sent: set[asyncio.Task[Any]] = set()

    @property
    def connected(self) -> bool:
        return self._client.runstate is Runstate.RUNNING

    async def connect(self) -> Qmp:
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await self._client.connect(self.path)
        except (QMPError, OSError, TimeoutError) as exc:
            await self.close()
            raise QmpError(f"cannot reach QMP at {bounded(self.path)}: {bounded(str(exc), 120)}") from None
        return self

    async def execute(self, command: str, arguments: dict[str, Any] | None = None, fds: Sequence[int] = ()) -> Any:
        """Run one command and return its `return` value; QmpError with QEMU's message if it fails."""
        try:
            for fd in fds:
                self._client.send_fd_scm(fd)
            async with asyncio.timeout(COMMAND_TIMEOUT):
                return await self._client.execute(command, arguments)
        except ExecuteError as exc:
            raise QmpError(f"QMP: {bounded(exc.error.desc, 160)}") from None
        except TimeoutError:
            raise QmpError(f"QMP: no answer to {command} in {COMMAND_TIMEOUT:g} s") from None
        except (QMPError, OSError) as exc:
            raise QmpError(f"QMP: cannot run {command}: {bounded(str(exc), 120)}") from None

    def send(self, command: str, arguments: dict[str, Any]) -> None:
        """Submit a command whose reply nobody waits for (input events); errors are logged, bounded."""
        task = asyncio.create_task(self.execute(command, arguments), name=f"qmp-{command}")
        self._sent.add(task)
        task.add_done_callback(self._done)

    async def close(self) -> None:
        for task in self._sent:
            task.cancel()
        await asyncio.gather(*self._sent, return_exceptions=True)
        with contextlib.suppress(QMPError, OSError):
            await self._client.disconnect()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._sent.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
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
        if qmp is None or not qmp.connected:
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

    def relative(self, dx: int, dy: int) -> None:
        self._events(
            {"type": "rel", "data": {"axis": "x", "value": dx}},
            {"type": "rel", "data": {"axis": "y", "value": dy}},
        )

    def button(self, index: int, down: bool) -> None:
        self._events({"type": "btn", "data": {"down": down, "button": BUTTON_NAMES[index]}})
