"""STUN and TURN servers: a dead one holds up no viewer, a live one's relay candidates come warm, each one's
health is reported, and TURN credentials are each viewer's own (TURN REST scheme), checked by coturn."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aioice import turn
from aioice.stun import TransactionFailed

from tests.conftest import OPERATOR, wait_for
from tests.coturn import SECRET, TURNSERVER, coturn
from tests.test_abuse import SDP
from tests.test_console import console_page
from tests.test_lifecycle import open_fds, settle, within
from tests.test_operations import metric_value
from vgpustream.compat import TURN_DELETE_TIMEOUT
from vgpustream.testing.chromium import CHROMIUM
from vgpustream.testing.receiver import an_offer
from vgpustream.testing.server import free_port
from vgpustream.transports.iceservers import rest_credential

DEAD_TURN_POSTS = 7
POST_BOUND_MS = 100
CHURN = 8
"""Issue #29's acceptance: POST /whep with a dead TURN server, p50."""


async def post_offer(http, server, headers: dict[str, str] | None = None) -> tuple[float, str, list[str]]:
    """POST an aiortc offer: the seconds it took, the answer and the Link headers; the viewer is deleted."""
    offer = await an_offer(data_channel=False)
    started = time.perf_counter()
    async with http.post(
        server.make_url("/whep/default"), data=offer, headers={"Content-Type": "application/sdp", **(headers or {})}
    ) as response:
        took = time.perf_counter() - started
        assert response.status == 201, await response.text()
        answer, links, location = await response.text(), response.headers.getall("Link"), response.headers["Location"]
    async with http.delete(server.make_url(location), headers=headers):
        pass
    return took, answer, links


async def ice_server_health(operator, server, state: str) -> dict:
    """The first ICE server's health in /readyz (what the `operator` client is shown) once its state is `state`
    (polled for up to 10 s)."""
    for _ in range(200):
        async with operator.get(server.make_url("/readyz")) as response:
            health = (await response.json())["ice_servers"][0]
        if health["state"] == state:
            return health
        await asyncio.sleep(0.05)
    raise AssertionError(f"the ICE server is not {state}: {health}")


def has_relay_candidate(answer: str) -> bool:
    return re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ relay", answer) is not None


@pytest.fixture
def turn_secret(tmp_path: Path) -> Path:
    """The secret coturn shares with the server, in a file (--turn-secret-file)."""
    path = tmp_path / "turn-secret"
    path.write_text(SECRET + "\n")
    return path


