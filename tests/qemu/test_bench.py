"""`vgpustream bench qemu` measures a real QEMU and prints its figures as JSON."""

from __future__ import annotations

from tests.test_bench import bench


def test_bench_qemu_prints_both_timings():
    result = bench("qemu", "--runs", "1")
    assert result["viewer"] == "aiortc" and result["runs"] == 1
    first, key = result["qemu_start_to_first_frame_s"], result["key_to_changed_frame_ms"]
    assert len(first["all"]) == 1 and 0 < first["median"] < 60
    assert len(key["all"]) == 1 and 0 < key["median"] < 60_000
