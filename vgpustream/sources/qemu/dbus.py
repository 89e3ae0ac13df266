"""D-Bus connections to QEMU's display: through a bus daemon, or peer to peer on a socket.

QEMU's D-Bus display talks to each Listener on a private socket (Console.RegisterListener passes one
end), and `-display dbus,p2p=yes` talks to a client on a socket handed over through QMP `add_client`.
On both QEMU is the authenticating side and there is no bus: such connections are `compat.PeerBus`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from dbus_fast import Message, MessageFlag, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import AuthError, DBusError

from vgpustream.compat import PeerBus
from vgpustream.errors import SourceUnavailable, UnsupportedOperation, bounded
from vgpustream.sources.common.qmp import Qmp

QEMU_NAME = "org.qemu"
DISPLAY_PATH = "/org/qemu/Display1"
PROPERTIES = "org.freedesktop.DBus.Properties"
CALL_TIMEOUT = 5.0
CLIENT_FD_NAME = "vgpustream-dbus"
UNSUPPORTED = "org.qemu.Display1.Error.Unsupported"


class Display:
    """Calls on QEMU's display objects over one connection (bus or peer), with clear errors."""

    def __init__(self, bus: MessageBus, peer: bool) -> None:
        self.bus = bus
        self.destination = None if peer else QEMU_NAME

    async def call(
        self, path: str, interface: str, member: str, signature: str = "", body: list[Any] | None = None, **kw: Any
    ) -> list[Any]:
        """One method call on DISPLAY_PATH/`path` (or DISPLAY_PATH itself for `""`).

        SourceUnavailable when QEMU is not there or says no.
        """
        message = Message(
            destination=self.destination,
            path=f"{DISPLAY_PATH}/{path}" if path else DISPLAY_PATH,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
            **kw,
        )
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                reply = await self.bus.call(message)
        except TimeoutError:
            raise SourceUnavailable(f"QEMU display: no answer to {member} in {CALL_TIMEOUT:g} s") from None
        except (DBusError, OSError, EOFError) as exc:
            raise SourceUnavailable(f"QEMU display: {member} failed: {bounded(str(exc), 120)}") from None
        if reply is None or reply.message_type is MessageType.ERROR:
            text = reply.body[0] if reply is not None and reply.body else "no reply"
            message = f"QEMU display: {member} failed: {bounded(str(text), 120)}"
            if reply is not None and reply.error_name == UNSUPPORTED:
                raise UnsupportedOperation(message)  # e.g. SetUIInfo on a device without a display hint (std VGA)
            raise SourceUnavailable(message)
        return list(reply.body)

    def send(self, path: str, interface: str, member: str, signature: str, body: list[Any]) -> None:
        """A call whose reply nobody waits for (input events): never blocks the event loop."""
        if not self.bus.connected:
            return
        sent = self.bus.send(
            Message(
                destination=self.destination,
                path=f"{DISPLAY_PATH}/{path}",
                interface=interface,
                member=member,
                signature=signature,
                body=body,
                flags=MessageFlag.NO_REPLY_EXPECTED,
            )
        )
        # a connection that drops mid-send fails the future; the listener's loss handling reports it
        sent.add_done_callback(lambda future: future.cancelled() or future.exception())

    async def properties(self, path: str, interface: str) -> dict[str, Any]:
        (values,) = await self.call(path, PROPERTIES, "GetAll", "s", [interface])
        return {name: variant.value for name, variant in values.items()}


async def add_match(bus: MessageBus, rule: str) -> None:
    """Ask the bus daemon to route signals matching `rule` to this connection."""
    message = Message(
        destination="org.freedesktop.DBus",
        path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus",
        member="AddMatch",
        signature="s",
        body=[rule],
    )
    reply = await bus.call(message)
    if reply.message_type is MessageType.ERROR:
        raise SourceUnavailable(f"the bus refused a match rule: {bounded(str(reply.body), 120)}")


def bus_connector(address: str) -> Callable[[], Awaitable[tuple[MessageBus, bool]]]:
    """Connects to QEMU through the bus daemon at `address` (QEMU owns the name org.qemu on it)."""

    async def connect() -> tuple[MessageBus, bool]:
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                bus = await MessageBus(bus_address=address, negotiate_unix_fd=True).connect()
        except (OSError, DBusError, AuthError, TimeoutError) as exc:
            raise SourceUnavailable(f"cannot connect to the D-Bus at {bounded(address)}: {exc}") from None
        return bus, False

    return connect


async def peer_connection(
    hand_over: Callable[[int], Awaitable[object]], what: str, handler: Callable[[Message], Any] | None = None
) -> PeerBus:
    """A PeerBus on one end of a new socket pair whose other end `hand_over(fd)` gives to QEMU.

    QEMU authenticates its end while it handles the hand-over, so both run at once. `handler` gets
    the messages QEMU sends from the first one on. SourceUnavailable naming `what` if it fails.
    """
    ours, theirs = socket.socketpair()
    bus = PeerBus(ours)
    if handler is not None:
        bus.add_message_handler(handler)
    try:
        async with asyncio.timeout(CALL_TIMEOUT):
            await asyncio.gather(bus.connect(), hand_over(theirs.fileno()))
    except (OSError, EOFError, AuthError, DBusError, TimeoutError) as exc:
        bus.disconnect()
        raise SourceUnavailable(f"QEMU display: cannot {what}: {bounded(str(exc), 120)}") from None
    except BaseException:
        bus.disconnect()
        raise
    finally:
        theirs.close()
    return bus


def qmp_connector(path: str) -> Callable[[], Awaitable[tuple[MessageBus, bool]]]:
    """Connects to QEMU peer to peer: a socket handed to QEMU over QMP (`getfd`, then `add_client`)."""

    async def connect() -> tuple[MessageBus, bool]:
        qmp = await Qmp(path).connect()

        async def hand_over(fd: int) -> None:
            await qmp.execute("getfd", {"fdname": CLIENT_FD_NAME}, fds=[fd])
            await qmp.execute("add_client", {"protocol": "@dbus-display", "fdname": CLIENT_FD_NAME})

        try:
            return await peer_connection(hand_over, "attach through QMP"), True
        finally:
            await qmp.close()

    return connect
