"""Fixtures of the VFIO tests. They run only inside the rig's VM (tests/rig/run.sh): they load the
kernel's sample mdev drivers, which must never happen to a real host's kernel."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

RIG = Path(os.environ.get("RIG") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vgpustream-rig")
MDEV_BUS = Path("/sys/class/mdev_bus")


def in_rig() -> bool:
    return "vgpustream.rig=1" in Path("/proc/cmdline").read_text().split()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if in_rig():
        return
    skip = pytest.mark.skip(reason="VFIO tests run inside the rig's VM: tests/rig/run.sh")
    for item in items:
        if "vfio" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def drivers() -> None:
    """vfio, its type1 IOMMU, mdev, and the rig's mbochs and mdpy, loaded once."""
    subprocess.run(["modprobe", "-a", "vfio", "vfio_iommu_type1", "mdev"], check=True)
    for module in ("mbochs", "mdpy"):
        if not Path(f"/sys/module/{module}").exists():
            subprocess.run(["insmod", str(RIG / "build" / f"{module}.ko")], check=True)


def create_mdev(parent: str, kind: str, name: str | None = None) -> str:
    """Create an mdev of `kind` on `parent`, under a new UUID or `name`; its UUID."""
    name = name or str(uuid.uuid4())
    (MDEV_BUS / parent / "mdev_supported_types" / kind / "create").write_text(name)
    return name


@pytest.fixture
def mdev_factory(drivers: None) -> Iterator:
    created: list[str] = []

    def make(parent: str, kind: str) -> str:
        created.append(create_mdev(parent, kind))
        return created[-1]

    yield make
    for name in created:
        remove = Path(f"/sys/bus/mdev/devices/{name}/remove")
        if remove.exists():  # (a test may have removed it)
            remove.write_text("1")


@pytest.fixture
def mbochs_uuid(mdev_factory) -> str:
    return mdev_factory("mbochs", "mbochs-large")  # 64 MiB of video memory: 4K fits
