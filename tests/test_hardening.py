"""The HTTP surface holds no secret for someone without a token, and trusts nothing a request says about
itself (issue 24): security headers, the Host header, /metrics and /readyz, requests the parser refuses,
connections that trickle their headers and clients that open too many."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from vgpustream.testing.hostile import malformed_headers

PAGES = ("/", "/web/app.js", "/api/v1/sessions", "/healthz", "/nowhere")


async def test_every_answer_has_the_security_headers(make_server, anonymous):
    server = await make_server(source="synthetic:320x240@30")
    for path in PAGES:
        async with anonymous.get(server.make_url(path)) as response:
            policy = response.headers.get("Content-Security-Policy", "")
            assert "script-src 'self';" in policy and "unsafe-inline" not in policy, path
            assert "frame-ancestors 'none'" in policy, path
            assert response.headers.get("X-Content-Type-Options") == "nosniff", path
            assert response.headers.get("Referrer-Policy") == "no-referrer", path
            assert response.headers["Server"] == "vgpustream", path


async def test_frame_ancestors_can_be_configured(make_server, anonymous):
    server = await make_server(source="synthetic:320x240@30", frame_ancestors=("https://portal.example",))
    async with anonymous.get(server.make_url("/")) as response:
        assert "frame-ancestors https://portal.example" in response.headers["Content-Security-Policy"]


async def issue_with_host(http, server, host: str) -> tuple[int, dict]:
    url = server.make_url("/api/v1/sessions/default/tokens")
    async with http.post(url, json={"role": "view"}, headers={"Host": host}) as response:
        return response.status, await response.json()


async def test_links_are_built_only_for_the_servers_own_names(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    status, body = await issue_with_host(http, server, "attacker.example")
    assert status == 421 and body["error"]["code"] == "misdirected_request"
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}"):
        status, body = await issue_with_host(http, server, host)
        assert status == 201 and body["console_url"].startswith(f"http://{host}/?session=default#token="), host


async def test_allowed_hosts_and_the_public_url_decide_the_links(make_server, http):
    named = await make_server(source="synthetic:320x240@30", allowed_host=("vm.example",))
    status, body = await issue_with_host(http, named, "vm.example:8443")
    assert status == 201 and body["whep_url"] == "http://vm.example:8443/whep/default"
    status, _ = await issue_with_host(http, named, f"127.0.0.1:{named.port}")
    assert status == 421, "--allowed-host names replace the default ones"
    public = await make_server(source="synthetic:320x240@30", public_url="https://console.example/")
    status, body = await issue_with_host(http, public, "attacker.example")
    assert status == 201 and body["console_url"].startswith("https://console.example/?session=default#")


async def test_metrics_need_the_operator_token_unless_public(make_server, anonymous, http):
    server = await make_server(source="synthetic:320x240@30")
    async with anonymous.get(server.make_url("/metrics")) as response:
        assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert "vgpustream_session" not in await response.text()
    async with http.get(server.make_url("/metrics")) as response:
        assert response.status == 200 and 'session="default"' in await response.text()
    public = await make_server(source="synthetic:320x240@30", metrics_public=True)
    async with anonymous.get(public.make_url("/metrics")) as response:
        assert response.status == 200 and 'session="default"' in await response.text()


async def exchange(server, request: bytes) -> bytes:
    """Send `request` on a new connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


SECRET = "vgs_never-in-the-log"
MALFORMED = malformed_headers(SECRET)


@pytest.mark.parametrize("header", MALFORMED.values(), ids=MALFORMED.keys())
async def test_parser_errors_are_answered_and_logged_without_the_request(make_server, caplog, header):
    caplog.set_level(logging.DEBUG)
    server = await make_server(source="synthetic:320x240@30")
    answer = await exchange(server, f"GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode("latin-1"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer[:200]
    assert b"\r\nServer: vgpustream\r\n" in head, head
    assert json.loads(body)["error"]["code"] == "bad_request"
    logged = [record for record in caplog.records if "malformed" in record.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is None, "one line, no traceback"
    for record in caplog.records:
        assert SECRET not in record.getMessage() and record.exc_info is None, record.getMessage()


async def test_a_connection_that_trickles_its_headers_is_closed(make_server):
    server = await make_server(source="synthetic:320x240@30", header_timeout=0.5)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    for _ in range(300):  # a byte every 0.1 s, for up to 30 s: the server closes it long before
        if reader.at_eof():
            break
        writer.write(b"X")
        try:
            await asyncio.wait_for(reader.read(1), 0.1)
        except TimeoutError:
            pass
        except ConnectionResetError:
            break
    assert reader.at_eof() or writer.is_closing(), "a trickling connection must be closed"
    writer.close()
    silent_reader, silent = await asyncio.open_connection(server.host, server.port)
    assert await asyncio.wait_for(silent_reader.read(), 30) == b"", "so is one that sends nothing"
    silent.close()


async def test_one_address_holds_a_bounded_number_of_connections(make_server, anonymous):
    # the held connections send nothing: a long header timeout keeps them open however slowly the test runs
    server = await make_server(source="synthetic:320x240@30", max_client_connections=3, header_timeout=300.0)
    held = [await asyncio.open_connection(server.host, server.port) for _ in range(3)]
    refused = await exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 429 ") and b"Server: vgpustream" in refused
    for _, writer in held:
        writer.close()

    async def healthy() -> bool:
        try:
            async with anonymous.get(server.make_url("/healthz")) as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    for _ in range(200):  # the closed connections are given back as the server sees them go
        if await healthy():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the address's connections were not given back")


async def test_a_trusted_proxy_s_connections_are_not_bounded_per_address(make_server):
    # a gateway holds a connection for each of its WebSocket viewers, whom it bounds itself
    server = await make_server(
        source="synthetic:320x240@30", max_client_connections=3, header_timeout=300.0, trusted_proxy=("127.0.0.1",)
    )
    held = [await asyncio.open_connection(server.host, server.port) for _ in range(3)]
    answered = await exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answered.startswith(b"HTTP/1.1 200 "), answered[:40]
    for _, writer in held:
        writer.close()
