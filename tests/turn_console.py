"""The web console through coturn, for a Chromium that cannot send UDP, in a network namespace of its own.

`unshare --net -- python3 -m tests.turn_console WORKDIR turn|turns|none` (as root) builds the namespace's network
(a veth pair with a TEST-NET-1 address for the server and coturn: browsers treat loopback candidates
specially), drops UDP of user nobody (iptables owner match), runs coturn (TURN REST secret; TLS with a test
CA for `turns`), vgpustream with --turn-secret-file, and Debian's Chromium as nobody, with its default
WebRTC settings and the test CA in nobody's NSS database. It prints one JSON line: the console's selected
candidate pair, first frame and glass-to-glass delay. With `none` there is no TURN server at all: the console
(transport=auto) must take the WebSocket; then the line says its transport, first frame and the key presses
that reached the VM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.browser import CHROMIUM_ARGS
from tests.coturn import SECRET, coturn, make_test_ca
from vgpustream.api.app import create_app
from vgpustream.api.state import REGISTRY
from vgpustream.bench.latency import RECORD_DELAY_REPORTS
from vgpustream.session import Session
from vgpustream.settings import Settings
from vgpustream.testing.chromium import CHROMIUM

ADDRESS = "192.0.2.10"
"""The server's and coturn's address (TEST-NET-1), on a veth inside this namespace only."""
NOBODY = 65534
HTTP_PORT, TURN_PORT = 8080, 3478
"""coturn's TLS port is TURN_PORT + 1."""
OPERATOR_TOKEN = "turn-console-operator"
PLAYING_TIMEOUT_MS = 30_000
DELAY_SECONDS = 3.0

FIRST_FRAME = """
window.firstFrameMs = null;  // from navigation to the first frame presented
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("screen").requestVideoFrameCallback((now) => { window.firstFrameMs = now; });
});
"""
PLAYING = "() => window.vgpustream && window.vgpustream.state === 'playing' && window.firstFrameMs !== null"
WHERE = """() => ({
  state: window.vgpustream ? window.vgpustream.state : null,
  loaded: performance.getEntriesByType("resource").map((r) => r.name.split("/").pop() + " " + Math.round(r.duration)),
})"""
SELECTED_PAIR = """async () => {
  const stats = await window.vgpustream.pc.getStats();
  const transport = [...stats.values()].find((r) => r.type === "transport" && r.selectedCandidatePairId);
  const pair = stats.get(transport.selectedCandidatePairId);
  const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
  const video = [...stats.values()].find((r) => r.type === "inbound-rtp" && r.kind === "video");
  return {
    local: local.candidateType, relayProtocol: local.relayProtocol || null, remote: remote.candidateType,
    packetsLost: video.packetsLost, nackCount: video.nackCount, pliCount: video.pliCount,
  };
}"""


def build_network() -> None:
    """The namespace's links, and nobody's UDP dropped. The veth has no IPv6: its link-local address,
    set up a moment after the link, made Chromium drop its requests (net::ERR_NETWORK_CHANGED)."""
    Path("/proc/sys/net/ipv6/conf/default/disable_ipv6").write_text("1\n")
    for command in (
        "ip link set lo up",
        "ip link add vgs0 type veth peer name vgs1",
        f"ip addr add {ADDRESS}/24 dev vgs0",
        "ip link set vgs0 up",
        "ip link set vgs1 up",
        f"iptables -A OUTPUT -m owner --uid-owner {NOBODY} -p udp -j DROP",
    ):
        subprocess.run(command.split(), check=True)


def chromium_as_nobody(workdir: Path, ca: Path) -> Path:
    """A wrapper that runs Chromium as nobody, whose HOME's NSS database trusts the test CA; Playwright
    hands it the profile directory it made (as root), which the wrapper gives to nobody first. The HOME is
    a directory of its own in /tmp: nobody may not pass through `workdir`'s parents (pytest's are root's)."""
    home = Path(tempfile.mkdtemp(prefix="vgpustream-nobody-"))
    (workdir / "nobody-home").write_text(str(home))
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    database = f"sql:{nssdb}"
    subprocess.run(["certutil", "-N", "-d", database, "--empty-password"], check=True)
    subprocess.run(["certutil", "-A", "-d", database, "-n", "vgpustream test CA", "-t", "C,,", "-i", ca], check=True)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", home], check=True)
    wrapper = workdir / "chromium-as-nobody"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do case "$arg" in --user-data-dir=*) chown -R '
        f'{NOBODY}:{NOBODY} "${{arg#--user-data-dir=}}";; esac; done\n'
        f'exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups env HOME={home} {CHROMIUM} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