@pytest.fixture
async def silent_tcp() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never says a word (a TURN server that hangs)."""
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda reader, writer: accepted.append(writer), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in accepted:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.mark.browser
@pytest.mark.parametrize("kind", ["TURN, nothing answers (UDP)", "TURN, accepts TCP, never speaks", "STUN"])
async def test_a_dead_stun_or_turn_server_holds_up_no_viewer(kind, make_server, http, anonymous, silent_tcp, caplog):
    caplog.set_level(logging.INFO, logger="vgpustream.transports.relays")
    url = {
        "TURN, nothing answers (UDP)": f"turn:127.0.0.1:{free_port()}",
        "TURN, accepts TCP, never speaks": f"turn:127.0.0.1:{silent_tcp}?transport=tcp",
        "STUN": f"stun:127.0.0.1:{free_port()}",
    }[kind]
    server = await make_server(source="synthetic:320x240@30", ice_server=(url,), turn_username="u", turn_credential="p")
    took = [(await post_offer(http, server))[0] * 1000 for _ in range(DEAD_TURN_POSTS)]
    assert statistics.median(took) <= POST_BOUND_MS, f"POST ms with a dead TURN server: {took}"
    async with console_page(server, http, frames=10):
        pass  # the console plays (on loopback, host candidates)
    # the operator sees it: /readyz (still ready: viewers are served without it) and /metrics
    health = await ice_server_health(http, server, "down")
    assert health["url"] == url and health["failures"] >= 1, health
    said = [r.getMessage() for r in caplog.records if r.name == "vgpustream.transports.relays"]
    assert len(said) == 1 and "does not answer" in said[0], "once per change, not per viewer"
    assert health["last_allocation"] is None and health["error"]
    async with anonymous.get(server.make_url("/readyz")) as response:
        assert "ice_servers" not in await response.json(), "the servers' health is the operator's to see"
    async with http.get(server.make_url("/metrics")) as response:
        text = await response.text()
    assert metric_value(text, "vgpustream_ice_server_up", url=url) == 0
    assert metric_value(text, "vgpustream_ice_server_failures_total", url=url) >= 1


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_relay_candidates_come_from_a_warm_allocation(
    transport, make_server, http, anonymous, tmp_path, turn_secret, caplog
):
    caplog.set_level(logging.INFO, logger="vgpustream.transports.relays")
    port = free_port()
    url = f"turn:127.0.0.1:{port}?transport={transport}"
    with coturn(tmp_path, "127.0.0.1", port):
        server = await make_server(source="synthetic:320x240@30", ice_server=(url,), turn_secret_file=turn_secret)
        health = await ice_server_health(http, server, "up")
        assert health["last_allocation"] and health["failures"] == 0, health
        relayed = []
        for _ in range(3):  # each takes the spare, the next one's is made meanwhile
            _, answer, _ = await post_offer(http, server)
            relayed.append(has_relay_candidate(answer))
        assert relayed == [True, True, True]
        await server.close()  # while coturn is there to take its allocations back
    assert sum("answers" in r.getMessage() for r in caplog.records if r.name == "vgpustream.transports.relays") == 1


async def test_a_stun_server_that_answers_is_asked_for_viewers(make_server, http, anonymous, tmp_path):
    port = free_port()
    with coturn(tmp_path, "127.0.0.1", port):
        url = f"stun:127.0.0.1:{port}"
        server = await make_server(source="synthetic:320x240@30", ice_server=(url,))
        health = await ice_server_health(http, server, "up")  # its probe was answered
        assert health["last_allocation"] and health["failures"] == 0, health
        _, answer, _ = await post_offer(http, server)
        assert re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ srflx", answer), answer


async def test_warm_allocations_leak_nothing(make_server, anonymous, tmp_path, turn_secret):
    """Each viewer's allocation is given back with the viewer, and the spare with the server."""
    port = free_port()
    with coturn(tmp_path, "127.0.0.1", port):
        url = f"turn:127.0.0.1:{port}?transport=tcp"
        server = await make_server(source="synthetic:320x240@30", ice_server=(url,), turn_secret_file=turn_secret)
        async with aiohttp.ClientSession(headers=OPERATOR, connector=aiohttp.TCPConnector(force_close=True)) as http:
            await ice_server_health(http, server, "up")
            await post_offer(http, server)  # warm-up: lazily created pools and caches
            baseline = await settle((0, 0), seconds=2.0)
            for _ in range(CHURN):
                assert has_relay_candidate((await post_offer(http, server))[1])
            after = await settle(baseline)
        assert within(after, baseline), f"(fds, tasks) were {baseline}, now {after}"
        await server.close()
        await wait_for(lambda: open_fds() < after[0], what="the spare allocation's socket closed")


