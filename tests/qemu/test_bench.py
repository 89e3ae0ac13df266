"""`vgpustream bench qemu` measures a real QEMU and prints its figures as JSON."""

from __future__ import annotations

import pytest

from tests.test_bench import bench


def test_bench_qemu_prints_both_timings():
    result = bench("qemu", "--runs", "1")
    assert result["viewer"] == "aiortc" and result["runs"] == 1
    first, key = result["qemu_start_to_first_frame_s"], result["key_to_changed_frame_ms"]
    assert len(first["all"]) == 1 and 0 < first["median"] < 60
    assert len(key["all"]) == 1 and 0 < key["median"] < 60_000
    assert 0 <= result["presses_missed_by_the_guest"] <= 5


@pytest.mark.browser
def test_bench_qemu_in_chromium_presses_the_key_in_the_console():
    """The console connects while no QEMU runs (its display lost), and the key goes to the VM, not to a pointer lock."""
    result = bench("qemu", "--runs", "1", "--viewer", "chromium")
    assert result["viewer"] == "chromium" and result["runs"] == 1
    first, key = result["qemu_start_to_first_frame_s"], result["key_to_changed_frame_ms"]
    assert len(first["all"]) == 1 and 0 < first["median"] < 60
    assert len(key["all"]) == 1 and 0 < key["median"] < 60_000
    assert 0 <= result["presses_missed_by_the_guest"] <= 5
