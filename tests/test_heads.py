"""The heads of a session's VM through the API, on a source of one head (the synthetic desktop); a QEMU VM's
several heads are tested with a real QEMU in tests/qemu/test_heads.py."""

from __future__ import annotations

from vgpustream.sources.qemu.url import head_of, head_url


async def test_a_source_of_one_head_lists_it_and_a_head_that_does_not_exist_is_404(make_server, http):
    server = await make_server(source="synthetic:320x240@10")
    async with http.get(server.make_url("/api/v1/sessions/default/heads")) as response:
        assert response.status == 200
        heads = (await response.json())["heads"]
    assert [(head["console"], head["session"]) for head in heads] == [(0, "default")]
    async with http.post(server.make_url("/api/v1/sessions/default/heads/0")) as response:
        assert response.status == 200, "the session itself shows its only head"
        assert (await response.json())["id"] == "default"
    for number in ("1", "63", "x", "00"):
        async with http.post(server.make_url(f"/api/v1/sessions/default/heads/{number}")) as response:
            assert response.status == 404
            error = (await response.json())["error"]
            assert error["code"] == "not_found" and error["message"].endswith("its heads: 0"), error
    async with http.get(server.make_url("/api/v1/sessions")) as response:
        assert [session["id"] for session in (await response.json())["sessions"]] == ["default"], "nothing made"


def test_a_heads_source_url_names_it_whatever_the_order_of_the_options():
    url = "qemu-dbus:unix:path=/run/vm/bus.sock?max_edge=4096"
    assert head_url(url, 1) == "qemu-dbus:unix:path=/run/vm/bus.sock?console=1&max_edge=4096"
    assert head_url(head_url(url, 1), 0) == url
    assert head_of("qemu-dbus:unix:path=/run/vm/bus.sock?console=1&max_edge=4096") == (url, 1)
    assert head_of("qemu-dbus:unix:path=/run/vm/bus.sock?max_edge=4096&console=0") == (url, 0)
    assert head_of("synthetic:320x240@10") == ("synthetic:320x240@10", 0)


async def test_a_viewer_token_lists_the_heads_and_gets_a_link_to_one_no_more_than_it_may(make_server, http, anonymous):
    server = await make_server(source="synthetic:320x240@10")
    tokens = server.make_url("/api/v1/sessions/default/tokens")
    async with http.post(tokens, json={"role": "view", "ttl_seconds": 120, "clipboard": "none"}) as response:
        view = await response.json()
    bearer = {"Authorization": f"Bearer {view['token']}"}
    async with anonymous.get(server.make_url("/api/v1/sessions/default/heads"), headers=bearer) as response:
        assert response.status == 200
        assert [head["session"] for head in (await response.json())["heads"]] == ["default"]
    async with anonymous.post(server.make_url("/api/v1/sessions/default/heads/0/link"), headers=bearer) as response:
        assert response.status == 201
        link = await response.json()
    assert (link["role"], link["clipboard"], link["single_use"]) == ("view", "none", False)
    assert link["expires_at"] <= view["expires_at"], "it expires no later than the token it came from"
    assert link["console_url"].endswith(f"/?session=default#token={link['token']}")
    async with anonymous.post(server.make_url("/api/v1/sessions/default/heads/1/link"), headers=bearer) as response:
        assert response.status == 404
        assert (await response.json())["error"]["message"].endswith("its heads: 0")
    refused = [
        ("post", "/api/v1/sessions/default/heads/0", bearer, 403),  # making a session is the operator's
        ("get", "/api/v1/sessions/default/heads", {}, 401),
        ("post", "/api/v1/sessions/default/heads/0/link", {}, 401),
        ("get", "/api/v1/sessions/default/heads", {"Authorization": "Bearer vgs_wrong"}, 403),
    ]
    for method, path, headers, status in refused:
        async with anonymous.request(method, server.make_url(path), headers=headers) as response:
            assert response.status == status, (method, path, await response.text())
