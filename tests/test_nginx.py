"""Debian's nginx as the TLS-terminating reverse proxy of deploy/nginx/vgpustream.conf, with a test CA: WHEP
signalling and the console over the WebSocket both work through it (issue 22)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from tests import coturn
from tests.browser import CHROMIUM_ARGS
from tests.conftest import OPERATOR, wait_for
from tests.served import ROOT
from vgpustream.api.state import REGISTRY
from vgpustream.testing.chromium import CHROMIUM
from vgpustream.testing.receiver import WhepReceiver
from vgpustream.testing.server import free_port

NGINX = "/usr/sbin/nginx"
EXAMPLE = ROOT / "deploy" / "nginx" / "vgpustream.conf"


@contextmanager
def nginx(directory: Path, port: int, upstream: int, tls: coturn.TestCa) -> Iterator[None]:
    """nginx on 127.0.0.1:`port` with the shipped example's server block, proxying to 127.0.0.1:`upstream`."""
    example = (
        EXAMPLE.read_text()
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
        .replace("/etc/ssl/certs/vgpustream.example.com.pem", str(tls.cert))
        .replace("/etc/ssl/private/vgpustream.example.com.key", str(tls.key))
        .replace("http://127.0.0.1:8080", f"http://127.0.0.1:{upstream}")
    )
    temp = " ".join(
        f"{kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = directory / "nginx.conf"
    config.write_text(
        f"worker_processes 1; pid {directory / 'nginx.pid'}; error_log {directory / 'error.log'};\n"
        f"events {{ worker_connections 256; }}\nhttp {{ access_log off; {temp}\n{example}\n}}\n"
    )
    process = subprocess.Popen([NGINX, "-c", str(config), "-p", str(directory), "-g", "daemon off;"])
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def trusting(tls: coturn.TestCa) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=tls.ca))


@pytest.mark.browser
async def test_the_console_plays_over_the_websocket_and_whep_signals_through_nginx(make_server, tmp_path):
    if shutil.which(NGINX) is None or shutil.which("certutil") is None:
        pytest.skip("needs Debian's nginx (nginx-light) and certutil (libnss3-tools)")
    playwright_api = pytest.importorskip("playwright.async_api", reason="browser tests need playwright (pip)")
    port = free_port()
    public = f"https://127.0.0.1:{port}"
    server = await make_server(source="synthetic:320x240@30", public_url=public)
    session = server.app[REGISTRY].get("default")
    tls = coturn.make_test_ca(tmp_path, "127.0.0.1")
    with nginx(tmp_path, port, server.port, tls):
        async with aiohttp.ClientSession(headers=OPERATOR, connector=trusting(tls)) as http:
            await wait_for_proxy(http, public)
            async with http.post(
                f"{public}/api/v1/sessions/default/tokens", json={"role": "control", "transport": "websocket"}
            ) as response:
                issued = await response.json()
            assert issued["console_url"].startswith(public), issued
            receiver = WhepReceiver(f"{public}/whep/default", http)  # WHEP signalling through nginx
            await receiver.connect()
            assert (await receiver.next_frame()).picture.width == 320
            await receiver.close()
        with tempfile.TemporaryDirectory(prefix="vgpustream-nginx-home-") as home:
            nssdb = Path(home) / ".pki" / "nssdb"
            nssdb.mkdir(parents=True)
            subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True)
            subprocess.run(
                ["certutil", "-A", "-d", f"sql:{nssdb}", "-n", "test CA", "-t", "C,,", "-i", tls.ca], check=True
            )
            async with playwright_api.async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS, env={"HOME": home}
                )
                try:
                    page = await browser.new_page()
                    await page.goto(issued["console_url"])
                    await page.wait_for_function(
                        "() => document.getElementById('screen').videoWidth === 320", timeout=20_000
                    )
                    assert await page.evaluate("window.vgpustream.state") == "playing"
                    await page.locator("#stage").focus()
                    await page.keyboard.down("KeyZ")
                    sink = session.capture.input_sink
                    await wait_for(lambda: "KeyZ" in sink.keys_down, what="a key through nginx, in the VM")
                    await page.keyboard.up("KeyZ")
                finally:
                    await browser.close()


async def wait_for_proxy(http: aiohttp.ClientSession, public: str) -> None:
    """Until nginx answers (it takes a moment to start)."""
    for _ in range(100):
        try:
            async with http.get(f"{public}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("nginx did not answer")
