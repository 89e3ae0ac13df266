"""The command-line tools: planes, snapshot, what serve prints at start-up, the help and the version."""

from __future__ import annotations

import json
import subprocess
import sys

import av

from tests.served import ROOT, serve
from vgpustream.media.stamp import read_frame_stamp


def vgpustream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vgpustream", *args], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )


def test_planes_prints_the_plane_metadata():
    run = vgpustream("planes", "--source", "synthetic:640x480@30")
    assert run.returncode == 0, run.stderr
    planes = json.loads(run.stdout)
    assert planes["state"] == "streaming" and planes["cursor"] is None
    assert planes["primary"] == {
        "fourcc": "XR24",
        "fourcc_code": 0x34325258,
        "modifier": 0,
        "width": 640,
        "height": 480,
        "stride": 2560,
        "size": 2560 * 480,
    }


def test_snapshot_writes_the_picture(tmp_path):
    out = tmp_path / "shot.png"
    run = vgpustream("snapshot", "--source", "synthetic:640x480@30", "-o", str(out))
    assert run.returncode == 0, run.stderr
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (640, 480)
    assert read_frame_stamp(frame) is not None, "the PNG is the source's picture, stamp and all"


def test_a_bad_source_url_is_a_clear_error():
    run = vgpustream("planes", "--source", "nope:1")
    assert run.returncode == 2
    assert "unknown source scheme 'nope'" in run.stderr and "Traceback" not in run.stderr


def test_serve_prints_a_console_link_unless_told_not_to(tmp_path):
    with serve(tmp_path / "a") as served:
        link = next(line for line in served.output().splitlines() if "#token=vgs_" in line)
        assert link.strip().startswith(f"{served.url}/?session=default#token=")
    with serve(tmp_path / "b", env={"VGPUSTREAM_NO_CONSOLE_LINK": "1"}) as served:
        assert "token=" not in served.output()


def test_the_help_says_what_each_command_does_and_which_version_this_is():
    from vgpustream import __version__  # noqa: PLC0415 - the version the module under test reports

    assert vgpustream("--version").stdout.strip() == f"vgpustream {__version__}"
    top = " ".join(vgpustream("--help").stdout.split())
    for bench in ("pipeline", "fan-out", "latency", "capacity", "quality", "soak", "QEMU", "report"):
        assert bench in top, f"the top-level help of bench does not name {bench}: {top}"
    for command in ("planes", "snapshot"):
        assert "synthetic:WxH@FPS" in " ".join(vgpustream(command, "--help").stdout.split()), command


def test_a_bench_without_playwright_says_how_to_get_it_from_a_checkout():
    without = "import sys; sys.modules['playwright'] = None; from vgpustream.cli import main; sys.exit(main())"
    run = subprocess.run(
        [sys.executable, "-c", without, "bench", "report", "--quick", "--output", "/dev/null"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert run.returncode != 0
    assert "pip install -e '.[test]'" in run.stderr and "vgpustream[test]" not in run.stderr, run.stderr