async def test_turn_credentials_go_only_to_token_holders_and_end_with_their_token(
    make_server, http, anonymous, turn_secret
):
    urls = ("stun:127.0.0.1:9", f"turn:127.0.0.1:{free_port()}?transport=tcp")
    server = await make_server(source="synthetic:320x240@30", ice_server=urls, turn_secret_file=turn_secret)
    endpoint = server.make_url("/whep/default")
    bare = ['<stun:127.0.0.1:9>; rel="ice-server"', f'<{urls[1]}>; rel="ice-server"']
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        async with anonymous.options(endpoint, headers=headers) as response:
            assert response.status == 204 and response.headers.getall("Link") == bare
    async with http.post(
        server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view", "ttl_seconds": 120}
    ) as response:
        issued = await response.json()
    token = {"Authorization": f"Bearer {issued['token']}"}
    async with anonymous.options(endpoint, headers=token) as response:
        links = response.headers.getall("Link")
    _, _, post_links = await post_offer(anonymous, server, token)
    token_expiry = datetime.datetime.fromisoformat(issued["expires_at"]).timestamp()
    for announced in (links, post_links):
        assert announced[0] == bare[0], "STUN needs no credential"
        found = re.fullmatch(
            rf'<{re.escape(urls[1])}>; rel="ice-server"; username="(\d+):([^"]+)"; credential="([^"]+)"; '
            r'credential-type="password"',
            announced[1],
        )
        assert found is not None, announced
        expiry, holder, password = int(found[1]), found[2], found[3]
        assert holder == issued["id"] and time.time() < expiry <= token_expiry
        username = f"{expiry}:{holder}"
        assert (
            password == base64.b64encode(hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()
        )


async def test_coturn_checks_the_credentials_and_their_expiry(tmp_path):
    port = free_port()
    with coturn(tmp_path, "127.0.0.1", port):

        async def allocate(expires_at: float, secret: str = SECRET) -> None:
            username, password = rest_credential(secret.encode(), "viewer", expires_at)
            transport, _ = await turn.create_turn_endpoint(
                asyncio.DatagramProtocol, ("127.0.0.1", port), username, password, transport="tcp"
            )
            transport.close()

        await allocate(time.time() + 60)
        for refused in (allocate(time.time() - 1), allocate(time.time() + 60, "not-the-secret-of-coturn")):
            with pytest.raises(TransactionFailed, match="401"):
                await refused


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["turn", "turns"])
def test_a_browser_that_cannot_send_udp_plays_through_coturn(scheme, tmp_path):
    """TURN over TCP, and over TLS with a test CA that Chromium trusts (its user's NSS database): the
    console plays through a relay candidate (tests/turn_console.py, in a network namespace of its own)."""
    result = run_turn_console(tmp_path, scheme)
    assert result["pair"]["local"] == "relay", result
    assert result["pair"]["relayProtocol"] == {"turn": "tcp", "turns": "tls"}[scheme], result
    print(f"{scheme}: first frame {result['first_frame_ms']} ms, glass to glass {result['glass_to_glass_p50_ms']} ms")


def run_turn_console(workdir: Path, scheme: str) -> dict:
    """tests/turn_console.py in a network namespace of its own: what it found, or a skip where it cannot run."""
    tools = ("unshare", "ip", "iptables", "setpriv", "certutil", TURNSERVER, CHROMIUM)
    missing = [tool for tool in tools if not shutil.which(tool)]
    if os.geteuid() != 0 or missing:
        pytest.skip(f"needs root (a network namespace, iptables, Chromium run as nobody) and {', '.join(tools)}")
    pytest.importorskip("playwright.async_api", reason="browser tests need playwright (pip)")
    command = ["unshare", "--net", "--", sys.executable, "-m", "tests.turn_console", str(workdir), scheme]
    done = subprocess.run(
        command, check=False, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.browser
def test_a_browser_that_cannot_send_udp_and_has_no_turn_plays_over_the_websocket(tmp_path):
    """No UDP out and no TURN server: the console (transport=auto) gives WebRTC 2 s, then takes the WebSocket;
    it plays within 3 s of page load, and a key pressed in it reaches the VM (issue 22)."""
    result = run_turn_console(tmp_path, "none")
    assert result["transport"] == "websocket", result
    assert result["first_frame_ms"] <= 3000, result
    assert result["key_events"] >= 2, result


async def test_a_turn_server_gone_holds_up_no_leaving_viewer_nor_the_server_s_stop(
    make_server, http, anonymous, tmp_path, turn_secret
):
    """Their allocations' deletes are not retried for half a minute (aioice's own retries, over UDP)."""
    port = free_port()
    with coturn(tmp_path, "127.0.0.1", port):
        url = f"turn:127.0.0.1:{port}"
        server = await make_server(source="synthetic:320x240@30", ice_server=(url,), turn_secret_file=turn_secret)
        await ice_server_health(http, server, "up")
        offer = await an_offer(data_channel=False)
        async with http.post(server.make_url("/whep/default"), data=offer, headers=SDP) as response:
            assert has_relay_candidate(await response.text())  # the viewer holds an allocation
            location = response.headers["Location"]
    started = time.monotonic()
    async with http.delete(server.make_url(location)) as response:
        assert response.status == 200
    assert time.monotonic() - started < TURN_DELETE_TIMEOUT + 2, "the viewer's DELETE"
    started = time.monotonic()
    await server.close()
    assert time.monotonic() - started < TURN_DELETE_TIMEOUT + 2, "the server's stop"
