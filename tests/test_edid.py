"""The EDID a VFIO display is given, checked by an independent decoder (Debian's edid-decode)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from vgpustream.sources.vfio.edid import edid_for

EDID_DECODE = shutil.which("edid-decode")


@pytest.mark.skipif(EDID_DECODE is None, reason="edid-decode is not installed (Debian package edid-decode)")
@pytest.mark.parametrize("size", [(640, 480), (1024, 768), (1280, 720), (1920, 1080), (2560, 1600), (3840, 2160)])
def test_edid_passes_edid_decode_check(size, tmp_path):
    blob = tmp_path / "edid.bin"
    blob.write_bytes(edid_for(*size))
    result = subprocess.run(
        [EDID_DECODE, "--check", str(blob)], check=False, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and "EDID conformity: PASS" in result.stdout, result.stdout + result.stderr
    width, height = size
    assert f"{width}x{height}" in result.stdout
