"""Every key of the key table reaches QEMU's input layer as the key QEMU knows by that name."""

from __future__ import annotations

import asyncio
import re

from tests.keymaps import sample
from tests.qemu.vm import Vm
from vgpustream.testing.qemu import MENU_PROMPT, Bus, wait_for

QCODES = {  # KeyboardEvent.code → QEMU's QKeyCode (qapi/ui.json), as QEMU traces it
    "PrintScreen": "print",
    "Lang4": "hiragana",
    "Again": "again",
    "Props": "props",
    "Undo": "undo",
    "Open": "open",
    "Paste": "paste",
    "Cut": "cut",
    "Find": "find",
    "Help": "help",
    "Copy": "copy",
    "KeyA": "a",
    "Escape": "esc",
    "MetaLeft": "meta_l",
}
UNNAMED = [f"F{n}" for n in range(13, 25)] + [
    "Lang3",
    "Lang5",
    "Eject",
    "Suspend",
    "NumpadParenLeft",
    "NumpadParenRight",
]
"""Keys QEMU 7.2 has no QKeyCode for: they reach its input layer as numbers, a newer QEMU may name them."""


async def test_keys_beyond_the_pc_keyboard_reach_qemu_by_name(bus: Bus, start_vm, make_server, viewers):
    vm: Vm = start_vm(f"dbus,addr={bus.address}", "-trace", "input_event_key_*")
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    for code in [*QCODES, *UNNAMED]:
        receiver.send_input({"type": "key", "code": code, "down": True})
        receiver.send_input({"type": "key", "code": code, "down": False})
    traced = [f"key qcode {qcode}, down 1" for qcode in QCODES.values()]
    unmapped = "key qcode unmapped, down 1"

    def all_traced() -> bool:
        log = vm.log_text()
        return all(t in log for t in traced) and log.count(unmapped) == len(UNNAMED)

    try:
        await asyncio.to_thread(wait_for, all_traced, 10, "every key traced")
    except TimeoutError:
        log = vm.log_text()
        missing = [t for t in traced if t not in log]
        raise AssertionError(f"not traced by QEMU: {missing}; unmapped {log.count(unmapped)}/{len(UNNAMED)}") from None


async def test_qemu_traces_each_sampled_key_by_the_databases_name(bus: Bus, start_vm, make_server, viewers):
    """Each key of the database sample, sent in order, is traced by QEMU under the database's QKeyCode
    (`unmapped` where this QEMU's QKeyCode enumeration has no such name)."""
    vm: Vm = start_vm(f"dbus,addr={bus.address}", "-trace", "input_event_key_*")
    server = await make_server(source=f"qemu-dbus:{bus.address}")
    await asyncio.to_thread(vm.wait_text, MENU_PROMPT)
    schema = await asyncio.to_thread(vm.qmp, "query-qmp-schema")  # off the loop: QEMU may be calling into ours
    known = {name for entry in schema if entry.get("meta-type") == "enum" for name in entry.get("values", [])}
    receiver = await viewers(server)
    await receiver.next_frame()
    await receiver.wait_channel_open()
    keys = sample()
    for code, _, _ in keys:
        receiver.send_input({"type": "key", "code": code, "down": True})
        receiver.send_input({"type": "key", "code": code, "down": False})
    expected = [qcode if qcode in known else "unmapped" for _, _, qcode in keys]

    def pressed() -> list[str]:
        return re.findall(r"key qcode (\S+), down 1", vm.log_text())

    await asyncio.to_thread(wait_for, lambda: len(pressed()) >= len(keys), 10, "every key traced")
    codes = [code for code, _, _ in keys]
    assert dict(zip(codes, pressed(), strict=True)) == dict(zip(codes, expected, strict=True))
