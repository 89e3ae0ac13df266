"""Debian's Firefox ESR, driven over WebDriver BiDi by npm's puppeteer-core (tests/browser/firefox.mjs)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

FIREFOX = "/usr/bin/firefox-esr"
DRIVER = Path(__file__).parent / "browser" / "firefox.mjs"
AUTOPLAY = {"media.autoplay.default": 0}
"""The one preference the tests change: a person starts playback with a click, a test cannot."""


async def in_firefox(
    url: str, until: str, result: str, timeout: float = 30.0, press: tuple[str, list[str]] | None = None
) -> Any:
    """Open `url` in a fresh headless Firefox (default preferences but AUTOPLAY), wait until the JS
    expression `until` holds, press the keys of `press` (a selector to focus, key names) if given, and return
    what `result` evaluates to; AssertionError with what `result` said if `until` did not hold in `timeout`
    seconds. Skips where Firefox, node or puppeteer-core is missing."""
    if shutil.which(FIREFOX) is None or shutil.which("node") is None:
        pytest.skip(f"Firefox tests need Debian's firefox-esr at {FIREFOX} and node (apt-get install firefox-esr)")
    if not (DRIVER.parent / "node_modules" / "puppeteer-core").is_dir():
        pytest.skip("Firefox tests need puppeteer-core: npm ci --prefix tests/browser")
    job: dict[str, Any] = {"url": url, "until": until, "result": result, "timeoutMs": int(timeout * 1000)}
    job["prefs"] = AUTOPLAY
    if press is not None:
        job["press"] = {"selector": press[0], "keys": press[1]}
    process = await asyncio.create_subprocess_exec(
        "node", str(DRIVER), json.dumps(job), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=timeout + 60)
    lines = stdout.decode().strip().splitlines()
    if not lines:
        raise AssertionError(f"Firefox's driver said nothing: {stderr.decode()[-2000:]}")
    report = json.loads(lines[-1])
    assert report["ok"], f"in Firefox, {until} did not hold: {report['error']}; {report['result']}"
    return report["result"]
