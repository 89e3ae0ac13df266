"""A second independent WHEP player: GStreamer's webrtcbin (Debian's packages) plays a session.

GStreamer's DTLS uses an RSA certificate, which aiortc alone cannot talk to (vgpustream.compat).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
PLAYER = Path(__file__).resolve().parent / "gst_whep_player.py"
PLAY_S = 5
PROBE = """
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import Gst, GstWebRTC, GstSdp, Nice
Gst.init(None)
elements = ("webrtcbin", "nicesrc", "rtph264depay", "h264parse", "avdec_h264", "videoconvert", "appsink")
missing = [name for name in elements if not Gst.ElementFactory.find(name)]
assert not missing, "missing GStreamer elements: " + " ".join(missing)
"""


def gstreamer_missing() -> str | None:
    """Why Debian's Python cannot run the GStreamer player here, or None when it can."""
    try:
        probe = subprocess.run([SYSTEM_PYTHON, "-c", PROBE], check=False, capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return f"{SYSTEM_PYTHON} cannot run: {exc}"
    if probe.returncode != 0:
        return f"{SYSTEM_PYTHON} cannot use GStreamer's webrtcbin: {probe.stderr.strip().splitlines()[-1:]}"
    return None


async def test_gstreamer_webrtcbin_plays_a_session(make_server, http):
    reason = gstreamer_missing()
    if reason is not None:
        pytest.skip(
            reason + " (Debian packages python3-gi gir1.2-gst-plugins-bad-1.0 gir1.2-nice-0.1 "
            "gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-nice)"
        )
    server = await make_server(source="synthetic:1280x720@30")
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view"}) as response:
        issued = await response.json()
    whep_url = str(server.make_url("/whep/default"))
    player = await asyncio.create_subprocess_exec(
        SYSTEM_PYTHON,
        str(PLAYER),
        whep_url,
        issued["token"],
        str(PLAY_S),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(player.communicate(), timeout=60)
    finally:
        if player.returncode is None:
            player.kill()
            await player.wait()
    lines = stdout.decode().strip().splitlines()
    assert player.returncode == 0 and lines, stdout.decode() + stderr.decode()[-3000:]
    result = json.loads(lines[-1])
    assert (result["width"], result["height"]) == (1280, 720)
    assert result["frames"] >= PLAY_S * 30 // 2, result  # 30 fps, with a wide margin for a loaded machine
    assert result["delete_status"] == 200
