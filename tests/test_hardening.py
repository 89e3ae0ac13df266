"""The HTTP surface holds no secret for someone without a token, and trusts nothing a request says about
itself (issue 24): security headers, the Host header, /metrics and /readyz."""

from __future__ import annotations

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
