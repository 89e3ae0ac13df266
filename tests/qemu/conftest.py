"""Fixtures for tests against a real QEMU with `-display dbus`: a private bus and VMs on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.qemu.vm import LinuxVm, Vm
from vgpustream.testing.qemu import Bus, missing

if reason := missing():
    pytest.skip(f"{reason}; .ci/run installs it", allow_module_level=True)


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[Bus]:
    daemon = Bus(tmp_path)
    yield daemon
    daemon.stop()


@pytest.fixture
def start_vm(tmp_path: Path) -> Iterator[Callable[..., Vm]]:
    """`start_vm(display, *extra)` boots a VM (display `dbus,addr=...` or `dbus,p2p=yes`); all stopped after."""
    started: list[Vm] = []

    def start(display: str, *extra: str) -> Vm:
        vm = Vm(tmp_path, display, extra)
        started.append(vm)
        return vm

    yield start
    for vm in started:
        vm.stop()


@pytest.fixture
def vm(bus: Bus, start_vm: Callable[..., Vm]) -> Vm:
    """A VM on the private bus."""
    return start_vm(f"dbus,addr={bus.address}")


@pytest.fixture
def linux_vm(bus: Bus, tmp_path: Path) -> Iterator[LinuxVm]:
    """Debian's kernel on a virtio-vga on the private bus: a guest whose display follows SetUIInfo."""
    if reason := LinuxVm.missing():
        pytest.skip(reason)
    vm = LinuxVm(tmp_path, f"dbus,addr={bus.address}")
    yield vm
    vm.stop()
