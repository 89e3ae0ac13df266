"""`vgpustream bench qemu` measures a real QEMU and prints its figures as JSON."""

from __future__ import annotations

import pytest

from tests.test_bench import bench


@pytest.mark.parametrize("viewer", ["aiortc", pytest.param("chromium", marks=pytest.mark.browser)])
def test_bench_qemu_prints_both_timings(viewer):
    """In Chromium the console connects while no QEMU runs (its display lost), and its key reaches the VM."""
    result = bench("qemu", "--runs", "1", "--viewer", viewer)
    assert result["viewer"] == viewer and result["runs"] == 1
    first, key = result["qemu_start_to_first_frame_s"], result["key_to_changed_frame_ms"]
    assert len(first["all"]) == 1 and 0 < first["median"] < 60
    assert len(key["all"]) == 1 and 0 < key["median"] < 60_000
    assert 0 <= result["presses_missed_by_the_guest"] <= 5