async def watch_console(workdir: Path, scheme: str) -> dict[str, object]:
    from playwright.async_api import Error, async_playwright  # noqa: PLC0415 - the test extra, checked by the test

    tls = make_test_ca(workdir, ADDRESS)
    os.environ["SSL_CERT_FILE"] = str(tls.ca)  # the server's own TURNS allocation trusts the test CA too
    wrapper = chromium_as_nobody(workdir, tls.ca)
    secret = workdir / "turn-secret"
    secret.write_text(SECRET + "\n")
    url = {"turn": f"turn:{ADDRESS}:{TURN_PORT}?transport=tcp", "turns": f"turns:{ADDRESS}:{TURN_PORT + 1}"}.get(scheme)
    settings = Settings(
        host=ADDRESS,
        host_address=(ADDRESS,),
        state_dir=workdir / "state",
        operator_token=OPERATOR_TOKEN,
        source="synthetic:1280x720@30",
        ice_server=(url,) if url else (),
        turn_secret_file=secret if url else None,
    )
    with coturn(workdir, ADDRESS, TURN_PORT, tls) if url else contextlib.nullcontext():
        runner = web.AppRunner(create_app(settings))
        await runner.setup()
        # the console over HTTPS, as a deployment serves it: WebCodecs (the WebSocket transport) is there
        # only in a secure context, which a plain http:// page of an address other than localhost is not
        served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        served.load_cert_chain(tls.cert, tls.key)
        await web.TCPSite(runner, ADDRESS, HTTP_PORT, ssl_context=served).start()
        try:
            base = f"https://{ADDRESS}:{HTTP_PORT}"
            trusting = ssl.create_default_context(cafile=tls.ca)
            operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
            async with (
                aiohttp.ClientSession(headers=operator, connector=aiohttp.TCPConnector(ssl=trusting)) as http,
                http.post(f"{base}/api/v1/sessions/default/tokens", json={"role": "control"}) as response,
            ):
                console_url = (await response.json())["console_url"]
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=str(wrapper), args=CHROMIUM_ARGS, headless=True
                )
                try:
                    page = await browser.new_page(viewport={"width": 1280, "height": 800})
                    await page.add_init_script(FIRST_FRAME + RECORD_DELAY_REPORTS)
                    errors: list[str] = []
                    page.on("pageerror", lambda error: errors.append(str(error)))
                    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
                    await page.goto(console_url)
                    try:
                        await page.wait_for_function(PLAYING, timeout=PLAYING_TIMEOUT_MS)
                    except Error:
                        where = await page.evaluate(WHERE)
                        raise AssertionError(f"the console did not play: {where}, errors {errors}") from None
                    first_frame_ms = await page.evaluate("window.firstFrameMs")
                    if url is None:
                        return {
                            "transport": await page.evaluate("window.vgpustream.transport"),
                            "first_frame_ms": round(first_frame_ms),
                            "key_events": await key_events(page, runner.app[REGISTRY].get("default")),
                        }
                    pair = await page.evaluate(SELECTED_PAIR)
                    await asyncio.sleep(DELAY_SECONDS)  # the console reports its delay once a second
                    reports = [ms for report in await page.evaluate("window.delayReports") for ms in report]
                finally:
                    await browser.close()
        finally:
            await runner.cleanup()
    udp = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return {
        # datagrams dropped in this namespace for a full socket buffer: coturn's relay sockets (128 KiB)
        # overflow with a keyframe's burst from our host candidate
        "udp_receive_buffer_errors": int(dict(zip(udp[0], udp[1], strict=True))["RcvbufErrors"]),
        "pair": pair,
        "first_frame_ms": round(first_frame_ms),
        "glass_to_glass_p50_ms": statistics.median(reports) if reports else None,
    }


async def key_events(page: Any, session: Session) -> int:
    """Press a key in the console, and count the key events that reached the VM (up to 10 s for both)."""
    await page.locator("#stage").focus()
    await page.keyboard.press("KeyQ")
    for _ in range(100):
        if session.audience.stats.input_events >= 2:
            break
        await asyncio.sleep(0.1)
    return session.audience.stats.input_events


if __name__ == "__main__":
    build_network()
    try:
        print(json.dumps(asyncio.run(watch_console(Path(sys.argv[1]), sys.argv[2]))), flush=True)
    finally:
        home = Path(sys.argv[1]) / "nobody-home"
        if home.exists():
            shutil.rmtree(home.read_text())
